//! `inspect` (show, verify nothing) and `verify` (signatures, hashes, optionally decryption).

use std::path::Path;
use std::time::Instant;

use serde_json::json;

use super::{Cli, berr, fmt_time, now, output};
use crate::bundle::{self, Envelope, Manifest};
use crate::error::Result;
use crate::keys::{PassphraseSource, TrustStore, key_id_hex};
use crate::secure::{LockStatus, LockedBuf};

fn manifest_json(m: &Manifest) -> serde_json::Value {
    json!({
        "bundle_id": hex::encode(m.bundle_id),
        "name": m.name,
        "version": m.version,
        "created": fmt_time(m.created),
        "expires": m.expires.map(fmt_time),
        "expired": m.expires.is_some_and(|e| e <= now()),
        "marking": m.marking,
        "architecture": m.architecture,
        "quantization": m.quantization,
        "targets": m.targets.iter().map(key_id_hex).collect::<Vec<_>>(),
    })
}

pub(super) fn inspect(trusted: &Path, path: &Path, json_out: bool) -> Result<()> {
    let src = super::open_bundle(path)?;
    let env = Envelope::parse(&src).map_err(berr(path))?;
    let m = env.manifest_unverified().map_err(berr(path))?;
    let offsets = env.layout(&m).map_err(berr(path))?;
    let trust = TrustStore::load(trusted).ok();
    let signers: Vec<_> = env
        .signatures
        .iter()
        .map(|s| {
            let label = trust
                .as_ref()
                .and_then(|t| t.keys.iter().find(|(k, _)| k.key_id == s.key_id))
                .map(|(_, l)| l.clone());
            json!({"key_id": key_id_hex(&s.key_id), "in_trust_store": label.is_some(), "label": label})
        })
        .collect();
    let mut artifacts = Vec::new();
    for (i, (a, off)) in m.artifacts.iter().zip(&offsets).enumerate() {
        let h = bundle::read_header_unverified(&src, *off, a).map_err(berr(path))?;
        artifacts.push(json!({
            "index": i,
            "role": a.role.as_str(),
            "plaintext_bytes": a.pt_len,
            "offset": off,
            "header_sha384": hex::encode(a.header_sha384),
            "ciphertext_tree_sha384": hex::encode(a.ct_tree_sha384),
            "recipients": h.stanzas.iter().map(|s| json!({"kind": s.kind_name(), "key_id": key_id_hex(&s.key_id)})).collect::<Vec<_>>(),
        }));
    }
    let doc = json!({
        "file": path.display().to_string(),
        "bytes": env.file_len,
        "format": {"version": bundle::VERSION, "suite": "AES-256-GCM/C2SP-chunked/HKDF-SHA-512, SHA-384, Ed25519+ML-DSA-87"},
        "digest_sha384": hex::encode(env.digest()),
        "manifest": manifest_json(&m),
        "signatures": signers,
        "artifacts": artifacts,
        "verified": false,
    });
    if json_out {
        output::json(&doc);
        return Ok(());
    }
    output::line(format!(
        "bundle      {} ({} bytes, RPK format v{})",
        path.display(),
        env.file_len,
        bundle::VERSION
    ));
    output::line(format!("model       {} version {}", m.name, m.version));
    output::line(format!(
        "marking     {}",
        m.marking.as_deref().unwrap_or("(none)")
    ));
    output::line(format!(
        "model type  {} {}",
        m.architecture
            .as_deref()
            .unwrap_or("(unknown architecture)"),
        m.quantization
            .as_deref()
            .unwrap_or("(unknown quantisation)")
    ));
    output::line(format!("created     {}", fmt_time(m.created)));
    let exp = match m.expires {
        None => "never".to_owned(),
        Some(e) if e <= now() => format!("{} (EXPIRED)", fmt_time(e)),
        Some(e) => fmt_time(e),
    };
    output::line(format!("expires     {exp}"));
    output::line(format!(
        "targets     {}",
        if m.targets.is_empty() {
            "any appliance".to_owned()
        } else {
            m.targets
                .iter()
                .map(key_id_hex)
                .collect::<Vec<_>>()
                .join(", ")
        }
    ));
    output::line(format!("bundle id   {}", hex::encode(m.bundle_id)));
    output::line(format!("digest      sha384:{}", hex::encode(env.digest())));
    for s in &env.signatures {
        let t = trust
            .as_ref()
            .and_then(|t| t.keys.iter().find(|(k, _)| k.key_id == s.key_id));
        let who = t.map_or(
            "not in this appliance's trust store".to_owned(),
            |(_, l)| format!("trusted ({l})"),
        );
        output::line(format!(
            "signer      {} Ed25519+ML-DSA-87, {who}",
            key_id_hex(&s.key_id)
        ));
    }
    for (i, a) in artifacts.iter().enumerate() {
        output::line(format!(
            "artifact {i}  {} {} bytes, recipients: {}",
            a["role"].as_str().unwrap_or_default(),
            a["plaintext_bytes"],
            a["recipients"]
                .as_array()
                .map(|r| r
                    .iter()
                    .map(|x| format!(
                        "{}:{}",
                        x["kind"].as_str().unwrap_or_default(),
                        x["key_id"].as_str().unwrap_or_default()
                    ))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ));
    }
    output::line(
        "note        inspect checks structure only; run `rempart verify` to check signatures",
    );
    Ok(())
}

pub(super) struct VerifyOpts {
    pub json: bool,
    pub decrypt: bool,
    pub require_mlock: bool,
    pub allow_expired: bool,
    pub passphrase: PassphraseSource,
}

pub(super) fn verify(cli: &Cli, path: &Path, o: &VerifyOpts) -> Result<()> {
    let t0 = Instant::now();
    let src = super::open_bundle(path)?;
    let trust = TrustStore::load(&cli.trusted_dir())?;
    let env = Envelope::parse(&src).map_err(berr(path))?;
    let v = env.verify(&trust).map_err(berr(path))?;
    let t_sig = t0.elapsed();
    if let Some(e) = v.manifest.expires.filter(|&e| e <= now())
        && !o.allow_expired
    {
        {
            return Err(crate::Error::Expired {
                path: path.to_owned(),
                when: fmt_time(e),
            });
        }
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
        let appliance = super::load_appliance(&cli.root, &o.passphrase)?;
        for (i, a) in v.manifest.artifacts.iter().enumerate() {
            let t = Instant::now();
            let len = usize::try_from(a.pt_len)
                .map_err(|_| crate::Error::Usage("artifact too large for this machine".into()))?;
            let mut arena = LockedBuf::new(len, o.require_mlock)?;
            let opened =
                bundle::open_artifact(&src, &v, i, &appliance, &mut arena).map_err(berr(path))?;
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
    if o.json {
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
