//! `import`, `list` and `remove`: the model store under ROOT/models.
//!
//! Import order (each step refuses with a clear reason and changes nothing): regular `*.rpk`
//! files only (directory entries checked with lstat, files opened with O_NOFOLLOW and fstat'd),
//! size cap → signatures against the trust store (only the bounded front is read) → targets and
//! this appliance's recipient stanza (the file key is unwrapped, then dropped) → expiry →
//! rollback against the MAC'd store state → copy exactly the fstat'd length into a staging file
//! on the appliance, hashing the bytes written (every ciphertext tree hash checked against the
//! signed manifest) and fsyncing → the staged front parsed and checked again → atomic rename,
//! fsync of the directory → store state update → older versions pruned.
//! A crash leaves at most a `.staging-*.partial` file, removed at the next import.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{Cli, audit_cmd, berr, fmt_time, now, output};
use crate::bundle::{self, Envelope, ReadAt};
use crate::error::Result;
use crate::keys::{ApplianceSecret, PassphraseSource, TrustStore};
use crate::store::state::{State, sync_dir};
use crate::store::{self, Installed};

/// Largest bundle accepted from a medium (checked on the fstat'd size before reading).
const MAX_BUNDLE_BYTES: u64 = 256 << 30;
/// Purpose label of the store-state MAC key.
const STATE_KEY: &[u8] = b"store state mac v1";

pub(super) struct ImportOpts {
    pub allow_expired: bool,
    pub allow_downgrade: bool,
    pub keep_previous: usize,
    pub passphrase: PassphraseSource,
}

enum Outcome {
    Accepted(String, u64),
    Already(String, u64),
}

