//! Text out of a document's bytes: plain text and Markdown as they are, PDF's text layer page by
//! page (lopdf), OpenDocument text and .docx paragraph by paragraph from their XML (zip and
//! quick-xml). Headings become Markdown `#` lines so that passages can be split by section the
//! same way for every format.
//!
//! # Security
//! Every input here is untrusted. Each step is bounded: the container entry read (a zip bomb
//! stops at [`Limits::max_text`]), each PDF stream's inflated size, the XML depth and the text
//! produced. Errors say what is wrong in words; nothing here panics on any input (the
//! `document` fuzz target).

use std::borrow::Cow;
use std::io::Read;

use quick_xml::events::Event as Xml;
use zeroize::Zeroizing;

/// A document's format, from its file name's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `.txt` (or no extension): UTF-8 text.
    Text,
    /// `.md`: UTF-8 Markdown.
    Markdown,
    /// `.pdf`: the text layer.
    Pdf,
    /// `.odt`: OpenDocument text.
    Odt,
    /// `.docx`: Office Open XML text.
    Docx,
}

impl Format {
    /// The format a file name announces, if supported.
    pub fn of(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        Some(match ext.as_deref() {
            None | Some("txt" | "text") => Self::Text,
            Some("md" | "markdown") => Self::Markdown,
            Some("pdf") => Self::Pdf,
            Some("odt") => Self::Odt,
            Some("docx") => Self::Docx,
            Some(_) => return None,
        })
    }

    /// The extensions accepted, for messages.
    pub const SUPPORTED: &'static str = ".txt, .md, .pdf, .odt, .docx";
}

/// One page of text (PDF), or the whole text (other formats: `number` is `None`).
pub struct Page {
    /// 1-based page number, for PDF.
    pub number: Option<u32>,
    /// The text.
    pub text: Zeroizing<String>,
}

/// Bounds on one document's extraction.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest text extracted (and largest XML entry inflated from a container).
    pub max_text: usize,
    /// Most PDF pages read.
    pub max_pages: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_text: 32 << 20,
            max_pages: 5000,
        }
    }
}

/// Extracts the text of `bytes` in `format`.
pub fn extract(format: Format, bytes: &[u8], limits: Limits) -> Result<Vec<Page>, String> {
    let whole = |text: Zeroizing<String>| vec![Page { number: None, text }];
    let pages = match format {
        Format::Text | Format::Markdown => whole(plain(bytes)?),
        Format::Odt => whole(odf_or_ooxml(bytes, "content.xml", &ODT, limits)?),
        Format::Docx => whole(odf_or_ooxml(bytes, "word/document.xml", &DOCX, limits)?),
        Format::Pdf => pdf(bytes, limits)?,
    };
    let total: usize = pages.iter().map(|p| p.text.len()).sum();
    if total > limits.max_text {
        return Err(format!(
            "its text is longer than {} MiB",
            limits.max_text >> 20
        ));
    }
    if pages.iter().all(|p| p.text.trim().is_empty()) {
        return Err(match format {
            Format::Pdf => "it has no text layer (a scanned PDF needs OCR first)".into(),
            _ => "it holds no text".into(),
        });
    }
    Ok(pages)
}

/// UTF-8 text, a BOM dropped; binary data (a NUL byte) refused.
fn plain(bytes: &[u8]) -> Result<Zeroizing<String>, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.contains(&0) {
        return Err("it is binary data, not text (a NUL byte)".into());
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(Zeroizing::new(s.to_owned())),
        Err(e) => Err(format!(
            "it is not UTF-8 text (invalid byte at offset {}); convert it to UTF-8 first",
            e.valid_up_to()
        )),
    }
}

/// The element names of one XML dialect.
struct Dialect {
    /// Elements that are paragraphs.
    paragraph: &'static [&'static str],
    /// Elements that are headings (ODF's `text:h`), or `None` when a paragraph's style says so.
    heading: &'static [&'static str],
    /// The element whose `val` names the paragraph's style (docx `w:pStyle`).
    style: Option<&'static str>,
    /// Text-bearing elements (their character data is kept).
    text: &'static [&'static str],
    /// Elements written as a tab.
    tab: &'static [&'static str],
    /// Elements written as a line break.
    line_break: &'static [&'static str],
    /// Elements whose content is skipped (annotations, deleted text).
    skip: &'static [&'static str],
}

