//! The prefill GEMM on matrix units (NVIDIA tensor cores, AMD MFMA matrix cores): f16 tiles of
//! dequantized weights and activations, f32 accumulation. Offered only for targets with a matrix-tile prelude
//! (`Target::has_matrix_tiles`); elsewhere prefill uses the FP32 tiled GEMM (`GemmContext`).
//! Knobs: the block tile and warp layout, `stages` (double-buffered tiles) and `int8`, a variant
//! (`matmul_gemm_tiles_q8`) on int8 matrix units for formats that unpack to int8, offered to the
//! tuner only (the default stays f16).

use serde::Serialize;

use super::warps;
use crate::codegen::compiler::Target;
use crate::codegen::context::{
    check_launch, check_row_length, require, valid_candidates, Extent, GridRule, OpContext,
    TargetConsts, Tunable,
};
use crate::codegen::error::CodegenError;
use crate::codegen::quant::weight_layout;
use crate::gguf::GgmlType;

/// The side of one matrix-unit tile.
const TILE: u32 = 16;

/// Formats whose snippet unpacks a chunk to int8 (`i8_chunk`) for the int8 variant.
const INT8_FORMATS: [GgmlType; 2] = [GgmlType::Q4_0, GgmlType::Q8_0];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GemmTilesContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    #[serde(skip)]
    pub format: GgmlType,
    pub weight_format: &'static str,
    /// Whether the int8 variant is offered: the target has int8 matrix tiles and the format
    /// unpacks to int8.
    #[serde(skip)]
    pub int8_offered: bool,
    pub k: usize,
    pub n: usize,
    /// Block tile: BM tokens x BN rows, stepping K by BK, with WARPS_M x WARPS_N warps.
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    pub warps_m: u32,
    pub warps_n: u32,
    /// Shared tile buffers: 1 loads then multiplies; 2 loads step k + 1 into registers while
    /// multiplying step k (double buffering, one sync per step).
    pub stages: u32,
    /// The int8 variant (`matmul_gemm_tiles_q8`): int8 weights and per-32-block int8 x on
    /// int8 matrix units, single-buffered.
    pub int8: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GemmTilesKnobs {
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    pub warps_m: u32,
    pub warps_n: u32,
    pub stages: u32,
    pub int8: bool,
}

/// A tile shape: (bm, bn, bk, warps_m, warps_n).
type Tile = (u32, u32, u32, u32, u32);

/// The f16 tile shapes the tuner tries, each single- and double-buffered.
const F16_TILES: [Tile; 10] = [
    (64, 64, 64, 2, 2),
    (64, 64, 32, 2, 2),
    (128, 128, 64, 4, 2),
    (64, 128, 32, 2, 4),
    (128, 64, 32, 4, 2),
    (64, 128, 64, 2, 2),
    (128, 128, 32, 4, 2),
    (128, 128, 32, 2, 4),
    (32, 64, 64, 1, 2),
    (32, 128, 64, 1, 4),
];

/// The int8 tile shapes the tuner tries where the format and target allow them.
const INT8_TILES: [Tile; 10] = [
    (64, 64, 64, 2, 2),
    (64, 64, 32, 2, 2),
    (64, 64, 128, 2, 2),
    (128, 128, 64, 4, 2),
    (128, 128, 32, 4, 2),
    (128, 128, 128, 4, 2),
    (64, 128, 64, 2, 4),
    (64, 128, 128, 2, 2),
    (128, 64, 64, 4, 2),
    (32, 128, 64, 1, 4),
];

fn tile_knobs((bm, bn, bk, warps_m, warps_n): Tile, stages: u32, int8: bool) -> GemmTilesKnobs {
    GemmTilesKnobs {
        bm,
        bn,
        bk,
        warps_m,
        warps_n,
        stages,
        int8,
    }
}

impl GemmTilesContext {
    /// The context for `target`, or None when the target has no matrix tiles or the shape does
    /// not fit the default tile (the caller then uses the FP32 GEMM).
    pub fn new(target: &Target, format: GgmlType, k: usize, n: usize) -> Option<Self> {
        if !target.has_matrix_tiles() {
            return None;
        }
        let ctx = GemmTilesContext {
            target: TargetConsts::of(target),
            format,
            weight_format: weight_layout(format).map_or("unsupported", |l| l.tag),
            int8_offered: target.has_int8_matrix_tiles() && INT8_FORMATS.contains(&format),
            k,
            n,
            bm: 0,
            bn: 0,
            bk: 0,
            warps_m: 0,
            warps_n: 0,
            stages: 0,
            int8: false,
        };
        let ctx = ctx.with_knobs(&ctx.default_knobs());
        ctx.validate().is_ok().then_some(ctx)
    }

