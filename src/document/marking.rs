//! Classification markings on an ordered scale: parsing a marking (a level and its caveats),
//! finding the marking a document carries on its first or last lines, and the session's
//! high-water mark.
//!
//! # Security
//! A marking is compared after folding case and the Latin accents French markings carry, so
//! `TRES SECRET` in an ASCII memo is `TRÈS SECRET`; the text shown is always the scale's own
//! spelling, never the document's, so a document cannot print an arbitrary banner.

use std::collections::BTreeSet;
use std::fmt;

/// The French scale (IGI 1300, 2021): lowest first.
pub const FRENCH_SCALE: [&str; 4] = [
    "NON PROTÉGÉ",
    "DIFFUSION RESTREINTE",
    "SECRET",
    "TRÈS SECRET",
];

/// The caveat the French scale carries by default.
pub const FRENCH_CAVEATS: [&str; 1] = ["SPÉCIAL FRANCE"];

/// How many lines at a document's top and bottom are searched for a marking.
const MARKING_LINES: usize = 5;

/// An ordered scale of markings and the caveats that may follow them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    levels: Vec<String>,
    caveats: Vec<String>,
}

impl Default for Scale {
    fn default() -> Self {
        Self {
            levels: FRENCH_SCALE.iter().map(|s| (*s).to_owned()).collect(),
            caveats: FRENCH_CAVEATS.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// A marking on a [`Scale`]: a level and the caveats carried with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marking {
    /// Index in the scale (0 = lowest).
    pub level: usize,
    /// Caveats in the scale's spelling, sorted.
    pub caveats: BTreeSet<String>,
    text: String,
}

impl fmt::Display for Marking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Upper case without the accents of French (and the other Latin-1) letters, spaces collapsed.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        for c in w.chars() {
            let base = match c {
                'à' | 'â' | 'ä' | 'á' | 'ã' | 'å' | 'À' | 'Â' | 'Ä' | 'Á' | 'Ã' | 'Å' => {
                    'A'
                }
                'é' | 'è' | 'ê' | 'ë' | 'É' | 'È' | 'Ê' | 'Ë' => 'E',
                'î' | 'ï' | 'í' | 'ì' | 'Î' | 'Ï' | 'Í' | 'Ì' => 'I',
                'ô' | 'ö' | 'ó' | 'ò' | 'õ' | 'Ô' | 'Ö' | 'Ó' | 'Ò' | 'Õ' => 'O',
                'û' | 'ü' | 'ú' | 'ù' | 'Û' | 'Ü' | 'Ú' | 'Ù' => 'U',
                'ç' | 'Ç' => 'C',
                'ñ' | 'Ñ' => 'N',
                'ÿ' | 'Ÿ' => 'Y',
                c => c,
            };
            out.extend(base.to_uppercase());
        }
    }
    out
}

impl Scale {
    /// A scale from the configuration: levels lowest first, caveats. Each must be a valid
    /// marking; levels must be distinct once folded, and at least one.
    pub fn new(levels: Vec<String>, caveats: Vec<String>) -> Result<Self, String> {
        if levels.is_empty() {
            return Err("the scale needs at least one level".into());
        }
        let mut seen = BTreeSet::new();
        for m in levels.iter().chain(&caveats) {
            if !crate::bundle::manifest::valid_marking(m) {
                return Err(format!(
                    "{:?} is not a valid marking (1 to 128 bytes, no control or invisible \
                     format characters)",
                    m.escape_debug().to_string()
                ));
            }
            if !seen.insert(fold(m)) {
                return Err(format!("{m:?} is listed twice"));
            }
        }
        Ok(Self { levels, caveats })
    }

    /// The levels, lowest first.
    pub fn levels(&self) -> &[String] {
        &self.levels
    }

    /// The lowest level.
    pub fn lowest(&self) -> Marking {
        self.at(0, BTreeSet::new())
    }

    /// The highest level.
    pub fn highest(&self) -> Marking {
        self.at(self.levels.len().saturating_sub(1), BTreeSet::new())
    }

    fn at(&self, level: usize, caveats: BTreeSet<String>) -> Marking {
        let mut text = self.levels.get(level).cloned().unwrap_or_default();
        for c in &caveats {
            text.push(' ');
            text.push_str(c);
        }
        Marking {
            level,
            caveats,
            text,
        }
    }

