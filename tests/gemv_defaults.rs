//! The decode GEMV's default knobs per shape and its tuning candidates: small models keep the
//! latency-bound default (8 warps of one row, one chunk per lane at a time, a row group per
//! block); big GEMVs get chunk rounds and 16 warps per block; the new knobs are all tunable.

use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::{OpContext, Tunable};
use rocmforge::codegen::ops::matmul::{GemvEpilogue, GemvSegment};
use rocmforge::codegen::ops::GemvContext;
use rocmforge::gguf::GgmlType;

fn gemv(format: GgmlType, k: usize, rows: &[usize], epilogue: GemvEpilogue) -> GemvContext {
    let t = Target::parse("sm_90").unwrap();
    let segments = rows.iter().map(|&n| GemvSegment::new(format, n)).collect();
    GemvContext::fused(&t, k, segments, None, epilogue)
}

#[test]
fn small_gemvs_keep_the_latency_bound_default() {
    // qwen2.5-0.5b: qkv, output, gate/up, down.
    for ctx in [
        gemv(GgmlType::Q8_0, 896, &[896, 128, 128], GemvEpilogue::Store),
        gemv(GgmlType::Q8_0, 896, &[896], GemvEpilogue::Residual),
        gemv(GgmlType::Q4_0, 896, &[4864, 4864], GemvEpilogue::SiluMul),
        gemv(GgmlType::Q4K, 4864, &[896], GemvEpilogue::Residual),
    ] {
        let k = ctx.knobs();
        assert_eq!(
            (k.rows_per_block, k.rows_per_warp, k.unroll, k.row_groups),
            (8, 1, 1, 1),
            "{}",
            ctx.problem()
        );
    }
}

#[test]
fn big_gemvs_default_to_chunk_rounds_and_wide_blocks() {
    // llama3-8b's down projection: 4096 rows in blocks of 16 warps of one row.
    let down = gemv(GgmlType::Q4_0, 14336, &[4096], GemvEpilogue::Residual);
    let k = down.knobs();
    assert_eq!(
        (k.rows_per_block, k.unroll, k.row_groups, k.preload),
        (16, 4, 1, false)
    );
    assert_eq!(down.block(), (32, 16, 1));
    // K-quants (dots not split into loads and arithmetic) take rounds of two.
    let gate_up = gemv(GgmlType::Q4K, 4096, &[14336, 14336], GemvEpilogue::SiluMul);
    assert_eq!(gate_up.knobs().unroll, 2);
    // One Q4_K segment among Q4_0 ones is enough for rounds of two.
    let t = Target::parse("sm_90").unwrap();
    let qkv = GemvContext::fused(
        &t,
        4096,
        vec![
            GemvSegment::new(GgmlType::Q4_0, 4096),
            GemvSegment::new(GgmlType::Q4K, 1024),
            GemvSegment::new(GgmlType::Q4_0, 1024),
        ],
        Some(1e-5),
        GemvEpilogue::Store,
    );
    assert_eq!(qkv.knobs().unroll, 2);
}

#[test]
fn row_groups_divide_the_grid_and_every_new_knob_is_a_candidate() {
    let down = gemv(GgmlType::Q4_0, 14336, &[4096], GemvEpilogue::Residual);
    let candidates = down.candidates();
    assert_eq!(candidates[0], down.knobs());
    for unroll in [1, 2, 4, 8] {
        assert!(
            candidates.iter().any(|k| k.unroll == unroll),
            "unroll {unroll}"
        );
    }
    for row_groups in [2, 4] {
        assert!(
            candidates.iter().any(|k| k.row_groups == row_groups),
            "row groups {row_groups}"
        );
    }
    for knobs in &candidates {
        let ctx = down.with_knobs(knobs);
        ctx.validate().unwrap();
        // Every row group is some block's: blocks x groups per block covers the rows.
        let groups = 4096usize.div_ceil((knobs.rows_per_block * knobs.rows_per_warp) as usize);
        let rule = ctx.grid_rule();
        let rocmforge::codegen::context::Extent::Fixed(blocks) = rule.x else {
            panic!("GEMV grid x is fixed");
        };
        assert_eq!(blocks as usize, groups.div_ceil(knobs.row_groups as usize));
    }
    assert!(candidates.iter().any(|k| k.preload));
    // Preloading needs split dots: no Q4_K candidate has it.
    let q4k = gemv(GgmlType::Q4K, 14336, &[4096], GemvEpilogue::Residual);
    assert!(q4k.candidates().iter().all(|k| !k.preload));
    let mut bad = q4k.knobs();
    bad.preload = true;
    assert!(q4k.with_knobs(&bad).validate().is_err());
    let mut bad = down.knobs();
    bad.unroll = 0;
    assert!(down.with_knobs(&bad).validate().is_err());
    bad.unroll = 1;
    bad.row_groups = 17;
    assert!(down.with_knobs(&bad).validate().is_err());
}
