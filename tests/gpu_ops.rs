//! Every op of the program on the GPU against the CPU reference ops (src/backend/cpu/ops.rs), on
//! random inputs at real model shapes (SmolLM2-135M, Qwen2.5-0.5B, Llama-3-8B; one layer each)
//! and across weight formats, for a decode-sized (1 token) and a prefill-sized (9 tokens)
//! launch (and every prefill attention and decode GEMV lane-group candidate), as the executor
//! launches them: steps the GPU fuses (graph::fuse) run as one launch
//! and are compared with the CPU ops of those steps run one after another. Skips with a printed
//! reason without a GPU.
//!
//! Tolerances are normalized mean squared errors (llama.cpp test-backend-ops' metric), chosen
//! per op from what may legitimately differ:
//! - embed, split, add: the same f32 arithmetic, only the order of independent operations
//!   differs: 1e-12 (a single wrong element out of thousands gives ~1e-4 or more).
//! - silu_mul, rmsnorm, rope: vendor `expf`/`rsqrtf`/`sincosf` are within a few ulp and the norm
//!   reduction is reordered: 1e-9.
//! - matmul: same dequantized weights, f32 sums in another order over K <= 14336 gives NMSE
//!   ~1e-11; a GEMM that feeds tensor cores f16-rounded activations (relative 2^-11 per
//!   element) gives ~1e-7. Bound 1e-6: admits both, fails any indexing or dequant error (~1).
//! - attention: the CPU reference is given the GPU's own f16 cache (read back), so only f32
//!   softmax/accumulation order differs (~1e-12); the tiled prefill on matrix units rounds the
//!   queries and the softmax weights to f16 (relative 2^-11 each), ~1e-7 on random inputs (host
//!   simulation: 9e-8): 1e-6. The new cache rows must be the f16 of the new keys
//!   (rotated) and values: NMSE 1e-8 (a fused rope rotates with the device's sincosf, so a
//!   rounding may flip by one f16 step; a wrong row or head gives ~1).

mod gpu_support;

use std::sync::Arc;

use gpu_support::{check_models, nmse, random_rows, SynthModel};
use rocmforge::backend::cpu::ops::{self, AttnShape};
use rocmforge::backend::gpu::compiled::target_of;
use rocmforge::backend::gpu::{ExecutorConfig, GpuBackend, GpuRuntime, Section, StepSite};
use rocmforge::codegen::context::{OpContext, Tunable};
use rocmforge::codegen::kernel_set::DECODE_MAX_TOKENS;
use rocmforge::codegen::ops::attention::{AttentionPhase, AttentionShape};
use rocmforge::codegen::ops::AttentionContext;
use rocmforge::codegen::{
    kernels_for_model, KernelKind, ModelShape, Phase, Renderer, TuningChoice,
};
use std::collections::HashMap;

use rocmforge::graph::{Fusion, FusionKind, GemvEpilogue, Op, Step, ValueId};
use rocmforge::plan::Model;

const N_CTX: usize = 64;
/// Where a unit's tokens start: the cache rows before hold an earlier call's keys and values.
const POS0: usize = 5;
/// A later start for the decode attention candidates: 46 keys and more pass the one-split limit
/// of the candidates with few or short key steps (every split then takes part), where 6 keys stay
/// in one split under every candidate but those with `split_steps` 0.
const LATE_POS0: usize = 45;

fn tolerance(op: Op) -> f64 {
    match op {
        Op::Embed | Op::Split | Op::Add => 1e-12,
        Op::SiluMul | Op::RmsNorm | Op::HeadRmsNorm | Op::Rope => 1e-9,
        // The decode GEMV's default multiplies int8 x (q8_1): each x value is off by up to
        // max|x of its 32-block| / 254, uniformly, an NMSE of about 3e-5 for normal x. f32 GEMVs
        // and GEMMs are near 1e-12.
        Op::Matmul => 1e-4,
        Op::Attention => 1e-6,
    }
}

