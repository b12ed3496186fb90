//! The kernels a model needs, rendered and ready to compile, and which of them each program step
//! launches.
//!
//! # Kernel ABI
//!
//! Every kernel is `extern "C" __global__`, named `<op>_<fmt>_<8 hex of sha256(context json)>`.
//! Pointers are device pointers. Activations are f32 row-major `[n_tokens][width]`; weights are the
//! raw GGUF bytes of the tensor (16-byte aligned base), uploaded unchanged; the KV cache of a layer
//! is `__half [n_ctx][n_kv_head * head_dim]` for K and for V. Positions come from device memory
//! (`const int* pos0`) so a decode step can be captured once and replayed. Every model size is a
//! compile-time constant; the run-time arguments are only pointers and counts:
//!
//! ```text
//! embed       (const u8* table, const int* tokens, float* out, int n_tokens)
//! rmsnorm     (const float* x, const float* w, float* out, int n_rows)   // n_rows = n_tokens * rows_per_token
//! matmul_gemv (const u8* W0, const u8* W1, const u8* W2, const float* bias0, const float* bias1,
//!              const float* bias2, const float* x, const float* norm_w, const float* residual,
//!              float* out0, float* out1, float* out2, int n_tokens)   // unused slots null
//! matmul_gemm (const u8* W, const float* x, float* out, const float* bias_or_null, int n_tokens)
//!             (FP32 tiles, or f16 matrix tiles where the target has them: `matmul_gemm_tiles`)
//! split       (const float* x, float* out0, float* out1, float* out2_or_null, int n_tokens)
//! rope        (float* x, const int* pos0, int n_tokens)                    // in place
//! kv_store    (const float* k, const float* v, __half* k_cache, __half* v_cache, const int* pos0, int n_tokens)
//! rope_store  (const float* q, const float* k, const float* v, float* q_out, __half* k_cache,
//!              __half* v_cache, const int* pos0, int n_tokens)
//! attention   (const float* q, const __half* k_cache, const __half* v_cache, float* out, const int* pos0, int n_tokens)
//!             with `fused_rope` (decode; kind RopeAttention), q, k, v unrotated and the new rows stored:
//!             (const float* q, const float* k, const float* v, __half* k_cache, __half* v_cache,
//!              float* out, const int* pos0, int n_tokens)
//! add         (const float* a, const float* b, float* out, int n)          // n = n_tokens * width
//! silu_mul    (const float* g, const float* u, float* out, int n)          // n = n_tokens * width
//! argmax      (const float* x, int* out, int n, int* next_token, int* pos0, int* ring,
//!              int ring_len, int advance)    // one row; the result also feeds the next step
//! stage_f16   (const u8* src, __half* out, int n_rows)   // rows of K values as f16: a prefill
//!             // matmul's input (F32) or weight (its GGUF format), for the runtime's vendor GEMM
//! ```
//!
//! Fusion (`graph::fuse`): a run of steps computed together has all its kernels in the list of
//! its first step and empty lists for the others, in the phases the fusion applies to: decode
//! GEMVs absorb the RMSNorm before them, the matmuls sharing their input, a split and a residual
//! add or silu_mul after them; `rope_store` + attention replace rope, rope, kv_store + attention
//! in prefill, and in decode too unless the tuned decode attention rotates and stores itself
//! (`fused_rope`, the default): then that one kernel replaces all four.
//!
//! Launch: `block` and `shared_bytes` (static; no dynamic shared memory) are fixed per kernel,
//! `grid(n_tokens)` gives the grid (a `stage_f16` of weight rows sets its own grid from the rows
//! it stages, `StageF16Context::blocks`). An Attention step is two launches, `kv_store` then
//! `attention`; the caller guarantees `*pos0 + n_tokens <= n_ctx` (kernels drop rows past it
//! rather than write out of bounds). A decode attention kernel (`kv_splits > 1`) keeps split
//! partials in module-global scratch for up to `DECODE_MAX_TOKENS` tokens and merges them in the
//! last block to finish: one launch, graph-replayable, but it must not run concurrently with
//! itself (one stream).
//!
//! # Using a set
//!
//! `kernels_for_model(&model, &target, &tuning, n_ctx, &renderer)` (or `kernels_for_shape` for a
//! shape without a file) renders every distinct kernel once. `for_step(StepAt, n_tokens)` gives
//! the kernels of a program step in launch order, choosing the decode or prefill variants by
//! `Phase::of(n_tokens)`; `argmax()` is the greedy-sampling kernel. To compile:
//! `cache::compile_all(&cache, compiler, &target, &set.sources())`; `listing::kernel_rows(&set,
//! Some(&results))` is the table `rocmforge kernels` prints. Tuning: each kernel's `problem` is
//! the key of `TuningChoice::pick(problem, candidate)`; `candidates` says how many there are.
//!
//! # Template conventions
//!
//! `templates/<op>.hip.tera` is one op family, rendered with its context struct (`ops/`) plus
//! `kernel_name`. The source is the concatenation of `prelude/<platform>.hip.tera` (`WARP_SIZE`,
//! `rf_shfl_xor`, half headers), `prelude/common.hip.tera` (fixed-width ints `u8..i64`,
//! `warp_reduce_sum/max`, `f16_bits_to_f32`, `bf16_bits_to_f32`, aligned loads), for ops with GGUF
//! weights `quant/<fmt>.hip.tera` (`QK`, `QBYTES`, `CHUNK`, `dq_chunk(row, c, out[CHUNK])`) and
//! `quant/dot.hip.tera` (`ROW_BYTES`, `ROW_CHUNKS`, `dot_chunk_values`), then the op template.
//! Templates never branch on the vendor: the preludes hide it. Floats are rendered with the
//! `cfloat` filter so they read back as the same f32.

