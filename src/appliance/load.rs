//! Loading an installed model: the bundle the catalog verified is checked for expiry and a GGUF
//! artifact, its file key unwrapped with the appliance key, its weights decrypted in parallel
//! straight into a locked arena, and the engine built from the arena (which is then wiped).
//! `model_load` is recorded on success, `load_failed` once the audit key is at hand.
//!
//! # Security
//! No signature is checked here: [`Installed`] is only made by the catalog after its bundle
//! verified, and it holds the descriptor that was verified, so the bytes decrypted are the
//! bytes whose manifest was authenticated (every chunk is authenticated by its GCM tag and the
//! key commitment on the way).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::{Auditor, Root};
use crate::audit::{Event, Source};
use crate::bundle;
use crate::engine;
use crate::error::Result;
use crate::keys::{ApplianceSecret, PassphraseSource};
use crate::secure::{LockStatus, LockedBuf};
use crate::store::Installed;

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// The CPU (the static, default build).
    #[default]
    Cpu,
    /// The first CUDA GPU (a build with `--features cuda`).
    Cuda,
}

impl Device {
    /// The candle device.
    pub fn candle(self) -> Result<candle_core::Device> {
        match self {
            Self::Cpu => Ok(candle_core::Device::Cpu),
            #[cfg(feature = "cuda")]
            Self::Cuda => Ok(candle_core::Device::new_cuda(0).map_err(engine::Error::from)?),
            #[cfg(not(feature = "cuda"))]
            Self::Cuda => Err(crate::Error::Usage(
                "this build has no CUDA support (rebuild with --features cuda; unverified, see SECURITY.md)".into(),
            )),
        }
    }
}

/// How to load a model.
#[derive(Debug, Clone, Copy)]
pub struct LoadOpts {
    /// Refuse unless the arena and the built weights can be locked in memory.
    pub require_mlock: bool,
    /// Where inference runs.
    pub device: Device,
    /// Which forward pass.
    pub backend: engine::Backend,
    /// Who loads it (recorded).
    pub source: Source,
}

/// How the appliance key is obtained.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    /// Already unlocked (the terminal UI holds it while unlocked).
    Held(&'a ApplianceSecret),
    /// Read from `ROOT/keys/appliance.key` with this passphrase source.
    Unlock(&'a PassphraseSource),
}

/// A loading stage, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Signatures, trust and expiry.
    Verify,
    /// Unwrapping the file key and decrypting into the arena.
    Decrypt,
    /// Building the model from the arena.
    Build,
}

/// Receives (stage, fraction done in 0..=1) from any thread.
pub type Progress<'a> = &'a (dyn Fn(Stage, f64) + Sync);

/// How long each loading stage took, and what memory is locked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: u64,
    /// Classification marking.
    pub marking: Option<String>,
    /// The installed bundle.
    pub bundle: String,
    /// The bundle's digest: SHA-384 of its signed manifest (which holds every artifact's
    /// hashes), hex; the provenance exports and `ask --json` carry.
    pub manifest_sha384: String,
    /// Plaintext weight bytes.
    pub bytes: u64,
    /// Reading and verifying the bundle (in the catalog) and its checks here, milliseconds.
    pub read_verify_ms: f64,
    /// Unwrapping the file key and decrypting, milliseconds.
    pub unwrap_decrypt_ms: f64,
    /// Building the model, milliseconds.
    pub build_ms: f64,
    /// The arena was locked in memory.
    pub arena_locked: bool,
    /// The built weights were locked in memory.
    pub weights_locked: bool,
}

/// A loaded thing (a model, a tokenizer), its figures and the auditor to record its use with.
#[derive(Debug)]
pub struct Loaded<T> {
    /// What was built.
    pub built: T,
    /// Figures.
    pub report: LoadReport,
    /// The auditor, under the key that opened the bundle.
    pub auditor: Auditor,
}

