//! Binding a plan to a GGUF file: resolve hyper-parameters, pick fused or separate QKV, check
//! every tensor the program uses for presence, shape and type, once, at load.

use super::expr;
use super::schema::{HparamSpec, NumOrExpr, Plan, QkvLayout, RopeStyle, TensorSpec};
use crate::gguf::{GgmlType, GgufFile, TensorInfo};
use crate::graph::{build_program, Op, Program};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The hyper-parameters every backend needs, under canonical names every plan must define.
#[derive(Debug, Clone, PartialEq)]
pub struct Hparams {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub norm_eps: f32,
    pub rope_base: f32,
    pub rope_style: RopeStyle,
}

impl Hparams {
    /// Query heads per KV head.
    pub fn group(&self) -> usize {
        self.n_head / self.n_kv_head
    }
    pub fn q_width(&self) -> usize {
        self.n_head * self.head_dim
    }
    pub fn kv_width(&self) -> usize {
        self.n_kv_head * self.head_dim
    }
    /// Bytes of the KV cache for `n_ctx` positions at `elem_bytes` per value (k and v, all layers).
    pub fn kv_cache_bytes(&self, n_ctx: usize, elem_bytes: usize) -> u64 {
        2 * (self.n_layer * n_ctx * self.kv_width() * elem_bytes) as u64
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("plan '{plan}' binds architectures {expected:?}, but {file} is '{found}' (pass a matching --arch or add a plan)")]
    Architecture {
        plan: String,
        file: String,
        expected: Vec<String>,
        found: String,
    },
    #[error("plan '{plan}', hparam '{name}': {what} in {file}")]
    Hparam {
        plan: String,
        file: String,
        name: String,
        what: String,
    },
    #[error("plan '{plan}', role '{role}': {what} in {file}")]
    Tensor {
        plan: String,
        file: String,
        role: String,
        what: String,
    },
    #[error(
        "plan '{plan}': {file} has tensor '{tensor}': {reason}, which the plan does not compute"
    )]
    Unsupported {
        plan: String,
        file: String,
        tensor: String,
        reason: String,
    },
    #[error("plan '{plan}': {what}")]
    Graph { plan: String, what: String },
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
}

/// A plan bound to a file: every tensor role resolved, checked, and the program built.
#[derive(Debug)]
pub struct Model {
    pub plan: Plan,
    pub file: Arc<GgufFile>,
    pub hparams: Hparams,
    /// All resolved hyper-parameters, including plan-specific ones.
    pub hparam_values: BTreeMap<String, f64>,
    pub program: Program,
    pub fused_qkv: bool,
    globals: BTreeMap<String, TensorInfo>,
    layers: Vec<BTreeMap<String, TensorInfo>>,
}

impl Model {
    /// The tensor bound to a role: `layer` None for whole-model roles.
    pub fn weight(&self, layer: Option<usize>, role: &str) -> Option<&TensorInfo> {
        match layer {
            Some(i) => self
                .layers
                .get(i)?
                .get(role)
                .or_else(|| self.globals.get(role)),
            None => self.globals.get(role),
        }
    }

    pub fn weight_bytes(&self, t: &TensorInfo) -> &[u8] {
        self.file.tensor_bytes(t)
    }

    /// A bound tensor dequantized to f32 (small vectors, tests and references).
    pub fn weight_f32(&self, t: &TensorInfo) -> Vec<f32> {
        let mut out = vec![0.0; t.n_elements() as usize];
        crate::gguf::dequant::dequantize(t.ty, self.weight_bytes(t), &mut out)
            .expect("types are checked at bind");
        out
    }

    /// Every bound tensor once (tied roles share a tensor).
    pub fn bound_tensors(&self) -> Vec<&TensorInfo> {
        let mut seen = BTreeSet::new();
        self.globals
            .values()
            .chain(self.layers.iter().flat_map(|l| l.values()))
            .filter(|t| seen.insert(t.name.clone()))
            .collect()
    }
}

