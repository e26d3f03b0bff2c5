//! `ask`: one question to an installed model, the answer streamed to stdout (or one JSON
//! document), the query recorded (metadata and SHA-384s only). With `--file`, the question is
//! about documents: each is read, classified and split ([`crate::document`]), the passages that
//! fit (all of them, or the best BM25 matches) go to the model as numbered sources, `--cite`
//! and `--json` show them, and the session's marking is the highest of the model's and the
//! documents'.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Args;
use serde_json::json;

use super::args::{DeviceArg, ModelArgs, SamplingArgs};
use super::output;
use crate::appliance::Auditor;
use crate::appliance::load::{Key, LoadOpts, LoadReport};
use crate::appliance::{Loaded, Root};
use crate::audit::{Event, PassageRef, Source};
use crate::config::Config;
use crate::crypto::hash::sha384;
use crate::document::{self, Library, Marking, Selection};
use crate::engine::{self, Event as EngineEvent, Message, Request};
use crate::error::Result;
use crate::secure::sandbox::FsPolicy;

/// `ask` arguments.
#[derive(Debug, Args)]
pub struct AskArgs {
    /// The question, or `-` to read it from stdin.
    prompt: String,
    /// A document to ask about (repeat for several): .txt, .md, .pdf (text layer), .odt,
    /// .docx. It goes to the model whole when it fits the context, else its passages that
    /// best match the question.
    #[arg(long = "file", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// The marking of the `--file` in the same position (repeat once per file; `auto`, or
    /// fewer markings than files: read from the document's top or bottom lines, else
    /// rempart.toml's `[classification] unmarked`). Never lowers a marking the document carries.
    #[arg(long = "marking", value_name = "MARKING")]
    markings: Vec<String>,
    /// After the answer, print the passages given to the model: document, page or section,
    /// lines and text, numbered as the answer cites them.
    #[arg(long)]
    cite: bool,
    /// Which model, and the appliance key's passphrase.
    #[command(flatten)]
    model: ModelArgs,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// Sampling.
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Print one JSON document {model, session_marking, text, sources, documents, provenance,
    /// tokens_prompt, tokens_generated, stop_reason, timings}.
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
        super::appliance_policy(root)
            .with_read(self.model.passphrase.files())
            .with_read(self.files.iter().cloned())
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

/// Parses `--marking` values against the configured scale (`auto`: none given).
fn given_markings(o: &AskArgs, policy: &document::Policy) -> Result<Vec<Option<Marking>>> {
    if o.markings.len() > o.files.len() {
        return Err(crate::Error::Usage(format!(
            "{} --marking for {} --file: give one marking per file, in the same order",
            o.markings.len(),
            o.files.len()
        )));
    }
    o.markings
        .iter()
        .map(|m| {
            if m.eq_ignore_ascii_case("auto") {
                return Ok(None);
            }
            policy.scale.parse(m).map(Some).ok_or_else(|| {
                crate::Error::Usage(format!(
                    "--marking {:?}: not on the classification scale ({}; caveats may follow)",
                    m.escape_debug().to_string(),
                    policy.scale.levels().join(" < ")
                ))
            })
        })
        .collect()
}

/// Reads every `--file`, recording each attachment or refusal. The first refusal ends the
/// command: nothing is asked with part of the documents.
fn read_documents(
    o: &AskArgs,
    given: &[Option<Marking>],
    policy: &document::Policy,
    auditor: &Auditor,
) -> Result<Vec<document::Document>> {
    let mut docs = Vec::new();
    for (i, path) in o.files.iter().enumerate() {
        let g = given.get(i).cloned().flatten();
        match document::read(path, g.as_ref(), policy) {
            Ok(d) => {
                auditor.record(&Event::document_attached(Source::Ask, &d))?;
                docs.push(d);
            }
            Err(e) => {
                let e = crate::Error::from(e);
                auditor.record(&Event::document_refused(
                    Source::Ask,
                    document::name_of(path),
                    &e,
                ))?;
                return Err(e);
            }
        }
    }
    Ok(docs)
}

/// The model's marking on the scale: the bundle's (else `[tui] default_marking`), or the
/// marking for unmarked documents when it is not on the scale.
fn model_marking(report: &LoadReport, config: &Config) -> (Option<String>, Marking) {
    let text = report
        .marking
        .clone()
        .or_else(|| config.tui.default_marking.clone());
    let m = text
        .as_deref()
        .and_then(|t| config.policy.scale.parse(t))
        .unwrap_or_else(|| config.policy.unmarked.clone());
    (text, m)
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
    let config = Config::load(root.dir())?;
    let given = given_markings(o, &config.policy)?;
    let cancel = Arc::new(AtomicBool::new(false));
    // Ctrl-C stops generation cleanly; the answer so far is kept and the stop reason says so.
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&cancel));
    let device: crate::appliance::Device = o.device.into();
    device.candle()?;
    let catalog = root.catalog()?;
    let model = catalog.resolve(o.model.model.as_deref())?;
    // One unlock: its auditor records the documents before the model is decrypted, so a
    // refused document costs no model load.
    let key = root.unlock(&o.model.passphrase.source())?;
    let auditor = root.auditor(&key);
    auditor.ready()?;
    let docs = read_documents(o, &given, &config.policy, &auditor)?;
    let Loaded {
        built: loaded,
        report,
        auditor,
    } = root.load_model(
        model,
        &LoadOpts {
            require_mlock: o.require_mlock,
            device: o.device.into(),
            backend: engine::Backend::Auto,
            source: Source::Ask,
        },
        Key::Held(&key),
        &|_, _| {},
    )?;
    // Semantic ranking when a sentence-embedding model is installed (documents only).
    let t_embedder = std::time::Instant::now();
    let embedder = match catalog.embedder() {
        Some(m) if !o.files.is_empty() => {
            Some((m.spec(), root.load_embedder(m, &key, Source::Ask)?))
        }
        _ => None,
    };
    let embedder_load_ms = t_embedder.elapsed().as_secs_f64() * 1e3;
    drop(key);
    if !o.json && (!report.arena_locked || !report.weights_locked) {
        output::info(format!(
            "warning: the model's memory is NOT locked (RLIMIT_MEMLOCK {}): it could be swapped out; \
             see SECURITY.md (LimitMEMLOCK / CAP_IPC_LOCK) or use --require-mlock",
            crate::secure::mem::memlock_limit()
        ));
    }
    let eng = engine::Engine::start(loaded);
    let mut lib = Library::default();
    let t_index = std::time::Instant::now();
    let embed_err =
        |r: String| crate::Error::Engine(engine::Error::Metadata(format!("embedding model: {r}")));
    lib.add_all(docs, &|t| eng.count_tokens(t));
    if let Some((_, e)) = &embedder {
        lib.embed_pending(e, config.policy.embed_max_passages)
            .map_err(embed_err)?;
    }
    let index_ms = t_index.elapsed().as_secs_f64() * 1e3;
    // The document text and its index are in memory now: lock them with the model's pages
    // where the limit allows (as after the model's build; see SECURITY.md R12).
    if !lib.is_empty() {
        let _ = crate::secure::mem::lock_current();
    }
    let (model_text, model_m) = model_marking(&report, &config);
    let session_marking = (!lib.is_empty())
        .then(|| lib.high_water(&config.policy.scale, &model_m).to_string())
        .or(model_text);
    let mut messages = Vec::new();
    if let Some(s) = &o.system {
        messages.push(Message::new("system", s));
    }
    let (user, selection) = if lib.is_empty() {
        (
            zeroize::Zeroizing::new(prompt.to_string()),
            Selection::default(),
        )
    } else {
        let fixed = eng.count_tokens(prompt.as_str())
            + o.system.as_deref().map_or(0, |s| eng.count_tokens(s));
        let budget =
            config
                .policy
                .source_budget(eng.info.context_length, o.sampling.max_tokens, fixed);
        let query = match &embedder {
            Some((_, e)) => e
                .embed(&[prompt.as_str()])
                .map_err(embed_err)?
                .into_iter()
                .next(),
            None => None,
        };
        let sel = lib.select_with(prompt.as_str(), budget, query.as_deref());
        (lib.prompt(&sel, prompt.as_str()), sel)
    };
    messages.push(Message::new("user", user.as_str()));
    let pinned = messages.len();
    let events = eng.submit(Request {
        messages,
        params: params.clone(),
        max_tokens: o.sampling.max_tokens,
        pinned,
        cancel,
    })?;
    let prompt_sha384 = hex::encode(sha384(&[prompt.as_bytes()]));
    let passages: Vec<PassageRef> = selection
        .chosen
        .iter()
        .filter_map(|c| lib.get(*c))
        .map(|(d, p)| PassageRef::of(d, p))
        .collect();
    let mut text = zeroize::Zeroizing::new(String::new());
    let mut answer = (!o.json).then(|| output::Answer::new(o.raw));
    for ev in events {
        match ev {
            EngineEvent::Trimmed { .. } => {}
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
                    session_marking: (!lib.is_empty())
                        .then(|| session_marking.clone().unwrap_or_default()),
                    passages,
                })?;
                if let Some(a) = answer {
                    a.finish();
                    if o.cite {
                        print_sources(&lib, &selection);
                    }
                    if stop == engine::StopReason::ContextFull {
                        output::info(format!(
                            "note: the conversation filled the model's context ({} tokens); the answer is cut there",
                            eng.info.context_length
                        ));
                    }
                    if !lib.is_empty() && !selection.whole {
                        output::info(format!(
                            "note: the documents do not fit the context: {} passage(s) matching the question were given, {} left out",
                            selection.chosen.len(),
                            selection.left_out
                        ));
                    }
                    output::info(format!(
                        "[{} v{} | {} | {} prompt + {} generated tokens | {:.1} tok/s | stop: {}]",
                        report.model,
                        report.version,
                        session_marking.as_deref().unwrap_or("unmarked"),
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
                        "session_marking": session_marking,
                        "text": text.as_str(),
                        "sources": sources_json(&lib, &selection),
                        "documents": documents_json(&lib),
                        "retrieval": {
                            "whole": selection.whole,
                            "semantic": selection.semantic,
                            "embedding_model": embedder.as_ref().map(|(spec, _)| spec),
                            "embedding_model_load_ms": embedder.as_ref().map(|_| embedder_load_ms),
                            "passages_given": selection.chosen.len(),
                            "passages_left_out": selection.left_out,
                            "index_ms": index_ms,
                            "rank_ms": selection.ms,
                        },
                        "provenance": provenance_json(&report, session_marking.as_deref(), &lib),
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

/// `--cite`: the passages given, numbered as the model was asked to cite them.
fn print_sources(lib: &Library, sel: &Selection) {
    if lib.is_empty() {
        return;
    }
    output::line("");
    output::line("Sources:");
    for (n, c) in sel.chosen.iter().enumerate() {
        if let Some((d, p)) = lib.get(*c) {
            output::line(format!(
                "[{}] {}, {} ({})",
                n + 1,
                d.name,
                p.locator(),
                d.marking
            ));
            for l in p.text.lines() {
                output::line(format!("    {l}"));
            }
        }
    }
}

fn sources_json(lib: &Library, sel: &Selection) -> serde_json::Value {
    sel.chosen
        .iter()
        .enumerate()
        .filter_map(|(n, c)| {
            let (d, p) = lib.get(*c)?;
            Some(json!({
                "n": n + 1,
                "document": d.name,
                "document_sha384": d.sha384,
                "page": p.page,
                "section": p.section,
                "lines": [p.lines.0, p.lines.1],
                "locator": p.locator(),
                "text": p.text.as_str(),
            }))
        })
        .collect()
}

fn documents_json(lib: &Library) -> serde_json::Value {
    lib.docs()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            json!({
                "name": d.name,
                "sha384": d.sha384,
                "bytes": d.bytes,
                "format": d.format,
                "marking": d.marking.to_string(),
                "marking_source": d.marking_source,
                "pages": d.pages,
                "passages": d.passages.len(),
                "tokens": lib.doc_tokens(i),
                "read_ms": d.ms,
            })
        })
        .collect()
}

/// What an answer was made from: machine-generated, by which model and bundle, under which
/// marking, from which documents, when.
pub(crate) fn provenance_json(
    report: &LoadReport,
    marking: Option<&str>,
    lib: &Library,
) -> serde_json::Value {
    json!({
        "machine_generated": true,
        "model": report.model,
        "version": report.version,
        "bundle_manifest_sha384": report.manifest_sha384,
        "session_marking": marking,
        "documents": lib.docs().iter().map(|d| json!({"name": d.name, "sha384": d.sha384})).collect::<Vec<_>>(),
        "time": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
    })
}
