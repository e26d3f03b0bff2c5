//! The generation loop: one prompt pass, then decode steps until a stop condition. Generic over
//! [`Forward`] so tests can drive it with a scripted model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::detok::Detok;
use super::sampling::Sampler;
use super::{Error, Tok};

/// A model that maps tokens at a position to next-token logits.
pub trait Forward {
    /// Runs `tokens` starting at position `pos` (0 resets the cache); returns the logits for
    /// the last token.
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>, Error>;
    /// Context window in tokens.
    fn context_len(&self) -> usize;
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model emitted end-of-sequence.
    Eos,
    /// The model emitted an end-of-turn or template stop token.
    StopToken,
    /// `max_tokens` reached.
    Length,
    /// The context window is full.
    ContextFull,
    /// Cancelled by the user (Ctrl-C, Esc); the text so far is kept.
    Canceled,
}

impl StopReason {
    /// The name scripts and the audit log see (`eos`, `stop_token`, `length`, `context_full`,
    /// `canceled`), the same as its JSON form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eos => "eos",
            Self::StopToken => "stop_token",
            Self::Length => "length",
            Self::ContextFull => "context_full",
            Self::Canceled => "canceled",
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts and timings of one generation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenStats {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (stop token excluded).
    pub generated_tokens: usize,
    /// Prompt processing time (s).
    pub prompt_seconds: f64,
    /// Generation time (s).
    pub generation_seconds: f64,
}

impl GenStats {
    /// Prompt tokens per second.
    pub fn prompt_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_seconds.max(1e-9)
    }
    /// Generated tokens per second.
    pub fn generation_tps(&self) -> f64 {
        self.generated_tokens as f64 / self.generation_seconds.max(1e-9)
    }
}

/// Everything a generation needs besides the model.
pub struct GenRequest<'a> {
    /// Prompt token ids.
    pub prompt: &'a [u32],
    /// Maximum new tokens.
    pub max_tokens: usize,
    /// Token ids that end the answer.
    pub stop_tokens: &'a [u32],
    /// Set to stop early.
    pub cancel: &'a AtomicBool,
}

/// Generates; `on_text` receives UTF-8-complete text as it is produced. Returns the generated
/// ids, why it stopped, and timings.
pub fn generate(
    model: &mut impl Forward,
    tok: &Tok,
    sampler: &mut Sampler,
    req: &GenRequest<'_>,
    on_text: &mut dyn FnMut(&str),
) -> Result<(Vec<u32>, StopReason, GenStats), Error> {
    let ctx = model.context_len();
    if req.prompt.is_empty() {
        return Err(Error::Sampling("empty prompt".into()));
    }
    if req.prompt.len() >= ctx {
        return Err(Error::PromptTooLong {
            prompt: req.prompt.len(),
            context: ctx,
        });
    }
    let mut stats = GenStats {
        prompt_tokens: req.prompt.len(),
        ..GenStats::default()
    };
    let mut history: Vec<u32> = req.prompt.to_vec();
    let mut out = Vec::new();
    let mut detok = Detok::default();
    let t0 = Instant::now();
    let mut logits = model.forward(req.prompt, 0)?;
    stats.prompt_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let reason = loop {
        if req.cancel.load(Ordering::Relaxed) {
            break StopReason::Canceled;
        }
        if out.len() >= req.max_tokens {
            break StopReason::Length;
        }
        let next = sampler.sample(&mut logits, &history);
        if Some(next) == tok.eos {
            break StopReason::Eos;
        }
        if req.stop_tokens.contains(&next) {
            break StopReason::StopToken;
        }
        out.push(next);
        history.push(next);
        let text = detok.push(tok.token_bytes(next));
        if !text.is_empty() {
            on_text(&text);
        }
        if history.len() >= ctx {
            break StopReason::ContextFull;
        }
        if out.len() >= req.max_tokens || req.cancel.load(Ordering::Relaxed) {
            continue;
        }
        logits = model.forward(&[next], history.len() - 1)?;
    };
    let rest = detok.finish();
    if !rest.is_empty() {
        on_text(&rest);
    }
    stats.generated_tokens = out.len();
    stats.generation_seconds = t1.elapsed().as_secs_f64();
    Ok((out, reason, stats))
}
