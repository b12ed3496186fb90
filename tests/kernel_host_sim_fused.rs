//! The fused kernels executed on the host (tests/host_sim) against the CPU engine's unfused ops
//! composed in program order: the decode GEMV with an RMSNorm prologue over up to three weights
//! of different formats, with a residual add (in place) or silu_mul epilogue (host_sim::fused),
//! and rope_store (rope of q and k, k and v into the f16 caches).

mod host_cxx;
mod host_sim;

use half::f16;
use host_sim::fused::{check, FusedCase};
use host_sim::{bytes_f32, f32_bytes, i32_bytes, max_rel_err, Launch};
use rocmforge::backend::cpu::ops;
use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::Tunable;
use rocmforge::codegen::ops::matmul::GemvEpilogue;
use rocmforge::codegen::ops::rope::RotaryPairs;
use rocmforge::codegen::ops::{RopeContext, RopeStoreContext};
use rocmforge::codegen::{KernelKind, KernelSpec, Renderer};
use rocmforge::gguf::GgmlType;
use rocmforge::plan::RopeStyle;
use rocmforge::util::rng::Rng;

fn spec<C: Tunable>(kind: KernelKind, ctx: C) -> KernelSpec {
    ctx.validate().unwrap();
    KernelSpec::new(kind, &ctx, &Renderer::embedded().unwrap()).unwrap()
}

