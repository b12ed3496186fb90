//! The kernel set of bound models: every step gets kernels for the formats and sizes of the
//! tensors it actually reads (checked against the GGUF tensor table), including per-layer mixes.

mod common;

use std::sync::Arc;

use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::kernel_set::{
    kernels_for_model, KernelKind, KernelSet, StepAt, DECODE_MAX_TOKENS,
};
use rocmforge::codegen::{Renderer, TuningChoice};
use rocmforge::gguf::GgufFile;
use rocmforge::graph::{FusionKind, Fusions, Op, Section, Step};
use rocmforge::plan::{bind, Model, Plan};
use rocmforge::synth::{synthesize, Shape, SynthSpec, WeightMix};

const N_CTX: usize = 512;

fn load(path: &std::path::Path) -> Model {
    let file = Arc::new(GgufFile::open(path).unwrap());
    let plan = Plan::for_architecture(file.architecture().unwrap()).unwrap();
    bind(&plan, file).unwrap()
}

/// Every Matmul/Embed step launches kernels whose problem names the format and [K, N] of the
/// tensor the step reads, in every layer and both phases; every other step launches something.
/// Steps the GPU fuses (graph::fuse) launch nothing of their own: the first step of the fusion
/// launches the fused kernels, whose problem names every weight they read.
fn check_against_tensors(model: &Model, set: &KernelSet) {
    let program = &model.program;
    let fusions = Fusions::of(program);
    for n_tokens in [1, DECODE_MAX_TOKENS + 1] {
        let decode = n_tokens <= DECODE_MAX_TOKENS;
        let layers = (0..model.hparams.n_layer).map(|l| (Section::Block, Some(l)));
        let sections = [(Section::Prologue, None)]
            .into_iter()
            .chain(layers)
            .chain([(Section::Epilogue, None)]);
        for (section, layer) in sections {
            let steps = program.section(section);
            for (i, step) in steps.iter().enumerate() {
                let at = match section {
                    Section::Prologue => StepAt::Prologue(i),
                    Section::Block => StepAt::Block {
                        layer: layer.unwrap(),
                        step: i,
                    },
                    Section::Epilogue => StepAt::Epilogue(i),
                };
                let kernels = set.for_step(at, n_tokens).unwrap();
                let tensor = |s: &Step| {
                    model
                        .weight(layer, s.weights[0].as_deref().unwrap())
                        .unwrap()
                };
                match fusions.at(section, i, decode) {
                    Some(f) if f.first != i => {
                        assert!(kernels.is_empty(), "{at:?} {} is fused", step.name)
                    }
                    Some(f) => match &f.kind {
                        FusionKind::Gemv(g) => {
                            assert_eq!(kernels.len(), 1);
                            for segment in &g.segments {
                                let t = tensor(&steps[segment.matmul]);
                                let expected = format!("{} N={}", t.ty.name(), segment.rows);
                                let problem = &kernels[0].problem;
                                assert!(
                                    problem.contains(&expected)
                                        && problem.contains(&format!("K={} ", t.dims[0])),
                                    "{at:?} {}: {problem} vs {expected}",
                                    step.name
                                );
                            }
                        }
                        FusionKind::RopeAttention { .. } => {
                            // Decode's attention rotates and stores itself (the default).
                            let kinds: Vec<_> = kernels.iter().map(|k| k.kind).collect();
                            if decode {
                                assert_eq!(kinds, [KernelKind::RopeAttention]);
                            } else {
                                assert_eq!(kinds, [KernelKind::RopeStore, KernelKind::Attention]);
                            }
                        }
                    },
                    None => {
                        assert!(!kernels.is_empty(), "{at:?} {}", step.name);
                        if matches!(step.op, Op::Matmul | Op::Embed) {
                            let t = tensor(step);
                            // A prefill matmul's GEMM comes last, after the kernels staging its
                            // operands for a vendor GEMM.
                            let main = kernels.last().unwrap();
                            let staging = &kernels[..kernels.len() - 1];
                            assert!(
                                staging.iter().all(|k| matches!(
                                    k.kind,
                                    KernelKind::StageInput | KernelKind::StageWeights
                                )),
                                "{at:?} {}",
                                step.name
                            );
                            let expected = match (step.op, main.kind) {
                                (Op::Matmul, KernelKind::MatmulGemv) => {
                                    format!("K={} [{} N={}]", t.dims[0], t.ty.name(), t.dims[1])
                                }
                                (Op::Matmul, _) => {
                                    format!("{} K={} N={}", t.ty.name(), t.dims[0], t.dims[1])
                                }
                                _ => format!("{} K={} vocab={}", t.ty.name(), t.dims[0], t.dims[1]),
                            };
                            assert!(
                                main.problem.ends_with(&expected),
                                "{at:?} {}: {} vs {expected}",
                                step.name,
                                main.problem
                            );
                        }
                        if step.op == Op::Attention {
                            let kinds: Vec<_> = kernels.iter().map(|k| k.kind).collect();
                            assert_eq!(kinds, [KernelKind::KvStore, KernelKind::Attention]);
                        }
                    }
                }
            }
        }
    }
}

