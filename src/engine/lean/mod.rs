//! Rempart's own forward pass for the llama family (llama, mistral and the SmolLM, TinyLlama...
//! models that declare `llama`), over the GGUF weights candle parsed, in candle's quantised block
//! layouts. It replaces candle-transformers' `quantized_llama` when every matrix is F32, F16,
//! BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K or Q6_K, in any mix (candle's Q4_1 dot
//! product has no SIMD path, its K-quant products are slower than llama.cpp's, and the stock
//! model rebuilds every intermediate tensor, dequantises the token embedding to f32 and grows
//! its KV cache by concatenation on every token). F16 and BF16 rows are multiplied with the
//! activations in f32 (converted 32 at a time), as F32 rows are.
//!
//! What it does instead:
//! - the weights are repacked once at load into [`pack::Packed`] (the same bytes, laid out
//!   for the kernels), and the activations are quantised once per product to 8-bit blocks
//!   ([`quant::QAct`]); each row range's dot products are block kernels ([`kernels`]:
//!   AVX-512 VNNI or AVX2 chosen at run time, a portable loop elsewhere), the AVX-512 and
//!   portable ones with the rows ahead prefetched (also past the end of a task's rows, into
//!   the next task's; on the AVX2 VM measured, the hardware prefetcher alone was faster);
//!   rows are split across the rayon pool for a prompt, and across a [`team::Team`] for a
//!   generation step, whose ~150 short regions rayon's hand-offs slowed down (each thread
//!   takes a contiguous share of a region's tasks, then helps the others from the back of
//!   theirs);
//! - products that share an input (q, k, v; gate, up) run in one parallel region;
//! - a generation step's attention is one task per query head, reading its key/value head's
//!   f16 cache directly (stored per head, so that the positions stream from memory);
//! - a one-token (generation) step runs on the team or on the calling thread alone, whichever
//!   a governor (`Governor`) measured faster, the team only tried where the kernel counts a
//!   core free for it: a busy neighbour on one core then costs that core's share, not every
//!   parallel region's wait for the worker it holds up;
//! - the token embedding stays quantised: one row is dequantised per token;
//! - the KV cache is per layer, f16, written in place at the token's position and grown in
//!   steps of [`KV_STEP`] positions;
//! - a prompt is processed as a batch: each weight row is read once for all its tokens, four
//!   tokens per expanded block, and each head's attention converts its keys once.
//!
//! It is tested against the stock implementation's logits on tiny random models of each block
//! type (`tests::lean_matches_stock_llama_logits`).
//!
//! Where each part is, each module using only modules listed before it: [`blocks`] (the GGUF
//! block types), [`level`] (the instruction-set level), [`team`] (the threads of a generation
//! step), `governor` (pool or one thread), [`quant`] (activation quantisation), [`pack`] (the
//! weights' store, repacked in place), [`kernels`] (dot products, per level), `layer` (shapes,
//! a block's weights and cache, RMSNorm), `build` (reading a GGUF), `run` (where parallel
//! work runs; the matrix products), `attention`, `ffn` (the feed-forward block), and here
//! the model and its forward pass.

mod attention;
pub mod blocks;
mod build;
mod ffn;
mod governor;
pub mod kernels;
mod layer;
pub mod level;
pub mod pack;
pub mod quant;
mod run;
pub mod team;

use candle_core::quantized::gguf_file::Content;

pub use self::attention::KV_STEP;
use self::attention::{PromptScratch, Rope, Scratch, prompt_attention, step_attention, store_kv};
use self::build::Weights;
pub use self::build::supports;
use self::ffn::ffn;
use self::governor::Governor;
use self::layer::{Dims, Layer, QMat, rms_norm, rms_norm_in_place};
use self::level::Level;
use self::pack::Store;
use self::quant::QAct;
use self::run::{Run, matmul};
use self::team::Team;
use super::Error;
use super::generate::Forward;

/// The lean llama model.
#[derive(Debug)]
pub struct LeanModel {
    d: Dims,
    embed: QMat,
    out_norm: Vec<f32>,
    /// The output projection; `None` when tied to the embedding (one copy of the weights).
    output: Option<QMat>,
    layers: Vec<Layer>,
    /// The rotary embedding's tables.
    rope: Rope,
    /// Those of the sliding-window layers when they have their own (Gemma 3).
    local_rope: Rope,
    /// Positions in the KV cache.
    cached: usize,
    /// Kernel instruction-set level, detected once.
    level: Level,
    /// Whether this step runs on the whole pool (else on the calling thread alone).
    parallel: bool,
    /// Chooses between the two for generation steps.
    governor: Governor,
    /// The threads of a parallel generation step (started at the first one).
    team: Option<Team>,
    /// The forward pass's buffers, kept from step to step (no allocation in the decode loop).
    bufs: Buffers,
    /// Longest batch of prompt tokens run at once ([`PROMPT_CHUNK`]).
    prompt_chunk: usize,
}

