//! `ROOT/rempart.toml`: the appliance's optional configuration, written by the operator. Every
//! key is optional; a missing file means the defaults. Unknown keys and bad values are refused
//! with the file, the key and the reason, so a typo never silently weakens a setting.
//!
//! ```toml
//! [tui]
//! idle_lock_minutes = 5          # 1..=1440
//! keep_on_lock = false           # wipe the conversation when the screen locks
//! export_dir = "/home/analyst/exports"   # the only place `e` (export) may write
//! # For an appliance key without a passphrase: what unlocks the screen
//! # (`rempart passphrase-hash` prints this line).
//! unlock_passphrase = "$argon2id$v=19$m=65536,t=3,p=1$..."
//! default_marking = "DIFFUSION RESTREINTE"  # for bundles that carry no marking
//! system_prompt = "You are a careful analyst's assistant."
//! temperature = 0.8
//! top_p = 0.95
//! max_tokens = 1024
//!
//! [markings]                     # banner colours: marking text = colour
//! "DIFFUSION RESTREINTE" = "yellow"
//! "SPECIAL FRANCE" = "magenta"
//!
//! [import]                       # model-card fields a bundle must carry to be imported
//! require = ["license", "intended_use"]   # any of crate::aibom::FIELDS
//!
//! [classification]               # the markings documents and sessions carry (issue 21)
//! scale = ["NON PROTÉGÉ", "DIFFUSION RESTREINTE", "SECRET", "TRÈS SECRET"]  # lowest first
//! caveats = ["SPÉCIAL FRANCE"]   # may follow a level: "SECRET SPÉCIAL FRANCE"
//! accreditation = "DIFFUSION RESTREINTE"  # the highest marking this appliance may hold
//! unmarked = "DIFFUSION RESTREINTE"       # the marking of a document that carries none
//!
//! [documents]
//! dir = "/srv/rempart/documents" # the terminal UI's attach picker: the sandbox grants read on it
//! max_mib = 64                   # largest document file read (1..=1024)
//! timeout_seconds = 60           # longest text extraction of one document (1..=600)
//! max_source_tokens = 4096       # most passage tokens per question (default: documents whole
//!                                # when they fit the context, else 2048 tokens of passages)
//! embed_max_passages = 128       # passages embedded per session for semantic ranking (0: off)
//! ```
//!
//! # Security
//! The file is the operator's: the UI only reads it (the sandbox makes ROOT read-only). The
//! operator unlock passphrase is stored as an Argon2id PHC hash whose cost parameters are
//! bounded here, so an edited file cannot make the UI allocate gigabytes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use ratatui::style::Color;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The configuration file's name inside the appliance root.
pub const FILE: &str = "rempart.toml";

/// Largest configuration file read.
const MAX_LEN: u64 = 64 * 1024;

/// `ROOT/rempart.toml`, validated.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The terminal UI.
    #[serde(default)]
    pub tui: TuiConfig,
    /// Banner colours by marking (case-insensitive match on the whole marking).
    #[serde(default)]
    pub markings: BTreeMap<String, String>,
    /// The import policy.
    #[serde(default)]
    pub import: ImportConfig,
    /// The classification scale and the accreditation.
    #[serde(default)]
    pub classification: ClassificationConfig,
    /// Attached documents.
    #[serde(default)]
    pub documents: DocumentsConfig,
    /// The document policy built from `classification` and `documents` by [`Config::parse`].
    #[serde(skip)]
    pub policy: crate::document::Policy,
}

/// `[classification]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassificationConfig {
    /// The levels, lowest first (default: the French scale).
    pub scale: Option<Vec<String>>,
    /// Caveats that may follow a level (default: `SPÉCIAL FRANCE` with the French scale).
    pub caveats: Option<Vec<String>>,
    /// The highest marking the appliance may hold (default: `DIFFUSION RESTREINTE` on the
    /// French scale, else the lowest level).
    pub accreditation: Option<String>,
    /// The marking of a document that carries none (default: as `accreditation`'s default).
    pub unmarked: Option<String>,
}

/// `[documents]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocumentsConfig {
    /// The directory the terminal UI's attach picker lists (and the sandbox lets it read).
    pub dir: Option<PathBuf>,
    /// Largest document read, MiB.
    pub max_mib: Option<u64>,
    /// Longest text extraction of one document, seconds.
    pub timeout_seconds: Option<u64>,
    /// Most tokens of passages given with one question (default: documents whole when they fit
    /// the context besides the question and the answer, else 2048 tokens of the best
    /// passages). Lower answers sooner.
    pub max_source_tokens: Option<usize>,
    /// Most passages embedded per session when an embedding model is installed (default 128;
    /// 0 turns semantic ranking off).
    pub embed_max_passages: Option<usize>,
}

