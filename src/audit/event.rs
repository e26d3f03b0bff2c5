//! The audit events: one typed value per thing the appliance records, so the same event has the
//! same fields whoever writes it (the CLI or the terminal UI). `docs/audit-events.md` lists every
//! event and field for operators who feed the log to a collector; a test checks the two agree.
//!
//! # Security
//! No event carries key material, a passphrase, a prompt, an answer or a document: prompts and
//! answers appear only as their SHA-384, exports only as their path and size.

use serde::Serialize;

use crate::engine::StopReason;

/// Which front end did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// `rempart ask`.
    Ask,
    /// `rempart tokenize`.
    Tokenize,
    /// `rempart bench`.
    Bench,
    /// The terminal UI.
    Tui,
}

/// A passage given to the model: which document, where in it. Never its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PassageRef {
    /// SHA-384 of the document (hex).
    pub document_sha384: String,
    /// Its page (PDF).
    pub page: Option<u32>,
    /// First and last line.
    pub lines: [u32; 2],
}

impl PassageRef {
    /// The reference of passage `p` of document `d`.
    pub fn of(d: &crate::document::Document, p: &crate::document::Passage) -> Self {
        Self {
            document_sha384: d.sha384.clone(),
            page: p.page,
            lines: [p.lines.0, p.lines.1],
        }
    }
}

/// What a trust change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustAction {
    /// A publisher key was trusted (or was already).
    Add,
    /// A publisher key is no longer trusted.
    Remove,
    /// The signature threshold changed.
    Policy,
}

