//! One typed context per op family: exactly the compile-time constants of its template, built
//! from the model's shape, the target and a tuning choice (candidate 0 by default).

pub mod argmax;
pub mod attention;
pub mod elementwise;
pub mod embed;
mod gemv_lanes;
mod gemv_tuning;
pub mod matmul;
pub mod matmul_tiles;
pub mod rmsnorm;
pub mod rope;
pub mod split;
pub mod stage_f16;

pub use argmax::ArgmaxContext;
pub use attention::AttentionContext;
pub use elementwise::ElementwiseContext;
pub use embed::EmbedContext;
pub use matmul::{GemmContext, GemvContext};
pub use matmul_tiles::GemmTilesContext;
pub use rmsnorm::RmsNormContext;
pub use rope::{KvStoreContext, RopeContext, RopeStoreContext};
pub use split::SplitContext;
pub use stage_f16::StageF16Context;

/// Threads in a block of `n` warps.
fn warps(warp_size: u32, n: u32) -> u32 {
    warp_size * n
}
