//! The HIP runtime: libamdhip64 behind [`GpuRuntime`], mirroring the CUDA runtime call for call.

use std::ffi::{c_char, c_int, c_void, CString};
use std::sync::OnceLock;

use super::blas::{self, Blas};
use super::ffi::{self, HipApi, HipError};
use crate::backend::gpu::runtime::{
    vendor_gemm_state, DeviceInfo, DevicePtr, EventHandle, FunctionHandle, GemmF16, GpuPlatform,
    GpuRuntime, GraphHandle, LaunchDims, MemInfo, ModuleHandle, RuntimeError,
};

const PLATFORM: &str = "hip";

fn check(api: &HipApi, call: &'static str, code: HipError) -> Result<(), RuntimeError> {
    if code == ffi::HIP_SUCCESS {
        return Ok(());
    }
    Err(RuntimeError::Call {
        platform: PLATFORM,
        call,
        code: code as i64,
        message: api.error_name(code),
    })
}

fn api() -> Result<&'static HipApi, RuntimeError> {
    HipApi::get().map_err(RuntimeError::LibraryMissing)
}

/// Number of AMD GPUs, or an error saying why there are none usable.
pub fn device_count() -> Result<usize, RuntimeError> {
    let api = api()?;
    // hipInit and hipGetDeviceCount report "no device" with different codes depending on the ROCm
    // version and whether the kernel driver is loaded (ROCm 5.2 without a GPU: hipInit gives
    // hipErrorInvalidDevice, hipGetDeviceCount hipErrorNoDevice and 0).
    // SAFETY: plain C call with a flag argument of 0, as documented.
    let init = unsafe { (api.init)(0) };
    let mut count: c_int = 0;
    // SAFETY: writes one int.
    let counted = unsafe { (api.get_device_count)(&mut count) };
    let no_device = |code: HipError| {
        RuntimeError::NoDevice(format!("no AMD GPU found ({})", api.error_name(code)))
    };
    match (init, counted) {
        (_, ffi::HIP_ERROR_NO_DEVICE | ffi::HIP_ERROR_INVALID_DEVICE) => Err(no_device(counted)),
        (ffi::HIP_ERROR_NO_DEVICE | ffi::HIP_ERROR_INVALID_DEVICE, _) => Err(no_device(init)),
        (_, code) if code != ffi::HIP_SUCCESS => check(api, "hipGetDeviceCount", code).map(|()| 0),
        (code, _) if code != ffi::HIP_SUCCESS => check(api, "hipInit", code).map(|()| 0),
        _ if count <= 0 => Err(RuntimeError::NoDevice("no AMD GPU found".to_string())),
        _ => Ok(count as usize),
    }
}

/// Find the full gcnArchName ("gfx90a:sramecc+:xnack-") inside the bytes of a `hipDeviceProp_t`.
///
/// The struct's layout differs between ROCm 5 and ROCm 6 (and `hipDeviceGetAttribute` cannot
/// return strings), so instead of hard-coding an offset this looks for the one NUL-terminated
/// field that starts with "gfx" and a digit.
pub fn find_gcn_arch_name(props: &[u8]) -> Option<String> {
    let is_arch_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b':' | b'+' | b'-' | b'_');
    (0..props.len().saturating_sub(4)).find_map(|start| {
        let rest = &props[start..];
        let preceded_by_boundary = start == 0 || !is_arch_char(props[start - 1]);
        if !(preceded_by_boundary && rest.starts_with(b"gfx") && rest[3].is_ascii_digit()) {
            return None;
        }
        let len = rest.iter().position(|&b| b == 0)?;
        let text = &rest[..len];
        text.iter()
            .all(|&b| is_arch_char(b))
            .then(|| String::from_utf8_lossy(text).into_owned())
    })
}

/// One AMD device and one non-blocking stream.
pub struct HipRuntime {
    api: &'static HipApi,
    ordinal: c_int,
    stream: ffi::HipStream,
    info: DeviceInfo,
    /// hipBLASLt's handle and workspace, made on the first GEMM (as on CUDA).
    blas: OnceLock<Blas>,
}

