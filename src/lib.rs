//! rocmforge: GGUF language models on GPUs, with kernels compiled per model at run time.

pub mod backend;
pub mod cli;
pub mod codegen;
pub mod gguf;
pub mod graph;
pub mod plan;
pub mod synth;
pub mod util;
