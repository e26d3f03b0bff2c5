//! Tiny GGUF models built in memory, for fast tests of loading, tokenizing and generation
//! without the real model (and as a seed for fuzzing the GGUF metadata path).

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

/// Options for [`tiny_gguf`].
#[derive(Debug, Clone)]
pub struct TinyOpts {
    /// `general.architecture`.
    pub arch: &'static str,
    /// Whether to include `tokenizer.ggml.tokens`.
    pub with_tokens: bool,
    /// Context length.
    pub context: u32,
    /// Chat template (None: no template metadata).
    pub template: Option<&'static str>,
    /// Weight seed.
    pub seed: u64,
    /// Block type of the matrices (norms stay F32).
    pub dtype: GgmlDType,
    /// Model width (feed-forward twice as wide).
    pub dim: usize,
    /// Attention heads and key/value heads.
    pub heads: (u32, u32),
    /// RoPE frequency base.
    pub rope_base: f32,
    /// A hostile vocabulary: [`HOSTILE`] appended as tokens, which become the only tokens the
    /// output layer can pick (the other rows of `output.weight` are zero; the hostile rows come
    /// in opposite pairs, so one of each pair scores above zero at every step).
    pub hostile: bool,
}

/// Token strings a hostile GGUF can hold (token strings are data): set the terminal title,
/// write the clipboard (OSC 52), clear the screen and home the cursor, print a fake status line
/// in colour, a C1 CSI, a right-to-left override, a carriage return and a fake banner.
pub const HOSTILE: [&str; 8] = [
    "\u{1b}]0;pwned\u{7}",
    "\u{1b}]52;c;cHduZWQ=\u{7}",
    "\u{1b}[2J\u{1b}[H",
    "\u{1b}[1;32m[rempart] bundle verified OK\u{1b}[0m\n",
    "\u{9b}31m",
    "\u{202e}",
    "\r",
    "\u{1b}[1;1H\u{1b}[42m UNCLASSIFIED \u{1b}[0m",
];

impl Default for TinyOpts {
    fn default() -> Self {
        Self {
            arch: "llama",
            with_tokens: true,
            context: 64,
            template: Some(super::chat::CHATML),
            seed: 1,
            dtype: GgmlDType::F32,
            dim: 32,
            heads: (4, 2),
            rope_base: 10000.0,
            hostile: false,
        }
    }
}

/// The byte-level (GPT-2) symbol of each byte value.
fn byte_table() -> Vec<char> {
    let mut t = Vec::with_capacity(256);
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable =
            (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        t.push(if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + n).unwrap_or('?');
            n += 1;
            c
        });
    }
    t
}

/// Byte-level vocabulary: the 256 byte symbols, four merged tokens, three control tokens.
pub fn tiny_vocab() -> (Vec<String>, Vec<String>, Vec<i32>) {
    let table = byte_table();
    let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
    for t in [
        "he",
        "ll",
        "hell",
        "hello",
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
    ] {
        tokens.push(t.to_owned());
    }
    let merges = ["h e", "l l", "he ll", "hell o"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let mut types = vec![1; 260];
    types.extend([3, 3, 3]);
    (tokens, merges, types)
}

/// `n` pseudo-random values in [-1, 1) from `seed` (a linear congruential generator: the
/// same values on every run), for benchmarks and measurement tools.
pub fn values(n: usize, mut seed: u64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// What [`metadata`] writes of a model's shape.
struct Dims<'a> {
    arch: &'a str,
    name: &'a str,
    context: u32,
    dim: usize,
    layers: usize,
    ffn: usize,
    heads: (usize, usize),
    /// Width of a head.
    head_dim: usize,
    rope_base: f32,
}

/// The metadata of a llama-family GGUF with the byte-level tokenizer's merges and token types
/// (the tokens and the template are the caller's).
fn metadata(d: &Dims<'_>, merges: &[String], types: &[i32]) -> Vec<(String, Value)> {
    let a = d.arch;
    let s = |v: &str| Value::String(v.to_owned());
    let u = |n: usize| Value::U32(u32::try_from(n).unwrap_or(u32::MAX));
    vec![
        ("general.architecture".into(), s(a)),
        ("general.name".into(), s(d.name)),
        (format!("{a}.context_length"), Value::U32(d.context)),
        (format!("{a}.embedding_length"), u(d.dim)),
        (format!("{a}.block_count"), u(d.layers)),
        (format!("{a}.feed_forward_length"), u(d.ffn)),
        (format!("{a}.attention.head_count"), u(d.heads.0)),
        (format!("{a}.attention.head_count_kv"), u(d.heads.1)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-5),
        ),
        (format!("{a}.rope.dimension_count"), u(d.head_dim)),
        (format!("{a}.rope.freq_base"), Value::F32(d.rope_base)),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s("smollm")),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.iter().map(|m| s(m)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.iter().map(|t| Value::I32(*t)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(260)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(262)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ]
}

/// What a block's tensor is, for the fixtures' choice of its values.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// A norm's weights (near one in `tiny_gguf`, ones in `random_gguf`).
    Norm,
    /// A matrix or a bias (random values, quantised in `random_gguf`).
    Weights,
}

