//! Embedding lookup: one dequantized table row per token.

use serde::Serialize;

use crate::codegen::compiler::Target;
use crate::codegen::context::{
    check_launch, check_row_length, require, valid_candidates, Extent, GridRule, OpContext,
    TargetConsts, Tunable,
};
use crate::codegen::error::CodegenError;
use crate::codegen::quant::weight_layout;
use crate::gguf::GgmlType;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbedContext {
    #[serde(flatten)]
    pub target: TargetConsts,
    #[serde(skip)]
    pub format: GgmlType,
    pub weight_format: &'static str,
    /// Values per table row (n_embd).
    pub k: usize,
    pub n_vocab: usize,
    pub threads: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbedKnobs {
    pub threads: u32,
}

impl EmbedContext {
    pub fn new(target: &Target, format: GgmlType, k: usize, n_vocab: usize) -> EmbedContext {
        let tag = weight_layout(format).map_or("unsupported", |l| l.tag);
        let ctx = EmbedContext {
            target: TargetConsts::of(target),
            format,
            weight_format: tag,
            k,
            n_vocab,
            threads: 0,
        };
        ctx.with_knobs(&ctx.default_knobs())
    }

    fn default_knobs(&self) -> EmbedKnobs {
        EmbedKnobs {
            threads: self.target.warp_size.max(128),
        }
    }

    fn chunks(&self) -> usize {
        weight_layout(self.format).map_or(1, |l| self.k / l.chunk)
    }
}

impl OpContext for EmbedContext {
    fn op(&self) -> &'static str {
        "embed"
    }
    fn template(&self) -> &'static str {
        "embed.hip.tera"
    }
    fn weight_format(&self) -> Option<GgmlType> {
        Some(self.format)
    }
    fn problem(&self) -> String {
        format!(
            "embed {} K={} vocab={}",
            self.format.name(),
            self.k,
            self.n_vocab
        )
    }
    fn validate(&self) -> Result<(), CodegenError> {
        check_row_length(self, self.format, self.k)?;
        require(self.n_vocab > 0, self, || {
            "the table has no rows".to_string()
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
        let y = self.chunks().div_ceil(self.threads as usize) as u32;
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

impl Tunable for EmbedContext {
    type Knobs = EmbedKnobs;
    fn knobs(&self) -> EmbedKnobs {
        EmbedKnobs {
            threads: self.threads,
        }
    }
    fn candidates(&self) -> Vec<EmbedKnobs> {
        let default = self.default_knobs().threads;
        let list = [default, 64, 256, 512]
            .into_iter()
            .map(|threads| EmbedKnobs { threads })
            .collect();
        valid_candidates(self, list)
    }
    fn with_knobs(&self, knobs: &EmbedKnobs) -> Self {
        EmbedContext {
            threads: knobs.threads,
            ..self.clone()
        }
    }
}
