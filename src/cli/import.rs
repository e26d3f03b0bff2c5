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
        if let Some(flag) = option_named_file(std::env::args_os(), std::path::Path::new(".")) {
            return Err(crate::Error::Usage(format!(
                "{flag} is an option, but a file of that name is in the current directory: a \
                 shell pattern (`import *`) may have turned a file on the medium into an option; \
                 put `--` before the paths (`rempart import -- *`)"
            )));
        }
        let o = ImportOpts {
            allow_expired: self.allow_expired,
            allow_downgrade: self.allow_downgrade,
            keep_previous: self.keep_previous,
            passphrase: self.passphrase.source(),
        };
        root.import(&self.paths, &o, &mut print, &Bar::default())
    }
}

/// The first option of `import` (before any `--`) that is also the name of a file in `here`
/// (the current directory). A file on a medium named `--allow-downgrade`, reached by `import *`
/// run inside the medium, would otherwise change the command's options.
fn option_named_file(
    argv: impl Iterator<Item = std::ffi::OsString>,
    here: &std::path::Path,
) -> Option<String> {
    argv.skip(1)
        .skip_while(|a| a != "import")
        .skip(1)
        .take_while(|a| a != "--")
        .filter(|a| a.as_encoded_bytes().starts_with(b"-"))
        .find(|a| here.join(a).symlink_metadata().is_ok())
        .map(|a| a.to_string_lossy().into_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> impl Iterator<Item = std::ffi::OsString> {
        std::iter::once("rempart")
            .chain(args.iter().copied())
            .map(std::ffi::OsString::from)
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// Issue 18: files named `--allow-downgrade` and `--keep-previous=0` on a medium, imported
    /// with `import *` from inside it, installed a downgrade.
    #[test]
    fn issue_18_an_option_that_is_also_a_file_here_is_found() {
        let d = tempfile::tempdir().unwrap();
        let here = d.path();
        for f in ["--allow-downgrade", "--keep-previous=0"] {
            std::fs::write(here.join(f), b"").unwrap();
        }
        let found = |args: &[&str]| option_named_file(argv(args), here);
        assert_eq!(
            found(&[
                "--root",
                "/r",
                "import",
                "--keep-previous=0",
                "--allow-downgrade",
                "m.rpk"
            ]),
            Some("--keep-previous=0".to_owned())
        );
        assert_eq!(
            found(&["import", "m.rpk", "--allow-downgrade"]),
            Some("--allow-downgrade".to_owned())
        );
        // After `--` it is a path; an option with no such file is an option.
        assert_eq!(found(&["import", "--", "--allow-downgrade", "m.rpk"]), None);
        assert_eq!(found(&["import", "--allow-expired", "m.rpk"]), None);
        // Options of other commands are not looked at.
        assert_eq!(found(&["list", "--allow-downgrade"]), None);
    }
}
