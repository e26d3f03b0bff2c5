//! The terminal UI's model and its pure `update`: every key press, engine event and clock tick
//! becomes an [`Action`]; [`update`] changes the [`App`] and returns the [`Effect`]s for the
//! event loop to carry out (submit to the engine, cancel, audit, check a passphrase, quit).
//! Nothing here touches the terminal, the engine or the disk, so it is unit-tested directly.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_textarea::TextArea;
use zeroize::Zeroizing;

use crate::engine::Message;

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

/// One turn of the conversation. Its text is wiped when dropped.
#[derive(Debug)]
pub struct Turn {
    /// Who.
    pub role: Role,
    /// What.
    pub text: Zeroizing<String>,
}

/// Which screen is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// The conversation.
    Chat,
    /// The key bindings over the conversation.
    Help,
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
    /// Whether unlocking needs a passphrase (the appliance key is protected).
    pub passphrase_protected: bool,
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
    /// Lock after this long without input.
    pub idle_limit: Duration,
    /// Keep the conversation in memory while locked.
    pub keep_on_lock: bool,
    /// Last key press.
    pub last_input: Instant,
    /// A first Ctrl-C with nothing to stop: the next one quits.
    pub quit_armed: bool,
}

/// An input to [`update`].
#[derive(Debug)]
pub enum Action {
    /// A key press.
    Key(KeyEvent),
    /// Mouse wheel or PgUp/PgDn-like scrolling by this many lines (positive = up).
    Scroll(i32),
    /// A piece of the answer.
    Token(String),
    /// The answer is complete.
    Done {
        /// Prompt + generated tokens.
        tokens: usize,
        /// Generation speed.
        tokens_per_s: f64,
        /// Why it stopped ("eos", "length", "cancelled", "context_full").
        stop: String,
    },
    /// The engine failed.
    EngineError(String),
    /// The clock (idle lock).
    Tick,
    /// The passphrase check finished.
    UnlockResult(Result<(), String>),
}

/// What the event loop must do after [`update`].
#[derive(Debug, PartialEq, Eq)]
pub enum Effect {
    /// Send the conversation to the engine.
    Submit(Vec<(String, String)>),
    /// Stop the running generation.
    Cancel,
    /// Record an audit event.
    Audit(&'static str),
    /// Check this passphrase against the appliance key.
    CheckPassphrase(Zeroizing<String>),
    /// Leave the UI.
    Quit,
}

/// The key bindings, as the help overlay lists them.
pub const BINDINGS: &[(&str, &str)] = &[
    ("Enter", "send the message"),
    ("Alt+Enter / Shift+Enter", "new line in the message"),
    ("Up / Down", "recall earlier messages"),
    ("Esc / Ctrl-C", "stop the answer, keep what it wrote"),
    ("Ctrl-C twice / Ctrl-Q", "quit (the conversation is wiped)"),
    ("PgUp / PgDn", "scroll the conversation"),
    ("Home / End", "top / follow the answer"),
    ("Ctrl-N", "new conversation (the old one is wiped)"),
    ("Ctrl-L", "lock now"),
    ("? / F1", "this help (any key closes it)"),
];

impl App {
    /// A new session with an empty conversation.
    pub fn new(session: Session, idle_limit: Duration, now: Instant) -> Self {
        Self {
            session,
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
            idle_limit,
            keep_on_lock: false,
            last_input: now,
            quit_armed: false,
        }
    }

    /// Time left before the idle lock.
    pub fn idle_left(&self, now: Instant) -> Duration {
        self.idle_limit
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
    }

    fn lock(&mut self, effects: &mut Vec<Effect>) {
        if self.screen == Screen::Locked {
            return;
        }
        if self.generating.is_some() {
            effects.push(Effect::Cancel);
        }
        if !self.keep_on_lock {
            self.wipe();
        }
        self.screen = Screen::Locked;
        self.unlock_entry = Zeroizing::new(String::new());
        self.unlock_error = None;
        effects.push(Effect::Audit("tui_lock"));
    }

    fn send(&mut self, effects: &mut Vec<Effect>) {
        let text = Zeroizing::new(self.input.lines().join("\n"));
        if text.trim().is_empty() || self.generating.is_some() {
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
                    effects.push(Effect::Audit("tui_new_conversation"));
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
            }
        }
        Action::Key(_) => {}
        Action::Scroll(n) => {
            let up = i64::from(app.scroll_up) + i64::from(n);
            app.scroll_up = u16::try_from(up.max(0)).unwrap_or(u16::MAX);
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
            if stopped || stop == "cancelled" {
                app.turns.push(Turn {
                    role: Role::Notice,
                    text: Zeroizing::new("stopped: the answer so far is kept".to_owned()),
                });
            } else if stop == "context_full" {
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
        }
        Action::UnlockResult(Ok(())) => {
            app.screen = Screen::Chat;
            app.unlock_error = None;
            app.last_input = now;
            effects.push(Effect::Audit("tui_unlock"));
        }
        Action::UnlockResult(Err(e)) => {
            app.unlock_error = Some(e);
            effects.push(Effect::Audit("tui_unlock_failed"));
        }
    }
    effects
}

/// The conversation as engine messages, with the system prompt first.
pub fn to_messages(system: Option<&str>, conversation: &[(String, String)]) -> Vec<Message> {
    system
        .map(|s| Message::new("system", s))
        .into_iter()
        .chain(
            conversation
                .iter()
                .map(|(r, t)| Message::new(r, t.as_str())),
        )
        .collect()
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
            passphrase_protected: protected,
        }
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
        let mut app = App::new(session(false), Duration::from_secs(300), t0);
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
            stop: "eos".into(),
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
        let mut app = App::new(session(false), Duration::from_secs(300), t0);
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
                stop: "eos".into(),
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
        let mut app = App::new(session(false), Duration::from_secs(300), t0);
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
                stop: "cancelled".into(),
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
        let mut app = App::new(session(true), Duration::from_secs(300), t0);
        typed(&mut app, "secret question", t0);
        update(&mut app, key(KeyCode::Enter), t0);
        update(&mut app, Action::Token("answer".into()), t0);
        assert!(update(&mut app, Action::Tick, t0 + Duration::from_secs(299)).is_empty());
        // Five minutes without input: the answer is cancelled, all is wiped, the lock audited.
        let fx = update(&mut app, Action::Tick, t0 + Duration::from_secs(300));
        assert_eq!(fx, vec![Effect::Cancel, Effect::Audit("tui_lock")]);
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
        assert_eq!(fx, vec![Effect::Audit("tui_unlock_failed")]);
        assert_eq!(app.screen, Screen::Locked);
        let fx = update(&mut app, Action::UnlockResult(Ok(())), t0);
        assert_eq!(fx, vec![Effect::Audit("tui_unlock")]);
        assert_eq!(app.screen, Screen::Chat);
    }

    #[test]
    fn ctrl_l_locks_at_once_and_keep_on_lock_keeps_the_conversation() {
        let t0 = Instant::now();
        let mut app = App::new(session(false), Duration::from_secs(300), t0);
        app.keep_on_lock = true;
        typed(&mut app, "kept", t0);
        update(&mut app, key(KeyCode::Enter), t0);
        update(
            &mut app,
            Action::Done {
                tokens: 1,
                tokens_per_s: 1.0,
                stop: "eos".into(),
            },
            t0,
        );
        assert_eq!(
            update(&mut app, ctrl('l'), t0),
            vec![Effect::Audit("tui_lock")]
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
        let mut app = App::new(session(false), Duration::from_secs(300), t0);
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
}
