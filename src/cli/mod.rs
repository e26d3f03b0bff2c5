//! The command-line front end for operators, integrators and tests: clap's argument structs, one
//! per command, each in its own file with its run and its sandbox policy, over the application
//! layer ([`crate::appliance`]). Shared flag groups (model selection, passphrase, sampling,
//! `--json`) are flattened from [`args`]. Human messages go to stderr, `--json` documents to
//! stdout ([`output`]). The terminal UI's arguments live here too ([`tui::TuiArgs`]), but `main`
//! starts it: this module never imports `crate::tui`.

pub mod args;
mod ask;
mod audit;
pub mod bench;
mod import;
mod inspect;
mod keygen;
mod list;
pub use crate::output;
mod passphrase_hash;
pub mod release;
mod remove;
mod seal;
mod selftest;
mod tokenize;
mod trust;
pub mod tui;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::appliance::Root;
pub(crate) use crate::appliance::berr;
use crate::error::Result;
use crate::secure::sandbox::{FsPolicy, Profile};

/// Rempart: sealed LLM model bundles and offline inference for air-gapped networks.
#[derive(Debug, Parser)]
#[command(name = "rempart", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    /// Appliance root holding keys/, models/ and audit/.
    #[arg(
        long,
        global = true,
        env = "REMPART_ROOT",
        default_value = "/var/lib/rempart"
    )]
    pub root: PathBuf,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an appliance or publisher key pair in ROOT/keys (or --out-dir).
    ///
    /// appliance: appliance.key (secret), appliance.pub (for the post-quantum hybrid recipient)
    /// and appliance.kek (the AES key-wrap key to hand to the publisher: the default recipient).
    /// publisher: publisher.key (secret) and publisher.pub (to add to appliances' trust stores).
    /// Secrets are passphrase-protected (Argon2id) unless --no-passphrase is given.
    Keygen(keygen::KeygenArgs),
    /// Manage trusted publisher keys (ROOT/keys/trusted).
    Trust(trust::TrustArgs),
    /// Encrypt and sign a model file into a sealed bundle (.rpk).
    Seal(seal::SealArgs),
    /// Show a bundle's header, manifest and signers (no key needed, nothing verified).
    Inspect(inspect::InspectArgs),
    /// Check a bundle's signatures against the trust store and its ciphertext hashes.
    Verify(verify::VerifyArgs),
    /// Import sealed bundles from files or a directory (e.g. a mounted USB stick) into
    /// ROOT/models: signatures, targets, expiry and rollback are checked before anything is
    /// copied, and the copy is verified again before it is installed.
    Import(import::ImportArgs),
    /// Check or show the tamper-evident audit log (ROOT/audit).
    Audit(audit::AuditArgs),
    /// List installed models.
    List(list::ListArgs),
    /// Run the known-answer self-tests of every cryptographic primitive (they also run before
    /// every command) and show the process hardening status.
    Selftest(selftest::SelftestArgs),
    /// Remove an installed model (NAME: every version; NAME@VERSION: one). The rollback
    /// counter is kept.
    Remove(remove::RemoveArgs),
    /// Ask the installed model a question; the answer streams to stdout.
    ///
    /// Works with no network and no terminal. Ctrl-C stops generation and keeps the answer so far.
    Ask(ask::AskArgs),
    /// The analysts' terminal UI: a conversation with the installed model, answers streamed,
    /// classification banners, idle lock. Also started by `rempart` alone on a terminal.
    /// Nothing is written to disk but the audit log.
    Tui(tui::TuiArgs),
    /// Print the Argon2id hash of an operator unlock passphrase for rempart.toml
    /// (`[tui] unlock_passphrase`, used when the appliance key has no passphrase).
    PassphraseHash(passphrase_hash::PassphraseHashArgs),
    /// Sign a release manifest with the release key (Ed25519 + ML-DSA-87; docs/release.md).
    SignRelease(release::SignReleaseArgs),
    /// Check a release offline: the manifest's signatures under a trusted release key, then the
    /// binary's and the SBOM's size, SHA-256 and SHA-384 against it.
    VerifyRelease(release::VerifyReleaseArgs),
    /// Show how the installed model's tokenizer splits TEXT (ids and pieces).
    Tokenize(tokenize::TokenizeArgs),
    /// Benchmarks like llama-bench: prompt processing and generation tokens/s, load time split
    /// into read+verify, unwrap+decrypt and build; or unseal throughput with --decrypt.
    Bench(bench::BenchArgs),
}

impl Cli {
    /// The appliance root.
    pub fn root(&self) -> Root {
        Root::new(&self.root)
    }

    /// What this command may touch on the filesystem once the sandbox is entered
    /// ([`crate::secure::sandbox`]): each command's own policy, read paths sorted.
    pub fn fs_policy(&self) -> FsPolicy {
        let root = self.root();
        let mut p = match &self.command {
            Command::Keygen(a) => a.policy(&root),
            Command::Trust(a) => a.policy(&root),
            Command::Seal(a) => a.policy(),
            Command::Inspect(a) => a.policy(&root),
            Command::Verify(a) => a.policy(&root),
            Command::Import(a) => a.policy(&root),
            Command::Audit(a) => a.policy(&root),
            // Listing and the self-tests write nothing.
            Command::List(_) | Command::Selftest(_) => FsPolicy::default().read(root.dir()),
            Command::Remove(a) => a.policy(&root),
            Command::Ask(a) => a.policy(&root),
            Command::Tui(a) => a.policy(&root),
            Command::PassphraseHash(a) => a.policy(),
            Command::SignRelease(a) => a.policy(),
            Command::VerifyRelease(a) => a.policy(),
            Command::Tokenize(a) => a.policy(&root),
            Command::Bench(a) => a.policy(&root),
        };
        p.read.sort();
        p
    }