/// The widths of a block's tensors.
struct Widths {
    dim: usize,
    /// Queries (heads times their width), keys and values, one head.
    q: usize,
    kv: usize,
    head: usize,
    ffn: usize,
}

/// The length of a norm's or bias's one dimension.
fn dim_of(shape: &[usize]) -> usize {
    shape.first().copied().unwrap_or(0)
}

/// The tensors of block `l` of a model of family `arch`, in the order the fixtures write
/// them (and draw their values): name, shape, part. Qwen 2's biases on the queries, keys
/// and values; Qwen 3's and Gemma 3's norms of the queries and keys; Gemma 3's norms after
/// the attention and the feed-forward; Phi 3's fused queries, keys and values, and gate and
/// up.
fn block_tensors(arch: &str, l: usize, w: &Widths) -> Vec<(String, Vec<usize>, Part)> {
    let p = |n: &str| format!("blk.{l}.{n}.weight");
    let mut v = vec![
        (p("attn_norm"), vec![w.dim], Part::Norm),
        (p("ffn_norm"), vec![w.dim], Part::Norm),
    ];
    if arch == "phi3" {
        v.push((p("attn_qkv"), vec![w.q + 2 * w.kv, w.dim], Part::Weights));
    } else {
        v.push((p("attn_q"), vec![w.q, w.dim], Part::Weights));
        v.push((p("attn_k"), vec![w.kv, w.dim], Part::Weights));
        v.push((p("attn_v"), vec![w.kv, w.dim], Part::Weights));
    }
    if arch == "qwen2" {
        for (n, len) in [("attn_q", w.q), ("attn_k", w.kv), ("attn_v", w.kv)] {
            v.push((format!("blk.{l}.{n}.bias"), vec![len], Part::Weights));
        }
    }
    if matches!(arch, "qwen3" | "gemma3") {
        v.push((p("attn_q_norm"), vec![w.head], Part::Norm));
        v.push((p("attn_k_norm"), vec![w.head], Part::Norm));
    }
    if arch == "gemma3" {
        v.push((p("post_attention_norm"), vec![w.dim], Part::Norm));
        v.push((p("post_ffw_norm"), vec![w.dim], Part::Norm));
    }
    v.push((p("attn_output"), vec![w.dim, w.q], Part::Weights));
    if arch == "phi3" {
        v.push((p("ffn_up"), vec![2 * w.ffn, w.dim], Part::Weights));
    } else {
        v.push((p("ffn_gate"), vec![w.ffn, w.dim], Part::Weights));
        v.push((p("ffn_up"), vec![w.ffn, w.dim], Part::Weights));
    }
    v.push((p("ffn_down"), vec![w.dim, w.ffn], Part::Weights));
    v
}

fn rand_tensor(shape: &[usize], seed: &mut u64) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.2
        })
        .collect();
    #[allow(clippy::expect_used, reason = "test fixture")]
    Tensor::from_vec(data, shape, &Device::Cpu).expect("shape matches data")
}

