//! Backends that run a model: the CPU reference and the GPUs (CUDA, HIP) with a shared executor.

pub mod cuda;
pub mod gpu;
pub mod hip;
