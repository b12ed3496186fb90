//! Every op's kernel executed on the host (tests/host_sim) and compared with the CPU engine's
//! op on random inputs: GEMV (split-K, several tokens per block, bias), tiled GEMM with partial
//! tiles, embedding, norms, RoPE in both styles, split, KV store, decode attention with KV splits
//! and its last-block merge, prefill attention, elementwise ops and argmax.

mod host_cxx;
mod host_sim;

use half::f16;
use host_sim::{bytes_f32, f32_bytes, i32_bytes, max_rel_err, Launch, Q8x};
use rocmforge::backend::cpu::ops::{self, AttnShape};
use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::Tunable;
use rocmforge::codegen::ops::attention::{AttentionKnobs, AttentionPhase, AttentionShape};
use rocmforge::codegen::ops::elementwise::ElementwiseOp;
use rocmforge::codegen::ops::matmul::GemvKnobs;
use rocmforge::codegen::ops::rope::RotaryPairs;
use rocmforge::codegen::ops::*;
use rocmforge::codegen::{KernelKind, KernelSpec, Renderer};
use rocmforge::gguf::{dequant, quantize, GgmlType};
use rocmforge::plan::RopeStyle;
use rocmforge::util::rng::Rng;

/// f32 sums in another order: a few ulps of the largest value per hundred terms.
const TOL: f32 = 2e-5;

fn spec<C: Tunable>(kind: KernelKind, ctx: C) -> KernelSpec {
    ctx.validate().unwrap();
    KernelSpec::new(kind, &ctx, &Renderer::embedded().unwrap()).unwrap()
}

