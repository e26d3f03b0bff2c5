//! The tamper-evident audit log, `ROOT/audit/audit.log`: append-only JSON lines, each holding
//! its sequence number, time, OS user, event and details, the SHA-384 of the previous line, and
//! an HMAC-SHA-384 under a key derived from the appliance key. `ROOT/audit/head.json` holds the
//! MAC'd sequence number, hash and time of the last line, so truncating the log is detected too.
//! Every append is fsync'd (log and head).
//!
//! Times never go back: a record is never dated before the one it follows. When the clock reads
//! earlier than the last record (the clock was set back), the record is dated at the last
//! record's time and a `clock_anomaly` record before it gives the clock's reading; a log whose
//! times go back does not verify. So the log's order is its time order and `audit show --since`
//! cannot hide a record written after the first one it shows.
//!
//! # Security
//! Modifying, deleting, reordering or truncating records breaks the MAC, the hash chain or the
//! head. Restoring an older copy of both files together (a whole-disk rollback) is not detected
//! without a hardware monotonic counter. Prompts and answers are never logged, only their SHA-384.

pub mod event;

use std::path::{Path, PathBuf};

pub use event::{Event, PassageRef, Source, TrustAction};

use crate::crypto::{Secret, ct_eq, hash};
use crate::secure::fs::read_capped;

/// Key-derivation label of the audit MAC key.
pub const AUDIT_KEY: &[u8] = b"audit log mac v1";
const LOG: &str = "audit.log";
const HEAD: &str = "head.json";
const MAX_LINE: usize = 64 * 1024;
/// Most bytes an append accepts after the head: a few records of an interrupted append.
const MAX_TAIL: u64 = 4 * MAX_LINE as u64;
/// Largest log `verify` reads (about 16 million records); rotate before it.
const MAX_LOG: u64 = 4 << 30;

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
    len: u64,
    last: String,
    /// The last record's time (v3 heads; a v2 head, written before times were kept, has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    mac: String,
}

fn hmac(key: &Secret<32>, parts: &[&[u8]]) -> String {
    hex::encode(crate::crypto::mac::hmac_sha384(key, parts))
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

fn head_mac(key: &Secret<32>, h: &Head) -> String {
    match &h.time {
        Some(t) => hmac(
            key,
            &[
                b"rempart audit head v3\0",
                &h.seq.to_be_bytes(),
                &h.len.to_be_bytes(),
                h.last.as_bytes(),
                b"\0",
                t.as_bytes(),
            ],
        ),
        None => hmac(
            key,
            &[
                b"rempart audit head v2\0",
                &h.seq.to_be_bytes(),
                &h.len.to_be_bytes(),
                h.last.as_bytes(),
            ],
        ),
    }
}

/// A record's time, to the second.
fn parse_time(t: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339(t).ok()
}

fn zero_hash() -> String {
    "0".repeat(96)
}

/// A verified summary of the log.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The records, in order (committed ones, then any pending ones).
    pub records: Vec<Record>,
    /// Valid records after the one the head names: an append was interrupted between writing
    /// the record and updating the head; the next append commits them.
    pub pending: u64,
    /// Bytes of an unterminated line after the last record: an append was interrupted while
    /// writing; the next append discards them and records that it did.
    pub fragment: u64,
}

/// Where a chain of records stands: the last sequence number, the hash of its line, the byte
/// length of the log up to and including it, and its time (`None` before the first record, or
/// at a head written before heads kept it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Chain {
    seq: u64,
    last: String,
    len: u64,
    time: Option<std::time::SystemTime>,
}

impl Chain {
    fn empty() -> Self {
        Self {
            seq: 0,
            last: zero_hash(),
            len: 0,
            time: None,
        }
    }

    /// Whether `self` (reached by a scan) is the point `head` names: a head without a time
    /// names a point by sequence, hash and length only.
    fn is_at(&self, head: &Chain) -> bool {
        self.seq == head.seq
            && self.last == head.last
            && self.len == head.len
            && (head.time.is_none() || self.time == head.time)
    }
}

/// What [`scan`] found.
struct Scanned {
    records: Vec<Record>,
    /// The chain after the last record.
    end: Chain,
    /// The chain after record number `mark`, if the scan passed it.
    marked: Option<Chain>,
    /// Bytes of a final unterminated line.
    fragment: u64,
}

