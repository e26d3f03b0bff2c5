//! The sealed bundle format (`.rpk`, "RPK1"): format only, bytes in and bytes out. This module
//! never opens a file: it reads through [`ReadAt`], so fuzzing and vectors need no filesystem.
//! The byte-level specification is `docs/bundle-format.md`.
//!
//! ```text
//! preamble(20) || manifest(M) || signature block(S) || artifact_0 || ... || artifact_n-1
//! artifact = header(magic "RPKA", len, TLV with stanzas) || C2SP ciphertext
//! ```
//!
//! # Security
//! Order of operations on an untrusted bundle ([`Envelope::parse`] then [`Envelope::verify`]):
//! bounded preamble → bounded manifest and signature block read → hybrid signatures checked
//! against the trust policy over the exact manifest bytes → only then is the manifest decoded →
//! file length must equal what the manifest implies → the manifest's targets must name this
//! appliance → artifact headers must hash to the signed values → file key unwrapped →
//! commitment checked → chunks decrypted into a locked arena.
//! Any failure releases no plaintext: the arena is wiped and dropped.

pub mod codec;
mod error;
pub mod header;
pub mod manifest;
mod open;
mod seal;

pub use error::{Error, KeyIdHex, SignerList};
pub use header::{ArtifactHeader, Stanza};
pub use manifest::{ArtifactEntry, Manifest, Role};
pub use open::{
    CopyError, Opened, copy_verified, open_artifact, open_artifact_with_progress, unwrap_file_key,
    verify_ciphertexts,
};
pub use seal::{ArtifactInput, RecipientSpec, SealParams, seal};

use crate::crypto::{self, Secret, sig};
use codec::Reader;

/// File magic: `\x89RPK\r\n\x1a\n` (PNG-style: catches 7-bit and newline-mangling transfers).
pub const MAGIC: [u8; 8] = *b"\x89RPK\r\n\x1a\n";
/// Format version.
pub const VERSION: u16 = 1;
/// Suite 1: AES-256-GCM, C2SP chunked encryption with HKDF-SHA-512 and 16 KiB chunks, SHA-384
/// hashes, Ed25519 + ML-DSA-87 signatures, AES-256-KW / ML-KEM-1024+X25519 recipients.
pub const SUITE: u16 = 1;
/// Preamble length.
pub const PREAMBLE_LEN: usize = 20;
/// Largest manifest.
pub const MAX_MANIFEST_LEN: u32 = 1 << 20;
/// Largest artifact header.
pub const MAX_HEADER_LEN: u32 = 64 * 1024;
/// Most signatures in one bundle.
pub const MAX_SIGNATURES: usize = 16;
/// Most artifacts in one bundle.
pub const MAX_ARTIFACTS: usize = 16;
/// Most recipient stanzas per artifact.
pub const MAX_STANZAS: usize = 16;
/// Most targets in one manifest.
pub const MAX_TARGETS: usize = 256;
/// Size of one signature entry: key id and hybrid signature.
pub const SIG_ENTRY_LEN: usize = 8 + sig::SIGNATURE_LEN;
/// ML-DSA-87 context string; Ed25519 signs `context || message`.
pub const SIG_CONTEXT: &[u8] = b"rempart-rpk1-manifest";
/// Domain prefix of the payload key-derivation context.
pub const KDF_CONTEXT: &[u8] = b"rempart rpk1 artifact";

/// Positioned reads of the bundle bytes (a file, or a slice in tests and fuzzing).
pub trait ReadAt: Sync {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Whether empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| std::io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        let src = self
            .get(start..end)
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.as_slice().read_exact_at(buf, offset)
    }
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
}

/// A file opened by the caller, with its length taken once (fstat) at open time.
#[derive(Debug)]
pub struct FileAt {
    file: std::fs::File,
    len: u64,
}

impl FileAt {
    /// Wraps an open file; the length is read now and every later read is bounded by it.
    pub fn new(file: std::fs::File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self { file, len })
    }

    /// The open file, for sequential reads.
    pub fn into_file(self) -> std::fs::File {
        self.file
    }
}

impl ReadAt for FileAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }
    fn len(&self) -> u64 {
        self.len
    }
}

pub(crate) fn read_at(
    src: &(impl ReadAt + ?Sized),
    buf: &mut [u8],
    offset: u64,
) -> Result<(), Error> {
    src.read_exact_at(buf, offset).map_err(|e| Error::Io {
        offset,
        kind: e.kind(),
    })
}

