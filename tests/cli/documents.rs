//! Issue 21: documents through the library and `rempart ask --file`, with real files that no
//! one here wrote (sample files shipped in the sdists of pypdf, odfpy and python-docx, fetched
//! with pinned hashes by build/fetch-documents, which `make test` runs) and generated ones: text
//! out of each format, hostile files refused with a clear error and exit code, classification
//! that follows the data (a SECRET document on a DIFFUSION RESTREINTE model), retrieval with
//! cited passages, and the audit records.

use std::path::{Path, PathBuf};

use predicates::str::contains;
use rempart::document::{self, Policy};

use crate::model::model_path;
use crate::util::{TestEnv, exit};

/// A file fetched by build/fetch-documents.
fn real(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("build/cache/documents")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run build/fetch-documents (make test does)",
        p.display()
    );
    p
}

fn text_of(d: &document::Document) -> String {
    d.passages
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn real_documents_of_each_format_give_their_text() {
    let policy = Policy::default();
    let read = |name: &str| document::read(&real(name), None, &policy).unwrap();
    // PDF (pypdf's crazyones.pdf): one page, its text layer.
    let pdf = read("crazyones.pdf");
    assert_eq!(pdf.pages, Some(1));
    let t = text_of(&pdf);
    assert!(t.contains("crazy ones"), "{t}");
    assert!(pdf.passages.iter().all(|p| p.page == Some(1)));
    // A scanned PDF with an OCR text layer: several pages, passages per page.
    let ocr = read("Seige_of_Vicksburg_Sample_OCR.pdf");
    assert!(ocr.pages.unwrap() > 1, "{:?}", ocr.pages);
    assert!(text_of(&ocr).contains("Vicksburg"));
    // ODT (odfpy's samples): a poem in public domain (Felicia Hemans, 1826), a table.
    let poem = read("serious_poem.odt");
    let t = text_of(&poem);
    assert!(t.contains("The boy stood on the burning deck"), "{t}");
    assert!(t.contains("battle's wreck"), "entities are decoded: {t}");
    let table = text_of(&read("simpletable.odt"));
    assert!(
        table.contains("Cell 1") && table.contains("Cell 4"),
        "{table}"
    );
    // DOCX (python-docx's samples): a heading style becomes the passage's section (its text
    // in two runs, "Heading Para" and "graph", is one word again).
    let docx = read("par-known-paragraphs.docx");
    assert!(
        docx.passages
            .iter()
            .any(|p| p.section.as_deref() == Some("Heading Paragraph")),
        "{:?}",
        docx.passages
    );
    // python-docx's empty 2x2 table: a document with no text says so.
    let e = document::read(&real("tbl-2x2-table.docx"), None, &policy).unwrap_err();
    assert_eq!(
        e.to_string(),
        "document tbl-2x2-table.docx: it holds no text"
    );
    // odfpy's "nasty" file declares an entity in a DTD: it is never expanded.
    let nasty = document::read(&real("nasty.odt"), None, &policy).map(|d| text_of(&d));
    match nasty {
        Ok(t) => assert!(t.len() < 100, "{t}"),
        Err(e) => assert!(e.to_string().starts_with("document nasty.odt: "), "{e}"),
    }
    // An encrypted PDF (pypdf's encrypted-file.pdf) is refused, saying so.
    let e = document::read(&real("encrypted-file.pdf"), None, &policy).unwrap_err();
    assert!(e.to_string().contains("encrypted"), "{e}");
}

/// `rempart ask --file FILE --temperature 0 --max-tokens N --json QUESTION`, parsed.
fn ask_greedy_json(
    env: &TestEnv,
    file: &Path,
    max_tokens: &str,
    question: &str,
) -> serde_json::Value {
    env.json(&[
        "ask",
        "--file",
        file.to_str().unwrap(),
        "--temperature",
        "0",
        "--max-tokens",
        max_tokens,
        "--json",
        question,
    ])
}

/// Seals the default model marked `marking` and installs it.
fn env_with_marked_model(marking: &str) -> TestEnv {
    let env = TestEnv::new().with_keys();
    let rpk = env.path("m.rpk");
    env.seal_cmd(model_path(), env.key("appliance.kek"), &rpk)
        .args([
            "--name",
            "test-model",
            "--version",
            "1",
            "--marking",
            marking,
        ])
        .assert()
        .success();
    env.cmd().arg("import").arg(&rpk).assert().success();
    env
}

const SECRET_NOTE: &str = "SECRET\n\n# Convoy\n\nThe supply convoy leaves Toulon at dawn on 12 March, \
escorted by the frigate Vendémiaire.\n\n# Weather\n\nA mistral is expected from the north.\n\nSECRET\n";

#[test]
fn a_secret_document_raises_a_dr_session_and_every_record_says_so() {
    let env = env_with_marked_model("DIFFUSION RESTREINTE");
    std::fs::write(
        env.root.join("rempart.toml"),
        "[classification]\naccreditation = \"SECRET\"\n",
    )
    .unwrap();
    let note = env.path("convoy.md");
    std::fs::write(&note, SECRET_NOTE).unwrap();
    let poem = real("serious_poem.odt");
    // Without a document the session carries the model's marking.
    let out = env
        .cmd()
        .args(["ask", "--temperature", "0", "--max-tokens", "4", "Hi"])
        .assert()
        .success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("| DIFFUSION RESTREINTE |"), "{err}");
    // JSON: the session marking, the documents, the numbered sources, the provenance.
    let v = env.json(&[
        "ask",
        "--file",
        note.to_str().unwrap(),
        "--file",
        poem.to_str().unwrap(),
        "--temperature",
        "0",
        "--max-tokens",
        "24",
        "--json",
        "When does the convoy leave Toulon?",
    ]);
    assert_eq!(v["marking"], "DIFFUSION RESTREINTE");
    assert_eq!(v["session_marking"], "SECRET");
    let docs = v["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["name"], "convoy.md");
    assert_eq!(docs[0]["marking"], "SECRET");
    assert_eq!(docs[0]["marking_source"], "document");
    assert_eq!(docs[1]["marking"], "DIFFUSION RESTREINTE");
    assert_eq!(docs[1]["marking_source"], "default");
    let note_sha = docs[0]["sha384"].as_str().unwrap().to_owned();
    assert_eq!(note_sha.len(), 96);
    // Both fit the context: every passage was given, numbered, with its reference.
    assert_eq!(v["retrieval"]["whole"], true);
    let sources = v["sources"].as_array().unwrap();
    let convoy = sources
        .iter()
        .find(|s| s["text"].as_str().unwrap().contains("Toulon"))
        .unwrap();
    assert_eq!(convoy["document"], "convoy.md");
    assert_eq!(convoy["locator"], "§ Convoy, l. 3-5");
    assert_eq!(convoy["lines"], serde_json::json!([3, 5]));
    assert_eq!(v["provenance"]["machine_generated"], true);
    assert_eq!(v["provenance"]["session_marking"], "SECRET");
    assert_eq!(v["provenance"]["documents"][0]["sha384"], note_sha.as_str());
    assert_eq!(
        v["provenance"]["bundle_manifest_sha384"]
            .as_str()
            .unwrap()
            .len(),
        96
    );
    // The human output: the answer, then --cite's sources; the summary line carries the
    // session's marking.
    let out = env
        .cmd()
        .args(["ask", "--cite", "--temperature", "0", "--max-tokens", "8"])
        .arg("--file")
        .arg(&note)
        .arg("Where does the convoy leave from?")
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stdout.contains("Sources:\n[1] convoy.md, § Convoy, l. 3-5 (SECRET)\n")
            && !stdout.contains("l. 1 (SECRET)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("    The supply convoy leaves Toulon"),
        "{stdout}"
    );
    assert!(stderr.contains("| SECRET |"), "{stderr}");
    // The audit log: each attachment (hash, name, marking, size), each query's session
    // marking and passages (document hash and lines), never a document's text.
    let attached = env.audit_records("document_attached");
    assert_eq!(attached.len(), 3);
    let d = &attached[0]["details"];
    assert_eq!(d["name"], "convoy.md");
    assert_eq!(d["sha384"], note_sha.as_str());
    assert_eq!(d["marking"], "SECRET");
    assert_eq!(d["bytes"], SECRET_NOTE.len());
    assert_eq!(d["format"], "markdown");
    let queries = env.audit_records("query");
    assert_eq!(queries.len(), 3);
    assert_eq!(
        queries[0]["details"]["session_marking"],
        serde_json::Value::Null
    );
    let q = &queries[2]["details"];
    assert_eq!(q["session_marking"], "SECRET");
    let passages = q["passages"].as_array().unwrap();
    assert!(!passages.is_empty());
    assert!(
        passages
            .iter()
            .all(|p| p["document_sha384"] == note_sha.as_str())
    );
    assert!(
        passages
            .iter()
            .any(|p| p["lines"] == serde_json::json!([3, 5]))
    );
    let log = std::fs::read_to_string(env.root.join("audit/audit.log")).unwrap();
    for secret in ["Toulon", "Vendémiaire", "burning deck", "convoy leave"] {
        assert!(!log.contains(secret), "{secret} leaked into the audit log");
    }
    env.cmd()
        .args(["audit", "verify"])
        .assert()
        .success()
        .stderr(contains("audit log intact"));
}

#[test]
fn documents_that_cannot_be_held_or_read_are_refused_with_the_reason() {
    let env = crate::engine::env_with_model();
    let secret = env.path("secret.txt");
    std::fs::write(&secret, SECRET_NOTE).unwrap();
    // Above the default accreditation (DIFFUSION RESTREINTE): refused, exit 6, audited.
    env.cmd()
        .args(["ask", "--max-tokens", "4", "--file"])
        .arg(&secret)
        .arg("q")
        .assert()
        .code(exit::POLICY)
        .stderr(contains(
            "document secret.txt is marked SECRET, above this appliance's accreditation \
             (DIFFUSION RESTREINTE)",
        ));
    let refused = env.audit_records("document_refused");
    assert_eq!(refused[0]["details"]["class"], "policy");
    // A given marking is refused before the file is read (it need not even exist).
    env.cmd()
        .args([
            "ask",
            "--file",
            "missing.txt",
            "--marking",
            "très secret",
            "q",
        ])
        .assert()
        .code(exit::POLICY)
        .stderr(contains("marked TRÈS SECRET"));
    // Unreadable files: exit 10 with what is wrong.
    let broken = env.path("broken.odt");
    std::fs::write(&broken, b"PK\x03\x04 this is not a zip").unwrap();
    let binary = env.path("binary.txt");
    std::fs::write(&binary, b"MZ\x90\x00\x03\x00\x00\x00").unwrap();
    let exe = env.path("tool.exe");
    std::fs::write(&exe, b"x").unwrap();
    for (file, want) in [
        (
            broken.clone(),
            "document broken.odt: it is not a valid zip container",
        ),
        (binary, "document binary.txt: it is binary data"),
        (
            exe,
            "document tool.exe: unsupported file type (supported: .txt, .md, .pdf, .odt, .docx)",
        ),
        (
            real("encrypted-file.pdf"),
            "document encrypted-file.pdf: it is an encrypted PDF",
        ),
    ] {
        env.cmd()
            .args(["ask", "--max-tokens", "4", "--file"])
            .arg(&file)
            .arg("q")
            .assert()
            .code(exit::DOCUMENT)
            .stderr(contains(want));
    }
    // Bad --marking values are usage errors.
    env.cmd()
        .args(["ask", "--file"])
        .arg(&broken)
        .args(["--marking", "CONFIDENTIEL", "q"])
        .assert()
        .code(exit::USAGE)
        .stderr(contains(
            "--marking \"CONFIDENTIEL\": not on the classification scale",
        ));
    env.cmd()
        .args(["ask", "--marking", "SECRET", "q"])
        .assert()
        .code(exit::USAGE)
        .stderr(contains("1 --marking for 0 --file"));
    // Nothing was asked.
    assert!(env.audit_records("query").is_empty());
}

#[test]
fn a_document_larger_than_the_context_gives_the_passages_that_match() {
    let env = crate::engine::env_with_model();
    std::fs::write(
        env.root.join("rempart.toml"),
        "[documents]\nmax_source_tokens = 600\n",
    )
    .unwrap();
    // 300 paragraphs of filler with one fact in the middle: far more than 600 tokens.
    let mut text = String::from("# Logistics report\n\n");
    for i in 0..300 {
        if i == 150 {
            text.push_str("The depot at Brienne holds forty-two amphibious trucks.\n\n");
        }
        text.push_str(&format!(
            "Paragraph {i}: routine inventory of spare parts, fuel and rations was completed.\n\n"
        ));
    }
    let report = env.path("report.txt");
    std::fs::write(&report, &text).unwrap();
    let v = ask_greedy_json(
        &env,
        &report,
        "8",
        "How many amphibious trucks does the Brienne depot hold?",
    );
    assert_eq!(v["retrieval"]["whole"], false);
    assert_eq!(
        v["retrieval"]["semantic"], false,
        "no embedding model is installed"
    );
    assert!(v["retrieval"]["passages_left_out"].as_u64().unwrap() > 10);
    let sources = v["sources"].as_array().unwrap();
    assert!(
        sources[..].iter().any(|s| s["text"]
            .as_str()
            .unwrap()
            .contains("forty-two amphibious trucks")),
        "{sources:?}"
    );
    assert!(v["documents"][0]["tokens"].as_u64().unwrap() > 3000);
    assert!(
        v["tokens_prompt"].as_u64().unwrap() < 1000,
        "{}",
        v["tokens_prompt"]
    );
}

/// A file of all-MiniLM-L6-v2, fetched by build/fetch-embedder.
fn minilm(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("build/cache/minilm")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run build/fetch-embedder (make test does)",
        p.display()
    );
    p
}

