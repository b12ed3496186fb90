//! CPU dequantization of GGML weight formats, and the fused dequantize-and-dot that the CPU
//! engine's matmul is built on.
//!
//! Block layouts follow ggml-common.h. Every quantized block is first decoded into its integer
//! levels (held as small exact f32) plus one (scale, min) pair per sub-block; `dequantize` then
//! computes `scale * level (+ min)` in the same order of f32 operations as gguf-py, so its output
//! is bit-identical to gguf-py's, and `dot_row` folds the scales in once per sub-block:
//! `scale * dot(levels, x) + min * sum(x)`.

use super::types::GgmlType;
use half::prelude::*;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DequantError {
    #[error("cannot dequantize {ty}: rocmforge does not support this type")]
    Unsupported { ty: GgmlType },
    #[error("{n_elements} elements of {ty} are not a whole number of {block_size}-element blocks")]
    PartialBlock {
        ty: GgmlType,
        n_elements: usize,
        block_size: usize,
    },
    #[error("{n_elements} elements of {ty} take {expected} bytes, but {found} bytes were given")]
    WrongLength {
        ty: GgmlType,
        n_elements: usize,
        expected: usize,
        found: usize,
    },
}

/// Elements per K-quant super-block (QK_K).
const QK_K: usize = 256;

/// Bytes that `n_elements` of `ty` must occupy, or why they cannot.
pub fn expected_len(ty: GgmlType, n_elements: usize) -> Result<usize, DequantError> {
    if !ty.is_supported() {
        return Err(DequantError::Unsupported { ty });
    }
    let block_size = ty.block_size() as usize;
    if !n_elements.is_multiple_of(block_size) {
        return Err(DequantError::PartialBlock {
            ty,
            n_elements,
            block_size,
        });
    }
    Ok(n_elements / block_size * ty.type_size() as usize)
}

/// Dequantizes `bytes` of type `ty` into `out`, whose length is the number of elements.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    let expected = expected_len(ty, out.len())?;
    if bytes.len() != expected {
        return Err(DequantError::WrongLength {
            ty,
            n_elements: out.len(),
            expected,
            found: bytes.len(),
        });
    }
    match ty {
        GgmlType::F32 => {
            for (y, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            let mut bits = [f16::ZERO; F16_CHUNK];
            for (y, b) in out.chunks_mut(F16_CHUNK).zip(bytes.chunks(2 * F16_CHUNK)) {
                let bits = load_f16(b, &mut bits);
                bits.convert_to_f32_slice(y);
            }
        }
        GgmlType::BF16 => {
            for (y, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *y = bf16_to_f32(b[0], b[1]);
            }
        }
        GgmlType::Q4_0 => dequantize_blocks::<Q4_0>(bytes, out),
        GgmlType::Q4_1 => dequantize_blocks::<Q4_1>(bytes, out),
        GgmlType::Q5_0 => dequantize_blocks::<Q5_0>(bytes, out),
        GgmlType::Q5_1 => dequantize_blocks::<Q5_1>(bytes, out),
        GgmlType::Q8_0 => dequantize_blocks::<Q8_0>(bytes, out),
        GgmlType::Q2K => dequantize_blocks::<Q2K>(bytes, out),
        GgmlType::Q3K => dequantize_blocks::<Q3K>(bytes, out),
        GgmlType::Q4K => dequantize_blocks::<Q4K>(bytes, out),
        GgmlType::Q5K => dequantize_blocks::<Q5K>(bytes, out),
        GgmlType::Q6K => dequantize_blocks::<Q6K>(bytes, out),
        _ => unreachable!("expected_len rejected unsupported types"),
    }
    Ok(())
}

/// Dequantizes into a new vector of `n_elements`.
pub fn dequantize_to_vec(
    ty: GgmlType,
    bytes: &[u8],
    n_elements: usize,
) -> Result<Vec<f32>, DequantError> {
    expected_len(ty, n_elements)?;
    let mut out = vec![0.0; n_elements];
    dequantize(ty, bytes, &mut out)?;
    Ok(out)
}

