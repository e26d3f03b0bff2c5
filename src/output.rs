//! The only place that prints: human lines to stderr, JSON documents to stdout, a model's
//! answer to stdout.
//!
//! # Security
//! Every text printed here passes through the one sanitiser, [`crate::text::sanitize`]: a
//! message may hold a file name from a USB medium, a bundle field, a template error or model
//! output, and none of it may drive the terminal. JSON documents stay exact: the characters the
//! sanitiser would escape are written as JSON `\uXXXX` escapes, which a parser reads back as the
//! same text (`output::tests`). Only [`Answer`] with `raw` set writes bytes as they are, for
//! `ask --raw`, which the audit record says.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "this module is the CLI's output"
)]

use std::io::{self, Write};

use serde_json::ser::{Formatter, PrettyFormatter};

use crate::text::{needs_escape, sanitize};

/// Prints a human line on stderr.
pub fn info(msg: impl std::fmt::Display) {
    eprintln!("{}", sanitize(&msg.to_string()));
}

/// Prints a human line on stdout (for commands whose output is the listing itself).
pub fn line(msg: impl std::fmt::Display) {
    let mut out = io::stdout().lock();
    // A closed pipe (e.g. `| head`) is not an error for a listing.
    let _ = writeln!(out, "{}", sanitize(&msg.to_string()));
}

/// Prints one JSON document on stdout.
pub fn json(v: &serde_json::Value) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(json_string(v).as_bytes());
    let _ = writeln!(out);
}

/// `v` as pretty JSON in which every character the sanitiser would escape is a `\uXXXX` escape.
pub fn json_string(v: &serde_json::Value) -> String {
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, SafeJson(PrettyFormatter::new()));
    // A `Value` always serialises, and the formatter writes only valid UTF-8.
    let _ = serde::Serialize::serialize(v, &mut ser);
    String::from_utf8(buf).unwrap_or_default()
}

/// Prints a warning line on stderr.
pub fn warn(msg: impl std::fmt::Display) {
    eprintln!("rempart: warning: {}", sanitize(&msg.to_string()));
}

/// Prints an error line on stderr.
pub fn error(msg: impl std::fmt::Display) {
    eprintln!("rempart: error: {}", sanitize(&msg.to_string()));
}

/// A model's answer streamed to stdout, piece by piece: sanitised, or exact when `raw`.
pub struct Answer {
    out: io::StdoutLock<'static>,
    raw: bool,
}

impl Answer {
    /// Takes stdout for an answer; `raw` writes the model's bytes unchanged.
    pub fn new(raw: bool) -> Self {
        Self {
            out: io::stdout().lock(),
            raw,
        }
    }

    /// Writes one piece of the answer and flushes it (a closed pipe is not an error).
    pub fn piece(&mut self, t: &str) {
        let t = if self.raw {
            std::borrow::Cow::Borrowed(t)
        } else {
            sanitize(t)
        };
        let _ = self.out.write_all(t.as_bytes());
        let _ = self.out.flush();
    }

    /// Ends the answer with a newline.
    pub fn finish(mut self) {
        let _ = writeln!(self.out);
    }
}

/// serde_json's pretty output, with the sanitiser's characters written as `\uXXXX` escapes
/// (serde_json escapes only the C0 controls, `"` and `\`).
struct SafeJson<'a>(PrettyFormatter<'a>);

impl Formatter for SafeJson<'_> {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, s: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in s.char_indices() {
            if needs_escape(c) {
                w.write_all(s.get(start..i).unwrap_or_default().as_bytes())?;
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        w.write_all(s.get(start..).unwrap_or_default().as_bytes())
    }
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// A progress bar on stderr for `total` bytes (hidden when stderr is not a terminal).
pub fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(sanitize(what).into_owned());
    pb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_is_exact_and_terminal_safe() {
        let hostile = "ok \u{1b}]0;pwned\u{7} \u{9b}2J \u{202e}TERCES \u{7f} tag\u{e0041} é 機密\n";
        let v = serde_json::json!({ "text": hostile, "list": [hostile] });
        let s = json_string(&v);
        assert!(!s.chars().any(|c| c != '\n' && needs_escape(c)), "{s}");
        assert!(s.contains("\\u001b]0;pwned\\u0007"), "{s}");
        assert!(s.contains("\\u009b2J"), "{s}");
        assert!(s.contains("\\u202eTERCES"), "{s}");
        assert!(s.contains("tag\\udb40\\udc41"), "{s}");
        assert!(s.contains("é 機密"), "non-ASCII text stays readable: {s}");
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v, "a JSON reader gets the exact text back");
        // The same layout as serde_json's own pretty output.
        let plain = serde_json::json!({"a": [1, 2], "b": {"c": "d"}});
        assert_eq!(
            json_string(&plain),
            serde_json::to_string_pretty(&plain).unwrap()
        );
    }
}
