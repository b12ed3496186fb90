//! The decode GEMV's default knobs per shape and its tuning candidates (`GemvContext`'s
//! `Tunable`): which geometry, chunk rounds, row groups and x staging to use where.

use super::matmul::{GemvContext, GemvEpilogue, GemvKnobs};
use crate::codegen::context::{valid_candidates, OpContext, Tunable};
use crate::gguf::GgmlType;

/// Output rows from which the default GEMV gives each warp two rows (LM heads).
const GEMV_WIDE_ROWS: usize = 65536;
/// Rows and row length from which a GEMV is bandwidth-bound rather than latency-bound
/// (llama3-8b's projections, not qwen2.5-0.5b's), and gets the wide default (see `default_knobs`).
const GEMV_BIG_ROWS: usize = 4096;
const GEMV_BIG_K: usize = 4096;

/// What the default knobs depend on besides formats: big (bandwidth-bound), wide (an LM head),
/// a norm before it, gate and up in one pass.
#[derive(Clone, Copy)]
struct GemvShape {
    big: bool,
    wide: bool,
    norm: bool,
    pair: bool,
}

impl GemvContext {
    /// Eight warps per block, one row per warp: `rocmforge tune` on an H200 chose this for 7 of
    /// the 8 non-LM-head GEMVs of qwen2.5-0.5b and llama3-8b Q4_0 (1.08-1.94x over the previous
    /// default of four warps of one to four rows: many short warps keep more loads in flight);
    /// qwen's K=4864 down projection preferred split-K or 16 warps, left to tuning. For the very
    /// wide LM heads (64K+ rows) two rows per warp, which tuning also preferred there. Int8
    /// x wherever the formats have an int8 dot and the staged x fits in shared memory: integer
    /// dot products take a fraction of the instructions per weight. Small GEMVs prefetch their
    /// whole rows into L2 before the x prologue, so that the DRAM latency runs under it: tuning
    /// chose that on every small GEMV it gained on (H200, session 6: qwen2.5-0.5b Q4_0 and Q8_0
    /// q/k/v 1.12-1.14x and gate/up 1.09-1.10x, SmolLM2's 1.16x and 1.28x, the 896-row output
    /// and down projections earlier, 1.10x and 1.21x); too few blocks to fill the GPU leave a
    /// small GEMV latency-bound.
    ///
    /// Big GEMVs (`GEMV_BIG_ROWS` rows, `GEMV_BIG_K` values per row: llama3-8b) are bound by
    /// bytes in flight, not launch latency. What `rocmforge tune` chose on an H200 for
    /// llama3-8b Q4_0 at position 512 (session 6, per call): 16 warps of one row for the GEMVs
    /// with a norm (q/k/v 9.61 against 12.27 us with 32 warps; gate/up, one pass over x for both
    /// weights, 30.56 against 37.39 with two chunks per round and two row groups per block); 32
    /// warps for those without, prefetching the first rows' chunks into L2 (output 5.72 against
    /// 6.45 with four rounds, i.e. whole rows; down 16.34 against 17.14 with two rounds and two
    /// chunks per round); the LM head 16 warps of two rows, two chunks per round and two row
    /// groups per block (104.1, the best of 79). Those rounds of two chunks are where the dot
    /// splits into loads and arithmetic (Q4_0, Q8_0: software-pipelined). K-quants' rounds
    /// prefetch the next one into L2 instead; what tuning chose on llama3-8b Q4_K_M (session 7):
    /// four chunks per round and four row groups for gate/up (Q4_K, 30.67 against 41.41 us) and
    /// the LM head (Q6_K, 172.6 against 186.9), two chunks per round for the down projections
    /// (Q4_K 16.86 against 18.32, Q6_K 26.05 against 27.19). Q4_0 and Q8_0 adjust some
    /// (`format_knobs`); every AMD target gets these geometries untimed. A block holds at most
    /// 1024 threads: 16 warps on 64-lane targets.
    pub(super) fn default_knobs(&self) -> GemvKnobs {
        let shape = GemvShape {
            big: self.k >= GEMV_BIG_K && self.blocks(1) >= GEMV_BIG_ROWS,
            wide: self.blocks(1) >= GEMV_WIDE_ROWS,
            norm: self.norm_eps.is_some(),
            pair: self.epilogue == GemvEpilogue::SiluMul,
        };
        let GemvShape {
            big,
            wide,
            norm,
            pair,
        } = shape;
        let max_warps = (1024 / self.target.warp_size.max(1)) as usize;
        let rows_per_block = match (big, wide || norm) {
            (false, _) => 8,
            (true, true) => 16,
            (true, false) => 32.min(max_warps),
        };
        let rows_per_warp = if wide { 2 } else { 1 };
        // (warps per row, chunks per round, row groups per block). Big GEMVs: the
        // software-pipelined rounds of split dots (Q4_0, Q8_0), or the K-quants' rounds that
        // prefetch the next one into L2.
        let (split_k, unroll, row_groups) = match (big, self.raw_chunks()) {
            (false, _) => (1, 1, 1),
            (true, true) if wide || pair => (1, 2, 2),
            (true, true) if self.k >= 2 * GEMV_BIG_K => (1, 2, 1),
            (true, false) if wide || pair => (1, 4, 4),
            (true, false) if !norm && self.k >= 2 * GEMV_BIG_K => (1, 2, 1),
            (true, _) => (1, 1, 1),
        };
        let prefetch = match (big, norm) {
            (false, _) => self.prefetch_rounds(16),
            (true, true) => 0,
            (true, false) => self.prefetch_rounds(if self.k <= GEMV_BIG_K { 4 } else { 2 }),
        };
        let knobs = GemvKnobs {
            rows_per_block: rows_per_block as u32,
            rows_per_warp,
            split_k,
            tokens: 1,
            x_int8: true,
            prefetch,
            unroll,
            row_groups,
            preload: false,
            lane_group: 0,
        };
        let knobs = self.format_knobs(knobs, shape);
        let x_int8 = self.with_knobs(&knobs).validate().is_ok();
        GemvKnobs { x_int8, ..knobs }
    }