/// One audit event. Its `event` name is the variant in snake case; its fields are the record's
/// `details`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The appliance key was generated into `ROOT/keys`.
    Keygen {
        /// Always `appliance` (publisher keys are made on publishing stations).
        role: &'static str,
        /// The new key's id (16 hex digits).
        key_id: String,
    },
    /// The trust store changed.
    TrustChange {
        /// What changed.
        action: TrustAction,
        /// The publisher key added or removed (`None` for a policy change).
        key_id: Option<String>,
        /// The new threshold (`policy`), else `None`.
        threshold: Option<usize>,
    },
    /// A bundle passed every check and is about to be installed.
    ImportAccepted {
        /// The bundle's path on the medium.
        file: String,
        /// Model name (signed manifest).
        model: String,
        /// Model version.
        version: u64,
        /// `--allow-downgrade` was given.
        allow_downgrade: bool,
        /// `--allow-expired` was given.
        allow_expired: bool,
    },
    /// A bundle was refused.
    ImportRefused {
        /// The bundle's path on the medium.
        file: String,
        /// The error class ([`crate::Error::class`]).
        class: &'static str,
        /// The message.
        reason: String,
    },
    /// More bundles were refused in one import than are recorded one by one
    /// ([`crate::appliance::import::MAX_REFUSAL_RECORDS`]): the rest are counted here.
    ImportRefusalsSummary {
        /// Bundles refused in this import, in all.
        refused: u64,
        /// How many of them have an `import_refused` record of their own (the first ones).
        recorded: u64,
    },
    /// An installed version is being removed.
    Remove {
        /// Model name.
        model: String,
        /// Version.
        version: u64,
    },
    /// A model was decrypted and built.
    ModelLoad {
        /// Who loaded it.
        source: Source,
        /// Model name.
        model: String,
        /// Version.
        version: u64,
        /// The installed bundle.
        bundle: String,
        /// The decryption arena was locked in memory.
        arena_locked: bool,
        /// The built weights were locked in memory.
        weights_locked: bool,
        /// Load time (read, verify, decrypt, build), milliseconds.
        load_ms: u64,
    },
    /// A verified model failed to decrypt or build.
    LoadFailed {
        /// Who loaded it.
        source: Source,
        /// Model name.
        model: String,
        /// Version.
        version: u64,
        /// The error class.
        class: &'static str,
        /// The message.
        reason: String,
    },
    /// A loaded model was wiped.
    ModelUnload {
        /// Model name.
        model: String,
        /// Version.
        version: u64,
        /// Why (`switch`).
        reason: &'static str,
    },
    /// A question was answered.
    Query {
        /// Who asked.
        source: Source,
        /// Model name.
        model: String,
        /// Version.
        version: u64,
        /// Prompt tokens (the whole conversation, template included).
        tokens_prompt: usize,
        /// Generated tokens.
        tokens_generated: usize,
        /// Prompt and generation time, milliseconds.
        ms: u64,
        /// Why generation stopped.
        stop_reason: StopReason,
        /// SHA-384 of the analyst's message (hex).
        prompt_sha384: String,
        /// SHA-384 of the answer (hex).
        answer_sha384: String,
        /// Whether the answer reached the terminal unsanitised (`ask --raw`).
        raw: bool,
        /// The session's marking when it was asked: the model's and every attached
        /// document's highest (`None` without documents).
        session_marking: Option<String>,
        /// The passages of attached documents given to the model with the question.
        passages: Vec<PassageRef>,
    },
    /// A document was attached to a session (`ask --file`, the terminal UI's attach).
    DocumentAttached {
        /// Who attached it.
        source: Source,
        /// Its file name.
        name: String,
        /// SHA-384 of its bytes (hex).
        sha384: String,
        /// Its size.
        bytes: u64,
        /// Its format (`text`, `markdown`, `pdf`, `odt`, `docx`).
        format: crate::document::Format,
        /// Its marking.
        marking: String,
        /// Where the marking came from (`given`, `document`, `default`).
        marking_source: crate::document::MarkingSource,
        /// Passages it was split into.
        passages: usize,
    },
    /// A document was refused (unreadable, or above the accreditation).
    DocumentRefused {
        /// Who tried to attach it.
        source: Source,
        /// Its file name.
        name: String,
        /// The error class.
        class: &'static str,
        /// The message.
        reason: String,
    },
    /// A document was detached in the terminal UI (its text wiped).
    DocumentDetached {
        /// Its file name.
        name: String,
        /// SHA-384 of its bytes (hex).
        sha384: String,
    },
    /// A question could not be answered.
    QueryFailed {
        /// Who asked.
        source: Source,
        /// Model name.
        model: String,
        /// Version.
        version: u64,
        /// The error class.
        class: &'static str,
        /// The message.
        reason: String,
        /// SHA-384 of the analyst's message (hex).
        prompt_sha384: String,
    },
    /// The terminal UI started.
    TuiStart {
        /// The model it loads first, `NAME@VERSION`.
        model: String,
    },
    /// The analyst changed the sampling settings.
    TuiSettings {
        /// Temperature.
        temperature: f32,
        /// Nucleus threshold.
        top_p: f32,
        /// Maximum tokens per answer.
        max_tokens: usize,
        /// Fixed seed, if any.
        seed: Option<u64>,
        /// Length of the system prompt (its text is not recorded).
        system_prompt_chars: usize,
    },
    /// The conversation was exported to a file.
    TuiExport {
        /// The file written.
        path: String,
        /// Its size.
        bytes: usize,
    },
    /// The analyst started a new conversation (the old one is wiped).
    TuiNewConversation,
    /// The screen locked (idle timer or Ctrl-L).
    TuiLock,
    /// The screen was unlocked.
    TuiUnlock,
    /// A wrong unlock passphrase was typed.
    TuiUnlockFailed,
    /// The terminal UI ended.
    TuiExit,
    /// An interrupted append was repaired before this record.
    AuditRecovered {
        /// Records written before the interruption, now committed.
        committed_records: u64,
        /// Bytes of an unterminated record, discarded.
        discarded_bytes: u64,
    },
    /// The clock read earlier than the last record: the records that follow are dated at the
    /// last record's time, never before it.
    ClockAnomaly {
        /// What the clock read (RFC 3339).
        clock: String,
        /// The last record's time, used instead (RFC 3339).
        last_record: String,
    },
}

impl Event {
    /// `document_attached` for `d`, attached by `source`.
    pub fn document_attached(source: Source, d: &crate::document::Document) -> Self {
        Self::DocumentAttached {
            source,
            name: d.name.clone(),
            sha384: d.sha384.clone(),
            bytes: d.bytes,
            format: d.format,
            marking: d.marking.to_string(),
            marking_source: d.marking_source,
            passages: d.passages.len(),
        }
    }

