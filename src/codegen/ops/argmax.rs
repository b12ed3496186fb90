//! Greedy sampling on the device: the index of the largest logit, so only one id crosses to the host.

use serde::Serialize;

use crate::codegen::compiler::Target;
use crate::codegen::context::{
    check_launch, require, valid_candidates, Extent, GridRule, OpContext, TargetConsts, Tunable,
};
use crate::codegen::error::CodegenError;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArgmaxContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    /// Values in the row (the kernel takes the count too; this keys the kernel to the model).
    pub n_vocab: usize,
    pub threads: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArgmaxKnobs {
    pub threads: u32,
}

impl ArgmaxContext {
    pub fn new(target: &Target, n_vocab: usize) -> ArgmaxContext {
        ArgmaxContext {
            target: TargetConsts::of(target),
            n_vocab,
            threads: 1024,
        }
    }
}

impl OpContext for ArgmaxContext {
    fn op(&self) -> &'static str {
        "argmax"
    }
    fn template(&self) -> &'static str {
        "argmax.hip.tera"
    }
    fn problem(&self) -> String {
        format!("argmax n={}", self.n_vocab)
    }
    fn validate(&self) -> Result<(), CodegenError> {
        require(
            self.n_vocab > 0 && self.n_vocab <= i32::MAX as usize,
            self,
            || format!("row of {} values", self.n_vocab),
        )?;
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (self.threads, 1, 1)
    }
    fn shared_bytes(&self) -> u32 {
        8 * (self.threads / self.target.warp_size)
    }
    fn grid_rule(&self) -> GridRule {
        GridRule {
            x: Extent::Fixed(1),
            y: Extent::Fixed(1),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

impl Tunable for ArgmaxContext {
    type Knobs = ArgmaxKnobs;
    fn knobs(&self) -> ArgmaxKnobs {
        ArgmaxKnobs {
            threads: self.threads,
        }
    }
    fn candidates(&self) -> Vec<ArgmaxKnobs> {
        valid_candidates(
            self,
            [1024, 512, 256]
                .into_iter()
                .map(|threads| ArgmaxKnobs { threads })
                .collect(),
        )
    }
    fn with_knobs(&self, knobs: &ArgmaxKnobs) -> Self {
        ArgmaxContext {
            threads: knobs.threads,
            ..self.clone()
        }
    }
}
