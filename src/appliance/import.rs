//! Importing sealed bundles from files or a directory (a mounted USB medium) into
//! `ROOT/models`.
//!
//! Order (each step refuses with a clear reason and changes nothing): regular `*.rpk` files only
//! (directory entries checked with lstat, files opened with O_NOFOLLOW and fstat'd), size cap →
//! signatures against the trust store (only the bounded front is read) → targets and this
//! appliance's recipient stanza (the file key is unwrapped, then dropped) → expiry → rollback
//! against the MAC'd store state → copy exactly the fstat'd length into a staging file on the
//! appliance, hashing the bytes written (every ciphertext tree hash checked against the signed
//! manifest) and fsyncing → the staged front parsed and checked again → `import_accepted`
//! recorded → atomic rename, fsync of the directory → store state update → older versions
//! pruned. A crash leaves at most a `.staging-*.partial` file, removed at the next import.
//!
//! What happens to each entry is reported to the caller as a [`Note`], which the front end
//! prints; the first refusal is the result.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::clock::refuse_expired;
use super::{Auditor, Root, berr, open_bundle};
use crate::audit::Event;
use crate::bundle::{self, Envelope, ReadAt};
use crate::error::Result;
use crate::keys::{ApplianceSecret, PassphraseSource, TrustStore};
use crate::secure::fs::sync_dir;
use crate::store::state::State;
use crate::store::{self, Catalog, Installed};

/// Largest bundle accepted from a medium (checked on the fstat'd size before reading).
const MAX_BUNDLE_BYTES: u64 = 256 << 30;
/// Refusals recorded one by one in an import; beyond it they are counted and summarised in
/// one `import_refusals_summary` record (a medium of a thousand garbage files must not write a
/// thousand fsync'd records).
pub const MAX_REFUSAL_RECORDS: u64 = 100;
/// Purpose label of the store-state MAC key.
const STATE_KEY: &[u8] = b"store state mac v1";

/// Import options.
#[derive(Debug, Clone)]
pub struct ImportOpts {
    /// Accept an expired bundle.
    pub allow_expired: bool,
    /// Accept a version not newer than the highest ever installed.
    pub allow_downgrade: bool,
    /// How many older versions of a model to keep.
    pub keep_previous: usize,
    /// How to unlock the appliance key.
    pub passphrase: PassphraseSource,
}

/// Progress of the copy of one bundle into staging (a progress bar, in the CLI).
pub trait CopyProgress: Sync {
    /// A copy of `total` bytes starts.
    fn start(&self, total: u64);
    /// `n` more bytes were copied and hashed.
    fn advance(&self, n: u64);
    /// The copy ended.
    fn finish(&self);
}

