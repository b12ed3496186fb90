//! The GPU executor's logic without a GPU: a host-memory fake runtime records what the executor
//! queues, so memory checks, weight upload, launch arguments (against the kernel ABI in
//! CONTRACT.md), chunking and decode-graph capture are checked here. Kernel results are the GPU
//! tests' job (gpu_ops.rs, gpu_model.rs).

mod gpu_support;

use std::sync::Arc;

use gpu_support::fake::{FakeKernels, FakeRuntime, MissingKernels, Recorded};
use gpu_support::SynthModel;
use rocmforge::backend::gpu::layout::{io_ring, FEED_RING, IO_ARGMAX, IO_POS0, IO_TOKENS};
use rocmforge::backend::gpu::schedule::{KernelArg, Launch, Logits, ScheduleRequest};
use rocmforge::backend::gpu::{
    memory_budget, ExecutorConfig, GpuBackend, GpuRuntime, KernelRole, KernelTable, Section,
    StepSite, RUN_STEPS,
};
use rocmforge::backend::{Backend, BackendError};
use rocmforge::graph::ValueId;
use rocmforge::plan::Model;

fn tiny_llama() -> Arc<Model> {
    let mut spec = SynthModel::new("smollm2-135m", 2, "Q4_0");
    spec.n_vocab = Some(512);
    spec.build()
}

fn tiny_qwen() -> Arc<Model> {
    let mut spec = SynthModel::new("qwen2.5-0.5b", 2, "Q8_0");
    spec.n_vocab = Some(512);
    spec.build()
}

fn backend_with(
    model: &Arc<Model>,
    kernels: Box<dyn KernelTable>,
    config: ExecutorConfig,
) -> (Arc<FakeRuntime>, GpuBackend) {
    let fake = Arc::new(FakeRuntime::new(1 << 34));
    let runtime: Arc<dyn GpuRuntime> = fake.clone();
    let backend = GpuBackend::new(runtime, model.clone(), kernels, config).expect("executor");
    (fake, backend)
}

fn value_id(model: &Model, name: &str) -> ValueId {
    model
        .program
        .values
        .iter()
        .position(|v| v.name == name)
        .unwrap_or_else(|| panic!("no value '{name}'"))
}

fn ptrs(args: &[KernelArg]) -> Vec<u64> {
    args.iter()
        .map(|a| match *a {
            KernelArg::Ptr(p) => p,
            KernelArg::I32(v) => v as u64,
        })
        .collect()
}

fn kernel_args(launch: &Launch) -> (&str, Vec<u64>) {
    match launch {
        Launch::Kernel { label, args, .. } => (label, ptrs(args)),
        Launch::Copy { .. } => ("copy", Vec::new()),
        Launch::Gemm { label, .. } => (label, Vec::new()),
    }
}

