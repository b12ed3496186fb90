//! NVRTC through cudarc's dynamically loaded bindings: HIP-dialect source (behind the CUDA
//! prelude) compiled straight to a CUBIN for one `sm_XX`, with no GPU needed.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cudarc::nvrtc::sys;

use super::{
    c_buffer_to_string, check_target, dylib, options_cstrings, save_failed_source, source_cstring,
    CompileError, CompileFailure, CompiledKernel, Compiler, KernelSource, Platform, Target,
};

/// Env var naming the NVRTC library file (e.g. `.../nvidia/cu13/lib/libnvrtc.so.13`).
pub const LIBRARY_ENV: &str = "ROCMFORGE_NVRTC_LIB";
/// Env var naming the folder holding `cuda_fp16.h` and `cuda_bf16.h`.
pub const INCLUDE_ENV: &str = "ROCMFORGE_CUDA_INCLUDE";

/// Where a CUDA toolkit keeps NVRTC when the loader's path does not hold it.
const TOOLKIT_LIBRARIES: [&str; 2] = [
    "/usr/local/cuda/lib64/libnvrtc.so",
    "/usr/local/cuda/lib64/libnvrtc.so.13",
];
const TOOLKIT_INCLUDE: &str = "/usr/local/cuda/include";

const INSTALL_HINT: &str = "install NVRTC: a CUDA toolkit (libnvrtc.so under /usr/local/cuda/lib64), or \
`pip install nvidia-cuda-nvrtc nvidia-cuda-runtime` and add the wheel's lib folder \
(site-packages/nvidia/cu13/lib) to LD_LIBRARY_PATH, or point ROCMFORGE_NVRTC_LIB at its libnvrtc.so.13; \
`source tools/ci/env.sh` does this";

pub struct NvrtcCompiler {
    version: String,
    known: Vec<String>,
    /// `-I` folder of the CUDA headers; None when none was found (kernels that include
    /// cuda_fp16.h then fail, and the error says where to point ROCMFORGE_CUDA_INCLUDE).
    include_dir: Option<PathBuf>,
}

impl NvrtcCompiler {
    /// Finds NVRTC ($ROCMFORGE_NVRTC_LIB, the loader's path, /usr/local/cuda) and loads it.
    pub fn load() -> Result<NvrtcCompiler, CompileError> {
        let mut tried = Vec::new();
        let explicit = std::env::var(LIBRARY_ENV).ok().filter(|p| !p.is_empty());
        if let Some(path) = &explicit {
            tried.push(path.clone());
            preload(path).map_err(|reason| missing(reason, tried.clone()))?;
        }
        tried.push("libnvrtc.so, libnvrtc.so.13 (cudarc's names on the loader's path)".to_string());
        if !nvrtc_present() {
            for path in TOOLKIT_LIBRARIES {
                tried.push(path.to_string());
                if Path::new(path).exists() && preload(path).is_ok() && nvrtc_present() {
                    break;
                }
            }
        }
        if !nvrtc_present() {
            return Err(missing(
                "no NVRTC library could be loaded".to_string(),
                tried,
            ));
        }
        let library_file = loaded_library_file();
        let (mut major, mut minor) = (0, 0);
        // SAFETY: nvrtcVersion writes two ints through valid pointers.
        let status = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
        if status != sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(missing(format!("nvrtcVersion failed: {status:?}"), tried));
        }
        let version = format!("{major}.{minor} ({})", dylib::file_name(&library_file));
        Ok(NvrtcCompiler {
            version,
            known: supported_archs(),
            include_dir: find_include_dir(library_file.as_deref()),
        })
    }

    /// The `-I` folder in use, if any.
    pub fn include_dir(&self) -> Option<&Path> {
        self.include_dir.as_deref()
    }
}

/// The file cudarc loaded NVRTC from; call only after nvrtc_present() said true.
fn loaded_library_file() -> Option<PathBuf> {
    // SAFETY: a library under one of cudarc's names is loadable (checked by the caller), so
    // culib() returns it instead of panicking.
    let library = unsafe { sys::culib() };
    // SAFETY: the symbol is only turned into an address for dladdr, never called through this type.
    let symbol = unsafe { library.get::<unsafe extern "C" fn()>(b"nvrtcVersion") }.ok()?;
    dylib::library_path_of(*symbol as *const c_void)
}

