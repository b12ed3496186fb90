//! What both GPU backends share: the runtime surface, owning device wrappers and the executor.

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

pub use device::{select_device, DeviceSpec, SelectedDevice};
pub use error::GpuError;
pub use executor::{check_memory, memory_budget, ExecutorConfig, GpuBackend};
pub use kernels::{KernelLaunch, KernelRole, KernelTable, Section, StepSite};
pub use loaded::{KernelBinary, KernelSelector, LoadedKernelTable};
pub use memory::{DeviceBuffer, DeviceCopy, Event, Graph, Module};
pub use runtime::{
    DeviceInfo, DevicePtr, GpuPlatform, GpuRuntime, LaunchDims, MemInfo, RuntimeError,
};
