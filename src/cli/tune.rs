//! `rocmforge tune`: find the fastest correct candidate of each kernel of a model on this GPU,
//! store the winners in the device's tuning database and show what they bring end to end.

use crate::backend::gpu::compiled::compile_kernel_table_tuned;
use crate::backend::gpu::kernels::KernelTable;
use crate::backend::gpu::{
    prefill_on_vendor_gemm, select_device, ExecutorConfig, GpuBackend, SelectedDevice,
};
use crate::backend::Backend;
use crate::bench::{prompt_processing, token_generation, Series};
use crate::codegen::TuningChoice;
use crate::gguf::GgufFile;
use crate::plan::{bind, Model, Plan};
use crate::tune::apply::device_fingerprint;
use crate::tune::apply::model_problems;
use crate::tune::db::db_path;
use crate::tune::problems::phase_name;
use crate::tune::results::{Outcome, TuneReport};
use crate::tune::tuner::{TuneOptions, Tuner};
use crate::tune::{launch_mode, tuning_for_device, DbRead, TuningDb};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The smallest context tuning accepts: prefill is measured on a chunk of up to 512 tokens and
/// decode after it, so a tiny context would measure shapes no real run has.
const MIN_CTX: usize = 64;
/// Kept free at the end of the budget for writing the database and reloading the kernels.
const RESERVE: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// The GGUF model file
    #[arg(long)]
    pub gguf: PathBuf,
    /// Architecture plan: a name or a path to a .toml; default: from general.architecture
    #[arg(long)]
    pub arch: Option<String>,
    /// cuda[:N], hip[:N] or auto (a GPU is required)
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// KV-cache size the kernels are built for, as with `run` (default: the model's training
    /// context, at most 4096); attention is tuned for this size
    #[arg(long)]
    pub ctx_size: Option<usize>,
    /// Wall-clock budget of the whole command, loading and benchmarks included. Kernels are
    /// tuned most expensive first; when the budget runs out the measured ones are kept
    #[arg(long, default_value_t = 240)]
    pub budget_seconds: u64,
    /// Tune only kernels whose problem contains this text (repeatable), e.g. matmul_gemv
    #[arg(long)]
    pub only: Vec<String>,
    /// Most timed passes per candidate and phase (the median counts)
    #[arg(long, default_value_t = 15)]
    pub repeats: usize,
    /// Also print every candidate of every tuned kernel: knobs, time per call, speedup over the
    /// default, or why it was rejected
    #[arg(long)]
    pub candidates: bool,
    /// Repeats of the end-to-end pp512 / tg128 runs with the default and the tuned kernels,
    /// taken in turn; 0 skips them
    #[arg(long, default_value_t = 3)]
    pub bench_repeats: usize,
    /// Position at which decode kernels are timed (default: after a 512-token prompt, within the
    /// context): decode attention's cost grows with it, so the best split differs
    #[arg(long)]
    pub decode_pos: Option<usize>,
}

