//! Whole models on the GPU against the CPU backend: random-weight models at real shapes (fewer
//! layers), prefill logits of every position, then greedy decode steps through the captured
//! graph. Skips with a printed reason without a GPU.
//!
//! Tolerance: NMSE of each logits row <= 1e-4. The GPU keeps the KV cache in f16 (relative
//! rounding 2^-11 per element) where the CPU keeps f32, and kernels sum in other orders; through
//! two layers this measures ~1e-6 to 1e-5, while any wrong op gives ~1. Decode steps run the
//! GEMV with int8 x (q8_1, as llama.cpp), which adds an NMSE of about 3e-5 per matmul: their
//! logits are checked at 1e-3. Greedy tokens must match wherever the CPU's top two logits are
//! further apart than the error allows.

mod gpu_support;

use std::sync::Arc;

use gpu_support::{check_models, gpu_or_skip, nmse, SynthModel};
use rocmforge::backend::cpu::ops::argmax;
use rocmforge::backend::cpu::CpuBackend;
use rocmforge::backend::gpu::{ExecutorConfig, GpuBackend, GpuRuntime, RUN_STEPS};
use rocmforge::backend::Backend;
use rocmforge::plan::Model;

const N_CTX: usize = 128;
const LOGITS_TOL: f64 = 1e-4;
const DECODE_LOGITS_TOL: f64 = 1e-3;
/// A top-two logit gap (relative to the largest logit) that decode's error cannot close: an NMSE
/// of 1e-3 is a relative error of about 3e-2.
const DECODE_MARGIN: f32 = 1e-1;

/// `err <= tol`, with NaN (a broken kernel) counted as outside.
fn within(err: f64, tol: f64) -> bool {
    err.partial_cmp(&tol).is_some_and(|o| o.is_le())
}

fn prompt(model: &Model, n: usize) -> Vec<u32> {
    (0..n as u64)
        .map(|i| ((i * 2_654_435_761 + 12_345) % model.hparams.n_vocab as u64) as u32)
        .collect()
}

/// Top-two margin of a logits row, relative to the row's scale.
fn clear_winner(row: &[f32], margin: f32) -> bool {
    let mut sorted: Vec<f32> = row.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let scale = row.iter().map(|v| v.abs()).fold(0f32, f32::max).max(1e-6);
    (sorted[0] - sorted[1]) / scale > margin
}

fn load(runtime: &Arc<dyn GpuRuntime>, model: &Arc<Model>, config: ExecutorConfig) -> GpuBackend {
    GpuBackend::load(runtime.clone(), model.clone(), config).expect("GPU backend")
}

