//! The fused decode GEMV run by the host simulator against the CPU engine's unfused ops composed
//! in program order (`FusedCase`): an RMSNorm prologue over up to three weights of different
//! formats, with a residual add (in place) or silu_mul epilogue.

use super::{bytes_f32, f32_bytes, max_rel_err, run, Launch, Q8x};
use rocmforge::backend::cpu::ops;
use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::Tunable;
use rocmforge::codegen::ops::matmul::{GemvEpilogue, GemvKnobs, GemvSegment};
use rocmforge::codegen::ops::GemvContext;
use rocmforge::codegen::{KernelKind, KernelSpec, Renderer};
use rocmforge::gguf::{quantize, GgmlType};
use rocmforge::util::rng::Rng;

/// f32 sums in another order, and the norm's scale applied to x before the dot instead of after.
const TOL: f32 = 5e-5;
/// Int8 x after the norm prologue, against the CPU ops with the normalized x rounded through q8_1:
/// the kernel's normalized x differs from the CPU's in the last bits, so a value at a rounding
/// midpoint may round to the neighbouring level (one step d = max|x| / 127 of its block), moving
/// an output by about |w| d, under 5e-3 of the largest output at these sizes. A weight paired
/// with the wrong x value is off by the order of the output itself.
const INT8_NORM_TOL: f32 = 5e-3;
const EPS: f32 = 1e-5;

fn spec<C: Tunable>(kind: KernelKind, ctx: C) -> KernelSpec {
    ctx.validate().unwrap();
    KernelSpec::new(kind, &ctx, &Renderer::embedded().unwrap()).unwrap()
}

fn randn(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal()).collect()
}

struct Weight {
    format: GgmlType,
    n: usize,
    bytes: Vec<u8>,
    bias: Option<Vec<f32>>,
}

pub struct FusedCase {
    k: usize,
    tokens: usize,
    weights: Vec<Weight>,
    x: Vec<f32>,
    norm: Option<Vec<f32>>,
    epilogue: GemvEpilogue,
    /// The residual (read and written in place with the Residual epilogue).
    residual: Vec<f32>,
    knobs: Option<GemvKnobs>,
}