impl Root {
    /// Loads `model` into the engine.
    pub fn load_model(
        &self,
        model: &Installed,
        o: &LoadOpts,
        key: Key<'_>,
        progress: Progress<'_>,
    ) -> Result<Loaded<engine::Loaded>> {
        let device = o.device.candle()?;
        self.with_arena(model, o, key, progress, |arena| {
            Ok(engine::load_arena(arena, &device, o.backend)?)
        })
    }

    /// Loads only `model`'s tokenizer and chat template.
    pub fn load_tokenizer(
        &self,
        model: &Installed,
        o: &LoadOpts,
        key: Key<'_>,
    ) -> Result<Loaded<(engine::Tok, engine::ChatTemplate)>> {
        self.with_arena(model, o, key, &|_, _| {}, |arena| {
            Ok(engine::load_tokenizer(arena.as_slice())?)
        })
    }

    /// Decrypts `model`'s GGUF artifact into a locked arena and hands it to `build`, which
    /// keeps it or drops it (a dropped arena is wiped).
    fn with_arena<T>(
        &self,
        model: &Installed,
        o: &LoadOpts,
        key: Key<'_>,
        progress: Progress<'_>,
        build: impl FnOnce(LockedBuf) -> Result<T>,
    ) -> Result<Loaded<T>> {
        let t0 = Instant::now();
        progress(Stage::Verify, 0.0);
        let path = model.path.as_path();
        let m = model.manifest();
        super::clock::refuse_expired(path, m.expires)?;
        let idx = m
            .artifacts
            .iter()
            .position(|a| a.role == bundle::Role::Gguf)
            .ok_or_else(|| crate::Error::NoModelArtifact {
                path: path.to_owned(),
            })?;
        progress(Stage::Verify, 1.0);
        let unlocked;
        let appliance = match key {
            Key::Held(k) => k,
            Key::Unlock(pass) => {
                unlocked = self.unlock(pass)?;
                &unlocked
            }
        };
        let auditor = self.auditor(appliance);
        let read_verify_ms = model.verify_ms + t0.elapsed().as_secs_f64() * 1e3;
        // From here on the audit key is at hand: a failed load is recorded.
        let loaded = (|| -> Result<(T, LoadReport)> {
            let t1 = Instant::now();
            let len = plaintext_len(path, m, idx)?;
            let mut arena = LockedBuf::new(len, o.require_mlock)?;
            let done = AtomicU64::new(0);
            let on_bytes = |n: u64| {
                let d = done.fetch_add(n, Ordering::Relaxed) + n;
                progress(Stage::Decrypt, d as f64 / len.max(1) as f64);
            };
            bundle::open_artifact_with_progress(
                model.src.as_ref(),
                &model.verified,
                idx,
                appliance,
                &mut arena,
                &on_bytes,
            )
            .map_err(super::berr(path))?;
            let unwrap_decrypt = t1.elapsed();
            let arena_locked = matches!(arena.lock_status(), LockStatus::Locked);
            let t2 = Instant::now();
            progress(Stage::Build, 0.0);
            let built = build(arena)?;
            progress(Stage::Build, 1.0);
            let lock = crate::secure::mem::lock_current();
            let weights_locked = lock.is_ok();
            if let (true, Err(source)) = (o.require_mlock, lock) {
                return Err(crate::secure::Error::LockRequired {
                    len,
                    limit: crate::secure::mem::memlock_limit(),
                    source,
                }
                .into());
            }
            let report = LoadReport {
                model: m.name.clone(),
                version: m.version,
                marking: m.marking.clone(),
                bundle: path.display().to_string(),
                manifest_sha384: hex::encode(crate::crypto::hash::sha384(&[&m.encode()])),
                bytes: len as u64,
                read_verify_ms,
                unwrap_decrypt_ms: unwrap_decrypt.as_secs_f64() * 1e3,
                build_ms: t2.elapsed().as_secs_f64() * 1e3,
                arena_locked,
                weights_locked,
            };
            auditor.record(&Event::ModelLoad {
                source: o.source,
                model: report.model.clone(),
                version: report.version,
                bundle: report.bundle.clone(),
                arena_locked,
                weights_locked,
                load_ms: (report.read_verify_ms + report.unwrap_decrypt_ms + report.build_ms)
                    as u64,
            })?;
            Ok((built, report))
        })();
        match loaded {
            Ok((built, report)) => Ok(Loaded {
                built,
                report,
                auditor,
            }),
            Err(e) => {
                // Best effort: the load error is what the operator must see.
                let _ = auditor.record(&Event::LoadFailed {
                    source: o.source,
                    model: m.name.clone(),
                    version: m.version,
                    class: e.class(),
                    reason: e.to_string(),
                });
                Err(e)
            }
        }
    }
}

