//! `seal`: the publisher's command.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use zeroize::Zeroizing;

use super::{berr, output};
use crate::bundle::{self, ArtifactInput, RecipientSpec, Role, SealParams};
use crate::crypto::Secret;
use crate::error::Result;
use crate::keys::{self, Kind, PassphraseSource, PublisherSecret, key_id_hex, read_key_file};
use crate::secure::sandbox::FsPolicy;

enum Rcpt {
    Kek([u8; 8], Secret<32>),
    Public([u8; 8], Vec<u8>),
}

fn load_recipient(path: &Path, pass: &PassphraseSource) -> Result<Rcpt> {
    match read_key_file(path, Kind::ApplianceKek, pass) {
        Ok(f) => {
            let id = f.kek_id.ok_or(keys::Error::Malformed {
                path: path.to_owned(),
                what: "no key id",
            })?;
            let kek = f.secret.ok_or(keys::Error::Malformed {
                path: path.to_owned(),
                what: "no secret",
            })?;
            Ok(Rcpt::Kek(id, kek))
        }
        Err(keys::Error::WrongKind { .. }) => {
            let f = read_key_file(path, Kind::AppliancePublic, pass).map_err(|e| match e {
                keys::Error::WrongKind { found, .. } => keys::Error::WrongKind {
                    path: path.to_owned(),
                    expected: "appliance.kek or appliance.pub",
                    found,
                },
                e => e,
            })?;
            if f.public.len() != crate::crypto::kem::PUBLIC_LEN {
                return Err(keys::Error::Malformed {
                    path: path.to_owned(),
                    what: "public key length",
                }
                .into());
            }
            Ok(Rcpt::Public(keys::appliance_key_id(&f.public), f.public))
        }
        Err(e) => Err(e.into()),
    }
}

/// Parses YYYY-MM-DD (midnight UTC) or RFC 3339.
/// A tokenizer.json or config.json: a regular file of at most 64 MiB.
fn read_small(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    const MAX: u64 = 64 << 20;
    let io = |source| crate::Error::Io {
        path: path.to_owned(),
        source,
    };
    let f = crate::secure::fs::open_regular(path).map_err(io)?;
    let mut v = Zeroizing::new(Vec::new());
    f.take(MAX + 1).read_to_end(&mut v).map_err(io)?;
    if v.len() as u64 > MAX {
        return Err(crate::Error::Usage(format!(
            "{}: larger than 64 MiB",
            path.display()
        )));
    }
    Ok(v)
}

fn parse_date(s: &str) -> Result<u64> {
    let t = crate::appliance::clock::parse_time(s).ok_or_else(|| {
        crate::Error::Usage(format!("--expires {s:?}: expected YYYY-MM-DD or RFC 3339"))
    })?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| crate::Error::Usage(format!("--expires {s:?} is before 1970")))
}

/// `seal` arguments.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// The plaintext model file: a GGUF (a language model), or the safetensors weights of a
    /// sentence-embedding model with `--tokenizer` and `--config`.
    #[arg(long)]
    model: PathBuf,
    /// The embedding model's tokenizer.json (with `--config`: the bundle is an embedding model
    /// for semantic document retrieval; docs/bundle-format.md roles 2, 3 and 4).
    #[arg(long, value_name = "FILE", requires = "config")]
    tokenizer: Option<PathBuf>,
    /// The embedding model's config.json (BERT family).
    #[arg(long, value_name = "FILE", requires = "tokenizer")]
    config: Option<PathBuf>,
    /// Model name: letters, digits, '.', '_' and '-', at most 64 bytes.
    #[arg(long)]
    name: String,
    /// Monotonic version (at least 1); appliances refuse downgrades.
    #[arg(long)]
    version: u64,
    /// Recipient: appliance.kek (AES-256 key wrap) or appliance.pub (ML-KEM-1024 + X25519).
    #[arg(long = "to", required = true)]
    to: Vec<PathBuf>,
    /// Publisher secret key; repeat for k-of-n signing.
    #[arg(long = "sign", required = true)]
    sign: Vec<PathBuf>,
    /// Classification marking shown to analysts (e.g. "UNCLASSIFIED", "SECRET").
    #[arg(long)]
    marking: Option<String>,
    /// Expiry date (YYYY-MM-DD or RFC 3339); appliances refuse expired bundles.
    #[arg(long)]
    expires: Option<String>,
    /// Replace OUT if it exists.
    #[arg(long)]
    force: bool,
    /// Passphrase file for protected keys.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
    /// Output bundle.
    #[arg(short = 'o', long = "out")]
    out: PathBuf,
    /// Model card (TOML, or JSON if it ends in .json; docs/model-card.md): licence, supplier,
    /// source, provenance, intended use, out-of-scope uses, known limits, training data,
    /// evaluation. It goes into the bundle's AI bill of materials (CycloneDX 1.6, signed) with
    /// what the GGUF file says and its digests; without it, the AI BOM has those only.
    #[arg(long, value_name = "FILE")]
    model_card: Option<PathBuf>,
}

impl SealArgs {
    /// The model, recipients, signers and passphrase read; the output's directory written
    /// (the bundle is written next to OUT, then renamed over it).
    pub(super) fn policy(&self) -> FsPolicy {
        FsPolicy::default()
            .read(&self.model)
            .with_read(self.to.iter().chain(&self.sign).cloned())
            .with_read(self.passphrase_file.iter().cloned())
            .with_read(self.model_card.iter().cloned())
            .with_read(self.tokenizer.iter().chain(&self.config).cloned())
            .write(crate::secure::fs::parent_dir(&self.out))
    }

    pub(super) fn run(&self) -> Result<()> {
        seal(self)
    }
}

