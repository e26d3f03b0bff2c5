//! The analyst's documents (issue 21): read a file under size and time bounds, extract its text
//! ([`extract`]), find or take its classification ([`marking`]), split it into passages with
//! references ([`passage`]), rank passages for a question (BM25, [`Library::select`]) and lay the
//! chosen ones out as numbered sources for the model to cite.
//!
//! # Security
//! A document's bytes and text live in zeroizing buffers (wiped when dropped; the process
//! cannot dump core) and are never written anywhere: the audit log gets its SHA-384, name,
//! marking and size, and each query's passage references, never text. A document whose marking
//! is above the appliance's accreditation is refused: when the marking is given, before the file
//! is opened; when it is read from the document, before the text goes further than the
//! extraction. The BM25 index holds 32-bit hashes of words, not the words.

pub mod embed;
pub mod extract;
pub mod marking;
pub mod passage;

use std::path::Path;
use std::time::{Duration, Instant};

use bm25::{Embedder, EmbedderBuilder, Scorer};
use zeroize::Zeroizing;

pub use extract::{Format, Limits};
pub use marking::{Marking, Scale};
pub use passage::Passage;

/// What a front end may attach, from `rempart.toml`'s `[classification]` and `[documents]`.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The ordered scale of markings.
    pub scale: Scale,
    /// The highest marking this appliance may hold.
    pub accreditation: Marking,
    /// The marking of a document that carries none and is given none.
    pub unmarked: Marking,
    /// Largest document file read.
    pub max_bytes: u64,
    /// Longest time one document's text extraction may take.
    pub timeout: Duration,
    /// Bounds inside the extraction.
    pub limits: Limits,
    /// Most tokens of passages given with one question (`None`: what the context holds).
    pub max_source_tokens: Option<usize>,
    /// Most passages embedded in one session for semantic ranking (each costs a BERT forward
    /// pass: about 0.13 s for 256 tokens of all-MiniLM-L6-v2 on 2 cores); beyond it, BM25 alone.
    pub embed_max_passages: usize,
}

impl Policy {
    /// The tokens of passages that may go with a question: what the context holds besides
    /// the answer's room (`max_tokens`, at least 64, at most a quarter of the context),
    /// `fixed` (the question, the system prompt) and the instructions and template (128), less
    /// 5 % (passages counted one by one can tokenize a little longer together), capped by
    /// `max_source_tokens`.
    ///
    /// Documents that fit go whole within that; when they do not, the passages retrieved take
    /// at most [`RETRIEVAL_TOKENS`] unless `max_source_tokens` says otherwise: the best few
    /// passages hold the answer, and each further thousand tokens of prompt delays the first
    /// token more than the last (README, issue 21's figures).
    pub fn source_budget(&self, context: usize, max_tokens: usize, fixed: usize) -> Budget {
        let room = max_tokens.max(64).min(context / 4);
        let fits = context.saturating_sub(room + fixed + 128) * 19 / 20;
        match self.max_source_tokens {
            Some(m) => Budget::both(fits.min(m)),
            None => Budget {
                whole: fits,
                retrieval: fits.min(RETRIEVAL_TOKENS),
            },
        }
    }
}

/// The default most tokens of retrieved passages per question.
pub const RETRIEVAL_TOKENS: usize = 2048;

/// Tokens of passages that may go with a question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// When every passage fits in this, every passage goes (the documents whole).
    pub whole: usize,
    /// Otherwise the best passages, within this.
    pub retrieval: usize,
}

impl Budget {
    /// The same bound for both.
    pub fn both(n: usize) -> Self {
        Self {
            whole: n,
            retrieval: n,
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        let scale = Scale::default();
        let dr = scale
            .parse("DIFFUSION RESTREINTE")
            .unwrap_or_else(|| scale.lowest());
        Self {
            accreditation: dr.clone(),
            unmarked: dr,
            scale,
            max_bytes: 64 << 20,
            timeout: Duration::from_secs(60),
            limits: Limits::default(),
            max_source_tokens: None,
            embed_max_passages: 128,
        }
    }
}

/// Where a document's marking came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkingSource {
    /// Given by the analyst (`--marking`), and not lower than a line in the document.
    Given,
    /// A marking line at the document's top or bottom.
    Document,
    /// Neither: the configured marking for unmarked documents.
    Default,
}

