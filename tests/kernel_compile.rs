//! Compiles generated kernels with the real run-time compilers (HIPRTC for gfx90a and gfx1030,
//! NVRTC for sm_90); no GPU needed. A target whose compiler library is absent is skipped with the
//! reason printed.
//!
//! By default it compiles, per target: the whole kernel set of three real model shapes
//! (SmolLM2-135M in Q4_1, Qwen2.5-0.5B in Q8_0 with fused QKV, Llama-3-8B in Q4_K) and, for every
//! weight format, its GEMV, GEMM and embedding kernels and the GEMV's lane groups. Shapes only
//! change constants, formats and ops change code, so this covers every template path in about a
//! tenth of the full cross product; `ROCMFORGE_COMPILE_ALL=1` compiles every shape x every format instead. Results are cached (in
//! `$ROCMFORGE_CACHE_DIR`, else under the test's target directory), so reruns of unchanged kernels
//! are instant.

use std::collections::BTreeMap;

use rocmforge::codegen::cache::{compile_all, KernelCache};
use rocmforge::codegen::compiler::{compiler_for, Platform, Target};
use rocmforge::codegen::context::Tunable;
use rocmforge::codegen::ops::attention::{AttentionKnobs, AttentionPhase, AttentionShape};
use rocmforge::codegen::ops::matmul::{GemvEpilogue, GemvSegment};
use rocmforge::codegen::ops::rope::RotaryPairs;
use rocmforge::codegen::ops::{
    AttentionContext, EmbedContext, GemmContext, GemmTilesContext, GemvContext,
};
use rocmforge::codegen::quant::gpu_formats;
use rocmforge::codegen::shape::{ModelShape, ShapeHparams};
use rocmforge::codegen::{kernels_for_shape, KernelKind, KernelSpec, Renderer, TuningChoice};
use rocmforge::gguf::GgmlType;

/// (name, n_embd, n_head, n_kv_head, head_dim, n_ff, n_vocab, rope style, format, fused qkv)
type Shape = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    RotaryPairs,
    GgmlType,
    bool,
);
const SHAPES: &[Shape] = &[
    (
        "smollm2-135m",
        576,
        9,
        3,
        64,
        1536,
        49152,
        RotaryPairs::Normal,
        GgmlType::Q4_1,
        false,
    ),
    (
        "qwen2.5-0.5b",
        896,
        14,
        2,
        64,
        4864,
        151936,
        RotaryPairs::Neox,
        GgmlType::Q8_0,
        true,
    ),
    (
        "llama3-8b",
        4096,
        32,
        8,
        128,
        14336,
        128256,
        RotaryPairs::Normal,
        GgmlType::Q4K,
        false,
    ),
];
const TARGETS: &[&str] = &["gfx90a", "gfx1030", "sm_90"];
/// Attention head shapes (head_dim, n_head, n_kv_head) whose prefill candidates and decode
/// variants after a rope all compile: the shapes above and Phi-3's head size 96.
const ATTENTION_HEADS: &[(usize, usize, usize)] =
    &[(64, 9, 3), (64, 14, 2), (128, 32, 8), (96, 32, 32)];
const N_CTX: usize = 4096;

fn decoder(shape: &Shape, format: GgmlType) -> ModelShape {
    let &(_, n_embd, n_head, n_kv_head, head_dim, n_ff, n_vocab, rope_style, _, fused) = shape;
    let hp = ShapeHparams {
        n_embd,
        n_head,
        n_kv_head,
        head_dim,
        n_ff,
        n_vocab,
        norm_eps: 1e-5,
        rope_base: 10000.0,
        rope_style,
    };
    ModelShape::decoder(&hp, 1, format, fused)
}