fn seal(a: &SealArgs) -> Result<()> {
    let SealArgs {
        model,
        name,
        version,
        to,
        sign,
        marking,
        expires,
        force,
        passphrase_file,
        out,
        model_card,
        tokenizer,
        config,
    } = a;
    if out.exists() && !force {
        return Err(crate::Error::Exists { path: out.clone() });
    }
    let card = model_card
        .as_deref()
        .map(crate::aibom::ModelCard::load)
        .transpose()?
        .unwrap_or_default();
    let pass = super::args::source(passphrase_file.as_deref());
    let rcpts = to
        .iter()
        .map(|p| load_recipient(p, &pass))
        .collect::<Result<Vec<_>>>()?;
    let signers = sign
        .iter()
        .map(|p| {
            let f = read_key_file(p, Kind::PublisherSecret, &pass)?;
            let seed = f.secret.ok_or(keys::Error::Malformed {
                path: p.clone(),
                what: "no secret",
            })?;
            Ok(PublisherSecret::from_seed(seed))
        })
        .collect::<Result<Vec<_>>>()?;
    let created = crate::appliance::clock::now();
    let expires = expires.as_deref().map(parse_date).transpose()?;
    let params = SealParams {
        name: name.clone(),
        version: *version,
        created,
        expires,
        marking: marking.clone(),
        architecture: None,
        quantization: None,
        aibom: None,
        targets: rcpts
            .iter()
            .map(|r| match r {
                Rcpt::Kek(id, _) | Rcpt::Public(id, _) => *id,
            })
            .collect(),
    };
    // The publisher's plaintext is read into a buffer the zeroizing allocator wipes on free.
    let io = |source| crate::Error::Io {
        path: model.clone(),
        source,
    };
    // A regular file only (no FIFO or device such as /dev/zero), read within its fstat'd length.
    let f = crate::secure::fs::open_regular(model).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidInput {
            crate::Error::Usage(format!("{}: not a regular file", model.display()))
        } else {
            io(e)
        }
    })?;
    let len = f.metadata().map_err(io)?.len();
    let mut plaintext = Zeroizing::new(Vec::with_capacity(usize::try_from(len).unwrap_or(0)));
    f.take(len).read_to_end(&mut plaintext).map_err(io)?;
    // What the GGUF says of itself: architecture and quantisation go into the signed manifest
    // so `list` can show them without decrypting (a label the manifest grammar refuses is left
    // out), and all of it into the AI bill of materials with the card and the file's digests.
    let facts = crate::engine::facts(&plaintext);
    // An embedding model: its tokenizer and configuration travel as artifacts of their own.
    let extra = match (tokenizer, config) {
        (Some(t), Some(c)) => vec![
            (Role::Tokenizer, read_small(t)?),
            (Role::Config, read_small(c)?),
        ],
        _ => Vec::new(),
    };
    if facts.is_none() && extra.is_empty() {
        output::warn(format!(
            "{}: not a GGUF file with general.architecture: architecture and quantisation not recorded",
            model.display()
        ));
    }
    let label = |l: Option<&String>| l.filter(|l| bundle::manifest::valid_label(l)).cloned();
    let mut serial = [0u8; 16];
    crate::crypto::rng::fill(&mut serial).map_err(crate::Error::Rng)?;
    let aibom = crate::aibom::document(
        &crate::aibom::Subject {
            name,
            version: *version,
            created,
            gguf: facts.as_ref(),
            sha256: crate::crypto::hash::sha256(&[&plaintext]),
            sha384: crate::crypto::hash::sha384(&[&plaintext]),
            size: len,
            serial,
        },
        &card,
    );
    let params = SealParams {
        architecture: label(facts.as_ref().map(|f| &f.architecture)),
        quantization: label(facts.as_ref().and_then(|f| f.quantization.as_ref())),
        aibom: Some(aibom.to_string()),
        ..params
    };
    let specs: Vec<RecipientSpec<'_>> = rcpts
        .iter()
        .map(|r| match r {
            Rcpt::Kek(id, kek) => RecipientSpec::Kw { key_id: *id, kek },
            Rcpt::Public(id, p) => RecipientSpec::Hybrid {
                key_id: *id,
                public: p,
            },
        })
        .collect();
    let signer_refs: Vec<_> = signers
        .iter()
        .map(|s| (s.key_id(), s.signing_key()))
        .collect();
    let pb = output::progress(len, "sealing");
    let started = std::time::Instant::now();
    let parts = bundle::seal(
        &params,
        &std::iter::once(ArtifactInput {
            role: if extra.is_empty() {
                Role::Gguf
            } else {
                Role::Safetensors
            },
            plaintext: &plaintext,
        })
        .chain(extra.iter().map(|(role, bytes)| ArtifactInput {
            role: *role,
            plaintext: bytes,
        }))
        .collect::<Vec<_>>(),
        &specs,
        &signer_refs,
        &|n| pb.inc(n),
    )
    .map_err(|e| match e {
        // Bad names, markings, versions and dates are the operator's arguments, not a bundle.
        bundle::Error::InvalidValue(what) => crate::Error::Usage(format!("invalid {what}")),
        e => berr(out)(e),
    })?;
    pb.finish_and_clear();
    drop(plaintext);
    let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let tmp = format!(
        ".{}.partial",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    crate::secure::fs::write_atomic(out, &tmp, 0o600, &parts)
        .map_err(|(path, source)| crate::Error::Io { path, source })?;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    output::info(format!(
        "sealed {} v{} ({} bytes) for {} recipient(s), signed by {} -> {} in {:.2} s",
        name,
        version,
        total,
        rcpts.len(),
        signers
            .iter()
            .map(|s| key_id_hex(&s.key_id()))
            .collect::<Vec<_>>()
            .join(", "),
        out.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
