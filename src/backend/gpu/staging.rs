//! How large the f16 staging buffers of prefill on the vendor GEMM must be for a model.

use crate::codegen::ops::stage_f16::{weight_staging, WeightStaging};
use crate::graph::{Op, Section};
use crate::plan::Model;

/// At most this many f16 values of a weight are staged at once (128 MiB): an LM head of
/// 128256 x 4096 is dequantized and multiplied a chunk of rows at a time.
pub const MAX_STAGED_WEIGHT_VALUES: usize = 64 << 20;

/// Staging capacities in f16 values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StagingSizes {
    pub weight_values: usize,
    pub input_values: usize,
}

impl StagingSizes {
    pub fn bytes(&self) -> usize {
        2 * (self.weight_values + self.input_values)
    }
}

/// The buffers prefill of `model` needs in chunks of up to `max_chunk` tokens, or None when no
/// matmul can run on the vendor GEMM (every weight f32 or bf16).
pub fn staging_sizes(model: &Model, max_chunk: usize) -> Option<StagingSizes> {
    let program = &model.program;
    let layers: Vec<Option<usize>> = (0..model.hparams.n_layer).map(Some).collect();
    let sections = [
        (Section::Prologue, vec![None]),
        (Section::Block, layers),
        (Section::Epilogue, vec![None]),
    ];
    let mut sizes: Option<StagingSizes> = None;
    for (section, layers) in &sections {
        for step in program.section(*section) {
            if step.op != Op::Matmul {
                continue;
            }
            let Some(Some(role)) = step.weights.first() else {
                continue;
            };
            for &layer in layers {
                let Some(tensor) = model.weight(layer, role) else {
                    continue;
                };
                let Some(mode) = weight_staging(tensor.ty) else {
                    continue;
                };
                let k = tensor.dims[0] as usize;
                let weight_values = match mode {
                    WeightStaging::InPlace => 0,
                    WeightStaging::Dequantize => {
                        (tensor.n_elements() as usize).min(MAX_STAGED_WEIGHT_VALUES.max(k))
                    }
                };
                let s = sizes.get_or_insert(StagingSizes {
                    weight_values: 0,
                    input_values: 0,
                });
                s.weight_values = s.weight_values.max(weight_values);
                s.input_values = s.input_values.max(max_chunk * k);
            }
        }
    }
    sizes
}
