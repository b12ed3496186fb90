//! HIPRTC, loaded with libloading so that rocmforge builds and runs without ROCm installed.
//!
//! ROCm 6 ships the compiler as `libhiprtc.so`; ROCm 5.x (Debian 12's packages) keeps the
//! `hiprtc*` functions inside `libamdhip64.so`. Both compile for a target with no GPU present.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;
use std::time::Instant;

use libloading::Library;

use super::{
    amdgpu_metadata, c_buffer_to_string, check_target, dylib, options_cstrings, save_failed_source,
    source_cstring, CompileError, CompileFailure, CompiledKernel, Compiler, KernelSource, Platform,
    Target,
};

/// Env var naming the library file to load instead of searching the candidates.
pub const LIBRARY_ENV: &str = "ROCMFORGE_HIPRTC_LIB";

const LIBRARY_CANDIDATES: [&str; 6] = [
    "libhiprtc.so",
    "libhiprtc.so.6",
    "libhiprtc.so.5",
    "libamdhip64.so",
    "libamdhip64.so.6",
    "libamdhip64.so.5",
];

const INSTALL_HINT: &str = "install HIPRTC: `apt-get install libamdhip64-dev libhiprtc-builtins5 rocm-device-libs` \
(Debian 12 / Ubuntu) or a ROCm release from AMD; if it is installed outside the loader's path, add its lib \
folder to LD_LIBRARY_PATH or point ROCMFORGE_HIPRTC_LIB at libhiprtc.so / libamdhip64.so";

/// Processors each HIPRTC generation can compile for, oldest first: a ROCm release knows its
/// row and every row before it. Rows after ROCm 5.2 come from AMD's release notes, not from
/// runs here: ROCm 5.2's HIPRTC crashes (instead of failing) on gfx942 and gfx1100, so
/// offering a processor the loaded release does not know is not an option.
const TARGETS_BY_RELEASE: [((u32, u32), &[&str]); 4] = [
    ((5, 0), &["gfx900", "gfx906", "gfx908", "gfx90a", "gfx1030"]),
    (
        (5, 5),
        &[
            "gfx940", "gfx941", "gfx942", "gfx1100", "gfx1101", "gfx1102",
        ],
    ),
    ((6, 3), &["gfx1200", "gfx1201"]),
    ((7, 0), &["gfx950"]),
];

type Program = *mut c_void;
type CreateProgramFn = unsafe extern "C" fn(
    *mut Program,
    *const c_char,
    *const c_char,
    c_int,
    *const *const c_char,
    *const *const c_char,
) -> c_int;
type CompileProgramFn = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> c_int;
type GetSizeFn = unsafe extern "C" fn(Program, *mut usize) -> c_int;
type GetBytesFn = unsafe extern "C" fn(Program, *mut c_char) -> c_int;
type DestroyProgramFn = unsafe extern "C" fn(*mut Program) -> c_int;
type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
type ErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;
type RuntimeVersionFn = unsafe extern "C" fn(*mut c_int) -> c_int;

/// The HIPRTC entry points, copied out of the library (which `HiprtcCompiler` keeps loaded).
struct Api {
    create_program: CreateProgramFn,
    compile_program: CompileProgramFn,
    log_size: GetSizeFn,
    log: GetBytesFn,
    code_size: GetSizeFn,
    code: GetBytesFn,
    destroy_program: DestroyProgramFn,
    error_string: Option<ErrorStringFn>,
}

pub struct HiprtcCompiler {
    api: Api,
    version: String,
    known: Vec<String>,
    /// Keeps the functions in `api` valid; dropped last.
    _library: Library,
}

impl HiprtcCompiler {
    /// Loads HIPRTC: `$ROCMFORGE_HIPRTC_LIB` if set, else the first library of the candidates.
    pub fn load() -> Result<HiprtcCompiler, CompileError> {
        let candidates: Vec<String> = match std::env::var(LIBRARY_ENV) {
            Ok(path) if !path.is_empty() => vec![path],
            _ => LIBRARY_CANDIDATES.iter().map(|s| s.to_string()).collect(),
        };
        let mut reasons = Vec::new();
        for candidate in &candidates {
            // SAFETY: loading a shared library runs its initializers; these are AMD's HIP
            // libraries (or the file the user named), whose initializers only set up state.
            match unsafe { Library::new(candidate) } {
                Ok(library) => match Self::from_library(library) {
                    Ok(compiler) => return Ok(compiler),
                    Err(missing) => reasons.push(format!("{candidate}: {missing}")),
                },
                Err(err) => reasons.push(err.to_string()),
            }
        }
        Err(CompileError::LibraryMissing {
            compiler: "hiprtc",
            reason: reasons.last().cloned().unwrap_or_default(),
            tried: candidates,
            hint: INSTALL_HINT.to_string(),
        })
    }