/// Verifies the complete lines of `text` (the log from `at.len` on) as records that continue
/// the chain `at`. `Err` names the first record that does not verify.
fn scan(text: &[u8], key: &Secret<32>, at: &Chain, mark: u64) -> Result<Scanned, Error> {
    let mut chain = at.clone();
    let mut marked = (at.seq == mark).then(|| at.clone());
    let mut records = Vec::new();
    let mut rest = text;
    while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
        let (line, tail) = rest.split_at(nl);
        let next = chain.seq.saturating_add(1);
        let bad = |why| Error::Tampered { record: next, why };
        if line.len() > MAX_LINE {
            return Err(bad("record too long"));
        }
        let r: Record = serde_json::from_slice(line).map_err(|_| bad("not a valid record"))?;
        if r.seq != next {
            return Err(bad(
                "sequence number out of order (record deleted, inserted or moved)",
            ));
        }
        if r.prev != chain.last {
            return Err(bad(
                "hash chain broken (previous record changed, deleted or moved)",
            ));
        }
        let want = record_mac(key, &r).map_err(|_| bad("not a valid record"))?;
        if !ct_eq(want.as_bytes(), r.mac.as_bytes()) {
            return Err(bad("MAC mismatch (record modified)"));
        }
        let time = parse_time(&r.time).ok_or(bad("not a valid record time"))?;
        if chain.time.is_some_and(|before| time < before) {
            return Err(bad("time goes back (dated before the record it follows)"));
        }
        chain = Chain {
            seq: next,
            last: hex::encode(hash::sha384(&[line])),
            len: chain.len.saturating_add(line.len() as u64 + 1),
            time: Some(time),
        };
        if chain.seq == mark {
            marked = Some(chain.clone());
        }
        records.push(r);
        rest = tail.get(1..).unwrap_or_default();
    }
    Ok(Scanned {
        records,
        end: chain,
        marked,
        fragment: rest.len() as u64,
    })
}

/// Fuzz entry point: [`scan`] with a fixed key from an empty chain, and the head parser.
#[cfg(fuzzing)]
pub(crate) fn fuzz(data: &[u8]) {
    let key = Secret::<32>::from_slice(&[7; 32]);
    if let Some(key) = key {
        let _ = scan(data, &key, &Chain::empty(), 1);
    }
    let _ = serde_json::from_slice::<Head>(data);
}

/// Reads the head: `Ok(None)` if there is none.
fn read_head(dir: &Path, key: &Secret<32>) -> Result<Option<Chain>, Error> {
    let path = dir.join(HEAD);
    let h = match read_capped(&path, 4096) {
        Ok(h) => h,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path, source }),
    };
    let h: Head = serde_json::from_slice(&h).map_err(|_| Error::Tampered {
        record: 0,
        why: "head is not valid",
    })?;
    if !ct_eq(head_mac(key, &h).as_bytes(), h.mac.as_bytes()) {
        return Err(Error::Tampered {
            record: h.seq,
            why: "head MAC mismatch",
        });
    }
    let time = match &h.time {
        Some(t) => Some(parse_time(t).ok_or(Error::Tampered {
            record: h.seq,
            why: "head time is not valid",
        })?),
        None => None,
    };
    Ok(Some(Chain {
        seq: h.seq,
        last: h.last,
        len: h.len,
        time,
    }))
}

fn log_len(dir: &Path) -> Result<u64, Error> {
    let log = dir.join(LOG);
    match std::fs::symlink_metadata(&log) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(Error::Io { path: log, source }),
    }
}

/// The head, or the empty chain for a new log; a log with records but no head was tampered.
fn head_or_new(dir: &Path, key: &Secret<32>) -> Result<Chain, Error> {
    match read_head(dir, key)? {
        Some(h) => Ok(h),
        None if log_len(dir)? == 0 => Ok(Chain::empty()),
        None => Err(Error::Tampered {
            record: 0,
            why: "head missing",
        }),
    }
}

/// Reads and verifies the whole log against its head.
pub fn verify(dir: &Path, key: &Secret<32>) -> Result<Checked, Error> {
    let head = head_or_new(dir, key)?;
    let log = dir.join(LOG);
    let text = match read_capped(&log, MAX_LOG) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(Error::Io { path: log, source }),
    };
    let found = scan(&text, key, &Chain::empty(), head.seq)?;
    if found.end.seq < head.seq {
        return Err(Error::Tampered {
            record: found.end.seq.saturating_add(1),
            why: "log ends before its head (records truncated)",
        });
    }
    // The head must name one of the records exactly (sequence, hash and offset).
    if !found.marked.as_ref().is_some_and(|m| m.is_at(&head)) {
        return Err(Error::Tampered {
            record: head.seq,
            why: "log does not match its head (records modified, truncated or replaced)",
        });
    }
    Ok(Checked {
        pending: found.end.seq.saturating_sub(head.seq),
        fragment: found.fragment,
        records: found.records,
    })
}

