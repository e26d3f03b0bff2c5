//! Errors of the bundle format. `Copy`, no allocation, `&'static str` context naming the field.

use crate::crypto;

/// A bundle is malformed, tampered with, or not for this appliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The magic bytes are wrong: not a Rempart bundle (or not this part of one).
    #[error("not a Rempart bundle: bad magic in {0}")]
    BadMagic(&'static str),
    /// The format version is not one this build reads.
    #[error("unsupported bundle format version {0} (this build reads version 1)")]
    UnsupportedVersion(u16),
    /// The cipher suite is not one this build knows.
    #[error("unsupported cipher suite {0} (this build knows suite 1)")]
    UnsupportedSuite(u16),
    /// The data ends before the named field.
    #[error("truncated: data ends inside {0}")]
    Truncated(&'static str),
    /// A length field exceeds its bound.
    #[error("{what} length {len} exceeds the limit of {max}")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Declared length.
        len: u64,
        /// Bound.
        max: u64,
    },
    /// Bytes follow the end of the named structure.
    #[error("trailing data after {0}")]
    TrailingData(&'static str),
    /// Fields are out of order, duplicated, or otherwise not in canonical form.
    #[error("non-canonical encoding: {0}")]
    NonCanonical(&'static str),
    /// A field tag this version does not know.
    #[error("unknown field {tag:#06x} in {what}")]
    UnknownField {
        /// Structure.
        what: &'static str,
        /// Tag.
        tag: u16,
    },
    /// A required field is absent.
    #[error("missing field: {0}")]
    MissingField(&'static str),
    /// A field has an invalid value.
    #[error("invalid value in {0}")]
    InvalidValue(&'static str),
    /// The file is not exactly as long as its manifest says (truncated or extended).
    #[error(
        "bundle is {actual} bytes but its manifest describes {expected} (truncated or extended)"
    )]
    FileLength {
        /// Length the signed manifest implies.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// An artifact header does not match the signed manifest (swapped or modified).
    #[error("artifact {0}: header does not match the signed manifest (modified or swapped)")]
    HeaderMismatch(u16),
    /// An artifact's ciphertext does not match the signed manifest hash.
    #[error("artifact {0}: ciphertext does not match the signed manifest hash (modified)")]
    CiphertextMismatch(u16),
    /// No signature in the bundle is from a trusted publisher key.
    #[error("no signature from a trusted publisher (signed by: {0})")]
    UntrustedSigner(SignerList),
    /// A trusted signer's hybrid signature failed: which half.
    #[error("signature by trusted key {key} is invalid: {half}")]
    BadSignature {
        /// Signer key id (hex).
        key: KeyIdHex,
        /// Which half failed.
        half: crypto::Error,
    },
    /// Fewer valid trusted signatures than the policy requires.
    #[error("only {got} valid trusted signature(s), policy requires {need}")]
    BelowThreshold {
        /// Valid trusted signatures.
        got: usize,
        /// Threshold.
        need: usize,
    },
    /// No recipient stanza matches this appliance's key.
    #[error("not sealed for this appliance (no recipient stanza for key {0})")]
    NoRecipient(KeyIdHex),
    /// A matching stanza did not unwrap (modified wrap, or a different key with the same id).
    #[error("recipient stanza for key {0} does not unwrap (modified or wrong key)")]
    UnwrapFailed(KeyIdHex),
    /// The bundle's targets do not include this appliance.
    #[error("bundle targets other appliances, not {0}")]
    NotTargeted(KeyIdHex),
    /// Payload decryption failed (commitment, length grammar or chunk authentication).
    #[error("payload of artifact {artifact}: {source}")]
    Payload {
        /// Artifact index.
        artifact: u16,
        /// What failed.
        source: crypto::Error,
    },
    /// A cryptographic operation failed while sealing.
    #[error("sealing failed: {0}")]
    Seal(crypto::Error),
    /// Reading the bundle failed (I/O); the message names the offset.
    #[error("read error at offset {offset}: {kind}")]
    Io {
        /// Offset.
        offset: u64,
        /// Kind of I/O error.
        kind: std::io::ErrorKind,
    },
}

/// A key id printed as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyIdHex(pub [u8; 8]);

impl std::fmt::Display for KeyIdHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for KeyIdHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Up to four signer key ids, for error messages (no allocation).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SignerList {
    ids: [[u8; 8]; 4],
    n: usize,
    more: usize,
}

impl SignerList {
    /// Builds the list from the signature block's key ids.
    pub fn from_ids<'a>(ids: impl Iterator<Item = &'a [u8; 8]>) -> Self {
        let mut s = Self {
            ids: [[0; 8]; 4],
            n: 0,
            more: 0,
        };
        for id in ids {
            if let Some(slot) = s.ids.get_mut(s.n) {
                *slot = *id;
                s.n += 1;
            } else {
                s.more += 1;
            }
        }
        s
    }
}

impl std::fmt::Display for SignerList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, id) in self.ids.iter().take(self.n).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", KeyIdHex(*id))?;
        }
        if self.more > 0 {
            write!(f, " and {} more", self.more)?;
        }
        Ok(())
    }
}
