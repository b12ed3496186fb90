//! Errors of the GPU executor (the runtime layer has its own, wrapped here).

use super::runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "not enough memory on {device}: the model needs {needed} bytes ({detail}), {free} free \
         (lower --ctx-size or use a smaller model)"
    )]
    OutOfMemory {
        device: String,
        needed: u64,
        free: u64,
        detail: String,
    },
    /// A step of the program cannot be run as written.
    #[error("step '{step}' ({op}): {what}")]
    Step {
        step: String,
        op: &'static str,
        what: String,
    },
    /// The kernel table has no kernel for a step.
    #[error("no kernel for step '{step}' ({role}) at {n_tokens} tokens: {what}")]
    MissingKernel {
        step: String,
        role: &'static str,
        n_tokens: usize,
        what: String,
    },
    /// Rendering or compiling the model's kernels failed (the message carries the compiler log).
    #[error("kernels: {0}")]
    Codegen(String),
    #[error("device '{spec}': {what}")]
    Device { spec: String, what: String },
}

impl From<GpuError> for crate::backend::BackendError {
    fn from(e: GpuError) -> Self {
        crate::backend::BackendError::Device(e.to_string())
    }
}
