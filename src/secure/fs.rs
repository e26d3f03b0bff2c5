//! Safe file operations, in one place: every file the appliance reads from its root or from a
//! medium is opened without following symlinks, must be a regular file, and is read within a
//! size cap; every file it replaces is written to a temporary file, fsync'd, renamed into place,
//! and the directory is fsync'd.
//!
//! # Security
//! - [`open_regular`] opens with `O_NOFOLLOW` and checks the open descriptor (fstat), so a
//!   symlink planted at the path is refused and the checked file is the one read (no
//!   time-of-check/time-of-use gap between the type check and the read).
//! - [`read_capped`] reads at most `max` bytes: a huge or growing file cannot exhaust memory.
//! - [`write_atomic`] never writes through an existing path: a stale temporary (or a symlink
//!   planted in its place) is removed, the temporary is created with `O_CREAT|O_EXCL`, and the
//!   rename replaces the target's directory entry, never the file it pointed to.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// OpenSSH StrictModes for one path, when it exists (a missing path, or one that cannot be
/// looked up, is left to the open that follows): it must be owned by this user or root, and
/// neither its group nor other users may write it. An `ancestor` of the appliance root may be a
/// sticky directory that all may write (`/tmp`): no one else can rename or remove what is in it.
pub fn check_private(path: &Path, ancestor: bool) -> Result<(), super::Error> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let (mode, uid) = (meta.mode(), meta.uid());
    let me = rustix::process::geteuid().as_raw();
    let refuse = |problem: String, fix: String| super::Error::Permissions {
        path: path.to_owned(),
        problem,
        fix,
    };
    if uid != me && uid != 0 {
        return Err(refuse(
            format!("owned by uid {uid}, not by this user (uid {me}) or root"),
            format!("chown {me} {}", path.display()),
        ));
    }
    let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !(ancestor && sticky_dir) {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "its group and all users",
            (true, false) => "its group",
            _ => "all users",
        };
        return Err(refuse(
            format!("mode {:03o} lets {who} write it", mode & 0o777),
            format!("chmod go-w {}", path.display()),
        ));
    }
    Ok(())
}

/// Why [`open_regular`] refused a path that exists.
pub const NOT_REGULAR: &str = "not a regular file";

/// Opens `path` for reading without following a symlink and without blocking; only a regular
/// file is accepted (anything else is `ErrorKind::InvalidInput`, [`NOT_REGULAR`]). The open is
/// non-blocking so that a FIFO (or a device) put where a file was expected is refused at once
/// by the `fstat` check instead of hanging the open until a writer comes; on a regular file
/// `O_NONBLOCK` changes nothing.
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    regular(
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(path)?,
    )
}

/// `f` if its descriptor is a regular file (fstat), else `ErrorKind::InvalidInput`.
fn regular(f: File) -> std::io::Result<File> {
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            NOT_REGULAR,
        ));
    }
    Ok(f)
}

/// Reads a regular file of at most `max` bytes ([`open_regular`]); a larger file is
/// `ErrorKind::InvalidData` ("file too large"), whatever its size grows to while it is read.
pub fn read_capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let f = open_regular(path)?;
    if f.metadata()?.len() > max {
        return Err(too_large());
    }
    let mut buf = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(too_large());
    }
    Ok(buf)
}

fn too_large() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, "file too large")
}

/// Opens (creating it if needed) a file to append to and read back, such as the audit log,
/// without following a symlink; only a regular file is accepted.
pub fn open_log(path: &Path) -> std::io::Result<File> {
    regular(
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)?,
    )
}

/// Creates a new file (never an existing path, never through a symlink) with `mode`, writes
/// `bytes` and fsyncs it: for exports, which must never overwrite.
pub fn create_new(path: &Path, mode: u32, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// fsyncs a directory so that a rename or an unlink in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory a path's entry lives in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Replaces `path` with `parts` atomically: a new temporary file beside it (`tmp_name`, created
/// exclusively, `mode`), written and fsync'd, renamed over `path`, then the directory fsync'd.
/// On failure the temporary file is removed and `path` is unchanged. The error names the file
/// that failed (the temporary, `path` for the rename, the directory for its sync).
pub fn write_atomic(
    path: &Path,
    tmp_name: &str,
    mode: u32,
    parts: &[&[u8]],
) -> Result<(), (std::path::PathBuf, std::io::Error)> {
    let dir = parent_dir(path);
    let tmp = dir.join(tmp_name);
    // A stale temporary (or a symlink planted there) is removed, never followed.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err((tmp, e)),
        _ => {}
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            parts.iter().try_for_each(|p| f.write_all(p))?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err((tmp, e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err((path.to_owned(), e));
    }
    sync_dir(dir).map_err(|e| (dir.to_owned(), e))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests read back what they wrote")]
mod tests {
    use super::*;

    #[test]
    fn open_regular_refuses_symlinks_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let link = d.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(open_regular(&file).is_ok());
        assert!(open_regular(&link).is_err(), "a symlink is never followed");
        let e = open_regular(d.path()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_fifo_or_a_device_is_refused_at_once() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("bundle.rpk");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // No writer: a blocking open would wait forever.
        let e = open_regular(&fifo).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        let e = read_capped(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn read_capped_refuses_a_file_over_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, vec![7u8; 100]).unwrap();
        assert_eq!(read_capped(&file, 100).unwrap().len(), 100);
        let e = read_capped(&file, 99).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn write_atomic_replaces_and_never_follows_a_planted_temporary() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("state.json");
        let victim = d.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::fs::write(&target, b"old").unwrap();
        // A symlink planted at the temporary's name is removed, not written through.
        std::os::unix::fs::symlink(&victim, d.path().join(".state.tmp")).unwrap();
        write_atomic(&target, ".state.tmp", 0o600, &[b"new ", b"state"]).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new state");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!d.path().join(".state.tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn write_atomic_failure_leaves_the_target_unchanged_and_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        // The temporary cannot be created: the error names it.
        let target = d.path().join("missing-dir").join("f");
        let (path, _) = write_atomic(&target, ".f.tmp", 0o600, &[b"x"]).unwrap_err();
        assert_eq!(path, d.path().join("missing-dir").join(".f.tmp"));
        // The rename fails (the target is a non-empty directory): the target is untouched, the
        // error names it, and the temporary is gone.
        let target = d.path().join("busy");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"keep").unwrap();
        let (path, _) = write_atomic(&target, ".busy.tmp", 0o600, &[b"x"]).unwrap_err();
        assert_eq!(path, target);
        assert_eq!(std::fs::read(target.join("inside")).unwrap(), b"keep");
        assert!(!d.path().join(".busy.tmp").exists());
    }
}
