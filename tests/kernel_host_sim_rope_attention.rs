//! Decode attention rotating q and k and storing k and v itself (`fused_rope`), executed on the
//! host (tests/host_sim) beside the two launches it replaces, rope_store then attention with the
//! same knobs: the caches it leaves and its output must be those of the pair bit for bit (the
//! same rotation expressions of rope_pair; the host build contracts no multiply-add), and both
//! must match the CPU engine's rope, f16 store and attention.
//!
//! Shapes: qwen2.5-0.5b (14/2 heads of 64, neox), llama3 (32/8 heads of 128, normal pairs) and
//! phi3's head size 96 (lanes past the head idle). Positions 0 and 1, inside a split, at a
//! split's first key, the context's last row, and launches of several tokens whose new rows
//! fall in one split or in several; 1, 4 and 16 splits; warps of 32 and 64 lanes; key steps
//! loaded 0, 1, 2 or 4 steps ahead of the arithmetic (`kv_ahead`: a ring of max(kv_ahead, 1)
//! steps' words, the first ring's cache rows below the position loaded before the rotations).
//! Cache rows from the launch's first position on hold NaN before it runs, and the blocks run
//! last to first (later tokens before earlier ones), so a block that read another token's new
//! row from the cache instead of from what it staged itself would read NaN.
//!
//! A second set of cases gives warps 1, 2, 3 and more key steps (the later ones loaded ahead or
//! at their step, a last step with idle slots) under 1, 4 and 16 splits, fewer steps than the
//! ring, as many and more, with this launch's rows in the first, a middle and the last step of
//! the warps that read them, each for every `kv_ahead`; the test checks that its cases cover all
//! of that.
//!
//! A third set launches 16 splits under `split_steps`: a token whose keys fit that many key
//! steps runs in the first split alone (it writes the output and stores the token's row itself,
//! without a merge; the other blocks exit), any longer one in all 16 (the last ones empty where
//! the keys run out). Single tokens at exactly that many keys and one key past them, launches
//! whose tokens fall on both sides, the default's knobs on both sides; the blocks running last
//! to first, a merge by a split's index rather than by the ticket would fail.
//!
//! A fourth set shares the group's query heads out over `head_blocks` blocks per (token, KV head,
//! split), each rotating and attending for GROUP / head_blocks of them (its own partial results
//! and arrival ticket), all of them rotating this launch's rows into their own shared copies and
//! only the block of the group's first heads storing the token's row: groups of 7 over 7 blocks,
//! of 4 over 2 and 4, of 3 over 3, each in 1 split and in 16 under `split_steps` with a launch's
//! tokens on both sides, `kv_ahead` 0 and 2; the unfused attention after rope_store with the same
//! `head_blocks`. A KV head's row that no block stored stays NaN and fails (the launch's rows
//! must be finite, equal rope_store's and the CPU's), as does one stored in another row.

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

const N_CTX: usize = 256;

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
    kv_ahead: u32,
    split_steps: u32,
    head_blocks: u32,
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
    kv_ahead: 1,
    split_steps: 0,
    head_blocks: 0,
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
        // Position 0: the only key is the token's own, in split 0; the other 15 splits are empty
        // (all take part: `split_steps` 0).
        QWEN,
        // Position 1 over 4 splits of one key each, the default's 8 warps.
        Case {
            target: "sm_90",
            pos0: 1,
            kv_splits: 4,
            warps: 8,
            kv_ahead: 0,
            ..QWEN
        },
        // 38 keys in splits of 3: the own row is the second of split 12.
        Case {
            target: "gfx90a",
            pos0: 37,
            kv_ahead: 2,
            ..QWEN
        },
        // The context's last row, one split.
        Case {
            pos0: N_CTX - 1,
            kv_splits: 1,
            kv_ahead: 4,
            ..QWEN
        },
        // 7 keys in splits of 2: the own row starts split 3.
        Case {
            pos0: 6,
            kv_splits: 4,
            kv_ahead: 0,
            ..LLAMA3
        },
        // Three tokens at 5, 6, 7: token 2's new rows are in two splits ([4, 6) and [6, 8)).
        Case {
            target: "gfx90a",
            pos0: 5,
            n_tokens: 3,
            kv_splits: 4,
            kv_ahead: 2,
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
            kv_ahead: 4,
            ..HEAD_96
        },
    ]
}

