//! Process hardening policy, applied as the first thing `main` does.
//!
//! # Security
//! With `panic = "abort"`, `Drop` does not run on a crash, so keeping secrets out of core dumps
//! rests on these settings: RLIMIT_CORE = 0, PR_SET_DUMPABLE = 0 (also blocks ptrace attach and
//! /proc/PID/mem by other same-uid processes), PR_SET_NO_NEW_PRIVS = 1, umask 077.

use rustix::process::{DumpableBehavior, Resource, Rlimit};

use super::Error;

/// Disables core dumps and ptrace attach, forbids privilege gain, sets umask 077.
/// Any failure is an error: the process must not run half-hardened.
pub fn harden_early() -> Result<(), Error> {
    rustix::process::setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .map_err(|e| Error::Harden {
        step: "RLIMIT_CORE=0",
        source: e.into(),
    })?;
    rustix::process::set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(|e| {
        Error::Harden {
            step: "PR_SET_DUMPABLE=0",
            source: e.into(),
        }
    })?;
    rustix::thread::set_no_new_privs(true).map_err(|e| Error::Harden {
        step: "PR_SET_NO_NEW_PRIVS",
        source: e.into(),
    })?;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    Ok(())
}