/// A tiny llama-family GGUF (2 layers, width 32) as bytes.
#[allow(clippy::expect_used, reason = "test fixture")]
pub fn tiny_gguf(o: &TinyOpts) -> Vec<u8> {
    let (mut tokens, merges, mut types) = tiny_vocab();
    let plain = tokens.len();
    if o.hostile {
        let table = byte_table();
        for h in HOSTILE {
            tokens.push(
                h.bytes()
                    .map(|b| table.get(usize::from(b)).copied().unwrap_or('?'))
                    .collect(),
            );
            types.push(1);
        }
    }
    let (dim, (heads, kv_heads), layers, ffn) = (o.dim, o.heads, 2u32, 2 * o.dim);
    let vocab = tokens.len();
    let arch = o.arch;
    // Qwen 3's and Gemma 3's heads are wider than the model's width per head here, as in
    // the real Qwen3-0.6B and Gemma 3 270M.
    let wide = matches!(arch, "qwen3" | "gemma3");
    let hd = dim / heads as usize * if wide { 2 } else { 1 };
    let s = |v: &str| Value::String(v.to_owned());
    let mut md = metadata(
        &Dims {
            arch: o.arch,
            name: "tiny-test",
            context: o.context,
            dim,
            layers: layers as usize,
            ffn,
            heads: (heads as usize, kv_heads as usize),
            head_dim: hd,
            rope_base: o.rope_base,
        },
        &merges,
        &types,
    );
    md.push(("general.file_type".into(), Value::U32(0)));
    if wide {
        for k in ["key_length", "value_length"] {
            md.push((format!("{arch}.attention.{k}"), Value::U32(hd as u32)));
        }
    }
    if arch == "gemma3" {
        // A window of 3 positions; every second layer sees the whole context.
        md.push((format!("{arch}.attention.sliding_window"), Value::U32(3)));
        md.push((
            format!("{arch}.attention.sliding_window_type"),
            Value::U32(2),
        ));
        md.push((format!("{arch}.rope.local_freq_base"), Value::F32(10000.0)));
    }
    if o.with_tokens {
        md.push((
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        ));
    }
    if let Some(t) = o.template {
        md.push(("tokenizer.chat_template".into(), s(t)));
    }
    let mut seed = o.seed;
    let (qd, kv) = (heads as usize * hd, kv_heads as usize * hd);
    let mut tensors: Vec<(String, Tensor)> = vec![
        (
            "token_embd.weight".into(),
            rand_tensor(&[vocab, dim], &mut seed),
        ),
        (
            "output_norm.weight".into(),
            Tensor::ones(dim, candle_core::DType::F32, &Device::Cpu).expect("ones"),
        ),
        (
            "output.weight".into(),
            rand_tensor(&[vocab, dim], &mut seed),
        ),
    ];
    if o.hostile {
        let mut rows = vec![0f32; vocab * dim];
        let v = values((vocab - plain) / 2 * dim, o.seed);
        for (i, r) in rows.chunks_mut(dim).skip(plain).enumerate() {
            let pair = v.get(i / 2 * dim..(i / 2 + 1) * dim).unwrap_or_default();
            for (x, y) in r.iter_mut().zip(pair) {
                *x = if i % 2 == 0 { *y } else { -*y };
            }
        }
        tensors[2].1 = Tensor::from_vec(rows, &[vocab, dim], &Device::Cpu).expect("shape matches");
    }
    if arch == "gemma3" {
        // Tied: the output projection is the token embedding.
        tensors.retain(|(n, _)| n != "output.weight");
    }
    // Norms: ones for llama (the other tests' fixtures), around 1 for the other families,
    // so that their extra norms are seen.
    let norm = |n: usize, seed: &mut u64| {
        let ones = Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).expect("ones");
        if arch == "llama" {
            ones
        } else {
            (ones + rand_tensor(&[n], seed)).expect("same shape")
        }
    };
    let w = Widths {
        dim,
        q: qd,
        kv,
        head: hd,
        ffn,
    };
    for l in 0..layers as usize {
        for (name, shape, part) in block_tensors(arch, l, &w) {
            let t = match part {
                Part::Norm => norm(dim_of(&shape), &mut seed),
                Part::Weights => rand_tensor(&shape, &mut seed),
            };
            tensors.push((name, t));
        }
    }
    let qt: Vec<(String, QTensor)> = tensors
        .into_iter()
        .map(|(n, t)| {
            let dtype = if t.rank() == 2 {
                o.dtype
            } else {
                GgmlDType::F32
            };
            (n, QTensor::quantize(&t, dtype).expect("quantize"))
        })
        .collect();
    let md_ref: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_ref: Vec<(&str, &QTensor)> = qt.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md_ref, &t_ref).expect("write gguf");
    out.into_inner()
}

