//! The top-level error: wraps module errors, maps each to a documented exit code
//! (docs/exit-codes.md) and a short class name for JSON output and, later, the audit log.

use std::path::PathBuf;

use crate::{audit, bundle, document, engine, keys, secure, store};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: I/O or internal error.
pub const EXIT_IO: u8 = 1;
/// Exit code: usage error (bad arguments or values).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: malformed or tampered bundle.
pub const EXIT_TAMPERED: u8 = 3;
/// Exit code: signature or trust failure.
pub const EXIT_SIGNATURE: u8 = 4;
/// Exit code: key problem (key file, passphrase, permissions).
pub const EXIT_KEY: u8 = 5;
/// Exit code: policy refusal (not for this appliance, expired, memory lock required).
pub const EXIT_POLICY: u8 = 6;
/// Exit code: no such model installed (or none, or several without --model).
pub const EXIT_NO_MODEL: u8 = 7;
/// Exit code: the model or request cannot be run (architecture, tokenizer, template, context).
pub const EXIT_ENGINE: u8 = 8;
/// Exit code: a power-up known-answer self-test failed; nothing was run.
pub const EXIT_SELFTEST: u8 = 9;
/// Exit code: a document cannot be read (unsupported, malformed, too large, too slow to parse).
pub const EXIT_DOCUMENT: u8 = 10;

