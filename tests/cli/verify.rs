//! Seal, inspect and verify flows through the CLI.

use predicates::str::contains;

use crate::util::exit;
use crate::util::{TestEnv, mkfifo, tree_digest};

#[test]
fn seal_verify_decrypt_inspect_round_trip() {
    let env = TestEnv::new().with_keys();
    let rpk = env.seal(&env.model(100_000), "m.rpk", &["--expires", "2999-01-01"]);
    env.cmd()
        .arg("verify")
        .arg(&rpk)
        .arg("--decrypt")
        .assert()
        .success()
        .stderr(contains("signatures OK"))
        .stderr(contains("decrypted via aes256-kw"))
        .stderr(contains("then wiped"));
    let out = env
        .cmd()
        .arg("verify")
        .arg(&rpk)
        .args(["--json", "--decrypt"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["manifest"]["name"], "test-model");
    assert_eq!(v["manifest"]["marking"], "UNCLASSIFIED");
    assert_eq!(v["manifest"]["expires"], "2999-01-01T00:00:00Z");
    assert_eq!(v["decrypted"][0]["bytes"], 100_000);
    let out = env
        .cmd()
        .arg("inspect")
        .arg(&rpk)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let i: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(i["verified"], false);
    assert_eq!(i["manifest"]["version"], 1);
    assert_eq!(i["signatures"][0]["in_trust_store"], true);
    assert_eq!(i["artifacts"][0]["recipients"][0]["kind"], "aes256-kw");
    env.cmd()
        .arg("inspect")
        .arg(&rpk)
        .assert()
        .success()
        .stdout(contains("model       test-model version 1"));
}

#[test]
fn hybrid_post_quantum_recipient_needs_only_the_public_key() {
    let env = TestEnv::new().with_keys();
    let model = env.model(50_000);
    let out = env.path("pq.rpk");
    env.seal_cmd(&model, env.key("appliance.pub"), &out)
        .args(["--name", "pq", "--version", "7"])
        .assert()
        .success();
    env.cmd()
        .arg("verify")
        .arg(&out)
        .arg("--decrypt")
        .assert()
        .success()
        .stderr(contains("via mlkem1024-x25519"));
}

#[test]
fn bundle_for_another_appliance_is_refused() {
    let env = TestEnv::new().with_keys();
    let other = env.path("other");
    env.cmd()
        .args(["keygen", "appliance", "--no-passphrase", "--out-dir"])
        .arg(&other)
        .assert()
        .success();
    let out = env.path("theirs.rpk");
    env.seal_cmd(env.model(10), other.join("appliance.kek"), &out)
        .args(["--name", "m", "--version", "1"])
        .assert()
        .success();
    // Signatures are fine (verify without --decrypt passes); this appliance cannot open it.
    env.cmd().arg("verify").arg(&out).assert().success();
    env.cmd()
        .arg("verify")
        .arg(&out)
        .arg("--decrypt")
        .assert()
        .code(exit::POLICY)
        .stderr(contains("bundle targets other appliances"));
}

#[test]
fn seal_refuses_to_overwrite_and_bad_arguments_are_usage_errors() {
    let env = TestEnv::new().with_keys();
    let model = env.model(10);
    let rpk = env.seal(&model, "m.rpk", &[]);
    let before = std::fs::read(&rpk).unwrap();
    let seal_to = |out: &std::path::Path, args: &[&str]| {
        let mut c = env.seal_cmd(&model, env.key("appliance.kek"), out);
        c.args(["--version", "1"]).args(args);
        c
    };
    seal_to(&rpk, &["--name", "m"])
        .assert()
        .code(exit::USAGE)
        .stderr(contains("already exists"));
    assert_eq!(std::fs::read(&rpk).unwrap(), before);
    let x = env.path("x.rpk");
    seal_to(&x, &["--name", "../evil"])
        .assert()
        .code(exit::USAGE)
        .stderr(contains("invalid model name"));
    seal_to(&x, &["--name", "m", "--expires", "tomorrow"])
        .assert()
        .code(exit::USAGE)
        .stderr(contains("expected YYYY-MM-DD"));
    seal_to(&x, &["--name", "m", "--marking", "BAD\u{7}MARK"])
        .assert()
        .code(exit::USAGE)
        .stderr(contains("invalid marking"));
    // Issue 18: bidi overrides and isolates, zero-width characters and line separators are
    // refused too (a marking that would show as another one).
    for marking in [
        "\u{202E}TERCES",
        "\u{2066}SECRET\u{2069}",
        "SE\u{200B}CRET",
        "A\u{2028}B",
    ] {
        seal_to(&x, &["--name", "m", "--marking", marking])
            .assert()
            .code(exit::USAGE)
            .stderr(contains("invalid marking"));
    }
    // --to with a publisher key is a key error naming the expected kinds.
    env.seal_cmd(&model, env.key("publisher.pub"), env.path("x.rpk"))
        .args(["--name", "m", "--version", "1"])
        .assert()
        .code(exit::KEY)
        .stderr(contains("expected appliance.kek or appliance.pub"));
    assert!(!env.path("x.rpk").exists());
}

#[test]
fn refused_bundles_change_nothing_in_the_root() {
    let env = TestEnv::new().with_keys();
    let rpk = env.seal(&env.model(40_000), "m.rpk", &[]);
    let mut bytes = std::fs::read(&rpk).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    let bad = env.path("bad.rpk");
    std::fs::write(&bad, &bytes).unwrap();
    let before = tree_digest(&env.root);
    env.cmd()
        .arg("verify")
        .arg(&bad)
        .arg("--decrypt")
        .assert()
        .code(exit::TAMPERED);
    env.cmd().arg("inspect").arg(&bad).assert().success();
    assert_eq!(tree_digest(&env.root), before);
}

#[test]
fn missing_directory_and_non_regular_inputs_are_clear_errors() {
    let env = TestEnv::new().with_keys();
    env.cmd()
        .arg("verify")
        .arg(env.path("nope.rpk"))
        .assert()
        .code(exit::IO)
        .stderr(contains("nope.rpk"));
    env.cmd()
        .arg("verify")
        .arg(env.path(""))
        .assert()
        .code(exit::USAGE)
        .stderr(contains("not a regular file"));
    let link = env.path("link.rpk");
    let rpk = env.seal(&env.model(10), "m.rpk", &[]);
    std::os::unix::fs::symlink(&rpk, &link).unwrap();
    env.cmd()
        .arg("verify")
        .arg(&link)
        .assert()
        .code(exit::IO)
        .stderr(contains("link.rpk"));
}

#[test]
fn unlockable_memory_is_reported_and_require_mlock_refuses() {
    // Drop CAP_IPC_LOCK (bounding set, so root loses it at exec) and lower RLIMIT_MEMLOCK to
    // 64 KiB: the 200 KB arena cannot be locked.
    let env = TestEnv::new().with_keys();
    let rpk = env.seal(&env.model(200_000), "m.rpk", &[]);
    let run =
        |extra: &str| env.run_unlockable(&format!("verify '{}' --decrypt {extra}", rpk.display()));
    let out = run("--require-mlock");
    assert_eq!(
        out.status.code(),
        Some(exit::POLICY),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot lock 200000 bytes") && err.contains("RLIMIT_MEMLOCK is 64 KiB"),
        "{err}"
    );
    let out = run("");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("NOT locked"));
    // Without the restriction the same arena is locked.
    env.cmd()
        .arg("verify")
        .arg(&rpk)
        .args(["--decrypt", "--require-mlock"])
        .assert()
        .success()
        .stderr(contains("memory that is locked"));
}

/// Issue 18: a FIFO where a bundle was expected is refused at once (it hung: the open waited for
/// a writer), and `seal --model /dev/zero` is refused instead of reading until memory runs out.
#[test]
fn issue_18_fifos_and_devices_are_refused_at_once() {
    let env = TestEnv::new().with_keys();
    let fifo = env.path("fifo.rpk");
    mkfifo(&fifo);
    for cmd in ["inspect", "verify"] {
        env.cmd()
            .arg(cmd)
            .arg(&fifo)
            .timeout(std::time::Duration::from_secs(30))
            .assert()
            .code(exit::USAGE)
            .stderr(contains("not a regular file"));
    }
    let out = env.path("zero.rpk");
    env.seal_cmd("/dev/zero", env.key("appliance.kek"), &out)
        .args(["--name", "z", "--version", "1"])
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .code(exit::USAGE)
        .stderr(contains("/dev/zero: not a regular file"));
    assert!(!out.exists());
}