fn missing(reason: String, tried: Vec<String>) -> CompileError {
    CompileError::LibraryMissing {
        compiler: "nvrtc",
        reason,
        tried,
        hint: INSTALL_HINT.to_string(),
    }
}

fn nvrtc_present() -> bool {
    // SAFETY: probing only tries to dlopen NVRTC under cudarc's candidate names.
    unsafe { sys::is_culib_present() }
}

/// Loads a library file and keeps it loaded for the life of the process, so that cudarc's
/// later dlopen by soname (`libnvrtc.so.13`) finds this copy.
fn preload(path: &str) -> Result<(), String> {
    // SAFETY: loading NVRTC runs its initializers, which only set up the library's own state.
    let library = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
    std::mem::forget(library);
    Ok(())
}

fn supported_archs() -> Vec<String> {
    let mut count: c_int = 0;
    // SAFETY: writes one int.
    if unsafe { sys::nvrtcGetNumSupportedArchs(&mut count) } != sys::nvrtcResult::NVRTC_SUCCESS
        || count <= 0
    {
        return Vec::new();
    }
    let mut archs = vec![0 as c_int; count as usize];
    // SAFETY: `archs` holds the `count` ints NVRTC just said it will write.
    if unsafe { sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) } != sys::nvrtcResult::NVRTC_SUCCESS
    {
        return Vec::new();
    }
    archs.iter().map(|a| format!("sm_{a}")).collect()
}

/// $ROCMFORGE_CUDA_INCLUDE, else `include/` beside the loaded library's folder (the PyPI wheels
/// put `lib/` and `include/` side by side; so does a toolkit's `lib64/`), else /usr/local/cuda.
fn find_include_dir(library_file: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(INCLUDE_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let beside = library_file
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|root| root.join("include"));
    beside
        .into_iter()
        .chain([PathBuf::from(TOOLKIT_INCLUDE)])
        .find(|dir| dir.join("cuda_fp16.h").is_file())
}

fn status_text(status: sys::nvrtcResult) -> String {
    // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string for any status.
    let text = unsafe { sys::nvrtcGetErrorString(status) };
    if text.is_null() {
        return format!("{status:?}");
    }
    // SAFETY: non-null and static, copied at once.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned()
}

/// Destroys an NVRTC program when dropped.
struct ProgramGuard(sys::nvrtcProgram);

impl Drop for ProgramGuard {
    fn drop(&mut self) {
        // SAFETY: created by nvrtcCreateProgram, destroyed once, here.
        unsafe { sys::nvrtcDestroyProgram(&mut self.0) };
    }
}

/// Size-then-bytes read of an NVRTC buffer (log or CUBIN).
fn read_buffer(
    program: sys::nvrtcProgram,
    size_fn: unsafe fn(sys::nvrtcProgram, *mut usize) -> sys::nvrtcResult,
    bytes_fn: unsafe fn(sys::nvrtcProgram, *mut c_char) -> sys::nvrtcResult,
) -> Result<Vec<u8>, sys::nvrtcResult> {
    let mut size = 0usize;
    // SAFETY: live program; writes one usize.
    let status = unsafe { size_fn(program, &mut size) };
    if status != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(status);
    }
    let mut buffer = vec![0u8; size];
    if size == 0 {
        return Ok(buffer);
    }
    // SAFETY: `buffer` holds exactly the `size` bytes NVRTC just said it will write.
    let status = unsafe { bytes_fn(program, buffer.as_mut_ptr().cast()) };
    if status != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(status);
    }
    Ok(buffer)
}

