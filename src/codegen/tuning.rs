//! Tuning choices: for each problem (op + shape, see `OpContext::problem`), which candidate of the
//! context's `Tunable::candidates()` to use. Problems not named use candidate 0, the default.
//! Measuring candidates and storing the winners per device is the tuner's job; this is what it
//! hands to kernel generation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::context::Tunable;
use super::error::CodegenError;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TuningChoice {
    pub picks: BTreeMap<String, usize>,
}

impl TuningChoice {
    /// Every problem at its default.
    pub fn defaults() -> TuningChoice {
        TuningChoice::default()
    }

    pub fn pick(&mut self, problem: impl Into<String>, candidate: usize) {
        self.picks.insert(problem.into(), candidate);
    }

    pub fn candidate_for(&self, problem: &str) -> usize {
        self.picks.get(problem).copied().unwrap_or(0)
    }

    /// `ctx` with the knobs of its chosen candidate, validated.
    pub fn apply<C: Tunable>(&self, ctx: C) -> Result<C, CodegenError> {
        let problem = ctx.problem();
        let candidates = ctx.candidates();
        let index = self.candidate_for(&problem);
        let knobs = candidates.get(index).ok_or(CodegenError::BadTuning {
            problem,
            index,
            count: candidates.len(),
        })?;
        let tuned = ctx.with_knobs(knobs);
        tuned.validate()?;
        Ok(tuned)
    }
}