use std::collections::HashMap;

use serde::Serialize;

use super::compiler::{KernelSource, Target};
use super::context::{GridRule, Tunable};
use super::error::CodegenError;
use super::ops::attention::{AttentionPhase, AttentionShape};
use super::ops::elementwise::ElementwiseOp;
use super::ops::matmul::{GemvEpilogue, GemvSegment};
use super::ops::rope::RotaryPairs;
use super::ops::stage_f16::{weight_staging, WeightStaging};
use super::ops::{
    ArgmaxContext, AttentionContext, ElementwiseContext, EmbedContext, GemmContext,
    GemmTilesContext, GemvContext, KvStoreContext, RmsNormContext, RopeContext, RopeStoreContext,
    SplitContext, StageF16Context,
};
use super::render::Renderer;
use super::shape::{ModelShape, ShapedStep, StepShape};
use super::tuning::TuningChoice;
use crate::gguf::GgmlType;
use crate::graph::{self, Fusion, FusionKind, GemvFusion};
use crate::plan::Model;

/// Launches with at most this many tokens use the decode kernels (GEMV, split attention).
pub const DECODE_MAX_TOKENS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Decode,
    Prefill,
}

impl Phase {
    pub fn of(n_tokens: u32) -> Phase {
        if n_tokens <= DECODE_MAX_TOKENS {
            Phase::Decode
        } else {
            Phase::Prefill
        }
    }
}

/// Which ABI a kernel has (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum KernelKind {
    Embed,
    RmsNorm,
    MatmulGemv,
    MatmulGemm,
    Split,
    Rope,
    KvStore,
    RopeStore,
    Attention,
    /// Decode attention rotating q and k and storing k and v itself.
    RopeAttention,
    Add,
    SiluMul,
    Argmax,
    /// Prefill on the vendor GEMM: the step's input rows as f16.
    StageInput,
    /// Prefill on the vendor GEMM: the step's weight dequantized to f16.
    StageWeights,
}