/// Looks up trusted publisher keys (the trust store implements it).
pub trait SignerLookup {
    /// The trusted public key with this id, if any.
    fn trusted(&self, key_id: &[u8; 8]) -> Option<&sig::PublisherPublicKey>;
    /// How many distinct trusted signatures are required (at least 1).
    fn threshold(&self) -> usize;
}

/// An appliance able to unwrap file keys (the appliance secret key implements it).
pub trait Recipient {
    /// The appliance key id that stanzas name.
    fn key_id(&self) -> [u8; 8];
    /// Unwraps the file key from a stanza of this appliance; `None` if this kind is unsupported.
    fn unwrap(&self, stanza: &Stanza) -> Option<Result<Secret<32>, crypto::Error>>;
}

/// One entry of the signature block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureEntry {
    /// Signer key id.
    pub key_id: [u8; 8],
    /// Hybrid signature (Ed25519 || ML-DSA-87).
    pub signature: Vec<u8>,
}

/// The bounded front of a bundle: preamble, raw manifest bytes and signatures. The manifest is
/// only decoded by [`Envelope::verify`] (after the signatures) or [`Envelope::manifest_unverified`].
#[derive(Debug, Clone)]
pub struct Envelope {
    preamble: [u8; PREAMBLE_LEN],
    manifest_bytes: Vec<u8>,
    /// The signatures, in file order.
    pub signatures: Vec<SignatureEntry>,
    /// Total length of the bundle.
    pub file_len: u64,
}

#[cfg(test)]
thread_local! {
    /// How many times [`Envelope::verify`] ran on this thread (tests count verifications).
    pub(crate) static VERIFICATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A bundle whose signatures verified against the trust policy. Only [`Envelope::verify`] makes
/// one (`non_exhaustive`: no other crate can construct it), so holding one proves the check ran.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verified {
    /// The decoded, authenticated manifest.
    pub manifest: Manifest,
    /// Key ids of the trusted signers whose both signatures verified.
    pub signers: Vec<[u8; 8]>,
    /// File offset of each artifact.
    pub offsets: Vec<u64>,
}

impl Envelope {
    /// Reads and checks the preamble, then reads the manifest and signature block within their
    /// bounds. Nothing is decoded beyond lengths and the signature block's fixed layout.
    pub fn parse(src: &(impl ReadAt + ?Sized)) -> Result<Self, Error> {
        let file_len = src.len();
        if file_len < PREAMBLE_LEN as u64 {
            if file_len >= 8 {
                let mut m = [0u8; 8];
                read_at(src, &mut m, 0)?;
                if m != MAGIC {
                    return Err(Error::BadMagic("file"));
                }
            }
            return Err(Error::Truncated("preamble"));
        }
        let mut preamble = [0u8; PREAMBLE_LEN];
        read_at(src, &mut preamble, 0)?;
        let mut r = Reader::new(&preamble);
        if r.array::<8>("magic")? != MAGIC {
            return Err(Error::BadMagic("file"));
        }
        let version = r.u16("version")?;
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let suite = r.u16("suite")?;
        if suite != SUITE {
            return Err(Error::UnsupportedSuite(suite));
        }
        let m_len = r.u32("manifest length")?;
        let s_len = r.u32("signature block length")?;
        if m_len == 0 {
            return Err(Error::MissingField("manifest (length 0)"));
        }
        if m_len > MAX_MANIFEST_LEN {
            return Err(Error::TooLong {
                what: "manifest",
                len: u64::from(m_len),
                max: u64::from(MAX_MANIFEST_LEN),
            });
        }
        let max_sig = 1 + MAX_SIGNATURES * SIG_ENTRY_LEN;
        let s_len = usize::try_from(s_len).unwrap_or(usize::MAX);
        if s_len > max_sig {
            return Err(Error::TooLong {
                what: "signature block",
                len: s_len as u64,
                max: max_sig as u64,
            });
        }
        let m_len = m_len as usize;
        if (PREAMBLE_LEN + m_len + s_len) as u64 > file_len {
            return Err(Error::Truncated("manifest or signature block"));
        }
        let mut manifest_bytes = vec![0u8; m_len];
        read_at(src, &mut manifest_bytes, PREAMBLE_LEN as u64)?;
        let mut sig_bytes = vec![0u8; s_len];
        read_at(src, &mut sig_bytes, (PREAMBLE_LEN + m_len) as u64)?;
        let signatures = parse_signatures(&sig_bytes)?;
        Ok(Self {
            preamble,
            manifest_bytes,
            signatures,
            file_len,
        })
    }

