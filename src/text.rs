//! Which characters may stand in a text the appliance shows as a fact: a classification
//! marking, a key label, a configured marking. Control characters (C0, DEL, C1) and the
//! invisible format characters that reorder or hide text (bidi embeddings, overrides and
//! isolates, zero-width characters, the line and paragraph separators, tag characters) are
//! refused where such a text is created (seal, keygen, configuration) and where it is decoded.
//!
//! # Security
//! A marking such as `SECRET` could otherwise be displayed as another text: U+202E (right-to-left
//! override) reverses what follows, U+2066–U+2069 isolate it, U+200B hides a difference between
//! two markings that look the same, and an escape sequence can rewrite the terminal.

/// Whether `c` is a control character or an invisible format character (see the module docs).
pub fn is_hidden_or_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                      // soft hyphen
            | '\u{061C}'                    // Arabic letter mark
            | '\u{180E}'                    // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}'       // zero-width space, joiners, LRM, RLM
            | '\u{2028}'..='\u{202E}'       // line/paragraph separators, bidi embeddings, overrides
            | '\u{2060}'..='\u{206F}'       // word joiner, invisible operators, isolates
            | '\u{FEFF}'                    // zero-width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotations
            | '\u{E0000}'..='\u{E007F}' // tag characters
        )
}

/// Whether every character of `s` may be shown as a fact ([`is_hidden_or_control`] refuses none).
pub fn is_plain(s: &str) -> bool {
    !s.chars().any(is_hidden_or_control)
}

#[cfg(test)]
mod tests {
    use super::*;

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
