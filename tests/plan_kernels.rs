//! The GPU kernels of the qwen3 and phi3 plans render and compile for every reference target.
//! Targets whose compiler is absent are skipped with a printed reason.

mod common;

use std::sync::Arc;

use rocmforge::codegen::cache::{compile_all, KernelCache};
use rocmforge::codegen::compiler::{compiler_for, Target};
use rocmforge::codegen::kernel_set::{kernels_for_model, KernelKind};
use rocmforge::codegen::{KernelSpec, Renderer, TuningChoice};
use rocmforge::gguf::{GgmlType, GgufFile};
use rocmforge::plan::{bind, Model, Plan};
use rocmforge::synth::{preset, synthesize, SynthSpec, WeightMix};

const TARGETS: &[&str] = &["gfx90a", "gfx1030", "sm_90"];
const N_CTX: usize = 1024;

/// A preset narrowed to one layer, keeping its head_dim and head ratio.
fn tiny(preset_name: &str, n_embd: usize, n_head: usize, n_kv_head: usize) -> Model {
    let mut shape = preset(preset_name).unwrap();
    (shape.n_layer, shape.n_embd, shape.n_head, shape.n_kv_head) = (1, n_embd, n_head, n_kv_head);
    (shape.n_ff, shape.n_vocab) = (256, 300);
    let path = common::scratch(&format!("kernels-{preset_name}")).join("model.gguf");
    let spec = SynthSpec {
        name: "tiny".into(),
        plan: Plan::from_arg(shape.plan).unwrap(),
        shape,
        weights: WeightMix::Uniform(GgmlType::Q8_0),
        fused_qkv: false,
        seed: 3,
    };
    synthesize(&spec, None, &path).unwrap();
    let file = Arc::new(GgufFile::open(&path).unwrap());
    let plan = Plan::for_architecture(file.architecture().unwrap()).unwrap();
    bind(&plan, file).unwrap()
}

/// Renders every kernel of `model` for each reference target and compiles them where the
/// target's compiler is present.
fn check_kernels(name: &str, model: &Model) {
    let renderer = Renderer::embedded().unwrap();
    let cache =
        KernelCache::new(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-cache"))
            .unwrap();
    let mut failures = Vec::new();
    for arch in TARGETS {
        let target = Target::parse(arch).unwrap();
        let set = kernels_for_model(model, &target, &TuningChoice::defaults(), N_CTX, &renderer)
            .unwrap_or_else(|e| panic!("{name} on {arch}: {e}"));
        let kinds: Vec<KernelKind> = set.kernels.iter().map(|k| k.kind).collect();
        assert!(kinds.contains(&KernelKind::Attention), "{name}: {kinds:?}");
        let compiler = match compiler_for(&target) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped compiling {name} for {arch}: {e}");
                continue;
            }
        };
        let sources: Vec<_> = set.kernels.iter().map(KernelSpec::to_source).collect();
        let results = compile_all(&cache, compiler.as_ref(), &target, &sources);
        let ok = results.iter().filter(|r| r.is_ok()).count();
        eprintln!("{name} {arch}: {ok}/{} kernels compiled", sources.len());
        for (spec, r) in set.kernels.iter().zip(results) {
            if let Err(e) = r {
                failures.push(format!("{arch} {} ({}): {e}", spec.name, spec.problem));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Per-head RMSNorm at head_dim 128; 4 query heads over 2 KV heads make q 512 wide, unlike n_embd.
#[test]
fn qwen3_kernels_compile_for_every_reference_target() {
    let model = tiny("qwen3-0.6b", 256, 4, 2);
    assert_eq!(model.hparams.head_dim, 128);
    check_kernels("qwen3", &model);
}

/// Two heads of 96 (Phi-3's head size) tile n_embd 192; the fused gate/up splits in two.
#[test]
fn phi3_kernels_compile_for_every_reference_target() {
    let model = tiny("phi3-mini", 192, 2, 2);
    assert_eq!(model.hparams.head_dim, 96);
    check_kernels("phi3", &model);
}