    /// `document_refused` for the file `name`, refused with `e`.
    pub fn document_refused(source: Source, name: String, e: &crate::Error) -> Self {
        Self::DocumentRefused {
            source,
            name,
            class: e.class(),
            reason: e.to_string(),
        }
    }

    /// The record's `event` name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Keygen { .. } => "keygen",
            Self::TrustChange { .. } => "trust_change",
            Self::ImportAccepted { .. } => "import_accepted",
            Self::ImportRefused { .. } => "import_refused",
            Self::ImportRefusalsSummary { .. } => "import_refusals_summary",
            Self::Remove { .. } => "remove",
            Self::ModelLoad { .. } => "model_load",
            Self::LoadFailed { .. } => "load_failed",
            Self::ModelUnload { .. } => "model_unload",
            Self::Query { .. } => "query",
            Self::QueryFailed { .. } => "query_failed",
            Self::DocumentAttached { .. } => "document_attached",
            Self::DocumentRefused { .. } => "document_refused",
            Self::DocumentDetached { .. } => "document_detached",
            Self::TuiStart { .. } => "tui_start",
            Self::TuiSettings { .. } => "tui_settings",
            Self::TuiExport { .. } => "tui_export",
            Self::TuiNewConversation => "tui_new_conversation",
            Self::TuiLock => "tui_lock",
            Self::TuiUnlock => "tui_unlock",
            Self::TuiUnlockFailed => "tui_unlock_failed",
            Self::TuiExit => "tui_exit",
            Self::AuditRecovered { .. } => "audit_recovered",
            Self::ClockAnomaly { .. } => "clock_anomaly",
        }
    }

    /// The record's `details`: the event's fields as a JSON object (every field present, `null`
    /// when unset).
    pub fn details(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("event");
        }
        match v {
            serde_json::Value::Object(_) => v,
            _ => serde_json::json!({}),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    /// One event of each kind.
    fn samples() -> Vec<Event> {
        let s = String::new;
        vec![
            Event::Keygen {
                role: "appliance",
                key_id: s(),
            },
            Event::TrustChange {
                action: TrustAction::Add,
                key_id: None,
                threshold: None,
            },
            Event::ImportAccepted {
                file: s(),
                model: s(),
                version: 1,
                allow_downgrade: false,
                allow_expired: false,
            },
            Event::ImportRefused {
                file: s(),
                class: "io",
                reason: s(),
            },
            Event::ImportRefusalsSummary {
                refused: 101,
                recorded: 100,
            },
            Event::Remove {
                model: s(),
                version: 1,
            },
            Event::ModelLoad {
                source: Source::Ask,
                model: s(),
                version: 1,
                bundle: s(),
                arena_locked: true,
                weights_locked: true,
                load_ms: 1,
            },
            Event::LoadFailed {
                source: Source::Tui,
                model: s(),
                version: 1,
                class: "engine",
                reason: s(),
            },
            Event::ModelUnload {
                model: s(),
                version: 1,
                reason: "switch",
            },
            Event::Query {
                source: Source::Ask,
                model: s(),
                version: 1,
                tokens_prompt: 1,
                tokens_generated: 1,
                ms: 1,
                stop_reason: StopReason::Canceled,
                prompt_sha384: s(),
                answer_sha384: s(),
                raw: false,
                session_marking: None,
                passages: vec![],
            },
            Event::DocumentAttached {
                source: Source::Ask,
                name: s(),
                sha384: s(),
                bytes: 1,
                format: crate::document::Format::Pdf,
                marking: s(),
                marking_source: crate::document::MarkingSource::Document,
                passages: 1,
            },
            Event::DocumentRefused {
                source: Source::Tui,
                name: s(),
                class: "document",
                reason: s(),
            },
            Event::DocumentDetached {
                name: s(),
                sha384: s(),
            },
            Event::QueryFailed {
                source: Source::Tui,
                model: s(),
                version: 1,
                class: "engine",
                reason: s(),
                prompt_sha384: s(),
            },
            Event::TuiStart { model: s() },
            Event::TuiSettings {
                temperature: 0.5,
                top_p: 0.9,
                max_tokens: 1,
                seed: None,
                system_prompt_chars: 0,
            },
            Event::TuiExport {
                path: s(),
                bytes: 1,
            },
            Event::TuiNewConversation,
            Event::TuiLock,
            Event::TuiUnlock,
            Event::TuiUnlockFailed,
            Event::TuiExit,
            Event::AuditRecovered {
                committed_records: 0,
                discarded_bytes: 0,
            },
            Event::ClockAnomaly {
                clock: s(),
                last_record: s(),
            },
        ]
    }

    /// The index of an event's kind: a new variant does not compile until it is listed here,
    /// and the test below then fails until [`samples`] has one.
    fn kind(e: &Event) -> usize {
        match e {
            Event::Keygen { .. } => 0,
            Event::TrustChange { .. } => 1,
            Event::ImportAccepted { .. } => 2,
            Event::ImportRefused { .. } => 3,
            Event::Remove { .. } => 4,
            Event::ModelLoad { .. } => 5,
            Event::LoadFailed { .. } => 6,
            Event::ModelUnload { .. } => 7,
            Event::Query { .. } => 8,
            Event::QueryFailed { .. } => 9,
            Event::TuiStart { .. } => 10,
            Event::TuiSettings { .. } => 11,
            Event::TuiExport { .. } => 12,
            Event::TuiNewConversation => 13,
            Event::TuiLock => 14,
            Event::TuiUnlock => 15,
            Event::TuiUnlockFailed => 16,
            Event::TuiExit => 17,
            Event::AuditRecovered { .. } => 18,
            Event::ImportRefusalsSummary { .. } => 19,
            Event::ClockAnomaly { .. } => 20,
            Event::DocumentAttached { .. } => 21,
            Event::DocumentRefused { .. } => 22,
            Event::DocumentDetached { .. } => 23,
        }
    }
    const KINDS: usize = 24;

    /// docs/audit-events.md: `## \`name\`` headings, each followed by a table whose rows start
    /// with `` | `field` | ``.
    fn documented() -> BTreeMap<String, BTreeSet<String>> {
        let doc = include_str!("../../docs/audit-events.md");
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in doc.lines() {
            if let Some(h) = line.strip_prefix("## ") {
                current = h
                    .strip_prefix('`')
                    .and_then(|h| h.strip_suffix('`'))
                    .map(str::to_owned);
                if let Some(c) = &current {
                    out.entry(c.clone()).or_default();
                }
            } else if let (Some(c), Some(row)) = (&current, line.strip_prefix("| `"))
                && let Some((field, _)) = row.split_once('`')
            {
                out.entry(c.clone()).or_default().insert(field.to_owned());
            }
        }
        out
    }

    #[test]
    fn every_event_kind_has_a_sample() {
        let seen: BTreeSet<usize> = samples().iter().map(kind).collect();
        assert_eq!(seen.len(), KINDS);
        let names: BTreeSet<&str> = samples().iter().map(Event::name).collect();
        assert_eq!(names.len(), KINDS, "names are distinct");
    }

    #[test]
    fn each_event_matches_docs_audit_events_md() {
        let doc = documented();
        let mut ours = BTreeMap::new();
        for e in samples() {
            // The serde tag and `name()` agree.
            let v = serde_json::to_value(&e).unwrap();
            assert_eq!(v["event"], e.name());
            let fields: BTreeSet<String> =
                e.details().as_object().unwrap().keys().cloned().collect();
            ours.insert(e.name().to_owned(), fields);
        }
        for (name, fields) in &ours {
            let documented = doc
                .get(name)
                .unwrap_or_else(|| panic!("event {name} is not in docs/audit-events.md"));
            assert_eq!(
                fields, documented,
                "fields of {name}: the code's, then docs/audit-events.md's"
            );
        }
        let extra: Vec<_> = doc.keys().filter(|k| !ours.contains_key(*k)).collect();
        assert!(extra.is_empty(), "documented but never written: {extra:?}");
    }

    #[test]
    fn unit_events_have_empty_details_and_stop_reasons_are_snake_case() {
        assert_eq!(Event::TuiLock.details(), serde_json::json!({}));
        let q = samples().into_iter().find(|e| e.name() == "query").unwrap();
        assert_eq!(q.details()["stop_reason"], "canceled");
    }
}
