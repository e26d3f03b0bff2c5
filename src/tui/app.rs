//! The terminal UI's model and its pure `update`: every key press, engine event and clock tick
//! becomes an [`Action`]; [`update`] changes the [`App`] and returns the [`Effect`]s for the
//! event loop to carry out (submit to the engine, cancel, audit, check a passphrase, quit).
//! Nothing here touches the terminal, the engine or the disk, so it is unit-tested directly.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_textarea::TextArea;
use zeroize::Zeroizing;

use crate::audit::Event;
use crate::engine::StopReason;

/// Who said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The analyst.
    User,
    /// The model.
    Assistant,
    /// A notice from rempart (stopped, error).
    Notice,
}

/// One turn of the conversation. Its text is wiped when dropped and never `Debug`-printed.
pub struct Turn {
    /// Who.
    pub role: Role,
    /// What.
    pub text: Zeroizing<String>,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("role", &self.role)
            .field(
                "text",
                &format_args!("<{} bytes redacted>", self.text.len()),
            )
            .finish()
    }
}

/// Which screen is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// A model is being verified, decrypted and built.
    Loading,
    /// The conversation.
    Chat,
    /// The installed models, to switch to another.
    Models,
    /// Sampling settings and system prompt.
    Settings,
    /// The path to export the conversation to.
    Export,
    /// The key bindings over the conversation.
    Help,
    /// The documents directory, to attach a file.
    Attach,
    /// The passages the last answer was given, numbered as it cites them.
    Sources,
    /// Locked: the conversation is hidden (and wiped unless configured otherwise).
    Locked,
}

/// Facts about the session shown in the banners and the status bar.
#[derive(Debug, Clone)]
pub struct Session {
    /// Classification marking (from the bundle).
    pub marking: String,
    /// `name vVERSION`.
    pub model: String,
    /// "cpu".
    pub device: String,
    /// The model's context window in tokens.
    pub context: usize,
    /// Whether the weights are locked in RAM.
    pub memory_locked: bool,
    /// What unlocks the screen.
    pub unlock: Unlock,
    /// Banner background from rempart.toml, overriding the built-in colours.
    pub banner: Option<ratatui::style::Color>,
    /// The loaded bundle's digest (SHA-384 of its signed manifest), for exports.
    pub digest: String,
}

/// An attached document, as the status area lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocEntry {
    /// The file name.
    pub name: String,
    /// SHA-384 of its bytes (hex).
    pub sha384: String,
    /// Its marking.
    pub marking: String,
    /// Its size.
    pub bytes: u64,
    /// Its tokens for the loaded model.
    pub tokens: usize,
    /// Its passages.
    pub passages: usize,
}

/// A passage given with the last question, for the sources panel. Its text is wiped when
/// dropped and never `Debug`-printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// Its number in the prompt (the model cites `[n]`).
    pub n: usize,
    /// The document's name.
    pub document: String,
    /// Page or section, and lines.
    pub locator: String,
    /// The passage.
    pub text: Zeroizing<String>,
}

impl std::fmt::Debug for SourceEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceEntry")
            .field("n", &self.n)
            .field("document", &self.document)
            .field("locator", &self.locator)
            .finish_non_exhaustive()
    }
}

/// What unlocks a locked screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlock {
    /// The appliance key's passphrase.
    ApplianceKey,
    /// The operator passphrase configured in rempart.toml (the appliance key has none).
    Operator,
    /// Enter alone: neither the key nor the configuration has a passphrase.
    Nothing,
}

/// The loading stages shown as gauges.
pub const STAGES: [&str; 3] = ["verify", "decrypt", "build"];

/// A model load in progress (or just finished or failed).
#[derive(Debug, Clone)]
pub struct Loading {
    /// `name vVERSION` being loaded.
    pub model: String,
    /// Fraction done of each of [`STAGES`].
    pub stages: [f64; 3],
    /// The final figures once loaded, and when.
    pub done: Option<(LoadFigures, Instant)>,
    /// Why it failed.
    pub error: Option<String>,
}

/// What a finished load reports.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadFigures {
    /// Plaintext model size.
    pub bytes: u64,
    /// Seconds per stage.
    pub seconds: [f64; 3],
    /// Whether all of the model's memory is locked.
    pub memory_locked: bool,
}

/// One installed model, as the picker lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// `NAME@VERSION`, to load it.
    pub spec: String,
    /// One line: marking, architecture, quantisation, size, dates, signers.
    pub details: String,
}

/// Sampling settings for every answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// System prompt (empty: none).
    pub system: Zeroizing<String>,
    /// Temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus threshold.
    pub top_p: f32,
    /// Maximum tokens per answer.
    pub max_tokens: usize,
    /// Fixed seed; `None` draws a new one per answer.
    pub seed: Option<u64>,
}

/// The settings labels, in form order.
pub const SETTINGS: [&str; 5] = [
    "System prompt",
    "Temperature",
    "Top-p",
    "Max tokens",
    "Seed",
];

/// The settings form being edited: one text per field.
#[derive(Debug, Clone)]
pub struct SettingsForm {
    /// The texts, in [`SETTINGS`] order.
    pub fields: [Zeroizing<String>; 5],
    /// The field with the cursor.
    pub pos: usize,
    /// Why the last Enter was refused.
    pub error: Option<String>,
}

impl SettingsForm {
    fn from(s: &Settings) -> Self {
        Self {
            fields: [
                s.system.clone(),
                Zeroizing::new(s.temperature.to_string()),
                Zeroizing::new(s.top_p.to_string()),
                Zeroizing::new(s.max_tokens.to_string()),
                Zeroizing::new(
                    s.seed
                        .map_or_else(|| "random".to_owned(), |x| x.to_string()),
                ),
            ],
            pos: 0,
            error: None,
        }
    }

    /// Parses and checks the form.
    fn parse(&self) -> Result<Settings, String> {
        let [system, t, p, m, seed] = &self.fields;
        let temperature: f32 = t
            .trim()
            .parse()
            .map_err(|_| format!("temperature {:?} is not a number", t.as_str()))?;
        let top_p: f32 = p
            .trim()
            .parse()
            .map_err(|_| format!("top-p {:?} is not a number", p.as_str()))?;
        crate::engine::SamplingParams {
            temperature,
            top_p,
            ..crate::engine::SamplingParams::default()
        }
        .validate()
        .map_err(|e| e.to_string())?;
        let max_tokens = m
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| (1..=1 << 20).contains(&n))
            .ok_or_else(|| format!("max tokens {:?} is not a whole number >= 1", m.as_str()))?;
        let seed = match seed.trim() {
            "" | "random" => None,
            x => Some(
                x.parse::<u64>()
                    .map_err(|_| format!("seed {x:?} is not a whole number (or \"random\")"))?,
            ),
        };
        Ok(Settings {
            system: Zeroizing::new(system.trim().to_owned()),
            temperature,
            top_p,
            max_tokens,
            seed,
        })
    }
}

/// The generation in progress.
#[derive(Debug)]
pub struct Generating {
    /// Whether the analyst asked to stop.
    pub stopping: bool,
}

