//! The CUDA runtime: cudarc 0.19's driver-level calls behind [`GpuRuntime`].
//!
//! cudarc's safe stream API tracks events per buffer for multi-stream use, which gets in the way
//! of graph capture; with one stream everything is already ordered, so this layer uses the
//! `result` functions directly and keeps only the context from the safe API.

use std::ffi::{c_void, CString};
use std::sync::{Arc, OnceLock};

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::{sys, CudaContext};

use super::blas::{self, Blas};
use crate::backend::gpu::runtime::{
    vendor_gemm_state, DeviceInfo, DevicePtr, EventHandle, FunctionHandle, GemmF16, GpuPlatform,
    GpuRuntime, GraphHandle, LaunchDims, MemInfo, ModuleHandle, RuntimeError,
};

const PLATFORM: &str = "cuda";

fn call_error(call: &'static str, e: DriverError) -> RuntimeError {
    let message = e
        .error_string()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown error".to_string());
    RuntimeError::Call {
        platform: PLATFORM,
        call,
        code: e.0 as i64,
        message,
    }
}

/// True when the NVIDIA driver library can be loaded (cudarc panics on first use otherwise).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen libcuda under its usual names; no driver call is made.
    unsafe { sys::is_culib_present() }
}

/// Number of CUDA devices, or an error saying why there are none usable.
pub fn device_count() -> Result<usize, RuntimeError> {
    if !driver_present() {
        return Err(RuntimeError::LibraryMissing(
            "no NVIDIA driver (libcuda.so) found".to_string(),
        ));
    }
    match result::init() {
        Ok(()) => {}
        Err(DriverError(sys::CUresult::CUDA_ERROR_NO_DEVICE)) => {
            return Err(RuntimeError::NoDevice(
                "no NVIDIA GPU found (cuInit: no device)".into(),
            ))
        }
        Err(e) => return Err(call_error("cuInit", e)),
    }
    let count = result::device::get_count().map_err(|e| call_error("cuDeviceGetCount", e))?;
    if count <= 0 {
        return Err(RuntimeError::NoDevice("no NVIDIA GPU found".to_string()));
    }
    Ok(count as usize)
}

/// One CUDA device (its primary context) and one non-blocking stream.
pub struct CudaRuntime {
    ctx: Arc<CudaContext>,
    stream: sys::CUstream,
    info: DeviceInfo,
    /// Launches marked `dependent` overlap the kernel before them: compute capability 9.0+, and
    /// ROCMFORGE_DEPENDENT_LAUNCH=0 turns it off whatever the tuning chose.
    dependent_launch: bool,
    /// Whether libcublasLt loads; the handle and its workspace are made on the first GEMM, so
    /// that runs without a prefill pay nothing for them.
    blas_present: bool,
    blas: OnceLock<Blas>,
}

// SAFETY: the CUDA driver API is thread safe; the raw stream handle is only passed to driver calls
// after binding this runtime's context to the calling thread.
unsafe impl Send for CudaRuntime {}
// SAFETY: as above; no method mutates Rust-side state.
unsafe impl Sync for CudaRuntime {}

impl CudaRuntime {
    /// Open device `ordinal`. Fails cleanly when there is no driver or no such device.
    pub fn new(ordinal: usize) -> Result<Self, RuntimeError> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(RuntimeError::BadOrdinal {
                platform: PLATFORM,
                ordinal,
                count,
            });
        }
        let ctx =
            CudaContext::new(ordinal).map_err(|e| call_error("cuDevicePrimaryCtxRetain", e))?;
        let info = device_info(&ctx)?;
        let stream = result::stream::create(result::stream::StreamKind::NonBlocking)
            .map_err(|e| call_error("cuStreamCreate", e))?;
        let major = attribute(
            &ctx,
            sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
        )?;
        let dependent_launch = major >= 9
            && std::env::var("ROCMFORGE_DEPENDENT_LAUNCH").map_or(true, |v| v.trim() != "0");
        Ok(Self {
            ctx,
            stream,
            info,
            dependent_launch,
            blas_present: blas::present(),
            blas: OnceLock::new(),
        })
    }

    fn bind(&self) -> Result<(), RuntimeError> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| call_error("cuCtxSetCurrent", e))
    }
}

