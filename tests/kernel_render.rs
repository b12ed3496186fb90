//! Rendering and validation of every kernel for real model shapes, every weight format and the
//! three reference targets. Compiling them is tests/kernel_compile.rs.

use std::collections::BTreeSet;

use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::{OpContext, Tunable};
use rocmforge::codegen::kernel_set::{KernelKind, StepAt, DECODE_MAX_TOKENS};
use rocmforge::codegen::ops::argmax::ArgmaxKnobs;
use rocmforge::codegen::ops::attention::{AttentionKnobs, AttentionPhase, AttentionShape};
use rocmforge::codegen::ops::rope::RotaryPairs;
use rocmforge::codegen::ops::{
    ArgmaxContext, AttentionContext, EmbedContext, GemmContext, GemvContext, RmsNormContext,
};
use rocmforge::codegen::quant::{gpu_formats, weight_layout};
use rocmforge::codegen::shape::{fitting_format, ModelShape, ShapeHparams, StepShape};
use rocmforge::codegen::{kernels_for_shape, CodegenError, Renderer, TuningChoice};
use rocmforge::gguf::GgmlType;
use rocmforge::graph::FusionKind;

/// (name, n_embd, n_head, n_kv_head, head_dim, n_ff, n_vocab)
const SHAPES: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("smollm2-135m", 576, 9, 3, 64, 1536, 49152),
    ("qwen2.5-0.5b", 896, 14, 2, 64, 4864, 151936),
    ("llama3-8b", 4096, 32, 8, 128, 14336, 128256),
];
const TARGETS: &[&str] = &["gfx90a", "gfx1030", "sm_90"];
const N_CTX: usize = 4096;

fn hparams(i: usize) -> ShapeHparams {
    let (_, n_embd, n_head, n_kv_head, head_dim, n_ff, n_vocab) = SHAPES[i];
    ShapeHparams {
        n_embd,
        n_head,
        n_kv_head,
        head_dim,
        n_ff,
        n_vocab,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        rope_style: if i == 1 {
            RotaryPairs::Neox
        } else {
            RotaryPairs::Normal
        },
    }
}

fn target(arch: &str) -> Target {
    Target::parse(arch).expect("reference target")
}

#[test]
fn every_kernel_renders_for_every_shape_format_and_target() {
    let renderer = Renderer::embedded().unwrap();
    for arch in TARGETS {
        let t = target(arch);
        for (i, (shape_name, ..)) in SHAPES.iter().enumerate() {
            for format in gpu_formats() {
                let shape = ModelShape::decoder(&hparams(i), 2, format, i == 2);
                let set =
                    kernels_for_shape(&shape, &t, &TuningChoice::defaults(), N_CTX, &renderer)
                        .unwrap_or_else(|e| panic!("{shape_name} {} {arch}: {e}", format.name()));
                let mut names = BTreeSet::new();
                for k in &set.kernels {
                    assert!(
                        names.insert(k.name.clone()),
                        "duplicate kernel name {}",
                        k.name
                    );
                    let entry = format!("\n{}(", k.name);
                    assert_eq!(
                        k.source.matches(&entry).count(),
                        1,
                        "{}: entry point not defined once",
                        k.name
                    );
                    assert!(k.source.contains("extern \"C\" __global__"), "{}", k.name);
                    // The runtime launches every rendered kernel as a dependent of the one
                    // before it: its body must wait for its inputs.
                    let body = &k.source[k.source.find(&entry).unwrap()..];
                    assert!(
                        body.contains("rf_kernel_begin();")
                            || body.contains("rf_wait_for_inputs();"),
                        "{}: the kernel does not wait for its inputs",
                        k.name
                    );
                    assert!(
                        !k.source.contains("{{") && !k.source.contains("{%"),
                        "{}: unrendered tera",
                        k.name
                    );
                    let cuda = arch.starts_with("sm_");
                    assert_eq!(
                        k.source.contains("#include <cuda_fp16.h>"),
                        cuda,
                        "{}",
                        k.name
                    );
                    assert!(
                        !k.source.contains("#include <hip/hip_fp16.h>"),
                        "{}: HIPRTC must not include hip_fp16.h",
                        k.name
                    );
                    let warp = if *arch == "gfx90a" { 64 } else { 32 };
                    assert!(
                        k.source
                            .contains(&format!("constexpr int WARP_SIZE = {warp};")),
                        "{}",
                        k.name
                    );
                }
            }
        }
    }
}

