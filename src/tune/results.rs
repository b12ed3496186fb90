//! What measuring a problem's candidates gave, and which candidate wins: a candidate replaces
//! the default only when it is clearly faster overall and slower in no phase.

use super::db::Entry;
use super::measure::Workload;
use super::problems::{phase_name, ProblemUse};
use crate::codegen::KernelKind;

/// A candidate must be this much faster (mean over phases) to replace the default: less is
/// within run-to-run noise.
const MIN_GAIN: f64 = 0.02;
/// ... and no phase may get slower than this.
const MAX_PHASE_LOSS: f64 = 0.01;

/// How far a candidate's outputs may be from the default's (see `measure::Difference`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub nmse: f64,
    pub max_relative: f64,
}

/// The tolerance of an op kind. Matmuls: candidates switch between int8 (q8_1) and f32 x, whose
/// rounding gives an NMSE near 2e-5 and a largest difference near 5e-3 of the output's
/// magnitude on random inputs (f32 reorderings and f16 tensor-core tiles far less), while a
/// wrong row or index gives ~1 in the largest difference. The RMS norm only sums in another
/// order. Attention: decode candidates only sum in another order or split, but prefill switches
/// between the per-token kernel (f32) and the tiled kernel on matrix units, which rounds queries
/// and softmax weights to f16 (an NMSE near 1e-7 and a largest difference near 5e-4 on random
/// inputs, more where real queries give large scores); decode attention rotating q and k itself
/// computes the rotations with rope_store's expressions. Ops without reductions should match
/// bit for bit; their bounds only allow a contracted multiply-add.
pub fn tolerance(kind: KernelKind) -> Tolerance {
    let (nmse, max_relative) = match kind {
        KernelKind::MatmulGemv | KernelKind::MatmulGemm => (1e-4, 5e-2),
        KernelKind::Attention | KernelKind::RopeAttention => (1e-5, 1e-2),
        KernelKind::RmsNorm => (1e-8, 1e-4),
        KernelKind::Embed
        | KernelKind::Split
        | KernelKind::Rope
        | KernelKind::KvStore
        | KernelKind::RopeStore
        | KernelKind::Add
        | KernelKind::SiluMul
        | KernelKind::Argmax
        | KernelKind::StageInput
        | KernelKind::StageWeights => (1e-10, 1e-6),
    };
    Tolerance { nmse, max_relative }
}

/// One phase of a tuned problem.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseResult {
    pub workload: Workload,
    pub default_us: f64,
    pub chosen_us: f64,
}

/// What happened to one candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Microseconds per call, per phase of the problem.
    Timed(Vec<f64>),
    Rejected(String),
    /// Budget ran out first.
    NotMeasured,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProblemResult {
    pub problem: ProblemUse,
    pub phases: Vec<PhaseResult>,
    pub outcomes: Vec<Outcome>,
    pub chosen: usize,
    /// The problem's share of the tunable kernels' time in a decode step and a prefill chunk,
    /// the two weighted equally (default kernels).
    pub share: f64,
}

impl ProblemResult {
    /// The result of measured `outcomes`, with the winner chosen; `phases` holds each phase's
    /// workload and default time.
    pub fn new(
        problem: ProblemUse,
        phases: Vec<(Workload, f64)>,
        outcomes: Vec<Outcome>,
        share: f64,
    ) -> ProblemResult {
        let chosen = choose_winner(&outcomes);
        let phases = phases
            .into_iter()
            .enumerate()
            .map(|(i, (workload, default_us))| PhaseResult {
                chosen_us: phase_time(&outcomes, chosen, i).unwrap_or(default_us),
                workload,
                default_us,
            })
            .collect();
        ProblemResult {
            problem,
            phases,
            outcomes,
            chosen,
            share,
        }
    }

    /// Every candidate was checked (and timed if it passed).
    pub fn complete(&self) -> bool {
        !self.outcomes.contains(&Outcome::NotMeasured)
    }

    pub fn timed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Timed(_)))
            .count()
    }

    pub fn rejected(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Rejected(_)))
            .count()
    }

    /// The database entry, if more than the default was measured.
    pub fn entry(&self) -> Option<Entry> {
        if self.timed() + self.rejected() < 2 {
            return None;
        }
        Some(Entry {
            problem: self.problem.problem.clone(),
            bucket: self.problem.bucket(),
            candidate_set: self.problem.candidate_set.clone(),
            candidate: self.chosen,
            candidates: self.problem.candidates,
            knobs: self.problem.knobs(self.chosen),
            default_us: self.phases.iter().map(|p| p.default_us).sum(),
            best_us: self.phases.iter().map(|p| p.chosen_us).sum(),
        })
    }
}

