//! Choosing the device a model runs on: "cpu", "cuda[:N]", "hip[:N]" or "auto".

use std::sync::Arc;

use super::error::GpuError;
use super::executor::{ExecutorConfig, GpuBackend};
use super::runtime::{GpuRuntime, RuntimeError};
use crate::backend::cpu::CpuBackend;
use crate::backend::cuda::CudaRuntime;
use crate::backend::hip::HipRuntime;
use crate::backend::{Backend, BackendError};
use crate::codegen::TuningChoice;
use crate::plan::Model;
use crate::tune::{launch_mode, tuning_for_device};

/// A parsed `--device` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
    Hip(usize),
    /// HIP if an AMD GPU is usable, else CUDA, else the CPU.
    Auto,
}

impl DeviceSpec {
    pub fn parse(spec: &str) -> Result<Self, GpuError> {
        let bad = |what: String| GpuError::Device {
            spec: spec.to_string(),
            what,
        };
        let (kind, ordinal) = match spec.split_once(':') {
            Some((kind, n)) => {
                let n = n
                    .parse::<usize>()
                    .map_err(|_| bad(format!("'{n}' is not a device number")))?;
                (kind, Some(n))
            }
            None => (spec, None),
        };
        match (kind.to_ascii_lowercase().as_str(), ordinal) {
            ("cpu", None) => Ok(DeviceSpec::Cpu),
            ("auto", None) => Ok(DeviceSpec::Auto),
            ("cuda", n) => Ok(DeviceSpec::Cuda(n.unwrap_or(0))),
            ("hip", n) => Ok(DeviceSpec::Hip(n.unwrap_or(0))),
            ("cpu" | "auto", Some(_)) => Err(bad(format!("'{kind}' takes no device number"))),
            _ => Err(bad("expected cpu, cuda[:N], hip[:N] or auto".to_string())),
        }
    }
}

/// Where a model will run.
pub enum SelectedDevice {
    Cpu,
    Gpu(Arc<dyn GpuRuntime>),
}

impl SelectedDevice {
    pub fn describe(&self) -> String {
        match self {
            SelectedDevice::Cpu => "cpu".to_string(),
            SelectedDevice::Gpu(rt) => rt.info().to_string(),
        }
    }
}

fn open_cuda(ordinal: usize) -> Result<Arc<dyn GpuRuntime>, RuntimeError> {
    Ok(Arc::new(CudaRuntime::new(ordinal)?))
}

fn open_hip(ordinal: usize) -> Result<Arc<dyn GpuRuntime>, RuntimeError> {
    Ok(Arc::new(HipRuntime::new(ordinal)?))
}

/// Open the device `spec` names. An explicitly named device that is absent is an error; `auto`
/// falls through HIP, CUDA and the CPU and says on stderr what it chose and why.
pub fn select_device(spec: &str) -> Result<SelectedDevice, GpuError> {
    let named = |e: RuntimeError| GpuError::Device {
        spec: spec.to_string(),
        what: e.to_string(),
    };
    match DeviceSpec::parse(spec)? {
        DeviceSpec::Cpu => Ok(SelectedDevice::Cpu),
        DeviceSpec::Cuda(n) => open_cuda(n).map(SelectedDevice::Gpu).map_err(named),
        DeviceSpec::Hip(n) => open_hip(n).map(SelectedDevice::Gpu).map_err(named),
        DeviceSpec::Auto => {
            let mut passed = Vec::new();
            for (name, open) in [("hip", open_hip as fn(usize) -> _), ("cuda", open_cuda)] {
                match open(0) {
                    Ok(rt) => {
                        let chosen = SelectedDevice::Gpu(rt);
                        eprintln!(
                            "device auto: using {}{}",
                            chosen.describe(),
                            skipped(&passed)
                        );
                        return Ok(chosen);
                    }
                    Err(e) => passed.push(format!("{name}: {e}")),
                }
            }
            eprintln!("device auto: using cpu{}", skipped(&passed));
            Ok(SelectedDevice::Cpu)
        }
    }
}

