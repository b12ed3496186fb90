//! Causal grouped-query attention over the f16 KV cache: flash-decoding style for decode and,
//! where the target has matrix tiles, a tiled prefill kernel (`attention_prefill_tiles`): a block
//! serves `tile_tokens` tokens times the whole query group of one KV head, staging each chunk of
//! `kv_chunk` keys in shared memory once for all of them and multiplying on 16x16 f16 tiles.
//! `tile_tokens = 0` is the per-token kernel (`attention.hip.tera`), which every target has; in
//! decode after a rope it may rotate q and k and store k and v itself (`fused_rope`).

use serde::Serialize;

use super::rope::RotaryPairs;
use super::warps;
use crate::codegen::compiler::Target;
use crate::codegen::context::{
    check_launch, require, valid_candidates, Extent, GridRule, OpContext, TargetConsts, Tunable,
};
use crate::codegen::error::CodegenError;

/// Head dimensions held per lane: one 16-byte load of halves.
const DIMS_PER_LANE: usize = 8;

/// The side of one matrix-unit tile.
const TILE: usize = 16;

/// Query rows (tokens x group) a tiled prefill block aims at by default: four 16-row tiles.
const DEFAULT_TILE_ROWS: usize = 64;

/// The per-token kernel's key steps loaded ahead: what the tuner tries (a ring of that many
/// steps' keys and values in registers) and the template's bound. The default is per head size
/// (`default_kv_ahead`).
const KV_AHEADS: [u32; 4] = [2, 1, 4, 0];
const MAX_KV_AHEAD: u32 = 8;

/// Decode ranges of up to this many key steps run in one split by default (every split beyond).
const DEFAULT_SPLIT_STEPS: u32 = 8;

/// The tiled prefill's tile sizes the tuner tries (tokens per block, keys per chunk).
const TILE_TOKENS: [u32; 4] = [8, 16, 32, 4];
const KV_CHUNKS: [u32; 2] = [64, 32];

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// Decode serves few tokens with many KV splits (the scratch of a split kernel holds this many
/// tokens); prefill serves any number of tokens with one split per block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionPhase {
    Decode,
    Prefill,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    pub phase: AttentionPhase,
    pub head_dim: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub n_ctx: usize,
    /// 1 / sqrt(head_dim).
    pub scale: f32,
    /// Tokens one launch may carry (sizes the split scratch); n_ctx for prefill.
    pub max_tokens: usize,
    pub warps: u32,
    /// Blocks sharing one (token, KV head) over disjoint key ranges, merged by the last to finish.
    pub kv_splits: u32,
    /// The rope before a decode attention that may rotate q and k itself (`with_rope`): pairs
    /// and frequency base, named as in `rope_pair.hip.tera`. Then the problem has candidates of
    /// both kinds (`fused_rope`), so that the tuner times one launch against rope_store + attention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<RotaryPairs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<f32>,
    /// The kernel rotates q and the launch's new keys itself and stores the new keys and values in
    /// the cache, so no rope_store launch runs before it (a different ABI: `KernelKind::RopeAttention`).
    /// Absent from the JSON when false, so that the other kernels keep their names.
    #[serde(skip_serializing_if = "is_false")]
    pub fused_rope: bool,
    /// Key steps the per-token kernel's loads run ahead of its arithmetic (a ring of that many
    /// steps' keys and values in registers); 0: each step loads its own. Absent from the JSON when
    /// 0, so that the other kernels keep their names.
    #[serde(skip_serializing_if = "is_zero")]
    pub kv_ahead: u32,
    /// Decode: a token's keys run in one split while they are at most this many key steps, in
    /// all `kv_splits` beyond (short ranges merge nothing). 0: always all. Absent from the JSON
    /// when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub split_steps: u32,
    /// Per-token kernel: blocks sharing one (token, KV head, split), each with an equal share of
    /// the group's query heads (0 or 1: one block for the whole group). Absent from the JSON when
    /// 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub head_blocks: u32,
    /// Whether the target has matrix tiles (the tiled prefill kernel is offered).
    #[serde(skip)]
    pub tiles_offered: bool,
    /// Tiled prefill: tokens per block (0: the per-token kernel) and keys per staged chunk.
    /// Absent from the JSON when 0, so the per-token and decode kernels keep their names.
    #[serde(skip_serializing_if = "is_zero")]
    pub tile_tokens: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub kv_chunk: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionKnobs {
    pub warps: u32,
    pub kv_splits: u32,
    /// Absent when 0 so that decode's candidate set (and its tuning results) stay as they were.
    #[serde(skip_serializing_if = "is_zero")]
    pub tile_tokens: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub kv_chunk: u32,
    /// Decode rotating and storing itself; absent when false, so that the candidate sets of
    /// attention without a rope to fuse (and their tuning results) stay as they were.
    #[serde(skip_serializing_if = "is_false")]
    pub fused_rope: bool,
    /// Key steps loaded ahead (per-token kernel); absent when 0, as before the knob.
    #[serde(skip_serializing_if = "is_zero")]
    pub kv_ahead: u32,
    /// Decode: key steps up to which one split serves a token; absent when 0: always all.
    #[serde(skip_serializing_if = "is_zero")]
    pub split_steps: u32,
    /// Per-token kernel: blocks per (token, KV head, split) dividing the group's heads; absent
    /// when 0 (one block), as before the knob.
    #[serde(skip_serializing_if = "is_zero")]
    pub head_blocks: u32,
}

