//! rocmforge: GGUF language models on GPUs, with kernels compiled per model at run time.

pub mod codegen;
pub mod gguf;
pub mod util;