/// One rendered kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSpec {
    pub kind: KernelKind,
    /// Entry point.
    pub name: String,
    pub source: String,
    pub context_json: String,
    /// Op and shape without knobs: the tuning key.
    pub problem: String,
    /// The knobs in use, as JSON.
    pub knobs_json: String,
    /// How many candidates the problem has (for the tuner).
    pub candidates: usize,
    /// Each candidate's knobs as JSON, index = candidate: what a tuning result is chosen among.
    pub candidate_knobs: Vec<String>,
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
    pub grid_rule: GridRule,
}

impl KernelSpec {
    pub fn grid(&self, n_tokens: u32) -> (u32, u32, u32) {
        self.grid_rule.grid(n_tokens)
    }

    /// Renders `ctx`, whose knobs are already chosen and validated.
    pub fn new<C: Tunable>(
        kind: KernelKind,
        ctx: &C,
        renderer: &Renderer,
    ) -> Result<KernelSpec, CodegenError> {
        let candidates = ctx.candidates();
        Ok(KernelSpec {
            kind,
            name: ctx.kernel_name(),
            source: renderer.render(ctx)?,
            context_json: ctx.context_json(),
            problem: ctx.problem(),
            knobs_json: serde_json::to_string(&ctx.knobs()).expect("knobs are plain numbers"),
            candidates: candidates.len(),
            candidate_knobs: candidates
                .iter()
                .map(|k| serde_json::to_string(k).expect("knobs are plain numbers"))
                .collect(),
            block: ctx.block(),
            shared_bytes: ctx.shared_bytes(),
            grid_rule: ctx.grid_rule(),
        })
    }

    /// What the compilers take.
    pub fn to_source(&self) -> KernelSource {
        KernelSource {
            name: self.name.clone(),
            source: self.source.clone(),
            options: Vec::new(),
            context_json: self.context_json.clone(),
        }
    }

    /// One line for `rocmforge kernels`: name, problem, knobs, launch shape.
    pub fn summary(&self) -> String {
        let (x, y, z) = self.block;
        format!(
            "{} | {} | {} | block {x}x{y}x{z} smem {}",
            self.name, self.problem, self.knobs_json, self.shared_bytes
        )
    }
}

/// The kernels one step launches, in order, per phase (indices into `KernelSet::kernels`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepKernels {
    pub step: String,
    pub decode: Vec<usize>,
    pub prefill: Vec<usize>,
}

impl StepKernels {
    pub fn for_phase(&self, phase: Phase) -> &[usize] {
        match phase {
            Phase::Decode => &self.decode,
            Phase::Prefill => &self.prefill,
        }
    }
}

/// Where a step sits in the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAt {
    Prologue(usize),
    Block { layer: usize, step: usize },
    Epilogue(usize),
}

/// Every distinct kernel of a model, and the kernels of each step.
#[derive(Debug, Clone)]
pub struct KernelSet {
    pub kernels: Vec<KernelSpec>,
    pub prologue: Vec<StepKernels>,
    pub layers: Vec<Vec<StepKernels>>,
    pub epilogue: Vec<StepKernels>,
    /// Greedy sampling over the logits row.
    pub argmax: usize,
}

impl KernelSet {
    /// The kernels to launch, in order, for the step at `at` over `n_tokens` tokens; None when
    /// `at` is outside the program.
    pub fn for_step(&self, at: StepAt, n_tokens: u32) -> Option<Vec<&KernelSpec>> {
        let step = match at {
            StepAt::Prologue(i) => self.prologue.get(i)?,
            StepAt::Block { layer, step } => self.layers.get(layer)?.get(step)?,
            StepAt::Epilogue(i) => self.epilogue.get(i)?,
        };
        Some(
            step.for_phase(Phase::of(n_tokens))
                .iter()
                .map(|&k| &self.kernels[k])
                .collect(),
        )
    }

    pub fn argmax(&self) -> &KernelSpec {
        &self.kernels[self.argmax]
    }

    /// Every kernel's source, in the order of `kernels`.
    pub fn sources(&self) -> Vec<KernelSource> {
        self.kernels.iter().map(KernelSpec::to_source).collect()
    }

