//! Turning the program into a flat list of launches with every argument resolved to a device
//! address or an integer, following the kernel ABI in CONTRACT.md. Built once per token count
//! (the decode list is captured into a graph once and replayed).

use std::ffi::c_void;

use super::error::GpuError;
use super::kernels::{KernelRole, KernelTable, Section, StepSite};
use super::layout::{io_ring, ArenaLayout, WeightLayout, FEED_RING, IO_ARGMAX, IO_POS0, IO_TOKENS};
use super::runtime::{DevicePtr, FunctionHandle, GemmF16, GpuRuntime, LaunchDims, RuntimeError};

mod vendor_gemm;
use crate::codegen::quant::weight_layout;
use crate::codegen::Phase;
use crate::gguf::TensorInfo;
use crate::graph::{
    Fusion, FusionKind, Fusions, GemvEpilogue, GemvFusion, GemvSegment, Op, Step, ValueId,
};
use crate::plan::Model;
pub use vendor_gemm::Staging;

/// One kernel parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelArg {
    Ptr(DevicePtr),
    I32(i32),
}

/// One unit of stream work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    Kernel {
        /// Step name and kernel role, for errors and profiles.
        label: String,
        function: FunctionHandle,
        dims: LaunchDims,
        args: Vec<KernelArg>,
    },
    /// Device-to-device copy (a rope whose output is a different value than its input).
    Copy {
        dst: DevicePtr,
        src: DevicePtr,
        bytes: usize,
    },
    /// A prefill matmul (or a chunk of its rows) on the runtime's vendor f16 GEMM.
    Gemm { label: String, gemm: GemmF16 },
}

/// Base addresses of the executor's allocations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceAddresses {
    pub weights: DevicePtr,
    pub arena: DevicePtr,
    /// Start of the KV cache: per layer, keys then values, each `kv_side_bytes` long.
    pub kv_cache: DevicePtr,
    pub kv_side_bytes: usize,
    /// The i32 I/O block (see `layout::IO_*`).
    pub io: DevicePtr,
    /// Where prefill matmuls run on the vendor GEMM: its staging buffers.
    pub staging: Option<Staging>,
}

/// Which logits rows a schedule computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// No epilogue at all: a prefill chunk followed by more chunks.
    None,
    /// The epilogue over the last token only; logits land in row 0.
    LastRow,
    /// The epilogue over every token.
    AllRows,
}

/// What to build: `n_tokens` tokens through the program, which logits, and whether to finish
/// with an argmax of the last logits row into the I/O block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleRequest {
    pub n_tokens: usize,
    pub logits: Logits,
    pub argmax: bool,
}

/// Resolves steps of one model into launches.
pub struct Scheduler<'a> {
    pub model: &'a Model,
    pub weights: &'a WeightLayout,
    pub arena: &'a ArenaLayout,
    pub addresses: DeviceAddresses,
    pub kernels: &'a dyn KernelTable,
    /// Runs of steps launched as one kernel (or kernel pair); see `graph::fuse`.
    pub fusions: &'a Fusions,
}

/// Per-section state: token count of the launches and the row each value is read from.
struct Rows {
    n_tokens: usize,
    /// Row offset of values not yet written in this section (the last token's row when only
    /// the last row goes through the epilogue), 0 for values written in it.
    carried_row: usize,
    written: Vec<bool>,
}

impl Rows {
    fn row(&self, value: ValueId) -> usize {
        if self.written[value] {
            0
        } else {
            self.carried_row
        }
    }
}

