//! `rempart tui`: the analysts' terminal UI (model–action–update–view, STYLE.md).
//!
//! [`app`] holds the state and the pure `update`; [`view`] draws it; this module runs the
//! loop. Before the terminal enters raw mode it reads `rempart.toml` and unlocks the appliance
//! key (so a passphrase prompt works); then models load on a loader thread that reports each
//! stage (verify, decrypt, build) to the loading screen, the engine answers on its own thread,
//! and the loop turns terminal events, loader and engine events and clock ticks into actions
//! and carries out the effects. The terminal is restored on every exit path: normal return,
//! error, panic (ratatui's hook) and SIGTERM/SIGHUP/SIGINT.
//!
//! # Security
//! Nothing is written to disk but the audit log and explicit exports: no history file, no
//! scrollback dump. An export goes only to a path the analyst types, under the export
//! directory (the only place the sandbox lets the UI write besides the audit log, and never
//! inside the appliance root), is created new (never overwrites) with mode 0600, carries the
//! marking on its first and last lines, and is audited. The conversation lives in zeroizing
//! strings and is wiped on lock (unless configured otherwise), on a new conversation, on a
//! model switch and on exit. The unlocked appliance key is held only while the screen is
//! unlocked (to load another model) and dropped, so wiped, when it locks. Lock, unlock,
//! settings changes, model loads and unloads are audited.

pub mod app;
pub mod view;

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event as TermEvent, MouseEventKind};
use zeroize::Zeroizing;

use crate::appliance::clock::fmt_day;
use crate::appliance::load::{Key, LoadOpts, Stage};
use crate::appliance::{Auditor, Catalog, Installed, Loaded, Root};
use crate::audit::{Event as AuditEvent, Source};
use crate::config::Config;
use crate::crypto::hash::sha384;
use crate::document::{self, Library, Marking};
use crate::engine::{self, Event, Message, Request, SamplingParams};
use crate::error::Result;
use crate::keys::{ApplianceSecret, PassphraseSource};
use crate::output;
use app::{
    Action, App, DocEntry, Effect, LoadFigures, LockPolicy, ModelEntry, Session, Settings,
    SourceEntry, Unlock,
};

/// Options of `rempart tui`; `None` takes rempart.toml's value, then the built-in default.
#[derive(Debug)]
pub struct TuiOpts<'a> {
    /// Installed model to load first (default: the only one installed).
    pub model: Option<&'a str>,
    /// How to unlock a protected appliance key at start.
    pub passphrase: PassphraseSource,
    /// Refuse to run unless the model's memory can be locked.
    pub require_mlock: bool,
    /// System prompt.
    pub system: Option<&'a str>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Nucleus threshold.
    pub top_p: Option<f32>,
    /// Fixed seed.
    pub seed: Option<u64>,
    /// Maximum tokens per answer.
    pub max_tokens: Option<usize>,
    /// Minutes without input before the screen locks.
    pub idle_minutes: Option<u64>,
    /// Keep the conversation in memory while locked (else rempart.toml decides).
    pub keep_on_lock: bool,
    /// Print input-to-redraw latency figures on exit.
    pub report_latency: bool,
}

/// How often the loop wakes without input (idle lock, status clock, streamed tokens).
const TICK: Duration = Duration::from_millis(50);

/// What the loader thread reports.
enum LoadMsg {
    Progress(Stage, f64),
    Done(Box<Result<Loaded<engine::Loaded>>>),
}

/// Everything the loop needs that does not change.
struct Ctx<'a> {
    root: &'a Root,
    config: &'a Config,
    require_mlock: bool,
    auditor: Auditor,
    export_dir: Option<PathBuf>,
    report_latency: bool,
}

impl Ctx<'_> {
    fn audit(&self, event: &AuditEvent) {
        // Best effort inside the UI: a failure is shown by `audit verify`; the lock still happens.
        let _ = self.auditor.record(event);
    }
}

