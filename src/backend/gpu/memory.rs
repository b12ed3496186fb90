//! Owning wrappers over runtime handles: each frees its resource exactly once, on drop.

use std::marker::PhantomData;
use std::sync::Arc;

use super::runtime::{
    DevicePtr, EventHandle, FunctionHandle, GpuRuntime, GraphHandle, ModuleHandle, RuntimeError,
};

/// Plain data that may be copied to and from the device byte for byte.
///
/// # Safety
/// Implementors have no padding and every bit pattern is a valid value.
pub unsafe trait DeviceCopy: Copy + Default + 'static {}

// SAFETY: primitive numbers: no padding, every bit pattern valid.
unsafe impl DeviceCopy for u8 {}
// SAFETY: as above.
unsafe impl DeviceCopy for i8 {}
// SAFETY: as above.
unsafe impl DeviceCopy for u16 {}
// SAFETY: as above.
unsafe impl DeviceCopy for i16 {}
// SAFETY: as above.
unsafe impl DeviceCopy for u32 {}
// SAFETY: as above.
unsafe impl DeviceCopy for i32 {}
// SAFETY: as above.
unsafe impl DeviceCopy for u64 {}
// SAFETY: as above.
unsafe impl DeviceCopy for f32 {}
// SAFETY: `half::f16` is a transparent u16.
unsafe impl DeviceCopy for half::f16 {}

