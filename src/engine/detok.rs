//! Streaming detokenization that never splits a UTF-8 character: token bytes accumulate and only
//! the longest complete UTF-8 prefix is emitted; invalid sequences become U+FFFD.

/// Incremental byte-to-text decoder.
#[derive(Debug, Default)]
pub struct Detok {
    pending: Vec<u8>,
}

impl Detok {
    /// Adds a token's bytes; returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(self.pending.get(..valid).unwrap_or_default())
                            .unwrap_or_default(),
                    );
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Flushes what is left (an incomplete final sequence becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multibyte_characters_are_never_split() {
        let text = "é 😀 漢";
        let mut d = Detok::default();
        let mut out = String::new();
        for b in text.as_bytes() {
            let piece = d.push(&[*b]);
            assert!(piece.chars().all(|c| c != '\u{FFFD}'));
            out.push_str(&piece);
        }
        out.push_str(&d.finish());
        assert_eq!(out, text);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut d = Detok::default();
        assert_eq!(d.push(&[b'a', 0xff, b'b']), "a\u{FFFD}b");
        assert_eq!(d.push(&[0xe6, 0xbc]), "");
        assert_eq!(d.finish(), "\u{FFFD}");
    }
}
