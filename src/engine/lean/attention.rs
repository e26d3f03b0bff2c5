//! The attention of a layer: rotary embedding ([`rope`]), the f16 KV cache written in place
//! ([`store_kv`]), a generation step's attention, one task per query head straight from the
//! cache ([`step_attention`]), and a prompt's, one task per key/value head and run of tokens
//! ([`prompt_attention`]), with llama.cpp's roundings (f16 query, keys, values and weights;
//! softmax summed in f64).

use half::f16;
use rayon::prelude::*;

use super::kernels::{key_scores, weighted_values};
use super::layer::{Dims, Layer};
use super::level::Level;
use super::run::Run;
use crate::engine::Error;

/// KV cache growth step, in positions.
pub const KV_STEP: usize = 256;

/// One query head's attention buffers.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    scores: Vec<f32>,
    q16: Vec<f32>,
}

/// A prompt attention task's buffers.
pub(super) type PromptScratch = Scratch;

/// Tokens per attention task in a prompt: enough tasks to share among the threads (a
/// model may have as few as 3 key/value heads).
const ATTN_TOKENS: usize = 16;

/// The rotary embedding's cos/sin tables, `[pos][head_dim / 2]`.
#[derive(Debug, Default)]
pub(super) struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// The tables of heads of `head_dim` over `context` positions: pair i turns by
    /// `pos * scale / (base^(2i / head_dim) * factors[i])` (`factors`: Llama 3's frequency
    /// factors, or empty; `scale`: a linear scaling's `1 / factor`, else 1).
    pub(super) fn new(
        head_dim: usize,
        (base, scale): (f32, f32),
        factors: &[f32],
        context: usize,
    ) -> Self {
        let half = head_dim / 2;
        let theta: Vec<f32> = (0..half)
            .map(|i| {
                let f = factors.get(i).copied().unwrap_or(1.0);
                1f32 / base.powf((2 * i) as f32 / head_dim as f32) / f
            })
            .collect();
        let mut r = Self {
            cos: Vec::with_capacity(context * half),
            sin: Vec::with_capacity(context * half),
        };
        for p in 0..context {
            for t in &theta {
                let a = p as f32 * scale * t;
                r.cos.push(a.cos());
                r.sin.push(a.sin());
            }
        }
        r
    }

    /// Rotates each head of `x` for position `pos`: its consecutive pairs (GGML's "normal"
    /// mode, llama), or with `neox` its two halves (element i with element i + head_dim / 2).
    pub(super) fn apply(&self, x: &mut [f32], head_dim: usize, pos: usize, neox: bool) {
        let half = head_dim / 2;
        let cos = self
            .cos
            .get(pos * half..(pos + 1) * half)
            .unwrap_or_default();
        let sin = self
            .sin
            .get(pos * half..(pos + 1) * half)
            .unwrap_or_default();
        let turn = |a: &mut f32, b: &mut f32, c: f32, s: f32| {
            let (x0, x1) = (*a, *b);
            *a = x0 * c - x1 * s;
            *b = x0 * s + x1 * c;
        };
        for head in x.chunks_exact_mut(head_dim) {
            if neox {
                let (lo, hi) = head.split_at_mut(half);
                for (((a, b), c), s) in lo.iter_mut().zip(hi).zip(cos).zip(sin) {
                    turn(a, b, *c, *s);
                }
            } else {
                for ((pair, c), s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
                    if let [a, b] = pair {
                        turn(a, b, *c, *s);
                    }
                }
            }
        }
    }
}

/// `out` = `q` rounded to f16 (as llama.cpp's query against the f16 keys), in f32.
fn round_to_f16(q: &[f32], out: &mut Vec<f32>) {
    out.clear();
    out.extend(q.iter().map(|x| f16::from_f32(*x).to_f32()));
}

/// Turns attention scores into `exp(s - max)` in place; returns the inverse of their sum
/// (summed in f64).
fn softmax(scores: &mut [f32]) -> f32 {
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, s| m.max(*s));
    let mut total = 0f64;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        total += f64::from(*s);
    }
    (1.0 / total) as f32
}