fn randn(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

fn launch(spec: KernelSpec, n_tokens: u32, args: &str, buffers: Vec<Vec<u8>>) -> Launch {
    Launch {
        spec,
        n_tokens,
        args: args.to_string(),
        buffers,
    }
}

const MATMUL_ARGS: &str =
    "(const unsigned char*)B[0], (const float*)B[1], (float*)B[2], (const float*)B[3], n_tokens";
const MATMUL_ARGS_NO_BIAS: &str =
    "(const unsigned char*)B[0], (const float*)B[1], (float*)B[2], nullptr, n_tokens";
/// The decode GEMV's ABI with one weight, no norm and no residual (buffers as for the GEMM).
const GEMV_ARGS: &str = "(const unsigned char*)B[0], nullptr, nullptr, (const float*)B[3], \
    nullptr, nullptr, (const float*)B[1], nullptr, nullptr, (float*)B[2], nullptr, nullptr, n_tokens";
const GEMV_ARGS_NO_BIAS: &str = "(const unsigned char*)B[0], nullptr, nullptr, nullptr, nullptr, \
    nullptr, (const float*)B[1], nullptr, nullptr, (float*)B[2], nullptr, nullptr, n_tokens";

struct MatmulCase {
    format: GgmlType,
    k: usize,
    n: usize,
    tokens: usize,
    bias: bool,
    weights: Vec<u8>,
    x: Vec<f32>,
    bias_values: Vec<f32>,
}

impl MatmulCase {
    fn new(
        rng: &mut Rng,
        format: GgmlType,
        k: usize,
        n: usize,
        tokens: usize,
        bias: bool,
    ) -> MatmulCase {
        let weights = quantize::random_blocks(format, k * n, rng, 1.0);
        MatmulCase {
            format,
            k,
            n,
            tokens,
            bias,
            weights,
            x: randn(rng, k * tokens),
            bias_values: randn(rng, n),
        }
    }

    fn launch(&self, spec: KernelSpec) -> Launch {
        let mut buffers = vec![
            self.weights.clone(),
            f32_bytes(&self.x),
            vec![0; 4 * self.n * self.tokens],
        ];
        if self.bias {
            buffers.push(f32_bytes(&self.bias_values));
        }
        let args = match (spec.kind, self.bias) {
            (KernelKind::MatmulGemv, true) => GEMV_ARGS,
            (KernelKind::MatmulGemv, false) => GEMV_ARGS_NO_BIAS,
            (_, true) => MATMUL_ARGS,
            (_, false) => MATMUL_ARGS_NO_BIAS,
        };
        launch(spec, self.tokens as u32, args, buffers)
    }

    /// The CPU matmul; with `x_int8` of x rounded through q8_1 as the kernel stages it (the same
    /// f32 arithmetic on the same x, so only the summation order differs).
    fn expected(&self, x_int8: bool) -> Vec<f32> {
        let mut out = vec![0f32; self.n * self.tokens];
        let bias = self.bias.then_some(&self.bias_values[..]);
        let x = if x_int8 {
            Q8x::new(&self.x).dequantized()
        } else {
            self.x.clone()
        };
        ops::matmul(
            &self.weights,
            self.format,
            self.k,
            self.n,
            &x,
            bias,
            &mut out,
        );
        out
    }
}

/// GEMV and GEMM launches on `target`, checked against the CPU matmul; `name` names the host
/// build's folder, one per test (tests run in parallel).
fn check_matmuls(
    name: &str,
    target: &str,
    gemv_cases: &[(MatmulCase, Option<GemvKnobs>)],
    gemm_cases: &[MatmulCase],
) {
    let t = Target::parse(target).unwrap();
    let mut launches = Vec::new();
    let mut x_int8 = Vec::new();
    for (case, knobs) in gemv_cases {
        let ctx = GemvContext::new(&t, case.format, case.k, case.n);
        let ctx = knobs.as_ref().map_or(ctx.clone(), |k| ctx.with_knobs(k));
        x_int8.push(ctx.x_int8);
        launches.push(case.launch(spec(KernelKind::MatmulGemv, ctx)));
    }
    x_int8.resize(launches.len() + gemm_cases.len(), false);
    for case in gemm_cases {
        launches.push(case.launch(spec(
            KernelKind::MatmulGemm,
            GemmContext::new(&t, case.format, case.k, case.n),
        )));
    }
    let Some(()) = host_sim::run(name, &mut launches) else {
        return;
    };
    let all = gemv_cases.iter().map(|(c, _)| c).chain(gemm_cases);
    for ((case, l), &x_int8) in all.zip(&launches).zip(&x_int8) {
        let err = max_rel_err(&bytes_f32(&l.buffers[2]), &case.expected(x_int8));
        assert!(
            err < TOL,
            "{} {}: error {err}",
            l.spec.problem,
            l.spec.context_json
        );
    }
}

#[test]
fn matmul_kernels_match_the_cpu() {
    let mut rng = Rng::new(11);
    // Row counts not a multiple of the rows per warp or per block; split-K with several rows per
    // warp; several tokens per block with a partial last token group.
    let cases = [
        (
            MatmulCase::new(&mut rng, GgmlType::Q4_0, 512, 37, 3, true),
            None,
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q4_0, 512, 37, 1, true),
            None,
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q8_0, 512, 29, 1, false),
            Some(host_sim::gemv_knobs(4, 8, 1, 1)),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q4K, 512, 13, 1, true),
            Some(host_sim::gemv_knobs(1, 8, 4, 1)),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q6K, 512, 37, 3, false),
            Some(host_sim::gemv_knobs(2, 1, 2, 2)),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q4_1, 256, 19, 5, true),
            Some(host_sim::gemv_knobs(4, 2, 1, 4)),
        ),
        // An odd number of 2-byte-aligned blocks per row: every other row starts at 2 mod 4.
        (
            MatmulCase::new(&mut rng, GgmlType::Q4_0, 96, 7, 1, false),
            Some(host_sim::gemv_knobs(1, 2, 1, 1)),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q8_0, 160, 6, 2, true),
            Some(host_sim::gemv_knobs(2, 2, 1, 2)),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::F16, 512, 37, 1, false),
            None,
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q5K, 256, 9, 2, true),
            Some(host_sim::gemv_knobs(1, 3, 4, 1)),
        ),
    ];
    let gemm_cases = [
        MatmulCase::new(&mut rng, GgmlType::Q5_1, 256, 70, 70, true),
        MatmulCase::new(&mut rng, GgmlType::Q3K, 512, 64, 5, false),
        MatmulCase::new(&mut rng, GgmlType::BF16, 64, 33, 9, false),
    ];
    check_matmuls("matmul", "gfx1030", &cases, &gemm_cases);
}

/// Warp size 64 (gfx90a): reductions over 64 lanes, rows per warp and split-K.
#[test]
fn gemv_matches_the_cpu_with_64_lane_warps() {
    let mut rng = Rng::new(13);
    let cases = [
        (
            MatmulCase::new(&mut rng, GgmlType::Q4_0, 4096, 11, 1, true),
            None,
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q8_0, 2048, 21, 2, false),
            Some(host_sim::gemv_knobs(2, 8, 2, 2)),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q6K, 1024, 13, 2, true),
            Some(host_sim::gemv_knobs_int8(2, 2, 2)),
        ),
    ];
    check_matmuls("matmul-wave64", "gfx90a", &cases, &[]);
}

