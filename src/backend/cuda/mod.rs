//! NVIDIA GPUs through the CUDA driver API (cudarc, loaded at run time).

pub mod blas;
pub mod runtime;

pub use runtime::{device_count, driver_present, CudaRuntime};