/// Everything the screen shows.
#[derive(Debug)]
pub struct App {
    /// Session facts.
    pub session: Session,
    /// The load in progress or last finished.
    pub loading: Option<Loading>,
    /// Sampling settings.
    pub settings: Settings,
    /// The settings form while open.
    pub form: Option<SettingsForm>,
    /// The installed models (filled when the picker opens).
    pub models: Vec<ModelEntry>,
    /// The picker's selection.
    pub picker_pos: usize,
    /// The `NAME@VERSION` loaded (or loading).
    pub current_spec: String,
    /// The export path being typed.
    pub export_path: Zeroizing<String>,
    /// Why the last export failed.
    pub export_error: Option<String>,
    /// Why the models could not be listed.
    pub picker_error: Option<String>,
    /// The conversation.
    pub turns: Vec<Turn>,
    /// The input editor.
    pub input: TextArea<'static>,
    /// Sent prompts, for Up/Down recall (wiped with the conversation).
    pub history: Vec<Zeroizing<String>>,
    /// Position in `history` while recalling.
    pub history_pos: Option<usize>,
    /// Current screen.
    pub screen: Screen,
    /// The passphrase typed on the lock screen.
    pub unlock_entry: Zeroizing<String>,
    /// Why the last unlock failed.
    pub unlock_error: Option<String>,
    /// A generation is running.
    pub generating: Option<Generating>,
    /// Lines scrolled up from the bottom of the conversation; 0 follows the answer.
    pub scroll_up: u16,
    /// Tokens/s of the last answer.
    pub last_tps: Option<f64>,
    /// Prompt + generated tokens of the last exchange.
    pub context_used: usize,
    /// Lock timing and what a lock wipes.
    pub lock: LockPolicy,
    /// Last key press.
    pub last_input: Instant,
    /// A first Ctrl-C with nothing to stop: the next one quits.
    pub quit_armed: bool,
    /// The attached documents.
    pub docs: Vec<DocEntry>,
    /// The files of the documents directory (filled when the attach picker opens).
    pub doc_files: Vec<String>,
    /// The attach picker's selection.
    pub doc_pos: usize,
    /// Why the documents directory could not be listed, or the last attach failed.
    pub doc_error: Option<String>,
    /// The passages given with the last question.
    pub sources: Vec<SourceEntry>,
    /// The document being read, if any.
    pub attaching: Option<String>,
}

/// When the screen locks and what locking wipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockPolicy {
    /// Lock after this long without input.
    pub idle: Duration,
    /// Keep the conversation in memory while locked.
    pub keep_conversation: bool,
}

/// An input to [`update`].
#[derive(Debug)]
pub enum Action {
    /// A key press.
    Key(KeyEvent),
    /// Mouse wheel or PgUp/PgDn-like scrolling by this many lines (positive = up).
    Scroll(i32),
    /// The oldest messages (this many) were left out so that the conversation fits.
    Trimmed(usize),
    /// A piece of the answer.
    Token(String),
    /// The answer is complete.
    Done {
        /// Prompt + generated tokens.
        tokens: usize,
        /// Generation speed.
        tokens_per_s: f64,
        /// Why it stopped.
        stop: StopReason,
    },
    /// The engine failed.
    EngineError(String),
    /// The clock (idle lock).
    Tick,
    /// The passphrase check finished.
    UnlockResult(Result<(), String>),
    /// A model load started (`NAME@VERSION`, `name vVERSION`, its marking).
    LoadStarted {
        /// `NAME@VERSION`.
        spec: String,
        /// `name vVERSION`.
        model: String,
        /// The marking to show (the bundle's, else the configured default).
        marking: String,
    },
    /// A loading stage advanced (index into [`STAGES`], fraction done).
    LoadProgress(usize, f64),
    /// The model is ready.
    Loaded {
        /// The model's context window.
        context: usize,
        /// The final figures.
        figures: LoadFigures,
    },
    /// The load failed.
    LoadFailed(String),
    /// The installed models, for the picker (or why they could not be listed).
    Models(Result<Vec<ModelEntry>, String>),
    /// The export finished: the path written, or why not.
    Exported(Result<String, String>),
    /// The documents directory's files, for the attach picker (or why it cannot be listed).
    DocFiles(Result<Vec<String>, String>),
    /// A document is being read (on its own thread; the screen stays live).
    AttachStarted(String),
    /// A document was attached, with the session's marking now; or why not.
    Attached(Result<(DocEntry, String), String>),
    /// Document `i` was detached.
    Detached(usize),
    /// Every document was detached (lock, model switch).
    DetachedAll,
    /// The passages given with the question being answered.
    Sources(Vec<SourceEntry>),
    /// The loaded bundle's digest.
    Digest(String),
}

/// What the event loop must do after [`update`]. Its `Debug` never shows a passphrase, a path
/// typed for an export or the conversation.
#[derive(PartialEq)]
pub enum Effect {
    /// Send the conversation to the engine.
    Submit(Vec<(String, String)>),
    /// Stop the running generation.
    Cancel,
    /// Record an audit event.
    Audit(Event),
    /// Check this passphrase against the appliance key.
    CheckPassphrase(Zeroizing<String>),
    /// List the installed models (answer with [`Action::Models`]).
    ListModels,
    /// Wipe the loaded model and load this one (`NAME@VERSION`).
    SwitchModel(String),
    /// The settings changed: record it.
    SettingsChanged,
    /// List the documents directory (answer with [`Action::DocFiles`]).
    ListDocuments,
    /// Read and attach this file of the documents directory (answer with [`Action::Attached`]).
    Attach(String),
    /// Detach document `i` (answer with [`Action::Detached`]).
    Detach(usize),
    /// Detach every document (answer with [`Action::DetachedAll`]).
    DetachAll,
    /// Write this text to the typed path (answer with [`Action::Exported`]).
    Export {
        /// The path as typed.
        path: Zeroizing<String>,
        /// The conversation with its markings.
        text: Zeroizing<String>,
    },
    /// Leave the UI.
    Quit,
}

impl std::fmt::Debug for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Submit(turns) => write!(f, "Submit(<{} turns redacted>)", turns.len()),
            Self::Cancel => f.write_str("Cancel"),
            Self::Audit(e) => f.debug_tuple("Audit").field(e).finish(),
            Self::CheckPassphrase(_) => f.write_str("CheckPassphrase(<redacted>)"),
            Self::ListModels => f.write_str("ListModels"),
            Self::SwitchModel(spec) => f.debug_tuple("SwitchModel").field(spec).finish(),
            Self::SettingsChanged => f.write_str("SettingsChanged"),
            Self::ListDocuments => f.write_str("ListDocuments"),
            Self::Attach(name) => f.debug_tuple("Attach").field(name).finish(),
            Self::Detach(i) => f.debug_tuple("Detach").field(i).finish(),
            Self::DetachAll => f.write_str("DetachAll"),
            Self::Export { text, .. } => {
                write!(
                    f,
                    "Export {{ path: <redacted>, text: <{} bytes redacted> }}",
                    text.len()
                )
            }
            Self::Quit => f.write_str("Quit"),
        }
    }
}

/// The key bindings, as the help overlay lists them.
pub const BINDINGS: &[(&str, &str)] = &[
    ("Enter", "send the message"),
    ("Alt+Enter / Shift+Enter", "new line in the message"),
    ("Up / Down", "recall earlier messages"),
    ("Esc / Ctrl-C", "stop the answer, keep what it wrote"),
    ("Ctrl-C twice / Ctrl-Q", "quit (the conversation is wiped)"),
    ("PgUp / PgDn / Home / End", "scroll; top; follow the answer"),
    ("Ctrl-N", "new conversation (the old one is wiped)"),
    ("F2", "models: switch (the loaded one is wiped)"),
    ("F3", "settings: system prompt, temperature, top-p..."),
    ("e / F4", "export the conversation to a file you name"),
    (
        "F5 / /attach [FILE]",
        "attach a document; /detach N wipes document N",
    ),
    ("F6 / /sources", "the passages the last answer was given"),
    ("Ctrl-L", "lock now"),
    ("? / F1", "this help (any key closes it)"),
];

impl App {
    /// A new session with an empty conversation.
    pub fn new(session: Session, settings: Settings, lock: LockPolicy, now: Instant) -> Self {
        Self {
            session,
            loading: None,
            settings,
            form: None,
            models: Vec::new(),
            picker_pos: 0,
            current_spec: String::new(),
            export_path: Zeroizing::new(String::new()),
            export_error: None,
            picker_error: None,
            turns: Vec::new(),
            input: new_input(),
            history: Vec::new(),
            history_pos: None,
            screen: Screen::Chat,
            unlock_entry: Zeroizing::new(String::new()),
            unlock_error: None,
            generating: None,
            scroll_up: 0,
            last_tps: None,
            context_used: 0,
            lock,
            last_input: now,
            quit_armed: false,
            docs: Vec::new(),
            doc_files: Vec::new(),
            doc_pos: 0,
            doc_error: None,
            sources: Vec::new(),
            attaching: None,
        }
    }

    /// Time left before the idle lock.
    pub fn idle_left(&self, now: Instant) -> Duration {
        self.lock
            .idle
            .saturating_sub(now.saturating_duration_since(self.last_input))
    }

