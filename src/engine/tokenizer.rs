//! Tokenizers built from GGUF metadata with the `tokenizers` crate, plus the exact byte table
//! used for streaming output.
//!
//! * `tokenizer.ggml.model = "gpt2"`: byte-level BPE from `tokens` + `merges`, with the
//!   pre-tokenizer split rules llama.cpp uses for `tokenizer.ggml.pre` (smollm/starcoder: each
//!   digit isolated, then the GPT-2 regex; llama3/qwen2: their own regexes; default: GPT-2).
//! * `tokenizer.ggml.model = "llama"` (SentencePiece): BPE whose merges are derived from the
//!   token scores (a merge's rank is its result's score), byte fallback, `▁` for spaces.
//!
//! Control and user-defined tokens (`token_type` 3 and 4) are added as special tokens so they
//! encode as single ids (`<|im_start|>`...) and never appear in output text.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::Error;

const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Token types from `tokenizer.ggml.token_type`.
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// A tokenizer and everything needed to turn ids back into bytes.
pub struct Tok {
    inner: Tokenizer,
    /// Bytes of each token id (empty for control tokens).
    bytes: Strings,
    /// Whether each id is a control/special token.
    special: Vec<bool>,
    /// Token strings (for `tokenize` output and stop-token lookup).
    pieces: Strings,
    /// BOS id and whether the model wants it prepended.
    pub bos: Option<u32>,
    /// Whether to prepend BOS to prompts.
    pub add_bos: bool,
    /// EOS id.
    pub eos: Option<u32>,
    /// EOT id (end of turn), if the model has one.
    pub eot: Option<u32>,
}

impl std::fmt::Debug for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tok")
            .field("vocab", &self.pieces.len())
            .finish_non_exhaustive()
    }
}

/// A vocabulary's strings end to end in one buffer: a `Vec<String>` of Llama 3's 128 256
/// tokens held 7 MB (a 24-byte header and a heap block per token), this 2 MB.
#[derive(Default)]
struct Strings {
    blob: Vec<u8>,
    /// Where each string ends in `blob`.
    ends: Vec<usize>,
}

