//! Building the lean model from a GGUF: whether the lean path can run it ([`supports`]), its
//! metadata, and its tensors read out of the file in memory (`Builder`: norms copied,
//! matrices repacked in place, the rest wiped) into the [`Weights`] of a model.

use std::ops::Range;
use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{Content, TensorInfo};

use super::blocks::Kind;
use super::layer::{Dims, Layer, QMat};
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
    /// RoPE cos/sin per position and pair, `[pos][head_dim / 2]`.
    pub(super) cos: Vec<f32>,
    pub(super) sin: Vec<f32>,
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
        Kind::from_ggml(info.ggml_dtype).is_some_and(|k| {
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
        let kind = Kind::from_ggml(info.ggml_dtype)
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

/// Reads the model's weights from the parsed GGUF `ct` and the file's bytes in `store`, with a
/// context window of at most `max_context` tokens. The matrices are repacked in place and
/// share `store`; every other byte of it is wiped (see [`pack`]).
pub(super) fn weights(
    ct: &Content,
    mut store: Store,
    max_context: usize,
) -> Result<Weights, Error> {
    let dim = md_u32(ct, "llama.embedding_length")?;
    let heads = md_u32(ct, "llama.attention.head_count")?;
    let kv_heads = md_u32(ct, "llama.attention.head_count_kv").unwrap_or(heads);
    let ffn = md_u32(ct, "llama.feed_forward_length")?;
    let layers_n = md_u32(ct, "llama.block_count")?;
    let context = md_u32(ct, "llama.context_length")
        .unwrap_or(2048)
        .min(max_context);
    if heads == 0 || kv_heads == 0 || !dim.is_multiple_of(heads) || !heads.is_multiple_of(kv_heads)
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
    Ok(Weights {
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