#[test]
fn kernel_set_has_one_kernel_per_distinct_matmul_problem() {
    let renderer = Renderer::embedded().unwrap();
    let t = target("sm_90");
    for (i, (shape_name, ..)) in SHAPES.iter().enumerate() {
        let shape = ModelShape::decoder(&hparams(i), 3, GgmlType::Q8_0, false);
        let set =
            kernels_for_shape(&shape, &t, &TuningChoice::defaults(), N_CTX, &renderer).unwrap();
        // Expected from the shape itself: the distinct (format, K, N) of its matmul steps.
        let problems: BTreeSet<(GgmlType, usize, usize)> = shape
            .layers
            .iter()
            .flatten()
            .chain(&shape.epilogue)
            .filter_map(|s| match s.shape {
                StepShape::Matmul { format, k, n } => Some((format, k, n)),
                _ => None,
            })
            .collect();
        let count = |kind| set.kernels.iter().filter(|k| k.kind == kind).count();
        // Decode runs one GEMV per fusion (graph::fuse), the same in every layer: the block's
        // q/k/v, output + residual, gate/up + silu_mul and down + residual, and the epilogue's
        // norm + LM head; no matmul of the decoder shape is left unfused.
        let fused_gemvs = shape
            .fusions
            .block
            .iter()
            .chain(&shape.fusions.epilogue)
            .filter(|f| matches!(f.kind, FusionKind::Gemv(_)))
            .count();
        assert_eq!(fused_gemvs, 5, "{shape_name}");
        assert_eq!(count(KernelKind::MatmulGemv), fused_gemvs, "{}", shape_name);
        assert_eq!(
            count(KernelKind::MatmulGemm),
            problems.len(),
            "{}",
            shape_name
        );
        // Prefill attention, and decode attention rotating and storing itself.
        assert_eq!(count(KernelKind::Attention), 1);
        assert_eq!(count(KernelKind::RopeAttention), 1);
        assert_eq!(count(KernelKind::Embed), 1);
        assert_eq!(count(KernelKind::Argmax), 1);
        assert_eq!(set.layers.len(), 3);
    }
}

