//! Test environment: a fresh appliance root per test, and helpers that drive the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A fresh appliance root in a temporary directory.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("keys")).unwrap();
        Self { dir, root }
    }

    /// `rempart --root ROOT` with a clean environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("rempart").unwrap();
        c.env_remove("REMPART_ROOT").arg("--root").arg(&self.root);
        c
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.root.join("keys").join(name)
    }

    /// Appliance and publisher keys without passphrase, publisher trusted.
    pub fn with_keys(self) -> Self {
        self.cmd()
            .args([
                "keygen",
                "appliance",
                "--no-passphrase",
                "--label",
                "test-appliance",
            ])
            .assert()
            .success();
        self.cmd()
            .args([
                "keygen",
                "publisher",
                "--no-passphrase",
                "--label",
                "test-publisher",
            ])
            .assert()
            .success();
        self.cmd()
            .arg("trust")
            .arg("add")
            .arg(self.key("publisher.pub"))
            .assert()
            .success();
        self
    }

    /// Writes a synthetic "model" of `len` bytes and returns its path.
    pub fn model(&self, len: usize) -> PathBuf {
        let p = self.path("model.gguf");
        let data: Vec<u8> = (0..len).map(|i| (i * 17 + 5) as u8).collect();
        std::fs::write(&p, data).unwrap();
        p
    }

    /// `rempart seal --model MODEL --to TO --sign ROOT/keys/publisher.key -o OUT`; callers add
    /// the name, version and anything else.
    pub fn seal_cmd(
        &self,
        model: impl AsRef<Path>,
        to: impl AsRef<Path>,
        out: impl AsRef<Path>,
    ) -> Command {
        let mut c = self.cmd();
        c.arg("seal")
            .arg("--model")
            .arg(model.as_ref())
            .arg("--to")
            .arg(to.as_ref())
            .arg("--sign")
            .arg(self.key("publisher.key"))
            .arg("-o")
            .arg(out.as_ref());
        c
    }

    /// Seals `model` for this appliance's .kek, signed by this root's publisher.
    pub fn seal(&self, model: &Path, out: &str, extra: &[&str]) -> PathBuf {
        let out = self.path(out);
        self.seal_cmd(model, self.key("appliance.kek"), &out)
            .args([
                "--name",
                "test-model",
                "--version",
                "1",
                "--marking",
                "UNCLASSIFIED",
            ])
            .args(extra)
            .assert()
            .success();
        out
    }
}

impl TestEnv {
    /// Runs `rempart --root ROOT ARGS` without CAP_IPC_LOCK (dropped from the bounding set, so
    /// root loses it at exec) and with RLIMIT_MEMLOCK at 64 KiB: nothing large can be locked.
    /// `args` is shell-quoted by the caller.
    pub fn run_unlockable(&self, args: &str) -> std::process::Output {
        let bin = assert_cmd::cargo::cargo_bin("rempart");
        std::process::Command::new("setpriv")
            .arg("--bounding-set=-ipc_lock")
            .arg("sh")
            .arg("-c")
            .arg(format!(
                "ulimit -l 64 && exec '{}' --root '{}' {args}",
                bin.display(),
                self.root.display()
            ))
            .output()
            .expect("setpriv (util-linux) is installed")
    }

    /// Writes a tiny llama GGUF that answers (random weights, 64-token context), padded with
    /// trailing bytes that GGUF readers ignore up to `pad_to`, and returns its path.
    pub fn tiny_model(&self, file: &str, pad_to: usize) -> PathBuf {
        let mut g = rempart::engine::testing::tiny_gguf(&Default::default());
        if g.len() < pad_to {
            g.resize(pad_to, 0x5a);
        }
        let p = self.path(file);
        std::fs::write(&p, g).unwrap();
        p
    }

    /// Seals and imports a tiny model whose vocabulary is `engine::testing::HOSTILE` (terminal
    /// escapes, a C1 control, a bidi override, a fake status line and banner) and whose output
    /// layer can pick nothing else: every token it generates is hostile.
    pub fn install_hostile_model(&self) {
        let g = rempart::engine::testing::tiny_gguf(&rempart::engine::testing::TinyOpts {
            hostile: true,
            ..Default::default()
        });
        let p = self.path("hostile.gguf");
        std::fs::write(&p, g).unwrap();
        let b = self.seal(&p, "hostile.rpk", &[]);
        self.cmd().arg("import").arg(&b).assert().success();
    }

    /// The audit log's records of `event`, in order.
    pub fn audit_records(&self, event: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.root.join("audit/audit.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["event"] == event)
            .collect()
    }

    /// Runs `rempart ARGS`, which must succeed, and parses its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self
            .cmd()
            .args(args)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    }

    /// The key id of the first trusted publisher.
    pub fn first_trusted_id(&self) -> String {
        let v = self.json(&["trust", "list", "--json"]);
        v["keys"][0]["key_id"].as_str().unwrap().to_owned()
    }
}

/// Writes a secret file (a passphrase) readable by its owner only.
pub fn write_secret(p: &Path, contents: &str) {
    std::fs::write(p, contents).unwrap();
    chmod(p, 0o600);
}

pub fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// SHA-384 hex of every file under `dir`, sorted by path: a fingerprint of the directory.
pub fn tree_digest(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((
                    p.display().to_string(),
                    hex::encode(rempart::crypto::hash::sha384(&[&bytes])),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Panics unless `bytes`, read as a terminal would, hold no character the output sanitiser
/// escapes (no ESC, no other control but newline and tab, no C1, no bidi or format character).
pub fn assert_terminal_safe(bytes: &[u8], what: &str) {
    let s = String::from_utf8_lossy(bytes);
    let bad = s.chars().find(|c| rempart::text::needs_escape(*c));
    assert!(bad.is_none(), "{what} holds {bad:?}: {s:?}");
}

/// Creates a FIFO at `path` (mode 0600).
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

/// The documented exit codes (docs/exit-codes.md), from the crate's own constants, as the
/// `i32` a process status gives.
pub mod exit {
    use rempart::error as e;
    pub const OK: i32 = e::EXIT_OK as i32;
    pub const IO: i32 = e::EXIT_IO as i32;
    pub const USAGE: i32 = e::EXIT_USAGE as i32;
    pub const TAMPERED: i32 = e::EXIT_TAMPERED as i32;
    pub const SIGNATURE: i32 = e::EXIT_SIGNATURE as i32;
    pub const KEY: i32 = e::EXIT_KEY as i32;
    pub const POLICY: i32 = e::EXIT_POLICY as i32;
    pub const NO_MODEL: i32 = e::EXIT_NO_MODEL as i32;
    pub const ENGINE: i32 = e::EXIT_ENGINE as i32;
    pub const SELFTEST: i32 = e::EXIT_SELFTEST as i32;
    pub const DOCUMENT: i32 = e::EXIT_DOCUMENT as i32;
}
