//! How the executor asks for the kernel of a step: by where the step sits in the program, which of
//! its kernels (attention has two) and how many tokens the launch covers. The table behind this
//! trait owns the loaded modules; the executor only sees function handles and launch dimensions.

use super::error::GpuError;
use super::runtime::{FunctionHandle, LaunchDims};

pub use crate::graph::Section;

/// One step of the program; `layer` is set for block steps (layers may differ in weight format).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StepSite {
    pub section: Section,
    pub index: usize,
    pub layer: Option<usize>,
}

/// Which kernel of a step. Most steps have one (`Main`); attention first stores the new keys and
/// values in the cache (`KvStore`) and then attends (`Main`). `Argmax` is the one launch outside
/// the program, on the logits row, and its site is the program's last epilogue step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelRole {
    Main,
    KvStore,
    /// Rotating q and k and storing k and v: the first kernel of a fused rope + attention.
    RopeStore,
    /// A fused rope + attention in one kernel (decode, when tuned so): rotates q and k, stores
    /// k and v and attends.
    RopeAttention,
    Argmax,
    /// A prefill matmul on the vendor GEMM: its input rows as f16, then its weight dequantized
    /// to f16 (the GEMM itself is the runtime's, not a kernel).
    StageInput,
    StageWeights,
}

impl KernelRole {
    pub fn name(self) -> &'static str {
        match self {
            KernelRole::Main => "main",
            KernelRole::KvStore => "kv_store",
            KernelRole::RopeStore => "rope_store",
            KernelRole::RopeAttention => "rope_attention",
            KernelRole::Argmax => "argmax",
            KernelRole::StageInput => "stage_input",
            KernelRole::StageWeights => "stage_weights",
        }
    }
}

/// A kernel ready to launch for a given token count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLaunch {
    pub function: FunctionHandle,
    pub dims: LaunchDims,
}

/// The compiled, loaded kernels of one model on one device.
pub trait KernelTable {
    /// The kernel computing `role` of the step at `site` for a launch over `n_tokens` tokens
    /// (the table picks GEMV or GEMM variants and the grid from `n_tokens`).
    fn kernel(
        &self,
        site: StepSite,
        role: KernelRole,
        n_tokens: usize,
    ) -> Result<KernelLaunch, GpuError>;

    /// Whether the step at `site` has a kernel for `role` over `n_tokens` tokens: for launches
    /// whose shape the tuned knobs decide (a rope + attention in one kernel or two).
    fn has(&self, site: StepSite, role: KernelRole, n_tokens: usize) -> bool {
        self.kernel(site, role, n_tokens).is_ok()
    }
}
