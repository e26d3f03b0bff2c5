//! Building a model from GGUF bytes held in memory (the decrypted arena; never a file path),
//! dispatching on `general.architecture`.

use std::collections::HashMap;
use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::{Device, Tensor};
use candle_transformers::models::{
    quantized_gemma3, quantized_llama, quantized_phi3, quantized_qwen2, quantized_qwen3,
};

use super::chat::{ChatTemplate, default_template};
use super::generate::Forward;
use super::lean::pack::Store;
use super::{Error, Tok};
use crate::secure::LockedBuf;

/// What the engine knows about a loaded model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    /// `general.architecture`.
    pub architecture: String,
    /// `general.name`.
    pub name: String,
    /// Quantisation (from `general.file_type`).
    pub quantization: String,
    /// Context window used.
    pub context_length: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Tensor data bytes.
    pub weight_bytes: u64,
    /// Whether the model has its own chat template.
    pub has_chat_template: bool,
}

enum Arch {
    Lean(Box<super::lean::LeanModel>),
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Qwen3(quantized_qwen3::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
    Phi3(quantized_phi3::ModelWeights),
}

/// A candle model on a device.
pub struct Model {
    arch: Arch,
    device: Device,
    context: usize,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl Forward for Model {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, Error> {
        // The candle models take the tokens as a (1, seq) tensor; the lean pass takes ids.
        let device = &self.device;
        let x = || -> Result<Tensor, Error> { Ok(Tensor::new(tokens, device)?.unsqueeze(0)?) };
        let logits = match &mut self.arch {
            Arch::Lean(m) => return m.forward(tokens, pos),
            Arch::Llama(m) => m.forward(&x()?, pos)?,
            Arch::Qwen2(m) => m.forward(&x()?, pos)?,
            Arch::Qwen3(m) => m.forward(&x()?, pos)?,
            Arch::Gemma3(m) => m.forward(&x()?, pos)?,
            Arch::Phi3(m) => m.forward(&x()?, pos)?,
        };
        // Some families return (batch, seq, vocab), others (batch, vocab): take the last row.
        let logits = match logits.rank() {
            3 => {
                let seq = logits.dim(1)?;
                logits.narrow(1, seq.saturating_sub(1), 1)?.flatten_all()?
            }
            _ => logits.flatten_all()?,
        };
        Ok(logits.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?)
    }

    fn context_len(&self) -> usize {
        self.context
    }
}

/// Which forward pass runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Rempart's lean llama path where it applies (CPU, llama family, F32, F16, BF16, Q4_0, Q4_1,
    /// Q5_0, Q5_1, Q8_0, Q4_K, Q5_K or Q6_K matrices), else candle-transformers' model.
    #[default]
    Auto,
    /// Always candle-transformers' model (for comparisons).
    Stock,
}

impl Model {
    /// Which forward pass this model runs: "lean" or "candle".
    pub fn backend(&self) -> &'static str {
        match self.arch {
            Arch::Lean(_) => "lean",
            _ => "candle",
        }
    }

    /// The lean pass's kernel level ("avx512", "avx2", "portable"); `None` for candle's.
    pub fn kernels(&self) -> Option<&'static str> {
        match self.arch {
            Arch::Lean(_) => Some(super::lean::kernels::Level::best().name()),
            _ => None,
        }
    }
}

/// A loaded model with its tokenizer and chat template.
pub struct Loaded {
    /// The model.
    pub model: Model,
    /// The tokenizer (shared with the front end, which counts documents' tokens with it).
    pub tok: std::sync::Arc<Tok>,
    /// The chat template (the model's own, or ChatML).
    pub template: ChatTemplate,
    /// Facts for status lines and JSON.
    pub info: ModelInfo,
    /// Tokens that end an answer besides EOS.
    pub stop_tokens: Vec<u32>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn file_type_name(t: u32) -> &'static str {
    match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => "other",
    }
}

fn get_str(md: &HashMap<String, Value>, k: &str) -> Option<String> {
    md.get(k).and_then(|v| v.to_string().ok()).cloned()
}

/// The largest context the candle model definitions support (their RoPE tables).
const CANDLE_MAX_CONTEXT: usize = 4096;

