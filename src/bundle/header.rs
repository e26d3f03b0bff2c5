//! The artifact header: ids that bind the ciphertext to its bundle and position, and the
//! recipient stanzas that carry the wrapped file key. Its SHA-384 is signed in the manifest and
//! bound into the payload key derivation.
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use super::codec::{Reader, Tlv, be_u16, be_u64, put_tlv, set_once};
use super::manifest::Role;
use super::{Error, MAX_HEADER_LEN, MAX_STANZAS};
use crate::crypto::{kem, kw};

/// Artifact header magic.
pub const MAGIC: [u8; 4] = *b"RPKA";
/// Smallest header length the manifest may declare: magic and length field (the decoder then
/// requires every field and at least one stanza).
pub const MIN_HEADER_LEN: u32 = 8;

const T_BUNDLE_ID: u16 = 0x01;
const T_INDEX: u16 = 0x02;
const T_ROLE: u16 = 0x03;
const T_VERSION: u16 = 0x04;
const T_PT_LEN: u16 = 0x05;
const T_STANZA: u16 = 0x10;

/// Stanza kind: AES-256 key wrap under the appliance KEK.
pub const KIND_AES256KW: u16 = 0x0001;
/// Stanza kind: ML-KEM-1024 + X25519 hybrid.
pub const KIND_MLKEM1024_X25519: u16 = 0x0002;

/// A recipient stanza: who can unwrap the file key, and the wrapped key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza {
    /// Kind.
    pub kind: u16,
    /// Appliance key id.
    pub key_id: [u8; 8],
    /// Kind-specific body, length checked exactly.
    pub body: Vec<u8>,
}

impl Stanza {
    /// Human name of the kind.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            KIND_AES256KW => "aes256-kw",
            KIND_MLKEM1024_X25519 => "mlkem1024-x25519",
            _ => "unknown",
        }
    }
}

/// A parsed artifact header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactHeader {
    /// Bundle id (must equal the manifest's).
    pub bundle_id: [u8; 16],
    /// Index of this artifact in the manifest.
    pub index: u16,
    /// Role (must equal the manifest's).
    pub role: Role,
    /// Model version (must equal the manifest's).
    pub model_version: u64,
    /// Plaintext length (must equal the manifest's).
    pub pt_len: u64,
    /// Recipient stanzas, 1..=16.
    pub stanzas: Vec<Stanza>,
}

impl ArtifactHeader {
    /// Encodes `magic || body_len u32 || TLV body`.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_tlv(&mut body, T_BUNDLE_ID, &self.bundle_id);
        put_tlv(&mut body, T_INDEX, &self.index.to_be_bytes());
        put_tlv(&mut body, T_ROLE, &[self.role.to_u8()]);
        put_tlv(&mut body, T_VERSION, &self.model_version.to_be_bytes());
        put_tlv(&mut body, T_PT_LEN, &self.pt_len.to_be_bytes());
        for s in &self.stanzas {
            let mut v = Vec::with_capacity(s.body.len().saturating_add(10));
            v.extend_from_slice(&s.kind.to_be_bytes());
            v.extend_from_slice(&s.key_id);
            v.extend_from_slice(&s.body);
            put_tlv(&mut body, T_STANZA, &v);
        }
        let mut out = Vec::with_capacity(body.len().saturating_add(8));
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Strict decoding of exactly one header occupying all of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(buf);
        if r.array::<4>("artifact header magic")? != MAGIC {
            return Err(Error::BadMagic("artifact header"));
        }
        let len = r.u32("artifact header length")?;
        if len > MAX_HEADER_LEN {
            return Err(Error::TooLong {
                what: "artifact header",
                len: u64::from(len),
                max: u64::from(MAX_HEADER_LEN),
            });
        }
        let body = r.take(
            usize::try_from(len).map_err(|_| Error::Truncated("header"))?,
            "artifact header",
        )?;
        r.finish("artifact header")?;
        let mut tlv = Tlv::new(body, "artifact header", MAX_HEADER_LEN);
        let (mut id, mut index, mut role, mut version, mut pt_len) = (None, None, None, None, None);
        let mut stanzas = Vec::new();
        while let Some((tag, v)) = tlv.next_record(|t| t == T_STANZA)? {
            match tag {
                T_BUNDLE_ID => {
                    let a: [u8; 16] = v
                        .try_into()
                        .map_err(|_| Error::InvalidValue("header bundle id"))?;
                    set_once(&mut id, a, "header.bundle_id")?;
                }
                T_INDEX => set_once(&mut index, be_u16(v, "header.index")?, "header.index")?,
                T_ROLE => {
                    let [b] = v else {
                        return Err(Error::InvalidValue("header.role"));
                    };
                    set_once(&mut role, Role::from_u8(*b)?, "header.role")?;
                }
                T_VERSION => {
                    set_once(&mut version, be_u64(v, "header.version")?, "header.version")?
                }
                T_PT_LEN => set_once(&mut pt_len, be_u64(v, "header.pt_len")?, "header.pt_len")?,
                T_STANZA => {
                    if stanzas.len() >= MAX_STANZAS {
                        return Err(Error::TooLong {
                            what: "stanzas",
                            len: (stanzas.len() as u64).saturating_add(1),
                            max: MAX_STANZAS as u64,
                        });
                    }
                    stanzas.push(decode_stanza(v)?);
                }
                other => {
                    return Err(Error::UnknownField {
                        what: "artifact header",
                        tag: other,
                    });
                }
            }
        }
        if stanzas.is_empty() {
            return Err(Error::MissingField("header.stanza"));
        }
        Ok(Self {
            bundle_id: id.ok_or(Error::MissingField("header.bundle_id"))?,
            index: index.ok_or(Error::MissingField("header.index"))?,
            role: role.ok_or(Error::MissingField("header.role"))?,
            model_version: version.ok_or(Error::MissingField("header.version"))?,
            pt_len: pt_len.ok_or(Error::MissingField("header.pt_len"))?,
            stanzas,
        })
    }
}

fn decode_stanza(v: &[u8]) -> Result<Stanza, Error> {
    let mut r = Reader::new(v);
    let kind = r.u16("stanza.kind")?;
    let key_id = r.array::<8>("stanza.key_id")?;
    let body = r.rest();
    let expected = match kind {
        KIND_AES256KW => kw::WRAPPED_LEN,
        KIND_MLKEM1024_X25519 => kem::BODY_LEN,
        _ => return Err(Error::InvalidValue("stanza kind")),
    };
    if body.len() != expected {
        return Err(Error::InvalidValue("stanza body length"));
    }
    Ok(Stanza {
        kind,
        key_id,
        body: body.to_vec(),
    })
}