/// A document could not be attached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file cannot be read as a document of its format.
    #[error("document {name}: {reason}")]
    Unreadable {
        /// The file name.
        name: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// Its marking is above the accreditation.
    #[error(
        "document {name} is marked {marking}, above this appliance's accreditation \
         ({accreditation}): refused, nothing of it was kept"
    )]
    AboveAccreditation {
        /// The file name.
        name: String,
        /// Its marking.
        marking: String,
        /// The accreditation.
        accreditation: String,
    },
}

/// One attached document: its facts and passages.
pub struct Document {
    /// The file name (no directory).
    pub name: String,
    /// SHA-384 of the file's bytes (hex).
    pub sha384: String,
    /// The file's size.
    pub bytes: u64,
    /// Its format.
    pub format: Format,
    /// Its marking.
    pub marking: Marking,
    /// Where the marking came from.
    pub marking_source: MarkingSource,
    /// Pages (PDF).
    pub pages: Option<u32>,
    /// The passages, in document order.
    pub passages: Vec<Passage>,
    /// Milliseconds to read, extract and split it.
    pub ms: u64,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("name", &self.name)
            .field("sha384", &self.sha384)
            .field("marking", &self.marking.to_string())
            .field("passages", &self.passages.len())
            .finish_non_exhaustive()
    }
}

/// The file name of `path`, for messages and the audit log.
pub fn name_of(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Reads, checks and splits one document. `given` is the analyst's marking for it, if any.
pub fn read(path: &Path, given: Option<&Marking>, policy: &Policy) -> Result<Document, Error> {
    let t0 = Instant::now();
    let name = name_of(path);
    let bad = |reason: String| Error::Unreadable {
        name: name.clone(),
        reason,
    };
    let above = |m: &Marking| Error::AboveAccreditation {
        name: name.clone(),
        marking: m.to_string(),
        accreditation: policy.accreditation.to_string(),
    };
    let format = Format::of(&name).ok_or_else(|| {
        bad(format!(
            "unsupported file type (supported: {})",
            Format::SUPPORTED
        ))
    })?;
    if let Some(m) = given
        && !policy.scale.allows(&policy.accreditation, m)
    {
        return Err(above(m));
    }
    let bytes = read_bounded(path, policy.max_bytes).map_err(bad)?;
    let sha384 = hex::encode(crate::crypto::hash::sha384(&[&bytes]));
    let size = bytes.len() as u64;
    let pages = extract_bounded(format, bytes, policy).map_err(bad)?;
    // A marking line at the top of the first page or the bottom of the last.
    let found = match (pages.first(), pages.last()) {
        (Some(a), Some(b)) if pages.len() > 1 => {
            let (x, y) = (policy.scale.find_in(&a.text), policy.scale.find_in(&b.text));
            match (x, y) {
                (Some(x), Some(y)) => Some(policy.scale.join(&x, &y)),
                (x, y) => x.or(y),
            }
        }
        (Some(a), _) => policy.scale.find_in(&a.text),
        _ => None,
    };
    let (marking, marking_source) = match (given, found) {
        // A given marking never lowers the document's own.
        (Some(g), Some(f)) => (policy.scale.join(g, &f), MarkingSource::Given),
        (Some(g), None) => (g.clone(), MarkingSource::Given),
        (None, Some(f)) => (f, MarkingSource::Document),
        (None, None) => (policy.unmarked.clone(), MarkingSource::Default),
    };
    if !policy.scale.allows(&policy.accreditation, &marking) {
        return Err(above(&marking));
    }
    let mut passages = passage::split(&pages);
    // Marking lines on their own (headers, footers) are facts about the document, not text.
    passages.retain(|p| !policy.scale.is_marking_only(&p.text));
    if passages.is_empty() {
        return Err(bad("it holds no text besides its marking".into()));
    }
    Ok(Document {
        name,
        sha384,
        bytes: size,
        format,
        marking,
        marking_source,
        pages: (format == Format::Pdf).then_some(u32::try_from(pages.len()).unwrap_or(u32::MAX)),
        passages,
        ms: t0.elapsed().as_millis() as u64,
    })
}

/// The file's bytes: a regular file (no symlink followed), at most `max` bytes.
fn read_bounded(path: &Path, max: u64) -> Result<Zeroizing<Vec<u8>>, String> {
    use std::io::Read;
    let file = crate::secure::fs::open_regular(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => "not a regular file".to_owned(),
        _ => e.to_string(),
    })?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!(
            "larger than the {} MiB a document may be (rempart.toml [documents] max_mib)",
            max >> 20
        ));
    }
    Ok(bytes)
}