impl AttentionKnobs {
    /// The per-token kernel's knobs (decode, or prefill without tiles).
    pub fn per_token(warps: u32, kv_splits: u32) -> AttentionKnobs {
        AttentionKnobs {
            warps,
            kv_splits,
            tile_tokens: 0,
            kv_chunk: 0,
            fused_rope: false,
            kv_ahead: 0,
            split_steps: 0,
            head_blocks: 0,
        }
    }

    /// These knobs with the key steps loaded `kv_ahead` steps ahead (0: at their step).
    pub fn with_kv_ahead(self, kv_ahead: u32) -> AttentionKnobs {
        AttentionKnobs { kv_ahead, ..self }
    }

    /// These knobs with one split serving ranges of at most `split_steps` key steps (0: never).
    pub fn with_split_steps(self, split_steps: u32) -> AttentionKnobs {
        AttentionKnobs {
            split_steps,
            ..self
        }
    }

    /// These knobs with the group's heads shared out over `head_blocks` blocks (0: one block).
    pub fn with_head_blocks(self, head_blocks: u32) -> AttentionKnobs {
        AttentionKnobs {
            head_blocks,
            ..self
        }
    }

    /// The decode kernel that rotates q and k and stores k and v itself.
    pub fn fused_rope(warps: u32, kv_splits: u32) -> AttentionKnobs {
        AttentionKnobs {
            fused_rope: true,
            ..AttentionKnobs::per_token(warps, kv_splits)
        }
    }

    /// The tiled prefill kernel's knobs.
    pub fn tiled(tile_tokens: u32, kv_chunk: u32, warps: u32) -> AttentionKnobs {
        AttentionKnobs {
            warps,
            kv_splits: 1,
            tile_tokens,
            kv_chunk,
            fused_rope: false,
            kv_ahead: 0,
            split_steps: 0,
            head_blocks: 0,
        }
    }
}

impl AttentionContext {
    pub fn new(
        target: &Target,
        phase: AttentionPhase,
        shape: AttentionShape,
        decode_max_tokens: usize,
    ) -> AttentionContext {
        let max_tokens = match phase {
            AttentionPhase::Decode => decode_max_tokens,
            AttentionPhase::Prefill => shape.n_ctx,
        };
        let ctx = AttentionContext {
            target: TargetConsts::of(target),
            phase,
            head_dim: shape.head_dim,
            n_head: shape.n_head,
            n_kv_head: shape.n_kv_head,
            n_ctx: shape.n_ctx,
            scale: 1.0 / (shape.head_dim as f32).sqrt(),
            max_tokens,
            warps: 0,
            kv_splits: 0,
            style: None,
            base: None,
            fused_rope: false,
            kv_ahead: 0,
            split_steps: 0,
            head_blocks: 0,
            tiles_offered: target.has_matrix_tiles(),
            tile_tokens: 0,
            kv_chunk: 0,
        };
        ctx.with_knobs(&ctx.default_knobs())
    }

    /// Decode attention after a rope of `style` pairs and frequency base `base`, which it may do
    /// itself (rotate q and the new keys, store the new keys and values): with the default knobs
    /// of that problem, fused where it fits.
    pub fn with_rope(self, style: RotaryPairs, base: f32) -> AttentionContext {
        let ctx = AttentionContext {
            style: Some(style),
            base: Some(base),
            ..self
        };
        ctx.with_knobs(&ctx.default_knobs())
    }