/// `[import]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// Model-card fields (`crate::aibom::FIELDS`) a bundle's AI BOM must carry: a bundle
    /// without one of them is refused at import, and the refusal is audited.
    pub require: Vec<String>,
}

/// `[tui]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TuiConfig {
    /// Minutes without input before the screen locks.
    pub idle_lock_minutes: u64,
    /// Keep the conversation in memory while locked.
    pub keep_on_lock: bool,
    /// The directory exports may be written to (default: the directory the UI started in).
    pub export_dir: Option<PathBuf>,
    /// Argon2id PHC hash of the operator passphrase that unlocks the screen when the
    /// appliance key has no passphrase.
    pub unlock_passphrase: Option<String>,
    /// Marking shown for bundles that carry none.
    pub default_marking: Option<String>,
    /// Default system prompt.
    pub system_prompt: Option<String>,
    /// Default sampling temperature.
    pub temperature: Option<f32>,
    /// Default nucleus threshold.
    pub top_p: Option<f32>,
    /// Default maximum tokens per answer.
    pub max_tokens: Option<usize>,
}

impl Default for TuiConfig {
    fn default() -> Self {
        Self {
            idle_lock_minutes: 5,
            keep_on_lock: false,
            export_dir: None,
            unlock_passphrase: None,
            default_marking: None,
            system_prompt: None,
            temperature: None,
            top_p: None,
            max_tokens: None,
        }
    }
}

/// Argon2 costs accepted in `unlock_passphrase` (memory in KiB, passes, lanes).
const MAX_M_KIB: u32 = 1 << 20;
const MAX_T: u32 = 16;
const MAX_P: u32 = 8;

impl Config {
    /// Reads `ROOT/rempart.toml`; a missing file gives the defaults.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(FILE);
        let bad = |reason: String| Error::Config {
            path: path.clone(),
            reason,
        };
        let file = match crate::secure::fs::open_regular(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                return Err(bad("not a regular file".into()));
            }
            Err(source) => return Err(Error::Io { path, source }),
        };
        let mut text = String::new();
        file.take(MAX_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| bad(format!("not UTF-8 text ({e})")))?;
        if text.len() as u64 > MAX_LEN {
            return Err(bad(format!("larger than {MAX_LEN} bytes")));
        }
        Self::parse(&text).map_err(bad)
    }

    /// Parses and validates the text of a configuration file.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let c: Self = toml::from_str(text).map_err(|e| e.message().to_owned() + &at(text, &e))?;
        let t = &c.tui;
        if !(1..=1440).contains(&t.idle_lock_minutes) {
            return Err("tui.idle_lock_minutes must be between 1 and 1440".into());
        }
        if let Some(h) = &t.unlock_passphrase {
            check_phc(h).map_err(|e| format!("tui.unlock_passphrase: {e}"))?;
        }
        let params = crate::engine::SamplingParams {
            temperature: t.temperature.unwrap_or(0.8),
            top_p: t.top_p.unwrap_or(0.95),
            ..crate::engine::SamplingParams::default()
        };
        params
            .validate()
            .map_err(|e| format!("tui.temperature / tui.top_p: {e}"))?;
        for f in &c.import.require {
            if !crate::aibom::FIELDS.contains(&f.as_str()) {
                return Err(format!(
                    "import.require: unknown model card field {:?} (use {})",
                    f.escape_debug().to_string(),
                    crate::aibom::FIELDS.join(", ")
                ));
            }
        }
        if t.max_tokens == Some(0) {
            return Err("tui.max_tokens must be at least 1".into());
        }
        // A marking is shown on every screen as a fact: the grammar of a bundle's marking.
        let marking_rule = "1 to 128 bytes, no control or invisible format characters";
        if let Some(m) = &t.default_marking
            && !crate::bundle::manifest::valid_marking(m)
        {
            return Err(format!(
                "tui.default_marking: invalid marking ({marking_rule})"
            ));
        }
        for (marking, colour) in &c.markings {
            if !crate::bundle::manifest::valid_marking(marking) {
                return Err(format!(
                    "markings: {:?} is not a valid marking ({marking_rule})",
                    marking.escape_debug().to_string()
                ));
            }
            parse_colour(colour).ok_or_else(|| {
                format!(
                    "markings.{marking:?}: unknown colour {colour:?} (use black, red, green, \
                     yellow, blue, magenta, cyan, white, gray, orange or 0-255)"
                )
            })?;
        }
        let mut c = c;
        c.policy = document_policy(&c.classification, &c.documents)?;
        Ok(c)
    }

    /// The configured banner colour for `marking`, if any.
    pub fn marking_colour(&self, marking: &str) -> Option<Color> {
        self.markings
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(marking.trim()))
            .and_then(|(_, c)| parse_colour(c))
    }
}

