//! `sign-release` and `verify-release`: a release manifest (the static binary's and the SBOM's
//! digests, the commit, the toolchain, the build's inputs; docs/release.md) signed with a
//! release key in the appliance's own scheme, Ed25519 and ML-DSA-87, both of which must verify.
//!
//! # Security
//! The release key is a publisher-kind key pair (`keygen publisher`) kept for releases only:
//! its signatures use their own context, `rempart-release-manifest-v1`, so a bundle signature
//! can never pass as a release signature, nor the reverse
//! (`tests/cli/release.rs::a_bundle_signature_is_not_a_release_signature`). Verification is
//! offline and needs only the release key's public half. Custody: SECURITY.md section 7.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::output;
use crate::crypto::hash::{Sha256Stream, Sha384Stream};
use crate::error::Result;
use crate::keys::{self, Kind, PublisherPublic, PublisherSecret, key_id_hex, read_key_file};
use crate::secure::sandbox::FsPolicy;

/// The signature context of release manifests (never a bundle's, `bundle::SIG_CONTEXT`).
pub const RELEASE_CONTEXT: &[u8] = b"rempart-release-manifest-v1";
/// The manifest's `format`.
pub const MANIFEST_FORMAT: &str = "rempart-release-manifest-1";
/// The signature file's `format`.
pub const SIGNATURE_FORMAT: &str = "rempart-release-signature-1";
/// Largest manifest or signature file read.
const MAX_DOC: u64 = 1 << 20;

/// `sign-release` arguments.
#[derive(Debug, Args)]
pub struct SignReleaseArgs {
    /// The release manifest (JSON, docs/release.md), signed byte for byte as it is.
    manifest: PathBuf,
    /// The release secret key (a publisher-kind key kept for releases only).
    #[arg(long)]
    key: PathBuf,
    /// Passphrase file for a protected key.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// Where the signature goes (default: MANIFEST.sig).
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
}

/// `verify-release` arguments.
#[derive(Debug, Args)]
pub struct VerifyReleaseArgs {
    /// The release manifest.
    manifest: PathBuf,
    /// The release public key to trust (the publisher-kind `.pub` file published with it).
    #[arg(long)]
    key: PathBuf,
    /// The signature (default: MANIFEST.sig).
    #[arg(long)]
    signature: Option<PathBuf>,
    /// The binary the manifest names.
    #[arg(long)]
    binary: PathBuf,
    /// The SBOM the manifest names.
    #[arg(long)]
    sbom: PathBuf,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

fn sig_path(manifest: &Path, given: Option<&PathBuf>) -> PathBuf {
    given.cloned().unwrap_or_else(|| {
        let mut s = manifest.as_os_str().to_owned();
        s.push(".sig");
        PathBuf::from(s)
    })
}

impl SignReleaseArgs {
    pub(super) fn policy(&self) -> FsPolicy {
        let out = sig_path(&self.manifest, self.out.as_ref());
        FsPolicy::default()
            .read(&self.manifest)
            .read(&self.key)
            .with_read(self.passphrase_file.iter().cloned())
            .write(crate::secure::fs::parent_dir(&out))
    }

    pub(super) fn run(&self) -> Result<()> {
        let out = sig_path(&self.manifest, self.out.as_ref());
        if out.exists() {
            return Err(crate::Error::Exists { path: out });
        }
        let bytes = read_doc(&self.manifest)?;
        let m = parse_manifest(&self.manifest, &bytes)?;
        let pass = super::args::source(self.passphrase_file.as_deref());
        let f = read_key_file(&self.key, Kind::PublisherSecret, &pass)?;
        let seed = f.secret.ok_or(keys::Error::Malformed {
            path: self.key.clone(),
            what: "no secret",
        })?;
        let k = PublisherSecret::from_seed(seed);
        let sig = k
            .signing_key()
            .sign(RELEASE_CONTEXT, &bytes)
            .map_err(|e| crate::Error::Internal(format!("signing failed: {e}")))?;
        let doc = json!({
            "format": SIGNATURE_FORMAT,
            "key_id": key_id_hex(&k.key_id()),
            "signature": hex::encode(sig),
        });
        let body = output::json_string(&doc) + "\n";
        crate::secure::fs::create_new(&out, 0o644, body.as_bytes()).map_err(|source| {
            crate::Error::Io {
                path: out.clone(),
                source,
            }
        })?;
        output::info(format!(
            "signed release {} ({}) with key {} -> {}",
            m["version"].as_str().unwrap_or("?"),
            m["commit"].as_str().unwrap_or("?"),
            key_id_hex(&k.key_id()),
            out.display()
        ));
        Ok(())
    }
}

impl VerifyReleaseArgs {
    pub(super) fn policy(&self) -> FsPolicy {
        FsPolicy::default()
            .read(&self.manifest)
            .read(&self.key)
            .read(sig_path(&self.manifest, self.signature.as_ref()))
            .read(&self.binary)
            .read(&self.sbom)
    }

