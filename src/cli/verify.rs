//! `rocmforge verify`: the model on a GPU against the CPU reference, end to end. Logits at every
//! position of a prompt, then greedy generations side by side. A user adding a plan runs this on
//! their GPU; the project runs it on every model shape it supports.

use super::run::ModelArgs;
use crate::backend::cpu::ops::argmax;
use crate::backend::gpu::open_backend_tuned;
use crate::backend::{open_backend, Backend};
use crate::gguf::GgufFile;
use crate::plan::{bind, Plan};
use crate::util::rng::Rng;
use clap::Args;
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt length (random tokens) for the logits comparison
    #[arg(long, default_value_t = 64)]
    pub prompt_tokens: usize,
    /// Greedy tokens generated on both backends
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Required share of positions with the same top-1
    #[arg(long, default_value_t = 0.99)]
    pub min_top1: f64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Generated ids and, per step, the logits they were chosen from.
type Generated = (Vec<u32>, Vec<Vec<f32>>);

/// Whether the top logit `top` leads the runner-up by a gap within 1% of it (at least 0.01): a
/// near-tie, which summation orders and the GPU's int8 activations may turn either way.
fn near_tie(top: f32, gap: f32) -> bool {
    gap.abs() < 1e-2 * top.abs().max(1.0)
}

/// Top-1 agreement of GPU logits with the CPU's, position by position, and their distance.
struct Agreement {
    positions: usize,
    same: usize,
    ties: usize,
    max_diff: f32,
    mean_diff: f64,
}

impl Agreement {
    fn of<'a>(pairs: impl Iterator<Item = (&'a [f32], &'a [f32])>) -> Agreement {
        let (mut positions, mut same, mut ties, mut max_diff, mut sum, mut n) =
            (0, 0, 0, 0f32, 0f64, 0usize);
        for (rg, rc) in pairs {
            positions += 1;
            let (ag, ac) = (argmax(rg), argmax(rc));
            if ag == ac {
                same += 1;
            } else if near_tie(rc[ac], rc[ac] - rc[ag]) {
                ties += 1;
            }
            for (x, y) in rg.iter().zip(rc) {
                let d = (x - y).abs();
                max_diff = max_diff.max(if d.is_nan() { f32::INFINITY } else { d });
                sum += d as f64;
            }
            n += rc.len();
        }
        Agreement {
            positions,
            same,
            ties,
            max_diff,
            mean_diff: sum / n.max(1) as f64,
        }
    }

    /// Equal top-1 or a near-tie of the CPU's, as a share of the positions.
    fn rate(&self) -> f64 {
        (self.same + self.ties) as f64 / self.positions.max(1) as f64
    }

    fn describe(&self) -> String {
        format!(
            "top-1 equal {}/{} ({:.1}%), {} of the others near-ties; |diff| max {:.4} mean {:.5}",
            self.same,
            self.positions,
            100.0 * self.rate(),
            self.ties,
            self.max_diff,
            self.mean_diff
        )
    }
}

/// `steps` tokens after `prompt` on `b`: each its argmax, or `forced[i]` where given (so that two
/// backends see the same context), with the logits at every step.
fn generate(
    b: &mut dyn Backend,
    prompt: &[u32],
    steps: usize,
    forced: Option<&[u32]>,
) -> Result<Generated, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    let mut logits = Vec::new();
    let mut l = b.forward(prompt, 0, false)?;
    for (i, pos) in (prompt.len()..prompt.len() + steps).enumerate() {
        let t = forced.map_or_else(|| argmax(&l) as u32, |f| f[i]);
        out.push(t);
        logits.push(l);
        l = b.forward(&[t], pos, false)?;
    }
    Ok((out, logits))
}

pub fn run(a: &VerifyArgs) -> Result<(), Box<dyn std::error::Error>> {
    let file = Arc::new(GgufFile::open(&a.model.gguf)?);
    let plan = Plan::resolve(a.model.arch.as_deref(), &file)?;
    let model = Arc::new(bind(&plan, file)?);
    let n_ctx = a.prompt_tokens + a.gen_tokens + 1;
    let mut gpu = open_backend_tuned(&a.model.device, model.clone(), n_ctx, a.model.tuning())?;
    let mut cpu = open_backend("cpu", model.clone(), n_ctx)?;
    let n_vocab = model.hparams.n_vocab;
    let mut rng = Rng::new(a.seed);
    let prompt: Vec<u32> = (0..a.prompt_tokens)
        .map(|_| rng.below(n_vocab as u64) as u32)
        .collect();

    let lg = gpu.forward(&prompt, 0, true)?;
    let lc = cpu.forward(&prompt, 0, true)?;
    let prefill = Agreement::of(lg.chunks_exact(n_vocab).zip(lc.chunks_exact(n_vocab)));
    println!(
        "{}: logits over {} positions: {}",
        gpu.name(),
        prompt.len(),
        prefill.describe()
    );

    // Greedy generation from the same prompt on both; report the first divergence and whether
    // the CPU saw a near-tie there. The GPU generates as `run` does: each argmax taken and fed
    // back on the device.
    let mut tg = Vec::new();
    if a.gen_tokens > 0 {
        let first = gpu.forward_argmax(&prompt, 0)?;
        tg.push(first);
        gpu.greedy_run(first, prompt.len(), a.gen_tokens - 1, &mut |t| {
            tg.push(t);
            true
        })?;
    }
    // Each backend's logits along the CPU's greedy tokens (the same context on both): decode
    // steps compared one by one, as the prompt's positions are above.
    let (tc, lcs) = generate(cpu.as_mut(), &prompt, a.gen_tokens, None)?;
    let (_, lgs) = generate(gpu.as_mut(), &prompt, a.gen_tokens, Some(&tc))?;
    let decode = Agreement::of(lgs.iter().zip(&lcs).map(|(g, c)| (&g[..], &c[..])));
    if a.gen_tokens > 0 {
        println!(
            "decode logits over {} steps (both fed the CPU's tokens): {}",
            a.gen_tokens,
            decode.describe()
        );
    }
    let identical = tg == tc;
    let divergence = tg.iter().zip(&tc).position(|(x, y)| x != y);
    // A divergence at a near-tie of the CPU's logits (the rule of the logits above) may go
    // either way under the GPU's int8 activations and f16 caches; the tokens after it differ.
    let tie_at = |i: usize| {
        let l = &lcs[i];
        let gap = l[tc[i] as usize] - l[tg[i] as usize];
        (gap, near_tie(l[tc[i] as usize], gap))
    };
    match divergence {
        None => println!("greedy {} tokens: identical", a.gen_tokens),
        Some(i) => {
            let (gap, tie) = tie_at(i);
            println!(
                "greedy {} tokens: first divergence at token {i}: cpu {} vs gpu {}, cpu logit gap {gap:.4} ({})",
                a.gen_tokens,
                tc[i],
                tg[i],
                if tie { "a near-tie" } else { "NOT a near-tie" }
            );
        }
    }
    let diverged_badly = divergence.is_some_and(|i| !tie_at(i).1);
    let worst = prefill
        .rate()
        .min(if a.gen_tokens > 0 { decode.rate() } else { 1.0 });
    if worst < a.min_top1
        || diverged_badly
        || !prefill.max_diff.is_finite()
        || !decode.max_diff.is_finite()
    {
        return Err(format!(
            "verify failed: top-1 {:.3} at the prompt, {:.3} in decode (need {}), generation identical: {identical}",
            prefill.rate(),
            decode.rate(),
            a.min_top1
        )
        .into());
    }
    println!("verify: ok");
    Ok(())
}