impl Scheduler<'_> {
    pub fn build(&self, request: ScheduleRequest) -> Result<Vec<Launch>, GpuError> {
        let program = &self.model.program;
        let n = request.n_tokens;
        let n_values = program.values.len();
        let mut launches = Vec::new();
        let mut rows = Rows {
            n_tokens: n,
            carried_row: 0,
            written: vec![false; n_values],
        };
        self.section(
            Section::Prologue,
            None,
            &program.prologue,
            &mut rows,
            &mut launches,
        )?;
        for layer in 0..self.model.hparams.n_layer {
            self.section(
                Section::Block,
                Some(layer),
                &program.block,
                &mut rows,
                &mut launches,
            )?;
        }
        let logits_row = match request.logits {
            Logits::None => return Ok(launches),
            Logits::AllRows => {
                self.section(
                    Section::Epilogue,
                    None,
                    &program.epilogue,
                    &mut rows,
                    &mut launches,
                )?;
                n - 1
            }
            Logits::LastRow => {
                let mut last = Rows {
                    n_tokens: 1,
                    carried_row: n - 1,
                    written: vec![false; n_values],
                };
                self.section(
                    Section::Epilogue,
                    None,
                    &program.epilogue,
                    &mut last,
                    &mut launches,
                )?;
                last.row(program.logits)
            }
        };
        if request.argmax {
            let site = StepSite {
                section: Section::Epilogue,
                index: program.epilogue.len().saturating_sub(1),
                layer: None,
            };
            let kernel = self.kernels.kernel(site, KernelRole::Argmax, 1)?;
            let n_vocab = self.arena.widths[program.logits];
            launches.push(Launch::Kernel {
                label: "argmax".to_string(),
                function: kernel.function,
                dims: kernel.dims,
                args: vec![
                    KernelArg::Ptr(self.value_ptr(program.logits, logits_row)),
                    KernelArg::Ptr(self.io_ptr(IO_ARGMAX)),
                    KernelArg::I32(n_vocab as i32),
                    KernelArg::Ptr(self.io_ptr(IO_TOKENS)),
                    KernelArg::Ptr(self.io_ptr(IO_POS0)),
                    KernelArg::Ptr(self.io_ptr(io_ring(self.arena.max_tokens))),
                    KernelArg::I32(FEED_RING as i32),
                    KernelArg::I32(n as i32),
                ],
            });
        }
        Ok(launches)
    }

    /// The launches of one step alone over `n_tokens` tokens, every value at row 0: for per-op
    /// tests and activation dumps. Where the step starts a fusion that applies at this token
    /// count, the launches of the whole fusion (see `fusion_at`); a step inside one is an error.
    pub fn single_step(&self, site: StepSite, n_tokens: usize) -> Result<Vec<Launch>, GpuError> {
        let program = &self.model.program;
        let steps = program.section(site.section);
        let step = steps.get(site.index).ok_or_else(|| GpuError::Step {
            step: format!("{site:?}"),
            op: "none",
            what: format!("the section has {} steps", steps.len()),
        })?;
        let rows = Rows {
            n_tokens,
            carried_row: 0,
            written: vec![false; program.values.len()],
        };
        let mut launches = Vec::new();
        match self.fusion_at(site, n_tokens) {
            Some(f) if f.first == site.index => self.fused(site, f, steps, &rows, &mut launches)?,
            Some(f) => {
                return Err(Self::step_error(
                    step,
                    format!(
                        "computed together with steps {}..{} from '{}'",
                        f.first,
                        f.first + f.len,
                        steps[f.first].name
                    ),
                ))
            }
            None => self.step(site, step, &rows, &mut launches)?,
        }
        Ok(launches)
    }

    fn fusion_at(&self, site: StepSite, n_tokens: usize) -> Option<&Fusion> {
        fusion_at(self.fusions, site, n_tokens)
    }

    fn section(
        &self,
        section: Section,
        layer: Option<usize>,
        steps: &[Step],
        rows: &mut Rows,
        out: &mut Vec<Launch>,
    ) -> Result<(), GpuError> {
        for (index, step) in steps.iter().enumerate() {
            let site = StepSite {
                section,
                index,
                layer,
            };
            match self.fusion_at(site, rows.n_tokens) {
                Some(f) if f.first == index => self.fused(site, f, steps, rows, out)?,
                Some(_) => {}
                None => self.step(site, step, rows, out)?,
            }
            for &o in &step.outputs {
                rows.written[o] = true;
            }
        }
        Ok(())
    }

    fn value_ptr(&self, value: ValueId, row: usize) -> DevicePtr {
        let offset = self.arena.offsets[value] + row * self.arena.widths[value] * 4;
        self.addresses.arena + offset as u64
    }

    fn io_ptr(&self, index: usize) -> DevicePtr {
        self.addresses.io + (index * 4) as u64
    }

    fn step_error(step: &Step, what: impl Into<String>) -> GpuError {
        GpuError::Step {
            step: step.name.clone(),
            op: step.op.name(),
            what: what.into(),
        }
    }

    /// The tensor a matmul step multiplies by (its first weight) in `layer`.
    fn matmul_weight(&self, step: &Step, layer: Option<usize>) -> Result<&TensorInfo, GpuError> {
        step.weights
            .first()
            .cloned()
            .flatten()
            .and_then(|role| self.model.weight(layer, &role))
            .ok_or_else(|| Self::step_error(step, "the matmul's weight is not bound"))
    }

    /// Device address and element count of the weight in `slot`, or None for an absent optional.
    fn weight(
        &self,
        step: &Step,
        layer: Option<usize>,
        slot: usize,
    ) -> Result<Option<(DevicePtr, u64)>, GpuError> {
        let Some(Some(role)) = step.weights.get(slot) else {
            return Ok(None);
        };
        let tensor = self
            .model
            .weight(layer, role)
            .ok_or_else(|| Self::step_error(step, format!("weight role '{role}' is not bound")))?;
        let offset = self.weights.offsets.get(&tensor.name).ok_or_else(|| {
            Self::step_error(step, format!("tensor '{}' was not uploaded", tensor.name))
        })?;
        Ok(Some((
            self.addresses.weights + *offset as u64,
            tensor.n_elements(),
        )))
    }

    fn required_weight(
        &self,
        step: &Step,
        layer: Option<usize>,
        slot: usize,
    ) -> Result<(DevicePtr, u64), GpuError> {
        self.weight(step, layer, slot)?
            .ok_or_else(|| Self::step_error(step, format!("weight slot {slot} is missing")))
    }

    /// The launches of the fusion starting at `site`.
    fn fused(
        &self,
        site: StepSite,
        fusion: &Fusion,
        steps: &[Step],
        rows: &Rows,
        out: &mut Vec<Launch>,
    ) -> Result<(), GpuError> {
        use KernelArg::{Ptr, I32};
        let n = rows.n_tokens;
        let read = |id: ValueId| self.value_ptr(id, rows.row(id));
        let write = |id: ValueId| self.value_ptr(id, 0);
        let pos0 = Ptr(self.io_ptr(IO_POS0));
        match &fusion.kind {
            FusionKind::Gemv(gemv) => {
                let args = self.gemv_args(site, steps, gemv, rows)?;
                let kernel = self.kernels.kernel(site, KernelRole::Main, n)?;
                out.push(Launch::Kernel {
                    label: format!("{} (fused x{})", steps[fusion.first].name, fusion.len),
                    function: kernel.function,
                    dims: kernel.dims,
                    args,
                });
            }
            FusionKind::RopeAttention {
                rope_q,
                rope_k,
                attention,
            } => {
                let (rq, rk, att) = (&steps[*rope_q], &steps[*rope_k], &steps[*attention]);
                let (k_cache, v_cache) = self.kv_cache(site, att)?;
                // Decode may rotate q and k, store k and v and attend in one kernel, as tuned.
                let role = KernelRole::RopeAttention;
                if Phase::of(n as u32) == Phase::Decode && self.kernels.has(site, role, n) {
                    let kernel = self.kernels.kernel(site, role, n)?;
                    out.push(Launch::Kernel {
                        label: format!("{} (fused rope)", att.name),
                        function: kernel.function,
                        dims: kernel.dims,
                        args: vec![
                            Ptr(read(rq.inputs[0])),
                            Ptr(read(rk.inputs[0])),
                            Ptr(read(att.inputs[2])),
                            Ptr(k_cache),
                            Ptr(v_cache),
                            Ptr(write(att.outputs[0])),
                            pos0,
                            I32(n as i32),
                        ],
                    });
                    return Ok(());
                }
                let store = self.kernels.kernel(site, KernelRole::RopeStore, n)?;
                out.push(Launch::Kernel {
                    label: format!("{} rope_store", att.name),
                    function: store.function,
                    dims: store.dims,
                    args: vec![
                        Ptr(read(rq.inputs[0])),
                        Ptr(read(rk.inputs[0])),
                        Ptr(read(att.inputs[2])),
                        Ptr(write(rq.outputs[0])),
                        Ptr(k_cache),
                        Ptr(v_cache),
                        pos0,
                        I32(n as i32),
                    ],
                });
                let kernel = self.kernels.kernel(site, KernelRole::Main, n)?;
                out.push(Launch::Kernel {
                    label: att.name.clone(),
                    function: kernel.function,
                    dims: kernel.dims,
                    args: vec![
                        Ptr(write(rq.outputs[0])),
                        Ptr(k_cache),
                        Ptr(v_cache),
                        Ptr(write(att.outputs[0])),
                        pos0,
                        I32(n as i32),
                    ],
                });
            }
        }
        Ok(())
    }

    /// Arguments of a fused GEMV (see the kernel ABI in `codegen::kernel_set`).
    fn gemv_args(
        &self,
        site: StepSite,
        steps: &[Step],
        gemv: &GemvFusion,
        rows: &Rows,
    ) -> Result<Vec<KernelArg>, GpuError> {
        use KernelArg::{Ptr, I32};
        let mut weights = [0; 3];
        let mut biases = [0; 3];
        let mut outputs = [0; 3];
        for (i, segment) in gemv.segments.iter().enumerate() {
            let step = &steps[segment.matmul];
            let tensor = self.matmul_weight(step, site.layer)?;
            let row_bytes = weight_layout(tensor.ty)
                .map(|l| l.row_bytes(tensor.dims[0] as usize))
                .ok_or_else(|| {
                    Self::step_error(step, format!("no GPU kernel reads {}", tensor.ty.name()))
                })?;
            let (w, _) = self.required_weight(step, site.layer, 0)?;
            weights[i] = w + (segment.first_row * row_bytes) as u64;
            biases[i] = self
                .weight(step, site.layer, 1)?
                .map_or(0, |(b, _)| b + (segment.first_row * 4) as u64);
            outputs[i] = self.value_ptr(segment.output, 0);
        }
        let norm_w = match gemv.norm {
            Some(n) => self.required_weight(&steps[n], site.layer, 0)?.0,
            None => 0,
        };
        let mut residual = 0;
        match gemv.epilogue {
            GemvEpilogue::Store => {}
            GemvEpilogue::Residual {
                residual: r,
                output,
            } => {
                residual = self.value_ptr(r, rows.row(r));
                outputs[0] = self.value_ptr(output, 0);
            }
            GemvEpilogue::SiluMul { output } => {
                outputs = [self.value_ptr(output, 0), 0, 0];
            }
        }
        let mut args: Vec<KernelArg> = weights.iter().chain(&biases).map(|&p| Ptr(p)).collect();
        args.extend([
            Ptr(self.value_ptr(gemv.input, rows.row(gemv.input))),
            Ptr(norm_w),
            Ptr(residual),
        ]);
        args.extend(outputs.iter().map(|&p| Ptr(p)));
        args.push(I32(rows.n_tokens as i32));
        Ok(args)
    }

    /// Base addresses of the K and V caches of the layer of `site`, where `attention` runs.
    fn kv_cache(
        &self,
        site: StepSite,
        attention: &Step,
    ) -> Result<(DevicePtr, DevicePtr), GpuError> {
        let layer = site
            .layer
            .ok_or_else(|| Self::step_error(attention, "attention outside the layer block"))?;
        let side = self.addresses.kv_side_bytes as u64;
        let k_cache = self.addresses.kv_cache + 2 * layer as u64 * side;
        Ok((k_cache, k_cache + side))
    }

    fn step(
        &self,
        site: StepSite,
        step: &Step,
        rows: &Rows,
        out: &mut Vec<Launch>,
    ) -> Result<(), GpuError> {
        use KernelArg::{Ptr, I32};
        let n = rows.n_tokens;
        let input_id = |i: usize| -> Result<ValueId, GpuError> {
            step.inputs
                .get(i)
                .copied()
                .ok_or_else(|| Self::step_error(step, format!("input {i} is missing")))
        };
        let output_id = |i: usize| -> Result<ValueId, GpuError> {
            step.outputs
                .get(i)
                .copied()
                .ok_or_else(|| Self::step_error(step, format!("output {i} is missing")))
        };
        let input = |i: usize| -> Result<DevicePtr, GpuError> {
            let id = input_id(i)?;
            Ok(self.value_ptr(id, rows.row(id)))
        };
        // Outputs are written at row 0 of the section's rows (the whole chunk, or the last token).
        let output =
            |i: usize| -> Result<DevicePtr, GpuError> { Ok(self.value_ptr(output_id(i)?, 0)) };
        let width = |id: ValueId| self.arena.widths[id];
        let pos0 = Ptr(self.io_ptr(IO_POS0));
        let n_i32 = I32(n as i32);
        let main_args = match step.op {
            Op::Embed => vec![
                Ptr(self.required_weight(step, site.layer, 0)?.0),
                Ptr(self.io_ptr(IO_TOKENS)),
                Ptr(output(0)?),
                n_i32,
            ],
            Op::RmsNorm | Op::HeadRmsNorm => {
                let (w, w_len) = self.required_weight(step, site.layer, 0)?;
                let in_width = width(input_id(0)?);
                if w_len == 0 || !(in_width as u64).is_multiple_of(w_len) {
                    return Err(Self::step_error(
                        step,
                        format!(
                            "input width {in_width} is not a multiple of weight length {w_len}"
                        ),
                    ));
                }
                let n_rows = n as u64 * (in_width as u64 / w_len);
                vec![Ptr(input(0)?), Ptr(w), Ptr(output(0)?), I32(n_rows as i32)]
            }
            Op::Matmul => {
                if output_id(0)? == input_id(0)? {
                    return Err(Self::step_error(step, "output overwrites its own input"));
                }
                if Phase::of(n as u32) == Phase::Decode {
                    // The decode GEMV with this one weight, no norm, its rows stored.
                    let plain = GemvFusion {
                        norm: None,
                        input: input_id(0)?,
                        segments: vec![GemvSegment {
                            matmul: site.index,
                            first_row: 0,
                            rows: width(output_id(0)?),
                            output: output_id(0)?,
                        }],
                        epilogue: GemvEpilogue::Store,
                    };
                    let steps = self.model.program.section(site.section);
                    self.gemv_args(site, steps, &plain, rows)?
                } else if self.vendor_gemm(site, step, input(0)?, output(0)?, n, out)? {
                    return Ok(());
                } else {
                    let (w, _) = self.required_weight(step, site.layer, 0)?;
                    let bias = self.weight(step, site.layer, 1)?.map_or(0, |(b, _)| b);
                    vec![Ptr(w), Ptr(input(0)?), Ptr(output(0)?), Ptr(bias), n_i32]
                }
            }
            Op::Split => {
                if !(2..=3).contains(&step.outputs.len()) {
                    return Err(Self::step_error(
                        step,
                        format!(
                            "{} outputs; the split kernel takes 2 or 3",
                            step.outputs.len()
                        ),
                    ));
                }
                let third = if step.outputs.len() == 3 {
                    output(2)?
                } else {
                    0
                };
                vec![
                    Ptr(input(0)?),
                    Ptr(output(0)?),
                    Ptr(output(1)?),
                    Ptr(third),
                    n_i32,
                ]
            }
            Op::Rope => {
                let (src, dst) = (input(0)?, output(0)?);
                if src != dst {
                    out.push(Launch::Copy {
                        dst,
                        src,
                        bytes: n * width(output_id(0)?) * 4,
                    });
                }
                vec![Ptr(dst), pos0, n_i32]
            }
            Op::Attention => {
                let (k_cache, v_cache) = self.kv_cache(site, step)?;
                let store = self.kernels.kernel(site, KernelRole::KvStore, n)?;
                out.push(Launch::Kernel {
                    label: format!("{} kv_store", step.name),
                    function: store.function,
                    dims: store.dims,
                    args: vec![
                        Ptr(input(1)?),
                        Ptr(input(2)?),
                        Ptr(k_cache),
                        Ptr(v_cache),
                        pos0,
                        n_i32,
                    ],
                });
                vec![
                    Ptr(input(0)?),
                    Ptr(k_cache),
                    Ptr(v_cache),
                    Ptr(output(0)?),
                    pos0,
                    n_i32,
                ]
            }
            Op::Add | Op::SiluMul => {
                let count = n * width(output_id(0)?);
                vec![
                    Ptr(input(0)?),
                    Ptr(input(1)?),
                    Ptr(output(0)?),
                    I32(count as i32),
                ]
            }
        };
        let kernel = self.kernels.kernel(site, KernelRole::Main, n)?;
        out.push(Launch::Kernel {
            label: step.name.clone(),
            function: kernel.function,
            dims: kernel.dims,
            args: main_args,
        });
        Ok(())
    }
}