fn as_bytes<T: DeviceCopy>(data: &[T]) -> &[u8] {
    // SAFETY: DeviceCopy types have no padding; u8 has alignment 1; the length covers exactly
    // the same memory.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

fn as_bytes_mut<T: DeviceCopy>(data: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`, and every byte pattern written back is a valid T (DeviceCopy).
    unsafe {
        std::slice::from_raw_parts_mut(data.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(data))
    }
}

/// A device allocation of `len` values of `T`.
pub struct DeviceBuffer<T: DeviceCopy> {
    runtime: Arc<dyn GpuRuntime>,
    ptr: DevicePtr,
    len: usize,
    _marker: PhantomData<T>,
}

impl<T: DeviceCopy> DeviceBuffer<T> {
    /// Allocate `len` values, contents undefined.
    pub fn alloc(runtime: &Arc<dyn GpuRuntime>, len: usize) -> Result<Self, RuntimeError> {
        let bytes = len.checked_mul(std::mem::size_of::<T>()).ok_or_else(|| {
            RuntimeError::InvalidArgument {
                call: "alloc",
                reason: format!("{len} elements overflow usize bytes"),
            }
        })?;
        // Zero-size allocations are not portable across vendors; one byte keeps a valid address.
        let ptr = runtime.alloc(bytes.max(1))?;
        Ok(Self {
            runtime: runtime.clone(),
            ptr,
            len,
            _marker: PhantomData,
        })
    }

    /// Allocate and fill with zero bytes.
    pub fn zeroed(runtime: &Arc<dyn GpuRuntime>, len: usize) -> Result<Self, RuntimeError> {
        let buffer = Self::alloc(runtime, len)?;
        // SAFETY: the range is exactly the allocation just made.
        unsafe { runtime.memset_zero(buffer.ptr, buffer.bytes())? };
        Ok(buffer)
    }

    /// Allocate and copy `data` in.
    pub fn from_host(runtime: &Arc<dyn GpuRuntime>, data: &[T]) -> Result<Self, RuntimeError> {
        let mut buffer = Self::alloc(runtime, data.len())?;
        buffer.copy_from_host(data)?;
        Ok(buffer)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> usize {
        self.len * std::mem::size_of::<T>()
    }

    /// The raw device address, for kernel arguments.
    pub fn ptr(&self) -> DevicePtr {
        self.ptr
    }

    /// Device address of element `index` (may equal `len` for an end address).
    pub fn ptr_at(&self, index: usize) -> DevicePtr {
        assert!(
            index <= self.len,
            "device index {index} past length {}",
            self.len
        );
        self.ptr + (index * std::mem::size_of::<T>()) as u64
    }

    /// Copy `data` into the start of the buffer.
    pub fn copy_from_host(&mut self, data: &[T]) -> Result<(), RuntimeError> {
        self.copy_from_host_at(0, data)
    }

    /// Copy `data` into the buffer starting at element `offset`.
    pub fn copy_from_host_at(&mut self, offset: usize, data: &[T]) -> Result<(), RuntimeError> {
        self.check_range("copy_htod", offset, data.len())?;
        // SAFETY: the range was checked to lie inside this live allocation.
        unsafe { self.runtime.copy_htod(self.ptr_at(offset), as_bytes(data)) }
    }

    /// Copy `out.len()` values starting at element `offset` back to the host (waits).
    pub fn copy_to_host_at(&self, offset: usize, out: &mut [T]) -> Result<(), RuntimeError> {
        self.check_range("copy_dtoh", offset, out.len())?;
        // SAFETY: the range was checked to lie inside this live allocation.
        unsafe {
            self.runtime
                .copy_dtoh(as_bytes_mut(out), self.ptr_at(offset))
        }
    }

    /// The whole buffer back on the host (waits).
    pub fn to_host(&self) -> Result<Vec<T>, RuntimeError> {
        let mut out = vec![T::default(); self.len];
        self.copy_to_host_at(0, &mut out)?;
        Ok(out)
    }

    fn check_range(
        &self,
        call: &'static str,
        offset: usize,
        count: usize,
    ) -> Result<(), RuntimeError> {
        match offset.checked_add(count) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(RuntimeError::InvalidArgument {
                call,
                reason: format!(
                    "elements {offset}..{offset}+{count} outside a buffer of {}",
                    self.len
                ),
            }),
        }
    }
}

impl<T: DeviceCopy> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        // Work queued on the stream may still read this buffer: wait before freeing. A failure
        // here can only be reported, not recovered, and drop cannot return it.
        let _ = self.runtime.synchronize();
        // SAFETY: `ptr` came from alloc, is freed only here, and the stream is idle.
        let _ = unsafe { self.runtime.free(self.ptr) };
    }
}

/// A loaded module; its functions stay valid while it lives.
pub struct Module {
    runtime: Arc<dyn GpuRuntime>,
    handle: ModuleHandle,
}

impl Module {
    pub fn load(runtime: &Arc<dyn GpuRuntime>, image: &[u8]) -> Result<Self, RuntimeError> {
        let handle = runtime.load_module(image)?;
        Ok(Self {
            runtime: runtime.clone(),
            handle,
        })
    }

    /// An entry point of this module. The returned handle must not outlive the module: keep the
    /// module alive beside it (the executor holds both in one struct).
    pub fn function(&self, name: &str) -> Result<FunctionHandle, RuntimeError> {
        // SAFETY: the module is loaded for as long as `self` lives.
        unsafe { self.runtime.get_function(self.handle, name) }
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        let _ = self.runtime.synchronize();
        // SAFETY: loaded by `load`, unloaded only here, the stream is idle.
        let _ = unsafe { self.runtime.unload_module(self.handle) };
    }
}

/// A timing event.
pub struct Event {
    runtime: Arc<dyn GpuRuntime>,
    handle: EventHandle,
}

impl Event {
    pub fn new(runtime: &Arc<dyn GpuRuntime>) -> Result<Self, RuntimeError> {
        Ok(Self {
            runtime: runtime.clone(),
            handle: runtime.event_create()?,
        })
    }

    /// Mark the current end of the stream.
    pub fn record(&self) -> Result<(), RuntimeError> {
        // SAFETY: the event lives as long as `self`.
        unsafe { self.runtime.event_record(self.handle) }
    }

    /// Milliseconds from `self` to `end`, both recorded; waits for `end`.
    pub fn elapsed_ms(&self, end: &Event) -> Result<f32, RuntimeError> {
        // SAFETY: both events are alive; `record` puts them on the runtime's only stream.
        unsafe { self.runtime.event_elapsed_ms(self.handle, end.handle) }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: created in `new`, destroyed only here.
        let _ = unsafe { self.runtime.event_destroy(self.handle) };
    }
}

/// A captured, instantiated graph.
pub struct Graph {
    runtime: Arc<dyn GpuRuntime>,
    handle: GraphHandle,
}

impl Graph {
    /// Capture everything `record` queues on the stream into a graph (nothing runs now).
    /// `record` must only queue stream work: no allocation, no synchronization, no host copies
    /// back.
    pub fn capture<E: From<RuntimeError>>(
        runtime: &Arc<dyn GpuRuntime>,
        record: impl FnOnce() -> Result<(), E>,
    ) -> Result<Self, E> {
        runtime.begin_capture()?;
        let recorded = record();
        // Always end the capture, even after a failed launch, so the stream is usable again.
        let ended = runtime.end_capture();
        match (recorded, ended) {
            (Ok(()), Ok(handle)) => Ok(Self {
                runtime: runtime.clone(),
                handle,
            }),
            (Ok(()), Err(e)) => Err(e.into()),
            (Err(e), Ok(handle)) => {
                // SAFETY: just instantiated, never launched, not used afterwards.
                let _ = unsafe { runtime.graph_destroy(handle) };
                Err(e)
            }
            // The first error is the cause; the failed end of capture only follows from it.
            (Err(e), Err(_)) => Err(e),
        }
    }

    /// Replay the graph on the stream.
    ///
    /// # Safety
    /// Every device address captured in the graph is still allocated.
    pub unsafe fn launch(&self) -> Result<(), RuntimeError> {
        self.runtime.graph_launch(self.handle)
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        let _ = self.runtime.synchronize();
        // SAFETY: instantiated by `capture`, destroyed only here, the stream is idle.
        let _ = unsafe { self.runtime.graph_destroy(self.handle) };
    }
}
