//! Causal grouped-query attention over the f16 KV cache, flash-decoding style.

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
    /// Decode with the rotations fused in (`with_rope`): the kernel rotates q and the launch's new
    /// keys itself and stores the new keys and values in the cache, so no rope_store launch runs
    /// before it. The names are those of `rope_pair.hip.tera`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub style: Option<RotaryPairs>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionKnobs {
    pub warps: u32,
    pub kv_splits: u32,
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
        };
        ctx.with_knobs(&ctx.default_knobs())
    }

    /// The decode kernel that also does rope_store's work: q and the new keys rotated by `style`
    /// pairs with frequency base `base`, new keys and values stored in the cache.
    pub fn with_rope(self, style: RotaryPairs, base: f32) -> AttentionContext {
        AttentionContext {
            style: Some(style),
            base: Some(base),
            ..self
        }
    }

    /// Decode: 16 splits so that even two KV heads fill a large GPU, 8 warps per block (what
    /// `rocmforge tune` chose on an H200 for head sizes 64 and 128 at position 512, 1.17-1.27x
    /// over 4); prefill has a block per (KV head, token) already.
    fn default_knobs(&self) -> AttentionKnobs {
        match self.phase {
            AttentionPhase::Decode => AttentionKnobs {
                warps: 8,
                kv_splits: 16,
            },
            AttentionPhase::Prefill => AttentionKnobs {
                warps: 4,
                kv_splits: 1,
            },
        }
    }

    fn group(&self) -> usize {
        self.n_head / self.n_kv_head.max(1)
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
        "attention.hip.tera"
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
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (warps(self.target.warp_size, self.warps), 1, 1)
    }
    fn shared_bytes(&self) -> u32 {
        let per_warp = self.group() * (self.head_dim + 2);
        (4 * self.warps as usize * per_warp + if self.kv_splits > 1 { 4 } else { 0 }) as u32
    }
    fn grid_rule(&self) -> GridRule {
        GridRule {
            x: Extent::Fixed(self.n_kv_head as u32),
            y: Extent::per_token(1, 1),
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
        }
    }
    fn candidates(&self) -> Vec<AttentionKnobs> {
        let default = self.default_knobs();
        let mut list = vec![default.clone()];
        let splits: &[u32] = match self.phase {
            AttentionPhase::Decode => &[16, 8, 32, 4, 1],
            AttentionPhase::Prefill => &[1],
        };
        for &kv_splits in splits {
            for warps in [4, 2, 8] {
                list.push(AttentionKnobs { warps, kv_splits });
            }
        }
        valid_candidates(self, list)
    }
    fn with_knobs(&self, knobs: &AttentionKnobs) -> Self {
        AttentionContext {
            warps: knobs.warps,
            kv_splits: knobs.kv_splits,
            ..self.clone()
        }
    }
}