/// The shape of a model of a family the lean path runs, for GGUFs of real models' sizes with
/// random weights (speed and memory do not depend on the values): [`TINY`], [`LLAMA_1B`],
/// [`MISTRAL_7B`], [`QWEN2_05B`], [`QWEN3_06B`], [`PHI3_MINI`].
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Name (`general.name`).
    pub name: &'static str,
    /// `general.architecture`: `llama`, `qwen2` (biases on the queries, keys and values),
    /// `qwen3` (norms of the queries and keys) or `phi3` (fused matrices).
    pub arch: &'static str,
    /// Model width.
    pub dim: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads and key/value heads.
    pub heads: (usize, usize),
    /// Width of a head (the model's width per head but for Qwen 3's, which are wider).
    pub head_dim: usize,
    /// Feed-forward width.
    pub ffn: usize,
    /// Vocabulary size (the tiny byte-level vocabulary, padded with filler tokens).
    pub vocab: usize,
    /// Context length.
    pub context: u32,
    /// RoPE frequency base.
    pub rope_base: f32,
    /// Whether the output matrix is the token embedding (no `output.weight`).
    pub tied: bool,
}

/// A small model every block type can quantise (rows a multiple of 256).
pub const TINY: Shape = Shape {
    name: "random-tiny",
    arch: "llama",
    dim: 256,
    layers: 2,
    heads: (4, 2),
    head_dim: 64,
    ffn: 512,
    vocab: 1024,
    context: 512,
    rope_base: 10000.0,
    tied: false,
};

/// Llama-3.2-1B's shape: 16 blocks of width 2048, 32 heads over 8 key/value heads,
/// feed-forward 8192, 128 256 tokens, tied embeddings.
pub const LLAMA_1B: Shape = Shape {
    name: "random-llama-3.2-1b-shape",
    arch: "llama",
    dim: 2048,
    layers: 16,
    heads: (32, 8),
    head_dim: 64,
    ffn: 8192,
    vocab: 128_256,
    context: 8192,
    rope_base: 500_000.0,
    tied: true,
};

/// Mistral-7B's shape: 32 blocks of width 4096, 32 heads over 8 key/value heads,
/// feed-forward 14336, 32 000 tokens, untied output.
pub const MISTRAL_7B: Shape = Shape {
    name: "random-mistral-7b-shape",
    arch: "llama",
    dim: 4096,
    layers: 32,
    heads: (32, 8),
    head_dim: 128,
    ffn: 14336,
    vocab: 32_000,
    context: 8192,
    rope_base: 1_000_000.0,
    tied: false,
};

/// Qwen2.5-0.5B's shape: 24 blocks of width 896 (not a multiple of 256: llama-quantize's
/// K-quant mixes fall back to Q5_0 and Q8_0 there), 14 heads over 2 key/value heads of 64,
/// biased queries, keys and values, feed-forward 4864, 151 936 tokens, tied embeddings.
pub const QWEN2_05B: Shape = Shape {
    name: "random-qwen2.5-0.5b-shape",
    arch: "qwen2",
    dim: 896,
    layers: 24,
    heads: (14, 2),
    head_dim: 64,
    ffn: 4864,
    vocab: 151_936,
    context: 32_768,
    rope_base: 1_000_000.0,
    tied: true,
};

/// Qwen3-0.6B's shape: 28 blocks of width 1024, 16 heads of 128 (wider than the width per
/// head) over 8 key/value heads, norms of the queries and keys, feed-forward 3072,
/// 151 936 tokens, tied embeddings.
pub const QWEN3_06B: Shape = Shape {
    name: "random-qwen3-0.6b-shape",
    arch: "qwen3",
    dim: 1024,
    layers: 28,
    heads: (16, 8),
    head_dim: 128,
    ffn: 3072,
    vocab: 151_936,
    context: 40_960,
    rope_base: 1_000_000.0,
    tied: true,
};

