//! Drawing the [`App`]: classification banners top and bottom on every screen, the
//! conversation (word-wrapped, light markdown), the input editor, the status bar, and the help
//! and lock overlays. 16/256-colour only; works from 80x24 (and degrades below).
//!
//! # Security
//! Every text from outside (model output, model names and details, markings, error messages)
//! is drawn through `safe`, the output sanitiser, so a control, escape or bidi character is
//! shown as a visible escape; after drawing, `scrub` replaces any cell that still holds one
//! (the editor's own text included), so nothing the frame holds can drive the terminal. The
//! banners are drawn last, on their own rows, so no other widget can cover them
//! (`view::tests::model_output_cannot_spoof_hide_or_move_the_banners`).

use std::time::Instant;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph, Wrap};

use ratatui::buffer::Buffer;

use super::app::{App, BINDINGS, Role, SETTINGS, STAGES, Screen, Unlock};
use crate::text::{needs_escape, sanitize};

/// Text from outside as it may be drawn: sanitised, and a tab as four spaces.
fn safe(s: &str) -> String {
    sanitize(s).replace('\t', "    ")
}

/// Replaces every cell that holds a character [`needs_escape`] names (or a tab) with U+FFFD.
fn scrub(buf: &mut Buffer) {
    for cell in &mut buf.content {
        if cell.symbol().chars().any(|c| c == '\t' || needs_escape(c)) {
            cell.set_symbol("\u{fffd}");
        }
    }
}

/// Banner colours for a marking: (background, foreground).
pub fn marking_colors(marking: &str) -> (Color, Color) {
    let m = marking.to_uppercase();
    if m.contains("TOP SECRET") || m.contains("TRES SECRET") || m.contains("TRÈS SECRET") {
        (Color::Indexed(208), Color::Black)
    } else if m.contains("SECRET") {
        (Color::Red, Color::White)
    } else if m.contains("CONFIDENTI") {
        (Color::Blue, Color::White)
    } else if m.contains("RESTREINT") || m.contains("RESTRICTED") {
        (Color::Yellow, Color::Black)
    } else if m.contains("UNCLASSIFIED") || m.contains("NON PROTEGE") || m.contains("NON PROTÉGÉ")
    {
        (Color::Green, Color::Black)
    } else {
        (Color::White, Color::Black)
    }
}

fn banner(app: &App) -> Paragraph<'static> {
    let (bg, fg) = match app.session.banner {
        // A configured colour: dark text on light backgrounds, white on the others.
        Some(
            bg @ (Color::Green
            | Color::Yellow
            | Color::White
            | Color::Gray
            | Color::Cyan
            | Color::Indexed(208)),
        ) => (bg, Color::Black),
        Some(bg) => (bg, Color::White),
        None => marking_colors(&app.session.marking),
    };
    Paragraph::new(safe(&app.session.marking))
        .alignment(Alignment::Center)
        .style(Style::new().bg(bg).fg(fg).add_modifier(Modifier::BOLD))
}

