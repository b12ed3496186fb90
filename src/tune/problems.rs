//! Which tunable problems a model's kernel set has, and where the program launches each of them:
//! the program steps (sites) per phase. Found through `KernelSet::for_step`, so the tuner needs
//! no knowledge of which op a step runs or of its arguments.

use crate::backend::gpu::{Section, StepSite};
use std::ops::Range;

use crate::codegen::{KernelKind, KernelSet, Phase, StepAt};
use crate::graph::Fusions;
use crate::plan::Model;

use super::db::candidate_set_checksum;

/// One problem (op and shape) with more than one candidate, and its launch sites.
#[derive(Debug, Clone, PartialEq)]
pub struct ProblemUse {
    pub problem: String,
    pub kind: KernelKind,
    pub candidates: usize,
    /// Each candidate's knobs as JSON, index = candidate.
    pub candidate_knobs: Vec<String>,
    /// See [`candidate_set_checksum`].
    pub candidate_set: String,
    /// Steps launching the problem's kernel in a one-token decode step.
    pub decode_sites: Vec<StepSite>,
    /// Steps launching it in a prefill chunk. The epilogue is not among them: a prefill runs
    /// it over the last token only, with the decode kernels.
    pub prefill_sites: Vec<StepSite>,
}

impl ProblemUse {
    pub fn phases(&self) -> Vec<Phase> {
        let mut phases = Vec::new();
        if !self.decode_sites.is_empty() {
            phases.push(Phase::Decode);
        }
        if !self.prefill_sites.is_empty() {
            phases.push(Phase::Prefill);
        }
        phases
    }

    pub fn sites(&self, phase: Phase) -> &[StepSite] {
        match phase {
            Phase::Decode => &self.decode_sites,
            Phase::Prefill => &self.prefill_sites,
        }
    }

    /// The shape bucket of the tuning database: the phases the kernel runs in.
    pub fn bucket(&self) -> String {
        let names: Vec<&str> = self.phases().into_iter().map(phase_name).collect();
        names.join("+")
    }

    /// The knobs of candidate `index`, as JSON.
    pub fn knobs(&self, index: usize) -> String {
        self.candidate_knobs
            .get(index)
            .cloned()
            .unwrap_or_else(|| format!("candidate {index}"))
    }
}

pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Decode => "decode",
        Phase::Prefill => "prefill",
    }
}

/// Every step of `model`'s program with its place in the kernel set.
pub fn all_sites(model: &Model) -> Vec<(StepSite, StepAt)> {
    let program = &model.program;
    let mut sites = Vec::new();
    for index in 0..program.prologue.len() {
        let site = StepSite {
            section: Section::Prologue,
            index,
            layer: None,
        };
        sites.push((site, StepAt::Prologue(index)));
    }
    for layer in 0..model.hparams.n_layer {
        for index in 0..program.block.len() {
            let site = StepSite {
                section: Section::Block,
                index,
                layer: Some(layer),
            };
            sites.push((site, StepAt::Block { layer, step: index }));
        }
    }
    for index in 0..program.epilogue.len() {
        let site = StepSite {
            section: Section::Epilogue,
            index,
            layer: None,
        };
        sites.push((site, StepAt::Epilogue(index)));
    }
    sites
}

/// The tunable problems of `set` (built for `model` with default knobs), in order of first
/// launch. `prefill_tokens` is the chunk size prefill is measured at.
pub fn problem_uses(model: &Model, set: &KernelSet, prefill_tokens: u32) -> Vec<ProblemUse> {
    let mut uses: Vec<ProblemUse> = Vec::new();
    for (site, at) in all_sites(model) {
        let mut phases = vec![(Phase::Decode, 1)];
        if site.section != Section::Epilogue {
            phases.push((Phase::Prefill, prefill_tokens));
        }
        for (phase, n_tokens) in phases {
            let Some(specs) = set.for_step(at, n_tokens) else {
                continue;
            };
            for spec in specs.into_iter().filter(|s| s.candidates > 1) {
                let i = match uses.iter().position(|u| u.problem == spec.problem) {
                    Some(i) => i,
                    None => {
                        uses.push(ProblemUse {
                            problem: spec.problem.clone(),
                            kind: spec.kind,
                            candidates: spec.candidates,
                            candidate_knobs: spec.candidate_knobs.clone(),
                            candidate_set: candidate_set_checksum(
                                &spec.problem,
                                &spec.candidate_knobs,
                                &spec.source,
                            ),
                            decode_sites: Vec::new(),
                            prefill_sites: Vec::new(),
                        });
                        uses.len() - 1
                    }
                };
                let sites = match phase {
                    Phase::Decode => &mut uses[i].decode_sites,
                    Phase::Prefill => &mut uses[i].prefill_sites,
                };
                if !sites.contains(&site) {
                    sites.push(site);
                }
            }
        }
    }
    uses
}

/// The steps one launch list at `site` computes in `phase`: the fusion starting there (see
/// `graph::fuse`; its kernels sit in its first step's list), else the step alone.
pub fn group(model: &Model, fusions: &Fusions, site: StepSite, phase: Phase) -> Range<usize> {
    let range = match fusions.at(site.section, site.index, phase == Phase::Decode) {
        Some(f) => f.first..f.first + f.len,
        None => site.index..site.index + 1,
    };
    let len = model.program.section(site.section).len();
    range.start.min(len)..range.end.min(len)
}

/// Bytes of the distinct weight tensors the launches at `sites` in `phase` read: what one pass
/// over them streams through the cache.
pub fn weight_bytes(model: &Model, sites: &[StepSite], phase: Phase) -> u64 {
    let fusions = Fusions::of(&model.program);
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for &site in sites {
        let steps = model.program.section(site.section);
        for step in &steps[group(model, &fusions, site, phase)] {
            for role in step.weights.iter().flatten() {
                if let Some(t) = model.weight(site.layer, role) {
                    if seen.insert(t.name.clone()) {
                        total += t.n_bytes;
                    }
                }
            }
        }
    }
    total
}
