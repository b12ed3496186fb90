//! The GPU executor shared by the CUDA and HIP runtimes: weights uploaded once in their GGUF
//! formats, an f16 KV cache and an activation arena on the device, prefill as a launch list over
//! chunks of tokens, and decode captured once into a graph and replayed with the position read
//! from device memory.

use std::sync::Arc;

use super::error::GpuError;
use super::kernels::KernelTable;
use super::kernels::StepSite;
use super::layout::{
    self, ArenaLayout, MemoryBudget, WeightLayout, FEED_RING, IO_ARGMAX, IO_POS0, IO_TOKENS,
};
use super::memory::{DeviceBuffer, Graph};
use super::runtime::{DevicePtr, GpuRuntime};
use super::schedule::{
    self, enqueue, DeviceAddresses, Launch, Logits, ScheduleRequest, Scheduler, Staging,
};
use super::staging::staging_sizes;
use crate::backend::{check_forward, check_greedy_run, Backend, BackendError};
use crate::graph::{Fusion, Fusions, ValueId};
use crate::plan::Model;

/// Default largest number of tokens one launch list covers; longer prompts run in chunks.
pub const DEFAULT_MAX_CHUNK: usize = 512;
/// Decode steps per graph in greedy runs: one host round trip (launch, copy back, wake-up) per
/// this many tokens instead of per token. At most `FEED_RING`, where the results wait.
pub const RUN_STEPS: usize = 8;
const _: () = assert!(RUN_STEPS <= FEED_RING);

/// Sizes the executor is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Context size: KV cache positions (the attention kernels must be built for the same).
    pub n_ctx: usize,
    /// Most tokens per prefill launch list; sizes the activation arena.
    pub max_chunk: usize,
    /// Capture decode steps into a graph (off only to compare against plain launches).
    pub use_graph: bool,
    /// Launch the kernels of a decode step as dependents of the kernel before them where the
    /// device can (CUDA programmatic dependent launch): each starts under its predecessor's
    /// tail. `rocmforge tune` measures it per model; prefill never uses it (on an H200 chains
    /// of large GEMMs lost 4-16% that way).
    pub dependent_decode: bool,
    /// Run prefill matmuls on the runtime's vendor f16 GEMM (weights dequantized to f16 staging
    /// buffers first) instead of the tile kernels; only where the runtime has one.
    pub vendor_gemm: bool,
}

impl ExecutorConfig {
    pub fn new(n_ctx: usize) -> Self {
        Self {
            n_ctx,
            max_chunk: DEFAULT_MAX_CHUNK.min(n_ctx.max(1)),
            use_graph: true,
            dependent_decode: false,
            vendor_gemm: false,
        }
    }
}

/// The memory an executor would allocate for `model` at `config`, before allocating any.
pub fn memory_budget(model: &Model, config: &ExecutorConfig) -> MemoryBudget {
    let tensors = model.bound_tensors();
    MemoryBudget {
        weights: WeightLayout::new(&tensors).total,
        kv_cache: layout::kv_total_bytes(&model.hparams, config.n_ctx),
        arena: ArenaLayout::new(&model.program.values, config.max_chunk).total,
        io: layout::align_up(layout::io_len(config.max_chunk) * 4),
        staging: if config.vendor_gemm {
            staging_sizes(model, config.max_chunk).map_or(0, |s| s.bytes())
        } else {
            0
        },
    }
}

/// The budget of `model` at `config`, or an error saying how much is needed and how much is free.
pub fn check_memory(
    runtime: &dyn GpuRuntime,
    model: &Model,
    config: &ExecutorConfig,
) -> Result<MemoryBudget, GpuError> {
    let budget = memory_budget(model, config);
    let free = runtime.mem_info()?.free as u64;
    if budget.total() > free {
        return Err(GpuError::OutOfMemory {
            device: runtime.info().to_string(),
            needed: budget.total(),
            free,
            detail: budget.describe(),
        });
    }
    Ok(budget)
}

