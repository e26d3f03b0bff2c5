//! `tui`'s arguments and sandbox policy. `main` turns them into the terminal UI's options and
//! starts it (this module does not import `crate::tui`).

use std::path::PathBuf;

use clap::Args;

use crate::appliance::Root;
use crate::secure::sandbox::FsPolicy;

/// `tui` arguments.
#[derive(Debug, Args)]
pub struct TuiArgs {
    /// Installed model to load first: NAME or NAME@VERSION (default: the only one
    /// installed). F2 switches model inside the UI.
    #[arg(long)]
    pub model: Option<String>,
    /// System prompt (default: rempart.toml `tui.system_prompt`, else none).
    #[arg(long)]
    pub system: Option<String>,
    /// Maximum tokens per answer (default: rempart.toml, else 1024).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature, 0 = greedy (default: rempart.toml, else 0.8).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling threshold in (0, 1] (default: rempart.toml, else 0.95).
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Fixed random seed for every answer (default: a new one per answer).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Lock the screen after this many minutes without input (default: rempart.toml,
    /// else 5).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1440))]
    pub idle_lock_minutes: Option<u64>,
    /// Keep the conversation in memory while locked (default: rempart.toml, else wipe it).
    #[arg(long)]
    pub keep_on_lock: bool,
    /// Refuse to run unless the model's memory can be locked.
    #[arg(long)]
    pub require_mlock: bool,
    /// Passphrase file for a protected appliance key (else a prompt before the UI starts).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// On exit, print input-to-redraw latency figures (p50/p95/max) to stderr.
    #[arg(long)]
    pub report_latency: bool,
}

impl TuiArgs {
    /// The appliance read, the audit log written, and exports under the export directory
    /// (never inside the root).
    pub(super) fn policy(&self, root: &Root) -> FsPolicy {
        let config = root.config().unwrap_or_default();
        let p = super::appliance_policy(root)
            .with_read(self.passphrase_file.iter().cloned())
            // The attach picker's documents directory: read only, nothing else of the disk.
            .with_read(config.documents.dir.iter().cloned());
        match root.export_dir(&config) {
            Some(dir) => p.write(dir),
            None => p,
        }
    }
}