/// Regular `*.rpk` files under `path` (or `path` itself), and what was skipped and why. Entries
/// are classified with lstat: symlinks, FIFOs, devices and directories are never opened.
/// Entries of a medium that are not imported, with the reason.
type Skipped = Vec<(PathBuf, &'static str)>;

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

pub(super) fn import(cli: &Cli, paths: &[PathBuf], o: &ImportOpts) -> Result<()> {
    let models = cli.root.join("models");
    std::fs::create_dir_all(&models).map_err(|source| crate::Error::Io {
        path: models.clone(),
        source,
    })?;
    clean_leftovers(&models);
    let trust = TrustStore::load(&cli.trusted_dir())?;
    let appliance = super::load_appliance(&cli.root, &o.passphrase)?;
    // Nothing is installed that could not be audited.
    crate::audit::ready(
        &cli.root.join("audit"),
        &appliance.derive_key(crate::audit::AUDIT_KEY),
    )?;
    let key = appliance.derive_key(STATE_KEY);
    let mut state = State::load(&models, &key)?;
    // A crash between the rename and the state update is repaired here: installed versions
    // always count as installed.
    let (installed, _) = store::catalog(&models, &trust)?;
    for i in &installed {
        let h = state.highest.entry(i.manifest.name.clone()).or_insert(0);
        *h = (*h).max(i.manifest.version);
    }
    let mut first_err: Option<crate::Error> = None;
    for path in paths {
        let (files, skipped) = match candidates(path) {
            Ok(c) => c,
            Err(e) => {
                output::info(format!("refused {}: {e}", path.display()));
                first_err.get_or_insert(e);
                continue;
            }
        };
        for (p, why) in skipped {
            output::info(format!("skipped {}: {why}", p.display()));
        }
        if files.is_empty() {
            output::info(format!("{}: no .rpk bundle found", path.display()));
        }
        for f in files {
            // The acceptance is recorded after every check and before the rename that installs
            // the bundle: a crash in between leaves a record and no install (the next import
            // records it again), never an install without its record.
            let mut record_accepted = |name: &str, v: u64| {
                audit_cmd::record(
                    &cli.root,
                    &appliance,
                    "import_accepted",
                    json!({"file": f.display().to_string(), "model": name, "version": v,
                           "allow_downgrade": o.allow_downgrade, "allow_expired": o.allow_expired}),
                )
            };
            let outcome = import_one(
                &models,
                &f,
                &trust,
                &appliance,
                &mut state,
                o,
                &mut record_accepted,
            );
            match outcome {
                Ok(Outcome::Accepted(name, v)) => {
                    state.save(&models, &key)?;
                    prune(&models, &trust, &name, v, o.keep_previous);
                    output::info(format!(
                        "accepted {}: {name} version {v} installed",
                        f.display()
                    ));
                }
                Ok(Outcome::Already(name, v)) => {
                    // Finishes what an interrupted import of it may have left undone.
                    prune(&models, &trust, &name, v, o.keep_previous);
                    output::info(format!(
                        "accepted {}: {name} version {v} was already installed",
                        f.display()
                    ));
                }
                Err(e) => {
                    output::info(format!("refused {}: {e}", f.display()));
                    audit_cmd::record(
                        &cli.root,
                        &appliance,
                        "import_refused",
                        json!({"file": f.display().to_string(), "class": e.class(), "reason": e.to_string()}),
                    )?;
                    first_err.get_or_insert(e);
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn import_one(
    models: &Path,
    path: &Path,
    trust: &TrustStore,
    appliance: &ApplianceSecret,
    state: &mut State,
    o: &ImportOpts,
    record_accepted: &mut dyn FnMut(&str, u64) -> Result<()>,
) -> Result<Outcome> {
    let src = super::open_bundle(path)?;
    if src.len() > MAX_BUNDLE_BYTES {
        return Err(crate::Error::Usage(format!(
            "{}: {} bytes is over the {} byte limit for a bundle",
            path.display(),
            src.len(),
            MAX_BUNDLE_BYTES
        )));
    }
    let env = Envelope::parse(&src).map_err(berr(path))?;
    let v = env.verify(trust).map_err(berr(path))?;
    for i in 0..v.manifest.artifacts.len() {
        bundle::unwrap_file_key(&src, &v, i, appliance).map_err(berr(path))?;
    }
    let m = &v.manifest;
    if let Some(e) = m.expires.filter(|&e| e <= now())
        && !o.allow_expired
    {
        return Err(crate::Error::Expired {
            path: path.to_owned(),
            when: fmt_time(e),
        });
    }
    let dest = models.join(format!("{}-v{}.rpk", m.name, m.version));
    if let Some(&h) = state.highest.get(&m.name) {
        if m.version == h && dest.exists() {
            let same = store::open_regular(&dest)
                .ok()
                .and_then(|d| Envelope::parse(&d).ok())
                .is_some_and(|d| d.digest() == env.digest());
            if same {
                return Ok(Outcome::Already(m.name.clone(), m.version));
            }
        }
        if m.version <= h && !o.allow_downgrade {
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
    crate::crypto::rng::fill(&mut rnd).map_err(crate::keys::Error::from)?;
    let staging = models.join(format!(".staging-{}.partial", hex::encode(rnd)));
    let result = stage_and_install(&src, &v, &env, &staging, &dest, trust, &mut || {
        record_accepted(&m.name, m.version)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    result?;
    let h = state.highest.entry(m.name.clone()).or_insert(0);
    *h = (*h).max(m.version);
    Ok(Outcome::Accepted(m.name.clone(), m.version))
}

fn stage_and_install(
    src: &bundle::FileAt,
    v: &bundle::Verified,
    env: &Envelope,
    staging: &Path,
    dest: &Path,
    trust: &TrustStore,
    before_install: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    let models = dest.parent().unwrap_or(Path::new("."));
    let io = |source| crate::Error::Io {
        path: staging.to_owned(),
        source,
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(staging)
        .map_err(io)?;
    let pb = output::progress(src.len(), "importing");
    // Hash what is written: every tree-hash segment is hashed from the buffer that goes to the
    // staging file, in parallel with the write and its fdatasync (so write-back overlaps the
    // hashing), and compared with the signed manifest. The medium is read once; what it holds
    // afterwards does not matter.
    bundle::copy_verified(
        src,
        v,
        &mut |piece| {
            out.write_all(piece)?;
            out.sync_data()
        },
        &|n| pb.inc(n),
    )
    .map_err(|e| match e {
        bundle::CopyError::Write(source) => io(source),
        bundle::CopyError::Bundle(e) => berr(dest)(e),
    })?;
    out.sync_all().map_err(io)?;
    drop(out);
    pb.finish_and_clear();
    // The staged front (manifest and signatures, not tree-hashed) must be the one checked.
    let staged = super::open_bundle(staging)?;
    let senv = Envelope::parse(&staged).map_err(berr(staging))?;
    if senv.digest() != env.digest() {
        return Err(berr(staging)(bundle::Error::InvalidValue(
            "staged copy (its manifest or signatures changed while it was copied)",
        )));
    }
    senv.verify(trust).map_err(berr(staging))?;
    before_install()?;
    std::fs::rename(staging, dest).map_err(|source| crate::Error::Io {
        path: dest.to_owned(),
        source,
    })?;
    sync_dir(models).map_err(|source| crate::Error::Io {
        path: models.to_owned(),
        source,
    })
}

/// Keeps the installed version `current` and the `keep` newest older ones of `name`.
fn prune(models: &Path, trust: &TrustStore, name: &str, current: u64, keep: usize) {
    let Ok((all, _)) = store::catalog(models, trust) else {
        return;
    };
    let mut older: Vec<&Installed> = all
        .iter()
        .filter(|i| i.manifest.name == name && i.manifest.version < current)
        .collect();
    older.sort_by_key(|i| std::cmp::Reverse(i.manifest.version));
    for old in older.into_iter().skip(keep) {
        if std::fs::remove_file(&old.path).is_ok() {
            output::info(format!(
                "removed {} version {} (older than the {keep} kept)",
                name, old.manifest.version
            ));
        }
    }
    let _ = sync_dir(models);
}

pub(super) fn list(cli: &Cli, json_out: bool) -> Result<()> {
    let trust = TrustStore::load(&cli.trusted_dir())?;
    let (all, skipped) = store::catalog(&cli.root.join("models"), &trust)?;
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|i| {
            let m = &i.manifest;
            json!({
                "name": m.name,
                "version": m.version,
                "bytes": i.bytes,
                "publishers": i.signers.iter().map(crate::keys::key_id_hex).collect::<Vec<_>>(),
                "architecture": m.architecture,
                "quantization": m.quantization,
                "marking": m.marking,
                "installed": i.installed_at.map(fmt_time),
                "created": fmt_time(m.created),
                "expires": m.expires.map(fmt_time),
                "expired": m.expires.is_some_and(|e| e <= now()),
                "file": i.path.display().to_string(),
            })
        })
        .collect();
    if json_out {
        let skipped: Vec<_> = skipped
            .iter()
            .map(|(p, why)| json!({"file": p.display().to_string(), "reason": why}))
            .collect();
        output::json(&json!({"models": rows, "unverified": skipped}));
        return Ok(());
    }
    for i in &all {
        let m = &i.manifest;
        output::line(format!(
            "{:<24} v{:<6} {:>10} {:<8} {:<7} {:<20} {:<17} {:<20} expires {}",
            m.name,
            m.version,
            indicatif::DecimalBytes(i.bytes).to_string(),
            m.architecture.as_deref().unwrap_or("-"),
            m.quantization.as_deref().unwrap_or("-"),
            m.marking.as_deref().unwrap_or("-"),
            i.signers
                .iter()
                .map(crate::keys::key_id_hex)
                .collect::<Vec<_>>()
                .join(","),
            i.installed_at.map_or("-".to_owned(), fmt_time),
            m.expires.map_or("never".to_owned(), |e| if e <= now() {
                format!("{} (EXPIRED)", fmt_time(e))
            } else {
                fmt_time(e)
            })
        ));
    }
    for (p, why) in &skipped {
        output::info(format!("unverified {}: {why}", p.display()));
    }
    if all.is_empty() {
        output::info("no model installed");
    }
    Ok(())
}

pub(super) fn remove(cli: &Cli, spec: &str) -> Result<()> {
    let trust = TrustStore::load(&cli.trusted_dir())?;
    let models = cli.root.join("models");
    let (name, version) = match spec.split_once('@') {
        Some((n, v)) => (
            n,
            Some(
                v.parse::<u64>()
                    .map_err(|_| store::Error::BadSpec(spec.to_owned()))?,
            ),
        ),
        None => (spec, None),
    };
    let (all, _) = store::catalog(&models, &trust)?;
    let doomed: Vec<&Installed> = all
        .iter()
        .filter(|i| i.manifest.name == name && version.is_none_or(|v| v == i.manifest.version))
        .collect();
    if doomed.is_empty() {
        return Err(store::Error::NotFound {
            wanted: spec.to_owned(),
            installed: all
                .iter()
                .map(|i| format!("{}@{}", i.manifest.name, i.manifest.version))
                .collect::<Vec<_>>()
                .join(", "),
        }
        .into());
    }
    for i in doomed {
        audit_cmd::record_if_appliance(
            &cli.root,
            &PassphraseSource::Prompt,
            "remove",
            json!({"model": i.manifest.name, "version": i.manifest.version}),
        )?;
        std::fs::remove_file(&i.path).map_err(|source| crate::Error::Io {
            path: i.path.clone(),
            source,
        })?;
        output::info(format!(
            "removed {} version {} (the rollback counter keeps {})",
            i.manifest.name, i.manifest.version, i.manifest.version
        ));
    }
    sync_dir(&models).map_err(|source| crate::Error::Io {
        path: models.clone(),
        source,
    })
}
