//! The few HIP runtime functions rocmforge calls, resolved from libamdhip64 at run time.
//!
//! Loading at run time keeps the binary free of a link-time ROCm dependency, so one build runs on
//! machines with AMD, NVIDIA or no GPU. Only functions whose C signatures have been stable from
//! ROCm 5 to ROCm 6 are used; `hipDeviceProp_t`, whose layout changed in ROCm 6, is only read
//! through a byte scan (see `runtime.rs`).

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::OnceLock;

use libloading::Library;

pub type HipError = c_int;
pub type HipStream = *mut c_void;
pub type HipModule = *mut c_void;
pub type HipFunction = *mut c_void;
pub type HipEvent = *mut c_void;
pub type HipGraph = *mut c_void;
pub type HipGraphExec = *mut c_void;
pub type HipGraphNode = *mut c_void;

pub const HIP_SUCCESS: HipError = 0;
pub const HIP_ERROR_NO_DEVICE: HipError = 100;
pub const HIP_ERROR_INVALID_DEVICE: HipError = 101;
pub const HIP_STREAM_NON_BLOCKING: c_uint = 1;
pub const HIP_STREAM_CAPTURE_MODE_THREAD_LOCAL: c_int = 1;

// hipDeviceAttribute_t values. The CUDA-compatible part of the enum is append-only since ROCm
// 5.0 (ROCm 6 keeps removed entries as placeholders), checked against ROCm 5.2's header with a C
// program printing the enumerators.
pub const ATTR_L2_CACHE_SIZE: c_int = 19;
pub const ATTR_MAX_SHARED_MEMORY_PER_BLOCK: c_int = 74;
pub const ATTR_MULTIPROCESSOR_COUNT: c_int = 63;
pub const ATTR_WARP_SIZE: c_int = 87;

/// Library names tried in order; `ROCMFORGE_HIP_LIB` (a path) comes first when set.
const LIBRARY_NAMES: &[&str] = &[
    "libamdhip64.so",
    "libamdhip64.so.7",
    "libamdhip64.so.6",
    "libamdhip64.so.5",
    "/opt/rocm/lib/libamdhip64.so",
];

