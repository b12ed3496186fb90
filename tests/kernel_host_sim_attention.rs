//! The tiled prefill attention (`attention_prefill_tiles`) executed on the host (tests/host_sim)
//! against the CPU engine's attention: NVIDIA through the scalar matrix-tile stand-in, AMD
//! through the lane-by-lane MFMA emulation (so the fragment layout code runs too). Shapes cover
//! head sizes 64, 96 and 128, groups of 7, 4, 3 and 1, token counts that are not a multiple of
//! the tile, prompts continued at pos0 > 0 and chunks ending at the context's end. Cache rows
//! past the prompt hold NaN: a kernel that multiplied them would fail. Cases with `growing`
//! keys (magnitudes rising with the position) make later chunks' scores exceed earlier maxima by
//! far, so the online softmax's rescaling of the output runs.
//!
//! Then the per-token kernel (`attention.hip.tera`, decode and prefill without a rope) over warps
//! that run 1 to 40 key steps, under 1, 4 and 16 splits, with key steps loaded 0, 1, 2 and 4
//! ahead (`kv_ahead`): the first RING = max(kv_ahead, 1) steps are loaded before the queries
//! (their rows below the position before the wait for the launch before), later ones RING steps
//! ahead of their arithmetic or (0) at their step, warps run fewer steps than the ring, as many
//! and more, and last steps leave slots idle. Decode launches with `split_steps` run a token
//! whose keys fit that many key steps in the first of their 16 splits alone (it writes the
//! output itself, the other blocks exit) and any longer one in all 16 (the last ones empty
//! where the keys run out): a token at exactly that many keys and one key past them, tokens
//! of one launch on both sides, the default's knobs on both sides. Decode grids run last block
//! to first, so that a merge by a split's index rather than by the ticket would fail.
//!
//! Then decode with the group's query heads shared out over `head_blocks` blocks per (token, KV
//! head, split), each attending for GROUP / head_blocks of them with its own queries, outputs,
//! partial results and arrival ticket: groups of 7 over 7 blocks, of 4 over 2 and 4, of 3 over
//! 3, in 1 split and in 16 under `split_steps` with a launch's tokens on both sides (one split
//! writing the output alone, all 16 merged), `kv_ahead` 0 and 2 (the default's knobs, a block per
//! query head, run among the launches under `split_steps` above). Every head of the group has
//! queries of its own, so a block attending for the wrong heads, writing or merging another
//! block's, or a ticket shared between the blocks of one split would fail.

mod host_cxx;
mod host_sim;

use half::f16;
use host_sim::{bytes_f32, f32_bytes, host_templates, i32_bytes, max_rel_err, Launch};
use rocmforge::backend::cpu::ops::{self, AttnShape};
use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::context::{OpContext, Tunable};
use rocmforge::codegen::ops::attention::{AttentionKnobs, AttentionPhase, AttentionShape};
use rocmforge::codegen::ops::AttentionContext;
use rocmforge::codegen::{KernelKind, KernelSpec, Renderer};
use rocmforge::util::rng::Rng;

/// Queries and attention weights are rounded to f16 for the matrix units (relative 2^-11
/// each); a wrong key, row or mask gives errors near 1.
const TOL: f32 = 2e-3;

const ARGS: &str = "(const float*)B[0], (const __half*)B[1], (const __half*)B[2], (float*)B[3], \
    (const int*)B[4], n_tokens";

struct Case {
    target: &'static str,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    n_ctx: usize,
    pos0: usize,
    n_tokens: usize,
    /// Keys scaled by 1 + j / 4 at position j and queries by 4, both rounded to f16 so that
    /// the large scores carry no rounding of the kernel's f16 queries (head size 64: SCALE is
    /// a power of two).
    growing: bool,
}

/// A case with keys and queries as drawn (not growing).
fn case(
    target: &'static str,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    n_ctx: usize,
    pos0: usize,
    n_tokens: usize,
) -> Case {
    Case {
        target,
        n_head,
        n_kv_head,
        head_dim,
        n_ctx,
        pos0,
        n_tokens,
        growing: false,
    }
}

/// Inputs and the CPU engine's output for one case.
struct Data {
    q: Vec<f32>,
    k_bytes: Vec<u8>,
    v_bytes: Vec<u8>,
    want: Vec<f32>,
}

