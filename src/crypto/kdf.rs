//! Key derivation: HKDF-Expand-SHA-512 for C2SP chunked encryption (32-byte PRK, done directly
//! over HMAC because `hkdf` refuses a PRK shorter than the hash), HKDF-SHA-384 for deriving
//! sub-keys from seeds, and Argon2id for passphrases.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha384, Sha512};
use zeroize::Zeroize;

use super::Error;

/// HKDF-Expand (RFC 5869 §2.3) with HMAC-SHA-512 over a PRK of any length, `info` given as parts.
/// `out` must be at most 255 × 64 bytes.
pub fn hkdf_expand_sha512(prk: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let mut t = [0u8; 64];
    let mut t_len = 0usize;
    for (i, block) in out.chunks_mut(64).enumerate() {
        // Counter starts at 1; out.len() <= 255*64 is a caller invariant (76 bytes here).
        #[allow(
            clippy::expect_used,
            reason = "HKDF output is at most 255 blocks by construction"
        )]
        let counter = u8::try_from(i + 1).expect("HKDF-Expand output of at most 255 blocks");
        #[allow(clippy::expect_used, reason = "HMAC accepts keys of any length")]
        let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(prk)
            .expect("HMAC accepts keys of any length");
        mac.update(&t[..t_len]);
        for part in info {
            mac.update(part);
        }
        mac.update(&[counter]);
        let mut tag = mac.finalize().into_bytes();
        t.copy_from_slice(&tag);
        t_len = 64;
        block.copy_from_slice(&t[..block.len()]);
        tag.zeroize();
    }
    t.zeroize();
}

/// HKDF-SHA-384 (extract then expand) of `ikm` into `out`.
pub fn hkdf_sha384(ikm: &[u8], salt: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let hk = hkdf::Hkdf::<Sha384>::new(Some(salt), ikm);
    let info: Vec<u8> = info.concat();
    // out is at most a few hundred bytes by construction; expand only fails beyond 255*48.
    #[allow(
        clippy::expect_used,
        reason = "output length is a small constant at every call site"
    )]
    hk.expand(&info, out)
        .expect("HKDF-SHA-384 output of at most 255 blocks");
}

/// Argon2id parameters stored in passphrase-wrapped key files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Argon2Params {
    /// Default for new key files: 64 MiB, 3 passes, 1 lane (OWASP/RFC 9106 second option).
    pub const DEFAULT: Self = Self {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };
    /// Upper bounds accepted when reading a key file, so a hostile file cannot exhaust memory
    /// or time.
    pub const MAX: Self = Self {
        m_kib: 1024 * 1024,
        t: 16,
        p: 8,
    };
    /// Lower bounds accepted when reading a key file (weaker files are refused).
    pub const MIN: Self = Self {
        m_kib: 8 * 1024,
        t: 1,
        p: 1,
    };

    /// Whether these parameters lie within [`Self::MIN`]..=[`Self::MAX`].
    pub fn in_bounds(&self) -> bool {
        (Self::MIN.m_kib..=Self::MAX.m_kib).contains(&self.m_kib)
            && (Self::MIN.t..=Self::MAX.t).contains(&self.t)
            && (Self::MIN.p..=Self::MAX.p).contains(&self.p)
    }
}

/// Argon2id(passphrase, salt) → 32-byte key.
pub fn argon2id(
    passphrase: &[u8],
    salt: &[u8],
    params: Argon2Params,
) -> Result<super::Secret<32>, Error> {
    let p =
        argon2::Params::new(params.m_kib, params.t, params.p, Some(32)).map_err(|_| Error::Kdf)?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut result = Ok(());
    let key = super::Secret::init_with(|k| {
        result = a
            .hash_password_into(passphrase, salt, k)
            .map_err(|_| Error::Kdf);
    });
    result.map(|()| key)
}