pub struct GpuBackend {
    // Fields drop in declaration order. The decode graph refers to the kernels' functions and to
    // raw addresses of the buffers below, so they go first, then the modules, then the memory.
    /// Decode graphs by their number of steps (1, and `RUN_STEPS` fed by the argmax).
    decode_graphs: Vec<(usize, Graph)>,
    kernels: Box<dyn KernelTable>,
    io: DeviceBuffer<i32>,
    _weights: DeviceBuffer<u8>,
    _kv_cache: DeviceBuffer<u8>,
    _arena: DeviceBuffer<u8>,
    _staging: Option<DeviceBuffer<u8>>,
    runtime: Arc<dyn GpuRuntime>,
    model: Arc<Model>,
    config: ExecutorConfig,
    weight_layout: WeightLayout,
    arena_layout: ArenaLayout,
    addresses: DeviceAddresses,
    fusions: Fusions,
}

impl GpuBackend {
    /// Upload `model` and allocate its cache and activations on `runtime`'s device. `kernels`
    /// must be built for this model, this device and `config.n_ctx`.
    pub fn new(
        runtime: Arc<dyn GpuRuntime>,
        model: Arc<Model>,
        kernels: Box<dyn KernelTable>,
        config: ExecutorConfig,
    ) -> Result<Self, GpuError> {
        if config.n_ctx == 0 || config.max_chunk == 0 {
            return Err(GpuError::Device {
                spec: runtime.info().to_string(),
                what: format!(
                    "context size {} and chunk {} must both be at least 1",
                    config.n_ctx, config.max_chunk
                ),
            });
        }
        let budget = check_memory(runtime.as_ref(), &model, &config)?;
        let tensors = model.bound_tensors();
        let weight_layout = WeightLayout::new(&tensors);
        let mut weights = DeviceBuffer::<u8>::alloc(&runtime, weight_layout.total)?;
        for t in &tensors {
            weights.copy_from_host_at(weight_layout.offsets[&t.name], model.weight_bytes(t))?;
        }
        // A zeroed cache keeps never-written positions finite; attention never reads them, but a
        // wrong kernel then shows as a parity failure instead of NaNs.
        let kv_cache = DeviceBuffer::<u8>::zeroed(&runtime, budget.kv_cache)?;
        let arena_layout = ArenaLayout::new(&model.program.values, config.max_chunk);
        let arena = DeviceBuffer::<u8>::zeroed(&runtime, arena_layout.total)?;
        let io = DeviceBuffer::<i32>::zeroed(&runtime, layout::io_len(config.max_chunk))?;
        let staged = match staging_sizes(&model, config.max_chunk) {
            Some(sizes) if config.vendor_gemm => {
                if runtime.gemm_f16_library().is_none() {
                    return Err(GpuError::Device {
                        spec: runtime.info().to_string(),
                        what: "prefill on the vendor GEMM was asked for, but this runtime has no \
                               vendor GEMM library"
                            .to_string(),
                    });
                }
                let buffer = DeviceBuffer::<u8>::alloc(&runtime, sizes.bytes())?;
                let staging = Staging {
                    weights: buffer.ptr(),
                    weight_values: sizes.weight_values,
                    input: buffer.ptr() + 2 * sizes.weight_values as u64,
                };
                Some((buffer, staging))
            }
            _ => None,
        };
        runtime.synchronize()?;
        let fusions = Fusions::of(&model.program);
        let addresses = DeviceAddresses {
            weights: weights.ptr(),
            arena: arena.ptr(),
            kv_cache: kv_cache.ptr(),
            kv_side_bytes: layout::kv_side_bytes(&model.hparams, config.n_ctx),
            io: io.ptr(),
            staging: staged.as_ref().map(|(_, s)| *s),
        };
        Ok(Self {
            runtime,
            model,
            kernels,
            config,
            weight_layout,
            arena_layout,
            addresses,
            fusions,
            decode_graphs: Vec::new(),
            io,
            _weights: weights,
            _kv_cache: kv_cache,
            _arena: arena,
            _staging: staged.map(|(b, _)| b),
        })
    }

    pub fn runtime(&self) -> &Arc<dyn GpuRuntime> {
        &self.runtime
    }

    /// Whether prefill matmuls run on the runtime's vendor GEMM rather than the tile kernels.
    pub fn vendor_gemm(&self) -> bool {
        self.addresses.staging.is_some()
    }

