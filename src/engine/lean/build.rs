//! Building the lean model from a GGUF: whether the lean path can run it ([`supports`]), its
//! metadata, and its tensors read out of the file in memory (`Builder`: norms copied,
//! matrices repacked in place, the rest wiped) into the [`Weights`] of a model.

use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, TensorInfo};

use super::attention::Rope;
use super::blocks::Kind;
use super::layer::{Bias, Dims, Layer, QMat};
use super::pack::{self, Layout, Store};
use crate::engine::Error;

/// A model's weights, shapes and rotary tables, as [`weights`] reads them from a GGUF.
#[derive(Debug)]
pub(super) struct Weights {
    pub(super) d: Dims,
    pub(super) embed: QMat,
    pub(super) out_norm: Vec<f32>,
    /// The output projection; `None` when tied to the embedding.
    pub(super) output: Option<QMat>,
    pub(super) layers: Vec<Layer>,
    /// The rotary embedding's tables.
    pub(super) rope: Rope,
    /// Those of the sliding-window layers when they have their own (Gemma 3), else empty.
    pub(super) local_rope: Rope,
}

/// The model families the lean path runs, from `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// Llama, Mistral and the models that declare `llama` (SmolLM, TinyLlama...).
    Llama,
    /// Qwen 2 and 2.5: biases on the query, key and value products.
    Qwen2,
    /// Qwen 3: each query and key head RMS-normed; heads may be wider than `dim / heads`.
    Qwen3,
    /// Gemma 3: QK-norm, norms after the attention and the feed-forward, GELU, scaled
    /// embeddings, sliding-window layers with their own rotary base.
    Gemma3,
    /// Phi 3 and 4: fused query-key-value and gate-up matrices.
    Phi3,
}

impl Family {
    /// The family of `ct`'s `general.architecture`, if the lean path runs it.
    pub(super) fn of(ct: &Content) -> Option<Self> {
        let arch = ct
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())?;
        Some(match arch.as_str() {
            "llama" | "mistral" => Self::Llama,
            "qwen2" => Self::Qwen2,
            "qwen3" => Self::Qwen3,
            "gemma3" => Self::Gemma3,
            "phi3" => Self::Phi3,
            _ => return None,
        })
    }

    /// The prefix of its metadata keys.
    fn prefix(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
            Self::Gemma3 => "gemma3",
            Self::Phi3 => "phi3",
        }
    }
}

/// Whether the lean path can run this GGUF: a family it knows (`Family`), not a mixture of
/// experts, every matrix in a supported block type with every row a whole number of blocks,
/// every norm, bias and rotary frequency factor f32.
pub fn supports(ct: &Content) -> bool {
    let Some(family) = Family::of(ct) else {
        return false;
    };
    if ct
        .metadata
        .get(&format!("{}.expert_count", family.prefix()))
        .and_then(|v| v.to_u32().ok())
        .is_some_and(|n| n > 1)
    {
        return false;
    }
    // Rotary scalings other than linear (YaRN, LongRoPE) keep the stock path.
    let scaling = ct
        .metadata
        .get(&format!("{}.rope.scaling.type", family.prefix()))
        .and_then(|v| v.to_string().ok());
    if scaling.is_some_and(|t| t != "none" && t != "linear") {
        return false;
    }
    ct.tensor_infos.iter().all(|(name, info)| {
        let dims = info.shape.dims();
        if name.ends_with("norm.weight") || name.ends_with(".bias") || name == ROPE_FREQS {
            return info.ggml_dtype == GgmlDType::F32 && dims.len() == 1;
        }
        Kind::from_ggml(info.ggml_dtype).is_some_and(|k| {
            dims.len() == 2
                && dims
                    .last()
                    .is_some_and(|c| c.is_multiple_of(k.row_multiple()))
        })
    })
}

/// The factor of the positions of a linear rotary scaling (`rope.scaling.type` "linear":
/// `1 / rope.scaling.factor`), else 1. Gemma 3 scales its global layers only.
fn linear_scale(ct: &Content, prefix: &str) -> f32 {
    let md = |k: &str| ct.metadata.get(&format!("{prefix}.rope.scaling.{k}"));
    let linear = md("type")
        .and_then(|v| v.to_string().ok())
        .is_some_and(|t| t == "linear");
    let factor = md("factor").and_then(|v| v.to_f32().ok()).unwrap_or(1.0);
    if linear && factor > 0.0 {
        1.0 / factor
    } else {
        1.0
    }
}

/// The tensor of Llama 3's rotary frequency factors (each pair's angle is divided by its
/// factor).
const ROPE_FREQS: &str = "rope_freqs.weight";