#[test]
fn steps_launch_gemv_for_decode_and_gemm_for_prefill() {
    let renderer = Renderer::embedded().unwrap();
    let shape = ModelShape::decoder(&hparams(0), 1, GgmlType::Q4_0, false);
    let set = kernels_for_shape(
        &shape,
        &target("gfx90a"),
        &TuningChoice::defaults(),
        N_CTX,
        &renderer,
    )
    .unwrap();
    let kinds_at = |name: &str, n: u32| {
        let step = shape.layers[0].iter().position(|s| s.name == name).unwrap();
        set.for_step(StepAt::Block { layer: 0, step }, n)
            .unwrap()
            .iter()
            .map(|k| k.kind)
            .collect::<Vec<_>>()
    };
    // Decode: attn_norm starts the fused norm + q/k/v GEMV, q launches nothing of its own.
    // Prefill: each step its own kernel, the matmuls on the GEMM.
    assert_eq!(kinds_at("attn_norm", 1), [KernelKind::MatmulGemv]);
    assert_eq!(kinds_at("q", 1), []);
    let prefill = DECODE_MAX_TOKENS + 1;
    assert_eq!(kinds_at("attn_norm", prefill), [KernelKind::RmsNorm]);
    // (after the kernels staging x and the weight as f16, for a vendor GEMM where there is one)
    assert_eq!(
        kinds_at("q", prefill),
        [
            KernelKind::StageInput,
            KernelKind::StageWeights,
            KernelKind::MatmulGemm
        ]
    );
    // Rope, rope and attention are one fusion in both phases, launched at rope_q.
    assert_eq!(kinds_at("attention", 1), []);
    let attn = shape.layers[0]
        .iter()
        .position(|s| s.name == "rope_q")
        .unwrap();
    let kinds = |n| {
        set.for_step(
            StepAt::Block {
                layer: 0,
                step: attn,
            },
            n,
        )
        .unwrap()
        .iter()
        .map(|k| (k.kind, k.grid(n).2))
        .collect::<Vec<_>>()
    };
    // Decode attention rotates and stores itself and splits the keys over 16 blocks (the
    // default); prefill runs rope_store first and does not split.
    assert_eq!(kinds(1), [(KernelKind::RopeAttention, 16)]);
    assert_eq!(
        kinds(64),
        [(KernelKind::RopeStore, 1), (KernelKind::Attention, 1)]
    );
    // Tuned to its unfused candidate, decode runs rope_store before it, as prefill does.
    let decode = set
        .for_step(
            StepAt::Block {
                layer: 0,
                step: attn,
            },
            1,
        )
        .unwrap()[0];
    let unfused = decode
        .candidate_knobs
        .iter()
        .position(|k| !k.contains("fused_rope"))
        .unwrap();
    let mut tuning = TuningChoice::defaults();
    tuning.pick(decode.problem.clone(), unfused);
    let set = kernels_for_shape(&shape, &target("gfx90a"), &tuning, N_CTX, &renderer).unwrap();
    let at = StepAt::Block {
        layer: 0,
        step: attn,
    };
    let kinds: Vec<_> = set
        .for_step(at, 1)
        .unwrap()
        .iter()
        .map(|k| k.kind)
        .collect();
    assert_eq!(kinds, [KernelKind::RopeStore, KernelKind::Attention]);
    assert!(set
        .for_step(StepAt::Block { layer: 1, step: 0 }, 1)
        .is_none());
    assert!(set.for_step(StepAt::Epilogue(5), 1).is_none());
}

#[test]
fn grids_cover_the_work() {
    let t = target("gfx1030");
    // GEMV: warp rows per block x rows per warp output rows per group, row groups per block.
    let gemv = GemvContext::new(&t, GgmlType::Q6K, 4096, 128256);
    let rows = (gemv.rows_per_block * gemv.rows_per_warp) as usize;
    assert!(rows > 1);
    let groups = 128256usize.div_ceil(rows);
    assert_eq!(
        gemv.grid_rule().grid(1),
        (groups.div_ceil(gemv.row_groups as usize) as u32, 1, 1)
    );
    // GEMM: ceil(N / BN) x ceil(tokens / BM).
    let gemm = GemmContext::new(&t, GgmlType::Q4_0, 896, 4864);
    let (x, y, _) = gemm.grid_rule().grid(100);
    assert!(x * gemm.bn >= 4864 && (x - 1) * gemm.bn < 4864);
    assert!(y * gemm.bm >= 100 && (y - 1) * gemm.bm < 100);
    // Embedding: one block row per token, enough threads for every chunk of a row.
    let embed = EmbedContext::new(&t, GgmlType::Q8_0, 896, 151936);
    let (x, y, _) = embed.grid_rule().grid(7);
    assert_eq!(x, 7);
    assert!(y * embed.threads * 32 >= 896);
    // Per-head norm: one row per head per token.
    let norm = RmsNormContext::new(&t, 64, 14, 1e-6);
    let (x, _, _) = norm.grid_rule().grid(3);
    assert!(x * norm.rows_per_block >= 42 && (x - 1) * norm.rows_per_block < 42);
    // Argmax: vocabularies spread over blocks whose threads each issue a few 16-byte loads;
    // a short row stays in one block.
    for n in [151936, 128256, 49152, 32000] {
        let argmax = ArgmaxContext::new(&t, n);
        let (x, y, z) = argmax.grid_rule().grid(1);
        assert_eq!((x, y, z), (argmax.blocks, 1, 1));
        let loads = (n / 4).div_ceil((x * argmax.threads) as usize);
        assert!(
            x > 1 && (1..=4).contains(&loads),
            "{n}: {x} blocks, {loads} loads"
        );
    }
    assert_eq!(ArgmaxContext::new(&t, 300).grid_rule().grid(1), (1, 1, 1));
}