struct Harness<'a> {
    model: &'a Model,
    gpu: GpuBackend,
    failures: Vec<String>,
    label: String,
    /// The position of the units' first token.
    pos0: usize,
}

impl Harness<'_> {
    fn width(&self, id: usize) -> usize {
        self.model.program.values[id].width
    }

    /// CPU reference of `step` on `inputs` (rows of each input value).
    fn reference(
        &self,
        step: &Step,
        layer: Option<usize>,
        tokens: &[u32],
        inputs: &[Vec<f32>],
        cache: Option<(&[f32], &[f32])>,
    ) -> Vec<Vec<f32>> {
        let model = self.model;
        let hp = &model.hparams;
        let n = tokens.len();
        let weight = |slot: usize| {
            step.weights[slot]
                .as_ref()
                .map(|role| model.weight(layer, role).expect("bound"))
        };
        let out_width = self.width(step.outputs[0]);
        let mut out = vec![0f32; n * out_width];
        match step.op {
            Op::Embed => {
                let t = weight(0).unwrap();
                ops::embed(model.weight_bytes(t), t.ty, out_width, tokens, &mut out);
            }
            Op::RmsNorm | Op::HeadRmsNorm => {
                let w = model.weight_f32(weight(0).unwrap());
                ops::rmsnorm(&inputs[0], &w, hp.norm_eps, &mut out);
            }
            Op::Matmul => {
                let t = weight(0).unwrap();
                let bias = weight(1).map(|b| model.weight_f32(b));
                let (k, cols) = (t.dims[0] as usize, t.dims[1] as usize);
                ops::matmul(
                    model.weight_bytes(t),
                    t.ty,
                    k,
                    cols,
                    &inputs[0],
                    bias.as_deref(),
                    &mut out,
                );
            }
            Op::Split => {
                let mut outs: Vec<Vec<f32>> =
                    step.params.iter().map(|w| vec![0f32; n * w]).collect();
                let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|v| &mut v[..]).collect();
                ops::split(&inputs[0], &step.params, &mut refs);
                return outs;
            }
            Op::Rope => {
                out.copy_from_slice(&inputs[0]);
                ops::rope(
                    &mut out,
                    out_width,
                    hp.head_dim,
                    self.pos0,
                    hp.rope_base,
                    hp.rope_style,
                );
            }
            Op::Attention => {
                let (kc, vc) = cache.expect("attention needs the cache");
                let shape = AttnShape {
                    n_head: hp.n_head,
                    n_kv_head: hp.n_kv_head,
                    head_dim: hp.head_dim,
                };
                ops::attention(&inputs[0], kc, vc, shape, self.pos0, &mut out);
            }
            Op::Add => ops::add(&inputs[0], &inputs[1], &mut out),
            Op::SiluMul => ops::silu_mul(&inputs[0], &inputs[1], &mut out),
        }
        vec![out]
    }

    /// Runs the steps `steps[first..first + len]` of a section as the GPU launches them (one
    /// step, or a fusion of several) on random inputs and compares what the launch writes with
    /// the CPU ops run one by one.
    fn check_unit(
        &mut self,
        site: StepSite,
        steps: &[Step],
        fusion: Option<&Fusion>,
        n: usize,
        seed: u64,
    ) {
        let hp = &self.model.hparams;
        let (first, len) = fusion.map_or((site.index, 1), |f| (f.first, f.len));
        let group = &steps[first..first + len];
        let tokens: Vec<u32> = (0..n as u64)
            .map(|i| ((seed * 7919 + i * 104_729) % hp.n_vocab as u64) as u32)
            .collect();
        // Values the group reads before writing them: its inputs.
        let mut external: Vec<ValueId> = Vec::new();
        let mut produced: Vec<ValueId> = Vec::new();
        for step in group {
            for &id in &step.inputs {
                if !produced.contains(&id) && !external.contains(&id) {
                    external.push(id);
                }
            }
            produced.extend(&step.outputs);
        }
        let attention = group.iter().find(|s| s.op == Op::Attention);
        if attention.is_some() {
            // Earlier positions hold keys and values of an earlier call, as in a real prefix.
            for (i, &id) in external.iter().enumerate() {
                let rows = random_rows(self.pos0 * self.width(id), seed ^ (100 + i as u64), 1.0);
                self.gpu.set_value_rows(id, &rows).unwrap();
            }
            self.gpu
                .run_single_step(site, &vec![0; self.pos0], 0)
                .unwrap();
        }
        let mut values: HashMap<ValueId, Vec<f32>> = HashMap::new();
        for (i, &id) in external.iter().enumerate() {
            let rows = random_rows(n * self.width(id), seed ^ i as u64, 1.0);
            self.gpu.set_value_rows(id, &rows).unwrap();
            values.insert(id, rows);
        }
        self.gpu.run_single_step(site, &tokens, self.pos0).unwrap();
        let cache = attention.map(|_| {
            self.gpu
                .kv_rows(site.layer.unwrap(), self.pos0 + n)
                .unwrap()
        });
        for step in group {
            let inputs: Vec<Vec<f32>> = step.inputs.iter().map(|id| values[id].clone()).collect();
            if step.op == Op::Attention {
                self.check_cache(step, n, &inputs, cache.as_ref().unwrap());
            }
            let outs = self.reference(
                step,
                site.layer,
                &tokens,
                &inputs,
                cache.as_ref().map(|(k, v)| (&k[..], &v[..])),
            );
            for (&id, out) in step.outputs.iter().zip(outs) {
                values.insert(id, out);
            }
        }
        let step = &group[len - 1];
        let written = written_values(fusion, group, Phase::of(n as u32) == Phase::Decode);
        for id in written {
            let got = self.gpu.value_rows(id, n).unwrap();
            let err = nmse(&got, &values[&id]);
            // An output carries the error of every op of its group before it (the fused GEMV's
            // int8 x error reaches its silu_mul and residual outputs): the loosest tolerance.
            let producer = group
                .iter()
                .position(|s| s.outputs.contains(&id))
                .unwrap_or(len - 1);
            let tol = group[..=producer]
                .iter()
                .map(|s| tolerance(s.op))
                .fold(0.0, f64::max);
            let ok = err <= tol && got.iter().all(|v| v.is_finite());
            let what = match fusion {
                Some(_) => format!("{}..{} ({} fused)", group[0].name, step.name, len),
                None => format!("{} ({})", step.name, step.op.name()),
            };
            eprintln!(
                "{:<34} {:<40} {:<6} n={n:<2} nmse {err:.3e} {}",
                self.label,
                what,
                self.model.program.values[id].name,
                if ok { "ok" } else { "FAIL" }
            );
            if !ok {
                self.failures.push(format!(
                    "{} {what} -> {} n={n}: nmse {err:.3e} > {tol:.0e}",
                    self.label, self.model.program.values[id].name,
                ));
            }
        }
    }

    /// The cache rows of the new tokens must be the f16 of the keys and values the attention
    /// step reads (rotated by the CPU rope when the rope is fused into the store).
    fn check_cache(
        &mut self,
        step: &Step,
        n: usize,
        inputs: &[Vec<f32>],
        cache: &(Vec<f32>, Vec<f32>),
    ) {
        let kv_width = self.model.hparams.kv_width();
        let rounded = |x: &[f32]| -> Vec<f32> {
            x.iter().map(|&f| half::f16::from_f32(f).to_f32()).collect()
        };
        for (got, want, what) in [(&cache.0, &inputs[1], "k"), (&cache.1, &inputs[2], "v")] {
            let err = nmse(&got[self.pos0 * kv_width..], &rounded(want));
            if err > 1e-8 {
                self.failures.push(format!(
                    "{} {} n={n}: the {what} cache rows are not f16 of the new {what} (nmse {err:.3e})",
                    self.label, step.name
                ));
            }
        }
    }
}

