//! Errors of the tuner. A bad tuning database is not among them: it is ignored with a warning.

use std::path::PathBuf;

use crate::backend::gpu::{GpuError, RuntimeError};
use crate::codegen::compiler::CompileError;
use crate::codegen::CodegenError;

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("tuning database {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no cache folder for the tuning database: set ROCMFORGE_CACHE_DIR")]
    NoCacheDir,
}

impl From<RuntimeError> for TuneError {
    fn from(e: RuntimeError) -> Self {
        TuneError::Gpu(GpuError::Runtime(e))
    }
}