    fn scheduler(&self) -> Scheduler<'_> {
        Scheduler {
            model: &self.model,
            weights: &self.weight_layout,
            arena: &self.arena_layout,
            addresses: self.addresses,
            kernels: self.kernels.as_ref(),
            fusions: &self.fusions,
        }
    }

    /// The launches of one step alone over `n_tokens` tokens, every value at row 0, as
    /// `run_single_step` runs them (the tuner times the kernels of these lists).
    pub fn step_launches(&self, site: StepSite, n_tokens: usize) -> Result<Vec<Launch>, GpuError> {
        self.scheduler().single_step(site, n_tokens)
    }

    /// Swap in another kernel table built for the same model, device and context size (the
    /// tuner times candidates this way). Waits for queued work and drops the captured decode
    /// graph, which refers to the old table's functions; returns the old table.
    pub fn replace_kernels(
        &mut self,
        kernels: Box<dyn KernelTable>,
    ) -> Result<Box<dyn KernelTable>, GpuError> {
        self.runtime.synchronize()?;
        self.drop_graphs();
        Ok(std::mem::replace(&mut self.kernels, kernels))
    }

    /// The launch list for a request, as the executor would run it.
    pub fn schedule(&self, request: ScheduleRequest) -> Result<Vec<Launch>, GpuError> {
        let mut launches = self.scheduler().build(request)?;
        let dependent = self.config.dependent_decode && request.n_tokens == 1;
        for launch in &mut launches {
            if let Launch::Kernel { dims, .. } = launch {
                dims.dependent &= dependent;
            }
        }
        Ok(launches)
    }

    /// Switches dependent decode launches on or off (the next decode step recaptures its graph).
    pub fn set_dependent_decode(&mut self, on: bool) -> Result<(), GpuError> {
        self.runtime.synchronize()?;
        self.drop_graphs();
        self.config.dependent_decode = on;
        Ok(())
    }

    fn drop_graphs(&mut self) {
        self.decode_graphs.clear();
    }

    /// The fusion the step at `site` belongs to for a launch over `n_tokens` tokens: run it
    /// through `run_single_step` at the fusion's first step.
    pub fn fusion_at(&self, site: StepSite, n_tokens: usize) -> Option<&Fusion> {
        schedule::fusion_at(&self.fusions, site, n_tokens)
    }

    pub fn addresses(&self) -> DeviceAddresses {
        self.addresses
    }

    pub fn arena_layout(&self) -> &ArenaLayout {
        &self.arena_layout
    }

    pub fn weight_layout(&self) -> &WeightLayout {
        &self.weight_layout
    }

    /// Overwrite the first rows of a value (`data.len()` must be a whole number of rows).
    pub fn set_value_rows(&mut self, value: ValueId, data: &[f32]) -> Result<(), GpuError> {
        let bytes = self.value_region(value, data.len())?;
        // SAFETY: the range was checked to lie in the value's arena region; f32 to bytes is a
        // plain reinterpretation.
        unsafe {
            let src = std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), bytes.1);
            self.runtime.copy_htod(bytes.0, src)?;
        }
        Ok(())
    }

    /// The first `n_tokens` rows of a value (waits for queued work).
    pub fn value_rows(&self, value: ValueId, n_tokens: usize) -> Result<Vec<f32>, GpuError> {
        let mut out = vec![0f32; n_tokens * self.arena_layout.widths[value]];
        let (ptr, bytes) = self.value_region(value, out.len())?;
        // SAFETY: as in `set_value_rows`, in the other direction.
        unsafe {
            let dst = std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), bytes);
            self.runtime.copy_dtoh(dst, ptr)?;
        }
        Ok(out)
    }

    fn value_region(&self, value: ValueId, floats: usize) -> Result<(DevicePtr, usize), GpuError> {
        let width = *self
            .arena_layout
            .widths
            .get(value)
            .ok_or_else(|| GpuError::Device {
                spec: self.name(),
                what: format!("value {value} is not in the program"),
            })?;
        if !floats.is_multiple_of(width) || floats / width > self.arena_layout.max_tokens {
            return Err(GpuError::Device {
                spec: self.name(),
                what: format!(
                    "{floats} floats are not whole rows of width {width} within {} tokens",
                    self.arena_layout.max_tokens
                ),
            });
        }
        let ptr = self.addresses.arena + self.arena_layout.offsets[value] as u64;
        Ok((ptr, floats * 4))
    }

    /// Keys and values cached for positions `0..n_pos` of a layer, as f32.
    pub fn kv_rows(&self, layer: usize, n_pos: usize) -> Result<(Vec<f32>, Vec<f32>), GpuError> {
        let width = self.model.hparams.kv_width();
        if layer >= self.model.hparams.n_layer || n_pos > self.config.n_ctx {
            return Err(GpuError::Device {
                spec: self.name(),
                what: format!("layer {layer}, {n_pos} positions: outside the KV cache"),
            });
        }
        let side = self.addresses.kv_side_bytes as u64;
        let read = |addr: DevicePtr| -> Result<Vec<f32>, GpuError> {
            let mut halves = vec![half::f16::ZERO; n_pos * width];
            // SAFETY: n_pos rows of the layer's cache side, checked above; f16 is plain data.
            unsafe {
                let dst = std::slice::from_raw_parts_mut(
                    halves.as_mut_ptr().cast::<u8>(),
                    halves.len() * 2,
                );
                self.runtime.copy_dtoh(dst, addr)?;
            }
            Ok(halves.iter().map(|h| h.to_f32()).collect())
        };
        let k = self.addresses.kv_cache + 2 * layer as u64 * side;
        Ok((read(k)?, read(k + side)?))
    }

    /// Run one step of the program alone over `tokens` at `pos0`, reading and writing values at
    /// row 0 (set its inputs with `set_value_rows` first). Waits for completion.
    pub fn run_single_step(
        &mut self,
        site: StepSite,
        tokens: &[u32],
        pos0: usize,
    ) -> Result<(), GpuError> {
        check_forward(tokens, pos0, self.config.n_ctx, self.model.hparams.n_vocab).map_err(
            |e| GpuError::Device {
                spec: self.name(),
                what: e.to_string(),
            },
        )?;
        self.write_inputs(tokens, pos0)?;
        let launches = self.scheduler().single_step(site, tokens.len())?;
        self.run(&launches)?;
        self.runtime.synchronize()?;
        Ok(())
    }

    fn write_inputs(&mut self, tokens: &[u32], pos0: usize) -> Result<(), GpuError> {
        let mut block = Vec::with_capacity(IO_TOKENS + tokens.len());
        block.resize(IO_TOKENS, 0);
        block[IO_POS0] = pos0 as i32;
        block.extend(tokens.iter().map(|&t| t as i32));
        self.io.copy_from_host(&block)?;
        Ok(())
    }

    fn run(&self, launches: &[Launch]) -> Result<(), GpuError> {
        // SAFETY: the schedule only addresses this executor's live buffers and the kernel
        // table's loaded functions, with argument lists built to the kernel ABI.
        unsafe { enqueue(self.runtime.as_ref(), launches)? };
        Ok(())
    }

    /// One decode step through the captured graph (captured on first use).
    fn decode_step(&mut self, token: u32, pos0: usize) -> Result<(), GpuError> {
        self.write_inputs(&[token], pos0)?;
        self.decode_steps(1)
    }

    /// `steps` decode steps from the token and position in the I/O block, each fed the argmax
    /// of the one before (see `layout::FEED_RING`): 1 or `RUN_STEPS`, each a graph captured on
    /// first use.
    fn decode_steps(&mut self, steps: usize) -> Result<(), GpuError> {
        if !self.config.use_graph {
            let launches = self.schedule(decode_request())?;
            for _ in 0..steps {
                self.run(&launches)?;
            }
            return Ok(());
        }
        if !self.decode_graphs.iter().any(|(n, _)| *n == steps) {
            let launches = self.schedule(decode_request())?;
            let runtime = self.runtime.clone();
            let graph = Graph::capture(&runtime, || {
                (0..steps).try_for_each(|_| self.run(&launches))
            })?;
            self.decode_graphs.push((steps, graph));
        }
        if let Some((_, graph)) = self.decode_graphs.iter().find(|(n, _)| *n == steps) {
            // SAFETY: the graph captured addresses of buffers owned by `self`, still allocated.
            unsafe { graph.launch()? };
        }
        Ok(())
    }

    /// Runs `tokens` from `pos0`; the logits (and argmax) of the request end up on the device.
    fn run_tokens(
        &mut self,
        tokens: &[u32],
        pos0: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, GpuError> {
        let n_vocab = self.model.hparams.n_vocab;
        let logits_id = self.model.program.logits;
        if tokens.len() == 1 && !all_logits {
            self.decode_step(tokens[0], pos0)?;
            return Ok(Vec::new());
        }
        let mut logits = Vec::new();
        let chunks: Vec<&[u32]> = tokens.chunks(self.config.max_chunk).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let request = ScheduleRequest {
                n_tokens: chunk.len(),
                logits: match (all_logits, last) {
                    (true, _) => Logits::AllRows,
                    (false, true) => Logits::LastRow,
                    (false, false) => Logits::None,
                },
                argmax: last,
            };
            self.write_inputs(chunk, pos0 + i * self.config.max_chunk)?;
            let launches = self.schedule(request)?;
            self.run(&launches)?;
            if all_logits {
                let mut rows = vec![0f32; chunk.len() * n_vocab];
                self.copy_logits(logits_id, &mut rows)?;
                logits.extend_from_slice(&rows);
            }
        }
        Ok(logits)
    }

    fn copy_logits(&self, logits_id: usize, out: &mut [f32]) -> Result<(), GpuError> {
        let ptr = self.addresses.arena + self.arena_layout.offsets[logits_id] as u64;
        let bytes = std::mem::size_of_val(out);
        // SAFETY: the logits region holds max_chunk rows of n_vocab f32; callers ask for at
        // most one chunk. u8 and f32 share the memory exactly (f32 has no invalid patterns).
        unsafe {
            let dst = std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), bytes);
            self.runtime.copy_dtoh(dst, ptr)?;
        }
        Ok(())
    }

    fn argmax_result(&self) -> Result<u32, GpuError> {
        let mut id = [0i32];
        self.io.copy_to_host_at(IO_ARGMAX, &mut id)?;
        Ok(id[0].max(0) as u32)
    }
}

