//! The tamper-evident audit log through the CLI.

use predicates::str::contains;

use crate::util::TestEnv;
use crate::util::exit;

fn events(env: &TestEnv) -> Vec<serde_json::Value> {
    show(env, &[])
}

fn show(env: &TestEnv, filters: &[&str]) -> Vec<serde_json::Value> {
    let args = [&["audit", "show", "--json"], filters].concat();
    env.json(&args).as_array().unwrap().clone()
}

fn env_with_history() -> TestEnv {
    let env = TestEnv::new().with_keys();
    let b = env.seal(&env.model(20_000), "a.rpk", &[]);
    env.cmd().arg("import").arg(&b).assert().success();
    env.cmd().arg("import").arg(&b).assert().success();
    env.cmd()
        .args(["trust", "policy", "--threshold", "1"])
        .assert()
        .success();
    env.cmd().args(["remove", "test-model"]).assert().success();
    env
}

#[test]
fn operations_are_recorded_and_the_log_verifies() {
    let env = env_with_history();
    env.cmd()
        .args(["audit", "verify"])
        .assert()
        .success()
        .stderr(contains("audit log intact"));
    let names: Vec<String> = events(&env)
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "keygen",
            "trust_change",
            "import_accepted",
            "trust_change",
            "remove"
        ],
        "{names:?}"
    );
    let e = events(&env);
    assert_eq!(e[2]["details"]["model"], "test-model");
    assert_eq!(e[0]["seq"], 1);
    assert_eq!(e[4]["seq"], 5);
}

#[test]
fn queries_are_recorded_as_metadata_and_hashes_only() {
    let env = crate::engine::env_with_model();
    let secret_prompt = "The launch code is PAPAGENO-7731; repeat it.";
    env.cmd()
        .args([
            "ask",
            "--temperature",
            "0",
            "--max-tokens",
            "4",
            secret_prompt,
        ])
        .assert()
        .success();
    let log = std::fs::read_to_string(env.root.join("audit/audit.log")).unwrap();
    assert!(
        !log.contains("PAPAGENO"),
        "prompt text leaked into the audit log"
    );
    let e = events(&env);
    let q = e.iter().find(|e| e["event"] == "query").unwrap();
    assert_eq!(q["details"]["model"], "test-model");
    assert_eq!(q["details"]["prompt_sha384"].as_str().unwrap().len(), 96);
    assert!(q["details"]["tokens_generated"].as_u64().unwrap() <= 4);
    assert!(e.iter().any(|e| e["event"] == "model_load"));
}

fn tamper(f: impl Fn(Vec<String>) -> Vec<String>, expect: &str) {
    let env = env_with_history();
    let path = env.root.join("audit/audit.log");
    let lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut text = f(lines).join("\n");
    text.push('\n');
    std::fs::write(&path, text).unwrap();
    env.cmd()
        .args(["audit", "verify"])
        .assert()
        .code(exit::TAMPERED)
        .stderr(contains(expect));
}

#[test]
fn modified_record_is_detected() {
    tamper(
        |mut l| {
            l[2] = l[2].replace("test-model", "evil-model");
            l
        },
        "record 3: MAC mismatch",
    );
}

#[test]
fn deleted_record_is_detected() {
    tamper(
        |mut l| {
            l.remove(2);
            l
        },
        "record 3: sequence number out of order",
    );
}

#[test]
fn reordered_records_are_detected() {
    tamper(
        |mut l| {
            l.swap(1, 2);
            l
        },
        "record 2: sequence number out of order",
    );
}

#[test]
fn truncated_log_is_detected() {
    tamper(
        |mut l| {
            l.pop();
            l
        },
        "log ends before its head",
    );
}

#[test]
fn a_change_that_cannot_be_audited_is_not_made() {
    let env = env_with_history();
    // Break the head: the next trust change must be refused before it touches the trust store.
    std::fs::write(
        env.root.join("audit/head.json"),
        b"{\"seq\":1,\"len\":0,\"last\":\"00\",\"mac\":\"00\"}",
    )
    .unwrap();
    let before = crate::util::tree_digest(&env.root.join("keys"));
    env.cmd()
        .args(["trust", "policy", "--threshold", "2"])
        .assert()
        .code(exit::TAMPERED)
        .stderr(contains("head MAC mismatch"));
    assert_eq!(crate::util::tree_digest(&env.root.join("keys")), before);
    let b = env.seal(&env.model(1000), "z.rpk", &[]);
    env.cmd()
        .arg("import")
        .arg(&b)
        .assert()
        .code(exit::TAMPERED);
    assert!(!env.root.join("models/test-model-v1.rpk").exists());
}

#[test]
fn show_filters_by_event_and_time() {
    let env = env_with_history();
    let show = |args: &[&str]| show(&env, args);
    let trust = show(&["--event", "trust_change"]);
    assert_eq!(trust.len(), 2);
    assert!(trust.iter().all(|r| r["event"] == "trust_change"));
    assert_eq!(show(&["--since", "1h"]).len(), 5);
    assert_eq!(show(&["--since", "2000-01-01"]).len(), 5);
    assert!(show(&["--since", "2999-01-01T00:00:00Z"]).is_empty());
    assert_eq!(show(&["--since", "1h", "--event", "remove"]).len(), 1);
    env.cmd()
        .args(["audit", "show", "--since", "yesterday-ish"])
        .assert()
        .code(exit::USAGE)
        .stderr(contains("--since yesterday-ish: expected a date"));
}

#[test]
fn failed_loads_and_queries_are_recorded_without_the_prompt() {
    let env = TestEnv::new().with_keys();
    let gguf = env.tiny_model("tiny.gguf", 0);
    let b = env.seal(&gguf, "tiny.rpk", &[]);
    env.cmd().arg("import").arg(&b).assert().success();
    // A prompt longer than the tiny model's 64-token context fails in the engine.
    let prompt = "SECRETWORD ".repeat(100);
    let out = env.cmd().args(["ask", &prompt]).assert().failure();
    let code = out.get_output().status.code();
    let e = events(&env);
    let failed = e.iter().find(|r| r["event"] == "query_failed").unwrap();
    assert!(failed["details"]["class"].is_string());
    assert_eq!(
        failed["details"]["prompt_sha384"].as_str().unwrap().len(),
        96
    );
    assert!(code.is_some_and(|c| c != 0));
    let log = std::fs::read_to_string(env.root.join("audit/audit.log")).unwrap();
    assert!(!log.contains("SECRETWORD"));
    // A ciphertext byte changed in the installed bundle: the signatures still verify, the
    // GCM tag does not, and the failed load is on record.
    let installed = env.root.join("models/test-model-v1.rpk");
    let mut bytes = std::fs::read(&installed).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    std::fs::write(&installed, bytes).unwrap();
    env.cmd()
        .args(["ask", "hello"])
        .assert()
        .code(exit::TAMPERED);
    let e = events(&env);
    let last = e.last().unwrap();
    assert_eq!(last["event"], "load_failed", "{last}");
    assert_eq!(last["details"]["model"], "test-model");
    env.cmd().args(["audit", "verify"]).assert().success();
}
