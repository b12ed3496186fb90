//! Renders a kernel's source from its context: the platform prelude, the shared prelude, the weight
//! format's snippet (for ops that read GGUF weights), then the op template, all with one context.
//! Templates are embedded in the binary; `ROCMFORGE_TEMPLATE_DIR` reads them from disk instead,
//! for template development without rebuilding.

use std::collections::HashMap;
use std::path::Path;

use tera::{Tera, Value};

use super::context::OpContext;
use super::error::CodegenError;
use super::quant::weight_layout;
use crate::gguf::GgmlType;

/// Environment variable naming a directory laid out like `templates/` to render from instead of
/// the embedded copies.
pub const TEMPLATE_DIR_ENV: &str = "ROCMFORGE_TEMPLATE_DIR";

macro_rules! embedded {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name)))),*]
    };
}

/// Every template, registered once: (name relative to `templates/`, embedded text).
const TEMPLATES: &[(&str, &str)] = embedded![
    "prelude/hip.hip.tera",
    "prelude/cuda.hip.tera",
    "prelude/common.hip.tera",
    "prelude/matrix_cuda.hip.tera",
    "prelude/matrix_hip.hip.tera",
    "prelude/mfma_hip.hip.tera",
    "quant/dot.hip.tera",
    "quant/k_scale_min.hip.tera",
    "quant/words_a2.hip.tera",
    "quant/x_q8.hip.tera",
    "quant/f32.hip.tera",
    "quant/f16.hip.tera",
    "quant/bf16.hip.tera",
    "quant/q4_0.hip.tera",
    "quant/q4_1.hip.tera",
    "quant/q5_0.hip.tera",
    "quant/q5_1.hip.tera",
    "quant/q8_0.hip.tera",
    "quant/q2_k.hip.tera",
    "quant/q3_k.hip.tera",
    "quant/q4_k.hip.tera",
    "quant/q5_k.hip.tera",
    "quant/q6_k.hip.tera",
    "embed.hip.tera",
    "rmsnorm.hip.tera",
    "matmul_gemv.hip.tera",
    "matmul_gemv_lanes.hip.tera",
    "matmul_gemm.hip.tera",
    "matmul_gemm_tiles.hip.tera",
    "matmul_gemm_tiles_q8.hip.tera",
    "split.hip.tera",
    "rope_pair.hip.tera",
    "rope.hip.tera",
    "rope_store.hip.tera",
    "kv_store.hip.tera",
    "attention.hip.tera",
    "attention_prefill_tiles.hip.tera",
    "elementwise.hip.tera",
    "argmax.hip.tera",
    "stage_f16.hip.tera",
];

/// The names of all registered templates.
pub fn template_names() -> impl Iterator<Item = &'static str> {
    TEMPLATES.iter().map(|(name, _)| *name)
}

pub struct Renderer {
    tera: Tera,
}

impl Renderer {
    /// The templates compiled into the binary.
    pub fn embedded() -> Result<Renderer, CodegenError> {
        Renderer::from_texts(
            TEMPLATES
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        )
    }

    /// The same template names read from `dir`.
    pub fn from_dir(dir: &Path) -> Result<Renderer, CodegenError> {
        let mut texts = Vec::new();
        for (name, _) in TEMPLATES {
            let text =
                std::fs::read_to_string(dir.join(name)).map_err(|e| CodegenError::TemplateDir {
                    dir: dir.to_path_buf(),
                    file: name.to_string(),
                    message: e.to_string(),
                })?;
            texts.push((name.to_string(), text));
        }
        Renderer::from_texts(texts)
    }

    /// `ROCMFORGE_TEMPLATE_DIR` when set, else the embedded templates.
    pub fn from_env() -> Result<Renderer, CodegenError> {
        match std::env::var_os(TEMPLATE_DIR_ENV) {
            Some(dir) if !dir.is_empty() => Renderer::from_dir(Path::new(&dir)),
            _ => Renderer::embedded(),
        }
    }

    fn from_texts(texts: Vec<(String, String)>) -> Result<Renderer, CodegenError> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![]);
        tera.register_filter("cfloat", cfloat);
        tera.add_raw_templates(texts)
            .map_err(|e| CodegenError::Template {
                template: "(registration)".to_string(),
                message: error_chain(&e),
            })?;
        Ok(Renderer { tera })
    }

    /// The full source of the kernel `ctx.kernel_name()`.
    pub fn render<C: OpContext>(&self, ctx: &C) -> Result<String, CodegenError> {
        let name = ctx.kernel_name();
        let json = ctx.context_json();
        let mut context =
            tera::Context::from_serialize(ctx).map_err(|e| CodegenError::Template {
                template: ctx.template().to_string(),
                message: error_chain(&e),
            })?;
        context.insert("kernel_name", &name);
        let platform_prelude = format!("prelude/{}.hip.tera", ctx.target().platform);
        let mut parts = vec![platform_prelude];
        if ctx.matrix_tiles() {
            parts.push(format!("prelude/matrix_{}.hip.tera", ctx.target().platform));
        }
        parts.push("prelude/common.hip.tera".to_string());
        let segments = ctx.segment_formats();
        let weight_parts = |format: GgmlType| -> Result<[String; 2], CodegenError> {
            let layout = weight_layout(format).ok_or_else(|| CodegenError::UnsupportedFormat {
                problem: ctx.problem(),
                format: format.name().to_string(),
            })?;
            Ok([layout.template(), "quant/dot.hip.tera".to_string()])
        };
        let mut source = format!("// rocmforge kernel {name}\n// context: {json}\n");
        for part in &parts {
            source.push_str(&self.part(part, &context, &json)?);
        }
        if segments.is_empty() {
            if let Some(format) = ctx.weight_format() {
                for part in &weight_parts(format)? {
                    source.push_str(&self.part(part, &context, &json)?);
                }
            }
        }
        for (i, &format) in segments.iter().enumerate() {
            source.push_str(&format!("namespace seg{i} {{\n"));
            for part in &weight_parts(format)? {
                source.push_str(&self.part(part, &context, &json)?);
            }
            source.push_str(&format!("}}  // namespace seg{i}\n"));
        }
        source.push_str(&self.part(ctx.template(), &context, &json)?);
        Ok(source)
    }

    /// One template rendered with the kernel's context, followed by a newline.
    fn part(
        &self,
        part: &str,
        context: &tera::Context,
        json: &str,
    ) -> Result<String, CodegenError> {
        let mut text = self
            .tera
            .render(part, context)
            .map_err(|e| CodegenError::Template {
                template: part.to_string(),
                message: format!("{} (context {json})", error_chain(&e)),
            })?;
        text.push('\n');
        Ok(text)
    }
}

/// Tera errors keep the useful part in their sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `{{ x | cfloat }}`: a number as a C++ float literal that reads back as the same f32
/// (`1e-5f`, `10000.0f`).
fn cfloat(value: &Value, _args: &HashMap<String, Value>) -> tera::Result<Value> {
    let number = value
        .as_f64()
        .ok_or_else(|| tera::Error::msg(format!("cfloat: {value} is not a number")))?;
    let single = number as f32;
    if !single.is_finite() {
        return Err(tera::Error::msg(format!(
            "cfloat: {number} is not a finite f32"
        )));
    }
    Ok(Value::String(format!("{single:?}f")))
}