impl Compiler for NvrtcCompiler {
    fn name(&self) -> &str {
        "nvrtc"
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn platform(&self) -> Platform {
        Platform::Cuda
    }

    fn known_targets(&self) -> Vec<String> {
        self.known.clone()
    }

    fn compile(&self, src: &KernelSource, target: &Target) -> Result<CompiledKernel, CompileError> {
        check_target(self, target)?;
        let (source, name) = source_cstring(src)?;
        // A real sm_XX architecture makes NVRTC run ptxas and produce a CUBIN; -v makes ptxas
        // report registers and spills in the log.
        let mut options = vec![
            format!("-arch={}", target.full),
            "--ptxas-options=-v".to_string(),
        ];
        if let Some(dir) = &self.include_dir {
            options.push(format!("-I{}", dir.display()));
        }
        options.extend(src.options.iter().cloned());
        let options = options_cstrings(src, &options)?;
        let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();

        let started = Instant::now();
        let mut program: sys::nvrtcProgram = std::ptr::null_mut();
        // SAFETY: source and name are NUL-terminated and outlive the program; no headers.
        let status = unsafe {
            sys::nvrtcCreateProgram(
                &mut program,
                source.as_ptr(),
                name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if status != sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(api_error("nvrtcCreateProgram", status, src));
        }
        let guard = ProgramGuard(program);
        // SAFETY: live program; option_ptrs holds valid C strings that outlive the call.
        let status = unsafe {
            sys::nvrtcCompileProgram(guard.0, option_ptrs.len() as c_int, option_ptrs.as_ptr())
        };
        let log = read_buffer(
            guard.0,
            sys::nvrtcGetProgramLogSize,
            sys::nvrtcGetProgramLog,
        )
        .map(|bytes| c_buffer_to_string(&bytes))
        .unwrap_or_default();
        if status != sys::nvrtcResult::NVRTC_SUCCESS {
            let mut log = if log.is_empty() {
                format!("(no log; {})", status_text(status))
            } else {
                log
            };
            if self.include_dir.is_none() && log.contains("cannot open source file") {
                log.push_str(&format!(
                    "\nno CUDA include folder was found: set {INCLUDE_ENV} to the folder holding cuda_fp16.h \
                     (site-packages/nvidia/cu13/include of `pip install nvidia-cuda-runtime`)"
                ));
            }
            return Err(CompileError::Compile(Box::new(CompileFailure {
                compiler: "nvrtc".to_string(),
                kernel: src.name.clone(),
                target: target.full.clone(),
                log,
                source_path: save_failed_source(src, "cu"),
                context_json: src.context_json.clone(),
            })));
        }
        let binary = read_buffer(guard.0, sys::nvrtcGetCUBINSize, sys::nvrtcGetCUBIN)
            .map_err(|status| api_error("nvrtcGetCUBIN", status, src))?;
        drop(guard);
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let (registers, spills) = ptxas_usage(&log, &src.name);
        Ok(CompiledKernel {
            binary,
            log,
            compile_ms,
            registers,
            spills,
        })
    }
}

fn api_error(call: &'static str, status: sys::nvrtcResult, src: &KernelSource) -> CompileError {
    CompileError::Api {
        compiler: "nvrtc".to_string(),
        call,
        status: status as i32,
        message: status_text(status),
        kernel: src.name.clone(),
    }
}

/// Registers and spill-store bytes of entry `name` from ptxas's verbose log:
/// ```text
/// ptxas info    : Compiling entry function 'k' for 'sm_90'
/// ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
/// ptxas info    : Used 12 registers, used 0 barriers
/// ```
/// When no entry has that name, the first entry's numbers.
fn ptxas_usage(log: &str, name: &str) -> (Option<u32>, Option<u32>) {
    let sections: Vec<&str> = log.split("Compiling entry function '").skip(1).collect();
    let section = sections
        .iter()
        .find(|s| {
            s.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('\''))
        })
        .or(sections.first());
    let Some(section) = section else {
        return (None, None);
    };
    let number_before = |marker: &str| -> Option<u32> {
        let before = &section[..section.find(marker)?];
        before.split_whitespace().last()?.parse().ok()
    };
    let registers = section
        .find("Used ")
        .and_then(|at| section[at + 5..].split_whitespace().next()?.parse().ok());
    (registers, number_before(" bytes spill stores"))
}

#[cfg(test)]
mod tests {
    use super::ptxas_usage;

    #[test]
    fn reads_registers_and_spills_of_the_named_entry() {
        let log = "ptxas info    : 0 bytes gmem\n\
            ptxas info    : Compiling entry function 'a' for 'sm_90'\n\
            ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
            ptxas info    : Used 12 registers, used 0 barriers\n\
            ptxas info    : Compiling entry function 'ab' for 'sm_90'\n\
            ptxas         .     8 bytes stack frame, 24 bytes spill stores, 24 bytes spill loads\n\
            ptxas info    : Used 255 registers, used 1 barriers\n";
        assert_eq!(ptxas_usage(log, "ab"), (Some(255), Some(24)));
        assert_eq!(ptxas_usage(log, "a"), (Some(12), Some(0)));
        assert_eq!(ptxas_usage(log, "missing"), (Some(12), Some(0)));
        assert_eq!(ptxas_usage("", "a"), (None, None));
    }
}
