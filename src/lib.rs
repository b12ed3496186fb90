//! rocmforge: GGUF language models on GPUs, with kernels compiled per model at run time.

pub mod backend;
pub mod gguf;
pub mod util;
