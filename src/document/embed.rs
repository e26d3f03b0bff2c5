//! Semantic ranking: a sentence-embedding model (BERT family, e.g. all-MiniLM-L6-v2) installed
//! as a sealed bundle of three artifacts (safetensors weights, `tokenizer.json`,
//! `config.json`), run with candle-transformers' BERT on the CPU: mean pooling over the
//! tokens, then L2 normalisation, as sentence-transformers does for this family.
//!
//! # Security
//! The three artifacts come decrypted from a signed bundle (locked arenas, wiped when dropped);
//! candle copies the weights into heap tensors, wiped on free by the zeroizing allocator. The
//! configuration is bounded before anything is allocated from it.

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};

/// Longest passage embedded, in tokens (all-MiniLM-L6-v2 was trained on 256; longer text is
/// cut there, as sentence-transformers does).
const MAX_TOKENS: usize = 256;

/// Passages embedded together (padded to the longest).
const BATCH: usize = 16;

/// A loaded sentence-embedding model.
pub struct Embedder {
    model: BertModel,
    tok: tokenizers::Tokenizer,
    dims: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dims", &self.dims)
            .finish_non_exhaustive()
    }
}

fn e(what: &str) -> impl Fn(candle_core::Error) -> String + '_ {
    move |err| format!("{what}: {err}")
}

impl Embedder {
    /// Builds the model from its weights (safetensors), `tokenizer.json` and `config.json`.
    pub fn new(weights: &[u8], tokenizer_json: &[u8], config_json: &[u8]) -> Result<Self, String> {
        let config: Config = serde_json::from_slice(config_json)
            .map_err(|err| format!("config.json is not a BERT configuration ({err})"))?;
        if config.hidden_size == 0
            || config.hidden_size > 4096
            || config.num_hidden_layers > 64
            || config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
            || config.intermediate_size > 16384
            || config.vocab_size > 1 << 20
            || config.max_position_embeddings > 8192
        {
            return Err(
                "config.json: sizes out of the bounds of a sentence-embedding model".into(),
            );
        }
        let vb = candle_nn::VarBuilder::from_slice_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(e("the weights are not safetensors"))?;
        let model =
            BertModel::load(vb, &config).map_err(e("the weights do not fit config.json"))?;
        let mut tok = tokenizers::Tokenizer::from_bytes(tokenizer_json)
            .map_err(|err| format!("tokenizer.json cannot be read ({err})"))?;
        tok.with_truncation(Some(tokenizers::TruncationParams {
            max_length: MAX_TOKENS.min(config.max_position_embeddings),
            ..Default::default()
        }))
        .map_err(|err| format!("tokenizer.json: {err}"))?;
        tok.with_padding(Some(tokenizers::PaddingParams::default()));
        Ok(Self {
            model,
            tok,
            dims: config.hidden_size,
        })
    }

    /// The vector size.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Unit-length embeddings of `texts`, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            let enc = self
                .tok
                .encode_batch(batch.to_vec(), true)
                .map_err(|err| format!("tokenizing: {err}"))?;
            let n = enc.first().map_or(0, |x| x.get_ids().len());
            let ids: Vec<u32> = enc.iter().flat_map(|x| x.get_ids().to_vec()).collect();
            let types: Vec<u32> = enc.iter().flat_map(|x| x.get_type_ids().to_vec()).collect();
            let mask: Vec<u32> = enc
                .iter()
                .flat_map(|x| x.get_attention_mask().to_vec())
                .collect();
            let shape = (batch.len(), n);
            let t = |v: Vec<u32>| Tensor::from_vec(v, shape, &Device::Cpu).map_err(e("input"));
            let (ids, types, mask) = (t(ids)?, t(types)?, t(mask)?);
            let hidden = self
                .model
                .forward(&ids, &types, Some(&mask))
                .map_err(e("the embedding model"))?;
            // Mean over the real tokens, then unit length.
            let m = mask
                .to_dtype(DType::F32)
                .and_then(|m| m.unsqueeze(2))
                .map_err(e("pooling"))?;
            let pooled = hidden
                .broadcast_mul(&m)
                .and_then(|h| h.sum(1))
                .and_then(|s| s.broadcast_div(&m.sum(1)?))
                .map_err(e("pooling"))?;
            let norm = pooled
                .sqr()
                .and_then(|x| x.sum_keepdim(1))
                .and_then(|x| x.sqrt())
                .and_then(|x| x.clamp(1e-12, f32::MAX))
                .map_err(e("pooling"))?;
            let unit = pooled.broadcast_div(&norm).map_err(e("pooling"))?;
            out.extend(unit.to_vec2::<f32>().map_err(e("pooling"))?);
        }
        Ok(out)
    }
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
