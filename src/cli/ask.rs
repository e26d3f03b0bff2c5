//! `ask`: one question to an installed model, the answer streamed to stdout (or one JSON
//! document), the query recorded (metadata and SHA-384s only).

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Args;
use serde_json::json;

use super::args::{DeviceArg, ModelArgs, SamplingArgs};
use super::output;
use crate::appliance::load::{Key, LoadOpts};
use crate::appliance::{Loaded, Root};
use crate::audit::{Event, Source};
use crate::crypto::hash::sha384;
use crate::engine::{self, Event as EngineEvent, Message, Request};
use crate::error::Result;
use crate::secure::sandbox::FsPolicy;

/// `ask` arguments.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question, or `-` to read it from stdin.
    prompt: String,
    /// Which model, and the appliance key's passphrase.
    #[command(flatten)]
    model: ModelArgs,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// Sampling.
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print one JSON document {model, text, tokens_prompt, tokens_generated, stop_reason, timings}.
    #[arg(long)]
    json: bool,
    /// Write the answer exactly as the model produced it, escape sequences included (by
    /// default control, escape and bidi characters are shown as visible escapes such as
    /// `\x1b`). Recorded as `raw: true` in the audit log's query record.
    #[arg(long, conflicts_with = "json")]
    raw: bool,
    /// Refuse to run unless the model's memory can be locked.
    #[arg(long)]
    require_mlock: bool,
    /// Where inference runs.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
}

impl AskArgs {
    pub(super) fn policy(&self, root: &Root) -> FsPolicy {
        super::appliance_policy(root).with_read(self.model.passphrase.files())
    }

    pub(super) fn run(&self, root: &Root) -> Result<()> {
        ask(root, self)
    }
}

/// Loads the installed model `m` names: the catalog verifies each bundle once, the chosen one
/// is decrypted and built without a second verification.
pub(super) fn load(root: &Root, m: &ModelArgs, o: &LoadOpts) -> Result<Loaded<engine::Loaded>> {
    o.device.candle()?;
    let catalog = root.catalog()?;
    let model = catalog.resolve(m.model.as_deref())?;
    root.load_model(model, o, Key::Unlock(&m.passphrase.source()), &|_, _| {})
}

pub(super) fn read_prompt(arg: &str) -> Result<zeroize::Zeroizing<String>> {
    if arg != "-" {
        return Ok(zeroize::Zeroizing::new(arg.to_owned()));
    }
    const MAX_PROMPT: u64 = 1 << 20;
    let mut s = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .take(MAX_PROMPT + 1)
        .read_to_string(&mut s)
        .map_err(|e| {
            crate::Error::Usage(format!(
                "prompt on stdin: {e} (expected UTF-8 text, at most 1 MiB)"
            ))
        })?;
    // A longer prompt is refused, never cut silently.
    if s.len() as u64 > MAX_PROMPT {
        return Err(crate::Error::Usage(
            "prompt on stdin: longer than 1 MiB (expected UTF-8 text, at most 1 MiB)".into(),
        ));
    }
    Ok(s)
}

fn ask(root: &Root, o: &AskArgs) -> Result<()> {
    let params = o.sampling.params(0);
    params.validate()?;
    let prompt = read_prompt(&o.prompt)?;
    if prompt.trim().is_empty() {
        return Err(crate::Error::Usage("the prompt is empty".into()));
    }
    let params = match o.sampling.seed {
        Some(_) => params,
        None => o.sampling.params(crate::appliance::random_seed()?),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    // Ctrl-C stops generation cleanly; the answer so far is kept and the stop reason says so.
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&cancel));
    let Loaded {
        built: loaded,
        report,
        auditor,
    } = load(
        root,
        &o.model,
        &LoadOpts {
            require_mlock: o.require_mlock,
            device: o.device.into(),
            backend: engine::Backend::Auto,
            source: Source::Ask,
        },
    )?;
    if !o.json && (!report.arena_locked || !report.weights_locked) {
        output::info(format!(
            "warning: the model's memory is NOT locked (RLIMIT_MEMLOCK {}): it could be swapped out; \
             see SECURITY.md (LimitMEMLOCK / CAP_IPC_LOCK) or use --require-mlock",
            crate::secure::mem::memlock_limit()
        ));
    }
    let eng = engine::Engine::start(loaded);
    let mut messages = Vec::new();
    if let Some(s) = &o.system {
        messages.push(Message::new("system", s));
    }
    messages.push(Message::new("user", prompt.as_str()));
    let events = eng.submit(Request {
        messages,
        params: params.clone(),
        max_tokens: o.sampling.max_tokens,
        cancel,
    })?;
    let prompt_sha384 = hex::encode(sha384(&[prompt.as_bytes()]));
    let mut text = zeroize::Zeroizing::new(String::new());
    let mut answer = (!o.json).then(|| output::Answer::new(o.raw));
    for ev in events {
        match ev {
            EngineEvent::Token(t) => {
                text.push_str(&t);
                if let Some(a) = answer.as_mut() {
                    a.piece(&t);
                }
            }
            EngineEvent::Done { stop, stats } => {
                // Metadata only: the prompt and answer are recorded as SHA-384, never as text.
                auditor.record(&Event::Query {
                    source: Source::Ask,
                    model: report.model.clone(),
                    version: report.version,
                    tokens_prompt: stats.prompt_tokens,
                    tokens_generated: stats.generated_tokens,
                    ms: ((stats.prompt_seconds + stats.generation_seconds) * 1e3) as u64,
                    stop_reason: stop,
                    prompt_sha384,
                    answer_sha384: hex::encode(sha384(&[text.as_bytes()])),
                    raw: o.raw,
                })?;
                if let Some(a) = answer {
                    a.finish();
                    if stop == engine::StopReason::ContextFull {
                        output::info(format!(
                            "note: the conversation filled the model's context ({} tokens); the answer is cut there",
                            eng.info.context_length
                        ));
                    }
                    output::info(format!(
                        "[{} v{} | {} prompt + {} generated tokens | {:.1} tok/s | stop: {}]",
                        report.model,
                        report.version,
                        stats.prompt_tokens,
                        stats.generated_tokens,
                        stats.generation_tps(),
                        stop.as_str()
                    ));
                } else {
                    output::json(&json!({
                        "model": report.model,
                        "version": report.version,
                        "marking": report.marking,
                        "text": text.as_str(),
                        "tokens_prompt": stats.prompt_tokens,
                        "tokens_generated": stats.generated_tokens,
                        "stop_reason": stop,
                        "seed": params.seed,
                        "timings": {
                            "read_verify_ms": report.read_verify_ms,
                            "unwrap_decrypt_ms": report.unwrap_decrypt_ms,
                            "build_ms": report.build_ms,
                            "prompt_ms": stats.prompt_seconds * 1e3,
                            "generation_ms": stats.generation_seconds * 1e3,
                            "prompt_tokens_per_s": stats.prompt_tps(),
                            "generation_tokens_per_s": stats.generation_tps(),
                        },
                        "memory": {"arena_locked": report.arena_locked, "weights_locked": report.weights_locked},
                    }));
                }
                return Ok(());
            }
            EngineEvent::Error(e) => {
                let e = crate::Error::from(e);
                let _ = auditor.record(&Event::QueryFailed {
                    source: Source::Ask,
                    model: report.model.clone(),
                    version: report.version,
                    class: e.class(),
                    reason: e.to_string(),
                    prompt_sha384,
                });
                return Err(e);
            }
        }
    }
    Err(engine::Error::Stopped.into())
}
