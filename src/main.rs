use clap::Parser;
use rocmforge::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inspect { gguf, arch } => rocmforge::cli::inspect::inspect(gguf, arch.as_deref()),
        Command::Synth(a) => rocmforge::cli::synth::run(a),
        Command::Run(a) => rocmforge::cli::run::run(a),
        Command::Bench(a) => rocmforge::cli::bench::run(a),
        Command::Kernels(a) => rocmforge::cli::kernels::run(a),
        Command::Verify(a) => rocmforge::cli::verify::run(a),
        Command::Tune(a) => rocmforge::cli::tune::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