pub fn bind(plan: &Plan, file: Arc<GgufFile>) -> Result<Model, BindError> {
    let ctx = Ctx { plan, file: &file };
    let arch = file.architecture().unwrap_or("").to_string();
    if !plan.architectures.contains(&arch) {
        return Err(BindError::Architecture {
            plan: plan.name.clone(),
            file: ctx.file_name(),
            expected: plan.architectures.clone(),
            found: arch,
        });
    }
    if let Some(u) = plan
        .unsupported
        .iter()
        .find(|u| file.tensor(&u.tensor).is_some())
    {
        return Err(BindError::Unsupported {
            plan: plan.name.clone(),
            file: ctx.file_name(),
            tensor: u.tensor.clone(),
            reason: u.reason.clone(),
        });
    }
    let values = ctx.resolve_hparams(&arch)?;
    let get = |name: &str| -> Result<usize, BindError> {
        let v = values[name];
        if v < 1.0 || v.fract() != 0.0 {
            return Err(ctx.hparam_err(name, format!("must be a positive whole number, found {v}")));
        }
        Ok(v as usize)
    };
    let hparams = Hparams {
        n_embd: get("n_embd")?,
        n_layer: get("n_layer")?,
        n_head: get("n_head")?,
        n_kv_head: get("n_kv_head")?,
        head_dim: get("head_dim")?,
        n_ff: get("n_ff")?,
        n_vocab: get("n_vocab")?,
        n_ctx_train: get("n_ctx_train")?,
        norm_eps: values["norm_eps"] as f32,
        rope_base: values["rope_base"] as f32,
        rope_style: plan.rope.style,
    };
    if !hparams.n_head.is_multiple_of(hparams.n_kv_head) {
        return Err(ctx.hparam_err(
            "n_kv_head",
            format!(
                "{} does not divide n_head {}",
                hparams.n_kv_head, hparams.n_head
            ),
        ));
    }

    let fused_qkv = match plan.attention.qkv {
        QkvLayout::Fused => true,
        QkvLayout::Separate => false,
        QkvLayout::Auto => ctx.find("attn_qkv", Some(0)).is_some(),
    };
    let present = |role: &str| {
        let layer = plan.layer_tensors.contains_key(role).then_some(0);
        ctx.find(role, layer).is_some()
    };
    let program =
        build_program(plan, &values, fused_qkv, &present).map_err(|what| BindError::Graph {
            plan: plan.name.clone(),
            what,
        })?;

    let mut globals = BTreeMap::new();
    let mut layers = vec![BTreeMap::new(); hparams.n_layer];
    for (step, in_block) in program.steps() {
        for (slot, role) in step.weights.iter().enumerate() {
            let Some(role) = role else { continue };
            let need = requirement(step.op, slot);
            if in_block && plan.layer_tensors.contains_key(role) {
                for (i, layer) in layers.iter_mut().enumerate() {
                    let t = ctx.check(role, Some(i), &values, need)?;
                    layer.insert(role.clone(), t);
                }
            } else {
                let t = ctx.check(role, None, &values, need)?;
                globals.insert(role.clone(), t);
            }
        }
    }
    Ok(Model {
        plan: plan.clone(),
        file: file.clone(),
        hparams,
        hparam_values: values,
        program,
        fused_qkv,
        globals,
        layers,
    })
}

/// What a weight slot of an op accepts: norms and biases are F32 vectors; projections and
/// embedding tables may be any supported format.
#[derive(Clone, Copy)]
enum Need {
    F32,
    AnySupported,
}

fn requirement(op: Op, slot: usize) -> Need {
    match (op, slot) {
        (Op::Matmul, 0) | (Op::Embed, _) => Need::AnySupported,
        _ => Need::F32,
    }
}

struct Ctx<'a> {
    plan: &'a Plan,
    file: &'a GgufFile,
}