/// The int8-x GEMV for every format with an int8 dot (rows of 2-aligned formats alternating
/// between 0 and 2 mod 4, split-K, several token blocks): against the CPU matmul of the same q8_1
/// x (summation order only), and against the f32 CPU matmul within the q8_1 error bound: each x
/// value is off by at most d / 2 = max|x of its block| / 254, so a row is off by at most
/// sum_k |w_k| d_k / 2.
#[test]
fn gemv_with_int8_x_matches_the_cpu() {
    let t = Target::parse("gfx1030").unwrap();
    let mut rng = Rng::new(14);
    let knobs = [(1, 2, 1), (4, 1, 1), (2, 3, 2), (1, 4, 4)];
    let mut cases = Vec::new();
    for (i, format) in rocmforge::codegen::quant::gpu_formats().enumerate() {
        let layout = rocmforge::codegen::quant::weight_layout(format).unwrap();
        if !layout.int8_dot {
            continue;
        }
        // An odd number of blocks per row: 3 x 32 or 3 x 256 values.
        let k = 3 * layout.block_values.max(32);
        let (rows_per_block, rows_per_warp, split_k) = knobs[i % knobs.len()];
        let case = MatmulCase::new(&mut rng, format, k, 7 + i, 1 + i % 2, i % 3 == 0);
        cases.push((
            case,
            host_sim::gemv_knobs_int8(rows_per_block, rows_per_warp, split_k),
        ));
    }
    assert_eq!(cases.len(), 10);
    let mut launches: Vec<Launch> = cases
        .iter()
        .map(|(case, knobs)| {
            let ctx = GemvContext::new(&t, case.format, case.k, case.n).with_knobs(knobs);
            case.launch(spec(KernelKind::MatmulGemv, ctx))
        })
        .collect();
    let Some(()) = host_sim::run("matmul-int8", &mut launches) else {
        return;
    };
    for ((case, _), l) in cases.iter().zip(&launches) {
        let got = bytes_f32(&l.buffers[2]);
        let err = max_rel_err(&got, &case.expected(true));
        assert!(err < TOL, "{}: error {err} against q8_1 x", l.spec.problem);
        let plain = case.expected(false);
        let w = dequant::dequantize_to_vec(case.format, &case.weights, case.k * case.n).unwrap();
        let xq = Q8x::new(&case.x);
        let scale = plain.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (i, (g, p)) in got.iter().zip(&plain).enumerate() {
            let (t, row) = (i / case.n, i % case.n);
            let bound: f32 = (0..case.k)
                .map(|k| w[row * case.k + k].abs() * xq.d[(t * case.k + k) / 32] / 2.0)
                .sum::<f32>()
                + TOL * scale;
            assert!(
                (g - p).abs() <= bound,
                "{}: output {i} is {g}, f32 CPU {p}, q8_1 bound {bound}",
                l.spec.problem
            );
        }
    }
}

/// Chunk rounds (unroll) and several row groups per block, with int8 and f32 x: K = 3328 is 104
/// chunks of 32, so with 32 lanes lanes 0-7 hold 4 chunks and the others 3, and unroll 2, 4 and 8
/// leave full rounds, partial last rounds, and only a partial round; row counts leave the last
/// block fewer groups than the others; split-K with several groups per block reuses its shared
/// partial sums.
#[test]
fn gemv_with_unroll_and_row_groups_matches_the_cpu() {
    let mut rng = Rng::new(15);
    let wide = |knobs, unroll, row_groups| Some(host_sim::gemv_wide(knobs, unroll, row_groups));
    let cases = [
        (
            MatmulCase::new(&mut rng, GgmlType::Q4_0, 3328, 37, 1, true),
            wide(host_sim::gemv_knobs_int8(2, 1, 1), 4, 4),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q8_0, 3328, 21, 1, false),
            wide(host_sim::gemv_knobs_int8(1, 2, 2), 2, 3),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q4K, 3328, 19, 1, true),
            wide(host_sim::gemv_knobs_int8(2, 2, 1), 8, 2),
        ),
        // The first round loaded before the prologue: lanes with 4 chunks (a full round), and
        // with one round that is the whole row; several groups per block.
        (
            MatmulCase::new(&mut rng, GgmlType::Q4_0, 3328, 19, 1, false),
            Some(host_sim::gemv_preload(host_sim::gemv_wide(
                host_sim::gemv_knobs_int8(2, 1, 1),
                4,
                3,
            ))),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q8_0, 1024, 11, 1, true),
            Some(host_sim::gemv_preload(host_sim::gemv_wide(
                host_sim::gemv_knobs_int8(1, 2, 1),
                2,
                2,
            ))),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q6K, 3328, 13, 1, false),
            wide(host_sim::gemv_knobs_int8(4, 1, 1), 4, 1),
        ),
        // f32 x: one token, and several tokens per block with a partial token group.
        (
            MatmulCase::new(&mut rng, GgmlType::Q4_0, 3328, 23, 1, false),
            wide(host_sim::gemv_knobs(2, 2, 1, 1), 4, 3),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q6K, 768, 17, 3, true),
            wide(host_sim::gemv_knobs(2, 1, 2, 2), 2, 2),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::F16, 1024, 9, 1, true),
            wide(host_sim::gemv_knobs(1, 2, 1, 1), 4, 2),
        ),
    ];
    check_matmuls("gemv-wide", "gfx1030", &cases, &[]);
}

