//! The decode GEMV with lane groups (each lane owns groups of 4 or 8 consecutive blocks, read
//! with aligned 16- or 8-byte vector loads) executed on the host (tests/host_sim) against the
//! CPU ops: Q4_0, Q8_0 and Q4_1 at K = 4096 and 14336 and a small K, every epilogue with and
//! without the RMSNorm prologue, several rows per warp (sub-warps of 2 to 32 lanes on 32- and
//! 64-lane warps), rounds of two groups with partial last rounds, the first round preloaded,
//! several row groups per block, and row counts that leave the last block partial. The
//! simulator is built with alignment checks: a vector load from a misaligned address aborts it.

mod host_cxx;
mod host_sim;

use host_sim::fused::{check, FusedCase};
use host_sim::{gemv_knobs_int8, gemv_lanes, gemv_preload, gemv_wide};
use rocmforge::codegen::ops::matmul::{GemvEpilogue, GemvKnobs};
use rocmforge::gguf::GgmlType;
use rocmforge::util::rng::Rng;

/// Warp rows per block, rows per sub-warp, groups per round, row groups per block, preload and
/// blocks per lane group, as knobs.
fn lanes(
    rows_per_block: u32,
    rows_per_warp: u32,
    unroll: u32,
    row_groups: u32,
    preload: bool,
    lane_group: u32,
) -> Option<GemvKnobs> {
    let knobs = gemv_wide(
        gemv_knobs_int8(rows_per_block, rows_per_warp, 1),
        unroll,
        row_groups,
    );
    let knobs = if preload { gemv_preload(knobs) } else { knobs };
    Some(gemv_lanes(knobs, lane_group))
}

/// Six cases of `format`: K = 4096 in groups of 8 (16 groups: 16-lane sub-warps) and of 4 (32
/// groups), K = 14336 in groups of 8 (56 groups over 32 lanes: 24 lanes take two) and of 4 (112:
/// three or four rounds), K = 768 in groups of 8 (3 groups: 2-lane sub-warps); stores, residual
/// adds and silu_mul each with and without the norm.
fn format_cases(rng: &mut Rng, format: GgmlType) -> Vec<FusedCase> {
    use GemvEpilogue::{Residual, SiluMul, Store};
    let one = |n, bias| vec![(format, n, bias)];
    let two = |n| vec![(format, n, true), (format, n, false)];
    vec![
        FusedCase::new(
            rng,
            4096,
            1,
            &one(13, true),
            true,
            Store,
            lanes(2, 1, 1, 1, false, 8),
        ),
        FusedCase::new(
            rng,
            14336,
            1,
            &one(9, false),
            false,
            Residual,
            lanes(2, 1, 2, 1, false, 8),
        ),
        FusedCase::new(
            rng,
            4096,
            1,
            &two(11),
            true,
            SiluMul,
            lanes(2, 2, 1, 2, true, 4),
        ),
        FusedCase::new(
            rng,
            14336,
            1,
            &one(7, true),
            false,
            Store,
            lanes(1, 1, 1, 1, true, 4),
        ),
        FusedCase::new(
            rng,
            768,
            1,
            &one(10, false),
            true,
            Residual,
            lanes(4, 1, 1, 1, false, 8),
        ),
        FusedCase::new(
            rng,
            4096,
            1,
            &two(19),
            false,
            SiluMul,
            lanes(1, 1, 1, 3, true, 8),
        ),
    ]
}

/// q, k and v in the three formats with the norm, in groups of 4: Q4_0 and Q8_0 groups are read
/// with 8-byte loads (72 and 136 bytes), Q4_1's with 16-byte loads (80), in one kernel; 12
/// groups per row over 8 lanes in rounds of two.
fn mixed_case(rng: &mut Rng) -> FusedCase {
    FusedCase::new(
        rng,
        1536,
        1,
        &[
            (GgmlType::Q4_0, 10, true),
            (GgmlType::Q8_0, 3, false),
            (GgmlType::Q4_1, 5, true),
        ],
        true,
        GemvEpilogue::Store,
        lanes(2, 1, 2, 2, false, 4),
    )
}

#[test]
fn gemv_lane_groups_match_the_cpu_ops() {
    let mut rng = Rng::new(41);
    let mut cases = Vec::new();
    for format in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_1] {
        cases.extend(format_cases(&mut rng, format));
    }
    cases.push(mixed_case(&mut rng));
    check("gemv-lanes", "gfx1030", &cases);
}

/// 64-lane warps: four 16-lane sub-warps per warp at K = 4096 in groups of 8, and 32-lane halves
/// at K = 14336.
#[test]
fn gemv_lane_groups_match_the_cpu_ops_with_64_lane_warps() {
    let mut rng = Rng::new(42);
    let mut cases = Vec::new();
    for format in [GgmlType::Q4_0, GgmlType::Q8_0, GgmlType::Q4_1] {
        cases.extend(format_cases(&mut rng, format).into_iter().take(2));
    }
    cases.push(mixed_case(&mut rng));
    check("gemv-lanes", "gfx90a", &cases);
}
