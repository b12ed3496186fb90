//! Sampler behaviour against its definition (llama.cpp's sampler semantics), with expected
//! outcomes worked out by hand from the logits in each test.

use rocmforge::sample::{argmax, Sampler, SamplerConfig};
use rocmforge::util::rng::Rng;

fn random_logits(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.normal() * 3.0).collect()
}

/// Only the given knobs on: no top-k/top-p/min-p, no penalties.
fn plain(temperature: f32, seed: u64) -> SamplerConfig {
    SamplerConfig {
        temperature,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
        seed,
    }
}

fn frequencies(cfg: SamplerConfig, logits: &[f32], draws: usize) -> Vec<f64> {
    let mut sampler = Sampler::new(cfg);
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..draws {
        let mut l = logits.to_vec();
        counts[sampler.sample(&mut l, &[]) as usize] += 1;
    }
    counts.iter().map(|&c| c as f64 / draws as f64).collect()
}

#[test]
fn greedy_picks_the_largest_logit() {
    let mut rng = Rng::new(1);
    let mut sampler = Sampler::new(SamplerConfig::greedy());
    for _ in 0..50 {
        let logits = random_logits(&mut rng, 1000);
        let best = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32;
        assert_eq!(sampler.sample(&mut logits.clone(), &[]), best);
    }
    assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1, "first of equal maxima");
}

#[test]
fn top_k_one_equals_greedy_at_any_temperature() {
    let mut rng = Rng::new(2);
    for seed in 0..20 {
        let cfg = SamplerConfig {
            top_k: 1,
            temperature: 1.5,
            seed,
            ..SamplerConfig::default()
        };
        let mut sampler = Sampler::new(cfg);
        let logits = random_logits(&mut rng, 500);
        assert_eq!(sampler.sample(&mut logits.clone(), &[]), argmax(&logits));
    }
}

#[test]
fn repeat_penalty_divides_positive_and_multiplies_negative_logits() {
    let cfg = SamplerConfig {
        repeat_penalty: 1.5,
        ..SamplerConfig::greedy()
    };
    // Positive: 2.0 / 1.5 = 1.33 falls below 1.9.
    let mut logits = vec![2.0, 1.9, -1.0];
    assert_eq!(Sampler::new(cfg.clone()).sample(&mut logits, &[0]), 1);
    assert!((logits[0] - 2.0 / 1.5).abs() < 1e-6);
    assert_eq!(logits[1], 1.9, "tokens not in the history are untouched");
    // Negative: -1.0 * 1.5 = -1.5 falls below -1.2.
    let mut logits = vec![-1.0, -1.2];
    assert_eq!(Sampler::new(cfg.clone()).sample(&mut logits, &[0]), 1);
    assert!((logits[0] + 1.5).abs() < 1e-6);
    // Counted once however often the token repeats.
    let mut logits = vec![2.0, 1.0];
    Sampler::new(cfg).sample(&mut logits, &[0, 0, 0]);
    assert!((logits[0] - 2.0 / 1.5).abs() < 1e-6);
}

#[test]
fn presence_and_frequency_penalties_subtract() {
    let history = [0, 0, 2];
    // frequency: 1.0 - 2 * 0.2 = 0.6 still beats 0.5; with 0.3 it is 0.4 and loses.
    let freq = |f: f32| SamplerConfig {
        frequency_penalty: f,
        ..SamplerConfig::greedy()
    };
    assert_eq!(
        Sampler::new(freq(0.2)).sample(&mut [1.0, 0.5, 0.0], &history),
        0
    );
    assert_eq!(
        Sampler::new(freq(0.3)).sample(&mut [1.0, 0.5, 0.0], &history),
        1
    );
    // presence: subtracted once: 1.0 - 0.6 = 0.4 < 0.5.
    let presence = SamplerConfig {
        presence_penalty: 0.6,
        ..SamplerConfig::greedy()
    };
    let mut logits = vec![1.0, 0.5, 0.0];
    assert_eq!(Sampler::new(presence).sample(&mut logits, &history), 1);
    assert!((logits[0] - 0.4).abs() < 1e-6 && (logits[2] + 0.6).abs() < 1e-6);
}

