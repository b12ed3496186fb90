//! Random-weight GGUF files shaped like real models, for any plan and weight format: how shapes
//! that cannot be downloaded here are tested and benchmarked. Deterministic by seed.

mod fuse;
mod presets;
mod requant;
mod tokenizer;

pub use fuse::fuse_qkv;
pub use presets::{names as preset_names, preset, Shape};
pub use requant::requantize;

use crate::gguf::quantize::random_blocks;
use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgmlType, GgufFile, Value};
use crate::graph::{build_program, Op};
use crate::plan::schema::{HparamSpec, NumOrExpr, Plan, QkvLayout};
use crate::util::rng::Rng;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Weight formats of the projection matrices: one type, or llama.cpp's Q4_K_M mix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightMix {
    Uniform(GgmlType),
    /// Q4_K, with Q6_K for the output and for attn_v / ffn_down in the layers llama.cpp gives
    /// more bits (first and last eighth, and every third in between).
    Q4KM,
}

impl WeightMix {
    pub fn parse(s: &str) -> Option<WeightMix> {
        if s.eq_ignore_ascii_case("Q4_K_M") {
            return Some(WeightMix::Q4KM);
        }
        let ty = GgmlType::from_name(s)?;
        ty.is_supported().then_some(WeightMix::Uniform(ty))
    }

    fn type_for(self, role: &str, layer: Option<usize>, n_layer: usize) -> GgmlType {
        match self {
            WeightMix::Uniform(t) => t,
            WeightMix::Q4KM => {
                let more_bits = |i: usize| {
                    i < n_layer / 8 || i >= 7 * n_layer / 8 || (i - n_layer / 8) % 3 == 2
                };
                match (role, layer) {
                    ("output", _) => GgmlType::Q6K,
                    ("attn_v" | "ffn_down", Some(i)) if more_bits(i) => GgmlType::Q6K,
                    _ => GgmlType::Q4K,
                }
            }
        }
    }
}

/// K-quants need rows of whole 256-blocks; like llama-quantize, rows that are not fall back to
/// the nearest 32-block format.
pub(crate) fn fit_type(ty: GgmlType, row_len: u64) -> GgmlType {
    if row_len.is_multiple_of(ty.block_size()) {
        return ty;
    }
    match ty {
        GgmlType::Q2K | GgmlType::Q3K => GgmlType::Q4_0,
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        _ => GgmlType::Q8_0,
    }
}

