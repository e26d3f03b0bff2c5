//! Faults during `import`: kill -9 at many points, a full disk, a bundle that changes on the
//! medium while it is copied. After each, the store must be consistent, the model installed
//! before must still answer, and the audit log must verify.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use predicates::str::contains;

use crate::util::TestEnv;
use crate::util::exit;

/// Size the new bundle is padded to, so that copying, hashing and fsyncing it take long enough
/// for kills to land inside every phase of the import.
const PADDED: usize = 24 << 20;

fn seal(env: &TestEnv, model: &Path, version: u64) -> PathBuf {
    let out = env.path(&format!("m-{version}.rpk"));
    env.seal_cmd(model, env.key("appliance.kek"), &out)
        .args(["--name", "m", "--version", &version.to_string()])
        .assert()
        .success();
    out
}

fn listed(env: &TestEnv) -> (Vec<u64>, usize) {
    let v = env.json(&["list", "--json"]);
    let versions = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_u64().unwrap())
        .collect();
    (versions, v["unverified"].as_array().unwrap().len())
}

/// The store is consistent: only verified bundles, each either installed before or the new
/// one, the newest of them answers, the audit log verifies. Returns the installed versions.
fn check_consistent(env: &TestEnv, before: &[u64], new: Option<u64>, context: &str) -> Vec<u64> {
    let (versions, unverified) = listed(env);
    assert_eq!(unverified, 0, "{context}: an unverified bundle is visible");
    let newest_before = before.iter().max().copied();
    assert!(
        versions
            .iter()
            .all(|v| before.contains(v) || Some(*v) == new),
        "{context}: installed {versions:?}, before {before:?}, new {new:?}"
    );
    assert!(
        versions
            .first()
            .is_some_and(|v| Some(*v) == newest_before || Some(*v) == new),
        "{context}: installed {versions:?}, before {before:?}, new {new:?}"
    );
    env.cmd()
        .args([
            "ask",
            "--model",
            "m",
            "--temperature",
            "0",
            "--max-tokens",
            "2",
        ])
        .arg("hello")
        .assert()
        .success();
    env.cmd().args(["audit", "verify"]).assert().success();
    versions
}

fn staging_files(env: &TestEnv) -> Vec<String> {
    std::fs::read_dir(env.root.join("models"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".staging-"))
        .collect()
}

/// `rempart --root ROOT` as a std command, for spawning.
fn rempart(env: &TestEnv) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("rempart"));
    c.env_remove("REMPART_ROOT").arg("--root").arg(&env.root);
    c
}

/// A fresh appliance with version 1 (a tiny model) installed, and the padded model's path.
fn with_v1() -> (TestEnv, PathBuf) {
    let env = TestEnv::new().with_keys();
    let small = env.tiny_model("small.gguf", 0);
    env.cmd()
        .arg("import")
        .arg(seal(&env, &small, 1))
        .assert()
        .success();
    let big = env.tiny_model("big.gguf", PADDED);
    (env, big)
}

fn spawn_import(env: &TestEnv, bundle: &Path) -> std::process::Child {
    rempart(env)
        .arg("import")
        .arg(bundle)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_at_50_points_of_an_import_leaves_a_consistent_store_that_still_answers() {
    let (env, big) = with_v1();
    let mut installed = check_consistent(&env, &[1], None, "before");
    // Time three uninterrupted imports of the padded bundle and take the fastest (a busy
    // machine, e.g. other tests in parallel, slows some runs down); kill points are spread
    // over it.
    let mut full = Duration::MAX;
    for version in 2..=4 {
        let b = seal(&env, &big, version);
        let t = Instant::now();
        assert!(spawn_import(&env, &b).wait().unwrap().success());
        full = full.min(t.elapsed());
        installed = check_consistent(&env, &installed, Some(version), "after a timed import");
        assert_eq!(installed, [version, version - 1]);
    }
    let mut interrupted = 0;
    const POINTS: u32 = 50;
    for i in 0..POINTS {
        let version = u64::from(i) + 5;
        let bundle = seal(&env, &big, version);
        // Evenly spaced over 110% of the uninterrupted time, so the start-up, the checks, the
        // copy, the fsyncs, the re-verification, the rename, the state and the audit record all
        // get hit.
        let delay = full.mul_f64(1.1 * (f64::from(i) + 0.5) / f64::from(POINTS));
        let mut child = spawn_import(&env, &bundle);
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let context = format!("kill point {i} ({delay:?} of {full:?})");
        check_consistent(&env, &installed, Some(version), &context);
        // The next import cleans any leftover and completes; importing again is harmless.
        env.cmd().arg("import").arg(&bundle).assert().success();
        assert!(staging_files(&env).is_empty(), "{context}: leftovers");
        let (versions, _) = listed(&env);
        assert_eq!(versions, [version, version - 1], "{context}");
        installed = versions;
        std::fs::remove_file(&bundle).unwrap();
    }
    check_consistent(&env, &installed, None, "at the end");
    eprintln!(
        "{interrupted} of {POINTS} kills interrupted an import of {full:?}; audit recoveries: {}",
        env.json(&["audit", "show", "--json", "--event", "audit_recovered"])
    );
    // Most kill points must really have interrupted an import, or the test proves nothing.
    assert!(
        interrupted >= POINTS * 3 / 5,
        "only {interrupted} of {POINTS} kills interrupted an import (full import {full:?})"
    );
    // No install without its record: each of the 54 versions has an `import_accepted` record
    // (a kill between the record and the rename gives a second one at the re-import).
    let accepted = env.json(&["audit", "show", "--json", "--event", "import_accepted"]);
    for version in 1..=u64::from(POINTS) + 4 {
        assert!(
            accepted
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["details"]["version"] == version),
            "version {version} was installed without an import_accepted record"
        );
    }
}

