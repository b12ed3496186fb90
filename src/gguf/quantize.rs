//! Making quantized weights: random valid blocks for synthetic models of any weight format, and
//! simple reference quantizers (round to nearest) for every supported format.
//!
//! The legacy formats (Q4_0..Q8_0) follow ggml's reference quantizers step for step, so their
//! bytes equal gguf-py's (`tests/gguf_dequant.rs` checks this). The K-quant quantizers are plain
//! round-to-nearest, without ggml's weighted scale search: good enough for tests and synthetic
//! models, not for shipping real models.

use super::dequant::{k4_scale_min, q3k_scale};
use super::types::GgmlType;
use crate::util::rng::Rng;
use half::{bf16, f16};

fn check_args(ty: GgmlType, n_elements: usize) {
    assert!(ty.is_supported(), "{ty} is not a supported weight format");
    assert!(
        n_elements.is_multiple_of(ty.block_size() as usize),
        "{n_elements} elements are not a whole number of {ty} blocks"
    );
}

fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

fn f16_round(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// `n_elements` of `ty` as random but valid bytes: quant bits are uniform, scales are finite and
/// chosen so that every dequantized value lies within `±scale` (F32/F16/BF16: uniform in it).
///
/// # Panics
/// If `ty` is unsupported or `n_elements` is not a whole number of blocks.
pub fn random_blocks(ty: GgmlType, n_elements: usize, rng: &mut Rng, scale: f32) -> Vec<u8> {
    check_args(ty, n_elements);
    let uniform = |rng: &mut Rng| rng.uniform(-scale, scale);
    match ty {
        GgmlType::F32 => (0..n_elements)
            .flat_map(|_| uniform(rng).to_le_bytes())
            .collect(),
        GgmlType::F16 => (0..n_elements)
            .flat_map(|_| f16::from_f32(uniform(rng)).to_le_bytes())
            .collect(),
        GgmlType::BF16 => (0..n_elements)
            // Truncation, not rounding: rounding up could step just past `scale`.
            .flat_map(|_| ((uniform(rng).to_bits() >> 16) as u16).to_le_bytes())
            .collect(),
        _ => {
            let n_blocks = n_elements / ty.block_size() as usize;
            let mut out = vec![0u8; n_blocks * ty.type_size() as usize];
            for chunk in out.chunks_exact_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
            }
            let tail = out.len() - out.len() % 8;
            for b in &mut out[tail..] {
                *b = rng.next_u64() as u8;
            }
            for block in out.chunks_exact_mut(ty.type_size() as usize) {
                // A random factor below 1 keeps values inside ±scale after f16 rounding of d.
                let d = scale * rng.uniform(0.5, 0.99);
                set_random_scales(ty, block, d, rng);
            }
            out
        }
    }
}

/// Overwrites the scale fields of one random block. `d_max` is the largest magnitude wanted;
/// each format divides it by its largest |level x sub-scale| product. Formats with mins get
/// `min = level midpoint x scale`, centring values around zero.
fn set_random_scales(ty: GgmlType, b: &mut [u8], d_max: f32, rng: &mut Rng) {
    match ty {
        GgmlType::Q4_0 => put_f16(b, 0, d_max / 8.0),
        GgmlType::Q5_0 => put_f16(b, 0, d_max / 16.0),
        GgmlType::Q8_0 => put_f16(b, 0, d_max / 128.0),
        GgmlType::Q4_1 | GgmlType::Q5_1 => {
            let half_levels = if ty == GgmlType::Q4_1 { 7.5 } else { 15.5 };
            let d = f16_round(d_max / (half_levels + 0.5));
            put_f16(b, 0, d);
            put_f16(b, 2, -half_levels * d * rng.uniform(0.97, 1.0));
        }
        GgmlType::Q2K => {
            let d = f16_round(d_max / (1.5 * 15.0));
            put_f16(b, 80, d);
            put_f16(b, 82, 1.5 * d);
            for s in &mut b[..16] {
                let sc = 1 + rng.below(15) as u8;
                *s = sc | (sc << 4);
            }
        }
        // Random 6-bit scales already span -32..31; levels span -4..3.
        GgmlType::Q3K => put_f16(b, 108, d_max / 128.0),
        GgmlType::Q4K | GgmlType::Q5K => {
            let mid = if ty == GgmlType::Q4K { 7.5 } else { 15.5 };
            let d = f16_round(d_max / (mid * 63.0));
            put_f16(b, 0, d);
            put_f16(b, 2, mid * d);
            let sc: [u8; 8] = std::array::from_fn(|_| 1 + rng.below(63) as u8);
            b[4..16].copy_from_slice(&pack_k4_scales(&sc, &sc));
        }
        // Random i8 scales span -128..127; levels span -32..31.
        GgmlType::Q6K => put_f16(b, 208, d_max / 4096.0),
        _ => unreachable!("plain types have no block scales"),
    }
}