// SAFETY: the HIP runtime is thread safe; every method first selects this runtime's device on the
// calling thread, and the stream handle is only passed to HIP calls.
unsafe impl Send for HipRuntime {}
// SAFETY: as above; no method mutates Rust-side state.
unsafe impl Sync for HipRuntime {}

impl HipRuntime {
    /// Open device `ordinal`. Fails cleanly when there is no library or no such device.
    pub fn new(ordinal: usize) -> Result<Self, RuntimeError> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(RuntimeError::BadOrdinal {
                platform: PLATFORM,
                ordinal,
                count,
            });
        }
        let api = api()?;
        let ordinal = ordinal as c_int;
        // SAFETY: the ordinal was checked against the device count.
        check(api, "hipSetDevice", unsafe { (api.set_device)(ordinal) })?;
        let info = device_info(api, ordinal)?;
        let mut stream: ffi::HipStream = std::ptr::null_mut();
        // SAFETY: writes one stream handle.
        check(api, "hipStreamCreateWithFlags", unsafe {
            (api.stream_create_with_flags)(&mut stream, ffi::HIP_STREAM_NON_BLOCKING)
        })?;
        Ok(Self {
            api,
            ordinal,
            stream,
            info,
            blas: OnceLock::new(),
        })
    }

    /// HIP's current device is per thread: select ours before every call.
    fn bind(&self) -> Result<(), RuntimeError> {
        // SAFETY: the ordinal was validated in `new`.
        check(self.api, "hipSetDevice", unsafe {
            (self.api.set_device)(self.ordinal)
        })
    }
}

fn device_info(api: &HipApi, ordinal: c_int) -> Result<DeviceInfo, RuntimeError> {
    let mut device: c_int = 0;
    // SAFETY: writes one int; the ordinal is valid.
    check(api, "hipDeviceGet", unsafe {
        (api.device_get)(&mut device, ordinal)
    })?;
    let attribute = |attr: c_int| -> Result<u32, RuntimeError> {
        let mut value: c_int = 0;
        // SAFETY: writes one int.
        check(api, "hipDeviceGetAttribute", unsafe {
            (api.device_get_attribute)(&mut value, attr, ordinal)
        })?;
        Ok(value.max(0) as u32)
    };
    let mut name = [0 as c_char; 256];
    // SAFETY: the buffer holds 256 chars and the length passed says so.
    check(api, "hipDeviceGetName", unsafe {
        (api.device_get_name)(name.as_mut_ptr(), name.len() as c_int, device)
    })?;
    // SAFETY: hipDeviceGetName NUL-terminates within the given length.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let mut total: usize = 0;
    // SAFETY: writes one size_t.
    check(api, "hipDeviceTotalMem", unsafe {
        (api.device_total_mem)(&mut total, device)
    })?;
    // hipDeviceProp_t is under 2 KiB in every ROCm so far; 64 KiB of 8-aligned zeros leaves room
    // for growth without trusting any one layout.
    let mut props = vec![0u64; 8192];
    // SAFETY: the buffer is larger than any hipDeviceProp_t and suitably aligned.
    check(api, "hipGetDeviceProperties", unsafe {
        (api.get_device_properties)(props.as_mut_ptr().cast::<c_void>(), ordinal)
    })?;
    // SAFETY: reinterpreting initialized u64s as bytes.
    let prop_bytes =
        unsafe { std::slice::from_raw_parts(props.as_ptr().cast::<u8>(), props.len() * 8) };
    let arch = find_gcn_arch_name(prop_bytes).ok_or_else(|| RuntimeError::InvalidArgument {
        call: "hipGetDeviceProperties",
        reason: format!("no gcnArchName (gfx...) in the properties of device {ordinal} ({name})"),
    })?;
    let mut driver: c_int = 0;
    // SAFETY: writes one int.
    check(api, "hipDriverGetVersion", unsafe {
        (api.driver_get_version)(&mut driver)
    })?;
    Ok(DeviceInfo {
        platform: GpuPlatform::Hip,
        ordinal: ordinal as usize,
        name,
        arch,
        total_memory: total,
        multiprocessor_count: attribute(ffi::ATTR_MULTIPROCESSOR_COUNT)?,
        l2_cache_bytes: attribute(ffi::ATTR_L2_CACHE_SIZE)?,
        warp_size: attribute(ffi::ATTR_WARP_SIZE)?,
        max_shared_per_block: attribute(ffi::ATTR_MAX_SHARED_MEMORY_PER_BLOCK)?,
        driver_version: driver.to_string(),
    })
}