/// Anything a command can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A bundle is malformed, tampered with, untrusted or not for this appliance.
    #[error("{}: {source}", path.display())]
    Bundle {
        /// Bundle file.
        path: PathBuf,
        /// What is wrong.
        source: bundle::Error,
    },
    /// A key, passphrase or trust-store problem.
    #[error(transparent)]
    Keys(#[from] keys::Error),
    /// Memory locking or hardening failed.
    #[error(transparent)]
    Secure(#[from] secure::Error),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// Bad arguments or values given on the command line, in a file the operator named, or typed
    /// in the terminal UI: only for usage.
    #[error("{0}")]
    Usage(String),
    /// The terminal could not be set up, drawn to or read from.
    #[error("terminal: {0}")]
    Terminal(std::io::Error),
    /// The OS random generator failed.
    #[error("the operating system's random generator failed: {0}")]
    Rng(crate::crypto::Error),
    /// Worker threads could not be started.
    #[error("cannot start {threads} threads: {reason}")]
    Threads {
        /// How many were asked for.
        threads: usize,
        /// Why not.
        reason: String,
    },
    /// A verified bundle holds no GGUF model.
    #[error("{}: bundle has no GGUF artifact", path.display())]
    NoModelArtifact {
        /// Bundle file.
        path: PathBuf,
    },
    /// Something is over a size limit.
    #[error("{}: {bytes} bytes is over the {limit} byte limit for a {what}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What it is.
        what: &'static str,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// `import` found no bundle to install at a path it was given.
    #[error("{}: no .rpk bundle found", path.display())]
    NothingToImport {
        /// The path (a directory without `.rpk` files, or a FIFO or device).
        path: PathBuf,
    },
    /// An internal step failed that no input of the user's can cause.
    #[error("internal error: {0}")]
    Internal(String),
    /// A release signature does not verify under the release key given.
    #[error("{}: release signature refused: {reason}", path.display())]
    ReleaseSignature {
        /// The signature file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A release manifest, signature file, binary or SBOM is malformed or does not match.
    #[error("{}: {what}", path.display())]
    ReleaseMismatch {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The bundle's model card lacks fields the import policy requires.
    #[error(
        "{}: the bundle's model card lacks {} (required by rempart.toml [import] require); \
         the publisher must seal it with a --model-card that states them",
        path.display(), missing.join(", ")
    )]
    ModelCardMissing {
        /// Bundle file.
        path: PathBuf,
        /// The required fields it lacks.
        missing: Vec<String>,
    },
    /// The bundle has expired.
    #[error("{}: bundle expired on {when} (use --allow-expired to check it anyway)", path.display())]
    Expired {
        /// Bundle file.
        path: PathBuf,
        /// Expiry date.
        when: String,
    },
    /// The model or the request cannot be run.
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// No such installed model.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A bundle older than (or as old as) the highest version ever installed.
    #[error("{}: {name} version {version} is not newer than version {highest} installed before (rollback refused; --allow-downgrade overrides)", path.display())]
    Rollback {
        /// Bundle file.
        path: PathBuf,
        /// Model name.
        name: String,
        /// Its version.
        version: u64,
        /// Highest version ever installed.
        highest: u64,
    },
    /// The audit log is unusable or was tampered with.
    #[error(transparent)]
    Audit(#[from] audit::Error),
    /// The store state is unusable.
    #[error(transparent)]
    StoreState(#[from] store::state::StateError),
    /// A known-answer self-test failed.
    #[error("self-test FAILED: {} (a cryptographic primitive gives wrong answers; this binary or machine must not be used)", failed.join(", "))]
    SelfTest {
        /// The tests that failed.
        failed: Vec<&'static str>,
    },
    /// `ROOT/rempart.toml` is unreadable or invalid.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong (the key and why).
        reason: String,
    },
    /// A document cannot be attached.
    #[error(transparent)]
    Document(#[from] document::Error),
    /// An output file exists and would be overwritten.
    #[error("{}: already exists (use --force to replace it)", path.display())]
    Exists {
        /// File.
        path: PathBuf,
    },
}

impl Error {
    /// The documented exit code (docs/exit-codes.md). Every variant is named, here and in the
    /// module errors it wraps, so a new error cannot fall into a code by default.
    pub fn exit_code(&self) -> u8 {
        use bundle::Error as B;
        match self {
            Self::Bundle { source, .. } => match source {
                B::UntrustedSigner(_) | B::BadSignature { .. } | B::BelowThreshold { .. } => {
                    EXIT_SIGNATURE
                }
                B::NoRecipient(_) | B::NotTargeted(_) => EXIT_POLICY,
                B::Io { .. } => EXIT_IO,
                B::UnwrapFailed(_)
                | B::BadMagic(_)
                | B::UnsupportedVersion(_)
                | B::UnsupportedSuite(_)
                | B::Truncated(_)
                | B::TooLong { .. }
                | B::TrailingData(_)
                | B::NonCanonical(_)
                | B::UnknownField { .. }
                | B::MissingField(_)
                | B::InvalidValue(_)
                | B::FileLength { .. }
                | B::HeaderMismatch(_)
                | B::CiphertextMismatch(_)
                | B::Payload { .. }
                | B::Seal(_) => EXIT_TAMPERED,
            },
            Self::Keys(e) => match e {
                keys::Error::Io { .. } => EXIT_IO,
                keys::Error::PermissionsTooOpen { .. }
                | keys::Error::Malformed { .. }
                | keys::Error::WrongKind { .. }
                | keys::Error::WrongPassphrase { .. }
                | keys::Error::PassphraseRequired { .. }
                | keys::Error::BadPassphrase(_)
                | keys::Error::Exists { .. }
                | keys::Error::UnknownKeyId(_)
                | keys::Error::Policy { .. }
                | keys::Error::Crypto(_) => EXIT_KEY,
            },
            Self::Secure(e) => match e {
                secure::Error::LockRequired { .. } => EXIT_POLICY,
                secure::Error::Permissions { .. } => EXIT_KEY,
                secure::Error::Map { .. }
                | secure::Error::Harden { .. }
                | secure::Error::MissingPath { .. } => EXIT_IO,
            },
            Self::Io { .. }
            | Self::Terminal(_)
            | Self::Rng(_)
            | Self::Threads { .. }
            | Self::Internal(_) => EXIT_IO,
            Self::Usage(_) | Self::Exists { .. } | Self::Config { .. } => EXIT_USAGE,
            Self::Expired { .. }
            | Self::Rollback { .. }
            | Self::TooLarge { .. }
            | Self::ModelCardMissing { .. } => EXIT_POLICY,
            Self::ReleaseSignature { .. } => EXIT_SIGNATURE,
            Self::ReleaseMismatch { .. } => EXIT_TAMPERED,
            Self::StoreState(e) => match e {
                store::state::StateError::Io { .. } => EXIT_IO,
                store::state::StateError::Tampered { .. } => EXIT_TAMPERED,
            },
            Self::Audit(e) => match e {
                audit::Error::Io { .. } => EXIT_IO,
                audit::Error::Tampered { .. } => EXIT_TAMPERED,
            },
            Self::Engine(e) => match e {
                engine::Error::Sampling(_) => EXIT_USAGE,
                engine::Error::Gguf(_)
                | engine::Error::UnsupportedArchitecture(_)
                | engine::Error::Metadata(_)
                | engine::Error::Tokenizer(_)
                | engine::Error::Template(_)
                | engine::Error::PromptTooLong { .. }
                | engine::Error::Candle(_)
                | engine::Error::Stopped => EXIT_ENGINE,
            },
            Self::NoModelArtifact { .. } => EXIT_ENGINE,
            Self::NothingToImport { .. } => EXIT_NO_MODEL,
            Self::Store(e) => match e {
                store::Error::Io { .. } => EXIT_IO,
                store::Error::BadSpec(_) => EXIT_USAGE,
                store::Error::Unverified { .. } => EXIT_SIGNATURE,
                store::Error::Empty(_)
                | store::Error::NotFound { .. }
                | store::Error::Ambiguous(_) => EXIT_NO_MODEL,
            },
            Self::SelfTest { .. } => EXIT_SELFTEST,
            Self::Document(e) => match e {
                document::Error::Unreadable { .. } => EXIT_DOCUMENT,
                document::Error::AboveAccreditation { .. } => EXIT_POLICY,
            },
        }
    }

    /// A stable class name for JSON output and the audit log.
    pub fn class(&self) -> &'static str {
        match self.exit_code() {
            EXIT_TAMPERED => "tampered",
            EXIT_SIGNATURE => "signature",
            EXIT_KEY => "key",
            EXIT_POLICY => "policy",
            EXIT_USAGE => "usage",
            EXIT_NO_MODEL => "no_model",
            EXIT_ENGINE => "engine",
            EXIT_SELFTEST => "selftest",
            EXIT_DOCUMENT => "document",
            // EXIT_IO; EXIT_OK is never an error's code.
            _ => "io",
        }
    }
}

/// Result alias for commands.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every exit code, for the documentation check.
pub const EXIT_CODES: [(&str, u8); 11] = [
    ("EXIT_OK", EXIT_OK),
    ("EXIT_IO", EXIT_IO),
    ("EXIT_USAGE", EXIT_USAGE),
    ("EXIT_TAMPERED", EXIT_TAMPERED),
    ("EXIT_SIGNATURE", EXIT_SIGNATURE),
    ("EXIT_KEY", EXIT_KEY),
    ("EXIT_POLICY", EXIT_POLICY),
    ("EXIT_NO_MODEL", EXIT_NO_MODEL),
    ("EXIT_ENGINE", EXIT_ENGINE),
    ("EXIT_SELFTEST", EXIT_SELFTEST),
    ("EXIT_DOCUMENT", EXIT_DOCUMENT),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/exit-codes.md has a row `| N | \`EXIT_NAME\` |` for every code, and no other.
    #[test]
    fn every_exit_code_is_documented() {
        let doc = include_str!("../docs/exit-codes.md");
        let rows: Vec<(u8, String)> = doc
            .lines()
            .filter_map(|l| {
                let mut cells = l.split('|').map(str::trim).skip(1);
                let code = cells.next()?.parse::<u8>().ok()?;
                let name = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
                Some((code, name.to_owned()))
            })
            .collect();
        for (name, code) in EXIT_CODES {
            assert!(
                rows.contains(&(code, name.to_owned())),
                "{name} = {code} is not documented in docs/exit-codes.md"
            );
        }
        assert_eq!(rows.len(), EXIT_CODES.len(), "documented codes: {rows:?}");
        let count = format!("one of {} codes, 0 to {}", EXIT_CODES.len(), EXIT_DOCUMENT);
        assert!(doc.contains(&count), "the introduction says: {count}");
    }

    #[test]
    fn classes_follow_codes() {
        let e = Error::Terminal(std::io::Error::other("gone"));
        assert_eq!((e.exit_code(), e.class()), (EXIT_IO, "io"));
        let e = Error::NoModelArtifact {
            path: PathBuf::from("m.rpk"),
        };
        assert_eq!((e.exit_code(), e.class()), (EXIT_ENGINE, "engine"));
        let e = Error::Engine(engine::Error::Sampling("top-p".into()));
        assert_eq!((e.exit_code(), e.class()), (EXIT_USAGE, "usage"));
    }
}
