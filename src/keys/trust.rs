//! The trust store, `ROOT/keys/trusted/`: one `<keyid>.pub` per trusted publisher and
//! `policy.toml` with the k-of-n signer threshold (default 1).

use std::path::{Path, PathBuf};

use super::file::read_bounded;
use super::{Error, Kind, PassphraseSource, PublisherPublic, key_id_hex, read_key_file};
use crate::bundle::SignerLookup;
use crate::crypto::sig::PublisherPublicKey;

/// Trusted publishers and the signature threshold.
#[derive(Debug)]
pub struct TrustStore {
    dir: PathBuf,
    /// Trusted keys with their labels.
    pub keys: Vec<(PublisherPublic, String)>,
    /// The file each trusted key was read from (same order as `keys` before sorting).
    files: Vec<([u8; 8], PathBuf)>,
    /// Distinct valid trusted signatures required.
    pub threshold: usize,
}

#[derive(serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Policy {
    threshold: usize,
}

impl TrustStore {
    /// Loads `dir` (a missing directory is an empty store). Files other than `*.pub` and
    /// `policy.toml` are ignored; a `*.pub` that does not parse is an error naming it.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let mut keys = Vec::new();
        let mut files = Vec::new();
        let mut threshold = 1;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => Some(e),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(Error::Io {
                    path: dir.to_owned(),
                    source,
                });
            }
        };
        for e in entries.into_iter().flatten() {
            let e = e.map_err(|source| Error::Io {
                path: dir.to_owned(),
                source,
            })?;
            let path = e.path();
            if path.extension().is_some_and(|x| x == "pub") {
                let f = read_key_file(&path, Kind::PublisherPublic, &PassphraseSource::None)?;
                let pk = PublisherPublic::from_bytes(&f.public)?;
                files.push((pk.key_id, path.clone()));
                keys.push((pk, f.label));
            }
        }
        keys.sort_by_key(|(k, _)| k.key_id);
        let policy = dir.join("policy.toml");
        match read_bounded(&policy, 4096) {
            Ok(raw) => {
                let text = std::str::from_utf8(&raw).map_err(|_| Error::Policy {
                    path: policy.clone(),
                    what: "not UTF-8".into(),
                })?;
                let p: Policy = toml::from_str(text).map_err(|e| Error::Policy {
                    path: policy.clone(),
                    what: e.message().to_owned(),
                })?;
                if p.threshold == 0 {
                    return Err(Error::Policy {
                        path: policy,
                        what: "threshold must be at least 1".into(),
                    });
                }
                threshold = p.threshold;
            }
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(Self {
            dir: dir.to_owned(),
            keys,
            files,
            threshold,
        })
    }

    /// Adds the publisher public key in `file`; returns its id and whether it was new.
    pub fn add(&mut self, file: &Path) -> Result<([u8; 8], bool), Error> {
        let f = read_key_file(file, Kind::PublisherPublic, &PassphraseSource::None)?;
        let pk = PublisherPublic::from_bytes(&f.public)?;
        let id = pk.key_id;
        if self.keys.iter().any(|(k, _)| k.key_id == id) {
            return Ok((id, false));
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| Error::Io {
            path: self.dir.clone(),
            source,
        })?;
        let dest = self.dir.join(format!("{}.pub", key_id_hex(&id)));
        super::write_key_file(
            &dest,
            Kind::PublisherPublic,
            &f.label,
            None,
            &f.public,
            None,
        )?;
        self.files.push((id, dest));
        self.keys.push((pk, f.label));
        self.keys.sort_by_key(|(k, _)| k.key_id);
        Ok((id, true))
    }

    /// Removes the key with this id.
    pub fn remove(&mut self, id: &[u8; 8]) -> Result<(), Error> {
        if !self.keys.iter().any(|(k, _)| &k.key_id == id) {
            return Err(Error::UnknownKeyId(key_id_hex(id)));
        }
        // Every file that holds this key, whatever its name.
        for (_, path) in self.files.iter().filter(|(k, _)| k == id) {
            std::fs::remove_file(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        self.files.retain(|(k, _)| k != id);
        self.keys.retain(|(k, _)| &k.key_id != id);
        Ok(())
    }

    /// Sets the threshold (written to policy.toml atomically).
    pub fn set_threshold(&mut self, threshold: usize) -> Result<(), Error> {
        let path = self.dir.join("policy.toml");
        if threshold == 0 {
            return Err(Error::Policy {
                path,
                what: "threshold must be at least 1".into(),
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| Error::Io {
            path: self.dir.clone(),
            source,
        })?;
        let text = toml::to_string(&Policy { threshold }).map_err(|e| Error::Policy {
            path: path.clone(),
            what: e.to_string(),
        })?;
        crate::secure::fs::write_atomic(&path, ".policy.toml.tmp", 0o600, &[text.as_bytes()])
            .map_err(|(path, source)| Error::Io { path, source })?;
        self.threshold = threshold;
        Ok(())
    }
}

impl SignerLookup for TrustStore {
    fn trusted(&self, key_id: &[u8; 8]) -> Option<&PublisherPublicKey> {
        self.keys
            .iter()
            .find(|(k, _)| &k.key_id == key_id)
            .map(|(k, _)| &k.pk)
    }
    fn threshold(&self) -> usize {
        self.threshold
    }
}