impl Strings {
    fn new<T: AsRef<[u8]>>(items: impl ExactSizeIterator<Item = T>) -> Self {
        let mut out = Self {
            blob: Vec::new(),
            ends: Vec::with_capacity(items.len()),
        };
        for item in items {
            out.blob.extend_from_slice(item.as_ref());
            out.ends.push(out.blob.len());
        }
        out.blob.shrink_to_fit();
        out
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// String `i`, or nothing past the end.
    fn get(&self, i: usize) -> &[u8] {
        let start = match i.checked_sub(1) {
            Some(j) => self.ends.get(j).copied().unwrap_or(usize::MAX),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(0);
        self.blob.get(start..end).unwrap_or_default()
    }
}

fn meta<'a>(md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value, Error> {
    md.get(key)
        .ok_or_else(|| Error::Metadata(format!("missing {key}")))
}

fn strings(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>, Error> {
    meta(md, key)?
        .to_vec()
        .map_err(|_| Error::Metadata(format!("{key} is not an array")))?
        .iter()
        .map(|v| {
            v.to_string()
                .cloned()
                .map_err(|_| Error::Metadata(format!("{key} holds a non-string")))
        })
        .collect()
}

fn opt_u32(md: &HashMap<String, Value>, key: &str) -> Option<u32> {
    md.get(key).and_then(|v| v.to_u32().ok())
}

/// GPT-2's byte ↔ printable-character table.
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..=255u8 {
        let printable =
            (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        table[usize::from(b)] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(256 + n).unwrap_or('\0');
            n += 1;
            c
        };
    }
    table
}

impl Tok {
    /// Builds the tokenizer from GGUF metadata.
    pub fn from_gguf(md: &HashMap<String, Value>) -> Result<Self, Error> {
        let kind = meta(md, "tokenizer.ggml.model")?
            .to_string()
            .map_err(|_| Error::Metadata("tokenizer.ggml.model is not a string".into()))?
            .clone();
        let pieces = strings(md, "tokenizer.ggml.tokens")?;
        let n = pieces.len();
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|_| Error::Metadata("token_type is not an array".into()))?
                .iter()
                .map(|t| t.to_i32().unwrap_or(1))
                .collect(),
            None => vec![1; n],
        };
        if types.len() != n {
            return Err(Error::Metadata(format!(
                "{} token types for {n} tokens",
                types.len()
            )));
        }
        let special: Vec<bool> = types
            .iter()
            .map(|&t| t == TYPE_CONTROL || t == TYPE_USER_DEFINED)
            .collect();
        let (inner, bytes) = match kind.as_str() {
            "gpt2" => Self::byte_level_bpe(md, &pieces)?,
            "llama" => Self::sentencepiece(md, &pieces, &types)?,
            other => {
                return Err(Error::Tokenizer(format!(
                    "unsupported tokenizer model {other:?} (gpt2 and llama are supported)"
                )));
            }
        };
        let mut inner = inner;
        let added: Vec<AddedToken> = pieces
            .iter()
            .zip(&special)
            .filter(|(_, s)| **s)
            .map(|(p, _)| AddedToken::from(p.clone(), true))
            .collect();
        inner
            .add_special_tokens(added)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let bytes = Strings::new(
            bytes
                .into_iter()
                .zip(&special)
                .map(|(b, s)| if *s { Vec::new() } else { b }),
        );
        let pieces = Strings::new(pieces.iter());
        let bos = opt_u32(md, "tokenizer.ggml.bos_token_id");
        let add_bos = md
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(kind == "llama");
        Ok(Self {
            inner,
            bytes,
            special,
            pieces,
            bos,
            add_bos,
            eos: opt_u32(md, "tokenizer.ggml.eos_token_id"),
            eot: opt_u32(md, "tokenizer.ggml.eot_token_id"),
        })
    }

    fn byte_level_bpe(
        md: &HashMap<String, Value>,
        pieces: &[String],
    ) -> Result<(Tokenizer, Vec<Vec<u8>>), Error> {
        let merges: Vec<(String, String)> = strings(md, "tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                let (a, b) = m
                    .split_once(' ')
                    .ok_or_else(|| Error::Metadata(format!("bad merge {m:?}")))?;
                Ok((a.to_owned(), b.to_owned()))
            })
            .collect::<Result<_, Error>>()?;
        let vocab: Vocab = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(false)
            .build()
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let pre = md
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("default");
        let split = |re: &str| {
            Split::new(
                SplitPattern::Regex(re.to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| Error::Tokenizer(e.to_string()))
        };
        let byte_level = ByteLevel::new(false, false, true);
        let pre_tok: tokenizers::PreTokenizerWrapper = match pre {
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
            "llama3" | "llama-bpe" | "llama-v3" => Sequence::new(vec![
                split(LLAMA3_REGEX)?.into(),
                ByteLevel::new(false, false, false).into(),
            ])
            .into(),
            "qwen2" | "stablelm2" | "deepseek-r1-qwen" => Sequence::new(vec![
                split(QWEN2_REGEX)?.into(),
                ByteLevel::new(false, false, false).into(),
            ])
            .into(),
            _ => byte_level.into(),
        };
        let mut tk = Tokenizer::new(bpe);
        tk.with_pre_tokenizer(Some(pre_tok));
        tk.with_decoder(Some(ByteLevel::default()));
        let table = byte_to_char();
        let mut inverse: HashMap<char, u8> = HashMap::with_capacity(256);
        for (b, c) in table.iter().enumerate() {
            inverse.insert(*c, b as u8);
        }
        let bytes = pieces
            .iter()
            .map(|p| {
                p.chars()
                    .map(|c| inverse.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                    .unwrap_or_else(|| p.as_bytes().to_vec())
            })
            .collect();
        Ok((tk, bytes))
    }

    fn sentencepiece(
        md: &HashMap<String, Value>,
        pieces: &[String],
        types: &[i32],
    ) -> Result<(Tokenizer, Vec<Vec<u8>>), Error> {
        let scores: Vec<f32> = match md.get("tokenizer.ggml.scores") {
            Some(v) => v
                .to_vec()
                .map_err(|_| Error::Metadata("scores is not an array".into()))?
                .iter()
                .map(|s| s.to_f32().unwrap_or(0.0))
                .collect(),
            None => vec![0.0; pieces.len()],
        };
        let vocab: Vocab = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        // Merges: every split of a normal token into two vocabulary tokens, ranked by the
        // merged token's score (higher merges first), as llama.cpp's SPM tokenizer does.
        let mut ranked: Vec<(f32, u32, String, String)> = Vec::new();
        for (id, p) in pieces.iter().enumerate() {
            if types.get(id).copied().unwrap_or(1) != 1 {
                continue;
            }
            let score = scores.get(id).copied().unwrap_or(0.0);
            for (i, _) in p.char_indices().skip(1) {
                let (a, b) = p.split_at(i);
                if vocab.contains_key(a) && vocab.contains_key(b) {
                    ranked.push((score, id as u32, a.to_owned(), b.to_owned()));
                }
            }
        }
        ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let merges = ranked.into_iter().map(|(_, _, a, b)| (a, b)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .byte_fallback(true)
            .unk_token("<unk>".into())
            .build()
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut tk = Tokenizer::new(bpe);
        let add_prefix = md
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(true);
        let mut norms: Vec<tokenizers::NormalizerWrapper> = Vec::new();
        if add_prefix {
            norms.push(tokenizers::normalizers::prepend::Prepend::new("▁".into()).into());
        }
        norms.push(
            tokenizers::normalizers::replace::Replace::new(" ", "▁")
                .map_err(|e| Error::Tokenizer(e.to_string()))?
                .into(),
        );
        tk.with_normalizer(Some(tokenizers::normalizers::Sequence::new(norms)))
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let bytes = pieces
            .iter()
            .map(|p| {
                if let Some(hex) = p.strip_prefix("<0x").and_then(|h| h.strip_suffix('>'))
                    && let Ok(b) = u8::from_str_radix(hex, 16)
                {
                    return vec![b];
                }
                p.replace('▁', " ").into_bytes()
            })
            .collect();
        Ok((tk, bytes))
    }

    /// Encodes text; special-token text (e.g. `<|im_start|>`) becomes its single id.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, Error> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The bytes a token contributes to output text (empty for control tokens).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.bytes.get(id as usize)
    }

    /// The vocabulary string of a token.
    pub fn piece(&self, id: u32) -> &str {
        // Built from `String`s, so whole strings are UTF-8.
        std::str::from_utf8(self.pieces.get(id as usize)).unwrap_or_default()
    }

    /// Whether the token is a control/special token.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// The id of a token string, if in the vocabulary.
    pub fn id_of(&self, piece: &str) -> Option<u32> {
        self.inner.token_to_id(piece)
    }

    /// Decodes ids to text (lossy at invalid UTF-8), skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&i| self.token_bytes(i).iter().copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::Strings;

    /// The packed vocabulary gives back each string, the empty ones included, and nothing
    /// past its end.
    #[test]
    fn packed_strings_give_back_each_string() {
        let items = ["<s>", "", "▁le", "é", "", "<0x0A>"];
        let s = Strings::new(items.iter());
        assert_eq!(s.len(), items.len());
        for (i, want) in items.iter().enumerate() {
            assert_eq!(s.get(i), want.as_bytes(), "string {i}");
        }
        assert_eq!(s.get(items.len()), b"");
        assert_eq!(s.get(usize::MAX), b"");
        assert_eq!(Strings::new(std::iter::empty::<&[u8]>()).get(0), b"");
    }
}
