//! rocmforge: GGUF language models on GPUs, with kernels compiled per model at run time.

pub mod backend;
pub mod bench;
pub mod chat;
pub mod cli;
pub mod codegen;
pub mod generate;
pub mod gguf;
pub mod graph;
pub mod plan;
pub mod sample;
pub mod synth;
pub mod tokenizer;
pub mod tune;
pub mod util;
