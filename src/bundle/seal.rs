//! Sealing: encrypt each artifact under a fresh file key, wrap that key for every recipient,
//! hash everything into the manifest, and sign the manifest with every publisher key given.

use super::header::{ArtifactHeader, KIND_AES256KW, KIND_MLKEM1024_X25519, Stanza};
use super::manifest::{self, ArtifactEntry, Manifest, Role};
use super::{
    Error, KDF_CONTEXT, MAGIC, MAX_ARTIFACTS, MAX_SIGNATURES, MAX_STANZAS, MAX_TARGETS,
    SIG_CONTEXT, SUITE, SignatureEntry, VERSION, encode_signatures,
};
use crate::crypto::{self, Secret, chunked, hash, kem, kw, rng, sig::PublisherSigningKey};

/// What the manifest says about the model.
#[derive(Debug, Clone)]
pub struct SealParams {
    /// Model name.
    pub name: String,
    /// Monotonic version.
    pub version: u64,
    /// Creation time (Unix seconds).
    pub created: u64,
    /// Optional expiry (Unix seconds).
    pub expires: Option<u64>,
    /// Optional classification marking.
    pub marking: Option<String>,
    /// Optional architecture label (e.g. "llama").
    pub architecture: Option<String>,
    /// Optional quantisation label (e.g. "Q4_1").
    pub quantization: Option<String>,
    /// Target appliance ids (sorted and de-duplicated here).
    pub targets: Vec<[u8; 8]>,
    /// The AI bill of materials (`crate::aibom`), if any.
    pub aibom: Option<String>,
}

/// One plaintext artifact to seal.
#[derive(Debug, Clone, Copy)]
pub struct ArtifactInput<'a> {
    /// Role.
    pub role: Role,
    /// Plaintext.
    pub plaintext: &'a [u8],
}

/// A recipient of the file keys.
pub enum RecipientSpec<'a> {
    /// AES-256 key wrap under the appliance's key-encryption key.
    Kw {
        /// Appliance key id.
        key_id: [u8; 8],
        /// The appliance KEK.
        kek: &'a Secret<32>,
    },
    /// ML-KEM-1024 + X25519 hybrid to the appliance's public key.
    Hybrid {
        /// Appliance key id.
        key_id: [u8; 8],
        /// Encoded public key.
        public: &'a [u8],
    },
}

impl RecipientSpec<'_> {
    fn key_id(&self) -> [u8; 8] {
        match self {
            Self::Kw { key_id, .. } | Self::Hybrid { key_id, .. } => *key_id,
        }
    }
}

