//! Passages: a document's text split by its structure (pages, headings, paragraphs) into pieces
//! of about [`TARGET_CHARS`], each with the reference an analyst checks it against: the
//! document, the page or section, the line range.

use zeroize::Zeroizing;

use super::extract::Page;

/// A passage's usual size: about 300 tokens of English or French.
pub const TARGET_CHARS: usize = 1200;

/// Longest section title kept in a reference.
const MAX_TITLE: usize = 60;

/// One passage of one document.
pub struct Passage {
    /// The page (PDF).
    pub page: Option<u32>,
    /// The section: the nearest heading above it, if any.
    pub section: Option<String>,
    /// First and last line (1-based; within the page for PDF, the document otherwise).
    pub lines: (u32, u32),
    /// The text.
    pub text: Zeroizing<String>,
}

impl std::fmt::Debug for Passage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passage")
            .field("page", &self.page)
            .field("lines", &self.lines)
            .field(
                "text",
                &format_args!("<{} bytes redacted>", self.text.len()),
            )
            .finish_non_exhaustive()
    }
}

impl Passage {
    /// Where it is, without the document's name: `p. 3, l. 10-24` or `§ Objet, l. 10-24`.
    pub fn locator(&self) -> String {
        let (a, b) = self.lines;
        let lines = if a == b {
            format!("l. {a}")
        } else {
            format!("l. {a}-{b}")
        };
        match (&self.page, &self.section) {
            (Some(p), _) => format!("p. {p}, {lines}"),
            (None, Some(s)) => format!("§ {s}, {lines}"),
            (None, None) => lines,
        }
    }
}

/// A Markdown heading's title (`# Title` to `###### Title`).
fn heading(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let hashes = t.len() - t.trim_start_matches('#').len();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = t.get(hashes..)?;
    rest.starts_with(' ').then(|| rest.trim())
}

fn short(title: &str) -> String {
    match title.char_indices().nth(MAX_TITLE) {
        Some((i, _)) => format!("{}…", title.get(..i).unwrap_or(title)),
        None => title.to_owned(),
    }
}

/// Splits pages into passages: a new passage at each page, each heading, and whenever the next
/// paragraph would take it past [`TARGET_CHARS`]; a paragraph longer than that is cut at line
/// ends, and a line longer than twice that at a character boundary.
pub fn split(pages: &[Page]) -> Vec<Passage> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    for page in pages {
        let mut cur = Builder::default();
        for (i, line) in page.text.lines().enumerate() {
            let n = u32::try_from(i + 1).unwrap_or(u32::MAX);
            if let Some(h) = heading(line) {
                cur.flush(&mut out, page.number, &section);
                section = (!h.is_empty()).then(|| short(h));
            }
            if line.trim().is_empty() {
                // A paragraph ends: flush if the passage is already well filled.
                if cur.text.len() >= TARGET_CHARS / 2 {
                    cur.flush(&mut out, page.number, &section);
                }
                continue;
            }
            if cur.text.len() + line.len() > TARGET_CHARS && !cur.text.is_empty() {
                cur.flush(&mut out, page.number, &section);
            }
            let mut rest = line;
            while rest.len() > 2 * TARGET_CHARS {
                let mut cut = 2 * TARGET_CHARS;
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                let (a, b) = rest.split_at(cut);
                cur.push(a, n);
                cur.flush(&mut out, page.number, &section);
                rest = b;
            }
            cur.push(rest, n);
        }
        cur.flush(&mut out, page.number, &section);
    }
    out
}

#[derive(Default)]
struct Builder {
    text: Zeroizing<String>,
    first: u32,
    last: u32,
}

impl Builder {
    fn push(&mut self, line: &str, n: u32) {
        if self.text.is_empty() {
            self.first = n;
        } else {
            self.text.push('\n');
        }
        self.text.push_str(line.trim_end());
        self.last = n;
    }

    fn flush(&mut self, out: &mut Vec<Passage>, page: Option<u32>, section: &Option<String>) {
        if self.text.trim().is_empty() {
            self.text.clear();
            return;
        }
        out.push(Passage {
            page,
            section: section.clone(),
            lines: (self.first, self.last),
            text: std::mem::take(&mut self.text),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(n: Option<u32>, t: &str) -> Page {
        Page {
            number: n,
            text: Zeroizing::new(t.to_owned()),
        }
    }

    #[test]
    fn passages_follow_headings_and_carry_line_ranges() {
        let text = "Intro line\n\n# Objet\nfirst\nsecond\n\n## Détails\nthird\n";
        let p = split(&[page(None, text)]);
        let got: Vec<(String, &str)> = p.iter().map(|p| (p.locator(), p.text.as_str())).collect();
        assert_eq!(
            got,
            [
                ("l. 1".to_owned(), "Intro line"),
                ("§ Objet, l. 3-5".to_owned(), "# Objet\nfirst\nsecond"),
                ("§ Détails, l. 7-8".to_owned(), "## Détails\nthird"),
            ]
        );
    }

    #[test]
    fn pages_start_passages_and_long_text_is_cut_near_the_target() {
        let para = "word ".repeat(100); // 500 bytes a line
        let text = format!("{para}\n{para}\n{para}\n\n{para}\n");
        let p = split(&[page(Some(1), &text), page(Some(2), "last page")]);
        assert!(p.iter().all(|p| p.text.len() <= TARGET_CHARS), "{p:?}");
        assert_eq!(p.last().unwrap().locator(), "p. 2, l. 1");
        assert_eq!(p[0].lines, (1, 2));
        // Lines 1-2, then 3-5 (the blank line 4 inside), then page 2.
        assert_eq!(p[1].lines, (3, 5));
        assert_eq!(p.len(), 3);
        // One enormous line is cut at character boundaries, nothing lost.
        let long = "é".repeat(5 * TARGET_CHARS);
        let p = split(&[page(None, &long)]);
        assert!(p.len() >= 3);
        assert_eq!(p.iter().map(|p| p.text.len()).sum::<usize>(), long.len());
    }
}