impl Drop for HipRuntime {
    fn drop(&mut self) {
        if self.bind().is_ok() {
            // SAFETY: created in `new`, destroyed only here, after it drained.
            unsafe {
                (self.api.stream_synchronize)(self.stream);
                if let Some(blas) = self.blas.take() {
                    let workspace = blas.workspace();
                    drop(blas);
                    (self.api.free)(workspace as *mut c_void);
                }
                (self.api.stream_destroy)(self.stream);
            }
        }
    }
}

impl GpuRuntime for HipRuntime {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn gemm_f16_library(&self) -> Option<&'static str> {
        blas::missing().is_none().then_some("hipBLASLt")
    }

    unsafe fn gemm_f16(&self, g: &GemmF16) -> Result<(), RuntimeError> {
        if let Some(reason) = blas::missing() {
            return Err(RuntimeError::LibraryMissing(reason));
        }
        self.bind()?;
        let blas = vendor_gemm_state(&self.blas, self, blas::WORKSPACE_BYTES, Blas::new)?;
        blas.gemm(g, self.stream)
    }

    fn mem_info(&self) -> Result<MemInfo, RuntimeError> {
        self.bind()?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: writes two size_t.
        check(self.api, "hipMemGetInfo", unsafe {
            (self.api.mem_get_info)(&mut free, &mut total)
        })?;
        Ok(MemInfo { free, total })
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, RuntimeError> {
        self.bind()?;
        let mut ptr: *mut c_void = std::ptr::null_mut();
        // SAFETY: writes one pointer; the caller owns the allocation.
        check(self.api, "hipMalloc", unsafe {
            (self.api.malloc)(&mut ptr, bytes)
        })?;
        Ok(ptr as DevicePtr)
    }

    unsafe fn free(&self, ptr: DevicePtr) -> Result<(), RuntimeError> {
        self.bind()?;
        check(self.api, "hipFree", (self.api.free)(ptr as *mut c_void))
    }

    unsafe fn copy_htod(&self, dst: DevicePtr, src: &[u8]) -> Result<(), RuntimeError> {
        self.bind()?;
        check(
            self.api,
            "hipMemcpyHtoDAsync",
            (self.api.memcpy_htod_async)(dst, src.as_ptr().cast(), src.len(), self.stream),
        )?;
        // HIP does not promise to stage pageable memory before returning, so wait: `src` may be
        // reused as soon as this returns.
        self.synchronize()
    }

    unsafe fn copy_dtoh(&self, dst: &mut [u8], src: DevicePtr) -> Result<(), RuntimeError> {
        self.bind()?;
        check(
            self.api,
            "hipMemcpyDtoHAsync",
            (self.api.memcpy_dtoh_async)(dst.as_mut_ptr().cast(), src, dst.len(), self.stream),
        )?;
        self.synchronize()
    }

    unsafe fn copy_dtod(
        &self,
        dst: DevicePtr,
        src: DevicePtr,
        bytes: usize,
    ) -> Result<(), RuntimeError> {
        self.bind()?;
        check(
            self.api,
            "hipMemcpyDtoDAsync",
            (self.api.memcpy_dtod_async)(dst, src, bytes, self.stream),
        )
    }

    unsafe fn memset_zero(&self, dst: DevicePtr, bytes: usize) -> Result<(), RuntimeError> {
        self.bind()?;
        check(
            self.api,
            "hipMemsetD8Async",
            (self.api.memset_d8_async)(dst, 0, bytes, self.stream),
        )
    }

    fn load_module(&self, image: &[u8]) -> Result<ModuleHandle, RuntimeError> {
        self.bind()?;
        let mut module: ffi::HipModule = std::ptr::null_mut();
        // SAFETY: a code object carries its own size in its ELF header; the pointer is valid for
        // the whole image during the call and HIP copies what it keeps.
        check(self.api, "hipModuleLoadData", unsafe {
            (self.api.module_load_data)(&mut module, image.as_ptr().cast())
        })?;
        Ok(ModuleHandle(module as u64))
    }

    unsafe fn unload_module(&self, module: ModuleHandle) -> Result<(), RuntimeError> {
        self.bind()?;
        check(
            self.api,
            "hipModuleUnload",
            (self.api.module_unload)(module.0 as ffi::HipModule),
        )
    }

    unsafe fn get_function(
        &self,
        module: ModuleHandle,
        name: &str,
    ) -> Result<FunctionHandle, RuntimeError> {
        self.bind()?;
        let c_name = CString::new(name).map_err(|_| RuntimeError::InvalidArgument {
            call: "hipModuleGetFunction",
            reason: format!("kernel name {name:?} contains a NUL byte"),
        })?;
        let mut function: ffi::HipFunction = std::ptr::null_mut();
        check(
            self.api,
            "hipModuleGetFunction",
            (self.api.module_get_function)(
                &mut function,
                module.0 as ffi::HipModule,
                c_name.as_ptr(),
            ),
        )?;
        Ok(FunctionHandle(function as u64))
    }

    unsafe fn set_max_dynamic_shared(
        &self,
        _function: FunctionHandle,
        bytes: u32,
    ) -> Result<(), RuntimeError> {
        // AMD has no opt-in: a launch may use up to the device's LDS size directly.
        if bytes > self.info.max_shared_per_block {
            return Err(RuntimeError::InvalidArgument {
                call: "hipModuleLaunchKernel",
                reason: format!(
                    "{bytes} bytes of shared memory exceed the device's {} per block",
                    self.info.max_shared_per_block
                ),
            });
        }
        Ok(())
    }

    unsafe fn launch(
        &self,
        function: FunctionHandle,
        dims: &LaunchDims,
        args: &mut [*mut c_void],
    ) -> Result<(), RuntimeError> {
        self.bind()?;
        // HIP has no programmatic dependent launch: `dims.dependent` kernels run in stream order.
        check(
            self.api,
            "hipModuleLaunchKernel",
            (self.api.module_launch_kernel)(
                function.0 as ffi::HipFunction,
                dims.grid.0,
                dims.grid.1,
                dims.grid.2,
                dims.block.0,
                dims.block.1,
                dims.block.2,
                dims.shared_bytes,
                self.stream,
                args.as_mut_ptr(),
                std::ptr::null_mut(),
            ),
        )
    }

    fn synchronize(&self) -> Result<(), RuntimeError> {
        self.bind()?;
        // SAFETY: the stream lives as long as `self`.
        check(self.api, "hipStreamSynchronize", unsafe {
            (self.api.stream_synchronize)(self.stream)
        })
    }

    fn event_create(&self) -> Result<EventHandle, RuntimeError> {
        self.bind()?;
        let mut event: ffi::HipEvent = std::ptr::null_mut();
        // SAFETY: writes one handle.
        check(self.api, "hipEventCreate", unsafe {
            (self.api.event_create)(&mut event)
        })?;
        Ok(EventHandle(event as u64))
    }

    unsafe fn event_record(&self, event: EventHandle) -> Result<(), RuntimeError> {
        self.bind()?;
        check(
            self.api,
            "hipEventRecord",
            (self.api.event_record)(event.0 as ffi::HipEvent, self.stream),
        )
    }

    unsafe fn event_elapsed_ms(
        &self,
        start: EventHandle,
        end: EventHandle,
    ) -> Result<f32, RuntimeError> {
        self.bind()?;
        check(
            self.api,
            "hipEventSynchronize",
            (self.api.event_synchronize)(end.0 as ffi::HipEvent),
        )?;
        let mut ms = 0f32;
        check(
            self.api,
            "hipEventElapsedTime",
            (self.api.event_elapsed_time)(
                &mut ms,
                start.0 as ffi::HipEvent,
                end.0 as ffi::HipEvent,
            ),
        )?;
        Ok(ms)
    }

    unsafe fn event_destroy(&self, event: EventHandle) -> Result<(), RuntimeError> {
        self.bind()?;
        check(
            self.api,
            "hipEventDestroy",
            (self.api.event_destroy)(event.0 as ffi::HipEvent),
        )
    }

    fn begin_capture(&self) -> Result<(), RuntimeError> {
        self.bind()?;
        // SAFETY: the stream lives as long as `self`.
        check(self.api, "hipStreamBeginCapture", unsafe {
            (self.api.stream_begin_capture)(self.stream, ffi::HIP_STREAM_CAPTURE_MODE_THREAD_LOCAL)
        })
    }

    fn end_capture(&self) -> Result<GraphHandle, RuntimeError> {
        self.bind()?;
        let mut graph: ffi::HipGraph = std::ptr::null_mut();
        // SAFETY: writes one graph handle.
        check(self.api, "hipStreamEndCapture", unsafe {
            (self.api.stream_end_capture)(self.stream, &mut graph)
        })?;
        if graph.is_null() {
            return Err(RuntimeError::InvalidArgument {
                call: "hipStreamEndCapture",
                reason: "the capture produced no graph".to_string(),
            });
        }
        let mut exec: ffi::HipGraphExec = std::ptr::null_mut();
        // SAFETY: `graph` was just produced by the capture; no error node or log is requested.
        let code = unsafe {
            (self.api.graph_instantiate)(
                &mut exec,
                graph,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            )
        };
        if let Err(e) = check(self.api, "hipGraphInstantiate", code) {
            // SAFETY: the graph is ours and was never instantiated.
            unsafe { (self.api.graph_destroy)(graph) };
            return Err(e);
        }
        Ok(GraphHandle {
            graph: graph as u64,
            exec: exec as u64,
        })
    }

    unsafe fn graph_launch(&self, graph: GraphHandle) -> Result<(), RuntimeError> {
        self.bind()?;
        check(
            self.api,
            "hipGraphLaunch",
            (self.api.graph_launch)(graph.exec as ffi::HipGraphExec, self.stream),
        )
    }

    unsafe fn graph_destroy(&self, graph: GraphHandle) -> Result<(), RuntimeError> {
        self.bind()?;
        check(
            self.api,
            "hipGraphExecDestroy",
            (self.api.graph_exec_destroy)(graph.exec as ffi::HipGraphExec),
        )?;
        check(
            self.api,
            "hipGraphDestroy",
            (self.api.graph_destroy)(graph.graph as ffi::HipGraph),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::find_gcn_arch_name;

    fn props_with(fields: &[(usize, &str)]) -> Vec<u8> {
        let mut bytes = vec![0u8; 2048];
        for (offset, text) in fields {
            bytes[*offset..*offset + text.len()].copy_from_slice(text.as_bytes());
        }
        bytes
    }

    #[test]
    fn finds_full_arch_name_at_any_offset() {
        let props = props_with(&[(0, "AMD Instinct MI210"), (1160, "gfx90a:sramecc+:xnack-")]);
        assert_eq!(
            find_gcn_arch_name(&props).as_deref(),
            Some("gfx90a:sramecc+:xnack-")
        );
        let props = props_with(&[(0, "Radeon RX 6900 XT"), (396, "gfx1030")]);
        assert_eq!(find_gcn_arch_name(&props).as_deref(), Some("gfx1030"));
    }

    #[test]
    fn ignores_gfx_inside_other_text_and_absent_names() {
        let props = props_with(&[(0, "Device xgfx90a"), (700, "gfxoops")]);
        assert_eq!(find_gcn_arch_name(&props), None);
        assert_eq!(find_gcn_arch_name(&[0u8; 64]), None);
    }
}
