//! The tuning loop: rank a model's problems by their share of a decode and a prefill step, then,
//! most expensive first and while the budget lasts, compile each problem's candidates, check
//! each against the default's output and time the survivors (see `measure`).
//!
//! Every candidate runs as a whole kernel set built with `TuningChoice { problem: i }` and
//! installed in the backend: only the problem's kernel differs from the defaults (the others
//! are disk-cache hits), and launches, arguments and selection are exactly the executor's. Where
//! a candidate changes which kernels its sites launch (decode attention rotating q and k itself
//! or after a rope_store launch), each candidate is timed with the launches it has and others
//! lack (`timed_entries`), so that one launch is compared with the two it replaces.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::measure::{
    check_outputs, difference, time_kernel, workload, CacheFlush, Geometry, Outputs, Workload,
};
use super::problems::{phase_name, problem_uses, ProblemUse};
use super::results::{ratio, tolerance, Outcome, ProblemResult, TuneReport};
use super::TuneError;
use crate::backend::gpu::compiled::{selector_for, step_at, target_of};
use crate::backend::gpu::runtime::FunctionHandle;
use crate::backend::gpu::{GpuBackend, GpuError, KernelBinary, LoadedKernelTable};
use crate::codegen::cache::{compile_all, KernelCache};
use crate::codegen::compiler::{compiler_for, Compiler, KernelSource, Target};
use crate::codegen::{kernels_for_model, KernelKind, KernelSet, Phase, Renderer, TuningChoice};
use crate::plan::Model;

/// Repeats of the default timings that rank the problems.
const RANKING_REPEATS: usize = 5;
/// A candidate slower than this many times the default (first timed pass) is not timed further.
const SLOW_FACTOR: f64 = 3.0;

#[derive(Debug, Clone)]
pub struct TuneOptions {
    /// Stop starting new candidates after this instant (the measured ones are kept).
    pub deadline: Instant,
    /// Tune only problems containing one of these texts (all when empty).
    pub only: Vec<String>,
    /// Most timed passes per candidate and phase.
    pub max_repeats: usize,
}

pub struct Tuner<'a> {
    backend: &'a mut GpuBackend,
    model: Arc<Model>,
    n_ctx: usize,
    target: Target,
    compiler: Box<dyn Compiler>,
    cache: KernelCache,
    renderer: Renderer,
    geometry: Geometry,
    flush: CacheFlush,
    /// Compiled binaries by entry point.
    images: HashMap<String, Arc<Vec<u8>>>,
}

impl<'a> Tuner<'a> {
    /// A tuner for `model` loaded in `backend` with a KV cache of `n_ctx` positions.
    pub fn new(
        backend: &'a mut GpuBackend,
        model: Arc<Model>,
        n_ctx: usize,
    ) -> Result<Tuner<'a>, TuneError> {
        let target = target_of(backend.runtime().info())?;
        let geometry = Geometry::for_context(n_ctx, backend.arena_layout().max_tokens);
        let flush = CacheFlush::new(backend.runtime())?;
        Ok(Tuner {
            compiler: compiler_for(&target)?,
            cache: KernelCache::from_env()?,
            renderer: Renderer::from_env()?,
            backend,
            model,
            n_ctx,
            target,
            geometry,
            flush,
            images: HashMap::new(),
        })
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Times decode at `pos` (within the context) instead of after the prefill chunk.
    pub fn set_decode_pos(&mut self, pos: usize) {
        self.geometry.decode_pos = pos.min(self.n_ctx.saturating_sub(1));
    }

    fn set_for(&self, choice: &TuningChoice) -> Result<KernelSet, TuneError> {
        Ok(kernels_for_model(
            &self.model,
            &self.target,
            choice,
            self.n_ctx,
            &self.renderer,
        )?)
    }

    /// Compiles (through the disk cache) the sources not compiled yet; one result per source.
    fn compile(&mut self, sources: &[KernelSource]) -> Vec<Result<(), String>> {
        let results = compile_all(&self.cache, self.compiler.as_ref(), &self.target, sources);
        results
            .into_iter()
            .map(|r| {
                let outcome = r.map_err(|e| e.to_string())?;
                self.images
                    .insert(outcome.name, Arc::new(outcome.kernel.binary));
                Ok(())
            })
            .collect()
    }

