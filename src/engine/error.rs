//! Engine errors: each names what is wrong with the model or the request, never prompt text.

/// Loading a model or generating failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The GGUF container could not be parsed.
    #[error("model file is not valid GGUF: {0}")]
    Gguf(String),
    /// `general.architecture` names a family this build cannot run.
    #[error(
        "unsupported model architecture {0:?} (supported: llama, mistral, qwen2, qwen3, gemma3, phi3)"
    )]
    UnsupportedArchitecture(String),
    /// Required metadata is missing or malformed.
    #[error("model metadata: {0}")]
    Metadata(String),
    /// The tokenizer could not be built or failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to compile or render.
    #[error("chat template: {0}")]
    Template(String),
    /// The prompt does not fit in the context window.
    #[error("prompt is {prompt} tokens but the context holds {context}; shorten it")]
    PromptTooLong {
        /// Prompt tokens.
        prompt: usize,
        /// Context size.
        context: usize,
    },
    /// A sampling parameter is out of range.
    #[error("invalid sampling parameter: {0}")]
    Sampling(String),
    /// The tensor engine failed.
    #[error("inference failed: {0}")]
    Candle(String),
    /// The engine thread is gone.
    #[error("the engine thread stopped")]
    Stopped,
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(e.to_string())
    }
}