impl FusedCase {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        rng: &mut Rng,
        k: usize,
        tokens: usize,
        segments: &[(GgmlType, usize, bool)],
        norm: bool,
        epilogue: GemvEpilogue,
        knobs: Option<GemvKnobs>,
    ) -> FusedCase {
        let weights = segments
            .iter()
            .map(|&(format, n, bias)| Weight {
                format,
                n,
                bytes: quantize::random_blocks(format, k * n, rng, 1.0),
                bias: bias.then(|| randn(rng, n)),
            })
            .collect();
        let x = randn(rng, k * tokens);
        let norm = norm.then(|| randn(rng, k));
        let residual = randn(rng, segments[0].1 * tokens);
        FusedCase {
            k,
            tokens,
            weights,
            x,
            norm,
            epilogue,
            residual,
            knobs,
        }
    }

    pub fn context(&self, target: &Target) -> GemvContext {
        let segments = self
            .weights
            .iter()
            .map(|w| GemvSegment::new(w.format, w.n))
            .collect();
        let norm_eps = self.norm.as_ref().map(|_| EPS);
        let ctx = GemvContext::fused(target, self.k, segments, norm_eps, self.epilogue);
        self.knobs
            .as_ref()
            .map_or(ctx.clone(), |k| ctx.with_knobs(k))
    }

    /// Buffers B[0..13] in the ABI's order (empty where the slot is null) and the argument list.
    fn launch(&self, target: &Target) -> Launch {
        let mut buffers: Vec<Vec<u8>> = Vec::new();
        let mut args: Vec<String> = Vec::new();
        let mut slot = |bytes: Option<Vec<u8>>, ty: &str| match bytes {
            Some(b) => {
                args.push(format!("({ty}*)B[{}]", buffers.len()));
                buffers.push(b);
            }
            None => {
                args.push("nullptr".to_string());
                buffers.push(Vec::new());
            }
        };
        for i in 0..3 {
            slot(
                self.weights.get(i).map(|w| w.bytes.clone()),
                "const unsigned char",
            );
        }
        for i in 0..3 {
            let bias = self.weights.get(i).and_then(|w| w.bias.as_deref());
            slot(bias.map(f32_bytes), "const float");
        }
        slot(Some(f32_bytes(&self.x)), "const float");
        slot(self.norm.as_deref().map(f32_bytes), "const float");
        let residual = self.epilogue == GemvEpilogue::Residual;
        // The residual epilogue runs in place: residual and out0 are the same buffer (slot 8).
        slot(residual.then(|| f32_bytes(&self.residual)), "const float");
        let outputs = match self.epilogue {
            GemvEpilogue::SiluMul => 1,
            _ => self.weights.len(),
        };
        for i in 0..3 {
            if i == 0 && residual {
                // Written in place of B[8]: an empty buffer here, its argument rewritten below.
                slot(None, "float");
                continue;
            }
            let out = (i < outputs).then(|| vec![0u8; 4 * self.weights[i].n * self.tokens]);
            slot(out, "float");
        }
        if residual {
            args[9] = "(float*)B[8]".to_string();
        }
        args.push("n_tokens".to_string());
        Launch {
            spec: spec(KernelKind::MatmulGemv, self.context(target)),
            n_tokens: self.tokens as u32,
            args: args.join(", "),
            buffers,
        }
    }

    /// The CPU ops in program order; one vector per output buffer slot (9.. or 8 in place). With
    /// `x_int8` the matmuls take the (normalized) x rounded through q8_1, as the kernel stages it.
    fn expected(&self, x_int8: bool) -> Vec<(usize, Vec<f32>)> {
        let xn = match &self.norm {
            Some(w) => {
                let mut out = vec![0f32; self.x.len()];
                ops::rmsnorm(&self.x, w, EPS, &mut out);
                out
            }
            None => self.x.clone(),
        };
        let xn = if x_int8 {
            Q8x::new(&xn).dequantized()
        } else {
            xn
        };
        let products: Vec<Vec<f32>> = self
            .weights
            .iter()
            .map(|w| {
                let mut out = vec![0f32; w.n * self.tokens];
                ops::matmul(
                    &w.bytes,
                    w.format,
                    self.k,
                    w.n,
                    &xn,
                    w.bias.as_deref(),
                    &mut out,
                );
                out
            })
            .collect();
        match self.epilogue {
            GemvEpilogue::Store => products
                .into_iter()
                .enumerate()
                .map(|(i, p)| (9 + i, p))
                .collect(),
            GemvEpilogue::Residual => {
                let mut out = vec![0f32; products[0].len()];
                ops::add(&self.residual, &products[0], &mut out);
                vec![(8, out)]
            }
            GemvEpilogue::SiluMul => {
                let mut out = vec![0f32; products[0].len()];
                ops::silu_mul(&products[0], &products[1], &mut out);
                vec![(9, out)]
            }
        }
    }
}

/// Runs `cases` on `target` and checks them; `name` names the host build's folder, one per test
/// (tests run in parallel).
pub fn check(name: &str, target: &str, cases: &[FusedCase]) {
    let t = Target::parse(target).unwrap();
    let mut launches: Vec<Launch> = cases.iter().map(|c| c.launch(&t)).collect();
    let Some(()) = run(&format!("{name}-{target}"), &mut launches) else {
        return;
    };
    for (case, l) in cases.iter().zip(&launches) {
        let x_int8 = case.context(&t).x_int8;
        let tol = if x_int8 && case.norm.is_some() {
            INT8_NORM_TOL
        } else {
            TOL
        };
        for (slot, want) in case.expected(x_int8) {
            let err = max_rel_err(&bytes_f32(&l.buffers[slot]), &want);
            assert!(
                err < tol,
                "{} {} slot {slot}: error {err}",
                l.spec.problem,
                l.spec.knobs_json
            );
        }
    }
}