/// The index of the first record dated at or after `t` (`records.len()` if none): `audit show
/// --since` prints from there to the end, so no record written after it is left out.
pub fn since_index(records: &[Record], t: std::time::SystemTime) -> usize {
    records
        .iter()
        .position(|r| parse_time(&r.time).is_some_and(|rt| rt >= t))
        .unwrap_or(records.len())
}

/// Checks that a record can be appended under `key` (the head, if any, verifies), so a command
/// can refuse before it changes anything it could not then audit.
pub fn ready(dir: &Path, key: &Secret<32>) -> Result<(), Error> {
    head_or_new(dir, key).map(|_| ())
}

fn write_head(dir: &Path, key: &Secret<32>, c: &Chain) -> Result<(), Error> {
    let mut head = Head {
        seq: c.seq,
        len: c.len,
        last: c.last.clone(),
        time: c
            .time
            .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
        mac: String::new(),
    };
    head.mac = head_mac(key, &head);
    let body = serde_json::to_vec(&head).map_err(|e| Error::Io {
        path: dir.join(HEAD),
        source: std::io::Error::other(e),
    })?;
    crate::secure::fs::write_atomic(&dir.join(HEAD), ".head.json.tmp", 0o600, &[&body])
        .map_err(|(path, source)| Error::Io { path, source })
}

/// Appends one record and fsyncs it, then moves the head to it (temporary file, fsync, rename,
/// fsync of the directory). Appenders are serialised by an exclusive lock on the log.
///
/// Crash recovery: a record written before an interrupted append could move the head is
/// verified and committed; an unterminated line (a write cut short) is cut off and an
/// `audit_recovered` record says how many bytes were discarded. Anything else after the head
/// (a complete line that does not verify, or more than a few records) is tampering: refused.
pub fn append(dir: &Path, key: &Secret<32>, event: &Event) -> Result<(), Error> {
    append_at(
        dir,
        key,
        event.name(),
        event.details(),
        std::time::SystemTime::now,
    )
}

/// [`append`] of a record built by hand: the tests' way to write any record.
#[cfg(test)]
fn append_raw(
    dir: &Path,
    key: &Secret<32>,
    event: &str,
    details: serde_json::Value,
) -> Result<(), Error> {
    append_at(dir, key, event, details, std::time::SystemTime::now)
}

