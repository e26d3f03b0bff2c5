//! `import`, `list` and `remove` through the CLI: the store under ROOT/models.

use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;

use crate::util::exit;
use crate::util::{TestEnv, mkfifo, tree_digest};

fn sealed(env: &TestEnv, name: &str, version: &str, extra: &[&str]) -> std::path::PathBuf {
    let out = env.path(&format!("{name}-{version}.rpk"));
    env.seal_cmd(env.model(30_000), env.key("appliance.kek"), &out)
        .args(["--name", name, "--version", version])
        .args(extra)
        .assert()
        .success();
    out
}

/// A copy of `good` named `name` with one ciphertext bit flipped 200 bytes from its end (the
/// manifest and signatures unchanged).
fn flipped_copy(env: &TestEnv, good: &std::path::Path, name: &str) -> std::path::PathBuf {
    let mut bytes = std::fs::read(good).unwrap();
    let n = bytes.len();
    bytes[n - 200] ^= 1;
    let bad = env.path(name);
    std::fs::write(&bad, &bytes).unwrap();
    bad
}

fn list(env: &TestEnv) -> Vec<(String, u64)> {
    let v = env.json(&["list", "--json"]);
    v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["version"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn import_installs_twice_is_harmless_and_list_and_remove_work() {
    let env = TestEnv::new().with_keys();
    let b = sealed(&env, "m", "1", &[]);
    env.cmd()
        .arg("import")
        .arg(&b)
        .assert()
        .success()
        .stderr(contains("m version 1 installed"));
    env.cmd()
        .arg("import")
        .arg(&b)
        .assert()
        .success()
        .stderr(contains("was already installed"));
    assert_eq!(list(&env), vec![("m".to_owned(), 1)]);
    assert!(env.root.join("models/m-v1.rpk").exists());
    assert!(env.root.join("models/state.json").exists());
    env.cmd().args(["remove", "m@1"]).assert().success();
    assert!(list(&env).is_empty());
    env.cmd()
        .args(["remove", "m"])
        .assert()
        .code(exit::NO_MODEL)
        .stderr(contains("no installed model named m"));
    // The rollback counter survives removal.
    env.cmd()
        .arg("import")
        .arg(&b)
        .assert()
        .code(exit::POLICY)
        .stderr(contains("not newer than version 1"));
}

#[test]
fn rollback_is_refused_unless_explicitly_allowed_and_old_versions_are_pruned() {
    let env = TestEnv::new().with_keys();
    let v1 = sealed(&env, "m", "1", &[]);
    let v2 = sealed(&env, "m", "2", &[]);
    let v3 = sealed(&env, "m", "3", &[]);
    env.cmd().arg("import").arg(&v2).assert().success();
    let before = tree_digest(&env.root.join("models"));
    env.cmd()
        .arg("import")
        .arg(&v1)
        .assert()
        .code(exit::POLICY)
        .stderr(contains("m version 1 is not newer than version 2"))
        .stderr(contains("rollback refused"));
    assert_eq!(
        tree_digest(&env.root.join("models")),
        before,
        "a refusal changes nothing"
    );
    env.cmd().arg("import").arg(&v3).assert().success();
    // Version 3 installed, version 2 kept as the one previous version.
    assert_eq!(list(&env), vec![("m".to_owned(), 3), ("m".to_owned(), 2)]);
    // An explicit downgrade installs the old version beside the newer ones (the newest still
    // answers by default; `--model m@1` selects it).
    env.cmd()
        .arg("import")
        .arg(&v1)
        .arg("--allow-downgrade")
        .assert()
        .success();
    assert_eq!(
        list(&env),
        vec![
            ("m".to_owned(), 3),
            ("m".to_owned(), 2),
            ("m".to_owned(), 1)
        ]
    );
    // The next upgrade keeps it and one previous version only.
    env.cmd()
        .arg("import")
        .arg(sealed(&env, "m", "4", &[]))
        .assert()
        .success();
    assert_eq!(list(&env), vec![("m".to_owned(), 4), ("m".to_owned(), 3)]);
}

#[test]
fn a_usb_directory_with_junk_imports_only_regular_bundles() {
    let env = TestEnv::new().with_keys();
    let stick = env.path("stick");
    std::fs::create_dir_all(stick.join("subdir")).unwrap();
    std::fs::copy(sealed(&env, "good", "1", &[]), stick.join("good.rpk")).unwrap();
    std::fs::copy(
        sealed(&env, "nested", "1", &[]),
        stick.join("subdir/nested.rpk"),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/shadow", stick.join("shadow.rpk")).unwrap();
    std::fs::write(stick.join("empty.rpk"), b"").unwrap();
    std::fs::write(stick.join("README.txt"), b"hello").unwrap();
    mkfifo(&stick.join("fifo.rpk"));
    for i in 0..1000 {
        std::fs::write(stick.join(format!("junk{i}.dat")), b"x").unwrap();
    }
    env.cmd()
        .arg("import")
        .arg(&stick)
        .assert()
        .code(exit::TAMPERED)
        .stderr(contains("accepted").and(contains("good version 1 installed")))
        .stderr(contains("skipped").and(contains("shadow.rpk: symbolic link (never followed)")))
        .stderr(contains("fifo.rpk: not a regular file"))
        .stderr(contains("subdir: directory (not searched)"))
        .stderr(contains("refused").and(contains("empty.rpk")))
        .stderr(contains("panicked").not());
    assert_eq!(list(&env), vec![("good".to_owned(), 1)]);
}

#[test]
fn tampered_expired_foreign_and_untrusted_bundles_are_refused_and_change_nothing() {
    let env = TestEnv::new().with_keys();
    env.cmd()
        .arg("import")
        .arg(sealed(&env, "base", "1", &[]))
        .assert()
        .success();
    let models = env.root.join("models");
    let before = tree_digest(&models);
    let good = sealed(&env, "m", "1", &[]);
    let bad = flipped_copy(&env, &good, "bad.rpk");
    // Issue 18: the refusal names the file on the medium (it named ROOT/models/m-v1.rpk, which
    // does not exist), in the message and in the audit record.
    env.cmd()
        .arg("import")
        .arg(&bad)
        .assert()
        .code(exit::TAMPERED)
        .stderr(contains(format!(
            "refused {}: {}: ",
            bad.display(),
            bad.display()
        )))
        .stderr(contains("ciphertext does not match"))
        .stderr(contains("models/m-v1.rpk").not());
    let log = std::fs::read_to_string(env.root.join("audit/audit.log")).unwrap();
    assert!(!log.contains("models/m-v1.rpk"), "{log}");
    let other = env.path("other");
    env.cmd()
        .args(["keygen", "appliance", "--no-passphrase", "--out-dir"])
        .arg(&other)
        .assert()
        .success();
    let foreign = env.path("foreign.rpk");
    env.seal_cmd(env.model(100), other.join("appliance.kek"), &foreign)
        .args(["--name", "f", "--version", "1"])
        .assert()
        .success();
    env.cmd()
        .arg("import")
        .arg(&foreign)
        .assert()
        .code(exit::POLICY)
        .stderr(contains("targets other appliances"));
    let stranger = env.path("stranger");
    env.cmd()
        .args(["keygen", "publisher", "--no-passphrase", "--out-dir"])
        .arg(&stranger)
        .assert()
        .success();
    let untrusted = env.path("untrusted.rpk");
    env.cmd()
        .arg("seal")
        .arg("--model")
        .arg(env.model(100))
        .arg("--to")
        .arg(env.key("appliance.kek"))
        .arg("--sign")
        .arg(stranger.join("publisher.key"))
        .args(["--name", "u", "--version", "1", "-o"])
        .arg(&untrusted)
        .assert()
        .success();
    env.cmd()
        .arg("import")
        .arg(&untrusted)
        .assert()
        .code(exit::SIGNATURE)
        .stderr(contains("no signature from a trusted publisher"));
    assert_eq!(tree_digest(&models), before);
}

#[test]
fn tampered_store_state_and_leftovers() {
    let env = TestEnv::new().with_keys();
    env.cmd()
        .arg("import")
        .arg(sealed(&env, "m", "1", &[]))
        .assert()
        .success();
    let models = env.root.join("models");
    // A crash leaves a staging file: the next import removes it.
    std::fs::write(models.join(".staging-deadbeef.partial"), b"half a bundle").unwrap();
    env.cmd()
        .arg("import")
        .arg(sealed(&env, "m", "2", &[]))
        .assert()
        .success();
    assert!(!models.join(".staging-deadbeef.partial").exists());
    // Lowering the rollback counter by hand is detected (MAC under the appliance key).
    let state = models.join("state.json");
    let text = std::fs::read_to_string(&state)
        .unwrap()
        .replace("\"m\": 2", "\"m\": 0");
    std::fs::write(&state, text).unwrap();
    env.cmd()
        .arg("import")
        .arg(sealed(&env, "n", "1", &[]))
        .assert()
        .code(exit::TAMPERED)
        .stderr(contains(
            "store state is corrupt or was modified (MAC mismatch)",
        ));
}

#[test]
fn expired_bundles_need_allow_expired() {
    let env = crate::vectors::vector_env();
    let expired = crate::vectors::vectors_dir().join("expired.rpk");
    env.cmd()
        .arg("import")
        .arg(&expired)
        .assert()
        .code(exit::POLICY)
        .stderr(contains("bundle expired on"));
    assert!(list(&env).is_empty());
    env.cmd()
        .arg("import")
        .arg(&expired)
        .arg("--allow-expired")
        .assert()
        .success();
    assert_eq!(list(&env), vec![("vector-model".to_owned(), 3)]);
    // Installed but expired: ask refuses it too.
    env.cmd()
        .args(["ask", "hi"])
        .assert()
        .code(exit::POLICY)
        .stderr(contains("expired"));
}

#[test]
fn list_shows_architecture_quantisation_publisher_and_install_time_from_the_signed_manifest() {
    let env = TestEnv::new().with_keys();
    let gguf = env.path("tiny.gguf");
    std::fs::write(
        &gguf,
        rempart::engine::testing::tiny_gguf(&Default::default()),
    )
    .unwrap();
    let out = env.path("tiny.rpk");
    env.seal_cmd(gguf, env.key("appliance.kek"), &out)
        .args([
            "--name",
            "tiny",
            "--version",
            "2",
            "--marking",
            "UNCLASSIFIED",
        ])
        .assert()
        .success();
    env.cmd()
        .args(["inspect", "--json"])
        .arg(&out)
        .assert()
        .success()
        .stdout(contains("\"architecture\": \"llama\""))
        .stdout(contains("\"quantization\": \"F32\""));
    env.cmd().arg("import").arg(&out).assert().success();
    let v = env.json(&["list", "--json"]);
    let m = &v["models"][0];
    assert_eq!(m["architecture"], "llama");
    assert_eq!(m["quantization"], "F32");
    assert_eq!(m["marking"], "UNCLASSIFIED");
    assert_eq!(m["publishers"], serde_json::json!([env.first_trusted_id()]));
    let installed = m["installed"].as_str().unwrap();
    assert!(installed.starts_with("20"), "{installed}");
    // The human listing carries the same facts on one line.
    env.cmd()
        .arg("list")
        .assert()
        .success()
        .stdout(contains("tiny"))
        .stdout(contains("llama"))
        .stdout(contains("F32"))
        .stdout(contains("UNCLASSIFIED"));
    // A file that is not a GGUF is sealed with a warning and listed with dashes.
    let b = sealed(&env, "opaque", "1", &[]);
    env.cmd().arg("import").arg(&b).assert().success();
    let v = env.json(&["list", "--json"]);
    let opaque = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "opaque")
        .unwrap();
    assert!(opaque["architecture"].is_null());
}

/// Issue 18: a bundle whose payload is corrupted but whose manifest and signatures match the
/// installed version was reported "accepted ... already installed" with exit 0. It is refused
/// (the whole bundle must match), naming the file on the medium; the installed copy stays.
#[test]
fn issue_18_already_installed_only_when_the_whole_bundle_matches() {
    let env = TestEnv::new().with_keys();
    let good = sealed(&env, "m", "1", &[]);
    env.cmd().arg("import").arg(&good).assert().success();
    let models = env.root.join("models");
    let before = tree_digest(&models);
    let bad = flipped_copy(&env, &good, "same-front.rpk");
    env.cmd()
        .arg("import")
        .arg(&bad)
        .assert()
        .code(exit::TAMPERED)
        .stderr(contains(format!("refused {}: ", bad.display())))
        .stderr(contains("does not match"))
        .stderr(contains("already installed").not());
    assert_eq!(tree_digest(&models), before);
    // The true copy is still "already installed".
    env.cmd()
        .arg("import")
        .arg(&good)
        .assert()
        .success()
        .stderr(contains("was already installed"));
}

/// Issue 18: a file on the medium named like an option does not change the command's options
/// (`import *` inside a medium holding `--allow-downgrade` installed a downgrade); a directory
/// with no bundle is not a success; a thousand garbage bundles do not write a thousand records.
#[test]
fn issue_18_a_medium_cannot_choose_options_and_bounds_its_records() {
    let env = TestEnv::new().with_keys();
    env.cmd()
        .arg("import")
        .arg(sealed(&env, "m", "2", &[]))
        .assert()
        .success();
    let medium = env.path("medium");
    std::fs::create_dir(&medium).unwrap();
    std::fs::rename(sealed(&env, "m", "1", &[]), medium.join("m-1.rpk")).unwrap();
    std::fs::write(medium.join("--allow-downgrade"), b"").unwrap();
    // What `rempart import *` gives inside the medium.
    env.cmd()
        .current_dir(&medium)
        .args(["import", "--allow-downgrade", "m-1.rpk"])
        .assert()
        .code(exit::USAGE)
        .stderr(contains(
            "--allow-downgrade is an option, but a file of that name",
        ));
    assert_eq!(list(&env), vec![("m".to_owned(), 2)]);
    // After `--` the file is only a path (an empty file: refused), and no downgrade happens.
    env.cmd()
        .current_dir(&medium)
        .args(["import", "--", "--allow-downgrade", "m-1.rpk"])
        .assert()
        .code(exit::TAMPERED)
        .stderr(contains("not newer than version 2"));
    assert_eq!(list(&env), vec![("m".to_owned(), 2)]);
    // A directory without a bundle is not a success.
    let empty = env.path("empty");
    std::fs::create_dir(&empty).unwrap();
    env.cmd()
        .arg("import")
        .arg(&empty)
        .assert()
        .code(exit::NO_MODEL)
        .stderr(contains("no .rpk bundle found"));
    // 150 garbage bundles: 100 import_refused records, then one summary.
    let junk = env.path("junk");
    std::fs::create_dir(&junk).unwrap();
    for i in 0..150 {
        std::fs::write(junk.join(format!("j{i:03}.rpk")), b"garbage").unwrap();
    }
    env.cmd()
        .arg("import")
        .arg(&junk)
        .assert()
        .code(exit::TAMPERED);
    let log = std::fs::read_to_string(env.root.join("audit/audit.log")).unwrap();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let junk_refused = events
        .iter()
        .filter(|r| {
            r["event"] == "import_refused"
                && r["details"]["file"].as_str().unwrap().contains("/junk/")
        })
        .count();
    assert_eq!(junk_refused, 100);
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "import_refusals_summary");
    assert_eq!(summary["details"]["refused"], 150);
    assert_eq!(summary["details"]["recorded"], 100);
}
