//! Where a forward pass's parallel work runs ([`Run`]: on the generation step's team, on the
//! rayon pool, or on the calling thread), and the matrix products shared out on it
//! ([`matmul`]: every row range of every matrix with a common input in one region).

use rayon::prelude::*;

use super::layer::QMat;
use super::level::Level;
use super::quant::{QAct, Y};
use super::team::{self, Team};
use crate::engine::Error;

/// How a forward pass runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run<'a> {
    pub(super) level: Level,
    /// On the rayon pool (else on the calling thread, or on `team`).
    pub(super) parallel: bool,
    /// The team of a parallel generation step.
    pub(super) team: Option<&'a Team>,
}

impl Run<'_> {
    /// Runs `task` on every item: on the team, on the rayon pool, or on the calling thread.
    pub(super) fn each<T: Send>(
        self,
        items: &mut [T],
        task: impl Fn(&mut T) + Sync + Send,
    ) -> Result<(), Error> {
        if let Some(team) = self.team {
            team.for_each(items, task).map_err(panicked)?;
        } else if self.parallel {
            items.par_iter_mut().for_each(task);
        } else {
            items.iter_mut().for_each(task);
        }
        Ok(())
    }
}

/// A task of a generation step's region panicked on a worker.
fn panicked(_: team::Panicked) -> Error {
    Error::Candle("a thread of the generation step panicked".into())
}

/// Rows per tile of a prompt's output transposition.
const TILE: usize = 16;

/// Rows per parallel task: enough work to amortise the hand-off.
const ROWS_PER_TASK: usize = 32;

/// Rows `rows` of `m` times the tokens of `x` from `tok`, `G` at a time (the group sharing
/// each expanded weight block) while a whole group is left, into `out` (`[row][token]`);
/// returns the first token left.
fn in_groups<const G: usize>(
    m: &QMat,
    level: Level,
    rows: std::ops::Range<usize>,
    x: &QAct,
    out: &mut [f32],
    mut tok: usize,
) -> usize {
    let t = x.tokens();
    while tok + G <= t {
        let ys: [Y<'_>; G] = std::array::from_fn(|j| x.token(tok + j));
        m.matvec(level, rows.clone(), &ys, out, (t, tok));
        tok += G;
    }
    tok
}

/// `outs[i] = mats[i] · x` for every token, all matrices in one parallel region, with the
/// kernels of `level`. Each output is `[token][row]`.
/// `rt` is a buffer for the transposition of prompts' outputs.
pub(super) fn matmul(
    run: Run<'_>,
    jobs: &mut [(&QMat, &mut Vec<f32>)],
    x: &QAct,
    rt: &mut Vec<f32>,
) -> Result<(), Error> {
    let level = run.level;
    let t = x.tokens();
    // Row-major per row ([row][token]) so that tasks own contiguous chunks. Allocated once at
    // its size: growing it by pushes reallocated it (a copy, and a wipe of the old block by
    // the allocator) up to 11 times per product.
    let n: usize = jobs
        .iter()
        .map(|(m, _)| m.rows().div_ceil(ROWS_PER_TASK))
        .sum();
    let mut tasks: Vec<(&QMat, usize, &mut [f32])> = Vec::with_capacity(n);
    for (m, out) in jobs.iter_mut() {
        // Every value is written below (a kernel that cannot run writes zeros), so a buffer
        // of the right size from the last step is not zeroed first.
        out.resize(m.rows() * t, 0.0);
        for (c, chunk) in out.chunks_mut(ROWS_PER_TASK * t).enumerate() {
            tasks.push((*m, c * ROWS_PER_TASK, chunk));
        }
    }
    let task = |(m, r0, chunk): &mut (&QMat, usize, &mut [f32])| {
        let rows = *r0..*r0 + chunk.len() / t;
        // A prompt's `Q4_*` and `Q5_*` products in tiles of eight rows, where the level has them.
        if m.prompt_tiles(level, rows.clone(), x, chunk) {
            return;
        }
        // Eight, then four tokens at a time share each expanded weight block.
        let tok = in_groups::<8>(m, level, rows.clone(), x, chunk, 0);
        let tok = in_groups::<4>(m, level, rows.clone(), x, chunk, tok);
        in_groups::<1>(m, level, rows, x, chunk, tok);
    };
    run.each(&mut tasks, task)?;
    drop(tasks);
    if t > 1 {
        for (m, out) in jobs.iter_mut() {
            // Copied rather than swapped: a swap handed each output the largest buffer of the
            // step in turn, so every one of them came to hold the widest product's size (8
            // buffers of 4 MiB for the 1B shape's 128-token prompt batches, 21 MB of peak
            // memory); the copy is one more pass over what the transposition reads anyway.
            rt.clear();
            rt.extend_from_slice(out);
            // In tiles of rows: each token's values of a tile are written as one run (one
            // store per row and token, strided by the row count, was 7 % of a prompt).
            let rows = m.rows();
            for (tile, vals) in rt.chunks(TILE * t).enumerate() {
                let r0 = tile * TILE;
                let n = vals.len() / t;
                for tok in 0..t {
                    let at = tok * rows + r0;
                    if let Some(dst) = out.get_mut(at..at + n) {
                        for (i, o) in dst.iter_mut().enumerate() {
                            *o = vals.get(i * t + tok).copied().unwrap_or(0.0);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