/// Light markdown: fenced code blocks, headings, bullets, **bold** and `code` spans.
fn markdown(text: &str, base: Style, out: &mut Vec<Line<'static>>) {
    let text = safe(text);
    let mut in_code = false;
    for raw in text.split('\n') {
        if raw.trim_start().starts_with("```") {
            in_code = !in_code;
            out.push(Line::styled(
                raw.to_owned(),
                Style::new().fg(Color::DarkGray),
            ));
            continue;
        }
        if in_code {
            out.push(Line::styled(raw.to_owned(), Style::new().fg(Color::Cyan)));
            continue;
        }
        if let Some(h) = raw.strip_prefix("#") {
            out.push(Line::styled(
                h.trim_start_matches('#').trim().to_owned(),
                base.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            ));
            continue;
        }
        let (bullet, body) = match raw
            .trim_start()
            .strip_prefix("- ")
            .or_else(|| raw.trim_start().strip_prefix("* "))
        {
            Some(rest) => ("  • ", rest),
            None => ("", raw),
        };
        let mut spans = vec![Span::raw(bullet)];
        // Alternate plain / **bold** / `code` segments.
        let mut rest = body;
        while !rest.is_empty() {
            let bold = rest.find("**");
            let code = rest.find('`');
            match (bold, code) {
                (Some(b), c) if c.is_none_or(|c| b < c) => {
                    let (before, after) = rest.split_at(b);
                    spans.push(Span::styled(before.to_owned(), base));
                    let after = after.get(2..).unwrap_or_default();
                    let end = after.find("**").unwrap_or(after.len());
                    let (inner, tail) = after.split_at(end);
                    spans.push(Span::styled(
                        inner.to_owned(),
                        base.add_modifier(Modifier::BOLD),
                    ));
                    rest = tail.get(2..).unwrap_or_default();
                }
                (_, Some(c)) => {
                    let (before, after) = rest.split_at(c);
                    spans.push(Span::styled(before.to_owned(), base));
                    let after = after.get(1..).unwrap_or_default();
                    let end = after.find('`').unwrap_or(after.len());
                    let (inner, tail) = after.split_at(end);
                    spans.push(Span::styled(inner.to_owned(), Style::new().fg(Color::Cyan)));
                    rest = tail.get(1..).unwrap_or_default();
                }
                _ => {
                    spans.push(Span::styled(rest.to_owned(), base));
                    rest = "";
                }
            }
        }
        out.push(Line::from(spans));
    }
}

fn conversation(app: &App) -> Text<'static> {
    let mut lines = Vec::new();
    if app.turns.is_empty() {
        lines.push(Line::styled(
            "New conversation. Nothing is written to disk; Ctrl-L locks, ? lists the keys.",
            Style::new().fg(Color::DarkGray),
        ));
    }
    for t in &app.turns {
        let (label, style) = match t.role {
            Role::User => (
                "You",
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            ),
            Role::Assistant => (
                "Model",
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
            ),
            Role::Notice => ("rempart", Style::new().fg(Color::Magenta)),
        };
        lines.push(Line::styled(label, style));
        if t.role == Role::Notice {
            lines.push(Line::styled(safe(&t.text), Style::new().fg(Color::Magenta)));
        } else {
            markdown(&t.text, Style::new(), &mut lines);
        }
        lines.push(Line::raw(""));
    }
    if app.generating.is_some() {
        lines.push(Line::styled("▌", Style::new().fg(Color::Green)));
    }
    Text::from(lines)
}

fn status(app: &App, now: Instant) -> Line<'static> {
    let s = &app.session;
    let left = app.idle_left(now).as_secs();
    let tps = app
        .last_tps
        .map_or_else(|| "– tok/s".to_owned(), |t| format!("{t:.1} tok/s"));
    Line::from(vec![
        Span::styled(
            format!(" {} ", safe(&s.model)),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "│ lock {}:{:02} │ mlock {} │ ctx {}/{} │ {tps} │ {} │ ? help",
            left / 60,
            left % 60,
            if s.memory_locked { "yes" } else { "NO" },
            app.context_used,
            s.context,
            s.device,
        )),
    ])
    .style(Style::new().bg(Color::DarkGray).fg(Color::White))
}

/// The attached documents, one line above the message box: number, name, marking, size,
/// tokens.
fn documents_line(app: &App) -> Line<'static> {
    let mut spans = vec![Span::styled(
        " Documents ",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    for (i, d) in app.docs.iter().enumerate() {
        spans.push(Span::raw(format!(
            "│ [{}] {} · {} · {:.1} KB · {} tok ",
            i + 1,
            safe(&d.name),
            safe(&d.marking),
            d.bytes as f64 / 1e3,
            d.tokens
        )));
    }
    if let Some(name) = &app.attaching {
        spans.push(Span::styled(format!("│ reading {}… ", safe(name)), dim()));
    }
    spans.push(Span::styled("│ /detach N · F6 sources", dim()));
    Line::from(spans)
}

fn attach_picker(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut lines = Vec::new();
    if let Some(e) = &app.doc_error {
        lines.push(Line::styled(safe(e), Style::new().fg(Color::Red)));
    } else if app.doc_files.is_empty() {
        lines.push(Line::styled("listing the documents directory…", dim()));
    }
    for (i, f) in app.doc_files.iter().enumerate() {
        let chosen = i == app.doc_pos;
        let style = if chosen {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::new()
        };
        lines.push(Line::styled(
            format!("{} {}", if chosen { ">" } else { " " }, safe(f)),
            style,
        ));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Its marking is read from its first or last lines (else the configured default); \
         one above the accreditation is refused. Nothing is written to disk.",
        dim(),
    ));
    let text = Paragraph::new(lines).wrap(Wrap { trim: false });
    let h = u16::try_from(text.line_count(area.width.min(78).saturating_sub(2)))
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let inner = dialog(
        frame,
        area,
        78,
        h,
        " Attach a document (Enter attaches, Esc closes) ",
    );
    frame.render_widget(text, inner);
}

