//! Checking and timing the kernel of one problem with whichever kernel table the backend has
//! installed: the same weights, arena and launch lists the executor runs.
//!
//! Check: the problem's first site runs alone (with the steps fused into it) on seeded random
//! inputs; the values its launches write are read back. Block steps may keep per-layer state (the KV cache), so a decode check first runs
//! the step over positions `0..pos0` with seeded inputs: every candidate sees the same history.
//!
//! Timing: the problem's kernel launches (only those: the rest of each step is the same for
//! every candidate), with the launches a candidate brings along (a decode attention that does
//! not rotate itself runs after rope_store), of a pass over its sites, captured into a graph as
//! decode runs. Sites are
//! taken in program order until their distinct weights exceed twice the L2 cache, so that
//! consecutive sites use different weights (layers) like a real step does; before every timed
//! pass a scratch buffer of twice the L2 size is cleared, so each pass starts from a cold cache.
//! Device events bracket each pass; one warm-up, then repeats up to about `TARGET_MS` of
//! kernel time; the median counts.

use std::sync::Arc;

use super::problems::{group, weight_bytes, ProblemUse};
use crate::backend::gpu::runtime::FunctionHandle;
use crate::backend::gpu::schedule::{enqueue, Launch};
use crate::backend::gpu::{
    DeviceBuffer, Event, GpuBackend, GpuError, GpuRuntime, Graph, Section, StepSite,
};
use crate::codegen::Phase;
use crate::graph::{Fusions, Step, ValueId};
use crate::plan::Model;
use crate::util::rng::Rng;

/// Kernel time the repeats of one timing aim at.
const TARGET_MS: f64 = 30.0;
const MIN_REPEATS: usize = 5;
/// The smallest cache flush, for devices that report no L2 size.
const MIN_FLUSH_BYTES: usize = 8 << 20;
/// What outputs hold before a check runs: a NaN with a payload no kernel writes.
const UNWRITTEN: f32 = f32::from_bits(0x7fc0_a55a);

/// The values a check wrote, with their rows.
pub type Outputs = Vec<(ValueId, Vec<f32>)>;

/// What a problem is checked and timed on in one phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub phase: Phase,
    pub n_tokens: usize,
    /// Position of the first token (decode: after a prompt of this many tokens).
    pub pos0: usize,
    pub check_site: StepSite,
    /// The sites of one timed pass.
    pub pass: Vec<StepSite>,
    /// Distinct weight bytes one pass reads.
    pub pass_bytes: u64,
    /// How many times a full step of the phase launches the kernel.
    pub calls_per_step: usize,
}

/// The token counts a tuning run measures at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Prefill chunk (512, or less for a smaller context).
    pub prefill_tokens: usize,
    /// Decode position: after a prompt of `prefill_tokens` tokens, within the context.
    pub decode_pos: usize,
}

impl Geometry {
    /// 512-token prefill and decode at position 512, as far as `n_ctx` and `max_chunk` allow.
    pub fn for_context(n_ctx: usize, max_chunk: usize) -> Geometry {
        let prefill_tokens = 512.min(max_chunk).min(n_ctx.saturating_sub(1)).max(1);
        Geometry {
            prefill_tokens,
            decode_pos: prefill_tokens.min(n_ctx.saturating_sub(1)),
        }
    }
}

/// The workload of `problem` in `phase`, or None when the phase does not launch it.
pub fn workload(
    model: &Model,
    problem: &ProblemUse,
    phase: Phase,
    geometry: Geometry,
    l2_bytes: u64,
) -> Option<Workload> {
    let sites = problem.sites(phase);
    let check_site = *sites.first()?;
    let mut pass = Vec::new();
    for &site in sites {
        pass.push(site);
        if weight_bytes(model, &pass, phase) > 2 * l2_bytes {
            break;
        }
    }
    let (n_tokens, pos0) = match phase {
        Phase::Decode => (1, geometry.decode_pos),
        Phase::Prefill => (geometry.prefill_tokens, 0),
    };
    Some(Workload {
        phase,
        n_tokens,
        pos0,
        check_site,
        pass_bytes: weight_bytes(model, &pass, phase),
        pass,
        calls_per_step: sites.len(),
    })
}

fn random_tokens(n: usize, n_vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(n_vocab as u64) as u32).collect()
}

