//! Elementwise ops over activations: residual add and the SwiGLU product.

use serde::Serialize;

use crate::codegen::compiler::Target;
use crate::codegen::context::{
    check_launch, require, valid_candidates, Extent, GridRule, OpContext, TargetConsts, Tunable,
};
use crate::codegen::error::CodegenError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ElementwiseOp {
    /// out = a + b
    Add,
    /// out = a * sigmoid(a) * b
    SiluMul,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ElementwiseContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    pub op: ElementwiseOp,
    /// Values per token (sets the grid; the kernel takes the total count).
    pub width: usize,
    pub threads: u32,
    /// Values per thread: 4 (one 16-byte load per operand) or 1.
    pub vec: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ElementwiseKnobs {
    pub threads: u32,
    pub vec: u32,
}

impl ElementwiseContext {
    pub fn new(target: &Target, op: ElementwiseOp, width: usize) -> ElementwiseContext {
        ElementwiseContext {
            target: TargetConsts::of(target),
            op,
            width,
            threads: 256,
            vec: 4,
        }
    }
}

impl OpContext for ElementwiseContext {
    fn op(&self) -> &'static str {
        match self.op {
            ElementwiseOp::Add => "add",
            ElementwiseOp::SiluMul => "silu_mul",
        }
    }
    fn template(&self) -> &'static str {
        "elementwise.hip.tera"
    }
    fn problem(&self) -> String {
        format!("{} width={}", OpContext::op(self), self.width)
    }
    fn validate(&self) -> Result<(), CodegenError> {
        require(self.width > 0, self, || "empty rows".to_string())?;
        require(self.vec == 1 || self.vec == 4, self, || {
            format!("vector width {} is not 1 or 4", self.vec)
        })?;
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (self.threads, 1, 1)
    }
    fn shared_bytes(&self) -> u32 {
        0
    }
    fn grid_rule(&self) -> GridRule {
        GridRule {
            x: Extent::per_token(self.width, self.threads * self.vec),
            y: Extent::Fixed(1),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

impl Tunable for ElementwiseContext {
    type Knobs = ElementwiseKnobs;
    fn knobs(&self) -> ElementwiseKnobs {
        ElementwiseKnobs {
            threads: self.threads,
            vec: self.vec,
        }
    }
    fn candidates(&self) -> Vec<ElementwiseKnobs> {
        let list = [(256, 4), (128, 4), (512, 4), (256, 1)]
            .into_iter()
            .map(|(threads, vec)| ElementwiseKnobs { threads, vec })
            .collect();
        valid_candidates(self, list)
    }
    fn with_knobs(&self, knobs: &ElementwiseKnobs) -> Self {
        ElementwiseContext {
            threads: knobs.threads,
            vec: knobs.vec,
            ..self.clone()
        }
    }
}
