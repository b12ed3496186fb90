//! Rotary position embedding (in place), the KV-cache store that follows it, and both fused
//! (`rope_store`: rotate q and k, store k and v).

use serde::Serialize;

use crate::codegen::compiler::Target;
use crate::codegen::context::{
    check_launch, require, valid_candidates, Extent, GridRule, OpContext, TargetConsts, Tunable,
};
use crate::codegen::error::CodegenError;

/// Which elements of a head rotate together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RotaryPairs {
    /// llama.cpp NORM: (2i, 2i + 1).
    Normal,
    /// GPT-NeoX: (i, i + head_dim / 2).
    Neox,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RopeContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    /// Values per token: n_heads * head_dim.
    pub width: usize,
    pub head_dim: usize,
    pub base: f32,
    pub style: RotaryPairs,
    pub threads: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadsKnob {
    pub threads: u32,
}

/// `Tunable` for a context whose only knob is its `threads` field, candidates the valid ones of
/// `counts` (the first is the default).
macro_rules! threads_tunable {
    ($ctx:ident, $counts:expr) => {
        impl Tunable for $ctx {
            type Knobs = ThreadsKnob;
            fn knobs(&self) -> ThreadsKnob {
                ThreadsKnob {
                    threads: self.threads,
                }
            }
            fn candidates(&self) -> Vec<ThreadsKnob> {
                let counts: &[u32] = &$counts;
                valid_candidates(
                    self,
                    counts
                        .iter()
                        .map(|&threads| ThreadsKnob { threads })
                        .collect(),
                )
            }
            fn with_knobs(&self, knobs: &ThreadsKnob) -> Self {
                $ctx {
                    threads: knobs.threads,
                    ..self.clone()
                }
            }
        }
    };
}

impl RopeContext {
    pub fn new(
        target: &Target,
        width: usize,
        head_dim: usize,
        base: f32,
        style: RotaryPairs,
    ) -> RopeContext {
        RopeContext {
            target: TargetConsts::of(target),
            width,
            head_dim,
            base,
            style,
            threads: 128,
        }
    }
}

impl OpContext for RopeContext {
    fn op(&self) -> &'static str {
        "rope"
    }
    fn template(&self) -> &'static str {
        "rope.hip.tera"
    }
    fn problem(&self) -> String {
        format!("rope width={} head_dim={}", self.width, self.head_dim)
    }
    fn validate(&self) -> Result<(), CodegenError> {
        require(
            self.head_dim >= 2 && self.head_dim.is_multiple_of(2),
            self,
            || format!("head_dim {} is not even", self.head_dim),
        )?;
        require(
            self.width > 0 && self.width.is_multiple_of(self.head_dim),
            self,
            || {
                format!(
                    "width {} is not a whole number of {}-wide heads",
                    self.width, self.head_dim
                )
            },
        )?;
        require(self.base.is_finite() && self.base > 0.0, self, || {
            format!("rope base {} is not positive", self.base)
        })?;
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (self.threads, 1, 1)
    }
    fn shared_bytes(&self) -> u32 {
        0
    }
    fn grid_rule(&self) -> GridRule {
        let y = (self.width / 2).div_ceil(self.threads as usize) as u32;
        GridRule {
            x: Extent::per_token(1, 1),
            y: Extent::Fixed(y),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

threads_tunable!(RopeContext, [128, 64, 256]);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KvStoreContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    /// Values per cache row: n_kv_head * head_dim.
    pub kv_width: usize,
    /// Cache rows; writes at or past it are dropped.
    pub n_ctx: usize,
    pub threads: u32,
}

impl KvStoreContext {
    pub fn new(target: &Target, kv_width: usize, n_ctx: usize) -> KvStoreContext {
        KvStoreContext {
            target: TargetConsts::of(target),
            kv_width,
            n_ctx,
            threads: 256,
        }
    }
}

impl OpContext for KvStoreContext {
    fn op(&self) -> &'static str {
        "kv_store"
    }
    fn template(&self) -> &'static str {
        "kv_store.hip.tera"
    }
    fn problem(&self) -> String {
        format!("kv_store width={} ctx={}", self.kv_width, self.n_ctx)
    }
    fn validate(&self) -> Result<(), CodegenError> {
        require(self.kv_width > 0 && self.n_ctx > 0, self, || {
            "empty cache".to_string()
        })?;
        require(self.n_ctx <= i32::MAX as usize, self, || {
            format!("context {} does not fit an int position", self.n_ctx)
        })?;
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (self.threads, 1, 1)
    }
    fn shared_bytes(&self) -> u32 {
        0
    }
    fn grid_rule(&self) -> GridRule {
        let y = self.kv_width.div_ceil(self.threads as usize) as u32;
        GridRule {
            x: Extent::per_token(1, 1),
            y: Extent::Fixed(y),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

threads_tunable!(KvStoreContext, [256, 128, 512]);

/// Rotate q (into `q_out`) and k, store k and v in the caches: rope, rope and kv_store in one launch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RopeStoreContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    /// n_head * head_dim.
    pub q_width: usize,
    /// n_kv_head * head_dim.
    pub kv_width: usize,
    pub head_dim: usize,
    pub base: f32,
    pub style: RotaryPairs,
    pub n_ctx: usize,
    pub threads: u32,
}

impl RopeStoreContext {
    pub fn new(target: &Target, rope: &RopeContext, kv_width: usize, n_ctx: usize) -> Self {
        RopeStoreContext {
            target: TargetConsts::of(target),
            q_width: rope.width,
            kv_width,
            head_dim: rope.head_dim,
            base: rope.base,
            style: rope.style,
            n_ctx,
            threads: 256,
        }
    }

    fn items(&self) -> usize {
        self.q_width / 2 + self.kv_width / 2 + self.kv_width
    }
}

impl OpContext for RopeStoreContext {
    fn op(&self) -> &'static str {
        "rope_store"
    }
    fn template(&self) -> &'static str {
        "rope_store.hip.tera"
    }
    fn problem(&self) -> String {
        format!(
            "rope_store q={} kv={} head_dim={} ctx={}",
            self.q_width, self.kv_width, self.head_dim, self.n_ctx
        )
    }
    fn validate(&self) -> Result<(), CodegenError> {
        for width in [self.q_width, self.kv_width] {
            RopeContext {
                target: self.target.clone(),
                width,
                head_dim: self.head_dim,
                base: self.base,
                style: self.style,
                threads: self.threads,
            }
            .validate()
            .map_err(|e| CodegenError::Invalid {
                problem: self.problem(),
                reason: e.to_string(),
            })?;
        }
        require(
            self.n_ctx > 0 && self.n_ctx <= i32::MAX as usize,
            self,
            || format!("context {} does not fit an int position", self.n_ctx),
        )?;
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (self.threads, 1, 1)
    }
    fn shared_bytes(&self) -> u32 {
        0
    }
    fn grid_rule(&self) -> GridRule {
        GridRule {
            x: Extent::per_token(1, 1),
            y: Extent::Fixed(self.items().div_ceil(self.threads as usize) as u32),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

threads_tunable!(RopeStoreContext, [256, 128, 512]);