/// Packs eight 6-bit (scale, min) pairs the way `k4_scale_min` unpacks them.
fn pack_k4_scales(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut p = [0u8; 12];
    for j in 0..4 {
        p[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        p[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        p[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4);
    }
    debug_assert!((0..8).all(|j| k4_scale_min(&p, j) == (sc[j] & 63, m[j] & 63)));
    p
}

/// Packs sixteen 6-bit Q3_K scales the way `q3k_scale` unpacks them.
fn pack_q3k_scales(sc: &[u8; 16]) -> [u8; 12] {
    let mut p = [0u8; 12];
    for (j, &s) in sc.iter().enumerate() {
        if j < 8 {
            p[j] |= s & 0xF;
        } else {
            p[j - 8] |= (s & 0xF) << 4;
        }
        p[8 + j % 4] |= ((s >> 4) & 3) << (2 * (j / 4));
    }
    debug_assert!((0..16).all(|j| q3k_scale(&p, j) == sc[j] & 63));
    p
}

/// Quantizes `x` to `ty` by round-to-nearest.
///
/// # Panics
/// If `ty` is unsupported or `x.len()` is not a whole number of blocks.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    check_args(ty, x.len());
    match ty {
        GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => x
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => x
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => {
            let mut out = Vec::with_capacity(ty.bytes_for(x.len() as u64).unwrap_or(0) as usize);
            let block_fn: fn(&[f32], &mut Vec<u8>) = match ty {
                GgmlType::Q4_0 => |x, o| quantize_symmetric_legacy(x, 8.0, 15, o),
                GgmlType::Q5_0 => |x, o| quantize_symmetric_legacy(x, 16.0, 31, o),
                GgmlType::Q4_1 => |x, o| quantize_affine_legacy(x, 15, o),
                GgmlType::Q5_1 => |x, o| quantize_affine_legacy(x, 31, o),
                GgmlType::Q8_0 => quantize_q8_0,
                GgmlType::Q2K => quantize_q2k,
                GgmlType::Q3K => quantize_q3k,
                GgmlType::Q4K => |x, o| quantize_k4(x, 15, o),
                GgmlType::Q5K => |x, o| quantize_k4(x, 31, o),
                GgmlType::Q6K => quantize_q6k,
                _ => unreachable!("checked supported"),
            };
            for block in x.chunks_exact(ty.block_size() as usize) {
                block_fn(block, &mut out);
            }
            out
        }
    }
}

/// 1/d, or 0 for an all-zero block (ggml's convention).
fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// The value of largest magnitude, sign kept (first one on ties, as ggml).
fn signed_absmax(x: &[f32]) -> f32 {
    x.iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
}

/// Packs 32 levels (0..32) into qh (fifth bits, when `with_high`) and qs (nibbles).
fn push_legacy_levels(levels: &[u8; 32], with_high: bool, out: &mut Vec<u8>) {
    if with_high {
        let qh = (0..32).fold(0u32, |h, j| h | (((levels[j] >> 4) as u32 & 1) << j));
        out.extend_from_slice(&qh.to_le_bytes());
    }
    out.extend((0..16).map(|j| (levels[j] & 0xF) | ((levels[j + 16] & 0xF) << 4)));
}

/// Q4_0 / Q5_0: d = max / -half, level = trunc(x / d + half + 0.5), as ggml.
fn quantize_symmetric_legacy(x: &[f32], half: f32, top: u8, out: &mut Vec<u8>) {
    let d = signed_absmax(x) / -half;
    let id = inverse(d);
    let levels: [u8; 32] = std::array::from_fn(|j| ((x[j] * id + (half + 0.5)) as u8).min(top));
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    push_legacy_levels(&levels, top > 15, out);
}

/// Q4_1 / Q5_1: d = (max - min) / top, m = min, level = trunc((x - min) / d + 0.5), as ggml.
fn quantize_affine_legacy(x: &[f32], top: u8, out: &mut Vec<u8>) {
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (max - min) / top as f32;
    let id = inverse(d);
    let levels: [u8; 32] = std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as u8).min(top));
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
    push_legacy_levels(&levels, top > 15, out);
}

fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let d = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
    let id = inverse(d);
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    // f32::round rounds halves away from zero, as C's roundf in ggml.
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

/// Round to nearest, clamped to lo..=hi; 0 when the step is zero.
fn level(v: f32, step: f32, lo: i32, hi: i32) -> i32 {
    if step == 0.0 {
        return 0.max(lo);
    }
    ((v / step).round() as i32).clamp(lo, hi)
}

/// Affine sub-blocks (Q2_K, Q4_K, Q5_K): each sub-block gets step (max - min) / top and offset
/// -min (min clamped to <= 0, as ggml); the steps and offsets are then themselves quantized to
/// `bits`-bit multiples of two f16 super-scales. Returns (d, dmin, scale codes, min codes).
fn affine_sub_scales(x: &[f32], sub: usize, top: u8, bits: u32) -> (f32, f32, Vec<u8>, Vec<u8>) {
    let code_max = ((1u32 << bits) - 1) as f32;
    let (steps, offsets): (Vec<f32>, Vec<f32>) = x
        .chunks_exact(sub)
        .map(|s| {
            let min = s.iter().copied().fold(0.0f32, f32::min);
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            ((max - min) / top as f32, -min)
        })
        .unzip();
    let d = f16_round(steps.iter().copied().fold(0.0, f32::max) / code_max);
    let dmin = f16_round(offsets.iter().copied().fold(0.0, f32::max) / code_max);
    let hi = code_max as i32;
    let codes = |vals: &[f32], unit: f32| -> Vec<u8> {
        vals.iter().map(|&v| level(v, unit, 0, hi) as u8).collect()
    };
    (d, dmin, codes(&steps, d), codes(&offsets, dmin))
}

/// Levels for affine sub-blocks given their quantized steps and offsets.
fn affine_levels(
    x: &[f32],
    sub: usize,
    d: f32,
    dmin: f32,
    sc: &[u8],
    m: &[u8],
    top: u8,
) -> Vec<u8> {
    x.chunks_exact(sub)
        .enumerate()
        .flat_map(|(j, s)| {
            let (step, off) = (d * sc[j] as f32, dmin * m[j] as f32);
            s.iter()
                .map(move |&v| level(v + off, step, 0, top as i32) as u8)
        })
        .collect()
}

fn quantize_q2k(x: &[f32], out: &mut Vec<u8>) {
    let (d, dmin, sc, m) = affine_sub_scales(x, 16, 3, 4);
    let levels = affine_levels(x, 16, d, dmin, &sc, &m, 3);
    out.extend((0..16).map(|j| sc[j] | (m[j] << 4)));
    let mut qs = [0u8; 64];
    for (i, &l) in levels.iter().enumerate() {
        let (n, j, k) = (i / 128, (i / 32) % 4, i % 32);
        qs[n * 32 + k] |= l << (2 * j);
    }
    out.extend_from_slice(&qs);
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&f16::from_f32(dmin).to_le_bytes());
}