/// The same knobs over 64-lane warps (gfx90a): 104 chunks leave lanes 0-39 two chunks and the
/// others one.
#[test]
fn gemv_with_unroll_and_row_groups_matches_the_cpu_with_64_lane_warps() {
    let mut rng = Rng::new(16);
    let wide = |knobs, unroll, row_groups| Some(host_sim::gemv_wide(knobs, unroll, row_groups));
    let cases = [
        (
            MatmulCase::new(&mut rng, GgmlType::Q4_0, 3328, 29, 1, true),
            wide(host_sim::gemv_knobs_int8(2, 1, 1), 2, 4),
        ),
        (
            MatmulCase::new(&mut rng, GgmlType::Q4K, 3328, 11, 1, false),
            wide(host_sim::gemv_knobs_int8(1, 2, 2), 4, 2),
        ),
    ];
    check_matmuls("gemv-wide-wave64", "gfx90a", &cases, &[]);
}

#[test]
fn row_kernels_match_the_cpu() {
    let t = Target::parse("gfx1030").unwrap();
    let mut rng = Rng::new(12);
    let mut launches = Vec::new();

    // Embedding of a K-quant table; an id past the vocabulary gives zeros.
    let table = quantize::random_blocks(GgmlType::Q4K, 256 * 10, &mut rng, 1.0);
    let tokens = [3, 0, 9, 12];
    launches.push(launch(
        spec(
            KernelKind::Embed,
            EmbedContext::new(&t, GgmlType::Q4K, 256, 10),
        ),
        4,
        "(const unsigned char*)B[0], (const int*)B[1], (float*)B[2], n_tokens",
        vec![table.clone(), i32_bytes(&tokens), vec![0; 4 * 256 * 4]],
    ));
    // RMSNorm over hidden rows (several warps per row) and per head (a warp per row).
    let (x, w) = (randn(&mut rng, 576 * 3), randn(&mut rng, 576));
    launches.push(launch(
        spec(KernelKind::RmsNorm, RmsNormContext::new(&t, 576, 1, 1e-5)),
        3,
        "(const float*)B[0], (const float*)B[1], (float*)B[2], n_tokens",
        vec![f32_bytes(&x), f32_bytes(&w), vec![0; 4 * 576 * 3]],
    ));
    let (hx, hw) = (randn(&mut rng, 64 * 4 * 3), randn(&mut rng, 64));
    launches.push(launch(
        spec(KernelKind::RmsNorm, RmsNormContext::new(&t, 64, 4, 1e-6)),
        3,
        "(const float*)B[0], (const float*)B[1], (float*)B[2], n_tokens * 4",
        vec![f32_bytes(&hx), f32_bytes(&hw), vec![0; 4 * 64 * 12]],
    ));
    // RoPE, both pairings, at positions 5..8.
    let rx = randn(&mut rng, 256 * 3);
    for style in [RotaryPairs::Normal, RotaryPairs::Neox] {
        launches.push(launch(
            spec(
                KernelKind::Rope,
                RopeContext::new(&t, 256, 64, 10000.0, style),
            ),
            3,
            "(float*)B[0], (const int*)B[1], n_tokens",
            vec![f32_bytes(&rx), i32_bytes(&[5])],
        ));
    }
    // Split into three, elementwise ops with a tail that is not a multiple of 4, argmax with a tie.
    let sx = randn(&mut rng, 128 * 2);
    launches.push(launch(
        spec(KernelKind::Split, SplitContext::new(&t, &[64, 32, 32])),
        2,
        "(const float*)B[0], (float*)B[1], (float*)B[2], (float*)B[3], n_tokens",
        vec![
            f32_bytes(&sx),
            vec![0; 4 * 64 * 2],
            vec![0; 4 * 32 * 2],
            vec![0; 4 * 32 * 2],
        ],
    ));
    let (a, b) = (randn(&mut rng, 101 * 2), randn(&mut rng, 101 * 2));
    for op in [ElementwiseOp::Add, ElementwiseOp::SiluMul] {
        let kind = if op == ElementwiseOp::Add {
            KernelKind::Add
        } else {
            KernelKind::SiluMul
        };
        launches.push(launch(
            spec(kind, ElementwiseContext::new(&t, op, 101)),
            2,
            "(const float*)B[0], (const float*)B[1], (float*)B[2], n_tokens * 101",
            vec![f32_bytes(&a), f32_bytes(&b), vec![0; 4 * 202]],
        ));
    }
    let mut logits = randn(&mut rng, 1000);
    logits[417] = 9.0;
    logits[800] = 9.0;
    launches.push(launch(
        spec(KernelKind::Argmax, ArgmaxContext::new(&t, 1000)),
        1,
        "(const float*)B[0], (int*)B[1], 1000, (int*)B[2], (int*)B[2] + 1, (int*)B[3], 4, 1",
        vec![
            f32_bytes(&logits),
            i32_bytes(&[-1]),
            i32_bytes(&[0, 0]),
            i32_bytes(&[0; 4]),
        ],
    ));

    let Some(()) = host_sim::run("rows", &mut launches) else {
        return;
    };
    let out = |i: usize, slot: usize| bytes_f32(&launches[i].buffers[slot]);

    let mut want = vec![0f32; 256 * 4];
    for (i, &tok) in tokens.iter().enumerate().take(3) {
        dequant::dequantize(
            GgmlType::Q4K,
            &table[tok as usize * 144..][..144],
            &mut want[i * 256..][..256],
        )
        .unwrap();
    }
    assert_eq!(out(0, 2), want, "embed");
    let mut want = vec![0f32; 576 * 3];
    ops::rmsnorm(&x, &w, 1e-5, &mut want);
    assert!(max_rel_err(&out(1, 2), &want) < TOL, "rmsnorm");
    let mut want = vec![0f32; 64 * 12];
    ops::rmsnorm(&hx, &hw, 1e-6, &mut want);
    assert!(max_rel_err(&out(2, 2), &want) < TOL, "head rmsnorm");
    for (i, style) in [(3, RopeStyle::Normal), (4, RopeStyle::Neox)] {
        let mut want = rx.clone();
        ops::rope(&mut want, 256, 64, 5, 10000.0, style);
        assert!(max_rel_err(&out(i, 0), &want) < TOL, "rope {style:?}");
    }
    let (mut o0, mut o1, mut o2) = (vec![0f32; 128], vec![0f32; 64], vec![0f32; 64]);
    ops::split(&sx, &[64, 32, 32], &mut [&mut o0, &mut o1, &mut o2]);
    assert_eq!((out(5, 1), out(5, 2), out(5, 3)), (o0, o1, o2), "split");
    let mut want = vec![0f32; 202];
    ops::add(&a, &b, &mut want);
    assert_eq!(out(6, 2), want, "add");
    ops::silu_mul(&a, &b, &mut want);
    assert!(max_rel_err(&out(7, 2), &want) < TOL, "silu_mul");
    assert_eq!(
        i32::from_le_bytes(launches[8].buffers[1][..4].try_into().unwrap()),
        ops::argmax(&logits) as i32
    );
}

