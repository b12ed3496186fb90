//! The vendor f16 GEMM of prefill on AMD: hipBLASLt (ROCm 6 and later), loaded at run time like
//! libamdhip64. The mirror of `backend::cuda::blas`: same column-major view of our row-major
//! operands, one plan per shape. Without the library prefill stays on the tile kernels (MFMA on
//! gfx90a/gfx94x).
//!
//! The enum values below are hipBLASLt's (hipblaslt.h, hipblas-common.h, library_types.h of ROCm
//! 6.0 to 7.x, where they did not change); they differ from cuBLASLt's. Never run on an AMD GPU.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::{c_int, c_void};
use std::sync::{Mutex, OnceLock};

use libloading::Library;

use super::ffi::symbol;

use crate::backend::gpu::runtime::{DevicePtr, GemmF16, GemmShape as Shape, RuntimeError};

/// Workspace hipBLASLt may use per call.
pub const WORKSPACE_BYTES: usize = 32 << 20;

const LIBRARY_NAMES: &[&str] = &[
    "libhipblaslt.so",
    "libhipblaslt.so.1",
    "libhipblaslt.so.0",
    "/opt/rocm/lib/libhipblaslt.so",
];

type Status = c_int;
type Handle = *mut c_void;
const SUCCESS: Status = 0;
const HIP_R_32F: c_int = 0;
const HIP_R_16F: c_int = 2;
const HIPBLAS_COMPUTE_32F: c_int = 2;
const HIPBLAS_OP_T: i32 = 112;
const DESC_TRANSA: c_int = 0;
const DESC_EPILOGUE: c_int = 2;
const DESC_BIAS_POINTER: c_int = 3;
const EPILOGUE_DEFAULT: u32 = 1;
const EPILOGUE_BIAS: u32 = 4;
const PREF_MAX_WORKSPACE_BYTES: c_int = 1;

#[repr(C)]
#[derive(Clone, Copy)]
struct Algo {
    data: [u8; 16],
    max_workspace_bytes: usize,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct HeuristicResult {
    algo: Algo,
    workspace_size: usize,
    state: Status,
    waves_count: f32,
    reserved: [c_int; 4],
}

type MatmulFn = unsafe extern "C" fn(
    Handle,
    Handle,
    *const c_void,
    *const c_void,
    Handle,
    *const c_void,
    Handle,
    *const c_void,
    *const c_void,
    Handle,
    *mut c_void,
    Handle,
    *const Algo,
    *mut c_void,
    usize,
    *mut c_void,
) -> Status;

type HeuristicFn = unsafe extern "C" fn(
    Handle,
    Handle,
    Handle,
    Handle,
    Handle,
    Handle,
    Handle,
    c_int,
    *mut HeuristicResult,
    *mut c_int,
) -> Status;

/// The hipBLASLt functions used, from the loaded library (kept alive alongside them).
struct LtApi {
    _library: Library,
    create: unsafe extern "C" fn(*mut Handle) -> Status,
    destroy: unsafe extern "C" fn(Handle) -> Status,
    desc_create: unsafe extern "C" fn(*mut Handle, c_int, c_int) -> Status,
    desc_set: unsafe extern "C" fn(Handle, c_int, *const c_void, usize) -> Status,
    desc_destroy: unsafe extern "C" fn(Handle) -> Status,
    layout_create: unsafe extern "C" fn(*mut Handle, c_int, u64, u64, i64) -> Status,
    layout_destroy: unsafe extern "C" fn(Handle) -> Status,
    pref_create: unsafe extern "C" fn(*mut Handle) -> Status,
    pref_set: unsafe extern "C" fn(Handle, c_int, *const c_void, usize) -> Status,
    pref_destroy: unsafe extern "C" fn(Handle) -> Status,
    heuristic: HeuristicFn,
    matmul: MatmulFn,
}

impl LtApi {
    fn load() -> Result<Self, String> {
        // SAFETY: loading hipBLASLt only runs its initializers; no GPU work happens before
        // hipblasLtCreate.
        let library = LIBRARY_NAMES
            .iter()
            .find_map(|name| unsafe { Library::new(name) }.ok())
            .ok_or_else(|| {
                format!(
                    "no hipBLASLt (libhipblaslt.so) found; tried {}",
                    LIBRARY_NAMES.join(", ")
                )
            })?;
        // SAFETY: signatures from hipblaslt.h with every handle an opaque pointer and every enum
        // a C int.
        unsafe {
            Ok(Self {
                create: symbol(&library, "hipblasLtCreate")?,
                destroy: symbol(&library, "hipblasLtDestroy")?,
                desc_create: symbol(&library, "hipblasLtMatmulDescCreate")?,
                desc_set: symbol(&library, "hipblasLtMatmulDescSetAttribute")?,
                desc_destroy: symbol(&library, "hipblasLtMatmulDescDestroy")?,
                layout_create: symbol(&library, "hipblasLtMatrixLayoutCreate")?,
                layout_destroy: symbol(&library, "hipblasLtMatrixLayoutDestroy")?,
                pref_create: symbol(&library, "hipblasLtMatmulPreferenceCreate")?,
                pref_set: symbol(&library, "hipblasLtMatmulPreferenceSetAttribute")?,
                pref_destroy: symbol(&library, "hipblasLtMatmulPreferenceDestroy")?,
                heuristic: symbol(&library, "hipblasLtMatmulAlgoGetHeuristic")?,
                matmul: symbol(&library, "hipblasLtMatmul")?,
                _library: library,
            })
        }
    }