/// [`append`] with the clock `now`, read once the lock is held: an appender that waited for
/// the lock must not date its record before one written while it waited (that would be a
/// false `clock_anomaly`).
fn append_at(
    dir: &Path,
    key: &Secret<32>,
    event: &str,
    details: serde_json::Value,
    now: impl FnOnce() -> std::time::SystemTime,
) -> Result<(), Error> {
    use std::os::unix::fs::FileExt;
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let log = dir.join(LOG);
    let io = |source| Error::Io {
        path: log.clone(),
        source,
    };
    let f = crate::secure::fs::open_log(&log).map_err(io)?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::LockExclusive).map_err(|e| io(e.into()))?;
    let mut chain = match read_head(dir, key)? {
        Some(h) => h,
        None if f.metadata().map_err(io)?.len() == 0 => {
            // The head exists before the first record, so a log without one is tampered.
            let empty = Chain::empty();
            write_head(dir, key, &empty)?;
            empty
        }
        None => {
            return Err(Error::Tampered {
                record: 0,
                why: "head missing",
            });
        }
    };
    let file_len = f.metadata().map_err(io)?.len();
    let beyond = file_len.checked_sub(chain.len).ok_or(Error::Tampered {
        record: chain.seq,
        why: "log ends before its head (records truncated)",
    })?;
    let mut pending = Vec::new();
    let mut discarded = 0;
    if beyond > 0 {
        if beyond > MAX_TAIL {
            return Err(Error::Tampered {
                record: chain.seq.saturating_add(1),
                why: "unexpected data after the last committed record",
            });
        }
        let mut tail = vec![0u8; usize::try_from(beyond).unwrap_or(0)];
        f.read_exact_at(&mut tail, chain.len).map_err(io)?;
        let found = scan(&tail, key, &chain, 0)?;
        pending = found.records;
        chain = found.end;
        discarded = found.fragment;
        if discarded > 0 {
            f.set_len(chain.len).map_err(io)?;
        }
    }
    let mut events = Vec::new();
    if !pending.is_empty() || discarded > 0 {
        let recovered = Event::AuditRecovered {
            committed_records: pending.len() as u64,
            discarded_bytes: discarded,
        };
        events.push((recovered.name().to_owned(), recovered.details()));
    }
    // Never back in time: a clock that reads earlier than the last record is recorded as such,
    // and the records are dated at the last record's time.
    let secs = now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let clock = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let time = match chain.time {
        Some(last) if clock < last => {
            let anomaly = Event::ClockAnomaly {
                clock: humantime::format_rfc3339_seconds(clock).to_string(),
                last_record: humantime::format_rfc3339_seconds(last).to_string(),
            };
            events.push((anomaly.name().to_owned(), anomaly.details()));
            last
        }
        _ => clock,
    };
    events.push((event.to_owned(), details));
    let mut bytes = Vec::new();
    for (event, details) in events {
        let mut r = Record {
            seq: chain.seq.saturating_add(1),
            time: humantime::format_rfc3339_seconds(time).to_string(),
            uid: rustix::process::getuid().as_raw(),
            event,
            details,
            prev: chain.last.clone(),
            mac: String::new(),
        };
        r.mac = record_mac(key, &r).map_err(|e| io(std::io::Error::other(e)))?;
        let line = serde_json::to_vec(&r).map_err(|e| io(std::io::Error::other(e)))?;
        chain = Chain {
            seq: r.seq,
            last: hex::encode(hash::sha384(&[&line])),
            len: chain.len.saturating_add(line.len() as u64 + 1),
            time: Some(time),
        };
        bytes.extend_from_slice(&line);
        bytes.push(b'\n');
    }
    f.write_all_at(&bytes, chain.len.saturating_sub(bytes.len() as u64))
        .map_err(io)?;
    f.sync_all().map_err(io)?;
    write_head(dir, key, &chain)
    // The lock is released when `f` is closed.
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests read the log they wrote")]
mod tests {
    use std::io::Write;

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
            append_raw(&dir, &key, &format!("event{i}"), d.clone()).unwrap();
        }
        let c = verify(&dir, &key).unwrap();
        assert_eq!(c.records.len(), 3);
        assert_eq!(c.records[0].details, details[0]);
        let wrong = Secret::<32>::init_with(|k| k.fill(8));
        // The head is checked first, under the same key.
        assert!(matches!(
            verify(&dir, &wrong),
            Err(Error::Tampered {
                why: "head MAC mismatch",
                ..
            })
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

    fn key() -> Secret<32> {
        Secret::<32>::init_with(|k| k.fill(7))
    }

    fn events(dir: &Path) -> Vec<String> {
        verify(dir, &key())
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.event)
            .collect()
    }

    #[test]
    fn a_record_written_before_the_head_moved_is_committed_by_the_next_append() {
        let dir = tempfile_dir();
        append_raw(&dir, &key(), "a", serde_json::json!({})).unwrap();
        let head_after_a = std::fs::read(dir.join(HEAD)).unwrap();
        append_raw(&dir, &key(), "b", serde_json::json!({})).unwrap();
        // The crash: b's line is on disk, the head still names a.
        std::fs::write(dir.join(HEAD), &head_after_a).unwrap();
        let c = verify(&dir, &key()).unwrap();
        assert_eq!((c.records.len(), c.pending, c.fragment), (2, 1, 0));
        append_raw(&dir, &key(), "c", serde_json::json!({})).unwrap();
        assert_eq!(events(&dir), ["a", "b", "audit_recovered", "c"]);
        let c = verify(&dir, &key()).unwrap();
        assert_eq!((c.pending, c.fragment), (0, 0));
        assert_eq!(c.records[2].details["committed_records"], 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unterminated_line_is_discarded_and_the_discard_recorded() {
        let dir = tempfile_dir();
        append_raw(&dir, &key(), "a", serde_json::json!({})).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(LOG))
            .unwrap();
        f.write_all(b"{\"seq\":2,\"time\":\"20").unwrap();
        drop(f);
        let c = verify(&dir, &key()).unwrap();
        assert_eq!((c.records.len(), c.pending, c.fragment), (1, 0, 19));
        append_raw(&dir, &key(), "b", serde_json::json!({})).unwrap();
        assert_eq!(events(&dir), ["a", "audit_recovered", "b"]);
        let c = verify(&dir, &key()).unwrap();
        assert_eq!(c.records[1].details["discarded_bytes"], 19);
        assert_eq!(c.fragment, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn forged_lines_missing_head_and_truncation_are_refused_by_append_and_verify() {
        let dir = tempfile_dir();
        append_raw(&dir, &key(), "a", serde_json::json!({})).unwrap();
        append_raw(&dir, &key(), "b", serde_json::json!({})).unwrap();
        let log = std::fs::read(dir.join(LOG)).unwrap();
        let head = std::fs::read(dir.join(HEAD)).unwrap();
        // A complete line that does not verify after the head.
        let mut forged = log.clone();
        forged.extend_from_slice(b"{\"seq\":3}\n");
        std::fs::write(dir.join(LOG), &forged).unwrap();
        assert!(matches!(
            verify(&dir, &key()),
            Err(Error::Tampered { record: 3, .. })
        ));
        assert!(append_raw(&dir, &key(), "c", serde_json::json!({})).is_err());
        // The head removed.
        std::fs::write(dir.join(LOG), &log).unwrap();
        std::fs::remove_file(dir.join(HEAD)).unwrap();
        assert!(verify(&dir, &key()).is_err());
        assert!(ready(&dir, &key()).is_err());
        assert!(append_raw(&dir, &key(), "c", serde_json::json!({})).is_err());
        // The last record cut off (the head still names it).
        std::fs::write(dir.join(HEAD), &head).unwrap();
        let first_line = log.iter().position(|&b| b == b'\n').unwrap() + 1;
        std::fs::write(dir.join(LOG), &log[..first_line]).unwrap();
        assert!(verify(&dir, &key()).is_err());
        assert!(append_raw(&dir, &key(), "c", serde_json::json!({})).is_err());
        // An older head with the full log is "pending", never a loss; the intact pair verifies.
        std::fs::write(dir.join(LOG), &log).unwrap();
        assert_eq!(events(&dir), ["a", "b"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn concurrent_appenders_keep_one_chain() {
        let dir = tempfile_dir();
        std::thread::scope(|s| {
            for t in 0..4 {
                let dir = &dir;
                s.spawn(move || {
                    for i in 0..10 {
                        append_raw(dir, &key(), &format!("t{t}"), serde_json::json!({"i": i}))
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(events(&dir).len(), 40);
        assert_eq!(verify(&dir, &key()).unwrap().pending, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The clock is read under the lock: an appender that waits for another never reads it
    /// early, so it cannot date its record before the other's (CI saw a false
    /// `clock_anomaly` when it did).
    #[test]
    fn the_clock_is_read_only_once_the_lock_is_held() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile_dir();
        append_raw(&dir, &key(), "first", serde_json::json!({})).unwrap();
        let held = crate::secure::fs::open_log(&dir.join(LOG)).unwrap();
        rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let read = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                append_at(&dir, &key(), "waited", serde_json::json!({}), || {
                    read.store(true, Ordering::SeqCst);
                    std::time::SystemTime::now()
                })
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            assert!(!read.load(Ordering::SeqCst), "clock read before the lock");
            drop(held);
            waiter.join().unwrap().unwrap();
        });
        assert!(read.load(Ordering::SeqCst));
        assert_eq!(events(&dir), ["first", "waited"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 18: a clock set back a day dates nothing before the last record; each append
    /// while it is behind writes a `clock_anomaly` with its reading; `--since` from an hour
    /// before the last good time shows every record written since.
    #[test]
    fn a_clock_set_back_never_dates_a_record_before_the_last_and_since_cannot_hide_it() {
        use std::time::Duration;
        let dir = tempfile_dir();
        let at = |s: &str| humantime::parse_rfc3339(s).unwrap();
        let t0 = at("2026-12-04T12:00:00Z");
        let back = t0 - Duration::from_secs(86_400);
        let json = serde_json::json!({});
        append_at(&dir, &key(), "first", json.clone(), || t0).unwrap();
        append_at(&dir, &key(), "while_behind", json.clone(), || back).unwrap();
        append_at(&dir, &key(), "still_behind", json.clone(), || {
            back + Duration::from_secs(60)
        })
        .unwrap();
        append_at(&dir, &key(), "clock_fixed", json, || {
            t0 + Duration::from_secs(120)
        })
        .unwrap();
        let c = verify(&dir, &key()).unwrap();
        let got: Vec<(&str, &str)> = c
            .records
            .iter()
            .map(|r| (r.event.as_str(), r.time.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("first", "2026-12-04T12:00:00Z"),
                ("clock_anomaly", "2026-12-04T12:00:00Z"),
                ("while_behind", "2026-12-04T12:00:00Z"),
                ("clock_anomaly", "2026-12-04T12:00:00Z"),
                ("still_behind", "2026-12-04T12:00:00Z"),
                ("clock_fixed", "2026-12-04T12:02:00Z"),
            ]
        );
        assert_eq!(
            c.records[1].details,
            serde_json::json!({"clock": "2026-12-03T12:00:00Z", "last_record": "2026-12-04T12:00:00Z"})
        );
        assert_eq!(
            c.records[3].details["clock"], "2026-12-03T12:01:00Z",
            "the second reading"
        );
        // Dated by the clock, the two records written while it was behind would fall before
        // 11:00 on the 4th; in the log they cannot.
        assert_eq!(since_index(&c.records, at("2026-12-04T11:00:00Z")), 0);
        assert_eq!(since_index(&c.records, t0), 0);
        assert_eq!(since_index(&c.records, t0 + Duration::from_secs(1)), 5);
        assert_eq!(since_index(&c.records, t0 + Duration::from_secs(121)), 6);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A record dated before the one it follows does not verify, even with a valid MAC and
    /// head (as only the appliance key could make them).
    #[test]
    fn a_log_whose_times_go_back_does_not_verify() {
        let dir = tempfile_dir();
        let t0 = humantime::parse_rfc3339("2026-12-04T12:00:00Z").unwrap();
        append_at(&dir, &key(), "a", serde_json::json!({}), || t0).unwrap();
        append_at(&dir, &key(), "b", serde_json::json!({}), || t0).unwrap();
        let log = std::fs::read_to_string(dir.join(LOG)).unwrap();
        let mut lines: Vec<String> = log.lines().map(str::to_owned).collect();
        let mut r: Record = serde_json::from_str(&lines[1]).unwrap();
        r.time = "2026-12-04T11:59:59Z".into();
        r.mac = record_mac(&key(), &r).unwrap();
        lines[1] = serde_json::to_string(&r).unwrap();
        let text = format!("{}\n{}\n", lines[0], lines[1]);
        std::fs::write(dir.join(LOG), &text).unwrap();
        let head = Chain {
            seq: 2,
            last: hex::encode(hash::sha384(&[lines[1].as_bytes()])),
            len: text.len() as u64,
            time: parse_time(&r.time),
        };
        write_head(&dir, &key(), &head).unwrap();
        assert!(matches!(
            verify(&dir, &key()),
            Err(Error::Tampered {
                record: 2,
                why: "time goes back (dated before the record it follows)"
            })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A head written before heads kept a time (v2) still verifies and is replaced by a v3
    /// head at the next append; a v3 head with its time removed does not verify.
    #[test]
    fn a_head_without_time_is_read_and_upgraded() {
        let dir = tempfile_dir();
        append_raw(&dir, &key(), "a", serde_json::json!({})).unwrap();
        let v3 = std::fs::read_to_string(dir.join(HEAD)).unwrap();
        assert!(v3.contains("\"time\""), "{v3}");
        let mut h: Head = serde_json::from_str(&v3).unwrap();
        h.time = None;
        std::fs::write(dir.join(HEAD), serde_json::to_vec(&h).unwrap()).unwrap();
        assert!(
            matches!(
                verify(&dir, &key()),
                Err(Error::Tampered {
                    why: "head MAC mismatch",
                    ..
                })
            ),
            "the time cannot be stripped from a v3 head"
        );
        h.mac = head_mac(&key(), &h);
        std::fs::write(dir.join(HEAD), serde_json::to_vec(&h).unwrap()).unwrap();
        verify(&dir, &key()).unwrap();
        append_raw(&dir, &key(), "b", serde_json::json!({})).unwrap();
        assert!(
            std::fs::read_to_string(dir.join(HEAD))
                .unwrap()
                .contains("\"time\"")
        );
        assert_eq!(verify(&dir, &key()).unwrap().records.len(), 2);
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
