//! The signed manifest: what the bundle is (name, version, dates, marking, targets) and, for each
//! artifact, the hashes that tie its header and ciphertext to the publisher's signature.
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use super::codec::{Reader, Tlv, be_u64, put_tlv, set_once};
use super::{Error, MAX_ARTIFACTS, MAX_HEADER_LEN, MAX_TARGETS};
use crate::crypto::hash::SHA384_LEN;

const T_BUNDLE_ID: u16 = 0x0001;
const T_NAME: u16 = 0x0002;
const T_VERSION: u16 = 0x0003;
const T_CREATED: u16 = 0x0004;
const T_EXPIRES: u16 = 0x0005;
const T_MARKING: u16 = 0x0006;
const T_ARCHITECTURE: u16 = 0x0007;
const T_QUANTIZATION: u16 = 0x0008;
const T_TARGET: u16 = 0x0010;
const T_ARTIFACT: u16 = 0x0020;
const T_AIBOM: u16 = 0x0030;

/// Longest model name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest marking.
pub const MAX_MARKING_LEN: usize = 128;
/// Longest architecture or quantisation label.
pub const MAX_LABEL_LEN: usize = 32;
/// Encoded size of one artifact entry.
pub const ARTIFACT_ENTRY_LEN: usize = 1 + 8 + 4 + SHA384_LEN + SHA384_LEN;

/// What an artifact holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A GGUF model file (weights, tokenizer and template together).
    Gguf,
    /// Safetensors weights.
    Safetensors,
    /// A tokenizer.json.
    Tokenizer,
    /// A config.json.
    Config,
}

impl Role {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Gguf => 1,
            Self::Safetensors => 2,
            Self::Tokenizer => 3,
            Self::Config => 4,
        }
    }
    /// From the wire value.
    pub fn from_u8(v: u8) -> Result<Self, Error> {
        match v {
            1 => Ok(Self::Gguf),
            2 => Ok(Self::Safetensors),
            3 => Ok(Self::Tokenizer),
            4 => Ok(Self::Config),
            _ => Err(Error::InvalidValue("artifact role")),
        }
    }
    /// Human name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gguf => "gguf",
            Self::Safetensors => "safetensors",
            Self::Tokenizer => "tokenizer",
            Self::Config => "config",
        }
    }
}

/// One artifact as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactEntry {
    /// Role.
    pub role: Role,
    /// Plaintext length.
    pub pt_len: u64,
    /// Length of the artifact header (magic and length field included).
    pub header_len: u32,
    /// SHA-384 of the artifact header bytes.
    pub header_sha384: [u8; SHA384_LEN],
    /// Tree SHA-384 of the whole artifact (header and ciphertext).
    pub ct_tree_sha384: [u8; SHA384_LEN],
}

impl ArtifactEntry {
    /// Total bytes of this artifact in the file, or `None` past the format limits.
    pub fn total_len(&self) -> Option<u64> {
        crate::crypto::chunked::ciphertext_len(self.pt_len)?.checked_add(u64::from(self.header_len))
    }
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Random id of this bundle.
    pub bundle_id: [u8; 16],
    /// Model name (`[A-Za-z0-9][A-Za-z0-9._-]*`, at most 64 bytes).
    pub name: String,
    /// Monotonic version (at least 1).
    pub version: u64,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// Expiry time, Unix seconds.
    pub expires: Option<u64>,
    /// Classification marking, e.g. "UNCLASSIFIED".
    pub marking: Option<String>,
    /// Model architecture as the publisher's GGUF declares it (e.g. "llama"); informational,
    /// the engine dispatches on the decrypted model's own metadata.
    pub architecture: Option<String>,
    /// Quantisation as the publisher's GGUF declares it (e.g. "Q4_1"); informational.
    pub quantization: Option<String>,
    /// Appliance key ids this bundle is for, ascending; empty means any appliance it unwraps for.
    pub targets: Vec<[u8; 8]>,
    /// The artifacts, in file order.
    pub artifacts: Vec<ArtifactEntry>,
    /// The AI bill of materials: a CycloneDX 1.6 JSON document (`crate::aibom`), signed with
    /// the rest. Bundles sealed before it existed have none.
    pub aibom: Option<String>,
}

