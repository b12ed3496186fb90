//! Matrix products with GGUF weights W [N rows of K]: `out[t][n] = W[n] . x[t] (+ bias[n])`.
//! GEMV for decode (a warp per few rows sharing the x chunk in registers, dequantized in
//! registers; optionally fused with the RMSNorm before it and the residual add or silu_mul after
//! it) and a shared-memory tiled GEMM for prefill; both read W through the format's `dq_chunk`.

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

/// Most tokens one GEMV block serves (its per-thread accumulators).
pub const GEMV_MAX_TOKENS: u32 = 8;
/// Most output rows one GEMV warp owns (its accumulators are rows x tokens registers).
pub const GEMV_MAX_ROWS_PER_WARP: u32 = 8;
/// Most weight matrices one GEMV reads (q, k and v).
pub const GEMV_MAX_SEGMENTS: usize = 3;
/// Most chunk loads per lane one GEMV round issues together (`GemvContext::unroll`).
pub const GEMV_MAX_UNROLL: u32 = 8;
/// Most row groups one GEMV block computes (`GemvContext::row_groups`).
pub const GEMV_MAX_ROW_GROUPS: u32 = 16;
/// Most quant blocks in one GEMV lane group (`GemvContext::lane_group`; its registers: 68 words
/// per row of Q8_0 at 8).
pub const GEMV_MAX_LANE_GROUP: u32 = 8;

/// What the GEMV does with its rows (see `templates/matmul_gemv.hip.tera`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GemvEpilogue {
    /// Each segment's rows into its own output.
    Store,
    /// One segment: `out = residual + W x`.
    Residual,
    /// Two segments of equal rows: `out = silu(W0 x) * (W1 x)`.
    SiluMul,
}

/// One weight matrix of a GEMV: `n` rows of `k` values in `format`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GemvSegment {
    #[serde(skip)]
    pub format: GgmlType,
    pub weight_format: &'static str,
    pub n: usize,
    /// The format's snippet splits its int8 dot into the loads of a chunk (`ld_chunk_raw`) and
    /// the arithmetic on them (`dot_raw_q8`), so that unrolled rounds issue all their loads
    /// first: ptxas was seen keeping each chunk's loads after the previous chunk's dp4a.
    pub raw_chunks: bool,
}

impl GemvSegment {
    pub fn new(format: GgmlType, n: usize) -> GemvSegment {
        GemvSegment {
            format,
            weight_format: weight_layout(format).map_or("unsupported", |l| l.tag),
            n,
            raw_chunks: matches!(format, GgmlType::Q4_0 | GgmlType::Q8_0),
        }
    }
}

/// The decode GEMV: up to three weight matrices sharing the input row, an optional RMSNorm of
/// the input on the fly, and an epilogue.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GemvContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    pub k: usize,
    pub segments: Vec<GemvSegment>,
    /// RMSNorm epsilon when the input is normalized in the prologue.
    pub norm_eps: Option<f32>,
    pub epilogue: GemvEpilogue,
    /// Warp rows per block (block y extent); each owns `rows_per_warp` output rows.
    pub rows_per_block: u32,
    /// Consecutive output rows per warp: one load of an x chunk serves all of them.
    pub rows_per_warp: u32,
    /// Warps sharing one row (split-K inside the block, reduced in shared memory).
    pub split_k: u32,
    /// Tokens per block: each dequantized chunk is used for all of them.
    pub tokens: u32,
    /// Int8 x: the block stages x (after the norm) once in shared memory as int8 blocks of 32
    /// (llama.cpp's q8_1), and rows are dotted with `dot_chunk_q8` (integer dp4a) instead of
    /// dequantizing weights to f32. Every segment's format needs an int8 dot; one token per block.
    pub x_int8: bool,
    /// Rounds of chunk loads per lane whose bytes each warp asks L2 for before the x prologue
    /// (0: none). Only CUDA has an L2 prefetch instruction.
    pub prefetch: u32,
    /// Chunks per lane whose loads are issued together (straight-line rounds), and x blocks per
    /// warp the int8 prologue loads together: more bytes in flight per SM. 1: one at a time.
    pub unroll: u32,
    /// Row groups (`rows_per_block * rows_per_warp` rows each) one block computes after one
    /// prologue, so that fewer blocks re-read and re-quantize x. 1: a block per group.
    pub row_groups: u32,
    /// Load the first round of weights into registers before the x prologue (int8 x, unroll > 1,
    /// formats with split dots): the prologue then runs under their DRAM latency, but the
    /// registers held through it (86-128 per thread at unroll 4 on sm_90, from 64) can halve
    /// the blocks resident per SM.
    pub preload: bool,
    /// Quant blocks per lane group (0 or 1: off; see `gemv_lanes`): with int8 x each lane owns
    /// groups of this many consecutive blocks of a row, read with aligned 16- or 8-byte vector
    /// loads, and rows of fewer groups than a warp has lanes share the warp.
    pub lane_group: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GemvKnobs {
    pub rows_per_block: u32,
    pub rows_per_warp: u32,
    pub split_k: u32,
    pub tokens: u32,
    pub x_int8: bool,
    pub prefetch: u32,
    pub unroll: u32,
    pub row_groups: u32,
    pub preload: bool,
    pub lane_group: u32,
}

