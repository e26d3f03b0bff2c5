//! Key generation, key files and the trust store through the CLI.

use std::os::unix::fs::PermissionsExt;

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

use crate::util::exit;
use crate::util::{TestEnv, chmod, write_secret};

#[test]
fn keygen_writes_owner_only_files_and_never_overwrites() {
    let env = TestEnv::new().with_keys();
    for f in ["appliance.key", "appliance.kek", "publisher.key"] {
        let mode = std::fs::metadata(env.key(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let before = std::fs::read(env.key("appliance.key")).unwrap();
    env.cmd()
        .args(["keygen", "appliance", "--no-passphrase"])
        .assert()
        .code(exit::KEY)
        .stderr(contains("already exists; refusing to overwrite"));
    assert_eq!(std::fs::read(env.key("appliance.key")).unwrap(), before);
}

#[test]
fn secret_key_readable_by_others_is_refused_with_the_fix() {
    let env = TestEnv::new().with_keys();
    let model = env.model(1000);
    chmod(&env.key("publisher.key"), 0o644);
    env.seal_cmd(&model, env.key("appliance.kek"), env.path("m.rpk"))
        .args(["--name", "m", "--version", "1"])
        .assert()
        .code(exit::KEY)
        .stderr(contains("mode 644").and(contains("chmod 600")));
    assert!(!env.path("m.rpk").exists());
}

/// A root with a passphrase-protected appliance key and an unprotected publisher key (not yet
/// trusted), and the passphrase file.
fn protected_appliance() -> (TestEnv, std::path::PathBuf) {
    let env = TestEnv::new();
    let pass = env.path("pass");
    write_secret(&pass, "correct horse battery staple\n");
    env.cmd()
        .args(["keygen", "appliance", "--passphrase-file"])
        .arg(&pass)
        .assert()
        .success();
    env.cmd()
        .args(["keygen", "publisher", "--no-passphrase"])
        .assert()
        .success();
    (env, pass)
}

#[test]
fn passphrase_protected_keys_need_the_right_passphrase() {
    let (env, pass) = protected_appliance();
    let wrong = env.path("wrong");
    write_secret(&wrong, "incorrect horse battery\n");
    // Trust changes are audited under the appliance key: a protected key needs its passphrase.
    env.cmd()
        .arg("trust")
        .arg("add")
        .arg(env.key("publisher.pub"))
        .write_stdin("")
        .assert()
        .code(exit::KEY)
        .stderr(contains("passphrase-protected"));
    env.cmd()
        .arg("trust")
        .arg("add")
        .arg(env.key("publisher.pub"))
        .arg("--passphrase-file")
        .arg(&pass)
        .assert()
        .success();
    // The kek is protected with the same passphrase.
    let model = env.model(40_000);
    let seal = |pf: &std::path::Path| {
        let mut c = env.seal_cmd(&model, env.key("appliance.kek"), env.path("m.rpk"));
        c.args(["--name", "m", "--version", "1", "--passphrase-file"])
            .arg(pf);
        c
    };
    seal(&wrong)
        .assert()
        .code(exit::KEY)
        .stderr(contains("wrong passphrase"));
    seal(&pass).assert().success();
    let rpk = env.path("m.rpk");
    env.cmd()
        .arg("verify")
        .arg(&rpk)
        .args(["--decrypt", "--passphrase-file"])
        .arg(&wrong)
        .assert()
        .code(exit::KEY)
        .stderr(contains("wrong passphrase"));
    // No terminal and no passphrase file: a clear refusal, not a hang.
    env.cmd()
        .arg("verify")
        .arg(&rpk)
        .arg("--decrypt")
        .write_stdin("")
        .assert()
        .code(exit::KEY)
        .stderr(contains("passphrase-protected; give --passphrase-file"));
    env.cmd()
        .arg("verify")
        .arg(&rpk)
        .args(["--decrypt", "--passphrase-file"])
        .arg(&pass)
        .assert()
        .success();
}

#[test]
fn corrupt_or_wrong_kind_key_files_are_refused() {
    let env = TestEnv::new().with_keys();
    let rpk = env.seal(&env.model(100), "m.rpk", &[]);
    let key = env.key("appliance.key");
    let mut bytes = std::fs::read(&key).unwrap();
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&key, &bytes).unwrap();
    env.cmd()
        .arg("verify")
        .arg(&rpk)
        .arg("--decrypt")
        .assert()
        .code(exit::KEY)
        .stderr(contains("not a valid Rempart key file (truncated secret)"));
    std::fs::copy(env.key("publisher.key"), &key).unwrap();
    env.cmd()
        .arg("verify")
        .arg(&rpk)
        .arg("--decrypt")
        .assert()
        .code(exit::KEY)
        .stderr(contains(
            "expected appliance secret key, found publisher secret key",
        ));
    std::fs::write(&key, b"garbage garbage garbage").unwrap();
    env.cmd()
        .arg("verify")
        .arg(&rpk)
        .arg("--decrypt")
        .assert()
        .code(exit::KEY)
        .stderr(contains("bad magic"));
}

#[test]
fn trust_add_is_idempotent_list_and_remove_work() {
    let env = TestEnv::new().with_keys();
    env.cmd()
        .arg("trust")
        .arg("add")
        .arg(env.key("publisher.pub"))
        .assert()
        .success()
        .stderr(contains("already trusted"));
    let out = env
        .cmd()
        .args(["trust", "list", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["threshold"], 1);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["label"], "test-publisher");
    let id = keys[0]["key_id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);
    let rpk = env.seal(&env.model(100), "m.rpk", &[]);
    env.cmd().args(["trust", "remove", &id]).assert().success();
    env.cmd()
        .arg("verify")
        .arg(&rpk)
        .assert()
        .code(exit::SIGNATURE)
        .stderr(contains("no signature from a trusted publisher"));
    env.cmd()
        .args(["trust", "remove", &id])
        .assert()
        .code(exit::KEY)
        .stderr(contains("no trusted publisher key"));
    env.cmd()
        .args(["trust", "remove", "xyz"])
        .assert()
        .code(exit::USAGE)
        .stderr(contains("not a key id"));
}

#[test]
fn k_of_n_policy_needs_k_distinct_trusted_signers() {
    let env = TestEnv::new().with_keys();
    let second = env.path("second");
    env.cmd()
        .args(["keygen", "publisher", "--no-passphrase", "--out-dir"])
        .arg(&second)
        .assert()
        .success();
    env.cmd()
        .arg("trust")
        .arg("add")
        .arg(second.join("publisher.pub"))
        .assert()
        .success();
    // Issue 18: a threshold above the trusted keys could never be met: refused, unchanged.
    env.cmd()
        .args(["trust", "policy", "--threshold", "3"])
        .assert()
        .code(exit::USAGE)
        .stderr(contains("--threshold 3 is more than 2"));
    env.cmd()
        .args(["trust", "policy", "--threshold", "2"])
        .assert()
        .success();
    let one = env.seal(&env.model(100), "one.rpk", &[]);
    env.cmd()
        .arg("verify")
        .arg(&one)
        .assert()
        .code(exit::SIGNATURE)
        .stderr(contains(
            "only 1 valid trusted signature(s), policy requires 2",
        ));
    let two = env.seal(
        &env.model(100),
        "two.rpk",
        &["--sign", second.join("publisher.key").to_str().unwrap()],
    );
    env.cmd()
        .arg("verify")
        .arg(&two)
        .assert()
        .success()
        .stderr(contains("2 of 2 required"));
    env.cmd()
        .args(["trust", "policy", "--threshold", "0"])
        .assert()
        .code(exit::USAGE)
        .stderr(contains("at least 1"));
}

#[test]
fn secrets_never_appear_in_output() {
    let env = TestEnv::new().with_keys();
    let rpk = env.seal(&env.model(100), "m.rpk", &[]);
    let out = env
        .cmd()
        .arg("inspect")
        .arg(&rpk)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .clone();
    let text = [out.stdout, out.stderr].concat();
    // The raw seed and KEK are the last 32 bytes of the unprotected key files.
    for f in ["appliance.key", "appliance.kek", "publisher.key"] {
        let k = std::fs::read(env.key(f)).unwrap();
        let secret_hex = hex::encode(&k[k.len() - 32..]);
        assert!(
            !String::from_utf8_lossy(&text).contains(&secret_hex),
            "{f} leaked"
        );
    }
    assert!(!String::from_utf8_lossy(&text).contains("panicked"));
}

#[test]
fn a_key_trusted_under_another_file_name_can_be_removed() {
    let env = TestEnv::new().with_keys();
    let trusted = env.root.join("keys/trusted");
    let file = std::fs::read_dir(&trusted)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::rename(&file, trusted.join("renamed-by-hand.pub")).unwrap();
    let id = env.first_trusted_id();
    env.cmd().args(["trust", "remove", &id]).assert().success();
    assert_eq!(
        std::fs::read_dir(&trusted)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "pub"))
            .count(),
        0
    );
}

#[test]
fn public_keys_are_shareable_and_secret_labels_are_printable() {
    let env = TestEnv::new().with_keys();
    for f in ["appliance.pub", "publisher.pub"] {
        let mode = std::fs::metadata(env.key(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{f}");
    }
    // An escape sequence, and (issue 18) a right-to-left override or an isolate, are refused.
    for label in ["evil\u{1b}[2J", "\u{202E}rehsilbup", "pub\u{2066}lisher"] {
        env.cmd()
            .args([
                "keygen",
                "publisher",
                "--no-passphrase",
                "--label",
                label,
                "--out-dir",
            ])
            .arg(env.path("y"))
            .assert()
            .code(exit::KEY)
            .stderr(contains("label"))
            .stderr(contains("invisible format"));
    }
    assert!(!env.path("y").join("publisher.key").exists());
}

/// `harden_early` runs before anything else: while `ask -` waits for its prompt on stdin, the
/// process already has no core-dump size and no-new-privileges set.
#[test]
fn the_process_is_hardened_before_reading_any_input() {
    let env = TestEnv::new().with_keys();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rempart"))
        .arg("--root")
        .arg(&env.root)
        .args(["ask", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let proc_dir = format!("/proc/{}", child.id());
    let mut status = String::new();
    for _ in 0..200 {
        status = std::fs::read_to_string(format!("{proc_dir}/status")).unwrap_or_default();
        if status.contains("NoNewPrivs:\t1") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let limits = std::fs::read_to_string(format!("{proc_dir}/limits")).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );
    // The empty prompt is then refused cleanly.
    assert_eq!(out.status.code(), Some(exit::USAGE));
}

/// Issue 17: `remove` takes `--passphrase-file`. With a protected appliance key, a removal is
/// audited under that key, so without the passphrase (and no terminal) nothing is removed; with
/// it, the version is removed and the removal recorded.
#[test]
fn remove_with_a_protected_key_needs_its_passphrase_file() {
    let (env, pass) = protected_appliance();
    env.cmd()
        .args(["trust", "add"])
        .arg(env.key("publisher.pub"))
        .arg("--passphrase-file")
        .arg(&pass)
        .assert()
        .success();
    let rpk = env.path("m.rpk");
    env.seal_cmd(env.model(30_000), env.key("appliance.kek"), &rpk)
        .args(["--name", "m", "--version", "1", "--passphrase-file"])
        .arg(&pass)
        .assert()
        .success();
    env.cmd()
        .arg("import")
        .arg(&rpk)
        .arg("--passphrase-file")
        .arg(&pass)
        .assert()
        .success();
    let installed = env.root.join("models/m-v1.rpk");
    env.cmd()
        .args(["remove", "m"])
        .write_stdin("")
        .assert()
        .code(exit::KEY)
        .stderr(contains("passphrase-protected"));
    assert!(installed.exists(), "nothing is removed unaudited");
    env.cmd()
        .args(["remove", "m", "--passphrase-file"])
        .arg(&pass)
        .assert()
        .success()
        .stderr(contains("removed m version 1"));
    assert!(!installed.exists());
    let out = env
        .cmd()
        .args([
            "audit",
            "show",
            "--event",
            "remove",
            "--json",
            "--passphrase-file",
        ])
        .arg(&pass)
        .output()
        .unwrap();
    assert!(out.status.success());
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["details"]["model"], "m");
    assert_eq!(records[0]["details"]["version"], 1);
}

/// Issue 18 (StrictModes): a root, keys/, keys/trusted/ (or a key in it), audit/, models/,
/// state.json or rempart.toml that its group or other users can write is refused before
/// anything in it is read, with a message that names the path and the fix; the same root made
/// private again works. A sticky world-writable ancestor (`/tmp`, where the test roots live)
/// is accepted.
#[test]
fn a_root_others_can_write_is_refused_with_the_fix() {
    let env = TestEnv::new().with_keys();
    let gguf = env.tiny_model("tiny.gguf", 0);
    let b = env.seal(&gguf, "tiny.rpk", &[]);
    env.cmd().arg("import").arg(&b).assert().success();
    std::fs::write(env.root.join("rempart.toml"), "").unwrap();
    let trusted_entry = std::fs::read_dir(env.root.join("keys/trusted"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let cases: Vec<(std::path::PathBuf, u32)> = vec![
        (env.root.clone(), 0o777),
        (env.root.clone(), 0o775),
        (env.root.join("keys"), 0o757),
        (env.root.join("keys/trusted"), 0o770),
        (trusted_entry, 0o666),
        (env.key("appliance.kek"), 0o646),
        (env.root.join("audit"), 0o777),
        (env.root.join("audit/audit.log"), 0o620),
        (env.root.join("models"), 0o777),
        (env.root.join("models/state.json"), 0o666),
        (env.root.join("rempart.toml"), 0o666),
        (env.dir.path().to_path_buf(), 0o777),
    ];
    for (path, mode) in cases {
        let before = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        chmod(&path, mode);
        for cmd in [
            &["list"][..],
            &["ask", "hi", "--max-tokens", "2"][..],
            &["audit", "verify"][..],
        ] {
            env.cmd()
                .args(cmd)
                .assert()
                .code(exit::KEY)
                .stderr(contains(format!(
                    "{}: mode {mode:03o} lets",
                    path.display()
                )))
                .stderr(contains(format!("fix with: chmod go-w {}", path.display())));
        }
        chmod(&path, before);
        env.cmd().arg("list").assert().success();
    }
    // A sticky directory all may write is a safe ancestor (as /tmp is), not a safe root.
    chmod(env.dir.path(), 0o1777);
    env.cmd().arg("list").assert().success();
    chmod(&env.root, 0o1777);
    env.cmd().arg("list").assert().code(exit::KEY);
    chmod(&env.root, 0o700);
    chmod(env.dir.path(), 0o700);
    env.cmd()
        .args(["ask", "hi", "--max-tokens", "2"])
        .assert()
        .success();
}

/// Issue 18 (StrictModes): a root owned by another user is refused (this test runs as root,
/// as CI does, so that it can give the root away).
#[test]
fn a_root_owned_by_another_user_is_refused() {
    let env = TestEnv::new().with_keys();
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "the suite runs as root (CI and the make test container)"
    );
    std::os::unix::fs::chown(env.root.join("keys"), Some(4242), None).unwrap();
    env.cmd()
        .arg("list")
        .assert()
        .code(exit::KEY)
        .stderr(contains(
            "owned by uid 4242, not by this user (uid 0) or root",
        ))
        .stderr(contains("fix with: chown 0"));
}

/// Issue 18: a passphrase file that others can read is refused (as a secret key file is),
/// and nothing is created.
#[test]
fn a_passphrase_file_others_can_read_is_refused() {
    let env = TestEnv::new();
    let pass = env.path("pass");
    write_secret(&pass, "correct horse battery staple\n");
    chmod(&pass, 0o644);
    env.cmd()
        .args(["keygen", "appliance", "--passphrase-file"])
        .arg(&pass)
        .assert()
        .code(exit::KEY)
        .stderr(contains(format!(
            "{}: passphrase file has mode 644, readable by others; fix with: chmod 600 {}",
            pass.display(),
            pass.display()
        )));
    assert!(!env.key("appliance.key").exists(), "nothing was created");
    chmod(&pass, 0o600);
    env.cmd()
        .args(["keygen", "appliance", "--passphrase-file"])
        .arg(&pass)
        .assert()
        .success();
}