#[test]
fn decode_schedule_follows_the_kernel_abi() {
    let model = tiny_llama();
    let (_, gpu) = backend_with(&model, Box::new(FakeKernels), ExecutorConfig::new(64));
    let launches = decode_launches(&gpu);
    // Decode runs a llama layer in 5 launches: norm+q+k+v, attention (rotating q and k and
    // storing k and v itself), output+residual, norm+gate+up+silu_mul, down+residual
    // (graph::fuse); the epilogue's norm and LM head are one GEMV; then the argmax.
    assert_eq!(launches.len(), 1 + 5 * model.hparams.n_layer + 1 + 1);

    let addr = gpu.addresses();
    let arena = gpu.arena_layout();
    let value = |name: &str| addr.arena + arena.offsets[value_id(&model, name)] as u64;
    let weight = |name: &str| addr.weights + gpu.weight_layout().offsets[name] as u64;

    // embed (table, tokens, out, n_tokens)
    let (_, embed) = kernel_args(&launches[0]);
    assert_eq!(
        embed,
        vec![
            weight("token_embd.weight"),
            addr.io + 4 * IO_TOKENS as u64,
            value("x"),
            1
        ]
    );
    // Attention of layer 1 (q, k, v, k_cache, v_cache, out, pos0, n): the unrotated q, k, v
    // and that layer's cache.
    let attention: Vec<Vec<u64>> = launches
        .iter()
        .map(kernel_args)
        .filter(|(label, _)| label.ends_with("(fused rope)"))
        .map(|(_, a)| a)
        .collect();
    assert_eq!(attention.len(), model.hparams.n_layer);
    let side = addr.kv_side_bytes as u64;
    assert_eq!(attention[1][..3], [value("q"), value("k"), value("v")]);
    assert_eq!(attention[1][3], addr.kv_cache + 2 * side);
    assert_eq!(attention[1][4], addr.kv_cache + 3 * side);
    assert_eq!(attention[1][6..], [addr.io, 1]);
    // The first GEMV (W0, W1, W2, b0, b1, b2, x, norm_w, residual, out0, out1, out2, n): q, k
    // and v of layer 0 from x normalized by attn_norm.
    let (_, qkv) = kernel_args(&launches[1]);
    assert_eq!(
        qkv[..3],
        [
            weight("blk.0.attn_q.weight"),
            weight("blk.0.attn_k.weight"),
            weight("blk.0.attn_v.weight")
        ]
    );
    assert_eq!(qkv[6..9], [value("x"), weight("blk.0.attn_norm.weight"), 0]);
    assert_eq!(qkv[9..], [value("q"), value("k"), value("v"), 1]);
    // The down projection adds the residual x in place.
    let (_, down) = kernel_args(&launches[5]);
    assert_eq!(down[0], weight("blk.0.ffn_down.weight"));
    assert_eq!((down[8], down[9]), (value("x"), value("x")));
    // argmax (x, out, n, next_token, pos0, ring, ring_len, advance) over the logits row 0 into
    // the I/O block, feeding the next step its token and position and the ring its result.
    let (label, argmax) = kernel_args(launches.last().unwrap());
    assert_eq!(label, "argmax");
    let io = |slot: usize| addr.io + 4 * slot as u64;
    assert_eq!(
        argmax,
        vec![
            value("logits"),
            io(IO_ARGMAX),
            model.hparams.n_vocab as u64,
            io(IO_TOKENS),
            io(IO_POS0),
            io(io_ring(ExecutorConfig::new(64).max_chunk)),
            FEED_RING as u64,
            1
        ]
    );
    // Each layer's matmuls read that layer's weights.
    let q1 = weight("blk.1.attn_q.weight");
    assert!(launches
        .iter()
        .any(|l| kernel_args(l).1.first() == Some(&q1)));
}

/// Where the decode attention does not rotate itself (tuned so), each layer's rope + attention is
/// two launches as in prefill: rope_store (q, k, v, q_out, k_cache, v_cache, pos0, n) writing
/// the rotated q in place, then attention (q, k_cache, v_cache, out, pos0, n) reading it.
#[test]
fn unfused_decode_runs_rope_store_then_attention() {
    let model = tiny_llama();
    let table = MissingKernels(KernelRole::RopeAttention);
    let (_, gpu) = backend_with(&model, Box::new(table), ExecutorConfig::new(64));
    let launches = decode_launches(&gpu);
    assert_eq!(launches.len(), 1 + 6 * model.hparams.n_layer + 1 + 1);
    let addr = gpu.addresses();
    let arena = gpu.arena_layout();
    let value = |name: &str| addr.arena + arena.offsets[value_id(&model, name)] as u64;
    let side = addr.kv_side_bytes as u64;
    let labels: Vec<&str> = launches.iter().map(|l| kernel_args(l).0).collect();
    assert!(
        !labels.iter().any(|l| l.ends_with("(fused rope)")),
        "{labels:?}"
    );
    let store = labels
        .iter()
        .position(|l| l.ends_with("rope_store"))
        .unwrap();
    let (_, rope_store) = kernel_args(&launches[store]);
    let (_, attention) = kernel_args(&launches[store + 1]);
    let (q, k, v) = (value("q"), value("k"), value("v"));
    assert_eq!(
        rope_store,
        [q, k, v, q, addr.kv_cache, addr.kv_cache + side, addr.io, 1]
    );
    assert_eq!(
        attention,
        [
            q,
            addr.kv_cache,
            addr.kv_cache + side,
            value("a"),
            addr.io,
            1
        ]
    );
}

