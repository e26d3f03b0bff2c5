//! Errors about key files, passphrases and the trust store. Messages name the file and the fix,
//! never key material.

use std::path::PathBuf;

/// A key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a key file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// A secret key file or a passphrase file is readable or writable by group or others.
    #[error(
        "{}: {what} has mode {mode:03o}, readable by others; fix with: chmod 600 {}",
        path.display(), path.display()
    )]
    PermissionsTooOpen {
        /// File.
        path: PathBuf,
        /// `secret key file` or `passphrase file`.
        what: &'static str,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a valid Rempart key file.
    #[error("{}: not a valid Rempart key file ({what})", path.display())]
    Malformed {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: &'static str,
    },
    /// The file holds another kind of key.
    #[error("{}: expected {expected}, found {found}", path.display())]
    WrongKind {
        /// File.
        path: PathBuf,
        /// Expected kind.
        expected: &'static str,
        /// Found kind.
        found: &'static str,
    },
    /// The passphrase does not decrypt the key (or the file was modified).
    #[error("{}: wrong passphrase (or the key file was modified)", path.display())]
    WrongPassphrase {
        /// File.
        path: PathBuf,
    },
    /// The key is passphrase-protected and no passphrase source is available.
    #[error(
        "{}: key is passphrase-protected; give --passphrase-file FILE or run on a terminal",
        path.display()
    )]
    PassphraseRequired {
        /// File.
        path: PathBuf,
    },
    /// The passphrase given is unusable.
    #[error("passphrase rejected: {0}")]
    BadPassphrase(&'static str),
    /// A key file already exists; nothing is overwritten.
    #[error("{}: already exists; refusing to overwrite a key (move it away first)", path.display())]
    Exists {
        /// File.
        path: PathBuf,
    },
    /// No trusted key has this id.
    #[error("no trusted publisher key with id {0}")]
    UnknownKeyId(String),
    /// The trust policy file is invalid.
    #[error("{}: invalid trust policy: {what}", path.display())]
    Policy {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A cryptographic operation failed.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::Error),
}