    /// The exact bytes every signature covers: preamble bytes 0..16 (magic, version, suite,
    /// manifest length) followed by the manifest.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(16 + self.manifest_bytes.len());
        m.extend_from_slice(self.preamble.get(..16).unwrap_or_default());
        m.extend_from_slice(&self.manifest_bytes);
        m
    }

    /// SHA-384 of the signed message (the bundle's identity in logs).
    pub fn digest(&self) -> [u8; 48] {
        crypto::hash::sha384(&[&self.signed_message()])
    }

    /// Decodes the manifest WITHOUT checking signatures (for `inspect` only).
    pub fn manifest_unverified(&self) -> Result<Manifest, Error> {
        Manifest::decode(&self.manifest_bytes)
    }

    /// Checks the signatures against `trust`, then decodes the manifest and checks that the file
    /// length is exactly what it describes.
    pub fn verify(&self, trust: &impl SignerLookup) -> Result<Verified, Error> {
        #[cfg(test)]
        VERIFICATIONS.with(|c| c.set(c.get() + 1));
        let msg = self.signed_message();
        let mut good: Vec<[u8; 8]> = Vec::new();
        let mut any_trusted = false;
        for s in &self.signatures {
            let Some(pk) = trust.trusted(&s.key_id) else {
                continue;
            };
            any_trusted = true;
            pk.verify(SIG_CONTEXT, &msg, &s.signature)
                .map_err(|half| Error::BadSignature {
                    key: KeyIdHex(s.key_id),
                    half,
                })?;
            good.push(s.key_id);
        }
        if !any_trusted {
            return Err(Error::UntrustedSigner(SignerList::from_ids(
                self.signatures.iter().map(|s| &s.key_id),
            )));
        }
        let need = trust.threshold().max(1);
        if good.len() < need {
            return Err(Error::BelowThreshold {
                got: good.len(),
                need,
            });
        }
        let manifest = Manifest::decode(&self.manifest_bytes)?;
        let offsets = self.layout(&manifest)?;
        Ok(Verified {
            manifest,
            signers: good,
            offsets,
        })
    }

    /// The file offset of each artifact; fails unless the file is exactly as long as the
    /// manifest implies.
    pub fn layout(&self, manifest: &Manifest) -> Result<Vec<u64>, Error> {
        let mut offset = (PREAMBLE_LEN + self.manifest_bytes.len()) as u64
            + (1 + self.signatures.len() * SIG_ENTRY_LEN) as u64;
        let mut offsets = Vec::with_capacity(manifest.artifacts.len());
        for a in &manifest.artifacts {
            offsets.push(offset);
            let len = a
                .total_len()
                .ok_or(Error::InvalidValue("artifact length"))?;
            offset = offset
                .checked_add(len)
                .ok_or(Error::InvalidValue("artifact length"))?;
        }
        if offset != self.file_len {
            return Err(Error::FileLength {
                expected: offset,
                actual: self.file_len,
            });
        }
        Ok(offsets)
    }
}

fn parse_signatures(buf: &[u8]) -> Result<Vec<SignatureEntry>, Error> {
    let mut r = Reader::new(buf);
    let n = usize::from(r.u8("signature count")?);
    if n == 0 {
        return Err(Error::MissingField("signature"));
    }
    if n > MAX_SIGNATURES {
        return Err(Error::TooLong {
            what: "signatures",
            len: n as u64,
            max: MAX_SIGNATURES as u64,
        });
    }
    let mut out: Vec<SignatureEntry> = Vec::with_capacity(n);
    for _ in 0..n {
        let key_id = r.array::<8>("signature key id")?;
        let signature = r.take(sig::SIGNATURE_LEN, "signature")?.to_vec();
        if out.iter().any(|e| e.key_id == key_id) {
            return Err(Error::NonCanonical("duplicate signer"));
        }
        out.push(SignatureEntry { key_id, signature });
    }
    r.finish("signature block")?;
    Ok(out)
}

/// Encodes the signature block.
pub(crate) fn encode_signatures(sigs: &[SignatureEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + sigs.len() * SIG_ENTRY_LEN);
    out.push(u8::try_from(sigs.len()).unwrap_or(u8::MAX));
    for s in sigs {
        out.extend_from_slice(&s.key_id);
        out.extend_from_slice(&s.signature);
    }
    out
}

/// Reads and decodes an artifact header without any authentication (for `inspect` only).
pub fn read_header_unverified(
    src: &(impl ReadAt + ?Sized),
    offset: u64,
    entry: &ArtifactEntry,
) -> Result<ArtifactHeader, Error> {
    let mut hb = vec![0u8; entry.header_len as usize];
    read_at(src, &mut hb, offset)?;
    ArtifactHeader::decode(&hb)
}

#[cfg(test)]
mod tests;
