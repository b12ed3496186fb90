//! Where the decode GEMV's lane groups are offered (its tuning candidates) and how they lay out a
//! warp: only where every vector load of a group is aligned, on the formats with `dot_words_q8`;
//! rows of few groups in sub-warps, the grid covering every row; the defaults without them.

use std::collections::BTreeSet;

use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::{Extent, OpContext, Tunable};
use rocmforge::codegen::ops::matmul::{GemvEpilogue, GemvSegment};
use rocmforge::codegen::ops::GemvContext;
use rocmforge::codegen::Renderer;
use rocmforge::gguf::GgmlType;

const TARGETS: [&str; 3] = ["sm_90", "gfx90a", "gfx1030"];

fn gemv(target: &str, k: usize, segments: &[(GgmlType, usize)]) -> GemvContext {
    let t = Target::parse(target).unwrap();
    let segments = segments
        .iter()
        .map(|&(f, n)| GemvSegment::new(f, n))
        .collect();
    GemvContext::fused(&t, k, segments, Some(1e-5), GemvEpilogue::Store)
}

/// The alignment conditions written out apart from the code under test: the width of the vector
/// loads that read groups of `g` blocks of `format` in rows of `k` values, None where a row is
/// not whole groups or a group not whole 8- or 16-byte vectors, or the format has no
/// `dot_words_q8` (Q4_0, Q8_0, Q4_1).
fn vector_bytes(format: GgmlType, k: usize, g: usize) -> Option<usize> {
    let block = match format {
        GgmlType::Q4_0 => 18,
        GgmlType::Q8_0 => 34,
        GgmlType::Q4_1 => 20,
        _ => return None,
    };
    if !k.is_multiple_of(32 * g) {
        return None;
    }
    [16, 8].into_iter().find(|v| (block * g).is_multiple_of(*v))
}

fn offered(ctx: &GemvContext) -> BTreeSet<u32> {
    ctx.candidates()
        .iter()
        .map(|k| k.lane_group)
        .filter(|&g| g > 1)
        .collect()
}

#[test]
fn lane_groups_are_offered_exactly_where_their_loads_are_aligned() {
    let formats = [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q4K,
        GgmlType::Q6K,
        GgmlType::F16,
    ];
    for target in TARGETS {
        for format in formats {
            for k in [576, 768, 896, 1024, 1536, 4096, 4864, 14336] {
                let ctx = gemv(target, k, &[(format, 4096)]);
                if ctx.validate().is_err() {
                    // A K-quant's 256-value blocks do not fit this row length at all.
                    continue;
                }
                let want: BTreeSet<u32> = [4u32, 8]
                    .into_iter()
                    .filter(|&g| vector_bytes(format, k, g as usize).is_some())
                    .collect();
                assert_eq!(offered(&ctx), want, "{target} {format:?} K={k}");
                for knobs in ctx.candidates().iter().filter(|k| k.lane_group > 1) {
                    let g = knobs.lane_group as usize;
                    let v = vector_bytes(format, k, g).unwrap();
                    let block = weight_bytes(format, 32);
                    // Every row, group and vector starts on a multiple of the vector width.
                    assert_eq!(weight_bytes(format, k) % v, 0);
                    assert_eq!((block * g) % v, 0);
                    assert!(knobs.x_int8 && knobs.split_k == 1, "{knobs:?}");
                }
            }
        }
    }
    // The shapes the variant is for, and ones it is not.
    let q4_0 = |k| offered(&gemv("sm_90", k, &[(GgmlType::Q4_0, 4096)]));
    assert_eq!(q4_0(4096), BTreeSet::from([4, 8]));
    assert_eq!(q4_0(14336), BTreeSet::from([4, 8]));
    // qwen2.5-0.5b: 28 blocks per row take groups of 4 (9 loads of 8 bytes), not of 8.
    assert_eq!(q4_0(896), BTreeSet::from([4]));
    assert_eq!(q4_0(576), BTreeSet::new());
    // Every segment must fit: q, k and v in the three formats do; with a K-quant they do not.
    let mixed = [
        (GgmlType::Q4_0, 4096),
        (GgmlType::Q8_0, 1024),
        (GgmlType::Q4_1, 1024),
    ];
    assert_eq!(
        offered(&gemv("gfx90a", 4096, &mixed)),
        BTreeSet::from([4, 8])
    );
    let with_k_quant = [(GgmlType::Q4_0, 4096), (GgmlType::Q4K, 1024)];
    assert_eq!(
        offered(&gemv("gfx90a", 4096, &with_k_quant)),
        BTreeSet::new()
    );
}

fn weight_bytes(format: GgmlType, k: usize) -> usize {
    rocmforge::codegen::quant::weight_layout(format)
        .unwrap()
        .row_bytes(k)
}

