//! The small surface the GPU executor needs from a vendor runtime (CUDA driver or HIP).
//!
//! Both runtimes are thin mirrors of each other: one device, one stream, raw device addresses,
//! modules loaded from compiled binaries, kernel launches with raw argument pointers, events for
//! timing and stream capture into a replayable graph. Everything is ordered on the one stream, so
//! the executor never needs events for correctness, only for timing.
//!
//! Handles are plain numbers so that the trait stays object safe and both vendors fit; the RAII
//! wrappers in [`super::memory`] own them and free them exactly once.

use std::ffi::c_void;
use std::fmt;

/// A device address (CUdeviceptr / hipDeviceptr_t), 0 = null.
pub type DevicePtr = u64;

/// A loaded module (CUmodule / hipModule_t).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleHandle(pub u64);

/// A kernel entry point of a loaded module; valid while its module is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FunctionHandle(pub u64);

/// A timing event (CUevent / hipEvent_t).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventHandle(pub u64);

/// A captured graph and its executable instance (CUgraph + CUgraphExec / hip equivalents).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GraphHandle {
    pub graph: u64,
    pub exec: u64,
}

/// Which vendor runtime drives the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GpuPlatform {
    Cuda,
    Hip,
}

impl GpuPlatform {
    pub fn name(self) -> &'static str {
        match self {
            GpuPlatform::Cuda => "cuda",
            GpuPlatform::Hip => "hip",
        }
    }
}

/// What the executor and the code generator need to know about the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub platform: GpuPlatform,
    pub ordinal: usize,
    pub name: String,
    /// Full target string: "sm_90" on NVIDIA, "gfx90a:sramecc+:xnack-" on AMD.
    pub arch: String,
    pub total_memory: usize,
    pub multiprocessor_count: u32,
    pub l2_cache_bytes: u32,
    pub warp_size: u32,
    pub max_shared_per_block: u32,
    /// Driver version as the vendor reports it (e.g. "13000" for CUDA 13.0), for fingerprints.
    pub driver_version: String,
}

impl DeviceInfo {
    /// The architecture without target features: "gfx90a:sramecc+:xnack-" -> "gfx90a".
    pub fn arch_base(&self) -> &str {
        self.arch.split(':').next().unwrap_or(&self.arch)
    }
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} {} ({}, {} SMs/CUs, {:.1} GiB)",
            self.platform.name(),
            self.ordinal,
            self.name,
            self.arch,
            self.multiprocessor_count,
            self.total_memory as f64 / (1u64 << 30) as f64
        )
    }
}

/// Free and total device memory in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemInfo {
    pub free: usize,
    pub total: usize,
}

/// Grid, block and dynamic shared memory of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchDims {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
    /// The kernel waits for its inputs itself (`rf_wait_for_inputs` of the prelude), so where
    /// the device can, it is launched while the kernel before it still runs (CUDA programmatic
    /// dependent launch). Only rendered kernels do; a kernel without the wait must say false.
    pub dependent: bool,
}

/// One prefill matmul on the vendor's f16 GEMM: `out[t][r] = w[r] . x[t] (+ bias[r])` for
/// `tokens` rows of x and `rows` rows of w, `k` values each. w and x are f16, row-major; out and
/// bias are f32, out's rows `ld_out` floats apart (a chunk of rows writes a slice of columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmF16 {
    pub tokens: usize,
    pub rows: usize,
    pub k: usize,
    pub weights: DevicePtr,
    pub x: DevicePtr,
    pub out: DevicePtr,
    pub ld_out: usize,
    /// 0 = no bias.
    pub bias: DevicePtr,
}

/// What a vendor GEMM plan depends on: everything of a [`GemmF16`] but the addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmShape {
    pub tokens: usize,
    pub rows: usize,
    pub k: usize,
    pub ld_out: usize,
    pub bias: bool,
}

impl GemmF16 {
    pub fn shape(&self) -> GemmShape {
        GemmShape {
            tokens: self.tokens,
            rows: self.rows,
            k: self.k,
            ld_out: self.ld_out,
            bias: self.bias != 0,
        }
    }
}

/// The vendor GEMM state kept in `cell`, made on first use by `make` with a workspace of
/// `bytes` allocated on `runtime` (freed again if `make` fails).
pub fn vendor_gemm_state<'a, T>(
    cell: &'a std::sync::OnceLock<T>,
    runtime: &dyn GpuRuntime,
    bytes: usize,
    make: impl FnOnce(DevicePtr) -> Result<T, RuntimeError>,
) -> Result<&'a T, RuntimeError> {
    if let Some(state) = cell.get() {
        return Ok(state);
    }
    let workspace = runtime.alloc(bytes)?;
    match make(workspace) {
        Ok(state) => Ok(cell.get_or_init(|| state)),
        Err(e) => {
            // SAFETY: allocated just above and used by nothing.
            unsafe { runtime.free(workspace)? };
            Err(e)
        }
    }
}

/// Errors of the vendor runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The vendor library is not installed or not loadable.
    #[error("{0}")]
    LibraryMissing(String),
    /// The library loaded but there is no usable device.
    #[error("{0}")]
    NoDevice(String),
    #[error("{platform} device {ordinal} requested but only {count} present")]
    BadOrdinal {
        platform: &'static str,
        ordinal: usize,
        count: usize,
    },
    /// A vendor call failed; `call` names the API function.
    #[error("{platform} call {call} failed: {code} ({message})")]
    Call {
        platform: &'static str,
        call: &'static str,
        code: i64,
        message: String,
    },
    #[error("invalid argument to {call}: {reason}")]
    InvalidArgument { call: &'static str, reason: String },
}

