//! The command line: one file per subcommand; main.rs only dispatches.

pub mod bench;
pub mod inspect;
pub mod kernels;
pub mod run;
pub mod synth;
pub mod tune;
pub mod unknown_arch;
pub mod verify;

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
    /// Generate text from a prompt, or chat
    Run(run::RunArgs),
    /// Measure prompt processing and generation speed (llama-bench style) and the roofline
    Bench(bench::BenchArgs),
    /// Render (and with --check compile) every kernel a model needs for a target; no GPU needed
    Kernels(kernels::KernelsArgs),
    /// Check a GPU backend against the CPU reference on a model: logits and greedy generations
    Verify(verify::VerifyArgs),
    /// Time each kernel's candidate knobs on this GPU for a model and store the fastest correct
    /// ones in the device's tuning database (applied by run, bench and verify)
    Tune(tune::TuneArgs),
}
