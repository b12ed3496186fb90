//! CPU dequantization and fused dot throughput per weight format (the CPU engine's inner loop).
//! `cargo bench --bench dequant`; elements per second are reported by criterion.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rocmforge::gguf::dequant::{dequantize, dot_row};
use rocmforge::gguf::quantize::random_blocks;
use rocmforge::gguf::types::SUPPORTED;
use rocmforge::util::rng::Rng;

const K: usize = 4096;
const ROWS: usize = 64;

fn formats(c: &mut Criterion) {
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..K).map(|_| rng.normal()).collect();
    let mut group = c.benchmark_group("cpu");
    group.throughput(Throughput::Elements((K * ROWS) as u64));
    for &ty in SUPPORTED {
        let w = random_blocks(ty, K * ROWS, &mut rng, 0.05);
        let row_bytes = w.len() / ROWS;
        group.bench_function(format!("dot_row/{ty}"), |b| {
            b.iter(|| {
                w.chunks_exact(row_bytes)
                    .map(|r| dot_row(ty, r, &x))
                    .sum::<f32>()
            })
        });
        let mut out = vec![0f32; K * ROWS];
        group.bench_function(format!("dequantize/{ty}"), |b| {
            b.iter(|| dequantize(ty, &w, &mut out).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, formats);
criterion_main!(benches);