/// The values a launch of the group writes: a single step's outputs; a fused GEMV's segment
/// outputs or its epilogue's output; the attention output of rope+attention, and in prefill the
/// rotated q (decode keeps it in registers).
fn written_values(fusion: Option<&Fusion>, group: &[Step], decode: bool) -> Vec<ValueId> {
    match fusion.map(|f| &f.kind) {
        None => group[0].outputs.clone(),
        Some(FusionKind::Gemv(g)) => match g.epilogue {
            GemvEpilogue::Store => g.segments.iter().map(|s| s.output).collect(),
            GemvEpilogue::Residual { output, .. } | GemvEpilogue::SiluMul { output } => {
                vec![output]
            }
        },
        Some(FusionKind::RopeAttention {
            rope_q, attention, ..
        }) => {
            let first = fusion.map_or(0, |f| f.first);
            let out = group[attention - first].outputs[0];
            if decode {
                vec![out]
            } else {
                vec![group[rope_q - first].outputs[0], out]
            }
        }
    }
}

fn check_model(runtime: &Arc<dyn GpuRuntime>, spec: SynthModel) -> Vec<String> {
    let model = spec.build();
    let gpu = match GpuBackend::load(runtime.clone(), model.clone(), ExecutorConfig::new(N_CTX)) {
        Ok(gpu) => gpu,
        Err(e) => return vec![format!("{}: cannot load: {e}", spec.label())],
    };
    let mut h = Harness {
        model: &model,
        gpu,
        failures: Vec::new(),
        label: spec.label(),
        pos0: POS0,
    };
    let program = &model.program;
    let sections = [
        (Section::Prologue, None, &program.prologue),
        (Section::Block, Some(0), &program.block),
        (Section::Epilogue, None, &program.epilogue),
    ];
    for n in [1usize, 9] {
        for (section, layer, steps) in sections {
            let mut index = 0;
            while index < steps.len() {
                let site = StepSite {
                    section,
                    index,
                    layer,
                };
                let fusion = h.gpu.fusion_at(site, n).cloned();
                h.check_unit(site, steps, fusion.as_ref(), n, 17 + index as u64);
                index += fusion.map_or(1, |f| f.len);
            }
        }
    }
    h.failures
}

