//! fuse-qkv IN.gguf OUT.gguf [PLAN]: writes a copy of a separate-QKV model with one fused
//! attn_qkv tensor per layer (q rows, then k, then v), named by the plan (default: the file's).

use rocmforge::gguf::GgufFile;
use rocmforge::plan::Plan;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(2..=3).contains(&args.len()) {
        eprintln!("usage: fuse-qkv IN.gguf OUT.gguf [PLAN]");
        return ExitCode::from(2);
    }
    let run = || -> Result<(), Box<dyn std::error::Error>> {
        let src = GgufFile::open(&args[0])?;
        let plan = match args.get(2) {
            Some(p) => Plan::from_arg(p)?,
            None => Plan::for_architecture(src.architecture().unwrap_or(""))?,
        };
        rocmforge::synth::fuse_qkv(&src, &plan)?.write(&args[1])?;
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
