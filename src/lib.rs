//! rocmforge: GGUF language models on GPUs, with kernels compiled per model at run time.

pub mod chat;
pub mod gguf;
pub mod sample;
pub mod tokenizer;
pub mod util;