/// Runs the extraction on its own thread and waits at most `policy.timeout` for it. A parser
/// still running then is abandoned (it holds only its copy of the bytes, wiped when it ends).
fn extract_bounded(
    format: Format,
    bytes: Zeroizing<Vec<u8>>,
    policy: &Policy,
) -> Result<Vec<extract::Page>, String> {
    let limits = policy.limits;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("rempart-extract".into())
        .spawn(move || {
            let _ = tx.send(extract::extract(format, &bytes, limits));
        })
        .map_err(|e| format!("cannot start the extraction thread ({e})"))?;
    match rx.recv_timeout(policy.timeout) {
        Ok(r) => r,
        Err(_) => Err(format!(
            "its text could not be extracted within {} s (rempart.toml [documents] timeout_seconds)",
            policy.timeout.as_secs()
        )),
    }
}

/// BM25's view of text: words folded to upper case without accents, short and common words
/// dropped (French and English).
#[derive(Debug, Default, Clone, Copy)]
pub struct Words;

const STOP: &[&str] = &[
    "AU", "AUX", "AVEC", "CE", "CES", "DANS", "DE", "DES", "DU", "ELLE", "EN", "ET", "EUX", "IL",
    "JE", "LA", "LE", "LES", "LEUR", "LUI", "MA", "MAIS", "ME", "MEME", "MES", "MOI", "MON", "NE",
    "NOS", "NOTRE", "NOUS", "ON", "OU", "PAR", "PAS", "POUR", "QU", "QUE", "QUI", "SA", "SE",
    "SES", "SON", "SUR", "TA", "TE", "TES", "TOI", "TON", "TU", "UN", "UNE", "VOS", "VOTRE",
    "VOUS", "EST", "SONT", "AN", "AND", "ARE", "AS", "AT", "BE", "BY", "FOR", "FROM", "HAS",
    "HAVE", "IN", "IS", "IT", "ITS", "OF", "ON", "OR", "THAT", "THE", "THIS", "TO", "WAS", "WERE",
    "WHAT", "WHICH", "WITH", "WHO", "HOW", "DOES", "DO",
];

impl bm25::Tokenizer for Words {
    fn tokenize(&self, input_text: &str) -> Vec<String> {
        marking::fold(&input_text.replace(|c: char| !c.is_alphanumeric(), " "))
            .split(' ')
            .filter(|w| w.chars().count() > 1 && !STOP.contains(w))
            .map(str::to_owned)
            .collect()
    }
}

/// A passage chosen for a question: which document, which passage, its number in the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chosen {
    /// Index of the document in the library.
    pub doc: usize,
    /// Index of the passage in the document.
    pub passage: usize,
}

/// The passages given to the model for one question.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// In document order.
    pub chosen: Vec<Chosen>,
    /// Every passage of every document was given (they all fitted).
    pub whole: bool,
    /// Passages that did not fit or did not match.
    pub left_out: usize,
    /// Ranked by BM25 fused with the embedding model's cosine similarity (reciprocal rank
    /// fusion), not BM25 alone.
    pub semantic: bool,
    /// Milliseconds spent ranking.
    pub ms: f64,
}

/// BM25 over every passage: the embedder fitted to them, the scorer keyed by (document,
/// passage).
type Index = (Embedder<u32, Words>, Scorer<(usize, usize), u32>);

/// The documents attached to a session, and their passage index.
#[derive(Default)]
pub struct Library {
    docs: Vec<Document>,
    /// Token count of each passage's prompt entry, per document.
    tokens: Vec<Vec<usize>>,
    index: Option<Index>,
    /// Unit embedding of each passage, per document (empty without an embedding model).
    vectors: Vec<Vec<Vec<f32>>>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("docs", &self.docs)
            .finish_non_exhaustive()
    }
}

impl Library {
    /// The attached documents.
    pub fn docs(&self) -> &[Document] {
        &self.docs
    }

