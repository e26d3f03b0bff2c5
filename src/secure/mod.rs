//! Memory protection and process hardening.
//!
//! `sys` holds the system-call `unsafe` code: an anonymous mapping for decrypted weights and a
//! zeroizing global allocator (the lean engine's kernels and thread team hold the rest of the
//! crate's `unsafe`; SECURITY.md lists every site). [`mem`] builds the locked, wiped-on-drop
//! arena on top of it; [`harden`] holds the process policy (no core dumps, not dumpable, no new
//! privileges, umask); [`sandbox`] the Landlock and seccomp policy; [`fs`] the safe file
//! operations (no-follow, size-capped opens; atomic writes).

pub mod fs;
pub mod harden;
pub mod mem;
pub mod sandbox;
mod sys;

pub use mem::{LockStatus, LockedBuf};
pub use sys::ZeroizingAlloc;

/// A memory or hardening operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The anonymous mapping for the arena could not be created.
    #[error("cannot map {len} bytes of memory for decrypted data: {source}")]
    Map {
        /// Requested size.
        len: usize,
        /// OS error.
        source: std::io::Error,
    },
    /// Locking was required (`--require-mlock`) but the kernel refused it.
    #[error(
        "cannot lock {len} bytes in memory ({source}); RLIMIT_MEMLOCK is {limit}: raise it \
         (systemd LimitMEMLOCK=, ulimit -l) or grant CAP_IPC_LOCK, or drop --require-mlock"
    )]
    LockRequired {
        /// Requested size.
        len: usize,
        /// Current soft limit, human readable.
        limit: String,
        /// OS error.
        source: std::io::Error,
    },
    /// A directory the command must write does not exist, nor does its own directory: the
    /// sandbox grants only paths that exist.
    #[error(
        "{}: does not exist, nor does the directory it would be created in; the sandbox grants \
         no access in its place (check --root and the paths given)",
        path.display()
    )]
    MissingPath {
        /// The path.
        path: std::path::PathBuf,
    },
    /// A directory or file of the appliance root (or an ancestor of the root) that others could
    /// change: the appliance refuses to use it, as OpenSSH's StrictModes does.
    #[error("{}: {problem}; the appliance refuses to use it (fix with: {fix})", path.display())]
    Permissions {
        /// The path.
        path: std::path::PathBuf,
        /// What is wrong (mode and owner).
        problem: String,
        /// The command that fixes it.
        fix: String,
    },
    /// A start-up hardening step failed; the process refuses to run without it.
    #[error("hardening step `{step}` failed: {source}")]
    Harden {
        /// Which step.
        step: &'static str,
        /// OS error.
        source: std::io::Error,
    },
}
