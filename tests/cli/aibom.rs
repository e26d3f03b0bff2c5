//! Issue 22: an AI bill of materials in every bundle. `seal --model-card` writes a CycloneDX 1.6
//! ML-BOM into the signed manifest; `inspect --aibom` prints it (valid against the 1.6 schema
//! kept in docs/schema); `inspect --json`, `list` and the TUI's picker show its summary; a
//! changed model card is a changed signature; rempart.toml's `[import] require` refuses a
//! bundle that lacks a required field, with the list, and audits the refusal.

use std::path::Path;

use predicates::str::contains;

use crate::util::{TestEnv, exit};

/// Validates `doc` against docs/schema/cyclonedx-1.6 (the bom schema and the two it refers to).
fn assert_cyclonedx_1_6(doc: &serde_json::Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/schema/cyclonedx-1.6");
    let load = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap()
    };
    let schema = load("bom-1.6.SNAPSHOT.schema.json");
    let registry = jsonschema::Registry::new()
        .add(
            "http://cyclonedx.org/schema/spdx.SNAPSHOT.schema.json",
            load("spdx.SNAPSHOT.schema.json"),
        )
        .unwrap()
        .add(
            "http://cyclonedx.org/schema/jsf-0.82.SNAPSHOT.schema.json",
            load("jsf-0.82.SNAPSHOT.schema.json"),
        )
        .unwrap()
        .prepare()
        .unwrap();
    let v = jsonschema::options()
        .with_registry(&registry)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "not CycloneDX 1.6: {errors:#?}\n{doc:#}");
    // The schema is really applied: a document without its required fields fails.
    assert!(!v.is_valid(&serde_json::json!({"bomFormat": "CycloneDX"})));
}

fn card(env: &TestEnv) -> std::path::PathBuf {
    let p = env.path("card.toml");
    std::fs::write(
        &p,
        r#"license = "Apache-2.0"
supplier = "Test Supplier"
source = "https://example.org/models/tiny"
provenance = "Built by the test suite from engine::testing::tiny_gguf."
intended_use = "Tests of the appliance."
out_of_scope_uses = ["Anything real"]
known_limits = ["Random weights: the answers mean nothing"]
training_data = "None: random weights."
[[evaluation]]
task = "none"
metric = "accuracy"
value = 0
"#,
    )
    .unwrap();
    p
}

#[test]
fn a_sealed_model_card_is_a_valid_signed_cyclonedx_ml_bom_shown_everywhere() {
    let env = TestEnv::new().with_keys();
    let gguf = env.tiny_model("tiny.gguf", 0);
    let card = card(&env);
    let b = env.seal(&gguf, "tiny.rpk", &["--model-card", card.to_str().unwrap()]);
    let out = env
        .cmd()
        .args(["inspect", "--aibom"])
        .arg(&b)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_cyclonedx_1_6(&doc);
    let c = &doc["components"][0];
    assert_eq!(c["type"], "machine-learning-model");
    assert_eq!(c["licenses"][0]["expression"], "Apache-2.0");
    let sha = hex::encode(rempart::crypto::hash::sha256(&[
        &std::fs::read(&gguf).unwrap()
    ]));
    assert_eq!(
        c["hashes"][0],
        serde_json::json!({"alg": "SHA-256", "content": sha})
    );
    assert_eq!(
        c["modelCard"]["modelParameters"]["architectureFamily"],
        "llama"
    );
    // inspect --json and list --json carry the summary; the human forms name the licence.
    let v = env.json(&["inspect", "--json", b.to_str().unwrap()]);
    assert_eq!(v["aibom"], doc);
    assert_eq!(v["manifest"]["model_card"]["license"], "Apache-2.0");
    assert_eq!(
        v["manifest"]["model_card"]["fields"]
            .as_array()
            .unwrap()
            .len(),
        rempart::aibom::FIELDS.len()
    );
    env.cmd()
        .arg("inspect")
        .arg(&b)
        .assert()
        .success()
        .stdout(contains("licence     Apache-2.0"))
        .stdout(contains("model card fields: 9 of 9"));
    env.cmd().arg("import").arg(&b).assert().success();
    let l = env.json(&["list", "--json"]);
    assert_eq!(
        l["models"][0]["model_card"]["intended_use"],
        "Tests of the appliance."
    );
    env.cmd()
        .arg("list")
        .assert()
        .success()
        .stdout(contains("licence Apache-2.0"));

    // Without a card: the GGUF's facts and the digests, still valid; no card field.
    let bare = env.seal(&gguf, "bare.rpk", &[]);
    let out = env
        .cmd()
        .args(["inspect", "--aibom"])
        .arg(&bare)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_cyclonedx_1_6(&doc);
    assert!(doc["components"][0].get("licenses").is_none());
}