/// `sum_k W[k] * x[k]` for one weight row of type `ty`, dequantizing on the fly without
/// allocating. This is the inner loop of the CPU matmul, so the shape checks are assertions:
/// the model binder has already checked every weight's type and size.
///
/// # Panics
/// If `ty` is unsupported or `row` does not hold exactly `x.len()` elements of `ty`.
pub fn dot_row(ty: GgmlType, row: &[u8], x: &[f32]) -> f32 {
    let expected = expected_len(ty, x.len());
    assert!(
        expected == Ok(row.len()),
        "dot_row: a row of {} {ty} elements needs {expected:?} bytes, got {}",
        x.len(),
        row.len()
    );
    match ty {
        GgmlType::F32 => dot_f32(row, x),
        GgmlType::F16 => dot_f16(row, x),
        GgmlType::BF16 => dot_bf16(row, x),
        GgmlType::Q4_0 => dot_blocks::<Q4_0>(row, x),
        GgmlType::Q4_1 => dot_blocks::<Q4_1>(row, x),
        GgmlType::Q5_0 => dot_blocks::<Q5_0>(row, x),
        GgmlType::Q5_1 => dot_blocks::<Q5_1>(row, x),
        GgmlType::Q8_0 => dot_blocks::<Q8_0>(row, x),
        GgmlType::Q2K => dot_blocks::<Q2K>(row, x),
        GgmlType::Q3K => dot_blocks::<Q3K>(row, x),
        GgmlType::Q4K => dot_blocks::<Q4K>(row, x),
        GgmlType::Q5K => dot_blocks::<Q5K>(row, x),
        GgmlType::Q6K => dot_blocks::<Q6K>(row, x),
        _ => unreachable!("expected_len rejected unsupported types"),
    }
}

// ---------------------------------------------------------------------------------------------
// Plain float formats.

/// Halves converted per call of `half`'s slice conversion (which uses F16C when the CPU has it).
const F16_CHUNK: usize = 256;

fn load_f16<'a>(bytes: &[u8], buf: &'a mut [f16; F16_CHUNK]) -> &'a [f16] {
    let n = bytes.len() / 2;
    for (h, b) in buf.iter_mut().zip(bytes.chunks_exact(2)) {
        *h = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
    }
    &buf[..n]
}

pub(crate) fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

fn bf16_to_f32(lo: u8, hi: u8) -> f32 {
    f32::from_bits((u16::from_le_bytes([lo, hi]) as u32) << 16)
}

/// Eight independent accumulators: f32 addition is not associative, so LLVM vectorizes a
/// reduction only when the code itself keeps separate lanes.
const LANES: usize = 8;

#[inline(always)]
fn dot_lanes(a: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    for (ac, xc) in a.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += ac[i] * xc[i];
        }
    }
    let tail = a.len() - a.len() % LANES;
    let rest: f32 = a[tail..].iter().zip(&x[tail..]).map(|(a, x)| a * x).sum();
    acc.iter().sum::<f32>() + rest
}

/// Per-lane partial products of `a . x` over a sub-block whose length is a multiple of `LANES`;
/// kept as lanes so that block scales apply lane-wise and the horizontal sum happens once per row.
#[inline(always)]
fn lane_products(a: &[f32], x: &[f32]) -> [f32; LANES] {
    let mut acc = [0.0f32; LANES];
    for (ac, xc) in a.chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += ac[i] * xc[i];
        }
    }
    acc
}

/// Per-lane partial sums of `x`, for the `min * sum(x)` term of formats with mins.
#[inline(always)]
fn lane_sums(x: &[f32]) -> [f32; LANES] {
    let mut acc = [0.0f32; LANES];
    for xc in x.chunks_exact(LANES) {
        for i in 0..LANES {
            acc[i] += xc[i];
        }
    }
    acc
}

fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    let mut buf = [0.0f32; F16_CHUNK];
    let mut total = 0.0;
    for (b, xc) in row.chunks(4 * F16_CHUNK).zip(x.chunks(F16_CHUNK)) {
        for (w, b) in buf.iter_mut().zip(b.chunks_exact(4)) {
            *w = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        total += dot_lanes(&buf[..xc.len()], xc);
    }
    total
}

fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    let mut bits = [f16::ZERO; F16_CHUNK];
    let mut buf = [0.0f32; F16_CHUNK];
    let mut total = 0.0;
    for (b, xc) in row.chunks(2 * F16_CHUNK).zip(x.chunks(F16_CHUNK)) {
        let w = &mut buf[..xc.len()];
        load_f16(b, &mut bits).convert_to_f32_slice(w);
        total += dot_lanes(w, xc);
    }
    total
}

fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    let mut buf = [0.0f32; F16_CHUNK];
    let mut total = 0.0;
    for (b, xc) in row.chunks(2 * F16_CHUNK).zip(x.chunks(F16_CHUNK)) {
        for (w, b) in buf.iter_mut().zip(b.chunks_exact(2)) {
            *w = bf16_to_f32(b[0], b[1]);
        }
        total += dot_lanes(&buf[..xc.len()], xc);
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Block formats.

/// One quantized block format: element `i` of a block is `scale[s] * level[i] (+ min[s])`, with
/// `s = i / SUB` its sub-block.
trait BlockFormat {
    const ELEMS: usize;
    const BYTES: usize;
    const SUB: usize;
    /// Whether the format adds a per-sub-block offset (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K).
    const HAS_MIN: bool;
    /// Fills `levels[..ELEMS]`, `scales[..ELEMS / SUB]` and (when HAS_MIN) `mins[..ELEMS / SUB]`.
    fn decode(block: &[u8], levels: &mut [f32], scales: &mut [f32], mins: &mut [f32]);
}

/// Per-call scratch: one block's levels and sub-block parameters, reused block after block.
struct Scratch {
    levels: [f32; QK_K],
    scales: [f32; QK_K / 16],
    mins: [f32; QK_K / 16],
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            levels: [0.0; QK_K],
            scales: [0.0; QK_K / 16],
            mins: [0.0; QK_K / 16],
        }
    }

    #[inline(always)]
    fn decode<F: BlockFormat>(&mut self, block: &[u8]) {
        F::decode(
            block,
            &mut self.levels[..F::ELEMS],
            &mut self.scales[..F::ELEMS / F::SUB],
            &mut self.mins[..F::ELEMS / F::SUB],
        );
    }
}

fn dequantize_blocks<F: BlockFormat>(bytes: &[u8], out: &mut [f32]) {
    let mut s = Scratch::new();
    for (block, y) in bytes
        .chunks_exact(F::BYTES)
        .zip(out.chunks_exact_mut(F::ELEMS))
    {
        s.decode::<F>(block);
        let subs = y
            .chunks_exact_mut(F::SUB)
            .zip(s.levels.chunks_exact(F::SUB));
        for (j, (ys, ls)) in subs.enumerate() {
            let (d, m) = (s.scales[j], s.mins[j]);
            // Two loops, not `+ 0.0`: adding a zero min would turn -0.0 into +0.0.
            if F::HAS_MIN {
                for (y, &l) in ys.iter_mut().zip(ls) {
                    *y = d * l + m;
                }
            } else {
                for (y, &l) in ys.iter_mut().zip(ls) {
                    *y = d * l;
                }
            }
        }
    }
}

fn dot_blocks<F: BlockFormat>(row: &[u8], x: &[f32]) -> f32 {
    let mut s = Scratch::new();
    let mut acc = [0.0f32; LANES];
    for (block, xb) in row.chunks_exact(F::BYTES).zip(x.chunks_exact(F::ELEMS)) {
        s.decode::<F>(block);
        let subs = xb.chunks_exact(F::SUB).zip(s.levels.chunks_exact(F::SUB));
        for (j, (xs, ls)) in subs.enumerate() {
            let (d, products) = (s.scales[j], lane_products(ls, xs));
            if F::HAS_MIN {
                let (m, sums) = (s.mins[j], lane_sums(xs));
                for i in 0..LANES {
                    acc[i] += d * products[i] + m * sums[i];
                }
            } else {
                for i in 0..LANES {
                    acc[i] += d * products[i];
                }
            }
        }
    }
    acc.iter().sum()
}

fn bytes_n<const N: usize>(b: &[u8], at: usize) -> &[u8; N] {
    b[at..at + N]
        .try_into()
        .expect("block slices have fixed length")
}