/// What the launches at `site` over `n` tokens read and write: the values the group's steps
/// read before any of them writes them, and every value they write.
fn group_values(model: &Model, site: StepSite, n: usize) -> (Vec<ValueId>, Vec<ValueId>) {
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    for step in group_steps(model, site, n) {
        for v in &step.inputs {
            if !outputs.contains(v) && !inputs.contains(v) {
                inputs.push(*v);
            }
        }
        for v in &step.outputs {
            if !outputs.contains(v) {
                outputs.push(*v);
            }
        }
    }
    (inputs, outputs)
}

/// The steps launched together at `site` over `n` tokens (its fusion, or the step alone).
fn group_steps(model: &Model, site: StepSite, n: usize) -> &[Step] {
    let fusions = Fusions::of(&model.program);
    &model.program.section(site.section)[group(model, &fusions, site, Phase::of(n as u32))]
}

/// Runs the launches at `site` alone over `n` tokens at `pos0` on inputs drawn from `seed`,
/// every output first filled with `UNWRITTEN`. Returns the outputs.
fn run_seeded(
    backend: &mut GpuBackend,
    model: &Model,
    site: StepSite,
    n: usize,
    pos0: usize,
    seed: u64,
) -> Result<Vec<ValueId>, GpuError> {
    let (inputs, outputs) = group_values(model, site, n);
    // Outputs first: a value computed in place is also an input and gets its input data.
    for &value in &outputs {
        let width = backend.arena_layout().widths[value];
        backend.set_value_rows(value, &vec![UNWRITTEN; n * width])?;
    }
    let mut rng = Rng::new(seed);
    for value in inputs {
        let width = backend.arena_layout().widths[value];
        let data: Vec<f32> = (0..n * width).map(|_| rng.uniform(-1.0, 1.0)).collect();
        backend.set_value_rows(value, &data)?;
    }
    let tokens = random_tokens(n, model.hparams.n_vocab, seed ^ 0x746f6b656e73);
    backend.run_single_step(site, &tokens, pos0)?;
    Ok(outputs)
}

/// The values of `steps` (a group launched together) that the launches must leave right: each
/// written value that no step after its last write reads. A fused kernel need not write the
/// others (nothing outside its run reads them, see `graph::fuse`), and one computed in place,
/// like a rotated q, may keep its input data there.
pub fn live_outputs(steps: &[Step]) -> Vec<ValueId> {
    let mut live = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        for &v in &step.outputs {
            let rewritten = steps[i + 1..].iter().any(|s| s.outputs.contains(&v));
            let read_later = steps[i + 1..].iter().any(|s| s.inputs.contains(&v));
            if !rewritten && !read_later && !live.contains(&v) {
                live.push(v);
            }
        }
    }
    live
}

/// The live outputs (`live_outputs`) of the launches of the workload's check site, with the
/// installed kernels; one a kernel leaves unwritten (still all `UNWRITTEN`) is left out. Leaves
/// the I/O block (tokens, position) set for a timing of `w`.
pub fn check_outputs(
    backend: &mut GpuBackend,
    model: &Model,
    w: &Workload,
) -> Result<Outputs, GpuError> {
    let site = w.check_site;
    if w.pos0 > 0 && site.section == Section::Block {
        run_seeded(backend, model, site, w.pos0, 0, 0x68697374)?;
    }
    let live = live_outputs(group_steps(model, site, w.n_tokens));
    let mut written = Vec::new();
    for value in run_seeded(backend, model, site, w.n_tokens, w.pos0, 0x636865636b)? {
        if !live.contains(&value) {
            continue;
        }
        let rows = backend.value_rows(value, w.n_tokens)?;
        if !rows.iter().all(|v| v.to_bits() == UNWRITTEN.to_bits()) {
            written.push((value, rows));
        }
    }
    Ok(written)
}

/// How far a candidate's outputs are from the default's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Difference {
    /// Normalized mean squared error: sum of squared differences over sum of squared
    /// reference values.
    pub nmse: f64,
    /// Largest absolute difference over the reference's largest magnitude: catches a few
    /// wrong rows that an average would hide.
    pub max_relative: f64,
}