    /// Whether none is attached.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Tokens of a document's passages as the model reads them.
    pub fn doc_tokens(&self, i: usize) -> usize {
        self.tokens.get(i).map_or(0, |t| t.iter().sum())
    }

    /// Attaches a document; `count` gives a text's token count for the model in use.
    pub fn add(&mut self, doc: Document, count: &dyn Fn(&str) -> usize) {
        self.add_all([doc], count);
    }

    /// Attaches documents, then indexes them once.
    pub fn add_all(
        &mut self,
        docs: impl IntoIterator<Item = Document>,
        count: &dyn Fn(&str) -> usize,
    ) {
        for doc in docs {
            let n = self.docs.len() + 1;
            let tokens = doc
                .passages
                .iter()
                .map(|p| count(&source_entry(n, &doc, p)))
                .collect();
            self.docs.push(doc);
            self.tokens.push(tokens);
            self.vectors.push(Vec::new());
        }
        self.reindex();
    }

    /// Embeds the passages of each document not embedded yet, for semantic ranking, as long
    /// as the session then holds at most `max` embedded passages (a document past that is
    /// left without vectors: ranking is then BM25 alone).
    pub fn embed_pending(&mut self, e: &embed::Embedder, max: usize) -> Result<(), String> {
        let mut held = self.embedded_passages();
        for (d, slot) in self.docs.iter().zip(self.vectors.iter_mut()) {
            if !slot.is_empty() || held + d.passages.len() > max {
                continue;
            }
            let texts: Vec<&str> = d.passages.iter().map(|p| p.text.as_str()).collect();
            *slot = e.embed(&texts)?;
            held += slot.len();
        }
        Ok(())
    }

    /// Passages embedded so far.
    pub fn embedded_passages(&self) -> usize {
        self.vectors.iter().map(Vec::len).sum()
    }

    /// Sets the embeddings of the last document added (computed elsewhere, one per passage;
    /// any other count is ignored).
    pub fn set_last_vectors(&mut self, v: Vec<Vec<f32>>) {
        if let (Some(d), Some(slot)) = (self.docs.last(), self.vectors.last_mut())
            && v.len() == d.passages.len()
        {
            *slot = v;
        }
    }

    /// Whether every passage has an embedding.
    pub fn is_embedded(&self) -> bool {
        !self.docs.is_empty()
            && self
                .docs
                .iter()
                .zip(&self.vectors)
                .all(|(d, v)| v.len() == d.passages.len())
    }

    /// Detaches document `i` (0-based); its text is wiped.
    pub fn remove(&mut self, i: usize) -> Option<Document> {
        if i >= self.docs.len() {
            return None;
        }
        self.tokens.remove(i);
        self.vectors.remove(i);
        let d = self.docs.remove(i);
        self.reindex();
        Some(d)
    }

    fn reindex(&mut self) {
        let corpus: Vec<&str> = self
            .docs
            .iter()
            .flat_map(|d| d.passages.iter().map(|p| p.text.as_str()))
            .collect();
        if corpus.is_empty() {
            self.index = None;
            return;
        }
        let embedder: Embedder<u32, Words> =
            EmbedderBuilder::with_tokenizer_and_fit_to_corpus(Words, &corpus).build();
        let mut scorer = Scorer::new();
        for (d, doc) in self.docs.iter().enumerate() {
            for (p, passage) in doc.passages.iter().enumerate() {
                scorer.upsert(&(d, p), embedder.embed(&passage.text));
            }
        }
        self.index = Some((embedder, scorer));
    }

    /// The passages to give the model for `question` within `budget` tokens: every passage when
    /// they all fit, else the best BM25 matches that fit, in document order.
    pub fn select(&self, question: &str, budget: usize) -> Selection {
        self.select_with(question, Budget::both(budget), None)
    }