#[test]
fn penalties_only_look_at_the_last_n_tokens() {
    let cfg = SamplerConfig {
        repeat_penalty: 4.0,
        repeat_last_n: 2,
        ..SamplerConfig::greedy()
    };
    // Token 0 is three tokens back: outside the window, so it keeps 2.0 and wins.
    let mut logits = vec![2.0, 1.0, 0.0];
    assert_eq!(Sampler::new(cfg.clone()).sample(&mut logits, &[0, 2, 2]), 0);
    assert_eq!(logits[0], 2.0);
    // Inside the window it drops to 0.5 and loses to token 1.
    let mut logits = vec![2.0, 1.0, 0.0];
    assert_eq!(Sampler::new(cfg).sample(&mut logits, &[2, 2, 0]), 1);
}

#[test]
fn same_seed_same_tokens_and_other_seeds_differ() {
    let mut rng = Rng::new(3);
    let logits: Vec<Vec<f32>> = (0..200).map(|_| random_logits(&mut rng, 64)).collect();
    let run = |seed| {
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            seed,
            ..SamplerConfig::default()
        });
        let mut history = Vec::new();
        for l in &logits {
            let t = s.sample(&mut l.clone(), &history);
            history.push(t);
        }
        history
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

/// Logits whose softmax is `p` (p sums to 1).
fn log_probs(p: &[f64]) -> Vec<f32> {
    p.iter().map(|x| x.ln() as f32).collect()
}

#[test]
fn draws_follow_the_softmax() {
    let p = [0.5f64, 0.3, 0.2];
    let logits = log_probs(&p);
    let freq = frequencies(plain(1.0, 7), &logits, 40_000);
    for (f, want) in freq.iter().zip(p) {
        // Standard error is below 0.0025 here; 0.015 is six of them.
        assert!((f - want).abs() < 0.015, "{freq:?} vs {p:?}");
    }
}

#[test]
fn temperature_sharpens_and_flattens() {
    let logits = log_probs(&[0.5, 0.3, 0.2]);
    // T = 0.5 squares the probabilities: 0.25, 0.09, 0.04 -> 0.658, 0.237, 0.105.
    let cold = frequencies(plain(0.5, 8), &logits, 40_000);
    assert!((cold[0] - 0.658).abs() < 0.015, "{cold:?}");
    // T = 2 takes square roots: 0.707, 0.548, 0.447 -> 0.416, 0.322, 0.263.
    let hot = frequencies(plain(2.0, 9), &logits, 40_000);
    assert!(
        (hot[0] - 0.416).abs() < 0.015 && (hot[2] - 0.263).abs() < 0.015,
        "{hot:?}"
    );
}

#[test]
fn top_p_keeps_the_smallest_set_reaching_p() {
    let logits = log_probs(&[0.5, 0.3, 0.15, 0.05]);
    // 0.5 < 0.7 <= 0.5 + 0.3: tokens 0 and 1 remain, renormalized to 0.625 / 0.375.
    let freq = frequencies(
        SamplerConfig {
            top_p: 0.7,
            ..plain(1.0, 10)
        },
        &logits,
        40_000,
    );
    assert_eq!(freq[2] + freq[3], 0.0, "{freq:?}");
    assert!((freq[0] - 0.625).abs() < 0.015, "{freq:?}");
}

#[test]
fn min_p_drops_tokens_below_a_fraction_of_the_best() {
    let logits = log_probs(&[0.5, 0.3, 0.15, 0.05]);
    // min_p 0.35: keep p >= 0.175, so tokens 0 and 1.
    let freq = frequencies(
        SamplerConfig {
            min_p: 0.35,
            ..plain(1.0, 11)
        },
        &logits,
        20_000,
    );
    assert_eq!(freq[2] + freq[3], 0.0, "{freq:?}");
    assert!((freq[0] - 0.625).abs() < 0.02, "{freq:?}");
}

#[test]
fn top_k_keeps_the_k_most_likely() {
    let logits = log_probs(&[0.1, 0.4, 0.2, 0.3]);
    let freq = frequencies(
        SamplerConfig {
            top_k: 2,
            ..plain(1.0, 12)
        },
        &logits,
        20_000,
    );
    assert_eq!(freq[0] + freq[2], 0.0, "{freq:?}");
    assert!((freq[1] - 4.0 / 7.0).abs() < 0.02, "{freq:?}");
}

#[test]
fn nan_and_infinite_logits_are_harmless() {
    let mut s = Sampler::new(plain(1.0, 13));
    for _ in 0..100 {
        let mut logits = vec![f32::NAN, f32::NEG_INFINITY, 0.0, f32::NAN];
        assert_eq!(s.sample(&mut logits, &[]), 2);
    }
    let mut greedy = Sampler::new(SamplerConfig::greedy());
    assert_eq!(greedy.sample(&mut [f32::NAN, 1.0], &[]), 1);
}
