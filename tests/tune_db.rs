//! The tuning database without a GPU: keys, round trips, and that a foreign, corrupt or stale
//! database (or entry) is never applied, while a matching one changes the generated kernels.

mod gpu_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gpu_support::SynthModel;
use rocmforge::backend::gpu::{DeviceInfo, GpuPlatform};
use rocmforge::codegen::compiler::Target;
use rocmforge::codegen::{kernels_for_model, KernelSet, Renderer, TuningChoice};
use rocmforge::plan::Model;
use rocmforge::tune::apply::{apply, choose};
use rocmforge::tune::db::{candidate_set_checksum, db_path, entry_key};
use rocmforge::tune::problems::{problem_uses, ProblemUse};
use rocmforge::tune::{launch_mode, DbRead, Entry, Fingerprint, TuningDb};

const N_CTX: usize = 256;

fn device() -> DeviceInfo {
    DeviceInfo {
        platform: GpuPlatform::Cuda,
        ordinal: 0,
        name: "NVIDIA H200".to_string(),
        arch: "sm_90".to_string(),
        total_memory: 140 << 30,
        multiprocessor_count: 132,
        l2_cache_bytes: 50 << 20,
        warp_size: 32,
        max_shared_per_block: 48 << 10,
        driver_version: "13000".to_string(),
    }
}

fn fingerprint() -> Fingerprint {
    Fingerprint::new(&device(), "13.0 (libnvrtc.so.13)")
}

fn model() -> Arc<Model> {
    let mut spec = SynthModel::new("qwen2.5-0.5b", 2, "Q4_0");
    spec.n_vocab = Some(512);
    spec.build()
}

fn kernel_set(model: &Model, choice: &TuningChoice) -> KernelSet {
    let target = Target::parse("sm_90").unwrap();
    kernels_for_model(
        model,
        &target,
        choice,
        N_CTX,
        &Renderer::from_env().unwrap(),
    )
    .unwrap()
}

