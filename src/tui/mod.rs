//! `rempart tui`: the analysts' terminal UI (model–action–update–view, STYLE.md).
//!
//! [`app`] holds the state and the pure `update`; [`view`] draws it; this module runs the
//! loop: it unseals the model (before the terminal enters raw mode, so a passphrase prompt
//! works), starts the engine on its own thread, then turns terminal events, engine events and
//! clock ticks into actions and carries out the effects. The terminal is restored on every
//! exit path: normal return, error, panic (ratatui's hook) and SIGTERM/SIGHUP/SIGINT.
//!
//! # Security
//! Nothing is written to disk but the audit log: no history file, no scrollback dump. The
//! conversation lives in zeroizing strings and is wiped on lock (unless configured otherwise),
//! on a new conversation and on exit. Lock and unlock are audited.

pub mod app;
pub mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event as TermEvent, MouseEventKind};
use serde_json::json;

use crate::cli::Cli;
use crate::cli::run::{self, ModelOpts};
use crate::engine::{self, Event, Request, SamplingParams};
use crate::error::Result;
use crate::keys::PassphraseSource;
use app::{Action, App, Effect, Session};

/// Options of `rempart tui`.
pub(crate) struct TuiOpts<'a> {
    /// The model to load.
    pub model: ModelOpts<'a>,
    /// System prompt.
    pub system: Option<&'a str>,
    /// Sampling for every answer.
    pub params: SamplingParams,
    /// Maximum tokens per answer.
    pub max_tokens: usize,
    /// Minutes without input before the screen locks.
    pub idle_minutes: u64,
    /// Keep the conversation in memory while locked.
    pub keep_on_lock: bool,
}

/// How often the loop wakes without input (idle lock, status clock).
const TICK: Duration = Duration::from_millis(50);

fn audit(cli: &Cli, key: &crate::crypto::Secret<32>, event: &str, details: serde_json::Value) {
    // Best effort inside the UI: a failure is shown by `audit verify`; the lock still happens.
    let _ = crate::audit::append(&cli.root.join("audit"), key, event, details);
}

/// Runs the terminal UI until the analyst quits.
pub(crate) fn run(cli: &Cli, o: &TuiOpts<'_>) -> Result<()> {
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(crate::Error::Usage(
            "the terminal UI needs a terminal; use `rempart ask` in scripts".into(),
        ));
    }
    crate::cli::output::info("unsealing the model into locked memory…");
    let (loaded, report, audit_key) = run::load_model(cli, &o.model)?;
    let key_path = cli.root.join("keys").join("appliance.key");
    let protected = matches!(
        crate::keys::read_key_file(
            &key_path,
            crate::keys::Kind::ApplianceSecret,
            &PassphraseSource::None
        ),
        Err(crate::keys::Error::PassphraseRequired { .. })
    );
    let eng = engine::Engine::start(loaded);
    let session = Session {
        marking: report
            .marking
            .clone()
            .unwrap_or_else(|| "UNMARKED".to_owned()),
        model: format!("{} v{}", report.model, report.version),
        device: "cpu".to_owned(),
        context: eng.info.context_length,
        memory_locked: report.arena_locked && report.weights_locked,
        passphrase_protected: protected,
    };
    audit(
        cli,
        &audit_key,
        "tui_start",
        json!({"model": report.model, "version": report.version}),
    );
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
    let now = Instant::now();
    let mut app = App::new(
        session,
        Duration::from_secs(o.idle_minutes.saturating_mul(60)),
        now,
    );
    app.keep_on_lock = o.keep_on_lock;
    let result = event_loop(
        cli,
        o,
        &eng,
        &audit_key,
        &key_path,
        &mut app,
        &mut terminal,
        &stop,
    );
    finished.store(true, Ordering::Relaxed);
    let _ = crossterm::execute!(std::io::stdout(), event::DisableMouseCapture);
    ratatui::restore();
    drop(app);
    audit(cli, &audit_key, "tui_exit", json!({}));
    result
}

#[allow(clippy::too_many_arguments, reason = "the loop's context, passed once")]
fn event_loop(
    cli: &Cli,
    o: &TuiOpts<'_>,
    eng: &engine::Engine,
    audit_key: &crate::crypto::Secret<32>,
    key_path: &std::path::Path,
    app: &mut App,
    terminal: &mut ratatui::DefaultTerminal,
    stop: &AtomicBool,
) -> Result<()> {
    let mut events: Option<Receiver<Event>> = None;
    let mut cancel = Arc::new(AtomicBool::new(false));
    loop {
        let now = Instant::now();
        terminal
            .draw(|f| view::draw(f, app, now))
            .map_err(|e| crate::Error::Usage(format!("terminal: {e}")))?;
        let mut actions = Vec::new();
        if stop.load(Ordering::Relaxed) {
            cancel.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if event::poll(TICK).unwrap_or(false) {
            match event::read() {
                Ok(TermEvent::Key(k)) => actions.push(Action::Key(k)),
                Ok(TermEvent::Mouse(m)) => match m.kind {
                    MouseEventKind::ScrollUp => actions.push(Action::Scroll(3)),
                    MouseEventKind::ScrollDown => actions.push(Action::Scroll(-3)),
                    _ => {}
                },
                _ => {}
            }
        }
        if let Some(rx) = &events {
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
                        audit(
                            cli,
                            audit_key,
                            "query",
                            json!({"source": "tui", "tokens_prompt": stats.prompt_tokens,
                                   "tokens_generated": stats.generated_tokens}),
                        );
                        events = None;
                        break;
                    }
                    Ok(Event::Error(e)) => {
                        actions.push(Action::EngineError(e.to_string()));
                        events = None;
                        break;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        actions.push(Action::EngineError("the engine stopped".into()));
                        events = None;
                        break;
                    }
                }
            }
        }
        actions.push(Action::Tick);
        for a in actions {
            for effect in app::update(app, a, Instant::now()) {
                match effect {
                    Effect::Quit => {
                        // Stop a running answer so the engine thread can be joined.
                        cancel.store(true, Ordering::Relaxed);
                        return Ok(());
                    }
                    Effect::Cancel => cancel.store(true, Ordering::Relaxed),
                    Effect::Submit(conversation) => {
                        cancel = Arc::new(AtomicBool::new(false));
                        let req = Request {
                            messages: app::to_messages(o.system, &conversation),
                            params: o.params.clone(),
                            max_tokens: o.max_tokens,
                            cancel: Arc::clone(&cancel),
                        };
                        match eng.submit(req) {
                            Ok(rx) => events = Some(rx),
                            Err(e) => {
                                let _ = app::update(
                                    app,
                                    Action::EngineError(e.to_string()),
                                    Instant::now(),
                                );
                            }
                        }
                    }
                    Effect::Audit(event) => audit(cli, audit_key, event, json!({})),
                    Effect::CheckPassphrase(p) => {
                        let result = if app.session.passphrase_protected {
                            crate::keys::read_key_file(
                                key_path,
                                crate::keys::Kind::ApplianceSecret,
                                &PassphraseSource::Given(p),
                            )
                            .map(drop)
                            .map_err(|_| "wrong passphrase".to_owned())
                        } else {
                            Ok(())
                        };
                        for e in app::update(app, Action::UnlockResult(result), Instant::now()) {
                            if let Effect::Audit(event) = e {
                                audit(cli, audit_key, event, json!({}));
                            }
                        }
                    }
                }
            }
        }
    }
}