pub fn run(a: &TuneArgs) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(a.budget_seconds);
    let file = Arc::new(GgufFile::open(&a.gguf)?);
    let plan = Plan::resolve(a.arch.as_deref(), &file)?;
    let model = Arc::new(bind(&plan, file)?);
    let n_ctx = a.ctx_size.unwrap_or(model.hparams.n_ctx_train.min(4096));
    if n_ctx < MIN_CTX {
        return Err(
            format!("--ctx-size {n_ctx}: tuning needs a context of at least {MIN_CTX}").into(),
        );
    }
    if let Some(pos) = a.decode_pos.filter(|&pos| pos >= n_ctx) {
        return Err(
            format!("--decode-pos {pos} is outside the context of {n_ctx} positions").into(),
        );
    }
    let runtime = match select_device(&a.device)? {
        SelectedDevice::Gpu(runtime) => runtime,
        SelectedDevice::Cpu => {
            return Err(format!(
                "rocmforge tune needs a GPU, and --device {} gave the CPU backend, which has no \
                 kernels to tune",
                a.device
            )
            .into())
        }
    };
    let fingerprint = device_fingerprint(runtime.as_ref())?;
    let path = db_path(&fingerprint)?;
    eprintln!("tune: {} on {}", a.gguf.display(), fingerprint.describe());
    eprintln!("tune: database {}", path.display());
    // Prefill as `run` will do it, so that the end-to-end comparison measures what runs.
    let config = ExecutorConfig {
        vendor_gemm: prefill_on_vendor_gemm(runtime.as_ref())?,
        ..ExecutorConfig::new(n_ctx)
    };
    let mut backend = GpuBackend::load(runtime.clone(), model.clone(), config)?;

    // One round of the end-to-end comparison made at the end, timed to keep its share of the
    // budget: the kernels' comparison runs 2 * bench_repeats such rounds, the launch modes'
    // about as many decode runs.
    let bench_started = Instant::now();
    end_to_end(&mut backend, &model, n_ctx, a.bench_repeats.min(1))?;
    let reserve = bench_started.elapsed() * 4 * a.bench_repeats as u32 + RESERVE;
    let options = TuneOptions {
        deadline: deadline
            .checked_sub(reserve)
            .unwrap_or(start)
            .max(Instant::now()),
        only: a.only.clone(),
        max_repeats: a.repeats,
    };
    let report = {
        let mut tuner = Tuner::new(&mut backend, model.clone(), n_ctx)?;
        if let Some(pos) = a.decode_pos {
            tuner.set_decode_pos(pos);
        }
        let geometry = tuner.geometry();
        eprintln!(
            "tune: decode at position {}, prefill {} tokens; budget ends in {:.0} s",
            geometry.decode_pos,
            geometry.prefill_tokens,
            options
                .deadline
                .saturating_duration_since(Instant::now())
                .as_secs_f64()
        );
        tuner.run(&options, &mut |line| eprintln!("tune: {line}"))?
    };

    let mut db = match TuningDb::read(&path, &fingerprint) {
        DbRead::Ready(db) => db,
        DbRead::Missing => TuningDb::new(fingerprint.clone()),
        DbRead::Corrupt(reason) => {
            eprintln!(
                "warning: replacing the unreadable database {}: {reason}",
                path.display()
            );
            TuningDb::new(fingerprint.clone())
        }
        DbRead::Foreign(found) => {
            eprintln!(
                "warning: replacing {}, made for {}",
                path.display(),
                found.describe()
            );
            TuningDb::new(fingerprint.clone())
        }
    };
    let entries: Vec<_> = report.results.iter().filter_map(|r| r.entry()).collect();
    for entry in &entries {
        db.insert(entry.clone());
    }
    db.save(&path)?;
    eprintln!(
        "tune: {} entries written to {}",
        entries.len(),
        path.display()
    );

    // Reload the kernels the way `run` and `bench` will: from the database just written.
    let (choice, line) = tuning_for_device(&runtime, &model, n_ctx)?;
    eprintln!("{line}");
    let tuned = compile_kernel_table_tuned(&runtime, &model, n_ctx, &choice)?;
    let defaults = compile_kernel_table_tuned(&runtime, &model, n_ctx, &TuningChoice::defaults())?;
    let (before, after) = before_and_after(
        &mut backend,
        &model,
        n_ctx,
        a.bench_repeats,
        Box::new(defaults),
        Box::new(tuned),
    )?;

    // Then how decode steps launch, with the tuned kernels: a database entry of its own.
    let launches = if a.bench_repeats > 0 && runtime.dependent_launch() {
        let [plain, dependent] = launch_modes(&mut backend, &model, n_ctx, a.bench_repeats)?;
        let problems = model_problems(runtime.as_ref(), &model, n_ctx)?;
        let entry = launch_mode::entry(
            launch_mode::problem(&problems),
            plain.median(),
            dependent.median(),
        );
        db.insert(entry.clone());
        db.save(&path)?;
        Some((plain, dependent, entry))
    } else {
        None
    };

    print_kernels(&report);
    if a.candidates {
        for r in &report.results {
            print!("{}", r.candidate_table());
        }
    }
    print_end_to_end(&before, &after);
    if let Some((plain, dependent, entry)) = launches {
        println!("| decode launches | plain tg128 t/s | dependent tg128 t/s | speedup | chosen |");
        println!("| --- | ---: | ---: | ---: | --- |");
        println!(
            "| {} | {:.2} ± {:.2} | {:.2} ± {:.2} | {:.2}x | {} |",
            entry.problem,
            plain.median(),
            plain.spread(),
            dependent.median(),
            dependent.spread(),
            dependent.median() / plain.median().max(f64::MIN_POSITIVE),
            entry.knobs
        );
    }
    println!("total {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// pp512 and tg128 (or as much as the context holds), unless `repeats` is 0.
fn end_to_end(
    backend: &mut GpuBackend,
    model: &Model,
    n_ctx: usize,
    repeats: usize,
) -> Result<Vec<Series>, Box<dyn std::error::Error>> {
    if repeats == 0 {
        return Ok(Vec::new());
    }
    let n_vocab = model.hparams.n_vocab;
    let b: &mut dyn Backend = backend;
    Ok(vec![
        prompt_processing(b, n_vocab, 512.min(n_ctx), repeats)?,
        token_generation(b, n_vocab, 128.min(n_ctx), repeats)?,
    ])
}

type Failure = Box<dyn std::error::Error>;

/// Two configurations of `backend` measured in turn, one repeat each: before round r (0, 1,
/// ...), `select(backend, r)` sets up side r % 2; `measure` takes one repeat of each series.
/// Drift of clocks or memory state over the run then falls on both alike: measured one after
/// the other, the second read 1-3% slower on an H200 even when both were the same.
fn alternating(
    backend: &mut GpuBackend,
    repeats: usize,
    mut select: impl FnMut(&mut GpuBackend, usize) -> Result<(), Failure>,
    mut measure: impl FnMut(&mut GpuBackend) -> Result<Vec<Series>, Failure>,
) -> Result<[Vec<Series>; 2], Failure> {
    let mut sides: [Vec<Series>; 2] = [Vec::new(), Vec::new()];
    for round in 0..2 * repeats {
        select(backend, round)?;
        let measured = measure(backend)?;
        let side = &mut sides[round % 2];
        if side.is_empty() {
            *side = measured;
        } else {
            for (series, more) in side.iter_mut().zip(measured) {
                series.samples.extend(more.samples);
            }
        }
    }
    Ok(sides)
}

/// pp512 and tg128 with the default and the tuned kernels, in turn; the tuned ones stay.
fn before_and_after(
    backend: &mut GpuBackend,
    model: &Model,
    n_ctx: usize,
    repeats: usize,
    defaults: Box<dyn KernelTable>,
    tuned: Box<dyn KernelTable>,
) -> Result<(Vec<Series>, Vec<Series>), Failure> {
    drop(backend.replace_kernels(defaults)?);
    // The table not installed; every round after the first swaps it in.
    let mut spare = Some(tuned);
    let mut swap = |backend: &mut GpuBackend| -> Result<(), Failure> {
        let table = spare.take().expect("a table waits");
        spare = Some(backend.replace_kernels(table)?);
        Ok(())
    };
    let [before, after] = alternating(
        backend,
        repeats,
        |backend, round| if round > 0 { swap(backend) } else { Ok(()) },
        |backend| end_to_end(backend, model, n_ctx, 1),
    )?;
    // An even number of rounds ends on the tuned side; with none, it still waits.
    if repeats == 0 {
        swap(backend)?;
    }
    Ok((before, after))
}

/// tg128 with plain and with dependent decode launches, in turn; plain launches stay.
fn launch_modes(
    backend: &mut GpuBackend,
    model: &Model,
    n_ctx: usize,
    repeats: usize,
) -> Result<[Series; 2], Failure> {
    let [plain, dependent] = alternating(
        backend,
        repeats,
        |backend, round| Ok(backend.set_dependent_decode(round % 2 == 1)?),
        |backend| {
            let b: &mut dyn Backend = backend;
            Ok(vec![token_generation(
                b,
                model.hparams.n_vocab,
                128.min(n_ctx),
                1,
            )?])
        },
    )?;
    backend.set_dependent_decode(false)?;
    match (plain.into_iter().next(), dependent.into_iter().next()) {
        (Some(plain), Some(dependent)) => Ok([plain, dependent]),
        _ => Err("no repeats to compare launch modes with".into()),
    }
}

fn print_kernels(report: &TuneReport) {
    println!("| kernel | shape | calls/step | timed pass | default µs | best µs | speedup | candidates | chosen knobs |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    let mut notes = Vec::new();
    for r in &report.results {
        let p = &r.problem;
        let counts = format!(
            "{} timed, {} rejected{} of {}",
            r.timed(),
            r.rejected(),
            if r.complete() {
                ""
            } else {
                " (budget: partial)"
            },
            p.candidates
        );
        for phase in &r.phases {
            let w = &phase.workload;
            let shape = match w.phase {
                crate::codegen::Phase::Decode => format!("decode n=1 pos={}", w.pos0),
                crate::codegen::Phase::Prefill => format!("prefill n={}", w.n_tokens),
            };
            let speedup = if phase.chosen_us > 0.0 {
                phase.default_us / phase.chosen_us
            } else {
                1.0
            };
            println!(
                "| {} | {shape} | {} | {} sites, {:.1} MiB | {:.2} | {:.2} | {speedup:.2}x | {counts} | {} #{} |",
                p.problem,
                w.calls_per_step,
                w.pass.len(),
                w.pass_bytes as f64 / (1 << 20) as f64,
                phase.default_us,
                phase.chosen_us,
                p.knobs(r.chosen),
                r.chosen,
            );
        }
        for (i, o) in r.outcomes.iter().enumerate() {
            if let Outcome::Rejected(reason) = o {
                notes.push(format!(
                    "rejected {} #{i} {}: {reason}",
                    p.problem,
                    phase_label(p, i)
                ));
            }
        }
    }
    for note in notes {
        println!("{note}");
    }
    if !report.not_reached.is_empty() {
        println!(
            "not tuned (budget spent; raise --budget-seconds): {}",
            report.not_reached.join("; ")
        );
    }
    for (problem, reason) in &report.skipped {
        println!("skipped {problem}: {reason}");
    }
}

fn phase_label(p: &crate::tune::problems::ProblemUse, i: usize) -> String {
    let phases: Vec<&str> = p.phases().into_iter().map(phase_name).collect();
    format!("{} [{}]", p.knobs(i), phases.join("+"))
}

fn print_end_to_end(before: &[Series], after: &[Series]) {
    if before.is_empty() {
        return;
    }
    println!("| test | default t/s | tuned t/s | speedup |");
    println!("| --- | ---: | ---: | ---: |");
    for (b, t) in before.iter().zip(after) {
        println!(
            "| {} | {:.2} ± {:.2} | {:.2} ± {:.2} | {:.2}x |",
            b.label,
            b.median(),
            b.spread(),
            t.median(),
            t.spread(),
            t.median() / b.median().max(f64::MIN_POSITIVE)
        );
    }
}