    /// The measured exceptions of one weight format to the defaults above, where
    /// `rocmforge tune` on an H200 chose otherwise.
    ///
    /// Q4_0, qwen2.5-0.5b: the down projection (rows longer than a big GEMV's, too few to fill
    /// the GPU) two warps per row, four chunks per round (sessions 6 and 7: 4.69-4.79 against
    /// 5.81 us; with one warp per row dependent launches lost to plain, 1600.5 against 1741.9
    /// tok/s tg128, with it 1895.1 against 1700.2); the LM head (151936 x 896) lane groups of
    /// four blocks, no prefetch (sessions 5 and 6: 48.4 -> 39.3 and 52.7 -> 39.0 us).
    ///
    /// Q8_0, whose 34-byte blocks carry twice Q4_0's bytes per chunk (per call, position 64,
    /// session 8; qwen2.5-0.5b's at 512 in session 7 too): llama3-8b's gate/up 8 warps of two
    /// rows, one chunk at a time (45.76 against 49.10 us), its LM head 8 warps (163.2 against
    /// 172.4), its q/k/v and output the first chunk round prefetched into L2 (12.43 against
    /// 12.90, 7.80 against 8.71); qwen2.5-0.5b's down projection 16 warps (5.21 against 6.14;
    /// with 8 warps dependent launches lost to plain ones there) and its LM head 4 warps of four
    /// rows (53.7 against 56.1). Other formats' shapes were not measured against these.
    fn format_knobs(&self, knobs: GemvKnobs, shape: GemvShape) -> GemvKnobs {
        let (big, wide) = (shape.big, shape.wide);
        let long_rows = !big && !shape.norm && self.k > GEMV_BIG_K;
        let format = self.segments[0].format;
        if self.segments.iter().any(|s| s.format != format) {
            return knobs;
        }
        match format {
            GgmlType::Q4_0 if long_rows => GemvKnobs {
                split_k: 2,
                unroll: 4,
                ..knobs
            },
            GgmlType::Q4_0 if wide && !big => {
                let lanes = GemvKnobs {
                    lane_group: 4,
                    prefetch: 0,
                    ..knobs.clone()
                };
                if self.with_knobs(&lanes).validate().is_ok() {
                    lanes
                } else {
                    knobs
                }
            }
            GgmlType::Q8_0 => match (big, wide, shape.pair) {
                (true, _, true) => GemvKnobs {
                    rows_per_block: 8,
                    rows_per_warp: 2,
                    unroll: 1,
                    row_groups: 1,
                    ..knobs
                },
                (true, true, false) => GemvKnobs {
                    rows_per_block: 8,
                    ..knobs
                },
                (true, false, false) if self.k <= GEMV_BIG_K => GemvKnobs {
                    prefetch: self.prefetch_rounds(1),
                    ..knobs
                },
                (false, true, _) => GemvKnobs {
                    rows_per_block: 4,
                    rows_per_warp: 4,
                    ..knobs
                },
                (false, false, false) if long_rows => GemvKnobs {
                    rows_per_block: 16,
                    ..knobs
                },
                _ => knobs,
            },
            _ => knobs,
        }
    }

    /// `rounds` where the target can prefetch into L2, else 0 (the knob would change nothing).
    fn prefetch_rounds(&self, rounds: u32) -> u32 {
        if self.target.platform == "cuda" {
            rounds
        } else {
            0
        }
    }
}