    /// What `rocmforge tune` chose on an H200 (llama3-8b and qwen2.5-0.5b Q4_0, pp512): for the
    /// widest weights (the 14336-row FFN) 128 x 128 tiles of 4 x 2 warps stepping K by 64,
    /// single-buffered; for 2048+ rows over a long K (4096, 14336) 128 x 128 tiles of 2 x 4 warps
    /// stepping K by 32, double-buffered (1.5-1.6x over 64 x 64 single-buffered); for 2048+ rows
    /// over a short K (896: 128 x 128 tiles leave too few blocks) 64 x 64, double-buffered
    /// (1.68x over the 128 x 128 choice); below 2048 rows 32 x 64 tiles of 1 x 2 warps,
    /// double-buffered (1.16x on 1024 rows; kept on qwen's 896 and 128 rows). Where a choice does
    /// not fit (shared memory, K), 64 x 64 tiles single-buffered.
    fn default_knobs(&self) -> GemmTilesKnobs {
        let bk = if self.k.is_multiple_of(64) { 64 } else { 32 };
        let knobs = |bm, bn, bk, warps_m, warps_n, stages| {
            tile_knobs((bm, bn, bk, warps_m, warps_n), stages, false)
        };
        // K-quants (256-value blocks, the heaviest dequantization) keep single-buffered tiles
        // over a long K: on an H200 llama3-8b Q4_K_M prefill ran 5436 tok/s with the
        // double-buffered choice below (abf2394) and, in an earlier build, 6307 with these
        // tiles, the tuner's pick for its Q4_K and Q6_K GEMMs then. Not measured as a default.
        let k_quant = weight_layout(self.format).is_some_and(|l| l.block_values == 256);
        let chosen =
            if (self.n >= 8192 || (k_quant && self.n >= 2048 && self.k >= 2048)) && bk == 64 {
                knobs(128, 128, 64, 4, 2, 1)
            } else if self.n >= 2048 && self.k >= 2048 {
                knobs(128, 128, 32, 2, 4, 2)
            } else if self.n >= 2048 {
                knobs(64, 64, bk, 2, 2, 2)
            } else {
                knobs(32, 64, bk, 1, 2, 2)
            };
        if self.with_knobs(&chosen).validate().is_ok() {
            chosen
        } else {
            knobs(64, 64, bk, 2, 2, 1)
        }
    }

    fn padded(&self) -> u32 {
        self.bk + 8
    }
}

impl OpContext for GemmTilesContext {
    fn op(&self) -> &'static str {
        "matmul_gemm_tiles"
    }
    fn template(&self) -> &'static str {
        if self.int8 {
            "matmul_gemm_tiles_q8.hip.tera"
        } else {
            "matmul_gemm_tiles.hip.tera"
        }
    }
    fn weight_format(&self) -> Option<GgmlType> {
        Some(self.format)
    }
    fn matrix_tiles(&self) -> bool {
        true
    }
    fn problem(&self) -> String {
        format!(
            "matmul_gemm_tiles {} K={} N={}",
            self.format.name(),
            self.k,
            self.n
        )
    }
    fn validate(&self) -> Result<(), CodegenError> {
        let layout = check_row_length(self, self.format, self.k)?;
        require(
            self.warps_m >= 1
                && self.warps_n >= 1
                && self.bm.is_multiple_of(self.warps_m * TILE)
                && self.bn.is_multiple_of(self.warps_n * TILE),
            self,
            || {
                format!(
                    "a {}x{} tile does not split into {}x{} warps of 16x16 tiles",
                    self.bm, self.bn, self.warps_m, self.warps_n
                )
            },
        )?;
        require(
            self.bk > 0
                && self.bk.is_multiple_of(TILE)
                && (self.bk as usize).is_multiple_of(layout.chunk)
                && self.k.is_multiple_of(self.bk as usize),
            self,
            || {
                format!(
                    "BK {} must be a multiple of 16 and of the {}-value chunk and divide K {}",
                    self.bk, layout.chunk, self.k
                )
            },
        )?;
        require(matches!(self.stages, 1 | 2), self, || {
            format!("{} tile stages; 1 or 2 are offered", self.stages)
        })?;
        require(
            !self.int8 || (self.int8_offered && self.stages == 1 && self.bk.is_multiple_of(32)),
            self,
            || {
                format!(
                    "the int8 variant needs int8 matrix tiles on the target, a format with int8 \
                     chunks (Q4_0, Q8_0), one stage and BK a multiple of 32 (BK {}, {} stages)",
                    self.bk, self.stages
                )
            },
        )?;
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (
            warps(self.target.warp_size, self.warps_m * self.warps_n),
            1,
            1,
        )
    }
    /// The f16 tiles of every stage; the epilogue's f32 patches reuse them. int8: the int8
    /// tiles (rows padded by 16 bytes) and an f32 scale per row and 32-value block.
    fn shared_bytes(&self) -> u32 {
        if self.int8 {
            return (self.bm + self.bn) * (self.bk + 16 + self.bk / 32 * 4);
        }
        let tiles = self.stages * (self.bm + self.bn) * self.padded() * 2;
        let patches = self.warps_m * self.warps_n * 16 * (16 + 4) * 4;
        tiles.max(patches)
    }
    fn grid_rule(&self) -> GridRule {
        GridRule {
            x: Extent::Fixed((self.n as u32).div_ceil(self.bn)),
            y: Extent::per_token(1, self.bm),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

impl Tunable for GemmTilesContext {
    type Knobs = GemmTilesKnobs;
    fn knobs(&self) -> GemmTilesKnobs {
        GemmTilesKnobs {
            bm: self.bm,
            bn: self.bn,
            bk: self.bk,
            warps_m: self.warps_m,
            warps_n: self.warps_n,
            stages: self.stages,
            int8: self.int8,
        }
    }
    fn candidates(&self) -> Vec<GemmTilesKnobs> {
        let mut tiles = vec![self.default_knobs()];
        tiles.extend(F16_TILES.iter().map(|&t| tile_knobs(t, 1, false)));
        // Every tile again double-buffered, where both stages fit in shared memory.
        tiles.extend(F16_TILES.iter().map(|&t| tile_knobs(t, 2, false)));
        if self.int8_offered {
            tiles.extend(INT8_TILES.iter().map(|&t| tile_knobs(t, 1, true)));
        }
        valid_candidates(self, tiles)
    }
    fn with_knobs(&self, knobs: &GemmTilesKnobs) -> Self {
        GemmTilesContext {
            bm: knobs.bm,
            bn: knobs.bn,
            bk: knobs.bk,
            warps_m: knobs.warps_m,
            warps_n: knobs.warps_n,
            stages: knobs.stages,
            int8: knobs.int8,
            ..self.clone()
        }
    }
}
