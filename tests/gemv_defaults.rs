//! The decode GEMV's default knobs per shape and its tuning candidates: small models keep the
//! latency-bound default (8 warps of one row, one chunk per lane at a time, a row group per
//! block); big GEMVs get the wide blocks `rocmforge tune` chose on an H200; the new knobs are
//! all tunable.

use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::{OpContext, Tunable};
use rocmforge::codegen::ops::matmul::{GemvEpilogue, GemvSegment};
use rocmforge::codegen::ops::GemvContext;
use rocmforge::gguf::GgmlType;

fn gemv(format: GgmlType, k: usize, rows: &[usize], epilogue: GemvEpilogue) -> GemvContext {
    gemv_with_norm(format, k, rows, None, epilogue)
}

fn gemv_with_norm(
    format: GgmlType,
    k: usize,
    rows: &[usize],
    norm_eps: Option<f32>,
    epilogue: GemvEpilogue,
) -> GemvContext {
    let t = Target::parse("sm_90").unwrap();
    let segments = rows.iter().map(|&n| GemvSegment::new(format, n)).collect();
    GemvContext::fused(&t, k, segments, norm_eps, epilogue)
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
        // Whole rows prefetched into L2 under the x prologue, with or without a norm.
        assert_eq!(k.prefetch, 16, "{}", ctx.problem());
    }
    // A small Q4_0 model's down projection: two warps per row, four chunks per round (the
    // tuner's choice three times on qwen2.5's), exactly the knobs it stored.
    let down = gemv(GgmlType::Q4_0, 4864, &[896], GemvEpilogue::Residual);
    let k = down.knobs();
    assert_eq!(
        serde_json::to_string(&k).unwrap(),
        r#"{"rows_per_block":8,"rows_per_warp":1,"split_k":2,"tokens":1,"x_int8":true,"prefetch":16,"unroll":4,"row_groups":1,"preload":false,"lane_group":0}"#
    );
    assert!(down.validate().is_ok());
    // The LM head of a small Q4_0 model: lane groups of four blocks (tuned twice on qwen2.5's);
    // Q8_0's keeps whole blocks per lane.
    let head = gemv(GgmlType::Q4_0, 896, &[151936], GemvEpilogue::Store);
    let k = head.knobs();
    assert_eq!(
        (k.rows_per_block, k.rows_per_warp, k.lane_group, k.prefetch),
        (8, 2, 4, 0)
    );
    assert!(head.validate().is_ok());
    let head8 = gemv(GgmlType::Q8_0, 896, &[151936], GemvEpilogue::Store);
    assert_eq!(head8.knobs().lane_group, 0);
    // No L2 prefetch instruction on AMD: the knob would change nothing there.
    let t = Target::parse("gfx1030").unwrap();
    let amd = GemvContext::fused(
        &t,
        896,
        vec![GemvSegment::new(GgmlType::Q8_0, 896)],
        None,
        GemvEpilogue::Residual,
    );
    assert_eq!(amd.knobs().prefetch, 0);
}

#[test]
fn big_gemvs_with_a_norm_take_sixteen_warps() {
    let norm = |format: GgmlType, rows: &[usize], epilogue: GemvEpilogue| {
        gemv_with_norm(format, 4096, rows, Some(1e-5), epilogue)
    };
    // llama3-8b's q/k/v: 16 warps of one row, one chunk at a time, no prefetch.
    let qkv = norm(GgmlType::Q4_0, &[4096, 1024, 1024], GemvEpilogue::Store);
    let k = qkv.knobs();
    assert_eq!(
        (k.rows_per_block, k.unroll, k.row_groups, k.prefetch),
        (16, 1, 1, 0)
    );
    // Its gate/up (one pass over x for both weights): two chunks per round, two row groups.
    let gate_up = norm(GgmlType::Q4_0, &[14336, 14336], GemvEpilogue::SiluMul);
    let k = gate_up.knobs();
    assert_eq!(
        (k.rows_per_block, k.unroll, k.row_groups, k.prefetch),
        (16, 2, 2, 0)
    );
    // K-quants' dots load their own bytes (rounds prefetch the next into L2): four chunks per
    // round, four row groups, as tuning chose on llama3-8b Q4_K_M; their q/k/v keeps one.
    let gate_up_k = norm(GgmlType::Q4K, &[14336, 14336], GemvEpilogue::SiluMul);
    let k = gate_up_k.knobs();
    assert_eq!((k.rows_per_block, k.unroll, k.row_groups), (16, 4, 4));
    let qkv_k = norm(GgmlType::Q4K, &[4096, 1024, 1024], GemvEpilogue::Store);
    assert_eq!((qkv_k.knobs().unroll, qkv_k.knobs().row_groups), (1, 1));
    assert!(qkv.validate().is_ok() && gate_up.validate().is_ok() && gate_up_k.validate().is_ok());
}