    /// Parses a marking: a level of the scale, then caveats of the scale, separated by spaces,
    /// `/` or `,` (case and accents do not matter). `None` if any part is not on the scale.
    pub fn parse(&self, s: &str) -> Option<Marking> {
        let folded = fold(&s.replace(['/', ','], " "));
        // The longest level that starts the text ("TRES SECRET" before "SECRET").
        let (level, rest) = self
            .levels
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let f = fold(l);
                let rest = folded.strip_prefix(&f)?;
                (rest.is_empty() || rest.starts_with(' ')).then_some((i, f.len(), rest))
            })
            .max_by_key(|(_, len, _)| *len)
            .map(|(i, _, rest)| (i, rest.trim()))?;
        let mut caveats = BTreeSet::new();
        let mut rest = rest.to_owned();
        while !rest.is_empty() {
            let (c, n) = self
                .caveats
                .iter()
                .filter_map(|c| {
                    let f = fold(c);
                    let after = rest.strip_prefix(&f)?;
                    (after.is_empty() || after.starts_with(' ')).then(|| (c.clone(), f.len()))
                })
                .max_by_key(|(_, n)| *n)?;
            caveats.insert(c);
            rest = rest.get(n..).unwrap_or("").trim_start().to_owned();
        }
        Some(self.at(level, caveats))
    }

    /// The highest of two markings, with the caveats of both (the high-water mark).
    pub fn join(&self, a: &Marking, b: &Marking) -> Marking {
        let caveats = a.caveats.union(&b.caveats).cloned().collect();
        self.at(a.level.max(b.level), caveats)
    }

    /// Whether `m` may be held under `accreditation`: its level is not above it.
    pub fn allows(&self, accreditation: &Marking, m: &Marking) -> bool {
        m.level <= accreditation.level
    }

    /// The marking a document carries: a line among its first or last five non-empty lines that
    /// is a marking and nothing else (decorations such as `*`, `-`, `=`, `#` or `|` around it
    /// are ignored, and a `CLASSIFICATION:` prefix). The highest one if the top and the bottom
    /// differ.
    pub fn find_in(&self, text: &str) -> Option<Marking> {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let head = lines.iter().take(MARKING_LINES);
        let tail = lines
            .iter()
            .skip(lines.len().saturating_sub(MARKING_LINES).max(MARKING_LINES));
        head.chain(tail)
            .filter_map(|l| self.marking_line(l))
            .reduce(|a, b| self.join(&a, &b))
    }

    /// The marking a line is, if it is one and nothing else (decorations and a
    /// `CLASSIFICATION:` prefix aside).
    fn marking_line(&self, line: &str) -> Option<Marking> {
        let l = line.trim_matches(|c: char| {
            c.is_whitespace() || matches!(c, '*' | '-' | '=' | '#' | '|' | '_' | '[' | ']')
        });
        let f = fold(l);
        let l = [
            "CLASSIFICATION:",
            "CLASSIFICATION :",
            "MARKING:",
            "MENTION:",
        ]
        .iter()
        .find_map(|p| f.strip_prefix(p))
        .map_or(l.to_owned(), |r| r.trim().to_owned());
        (l.len() <= 256).then(|| self.parse(&l)).flatten()
    }

    /// Whether every non-empty line of `text` is a marking line: such a passage (a page's
    /// header or footer) says nothing to the model and is left out of the passages.
    pub fn is_marking_only(&self, text: &str) -> bool {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
        lines.peek().is_some() && lines.all(|l| self.marking_line(l).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markings_parse_with_or_without_accents_and_with_caveats() {
        let s = Scale::default();
        assert_eq!(s.parse("Très Secret").unwrap().to_string(), "TRÈS SECRET");
        assert_eq!(s.parse("TRES SECRET").unwrap().level, 3);
        assert_eq!(s.parse("secret").unwrap().level, 2);
        let sf = s.parse("DIFFUSION RESTREINTE / SPECIAL FRANCE").unwrap();
        assert_eq!(sf.to_string(), "DIFFUSION RESTREINTE SPÉCIAL FRANCE");
        assert_eq!(sf.level, 1);
        assert_eq!(s.parse("SECRETS"), None);
        assert_eq!(s.parse("SECRET NOFORN"), None);
        assert_eq!(s.parse(""), None);
    }

    #[test]
    fn the_high_water_mark_keeps_the_top_level_and_every_caveat() {
        let s = Scale::default();
        let a = s.parse("DIFFUSION RESTREINTE SPÉCIAL FRANCE").unwrap();
        let b = s.parse("SECRET").unwrap();
        let j = s.join(&a, &b);
        assert_eq!(j.to_string(), "SECRET SPÉCIAL FRANCE");
        assert_eq!(s.join(&j, &s.lowest()), j);
        assert!(!s.allows(&a, &b) && s.allows(&b, &a));
    }

    #[test]
    fn a_document_s_marking_is_read_from_its_top_or_bottom_lines_only() {
        let s = Scale::default();
        let body = "line\n".repeat(20);
        let top = format!("\n  ** SECRET **\n{body}");
        assert_eq!(s.find_in(&top).unwrap().to_string(), "SECRET");
        let bottom = format!("{body}Classification: diffusion restreinte\n\n");
        assert_eq!(s.find_in(&bottom).unwrap().level, 1);
        let both = format!("NON PROTÉGÉ\n{body}TRÈS SECRET\n");
        assert_eq!(s.find_in(&both).unwrap().level, 3);
        // A marking in the middle of the text, or inside a sentence, is not the document's.
        let middle = format!("{body}SECRET\n{body}");
        assert_eq!(s.find_in(&middle), None);
        // A header or footer of markings only is not content.
        assert!(s.is_marking_only("  ** SECRET **\n\nDIFFUSION RESTREINTE\n"));
        assert!(!s.is_marking_only("SECRET\nThe convoy leaves.") && !s.is_marking_only(" \n"));
        assert_eq!(s.find_in("This is not SECRET at all."), None);
    }

    #[test]
    fn a_configured_scale_is_checked() {
        assert!(Scale::new(vec![], vec![]).is_err());
        assert!(Scale::new(vec!["A".into(), "a".into()], vec![]).is_err());
        assert!(Scale::new(vec!["A\u{202e}".into()], vec![]).is_err());
        let s = Scale::new(
            vec!["UNCLASSIFIED".into(), "RESTRICTED".into()],
            vec!["EYES ONLY".into()],
        )
        .unwrap();
        assert_eq!(s.highest().to_string(), "RESTRICTED");
        assert_eq!(s.parse("restricted eyes only").unwrap().caveats.len(), 1);
    }
}