#[test]
fn prefill_epilogue_reads_only_the_last_row() {
    let model = tiny_llama();
    let (_, gpu) = backend_with(&model, Box::new(FakeKernels), ExecutorConfig::new(64));
    let n = 5;
    let x = value_id(&model, "x");
    let logits = value_id(&model, "logits");
    let addr = gpu.addresses();
    let arena = gpu.arena_layout();
    let row =
        |id: ValueId, r: usize| addr.arena + (arena.offsets[id] + r * arena.widths[id] * 4) as u64;
    let last = gpu
        .schedule(ScheduleRequest {
            n_tokens: n,
            logits: Logits::LastRow,
            argmax: true,
        })
        .unwrap();
    // The epilogue over one row is one GEMV (output_norm fused into the LM head).
    let (_, head) = kernel_args(&last[last.len() - 2]);
    assert_eq!(head[6], row(x, n - 1), "epilogue reads x at the last token");
    assert_eq!(head[12], 1, "one row through the epilogue");
    assert_eq!(kernel_args(last.last().unwrap()).1[0], row(logits, 0));

    let all = gpu
        .schedule(ScheduleRequest {
            n_tokens: n,
            logits: Logits::AllRows,
            argmax: true,
        })
        .unwrap();
    // All rows go through the prefill epilogue unfused: norm, then the GEMM.
    assert_eq!(all.len(), last.len() + 1);
    assert_eq!(kernel_args(all.last().unwrap()).1[0], row(logits, n - 1));

    let none = gpu
        .schedule(ScheduleRequest {
            n_tokens: n,
            logits: Logits::None,
            argmax: false,
        })
        .unwrap();
    assert_eq!(none.len(), last.len() - 2);
}

#[test]
fn biases_are_passed_where_the_plan_has_them() {
    let model = tiny_qwen();
    let (_, gpu) = backend_with(&model, Box::new(FakeKernels), ExecutorConfig::new(32));
    let launches = gpu
        .schedule(ScheduleRequest {
            n_tokens: 1,
            logits: Logits::LastRow,
            argmax: false,
        })
        .unwrap();
    let weight = |name: &str| gpu.addresses().weights + gpu.weight_layout().offsets[name] as u64;
    let q = launches
        .iter()
        .map(kernel_args)
        .find(|(_, a)| a.first() == Some(&weight("blk.0.attn_q.weight")))
        .expect("q projection");
    assert_eq!(
        q.1[3..6],
        [
            weight("blk.0.attn_q.bias"),
            weight("blk.0.attn_k.bias"),
            weight("blk.0.attn_v.bias")
        ]
    );
    let o = launches
        .iter()
        .map(kernel_args)
        .find(|(_, a)| a.first() == Some(&weight("blk.0.attn_output.weight")))
        .expect("output projection");
    assert_eq!(o.1[3], 0, "no bias: null pointer");
}

#[test]
fn weights_are_uploaded_unchanged() {
    let model = tiny_qwen();
    let (fake, gpu) = backend_with(&model, Box::new(FakeKernels), ExecutorConfig::new(16));
    for t in model.bound_tensors() {
        let at = gpu.addresses().weights + gpu.weight_layout().offsets[&t.name] as u64;
        assert_eq!(
            fake.read(at, t.n_bytes as usize),
            model.weight_bytes(t),
            "{}",
            t.name
        );
    }
}

#[test]
fn decode_is_captured_once_and_replayed() {
    let model = tiny_llama();
    let (fake, mut gpu) = backend_with(&model, Box::new(FakeKernels), ExecutorConfig::new(64));
    gpu.forward_argmax(&[3], 0).unwrap();
    gpu.forward_argmax(&[5], 1).unwrap();
    assert_eq!(fake.captures(), 1);
    assert_eq!(
        fake.log(),
        vec![Recorded::GraphLaunch(0), Recorded::GraphLaunch(0)]
    );
    let decode = decode_launches(&gpu);
    assert_eq!(fake.graph(0).len(), decode.len());
    let io = fake.read_i32(gpu.addresses().io, IO_TOKENS + 1);
    assert_eq!(
        (io[0], io[IO_TOKENS]),
        (1, 5),
        "position and token of the last step"
    );
}

