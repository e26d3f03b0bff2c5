//! The hybrid publisher signature: Ed25519 (RFC 8032, strict verification) AND ML-DSA-87
//! (FIPS 204, with a context string). Both halves must verify; either alone is worthless.

use ed25519_dalek::{Signer as _, SigningKey as EdSigningKey, VerifyingKey as EdVerifyingKey};
use ml_dsa::{EncodedVerifyingKey, MlDsa87, Signature as MlSignature, SigningKey};

use super::{Error, Secret, kdf};

/// Ed25519 public key length.
pub const ED25519_PK_LEN: usize = 32;
/// Ed25519 signature length.
pub const ED25519_SIG_LEN: usize = 64;
/// ML-DSA-87 verifying key length.
pub const MLDSA87_PK_LEN: usize = 2592;
/// ML-DSA-87 signature length.
pub const MLDSA87_SIG_LEN: usize = 4627;
/// Encoded hybrid public key length.
pub const PUBLIC_LEN: usize = ED25519_PK_LEN + MLDSA87_PK_LEN;
/// Encoded hybrid signature length.
pub const SIGNATURE_LEN: usize = ED25519_SIG_LEN + MLDSA87_SIG_LEN;

/// A publisher's signing key, derived from one 32-byte seed.
pub struct PublisherSigningKey {
    ed: EdSigningKey,
    ml: Box<SigningKey<MlDsa87>>,
}

impl std::fmt::Debug for PublisherSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherSigningKey")
            .finish_non_exhaustive()
    }
}

/// A publisher's public key (both halves).
#[derive(Clone, PartialEq)]
pub struct PublisherPublicKey {
    ed: EdVerifyingKey,
    ml: Box<ml_dsa::VerifyingKey<MlDsa87>>,
}

impl std::fmt::Debug for PublisherPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherPublicKey").finish_non_exhaustive()
    }
}

impl PublisherSigningKey {
    /// Derives both halves from `seed` with domain-separated HKDF-SHA-384.
    pub fn from_seed(seed: &Secret<32>) -> Self {
        let ed_seed = Secret::<32>::init_with(|s| {
            kdf::hkdf_sha384(seed.expose(), b"rempart", &[b"publisher ed25519 v1"], s);
        });
        let ml_seed = Secret::<32>::init_with(|s| {
            kdf::hkdf_sha384(seed.expose(), b"rempart", &[b"publisher ml-dsa-87 v1"], s);
        });
        let ed = EdSigningKey::from_bytes(ed_seed.expose());
        let ml = Box::new(SigningKey::<MlDsa87>::from_seed(
            &(*ml_seed.expose()).into(),
        ));
        Self { ed, ml }
    }

    /// The public half.
    pub fn public(&self) -> PublisherPublicKey {
        PublisherPublicKey {
            ed: self.ed.verifying_key(),
            ml: Box::new(self.ml.expanded_key().verifying_key()),
        }
    }

    /// Signs `msg`: Ed25519 over `ctx || msg`, ML-DSA-87 (deterministic variant) over `msg`
    /// with context string `ctx`.
    pub fn sign(&self, ctx: &[u8], msg: &[u8]) -> Result<[u8; SIGNATURE_LEN], Error> {
        let mut out = [0u8; SIGNATURE_LEN];
        let ed_msg = [ctx, msg].concat();
        out[..ED25519_SIG_LEN].copy_from_slice(&self.ed.sign(&ed_msg).to_bytes());
        let ml = self
            .ml
            .expanded_key()
            .sign_deterministic(msg, ctx)
            .map_err(|_| Error::Sign)?;
        let enc = ml.encode();
        out[ED25519_SIG_LEN..].copy_from_slice(enc.as_slice());
        Ok(out)
    }
}

impl PublisherPublicKey {
    /// Decodes `ed25519_pk(32) || mldsa87_pk(2592)`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != PUBLIC_LEN {
            return Err(Error::Malformed("publisher public key"));
        }
        let (ed, ml) = bytes.split_at(ED25519_PK_LEN);
        let ed: &[u8; ED25519_PK_LEN] = ed
            .try_into()
            .map_err(|_| Error::Malformed("Ed25519 public key"))?;
        let ed =
            EdVerifyingKey::from_bytes(ed).map_err(|_| Error::Malformed("Ed25519 public key"))?;
        let ml_enc = EncodedVerifyingKey::<MlDsa87>::try_from(ml)
            .map_err(|_| Error::Malformed("ML-DSA-87 public key"))?;
        let ml = Box::new(ml_dsa::VerifyingKey::<MlDsa87>::decode(&ml_enc));
        Ok(Self { ed, ml })
    }

    /// Encodes `ed25519_pk(32) || mldsa87_pk(2592)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(PUBLIC_LEN);
        v.extend_from_slice(self.ed.as_bytes());
        v.extend_from_slice(self.ml.encode().as_slice());
        v
    }

    /// Verifies a hybrid signature; both halves must verify. Reports which half failed.
    pub fn verify(&self, ctx: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), Error> {
        if sig.len() != SIGNATURE_LEN {
            return Err(Error::Malformed("hybrid signature"));
        }
        let (ed_sig, ml_sig) = sig.split_at(ED25519_SIG_LEN);
        verify_ed25519(self.ed.as_bytes(), &[ctx, msg].concat(), ed_sig)?;
        let ml_sig = MlSignature::<MlDsa87>::try_from(ml_sig).map_err(|_| Error::MlDsa)?;
        if self.ml.verify_with_context(msg, ctx, &ml_sig) {
            Ok(())
        } else {
            Err(Error::MlDsa)
        }
    }
}

/// Strict Ed25519 verification of `sig` over `msg` under the 32-byte public key `pk`.
pub fn verify_ed25519(pk: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), Error> {
    let pk: &[u8; ED25519_PK_LEN] = pk.try_into().map_err(|_| Error::Ed25519)?;
    let pk = EdVerifyingKey::from_bytes(pk).map_err(|_| Error::Ed25519)?;
    let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|_| Error::Ed25519)?;
    pk.verify_strict(msg, &sig).map_err(|_| Error::Ed25519)
}

/// ML-DSA-87 verification of `sig` over `msg` with context `ctx` under the encoded key `pk`.
pub fn verify_mldsa87(pk: &[u8], ctx: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), Error> {
    let enc = EncodedVerifyingKey::<MlDsa87>::try_from(pk).map_err(|_| Error::MlDsa)?;
    let vk = ml_dsa::VerifyingKey::<MlDsa87>::decode(&enc);
    let sig = MlSignature::<MlDsa87>::try_from(sig).map_err(|_| Error::MlDsa)?;
    if vk.verify_with_context(msg, ctx, &sig) {
        Ok(())
    } else {
        Err(Error::MlDsa)
    }
}
