//! The ceiling of generation's 1 -> 2 thread scaling on this machine: the matrix products of
//! one generation step of the default model (SmolLM2-135M: 30 layers of q, k, v, o, gate, up
//! and down in `Q4_1`, the tied `Q8_0` output), in the same parallel regions, tasks of 32 rows
//! and kernels as the lean pass, on the same huge-page arena, with nothing between regions:
//! no norms, no quantisation, no attention. A real step also has those serial parts, so it
//! cannot scale better than this.
//!
//!     cargo run --release --example products_ceiling [ROUNDS [MODEL.gguf]]
//!
//! Prints, for each round, the median step time on 1 then 2 threads (100 steps each) and
//! their ratio, then the medians over the rounds. Given the model's GGUF file, each round
//! first times a real generation (128 steps, greedy, on 1 then 2 threads) in the same
//! process, so that the two scalings are measured side by side, minutes of this VM's drift
//! apart at most.
#![allow(
    missing_docs,
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "a measurement tool: prints its figures, reads the trusted model file it is given"
)]

use std::sync::Arc;
use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rempart::engine::lean::kernels::{Kind, Level, Packed, QAct};
use rempart::engine::lean::pack::{Store, pack_in_place};
use rempart::engine::lean::team::Team;
use rempart::engine::testing::values;
use rempart::engine::{Backend, Forward, argmax, load_arena};
use rempart::secure::LockedBuf;

const DIM: usize = 576;
const KV: usize = 192;
const FFN: usize = 1536;
const VOCAB: usize = 49152;
const LAYERS: usize = 30;
const ROWS_PER_TASK: usize = 32;

/// GGUF bytes of a `rows` x `cols` matrix of `dtype` (random weights).
fn ggml(rows: usize, cols: usize, dtype: GgmlDType) -> Result<Vec<u8>, String> {
    let w = Tensor::from_vec(values(rows * cols, 7), (rows, cols), &Device::Cpu)
        .map_err(|e| e.to_string())?;
    let q = QTensor::quantize(&w, dtype).map_err(|e| e.to_string())?;
    Ok(q.data().map_err(|e| e.to_string())?.into_owned())
}

/// One step's regions, in order: each a list of `(matrix, output)`.
type Regions = Vec<Vec<(usize, usize)>>;