/// Prompt tokens processed per batch. The buffers grow with the batch (about 40 KB per
/// token for SmolLM2-135M): a 512-token batch took peak memory to 184 MB, 128-token batches
/// to 157 MB. They were also as fast or faster on pp512 here (smaller buffers stay in the
/// cache): 246-255 against 214-221 tokens/s in two of three alternating rounds, 226 against
/// 221 in the third.
pub const PROMPT_CHUNK: usize = 128;

/// The most bytes of one product's output per prompt batch: the batch is shortened (in
/// steps of eight tokens) where the feed-forward is wider than 6144 values, so that each of
/// its buffers (gate, up, their transposition) stays within 3 MiB. The 1B shape (8192 wide)
/// runs 96 tokens a batch: 7 MB less peak memory than 128 and as fast on pp512 in three
/// alternating rounds (64 tokens, 2 MiB: 5 % slower).
const PROMPT_BUFFER_BYTES: usize = 3 << 20;

/// The prompt batch of a model whose widest product has `widest` rows.
fn prompt_chunk(widest: usize) -> usize {
    let fit = PROMPT_BUFFER_BYTES / (widest.max(1) * size_of::<f32>());
    (fit / 8 * 8).clamp(8, PROMPT_CHUNK)
}

/// Activations and intermediate results of a forward pass, `[token][value]` unless noted.
#[derive(Debug, Default)]
struct Buffers {
    /// The residual stream.
    x: Vec<f32>,
    /// Normed input of the attention and of the feed-forward, quantised.
    xa: QAct,
    /// Attention output, quantised for the output projection.
    aa: QAct,
    /// Feed-forward hidden state, quantised for the down projection.
    ha: QAct,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f32>,
    /// Attention results, `[kv head][token][query head of the group][head_dim]`.
    attn_h: Vec<f32>,
    /// The calling thread's attention buffers.
    scratch: PromptScratch,
    /// Each query head's attention buffers in a generation step on the team.
    heads: Vec<Scratch>,
    /// Matrix-product outputs `[row][token]` of a prompt, before transposition.
    rt: Vec<f32>,
}

impl Buffers {
    /// Empty buffers whose activations are also quantised as `Q8_K` where a K-quant matrix
    /// of `layers` (or the output projection `output`) reads them.
    fn for_model(layers: &[Layer], output: &QMat) -> Self {
        let k = |m: &QMat| m.kind().is_k();
        let any = |f: &dyn Fn(&Layer) -> bool| layers.iter().any(f);
        Self {
            xa: QAct::with_k_form(
                k(output) || any(&|l| k(&l.q) || k(&l.k) || k(&l.v) || k(&l.gate) || k(&l.up)),
            ),
            aa: QAct::with_k_form(any(&|l| k(&l.o))),
            ha: QAct::with_k_form(any(&|l| k(&l.down))),
            ..Self::default()
        }
    }
}

impl LeanModel {
    /// Builds the model from the parsed GGUF `ct` and the file's bytes in `store`, with a
    /// context window of at most `max_context` tokens. The matrices are repacked in place and
    /// the model keeps `store`; every other byte of it is wiped (see [`pack`]).
    pub fn from_gguf(ct: &Content, store: Store, max_context: usize) -> Result<Self, Error> {
        let Weights {
            d,
            embed,
            out_norm,
            output,
            layers,
            rope,
            local_rope,
        } = build::weights(ct, store, max_context)?;
        let bufs = Buffers::for_model(&layers, output.as_ref().unwrap_or(&embed));
        Ok(Self {
            d,
            embed,
            out_norm,
            output,
            layers,
            rope,
            local_rope,
            cached: 0,
            level: Level::best(),
            parallel: true,
            governor: Governor::default(),
            team: None,
            bufs,
            prompt_chunk: prompt_chunk(d.ffn.max(d.q_dim() + 2 * d.kv_dim())),
        })
    }
}

