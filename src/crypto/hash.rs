//! SHA-384 (CNSA 2.0 hash) for fingerprints and manifests, and the parallel tree hash of a
//! whole artifact ciphertext.

use rayon::prelude::*;
use sha2::{Digest, Sha384};

/// Length of a SHA-384 digest.
pub const SHA384_LEN: usize = 48;

/// Segment size of the ciphertext tree hash (16 MiB): segments are hashed in parallel.
pub const TREE_SEGMENT: usize = 16 << 20;

/// SHA-384 of the concatenation of `parts`.
pub fn sha384(parts: &[&[u8]]) -> [u8; SHA384_LEN] {
    let mut h = Sha384::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// SHA-256 of the concatenation of `parts`: only to name files as the world names them (a
/// model file's published digest, in a bundle's AI bill of materials), never as a security
/// binding (that is SHA-384).
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Incremental SHA-256 (a release's files, named as the world names them).
#[derive(Default, Clone)]
pub struct Sha256Stream(sha2::Sha256);

impl Sha256Stream {
    /// Absorbs more data.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The digest.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// Incremental SHA-384 (for data read in pieces).
#[derive(Default, Clone)]
pub struct Sha384Stream(Sha384);

impl Sha384Stream {
    /// Absorbs more data.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The digest.
    pub fn finish(self) -> [u8; SHA384_LEN] {
        self.0.finalize().into()
    }
}

/// Tree hash of `data`: `SHA-384("rempart tree v1" || len_u64be || SHA-384(seg_0) || ...)` over
/// [`TREE_SEGMENT`]-byte segments, hashed in parallel.
pub fn tree_sha384(data: &[u8]) -> [u8; SHA384_LEN] {
    let leaves: Vec<[u8; SHA384_LEN]> = data
        .par_chunks(TREE_SEGMENT)
        .map(|seg| sha384(&[seg]))
        .collect();
    tree_root(data.len() as u64, &leaves)
}

/// Combines the leaf hashes of a tree hash (see [`tree_sha384`]).
pub fn tree_root(total_len: u64, leaves: &[[u8; SHA384_LEN]]) -> [u8; SHA384_LEN] {
    let mut h = Sha384::new();
    h.update(b"rempart tree v1");
    h.update(total_len.to_be_bytes());
    for l in leaves {
        h.update(l);
    }
    h.finalize().into()
}

/// Short key id: the first 8 bytes of SHA-384(domain || public key bytes).
pub fn key_id(domain: &[u8], public: &[u8]) -> [u8; 8] {
    let d = sha384(&[domain, public]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    id
}
