//! From the code generator's kernel set to a loaded kernel table: render the kernels `model`
//! needs for this device, compile them through the disk cache, load the binaries, and map each
//! step of the program to its entry points.

use std::sync::Arc;

use super::error::GpuError;
use super::executor::{check_memory, ExecutorConfig, GpuBackend};
use super::kernels::{KernelRole, Section, StepSite};
use super::loaded::{KernelBinary, KernelSelector, LoadedKernelTable};
use super::runtime::{DeviceInfo, GpuRuntime, LaunchDims};
use crate::codegen::cache::{compile_all, KernelCache};
use crate::codegen::compiler::{compiler_for, Target};
use crate::codegen::kernel_set::kernels_for_model;
use crate::codegen::{KernelKind, KernelSet, KernelSpec, Renderer, StepAt, TuningChoice};
use crate::plan::Model;

fn codegen_error(what: impl std::fmt::Display) -> GpuError {
    GpuError::Codegen(what.to_string())
}

/// The compile target of a device: its full arch string and warp size as the device reports.
pub fn target_of(info: &DeviceInfo) -> Result<Target, GpuError> {
    let mut target = Target::parse(&info.arch).map_err(codegen_error)?;
    target.warp_size = info.warp_size;
    Ok(target)
}

/// Where the step at `site` sits in a kernel set; None for a block step without a layer.
pub fn step_at(site: StepSite) -> Option<StepAt> {
    Some(match site.section {
        Section::Prologue => StepAt::Prologue(site.index),
        Section::Block => StepAt::Block {
            layer: site.layer?,
            step: site.index,
        },
        Section::Epilogue => StepAt::Epilogue(site.index),
    })
}

/// The spec computing `role` of the step at `site` over `n_tokens` tokens.
fn select(
    set: &KernelSet,
    site: StepSite,
    role: KernelRole,
    n_tokens: usize,
) -> Result<&KernelSpec, String> {
    if role == KernelRole::Argmax {
        return Ok(set.argmax());
    }
    let at = step_at(site).ok_or("block step without a layer")?;
    let specs = set
        .for_step(at, n_tokens as u32)
        .ok_or("the kernel set has no such step")?;
    // Attention is two launches, kv_store (or rope_store when fused with the ropes) then
    // attention, or one that rotates and stores itself (a different ABI, never `Main`); a
    // prefill matmul has its staging kernels before the GEMM; every other step is one.
    let first = |kind: KernelKind| specs.iter().find(|s| s.kind == kind);
    let found = match role {
        KernelRole::KvStore => first(KernelKind::KvStore),
        KernelRole::RopeStore => first(KernelKind::RopeStore),
        KernelRole::RopeAttention => first(KernelKind::RopeAttention),
        KernelRole::StageInput => first(KernelKind::StageInput),
        KernelRole::StageWeights => first(KernelKind::StageWeights),
        _ => specs.iter().rev().find(|s| {
            !matches!(
                s.kind,
                KernelKind::KvStore
                    | KernelKind::RopeStore
                    | KernelKind::RopeAttention
                    | KernelKind::StageInput
                    | KernelKind::StageWeights
            )
        }),
    };
    found.copied().ok_or_else(|| {
        let kinds: Vec<String> = specs.iter().map(|s| format!("{:?}", s.kind)).collect();
        format!("the step's kernels are [{}]", kinds.join(", "))
    })
}

/// A model's kernels compiled for one target, not yet loaded on a device.
pub struct CompiledKernels {
    pub binaries: Vec<KernelBinary>,
    pub selector: KernelSelector,
}

/// Render and compile (through the disk cache) every kernel of `model` for `target`, every
/// problem at its default candidate.
pub fn compile_kernels(
    target: &Target,
    model: &Model,
    n_ctx: usize,
) -> Result<CompiledKernels, GpuError> {
    compile_kernels_tuned(target, model, n_ctx, &TuningChoice::defaults())
}

