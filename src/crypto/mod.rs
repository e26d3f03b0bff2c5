//! The only module that names RustCrypto and dalek crates.
//!
//! Everything above it (bundle, keys, cli) speaks in terms of the small, typed functions here:
//! C2SP chunked encryption with AES-256-GCM ([`chunked`]), AES-256 key wrap ([`kw`]), the hybrid
//! Ed25519 + ML-DSA-87 signature ([`sig`]), the hybrid ML-KEM-1024 + X25519 recipient ([`kem`]),
//! key derivation ([`kdf`]), the MAC of the appliance's own files ([`mac`]), hashing ([`hash`]) and the OS random generator ([`rng`]).
//!
//! # Security
//! Secret inputs and outputs are [`Secret`] values: zeroized on drop, never `Debug`-printed, never
//! cloned. Comparisons of commitments and MACs are constant-time (`subtle`).

pub mod chunked;
mod error;
pub mod hash;
pub mod kdf;
pub mod kem;
pub mod kw;
pub mod mac;
pub mod rng;
pub mod sig;

#[cfg(test)]
mod tests;

pub use error::Error;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A fixed-size secret (file key, key-encryption key, seed) that is wiped on drop.
///
/// It has no `Clone`, `Debug`, `Display` or `Serialize`: the bytes are reachable only through
/// [`Secret::expose`] at the point of use.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secret<const N: usize>(Box<[u8; N]>);

impl<const N: usize> Secret<N> {
    /// A secret initialised in place by `init` (so no copy of the bytes is left on the stack).
    pub fn init_with(init: impl FnOnce(&mut [u8; N])) -> Self {
        let mut s = Self(Box::new([0u8; N]));
        init(&mut s.0);
        s
    }

    /// A fresh secret from the OS random generator.
    pub fn random() -> Result<Self, Error> {
        let mut s = Self(Box::new([0u8; N]));
        rng::fill(s.0.as_mut_slice())?;
        Ok(s)
    }

    /// Copies `bytes` into a new secret. The caller wipes its own copy.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: &[u8; N] = bytes.try_into().ok()?;
        Some(Self::init_with(|s| s.copy_from_slice(arr)))
    }

    /// The secret bytes, for use at the point of need only.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> std::fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Constant-time equality of two byte strings of the same public length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