impl GemvContext {
    /// A plain matmul: one weight, no norm, rows stored.
    pub fn new(target: &Target, format: GgmlType, k: usize, n: usize) -> GemvContext {
        GemvContext::fused(
            target,
            k,
            vec![GemvSegment::new(format, n)],
            None,
            GemvEpilogue::Store,
        )
    }

    pub fn fused(
        target: &Target,
        k: usize,
        segments: Vec<GemvSegment>,
        norm_eps: Option<f32>,
        epilogue: GemvEpilogue,
    ) -> GemvContext {
        let ctx = GemvContext {
            target: TargetConsts::of(target),
            k,
            segments,
            norm_eps,
            epilogue,
            rows_per_block: 0,
            rows_per_warp: 0,
            split_k: 0,
            tokens: 0,
            x_int8: false,
            prefetch: 0,
            unroll: 1,
            row_groups: 1,
            preload: false,
            lane_group: 0,
        };
        ctx.with_knobs(&ctx.default_knobs())
    }

    /// Blocks along x for `rows` output rows per block: SiluMul blocks compute a row of both
    /// segments, the others one segment's rows each.
    pub fn blocks(&self, block_rows: usize) -> usize {
        match self.epilogue {
            GemvEpilogue::SiluMul => self
                .segments
                .first()
                .map_or(0, |s| s.n.div_ceil(block_rows)),
            _ => self.segments.iter().map(|s| s.n.div_ceil(block_rows)).sum(),
        }
    }

    /// Whether every segment's format splits its int8 dot into loads and arithmetic.
    pub(super) fn raw_chunks(&self) -> bool {
        self.segments.iter().all(|s| s.raw_chunks)
    }

    /// Whether every segment's format has an int8 dot (`WeightLayout::int8_dot`).
    pub fn int8_dot(&self) -> bool {
        self.segments
            .iter()
            .all(|s| weight_layout(s.format).is_some_and(|l| l.int8_dot))
    }
}