/// Levels of a 32-element block with nibbles in `qs` (low nibbles first) and, when `HIGH`, a
/// fifth bit per element in the 32-bit little-endian `qh`, minus `bias`.
#[inline(always)]
fn legacy_levels<const HIGH: bool>(qs: &[u8; 16], qh: u32, bias: f32, levels: &mut [f32]) {
    let (first, second) = levels.split_at_mut(16);
    for (j, ((l0, l1), &q)) in first.iter_mut().zip(second).zip(qs).enumerate() {
        let (mut lo, mut hi) = ((q & 0xF) as u32, (q >> 4) as u32);
        if HIGH {
            lo |= ((qh >> j) & 1) << 4;
            hi |= ((qh >> (j + 16)) & 1) << 4;
        }
        *l0 = lo as f32 - bias;
        *l1 = hi as f32 - bias;
    }
}

struct Q4_0;
impl BlockFormat for Q4_0 {
    const ELEMS: usize = 32;
    const BYTES: usize = 18; // d: f16, qs: [u8; 16]
    const SUB: usize = 32;
    const HAS_MIN: bool = false;
    fn decode(b: &[u8], levels: &mut [f32], scales: &mut [f32], _: &mut [f32]) {
        scales[0] = f16_at(b, 0);
        legacy_levels::<false>(bytes_n(b, 2), 0, 8.0, levels);
    }
}

struct Q4_1;
impl BlockFormat for Q4_1 {
    const ELEMS: usize = 32;
    const BYTES: usize = 20; // d, m: f16, qs: [u8; 16]
    const SUB: usize = 32;
    const HAS_MIN: bool = true;
    fn decode(b: &[u8], levels: &mut [f32], scales: &mut [f32], mins: &mut [f32]) {
        scales[0] = f16_at(b, 0);
        mins[0] = f16_at(b, 2);
        legacy_levels::<false>(bytes_n(b, 4), 0, 0.0, levels);
    }
}

struct Q5_0;
impl BlockFormat for Q5_0 {
    const ELEMS: usize = 32;
    const BYTES: usize = 22; // d: f16, qh: [u8; 4], qs: [u8; 16]
    const SUB: usize = 32;
    const HAS_MIN: bool = false;
    fn decode(b: &[u8], levels: &mut [f32], scales: &mut [f32], _: &mut [f32]) {
        scales[0] = f16_at(b, 0);
        let qh = u32::from_le_bytes(*bytes_n(b, 2));
        legacy_levels::<true>(bytes_n(b, 6), qh, 16.0, levels);
    }
}

struct Q5_1;
impl BlockFormat for Q5_1 {
    const ELEMS: usize = 32;
    const BYTES: usize = 24; // d, m: f16, qh: [u8; 4], qs: [u8; 16]
    const SUB: usize = 32;
    const HAS_MIN: bool = true;
    fn decode(b: &[u8], levels: &mut [f32], scales: &mut [f32], mins: &mut [f32]) {
        scales[0] = f16_at(b, 0);
        mins[0] = f16_at(b, 2);
        let qh = u32::from_le_bytes(*bytes_n(b, 4));
        legacy_levels::<true>(bytes_n(b, 8), qh, 0.0, levels);
    }
}

struct Q8_0;
impl BlockFormat for Q8_0 {
    const ELEMS: usize = 32;
    const BYTES: usize = 34; // d: f16, qs: [i8; 32]
    const SUB: usize = 32;
    const HAS_MIN: bool = false;
    fn decode(b: &[u8], levels: &mut [f32], scales: &mut [f32], _: &mut [f32]) {
        scales[0] = f16_at(b, 0);
        for (l, &q) in levels.iter_mut().zip(bytes_n::<32>(b, 2)) {
            *l = q as i8 as f32;
        }
    }
}

struct Q2K;
impl BlockFormat for Q2K {
    const ELEMS: usize = QK_K;
    // scales: [u8; 16] (low nibble scale, high nibble min), qs: [u8; 64], d, dmin: f16
    const BYTES: usize = 84;
    const SUB: usize = 16;
    const HAS_MIN: bool = true;
    fn decode(b: &[u8], levels: &mut [f32], scales: &mut [f32], mins: &mut [f32]) {
        let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
        for (j, &sc) in bytes_n::<16>(b, 0).iter().enumerate() {
            scales[j] = d * (sc & 0xF) as f32;
            mins[j] = -(dmin * (sc >> 4) as f32);
        }
        let qs = bytes_n::<64>(b, 16);
        // Group g = n*4 + j of 32 elements holds bits 2j..2j+2 of qs[n*32..n*32 + 32].
        for (g, dst) in levels.chunks_exact_mut(32).enumerate() {
            let (src, shift) = (bytes_n::<32>(qs, (g / 4) * 32), 2 * (g % 4));
            for (l, &q) in dst.iter_mut().zip(src) {
                *l = ((q >> shift) & 3) as f32;
            }
        }
    }
}

