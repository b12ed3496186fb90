//! The GPU dequantization snippets (`templates/quant/*.hip.tera`) compiled as plain C++ for the
//! host and compared with the CPU dequantizer (itself checked against gguf-py goldens) on random
//! valid blocks of every format. This checks the block layouts and chunk addressing the kernels
//! depend on without a GPU. Skips with a printed reason when no host C++ compiler is found.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use rocmforge::codegen::quant::{gpu_formats, weight_layout};
use rocmforge::gguf::{dequant, quantize, GgmlType};
use rocmforge::util::rng::Rng;

/// Stand-ins for the device built-ins the snippets use; half conversion done bit by bit.
const HOST_SHIM: &str = r#"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#define __device__
#define __forceinline__ inline
#define __restrict__
struct uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
constexpr int WARP_SIZE = 32;
static inline float rf_shfl_xor(float v, int) { return v; }
static inline int rf_shfl_xor(int v, int) { return v; }
static inline unsigned short __ushort_as_half(unsigned short bits) { return bits; }
static inline float __half2float(unsigned short h) {
    const int exp = (h >> 10) & 31, mant = h & 1023;
    float v = exp == 0 ? std::ldexp((float)mant, -24)
            : exp == 31 ? (mant ? NAN : INFINITY)
            : std::ldexp((float)(mant | 1024), exp - 25);
    return (h >> 15) ? -v : v;
}
static inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
"#;

const K: usize = 512;
const ROWS: usize = 3;

fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("templates")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(templates().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// One program: every snippet in its own namespace; `main(format, file)` dequantizes ROWS rows of
/// K values chunk by chunk, as the kernels do, and writes the floats to stdout.
fn program(formats: &[GgmlType]) -> String {
    let mut src = format!("{HOST_SHIM}{}\n", read("prelude/common.hip.tera"));
    let scale_min = read("quant/k_scale_min.hip.tera");
    let words_a2 = read("quant/words_a2.hip.tera");
    let mut dispatch = String::new();
    for f in formats {
        let layout = weight_layout(*f).unwrap();
        let snippet = read(&layout.template())
            .replace("{% include \"quant/k_scale_min.hip.tera\" %}", &scale_min)
            .replace("{% include \"quant/words_a2.hip.tera\" %}", &words_a2);
        assert!(
            !snippet.contains("{%") && !snippet.contains("{{"),
            "{}: host harness expects plain C++",
            layout.tag
        );
        writeln!(src, "namespace {} {{\n{snippet}\n}}", layout.tag).unwrap();
        writeln!(
            dispatch,
            "    if (!std::strcmp(argv[1], \"{t}\")) {{ using namespace {t}; size_t rb = (size_t)({K} / QK) * QBYTES;\n\
             \x20       for (int r = 0; r < {ROWS}; ++r) for (int c = 0; c < {K} / CHUNK; ++c) dq_chunk(data + r * rb, c, &out[(size_t)r * {K} + c * CHUNK]); }}",
            t = layout.tag
        )
        .unwrap();
    }
    write!(
        src,
        "int main(int argc, char** argv) {{\n\
         \x20   FILE* f = std::fopen(argv[2], \"rb\"); std::vector<unsigned char> raw(1 << 20);\n\
         \x20   unsigned char* data = (unsigned char*)(((size_t)raw.data() + 31) & ~(size_t)31);\n\
         \x20   size_t n = std::fread(data, 1, raw.size() - 64, f); std::fclose(f); (void)n;\n\
         \x20   std::vector<float> out((size_t){ROWS} * {K});\n{dispatch}\
         \x20   std::fwrite(out.data(), 4, out.size(), stdout);\n}}\n"
    )
    .unwrap();
    src
}

#[test]
fn gpu_dequant_snippets_match_the_cpu_dequantizer() {
    let dir = std::env::temp_dir().join(format!("rocmforge-quant-host-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let formats: Vec<GgmlType> = gpu_formats().collect();
    let cpp = dir.join("snippets.cpp");
    let exe = dir.join("snippets");
    std::fs::write(&cpp, program(&formats)).unwrap();
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    let built = match Command::new(&compiler)
        .args(["-std=c++17", "-O1", "-o"])
        .arg(&exe)
        .arg(&cpp)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: no host C++ compiler ({compiler}: {e})");
            return;
        }
    };
    assert!(
        built.status.success(),
        "host build of the snippets failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let mut rng = Rng::new(0x5eed);
    for format in formats {
        let tag = weight_layout(format).unwrap().tag;
        let bytes = quantize::random_blocks(format, K * ROWS, &mut rng, 2.0);
        let input = dir.join(format!("{tag}.bin"));
        std::fs::write(&input, &bytes).unwrap();
        let run = Command::new(&exe).arg(tag).arg(&input).output().unwrap();
        assert!(
            run.status.success(),
            "{tag}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let got: Vec<f32> = run
            .stdout
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let mut want = vec![0f32; K * ROWS];
        dequant::dequantize(format, &bytes, &mut want).unwrap();
        assert_eq!(got.len(), want.len(), "{tag}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            // Both compute the same products in f32; allow one rounding of difference in the order.
            let tol = w.abs() * 2.0 * f32::EPSILON;
            assert!(
                (g - w).abs() <= tol,
                "{tag}: value {i} (row {}, col {}) is {g}, CPU says {w}",
                i / K,
                i % K
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
