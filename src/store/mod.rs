//! The installed models, `ROOT/models`: sealed `.rpk` files only, named `NAME-vVERSION.rpk`,
//! plus the MAC'd rollback state ([`state`]). This module is the read side (list and resolve
//! `NAME[@VERSION]`); `rempart import` (src/cli/import.rs) is the only writer.
//!
//! # Security
//! Only regular `*.rpk` files are considered (symlinks are not followed); every candidate's
//! signatures are verified against the trust store before it is listed or chosen.

pub mod state;

use std::path::{Path, PathBuf};

use crate::bundle::{self, Envelope, Manifest};
use crate::keys::TrustStore;

/// A verified installed bundle.
#[derive(Debug, Clone)]
pub struct Installed {
    /// File.
    pub path: PathBuf,
    /// Its authenticated manifest.
    pub manifest: Manifest,
    /// File size.
    pub bytes: u64,
    /// Trusted publisher keys whose signatures verified.
    pub signers: Vec<[u8; 8]>,
    /// When it was installed (the installed file's modification time, Unix seconds; import
    /// writes it once and renames it into place).
    pub installed_at: Option<u64>,
}

/// Why a model could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No model is installed.
    #[error("no model is installed in {0} (place or import a sealed .rpk bundle)")]
    Empty(PathBuf),
    /// Bundles are installed but none verifies against the trust store.
    #[error("{count} installed bundle(s) failed verification, none usable; first: {first}")]
    Unverified {
        /// How many were skipped.
        count: usize,
        /// The first one and why.
        first: String,
    },
    /// No installed model has this name (and version).
    #[error("no installed model named {wanted} (installed: {installed})")]
    NotFound {
        /// What was asked.
        wanted: String,
        /// What exists.
        installed: String,
    },
    /// Several models are installed and none was named.
    #[error("several models are installed ({0}); choose one with --model NAME")]
    Ambiguous(String),
    /// `NAME@VERSION` could not be parsed.
    #[error("{0:?} is not NAME or NAME@VERSION")]
    BadSpec(String),
    /// The models directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// Directory.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}

/// Opens a bundle for positioned reads: regular files only, symlinks never followed, the length
/// taken from the open descriptor.
pub fn open_regular(path: &Path) -> std::io::Result<bundle::FileAt> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    bundle::FileAt::new(f)
}

/// Bundles that were skipped, with the reason.
pub type Skipped = Vec<(PathBuf, String)>;

/// Lists installed bundles whose signatures verify; others are skipped with a reason each.
pub fn catalog(models: &Path, trust: &TrustStore) -> Result<(Vec<Installed>, Skipped), Error> {
    let mut ok = Vec::new();
    let mut skipped = Vec::new();
    let entries = match std::fs::read_dir(models) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((ok, skipped)),
        Err(source) => {
            return Err(Error::Io {
                path: models.to_owned(),
                source,
            });
        }
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_file() || path.extension().is_none_or(|x| x != "rpk") {
            continue;
        }
        let installed_at = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        let res = open_regular(&path)
            .map_err(|e| e.to_string())
            .and_then(|src| {
                let bytes = bundle::ReadAt::len(&src);
                let env = Envelope::parse(&src).map_err(|e| e.to_string())?;
                let v = env.verify(trust).map_err(|e| e.to_string())?;
                Ok(Installed {
                    path: path.clone(),
                    signers: v.signers,
                    manifest: v.manifest,
                    bytes,
                    installed_at,
                })
            });
        match res {
            Ok(i) => ok.push(i),
            Err(why) => skipped.push((path, why)),
        }
    }
    ok.sort_by(|a, b| {
        a.manifest
            .name
            .cmp(&b.manifest.name)
            .then(b.manifest.version.cmp(&a.manifest.version))
    });
    Ok((ok, skipped))
}

/// Resolves `NAME`, `NAME@VERSION`, or nothing (the only installed model).
pub fn resolve(models: &Path, trust: &TrustStore, spec: Option<&str>) -> Result<Installed, Error> {
    let (all, skipped) = catalog(models, trust)?;
    if all.is_empty() {
        return Err(match skipped.first() {
            None => Error::Empty(models.to_owned()),
            Some((path, why)) => Error::Unverified {
                count: skipped.len(),
                first: format!("{}: {why}", path.display()),
            },
        });
    }
    let names = || {
        let mut n: Vec<String> = all
            .iter()
            .map(|i| format!("{}@{}", i.manifest.name, i.manifest.version))
            .collect();
        n.dedup();
        n.join(", ")
    };
    let Some(spec) = spec else {
        if let Some(first) = all.first()
            && all.iter().all(|i| i.manifest.name == first.manifest.name)
        {
            return Ok(first.clone());
        }
        return Err(Error::Ambiguous(names()));
    };
    let (name, version) = match spec.split_once('@') {
        Some((n, v)) => (
            n,
            Some(
                v.parse::<u64>()
                    .map_err(|_| Error::BadSpec(spec.to_owned()))?,
            ),
        ),
        None => (spec, None),
    };
    all.iter()
        .find(|i| i.manifest.name == name && version.is_none_or(|v| v == i.manifest.version))
        .cloned()
        .ok_or_else(|| Error::NotFound {
            wanted: spec.to_owned(),
            installed: names(),
        })
}
