//! The terminal UI's work per key press (criterion): `update` for a typed character and a
//! full redraw into ratatui's TestBackend, then the same for Backspace (one iteration = two
//! key presses and two frames), on an 80x24 and a 200x60 screen, with a 40-turn
//! conversation on screen and an answer streaming. This is the CPU part of input-to-redraw
//! latency; `build/bench-tui-latency` measures the real binary in tmux during generation.
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark harness")]

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use rempart::tui::app::{Action, App, sample, update};
use rempart::tui::view::draw;

fn busy_app(t0: Instant) -> App {
    let mut app = sample("CONFIDENTIAL", t0);
    let key = |c| Action::Key(KeyEvent::from(c));
    for turn in 0..20 {
        for c in format!("question {turn} about **air gaps**").chars() {
            update(&mut app, key(KeyCode::Char(c)), t0);
        }
        update(&mut app, key(KeyCode::Enter), t0);
        let answer =
            "An air gap isolates a network.\n- no cable\n- no radio\n```\nping: no route\n```\n"
                .repeat(4);
        update(&mut app, Action::Token(answer), t0);
        if turn < 19 {
            update(
                &mut app,
                Action::Done {
                    tokens: 100,
                    tokens_per_s: 40.0,
                    stop: rempart::engine::StopReason::Eos,
                },
                t0,
            );
        }
    }
    app
}

fn frame(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut g = c.benchmark_group("tui_key_to_frame");
    for (w, h) in [(80u16, 24u16), (200, 60)] {
        let mut app = busy_app(t0);
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        g.bench_function(format!("{w}x{h}"), |b| {
            b.iter(|| {
                // A key typed and erased, so the screen stays the same size run after run.
                update(
                    &mut app,
                    Action::Key(KeyEvent::from(KeyCode::Char('x'))),
                    t0,
                );
                term.draw(|f| draw(f, &app, t0)).unwrap();
                update(
                    &mut app,
                    Action::Key(KeyEvent::from(KeyCode::Backspace)),
                    t0,
                );
                term.draw(|f| draw(f, &app, t0)).unwrap();
            });
        });
    }
    g.finish();
}

criterion_group!(benches, frame);
criterion_main!(benches);
