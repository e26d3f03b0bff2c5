//! The command-line contract for operators, integrators and tests (clap derive), and dispatch.
//! One file per command family; human messages go to stderr, `--json` documents to stdout.

mod audit_cmd;
pub mod bench;
mod import;
mod inspect;
mod keys;
pub mod output;
pub(crate) mod run;
mod seal;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::error::Result;

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

/// Which key pair `keygen` creates.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyRole {
    /// The appliance's decryption key (appliance.key, appliance.pub, appliance.kek).
    Appliance,
    /// A publisher's signing key (publisher.key, publisher.pub).
    Publisher,
}

/// Which forward pass `bench` measures.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    /// The lean llama path where it applies, else candle-transformers.
    Auto,
    /// candle-transformers' model.
    Stock,
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    /// The CPU (the static, default build).
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`; GPU memory is not wiped).
    Cuda,
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
    Keygen {
        /// Which key pair.
        role: KeyRole,
        /// Read the passphrase from the first line of this file.
        #[arg(long, conflicts_with = "no_passphrase")]
        passphrase_file: Option<PathBuf>,
        /// Store the secret unencrypted (mode 0600), for unattended appliances.
        #[arg(long)]
        no_passphrase: bool,
        /// A label stored with the key (shown by trust list and inspect).
        #[arg(long, default_value = "")]
        label: String,
        /// Write the files here instead of ROOT/keys.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Manage trusted publisher keys (ROOT/keys/trusted).
    Trust {
        /// Trust subcommand.
        #[command(subcommand)]
        action: TrustAction,
        /// Passphrase file for a protected appliance key (changes are audited under it).
        #[arg(long, global = true)]
        passphrase_file: Option<PathBuf>,
    },
    /// Encrypt and sign a model file into a sealed bundle (.rpk).
    Seal {
        /// The plaintext model file (GGUF).
        #[arg(long)]
        model: PathBuf,
        /// Model name: letters, digits, '.', '_' and '-', at most 64 bytes.
        #[arg(long)]
        name: String,
        /// Monotonic version (at least 1); appliances refuse downgrades.
        #[arg(long)]
        version: u64,
        /// Recipient: appliance.kek (AES-256 key wrap) or appliance.pub (ML-KEM-1024 + X25519).
        #[arg(long = "to", required = true)]
        to: Vec<PathBuf>,
        /// Publisher secret key; repeat for k-of-n signing.
        #[arg(long = "sign", required = true)]
        sign: Vec<PathBuf>,
        /// Classification marking shown to analysts (e.g. "UNCLASSIFIED", "SECRET").
        #[arg(long)]
        marking: Option<String>,
        /// Expiry date (YYYY-MM-DD or RFC 3339); appliances refuse expired bundles.
        #[arg(long)]
        expires: Option<String>,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
        /// Passphrase file for protected keys.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// Output bundle.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
    /// Show a bundle's header, manifest and signers (no key needed, nothing verified).
    Inspect {
        /// Bundle file.
        bundle: PathBuf,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Check a bundle's signatures against the trust store and its ciphertext hashes.
    Verify {
        /// Bundle file.
        bundle: PathBuf,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
        /// Also unwrap with ROOT/keys/appliance.key and decrypt into locked memory (then wipe).
        #[arg(long)]
        decrypt: bool,
        /// Refuse to decrypt unless the memory can be locked (mlock).
        #[arg(long)]
        require_mlock: bool,
        /// Check an expired bundle anyway.
        #[arg(long)]
        allow_expired: bool,
        /// Passphrase file for a protected appliance key.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Import sealed bundles from files or a directory (e.g. a mounted USB stick) into
    /// ROOT/models: signatures, targets, expiry and rollback are checked before anything is
    /// copied, and the copy is verified again before it is installed.
    Import {
        /// Bundle files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Accept an expired bundle.
        #[arg(long)]
        allow_expired: bool,
        /// Accept a version not newer than the highest ever installed.
        #[arg(long)]
        allow_downgrade: bool,
        /// How many older versions of a model to keep.
        #[arg(long, default_value_t = 1)]
        keep_previous: usize,
        /// Passphrase file for a protected appliance key.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Check or show the tamper-evident audit log (ROOT/audit).
    Audit {
        /// Audit subcommand.
        #[command(subcommand)]
        action: AuditAction,
        /// Passphrase file for a protected appliance key.
        #[arg(long, global = true)]
        passphrase_file: Option<PathBuf>,
    },
    /// List installed models.
    List {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Run the known-answer self-tests of every cryptographic primitive (they also run before
    /// every command) and show the process hardening status.
    Selftest {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove an installed model (NAME: every version; NAME@VERSION: one). The rollback
    /// counter is kept.
    Remove {
        /// NAME or NAME@VERSION.
        spec: String,
    },
    /// Ask the installed model a question; the answer streams to stdout.
    ///
    /// Works with no network and no terminal. Ctrl-C stops generation and keeps the answer so far.
    Ask {
        /// The question, or `-` to read it from stdin.
        prompt: String,
        /// Installed model: NAME or NAME@VERSION (default: the only one installed).
        #[arg(long)]
        model: Option<String>,
        /// System prompt.
        #[arg(long)]
        system: Option<String>,
        /// Maximum tokens to generate.
        #[arg(long, default_value_t = 512)]
        max_tokens: usize,
        /// Sampling temperature (0 = greedy, deterministic).
        #[arg(long, default_value_t = 0.8)]
        temperature: f32,
        /// Nucleus sampling threshold in (0, 1].
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        /// Keep only the k most likely tokens (0 = off).
        #[arg(long, default_value_t = 40)]
        top_k: usize,
        /// Drop tokens below min-p times the top probability.
        #[arg(long, default_value_t = 0.05)]
        min_p: f32,
        /// Repeat penalty (1 = off).
        #[arg(long, default_value_t = 1.0)]
        repeat_penalty: f32,
        /// Random seed (same seed, same answer); default: random.
        #[arg(long)]
        seed: Option<u64>,
        /// Print one JSON document {model, text, tokens_prompt, tokens_generated, stop_reason, timings}.
        #[arg(long)]
        json: bool,
        /// Refuse to run unless the model's memory can be locked.
        #[arg(long)]
        require_mlock: bool,
        /// Where inference runs.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
        /// Passphrase file for a protected appliance key.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// The analysts' terminal UI: a conversation with the installed model, answers streamed,
    /// classification banners, idle lock. Also started by `rempart` alone on a terminal.
    /// Nothing is written to disk but the audit log.
    Tui {
        /// Installed model to load first: NAME or NAME@VERSION (default: the only one
        /// installed). F2 switches model inside the UI.
        #[arg(long)]
        model: Option<String>,
        /// System prompt (default: rempart.toml `tui.system_prompt`, else none).
        #[arg(long)]
        system: Option<String>,
        /// Maximum tokens per answer (default: rempart.toml, else 1024).
        #[arg(long)]
        max_tokens: Option<usize>,
        /// Sampling temperature, 0 = greedy (default: rempart.toml, else 0.8).
        #[arg(long)]
        temperature: Option<f32>,
        /// Nucleus sampling threshold in (0, 1] (default: rempart.toml, else 0.95).
        #[arg(long)]
        top_p: Option<f32>,
        /// Fixed random seed for every answer (default: a new one per answer).
        #[arg(long)]
        seed: Option<u64>,
        /// Lock the screen after this many minutes without input (default: rempart.toml,
        /// else 5).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1440))]
        idle_lock_minutes: Option<u64>,
        /// Keep the conversation in memory while locked (default: rempart.toml, else wipe it).
        #[arg(long)]
        keep_on_lock: bool,
        /// Refuse to run unless the model's memory can be locked.
        #[arg(long)]
        require_mlock: bool,
        /// Passphrase file for a protected appliance key (else a prompt before the UI starts).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// On exit, print input-to-redraw latency figures (p50/p95/max) to stderr.
        #[arg(long)]
        report_latency: bool,
    },
    /// Print the Argon2id hash of an operator unlock passphrase for rempart.toml
    /// (`[tui] unlock_passphrase`, used when the appliance key has no passphrase).
    PassphraseHash {
        /// Read the passphrase from this file (else a prompt, asked twice).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Show how the installed model's tokenizer splits TEXT (ids and pieces).
    Tokenize {
        /// The text, or `-` for stdin.
        text: String,
        /// Installed model: NAME or NAME@VERSION.
        #[arg(long)]
        model: Option<String>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
        /// Passphrase file for a protected appliance key.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Benchmarks like llama-bench: prompt processing and generation tokens/s, load time split
    /// into read+verify, unwrap+decrypt and build; or unseal throughput with --decrypt.
    Bench {
        /// Installed model: NAME or NAME@VERSION.
        #[arg(long)]
        model: Option<String>,
        /// Prompt tokens to process.
        #[arg(short = 'p', default_value_t = 512)]
        pp: usize,
        /// Tokens to generate.
        #[arg(short = 'n', default_value_t = 128)]
        tg: usize,
        /// Where inference runs.
        #[arg(long, value_enum, default_value = "cpu")]
        device: DeviceArg,
        /// Measure decryption throughput on a synthetic payload with 1 and 2 threads instead.
        #[arg(long)]
        decrypt: bool,
        /// Synthetic payload size in MiB (--decrypt).
        #[arg(long, default_value_t = 1024)]
        size_mib: usize,
        /// Repetitions.
        #[arg(short = 'r', long, default_value_t = 5)]
        repetitions: usize,
        /// Also time opening this sealed bundle with ROOT's appliance key (--decrypt).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Worker threads for inference (default: one per CPU, or RAYON_NUM_THREADS).
        #[arg(short = 't', long)]
        threads: Option<usize>,
        /// Forward pass: `auto` (Rempart's lean llama path where it applies) or `stock`
        /// (candle-transformers' model), to compare them.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Passphrase file for a protected appliance key.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Audit log actions.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Verify every record (MAC, hash chain, head); names the first bad record.
    Verify {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print the records (after verifying them).
    Show {
        /// Only this event (e.g. query, import_accepted).
        #[arg(long)]
        event: Option<String>,
        /// Only records at or after this time: an RFC 3339 date or time (2026-11-30,
        /// 2026-11-30T09:00:00Z) or an age (90m, 24h, 7d).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// Trust store actions.
#[derive(Debug, Subcommand)]
pub enum TrustAction {
    /// Trust a publisher public key (FILE.pub); re-adding the same key is harmless.
    Add {
        /// Publisher public key file.
        file: PathBuf,
    },
    /// List trusted publisher keys and the signature threshold.
    List {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a publisher key.
    Remove {
        /// Key id (16 hex digits, as shown by trust list).
        key_id: String,
    },
    /// Set how many distinct trusted signatures a bundle needs (k of n).
    Policy {
        /// The threshold k (at least 1).
        #[arg(long)]
        threshold: usize,
    },
}

/// `rempart selftest`: the power-up known answers (run once by `main`) and the hardening in
/// force, read back from /proc.
#[allow(
    clippy::disallowed_methods,
    reason = "/proc/self/status is the kernel's, not untrusted input"
)]
fn selftest(json_out: bool) -> Result<()> {
    let r = crate::selftest::power_up();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |k: &str| crate::secure::sandbox::status_field(&status, k);
    let core = rustix::process::getrlimit(rustix::process::Resource::Core).current;
    let sandbox = crate::secure::sandbox::status();
    let threads = crate::secure::sandbox::threads_status();
    let hardening = serde_json::json!({
        "core_dumps": if core == Some(0) { "disabled (RLIMIT_CORE 0)" } else { "ENABLED" },
        "dumpable": rustix::process::dumpable_behavior()
            .map(|d| format!("{d:?}"))
            .unwrap_or_else(|_| "unknown".into()),
        "no_new_privs": field("NoNewPrivs"),
        "seccomp": field("Seccomp"),
        "seccomp_allowed_syscalls": sandbox.map(|s| s.seccomp_allowed_syscalls),
        "landlock": sandbox.map_or("not entered", |s| s.landlock.as_str()),
        "fs_read": sandbox.map(|s| &s.read),
        "fs_write": sandbox.map(|s| &s.write),
        "threads": threads,
        "spawn_process": crate::secure::sandbox::spawn_probe(),
        "memlock_limit": crate::secure::mem::memlock_limit(),
        "locked_kib": field("VmLck"),
    });
    if json_out {
        output::json(
            &serde_json::json!({"ok": r.failed().is_empty(), "known_answer_tests": r, "hardening": hardening}),
        );
    } else {
        for t in &r.tests {
            output::line(format!(
                "{:<26} {:<4} {:>6} µs",
                t.name,
                if t.passed { "ok" } else { "FAIL" },
                t.micros
            ));
        }
        output::line(format!(
            "{} known-answer tests in {:.1} ms",
            r.tests.len(),
            r.total_ms
        ));
        if let Some(h) = hardening.as_object() {
            for (k, v) in h {
                output::line(format!(
                    "{k:<26} {}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                ));
            }
        }
    }
    match r.failed() {
        f if f.is_empty() => Ok(()),
        failed => Err(crate::Error::SelfTest { failed }),
    }
}

impl Cli {
    /// What this command may touch on the filesystem once the sandbox is entered
    /// ([`crate::secure::sandbox`]): the appliance root read-only, the audit log writable, and
    /// only the files and directories the command names or writes.
    pub fn fs_policy(&self) -> crate::secure::sandbox::FsPolicy {
        let root = &self.root;
        let audit = root.join("audit");
        let appliance = crate::secure::sandbox::FsPolicy::default()
            .read(root)
            .write(&audit);
        let pass = |p: &Option<PathBuf>| p.iter().cloned().collect::<Vec<_>>();
        let mut p = match &self.command {
            Command::Keygen {
                passphrase_file,
                out_dir,
                ..
            } => match out_dir {
                Some(d) => crate::secure::sandbox::FsPolicy::default().write(d),
                None => appliance.write(root),
            }
            .with_read(pass(passphrase_file)),
            Command::Trust {
                action,
                passphrase_file,
            } => appliance
                .write(self.trusted_dir())
                .with_read(pass(passphrase_file))
                .with_read(match action {
                    TrustAction::Add { file } => Some(file.clone()),
                    _ => None,
                }),
            Command::Seal {
                model,
                to,
                sign,
                passphrase_file,
                out,
                ..
            } => crate::secure::sandbox::FsPolicy::default()
                .read(model)
                .with_read(to.iter().chain(sign).cloned())
                .with_read(pass(passphrase_file))
                // The bundle is written next to OUT, then renamed over it.
                .write(out.parent().unwrap_or_else(|| Path::new("."))),
            Command::Inspect { bundle, .. } => crate::secure::sandbox::FsPolicy::default()
                .read(self.trusted_dir())
                .read(bundle),
            Command::Verify {
                bundle,
                passphrase_file,
                ..
            } => appliance.read(bundle).with_read(pass(passphrase_file)),
            Command::Import {
                paths,
                passphrase_file,
                ..
            } => appliance
                .write(root.join("models"))
                .with_read(paths.iter().cloned())
                .with_read(pass(passphrase_file)),
            Command::Remove { .. } => appliance.write(root.join("models")),
            Command::Bench {
                bundle,
                passphrase_file,
                ..
            } => appliance
                .with_read(bundle.iter().cloned())
                .with_read(pass(passphrase_file)),
            Command::Tui {
                passphrase_file, ..
            } => {
                // Exports may be written under the export directory (never inside the root).
                let config = crate::config::Config::load(root).unwrap_or_default();
                let p = appliance.with_read(pass(passphrase_file));
                match crate::tui::export_dir(root, &config) {
                    Some(dir) => p.write(dir),
                    None => p,
                }
            }
            Command::PassphraseHash { passphrase_file } => {
                crate::secure::sandbox::FsPolicy::default().with_read(pass(passphrase_file))
            }
            Command::Audit {
                passphrase_file, ..
            }
            | Command::Ask {
                passphrase_file, ..
            }
            | Command::Tokenize {
                passphrase_file, ..
            } => appliance.with_read(pass(passphrase_file)),
            Command::List { .. } | Command::Selftest { .. } => appliance,
        };
        p.read.sort();
        p
    }

    /// The system-call profile: the terminal UI needs crossterm's in-process socket pair.
    pub fn sandbox_profile(&self) -> crate::secure::sandbox::Profile {
        match self.command {
            Command::Tui { .. } => crate::secure::sandbox::Profile::Terminal,
            _ => crate::secure::sandbox::Profile::Cli,
        }
    }

    fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub(crate) fn trusted_dir(&self) -> PathBuf {
        self.keys_dir().join("trusted")
    }
}

/// Runs a parsed command.
pub fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Keygen {
            role,
            passphrase_file,
            no_passphrase,
            label,
            out_dir,
        } => {
            let dir = out_dir.clone().unwrap_or_else(|| cli.keys_dir());
            let id = keys::keygen(
                *role,
                passphrase_file.as_deref(),
                *no_passphrase,
                label,
                &dir,
            )?;
            // The appliance's own key generation is an appliance event; publisher keys are made
            // on publishing stations.
            if out_dir.is_none() && matches!(role, KeyRole::Appliance) {
                audit_cmd::record_if_appliance(
                    &cli.root,
                    &pass_source(passphrase_file.as_deref()),
                    "keygen",
                    serde_json::json!({"role": format!("{role:?}").to_lowercase(), "key_id": crate::keys::key_id_hex(&id)}),
                )?;
            }
            Ok(())
        }
        Command::Trust {
            action,
            passphrase_file,
        } => {
            // Unlock the audit key first: a change that cannot be audited is not made.
            let auditor = if matches!(action, TrustAction::List { .. }) {
                None
            } else {
                audit_cmd::appliance_if_any(&cli.root, &pass_source(passphrase_file.as_deref()))?
            };
            keys::trust(&cli.trusted_dir(), action)?;
            if let Some(a) = auditor {
                audit_cmd::record(
                    &cli.root,
                    &a,
                    "trust_change",
                    serde_json::json!({"action": format!("{action:?}")}),
                )?;
            }
            Ok(())
        }
        Command::Seal { .. } => seal::seal(&cli.command),
        Command::Inspect { bundle, json } => inspect::inspect(&cli.trusted_dir(), bundle, *json),
        Command::Verify {
            bundle,
            json,
            decrypt,
            require_mlock,
            allow_expired,
            passphrase_file,
        } => inspect::verify(
            cli,
            bundle,
            &inspect::VerifyOpts {
                json: *json,
                decrypt: *decrypt,
                require_mlock: *require_mlock,
                allow_expired: *allow_expired,
                passphrase: pass_source(passphrase_file.as_deref()),
            },
        ),
        Command::Import {
            paths,
            allow_expired,
            allow_downgrade,
            keep_previous,
            passphrase_file,
        } => import::import(
            cli,
            paths,
            &import::ImportOpts {
                allow_expired: *allow_expired,
                allow_downgrade: *allow_downgrade,
                keep_previous: *keep_previous,
                passphrase: pass_source(passphrase_file.as_deref()),
            },
        ),
        Command::List { json } => import::list(cli, *json),
        Command::Selftest { json } => selftest(*json),
        Command::Audit {
            action,
            passphrase_file,
        } => {
            let pass = pass_source(passphrase_file.as_deref());
            match action {
                AuditAction::Verify { json } => audit_cmd::verify(cli, &pass, *json),
                AuditAction::Show { event, since, json } => {
                    audit_cmd::show(cli, &pass, event.as_deref(), since.as_deref(), *json)
                }
            }
        }
        Command::Remove { spec } => import::remove(cli, spec),
        Command::Ask {
            prompt,
            model,
            system,
            max_tokens,
            temperature,
            top_p,
            top_k,
            min_p,
            repeat_penalty,
            seed,
            json,
            require_mlock,
            device,
            passphrase_file,
        } => run::ask(
            cli,
            &run::AskOpts {
                model: run::ModelOpts {
                    model: model.as_deref(),
                    passphrase: pass_source(passphrase_file.as_deref()),
                    require_mlock: *require_mlock,
                    device: *device,
                    backend: crate::engine::Backend::Auto,
                },
                system: system.as_deref(),
                prompt,
                max_tokens: *max_tokens,
                params: crate::engine::SamplingParams {
                    temperature: *temperature,
                    top_k: *top_k,
                    top_p: *top_p,
                    min_p: *min_p,
                    repeat_penalty: *repeat_penalty,
                    repeat_last_n: 64,
                    seed: seed.unwrap_or_else(random_seed),
                },
                json: *json,
            },
        ),
        Command::Tui {
            model,
            system,
            max_tokens,
            temperature,
            top_p,
            seed,
            idle_lock_minutes,
            keep_on_lock,
            require_mlock,
            passphrase_file,
            report_latency,
        } => crate::tui::run(
            cli,
            &crate::tui::TuiOpts {
                model: model.as_deref(),
                passphrase: pass_source(passphrase_file.as_deref()),
                require_mlock: *require_mlock,
                system: system.as_deref(),
                temperature: *temperature,
                top_p: *top_p,
                seed: *seed,
                max_tokens: *max_tokens,
                idle_minutes: *idle_lock_minutes,
                keep_on_lock: *keep_on_lock,
                report_latency: *report_latency,
            },
        ),
        Command::PassphraseHash { passphrase_file } => {
            // `get` refuses passphrases shorter than 8 characters.
            let pass = pass_source(passphrase_file.as_deref())
                .get(Path::new("the operator unlock passphrase"), true)?;
            let hash = crate::config::hash_unlock(&pass)?;
            output::line(format!("unlock_passphrase = \"{hash}\""));
            Ok(())
        }
        Command::Tokenize {
            text,
            model,
            json,
            passphrase_file,
        } => run::tokenize(
            cli,
            &run::ModelOpts {
                model: model.as_deref(),
                passphrase: pass_source(passphrase_file.as_deref()),
                require_mlock: false,
                device: DeviceArg::Cpu,
                backend: crate::engine::Backend::Auto,
            },
            text,
            *json,
        ),
        Command::Bench {
            model,
            pp,
            tg,
            device,
            decrypt,
            size_mib,
            repetitions,
            bundle,
            passphrase_file,
            json,
            threads,
            backend,
        } => {
            let pass = pass_source(passphrase_file.as_deref());
            if *decrypt {
                bench::bench(
                    cli,
                    *size_mib,
                    *repetitions,
                    bundle.as_deref(),
                    &pass,
                    *json,
                )
            } else {
                run::bench_model(
                    cli,
                    &run::ModelOpts {
                        model: model.as_deref(),
                        passphrase: pass,
                        require_mlock: false,
                        device: *device,
                        backend: match backend {
                            BackendArg::Auto => crate::engine::Backend::Auto,
                            BackendArg::Stock => crate::engine::Backend::Stock,
                        },
                    },
                    &run::BenchOpts {
                        pp: *pp,
                        tg: *tg,
                        reps: *repetitions,
                        threads: *threads,
                        json: *json,
                    },
                )
            }
        }
    }
}

pub(crate) fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = crate::crypto::rng::fill(&mut b);
    u64::from_le_bytes(b)
}

fn pass_source(file: Option<&Path>) -> crate::keys::PassphraseSource {
    match file {
        Some(f) => crate::keys::PassphraseSource::File(f.to_owned()),
        None => crate::keys::PassphraseSource::Prompt,
    }
}

/// Loads the appliance secret key from ROOT/keys/appliance.key.
pub(crate) fn load_appliance(
    root: &Path,
    pass: &crate::keys::PassphraseSource,
) -> Result<crate::keys::ApplianceSecret> {
    let path = root.join("keys").join("appliance.key");
    let f = crate::keys::read_key_file(&path, crate::keys::Kind::ApplianceSecret, pass)?;
    let seed = f.secret.ok_or(crate::keys::Error::Malformed {
        path,
        what: "no secret",
    })?;
    Ok(crate::keys::ApplianceSecret::from_seed(seed))
}

/// Opens a bundle file for positioned reads (regular files only, symlinks not followed).
pub(crate) fn open_bundle(path: &Path) -> Result<crate::bundle::FileAt> {
    crate::store::open_regular(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::InvalidInput {
            crate::Error::Usage(format!("{}: not a regular file", path.display()))
        } else {
            crate::Error::Io {
                path: path.to_owned(),
                source,
            }
        }
    })
}

/// Wraps a bundle error with its path.
pub(crate) fn berr(path: &Path) -> impl Fn(crate::bundle::Error) -> crate::Error + '_ {
    move |source| crate::Error::Bundle {
        path: path.to_owned(),
        source,
    }
}

/// Now, in Unix seconds.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Formats Unix seconds as RFC 3339 (UTC, seconds).
/// Parses `YYYY-MM-DD` (midnight UTC) or an RFC 3339 time.
pub(crate) fn parse_time(s: &str) -> Option<std::time::SystemTime> {
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    humantime::parse_rfc3339_weak(&full).ok()
}

pub(crate) fn fmt_time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}
