//! Known-answer self-tests of every primitive rempart relies on, run at every start before any
//! command (power-up self-tests in the FIPS 140-3 sense) and shown by `rempart selftest`.
//!
//! The expected answers (`answers.rs`, `mlkem1024.ct`, `mldsa87.sig`) were computed with an
//! independent implementation, pyca/cryptography on OpenSSL, by `build/gen-selftest-kats.py`;
//! the C2SP chunked-encryption answer is a Wycheproof vector. Each test runs rempart's own code
//! path where it has one (`crypto::kdf`, `crypto::kw`, `crypto::chunked`, `crypto::sig`) and the
//! underlying crate otherwise, and signature and decryption tests also check that a changed
//! input is refused.
//!
//! # Security
//! A failing test stops the process before it reads a key or a bundle (exit 8). In builds with
//! debug assertions, `REMPART_SELFTEST_FAULT=NAME` corrupts the input of the test `NAME`, so the
//! refusal itself is tested; release builds ignore it.

use std::time::Instant;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use hmac::{Hmac, Mac};
use ml_kem::kem::{Decapsulate, KeyExport};
use sha2::{Digest, Sha384, Sha512};

use crate::crypto::{Secret, chunked, ct_eq, kdf, kw, sig};

mod answers;
use answers::*;

const MLKEM_CT: &[u8; 1568] = include_bytes!("mlkem1024.ct");
const MLDSA_SIG: &[u8; 4627] = include_bytes!("mldsa87.sig");

/// One known-answer test's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// Which primitive.
    pub name: &'static str,
    /// Whether the answer matched (and a changed input was refused, where that applies).
    pub passed: bool,
    /// Time taken, microseconds.
    pub micros: u64,
}

/// All results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Each test, in order.
    pub tests: Vec<Outcome>,
    /// Total time, milliseconds.
    pub total_ms: f64,
}

impl Report {
    /// Names of the tests that failed.
    pub fn failed(&self) -> Vec<&'static str> {
        self.tests
            .iter()
            .filter(|t| !t.passed)
            .map(|t| t.name)
            .collect()
    }
}

type Kat = fn(&dyn Fn(&[u8]) -> Vec<u8>) -> bool;

/// The tests, by name. Each gets `input`, which returns its argument unchanged except under
/// fault injection.
const KATS: &[(&str, Kat)] = &[
    ("SHA-384", |i| {
        Sha384::digest(i(b"abc")).as_slice() == SHA384_ABC
    }),
    ("SHA-512", |i| {
        Sha512::digest(i(b"abc")).as_slice() == SHA512_ABC
    }),
    ("HMAC-SHA-384", |i| {
        <Hmac<Sha384> as KeyInit>::new_from_slice(HMAC384_KEY)
            .map(|m| m.chain_update(i(HMAC384_DATA)).finalize().into_bytes())
            .is_ok_and(|t| t.as_slice() == HMAC384_TAG)
    }),
    ("HKDF-SHA-384", |i| {
        let mut okm = [0u8; 42];
        kdf::hkdf_sha384(&i(HKDF_IKM), HKDF_SALT, &[HKDF_INFO], &mut okm);
        &okm == HKDF384_OKM
    }),
    ("AES-256-GCM", aes_gcm_kat),
    ("C2SP chunked AES-256-GCM", |i| {
        chunked::decrypt(C2SP_KEY, &[C2SP_CTX], &i(C2SP_CT))
            .is_ok_and(|m| Sha512::digest(&m).as_slice() == C2SP_MSG_SHA512)
            && {
                let mut bad = C2SP_CT.to_vec();
                if let Some(b) = bad.last_mut() {
                    *b ^= 1;
                }
                chunked::decrypt(C2SP_KEY, &[C2SP_CTX], &bad).is_err()
            }
    }),
    ("AES-256-KW", |i| {
        let kek = secret(KW_KEK);
        let key = secret(&i(KW_KEY));
        kw::wrap(&kek, &key).is_ok_and(|w| &w == KW_WRAPPED)
            && kw::unwrap(&kek, KW_WRAPPED).is_ok_and(|k| k.expose() == KW_KEY)
    }),
    ("Ed25519", |i| {
        let Ok(seed) = <[u8; 32]>::try_from(i(ED_SEED).as_slice()) else {
            return false;
        };
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        use ed25519_dalek::Signer as _;
        sk.verifying_key().as_bytes() == ED_PK
            && sk.sign(MSG).to_bytes() == *ED_SIG
            && sig::verify_ed25519(ED_PK, MSG, ED_SIG).is_ok()
            && sig::verify_ed25519(ED_PK, b"another message", ED_SIG).is_err()
    }),
    ("X25519", |i| {
        let Ok(s) = <[u8; 32]>::try_from(i(X25519_SCALAR).as_slice()) else {
            return false;
        };
        curve25519_dalek::MontgomeryPoint::mul_base_clamped(s).as_bytes() == X25519_PUBLIC
    }),
    ("ML-KEM-1024", |i| {
        let Ok(seed) = <[u8; 64]>::try_from(i(MLKEM_SEED).as_slice()) else {
            return false;
        };
        let dk = ml_kem::DecapsulationKey1024::from_seed(seed.into());
        let ek = dk.encapsulation_key().to_bytes();
        let mut bad = *MLKEM_CT;
        bad[0] ^= 1;
        Sha384::digest(ek.as_slice()).as_slice() == MLKEM_EK_SHA384
            && dk
                .decapsulate_slice(MLKEM_CT)
                .is_ok_and(|ss| ss.as_slice() == MLKEM_SS)
            // Implicit rejection: a changed ciphertext gives the secret derived from z.
            && dk
                .decapsulate_slice(&bad)
                .is_ok_and(|ss| ss.as_slice() == MLKEM_SS_REJECT)
    }),
    ("ML-DSA-87", |i| {
        let Ok(seed) = <[u8; 32]>::try_from(i(MLDSA_SEED).as_slice()) else {
            return false;
        };
        let sk = ml_dsa::SigningKey::<ml_dsa::MlDsa87>::from_seed(&seed.into());
        let pk = sk.expanded_key().verifying_key().encode();
        Sha384::digest(pk.as_slice()).as_slice() == MLDSA_PK_SHA384
            && sig::verify_mldsa87(pk.as_slice(), MLDSA_CTX, MSG, MLDSA_SIG).is_ok()
            && sig::verify_mldsa87(pk.as_slice(), b"another context", MSG, MLDSA_SIG).is_err()
    }),
    ("Argon2id", |i| {
        kdf::argon2id(
            &i(ARGON_PASS),
            ARGON_SALT,
            kdf::Argon2Params {
                m_kib: ARGON_M_KIB,
                t: ARGON_T,
                p: ARGON_P,
            },
        )
        .is_ok_and(|k| ct_eq(k.expose(), ARGON_TAG))
    }),
];