#[test]
fn a_full_disk_during_the_copy_fails_cleanly_and_keeps_the_installed_model() {
    let (env, big) = with_v1();
    let b2 = seal(&env, &big, 2);
    let state = std::fs::read(env.root.join("models/state.json")).unwrap();
    // RLIMIT_FSIZE of 8 MiB with SIGXFSZ ignored: writes past it fail with EFBIG, as they
    // would with ENOSPC on a full disk (bash's `ulimit -f` counts 1024-byte blocks).
    let rempart = rempart(&env);
    let out = std::process::Command::new("bash")
        .args(["-c", "trap '' XFSZ; ulimit -f 8192; exec \"$@\"", "bash"])
        .arg(rempart.get_program())
        .args(rempart.get_args())
        .arg("import")
        .arg(&b2)
        .env_remove("REMPART_ROOT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit::IO), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(stderr.contains("File too large"), "{stderr}");
    assert!(staging_files(&env).is_empty(), "the staging file was left");
    assert_eq!(
        std::fs::read(env.root.join("models/state.json")).unwrap(),
        state
    );
    check_consistent(&env, &[1], None, "after the full disk");
    // The refusal is on record, with its reason.
    env.cmd()
        .args(["audit", "show", "--event", "import_refused"])
        .assert()
        .success()
        .stdout(contains("File too large"));
    // With room again, the same bundle installs.
    env.cmd().arg("import").arg(&b2).assert().success();
    check_consistent(&env, &[1], Some(2), "after the retry");
}

#[test]
fn a_bundle_that_grows_or_changes_on_the_medium_during_the_copy_never_installs_changed_bytes() {
    let env = TestEnv::new().with_keys();
    let big = env.tiny_model("big.gguf", PADDED);
    // Either outcome is right, depending on where the writes land: a refusal (the medium's
    // bundle no longer matches its signature, or is longer than its manifest says), or a
    // byte-identical install (only bytes that were checked were copied).
    for (version, mode) in [(1u64, "grow"), (2, "rewrite")] {
        let bundle = seal(&env, &big, version);
        let original = std::fs::read(&bundle).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let child = rempart(&env)
            .arg("import")
            .arg(&bundle)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let result = std::thread::scope(|s| {
            let writer = s.spawn(|| {
                // Growth starts past the start-up and the checks made at open, into the copy;
                // rewriting starts at once, so it lands before the copy reads those bytes.
                if mode == "grow" {
                    std::thread::sleep(Duration::from_millis(20));
                }
                use std::io::Write;
                use std::os::unix::fs::FileExt;
                let f = std::fs::OpenOptions::new()
                    .append(mode == "grow")
                    .write(true)
                    .open(&bundle)
                    .unwrap();
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if mode == "grow" {
                        (&f).write_all(&[0xee; 4096]).unwrap();
                    } else {
                        // Flip bytes across the ciphertext, again and again.
                        let off = 65_536 + (n * 1_048_573) % (original.len() as u64 - 131_072);
                        f.write_all_at(&[n as u8 ^ 0xff], off).unwrap();
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
            let out = child.wait_with_output().unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            writer.join().unwrap();
            out
        });
        let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
        let installed = env.root.join(format!("models/m-v{version}.rpk"));
        if result.status.success() {
            // Only the bytes that were signed can have been installed.
            assert_eq!(
                std::fs::read(&installed).unwrap(),
                original,
                "{mode}: {stderr}"
            );
        } else {
            assert!(!installed.exists(), "{mode}: {stderr}");
            assert!(stderr.contains("refused"), "{mode}: {stderr}");
            assert_eq!(
                result.status.code(),
                Some(exit::TAMPERED),
                "{mode}: {stderr}"
            );
        }
        eprintln!("{mode}: import exit {:?}", result.status.code());
        if mode == "rewrite" {
            // The signatures checked at open do not read the ciphertext: the staged copy's
            // tree hash is what refuses it.
            assert_eq!(result.status.code(), Some(exit::TAMPERED), "{stderr}");
            assert!(stderr.contains("does not match"), "{stderr}");
        }
        assert!(staging_files(&env).is_empty(), "{mode}: leftovers");
        env.cmd().args(["audit", "verify"]).assert().success();
    }
}

/// Files named core or core.* in `dir`.
fn cores(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "core" || n.starts_with("core."))
        .collect()
}

#[test]
fn a_crash_with_core_dumps_enabled_writes_no_core_file() {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    assert!(
        !pattern.starts_with('|'),
        "this test needs a file core_pattern (kernel.core_pattern is {pattern:?})"
    );
    let env = TestEnv::new();
    let (control, crashed) = (env.path("control"), env.path("crashed"));
    std::fs::create_dir(&control).unwrap();
    std::fs::create_dir(&crashed).unwrap();
    let shell = |dir: &Path, cmd: &str| {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("ulimit -c unlimited && {cmd}"))
            .current_dir(dir)
            .env("REMPART_TEST_ABORT", "1")
            .env("REMPART_ROOT", &env.root)
            .status()
            .unwrap()
    };
    // Positive control: an ordinary process aborting here leaves a core file.
    let st = shell(&control, "exec bash -c 'kill -ABRT $$'");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(6));
    assert!(!cores(&control).is_empty(), "the control dumped core");
    // rempart aborting (a test build honours REMPART_TEST_ABORT) dumps nothing.
    let st = shell(
        &crashed,
        &format!("exec {} selftest", env!("CARGO_BIN_EXE_rempart")),
    );
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(6));
    assert_eq!(cores(&crashed), Vec::<String>::new());
}
