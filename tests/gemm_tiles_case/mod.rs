//! A prefill GEMM problem for the matrix-tile kernel (`matmul_gemm_tiles`) and its oracle: the
//! product of the f16-rounded dequantized weights and activations (what tensor cores multiply)
//! summed in f64, plus the bias. Shared by the host-simulated and the GPU tests of every tuning
//! candidate.
#![allow(dead_code)]

use half::f16;
use rocmforge::gguf::{dequant, quantize, GgmlType};
use rocmforge::util::rng::Rng;

/// The kernel's ABI: W, x, out, bias, n_tokens.
pub struct Case {
    pub format: GgmlType,
    pub k: usize,
    pub n: usize,
    pub tokens: usize,
    pub weights: Vec<u8>,
    pub x: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Case {
    pub fn new(rng: &mut Rng, format: GgmlType, k: usize, n: usize, tokens: usize) -> Case {
        Case {
            format,
            k,
            n,
            tokens,
            weights: quantize::random_blocks(format, k * n, rng, 1.0),
            x: (0..k * tokens).map(|_| rng.normal()).collect(),
            bias: (0..n).map(|_| rng.normal()).collect(),
        }
    }

    /// out[t][n] = sum_k f16(w[n][k]) * f16(x[t][k]) + bias[n].
    pub fn expected(&self) -> Vec<f32> {
        let round = |v: f32| f16::from_f32(v).to_f64();
        let w: Vec<f64> = dequant::dequantize_to_vec(self.format, &self.weights, self.k * self.n)
            .unwrap()
            .into_iter()
            .map(round)
            .collect();
        let x: Vec<f64> = self.x.iter().copied().map(round).collect();
        let mut out = vec![0f32; self.tokens * self.n];
        for t in 0..self.tokens {
            let xs = &x[t * self.k..(t + 1) * self.k];
            for n in 0..self.n {
                let row = &w[n * self.k..(n + 1) * self.k];
                let dot: f64 = row.iter().zip(xs).map(|(a, b)| a * b).sum();
                out[t * self.n + n] = (dot + self.bias[n] as f64) as f32;
            }
        }
        out
    }
}