fn sources_panel(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut lines = Vec::new();
    if app.sources.is_empty() {
        lines.push(Line::styled(
            "No passage was given with the last question (attach a document with F5).",
            dim(),
        ));
    }
    for s in &app.sources {
        lines.push(Line::styled(
            format!("[{}] {}, {}", s.n, safe(&s.document), safe(&s.locator)),
            Style::new().add_modifier(Modifier::BOLD),
        ));
        for l in s.text.lines().take(6) {
            lines.push(Line::raw(format!("    {}", safe(l))));
        }
        if s.text.lines().count() > 6 {
            lines.push(Line::styled("    …", dim()));
        }
    }
    let inner = dialog(
        frame,
        area,
        area.width,
        area.height,
        " Sources of the last answer (any key closes) ",
    );
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn help(frame: &mut Frame<'_>, area: Rect) {
    let w = area.width.min(72);
    let h = area
        .height
        .min(u16::try_from(BINDINGS.len()).unwrap_or(20) + 4);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let lines: Vec<Line<'static>> = BINDINGS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(
                    format!("{k:>24}  "),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Keys (any key closes) "),
        ),
        r,
    );
}

fn lock_screen(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut lines = vec![
        Line::raw(""),
        Line::styled("LOCKED", Style::new().add_modifier(Modifier::BOLD)),
        Line::raw(""),
    ];
    if app.session.unlock != Unlock::Nothing {
        lines.push(Line::raw(if app.session.unlock == Unlock::ApplianceKey {
            "Passphrase of the appliance key, then Enter:"
        } else {
            "Operator passphrase, then Enter:"
        }));
        lines.push(Line::raw("•".repeat(app.unlock_entry.chars().count())));
    } else {
        lines.push(Line::raw("Press Enter to unlock."));
        lines.push(Line::styled(
            "(the appliance key has no passphrase: anyone at this terminal can unlock)",
            Style::new().fg(Color::DarkGray),
        ));
    }
    if let Some(e) = &app.unlock_error {
        lines.push(Line::styled(safe(e), Style::new().fg(Color::Red)));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        if app.lock.keep_conversation {
            "The conversation is kept in memory."
        } else {
            "The conversation was wiped."
        },
        Style::new().fg(Color::DarkGray),
    ));
    lines.push(Line::styled(
        "Ctrl-Q quits.",
        Style::new().fg(Color::DarkGray),
    ));
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        area,
    );
}

/// A centred box of at most `w` x `h` inside `area`, cleared.
fn dialog(frame: &mut Frame<'_>, area: Rect, w: u16, h: u16, title: &str) -> Rect {
    let w = area.width.min(w);
    let h = area.height.min(h);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    frame.render_widget(Clear, r);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(title.to_owned());
    let inner = block.inner(r);
    frame.render_widget(block, r);
    inner
}

fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