fn quantize_k4(x: &[f32], top: u8, out: &mut Vec<u8>) {
    let (d, dmin, sc, m) = affine_sub_scales(x, 32, top, 6);
    let levels = affine_levels(x, 32, d, dmin, &sc, &m, top);
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend_from_slice(&f16::from_f32(dmin).to_le_bytes());
    out.extend_from_slice(&pack_k4_scales(
        sc.as_slice().try_into().expect("8 sub-blocks"),
        m.as_slice().try_into().expect("8 sub-blocks"),
    ));
    let mut qs = [0u8; 128];
    let mut qh = [0u8; 32];
    for (i, &l) in levels.iter().enumerate() {
        let (c, h, k) = (i / 64, (i / 32) % 2, i % 32);
        qs[c * 32 + k] |= (l & 0xF) << (4 * h);
        qh[k] |= (l >> 4) << (i / 32);
    }
    if top > 15 {
        out.extend_from_slice(&qh);
    }
    out.extend_from_slice(&qs);
}

/// Symmetric sub-blocks (Q3_K, Q6_K): step = signed absmax / -half_levels, the steps quantized
/// to signed codes in `code_lo..=code_hi` of one f16 super-scale. Returns (d, codes, levels)
/// with levels offset to be non-negative.
fn symmetric_sub_scales(
    x: &[f32],
    half: i32,
    code_lo: i32,
    code_hi: i32,
) -> (f32, Vec<i32>, Vec<u8>) {
    let steps: Vec<f32> = x
        .chunks_exact(16)
        .map(|s| signed_absmax(s) / -(half as f32))
        .collect();
    let d = f16_round(signed_absmax(&steps) / code_lo as f32);
    let codes: Vec<i32> = steps
        .iter()
        .map(|&s| level(s, d, code_lo, code_hi))
        .collect();
    let levels = x
        .chunks_exact(16)
        .zip(&codes)
        .flat_map(|(s, &c)| {
            let step = d * c as f32;
            s.iter()
                .map(move |&v| (level(v, step, -half, half - 1) + half) as u8)
        })
        .collect();
    (d, codes, levels)
}

fn quantize_q3k(x: &[f32], out: &mut Vec<u8>) {
    let (d, codes, levels) = symmetric_sub_scales(x, 4, -32, 31);
    let mut hmask = [0u8; 32];
    let mut qs = [0u8; 64];
    for (i, &l) in levels.iter().enumerate() {
        let (n, j, k) = (i / 128, (i / 32) % 4, i % 32);
        qs[n * 32 + k] |= (l & 3) << (2 * j);
        hmask[k] |= (l >> 2) << (n * 4 + j);
    }
    let sc: [u8; 16] = std::array::from_fn(|j| (codes[j] + 32) as u8);
    out.extend_from_slice(&hmask);
    out.extend_from_slice(&qs);
    out.extend_from_slice(&pack_q3k_scales(&sc));
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
}

