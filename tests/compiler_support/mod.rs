//! Shared pieces of the compiler tests: a tiny vendor prelude, a saxpy kernel with a warp
//! reduction written in the HIP dialect, and the skip-or-fail rule for absent compilers.
#![allow(dead_code)] // each test binary uses a different part of this module

use rocmforge::codegen::compiler::{CompileError, Compiler, KernelSource};

/// The one place where NVIDIA and AMD differ for these kernels, like the real templates' prelude.
pub const PRELUDE: &str = r#"
#ifdef __CUDACC_RTC__
#include <cuda_fp16.h>
#define SHFL_XOR(v, mask) __shfl_xor_sync(0xffffffffu, (v), (mask))
#else
#define SHFL_XOR(v, mask) __shfl_xor((v), (mask))
#endif
"#;

/// out = a*x + y, plus one partial sum per warp reduced with butterfly shuffles, and a round
/// trip through __half so that the half type of each platform is exercised.
pub const SAXPY_BODY: &str = r#"
extern "C" __global__ void saxpy_warp_sum(float a, const float* x, const float* y, float* out,
                                          float* warp_sums, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? a * x[i] + y[i] : 0.0f;
    if (i < n) out[i] = __half2float(__float2half(v));
    for (int mask = WARP_SIZE / 2; mask > 0; mask >>= 1) v += SHFL_XOR(v, mask);
    if (threadIdx.x % WARP_SIZE == 0) warp_sums[i / WARP_SIZE] = v;
}
"#;

pub fn saxpy(warp_size: u32) -> KernelSource {
    KernelSource {
        name: "saxpy_warp_sum".to_string(),
        source: format!("{PRELUDE}{SAXPY_BODY}"),
        options: vec![format!("-DWARP_SIZE={warp_size}")],
        context_json: format!(r#"{{"op":"saxpy","warp_size":{warp_size}}}"#),
    }
}

/// A kernel with a syntax error on a known line.
pub fn broken() -> KernelSource {
    KernelSource {
        name: "broken_kernel".to_string(),
        source: format!("{PRELUDE}\nextern \"C\" __global__ void broken_kernel(float* x) {{ x[0] = 1.0f +; }}\n"),
        options: vec![],
        context_json: r#"{"op":"broken","marker":"ctx-7f3a"}"#.to_string(),
    }
}

/// The compiler, or None after printing why the test is skipped. With
/// ROCMFORGE_REQUIRE_COMPILERS=1 (set by tools/ci/env.sh) an absent compiler fails the test.
pub fn load_or_skip<C: Compiler>(loaded: Result<C, CompileError>) -> Option<C> {
    match loaded {
        Ok(compiler) => Some(compiler),
        Err(err) if std::env::var("ROCMFORGE_REQUIRE_COMPILERS").is_ok_and(|v| v == "1") => {
            panic!("ROCMFORGE_REQUIRE_COMPILERS=1 but: {err}")
        }
        Err(err) => {
            eprintln!("skipped: {err}");
            None
        }
    }
}

/// The ELF header's e_machine field (224 = AMDGPU, 190 = CUDA).
pub fn elf_machine(binary: &[u8]) -> u16 {
    assert_eq!(&binary[..4], b"\x7fELF", "not an ELF file");
    u16::from_le_bytes([binary[18], binary[19]])
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