/// The largest context of the lean pass (its KV cache grows as it fills; its rotary tables
/// are made for this many positions: 8 MiB for heads of 128).
const LEAN_MAX_CONTEXT: usize = 8192;

/// Parses GGUF metadata only (for `tokenize`, inspection and tests).
pub fn read_content(bytes: &[u8]) -> Result<gguf_file::Content, Error> {
    super::gguf_check::check_header(bytes)?;
    gguf_file::Content::read(&mut Cursor::new(bytes)).map_err(|e| Error::Gguf(e.to_string()))
}

/// What a GGUF file says about itself, for a bundle's AI bill of materials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufFacts {
    /// `general.architecture`.
    pub architecture: String,
    /// `general.file_type` as llama.cpp names it (e.g. `Q4_1`), if known.
    pub quantization: Option<String>,
    /// Parameters: the elements of every tensor.
    pub parameters: u64,
    /// `ARCH.context_length`.
    pub context_length: Option<u64>,
    /// `tokenizer.ggml.model` (`gpt2` for byte-level BPE, `llama` for SentencePiece).
    pub tokenizer: Option<String>,
    /// Entries of `tokenizer.ggml.tokens`.
    pub vocabulary_size: Option<u64>,
    /// SHA-256 (hex) of `tokenizer.chat_template`.
    pub chat_template_sha256: Option<String>,
    /// How many tensors of each block type (llama.cpp's names: `Q4_K`, `F32`, ...).
    pub tensor_types: std::collections::BTreeMap<String, u64>,
}

/// The facts of a GGUF file (metadata and tensor table only); `None` if it is not a GGUF file
/// with `general.architecture`.
pub fn facts(bytes: &[u8]) -> Option<GgufFacts> {
    use candle_core::quantized::GgmlDType as T;
    let ct = read_content(bytes).ok()?;
    let md = &ct.metadata;
    let architecture = get_str(md, "general.architecture")?;
    let mut tensor_types = std::collections::BTreeMap::new();
    let mut parameters = 0u64;
    for info in ct.tensor_infos.values() {
        let name = match info.ggml_dtype {
            T::F32 => "F32",
            T::F16 => "F16",
            T::BF16 => "BF16",
            T::Q4_0 => "Q4_0",
            T::Q4_1 => "Q4_1",
            T::Q5_0 => "Q5_0",
            T::Q5_1 => "Q5_1",
            T::Q8_0 => "Q8_0",
            T::Q8_1 => "Q8_1",
            T::Q2K => "Q2_K",
            T::Q3K => "Q3_K",
            T::Q4K => "Q4_K",
            T::Q5K => "Q5_K",
            T::Q6K => "Q6_K",
            T::Q8K => "Q8_K",
        };
        *tensor_types.entry(name.to_owned()).or_insert(0u64) += 1;
        parameters = parameters.saturating_add(info.shape.elem_count() as u64);
    }
    Some(GgufFacts {
        quantization: md
            .get("general.file_type")
            .and_then(|v| v.to_u32().ok())
            .map(file_type_name)
            .filter(|q| *q != "other")
            .map(str::to_owned),
        parameters,
        context_length: md
            .get(&format!("{architecture}.context_length"))
            .and_then(|v| v.to_u64().ok()),
        tokenizer: get_str(md, "tokenizer.ggml.model"),
        vocabulary_size: md
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.to_vec().ok())
            .map(|v| v.len() as u64),
        chat_template_sha256: get_str(md, "tokenizer.chat_template")
            .map(|t| hex::encode(crate::crypto::hash::sha256(&[t.as_bytes()]))),
        tensor_types,
        architecture,
    })
}

/// Builds the tokenizer and template from GGUF bytes, without the weights.
pub fn load_tokenizer(bytes: &[u8]) -> Result<(Tok, ChatTemplate), Error> {
    let ct = read_content(bytes)?;
    let tok = Tok::from_gguf(&ct.metadata)?;
    let arch = get_str(&ct.metadata, "general.architecture").unwrap_or_default();
    let template = ChatTemplate::new(
        &get_str(&ct.metadata, "tokenizer.chat_template")
            .unwrap_or_else(|| default_template(&arch).to_owned()),
    )?;
    Ok((tok, template))
}

