//! Rempart's own forward pass for the llama family (llama, mistral and the SmolLM, TinyLlama...
//! models that declare `llama`), over the GGUF weights candle parsed, in candle's quantised block
//! layouts. It replaces candle-transformers' `quantized_llama` when every matrix is F32, Q4_0,
//! Q4_1 or Q8_0 (candle's Q4_1 dot product has no SIMD path, and the stock model rebuilds every
//! intermediate tensor, dequantises the token embedding to f32 and grows its KV cache by
//! concatenation on every token).
//!
//! What it does instead:
//! - the weights are repacked once at load into [`kernels::Packed`] (the same bytes, laid out
//!   for the kernels), and the activations are quantised once per product to 8-bit blocks
//!   ([`kernels::QAct`]); each row range's dot products are block kernels ([`kernels`]:
//!   AVX-512 VNNI or AVX2 chosen at run time, a portable loop elsewhere) with the rows ahead
//!   prefetched (also past the end of a task's rows, into the next task's); rows are split
//!   across the rayon pool for a prompt, and across a [`team::Team`] for a generation step,
//!   whose ~150 short regions rayon's hand-offs slowed down (each thread takes a contiguous
//!   share of a region's tasks, then helps the others from the back of theirs);
//! - products that share an input (q, k, v; gate, up) run in one parallel region;
//! - a generation step's attention is one task per query head, reading its key/value head's
//!   f16 cache directly (stored per head, so that the positions stream from memory);
//! - a one-token (generation) step runs on the team or on the calling thread alone, whichever
//!   a governor (`Governor`) measured faster: a busy neighbour on one core then costs that core's
//!   share, not every parallel region's wait for the worker it holds up;
//! - the token embedding stays quantised: one row is dequantised per token;
//! - the KV cache is per layer, f16, written in place at the token's position and grown in
//!   steps of [`KV_STEP`] positions;
//! - a prompt is processed as a batch: each weight row is read once for all its tokens, four
//!   tokens per expanded block, and each head's attention converts its keys once.
//!
//! It is tested against the stock implementation's logits on tiny random models of each block
//! type (`tests::lean_matches_stock_llama_logits`).

pub mod kernels;
pub mod pack;
pub mod team;

use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, TensorInfo};
use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

use self::kernels::{Kind, Level, QAct, Y};
use self::pack::{Layout, Store};
use self::team::Team;
use super::Error;
use super::generate::Forward;

/// KV cache growth step, in positions.
pub const KV_STEP: usize = 256;

/// A weight matrix, repacked for the kernels.
type QMat = kernels::Packed;

/// One transformer block: its matrices are [`QMat`]s, or while loading their [`Layout`]s.
#[derive(Debug)]
struct Layer<M = QMat> {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    q: M,
    k: M,
    v: M,
    o: M,
    gate: M,
    up: M,
    down: M,
    /// Keys and values per key/value head, `[pos][head_dim]` each, `cached` positions
    /// filled; f16 as in llama.cpp's default cache (half the memory of f32). A head's
    /// positions are contiguous: a generation step reads them as one stream (with the
    /// positions interleaved, `[pos][kv_dim]`, its attention waited on memory).
    k_cache: Vec<Vec<f16>>,
    v_cache: Vec<Vec<f16>>,
}

/// Shapes and constants.
#[derive(Debug, Clone, Copy)]
struct Dims {
    dim: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    ffn: usize,
    vocab: usize,
    eps: f32,
    context: usize,
}

