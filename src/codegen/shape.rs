//! The shape of a model as the kernels see it: hyper-parameters and, per program step, the op with
//! its widths and weight formats. Kernel generation works from this, so that it needs nothing of
//! plans or files; `from_model` fills it from a bound model.

use crate::gguf::GgmlType;

use super::ops::rope::RotaryPairs;

#[derive(Debug, Clone, PartialEq)]
pub struct ShapeHparams {
    pub n_embd: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub norm_eps: f32,
    pub rope_base: f32,
    pub rope_style: RotaryPairs,
}

/// One program step, reduced to what selects its kernels.
#[derive(Debug, Clone, PartialEq)]
pub enum StepShape {
    Embed {
        format: GgmlType,
        width: usize,
        n_vocab: usize,
    },
    /// `rows_per_token` > 1 for a per-head norm (`width` = head_dim).
    RmsNorm {
        width: usize,
        rows_per_token: usize,
    },
    /// W has N rows of K values.
    Matmul {
        format: GgmlType,
        k: usize,
        n: usize,
    },
    Split {
        widths: Vec<usize>,
    },
    Rope {
        width: usize,
    },
    Attention,
    Add {
        width: usize,
    },
    SiluMul {
        width: usize,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShapedStep {
    /// The plan line of the step, for listings and errors.
    pub name: String,
    pub shape: StepShape,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelShape {
    pub hparams: ShapeHparams,
    pub prologue: Vec<ShapedStep>,
    /// The block's steps for each layer (formats may differ between layers).
    pub layers: Vec<Vec<ShapedStep>>,
    pub epilogue: Vec<ShapedStep>,
}

fn step(name: &str, shape: StepShape) -> ShapedStep {
    ShapedStep {
        name: name.to_string(),
        shape,
    }
}

impl ModelShape {
    /// A standard pre-norm decoder (RMSNorm, RoPE attention with GQA, SwiGLU FFN, untied output)
    /// with every weight in `format`, or the nearest format whose blocks fit a row where `format`'s
    /// do not (as quantizers do). For kernel listings, compile checks and benchmarks without a file.
    pub fn decoder(
        hp: &ShapeHparams,
        n_layers: usize,
        format: GgmlType,
        fused_qkv: bool,
    ) -> ModelShape {
        let matmul = |name: &str, k: usize, n: usize| {
            step(
                name,
                StepShape::Matmul {
                    format: fitting_format(format, k),
                    k,
                    n,
                },
            )
        };
        let q_width = hp.n_head * hp.head_dim;
        let kv_width = hp.n_kv_head * hp.head_dim;
        let mut block = vec![step(
            "attn_norm",
            StepShape::RmsNorm {
                width: hp.n_embd,
                rows_per_token: 1,
            },
        )];
        if fused_qkv {
            block.push(matmul("qkv", hp.n_embd, q_width + 2 * kv_width));
            block.push(step(
                "split_qkv",
                StepShape::Split {
                    widths: vec![q_width, kv_width, kv_width],
                },
            ));
        } else {
            block.push(matmul("q", hp.n_embd, q_width));
            block.push(matmul("k", hp.n_embd, kv_width));
            block.push(matmul("v", hp.n_embd, kv_width));
        }
        block.extend([
            step("rope_q", StepShape::Rope { width: q_width }),
            step("rope_k", StepShape::Rope { width: kv_width }),
            step("attention", StepShape::Attention),
            matmul("attn_output", q_width, hp.n_embd),
            step("residual_attn", StepShape::Add { width: hp.n_embd }),
            step(
                "ffn_norm",
                StepShape::RmsNorm {
                    width: hp.n_embd,
                    rows_per_token: 1,
                },
            ),
            matmul("ffn_gate", hp.n_embd, hp.n_ff),
            matmul("ffn_up", hp.n_embd, hp.n_ff),
            step("silu_mul", StepShape::SiluMul { width: hp.n_ff }),
            matmul("ffn_down", hp.n_ff, hp.n_embd),
            step("residual_ffn", StepShape::Add { width: hp.n_embd }),
        ]);
        ModelShape {
            hparams: hp.clone(),
            prologue: vec![step(
                "token_embd",
                StepShape::Embed {
                    format: fitting_format(format, hp.n_embd),
                    width: hp.n_embd,
                    n_vocab: hp.n_vocab,
                },
            )],
            layers: vec![block; n_layers],
            epilogue: vec![
                step(
                    "output_norm",
                    StepShape::RmsNorm {
                        width: hp.n_embd,
                        rows_per_token: 1,
                    },
                ),
                matmul("output", hp.n_embd, hp.n_vocab),
            ],
        }
    }
}

/// `format`, or for a 256-value K-quant whose blocks do not fit rows of `k`, the 32-value format
/// llama.cpp's quantizer substitutes (IQ4_NL, not supported here, becomes Q4_0).
pub fn fitting_format(format: GgmlType, k: usize) -> GgmlType {
    if k % 256 == 0 {
        return format;
    }
    match format {
        GgmlType::Q2K | GgmlType::Q3K => GgmlType::Q4_0,
        GgmlType::Q4K => GgmlType::Q5_0,
        GgmlType::Q5K => GgmlType::Q5_1,
        GgmlType::Q6K => GgmlType::Q8_0,
        other => other,
    }
}
