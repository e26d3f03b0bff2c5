//! Issue 18: hostile bytes never reach the operator's terminal. Model output, file names on a
//! medium, template errors and arguments pass through the one output sanitiser; `ask --raw`
//! gives the exact bytes and says so in the audit log; `--json` is exact through JSON escaping.

use crate::util::{TestEnv, assert_terminal_safe, exit};

const ASK: [&str; 6] = ["ask", "--temperature", "0", "--max-tokens", "24", "hi"];

#[test]
fn a_model_emitting_escapes_is_shown_not_obeyed_and_raw_is_exact_and_audited() {
    let env = TestEnv::new().with_keys();
    env.install_hostile_model();

    // --raw: the model's exact bytes, escapes included (the fixture really is hostile).
    let raw = env.cmd().args(ASK).arg("--raw").output().unwrap();
    assert!(raw.status.success(), "{raw:?}");
    let raw_text = String::from_utf8(raw.stdout.clone()).unwrap();
    assert!(
        raw_text.contains('\u{1b}') && raw_text.chars().any(rempart::text::needs_escape),
        "the hostile model emits escapes: {raw_text:?}"
    );
    assert_terminal_safe(&raw.stderr, "stderr of ask --raw");

    // The default, also into a pipe (as here): the same answer, every escape made visible.
    let safe = env.cmd().args(ASK).output().unwrap();
    assert!(safe.status.success(), "{safe:?}");
    assert_terminal_safe(&safe.stdout, "stdout of ask");
    assert_terminal_safe(&safe.stderr, "stderr of ask");
    let shown = String::from_utf8(safe.stdout).unwrap();
    assert_eq!(
        shown,
        rempart::text::sanitize(&raw_text),
        "greedy: the same answer"
    );
    assert!(shown.contains("\\x1b"), "{shown}");

    // --json: exact through JSON escaping, and safe on a terminal as it is.
    let j = env.cmd().args(ASK).arg("--json").output().unwrap();
    assert!(j.status.success(), "{j:?}");
    assert_terminal_safe(&j.stdout, "stdout of ask --json");
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(
        format!("{}\n", v["text"].as_str().unwrap()),
        raw_text,
        "the JSON text is the model's exact output"
    );

    // --raw and --json together are a usage error.
    env.cmd()
        .args(ASK)
        .args(["--raw", "--json"])
        .assert()
        .code(exit::USAGE);

    let raws: Vec<_> = env
        .audit_records("query")
        .iter()
        .map(|r| r["details"]["raw"].clone())
        .collect();
    assert_eq!(
        raws,
        [
            serde_json::json!(true),
            serde_json::json!(false),
            serde_json::json!(false)
        ],
        "each query record says whether the answer was raw"
    );
}

#[test]
fn file_names_on_a_medium_and_arguments_cannot_drive_the_terminal() {
    let env = TestEnv::new().with_keys();
    let medium = env.path("usb");
    std::fs::create_dir(&medium).unwrap();
    let fake = "\u{1b}[2K\r\u{1b}[32maccepted\u{1b}[0m model@9 \u{202e}kpr.x\u{9b}1A.rpk";
    std::fs::write(medium.join(fake), b"not a bundle").unwrap();
    let out = env.cmd().arg("import").arg(&medium).output().unwrap();
    assert_eq!(out.status.code(), Some(exit::TAMPERED), "{out:?}");
    assert_terminal_safe(&out.stderr, "import's refusal");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("refused") && err.contains("\\x1b[32maccepted\\x1b[0m"),
        "the name is shown with its escapes visible: {err}"
    );

    // A usage error quotes the argument: sanitised too.
    let out = env
        .cmd()
        .args(["ask", "--temperature", "0.5\u{202e}\u{9b}2J", "hi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::USAGE), "{out:?}");
    assert_terminal_safe(&out.stderr, "a usage error");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0.5\\u{202e}\\x9b2J"),
        "{out:?}"
    );
}

#[test]
fn a_chat_template_error_is_sanitised() {
    let env = TestEnv::new().with_keys();
    let g = rempart::engine::testing::tiny_gguf(&rempart::engine::testing::TinyOpts {
        template: Some("{{ raise_exception('\u{1b}]0;pwned\u{7}\u{202e}fake') }}"),
        ..Default::default()
    });
    let p = env.path("t.gguf");
    std::fs::write(&p, g).unwrap();
    let b = env.seal(&p, "t.rpk", &[]);
    env.cmd().arg("import").arg(&b).assert().success();
    let out = env.cmd().args(ASK).output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert_terminal_safe(&out.stderr, "the template error");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\\x1b]0;pwned\\x07\\u{202e}fake"),
        "{out:?}"
    );
}