/// Every attention candidate of `phase`, picked through the tuning choice as `rocmforge tune`
/// applies it, on one layer's rope + attention units. Prefill: the tiled kernel's tile sizes,
/// key chunks and warps, and the per-token kernel, over 9 tokens (one partial tile) and 40
/// (several tiles and chunks). Decode: splits and warps, each rotating q and k and storing k
/// and v itself or after rope_store, key steps loaded ahead by 0 to 4 and one split for ranges
/// of up to 0 to 8 key steps (every split beyond), over 1 and 3 tokens from positions 5 and 45.
fn check_attention_candidates(
    runtime: &Arc<dyn GpuRuntime>,
    spec: SynthModel,
    phase: AttentionPhase,
) -> Vec<String> {
    let model = spec.build();
    let hp = &model.hparams;
    let target = match target_of(runtime.info()) {
        Ok(t) => t,
        Err(e) => return vec![format!("{}: no target: {e}", spec.label())],
    };
    let shape = AttentionShape {
        head_dim: hp.head_dim,
        n_head: hp.n_head,
        n_kv_head: hp.n_kv_head,
        n_ctx: N_CTX,
    };
    let (ctx, token_counts, positions): (_, _, &[usize]) = match phase {
        AttentionPhase::Prefill => (
            AttentionContext::new(&target, AttentionPhase::Prefill, shape, 1),
            [9, 40],
            &[POS0],
        ),
        AttentionPhase::Decode => {
            let rope = ModelShape::from_model(&model).unwrap().hparams;
            let max = DECODE_MAX_TOKENS as usize;
            let ctx = AttentionContext::new(&target, AttentionPhase::Decode, shape, max)
                .with_rope(rope.rope_style, rope.rope_base);
            (ctx, [1, 3], &[POS0, LATE_POS0])
        }
    };
    let mut failures = Vec::new();
    for (i, knobs) in ctx.candidates().iter().enumerate() {
        let mut tuning = TuningChoice::defaults();
        tuning.pick(ctx.problem(), i);
        let config = ExecutorConfig::new(N_CTX);
        let gpu = match GpuBackend::load_tuned(runtime.clone(), model.clone(), config, &tuning) {
            Ok(gpu) => gpu,
            Err(e) => {
                failures.push(format!("{} candidate {i}: cannot load: {e}", spec.label()));
                continue;
            }
        };
        let mut h = Harness {
            model: &model,
            gpu,
            failures: Vec::new(),
            label: format!("{} attention #{i} {knobs:?}", spec.label()),
            pos0: POS0,
        };
        let steps = &model.program.block;
        for (n, pos0) in token_counts
            .into_iter()
            .flat_map(|n| positions.iter().map(move |&p| (n, p)))
        {
            h.pos0 = pos0;
            h.label = format!("{} attention #{i} pos0={pos0} {knobs:?}", spec.label());
            let mut index = 0;
            while index < steps.len() {
                let site = StepSite {
                    section: Section::Block,
                    index,
                    layer: Some(0),
                };
                let fusion = h.gpu.fusion_at(site, n).cloned();
                let (first, len) = fusion.as_ref().map_or((index, 1), |f| (f.first, f.len));
                if steps[first..first + len]
                    .iter()
                    .any(|s| s.op == Op::Attention)
                {
                    h.check_unit(site, steps, fusion.as_ref(), n, 31 + index as u64);
                }
                index += len;
            }
        }
        failures.extend(h.failures);
    }
    failures
}