/// A backend for `--device`: the CPU engine, or the GPU executor (kernels compiled for the
/// device, weights uploaded) on the device `spec` selects, with default kernel knobs.
pub fn open_backend(
    spec: &str,
    model: Arc<Model>,
    n_ctx: usize,
) -> Result<Box<dyn Backend>, BackendError> {
    open_backend_tuned(spec, model, n_ctx, Tuning::Off)
}

/// Whether a GPU backend applies the device's tuning database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// Default knobs, nothing said.
    Off,
    /// Default knobs; one stderr line says tuning was turned off.
    Disabled,
    /// The database of the opened device (see `tune::apply`); one stderr line says what was
    /// applied, or warns why the database was ignored.
    Database,
}

/// As [`open_backend`], applying tuning on a GPU as `tuning` says.
pub fn open_backend_tuned(
    spec: &str,
    model: Arc<Model>,
    n_ctx: usize,
    tuning: Tuning,
) -> Result<Box<dyn Backend>, BackendError> {
    match select_device(spec)? {
        SelectedDevice::Cpu => Ok(Box::new(CpuBackend::new(model, n_ctx))),
        SelectedDevice::Gpu(runtime) => {
            let choice = match tuning {
                Tuning::Off => TuningChoice::defaults(),
                Tuning::Disabled => {
                    eprintln!("tuning: off (--no-tune)");
                    TuningChoice::defaults()
                }
                Tuning::Database => {
                    let (choice, line) = tuning_for_device(&runtime, &model, n_ctx)
                        .map_err(|e| BackendError::Device(e.to_string()))?;
                    eprintln!("{line}");
                    choice
                }
            };
            let vendor_gemm = prefill_on_vendor_gemm(runtime.as_ref())?;
            let config = ExecutorConfig {
                dependent_decode: launch_mode::dependent_decode(&choice),
                vendor_gemm,
                ..ExecutorConfig::new(n_ctx)
            };
            Ok(Box::new(GpuBackend::load_tuned(
                runtime, model, config, &choice,
            )?))
        }
    }
}

/// Whether prefill matmuls run on the runtime's vendor f16 GEMM: ROCMFORGE_PREFILL_GEMM=vendor
/// asks for it (an error where there is none), =tiles for our tile kernels; unset (or auto),
/// the vendor GEMM where the runtime found one. One stderr line says which.
pub fn prefill_on_vendor_gemm(runtime: &dyn GpuRuntime) -> Result<bool, BackendError> {
    let setting = std::env::var("ROCMFORGE_PREFILL_GEMM").unwrap_or_default();
    let library = runtime.gemm_f16_library();
    let vendor = match (setting.trim(), library) {
        ("" | "auto", found) => found.is_some(),
        ("tiles", _) => false,
        ("vendor", Some(_)) => true,
        ("vendor", None) => {
            return Err(BackendError::Device(format!(
                "ROCMFORGE_PREFILL_GEMM=vendor, but {} has no vendor GEMM library (cuBLASLt \
                 on NVIDIA, hipBLASLt on AMD)",
                runtime.info()
            )))
        }
        (other, _) => {
            return Err(BackendError::Device(format!(
                "ROCMFORGE_PREFILL_GEMM='{other}' is not one of auto, vendor, tiles"
            )))
        }
    };
    match library.filter(|_| vendor) {
        Some(name) => eprintln!("prefill GEMM: {name} on f16-staged weights"),
        None => eprintln!("prefill GEMM: rocmforge tile kernels"),
    }
    Ok(vendor)
}

fn skipped(reasons: &[String]) -> String {
    if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
        assert_eq!(DeviceSpec::parse("auto").unwrap(), DeviceSpec::Auto);
        assert_eq!(DeviceSpec::parse("cuda").unwrap(), DeviceSpec::Cuda(0));
        assert_eq!(DeviceSpec::parse("CUDA:3").unwrap(), DeviceSpec::Cuda(3));
        assert_eq!(DeviceSpec::parse("hip:1").unwrap(), DeviceSpec::Hip(1));
    }

    #[test]
    fn rejects_unknown_devices_with_the_spec_named() {
        for bad in ["gpu", "cuda:x", "cpu:0", "hip:-1", ""] {
            let err = DeviceSpec::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("device '{bad}'")), "{err}");
        }
    }
}