struct Q3K;
impl BlockFormat for Q3K {
    const ELEMS: usize = QK_K;
    // hmask: [u8; 32], qs: [u8; 64], scales: 12 bytes of packed 6-bit values, d: f16
    const BYTES: usize = 110;
    const SUB: usize = 16;
    const HAS_MIN: bool = false;
    fn decode(b: &[u8], levels: &mut [f32], scales: &mut [f32], _: &mut [f32]) {
        let d = f16_at(b, 108);
        let packed = bytes_n::<12>(b, 96);
        for (j, s) in scales.iter_mut().enumerate() {
            *s = d * (q3k_scale(packed, j) as i32 - 32) as f32;
        }
        let hmask = bytes_n::<32>(b, 0);
        let qs = bytes_n::<64>(b, 32);
        // Group g of 32 elements: two low bits as in Q2_K, the third bit is bit g of hmask[k],
        // and a clear third bit means "subtract 4".
        for (g, dst) in levels.chunks_exact_mut(32).enumerate() {
            let (src, shift) = (bytes_n::<32>(qs, (g / 4) * 32), 2 * (g % 4));
            for ((l, &q), &h) in dst.iter_mut().zip(src).zip(hmask) {
                let high = ((h >> g) & 1) as i32;
                *l = (((q >> shift) & 3) as i32 - 4 + 4 * high) as f32;
            }
        }
    }
}

/// The 6-bit scale `j` (0..16) of a Q3_K block: low 4 bits in the nibbles of bytes 0..8, high
/// 2 bits in the bit pairs of bytes 8..12.
pub(crate) fn q3k_scale(packed: &[u8; 12], j: usize) -> u8 {
    let low = if j < 8 {
        packed[j] & 0xF
    } else {
        packed[j - 8] >> 4
    };
    let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
    low | (high << 4)
}

/// The 6-bit (scale, min) pair `j` (0..8) of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
pub(crate) fn k4_scale_min(packed: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    }
}

fn k4_scales(b: &[u8], scales: &mut [f32], mins: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let packed = bytes_n::<12>(b, 4);
    for j in 0..8 {
        let (sc, m) = k4_scale_min(packed, j);
        scales[j] = d * sc as f32;
        mins[j] = -(dmin * m as f32);
    }
}

struct Q4K;
impl BlockFormat for Q4K {
    const ELEMS: usize = QK_K;
    const BYTES: usize = 144; // d, dmin: f16, scales: [u8; 12], qs: [u8; 128]
    const SUB: usize = 32;
    const HAS_MIN: bool = true;
    fn decode(b: &[u8], levels: &mut [f32], scales: &mut [f32], mins: &mut [f32]) {
        k4_scales(b, scales, mins);
        let qs = bytes_n::<128>(b, 16);
        // Group g = c*2 + h of 32 elements is nibble h of qs[c*32..c*32 + 32].
        for (g, dst) in levels.chunks_exact_mut(32).enumerate() {
            let (src, shift) = (bytes_n::<32>(qs, (g / 2) * 32), 4 * (g % 2));
            for (l, &q) in dst.iter_mut().zip(src) {
                *l = ((q >> shift) & 0xF) as f32;
            }
        }
    }
}

struct Q5K;
impl BlockFormat for Q5K {
    const ELEMS: usize = QK_K;
    const BYTES: usize = 176; // d, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128]
    const SUB: usize = 32;
    const HAS_MIN: bool = true;
    fn decode(b: &[u8], levels: &mut [f32], scales: &mut [f32], mins: &mut [f32]) {
        k4_scales(b, scales, mins);
        let qh = bytes_n::<32>(b, 16);
        let qs = bytes_n::<128>(b, 48);
        // As Q4_K, plus bit g of qh[k] as the fifth bit of group g.
        for (g, dst) in levels.chunks_exact_mut(32).enumerate() {
            let (src, shift) = (bytes_n::<32>(qs, (g / 2) * 32), 4 * (g % 2));
            for ((l, &q), &h) in dst.iter_mut().zip(src).zip(qh) {
                *l = (((q >> shift) & 0xF) | (((h >> g) & 1) << 4)) as f32;
            }
        }
    }
}

