//! `seal`: the publisher's command.

use std::io::{Read, Write};
use std::path::Path;

use zeroize::Zeroizing;

use super::{Command, berr, output};
use crate::bundle::{self, ArtifactInput, RecipientSpec, Role, SealParams};
use crate::crypto::Secret;
use crate::error::Result;
use crate::keys::{self, Kind, PassphraseSource, PublisherSecret, key_id_hex, read_key_file};

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
fn parse_date(s: &str) -> Result<u64> {
    let t = super::parse_time(s).ok_or_else(|| {
        crate::Error::Usage(format!("--expires {s:?}: expected YYYY-MM-DD or RFC 3339"))
    })?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| crate::Error::Usage(format!("--expires {s:?} is before 1970")))
}

pub(super) fn seal(cmd: &Command) -> Result<()> {
    let Command::Seal {
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
    } = cmd
    else {
        return Err(crate::Error::Usage("not a seal command".into()));
    };
    if out.exists() && !force {
        return Err(crate::Error::Exists { path: out.clone() });
    }
    let pass = super::pass_source(passphrase_file.as_deref());
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
    let created = super::now();
    let expires = expires.as_deref().map(parse_date).transpose()?;
    let params = SealParams {
        name: name.clone(),
        version: *version,
        created,
        expires,
        marking: marking.clone(),
        architecture: None,
        quantization: None,
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
    let mut f = std::fs::File::open(model).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut plaintext = Zeroizing::new(Vec::with_capacity(usize::try_from(len).unwrap_or(0)));
    f.read_to_end(&mut plaintext).map_err(io)?;
    // Architecture and quantisation go into the signed manifest so `list` can show them
    // without decrypting; a label the manifest grammar refuses is left out.
    let described = crate::engine::describe(&plaintext);
    if described.is_none() {
        output::warn(format!(
            "{}: not a GGUF file with general.architecture: architecture and quantisation not recorded",
            model.display()
        ));
    }
    let (architecture, quantization) = described.map_or((None, None), |(a, q)| (Some(a), q));
    let label = |l: Option<String>| l.filter(|l| bundle::manifest::valid_label(l));
    let params = SealParams {
        architecture: label(architecture),
        quantization: label(quantization),
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
        &[ArtifactInput {
            role: Role::Gguf,
            plaintext: &plaintext,
        }],
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
    write_atomic(out, &parts)?;
    let total: usize = parts.iter().map(Vec::len).sum();
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

/// Writes `parts` to a temporary file next to `out`, fsyncs it, then renames it into place.
fn write_atomic(out: &Path, parts: &[Vec<u8>]) -> Result<()> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.partial",
        out.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let io = |source| crate::Error::Io {
        path: tmp.clone(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io)?;
    let result = parts
        .iter()
        .try_for_each(|p| f.write_all(p))
        .and_then(|()| f.sync_all());
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, out).map_err(|source| crate::Error::Io {
        path: out.to_owned(),
        source,
    })?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