fn randn(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

#[test]
fn fused_gemv_matches_the_cpu_ops() {
    let mut rng = Rng::new(21);
    let cases = [
        // norm + q, k, v in three formats with biases, rows not multiples of the block rows.
        FusedCase::new(
            &mut rng,
            256,
            1,
            &[
                (GgmlType::Q8_0, 40, true),
                (GgmlType::Q4K, 12, true),
                (GgmlType::Q6K, 12, true),
            ],
            true,
            GemvEpilogue::Store,
            None,
        ),
        // The same with split-K, two tokens per block and a partial token group.
        FusedCase::new(
            &mut rng,
            256,
            3,
            &[(GgmlType::Q4_0, 24, false), (GgmlType::Q5_1, 9, true)],
            true,
            GemvEpilogue::Store,
            Some(host_sim::gemv_knobs(2, 2, 2, 2)),
        ),
        // norm + gate + up + silu_mul.
        FusedCase::new(
            &mut rng,
            512,
            1,
            &[(GgmlType::Q4K, 37, false), (GgmlType::Q4K, 37, false)],
            true,
            GemvEpilogue::SiluMul,
            None,
        ),
        FusedCase::new(
            &mut rng,
            256,
            2,
            &[(GgmlType::Q5_0, 21, true), (GgmlType::Q8_0, 21, true)],
            true,
            GemvEpilogue::SiluMul,
            Some(host_sim::gemv_knobs(1, 4, 2, 1)),
        ),
        // down projection + residual, in place, without a norm.
        FusedCase::new(
            &mut rng,
            512,
            1,
            &[(GgmlType::Q6K, 29, false)],
            false,
            GemvEpilogue::Residual,
            None,
        ),
        FusedCase::new(
            &mut rng,
            256,
            4,
            &[(GgmlType::F16, 19, true)],
            false,
            GemvEpilogue::Residual,
            Some(host_sim::gemv_knobs(4, 2, 1, 4)),
        ),
        // Int8 x with split-K: gate + up over two token blocks, and q, k, v in three formats.
        FusedCase::new(
            &mut rng,
            256,
            2,
            &[(GgmlType::Q5_0, 21, true), (GgmlType::Q8_0, 21, true)],
            true,
            GemvEpilogue::SiluMul,
            Some(host_sim::gemv_knobs_int8(1, 4, 2)),
        ),
        FusedCase::new(
            &mut rng,
            768,
            1,
            &[
                (GgmlType::Q3K, 20, false),
                (GgmlType::Q2K, 8, true),
                (GgmlType::Q5K, 8, false),
            ],
            true,
            GemvEpilogue::Store,
            Some(host_sim::gemv_knobs_int8(2, 2, 2)),
        ),
    ];
    check("fused-gemv", "gfx1030", &cases);
}

/// Warp size 64: the norm's block reduction and the epilogues over 64-lane warps.
#[test]
fn fused_gemv_matches_the_cpu_ops_with_64_lane_warps() {
    let mut rng = Rng::new(22);
    let cases = [
        FusedCase::new(
            &mut rng,
            512,
            1,
            &[(GgmlType::Q4_0, 33, true), (GgmlType::Q4_0, 33, true)],
            true,
            GemvEpilogue::SiluMul,
            None,
        ),
        FusedCase::new(
            &mut rng,
            512,
            2,
            &[(GgmlType::Q8_0, 17, false)],
            true,
            GemvEpilogue::Residual,
            Some(host_sim::gemv_knobs(2, 2, 2, 2)),
        ),
    ];
    check("fused-gemv", "gfx90a", &cases);
}

/// Chunk rounds (unroll) and several row groups per block in the fused GEMVs: a block's groups
/// span q, k and v of different formats; gate + up with silu_mul; the in-place residual add; with
/// int8 and f32 x, split-K, and K = 3328 (104 chunks: partial last rounds at 32 and 64 lanes).
#[test]
fn fused_gemv_with_unroll_and_row_groups_matches_the_cpu_ops() {
    let wide = |knobs, unroll, row_groups| Some(host_sim::gemv_wide(knobs, unroll, row_groups));
    for (target, seed) in [("gfx1030", 24), ("gfx90a", 25)] {
        let mut rng = Rng::new(seed);
        let cases = [
            FusedCase::new(
                &mut rng,
                3328,
                1,
                &[
                    (GgmlType::Q4_0, 20, true),
                    (GgmlType::Q4K, 6, false),
                    (GgmlType::Q6K, 6, true),
                ],
                true,
                GemvEpilogue::Store,
                wide(host_sim::gemv_knobs_int8(2, 2, 1), 4, 3),
            ),
            FusedCase::new(
                &mut rng,
                3328,
                1,
                &[(GgmlType::Q8_0, 19, false), (GgmlType::Q8_0, 19, false)],
                true,
                GemvEpilogue::SiluMul,
                wide(host_sim::gemv_knobs_int8(2, 1, 2), 2, 4),
            ),
            FusedCase::new(
                &mut rng,
                3328,
                1,
                &[(GgmlType::Q4K, 13, false)],
                false,
                GemvEpilogue::Residual,
                wide(host_sim::gemv_knobs_int8(1, 2, 1), 8, 2),
            ),
            // Gate and up with their first rounds loaded before the norm prologue.
            FusedCase::new(
                &mut rng,
                3328,
                1,
                &[(GgmlType::Q4_0, 13, true), (GgmlType::Q8_0, 13, false)],
                true,
                GemvEpilogue::SiluMul,
                Some(host_sim::gemv_preload(host_sim::gemv_wide(
                    host_sim::gemv_knobs_int8(2, 1, 1),
                    4,
                    2,
                ))),
            ),
            FusedCase::new(
                &mut rng,
                3328,
                1,
                &[
                    (GgmlType::Q8_0, 9, false),
                    (GgmlType::Q4_0, 5, true),
                    (GgmlType::Q4_0, 5, false),
                ],
                true,
                GemvEpilogue::Store,
                Some(host_sim::gemv_preload(host_sim::gemv_wide(
                    host_sim::gemv_knobs_int8(1, 2, 1),
                    2,
                    3,
                ))),
            ),
            // Gate and up of one format share each pass over x (two rows per warp of each,
            // split-K, first round preloaded; and the prefetching path of a K-quant).
            FusedCase::new(
                &mut rng,
                3328,
                1,
                &[(GgmlType::Q4_0, 23, true), (GgmlType::Q4_0, 23, false)],
                true,
                GemvEpilogue::SiluMul,
                Some(host_sim::gemv_preload(host_sim::gemv_wide(
                    host_sim::gemv_knobs_int8(2, 2, 2),
                    2,
                    2,
                ))),
            ),
            FusedCase::new(
                &mut rng,
                3328,
                1,
                &[(GgmlType::Q4K, 15, false), (GgmlType::Q4K, 15, true)],
                true,
                GemvEpilogue::SiluMul,
                wide(host_sim::gemv_knobs_int8(1, 2, 1), 2, 3),
            ),
            FusedCase::new(
                &mut rng,
                768,
                2,
                &[(GgmlType::Q6K, 11, true), (GgmlType::Q4_0, 11, false)],
                true,
                GemvEpilogue::SiluMul,
                wide(host_sim::gemv_knobs(2, 1, 1, 2), 2, 2),
            ),
        ];
        check("fused-gemv-wide", target, &cases);
    }
}

#[test]
fn rope_store_matches_rope_then_store() {
    const N_CTX: usize = 32;
    let t = Target::parse("gfx1030").unwrap();
    let mut rng = Rng::new(23);
    let (q_width, kv_width, head_dim, tokens, pos0) = (256, 128, 64, 3, 9);
    let mut launches = Vec::new();
    let mut expected = Vec::new();
    for (style, cpu_style) in [
        (RotaryPairs::Normal, RopeStyle::Normal),
        (RotaryPairs::Neox, RopeStyle::Neox),
    ] {
        let (q, k, v) = (
            randn(&mut rng, q_width * tokens),
            randn(&mut rng, kv_width * tokens),
            randn(&mut rng, kv_width * tokens),
        );
        let rope = RopeContext::new(&t, q_width, head_dim, 10000.0, style);
        let ctx = RopeStoreContext::new(&t, &rope, kv_width, N_CTX);
        let sentinel = vec![0x55u8; 2 * N_CTX * kv_width];
        launches.push(Launch {
            spec: spec(KernelKind::RopeStore, ctx),
            n_tokens: tokens as u32,
            args: "(const float*)B[0], (const float*)B[1], (const float*)B[2], (float*)B[0], \
                   (__half*)B[3], (__half*)B[4], (const int*)B[5], n_tokens"
                .to_string(),
            buffers: vec![
                f32_bytes(&q),
                f32_bytes(&k),
                f32_bytes(&v),
                sentinel.clone(),
                sentinel.clone(),
                i32_bytes(&[pos0 as i32]),
            ],
        });
        let (mut q_want, mut k_want) = (q.clone(), k.clone());
        ops::rope(&mut q_want, q_width, head_dim, pos0, 10000.0, cpu_style);
        ops::rope(&mut k_want, kv_width, head_dim, pos0, 10000.0, cpu_style);
        let cache = |rows: &[f32]| {
            let mut want = sentinel.clone();
            for (i, x) in rows.iter().enumerate() {
                want[2 * (pos0 * kv_width + i)..][..2]
                    .copy_from_slice(&f16::from_f32(*x).to_le_bytes());
            }
            want
        };
        expected.push((q_want, cache(&k_want), cache(&v)));
    }
    let Some(()) = host_sim::run("rope-store", &mut launches) else {
        return;
    };
    for (l, (q_want, k_cache, v_cache)) in launches.iter().zip(&expected) {
        let err = max_rel_err(&bytes_f32(&l.buffers[0]), q_want);
        assert!(err < 1e-5, "{}: q error {err}", l.spec.problem);
        // f16 rounding of values within 1e-6 of each other may differ by one step at most.
        for (got, want, what) in [(&l.buffers[3], k_cache, "k"), (&l.buffers[4], v_cache, "v")] {
            let steps = got
                .chunks_exact(2)
                .zip(want.chunks_exact(2))
                .map(|(a, b)| {
                    (u16::from_le_bytes([a[0], a[1]]) as i32
                        - u16::from_le_bytes([b[0], b[1]]) as i32)
                        .abs()
                })
                .max()
                .unwrap();
            assert!(
                steps <= 1,
                "{}: {what} cache off by {steps} f16 steps",
                l.spec.problem
            );
        }
    }
}