#[test]
fn lane_groups_split_warps_over_rows_and_the_grid_covers_them() {
    // (target, K, blocks per group) -> lanes per row: the largest power of two not above the
    // row's groups, at most the warp.
    for (target, k, g, lanes) in [
        ("sm_90", 4096, 8, 16),
        ("sm_90", 4096, 4, 32),
        ("sm_90", 14336, 8, 32),
        ("sm_90", 896, 4, 4),
        ("gfx90a", 4096, 8, 16),
        ("gfx90a", 14336, 8, 32),
        ("gfx90a", 14336, 4, 64),
        ("gfx1030", 768, 8, 2),
    ] {
        let ctx = gemv(target, k, &[(GgmlType::Q8_0, 1000)]);
        let lane = ctx
            .candidates()
            .into_iter()
            .find(|c| c.lane_group == g)
            .unwrap_or_else(|| panic!("{target} K={k}: no groups of {g}"));
        let ctx = ctx.with_knobs(&lane);
        ctx.validate().unwrap();
        assert_eq!(ctx.row_lanes(), lanes, "{target} K={k} groups of {g}");
        assert_eq!(ctx.subwarps() * lanes, ctx.target.warp_size);
    }
    // Every lane-group candidate's grid covers all rows once: blocks x row groups per block x
    // warps x sub-warps x rows per sub-warp.
    for target in TARGETS {
        for rows in [1000, 14336, 128256] {
            let ctx = gemv(target, 4096, &[(GgmlType::Q4_0, rows)]);
            for knobs in ctx.candidates().iter().filter(|k| k.lane_group > 1) {
                let c = ctx.with_knobs(knobs);
                let Extent::Fixed(blocks) = c.grid_rule().x else {
                    panic!("GEMV grid x is fixed");
                };
                let block_rows = (c.rows_per_block * c.subwarps() * c.rows_per_warp) as usize;
                let groups = rows.div_ceil(block_rows);
                assert_eq!(blocks as usize, groups.div_ceil(c.row_groups as usize));
            }
        }
    }
}

#[test]
fn lane_groups_are_off_by_default_and_invalid_where_they_do_not_apply() {
    for target in TARGETS {
        for (k, rows) in [(4096, 4096), (4096, 14336), (14336, 4096), (4096, 128256)] {
            for format in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_1] {
                let ctx = gemv(target, k, &[(format, rows)]);
                assert_eq!(ctx.knobs().lane_group, 0, "{}", ctx.problem());
                assert_eq!(ctx.candidates()[0].lane_group, 0);
            }
        }
    }
    let ctx = gemv("sm_90", 4096, &[(GgmlType::Q4_0, 4096)]);
    let lane = ctx
        .candidates()
        .into_iter()
        .find(|c| c.lane_group == 8)
        .unwrap();
    assert!(ctx.with_knobs(&lane).validate().is_ok());
    for bad in [
        rocmforge::codegen::ops::matmul::GemvKnobs {
            x_int8: false,
            ..lane.clone()
        },
        rocmforge::codegen::ops::matmul::GemvKnobs {
            split_k: 2,
            ..lane.clone()
        },
        rocmforge::codegen::ops::matmul::GemvKnobs {
            lane_group: 16,
            ..lane.clone()
        },
    ] {
        assert!(ctx.with_knobs(&bad).validate().is_err(), "{bad:?}");
    }
    // Rows of 28 blocks are not whole groups of 8; Q4_K has no dot from registers.
    let short = gemv("sm_90", 896, &[(GgmlType::Q4_0, 896)]);
    assert!(short.with_knobs(&lane).validate().is_err());
    let k_quant = gemv("sm_90", 4096, &[(GgmlType::Q4K, 4096)]);
    assert!(k_quant.with_knobs(&lane).validate().is_err());
}

#[test]
fn lane_groups_render_their_template() {
    let renderer = Renderer::embedded().unwrap();
    let ctx = gemv("sm_90", 4096, &[(GgmlType::Q4_0, 4096)]);
    let plain = renderer.render(&ctx).unwrap();
    let lane = ctx
        .candidates()
        .into_iter()
        .find(|c| c.lane_group == 8)
        .unwrap();
    let source = renderer.render(&ctx.with_knobs(&lane)).unwrap();
    assert!(source.contains("constexpr int LANE_GROUP = 8;"));
    assert!(source.contains("RF_DEVICE void dot_round(") && !plain.contains("dot_round("));
    assert!(plain.contains("constexpr int LANE_GROUP = 0;"));
}

/// A lane-group round (rows x groups per round x group words, for both weights of silu_mul)
/// takes at most half the registers a thread of its block may have, counted here apart from the
/// code under test: llama3-8b Q4_0 gate/up in groups of 8 (72 words per round) comes in blocks
/// of 8 warps, not 16 or 32, where NVRTC spilled.
#[test]
fn lane_group_rounds_leave_registers() {
    let t = Target::parse("sm_90").unwrap();
    let gate_up = GemvContext::fused(
        &t,
        4096,
        vec![GemvSegment::new(GgmlType::Q4_0, 14336); 2],
        Some(1e-5),
        GemvEpilogue::SiluMul,
    );
    let lanes: Vec<_> = gate_up
        .candidates()
        .into_iter()
        .filter(|k| k.lane_group > 1)
        .collect();
    for k in &lanes {
        let words = 2 * (k.rows_per_warp * k.unroll * k.lane_group) as usize * 18 / 4;
        let threads = 32 * k.rows_per_block as usize;
        assert!(2 * words <= (65536 / threads).min(255), "{k:?}");
    }
    let eight: BTreeSet<u32> = lanes
        .iter()
        .filter(|k| k.lane_group == 8)
        .map(|k| k.rows_per_block)
        .collect();
    assert!(eight.contains(&8) && !eight.contains(&16) && !eight.contains(&32));
}
