//! The decode GEMV's lane groups (`GemvContext::lane_group`, templates/matmul_gemv_lanes.hip.tera):
//! where they apply, how a warp's lanes split over rows, and the tuning candidates that use them.
//!
//! A lane reads group g of a row, its bytes [g * B, (g + 1) * B) with B = lane_group * block
//! bytes, as B / V aligned vector loads of V = 16 bytes (where B is a multiple of 16) or 8 (of 8).
//! Every such address is a multiple of V when
//! 1. the weight starts V-aligned,
//! 2. a row is whole groups (K a multiple of 32 * lane_group values: a row is then a whole
//!    number of B-byte groups, so every row starts V-aligned too), and
//! 3. B is a multiple of V (at least 8).
//!
//! Condition 1 holds for every weight the executor binds, and so for the tuner and the GPU
//! tests, which launch on the executor's weights: each tensor sits at a multiple of
//! `backend::gpu::layout::ALIGN` (256 bytes) in one allocation, which the CUDA and HIP
//! allocators align to 256 bytes as well. Conditions 2 and 3 are checked here for every segment
//! (`lane_group_misfit`): a GEMV where they fail is invalid with lane groups, so the tuner never
//! offers them there. Llama3-8b's K = 4096 and 14336 take groups of 8 (Q4_0: 144 bytes, 9 loads
//! of 16; Q8_0: 272 = 17 x 16; Q4_1: 160 = 10 x 16) and of 4 (Q4_0: 72 = 9 x 8; Q8_0: 136 =
//! 17 x 8; Q4_1: 80 = 5 x 16); qwen2.5-0.5b's K = 896 (28 blocks) only groups of 4.

use super::matmul::{GemvContext, GemvEpilogue, GemvKnobs, GEMV_MAX_LANE_GROUP};
use crate::codegen::context::require;
use crate::codegen::error::CodegenError;
use crate::codegen::quant::weight_layout;

/// Values per block of every format with `dot_words_q8`.
const LANE_BLOCK_VALUES: usize = 32;
/// The narrowest vector load a lane group is read with.
const MIN_VECTOR_BYTES: usize = 8;
/// 32-bit registers of an NVIDIA SM and the most of one thread, which bound a lane group's round
/// (AMD targets allow more per thread at a given block size: there the bound is conservative).
const MAX_REGISTERS_PER_SM: usize = 65536;
const MAX_REGISTERS_PER_THREAD: usize = 255;

impl GemvContext {
    /// Whether the lanes own lane groups (`lane_group` above 1).
    pub fn lane_groups(&self) -> bool {
        self.lane_group > 1
    }

    /// Lanes per row: the whole warp, or with lane groups the largest power of two not above a
    /// row's groups, so that every lane has at least one: K = 4096 in groups of 8 blocks is 16
    /// groups, and two rows share a 32-lane warp.
    pub fn row_lanes(&self) -> u32 {
        let warp = self.target.warp_size;
        if !self.lane_groups() {
            return warp;
        }
        let groups = self.lane_row_groups().max(1) as u32;
        (1u32 << groups.ilog2()).min(warp)
    }

    /// Sub-warps per warp (`warp_size / row_lanes`), each owning `rows_per_warp` rows of its own.
    pub fn subwarps(&self) -> u32 {
        self.target.warp_size / self.row_lanes()
    }

    /// Why groups of `lane_group` blocks cannot be read with aligned vector loads in every
    /// segment of this GEMV (conditions 2 and 3 of the module documentation), or None.
    pub fn lane_group_misfit(&self, lane_group: u32) -> Option<String> {
        let values = LANE_BLOCK_VALUES * lane_group as usize;
        if !self.k.is_multiple_of(values) {
            return Some(format!(
                "rows of {} values are not whole lane groups of {values}",
                self.k
            ));
        }
        for s in &self.segments {
            let layout = weight_layout(s.format).filter(|l| l.words_dot);
            let Some(layout) = layout else {
                return Some(format!("{} has no dot_words_q8", s.format.name()));
            };
            let bytes = layout.block_bytes * lane_group as usize;
            if !bytes.is_multiple_of(MIN_VECTOR_BYTES) {
                return Some(format!(
                    "a lane group of {lane_group} {} blocks is {bytes} bytes, not whole \
                     {MIN_VECTOR_BYTES}-byte vectors",
                    s.format.name()
                ));
            }
        }
        None
    }

