//! The shape of a model as the kernels see it: hyper-parameters and, per program step, the op with
//! its widths and weight formats. Kernel generation works from this, so that it needs nothing of
//! plans or files; `from_model` fills it from a bound model.

use super::error::CodegenError;
use super::ops::rope::RotaryPairs;
use crate::gguf::GgmlType;
use crate::graph::{Op, Step};
use crate::plan::{Model, RopeStyle};

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
    if k.is_multiple_of(256) {
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

impl ModelShape {
    /// The shape of a bound model: its hyper-parameters and, for every program step (per layer
    /// for the block), the op with its widths and the formats of the weights it reads.
    pub fn from_model(model: &Model) -> Result<ModelShape, CodegenError> {
        let hp = &model.hparams;
        let hparams = ShapeHparams {
            n_embd: hp.n_embd,
            n_head: hp.n_head,
            n_kv_head: hp.n_kv_head,
            head_dim: hp.head_dim,
            n_ff: hp.n_ff,
            n_vocab: hp.n_vocab,
            norm_eps: hp.norm_eps,
            rope_base: hp.rope_base,
            rope_style: match hp.rope_style {
                RopeStyle::Normal => RotaryPairs::Normal,
                RopeStyle::Neox => RotaryPairs::Neox,
            },
        };
        let program = &model.program;
        let shape_steps =
            |steps: &[Step], layer: Option<usize>| -> Result<Vec<ShapedStep>, CodegenError> {
                steps
                    .iter()
                    .map(|s| {
                        Ok(ShapedStep {
                            name: s.name.clone(),
                            shape: step_shape(model, s, layer)?,
                        })
                    })
                    .collect()
            };
        Ok(ModelShape {
            hparams,
            prologue: shape_steps(&program.prologue, None)?,
            layers: (0..hp.n_layer)
                .map(|l| shape_steps(&program.block, Some(l)))
                .collect::<Result<_, _>>()?,
            epilogue: shape_steps(&program.epilogue, None)?,
        })
    }
}

fn step_shape(model: &Model, step: &Step, layer: Option<usize>) -> Result<StepShape, CodegenError> {
    let program = &model.program;
    let width = |slot: &[usize], i: usize| -> Result<usize, CodegenError> {
        slot.get(i)
            .map(|&id| program.value(id).width)
            .ok_or_else(|| CodegenError::Step {
                step: step.name.clone(),
                reason: format!("{} needs a value in slot {i}", step.op.name()),
            })
    };
    let weight = || {
        let role = step
            .weights
            .first()
            .cloned()
            .flatten()
            .ok_or_else(|| CodegenError::Step {
                step: step.name.clone(),
                reason: format!("{} needs a weight", step.op.name()),
            })?;
        let t = model
            .weight(layer, &role)
            .ok_or_else(|| CodegenError::Step {
                step: step.name.clone(),
                reason: format!("weight role {role} is not bound for layer {layer:?}"),
            })?;
        match t.dims[..] {
            [k, n] => Ok((t.ty, k as usize, n as usize)),
            _ => Err(CodegenError::Step {
                step: step.name.clone(),
                reason: format!("weight {} has dims {:?}, expected [K, N]", t.name, t.dims),
            }),
        }
    };
    let head_dim = model.hparams.head_dim;
    Ok(match step.op {
        Op::Embed => {
            let (format, width, n_vocab) = weight()?;
            StepShape::Embed {
                format,
                width,
                n_vocab,
            }
        }
        Op::RmsNorm => StepShape::RmsNorm {
            width: width(&step.inputs, 0)?,
            rows_per_token: 1,
        },
        Op::HeadRmsNorm => StepShape::RmsNorm {
            width: head_dim,
            rows_per_token: width(&step.inputs, 0)? / head_dim,
        },
        Op::Matmul => {
            let (format, k, n) = weight()?;
            StepShape::Matmul { format, k, n }
        }
        Op::Split => StepShape::Split {
            widths: step.params.clone(),
        },
        Op::Rope => StepShape::Rope {
            width: width(&step.inputs, 0)?,
        },
        Op::Attention => StepShape::Attention,
        Op::Add => StepShape::Add {
            width: width(&step.outputs, 0)?,
        },
        Op::SiluMul => StepShape::SiluMul {
            width: width(&step.outputs, 0)?,
        },
    })
}
