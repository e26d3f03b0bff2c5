//! End-to-end tests of the `rempart` binary: one integration binary (STYLE.md §8).
#![allow(
    unreachable_pub,
    reason = "test helpers are shared between test modules"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "test code: a failed unwrap is a failed test, and tests read their own files"
)]

mod aibom;
mod audit;
mod crash;
mod documents;
mod engine;
mod import;
mod keys;
mod model;
mod output;
mod reference;
mod release;
mod residue;
mod sandbox;
mod selftest;
mod tui;
mod util;
mod vectors;
mod verify;