fn secret(b: &[u8]) -> Secret<32> {
    Secret::init_with(|s| {
        for (d, v) in s.iter_mut().zip(b) {
            *d = *v;
        }
    })
}

fn aes_gcm_kat(i: &dyn Fn(&[u8]) -> Vec<u8>) -> bool {
    let Ok(aead) = Aes256Gcm::new_from_slice(GCM_KEY) else {
        return false;
    };
    let nonce = (*GCM_NONCE).into();
    let mut buf = i(GCM_PT);
    let Ok(tag) = aead.encrypt_inout_detached(&nonce, GCM_AAD, buf.as_mut_slice().into()) else {
        return false;
    };
    let (ct, want_tag) = GCM_CT_TAG.split_at(GCM_PT.len());
    if buf != ct || tag.as_slice() != want_tag {
        return false;
    }
    let Ok(want_tag) = <[u8; 16]>::try_from(want_tag) else {
        return false;
    };
    let opened = aead
        .decrypt_inout_detached(&nonce, GCM_AAD, buf.as_mut_slice().into(), &want_tag.into())
        .is_ok()
        && buf == GCM_PT;
    let mut tampered = ct.to_vec();
    tampered[0] ^= 1;
    let refused = aead
        .decrypt_inout_detached(
            &nonce,
            GCM_AAD,
            tampered.as_mut_slice().into(),
            &want_tag.into(),
        )
        .is_err();
    opened && refused
}

/// The test whose input a debug build corrupts (`REMPART_SELFTEST_FAULT`), if any.
fn fault() -> Option<String> {
    if cfg!(debug_assertions) {
        std::env::var("REMPART_SELFTEST_FAULT").ok()
    } else {
        None
    }
}

/// The power-up result: the tests run once per process, on first call (`main` calls it before
/// any command; `rempart selftest` shows the same result).
pub fn power_up() -> &'static Report {
    static REPORT: std::sync::OnceLock<Report> = std::sync::OnceLock::new();
    REPORT.get_or_init(run)
}

/// Runs every known-answer test.
pub fn run() -> Report {
    let start = Instant::now();
    let fault = fault();
    let tests = KATS
        .iter()
        .map(|(name, kat)| {
            let t = Instant::now();
            let corrupt = fault.as_deref() == Some(*name);
            let input = move |b: &[u8]| {
                let mut v = b.to_vec();
                // The middle byte: clamping would hide a change of an X25519 scalar's first.
                let mid = v.len() / 2;
                if corrupt && let Some(x) = v.get_mut(mid) {
                    *x ^= 0x01;
                }
                v
            };
            let passed = kat(&input);
            Outcome {
                name,
                passed,
                micros: t.elapsed().as_micros() as u64,
            }
        })
        .collect();
    Report {
        tests,
        total_ms: start.elapsed().as_secs_f64() * 1e3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_answer_matches_the_independent_implementation() {
        let r = run();
        assert_eq!(r.tests.len(), 12);
        assert!(r.failed().is_empty(), "{:?}", r.failed());
    }

    #[test]
    fn a_corrupted_input_fails_exactly_its_test() {
        // The same corruption run() applies under REMPART_SELFTEST_FAULT.
        for (name, kat) in KATS {
            let corrupt = |b: &[u8]| {
                let mut v = b.to_vec();
                let mid = v.len() / 2;
                v[mid] ^= 1;
                v
            };
            assert!(!kat(&corrupt), "{name} passed with a corrupted input");
        }
    }
}
