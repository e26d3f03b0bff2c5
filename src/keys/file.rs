//! Key file encoding and safe reading/writing.
//!
//! ```text
//! magic "RPKK" | version u8 = 1 | kind u8 | protection u8 | label_len u8 | label | payload
//! payload, public kinds:       public key bytes
//! payload, raw secret:          [key_id(8) for kek] secret(32)
//! payload, passphrase secret:   [key_id(8) for kek] m_kib u32 | t u32 | p u32 | salt(16) |
//!                               nonce(12) | AES-256-GCM(Argon2id(pass, salt), secret(32)) + tag(16)
//!                               AAD = every byte of the file before the ciphertext
//! ```
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use zeroize::Zeroizing;

use super::Error;
use crate::bundle::codec::Reader;
use crate::crypto::{Secret, kdf, kdf::Argon2Params, rng};

const MAGIC: [u8; 4] = *b"RPKK";
const VERSION: u8 = 1;
const MAX_KEY_FILE: u64 = 16 * 1024;
const MAX_LABEL: usize = 64;

/// What a key file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Appliance secret seed.
    ApplianceSecret,
    /// Appliance public key (ML-KEM-1024 + X25519).
    AppliancePublic,
    /// Appliance key-encryption key, escrowed by the publisher (secret).
    ApplianceKek,
    /// Publisher secret seed.
    PublisherSecret,
    /// Publisher public key (Ed25519 + ML-DSA-87).
    PublisherPublic,
}

impl Kind {
    fn to_u8(self) -> u8 {
        match self {
            Self::ApplianceSecret => 1,
            Self::AppliancePublic => 2,
            Self::ApplianceKek => 3,
            Self::PublisherSecret => 4,
            Self::PublisherPublic => 5,
        }
    }
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::ApplianceSecret,
            2 => Self::AppliancePublic,
            3 => Self::ApplianceKek,
            4 => Self::PublisherSecret,
            5 => Self::PublisherPublic,
            _ => return None,
        })
    }
    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ApplianceSecret => "appliance secret key",
            Self::AppliancePublic => "appliance public key",
            Self::ApplianceKek => "appliance key-wrap key (.kek)",
            Self::PublisherSecret => "publisher secret key",
            Self::PublisherPublic => "publisher public key",
        }
    }
    /// Whether the file holds a secret.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            Self::ApplianceSecret | Self::ApplianceKek | Self::PublisherSecret
        )
    }
}

/// A passphrase, wiped on drop.
pub type Passphrase = Zeroizing<String>;

/// Where a passphrase comes from when a key needs one. Its `Debug` never shows a passphrase.
#[derive(Clone)]
pub enum PassphraseSource {
    /// First line of this file.
    File(PathBuf),
    /// Prompt on the terminal (fails cleanly without one).
    Prompt,
    /// Never ask: a protected key is an error.
    None,
    /// Already typed (the terminal UI's lock screen).
    Given(Passphrase),
}

impl std::fmt::Debug for PassphraseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Prompt => f.write_str("Prompt"),
            Self::None => f.write_str("None"),
            Self::Given(_) => f.write_str("Given(<redacted>)"),
        }
    }
}

impl PassphraseSource {
    /// Obtains the passphrase for `path`.
    pub fn get(&self, path: &Path, confirm: bool) -> Result<Passphrase, Error> {
        let p = match self {
            Self::File(f) => {
                // Like a secret key file: a passphrase others can read is no secret.
                let (raw, mode) = read_bounded_mode(f, 4096)?;
                if mode & 0o077 != 0 {
                    return Err(Error::PermissionsTooOpen {
                        path: f.clone(),
                        what: "passphrase file",
                        mode: mode & 0o777,
                    });
                }
                let s = String::from_utf8(raw.to_vec())
                    .map_err(|_| Error::BadPassphrase("passphrase file is not UTF-8"))?;
                Zeroizing::new(s.lines().next().unwrap_or_default().to_owned())
            }
            Self::Prompt => {
                if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    return Err(Error::PassphraseRequired {
                        path: path.to_owned(),
                    });
                }
                let prompt = format!(
                    "Passphrase for {}: ",
                    crate::text::sanitize(&path.display().to_string())
                );
                let p = Zeroizing::new(rpassword::prompt_password(prompt).map_err(|source| {
                    Error::Io {
                        path: path.to_owned(),
                        source,
                    }
                })?);
                if confirm {
                    let again =
                        Zeroizing::new(rpassword::prompt_password("Repeat passphrase: ").map_err(
                            |source| Error::Io {
                                path: path.to_owned(),
                                source,
                            },
                        )?);
                    if *again != *p {
                        return Err(Error::BadPassphrase("the two passphrases differ"));
                    }
                }
                p
            }
            Self::None => {
                return Err(Error::PassphraseRequired {
                    path: path.to_owned(),
                });
            }
            Self::Given(p) => p.clone(),
        };
        if p.chars().count() < 8 {
            return Err(Error::BadPassphrase("shorter than 8 characters"));
        }
        Ok(p)
    }
}

