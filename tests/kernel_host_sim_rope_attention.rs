//! Decode attention rotating q and k and storing k and v itself (`fused_rope`), executed on the
//! host (tests/host_sim) beside the two launches it replaces, rope_store then attention with the
//! same knobs: the caches it leaves and its output must be those of the pair bit for bit (the
//! same rotation expressions of rope_pair; the host build contracts no multiply-add), and both
//! must match the CPU engine's rope, f16 store and attention.
//!
//! Shapes: qwen2.5-0.5b (14/2 heads of 64, neox), llama3 (32/8 heads of 128, normal pairs) and
//! phi3's head size 96 (lanes past the head idle). Positions 0 and 1, inside a split, at a
//! split's first key, the context's last row, and launches of several tokens whose new rows
//! fall in one split or in several; 1, 4 and 16 splits; warps of 32 and 64 lanes. Cache rows
//! from the launch's first position on hold NaN before it runs, and the blocks run last to
//! first (later tokens before earlier ones), so a block that read another token's new row from
//! the cache instead of from what it staged itself would read NaN.

mod host_cxx;
mod host_sim;

use half::f16;
use host_sim::{bytes_f32, f32_bytes, host_templates, i32_bytes, max_rel_err, Launch};
use rocmforge::backend::cpu::ops::{self, AttnShape};
use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::Tunable;
use rocmforge::codegen::kernel_set::DECODE_MAX_TOKENS;
use rocmforge::codegen::ops::attention::{AttentionKnobs, AttentionPhase, AttentionShape};
use rocmforge::codegen::ops::rope::RotaryPairs;
use rocmforge::codegen::ops::{AttentionContext, RopeContext, RopeStoreContext};
use rocmforge::codegen::{KernelKind, KernelSpec, Renderer};
use rocmforge::plan::RopeStyle;
use rocmforge::util::rng::Rng;

const N_CTX: usize = 64;

const FUSED_ARGS: &str = "(const float*)B[0], (const float*)B[1], (const float*)B[2], \
    (__half*)B[3], (__half*)B[4], (float*)B[5], (const int*)B[6], n_tokens";
const ROPE_STORE_ARGS: &str = "(const float*)B[0], (const float*)B[1], (const float*)B[2], \
    (float*)B[3], (__half*)B[4], (__half*)B[5], (const int*)B[6], n_tokens";
const ATTENTION_ARGS: &str = "(const float*)B[0], (const __half*)B[1], (const __half*)B[2], \
    (float*)B[3], (const int*)B[4], n_tokens";

/// The kernel's angles (glibc's powf and sincosf) and the CPU's (Rust's) may differ in the last
/// bit, which can move a rotated key to the neighbouring f16: one f16 step (2^-11 relative) of
/// one key element. A wrong pair, position or row gives errors near 1.
const CACHE_TOL: f32 = 2e-3;
/// The output's share of that, plus f32 sums in another order.
const OUT_TOL: f32 = 5e-4;

#[derive(Debug, Clone, Copy)]
struct Case {
    target: &'static str,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    style: RotaryPairs,
    base: f32,
    pos0: usize,
    n_tokens: usize,
    warps: u32,
    kv_splits: u32,
}

const QWEN: Case = Case {
    target: "gfx1030",
    n_head: 14,
    n_kv_head: 2,
    head_dim: 64,
    style: RotaryPairs::Neox,
    base: 1_000_000.0,
    pos0: 0,
    n_tokens: 1,
    // Few threads: the host runs each as a thread of its own.
    warps: 2,
    kv_splits: 16,
};

const LLAMA3: Case = Case {
    target: "sm_90",
    n_head: 32,
    n_kv_head: 8,
    head_dim: 128,
    style: RotaryPairs::Normal,
    base: 500_000.0,
    ..QWEN
};

const HEAD_96: Case = Case {
    target: "gfx1030",
    n_head: 8,
    n_kv_head: 2,
    head_dim: 96,
    style: RotaryPairs::Neox,
    base: 10_000.0,
    ..QWEN
};

fn cases() -> Vec<Case> {
    vec![
        // Position 0: the only key is the token's own, in split 0; the other 15 splits are empty.
        QWEN,
        // Position 1 over 4 splits of one key each, the default's 8 warps.
        Case {
            target: "sm_90",
            pos0: 1,
            kv_splits: 4,
            warps: 8,
            ..QWEN
        },
        // 38 keys in splits of 3: the own row is the second of split 12.
        Case {
            target: "gfx90a",
            pos0: 37,
            ..QWEN
        },
        // The context's last row, one split.
        Case {
            pos0: N_CTX - 1,
            kv_splits: 1,
            ..QWEN
        },
        // 7 keys in splits of 2: the own row starts split 3.
        Case {
            pos0: 6,
            kv_splits: 4,
            ..LLAMA3
        },
        // Three tokens at 5, 6, 7: token 2's new rows are in two splits ([4, 6) and [6, 8)).
        Case {
            target: "gfx90a",
            pos0: 5,
            n_tokens: 3,
            kv_splits: 4,
            ..LLAMA3
        },
        // Four tokens over one split: later tokens attend to all earlier new rows.
        Case {
            pos0: 50,
            n_tokens: 4,
            kv_splits: 1,
            ..HEAD_96
        },
        // Two tokens whose new rows share split 10 ([20, 22)).
        Case {
            target: "sm_90",
            pos0: 20,
            n_tokens: 2,
            ..HEAD_96
        },
    ]
}