fn synth_qwen2(weights: WeightMix, fused_qkv: bool, name: &str) -> Model {
    let shape = Shape {
        plan: "qwen2",
        n_embd: 256,
        n_layer: 8,
        n_head: 4,
        n_kv_head: 2,
        head_dim: 64,
        n_ff: 512,
        n_vocab: 300,
        n_ctx_train: 512,
        norm_eps: 1e-6,
        rope_base: 1e6,
        tied: false,
    };
    let spec = SynthSpec {
        name: name.to_string(),
        plan: Plan::for_architecture("qwen2").unwrap(),
        shape,
        weights,
        fused_qkv,
        seed: 7,
    };
    let path = common::scratch(name).join("model.gguf");
    synthesize(&spec, None, &path).unwrap();
    load(&path)
}

#[test]
fn mixed_format_model_gets_kernels_per_layer_format() {
    let model = synth_qwen2(WeightMix::Q4KM, false, "kern-q4km");
    let set = kernels_for_model(
        &model,
        &Target::parse("gfx90a").unwrap(),
        &TuningChoice::defaults(),
        N_CTX,
        &Renderer::embedded().unwrap(),
    )
    .unwrap();
    check_against_tensors(&model, &set);
    // GEMV problems list their weights as `[Q4_K N=.., Q6_K N=..]`.
    let formats: std::collections::BTreeSet<_> = set
        .kernels
        .iter()
        .filter(|k| k.kind == KernelKind::MatmulGemv)
        .flat_map(|k| {
            let list = &k.problem[k.problem.find('[').unwrap() + 1..k.problem.find(']').unwrap()];
            list.split(", ")
                .map(|w| w.split(' ').next().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        formats.contains("Q4_K") && formats.contains("Q6_K"),
        "{formats:?}"
    );
}

#[test]
fn fused_qkv_model_splits_on_the_device() {
    let model = synth_qwen2(
        WeightMix::Uniform(rocmforge::gguf::GgmlType::Q8_0),
        true,
        "kern-fused",
    );
    let set = kernels_for_model(
        &model,
        &Target::parse("sm_90").unwrap(),
        &TuningChoice::defaults(),
        N_CTX,
        &Renderer::embedded().unwrap(),
    )
    .unwrap();
    check_against_tensors(&model, &set);
    assert_eq!(
        set.kernels
            .iter()
            .filter(|k| k.kind == KernelKind::Split)
            .count(),
        1
    );
}

#[test]
fn smollm2_kernel_set_matches_its_tensors() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let model = load(&path);
    let set = kernels_for_model(
        &model,
        &Target::parse("gfx1030").unwrap(),
        &TuningChoice::defaults(),
        N_CTX,
        &Renderer::embedded().unwrap(),
    )
    .unwrap();
    check_against_tensors(&model, &set);
    eprintln!("smollm2: {} distinct kernels", set.kernels.len());
}