fn document_policy(
    c: &ClassificationConfig,
    d: &DocumentsConfig,
) -> std::result::Result<crate::document::Policy, String> {
    use crate::document::{Policy, Scale};
    let default = Policy::default();
    let scale = match (&c.scale, &c.caveats) {
        (None, None) => Ok(default.scale.clone()),
        (Some(s), cav) => Scale::new(s.clone(), cav.clone().unwrap_or_default()),
        (None, Some(cav)) => Scale::new(default.scale.levels().to_vec(), cav.clone()),
    }
    .map_err(|e| format!("classification: {e}"))?;
    let fallback = if c.scale.is_none() {
        default.accreditation.clone()
    } else {
        scale.lowest()
    };
    let level = |key: &str, v: &Option<String>| match v {
        None => Ok(fallback.clone()),
        Some(m) => scale.parse(m).ok_or_else(|| {
            format!(
                "classification.{key}: {:?} is not on the scale ({})",
                m.escape_debug().to_string(),
                scale.levels().join(" < ")
            )
        }),
    };
    let accreditation = level("accreditation", &c.accreditation)?;
    let unmarked = level("unmarked", &c.unmarked)?;
    let max_mib = d.max_mib.unwrap_or(default.max_bytes >> 20);
    if !(1..=1024).contains(&max_mib) {
        return Err("documents.max_mib must be between 1 and 1024".into());
    }
    let secs = d.timeout_seconds.unwrap_or(default.timeout.as_secs());
    if !(1..=600).contains(&secs) {
        return Err("documents.timeout_seconds must be between 1 and 600".into());
    }
    if d.max_source_tokens == Some(0) {
        return Err("documents.max_source_tokens must be at least 1".into());
    }
    if let Some(dir) = &d.dir
        && !dir.is_absolute()
    {
        return Err("documents.dir must be an absolute path".into());
    }
    Ok(Policy {
        scale,
        accreditation,
        unmarked,
        max_bytes: max_mib << 20,
        timeout: std::time::Duration::from_secs(secs),
        limits: default.limits,
        max_source_tokens: d.max_source_tokens,
        embed_max_passages: d.embed_max_passages.unwrap_or(default.embed_max_passages),
    })
}

fn at(text: &str, e: &toml::de::Error) -> String {
    e.span().map_or_else(String::new, |s| {
        let line = text.get(..s.start).map_or(0, |t| t.lines().count().max(1));
        format!(" (line {line})")
    })
}

/// A colour name or a 256-colour index.
fn parse_colour(s: &str) -> Option<Color> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "black" => Color::Black,
        "red" => Color::Red,
        "green" => Color::Green,
        "yellow" => Color::Yellow,
        "blue" => Color::Blue,
        "magenta" => Color::Magenta,
        "cyan" => Color::Cyan,
        "white" => Color::White,
        "gray" | "grey" => Color::Gray,
        "orange" => Color::Indexed(208),
        n => Color::Indexed(n.parse().ok()?),
    })
}

fn check_phc(h: &str) -> std::result::Result<(), String> {
    let phc = PasswordHash::new(h).map_err(|e| format!("not a PHC hash string ({e})"))?;
    if phc.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "algorithm {} (expected argon2id)",
            phc.algorithm.as_str()
        ));
    }
    let get = |k: &str| {
        phc.params
            .get_decimal(k)
            .ok_or_else(|| format!("missing cost parameter {k}"))
    };
    let (m, t, p) = (get("m")?, get("t")?, get("p")?);
    if m > MAX_M_KIB || t > MAX_T || p > MAX_P {
        return Err(format!(
            "costs m={m} t={t} p={p} exceed m={MAX_M_KIB} t={MAX_T} p={MAX_P}"
        ));
    }
    if phc.hash.is_none() || phc.salt.is_none() {
        return Err("no salt or hash".into());
    }
    Ok(())
}

