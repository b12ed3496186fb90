//! Run-time kernel compilers: NVRTC (NVIDIA, through cudarc) and HIPRTC (AMD, through
//! libloading). Both take the same HIP-dialect source (the platform prelude is the template's
//! business) and return a binary the GPU runtime loads as a module: a CUBIN or an AMDGPU code
//! object.

mod amdgpu_metadata;
mod dylib;
mod error;
pub mod hiprtc;
pub mod nvrtc;
mod target;

use std::path::PathBuf;

use sha2::{Digest, Sha256};

pub use error::{CompileError, CompileFailure};
pub use target::{Platform, Target};

/// A rendered kernel ready to compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSource {
    /// The kernel's entry point (`extern "C" __global__` name); also names the program.
    pub name: String,
    /// The full source, prelude included.
    pub source: String,
    /// Extra compiler options, appended after the ones the compiler adds for the target.
    pub options: Vec<String>,
    /// The template context that rendered `source`, carried into compile errors.
    pub context_json: String,
}

/// The result of one successful compilation.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledKernel {
    /// CUBIN for NVIDIA, AMDGPU code object (ELF) for AMD.
    pub binary: Vec<u8>,
    /// The compiler's log (warnings, ptxas statistics); empty when it printed nothing.
    pub log: String,
    /// Milliseconds the compiler took. A cache hit returns the time of the original compile.
    pub compile_ms: f64,
    /// Registers per thread of the kernel `name` (NVIDIA: ptxas "Used N registers"; AMD: VGPRs).
    pub registers: Option<u32>,
    /// Register spills: bytes of spill stores on NVIDIA, spilled VGPRs + SGPRs on AMD; 0 = none.
    pub spills: Option<u32>,
}

/// A run-time compiler for one platform. Implementations are safe to call from many threads.
pub trait Compiler: Send + Sync {
    /// Short name: `nvrtc` or `hiprtc`.
    fn name(&self) -> &str;
    /// Version of the loaded library, precise enough to key a cache on.
    fn version(&self) -> String;
    fn platform(&self) -> Platform;
    /// The processors (`arch`, no features) this compiler can generate code for.
    fn known_targets(&self) -> Vec<String>;
    fn compile(&self, src: &KernelSource, target: &Target) -> Result<CompiledKernel, CompileError>;
}

/// Loads the compiler of `target`'s platform and checks that it knows the target.
pub fn compiler_for(target: &Target) -> Result<Box<dyn Compiler>, CompileError> {
    let compiler: Box<dyn Compiler> = match target.platform {
        Platform::Hip => Box::new(hiprtc::HiprtcCompiler::load()?),
        Platform::Cuda => Box::new(nvrtc::NvrtcCompiler::load()?),
    };
    check_target(compiler.as_ref(), target)?;
    Ok(compiler)
}

/// Fails unless `compiler` is of `target`'s platform and knows its processor.
pub fn check_target(compiler: &dyn Compiler, target: &Target) -> Result<(), CompileError> {
    if compiler.platform() != target.platform {
        return Err(CompileError::PlatformMismatch {
            compiler: compiler.name().to_string(),
            compiler_platform: compiler.platform(),
            target: target.full.clone(),
            target_platform: target.platform,
        });
    }
    let known = compiler.known_targets();
    // NVIDIA's arch-specific variants (sm_90a, sm_100f) compile wherever their base does.
    let base = match target.platform {
        Platform::Cuda => target.arch.trim_end_matches(['a', 'f']),
        Platform::Hip => target.arch.as_str(),
    };
    if !known.iter().any(|k| k == base) {
        return Err(CompileError::UnknownTarget {
            compiler: compiler.name().to_string(),
            version: compiler.version(),
            target: target.full.clone(),
            known,
        });
    }
    Ok(())
}

/// Writes the source of a kernel that failed to compile where a person can find it, and
/// returns that path (the compile error names it). The file name carries a hash of the source
/// so that failures of different renderings of one kernel do not overwrite each other.
fn save_failed_source(src: &KernelSource, extension: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("rocmforge-failed");
    let digest = Sha256::digest(src.source.as_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let stem: String = src
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect();
    let path = dir.join(format!("{stem}-{short}.{extension}"));
    let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &src.source));
    if let Err(err) = written {
        tracing::warn!(path = %path.display(), %err, "could not save the source of a failed kernel");
    }
    path
}

/// Turns a NUL-terminated byte buffer from a C API into text, dropping the terminator.
fn c_buffer_to_string(buffer: &[u8]) -> String {
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// The source as a C string; a NUL byte inside it is a rendering bug, reported, not a panic.
fn source_cstring(
    src: &KernelSource,
) -> Result<(std::ffi::CString, std::ffi::CString), CompileError> {
    let invalid = |what: &str| CompileError::InvalidSource {
        kernel: src.name.clone(),
        reason: format!("{what} contains a NUL byte"),
    };
    let source = std::ffi::CString::new(src.source.as_str()).map_err(|_| invalid("source"))?;
    let name = std::ffi::CString::new(src.name.as_str()).map_err(|_| invalid("name"))?;
    Ok((source, name))
}

fn options_cstrings(
    src: &KernelSource,
    options: &[String],
) -> Result<Vec<std::ffi::CString>, CompileError> {
    options
        .iter()
        .map(|o| {
            std::ffi::CString::new(o.as_str()).map_err(|_| CompileError::InvalidSource {
                kernel: src.name.clone(),
                reason: format!("option {o:?} contains a NUL byte"),
            })
        })
        .collect()
}
