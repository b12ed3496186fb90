//! RMS normalization of rows (the hidden state, or each head for per-head norms).

use serde::Serialize;

use super::warps;
use crate::codegen::compiler::Target;
use crate::codegen::context::{
    check_launch, require, valid_candidates, Extent, GridRule, OpContext, TargetConsts, Tunable,
};
use crate::codegen::error::CodegenError;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RmsNormContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    /// Values per normalized row (n_embd, or head_dim for a per-head norm).
    pub width: usize,
    /// Rows per token: 1, or the number of heads for a per-head norm (sets the grid only).
    pub rows_per_token: usize,
    pub eps: f32,
    pub threads_per_row: u32,
    pub rows_per_block: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RmsNormKnobs {
    pub threads_per_row: u32,
    pub rows_per_block: u32,
}

impl RmsNormContext {
    pub fn new(target: &Target, width: usize, rows_per_token: usize, eps: f32) -> RmsNormContext {
        let ctx = RmsNormContext {
            target: TargetConsts::of(target),
            width,
            rows_per_token,
            eps,
            threads_per_row: 0,
            rows_per_block: 0,
        };
        ctx.with_knobs(&ctx.default_knobs())
    }

    /// About 8 values per thread, 32..256 threads per row, at least 128 threads per block.
    fn default_knobs(&self) -> RmsNormKnobs {
        let warp = self.target.warp_size;
        let wanted = ((self.width / 8).max(1) as u32)
            .next_power_of_two()
            .clamp(warp, 256.max(warp));
        let threads_per_row = wanted.div_ceil(warp) * warp;
        RmsNormKnobs {
            threads_per_row,
            rows_per_block: (128 / threads_per_row).max(1),
        }
    }
}

impl OpContext for RmsNormContext {
    fn op(&self) -> &'static str {
        "rmsnorm"
    }
    fn template(&self) -> &'static str {
        "rmsnorm.hip.tera"
    }
    fn problem(&self) -> String {
        format!(
            "rmsnorm width={} rows/token={}",
            self.width, self.rows_per_token
        )
    }
    fn validate(&self) -> Result<(), CodegenError> {
        require(self.width > 0 && self.rows_per_token > 0, self, || {
            "empty rows".to_string()
        })?;
        require(self.eps.is_finite() && self.eps >= 0.0, self, || {
            format!("epsilon {} is not a finite non-negative number", self.eps)
        })?;
        require(self.rows_per_block >= 1, self, || {
            "rows_per_block must be at least 1".to_string()
        })?;
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (self.threads_per_row, self.rows_per_block, 1)
    }
    fn shared_bytes(&self) -> u32 {
        let warps_per_row = self.threads_per_row / self.target.warp_size;
        if warps_per_row > 1 {
            4 * warps_per_row * self.rows_per_block
        } else {
            0
        }
    }
    fn grid_rule(&self) -> GridRule {
        GridRule {
            x: Extent::per_token(self.rows_per_token, self.rows_per_block),
            y: Extent::Fixed(1),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

impl Tunable for RmsNormContext {
    type Knobs = RmsNormKnobs;
    fn knobs(&self) -> RmsNormKnobs {
        RmsNormKnobs {
            threads_per_row: self.threads_per_row,
            rows_per_block: self.rows_per_block,
        }
    }
    fn candidates(&self) -> Vec<RmsNormKnobs> {
        let w = self.target.warp_size;
        let mut list = vec![self.default_knobs()];
        for (n, rows) in [(1, 4), (1, 2), (2, 2), (4, 1), (8, 1), (16, 1)] {
            list.push(RmsNormKnobs {
                threads_per_row: warps(w, n),
                rows_per_block: rows,
            });
        }
        valid_candidates(self, list)
    }
    fn with_knobs(&self, knobs: &RmsNormKnobs) -> Self {
        RmsNormContext {
            threads_per_row: knobs.threads_per_row,
            rows_per_block: knobs.rows_per_block,
            ..self.clone()
        }
    }
}