fn problems(model: &Model) -> Vec<ProblemUse> {
    problem_uses(model, &kernel_set(model, &TuningChoice::defaults()), 512)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rocmforge-tune-db-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An entry choosing `candidate` for `p`, under `p`'s current candidate set.
fn entry_for(p: &ProblemUse, candidate: usize) -> Entry {
    Entry {
        problem: p.problem.clone(),
        bucket: p.bucket(),
        candidate_set: p.candidate_set.clone(),
        candidate,
        candidates: p.candidates,
        knobs: p.knobs(candidate),
        default_us: 10.0,
        best_us: 8.0,
    }
}

/// A database choosing candidate 1 of every problem.
fn db_choosing_1(problems: &[ProblemUse]) -> TuningDb {
    let mut db = TuningDb::new(fingerprint());
    for p in problems {
        db.insert(entry_for(p, 1));
    }
    db
}

fn read(path: &Path) -> DbRead {
    TuningDb::read(path, &fingerprint())
}

#[test]
fn the_model_has_tunable_problems_in_both_phases() {
    let ps = problems(&model());
    assert!(ps
        .iter()
        .any(|p| p.problem.starts_with("matmul_gemv") && p.bucket() == "decode"));
    assert!(ps
        .iter()
        .any(|p| p.problem.starts_with("matmul_gemm") && p.bucket() == "prefill"));
    assert!(
        ps.iter().any(|p| p.bucket() == "decode+prefill"),
        "shared kernels (norms, adds)"
    );
    for p in &ps {
        assert!(p.candidates > 1, "{}", p.problem);
        // A block step of a 2-layer model is launched once per layer.
        assert!(
            p.decode_sites.len() + p.prefill_sites.len() >= 1,
            "{}",
            p.problem
        );
    }
    let gemv = ps
        .iter()
        .find(|p| p.problem.starts_with("matmul_gemv"))
        .unwrap();
    let layers: Vec<_> = gemv.decode_sites.iter().filter_map(|s| s.layer).collect();
    assert!(
        layers.contains(&0) && layers.contains(&1),
        "{:?}",
        gemv.decode_sites
    );
}

#[test]
fn keys_name_problem_and_bucket_and_files_name_the_device() {
    let fp = fingerprint();
    assert_eq!(fp.file_name(), "cuda-NVIDIA_H200-sm_90.json");
    let amd = Fingerprint::new(
        &DeviceInfo {
            platform: GpuPlatform::Hip,
            arch: "gfx90a:sramecc+:xnack-".to_string(),
            name: "AMD Instinct MI210".to_string(),
            ..device()
        },
        "6.2",
    );
    assert_eq!(
        amd.file_name(),
        "hip-AMD_Instinct_MI210-gfx90a_sramecc__xnack-.json"
    );
    assert_ne!(entry_key("p", "decode"), entry_key("p", "prefill"));
    let p = &problems(&model())[0];
    let mut db = TuningDb::new(fp);
    db.insert(entry_for(p, 1));
    assert!(db.get(&p.problem, &p.bucket()).is_some());
    assert!(db.get(&p.problem, "another bucket").is_none());
}

#[test]
fn a_saved_database_reads_back_and_changes_the_kernels() {
    let model = model();
    let ps = problems(&model);
    let path = temp_dir("roundtrip").join(fingerprint().file_name());
    let db = db_choosing_1(&ps);
    db.save(&path).unwrap();
    let DbRead::Ready(back) = read(&path) else {
        panic!("not ready: {:?}", read(&path));
    };
    assert_eq!(back, db);

    let (choice, line) = choose(read(&path), &path, &fingerprint(), &ps);
    assert!(line.starts_with("tuning: "), "{line}");
    assert!(
        line.contains(&format!("{} of {}", ps.len(), ps.len())),
        "{line}"
    );
    let tuned = kernel_set(&model, &choice);
    for p in &ps {
        assert_eq!(choice.candidate_for(&p.problem), 1);
        let spec = tuned
            .kernels
            .iter()
            .find(|k| k.problem == p.problem)
            .unwrap();
        assert_eq!(spec.knobs_json, p.knobs(1), "{}", p.problem);
        assert_ne!(p.knobs(1), p.knobs(0), "{}", p.problem);
    }
}

#[test]
fn a_missing_database_leaves_the_defaults() {
    let path = temp_dir("missing").join("none.json");
    assert_eq!(read(&path), DbRead::Missing);
    let (choice, line) = choose(read(&path), &path, &fingerprint(), &problems(&model()));
    assert_eq!(choice, TuningChoice::defaults());
    assert!(line.starts_with("tuning: none"), "{line}");
}

#[test]
fn another_device_driver_compiler_or_version_is_foreign() {
    let ps = problems(&model());
    let path = temp_dir("foreign").join(fingerprint().file_name());
    db_choosing_1(&ps).save(&path).unwrap();
    let mut others = Vec::new();
    for change in 0..4 {
        let mut fp = fingerprint();
        match change {
            0 => fp.device = "NVIDIA H100 80GB HBM3".to_string(),
            1 => fp.driver = "12040".to_string(),
            2 => fp.compiler = "12.4".to_string(),
            _ => fp.rocmforge = "0.0.1".to_string(),
        }
        others.push(fp);
    }
    for current in others {
        let got = TuningDb::read(&path, &current);
        assert!(
            matches!(&got, DbRead::Foreign(found) if **found == fingerprint()),
            "{got:?}"
        );
        let (choice, line) = choose(got, &path, &current, &ps);
        assert_eq!(choice, TuningChoice::defaults());
        assert!(
            line.starts_with("warning: ") && line.contains("made for"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1);
    }
}

#[test]
fn a_corrupt_database_is_ignored_with_one_warning() {
    let ps = problems(&model());
    let dir = temp_dir("corrupt");
    let good = serde_json::to_string(&db_choosing_1(&ps)).unwrap();
    let mut bad_index = db_choosing_1(&ps);
    bad_index.entries.values_mut().next().unwrap().candidate = 999;
    let mut bad_key = db_choosing_1(&ps);
    let first = bad_key.entries.keys().next().unwrap().clone();
    let moved = bad_key.entries.remove(&first).unwrap();
    bad_key.entries.insert("somewhere else".to_string(), moved);
    let mut bad_format = db_choosing_1(&ps);
    bad_format.format = 99;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x01 not json".to_vec()),
        ("truncated", good.as_bytes()[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("index", serde_json::to_vec(&bad_index).unwrap()),
        ("key", serde_json::to_vec(&bad_key).unwrap()),
        ("format", serde_json::to_vec(&bad_format).unwrap()),
    ];
    for (name, bytes) in cases {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, bytes).unwrap();
        let got = read(&path);
        assert!(matches!(got, DbRead::Corrupt(_)), "{name}: {got:?}");
        let (choice, line) = choose(got, &path, &fingerprint(), &ps);
        assert_eq!(choice, TuningChoice::defaults(), "{name}");
        assert!(
            line.starts_with("warning: ") && !line.contains('\n'),
            "{name}: {line}"
        );
    }
}

#[test]
fn a_changed_candidate_set_makes_entries_stale() {
    let ps = problems(&model());
    let db = db_choosing_1(&ps);
    // The same problems after a template or candidate-list edit: other checksums.
    let mut changed = ps.clone();
    let edited = &mut changed[0];
    edited.candidate_knobs.pop();
    edited.candidates -= 1;
    edited.candidate_set =
        candidate_set_checksum(&edited.problem, &edited.candidate_knobs, "default source");

    let applied = apply(&db, &changed);
    assert_eq!(applied.stale, 1);
    assert_eq!(applied.applied, ps.len() - 1);
    assert_eq!(
        applied.choice.candidate_for(&changed[0].problem),
        0,
        "stale entry applied"
    );
    assert_eq!(applied.choice.candidate_for(&changed[1].problem), 1);
    let path = temp_dir("stale").join("db.json");
    db.save(&path).unwrap();
    let (_, line) = choose(read(&path), &path, &fingerprint(), &changed);
    assert!(
        line.starts_with("warning: ") && line.contains("1 entries"),
        "{line}"
    );
}

#[test]
fn the_checksum_covers_problem_candidates_and_default_source() {
    let list = |l: &[&str]| -> Vec<String> { l.iter().map(|s| s.to_string()).collect() };
    let base = candidate_set_checksum("p", &list(&["1", "2"]), "src");
    assert_eq!(base.len(), 64);
    assert_eq!(base, candidate_set_checksum("p", &list(&["1", "2"]), "src"));
    for other in [
        candidate_set_checksum("q", &list(&["1", "2"]), "src"),
        candidate_set_checksum("p", &list(&["2", "1"]), "src"),
        candidate_set_checksum("p", &list(&["1"]), "src"),
        candidate_set_checksum("p", &list(&["12"]), "src"),
        candidate_set_checksum("p", &list(&["1", "2"]), "src2"),
        candidate_set_checksum("p1", &list(&["2"]), "src"),
    ] {
        assert_ne!(base, other);
    }
}

#[test]
fn an_index_outside_the_candidate_set_is_not_applied() {
    let ps = problems(&model());
    let mut db = TuningDb::new(fingerprint());
    let p = &ps[0];
    db.insert(entry_for(p, p.candidates));
    let applied = apply(&db, &ps);
    assert_eq!((applied.applied, applied.stale), (0, 1));
    assert_eq!(applied.choice, TuningChoice::defaults());
}

#[test]
fn the_database_lives_under_the_cache_dir() {
    // The only test of this binary that reads the environment.
    let dir = temp_dir("cache-env");
    std::env::set_var("ROCMFORGE_CACHE_DIR", &dir);
    let path = db_path(&fingerprint()).unwrap();
    assert_eq!(path, dir.join("tuning").join("cuda-NVIDIA_H200-sm_90.json"));
}

#[test]
fn the_launch_mode_entry_is_per_model_and_applied_when_current() {
    let ps = problems(&model());
    let problem = launch_mode::problem(&ps);
    // Another model (fewer kernel problems here) names another entry.
    assert_ne!(problem, launch_mode::problem(&ps[1..]));
    let faster = launch_mode::entry(problem.clone(), 1100.0, 1000.0);
    assert_eq!(faster.candidate, 1, "10% faster plain launches are chosen");
    let within_noise = launch_mode::entry(problem.clone(), 1010.0, 1000.0);
    assert_eq!(
        within_noise.candidate, 0,
        "1% is below the 2% bar: dependent launches stay"
    );
    assert!(launch_mode::dependent_decode(&TuningChoice::defaults()));

    let path = temp_dir("launch-mode").join(fingerprint().file_name());
    let mut db = db_choosing_1(&ps);
    db.insert(faster);
    db.save(&path).unwrap();
    let (choice, line) = choose(read(&path), &path, &fingerprint(), &ps);
    assert!(!launch_mode::dependent_decode(&choice), "{line}");
    assert!(line.contains("plainly"), "{line}");
    assert_eq!(
        choice.candidate_for(&ps[0].problem),
        1,
        "kernel picks still apply"
    );

    // The same choice recorded for another launch-mode list is stale, not applied.
    let mut stale = launch_mode::entry(problem, 1100.0, 1000.0);
    stale.candidate_set = candidate_set_checksum("decode launches", &["a".to_string()], "");
    db.insert(stale);
    let applied = apply(&db, &ps);
    assert!(launch_mode::dependent_decode(&applied.choice));
    assert_eq!(applied.stale, 1);
}