/// A changed model card is a changed signature: one byte of the licence changed in the sealed
/// file makes the bundle fail verification and import.
#[test]
fn changing_the_model_card_in_a_bundle_breaks_its_signature() {
    let env = TestEnv::new().with_keys();
    let gguf = env.tiny_model("tiny.gguf", 0);
    let card = card(&env);
    let b = env.seal(&gguf, "tiny.rpk", &["--model-card", card.to_str().unwrap()]);
    let mut bytes = std::fs::read(&b).unwrap();
    let at = bytes
        .windows(10)
        .position(|w| w == b"Apache-2.0")
        .expect("the licence is in the manifest");
    bytes[at + 7] = b'3'; // Apache-3.0
    let forged = env.path("forged.rpk");
    std::fs::write(&forged, &bytes).unwrap();
    env.cmd()
        .arg("verify")
        .arg(&forged)
        .assert()
        .code(exit::SIGNATURE)
        .stderr(contains("signature invalid"));
    env.cmd()
        .arg("import")
        .arg(&forged)
        .assert()
        .code(exit::SIGNATURE);
    assert!(!env.root.join("models/test-model-v1.rpk").exists());
}

/// `[import] require`: a bundle whose model card lacks a required field is refused (6) with the
/// list of what is missing, and `import_refused` records it; the same model with a full card is
/// imported. An unknown field name in the policy is a configuration error.
#[test]
fn the_import_policy_refuses_a_bundle_without_the_required_card_fields() {
    let env = TestEnv::new().with_keys();
    let gguf = env.tiny_model("tiny.gguf", 0);
    let bare = env.seal(&gguf, "bare.rpk", &[]);
    let partial = env.path("partial.toml");
    std::fs::write(&partial, "license = \"MIT\"\n").unwrap();
    env.seal_cmd(&gguf, env.key("appliance.kek"), env.path("half.rpk"))
        .args(["--name", "half", "--version", "1", "--model-card"])
        .arg(&partial)
        .assert()
        .success();
    std::fs::write(
        env.root.join("rempart.toml"),
        "[import]\nrequire = [\"license\", \"intended_use\"]\n",
    )
    .unwrap();
    env.cmd()
        .arg("import")
        .arg(&bare)
        .assert()
        .code(exit::POLICY)
        .stderr(contains("model card lacks license, intended_use"));
    env.cmd()
        .arg("import")
        .arg(env.path("half.rpk"))
        .assert()
        .code(exit::POLICY)
        .stderr(contains("model card lacks intended_use"))
        .stderr(contains("[import] require"));
    let refused = env.audit_records("import_refused");
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0]["details"]["class"], "policy");
    assert!(
        refused[1]["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("lacks intended_use")
    );
    assert!(!env.root.join("models/test-model-v1.rpk").exists());
    let card = card(&env);
    let full = env.seal(&gguf, "full.rpk", &["--model-card", card.to_str().unwrap()]);
    env.cmd().arg("import").arg(&full).assert().success();
    std::fs::write(
        env.root.join("rempart.toml"),
        "[import]\nrequire = [\"licence\"]\n",
    )
    .unwrap();
    env.cmd()
        .arg("import")
        .arg(&full)
        .assert()
        .code(exit::USAGE)
        .stderr(contains("unknown model card field \"licence\""));
}

/// The demo's model card (build/smollm2-135m-instruct.model-card.toml) on the real default
/// model: the document is valid CycloneDX 1.6 and carries the GGUF's own facts.
#[test]
fn the_demo_model_card_on_the_default_model_is_valid() {
    let env = TestEnv::new().with_keys();
    let card =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("build/smollm2-135m-instruct.model-card.toml");
    let b = env.seal(
        &crate::model::model_path(),
        "smollm2.rpk",
        &["--model-card", card.to_str().unwrap()],
    );
    let out = env
        .cmd()
        .args(["inspect", "--aibom"])
        .arg(&b)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_cyclonedx_1_6(&doc);
    let s = rempart::aibom::summary(&doc);
    assert_eq!(s.license.as_deref(), Some("Apache-2.0"));
    assert_eq!(
        doc["components"][0]["hashes"][0]["content"],
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    );
    let props = doc["components"][0]["properties"].to_string();
    for want in [
        "\"rempart:gguf:architecture\",\"value\":\"llama\"",
        "\"rempart:gguf:quantization\",\"value\":\"Q4_1\"",
        "\"rempart:gguf:context_length\",\"value\":\"8192\"",
        "\"rempart:gguf:vocabulary_size\",\"value\":\"49152\"",
        "\"rempart:gguf:tokenizer\",\"value\":\"gpt2\"",
    ] {
        assert!(props.contains(want), "{want} in {props}");
    }
}
