//! Power-up known-answer self-tests: `rempart selftest`, and a failing test refuses to start.

use predicates::str::contains;

use crate::util::TestEnv;
use crate::util::exit;

const NAMES: [&str; 12] = [
    "SHA-384",
    "SHA-512",
    "HMAC-SHA-384",
    "HKDF-SHA-384",
    "AES-256-GCM",
    "C2SP chunked AES-256-GCM",
    "AES-256-KW",
    "Ed25519",
    "X25519",
    "ML-KEM-1024",
    "ML-DSA-87",
    "Argon2id",
];

#[test]
fn selftest_reports_every_known_answer_and_the_hardening() {
    let env = TestEnv::new();
    let v = env.json(&["selftest", "--json"]);
    assert_eq!(v["ok"], true);
    let tests = v["known_answer_tests"]["tests"].as_array().unwrap();
    let names: Vec<&str> = tests.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, NAMES);
    assert!(tests.iter().all(|t| t["passed"] == true));
    let h = &v["hardening"];
    assert_eq!(h["no_new_privs"], "1");
    assert_eq!(h["core_dumps"], "disabled (RLIMIT_CORE 0)");
    assert_eq!(h["dumpable"], "NotDumpable");
}

#[test]
fn a_failing_known_answer_test_refuses_every_command_before_it_runs() {
    // Debug builds corrupt the named test's input (release builds ignore the variable).
    let env = TestEnv::new();
    for name in NAMES {
        env.cmd()
            .env("REMPART_SELFTEST_FAULT", name)
            .args(["keygen", "appliance", "--no-passphrase", "--label", "x"])
            .assert()
            .code(exit::SELFTEST)
            .stderr(contains(format!("self-test FAILED: {name} (")));
        assert!(
            !env.key("appliance.key").exists(),
            "{name}: the command ran anyway"
        );
    }
    // Without the fault, the same command runs.
    env.cmd()
        .args(["keygen", "appliance", "--no-passphrase", "--label", "x"])
        .assert()
        .success();
}
