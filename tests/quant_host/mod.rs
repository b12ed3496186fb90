//! Shared by the snippet tests that compile `templates/quant/*.hip.tera` as plain host C++: the
//! stand-ins for device built-ins, the snippet text with its includes resolved, and the build.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::host_cxx;

use rocmforge::codegen::quant::WeightLayout;

/// Stand-ins for the device built-ins the snippets use; half conversion done bit by bit.
pub const HOST_SHIM: &str = r#"
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#define __device__
#define __forceinline__ inline
#define __restrict__
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct float4 { float x, y, z, w; };
static inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
constexpr int WARP_SIZE = 32;
static inline float rf_shfl_xor(float v, int) { return v; }
static inline int rf_shfl_xor(int v, int) { return v; }
// One thread, no stream: nothing to wait for or signal.
static inline void rf_wait_for_inputs() {}
static inline void rf_let_successor_launch() {}
static inline int rf_dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; ++i) c += (int)(signed char)(a >> 8 * i) * (int)(signed char)(b >> 8 * i);
    return c;
}
static inline unsigned rf_funnel_r(unsigned lo, unsigned hi, int s) {
    return (unsigned)((((unsigned long long)hi << 32) | lo) >> s);
}
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

fn templates() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("templates")
}

/// A template file's text.
pub fn read(rel: &str) -> String {
    std::fs::read_to_string(templates().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A format's snippet with its includes pasted in, as plain C++.
pub fn snippet(layout: &WeightLayout) -> String {
    let mut text = read(&layout.template());
    for include in ["quant/k_scale_min.hip.tera", "quant/words_a2.hip.tera"] {
        text = text.replace(&format!("{{% include \"{include}\" %}}"), &read(include));
    }
    assert!(
        !text.contains("{%") && !text.contains("{{"),
        "{}: host harness expects plain C++",
        layout.tag
    );
    text
}

/// Compiles `source` into an executable under `dir`; None (reason printed) without a host C++
/// compiler.
pub fn build(dir: &Path, source: &str) -> Option<PathBuf> {
    match host_cxx::compile(dir, "snippets", source, &["-std=c++17", "-O1"])? {
        Ok(exe) => Some(exe),
        Err(err) => panic!("host build of the snippets failed: {err}"),
    }
}

/// Runs `exe` with `args` and returns its stdout as little-endian f32s.
pub fn run_f32(exe: &Path, args: &[&Path]) -> Vec<f32> {
    let run = Command::new(exe).args(args).output().unwrap();
    assert!(
        run.status.success(),
        "{}: {}",
        exe.display(),
        String::from_utf8_lossy(&run.stderr)
    );
    run.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}