/// As [`compile_kernels`], with the candidates `tuning` picks.
pub fn compile_kernels_tuned(
    target: &Target,
    model: &Model,
    n_ctx: usize,
    tuning: &TuningChoice,
) -> Result<CompiledKernels, GpuError> {
    let renderer = Renderer::from_env().map_err(codegen_error)?;
    let set = kernels_for_model(model, target, tuning, n_ctx, &renderer).map_err(codegen_error)?;
    compile_set(target, set)
}

/// Compile (through the disk cache) every kernel of `set` for `target`.
pub fn compile_set(target: &Target, set: KernelSet) -> Result<CompiledKernels, GpuError> {
    let compiler = compiler_for(target).map_err(codegen_error)?;
    let cache = KernelCache::from_env().map_err(codegen_error)?;
    let mut binaries = Vec::with_capacity(set.kernels.len());
    for result in compile_all(&cache, compiler.as_ref(), target, &set.sources()) {
        let outcome = result.map_err(codegen_error)?;
        binaries.push(KernelBinary {
            entry: outcome.name,
            image: Arc::new(outcome.kernel.binary),
            // The templates use static shared memory only: nothing to opt in to.
            max_shared_bytes: 0,
        });
    }
    Ok(CompiledKernels {
        binaries,
        selector: selector_for(set),
    })
}

/// Maps each step, role and token count to its kernel of `set` and launch dimensions.
pub fn selector_for(set: KernelSet) -> KernelSelector {
    Box::new(move |site, role, n_tokens| {
        let spec = select(&set, site, role, n_tokens).map_err(|what| GpuError::MissingKernel {
            step: format!("{site:?}"),
            role: role.name(),
            n_tokens,
            what,
        })?;
        Ok((
            spec.name.clone(),
            LaunchDims {
                grid: spec.grid(n_tokens as u32),
                block: spec.block,
                // Static shared memory is part of the kernel; no dynamic shared memory.
                shared_bytes: 0,
                // Every template starts with the prelude's wait for its inputs.
                dependent: true,
            },
        ))
    })
}

/// Render, compile (cached) and load every kernel of `model` for `runtime`'s device.
pub fn compile_kernel_table(
    runtime: &Arc<dyn GpuRuntime>,
    model: &Model,
    n_ctx: usize,
) -> Result<LoadedKernelTable, GpuError> {
    compile_kernel_table_tuned(runtime, model, n_ctx, &TuningChoice::defaults())
}

/// As [`compile_kernel_table`], with the candidates `tuning` picks.
pub fn compile_kernel_table_tuned(
    runtime: &Arc<dyn GpuRuntime>,
    model: &Model,
    n_ctx: usize,
    tuning: &TuningChoice,
) -> Result<LoadedKernelTable, GpuError> {
    let compiled = compile_kernels_tuned(&target_of(runtime.info())?, model, n_ctx, tuning)?;
    LoadedKernelTable::load(runtime, &compiled.binaries, compiled.selector)
}

impl GpuBackend {
    /// Everything for `model` on `runtime`'s device: checks memory first (before spending time
    /// compiling), then compiles and loads the kernels and uploads the model.
    pub fn load(
        runtime: Arc<dyn GpuRuntime>,
        model: Arc<Model>,
        config: ExecutorConfig,
    ) -> Result<Self, GpuError> {
        Self::load_tuned(runtime, model, config, &TuningChoice::defaults())
    }

    /// As [`GpuBackend::load`], with the kernel candidates `tuning` picks.
    pub fn load_tuned(
        runtime: Arc<dyn GpuRuntime>,
        model: Arc<Model>,
        config: ExecutorConfig,
        tuning: &TuningChoice,
    ) -> Result<Self, GpuError> {
        check_memory(runtime.as_ref(), &model, &config)?;
        let kernels = compile_kernel_table_tuned(&runtime, &model, config.n_ctx, tuning)?;
        Self::new(runtime, model, Box::new(kernels), config)
    }
}
