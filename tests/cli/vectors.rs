//! The committed bundle vectors (tests/vectors, made by examples/gen_vectors.rs): each must give
//! its exact outcome through the CLI (`verify --decrypt`), and through the library's decrypt
//! path alone (no whole-ciphertext hash first) each payload attack must be caught by the
//! commitment, the length grammar or a chunk tag, with the arena left all zero.

use std::path::{Path, PathBuf};

use predicates::str::contains;
use rempart::bundle::{self, Envelope, FileAt};
use rempart::crypto;
use rempart::keys::{Kind, PassphraseSource, TrustStore, read_key_file};
use rempart::secure::LockedBuf;

use crate::util::exit;
use crate::util::{TestEnv, chmod};

/// (vector, exit code of `verify --decrypt`, message fragment).
const EXPECTED: &[(&str, i32, &str)] = &[
    ("good_aes_kw", exit::OK, "OK"),
    ("good_hybrid", exit::OK, "via mlkem1024-x25519"),
    ("good_empty", exit::OK, "OK"),
    ("good_exact_chunk", exit::OK, "OK"),
    (
        "bad_magic",
        exit::TAMPERED,
        "not a Rempart bundle: bad magic",
    ),
    (
        "unknown_version",
        exit::TAMPERED,
        "unsupported bundle format version 2",
    ),
    (
        "unknown_suite",
        exit::TAMPERED,
        "unsupported cipher suite 9",
    ),
    (
        "truncated_preamble",
        exit::TAMPERED,
        "truncated: data ends inside preamble",
    ),
    (
        "manifest_len_oversized",
        exit::TAMPERED,
        "manifest length 1048577 exceeds the limit",
    ),
    (
        "manifest_len_past_eof",
        exit::TAMPERED,
        "truncated: data ends inside manifest",
    ),
    (
        "sig_block_len_oversized",
        exit::TAMPERED,
        "signature block length 4294967295 exceeds the limit",
    ),
    (
        "manifest_bit_flip",
        exit::SIGNATURE,
        "Ed25519 signature invalid",
    ),
    (
        "sig_ed25519_flip",
        exit::SIGNATURE,
        "Ed25519 signature invalid",
    ),
    (
        "sig_mldsa_flip",
        exit::SIGNATURE,
        "ML-DSA-87 signature invalid",
    ),
    ("sig_count_zero", exit::TAMPERED, "missing field: signature"),
    (
        "sig_count_two",
        exit::TAMPERED,
        "truncated: data ends inside signature",
    ),
    (
        "untrusted_signer",
        exit::SIGNATURE,
        "no signature from a trusted publisher",
    ),
    (
        "header_magic_flip",
        exit::TAMPERED,
        "header does not match the signed manifest",
    ),
    (
        "header_stanza_flip",
        exit::TAMPERED,
        "header does not match the signed manifest",
    ),
    (
        "header_length_flip",
        exit::TAMPERED,
        "header does not match the signed manifest",
    ),
    (
        "salt_flip",
        exit::TAMPERED,
        "ciphertext does not match the signed manifest hash",
    ),
    (
        "commitment_flip",
        exit::TAMPERED,
        "ciphertext does not match the signed manifest hash",
    ),
    (
        "chunk_body_flip",
        exit::TAMPERED,
        "ciphertext does not match the signed manifest hash",
    ),
    (
        "tag_flip",
        exit::TAMPERED,
        "ciphertext does not match the signed manifest hash",
    ),
    (
        "last_tag_flip",
        exit::TAMPERED,
        "ciphertext does not match the signed manifest hash",
    ),
    (
        "chunks_swapped",
        exit::TAMPERED,
        "ciphertext does not match the signed manifest hash",
    ),
    (
        "chunk_duplicated",
        exit::TAMPERED,
        "ciphertext does not match the signed manifest hash",
    ),
    (
        "last_chunk_missing",
        exit::TAMPERED,
        "truncated or extended",
    ),
    (
        "truncated_mid_chunk",
        exit::TAMPERED,
        "truncated or extended",
    ),
    ("trailing_byte", exit::TAMPERED, "truncated or extended"),
    ("trailing_chunk", exit::TAMPERED, "truncated or extended"),
    (
        "other_appliance_target",
        exit::POLICY,
        "bundle targets other appliances",
    ),
    (
        "other_appliance_no_target",
        exit::POLICY,
        "not sealed for this appliance",
    ),
    ("expired", exit::POLICY, "expired"),
    (
        "signed_unknown_field",
        exit::TAMPERED,
        "unknown field 0x0fff in manifest",
    ),
    (
        "signed_duplicate_field",
        exit::TAMPERED,
        "non-canonical encoding",
    ),
    (
        "signed_name_traversal",
        exit::TAMPERED,
        "invalid value in model name",
    ),
    (
        "signed_zero_version",
        exit::TAMPERED,
        "version (must be at least 1)",
    ),
    ("signed_trailing_garbage", exit::TAMPERED, "truncated"),
];

pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

pub fn vector_env() -> TestEnv {
    let env = TestEnv::new();
    let key = env.key("appliance.key");
    std::fs::copy(vectors_dir().join("keys/appliance.key"), &key).unwrap();
    chmod(&key, 0o600);
    env.cmd()
        .arg("trust")
        .arg("add")
        .arg(vectors_dir().join("keys/publisher.pub"))
        .assert()
        .success();
    env
}

#[test]
fn every_vector_file_has_an_expectation_and_bad_ones_outnumber_good_ones() {
    let mut files: Vec<String> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "rpk").then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    files.sort();
    let mut names: Vec<String> = EXPECTED.iter().map(|(n, ..)| (*n).to_owned()).collect();
    names.sort();
    assert_eq!(files, names);
    let good = EXPECTED
        .iter()
        .filter(|(_, code, _)| *code == exit::OK)
        .count();
    assert!(
        EXPECTED.len() - good > 5 * good,
        "{good} good of {}",
        EXPECTED.len()
    );
}

#[test]
fn vectors_give_their_exact_outcome_through_the_cli() {
    let env = vector_env();
    for (name, code, msg) in EXPECTED {
        let path = vectors_dir().join(format!("{name}.rpk"));
        let a = env
            .cmd()
            .arg("verify")
            .arg(&path)
            .arg("--decrypt")
            .assert()
            .code(*code);
        let a = a.stderr(contains(*msg));
        if *code != exit::OK {
            // One clear line naming the file; no panic, no backtrace.
            a.stderr(contains(format!("{name}.rpk")))
                .stderr(contains("panicked").not());
        }
    }
}

use predicates::prelude::PredicateBooleanExt;

/// What the decrypt path alone reports for a payload attack.
/// The vector appliance key and a trust store holding the vector publisher, for library calls.
fn vector_keys() -> (
    rempart::keys::ApplianceSecret,
    TrustStore,
    tempfile::TempDir,
) {
    let dir = vectors_dir();
    let tmp = tempfile::tempdir().unwrap();
    let key_path = tmp.path().join("appliance.key");
    std::fs::copy(dir.join("keys/appliance.key"), &key_path).unwrap();
    chmod(&key_path, 0o600);
    let seed = read_key_file(&key_path, Kind::ApplianceSecret, &PassphraseSource::None)
        .unwrap()
        .secret
        .unwrap();
    let appliance = rempart::keys::ApplianceSecret::from_seed(seed);
    let mut trust = TrustStore::load(&tmp.path().join("trusted")).unwrap();
    trust.add(&dir.join("keys/publisher.pub")).unwrap();
    (appliance, trust, tmp)
}

fn payload_error(name: &str) -> bundle::Error {
    let dir = vectors_dir();
    let (appliance, trust, _tmp) = vector_keys();
    let src = FileAt::new(std::fs::File::open(dir.join(format!("{name}.rpk"))).unwrap()).unwrap();
    let v = Envelope::parse(&src).unwrap().verify(&trust).unwrap();
    let mut arena = LockedBuf::new(v.manifest.artifacts[0].pt_len as usize, false).unwrap();
    let err = bundle::open_artifact(&src, &v, 0, &appliance, &mut arena).unwrap_err();
    assert!(
        arena.as_slice().iter().all(|&b| b == 0),
        "{name}: plaintext left in the arena"
    );
    err
}

