//! C2SP chunked encryption (<https://c2sp.org/chunked-encryption>) instantiated with
//! HKDF-Expand-SHA-512 and AES-256-GCM, the payload encryption of every artifact.
//!
//! `key || base_nonce || commitment = HKDF-Expand(prk = input key, info = "c2sp.org/chunked-
//! encryption@v1+" || "AEAD_AES_256_GCM" || 0x00 || salt || context)`; ciphertext =
//! `salt(24) || commitment(32) || chunks`, each chunk 16 KiB of plaintext plus a 16-byte tag,
//! the final chunk always shorter than 16 KiB (possibly empty); chunk `k` uses nonce
//! `base_nonce XOR k` (big-endian), empty AAD.
//!
//! # Security
//! The commitment is checked, in constant time, before any chunk is decrypted ([`ChunkKeys::open`]).
//! The length grammar ([`plaintext_len`]) has exactly one valid ciphertext length per plaintext
//! length, so truncation and extension are caught before decryption; a missing final chunk fails
//! authentication because its nonce differs.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use rayon::prelude::*;
use zeroize::Zeroize;

use super::{Error, ct_eq, kdf, rng};

/// Plaintext bytes per full chunk.
pub const CHUNK: usize = 16384;
/// AEAD tag length.
pub const TAG: usize = 16;
/// Encrypted size of a full chunk.
pub const CT_CHUNK: usize = CHUNK + TAG;
/// Salt length.
pub const SALT: usize = 24;
/// Commitment length.
pub const COMMITMENT: usize = 32;
/// Salt plus commitment, the fixed prefix of every ciphertext.
pub const PREFIX: usize = SALT + COMMITMENT;
/// IANA name of the AEAD, part of the key derivation.
pub const AEAD_NAME: &[u8] = b"AEAD_AES_256_GCM";
/// The spec's limit on the chunk counter (2^38 chunks, 4 PiB).
pub const MAX_CHUNKS: u64 = 1 << 38;
const INFO_PREFIX: &[u8] = b"c2sp.org/chunked-encryption@v1+";

#[cfg(test)]
thread_local! {
    /// Chunk decryptions attempted by this thread: lets tests prove that nothing is decrypted
    /// before the commitment is checked.
    static CHUNK_DECRYPT_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Chunk decryptions attempted so far by the calling thread (tests only).
#[cfg(test)]
pub(crate) fn chunk_decrypt_calls_this_thread() -> u64 {
    CHUNK_DECRYPT_CALLS.with(std::cell::Cell::get)
}

/// Number of chunks for a plaintext of `pt_len` bytes (the final, short chunk included).
pub fn chunk_count(pt_len: u64) -> u64 {
    pt_len / CHUNK as u64 + 1
}

/// The only valid ciphertext length for `pt_len` plaintext bytes, or `None` past the limits.
pub fn ciphertext_len(pt_len: u64) -> Option<u64> {
    let chunks = chunk_count(pt_len);
    if chunks > MAX_CHUNKS {
        return None;
    }
    (PREFIX as u64)
        .checked_add(pt_len)?
        .checked_add(chunks.checked_mul(TAG as u64)?)
}

/// The plaintext length for a ciphertext of `ct_len` bytes, or [`Error::Length`] when no
/// plaintext encrypts to that length (truncated or extended ciphertext).
pub fn plaintext_len(ct_len: u64) -> Result<u64, Error> {
    let body = ct_len
        .checked_sub(PREFIX as u64)
        .ok_or(Error::Length(ct_len))?;
    let full = body / CT_CHUNK as u64;
    let last = body % CT_CHUNK as u64;
    if last < TAG as u64 {
        return Err(Error::Length(ct_len));
    }
    let pt = full * CHUNK as u64 + (last - TAG as u64);
    if chunk_count(pt) > MAX_CHUNKS {
        return Err(Error::TooManyChunks);
    }
    Ok(pt)
}

/// Per-message keys derived from the input key: the AEAD and the base nonce.
pub struct ChunkKeys {
    aead: Aes256Gcm,
    base_nonce: [u8; 12],
}

impl Drop for ChunkKeys {
    fn drop(&mut self) {
        self.base_nonce.zeroize();
    }
}

impl std::fmt::Debug for ChunkKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkKeys").finish_non_exhaustive()
    }
}