#[derive(Debug, Clone)]
pub struct SynthSpec {
    pub name: String,
    pub plan: Plan,
    pub shape: Shape,
    pub weights: WeightMix,
    pub fused_qkv: bool,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("synth: {0}")]
    Spec(String),
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("synth: cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug)]
pub struct SynthReport {
    pub n_tensors: usize,
    pub n_bytes: u64,
    pub types: BTreeMap<String, usize>,
}

/// Writes the model to `out`. With `tokenizer_from`, every `tokenizer.*` key of that file is
/// copied (its vocabulary padded with unused tokens up to the shape's n_vocab); otherwise a
/// byte-level vocabulary of n_vocab tokens is made up.
pub fn synthesize(
    spec: &SynthSpec,
    tokenizer_from: Option<&GgufFile>,
    out: &Path,
) -> Result<SynthReport, SynthError> {
    let s = &spec.shape;
    let arch = spec
        .plan
        .architectures
        .first()
        .ok_or_else(|| {
            SynthError::Spec(format!("plan '{}' names no architecture", spec.plan.name))
        })?
        .clone();
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", Value::String(arch.clone()));
    w.metadata("general.name", Value::String(spec.name.clone()));
    w.metadata(
        "general.description",
        Value::String(format!(
            "random weights shaped by plan {}, seed {}",
            spec.plan.name, spec.seed
        )),
    );
    w.metadata("general.file_type", Value::U32(0));

    let mut n_vocab = s.n_vocab;
    let tokenizer_meta = match tokenizer_from {
        Some(src) => tokenizer::copied(src, n_vocab),
        None => tokenizer::byte_level(n_vocab),
    };
    if let Some(n) = tokenizer_meta
        .iter()
        .find_map(|(k, v)| (k == "tokenizer.ggml.tokens").then(|| v.as_array().map(<[Value]>::len)))
        .flatten()
    {
        n_vocab = n_vocab.max(n);
    }

    let values: BTreeMap<String, f64> = [
        ("n_embd", s.n_embd as f64),
        ("n_layer", s.n_layer as f64),
        ("n_head", s.n_head as f64),
        ("n_kv_head", s.n_kv_head as f64),
        ("head_dim", s.head_dim as f64),
        ("n_ff", s.n_ff as f64),
        ("n_vocab", n_vocab as f64),
        ("n_ctx_train", s.n_ctx_train as f64),
        ("norm_eps", s.norm_eps as f64),
        ("rope_base", s.rope_base as f64),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let values = with_plan_defaults(&spec.plan, values)?;
    for (name, hspec) in &spec.plan.hparams {
        let key = match hspec {
            HparamSpec::Key(k) => Some(k),
            HparamSpec::Full(f) => f.key.as_ref(),
        };
        let (Some(key), Some(&v)) = (key, values.get(name)) else {
            continue;
        };
        // llama.cpp reads these two (and any fraction) as f32, counts and sizes as u32, and
        // checks the stored type.
        let value = if matches!(name.as_str(), "norm_eps" | "rope_base") || v.fract() != 0.0 {
            Value::F32(v as f32)
        } else {
            Value::U32(v as u32)
        };
        w.metadata(key.replace("{arch}", &arch), value);
    }
    for (k, v) in tokenizer_meta {
        w.metadata(k, v);
    }

    // A plan that fixes the layout gets it; `fused_qkv` only chooses where the plan accepts both.
    let fused_qkv = match spec.plan.attention.qkv {
        QkvLayout::Fused => true,
        QkvLayout::Separate => false,
        QkvLayout::Auto => spec.fused_qkv,
    };
    let program =
        build_program(&spec.plan, &values, fused_qkv, &|_| false).map_err(SynthError::Spec)?;
    let mut jobs: Vec<(String, Vec<u64>, GgmlType, f32, u64)> = Vec::new();
    let mut written: Vec<String> = Vec::new();
    for (step, in_block) in program.steps() {
        for (slot, role) in step.weights.iter().enumerate() {
            let Some(role) = role else { continue };
            let is_matrix = matches!((step.op, slot), (Op::Matmul, 0) | (Op::Embed, 0));
            let layers: Vec<Option<usize>> =
                if in_block && spec.plan.layer_tensors.contains_key(role) {
                    (0..s.n_layer).map(Some).collect()
                } else {
                    vec![None]
                };
            for layer in layers {
                let tspec = match layer {
                    Some(_) => &spec.plan.layer_tensors[role],
                    None => &spec.plan.tensors[role],
                };
                let candidates = tspec.name.candidates();
                // A tied role is satisfied by a tensor another role already wrote.
                if s.tied
                    && candidates
                        .iter()
                        .skip(1)
                        .any(|c| written.iter().any(|w| w == c))
                {
                    continue;
                }
                let name = match layer {
                    Some(i) => candidates[0].replace("{i}", &i.to_string()),
                    None => candidates[0].to_string(),
                };
                if written.contains(&name) {
                    continue;
                }
                let dims = tspec
                    .shape
                    .iter()
                    .map(|e| crate::plan::expr::eval_map(e, &values).map(|v| v as u64))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(SynthError::Spec)?;
                let (ty, scale) = if is_matrix {
                    let ty = fit_type(spec.weights.type_for(role, layer, s.n_layer), dims[0]);
                    let scale = if step.op == Op::Embed {
                        1.0
                    } else {
                        1.7 / (dims[0] as f32).sqrt()
                    };
                    (ty, scale)
                } else {
                    (GgmlType::F32, 0.0)
                };
                let seed = spec.seed ^ fnv1a(name.as_bytes());
                jobs.push((name.clone(), dims, ty, scale, seed));
                written.push(name);
            }
        }
    }

    let data: Vec<Vec<u8>> = jobs
        .par_iter()
        .map(|(name, dims, ty, scale, seed)| {
            let n: u64 = dims.iter().product();
            let mut rng = Rng::new(*seed);
            if *ty != GgmlType::F32 {
                return random_blocks(*ty, n as usize, &mut rng, *scale);
            }
            // Norm weights sit near 1, biases near 0, as in trained models.
            let is_norm = name.contains("norm");
            (0..n)
                .flat_map(|_| {
                    let v = if is_norm {
                        rng.uniform(0.8, 1.2)
                    } else {
                        rng.uniform(-0.1, 0.1)
                    };
                    v.to_le_bytes()
                })
                .collect()
        })
        .collect();
    let mut report = SynthReport {
        n_tensors: jobs.len(),
        n_bytes: 0,
        types: BTreeMap::new(),
    };
    for ((name, dims, ty, _, _), bytes) in jobs.into_iter().zip(data) {
        report.n_bytes += bytes.len() as u64;
        *report.types.entry(ty.name().to_string()).or_default() += 1;
        w.tensor(name, &dims, ty, bytes);
    }
    w.write(out).map_err(|source| SynthError::Io {
        path: out.display().to_string(),
        source,
    })?;
    Ok(report)
}

/// Adds the plan's own hyper-parameters (beyond the canonical ones of a [`Shape`]), each at its
/// default evaluated over the values known so far, so that they are written under their keys and
/// usable in shapes: e.g. a value head size that defaults to `head_dim`.
fn with_plan_defaults(
    plan: &Plan,
    mut values: BTreeMap<String, f64>,
) -> Result<BTreeMap<String, f64>, SynthError> {
    let mut pending: Vec<&String> = plan
        .hparams
        .keys()
        .filter(|name| !values.contains_key(*name))
        .collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|name| {
            let default = match &plan.hparams[*name] {
                HparamSpec::Full(f) => f.default.as_ref(),
                HparamSpec::Key(_) => None,
            };
            let value = match default {
                Some(NumOrExpr::Num(v)) => Some(*v),
                Some(NumOrExpr::Expr(e)) => crate::plan::expr::eval_map(e, &values).ok(),
                None => None,
            };
            if let Some(v) = value {
                values.insert(name.to_string(), v);
            }
            value.is_none()
        });
        if pending.len() == before {
            return Err(SynthError::Spec(format!(
                "plan '{}': no value for hparams {pending:?}: synth needs a default over the \
                 shape's values (n_embd, n_head, head_dim, ...) for each plan-specific one",
                plan.name
            )));
        }
    }
    Ok(values)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}
