//! Greedy sampling on the device: the index of the largest logit, so only one id crosses to the host.

use serde::Serialize;

use crate::codegen::compiler::Target;
use crate::codegen::context::{
    check_launch, require, valid_candidates, Extent, GridRule, OpContext, TargetConsts, Tunable,
};
use crate::codegen::error::CodegenError;

/// 16-byte loads each thread of the default geometry issues: enough blocks that the row streams
/// through many SMs at once (~75 blocks for 152k logits), few enough that the blocks' partial
/// winners stay a short merge for the last block.
const DEFAULT_LOADS_PER_THREAD: usize = 2;
const DEFAULT_THREADS: u32 = 256;
/// Sizes the blocks' scratch of partial winners; far more than a vocabulary needs.
const MAX_BLOCKS: u32 = 4096;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArgmaxContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    /// Values in the row (the kernel takes the count too; this keys the kernel to the model).
    pub n_vocab: usize,
    pub threads: u32,
    /// Blocks sharing the row over consecutive slices, merged by the last to finish; with 1
    /// the kernel has no scratch and no atomics.
    pub blocks: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArgmaxKnobs {
    pub threads: u32,
    /// Absent when 1, so that the single-block candidate keeps its knobs' JSON.
    #[serde(skip_serializing_if = "is_one")]
    pub blocks: u32,
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

impl ArgmaxContext {
    pub fn new(target: &Target, n_vocab: usize) -> ArgmaxContext {
        let ctx = ArgmaxContext {
            target: TargetConsts::of(target),
            n_vocab,
            threads: DEFAULT_THREADS,
            blocks: 1,
        };
        ctx.with_knobs(&ctx.geometry(DEFAULT_THREADS, DEFAULT_LOADS_PER_THREAD))
    }

    /// Blocks of `threads` threads over the row, each thread issuing about `loads` 16-byte
    /// loads (at least one block).
    fn geometry(&self, threads: u32, loads: usize) -> ArgmaxKnobs {
        let per_block = 4 * loads * threads as usize;
        let blocks = self
            .n_vocab
            .div_ceil(per_block)
            .clamp(1, MAX_BLOCKS as usize);
        ArgmaxKnobs {
            threads,
            blocks: blocks as u32,
        }
    }
}

impl OpContext for ArgmaxContext {
    fn op(&self) -> &'static str {
        "argmax"
    }
    fn template(&self) -> &'static str {
        "argmax.hip.tera"
    }
    fn problem(&self) -> String {
        format!("argmax n={}", self.n_vocab)
    }
    fn validate(&self) -> Result<(), CodegenError> {
        require(
            self.n_vocab > 0 && self.n_vocab <= i32::MAX as usize,
            self,
            || format!("row of {} values", self.n_vocab),
        )?;
        require((1..=MAX_BLOCKS).contains(&self.blocks), self, || {
            format!("{} blocks; 1 to {MAX_BLOCKS} are allowed", self.blocks)
        })?;
        check_launch(self)
    }
    fn block(&self) -> (u32, u32, u32) {
        (self.threads, 1, 1)
    }
    fn shared_bytes(&self) -> u32 {
        // A value and an index per warp, and the flag of the last block when there are several.
        let flag = if self.blocks > 1 { 4 } else { 0 };
        8 * (self.threads / self.target.warp_size) + flag
    }
    fn grid_rule(&self) -> GridRule {
        GridRule {
            x: Extent::Fixed(self.blocks),
            y: Extent::Fixed(1),
            z: Extent::Fixed(1),
        }
    }
    fn target(&self) -> &TargetConsts {
        &self.target
    }
}

impl Tunable for ArgmaxContext {
    type Knobs = ArgmaxKnobs;
    fn knobs(&self) -> ArgmaxKnobs {
        ArgmaxKnobs {
            threads: self.threads,
            blocks: self.blocks,
        }
    }
    /// The default, other block sizes and loads per thread, and the single block of 1024
    /// threads (no handshake) that the default replaced.
    fn candidates(&self) -> Vec<ArgmaxKnobs> {
        let mut list = vec![self.geometry(DEFAULT_THREADS, DEFAULT_LOADS_PER_THREAD)];
        for threads in [256, 512, 1024, 128] {
            for loads in [2, 1, 4] {
                list.push(self.geometry(threads, loads));
            }
        }
        list.push(ArgmaxKnobs {
            threads: 1024,
            blocks: 1,
        });
        valid_candidates(self, list)
    }
    fn with_knobs(&self, knobs: &ArgmaxKnobs) -> Self {
        ArgmaxContext {
            threads: knobs.threads,
            blocks: knobs.blocks,
            ..self.clone()
        }
    }
}