    /// Decode: 16 splits so that even two KV heads fill a large GPU, 8 warps per block (what
    /// `rocmforge tune` chose on an H200 for head sizes 64 and 128 at position 512, 1.17-1.27x
    /// over 4), rotating and storing itself after a rope where its shared memory fits (one launch
    /// per layer fewer: small models' decode is launch-bound), one block per query head (a decode
    /// block's time is the chain of its warps' per-head instructions: on an H200 at position 64,
    /// qwen2.5-0.5b's 4.72 us per call with the group of 7 in one block against 2.21 with a block
    /// per head, llama3-8b's 6.04 against 4.29; at 512, 6.78 against 4.18-4.52 and 7.32 against
    /// 6.79), ranges of up to eight key steps in one split (one block per head needs no merge for
    /// tg128's positions: llama3-8b at 64, 4.29 us against 7.41 for four steps per split) and
    /// key steps loaded ahead per `default_kv_ahead`. Prefill: the tiled kernel where offered,
    /// with blocks of about 64 query rows (tokens x group: 8 tokens of a group of 7 or 8, 16 of a
    /// group of 4), 64-key chunks where they fit in shared memory, else 32, 4 warps; not measured
    /// yet. Without tiles, a block per (KV head, token), 4 warps.
    fn default_knobs(&self) -> AttentionKnobs {
        match self.phase {
            AttentionPhase::Decode => {
                let group = self.group() as u32;
                let head_blocks = if group > 1 { group } else { 0 };
                let ahead = |k: AttentionKnobs| {
                    k.with_kv_ahead(self.default_kv_ahead())
                        .with_split_steps(DEFAULT_SPLIT_STEPS)
                        .with_head_blocks(head_blocks)
                };
                let fused = ahead(AttentionKnobs::fused_rope(8, 16));
                if self.style.is_some() && self.with_knobs(&fused).validate().is_ok() {
                    fused
                } else {
                    ahead(AttentionKnobs::per_token(8, 16))
                }
            }
            AttentionPhase::Prefill => {
                let rows_fit = (DEFAULT_TILE_ROWS / self.group().max(1)).max(1);
                // The largest power of two at most rows_fit.
                let tokens = 1u32 << rows_fit.ilog2();
                [64, 32]
                    .into_iter()
                    .map(|chunk| AttentionKnobs::tiled(tokens, chunk, 4))
                    .find(|k| self.with_knobs(k).validate().is_ok())
                    .unwrap_or(AttentionKnobs::per_token(4, 1))
            }
        }
    }

    /// Key steps a decode block loads ahead by default, with one block per query head: two for
    /// head size 64, one above. On an H200, llama3-8b (head size 128) with one step ahead took
    /// 6.79 us per call at position 512 against 9.22 with two, and 3.54 at 64; qwen2.5-0.5b
    /// (head size 64) with two took 2.21 at 64 (tg128's range) against 2.40 with one, and 4.52
    /// at 512 against 4.18.
    fn default_kv_ahead(&self) -> u32 {
        if self.head_dim <= 64 {
            2
        } else {
            1
        }
    }

    fn tiled(&self) -> bool {
        self.tile_tokens > 0
    }

    /// Shared memory of the tiled prefill (see attention_prefill_tiles.hip.tera): Q tile, the
    /// larger of the K chunk and the warps' patches, V^T chunk, scores, a float per row and a
    /// flag.
    fn tiled_shared_bytes(&self) -> usize {
        let rows = (self.tile_tokens as usize * self.group()).div_ceil(TILE) * TILE;
        let chunk = self.kv_chunk as usize;
        let q = rows * (self.head_dim + 8) * 2;
        let k = chunk * (self.head_dim + 8) * 2;
        let patches = self.warps as usize * TILE * (TILE + 4) * 4;
        let vt = self.head_dim * (chunk + 8) * 2;
        let scores = rows * (chunk + 4) * 4;
        q + k.max(patches) + vt + scores + rows * 4 + 16
    }

    fn group(&self) -> usize {
        self.n_head / self.n_kv_head.max(1)
    }

    /// Blocks per (token, KV head, split): `head_blocks`, at least one.
    fn head_blocks(&self) -> usize {
        self.head_blocks.max(1) as usize
    }

    /// Query heads each block attends for.
    fn heads_per_block(&self) -> usize {
        self.group() / self.head_blocks()
    }