fn invalid_reason(result: Result<(), CodegenError>) -> String {
    match result {
        Err(CodegenError::Invalid { reason, .. }) => reason,
        other => panic!("expected an invalid-context error, got {other:?}"),
    }
}

#[test]
fn validation_rejects_inconsistent_knobs_and_shapes() {
    let t = target("gfx90a");
    // A 256-value K-quant cannot cover rows of 576.
    let reason = invalid_reason(GemvContext::new(&t, GgmlType::Q4K, 576, 64).validate());
    assert!(reason.contains("576") && reason.contains("256"), "{reason}");
    assert_eq!(fitting_format(GgmlType::Q4K, 576), GgmlType::Q5_0);
    assert!(
        GemvContext::new(&t, fitting_format(GgmlType::Q4K, 576), 576, 64)
            .validate()
            .is_ok()
    );
    // GEMM: BK must divide K and hold whole chunks; the thread tile must divide the block tile.
    let gemm = GemmContext::new(&t, GgmlType::Q4_0, 896, 64);
    assert!(invalid_reason(
        gemm.with_knobs(&rocmforge::codegen::ops::matmul::GemmKnobs {
            bk: 48,
            ..gemm.knobs()
        })
        .validate()
    )
    .contains("BK"));
    assert!(invalid_reason(
        gemm.with_knobs(&rocmforge::codegen::ops::matmul::GemmKnobs {
            tm: 3,
            ..gemm.knobs()
        })
        .validate()
    )
    .contains("thread tile"));
    // Block x extent must be whole warps (64 on gfx90a), and no more than 1024 threads.
    let norm = RmsNormContext::new(&t, 576, 1, 1e-5);
    let bad = rocmforge::codegen::ops::rmsnorm::RmsNormKnobs {
        threads_per_row: 32,
        rows_per_block: 4,
    };
    assert!(invalid_reason(norm.with_knobs(&bad).validate()).contains("warp size 64"));
    let big = rocmforge::codegen::ops::rmsnorm::RmsNormKnobs {
        threads_per_row: 512,
        rows_per_block: 4,
    };
    assert!(invalid_reason(norm.with_knobs(&big).validate()).contains("1024"));
    // Argmax needs at least one block.
    let argmax = ArgmaxContext::new(&t, 151936);
    let none = ArgmaxKnobs {
        blocks: 0,
        ..argmax.knobs()
    };
    assert!(invalid_reason(argmax.with_knobs(&none).validate()).contains("0 blocks"));
    // Attention: head_dim must be whole lanes of 8 dimensions; heads must group evenly.
    let shape = AttentionShape {
        head_dim: 84,
        n_head: 8,
        n_kv_head: 2,
        n_ctx: 512,
    };
    let reason =
        invalid_reason(AttentionContext::new(&t, AttentionPhase::Decode, shape, 4).validate());
    assert!(reason.contains("head_dim 84"), "{reason}");
    let shape = AttentionShape {
        head_dim: 64,
        n_head: 9,
        n_kv_head: 2,
        n_ctx: 512,
    };
    assert!(invalid_reason(
        AttentionContext::new(&t, AttentionPhase::Prefill, shape, 4).validate()
    )
    .contains("groups"));
}