/// Key steps loaded ahead: none (each step loads its own) and rings of 1, 2 and 4 steps.
const KV_AHEADS: [u32; 4] = [0, 1, 2, 4];

/// Cases whose warps run 1, 2, 3 and more key steps under 1, 4 and 16 splits (head size 96 on
/// 32-lane warps: 2 keys per warp, 4 per step of 2 warps, as llama3's heads with a quarter of
/// its KV heads' blocks; qwen on 64-lane warps: 16 per step), and launches of 4 tokens whose new
/// rows fall in the first, a middle and the last step of a warp. Each with every `kv_ahead`,
/// except the 16-split cases of fewer than 4 steps (many blocks, slow on the host): 0 and 2 or
/// 1 and 4, by turns.
fn step_cases() -> Vec<Case> {
    let sm_90 = |kv_splits, pos0, n_tokens| Case {
        target: "sm_90",
        pos0,
        n_tokens,
        kv_splits,
        ..HEAD_96
    };
    let gfx1030 = |pos0, n_tokens| Case {
        target: "gfx1030",
        ..sm_90(16, pos0, n_tokens)
    };
    let wide = |kv_splits, pos0| Case {
        target: "gfx90a",
        pos0,
        kv_splits,
        ..QWEN
    };
    let (all, even, odd): (&[u32], &[u32], &[u32]) = (&KV_AHEADS, &[0, 2], &[1, 4]);
    let cases = [
        // One split: 3, 7, 10 and 18 keys (1, 2, 3 and 5 steps for warp 0).
        (sm_90(1, 2, 1), all),
        (sm_90(1, 6, 1), all),
        (sm_90(1, 9, 1), all),
        (sm_90(1, 17, 1), all),
        // Four splits of 4, 8, 11 and 16 keys.
        (sm_90(4, 13, 1), all),
        (sm_90(4, 29, 1), all),
        (sm_90(4, 41, 1), all),
        (sm_90(4, 60, 1), all),
        // Sixteen splits of 4, 7, 11 and 16 keys.
        (gfx1030(50, 1), even),
        (gfx1030(100, 1), odd),
        (gfx1030(170, 1), even),
        (gfx1030(250, 1), all),
        // 64-lane warps: 41 keys in one split (3 steps), 201 in splits of 51 (4 steps).
        (wide(1, 40), all),
        (wide(4, 200), all),
        // Four tokens: new rows in a 2-step warp's first step, and in a 3-step warp's middle.
        (sm_90(1, 1, 4), all),
        (sm_90(4, 32, 4), all),
        (gfx1030(61, 4), odd),
        (gfx1030(131, 4), even),
    ];
    cases
        .into_iter()
        .flat_map(|(c, aheads)| aheads.iter().map(move |&kv_ahead| Case { kv_ahead, ..c }))
        .collect()
}

/// Launches of 16 splits under `split_steps`, between them every `kv_ahead`. Head size 96 on
/// 32-lane warps takes 4 keys per step of 2 warps (16 of 8), qwen on 64-lane warps 16, llama3 4.
fn split_cases() -> Vec<Case> {
    let head_96 = |pos0| Case {
        pos0,
        split_steps: 4,
        kv_ahead: 0,
        ..HEAD_96
    };
    vec![
        // 16 keys, one split of up to 4 steps: 4 steps per warp, the block writes the output.
        head_96(15),
        // 17 keys: all 16 splits of 2, the own row alone in split 8, 9 to 15 empty; 2 steps
        // ahead.
        Case {
            kv_ahead: 2,
            ..head_96(16)
        },
        // Tokens of 15 to 18 keys, splits of up to one step: 1, 1, 16 and 16 splits (17 and 18
        // keys in splits of 2, 9 to 15 empty); token 3's new rows in splits 7 and 8.
        Case {
            target: "gfx90a",
            pos0: 14,
            n_tokens: 4,
            split_steps: 1,
            kv_ahead: 1,
            ..QWEN
        },
        // llama3's normal pairs, up to 2 steps: tokens of 7, 8 and 9 keys over 1, 1 and 16
        // splits (9 keys one each: token 2's new rows in splits 6, 7 and 8).
        Case {
            pos0: 6,
            n_tokens: 3,
            split_steps: 2,
            kv_ahead: 4,
            ..LLAMA3
        },
        // The default's knobs (8 warps, one step ahead at head size 96, up to 8 steps in one
        // split, a block per query head) on head size 96: tokens of 128 keys in one split and
        // 129 in 16 splits of 9 (both new rows in split 14, 15 empty).
        Case {
            target: "sm_90",
            pos0: 127,
            n_tokens: 2,
            warps: 8,
            split_steps: 8,
            kv_ahead: 1,
            head_blocks: 4,
            ..HEAD_96
        },
    ]
}