/// The difference of `got` from `want` over every value `want` has; infinite for a missing
/// value, a length mismatch or a non-finite number.
pub fn difference(got: &Outputs, want: &Outputs) -> Difference {
    let infinite = Difference {
        nmse: f64::INFINITY,
        max_relative: f64::INFINITY,
    };
    let (mut err, mut norm, mut diff, mut scale) = (0f64, 0f64, 0f64, 0f64);
    for (value, w) in want {
        let Some((_, g)) = got.iter().find(|(v, _)| v == value) else {
            return infinite;
        };
        if g.len() != w.len() {
            return infinite;
        }
        for (&g, &w) in g.iter().zip(w) {
            let d = (g as f64 - w as f64).abs();
            if !d.is_finite() {
                return infinite;
            }
            err += d * d;
            norm += (w as f64) * (w as f64);
            diff = diff.max(d);
            scale = scale.max((w as f64).abs());
        }
    }
    let relative = |num: f64, den: f64| match (num == 0.0, den == 0.0) {
        (true, _) => 0.0,
        (false, true) => f64::INFINITY,
        (false, false) => num / den,
    };
    Difference {
        nmse: relative(err, norm),
        max_relative: relative(diff, scale),
    }
}

/// A scratch buffer cleared before each timed pass to evict the weights from the L2 cache.
pub struct CacheFlush {
    buffer: DeviceBuffer<u8>,
}

impl CacheFlush {
    pub fn new(runtime: &Arc<dyn GpuRuntime>) -> Result<CacheFlush, GpuError> {
        let bytes = (2 * runtime.info().l2_cache_bytes as usize).max(MIN_FLUSH_BYTES);
        Ok(CacheFlush {
            buffer: DeviceBuffer::alloc(runtime, bytes)?,
        })
    }

    fn run(&self, runtime: &dyn GpuRuntime) -> Result<(), GpuError> {
        // SAFETY: the range is exactly the scratch buffer, alive as long as `self`.
        unsafe { runtime.memset_zero(self.buffer.ptr(), self.buffer.bytes())? };
        Ok(())
    }
}

/// One timing of a problem's kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Median microseconds per kernel call.
    pub us_per_call: f64,
    pub repeats: usize,
    /// Stopped after the first timed pass: slower than the cut-off.
    pub cut_short: bool,
}