/// A decoded key file.
pub struct KeyFile {
    /// Kind.
    pub kind: Kind,
    /// Label.
    pub label: String,
    /// Key id stored in the file (kek files only).
    pub kek_id: Option<[u8; 8]>,
    /// Public key bytes (public kinds).
    pub public: Vec<u8>,
    /// Secret (secret kinds).
    pub secret: Option<Secret<32>>,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("kind", &self.kind)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Reads at most `max` bytes of a regular file, without following symlinks.
pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, Error> {
    read_bounded_mode(path, max).map(|(b, _)| b)
}

/// Like [`read_bounded`], also returning the permission bits of the file that was read
/// (fstat of the open descriptor, so the path is not looked up twice).
fn read_bounded_mode(path: &Path, max: u64) -> Result<(Zeroizing<Vec<u8>>, u32), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let f = crate::secure::fs::open_regular(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidInput {
            Error::Malformed {
                path: path.to_owned(),
                what: "not a regular file",
            }
        } else {
            io(e)
        }
    })?;
    let meta = f.metadata().map_err(io)?;
    if meta.len() > max {
        return Err(Error::Malformed {
            path: path.to_owned(),
            what: "file too large",
        });
    }
    let mut buf = Zeroizing::new(Vec::new());
    f.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > max {
        return Err(Error::Malformed {
            path: path.to_owned(),
            what: "file too large",
        });
    }
    Ok((buf, meta.mode()))
}

/// Reads and decodes a key file of the `expected` kind, asking `pass` if it is protected.
pub fn read_key_file(
    path: &Path,
    expected: Kind,
    pass: &PassphraseSource,
) -> Result<KeyFile, Error> {
    let (buf, file_mode) = read_bounded_mode(path, MAX_KEY_FILE)?;
    decode_key_file(&buf, file_mode, path, expected, pass)
}

/// Decodes the bytes of a key file read from `path` (named in errors) with permission bits
/// `file_mode`; the untrusted-input half of [`read_key_file`], also the fuzz entry point.
pub(crate) fn decode_key_file(
    buf: &[u8],
    file_mode: u32,
    path: &Path,
    expected: Kind,
    pass: &PassphraseSource,
) -> Result<KeyFile, Error> {
    let bad = |what| Error::Malformed {
        path: path.to_owned(),
        what,
    };
    let mut r = Reader::new(buf);
    if r.array::<4>("magic").map_err(|_| bad("too short"))? != MAGIC {
        return Err(bad("bad magic"));
    }
    if r.u8("version").map_err(|_| bad("too short"))? != VERSION {
        return Err(bad("unsupported version"));
    }
    let kind =
        Kind::from_u8(r.u8("kind").map_err(|_| bad("too short"))?).ok_or(bad("unknown kind"))?;
    if kind != expected {
        return Err(Error::WrongKind {
            path: path.to_owned(),
            expected: expected.name(),
            found: kind.name(),
        });
    }
    if kind.is_secret() {
        let mode = file_mode;
        if mode & 0o077 != 0 {
            return Err(Error::PermissionsTooOpen {
                path: path.to_owned(),
                what: "secret key file",
                mode: mode & 0o777,
            });
        }
    }
    let protection = r.u8("protection").map_err(|_| bad("too short"))?;
    let label_len = usize::from(r.u8("label").map_err(|_| bad("too short"))?);
    if label_len > MAX_LABEL {
        return Err(bad("label too long"));
    }
    let label = std::str::from_utf8(
        r.take(label_len, "label")
            .map_err(|_| bad("truncated label"))?,
    )
    .map_err(|_| bad("label is not UTF-8"))?
    .to_owned();
    if !crate::text::is_plain(&label) {
        return Err(bad("label contains control or invisible format characters"));
    }
    let aad_end = buf.len();
    if !kind.is_secret() {
        if protection != 0 {
            return Err(bad("public keys are never protected"));
        }
        let public = r.rest().to_vec();
        return Ok(KeyFile {
            kind,
            label,
            kek_id: None,
            public,
            secret: None,
        });
    }
    let kek_id = if kind == Kind::ApplianceKek {
        Some(
            r.array::<8>("key id")
                .map_err(|_| bad("truncated key id"))?,
        )
    } else {
        None
    };
    let secret = match protection {
        0 => {
            let s = r.take(32, "secret").map_err(|_| bad("truncated secret"))?;
            r.finish("secret").map_err(|_| bad("trailing data"))?;
            Secret::<32>::from_slice(s).ok_or(bad("secret length"))?
        }
        1 => {
            let params = Argon2Params {
                m_kib: r.u32("m").map_err(|_| bad("truncated KDF parameters"))?,
                t: r.u32("t").map_err(|_| bad("truncated KDF parameters"))?,
                p: r.u32("p").map_err(|_| bad("truncated KDF parameters"))?,
            };
            if !params.in_bounds() {
                return Err(bad("Argon2id parameters out of bounds"));
            }
            let salt = r.array::<16>("salt").map_err(|_| bad("truncated salt"))?;
            let nonce = r.array::<12>("nonce").map_err(|_| bad("truncated nonce"))?;
            let remaining = r.rest();
            let ct_start = aad_end.checked_sub(remaining.len()).ok_or(bad("length"))?;
            let aad = buf.get(..ct_start).ok_or(bad("length"))?;
            let (ct, tag) = remaining
                .split_at_checked(32)
                .ok_or(bad("truncated ciphertext"))?;
            let tag: [u8; 16] = tag.try_into().map_err(|_| bad("ciphertext length"))?;
            let pass = pass.get(path, false)?;
            let wrap_key = kdf::argon2id(pass.as_bytes(), &salt, params)?;
            let aead = Aes256Gcm::new_from_slice(wrap_key.expose()).map_err(|_| bad("key"))?;
            let mut ok = false;
            let secret = Secret::<32>::init_with(|s| {
                s.copy_from_slice(ct);
                ok = aead
                    .decrypt_inout_detached(
                        &nonce.into(),
                        aad,
                        s.as_mut_slice().into(),
                        &tag.into(),
                    )
                    .is_ok();
            });
            if !ok {
                return Err(Error::WrongPassphrase {
                    path: path.to_owned(),
                });
            }
            secret
        }
        _ => return Err(bad("unknown protection")),
    };
    Ok(KeyFile {
        kind,
        label,
        kek_id,
        public: Vec::new(),
        secret: Some(secret),
    })
}