    /// Loads `set` (every kernel compiled already) into the backend; the functions of
    /// `entries`.
    fn install(
        &mut self,
        set: &KernelSet,
        entries: &[&str],
    ) -> Result<Vec<FunctionHandle>, TuneError> {
        let mut binaries = Vec::with_capacity(set.kernels.len());
        for spec in &set.kernels {
            let image = self.images.get(&spec.name).ok_or_else(|| {
                GpuError::Codegen(format!("kernel {} was not compiled", spec.name))
            })?;
            binaries.push(KernelBinary {
                entry: spec.name.clone(),
                image: image.clone(),
                max_shared_bytes: 0,
            });
        }
        let runtime = self.backend.runtime().clone();
        let table = LoadedKernelTable::load(&runtime, &binaries, selector_for(set.clone()))?;
        let functions = entries
            .iter()
            .map(|entry| {
                table.function(entry).ok_or_else(|| {
                    GpuError::Codegen(format!("kernel {entry} is not in its kernel set")).into()
                })
            })
            .collect::<Result<Vec<_>, TuneError>>()?;
        drop(self.backend.replace_kernels(Box::new(table))?);
        Ok(functions)
    }

    /// Installs `set` and returns the functions of `entries`, per workload.
    fn install_timed(
        &mut self,
        set: &KernelSet,
        entries: &[Vec<String>],
    ) -> Result<Vec<Vec<FunctionHandle>>, TuneError> {
        let flat: Vec<&str> = entries.iter().flatten().map(String::as_str).collect();
        let mut functions = self.install(set, &flat)?.into_iter();
        Ok(entries
            .iter()
            .map(|e| functions.by_ref().take(e.len()).collect())
            .collect())
    }

    /// Tunes the model's problems within `options`, reporting progress lines to `progress`.
    pub fn run(
        &mut self,
        options: &TuneOptions,
        progress: &mut dyn FnMut(String),
    ) -> Result<TuneReport, TuneError> {
        let defaults = self.set_for(&TuningChoice::defaults())?;
        for (source, result) in defaults
            .sources()
            .iter()
            .zip(self.compile(&defaults.sources()))
        {
            result.map_err(|e| GpuError::Codegen(format!("{}: {e}", source.name)))?;
        }
        let mut problems =
            problem_uses(&self.model, &defaults, self.geometry.prefill_tokens as u32);
        problems.retain(|p| {
            options.only.is_empty() || options.only.iter().any(|o| p.problem.contains(o))
        });
        if self.backend.vendor_gemm() {
            // Prefill matmuls run on the vendor GEMM: the tile kernels would be timed unused.
            let before = problems.len();
            problems.retain(|p| p.kind != KernelKind::MatmulGemm);
            if problems.len() < before {
                progress(format!(
                    "{} tile GEMM problems skipped: prefill matmuls run on the vendor GEMM \
                     (ROCMFORGE_PREFILL_GEMM=tiles tunes them)",
                    before - problems.len()
                ));
            }
        }
        let mut report = TuneReport::default();
        let ranked = self.rank(&defaults, problems, &mut report, progress)?;
        let total = ranked.len();
        for (n, (problem, workloads, share)) in ranked.into_iter().enumerate() {
            if Instant::now() >= options.deadline {
                report.not_reached.push(problem.problem);
                continue;
            }
            let started = Instant::now();
            match self.tune_problem(&defaults, &problem, workloads, options)? {
                Ok((phases, outcomes)) => {
                    let result = ProblemResult::new(problem, phases, outcomes, share);
                    progress(format!(
                        "[{}/{total}] {} ({:.1}% of step time): {} timed, {} rejected of {}, chose {} ({:.1} s)",
                        n + 1,
                        result.problem.problem,
                        100.0 * result.share,
                        result.timed(),
                        result.rejected(),
                        result.problem.candidates,
                        result.chosen,
                        started.elapsed().as_secs_f64()
                    ));
                    report.results.push(result);
                }
                Err(reason) => {
                    progress(format!(
                        "[{}/{total}] {}: skipped: {reason}",
                        n + 1,
                        problem.problem
                    ));
                    report.skipped.push((problem.problem, reason));
                }
            }
        }
        Ok(report)
    }

