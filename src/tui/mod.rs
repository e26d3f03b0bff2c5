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

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event as TermEvent, MouseEventKind};
use serde_json::json;
use zeroize::Zeroizing;

use crate::cli::Cli;
use crate::cli::run::{self, ModelOpts, Stage};
use crate::config::Config;
use crate::crypto::Secret;
use crate::engine::{self, Event, Loaded, Message, Request, SamplingParams};
use crate::error::Result;
use crate::keys::{ApplianceSecret, PassphraseSource};
use app::{Action, App, Effect, LoadFigures, LockPolicy, ModelEntry, Session, Settings, Unlock};

/// Options of `rempart tui`; `None` takes rempart.toml's value, then the built-in default.
pub(crate) struct TuiOpts<'a> {
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

/// The directory exports may be written to: rempart.toml's `tui.export_dir`, else the
/// directory the UI starts in. `None` when it overlaps the appliance root (an export must
/// never land among keys, models or the audit log, and the sandbox must not open them for
/// writing).
pub(crate) fn export_dir(root: &Path, config: &Config) -> Option<PathBuf> {
    let dir = config
        .tui
        .export_dir
        .clone()
        .or_else(|| std::env::current_dir().ok())?;
    let dir = std::path::absolute(&dir).ok()?;
    let root = std::path::absolute(root).ok()?;
    (!dir.starts_with(&root) && !root.starts_with(&dir)).then_some(dir)
}

/// What the loader thread reports.
enum LoadMsg {
    Progress(Stage, f64),
    Done(Box<Result<(Loaded, run::LoadReport, Secret<32>)>>),
}

/// Everything the loop needs that does not change.
struct Ctx<'a> {
    cli: &'a Cli,
    config: &'a Config,
    require_mlock: bool,
    audit_key: Secret<32>,
    export_dir: Option<PathBuf>,
    report_latency: bool,
}

impl Ctx<'_> {
    fn audit(&self, event: &str, details: serde_json::Value) {
        // Best effort inside the UI: a failure is shown by `audit verify`; the lock still happens.
        let _ = crate::audit::append(
            &self.cli.root.join("audit"),
            &self.audit_key,
            event,
            details,
        );
    }
}