fn quantize_q6k(x: &[f32], out: &mut Vec<u8>) {
    let (d, codes, levels) = symmetric_sub_scales(x, 32, -128, 127);
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    for (i, &l) in levels.iter().enumerate() {
        let (n, g, k) = (i / 128, (i / 32) % 4, i % 32);
        ql[n * 64 + (g % 2) * 32 + k] |= (l & 0xF) << (4 * (g / 2));
        qh[n * 32 + k] |= (l >> 4) << (2 * g);
    }
    out.extend_from_slice(&ql);
    out.extend_from_slice(&qh);
    out.extend(codes.iter().map(|&c| c as i8 as u8));
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequant::dequantize_to_vec;
    use crate::gguf::types::SUPPORTED;

    #[test]
    fn random_blocks_stay_within_scale() {
        let mut rng = Rng::new(5);
        for &ty in SUPPORTED {
            for scale in [0.02f32, 1.0, 30.0] {
                let n = 4096;
                let bytes = random_blocks(ty, n, &mut rng, scale);
                assert_eq!(bytes.len() as u64, ty.bytes_for(n as u64).unwrap(), "{ty}");
                let w = dequantize_to_vec(ty, &bytes, n).unwrap();
                let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let rms = (w.iter().map(|v| v * v).sum::<f32>() / n as f32).sqrt();
                assert!(w.iter().all(|v| v.is_finite()), "{ty}");
                assert!(max <= scale, "{ty}: max |w| {max} > {scale}");
                // Not degenerate: values use a good part of the range.
                assert!(rms >= scale / 20.0, "{ty}: rms {rms} for scale {scale}");
            }
        }
    }

    /// Relative RMS error of quantize -> dequantize on normal data of varying magnitude.
    /// Round-to-nearest with step q errs by about q / sqrt(12); for 16 or 32 normal values the
    /// block's absmax is about 2.4 rms, so e.g. Q4_0 (step absmax / 8) expects
    /// 2.4 / 8 / 3.46 = 0.087. Measured (seed 9): F16 2.0e-4, BF16 1.7e-3, Q8_0 5.0e-3,
    /// Q6_K 0.018, Q5_0 0.040, Q5_1 0.036, Q5_K 0.036, Q4_0 0.081, Q4_1 0.075, Q4_K 0.074,
    /// Q3_K 0.149, Q2_K 0.318. The bounds are about 1.25x those.
    #[test]
    fn quantize_round_trip_error_is_small() {
        let bounds: &[(GgmlType, f32)] = &[
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 2.5e-4),
            (GgmlType::BF16, 2.2e-3),
            (GgmlType::Q8_0, 6.5e-3),
            (GgmlType::Q6K, 0.023),
            (GgmlType::Q5_0, 0.05),
            (GgmlType::Q5_1, 0.046),
            (GgmlType::Q5K, 0.046),
            (GgmlType::Q4_0, 0.1),
            (GgmlType::Q4_1, 0.095),
            (GgmlType::Q4K, 0.095),
            (GgmlType::Q3K, 0.19),
            (GgmlType::Q2K, 0.4),
        ];
        assert_eq!(bounds.len(), SUPPORTED.len());
        let mut rng = Rng::new(9);
        let n = 8192;
        // Varying magnitude per 256 elements, as real weight rows differ in scale.
        let x: Vec<f32> = (0..n)
            .map(|i| rng.normal() * (0.01 + (i / 256) as f32 * 0.05))
            .collect();
        let rms = (x.iter().map(|v| v * v).sum::<f32>() / n as f32).sqrt();
        for &(ty, bound) in bounds {
            let y = dequantize_to_vec(ty, &quantize(ty, &x), n).unwrap();
            let err = (x
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
                / n as f32)
                .sqrt();
            assert!(err / rms <= bound, "{ty}: relative rms error {}", err / rms);
        }
    }

    #[test]
    fn zero_blocks_quantize_to_zero() {
        for &ty in SUPPORTED {
            let n = ty.block_size() as usize * 2;
            let y = dequantize_to_vec(ty, &quantize(ty, &vec![0.0; n]), n).unwrap();
            assert!(y.iter().all(|v| *v == 0.0), "{ty}: {y:?}");
        }
    }

    #[test]
    fn scale_packing_round_trips() {
        let sc: [u8; 8] = std::array::from_fn(|j| (j as u8 * 9 + 5) & 63);
        let m: [u8; 8] = std::array::from_fn(|j| (j as u8 * 13 + 60) & 63);
        let p = pack_k4_scales(&sc, &m);
        for j in 0..8 {
            assert_eq!(k4_scale_min(&p, j), (sc[j], m[j]));
        }
        let s16: [u8; 16] = std::array::from_fn(|j| (j as u8 * 11 + 3) & 63);
        let p = pack_q3k_scales(&s16);
        for (j, &s) in s16.iter().enumerate() {
            assert_eq!(q3k_scale(&p, j), s);
        }
    }
}
