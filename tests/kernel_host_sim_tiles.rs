//! The prefill GEMM on matrix tiles (`matmul_gemm_tiles`) executed on the host (tests/host_sim)
//! for every tuning candidate, against the product of the f16-rounded dequantized weights and
//! activations summed in f64. For NVIDIA the matrix prelude is replaced by a scalar stand-in
//! (tests/host_sim/matrix_host.hip) and the CUDA prelude by the HIP one; for AMD (gfx90a) only
//! the MFMA instruction is replaced, by a lane-by-lane emulation (tests/host_sim/mfma_host.hip),
//! so the fragment layout code of the HIP matrix prelude runs too. Either way what runs is the
//! kernel's own code: tile loads and stores, pipelining, partial tiles, the epilogue.

mod gemm_tiles_case;
mod host_cxx;
mod host_sim;

use gemm_tiles_case::Case;
use host_sim::{bytes_f32, f32_bytes, host_templates, max_rel_err, Launch};
use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::{OpContext, Tunable};
use rocmforge::codegen::ops::GemmTilesContext;
use rocmforge::codegen::{KernelKind, KernelSpec, Renderer};
use rocmforge::gguf::GgmlType;
use rocmforge::util::rng::Rng;

/// Only the summation order differs from the oracle.
const TOL: f32 = 2e-5;

const ARGS: &str =
    "(const unsigned char*)B[0], (const float*)B[1], (float*)B[2], (const float*)B[3], n_tokens";

/// The case as a host-simulated launch.
fn launch(case: &Case, spec: KernelSpec) -> Launch {
    Launch {
        spec,
        n_tokens: case.tokens as u32,
        args: ARGS.to_string(),
        buffers: vec![
            case.weights.clone(),
            f32_bytes(&case.x),
            vec![0; 4 * case.n * case.tokens],
            f32_bytes(&case.bias),
        ],
    }
}
/// Runs each case with the candidates `pick(index, count)` selects, compares with the oracle and
/// returns the knobs (JSON) that ran.
fn check(
    name: &str,
    target: &str,
    cases: &[Case],
    pick: impl Fn(usize, usize) -> bool,
) -> Vec<String> {
    let target = Target::parse(target).unwrap();
    let dir = host_templates(name);
    let renderer = Renderer::from_dir(&dir).unwrap();
    let mut launches = Vec::new();
    let mut owners = Vec::new();
    let mut int8 = Vec::new();
    for (c, case) in cases.iter().enumerate() {
        let ctx = GemmTilesContext::new(&target, case.format, case.k, case.n)
            .expect("the shape fits the default tile");
        let candidates = ctx.candidates();
        for (i, knobs) in candidates.iter().enumerate() {
            if !pick(i, candidates.len()) {
                continue;
            }
            let ctx = ctx.with_knobs(knobs);
            ctx.validate().unwrap();
            int8.push(ctx.int8);
            let spec = KernelSpec::new(KernelKind::MatmulGemm, &ctx, &renderer).unwrap();
            launches.push(launch(case, spec));
            owners.push(c);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    let Some(()) = host_sim::run(name, &mut launches) else {
        return Vec::new();
    };
    for ((l, &c), &int8) in launches.iter().zip(&owners).zip(&int8) {
        let err = max_rel_err(&bytes_f32(&l.buffers[2]), &cases[c].expected(int8));
        assert!(
            err < TOL,
            "{} {}: error {err}",
            l.spec.problem,
            l.spec.knobs_json
        );
    }
    launches.into_iter().map(|l| l.spec.knobs_json).collect()
}

/// Every candidate on Q4_0 with partial tiles in both directions (80 rows, 70 tokens).
#[test]
fn every_gemm_tiles_candidate_matches_the_reference_product() {
    let mut rng = Rng::new(5);
    let cases = [Case::new(&mut rng, GgmlType::Q4_0, 256, 80, 70)];
    let ran = check("tiles-all", "sm_90", &cases, |_, _| true);
    // Both pipelining depths, the int8 variant and both warp layouts ran (empty: no host
    // compiler, skipped).
    for knob in [
        "\"stages\":1",
        "\"stages\":2",
        "\"int8\":true",
        "\"warps_m\":1",
        "\"warps_m\":4",
    ] {
        assert!(
            ran.is_empty() || ran.iter().any(|k| k.contains(knob)),
            "{knob}: {ran:?}"
        );
    }
}

/// Other chunk shapes (8-value F16, 256-value blocks, 2-byte-aligned Q8_0 rows with an odd
/// block count) with the default and the last candidate (int8 where the format has it, else
/// double-buffered).
#[test]
fn gemm_tiles_formats_match_the_reference_product() {
    let mut rng = Rng::new(6);
    let cases = [
        Case::new(&mut rng, GgmlType::Q8_0, 96, 40, 17),
        Case::new(&mut rng, GgmlType::Q4K, 512, 48, 33),
        Case::new(&mut rng, GgmlType::Q6K, 256, 20, 9),
        Case::new(&mut rng, GgmlType::F16, 128, 64, 65),
        Case::new(&mut rng, GgmlType::Q5_1, 64, 16, 3),
    ];
    check("tiles-formats", "sm_90", &cases, |i, count| {
        i == 0 || i + 1 == count
    });
}

/// AMD matrix cores (64-lane wavefronts): every candidate on Q4_0 with partial tiles, the
/// default and the last candidate on a K-quant.
#[test]
fn mfma_tiles_match_the_reference_product() {
    let mut rng = Rng::new(7);
    let cases = [Case::new(&mut rng, GgmlType::Q4_0, 256, 80, 70)];
    let ran = check("tiles-mfma", "gfx90a", &cases, |_, _| true);
    assert!(
        ran.is_empty() || ran.iter().any(|k| k.contains("\"stages\":2")),
        "{ran:?}"
    );
    let cases = [Case::new(&mut rng, GgmlType::Q4K, 512, 48, 33)];
    check("tiles-mfma-k", "gfx90a", &cases, |i, count| {
        i == 0 || i + 1 == count
    });
}
