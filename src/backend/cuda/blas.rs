//! The vendor f16 GEMM of prefill on NVIDIA: cuBLASLt, loaded at run time like the driver.
//!
//! Prefill matmuls are large enough (512 tokens x thousands of rows) that a GEMM on the tensor
//! cores beats our dequantizing tile kernels even after staging the weights as f16 (see
//! `backend::gpu::schedule`). The library is optional: without it prefill stays on the tiles.
//! One matmul plan (descriptors and the heuristic's algorithm) is built per shape and reused.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

use cudarc::cublaslt::result::{self as lt, CublasError};
use cudarc::cublaslt::sys;

use crate::backend::gpu::runtime::{DevicePtr, GemmF16, GemmShape as Shape, RuntimeError};

/// Workspace cuBLASLt may use per call; its Hopper kernels ask for up to 32 MiB.
pub const WORKSPACE_BYTES: usize = 32 << 20;

fn blas_error(call: &'static str, e: CublasError) -> RuntimeError {
    RuntimeError::Call {
        platform: "cuda",
        call,
        code: e.0 as i64,
        message: format!("{:?}", e.0),
    }
}

/// True when libcublasLt can be loaded (cudarc panics on first use otherwise).
pub fn present() -> bool {
    // SAFETY: only tries to dlopen the library under its usual names.
    unsafe { sys::is_culib_present() }
}

struct Plan {
    desc: sys::cublasLtMatmulDesc_t,
    weights: sys::cublasLtMatrixLayout_t,
    x: sys::cublasLtMatrixLayout_t,
    out: sys::cublasLtMatrixLayout_t,
    algo: sys::cublasLtMatmulAlgo_t,
}

impl Plan {
    /// Column-major view of our row-major data: the weight is K x rows (ld K), transposed; x is
    /// K x tokens (ld K); out is rows x tokens (ld ld_out). So out^T = W x^T, as f32.
    fn new(handle: sys::cublasLtHandle_t, s: Shape) -> Result<Self, RuntimeError> {
        let f16 = sys::cudaDataType::CUDA_R_16F;
        let f32 = sys::cudaDataType::CUDA_R_32F;
        // Filled in step by step: whatever was created is destroyed by Drop if a step fails.
        let mut plan = Plan {
            desc: std::ptr::null_mut(),
            weights: std::ptr::null_mut(),
            x: std::ptr::null_mut(),
            out: std::ptr::null_mut(),
            algo: sys::cublasLtMatmulAlgo_t { data: [0; 8] },
        };
        plan.desc = lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, f32)
            .map_err(|e| blas_error("cublasLtMatmulDescCreate", e))?;
        plan.weights = layout(f16, s.k, s.rows, s.k)?;
        plan.x = layout(f16, s.k, s.tokens, s.k)?;
        plan.out = layout(f32, s.rows, s.tokens, s.ld_out)?;
        let transposed: i32 = 1; // CUBLAS_OP_T
        let epilogue = if s.bias {
            sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS
        } else {
            sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_DEFAULT
        };
        // SAFETY: the descriptor is alive; each buffer holds the attribute's documented type.
        unsafe {
            set_desc(
                plan.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                &transposed,
            )?;
            set_desc(
                plan.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_EPILOGUE,
                &epilogue,
            )?;
        }
        let pref = lt::create_matmul_pref()
            .map_err(|e| blas_error("cublasLtMatmulPreferenceCreate", e))?;
        let workspace = WORKSPACE_BYTES as u64;
        // SAFETY: every handle is alive; the preference is destroyed right after use.
        let heuristic = unsafe {
            let set = lt::set_matmul_pref_attribute(
                pref,
                sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&workspace as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
            let found = set.and_then(|()| {
                lt::get_matmul_algo_heuristic(
                    handle,
                    plan.desc,
                    plan.weights,
                    plan.x,
                    plan.out,
                    plan.out,
                    pref,
                )
            });
            let _ = lt::destroy_matmul_pref(pref);
            found.map_err(|e| blas_error("cublasLtMatmulAlgoGetHeuristic", e))?
        };
        plan.algo = heuristic.algo;
        Ok(plan)
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: created in `new` (or null, never created), destroyed only here; no queued call
        // uses a plan that the runtime drops (the runtime synchronizes its stream first).
        unsafe {
            for layout in [self.weights, self.x, self.out] {
                if !layout.is_null() {
                    let _ = lt::destroy_matrix_layout(layout);
                }
            }
            if !self.desc.is_null() {
                let _ = lt::destroy_matmul_desc(self.desc);
            }
        }
    }
}

fn layout(
    ty: sys::cudaDataType,
    rows: usize,
    cols: usize,
    ld: usize,
) -> Result<sys::cublasLtMatrixLayout_t, RuntimeError> {
    lt::create_matrix_layout(ty, rows as u64, cols as u64, ld as i64)
        .map_err(|e| blas_error("cublasLtMatrixLayoutCreate", e))
}

/// # Safety
/// `desc` is alive and `T` is the attribute's type.
unsafe fn set_desc<T>(
    desc: sys::cublasLtMatmulDesc_t,
    attr: sys::cublasLtMatmulDescAttributes_t,
    value: &T,
) -> Result<(), RuntimeError> {
    lt::set_matmul_desc_attribute(
        desc,
        attr,
        (value as *const T).cast(),
        std::mem::size_of::<T>(),
    )
    .map_err(|e| blas_error("cublasLtMatmulDescSetAttribute", e))
}

/// A cuBLASLt handle, its workspace and the plans built so far.
pub struct Blas {
    handle: sys::cublasLtHandle_t,
    workspace: DevicePtr,
    plans: Mutex<HashMap<Shape, Plan>>,
}

// SAFETY: cuBLASLt handles may be used from any thread as long as calls do not overlap; every
// call goes through the plans' mutex.
unsafe impl Send for Blas {}
// SAFETY: as above.
unsafe impl Sync for Blas {}

impl Blas {
    /// A handle using `workspace` (WORKSPACE_BYTES of device memory the caller owns and frees
    /// after dropping this). The driver context must be bound.
    pub fn new(workspace: DevicePtr) -> Result<Self, RuntimeError> {
        let handle = lt::create_handle().map_err(|e| blas_error("cublasLtCreate", e))?;
        Ok(Self {
            handle,
            workspace,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Queue `g` on `stream`.
    ///
    /// # Safety
    /// The addresses of `g` are live device memory of the bound context, sized for its shape.
    pub unsafe fn gemm(&self, g: &GemmF16, stream: *mut c_void) -> Result<(), RuntimeError> {
        let shape = g.shape();
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        let plan = match plans.entry(shape) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Plan::new(self.handle, shape)?),
        };
        if shape.bias {
            let bias = g.bias as *const c_void;
            set_desc(
                plan.desc,
                sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                &bias,
            )?;
        }
        let (one, zero) = (1.0f32, 0.0f32);
        lt::matmul(
            self.handle,
            plan.desc,
            (&one as *const f32).cast(),
            (&zero as *const f32).cast(),
            g.weights as *const c_void,
            plan.weights,
            g.x as *const c_void,
            plan.x,
            g.out as *const c_void,
            plan.out,
            g.out as *mut c_void,
            plan.out,
            &plan.algo,
            self.workspace as *mut c_void,
            WORKSPACE_BYTES,
            stream.cast(),
        )
        .map_err(|e| blas_error("cublasLtMatmul", e))
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
            let _ = lt::destroy_handle(self.handle);
        }
    }
}
