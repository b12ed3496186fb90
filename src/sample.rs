//! Choosing the next token from logits, with llama.cpp's sampler semantics and order:
//! penalties, then top-k, top-p, min-p (all on the raw logits), then temperature and a draw.
//! Temperature 0 (or below) is greedy argmax after penalties.

use std::collections::HashMap;

use crate::util::rng::Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// 0 = greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1 = off.
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one; 0 = off.
    pub min_p: f32,
    /// Divides positive logits and multiplies negative ones of recent tokens; 1 = off.
    pub repeat_penalty: f32,
    /// How many of the latest tokens the penalties look at; 0 = none.
    pub repeat_last_n: usize,
    /// Subtracted once from the logit of every recent token; 0 = off.
    pub presence_penalty: f32,
    /// Subtracted per occurrence from the logit of recent tokens; 0 = off.
    pub frequency_penalty: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// llama.cpp's defaults (`common_params_sampling`), with a fixed seed.
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            ..SamplerConfig::default()
        }
    }

    /// Plain greedy decoding: the argmax of the raw logits, which a backend can take itself.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 && !self.has_penalties()
    }

    fn has_penalties(&self) -> bool {
        self.repeat_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.presence_penalty != 0.0
                || self.frequency_penalty != 0.0)
    }
}

pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
    /// Reused between calls: (token, logit) candidates.
    candidates: Vec<(u32, f32)>,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Sampler {
        let rng = Rng::new(config.seed);
        Sampler {
            config,
            rng,
            candidates: Vec::new(),
        }
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Picks the next token. `logits` (one per vocabulary entry, not empty) get the penalties
    /// applied in place; `history` is the sequence so far, most recent last. NaN logits never win.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        assert!(!logits.is_empty(), "sampling needs at least one logit");
        for l in logits.iter_mut().filter(|l| l.is_nan()) {
            *l = f32::NEG_INFINITY;
        }
        if self.config.has_penalties() {
            apply_penalties(&self.config, logits, history);
        }
        if self.config.temperature <= 0.0 {
            return argmax(logits);
        }
        self.fill_candidates(logits);
        let cfg = &self.config;
        let c = &mut self.candidates;
        if cfg.top_k > 0 && cfg.top_k < c.len() {
            c.select_nth_unstable_by(cfg.top_k - 1, |a, b| b.1.total_cmp(&a.1));
            c.truncate(cfg.top_k);
        }
        let max = c.iter().map(|x| x.1).fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return argmax(logits);
        }
        // Probabilities for top-p are normalized over every candidate left by top-k; min-p only
        // ever keeps a prefix of the sorted order, so it can cut the list before sorting.
        let total: f64 = c.iter().map(|x| ((x.1 - max) as f64).exp()).sum();
        if cfg.min_p > 0.0 {
            let floor = max + cfg.min_p.ln();
            c.retain(|x| x.1 >= floor);
        }
        if cfg.top_p < 1.0 {
            c.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut cum = 0.0f64;
            let mut keep = c.len();
            for (i, x) in c.iter().enumerate() {
                cum += ((x.1 - max) as f64).exp() / total;
                if cum >= cfg.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep);
        }
        let inv_t = 1.0 / cfg.temperature as f64;
        let weights: Vec<f64> = c
            .iter()
            .map(|x| (((x.1 - max) as f64) * inv_t).exp())
            .collect();
        let sum: f64 = weights.iter().sum();
        let mut r = self.rng.next_f32() as f64 * sum;
        for (x, w) in c.iter().zip(&weights) {
            if r < *w {
                return x.0;
            }
            r -= w;
        }
        // Rounding left r at the very top: the last candidate with weight takes it.
        c.iter()
            .zip(&weights)
            .rev()
            .find(|(_, w)| **w > 0.0)
            .map_or(c[0].0, |(x, _)| x.0)
    }

    fn fill_candidates(&mut self, logits: &[f32]) {
        self.candidates.clear();
        self.candidates.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, l)| **l > f32::NEG_INFINITY)
                .map(|(i, &l)| (i as u32, l)),
        );
    }
}

/// Index of the largest logit; the first one on ties.
pub fn argmax(logits: &[f32]) -> u32 {
    crate::backend::cpu::ops::argmax(logits) as u32
}

/// llama.cpp's `penalties` sampler over the last `repeat_last_n` tokens of `history`.
fn apply_penalties(cfg: &SamplerConfig, logits: &mut [f32], history: &[u32]) {
    let window = &history[history.len().saturating_sub(cfg.repeat_last_n)..];
    let mut counts: HashMap<u32, u32> = HashMap::new();
    for &t in window {
        *counts.entry(t).or_default() += 1;
    }
    for (&t, &count) in &counts {
        let Some(l) = logits.get_mut(t as usize) else {
            continue;
        };
        if *l <= 0.0 {
            *l *= cfg.repeat_penalty;
        } else {
            *l /= cfg.repeat_penalty;
        }
        *l -= count as f32 * cfg.frequency_penalty + cfg.presence_penalty;
    }
}
