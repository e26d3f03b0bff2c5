//! The inference engine: candle on its own thread, owning the model, fed by a request channel
//! and answering on a per-request event channel.
//!
//! # Security
//! The model is built from GGUF bytes in the decrypted arena, never from a path. The lean
//! llama pass keeps the arena and repacks its matrices in place (one copy of the weights, in
//! locked, undumpable memory wiped when the model is dropped; every other byte of it is wiped
//! once parsed). candle's models copy the weights into heap buffers, which the zeroizing global
//! allocator wipes when freed, and the arena is then wiped and unmapped. Prompts and outputs
//! are never logged.

mod chat;
mod detok;
mod error;
mod generate;
mod gguf_check;
pub mod lean;
mod load;
mod sampling;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
mod tokenizer;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Receiver, Sender, channel};

pub use chat::{ChatTemplate, Message};
pub use detok::Detok;
pub use error::Error;
pub use generate::{Forward, GenRequest, GenStats, StopReason, generate};
pub use load::{
    Backend, GgufFacts, Loaded, Model, ModelInfo, facts, load, load_arena, load_tokenizer,
    load_with, read_content,
};
pub use sampling::{Sampler, SamplingParams, argmax};
pub use tokenizer::Tok;

/// A chat request.
#[derive(Debug)]
pub struct Request {
    /// The conversation (system message first if any).
    pub messages: Vec<Message>,
    /// Sampling parameters.
    pub params: SamplingParams,
    /// Maximum new tokens.
    pub max_tokens: usize,
    /// The first `pinned` messages (the system prompt, pinned documents) are never dropped to
    /// fit the context; the last message (the question) never is either.
    pub pinned: usize,
    /// Set to stop generation; the text so far is kept.
    pub cancel: Arc<AtomicBool>,
}

/// What the engine reports for a request.
#[derive(Debug)]
pub enum Event {
    /// The conversation did not fit the context with room for the answer: its oldest turns
    /// were left out of this request (sent before any text).
    Trimmed {
        /// Messages left out (whole user and assistant turns).
        dropped: usize,
    },
    /// Text, never splitting a UTF-8 character.
    Token(String),
    /// Finished.
    Done {
        /// Why.
        stop: StopReason,
        /// Counts and timings.
        stats: GenStats,
    },
    /// Failed.
    Error(Error),
}

/// Handle to the engine thread.
#[derive(Debug)]
pub struct Engine {
    tx: Option<Sender<(Request, Sender<Event>)>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Facts about the loaded model.
    pub info: ModelInfo,
    /// Its tokenizer, to count the tokens of documents before they are sent.
    pub tok: Arc<Tok>,
}

impl Loaded {
    /// Renders `messages` with the chat template and tokenizes them (BOS added if the model
    /// wants it).
    pub fn prompt_tokens(&self, messages: &[Message]) -> Result<Vec<u32>, Error> {
        let bos = self
            .tok
            .bos
            .map(|b| self.tok.piece(b).to_owned())
            .unwrap_or_default();
        let eos = self
            .tok
            .eos
            .map(|b| self.tok.piece(b).to_owned())
            .unwrap_or_default();
        let text = zeroize::Zeroizing::new(self.template.render(messages, true, &bos, &eos)?);
        let mut ids = Vec::new();
        if self.tok.add_bos && !text.starts_with(&bos) {
            ids.extend(self.tok.bos);
        }
        ids.extend(self.tok.encode(&text)?);
        Ok(ids)
    }

