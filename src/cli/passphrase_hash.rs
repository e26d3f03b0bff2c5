//! `passphrase-hash`: the Argon2id hash of an operator unlock passphrase, for rempart.toml.

use std::path::{Path, PathBuf};

use clap::Args;

use super::output;
use crate::error::Result;
use crate::secure::sandbox::FsPolicy;

/// `passphrase-hash` arguments.
#[derive(Debug, Args)]
pub struct PassphraseHashArgs {
    /// Read the passphrase from this file (else a prompt, asked twice).
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

impl PassphraseHashArgs {
    pub(super) fn policy(&self) -> FsPolicy {
        FsPolicy::default().with_read(self.passphrase_file.iter().cloned())
    }

    pub(super) fn run(&self) -> Result<()> {
        // `get` refuses passphrases shorter than 8 characters.
        let pass = super::args::source(self.passphrase_file.as_deref())
            .get(Path::new("the operator unlock passphrase"), true)?;
        let hash = crate::config::hash_unlock(&pass)?;
        output::line(format!("unlock_passphrase = \"{hash}\""));
        Ok(())
    }
}