/// Runs the terminal UI until the analyst quits.
pub(crate) fn run(cli: &Cli, o: &TuiOpts<'_>) -> Result<()> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(crate::Error::Usage(
            "the terminal UI needs a terminal; use `rempart ask` in scripts".into(),
        ));
    }
    let config = Config::load(&cli.root)?;
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
    sampling(&settings, 0)
        .validate()
        .map_err(|e| crate::Error::Usage(e.to_string()))?;
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
    let key_path = cli.root.join("keys").join("appliance.key");
    let protected = matches!(
        crate::keys::read_key_file(
            &key_path,
            crate::keys::Kind::ApplianceSecret,
            &PassphraseSource::None
        ),
        Err(crate::keys::Error::PassphraseRequired { .. })
    );
    let appliance = crate::cli::load_appliance(&cli.root, &o.passphrase)?;
    let audit_key = appliance.derive_key(crate::audit::AUDIT_KEY);
    let first = resolve(cli, o.model)?;
    let unlock = match (protected, &t.unlock_passphrase) {
        (true, _) => Unlock::ApplianceKey,
        (false, Some(_)) => Unlock::Operator,
        (false, None) => Unlock::Nothing,
    };
    let ctx = Ctx {
        cli,
        config: &config,
        require_mlock: o.require_mlock,
        audit_key,
        export_dir: export_dir(&cli.root, &config),
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
    };
    ctx.audit("tui_start", json!({"model": first.0}));
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
    let mut terminal = ratatui::try_init()
        .map_err(|e| crate::Error::Usage(format!("cannot set up the terminal: {e}")))?;
    let _ = crossterm::execute!(std::io::stdout(), event::EnableMouseCapture);
    let mut app = App::new(session, settings, lock, Instant::now());
    let mut latency = Vec::new();
    let result = std::thread::scope(|scope| {
        let mut l = Loop {
            ctx: &ctx,
            scope,
            key: Some(Arc::new(appliance)),
            engine: None,
            loader: None,
            events: None,
            cancel: Arc::new(AtomicBool::new(false)),
            latency: &mut latency,
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
    ctx.audit("tui_exit", json!({}));
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

/// `NAME@VERSION`, `name vVERSION` and the marking of an installed model.
fn resolve(cli: &Cli, spec: Option<&str>) -> Result<(String, String, Option<String>)> {
    let trust = crate::keys::TrustStore::load(&cli.trusted_dir())?;
    let inst = crate::store::resolve(&cli.root.join("models"), &trust, spec)?;
    let m = inst.manifest;
    Ok((
        format!("{}@{}", m.name, m.version),
        format!("{} v{}", m.name, m.version),
        m.marking,
    ))
}

/// The picker's entries.
fn list_models(cli: &Cli) -> std::result::Result<Vec<ModelEntry>, String> {
    let trust = crate::keys::TrustStore::load(&cli.trusted_dir()).map_err(|e| e.to_string())?;
    let (list, skipped) =
        crate::store::catalog(&cli.root.join("models"), &trust).map_err(|e| e.to_string())?;
    if list.is_empty() {
        return Err(format!(
            "no usable model is installed ({} bundle(s) failed verification)",
            skipped.len()
        ));
    }
    Ok(list
        .into_iter()
        .map(|i| {
            let m = &i.manifest;
            let mut details = vec![
                m.marking.clone().unwrap_or_else(|| "unmarked".into()),
                format!(
                    "{} {}",
                    m.architecture.as_deref().unwrap_or("?"),
                    m.quantization.as_deref().unwrap_or("?")
                ),
                format!("{:.1} MB", i.bytes as f64 / 1e6),
                format!("sealed {}", day(m.created)),
            ];
            if let Some(t) = i.installed_at {
                details.push(format!("installed {}", day(t)));
            }
            if let Some(e) = m.expires {
                details.push(format!("expires {}", day(e)));
            }
            details.push(format!("{} signer(s)", i.signers.len()));
            ModelEntry {
                spec: format!("{}@{}", m.name, m.version),
                details: details.join(" · "),
            }
        })
        .collect())
}

fn day(secs: u64) -> String {
    crate::cli::fmt_time(secs).chars().take(10).collect()
}

/// The event loop's moving parts.
struct Loop<'s, 'e, 'c> {
    ctx: &'c Ctx<'c>,
    scope: &'s std::thread::Scope<'s, 'e>,
    /// The appliance key while unlocked.
    key: Option<Arc<ApplianceSecret>>,
    engine: Option<engine::Engine>,
    loader: Option<Receiver<LoadMsg>>,
    events: Option<Receiver<Event>>,
    cancel: Arc<AtomicBool>,
    latency: &'c mut Vec<(f64, bool)>,
}

impl<'s, 'e, 'c: 'e> Loop<'s, 'e, 'c> {
    /// Wipes the loaded model (if any) and starts loading `spec` on a loader thread.
    fn start_load(
        &mut self,
        app: &mut App,
        (spec, model, marking): (String, String, Option<String>),
    ) {
        self.cancel.store(true, Ordering::Relaxed);
        self.events = None;
        if let Some(old) = self.engine.take() {
            let name = app.session.model.clone();
            // Joins the engine thread, which drops, so wipes, the model.
            drop(old);
            self.ctx
                .audit("model_unload", json!({"model": name, "reason": "switch"}));
        }
        let marking = marking
            .or_else(|| self.ctx.config.tui.default_marking.clone())
            .unwrap_or_else(|| "UNMARKED".to_owned());
        app.session.banner = self.ctx.config.marking_colour(&marking);
        let _ = app::update(
            app,
            Action::LoadStarted {
                spec: spec.clone(),
                model,
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
        let cli = self.ctx.cli;
        let require_mlock = self.ctx.require_mlock;
        self.scope.spawn(move || {
            let o = ModelOpts {
                model: Some(&spec),
                passphrase: PassphraseSource::None,
                require_mlock,
                device: crate::cli::DeviceArg::Cpu,
                backend: engine::Backend::Auto,
            };
            let progress = |stage, f| {
                let _ = tx.send(LoadMsg::Progress(stage, f));
            };
            let r = run::load_model_with(cli, &o, Some(&key), &progress);
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
                .map_err(|e| crate::Error::Usage(format!("terminal: {e}")))?;
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
            self.drain_engine(app, &mut actions);
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
                        Ok((loaded, report, _)) => {
                            let eng = engine::Engine::start(loaded);
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

    fn drain_engine(&mut self, app: &App, actions: &mut Vec<Action>) {
        let Some(rx) = &self.events else { return };
        loop {
            match rx.try_recv() {
                Ok(Event::Token(t)) => actions.push(Action::Token(t)),
                Ok(Event::Done { stop, stats }) => {
                    actions.push(Action::Done {
                        tokens: stats.prompt_tokens + stats.generated_tokens,
                        tokens_per_s: stats.generation_tps(),
                        stop: serde_json::to_value(stop)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                    });
                    self.ctx.audit(
                        "query",
                        json!({"source": "tui", "model": app.current_spec,
                               "tokens_prompt": stats.prompt_tokens,
                               "tokens_generated": stats.generated_tokens}),
                    );
                    self.events = None;
                    return;
                }
                Ok(Event::Error(e)) => {
                    actions.push(Action::EngineError(e.to_string()));
                    self.events = None;
                    return;
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    actions.push(Action::EngineError("the engine stopped".into()));
                    self.events = None;
                    return;
                }
            }
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
                Effect::Submit(conversation) => {
                    self.cancel = Arc::new(AtomicBool::new(false));
                    let s = &app.settings;
                    let system =
                        (!s.system.is_empty()).then(|| Message::new("system", s.system.as_str()));
                    let req = Request {
                        messages: system
                            .into_iter()
                            .chain(
                                conversation
                                    .iter()
                                    .map(|(r, t)| Message::new(r, t.as_str())),
                            )
                            .collect(),
                        params: sampling(s, crate::cli::random_seed()),
                        max_tokens: s.max_tokens,
                        cancel: Arc::clone(&self.cancel),
                    };
                    let submitted = self
                        .engine
                        .as_ref()
                        .ok_or_else(|| {
                            "no model is loaded (F2 lists the installed models)".to_owned()
                        })
                        .and_then(|e| e.submit(req).map_err(|e| e.to_string()));
                    match submitted {
                        Ok(rx) => self.events = Some(rx),
                        Err(e) => more.extend(app::update(app, Action::EngineError(e), now)),
                    }
                }
                Effect::Audit(event) => self.ctx.audit(event, json!({})),
                Effect::CheckPassphrase(p) => {
                    let r = self.unlock(app.session.unlock, p);
                    more.extend(app::update(app, Action::UnlockResult(r), now));
                }
                Effect::ListModels => {
                    let r = list_models(self.ctx.cli);
                    more.extend(app::update(app, Action::Models(r), now));
                }
                Effect::SwitchModel(spec) => match resolve(self.ctx.cli, Some(&spec)) {
                    Ok(found) => self.start_load(app, found),
                    Err(e) => more.extend(app::update(app, Action::LoadFailed(e.to_string()), now)),
                },
                Effect::SettingsChanged => {
                    let s = &app.settings;
                    self.ctx.audit(
                        "tui_settings",
                        json!({"temperature": s.temperature, "top_p": s.top_p,
                               "max_tokens": s.max_tokens, "seed": s.seed,
                               "system_prompt_chars": s.system.chars().count()}),
                    );
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
        let root = &self.ctx.cli.root;
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
        match crate::cli::load_appliance(root, &source) {
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
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.ctx.export_dir.as_ref().ok_or_else(|| {
            "exports are disabled: the export directory overlaps the appliance root; set \
             [tui] export_dir in rempart.toml"
                .to_owned()
        })?;
        let typed = Path::new(typed.trim());
        if typed.components().any(|c| c == Component::ParentDir) {
            return Err("\"..\" is not allowed in an export path".into());
        }
        let path = dir.join(typed);
        if !path.starts_with(dir) {
            return Err(format!("exports go under {} only", dir.display()));
        }
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            });
        match written {
            Ok(()) => {
                self.ctx.audit(
                    "tui_export",
                    json!({"path": path.display().to_string(), "bytes": text.len()}),
                );
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
    crate::cli::output::info(format!(
        "input-to-redraw latency ms, all keys: {}",
        stats(None)
    ));
    crate::cli::output::info(format!(
        "input-to-redraw latency ms, during generation: {}",
        stats(Some(true))
    ));
}