impl ChunkKeys {
    /// Derives the keys and the commitment for `salt` and `context` (given as parts).
    pub fn derive(
        input_key: &[u8; 32],
        salt: &[u8; SALT],
        context: &[&[u8]],
    ) -> (Self, [u8; COMMITMENT]) {
        let mut info: Vec<&[u8]> = vec![INFO_PREFIX, AEAD_NAME, &[0u8], salt];
        info.extend_from_slice(context);
        let mut okm = [0u8; 32 + 12 + COMMITMENT];
        kdf::hkdf_expand_sha512(input_key, &info, &mut okm);
        let (key, rest) = okm.split_at(32);
        let (nonce, commit) = rest.split_at(12);
        #[allow(clippy::expect_used, reason = "the slice is 32 bytes by construction")]
        let aead = Aes256Gcm::new_from_slice(key).expect("32-byte AES-256 key");
        let mut base_nonce = [0u8; 12];
        base_nonce.copy_from_slice(nonce);
        let mut commitment = [0u8; COMMITMENT];
        commitment.copy_from_slice(commit);
        okm.zeroize();
        (Self { aead, base_nonce }, commitment)
    }

    /// Derives the keys from the 56-byte ciphertext `prefix` (salt || commitment) and checks the
    /// commitment in constant time. Nothing is decrypted if this fails.
    pub fn open(input_key: &[u8; 32], prefix: &[u8], context: &[&[u8]]) -> Result<Self, Error> {
        let (salt, commitment) = prefix
            .split_at_checked(SALT)
            .ok_or(Error::Length(prefix.len() as u64))?;
        let salt: &[u8; SALT] = salt.try_into().map_err(|_| Error::Length(0))?;
        if commitment.len() != COMMITMENT {
            return Err(Error::Length(prefix.len() as u64));
        }
        let (keys, expected) = Self::derive(input_key, salt, context);
        if ct_eq(&expected, commitment) {
            Ok(keys)
        } else {
            Err(Error::Commitment)
        }
    }

    fn nonce(&self, index: u64) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
        let mut n = self.base_nonce;
        let idx = index.to_be_bytes();
        for (b, i) in n[4..].iter_mut().zip(idx) {
            *b ^= i;
        }
        n.into()
    }

    /// Encrypts chunk `index` in place and returns its tag.
    pub fn seal_chunk(&self, index: u64, buf: &mut [u8]) -> Result<[u8; TAG], Error> {
        let tag = self
            .aead
            .encrypt_inout_detached(&self.nonce(index), &[], buf.into())
            .map_err(|_| Error::ChunkAuth(index))?;
        Ok(tag.into())
    }

    /// Authenticates and decrypts chunk `index` in place. On failure `buf` holds no plaintext
    /// (the tag is checked before decryption) and the caller discards it.
    pub fn open_chunk(&self, index: u64, buf: &mut [u8], tag: &[u8; TAG]) -> Result<(), Error> {
        #[cfg(test)]
        CHUNK_DECRYPT_CALLS.with(|c| c.set(c.get() + 1));
        if buf.len() > CHUNK || index >= MAX_CHUNKS {
            return Err(Error::ChunkAuth(index));
        }
        self.aead
            .decrypt_inout_detached(&self.nonce(index), &[], buf.into(), &(*tag).into())
            .map_err(|_| Error::ChunkAuth(index))
    }
}

/// Encrypts `plaintext` with a fresh random salt (chunks in parallel).
pub fn encrypt(
    input_key: &[u8; 32],
    context: &[&[u8]],
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let salt = rng::array::<SALT>()?;
    encrypt_with_salt(input_key, &salt, context, plaintext)
}

