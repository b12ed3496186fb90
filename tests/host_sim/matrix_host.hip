// ---- host stand-in for templates/prelude/matrix_cuda.hip.tera (tests/host_sim only) ----
// Every lane holds whole 16x16 tiles and computes the whole product, so only the kernel's own
// tile addressing (pointers, leading dimensions, which tile meets which) is under test; the
// products are f16 x f16 summed in f32 as on tensor cores. A is row-major, B is stored as rows
// of K (element (k, n) at p[n * ld + k]), the accumulator is stored row-major by lane 0.
struct rf_tile_a { float v[16][16]; };
struct rf_tile_b { float v[16][16]; };
struct rf_tile_acc { float v[16][16]; };
static inline void rf_tile_zero(rf_tile_acc& c) { std::memset(c.v, 0, sizeof c.v); }
static inline void rf_tile_load_a(rf_tile_a& a, const __half* p, int ld) {
    if (((size_t)p & 31) != 0 || ld % 8 != 0) std::abort();
    for (int m = 0; m < 16; ++m)
        for (int k = 0; k < 16; ++k) a.v[m][k] = __half2float(p[m * ld + k]);
}
static inline void rf_tile_load_b(rf_tile_b& b, const __half* p, int ld) {
    if (((size_t)p & 31) != 0 || ld % 8 != 0) std::abort();
    for (int n = 0; n < 16; ++n)
        for (int k = 0; k < 16; ++k) b.v[k][n] = __half2float(p[n * ld + k]);
}
static inline void rf_tile_mma(rf_tile_acc& c, const rf_tile_a& a, const rf_tile_b& b) {
    for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 16; ++n) {
            float s = c.v[m][n];
            for (int k = 0; k < 16; ++k) s += a.v[m][k] * b.v[k][n];
            c.v[m][n] = s;
        }
}
static inline void rf_tile_store(float* p, const rf_tile_acc& c, int ld) {
    if (((size_t)p & 31) != 0) std::abort();
    if (sim_tid % sim_warp != 0) return;
    for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 16; ++n) p[m * ld + n] = c.v[m][n];
}
static inline void rf_tile_load_acc(rf_tile_acc& c, const float* p, int ld) {
    if (((size_t)p & 31) != 0) std::abort();
    for (int m = 0; m < 16; ++m)
        for (int n = 0; n < 16; ++n) c.v[m][n] = p[m * ld + n];
}
static inline void rf_tile_sync() { sim_warp_barriers[sim_tid / sim_warp]->arrive_and_wait(); }
static inline unsigned int rf_pack_f16x2(float lo, float hi) {
    return (unsigned int)__float2half(lo).bits | ((unsigned int)__float2half(hi).bits << 16);
}
// The int8 16x8x32 multiply with the PTX fragment layout (see matrix_cuda.hip.tera): the lanes'
// fragments go through memory between two warp barriers, and each lane sums its four outputs.
static unsigned sim_mma_a[1024][4];
static unsigned sim_mma_b[1024][2];
static inline void rf_mma_s8_16x8x32(int (&c)[4], const unsigned int (&a)[4], const unsigned int (&b)[2]) {
    const int lane = sim_tid % sim_warp, base = sim_tid - lane;
    std::barrier<>& bar = *sim_warp_barriers[sim_tid / sim_warp];
    for (int r = 0; r < 4; ++r) sim_mma_a[sim_tid][r] = a[r];
    for (int r = 0; r < 2; ++r) sim_mma_b[sim_tid][r] = b[r];
    bar.arrive_and_wait();
    const int g = lane / 4, t = lane % 4;
    for (int e = 0; e < 4; ++e) {
        const int row = g + 8 * (e / 2), col = 2 * t + e % 2;
        int s = 0;
        for (int k = 0; k < 32; ++k) {
            // A[row][k] is in lane (row % 8) * 4 + (k % 16) / 4, register row / 8 + 2 * (k / 16);
            // B[k][col] in lane col * 4 + (k % 16) / 4, register k / 16; byte k % 4 of the word.
            const unsigned aw = sim_mma_a[base + (row % 8) * 4 + (k % 16) / 4][row / 8 + 2 * (k / 16)];
            const unsigned bw = sim_mma_b[base + col * 4 + (k % 16) / 4][k / 16];
            s += (int)(signed char)(aw >> 8 * (k % 4)) * (int)(signed char)(bw >> 8 * (k % 4));
        }
        c[e] += s;
    }
    bar.arrive_and_wait();
}
