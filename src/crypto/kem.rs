//! The hybrid public-key recipient: ML-KEM-1024 (FIPS 203) AND X25519 (RFC 7748), combined
//! with HKDF-SHA-384 into a key-encryption key that AES-256-wraps the file key.
//!
//! `kek = HKDF-SHA-384(ikm = ss_mlkem || ss_x25519, salt = "rempart hybrid kem v1",
//! info = mlkem_ct || x25519_ephemeral || recipient_public)`. The KEK stays secret as long as
//! either component is unbroken (an X-Wing-style combiner that also binds both ciphertexts and
//! the recipient's whole public key).

use curve25519_dalek::MontgomeryPoint;
use ml_kem::kem::{Decapsulate, KeyExport};
use ml_kem::{DecapsulationKey1024, EncapsulationKey1024};
use zeroize::Zeroize;

use super::{Error, Secret, kdf, kw};

/// ML-KEM-1024 encapsulation key length.
pub const MLKEM_EK_LEN: usize = 1568;
/// ML-KEM-1024 ciphertext length.
pub const MLKEM_CT_LEN: usize = 1568;
/// X25519 public key length.
pub const X25519_LEN: usize = 32;
/// Encoded recipient public key: `mlkem_ek || x25519_pk`.
pub const PUBLIC_LEN: usize = MLKEM_EK_LEN + X25519_LEN;
/// Stanza body: `mlkem_ct || x25519_ephemeral || aes_kw(kek, file_key)`.
pub const BODY_LEN: usize = MLKEM_CT_LEN + X25519_LEN + kw::WRAPPED_LEN;
const SALT: &[u8] = b"rempart hybrid kem v1";

/// The appliance's decapsulation secrets.
pub struct KemSecret {
    dk: DecapsulationKey1024,
    x: Secret<32>,
    public: Vec<u8>,
}

impl std::fmt::Debug for KemSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KemSecret").finish_non_exhaustive()
    }
}

impl KemSecret {
    /// Derives both secrets from the appliance seed (domain-separated HKDF-SHA-384).
    pub fn from_seed(seed: &Secret<32>) -> Self {
        let mut ml_seed = [0u8; 64];
        kdf::hkdf_sha384(
            seed.expose(),
            b"rempart",
            &[b"appliance ml-kem-1024 v1"],
            &mut ml_seed,
        );
        let dk = DecapsulationKey1024::from_seed(ml_seed.into());
        ml_seed.zeroize();
        let x = Secret::<32>::init_with(|s| {
            kdf::hkdf_sha384(seed.expose(), b"rempart", &[b"appliance x25519 v1"], s);
        });
        let mut public = Vec::with_capacity(PUBLIC_LEN);
        public.extend_from_slice(dk.encapsulation_key().to_bytes().as_slice());
        public.extend_from_slice(MontgomeryPoint::mul_base_clamped(*x.expose()).as_bytes());
        Self { dk, x, public }
    }

    /// The encoded public key `mlkem_ek || x25519_pk`.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// Recovers the file key from a stanza body; any failure is [`Error::Unwrap`].
    pub fn unwrap(&self, body: &[u8]) -> Result<Secret<32>, Error> {
        if body.len() != BODY_LEN {
            return Err(Error::Unwrap);
        }
        let (ct, rest) = body.split_at(MLKEM_CT_LEN);
        let (eph, wrapped) = rest.split_at(X25519_LEN);
        let ss1 = self.dk.decapsulate_slice(ct).map_err(|_| Error::Unwrap)?;
        let eph_arr: [u8; 32] = eph.try_into().map_err(|_| Error::Unwrap)?;
        let ss2 = MontgomeryPoint(eph_arr).mul_clamped(*self.x.expose());
        let kek = combine(ss1.as_slice(), ss2.as_bytes(), ct, eph, &self.public)?;
        kw::unwrap(&kek, wrapped)
    }
}

/// Wraps `file_key` for the recipient whose encoded public key is `public`.
pub fn wrap(public: &[u8], file_key: &Secret<32>) -> Result<Vec<u8>, Error> {
    if public.len() != PUBLIC_LEN {
        return Err(Error::Malformed("appliance public key"));
    }
    let (ek, xpk) = public.split_at(MLKEM_EK_LEN);
    let ek = EncapsulationKey1024::new(
        ek.try_into()
            .map_err(|_| Error::Malformed("ML-KEM-1024 encapsulation key"))?,
    )
    .map_err(|_| Error::Malformed("ML-KEM-1024 encapsulation key"))?;
    let m = Secret::<32>::random()?;
    let (ct, ss1) = ek.encapsulate_deterministic(&(*m.expose()).into());
    let eph = Secret::<32>::random()?;
    let eph_pub = MontgomeryPoint::mul_base_clamped(*eph.expose());
    let xpk: [u8; 32] = xpk
        .try_into()
        .map_err(|_| Error::Malformed("X25519 public key"))?;
    let ss2 = MontgomeryPoint(xpk).mul_clamped(*eph.expose());
    let kek = combine(
        ss1.as_slice(),
        ss2.as_bytes(),
        ct.as_slice(),
        eph_pub.as_bytes(),
        public,
    )?;
    let wrapped = kw::wrap(&kek, file_key)?;
    let mut body = Vec::with_capacity(BODY_LEN);
    body.extend_from_slice(ct.as_slice());
    body.extend_from_slice(eph_pub.as_bytes());
    body.extend_from_slice(&wrapped);
    Ok(body)
}

fn combine(
    ss1: &[u8],
    ss2: &[u8; 32],
    ct: &[u8],
    eph: &[u8],
    public: &[u8],
) -> Result<Secret<32>, Error> {
    // An all-zero X25519 output means a small-order point: refuse rather than rely on ML-KEM alone.
    if ss2.iter().all(|&b| b == 0) {
        return Err(Error::Unwrap);
    }
    let mut ikm = [ss1, ss2.as_slice()].concat();
    let kek = Secret::<32>::init_with(|k| kdf::hkdf_sha384(&ikm, SALT, &[ct, eph, public], k));
    ikm.zeroize();
    Ok(kek)
}
