//! A prefill GEMM problem for the matrix-tile kernel (`matmul_gemm_tiles`) and its oracles: the
//! dequantized weights times the activations as the kernel's matrix units take them (f16
//! rounded; or, for the int8 variant, x quantized per 32-value block as llama.cpp's q8_1), summed
//! in f64, plus the bias. Shared by the host-simulated and the GPU tests of every tuning
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

    /// f16: out[t][n] = sum_k f16(w[n][k]) * f16(x[t][k]) + bias[n]. int8: weights exactly as
    /// dequantized (int8 quants times their scale) and x through q8_1.
    pub fn expected(&self, int8: bool) -> Vec<f32> {
        let round = |v: f32| {
            if int8 {
                v as f64
            } else {
                f16::from_f32(v).to_f64()
            }
        };
        let w: Vec<f64> = dequant::dequantize_to_vec(self.format, &self.weights, self.k * self.n)
            .unwrap()
            .into_iter()
            .map(round)
            .collect();
        let x: Vec<f64> = if int8 {
            self.x.chunks(32).flat_map(q8_1).collect()
        } else {
            self.x.iter().copied().map(round).collect()
        };
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

/// One 32-value block through q8_1 as the kernel rounds it (f32): d = max|v| / 127,
/// q = round(v / d) half away from zero, value d * q.
fn q8_1(block: &[f32]) -> Vec<f64> {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    block
        .iter()
        .map(|&v| {
            let q = if amax == 0.0 { 0.0 } else { (v / d).round() };
            d as f64 * q as f64
        })
        .collect()
}
