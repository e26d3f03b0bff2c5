//! Entry points for cargo-fuzz (fuzz/), compiled only with `--cfg fuzzing`. Signature checks are
//! bypassed by calling the parsers directly, so the fuzzer reaches the manifest and header code.

use crate::bundle::{self, ArtifactHeader, Envelope, Manifest};

/// Parses a whole bundle front and, unauthenticated, its manifest and layout.
pub fn envelope(data: &[u8]) {
    if let Ok(env) = Envelope::parse(data) {
        if let Ok(m) = env.manifest_unverified() {
            if let Ok(offsets) = env.layout(&m) {
                for (a, off) in m.artifacts.iter().zip(offsets) {
                    let _ = bundle::read_header_unverified(data, off, a);
                }
            }
        }
    }
}

/// Decodes a manifest and checks the canonical round trip.
pub fn manifest(data: &[u8]) {
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(m.encode(), data, "manifest encoding is not canonical");
    }
}

/// Decodes an artifact header and checks the canonical round trip.
pub fn header(data: &[u8]) {
    if let Ok(h) = ArtifactHeader::decode(data) {
        assert_eq!(h.encode(), data, "header encoding is not canonical");
    }
}
