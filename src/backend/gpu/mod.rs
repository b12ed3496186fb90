//! What both GPU backends share: the runtime surface, owning device wrappers and the executor.
//!
//! ```text
//! select_device("auto" | "cuda[:N]" | "hip[:N]" | "cpu")  -> SelectedDevice::Gpu(Arc<dyn GpuRuntime>)
//! GpuBackend::load(runtime, model, ExecutorConfig::new(n_ctx))   (load_tuned: with a TuningChoice;
//!                                           open_backend_tuned takes it from the tuning database)
//!     check_memory            weights + KV cache + arena vs free memory, before anything else
//!     compiled::compile_kernel_table   kernel set (codegen) -> NVRTC/HIPRTC through the cache
//!                                      -> LoadedKernelTable (modules + per-step selection)
//!     GpuBackend::new         upload weights (GGUF bytes), zeroed f16 KV cache and arena
//! Backend::forward / forward_argmax
//!     1 token:  copy [pos0, -, token] to the I/O block, replay the decode graph (captured once)
//!     n tokens: chunks of max_chunk through schedule::Scheduler's launch list; the epilogue only
//!               on the last chunk, over its last row unless all logits are asked for
//! ```

pub mod bandwidth;
pub mod compiled;
pub mod device;
pub mod error;
pub mod executor;
pub mod kernels;
pub mod layout;
pub mod loaded;
pub mod memory;
pub mod runtime;
pub mod schedule;
pub mod staging;

pub use device::{
    open_backend, open_backend_tuned, prefill_on_vendor_gemm, select_device, DeviceSpec,
    SelectedDevice, Tuning,
};
pub use error::GpuError;
pub use executor::{check_memory, memory_budget, ExecutorConfig, GpuBackend, RUN_STEPS};
pub use kernels::{KernelLaunch, KernelRole, KernelTable, Section, StepSite};
pub use loaded::{KernelBinary, KernelSelector, LoadedKernelTable};
pub use memory::{DeviceBuffer, DeviceCopy, Event, Graph, Module};
pub use runtime::{
    DeviceInfo, DevicePtr, GemmF16, GpuPlatform, GpuRuntime, LaunchDims, MemInfo, RuntimeError,
};
