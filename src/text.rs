//! Text from outside the appliance on its way to a person.
//!
//! Two rules, one character class ([`is_hidden_or_control`]: control characters C0, DEL and
//! C1, and the invisible format characters that reorder or hide text: bidi embeddings,
//! overrides and isolates, zero-width characters, the line and paragraph separators, tag
//! characters and the other Unicode format characters):
//! - **Facts refuse them.** A classification marking, a key label, a configured marking: such
//!   a text is refused where it is created (seal, keygen, configuration) and where it is
//!   decoded ([`is_plain`]).
//! - **Everything else shows them.** Model output, file names, bundle and manifest fields,
//!   GGUF metadata, template and parser errors, configuration values: every text printed by
//!   [`crate::output`] or drawn by the terminal UI passes through [`sanitize`], which writes
//!   each such character as a visible escape (`\x1b`, `\x9b`, `\u{202e}`). Newline and tab
//!   pass.
//!
//! # Security
//! A marking such as `SECRET` could otherwise be displayed as another text: U+202E (right-to-left
//! override) reverses what follows, U+2066–U+2069 isolate it, U+200B hides a difference between
//! two markings that look the same, and an escape sequence can rewrite the terminal: set its
//! title, write the clipboard (OSC 52), move the cursor over a banner or print a fake status
//! line in colour. After [`sanitize`] no ESC, no C1 control and no format character is left,
//! so no escape sequence can start (`text::tests::sanitized_text_holds_no_escape_c1_or_format_character`,
//! and the `sanitize` fuzz target).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is a control character or an invisible format character (see the module docs).
pub fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                      // soft hyphen
            | '\u{0600}'..='\u{0605}'       // Arabic number signs (format)
            | '\u{061C}'                    // Arabic letter mark
            | '\u{06DD}'                    // Arabic end of ayah (format)
            | '\u{070F}'                    // Syriac abbreviation mark (format)
            | '\u{0890}'..='\u{0891}'       // Arabic pound and piastre marks (format)
            | '\u{08E2}'                    // Arabic disputed end of ayah (format)
            | '\u{115F}' | '\u{1160}'        // Hangul fillers (invisible)
            | '\u{17B4}' | '\u{17B5}'        // Khmer inherent vowels (invisible)
            | '\u{180E}'                    // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}'       // zero-width space, joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}'       // line/paragraph separators, bidi embeddings, overrides
            | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, isolates
            | '\u{3164}'                    // Hangul filler (invisible)
            | '\u{FE00}'..='\u{FE0F}'       // variation selectors (invisible)
            | '\u{FEFF}'                    // zero-width no-break space (BOM)
            | '\u{FFA0}'                    // halfwidth Hangul filler (invisible)
            | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotations
            | '\u{110BD}' | '\u{110CD}'      // Kaithi number signs (format)
            | '\u{13430}'..='\u{1343F}'     // Egyptian hieroglyph format controls
            | '\u{1BCA0}'..='\u{1BCA3}'     // shorthand format controls
            | '\u{1D173}'..='\u{1D17A}'     // musical symbol format controls
            | '\u{E0100}'..='\u{E01EF}'     // variation selectors supplement
            | '\u{E0000}'..='\u{E007F}' // tag characters
        )
}

/// Whether every character of `s` may be shown as a fact ([`is_hidden_or_control`] refuses none).
pub fn is_plain(s: &str) -> bool {
    !s.chars().any(is_hidden_or_control)
}

/// Whether `c` is written as a visible escape on a terminal: [`is_hidden_or_control`], except
/// newline and tab.
pub fn needs_escape(c: char) -> bool {
    c != '\n' && c != '\t' && is_hidden_or_control(c)
}

/// `s` as it may reach a terminal: every character of [`needs_escape`] written as a visible
/// escape, `\xHH` below U+0100 and `\u{H…}` above; the rest unchanged (borrowed when nothing
/// needed escaping). Stateless, so a stream may be sanitised piece by piece.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if needs_escape(c) {
            let n = u32::from(c);
            // Writing into a String cannot fail.
            let _ = if n < 0x100 {
                write!(out, "\\x{n:02x}")
            } else {
                write!(out, "\\u{{{n:x}}}")
            };
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_shown_not_obeyed() {
        let cases = [
            (
                "plain text, accents: é à ç, 機密, emoji 🛡",
                "plain text, accents: é à ç, 機密, emoji 🛡",
            ),
            ("two\nlines\tand a tab", "two\nlines\tand a tab"),
            ("\u{1b}]0;pwned\u{7}", "\\x1b]0;pwned\\x07"),
            ("\u{1b}]52;c;cHduZWQ=\u{7}", "\\x1b]52;c;cHduZWQ=\\x07"),
            ("\u{1b}[2J\u{1b}[H", "\\x1b[2J\\x1b[H"),
            ("\u{9b}31m", "\\x9b31m"),
            ("a\rb\u{7f}", "a\\x0db\\x7f"),
            ("\u{202e}TERCES", "\\u{202e}TERCES"),
            ("SE\u{200b}CRET\u{2028}", "SE\\u{200b}CRET\\u{2028}"),
            ("tag\u{e0041}", "tag\\u{e0041}"),
        ];
        for (input, shown) in cases {
            assert_eq!(sanitize(input), shown, "{input:?}");
        }
        assert!(matches!(sanitize("no change"), Cow::Borrowed(_)));
    }

    proptest::proptest! {
        /// The property the fuzz target checks too, on arbitrary strings.
        #[test]
        fn sanitized_text_holds_no_escape_c1_or_format_character(s in ".*") {
            let out = sanitize(&s);
            proptest::prop_assert!(!out.chars().any(needs_escape), "{:?}", out);
            // Nothing is lost: a text with nothing to escape is unchanged.
            if !s.chars().any(needs_escape) {
                proptest::prop_assert_eq!(out.as_ref(), s.as_str());
            }
        }
    }

    #[test]
    fn bidi_zero_width_separators_and_controls_are_refused() {
        for s in [
            "\u{202E}TERCES",
            "SE\u{200B}CRET",
            "\u{2066}SECRET\u{2069}",
            "SECRET\u{2028}",
            "SECRET\u{1b}]0;x\u{7}",
            "SECRET\u{9b}",
            "\u{FEFF}SECRET",
            "SECRET\u{E0041}",
        ] {
            assert!(!is_plain(s), "{s:?}");
        }
        for s in [
            "SECRET",
            "DIFFUSION RESTREINTE",
            "Très Secret Défense",
            "機密",
            "نشر محدود",
        ] {
            assert!(is_plain(s), "{s:?}");
        }
    }
}
