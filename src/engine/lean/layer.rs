//! The model's parts that every stage of the forward pass reads: its shapes ([`Dims`]), one
//! transformer block's weights and KV cache ([`Layer`], its matrices [`QMat`]s), and RMSNorm,
//! the normalisation that opens both halves of a block and ends the model.

use half::f16;

use super::pack::Packed;

/// A weight matrix, repacked for the kernels.
pub(super) type QMat = Packed;

/// One transformer block: its matrices are [`QMat`]s, or while loading their
/// [`Layout`](super::pack::Layout)s.
#[derive(Debug)]
pub(super) struct Layer<M = QMat> {
    pub(super) attn_norm: Vec<f32>,
    pub(super) ffn_norm: Vec<f32>,
    pub(super) q: M,
    pub(super) k: M,
    pub(super) v: M,
    pub(super) o: M,
    pub(super) gate: M,
    pub(super) up: M,
    pub(super) down: M,
    /// Keys and values per key/value head, `[pos][head_dim]` each, `cached` positions
    /// filled; f16 as in llama.cpp's default cache (half the memory of f32). A head's
    /// positions are contiguous: a generation step reads them as one stream (with the
    /// positions interleaved, `[pos][kv_dim]`, its attention waited on memory).
    pub(super) k_cache: Vec<Vec<f16>>,
    pub(super) v_cache: Vec<Vec<f16>>,
}

impl<M> Layer<M> {
    /// The same block with each matrix mapped by `f`.
    pub(super) fn map<N>(self, f: impl Fn(M) -> N) -> Layer<N> {
        Layer {
            attn_norm: self.attn_norm,
            ffn_norm: self.ffn_norm,
            q: f(self.q),
            k: f(self.k),
            v: f(self.v),
            o: f(self.o),
            gate: f(self.gate),
            up: f(self.up),
            down: f(self.down),
            k_cache: self.k_cache,
            v_cache: self.v_cache,
        }
    }
}

/// Shapes and constants.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dims {
    pub(super) dim: usize,
    pub(super) heads: usize,
    pub(super) kv_heads: usize,
    pub(super) head_dim: usize,
    pub(super) ffn: usize,
    pub(super) vocab: usize,
    pub(super) eps: f32,
    pub(super) context: usize,
}

impl Dims {
    /// Width of the keys (and values) of one token: every key/value head.
    pub(super) fn kv_dim(self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Query heads per key/value head.
    pub(super) fn group(self) -> usize {
        self.heads / self.kv_heads
    }

    /// The attention's scale of the query-key products, `1 / sqrt(head_dim)`.
    pub(super) fn attn_scale(self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// RMSNorm as ggml computes it (sum of squares in f64, then an f32 scale), so that the
/// activations quantised next round the same way as llama.cpp's.
pub(super) fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|v| f64::from(v * v)).sum();
    let mean = (sum / x.len().max(1) as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, v), g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}