    /// [`Library::select`], ranking by BM25 fused with the cosine similarity of each passage to
    /// `query` (the question's unit embedding) when every passage is embedded: each passage
    /// scores `1/(60 + its BM25 rank) + 1/(60 + its cosine rank)` (reciprocal rank fusion; a
    /// passage BM25 does not match gets the cosine term only).
    pub fn select_with(&self, question: &str, budget: Budget, query: Option<&[f32]>) -> Selection {
        let t0 = Instant::now();
        let total: usize = self.tokens.iter().flatten().sum();
        let all = || {
            self.docs.iter().enumerate().flat_map(|(d, doc)| {
                (0..doc.passages.len()).map(move |p| Chosen { doc: d, passage: p })
            })
        };
        let count = all().count();
        if total <= budget.whole {
            return Selection {
                chosen: all().collect(),
                whole: true,
                left_out: 0,
                semantic: false,
                ms: t0.elapsed().as_secs_f64() * 1e3,
            };
        }
        // BM25's matches, best first.
        let lexical: Vec<(usize, usize)> = match &self.index {
            Some((embedder, scorer)) => scorer
                .matches(&embedder.embed(question))
                .into_iter()
                .filter(|m| m.score > 0.0)
                .map(|m| m.id)
                .collect(),
            None => Vec::new(),
        };
        let semantic = query.is_some() && self.is_embedded();
        let ranked: Vec<(usize, usize)> = match query.filter(|_| semantic) {
            None => lexical,
            Some(q) => self.fuse(&lexical, q),
        };
        let mut chosen = Vec::new();
        let mut used = 0;
        for (d, p) in ranked {
            let t = self
                .tokens
                .get(d)
                .and_then(|t| t.get(p))
                .copied()
                .unwrap_or(0);
            if used + t > budget.retrieval {
                continue;
            }
            used += t;
            chosen.push(Chosen { doc: d, passage: p });
        }
        chosen.sort_by_key(|c| (c.doc, c.passage));
        Selection {
            left_out: count - chosen.len(),
            chosen,
            whole: false,
            semantic,
            ms: t0.elapsed().as_secs_f64() * 1e3,
        }
    }

    /// Reciprocal rank fusion of BM25's ranking (`lexical`) and the cosine ranking of every
    /// passage against `q`.
    fn fuse(&self, lexical: &[(usize, usize)], q: &[f32]) -> Vec<(usize, usize)> {
        let mut by_cos: Vec<((usize, usize), f32)> = self
            .vectors
            .iter()
            .enumerate()
            .flat_map(|(d, v)| {
                v.iter()
                    .enumerate()
                    .map(move |(p, x)| ((d, p), embed::cosine(q, x)))
            })
            .collect();
        by_cos.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut fused: std::collections::HashMap<(usize, usize), f64> =
            std::collections::HashMap::new();
        for (rank, id) in lexical.iter().enumerate() {
            *fused.entry(*id).or_default() += 1.0 / (60.0 + rank as f64);
        }
        for (rank, (id, _)) in by_cos.iter().enumerate() {
            *fused.entry(*id).or_default() += 1.0 / (60.0 + rank as f64);
        }
        let mut v: Vec<((usize, usize), f64)> = fused.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().map(|(id, _)| id).collect()
    }

    /// The document and passage of a choice.
    pub fn get(&self, c: Chosen) -> Option<(&Document, &Passage)> {
        let d = self.docs.get(c.doc)?;
        Some((d, d.passages.get(c.passage)?))
    }

    /// The user message carrying the chosen passages as numbered sources, then the question.
    pub fn prompt(&self, sel: &Selection, question: &str) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::new());
        if sel.chosen.is_empty() {
            s.push_str(
                "(No passage of the attached documents matches this question; say so if the \
                 answer needs them.)\n\n",
            );
        } else {
            s.push_str(
                "Answer the question from the numbered sources below. Cite the sources you use \
                 as [1], [2]. If they do not hold the answer, say so.\n\n",
            );
            for (n, c) in sel.chosen.iter().enumerate() {
                if let Some((d, p)) = self.get(*c) {
                    s.push_str(&source_entry(n + 1, d, p));
                }
            }
        }
        s.push_str("Question: ");
        s.push_str(question);
        s
    }

    /// The session's marking: the model's joined with every attached document's.
    pub fn high_water(&self, scale: &Scale, model: &Marking) -> Marking {
        self.docs
            .iter()
            .fold(model.clone(), |m, d| scale.join(&m, &d.marking))
    }
}

