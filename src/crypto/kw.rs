//! AES-256 key wrap (RFC 3394 / SP 800-38F KW) of 32-byte file keys: the default recipient.
//!
//! # Security
//! Only fixed-size wraps are accepted: the wrapped key must be exactly 40 bytes and unwrap to
//! exactly 32 bytes; anything else is "no match", never a partial key.

use aes_kw::KwAes256;
use aes_kw::cipher::KeyInit;

use super::{Error, Secret};

/// Length of a wrapped 32-byte key.
pub const WRAPPED_LEN: usize = 40;

/// Wraps `key` under `kek`.
pub fn wrap(kek: &Secret<32>, key: &Secret<32>) -> Result<[u8; WRAPPED_LEN], Error> {
    let kw = KwAes256::new_from_slice(kek.expose()).map_err(|_| Error::Malformed("KEK"))?;
    let mut out = [0u8; WRAPPED_LEN];
    kw.wrap_key(key.expose(), &mut out)
        .map_err(|_| Error::Malformed("key to wrap"))?;
    Ok(out)
}

/// Unwraps a 40-byte wrapped key under `kek`; fails closed on any other length or a bad
/// integrity check value.
pub fn unwrap(kek: &Secret<32>, wrapped: &[u8]) -> Result<Secret<32>, Error> {
    if wrapped.len() != WRAPPED_LEN {
        return Err(Error::Unwrap);
    }
    let kw = KwAes256::new_from_slice(kek.expose()).map_err(|_| Error::Malformed("KEK"))?;
    let mut result = Ok(());
    let key = Secret::init_with(|k| {
        result = match kw.unwrap_key(wrapped, k) {
            Ok(out) if out.len() == 32 => Ok(()),
            _ => Err(Error::Unwrap),
        };
    });
    result.map(|()| key)
}