#[test]
fn the_embedding_model_places_paraphrases_together() {
    let read = |f: &str| std::fs::read(minilm(f)).unwrap();
    let e = document::embed::Embedder::new(
        &read("model.safetensors"),
        &read("tokenizer.json"),
        &read("config.json"),
    )
    .unwrap();
    assert_eq!(e.dims(), 384);
    let v = e
        .embed(&[
            "The cat sits on the mat.",
            "A kitten is resting on a rug.",
            "The quarterly fuel budget was approved by the committee.",
        ])
        .unwrap();
    for x in &v {
        let n: f32 = x.iter().map(|a| a * a).sum();
        assert!((n - 1.0).abs() < 1e-4, "unit length: {n}");
    }
    let (near, far) = (
        document::embed::cosine(&v[0], &v[1]),
        document::embed::cosine(&v[0], &v[2]),
    );
    assert!(near > far + 0.2, "paraphrase {near}, unrelated {far}");
    // A batch gives the same vectors as one text at a time (padding does not leak in).
    let one = e.embed(&["A kitten is resting on a rug."]).unwrap();
    assert!(document::embed::cosine(&one[0], &v[1]) > 0.9999);
    // A configuration out of bounds is refused before anything is allocated from it.
    let bad = String::from_utf8(read("config.json"))
        .unwrap()
        .replace("\"hidden_size\": 384", "\"hidden_size\": 1000000");
    let err = document::embed::Embedder::new(
        &read("model.safetensors"),
        &read("tokenizer.json"),
        bad.as_bytes(),
    )
    .unwrap_err();
    assert!(err.contains("out of the bounds"), "{err}");
}