/// Runs the terminal UI until the analyst quits.
pub fn run(root: &Root, o: &TuiOpts<'_>) -> Result<()> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(crate::Error::Usage(
            "the terminal UI needs a terminal; use `rempart ask` in scripts".into(),
        ));
    }
    let config = root.config()?;
    let t = &config.tui;
    let settings = Settings {
        system: Zeroizing::new(
            o.system
                .or(t.system_prompt.as_deref())
                .unwrap_or_default()
                .to_owned(),
        ),
        temperature: o.temperature.or(t.temperature).unwrap_or(0.8),
        top_p: o.top_p.or(t.top_p).unwrap_or(0.95),
        max_tokens: o.max_tokens.or(t.max_tokens).unwrap_or(1024),
        seed: o.seed,
    };
    sampling(&settings, 0).validate()?;
    let lock = LockPolicy {
        idle: Duration::from_secs(
            o.idle_minutes
                .unwrap_or(t.idle_lock_minutes)
                .saturating_mul(60),
        ),
        keep_conversation: o.keep_on_lock || t.keep_on_lock,
    };
    // Unlock the key and find the first model before raw mode: a passphrase prompt works and
    // "no model installed" is a plain error.
    let protected = root.key_is_protected();
    let appliance = root.unlock(&o.passphrase)?;
    let auditor = root.auditor(&appliance);
    // Every installed bundle is verified once here; the first model loads from its handle.
    let catalog = root.catalog()?;
    let first = catalog.resolve(o.model)?.clone();
    let unlock = match (protected, &t.unlock_passphrase) {
        (true, _) => Unlock::ApplianceKey,
        (false, Some(_)) => Unlock::Operator,
        (false, None) => Unlock::Nothing,
    };
    let ctx = Ctx {
        root,
        config: &config,
        require_mlock: o.require_mlock,
        auditor,
        export_dir: root.export_dir(&config),
        report_latency: o.report_latency,
    };
    let session = Session {
        marking: String::new(),
        model: String::new(),
        device: "cpu".to_owned(),
        context: 0,
        memory_locked: false,
        unlock,
        banner: None,
        digest: String::new(),
    };
    ctx.audit(&AuditEvent::TuiStart {
        model: first.spec(),
    });
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
    ] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    // A hung-up terminal can leave crossterm reading end-of-file forever, so the loop would
    // never see the flag: a watchdog ends the process if the loop has not returned two
    // seconds after the signal. Exiting frees the process's memory; nothing is on disk.
    let finished = Arc::new(AtomicBool::new(false));
    {
        let (stop, finished) = (Arc::clone(&stop), Arc::clone(&finished));
        let _ = std::thread::Builder::new()
            .name("rempart-tui-watchdog".into())
            .spawn(move || {
                let mut since: Option<Instant> = None;
                while !finished.load(Ordering::Relaxed) {
                    if stop.load(Ordering::Relaxed) {
                        let t = *since.get_or_insert_with(Instant::now);
                        if t.elapsed() > Duration::from_secs(2) {
                            #[allow(
                                clippy::exit,
                                clippy::disallowed_methods,
                                reason = "the terminal is gone; see above"
                            )]
                            std::process::exit(129);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
    }
    let mut terminal = ratatui::try_init().map_err(crate::Error::Terminal)?;
    let _ = crossterm::execute!(std::io::stdout(), event::EnableMouseCapture);
    let mut app = App::new(session, settings, lock, Instant::now());
    let mut latency = Vec::new();
    let result = std::thread::scope(|scope| {
        let mut l = Loop {
            ctx: &ctx,
            scope,
            key: Some(Arc::new(appliance)),
            catalog: Some(catalog),
            engine: None,
            loaded: None,
            loader: None,
            events: None,
            asked: None,
            cancel: Arc::new(AtomicBool::new(false)),
            latency: &mut latency,
            lib: Library::default(),
            model_marking: config.policy.unmarked.clone(),
            high_water: None,
            embedder: None,
            attaching: None,
        };
        l.start_load(&mut app, first);
        let r = l.run(&mut app, &mut terminal, &stop);
        l.cancel.store(true, Ordering::Relaxed);
        r
    });
    finished.store(true, Ordering::Relaxed);
    let _ = crossterm::execute!(std::io::stdout(), event::DisableMouseCapture);
    ratatui::restore();
    drop(app);
    ctx.audit(&AuditEvent::TuiExit);
    if ctx.report_latency {
        report_latency(&latency);
    }
    result
}

/// The sampling parameters of `s`, with `random` as the seed when none is fixed.
fn sampling(s: &Settings, random: u64) -> SamplingParams {
    SamplingParams {
        temperature: s.temperature,
        top_p: s.top_p,
        seed: s.seed.unwrap_or(random),
        ..SamplingParams::default()
    }
}

/// The picker's entries.
fn list_models(catalog: &Catalog) -> std::result::Result<Vec<ModelEntry>, String> {
    if catalog.models.is_empty() {
        return Err(format!(
            "no usable model is installed ({} bundle(s) failed verification)",
            catalog.unverified.len()
        ));
    }
    Ok(catalog
        .models
        .iter()
        .map(|i| {
            let m = i.manifest();
            let mut details = vec![
                m.marking.clone().unwrap_or_else(|| "unmarked".into()),
                format!(
                    "{} {}",
                    m.architecture.as_deref().unwrap_or("?"),
                    m.quantization.as_deref().unwrap_or("?")
                ),
                format!("{:.1} MB", i.bytes as f64 / 1e6),
                format!("sealed {}", fmt_day(m.created)),
            ];
            if let Some(t) = i.installed_at {
                details.push(format!("installed {}", fmt_day(t)));
            }
            if let Some(e) = m.expires {
                details.push(format!("expires {}", fmt_day(e)));
            }
            details.push(format!("{} signer(s)", i.signers().len()));
            match crate::aibom::parse(m.aibom.as_deref()).map(|d| crate::aibom::summary(&d)) {
                Some(s) => {
                    details.push(format!(
                        "licence {}",
                        s.license.as_deref().unwrap_or("not stated")
                    ));
                    if let Some(u) = &s.intended_use {
                        details.push(format!("for: {u}"));
                    }
                    details.push(format!(
                        "model card {}/{}",
                        s.present.len(),
                        crate::aibom::FIELDS.len()
                    ));
                }
                None => details.push("no AI BOM".into()),
            }
            ModelEntry {
                spec: i.spec(),
                details: details.join(" · "),
            }
        })
        .collect())
}

/// A question being answered: the SHA-384 of the analyst's message and the answer so far
/// (wiped on drop), for the `query` record.
struct Asked {
    prompt_sha384: String,
    answer: Zeroizing<String>,
    /// The passages given with it, for the audit record.
    passages: Vec<crate::audit::PassageRef>,
}

/// The event loop's moving parts.
struct Loop<'s, 'e, 'c> {
    ctx: &'c Ctx<'c>,
    scope: &'s std::thread::Scope<'s, 'e>,
    /// The appliance key while unlocked.
    key: Option<Arc<ApplianceSecret>>,
    /// The installed models as last listed (each verified once); switching loads from it.
    catalog: Option<Catalog>,
    engine: Option<engine::Engine>,
    /// Name and version of the model in the engine.
    loaded: Option<(String, u64)>,
    loader: Option<Receiver<LoadMsg>>,
    events: Option<Receiver<Event>>,
    /// The question being answered.
    asked: Option<Asked>,
    cancel: Arc<AtomicBool>,
    latency: &'c mut Vec<(f64, bool)>,
    /// The attached documents and their passage index.
    lib: Library,
    /// The loaded model's marking on the scale.
    model_marking: Marking,
    /// The highest marking this session has held: it never goes down until the UI ends.
    high_water: Option<Marking>,
    /// The installed sentence-embedding model, loaded at the first attachment (`Some(None)`:
    /// none is installed, or it failed to load: BM25 alone).
    embedder: Option<Option<Arc<document::embed::Embedder>>>,
    /// The document being read (its name, and the reading thread's answer).
    attaching: Option<(String, AttachRx)>,
}

/// What the attach thread answers: the document and its passages' vectors, or why not.
type AttachResult =
    std::result::Result<(document::Document, Option<Vec<Vec<f32>>>), document::Error>;
type AttachRx = Receiver<AttachResult>;

impl<'s, 'e, 'c: 'e> Loop<'s, 'e, 'c> {
    /// Wipes the loaded model (if any) and starts loading `model` on a loader thread.
    fn start_load(&mut self, app: &mut App, model: Installed) {
        self.cancel.store(true, Ordering::Relaxed);
        self.events = None;
        self.asked = None;
        if let Some(old) = self.engine.take() {
            // Joins the engine thread, which drops, so wipes, the model.
            drop(old);
            if let Some((model, version)) = self.loaded.take() {
                self.ctx.audit(&AuditEvent::ModelUnload {
                    model,
                    version,
                    reason: "switch",
                });
            }
        }
        self.lib = Library::default();
        let m = model.manifest();
        let bundle_marking = m
            .marking
            .clone()
            .or_else(|| self.ctx.config.tui.default_marking.clone());
        let policy = &self.ctx.config.policy;
        self.model_marking = bundle_marking
            .as_deref()
            .and_then(|t| policy.scale.parse(t))
            .unwrap_or_else(|| policy.unmarked.clone());
        // The bundle's own text until a document raises the session's marking; from then on
        // the high-water mark, whatever model is loaded.
        let marking = match &self.high_water {
            Some(h) => policy.scale.join(h, &self.model_marking).to_string(),
            None => bundle_marking.unwrap_or_else(|| "UNMARKED".to_owned()),
        };
        app.session.banner = self.ctx.config.marking_colour(&marking);
        let _ = app::update(
            app,
            Action::LoadStarted {
                spec: model.spec(),
                model: format!("{} v{}", m.name, m.version),
                marking,
            },
            Instant::now(),
        );
        let Some(key) = self.key.clone() else {
            let _ = app::update(
                app,
                Action::LoadFailed("the screen is locked".into()),
                Instant::now(),
            );
            return;
        };
        let (tx, rx) = channel();
        self.loader = Some(rx);
        let root = self.ctx.root;
        let o = LoadOpts {
            require_mlock: self.ctx.require_mlock,
            device: crate::appliance::Device::Cpu,
            backend: engine::Backend::Auto,
            source: Source::Tui,
        };
        self.scope.spawn(move || {
            let progress = |stage, f| {
                let _ = tx.send(LoadMsg::Progress(stage, f));
            };
            let r = root.load_model(&model, &o, Key::Held(&key), &progress);
            drop(key);
            let _ = tx.send(LoadMsg::Done(Box::new(r)));
        });
    }

    fn run(
        &mut self,
        app: &mut App,
        terminal: &mut ratatui::DefaultTerminal,
        stop: &AtomicBool,
    ) -> Result<()> {
        let mut pending: Option<Instant> = None;
        loop {
            let now = Instant::now();
            terminal
                .draw(|f| view::draw(f, app, now))
                .map_err(crate::Error::Terminal)?;
            if let Some(t) = pending.take() {
                self.latency
                    .push((t.elapsed().as_secs_f64() * 1e3, app.generating.is_some()));
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut actions = Vec::new();
            if event::poll(TICK).unwrap_or(false) {
                match event::read() {
                    Ok(TermEvent::Key(k)) => {
                        pending = Some(Instant::now());
                        actions.push(Action::Key(k));
                    }
                    Ok(TermEvent::Mouse(m)) => match m.kind {
                        MouseEventKind::ScrollUp => actions.push(Action::Scroll(3)),
                        MouseEventKind::ScrollDown => actions.push(Action::Scroll(-3)),
                        _ => {}
                    },
                    _ => {}
                }
            }
            self.drain_loader(&mut actions);
            self.drain_engine(&mut actions);
            self.drain_attach(app, &mut actions);
            actions.push(Action::Tick);
            for a in actions {
                let effects = app::update(app, a, Instant::now());
                if self.carry_out(app, effects) {
                    return Ok(());
                }
            }
            if app.screen == app::Screen::Locked {
                // The key is dropped (wiped) while locked; unlocking unwraps it again.
                self.key = None;
            }
        }
    }

    fn drain_loader(&mut self, actions: &mut Vec<Action>) {
        let Some(rx) = &self.loader else { return };
        loop {
            match rx.try_recv() {
                Ok(LoadMsg::Progress(stage, f)) => {
                    let i = match stage {
                        Stage::Verify => 0,
                        Stage::Decrypt => 1,
                        Stage::Build => 2,
                    };
                    actions.push(Action::LoadProgress(i, f));
                }
                Ok(LoadMsg::Done(r)) => {
                    self.loader = None;
                    match *r {
                        Ok(Loaded { built, report, .. }) => {
                            let eng = engine::Engine::start(built);
                            self.loaded = Some((report.model.clone(), report.version));
                            actions.push(Action::Digest(report.manifest_sha384.clone()));
                            actions.push(Action::Loaded {
                                context: eng.info.context_length,
                                figures: LoadFigures {
                                    bytes: report.bytes,
                                    seconds: [
                                        report.read_verify_ms / 1e3,
                                        report.unwrap_decrypt_ms / 1e3,
                                        report.build_ms / 1e3,
                                    ],
                                    memory_locked: report.arena_locked && report.weights_locked,
                                },
                            });
                            self.engine = Some(eng);
                        }
                        Err(e) => actions.push(Action::LoadFailed(e.to_string())),
                    }
                    return;
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.loader = None;
                    actions.push(Action::LoadFailed("the loader stopped".into()));
                    return;
                }
            }
        }
    }

    fn drain_engine(&mut self, actions: &mut Vec<Action>) {
        let Some(rx) = &self.events else { return };
        loop {
            match rx.try_recv() {
                Ok(Event::Trimmed { dropped }) => actions.push(Action::Trimmed(dropped)),
                Ok(Event::Token(t)) => {
                    if let Some(a) = &mut self.asked {
                        a.answer.push_str(&t);
                    }
                    actions.push(Action::Token(t));
                }
                Ok(Event::Done { stop, stats }) => {
                    actions.push(Action::Done {
                        tokens: stats.prompt_tokens + stats.generated_tokens,
                        tokens_per_s: stats.generation_tps(),
                        stop,
                    });
                    if let (Some(asked), Some((model, version))) = (self.asked.take(), &self.loaded)
                    {
                        self.ctx.audit(&AuditEvent::Query {
                            source: Source::Tui,
                            model: model.clone(),
                            version: *version,
                            tokens_prompt: stats.prompt_tokens,
                            tokens_generated: stats.generated_tokens,
                            ms: ((stats.prompt_seconds + stats.generation_seconds) * 1e3) as u64,
                            stop_reason: stop,
                            prompt_sha384: asked.prompt_sha384,
                            answer_sha384: hex::encode(sha384(&[asked.answer.as_bytes()])),
                            raw: false,
                            session_marking: self
                                .high_water
                                .as_ref()
                                .map(|_| self.session_marking()),
                            passages: asked.passages,
                        });
                    }
                    self.events = None;
                    return;
                }
                Ok(Event::Error(e)) => {
                    let e = crate::Error::from(e);
                    self.query_failed(&e);
                    actions.push(Action::EngineError(e.to_string()));
                    self.events = None;
                    return;
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.query_failed(&engine::Error::Stopped.into());
                    actions.push(Action::EngineError("the engine stopped".into()));
                    self.events = None;
                    return;
                }
            }
        }
    }

    /// Records that the question being answered failed.
    fn query_failed(&mut self, e: &crate::Error) {
        if let (Some(asked), Some((model, version))) = (self.asked.take(), &self.loaded) {
            self.ctx.audit(&AuditEvent::QueryFailed {
                source: Source::Tui,
                model: model.clone(),
                version: *version,
                class: e.class(),
                reason: e.to_string(),
                prompt_sha384: asked.prompt_sha384,
            });
        }
    }

    /// Sends the conversation to the engine; the last user turn is the question recorded.
    /// Returns the passages given with it.
    fn submit(
        &mut self,
        settings: &Settings,
        conversation: &[(String, String)],
    ) -> std::result::Result<Vec<SourceEntry>, String> {
        let engine = self
            .engine
            .as_ref()
            .ok_or_else(|| "no model is loaded (F2 lists the installed models)".to_owned())?;
        let seed = match settings.seed {
            Some(s) => s,
            None => crate::appliance::random_seed().map_err(|e| e.to_string())?,
        };
        self.cancel = Arc::new(AtomicBool::new(false));
        let system =
            (!settings.system.is_empty()).then(|| Message::new("system", settings.system.as_str()));
        let question = conversation
            .iter()
            .rev()
            .find(|(r, _)| r == "user")
            .map_or("", |(_, t)| t.as_str());
        // With documents, the question goes with the passages that fit (all of them when the
        // documents fit whole); earlier questions go bare, so old turns never carry sources.
        let mut sources = Vec::new();
        let mut passages = Vec::new();
        let mut messages: Vec<Message> = system
            .into_iter()
            .chain(
                conversation
                    .iter()
                    .map(|(r, t)| Message::new(r, t.as_str())),
            )
            .collect();
        if !self.lib.is_empty() {
            let fixed =
                engine.count_tokens(question) + engine.count_tokens(settings.system.as_str());
            let budget = self.ctx.config.policy.source_budget(
                engine.info.context_length,
                settings.max_tokens,
                fixed,
            );
            let query = match &self.embedder {
                Some(Some(e)) => e.embed(&[question]).ok().and_then(|v| v.into_iter().next()),
                _ => None,
            };
            let sel = self.lib.select_with(question, budget, query.as_deref());
            for (n, c) in sel.chosen.iter().enumerate() {
                if let Some((d, p)) = self.lib.get(*c) {
                    sources.push(SourceEntry {
                        n: n + 1,
                        document: d.name.clone(),
                        locator: p.locator(),
                        text: p.text.clone(),
                    });
                    passages.push(crate::audit::PassageRef::of(d, p));
                }
            }
            if let Some(last) = messages.last_mut() {
                last.content = self.lib.prompt(&sel, question).to_string();
            }
        }
        let req = Request {
            messages,
            params: sampling(settings, seed),
            max_tokens: settings.max_tokens,
            pinned: usize::from(!settings.system.is_empty()),
            cancel: Arc::clone(&self.cancel),
        };
        let asked = Asked {
            prompt_sha384: hex::encode(sha384(&[question.as_bytes()])),
            answer: Zeroizing::new(String::new()),
            passages,
        };
        let rx = engine.submit(req).map_err(|e| e.to_string())?;
        self.events = Some(rx);
        self.asked = Some(asked);
        Ok(sources)
    }

    /// The session's marking: the model's, raised by every document attached so far.
    fn session_marking(&self) -> String {
        let scale = &self.ctx.config.policy.scale;
        match &self.high_water {
            Some(h) => scale.join(h, &self.model_marking).to_string(),
            None => self.model_marking.to_string(),
        }
    }

    /// The documents directory's supported files, sorted.
    fn list_documents(&self) -> std::result::Result<Vec<String>, String> {
        let dir = self.ctx.config.documents.dir.as_ref().ok_or_else(|| {
            "no documents directory: set [documents] dir in rempart.toml".to_owned()
        })?;
        let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut v: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && n.contains('.') && document::Format::of(n).is_some())
            .collect();
        v.sort();
        Ok(v)
    }

    /// Starts reading `name` from the documents directory on a thread of its own (text
    /// extraction, split and, with an embedding model, the passages' vectors), so the screen
    /// stays live; [`Loop::drain_attach`] attaches the result.
    fn start_attach(&mut self, name: &str) -> std::result::Result<(), String> {
        let dir = self.ctx.config.documents.dir.as_ref().ok_or_else(|| {
            "no documents directory: set [documents] dir in rempart.toml".to_owned()
        })?;
        // A name in the directory, nothing else: no separator, no "..".
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(format!(
                "{name:?}: give the name of a file in the documents directory"
            ));
        }
        if self.engine.is_none() {
            return Err("no model is loaded yet: attach once it is".to_owned());
        }
        if self.attaching.is_some() {
            return Err("a document is being attached: one at a time".to_owned());
        }
        if self.embedder.is_none() {
            let found = self.catalog.as_ref().and_then(Catalog::embedder).cloned();
            self.embedder = Some(match (found, &self.key) {
                (Some(m), Some(key)) => self
                    .ctx
                    .root
                    .load_embedder(&m, key, Source::Tui)
                    .ok()
                    .map(Arc::new),
                _ => None,
            });
        }
        let policy = self.ctx.config.policy.clone();
        let room = policy
            .embed_max_passages
            .saturating_sub(self.lib.embedded_passages());
        let embedder = self.embedder.clone().flatten();
        let path = dir.join(name);
        let (tx, rx) = channel();
        self.scope.spawn(move || {
            let r = document::read(&path, None, &policy).map(|d| {
                // Without vectors for every document, ranking is BM25 alone.
                let v = embedder.filter(|_| d.passages.len() <= room).and_then(|e| {
                    let texts: Vec<&str> = d.passages.iter().map(|p| p.text.as_str()).collect();
                    e.embed(&texts).ok()
                });
                (d, v)
            });
            let _ = tx.send(r);
        });
        self.attaching = Some((name.to_owned(), rx));
        Ok(())
    }

    /// Attaches the document read by [`Loop::start_attach`] once it is ready, recording it.
    fn drain_attach(&mut self, app: &mut App, actions: &mut Vec<Action>) {
        let Some((name, rx)) = &self.attaching else {
            return;
        };
        let r = match rx.try_recv() {
            Ok(r) => r,
            Err(TryRecvError::Empty) => return,
            Err(TryRecvError::Disconnected) => Err(document::Error::Unreadable {
                name: name.clone(),
                reason: "the reading thread stopped".into(),
            }),
        };
        let name = name.clone();
        self.attaching = None;
        let r = self.finish_attach(&name, r);
        if let Ok((_, m)) = &r {
            app.session.banner = self.ctx.config.marking_colour(m);
        }
        actions.push(Action::Attached(r));
    }

    fn finish_attach(
        &mut self,
        name: &str,
        r: AttachResult,
    ) -> std::result::Result<(DocEntry, String), String> {
        let (d, vectors) = match r {
            Ok(x) => x,
            Err(e) => {
                let e = crate::Error::from(e);
                self.ctx.audit(&AuditEvent::document_refused(
                    Source::Tui,
                    name.to_owned(),
                    &e,
                ));
                return Err(e.to_string());
            }
        };
        let Some(engine) = self.engine.as_ref() else {
            return Err("the model was unloaded while the document was read".to_owned());
        };
        self.ctx
            .audit(&AuditEvent::document_attached(Source::Tui, &d));
        let entry = DocEntry {
            name: d.name.clone(),
            sha384: d.sha384.clone(),
            marking: d.marking.to_string(),
            bytes: d.bytes,
            tokens: 0,
            passages: d.passages.len(),
        };
        let m = d.marking.clone();
        self.lib.add(d, &|t| engine.count_tokens(t));
        if let Some(v) = vectors {
            self.lib.set_last_vectors(v);
        }
        let _ = crate::secure::mem::lock_current();
        let scale = &self.ctx.config.policy.scale;
        self.high_water = Some(match &self.high_water {
            Some(h) => scale.join(h, &m),
            None => scale.join(&self.model_marking, &m),
        });
        let tokens = self.lib.doc_tokens(self.lib.docs().len() - 1);
        Ok((DocEntry { tokens, ..entry }, self.session_marking()))
    }

    /// Detaches document `i`, recording it; its text is wiped.
    fn detach(&mut self, i: usize) {
        if let Some(d) = self.lib.remove(i) {
            self.ctx.audit(&AuditEvent::DocumentDetached {
                name: d.name.clone(),
                sha384: d.sha384.clone(),
            });
            drop(d);
        }
    }

    /// Carries out `effects`; true to quit.
    fn carry_out(&mut self, app: &mut App, effects: Vec<Effect>) -> bool {
        let mut more = Vec::new();
        for effect in effects {
            let now = Instant::now();
            match effect {
                Effect::Quit => return true,
                Effect::Cancel => self.cancel.store(true, Ordering::Relaxed),
                Effect::Submit(conversation) => match self.submit(&app.settings, &conversation) {
                    Ok(sources) => more.extend(app::update(app, Action::Sources(sources), now)),
                    Err(e) => more.extend(app::update(app, Action::EngineError(e), now)),
                },
                Effect::ListDocuments => {
                    let r = self.list_documents();
                    more.extend(app::update(app, Action::DocFiles(r), now));
                }
                Effect::Attach(name) => {
                    let a = match self.start_attach(&name) {
                        Ok(()) => Action::AttachStarted(name),
                        Err(e) => Action::Attached(Err(e)),
                    };
                    more.extend(app::update(app, a, now));
                }
                Effect::Detach(i) => {
                    self.detach(i);
                    more.extend(app::update(app, Action::Detached(i), now));
                }
                Effect::DetachAll => {
                    // A document still being read is dropped (wiped) with the rest.
                    self.attaching = None;
                    while !self.lib.is_empty() {
                        self.detach(0);
                    }
                    more.extend(app::update(app, Action::DetachedAll, now));
                }
                Effect::Audit(event) => self.ctx.audit(&event),
                Effect::CheckPassphrase(p) => {
                    let r = self.unlock(app.session.unlock, p);
                    more.extend(app::update(app, Action::UnlockResult(r), now));
                }
                Effect::ListModels => {
                    // A fresh listing (a bundle may have been imported since), each bundle
                    // verified once; a switch loads from it.
                    let r = match self.ctx.root.catalog() {
                        Ok(c) => {
                            let entries = list_models(&c);
                            self.catalog = Some(c);
                            entries
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    more.extend(app::update(app, Action::Models(r), now));
                }
                Effect::SwitchModel(spec) => {
                    let found = match &self.catalog {
                        Some(c) => c.resolve(Some(&spec)).cloned().map_err(crate::Error::from),
                        None => self
                            .ctx
                            .root
                            .catalog()
                            .and_then(|c| Ok(c.resolve(Some(&spec))?.clone())),
                    };
                    match found {
                        Ok(model) => self.start_load(app, model),
                        Err(e) => {
                            more.extend(app::update(app, Action::LoadFailed(e.to_string()), now));
                        }
                    }
                }
                Effect::SettingsChanged => {
                    let s = &app.settings;
                    self.ctx.audit(&AuditEvent::TuiSettings {
                        temperature: s.temperature,
                        top_p: s.top_p,
                        max_tokens: s.max_tokens,
                        seed: s.seed,
                        system_prompt_chars: s.system.chars().count(),
                    });
                }
                Effect::Export { path, text } => {
                    let r = self.export(&path, &text);
                    more.extend(app::update(app, Action::Exported(r), now));
                }
            }
        }
        !more.is_empty() && self.carry_out(app, more)
    }

    /// Checks the unlock passphrase and unwraps the appliance key again.
    fn unlock(&mut self, mode: Unlock, p: Zeroizing<String>) -> std::result::Result<(), String> {
        let root = self.ctx.root;
        let source = match mode {
            Unlock::ApplianceKey => PassphraseSource::Given(p),
            Unlock::Operator => {
                let hash = self
                    .ctx
                    .config
                    .tui
                    .unlock_passphrase
                    .as_deref()
                    .unwrap_or_default();
                if !crate::config::verify_unlock(hash, &p) {
                    return Err("wrong passphrase".into());
                }
                PassphraseSource::None
            }
            Unlock::Nothing => PassphraseSource::None,
        };
        match root.unlock(&source) {
            Ok(k) => {
                self.key = Some(Arc::new(k));
                Ok(())
            }
            Err(crate::Error::Keys(crate::keys::Error::WrongPassphrase { .. })) => {
                Err("wrong passphrase".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Writes an export under the export directory: new file only, mode 0600, synced.
    fn export(&self, typed: &str, text: &str) -> std::result::Result<String, String> {
        let dir = self.ctx.export_dir.as_ref().ok_or_else(|| {
            "exports are disabled: the export directory does not exist or overlaps the \
             appliance root; set [tui] export_dir in rempart.toml"
                .to_owned()
        })?;
        let typed = Path::new(typed.trim());
        if typed.components().any(|c| c == Component::ParentDir) {
            return Err("\"..\" is not allowed in an export path".into());
        }
        let path = dir.join(typed);
        // The file's directory, as its real path, must be under the export directory (a
        // symlinked subdirectory does not lead out of it).
        let parent = crate::secure::fs::parent_dir(&path);
        let under = std::fs::canonicalize(parent).is_ok_and(|p| p.starts_with(dir));
        if !path.starts_with(dir) || !under {
            return Err(format!("exports go under {} only", dir.display()));
        }
        match crate::secure::fs::create_new(&path, 0o600, text.as_bytes()) {
            Ok(()) => {
                self.ctx.audit(&AuditEvent::TuiExport {
                    path: path.display().to_string(),
                    bytes: text.len(),
                });
                Ok(path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(format!(
                "{} already exists (exports never overwrite)",
                path.display()
            )),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// Prints the input-to-redraw latency figures (milliseconds) to stderr.
fn report_latency(samples: &[(f64, bool)]) {
    let stats = |during: Option<bool>| {
        let mut v: Vec<f64> = samples
            .iter()
            .filter(|(_, g)| during.is_none_or(|d| d == *g))
            .map(|(ms, _)| *ms)
            .collect();
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            v.get(((v.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        format!(
            "n={} p50={:.2} p95={:.2} max={:.2}",
            v.len(),
            at(0.5),
            at(0.95),
            v.last().copied().unwrap_or(0.0)
        )
    };
    output::info(format!(
        "input-to-redraw latency ms, all keys: {}",
        stats(None)
    ));
    output::info(format!(
        "input-to-redraw latency ms, during generation: {}",
        stats(Some(true))
    ));
}