/// Times the launches of `functions` in a pass over the workload's sites (run `check_outputs`
/// for `w` first: it sets the I/O block), per launch of the first (the problem's kernel; the
/// others are launched with it). Passes slower than `cutoff_us` per call stop after one
/// timing. None when no launch of the pass uses the first.
pub fn time_kernel(
    backend: &GpuBackend,
    w: &Workload,
    functions: &[FunctionHandle],
    flush: &CacheFlush,
    max_repeats: usize,
    cutoff_us: Option<f64>,
) -> Result<Option<Timing>, GpuError> {
    let launched = |l: &Launch, among: &[FunctionHandle]| matches!(l, Launch::Kernel { function, .. } if among.contains(function));
    let mut launches = Vec::new();
    for &site in &w.pass {
        let step = backend.step_launches(site, w.n_tokens)?;
        launches.extend(step.into_iter().filter(|l| launched(l, functions)));
    }
    let calls = launches
        .iter()
        .filter(|l| launched(l, &functions[..functions.len().min(1)]))
        .count() as f64;
    if calls == 0.0 {
        return Ok(None);
    }
    let runtime = backend.runtime().clone();
    let graph = Graph::capture(&runtime, || -> Result<(), GpuError> {
        // SAFETY: the launches come from the backend's own schedule (its live weights, arena
        // and I/O block) with functions of the kernel table it has installed; the graph is
        // dropped at the end of this function, before any other table can be installed.
        unsafe { enqueue(runtime.as_ref(), &launches)? };
        Ok(())
    })?;
    let start = Event::new(&runtime)?;
    let end = Event::new(&runtime)?;
    let once = || -> Result<f64, GpuError> {
        flush.run(runtime.as_ref())?;
        start.record()?;
        // SAFETY: as for the capture: every captured address is still allocated.
        unsafe { graph.launch()? };
        end.record()?;
        Ok(start.elapsed_ms(&end)? as f64 * 1e3 / calls)
    };
    once()?;
    let first = once()?;
    if cutoff_us.is_some_and(|cut| first > cut) {
        return Ok(Some(Timing {
            us_per_call: first,
            repeats: 1,
            cut_short: true,
        }));
    }
    let pass_ms = first * calls / 1e3;
    let wanted = (TARGET_MS / pass_ms.max(1e-3)).ceil() as usize;
    let repeats = wanted.clamp(MIN_REPEATS, max_repeats.max(MIN_REPEATS));
    let mut samples = vec![first];
    for _ in 1..repeats {
        samples.push(once()?);
    }
    samples.sort_by(f64::total_cmp);
    Ok(Some(Timing {
        us_per_call: samples[samples.len() / 2],
        repeats,
        cut_short: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Op;

    fn outputs(values: &[&[f32]]) -> Outputs {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i, v.to_vec()))
            .collect()
    }

    #[test]
    fn differences_are_relative_to_the_reference_scale() {
        let want = outputs(&[&[1.0, -4.0], &[2.0]]);
        let same = difference(&want, &want);
        assert_eq!((same.nmse, same.max_relative), (0.0, 0.0));
        let d = difference(&outputs(&[&[1.0, -4.0], &[2.004]]), &want);
        assert!((d.max_relative - 0.001).abs() < 1e-6, "{d:?}");
        assert!((d.nmse - 0.004f64.powi(2) / 21.0).abs() < 1e-9, "{d:?}");
    }

    #[test]
    fn one_wrong_row_in_many_shows_in_the_largest_difference() {
        let mut got: Vec<f32> = (0..10_000).map(|i| (i % 7) as f32 - 3.0).collect();
        let want = outputs(&[&got]);
        got[1234] += 3.0;
        let d = difference(&outputs(&[&got]), &want);
        assert!(d.nmse < 1e-3 && d.max_relative > 0.5, "{d:?}");
    }

    #[test]
    fn non_finite_missing_or_misshapen_outputs_are_infinitely_different() {
        let want = outputs(&[&[1.0, 2.0]]);
        for got in [
            outputs(&[&[1.0, f32::NAN]]),
            outputs(&[&[1.0, f32::INFINITY]]),
            outputs(&[&[1.0]]),
            vec![(7, vec![1.0, 2.0])],
        ] {
            let d = difference(&got, &want);
            assert_eq!(d.nmse, f64::INFINITY, "{got:?}");
        }
        let zero = outputs(&[&[0.0]]);
        assert_eq!(difference(&outputs(&[&[0.5]]), &zero).nmse, f64::INFINITY);
        assert_eq!(difference(&zero, &zero).nmse, 0.0);
        // Values the candidate writes beyond the default's are not compared.
        let more = vec![(0, vec![1.0, 2.0]), (1, vec![9.0])];
        assert_eq!(difference(&more, &want).nmse, 0.0);
    }

    fn step(op: Op, inputs: &[usize], outputs: &[usize]) -> Step {
        Step {
            op,
            inputs: inputs.to_vec(),
            weights: Vec::new(),
            outputs: outputs.to_vec(),
            params: Vec::new(),
            name: op.name().to_string(),
        }
    }

    #[test]
    fn only_values_no_later_step_of_the_group_reads_are_compared() {
        // q = rope(q); k = rope(k); a = attention(q, k, v): the rotated q and k (in place) are
        // the fused kernel's business, the attention output is what must match.
        let rope_attention = [
            step(Op::Rope, &[2], &[2]),
            step(Op::Rope, &[3], &[3]),
            step(Op::Attention, &[2, 3, 4], &[5]),
        ];
        assert_eq!(live_outputs(&rope_attention), vec![5]);
        // h = rmsnorm(x); q, k, v = matmuls of h: all three projections are live.
        let qkv = [
            step(Op::RmsNorm, &[0], &[1]),
            step(Op::Matmul, &[1], &[2]),
            step(Op::Matmul, &[1], &[3]),
            step(Op::Matmul, &[1], &[4]),
        ];
        assert_eq!(live_outputs(&qkv), vec![2, 3, 4]);
        // o = matmul(a); x = add(x, o): the residual stream, written last, is live.
        let residual = [step(Op::Matmul, &[5], &[6]), step(Op::Add, &[0, 6], &[0])];
        assert_eq!(live_outputs(&residual), vec![0]);
    }

    #[test]
    fn geometry_fits_the_context() {
        let g = Geometry::for_context(4096, 512);
        assert_eq!((g.prefill_tokens, g.decode_pos), (512, 512));
        let g = Geometry::for_context(300, 300);
        assert_eq!((g.prefill_tokens, g.decode_pos), (299, 299));
    }
}
