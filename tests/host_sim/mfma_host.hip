// ---- host stand-in for templates/prelude/mfma_hip.hip.tera (tests/host_sim only) ----
// v_mfma_f32_16x16x16f16 emulated lane by lane with the register layout of AMD's CDNA ISA
// guides: A[i][k] is element k % 4 of lane i + 16 (k / 4), B[k][j] element k % 4 of lane
// j + 16 (k / 4), and D[i][j] element i % 4 of lane j + 16 (i / 4). The lanes' fragments go
// through memory between two wavefront barriers, so the layout code of matrix_hip.hip.tera
// (which lane loads and stores what) is what runs.
static inline int rf_lane() { return sim_tid % sim_warp; }
static float sim_mfma_a[1024][4];
static float sim_mfma_b[1024][4];
static inline void rf_mfma_16x16x16(float (&d)[4], const __half (&a)[4], const __half (&b)[4]) {
    if (sim_warp != 64) std::abort();
    const int lane = sim_tid % sim_warp, base = sim_tid - lane;
    std::barrier<>& bar = *sim_warp_barriers[sim_tid / sim_warp];
    for (int e = 0; e < 4; ++e) {
        sim_mfma_a[sim_tid][e] = __half2float(a[e]);
        sim_mfma_b[sim_tid][e] = __half2float(b[e]);
    }
    bar.arrive_and_wait();
    const int j = lane % 16;
    for (int e = 0; e < 4; ++e) {
        const int i = 4 * (lane / 16) + e;
        float s = d[e];
        for (int k = 0; k < 16; ++k) s += sim_mfma_a[base + i + 16 * (k / 4)][k % 4] * sim_mfma_b[base + j + 16 * (k / 4)][k % 4];
        d[e] = s;
    }
    bar.arrive_and_wait();
}
static inline void rf_tile_sync() { sim_warp_barriers[sim_tid / sim_warp]->arrive_and_wait(); }
static inline unsigned int rf_pack_f16x2(float lo, float hi) {
    return (unsigned int)__float2half(lo).bits | ((unsigned int)__float2half(hi).bits << 16);
}
