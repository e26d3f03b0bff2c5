//! The real default model (SmolLM2-135M-Instruct Q4_1, fetched and hash-checked by
//! build/fetch-model, which `make test` runs first): seal, verify, decrypt into locked memory,
//! and check the decrypted bytes hash to the pinned SHA-256.

use std::path::PathBuf;

use predicates::str::contains;

use crate::util::TestEnv;

const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

pub fn model_path() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("build/cache/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run build/fetch-model (make test does)",
        p.display()
    );
    p
}

#[test]
fn real_model_seals_verifies_and_decrypts_to_the_pinned_hash() {
    use sha2::Digest;
    let env = TestEnv::new().with_keys();
    let model = model_path();
    let rpk = env.seal(&model, "smollm2.rpk", &[]);
    env.cmd()
        .arg("verify")
        .arg(&rpk)
        .arg("--decrypt")
        .assert()
        .success()
        .stderr(contains("98362432 bytes"));
    // Library path: decrypt into the arena and hash it.
    let trust = rempart::keys::TrustStore::load(&env.root.join("keys/trusted")).unwrap();
    let key = rempart::keys::read_key_file(
        &env.key("appliance.key"),
        rempart::keys::Kind::ApplianceSecret,
        &rempart::keys::PassphraseSource::None,
    )
    .unwrap();
    let appliance = rempart::keys::ApplianceSecret::from_seed(key.secret.unwrap());
    let src = rempart::bundle::FileAt::new(std::fs::File::open(&rpk).unwrap()).unwrap();
    let v = rempart::bundle::Envelope::parse(&src)
        .unwrap()
        .verify(&trust)
        .unwrap();
    let mut arena =
        rempart::secure::LockedBuf::new(v.manifest.artifacts[0].pt_len as usize, false).unwrap();
    rempart::bundle::open_artifact(&src, &v, 0, &appliance, &mut arena).unwrap();
    assert_eq!(
        hex::encode(sha2::Sha256::digest(arena.as_slice())),
        MODEL_SHA256
    );
    // The sealed file contains no 4 KiB window of the plaintext (spot-check at 64 places).
    let sealed = std::fs::read(&rpk).unwrap();
    let plain = arena.as_slice();
    for k in 0..64 {
        let at = k * (plain.len() / 64);
        let window = &plain[at..at + 64];
        if window.iter().all(|&b| b == window[0]) {
            continue;
        }
        assert!(
            sealed.windows(64).all(|w| w != window),
            "plaintext at {at} found in bundle"
        );
    }
}