    /// How many step launches (decode and prefill, every layer) use each kernel.
    pub fn uses(&self) -> Vec<usize> {
        let mut uses = vec![0; self.kernels.len()];
        let steps = self
            .prologue
            .iter()
            .chain(self.layers.iter().flatten())
            .chain(&self.epilogue);
        for step in steps {
            for &k in step.decode.iter().chain(&step.prefill) {
                uses[k] += 1;
            }
        }
        uses[self.argmax] += 1;
        uses
    }
}

/// The kernel set of a bound model with a KV cache of `n_ctx` positions.
pub fn kernels_for_model(
    model: &Model,
    target: &Target,
    tuning: &TuningChoice,
    n_ctx: usize,
    renderer: &Renderer,
) -> Result<KernelSet, CodegenError> {
    kernels_for_shape(
        &ModelShape::from_model(model)?,
        target,
        tuning,
        n_ctx,
        renderer,
    )
}

/// Builds the kernel set of `shape` for `target`, with a KV cache of `n_ctx` positions.
pub fn kernels_for_shape(
    shape: &ModelShape,
    target: &Target,
    tuning: &TuningChoice,
    n_ctx: usize,
    renderer: &Renderer,
) -> Result<KernelSet, CodegenError> {
    let mut builder = Builder {
        shape,
        target,
        tuning,
        n_ctx,
        renderer,
        kernels: Vec::new(),
        index: HashMap::new(),
    };
    let fusions = &shape.fusions;
    let prologue = builder.section(&shape.prologue, &fusions.prologue)?;
    let layers = shape
        .layers
        .iter()
        .map(|l| builder.section(l, &fusions.block))
        .collect::<Result<Vec<_>, _>>()?;
    let epilogue = builder.section(&shape.epilogue, &fusions.epilogue)?;
    let argmax = builder.add(
        KernelKind::Argmax,
        ArgmaxContext::new(target, shape.hparams.n_vocab),
    )?;
    Ok(KernelSet {
        kernels: builder.kernels,
        prologue,
        layers,
        epilogue,
        argmax,
    })
}

struct Builder<'a> {
    shape: &'a ModelShape,
    target: &'a Target,
    tuning: &'a TuningChoice,
    n_ctx: usize,
    renderer: &'a Renderer,
    kernels: Vec<KernelSpec>,
    /// (op, context json) -> index: one kernel per distinct context.
    index: HashMap<(String, String), usize>,
}