impl LeanModel {
    fn forward_tokens(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, Error> {
        let d = self.d;
        let t = tokens.len();
        let run = Run {
            level: self.level,
            parallel: self.parallel,
            team: self.team.as_ref().filter(|_| self.parallel && t == 1),
        };
        if pos == 0 {
            self.cached = 0;
            // A new conversation: the last one's activations are freed (and wiped by the
            // allocator) rather than kept until they are overwritten.
            self.bufs =
                Buffers::for_model(&self.layers, self.output.as_ref().unwrap_or(&self.embed));
        }
        if pos != self.cached {
            return Err(Error::Candle(format!(
                "position {pos} does not follow the {} cached tokens",
                self.cached
            )));
        }
        if t == 0 || pos + t > d.context {
            return Err(Error::Candle(format!(
                "{t} tokens at position {pos} do not fit the context of {}",
                d.context
            )));
        }
        let kv_dim = d.kv_dim();
        let Buffers {
            x,
            xa,
            aa,
            ha,
            q,
            k,
            v,
            o,
            gate: g,
            up: u,
            down,
            attn_h,
            scratch,
            heads,
            rt,
        } = &mut self.bufs;
        // Embeddings: one dequantised row per token.
        x.clear();
        x.resize(t * d.dim, 0.0);
        for (tok, row) in tokens.iter().zip(x.chunks_exact_mut(d.dim)) {
            let id = *tok as usize;
            if id >= d.vocab {
                return Err(Error::Candle(format!("token {id} outside the vocabulary")));
            }
            self.embed.dequantize_row(id, row);
            if d.embed_scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= d.embed_scale);
            }
        }
        let end = pos + t;
        let q_dim = d.q_dim();
        for layer in &mut self.layers {
            let xn = xa.f_mut(t, d.dim);
            for (xr, nr) in x.chunks_exact(d.dim).zip(xn.chunks_exact_mut(d.dim)) {
                rms_norm(xr, &layer.attn_norm, d.eps, nr);
            }
            xa.quantize();
            matmul(
                run,
                &mut [
                    (&layer.q, &mut *q),
                    (&layer.k, &mut *k),
                    (&layer.v, &mut *v),
                ],
                xa,
                rt,
            )?;
            let rope = if layer.local_rope {
                &self.local_rope
            } else {
                &self.rope
            };
            let hd = d.head_dim;
            for (i, (qt, kt)) in q
                .chunks_exact_mut(q_dim)
                .zip(k.chunks_exact_mut(kv_dim))
                .enumerate()
            {
                let vt = v.get_mut(i * kv_dim..(i + 1) * kv_dim).unwrap_or_default();
                for (row, b) in [
                    (&mut *qt, &layer.bias.q),
                    (&mut *kt, &layer.bias.k),
                    (vt, &layer.bias.v),
                ] {
                    row.iter_mut().zip(b).for_each(|(r, b)| *r += b);
                }
                if !layer.q_norm.is_empty() {
                    qt.chunks_exact_mut(hd)
                        .for_each(|h| rms_norm_in_place(h, &layer.q_norm, d.eps));
                    kt.chunks_exact_mut(hd)
                        .for_each(|h| rms_norm_in_place(h, &layer.k_norm, d.eps));
                }
                rope.apply(qt, hd, pos + i, d.neox);
                rope.apply(kt, hd, pos + i, d.neox);
            }
            store_kv(d, layer, (k, v), pos, end);
            if t == 1 {
                step_attention(run, d, layer, q, end, heads, aa.f_mut(1, q_dim))?;
            } else {
                let out = aa.f_mut(t, q_dim);
                prompt_attention(run, d, layer, (q, pos), (attn_h, scratch), out);
            }
            aa.quantize();
            matmul(run, &mut [(&layer.o, &mut *o)], aa, rt)?;
            if !layer.post_attn_norm.is_empty() {
                for r in o.chunks_exact_mut(d.dim) {
                    rms_norm_in_place(r, &layer.post_attn_norm, d.eps);
                }
            }
            for (xv, ov) in x.iter_mut().zip(o.iter()) {
                *xv += ov;
            }
            ffn(run, d, layer, x, xa, ha, (g, u, down), rt)?;
        }
        self.cached = end;
        // Logits of the last token only.
        let last = x.get((t - 1) * d.dim..).unwrap_or_default();
        rms_norm(last, &self.out_norm, d.eps, xa.f_mut(1, d.dim));
        xa.quantize();
        let mut logits = Vec::new();
        let output = self.output.as_ref().unwrap_or(&self.embed);
        matmul(run, &mut [(output, &mut logits)], xa, rt)?;
        Ok(logits)
    }
}