impl Root {
    /// Decrypts an installed sentence-embedding model (its safetensors weights, tokenizer and
    /// configuration, each into a locked arena wiped when dropped) and builds it, recording
    /// `model_load` (or `load_failed`) with `source`.
    pub fn load_embedder(
        &self,
        model: &Installed,
        key: &ApplianceSecret,
        source: Source,
    ) -> Result<crate::document::embed::Embedder> {
        let t0 = Instant::now();
        let path = model.path.as_path();
        let m = model.manifest();
        let auditor = self.auditor(key);
        let built = (|| -> Result<(crate::document::embed::Embedder, bool)> {
            super::clock::refuse_expired(path, m.expires)?;
            let mut arenas = Vec::new();
            let mut locked = true;
            for role in [
                bundle::Role::Safetensors,
                bundle::Role::Tokenizer,
                bundle::Role::Config,
            ] {
                let idx = m
                    .artifacts
                    .iter()
                    .position(|a| a.role == role)
                    .ok_or_else(|| crate::Error::NoModelArtifact {
                        path: path.to_owned(),
                    })?;
                let mut arena = LockedBuf::new(plaintext_len(path, m, idx)?, false)?;
                bundle::open_artifact(model.src.as_ref(), &model.verified, idx, key, &mut arena)
                    .map_err(super::berr(path))?;
                locked &= matches!(arena.lock_status(), LockStatus::Locked);
                arenas.push(arena);
            }
            let [w, t, c] = arenas.as_slice() else {
                return Err(crate::Error::Internal("three artifacts expected".into()));
            };
            let e = crate::document::embed::Embedder::new(w.as_slice(), t.as_slice(), c.as_slice())
                .map_err(|reason| {
                    crate::Error::Engine(engine::Error::Metadata(format!(
                        "embedding model {}: {reason}",
                        model.spec()
                    )))
                })?;
            Ok((e, locked))
        })();
        match built {
            Ok((e, locked)) => {
                auditor.record(&Event::ModelLoad {
                    source,
                    model: m.name.clone(),
                    version: m.version,
                    bundle: path.display().to_string(),
                    arena_locked: locked,
                    weights_locked: false,
                    load_ms: t0.elapsed().as_millis() as u64,
                })?;
                Ok(e)
            }
            Err(e) => {
                let _ = auditor.record(&Event::LoadFailed {
                    source,
                    model: m.name.clone(),
                    version: m.version,
                    class: e.class(),
                    reason: e.to_string(),
                });
                Err(e)
            }
        }
    }
}

/// The plaintext length of artifact `idx`, as a size this machine can address.
fn plaintext_len(path: &std::path::Path, m: &bundle::Manifest, idx: usize) -> Result<usize> {
    let pt_len = m.artifacts.get(idx).map_or(0, |a| a.pt_len);
    usize::try_from(pt_len).map_err(|_| crate::Error::TooLarge {
        path: path.to_owned(),
        what: "model on this machine",
        bytes: pt_len,
        limit: usize::MAX as u64,
    })
}
