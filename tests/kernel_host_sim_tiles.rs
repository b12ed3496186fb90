//! The prefill GEMM on matrix tiles (`matmul_gemm_tiles`, NVIDIA targets) executed on the host
//! (tests/host_sim) for every tuning candidate, against the product of the f16-rounded
//! dequantized weights and activations summed in f64. The matrix prelude is replaced by a scalar
//! stand-in (tests/host_sim/matrix_host.hip) and the CUDA prelude by the HIP one, so what runs is
//! the kernel's own code: tile loads and stores, pipelining, partial tiles, the epilogue.

mod host_sim;

use std::path::{Path, PathBuf};

use half::f16;
use host_sim::{bytes_f32, f32_bytes, max_rel_err, Launch};
use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::{OpContext, Tunable};
use rocmforge::codegen::ops::GemmTilesContext;
use rocmforge::codegen::render::template_names;
use rocmforge::codegen::{KernelKind, KernelSpec, Renderer};
use rocmforge::gguf::{dequant, quantize, GgmlType};
use rocmforge::util::rng::Rng;

/// Only the summation order differs from the oracle.
const TOL: f32 = 2e-5;

const ARGS: &str =
    "(const unsigned char*)B[0], (const float*)B[1], (float*)B[2], (const float*)B[3], n_tokens";

/// The templates with the CUDA preludes swapped for host-runnable ones, in a fresh folder.
fn host_templates() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let dir =
        std::env::temp_dir().join(format!("rocmforge-tiles-templates-{}", std::process::id()));
    for name in template_names() {
        let from = match name {
            "prelude/cuda.hip.tera" => src.join("prelude/hip.hip.tera"),
            "prelude/matrix_cuda.hip.tera" => {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/host_sim/matrix_host.hip")
            }
            _ => src.join(name),
        };
        let to = dir.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    dir
}

struct Case {
    format: GgmlType,
    k: usize,
    n: usize,
    tokens: usize,
    weights: Vec<u8>,
    x: Vec<f32>,
    bias: Vec<f32>,
}

impl Case {
    fn new(rng: &mut Rng, format: GgmlType, k: usize, n: usize, tokens: usize) -> Case {
        Case {
            format,
            k,
            n,
            tokens,
            weights: quantize::random_blocks(format, k * n, rng, 1.0),
            x: (0..k * tokens).map(|_| rng.normal()).collect(),
            bias: (0..n).map(|_| rng.normal()).collect(),
        }
    }

    /// out[t][n] = sum_k f16(w[n][k]) * f16(x[t][k]) + bias[n], the tensor cores' inputs.
    fn expected(&self) -> Vec<f32> {
        let round = |v: f32| f16::from_f32(v).to_f64();
        let w: Vec<f64> = dequant::dequantize_to_vec(self.format, &self.weights, self.k * self.n)
            .unwrap()
            .into_iter()
            .map(round)
            .collect();
        let x: Vec<f64> = self.x.iter().copied().map(round).collect();
        let mut out = vec![0f32; self.tokens * self.n];
        for t in 0..self.tokens {
            for n in 0..self.n {
                let row = &w[n * self.k..(n + 1) * self.k];
                let xs = &x[t * self.k..(t + 1) * self.k];
                let dot: f64 = row.iter().zip(xs).map(|(a, b)| a * b).sum();
                out[t * self.n + n] = (dot + self.bias[n] as f64) as f32;
            }
        }
        out
    }

    fn launch(&self, spec: KernelSpec) -> Launch {
        Launch {
            spec,
            n_tokens: self.tokens as u32,
            args: ARGS.to_string(),
            buffers: vec![
                self.weights.clone(),
                f32_bytes(&self.x),
                vec![0; 4 * self.n * self.tokens],
                f32_bytes(&self.bias),
            ],
        }
    }
}

/// Runs `case` with each candidate `pick` selects and compares with the oracle.
fn check(name: &str, cases: &[Case], pick: impl Fn(usize) -> bool) {
    let target = Target::parse("sm_90").unwrap();
    let dir = host_templates();
    let renderer = Renderer::from_dir(&dir).unwrap();
    let mut launches = Vec::new();
    let mut owners = Vec::new();
    for (c, case) in cases.iter().enumerate() {
        let ctx = GemmTilesContext::new(&target, case.format, case.k, case.n)
            .expect("the shape fits the default tile");
        for (i, knobs) in ctx.candidates().iter().enumerate() {
            if !pick(i) {
                continue;
            }
            let ctx = ctx.with_knobs(knobs);
            ctx.validate().unwrap();
            let spec = KernelSpec::new(KernelKind::MatmulGemm, &ctx, &renderer).unwrap();
            launches.push(case.launch(spec));
            owners.push(c);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    let Some(()) = host_sim::run(name, &mut launches) else {
        return;
    };
    for (l, &c) in launches.iter().zip(&owners) {
        let err = max_rel_err(&bytes_f32(&l.buffers[2]), &cases[c].expected());
        assert!(
            err < TOL,
            "{} {}: error {err}",
            l.spec.problem,
            l.spec.knobs_json
        );
    }
}

/// Every candidate on Q4_0 with partial tiles in both directions (80 rows, 70 tokens).
#[test]
fn every_gemm_tiles_candidate_matches_the_f16_product() {
    let mut rng = Rng::new(5);
    let cases = [Case::new(&mut rng, GgmlType::Q4_0, 256, 80, 70)];
    check("tiles-all", &cases, |_| true);
}

/// Other chunk shapes (8-value F16, 256-value blocks, 2-byte-aligned Q8_0 rows with an odd
/// block count) with the default and the last candidate.
#[test]
fn gemm_tiles_formats_match_the_f16_product() {
    let mut rng = Rng::new(6);
    let cases = [
        Case::new(&mut rng, GgmlType::Q8_0, 96, 40, 17),
        Case::new(&mut rng, GgmlType::Q4K, 512, 48, 33),
        Case::new(&mut rng, GgmlType::Q6K, 256, 20, 9),
        Case::new(&mut rng, GgmlType::F16, 128, 64, 65),
        Case::new(&mut rng, GgmlType::Q5_1, 64, 16, 3),
    ];
    check("tiles-formats", &cases, |i| i == 0 || i % 7 == 6);
}
