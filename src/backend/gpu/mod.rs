//! What both GPU backends share: the runtime surface, owning device wrappers and the executor.

pub mod memory;
pub mod runtime;

pub use memory::{DeviceBuffer, DeviceCopy, Event, Graph, Module};
pub use runtime::{
    DeviceInfo, DevicePtr, GpuPlatform, GpuRuntime, LaunchDims, MemInfo, RuntimeError,
};