#[test]
fn greedy_runs_replay_multi_step_graphs_then_single_steps() {
    let model = tiny_llama();
    let (fake, mut gpu) = backend_with(&model, Box::new(FakeKernels), ExecutorConfig::new(64));
    let made = RUN_STEPS * 2 + 3;
    let mut taken = Vec::new();
    gpu.greedy_run(7, 4, made, &mut |t| {
        taken.push(t);
        true
    })
    .unwrap();
    // The fake runs no kernels: the ring holds zeros, one result per step all the same.
    assert_eq!(taken, vec![0; made]);
    assert_eq!(
        fake.captures(),
        2,
        "one graph of RUN_STEPS steps, one of a single step"
    );
    let decode = decode_launches(&gpu);
    assert_eq!(fake.graph(0).len(), RUN_STEPS * decode.len());
    assert_eq!(fake.graph(1).len(), decode.len());
    let mut expected = vec![Recorded::GraphLaunch(0); 2];
    expected.extend(vec![Recorded::GraphLaunch(1); 3]);
    let launches: Vec<Recorded> = fake
        .log()
        .into_iter()
        .filter(|r| matches!(r, Recorded::GraphLaunch(_)))
        .collect();
    assert_eq!(launches, expected);
    // The host wrote the first input once; the steps feed themselves after it.
    let io = fake.read_i32(gpu.addresses().io, IO_TOKENS + 1);
    assert_eq!((io[IO_POS0], io[IO_TOKENS]), (4, 7));
}

#[test]
fn greedy_runs_stop_when_asked_and_check_the_context_first() {
    let model = tiny_llama();
    let (fake, mut gpu) = backend_with(&model, Box::new(FakeKernels), ExecutorConfig::new(64));
    let mut calls = 0;
    gpu.greedy_run(7, 0, 100, &mut |_| {
        calls += 1;
        calls < 3
    })
    .expect_err("positions 0..100 do not fit a context of 64");
    assert_eq!((calls, fake.captures()), (0, 0), "nothing ran");
    gpu.greedy_run(7, 0, 64, &mut |_| {
        calls += 1;
        calls < 3
    })
    .unwrap();
    assert_eq!(calls, 3, "the run stops at the first false");
    let graph_launches = fake
        .log()
        .iter()
        .filter(|r| matches!(r, Recorded::GraphLaunch(_)))
        .count();
    assert_eq!(
        graph_launches, 1,
        "three results come from the first run of steps"
    );
}

#[test]
fn plain_launches_when_graphs_are_off() {
    let model = tiny_llama();
    let mut config = ExecutorConfig::new(64);
    config.use_graph = false;
    let (fake, mut gpu) = backend_with(&model, Box::new(FakeKernels), config);
    gpu.forward(&[3], 0, false).unwrap();
    assert_eq!(fake.captures(), 0);
    assert!(fake
        .log()
        .iter()
        .all(|r| matches!(r, Recorded::Launch { .. })));
}

#[test]
fn only_decode_steps_launch_as_dependents_and_only_when_asked() {
    let model = tiny_llama();
    let dependent = |gpu: &GpuBackend, n_tokens: usize| -> Vec<bool> {
        let request = ScheduleRequest {
            n_tokens,
            logits: Logits::LastRow,
            argmax: true,
        };
        let launches = gpu.schedule(request).unwrap();
        launches
            .iter()
            .filter_map(|l| match l {
                Launch::Kernel { dims, .. } => Some(dims.dependent),
                Launch::Copy { .. } | Launch::Gemm { .. } => None,
            })
            .collect()
    };
    let (_, mut gpu) = backend_with(&model, Box::new(FakeKernels), ExecutorConfig::new(64));
    assert!(dependent(&gpu, 1).iter().all(|&d| !d), "plain unless asked");
    gpu.set_dependent_decode(true).unwrap();
    let decode = dependent(&gpu, 1);
    assert!(
        !decode.is_empty() && decode.iter().all(|&d| d),
        "decode: {decode:?}"
    );
    assert!(
        dependent(&gpu, 5).iter().all(|&d| !d),
        "prefill stays plain"
    );
}

#[test]
fn long_prompts_run_in_chunks_with_one_epilogue() {
    let model = tiny_llama();
    let mut config = ExecutorConfig::new(64);
    config.max_chunk = 3;
    let (fake, mut gpu) = backend_with(&model, Box::new(FakeKernels), config);
    let tokens = [1u32, 2, 3, 4, 5, 6, 7];
    gpu.forward_argmax(&tokens, 10).unwrap();
    let embed_fn = FakeKernels::function_for(
        StepSite {
            section: Section::Prologue,
            index: 0,
            layer: None,
        },
        KernelRole::Main,
    );
    let embeds: Vec<u64> = fake
        .log()
        .iter()
        .filter_map(|r| match r {
            Recorded::Launch { function, args, .. } if *function == embed_fn => Some(args[3]),
            _ => None,
        })
        .collect();
    assert_eq!(embeds, vec![3, 3, 1], "token counts of the three chunks");
    let argmax_fn = FakeKernels::function_for(
        StepSite {
            section: Section::Epilogue,
            index: model.program.epilogue.len() - 1,
            layer: None,
        },
        KernelRole::Argmax,
    );
    let argmax_launches = fake
        .log()
        .iter()
        .filter(|r| matches!(r, Recorded::Launch { function, .. } if *function == argmax_fn))
        .count();
    assert_eq!(argmax_launches, 1);
    let io = fake.read_i32(gpu.addresses().io, IO_TOKENS + 1);
    assert_eq!(
        (io[0], io[IO_TOKENS]),
        (16, 7),
        "last chunk starts at position 10 + 6"
    );
}