    pub(super) fn run(&self) -> Result<()> {
        let bytes = read_doc(&self.manifest)?;
        let sig_file = sig_path(&self.manifest, self.signature.as_ref());
        let sig_doc: serde_json::Value =
            serde_json::from_slice(&read_doc(&sig_file)?).map_err(|e| mismatch(&sig_file, e))?;
        let f = read_key_file(
            &self.key,
            Kind::PublisherPublic,
            &keys::PassphraseSource::None,
        )?;
        let key = PublisherPublic::from_bytes(&f.public).map_err(|_| keys::Error::Malformed {
            path: self.key.clone(),
            what: "not a publisher public key",
        })?;
        let bad_sig = |reason: String| crate::Error::ReleaseSignature {
            path: sig_file.clone(),
            reason,
        };
        if sig_doc["format"] != SIGNATURE_FORMAT {
            return Err(mismatch(&sig_file, "not a rempart release signature"));
        }
        if sig_doc["key_id"] != key_id_hex(&key.key_id).as_str() {
            return Err(bad_sig(format!(
                "signed by key {}, not by the release key given ({})",
                sig_doc["key_id"].as_str().unwrap_or("?"),
                key_id_hex(&key.key_id)
            )));
        }
        let sig = sig_doc["signature"]
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .ok_or_else(|| mismatch(&sig_file, "signature is not hex"))?;
        key.pk
            .verify(RELEASE_CONTEXT, &bytes, &sig)
            .map_err(|e| bad_sig(format!("{e} (the manifest or the signature was changed)")))?;
        // Signed: now the manifest's statements about the files.
        let m = parse_manifest(&self.manifest, &bytes)?;
        check_file(&self.binary, &m["binary"], "binary")?;
        check_file(&self.sbom, &m["sbom"], "SBOM")?;
        if self.json {
            output::json(&json!({
                "ok": true,
                "key_id": key_id_hex(&key.key_id),
                "version": m["version"],
                "commit": m["commit"],
                "toolchain": m["toolchain"],
                "binary_sha256": m["binary"]["sha256"],
                "sbom_sha256": m["sbom"]["sha256"],
            }));
        } else {
            output::info(format!(
                "release {} (commit {}, {}) verified: Ed25519 and ML-DSA-87 signatures by release key {}; binary and SBOM match",
                m["version"].as_str().unwrap_or("?"),
                m["commit"].as_str().unwrap_or("?"),
                m["toolchain"].as_str().unwrap_or("?"),
                key_id_hex(&key.key_id)
            ));
        }
        Ok(())
    }
}

fn mismatch(path: &Path, what: impl std::fmt::Display) -> crate::Error {
    crate::Error::ReleaseMismatch {
        path: path.to_owned(),
        what: what.to_string(),
    }
}

fn read_doc(path: &Path) -> Result<Vec<u8>> {
    crate::secure::fs::read_capped(path, MAX_DOC).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => mismatch(path, e),
        _ => crate::Error::Io {
            path: path.to_owned(),
            source: e,
        },
    })
}

/// The manifest, parsed and checked for the fields verification uses.
fn parse_manifest(path: &Path, bytes: &[u8]) -> Result<serde_json::Value> {
    let m: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| mismatch(path, e))?;
    if m["format"] != MANIFEST_FORMAT {
        return Err(mismatch(
            path,
            format!("not a release manifest (format must be {MANIFEST_FORMAT})"),
        ));
    }
    for part in ["binary", "sbom"] {
        let p = &m[part];
        let ok = p["bytes"].is_u64()
            && [("sha256", 64), ("sha384", 96)].iter().all(|(k, n)| {
                p[*k]
                    .as_str()
                    .is_some_and(|h| h.len() == *n && h.bytes().all(|c| c.is_ascii_hexdigit()))
            });
        if !ok {
            return Err(mismatch(
                path,
                format!("{part}: bytes, sha256 and sha384 are required"),
            ));
        }
    }
    Ok(m)
}

/// Checks `path` against a manifest entry: size, SHA-256 and SHA-384 (read once, streaming).
fn check_file(path: &Path, want: &serde_json::Value, what: &str) -> Result<()> {
    let io = |source| crate::Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = crate::secure::fs::open_regular(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => mismatch(path, e),
        _ => io(e),
    })?;
    let mut h256 = Sha256Stream::default();
    let mut h384 = Sha384Stream::default();
    let mut n = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = f.read(&mut buf).map_err(io)?;
        if k == 0 {
            break;
        }
        let chunk = buf.get(..k).unwrap_or_default();
        h256.update(chunk);
        h384.update(chunk);
        n += k as u64;
    }
    let got = (n, hex::encode(h256.finish()), hex::encode(h384.finish()));
    if Some(got.0) != want["bytes"].as_u64()
        || want["sha256"] != got.1.as_str()
        || want["sha384"] != got.2.as_str()
    {
        return Err(mismatch(
            path,
            format!(
                "the {what} does not match the signed manifest (sha256 {}, {} bytes; the manifest says sha256 {}, {} bytes)",
                got.1,
                got.0,
                want["sha256"].as_str().unwrap_or("?"),
                want["bytes"]
            ),
        ));
    }
    Ok(())
}