impl Builder<'_> {
    fn add<C: Tunable>(&mut self, kind: KernelKind, ctx: C) -> Result<usize, CodegenError> {
        let ctx = self.tuning.apply(ctx)?;
        let key = (ctx.op().to_string(), ctx.context_json());
        if let Some(&i) = self.index.get(&key) {
            return Ok(i);
        }
        let spec = KernelSpec::new(kind, &ctx, self.renderer)?;
        self.kernels.push(spec);
        self.index.insert(key, self.kernels.len() - 1);
        Ok(self.kernels.len() - 1)
    }

    /// The kernels of each step of a section, with its fusions applied.
    fn section(
        &mut self,
        steps: &[ShapedStep],
        fusions: &[Fusion],
    ) -> Result<Vec<StepKernels>, CodegenError> {
        let mut out = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            // Steps of a rope + attention fusion get their kernels below, in both phases; steps
            // of a GEMV fusion only their prefill kernels here.
            let kind = fusions.iter().find(|f| f.contains(i)).map(|f| &f.kind);
            out.push(match kind {
                Some(FusionKind::RopeAttention { .. }) => StepKernels {
                    step: step.name.clone(),
                    decode: Vec::new(),
                    prefill: Vec::new(),
                },
                Some(FusionKind::Gemv(_)) => self.step(step, false)?,
                None => self.step(step, true)?,
            });
        }
        for fusion in fusions {
            let absorbed = fusion.first + 1..fusion.first + fusion.len;
            match &fusion.kind {
                FusionKind::Gemv(gemv) => {
                    let ctx = self.fused_gemv(steps, fusion, gemv)?;
                    out[fusion.first].decode = vec![self.add(KernelKind::MatmulGemv, ctx)?];
                    for i in absorbed {
                        out[i].decode.clear();
                    }
                }
                FusionKind::RopeAttention { rope_q, .. } => {
                    let StepShape::Rope { width } = steps[*rope_q].shape else {
                        return Err(fusion_error(
                            steps,
                            fusion,
                            "q is not rotated by a rope step",
                        ));
                    };
                    let hp = &self.shape.hparams;
                    let rope = RopeContext::new(
                        self.target,
                        width,
                        hp.head_dim,
                        hp.rope_base,
                        hp.rope_style,
                    );
                    let kv_width = hp.n_kv_head * hp.head_dim;
                    let store = self.add(
                        KernelKind::RopeStore,
                        RopeStoreContext::new(self.target, &rope, kv_width, self.n_ctx),
                    )?;
                    let (decode, prefill) = self.attention(Some((rope.style, rope.base)))?;
                    out[fusion.first].decode = match self.kernels[decode].kind {
                        KernelKind::RopeAttention => vec![decode],
                        _ => vec![store, decode],
                    };
                    out[fusion.first].prefill = vec![store, prefill];
                }
            }
        }
        Ok(out)
    }

    /// The decode GEMV computing a GEMV fusion's steps.
    fn fused_gemv(
        &self,
        steps: &[ShapedStep],
        fusion: &Fusion,
        gemv: &GemvFusion,
    ) -> Result<GemvContext, CodegenError> {
        let mut k_common = None;
        let mut segments = Vec::new();
        for segment in &gemv.segments {
            let StepShape::Matmul { format, k, .. } = steps[segment.matmul].shape else {
                return Err(fusion_error(
                    steps,
                    fusion,
                    "a segment's step is not a matmul",
                ));
            };
            if k_common.is_some_and(|common| common != k) {
                return Err(fusion_error(
                    steps,
                    fusion,
                    "the matmuls differ in row length",
                ));
            }
            k_common = Some(k);
            segments.push(GemvSegment::new(format, segment.rows));
        }
        let k = k_common.ok_or_else(|| fusion_error(steps, fusion, "no matmul"))?;
        let epilogue = match gemv.epilogue {
            graph::GemvEpilogue::Store => GemvEpilogue::Store,
            graph::GemvEpilogue::Residual { .. } => GemvEpilogue::Residual,
            graph::GemvEpilogue::SiluMul { .. } => GemvEpilogue::SiluMul,
        };
        let norm_eps = gemv.norm.map(|_| self.shape.hparams.norm_eps);
        Ok(GemvContext::fused(
            self.target,
            k,
            segments,
            norm_eps,
            epilogue,
        ))
    }

    /// The decode and prefill attention kernels; with `rope` (pairs, base), decode may rotate q
    /// and k itself, as its tuned knobs say (`KernelKind::RopeAttention`).
    fn attention(
        &mut self,
        rope: Option<(RotaryPairs, f32)>,
    ) -> Result<(usize, usize), CodegenError> {
        let (t, hp) = (self.target, &self.shape.hparams);
        let shape = AttentionShape {
            head_dim: hp.head_dim,
            n_head: hp.n_head,
            n_kv_head: hp.n_kv_head,
            n_ctx: self.n_ctx,
        };
        let max = DECODE_MAX_TOKENS as usize;
        let mut decode_ctx = AttentionContext::new(t, AttentionPhase::Decode, shape, max);
        if let Some((style, base)) = rope {
            decode_ctx = decode_ctx.with_rope(style, base);
        }
        let decode_ctx = self.tuning.apply(decode_ctx)?;
        let kind = match decode_ctx.fused_rope {
            true => KernelKind::RopeAttention,
            false => KernelKind::Attention,
        };
        let decode = self.add(kind, decode_ctx)?;
        let prefill = self.add(
            KernelKind::Attention,
            AttentionContext::new(t, AttentionPhase::Prefill, shape, max),
        )?;
        Ok((decode, prefill))
    }

    /// The kernels of one step; without `decode`, the step's decode launch is part of a fused
    /// kernel and its own decode GEMV is not built (it would only cost compile time).
    fn step(&mut self, step: &ShapedStep, decode: bool) -> Result<StepKernels, CodegenError> {
        let t = self.target;
        let hp = &self.shape.hparams;
        let same = |k: usize| (vec![k], vec![k]);
        let (decode, prefill) = match &step.shape {
            StepShape::Embed {
                format,
                width,
                n_vocab,
            } => same(self.add(
                KernelKind::Embed,
                EmbedContext::new(t, *format, *width, *n_vocab),
            )?),
            StepShape::RmsNorm {
                width,
                rows_per_token,
            } => same(self.add(
                KernelKind::RmsNorm,
                RmsNormContext::new(t, *width, *rows_per_token, hp.norm_eps),
            )?),
            StepShape::Matmul { format, k, n } => {
                let gemm = match GemmTilesContext::new(t, *format, *k, *n) {
                    Some(tiles) => self.add(KernelKind::MatmulGemm, tiles)?,
                    None => {
                        self.add(KernelKind::MatmulGemm, GemmContext::new(t, *format, *k, *n))?
                    }
                };
                let gemv = if decode {
                    vec![self.add(KernelKind::MatmulGemv, GemvContext::new(t, *format, *k, *n))?]
                } else {
                    Vec::new()
                };
                // The kernels staging the prefill operands for the vendor GEMM, where the
                // executor has one; the GEMM kernel stays last (the step's `Main` kernel).
                let mut prefill = Vec::new();
                if let Some(staging) = weight_staging(*format) {
                    prefill.push(self.add(
                        KernelKind::StageInput,
                        StageF16Context::new(t, GgmlType::F32, *k),
                    )?);
                    if staging == WeightStaging::Dequantize {
                        prefill.push(self.add(
                            KernelKind::StageWeights,
                            StageF16Context::new(t, *format, *k),
                        )?);
                    }
                }
                prefill.push(gemm);
                (gemv, prefill)
            }
            StepShape::Split { widths } => {
                if !(2..=3).contains(&widths.len()) {
                    return Err(CodegenError::Step {
                        step: step.name.clone(),
                        reason: format!("a split has 2 or 3 outputs, not {}", widths.len()),
                    });
                }
                same(self.add(KernelKind::Split, SplitContext::new(t, widths))?)
            }
            StepShape::Rope { width } => same(self.add(
                KernelKind::Rope,
                RopeContext::new(t, *width, hp.head_dim, hp.rope_base, hp.rope_style),
            )?),
            StepShape::Attention => {
                let store = self.add(
                    KernelKind::KvStore,
                    KvStoreContext::new(t, hp.n_kv_head * hp.head_dim, self.n_ctx),
                )?;
                let (decode, prefill) = self.attention(None)?;
                (vec![store, decode], vec![store, prefill])
            }
            StepShape::Add { width } => same(self.add(
                KernelKind::Add,
                ElementwiseContext::new(t, ElementwiseOp::Add, *width),
            )?),
            StepShape::SiluMul { width } => same(self.add(
                KernelKind::SiluMul,
                ElementwiseContext::new(t, ElementwiseOp::SiluMul, *width),
            )?),
        };
        Ok(StepKernels {
            step: step.name.clone(),
            decode,
            prefill,
        })
    }
}

fn fusion_error(steps: &[ShapedStep], fusion: &Fusion, reason: &str) -> CodegenError {
    CodegenError::Step {
        step: steps
            .get(fusion.first)
            .map_or_else(|| format!("step {}", fusion.first), |s| s.name.clone()),
        reason: format!("fused steps: {reason}"),
    }
}
