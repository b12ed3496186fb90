//! Turning the device's tuning database into the `TuningChoice` kernel generation takes, and the
//! one stderr line that says what was applied or why nothing was.

use std::path::Path;
use std::sync::Arc;

use super::db::{db_path, DbRead, Fingerprint, TuningDb};
use super::error::TuneError;
use super::launch_mode;
use super::problems::{problem_uses, ProblemUse};
use crate::backend::gpu::compiled::target_of;
use crate::backend::gpu::GpuRuntime;
use crate::codegen::compiler::compiler_for;
use crate::codegen::{kernels_for_model, Renderer, TuningChoice};
use crate::plan::Model;

/// The prefill chunk the problems' prefill sites are looked up at (any chunk of more than
/// `DECODE_MAX_TOKENS` tokens launches the same kernels).
pub const PREFILL_TOKENS: u32 = 512;

/// The choice a database gives for a model's problems.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub choice: TuningChoice,
    /// Problems whose entry matched and was applied (a default winner counts).
    pub applied: usize,
    /// Problems with an entry for another candidate set (or an index outside it): ignored.
    pub stale: usize,
}

impl Applied {
    /// What the line about the database adds for the launch mode.
    fn launch_note(&self) -> &'static str {
        if launch_mode::dependent_decode(&self.choice) {
            ""
        } else {
            launch_mode::NOTE
        }
    }
}

/// Picks, for each of `problems`, the winner its entry records, unless the entry's candidate
/// set is not the problem's current one.
pub fn apply(db: &TuningDb, problems: &[ProblemUse]) -> Applied {
    let mut out = Applied {
        choice: TuningChoice::defaults(),
        applied: 0,
        stale: 0,
    };
    for p in problems {
        let Some(entry) = db.get(&p.problem, &p.bucket()) else {
            continue;
        };
        if entry.candidate_set == p.candidate_set && entry.candidate < p.candidates {
            out.choice.pick(p.problem.clone(), entry.candidate);
            out.applied += 1;
        } else {
            out.stale += 1;
        }
    }
    if launch_mode::apply(db, problems, &mut out.choice) == Some(false) {
        out.stale += 1;
    }
    out
}

/// The choice for `problems` from what reading the database at `path` found, and the one line
/// to tell the user (warnings start with `warning:`).
pub fn choose(
    read: DbRead,
    path: &Path,
    current: &Fingerprint,
    problems: &[ProblemUse],
) -> (TuningChoice, String) {
    let path = path.display();
    match read {
        DbRead::Missing => (
            TuningChoice::defaults(),
            format!("tuning: none for this device yet (`rocmforge tune` writes {path})"),
        ),
        DbRead::Corrupt(reason) => (
            TuningChoice::defaults(),
            format!("warning: tuning database {path} ignored, running untuned: {reason}"),
        ),
        DbRead::Foreign(found) => (
            TuningChoice::defaults(),
            format!(
                "warning: tuning database {path} ignored, running untuned: it was made for {}, \
                 this is {} (rerun `rocmforge tune`)",
                found.describe(),
                current.describe()
            ),
        ),
        DbRead::Ready(db) => {
            let a = apply(&db, problems);
            let line = if a.stale > 0 {
                format!(
                    "warning: tuning: {} entries of {path} ignored as stale (their kernels' \
                     candidates changed; rerun `rocmforge tune`); {} applied",
                    a.stale, a.applied
                )
            } else if a.applied == 0 {
                format!("tuning: {path} has no entries for this model's kernels; running untuned")
            } else {
                format!(
                    "tuning: {} of {} tunable kernels tuned, from {path}",
                    a.applied,
                    problems.len()
                )
            };
            let line = line + a.launch_note();
            (a.choice, line)
        }
    }
}

/// The device's fingerprint with the compiler that builds kernels for it.
pub fn device_fingerprint(runtime: &dyn GpuRuntime) -> Result<Fingerprint, TuneError> {
    let target = target_of(runtime.info())?;
    let compiler = compiler_for(&target)?;
    Ok(Fingerprint::new(runtime.info(), &compiler.version()))
}

/// The tunable problems of `model` on `runtime`'s device at context `n_ctx`.
pub fn model_problems(
    runtime: &dyn GpuRuntime,
    model: &Model,
    n_ctx: usize,
) -> Result<Vec<ProblemUse>, TuneError> {
    let target = target_of(runtime.info())?;
    let renderer = Renderer::from_env()?;
    let set = kernels_for_model(model, &target, &TuningChoice::defaults(), n_ctx, &renderer)?;
    Ok(problem_uses(model, &set, PREFILL_TOKENS))
}

/// What `run`, `bench` and `verify` apply on a GPU: the device's database checked against this
/// model's kernels, and the line saying what happened. Only rendering or compiler errors (which
/// loading the model would hit anyway) are errors; a bad database is a warning.
pub fn tuning_for_device(
    runtime: &Arc<dyn GpuRuntime>,
    model: &Model,
    n_ctx: usize,
) -> Result<(TuningChoice, String), TuneError> {
    let fingerprint = device_fingerprint(runtime.as_ref())?;
    let problems = model_problems(runtime.as_ref(), model, n_ctx)?;
    let path = db_path(&fingerprint)?;
    let read = TuningDb::read(&path, &fingerprint);
    Ok(choose(read, &path, &fingerprint, &problems))
}
