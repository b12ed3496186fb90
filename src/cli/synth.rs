//! `rocmforge synth`: write a random-weight model shaped like a real one.

use crate::gguf::GgufFile;
use crate::plan::Plan;
use crate::synth::{preset, preset_names, synthesize, Shape, SynthSpec, WeightMix};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Model shape to imitate: smollm2-135m, qwen2.5-0.5b, qwen3-0.6b, phi3-mini, llama3-8b
    #[arg(long)]
    pub preset: String,
    /// Weight format of the projections (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, Q4_K_M)
    #[arg(long = "type", default_value = "Q8_0")]
    pub weight_type: String,
    /// Output GGUF path
    #[arg(long, short)]
    pub out: PathBuf,
    /// Plan to shape the tensors by (name or path); default: the preset's
    #[arg(long)]
    pub arch: Option<String>,
    /// Keep only this many layers
    #[arg(long)]
    pub layers: Option<usize>,
    #[arg(long)]
    pub n_embd: Option<usize>,
    #[arg(long)]
    pub n_head: Option<usize>,
    #[arg(long)]
    pub n_kv_head: Option<usize>,
    /// Head size (default: the preset's, or n_embd / n_head when either of those is given)
    #[arg(long)]
    pub head_dim: Option<usize>,
    #[arg(long)]
    pub n_ff: Option<usize>,
    #[arg(long)]
    pub n_vocab: Option<usize>,
    /// Write one fused attn_qkv tensor instead of separate q, k, v
    #[arg(long)]
    pub fused_qkv: bool,
    /// Separate output projection even where the preset ties it to the embeddings
    #[arg(long)]
    pub untied: bool,
    /// Copy the tokenizer from this GGUF (padded to the shape's vocabulary)
    #[arg(long)]
    pub tokenizer_from: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(a: &SynthArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut shape: Shape = preset(&a.preset).ok_or_else(|| {
        format!(
            "unknown preset '{}' (presets: {})",
            a.preset,
            preset_names().join(", ")
        )
    })?;
    let set = |dst: &mut usize, v: Option<usize>| {
        if let Some(v) = v {
            *dst = v;
        }
    };
    set(&mut shape.n_layer, a.layers);
    set(&mut shape.n_embd, a.n_embd);
    set(&mut shape.n_head, a.n_head);
    set(&mut shape.n_kv_head, a.n_kv_head);
    set(&mut shape.n_ff, a.n_ff);
    set(&mut shape.n_vocab, a.n_vocab);
    if a.n_embd.is_some() || a.n_head.is_some() {
        shape.head_dim = shape.n_embd / shape.n_head;
    }
    set(&mut shape.head_dim, a.head_dim);
    if a.untied {
        shape.tied = false;
    }
    let weights = WeightMix::parse(&a.weight_type)
        .ok_or_else(|| format!("unknown or unsupported weight type '{}'", a.weight_type))?;
    let plan = Plan::from_arg(a.arch.as_deref().unwrap_or(shape.plan))?;
    let tok = a.tokenizer_from.as_ref().map(GgufFile::open).transpose()?;
    let spec = SynthSpec {
        // Not the preset: llama.cpp's vocabulary loader changes token attributes by model name
        // (a name with "phi3" must have "</s>"), which a borrowed tokenizer may not have.
        name: format!("rocmforge synthetic {}", a.weight_type),
        plan,
        shape,
        weights,
        fused_qkv: a.fused_qkv,
        seed: a.seed,
    };
    let report = synthesize(&spec, tok.as_ref(), &a.out)?;
    eprintln!(
        "wrote {}: {} tensors, {:.1} MiB of tensor data, types {:?}",
        a.out.display(),
        report.n_tensors,
        report.n_bytes as f64 / (1 << 20) as f64,
        report.types
    );
    Ok(())
}
