//! The int8 path of the weight snippets: every format's `dot_chunk_q8` (and `dot_words_q8` of the
//! formats with one, on lane groups copied into registers) compiled as host C++ and compared
//! with independent oracles on random valid blocks and random x, and the device x
//! quantizer (`quant/x_q8.hip.tera`) executed by the host simulator and compared with ggml's
//! quantize_row_q8_1 rule written out here. Skips with a printed reason without a host compiler.

mod host_cxx;
mod host_sim;
mod quant_host;

use std::fmt::Write as _;
use std::path::Path;

use host_sim::Q8x;
use quant_host::{build, read, run_f32, snippet, HOST_SHIM};
use rocmforge::codegen::context::{Extent, GridRule};
use rocmforge::codegen::quant::{gpu_formats, weight_layout, WeightLayout};
use rocmforge::codegen::{KernelKind, KernelSpec};
use rocmforge::gguf::{dequant, quantize};
use rocmforge::util::rng::Rng;

/// Three 256-value super-blocks per row: rows of 2-byte-aligned formats (Q3_K, Q6_K) alternate
/// between 0 and 2 mod 4.
const K: usize = 768;
const ROWS: usize = 6;
/// dot_chunk_q8 against the exact dot with the same int8 x: only f32 rounding of the scale
/// products and the chunk sum differ (about 1e-7 of sum |w x| seen), as a share of sum |w x|.
const TIGHT: f64 = 2e-6;
/// Blocks per lane group in the `dot_words_q8` runs: 8 covers every byte offset mod 4 that
/// groups of 4 have (Q4_0 and Q8_0 blocks start at 0 and 2 mod 4 in turn).
const WORDS_GROUP: usize = 8;

/// xq, then xd, then xs, as the host program reads them.
fn q8_bytes(x: &Q8x) -> Vec<u8> {
    let mut out: Vec<u8> = x.q.iter().map(|&q| q as u8).collect();
    out.extend(x.d.iter().chain(&x.s).flat_map(|v| v.to_le_bytes()));
    out
}

fn int8_layouts() -> Vec<WeightLayout> {
    gpu_formats()
        .filter_map(weight_layout)
        .filter(|l| l.int8_dot)
        .collect()
}

/// `main(format, weights, x)`: the dot of each of ROWS rows with x, chunk by chunk as a GEMV
/// lane would, written to stdout as f32.
fn program(layouts: &[WeightLayout]) -> String {
    let mut src = format!(
        "{HOST_SHIM}{}\n{}\n",
        read("prelude/common.hip.tera"),
        read("quant/x_q8.hip.tera")
    );
    let mut dispatch = String::new();
    for l in layouts {
        writeln!(src, "namespace {} {{\n{}\n}}", l.tag, snippet(l)).unwrap();
        writeln!(
            dispatch,
            "    if (!std::strcmp(argv[1], \"{t}\")) {{ using namespace {t}; static_assert(CHUNK == XQ_BLOCK);\n\
             \x20       const size_t rb = (size_t)({K} / QK) * QBYTES;\n\
             \x20       for (int r = 0; r < {ROWS}; ++r) {{ float acc = 0.0f;\n\
             \x20           for (int c = 0; c < {K} / CHUNK; ++c) {{ int xv[8]; ld_x_q8(xq, c, xv); acc += dot_chunk_q8(w + r * rb, c, xv, xd[c], xs[c]); }}\n\
             \x20           out[r] = acc; }} }}",
            t = l.tag
        )
        .unwrap();
        if l.words_dot {
            // `<tag>_words`: the same dots from lane groups of WORDS_GROUP blocks copied into
            // registers, each block dotted at its byte offset by dot_words_q8.
            writeln!(
                dispatch,
                "    if (!std::strcmp(argv[1], \"{t}_words\")) {{ using namespace {t}; constexpr int G = {WORDS_GROUP};\n\
                 \x20       const size_t rb = (size_t)({K} / QK) * QBYTES;\n\
                 \x20       for (int r = 0; r < {ROWS}; ++r) {{ float acc = 0.0f;\n\
                 \x20           for (int g = 0; g < {K} / CHUNK / G; ++g) {{ u32 words[G * QBYTES / 4]; std::memcpy(words, w + r * rb + (size_t)g * G * QBYTES, sizeof words);\n\
                 \x20               for (int b = 0; b < G; ++b) {{ const int c = g * G + b; int xv[8]; ld_x_q8(xq, c, xv); acc += dot_words_q8(words, b * QBYTES, xv, xd[c], xs[c]); }} }}\n\
                 \x20           out[r] = acc; }} }}",
                t = l.tag
            )
            .unwrap();
        }
    }
    write!(
        src,
        "static unsigned char* load(const char* path, std::vector<unsigned char>& raw) {{\n\
         \x20   raw.assign(1 << 20, 0); unsigned char* p = (unsigned char*)(((size_t)raw.data() + 31) & ~(size_t)31);\n\
         \x20   FILE* f = std::fopen(path, \"rb\"); size_t n = std::fread(p, 1, raw.size() - 64, f); std::fclose(f); (void)n; return p;\n}}\n\
         int main(int argc, char** argv) {{\n\
         \x20   std::vector<unsigned char> wraw, xraw;\n\
         \x20   const unsigned char* w = load(argv[2], wraw);\n\
         \x20   const unsigned char* xb = load(argv[3], xraw);\n\
         \x20   const i8* xq = (const i8*)xb; const float* xd = (const float*)(xb + {K}); const float* xs = xd + {K} / 32;\n\
         \x20   std::vector<float> out({ROWS});\n{dispatch}\
         \x20   std::fwrite(out.data(), 4, out.size(), stdout);\n}}\n"
    )
    .unwrap();
    src
}

