//! Rempart: a hardened, air-gapped LLM inference appliance.
//!
//! Model weights travel and rest only as sealed bundles (`.rpk`): AES-256-GCM under the C2SP
//! chunked-encryption construction, signed with Ed25519 AND ML-DSA-87, and decrypted only into
//! locked, wiped-on-drop memory. See `docs/bundle-format.md` and `SECURITY.md`.
//!
//! Modules depend in one direction: `main → cli, tui` (two front ends that never import each
//! other) `→ appliance` (the application layer) `→ store, engine, audit → bundle, keys →
//! crypto, secure`. `config` and `output` are leaves the front ends and the layer share.

pub mod aibom;
pub mod appliance;
pub mod audit;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod document;
pub mod engine;
pub mod error;
#[cfg(fuzzing)]
#[allow(clippy::panic, missing_docs, reason = "fuzz assertions")]
pub mod fuzzing;
pub mod keys;
pub mod output;
pub mod secure;
pub mod selftest;
pub mod store;
pub mod text;
pub mod tui;

pub use error::Error;

/// Every heap block is wiped before it is freed (see `secure::sys`).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static ALLOC: secure::ZeroizingAlloc = secure::ZeroizingAlloc;