#[test]
fn an_installed_embedding_model_finds_the_passage_bm25_misses() {
    let env = crate::engine::env_with_model();
    // The embedding model as a sealed bundle of three artifacts, imported beside the LLM.
    let rpk = env.path("minilm.rpk");
    env.seal_cmd(minilm("model.safetensors"), env.key("appliance.kek"), &rpk)
        .args(["--name", "minilm", "--version", "1"])
        .arg("--tokenizer")
        .arg(minilm("tokenizer.json"))
        .arg("--config")
        .arg(minilm("config.json"))
        .assert()
        .success();
    env.cmd().arg("import").arg(&rpk).assert().success();
    std::fs::write(
        env.root.join("rempart.toml"),
        "[documents]\nmax_source_tokens = 400\n",
    )
    .unwrap();
    // Filler, and one sentence that answers the question without any of its words.
    let mut text = String::new();
    for i in 0..120 {
        if i == 60 {
            text.push_str("The supply column is escorted by two frigates and a submarine.\n\n");
        }
        text.push_str(&format!(
            "Paragraph {i}: routine inventory of spare parts, fuel and rations was completed.\n\n"
        ));
    }
    let report = env.path("report.txt");
    std::fs::write(&report, &text).unwrap();
    // Without --model, the language model answers: the embedding model is not a candidate.
    let v = ask_greedy_json(&env, &report, "4", "Which warships protect the convoy?");
    assert_eq!(v["model"], "test-model");
    assert_eq!(v["retrieval"]["semantic"], true);
    assert_eq!(v["retrieval"]["embedding_model"], "minilm@1");
    let sources = v["sources"].as_array().unwrap();
    assert!(
        sources.iter().any(|s| s["text"]
            .as_str()
            .unwrap()
            .contains("escorted by two frigates")),
        "{sources:?}"
    );
    let loads = env.audit_records("model_load");
    assert!(
        loads.iter().any(|r| r["details"]["model"] == "minilm"),
        "{loads:?}"
    );
}