    /// Whether the command works on the appliance root (all but `seal`, `passphrase-hash`,
    /// `selftest`, `sign-release` and `verify-release`): its permissions are checked first ([`Root::check_permissions`]).
    pub fn uses_root(&self) -> bool {
        !matches!(
            self.command,
            Command::Seal(_)
                | Command::PassphraseHash(_)
                | Command::Selftest(_)
                | Command::SignRelease(_)
                | Command::VerifyRelease(_)
        )
    }

    /// The system-call profile: the terminal UI needs crossterm's in-process socket pair.
    pub fn sandbox_profile(&self) -> Profile {
        match self.command {
            Command::Tui(_) => Profile::Terminal,
            _ => Profile::Cli,
        }
    }
}

/// The base policy of a command that works on the appliance: the root read-only, the audit log
/// writable.
pub(crate) fn appliance_policy(root: &Root) -> FsPolicy {
    FsPolicy::default().read(root.dir()).write(root.audit())
}

/// Runs a parsed command. The terminal UI is not run here (`main` starts it).
pub fn run(cli: &Cli) -> Result<()> {
    let root = cli.root();
    match &cli.command {
        Command::Keygen(a) => a.run(&root),
        Command::Trust(a) => a.run(&root),
        Command::Seal(a) => a.run(),
        Command::Inspect(a) => a.run(&root),
        Command::Verify(a) => a.run(&root),
        Command::Import(a) => a.run(&root),
        Command::Audit(a) => a.run(&root),
        Command::List(a) => a.run(&root),
        Command::Selftest(a) => a.run(),
        Command::Remove(a) => a.run(&root),
        Command::Ask(a) => a.run(&root),
        Command::Tui(_) => Err(crate::Error::Internal(
            "the terminal UI is started by main, not by cli::run".into(),
        )),
        Command::PassphraseHash(a) => a.run(),
        Command::SignRelease(a) => a.run(),
        Command::VerifyRelease(a) => a.run(),
        Command::Tokenize(a) => a.run(&root),
        Command::Bench(a) => a.run(&root),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("rempart").chain(args.iter().copied())).unwrap()
    }

    /// Issue 18: no command's policy grants write on the root itself or above it: only on its
    /// own subdirectories (or a path the operator names: an --out-dir, seal's output).
    #[test]
    fn no_policy_grants_write_on_the_root_or_above_it() {
        let cases: &[&[&str]] = &[
            &["keygen", "appliance", "--no-passphrase"],
            &["trust", "add", "/media/p.pub"],
            &["trust", "policy", "--threshold", "1"],
            &["trust", "list"],
            &["inspect", "/media/b.rpk"],
            &["verify", "/media/b.rpk", "--decrypt"],
            &["import", "/media"],
            &["audit", "verify"],
            &["list"],
            &["selftest"],
            &["remove", "m"],
            &["ask", "hi"],
            &["tokenize", "hi"],
            &["bench"],
            &["bench", "--decrypt", "--bundle", "/media/b.rpk"],
            &["passphrase-hash"],
        ];
        for args in cases {
            let mut argv = vec!["--root", "/srv/appliance"];
            argv.extend_from_slice(args);
            let p = parse(&argv).fs_policy();
            for w in &p.write {
                assert!(
                    w.starts_with("/srv/appliance/") && w != Path::new("/srv/appliance/"),
                    "{args:?} writes {}",
                    w.display()
                );
            }
        }
        // Paths the operator names are theirs to give.
        let p = parse(&["--root", "/r", "keygen", "publisher", "--out-dir", "/k"]).fs_policy();
        assert_eq!(p.write, vec![PathBuf::from("/k")]);
        let p = parse(&[
            "seal",
            "--model",
            "m.gguf",
            "--name",
            "m",
            "--version",
            "1",
            "--to",
            "a.kek",
            "--sign",
            "p.key",
            "-o",
            "/out/m.rpk",
        ])
        .fs_policy();
        assert_eq!(p.write, vec![PathBuf::from("/out")]);
    }

    #[test]
    fn remove_takes_a_passphrase_file_and_grants_reading_it() {
        let cli = parse(&["--root", "/r", "remove", "m@1", "--passphrase-file", "/p"]);
        let p = cli.fs_policy();
        assert!(p.read.contains(&PathBuf::from("/p")));
        assert!(p.write.contains(&PathBuf::from("/r/models")));
    }

    #[test]
    fn shared_groups_parse_the_same_flags_everywhere() {
        for cmd in ["ask", "tokenize"] {
            let cli = parse(&[cmd, "x", "--model", "m@2", "--passphrase-file", "/p"]);
            assert!(cli.fs_policy().read.contains(&PathBuf::from("/p")), "{cmd}");
        }
        let cli = parse(&["bench", "--model", "m", "--passphrase-file", "/p", "--json"]);
        assert!(cli.fs_policy().read.contains(&PathBuf::from("/p")));
    }

    #[test]
    fn the_terminal_ui_gets_the_terminal_profile_only() {
        assert_eq!(parse(&["tui"]).sandbox_profile(), Profile::Terminal);
        assert_eq!(parse(&["list"]).sandbox_profile(), Profile::Cli);
    }
}
