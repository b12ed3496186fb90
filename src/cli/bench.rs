//! `rocmforge bench`: a llama-bench style table plus the decode roofline and time to first token.

use super::run::{load, ModelArgs};
use crate::bench::{decode_bytes, prompt_processing, token_generation, Series};
use clap::Args;
use std::time::Instant;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt length of the pp test
    #[arg(short = 'p', long, default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens generated in the tg test
    #[arg(short = 'n', long, default_value_t = 128)]
    pub n_gen: usize,
    /// Repeats (the median is reported)
    #[arg(short = 'r', long, default_value_t = 5)]
    pub repeats: usize,
    /// Also write the results as JSON here
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

pub fn run(a: &BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if a.repeats == 0 || a.n_prompt == 0 || a.n_gen == 0 {
        return Err("-p, -n and -r must be at least 1".into());
    }
    // The context `run` and `tune` take unless told otherwise, so that the tuned kernels (keyed
    // by it: attention, the launch mode) apply; larger only where the tests need it.
    let need = a.n_prompt.max(a.n_gen);
    let mut margs = a.model.clone();
    margs.ctx_size = margs.ctx_size.map(|c| c.max(need));
    let mut t0 = Instant::now();
    let mut loaded = load(&margs)?;
    if loaded.backend.max_ctx() < need {
        margs.ctx_size = Some(need);
        drop(loaded);
        t0 = Instant::now();
        loaded = load(&margs)?;
    }
    let first = loaded.backend.forward_argmax(&[1], 0)?;
    let ttft = t0.elapsed().as_secs_f64();
    let model = loaded.model.clone();
    let n_vocab = model.hparams.n_vocab;
    let b = loaded.backend.as_mut();
    let pp = prompt_processing(b, n_vocab, a.n_prompt, a.repeats)?;
    let tg = token_generation(b, n_vocab, a.n_gen, a.repeats)?;
    let bytes = decode_bytes(&model);
    let bw = b.bandwidth();

    let name = model
        .file
        .get_str("general.name")
        .unwrap_or("model")
        .to_string();
    let size_mib = model.file.file_len() as f64 / (1 << 20) as f64;
    println!("| model | size | backend | test | t/s |");
    println!("| --- | ---: | --- | ---: | ---: |");
    for s in [&pp, &tg] {
        println!(
            "| {name} | {size_mib:.1} MiB | {} | {} | {:.2} ± {:.2} |",
            b.name(),
            s.label,
            s.median(),
            s.spread()
        );
    }
    println!("time to first token (load, compile or cache, 1-token prefill): {ttft:.3} s (token {first})");
    let roofline = bw.map(|bw| bw / bytes as f64);
    match (bw, roofline) {
        (Some(bw), Some(ceiling)) => println!(
            "decode roofline: {:.1} MiB read per token / {:.0} GB/s measured = {ceiling:.0} tok/s; {} reaches {:.1}% of it",
            bytes as f64 / (1 << 20) as f64,
            bw / 1e9,
            tg.label,
            100.0 * tg.median() / ceiling
        ),
        _ => println!(
            "decode roofline: {:.1} MiB read per token (no bandwidth measured on this backend)",
            bytes as f64 / (1 << 20) as f64
        ),
    }
    if let Some(path) = &a.json {
        let series = |s: &Series| serde_json::json!({"test": s.label, "median": s.median(), "spread": s.spread(), "samples": s.samples});
        let doc = serde_json::json!({
            "model": name, "file": model.file.path().display().to_string(), "size_bytes": model.file.file_len(),
            "backend": b.name(), "results": [series(&pp), series(&tg)], "ttft_s": ttft,
            "decode_bytes": bytes, "bandwidth": bw, "roofline_tok_s": roofline,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}
