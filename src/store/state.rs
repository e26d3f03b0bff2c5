//! The store state, `ROOT/models/state.json`: for each model name the highest version ever
//! installed (rollback protection), MAC'd under a key derived from the appliance key so that
//! editing it without the key is detected. Written atomically (temporary file, fsync, rename,
//! fsync of the directory).
//!
//! # Security
//! A physical attacker who restores an older copy of the whole disk (state and bundles together)
//! defeats a file-based counter; a TPM NV counter would not be (see SECURITY.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::crypto::{Secret, ct_eq, mac::hmac_sha384};

/// State file name.
pub const STATE_FILE: &str = "state.json";
const MAX_STATE: u64 = 1 << 20;

/// Highest version ever installed, per model name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    /// Name → highest version.
    pub highest: BTreeMap<String, u64>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    format: u32,
    highest: BTreeMap<String, u64>,
    mac: String,
}

/// Why the state could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The file does not parse or its MAC does not verify.
    #[error("{}: store state is corrupt or was modified ({why}); refusing to guess the rollback counters", path.display())]
    Tampered {
        /// What is wrong.
        why: &'static str,
        /// File.
        path: PathBuf,
    },
}

fn mac(key: &Secret<32>, highest: &BTreeMap<String, u64>) -> [u8; 48] {
    let mut encoded = Vec::new();
    for (name, v) in highest {
        encoded.extend_from_slice(&(name.len() as u64).to_be_bytes());
        encoded.extend_from_slice(name.as_bytes());
        encoded.extend_from_slice(&v.to_be_bytes());
    }
    hmac_sha384(key, &[b"rempart store state v1\0", &encoded])
}

impl State {
    /// Loads and authenticates the state (a missing file is an empty state).
    pub fn load(dir: &Path, key: &Secret<32>) -> Result<Self, StateError> {
        let path = dir.join(STATE_FILE);
        let raw = match crate::secure::fs::read_capped(&path, MAX_STATE) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let d: OnDisk = serde_json::from_slice(&raw).map_err(|_| StateError::Tampered {
            why: "not valid JSON",
            path: path.clone(),
        })?;
        if d.format != 1 {
            return Err(StateError::Tampered {
                why: "unknown format",
                path,
            });
        }
        let want = mac(key, &d.highest);
        let got = hex::decode(&d.mac).map_err(|_| StateError::Tampered {
            why: "bad MAC encoding",
            path: path.clone(),
        })?;
        if !ct_eq(&want, &got) {
            return Err(StateError::Tampered {
                why: "MAC mismatch",
                path,
            });
        }
        Ok(Self { highest: d.highest })
    }

    /// Writes the state atomically.
    pub fn save(&self, dir: &Path, key: &Secret<32>) -> Result<(), StateError> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(".state.json.tmp");
        let io = |source| StateError::Io {
            path: tmp.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(&OnDisk {
            format: 1,
            highest: self.highest.clone(),
            mac: hex::encode(mac(key, &self.highest)),
        })
        .map_err(|e| io(std::io::Error::other(e)))?;
        crate::secure::fs::write_atomic(&path, ".state.json.tmp", 0o600, &[&body])
            .map_err(|(path, source)| StateError::Io { path, source })
    }
}
