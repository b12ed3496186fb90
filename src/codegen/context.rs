//! What every kernel context shares: the target constants, the launch geometry, validation, and
//! the tuning interface. Each op family has its own context struct under `ops/` holding exactly
//! the compile-time constants its template uses; the struct serializes to the template context and
//! to the JSON whose hash names the kernel.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::compiler::{Platform, Target};
use super::error::CodegenError;
use super::quant::{weight_layout, WeightLayout};
use crate::gguf::GgmlType;

/// Hard limits shared by every vendor: threads per block and static shared memory per block.
pub const MAX_THREADS_PER_BLOCK: u32 = 1024;
pub const MAX_SHARED_BYTES: u32 = 48 * 1024;

/// The target facts a template depends on; part of every context (flattened into it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetConsts {
    /// `hip` or `cuda`: picks the prelude.
    pub platform: &'static str,
    pub arch: String,
    pub warp_size: u32,
}

impl TargetConsts {
    pub fn of(target: &Target) -> TargetConsts {
        let platform = match target.platform {
            Platform::Hip => "hip",
            Platform::Cuda => "cuda",
        };
        TargetConsts {
            platform,
            arch: target.arch.clone(),
            warp_size: target.warp_size,
        }
    }
}

/// One grid dimension: fixed, or `ceil(n_tokens * mul / div)` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Extent {
    Fixed(u32),
    Tokens { mul: u32, div: u32 },
}

impl Extent {
    /// `ceil(count / per)` blocks for `count` items per token.
    pub fn per_token(count: usize, per: u32) -> Extent {
        Extent::Tokens {
            mul: count as u32,
            div: per,
        }
    }

    pub fn blocks(&self, n_tokens: u32) -> u32 {
        match *self {
            Extent::Fixed(n) => n,
            Extent::Tokens { mul, div } => {
                ((n_tokens as u64 * mul as u64).div_ceil(div as u64)) as u32
            }
        }
    }
}

/// How many blocks a launch over `n_tokens` tokens needs, per dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GridRule {
    pub x: Extent,
    pub y: Extent,
    pub z: Extent,
}

impl GridRule {
    pub fn grid(&self, n_tokens: u32) -> (u32, u32, u32) {
        (
            self.x.blocks(n_tokens),
            self.y.blocks(n_tokens),
            self.z.blocks(n_tokens),
        )
    }
}

/// A template's typed context.
pub trait OpContext: Serialize {
    /// The op part of the kernel name (`matmul_gemv`).
    fn op(&self) -> &'static str;
    /// The op template under `templates/`.
    fn template(&self) -> &'static str;
    /// The weight format the kernel dequantizes, if it reads GGUF weights. Its snippet is rendered
    /// before the op template, and the context must then have a field `k` (values per weight row).
    fn weight_format(&self) -> Option<GgmlType> {
        None
    }
    /// For kernels reading several weight matrices: the format of each. The renderer then puts
    /// each format's snippet in its own namespace `seg<i>` (instead of one snippet at global
    /// scope), so that formats may differ between segments.
    fn segment_formats(&self) -> Vec<GgmlType> {
        Vec::new()
    }
    /// Whether the kernel multiplies on matrix units: the renderer then adds the target's
    /// matrix-tile prelude (`rf_tile_*`). Only contexts built for targets that have one say yes.
    fn matrix_tiles(&self) -> bool {
        false
    }
    /// Op and shape without the knobs: the key of tuning results and of error messages.
    fn problem(&self) -> String;
    /// Knob and shape consistency, checked before rendering.
    fn validate(&self) -> Result<(), CodegenError>;
    fn block(&self) -> (u32, u32, u32);
    /// Static shared memory the kernel declares, in bytes.
    fn shared_bytes(&self) -> u32;
    fn grid_rule(&self) -> GridRule;
    fn target(&self) -> &TargetConsts;

    fn warp_size(&self) -> u32 {
        self.target().warp_size
    }

