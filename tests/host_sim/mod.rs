//! Runs generated kernels on the host: the rendered HIP source is compiled as C++20 with a shim
//! that executes each block as real threads (`__syncthreads` is a block barrier, warp shuffles
//! exchange through memory between two warp barriers), blocks one after another. Slow and only
//! for small shapes, but it executes the exact kernel code, so indexing, reductions, split-K and
//! the flash-decoding merge are checked against the CPU engine without a GPU.
#![allow(dead_code)]

pub mod fused;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::host_cxx;

use rocmforge::codegen::ops::matmul::GemvKnobs;
use rocmforge::codegen::render::template_names;
use rocmforge::codegen::KernelSpec;

const SHIM: &str = r#"
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>
#define __device__
#define __global__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static
#define __launch_bounds__(...)
struct dim3 { unsigned x = 1, y = 1, z = 1; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
static inline uint2 make_uint2(unsigned a, unsigned b) { return uint2{a, b}; }
static inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }
#define __align__(n) __attribute__((aligned(n)))
static inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
struct __half { unsigned short bits; };
static inline __half __ushort_as_half(unsigned short b) { return __half{b}; }
static inline float __half2float(__half h) { _Float16 f; std::memcpy(&f, &h.bits, 2); return (float)f; }
static inline __half __float2half(float v) { _Float16 f = (_Float16)v; __half h; std::memcpy(&h.bits, &f, 2); return h; }
static inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
static inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
// The HIP prelude's rf_dp4a: four signed byte products summed into c.
static inline int __builtin_amdgcn_sdot4(int a, int b, int c, bool) {
    for (int i = 0; i < 4; ++i) c += (int)(signed char)(a >> 8 * i) * (int)(signed char)(b >> 8 * i);
    return c;
}
// The HIP prelude's rf_funnel_r: (hi:lo) >> s, low 32 bits.
static inline unsigned __builtin_amdgcn_alignbit(unsigned hi, unsigned lo, unsigned s) {
    return (unsigned)((((unsigned long long)hi << 32) | lo) >> (s & 31));
}
// The HIP prelude's rf_loads_issued: a scheduling barrier, nothing to do on the host.
static inline void __builtin_amdgcn_wave_barrier() {}
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

thread_local dim3 threadIdx, blockIdx;
thread_local int sim_tid;
static dim3 blockDim, gridDim;
static std::barrier<>* sim_block_barrier;
static std::vector<std::unique_ptr<std::barrier<>>> sim_warp_barriers;
static unsigned long long sim_exchange[1024];
static int sim_warp = 32;
// Blocks run last to first when set: a kernel whose blocks depend on each other's order (one
// reading what another writes, without the last-block merge's handshake) fails one way or the other.
static const bool sim_reverse = std::getenv("SIM_REVERSE_BLOCKS") != nullptr;

static inline void __syncthreads() { sim_block_barrier->arrive_and_wait(); }
template <class T> static T __shfl_xor(T v, int mask, int width) {
    const int lane = sim_tid % width, base = sim_tid - lane;
    std::barrier<>& bar = *sim_warp_barriers[sim_tid / width];
    unsigned long long raw = 0;
    std::memcpy(&raw, &v, sizeof(T));
    sim_exchange[sim_tid] = raw;
    bar.arrive_and_wait();
    raw = sim_exchange[base + (lane ^ mask)];
    bar.arrive_and_wait();
    T out;
    std::memcpy(&out, &raw, sizeof(T));
    return out;
}

template <class F> static void sim_launch(dim3 grid, dim3 block, int warp, F kernel) {
    gridDim = grid;
    blockDim = block;
    sim_warp = warp;
    const int n = block.x * block.y * block.z;
    const unsigned blocks = grid.x * grid.y * grid.z;
    for (unsigned b = 0; b < blocks; ++b) {
        const unsigned at = sim_reverse ? blocks - 1 - b : b;
        const unsigned bx = at % grid.x, by = at / grid.x % grid.y, bz = at / (grid.x * grid.y);
        std::barrier<> block_barrier(n);
        sim_block_barrier = &block_barrier;
        sim_warp_barriers.clear();
        for (int w = 0; w < (n + warp - 1) / warp; ++w) sim_warp_barriers.push_back(std::make_unique<std::barrier<>>(warp));
        std::vector<std::thread> threads;
        for (int t = 0; t < n; ++t) {
            threads.emplace_back([&, t] {
                sim_tid = t;
                threadIdx = dim3{(unsigned)(t % block.x), (unsigned)((t / block.x) % block.y), (unsigned)(t / (block.x * block.y))};
                blockIdx = dim3{bx, by, bz};
                kernel();
                // A thread that returned early must not hold back the barriers of the others.
                sim_block_barrier->arrive_and_drop();
                sim_warp_barriers[t / warp]->arrive_and_drop();
            });
        }
        for (auto& th : threads) th.join();
    }
}