const ODT: Dialect = Dialect {
    paragraph: &["p"],
    heading: &["h"],
    style: None,
    text: &["p", "h", "span", "a", "s"],
    tab: &["tab"],
    line_break: &["line-break"],
    skip: &["annotation", "note-citation", "tracked-changes"],
};

const DOCX: Dialect = Dialect {
    paragraph: &["p"],
    heading: &[],
    style: Some("pStyle"),
    text: &["t"],
    tab: &["tab"],
    line_break: &["br", "cr"],
    skip: &["del", "instrText", "delText"],
};

/// Deepest XML nesting accepted.
const MAX_DEPTH: usize = 256;

/// The text of the XML entry `entry` of a zip container.
fn odf_or_ooxml(
    bytes: &[u8],
    entry: &str,
    d: &Dialect,
    limits: Limits,
) -> Result<Zeroizing<String>, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("it is not a valid zip container ({e})"))?;
    let mut file = zip
        .by_name(entry)
        .map_err(|e| format!("it has no {entry} ({e})"))?;
    let mut xml = Zeroizing::new(Vec::new());
    (&mut file)
        .take(limits.max_text as u64 + 1)
        .read_to_end(&mut xml)
        .map_err(|e| format!("{entry} cannot be inflated ({e})"))?;
    if xml.len() > limits.max_text {
        return Err(format!(
            "{entry} inflates to more than {} MiB",
            limits.max_text >> 20
        ));
    }
    let xml = std::str::from_utf8(&xml).map_err(|_| format!("{entry} is not UTF-8 XML"))?;
    xml_text(xml, d).map_err(|e| format!("{entry} is not well-formed XML ({e})"))
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// The paragraphs of an ODF or OOXML body, one per line, headings as `# ` lines.
fn xml_text(xml: &str, d: &Dialect) -> Result<Zeroizing<String>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = Zeroizing::new(String::new());
    let mut para = Zeroizing::new(String::new());
    let mut heading = false;
    // Open elements, and how many of them are skipped or text-bearing.
    let mut stack: Vec<String> = Vec::new();
    let (mut skipping, mut in_text) = (0usize, 0usize);
    // A paragraph's lines (split at its line breaks), each with its runs of spaces and tabs
    // (layout, not text) folded to one space.
    let end_para = |out: &mut String, para: &mut Zeroizing<String>, heading: bool| {
        let mut first = true;
        for line in para.split('\n') {
            let mut words = line.split_whitespace().peekable();
            if words.peek().is_none() {
                continue;
            }
            if !first {
                out.push('\n');
            } else if heading {
                out.push_str("# ");
            }
            first = false;
            for (i, w) in words.enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(w);
            }
        }
        out.push('\n');
        para.clear();
    };
    loop {
        let ev = reader.read_event().map_err(|e| e.to_string())?;
        match ev {
            Xml::Start(e) => {
                let name = local(e.name().as_ref()).to_owned();
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} elements"));
                }
                if d.skip.contains(&name.as_str()) {
                    skipping += 1;
                }
                if d.text.contains(&name.as_str()) {
                    in_text += 1;
                }
                if skipping == 0
                    && (d.paragraph.contains(&name.as_str()) || d.heading.contains(&name.as_str()))
                {
                    heading = d.heading.contains(&name.as_str());
                }
                stack.push(name);
            }
            Xml::Empty(e) => {
                let qname = e.name();
                let name = local(qname.as_ref());
                if skipping > 0 {
                    continue;
                }
                if d.tab.contains(&name) {
                    para.push('\t');
                } else if d.line_break.contains(&name) {
                    para.push('\n');
                } else if name == "s" {
                    // ODF's run of spaces: text:c="N" (bounded).
                    let n = e
                        .try_get_attribute("text:c")
                        .ok()
                        .flatten()
                        .and_then(|a| a.value.parse::<usize>().ok())
                        .unwrap_or(1);
                    para.extend(std::iter::repeat_n(' ', n.clamp(1, 64)));
                } else if Some(name) == d.style
                    && let Some(v) = e.try_get_attribute("w:val").ok().flatten()
                {
                    let v = v.value.to_ascii_lowercase();
                    heading = v.starts_with("heading") || v.starts_with("titre") || v == "title";
                } else if d.paragraph.contains(&name) {
                    end_para(&mut out, &mut para, false);
                }
            }
            Xml::End(e) => {
                let name = local(e.name().as_ref()).to_owned();
                if stack.pop().as_deref() != Some(name.as_str()) {
                    return Err(format!("</{name}> closes another element"));
                }
                if d.skip.contains(&name.as_str()) {
                    skipping = skipping.saturating_sub(1);
                }
                if d.text.contains(&name.as_str()) {
                    in_text = in_text.saturating_sub(1);
                }
                if skipping == 0
                    && (d.paragraph.contains(&name.as_str()) || d.heading.contains(&name.as_str()))
                {
                    end_para(&mut out, &mut para, heading);
                    heading = false;
                }
            }
            // A newline in the XML's text is layout, as a space; breaks are elements.
            Xml::Text(t) if skipping == 0 && in_text > 0 => {
                para.extend(
                    t.xml10_content()
                        .chars()
                        .map(|c| if c == '\n' { ' ' } else { c }),
                );
            }
            Xml::CData(t) if skipping == 0 && in_text > 0 => {
                para.extend(
                    t.chars()
                        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c }),
                );
            }
            Xml::GeneralRef(r) if skipping == 0 && in_text > 0 => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    Ok(None) => match r.as_ref() {
                        "amp" => Some('&'),
                        "lt" => Some('<'),
                        "gt" => Some('>'),
                        "quot" => Some('"'),
                        "apos" => Some('\''),
                        // Entities a DTD would define are not expanded (no DTD is read).
                        _ => None,
                    },
                    Err(e) => return Err(e.to_string()),
                };
                para.extend(c);
            }
            Xml::Eof => break,
            _ => {}
        }
        if out.len() + para.len() > 64 << 20 {
            return Err("the text is longer than 64 MiB".into());
        }
    }
    if !stack.is_empty() {
        return Err(format!("<{}> is never closed", stack.join("><")));
    }
    Ok(out)
}

