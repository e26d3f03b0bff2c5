//! The lean forward pass's hot kernels (criterion): activation quantisation, and a matrix-vector
//! product of the default model's shapes (1536 x 576 and 576 x 1536) in every block type whose
//! rows fit (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0; the K-quants Q4_K, Q5_K, Q6_K need rows of 256s),
//! and of 1024 x 2048 in every type,
//! one row at a time, on one thread, at every kernel level this CPU runs (portable, AVX2,
//! AVX-512 VNNI), for one token (decode) and four at once (prompt processing); Q4_0, Q4_1,
//! Q8_0, Q4_K and Q6_K striped (as a model's matrices are) and not (`_unstriped`).
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark harness")]

use candle_core::quantized::QTensor;
use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rempart::engine::lean::kernels::{Kind, Level, Packed, QAct};
use rempart::engine::testing::values;

fn kernels_bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("lean_kernels");
    // The default model's two shapes, and one of a 2048-wide model's (the 1B shape's width)
    // that the K-quants' 256-value rows fit: a megabyte or two, so the figure is the
    // kernel's own speed from cache, to set against the memory bandwidth a generation step
    // needs.
    for (rows, cols) in [(1536usize, 576usize), (576, 1536), (1024, 2048)] {
        let x = values(4 * cols, 1);
        g.throughput(Throughput::Elements(cols as u64));
        let mut q = QAct::default();
        g.bench_function(format!("quantize_{cols}"), |b| {
            b.iter(|| {
                q.f_mut(1, cols).copy_from_slice(&x[..cols]);
                q.quantize();
            });
        });
        let xq = QAct::new(x.clone(), cols);
        let ys = [xq.token(0), xq.token(1), xq.token(2), xq.token(3)];
        for kind in Kind::ALL {
            if kind == Kind::F32 || !cols.is_multiple_of(kind.row_multiple()) {
                continue;
            }
            let dtype = kind.ggml();
            let w = Tensor::from_vec(values(rows * cols, 2), (rows, cols), &Device::Cpu).unwrap();
            let data = QTensor::quantize(&w, dtype)
                .unwrap()
                .data()
                .unwrap()
                .into_owned();
            // Striped where the kind is (as a model's matrices are), and also not, to compare.
            let mut layouts = vec![(Packed::from_ggml(kind, rows, cols, &data).unwrap(), "")];
            if layouts[0].0.striped() {
                let flat = Packed::from_ggml_as(kind, rows, cols, &data, false).unwrap();
                layouts.push((flat, "_unstriped"));
            }
            let mut out = vec![0f32; 4 * rows];
            for (p, layout) in &layouts {
                for level in Level::available() {
                    let name = format!("{kind:?}_{rows}x{cols}_{level:?}{layout}");
                    g.throughput(Throughput::Bytes(data.len() as u64));
                    g.bench_function(format!("matvec_{name}"), |b| {
                        b.iter(|| p.matvec(level, 0..rows, &[ys[0]], &mut out, (1, 0)));
                    });
                    g.throughput(Throughput::Bytes(4 * data.len() as u64));
                    g.bench_function(format!("matmul4_{name}"), |b| {
                        b.iter(|| p.matvec(level, 0..rows, &ys, &mut out, (4, 0)));
                    });
                }
            }
        }
    }
    g.finish();
}

criterion_group!(benches, kernels_bench);
criterion_main!(benches);