    /// The prompt of `messages` within the context with room for an answer (`max_tokens`, at
    /// most a quarter of the context): the oldest turns after the `pinned` messages are left
    /// out, a user turn with the assistant's answer to it, until it fits. Returns the prompt
    /// and the number of messages left out. When only the pinned messages and the question
    /// are left and they still do not fit, the prompt is returned whole (generation then
    /// refuses it if it fills the context).
    pub fn fit(
        &self,
        messages: &[Message],
        pinned: usize,
        max_tokens: usize,
    ) -> Result<(Vec<u32>, usize), Error> {
        let ctx = self.info.context_length;
        let room = max_tokens.clamp(1, (ctx / 4).max(1));
        let mut kept: Vec<Message> = messages.to_vec();
        let mut dropped = 0;
        loop {
            let prompt = self.prompt_tokens(&kept)?;
            let first = pinned.min(kept.len());
            let droppable = kept.len().saturating_sub(1).saturating_sub(first);
            if prompt.len() + room <= ctx || droppable == 0 {
                return Ok((prompt, dropped));
            }
            kept.remove(first);
            dropped += 1;
            // Never leave an answer without its question at the head of the conversation.
            if kept.len() > first + 1 && kept.get(first).is_some_and(|m| m.role == "assistant") {
                kept.remove(first);
                dropped += 1;
            }
        }
    }

    /// Answers one request, streaming text to `on_text`.
    pub fn answer(
        &mut self,
        req: &Request,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(StopReason, GenStats), Error> {
        self.answer_fit(req, &mut |_| {}, on_text)
    }

    /// As [`Loaded::answer`], telling `on_trim` how many messages were left out to fit.
    pub fn answer_fit(
        &mut self,
        req: &Request,
        on_trim: &mut (dyn FnMut(usize) + Send),
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(StopReason, GenStats), Error> {
        req.params.validate()?;
        let (prompt, dropped) = self.fit(&req.messages, req.pinned, req.max_tokens)?;
        if dropped > 0 {
            on_trim(dropped);
        }
        let mut sampler = Sampler::new(req.params.clone());
        let g = GenRequest {
            prompt: &prompt,
            max_tokens: req.max_tokens,
            stop_tokens: &self.stop_tokens,
            cancel: &req.cancel,
        };
        // On one of the pool's workers: the forward pass's parallel regions then start from
        // inside the pool (that worker takes its share of the rows) instead of being handed
        // over from this thread and waited for, twice per layer.
        let model = &mut self.model;
        let tok: &Tok = &self.tok;
        let (_ids, stop, stats) =
            rayon::scope(move |_| generate(model, tok, &mut sampler, &g, on_text))?;
        Ok((stop, stats))
    }
}

impl Engine {
    /// Moves the model onto its own thread.
    pub fn start(mut loaded: Loaded) -> Self {
        let info = loaded.info.clone();
        let tok = Arc::clone(&loaded.tok);
        let (tx, rx) = channel::<(Request, Sender<Event>)>();
        let thread = std::thread::Builder::new()
            .name("rempart-engine".into())
            .spawn(move || {
                for (req, reply) in rx {
                    let trim_reply = reply.clone();
                    let result = loaded.answer_fit(
                        &req,
                        &mut |dropped| {
                            let _ = trim_reply.send(Event::Trimmed { dropped });
                        },
                        &mut |t| {
                            let _ = reply.send(Event::Token(t.to_owned()));
                        },
                    );
                    let _ = reply.send(match result {
                        Ok((stop, stats)) => Event::Done { stop, stats },
                        Err(e) => Event::Error(e),
                    });
                }
            })
            .ok();
        Self {
            tx: Some(tx),
            thread,
            info,
            tok,
        }
    }

    /// Tokens of `text` for this model (0 if it cannot be tokenized).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.tok.encode(text).map_or(0, |ids| ids.len())
    }

    /// Submits a request; events arrive on the returned receiver.
    pub fn submit(&self, req: Request) -> Result<Receiver<Event>, Error> {
        let (reply, events) = channel();
        self.tx
            .as_ref()
            .ok_or(Error::Stopped)?
            .send((req, reply))
            .map_err(|_| Error::Stopped)?;
        Ok(events)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Closing the channel ends the thread, which drops (and so wipes) the model.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