    /// The format part of the kernel name: the weight format, else `f32` (activations).
    fn format_tag(&self) -> &'static str {
        self.weight_format()
            .and_then(weight_layout)
            .map_or("f32", |l| l.tag)
    }

    fn context_json(&self) -> String {
        serde_json::to_string(self).expect("kernel contexts hold only plain numbers and strings")
    }

    /// `<op>_<fmt>_<first 8 hex digits of sha256(context json)>`.
    fn kernel_name(&self) -> String {
        let digest = Sha256::digest(self.context_json().as_bytes());
        let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}_{}_{}", self.op(), self.format_tag(), hex)
    }
}

/// A context whose knobs can be tuned. Candidate 0 is the default and is always valid for the
/// shapes the context accepts; the others are alternatives a tuner may time and check against it.
pub trait Tunable: OpContext + Sized {
    type Knobs: Clone + std::fmt::Debug + Serialize + PartialEq;
    fn knobs(&self) -> Self::Knobs;
    fn candidates(&self) -> Vec<Self::Knobs>;
    fn with_knobs(&self, knobs: &Self::Knobs) -> Self;
}

/// Keeps the first occurrence of each candidate and only those that validate; candidate 0 (the
/// default) is kept even if invalid so that `validate()` reports it instead of silently dropping it.
pub fn valid_candidates<C: Tunable>(ctx: &C, list: Vec<C::Knobs>) -> Vec<C::Knobs> {
    let mut out: Vec<C::Knobs> = Vec::new();
    for (i, knobs) in list.into_iter().enumerate() {
        if out.contains(&knobs) {
            continue;
        }
        if i == 0 || ctx.with_knobs(&knobs).validate().is_ok() {
            out.push(knobs);
        }
    }
    out
}

/// Fails with `reason` for `problem` unless `ok`.
pub fn require(
    ok: bool,
    problem: &impl OpContext,
    reason: impl FnOnce() -> String,
) -> Result<(), CodegenError> {
    if ok {
        Ok(())
    } else {
        Err(CodegenError::Invalid {
            problem: problem.problem(),
            reason: reason(),
        })
    }
}

/// Checks shared by every kernel: block size within limits and a whole number of warps, shared
/// memory within the static limit.
pub fn check_launch(ctx: &impl OpContext) -> Result<(), CodegenError> {
    let (x, y, z) = ctx.block();
    let threads = x * y * z;
    let warp = ctx.warp_size();
    require(threads > 0 && threads <= MAX_THREADS_PER_BLOCK, ctx, || {
        format!("{threads} threads per block; the limit is {MAX_THREADS_PER_BLOCK}")
    })?;
    require(x % warp == 0, ctx, || {
        format!("block x extent {x} is not a multiple of the warp size {warp}")
    })?;
    let shared = ctx.shared_bytes();
    require(shared <= MAX_SHARED_BYTES, ctx, || {
        format!("{shared} bytes of shared memory; the static limit is {MAX_SHARED_BYTES}")
    })
}

/// The layout of a weight format, or the error naming the kernel that wanted it.
pub fn layout_for(ctx: &impl OpContext, format: GgmlType) -> Result<WeightLayout, CodegenError> {
    weight_layout(format).ok_or_else(|| CodegenError::UnsupportedFormat {
        problem: ctx.problem(),
        format: format.name().to_string(),
    })
}

/// Checks that rows of `k` values hold whole blocks and chunks of `format`.
pub fn check_row_length(
    ctx: &impl OpContext,
    format: GgmlType,
    k: usize,
) -> Result<WeightLayout, CodegenError> {
    let layout = layout_for(ctx, format)?;
    let multiple = layout.k_multiple();
    require(k > 0 && k.is_multiple_of(multiple), ctx, || {
        format!(
            "row length {k} is not a multiple of {multiple}, the {} block/chunk size",
            format.name()
        )
    })?;
    Ok(layout)
}

pub fn is_pow2(n: u32) -> bool {
    n.is_power_of_two()
}