impl Case {
    fn shape(&self) -> AttentionShape {
        AttentionShape {
            head_dim: self.head_dim,
            n_head: self.n_head,
            n_kv_head: self.n_kv_head,
            n_ctx: self.n_ctx,
        }
    }

    fn data(&self, rng: &mut Rng) -> Data {
        let kv_width = self.n_kv_head * self.head_dim;
        let filled = (self.pos0 + self.n_tokens) * kv_width;
        let growth = |i: usize| match self.growing {
            true => 1.0 + (i / kv_width) as f32 / 4.0,
            false => 1.0,
        };
        let mut cache = |grows: bool| {
            let values: Vec<f16> = (0..self.n_ctx * kv_width)
                .map(|i| {
                    if i < filled {
                        f16::from_f32(rng.normal() * if grows { growth(i) } else { 1.0 })
                    } else {
                        f16::NAN
                    }
                })
                .collect();
            let bytes: Vec<u8> = values.iter().flat_map(|h| h.to_le_bytes()).collect();
            let floats: Vec<f32> = values.iter().map(|h| h.to_f32()).collect();
            (bytes, floats)
        };
        let (k_bytes, k) = cache(true);
        let (v_bytes, v) = cache(false);
        let q: Vec<f32> = (0..self.n_tokens * self.n_head * self.head_dim)
            .map(|_| match self.growing {
                true => f16::from_f32(4.0 * rng.normal()).to_f32(),
                false => rng.normal(),
            })
            .collect();
        let mut want = vec![0f32; q.len()];
        let shape = AttnShape {
            n_head: self.n_head,
            n_kv_head: self.n_kv_head,
            head_dim: self.head_dim,
        };
        ops::attention(&q, &k, &v, shape, self.pos0, &mut want);
        Data {
            q,
            k_bytes,
            v_bytes,
            want,
        }
    }
}