/// A group of 3: 6/2 heads of 64, normal pairs, on 64-lane warps (16 keys per step of 2 warps).
const GROUP_3: Case = Case {
    target: "gfx90a",
    n_head: 6,
    n_kv_head: 2,
    head_dim: 64,
    style: RotaryPairs::Normal,
    base: 10_000.0,
    ..QWEN
};

/// Launches whose group's heads are shared out over `head_blocks` blocks, each with 2 warps in 1
/// split and in 16 under `split_steps`, each with `kv_ahead` 0 and 2. Each launch holds tokens of
/// 16 and 17 keys and its `split_steps` lets one split serve 16: the first runs in one split
/// (the block writes the output and stores the row itself), the second in all 16 of 2 keys (9 to
/// 15 empty; its new rows in splits 7 and 8, the first's row read by blocks that do not store
/// it). qwen's group of 7 (neox pairs, 32-lane warps: 8 keys per step) over 7 blocks of one
/// head; head size 96's group of 4 (4 keys per step, lanes past the head idle) over 2 blocks of
/// 2 heads and 4 of 1; a group of 3 (normal pairs, 64-lane warps: 16 keys per step) over 3.
fn head_block_cases() -> Vec<Case> {
    let shared = |c: Case, head_blocks, split_steps| Case {
        pos0: 15,
        n_tokens: 2,
        head_blocks,
        split_steps,
        ..c
    };
    let shapes = [
        shared(QWEN, 7, 2),
        shared(
            Case {
                target: "sm_90",
                ..HEAD_96
            },
            2,
            4,
        ),
        shared(
            Case {
                target: "sm_90",
                ..HEAD_96
            },
            4,
            4,
        ),
        shared(GROUP_3, 3, 1),
    ];
    let mut cases = Vec::new();
    for c in shapes {
        for kv_ahead in [0, 2] {
            cases.push(Case {
                kv_splits: 1,
                split_steps: 0,
                kv_ahead,
                ..c
            });
            cases.push(Case {
                kv_splits: 16,
                kv_ahead,
                ..c
            });
        }
    }
    cases
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

    /// Keys a warp takes per key step: a key takes the lanes that hold 8 of its dimensions each,
    /// rounded up to a power of two.
    fn keys_per_warp(&self) -> usize {
        self.target().warp_size as usize / (self.head_dim / 8).next_power_of_two()
    }

    /// The most keys that one split serves alone: `split_steps` key steps of all warps.
    fn one_split_keys(&self) -> usize {
        self.split_steps as usize * self.warps as usize * self.keys_per_warp()
    }

    /// Token t's keys: the positions up to its own, at most the context.
    fn n_keys(&self, t: usize) -> usize {
        (self.pos0 + t + 1).min(N_CTX)
    }

    /// The decode attention problem after this case's rope, with its default knobs.
    fn context(&self) -> AttentionContext {
        let shape = AttentionShape {
            head_dim: self.head_dim,
            n_head: self.n_head,
            n_kv_head: self.n_kv_head,
            n_ctx: N_CTX,
        };
        let max = DECODE_MAX_TOKENS as usize;
        AttentionContext::new(&self.target(), AttentionPhase::Decode, shape, max)
            .with_rope(self.style, self.base)
    }

    /// The decode attention after this case's rope, with its knobs, fused or not.
    fn attention(&self, fused: bool, renderer: &Renderer) -> KernelSpec {
        let ctx = self.context();
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
        let knobs = knobs
            .with_kv_ahead(self.kv_ahead)
            .with_split_steps(self.split_steps)
            .with_head_blocks(self.head_blocks);
        // Not necessarily a candidate (the tuner crosses the depths and split sizes with the
        // default's geometry only, and 2 warps keep the host's threads few), but a geometry, a
        // depth, a split size and a share of the heads that the tuner tries.
        let candidates = ctx.candidates();
        let tried = |f: &dyn Fn(&AttentionKnobs) -> bool| candidates.iter().any(f);
        assert!(
            tried(&|k| (k.warps, k.kv_splits, k.fused_rope) == (self.warps, self.kv_splits, fused))
                && tried(&|k| k.kv_ahead == self.kv_ahead)
                && tried(&|k| k.split_steps == self.split_steps)
                && tried(&|k| k.head_blocks == self.head_blocks),
            "{self:?}: {knobs:?}"
        );
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
    // Every KV head's row of every token stored (an unstored one stays NaN).
    assert!(
        bytes_half(&got[from..to]).iter().all(|h| h.is_finite()),
        "{case:?}: rows of the launch left unstored"
    );
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

/// Runs the fused kernel of each case beside rope_store then the unfused attention, with the
/// case's knobs, and checks both against each other and the CPU engine.
fn check(name: &str, cases: &[Case]) {
    let mut rng = Rng::new(41);
    let inputs: Vec<Inputs> = cases.iter().map(|c| Inputs::new(c, &mut rng)).collect();
    let pos0 = |c: &Case| i32_bytes(&[c.pos0 as i32]);
    let templates = host_templates(name);
    let renderer = Renderer::from_dir(&templates).unwrap();
    std::fs::remove_dir_all(&templates).ok();

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
    let Some(()) = host_sim::run_reversed(name, &mut first) else {
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
    host_sim::run(&format!("{name}-unfused"), &mut second).unwrap();

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

#[test]
fn decode_attention_with_fused_rope_matches_rope_store_then_attention() {
    check("rope_attention", &cases());
}

/// Where a case puts this launch's rows: in the only step of a warp, or in the first, a middle
/// or the last of several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Only,
    First,
    Middle,
    Last,
}

/// What the kernel's partition makes of a case, restated: for each token the splits taking part
/// (one while its keys fit `split_steps` key steps of all warps, else all `kv_splits`; all for
/// `split_steps` 0; nothing in between, since a step costs about a third of the merge: a range
/// either fits a few steps of one block or is cut as finely as the launch allows) and their
/// ranges, and in those the key steps of every warp with keys, and where the launch's rows fall
/// in the steps of the warps that read them.
struct Geometry {
    active: Vec<usize>,
    steps: Vec<usize>,
    places: Vec<Place>,
}

fn geometry(c: &Case) -> Geometry {
    let keys_per_warp = c.keys_per_warp();
    let keys_per_step = c.warps as usize * keys_per_warp;
    let steps = |len: usize, warp: usize| (len - warp * keys_per_warp).div_ceil(keys_per_step);
    let mut g = Geometry {
        active: Vec::new(),
        steps: Vec::new(),
        places: Vec::new(),
    };
    for t in 0..c.n_tokens {
        let n_keys = c.n_keys(t);
        let splits = match c.split_steps {
            s if s > 0 && n_keys <= c.one_split_keys() => 1,
            _ => c.kv_splits as usize,
        };
        g.active.push(splits);
        let per_split = n_keys.div_ceil(splits);
        for begin in (0..splits).map(|s| s * per_split).filter(|&b| b < n_keys) {
            let len = per_split.min(n_keys - begin);
            for warp in (0..c.warps as usize).filter(|w| w * keys_per_warp < len) {
                g.steps.push(steps(len, warp));
            }
            for offset in (c.pos0..=c.pos0 + t).filter_map(|u| u.checked_sub(begin)) {
                if offset >= len {
                    continue;
                }
                let (step, warp) = (
                    offset / keys_per_step,
                    offset % keys_per_step / keys_per_warp,
                );
                g.places.push(match (steps(len, warp), step) {
                    (1, _) => Place::Only,
                    (_, 0) => Place::First,
                    (n, s) if s + 1 == n => Place::Last,
                    _ => Place::Middle,
                });
            }
        }
    }
    g
}

#[test]
fn decode_attention_over_several_key_steps_matches_the_cpu() {
    let cases = step_cases();
    // The cases cover what they are for, for each depth of loads ahead: warps of 1, 2, 3 and
    // more steps under each split count, of fewer steps than the ring, as many and more, and
    // this launch's rows in every place.
    for kv_ahead in KV_AHEADS {
        let ours: Vec<(u32, Geometry)> = cases
            .iter()
            .filter(|c| c.kv_ahead == kv_ahead)
            .map(|c| (c.kv_splits, geometry(c)))
            .collect();
        let any_warp = |splits: &[u32], f: &dyn Fn(usize) -> bool| {
            ours.iter()
                .any(|(s, g)| splits.contains(s) && g.steps.iter().any(|&n| f(n)))
        };
        for kv_splits in [1, 4, 16] {
            for steps in 1..=4 {
                assert!(
                    any_warp(&[kv_splits], &|n| n.min(4) == steps),
                    "no warp of {steps} steps over {kv_splits} splits (kv_ahead {kv_ahead})"
                );
            }
        }
        // A warp with keys runs at least one step: none has fewer than a ring of one.
        let ring = kv_ahead.max(1) as usize;
        let all = [1, 4, 16];
        assert!(
            any_warp(&all, &|n| n == ring)
                && any_warp(&all, &|n| n > ring)
                && (ring == 1 || any_warp(&all, &|n| n < ring)),
            "kv_ahead {kv_ahead}: no warp of fewer steps than the ring, as many or more"
        );
        for place in [Place::Only, Place::First, Place::Middle, Place::Last] {
            assert!(
                ours.iter().any(|(_, g)| g.places.contains(&place)),
                "no case with this launch's rows in a warp's {place:?} step (kv_ahead {kv_ahead})"
            );
        }
    }
    check("rope_attention_steps", &cases);
}

#[test]
fn decode_attention_in_one_split_or_all_matches_the_cpu() {
    let cases = split_cases();
    // Single tokens at exactly the keys one split serves and one key past them, launches whose
    // tokens take one split and all, the default's knobs on both sides, tokens whose last splits
    // are empty, and every depth of loads ahead.
    let active: Vec<Vec<usize>> = cases.iter().map(|c| geometry(c).active).collect();
    assert!(cases.iter().all(|c| c.kv_splits == 16 && c.split_steps > 0));
    for (past, splits) in [(0, 1), (1, 16)] {
        assert!(
            cases.iter().zip(&active).any(|(c, a)| {
                c.n_tokens == 1 && c.n_keys(0) == c.one_split_keys() + past && a[..] == [splits]
            }),
            "no single token {past} keys past the most that one split serves"
        );
    }
    let straddles = |a: &[usize]| a.contains(&1) && a.contains(&16);
    assert!(
        cases
            .iter()
            .zip(&active)
            .any(|(c, a)| c.n_tokens >= 3 && straddles(a)),
        "no launch whose tokens take one split and all"
    );
    let default = |c: &Case| {
        let ours = AttentionKnobs::fused_rope(c.warps, c.kv_splits)
            .with_kv_ahead(c.kv_ahead)
            .with_split_steps(c.split_steps)
            .with_head_blocks(c.head_blocks);
        c.context().knobs() == ours
    };
    assert!(
        cases
            .iter()
            .zip(&active)
            .any(|(c, a)| default(c) && straddles(a)),
        "no launch of the default's knobs on both sides"
    );
    assert!(
        cases.iter().zip(&active).any(|(c, a)| {
            let n_keys = (0..c.n_tokens).map(|t| c.n_keys(t));
            n_keys
                .zip(a)
                .any(|(keys, &n)| n == 16 && 15 * keys.div_ceil(16) >= keys)
        }),
        "no token whose last split is empty"
    );
    for kv_ahead in KV_AHEADS {
        assert!(
            cases.iter().any(|c| c.kv_ahead == kv_ahead),
            "no case of kv_ahead {kv_ahead}"
        );
    }
    check("rope_attention_splits", &cases);
}

#[test]
fn decode_attention_with_head_blocks_matches_the_cpu() {
    let cases = head_block_cases();
    // Every group over as many blocks as heads and a group of 4 over 2, each in one split and in
    // 16 with its tokens on both sides of `split_steps`, for each depth of loads ahead.
    let group = |c: &Case| (c.n_head / c.n_kv_head) as u32;
    for (g, head_blocks) in [(7, 7), (4, 4), (4, 2), (3, 3)] {
        for kv_ahead in [0, 2] {
            let ours = cases
                .iter()
                .filter(|c| (group(c), c.head_blocks, c.kv_ahead) == (g, head_blocks, kv_ahead));
            let active: Vec<Vec<usize>> = ours.map(|c| geometry(c).active).collect();
            assert!(
                active.iter().any(|a| a.iter().all(|&n| n == 1))
                    && active.iter().any(|a| a.contains(&1) && a.contains(&16)),
                "group {g} over {head_blocks} blocks, kv_ahead {kv_ahead}: no launch in one split \
                 or on both sides of split_steps"
            );
        }
    }
    check("rope_attention_head_blocks", &cases);
}