/// Encrypts `plaintext` with a fresh random salt; `progress` receives plaintext bytes done.
pub fn encrypt_with_progress(
    input_key: &[u8; 32],
    context: &[&[u8]],
    plaintext: &[u8],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<u8>, Error> {
    let salt = rng::array::<SALT>()?;
    encrypt_inner(input_key, &salt, context, plaintext, progress)
}

/// Encrypts `plaintext` with the given salt (chunks in parallel). Deterministic, for vectors.
pub fn encrypt_with_salt(
    input_key: &[u8; 32],
    salt: &[u8; SALT],
    context: &[&[u8]],
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    encrypt_inner(input_key, salt, context, plaintext, &|_| {})
}

fn encrypt_inner(
    input_key: &[u8; 32],
    salt: &[u8; SALT],
    context: &[&[u8]],
    plaintext: &[u8],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<u8>, Error> {
    let pt_len = plaintext.len() as u64;
    let ct_len = ciphertext_len(pt_len).ok_or(Error::TooManyChunks)?;
    let ct_len = usize::try_from(ct_len).map_err(|_| Error::TooManyChunks)?;
    let (keys, commitment) = ChunkKeys::derive(input_key, salt, context);
    let mut out = vec![0u8; ct_len];
    let (prefix, body) = out.split_at_mut(PREFIX);
    prefix[..SALT].copy_from_slice(salt);
    prefix[SALT..].copy_from_slice(&commitment);
    let n_full = plaintext.len() / CHUNK;
    let (full_pt, last_pt) = plaintext.split_at(n_full * CHUNK);
    let (full_ct, last_ct) = body.split_at_mut(n_full * CT_CHUNK);
    full_ct
        .par_chunks_mut(CT_CHUNK)
        .zip(full_pt.par_chunks(CHUNK))
        .enumerate()
        .try_for_each(|(i, (ct, pt))| -> Result<(), Error> {
            let (data, tag) = ct.split_at_mut(CHUNK);
            data.copy_from_slice(pt);
            let t = keys.seal_chunk(i as u64, data)?;
            tag.copy_from_slice(&t);
            progress(CHUNK as u64);
            Ok(())
        })?;
    let (data, tag) = last_ct.split_at_mut(last_pt.len());
    data.copy_from_slice(last_pt);
    let t = keys.seal_chunk(n_full as u64, data)?;
    tag.copy_from_slice(&t);
    Ok(out)
}

/// Decrypts a whole ciphertext held in memory (sequentially). `input_key` must be 32 bytes.
/// Returns no plaintext at all unless every chunk authenticates.
pub fn decrypt(input_key: &[u8], context: &[&[u8]], ct: &[u8]) -> Result<Vec<u8>, Error> {
    let input_key: &[u8; 32] = input_key
        .try_into()
        .map_err(|_| Error::Malformed("input key"))?;
    let prefix = ct.get(..PREFIX).ok_or(Error::Length(ct.len() as u64))?;
    let keys = ChunkKeys::open(input_key, prefix, context)?;
    let pt_len = plaintext_len(ct.len() as u64)?;
    let pt_len = usize::try_from(pt_len).map_err(|_| Error::TooManyChunks)?;
    let mut out = vec![0u8; pt_len];
    let body = ct.get(PREFIX..).ok_or(Error::Length(ct.len() as u64))?;
    let result = body
        .chunks(CT_CHUNK)
        .zip(out.chunks_mut(CHUNK).chain(std::iter::once(&mut [][..])))
        .enumerate()
        .try_for_each(|(i, (c, p))| {
            let data_len = c.len().checked_sub(TAG).ok_or(Error::Length(0))?;
            let (data, tag) = c.split_at(data_len);
            let tag: &[u8; TAG] = tag.try_into().map_err(|_| Error::Length(0))?;
            p.copy_from_slice(data);
            keys.open_chunk(i as u64, p, tag)
        });
    match result {
        Ok(()) => Ok(out),
        Err(e) => {
            out.zeroize();
            Err(e)
        }
    }
}