    fn from_library(library: Library) -> Result<HiprtcCompiler, String> {
        fn symbol<T: Copy>(library: &Library, name: &str) -> Result<T, String> {
            // SAFETY: each call names a HIPRTC function and T is its C signature as declared in
            // hiprtc.h; the pointer is used only while `library` is loaded (kept in the struct).
            unsafe { library.get::<T>(name.as_bytes()) }
                .map(|s| *s)
                .map_err(|_| format!("has no function {name}"))
        }
        let api = Api {
            create_program: symbol(&library, "hiprtcCreateProgram")?,
            compile_program: symbol(&library, "hiprtcCompileProgram")?,
            log_size: symbol(&library, "hiprtcGetProgramLogSize")?,
            log: symbol(&library, "hiprtcGetProgramLog")?,
            code_size: symbol(&library, "hiprtcGetCodeSize")?,
            code: symbol(&library, "hiprtcGetCode")?,
            destroy_program: symbol(&library, "hiprtcDestroyProgram")?,
            error_string: symbol(&library, "hiprtcGetErrorString").ok(),
        };
        let version_fn: VersionFn = symbol(&library, "hiprtcVersion")?;
        let (mut major, mut minor) = (0, 0);
        // SAFETY: hiprtcVersion writes two ints through valid pointers.
        let status = unsafe { version_fn(&mut major, &mut minor) };
        let rtc_version = (status == 0).then_some((major, minor));
        let file = dylib::library_path_of(version_fn as *const c_void);
        let hip_version = symbol::<RuntimeVersionFn>(&library, "hipRuntimeGetVersion")
            .ok()
            .and_then(|f| {
                let mut packed = 0;
                // SAFETY: hipRuntimeGetVersion writes one int and needs no device.
                (unsafe { f(&mut packed) } == 0).then_some(packed)
            });
        let release = rocm_release(hip_version, &file, rtc_version);
        let known = TARGETS_BY_RELEASE
            .iter()
            .filter(|(since, _)| {
                release.is_some_and(|r| r >= *since) || *since == TARGETS_BY_RELEASE[0].0
            })
            .flat_map(|(_, arches)| arches.iter().map(|a| a.to_string()))
            .collect();
        let version = format!(
            "{} (ROCm {}, {})",
            rtc_version.map_or("unknown".to_string(), |(a, b)| format!("{a}.{b}")),
            release.map_or("unknown".to_string(), |(a, b)| format!("{a}.{b}")),
            hip_version.map_or_else(
                || dylib::file_name(&file),
                |v| format!("HIP {v}, {}", dylib::file_name(&file))
            )
        );
        Ok(HiprtcCompiler {
            api,
            version,
            known,
            _library: library,
        })
    }