static std::vector<unsigned char*> sim_read(const char* path, std::vector<size_t>& lens) {
    FILE* f = std::fopen(path, "rb");
    unsigned count = 0;
    if (std::fread(&count, 4, 1, f) != 1) std::abort();
    std::vector<unsigned char*> bufs;
    for (unsigned i = 0; i < count; ++i) {
        unsigned long long len = 0;
        if (std::fread(&len, 8, 1, f) != 1) std::abort();
        unsigned char* p = (unsigned char*)std::aligned_alloc(64, ((len + 63) / 64 + 1) * 64);
        if (len && std::fread(p, 1, len, f) != len) std::abort();
        bufs.push_back(p);
        lens.push_back(len);
    }
    std::fclose(f);
    return bufs;
}

static void sim_write(const char* path, const std::vector<unsigned char*>& bufs, const std::vector<size_t>& lens) {
    FILE* f = std::fopen(path, "wb");
    for (size_t i = 0; i < bufs.size(); ++i) std::fwrite(bufs[i], 1, lens[i], f);
    std::fclose(f);
}
"#;

/// The templates with the device-only preludes swapped for host-runnable ones, in a fresh
/// folder: for NVIDIA the matrix prelude is replaced by a scalar stand-in (matrix_host.hip) and
/// the CUDA prelude by the HIP one; for AMD only the MFMA instruction (mfma_host.hip).
pub fn host_templates(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let host = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/host_sim");
    let dir =
        std::env::temp_dir().join(format!("rocmforge-templates-{name}-{}", std::process::id()));
    for name in template_names() {
        let from = match name {
            "prelude/cuda.hip.tera" => src.join("prelude/hip.hip.tera"),
            "prelude/matrix_cuda.hip.tera" => host.join("matrix_host.hip"),
            "prelude/mfma_hip.hip.tera" => host.join("mfma_host.hip"),
            _ => src.join(name),
        };
        let to = dir.join(name);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    dir
}

/// The host build: every typed load from an address not aligned to its type (a `uint4` from one
/// not a multiple of 16) aborts the run, as a misaligned vector load faults on a GPU; x86 would
/// otherwise just load it.
const SIM_FLAGS: &[&str] = &[
    "-std=c++20",
    "-O1",
    "-pthread",
    "-w",
    "-fsanitize=alignment",
    "-fno-sanitize-recover=alignment",
];

/// One launch: the kernel, its launch geometry, its buffers, and the call with buffers `B[i]`.
pub struct Launch {
    pub spec: KernelSpec,
    pub n_tokens: u32,
    /// C++ call arguments, e.g. `(const float*)B[0], (float*)B[1], n_tokens`.
    pub args: String,
    pub buffers: Vec<Vec<u8>>,
}

/// Builds one program holding every launch's kernel (each in its own namespace), runs each launch
/// and replaces its buffers with their contents afterwards. None (reason printed) without a host
/// C++20 compiler.
pub fn run(name: &str, launches: &mut [Launch]) -> Option<()> {
    run_repeated(name, launches, 1, false)
}

/// As [`run`], with each grid's blocks run last to first.
pub fn run_reversed(name: &str, launches: &mut [Launch]) -> Option<()> {
    run_repeated(name, launches, 1, true)
}

/// As [`run`], each launch `runs` times in a row on the same buffers within one process, so
/// that a kernel's `__device__` state (a last-block ticket) carries from one run to the next;
/// blocks last to first when `reverse`.
pub fn run_repeated(name: &str, launches: &mut [Launch], runs: u32, reverse: bool) -> Option<()> {
    let dir =
        std::env::temp_dir().join(format!("rocmforge-host-sim-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut src = SHIM.to_string();
    let mut cases = String::new();
    // extern "C" entry points must be unique: one namespace per distinct kernel.
    let mut namespaces: Vec<&str> = Vec::new();
    for (i, l) in launches.iter().enumerate() {
        let ns = match namespaces.iter().position(|n| *n == l.spec.name) {
            Some(at) => at,
            None => {
                writeln!(
                    src,
                    "namespace k{} {{\n{}\n}}",
                    namespaces.len(),
                    l.spec.source
                )
                .unwrap();
                namespaces.push(&l.spec.name);
                namespaces.len() - 1
            }
        };
        let (gx, gy, gz) = l.spec.grid(l.n_tokens);
        let (bx, by, bz) = l.spec.block;
        writeln!(
            cases,
            "    case {i}: {{ const int n_tokens = {n}; (void)n_tokens; for (unsigned r = 0; r < {runs}; ++r) sim_launch(dim3{{{gx}, {gy}, {gz}}}, dim3{{{bx}, {by}, {bz}}}, k{ns}::WARP_SIZE, [&] {{ k{ns}::{name}({args}); }}); break; }}",
            n = l.n_tokens,
            name = l.spec.name,
            args = l.args
        )
        .unwrap();
    }
    write!(
        src,
        "int main(int argc, char** argv) {{\n    std::vector<size_t> lens;\n    std::vector<unsigned char*> B = sim_read(argv[2], lens);\n    switch (std::atoi(argv[1])) {{\n{cases}    default: return 2;\n    }}\n    sim_write(argv[3], B, lens);\n}}\n"
    )
    .unwrap();
    let exe = match host_cxx::compile(&dir, "sim", &src, SIM_FLAGS)? {
        Ok(exe) => exe,
        Err(err) if err.contains("<barrier>") || err.contains("_Float16") => {
            eprintln!("skipped: host C++ compiler lacks C++20 <barrier> or _Float16: {err}");
            return None;
        }
        Err(err) => panic!("host build failed: {err}"),
    };
    for (i, l) in launches.iter_mut().enumerate() {
        let input: PathBuf = dir.join(format!("in{i}.bin"));
        let output: PathBuf = dir.join(format!("out{i}.bin"));
        let mut bytes = (l.buffers.len() as u32).to_le_bytes().to_vec();
        for b in &l.buffers {
            bytes.extend((b.len() as u64).to_le_bytes());
            bytes.extend(b);
        }
        std::fs::write(&input, bytes).unwrap();
        let mut command = Command::new(&exe);
        if reverse {
            command.env("SIM_REVERSE_BLOCKS", "1");
        }
        let run = command
            .arg(i.to_string())
            .arg(&input)
            .arg(&output)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}: {}",
            l.spec.name,
            String::from_utf8_lossy(&run.stderr)
        );
        let out = std::fs::read(&output).unwrap();
        let mut at = 0;
        for b in &mut l.buffers {
            let len = b.len();
            b.copy_from_slice(&out[at..at + len]);
            at += len;
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    Some(())
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Largest |got - want| relative to the largest |want| (at least 1).
pub fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    // f32::max drops NaN: a NaN output counts as an infinite error instead.
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / scale)
        .fold(
            0.0,
            |m, e| if e.is_nan() { f32::INFINITY } else { m.max(e) },
        )
}

/// x as q8_1 blocks of 32, by ggml's quantize_row_q8_1 rule: q = round(v / d) half away from
/// zero, d = max|v| / 127 (q = 0 for a zero block), s = d * sum(q). What an int8-x GEMV
/// multiplies with.
pub struct Q8x {
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    pub s: Vec<f32>,
}

impl Q8x {
    pub fn new(x: &[f32]) -> Q8x {
        let mut out = Q8x {
            q: Vec::new(),
            d: Vec::new(),
            s: Vec::new(),
        };
        for block in x.chunks_exact(32) {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let q: Vec<i8> = block
                .iter()
                .map(|v| {
                    if amax == 0.0 {
                        0
                    } else {
                        (v / d).round() as i8
                    }
                })
                .collect();
            let sum: i32 = q.iter().map(|&v| v as i32).sum();
            out.q.extend(q);
            out.d.push(d);
            out.s.push(d * sum as f32);
        }
        out
    }

    pub fn dequantized(&self) -> Vec<f32> {
        self.q
            .iter()
            .enumerate()
            .map(|(i, &q)| self.d[i / 32] * q as f32)
            .collect()
    }
}

/// GEMV knobs with f32 x, for the simulated GEMV cases.
pub fn gemv_knobs(rows_per_block: u32, rows_per_warp: u32, split_k: u32, tokens: u32) -> GemvKnobs {
    GemvKnobs {
        rows_per_block,
        rows_per_warp,
        split_k,
        tokens,
        x_int8: false,
        prefetch: 0,
        unroll: 1,
        row_groups: 1,
        preload: false,
        lane_group: 0,
    }
}

/// GEMV knobs with int8 x (one token per block).
pub fn gemv_knobs_int8(rows_per_block: u32, rows_per_warp: u32, split_k: u32) -> GemvKnobs {
    GemvKnobs {
        x_int8: true,
        // No-op on the simulated HIP targets, but the prefetch loop's indexing runs.
        prefetch: 2,
        ..gemv_knobs(rows_per_block, rows_per_warp, split_k, 1)
    }
}

/// `knobs` with chunk rounds of `unroll` loads and `row_groups` row groups per block.
pub fn gemv_wide(knobs: GemvKnobs, unroll: u32, row_groups: u32) -> GemvKnobs {
    GemvKnobs {
        unroll,
        row_groups,
        ..knobs
    }
}

/// `knobs` with the first round of weights loaded before the x prologue.
pub fn gemv_preload(knobs: GemvKnobs) -> GemvKnobs {
    GemvKnobs {
        preload: true,
        ..knobs
    }
}

/// `knobs` with lane groups of `lane_group` blocks (int8 x).
pub fn gemv_lanes(knobs: GemvKnobs, lane_group: u32) -> GemvKnobs {
    GemvKnobs {
        lane_group,
        ..knobs
    }
}
