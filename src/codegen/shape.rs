//! The shape of a model as the kernels see it: hyper-parameters and, per program step, the op with
//! its widths and weight formats. Kernel generation works from this, so that it needs nothing of
//! plans or files; `from_model` fills it from a bound model.

use super::error::CodegenError;
use super::ops::rope::RotaryPairs;
use crate::gguf::GgmlType;
use crate::graph::{Fusions, Op, Program, Step, ValueId, ValueInfo};
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
    /// Which steps the kernels compute together (the same for every layer).
    pub fusions: Fusions,
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
        let mut d = DecoderProgram::default();
        let q_width = hp.n_head * hp.head_dim;
        let kv_width = hp.n_kv_head * hp.head_dim;
        let matmul = |k: usize, n: usize| StepShape::Matmul {
            format: fitting_format(format, k),
            k,
            n,
        };
        let norm = StepShape::RmsNorm {
            width: hp.n_embd,
            rows_per_token: 1,
        };
        let embed = StepShape::Embed {
            format: fitting_format(format, hp.n_embd),
            width: hp.n_embd,
            n_vocab: hp.n_vocab,
        };
        let (x, h) = (d.value("x", hp.n_embd), d.value("h", hp.n_embd));
        let (q, k, v) = (
            d.value("q", q_width),
            d.value("k", kv_width),
            d.value("v", kv_width),
        );
        let (a, o) = (d.value("a", q_width), d.value("o", hp.n_embd));
        let (g, u, m) = (
            d.value("g", hp.n_ff),
            d.value("u", hp.n_ff),
            d.value("m", hp.n_ff),
        );
        let (f, logits) = (d.value("f", hp.n_embd), d.value("logits", hp.n_vocab));
        let prologue = vec![d.step("token_embd", Op::Embed, &[], &[x], &[], embed)];
        let mut block = vec![d.step("attn_norm", Op::RmsNorm, &[x], &[h], &[], norm.clone())];
        if fused_qkv {
            let qkv = d.value("qkv", q_width + 2 * kv_width);
            block.push(d.step(
                "qkv",
                Op::Matmul,
                &[h],
                &[qkv],
                &[],
                matmul(hp.n_embd, q_width + 2 * kv_width),
            ));
            let widths = vec![q_width, kv_width, kv_width];
            block.push(d.step(
                "split_qkv",
                Op::Split,
                &[qkv],
                &[q, k, v],
                &widths,
                StepShape::Split {
                    widths: widths.clone(),
                },
            ));
        } else {
            block.push(d.step("q", Op::Matmul, &[h], &[q], &[], matmul(hp.n_embd, q_width)));
            block.push(d.step(
                "k",
                Op::Matmul,
                &[h],
                &[k],
                &[],
                matmul(hp.n_embd, kv_width),
            ));
            block.push(d.step(
                "v",
                Op::Matmul,
                &[h],
                &[v],
                &[],
                matmul(hp.n_embd, kv_width),
            ));
        }
        block.extend([
            d.step(
                "rope_q",
                Op::Rope,
                &[q],
                &[q],
                &[],
                StepShape::Rope { width: q_width },
            ),
            d.step(
                "rope_k",
                Op::Rope,
                &[k],
                &[k],
                &[],
                StepShape::Rope { width: kv_width },
            ),
            d.step(
                "attention",
                Op::Attention,
                &[q, k, v],
                &[a],
                &[],
                StepShape::Attention,
            ),
            d.step(
                "attn_output",
                Op::Matmul,
                &[a],
                &[o],
                &[],
                matmul(q_width, hp.n_embd),
            ),
            d.step(
                "residual_attn",
                Op::Add,
                &[x, o],
                &[x],
                &[],
                StepShape::Add { width: hp.n_embd },
            ),
            d.step("ffn_norm", Op::RmsNorm, &[x], &[h], &[], norm.clone()),
            d.step(
                "ffn_gate",
                Op::Matmul,
                &[h],
                &[g],
                &[],
                matmul(hp.n_embd, hp.n_ff),
            ),
            d.step(
                "ffn_up",
                Op::Matmul,
                &[h],
                &[u],
                &[],
                matmul(hp.n_embd, hp.n_ff),
            ),
            d.step(
                "silu_mul",
                Op::SiluMul,
                &[g, u],
                &[m],
                &[],
                StepShape::SiluMul { width: hp.n_ff },
            ),
            d.step(
                "ffn_down",
                Op::Matmul,
                &[m],
                &[f],
                &[],
                matmul(hp.n_ff, hp.n_embd),
            ),
            d.step(
                "residual_ffn",
                Op::Add,
                &[x, f],
                &[x],
                &[],
                StepShape::Add { width: hp.n_embd },
            ),
        ]);
        let epilogue = vec![
            d.step("output_norm", Op::RmsNorm, &[x], &[h], &[], norm),
            d.step(
                "output",
                Op::Matmul,
                &[h],
                &[logits],
                &[],
                matmul(hp.n_embd, hp.n_vocab),
            ),
        ];
        let split = |steps: Vec<(Step, ShapedStep)>| -> (Vec<Step>, Vec<ShapedStep>) {
            steps.into_iter().unzip()
        };
        let (prologue, prologue_shapes) = split(prologue);
        let (block, block_shapes) = split(block);
        let (epilogue, epilogue_shapes) = split(epilogue);
        let program = Program {
            values: d.values,
            prologue,
            block,
            epilogue,
            logits,
        };
        ModelShape {
            hparams: hp.clone(),
            prologue: prologue_shapes,
            layers: vec![block_shapes; n_layers],
            epilogue: epilogue_shapes,
            fusions: Fusions::of(&program),
        }
    }
}

/// The program of `ModelShape::decoder`, built beside its shapes so that its fusions are found
/// by the same analysis as a real model's.
#[derive(Default)]
struct DecoderProgram {
    values: Vec<ValueInfo>,
}

impl DecoderProgram {
    fn value(&mut self, name: &str, width: usize) -> ValueId {
        self.values.push(ValueInfo {
            name: name.to_string(),
            width,
        });
        self.values.len() - 1
    }

    fn step(
        &self,
        name: &str,
        op: Op,
        inputs: &[ValueId],
        outputs: &[ValueId],
        params: &[usize],
        shape: StepShape,
    ) -> (Step, ShapedStep) {
        let program_step = Step {
            op,
            inputs: inputs.to_vec(),
            weights: Vec::new(),
            outputs: outputs.to_vec(),
            params: params.to_vec(),
            name: name.to_string(),
        };
        (program_step, step(name, shape))
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
            fusions: Fusions::of(program),
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
