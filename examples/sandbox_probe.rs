//! Test helper for tests/cli/sandbox.rs: tries what the sandbox must refuse, once before and
//! once after entering rempart's real sandbox (`rempart::secure::sandbox::enter`, as `main`
//! does), with a policy that grants reading only the directory named by the first argument.
//! Prints one JSON document; each attempt is "ok" or the errno it failed with.
#![allow(clippy::print_stdout, reason = "the JSON report is the output")]
#![allow(
    clippy::disallowed_methods,
    reason = "reading a file is the probe itself: whether the sandbox lets it happen"
)]

use std::path::Path;

use rustix::net::{AddressFamily, SocketType};

fn outcome<T>(r: std::io::Result<T>) -> serde_json::Value {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e
            .raw_os_error()
            .map_or_else(|| e.to_string().into(), Into::into),
    }
}

fn socket(family: AddressFamily, ty: SocketType) -> serde_json::Value {
    outcome(rustix::net::socket(family, ty, None).map_err(std::io::Error::from))
}

fn probes(allowed: &Path) -> serde_json::Value {
    serde_json::json!({
        "inet": socket(AddressFamily::INET, SocketType::STREAM),
        "inet6": socket(AddressFamily::INET6, SocketType::DGRAM),
        "unix": socket(AddressFamily::UNIX, SocketType::STREAM),
        "netlink": socket(AddressFamily::NETLINK, SocketType::DGRAM),
        "etc_passwd": outcome(std::fs::read("/etc/passwd")),
        "allowed_file": outcome(std::fs::read(allowed.join("allowed.txt"))),
        "write_in_allowed": outcome(std::fs::write(allowed.join("new.txt"), b"x")),
        "spawn": outcome(std::process::Command::new("/bin/true").status()),
    })
}

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        return std::process::ExitCode::from(2);
    };
    let dir = Path::new(&dir);
    let before = probes(dir);
    let _ = std::fs::remove_file(dir.join("new.txt"));
    let policy = rempart::secure::sandbox::FsPolicy::default().read(dir);
    let status =
        match rempart::secure::sandbox::enter(&policy, rempart::secure::sandbox::Profile::Cli) {
            Ok(s) => serde_json::to_value(s).unwrap_or_default(),
            Err(e) => serde_json::Value::String(e.to_string()),
        };
    let after = probes(dir);
    let threads = rempart::secure::sandbox::threads_status();
    println!(
        "{}",
        serde_json::json!({"before": before, "sandbox": status, "after": after, "threads": threads})
    );
    std::process::ExitCode::SUCCESS
}