    /// Wipes the conversation, the history and the input.
    fn wipe(&mut self) {
        self.turns.clear();
        self.history.clear();
        self.history_pos = None;
        self.input = new_input();
        self.scroll_up = 0;
        self.context_used = 0;
        self.last_tps = None;
        self.sources.clear();
    }

    fn lock(&mut self, effects: &mut Vec<Effect>) {
        if self.screen == Screen::Locked {
            return;
        }
        if self.generating.is_some() {
            effects.push(Effect::Cancel);
        }
        if !self.lock.keep_conversation {
            self.wipe();
            if !self.docs.is_empty() {
                effects.push(Effect::DetachAll);
            }
        }
        self.form = None;
        self.export_path = Zeroizing::new(String::new());
        self.screen = Screen::Locked;
        self.unlock_entry = Zeroizing::new(String::new());
        self.unlock_error = None;
        effects.push(Effect::Audit(Event::TuiLock));
    }

    /// A `/command` typed in the editor: never sent to the model nor kept in the history.
    fn command(&mut self, line: &str, effects: &mut Vec<Effect>) {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let arg = line.trim().get(cmd.len()..).unwrap_or("").trim();
        let notice = match cmd {
            "/attach" if arg.is_empty() => {
                self.open_attach(effects);
                None
            }
            "/attach" => {
                effects.push(Effect::Attach(arg.to_owned()));
                None
            }
            "/detach" => match arg.parse::<usize>() {
                Ok(n) if (1..=self.docs.len()).contains(&n) => {
                    effects.push(Effect::Detach(n - 1));
                    None
                }
                _ => Some(format!(
                    "/detach N: N is a document's number, 1 to {} (shown above the message box)",
                    self.docs.len()
                )),
            },
            "/sources" => {
                self.screen = Screen::Sources;
                None
            }
            _ => Some(format!(
                "unknown command {cmd}: /attach [FILE], /detach N, /sources (a message starting \
                 with / is a command; start it with a space to send it)"
            )),
        };
        if let Some(n) = notice {
            self.turns.push(Turn {
                role: Role::Notice,
                text: Zeroizing::new(n),
            });
        }
        self.input = new_input();
    }

    fn open_attach(&mut self, effects: &mut Vec<Effect>) {
        self.doc_files.clear();
        self.doc_error = None;
        self.doc_pos = 0;
        self.screen = Screen::Attach;
        effects.push(Effect::ListDocuments);
    }

    fn attach_key(&mut self, k: KeyEvent, effects: &mut Vec<Effect>) {
        match k.code {
            KeyCode::Up => self.doc_pos = self.doc_pos.saturating_sub(1),
            KeyCode::Down if self.doc_pos + 1 < self.doc_files.len() => self.doc_pos += 1,
            KeyCode::Enter => {
                if let Some(name) = self.doc_files.get(self.doc_pos) {
                    effects.push(Effect::Attach(name.clone()));
                }
            }
            KeyCode::Esc | KeyCode::F(5) => self.screen = Screen::Chat,
            _ => {}
        }
    }

    fn send(&mut self, effects: &mut Vec<Effect>) {
        let text = Zeroizing::new(self.input.lines().join("\n"));
        if text.trim().is_empty() || self.generating.is_some() {
            return;
        }
        if text.starts_with('/') {
            self.command(&text, effects);
            return;
        }
        self.history.push(text.clone());
        self.history_pos = None;
        self.turns.push(Turn {
            role: Role::User,
            text,
        });
        self.turns.push(Turn {
            role: Role::Assistant,
            text: Zeroizing::new(String::new()),
        });
        self.input = new_input();
        self.scroll_up = 0;
        self.generating = Some(Generating { stopping: false });
        let conversation = self
            .turns
            .iter()
            .filter(|t| t.role != Role::Notice && !(t.role == Role::Assistant && t.text.is_empty()))
            .map(|t| {
                let role = if t.role == Role::User {
                    "user"
                } else {
                    "assistant"
                };
                (role.to_owned(), t.text.to_string())
            })
            .collect();
        effects.push(Effect::Submit(conversation));
    }

    fn recall(&mut self, older: bool) {
        if self.history.is_empty() {
            return;
        }
        let last = self.history.len() - 1;
        let pos = match (self.history_pos, older) {
            (None, true) => Some(last),
            (None, false) => None,
            (Some(p), true) => Some(p.saturating_sub(1)),
            (Some(p), false) if p < last => Some(p + 1),
            (Some(_), false) => None,
        };
        self.history_pos = pos;
        self.input = new_input();
        if let Some(text) = pos.and_then(|p| self.history.get(p)) {
            self.input.insert_str(text.as_str());
        }
    }