struct Q6K;
impl BlockFormat for Q6K {
    const ELEMS: usize = QK_K;
    const BYTES: usize = 210; // ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16
    const SUB: usize = 16;
    const HAS_MIN: bool = false;
    fn decode(b: &[u8], levels: &mut [f32], scales: &mut [f32], _: &mut [f32]) {
        let d = f16_at(b, 208);
        for (s, &sc) in scales.iter_mut().zip(bytes_n::<16>(b, 192)) {
            *s = d * (sc as i8) as f32;
        }
        let ql = bytes_n::<128>(b, 0);
        let qh = bytes_n::<64>(b, 128);
        // Group n*4 + j of 32 elements: nibble j/2 of ql[n*64 + (j%2)*32 + k] and bit pair j
        // of qh[n*32 + k].
        for (g, dst) in levels.chunks_exact_mut(32).enumerate() {
            let (n, j) = (g / 4, g % 4);
            let low = bytes_n::<32>(ql, n * 64 + (j % 2) * 32);
            let high = bytes_n::<32>(qh, n * 32);
            let (low_shift, high_shift) = (4 * (j / 2), 2 * j);
            for ((l, &lo), &hi) in dst.iter_mut().zip(low).zip(high) {
                let q = ((lo >> low_shift) & 0xF) | (((hi >> high_shift) & 3) << 4);
                *l = (q as i32 - 32) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::quantize::random_blocks;
    use crate::gguf::types::SUPPORTED;
    use crate::util::rng::Rng;

    #[test]
    fn errors_name_type_and_sizes() {
        let mut out = [0.0f32; 32];
        let e = dequantize(GgmlType::Q8K, &[0; 292], &mut out).unwrap_err();
        assert_eq!(e, DequantError::Unsupported { ty: GgmlType::Q8K });
        let e = dequantize(GgmlType::Q4_0, &[0; 17], &mut out).unwrap_err();
        assert!(e.to_string().contains("take 18 bytes, but 17"), "{e}");
        let e = dequantize(GgmlType::Q4K, &[0; 144], &mut out).unwrap_err();
        assert!(matches!(
            e,
            DequantError::PartialBlock {
                block_size: 256,
                ..
            }
        ));
    }

    /// The fused dot must equal dequantize-then-dot up to f32 summation order: the tolerance is
    /// relative to sum |w x|, which bounds the rounding of any summation order.
    #[test]
    fn dot_row_matches_dequantize_then_dot() {
        let mut rng = Rng::new(11);
        for &ty in SUPPORTED {
            for n in [256usize, 512, 2048] {
                let row = random_blocks(ty, n, &mut rng, 1.0);
                let x: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
                let w = dequantize_to_vec(ty, &row, n).unwrap();
                let exact: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mag: f64 = w
                    .iter()
                    .zip(&x)
                    .map(|(a, b)| (*a as f64 * *b as f64).abs())
                    .sum();
                let got = dot_row(ty, &row, &x) as f64;
                assert!(
                    (got - exact).abs() <= 1e-5 * mag + 1e-6,
                    "{ty} n={n}: fused {got} vs {exact} (magnitude {mag})"
                );
            }
        }
    }

    #[test]
    fn plain_rows_of_any_length() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 * 0.5 - 3.0).collect();
        let w: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.25).collect();
        let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
        let f32_bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16_bytes: Vec<u8> = w
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect();
        let bf16_bytes: Vec<u8> = w
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect();
        for (ty, b) in [
            (GgmlType::F32, &f32_bytes),
            (GgmlType::F16, &f16_bytes),
            (GgmlType::BF16, &bf16_bytes),
        ] {
            // These weights are exact in all three formats.
            assert_eq!(dot_row(ty, b, &x), exact, "{ty}");
            assert_eq!(dequantize_to_vec(ty, b, 37).unwrap(), w, "{ty}");
        }
    }

    #[test]
    #[should_panic(expected = "dot_row")]
    fn dot_row_rejects_short_rows() {
        dot_row(GgmlType::Q4_0, &[0; 18], &[0.0; 64]);
    }
}