#[test]
fn big_gemvs_default_to_the_measured_wide_blocks() {
    // llama3-8b's down projection: 4096 rows in blocks of 32 warps of one row, two chunks per
    // lane per round (Q4_0 splits its dot into loads and arithmetic).
    let down = gemv(GgmlType::Q4_0, 14336, &[4096], GemvEpilogue::Residual);
    let k = down.knobs();
    assert_eq!(
        (
            k.rows_per_block,
            k.unroll,
            k.row_groups,
            k.preload,
            k.prefetch
        ),
        (32, 2, 1, false, 2)
    );
    assert_eq!(down.block(), (32, 32, 1));
    // Rows of 4096: one chunk per round; K-quant down projections take two (tuned on Q4_K_M).
    let output = gemv(GgmlType::Q4_0, 4096, &[4096], GemvEpilogue::Residual);
    assert_eq!(
        (
            output.knobs().rows_per_block,
            output.knobs().unroll,
            output.knobs().prefetch
        ),
        (32, 1, 4)
    );
    let down_k = gemv(GgmlType::Q4K, 14336, &[4096], GemvEpilogue::Residual);
    assert_eq!((down_k.knobs().unroll, down_k.knobs().row_groups), (2, 1));
    let output_k = gemv(GgmlType::Q4K, 4096, &[4096], GemvEpilogue::Residual);
    assert_eq!(output_k.knobs().unroll, 1);
    let head_k = gemv(GgmlType::Q6K, 4096, &[128256], GemvEpilogue::Store);
    assert_eq!((head_k.knobs().unroll, head_k.knobs().row_groups), (4, 4));
    // The LM head: 16 warps of two rows, two row groups per block, rounds of two chunks.
    let head = gemv(GgmlType::Q4_0, 4096, &[128256], GemvEpilogue::Store);
    let k = head.knobs();
    assert_eq!(
        (k.rows_per_block, k.rows_per_warp, k.unroll, k.row_groups),
        (16, 2, 2, 2)
    );
    // 64-lane targets: a block holds at most 1024 threads, so 16 warps.
    let t = Target::parse("gfx90a").unwrap();
    let amd = GemvContext::fused(
        &t,
        14336,
        vec![GemvSegment::new(GgmlType::Q4_0, 4096)],
        None,
        GemvEpilogue::Residual,
    );
    assert_eq!(amd.knobs().rows_per_block, 16);
    assert!(amd.validate().is_ok() && down.validate().is_ok() && head.validate().is_ok());
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
        // Every row group is some block's: blocks x groups per block covers the rows (lane
        // groups may put several sub-warps of rows in a warp).
        let rows = knobs.rows_per_block * ctx.subwarps() * knobs.rows_per_warp;
        let groups = 4096usize.div_ceil(rows as usize);
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

#[test]
fn q8_0_takes_its_own_measured_geometries() {
    let knobs = |ctx: &GemvContext| {
        let k = ctx.knobs();
        (
            k.rows_per_block,
            k.rows_per_warp,
            k.unroll,
            k.row_groups,
            k.prefetch,
        )
    };
    // llama3-8b: gate/up 8 warps of two rows one chunk at a time, the LM head 8 warps, q/k/v and
    // output one round prefetched; its down projection keeps Q4_0's.
    let gate_up = gemv_with_norm(
        GgmlType::Q8_0,
        4096,
        &[14336, 14336],
        Some(1e-5),
        GemvEpilogue::SiluMul,
    );
    assert_eq!(knobs(&gate_up), (8, 2, 1, 1, 0));
    let head = gemv_with_norm(
        GgmlType::Q8_0,
        4096,
        &[128256],
        Some(1e-5),
        GemvEpilogue::Store,
    );
    assert_eq!(knobs(&head), (8, 2, 2, 2, 0));
    let qkv = gemv_with_norm(
        GgmlType::Q8_0,
        4096,
        &[4096, 1024, 1024],
        Some(1e-5),
        GemvEpilogue::Store,
    );
    assert_eq!(knobs(&qkv), (16, 1, 1, 1, 1));
    let output = gemv(GgmlType::Q8_0, 4096, &[4096], GemvEpilogue::Residual);
    assert_eq!(knobs(&output), (32, 1, 1, 1, 1));
    let down = gemv(GgmlType::Q8_0, 14336, &[4096], GemvEpilogue::Residual);
    let down4 = gemv(GgmlType::Q4_0, 14336, &[4096], GemvEpilogue::Residual);
    assert_eq!(knobs(&down), knobs(&down4));
    // qwen2.5-0.5b: the down projection 16 warps of one row, the LM head 4 warps of four rows.
    let small_down = gemv(GgmlType::Q8_0, 4864, &[896], GemvEpilogue::Residual);
    assert_eq!(knobs(&small_down), (16, 1, 1, 1, 16));
    let small_head = gemv_with_norm(
        GgmlType::Q8_0,
        896,
        &[151936],
        Some(1e-6),
        GemvEpilogue::Store,
    );
    assert_eq!(knobs(&small_head), (4, 4, 1, 1, 16));
    for ctx in [gate_up, head, qkv, output, down, small_down, small_head] {
        assert!(ctx.knobs().x_int8, "{}", ctx.problem());
        ctx.validate().unwrap();
    }
}
