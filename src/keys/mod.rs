//! Appliance and publisher keys, their files under `ROOT/keys`, and the trust store.
//!
//! Key hierarchy (see keys/README.md): an appliance holds one 32-byte seed from which its
//! AES-KW key-encryption key, its ML-KEM-1024 and X25519 secrets are derived; a publisher holds
//! one seed from which its Ed25519 and ML-DSA-87 keys are derived. Key ids are the first 8 bytes
//! of SHA-384(domain || public key) ("rempart appliance v1" / "rempart publisher v1"), shown as
//! 16 hex digits.
//!
//! # Security
//! Secret key files are mode 0600 (anything looser is refused with the fix), created with
//! `create_new`, read without following symlinks and with a size cap, and optionally wrapped
//! under Argon2id(passphrase) + AES-256-GCM with the file header as associated data.

mod error;
mod file;
pub mod trust;

pub use error::Error;
#[cfg(fuzzing)]
pub(crate) use file::decode_key_file;
pub use file::{KeyFile, Kind, Passphrase, PassphraseSource, read_key_file, write_key_file};
pub use trust::TrustStore;

use crate::bundle::{self, Stanza};
use crate::crypto::{self, Secret, hash, kdf, kem, kw, sig};

const APPLIANCE_ID_DOMAIN: &[u8] = b"rempart appliance v1";
const PUBLISHER_ID_DOMAIN: &[u8] = b"rempart publisher v1";

/// Formats a key id as 16 hex digits.
pub fn key_id_hex(id: &[u8; 8]) -> String {
    hex::encode(id)
}

/// Parses 16 hex digits into a key id.
pub fn parse_key_id(s: &str) -> Option<[u8; 8]> {
    let v = hex::decode(s.trim()).ok()?;
    v.try_into().ok()
}

/// An appliance's secret key (unwraps file keys sealed for it).
pub struct ApplianceSecret {
    kek: Secret<32>,
    kem: kem::KemSecret,
    key_id: [u8; 8],
    seed: Secret<32>,
}

impl std::fmt::Debug for ApplianceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplianceSecret")
            .field("key_id", &key_id_hex(&self.key_id))
            .finish_non_exhaustive()
    }
}

impl ApplianceSecret {
    /// Derives everything from the seed.
    pub fn from_seed(seed: Secret<32>) -> Self {
        let kek = Secret::<32>::init_with(|k| {
            kdf::hkdf_sha384(
                seed.expose(),
                b"rempart",
                &[b"appliance aes-256-kw kek v1"],
                k,
            );
        });
        let kem = kem::KemSecret::from_seed(&seed);
        let key_id = hash::key_id(APPLIANCE_ID_DOMAIN, kem.public());
        Self {
            kek,
            kem,
            key_id,
            seed,
        }
    }
    /// A fresh random appliance key.
    pub fn generate() -> Result<Self, crypto::Error> {
        Ok(Self::from_seed(Secret::random()?))
    }
    /// Key id.
    pub fn key_id(&self) -> [u8; 8] {
        self.key_id
    }
    /// Encoded public key (for the hybrid recipient).
    pub fn public(&self) -> &[u8] {
        self.kem.public()
    }
    /// The key-encryption key (for the publisher's escrow copy).
    pub fn kek(&self) -> &Secret<32> {
        &self.kek
    }
    /// The seed, for writing the key file.
    pub fn seed(&self) -> &Secret<32> {
        &self.seed
    }
    /// A 32-byte key for a named purpose (e.g. the audit-log MAC), derived from the seed.
    pub fn derive_key(&self, purpose: &[u8]) -> Secret<32> {
        Secret::init_with(|k| {
            kdf::hkdf_sha384(self.seed.expose(), b"rempart purpose", &[purpose], k)
        })
    }
}

impl bundle::Recipient for ApplianceSecret {
    fn key_id(&self) -> [u8; 8] {
        self.key_id
    }
    fn unwrap(&self, stanza: &Stanza) -> Option<Result<Secret<32>, crypto::Error>> {
        match stanza.kind {
            bundle::header::KIND_AES256KW => Some(kw::unwrap(&self.kek, &stanza.body)),
            bundle::header::KIND_MLKEM1024_X25519 => Some(self.kem.unwrap(&stanza.body)),
            _ => None,
        }
    }
}

/// A publisher's secret signing key.
pub struct PublisherSecret {
    sk: sig::PublisherSigningKey,
    key_id: [u8; 8],
    seed: Secret<32>,
}

impl std::fmt::Debug for PublisherSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherSecret")
            .field("key_id", &key_id_hex(&self.key_id))
            .finish_non_exhaustive()
    }
}

impl PublisherSecret {
    /// Derives both signing keys from the seed.
    pub fn from_seed(seed: Secret<32>) -> Self {
        let sk = sig::PublisherSigningKey::from_seed(&seed);
        let key_id = hash::key_id(PUBLISHER_ID_DOMAIN, &sk.public().to_bytes());
        Self { sk, key_id, seed }
    }
    /// A fresh random publisher key.
    pub fn generate() -> Result<Self, crypto::Error> {
        Ok(Self::from_seed(Secret::random()?))
    }
    /// Key id.
    pub fn key_id(&self) -> [u8; 8] {
        self.key_id
    }
    /// The signing key.
    pub fn signing_key(&self) -> &sig::PublisherSigningKey {
        &self.sk
    }
    /// The public key.
    pub fn public(&self) -> PublisherPublic {
        PublisherPublic {
            pk: self.sk.public(),
            key_id: self.key_id,
        }
    }
    /// The seed, for writing the key file.
    pub fn seed(&self) -> &Secret<32> {
        &self.seed
    }
}

/// A publisher's public key.
#[derive(Debug, Clone)]
pub struct PublisherPublic {
    /// The hybrid public key.
    pub pk: sig::PublisherPublicKey,
    /// Its id.
    pub key_id: [u8; 8],
}

impl PublisherPublic {
    /// Decodes and computes the id.
    pub fn from_bytes(b: &[u8]) -> Result<Self, crypto::Error> {
        let pk = sig::PublisherPublicKey::from_bytes(b)?;
        Ok(Self {
            key_id: hash::key_id(PUBLISHER_ID_DOMAIN, b),
            pk,
        })
    }
}

/// Computes an appliance key id from its encoded public key.
pub fn appliance_key_id(public: &[u8]) -> [u8; 8] {
    hash::key_id(APPLIANCE_ID_DOMAIN, public)
}