impl ProblemResult {
    /// Every candidate of the problem as a markdown table: knobs, time per call in each phase
    /// (or why it has none) and speedup over the default (mean over phases); the chosen one
    /// marked. What `rocmforge tune --candidates` prints.
    pub fn candidate_table(&self) -> String {
        let p = &self.problem;
        let phases: Vec<&str> = p.phases().into_iter().map(phase_name).collect();
        let mut out = format!("\n#### {} ({})\n| # | knobs |", p.problem, p.bucket());
        for phase in &phases {
            out.push_str(&format!(" {phase} µs |"));
        }
        out.push_str(" speedup |\n| ---: | --- |");
        out.push_str(&" ---: |".repeat(phases.len() + 1));
        out.push('\n');
        let base = match self.outcomes.first() {
            Some(Outcome::Timed(t)) => t.clone(),
            _ => Vec::new(),
        };
        for (i, outcome) in self.outcomes.iter().enumerate() {
            let mark = if i == self.chosen { " (chosen)" } else { "" };
            let cells = match outcome {
                Outcome::Timed(times) => {
                    let ratios: Vec<f64> = times
                        .iter()
                        .zip(&base)
                        .map(|(&t, &t0)| ratio(t, t0))
                        .collect();
                    let mean = ratios.iter().sum::<f64>() / ratios.len().max(1) as f64;
                    let times: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
                    format!(
                        "{} | {:.2}x",
                        times.join(" | "),
                        1.0 / mean.max(f64::MIN_POSITIVE)
                    )
                }
                Outcome::Rejected(reason) => {
                    let reason = reason.replace('|', "/");
                    format!("rejected: {reason}{}", " |".repeat(phases.len()))
                }
                Outcome::NotMeasured => {
                    format!("not measured (budget){}", " |".repeat(phases.len()))
                }
            };
            out.push_str(&format!("| {i}{mark} | {} | {cells} |\n", p.knobs(i)));
        }
        out
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TuneReport {
    pub results: Vec<ProblemResult>,
    /// Problems the budget did not reach, most expensive first.
    pub not_reached: Vec<String>,
    /// Problems left out, and why.
    pub skipped: Vec<(String, String)>,
}

pub fn ratio(t: f64, t0: f64) -> f64 {
    if t0 > 0.0 {
        t / t0
    } else if t == 0.0 {
        1.0
    } else {
        f64::INFINITY
    }
}

/// The winner among `outcomes` (index 0 is the default and must be timed): the best mean
/// ratio to the default over the phases, if it gains at least `MIN_GAIN` and loses at most
/// `MAX_PHASE_LOSS` in any phase; else the default.
pub fn choose_winner(outcomes: &[Outcome]) -> usize {
    let Some(Outcome::Timed(base)) = outcomes.first() else {
        return 0;
    };
    let mut best = (0, 1.0 - MIN_GAIN);
    for (i, o) in outcomes.iter().enumerate().skip(1) {
        let Outcome::Timed(times) = o else { continue };
        if times.len() != base.len() || times.is_empty() {
            continue;
        }
        let ratios: Vec<f64> = times
            .iter()
            .zip(base)
            .map(|(&t, &t0)| ratio(t, t0))
            .collect();
        if ratios.iter().any(|r| *r > 1.0 + MAX_PHASE_LOSS) {
            continue;
        }
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        if mean <= best.1 {
            best = (i, mean);
        }
    }
    best.0
}

fn phase_time(outcomes: &[Outcome], chosen: usize, phase: usize) -> Option<f64> {
    match outcomes.get(chosen)? {
        Outcome::Timed(t) => t.get(phase).copied(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timed(t: &[f64]) -> Outcome {
        Outcome::Timed(t.to_vec())
    }

    #[test]
    fn the_default_stays_unless_a_candidate_is_clearly_faster() {
        assert_eq!(
            choose_winner(&[timed(&[10.0]), timed(&[9.9])]),
            0,
            "1% is noise"
        );
        assert_eq!(
            choose_winner(&[timed(&[10.0]), timed(&[9.0]), timed(&[8.0])]),
            2
        );
        assert_eq!(choose_winner(&[timed(&[10.0]), timed(&[11.0])]), 0);
    }

    #[test]
    fn a_winner_may_not_lose_in_any_phase() {
        // Much faster in decode but 5% slower in prefill: rejected; the balanced one wins.
        let outcomes = [
            timed(&[10.0, 100.0]),
            timed(&[5.0, 105.0]),
            timed(&[9.0, 95.0]),
        ];
        assert_eq!(choose_winner(&outcomes), 2);
    }

    #[test]
    fn rejected_and_unmeasured_candidates_never_win() {
        let outcomes = [
            timed(&[10.0]),
            Outcome::Rejected("wrong".to_string()),
            Outcome::NotMeasured,
        ];
        assert_eq!(choose_winner(&outcomes), 0);
        assert_eq!(
            choose_winner(&[Outcome::Rejected("x".to_string()), timed(&[1.0])]),
            0
        );
    }

    #[test]
    fn zero_times_tie() {
        assert_eq!(choose_winner(&[timed(&[0.0]), timed(&[0.0])]), 0);
    }

    #[test]
    fn reductions_get_looser_tolerances_than_elementwise_ops() {
        let (mm, norm, add) = (
            tolerance(KernelKind::MatmulGemv),
            tolerance(KernelKind::RmsNorm),
            tolerance(KernelKind::Add),
        );
        assert!(mm.nmse > norm.nmse && norm.nmse > add.nmse);
        assert!(mm.max_relative > norm.max_relative && norm.max_relative > add.max_relative);
    }
}
