//! The table `rocmforge kernels` prints: each kernel of a set with its problem, knobs and launch
//! shape and, once compiled, compile time, binary size, registers and spills.

use std::fmt;

use super::cache::CompileOutcome;
use super::compiler::CompileError;
use super::kernel_set::KernelSet;

#[derive(Debug, Clone, PartialEq)]
pub struct KernelRow {
    pub name: String,
    pub problem: String,
    pub knobs: String,
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
    /// Step launches using the kernel.
    pub uses: usize,
    pub compiled: Option<CompiledFacts>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompiledFacts {
    pub compile_ms: f64,
    pub cache_hit: bool,
    pub binary_bytes: usize,
    pub registers: Option<u32>,
    pub spills: Option<u32>,
}

/// One row per kernel of `set`; `compiled`, when given, holds the results of compiling
/// `set.sources()` (same order), e.g. from `cache::compile_all`. Failed compiles have no facts.
pub fn kernel_rows(
    set: &KernelSet,
    compiled: Option<&[Result<CompileOutcome, CompileError>]>,
) -> Vec<KernelRow> {
    let uses = set.uses();
    set.kernels
        .iter()
        .enumerate()
        .map(|(i, k)| KernelRow {
            name: k.name.clone(),
            problem: k.problem.clone(),
            knobs: k.knobs_json.clone(),
            block: k.block,
            shared_bytes: k.shared_bytes,
            uses: uses[i],
            compiled: compiled
                .and_then(|c| c.get(i))
                .and_then(|r| r.as_ref().ok())
                .map(|o| CompiledFacts {
                    compile_ms: o.kernel.compile_ms,
                    cache_hit: o.cache_hit,
                    binary_bytes: o.kernel.binary.len(),
                    registers: o.kernel.registers,
                    spills: o.kernel.spills,
                }),
        })
        .collect()
}

impl fmt::Display for KernelRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (x, y, z) = self.block;
        write!(
            f,
            "{:<32} {:<46} {:>4}x  block {x}x{y}x{z} smem {:>5}  {}",
            self.name, self.problem, self.uses, self.shared_bytes, self.knobs
        )?;
        if let Some(c) = &self.compiled {
            let opt = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
            write!(
                f,
                "  {:.0} ms{} {} B regs {} spills {}",
                c.compile_ms,
                if c.cache_hit { " (cached)" } else { "" },
                c.binary_bytes,
                opt(c.registers),
                opt(c.spills)
            )?;
        }
        Ok(())
    }
}