fn main() -> Result<(), String> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(6usize)
        .max(1);
    // Shapes in step order; regions share an input as in the lean pass.
    let layer = [
        (DIM, DIM, Kind::Q4_1),
        (KV, DIM, Kind::Q4_1),
        (KV, DIM, Kind::Q4_1),
        (DIM, DIM, Kind::Q4_1),
        (FFN, DIM, Kind::Q4_1),
        (FFN, DIM, Kind::Q4_1),
        (DIM, FFN, Kind::Q4_1),
    ];
    let mut shapes = Vec::new();
    for _ in 0..LAYERS {
        shapes.extend_from_slice(&layer);
    }
    shapes.push((VOCAB, DIM, Kind::Q8_0));
    let mut regions: Regions = Vec::new();
    for l in 0..LAYERS {
        let b = l * layer.len();
        regions.push(vec![(b, 0), (b + 1, 1), (b + 2, 2)]);
        regions.push(vec![(b + 3, 0)]);
        regions.push(vec![(b + 4, 3), (b + 5, 4)]);
        regions.push(vec![(b + 6, 0)]);
    }
    regions.push(vec![(LAYERS * layer.len(), 5)]);

    // The GGUF bytes of each shape once, copied into one arena, then repacked in place.
    let mut bytes_of = std::collections::HashMap::new();
    for &(r, c, k) in &layer {
        let dtype = if k == Kind::Q8_0 {
            GgmlDType::Q8_0
        } else {
            GgmlDType::Q4_1
        };
        bytes_of.insert((r, c), ggml(r, c, dtype)?);
    }
    bytes_of.insert((VOCAB, DIM), ggml(VOCAB, DIM, GgmlDType::Q8_0)?);
    let mut offsets = Vec::new();
    let mut len = 0usize;
    for &(r, c, _) in &shapes {
        // Each matrix 64-byte aligned, as the GGUF's tensor data is at least 32-byte aligned.
        len = len.next_multiple_of(64);
        offsets.push(len);
        len += bytes_of.get(&(r, c)).map_or(0, Vec::len);
    }
    let mut arena = LockedBuf::new(len, false).map_err(|e| e.to_string())?;
    let mut layouts = Vec::new();
    for (&(r, c, k), &at) in shapes.iter().zip(&offsets) {
        let b = bytes_of.get(&(r, c)).ok_or("no bytes")?;
        let buf = arena.as_mut_slice();
        buf.get_mut(at..at + b.len())
            .ok_or("arena too small")?
            .copy_from_slice(b);
        // Striped where the kind allows, as the lean pass packs them.
        layouts.push(pack_in_place(k, r, c, buf, (at..at + b.len(), true))?);
    }
    let store = Arc::new(Store::Arena(arena));
    let mats: Vec<Packed> = layouts
        .into_iter()
        .map(|l| Packed::new(store.clone(), l))
        .collect();
    println!(
        "{} matrices, {:.1} MB of weights",
        mats.len(),
        len as f64 / 1e6
    );

    let x576 = QAct::new(values(DIM, 3), DIM);
    let x1536 = QAct::new(values(FFN, 4), FFN);
    let mut outs: Vec<Vec<f32>> = [DIM, KV, KV, FFN, FFN, VOCAB]
        .iter()
        .map(|&n| vec![0.0; n])
        .collect();
    let level = Level::best();
    let teams = [
        Team::new(1).map_err(|e| e.to_string())?,
        Team::new(2).map_err(|e| e.to_string())?,
    ];

    let mut step = |team: &Team| -> Result<f64, String> {
        let start = Instant::now();
        for region in &regions {
            // Disjoint outputs: take them out for the region, put them back after.
            let mut taken: Vec<(usize, Vec<f32>)> = region
                .iter()
                .map(|&(_, o)| (o, std::mem::take(&mut outs[o])))
                .collect();
            let mut tasks = Vec::new();
            for (&(m, _), (_, out)) in region.iter().zip(taken.iter_mut()) {
                let mat = &mats[m];
                for (c, chunk) in out.chunks_mut(ROWS_PER_TASK).enumerate() {
                    tasks.push((mat, c * ROWS_PER_TASK, chunk));
                }
            }
            team.for_each(&mut tasks, |(mat, r0, chunk)| {
                let x = if mat.cols() == FFN { &x1536 } else { &x576 };
                let rows = *r0..*r0 + chunk.len();
                mat.matvec(level, rows, &[x.token(0)], chunk, (1, 0));
            })
            .map_err(|_| "a task panicked".to_owned())?;
            drop(tasks);
            for (o, v) in taken {
                outs[o] = v;
            }
        }
        Ok(start.elapsed().as_secs_f64())
    };

    // The real model, if given: its generation steps, timed as `rempart bench` does.
    let mut model = match std::env::args().nth(2) {
        Some(path) => {
            let bytes = std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?;
            let mut arena = LockedBuf::new(bytes.len(), false).map_err(|e| e.to_string())?;
            arena.as_mut_slice().copy_from_slice(&bytes);
            let loaded =
                load_arena(arena, &Device::Cpu, Backend::Auto).map_err(|e| e.to_string())?;
            Some(loaded.model)
        }
        None => None,
    };
    let pools = [1, 2].map(|n| rayon::ThreadPoolBuilder::new().num_threads(n).build());
    let mut tg = |threads: usize| -> Result<f64, String> {
        let (Some(m), Some(Ok(pool))) = (model.as_mut(), pools.get(threads - 1)) else {
            return Ok(0.0);
        };
        pool.install(|| {
            let mut logits = m.forward(&[1], 0).map_err(|e| e.to_string())?;
            let t = Instant::now();
            for pos in 1..=128 {
                logits = m
                    .forward(&[argmax(&logits)], pos)
                    .map_err(|e| e.to_string())?;
            }
            Ok(t.elapsed().as_secs_f64() / 128.0)
        })
    };

    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut m1, mut m2, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut real = Vec::new();
    for round in 0..rounds {
        let (g1, g2) = (tg(1)?, tg(2)?);
        if g1 > 0.0 {
            println!(
                "round {round}: generation 1 thread {:.2} ms a step ({:.1} tokens/s), 2 threads {:.2} ms ({:.1}), scaling {:.2}x",
                g1 * 1e3,
                1.0 / g1,
                g2 * 1e3,
                1.0 / g2,
                g1 / g2
            );
            real.push(g1 / g2);
        }
        let mut t = [Vec::new(), Vec::new()];
        for (i, team) in teams.iter().enumerate() {
            // Consecutive steps, as in a generation (the worker then spins between regions
            // instead of sleeping); the first few wake it and are not counted.
            for s in 0..105 {
                let secs = step(team)?;
                if s >= 5 {
                    t[i].push(secs);
                }
            }
        }
        let [a, b] = t;
        let (a, b) = (median(a), median(b));
        println!(
            "round {round}: 1 thread {:.2} ms ({:.1} GB/s), 2 threads {:.2} ms ({:.1} GB/s), scaling {:.2}x",
            a * 1e3,
            len as f64 / a / 1e9,
            b * 1e3,
            len as f64 / b / 1e9,
            a / b
        );
        m1.push(a);
        m2.push(b);
        ratios.push(a / b);
    }
    println!(
        "medians: 1 thread {:.2} ms, 2 threads {:.2} ms, scaling {:.2}x",
        median(m1) * 1e3,
        median(m2) * 1e3,
        median(ratios)
    );
    if !real.is_empty() {
        println!("generation scaling, median: {:.2}x", median(real));
    }
    Ok(())
}