impl Case {
    fn target(&self) -> Target {
        Target::parse(self.target).unwrap()
    }

    fn q_width(&self) -> usize {
        self.n_head * self.head_dim
    }

    fn kv_width(&self) -> usize {
        self.n_kv_head * self.head_dim
    }

    /// The decode attention after this case's rope, with its knobs, fused or not.
    fn attention(&self, fused: bool, renderer: &Renderer) -> KernelSpec {
        let shape = AttentionShape {
            head_dim: self.head_dim,
            n_head: self.n_head,
            n_kv_head: self.n_kv_head,
            n_ctx: N_CTX,
        };
        let max = DECODE_MAX_TOKENS as usize;
        let ctx = AttentionContext::new(&self.target(), AttentionPhase::Decode, shape, max)
            .with_rope(self.style, self.base);
        let (kind, knobs) = match fused {
            true => (
                KernelKind::RopeAttention,
                AttentionKnobs::fused_rope(self.warps, self.kv_splits),
            ),
            false => (
                KernelKind::Attention,
                AttentionKnobs::per_token(self.warps, self.kv_splits),
            ),
        };
        assert!(ctx.candidates().contains(&knobs), "{self:?}: {knobs:?}");
        spec(kind, ctx.with_knobs(&knobs), renderer)
    }

    fn rope_store(&self, renderer: &Renderer) -> KernelSpec {
        let t = self.target();
        let rope = RopeContext::new(&t, self.q_width(), self.head_dim, self.base, self.style);
        spec(
            KernelKind::RopeStore,
            RopeStoreContext::new(&t, &rope, self.kv_width(), N_CTX),
            renderer,
        )
    }
}

fn spec<C: Tunable>(kind: KernelKind, ctx: C, renderer: &Renderer) -> KernelSpec {
    ctx.validate().unwrap();
    KernelSpec::new(kind, &ctx, renderer).unwrap()
}

fn launch(spec: KernelSpec, n_tokens: usize, args: &str, buffers: Vec<Vec<u8>>) -> Launch {
    Launch {
        spec,
        n_tokens: n_tokens as u32,
        args: args.to_string(),
        buffers,
    }
}

/// Inputs of one case: unrotated q, k, v of the launch's tokens and caches whose rows before
/// pos0 hold earlier keys and values and the rest NaN.
struct Inputs {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    k_cache: Vec<f16>,
    v_cache: Vec<f16>,
}

impl Inputs {
    fn new(case: &Case, rng: &mut Rng) -> Inputs {
        let mut randn = |n: usize| (0..n).map(|_| rng.normal()).collect::<Vec<f32>>();
        let n = case.n_tokens;
        let (q, k, v) = (
            randn(n * case.q_width()),
            randn(n * case.kv_width()),
            randn(n * case.kv_width()),
        );
        let filled = case.pos0 * case.kv_width();
        let mut cache = || -> Vec<f16> {
            let mut rows: Vec<f16> = randn(filled).into_iter().map(f16::from_f32).collect();
            rows.resize(N_CTX * case.kv_width(), f16::NAN);
            rows
        };
        let (k_cache, v_cache) = (cache(), cache());
        Inputs {
            q,
            k,
            v,
            k_cache,
            v_cache,
        }
    }

    /// The CPU engine's rope, f16 store and attention: the caches after the store, the output.
    fn expected(&self, case: &Case) -> (Vec<f16>, Vec<f16>, Vec<f32>) {
        let style = match case.style {
            RotaryPairs::Neox => RopeStyle::Neox,
            RotaryPairs::Normal => RopeStyle::Normal,
        };
        let (mut q, mut k) = (self.q.clone(), self.k.clone());
        let hd = case.head_dim;
        ops::rope(&mut q, case.q_width(), hd, case.pos0, case.base, style);
        ops::rope(&mut k, case.kv_width(), hd, case.pos0, case.base, style);
        let (mut k_cache, mut v_cache) = (self.k_cache.clone(), self.v_cache.clone());
        let at = case.pos0 * case.kv_width();
        for (i, (kx, vx)) in k.iter().zip(&self.v).enumerate() {
            k_cache[at + i] = f16::from_f32(*kx);
            v_cache[at + i] = f16::from_f32(*vx);
        }
        let floats = |c: &[f16]| c.iter().map(|h| h.to_f32()).collect::<Vec<f32>>();
        let shape = AttnShape {
            n_head: case.n_head,
            n_kv_head: case.n_kv_head,
            head_dim: hd,
        };
        let mut out = vec![0f32; q.len()];
        let (kf, vf) = (floats(&k_cache), floats(&v_cache));
        ops::attention(&q, &kf, &vf, shape, case.pos0, &mut out);
        (k_cache, v_cache, out)
    }
}