#[test]
fn out_of_memory_says_needed_and_free() {
    let model = tiny_llama();
    let config = ExecutorConfig::new(4096);
    let needed = memory_budget(&model, &config).total();
    let runtime: Arc<dyn GpuRuntime> = Arc::new(FakeRuntime::new(1 << 20));
    let err = GpuBackend::new(runtime, model, Box::new(FakeKernels), config)
        .err()
        .expect("1 MiB is not enough")
        .to_string();
    assert!(err.contains(&format!("needs {needed} bytes")), "{err}");
    assert!(err.contains("1048576 free"), "{err}");
    assert!(err.contains("KV cache"), "{err}");
}

#[test]
fn kv_cache_size_matches_the_hparams() {
    let model = tiny_llama();
    // 256 positions x kv_width x 2 bytes is a multiple of the 256-byte alignment.
    let budget = memory_budget(&model, &ExecutorConfig::new(256));
    assert_eq!(budget.kv_cache as u64, model.hparams.kv_cache_bytes(256, 2));
    let tensor_bytes: u64 = model.bound_tensors().iter().map(|t| t.n_bytes).sum();
    assert!(budget.weights as u64 >= tensor_bytes);
}

#[test]
fn missing_kernels_and_bad_inputs_are_errors() {
    let model = tiny_llama();
    let (_, mut gpu) = backend_with(
        &model,
        Box::new(MissingKernels(KernelRole::RopeStore)),
        ExecutorConfig::new(8),
    );
    // Prefill (5 tokens) runs rope_store before attention; decode has none to miss.
    let err = gpu
        .forward(&[1, 2, 3, 4, 5], 0, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("rope_store"), "{err}");
    assert!(matches!(
        gpu.forward(&[1], 8, false),
        Err(BackendError::ContextFull { .. })
    ));
    assert!(matches!(
        gpu.forward(&[100_000], 0, false),
        Err(BackendError::BadToken { .. })
    ));
}

#[test]
fn single_steps_and_value_access_round_trip() {
    let model = tiny_llama();
    let (fake, mut gpu) = backend_with(&model, Box::new(FakeKernels), ExecutorConfig::new(16));
    let x = value_id(&model, "x");
    let width = model.program.values[x].width;
    let data: Vec<f32> = (0..3 * width).map(|i| i as f32).collect();
    gpu.set_value_rows(x, &data).unwrap();
    assert_eq!(gpu.value_rows(x, 3).unwrap(), data);
    assert!(gpu.set_value_rows(x, &data[1..]).is_err(), "not whole rows");
    let site = StepSite {
        section: Section::Block,
        index: 0,
        layer: Some(1),
    };
    gpu.run_single_step(site, &[1, 2, 3], 4).unwrap();
    assert_eq!(fake.log().len(), 1);
    assert_eq!(fake.read_i32(gpu.addresses().io, 1), vec![4]);
}

/// Parameters of `entry` in `source`: true for a pointer, false for an integer.
fn kernel_params(source: &str, entry: &str) -> Vec<bool> {
    let start = source
        .find(&format!("{entry}("))
        .unwrap_or_else(|| panic!("no {entry}( in its source"));
    let rest = &source[start + entry.len() + 1..];
    let params = &rest[..rest.find(')').expect("closing parenthesis")];
    params.split(',').map(|p| p.contains('*')).collect()
}

