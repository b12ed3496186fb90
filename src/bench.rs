//! llama-bench-style measurements of a backend: prompt processing (pp) and token generation
//! (tg) throughput, medians of repeats, and the decode roofline.

use crate::backend::{Backend, BackendError};
use crate::plan::Model;
use crate::util::rng::Rng;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    /// tokens per second, one per repeat
    pub samples: Vec<f64>,
}

impl Series {
    pub fn median(&self) -> f64 {
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// Half the range, as llama-bench's ± column gives the spread.
    pub fn spread(&self) -> f64 {
        let max = self.samples.iter().cloned().fold(f64::MIN, f64::max);
        let min = self.samples.iter().cloned().fold(f64::MAX, f64::min);
        if self.samples.is_empty() {
            0.0
        } else {
            (max - min) / 2.0
        }
    }
}

fn random_tokens(n: usize, n_vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(n_vocab as u64) as u32).collect()
}

/// Prefill of `n` tokens from an empty cache, `repeats` times (after one warm-up).
pub fn prompt_processing(
    b: &mut dyn Backend,
    n_vocab: usize,
    n: usize,
    repeats: usize,
) -> Result<Series, BackendError> {
    let tokens = random_tokens(n, n_vocab, 1);
    b.forward(&tokens, 0, false)?;
    let mut samples = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        b.forward(&tokens, 0, false)?;
        samples.push(n as f64 / t.elapsed().as_secs_f64());
    }
    Ok(Series {
        label: format!("pp{n}"),
        samples,
    })
}

/// Greedy generation of `n` tokens from an empty cache, each fed back as the next input (as
/// `run` generates: `Backend::greedy_run`), `repeats` times.
pub fn token_generation(
    b: &mut dyn Backend,
    n_vocab: usize,
    n: usize,
    repeats: usize,
) -> Result<Series, BackendError> {
    let first = random_tokens(1, n_vocab, 2)[0];
    let run = |b: &mut dyn Backend| -> Result<f64, BackendError> {
        let mut made = 0;
        let t = Instant::now();
        b.greedy_run(first, 0, n, &mut |_| {
            made += 1;
            true
        })?;
        let secs = t.elapsed().as_secs_f64();
        if made != n {
            return Err(BackendError::Device(format!(
                "a greedy run of {n} tokens made {made}"
            )));
        }
        Ok(n as f64 / secs)
    };
    run(b)?;
    let samples = (0..repeats).map(|_| run(b)).collect::<Result<_, _>>()?;
    Ok(Series {
        label: format!("tg{n}"),
        samples,
    })
}

/// Bytes one decode step must read at the least: every projection and norm weight once (a
/// tied embedding counts once, as the output projection), plus one embedding row.
pub fn decode_bytes(model: &Model) -> u64 {
    let embd = model.weight(None, "token_embd");
    let row = embd.map_or(0, |t| {
        t.n_bytes / t.dims.get(1).copied().unwrap_or(1).max(1)
    });
    let tied_embd_is_output = model
        .weight(None, "output")
        .zip(embd)
        .is_some_and(|(o, e)| o.name == e.name);
    let others: u64 = model
        .bound_tensors()
        .iter()
        .filter(|t| embd.is_none_or(|e| e.name != t.name) || tied_embd_is_output)
        .map(|t| t.n_bytes)
        .sum();
    others + row
}
