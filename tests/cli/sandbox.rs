//! The runtime sandbox (src/secure/sandbox.rs): each check is a real process that must be
//! refused. The probe (examples/sandbox_probe.rs) enters the same sandbox as `main`, then tries
//! sockets of every family, a file outside its policy and starting a process; the real binary
//! shows seccomp on every thread, and `strace -f` of a whole `ask` shows no network call.

use std::path::PathBuf;
use std::process::Command;

use crate::util::TestEnv;

const EPERM: i64 = 1;
const EACCES: i64 = 13;

fn probe_bin() -> PathBuf {
    // cargo test builds the examples next to the binaries: target/<profile>/examples/.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rempart"));
    let p = bin.with_file_name("examples").join("sandbox_probe");
    assert!(
        p.exists(),
        "{} is missing: cargo test builds it",
        p.display()
    );
    p
}

#[test]
fn after_the_sandbox_sockets_foreign_files_and_new_processes_are_refused() {
    let env = TestEnv::new();
    let dir = env.path("allowed");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("allowed.txt"), "fine").unwrap();
    let out = Command::new(probe_bin()).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Positive control: before the sandbox, every attempt works (so a refusal after it is the
    // sandbox's doing, not the machine's).
    for k in [
        "inet",
        "unix",
        "netlink",
        "etc_passwd",
        "allowed_file",
        "spawn",
    ] {
        assert_eq!(v["before"][k], "ok", "{k} before the sandbox: {v}");
    }
    assert!(
        v["sandbox"]["landlock"]
            .as_str()
            .unwrap()
            .starts_with("enforced"),
        "{v}"
    );
    for k in ["inet", "inet6", "unix", "netlink"] {
        assert_eq!(v["after"][k], EPERM, "socket({k}) after the sandbox: {v}");
    }
    assert_eq!(v["after"]["etc_passwd"], EACCES, "{v}");
    assert_eq!(
        v["after"]["write_in_allowed"], EACCES,
        "read-only grant: {v}"
    );
    assert_eq!(v["after"]["allowed_file"], "ok", "{v}");
    assert!(v["after"]["spawn"].is_i64(), "no new process: {v}");
    let threads = v["threads"].as_array().unwrap();
    assert!(threads.len() >= 2, "the worker pool was started: {v}");
    for t in threads {
        assert_eq!(t["seccomp"], "2", "{t}");
        assert_eq!(t["no_new_privs"], "1", "{t}");
    }
}

#[test]
fn every_thread_of_the_real_binary_runs_under_the_filter_and_landlock() {
    let env = TestEnv::new().with_keys();
    let v = env.json(&["selftest", "--json"]);
    let h = &v["hardening"];
    assert_eq!(h["seccomp"], "2");
    assert!(
        h["landlock"].as_str().unwrap().starts_with("enforced"),
        "{h}"
    );
    assert!(
        h["spawn_process"].as_str().unwrap().starts_with("denied"),
        "{h}"
    );
    let threads = h["threads"].as_array().unwrap();
    assert!(threads.len() >= 2, "{h}");
    for t in threads {
        assert_eq!(t["seccomp"], "2", "{t}");
        assert_eq!(t["no_new_privs"], "1", "{t}");
    }
    // The policy names the appliance root for reading and only the audit log for writing.
    let root = env.root.display().to_string();
    assert!(h["fs_read"].as_array().unwrap().iter().any(|p| p == &*root));
    assert!(
        h["fs_write"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p == "/dev/tty" || p == &*format!("{root}/audit") || p == &*root),
        "{h}"
    );
}

#[test]
fn strace_of_a_whole_ask_shows_no_network_system_call() {
    let env = TestEnv::new().with_keys();
    let gguf = env.tiny_model("tiny.gguf", 0);
    let b = env.seal(&gguf, "tiny.rpk", &[]);
    env.cmd().arg("import").arg(&b).assert().success();
    let trace = env.path("trace");
    let st = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=%network,execve,ptrace", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_rempart"))
        .arg("--root")
        .arg(&env.root)
        .args(["ask", "--max-tokens", "8", "--temperature", "0", "hello"])
        .env_remove("REMPART_ROOT")
        .output()
        .expect("strace is installed (.ci/run installs it)");
    assert!(st.status.success(), "{st:?}");
    assert!(!st.stdout.is_empty(), "the model answered");
    let log = std::fs::read_to_string(&trace).unwrap();
    let calls: Vec<&str> = log.lines().collect();
    // The one execve is strace starting rempart; nothing else: no socket family call at all.
    assert_eq!(calls.len(), 1, "{log}");
    assert!(calls[0].contains("execve("), "{log}");
}
