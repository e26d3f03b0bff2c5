//! The tamper-evident audit log, `ROOT/audit/audit.log`: append-only JSON lines, each holding
//! its sequence number, time, OS user, event and details, the SHA-384 of the previous line, and
//! an HMAC-SHA-384 under a key derived from the appliance key. `ROOT/audit/head.json` holds the
//! MAC'd sequence number and hash of the last line, so truncating the log is detected too.
//! Every append is fsync'd (log and head).
//!
//! # Security
//! Modifying, deleting, reordering or truncating records breaks the MAC, the hash chain or the
//! head. Restoring an older copy of both files together (a whole-disk rollback) is not detected
//! without a hardware monotonic counter. Prompts and answers are never logged, only their SHA-384.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha384;

use crate::crypto::{Secret, ct_eq, hash};

/// Key-derivation label of the audit MAC key.
pub const AUDIT_KEY: &[u8] = b"audit log mac v1";
const LOG: &str = "audit.log";
const HEAD: &str = "head.json";
const MAX_LINE: usize = 64 * 1024;
/// Largest log `verify` reads (about 16 million records); rotate before it.
const MAX_LOG: u64 = 4 << 30;

/// Reads a regular file of at most `max` bytes without following symlinks.
fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() || meta.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file of bounded size",
        ));
    }
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// An audit problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The log was modified, reordered, truncated or extended.
    #[error("audit log tampered at record {record}: {why}")]
    Tampered {
        /// 1-based line number of the first bad record.
        record: u64,
        /// What is wrong.
        why: &'static str,
    },
}

/// One record (field order is the canonical encoding that the MAC covers).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// 1-based sequence number.
    pub seq: u64,
    /// RFC 3339 time.
    pub time: String,
    /// OS user id.
    pub uid: u32,
    /// Event name.
    pub event: String,
    /// Details (never prompt text or key material). Integers and strings only, so that
    /// re-encoding a parsed record gives back the exact bytes its MAC covers.
    pub details: serde_json::Value,
    /// SHA-384 (hex) of the previous line, or 96 zeros.
    pub prev: String,
    /// HMAC-SHA-384 (hex) of the record without this field.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    seq: u64,
    last: String,
    mac: String,
}

fn hmac(key: &Secret<32>, parts: &[&[u8]]) -> String {
    #[allow(clippy::expect_used, reason = "HMAC accepts keys of any length")]
    let mut m = <Hmac<Sha384> as KeyInit>::new_from_slice(key.expose()).expect("HMAC key");
    for p in parts {
        m.update(p);
    }
    hex::encode(m.finalize().into_bytes())
}

fn record_mac(key: &Secret<32>, r: &Record) -> Result<String, serde_json::Error> {
    let mut unsigned = r.clone();
    unsigned.mac.clear();
    Ok(hmac(
        key,
        &[
            b"rempart audit record v1\0",
            &serde_json::to_vec(&unsigned)?,
        ],
    ))
}

fn head_mac(key: &Secret<32>, seq: u64, last: &str) -> String {
    hmac(
        key,
        &[
            b"rempart audit head v1\0",
            &seq.to_be_bytes(),
            last.as_bytes(),
        ],
    )
}

/// A verified summary of the log.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The records, in order.
    pub records: Vec<Record>,
}

