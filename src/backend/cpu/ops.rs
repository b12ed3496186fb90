//! The CPU reference ops: plain, obviously correct f32 code, parallel with rayon where it pays.
//! These are the oracle every GPU kernel is tested against (see tests/gpu_ops.rs).

use crate::gguf::dequant::{dequantize, dot_row};
use crate::gguf::GgmlType;
use crate::plan::RopeStyle;
use rayon::prelude::*;

/// Rows of `row_len` from a table of `ty` for each token.
pub fn embed(table: &[u8], ty: GgmlType, row_len: usize, tokens: &[u32], out: &mut [f32]) {
    let row_bytes = ty
        .bytes_for(row_len as u64)
        .expect("row length checked at bind") as usize;
    for (t, &tok) in tokens.iter().enumerate() {
        let row = &table[tok as usize * row_bytes..][..row_bytes];
        dequantize(ty, row, &mut out[t * row_len..][..row_len]).expect("type checked at bind");
    }
}

/// RMSNorm of each row of `w.len()` values.
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let width = w.len();
    for (xr, or) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let mean_sq = xr.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let scale = 1.0 / (mean_sq + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

/// `out[t][n] = W[n] . x[t] (+ bias[n])` with W stored as `n` rows of `k` values of type `ty`.
pub fn matmul(
    w: &[u8],
    ty: GgmlType,
    k: usize,
    n: usize,
    x: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let n_tokens = x.len() / k;
    let row_bytes = ty.bytes_for(k as u64).expect("row length checked at bind") as usize;
    // Work in column blocks so each thread dequantizes a weight row once for all tokens.
    const COLS: usize = 16;
    let mut cols: Vec<f32> = vec![0.0; n_tokens * n];
    cols.par_chunks_mut(COLS * n_tokens)
        .enumerate()
        .for_each_init(
            || vec![0f32; k],
            |row_buf, (blk, chunk)| {
                for (j, dst) in chunk.chunks_mut(n_tokens).enumerate() {
                    let col = blk * COLS + j;
                    let row = &w[col * row_bytes..][..row_bytes];
                    if n_tokens == 1 {
                        dst[0] = dot_row(ty, row, x);
                    } else {
                        dequantize(ty, row, row_buf).expect("type checked at bind");
                        for (t, d) in dst.iter_mut().enumerate() {
                            *d = dot(row_buf, &x[t * k..][..k]);
                        }
                    }
                }
            },
        );
    for t in 0..n_tokens {
        for c in 0..n {
            out[t * n + c] = cols[c * n_tokens + t] + bias.map_or(0.0, |b| b[c]);
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums let the compiler vectorize without reassociating a single chain.
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8 * 8;
    for (ca, cb) in a[..chunks].chunks_exact(8).zip(b[..chunks].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = a[chunks..]
        .iter()
        .zip(&b[chunks..])
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// Rotary embedding in place on rows of `n_heads * head_dim`, token t at position `pos0 + t`.
pub fn rope(
    x: &mut [f32],
    width: usize,
    head_dim: usize,
    pos0: usize,
    base: f32,
    style: RopeStyle,
) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| base.powf(-(2.0 * i as f32) / head_dim as f32))
        .collect();
    for (t, row) in x.chunks_exact_mut(width).enumerate() {
        let pos = (pos0 + t) as f32;
        for head in row.chunks_exact_mut(head_dim) {
            for (i, &f) in inv_freq.iter().enumerate() {
                let (sin, cos) = (pos * f).sin_cos();
                let (a, b) = match style {
                    RopeStyle::Normal => (2 * i, 2 * i + 1),
                    RopeStyle::Neox => (i, i + half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos - x1 * sin;
                head[b] = x0 * sin + x1 * cos;
            }
        }
    }
}

/// Geometry of one layer's attention.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}

/// Causal GQA attention of `n_tokens` queries at positions `pos0..` over a cache already holding
/// their keys and values (`[pos][n_kv_head * head_dim]`). Each KV head serves its query group
/// directly: no K/V copies per query head.
pub fn attention(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    s: AttnShape,
    pos0: usize,
    out: &mut [f32],
) {
    let (qw, kvw, d) = (s.n_head * s.head_dim, s.n_kv_head * s.head_dim, s.head_dim);
    let group = s.n_head / s.n_kv_head;
    let scale = 1.0 / (d as f32).sqrt();
    out.par_chunks_mut(d).enumerate().for_each(|(idx, o)| {
        let (t, h) = (idx / s.n_head, idx % s.n_head);
        let qh = &q[t * qw + h * d..][..d];
        let kv_off = (h / group) * d;
        let n_keys = pos0 + t + 1;
        let scores: Vec<f32> = (0..n_keys)
            .map(|j| dot(qh, &k_cache[j * kvw + kv_off..][..d]) * scale)
            .collect();
        let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
        let total: f32 = weights.iter().sum();
        o.fill(0.0);
        for (j, w) in weights.iter().enumerate() {
            let v = &v_cache[j * kvw + kv_off..][..d];
            for (oi, vi) in o.iter_mut().zip(v) {
                *oi += w / total * vi;
            }
        }
    });
}

pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

pub fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
    for ((o, &x), &y) in out.iter_mut().zip(g).zip(u) {
        *o = x / (1.0 + (-x).exp()) * y;
    }
}

/// Column ranges of each row of `x` (width = sum of widths) into separate outputs.
pub fn split(x: &[f32], widths: &[usize], outs: &mut [&mut [f32]]) {
    let width: usize = widths.iter().sum();
    for (t, row) in x.chunks_exact(width).enumerate() {
        let mut off = 0;
        for (o, &w) in outs.iter_mut().zip(widths) {
            o[t * w..][..w].copy_from_slice(&row[off..off + w]);
            off += w;
        }
    }
}

/// Index of the largest value (the first one on ties, as llama.cpp's greedy sampler).
pub fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}