/// The first position a query at `end - 1` sees: `end - window` in a sliding-window layer
/// (llama.cpp's: the window holds the query's own position), else 0.
fn first_seen(window: usize, end: usize) -> usize {
    if window == 0 {
        0
    } else {
        end.saturating_sub(window)
    }
}

/// `cache` from value `at` on (empty past its end).
fn seen(cache: &[f16], at: usize) -> &[f16] {
    cache.get(at..).unwrap_or_default()
}

/// Key/value head `kvh`'s part of a layer's key or value cache (empty if none).
fn head_cache(cache: &[Vec<f16>], kvh: usize) -> &[f16] {
    cache.get(kvh).map_or(&[], Vec::as_slice)
}

/// One query head's attention for a generation step, as the prompt's tasks compute it (the
/// same roundings, the same order of sums): `q` against the first `end` f16 keys and values
/// of `kv` (its key/value head's, from the first position it sees), read in place by the
/// kernels of `level`.
fn head_attention(
    level: Level,
    q: &[f32],
    (kc, vc): (&[f16], &[f16]),
    end: usize,
    scale: f32,
    o: &mut [f32],
    sc: &mut Scratch,
) {
    let Scratch { scores, q16 } = sc;
    round_to_f16(q, q16);
    key_scores(level, q16, kc, end, scale, scores);
    let inv = softmax(scores);
    for s in scores.iter_mut() {
        *s = f16::from_f32(*s * inv).to_f32();
    }
    weighted_values(level, scores, vc, o);
}

/// Writes the keys and values `k`, `v` (`[token][kv head][head_dim]`) of positions
/// `pos..end` into the layer's f16 caches, in place, growing each head's cache by whole
/// [`KV_STEP`]s.
pub(super) fn store_kv(
    d: Dims,
    layer: &mut Layer,
    (k, v): (&[f32], &[f32]),
    pos: usize,
    end: usize,
) {
    let hd = d.head_dim;
    let need = end * hd;
    layer.k_cache.resize_with(d.kv_heads, Vec::new);
    layer.v_cache.resize_with(d.kv_heads, Vec::new);
    let caches = layer.k_cache.iter_mut().zip(layer.v_cache.iter_mut());
    for (kvh, (kc, vc)) in caches.enumerate() {
        if kc.len() < need {
            let grown = need.div_ceil(KV_STEP * hd) * KV_STEP * hd;
            let grown = grown.min(d.context * hd).max(need);
            // Exactly: `resize` alone doubles the capacity (768 positions held 1024's room).
            kc.reserve_exact(grown.saturating_sub(kc.len()));
            vc.reserve_exact(grown.saturating_sub(vc.len()));
            kc.resize(grown, f16::ZERO);
            vc.resize(grown, f16::ZERO);
        }
        put_head(d, kvh, k, kc.get_mut(pos * hd..need));
        put_head(d, kvh, v, vc.get_mut(pos * hd..need));
    }
}

/// Copies key/value head `kvh` of every token of `src` (`[token][kv head][head_dim]`) into
/// `dst` (`[token][head_dim]`), rounded to f16.
fn put_head(d: Dims, kvh: usize, src: &[f32], dst: Option<&mut [f16]>) {
    let (hd, at) = (d.head_dim, kvh * d.head_dim);
    let Some(dst) = dst else { return };
    let rows = src.chunks_exact(d.kv_dim()).map(|r| r.get(at..at + hd));
    for (out, row) in dst.chunks_exact_mut(hd).zip(rows) {
        for (c, x) in out.iter_mut().zip(row.unwrap_or_default()) {
            *c = f16::from_f32(*x);
        }
    }
}