fn loading_screen(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(l) = &app.loading else { return };
    let inner = dialog(frame, area, 64, 9, &format!(" Loading {} ", safe(&l.model)));
    let rows = Layout::vertical([Constraint::Length(1); 7]).split(inner);
    let row = |i: usize| rows.get(i).copied().unwrap_or_default();
    for (i, (name, f)) in STAGES.iter().zip(l.stages).enumerate() {
        let [label, gauge] =
            Layout::horizontal([Constraint::Length(9), Constraint::Min(1)]).areas(row(i));
        frame.render_widget(Paragraph::new(format!(" {name}")), label);
        frame.render_widget(
            Gauge::default()
                .ratio(f.clamp(0.0, 1.0))
                .gauge_style(Style::new().fg(Color::Green).bg(Color::DarkGray))
                .use_unicode(true),
            gauge,
        );
    }
    let mut lines = vec![];
    if let Some(e) = &l.error {
        lines.push(Line::styled(
            format!(" failed: {}", safe(e)),
            Style::new().fg(Color::Red),
        ));
        lines.push(Line::styled(
            " F2 lists the installed models, Ctrl-Q quits.",
            dim(),
        ));
    } else if let Some((f, _)) = &l.done {
        let [v, d, b] = f.seconds;
        lines.push(Line::raw(format!(
            " {:.1} MB in {:.2} s (verify {v:.2}, decrypt {d:.2}, build {b:.2})",
            f.bytes as f64 / 1e6,
            v + d + b
        )));
        lines.push(Line::raw(format!(
            " memory locked: {}",
            if f.memory_locked {
                "yes"
            } else {
                "NO (could be swapped out)"
            }
        )));
    } else {
        lines.push(Line::styled(
            " verifying signatures, then decrypting into locked memory…",
            dim(),
        ));
    }
    let text_area = Rect {
        y: row(4).y,
        height: inner.height.saturating_sub(4),
        ..inner
    };
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text_area);
}

fn picker(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let mut lines = Vec::new();
    if let Some(e) = &app.picker_error {
        lines.push(Line::styled(safe(e), Style::new().fg(Color::Red)));
    } else if app.models.is_empty() {
        lines.push(Line::styled("verifying the installed bundles…", dim()));
    }
    for (i, m) in app.models.iter().enumerate() {
        let chosen = i == app.picker_pos;
        let current = m.spec == app.current_spec;
        let style = if chosen {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        lines.push(Line::from(vec![
            Span::styled(
                format!("{} {}", if chosen { ">" } else { " " }, safe(&m.spec)),
                style,
            ),
            Span::styled(if current { "  (loaded)" } else { "" }, dim()),
        ]));
        lines.push(Line::styled(format!("    {}", safe(&m.details)), dim()));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Loading another model wipes the loaded one and this conversation.",
        dim(),
    ));
    // As tall as the wrapped details need (a model card's intended use can take lines).
    let text = Paragraph::new(lines).wrap(Wrap { trim: false });
    let h = u16::try_from(text.line_count(area.width.min(78).saturating_sub(2)))
        .unwrap_or(u16::MAX)
        .saturating_add(2);
    let inner = dialog(frame, area, 78, h, " Models (Enter loads, Esc closes) ");
    frame.render_widget(text, inner);
}