impl Forward for LeanModel {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, Error> {
        let threads = rayon::current_num_threads();
        if tokens.len() != 1 || threads < 2 {
            // The team runs generation steps only, and only with the pool it was made for: a
            // model moved to a one-thread pool (a `bench` of both) must not keep two threads.
            self.parallel = true;
            if threads < 2 {
                self.team = None;
            }
            let step = self.prompt_chunk.max(1);
            // An empty prompt still goes through `forward_tokens`, which refuses it.
            let mut logits = self.forward_tokens(tokens.get(..step).unwrap_or(tokens), pos)?;
            for (i, chunk) in tokens.chunks(step).enumerate().skip(1) {
                logits = self.forward_tokens(chunk, pos + i * step)?;
            }
            return Ok(logits);
        }
        self.parallel = self.governor.parallel(|| governor::crowded(threads - 1));
        if self.parallel && self.team.as_ref().map(Team::threads) != Some(threads) {
            // Without threads (the system refused them) the step runs on this one alone.
            self.team = Team::new(threads).ok();
        }
        let start = std::time::Instant::now();
        let logits = self.forward_tokens(tokens, pos)?;
        self.governor
            .record(self.parallel, start.elapsed().as_secs_f64());
        Ok(logits)
    }

    fn context_len(&self) -> usize {
        self.d.context
    }
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::GgmlDType;
    use candle_core::quantized::gguf_file::Content;
    use std::io::Cursor;

    use super::LeanModel;
    use super::pack::Store;
    use crate::engine::testing::{TinyOpts, tiny_gguf};

    /// Two copies of one tiny Q4_1 llama (width 64, context 64).
    fn two_tiny_q4_1() -> (LeanModel, LeanModel) {
        let gguf = tiny_gguf(&TinyOpts {
            dtype: GgmlDType::Q4_1,
            dim: 64,
            ..TinyOpts::default()
        });
        let ct = Content::read(&mut Cursor::new(&gguf)).unwrap();
        let one = || LeanModel::from_gguf(&ct, Store::heap(&gguf), 64).unwrap();
        (one(), one())
    }

    /// `n` token ids spread over the first 260 of the tiny vocabulary (263 tokens).
    fn tiny_prompt(n: u32) -> Vec<u32> {
        (0..n).map(|i| (i * 37 + 11) % 260).collect()
    }

    /// A prompt longer than the batch size runs in batches, with the logits of one batch
    /// (within float rounding: the same products, summed in the same order per token).
    #[test]
    fn long_prompts_run_in_batches_with_the_same_logits() {
        use crate::engine::generate::Forward;
        let (mut whole, mut chunked) = two_tiny_q4_1();
        let prompt = tiny_prompt(41);
        chunked.prompt_chunk = 16;
        let a = whole.forward(&prompt, 0).unwrap();
        let b = chunked.forward(&prompt, 0).unwrap();
        assert_eq!(chunked.cached, 41);
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
        let diff = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-5 * scale, "max |diff| {diff} (scale {scale})");
        // An empty prompt is still refused.
        assert!(chunked.forward(&[], 41).is_err());
    }

    /// A prompt batch keeps each product's output within its bound (3 MiB), in whole tiles
    /// of eight tokens, and never longer than the default batch: SmolLM2 (1536 wide) keeps
    /// 128 tokens, the 1B shape (8192) 96, the 7B shape (14336) 48; nothing runs fewer than 8.
    #[test]
    fn prompt_batches_keep_each_output_within_its_bound() {
        let want = [(64, 128), (1536, 128), (6144, 128), (8192, 96), (14336, 48)];
        for (widest, tokens) in want {
            assert_eq!(super::prompt_chunk(widest), tokens, "{widest} wide");
        }
        for widest in (1..100_000).step_by(997) {
            let n = super::prompt_chunk(widest);
            assert!(n.is_multiple_of(8) && (8..=super::PROMPT_CHUNK).contains(&n));
            assert!(
                n == 8 || n * widest * 4 <= super::PROMPT_BUFFER_BYTES,
                "{widest}: {n}"
            );
        }
        assert_eq!(super::prompt_chunk(0), super::PROMPT_CHUNK);
        assert_eq!(super::prompt_chunk(1 << 30), 8);
    }

    /// A generation step on the team (per-head attention straight from the f16 cache, tasks
    /// shared out among threads) gives the logits of the same step on one thread, bit for bit:
    /// the same products, summed in the same order.
    #[test]
    fn team_steps_match_one_thread_exactly() {
        let (mut alone, mut team) = two_tiny_q4_1();
        team.team = Some(super::Team::new(3).unwrap());
        let prompt = tiny_prompt(7);
        for m in [&mut alone, &mut team] {
            m.parallel = true;
            m.forward_tokens(&prompt, 0).unwrap();
        }
        alone.parallel = false;
        let mut tok = 5;
        for pos in 7..40 {
            let a = alone.forward_tokens(&[tok], pos).unwrap();
            let b = team.forward_tokens(&[tok], pos).unwrap();
            assert_eq!(a, b, "step at position {pos}");
            tok = (tok * 31 + 7) % 260;
        }
    }
}
