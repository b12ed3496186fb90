//! The tuning loop on a fake device (kernels compiled for real by NVRTC, launches recorded
//! instead of run): every candidate's own kernel is what gets timed, over the layers of a pass,
//! with the launches it brings (a decode attention after rope_store), and the results become
//! database entries. Skips when NVRTC is absent. The fake's events all
//! read 0 ms, so every candidate ties and the default must stay chosen.

mod gpu_support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gpu_support::fake::{FakeRuntime, Recorded};
use gpu_support::SynthModel;
use rocmforge::backend::gpu::{ExecutorConfig, GpuBackend, GpuRuntime};
use rocmforge::codegen::compiler::{compiler_for, Target};
use rocmforge::codegen::{kernels_for_model, KernelKind, Renderer, TuningChoice};
use rocmforge::plan::Model;
use rocmforge::tune::results::Outcome;
use rocmforge::tune::tuner::{TuneOptions, Tuner};

const N_CTX: usize = 256;

/// A 2-layer qwen2.5-0.5b-shaped Q4_0 model loaded on a fake sm_90 runtime whose kernels are
/// compiled for real (None, with the reason printed, where NVRTC is missing).
fn qwen_on_a_fake_h200() -> Option<(Target, Arc<Model>, Arc<FakeRuntime>, GpuBackend)> {
    let target = Target::parse("sm_90").unwrap();
    if let Err(e) = compiler_for(&target) {
        eprintln!("skipped: no compiler for {}: {e}", target.full);
        return None;
    }
    let mut spec = SynthModel::new("qwen2.5-0.5b", 2, "Q4_0");
    spec.n_vocab = Some(512);
    let model = spec.build();
    let fake = Arc::new(FakeRuntime::with_arch(1 << 34, "sm_90", 32));
    let runtime: Arc<dyn GpuRuntime> = fake.clone();
    let backend =
        GpuBackend::load(runtime, model.clone(), ExecutorConfig::new(N_CTX)).expect("backend");
    Some((target, model, fake, backend))
}

#[test]
fn every_candidate_is_checked_and_timed_with_its_own_kernel() {
    let Some((target, model, fake, mut backend)) = qwen_on_a_fake_h200() else {
        return;
    };
    // A prefill-only kernel and a fused decode GEMV (norm, gate and up, silu_mul).
    let only = vec!["rmsnorm".to_string(), "norm silu_mul".to_string()];
    let options = TuneOptions {
        deadline: Instant::now() + Duration::from_secs(3600),
        only: only.clone(),
        max_repeats: 5,
    };
    let captures_before = fake.captures();
    let report = Tuner::new(&mut backend, model.clone(), N_CTX)
        .unwrap()
        .run(&options, &mut |line| eprintln!("{line}"))
        .unwrap();
    assert!(
        report.not_reached.is_empty() && report.skipped.is_empty(),
        "{report:?}"
    );
    assert!(report.results.len() >= 2, "{report:?}");

    // Every kernel launched inside the timing graphs.
    let mut timed = HashSet::new();
    let mut most_calls_per_graph = 0;
    for g in captures_before..fake.captures() {
        let graph = fake.graph(g as u64);
        most_calls_per_graph = most_calls_per_graph.max(graph.len());
        for r in graph {
            if let Recorded::Launch { function, .. } = r {
                timed.insert(fake.function_name(function));
            }
        }
    }
    // Two layers of the same weight shape: a pass covers both.
    assert!(most_calls_per_graph >= 2);

    let renderer = Renderer::from_env().unwrap();
    for r in &report.results {
        let p = &r.problem;
        assert!(only.iter().any(|o| p.problem.contains(o)), "{}", p.problem);
        assert_eq!(r.outcomes.len(), p.candidates);
        assert!(
            r.outcomes.iter().all(|o| matches!(o, Outcome::Timed(_))),
            "{r:?}"
        );
        assert_eq!(r.chosen, 0, "ties keep the default");
        // The --candidates table: a header, a separator and one row per candidate in order,
        // the chosen default marked, each with as many cells as the header.
        let table = r.candidate_table();
        let rows: Vec<&str> = table.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(rows.len(), p.candidates + 2, "{table}");
        let cells = |row: &str| row.matches('|').count();
        assert!(
            rows.iter().all(|row| cells(row) == cells(rows[0])),
            "{table}"
        );
        assert!(rows[2].starts_with("| 0 (chosen) |"), "{table}");
        assert!(
            rows[2].contains(&p.knobs(0)) && rows[2].contains("1.00x"),
            "{table}"
        );
        let last = p.candidates - 1;
        assert!(
            rows.last().unwrap().starts_with(&format!("| {last} |")),
            "{table}"
        );
        let entry = r.entry().expect("an entry");
        assert_eq!((entry.candidate, entry.candidates), (0, p.candidates));
        assert_eq!(entry.bucket, p.bucket());
        for i in 0..p.candidates {
            let mut choice = TuningChoice::defaults();
            choice.pick(p.problem.clone(), i);
            let set = kernels_for_model(&model, &target, &choice, N_CTX, &renderer).unwrap();
            let name = &set
                .kernels
                .iter()
                .find(|k| k.problem == p.problem)
                .unwrap()
                .name;
            assert!(
                timed.contains(name),
                "candidate {i} of {} never timed",
                p.problem
            );
        }
    }
    // Only the named problems' kernels were timed.
    let problems: HashSet<&str> = report
        .results
        .iter()
        .map(|r| r.problem.problem.as_str())
        .collect();
    let all =
        kernels_for_model(&model, &target, &TuningChoice::defaults(), N_CTX, &renderer).unwrap();
    for k in &all.kernels {
        if timed.contains(&k.name) {
            assert!(problems.contains(k.problem.as_str()), "{} timed", k.problem);
        }
    }
}