    /// Times every problem's default per phase and orders the problems by their share of the
    /// tunable kernels' time in a decode step and a prefill chunk (weighted equally), largest
    /// first. The default's kernel alone: what other candidates would launch instead is not
    /// known here.
    fn rank(
        &mut self,
        defaults: &KernelSet,
        problems: Vec<ProblemUse>,
        report: &mut TuneReport,
        progress: &mut dyn FnMut(String),
    ) -> Result<Vec<(ProblemUse, Vec<Workload>, f64)>, TuneError> {
        let l2 = self.backend.runtime().info().l2_cache_bytes as u64;
        let entries = problems
            .iter()
            .map(|p| kernel_name(defaults, &p.problem))
            .collect::<Result<Vec<_>, _>>()?;
        let names: Vec<&str> = entries.iter().map(String::as_str).collect();
        let functions = self.install(defaults, &names)?;
        let mut costs: Vec<(ProblemUse, Vec<Workload>, Vec<f64>)> = Vec::new();
        for (p, function) in problems.into_iter().zip(functions) {
            let workloads: Vec<Workload> = p
                .phases()
                .into_iter()
                .filter_map(|phase| workload(&self.model, &p, phase, self.geometry, l2))
                .collect();
            let mut cost = Vec::new();
            for w in &workloads {
                check_outputs(self.backend, &self.model, w)?;
                match time_kernel(
                    self.backend,
                    w,
                    &[function],
                    &self.flush,
                    RANKING_REPEATS,
                    None,
                )? {
                    Some(t) => cost.push(t.us_per_call * w.calls_per_step as f64),
                    None => break,
                }
            }
            if cost.len() != workloads.len() {
                report
                    .skipped
                    .push((p.problem, "its sites do not launch its kernel".to_string()));
                continue;
            }
            costs.push((p, workloads, cost));
        }
        let mut totals: HashMap<Phase, f64> = HashMap::new();
        for (_, workloads, cost) in &costs {
            for (w, c) in workloads.iter().zip(cost) {
                *totals.entry(w.phase).or_default() += c;
            }
        }
        let mut ranked: Vec<(ProblemUse, Vec<Workload>, f64)> = costs
            .into_iter()
            .map(|(p, workloads, cost)| {
                let share = workloads
                    .iter()
                    .zip(&cost)
                    .map(|(w, c)| ratio(*c, totals[&w.phase]).min(1.0))
                    .sum::<f64>()
                    / 2.0;
                (p, workloads, share)
            })
            .collect();
        ranked.sort_by(|a, b| b.2.total_cmp(&a.2));
        progress(format!(
            "{} tunable kernels ranked by share of a decode and a prefill step",
            ranked.len()
        ));
        Ok(ranked)
    }

    /// Checks and times every candidate of `p`. The outer error is a device failure of the
    /// default; the inner one a reason to leave the problem untuned. A candidate that fails on
    /// the device (load, launch) is rejected with the error.
    #[allow(clippy::type_complexity)]
    fn tune_problem(
        &mut self,
        defaults: &KernelSet,
        p: &ProblemUse,
        workloads: Vec<Workload>,
        options: &TuneOptions,
    ) -> Result<Result<(Vec<(Workload, f64)>, Vec<Outcome>), String>, TuneError> {
        let mut sets = vec![defaults.clone()];
        for i in 1..p.candidates {
            let mut choice = TuningChoice::defaults();
            choice.pick(p.problem.clone(), i);
            sets.push(self.set_for(&choice)?);
        }
        let timed = timed_entries(&sets, p, &workloads)?;
        let mut sources: Vec<KernelSource> = Vec::new();
        for (set, entries) in sets[1..].iter().zip(&timed[1..]) {
            for spec in &set.kernels {
                let wanted = entries.iter().flatten().any(|e| *e == spec.name);
                if wanted && !sources.iter().any(|s| s.name == spec.name) {
                    sources.push(spec.to_source());
                }
            }
        }
        let compiled = self.compile(&sources);
        let failed: HashMap<String, String> = sources
            .iter()
            .zip(compiled)
            .filter_map(|(s, r)| r.err().map(|e| (s.name.clone(), e)))
            .collect();

        let functions = self.install_timed(defaults, &timed[0])?;
        let (default_us, reference) =
            match self.measure(&workloads, &functions, None, p.kind, options)? {
                Measured::Timed { times, outputs } => (times, outputs),
                Measured::Rejected(reason) => return Ok(Err(reason)),
            };
        if reference
            .iter()
            .flatten()
            .any(|(_, rows)| rows.iter().any(|v| !v.is_finite()))
        {
            return Ok(Err("the default's output is not finite".to_string()));
        }
        let cutoffs: Vec<f64> = default_us.iter().map(|t| t * SLOW_FACTOR).collect();
        let mut outcomes = vec![Outcome::Timed(default_us.clone())];
        for (set, entries) in sets.iter().zip(&timed).skip(1) {
            if Instant::now() >= options.deadline {
                outcomes.push(Outcome::NotMeasured);
                continue;
            }
            if let Some(e) = entries.iter().flatten().find_map(|e| failed.get(e)) {
                outcomes.push(Outcome::Rejected(format!("does not compile: {e}")));
                continue;
            }
            let checked = Check {
                reference: &reference,
                cutoffs: &cutoffs,
            };
            let measured = self
                .install_timed(set, entries)
                .and_then(|f| self.measure(&workloads, &f, Some(checked), p.kind, options));
            outcomes.push(match measured {
                Ok(Measured::Timed { times, .. }) => Outcome::Timed(times),
                Ok(Measured::Rejected(reason)) => Outcome::Rejected(reason),
                Err(e) => Outcome::Rejected(format!("failed on the device: {e}")),
            });
        }
        let phases = workloads.into_iter().zip(default_us).collect();
        Ok(Ok((phases, outcomes)))
    }