/// Encodes and writes a key file with `create_new` (mode 0600 for secrets, 0644 for public
/// keys). `pass` protects a secret with Argon2id + AES-256-GCM.
pub fn write_key_file(
    path: &Path,
    kind: Kind,
    label: &str,
    kek_id: Option<[u8; 8]>,
    content: &[u8],
    pass: Option<&Passphrase>,
) -> Result<(), Error> {
    if label.len() > MAX_LABEL || !crate::text::is_plain(label) {
        return Err(Error::Malformed {
            path: path.to_owned(),
            what: "label (at most 64 printable bytes, no control or invisible format characters)",
        });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(256));
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind.to_u8());
    out.push(u8::from(kind.is_secret() && pass.is_some()));
    out.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(label.as_bytes());
    if let Some(id) = kek_id {
        out.extend_from_slice(&id);
    }
    match (kind.is_secret(), pass) {
        (true, Some(pass)) => {
            let params = Argon2Params::DEFAULT;
            let salt = rng::array::<16>()?;
            let nonce = rng::array::<12>()?;
            out.extend_from_slice(&params.m_kib.to_be_bytes());
            out.extend_from_slice(&params.t.to_be_bytes());
            out.extend_from_slice(&params.p.to_be_bytes());
            out.extend_from_slice(&salt);
            out.extend_from_slice(&nonce);
            let wrap_key = kdf::argon2id(pass.as_bytes(), &salt, params)?;
            let aead = Aes256Gcm::new_from_slice(wrap_key.expose())
                .map_err(|_| crate::crypto::Error::Malformed("wrap key"))?;
            let mut ct = Zeroizing::new(content.to_vec());
            let tag = aead
                .encrypt_inout_detached(&nonce.into(), &out, ct.as_mut_slice().into())
                .map_err(|_| crate::crypto::Error::Malformed("key file"))?;
            out.extend_from_slice(&ct);
            out.extend_from_slice(&tag);
        }
        _ => out.extend_from_slice(content),
    }
    let mode = if kind.is_secret() { 0o600 } else { 0o644 };
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Exists {
                    path: path.to_owned(),
                }
            } else {
                io(e)
            }
        })?;
    f.write_all(&out).map_err(io)?;
    // Public keys are meant to be shared: 0644 regardless of the process umask (077).
    if !kind.is_secret() {
        f.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io)?;
    }
    f.sync_all().map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn a_passphrase_source_never_debug_prints_a_passphrase() {
        let d = format!(
            "{:?}",
            PassphraseSource::Given(Zeroizing::new("hunter22-pw".into()))
        );
        assert_eq!(d, "Given(<redacted>)");
        let d = format!("{:?}", PassphraseSource::File(PathBuf::from("/p")));
        assert!(d.contains("/p"), "{d}");
    }
}