/// Builds the model from GGUF bytes in memory.
pub fn load(bytes: &[u8], device: &Device) -> Result<Loaded, Error> {
    load_with(bytes, device, Backend::Auto)
}

/// Builds the model from GGUF bytes in memory with the chosen forward pass (the lean pass
/// works on a copy of them).
pub fn load_with(bytes: &[u8], device: &Device, backend: Backend) -> Result<Loaded, Error> {
    load_store(Store::heap(bytes), device, backend)
}

/// Builds the model from the decrypted arena, which the lean pass keeps: its matrices are
/// repacked in place (the weights are never held twice) and the rest is wiped. For candle's
/// models the arena is wiped and freed once they have copied the weights.
pub fn load_arena(arena: LockedBuf, device: &Device, backend: Backend) -> Result<Loaded, Error> {
    load_store(Store::Arena(arena), device, backend)
}

fn load_store(store: Store, device: &Device, backend: Backend) -> Result<Loaded, Error> {
    let bytes = store.bytes();
    let ct = read_content(bytes)?;
    let md = &ct.metadata;
    let arch = get_str(md, "general.architecture")
        .ok_or_else(|| Error::Metadata("missing general.architecture".into()))?;
    let tok = Tok::from_gguf(md)?;
    let template_src = get_str(md, "tokenizer.chat_template");
    let template = ChatTemplate::new(template_src.as_deref().unwrap_or(default_template(&arch)))?;
    let ctx_meta = md
        .get(&format!("{arch}.context_length"))
        .and_then(|v| v.to_u32().ok())
        .unwrap_or(2048) as usize;
    let weight_bytes = bytes.len() as u64 - ct.tensor_data_offset.min(bytes.len() as u64);
    let lean =
        backend == Backend::Auto && matches!(device, Device::Cpu) && super::lean::supports(&ct);
    let max_context = if lean {
        LEAN_MAX_CONTEXT
    } else {
        CANDLE_MAX_CONTEXT
    };
    let info = ModelInfo {
        architecture: arch.clone(),
        name: get_str(md, "general.name").unwrap_or_default(),
        quantization: file_type_name(
            md.get("general.file_type")
                .and_then(|v| v.to_u32().ok())
                .unwrap_or(u32::MAX),
        )
        .to_owned(),
        context_length: ctx_meta.min(max_context),
        vocab_size: tok.vocab_size(),
        weight_bytes,
        has_chat_template: template_src.is_some(),
    };
    let mut stop_tokens: Vec<u32> = [
        "<|im_end|>",
        "<|eot_id|>",
        "<|end_of_text|>",
        "<end_of_turn>",
        "<|end|>",
        "<|endoftext|>",
        "</s>",
    ]
    .iter()
    .filter_map(|s| tok.id_of(s))
    .collect();
    stop_tokens.extend(tok.eot);
    stop_tokens.sort_unstable();
    stop_tokens.dedup();
    let mut cursor = Cursor::new(bytes);
    let arch_model = match arch.as_str() {
        _ if lean => Arch::Lean(Box::new(super::lean::LeanModel::from_gguf(
            &ct,
            store,
            max_context,
        )?)),
        "llama" | "mistral" => Arch::Llama(quantized_llama::ModelWeights::from_gguf(
            ct,
            &mut cursor,
            device,
        )?),
        "qwen2" => Arch::Qwen2(quantized_qwen2::ModelWeights::from_gguf(
            ct,
            &mut cursor,
            device,
        )?),
        "qwen3" => Arch::Qwen3(quantized_qwen3::ModelWeights::from_gguf(
            ct,
            &mut cursor,
            device,
        )?),
        "gemma3" => Arch::Gemma3(quantized_gemma3::ModelWeights::from_gguf(
            ct,
            &mut cursor,
            device,
        )?),
        "phi3" => Arch::Phi3(quantized_phi3::ModelWeights::from_gguf(
            false,
            ct,
            &mut cursor,
            device,
        )?),
        other => return Err(Error::UnsupportedArchitecture(other.to_owned())),
    };
    Ok(Loaded {
        model: Model {
            arch: arch_model,
            device: device.clone(),
            context: info.context_length,
        },
        tok: std::sync::Arc::new(tok),
        template,
        info,
        stop_tokens,
    })
}
