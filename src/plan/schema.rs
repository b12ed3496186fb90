//! The TOML form of an architecture plan. Everything that differs between architectures is here;
//! the engine reads only these fields and never an architecture's name.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The plan's own name (file stem by convention).
    pub name: String,
    /// `general.architecture` values this plan binds.
    pub architectures: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// Canonical hyper-parameter name -> where its value comes from.
    pub hparams: BTreeMap<String, HparamSpec>,
    pub rope: RopeSpec,
    #[serde(default)]
    pub attention: AttentionSpec,
    /// Roles of whole-model tensors.
    pub tensors: BTreeMap<String, TensorSpec>,
    /// Roles of per-layer tensors; `{i}` in a name is the layer index.
    pub layer_tensors: BTreeMap<String, TensorSpec>,
    pub graph: GraphSpec,
    /// Tensors whose presence marks a variant the plan does not compute (rope scaling factors,
    /// say): such a file is refused with the reason rather than run wrongly.
    #[serde(default)]
    pub unsupported: Vec<Unsupported>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unsupported {
    pub tensor: String,
    pub reason: String,
}

/// A hyper-parameter: a GGUF key (`{arch}` is general.architecture), optionally with a default
/// (a number or an expression over other hyper-parameters), or a dimension of a tensor role.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HparamSpec {
    Key(String),
    Full(HparamFull),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HparamFull {
    pub key: Option<String>,
    pub default: Option<NumOrExpr>,
    /// `[role, dim]`: the value is that dimension of the role's tensor.
    pub tensor_dim: Option<(String, usize)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumOrExpr {
    Num(f64),
    Expr(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeStyle {
    /// llama.cpp's NORM: rotate adjacent pairs (2i, 2i+1).
    Normal,
    /// GPT-NeoX: rotate (i, i + rot/2).
    Neox,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeSpec {
    pub style: RopeStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum QkvLayout {
    /// Separate `attn_q`, `attn_k`, `attn_v` roles.
    Separate,
    /// One `attn_qkv` role, rows of q then k then v.
    Fused,
    /// Fused when the file has the `attn_qkv` role's tensor, separate otherwise.
    #[default]
    Auto,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AttentionSpec {
    #[serde(default)]
    pub qkv: QkvLayout,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Names {
    One(String),
    /// Candidates in order; the first present wins (tied embeddings).
    Many(Vec<String>),
}

impl Names {
    pub fn candidates(&self) -> Vec<&str> {
        match self {
            Names::One(s) => vec![s.as_str()],
            Names::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: Names,
    /// GGUF dimension order (first = row length), each an expression over hyper-parameters.
    pub shape: Vec<String>,
    #[serde(default)]
    pub optional: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphSpec {
    pub prologue: Vec<String>,
    pub block: Vec<String>,
    pub epilogue: Vec<String>,
}

/// Plans compiled into the binary, so `run` works with no plans/ folder at hand.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("llama", include_str!("../../plans/llama.toml")),
    ("qwen2", include_str!("../../plans/qwen2.toml")),
    ("qwen3", include_str!("../../plans/qwen3.toml")),
    ("phi3", include_str!("../../plans/phi3.toml")),
];