    pub(super) fn validate_lane_group(&self) -> Result<(), CodegenError> {
        if !self.lane_groups() {
            return Ok(());
        }
        require(self.lane_group <= GEMV_MAX_LANE_GROUP, self, || {
            format!(
                "lane groups of {} blocks; at most {GEMV_MAX_LANE_GROUP}",
                self.lane_group
            )
        })?;
        require(self.x_int8 && self.split_k == 1, self, || {
            "lane groups need int8 x and no split-K".to_string()
        })?;
        require(
            self.unroll == 1 || self.lane_row_groups() > self.row_lanes() as usize,
            self,
            || {
                format!(
                    "rounds of {} lane groups on rows that are one round of {} groups",
                    self.unroll,
                    self.lane_row_groups()
                )
            },
        )?;
        match self.lane_group_misfit(self.lane_group) {
            Some(reason) => require(false, self, || reason),
            None => Ok(()),
        }
    }

    /// Lane groups per row.
    fn lane_row_groups(&self) -> usize {
        self.k / (LANE_BLOCK_VALUES * self.lane_group.max(1) as usize)
    }

    /// Words of weights a lane holds for one round: rows per sub-warp x groups per round x the
    /// largest segment's group, twice for silu_mul (both weights' rounds are loaded together).
    fn round_words(&self, knobs: &GemvKnobs) -> usize {
        let group_words = self
            .segments
            .iter()
            .filter_map(|s| weight_layout(s.format))
            .map(|l| l.block_bytes * knobs.lane_group as usize / 4)
            .max()
            .unwrap_or(0);
        let loaded_together = match self.epilogue {
            GemvEpilogue::SiluMul => 2,
            _ => 1,
        };
        loaded_together * (knobs.rows_per_warp * knobs.unroll) as usize * group_words
    }

    /// Lane groups of 8 blocks (16-byte loads for every lane-group format) and of 4 (8-byte
    /// loads of Q4_0 and Q8_0) over warps per block, rows per sub-warp, groups per round, row
    /// groups per block and the first round loaded before the prologue, with the default's
    /// prefetch. Only those whose round takes at most half the registers a thread of the block
    /// may have: above that NVRTC spilled for sm_90 (llama3-8b Q4_0 gate/up and down, e.g. 72
    /// words of gate and up in groups of 8 at 512 threads, 128 registers) or left one block per
    /// SM. Invalid ones (misfits, over 1024 threads, rounds of several groups on rows of one
    /// round) are dropped later.
    pub(super) fn lane_group_candidates(&self, default: &GemvKnobs) -> Vec<GemvKnobs> {
        let mut list = Vec::new();
        for lane_group in [8, 4] {
            for (rows_per_block, rows_per_warp, unroll, row_groups, preload) in [
                (32, 1, 1, 1, false),
                (16, 1, 1, 1, false),
                (8, 1, 1, 1, false),
                (4, 1, 1, 1, false),
                (16, 1, 1, 1, true),
                (8, 1, 1, 1, true),
                (16, 1, 2, 1, false),
                (8, 1, 2, 1, true),
                (8, 2, 1, 1, false),
                (16, 2, 1, 2, false),
            ] {
                let knobs = GemvKnobs {
                    rows_per_block,
                    rows_per_warp,
                    split_k: 1,
                    tokens: 1,
                    x_int8: true,
                    prefetch: default.prefetch,
                    unroll,
                    row_groups,
                    preload,
                    lane_group,
                };
                let threads = (self.target.warp_size * rows_per_block) as usize;
                let registers =
                    (MAX_REGISTERS_PER_SM / threads.max(1)).min(MAX_REGISTERS_PER_THREAD);
                if 2 * self.round_words(&knobs) <= registers {
                    list.push(knobs);
                }
            }
        }
        list
    }
}