/// Whether `name` is a valid model name (it becomes a file name in the store).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && !name.contains("..")
}

/// Whether `l` is a valid architecture or quantisation label: 1..=32 bytes of
/// `[A-Za-z0-9._-]`.
pub fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= MAX_LABEL_LEN
        && l.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Whether `m` is a valid marking: no control characters, no invisible format or bidi
/// characters ([`crate::text::is_plain`]).
pub fn valid_marking(m: &str) -> bool {
    !m.is_empty() && m.len() <= MAX_MARKING_LEN && crate::text::is_plain(m)
}

impl Manifest {
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_tlv(&mut out, T_BUNDLE_ID, &self.bundle_id);
        put_tlv(&mut out, T_NAME, self.name.as_bytes());
        put_tlv(&mut out, T_VERSION, &self.version.to_be_bytes());
        put_tlv(&mut out, T_CREATED, &self.created.to_be_bytes());
        if let Some(e) = self.expires {
            put_tlv(&mut out, T_EXPIRES, &e.to_be_bytes());
        }
        if let Some(m) = &self.marking {
            put_tlv(&mut out, T_MARKING, m.as_bytes());
        }
        if let Some(a) = &self.architecture {
            put_tlv(&mut out, T_ARCHITECTURE, a.as_bytes());
        }
        if let Some(q) = &self.quantization {
            put_tlv(&mut out, T_QUANTIZATION, q.as_bytes());
        }
        for t in &self.targets {
            put_tlv(&mut out, T_TARGET, t);
        }
        for a in &self.artifacts {
            let mut v = Vec::with_capacity(ARTIFACT_ENTRY_LEN);
            v.push(a.role.to_u8());
            v.extend_from_slice(&a.pt_len.to_be_bytes());
            v.extend_from_slice(&a.header_len.to_be_bytes());
            v.extend_from_slice(&a.header_sha384);
            v.extend_from_slice(&a.ct_tree_sha384);
            put_tlv(&mut out, T_ARTIFACT, &v);
        }
        if let Some(b) = &self.aibom {
            put_tlv(&mut out, T_AIBOM, b.as_bytes());
        }
        out
    }

    /// Strict, canonical decoding: `decode(b)?.encode() == b`.
    pub fn decode(buf: &[u8]) -> Result<Self, Error> {
        let mut tlv = Tlv::new(buf, "manifest", super::MAX_MANIFEST_LEN);
        let (mut id, mut name, mut version, mut created) = (None, None, None, None);
        let (mut expires, mut marking) = (None, None);
        let (mut architecture, mut quantization) = (None, None);
        let mut targets: Vec<[u8; 8]> = Vec::new();
        let mut artifacts = Vec::new();
        let mut aibom = None;
        while let Some((tag, v)) = tlv.next_record(|t| t == T_TARGET || t == T_ARTIFACT)? {
            match tag {
                T_BUNDLE_ID => {
                    let a: [u8; 16] = v.try_into().map_err(|_| Error::InvalidValue("bundle id"))?;
                    set_once(&mut id, a, "manifest.bundle_id")?;
                }
                T_NAME => {
                    let s =
                        std::str::from_utf8(v).map_err(|_| Error::InvalidValue("model name"))?;
                    if !valid_name(s) {
                        return Err(Error::InvalidValue("model name"));
                    }
                    set_once(&mut name, s.to_owned(), "manifest.name")?;
                }
                T_VERSION => {
                    let n = be_u64(v, "version")?;
                    if n == 0 {
                        return Err(Error::InvalidValue("version (must be at least 1)"));
                    }
                    set_once(&mut version, n, "manifest.version")?;
                }
                T_CREATED => set_once(&mut created, be_u64(v, "created")?, "manifest.created")?,
                T_EXPIRES => set_once(&mut expires, be_u64(v, "expires")?, "manifest.expires")?,
                T_MARKING => {
                    let s = std::str::from_utf8(v).map_err(|_| Error::InvalidValue("marking"))?;
                    if !valid_marking(s) {
                        return Err(Error::InvalidValue("marking"));
                    }
                    set_once(&mut marking, s.to_owned(), "manifest.marking")?;
                }
                T_ARCHITECTURE => {
                    let s = label(v, "architecture")?;
                    set_once(&mut architecture, s, "manifest.architecture")?;
                }
                T_QUANTIZATION => {
                    let s = label(v, "quantization")?;
                    set_once(&mut quantization, s, "manifest.quantization")?;
                }
                T_TARGET => {
                    let t: [u8; 8] = v.try_into().map_err(|_| Error::InvalidValue("target"))?;
                    if targets.last().is_some_and(|last| *last >= t) {
                        return Err(Error::NonCanonical("targets must be strictly ascending"));
                    }
                    if targets.len() >= MAX_TARGETS {
                        return Err(Error::TooLong {
                            what: "targets",
                            len: (targets.len() as u64).saturating_add(1),
                            max: MAX_TARGETS as u64,
                        });
                    }
                    targets.push(t);
                }
                T_ARTIFACT => {
                    if artifacts.len() >= MAX_ARTIFACTS {
                        return Err(Error::TooLong {
                            what: "artifacts",
                            len: (artifacts.len() as u64).saturating_add(1),
                            max: MAX_ARTIFACTS as u64,
                        });
                    }
                    artifacts.push(decode_artifact(v)?);
                }
                T_AIBOM => {
                    let s = std::str::from_utf8(v)
                        .ok()
                        .filter(|s| crate::aibom::valid(s))
                        .ok_or(Error::InvalidValue("AI bill of materials"))?;
                    set_once(&mut aibom, s.to_owned(), "manifest.aibom")?;
                }
                other => {
                    return Err(Error::UnknownField {
                        what: "manifest",
                        tag: other,
                    });
                }
            }
        }
        let created = created.ok_or(Error::MissingField("manifest.created"))?;
        if expires.is_some_and(|e| e <= created) {
            return Err(Error::InvalidValue("expires (must be after created)"));
        }
        if artifacts.is_empty() {
            return Err(Error::MissingField("manifest.artifact"));
        }
        Ok(Self {
            bundle_id: id.ok_or(Error::MissingField("manifest.bundle_id"))?,
            name: name.ok_or(Error::MissingField("manifest.name"))?,
            version: version.ok_or(Error::MissingField("manifest.version"))?,
            created,
            expires,
            marking,
            architecture,
            quantization,
            targets,
            artifacts,
            aibom,
        })
    }
}

fn label(v: &[u8], what: &'static str) -> Result<String, Error> {
    std::str::from_utf8(v)
        .ok()
        .filter(|s| valid_label(s))
        .map(str::to_owned)
        .ok_or(Error::InvalidValue(what))
}

fn decode_artifact(v: &[u8]) -> Result<ArtifactEntry, Error> {
    let mut r = Reader::new(v);
    let role = Role::from_u8(r.u8("artifact.role")?)?;
    let pt_len = r.u64("artifact.pt_len")?;
    let header_len = r.u32("artifact.header_len")?;
    if !(super::header::MIN_HEADER_LEN..=MAX_HEADER_LEN).contains(&header_len) {
        return Err(Error::InvalidValue("artifact.header_len"));
    }
    let header_sha384 = r.array("artifact.header_sha384")?;
    let ct_tree_sha384 = r.array("artifact.ct_tree_sha384")?;
    r.finish("artifact entry")?;
    let e = ArtifactEntry {
        role,
        pt_len,
        header_len,
        header_sha384,
        ct_tree_sha384,
    };
    if e.total_len().is_none() {
        return Err(Error::InvalidValue(
            "artifact.pt_len (beyond the 4 PiB chunk limit)",
        ));
    }
    Ok(e)
}
