//! How a model's decode steps launch their kernels: plainly, one after another, or as dependents
//! that start under their predecessor's tail (CUDA programmatic dependent launch). Dependent is
//! the default: the kernels load what does not depend on their predecessor (weights, the
//! position, earlier cache rows) before waiting for it, and on an H200 (session 7) dependent
//! launches beat plain on every model tuned (SmolLM2 1.29x, qwen2.5-0.5b 1.09-1.11x, llama3-8b
//! Q4_0 1.08x, Q4_K_M 1.05x) and with the default kernels on llama3-8b Q4_0 (517.7 against 500.3
//! tok/s). With the default kernels of that call they lost on qwen2.5-0.5b (1600.5 against
//! 1741.9) until its down projection took the tuner's geometry by default (two warps per row).
//! The tuner measures both per model after choosing the kernels and stores plain where it wins
//! by 2%, as one database entry, which `run`, `bench` and `verify` apply with the kernels'.
//! Runtimes without dependent launches launch plainly whatever the choice.

use super::db::{candidate_set_checksum, Entry, TuningDb};
use super::problems::ProblemUse;
use crate::codegen::TuningChoice;

/// The pick a `TuningChoice` carries for the launch mode: 0 dependent (the default), 1 plain.
pub const PICK: &str = "decode launches";
/// What the line about the applied database says when it makes decode launches plain (the
/// default, dependent, goes without saying).
pub const NOTE: &str = "; decode kernels launch plainly (the tuner's choice for this model)";
/// The bucket of the launch-mode entry.
pub const BUCKET: &str = "decode";
const CANDIDATES: [&str; 2] = ["dependent", "plain"];
/// Plain launches must be at least this much faster to be chosen (as for kernels).
const MIN_GAIN: f64 = 1.02;

/// The database problem of the model whose kernel problems are `problems` (they name its shapes
/// and formats, so their checksum names the model as far as launching goes).
pub fn problem(problems: &[ProblemUse]) -> String {
    let names: Vec<String> = problems.iter().map(|p| p.problem.clone()).collect();
    let digest = candidate_set_checksum(PICK, &names, "");
    format!("{PICK} of model {}", &digest[..16])
}

/// The checksum of the two launch modes.
pub fn candidate_set() -> String {
    let names: Vec<String> = CANDIDATES.iter().map(|c| c.to_string()).collect();
    candidate_set_checksum(PICK, &names, "")
}

/// The entry for `problem` from decode speeds (tokens per second) with plain and with dependent
/// launches.
pub fn entry(problem: String, plain_tps: f64, dependent_tps: f64) -> Entry {
    let plain = plain_tps >= dependent_tps * MIN_GAIN;
    let us = |tps: f64| 1e6 / tps.max(f64::MIN_POSITIVE);
    Entry {
        problem,
        bucket: BUCKET.to_string(),
        candidate_set: candidate_set(),
        candidate: usize::from(plain),
        candidates: CANDIDATES.len(),
        knobs: format!("{{\"launch\":\"{}\"}}", CANDIDATES[usize::from(plain)]),
        default_us: us(dependent_tps),
        best_us: us(if plain { plain_tps } else { dependent_tps }),
    }
}

/// What applying `db` to the model of `problems` adds to `choice`: `Some(true)` when its entry
/// is current (picked into `choice`), `Some(false)` when it is stale, `None` without one.
pub fn apply(db: &TuningDb, problems: &[ProblemUse], choice: &mut TuningChoice) -> Option<bool> {
    let entry = db.get(&problem(problems), BUCKET)?;
    let current = entry.candidate_set == candidate_set() && entry.candidate < CANDIDATES.len();
    if current {
        choice.pick(PICK, entry.candidate);
    }
    Some(current)
}

/// Whether `choice` launches decode steps as dependents.
pub fn dependent_decode(choice: &TuningChoice) -> bool {
    choice.candidate_for(PICK) == 0
}