/// A generation step's attention (position `end - 1`): one task per query head, run as
/// `run` says (on the step's team, or on the calling thread when the governor chose it),
/// straight from the f16 cache into `out` (`[query head][head_dim]`).
pub(super) fn step_attention(
    run: Run<'_>,
    d: Dims,
    layer: &Layer,
    q: &[f32],
    end: usize,
    heads: &mut Vec<Scratch>,
    out: &mut [f32],
) -> Result<(), Error> {
    let hd = d.head_dim;
    let (group, scale) = (d.group(), d.attn_scale);
    let (kc, vc) = (&layer.k_cache, &layer.v_cache);
    // A sliding-window layer's query sees its last `window` positions.
    let first = first_seen(layer.window, end);
    heads.resize_with(d.heads, Scratch::default);
    let mut items: Vec<(usize, &mut [f32], &mut Scratch)> = out
        .chunks_exact_mut(hd)
        .zip(heads.iter_mut())
        .enumerate()
        .map(|(h, (o, sc))| (h, o, sc))
        .collect();
    let task = |(h, o, sc): &mut (usize, &mut [f32], &mut Scratch)| {
        let at = *h * hd;
        let q = q.get(at..at + hd).unwrap_or_default();
        let kvh = *h / group;
        let kv = (
            seen(head_cache(kc, kvh), first * hd),
            seen(head_cache(vc, kvh), first * hd),
        );
        head_attention(run.level, q, kv, end - first, scale, o, sc);
    };
    run.each(&mut items, task)
}

/// The attention of the tokens `q` (`[token][query head][head_dim]`) at positions from `pos`,
/// into `out` (the same layout), with the rayon pool or on the calling thread. One task per
/// key/value head (its group of query heads) and run of up to [`ATTN_TOKENS`] tokens, each
/// query head's attention computed as a generation step's ([`head_attention`]: the keys and
/// values read in place from the f16 cache by the kernels of the level; converting them to
/// f32 per task first was a conversion of the whole cache per 16 tokens). As llama.cpp: the
/// query rounded to f16 against the f16 keys, products summed in f32; softmax in f32 with an
/// f64 sum; the weights rounded to f16 against the f16 values. `attn_h` holds the results
/// `[kv head][token][query head of the group][head_dim]` before they are put in place.
pub(super) fn prompt_attention(
    run: Run<'_>,
    d: Dims,
    layer: &Layer,
    (q, pos): (&[f32], usize),
    (attn_h, scratch): (&mut Vec<f32>, &mut PromptScratch),
    out: &mut [f32],
) {
    let (hd, dim) = (d.head_dim, d.q_dim());
    let (group, scale) = (d.group(), d.attn_scale);
    let t = q.len() / dim;
    let (kc, vc) = (&layer.k_cache, &layer.v_cache);
    // `out` is `[token][query head of the group][head_dim]` for tokens from `tok0`.
    let task = |kvh: usize, tok0: usize, out: &mut [f32], sc: &mut PromptScratch| {
        let (k, v) = (head_cache(kc, kvh), head_cache(vc, kvh));
        for (i, o) in out.chunks_exact_mut(hd).enumerate() {
            let (tok, h) = (tok0 + i / group, kvh * group + i % group);
            let at = tok * dim + h * hd;
            let q = q.get(at..at + hd).unwrap_or_default();
            let upto = pos + tok + 1;
            let first = first_seen(layer.window, upto);
            let kv = (seen(k, first * hd), seen(v, first * hd));
            head_attention(run.level, q, kv, upto - first, scale, o, sc);
        }
    };
    attn_h.resize(d.kv_heads * t * group * hd, 0.0);
    let (per_kv, per_run) = (t * group * hd, ATTN_TOKENS * group * hd);
    // Small attentions (a decode step early in the context) cost less than a hand-off.
    if !run.parallel || t * (pos + t) * d.heads < 2048 {
        for (kvh, out) in attn_h.chunks_mut(per_kv).enumerate() {
            for (r, run_out) in out.chunks_mut(per_run).enumerate() {
                task(kvh, r * ATTN_TOKENS, run_out, scratch);
            }
        }
    } else {
        attn_h
            .par_chunks_mut(per_kv)
            .enumerate()
            .for_each(|(kvh, out)| {
                out.par_chunks_mut(per_run)
                    .enumerate()
                    .for_each_init(PromptScratch::default, |sc, (r, run_out)| {
                        task(kvh, r * ATTN_TOKENS, run_out, sc)
                    });
            });
    }
    for (kvh, rows) in attn_h.chunks_exact(per_kv).enumerate() {
        for (i, r) in rows.chunks_exact(hd).enumerate() {
            let (tok, h) = (i / group, kvh * group + i % group);
            let at = tok * dim + h * hd;
            if let Some(dst) = out.get_mut(at..at + hd) {
                dst.copy_from_slice(r);
            }
        }
    }
}