    fn get() -> Result<&'static LtApi, String> {
        static API: OnceLock<Result<LtApi, String>> = OnceLock::new();
        API.get_or_init(LtApi::load).as_ref().map_err(Clone::clone)
    }
}

/// Why hipBLASLt cannot be used here, or None when it loads.
pub fn missing() -> Option<String> {
    LtApi::get().err()
}

fn check(call: &'static str, status: Status) -> Result<(), RuntimeError> {
    if status == SUCCESS {
        return Ok(());
    }
    Err(RuntimeError::Call {
        platform: "hip",
        call,
        code: status as i64,
        message: "hipblasStatus_t".to_string(),
    })
}

struct Plan {
    api: &'static LtApi,
    desc: Handle,
    weights: Handle,
    x: Handle,
    out: Handle,
    algo: Algo,
}

impl Plan {
    /// As the CUDA plan: the weight is K x rows (ld K) transposed, x is K x tokens (ld K), out
    /// rows x tokens (ld ld_out), all column-major; f16 in, f32 accumulate and out.
    fn new(api: &'static LtApi, handle: Handle, s: Shape) -> Result<Self, RuntimeError> {
        let null = std::ptr::null_mut();
        let mut plan = Plan {
            api,
            desc: null,
            weights: null,
            x: null,
            out: null,
            algo: Algo {
                data: [0; 16],
                max_workspace_bytes: 0,
            },
        };
        let layout = |ty: c_int, rows: usize, cols: usize, ld: usize, out: &mut Handle| {
            // SAFETY: writes one layout handle.
            let status =
                unsafe { (api.layout_create)(out, ty, rows as u64, cols as u64, ld as i64) };
            check("hipblasLtMatrixLayoutCreate", status)
        };
        // SAFETY: writes one descriptor handle.
        check("hipblasLtMatmulDescCreate", unsafe {
            (api.desc_create)(&mut plan.desc, HIPBLAS_COMPUTE_32F, HIP_R_32F)
        })?;
        layout(HIP_R_16F, s.k, s.rows, s.k, &mut plan.weights)?;
        layout(HIP_R_16F, s.k, s.tokens, s.k, &mut plan.x)?;
        layout(HIP_R_32F, s.rows, s.tokens, s.ld_out, &mut plan.out)?;
        let epilogue = if s.bias {
            EPILOGUE_BIAS
        } else {
            EPILOGUE_DEFAULT
        };
        // SAFETY: the descriptor is alive; the buffers hold the attributes' documented types.
        unsafe {
            plan.set(DESC_TRANSA, &HIPBLAS_OP_T)?;
            plan.set(DESC_EPILOGUE, &epilogue)?;
        }
        let mut pref = null;
        // SAFETY: writes one preference handle.
        check("hipblasLtMatmulPreferenceCreate", unsafe {
            (api.pref_create)(&mut pref)
        })?;
        let workspace = WORKSPACE_BYTES as u64;
        let mut result = std::mem::MaybeUninit::<HeuristicResult>::zeroed();
        let mut found: c_int = 0;
        // SAFETY: every handle is alive; the heuristic writes at most one result; the
        // preference is destroyed right after.
        let status = unsafe {
            let set = (api.pref_set)(
                pref,
                PREF_MAX_WORKSPACE_BYTES,
                (&workspace as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
            let status = if set == SUCCESS {
                (api.heuristic)(
                    handle,
                    plan.desc,
                    plan.weights,
                    plan.x,
                    plan.out,
                    plan.out,
                    pref,
                    1,
                    result.as_mut_ptr(),
                    &mut found,
                )
            } else {
                set
            };
            (api.pref_destroy)(pref);
            status
        };
        check("hipblasLtMatmulAlgoGetHeuristic", status)?;
        if found < 1 {
            return Err(RuntimeError::InvalidArgument {
                call: "hipblasLtMatmulAlgoGetHeuristic",
                reason: format!("no algorithm for an f16 GEMM of {s:?}"),
            });
        }
        // SAFETY: the heuristic reported one result written.
        plan.algo = unsafe { result.assume_init() }.algo;
        Ok(plan)
    }

    /// # Safety
    /// The descriptor is alive and `T` is the attribute's type.
    unsafe fn set<T>(&self, attr: c_int, value: &T) -> Result<(), RuntimeError> {
        check(
            "hipblasLtMatmulDescSetAttribute",
            (self.api.desc_set)(
                self.desc,
                attr,
                (value as *const T).cast(),
                std::mem::size_of::<T>(),
            ),
        )
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created in `new` (or null, never created) and destroyed only here; the runtime
        // synchronizes its stream before dropping plans.
        unsafe {
            for layout in [self.weights, self.x, self.out] {
                if !layout.is_null() {
                    (self.api.layout_destroy)(layout);
                }
            }
            if !self.desc.is_null() {
                (self.api.desc_destroy)(self.desc);
            }
        }
    }
}

/// A hipBLASLt handle, its workspace and the plans built so far.
pub struct Blas {
    api: &'static LtApi,
    handle: Handle,
    workspace: DevicePtr,
    plans: Mutex<HashMap<Shape, Plan>>,
}

// SAFETY: every call on the handle goes through the plans' mutex.
unsafe impl Send for Blas {}
// SAFETY: as above.
unsafe impl Sync for Blas {}

impl Blas {
    /// A handle using `workspace` (WORKSPACE_BYTES of device memory the caller owns and frees
    /// after dropping this). The runtime's device must be current.
    pub fn new(workspace: DevicePtr) -> Result<Self, RuntimeError> {
        let api = LtApi::get().map_err(RuntimeError::LibraryMissing)?;
        let mut handle = std::ptr::null_mut();
        // SAFETY: writes one handle.
        check("hipblasLtCreate", unsafe { (api.create)(&mut handle) })?;
        Ok(Self {
            api,
            handle,
            workspace,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Queue `g` on `stream`.
    ///
    /// # Safety
    /// The addresses of `g` are live device memory of the current device, sized for its shape.
    pub unsafe fn gemm(&self, g: &GemmF16, stream: *mut c_void) -> Result<(), RuntimeError> {
        let shape = g.shape();
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        let plan = match plans.entry(shape) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Plan::new(self.api, self.handle, shape)?),
        };
        if shape.bias {
            plan.set(DESC_BIAS_POINTER, &(g.bias as *const c_void))?;
        }
        let (one, zero) = (1.0f32, 0.0f32);
        check(
            "hipblasLtMatmul",
            (self.api.matmul)(
                self.handle,
                plan.desc,
                (&one as *const f32).cast(),
                g.weights as *const c_void,
                plan.weights,
                g.x as *const c_void,
                plan.x,
                (&zero as *const f32).cast(),
                g.out as *const c_void,
                plan.out,
                g.out as *mut c_void,
                plan.out,
                &plan.algo,
                self.workspace as *mut c_void,
                WORKSPACE_BYTES,
                stream,
            ),
        )
    }

    pub fn workspace(&self) -> DevicePtr {
        self.workspace
    }
}

impl Drop for Blas {
    fn drop(&mut self) {
        self.plans
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        // SAFETY: created in `new`; the runtime synchronized its stream before dropping this.
        unsafe {
            (self.api.destroy)(self.handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where ROCm has no hipBLASLt (Debian's ROCm 5.2 here), the reason names the library.
    #[test]
    fn absence_is_reported_by_name() {
        if let Some(reason) = missing() {
            assert!(reason.contains("libhipblaslt"), "{reason}");
        }
    }

    /// The C layouts hipBLASLt passes by pointer.
    #[test]
    fn result_structs_have_the_c_layout() {
        assert_eq!(std::mem::size_of::<Algo>(), 24);
        assert_eq!(std::mem::size_of::<HeuristicResult>(), 24 + 8 + 4 + 4 + 16);
    }
}