/// Compile the kernels of a small model for `target` (skipped when that compiler is absent),
/// load them into a fake device of that architecture, and check that every launch of decode
/// and prefill schedules finds its kernel and passes arguments matching the kernel's
/// parameters in number and kind (pointer or integer): with the default knobs (decode rope +
/// attention in one kernel) and with the decode attention tuned not to rotate itself.
fn compiled_kernels_match_the_schedules(target: &str, warp_size: u32) {
    use rocmforge::backend::gpu::compiled::compile_set;
    use rocmforge::backend::gpu::LoadedKernelTable;
    use rocmforge::codegen::compiler::{compiler_for, Target};
    use rocmforge::codegen::{kernels_for_model, KernelKind, Renderer, TuningChoice};

    let target = Target::parse(target).unwrap();
    if let Err(e) = compiler_for(&target) {
        eprintln!("skipped: no compiler for {}: {e}", target.full);
        return;
    }
    let model = tiny_qwen();
    let n_ctx = 64;
    let renderer = Renderer::from_env().unwrap();
    let set_for = |choice: &TuningChoice| {
        kernels_for_model(&model, &target, choice, n_ctx, &renderer).unwrap()
    };
    let defaults = set_for(&TuningChoice::defaults());
    let fused = defaults
        .kernels
        .iter()
        .find(|k| k.kind == KernelKind::RopeAttention)
        .expect("decode rotates in the attention kernel by default");
    let mut unfused = TuningChoice::defaults();
    let index = fused
        .candidate_knobs
        .iter()
        .position(|k| !k.contains("fused_rope"))
        .unwrap();
    unfused.pick(fused.problem.clone(), index);
    for (set, fused) in [(defaults.clone(), true), (set_for(&unfused), false)] {
        let params: std::collections::HashMap<String, Vec<bool>> = set
            .kernels
            .iter()
            .map(|k| (k.name.clone(), kernel_params(&k.source, &k.name)))
            .collect();
        // Prefill on the tile kernels, then on the vendor GEMM with its staging kernels.
        for vendor_gemm in [false, true] {
            let compiled = compile_set(&target, set.clone()).unwrap();
            let fake = Arc::new(FakeRuntime::with_arch(1 << 34, &target.full, warp_size));
            let runtime: Arc<dyn GpuRuntime> = fake.clone();
            let table =
                LoadedKernelTable::load(&runtime, &compiled.binaries, compiled.selector).unwrap();
            let mut config = ExecutorConfig::new(n_ctx);
            config.vendor_gemm = vendor_gemm;
            let gpu = GpuBackend::new(runtime, model.clone(), Box::new(table), config).unwrap();
            check_launch_abi(&gpu, &fake, &params);
            let decode = decode_launches(&gpu);
            let one_launch = decode
                .iter()
                .filter(|l| kernel_args(l).0.ends_with("(fused rope)"))
                .count();
            let layers = model.hparams.n_layer;
            assert_eq!(one_launch, if fused { layers } else { 0 });
        }
    }
}

/// Every kernel launch of decode and prefill schedules passes pointers and integers where the
/// kernel's source declares them, with a sensible block and grid.
fn check_launch_abi(
    gpu: &GpuBackend,
    fake: &FakeRuntime,
    params: &std::collections::HashMap<String, Vec<bool>>,
) {
    for (n_tokens, logits) in [
        (1, Logits::LastRow),
        (3, Logits::AllRows),
        (9, Logits::LastRow),
        (9, Logits::AllRows),
    ] {
        let launches = gpu
            .schedule(ScheduleRequest {
                n_tokens,
                logits,
                argmax: true,
            })
            .unwrap();
        for launch in &launches {
            let Launch::Kernel {
                label,
                function,
                dims,
                args,
            } = launch
            else {
                continue;
            };
            let name = fake.function_name(*function);
            let kinds: Vec<bool> = args
                .iter()
                .map(|a| matches!(a, KernelArg::Ptr(_)))
                .collect();
            assert_eq!(
                kinds, params[&name],
                "{label} -> {name} at {n_tokens} tokens"
            );
            let threads = dims.block.0 * dims.block.1 * dims.block.2;
            assert!(
                (1..=1024).contains(&threads),
                "{name}: block {:?}",
                dims.block
            );
            assert!(
                dims.grid.0 * dims.grid.1 * dims.grid.2 >= 1,
                "{name}: grid {:?}",
                dims.grid
            );
        }
    }
}

#[test]
fn compiled_cuda_kernels_match_the_schedules() {
    compiled_kernels_match_the_schedules("sm_90", 32);
}

#[test]
fn compiled_hip_kernels_match_the_schedules() {
    compiled_kernels_match_the_schedules("gfx90a:sramecc+:xnack-", 64);
}

