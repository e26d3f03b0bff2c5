//! Issue 22: a signed release. `sign-release` signs a release manifest (docs/release.md) with a
//! release key (Ed25519 + ML-DSA-87); `verify-release` checks it offline against the release
//! key's public half, then the binary and the SBOM against it. Every tampering is refused: the
//! manifest, either half of the signature, the binary, the SBOM, another key, and a bundle
//! signature passed off as a release signature.

use std::path::{Path, PathBuf};

use predicates::str::contains;

use crate::util::{TestEnv, exit};

struct Release {
    env: TestEnv,
    manifest: PathBuf,
    binary: PathBuf,
    sbom: PathBuf,
    key: PathBuf,
}

fn digests(p: &Path) -> serde_json::Value {
    let b = std::fs::read(p).unwrap();
    serde_json::json!({
        "name": p.file_name().unwrap().to_str().unwrap(),
        "bytes": b.len(),
        "sha256": hex::encode(rempart::crypto::hash::sha256(&[&b])),
        "sha384": hex::encode(rempart::crypto::hash::sha384(&[&b])),
    })
}

/// A release key (`keygen publisher` into its own directory), the test binary itself as the
/// "binary", an SBOM, and a manifest naming them, signed.
fn signed_release() -> Release {
    let env = TestEnv::new();
    let keys = env.path("release-keys");
    env.cmd()
        .args([
            "keygen",
            "publisher",
            "--no-passphrase",
            "--label",
            "rempart-release",
            "--out-dir",
        ])
        .arg(&keys)
        .assert()
        .success();
    let binary = env.path("rempart");
    std::fs::copy(env!("CARGO_BIN_EXE_rempart"), &binary).unwrap();
    let sbom = env.path("rempart.cdx.json");
    std::fs::write(
        &sbom,
        r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}"#,
    )
    .unwrap();
    let manifest = env.path("rempart-release.json");
    let m = serde_json::json!({
        "format": "rempart-release-manifest-1",
        "version": "0.1.0",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "toolchain": "rustc 1.95.0",
        "target": "x86_64-unknown-linux-gnu",
        "binary": digests(&binary),
        "sbom": digests(&sbom),
    });
    std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    env.cmd()
        .args(["sign-release", "--key"])
        .arg(keys.join("publisher.key"))
        .arg(&manifest)
        .assert()
        .success()
        .stderr(contains("signed release 0.1.0"));
    Release {
        manifest,
        binary,
        sbom,
        key: keys.join("publisher.pub"),
        env,
    }
}

impl Release {
    fn verify(&self) -> assert_cmd::assert::Assert {
        self.env
            .cmd()
            .arg("verify-release")
            .arg(&self.manifest)
            .arg("--key")
            .arg(&self.key)
            .arg("--binary")
            .arg(&self.binary)
            .arg("--sbom")
            .arg(&self.sbom)
            .assert()
    }

    fn sig(&self) -> PathBuf {
        PathBuf::from(format!("{}.sig", self.manifest.display()))
    }
}

#[test]
fn a_signed_release_verifies_offline_and_every_tampering_is_refused() {
    let r = signed_release();
    r.verify()
        .success()
        .stderr(contains("verified: Ed25519 and ML-DSA-87 signatures"));
    // Signing twice does not overwrite the signature.
    r.env
        .cmd()
        .args(["sign-release", "--key"])
        .arg(r.key.with_file_name("publisher.key"))
        .arg(&r.manifest)
        .assert()
        .code(exit::USAGE)
        .stderr(contains("already exists"));

    // The binary and the SBOM: one byte changed each.
    for f in [&r.binary, &r.sbom] {
        let good = std::fs::read(f).unwrap();
        let mut bad = good.clone();
        let i = bad.len() / 2;
        bad[i] ^= 1;
        std::fs::write(f, &bad).unwrap();
        r.verify()
            .code(exit::TAMPERED)
            .stderr(contains("does not match the signed manifest"));
        std::fs::write(f, &good).unwrap();
    }
    r.verify().success();

    // The manifest: a digest changed to match a substituted binary is a changed signature.
    let good = std::fs::read_to_string(&r.manifest).unwrap();
    let forged = good.replacen("0.1.0", "0.1.1", 1);
    std::fs::write(&r.manifest, &forged).unwrap();
    r.verify()
        .code(exit::SIGNATURE)
        .stderr(contains("release signature refused"));
    std::fs::write(&r.manifest, &good).unwrap();

    // Either half of the hybrid signature: both must verify.
    let sig_good = std::fs::read_to_string(r.sig()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&sig_good).unwrap();
    let hexsig = v["signature"].as_str().unwrap();
    for (at, which) in [(10, "Ed25519"), (hexsig.len() - 10, "ML-DSA-87")] {
        let mut s: Vec<u8> = hexsig.bytes().collect();
        s[at] = if s[at] == b'0' { b'1' } else { b'0' };
        let mut w = v.clone();
        w["signature"] = serde_json::json!(String::from_utf8(s).unwrap());
        std::fs::write(r.sig(), w.to_string()).unwrap();
        r.verify().code(exit::SIGNATURE).stderr(contains(which));
    }
    std::fs::write(r.sig(), &sig_good).unwrap();

    // Another key: refused by its id, and by its signature if the id is relabelled.
    let other = r.env.path("other-keys");
    r.env
        .cmd()
        .args(["keygen", "publisher", "--no-passphrase", "--out-dir"])
        .arg(&other)
        .assert()
        .success();
    r.env
        .cmd()
        .arg("verify-release")
        .arg(&r.manifest)
        .arg("--key")
        .arg(other.join("publisher.pub"))
        .arg("--binary")
        .arg(&r.binary)
        .arg("--sbom")
        .arg(&r.sbom)
        .assert()
        .code(exit::SIGNATURE)
        .stderr(contains("not by the release key given"));
    r.verify().success();
}

/// Domain separation: a bundle's manifest signature (context `rempart-rpk1-manifest`) over the
/// same bytes does not verify as a release signature.
#[test]
fn a_bundle_signature_is_not_a_release_signature() {
    let r = signed_release();
    let bytes = std::fs::read(&r.manifest).unwrap();
    let f = rempart::keys::read_key_file(
        &r.key.with_file_name("publisher.key"),
        rempart::keys::Kind::PublisherSecret,
        &rempart::keys::PassphraseSource::None,
    )
    .unwrap();
    let k = rempart::keys::PublisherSecret::from_seed(f.secret.unwrap());
    let as_bundle = k
        .signing_key()
        .sign(rempart::bundle::SIG_CONTEXT, &bytes)
        .unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.sig()).unwrap()).unwrap();
    v["signature"] = serde_json::json!(hex::encode(as_bundle));
    std::fs::write(r.sig(), v.to_string()).unwrap();
    r.verify()
        .code(exit::SIGNATURE)
        .stderr(contains("release signature refused"));
}