fn decode_request() -> ScheduleRequest {
    ScheduleRequest {
        n_tokens: 1,
        logits: Logits::LastRow,
        argmax: true,
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        self.runtime.info().to_string()
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        pos0: usize,
        all_logits: bool,
    ) -> Result<Vec<f32>, BackendError> {
        check_forward(tokens, pos0, self.config.n_ctx, self.model.hparams.n_vocab)?;
        let logits = self.run_tokens(tokens, pos0, all_logits)?;
        if all_logits {
            return Ok(logits);
        }
        let mut row = vec![0f32; self.model.hparams.n_vocab];
        self.copy_logits(self.model.program.logits, &mut row)?;
        Ok(row)
    }

    fn forward_argmax(&mut self, tokens: &[u32], pos0: usize) -> Result<u32, BackendError> {
        check_forward(tokens, pos0, self.config.n_ctx, self.model.hparams.n_vocab)?;
        self.run_tokens(tokens, pos0, false)?;
        Ok(self.argmax_result()?)
    }

    /// Runs of `RUN_STEPS` steps in one graph while that many are wanted, single steps for the
    /// rest; the host reads each run's results from the ring with one copy.
    fn greedy_run(
        &mut self,
        token: u32,
        pos0: usize,
        max_tokens: usize,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<(), BackendError> {
        let n_ctx = self.config.n_ctx;
        check_greedy_run(pos0, max_tokens, n_ctx)?;
        if max_tokens == 0 {
            return Ok(());
        }
        check_forward(&[token], pos0, n_ctx, self.model.hparams.n_vocab)?;
        self.write_inputs(&[token], pos0)?;
        let ring_at = layout::io_ring(self.config.max_chunk);
        let mut ring = [0i32; FEED_RING];
        let mut pos = pos0;
        let mut done = 0;
        while done < max_tokens {
            let steps = if max_tokens - done >= RUN_STEPS {
                RUN_STEPS
            } else {
                1
            };
            self.decode_steps(steps)?;
            self.io
                .copy_to_host_at(ring_at, &mut ring)
                .map_err(GpuError::from)?;
            for p in pos..pos + steps {
                done += 1;
                if !on_token(ring[p % FEED_RING].max(0) as u32) {
                    return Ok(());
                }
            }
            pos += steps;
        }
        Ok(())
    }

    fn max_ctx(&self) -> usize {
        self.config.n_ctx
    }

    fn bandwidth(&mut self) -> Option<f64> {
        super::bandwidth::measure_copy_bandwidth(&self.runtime).ok()
    }
}