/// Phi-3-mini's shape (3.8 B): 32 blocks of width 3072, 32 heads of 96 (no grouping), the
/// queries, keys and values in one fused matrix and the gate and up in another,
/// feed-forward 8192, 32 064 tokens, untied output. (Its name leaves out "phi-3" and "phi3":
/// llama.cpp gives the special tokens of files so named attributes, and refuses a file
/// without Phi 3's own special tokens.)
pub const PHI3_MINI: Shape = Shape {
    name: "random-phi-mini-3.8b-shape",
    arch: "phi3",
    dim: 3072,
    layers: 32,
    heads: (32, 32),
    head_dim: 96,
    ffn: 8192,
    vocab: 32_064,
    context: 4096,
    rope_base: 10_000.0,
    tied: false,
};

/// A GGUF of `s`'s shape with pseudo-random weights (from `seed`), every matrix quantised to
/// `dtype` by candle's own quantiser (norms stay F32), with a working byte-level BPE tokenizer
/// and ChatML template, as bytes. Tensors are made and quantised one at a time, so the peak
/// memory is the quantised model plus one F32 matrix.
#[allow(
    clippy::expect_used,
    reason = "a development tool's fixture: shapes are valid"
)]
pub fn random_gguf(s: &Shape, dtype: GgmlDType, seed: u64) -> Vec<u8> {
    let (mut tokens, merges, mut types) = tiny_vocab();
    let mut n = 0usize;
    while tokens.len() < s.vocab {
        // Filler tokens: printable ASCII is its own byte-level symbol.
        tokens.push(format!("filler{n}"));
        types.push(1);
        n += 1;
    }
    tokens.truncate(s.vocab.max(263));
    types.truncate(tokens.len());
    let vocab = tokens.len();
    let str_v = |v: &str| Value::String(v.to_owned());
    let (heads, kv_heads) = s.heads;
    let mut md = metadata(
        &Dims {
            arch: s.arch,
            name: s.name,
            context: s.context,
            dim: s.dim,
            layers: s.layers,
            ffn: s.ffn,
            heads: s.heads,
            head_dim: s.head_dim,
            rope_base: s.rope_base,
        },
        &merges,
        &types,
    );
    if s.head_dim * s.heads.0 != s.dim {
        for k in ["key_length", "value_length"] {
            md.push((
                format!("{}.attention.{k}", s.arch),
                Value::U32(u32::try_from(s.head_dim).unwrap_or(u32::MAX)),
            ));
        }
    }
    md.push((
        "tokenizer.ggml.tokens".into(),
        Value::Array(tokens.iter().map(|t| str_v(t)).collect()),
    ));
    md.push(("tokenizer.chat_template".into(), str_v(super::chat::CHATML)));
    let mut seed = seed;
    let (qd, kv) = (heads * s.head_dim, kv_heads * s.head_dim);
    let ones = |n: usize| {
        QTensor::quantize(
            &Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).expect("ones"),
            GgmlDType::F32,
        )
        .expect("f32")
    };
    // Matrices in `dtype`, vectors (biases) in F32.
    let mut quantised = |shape: &[usize]| {
        let dt = if shape.len() == 2 {
            dtype
        } else {
            GgmlDType::F32
        };
        QTensor::quantize(&rand_tensor(shape, &mut seed), dt).expect("quantize")
    };
    let mut qt: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), quantised(&[vocab, s.dim])),
        ("output_norm.weight".into(), ones(s.dim)),
    ];
    if !s.tied {
        qt.push(("output.weight".into(), quantised(&[vocab, s.dim])));
    }
    let w = Widths {
        dim: s.dim,
        q: qd,
        kv,
        head: s.head_dim,
        ffn: s.ffn,
    };
    for l in 0..s.layers {
        for (name, shape, part) in block_tensors(s.arch, l, &w) {
            let t = match part {
                Part::Norm => ones(dim_of(&shape)),
                Part::Weights => quantised(&shape),
            };
            qt.push((name, t));
        }
    }
    let md_ref: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_ref: Vec<(&str, &QTensor)> = qt.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut out = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut out, &md_ref, &t_ref).expect("write gguf");
    out.into_inner()
}
