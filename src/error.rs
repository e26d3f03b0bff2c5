//! The top-level error: wraps module errors, maps each to a documented exit code
//! (docs/exit-codes.md) and a short class name for JSON output and, later, the audit log.

use std::path::PathBuf;

use crate::{audit, bundle, engine, keys, secure, store};

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
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
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
    /// An output file exists and would be overwritten.
    #[error("{}: already exists (use --force to replace it)", path.display())]
    Exists {
        /// File.
        path: PathBuf,
    },
}

impl Error {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        use bundle::Error as B;
        match self {
            Self::Bundle { source, .. } => match source {
                B::UntrustedSigner(_) | B::BadSignature { .. } | B::BelowThreshold { .. } => {
                    EXIT_SIGNATURE
                }
                B::NoRecipient(_) | B::NotTargeted(_) => EXIT_POLICY,
                B::UnwrapFailed(_) => EXIT_TAMPERED,
                B::Io { .. } => EXIT_IO,
                _ => EXIT_TAMPERED,
            },
            Self::Keys(keys::Error::Io { .. }) => EXIT_IO,
            Self::Keys(_) => EXIT_KEY,
            Self::Secure(secure::Error::LockRequired { .. }) => EXIT_POLICY,
            Self::Secure(_) | Self::Io { .. } => EXIT_IO,
            Self::Usage(_) | Self::Exists { .. } | Self::Config { .. } => EXIT_USAGE,
            Self::Expired { .. } | Self::Rollback { .. } => EXIT_POLICY,
            Self::StoreState(store::state::StateError::Io { .. }) => EXIT_IO,
            Self::StoreState(_) => EXIT_TAMPERED,
            Self::Audit(audit::Error::Io { .. }) => EXIT_IO,
            Self::Audit(_) => EXIT_TAMPERED,
            Self::Engine(engine::Error::Sampling(_)) => EXIT_USAGE,
            Self::Engine(_) => EXIT_ENGINE,
            Self::Store(store::Error::Io { .. }) => EXIT_IO,
            Self::Store(store::Error::BadSpec(_)) => EXIT_USAGE,
            Self::Store(store::Error::Unverified { .. }) => EXIT_SIGNATURE,
            Self::Store(_) => EXIT_NO_MODEL,
            Self::SelfTest { .. } => EXIT_SELFTEST,
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
            _ => "io",
        }
    }
}

/// Result alias for commands.
pub type Result<T, E = Error> = std::result::Result<T, E>;
