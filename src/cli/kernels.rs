//! `rocmforge kernels`: every kernel a model needs for a target, rendered and (with --check)
//! compiled, with no GPU needed. A compile error shows the compiler log and the template context.

use crate::codegen::cache::{compile_all, KernelCache};
use crate::codegen::compiler::{compiler_for, Target};
use crate::codegen::kernel_set::kernels_for_model;
use crate::codegen::listing::kernel_rows;
use crate::codegen::{Renderer, TuningChoice};
use crate::gguf::GgufFile;
use crate::plan::{bind, Plan};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct KernelsArgs {
    #[arg(long)]
    pub gguf: PathBuf,
    /// Plan name or path (default: found from general.architecture)
    #[arg(long)]
    pub arch: Option<String>,
    /// gfx90a, gfx1030, sm_90, ... (or a full target such as gfx90a:sramecc+:xnack-)
    #[arg(long)]
    pub target: String,
    /// Context size the attention kernels are specialized for
    #[arg(long, default_value_t = 4096)]
    pub ctx_size: usize,
    /// Write each kernel's source here
    #[arg(long)]
    pub emit: Option<PathBuf>,
    /// Compile every kernel (through the disk cache) and report time, size, registers, spills
    #[arg(long)]
    pub check: bool,
}

pub fn run(a: &KernelsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let file = Arc::new(GgufFile::open(&a.gguf)?);
    let plan = Plan::resolve(a.arch.as_deref(), &file)?;
    let model = bind(&plan, file)?;
    let target = Target::parse(&a.target)?;
    let set = kernels_for_model(
        &model,
        &target,
        &TuningChoice::defaults(),
        a.ctx_size,
        &Renderer::from_env()?,
    )?;
    let sources = set.sources();
    if let Some(dir) = &a.emit {
        std::fs::create_dir_all(dir)?;
        let ext = if a.target.starts_with("sm_") {
            "cu"
        } else {
            "hip"
        };
        for s in &sources {
            std::fs::write(dir.join(format!("{}.{ext}", s.name)), &s.source)?;
        }
    }
    let compiled = if a.check {
        let compiler = compiler_for(&target)?;
        let results = compile_all(
            &KernelCache::from_env()?,
            compiler.as_ref(),
            &target,
            &sources,
        );
        if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
            return Err(format!("{e}").into());
        }
        eprintln!("compiled with {} {}", compiler.name(), compiler.version());
        Some(results)
    } else {
        None
    };
    println!(
        "{} kernels for {} ({} plan) on {}",
        sources.len(),
        a.gguf.display(),
        plan.name,
        target.full
    );
    for row in kernel_rows(&set, compiled.as_deref()) {
        println!("{row}");
    }
    Ok(())
}
