//! Errors of kernel generation: a knob or shape the kernels cannot take, a template that does not
//! render, a tuning choice that names no candidate.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CodegenError {
    /// A context failed `validate()`: `problem` names the op and shape, `reason` the broken rule.
    #[error("kernel {problem}: {reason}")]
    Invalid { problem: String, reason: String },
    /// The weight format has no dequantization snippet.
    #[error("kernel {problem}: weight format {format} is not supported on the GPU")]
    UnsupportedFormat { problem: String, format: String },
    #[error("template {template}: {message}")]
    Template { template: String, message: String },
    #[error("ROCMFORGE_TEMPLATE_DIR={}: cannot read {file}: {message}", dir.display())]
    TemplateDir {
        dir: PathBuf,
        file: String,
        message: String,
    },
    #[error("tuning for {problem} picks candidate {index}, but there are only {count}")]
    BadTuning {
        problem: String,
        index: usize,
        count: usize,
    },
    /// The model's program has a step the kernel set cannot serve.
    #[error("step `{step}`: {reason}")]
    Step { step: String, reason: String },
}
