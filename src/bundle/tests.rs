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
