//! The model's parts that every stage of the forward pass reads: its shapes ([`Dims`]), one
//! transformer block's weights and KV cache ([`Layer`], its matrices [`QMat`]s), and RMSNorm,
//! the normalisation that opens both halves of a block and ends the model.

use half::f16;

use super::pack::Packed;

/// A weight matrix, repacked for the kernels.
pub(super) type QMat = Packed;

/// One transformer block: its matrices are [`QMat`]s, or while loading their
/// [`Layout`](super::pack::Layout)s. The vectors a family does not have are empty.
#[derive(Debug)]
pub(super) struct Layer<M = QMat> {
    pub(super) attn_norm: Vec<f32>,
    pub(super) ffn_norm: Vec<f32>,
    /// The biases of the query, key and value products (Qwen 2).
    pub(super) bias: Bias,
    /// RMSNorm of each query and key head before the rotary embedding (Qwen 3, Gemma 3),
    /// `head_dim` weights each.
    pub(super) q_norm: Vec<f32>,
    pub(super) k_norm: Vec<f32>,
    /// RMSNorm of the attention's and the feed-forward's outputs before they are added to
    /// the residual stream (Gemma 3).
    pub(super) post_attn_norm: Vec<f32>,
    pub(super) post_ffn_norm: Vec<f32>,
    /// Positions a query sees, its own included (Gemma 3's sliding-window layers); 0: all.
    pub(super) window: usize,
    /// Whether the block's rotary embedding is the model's local one (Gemma 3's
    /// sliding-window layers have their own frequency base).
    pub(super) local_rope: bool,
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
            bias: self.bias,
            q_norm: self.q_norm,
            k_norm: self.k_norm,
            post_attn_norm: self.post_attn_norm,
            post_ffn_norm: self.post_ffn_norm,
            window: self.window,
            local_rope: self.local_rope,
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

/// The biases of a block's query, key and value products (empty: none).
#[derive(Debug, Default)]
pub(super) struct Bias {
    pub(super) q: Vec<f32>,
    pub(super) k: Vec<f32>,
    pub(super) v: Vec<f32>,
}

/// Shapes and constants.
#[derive(Debug, Clone, Copy)]
pub(super) struct Dims {
    pub(super) dim: usize,
    pub(super) heads: usize,
    pub(super) kv_heads: usize,
    pub(super) head_dim: usize,
    /// The attention's scale of the query-key products (`1 / sqrt(head_dim)` but for
    /// Gemma 3 27B).
    pub(super) attn_scale: f32,
    /// Whether the rotary embedding rotates the two halves of each head (GPT-NeoX style:
    /// Qwen, Gemma, Phi) rather than its consecutive pairs (llama).
    pub(super) neox: bool,
    /// The factor of the token embeddings (Gemma: `sqrt(dim)`; else 1).
    pub(super) embed_scale: f32,
    /// Whether the feed-forward's gate is GELU (Gemma: tanh approximation) rather than SiLU.
    pub(super) gelu: bool,
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

    /// Width of the queries of one token (every head; the model's width but for Qwen 3
    /// and Gemma 3, whose heads may be wider).
    pub(super) fn q_dim(self) -> usize {
        self.heads * self.head_dim
    }

    /// Query heads per key/value head.
    pub(super) fn group(self) -> usize {
        self.heads / self.kv_heads
    }
}

/// RMSNorm of `x` in place (see [`rms_norm`]).
pub(super) fn rms_norm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let scale = rms_scale(x, eps);
    for (v, g) in x.iter_mut().zip(w) {
        *v = *v * scale * g;
    }
}

/// `1 / sqrt(mean(x²) + eps)`, the sum of squares in f64 as ggml's.
fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let sum: f64 = x.iter().map(|v| f64::from(v * v)).sum();
    let mean = (sum / x.len().max(1) as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// RMSNorm as ggml computes it (sum of squares in f64, then an f32 scale), so that the
/// activations quantised next round the same way as llama.cpp's.
pub(super) fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let scale = rms_scale(x, eps);
    for ((o, v), g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}