/// Every decode GEMV lane-group candidate (`lane_group` above 1: aligned vector loads of several
/// blocks per lane), picked through the tuning choice as `rocmforge tune` applies it, on the
/// decode (1 token) units of one layer and the output head: round j picks each GEMV problem's
/// j-th lane-group candidate, so that one load checks every problem that has one.
fn check_gemv_lane_candidates(runtime: &Arc<dyn GpuRuntime>, spec: SynthModel) -> Vec<String> {
    let model = spec.build();
    let target = match target_of(runtime.info()) {
        Ok(t) => t,
        Err(e) => return vec![format!("{}: no target: {e}", spec.label())],
    };
    let renderer = Renderer::embedded().unwrap();
    let set = kernels_for_model(&model, &target, &TuningChoice::defaults(), N_CTX, &renderer)
        .expect("kernel set");
    // Each GEMV problem's lane-group candidates (index and knobs).
    let mut lanes: Vec<(String, Vec<(usize, String)>)> = Vec::new();
    for k in set
        .kernels
        .iter()
        .filter(|k| k.kind == KernelKind::MatmulGemv)
    {
        if lanes.iter().any(|(p, _)| *p == k.problem) {
            continue;
        }
        let picks: Vec<(usize, String)> = k
            .candidate_knobs
            .iter()
            .enumerate()
            .filter(|(_, json)| {
                let knobs: serde_json::Value = serde_json::from_str(json).unwrap();
                knobs["lane_group"].as_u64().unwrap() > 1
            })
            .map(|(i, json)| (i, json.clone()))
            .collect();
        if !picks.is_empty() {
            lanes.push((k.problem.clone(), picks));
        }
    }
    if lanes.is_empty() {
        return vec![format!(
            "{}: no GEMV has lane-group candidates",
            spec.label()
        )];
    }
    let rounds = lanes.iter().map(|(_, p)| p.len()).max().unwrap();
    let mut failures = Vec::new();
    for round in 0..rounds {
        let mut tuning = TuningChoice::defaults();
        let mut picked = Vec::new();
        for (problem, picks) in &lanes {
            if let Some((i, json)) = picks.get(round) {
                tuning.pick(problem.clone(), *i);
                picked.push(format!("{problem} #{i} {json}"));
            }
        }
        eprintln!(
            "{} lane round {round}:\n  {}",
            spec.label(),
            picked.join("\n  ")
        );
        let config = ExecutorConfig::new(N_CTX);
        let gpu = match GpuBackend::load_tuned(runtime.clone(), model.clone(), config, &tuning) {
            Ok(gpu) => gpu,
            Err(e) => {
                failures.push(format!(
                    "{} lane round {round}: cannot load: {e}",
                    spec.label()
                ));
                continue;
            }
        };
        let mut h = Harness {
            model: &model,
            gpu,
            failures: Vec::new(),
            label: format!("{} lanes #{round}", spec.label()),
            pos0: POS0,
        };
        let program = &model.program;
        for (section, layer, steps) in [
            (Section::Block, Some(0), &program.block),
            (Section::Epilogue, None, &program.epilogue),
        ] {
            let mut index = 0;
            while index < steps.len() {
                let site = StepSite {
                    section,
                    index,
                    layer,
                };
                let fusion = h.gpu.fusion_at(site, 1).cloned();
                let (first, len) = fusion.as_ref().map_or((index, 1), |f| (f.first, f.len));
                if steps[first..first + len].iter().any(|s| s.op == Op::Matmul) {
                    h.check_unit(site, steps, fusion.as_ref(), 1, 41 + index as u64);
                }
                index += len;
            }
        }
        failures.extend(h.failures);
    }
    failures
}