impl Ctx<'_> {
    fn file_name(&self) -> String {
        self.file.path().display().to_string()
    }

    fn hparam_err(&self, name: &str, what: String) -> BindError {
        BindError::Hparam {
            plan: self.plan.name.clone(),
            file: self.file_name(),
            name: name.to_string(),
            what,
        }
    }

    fn tensor_err(&self, role: &str, what: String) -> BindError {
        BindError::Tensor {
            plan: self.plan.name.clone(),
            file: self.file_name(),
            role: role.to_string(),
            what,
        }
    }

    fn spec(&self, role: &str, layer: Option<usize>) -> Option<&TensorSpec> {
        match layer {
            Some(_) => self.plan.layer_tensors.get(role),
            None => self.plan.tensors.get(role),
        }
    }

    fn names(&self, role: &str, layer: Option<usize>) -> Vec<String> {
        let Some(spec) = self.spec(role, layer) else {
            return vec![];
        };
        spec.name
            .candidates()
            .into_iter()
            .map(|n| match layer {
                Some(i) => n.replace("{i}", &i.to_string()),
                None => n.to_string(),
            })
            .collect()
    }

    /// The first candidate tensor name present in the file.
    fn find(&self, role: &str, layer: Option<usize>) -> Option<&TensorInfo> {
        self.names(role, layer)
            .iter()
            .find_map(|n| self.file.tensor(n))
    }

    fn check(
        &self,
        role: &str,
        layer: Option<usize>,
        values: &BTreeMap<String, f64>,
        need: Need,
    ) -> Result<TensorInfo, BindError> {
        let spec = self
            .spec(role, layer)
            .expect("program roles come from the plan");
        let names = self.names(role, layer);
        let t = self.find(role, layer).ok_or_else(|| {
            self.tensor_err(role, format!("tensor {} is missing", names.join(" or ")))
        })?;
        let expected = spec
            .shape
            .iter()
            .map(|s| expr::eval_map(s, values).map(|v| v as u64))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.tensor_err(role, format!("shape expression: {e}")))?;
        let mut found = t.dims.clone();
        // GGUF may store trailing unit dimensions; they do not change the layout.
        while found.len() > expected.len() && found.last() == Some(&1) {
            found.pop();
        }
        if found != expected {
            return Err(self.tensor_err(
                role,
                format!(
                    "tensor '{}' has shape {:?}, expected {:?} ({})",
                    t.name,
                    t.dims,
                    expected,
                    spec.shape.join(", ")
                ),
            ));
        }
        match need {
            Need::F32 if t.ty != GgmlType::F32 => Err(self.tensor_err(
                role,
                format!("tensor '{}' has type {}, expected F32", t.name, t.ty),
            )),
            Need::AnySupported => {
                self.file.require_supported(t)?;
                Ok(t.clone())
            }
            _ => Ok(t.clone()),
        }
    }

    fn resolve_hparams(&self, arch: &str) -> Result<BTreeMap<String, f64>, BindError> {
        let mut values = BTreeMap::new();
        for name in self.plan.hparams.keys() {
            self.resolve_one(name, arch, &mut values, &mut Vec::new())?;
        }
        for required in [
            "n_embd",
            "n_layer",
            "n_head",
            "n_kv_head",
            "head_dim",
            "n_ff",
            "n_vocab",
            "n_ctx_train",
            "norm_eps",
            "rope_base",
        ] {
            if !values.contains_key(required) {
                return Err(
                    self.hparam_err(required, "is not defined by the plan's [hparams]".into())
                );
            }
        }
        Ok(values)
    }

    fn resolve_one(
        &self,
        name: &str,
        arch: &str,
        values: &mut BTreeMap<String, f64>,
        stack: &mut Vec<String>,
    ) -> Result<f64, BindError> {
        if let Some(&v) = values.get(name) {
            return Ok(v);
        }
        if stack.iter().any(|s| s == name) {
            return Err(self.hparam_err(
                name,
                format!("defaults refer to each other: {}", stack.join(" -> ")),
            ));
        }
        let spec =
            self.plan.hparams.get(name).ok_or_else(|| {
                self.hparam_err(name, "is used but not defined in [hparams]".into())
            })?;
        let (key, default, tensor_dim) = match spec {
            HparamSpec::Key(k) => (Some(k.clone()), None, None),
            HparamSpec::Full(f) => (f.key.clone(), f.default.clone(), f.tensor_dim.clone()),
        };
        let key = key.map(|k| k.replace("{arch}", arch));
        let from_file = match &key {
            Some(k) => match self.file.get(k) {
                Some(v) => Some(v.as_f64().ok_or_else(|| {
                    self.hparam_err(name, format!("metadata '{k}' is {v}, not a number"))
                })?),
                None => None,
            },
            None => None,
        };
        let value = if let Some(v) = from_file {
            v
        } else if let Some((role, dim)) = tensor_dim {
            let t = self.find(&role, None).ok_or_else(|| {
                self.hparam_err(name, format!("tensor of role '{role}' is missing"))
            })?;
            *t.dims.get(dim).ok_or_else(|| {
                self.hparam_err(name, format!("tensor '{}' has no dimension {dim}", t.name))
            })? as f64
        } else {
            match default {
                Some(NumOrExpr::Num(v)) => v,
                Some(NumOrExpr::Expr(text)) => {
                    stack.push(name.to_string());
                    for dep in expr::identifiers(&text) {
                        self.resolve_one(&dep, arch, values, stack)?;
                    }
                    stack.pop();
                    expr::eval_map(&text, values).map_err(|e| self.hparam_err(name, e))?
                }
                None => {
                    return Err(self.hparam_err(
                        name,
                        format!("metadata key '{}' is missing", key.unwrap_or_default()),
                    ))
                }
            }
        };
        values.insert(name.to_string(), value);
        Ok(value)
    }
}