    fn validate_tiles(&self) -> Result<(), CodegenError> {
        require(
            self.phase == AttentionPhase::Prefill && self.tiles_offered,
            self,
            || "tiled attention is a prefill kernel for targets with matrix tiles".to_string(),
        )?;
        require(
            self.head_dim.is_multiple_of(TILE)
                && self.kv_chunk > 0
                && (self.kv_chunk as usize).is_multiple_of(TILE),
            self,
            || {
                format!(
                    "tiled attention needs head_dim ({}) and kv_chunk ({}) multiples of 16",
                    self.head_dim, self.kv_chunk
                )
            },
        )
    }
}

/// The model sizes attention depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub head_dim: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub n_ctx: usize,
}

impl OpContext for AttentionContext {
    fn op(&self) -> &'static str {
        "attention"
    }
    fn template(&self) -> &'static str {
        if self.tiled() {
            "attention_prefill_tiles.hip.tera"
        } else {
            "attention.hip.tera"
        }
    }
    fn matrix_tiles(&self) -> bool {
        self.tiled()
    }
    fn problem(&self) -> String {
        let phase = match self.phase {
            AttentionPhase::Decode => "decode",
            AttentionPhase::Prefill => "prefill",
        };
        let rope = if self.style.is_some() { "+rope" } else { "" };
        format!(
            "attention {phase}{rope} head_dim={} heads={}/{} ctx={}",
            self.head_dim, self.n_head, self.n_kv_head, self.n_ctx
        )
    }
    fn validate(&self) -> Result<(), CodegenError> {
        require(
            self.n_kv_head > 0 && self.n_head.is_multiple_of(self.n_kv_head),
            self,
            || {
                format!(
                    "{} query heads do not form whole groups over {} KV heads",
                    self.n_head, self.n_kv_head
                )
            },
        )?;
        // Lanes per key are rounded up to a power of two in the template; they must fit a warp.
        let lanes = (self.head_dim / DIMS_PER_LANE).next_power_of_two();
        require(
            self.head_dim > 0
                && self.head_dim.is_multiple_of(DIMS_PER_LANE)
                && lanes <= self.target.warp_size as usize,
            self,
            || {
                format!(
                    "head_dim {} must be a multiple of 8 with at most 8 x the warp size rounded up to a power of two",
                    self.head_dim
                )
            },
        )?;
        require(
            self.n_ctx > 0 && self.n_ctx <= i32::MAX as usize,
            self,
            || format!("context {} out of range", self.n_ctx),
        )?;
        require(self.max_tokens >= 1, self, || {
            "max_tokens must be at least 1".to_string()
        })?;
        require(self.warps >= 1 && self.kv_splits >= 1, self, || {
            "warps and kv_splits must be at least 1".to_string()
        })?;
        require(
            self.phase == AttentionPhase::Decode || self.kv_splits == 1,
            self,
            || "prefill attention has no split scratch: kv_splits must be 1".to_string(),
        )?;
        require(
            self.phase == AttentionPhase::Decode || self.style.is_none(),
            self,
            || "only decode attention rotates q and k itself".to_string(),
        )?;
        require(
            !self.fused_rope || (self.style.is_some() && self.base.is_some()),
            self,
            || "fused_rope needs the rope's pairs and base".to_string(),
        )?;
        require(
            (self.kv_ahead == 0 && self.split_steps == 0) || !self.tiled(),
            self,
            || {
                "kv_ahead and split_steps are knobs of the per-token kernel, not of the tiled one"
                    .to_string()
            },
        )?;
        require(
            self.split_steps == 0 || self.phase == AttentionPhase::Decode,
            self,
            || "split_steps is a knob of decode (prefill has one split)".to_string(),
        )?;
        require(
            self.head_blocks <= 1
                || (!self.tiled() && self.group().is_multiple_of(self.head_blocks())),
            self,
            || {
                format!(
                    "head_blocks {} must divide the group of {} query heads (per-token kernel only)",
                    self.head_blocks,
                    self.group()
                )
            },
        )?;
        require(self.kv_ahead <= MAX_KV_AHEAD, self, || {
            format!("kv_ahead {} above {MAX_KV_AHEAD}", self.kv_ahead)
        })?;
        if self.tiled() {
            self.validate_tiles()?;
        }
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (warps(self.target.warp_size, self.warps), 1, 1)
    }
    fn shared_bytes(&self) -> u32 {
        if self.tiled() {
            return self.tiled_shared_bytes() as u32;
        }
        let per_warp = self.heads_per_block() * (self.head_dim + 2);
        // Rotated queries of the block's heads; cosines and sines of half a head, and keys and
        // values, per token of the launch.
        let rope = match self.fused_rope {
            true => self.head_dim * (self.heads_per_block() + 3 * self.max_tokens),
            false => 0,
        };
        let scratch = 4 * (self.warps as usize * per_warp + rope);
        (scratch + if self.kv_splits > 1 { 4 } else { 0 }) as u32
    }
    fn grid_rule(&self) -> GridRule {
        GridRule {
            x: Extent::Fixed((self.n_kv_head * self.head_blocks()) as u32),
            y: Extent::per_token(1, self.tile_tokens.max(1)),
            z: Extent::Fixed(self.kv_splits),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

impl Tunable for AttentionContext {
    type Knobs = AttentionKnobs;
    fn knobs(&self) -> AttentionKnobs {
        AttentionKnobs {
            warps: self.warps,
            kv_splits: self.kv_splits,
            tile_tokens: self.tile_tokens,
            kv_chunk: self.kv_chunk,
            fused_rope: self.fused_rope,
            kv_ahead: self.kv_ahead,
            split_steps: self.split_steps,
            head_blocks: self.head_blocks,
        }
    }
    fn candidates(&self) -> Vec<AttentionKnobs> {
        let default = self.default_knobs();
        let mut list = vec![default.clone()];
        let (splits, split_steps_tried): (&[u32], &[u32]) = match self.phase {
            AttentionPhase::Decode => (&[16, 8, 32, 4, 1], &[4, 2, 8, 1, 0]),
            AttentionPhase::Prefill => (&[1], &[0]),
        };
        // After a rope: the default's geometry unfused first, so that even a short budget times
        // the one launch against the two. Then the default's geometry with every depth of loads
        // ahead and every least split size, then every geometry with the default's depth, split
        // size and head blocks (fused and not).
        let rope = self.style.is_some();
        if rope {
            list.push(AttentionKnobs {
                fused_rope: false,
                ..default.clone()
            });
        }
        if default.tile_tokens == 0 {
            for kv_ahead in KV_AHEADS {
                for &split_steps in split_steps_tried {
                    list.push(
                        default
                            .clone()
                            .with_kv_ahead(kv_ahead)
                            .with_split_steps(split_steps),
                    );
                }
            }
        }
        let tuned = |k: AttentionKnobs| {
            k.with_kv_ahead(default.kv_ahead)
                .with_split_steps(default.split_steps)
                .with_head_blocks(default.head_blocks)
        };
        for &kv_splits in splits {
            for warps in [4, 2, 8] {
                if rope {
                    list.push(tuned(AttentionKnobs::fused_rope(warps, kv_splits)));
                }
                list.push(tuned(AttentionKnobs::per_token(warps, kv_splits)));
            }
        }
        // The group's heads in one block (0) and shared out over every other divisor of the
        // group: the default's geometry with each least split size and depth of loads ahead,
        // and with 4 warps.
        if self.phase == AttentionPhase::Decode && default.tile_tokens == 0 {
            let group = self.group() as u32;
            let others = (2..=group).filter(|d| group.is_multiple_of(*d));
            for head_blocks in std::iter::once(0).chain(others) {
                let shared = default.clone().with_head_blocks(head_blocks);
                for &split_steps in split_steps_tried {
                    list.push(shared.clone().with_split_steps(split_steps));
                }
                for kv_ahead in KV_AHEADS {
                    list.push(shared.clone().with_kv_ahead(kv_ahead));
                }
                list.push(AttentionKnobs {
                    warps: 4,
                    ..shared.clone()
                });
            }
        }
        if self.phase == AttentionPhase::Prefill {
            for tokens in TILE_TOKENS {
                for chunk in KV_CHUNKS {
                    for warps in [4, 2, 8] {
                        list.push(AttentionKnobs::tiled(tokens, chunk, warps));
                    }
                }
            }
        }
        valid_candidates(self, list)
    }
    fn with_knobs(&self, knobs: &AttentionKnobs) -> Self {
        AttentionContext {
            warps: knobs.warps,
            kv_splits: knobs.kv_splits,
            tile_tokens: knobs.tile_tokens,
            kv_chunk: knobs.kv_chunk,
            fused_rope: knobs.fused_rope,
            kv_ahead: knobs.kv_ahead,
            split_steps: knobs.split_steps,
            head_blocks: knobs.head_blocks,
            ..self.clone()
        }
    }
}
