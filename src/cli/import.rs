//! `import`: install sealed bundles from files or a directory (a mounted USB medium); the
//! pipeline is [`crate::appliance::import`], this file prints what it reports.

use std::path::PathBuf;
use std::sync::Mutex;

use clap::Args;

use super::args::PassphraseArg;
use super::output;
use crate::appliance::Root;
use crate::appliance::import::{CopyProgress, ImportOpts, Note};
use crate::error::Result;
use crate::secure::sandbox::FsPolicy;

/// `import` arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Bundle files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Accept an expired bundle.
    #[arg(long)]
    allow_expired: bool,
    /// Accept a version not newer than the highest ever installed.
    #[arg(long)]
    allow_downgrade: bool,
    /// How many older versions of a model to keep.
    #[arg(long, default_value_t = 1)]
    keep_previous: usize,
    /// The appliance key's passphrase.
    #[command(flatten)]
    passphrase: PassphraseArg,
}

/// The copy's progress bar (stderr, only on a terminal).
#[derive(Default)]
struct Bar(Mutex<Option<indicatif::ProgressBar>>);

impl CopyProgress for Bar {
    fn start(&self, total: u64) {
        if let Ok(mut b) = self.0.lock() {
            *b = Some(output::progress(total, "importing"));
        }
    }
    fn advance(&self, n: u64) {
        if let Ok(b) = self.0.lock()
            && let Some(b) = b.as_ref()
        {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Ok(mut b) = self.0.lock()
            && let Some(b) = b.take()
        {
            b.finish_and_clear();
        }
    }
}

impl ImportArgs {
    pub(super) fn policy(&self, root: &Root) -> FsPolicy {
        super::appliance_policy(root)
            .write(root.models())
            .with_read(self.paths.iter().cloned())
            .with_read(self.passphrase.files())
    }

    pub(super) fn run(&self, root: &Root) -> Result<()> {
        let o = ImportOpts {
            allow_expired: self.allow_expired,
            allow_downgrade: self.allow_downgrade,
            keep_previous: self.keep_previous,
            passphrase: self.passphrase.source(),
        };
        root.import(&self.paths, &o, &mut print, &Bar::default())
    }
}

/// One line per entry on stderr.
fn print(n: Note<'_>) {
    output::info(match n {
        Note::Unreadable(p, e) | Note::Refused(p, e) => format!("refused {}: {e}", p.display()),
        Note::Skipped(p, why) => format!("skipped {}: {why}", p.display()),
        Note::NoBundle(p) => format!("{}: no .rpk bundle found", p.display()),
        Note::Accepted {
            file,
            name,
            version,
        } => format!(
            "accepted {}: {name} version {version} installed",
            file.display()
        ),
        Note::AlreadyInstalled {
            file,
            name,
            version,
        } => format!(
            "accepted {}: {name} version {version} was already installed",
            file.display()
        ),
        Note::Pruned {
            name,
            version,
            keep,
        } => format!("removed {name} version {version} (older than the {keep} kept)"),
    });
}
