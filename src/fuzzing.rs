//! Entry points for cargo-fuzz (fuzz/), compiled only with `--cfg fuzzing`. Signature checks are
//! bypassed by calling the parsers directly, so the fuzzer reaches the manifest and header code.

use crate::bundle::{self, ArtifactHeader, Envelope, Manifest};

/// Parses a whole bundle front and, unauthenticated, its manifest and layout.
pub fn envelope(data: &[u8]) {
    if let Ok(env) = Envelope::parse(data) {
        if let Ok(m) = env.manifest_unverified() {
            if let Ok(offsets) = env.layout(&m) {
                for (a, off) in m.artifacts.iter().zip(offsets) {
                    let _ = bundle::read_header_unverified(data, off, a);
                }
            }
        }
    }
}

/// Decodes a manifest and checks the canonical round trip.
pub fn manifest(data: &[u8]) {
    if let Ok(m) = Manifest::decode(data) {
        assert_eq!(m.encode(), data, "manifest encoding is not canonical");
    }
}

/// Decodes an artifact header and checks the canonical round trip.
pub fn header(data: &[u8]) {
    if let Ok(h) = ArtifactHeader::decode(data) {
        assert_eq!(h.encode(), data, "header encoding is not canonical");
    }
}

/// Decodes a key file as each kind (no passphrase available, so a protected file stops
/// before Argon2id), then the public key bytes as the trust store and recipients do.
pub fn key_file(data: &[u8]) {
    use crate::keys::{Kind, PassphraseSource};
    let path = std::path::Path::new("fuzz.key");
    for kind in [
        Kind::ApplianceSecret,
        Kind::AppliancePublic,
        Kind::ApplianceKek,
        Kind::PublisherSecret,
        Kind::PublisherPublic,
    ] {
        if let Ok(f) =
            crate::keys::decode_key_file(data, 0o600, path, kind, &PassphraseSource::None)
        {
            let _ = crate::keys::PublisherPublic::from_bytes(&f.public);
            let _ = crate::keys::appliance_key_id(&f.public);
        }
    }
}

/// Verifies audit log bytes as records continuing an empty chain, and parses them as a head.
pub fn audit_log(data: &[u8]) {
    crate::audit::fuzz(data);
}

/// The GGUF metadata path a decrypted model takes before any weight is used: the header and
/// metadata reader, `facts` (what `seal` records), and the tokenizer and chat template built
/// from the metadata.
pub fn gguf(data: &[u8]) {
    let _ = crate::engine::facts(data);
    let _ = crate::engine::load_tokenizer(data);
}

/// The output sanitiser on arbitrary bytes (decoded lossily, as a terminal would see them): its
/// result never holds ESC, a C1 control or a format character, and JSON output never holds one
/// unescaped.
#[allow(
    clippy::panic,
    reason = "a fuzz target reports a broken property by panicking"
)]
pub fn sanitize(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let out = crate::text::sanitize(&s);
    if let Some(c) = out.chars().find(|c| crate::text::needs_escape(*c)) {
        panic!("sanitize left {c:?} in {out:?}");
    }
    let json = crate::output::json_string(&serde_json::Value::String(s.to_string()));
    if let Some(c) = json.chars().find(|c| crate::text::needs_escape(*c)) {
        panic!("JSON output left {c:?} in {json:?}");
    }
    match serde_json::from_str::<serde_json::Value>(&json) {
        Ok(serde_json::Value::String(back)) if back == s => {}
        other => panic!("JSON output does not round-trip: {other:?}"),
    }
}

/// A document's text extraction and passage splitting (issue 21), for each format, on arbitrary
/// bytes: the first byte picks the format, the rest is the file. Also wrapped in a zip as the
/// ODT and DOCX entry, so the XML reader gets arbitrary input behind a valid container.
pub fn document(data: &[u8]) {
    use crate::document::{Format, Limits, extract, passage};
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let formats = [
        Format::Text,
        Format::Markdown,
        Format::Pdf,
        Format::Odt,
        Format::Docx,
    ];
    let format = formats[usize::from(pick) % formats.len()];
    let limits = Limits {
        max_text: 1 << 20,
        max_pages: 64,
    };
    if let Ok(pages) = extract::extract(format, body, limits) {
        let _ = passage::split(&pages);
        let _ = crate::document::Scale::default().find_in(&pages[0].text);
    }
    if matches!(format, Format::Odt | Format::Docx) {
        let entry = if format == Format::Odt {
            "content.xml"
        } else {
            "word/document.xml"
        };
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        if w.start_file(entry, opts).is_ok()
            && std::io::Write::write_all(&mut w, body).is_ok()
            && let Ok(c) = w.finish()
            && let Ok(pages) = extract::extract(format, &c.into_inner(), limits)
        {
            let _ = passage::split(&pages);
        }
    }
}