/// The text layer of a PDF, page by page.
fn pdf(bytes: &[u8], limits: Limits) -> Result<Vec<Page>, String> {
    if !bytes.starts_with(b"%PDF-") && !bytes.get(..1024).is_some_and(|h| contains(h, b"%PDF-")) {
        return Err("it is not a PDF (no %PDF- header)".into());
    }
    let options = lopdf::LoadOptions {
        max_decompressed_size: Some(limits.max_text),
        ..Default::default()
    };
    let doc = lopdf::Document::load_mem_with_options(bytes, options)
        .map_err(|e| format!("it is not a readable PDF ({e})"))?;
    if doc.is_encrypted() {
        return Err("it is an encrypted PDF: remove its password first".into());
    }
    let pages = doc.get_pages();
    if pages.len() as u64 > u64::from(limits.max_pages) {
        return Err(format!(
            "it has {} pages, more than the {} read",
            pages.len(),
            limits.max_pages
        ));
    }
    let mut out = Vec::with_capacity(pages.len());
    let mut total = 0usize;
    for &n in pages.keys() {
        let text = doc
            .extract_text_with_limit(&[n], limits.max_text)
            .map_err(|e| format!("page {n} cannot be read ({e})"))?;
        total += text.len();
        if total > limits.max_text {
            return Err(format!(
                "its text is longer than {} MiB",
                limits.max_text >> 20
            ));
        }
        out.push(Page {
            number: Some(n),
            text: Zeroizing::new(tidy_pdf(&text).into_owned()),
        });
    }
    Ok(out)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// lopdf ends every text run with a newline: runs of blank lines are folded to one.
fn tidy_pdf(text: &str) -> Cow<'_, str> {
    if !text.contains("\n\n\n") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_with(entry: &str, body: &[u8]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        w.start_file(entry, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, body).unwrap();
        w.finish().unwrap().into_inner()
    }

    fn text_of(f: Format, bytes: &[u8]) -> Result<String, String> {
        extract(f, bytes, Limits::default()).map(|p| p.iter().map(|p| p.text.as_str()).collect())
    }

    #[test]
    fn formats_come_from_the_extension() {
        assert_eq!(Format::of("a/Rapport.PDF"), Some(Format::Pdf));
        assert_eq!(Format::of("notes"), Some(Format::Text));
        assert_eq!(Format::of("x.md"), Some(Format::Markdown));
        assert_eq!(Format::of("x.exe"), None);
    }

    #[test]
    fn odt_paragraphs_headings_and_spaces_come_out_as_lines() {
        let xml = br#"<?xml version="1.0"?><office:document-content xmlns:office="o" xmlns:text="t"><office:body><office:text><text:h text:outline-level="1">Objet</text:h><text:p>Un<text:s text:c="3"/>deux &amp; <text:span>trois</text:span><office:annotation><text:p>note cachee</text:p></office:annotation></text:p><text:p/><text:p>fin&#233;</text:p></office:text></office:body></office:document-content>"#;
        let t = text_of(Format::Odt, &zip_with("content.xml", xml)).unwrap();
        assert_eq!(t, "# Objet\nUn deux & trois\n\nfiné\n");
    }

    #[test]
    fn docx_headings_come_from_the_paragraph_style() {
        let xml = br#"<w:document xmlns:w="w"><w:body><w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Summary</w:t></w:r></w:p><w:p><w:r><w:t xml:space="preserve">Alpha </w:t></w:r><w:r><w:tab/><w:t>beta</w:t></w:r><w:del><w:r><w:delText>gone</w:delText></w:r></w:del></w:p></w:body></w:document>"#;
        let t = text_of(Format::Docx, &zip_with("word/document.xml", xml)).unwrap();
        assert_eq!(t, "# Summary\nAlpha beta\n");
    }

    #[test]
    fn malformed_and_hostile_containers_get_clear_errors() {
        let cases: Vec<(Format, Vec<u8>, &str)> = vec![
            (
                Format::Odt,
                b"PK\x03\x04 not really".to_vec(),
                "not a valid zip",
            ),
            (
                Format::Docx,
                zip_with("other.xml", b"<a/>"),
                "has no word/document.xml",
            ),
            (
                Format::Odt,
                zip_with("content.xml", b"<a><b></a>"),
                "not well-formed",
            ),
            (Format::Odt, zip_with("content.xml", b"<a>"), "never closed"),
            (
                Format::Odt,
                zip_with("content.xml", "<a>".repeat(300).as_bytes()),
                "nested deeper",
            ),
            (
                Format::Odt,
                zip_with("content.xml", b"\xff\xfe<a/>"),
                "not UTF-8",
            ),
            (
                Format::Odt,
                zip_with("content.xml", b"<a/>"),
                "holds no text",
            ),
            (Format::Text, b"abc\0def".to_vec(), "binary data"),
            (
                Format::Text,
                b"caf\xe9".to_vec(),
                "not UTF-8 text (invalid byte at offset 3)",
            ),
            (Format::Pdf, b"hello".to_vec(), "not a PDF"),
            (
                Format::Pdf,
                b"%PDF-1.7\n1 0 obj <<".to_vec(),
                "not a readable PDF",
            ),
        ];
        for (f, bytes, want) in cases {
            let e = text_of(f, &bytes).unwrap_err();
            assert!(e.contains(want), "{f:?}: {e}");
        }
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let body = vec![b' '; 4 << 20];
        let bomb = zip_with("content.xml", &body);
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let limits = Limits {
            max_text: 1 << 20,
            max_pages: 10,
        };
        let e = extract(Format::Odt, &bomb, limits).err().unwrap();
        assert!(e.contains("inflates to more than 1 MiB"), "{e}");
    }
}
