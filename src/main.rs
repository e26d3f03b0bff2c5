//! The `rempart` binary: harden the process, parse the command line, enter the sandbox, run
//! the self-tests, dispatch to the CLI or the terminal UI, map errors to the documented exit
//! codes (docs/exit-codes.md).

use std::process::ExitCode;

use clap::Parser;
use rempart::cli::{self, Command};
use rempart::output;

fn main() -> ExitCode {
    // First thing: no core dumps, not dumpable, no new privileges, umask 077.
    if let Err(e) = rempart::secure::harden::harden_early() {
        output::error(&e);
        return ExitCode::from(rempart::error::EXIT_IO);
    }
    // `rempart` alone on a terminal starts the terminal UI.
    let argv: Vec<std::ffi::OsString> =
        if std::env::args_os().len() == 1 && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            vec!["rempart".into(), "tui".into()]
        } else {
            std::env::args_os().collect()
        };
    let args = match cli::Cli::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            if !e.use_stderr() {
                // --help and --version: the program's own text.
                let _ = e.print();
                return ExitCode::from(rempart::error::EXIT_OK);
            }
            // A usage error quotes the arguments, which may be file names from a medium
            // (`import *`): plain text through the sanitiser, never clap's own escapes.
            output::info(e.render().to_string().trim_end());
            return ExitCode::from(rempart::error::EXIT_USAGE);
        }
    };
    // A root that others could change is refused before anything in it is read (StrictModes).
    if args.uses_root()
        && let Err(e) = args.root().check_permissions()
    {
        output::error(&e);
        return ExitCode::from(e.exit_code());
    }
    // Before any key, bundle or model is read, and while single-threaded: Landlock limited to
    // what this command touches, then the seccomp allowlist (no network, exec or ptrace).
    if let Err(e) = rempart::secure::sandbox::enter(&args.fs_policy(), args.sandbox_profile()) {
        output::error(&e);
        return ExitCode::from(rempart::error::EXIT_IO);
    }
    // Test builds only: crash here on request, to show no core file is written (tests/cli/crash.rs).
    #[cfg(debug_assertions)]
    if std::env::var_os("REMPART_TEST_ABORT").is_some() {
        std::process::abort();
    }
    // Power-up known-answer tests of every primitive, before any key or bundle is read.
    let failed = rempart::selftest::power_up().failed();
    let result = if !failed.is_empty() {
        Err(rempart::Error::SelfTest { failed })
    } else if let Command::Tui(t) = &args.command {
        rempart::tui::run(&args.root(), &tui_opts(t))
    } else {
        cli::run(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            output::error(&e);
            ExitCode::from(e.exit_code())
        }
    }
}

/// The terminal UI's options from its command-line arguments.
fn tui_opts(t: &cli::tui::TuiArgs) -> rempart::tui::TuiOpts<'_> {
    rempart::tui::TuiOpts {
        model: t.model.as_deref(),
        passphrase: cli::args::source(t.passphrase_file.as_deref()),
        require_mlock: t.require_mlock,
        system: t.system.as_deref(),
        temperature: t.temperature,
        top_p: t.top_p,
        seed: t.seed,
        max_tokens: t.max_tokens,
        idle_minutes: t.idle_lock_minutes,
        keep_on_lock: t.keep_on_lock,
        report_latency: t.report_latency,
    }
}
