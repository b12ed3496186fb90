//! A prefill matmul on the runtime's vendor f16 GEMM: its input rows and its weight staged as f16
//! by `stage_f16` kernels, then one GEMM per chunk of weight rows.

use super::{KernelArg, Launch, Scheduler};
use crate::backend::gpu::error::GpuError;
use crate::backend::gpu::kernels::{KernelRole, StepSite};
use crate::backend::gpu::runtime::{DevicePtr, GemmF16};
use crate::codegen::ops::stage_f16::{weight_staging, StageF16Context, WeightStaging};
use crate::codegen::quant::weight_layout;
use crate::graph::Step;

/// The f16 buffers a prefill matmul is staged in for the vendor GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Staging {
    pub weights: DevicePtr,
    /// Capacity in f16 values: a larger weight is staged and multiplied a chunk of rows at a
    /// time.
    pub weight_values: usize,
    /// The step's input rows (max_chunk rows of the widest matmul input).
    pub input: DevicePtr,
}

impl Scheduler<'_> {
    /// A prefill matmul on the vendor GEMM, where the executor has staging buffers and the
    /// weight's format can be staged as f16: x staged, then per chunk of rows the weight
    /// dequantized (unless already f16) and multiplied. False when the tile kernel must run.
    pub(super) fn vendor_gemm(
        &self,
        site: StepSite,
        step: &Step,
        x: DevicePtr,
        y: DevicePtr,
        n: usize,
        out: &mut Vec<Launch>,
    ) -> Result<bool, GpuError> {
        use KernelArg::{Ptr, I32};
        let Some(staging) = self.addresses.staging else {
            return Ok(false);
        };
        let tensor = self.matmul_weight(step, site.layer)?;
        let (Some(mode), Some(layout)) = (weight_staging(tensor.ty), weight_layout(tensor.ty))
        else {
            return Ok(false);
        };
        let k = tensor.dims[0] as usize;
        let rows = (tensor.n_elements() as usize) / k.max(1);
        let (w, _) = self.required_weight(step, site.layer, 0)?;
        let bias = self.weight(step, site.layer, 1)?.map_or(0, |(b, _)| b);
        let stage_x = self.kernels.kernel(site, KernelRole::StageInput, n)?;
        out.push(Launch::Kernel {
            label: format!("{} stage_input", step.name),
            function: stage_x.function,
            dims: stage_x.dims,
            args: vec![Ptr(x), Ptr(staging.input), I32(n as i32)],
        });
        // The dequantizing kernel, None where the GEMM reads the weight in place.
        let stage_w = match mode {
            WeightStaging::InPlace => None,
            WeightStaging::Dequantize => {
                Some(self.kernels.kernel(site, KernelRole::StageWeights, n)?)
            }
        };
        let chunk_rows = match stage_w {
            None => rows,
            Some(_) => (staging.weight_values / k.max(1)).clamp(1, rows.max(1)),
        };
        for r0 in (0..rows).step_by(chunk_rows) {
            let r = chunk_rows.min(rows - r0);
            let weights = match stage_w {
                None => w,
                Some(stage_w) => {
                    let mut dims = stage_w.dims;
                    dims.grid = (
                        StageF16Context::blocks(dims.block.0, k / layout.chunk, r),
                        1,
                        1,
                    );
                    out.push(Launch::Kernel {
                        label: format!("{} stage_weights", step.name),
                        function: stage_w.function,
                        dims,
                        args: vec![
                            Ptr(w + (r0 * layout.row_bytes(k)) as u64),
                            Ptr(staging.weights),
                            I32(r as i32),
                        ],
                    });
                    staging.weights
                }
            };
            out.push(Launch::Gemm {
                label: step.name.clone(),
                gemm: GemmF16 {
                    tokens: n,
                    rows: r,
                    k,
                    weights,
                    x: staging.input,
                    out: y + (r0 * 4) as u64,
                    ld_out: rows,
                    bias: if bias == 0 { 0 } else { bias + (r0 * 4) as u64 },
                },
            });
        }
        Ok(true)
    }
}
