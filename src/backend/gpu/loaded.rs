//! A [`KernelTable`] over compiled binaries: each binary is loaded once as a module, its entry
//! point resolved once, and a selection function (from the code generator's kernel set) maps a
//! step, role and token count to an entry point and launch dimensions.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::GpuError;
use super::kernels::{KernelLaunch, KernelRole, KernelTable, StepSite};
use super::memory::Module;
use super::runtime::{FunctionHandle, GpuRuntime, LaunchDims};

/// Dynamic shared memory a kernel may use without opting in (CUDA's static limit).
const DEFAULT_SHARED_LIMIT: u32 = 48 * 1024;

/// One compiled kernel: its entry point, the binary holding it and the most dynamic shared
/// memory any of its launches uses.
#[derive(Clone, Debug)]
pub struct KernelBinary {
    pub entry: String,
    pub image: Arc<Vec<u8>>,
    pub max_shared_bytes: u32,
}

/// Which entry point and dimensions compute a step's role at a token count.
pub type KernelSelector =
    Box<dyn Fn(StepSite, KernelRole, usize) -> Result<(String, LaunchDims), GpuError> + Send>;

pub struct LoadedKernelTable {
    functions: HashMap<String, FunctionHandle>,
    select: KernelSelector,
    // Function handles point into these modules: kept alive as long as the table.
    _modules: Vec<Module>,
}

impl LoadedKernelTable {
    pub fn load(
        runtime: &Arc<dyn GpuRuntime>,
        binaries: &[KernelBinary],
        select: KernelSelector,
    ) -> Result<Self, GpuError> {
        let mut functions = HashMap::new();
        let mut modules = Vec::new();
        for binary in binaries {
            if functions.contains_key(&binary.entry) {
                continue;
            }
            let module = Module::load(runtime, &binary.image)?;
            let function = module.function(&binary.entry)?;
            if binary.max_shared_bytes > DEFAULT_SHARED_LIMIT {
                // SAFETY: the function belongs to `module`, which the table keeps alive.
                unsafe { runtime.set_max_dynamic_shared(function, binary.max_shared_bytes)? };
            }
            functions.insert(binary.entry.clone(), function);
            modules.push(module);
        }
        Ok(Self {
            functions,
            select,
            _modules: modules,
        })
    }

    /// The loaded function of an entry point, if the table has it.
    pub fn function(&self, entry: &str) -> Option<FunctionHandle> {
        self.functions.get(entry).copied()
    }
}

impl KernelTable for LoadedKernelTable {
    fn kernel(
        &self,
        site: StepSite,
        role: KernelRole,
        n_tokens: usize,
    ) -> Result<KernelLaunch, GpuError> {
        let (entry, dims) = (self.select)(site, role, n_tokens)?;
        let function = *self
            .functions
            .get(&entry)
            .ok_or_else(|| GpuError::MissingKernel {
                step: format!("{site:?}"),
                role: role.name(),
                n_tokens,
                what: format!("entry point '{entry}' was not among the loaded binaries"),
            })?;
        Ok(KernelLaunch { function, dims })
    }
}