#[test]
fn open_backend_picks_the_cpu_or_fails_for_an_absent_gpu() {
    use rocmforge::backend::gpu::open_backend;
    let model = tiny_llama();
    let cpu = open_backend("cpu", model.clone(), 16).unwrap();
    assert!(cpu.name().starts_with("cpu"), "{}", cpu.name());
    if rocmforge::backend::cuda::CudaRuntime::new(0).is_ok()
        || rocmforge::backend::hip::HipRuntime::new(0).is_ok()
    {
        eprintln!("skipped: a GPU is present, auto would pick it");
        return;
    }
    assert!(open_backend("auto", model.clone(), 16)
        .unwrap()
        .name()
        .starts_with("cpu"));
    let err = open_backend("cuda:0", model, 16)
        .err()
        .expect("no CUDA here")
        .to_string();
    assert!(err.contains("cuda:0"), "{err}");
}

/// Prefill on the vendor GEMM: every matmul stages its input rows and its dequantized weight as
/// f16, then one GEMM reads them and writes the step's output rows; decode keeps its GEMVs.
#[test]
fn prefill_matmuls_stage_f16_operands_for_the_vendor_gemm() {
    let model = tiny_llama();
    let mut config = ExecutorConfig::new(64);
    config.vendor_gemm = true;
    let tiles = memory_budget(&model, &ExecutorConfig::new(64));
    let budget = memory_budget(&model, &config);
    assert!(budget.staging > 0 && budget.total() == tiles.total() + budget.staging as u64);
    let (_, gpu) = backend_with(&model, Box::new(FakeKernels), config);
    let staging = gpu.addresses().staging.expect("staging buffers");
    let n = 16;
    let launches = gpu
        .schedule(ScheduleRequest {
            n_tokens: n,
            logits: Logits::AllRows,
            argmax: false,
        })
        .unwrap();
    let program = &model.program;
    let matmuls = program
        .block
        .iter()
        .filter(|s| s.op == rocmforge::graph::Op::Matmul);
    let per_layer = matmuls.count();
    let gemms: Vec<_> = launches
        .iter()
        .enumerate()
        .filter_map(|(i, l)| match l {
            Launch::Gemm { gemm, .. } => Some((i, *gemm)),
            _ => None,
        })
        .collect();
    // Every block matmul of both layers and the LM head, one GEMM each (nothing here is large
    // enough to be cut into chunks of rows).
    assert_eq!(gemms.len(), 2 * per_layer + 1, "{launches:#?}");
    for &(i, g) in &gemms {
        assert_eq!(g.tokens, n);
        assert_eq!(g.ld_out, g.rows, "one chunk covers every row");
        assert!(g.rows * g.k <= staging.weight_values);
        assert_eq!((g.weights, g.x), (staging.weights, staging.input));
        // Right before it: the input staged (its rows), then the weight dequantized (its rows).
        let (input_label, input_args) = kernel_args(&launches[i - 2]);
        let (weight_label, weight_args) = kernel_args(&launches[i - 1]);
        assert!(input_label.ends_with("stage_input"), "{input_label}");
        assert!(weight_label.ends_with("stage_weights"), "{weight_label}");
        assert_eq!(&input_args[1..], &[staging.input, n as u64]);
        assert_eq!(&weight_args[1..], &[staging.weights, g.rows as u64]);
        let Launch::Kernel { dims, .. } = &launches[i - 1] else {
            unreachable!()
        };
        // Q4_0 rows of K values in 32-value chunks, one per thread of 32-thread blocks.
        assert_eq!(dims.grid.0 as usize, (g.rows * g.k / 32).div_ceil(32));
    }
    let output = value_id(&model, "logits");
    let head = gemms.last().unwrap().1;
    assert_eq!(head.rows, model.hparams.n_vocab);
    assert_eq!(
        head.out,
        gpu.addresses().arena + gpu.arena_layout().offsets[output] as u64
    );

    // Decode: GEMVs only.
    let decode = decode_launches(&gpu);
    assert!(!decode.iter().any(|l| matches!(l, Launch::Gemm { .. })));
}

/// The launches of one decode step, as the executor would run them.
fn decode_launches(gpu: &GpuBackend) -> Vec<Launch> {
    gpu.schedule(ScheduleRequest {
        n_tokens: 1,
        logits: Logits::LastRow,
        argmax: true,
    })
    .unwrap()
}