    fn chat_key(&mut self, k: KeyEvent, effects: &mut Vec<Effect>) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let alt_or_shift = k
            .modifiers
            .intersects(KeyModifiers::ALT | KeyModifiers::SHIFT);
        match k.code {
            KeyCode::Char('c') if ctrl => {
                if let Some(g) = &mut self.generating {
                    g.stopping = true;
                    effects.push(Effect::Cancel);
                } else if self.quit_armed {
                    effects.push(Effect::Quit);
                } else {
                    self.quit_armed = true;
                    return;
                }
            }
            KeyCode::Char('q') if ctrl => effects.push(Effect::Quit),
            KeyCode::Char('l') if ctrl => self.lock(effects),
            KeyCode::Char('n') if ctrl => {
                if self.generating.is_none() {
                    self.wipe();
                    effects.push(Effect::Audit(Event::TuiNewConversation));
                }
            }
            KeyCode::Esc => {
                if let Some(g) = &mut self.generating {
                    g.stopping = true;
                    effects.push(Effect::Cancel);
                }
            }
            KeyCode::F(1) => self.screen = Screen::Help,
            KeyCode::Char('?') if self.input.is_empty() => self.screen = Screen::Help,
            KeyCode::F(2) => self.open_picker(effects),
            KeyCode::F(3) => {
                self.form = Some(SettingsForm::from(&self.settings));
                self.screen = Screen::Settings;
            }
            KeyCode::F(4) => self.open_export(),
            KeyCode::F(5) => self.open_attach(effects),
            KeyCode::F(6) => self.screen = Screen::Sources,
            KeyCode::Char('e') if self.input.is_empty() && !ctrl => self.open_export(),
            KeyCode::Enter if alt_or_shift => self.input.insert_newline(),
            KeyCode::Enter => self.send(effects),
            KeyCode::PageUp => self.scroll_up = self.scroll_up.saturating_add(10),
            KeyCode::PageDown => self.scroll_up = self.scroll_up.saturating_sub(10),
            KeyCode::Home if ctrl || self.input.is_empty() => self.scroll_up = u16::MAX,
            KeyCode::End if ctrl || self.input.is_empty() => self.scroll_up = 0,
            KeyCode::Up if self.input.cursor().0 == 0 => self.recall(true),
            KeyCode::Down if self.input.cursor().0 + 1 >= self.input.lines().len() => {
                self.recall(false);
            }
            _ => {
                self.input.input(k);
            }
        }
        self.quit_armed = false;
    }

    fn open_picker(&mut self, effects: &mut Vec<Effect>) {
        self.models.clear();
        self.picker_error = None;
        self.screen = Screen::Models;
        effects.push(Effect::ListModels);
    }

    fn open_export(&mut self) {
        self.export_error = None;
        self.screen = Screen::Export;
    }

    /// The screen to return to from an overlay or the lock: the loading screen while a load
    /// is running or has failed, else the conversation.
    fn home(&self) -> Screen {
        match &self.loading {
            Some(l) if l.done.is_none() => Screen::Loading,
            _ => Screen::Chat,
        }
    }

    fn picker_key(&mut self, k: KeyEvent, effects: &mut Vec<Effect>) {
        match k.code {
            KeyCode::Up => self.picker_pos = self.picker_pos.saturating_sub(1),
            KeyCode::Down if self.picker_pos + 1 < self.models.len() => self.picker_pos += 1,
            KeyCode::Enter => {
                let Some(spec) = self.models.get(self.picker_pos).map(|m| m.spec.clone()) else {
                    return;
                };
                let loaded = self.loading.as_ref().is_some_and(|l| l.error.is_none());
                if spec == self.current_spec && loaded {
                    self.screen = self.home();
                    return;
                }
                if self.generating.take().is_some() {
                    effects.push(Effect::Cancel);
                }
                self.wipe();
                self.screen = Screen::Loading;
                if !self.docs.is_empty() {
                    effects.push(Effect::DetachAll);
                }
                effects.push(Effect::SwitchModel(spec));
            }
            KeyCode::Esc | KeyCode::F(2) => self.screen = self.home(),
            _ => {}
        }
    }

    fn settings_key(&mut self, k: KeyEvent, effects: &mut Vec<Effect>) {
        let Some(form) = &mut self.form else {
            self.screen = Screen::Chat;
            return;
        };
        let n = form.fields.len();
        match k.code {
            KeyCode::Esc | KeyCode::F(3) => {
                self.form = None;
                self.screen = Screen::Chat;
            }
            KeyCode::Up | KeyCode::BackTab => form.pos = (form.pos + n - 1) % n,
            KeyCode::Down | KeyCode::Tab => form.pos = (form.pos + 1) % n,
            KeyCode::Enter => match form.parse() {
                Ok(s) => {
                    self.settings = s;
                    self.form = None;
                    self.screen = Screen::Chat;
                    effects.push(Effect::SettingsChanged);
                }
                Err(e) => form.error = Some(e),
            },
            KeyCode::Backspace => {
                if let Some(f) = form.fields.get_mut(form.pos) {
                    f.pop();
                }
            }
            KeyCode::Char('u') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                if let Some(f) = form.fields.get_mut(form.pos) {
                    *f = Zeroizing::new(String::new());
                }
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                if let Some(f) = form.fields.get_mut(form.pos) {
                    f.push(c);
                }
            }
            _ => {}
        }
    }

    fn export_key(&mut self, k: KeyEvent, effects: &mut Vec<Effect>) {
        match k.code {
            KeyCode::Esc => self.screen = Screen::Chat,
            KeyCode::Enter if self.export_path.trim().is_empty() => {
                self.export_error = Some("type a file name first".into());
            }
            KeyCode::Enter if self.turns.is_empty() => {
                self.export_error = Some("the conversation is empty: nothing to export".into());
            }
            KeyCode::Enter => effects.push(Effect::Export {
                path: self.export_path.clone(),
                text: self.export_text(),
            }),
            KeyCode::Backspace => {
                self.export_path.pop();
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                self.export_path.push(c);
            }
            _ => {}
        }
    }

    /// The conversation as text, with the classification marking on the first and last line.
    /// Sanitised as the screen is (`text::sanitize`): the file shows what the analyst saw, and
    /// printing it on a terminal (`cat`) cannot run the model's escape sequences, which could
    /// otherwise rewrite or hide the marking lines.
    pub fn export_text(&self) -> Zeroizing<String> {
        self.export_text_at(std::time::SystemTime::now())
    }

    /// [`App::export_text`] as exported at `when`: after the marking, what the text is
    /// (machine-generated) and its provenance: model and bundle digest, session marking,
    /// attached documents with their hashes, the time.
    pub fn export_text_at(&self, when: std::time::SystemTime) -> Zeroizing<String> {
        use crate::text::sanitize;
        let m = sanitize(&self.session.marking);
        let mut out = Zeroizing::new(format!(
            "{m}\n\nRempart conversation with {}\n\n\
             MACHINE-GENERATED: the Model's answers were written by a language model, not by a \
             person. Check them against the sources they cite.\n\n\
             Provenance:\n\
             - model: {}\n\
             - bundle (SHA-384 of the signed manifest): {}\n\
             - session marking: {m}\n\
             - exported: {}\n",
            sanitize(&self.session.model),
            sanitize(&self.session.model),
            sanitize(&self.session.digest),
            humantime::format_rfc3339_seconds(when),
        ));
        for (i, d) in self.docs.iter().enumerate() {
            out.push_str(&format!(
                "- document {}: {} ({}), {} bytes, SHA-384 {}\n",
                i + 1,
                sanitize(&d.name),
                sanitize(&d.marking),
                d.bytes,
                d.sha384
            ));
        }
        if !self.settings.system.is_empty() {
            out.push_str(&format!(
                "\n## System\n\n{}\n",
                sanitize(self.settings.system.as_str())
            ));
        }
        for t in &self.turns {
            let who = match t.role {
                Role::User => "You",
                Role::Assistant => "Model",
                Role::Notice => "rempart",
            };
            out.push_str(&format!("\n## {who}\n\n{}\n", sanitize(t.text.as_str())));
        }
        if !self.sources.is_empty() {
            out.push_str("\n## Sources of the last answer\n");
            for src in &self.sources {
                out.push_str(&format!(
                    "\n[{}] {}, {}\n\n{}\n",
                    src.n,
                    sanitize(&src.document),
                    sanitize(&src.locator),
                    sanitize(src.text.as_str())
                ));
            }
        }
        out.push_str(&format!("\n{m}\n"));
        out
    }

    fn loading_key(&mut self, k: KeyEvent, effects: &mut Vec<Effect>) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Char('q') if ctrl => effects.push(Effect::Quit),
            KeyCode::Char('l') if ctrl => self.lock(effects),
            KeyCode::F(2) if self.loading.as_ref().is_some_and(|l| l.error.is_some()) => {
                self.open_picker(effects);
            }
            _ if self.loading.as_ref().is_some_and(|l| l.done.is_some()) => {
                self.screen = Screen::Chat;
            }
            _ => {}
        }
    }

    fn lock_key(&mut self, k: KeyEvent, effects: &mut Vec<Effect>) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Char('q') if ctrl => effects.push(Effect::Quit),
            KeyCode::Enter => {
                let entry =
                    std::mem::replace(&mut self.unlock_entry, Zeroizing::new(String::new()));
                effects.push(Effect::CheckPassphrase(entry));
            }
            KeyCode::Backspace => {
                self.unlock_entry.pop();
            }
            KeyCode::Char(c) if !ctrl => self.unlock_entry.push(c),
            _ => {}
        }
    }
}

fn new_input() -> TextArea<'static> {
    let mut t = TextArea::default();
    t.set_placeholder_text("Type a message. Enter sends, Alt+Enter adds a line, ? for help.");
    t
}

/// An app with a sample session (protected key, 8192-token context, memory locked) and the
/// default settings, for the screen tests and the frame benchmark.
#[doc(hidden)]
pub fn sample(marking: &str, now: Instant) -> App {
    App::new(
        Session {
            marking: marking.into(),
            model: "smollm2-135m-instruct v3".into(),
            device: "cpu".into(),
            context: 8192,
            memory_locked: true,
            unlock: Unlock::ApplianceKey,
            banner: None,
            digest: "0".repeat(96),
        },
        Settings {
            system: Zeroizing::new(String::new()),
            temperature: 0.8,
            top_p: 0.95,
            max_tokens: 1024,
            seed: None,
        },
        LockPolicy {
            idle: Duration::from_secs(300),
            keep_conversation: false,
        },
        now,
    )
}

/// How long the loading screen shows the final figures before the conversation.
pub const LOADED_SHOWN: Duration = Duration::from_millis(1500);