fn settings_panel(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let Some(form) = &app.form else { return };
    let inner = dialog(
        frame,
        area,
        72,
        14,
        " Settings (Tab/Up/Down move, Enter applies, Esc cancels) ",
    );
    let mut lines = Vec::new();
    let width = usize::from(inner.width.saturating_sub(18)).max(8);
    for (i, (label, value)) in SETTINGS.iter().zip(&form.fields).enumerate() {
        let chosen = i == form.pos;
        // Long values (the system prompt) show their end, where the cursor is.
        let n = value.chars().count();
        let shown: String = value.chars().skip(n.saturating_sub(width)).collect();
        lines.push(Line::from(vec![
            Span::styled(
                format!("{}{label:>14}: ", if chosen { ">" } else { " " }),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                shown,
                if chosen {
                    Style::new().add_modifier(Modifier::UNDERLINED)
                } else {
                    Style::new()
                },
            ),
            Span::raw(if chosen { "▏" } else { "" }),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        "Temperature 0 is greedy; seed \"random\" draws one per answer. Ctrl-U clears a field.",
        dim(),
    ));
    lines.push(Line::styled(
        "Settings apply to the next answer and are audited (not the prompt's text).",
        dim(),
    ));
    if let Some(e) = &form.error {
        lines.push(Line::styled(safe(e), Style::new().fg(Color::Red)));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn export_prompt(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let inner = dialog(frame, area, 72, 9, " Export the conversation ");
    let mut lines = vec![
        Line::raw("File name (under the export directory), then Enter; Esc cancels:"),
        Line::from(vec![
            Span::styled(
                app.export_path.to_string(),
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw("▏"),
        ]),
        Line::styled(
            format!(
                "The file starts and ends with the marking {}; it is never overwritten.",
                app.session.marking
            ),
            dim(),
        ),
    ];
    if let Some(e) = &app.export_error {
        lines.push(Line::styled(safe(e), Style::new().fg(Color::Red)));
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App, now: Instant) {
    let area = frame.area();
    let [top, _, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    screen(frame, app, now);
    // Last, on their own rows: nothing drawn before can cover or move them.
    frame.render_widget(Clear, top);
    frame.render_widget(banner(app), top);
    frame.render_widget(Clear, bottom);
    frame.render_widget(banner(app), bottom);
    scrub(frame.buffer_mut());
}

fn screen(frame: &mut Frame<'_>, app: &App, now: Instant) {
    let area = frame.area();
    let input_h = u16::try_from(app.input.lines().len())
        .unwrap_or(1)
        .clamp(1, 5)
        + 2;
    let docs_h = u16::from(!app.docs.is_empty() || app.attaching.is_some());
    let [_top, body, docs, input, bar, _bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(docs_h),
        Constraint::Length(input_h),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    if app.screen == Screen::Locked {
        let [middle] = Layout::vertical([Constraint::Min(0)]).areas(Rect {
            height: area.height.saturating_sub(2),
            y: area.y + 1,
            ..area
        });
        lock_screen(frame, app, middle);
        return;
    }
    let chat = Paragraph::new(conversation(app)).wrap(Wrap { trim: false });
    let total = u16::try_from(chat.line_count(body.width)).unwrap_or(u16::MAX);
    let max_up = total.saturating_sub(body.height);
    let offset = max_up.saturating_sub(app.scroll_up.min(max_up));
    frame.render_widget(chat.scroll((offset, 0)), body);
    let mut editor = app.input.clone();
    let title = match (&app.generating, app.scroll_up > 0 && max_up > 0) {
        (Some(g), _) if g.stopping => " Message (stopping…) ",
        (Some(_), true) => " Message (answering… Esc stops; End follows) ",
        (Some(_), false) => " Message (answering… Esc stops) ",
        (None, true) => " Message (scrolled up: End follows the answer) ",
        (None, false) => " Message ",
    };
    editor.set_block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(&editor, input);
    if docs_h > 0 {
        frame.render_widget(Paragraph::new(documents_line(app)), docs);
    }
    frame.render_widget(Paragraph::new(status(app, now)), bar);
    match app.screen {
        Screen::Help => help(frame, body),
        Screen::Loading => loading_screen(frame, app, body),
        Screen::Models => picker(frame, app, body),
        Screen::Settings => settings_panel(frame, app, body),
        Screen::Export => export_prompt(frame, app, body),
        Screen::Attach => attach_picker(frame, app, body),
        Screen::Sources => sources_panel(frame, app, body),
        Screen::Chat | Screen::Locked => {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::tui::app::{Action, LoadFigures, ModelEntry, update};
    use crossterm::event::{KeyCode, KeyEvent};

    fn app(marking: &str, t0: Instant) -> App {
        crate::tui::app::sample(marking, t0)
    }

    fn render(app: &App, w: u16, h: u16, now: Instant) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, app, now)).unwrap();
        let buf = t.backend().buffer();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn chatting(t0: Instant) -> App {
        let mut a = app("CONFIDENTIAL", t0);
        for c in "Explain **air gaps** briefly".chars() {
            update(&mut a, Action::Key(KeyEvent::from(KeyCode::Char(c))), t0);
        }
        update(&mut a, Action::Key(KeyEvent::from(KeyCode::Enter)), t0);
        update(
            &mut a,
            Action::Token(
                "An **air gap** isolates a network:\n- no cable\n- no radio\n```\nping: no route\n```\nMedia are".into(),
            ),
            t0,
        );
        a
    }

    /// Issue 18: model output that moves the cursor, clears the screen, sets the title and the
    /// clipboard, reverses text and prints a fake banner is shown as visible escapes; both real
    /// banners are intact, and no cell of the frame holds ESC, a C1 control or a bidi character.
    #[test]
    fn model_output_cannot_spoof_hide_or_move_the_banners() {
        let t0 = Instant::now();
        let mut a = app("SECRET", t0);
        let clean = render(&a, 80, 24, t0);
        let rows = |s: &str| s.lines().map(str::to_owned).collect::<Vec<_>>();
        let (top, bottom) = (rows(&clean)[0].clone(), rows(&clean)[23].clone());
        assert_eq!(top.trim(), "SECRET");
        update(&mut a, Action::Key(KeyEvent::from(KeyCode::Char('q'))), t0);
        update(&mut a, Action::Key(KeyEvent::from(KeyCode::Enter)), t0);
        let hostile = "\u{1b}[H\u{1b}[2J\u{1b}[1;1H\u{1b}[42m UNCLASSIFIED \u{1b}[0m\r\
                       \u{1b}]0;pwned\u{7}\u{1b}]52;c;cHduZWQ=\u{7}\u{9b}24;1H\u{202e}TERCES\u{2066}x\u{2069}\n\
                       [rempart] bundle verified OK\u{1b}[24;1H\u{1b}[K\u{8}\u{8}\u{7f}\u{1b}7\u{1b}8\u{1b}c";
        update(&mut a, Action::Token(hostile.into()), t0);
        let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
        t.draw(|f| draw(f, &a, t0)).unwrap();
        let buf = t.backend().buffer().clone();
        let screen = render(&a, 80, 24, t0);
        let r = rows(&screen);
        assert_eq!(r[0], top, "top banner:\n{screen}");
        assert_eq!(r[23], bottom, "bottom banner:\n{screen}");
        for x in 0..80 {
            for y in [0, 23] {
                assert_eq!(buf[(x, y)].bg, Color::Red, "banner colour at ({x},{y})");
            }
        }
        for cell in &buf.content {
            assert!(
                !cell.symbol().chars().any(needs_escape),
                "a cell holds {:?}",
                cell.symbol()
            );
        }
        // The analyst sees what the model tried.
        assert!(screen.contains("\\x1b]0;pwned\\x07"), "{screen}");
        assert!(screen.contains("\\u{202e}TERCES"), "{screen}");
        assert!(screen.contains("\\x9b24;1H"), "{screen}");
    }

    /// Text that reaches the frame without the sanitiser (the editor's own text: characters
    /// a terminal decodes from pasted UTF-8, such as U+009B and U+202E) is scrubbed cell by cell.
    #[test]
    fn a_pasted_escape_in_the_editor_never_reaches_the_terminal() {
        let t0 = Instant::now();
        let mut a = app("SECRET", t0);
        for c in "a\u{1b}]0;t\u{7}\u{9b}2J\u{202e}b\u{85}".chars() {
            update(&mut a, Action::Key(KeyEvent::from(KeyCode::Char(c))), t0);
        }
        let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
        t.draw(|f| draw(f, &a, t0)).unwrap();
        let buf = t.backend().buffer();
        assert!(
            buf.content
                .iter()
                .all(|c| !c.symbol().chars().any(needs_escape)),
            "{buf:?}"
        );
    }

    #[test]
    fn chat_mid_stream_shows_banners_markdown_and_status() {
        let t0 = Instant::now();
        let a = chatting(t0);
        let screen = render(&a, 80, 24, t0 + Duration::from_secs(61));
        insta::assert_snapshot!("chat_mid_stream", screen);
    }

    #[test]
    fn help_overlay_lists_every_binding() {
        let t0 = Instant::now();
        let mut a = chatting(t0);
        update(&mut a, Action::Key(KeyEvent::from(KeyCode::F(1))), t0);
        let screen = render(&a, 80, 24, t0);
        for (k, _) in BINDINGS {
            assert!(screen.contains(k), "{k} missing from the help");
        }
        insta::assert_snapshot!("help", screen);
    }

    #[test]
    fn lock_screen_hides_the_conversation_and_keeps_the_banners() {
        let t0 = Instant::now();
        let mut a = chatting(t0);
        update(&mut a, Action::Tick, t0 + Duration::from_secs(301));
        for c in "abc".chars() {
            update(&mut a, Action::Key(KeyEvent::from(KeyCode::Char(c))), t0);
        }
        let screen = render(&a, 80, 24, t0);
        assert!(!screen.contains("air gap") && !screen.contains("abc"));
        insta::assert_snapshot!("locked", screen);
    }

    #[test]
    fn tiny_terminal_still_draws_the_banners() {
        let t0 = Instant::now();
        let a = chatting(t0);
        let screen = render(&a, 40, 10, t0);
        let lines: Vec<&str> = screen.lines().collect();
        assert!(lines[0].contains("CONFIDENTIAL") && lines[9].contains("CONFIDENTIAL"));
        insta::assert_snapshot!("tiny", screen);
    }

    #[test]
    fn markings_get_their_colours() {
        assert_eq!(marking_colors("UNCLASSIFIED").0, Color::Green);
        assert_eq!(marking_colors("Diffusion Restreinte").0, Color::Yellow);
        assert_eq!(marking_colors("CONFIDENTIAL").0, Color::Blue);
        assert_eq!(marking_colors("SECRET").0, Color::Red);
        assert_eq!(marking_colors("TOP SECRET").0, Color::Indexed(208));
    }

    fn press(a: &mut App, code: KeyCode, t: Instant) {
        update(a, Action::Key(KeyEvent::from(code)), t);
    }

    #[test]
    fn loading_screen_shows_a_gauge_per_stage_then_the_figures() {
        let t0 = Instant::now();
        let mut a = app("UNCLASSIFIED", t0);
        update(
            &mut a,
            Action::LoadStarted {
                spec: "smollm2-135m-instruct@3".into(),
                model: "smollm2-135m-instruct v3".into(),
                marking: "UNCLASSIFIED".into(),
            },
            t0,
        );
        update(&mut a, Action::LoadProgress(0, 1.0), t0);
        update(&mut a, Action::LoadProgress(1, 0.5), t0);
        let screen = render(&a, 80, 24, t0);
        for stage in STAGES {
            assert!(screen.contains(stage), "{stage} missing");
        }
        assert!(screen.contains("100%") && screen.contains("50%"));
        insta::assert_snapshot!("loading", screen);
        update(
            &mut a,
            Action::Loaded {
                context: 8192,
                figures: LoadFigures {
                    bytes: 97_873_504,
                    seconds: [0.004, 0.061, 0.212],
                    memory_locked: true,
                },
            },
            t0,
        );
        let screen = render(&a, 80, 24, t0);
        assert!(screen.contains("97.9 MB in 0.28 s") && screen.contains("memory locked: yes"));
        insta::assert_snapshot!("loaded", screen);
    }

    #[test]
    fn picker_lists_models_with_their_metadata_and_marks_the_loaded_one() {
        let t0 = Instant::now();
        let mut a = chatting(t0);
        a.current_spec = "smollm2-135m-instruct@3".into();
        press(&mut a, KeyCode::F(2), t0);
        update(
            &mut a,
            Action::Models(Ok(vec![
                ModelEntry {
                    spec: "smollm2-135m-instruct@3".into(),
                    details:
                        "CONFIDENTIAL · llama Q4_1 · 98.1 MB · sealed 2026-11-20 · 1 signer(s) \
                              · licence Apache-2.0 · for: Short answers and summaries in English, \
                              checked by a person · model card 8/9"
                            .into(),
                },
                ModelEntry {
                    spec: "qwen2.5-0.5b@1".into(),
                    details: "SECRET · qwen2 Q8_0 · 531.1 MB · sealed 2026-11-21 · 2 signer(s)"
                        .into(),
                },
            ])),
            t0,
        );
        press(&mut a, KeyCode::Down, t0);
        let screen = render(&a, 80, 24, t0);
        assert!(screen.contains("(loaded)") && screen.contains("> qwen2.5-0.5b@1"));
        // The dialog grows with the wrapped details: the last line of each is shown.
        assert!(screen.contains("model card 8/9") && screen.contains("2 signer(s)"));
        insta::assert_snapshot!("picker", screen);
    }

    #[test]
    fn settings_panel_shows_every_field_and_errors() {
        let t0 = Instant::now();
        let mut a = chatting(t0);
        press(&mut a, KeyCode::F(3), t0);
        press(&mut a, KeyCode::Down, t0);
        press(&mut a, KeyCode::Char('x'), t0);
        press(&mut a, KeyCode::Enter, t0);
        let screen = render(&a, 80, 24, t0);
        for label in SETTINGS {
            assert!(screen.contains(label), "{label} missing");
        }
        assert!(screen.contains("is not a number"));
        insta::assert_snapshot!("settings", screen);
    }

    #[test]
    fn export_prompt_names_the_marking() {
        let t0 = Instant::now();
        let mut a = chatting(t0);
        update(
            &mut a,
            Action::Done {
                tokens: 30,
                tokens_per_s: 40.0,
                stop: crate::engine::StopReason::Eos,
            },
            t0,
        );
        press(&mut a, KeyCode::F(4), t0);
        for c in "brief.md".chars() {
            press(&mut a, KeyCode::Char(c), t0);
        }
        let screen = render(&a, 80, 24, t0);
        assert!(screen.contains("brief.md") && screen.contains("marking CONFIDENTIAL"));
        insta::assert_snapshot!("export", screen);
    }

    #[test]
    fn a_configured_banner_colour_wins() {
        let t0 = Instant::now();
        let mut a = app("SPECIAL FRANCE", t0);
        a.session.banner = Some(Color::Magenta);
        let mut t = Terminal::new(TestBackend::new(40, 10)).unwrap();
        t.draw(|f| draw(f, &a, t0)).unwrap();
        let cell = &t.backend().buffer()[(0, 0)];
        assert_eq!((cell.bg, cell.fg), (Color::Magenta, Color::White));
        let cell = &t.backend().buffer()[(0, 9)];
        assert_eq!(cell.bg, Color::Magenta);
    }

    /// Issue 21: the attached documents are listed above the message box with their marking,
    /// the banners carry the session's raised marking, and F6 shows the passages given with
    /// the last question, numbered as the answer cites them. A hostile file name is escaped.
    #[test]
    fn documents_line_banners_and_sources_panel() {
        use crate::tui::app::{DocEntry, SourceEntry};
        let t0 = Instant::now();
        let mut a = app("DIFFUSION RESTREINTE", t0);
        let d = |name: &str, marking: &str| DocEntry {
            name: name.into(),
            sha384: "ab".repeat(48),
            marking: marking.into(),
            bytes: 12_345,
            tokens: 3_210,
            passages: 4,
        };
        update(
            &mut a,
            Action::Attached(Ok((d("convoy.md", "SECRET"), "SECRET".into()))),
            t0,
        );
        update(
            &mut a,
            Action::Attached(Ok((d("x\u{1b}]0;t\u{7}.txt", "SECRET"), "SECRET".into()))),
            t0,
        );
        update(
            &mut a,
            Action::Sources(vec![SourceEntry {
                n: 1,
                document: "convoy.md".into(),
                locator: "§ Convoy, l. 3-5".into(),
                text: zeroize::Zeroizing::new("The supply convoy leaves Toulon at dawn.".into()),
            }]),
            t0,
        );
        let screen = render(&a, 100, 30, t0);
        let rows: Vec<&str> = screen.lines().collect();
        assert_eq!((rows[0].trim(), rows[29].trim()), ("SECRET", "SECRET"));
        assert!(
            screen.contains("│ [1] convoy.md · SECRET · 12.3 KB · 3210 tok"),
            "{screen}"
        );
        assert!(screen.contains("[2] x\\x1b]0;t\\x07.txt"), "{screen}");
        update(&mut a, Action::Key(KeyEvent::from(KeyCode::F(6))), t0);
        let screen = render(&a, 100, 30, t0);
        assert!(screen.contains("Sources of the last answer"), "{screen}");
        assert!(
            screen.contains("[1] convoy.md, § Convoy, l. 3-5"),
            "{screen}"
        );
        assert!(
            screen.contains("The supply convoy leaves Toulon"),
            "{screen}"
        );
        insta::assert_snapshot!("sources_panel", screen);
    }
}
