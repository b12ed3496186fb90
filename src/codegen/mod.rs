//! Kernel generation: typed contexts per op family rendered from tera templates into HIP-dialect
//! sources specialized to one model and target, compiled (and cached) at run time.

pub mod cache;
pub mod compiler;
pub mod context;
pub mod error;
pub mod kernel_set;
pub mod listing;
pub mod ops;
pub mod quant;
pub mod render;
pub mod shape;
pub mod tuning;

pub use error::CodegenError;
pub use kernel_set::{
    kernels_for_model, kernels_for_shape, KernelKind, KernelSet, KernelSpec, Phase, StepAt,
};
pub use render::Renderer;
pub use shape::ModelShape;
pub use tuning::TuningChoice;