/// Hostile documents: 400 mutations of each real sample (bytes overwritten, a range deleted or
/// duplicated, the file cut), each extracted and split; every one gives text or an error in
/// words, none panics or takes more than a few seconds. (The `document` fuzz target does the
/// same without end under cargo-fuzz.)
#[test]
fn mutated_real_documents_never_panic_or_hang() {
    use rempart::document::{Format, Limits, extract, passage};
    let limits = Limits {
        max_text: 4 << 20,
        max_pages: 64,
    };
    // A small deterministic generator (xorshift), so a failure can be replayed.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut ok, mut refused) = (0, 0);
    for (name, format) in [
        ("crazyones.pdf", Format::Pdf),
        ("serious_poem.odt", Format::Odt),
        ("par-known-paragraphs.docx", Format::Docx),
    ] {
        let original = std::fs::read(real(name)).unwrap();
        for i in 0..400 {
            let mut b = original.clone();
            let len = b.len();
            let at = (next() as usize) % len;
            match i % 4 {
                0 => {
                    for k in 0..1 + next() % 8 {
                        let j = (at + k as usize * 97) % len;
                        b[j] = next() as u8;
                    }
                }
                1 => {
                    let end = (at + (next() as usize) % 256).min(len);
                    b.drain(at..end);
                }
                2 => {
                    let end = (at + (next() as usize) % 256).min(len);
                    let copy = b[at..end].to_vec();
                    b.splice(at..at, copy);
                }
                _ => b.truncate(at),
            }
            let t0 = std::time::Instant::now();
            match extract::extract(format, &b, limits) {
                Ok(pages) => {
                    let _ = passage::split(&pages);
                    ok += 1;
                }
                Err(e) => {
                    assert!(!e.is_empty());
                    refused += 1;
                }
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(5),
                "{name} mutation {i} took {:?}",
                t0.elapsed()
            );
        }
    }
    // Both outcomes occur: the mutations are neither all harmless nor all fatal.
    assert!(ok > 50 && refused > 50, "{ok} read, {refused} refused");
}

/// Without `max_source_tokens`, a document several times the context (8192 tokens) gives the
/// best passages within the default retrieval budget (2048 tokens): the prompt fits.
#[test]
fn a_document_several_times_the_context_fills_it_without_overflowing() {
    let env = crate::engine::env_with_model();
    let mut text = String::new();
    for i in 0..1500 {
        text.push_str(&format!(
            "Paragraph {i}: the patrol in sector {} reported calm seas and no contact.\n\n",
            i % 37
        ));
    }
    let report = env.path("long.txt");
    std::fs::write(&report, &text).unwrap();
    let v = ask_greedy_json(
        &env,
        &report,
        "1",
        "What did the patrol in sector 12 report?",
    );
    let doc_tokens = v["documents"][0]["tokens"].as_u64().unwrap();
    let prompt = v["tokens_prompt"].as_u64().unwrap();
    assert!(doc_tokens > 3 * 8192, "{doc_tokens}");
    assert!(prompt > 1500 && prompt < 2048 + 300, "{prompt}");
    assert_eq!(v["retrieval"]["whole"], false);
    assert!(v["retrieval"]["passages_given"].as_u64().unwrap() >= 5);
}
