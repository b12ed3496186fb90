//! Staging a matrix as f16 for the vendor GEMM of prefill: a weight dequantized from its GGUF
//! format, or the f32 activations (the F32 "format"), row by row.

use serde::Serialize;

use crate::codegen::compiler::Target;
use crate::codegen::context::{
    check_launch, check_row_length, valid_candidates, Extent, GridRule, OpContext, TargetConsts,
    Tunable,
};
use crate::codegen::error::CodegenError;
use crate::codegen::quant::weight_layout;
use crate::gguf::GgmlType;

/// How a prefill matmul's weight reaches the vendor f16 GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightStaging {
    /// Already f16 in the GGUF: the GEMM reads it where it was uploaded.
    InPlace,
    /// Dequantized into a staging buffer first.
    Dequantize,
}

/// How a weight of `format` is staged, or None where the vendor GEMM should not take it: f32
/// and bf16 weights would lose range or precision as f16, so they stay on the tile kernels.
pub fn weight_staging(format: GgmlType) -> Option<WeightStaging> {
    match format {
        GgmlType::F16 => Some(WeightStaging::InPlace),
        GgmlType::F32 | GgmlType::BF16 => None,
        _ => weight_layout(format).map(|_| WeightStaging::Dequantize),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageF16Context {
    #[serde(flatten)]
    pub target: TargetConsts,
    #[serde(skip)]
    pub format: GgmlType,
    pub weight_format: &'static str,
    /// Values per row.
    pub k: usize,
    /// Threads per block; each converts one chunk of a row.
    pub threads: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageF16Knobs {
    pub threads: u32,
}

impl StageF16Context {
    pub fn new(target: &Target, format: GgmlType, k: usize) -> StageF16Context {
        StageF16Context {
            target: TargetConsts::of(target),
            format,
            weight_format: weight_layout(format).map_or("unsupported", |l| l.tag),
            k,
            threads: 256,
        }
    }

    /// Blocks for `rows` rows (the launch sets the grid: a weight is staged in chunks of rows,
    /// not per token).
    pub fn blocks(threads: u32, chunks_per_row: usize, rows: usize) -> u32 {
        (rows * chunks_per_row).div_ceil(threads as usize) as u32
    }
}

impl OpContext for StageF16Context {
    fn op(&self) -> &'static str {
        "stage_f16"
    }
    fn template(&self) -> &'static str {
        "stage_f16.hip.tera"
    }
    fn weight_format(&self) -> Option<GgmlType> {
        Some(self.format)
    }
    fn problem(&self) -> String {
        format!("stage_f16 {} K={}", self.format.name(), self.k)
    }
    fn validate(&self) -> Result<(), CodegenError> {
        check_row_length(self, self.format, self.k)?;
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (self.threads, 1, 1)
    }
    fn shared_bytes(&self) -> u32 {
        0
    }
    /// Per token: right for activations; weight launches override the grid (see `blocks`).
    fn grid_rule(&self) -> GridRule {
        let chunk = weight_layout(self.format).map_or(8, |l| l.chunk);
        GridRule {
            x: Extent::per_token(self.k / chunk, self.threads),
            y: Extent::Fixed(1),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

impl Tunable for StageF16Context {
    type Knobs = StageF16Knobs;
    fn knobs(&self) -> StageF16Knobs {
        StageF16Knobs {
            threads: self.threads,
        }
    }
    /// One candidate: the kernel streams memory at any sensible block size, and it runs inside
    /// a step timed as a whole, so the tuner would only measure the GEMM beside it.
    fn candidates(&self) -> Vec<StageF16Knobs> {
        valid_candidates(self, vec![self.knobs()])
    }
    fn with_knobs(&self, knobs: &StageF16Knobs) -> Self {
        StageF16Context {
            threads: knobs.threads,
            ..self.clone()
        }
    }
}
