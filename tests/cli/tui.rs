//! The terminal UI driven as an analyst would: the real binary with the real default model in
//! tmux (send-keys, capture-pane). Banners, a streamed answer, typing during generation, a
//! stopped answer, lock (conversation wiped), unlock, quit with the terminal restored, and
//! the lock and unlock on the audit log.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::model::model_path;
use crate::util::TestEnv;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn keys(&self, keys: &[&str]) {
        let st = self
            .cmd()
            .args(["send-keys", "-t", "ui"])
            .args(keys)
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn pane(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "ui"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the pane satisfies `ok`; panics with the pane after `secs`.
    fn wait(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let p = self.pane();
            if ok(&p) {
                return p;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}:\n{p}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

#[test]
fn an_analyst_session_in_tmux_streams_stops_locks_unlocks_and_quits() {
    let start = std::time::SystemTime::now() - Duration::from_secs(1);
    let env = TestEnv::new().with_keys();
    let rpk = env.path("smollm2.rpk");
    env.seal_cmd(model_path(), env.key("appliance.kek"), &rpk)
        .args(["--name", "smollm2", "--version", "1", "--marking", "SECRET"])
        .assert()
        .success();
    env.cmd().arg("import").arg(&rpk).assert().success();
    let tmux = Tmux {
        socket: format!("rempart-test-{}", std::process::id()),
    };
    let script = format!(
        "{} --root {} tui --temperature 0 --max-tokens 160; echo EXITED rc=$?; sleep 60",
        env!("CARGO_BIN_EXE_rempart"),
        env.root.display()
    );
    let st = tmux
        .cmd()
        .args(["new-session", "-d", "-s", "ui", "-x", "100", "-y", "30"])
        .arg(script)
        .env_remove("REMPART_ROOT")
        .status()
        .expect("tmux is installed (.ci/run installs it)");
    assert!(st.success());
    let p = tmux.wait("the chat screen", 120, |p| p.contains("Message"));
    // The marking is on the first and the last line.
    let lines: Vec<&str> = p.lines().collect();
    assert!(lines[0].contains("SECRET"), "{p}");
    assert!(lines[29].contains("SECRET"), "{p}");
    assert!(p.contains("smollm2 v1") && p.contains("mlock"), "{p}");

    // A question: the answer streams, then the status shows its speed.
    tmux.keys(&["What is the capital of France?", "Enter"]);
    let p = tmux.wait("an answer", 300, |p| {
        p.contains("tok/s") && !p.contains("– tok/s") && !p.contains("answering")
    });
    let lines: Vec<&str> = p.lines().collect();
    let model_at = lines.iter().position(|l| l.trim() == "Model").unwrap();
    let first_answer = lines[model_at + 1].trim().to_owned();
    assert!(p.contains("You") && !first_answer.is_empty(), "{p}");

    // A long answer, stopped with Esc after it started; typing stays live meanwhile.
    tmux.keys(&["Write a long story about a lighthouse keeper.", "Enter"]);
    tmux.wait("the answer to start", 60, |p| p.contains("answering"));
    tmux.keys(&["draft"]);
    tmux.wait("typing during generation", 30, |p| p.contains("│draft"));
    tmux.keys(&["Escape"]);
    let p = tmux.wait("the stop notice", 60, |p| {
        p.contains("stopped: the answer so far is kept")
    });
    assert!(p.contains("lighthouse"), "{p}");

    // Ctrl-L: locked, conversation gone from the screen, banners still there.
    tmux.keys(&["C-l"]);
    let p = tmux.wait("the lock screen", 30, |p| p.contains("LOCKED"));
    assert!(
        !p.contains(&first_answer) && !p.contains("lighthouse"),
        "{p}"
    );
    assert!(p.lines().next().unwrap_or("").contains("SECRET"), "{p}");
    // Unlock (this key has no passphrase): the conversation was wiped.
    tmux.keys(&["Enter"]);
    let p = tmux.wait("unlocked", 30, |p| p.contains("New conversation"));
    assert!(!p.contains(&first_answer), "{p}");

    // Ctrl-Q quits cleanly and gives the shell its normal screen back.
    tmux.keys(&["C-q"]);
    let p = tmux.wait("exit", 60, |p| p.contains("EXITED rc=0"));
    assert!(!p.contains("LOCKED") && !p.contains("Message"), "{p}");
    let log = std::fs::read_to_string(env.root.join("audit/audit.log")).unwrap();
    for event in [
        "tui_start",
        "tui_lock",
        "tui_unlock",
        "tui_exit",
        "\"source\":\"tui\"",
    ] {
        assert!(log.contains(event), "{event} not in the audit log");
    }
    assert!(!log.contains(&first_answer) && !log.contains("lighthouse"));
    // Nothing written since the start under the root, /tmp or /dev/shm holds the prompt or
    // the answer (no history file, no scrollback dump).
    let mut files = Vec::new();
    for d in [env.root.as_path(), Path::new("/tmp"), Path::new("/dev/shm")] {
        crate::residue::new_files(d, start, &mut files);
    }
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("lighthouse keeper") && !text.contains(&first_answer),
            "{} holds the conversation",
            f.display()
        );
    }
}
