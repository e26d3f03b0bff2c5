//! `verify`: a bundle's signatures against the trust store and every ciphertext hash; with
//! `--decrypt`, also the unwrap with this appliance's key and decryption into locked memory
//! (then wiped).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::args::{JsonArg, PassphraseArg};
use super::inspect::manifest_json;
use super::{berr, output};
use crate::appliance::Root;
use crate::appliance::clock::refuse_expired;
use crate::appliance::open_bundle;
use crate::bundle::{self, Envelope};
use crate::error::Result;
use crate::keys::key_id_hex;
use crate::secure::sandbox::FsPolicy;
use crate::secure::{LockStatus, LockedBuf};

/// `verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Bundle file.
    bundle: PathBuf,
    #[command(flatten)]
    json: JsonArg,
    /// Also unwrap with ROOT/keys/appliance.key and decrypt into locked memory (then wipe).
    #[arg(long)]
    decrypt: bool,
    /// Refuse to decrypt unless the memory can be locked (mlock).
    #[arg(long)]
    require_mlock: bool,
    /// Check an expired bundle anyway.
    #[arg(long)]
    allow_expired: bool,
    /// The appliance key's passphrase (--decrypt).
    #[command(flatten)]
    passphrase: PassphraseArg,
}

impl VerifyArgs {
    pub(super) fn policy(&self, root: &Root) -> FsPolicy {
        super::appliance_policy(root)
            .read(&self.bundle)
            .with_read(self.passphrase.files())
    }

    pub(super) fn run(&self, root: &Root) -> Result<()> {
        let o = self;
        let path = self.bundle.as_path();
        let t0 = Instant::now();
        let src = open_bundle(path)?;
        let trust = root.trust()?;
        let env = Envelope::parse(&src).map_err(berr(path))?;
        let v = env.verify(&trust).map_err(berr(path))?;
        let t_sig = t0.elapsed();
        if !o.allow_expired {
            refuse_expired(path, v.manifest.expires)?;
        }
        let total: u64 = v
            .manifest
            .artifacts
            .iter()
            .filter_map(|a| a.total_len())
            .sum();
        let pb = output::progress(total, "hashing");
        bundle::verify_ciphertexts(&src, &v, &|n| pb.inc(n)).map_err(berr(path))?;
        pb.finish_and_clear();
        let t_hash = t0.elapsed();
        let mut decrypted = Vec::new();
        if o.decrypt {
            let appliance = root.unlock(&o.passphrase.source())?;
            for (i, a) in v.manifest.artifacts.iter().enumerate() {
                let t = Instant::now();
                let len = usize::try_from(a.pt_len).map_err(|_| crate::Error::TooLarge {
                    path: path.to_owned(),
                    what: "artifact on this machine",
                    bytes: a.pt_len,
                    limit: usize::MAX as u64,
                })?;
                let mut arena = LockedBuf::new(len, o.require_mlock)?;
                let opened = bundle::open_artifact(&src, &v, i, &appliance, &mut arena)
                    .map_err(berr(path))?;
                let secs = t.elapsed().as_secs_f64();
                let lock = match arena.lock_status() {
                    LockStatus::Locked => "locked".to_owned(),
                    LockStatus::Empty => "empty".to_owned(),
                    LockStatus::NotLocked(why) => format!("NOT locked: {why}"),
                };
                decrypted.push(json!({
                    "index": i,
                    "bytes": a.pt_len,
                    "recipient": opened.stanza_kind,
                    "appliance_key_id": key_id_hex(&appliance.key_id()),
                    "seconds": secs,
                    "gb_per_s": a.pt_len as f64 / secs / 1e9,
                    "memory": lock,
                }));
                drop(arena);
            }
        }
        let signers: Vec<String> = v.signers.iter().map(key_id_hex).collect();
        if o.json.json {
            output::json(&json!({
                "file": path.display().to_string(),
                "ok": true,
                "manifest": manifest_json(&v.manifest),
                "trusted_signers": signers,
                "threshold": trust.threshold,
                "signatures_seconds": t_sig.as_secs_f64(),
                "hashes_seconds": (t_hash - t_sig).as_secs_f64(),
                "decrypted": decrypted,
            }));
            return Ok(());
        }
        output::info(format!(
            "{}: signatures OK ({} of {} required, Ed25519 + ML-DSA-87 by {}) in {:.1} ms",
            path.display(),
            v.signers.len(),
            trust.threshold,
            signers.join(", "),
            t_sig.as_secs_f64() * 1e3
        ));
        output::info(format!(
            "{}: headers and ciphertext hashes OK ({} bytes) in {:.1} ms",
            path.display(),
            total,
            (t_hash - t_sig).as_secs_f64() * 1e3
        ));
        for d in &decrypted {
            output::info(format!(
                "{}: artifact {} decrypted via {} into memory that is {} ({} bytes in {:.1} ms, {:.2} GB/s), then wiped",
                path.display(),
                d["index"],
                d["recipient"].as_str().unwrap_or_default(),
                d["memory"].as_str().unwrap_or_default(),
                d["bytes"],
                d["seconds"].as_f64().unwrap_or_default() * 1e3,
                d["gb_per_s"].as_f64().unwrap_or_default()
            ));
        }
        output::info(format!("{}: OK", path.display()));
        Ok(())
    }
}
