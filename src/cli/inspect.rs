//! `inspect`: a bundle's header, manifest and signers, read without a key and verified not at
//! all (the signers are matched against the trust store by key id only).

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::args::JsonArg;
use super::{berr, output};
use crate::appliance::Root;
use crate::appliance::clock::{expired, fmt_time, now};
use crate::appliance::open_bundle;
use crate::bundle::{self, Envelope, Manifest};
use crate::error::Result;
use crate::keys::{TrustStore, key_id_hex};
use crate::secure::sandbox::FsPolicy;

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Bundle file.
    bundle: PathBuf,
    #[command(flatten)]
    json: JsonArg,
    /// Print the bundle's AI bill of materials (the CycloneDX 1.6 document in its manifest,
    /// not verified here: `verify` checks the signatures over it).
    #[arg(long, conflicts_with = "json")]
    aibom: bool,
}

impl InspectArgs {
    pub(super) fn policy(&self, root: &Root) -> FsPolicy {
        FsPolicy::default().read(root.trusted()).read(&self.bundle)
    }

    pub(super) fn run(&self, root: &Root) -> Result<()> {
        inspect(&root.trusted(), &self.bundle, self.json.json, self.aibom)
    }
}

pub(super) fn manifest_json(m: &Manifest) -> serde_json::Value {
    json!({
        "bundle_id": hex::encode(m.bundle_id),
        "name": m.name,
        "version": m.version,
        "created": fmt_time(m.created),
        "expires": m.expires.map(fmt_time),
        "expired": expired(m.expires),
        "marking": m.marking,
        "architecture": m.architecture,
        "quantization": m.quantization,
        "targets": m.targets.iter().map(key_id_hex).collect::<Vec<_>>(),
        "model_card": crate::aibom::summary_json(m.aibom.as_deref()),
    })
}

fn inspect(trusted: &Path, path: &Path, json_out: bool, aibom: bool) -> Result<()> {
    let src = open_bundle(path)?;
    let env = Envelope::parse(&src).map_err(berr(path))?;
    let m = env.manifest_unverified().map_err(berr(path))?;
    if aibom {
        let doc = crate::aibom::parse(m.aibom.as_deref()).ok_or_else(|| {
            crate::Error::Usage(format!(
                "{}: this bundle has no AI bill of materials (sealed before they existed)",
                path.display()
            ))
        })?;
        output::json(&doc);
        return Ok(());
    }
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
        "aibom": crate::aibom::parse(m.aibom.as_deref()),
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
    match crate::aibom::parse(m.aibom.as_deref()) {
        None => output::line("AI BOM      (none: sealed before AI bills of materials)"),
        Some(d) => {
            let s = crate::aibom::summary(&d);
            let or_none = |v: Option<String>| v.unwrap_or_else(|| "(not stated)".into());
            output::line(format!("licence     {}", or_none(s.license)));
            output::line(format!("supplier    {}", or_none(s.supplier)));
            output::line(format!("source      {}", or_none(s.source)));
            output::line(format!("intended    {}", or_none(s.intended_use)));
            output::line(format!(
                "AI BOM      CycloneDX 1.6, model card fields: {} of {} ({}); inspect --aibom prints it",
                s.present.len(),
                crate::aibom::FIELDS.len(),
                if s.present.is_empty() {
                    "none".to_owned()
                } else {
                    s.present.iter().copied().collect::<Vec<_>>().join(", ")
                }
            ));
        }
    }
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