/// Applies one action at time `now`; returns what the event loop must do.
pub fn update(app: &mut App, action: Action, now: Instant) -> Vec<Effect> {
    let mut effects = Vec::new();
    match action {
        Action::Key(k) if k.kind != KeyEventKind::Release => {
            app.last_input = now;
            match app.screen {
                Screen::Help => app.screen = Screen::Chat,
                Screen::Locked => app.lock_key(k, &mut effects),
                Screen::Chat => app.chat_key(k, &mut effects),
                Screen::Loading => app.loading_key(k, &mut effects),
                Screen::Models => app.picker_key(k, &mut effects),
                Screen::Settings => app.settings_key(k, &mut effects),
                Screen::Export => app.export_key(k, &mut effects),
                Screen::Attach => app.attach_key(k, &mut effects),
                Screen::Sources => app.screen = Screen::Chat,
            }
        }
        Action::Key(_) => {}
        Action::Scroll(n) => {
            let up = i64::from(app.scroll_up) + i64::from(n);
            app.scroll_up = u16::try_from(up.max(0)).unwrap_or(u16::MAX);
        }
        Action::Trimmed(n) => {
            // Before the answer's (empty) turn, so the notice reads above it.
            let at = app.turns.len().saturating_sub(1);
            app.turns.insert(
                at,
                Turn {
                    role: Role::Notice,
                    text: Zeroizing::new(format!(
                        "the conversation is longer than the model's context ({} tokens): its \
                         {n} oldest message(s) were left out of this question (the system \
                         prompt and attached documents are kept)",
                        app.session.context
                    )),
                },
            );
        }
        Action::Token(t) => {
            if let Some(last) = app.turns.last_mut().filter(|t| t.role == Role::Assistant) {
                last.text.push_str(&t);
            }
        }
        Action::Done {
            tokens,
            tokens_per_s,
            stop,
        } => {
            let stopped = app.generating.take().is_some_and(|g| g.stopping);
            app.last_tps = Some(tokens_per_s);
            app.context_used = tokens;
            if stopped || stop == StopReason::Canceled {
                app.turns.push(Turn {
                    role: Role::Notice,
                    text: Zeroizing::new("stopped: the answer so far is kept".to_owned()),
                });
            } else if stop == StopReason::ContextFull {
                app.turns.push(Turn {
                    role: Role::Notice,
                    text: Zeroizing::new(
                        "the conversation filled the model's context: start a new one (Ctrl-N)"
                            .to_owned(),
                    ),
                });
            }
        }
        Action::EngineError(e) => {
            app.generating = None;
            app.turns.push(Turn {
                role: Role::Notice,
                text: Zeroizing::new(format!("error: {e}")),
            });
        }
        Action::Tick => {
            if app.screen != Screen::Locked && app.idle_left(now).is_zero() {
                app.lock(&mut effects);
            }
            let shown = app
                .loading
                .as_ref()
                .and_then(|l| l.done.as_ref())
                .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= LOADED_SHOWN);
            if app.screen == Screen::Loading && shown {
                app.screen = Screen::Chat;
            }
        }
        Action::LoadStarted {
            spec,
            model,
            marking,
        } => {
            app.current_spec = spec;
            app.session.model.clone_from(&model);
            app.session.marking = marking;
            app.loading = Some(Loading {
                model,
                stages: [0.0; 3],
                done: None,
                error: None,
            });
            if app.screen != Screen::Locked {
                app.screen = Screen::Loading;
            }
        }
        Action::LoadProgress(i, f) => {
            if let Some(x) = app.loading.as_mut().and_then(|l| l.stages.get_mut(i)) {
                *x = f.clamp(0.0, 1.0);
            }
        }
        Action::Loaded { context, figures } => {
            app.session.context = context;
            app.session.memory_locked = figures.memory_locked;
            app.context_used = 0;
            if let Some(l) = &mut app.loading {
                l.stages = [1.0; 3];
                let [verify, decrypt, build] = figures.seconds;
                app.turns.push(Turn {
                    role: Role::Notice,
                    text: Zeroizing::new(format!(
                        "{} loaded: {:.1} MB in {:.2} s (verify {:.2} s, decrypt {:.2} s, build {:.2} s); memory locked: {}",
                        l.model,
                        figures.bytes as f64 / 1e6,
                        verify + decrypt + build,
                        verify,
                        decrypt,
                        build,
                        if figures.memory_locked { "yes" } else { "NO" },
                    )),
                });
                l.done = Some((figures, now));
            }
        }
        Action::LoadFailed(e) => {
            if let Some(l) = &mut app.loading {
                l.error = Some(e);
            }
        }
        Action::Models(Ok(list)) => {
            app.picker_pos = list
                .iter()
                .position(|m| m.spec == app.current_spec)
                .unwrap_or(0);
            app.models = list;
        }
        Action::Models(Err(e)) => app.picker_error = Some(e),
        Action::Exported(Ok(path)) => {
            app.export_path = Zeroizing::new(String::new());
            app.screen = Screen::Chat;
            app.turns.push(Turn {
                role: Role::Notice,
                text: Zeroizing::new(format!("exported to {path}")),
            });
        }
        Action::Exported(Err(e)) => app.export_error = Some(e),
        Action::DocFiles(Ok(files)) => {
            if files.is_empty() {
                app.doc_error = Some(
                    "the documents directory holds no .txt, .md, .pdf, .odt or .docx file".into(),
                );
            }
            app.doc_files = files;
        }
        Action::DocFiles(Err(e)) => app.doc_error = Some(e),
        Action::AttachStarted(name) => {
            app.turns.push(Turn {
                role: Role::Notice,
                text: Zeroizing::new(format!("reading {name}…")),
            });
            app.attaching = Some(name);
            if app.screen == Screen::Attach {
                app.screen = Screen::Chat;
            }
        }
        Action::Attached(Ok((d, marking))) => {
            app.attaching = None;
            let raised = marking != app.session.marking;
            app.turns.push(Turn {
                role: Role::Notice,
                text: Zeroizing::new(format!(
                    "attached [{}] {} ({}, {:.1} KB, {} tokens, {} passage(s)){}",
                    app.docs.len() + 1,
                    d.name,
                    d.marking,
                    d.bytes as f64 / 1e3,
                    d.tokens,
                    d.passages,
                    if raised {
                        format!(": this session is now marked {marking}")
                    } else {
                        String::new()
                    }
                )),
            });
            app.session.marking = marking;
            app.docs.push(d);
            if app.screen == Screen::Attach {
                app.screen = Screen::Chat;
            }
        }
        Action::Attached(Err(e)) => {
            app.attaching = None;
            if app.screen == Screen::Attach {
                app.doc_error = Some(e.clone());
            }
            app.turns.push(Turn {
                role: Role::Notice,
                text: Zeroizing::new(format!("not attached: {e}")),
            });
        }
        Action::Detached(i) => {
            if i < app.docs.len() {
                let d = app.docs.remove(i);
                app.turns.push(Turn {
                    role: Role::Notice,
                    text: Zeroizing::new(format!(
                        "detached {} (its text is wiped; the session keeps its marking {})",
                        d.name, app.session.marking
                    )),
                });
            }
        }
        Action::DetachedAll => {
            app.docs.clear();
            app.attaching = None;
        }
        Action::Sources(s) => app.sources = s,
        Action::Digest(d) => app.session.digest = d,
        Action::UnlockResult(Ok(())) => {
            app.screen = app.home();
            app.unlock_error = None;
            app.last_input = now;
            effects.push(Effect::Audit(Event::TuiUnlock));
        }
        Action::UnlockResult(Err(e)) => {
            app.unlock_error = Some(e);
            effects.push(Effect::Audit(Event::TuiUnlockFailed));
        }
    }
    effects
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(protected: bool) -> Session {
        Session {
            marking: "SECRET".into(),
            model: "smollm2 v1".into(),
            device: "cpu".into(),
            context: 4096,
            memory_locked: true,
            unlock: if protected {
                Unlock::ApplianceKey
            } else {
                Unlock::Nothing
            },
            banner: None,
            digest: "ab".repeat(48),
        }
    }

    fn settings() -> Settings {
        Settings {
            system: Zeroizing::new(String::new()),
            temperature: 0.8,
            top_p: 0.95,
            max_tokens: 256,
            seed: None,
        }
    }

    fn new_app(protected: bool, t0: Instant) -> App {
        App::new(
            session(protected),
            settings(),
            LockPolicy {
                idle: Duration::from_secs(300),
                keep_conversation: false,
            },
            t0,
        )
    }

    fn key(code: KeyCode) -> Action {
        Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn ctrl(c: char) -> Action {
        Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
    }

    fn typed(app: &mut App, text: &str, now: Instant) {
        for c in text.chars() {
            assert!(update(app, key(KeyCode::Char(c)), now).is_empty());
        }
    }

    #[test]
    fn enter_sends_the_conversation_and_tokens_stream_into_the_answer() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        typed(&mut app, "hello", t0);
        let fx = update(&mut app, key(KeyCode::Enter), t0);
        assert_eq!(
            fx,
            vec![Effect::Submit(vec![("user".into(), "hello".into())])]
        );
        assert!(app.input.is_empty() && app.generating.is_some());
        update(&mut app, Action::Token("Hi".into()), t0);
        update(&mut app, Action::Token(" there".into()), t0);
        assert_eq!(app.turns[1].text.as_str(), "Hi there");
        // A second Enter while answering sends nothing.
        typed(&mut app, "more", t0);
        assert!(update(&mut app, key(KeyCode::Enter), t0).is_empty());
        let done = Action::Done {
            tokens: 12,
            tokens_per_s: 50.0,
            stop: StopReason::Eos,
        };
        assert!(update(&mut app, done, t0).is_empty());
        assert!(app.generating.is_none());
        assert_eq!((app.context_used, app.last_tps), (12, Some(50.0)));
        // The next message carries the whole conversation.
        let fx = update(&mut app, key(KeyCode::Enter), t0);
        assert_eq!(
            fx,
            vec![Effect::Submit(vec![
                ("user".into(), "hello".into()),
                ("assistant".into(), "Hi there".into()),
                ("user".into(), "more".into()),
            ])]
        );
    }

    #[test]
    fn alt_enter_adds_a_line_and_up_recalls_history() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        typed(&mut app, "a", t0);
        update(
            &mut app,
            Action::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT)),
            t0,
        );
        typed(&mut app, "b", t0);
        assert_eq!(app.input.lines(), ["a", "b"]);
        update(&mut app, key(KeyCode::Enter), t0);
        update(
            &mut app,
            Action::Done {
                tokens: 3,
                tokens_per_s: 1.0,
                stop: StopReason::Eos,
            },
            t0,
        );
        update(&mut app, key(KeyCode::Up), t0);
        assert_eq!(app.input.lines(), ["a", "b"]);
        update(&mut app, key(KeyCode::Down), t0);
        assert!(app.input.is_empty());
    }

    #[test]
    fn esc_and_ctrl_c_stop_an_answer_and_keep_it_then_ctrl_c_twice_quits() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        typed(&mut app, "q", t0);
        update(&mut app, key(KeyCode::Enter), t0);
        update(&mut app, Action::Token("partial".into()), t0);
        assert_eq!(
            update(&mut app, key(KeyCode::Esc), t0),
            vec![Effect::Cancel]
        );
        assert_eq!(update(&mut app, ctrl('c'), t0), vec![Effect::Cancel]);
        update(
            &mut app,
            Action::Done {
                tokens: 5,
                tokens_per_s: 9.0,
                stop: StopReason::Canceled,
            },
            t0,
        );
        assert_eq!(app.turns[1].text.as_str(), "partial");
        assert_eq!(app.turns[2].role, Role::Notice);
        // Nothing running: the first Ctrl-C arms, the second quits; another key disarms.
        assert!(update(&mut app, ctrl('c'), t0).is_empty());
        typed(&mut app, "x", t0);
        assert!(update(&mut app, ctrl('c'), t0).is_empty());
        assert_eq!(update(&mut app, ctrl('c'), t0), vec![Effect::Quit]);
        assert_eq!(update(&mut app, ctrl('q'), t0), vec![Effect::Quit]);
    }

    #[test]
    fn idle_time_locks_and_wipes_and_unlock_needs_the_passphrase() {
        let t0 = Instant::now();
        let mut app = new_app(true, t0);
        typed(&mut app, "secret question", t0);
        update(&mut app, key(KeyCode::Enter), t0);
        update(&mut app, Action::Token("answer".into()), t0);
        assert!(update(&mut app, Action::Tick, t0 + Duration::from_secs(299)).is_empty());
        // Five minutes without input: the answer is cancelled, all is wiped, the lock audited.
        let fx = update(&mut app, Action::Tick, t0 + Duration::from_secs(300));
        assert_eq!(fx, vec![Effect::Cancel, Effect::Audit(Event::TuiLock)]);
        assert_eq!(app.screen, Screen::Locked);
        assert!(app.turns.is_empty() && app.history.is_empty() && app.input.is_empty());
        // Keys go to the passphrase entry, not the editor; Enter asks for a check.
        typed(&mut app, "pw", t0);
        update(&mut app, key(KeyCode::Backspace), t0);
        let fx = update(&mut app, key(KeyCode::Enter), t0);
        assert_eq!(
            fx,
            vec![Effect::CheckPassphrase(Zeroizing::new("p".into()))]
        );
        let fx = update(
            &mut app,
            Action::UnlockResult(Err("wrong passphrase".into())),
            t0,
        );
        assert_eq!(fx, vec![Effect::Audit(Event::TuiUnlockFailed)]);
        assert_eq!(app.screen, Screen::Locked);
        let fx = update(&mut app, Action::UnlockResult(Ok(())), t0);
        assert_eq!(fx, vec![Effect::Audit(Event::TuiUnlock)]);
        assert_eq!(app.screen, Screen::Chat);
    }

    /// Issue 17: the engine reports a cancelled answer as `canceled`; the notice was keyed on
    /// "cancelled", so an answer stopped by the idle lock (not by Esc) showed no notice.
    #[test]
    fn issue_17_an_answer_stopped_by_the_idle_lock_says_it_was_stopped() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        app.lock.keep_conversation = true;
        typed(&mut app, "question", t0);
        update(&mut app, key(KeyCode::Enter), t0);
        update(&mut app, Action::Token("half an ans".into()), t0);
        let fx = update(&mut app, Action::Tick, t0 + Duration::from_secs(300));
        assert_eq!(fx, vec![Effect::Cancel, Effect::Audit(Event::TuiLock)]);
        // What the engine sends after the cancel.
        update(
            &mut app,
            Action::Done {
                tokens: 7,
                tokens_per_s: 3.0,
                stop: StopReason::Canceled,
            },
            t0,
        );
        let last = app.turns.last().unwrap();
        assert_eq!(last.role, Role::Notice);
        assert_eq!(last.text.as_str(), "stopped: the answer so far is kept");
        assert_eq!(app.turns[1].text.as_str(), "half an ans");
    }

    #[test]
    fn effects_never_debug_print_a_passphrase_or_the_conversation() {
        let e = Effect::CheckPassphrase(Zeroizing::new("hunter22-secret".into()));
        assert!(!format!("{e:?}").contains("hunter22"));
        let e = Effect::Export {
            path: Zeroizing::new("/tmp/out-secret.txt".into()),
            text: Zeroizing::new("the conversation".into()),
        };
        let d = format!("{e:?}");
        assert!(
            !d.contains("out-secret") && !d.contains("conversation"),
            "{d}"
        );
        let e = Effect::Submit(vec![("user".into(), "classified question".into())]);
        assert!(!format!("{e:?}").contains("classified"));
        let t = Turn {
            role: Role::User,
            text: Zeroizing::new("classified question".into()),
        };
        assert!(!format!("{t:?}").contains("classified"));
    }

    #[test]
    fn ctrl_l_locks_at_once_and_keep_on_lock_keeps_the_conversation() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        app.lock.keep_conversation = true;
        typed(&mut app, "kept", t0);
        update(&mut app, key(KeyCode::Enter), t0);
        update(
            &mut app,
            Action::Done {
                tokens: 1,
                tokens_per_s: 1.0,
                stop: StopReason::Eos,
            },
            t0,
        );
        assert_eq!(
            update(&mut app, ctrl('l'), t0),
            vec![Effect::Audit(Event::TuiLock)]
        );
        assert_eq!(app.turns.len(), 2);
        // Ctrl-N wipes the conversation.
        update(&mut app, Action::UnlockResult(Ok(())), t0);
        update(&mut app, ctrl('n'), t0);
        assert!(app.turns.is_empty());
    }

    #[test]
    fn help_opens_on_question_mark_and_closes_on_any_key_and_scrolling_is_bounded() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        update(&mut app, key(KeyCode::Char('?')), t0);
        assert_eq!(app.screen, Screen::Help);
        update(&mut app, key(KeyCode::Char('z')), t0);
        assert_eq!(app.screen, Screen::Chat);
        assert!(app.input.is_empty(), "the closing key is not typed");
        update(&mut app, Action::Scroll(3), t0);
        update(&mut app, key(KeyCode::PageUp), t0);
        assert_eq!(app.scroll_up, 13);
        update(&mut app, Action::Scroll(-100), t0);
        assert_eq!(app.scroll_up, 0);
        update(&mut app, key(KeyCode::Home), t0);
        assert_eq!(app.scroll_up, u16::MAX);
        update(&mut app, key(KeyCode::End), t0);
        assert_eq!(app.scroll_up, 0);
    }

    fn press(app: &mut App, code: KeyCode, t: Instant) -> Vec<Effect> {
        update(app, key(code), t)
    }

    #[test]
    fn settings_are_edited_validated_and_applied() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        press(&mut app, KeyCode::F(3), t0);
        assert_eq!(app.screen, Screen::Settings);
        typed(&mut app, "Be brief.", t0);
        press(&mut app, KeyCode::Down, t0);
        update(&mut app, ctrl('u'), t0);
        typed(&mut app, "-1", t0);
        // An out-of-range temperature is refused with a reason and nothing changes.
        assert!(press(&mut app, KeyCode::Enter, t0).is_empty());
        let err = app.form.as_ref().unwrap().error.clone().unwrap();
        assert!(err.contains("temperature"), "{err}");
        assert_eq!(app.settings, settings());
        press(&mut app, KeyCode::Backspace, t0);
        press(&mut app, KeyCode::Backspace, t0);
        typed(&mut app, "0", t0);
        // Tab wraps round the fields: Up from the first goes to the seed.
        press(&mut app, KeyCode::Up, t0);
        press(&mut app, KeyCode::Up, t0);
        assert_eq!(app.form.as_ref().unwrap().pos, 4);
        update(&mut app, ctrl('u'), t0);
        typed(&mut app, "42", t0);
        assert_eq!(
            press(&mut app, KeyCode::Enter, t0),
            vec![Effect::SettingsChanged]
        );
        assert_eq!(app.screen, Screen::Chat);
        assert_eq!(app.settings.system.as_str(), "Be brief.");
        assert_eq!(
            (app.settings.temperature, app.settings.seed),
            (0.0, Some(42))
        );
        // Esc leaves without changing anything.
        press(&mut app, KeyCode::F(3), t0);
        typed(&mut app, "ignored", t0);
        press(&mut app, KeyCode::Esc, t0);
        assert_eq!(app.settings.system.as_str(), "Be brief.");
    }

    fn loaded(app: &mut App, spec: &str, t: Instant) {
        update(
            app,
            Action::LoadStarted {
                spec: spec.into(),
                model: spec.replace('@', " v"),
                marking: "RESTRICTED".into(),
            },
            t,
        );
        update(app, Action::LoadProgress(1, 0.5), t);
        update(
            app,
            Action::Loaded {
                context: 2048,
                figures: LoadFigures {
                    bytes: 98_000_000,
                    seconds: [0.01, 0.1, 0.3],
                    memory_locked: true,
                },
            },
            t,
        );
    }

    #[test]
    fn loading_shows_stages_then_figures_then_the_chat() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        update(
            &mut app,
            Action::LoadStarted {
                spec: "a@1".into(),
                model: "a v1".into(),
                marking: "RESTRICTED".into(),
            },
            t0,
        );
        assert_eq!(app.screen, Screen::Loading);
        assert_eq!(app.session.marking, "RESTRICTED");
        update(&mut app, Action::LoadProgress(1, 0.25), t0);
        update(&mut app, Action::LoadProgress(9, 0.5), t0);
        assert_eq!(app.loading.as_ref().unwrap().stages, [0.0, 0.25, 0.0]);
        loaded(&mut app, "a@1", t0);
        assert_eq!(app.session.context, 2048);
        let notice = app.turns[0].text.as_str();
        assert!(
            notice.contains("98.0 MB in 0.41 s") && notice.contains("memory locked: yes"),
            "{notice}"
        );
        update(&mut app, Action::Tick, t0 + Duration::from_millis(100));
        assert_eq!(app.screen, Screen::Loading, "the figures stay a moment");
        update(&mut app, Action::Tick, t0 + LOADED_SHOWN);
        assert_eq!(app.screen, Screen::Chat);
    }

    #[test]
    fn a_failed_load_offers_the_picker_and_switching_wipes_the_conversation() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        loaded(&mut app, "a@1", t0);
        press(&mut app, KeyCode::Char('x'), t0);
        typed(&mut app, "hello", t0);
        press(&mut app, KeyCode::Enter, t0);
        update(&mut app, Action::Token("partial".into()), t0);
        assert_eq!(press(&mut app, KeyCode::F(2), t0), vec![Effect::ListModels]);
        assert_eq!(app.screen, Screen::Models);
        let entry = |spec: &str| ModelEntry {
            spec: spec.into(),
            details: "RESTRICTED".into(),
        };
        update(
            &mut app,
            Action::Models(Ok(vec![entry("a@1"), entry("b@2")])),
            t0,
        );
        assert_eq!(app.picker_pos, 0, "the loaded model is selected");
        // Enter on the loaded model just closes the picker.
        assert!(press(&mut app, KeyCode::Enter, t0).is_empty());
        assert_eq!(app.screen, Screen::Chat);
        press(&mut app, KeyCode::F(2), t0);
        update(
            &mut app,
            Action::Models(Ok(vec![entry("a@1"), entry("b@2")])),
            t0,
        );
        press(&mut app, KeyCode::Down, t0);
        press(&mut app, KeyCode::Down, t0);
        assert_eq!(app.picker_pos, 1, "bounded");
        // Switching stops the answer and wipes the conversation before the old model goes.
        assert_eq!(
            press(&mut app, KeyCode::Enter, t0),
            vec![Effect::Cancel, Effect::SwitchModel("b@2".into())]
        );
        assert!(app.turns.is_empty() && app.history.is_empty() && app.generating.is_none());
        assert_eq!(app.screen, Screen::Loading);
        update(
            &mut app,
            Action::LoadStarted {
                spec: "b@2".into(),
                model: "b v2".into(),
                marking: "SECRET".into(),
            },
            t0,
        );
        update(&mut app, Action::LoadFailed("bad signature".into()), t0);
        // Any key but F2 or Ctrl-Q stays on the error; F2 offers the picker again.
        assert!(press(&mut app, KeyCode::Char('z'), t0).is_empty());
        assert_eq!(app.screen, Screen::Loading);
        assert_eq!(press(&mut app, KeyCode::F(2), t0), vec![Effect::ListModels]);
        update(
            &mut app,
            Action::Models(Err("no model is installed".into())),
            t0,
        );
        assert_eq!(app.picker_error.as_deref(), Some("no model is installed"));
        press(&mut app, KeyCode::Esc, t0);
        assert_eq!(app.screen, Screen::Loading);
    }

    /// Issue 18: an export holds the model's escape sequences as visible escapes, so printing
    /// the file cannot erase or rewrite its marking lines.
    #[test]
    fn an_export_holds_no_escape_sequence() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        typed(&mut app, "question", t0);
        press(&mut app, KeyCode::Enter, t0);
        update(
            &mut app,
            Action::Token("ok\u{1b}[1A\u{1b}[2K\u{1b}]0;t\u{7}\u{9b}2J\u{202e}x".into()),
            t0,
        );
        update(
            &mut app,
            Action::Done {
                tokens: 4,
                tokens_per_s: 1.0,
                stop: StopReason::Eos,
            },
            t0,
        );
        let text = app.export_text();
        assert!(!text.chars().any(crate::text::needs_escape), "{text:?}");
        assert!(
            text.contains("ok\\x1b[1A\\x1b[2K\\x1b]0;t\\x07\\x9b2J\\u{202e}x"),
            "{text:?}"
        );
        assert_eq!(text.lines().last(), Some("SECRET"));
    }

    #[test]
    fn export_carries_the_marking_top_and_bottom_and_reports_the_result() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        // Nothing to export yet.
        press(&mut app, KeyCode::Char('e'), t0);
        assert_eq!(app.screen, Screen::Export);
        typed(&mut app, "out.md", t0);
        assert!(press(&mut app, KeyCode::Enter, t0).is_empty());
        assert!(app.export_error.as_deref().unwrap().contains("empty"));
        press(&mut app, KeyCode::Esc, t0);
        typed(&mut app, "question", t0);
        press(&mut app, KeyCode::Enter, t0);
        update(&mut app, Action::Token("answer".into()), t0);
        update(
            &mut app,
            Action::Done {
                tokens: 4,
                tokens_per_s: 1.0,
                stop: StopReason::Eos,
            },
            t0,
        );
        // `e` in a non-empty editor is typed, F4 always exports.
        typed(&mut app, "xe", t0);
        assert_eq!(
            (app.screen, app.input.lines()),
            (Screen::Chat, &["xe".to_owned()][..])
        );
        press(&mut app, KeyCode::F(4), t0);
        assert_eq!(app.screen, Screen::Export);
        press(&mut app, KeyCode::Backspace, t0);
        typed(&mut app, "d", t0);
        let fx = press(&mut app, KeyCode::Enter, t0);
        let [Effect::Export { path, text }] = fx.as_slice() else {
            panic!("{fx:?}")
        };
        assert_eq!(path.as_str(), "out.md");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"SECRET"));
        assert_eq!(lines.last(), Some(&"SECRET"));
        assert!(text.contains("## You\n\nquestion") && text.contains("## Model\n\nanswer"));
        update(&mut app, Action::Exported(Err("exists".into())), t0);
        assert_eq!(app.screen, Screen::Export);
        update(&mut app, Action::Exported(Ok("/x/out.md".into())), t0);
        assert_eq!(app.screen, Screen::Chat);
        assert!(
            app.turns
                .last()
                .unwrap()
                .text
                .contains("exported to /x/out.md")
        );
    }

    fn doc(name: &str, marking: &str) -> DocEntry {
        DocEntry {
            name: name.into(),
            sha384: "cd".repeat(48),
            marking: marking.into(),
            bytes: 2048,
            tokens: 512,
            passages: 3,
        }
    }

    /// Issue 21: `/commands` and F5/F6 attach, detach and show sources; none reaches the
    /// model or the history; the session's marking rises with a document and stays up.
    #[test]
    fn documents_are_attached_and_detached_by_key_and_command() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        app.session.marking = "DIFFUSION RESTREINTE".into();
        typed(&mut app, "/attach memo.md", t0);
        assert_eq!(
            press(&mut app, KeyCode::Enter, t0),
            vec![Effect::Attach("memo.md".into())]
        );
        assert!(app.history.is_empty() && app.input.is_empty());
        for (cmd, want) in [
            ("/detach 1", "/detach N: N is a document's number, 1 to 0"),
            ("/bogus", "unknown command /bogus"),
        ] {
            typed(&mut app, cmd, t0);
            assert!(press(&mut app, KeyCode::Enter, t0).is_empty());
            let last = app.turns.last().unwrap();
            assert_eq!(last.role, Role::Notice);
            assert!(last.text.contains(want), "{}", last.text.as_str());
        }
        // F5: the picker lists the documents directory; Enter attaches the chosen file.
        assert_eq!(
            press(&mut app, KeyCode::F(5), t0),
            vec![Effect::ListDocuments]
        );
        assert_eq!(app.screen, Screen::Attach);
        update(
            &mut app,
            Action::DocFiles(Ok(vec!["a.md".into(), "b.pdf".into()])),
            t0,
        );
        press(&mut app, KeyCode::Down, t0);
        assert_eq!(
            press(&mut app, KeyCode::Enter, t0),
            vec![Effect::Attach("b.pdf".into())]
        );
        // It is read on its own thread: the screen is back, and says so.
        update(&mut app, Action::AttachStarted("b.pdf".into()), t0);
        assert_eq!(
            (app.screen, app.attaching.as_deref()),
            (Screen::Chat, Some("b.pdf"))
        );
        assert_eq!(app.turns.last().unwrap().text.as_str(), "reading b.pdf…");
        update(
            &mut app,
            Action::Attached(Ok((doc("b.pdf", "SECRET"), "SECRET".into()))),
            t0,
        );
        assert_eq!(app.attaching, None);
        assert_eq!((app.screen, app.docs.len()), (Screen::Chat, 1));
        assert_eq!(app.session.marking, "SECRET");
        let notice = app.turns.last().unwrap().text.to_string();
        assert!(
            notice.contains("attached [1] b.pdf (SECRET") && notice.contains("now marked SECRET"),
            "{notice}"
        );
        // A refusal is shown, nothing attached.
        update(
            &mut app,
            Action::Attached(Err("document c.txt: x".into())),
            t0,
        );
        assert!(
            app.turns
                .last()
                .unwrap()
                .text
                .contains("not attached: document c.txt")
        );
        assert_eq!(app.docs.len(), 1);
        // Detaching wipes the document, never the session's marking.
        typed(&mut app, "/detach 1", t0);
        assert_eq!(press(&mut app, KeyCode::Enter, t0), vec![Effect::Detach(0)]);
        update(&mut app, Action::Detached(0), t0);
        assert!(app.docs.is_empty());
        assert_eq!(app.session.marking, "SECRET");
        // F6 and /sources open the sources panel; any key closes it.
        press(&mut app, KeyCode::F(6), t0);
        assert_eq!(app.screen, Screen::Sources);
        press(&mut app, KeyCode::Char('x'), t0);
        assert_eq!(app.screen, Screen::Chat);
        // Locking (which wipes the conversation) detaches every document.
        update(
            &mut app,
            Action::Attached(Ok((doc("d.md", "SECRET"), "SECRET".into()))),
            t0,
        );
        let fx = update(&mut app, ctrl('l'), t0);
        assert!(fx.contains(&Effect::DetachAll), "{fx:?}");
    }

    /// Issue 21: a conversation longer than the context says so, above the answer.
    #[test]
    fn a_trimmed_conversation_is_announced_above_the_answer() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        typed(&mut app, "question", t0);
        press(&mut app, KeyCode::Enter, t0);
        update(&mut app, Action::Trimmed(4), t0);
        update(&mut app, Action::Token("answer".into()), t0);
        let n = app.turns.len();
        assert_eq!(app.turns[n - 2].role, Role::Notice);
        assert!(
            app.turns[n - 2]
                .text
                .contains("its 4 oldest message(s) were left out")
        );
        assert_eq!(app.turns[n - 1].text.as_str(), "answer");
    }

    /// Issue 21: an export says it is machine-generated and carries its provenance: model,
    /// bundle digest, session marking, documents and their hashes, time, and the sources.
    #[test]
    fn an_export_carries_its_provenance_documents_and_sources() {
        let t0 = Instant::now();
        let mut app = new_app(false, t0);
        update(
            &mut app,
            Action::Attached(Ok((
                doc("memo.md", "SECRET"),
                "SECRET SPÉCIAL FRANCE".into(),
            ))),
            t0,
        );
        typed(&mut app, "question", t0);
        press(&mut app, KeyCode::Enter, t0);
        update(
            &mut app,
            Action::Sources(vec![SourceEntry {
                n: 1,
                document: "memo.md".into(),
                locator: "§ Objet, l. 3-5".into(),
                text: Zeroizing::new("The passage.".into()),
            }]),
            t0,
        );
        update(&mut app, Action::Token("It says [1].".into()), t0);
        let when = std::time::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        let text = app.export_text_at(when);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"SECRET SPÉCIAL FRANCE"));
        assert_eq!(lines.last(), Some(&"SECRET SPÉCIAL FRANCE"));
        for want in [
            "MACHINE-GENERATED: the Model's answers were written by a language model",
            "- model: smollm2 v1",
            &format!(
                "- bundle (SHA-384 of the signed manifest): {}",
                "ab".repeat(48)
            ),
            "- session marking: SECRET SPÉCIAL FRANCE",
            "- exported: 2026-11-30T",
            &format!(
                "- document 1: memo.md (SECRET), 2048 bytes, SHA-384 {}",
                "cd".repeat(48)
            ),
            "## Sources of the last answer\n\n[1] memo.md, § Objet, l. 3-5\n\nThe passage.",
        ] {
            assert!(text.contains(want), "{want:?} not in:\n{}", text.as_str());
        }
    }
}
