//! The arena that receives decrypted weights: one pre-faulted anonymous mapping, excluded from
//! core dumps and forks, locked in RAM where the kernel allows it, and wiped before it is unmapped.
//!
//! # Security
//! [`LockedBuf::lock_status`] tells the truth about locking; callers print it, and
//! `require_lock` turns a refusal by the kernel into an error instead of a warning.

use super::{Error, sys};

/// Whether the arena is locked in RAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockStatus {
    /// `mlock` succeeded: the pages cannot be swapped out.
    Locked,
    /// `mlock` was refused; the text says why (errno and RLIMIT_MEMLOCK).
    NotLocked(String),
    /// Empty arena, nothing to lock.
    Empty,
}

impl LockStatus {
    /// Whether the memory is locked (or there is nothing to lock).
    pub fn is_locked(&self) -> bool {
        !matches!(self, Self::NotLocked(_))
    }
}

/// A locked, zeroizing, never-dumped byte buffer of fixed size.
#[derive(Debug)]
pub struct LockedBuf {
    map: Option<sys::Mapping>,
    lock: LockStatus,
}

/// The current RLIMIT_MEMLOCK soft limit, human readable.
pub fn memlock_limit() -> String {
    match rustix::process::getrlimit(rustix::process::Resource::Memlock).current {
        None => "unlimited".to_owned(),
        Some(b) => format!("{} KiB", b / 1024),
    }
}

/// Locks every page currently mapped (the model's weights once built) with
/// `mlockall(MCL_CURRENT | MCL_ONFAULT)`: the pages in memory now are locked, and a page of
/// those mappings not yet touched is locked when it is first written or read, instead of
/// being read in now. Without `MCL_ONFAULT` the call faulted in every mapped page, the whole
/// binary (11 MiB of code, much of it never run), each thread's 2 MiB stack, the free top of
/// the heap: 12 MB of the 1B shape's peak resident memory that held nothing.
pub fn lock_current() -> std::io::Result<()> {
    use rustix::mm::MlockAllFlags;
    rustix::mm::mlockall(MlockAllFlags::CURRENT | MlockAllFlags::ONFAULT).map_err(Into::into)
}

impl LockedBuf {
    /// Allocates `len` zeroed bytes. With `require_lock`, fails unless `mlock` succeeds.
    pub fn new(len: usize, require_lock: bool) -> Result<Self, Error> {
        if len == 0 {
            return Ok(Self {
                map: None,
                lock: LockStatus::Empty,
            });
        }
        let map = sys::Mapping::new(len).map_err(|source| Error::Map { len, source })?;
        // Best effort: both flags exist since Linux 3.4 / 4.14; a failure is not fatal because
        // core dumps are disabled process-wide by harden_early().
        let _ = map.dont_dump();
        let _ = map.wipe_on_fork();
        let lock = match map.lock() {
            Ok(()) => LockStatus::Locked,
            Err(e) if require_lock => {
                return Err(Error::LockRequired {
                    len,
                    limit: memlock_limit(),
                    source: e,
                });
            }
            Err(e) => LockStatus::NotLocked(format!(
                "{e} (RLIMIT_MEMLOCK {}; raise LimitMEMLOCK or grant CAP_IPC_LOCK)",
                memlock_limit()
            )),
        };
        Ok(Self {
            map: Some(map),
            lock,
        })
    }

    /// Whether the buffer is locked in RAM.
    pub fn lock_status(&self) -> &LockStatus {
        &self.lock
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.as_slice().len())
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.map.as_ref().map_or(&[], |m| m.as_slice())
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.map.as_mut().map_or(&mut [], |m| m.as_mut_slice())
    }

    /// Zeroes the whole buffer now (it is zeroed again on drop).
    pub fn wipe(&mut self) {
        sys::wipe(self.as_mut_slice());
    }
}

impl Drop for LockedBuf {
    fn drop(&mut self) {
        self.wipe();
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests read /proc")]
mod tests {
    use super::*;

    /// The smaps lines of the mapping that starts at `addr`, and its `VmFlags` line.
    fn smaps_of(addr: usize) -> (String, String) {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{addr:x}-");
        let section: String = smaps
            .split_inclusive('\n')
            .skip_while(|l| !l.starts_with(&start))
            .take_while(|l| !l.starts_with("VmFlags"))
            .collect();
        let flags = smaps[smaps.find(&start).unwrap()..]
            .lines()
            .find(|l| l.starts_with("VmFlags"))
            .unwrap()
            .to_owned();
        (section, flags)
    }

    #[test]
    fn arena_is_zeroed_writable_and_flagged_in_smaps() {
        let mut b = LockedBuf::new(3 * 4096 + 5, false).unwrap();
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice().fill(0xa5);
        let (section, flags) = smaps_of(b.as_slice().as_ptr() as usize);
        assert!(!section.is_empty());
        assert!(flags.contains(" dd"), "{flags}");
        assert!(flags.contains(" wf"), "{flags}");
        assert!(!flags.contains(" hg"), "{flags}");
        b.wipe();
        assert!(b.as_slice().iter().all(|&x| x == 0));
    }

    #[test]
    fn a_large_mapping_is_resident_before_use_and_closed_to_khugepaged() {
        // The mapping alone: `LockedBuf`'s mlock would fault the pages in by itself.
        let b = sys::Mapping::new(sys::HUGE_PAGE_MIN).unwrap();
        let (section, flags) = smaps_of(b.as_slice().as_ptr() as usize);
        if std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
            // Advised `MADV_HUGEPAGE` while faulted in, then `MADV_NOHUGEPAGE`.
            assert!(flags.contains(" nh") && !flags.contains(" hg"), "{flags}");
        }
        // Pre-faulted although nothing was written: every page is resident.
        let rss_kb: usize = section
            .lines()
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        assert!(rss_kb * 1024 >= sys::HUGE_PAGE_MIN, "{section}");
        assert!(b.as_slice().iter().all(|&x| x == 0));
    }

    #[test]
    fn empty_arena_is_fine() {
        let b = LockedBuf::new(0, true).unwrap();
        assert!(b.is_empty());
        assert_eq!(b.lock_status(), &LockStatus::Empty);
    }
}
