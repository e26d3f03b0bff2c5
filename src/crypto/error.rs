//! Errors of the cryptographic layer. They carry no key material, only what failed.

/// A cryptographic operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system's random generator failed.
    #[error("the operating system random generator failed")]
    Rng,
    /// The key commitment did not match: wrong key, or the header or salt was modified.
    #[error("key commitment mismatch (wrong key, or header/salt modified)")]
    Commitment,
    /// A chunk failed AEAD authentication (tampered, reordered, truncated or wrong key).
    #[error("chunk {0} failed authentication (tampered, reordered or truncated)")]
    ChunkAuth(u64),
    /// The ciphertext length is impossible for the chunked-encryption grammar.
    #[error("ciphertext length {0} is invalid (truncated or extended)")]
    Length(u64),
    /// The ciphertext has more chunks than the format allows.
    #[error("too many chunks")]
    TooManyChunks,
    /// A wrapped key did not unwrap (wrong key-encryption key or modified wrap).
    #[error("key unwrap failed (not wrapped for this key, or modified)")]
    Unwrap,
    /// A public key, signature or ciphertext has the wrong size or encoding.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The Ed25519 half of a hybrid signature did not verify.
    #[error("Ed25519 signature invalid")]
    Ed25519,
    /// The ML-DSA-87 half of a hybrid signature did not verify.
    #[error("ML-DSA-87 signature invalid")]
    MlDsa,
    /// Signing failed (ML-DSA rejection sampling gave up, practically impossible).
    #[error("signing failed")]
    Sign,
    /// The passphrase KDF rejected its parameters.
    #[error("passphrase KDF parameters rejected")]
    Kdf,
}