/// Random caches holding positions 0..filled, as f16 (what the kernels read) and as f32 (what
/// the CPU op reads: the same values).
fn caches(
    rng: &mut Rng,
    n_ctx: usize,
    kv_width: usize,
    filled: usize,
) -> (Vec<u8>, Vec<u8>, Vec<f32>, Vec<f32>) {
    let mut make = || {
        let values: Vec<f16> = (0..n_ctx * kv_width)
            .map(|i| {
                if i < filled * kv_width {
                    f16::from_f32(rng.normal())
                } else {
                    f16::ZERO
                }
            })
            .collect();
        let bytes: Vec<u8> = values.iter().flat_map(|h| h.to_le_bytes()).collect();
        (
            bytes,
            values.iter().map(|h| h.to_f32()).collect::<Vec<f32>>(),
        )
    };
    let (kb, kf) = make();
    let (vb, vf) = make();
    (kb, vb, kf, vf)
}

#[test]
fn attention_kernels_match_the_cpu() {
    let mut rng = Rng::new(13);
    // (target, phase, n_head, n_kv_head, head_dim, pos0, n_tokens)
    let cases = [
        ("gfx1030", AttentionPhase::Decode, 6, 2, 64, 37, 1),
        ("gfx1030", AttentionPhase::Decode, 6, 2, 64, 10, 3),
        ("gfx1030", AttentionPhase::Prefill, 6, 2, 64, 3, 6),
        ("gfx90a", AttentionPhase::Decode, 8, 2, 128, 50, 1),
        ("gfx90a", AttentionPhase::Prefill, 8, 8, 128, 0, 7),
        // Phi-3's head size: 12 lanes of 8 dimensions padded to 16.
        ("gfx1030", AttentionPhase::Decode, 4, 4, 96, 21, 1),
        ("gfx90a", AttentionPhase::Prefill, 4, 2, 96, 2, 5),
    ];
    const N_CTX: usize = 64;
    let mut launches = Vec::new();
    let mut expected = Vec::new();
    for &(arch, phase, n_head, n_kv_head, head_dim, pos0, n) in &cases {
        let t = Target::parse(arch).unwrap();
        let shape = AttentionShape {
            head_dim,
            n_head,
            n_kv_head,
            n_ctx: N_CTX,
        };
        let (kb, vb, kf, vf) = caches(&mut rng, N_CTX, n_kv_head * head_dim, pos0 + n);
        let q = randn(&mut rng, n * n_head * head_dim);
        // The per-token prefill kernel; the tiled one runs in kernel_host_sim_attention.rs.
        let ctx = AttentionContext::new(&t, phase, shape, 4);
        let ctx = match phase {
            AttentionPhase::Decode => ctx,
            AttentionPhase::Prefill => ctx.with_knobs(&AttentionKnobs::per_token(4, 1)),
        };
        launches.push(launch(
            spec(KernelKind::Attention, ctx),
            n as u32,
            "(const float*)B[0], (const __half*)B[1], (const __half*)B[2], (float*)B[3], (const int*)B[4], n_tokens",
            vec![f32_bytes(&q), kb, vb, vec![0; 4 * q.len()], i32_bytes(&[pos0 as i32])],
        ));
        let mut want = vec![0f32; q.len()];
        ops::attention(
            &q,
            &kf,
            &vf,
            AttnShape {
                n_head,
                n_kv_head,
                head_dim,
            },
            pos0,
            &mut want,
        );
        expected.push(want);
    }
    // The KV store writes rows pos0.. as f16 and leaves the others alone.
    let t = Target::parse("gfx1030").unwrap();
    let (k, v) = (randn(&mut rng, 2 * 128), randn(&mut rng, 2 * 128));
    let sentinel = vec![0x55u8; 2 * N_CTX * 128];
    launches.push(launch(
        spec(KernelKind::KvStore, KvStoreContext::new(&t, 128, N_CTX)),
        2,
        "(const float*)B[0], (const float*)B[1], (__half*)B[2], (__half*)B[3], (const int*)B[4], n_tokens",
        vec![f32_bytes(&k), f32_bytes(&v), sentinel.clone(), sentinel.clone(), i32_bytes(&[20])],
    ));

    let Some(()) = host_sim::run("attention", &mut launches) else {
        return;
    };
    for ((case, l), want) in cases.iter().zip(&launches).zip(&expected) {
        let err = max_rel_err(&bytes_f32(&l.buffers[3]), want);
        assert!(err < TOL, "{case:?}: error {err}");
    }
    let store = launches.last().unwrap();
    for (cache, src) in [(&store.buffers[2], &k), (&store.buffers[3], &v)] {
        let mut want = sentinel.clone();
        for (i, x) in src.iter().enumerate() {
            want[2 * (20 * 128 + i)..][..2].copy_from_slice(&f16::from_f32(*x).to_le_bytes());
        }
        assert!(cache == &want, "kv_store");
    }
}