/// Reads and verifies the whole log against its head.
pub fn verify(dir: &Path, key: &Secret<32>) -> Result<Checked, Error> {
    let log = dir.join(LOG);
    let text = match read_capped(&log, MAX_LOG) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(Error::Io { path: log, source }),
    };
    let mut prev = "0".repeat(96);
    let mut records = Vec::new();
    let mut n = 0u64;
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        n += 1;
        let bad = |why| Error::Tampered { record: n, why };
        if line.len() > MAX_LINE {
            return Err(bad("record too long"));
        }
        let r: Record = serde_json::from_slice(line).map_err(|_| bad("not a valid record"))?;
        if r.seq != n {
            return Err(bad(
                "sequence number out of order (record deleted, inserted or moved)",
            ));
        }
        if r.prev != prev {
            return Err(bad(
                "hash chain broken (previous record changed, deleted or moved)",
            ));
        }
        let want = record_mac(key, &r).map_err(|_| bad("not a valid record"))?;
        if !ct_eq(want.as_bytes(), r.mac.as_bytes()) {
            return Err(bad("MAC mismatch (record modified)"));
        }
        prev = hex::encode(hash::sha384(&[line]));
        records.push(r);
    }
    let head_path = dir.join(HEAD);
    match read_capped(&head_path, 4096) {
        Ok(h) => {
            let h: Head = serde_json::from_slice(&h).map_err(|_| Error::Tampered {
                record: n,
                why: "head is not valid",
            })?;
            if !ct_eq(head_mac(key, h.seq, &h.last).as_bytes(), h.mac.as_bytes()) {
                return Err(Error::Tampered {
                    record: n,
                    why: "head MAC mismatch",
                });
            }
            if h.seq != n || h.last != prev {
                return Err(Error::Tampered {
                    record: n.min(h.seq).saturating_add(1),
                    why: "log does not end where its head says (records truncated or appended)",
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && n == 0 => {}
        Err(_) => {
            return Err(Error::Tampered {
                record: n,
                why: "head missing",
            });
        }
    }
    Ok(Checked { records })
}

/// Checks that a record can be appended under `key` (the head, if any, verifies), so a command
/// can refuse before it changes anything it could not then audit.
pub fn ready(dir: &Path, key: &Secret<32>) -> Result<(), Error> {
    match read_capped(&dir.join(HEAD), 4096) {
        Ok(h) => {
            let h: Head = serde_json::from_slice(&h).map_err(|_| Error::Tampered {
                record: 0,
                why: "head is not valid",
            })?;
            if ct_eq(head_mac(key, h.seq, &h.last).as_bytes(), h.mac.as_bytes()) {
                Ok(())
            } else {
                Err(Error::Tampered {
                    record: h.seq,
                    why: "head MAC mismatch",
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            path: dir.join(HEAD),
            source,
        }),
    }
}

/// Appends one record (after verifying the chain end through the head), fsyncs log and head.
pub fn append(
    dir: &Path,
    key: &Secret<32>,
    event: &str,
    details: serde_json::Value,
) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let head_path = dir.join(HEAD);
    let (seq, prev) = match read_capped(&head_path, 4096) {
        Ok(h) => {
            let h: Head = serde_json::from_slice(&h).map_err(|_| Error::Tampered {
                record: 0,
                why: "head is not valid",
            })?;
            if !ct_eq(head_mac(key, h.seq, &h.last).as_bytes(), h.mac.as_bytes()) {
                return Err(Error::Tampered {
                    record: h.seq,
                    why: "head MAC mismatch",
                });
            }
            (h.seq + 1, h.last)
        }
        Err(_) => (1, "0".repeat(96)),
    };
    let mut r = Record {
        seq,
        time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        uid: rustix::process::getuid().as_raw(),
        event: event.to_owned(),
        details,
        prev,
        mac: String::new(),
    };
    let log = dir.join(LOG);
    let io = |source| Error::Io {
        path: log.clone(),
        source,
    };
    r.mac = record_mac(key, &r).map_err(|e| io(std::io::Error::other(e)))?;
    let line = serde_json::to_vec(&r).map_err(|e| io(std::io::Error::other(e)))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(io)?;
    f.write_all(&[&line[..], b"\n"].concat()).map_err(io)?;
    f.sync_all().map_err(io)?;
    let last = hex::encode(hash::sha384(&[&line]));
    let head = Head {
        seq,
        mac: head_mac(key, seq, &last),
        last,
    };
    let tmp = dir.join(".head.json.tmp");
    let hio = |source| Error::Io {
        path: tmp.clone(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut hf = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(hio)?;
    hf.write_all(&serde_json::to_vec(&head).map_err(|e| hio(std::io::Error::other(e)))?)
        .map_err(hio)?;
    hf.sync_all().map_err(hio)?;
    std::fs::rename(&tmp, &head_path).map_err(|source| Error::Io {
        path: head_path.clone(),
        source,
    })?;
    crate::store::state::sync_dir(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests read the log they wrote")]
mod tests {
    use super::*;

    #[test]
    fn records_with_awkward_details_verify_and_any_byte_change_is_caught() {
        let dir = tempfile_dir();
        let key = Secret::<32>::init_with(|k| k.fill(7));
        let details = [
            serde_json::json!({"file": "/media/usb/naïve \"quoted\"\n\t\u{1F600}.rpk", "n": u64::MAX}),
            serde_json::json!({"reason": "x".repeat(2000), "neg": -5, "nested": {"b": [1, 2], "a": null}}),
            serde_json::json!({}),
        ];
        for (i, d) in details.iter().enumerate() {
            append(&dir, &key, &format!("event{i}"), d.clone()).unwrap();
        }
        let c = verify(&dir, &key).unwrap();
        assert_eq!(c.records.len(), 3);
        assert_eq!(c.records[0].details, details[0]);
        let wrong = Secret::<32>::init_with(|k| k.fill(8));
        assert!(matches!(
            verify(&dir, &wrong),
            Err(Error::Tampered { record: 1, .. })
        ));
        let log = dir.join(LOG);
        let original = std::fs::read(&log).unwrap();
        for pos in (0..original.len()).step_by(97) {
            if original[pos] == b'\n' {
                continue;
            }
            let mut b = original.clone();
            b[pos] ^= 0x01;
            std::fs::write(&log, &b).unwrap();
            assert!(verify(&dir, &key).is_err(), "flip at {pos} not detected");
        }
        std::fs::write(&log, &original).unwrap();
        verify(&dir, &key).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let mut r = [0u8; 8];
        crate::crypto::rng::fill(&mut r).unwrap();
        let d = std::env::temp_dir().join(format!("rempart-audit-test-{}", hex::encode(r)));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