/// The kernels to compile for `target`, keyed by name (distinct only).
fn kernels(target: &Target, renderer: &Renderer) -> BTreeMap<String, KernelSpec> {
    let all = std::env::var("ROCMFORGE_COMPILE_ALL").is_ok_and(|v| v == "1");
    let mut shapes = Vec::new();
    for shape in SHAPES {
        if all {
            shapes.extend(gpu_formats().map(|f| decoder(shape, f)));
        } else {
            shapes.push(decoder(shape, shape.8));
        }
    }
    let mut out = BTreeMap::new();
    let tuning = TuningChoice::defaults();
    for shape in &shapes {
        let set = kernels_for_shape(shape, target, &tuning, N_CTX, renderer).unwrap();
        out.extend(set.kernels.into_iter().map(|k| (k.name.clone(), k)));
    }
    if !all {
        // Every format through every weight-reading template, at a row length all blocks fit.
        for format in gpu_formats() {
            let specs = [
                spec(
                    KernelKind::MatmulGemv,
                    GemvContext::new(target, format, 1536, 576),
                    renderer,
                ),
                spec(
                    KernelKind::MatmulGemm,
                    GemmContext::new(target, format, 1536, 576),
                    renderer,
                ),
                spec(
                    KernelKind::Embed,
                    EmbedContext::new(target, format, 1536, 1000),
                    renderer,
                ),
            ];
            out.extend(specs.into_iter().map(|k| (k.name.clone(), k)));
            // The GEMV candidates with chunk rounds or several row groups per block: all of them
            // for a format with a split int8 dot (software-pipelined rounds) and one without
            // (L2-prefetched rounds); unroll 4 alone for two more.
            let gemv = GemvContext::new(target, format, 1536, 576);
            let wide = |k: &rocmforge::codegen::ops::matmul::GemvKnobs| match format {
                GgmlType::Q4_0 | GgmlType::Q4K => k.unroll > 1 || k.row_groups > 1,
                GgmlType::Q8_0 | GgmlType::Q6K => k.unroll == 4,
                _ => false,
            };
            for knobs in gemv.candidates().iter().filter(|k| wide(k)) {
                let k = spec(KernelKind::MatmulGemv, gemv.with_knobs(knobs), renderer);
                out.insert(k.name.clone(), k);
            }
            // Lane groups: every candidate for Q4_0, those with rounds of two groups or a
            // preloaded round for the other formats with a dot from registers.
            let lanes = |k: &rocmforge::codegen::ops::matmul::GemvKnobs| {
                k.lane_group > 1 && (format == GgmlType::Q4_0 || k.unroll > 1 || k.preload)
            };
            for knobs in gemv.candidates().iter().filter(|k| lanes(k)) {
                let k = spec(KernelKind::MatmulGemv, gemv.with_knobs(knobs), renderer);
                out.insert(k.name.clone(), k);
            }
            // The matrix-tile GEMM's default for every format, and every tuning candidate for
            // the formats with an int8 variant (the knobs change code paths: pipelining, tile
            // loops, the int8 template with the format's i8_chunk).
            if let Some(tiles) = GemmTilesContext::new(target, format, 1536, 576) {
                let candidates = if matches!(format, GgmlType::Q4_0 | GgmlType::Q8_0) {
                    tiles.candidates()
                } else {
                    vec![tiles.knobs()]
                };
                for knobs in candidates {
                    let k = spec(KernelKind::MatmulGemm, tiles.with_knobs(&knobs), renderer);
                    out.insert(k.name.clone(), k);
                }
            }
        }
        // Llama3-8b Q4_0's gate/up (norm, silu_mul) and down (residual) GEMVs with every lane
        // group candidate, for NVRTC's register and spill counts at the shapes they are for.
        if target.platform == Platform::Cuda {
            for (k, n, norm, epilogue) in [
                (4096, 14336, Some(1e-5), GemvEpilogue::SiluMul),
                (14336, 4096, None, GemvEpilogue::Residual),
            ] {
                let segments = match epilogue {
                    GemvEpilogue::SiluMul => 2,
                    _ => 1,
                };
                let segments = vec![GemvSegment::new(GgmlType::Q4_0, n); segments];
                let gemv = GemvContext::fused(target, k, segments, norm, epilogue);
                for knobs in gemv.candidates().iter().filter(|k| k.lane_group > 1) {
                    let k = spec(KernelKind::MatmulGemv, gemv.with_knobs(knobs), renderer);
                    out.insert(k.name.clone(), k);
                }
            }
        }
        // Every prefill attention candidate: the tiled kernel's tile sizes, chunks and warps.
        for &(head_dim, n_head, n_kv_head) in ATTENTION_HEADS {
            let shape = AttentionShape {
                head_dim,
                n_head,
                n_kv_head,
                n_ctx: N_CTX,
            };
            let attn = AttentionContext::new(target, AttentionPhase::Prefill, shape, 4);
            for knobs in attn.candidates() {
                let k = spec(KernelKind::Attention, attn.with_knobs(&knobs), renderer);
                out.insert(k.name.clone(), k);
            }
            // Decode attention after a rope: rotating itself in both pairings, with splits and
            // without (the merge path), and not rotating (the kernel rope_store runs before);
            // with the group's heads shared out over one block each, rotating and not.
            let decode = AttentionContext::new(target, AttentionPhase::Decode, shape, 4);
            let group = (n_head / n_kv_head) as u32;
            let variants = [
                (RotaryPairs::Normal, AttentionKnobs::fused_rope(8, 16)),
                (RotaryPairs::Neox, AttentionKnobs::fused_rope(8, 16)),
                (RotaryPairs::Neox, AttentionKnobs::fused_rope(4, 1)),
                (RotaryPairs::Normal, AttentionKnobs::per_token(8, 16)),
                (
                    RotaryPairs::Neox,
                    AttentionKnobs::fused_rope(8, 16).with_head_blocks(group),
                ),
                (
                    RotaryPairs::Normal,
                    AttentionKnobs::per_token(8, 16).with_head_blocks(group),
                ),
            ];
            for (style, knobs) in variants {
                let kind = match knobs.fused_rope {
                    true => KernelKind::RopeAttention,
                    false => KernelKind::Attention,
                };
                let ctx = decode.clone().with_rope(style, 10000.0).with_knobs(&knobs);
                let k = spec(kind, ctx, renderer);
                out.insert(k.name.clone(), k);
            }
        }
    }
    out
}