#[test]
fn candidate_zero_is_the_default_and_every_candidate_validates() {
    let t = target("sm_90");
    let gemv = GemvContext::new(&t, GgmlType::Q4K, 4096, 14336);
    let cands = gemv.candidates();
    assert_eq!(cands[0], gemv.knobs());
    assert!(cands.len() > 1);
    for c in &cands {
        gemv.with_knobs(c).validate().unwrap();
    }
    let shape = AttentionShape {
        head_dim: 128,
        n_head: 32,
        n_kv_head: 8,
        n_ctx: 8192,
    };
    let attn = AttentionContext::new(&t, AttentionPhase::Decode, shape, 4);
    assert_eq!(attn.candidates()[0], attn.knobs());
    for c in attn.candidates() {
        attn.with_knobs(&c).validate().unwrap();
    }
    // After a rope: fused by default, the same geometry unfused next, then the default's
    // geometry with every depth of loads ahead and least split size, then every geometry fused
    // and not, then the group's heads in one block and in blocks of two; without one, never
    // fused. The default (head size 128, a group of 4): a block per head, one step ahead, eight
    // steps in one split.
    assert!(attn.candidates().iter().all(|c| !c.fused_rope));
    let rope = attn.clone().with_rope(RotaryPairs::Normal, 500000.0);
    let rope_cands = rope.candidates();
    assert_eq!(rope_cands[0], rope.knobs());
    let ahead = |k: AttentionKnobs| k.with_kv_ahead(1).with_split_steps(8).with_head_blocks(4);
    assert_eq!(rope_cands[0], ahead(AttentionKnobs::fused_rope(8, 16)));
    assert_eq!(rope_cands[1], ahead(AttentionKnobs::per_token(8, 16)));
    for kv_ahead in [0, 1, 2, 4] {
        for split_steps in [0, 1, 2, 4, 8] {
            let k = AttentionKnobs::fused_rope(8, 16)
                .with_kv_ahead(kv_ahead)
                .with_split_steps(split_steps)
                .with_head_blocks(4);
            assert!(rope_cands.contains(&k), "{k:?} missing");
        }
    }
    for kv_splits in [1, 4, 8, 16, 32] {
        for warps in [2, 4, 8] {
            assert!(rope_cands.contains(&ahead(AttentionKnobs::fused_rope(warps, kv_splits))));
            assert!(rope_cands.contains(&ahead(AttentionKnobs::per_token(warps, kv_splits))));
        }
    }
    for head_blocks in [0, 2] {
        for split_steps in [0, 1, 2, 4, 8] {
            let k = ahead(AttentionKnobs::fused_rope(8, 16))
                .with_split_steps(split_steps)
                .with_head_blocks(head_blocks);
            assert!(rope_cands.contains(&k), "{k:?} missing");
        }
    }
    // 2 + 19 + 2 x 14 as above; per other head split, 5 split sizes, 3 more depths, 4 warps.
    assert_eq!(rope_cands.len(), 2 + 19 + 2 * 14 + 2 * 9, "{rope_cands:?}");
    for c in &rope_cands {
        rope.with_knobs(c).validate().unwrap();
    }
    assert!(invalid_reason(attn.with_knobs(&rope_cands[0]).validate()).contains("fused_rope"));
    // Where 8 warps' scratch and the staged rotations overflow shared memory, the default stays
    // unfused and fewer warps fuse (head size 256: a block per head still stages 13 tokens' rows).
    let wide = AttentionShape {
        head_dim: 256,
        n_head: 16,
        n_kv_head: 4,
        n_ctx: 8192,
    };
    let wide = AttentionContext::new(&t, AttentionPhase::Decode, wide, 13)
        .with_rope(RotaryPairs::Neox, 10000.0);
    assert_eq!(
        wide.knobs(),
        AttentionKnobs::per_token(8, 16)
            .with_kv_ahead(1)
            .with_split_steps(8)
            .with_head_blocks(4)
    );
    assert!(wide.candidates().contains(
        &AttentionKnobs::fused_rope(4, 16)
            .with_kv_ahead(1)
            .with_split_steps(8)
            .with_head_blocks(4)
    ));
    assert!(!wide
        .candidates()
        .iter()
        .any(|c| c.fused_rope && c.warps == 8));
    // Argmax: other geometries, and the single block without a handshake.
    let argmax = ArgmaxContext::new(&t, 151936);
    let argmax_cands = argmax.candidates();
    assert_eq!(argmax_cands[0], argmax.knobs());
    assert!(argmax_cands.iter().any(|c| c.blocks == 1));
    for c in &argmax_cands {
        argmax.with_knobs(c).validate().unwrap();
    }
    // Picking another candidate changes the knobs, hence the kernel name; an index past the
    // candidates is an error naming the problem.
    let mut tuning = TuningChoice::defaults();
    tuning.pick(gemv.problem(), 1);
    let tuned = tuning.apply(gemv.clone()).unwrap();
    assert_eq!(tuned.knobs(), cands[1]);
    assert_ne!(tuned.kernel_name(), gemv.kernel_name());
    tuning.pick(gemv.problem(), cands.len());
    match tuning.apply(gemv.clone()) {
        Err(CodegenError::BadTuning { problem, count, .. }) => {
            assert_eq!((problem, count), (gemv.problem(), cands.len()))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn kernel_names_follow_op_format_hash() {
    let t = target("gfx90a");
    let ctx = GemvContext::new(&t, GgmlType::Q4_1, 896, 896);
    let name = ctx.kernel_name();
    let hash = name.strip_prefix("matmul_gemv_q4_1_").expect(&name);
    assert!(
        hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{name}"
    );
    // The hash covers the target: the same problem for another warp size is another kernel.
    assert_ne!(
        GemvContext::new(&target("gfx1030"), GgmlType::Q4_1, 896, 896).kernel_name(),
        name
    );
    assert_eq!(
        GemvContext::new(&t, GgmlType::Q4_1, 896, 896).kernel_name(),
        name
    );
}

#[test]
fn floats_render_as_exact_f32_literals() {
    let renderer = Renderer::embedded().unwrap();
    for eps in [1e-5f32, 1e-6, 9.999999e-7, 0.1, 1.0] {
        let src = renderer
            .render(&RmsNormContext::new(&target("sm_90"), 576, 1, eps))
            .unwrap();
        let line = src
            .lines()
            .find(|l| l.contains("constexpr float EPS"))
            .unwrap();
        let literal = line
            .split('=')
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches(';')
            .trim_end_matches('f');
        assert_eq!(literal.parse::<f32>().unwrap(), eps, "{line}");
    }
}

#[test]
fn template_directory_override_reads_the_same_names_from_disk() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let from_disk = Renderer::from_dir(&dir).unwrap();
    let embedded = Renderer::embedded().unwrap();
    let ctx = GemmContext::new(&target("gfx1030"), GgmlType::Q3K, 4096, 4096);
    assert_eq!(
        from_disk.render(&ctx).unwrap(),
        embedded.render(&ctx).unwrap()
    );
    let empty = std::env::temp_dir().join(format!("rocmforge-no-templates-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    match Renderer::from_dir(&empty) {
        Err(CodegenError::TemplateDir { file, .. }) => assert!(file.ends_with(".hip.tera")),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("an empty template directory must not load"),
    }
}

#[test]
fn every_weight_format_has_a_snippet() {
    for format in rocmforge::gguf::types::SUPPORTED {
        let layout = weight_layout(*format).unwrap_or_else(|| panic!("{}", format.name()));
        assert!(
            rocmforge::codegen::render::template_names().any(|n| n == layout.template()),
            "{}",
            format.name()
        );
    }
}

#[test]
fn listing_counts_the_launches_of_each_kernel() {
    let renderer = Renderer::embedded().unwrap();
    let layers = 3;
    let shape = ModelShape::decoder(&hparams(0), layers, GgmlType::Q8_0, false);
    let set = kernels_for_shape(
        &shape,
        &target("sm_90"),
        &TuningChoice::defaults(),
        N_CTX,
        &renderer,
    )
    .unwrap();
    let rows = rocmforge::codegen::listing::kernel_rows(&set, None);
    assert_eq!(rows.len(), set.kernels.len());
    // attn_norm and ffn_norm in every layer plus output_norm, in prefill only (decode fuses
    // them into the GEMV after them).
    let norm = rows
        .iter()
        .find(|r| r.problem == "rmsnorm width=576 rows/token=1")
        .unwrap();
    assert_eq!(norm.uses, 2 * layers + 1);
    // The fused norm + q/k/v GEMV runs once per layer, in decode only.
    let qkv = rows
        .iter()
        .find(|r| r.problem == "matmul_gemv K=576 [Q8_0 N=576, Q8_0 N=192, Q8_0 N=192] norm")
        .unwrap();
    assert_eq!(qkv.uses, layers);
    assert_eq!(
        rows.iter()
            .find(|r| r.problem.starts_with("argmax"))
            .unwrap()
            .uses,
        1
    );
    assert!(rows.iter().all(|r| r.compiled.is_none()));
    let line = norm.to_string();
    assert!(
        line.contains(&norm.name) && line.contains("block"),
        "{line}"
    );
}