/// No progress reports.
impl CopyProgress for () {
    fn start(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// What happened to one entry of the paths given.
#[derive(Debug)]
pub enum Note<'a> {
    /// A path that could not be read at all.
    Unreadable(&'a Path, &'a crate::Error),
    /// An entry that is not tried (a symlink, FIFO, device, directory or other file).
    Skipped(&'a Path, &'static str),
    /// A directory with no `.rpk` file.
    NoBundle(&'a Path),
    /// Installed.
    Accepted {
        /// The bundle on the medium.
        file: &'a Path,
        /// Model name.
        name: &'a str,
        /// Version.
        version: u64,
    },
    /// The same bundle was already installed as the highest version.
    AlreadyInstalled {
        /// The bundle on the medium.
        file: &'a Path,
        /// Model name.
        name: &'a str,
        /// Version.
        version: u64,
    },
    /// Refused.
    Refused(&'a Path, &'a crate::Error),
    /// An older version was removed (beyond `keep_previous`).
    Pruned {
        /// Model name.
        name: &'a str,
        /// Version removed.
        version: u64,
        /// How many older versions are kept.
        keep: usize,
    },
}

enum Outcome {
    Accepted(String, u64),
    Already(String, u64),
}

/// Entries of a medium that are not imported, with the reason.
type Skipped = Vec<(PathBuf, &'static str)>;

/// Regular `*.rpk` files under `path` (or `path` itself), and what was skipped and why. Entries
/// are classified with lstat: symlinks, FIFOs, devices and directories are never opened.
fn candidates(path: &Path) -> Result<(Vec<PathBuf>, Skipped)> {
    let io = |source| crate::Error::Io {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    if meta.is_file() || meta.file_type().is_symlink() {
        // An explicitly named file is tried (and refused by O_NOFOLLOW if it is a symlink).
        return Ok((vec![path.to_owned()], Vec::new()));
    }
    if !meta.is_dir() {
        return Ok((Vec::new(), vec![(path.to_owned(), "not a regular file")]));
    }
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for e in std::fs::read_dir(path).map_err(io)? {
        let e = e.map_err(io)?;
        let p = e.path();
        let ft = e.file_type().map_err(io)?;
        let is_rpk = p.extension().is_some_and(|x| x == "rpk");
        match (ft.is_file(), is_rpk) {
            (true, true) => files.push(p),
            (true, false) => skipped.push((p, "not a .rpk file")),
            _ if ft.is_symlink() => skipped.push((p, "symbolic link (never followed)")),
            _ if ft.is_dir() => skipped.push((p, "directory (not searched)")),
            _ => skipped.push((p, "not a regular file (FIFO, socket or device)")),
        }
    }
    files.sort();
    skipped.sort();
    Ok((files, skipped))
}

fn clean_leftovers(models: &Path) {
    if let Ok(entries) = std::fs::read_dir(models) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".staging-") && name.ends_with(".partial") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// What one import needs at hand.
struct Ctx<'a> {
    models: PathBuf,
    trust: &'a Arc<TrustStore>,
    appliance: &'a ApplianceSecret,
    auditor: &'a Auditor,
    opts: &'a ImportOpts,
    progress: &'a dyn CopyProgress,
    /// Model-card fields a bundle must carry (rempart.toml `[import] require`).
    require: &'a [String],
}

impl Root {
    /// Imports the bundles at `paths` (files or directories), reporting each entry to `note`.
    /// Good bundles are installed even when others are refused; the first refusal (or
    /// unreadable path) is the result.
    pub fn import(
        &self,
        paths: &[PathBuf],
        o: &ImportOpts,
        note: &mut dyn FnMut(Note<'_>),
        progress: &dyn CopyProgress,
    ) -> Result<()> {
        let models = self.models();
        std::fs::create_dir_all(&models).map_err(|source| crate::Error::Io {
            path: models.clone(),
            source,
        })?;
        clean_leftovers(&models);
        let trust = self.trust()?;
        let require = self.config()?.import.require;
        let appliance = self.unlock(&o.passphrase)?;
        // Nothing is installed that could not be audited.
        let auditor = self.auditor(&appliance);
        auditor.ready()?;
        let key = appliance.derive_key(STATE_KEY);
        let mut state = State::load(&models, &key)?;
        // A crash between the rename and the state update is repaired here: installed versions
        // always count as installed.
        let catalog = Catalog::read(&models, Arc::new(trust))?;
        for i in &catalog.models {
            let h = state.highest.entry(i.manifest().name.clone()).or_insert(0);
            *h = (*h).max(i.manifest().version);
        }
        let cx = Ctx {
            models,
            trust: &catalog.trust,
            appliance: &appliance,
            auditor: &auditor,
            opts: o,
            progress,
            require: &require,
        };
        let mut first_err: Option<crate::Error> = None;
        let mut refused: u64 = 0;
        for path in paths {
            let (files, skipped) = match candidates(path) {
                Ok(c) => c,
                Err(e) => {
                    note(Note::Unreadable(path, &e));
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            for (p, why) in &skipped {
                note(Note::Skipped(p, why));
            }
            if files.is_empty() {
                note(Note::NoBundle(path));
                // Nothing to import where the operator pointed is not a success.
                first_err.get_or_insert(crate::Error::NothingToImport {
                    path: path.to_owned(),
                });
            }
            for f in files {
                match cx.import_one(&f, &mut state) {
                    Ok(Outcome::Accepted(name, v)) => {
                        state.save(&cx.models, &key)?;
                        note(Note::Accepted {
                            file: &f,
                            name: &name,
                            version: v,
                        });
                        cx.prune(&name, v, note);
                    }
                    Ok(Outcome::Already(name, v)) => {
                        note(Note::AlreadyInstalled {
                            file: &f,
                            name: &name,
                            version: v,
                        });
                        // Finishes what an interrupted import of it may have left undone.
                        cx.prune(&name, v, note);
                    }
                    Err(e) => {
                        note(Note::Refused(&f, &e));
                        refused += 1;
                        if refused <= MAX_REFUSAL_RECORDS {
                            auditor.record(&Event::ImportRefused {
                                file: f.display().to_string(),
                                class: e.class(),
                                reason: e.to_string(),
                            })?;
                        }
                        first_err.get_or_insert(e);
                    }
                }
            }
        }
        if refused > MAX_REFUSAL_RECORDS {
            auditor.record(&Event::ImportRefusalsSummary {
                refused,
                recorded: MAX_REFUSAL_RECORDS,
            })?;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Ctx<'_> {
    fn import_one(&self, path: &Path, state: &mut State) -> Result<Outcome> {
        let src = open_bundle(path)?;
        if src.len() > MAX_BUNDLE_BYTES {
            return Err(crate::Error::TooLarge {
                path: path.to_owned(),
                what: "bundle",
                bytes: src.len(),
                limit: MAX_BUNDLE_BYTES,
            });
        }
        let env = Envelope::parse(&src).map_err(berr(path))?;
        let v = env.verify(self.trust.as_ref()).map_err(berr(path))?;
        for i in 0..v.manifest.artifacts.len() {
            bundle::unwrap_file_key(&src, &v, i, self.appliance).map_err(berr(path))?;
        }
        let m = &v.manifest;
        if !self.opts.allow_expired {
            refuse_expired(path, m.expires)?;
        }
        let missing = crate::aibom::missing(m.aibom.as_deref(), self.require);
        if !missing.is_empty() {
            return Err(crate::Error::ModelCardMissing {
                path: path.to_owned(),
                missing,
            });
        }
        let dest = self.models.join(format!("{}-v{}.rpk", m.name, m.version));
        if let Some(&h) = state.highest.get(&m.name) {
            if m.version == h && dest.exists() {
                let same = store::open_regular(&dest)
                    .ok()
                    .and_then(|d| Envelope::parse(&d).ok())
                    .is_some_and(|d| d.digest() == env.digest());
                if same {
                    // The same manifest and signatures: "already installed" only if the whole
                    // bundle on the medium matches too (every header and ciphertext hash of the
                    // signed manifest), not just its front.
                    self.progress.start(src.len());
                    let checked =
                        bundle::verify_ciphertexts(&src, &v, &|n| self.progress.advance(n));
                    self.progress.finish();
                    checked.map_err(berr(path))?;
                    return Ok(Outcome::Already(m.name.clone(), m.version));
                }
            }
            if m.version <= h && !self.opts.allow_downgrade {
                return Err(crate::Error::Rollback {
                    path: path.to_owned(),
                    name: m.name.clone(),
                    version: m.version,
                    highest: h,
                });
            }
        }
        // Copy exactly the length fstat'd at open into a staging file on the appliance.
        let mut rnd = [0u8; 8];
        crate::crypto::rng::fill(&mut rnd).map_err(crate::Error::Rng)?;
        let staging = self
            .models
            .join(format!(".staging-{}.partial", hex::encode(rnd)));
        // The acceptance is recorded after every check and before the rename that installs
        // the bundle: a crash in between leaves a record and no install (the next import
        // records it again), never an install without its record.
        let accepted = Event::ImportAccepted {
            file: path.display().to_string(),
            model: m.name.clone(),
            version: m.version,
            allow_downgrade: self.opts.allow_downgrade,
            allow_expired: self.opts.allow_expired,
        };
        let result = self.stage_and_install(&src, path, &v, &env, &staging, &dest, &accepted);
        if result.is_err() {
            let _ = std::fs::remove_file(&staging);
        }
        result?;
        let h = state.highest.entry(m.name.clone()).or_insert(0);
        *h = (*h).max(m.version);
        Ok(Outcome::Accepted(m.name.clone(), m.version))
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "the medium's file and path, what was verified of it, and where it goes"
    )]
    fn stage_and_install(
        &self,
        src: &bundle::FileAt,
        medium: &Path,
        v: &bundle::Verified,
        env: &Envelope,
        staging: &Path,
        dest: &Path,
        accepted: &Event,
    ) -> Result<()> {
        let io = |source| crate::Error::Io {
            path: staging.to_owned(),
            source,
        };
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(staging)
            .map_err(io)?;
        self.progress.start(src.len());
        // Hash what is written: every tree-hash segment is hashed from the buffer that goes to
        // the staging file, in parallel with the write and its fdatasync (so write-back overlaps
        // the hashing), and compared with the signed manifest. The medium is read once; what it
        // holds afterwards does not matter.
        bundle::copy_verified(
            src,
            v,
            &mut |piece| {
                out.write_all(piece)?;
                out.sync_data()
            },
            &|n| self.progress.advance(n),
        )
        .map_err(|e| match e {
            bundle::CopyError::Write(source) => io(source),
            // The bundle on the medium is what does not match: name it, not the destination
            // (which does not exist yet).
            bundle::CopyError::Bundle(e) => berr(medium)(e),
        })?;
        out.sync_all().map_err(io)?;
        drop(out);
        self.progress.finish();
        // The staged front (manifest and signatures, not tree-hashed) must be the one checked.
        let staged = open_bundle(staging)?;
        let senv = Envelope::parse(&staged).map_err(berr(staging))?;
        if senv.digest() != env.digest() {
            return Err(berr(staging)(bundle::Error::InvalidValue(
                "staged copy (its manifest or signatures changed while it was copied)",
            )));
        }
        senv.verify(self.trust.as_ref()).map_err(berr(staging))?;
        self.auditor.record(accepted)?;
        std::fs::rename(staging, dest).map_err(|source| crate::Error::Io {
            path: dest.to_owned(),
            source,
        })?;
        sync_dir(&self.models).map_err(|source| crate::Error::Io {
            path: self.models.clone(),
            source,
        })
    }

    /// Keeps the installed version `current` and the `keep` newest older ones of `name`.
    fn prune(&self, name: &str, current: u64, note: &mut dyn FnMut(Note<'_>)) {
        let keep = self.opts.keep_previous;
        let Ok(all) = Catalog::read(&self.models, Arc::clone(self.trust)) else {
            return;
        };
        let mut older: Vec<&Installed> = all
            .models
            .iter()
            .filter(|i| i.manifest().name == name && i.manifest().version < current)
            .collect();
        older.sort_by_key(|i| std::cmp::Reverse(i.manifest().version));
        for old in older.into_iter().skip(keep) {
            if std::fs::remove_file(&old.path).is_ok() {
                note(Note::Pruned {
                    name,
                    version: old.manifest().version,
                    keep,
                });
            }
        }
        let _ = sync_dir(&self.models);
    }
}
