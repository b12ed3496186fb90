//! The command line: one file per subcommand; main.rs only dispatches.

pub mod inspect;
pub mod synth;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "rocmforge",
    version,
    about = "GGUF language models on GPUs, kernels compiled per model"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a GGUF file's metadata, tensors, and how a plan binds it
    Inspect {
        gguf: PathBuf,
        /// Plan name or path (default: found from general.architecture)
        #[arg(long)]
        arch: Option<String>,
    },
    /// Write a random-weight GGUF shaped like a real model
    Synth(synth::SynthArgs),
}
