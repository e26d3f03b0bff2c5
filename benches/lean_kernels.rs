//! The lean forward pass's hot kernels (criterion): activation quantisation, and a matrix-vector
//! product of the default model's shapes (1536 x 576 and 576 x 1536) in Q4_1 and Q8_0 blocks,
//! one row at a time with the block dot product, on one thread.
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark harness")]

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rempart::engine::lean::kernels::{self, BLOCK, Kind, Q8};

fn values(n: usize, mut seed: u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn kernels_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("lean_kernels");
    for (rows, cols) in [(1536usize, 576usize), (576, 1536)] {
        let x = values(cols, 1);
        let mut xq = vec![Q8::default(); cols / BLOCK];
        g.throughput(Throughput::Elements(cols as u64));
        g.bench_function(format!("quantize_{cols}"), |b| {
            b.iter(|| kernels::quantize(&x, &mut xq));
        });
        kernels::quantize(&x, &mut xq);
        for (dtype, kind) in [(GgmlDType::Q4_1, Kind::Q4_1), (GgmlDType::Q8_0, Kind::Q8_0)] {
            let w = Tensor::from_vec(values(rows * cols, 2), (rows, cols), &Device::Cpu).unwrap();
            let data = QTensor::quantize(&w, dtype)
                .unwrap()
                .data()
                .unwrap()
                .into_owned();
            let row_bytes = cols / BLOCK * kind.block_bytes();
            let mut out = vec![0f32; rows];
            g.throughput(Throughput::Bytes(data.len() as u64));
            g.bench_function(format!("matvec_{kind:?}_{rows}x{cols}"), |b| {
                b.iter(|| {
                    for (o, row) in out.iter_mut().zip(data.chunks_exact(row_bytes)) {
                        *o = kernels::dot(kind, row, &xq, &x);
                    }
                });
            });
        }
    }
    g.finish();
}

criterion_group!(benches, kernels_bench);
criterion_main!(benches);