/// Normal x with a zero block (d = 0) and a block with one large outlier.
fn random_x(rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..K).map(|_| rng.normal()).collect();
    x[5 * 32..6 * 32].fill(0.0);
    x[7 * 32 + 3] = 40.0;
    x
}

/// Dequantized weight rows with values j and j + 16 of every 32 swapped: what a snippet that
/// paired low nibbles with the wrong half of x would compute.
fn swap_halves(w: &[f32]) -> Vec<f32> {
    w.chunks_exact(32)
        .flat_map(|c| c[16..].iter().chain(&c[..16]).copied().collect::<Vec<_>>())
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&u, &v)| u as f64 * v as f64).sum()
}

fn abs_dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&u, &v)| (u as f64 * v as f64).abs())
        .sum()
}

#[test]
fn int8_dot_snippets_match_the_dequantized_dot() {
    let dir = std::env::temp_dir().join(format!("rocmforge-quant-q8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let layouts = int8_layouts();
    assert_eq!(layouts.len(), 10, "every integer format has an int8 dot");
    assert_eq!(layouts.iter().filter(|l| l.words_dot).count(), 3);
    let Some(exe) = build(&dir, &program(&layouts)) else {
        return;
    };
    let mut rng = Rng::new(0x98d0);
    for l in layouts {
        let bytes = quantize::random_blocks(l.format, K * ROWS, &mut rng, 2.0);
        let x = random_x(&mut rng);
        let xq = Q8x::new(&x);
        let (w_path, x_path) = (dir.join("w.bin"), dir.join("x.bin"));
        std::fs::write(&w_path, &bytes).unwrap();
        std::fs::write(&x_path, q8_bytes(&xq)).unwrap();
        let mut w = vec![0f32; K * ROWS];
        dequant::dequantize(l.format, &bytes, &mut w).unwrap();
        let mut modes = vec![l.tag.to_string()];
        if l.words_dot {
            modes.push(format!("{}_words", l.tag));
        }
        for mode in modes {
            let got = run_f32(&exe, &[Path::new(&mode), &w_path, &x_path]);
            assert_eq!(got.len(), ROWS, "{mode}");
            check_rows(&mode, &got, &w, &x, &xq);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Each row's int8 dot `got[r]` against the exact dot with the same int8 x, and against f32 x
/// within the int8 rounding bound.
fn check_rows(tag: &str, got: &[f32], w: &[f32], x: &[f32], xq: &Q8x) {
    let x_dq = xq.dequantized();
    for r in 0..ROWS {
        let row = &w[r * K..(r + 1) * K];
        let g = got[r] as f64;
        // The same int8 x: only float rounding differs.
        let exact = dot(row, &x_dq);
        let tight = TIGHT * abs_dot(row, &x_dq);
        assert!(
            (g - exact).abs() <= tight,
            "{tag} row {r}: int8 dot {g}, exact dot with the int8 x {exact} (tolerance {tight})"
        );
        // The tolerance catches a snippet pairing weights with the wrong x values.
        let wrong = dot(&swap_halves(row), &x_dq);
        assert!(
            (wrong - exact).abs() > tight,
            "{tag} row {r}: the tolerance would not catch swapped halves"
        );
        // Against f32 x: each int8 x value is off by at most d / 2 = max|x of its block| / 254.
        let plain = dot(row, x);
        let bound: f64 = row
            .iter()
            .enumerate()
            .map(|(k, v)| (v.abs() * xq.d[k / 32]) as f64 / 2.0)
            .sum::<f64>()
            * (1.0 + 1e-6)
            + tight;
        assert!(
            (g - plain).abs() <= bound,
            "{tag} row {r}: int8 dot {g}, f32 dot {plain} (bound {bound})"
        );
    }
}

/// A kernel staging x with quantize_x_q8 (blocks loaded `unroll` per warp at a time) in shared
/// memory and copying it out, with each thread's part of the sum of squares.
fn quantizer_kernel(k: usize, warp_size: u32, threads: u32, unroll: u32) -> KernelSpec {
    // Distinct per source: the host simulator builds one namespace per kernel name.
    let name = format!("quantize_x_test_{k}_{warp_size}_{unroll}");
    let prelude = read("prelude/hip.hip.tera").replace("{{ warp_size }}", &warp_size.to_string());
    let body = format!(
        "extern \"C\" __global__ void {name}(const float* x, const float* norm_w, i8* xq_out, float* xd_out, float* xs_out, float* squares_out) {{\n\
         \x20   __shared__ uint4 xq_words[{k} / 16];\n\
         \x20   __shared__ float xd[{k} / 32];\n\
         \x20   __shared__ float xs[{k} / 32];\n\
         \x20   i8* xq = (i8*)xq_words;\n\
         \x20   squares_out[threadIdx.x] = quantize_x_q8<{k}, {unroll}>(x, norm_w, threadIdx.x, blockDim.x, xq, xd, xs);\n\
         \x20   __syncthreads();\n\
         \x20   for (int i = threadIdx.x; i < {k}; i += blockDim.x) xq_out[i] = xq[i];\n\
         \x20   for (int i = threadIdx.x; i < {k} / 32; i += blockDim.x) {{ xd_out[i] = xd[i]; xs_out[i] = xs[i]; }}\n}}\n"
    );
    KernelSpec {
        kind: KernelKind::MatmulGemv,
        name: name.clone(),
        source: format!(
            "{prelude}\n{}\n{}\n{body}",
            read("prelude/common.hip.tera"),
            read("quant/x_q8.hip.tera")
        ),
        context_json: format!("{{\"op\":\"{name}\",\"k\":{k},\"warp_size\":{warp_size}}}"),
        problem: format!("{name} K={k}"),
        knobs_json: "{}".to_string(),
        candidates: 1,
        candidate_knobs: vec!["{}".to_string()],
        block: (threads, 1, 1),
        shared_bytes: 0,
        grid_rule: GridRule {
            x: Extent::Fixed(1),
            y: Extent::Fixed(1),
            z: Extent::Fixed(1),
        },
    }
}

#[test]
fn device_x_quantizer_follows_the_q8_1_rule() {
    let mut rng = Rng::new(0x71);
    // (K, warp size, threads, with norm weights, blocks per warp loaded together): a partial last
    // round of blocks (25 blocks, 8 per round; 32 or 24 per round unrolled) and 64-lane warps.
    let cases = [
        (800, 32, 64, true, 1),
        (768, 64, 128, false, 1),
        (800, 32, 64, true, 4),
        (800, 32, 64, false, 3),
        (768, 64, 128, true, 2),
    ];
    let mut launches = Vec::new();
    let mut wanted = Vec::new();
    let mut squares = Vec::new();
    for &(k, warp, threads, with_norm, unroll) in &cases {
        let mut x: Vec<f32> = (0..k).map(|_| rng.normal()).collect();
        x[64..96].fill(0.0);
        // Without norm, d = 1 in block 4 and these are exactly half-way between
        // levels: rounding half to even instead of away from zero would give 2, -2 and 0.
        x[128..132].copy_from_slice(&[127.0, 2.5, -2.5, 0.5]);
        let norm: Vec<f32> = (0..k).map(|_| rng.uniform(0.5, 1.5)).collect();
        let v: Vec<f32> = (0..k)
            .map(|i| x[i] * if with_norm { norm[i] } else { 1.0 })
            .collect();
        wanted.push(Q8x::new(&v));
        squares.push(x.iter().map(|&v| (v * v) as f64).sum::<f64>());
        launches.push(host_sim::Launch {
            spec: quantizer_kernel(k, warp, threads, unroll),
            n_tokens: 1,
            args: format!(
                "(const float*)B[0], {}, (signed char*)B[2], (float*)B[3], (float*)B[4], (float*)B[5]",
                if with_norm { "(const float*)B[1]" } else { "nullptr" }
            ),
            buffers: vec![
                host_sim::f32_bytes(&x),
                host_sim::f32_bytes(&norm),
                vec![0; k],
                vec![0; k / 8],
                vec![0; k / 8],
                vec![0; 4 * threads as usize],
            ],
        });
    }
    let Some(()) = host_sim::run("x-q8", &mut launches) else {
        return;
    };
    for (((case, l), want), squares) in cases.iter().zip(&launches).zip(&wanted).zip(&squares) {
        let q: Vec<i8> = l.buffers[2].iter().map(|&b| b as i8).collect();
        assert_eq!(q, want.q, "{case:?}: int8 x");
        assert_eq!(
            host_sim::bytes_f32(&l.buffers[3]),
            want.d,
            "{case:?}: scales"
        );
        assert_eq!(host_sim::bytes_f32(&l.buffers[4]), want.s, "{case:?}: sums");
        let got: f64 = host_sim::bytes_f32(&l.buffers[5])
            .iter()
            .map(|&v| v as f64)
            .sum();
        assert!(
            (got - squares).abs() <= 1e-5 * squares,
            "{case:?}: sum of squares {got}, want {squares}"
        );
    }
}