    fn status_message(&self, status: c_int) -> String {
        let Some(error_string) = self.api.error_string else {
            return "no description".to_string();
        };
        // SAFETY: hiprtcGetErrorString returns a pointer to a static NUL-terminated string
        // (or null for an unknown code), which we copy immediately.
        let text = unsafe { error_string(status) };
        if text.is_null() {
            return "no description".to_string();
        }
        // SAFETY: non-null, static and NUL-terminated as above.
        unsafe { CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned()
    }

    /// Reads a size-then-bytes pair of HIPRTC calls (log or code object).
    fn read_buffer(
        &self,
        program: Program,
        size_fn: GetSizeFn,
        bytes_fn: GetBytesFn,
    ) -> Result<Vec<u8>, c_int> {
        let mut size = 0usize;
        // SAFETY: `program` is a live program; the call writes one usize.
        let status = unsafe { size_fn(program, &mut size) };
        if status != 0 {
            return Err(status);
        }
        let mut buffer = vec![0u8; size];
        if size == 0 {
            return Ok(buffer);
        }
        // SAFETY: `buffer` holds exactly the `size` bytes HIPRTC just said it will write.
        let status = unsafe { bytes_fn(program, buffer.as_mut_ptr().cast()) };
        if status != 0 {
            return Err(status);
        }
        Ok(buffer)
    }

    fn read_log(&self, program: Program) -> String {
        // A log size of 0 or 1 (just the terminator) means there is no log; ROCm 5.2 fails
        // the log call in that case, so do not make it.
        let mut size = 0usize;
        // SAFETY: `program` is a live program; the call writes one usize.
        if unsafe { (self.api.log_size)(program, &mut size) } != 0 || size <= 1 {
            return String::new();
        }
        self.read_buffer(program, self.api.log_size, self.api.log)
            .map(|bytes| c_buffer_to_string(&bytes))
            .unwrap_or_default()
    }

    fn api_error(&self, call: &'static str, status: c_int, src: &KernelSource) -> CompileError {
        CompileError::Api {
            compiler: "hiprtc".to_string(),
            call,
            status,
            message: self.status_message(status),
            kernel: src.name.clone(),
        }
    }
}

/// Destroys a HIPRTC program when dropped, whichever way compile() returns.
struct ProgramGuard {
    program: Program,
    destroy: DestroyProgramFn,
}

impl Drop for ProgramGuard {
    fn drop(&mut self) {
        // SAFETY: the program was created by hiprtcCreateProgram and is destroyed once, here.
        unsafe { (self.destroy)(&mut self.program) };
    }
}

impl Compiler for HiprtcCompiler {
    fn name(&self) -> &str {
        "hiprtc"
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    fn platform(&self) -> Platform {
        Platform::Hip
    }

    fn known_targets(&self) -> Vec<String> {
        self.known.clone()
    }

    fn compile(&self, src: &KernelSource, target: &Target) -> Result<CompiledKernel, CompileError> {
        check_target(self, target)?;
        let (source, name) = source_cstring(src)?;
        let program_name = std::ffi::CString::new(format!("{}.hip", name.to_string_lossy()))
            .map_err(|_| CompileError::InvalidSource {
                kernel: src.name.clone(),
                reason: "name contains a NUL byte".to_string(),
            })?;
        let mut options = vec![format!("--offload-arch={}", target.full)];
        options.extend(src.options.iter().cloned());
        let options = options_cstrings(src, &options)?;
        let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();

        // ROCm 5.2's HIPRTC corrupts its own state when programs compile on several threads at
        // once (seen: "No available targets are compatible with triple amdgcn-amd-amdhsa" and a
        // heap abort), so compiles through it are serialized.
        static HIPRTC_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _serial = HIPRTC_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let mut program: Program = std::ptr::null_mut();
        // SAFETY: source and name are NUL-terminated and outlive the program (dropped after
        // the guard); no headers are passed (counts 0, null arrays).
        let status = unsafe {
            (self.api.create_program)(
                &mut program,
                source.as_ptr(),
                program_name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if status != 0 {
            return Err(self.api_error("hiprtcCreateProgram", status, src));
        }
        let guard = ProgramGuard {
            program,
            destroy: self.api.destroy_program,
        };
        // SAFETY: live program; option_ptrs holds option_ptrs.len() valid C strings that live
        // until after the call.
        let status = unsafe {
            (self.api.compile_program)(
                guard.program,
                option_ptrs.len() as c_int,
                option_ptrs.as_ptr(),
            )
        };
        let log = self.read_log(guard.program);
        if status != 0 {
            let log = if log.is_empty() {
                format!("(no log; status {status}: {})", self.status_message(status))
            } else {
                log
            };
            return Err(compile_failure(src, target, log));
        }
        let binary = self
            .read_buffer(guard.program, self.api.code_size, self.api.code)
            .map_err(|status| self.api_error("hiprtcGetCode", status, src))?;
        drop(guard);
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let registers = amdgpu_metadata::kernel_registers(&binary, &src.name);
        Ok(CompiledKernel {
            binary,
            log,
            compile_ms,
            registers: registers.map(|r| r.vgprs),
            spills: registers.map(|r| r.spills),
        })
    }
}

fn compile_failure(src: &KernelSource, target: &Target, log: String) -> CompileError {
    let source_path: PathBuf = save_failed_source(src, "hip");
    CompileError::Compile(Box::new(CompileFailure {
        compiler: "hiprtc".to_string(),
        kernel: src.name.clone(),
        target: target.full.clone(),
        log,
        source_path,
        context_json: src.context_json.clone(),
    }))
}

/// The ROCm release (major, minor) of the loaded library. hipRuntimeGetVersion packs it as
/// major * 10^7 + minor * 10^5 + patch; failing that, the resolved file name carries it
/// (`libhiprtc.so.6.2.60200`); hiprtcVersion is the last resort because ROCm 5.x always
/// answers 9.0 there.
fn rocm_release(
    hip_version: Option<c_int>,
    file: &Option<PathBuf>,
    rtc: Option<(c_int, c_int)>,
) -> Option<(u32, u32)> {
    if let Some(packed) = hip_version
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
    {
        return Some((packed / 10_000_000, packed / 100_000 % 100));
    }
    let from_file = file.as_ref().and_then(|path| {
        let name = path.file_name()?.to_str()?;
        let (_, numbers) = name.split_once(".so.")?;
        let mut parts = numbers.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next()??;
        Some((major, minor))
    });
    from_file.or_else(|| {
        let (major, minor) = rtc?;
        let plausible = (5..9).contains(&major);
        plausible.then_some((major as u32, minor as u32))
    })
}
