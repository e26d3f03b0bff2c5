//! Property tests of the format: canonical round trips, and no panic on arbitrary bytes.

use proptest::prelude::*;

use super::*;

fn arb_entry() -> impl Strategy<Value = ArtifactEntry> {
    (
        0u8..4,
        0u64..(1 << 40),
        8u32..=MAX_HEADER_LEN,
        any::<[u8; 48]>(),
        any::<[u8; 48]>(),
    )
        .prop_map(|(r, pt_len, header_len, h, t)| ArtifactEntry {
            role: Role::from_u8(r + 1).unwrap(),
            pt_len,
            header_len,
            header_sha384: h,
            ct_tree_sha384: t,
        })
}

fn arb_manifest() -> impl Strategy<Value = Manifest> {
    (
        any::<[u8; 16]>(),
        "[A-Za-z0-9][A-Za-z0-9_-]{0,40}",
        1u64..u64::MAX,
        0u64..(1 << 40),
        proptest::option::of(1u64..1000),
        proptest::option::of("[ -~]{1,60}"),
        (
            proptest::option::of("[A-Za-z0-9._-]{1,32}"),
            proptest::option::of("[A-Za-z0-9._-]{1,32}"),
        ),
        proptest::collection::btree_set(any::<[u8; 8]>(), 0..5),
        proptest::collection::vec(arb_entry(), 1..4),
        proptest::option::of("[ -~]{0,40}"),
    )
        .prop_map(
            |(
                bundle_id,
                name,
                version,
                created,
                exp,
                marking,
                (architecture, quantization),
                targets,
                artifacts,
                license,
            )| Manifest {
                bundle_id,
                name,
                version,
                created,
                expires: exp.map(|d| created + d),
                marking,
                architecture,
                quantization,
                targets: targets.into_iter().collect(),
                artifacts,
                aibom: license.map(|l| {
                    serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.6", "l": l})
                        .to_string()
                }),
            },
        )
}

proptest! {
    #[test]
    fn manifest_round_trip_is_canonical(m in arb_manifest()) {
        let bytes = m.encode();
        let back = Manifest::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        prop_assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn manifest_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Manifest::decode(&bytes);
    }

    #[test]
    fn header_decode_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(h) = ArtifactHeader::decode(&bytes) {
            prop_assert_eq!(&h.encode(), &bytes);
        }
        let mut framed = header::MAGIC.to_vec();
        framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        framed.extend_from_slice(&bytes);
        if let Ok(h) = ArtifactHeader::decode(&framed) {
            prop_assert_eq!(&h.encode(), &framed);
        }
    }

    #[test]
    fn envelope_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), keep_magic in any::<bool>()) {
        let mut b = bytes;
        if keep_magic && b.len() >= 8 {
            b[..8].copy_from_slice(&MAGIC);
        }
        if let Ok(env) = Envelope::parse(&b) {
            let _ = env.manifest_unverified();
        }
    }
}

/// Issue 22: a manifest's AI BOM must be a CycloneDX 1.6 JSON document within 256 KiB; anything
/// else does not decode (and `seal` refuses to write it).
#[test]
fn an_aibom_that_is_not_cyclonedx_1_6_json_is_refused() {
    let mut rng = proptest::test_runner::TestRunner::deterministic();
    let m = proptest::strategy::ValueTree::current(&arb_manifest().new_tree(&mut rng).unwrap());
    let big = format!(
        r#"{{"bomFormat":"CycloneDX","specVersion":"1.6","x":"{}"}}"#,
        "a".repeat(crate::aibom::MAX_AIBOM)
    );
    for bad in [
        "not json",
        r#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#,
        r#"{"bomFormat":"SPDX","specVersion":"1.6"}"#,
        r#"["CycloneDX"]"#,
        big.as_str(),
    ] {
        let with = Manifest {
            aibom: Some(bad.to_owned()),
            ..m.clone()
        };
        assert!(
            matches!(
                Manifest::decode(&with.encode()),
                Err(Error::InvalidValue("AI bill of materials"))
            ),
            "{}",
            &bad[..bad.len().min(60)]
        );
    }
    let ok = Manifest {
        aibom: Some(r#"{"bomFormat":"CycloneDX","specVersion":"1.6"}"#.to_owned()),
        ..m
    };
    assert_eq!(Manifest::decode(&ok.encode()).unwrap(), ok);
}

#[test]
fn copy_verified_writes_the_exact_bundle_and_catches_any_changed_ciphertext_byte() {
    use crate::bundle::{CopyError, Envelope, copy_verified};
    // Three tree-hash segments and a bit, so several batches and a short last segment.
    let s = crate::cli::bench::synthetic_bundle(3 * crypto::hash::TREE_SEGMENT + 1000).unwrap();
    let v = Envelope::parse(&s.sealed)
        .unwrap()
        .verify(&s.trust)
        .unwrap();
    let mut copy = Vec::new();
    copy_verified(
        &s.sealed,
        &v,
        &mut |p| {
            copy.extend_from_slice(p);
            Ok(())
        },
        &|_| {},
    )
    .unwrap();
    assert!(copy == s.sealed, "the copy differs from the bundle");
    // One flipped byte in the header, the first segment or the last one is caught.
    let header = usize::try_from(v.offsets[0]).unwrap();
    for at in [header + 3, header + 5000, s.sealed.len() - 1] {
        let mut bad = s.sealed.clone();
        bad[at] ^= 0x80;
        let r = copy_verified(&bad, &v, &mut |_| Ok(()), &|_| {});
        assert!(
            matches!(r, Err(CopyError::Bundle(Error::CiphertextMismatch(0)))),
            "flip at {at}: {r:?}"
        );
    }
    // A failed write is reported as such.
    let r = copy_verified(
        &s.sealed,
        &v,
        &mut |_| Err(std::io::Error::from_raw_os_error(28)),
        &|_| {},
    );
    assert!(matches!(r, Err(CopyError::Write(e)) if e.raw_os_error() == Some(28)));
    // A source of another length than the manifest describes is refused before any write.
    let mut longer = s.sealed;
    longer.push(0);
    let r = copy_verified(&longer, &v, &mut |_| panic!("written"), &|_| {});
    assert!(matches!(r, Err(CopyError::Bundle(_))));
}
