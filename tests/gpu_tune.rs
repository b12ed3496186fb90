//! `rocmforge tune` end to end on a GPU with a small synthetic model: the database is written,
//! `bench` applies it (and says so), `--no-tune` and a corrupt file run untuned with one line,
//! and a database forcing a non-default candidate on every kernel still passes `verify`
//! against the CPU reference. Skips with a printed reason without a GPU.

mod gpu_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gpu_support::{gpu_or_skip, SynthModel};
use rocmforge::tune::{launch_mode, DbRead, TuningDb};

/// The binary under test: `ROCMFORGE_BIN` where the test runs away from its build tree (the GPU
/// machine gets prebuilt binaries), else the one cargo built beside this test.
fn binary() -> PathBuf {
    std::env::var_os("ROCMFORGE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rocmforge")))
}

fn rocmforge(cache: &Path, args: &[&str]) -> Output {
    let out = Command::new(binary())
        .args(args)
        .env("ROCMFORGE_CACHE_DIR", cache)
        .output()
        .expect("run rocmforge");
    eprintln!(
        "$ rocmforge {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The tuning lines of a run's stderr.
fn tuning_lines(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.contains("tuning"))
        .map(str::to_string)
        .collect()
}

fn database_file(cache: &Path) -> PathBuf {
    let dir = cache.join("tuning");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

#[test]
fn tune_writes_a_database_that_run_bench_and_verify_apply() {
    if gpu_or_skip().is_none() {
        return;
    }
    let mut spec = SynthModel::new("qwen2.5-0.5b", 2, "Q4_0");
    spec.n_vocab = Some(2048);
    let model = spec.build();
    let gguf = model.file.path().display().to_string();
    let cache = std::env::temp_dir().join(format!("rocmforge-gpu-tune-{}", std::process::id()));
    let common = ["--gguf", gguf.as_str(), "--ctx-size", "256"];

    let mut args = common.to_vec();
    args.extend(["--only", "matmul_gemv", "--only", "rmsnorm"]);
    args.extend(["--budget-seconds", "90", "--bench-repeats", "1"]);
    let tuned = rocmforge(&cache, &[&["tune"], args.as_slice()].concat());
    assert!(tuned.status.success());
    let table = String::from_utf8_lossy(&tuned.stdout);
    assert!(table.contains("| kernel | shape |"), "{table}");
    assert!(
        table.contains("| pp256 |") && table.contains("| tg128 |"),
        "{table}"
    );

    let path = database_file(&cache);
    let text = std::fs::read_to_string(&path).unwrap();
    let db: TuningDb = serde_json::from_str(&text).unwrap();
    let fingerprint = db.fingerprint.clone();
    assert!(matches!(
        TuningDb::read(&path, &fingerprint),
        DbRead::Ready(_)
    ));
    assert!(
        db.entries.keys().any(|k| k.starts_with("matmul_gemv")),
        "{text}"
    );
    assert!(
        db.entries.keys().any(|k| k.starts_with("rmsnorm")),
        "{text}"
    );
    for e in db.entries.values() {
        assert!(
            e.candidate < e.candidates && e.best_us <= e.default_us * 1.01,
            "{e:?}"
        );
    }

    let bench = ["bench", "-p", "32", "-n", "8", "-r", "1"];
    let applied = rocmforge(&cache, &[&bench[..], &common[..]].concat());
    assert!(applied.status.success());
    let lines = tuning_lines(&applied);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("tuning: ") && lines[0].contains("tunable kernels tuned"),
        "{lines:?}"
    );

    let untuned = rocmforge(&cache, &[&bench[..], &common[..], &["--no-tune"]].concat());
    assert!(untuned.status.success());
    assert_eq!(
        tuning_lines(&untuned),
        vec!["tuning: off (--no-tune)".to_string()]
    );

    // Every tuned problem forced to its last candidate: applied, and still the CPU's results.
    let mut forced = db.clone();
    for e in forced.entries.values_mut() {
        e.candidate = e.candidates - 1;
    }
    forced.save(&path).unwrap();
    let verify = ["verify", "--prompt-tokens", "16", "--gen-tokens", "8"];
    let verified = rocmforge(&cache, &[&verify[..], &common[..]].concat());
    assert!(verified.status.success(), "forced candidates fail verify");
    let lines = tuning_lines(&verified);
    // The line counts tuned kernels; the launch-mode entry (if tune chose one) is not a kernel.
    let kernels = forced
        .entries
        .keys()
        .filter(|k| !k.starts_with(launch_mode::PICK))
        .count();
    assert!(
        lines.len() == 1 && lines[0].contains(&format!("{kernels} of")),
        "{lines:?}"
    );

    std::fs::write(&path, &text.as_bytes()[..text.len() / 2]).unwrap();
    let corrupt = rocmforge(&cache, &[&bench[..], &common[..]].concat());
    assert!(
        corrupt.status.success(),
        "a corrupt database must not stop a run"
    );
    let lines = tuning_lines(&corrupt);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("warning: tuning database"),
        "{lines:?}"
    );
}
