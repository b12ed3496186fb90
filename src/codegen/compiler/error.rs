//! The error type of the compiler layer (NVRTC, HIPRTC and the kernel cache).

use std::path::PathBuf;

use super::Platform;

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("bad target '{input}': {reason}")]
    BadTarget { input: String, reason: String },

    #[error("{compiler} is not available: {reason}.\n  tried: {}\n  {hint}", tried.join(", "))]
    LibraryMissing {
        compiler: &'static str,
        reason: String,
        tried: Vec<String>,
        hint: String,
    },

    #[error(
        "{compiler} {version} does not know target '{target}'; targets it knows: {}",
        known.join(", ")
    )]
    UnknownTarget {
        compiler: String,
        version: String,
        target: String,
        known: Vec<String>,
    },

    #[error("{compiler} compiles for {compiler_platform} but target '{target}' is a {target_platform} target")]
    PlatformMismatch {
        compiler: String,
        compiler_platform: Platform,
        target: String,
        target_platform: Platform,
    },

    #[error("kernel '{kernel}' source is unusable: {reason}")]
    InvalidSource { kernel: String, reason: String },

    /// Boxed: the failure carries the whole log and context, and every Result of this layer
    /// would otherwise be as large as it.
    #[error("{0}")]
    Compile(Box<CompileFailure>),

    #[error(
        "{compiler} call {call} failed with status {status} ({message}) for kernel '{kernel}'"
    )]
    Api {
        compiler: String,
        call: &'static str,
        status: i32,
        message: String,
        kernel: String,
    },

    #[error("kernel cache {}: {source}", path.display())]
    CacheIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("kernel cache has no location: set ROCMFORGE_CACHE_DIR (the platform has no cache directory)")]
    NoCacheDir,
}

/// A kernel the compiler rejected, with everything needed to reproduce and read the failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{compiler} failed to compile kernel '{kernel}' for {target}\n  source: {}\n  template context: {context_json}\n--- compiler log ---\n{log}",
    source_path.display()
)]
pub struct CompileFailure {
    pub compiler: String,
    pub kernel: String,
    pub target: String,
    pub log: String,
    /// Where the rendered source was written so that it can be read and recompiled by hand.
    pub source_path: PathBuf,
    pub context_json: String,
}