/// One device and one stream of a vendor runtime.
///
/// All work is ordered on the runtime's single stream. Methods that take raw handles or device
/// addresses are `unsafe`: the caller guarantees the handle came from this runtime and is alive.
pub trait GpuRuntime: Send + Sync {
    fn info(&self) -> &DeviceInfo;
    /// Whether launches marked `LaunchDims::dependent` really overlap their predecessor here
    /// (otherwise they run in plain stream order).
    fn dependent_launch(&self) -> bool {
        false
    }
    fn mem_info(&self) -> Result<MemInfo, RuntimeError>;
    /// The vendor GEMM library this runtime found for [`GpuRuntime::gemm_f16`], if any.
    fn gemm_f16_library(&self) -> Option<&'static str> {
        None
    }
    /// Queue `g` on the stream (only where `gemm_f16_library` names a library).
    /// # Safety
    /// Every address of `g` lies in live allocations sized for its shape.
    unsafe fn gemm_f16(&self, g: &GemmF16) -> Result<(), RuntimeError> {
        let _ = g;
        Err(RuntimeError::InvalidArgument {
            call: "gemm_f16",
            reason: format!("no vendor GEMM library on {}", self.info()),
        })
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, RuntimeError>;
    /// # Safety
    /// `ptr` came from [`GpuRuntime::alloc`], is not freed yet and no queued work still uses it.
    unsafe fn free(&self, ptr: DevicePtr) -> Result<(), RuntimeError>;

    /// Stream-ordered host-to-device copy; `src` may be reused as soon as this returns.
    /// # Safety
    /// `dst .. dst + src.len()` lies inside one live allocation.
    unsafe fn copy_htod(&self, dst: DevicePtr, src: &[u8]) -> Result<(), RuntimeError>;
    /// Device-to-host copy that waits for all earlier work on the stream and for itself.
    /// # Safety
    /// `src .. src + dst.len()` lies inside one live allocation.
    unsafe fn copy_dtoh(&self, dst: &mut [u8], src: DevicePtr) -> Result<(), RuntimeError>;
    /// Stream-ordered device-to-device copy (capturable into a graph).
    /// # Safety
    /// Both ranges lie inside live allocations.
    unsafe fn copy_dtod(
        &self,
        dst: DevicePtr,
        src: DevicePtr,
        bytes: usize,
    ) -> Result<(), RuntimeError>;
    /// Stream-ordered fill with zero bytes.
    /// # Safety
    /// The range lies inside one live allocation.
    unsafe fn memset_zero(&self, dst: DevicePtr, bytes: usize) -> Result<(), RuntimeError>;

    /// Load a compiled binary: a cubin on NVIDIA, a code object on AMD.
    fn load_module(&self, image: &[u8]) -> Result<ModuleHandle, RuntimeError>;
    /// # Safety
    /// `module` is loaded and no queued work or live graph uses its functions.
    unsafe fn unload_module(&self, module: ModuleHandle) -> Result<(), RuntimeError>;
    /// # Safety
    /// `module` is loaded.
    unsafe fn get_function(
        &self,
        module: ModuleHandle,
        name: &str,
    ) -> Result<FunctionHandle, RuntimeError>;
    /// Allow a function more dynamic shared memory than the default limit (48 KiB on NVIDIA).
    /// # Safety
    /// `function` belongs to a loaded module.
    unsafe fn set_max_dynamic_shared(
        &self,
        function: FunctionHandle,
        bytes: u32,
    ) -> Result<(), RuntimeError>;
    /// Queue a kernel on the stream. `args` holds one pointer per kernel parameter, each pointing
    /// at the parameter's value (the CUDA/HIP `kernelParams` convention).
    /// # Safety
    /// `function` is alive, `args` matches its signature exactly and every device address the
    /// kernel touches stays allocated until the work completes.
    unsafe fn launch(
        &self,
        function: FunctionHandle,
        dims: &LaunchDims,
        args: &mut [*mut c_void],
    ) -> Result<(), RuntimeError>;
    /// Wait for everything queued on the stream.
    fn synchronize(&self) -> Result<(), RuntimeError>;

    fn event_create(&self) -> Result<EventHandle, RuntimeError>;
    /// # Safety
    /// `event` is alive.
    unsafe fn event_record(&self, event: EventHandle) -> Result<(), RuntimeError>;
    /// Milliseconds between two recorded events; waits for `end`.
    /// # Safety
    /// Both events are alive and recorded on this stream.
    unsafe fn event_elapsed_ms(
        &self,
        start: EventHandle,
        end: EventHandle,
    ) -> Result<f32, RuntimeError>;
    /// # Safety
    /// `event` is alive and not used afterwards.
    unsafe fn event_destroy(&self, event: EventHandle) -> Result<(), RuntimeError>;

    /// Start recording the stream's work into a graph instead of running it.
    fn begin_capture(&self) -> Result<(), RuntimeError>;
    /// Stop recording and instantiate the graph.
    fn end_capture(&self) -> Result<GraphHandle, RuntimeError>;
    /// # Safety
    /// `graph` is alive and every address captured in it is still allocated.
    unsafe fn graph_launch(&self, graph: GraphHandle) -> Result<(), RuntimeError>;
    /// # Safety
    /// `graph` is alive, not running, and not used afterwards.
    unsafe fn graph_destroy(&self, graph: GraphHandle) -> Result<(), RuntimeError>;
}