    /// For each workload: the installed kernels' outputs, compared with the default's when
    /// `check` is given, then the timing of its `functions` (the problem's kernel first).
    fn measure(
        &mut self,
        workloads: &[Workload],
        functions: &[Vec<FunctionHandle>],
        check: Option<Check>,
        kind: KernelKind,
        options: &TuneOptions,
    ) -> Result<Measured, TuneError> {
        let mut times = Vec::new();
        let mut outputs = Vec::new();
        for (phase, w) in workloads.iter().enumerate() {
            // The check also sets the I/O block (tokens, position) the timing runs with.
            let out = check_outputs(self.backend, &self.model, w)?;
            if let Some(check) = &check {
                let diff = difference(&out, &check.reference[phase]);
                let tol = tolerance(kind);
                if diff.nmse > tol.nmse || diff.max_relative > tol.max_relative {
                    return Ok(Measured::Rejected(format!(
                        "{} output differs from the default's: NMSE {:.1e}, largest {:.1e} \
                         (tolerance {:.0e}, {:.0e})",
                        phase_name(w.phase),
                        diff.nmse,
                        diff.max_relative,
                        tol.nmse,
                        tol.max_relative
                    )));
                }
            }
            let cutoff = check.as_ref().map(|c| c.cutoffs[phase]);
            let timing = time_kernel(
                self.backend,
                w,
                &functions[phase],
                &self.flush,
                options.max_repeats,
                cutoff,
            )?
            .ok_or_else(|| GpuError::Codegen("the kernel is not launched by its sites".into()))?;
            times.push(timing.us_per_call);
            outputs.push(out);
        }
        Ok(Measured::Timed { times, outputs })
    }
}

/// What a candidate is held to: the default's outputs per phase, and the time per phase past
/// which it is not timed further.
#[derive(Clone, Copy)]
struct Check<'r> {
    reference: &'r [Outputs],
    cutoffs: &'r [f64],
}

enum Measured {
    Timed {
        times: Vec<f64>,
        outputs: Vec<Outputs>,
    },
    Rejected(String),
}

/// The entry point of `problem`'s kernel in `set`.
fn kernel_name(set: &KernelSet, problem: &str) -> Result<String, TuneError> {
    set.kernels
        .iter()
        .find(|k| k.problem == problem)
        .map(|k| k.name.clone())
        .ok_or_else(|| {
            GpuError::Codegen(format!("no kernel of problem '{problem}' in the set")).into()
        })
}

/// For each candidate's set (index = candidate) and each workload: the entry points to time, the
/// problem's kernel first, then the kernels the set launches at the workload's sites that not
/// every candidate's set launches there.
fn timed_entries(
    sets: &[KernelSet],
    p: &ProblemUse,
    workloads: &[Workload],
) -> Result<Vec<Vec<Vec<String>>>, TuneError> {
    let mut timed = Vec::with_capacity(sets.len());
    for set in sets {
        timed.push(vec![vec![kernel_name(set, &p.problem)?]; workloads.len()]);
    }
    for (wi, w) in workloads.iter().enumerate() {
        let launched: Vec<Vec<String>> = sets.iter().map(|set| launched_at(set, w)).collect();
        for (entries, names) in timed.iter_mut().zip(&launched) {
            for name in names {
                let varies = !launched.iter().all(|other| other.contains(name));
                if varies && !entries[wi].contains(name) {
                    entries[wi].push(name.clone());
                }
            }
        }
    }
    Ok(timed)
}

/// The entry points `set` launches at the sites of `w`'s pass.
fn launched_at(set: &KernelSet, w: &Workload) -> Vec<String> {
    w.pass
        .iter()
        .filter_map(|&site| step_at(site))
        .filter_map(|at| set.for_step(at, w.n_tokens as u32))
        .flatten()
        .map(|spec| spec.name.clone())
        .collect()
}
