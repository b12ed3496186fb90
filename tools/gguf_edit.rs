//! Model rewrites used to build test models from real ones:
//!   gguf-edit fuse-qkv IN.gguf OUT.gguf [PLAN]  one attn_qkv tensor per layer (q, k, v rows)
//!   gguf-edit requant TYPE IN.gguf OUT.gguf     every weight matrix converted to TYPE

use rocmforge::gguf::{GgmlType, GgufFile};
use rocmforge::plan::Plan;
use std::process::ExitCode;

const USAGE: &str =
    "usage: gguf-edit fuse-qkv IN.gguf OUT.gguf [PLAN] | gguf-edit requant TYPE IN.gguf OUT.gguf";

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["fuse-qkv", input, output, ref rest @ ..] if rest.len() <= 1 => {
            let src = GgufFile::open(input)?;
            let plan = match rest.first() {
                Some(p) => Plan::from_arg(p)?,
                None => Plan::for_architecture(src.architecture().unwrap_or(""))?,
            };
            rocmforge::synth::fuse_qkv(&src, &plan)?.write(output)?;
        }
        ["requant", ty, input, output] => {
            let ty = GgmlType::from_name(ty)
                .filter(|t| t.is_supported())
                .ok_or_else(|| format!("unknown or unsupported type '{ty}'"))?;
            rocmforge::synth::requantize(&GgufFile::open(input)?, ty)?.write(output)?;
        }
        _ => return Err(USAGE.into()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