fn half_bytes(v: &[f16]) -> Vec<u8> {
    v.iter().flat_map(|h| h.to_le_bytes()).collect()
}

fn bytes_half(b: &[u8]) -> Vec<f16> {
    b.chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]))
        .collect()
}

/// Largest difference of the rows from pos0 on (the rows the launch writes), relative to their
/// largest magnitude; every earlier row must be untouched, bit for bit.
fn cache_error(case: &Case, got: &[u8], want: &[f16]) -> f32 {
    let from = 2 * case.pos0 * case.kv_width();
    let to = 2 * (case.pos0 + case.n_tokens) * case.kv_width();
    assert_eq!(got[..from], half_bytes(&want[..from / 2]), "{case:?}");
    assert!(
        bytes_half(&got[to..]).iter().all(|h| h.is_nan()),
        "{case:?}: rows past the launch's were written"
    );
    let floats = |h: &[f16]| h.iter().map(|x| x.to_f32()).collect::<Vec<f32>>();
    max_rel_err(
        &floats(&bytes_half(&got[from..to])),
        &floats(&want[from / 2..to / 2]),
    )
}

#[test]
fn decode_attention_with_fused_rope_matches_rope_store_then_attention() {
    let mut rng = Rng::new(41);
    let cases = cases();
    let inputs: Vec<Inputs> = cases.iter().map(|c| Inputs::new(c, &mut rng)).collect();
    let pos0 = |c: &Case| i32_bytes(&[c.pos0 as i32]);
    let renderer = Renderer::from_dir(&host_templates("rope_attention")).unwrap();

    // The fused kernels and the first of the pair (rope_store), then the attention of the pair
    // on what rope_store left.
    let mut first = Vec::new();
    for (c, x) in cases.iter().zip(&inputs) {
        let out = vec![0u8; 4 * x.q.len()];
        let (kc, vc) = (half_bytes(&x.k_cache), half_bytes(&x.v_cache));
        let (q, k, v) = (f32_bytes(&x.q), f32_bytes(&x.k), f32_bytes(&x.v));
        first.push(launch(
            c.attention(true, &renderer),
            c.n_tokens,
            FUSED_ARGS,
            vec![
                q.clone(),
                k.clone(),
                v.clone(),
                kc.clone(),
                vc.clone(),
                out.clone(),
                pos0(c),
            ],
        ));
        first.push(launch(
            c.rope_store(&renderer),
            c.n_tokens,
            ROPE_STORE_ARGS,
            vec![q, k, v, out, kc, vc, pos0(c)],
        ));
    }
    let Some(()) = host_sim::run_reversed("rope_attention", &mut first) else {
        return;
    };
    let mut second: Vec<Launch> = cases
        .iter()
        .zip(first.chunks(2))
        .map(|(c, pair)| {
            let stored = &pair[1].buffers;
            let out = vec![0u8; stored[3].len()];
            let buffers = vec![
                stored[3].clone(),
                stored[4].clone(),
                stored[5].clone(),
                out,
                pos0(c),
            ];
            launch(
                c.attention(false, &renderer),
                c.n_tokens,
                ATTENTION_ARGS,
                buffers,
            )
        })
        .collect();
    host_sim::run("rope_store_attention", &mut second).unwrap();

    for (((c, x), pair), unfused) in cases.iter().zip(&inputs).zip(first.chunks(2)).zip(&second) {
        let fused = &pair[0].buffers;
        let stored = &pair[1].buffers;
        assert!(
            fused[3] == stored[4] && fused[4] == stored[5],
            "{c:?}: the caches differ from rope_store's"
        );
        assert!(
            fused[5] == unfused.buffers[3],
            "{c:?}: the output differs from rope_store + attention's"
        );
        let (k_cache, v_cache, want) = x.expected(c);
        let k_err = cache_error(c, &fused[3], &k_cache);
        let v_err = cache_error(c, &fused[4], &v_cache);
        assert!(
            k_err < CACHE_TOL && v_err == 0.0,
            "{c:?}: cache {k_err} {v_err}"
        );
        let err = max_rel_err(&bytes_f32(&fused[5]), &want);
        assert!(err < OUT_TOL, "{c:?}: output error {err}");
    }
}
