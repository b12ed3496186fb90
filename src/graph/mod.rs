//! The program a bound model runs: a flat, ordered list of generic ops over named activations.
//! Every backend executes the same program; only how each op is computed differs.

mod build;
pub mod fuse;

pub use build::build_program;
pub use fuse::{Fusion, FusionKind, Fusions, GemvEpilogue, GemvFusion, GemvSegment, Section};

pub type ValueId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// weights [table]: out[t] = row tokens[t] of the table, dequantized.
    Embed,
    /// inputs [x], weights [w]: out = x * rsqrt(mean(x^2) + eps) * w.
    RmsNorm,
    /// RmsNorm over each head of `head_dim` values, weight of length head_dim.
    HeadRmsNorm,
    /// inputs [x], weights [W, bias?]: W has GGUF dims [K, N]; out[t][n] = W[n] . x[t] (+ bias[n]).
    Matmul,
    /// inputs [x], params [w0, w1, ..]: consecutive column ranges of x into separate values.
    Split,
    /// inputs [x]: rotary embedding of each head at positions pos0 + t, in place.
    Rope,
    /// inputs [q, k, v]: append k, v to the layer's cache, then causal GQA attention.
    Attention,
    /// inputs [a, b]: a + b.
    Add,
    /// inputs [g, u]: silu(g) * u.
    SiluMul,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Embed => "embed",
            Op::RmsNorm => "rmsnorm",
            Op::HeadRmsNorm => "head_rmsnorm",
            Op::Matmul => "matmul",
            Op::Split => "split",
            Op::Rope => "rope",
            Op::Attention => "attention",
            Op::Add => "add",
            Op::SiluMul => "silu_mul",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    /// Weight roles; None where an optional role (a bias) is absent from the file.
    pub weights: Vec<Option<String>>,
    pub outputs: Vec<ValueId>,
    pub params: Vec<usize>,
    /// The plan line this step came from, for errors and activation dumps.
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    /// f32 values per token.
    pub width: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    pub values: Vec<ValueInfo>,
    pub prologue: Vec<Step>,
    /// Run once per layer with that layer's weights.
    pub block: Vec<Step>,
    pub epilogue: Vec<Step>,
    pub logits: ValueId,
}

impl Program {
    pub fn value(&self, id: ValueId) -> &ValueInfo {
        &self.values[id]
    }

    /// Every step with whether it belongs to the per-layer block.
    pub fn steps(&self) -> impl Iterator<Item = (&Step, bool)> {
        self.prologue
            .iter()
            .map(|s| (s, false))
            .chain(self.block.iter().map(|s| (s, true)))
            .chain(self.epilogue.iter().map(|s| (s, false)))
    }
}
