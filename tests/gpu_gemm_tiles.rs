//! The prefill GEMM on matrix tiles (`matmul_gemm_tiles`) on the GPU for every tuning candidate
//! (tile shapes, warp layouts, pipelining depth, the int8 variant) and several weight formats,
//! against the product of the dequantized weights and the activations as the matrix units take
//! them, summed in f64 (tests/gemm_tiles_case).
//! gpu_ops checks only each problem's default, and the tuner only compares candidates with the
//! default; this checks every candidate against an independent oracle. Skips with a printed
//! reason without a GPU, or on a GPU without matrix tiles.

mod gemm_tiles_case;
mod gpu_support;

use std::ffi::c_void;

use gemm_tiles_case::Case;
use gpu_support::gpu_or_skip;
use rocmforge::backend::gpu::compiled::target_of;
use rocmforge::backend::gpu::{DeviceBuffer, LaunchDims, Module};
use rocmforge::codegen::compiler::compiler_for;
use rocmforge::codegen::context::Tunable;
use rocmforge::codegen::ops::GemmTilesContext;
use rocmforge::codegen::{KernelKind, KernelSpec, Renderer};
use rocmforge::gguf::GgmlType;
use rocmforge::util::rng::Rng;

/// Largest error relative to the largest output: f32 sums in the tensor cores' order (K <= 1024)
/// stay near 1e-6; a wrong tile, row or token gives ~1.
const TOL: f32 = 1e-4;

fn arg<T>(value: &mut T) -> *mut c_void {
    (value as *mut T).cast()
}

fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| {
            if g.is_finite() {
                (g - w).abs() / scale
            } else {
                f32::INFINITY
            }
        })
        .fold(0f32, f32::max)
}

#[test]
fn every_gemm_tiles_candidate_matches_the_reference_product_on_the_gpu() {
    let Some(rt) = gpu_or_skip() else { return };
    let target = target_of(rt.info()).unwrap();
    if !target.has_matrix_tiles() {
        eprintln!("skipped: {} has no matrix tiles", rt.info().arch);
        return;
    }
    let compiler = compiler_for(&target).unwrap();
    let renderer = Renderer::embedded().unwrap();
    let mut rng = Rng::new(21);
    // Partial tiles in both directions for every tile size (N and tokens not multiples of 128);
    // an odd count of 2-byte-aligned Q8_0 blocks per row; 256-value blocks; 8-value F16 chunks.
    let cases = [
        Case::new(&mut rng, GgmlType::Q4_0, 1024, 320, 200),
        Case::new(&mut rng, GgmlType::Q8_0, 864, 200, 77),
        Case::new(&mut rng, GgmlType::Q4K, 512, 136, 130),
        Case::new(&mut rng, GgmlType::Q6K, 768, 72, 9),
        Case::new(&mut rng, GgmlType::F16, 256, 96, 33),
    ];
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in &cases {
        let want = [case.expected(false), case.expected(true)];
        let dw = DeviceBuffer::from_host(&rt, &case.weights).unwrap();
        let dx = DeviceBuffer::from_host(&rt, &case.x).unwrap();
        let db = DeviceBuffer::from_host(&rt, &case.bias).unwrap();
        let mut out = DeviceBuffer::<f32>::zeroed(&rt, case.tokens * case.n).unwrap();
        let ctx = GemmTilesContext::new(&target, case.format, case.k, case.n)
            .expect("the shape fits the default tile");
        for knobs in ctx.candidates() {
            let ctx = ctx.with_knobs(&knobs);
            let spec = KernelSpec::new(KernelKind::MatmulGemm, &ctx, &renderer).unwrap();
            let kernel = compiler.compile(&spec.to_source(), &target).unwrap();
            let module = Module::load(&rt, &kernel.binary).unwrap();
            let function = module.function(&spec.name).unwrap();
            // NaN everywhere first: an output the kernel fails to write cannot pass.
            out.copy_from_host(&vec![f32::NAN; case.tokens * case.n])
                .unwrap();
            let (mut pw, mut px, mut po, mut pb) = (dw.ptr(), dx.ptr(), out.ptr(), db.ptr());
            let mut n_tokens = case.tokens as i32;
            let dims = LaunchDims {
                grid: spec.grid(case.tokens as u32),
                block: spec.block,
                shared_bytes: 0,
                // As the executor launches prefill kernels.
                dependent: false,
            };
            // SAFETY: the arguments match the kernel's (W, x, out, bias, n_tokens) and the
            // buffers hold K * N weights, tokens * K inputs, tokens * N outputs and N biases;
            // to_host below synchronizes before they drop.
            unsafe {
                rt.launch(
                    function,
                    &dims,
                    &mut [
                        arg(&mut pw),
                        arg(&mut px),
                        arg(&mut po),
                        arg(&mut pb),
                        arg(&mut n_tokens),
                    ],
                )
                .unwrap()
            };
            let err = max_rel_err(&out.to_host().unwrap(), &want[ctx.int8 as usize]);
            if err >= TOL {
                failures.push(format!("{} {}: error {err}", spec.problem, spec.knobs_json));
            }
            runs += 1;
        }
    }
    eprintln!("{runs} candidate launches checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
