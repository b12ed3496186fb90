//! AMD GPUs through the HIP runtime (libamdhip64, loaded at run time).

pub mod blas;
pub mod ffi;
pub mod runtime;

pub use runtime::{device_count, HipRuntime};