fn check_model(runtime: &Arc<dyn GpuRuntime>, spec: SynthModel) -> Vec<String> {
    let model = spec.build();
    let label = spec.label();
    let n_vocab = model.hparams.n_vocab;
    let mut failures = Vec::new();
    let mut cpu = CpuBackend::new(model.clone(), N_CTX);
    let mut gpu = load(runtime, &model, ExecutorConfig::new(N_CTX));
    let tokens = prompt(&model, 11);

    let want = cpu.forward(&tokens, 0, true).unwrap();
    // Every prefill position's logits against the CPU's, worst NMSE printed under `what`.
    let mut check_prefill = |got: &[f32], what: &str| {
        let mut worst = 0f64;
        for (t, (g, w)) in got.chunks(n_vocab).zip(want.chunks(n_vocab)).enumerate() {
            let err = nmse(g, w);
            worst = worst.max(err);
            if !within(err, LOGITS_TOL) {
                failures.push(format!(
                    "{label}: {what}, position {t}: logits nmse {err:.3e}"
                ));
            }
        }
        eprintln!("{label:<36} {what}: worst logits nmse {worst:.3e}");
    };
    check_prefill(&gpu.forward(&tokens, 0, true).unwrap(), "prefill 11 tokens");
    if let Some(library) = runtime.gemm_f16_library() {
        // Prefill again with the matmuls on the vendor GEMM over f16-staged operands.
        let mut config = ExecutorConfig::new(N_CTX);
        config.vendor_gemm = true;
        let got = load(runtime, &model, config)
            .forward(&tokens, 0, true)
            .unwrap();
        check_prefill(&got, &format!("prefill on {library}"));
    }

    // Greedy decode through the graph, fed the CPU's tokens so both stay on one path.
    let mut next = argmax(&want[(tokens.len() - 1) * n_vocab..]) as u32;
    let mut worst = 0f64;
    for pos in tokens.len()..tokens.len() + 6 {
        let want = cpu.forward(&[next], pos, false).unwrap();
        let got = gpu.forward(&[next], pos, false).unwrap();
        let err = nmse(&got, &want);
        worst = worst.max(err);
        if !within(err, DECODE_LOGITS_TOL) {
            failures.push(format!(
                "{label}: decode position {pos}: logits nmse {err:.3e}"
            ));
        }
        // Same position again through forward_argmax: rewrites the same cache row.
        let gpu_token = gpu.forward_argmax(&[next], pos).unwrap();
        if gpu_token != argmax(&got) as u32 {
            failures.push(format!(
                "{label}: position {pos}: device argmax {gpu_token} != argmax of its logits {}",
                argmax(&got)
            ));
        }
        let cpu_token = argmax(&want) as u32;
        if clear_winner(&want, DECODE_MARGIN) && gpu_token != cpu_token {
            failures.push(format!(
                "{label}: position {pos}: greedy token {gpu_token} != cpu {cpu_token}"
            ));
        }
        next = cpu_token;
    }
    eprintln!("{label:<36} decode 6 steps (graph): worst logits nmse {worst:.3e}");

    // A greedy run (steps fed their input on the device, RUN_STEPS to a graph, then single
    // steps) makes the tokens that one forward_argmax per step makes from the same point.
    let start = tokens.len() + 6;
    let steps = RUN_STEPS + 3;
    let mut run_tokens = Vec::new();
    gpu.greedy_run(next, start, steps, &mut |t| {
        run_tokens.push(t);
        true
    })
    .unwrap();
    let mut step_tokens = Vec::new();
    for pos in start..start + steps {
        next = gpu.forward_argmax(&[next], pos).unwrap();
        step_tokens.push(next);
    }
    if run_tokens != step_tokens {
        failures.push(format!(
            "{label}: greedy run {run_tokens:?} != step by step {step_tokens:?}"
        ));
    }
    failures
}

fn run(specs: Vec<SynthModel>) {
    check_models(specs, check_model);
}

#[test]
fn llama_plan_models_match_cpu() {
    let mut fused = SynthModel::new("smollm2-135m", 2, "Q4_K_M");
    fused.fused_qkv = true;
    run(vec![
        SynthModel::new("smollm2-135m", 2, "Q4_0"),
        SynthModel::new("smollm2-135m", 2, "Q8_0"),
        fused,
        SynthModel::new("llama3-8b", 1, "Q4_K_M"),
    ]);
}

#[test]
fn qwen2_plan_models_match_cpu() {
    run(vec![
        SynthModel::new("qwen2.5-0.5b", 2, "Q8_0"),
        SynthModel::new("qwen2.5-0.5b", 2, "F16"),
    ]);
}

#[test]
fn chunked_prefill_and_plain_launches_agree_with_the_defaults() {
    let Some(runtime) = gpu_or_skip() else { return };
    let model = SynthModel::new("smollm2-135m", 2, "Q4_1").build();
    let tokens = prompt(&model, 13);
    let base = load(&runtime, &model, ExecutorConfig::new(N_CTX))
        .forward(&tokens, 0, true)
        .unwrap();
    let mut chunked_config = ExecutorConfig::new(N_CTX);
    chunked_config.max_chunk = 5;
    let chunked = load(&runtime, &model, chunked_config)
        .forward(&tokens, 0, true)
        .unwrap();
    // Chunks of 5 and 3 may use other kernels than one launch of 13: the chunk of 3 runs the
    // decode GEMV on int8 x (NMSE ~3e-5 per matmul, see DECODE_LOGITS_TOL) where the others run
    // the GEMM on f16 tiles.
    let err = nmse(&chunked, &base);
    eprintln!("chunked (5+5+3) vs one chunk: nmse {err:.3e}");
    assert!(err <= 1e-4, "chunked prefill differs: nmse {err:.3e}");

    let mut graph = load(&runtime, &model, ExecutorConfig::new(N_CTX));
    let mut plain_config = ExecutorConfig::new(N_CTX);
    plain_config.use_graph = false;
    let mut plain = load(&runtime, &model, plain_config);
    graph.forward(&tokens, 0, false).unwrap();
    plain.forward(&tokens, 0, false).unwrap();
    for (i, pos) in (tokens.len()..tokens.len() + 4).enumerate() {
        let t = tokens[i];
        let a = graph.forward(&[t], pos, false).unwrap();
        let b = plain.forward(&[t], pos, false).unwrap();
        assert_eq!(
            a, b,
            "graph replay and plain launches must run the same kernels"
        );
    }
}

