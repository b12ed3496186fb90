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
static inline void rf_tile_sync() { sim_warp_barriers[sim_tid / sim_warp]->arrive_and_wait(); }
static inline unsigned int rf_pack_f16x2(float lo, float hi) {
    return (unsigned int)__float2half(lo).bits | ((unsigned int)__float2half(hi).bits << 16);
}