impl OpContext for GemvContext {
    fn op(&self) -> &'static str {
        "matmul_gemv"
    }
    fn template(&self) -> &'static str {
        "matmul_gemv.hip.tera"
    }
    fn weight_format(&self) -> Option<GgmlType> {
        self.segments.first().map(|s| s.format)
    }
    fn segment_formats(&self) -> Vec<GgmlType> {
        self.segments.iter().map(|s| s.format).collect()
    }
    fn problem(&self) -> String {
        let segments: Vec<String> = self
            .segments
            .iter()
            .map(|s| format!("{} N={}", s.format.name(), s.n))
            .collect();
        let norm = if self.norm_eps.is_some() { " norm" } else { "" };
        let epilogue = match self.epilogue {
            GemvEpilogue::Store => "",
            GemvEpilogue::Residual => " +residual",
            GemvEpilogue::SiluMul => " silu_mul",
        };
        format!(
            "matmul_gemv K={} [{}]{norm}{epilogue}",
            self.k,
            segments.join(", ")
        )
    }
    fn validate(&self) -> Result<(), CodegenError> {
        require(
            (1..=GEMV_MAX_SEGMENTS).contains(&self.segments.len()),
            self,
            || {
                format!(
                    "{} weight matrices; a GEMV reads 1 to {GEMV_MAX_SEGMENTS}",
                    self.segments.len()
                )
            },
        )?;
        for s in &self.segments {
            check_row_length(self, s.format, self.k)?;
            require(s.n > 0, self, || "a weight without rows".to_string())?;
        }
        match self.epilogue {
            GemvEpilogue::Store => Ok(()),
            GemvEpilogue::Residual => require(self.segments.len() == 1, self, || {
                "a residual add takes exactly one weight".to_string()
            }),
            GemvEpilogue::SiluMul => require(
                self.segments.len() == 2 && self.segments[0].n == self.segments[1].n,
                self,
                || "silu_mul takes two weights of equal rows".to_string(),
            ),
        }?;
        require(
            self.rows_per_block >= 1 && self.split_k >= 1 && self.rows_per_warp >= 1,
            self,
            || "rows_per_block, rows_per_warp and split_k must be at least 1".to_string(),
        )?;
        require(self.rows_per_warp <= GEMV_MAX_ROWS_PER_WARP, self, || {
            format!(
                "rows per warp {} is above {GEMV_MAX_ROWS_PER_WARP}",
                self.rows_per_warp
            )
        })?;
        require((1..=GEMV_MAX_TOKENS).contains(&self.tokens), self, || {
            format!(
                "tokens per block {} is outside 1..={GEMV_MAX_TOKENS}",
                self.tokens
            )
        })?;
        require((1..=GEMV_MAX_UNROLL).contains(&self.unroll), self, || {
            format!("unroll {} is outside 1..={GEMV_MAX_UNROLL}", self.unroll)
        })?;
        require(
            (1..=GEMV_MAX_ROW_GROUPS).contains(&self.row_groups),
            self,
            || {
                format!(
                    "row groups per block {} is outside 1..={GEMV_MAX_ROW_GROUPS}",
                    self.row_groups
                )
            },
        )?;
        require(
            !self.preload
                || (self.x_int8 && (self.lane_groups() || self.unroll > 1 && self.raw_chunks())),
            self,
            || {
                "preloading a round needs int8 x, and lane groups or unroll above 1 and formats \
                 with split dots (Q4_0, Q8_0)"
                    .to_string()
            },
        )?;
        self.validate_lane_group()?;
        if self.x_int8 {
            require(self.int8_dot(), self, || {
                "int8 x needs weight formats with an int8 dot (not F32/F16/BF16)".to_string()
            })?;
            require(self.tokens == 1, self, || {
                format!("int8 x stages one token per block, not {}", self.tokens)
            })?;
        }
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (
            warps(self.target.warp_size, self.split_k),
            self.rows_per_block,
            1,
        )
    }
    fn shared_bytes(&self) -> u32 {
        let warps = self.rows_per_block * self.split_k;
        let norm = if self.norm_eps.is_some() {
            4 * self.tokens * (warps + 1)
        } else {
            0
        };
        let partial = if self.split_k > 1 {
            4 * 2 * self.rows_per_block * self.rows_per_warp * self.split_k * self.tokens
        } else {
            0
        };
        // int8 x: K bytes of quants plus a scale and a sum (f32) per 32 values.
        let x_int8 = if self.x_int8 {
            (self.k + 8 * (self.k / 32)) as u32
        } else {
            0
        };
        norm + partial + x_int8
    }
    fn grid_rule(&self) -> GridRule {
        let rows = (self.rows_per_block * self.rows_per_warp * self.subwarps()) as usize;
        let groups = self.blocks(rows);
        GridRule {
            x: Extent::Fixed(groups.div_ceil(self.row_groups.max(1) as usize) as u32),
            y: Extent::per_token(1, self.tokens),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GemmContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    #[serde(skip)]
    pub format: GgmlType,
    pub weight_format: &'static str,
    pub k: usize,
    pub n: usize,
    /// Tile: BM tokens x BN rows, stepping K by BK; each thread computes TM x TN outputs.
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    pub tm: u32,
    pub tn: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GemmKnobs {
    pub bm: u32,
    pub bn: u32,
    pub bk: u32,
    pub tm: u32,
    pub tn: u32,
}

impl GemmContext {
    pub fn new(target: &Target, format: GgmlType, k: usize, n: usize) -> GemmContext {
        let tag = weight_layout(format).map_or("unsupported", |l| l.tag);
        let ctx = GemmContext {
            target: TargetConsts::of(target),
            format,
            weight_format: tag,
            k,
            n,
            bm: 0,
            bn: 0,
            bk: 0,
            tm: 0,
            tn: 0,
        };
        ctx.with_knobs(&ctx.default_knobs())
    }

    /// 64 x 64 tiles, 256 threads of 4 x 4 outputs; BK 32, or one chunk when K is not a multiple of 32.
    fn default_knobs(&self) -> GemmKnobs {
        let chunk = weight_layout(self.format).map_or(32, |l| l.chunk) as u32;
        let bk = if self.k.is_multiple_of(32) { 32 } else { chunk };
        GemmKnobs {
            bm: 64,
            bn: 64,
            bk,
            tm: 4,
            tn: 4,
        }
    }
}

impl OpContext for GemmContext {
    fn op(&self) -> &'static str {
        "matmul_gemm"
    }
    fn template(&self) -> &'static str {
        "matmul_gemm.hip.tera"
    }
    fn weight_format(&self) -> Option<GgmlType> {
        Some(self.format)
    }
    fn problem(&self) -> String {
        format!(
            "matmul_gemm {} K={} N={}",
            self.format.name(),
            self.k,
            self.n
        )
    }
    fn validate(&self) -> Result<(), CodegenError> {
        let layout = check_row_length(self, self.format, self.k)?;
        require(self.n > 0, self, || "no output rows".to_string())?;
        require(
            self.tm >= 1
                && self.tn >= 1
                && self.bm.is_multiple_of(self.tm)
                && self.bn.is_multiple_of(self.tn),
            self,
            || {
                format!(
                    "thread tile {}x{} does not divide block tile {}x{}",
                    self.tm, self.tn, self.bm, self.bn
                )
            },
        )?;
        require(
            self.bk > 0
                && (self.bk as usize).is_multiple_of(layout.chunk)
                && self.k.is_multiple_of(self.bk as usize),
            self,
            || {
                format!(
                    "BK {} must be a multiple of the {}-value chunk and divide K {}",
                    self.bk, layout.chunk, self.k
                )
            },
        )?;
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (
            (self.bm / self.tm.max(1)) * (self.bn / self.tn.max(1)),
            1,
            1,
        )
    }
    fn shared_bytes(&self) -> u32 {
        4 * (self.bm + self.bn) * (self.bk + 1)
    }
    fn grid_rule(&self) -> GridRule {
        let x = (self.n as u32).div_ceil(self.bn);
        GridRule {
            x: Extent::Fixed(x),
            y: Extent::per_token(1, self.bm),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

impl Tunable for GemmContext {
    type Knobs = GemmKnobs;
    fn knobs(&self) -> GemmKnobs {
        GemmKnobs {
            bm: self.bm,
            bn: self.bn,
            bk: self.bk,
            tm: self.tm,
            tn: self.tn,
        }
    }
    fn candidates(&self) -> Vec<GemmKnobs> {
        let mut list = vec![self.default_knobs()];
        for (bm, bn, bk, tm, tn) in [
            (32, 64, 32, 2, 4),
            (64, 128, 32, 4, 8),
            (128, 64, 32, 8, 4),
            (64, 64, 64, 4, 4),
            (32, 32, 32, 2, 2),
        ] {
            list.push(GemmKnobs { bm, bn, bk, tm, tn });
        }
        valid_candidates(self, list)
    }
    fn with_knobs(&self, knobs: &GemmKnobs) -> Self {
        GemmContext {
            bm: knobs.bm,
            bn: knobs.bn,
            bk: knobs.bk,
            tm: knobs.tm,
            tn: knobs.tn,
            ..self.clone()
        }
    }
}