impl Tunable for GemvContext {
    type Knobs = GemvKnobs;
    fn knobs(&self) -> GemvKnobs {
        GemvKnobs {
            rows_per_block: self.rows_per_block,
            rows_per_warp: self.rows_per_warp,
            split_k: self.split_k,
            tokens: self.tokens,
            x_int8: self.x_int8,
            prefetch: self.prefetch,
            unroll: self.unroll,
            row_groups: self.row_groups,
            preload: self.preload,
            lane_group: self.lane_group,
        }
    }
    fn candidates(&self) -> Vec<GemvKnobs> {
        let default = self.default_knobs();
        // The default geometry with f32 x next, so that a tuner compares int8 with f32 directly.
        let mut list = vec![
            default.clone(),
            GemvKnobs {
                x_int8: false,
                ..default.clone()
            },
        ];
        // The default geometry with some of its rows prefetched into L2 (16 rounds cover a row
        // of K <= 16384 at 32 lanes; more in flight can evict rows before use).
        for rounds in [0, 1, 2, 4, 16] {
            list.push(GemvKnobs {
                prefetch: self.prefetch_rounds(rounds),
                ..default.clone()
            });
        }
        // (warp rows per block, rows per warp, split-K), each with int8 x (where the formats
        // allow it) and with f32 x, with the default prefetch, one chunk per lane at a time and a
        // row group per block (the small-model default's loop).
        for (rows_per_block, rows_per_warp, split_k) in [
            (4, 4, 1),
            (4, 8, 1),
            (2, 4, 1),
            (8, 2, 1),
            (4, 2, 1),
            (4, 1, 1),
            (8, 1, 1),
            (2, 8, 1),
            (1, 4, 2),
            (2, 4, 2),
            (2, 2, 2),
            (1, 8, 4),
            (2, 1, 4),
            (2, 2, 4),
            (4, 1, 2),
        ] {
            for x_int8 in [true, false] {
                list.push(GemvKnobs {
                    rows_per_block,
                    rows_per_warp,
                    split_k,
                    tokens: 1,
                    x_int8,
                    prefetch: default.prefetch,
                    unroll: 1,
                    row_groups: 1,
                    preload: false,
                    lane_group: 0,
                });
            }
        }
        // Bytes in flight (unroll) against prologues per row (warps per block, row groups per
        // block), with the default rows per warp, x and prefetch: the knobs for big GEMVs.
        let wide = |rows_per_block, split_k, unroll, row_groups| GemvKnobs {
            rows_per_block,
            split_k,
            unroll,
            row_groups,
            preload: false,
            ..default.clone()
        };
        for rows_per_block in [8, 16, 32] {
            for unroll in [1, 2, 4, 8] {
                list.push(wide(rows_per_block, 1, unroll, 1));
            }
        }
        for (rows_per_block, split_k, unroll, row_groups) in [
            (8, 1, 2, 2),
            (8, 1, 4, 2),
            (8, 1, 4, 4),
            (16, 1, 2, 2),
            (16, 1, 4, 2),
            (16, 1, 4, 4),
            (4, 2, 2, 1),
            (4, 2, 4, 1),
            (8, 2, 4, 1),
            (8, 2, 4, 2),
        ] {
            list.push(wide(rows_per_block, split_k, unroll, row_groups));
        }
        // The first round loaded before the prologue (invalid, so dropped, where the formats do
        // not split their dots).
        for (rows_per_block, unroll, row_groups) in [
            (8, 2, 1),
            (8, 4, 1),
            (16, 2, 1),
            (16, 4, 1),
            (8, 4, 2),
            (16, 4, 2),
        ] {
            list.push(GemvKnobs {
                preload: true,
                ..wide(rows_per_block, 1, unroll, row_groups)
            });
        }
        // Batched decode (a few tokens per launch) reads each weight once for all of them.
        for (rows_per_warp, tokens) in [(2, 2), (1, 4), (2, 4)] {
            list.push(GemvKnobs {
                rows_per_block: 4,
                rows_per_warp,
                split_k: 1,
                tokens,
                x_int8: false,
                prefetch: default.prefetch,
                unroll: 1,
                row_groups: 1,
                preload: false,
                lane_group: 0,
            });
        }
        // Last, so that the indices of the candidates above (tuning databases) stay as they were.
        list.extend(self.lane_group_candidates(&default));
        valid_candidates(self, list)
    }
    fn with_knobs(&self, knobs: &GemvKnobs) -> Self {
        GemvContext {
            rows_per_block: knobs.rows_per_block,
            rows_per_warp: knobs.rows_per_warp,
            split_k: knobs.split_k,
            tokens: knobs.tokens,
            x_int8: knobs.x_int8,
            prefetch: knobs.prefetch,
            unroll: knobs.unroll,
            row_groups: knobs.row_groups,
            preload: knobs.preload,
            lane_group: knobs.lane_group,
            ..self.clone()
        }
    }
}