/// Runs each case with the knobs `knobs(index, context)` gives (candidates or not; each must
/// validate) and returns the knobs (JSON) that ran, each checked against the CPU op.
fn check(
    name: &str,
    cases: &[Case],
    phase: AttentionPhase,
    knobs: impl Fn(usize, &AttentionContext) -> Vec<AttentionKnobs>,
) -> Vec<String> {
    let mut rng = Rng::new(21);
    let dir = host_templates(name);
    let renderer = Renderer::from_dir(&dir).unwrap();
    let mut launches = Vec::new();
    let mut expected = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let target = Target::parse(case.target).unwrap();
        let ctx = AttentionContext::new(&target, phase, case.shape(), 4);
        let data = case.data(&mut rng);
        for knobs in knobs(i, &ctx) {
            let ctx = ctx.with_knobs(&knobs);
            ctx.validate().unwrap();
            launches.push(Launch {
                spec: KernelSpec::new(KernelKind::Attention, &ctx, &renderer).unwrap(),
                n_tokens: case.n_tokens as u32,
                args: ARGS.to_string(),
                buffers: vec![
                    f32_bytes(&data.q),
                    data.k_bytes.clone(),
                    data.v_bytes.clone(),
                    vec![0; 4 * data.q.len()],
                    i32_bytes(&[case.pos0 as i32]),
                ],
            });
            expected.push(data.want.clone());
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(!launches.is_empty(), "no knobs for {name}");
    let ran = match phase {
        AttentionPhase::Decode => host_sim::run_reversed(name, &mut launches),
        AttentionPhase::Prefill => host_sim::run(name, &mut launches),
    };
    let Some(()) = ran else {
        return Vec::new();
    };
    for (l, want) in launches.iter().zip(&expected) {
        let err = max_rel_err(&bytes_f32(&l.buffers[3]), want);
        assert!(
            err < TOL,
            "{} {}: error {err}",
            l.spec.problem,
            l.spec.knobs_json
        );
    }
    launches.into_iter().map(|l| l.spec.knobs_json).collect()
}

/// Every tiled candidate on qwen2.5-0.5b's head shape (group 7, head size 64), a prompt
/// continued at position 5 over 29 tokens (no tile size divides it).
#[test]
fn every_tiled_prefill_candidate_matches_the_cpu() {
    let cases = [Case {
        target: "sm_90",
        n_head: 14,
        n_kv_head: 2,
        head_dim: 64,
        n_ctx: 48,
        pos0: 5,
        n_tokens: 29,
        growing: false,
    }];
    let ran = check(
        "attn-tiles-all",
        &cases,
        AttentionPhase::Prefill,
        |_, ctx| {
            let candidates = ctx.candidates().into_iter();
            candidates.filter(|k| k.tile_tokens > 0).collect()
        },
    );
    for knob in [
        "\"tile_tokens\":4",
        "\"tile_tokens\":16",
        "\"kv_chunk\":32",
        "\"kv_chunk\":64",
        "\"warps\":2",
        "\"warps\":8",
    ] {
        assert!(
            ran.is_empty() || ran.iter().any(|k| k.contains(knob)),
            "{knob}: {ran:?}"
        );
    }
}

/// The default and two other tilings (16 tokens, 32-key chunks, 8 warps; 4 tokens, 2 warps)
/// on other shapes and both vendors' tiles:
/// llama3's group of 4 at head size 128 from position 0 and 40 (keys past a chunk boundary),
/// phi3's head size 96 without grouping, a group of 3 filling the context to its last row.
#[test]
fn tiled_prefill_matches_the_cpu_across_shapes() {
    let growing = |target| Case {
        growing: true,
        ..case(target, 14, 2, 64, 96, 3, 70)
    };
    let cases = [
        case("sm_90", 8, 2, 128, 64, 0, 21),
        case("sm_90", 8, 2, 128, 80, 40, 9),
        case("sm_90", 2, 2, 96, 40, 3, 19),
        case("sm_90", 6, 2, 64, 40, 27, 13),
        case("gfx90a", 14, 2, 64, 48, 5, 29),
        case("gfx90a", 8, 2, 128, 80, 40, 9),
        case("gfx90a", 2, 2, 96, 40, 3, 19),
        growing("sm_90"),
        growing("gfx90a"),
    ];
    let ran = check(
        "attn-tiles-shapes",
        &cases,
        AttentionPhase::Prefill,
        |_, ctx| {
            let candidates = ctx.candidates().into_iter().enumerate();
            candidates
                .filter(|(i, k)| {
                    k.tile_tokens > 0
                        && (*i == 0
                            || *k == AttentionKnobs::tiled(16, 32, 8)
                            || *k == AttentionKnobs::tiled(4, 32, 2))
                })
                .map(|(_, k)| k)
                .collect()
        },
    );
    assert!(ran.is_empty() || ran.len() >= 2 * cases.len(), "{ran:?}");
}

/// Key steps loaded ahead: none (each step loads its own) and rings of 1, 2 and 4 steps.
const KV_AHEADS: [u32; 4] = [0, 1, 2, 4];

/// The per-token decode kernel with 2 warps, 1, 4 and 16 splits (all of them taking part:
/// `split_steps` 0), 1 and 4 splits with each `kv_ahead`, 16 (many blocks, slow on the host)
/// with 0 and 2 or 1 and 4 by turns: the ring does not depend on the split. qwen's heads on 32-lane warps take 8 keys per step of
/// 2 warps, so 38 keys are 5 steps of warp 0 in one split and 2 in splits of 10, 23 keys 3 steps,
/// 151 keys 5 steps in splits of 38 and 2 in splits of 10, and 320 keys 3 steps in splits of 20;
/// llama3's heads 4 keys per step (46 keys: 12 steps in one split, 3 in splits of 12); head size
/// 96 on 64-lane warps 8 (101 keys: 4 steps in splits of 26); and a single key at position 0
/// (the other 15 of 16 splits empty). So rings of 1, 2 and 4 steps see warps with fewer steps,
/// as many and more. Keys that grow with the position make later steps' scores exceed the
/// earlier maxima.
#[test]
fn per_token_decode_over_key_steps_matches_the_cpu() {
    let cases = [
        case("gfx1030", 14, 2, 64, 320, 0, 1),
        case("gfx1030", 14, 2, 64, 320, 37, 1),
        case("gfx1030", 14, 2, 64, 320, 20, 3),
        Case {
            growing: true,
            ..case("gfx1030", 14, 2, 64, 320, 149, 2)
        },
        case("gfx1030", 14, 2, 64, 320, 319, 1),
        case("sm_90", 8, 2, 128, 64, 45, 1),
        case("gfx90a", 8, 2, 96, 128, 100, 1),
    ];
    let ran = check(
        "attn-decode-steps",
        &cases,
        AttentionPhase::Decode,
        |i, _| {
            let sixteen: &[u32] = if i % 2 == 0 { &[0, 2] } else { &[1, 4] };
            [(1, &KV_AHEADS[..]), (4, &KV_AHEADS[..]), (16, sixteen)]
                .into_iter()
                .flat_map(|(splits, aheads)| {
                    let knobs = AttentionKnobs::per_token(2, splits);
                    aheads.iter().map(move |&a| knobs.clone().with_kv_ahead(a))
                })
                .collect()
        },
    );
    assert!(ran.is_empty() || ran.len() == 10 * cases.len(), "{ran:?}");
}

/// Keys per step of `knobs`' warps on `case`'s heads: a key takes the lanes that hold 8 of its
/// dimensions each, rounded up to a power of two.
fn keys_per_step(case: &Case, knobs: &AttentionKnobs) -> usize {
    let warp_size = Target::parse(case.target).unwrap().warp_size as usize;
    knobs.warps as usize * warp_size / (case.head_dim / 8).next_power_of_two()
}

/// For each token of `case` under `knobs`, its keys and the splits taking part: the kernel's
/// rule restated. One while the keys fit `split_steps` key steps, else all `kv_splits`
/// (`split_steps` 0: always all); nothing in between, since a step costs about a third of the
/// merge: a range either fits a few steps of one block or is cut as finely as the launch allows.
fn active_splits(case: &Case, knobs: &AttentionKnobs) -> Vec<(usize, usize)> {
    let one_split = knobs.split_steps as usize * keys_per_step(case, knobs);
    (0..case.n_tokens)
        .map(|t| {
            let n_keys = (case.pos0 + t + 1).min(case.n_ctx);
            match knobs.split_steps {
                s if s > 0 && n_keys <= one_split => (n_keys, 1),
                _ => (n_keys, knobs.kv_splits as usize),
            }
        })
        .collect()
}

/// Decode launches of 16 splits under `split_steps`, each with its knobs (between them every
/// `kv_ahead`).
/// qwen's heads take 8 keys per step of 2 warps: with splits of up to 4 steps, a token of 32
/// keys runs in one split (4 steps per warp) and one of 33 in all 16 splits of 3 keys (11 to 15
/// empty); up to 2 steps, growing keys, tokens of 15 to 18 keys take 1, 1, 16 and 16 splits (17
/// keys: splits of 2, the own row alone in split 8). llama3's (4 keys per step), up to 8 steps:
/// tokens of 31 to 34 keys take 1, 1, 16 and 16. The default (8 warps: 32 keys per step, up to 8
/// steps, 2 steps ahead, a block per query head): tokens of 256 keys in one split and 257 in 16
/// splits of 17 (the last of 2).
fn split_cases() -> Vec<(Case, AttentionKnobs)> {
    let two_warps = |split_steps, kv_ahead| {
        AttentionKnobs::per_token(2, 16)
            .with_kv_ahead(kv_ahead)
            .with_split_steps(split_steps)
    };
    let at_default = case("gfx1030", 14, 2, 64, 320, 255, 2);
    let target = Target::parse(at_default.target).unwrap();
    let decode = AttentionContext::new(&target, AttentionPhase::Decode, at_default.shape(), 4);
    vec![
        (case("gfx1030", 14, 2, 64, 320, 31, 1), two_warps(4, 4)),
        (case("gfx1030", 14, 2, 64, 320, 32, 1), two_warps(4, 4)),
        (
            Case {
                growing: true,
                ..case("gfx1030", 14, 2, 64, 320, 14, 4)
            },
            two_warps(2, 1),
        ),
        (case("sm_90", 8, 2, 128, 64, 30, 4), two_warps(8, 0)),
        (at_default, decode.knobs()),
    ]
}

/// Decode launches whose tokens run in one of their 16 splits or in all of them. The test checks
/// that its cases hold single tokens at exactly the keys one split serves and one key past them,
/// launches whose tokens take one split and all, the default's knobs on both sides, tokens whose
/// last splits are empty, and every `kv_ahead`.
#[test]
fn per_token_decode_in_one_split_or_all_matches_the_cpu() {
    let (cases, knobs): (Vec<Case>, Vec<AttentionKnobs>) = split_cases().into_iter().unzip();
    let default = AttentionKnobs::per_token(8, 16)
        .with_kv_ahead(2)
        .with_split_steps(8)
        .with_head_blocks(7);
    assert!(
        knobs.contains(&default),
        "the default's knobs changed: {knobs:?}"
    );
    assert!(knobs.iter().all(|k| k.kv_splits == 16 && k.split_steps > 0));
    let launches: Vec<_> = cases
        .iter()
        .zip(&knobs)
        .map(|(c, k)| (c, k, active_splits(c, k)))
        .collect();
    for (past, splits) in [(0, 1), (1, 16)] {
        assert!(
            launches.iter().any(|(c, k, a)| {
                let one_split = k.split_steps as usize * keys_per_step(c, k);
                a[..] == [(one_split + past, splits)]
            }),
            "no single token {past} keys past the most that one split serves"
        );
    }
    let straddles =
        |a: &[(usize, usize)]| a.iter().any(|&(_, n)| n == 1) && a.iter().any(|&(_, n)| n == 16);
    assert!(
        launches
            .iter()
            .any(|(c, _, a)| c.n_tokens >= 3 && straddles(a)),
        "no launch whose tokens take one split and all"
    );
    assert!(
        launches
            .iter()
            .any(|(_, k, a)| **k == default && straddles(a)),
        "no launch of the default's knobs on both sides"
    );
    assert!(
        launches
            .iter()
            .flat_map(|(_, _, a)| a)
            .any(|&(keys, n)| n == 16 && 15 * keys.div_ceil(16) >= keys),
        "no token whose last split is empty"
    );
    for kv_ahead in KV_AHEADS {
        assert!(
            knobs.iter().any(|k| k.kv_ahead == kv_ahead),
            "no case of kv_ahead {kv_ahead}"
        );
    }
    let ran = check(
        "attn-decode-splits",
        &cases,
        AttentionPhase::Decode,
        |i, _| vec![knobs[i].clone()],
    );
    assert!(ran.is_empty() || ran.len() == cases.len(), "{ran:?}");
}

/// Decode cases whose group's query heads are shared out over blocks: (case, `head_blocks`,
/// `split_steps` of its 16-split launches). Each launch holds a token of 32 keys and one of 33,
/// and its `split_steps` lets one split serve 32: the first runs in one split, the second in 16
/// (11 splits of 3, the last 5 empty). qwen's group of 7 (8 keys per step of 2 warps, growing
/// keys) over 7 blocks of one head; llama3's group of 4 at head size 128 (4 keys per step) over
/// 2 blocks of 2 heads and 4 of 1; a group of 3 on 64-lane warps (16 keys per step) over 3.
fn head_block_cases() -> Vec<(Case, u32, u32)> {
    vec![
        (
            Case {
                growing: true,
                ..case("gfx1030", 14, 2, 64, 320, 31, 2)
            },
            7,
            4,
        ),
        (case("sm_90", 8, 2, 128, 64, 31, 2), 2, 8),
        (case("sm_90", 8, 2, 128, 64, 31, 2), 4, 8),
        (case("gfx90a", 6, 2, 64, 64, 31, 2), 3, 2),
    ]
}

/// Decode launches with `head_blocks` over the cases above, with 2 warps in 1 split and in 16
/// under the case's `split_steps` (a token in one split, one in all), each with `kv_ahead` 0 and
/// 2. Each `head_blocks` is one the tuner tries. (The default's knobs, a block per head, run in
/// `per_token_decode_in_one_split_or_all_matches_the_cpu`.)
#[test]
fn per_token_decode_with_head_blocks_matches_the_cpu() {
    let mut cases = Vec::new();
    let mut knobs = Vec::new();
    for (c, head_blocks, split_steps) in head_block_cases() {
        let mut ours = Vec::new();
        for kv_ahead in [0, 2] {
            for (kv_splits, split_steps) in [(1, 0), (16, split_steps)] {
                ours.push(
                    AttentionKnobs::per_token(2, kv_splits)
                        .with_kv_ahead(kv_ahead)
                        .with_split_steps(split_steps)
                        .with_head_blocks(head_blocks),
                );
            }
        }
        cases.push(c);
        knobs.push(ours);
    }

    // What the cases are for: every group over as many blocks as heads, a group of 4 over 2,
    // each in one split and on both sides of `split_steps` in 16, each depth of loads ahead;
    // every `head_blocks` one the tuner tries.
    let group = |c: &Case| (c.n_head / c.n_kv_head) as u32;
    let both_sides = |c: &Case, k: &AttentionKnobs| {
        let a = active_splits(c, k);
        a.iter().any(|&(_, n)| n == 1) && a.iter().any(|&(_, n)| n == 16)
    };
    let ran_with = |f: &dyn Fn(&Case, &AttentionKnobs) -> bool| {
        cases
            .iter()
            .zip(&knobs)
            .any(|(c, ks)| ks.iter().any(|k| f(c, k)))
    };
    for (g, head_blocks) in [(7, 7), (4, 4), (4, 2), (3, 3)] {
        for kv_ahead in [0, 2] {
            let ours = |c: &Case, k: &AttentionKnobs| {
                (group(c), k.head_blocks, k.kv_ahead) == (g, head_blocks, kv_ahead)
            };
            assert!(
                ran_with(&|c, k| ours(c, k) && k.kv_splits == 1),
                "group {g} over {head_blocks} blocks: no launch in one split, kv_ahead {kv_ahead}"
            );
            assert!(
                ran_with(&|c, k| ours(c, k) && both_sides(c, k)),
                "group {g} over {head_blocks} blocks: no launch on both sides of split_steps, \
                 kv_ahead {kv_ahead}"
            );
        }
    }
    for (c, ks) in cases.iter().zip(&knobs) {
        let ctx = AttentionContext::new(
            &Target::parse(c.target).unwrap(),
            AttentionPhase::Decode,
            c.shape(),
            4,
        );
        let tried = ctx.candidates();
        for k in ks {
            assert!(
                k.head_blocks > 1 && tried.iter().any(|t| t.head_blocks == k.head_blocks),
                "{k:?}: not a head_blocks the tuner tries"
            );
        }
    }
    let n_launches: usize = knobs.iter().map(Vec::len).sum();
    let ran = check(
        "attn-decode-head-blocks",
        &cases,
        AttentionPhase::Decode,
        |i, _| knobs[i].clone(),
    );
    assert!(ran.is_empty() || ran.len() == n_launches, "{ran:?}");
    assert!(
        ran.iter().all(|k| k.contains("\"head_blocks\":")),
        "{ran:?}"
    );
}

/// The per-token prefill kernel (the one of targets without matrix tiles) with 2 warps and each
/// `kv_ahead`, over prompts whose last tokens' warps run 3 and 4 steps.
#[test]
fn per_token_prefill_over_key_steps_matches_the_cpu() {
    let cases = [
        Case {
            target: "gfx1030",
            n_head: 14,
            n_kv_head: 2,
            head_dim: 64,
            n_ctx: 32,
            pos0: 3,
            n_tokens: 20,
            growing: true,
        },
        Case {
            target: "sm_90",
            n_head: 8,
            n_kv_head: 2,
            head_dim: 128,
            n_ctx: 16,
            pos0: 0,
            n_tokens: 13,
            growing: false,
        },
    ];
    let ran = check(
        "attn-prefill-steps",
        &cases,
        AttentionPhase::Prefill,
        |_, _| {
            let knobs = KV_AHEADS.map(|a| AttentionKnobs::per_token(2, 1).with_kv_ahead(a));
            knobs.to_vec()
        },
    );
    assert!(ran.is_empty() || ran.len() == 4 * cases.len(), "{ran:?}");
}

/// Targets without matrix tiles keep the per-token prefill kernel; decode never tiles.
#[test]
fn tiles_are_offered_only_for_prefill_on_matrix_targets() {
    let shape = AttentionShape {
        head_dim: 64,
        n_head: 14,
        n_kv_head: 2,
        n_ctx: 512,
    };
    let tiled = |arch: &str, phase| {
        let ctx = AttentionContext::new(&Target::parse(arch).unwrap(), phase, shape, 4);
        (
            ctx.tile_tokens,
            ctx.candidates().iter().any(|k| k.tile_tokens > 0),
        )
    };
    assert_eq!(tiled("gfx1030", AttentionPhase::Prefill), (0, false));
    assert_eq!(tiled("sm_90", AttentionPhase::Decode), (0, false));
    assert_eq!(tiled("sm_90", AttentionPhase::Prefill), (8, true));
    assert_eq!(tiled("gfx90a", AttentionPhase::Prefill), (8, true));
    let ctx = AttentionContext::new(
        &Target::parse("sm_90").unwrap(),
        AttentionPhase::Prefill,
        shape,
        4,
    );
    assert_eq!(ctx.template(), "attention_prefill_tiles.hip.tera");
    assert!(ctx.matrix_tiles());
}
