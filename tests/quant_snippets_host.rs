//! The GPU dequantization snippets (`templates/quant/*.hip.tera`) compiled as plain C++ for the
//! host and compared with the CPU dequantizer (itself checked against gguf-py goldens) on random
//! valid blocks of every format. This checks the block layouts and chunk addressing the kernels
//! depend on without a GPU. Skips with a printed reason when no host C++ compiler is found.

mod host_cxx;
mod quant_host;

use std::fmt::Write as _;
use std::path::Path;

use quant_host::{build, read, run_f32, snippet, HOST_SHIM};
use rocmforge::codegen::quant::{gpu_formats, weight_layout};
use rocmforge::gguf::{dequant, quantize, GgmlType};
use rocmforge::util::rng::Rng;

const K: usize = 512;
const ROWS: usize = 3;

/// One program: every snippet in its own namespace; `main(format, file)` dequantizes ROWS rows of
/// K values chunk by chunk, as the kernels do, and writes the floats to stdout.
fn program(formats: &[GgmlType]) -> String {
    let mut src = format!("{HOST_SHIM}{}\n", read("prelude/common.hip.tera"));
    let mut dispatch = String::new();
    for f in formats {
        let layout = weight_layout(*f).unwrap();
        writeln!(src, "namespace {} {{\n{}\n}}", layout.tag, snippet(&layout)).unwrap();
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
    let Some(exe) = build(&dir, &program(&formats)) else {
        return;
    };

    let mut rng = Rng::new(0x5eed);
    for format in formats {
        let tag = weight_layout(format).unwrap().tag;
        let bytes = quantize::random_blocks(format, K * ROWS, &mut rng, 2.0);
        let input = dir.join(format!("{tag}.bin"));
        std::fs::write(&input, &bytes).unwrap();
        let got = run_f32(&exe, &[Path::new(tag), &input]);
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
