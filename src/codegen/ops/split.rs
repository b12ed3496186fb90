//! Split of a fused activation (q|k|v or gate|up) into consecutive column ranges.

use serde::Serialize;

use crate::codegen::compiler::Target;
use crate::codegen::context::{
    check_launch, require, valid_candidates, Extent, GridRule, OpContext, TargetConsts, Tunable,
};
use crate::codegen::error::CodegenError;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    pub w0: usize,
    pub w1: usize,
    /// 0 when there are only two outputs.
    pub w2: usize,
    pub threads: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitKnobs {
    pub threads: u32,
}

impl SplitContext {
    /// `widths` are the output widths in order: two or three of them.
    pub fn new(target: &Target, widths: &[usize]) -> SplitContext {
        let at = |i: usize| widths.get(i).copied().unwrap_or(0);
        let ctx = SplitContext {
            target: TargetConsts::of(target),
            w0: at(0),
            w1: at(1),
            w2: at(2),
            threads: 256,
        };
        ctx.with_knobs(&ctx.default_knobs())
    }

    fn default_knobs(&self) -> SplitKnobs {
        SplitKnobs { threads: 256 }
    }
}

impl OpContext for SplitContext {
    fn op(&self) -> &'static str {
        "split"
    }
    fn template(&self) -> &'static str {
        "split.hip.tera"
    }
    fn problem(&self) -> String {
        format!("split {}+{}+{}", self.w0, self.w1, self.w2)
    }
    fn validate(&self) -> Result<(), CodegenError> {
        require(self.w0 > 0 && self.w1 > 0, self, || {
            "a split needs at least two non-empty outputs".to_string()
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
        let y = (self.w0 + self.w1 + self.w2).div_ceil(self.threads as usize) as u32;
        GridRule {
            x: Extent::per_token(1, 1),
            y: Extent::Fixed(y),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

impl Tunable for SplitContext {
    type Knobs = SplitKnobs;
    fn knobs(&self) -> SplitKnobs {
        SplitKnobs {
            threads: self.threads,
        }
    }
    fn candidates(&self) -> Vec<SplitKnobs> {
        let list = [self.default_knobs().threads, 128, 512]
            .into_iter()
            .map(|threads| SplitKnobs { threads })
            .collect();
        valid_candidates(self, list)
    }
    fn with_knobs(&self, knobs: &SplitKnobs) -> Self {
        SplitContext {
            threads: knobs.threads,
            ..self.clone()
        }
    }
}
