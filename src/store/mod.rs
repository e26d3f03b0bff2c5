//! The installed models, `ROOT/models`: sealed `.rpk` files only, named `NAME-vVERSION.rpk`,
//! plus the MAC'd rollback state ([`state`]). This module is the read side (list and resolve
//! `NAME[@VERSION]`); the import pipeline (src/appliance/import.rs) is the only writer.
//!
//! # Security
//! Only regular `*.rpk` files are considered (symlinks are not followed); every candidate's
//! signatures are verified against the trust store before it is listed or chosen.

pub mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::bundle::{self, Envelope, Manifest, Verified};
use crate::keys::TrustStore;

/// A verified installed bundle: the handle [`Catalog`] returns. It carries what was verified
/// and the descriptor it was read through, so loading it decrypts exactly the bytes whose
/// signatures were checked, without verifying again.
#[derive(Debug, Clone)]
pub struct Installed {
    /// File.
    pub path: PathBuf,
    /// File size (fstat of the open descriptor).
    pub bytes: u64,
    /// When it was installed (the installed file's modification time, Unix seconds; import
    /// writes it once and renames it into place).
    pub installed_at: Option<u64>,
    /// The authenticated manifest, the trusted signers and the artifact offsets.
    pub verified: Verified,
    /// The open bundle that was verified.
    pub src: Arc<bundle::FileAt>,
    /// How long opening, parsing and verifying it took, milliseconds.
    pub verify_ms: f64,
}

impl Installed {
    /// The authenticated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.verified.manifest
    }
    /// Key ids of the trusted publishers whose signatures verified.
    pub fn signers(&self) -> &[[u8; 8]] {
        &self.verified.signers
    }
    /// Whether it is a sentence-embedding model (safetensors weights, tokenizer and config)
    /// rather than a language model (GGUF).
    pub fn is_embedding(&self) -> bool {
        let has = |r: bundle::Role| self.manifest().artifacts.iter().any(|a| a.role == r);
        !has(bundle::Role::Gguf)
            && has(bundle::Role::Safetensors)
            && has(bundle::Role::Tokenizer)
            && has(bundle::Role::Config)
    }

    /// `NAME@VERSION`.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.manifest().name, self.manifest().version)
    }
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

/// `NAME` (every version, or the highest) or `NAME@VERSION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// As typed, for messages.
    pub text: String,
    /// The model name.
    pub name: String,
    /// The version, if one was given.
    pub version: Option<u64>,
}

impl ModelSpec {
    /// Parses `NAME` or `NAME@VERSION`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (name, version) = match text.split_once('@') {
            Some((n, v)) => (
                n,
                Some(
                    v.parse::<u64>()
                        .map_err(|_| Error::BadSpec(text.to_owned()))?,
                ),
            ),
            None => (text, None),
        };
        Ok(Self {
            text: text.to_owned(),
            name: name.to_owned(),
            version,
        })
    }

    /// Whether `i` is one of the models this names.
    pub fn matches(&self, i: &Installed) -> bool {
        i.manifest().name == self.name && self.version.is_none_or(|v| v == i.manifest().version)
    }
}

/// Opens a bundle for positioned reads: regular files only, symlinks never followed, the length
/// taken from the open descriptor.
pub fn open_regular(path: &Path) -> std::io::Result<bundle::FileAt> {
    bundle::FileAt::new(crate::secure::fs::open_regular(path)?)
}

/// Bundles that were skipped, with the reason.
pub type Skipped = Vec<(PathBuf, String)>;

/// The installed models whose signatures verify (by name, newest version first), and those
/// that do not, with the reason.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Where they are.
    pub dir: PathBuf,
    /// Verified bundles.
    pub models: Vec<Installed>,
    /// Bundles that did not verify.
    pub unverified: Skipped,
    /// The trust store they were verified against.
    pub trust: Arc<TrustStore>,
}

impl Catalog {
    /// Lists the installed bundles, verifying each once against `trust`.
    pub fn read(models: &Path, trust: Arc<TrustStore>) -> Result<Self, Error> {
        let (models_list, unverified) = list(models, &trust)?;
        Ok(Self {
            dir: models.to_owned(),
            models: models_list,
            unverified,
            trust,
        })
    }

    fn names(&self) -> String {
        let mut n: Vec<String> = self.models.iter().map(Installed::spec).collect();
        n.dedup();
        n.join(", ")
    }

    /// Resolves `NAME` (its highest version), `NAME@VERSION`, or nothing (the only installed
    /// model name).
    pub fn resolve(&self, spec: Option<&str>) -> Result<&Installed, Error> {
        if self.models.is_empty() {
            return Err(match self.unverified.first() {
                None => Error::Empty(self.dir.clone()),
                Some((path, why)) => Error::Unverified {
                    count: self.unverified.len(),
                    first: format!("{}: {why}", path.display()),
                },
            });
        }
        let Some(spec) = spec else {
            // The only language model: an installed embedding model is not a candidate.
            let mut chat = self.models.iter().filter(|i| !i.is_embedding());
            if let Some(first) = chat.next()
                && chat.all(|i| i.manifest().name == first.manifest().name)
            {
                return Ok(first);
            }
            return Err(Error::Ambiguous(self.names()));
        };
        let spec = ModelSpec::parse(spec)?;
        self.models
            .iter()
            .find(|i| spec.matches(i))
            .ok_or_else(|| Error::NotFound {
                wanted: spec.text.clone(),
                installed: self.names(),
            })
    }

    /// The installed sentence-embedding model, if any (the first listed: the highest version
    /// of the first name).
    pub fn embedder(&self) -> Option<&Installed> {
        self.models.iter().find(|i| i.is_embedding())
    }

    /// Every installed version that `spec` names (an error naming what is installed if none).
    pub fn matching(&self, spec: &ModelSpec) -> Result<Vec<&Installed>, Error> {
        let found: Vec<&Installed> = self.models.iter().filter(|i| spec.matches(i)).collect();
        if found.is_empty() {
            return Err(Error::NotFound {
                wanted: spec.text.clone(),
                installed: self
                    .models
                    .iter()
                    .map(Installed::spec)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(found)
    }
}

/// Lists installed bundles whose signatures verify; others are skipped with a reason each.
fn list(models: &Path, trust: &TrustStore) -> Result<(Vec<Installed>, Skipped), Error> {
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
        let t0 = std::time::Instant::now();
        let res = open_regular(&path)
            .map_err(|e| e.to_string())
            .and_then(|src| {
                let bytes = bundle::ReadAt::len(&src);
                let env = Envelope::parse(&src).map_err(|e| e.to_string())?;
                let verified = env.verify(trust).map_err(|e| e.to_string())?;
                Ok(Installed {
                    path: path.clone(),
                    bytes,
                    installed_at,
                    verified,
                    src: Arc::new(src),
                    verify_ms: t0.elapsed().as_secs_f64() * 1e3,
                })
            });
        match res {
            Ok(i) => ok.push(i),
            Err(why) => skipped.push((path, why)),
        }
    }
    ok.sort_by(|a, b| {
        a.manifest()
            .name
            .cmp(&b.manifest().name)
            .then(b.manifest().version.cmp(&a.manifest().version))
    });
    skipped.sort();
    Ok((ok, skipped))
}
