//! The application layer: one place where "open the appliance, pick a model, verify it once,
//! decrypt, build, query, record" lives, under the two front ends (`cli`, `tui`), which never
//! import each other.
//!
//! - [`Root`] owns the root's paths (`keys/`, `keys/trusted/`, `models/`, `audit/`,
//!   `rempart.toml`), unlocks the appliance key and opens the auditor.
//! - [`Auditor`] is the one way to write the audit log: [`Auditor::record`] of a typed
//!   [`Event`].
//! - [`Root::catalog`] lists the installed models, each verified once; its handles
//!   ([`crate::store::Installed`]) carry what was verified and the open file, so [`load`] decrypts
//!   and builds without verifying again.
//! - [`import`] installs bundles from a medium; [`admin`] removes models and changes trust.
//! - [`clock`] formats and parses the appliance's times.
//!
//! # Security
//! A bundle is verified when it is listed and the descriptor that was verified is the one later
//! decrypted (no second lookup of the path). Every change is recorded before or as it is made
//! (see each operation); a command that cannot record its event fails.

pub mod admin;
pub mod clock;
pub mod import;
pub mod load;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use crate::store::{Catalog, Installed, ModelSpec};
pub use load::{Device, LoadOpts, LoadReport, Loaded, Stage};

use crate::audit::{self, Event};
use crate::config::Config;
use crate::crypto::Secret;
use crate::error::Result;
use crate::keys::{ApplianceSecret, PassphraseSource, TrustStore};

/// An appliance root and the paths under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// The root at `dir` (nothing is read yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    /// The root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `ROOT/keys`.
    pub fn keys(&self) -> PathBuf {
        self.dir.join("keys")
    }
    /// `ROOT/keys/trusted`: the trust store.
    pub fn trusted(&self) -> PathBuf {
        self.keys().join("trusted")
    }
    /// `ROOT/keys/appliance.key`.
    pub fn appliance_key(&self) -> PathBuf {
        self.keys().join("appliance.key")
    }
    /// `ROOT/models`: the installed bundles and the store state.
    pub fn models(&self) -> PathBuf {
        self.dir.join("models")
    }
    /// `ROOT/audit`: the audit log and its head.
    pub fn audit(&self) -> PathBuf {
        self.dir.join("audit")
    }

    /// Refuses a root that others could change, as OpenSSH's StrictModes does: the root and
    /// each of its ancestors, `keys/` and every file in it, `keys/trusted/` and every file in
    /// it, `audit/` and its files, `models/` and `state.json`, and `rempart.toml` must be owned
    /// by this user or root and writable by neither group nor others (an ancestor may be a
    /// sticky directory such as `/tmp`). Paths that do not exist yet are skipped: the command
    /// creates them private (umask 077).
    ///
    /// # Security
    /// Whoever can write one of these can plant a trusted publisher key, replace the store
    /// state or the configuration, or rename the root's directories; a root that the operator
    /// did not make private is refused before anything in it is read
    /// (`tests/cli/keys.rs::a_root_others_can_write_is_refused_with_the_fix`).
    pub fn check_permissions(&self) -> Result<()> {
        use crate::secure::fs::check_private;
        let absolute = std::path::absolute(&self.dir).map_err(|source| crate::Error::Io {
            path: self.dir.clone(),
            source,
        })?;
        // The nearest ancestor that exists, resolved: its own ancestors are the ones that count.
        let mut base = absolute.as_path();
        let resolved = loop {
            if let Ok(r) = std::fs::canonicalize(base) {
                break r;
            }
            match base.parent() {
                Some(p) => base = p,
                None => break PathBuf::from("/"),
            }
        };
        for a in resolved.ancestors().skip(1) {
            check_private(a, true)?;
        }
        check_private(&resolved, base != absolute.as_path())?;
        for dir in [self.keys(), self.trusted(), self.audit()] {
            check_private(&dir, false)?;
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    check_private(&e.path(), false)?;
                }
            }
        }
        check_private(&self.models(), false)?;
        check_private(&self.models().join(crate::store::state::STATE_FILE), false)?;
        check_private(&self.dir.join(crate::config::FILE), false)?;
        Ok(())
    }

    /// Loads the trust store.
    pub fn trust(&self) -> Result<TrustStore> {
        Ok(TrustStore::load(&self.trusted())?)
    }

    /// Loads `ROOT/rempart.toml` (defaults when absent).
    pub fn config(&self) -> Result<Config> {
        Config::load(&self.dir)
    }

    /// Unlocks the appliance secret key, asking `pass` if it is protected.
    pub fn unlock(&self, pass: &PassphraseSource) -> Result<ApplianceSecret> {
        let path = self.appliance_key();
        let f = crate::keys::read_key_file(&path, crate::keys::Kind::ApplianceSecret, pass)?;
        let seed = f.secret.ok_or(crate::keys::Error::Malformed {
            path,
            what: "no secret",
        })?;
        Ok(ApplianceSecret::from_seed(seed))
    }

    /// Whether the appliance key is passphrase-protected (false when it is absent or cannot be
    /// read: unlocking it then says why).
    pub fn key_is_protected(&self) -> bool {
        matches!(
            crate::keys::read_key_file(
                &self.appliance_key(),
                crate::keys::Kind::ApplianceSecret,
                &PassphraseSource::None
            ),
            Err(crate::keys::Error::PassphraseRequired { .. })
        )
    }

    /// The auditor under `key`.
    pub fn auditor(&self, key: &ApplianceSecret) -> Auditor {
        Auditor {
            dir: self.audit(),
            key: key.derive_key(audit::AUDIT_KEY),
        }
    }

    /// The appliance key and its auditor (the log's head checked), if this root has a key: a
    /// publishing station has none, and its changes are not audited.
    pub fn auditor_if_any(
        &self,
        pass: &PassphraseSource,
    ) -> Result<Option<(ApplianceSecret, Auditor)>> {
        if !self.appliance_key().exists() {
            return Ok(None);
        }
        let key = self.unlock(pass)?;
        let auditor = self.auditor(&key);
        auditor.ready()?;
        Ok(Some((key, auditor)))
    }

    /// Lists the installed models, verifying each bundle once against the trust store.
    pub fn catalog(&self) -> Result<Catalog> {
        let trust = self.trust()?;
        Ok(Catalog::read(&self.models(), std::sync::Arc::new(trust))?)
    }

    /// The directory the terminal UI may export to: rempart.toml's `tui.export_dir`, else the
    /// current directory, as its real path (symlinks resolved). `None` when it does not exist
    /// or overlaps the appliance root's real path (an export must never land among keys, models
    /// or the audit log, and the sandbox must not open them for writing): the comparison is of
    /// canonical paths, so neither a symlinked export directory nor a root named through a
    /// symlink gets past it.
    pub fn export_dir(&self, config: &Config) -> Option<PathBuf> {
        let dir = config
            .tui
            .export_dir
            .clone()
            .or_else(|| std::env::current_dir().ok())?;
        let dir = std::fs::canonicalize(dir).ok()?;
        let root = std::fs::canonicalize(&self.dir)
            .or_else(|_| std::path::absolute(&self.dir))
            .ok()?;
        (!dir.starts_with(&root) && !root.starts_with(&dir)).then_some(dir)
    }
}