/// Seals `artifacts`. Returns the bundle as consecutive parts (front, then one per artifact) to
/// be written in order. `progress` receives plaintext bytes as they are encrypted.
pub fn seal(
    params: &SealParams,
    artifacts: &[ArtifactInput<'_>],
    recipients: &[RecipientSpec<'_>],
    signers: &[([u8; 8], &PublisherSigningKey)],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Vec<u8>>, Error> {
    if !manifest::valid_name(&params.name) {
        return Err(Error::InvalidValue("model name"));
    }
    if params
        .marking
        .as_deref()
        .is_some_and(|m| !manifest::valid_marking(m))
    {
        return Err(Error::InvalidValue("marking"));
    }
    if [&params.architecture, &params.quantization]
        .iter()
        .any(|l| l.as_deref().is_some_and(|l| !manifest::valid_label(l)))
    {
        return Err(Error::InvalidValue("architecture or quantization label"));
    }
    if params
        .aibom
        .as_deref()
        .is_some_and(|b| !crate::aibom::valid(b))
    {
        return Err(Error::InvalidValue("AI bill of materials"));
    }
    if params.version == 0 {
        return Err(Error::InvalidValue("version (must be at least 1)"));
    }
    if params.expires.is_some_and(|e| e <= params.created) {
        return Err(Error::InvalidValue("expires (must be after created)"));
    }
    if artifacts.is_empty() || artifacts.len() > MAX_ARTIFACTS {
        return Err(Error::InvalidValue("number of artifacts"));
    }
    if recipients.is_empty() || recipients.len() > MAX_STANZAS {
        return Err(Error::InvalidValue("number of recipients"));
    }
    if signers.is_empty() || signers.len() > MAX_SIGNATURES {
        return Err(Error::InvalidValue("number of signers"));
    }
    let mut targets = params.targets.clone();
    targets.sort_unstable();
    targets.dedup();
    if targets.len() > MAX_TARGETS {
        return Err(Error::InvalidValue("number of targets"));
    }
    let bundle_id = rng::array::<16>().map_err(Error::Seal)?;
    let mut parts = vec![Vec::new()];
    let mut entries = Vec::with_capacity(artifacts.len());
    for (i, a) in artifacts.iter().enumerate() {
        let index = u16::try_from(i).map_err(|_| Error::InvalidValue("artifact index"))?;
        let file_key = Secret::<32>::random().map_err(Error::Seal)?;
        let stanzas = recipients
            .iter()
            .map(|r| wrap_for(r, &file_key))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::Seal)?;
        let header = ArtifactHeader {
            bundle_id,
            index,
            role: a.role,
            model_version: params.version,
            pt_len: a.plaintext.len() as u64,
            stanzas,
        }
        .encode();
        let header_sha384 = hash::sha384(&[&header]);
        let ct = chunked::encrypt_with_progress(
            file_key.expose(),
            &[KDF_CONTEXT, &header_sha384],
            a.plaintext,
            progress,
        )
        .map_err(Error::Seal)?;
        let mut bytes = header;
        let header_len = u32::try_from(bytes.len()).map_err(|_| Error::InvalidValue("header"))?;
        bytes.extend_from_slice(&ct);
        drop(ct);
        entries.push(ArtifactEntry {
            role: a.role,
            pt_len: a.plaintext.len() as u64,
            header_len,
            header_sha384,
            ct_tree_sha384: hash::tree_sha384(&bytes),
        });
        parts.push(bytes);
    }
    let manifest = Manifest {
        bundle_id,
        name: params.name.clone(),
        version: params.version,
        created: params.created,
        expires: params.expires,
        marking: params.marking.clone(),
        architecture: params.architecture.clone(),
        quantization: params.quantization.clone(),
        targets,
        artifacts: entries,
        aibom: params.aibom.clone(),
    }
    .encode();
    let m_len = u32::try_from(manifest.len()).map_err(|_| Error::InvalidValue("manifest"))?;
    if m_len > super::MAX_MANIFEST_LEN {
        return Err(Error::InvalidValue("manifest too large"));
    }
    let mut front = Vec::with_capacity(super::PREAMBLE_LEN + manifest.len());
    front.extend_from_slice(&MAGIC);
    front.extend_from_slice(&VERSION.to_be_bytes());
    front.extend_from_slice(&SUITE.to_be_bytes());
    front.extend_from_slice(&m_len.to_be_bytes());
    let signed: Vec<u8> = [&front[..], &manifest[..]].concat();
    let mut sigs = Vec::with_capacity(signers.len());
    for (key_id, sk) in signers {
        let signature = sk.sign(SIG_CONTEXT, &signed).map_err(Error::Seal)?.to_vec();
        sigs.push(SignatureEntry {
            key_id: *key_id,
            signature,
        });
    }
    let sig_block = encode_signatures(&sigs);
    let s_len = u32::try_from(sig_block.len()).map_err(|_| Error::InvalidValue("signatures"))?;
    front.extend_from_slice(&s_len.to_be_bytes());
    front.extend_from_slice(&manifest);
    front.extend_from_slice(&sig_block);
    if let Some(first) = parts.first_mut() {
        *first = front;
    }
    Ok(parts)
}

fn wrap_for(r: &RecipientSpec<'_>, file_key: &Secret<32>) -> Result<Stanza, crypto::Error> {
    Ok(match r {
        RecipientSpec::Kw { kek, .. } => Stanza {
            kind: KIND_AES256KW,
            key_id: r.key_id(),
            body: kw::wrap(kek, file_key)?.to_vec(),
        },
        RecipientSpec::Hybrid { public, .. } => Stanza {
            kind: KIND_MLKEM1024_X25519,
            key_id: r.key_id(),
            body: kem::wrap(public, file_key)?,
        },
    })
}
