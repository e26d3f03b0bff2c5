//! `selftest`: the known-answer tests of every cryptographic primitive and the process
//! hardening in force.

use clap::Args;

use super::args::JsonArg;
use super::output;
use crate::error::Result;

/// `selftest` arguments.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    #[command(flatten)]
    json: JsonArg,
}

impl SelftestArgs {
    pub(super) fn run(&self) -> Result<()> {
        selftest(self.json.json)
    }
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