/// The decode attention after a rope: each candidate that rotates q and k itself is timed
/// alone, each that does not with the rope_store launch it needs before it, over every layer,
/// so that the tuner compares one launch with the two it replaces.
#[test]
fn decode_attention_candidates_are_timed_with_the_launches_they_bring() {
    let Some((target, model, fake, mut backend)) = qwen_on_a_fake_h200() else {
        return;
    };
    let options = TuneOptions {
        deadline: Instant::now() + Duration::from_secs(3600),
        only: vec!["attention decode+rope".to_string()],
        max_repeats: 5,
    };
    let captures_before = fake.captures();
    let report = Tuner::new(&mut backend, model.clone(), N_CTX)
        .unwrap()
        .run(&options, &mut |line| eprintln!("{line}"))
        .unwrap();
    assert_eq!(report.results.len(), 1, "{report:?}");
    let result = &report.results[0];
    let p = &result.problem;
    assert!(
        result
            .outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Timed(_))),
        "{result:?}"
    );
    let graphs: Vec<Vec<String>> = (captures_before..fake.captures())
        .map(|g| {
            fake.graph(g as u64)
                .iter()
                .filter_map(|r| match r {
                    Recorded::Launch { function, .. } => Some(fake.function_name(*function)),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let renderer = Renderer::from_env().unwrap();
    let (mut fused, mut unfused) = (0, 0);
    for i in 0..p.candidates {
        let mut choice = TuningChoice::defaults();
        choice.pick(p.problem.clone(), i);
        let set = kernels_for_model(&model, &target, &choice, N_CTX, &renderer).unwrap();
        let attention = set.kernels.iter().find(|k| k.problem == p.problem).unwrap();
        let store = set
            .kernels
            .iter()
            .find(|k| k.kind == KernelKind::RopeStore)
            .unwrap();
        let one_layer = match attention.kind {
            KernelKind::RopeAttention => {
                fused += 1;
                vec![attention.name.clone()]
            }
            _ => {
                unfused += 1;
                vec![store.name.clone(), attention.name.clone()]
            }
        };
        let pass: Vec<String> = (0..model.hparams.n_layer)
            .flat_map(|_| one_layer.clone())
            .collect();
        assert!(
            graphs.contains(&pass),
            "candidate {i} ({}) was not timed as {pass:?}",
            p.knobs(i)
        );
    }
    assert!(fused > 0 && unfused > 0, "{fused} fused, {unfused} not");
}