impl Dims {
    /// Width of the keys (and values) of one token: every key/value head.
    fn kv_dim(self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Query heads per key/value head.
    fn group(self) -> usize {
        self.heads / self.kv_heads
    }

    /// The attention's scale of the query-key products, `1 / sqrt(head_dim)`.
    fn attn_scale(self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// The lean llama model.
#[derive(Debug)]
pub struct LeanLlama {
    d: Dims,
    embed: QMat,
    out_norm: Vec<f32>,
    /// The output projection; `None` when tied to the embedding (one copy of the weights).
    output: Option<QMat>,
    layers: Vec<Layer>,
    /// RoPE cos/sin per position and pair, `[pos][head_dim / 2]`.
    cos: Vec<f32>,
    sin: Vec<f32>,
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

/// How a forward pass runs.
#[derive(Debug, Clone, Copy)]
struct Run<'a> {
    level: Level,
    /// On the rayon pool (else on the calling thread, or on `team`).
    parallel: bool,
    /// The team of a parallel generation step.
    team: Option<&'a Team>,
}

impl Run<'_> {
    /// Runs `task` on every item: on the team, on the rayon pool, or on the calling thread.
    fn each<T: Send>(
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

/// Chooses, step by step, whether a one-token (generation) step runs on the whole thread
/// pool or on the calling thread alone, by timing both: when another process keeps one of
/// the cores busy, a step split across the pool waits for the worker the scheduler has put
/// aside (two threads fell below one thread's speed here), and one thread is then faster.
/// The way in use is timed on every step, the other one on two steps (a probe) every
/// [`Governor::PROBE_EVERY`] steps, so the choice follows the load both ways; each probe that
/// confirms the way in use doubles that interval, up to [`Governor::PROBE_MAX`], and one that
/// changes it sets it back. A probe on the slow way costs about two steps' difference (under
/// a busy neighbour, 1.5 to 3.5 % of a generation at one probe every 64 steps); the back-off
/// makes that a few tenths of a percent on a steady machine, and a change of load is still
/// followed within [`Governor::PROBE_MAX`] steps (two seconds here). Each way is judged by
/// the median of its last [`Governor::WINDOW`] steps, and the faster median wins: a first
/// version compared smoothed means, and this VM's occasional slow step sent an idle machine's
/// generation to one thread for 64 steps at a time (6 to 25 % slower); medians are not moved
/// by such a step. A later version also wanted one thread 10 % faster: with a busy neighbour
/// the pool was then kept at 5 % slower than one thread (0.93-0.96x of one thread's speed
/// over 4 rounds, against 1.01-1.06x without the margin; no difference on an idle machine).
#[derive(Debug)]
struct Governor {
    step: u64,
    /// The latest step times of each way, `[pool, alone]`, oldest first.
    times: [Vec<f64>; 2],
    /// Whether the current step is a probe of the way not in use.
    probing: bool,
    /// Whether the previous step was one.
    probed: bool,
    /// The first step of the next probe.
    next_probe: u64,
    /// Steps from one probe to the next.
    interval: u64,
    /// Whether the way in use is one thread alone.
    alone: bool,
}

impl Default for Governor {
    fn default() -> Self {
        Self {
            step: 0,
            times: [Vec::new(), Vec::new()],
            probing: false,
            probed: false,
            // The first probe early: the pool's first steps include waking its workers.
            next_probe: 3,
            interval: Self::PROBE_EVERY,
            alone: false,
        }
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => s.get(n / 2).copied(),
        _ => Some((s.get(n / 2 - 1)? + s.get(n / 2)?) / 2.0),
    }
}

impl Governor {
    const PROBE_EVERY: u64 = 64;
    const PROBE_MAX: u64 = 256;
    const WINDOW: usize = 8;

    /// Whether the next step runs on the pool.
    fn parallel(&mut self) -> bool {
        self.step += 1;
        let [pool, alone] = &self.times;
        let alone_faster = match (median(pool), median(alone)) {
            (Some(p), Some(a)) => a < p,
            _ => false,
        };
        self.probed = self.probing;
        self.probing =
            self.step >= self.next_probe && self.step < self.next_probe.saturating_add(2);
        if !self.probing {
            if alone_faster != self.alone {
                // The way in use changed (the load did): probe again soon.
                self.alone = alone_faster;
                self.interval = Self::PROBE_EVERY;
                self.next_probe = self.step.saturating_add(self.interval);
            } else if self.probed {
                // A probe just confirmed the way in use.
                self.interval = (self.interval * 2).min(Self::PROBE_MAX);
                self.next_probe = self.step.saturating_add(self.interval);
            }
        }
        alone_faster == self.probing
    }

    /// Records a step's time. A new probe replaces what was known of the other way (it may
    /// be minutes old).
    fn record(&mut self, parallel: bool, secs: f64) {
        let Some(times) = self.times.get_mut(usize::from(!parallel)) else {
            return;
        };
        if self.probing && !self.probed {
            times.clear();
        }
        times.push(secs);
        if times.len() > Self::WINDOW {
            times.remove(0);
        }
    }
}

fn kind_of(t: GgmlDType) -> Option<Kind> {
    Some(match t {
        GgmlDType::F32 => Kind::F32,
        GgmlDType::Q4_0 => Kind::Q4_0,
        GgmlDType::Q4_1 => Kind::Q4_1,
        GgmlDType::Q8_0 => Kind::Q8_0,
        _ => return None,
    })
}

/// Whether the lean path can run this GGUF: llama-family, every matrix in a supported block
/// type, every row a whole number of blocks, every norm f32.
pub fn supports(ct: &Content) -> bool {
    let arch = ct
        .metadata
        .get("general.architecture")
        .and_then(|v| v.to_string().ok());
    if !matches!(arch.map(String::as_str), Some("llama" | "mistral")) {
        return false;
    }
    // Mixture-of-experts llama variants keep the stock path.
    if ct
        .metadata
        .get("llama.expert_count")
        .and_then(|v| v.to_u32().ok())
        .is_some_and(|n| n > 1)
    {
        return false;
    }
    ct.tensor_infos.iter().all(|(name, info)| {
        let dims = info.shape.dims();
        if name.ends_with("norm.weight") {
            return info.ggml_dtype == GgmlDType::F32;
        }
        kind_of(info.ggml_dtype).is_some_and(|k| {
            dims.len() == 2
                && dims
                    .last()
                    .is_some_and(|c| c.is_multiple_of(k.row_multiple()))
        })
    })
}

fn md_u32(ct: &Content, k: &str) -> Result<usize, Error> {
    ct.metadata
        .get(k)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
        .ok_or_else(|| Error::Metadata(format!("missing or invalid {k}")))
}

impl<M> Layer<M> {
    /// The same block with each matrix mapped by `f`.
    fn map<N>(self, f: impl Fn(M) -> N) -> Layer<N> {
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

/// Reads the tensors out of the GGUF file in memory: norms are copied, matrices repacked in
/// place ([`pack::pack_in_place`]).
struct Builder<'a> {
    ct: &'a Content,
    bytes: &'a mut [u8],
    /// Byte ranges of the tensors read so far (no two may overlap).
    claimed: Vec<Range<usize>>,
    /// Those of the repacked matrices, which the model keeps.
    packed: Vec<Range<usize>>,
}

impl<'a> Builder<'a> {
    /// Tensor `name`'s info and byte range, checked against the file and the other tensors.
    fn claim(&mut self, name: &str) -> Result<(&'a TensorInfo, Range<usize>), Error> {
        let info = self
            .ct
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::Metadata(format!("missing tensor {name}")))?;
        let len = info
            .shape
            .dims()
            .iter()
            .try_fold(1usize, |n, d| n.checked_mul(*d))
            .and_then(|n| {
                (n / info.ggml_dtype.block_size()).checked_mul(info.ggml_dtype.type_size())
            })
            .ok_or_else(|| Error::Gguf(format!("{name}: shape too large")))?;
        let start = self
            .ct
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| Error::Gguf(format!("{name}: offset out of range")))?;
        let at = start
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .map(|end| start..end)
            .ok_or_else(|| Error::Gguf(format!("{name}: data past the end of the file")))?;
        if self
            .claimed
            .iter()
            .any(|c| c.start < at.end && at.start < c.end)
        {
            return Err(Error::Gguf(format!(
                "{name}: its data overlap another tensor's"
            )));
        }
        self.claimed.push(at.clone());
        Ok((info, at))
    }

    /// Matrix `name` (`rows` x `cols`), repacked in place.
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Layout, Error> {
        let (info, at) = self.claim(name)?;
        let kind = kind_of(info.ggml_dtype)
            .ok_or_else(|| Error::Gguf(format!("{name}: block type {:?}", info.ggml_dtype)))?;
        if info.shape.dims() != [rows, cols] {
            return Err(Error::Gguf(format!(
                "{name}: shape {:?}, expected [{rows}, {cols}]",
                info.shape.dims()
            )));
        }
        let l = pack::pack_in_place(kind, rows, cols, self.bytes, at.clone())
            .map_err(|e| Error::Gguf(format!("{name}: {e}")))?;
        self.packed.push(at);
        Ok(l)
    }

    /// Vector `name` of `len` f32, copied.
    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, Error> {
        let (info, at) = self.claim(name)?;
        if info.ggml_dtype != GgmlDType::F32 || info.shape.elem_count() != len {
            return Err(Error::Gguf(format!("{name}: expected {len} f32")));
        }
        Ok(self
            .bytes
            .get(at)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// Wipes every byte but the repacked matrices: the header, metadata and vocabulary (parsed
    /// already), the norms (copied) and the padding.
    fn wipe_the_rest(mut self) {
        self.packed.sort_by_key(|r| r.start);
        let mut from = 0;
        for r in self
            .packed
            .iter()
            .chain([&(self.bytes.len()..self.bytes.len())])
        {
            if let Some(gap) = self.bytes.get_mut(from..r.start) {
                zeroize::Zeroize::zeroize(gap);
            }
            from = from.max(r.end);
        }
    }
}

impl LeanLlama {
    /// Builds the model from the parsed GGUF `ct` and the file's bytes in `store`, with a
    /// context window of at most `max_context` tokens. The matrices are repacked in place and
    /// the model keeps `store`; every other byte of it is wiped (see [`pack`]).
    pub fn from_gguf(ct: &Content, mut store: Store, max_context: usize) -> Result<Self, Error> {
        let dim = md_u32(ct, "llama.embedding_length")?;
        let heads = md_u32(ct, "llama.attention.head_count")?;
        let kv_heads = md_u32(ct, "llama.attention.head_count_kv").unwrap_or(heads);
        let ffn = md_u32(ct, "llama.feed_forward_length")?;
        let layers_n = md_u32(ct, "llama.block_count")?;
        let context = md_u32(ct, "llama.context_length")
            .unwrap_or(2048)
            .min(max_context);
        if heads == 0
            || kv_heads == 0
            || !dim.is_multiple_of(heads)
            || !heads.is_multiple_of(kv_heads)
        {
            return Err(Error::Metadata(format!(
                "{heads} heads, {kv_heads} KV heads for width {dim}"
            )));
        }
        let head_dim = dim / heads;
        let rope_dim = md_u32(ct, "llama.rope.dimension_count").unwrap_or(head_dim);
        if rope_dim != head_dim || !head_dim.is_multiple_of(2) {
            return Err(Error::Metadata(format!(
                "RoPE over {rope_dim} of {head_dim} dimensions is not supported by the lean path"
            )));
        }
        let eps = ct
            .metadata
            .get("llama.attention.layer_norm_rms_epsilon")
            .and_then(|v| v.to_f32().ok())
            .unwrap_or(1e-5);
        let base = ct
            .metadata
            .get("llama.rope.freq_base")
            .and_then(|v| v.to_f32().ok())
            .unwrap_or(10000.0);
        let vocab = ct
            .tensor_infos
            .get("token_embd.weight")
            .and_then(|i| i.shape.dims().first().copied())
            .ok_or_else(|| Error::Metadata("missing token_embd.weight".into()))?;
        let kv_dim = kv_heads * head_dim;
        let mut b = Builder {
            ct,
            bytes: store.bytes_mut(),
            claimed: Vec::new(),
            packed: Vec::new(),
        };
        let embed = b.matrix("token_embd.weight", vocab, dim)?;
        // Tied embeddings (no output.weight): the output projection is the embedding matrix.
        let output = if ct.tensor_infos.contains_key("output.weight") {
            Some(b.matrix("output.weight", vocab, dim)?)
        } else {
            None
        };
        // Capped by the tensor count: `block_count` comes from the file.
        let mut plan = Vec::with_capacity(layers_n.min(ct.tensor_infos.len()));
        for l in 0..layers_n {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            plan.push(Layer {
                attn_norm: b.vector(&n("attn_norm"), dim)?,
                ffn_norm: b.vector(&n("ffn_norm"), dim)?,
                q: b.matrix(&n("attn_q"), dim, dim)?,
                k: b.matrix(&n("attn_k"), kv_dim, dim)?,
                v: b.matrix(&n("attn_v"), kv_dim, dim)?,
                o: b.matrix(&n("attn_output"), dim, dim)?,
                gate: b.matrix(&n("ffn_gate"), ffn, dim)?,
                up: b.matrix(&n("ffn_up"), ffn, dim)?,
                down: b.matrix(&n("ffn_down"), dim, ffn)?,
                k_cache: Vec::new(),
                v_cache: Vec::new(),
            });
        }
        let out_norm = b.vector("output_norm.weight", dim)?;
        b.wipe_the_rest();
        let store = Arc::new(store);
        let pack = |l: Layout| QMat::new(Arc::clone(&store), l);
        let layers = plan.into_iter().map(|l| l.map(pack)).collect();
        let (embed, output) = (pack(embed), output.map(pack));
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(context * half);
        let mut sin = Vec::with_capacity(context * half);
        for p in 0..context {
            for i in 0..half {
                let theta = 1f32 / base.powf((2 * i) as f32 / head_dim as f32);
                let a = p as f32 * theta;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok(Self {
            d: Dims {
                dim,
                heads,
                kv_heads,
                head_dim,
                ffn,
                vocab,
                eps,
                context,
            },
            embed,
            out_norm,
            output,
            layers,
            cos,
            sin,
            cached: 0,
            level: Level::best(),
            parallel: true,
            governor: Governor::default(),
            team: None,
            bufs: Buffers::default(),
            prompt_chunk: PROMPT_CHUNK,
        })
    }
}

/// RMSNorm as ggml computes it (sum of squares in f64, then an f32 scale), so that the
/// activations quantised next round the same way as llama.cpp's.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|v| f64::from(v * v)).sum();
    let mean = (sum / x.len().max(1) as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, v), g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// One query head's attention buffers.
#[derive(Debug, Default)]
struct Scratch {
    scores: Vec<f32>,
    q16: Vec<f32>,
}

/// A prompt attention task's buffers: its head's keys and values converted to f32 once.
#[derive(Debug, Default)]
struct PromptScratch {
    head: Scratch,
    keys: Vec<f32>,
    vals: Vec<f32>,
}

/// Tokens per attention task in a prompt: enough tasks to share among the threads (a
/// model may have as few as 3 key/value heads), while each task's conversion of its head's
/// keys stays small next to its products.
const ATTN_TOKENS: usize = 16;

/// Rows per parallel task: enough work to amortise the hand-off.
const ROWS_PER_TASK: usize = 32;

/// Blocks of 32 activations per task of the SiLU (about 1.5 µs each).
const SILU_BLOCKS: usize = 8;

/// `outs[i] = mats[i] · x` for every token, all matrices in one parallel region, with the
/// kernels of `level`. Each output is `[token][row]`.
/// `rt` is a buffer for the transposition of prompts' outputs.
fn matmul(
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
        // Four tokens at a time share each expanded weight block.
        let mut tok = 0;
        while tok + 4 <= t {
            let ys: [Y<'_>; 4] = std::array::from_fn(|j| x.token(tok + j));
            m.matvec(level, rows.clone(), &ys, chunk, (t, tok));
            tok += 4;
        }
        for tok in tok..t {
            m.matvec(level, rows.clone(), &[x.token(tok)], chunk, (t, tok));
        }
    };
    run.each(&mut tasks, task)?;
    drop(tasks);
    if t > 1 {
        for (m, out) in jobs.iter_mut() {
            std::mem::swap(rt, *out);
            out.clear();
            out.resize(m.rows() * t, 0.0);
            for (r, vals) in rt.chunks_exact(t).enumerate() {
                for (tok, v) in vals.iter().enumerate() {
                    if let Some(o) = out.get_mut(tok * m.rows() + r) {
                        *o = *v;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Interleaved (GGML "normal") rotary embedding of each head of `x` at position `pos`.
fn rope(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], pos: usize) {
    let half = head_dim / 2;
    let cos = cos.get(pos * half..(pos + 1) * half).unwrap_or_default();
    let sin = sin.get(pos * half..(pos + 1) * half).unwrap_or_default();
    for head in x.chunks_exact_mut(head_dim) {
        for ((pair, c), s) in head.chunks_exact_mut(2).zip(cos).zip(sin) {
            if let [a, b] = pair {
                let (x0, x1) = (*a, *b);
                *a = x0 * c - x1 * s;
                *b = x0 * s + x1 * c;
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

/// Key/value head `kvh`'s part of a layer's key or value cache (empty if none).
fn head_cache(cache: &[Vec<f16>], kvh: usize) -> &[f16] {
    cache.get(kvh).map_or(&[], Vec::as_slice)
}

/// One query head's attention for a generation step at `end - 1`, as the prompt's tasks
/// compute it (the same roundings, the same order of sums): `q` against the f16 keys and
/// values `kv` of its key/value head, read in place by the kernels of `level`.
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
    kernels::key_scores(level, q16, kc, end, scale, scores);
    let inv = softmax(scores);
    for s in scores.iter_mut() {
        *s = f16::from_f32(*s * inv).to_f32();
    }
    kernels::weighted_values(level, scores, vc, o);
}

/// Writes the keys and values `k`, `v` (`[token][kv head][head_dim]`) of positions
/// `pos..end` into the layer's f16 caches, in place, growing each head's cache by whole
/// [`KV_STEP`]s.
fn store_kv(d: Dims, layer: &mut Layer, (k, v): (&[f32], &[f32]), pos: usize, end: usize) {
    let hd = d.head_dim;
    let need = end * hd;
    layer.k_cache.resize_with(d.kv_heads, Vec::new);
    layer.v_cache.resize_with(d.kv_heads, Vec::new);
    let caches = layer.k_cache.iter_mut().zip(layer.v_cache.iter_mut());
    for (kvh, (kc, vc)) in caches.enumerate() {
        if kc.len() < need {
            let grown = need.div_ceil(KV_STEP * hd) * KV_STEP * hd;
            let grown = grown.min(d.context * hd).max(need);
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
fn step_attention(
    run: Run<'_>,
    d: Dims,
    layer: &Layer,
    q: &[f32],
    end: usize,
    heads: &mut Vec<Scratch>,
    out: &mut [f32],
) -> Result<(), Error> {
    let hd = d.head_dim;
    let (group, scale) = (d.group(), d.attn_scale());
    let (kc, vc) = (&layer.k_cache, &layer.v_cache);
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
        let kv = (head_cache(kc, kvh), head_cache(vc, kvh));
        head_attention(run.level, q, kv, end, scale, o, sc);
    };
    run.each(&mut items, task)
}

/// The attention of the tokens `q` (`[token][query head][head_dim]`) at positions from `pos`,
/// into `out` (the same layout), with the rayon pool or on the calling thread. One task per
/// key/value head (its group of query heads) and run of up to [`ATTN_TOKENS`] tokens, so that
/// its keys and values are converted once per task. As llama.cpp: the query rounded to f16
/// against the f16 keys, products summed in f32; softmax in f32 with an f64 sum; the weights
/// rounded to f16 against the f16 values. `attn_h` holds the results
/// `[kv head][token][query head of the group][head_dim]` before they are put in place.
fn prompt_attention(
    run: Run<'_>,
    d: Dims,
    layer: &Layer,
    (q, pos): (&[f32], usize),
    (attn_h, scratch): (&mut Vec<f32>, &mut PromptScratch),
    out: &mut [f32],
) {
    let (hd, dim) = (d.head_dim, d.dim);
    let (group, scale) = (d.group(), d.attn_scale());
    let t = q.len() / dim;
    let (kc, vc) = (&layer.k_cache, &layer.v_cache);
    // `out` is `[token][query head of the group][head_dim]` for tokens from `tok0`.
    let task = |kvh: usize, tok0: usize, out: &mut [f32], sc: &mut PromptScratch| {
        let PromptScratch { head, keys, vals } = sc;
        let Scratch { scores, q16 } = head;
        let upto_all = pos + tok0 + out.len() / (group * hd);
        keys.resize(upto_all * hd, 0.0);
        vals.resize(upto_all * hd, 0.0);
        let (k, v) = (head_cache(kc, kvh), head_cache(vc, kvh));
        if let (Some(k), Some(v)) = (k.get(..upto_all * hd), v.get(..upto_all * hd)) {
            k.convert_to_f32_slice(keys);
            v.convert_to_f32_slice(vals);
        }
        for (i, o) in out.chunks_exact_mut(hd).enumerate() {
            let (tok, h) = (tok0 + i / group, kvh * group + i % group);
            let at = tok * dim + h * hd;
            round_to_f16(q.get(at..at + hd).unwrap_or_default(), q16);
            let upto = pos + tok + 1;
            scores.clear();
            let dots = keys.chunks_exact(hd).take(upto);
            scores.extend(dots.map(|k| kernels::dot_f32(q16, k) * scale));
            let inv = softmax(scores);
            o.fill(0.0);
            for (s, vr) in scores.iter().zip(vals.chunks_exact(hd)) {
                let w = f16::from_f32(s * inv).to_f32();
                for (ov, vv) in o.iter_mut().zip(vr) {
                    *ov += w * vv;
                }
            }
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

/// The feed-forward block of one layer: `x += down(silu(gate(xn)) * up(xn))`, `xn` the
/// RMS-normed `x`.
#[allow(
    clippy::too_many_arguments,
    reason = "the buffers of the caller, split"
)]
fn ffn(
    run: Run<'_>,
    d: Dims,
    layer: &Layer,
    x: &mut [f32],
    xa: &mut QAct,
    ha: &mut QAct,
    (g, u, down): (&mut Vec<f32>, &mut Vec<f32>, &mut Vec<f32>),
    rt: &mut Vec<f32>,
) -> Result<(), Error> {
    let t = x.len() / d.dim;
    let xn = xa.f_mut(t, d.dim);
    for (xr, nr) in x.chunks_exact(d.dim).zip(xn.chunks_exact_mut(d.dim)) {
        rms_norm(xr, &layer.ffn_norm, d.eps, nr);
    }
    xa.quantize();
    matmul(
        run,
        &mut [(&layer.gate, &mut *g), (&layer.up, &mut *u)],
        xa,
        rt,
    )?;
    // SiLU(gate) · up, quantised run by run of blocks, shared among the threads: on the
    // calling thread alone it was 5 % of a two-thread generation step.
    let (g, u) = (&*g, &*u);
    let silu = |c: &mut kernels::Chunk<'_>| {
        let gs = g.get(c.start..).unwrap_or_default();
        let us = u.get(c.start..).unwrap_or_default();
        for ((h, gv), uv) in c.f.iter_mut().zip(gs).zip(us) {
            *h = *gv / (1.0 + (-*gv).exp()) * uv;
        }
        c.quantize();
    };
    let mut chunks = ha.chunks_mut(t, d.ffn, SILU_BLOCKS);
    run.each(&mut chunks, silu)?;
    drop(chunks);
    matmul(run, &mut [(&layer.down, &mut *down)], ha, rt)?;
    for (xv, dv) in x.iter_mut().zip(down.iter()) {
        *xv += dv;
    }
    Ok(())
}

impl LeanLlama {
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
            self.bufs = Buffers::default();
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
        }
        let end = pos + t;
        let (cos, sin) = (&self.cos, &self.sin);
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
            for (i, (qt, kt)) in q
                .chunks_exact_mut(d.dim)
                .zip(k.chunks_exact_mut(kv_dim))
                .enumerate()
            {
                rope(qt, d.head_dim, cos, sin, pos + i);
                rope(kt, d.head_dim, cos, sin, pos + i);
            }
            store_kv(d, layer, (k, v), pos, end);
            if t == 1 {
                step_attention(run, d, layer, q, end, heads, aa.f_mut(1, d.dim))?;
            } else {
                let out = aa.f_mut(t, d.dim);
                prompt_attention(run, d, layer, (q, pos), (attn_h, scratch), out);
            }
            aa.quantize();
            matmul(run, &mut [(&layer.o, &mut *o)], aa, rt)?;
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

impl Forward for LeanLlama {
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
        self.parallel = self.governor.parallel();
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
    use std::io::Cursor;
    use std::sync::Arc;

    use candle_core::Device;
    use candle_core::quantized::GgmlDType;
    use candle_core::quantized::gguf_file::Content;

    use super::pack::Store;
    use super::{Governor, LeanLlama};
    use crate::engine::testing::{TinyOpts, tiny_gguf};

    /// Two copies of one tiny Q4_1 llama (width 64, context 64).
    fn two_tiny_q4_1() -> (LeanLlama, LeanLlama) {
        let gguf = tiny_gguf(&TinyOpts {
            dtype: GgmlDType::Q4_1,
            dim: 64,
            ..TinyOpts::default()
        });
        let ct = Content::read(&mut Cursor::new(&gguf)).unwrap();
        let one = || LeanLlama::from_gguf(&ct, Store::heap(&gguf), 64).unwrap();
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

    /// Loading keeps one copy of the weights: every matrix is read from the one store the file
    /// was loaded into (repacked in place), and reads back as candle dequantises the GGUF's
    /// blocks; the header, metadata, vocabulary and norms (copied out) are wiped from it.
    #[test]
    fn weights_are_repacked_in_place_and_the_rest_wiped() {
        for dtype in [
            GgmlDType::F32,
            GgmlDType::Q4_0,
            GgmlDType::Q4_1,
            GgmlDType::Q8_0,
        ] {
            let gguf = tiny_gguf(&TinyOpts {
                dtype,
                dim: 64,
                ..TinyOpts::default()
            });
            let ct = Content::read(&mut Cursor::new(&gguf)).unwrap();
            let m = LeanLlama::from_gguf(&ct, Store::heap(&gguf), 64).unwrap();
            let store = m.embed.store();
            assert_eq!(store.bytes().len(), gguf.len());
            let l0 = &m.layers[0];
            let output = m.output.as_ref().unwrap();
            for q in [
                output, &l0.q, &l0.k, &l0.v, &l0.o, &l0.gate, &l0.up, &l0.down,
            ] {
                assert!(Arc::ptr_eq(q.store(), store), "{dtype:?}: a second store");
            }
            let data = usize::try_from(ct.tensor_data_offset).unwrap();
            assert!(store.bytes()[..data].iter().all(|b| *b == 0), "{dtype:?}");
            let norm = &ct.tensor_infos["blk.0.attn_norm.weight"];
            let at = data + usize::try_from(norm.offset).unwrap();
            assert!(store.bytes()[at..at + 4 * 64].iter().all(|b| *b == 0));
            assert!(l0.attn_norm.iter().all(|v| *v == 1.0));
            for (name, q) in [
                ("token_embd.weight", &m.embed),
                ("blk.1.ffn_down.weight", &m.layers[1].down),
            ] {
                let want = ct
                    .tensor(&mut Cursor::new(&gguf), name, &Device::Cpu)
                    .unwrap()
                    .dequantize(&Device::Cpu)
                    .unwrap()
                    .to_vec2::<f32>()
                    .unwrap();
                let mut row = vec![0f32; q.cols()];
                for (r, w) in want.iter().enumerate() {
                    q.dequantize_row(r, &mut row);
                    for (a, b) in row.iter().zip(w) {
                        assert!(
                            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                            "{dtype:?} {name} row {r}"
                        );
                    }
                }
            }
        }
    }

    /// Runs `steps` steps, the pool taking `pool` seconds a step and one thread `alone`;
    /// returns how many ran on the pool.
    fn drive(g: &mut Governor, steps: usize, pool: f64, alone: f64) -> usize {
        let mut on_pool = 0;
        for _ in 0..steps {
            let p = g.parallel();
            g.record(p, if p { pool } else { alone });
            on_pool += usize::from(p);
        }
        on_pool
    }

    #[test]
    fn governor_follows_the_faster_way_both_ways() {
        let mut g = Governor::default();
        // Idle machine: the pool is twice as fast; only the probes run alone.
        let n = drive(&mut g, 256, 0.008, 0.016);
        assert!(n >= 256 - 2 - 2 * 4, "{n} of 256 steps on the pool");
        // A busy neighbour: the pool becomes slower than one thread, and is left within a
        // few steps (its smoothed time has to cross one thread's), then only probed.
        let n = drive(&mut g, 256, 0.020, 0.012);
        assert!(n <= 2 * 4 + 6, "{n} of 256 steps on the slow pool");
        // A neighbour that makes the pool only slightly slower: one thread is still chosen.
        let n = drive(&mut g, 256, 0.0126, 0.012);
        assert!(n <= 2 * 4 + 6, "{n} of 256 steps on the pool 5 % slower");
        // An idle machine whose steps are sometimes slow (one in 10 at 8x; a smoothed mean
        // then read 0.022 s, above one thread's 0.016): the pool stays.
        let mut g = Governor::default();
        let mut on_pool = 0;
        for i in 0..512 {
            let p = g.parallel();
            let spike = if i % 10 == 9 { 8.0 } else { 1.0 };
            g.record(p, spike * if p { 0.008 } else { 0.016 });
            on_pool += usize::from(p);
        }
        assert!(
            on_pool >= 512 - 2 - 2 * 8,
            "{on_pool} of 512 noisy steps on the pool"
        );
        // The neighbour stops: a probe sees it and the pool is used again.
        let n = drive(&mut g, 512, 0.008, 0.012);
        let limit = Governor::PROBE_MAX + 2 * 4;
        assert!(
            n >= 512 - usize::try_from(limit).unwrap_or(usize::MAX),
            "{n} of 512 steps back on the pool"
        );
    }

    #[test]
    fn governor_probes_less_while_the_load_stays() {
        // Idle machine: each probe confirms the pool, so they space out to one every
        // PROBE_MAX steps (one every PROBE_EVERY would be 2 * 32 steps alone).
        let mut g = Governor::default();
        let n = drive(&mut g, 2048, 0.008, 0.016);
        assert!(
            n >= 2048 - 2 * (2048 / 256 + 3),
            "{n} of 2048 steps on the pool"
        );
        // A neighbour starts: one thread is chosen within a few steps (the pool's median
        // has to cross), and the pool is probed again PROBE_EVERY steps after the change.
        let alone = 40 - drive(&mut g, 40, 0.020, 0.012);
        assert!(alone >= 40 - 6, "{alone} of 40 steps alone");
        // It stops: that probe brings the pool back (about 30 steps later).
        let n = drive(&mut g, 128, 0.008, 0.012);
        assert!(n >= 128 - 40, "{n} of 128 steps back on the pool");
    }
}