/// Writes typed events to the audit log under the appliance's audit key (wiped on drop).
#[derive(Debug)]
pub struct Auditor {
    dir: PathBuf,
    key: Secret<32>,
}

impl Auditor {
    /// Appends `event` (fsync'd). Failing to record is an error: nothing is done unaudited.
    pub fn record(&self, event: &Event) -> Result<()> {
        Ok(audit::append(&self.dir, &self.key, event)?)
    }

    /// Checks that the log's head verifies, so a later record can be written.
    pub fn ready(&self) -> Result<()> {
        Ok(audit::ready(&self.dir, &self.key)?)
    }

    /// Verifies every record and the head.
    pub fn verify(&self) -> Result<audit::Checked> {
        Ok(audit::verify(&self.dir, &self.key)?)
    }
}

/// Opens a bundle file for positioned reads (regular files only, symlinks not followed).
pub fn open_bundle(path: &Path) -> Result<crate::bundle::FileAt> {
    crate::store::open_regular(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::InvalidInput {
            crate::Error::Usage(format!("{}: not a regular file", path.display()))
        } else {
            crate::Error::Io {
                path: path.to_owned(),
                source,
            }
        }
    })
}

/// Wraps a bundle error with the bundle's path.
pub fn berr(path: &Path) -> impl Fn(crate::bundle::Error) -> crate::Error + '_ {
    move |source| crate::Error::Bundle {
        path: path.to_owned(),
        source,
    }
}

/// A random 64-bit seed from the OS generator; an error if the generator fails (a fixed seed
/// would make every answer the same without anyone knowing).
pub fn random_seed() -> Result<u64> {
    let mut b = [0u8; 8];
    crate::crypto::rng::fill(&mut b).map_err(crate::Error::Rng)?;
    Ok(u64::from_le_bytes(b))
}
