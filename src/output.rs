//! The only place that prints: human lines to stderr, JSON documents to stdout.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "this module is the CLI's output"
)]

use std::io::Write;

/// Prints a human line on stderr.
pub fn info(msg: impl std::fmt::Display) {
    eprintln!("{msg}");
}

/// Prints a human line on stdout (for commands whose output is the listing itself).
pub fn line(msg: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (e.g. `| head`) is not an error for a listing.
    let _ = writeln!(out, "{msg}");
}

/// Prints one JSON document on stdout.
pub fn json(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, v);
    let _ = writeln!(out);
}

/// Prints a warning line on stderr.
pub fn warn(msg: impl std::fmt::Display) {
    eprintln!("rempart: warning: {msg}");
}

/// Prints an error line on stderr.
pub fn error(msg: impl std::fmt::Display) {
    eprintln!("rempart: error: {msg}");
}

/// A progress bar on stderr for `total` bytes (hidden when stderr is not a terminal).
pub fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_owned());
    pb
}