/// Llama3-8b's shapes (K = 4096 and 14336: groups of 8 and 4) in the three lane-group formats,
/// and qwen2.5-0.5b's (K = 896: groups of 4 only; K = 4864).
#[test]
fn decode_gemv_every_lane_group_candidate() {
    let mut specs: Vec<SynthModel> = ["Q4_0", "Q8_0", "Q4_1"]
        .into_iter()
        .map(|w| {
            let mut spec = SynthModel::new("llama3-8b", 1, w);
            spec.n_vocab = Some(2048);
            spec
        })
        .collect();
    specs.push(SynthModel::new("qwen2.5-0.5b", 1, "Q4_0"));
    check_models(specs, check_gemv_lane_candidates);
}

#[test]
fn prefill_attention_every_candidate() {
    check_models(
        vec![
            SynthModel::new("qwen2.5-0.5b", 1, "Q8_0"),
            SynthModel::new("llama3-8b", 1, "Q4_K_M"),
        ],
        |runtime, spec| check_attention_candidates(runtime, spec, AttentionPhase::Prefill),
    );
}

#[test]
fn decode_attention_every_candidate() {
    check_models(
        vec![
            SynthModel::new("qwen2.5-0.5b", 1, "Q8_0"),
            SynthModel::new("llama3-8b", 1, "Q4_K_M"),
            SynthModel::new("smollm2-135m", 1, "Q8_0"),
        ],
        |runtime, spec| check_attention_candidates(runtime, spec, AttentionPhase::Decode),
    );
}

fn run(specs: Vec<SynthModel>) {
    check_models(specs, check_model);
}

#[test]
fn smollm2_shape_every_op() {
    run(["Q4_0", "Q4_1", "Q8_0", "F16", "Q4_K", "Q6_K"]
        .into_iter()
        .map(|w| SynthModel::new("smollm2-135m", 1, w))
        .collect());
}

#[test]
fn qwen25_shape_every_op() {
    let mut specs: Vec<SynthModel> = ["Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q5_K", "BF16", "F32"]
        .into_iter()
        .map(|w| SynthModel::new("qwen2.5-0.5b", 1, w))
        .collect();
    let mut fused = SynthModel::new("qwen2.5-0.5b", 1, "Q8_0");
    fused.fused_qkv = true;
    specs.push(fused);
    run(specs);
}

#[test]
fn llama3_8b_shape_every_op() {
    run(vec![SynthModel::new("llama3-8b", 1, "Q4_K_M")]);
}