/// Whether `passphrase` matches the operator unlock hash (validated by [`Config::parse`]).
pub fn verify_unlock(hash: &str, passphrase: &str) -> bool {
    Argon2::default()
        .verify_password(passphrase.as_bytes(), hash)
        .is_ok()
}

/// An Argon2id PHC hash of `passphrase` with a random salt (default costs: 19 MiB, t=2, p=1),
/// for `tui.unlock_passphrase`.
pub fn hash_unlock(passphrase: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    crate::crypto::rng::fill(&mut salt).map_err(Error::Rng)?;
    Argon2::default()
        .hash_password_with_salt(passphrase.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing the passphrase: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_a_full_file_parse() {
        let d = Config::parse("").unwrap();
        assert_eq!((d.tui.idle_lock_minutes, d.tui.keep_on_lock), (5, false));
        let h = hash_unlock("operator pass").unwrap();
        let c = Config::parse(&format!(
            "[tui]\nidle_lock_minutes = 2\nkeep_on_lock = true\nexport_dir = \"/tmp/x\"\n\
             unlock_passphrase = \"{h}\"\ntemperature = 0\nmax_tokens = 64\n\
             [markings]\n\"Special France\" = \"magenta\"\n"
        ))
        .unwrap();
        assert_eq!(c.tui.idle_lock_minutes, 2);
        assert!(c.tui.keep_on_lock);
        assert_eq!(c.marking_colour("SPECIAL FRANCE"), Some(Color::Magenta));
        assert_eq!(c.marking_colour("SECRET"), None);
        assert!(verify_unlock(&h, "operator pass"));
        assert!(!verify_unlock(&h, "operator pas"));
        // The document policy: the French scale by default, accredited DIFFUSION RESTREINTE.
        assert_eq!(d.policy.accreditation.to_string(), "DIFFUSION RESTREINTE");
        let c = Config::parse(
            "[classification]\nscale = [\"UNCLASSIFIED\", \"RESTRICTED\", \"CONFIDENTIAL\"]\n\
             accreditation = \"restricted\"\n[documents]\nmax_mib = 2\ntimeout_seconds = 5\n",
        )
        .unwrap();
        assert_eq!(c.policy.accreditation.to_string(), "RESTRICTED");
        assert_eq!(c.policy.unmarked.to_string(), "UNCLASSIFIED");
        assert_eq!(
            (c.policy.max_bytes, c.policy.timeout.as_secs()),
            (2 << 20, 5)
        );
    }

    #[test]
    fn typos_and_bad_values_are_refused_with_the_key() {
        for (text, want) in [
            (
                "[tui]\nidle_lock_minute = 3\n",
                "unknown field `idle_lock_minute`",
            ),
            ("[tui]\nidle_lock_minutes = 0\n", "idle_lock_minutes"),
            ("[tui]\nidle_lock_minutes = \"5\"\n", "invalid type"),
            ("[tui]\ntemperature = -1\n", "temperature"),
            ("[tui]\nmax_tokens = 0\n", "max_tokens"),
            (
                "[classification]\naccreditation = \"CONFIDENTIEL\"\n",
                "classification.accreditation: \"CONFIDENTIEL\" is not on the scale",
            ),
            ("[classification]\nscale = []\n", "at least one level"),
            ("[documents]\nmax_mib = 0\n", "documents.max_mib"),
            ("[documents]\ndir = \"docs\"\n", "absolute path"),
            ("[documents]\ntimeout = 3\n", "unknown field `timeout`"),
            (
                "[markings]\nSECRET = \"mauve\"\n",
                "unknown colour \"mauve\"",
            ),
            ("[tui]\nunlock_passphrase = \"hunter2\"\n", "not a PHC hash"),
            (
                "[tui]\nunlock_passphrase = \"$argon2id$v=19$m=99999999,t=3,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\"\n",
                "exceed",
            ),
            ("[tui\n", "line 1"),
            // Issue 18: a configured marking with an OSC sequence set the UI's title; one with
            // a right-to-left override would show as another marking.
            (
                "[tui]\ndefault_marking = \"SECRET\\u001b]0;owned\\u0007\"\n",
                "tui.default_marking: invalid marking",
            ),
            (
                "[tui]\ndefault_marking = \"\\u202eTERCES\"\n",
                "tui.default_marking: invalid marking",
            ),
            (
                "[markings]\n\"SE\\u200bCRET\" = \"red\"\n",
                "is not a valid marking",
            ),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