#[test]
fn payload_attacks_are_caught_by_the_decrypt_path_alone() {
    use bundle::Error::Payload;
    use crypto::Error::{ChunkAuth, Commitment};
    let cases: &[(&str, bundle::Error)] = &[
        (
            "salt_flip",
            Payload {
                artifact: 0,
                source: Commitment,
            },
        ),
        (
            "commitment_flip",
            Payload {
                artifact: 0,
                source: Commitment,
            },
        ),
        (
            "tag_flip",
            Payload {
                artifact: 0,
                source: ChunkAuth(0),
            },
        ),
        (
            "chunk_body_flip",
            Payload {
                artifact: 0,
                source: ChunkAuth(1),
            },
        ),
        (
            "chunks_swapped",
            Payload {
                artifact: 0,
                source: ChunkAuth(0),
            },
        ),
        (
            "chunk_duplicated",
            Payload {
                artifact: 0,
                source: ChunkAuth(1),
            },
        ),
        (
            "last_tag_flip",
            Payload {
                artifact: 0,
                source: ChunkAuth(2),
            },
        ),
        ("header_stanza_flip", bundle::Error::HeaderMismatch(0)),
    ];
    for (name, expected) in cases {
        assert_eq!(&payload_error(name), expected, "{name}");
    }
}

#[test]
fn good_vectors_decrypt_to_the_generator_payload() {
    let dir = vectors_dir();
    let (appliance, trust, _tmp) = vector_keys();
    for (name, len) in [
        ("good_aes_kw", 2 * 16384 + 232),
        ("good_hybrid", 2 * 16384 + 232),
        ("good_empty", 0),
        ("good_exact_chunk", 16384),
    ] {
        let src =
            FileAt::new(std::fs::File::open(dir.join(format!("{name}.rpk"))).unwrap()).unwrap();
        let v = Envelope::parse(&src).unwrap().verify(&trust).unwrap();
        bundle::verify_ciphertexts(&src, &v, &|_| {}).unwrap();
        let mut arena = LockedBuf::new(len, false).unwrap();
        bundle::open_artifact(&src, &v, 0, &appliance, &mut arena).unwrap();
        let expected: Vec<u8> = (0..len).map(|i| (i * 131 + 7) as u8).collect();
        assert_eq!(arena.as_slice(), &expected[..], "{name}");
        assert_eq!(v.manifest.name, "vector-model");
        assert_eq!(v.manifest.marking.as_deref(), Some("UNCLASSIFIED//TEST"));
    }
}

/// Mix-and-match: the artifact (header and ciphertext) of one validly signed bundle grafted into
/// another validly signed bundle of the same size is refused before any chunk is decrypted.
#[test]
fn artifact_from_another_bundle_is_refused() {
    let env = TestEnv::new().with_keys();
    let model = env.model(40_000);
    let a = std::fs::read(env.seal(&model, "a.rpk", &[])).unwrap();
    let b = std::fs::read(env.seal(&model, "b.rpk", &[])).unwrap();
    assert_eq!(a.len(), b.len());
    let m_len = u32::from_be_bytes(a[12..16].try_into().unwrap()) as usize;
    let s_len = u32::from_be_bytes(a[16..20].try_into().unwrap()) as usize;
    let start = 20 + m_len + s_len;
    let mixed = [&a[..start], &b[start..]].concat();
    let path = env.path("mixed.rpk");
    std::fs::write(&path, mixed).unwrap();
    env.cmd()
        .arg("verify")
        .arg(&path)
        .arg("--decrypt")
        .assert()
        .code(exit::TAMPERED)
        .stderr(contains(
            "artifact 0: header does not match the signed manifest",
        ));
}