fn attribute(ctx: &CudaContext, attr: sys::CUdevice_attribute) -> Result<i32, RuntimeError> {
    // SAFETY: the device handle comes from a live context.
    unsafe { result::device::get_attribute(ctx.cu_device(), attr) }
        .map_err(|e| call_error("cuDeviceGetAttribute", e))
}

fn device_info(ctx: &CudaContext) -> Result<DeviceInfo, RuntimeError> {
    use sys::CUdevice_attribute as A;
    let dev = ctx.cu_device();
    let major = attribute(ctx, A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attribute(ctx, A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    let mut driver = 0i32;
    // SAFETY: writes one int.
    unsafe { sys::cuDriverGetVersion(&mut driver) }
        .result()
        .map_err(|e| call_error("cuDriverGetVersion", e))?;
    Ok(DeviceInfo {
        platform: GpuPlatform::Cuda,
        ordinal: ctx.ordinal(),
        name: result::device::get_name(dev).map_err(|e| call_error("cuDeviceGetName", e))?,
        arch: format!("sm_{major}{minor}"),
        // SAFETY: the device handle comes from a live context.
        total_memory: unsafe { result::device::total_mem(dev) }
            .map_err(|e| call_error("cuDeviceTotalMem", e))?,
        multiprocessor_count: attribute(ctx, A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32,
        l2_cache_bytes: attribute(ctx, A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)? as u32,
        warp_size: attribute(ctx, A::CU_DEVICE_ATTRIBUTE_WARP_SIZE)? as u32,
        max_shared_per_block: attribute(
            ctx,
            A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        )? as u32,
        driver_version: driver.to_string(),
    })
}

impl Drop for CudaRuntime {
    fn drop(&mut self) {
        if self.bind().is_ok() {
            // SAFETY: the stream was created in `new` and is destroyed only here; waiting first
            // means no queued work refers to it.
            unsafe {
                let _ = result::stream::synchronize(self.stream);
                if let Some(blas) = self.blas.take() {
                    let workspace = blas.workspace();
                    drop(blas);
                    let _ = result::free_sync(workspace);
                }
                let _ = result::stream::destroy(self.stream);
            }
        }
    }
}

impl GpuRuntime for CudaRuntime {
    fn dependent_launch(&self) -> bool {
        self.dependent_launch
    }

    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn gemm_f16_library(&self) -> Option<&'static str> {
        self.blas_present.then_some("cuBLASLt")
    }

    unsafe fn gemm_f16(&self, g: &GemmF16) -> Result<(), RuntimeError> {
        if !self.blas_present {
            return Err(RuntimeError::LibraryMissing(
                "no cuBLASLt (libcublasLt.so) found for the prefill GEMM".to_string(),
            ));
        }
        self.bind()?;
        let blas = vendor_gemm_state(&self.blas, self, blas::WORKSPACE_BYTES, Blas::new)?;
        blas.gemm(g, self.stream.cast())
    }

    fn mem_info(&self) -> Result<MemInfo, RuntimeError> {
        self.bind()?;
        let (free, total) = result::mem_get_info().map_err(|e| call_error("cuMemGetInfo", e))?;
        Ok(MemInfo { free, total })
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, RuntimeError> {
        self.bind()?;
        // SAFETY: plain allocation in the bound context; the caller owns the result.
        unsafe { result::malloc_sync(bytes) }.map_err(|e| call_error("cuMemAlloc", e))
    }

    unsafe fn free(&self, ptr: DevicePtr) -> Result<(), RuntimeError> {
        self.bind()?;
        result::free_sync(ptr).map_err(|e| call_error("cuMemFree", e))
    }

    unsafe fn copy_htod(&self, dst: DevicePtr, src: &[u8]) -> Result<(), RuntimeError> {
        self.bind()?;
        // From pageable memory the driver stages `src` before returning (CUDA "API
        // synchronization behavior"), so `src` may be reused at once while the copy stays
        // ordered on the stream.
        result::memcpy_htod_async(dst, src, self.stream)
            .map_err(|e| call_error("cuMemcpyHtoDAsync", e))
    }

    unsafe fn copy_dtoh(&self, dst: &mut [u8], src: DevicePtr) -> Result<(), RuntimeError> {
        self.bind()?;
        result::memcpy_dtoh_async(dst, src, self.stream)
            .map_err(|e| call_error("cuMemcpyDtoHAsync", e))?;
        result::stream::synchronize(self.stream).map_err(|e| call_error("cuStreamSynchronize", e))
    }

    unsafe fn copy_dtod(
        &self,
        dst: DevicePtr,
        src: DevicePtr,
        bytes: usize,
    ) -> Result<(), RuntimeError> {
        self.bind()?;
        result::memcpy_dtod_async(dst, src, bytes, self.stream)
            .map_err(|e| call_error("cuMemcpyDtoDAsync", e))
    }

    unsafe fn memset_zero(&self, dst: DevicePtr, bytes: usize) -> Result<(), RuntimeError> {
        self.bind()?;
        result::memset_d8_async(dst, 0, bytes, self.stream)
            .map_err(|e| call_error("cuMemsetD8Async", e))
    }

    fn load_module(&self, image: &[u8]) -> Result<ModuleHandle, RuntimeError> {
        self.bind()?;
        // cuModuleLoadData takes no length: a cubin/fatbin carries its own size in its ELF
        // header, but PTX is read up to a NUL. A copy with a trailing NUL serves both.
        let mut owned = Vec::with_capacity(image.len() + 1);
        owned.extend_from_slice(image);
        owned.push(0);
        // SAFETY: the pointer is valid for the whole image plus a terminator during the call;
        // the driver copies what it needs.
        let module = unsafe { result::module::load_data(owned.as_ptr().cast::<c_void>()) }
            .map_err(|e| call_error("cuModuleLoadData", e))?;
        Ok(ModuleHandle(module as u64))
    }

    unsafe fn unload_module(&self, module: ModuleHandle) -> Result<(), RuntimeError> {
        self.bind()?;
        result::module::unload(module.0 as sys::CUmodule)
            .map_err(|e| call_error("cuModuleUnload", e))
    }

    unsafe fn get_function(
        &self,
        module: ModuleHandle,
        name: &str,
    ) -> Result<FunctionHandle, RuntimeError> {
        self.bind()?;
        let c_name = CString::new(name).map_err(|_| RuntimeError::InvalidArgument {
            call: "cuModuleGetFunction",
            reason: format!("kernel name {name:?} contains a NUL byte"),
        })?;
        let f = result::module::get_function(module.0 as sys::CUmodule, c_name)
            .map_err(|e| call_error("cuModuleGetFunction", e))?;
        Ok(FunctionHandle(f as u64))
    }

    unsafe fn set_max_dynamic_shared(
        &self,
        function: FunctionHandle,
        bytes: u32,
    ) -> Result<(), RuntimeError> {
        self.bind()?;
        result::function::set_function_attribute(
            function.0 as sys::CUfunction,
            sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            bytes as i32,
        )
        .map_err(|e| call_error("cuFuncSetAttribute", e))
    }

    unsafe fn launch(
        &self,
        function: FunctionHandle,
        dims: &LaunchDims,
        args: &mut [*mut c_void],
    ) -> Result<(), RuntimeError> {
        self.bind()?;
        if !(dims.dependent && self.dependent_launch) {
            return result::launch_kernel(
                function.0 as sys::CUfunction,
                dims.grid,
                dims.block,
                dims.shared_bytes,
                self.stream,
                args,
            )
            .map_err(|e| call_error("cuLaunchKernel", e));
        }
        // SAFETY: an all-zero launch attribute value is valid; one field is then set.
        let mut value: sys::CUlaunchAttributeValue = std::mem::zeroed();
        value.programmaticStreamSerializationAllowed = 1;
        let mut attribute = sys::CUlaunchAttribute {
            id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
            pad: [0; 4],
            value,
        };
        let config = sys::CUlaunchConfig {
            gridDimX: dims.grid.0,
            gridDimY: dims.grid.1,
            gridDimZ: dims.grid.2,
            blockDimX: dims.block.0,
            blockDimY: dims.block.1,
            blockDimZ: dims.block.2,
            sharedMemBytes: dims.shared_bytes,
            hStream: self.stream,
            attrs: &mut attribute,
            numAttrs: 1,
        };
        // SAFETY: the caller guarantees the function and its arguments match (this method's
        // contract); `config` and `attribute` outlive the call.
        sys::cuLaunchKernelEx(
            &config,
            function.0 as sys::CUfunction,
            args.as_mut_ptr(),
            std::ptr::null_mut(),
        )
        .result()
        .map_err(|e| call_error("cuLaunchKernelEx", e))
    }

    fn synchronize(&self) -> Result<(), RuntimeError> {
        self.bind()?;
        // SAFETY: the stream lives as long as `self`.
        unsafe { result::stream::synchronize(self.stream) }
            .map_err(|e| call_error("cuStreamSynchronize", e))
    }

    fn event_create(&self) -> Result<EventHandle, RuntimeError> {
        self.bind()?;
        let event = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
            .map_err(|e| call_error("cuEventCreate", e))?;
        Ok(EventHandle(event as u64))
    }

    unsafe fn event_record(&self, event: EventHandle) -> Result<(), RuntimeError> {
        self.bind()?;
        result::event::record(event.0 as sys::CUevent, self.stream)
            .map_err(|e| call_error("cuEventRecord", e))
    }

    unsafe fn event_elapsed_ms(
        &self,
        start: EventHandle,
        end: EventHandle,
    ) -> Result<f32, RuntimeError> {
        self.bind()?;
        result::event::synchronize(end.0 as sys::CUevent)
            .map_err(|e| call_error("cuEventSynchronize", e))?;
        result::event::elapsed(start.0 as sys::CUevent, end.0 as sys::CUevent)
            .map_err(|e| call_error("cuEventElapsedTime", e))
    }

    unsafe fn event_destroy(&self, event: EventHandle) -> Result<(), RuntimeError> {
        self.bind()?;
        result::event::destroy(event.0 as sys::CUevent).map_err(|e| call_error("cuEventDestroy", e))
    }

    fn begin_capture(&self) -> Result<(), RuntimeError> {
        self.bind()?;
        // Thread-local mode: only this thread's unsafe calls (sync, alloc) may break the
        // capture; other threads using other contexts stay free.
        // SAFETY: the stream lives as long as `self`.
        unsafe {
            result::stream::begin_capture(
                self.stream,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        }
        .map_err(|e| call_error("cuStreamBeginCapture", e))
    }

    fn end_capture(&self) -> Result<GraphHandle, RuntimeError> {
        self.bind()?;
        // SAFETY: the stream lives as long as `self`.
        let graph = unsafe { result::stream::end_capture(self.stream) }
            .map_err(|e| call_error("cuStreamEndCapture", e))?;
        if graph.is_null() {
            return Err(RuntimeError::InvalidArgument {
                call: "cuStreamEndCapture",
                reason: "the capture produced no graph".to_string(),
            });
        }
        // SAFETY: `graph` was just produced by the capture.
        match unsafe { result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) } {
            Ok(exec) => Ok(GraphHandle {
                graph: graph as u64,
                exec: exec as u64,
            }),
            Err(e) => {
                // SAFETY: the graph is ours and was never instantiated.
                let _ = unsafe { result::graph::destroy(graph) };
                Err(call_error("cuGraphInstantiate", e))
            }
        }
    }

    unsafe fn graph_launch(&self, graph: GraphHandle) -> Result<(), RuntimeError> {
        self.bind()?;
        result::graph::launch(graph.exec as sys::CUgraphExec, self.stream)
            .map_err(|e| call_error("cuGraphLaunch", e))
    }

    unsafe fn graph_destroy(&self, graph: GraphHandle) -> Result<(), RuntimeError> {
        self.bind()?;
        result::graph::exec_destroy(graph.exec as sys::CUgraphExec)
            .map_err(|e| call_error("cuGraphExecDestroy", e))?;
        result::graph::destroy(graph.graph as sys::CUgraph)
            .map_err(|e| call_error("cuGraphDestroy", e))
    }
}
