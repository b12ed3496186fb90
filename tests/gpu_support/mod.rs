//! Helpers shared by the GPU tests: synthetic models at real shapes, the CUDA runtime or a
//! printed reason to skip, and a host-memory fake runtime for executor logic without a GPU.
#![allow(dead_code)]

pub mod fake;

use std::path::PathBuf;
use std::sync::Arc;

use rocmforge::backend::cuda::CudaRuntime;
use rocmforge::backend::gpu::{GpuRuntime, RuntimeError};
use rocmforge::backend::hip::HipRuntime;
use rocmforge::gguf::GgufFile;
use rocmforge::plan::{bind, Model, Plan};
use rocmforge::synth::{preset, synthesize, SynthSpec, WeightMix};

/// Runs `check` (which returns its failures) on every model on the first GPU, then fails with
/// all failures listed; skips with a printed reason without a GPU.
pub fn check_models(
    specs: Vec<SynthModel>,
    check: impl Fn(&Arc<dyn GpuRuntime>, SynthModel) -> Vec<String>,
) {
    let Some(runtime) = gpu_or_skip() else { return };
    let failures: Vec<String> = specs
        .into_iter()
        .flat_map(|spec| check(&runtime, spec))
        .collect();
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The first GPU (AMD first, then NVIDIA, as `--device auto`), or None after printing why the
/// test is skipped.
pub fn gpu_or_skip() -> Option<Arc<dyn GpuRuntime>> {
    let mut reasons = Vec::new();
    type Open = fn() -> Result<Arc<dyn GpuRuntime>, RuntimeError>;
    let opened: [(&str, Open); 2] = [
        ("hip", || Ok(Arc::new(HipRuntime::new(0)?))),
        ("cuda", || Ok(Arc::new(CudaRuntime::new(0)?))),
    ];
    for (name, open) in opened {
        match open() {
            Ok(rt) => {
                eprintln!("device: {}", rt.info());
                return Some(rt);
            }
            Err(e @ (RuntimeError::LibraryMissing(_) | RuntimeError::NoDevice(_))) => {
                reasons.push(format!("{name}: {e}"))
            }
            Err(e) => panic!("{name} present but failed to open: {e}"),
        }
    }
    eprintln!("skipped: no GPU ({})", reasons.join("; "));
    None
}

/// What synthetic model to make: a preset shape with fewer layers (and optionally a smaller
/// vocabulary) in one weight format.
#[derive(Clone, Debug)]
pub struct SynthModel {
    pub preset: &'static str,
    pub layers: usize,
    pub n_vocab: Option<usize>,
    pub weights: &'static str,
    pub fused_qkv: bool,
    pub seed: u64,
}

impl SynthModel {
    pub fn new(preset: &'static str, layers: usize, weights: &'static str) -> Self {
        Self {
            preset,
            layers,
            n_vocab: None,
            weights,
            fused_qkv: false,
            seed: 7,
        }
    }

    pub fn label(&self) -> String {
        format!(
            "{} x{} {}{}",
            self.preset,
            self.layers,
            self.weights,
            if self.fused_qkv { " fused-qkv" } else { "" }
        )
    }

    /// Write the file (once per process and spec) and bind it.
    pub fn build(&self) -> Arc<Model> {
        let mut shape = preset(self.preset).expect("known preset");
        shape.n_layer = self.layers;
        if let Some(v) = self.n_vocab {
            shape.n_vocab = v;
        }
        let plan = Plan::from_arg(shape.plan).expect("embedded plan");
        let spec = SynthSpec {
            name: self.label(),
            plan: plan.clone(),
            shape,
            weights: WeightMix::parse(self.weights).expect("weight format"),
            fused_qkv: self.fused_qkv,
            seed: self.seed,
        };
        let dir = std::env::temp_dir().join(format!("rocmforge-gpu-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path: PathBuf = dir.join(format!("{}.gguf", self.label().replace([' ', '.'], "_")));
        {
            // Tests run in parallel threads and may ask for the same file: write it once.
            static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _guard = WRITING.lock().unwrap_or_else(|e| e.into_inner());
            if !path.exists() {
                synthesize(&spec, None, &path).expect("synthesize");
            }
        }
        let file = Arc::new(GgufFile::open(&path).expect("open synthetic model"));
        Arc::new(bind(&plan, file).expect("bind synthetic model"))
    }
}

/// Normalized mean squared error of `got` against `want` (llama.cpp's test-backend-ops metric).
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let (mut err, mut norm) = (0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        err += (g as f64 - w as f64).powi(2);
        norm += (w as f64).powi(2);
    }
    if norm == 0.0 {
        err
    } else {
        err / norm
    }
}

/// Deterministic values in [-scale, scale].
pub fn random_rows(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = rocmforge::util::rng::Rng::new(seed);
    (0..n).map(|_| rng.uniform(-scale, scale)).collect()
}