/// One source as the model reads it.
fn source_entry(n: usize, d: &Document, p: &Passage) -> String {
    format!(
        "[{n}] {} ({})\n{}\n\n",
        d.name,
        p.locator(),
        p.text.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, text: &str, policy: &Policy) -> Document {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        read(&path, None, policy).unwrap()
    }

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn a_marked_document_takes_its_marking_and_above_the_accreditation_is_refused() {
        let policy = Policy::default();
        let d = doc("memo.txt", "DIFFUSION RESTREINTE\nLe texte.\n", &policy);
        assert_eq!(d.marking.to_string(), "DIFFUSION RESTREINTE");
        assert_eq!(d.marking_source, MarkingSource::Document);
        let u = doc("plain.md", "# Title\nbody\n", &policy);
        assert_eq!(u.marking_source, MarkingSource::Default);
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("s.txt");
        std::fs::write(&secret, "SECRET\nbody\n").unwrap();
        let e = read(&secret, None, &policy).unwrap_err();
        assert!(
            e.to_string()
                .contains("marked SECRET, above this appliance's accreditation"),
            "{e}"
        );
        // A given marking is checked before the file is even opened.
        let missing = dir.path().join("missing.txt");
        let ts = policy.scale.parse("TRÈS SECRET").unwrap();
        let e = read(&missing, Some(&ts), &policy).unwrap_err();
        assert!(matches!(e, Error::AboveAccreditation { .. }), "{e}");
        // A given marking never lowers the document's own line.
        let high = Policy {
            accreditation: policy.scale.highest(),
            ..Policy::default()
        };
        let low = policy.scale.lowest();
        let d = read(&secret, Some(&low), &high).unwrap();
        assert_eq!(d.marking.to_string(), "SECRET");
    }

    #[test]
    fn unreadable_files_say_why() {
        let policy = Policy {
            max_bytes: 10,
            ..Policy::default()
        };
        let dir = tempfile::tempdir().unwrap();
        for (name, body, want) in [
            ("a.exe", &b"x"[..], "unsupported file type"),
            ("big.txt", &b"01234567890"[..], "larger than"),
            ("bin.txt", &b"a\0b"[..], "binary data"),
            ("empty.txt", &b"  \n"[..], "holds no text"),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            let e = read(&p, None, &policy).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("document {name}: ")) && e.contains(want),
                "{e}"
            );
        }
        let e = read(dir.path(), None, &policy).unwrap_err().to_string();
        assert!(
            e.contains("unsupported") || e.contains("not a regular file"),
            "{e}"
        );
        let p = dir.path().join("d.txt");
        std::fs::create_dir(&p).unwrap();
        let e = read(&p, None, &policy).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn whole_documents_when_they_fit_else_the_best_passages() {
        let policy = Policy::default();
        let mut lib = Library::default();
        let filler = "Generic paragraph about logistics and schedules.\n\n".repeat(60);
        lib.add(
            doc("a.md", &format!("# Intro\n{filler}# Port\nThe frigate Vendémiaire sailed from Brest on 3 March.\n"), &policy),
            &words,
        );
        lib.add(doc("b.txt", "Unrelated weather report.\n", &policy), &words);
        let all = lib.select("anything", usize::MAX);
        assert!(all.whole && all.left_out == 0);
        assert_eq!(
            all.chosen.len(),
            lib.docs().iter().map(|d| d.passages.len()).sum::<usize>()
        );
        let sel = lib.select("When did the frigate sail from Brest?", 60);
        assert!(!sel.whole && sel.left_out > 0);
        let first = lib.get(sel.chosen[0]).unwrap();
        assert!(first.1.text.contains("Vendémiaire"), "{:?}", first.1);
        let prompt = lib.prompt(&sel, "When did the frigate sail?");
        assert!(
            prompt.contains("[1] a.md (§ Port, l. "),
            "{}",
            prompt.as_str()
        );
        assert!(prompt.ends_with("Question: When did the frigate sail?"));
        // Accent- and case-insensitive matching.
        let sel = lib.select("VENDEMIAIRE", 60);
        assert_eq!(sel.chosen.len(), 1);
        // The high-water mark and detaching.
        let m = lib.high_water(&policy.scale, &policy.scale.lowest());
        assert_eq!(m.to_string(), "DIFFUSION RESTREINTE");
        assert!(lib.remove(0).is_some() && lib.remove(5).is_none());
        assert_eq!(lib.docs().len(), 1);
    }
}