fn spec<C: Tunable>(kind: KernelKind, ctx: C, renderer: &Renderer) -> KernelSpec {
    ctx.validate().unwrap();
    KernelSpec::new(kind, &ctx, renderer).unwrap()
}

#[test]
fn every_kernel_compiles_for_every_reference_target() {
    let renderer = Renderer::embedded().unwrap();
    let cache = match std::env::var_os("ROCMFORGE_CACHE_DIR") {
        Some(_) => KernelCache::from_env(),
        None => {
            KernelCache::new(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kernel-cache"))
        }
    }
    .unwrap();
    let mut failures = Vec::new();
    for arch in TARGETS {
        let target = Target::parse(arch).unwrap();
        let compiler = match compiler_for(&target) {
            Ok(c) => c,
            Err(e) if std::env::var("ROCMFORGE_REQUIRE_COMPILERS").is_ok_and(|v| v == "1") => {
                panic!("{arch}: ROCMFORGE_REQUIRE_COMPILERS=1 but {e}")
            }
            Err(e) => {
                eprintln!("skipped {arch}: {e}");
                continue;
            }
        };
        let specs: Vec<KernelSpec> = kernels(&target, &renderer).into_values().collect();
        let sources: Vec<_> = specs.iter().map(KernelSpec::to_source).collect();
        let started = std::time::Instant::now();
        // HIPRTC 5.2 is not safe to call from several threads at once (seen here: "No available
        // targets are compatible with triple amdgcn-amd-amdhsa", and heap corruption), and on two
        // cores parallel compiles gain nothing: compile HIP kernels one at a time.
        let threads = match target.platform {
            Platform::Hip => 1,
            Platform::Cuda => rayon::current_num_threads(),
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let results = pool.install(|| compile_all(&cache, compiler.as_ref(), &target, &sources));
        let mut compiled = 0;
        let mut hits = 0;
        let mut max_registers = (0, String::new());
        for (spec, result) in specs.iter().zip(results) {
            match result {
                Ok(outcome) => {
                    compiled += 1;
                    hits += outcome.cache_hit as usize;
                    assert!(
                        !outcome.kernel.binary.is_empty(),
                        "{}: empty binary",
                        spec.name
                    );
                    if let Some(r) = outcome.kernel.registers.filter(|&r| r > max_registers.0) {
                        max_registers = (r, spec.name.clone());
                    }
                    // GEMV, matrix-tile GEMM and tiled attention register counts bound their
                    // occupancy, which decode and prefill speed depend on.
                    if spec.kind == KernelKind::MatmulGemv
                        || spec.name.starts_with("matmul_gemm_tiles")
                        || spec.knobs_json.contains("tile_tokens")
                    {
                        eprintln!(
                            "{arch}: {} ({} {}) registers {:?} spills {:?}",
                            spec.name,
                            spec.problem,
                            spec.knobs_json,
                            outcome.kernel.registers,
                            outcome.kernel.spills
                        );
                    }
                    if outcome.kernel.spills.is_some_and(|s| s > 0) {
                        eprintln!("{arch}: {} spills {:?}", spec.name, outcome.kernel.spills);
                    }
                }
                Err(e) => failures.push(format!(
                    "{arch} {} ({}):\n{e}\ncontext: {}",
                    spec.name, spec.problem, spec.context_json
                )),
            }
        }
        eprintln!(
            "{arch}: {compiled}/{} kernels compiled ({hits} cached) in {:.1} s; most registers {} ({})",
            specs.len(),
            started.elapsed().as_secs_f64(),
            max_registers.0,
            max_registers.1
        );
    }
    assert!(
        failures.is_empty(),
        "{} kernels failed to compile:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