/// Function pointers into the loaded library, which is kept alive alongside them.
pub struct HipApi {
    _library: Library,
    pub init: unsafe extern "C" fn(c_uint) -> HipError,
    pub get_device_count: unsafe extern "C" fn(*mut c_int) -> HipError,
    pub set_device: unsafe extern "C" fn(c_int) -> HipError,
    pub device_get: unsafe extern "C" fn(*mut c_int, c_int) -> HipError,
    pub device_get_name: unsafe extern "C" fn(*mut c_char, c_int, c_int) -> HipError,
    pub device_get_attribute: unsafe extern "C" fn(*mut c_int, c_int, c_int) -> HipError,
    pub device_total_mem: unsafe extern "C" fn(*mut usize, c_int) -> HipError,
    pub get_device_properties: unsafe extern "C" fn(*mut c_void, c_int) -> HipError,
    pub driver_get_version: unsafe extern "C" fn(*mut c_int) -> HipError,
    pub get_error_name: unsafe extern "C" fn(HipError) -> *const c_char,
    pub mem_get_info: unsafe extern "C" fn(*mut usize, *mut usize) -> HipError,
    pub malloc: unsafe extern "C" fn(*mut *mut c_void, usize) -> HipError,
    pub free: unsafe extern "C" fn(*mut c_void) -> HipError,
    pub memcpy_htod_async: unsafe extern "C" fn(u64, *const c_void, usize, HipStream) -> HipError,
    pub memcpy_dtoh_async: unsafe extern "C" fn(*mut c_void, u64, usize, HipStream) -> HipError,
    pub memcpy_dtod_async: unsafe extern "C" fn(u64, u64, usize, HipStream) -> HipError,
    pub memset_d8_async: unsafe extern "C" fn(u64, u8, usize, HipStream) -> HipError,
    pub module_load_data: unsafe extern "C" fn(*mut HipModule, *const c_void) -> HipError,
    pub module_unload: unsafe extern "C" fn(HipModule) -> HipError,
    pub module_get_function:
        unsafe extern "C" fn(*mut HipFunction, HipModule, *const c_char) -> HipError,
    #[allow(clippy::type_complexity)]
    pub module_launch_kernel: unsafe extern "C" fn(
        HipFunction,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        HipStream,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> HipError,
    pub stream_create_with_flags: unsafe extern "C" fn(*mut HipStream, c_uint) -> HipError,
    pub stream_destroy: unsafe extern "C" fn(HipStream) -> HipError,
    pub stream_synchronize: unsafe extern "C" fn(HipStream) -> HipError,
    pub event_create: unsafe extern "C" fn(*mut HipEvent) -> HipError,
    pub event_record: unsafe extern "C" fn(HipEvent, HipStream) -> HipError,
    pub event_synchronize: unsafe extern "C" fn(HipEvent) -> HipError,
    pub event_elapsed_time: unsafe extern "C" fn(*mut f32, HipEvent, HipEvent) -> HipError,
    pub event_destroy: unsafe extern "C" fn(HipEvent) -> HipError,
    pub stream_begin_capture: unsafe extern "C" fn(HipStream, c_int) -> HipError,
    pub stream_end_capture: unsafe extern "C" fn(HipStream, *mut HipGraph) -> HipError,
    pub graph_instantiate: unsafe extern "C" fn(
        *mut HipGraphExec,
        HipGraph,
        *mut HipGraphNode,
        *mut c_char,
        usize,
    ) -> HipError,
    pub graph_launch: unsafe extern "C" fn(HipGraphExec, HipStream) -> HipError,
    pub graph_exec_destroy: unsafe extern "C" fn(HipGraphExec) -> HipError,
    pub graph_destroy: unsafe extern "C" fn(HipGraph) -> HipError,
}

/// Copy a function pointer out of a loaded ROCm library (HIP, hipBLASLt).
///
/// # Safety
/// `T` must be the exact C signature of `name`.
pub(super) unsafe fn symbol<T: Copy>(library: &Library, name: &str) -> Result<T, String> {
    let mut c_name = name.as_bytes().to_vec();
    c_name.push(0);
    library
        .get::<T>(&c_name)
        .map(|s| *s)
        .map_err(|e| format!("symbol {name} missing from its ROCm library: {e}"))
}

impl HipApi {
    fn load() -> Result<Self, String> {
        let mut candidates: Vec<String> = Vec::new();
        if let Ok(path) = std::env::var("ROCMFORGE_HIP_LIB") {
            candidates.push(path);
        }
        candidates.extend(LIBRARY_NAMES.iter().map(|s| s.to_string()));
        let mut library = None;
        for name in &candidates {
            // SAFETY: loading libamdhip64 runs its initializers, which only set up the runtime's
            // own state (no device work happens until hipInit).
            if let Ok(lib) = unsafe { Library::new(name) } {
                library = Some(lib);
                break;
            }
        }
        let library = library.ok_or_else(|| {
            format!(
                "no AMD HIP runtime (libamdhip64.so) found; tried {}",
                candidates.join(", ")
            )
        })?;
        // SAFETY: each signature below is copied from hip_runtime_api.h (ROCm 5.2, unchanged in
        // ROCm 6) with hipDevice_t = int, hipDeviceptr_t = void* (passed as u64) and handles as
        // opaque pointers.
        unsafe {
            Ok(Self {
                init: symbol(&library, "hipInit")?,
                get_device_count: symbol(&library, "hipGetDeviceCount")?,
                set_device: symbol(&library, "hipSetDevice")?,
                device_get: symbol(&library, "hipDeviceGet")?,
                device_get_name: symbol(&library, "hipDeviceGetName")?,
                device_get_attribute: symbol(&library, "hipDeviceGetAttribute")?,
                device_total_mem: symbol(&library, "hipDeviceTotalMem")?,
                // ROCm 6 exports the new layout under this suffix and keeps the old name for the
                // old layout; either is fine for the byte scan that reads it.
                get_device_properties: symbol(&library, "hipGetDevicePropertiesR0600")
                    .or_else(|_| symbol(&library, "hipGetDeviceProperties"))?,
                driver_get_version: symbol(&library, "hipDriverGetVersion")?,
                get_error_name: symbol(&library, "hipGetErrorName")?,
                mem_get_info: symbol(&library, "hipMemGetInfo")?,
                malloc: symbol(&library, "hipMalloc")?,
                free: symbol(&library, "hipFree")?,
                memcpy_htod_async: symbol(&library, "hipMemcpyHtoDAsync")?,
                memcpy_dtoh_async: symbol(&library, "hipMemcpyDtoHAsync")?,
                memcpy_dtod_async: symbol(&library, "hipMemcpyDtoDAsync")?,
                memset_d8_async: symbol(&library, "hipMemsetD8Async")?,
                module_load_data: symbol(&library, "hipModuleLoadData")?,
                module_unload: symbol(&library, "hipModuleUnload")?,
                module_get_function: symbol(&library, "hipModuleGetFunction")?,
                module_launch_kernel: symbol(&library, "hipModuleLaunchKernel")?,
                stream_create_with_flags: symbol(&library, "hipStreamCreateWithFlags")?,
                stream_destroy: symbol(&library, "hipStreamDestroy")?,
                stream_synchronize: symbol(&library, "hipStreamSynchronize")?,
                event_create: symbol(&library, "hipEventCreate")?,
                event_record: symbol(&library, "hipEventRecord")?,
                event_synchronize: symbol(&library, "hipEventSynchronize")?,
                event_elapsed_time: symbol(&library, "hipEventElapsedTime")?,
                event_destroy: symbol(&library, "hipEventDestroy")?,
                stream_begin_capture: symbol(&library, "hipStreamBeginCapture")?,
                stream_end_capture: symbol(&library, "hipStreamEndCapture")?,
                graph_instantiate: symbol(&library, "hipGraphInstantiate")?,
                graph_launch: symbol(&library, "hipGraphLaunch")?,
                graph_exec_destroy: symbol(&library, "hipGraphExecDestroy")?,
                graph_destroy: symbol(&library, "hipGraphDestroy")?,
                _library: library,
            })
        }
    }

    /// The process-wide HIP API, loaded on first use.
    pub fn get() -> Result<&'static HipApi, String> {
        static API: OnceLock<Result<HipApi, String>> = OnceLock::new();
        API.get_or_init(HipApi::load).as_ref().map_err(Clone::clone)
    }

    /// "hipErrorNoDevice" for 100, etc.
    pub fn error_name(&self, code: HipError) -> String {
        // SAFETY: hipGetErrorName returns a static NUL-terminated string for any code.
        let ptr = unsafe { (self.get_error_name)(code) };
        if ptr.is_null() {
            return "unknown HIP error".to_string();
        }
        // SAFETY: non-null, static, NUL-terminated.
        unsafe { std::ffi::CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned()
    }
}