#[test]
fn too_large_a_context_is_a_clear_error() {
    let Some(runtime) = gpu_or_skip() else { return };
    let model = SynthModel::new("llama3-8b", 1, "Q4_0").build();
    let free = runtime.mem_info().unwrap().free;
    // 8 KV heads x 128 x 2 bytes x 2 = 4 KiB per position per layer: enough positions to
    // overflow the free memory twice over.
    let n_ctx = free / 4096 * 2;
    let err = GpuBackend::load(runtime.clone(), model, ExecutorConfig::new(n_ctx))
        .err()
        .expect("cannot fit")
        .to_string();
    assert!(err.contains("needs") && err.contains("free"), "{err}");
}

/// Not a benchmark, a report: prefill and decode times of a full-depth SmolLM2-135M-shaped model
/// (Q4_0), decode with and without the graph, so the logs show what capture buys. Fails only if
/// the graph makes decode slower by more than half, which would mean replay is broken.
#[test]
fn decode_timing_report() {
    use rocmforge::backend::gpu::Event;
    use std::time::Instant;
    let Some(runtime) = gpu_or_skip() else { return };
    let model = SynthModel::new("smollm2-135m", 30, "Q4_0").build();
    let tokens = prompt(&model, 128);
    let mut per_token_ms = Vec::new();
    for use_graph in [true, false] {
        let mut config = ExecutorConfig::new(512);
        config.use_graph = use_graph;
        let mut gpu = load(&runtime, &model, config);
        let (start, end) = (Event::new(&runtime).unwrap(), Event::new(&runtime).unwrap());
        start.record().unwrap();
        let mut next = gpu.forward_argmax(&tokens, 0).unwrap();
        end.record().unwrap();
        let prefill_ms = start.elapsed_ms(&end).unwrap();
        // Warm up (captures the graph), then time 64 greedy steps end to end on the host.
        next = gpu.forward_argmax(&[next], tokens.len()).unwrap();
        let steps = 64;
        let began = Instant::now();
        for pos in tokens.len() + 1..tokens.len() + 1 + steps {
            next = gpu.forward_argmax(&[next], pos).unwrap();
        }
        let ms = began.elapsed().as_secs_f64() * 1e3 / steps as f64;
        // The same steps again as one greedy run: inputs fed on the device (its graph of
        // RUN_STEPS steps captured first, as the single step's was).
        gpu.greedy_run(next, tokens.len() + 1, RUN_STEPS, &mut |_| true)
            .unwrap();
        let began = Instant::now();
        gpu.greedy_run(next, tokens.len() + 1, steps, &mut |_| true)
            .unwrap();
        let run_ms = began.elapsed().as_secs_f64() * 1e3 / steps as f64;
        eprintln!(
            "smollm2-135m Q4_0 (synthetic) graph={use_graph}: prefill 128 tokens {prefill_ms:.2} ms \
             ({:.0} tok/s), decode {ms:.3} ms/token ({:.0} tok/s), greedy run {run_ms:.3} ms/token",
            128.0 / (prefill_ms as f64 / 1e3),
            1e3 / ms
        );
        assert!(ms.is_finite() && ms > 0.0);
        per_token_ms.push(ms);
    }
    assert!(
        per_token_ms[0] < per_token_ms[1] * 1.5,
        "graph decode {:.3} ms vs plain {:.3} ms",
        per_token_ms[0],
        per_token_ms[1]
    );
}