fn md_u32(ct: &Content, k: &str) -> Result<usize, Error> {
    ct.metadata
        .get(k)
        .and_then(|v| v.to_u32().ok())
        .map(|v| v as usize)
        .ok_or_else(|| Error::Metadata(format!("missing or invalid {k}")))
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

    /// Matrix `name` (`rows` x `cols`), repacked in place (striped where it can be).
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<Layout, Error> {
        self.matrix_as(name, rows, cols, true)
    }

    /// Matrix `name` (`rows` x `cols`), repacked in place, striped only with `stripes`.
    fn matrix_as(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        stripes: bool,
    ) -> Result<Layout, Error> {
        let (info, at) = self.claim(name)?;
        let kind = Kind::from_ggml(info.ggml_dtype)
            .ok_or_else(|| Error::Gguf(format!("{name}: block type {:?}", info.ggml_dtype)))?;
        if info.shape.dims() != [rows, cols] {
            return Err(Error::Gguf(format!(
                "{name}: shape {:?}, expected [{rows}, {cols}]",
                info.shape.dims()
            )));
        }
        let l = pack::pack_in_place(kind, rows, cols, self.bytes, (at.clone(), stripes))
            .map_err(|e| Error::Gguf(format!("{name}: {e}")))?;
        self.packed.push(at);
        Ok(l)
    }

    /// A fused matrix `name` of the rows of each part of `parts` in turn, each `cols` wide,
    /// repacked in place and read as one matrix per part.
    fn fused(&mut self, name: &str, parts: &[usize], cols: usize) -> Result<Vec<Layout>, Error> {
        let rows = parts.iter().sum();
        // Striped only if every part is whole stripes (each is read as a matrix of its own).
        let stripes = parts.iter().all(|n| n.is_multiple_of(pack::STRIPE));
        let whole = self.matrix_as(name, rows, cols, stripes)?;
        let mut at = 0;
        parts
            .iter()
            .map(|n| {
                let part = whole.row_range(at..at + n);
                at += n;
                part.ok_or_else(|| Error::Gguf(format!("{name}: an empty part")))
            })
            .collect()
    }

    /// Vector `name` of `len` f32 if the file has it, else an empty one.
    fn optional(&mut self, name: &str, len: usize) -> Result<Vec<f32>, Error> {
        if self.ct.tensor_infos.contains_key(name) {
            self.vector(name, len)
        } else {
            Ok(Vec::new())
        }
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

/// Reads the model's weights from the parsed GGUF `ct` and the file's bytes in `store`, with a
/// context window of at most `max_context` tokens. The matrices are repacked in place and
/// share `store`; every other byte of it is wiped (see [`pack`]).
pub(super) fn weights(
    ct: &Content,
    mut store: Store,
    max_context: usize,
) -> Result<Weights, Error> {
    let family = Family::of(ct)
        .ok_or_else(|| Error::Metadata("the lean path does not run this architecture".into()))?;
    let p = family.prefix();
    let key = |k: &str| format!("{p}.{k}");
    let f32_or = |k: &str, default: f32| {
        ct.metadata
            .get(&key(k))
            .and_then(|v| v.to_f32().ok())
            .unwrap_or(default)
    };
    let dim = md_u32(ct, &key("embedding_length"))?;
    let heads = md_u32(ct, &key("attention.head_count"))?;
    let kv_heads = md_u32(ct, &key("attention.head_count_kv")).unwrap_or(heads);
    let ffn = md_u32(ct, &key("feed_forward_length"))?;
    let layers_n = md_u32(ct, &key("block_count"))?;
    let context = md_u32(ct, &key("context_length"))
        .unwrap_or(2048)
        .min(max_context);
    if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return Err(Error::Metadata(format!(
            "{heads} heads over {kv_heads} key/value heads"
        )));
    }
    // Qwen 3 and Gemma 3 give their heads' width; the others' is the model's width per head.
    let head_dim = match md_u32(ct, &key("attention.key_length")) {
        Ok(n) => n,
        Err(_) if dim.is_multiple_of(heads) => dim / heads,
        Err(_) => {
            return Err(Error::Metadata(format!("{heads} heads for width {dim}")));
        }
    };
    let value_dim = md_u32(ct, &key("attention.value_length")).unwrap_or(head_dim);
    let rope_dim = md_u32(ct, &key("rope.dimension_count")).unwrap_or(head_dim);
    if value_dim != head_dim || rope_dim != head_dim || head_dim == 0 || !head_dim.is_multiple_of(2)
    {
        return Err(Error::Metadata(format!(
            "heads of {head_dim} (keys), {value_dim} (values), RoPE over {rope_dim}: the lean \
             path needs one even width"
        )));
    }
    let gemma = family == Family::Gemma3;
    let eps = f32_or(
        "attention.layer_norm_rms_epsilon",
        if gemma { 1e-6 } else { 1e-5 },
    );
    let base = f32_or("rope.freq_base", if gemma { 1e6 } else { 1e4 });
    let vocab = ct
        .tensor_infos
        .get("token_embd.weight")
        .and_then(|i| i.shape.dims().first().copied())
        .ok_or_else(|| Error::Metadata("missing token_embd.weight".into()))?;
    // Gemma 3: five sliding-window layers of six (the sixth sees the whole context), with
    // their own rotary base.
    let (window, pattern) = if gemma {
        let w = md_u32(ct, &key("attention.sliding_window"))?;
        let n = md_u32(ct, &key("attention.sliding_window_type")).unwrap_or(6);
        (w, n.max(1))
    } else {
        (0, 1)
    };
    let local_base = f32_or("rope.local_freq_base", 1e4);
    let (kv_dim, q_dim) = (kv_heads * head_dim, heads * head_dim);
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
    let factors = b.optional(ROPE_FREQS, head_dim / 2)?;
    let needs_qk_norm = matches!(family, Family::Qwen3 | Family::Gemma3);
    // Capped by the tensor count: `block_count` comes from the file.
    let mut plan = Vec::with_capacity(layers_n.min(ct.tensor_infos.len()));
    for l in 0..layers_n {
        let n = |s: &str| format!("blk.{l}.{s}.weight");
        let bias = |s: &str| format!("blk.{l}.{s}.bias");
        let (q, k, v) = if family == Family::Phi3 {
            let mut parts = b
                .fused(&n("attn_qkv"), &[q_dim, kv_dim, kv_dim], dim)?
                .into_iter();
            let mut next = || parts.next().ok_or_else(|| Error::Gguf("attn_qkv".into()));
            (next()?, next()?, next()?)
        } else {
            (
                b.matrix(&n("attn_q"), q_dim, dim)?,
                b.matrix(&n("attn_k"), kv_dim, dim)?,
                b.matrix(&n("attn_v"), kv_dim, dim)?,
            )
        };
        let (gate, up) = if family == Family::Phi3 {
            let mut parts = b.fused(&n("ffn_up"), &[ffn, ffn], dim)?.into_iter();
            let mut next = || parts.next().ok_or_else(|| Error::Gguf("ffn_up".into()));
            (next()?, next()?)
        } else {
            (
                b.matrix(&n("ffn_gate"), ffn, dim)?,
                b.matrix(&n("ffn_up"), ffn, dim)?,
            )
        };
        let mut norm = |s: &str, len: usize, required: bool| {
            if required {
                b.vector(&n(s), len)
            } else {
                b.optional(&n(s), len)
            }
        };
        let (q_norm, k_norm) = (
            norm("attn_q_norm", head_dim, needs_qk_norm)?,
            norm("attn_k_norm", head_dim, needs_qk_norm)?,
        );
        let (post_attn_norm, post_ffn_norm) = (
            norm("post_attention_norm", dim, gemma)?,
            norm("post_ffw_norm", dim, gemma)?,
        );
        let local = gemma && (l + 1) % pattern != 0;
        plan.push(Layer {
            attn_norm: b.vector(&n("attn_norm"), dim)?,
            ffn_norm: b.vector(&n("ffn_norm"), dim)?,
            bias: Bias {
                q: b.optional(&bias("attn_q"), q_dim)?,
                k: b.optional(&bias("attn_k"), kv_dim)?,
                v: b.optional(&bias("attn_v"), kv_dim)?,
            },
            q_norm,
            k_norm,
            post_attn_norm,
            post_ffn_norm,
            window: if local { window } else { 0 },
            local_rope: local,
            q,
            k,
            v,
            o: b.matrix(&n("attn_output"), dim, q_dim)?,
            gate,
            up,
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
    // Gemma 3 27B (62 blocks) scales by its model width per head, as llama.cpp does.
    let scale_dim = if gemma && layers_n == 62 {
        dim / heads
    } else {
        head_dim
    };
    Ok(Weights {
        d: Dims {
            dim,
            heads,
            kv_heads,
            head_dim,
            attn_scale: 1.0 / (scale_dim as f32).sqrt(),
            neox: family != Family::Llama,
            embed_scale: if gemma { (dim as f32).sqrt() } else { 1.0 },
            gelu: gemma,
            ffn,
            vocab,
            eps,
            context,
        },
        embed,
        out_norm,
        output,
        layers,
        rope: Rope::new(head_dim, (base, linear_scale(ct, p)), &factors, context),
        local_rope: if gemma {
            Rope::new(head_dim, (local_base, 1.0), &[], context)
        } else {
            Rope::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::Arc;

    use candle_core::Device;
    use candle_core::quantized::GgmlDType;
    use candle_core::quantized::gguf_file::Content;

    use super::weights;
    use crate::engine::lean::pack::Store;
    use crate::engine::testing::{TinyOpts, tiny_gguf};

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
            let m = weights(&ct, Store::heap(&gguf), 64).unwrap();
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
}
