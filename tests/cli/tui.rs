//! The terminal UI driven as an analyst would: the real binary with the real default model in
//! tmux (send-keys, capture-pane). Loading screen, banners, a streamed answer, typing and a
//! terminal resize during generation, a stopped answer, settings, export, the model picker
//! and a switch, lock (conversation wiped), unlock with the operator passphrase from
//! rempart.toml, quit with the terminal restored, and all of it on the audit log.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::model::model_path;
use crate::util::TestEnv;

struct Tmux {
    socket: String,
}

impl Tmux {
    /// `rempart --root ROOT tui ARGS` in a new 100x30 tmux session on its own server.
    fn start(name: &str, env: &TestEnv, args: &str) -> Self {
        let tmux = Self {
            socket: format!("rempart-test-{name}-{}", std::process::id()),
        };
        let script = format!(
            "{} --root {} tui{args}; echo EXITED rc=$?; sleep 60",
            env!("CARGO_BIN_EXE_rempart"),
            env.root.display()
        );
        let st = tmux
            .cmd()
            .args(["new-session", "-d", "-s", "ui", "-x", "100", "-y", "30"])
            .arg(script)
            .env_remove("REMPART_ROOT")
            .status()
            .unwrap();
        assert!(st.success());
        tmux
    }

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

    fn resize(&self, w: u16, h: u16) {
        let st = self
            .cmd()
            .args([
                "resize-window",
                "-t",
                "ui",
                "-x",
                &w.to_string(),
                "-y",
                &h.to_string(),
            ])
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
    // The second one with the demo's model card (issue 22: the picker shows its licence).
    let card =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("build/smollm2-135m-instruct.model-card.toml");
    for (name, marking) in [("smollm2", "SECRET"), ("smollm2b", "RESTRICTED")] {
        let rpk = env.path(&format!("{name}.rpk"));
        let mut seal = env.seal_cmd(model_path(), env.key("appliance.kek"), &rpk);
        seal.args(["--name", name, "--version", "1", "--marking", marking]);
        if name == "smollm2b" {
            seal.arg("--model-card").arg(&card);
        }
        seal.assert().success();
        env.cmd().arg("import").arg(&rpk).assert().success();
    }
    // The appliance key has no passphrase: the operator configures one to unlock the screen,
    // and a banner colour.
    let pass = env.path("operator.pass");
    crate::util::write_secret(&pass, "correct horse battery\n");
    let out = env
        .cmd()
        .args(["passphrase-hash", "--passphrase-file"])
        .arg(&pass)
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(
        line.starts_with("unlock_passphrase = \"$argon2id$"),
        "{line}"
    );
    let exports = env.path("exports");
    std::fs::create_dir(&exports).unwrap();
    std::fs::write(
        env.root.join("rempart.toml"),
        format!("[tui]\n{line}\n[markings]\nRESTRICTED = \"magenta\"\n"),
    )
    .unwrap();
    let tmux = Tmux {
        socket: format!("rempart-test-{}", std::process::id()),
    };
    let script = format!(
        "{} --root {} tui --model smollm2 --temperature 0 --max-tokens 160 --report-latency; \
         echo EXITED rc=$?; sleep 60",
        env!("CARGO_BIN_EXE_rempart"),
        env.root.display()
    );
    let st = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "ui",
            "-x",
            "100",
            "-y",
            "30",
            "-c",
        ])
        .arg(&exports)
        .arg(script)
        .env_remove("REMPART_ROOT")
        .status()
        .expect("tmux is installed (.ci/run installs it)");
    assert!(st.success());
    // The loading screen ends with the figures, then gives way to the conversation.
    let p = tmux.wait("the load figures", 120, |p| p.contains("memory locked:"));
    assert!(
        p.contains("smollm2 v1 loaded:") && p.contains("MB in"),
        "{p}"
    );
    let p = tmux.wait("the chat screen", 30, |p| !p.contains("Loading smollm2"));
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

    // Settings (F3): allow long answers (160 -> 4000 tokens) for what follows.
    tmux.keys(&["F3"]);
    tmux.wait("the settings", 30, |p| p.contains("Max tokens: 160"));
    tmux.keys(&["Down", "Down", "Down", "C-u", "4000", "Enter"]);
    tmux.wait("the settings to close", 30, |p| !p.contains("Max tokens"));

    // A long answer, stopped with Esc after it started; typing stays live meanwhile, and the
    // terminal shrinking to 80x24 mid-answer keeps both banners in place.
    tmux.keys(&["Write a long story about a lighthouse keeper.", "Enter"]);
    tmux.wait("the answer to start", 60, |p| p.contains("answering"));
    tmux.keys(&["draft"]);
    tmux.wait("typing during generation", 30, |p| p.contains("│draft"));
    tmux.resize(80, 24);
    let p = tmux.wait("the resized screen", 30, |p| {
        p.lines().count() == 24 && p.lines().last().is_some_and(|l| l.contains("SECRET"))
    });
    let lines: Vec<&str> = p.lines().collect();
    assert!(
        lines[0].contains("SECRET") && lines[23].contains("SECRET"),
        "{p}"
    );
    assert!(p.contains("answering"), "{p}");
    tmux.keys(&["Escape"]);
    let p = tmux.wait("the stop notice", 60, |p| {
        p.contains("stopped: the answer so far is kept")
    });
    assert!(p.contains("lighthouse"), "{p}");
    // Clear the draft, then change a setting again (max tokens 4000 -> 8).
    tmux.keys(&["BSpace", "BSpace", "BSpace", "BSpace", "BSpace"]);
    tmux.wait("an empty editor", 30, |p| !p.contains("│draft"));
    tmux.keys(&["F3"]);
    tmux.wait("the settings", 30, |p| p.contains("Max tokens: 4000"));
    tmux.keys(&["Down", "Down", "Down", "C-u", "8", "Enter"]);
    tmux.wait("the settings to close", 30, |p| !p.contains("Max tokens"));

    // Export: e, a file name, Enter; the second time the file exists and is refused.
    tmux.keys(&["e"]);
    tmux.wait("the export prompt", 30, |p| {
        p.contains("Export the conversation")
    });
    tmux.keys(&["brief.md", "Enter"]);
    tmux.wait("the export notice", 30, |p| p.contains("exported to"));
    let exported = exports.join("brief.md");
    let text = std::fs::read_to_string(&exported).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!((lines[0], lines[lines.len() - 1]), ("SECRET", "SECRET"));
    assert!(
        text.contains("lighthouse keeper") && text.contains(&first_answer),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&exported).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    tmux.keys(&["e", "brief.md", "Enter"]);
    tmux.wait("the refusal", 30, |p| p.contains("already exists"));
    tmux.keys(&["Escape"]);
    // Wait for the prompt to close: an Escape still unread when F2's escape sequence arrives
    // would be read together with it as Alt+Escape.
    tmux.wait("the export prompt to close", 30, |p| {
        !p.contains("Export the conversation")
    });

    // The picker lists both models with their metadata; switching wipes the conversation
    // and the old model, and the banner follows the new bundle's marking.
    tmux.keys(&["F2"]);
    let p = tmux.wait("the picker", 60, |p| p.contains("smollm2b@1"));
    assert!(
        p.contains("smollm2@1  (loaded)") && p.contains("RESTRICTED · llama"),
        "{p}"
    );
    assert!(
        p.contains("Apache-2.0") && p.contains("8/9") && p.contains("0/9"),
        "the picker shows each bundle's AI BOM: {p}"
    );
    tmux.keys(&["Down", "Enter"]);
    let p = tmux.wait("the new model", 120, |p| p.contains("smollm2b v1 loaded:"));
    assert!(!p.contains("lighthouse") && p.lines().next().unwrap_or("").contains("RESTRICTED"));

    // Ctrl-L: locked, conversation gone from the screen, banners still there.
    tmux.wait("the chat screen", 30, |p| !p.contains("Loading smollm2b"));
    tmux.keys(&["Hi", "Enter"]);
    // The switch reset the speed to "– tok/s"; a figure there means the answer is complete.
    let p = tmux.wait("a short answer", 120, |p| {
        !p.contains("– tok/s") && !p.contains("answering")
    });
    assert!(p.contains("Model"), "{p}");
    tmux.keys(&["C-l"]);
    let p = tmux.wait("the lock screen", 30, |p| p.contains("LOCKED"));
    assert!(p.contains("Operator passphrase"), "{p}");
    assert!(
        !p.contains(&first_answer) && !p.contains("lighthouse"),
        "{p}"
    );
    assert!(p.lines().next().unwrap_or("").contains("RESTRICTED"), "{p}");
    // A wrong passphrase is refused; the right one unlocks; the conversation was wiped.
    tmux.keys(&["wrong", "Enter"]);
    tmux.wait("the refusal", 60, |p| p.contains("wrong passphrase"));
    tmux.keys(&["correct horse battery", "Enter"]);
    let p = tmux.wait("unlocked", 60, |p| p.contains("New conversation"));
    assert!(!p.contains(&first_answer), "{p}");

    // Ctrl-Q quits cleanly and gives the shell its normal screen back.
    tmux.keys(&["C-q"]);
    let p = tmux.wait("exit", 60, |p| p.contains("EXITED rc=0"));
    assert!(!p.contains("LOCKED") && !p.contains("Message"), "{p}");
    // The latency figures (a measurement, not asserted against a target here).
    let report = p
        .lines()
        .find(|l| l.contains("input-to-redraw latency"))
        .unwrap_or_else(|| panic!("no latency report:\n{p}"));
    eprintln!("{report}");
    let log = std::fs::read_to_string(env.root.join("audit/audit.log")).unwrap();
    for event in [
        "tui_start",
        "tui_lock",
        "tui_unlock_failed",
        "tui_unlock",
        "tui_exit",
        "tui_export",
        "\"max_tokens\":8",
        "model_unload",
        "\"source\":\"tui\"",
    ] {
        assert!(log.contains(event), "{event} not in the audit log");
    }
    assert!(!log.contains(&first_answer) && !log.contains("lighthouse"));
    // Issue 17: the terminal UI's `query` records have the CLI's fields (docs/audit-events.md),
    // and the answer stopped with Esc is recorded as `canceled`.
    let queries: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "query")
        .collect();
    assert!(queries.len() >= 2, "{queries:?}");
    for q in &queries {
        let d = &q["details"];
        let mut keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "answer_sha384",
                "model",
                "ms",
                "passages",
                "prompt_sha384",
                "raw",
                "session_marking",
                "source",
                "stop_reason",
                "tokens_generated",
                "tokens_prompt",
                "version"
            ],
            "{q}"
        );
        assert_eq!(d["source"], "tui");
        assert_eq!(d["version"], 1);
        assert_eq!(d["prompt_sha384"].as_str().unwrap().len(), 96);
        assert_eq!(d["answer_sha384"].as_str().unwrap().len(), 96);
    }
    assert!(
        queries
            .iter()
            .any(|q| q["details"]["stop_reason"] == "canceled"),
        "{queries:?}"
    );
    // Nothing written since the start under the root, /tmp or /dev/shm holds the prompt or
    // the answer (no history file, no scrollback dump), but the explicit export.
    let mut files = Vec::new();
    for d in [env.root.as_path(), Path::new("/tmp"), Path::new("/dev/shm")] {
        crate::residue::new_files(d, start, &mut files);
    }
    for f in files.iter().filter(|f| **f != exported) {
        let Ok(bytes) = std::fs::read(f) else {
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

/// Issue 17: a question the terminal UI cannot answer (longer than the tiny model's 64-token
/// context) is recorded as `query_failed`, with its class and the prompt's SHA-384 only, as
/// `ask` records it.
#[test]
fn a_failed_question_in_the_terminal_ui_is_recorded_as_query_failed() {
    let env = TestEnv::new().with_keys();
    let gguf = env.tiny_model("tiny.gguf", 0);
    let b = env.seal(&gguf, "tiny.rpk", &[]);
    env.cmd().arg("import").arg(&b).assert().success();
    let tmux = Tmux::start("fail", &env, "");
    tmux.wait("the chat screen", 60, |p| p.contains("Type a message"));
    let question = "SECRETWORD ".repeat(40);
    tmux.keys(&[question.trim_end(), "Enter"]);
    let p = tmux.wait("the error notice", 60, |p| p.contains("error:"));
    assert!(p.contains("context"), "{p}");
    tmux.keys(&["C-q"]);
    tmux.wait("exit", 60, |p| p.contains("EXITED rc=0"));
    let log = std::fs::read_to_string(env.root.join("audit/audit.log")).unwrap();
    assert!(!log.contains("SECRETWORD"), "the prompt is never logged");
    let failed: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["event"] == "query_failed")
        .unwrap_or_else(|| panic!("no query_failed record:\n{log}"));
    let d = &failed["details"];
    assert_eq!(d["source"], "tui");
    assert_eq!(d["class"], "engine");
    assert_eq!(d["prompt_sha384"].as_str().unwrap().len(), 96);
}

/// Issue 18: in the terminal UI, a model whose every token is a terminal escape (title, OSC 52
/// clipboard, clear and home, a fake banner and status line, C1 CSI, a bidi override) changes
/// neither the pane's title nor the clipboard, and both real banners stay in place.
#[test]
fn a_hostile_model_cannot_retitle_write_the_clipboard_or_spoof_the_banners() {
    let env = TestEnv::new().with_keys();
    env.install_hostile_model();
    let tmux = Tmux::start("hostile", &env, " --temperature 0 --max-tokens 40");
    // Let applications set the title and the clipboard, so an escape that got through shows.
    for opt in [
        ["set-option", "-g", "set-clipboard", "on"],
        ["set-option", "-g", "allow-rename", "on"],
    ] {
        assert!(tmux.cmd().args(opt).status().unwrap().success());
    }
    let title = || {
        let out = tmux
            .cmd()
            .args(["display-message", "-p", "-t", "ui", "#{pane_title}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let before = title();
    tmux.wait("the chat screen", 60, |p| {
        p.contains("Type a message") && p.contains("loaded:")
    });
    tmux.keys(&["hi", "Enter"]);
    let p = tmux.wait("the answer", 60, |p| {
        p.contains("\\x1b") && p.contains("tok/s")
    });
    tmux.wait("the end of the answer", 60, |p| !p.contains("answering"));
    let p2 = tmux.pane();
    for p in [&p, &p2] {
        let rows: Vec<&str> = p.lines().collect();
        assert_eq!(rows.first().map(|r| r.trim()), Some("UNCLASSIFIED"), "{p}");
        assert_eq!(
            rows.iter()
                .rev()
                .find(|r| !r.trim().is_empty())
                .map(|r| r.trim()),
            Some("UNCLASSIFIED"),
            "{p}"
        );
        assert!(!p.contains("pwned") || p.contains("\\x1b]0;pwned"), "{p}");
    }
    assert_eq!(title(), before, "the pane's title is unchanged");
    assert!(!title().contains("pwned"));
    let buffers = tmux.cmd().args(["list-buffers"]).output().unwrap();
    assert!(
        buffers.stdout.is_empty(),
        "nothing reached the clipboard: {}",
        String::from_utf8_lossy(&buffers.stdout)
    );
    tmux.keys(&["C-q"]);
    tmux.wait("exit", 60, |p| p.contains("EXITED rc=0"));
}

/// Issue 21 in tmux: a SECRET document attached to a DIFFUSION RESTREINTE model (F5's picker,
/// then /attach), both banners raised to SECRET, a question answered from it, its sources
/// (F6), an export whose first and last lines carry SECRET with its provenance, /detach, and
/// the audit records.
#[test]
fn a_secret_document_attached_in_the_tui_raises_both_banners_and_the_export() {
    let env = TestEnv::new().with_keys();
    let rpk = env.path("m.rpk");
    env.seal_cmd(model_path(), env.key("appliance.kek"), &rpk)
        .args([
            "--name",
            "smollm2",
            "--version",
            "1",
            "--marking",
            "DIFFUSION RESTREINTE",
        ])
        .assert()
        .success();
    env.cmd().arg("import").arg(&rpk).assert().success();
    let docs = env.path("documents");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(
        docs.join("convoy.md"),
        "SECRET\n\n# Convoy\n\nThe supply convoy leaves Toulon at dawn on 12 March.\n",
    )
    .unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("build/cache/documents/serious_poem.odt"),
        docs.join("poem.odt"),
    )
    .unwrap();
    std::fs::write(docs.join("tool.exe"), b"x").unwrap();
    let exports = env.path("exports");
    std::fs::create_dir(&exports).unwrap();
    std::fs::write(
        env.root.join("rempart.toml"),
        format!(
            "[tui]\nexport_dir = \"{}\"\n[classification]\naccreditation = \"SECRET\"\n\
             [documents]\ndir = \"{}\"\nmax_source_tokens = 400\n",
            exports.display(),
            docs.display()
        ),
    )
    .unwrap();
    let tmux = Tmux::start("docs", &env, " --temperature 0 --max-tokens 24");
    tmux.wait("the chat screen", 120, |p| p.contains("smollm2 v1 loaded:"));
    let p = tmux.wait("the banners", 30, |p| !p.contains("Loading smollm2"));
    assert!(
        p.lines()
            .next()
            .unwrap_or("")
            .contains("DIFFUSION RESTREINTE"),
        "{p}"
    );
    // F5: the picker lists the supported files of the documents directory only.
    tmux.keys(&["F5"]);
    let p = tmux.wait("the attach picker", 30, |p| p.contains("poem.odt"));
    assert!(p.contains("> convoy.md") && !p.contains("tool.exe"), "{p}");
    tmux.keys(&["Enter"]);
    // Both banners are redrawn in the same frame: wait for the whole frame on the pane.
    let p = tmux.wait("the attach notice and the banners", 60, |p| {
        let rows: Vec<&str> = p.lines().collect();
        p.contains("attached [1] convoy.md")
            && rows
                .get(29)
                .is_some_and(|r| r.contains("SECRET") && !r.contains("DIFFUSION"))
    });
    let rows: Vec<&str> = p.lines().collect();
    assert!(
        rows[0].contains("SECRET") && !rows[0].contains("DIFFUSION"),
        "{p}"
    );
    assert!(
        rows[29].contains("SECRET") && !rows[29].contains("DIFFUSION"),
        "{p}"
    );
    assert!(p.contains("this session is now marked SECRET"), "{p}");
    assert!(p.contains("[1] convoy.md · SECRET"), "{p}");
    tmux.keys(&["/attach poem.odt", "Enter"]);
    tmux.wait("the second document", 60, |p| {
        p.contains("[2] poem.odt · DIFFUSION RESTREINTE")
    });
    // A question about them: answered, then F6 lists the passages it was given.
    tmux.keys(&["When does the convoy leave Toulon?", "Enter"]);
    tmux.wait("the answer", 300, |p| {
        !p.contains("– tok/s") && !p.contains("answering")
    });
    tmux.keys(&["F6"]);
    let p = tmux.wait("the sources", 30, |p| {
        p.contains("Sources of the last answer")
    });
    assert!(p.contains("convoy.md, § Convoy, l. 3-5"), "{p}");
    tmux.keys(&["q"]);
    tmux.wait("the sources to close", 30, |p| {
        !p.contains("Sources of the last answer")
    });
    // The export: SECRET first and last, machine-generated, its provenance.
    tmux.keys(&["e"]);
    tmux.wait("the export prompt", 30, |p| {
        p.contains("Export the conversation")
    });
    tmux.keys(&["brief.md", "Enter"]);
    tmux.wait("the export notice", 30, |p| p.contains("exported to"));
    let text = std::fs::read_to_string(exports.join("brief.md")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!((lines[0], lines[lines.len() - 1]), ("SECRET", "SECRET"));
    assert!(text.contains("MACHINE-GENERATED"), "{text}");
    assert!(text.contains("- document 1: convoy.md (SECRET)"), "{text}");
    assert!(
        text.contains("- document 2: poem.odt (DIFFUSION RESTREINTE)"),
        "{text}"
    );
    assert!(text.contains("## Sources of the last answer"), "{text}");
    // Detaching keeps the session's marking.
    tmux.keys(&["/detach 1", "Enter"]);
    let p = tmux.wait("the detach notice", 30, |p| {
        p.contains("detached convoy.md")
    });
    assert!(p.lines().next().unwrap_or("").contains("SECRET"), "{p}");
    tmux.keys(&["C-q"]);
    tmux.wait("exit", 60, |p| p.contains("EXITED rc=0"));
    // The audit log: both attachments, the query's session marking and passages, the
    // detachment, the export; never the document's text.
    let attached = env.audit_records("document_attached");
    assert_eq!(attached.len(), 2);
    assert_eq!(attached[0]["details"]["source"], "tui");
    assert_eq!(attached[0]["details"]["marking"], "SECRET");
    let sha = attached[0]["details"]["sha384"]
        .as_str()
        .unwrap()
        .to_owned();
    let q = &env.audit_records("query")[0]["details"];
    assert_eq!(q["session_marking"], "SECRET");
    assert!(
        q["passages"].as_array().unwrap().iter().any(
            |p| p["document_sha384"] == sha.as_str() && p["lines"] == serde_json::json!([3, 5])
        ),
        "{q}"
    );
    assert_eq!(
        env.audit_records("document_detached")[0]["details"]["sha384"],
        sha.as_str()
    );
    assert_eq!(env.audit_records("tui_export").len(), 1);
    let log = std::fs::read_to_string(env.root.join("audit/audit.log")).unwrap();
    assert!(!log.contains("Toulon") && !log.contains("burning deck"));
}