/// The fusion the step at `site` belongs to for a launch over `n_tokens` tokens (GEMV fusions
/// apply to decode-sized launches only).
pub fn fusion_at(fusions: &Fusions, site: StepSite, n_tokens: usize) -> Option<&Fusion> {
    let decode = Phase::of(n_tokens as u32) == Phase::Decode;
    fusions.at(site.section, site.index, decode)
}

/// Queue every launch on the runtime's stream (or into a capture in progress).
///
/// # Safety
/// Every address in `launches` is live device memory of `runtime`, every function belongs to a
/// loaded module, and each argument list matches its kernel's signature.
pub unsafe fn enqueue(runtime: &dyn GpuRuntime, launches: &[Launch]) -> Result<(), RuntimeError> {
    let mut values: Vec<u64> = Vec::new();
    let mut params: Vec<*mut c_void> = Vec::new();
    for launch in launches {
        match launch {
            Launch::Copy { dst, src, bytes } => runtime.copy_dtod(*dst, *src, *bytes)?,
            Launch::Gemm { gemm, .. } => runtime.gemm_f16(gemm)?,
            Launch::Kernel {
                function,
                dims,
                args,
                ..
            } => {
                // Each parameter gets an 8-byte slot; an i32 is written through an i32 pointer
                // into its slot so the driver reads exactly its 4 bytes on any endianness.
                values.clear();
                values.resize(args.len(), 0);
                params.clear();
                for (slot, arg) in values.iter_mut().zip(args) {
                    let slot_ptr: *mut u64 = slot;
                    match *arg {
                        KernelArg::Ptr(p) => *slot_ptr = p,
                        KernelArg::I32(v) => *slot_ptr.cast::<i32>() = v,
                    }
                    params.push(slot_ptr.cast());
                }
                runtime.launch(*function, dims, &mut params)?;
            }
        }
    }
    Ok(())
}
