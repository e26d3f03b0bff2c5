#!/usr/bin/env python3
"""Generate tests/fixtures/tokenizer-smollm2.json: reference token ids from llama.cpp.

Reference tokenizer: llama.cpp, through llama-cpp-python (pinned 0.3.36), loading only
the vocabulary of the pinned model build/cache/SmolLM2-135M-Instruct.Q4_1.gguf.
Every case is tokenized with `llm.tokenize(text.encode("utf-8"), add_bos=False,
special=True)`: no BOS is added and special-token text such as "<|im_start|>" is parsed
into the special token id.

Usage (from the repository root, after build/fetch-model):
    python3 -m venv /work/venv-lcp
    CMAKE_ARGS="-DGGML_NATIVE=ON" /work/venv-lcp/bin/pip install --no-cache-dir \
        llama-cpp-python==0.3.36 numpy jinja2
    /work/venv-lcp/bin/python build/gen-tokenizer-fixture.py

The case list below is hand-written (no randomness): the output is deterministic.

Issue 19, the other tokenizer types, with the same cases:
    gen-tokenizer-fixture.py MODEL OUT [PRE]
MODEL's vocabulary (e.g. Gemma 3 270M's SentencePiece one, build/make-test-models); with PRE,
MODEL is a copy of the default model whose `tokenizer.ggml.pre` was set to PRE (llama.cpp's
gguf_new_metadata.py --pre-tokenizer PRE: "qwen2" and "llama-bpe" select Qwen 2's and Llama 3's
pre-tokenizer regexes), and the fixture records PRE and the default model's SHA-256, from which
the test makes the same vocabulary.
"""

import hashlib
import json
import os
import sys

import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "build", "cache", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer-smollm2.json")
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

CASES = [
    # --- empty and trivial -------------------------------------------------------------
    "",
    "a",
    "A",
    " ",
    "0",
    "!",
    "\n",
    "\t",
    "hello",
    " hello",
    "Hello",
    "HELLO",
    "hello world",
    "Hello, world!",
    # --- English sentences ---------------------------------------------------------------
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times.",
    "Please summarize the following paragraph in two sentences.",
    "What is the capital of France?",
    "Machine learning models can be surprisingly small and still useful.",
    "She sells sea shells by the sea shore; the shells she sells are sea shells, I'm sure.",
    "Once upon a time, in a land far, far away, there lived a curious little robot.",
    "Why? Because we said so!",
    "Mr. Smith went to Washington D.C. on Jan. 5th, didn't he?",
    "I can't believe it's not butter.",
    "antidisestablishmentarianism",
    "supercalifragilisticexpialidocious",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "Thisisaverylongwordwithoutanyspacesthatgoesonandonandonforquiteawhile",
    # --- contractions ----------------------------------------------------------------------
    "don't",
    "Don't",
    "DON'T",
    "I'LL",
    "I'll",
    "we've",
    "WE'VE",
    "they're",
    "she'd",
    "it's",
    "I'm",
    "you'RE",
    "y'all",
    "rock 'n' roll",
    "'s 't 're 've 'm 'll 'd",
    "the dog's bone",
    "o'clock",
    "don’t",  # typographic apostrophe
    # --- mixed case --------------------------------------------------------------------------
    "camelCaseIdentifier",
    "PascalCaseIdentifier",
    "snake_case_identifier",
    "SCREAMING_SNAKE_CASE",
    "kebab-case-identifier",
    "iPhone and macOS and JavaScript",
    "McDonald's",
    "HTTPServerError",
    "xmlHttpRequest",
    "aBcDeFgHiJkLmNoP",
    # --- French ------------------------------------------------------------------------------
    "Bonjour, comment ça va ?",
    "L'été dernier, nous sommes allés à la plage.",
    "Où est la bibliothèque ?",
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Il était une fois une princesse très élégante.",
    "À bientôt ! Ça m'a fait plaisir.",
    "Les œufs, le bœuf et l'œuvre d'art.",
    "garçon, façade, reçu, Noël, naïve, Françoise",
    "ÉCOLE, ÊTRE, ÀPRÈS",
    "Qu'est-ce que c'est ?",
    # --- German ------------------------------------------------------------------------------
    "Guten Morgen! Wie geht es Ihnen?",
    "Die Straße ist sehr schön.",
    "Fußgängerübergänge und Größenordnungen",
    "Donaudampfschifffahrtsgesellschaftskapitän",
    "Ärger, Öl, Übermut: ä ö ü ß Ä Ö Ü ẞ",
    "Ich möchte ein Brötchen mit Käse, bitte.",
    "Der Bär läuft über die Brücke.",
    # --- Spanish and other Latin-script -------------------------------------------------------
    "¿Dónde está la estación de tren?",
    "¡Qué día tan bonito! El niño comió piña.",
    "Mañana será otro día, señor.",
    "Olá, tudo bem? Não sei.",
    "Ciao, come stai? Perché no?",
    "Dziękuję bardzo, żółć",
    "Čeština: příliš žluťoučký kůň úpěl ďábelské ódy",
    "Ærøskøbing og Ålborg",
    "İstanbul'da ılık bir gün",
    "Tiếng Việt có dấu: Xin chào thế giới",
    # --- code: Rust -----------------------------------------------------------------------
    "fn main() {\n    println!(\"Hello, world!\");\n}\n",
    "let mut v: Vec<u32> = Vec::with_capacity(16);",
    "impl<'a, T: Clone + Send> Iterator for Foo<'a, T> {\n    type Item = &'a T;\n}",
    "#[derive(Debug, Clone, PartialEq, Eq)]\npub struct Point { x: i64, y: i64 }",
    "match x {\n    Some(ref y) if *y > 0 => y,\n    _ => &0,\n}",
    "let s = r#\"raw \"string\"\"#; // comment",
    "use std::collections::HashMap;",
    "x.iter().map(|v| v * 2).filter(|&v| v % 3 == 0).sum::<u64>()",
    # --- code: Python ---------------------------------------------------------------------
    "def f(x):\n    return x ** 2\n",
    "import numpy as np\narr = np.zeros((3, 4), dtype=np.float32)",
    "class Foo(object):\n    def __init__(self):\n        self._bar = None\n",
    "print(f\"{name!r:>10} = {value:.3f}\")",
    "if __name__ == \"__main__\":\n    main()",
    "lambda *args, **kwargs: None",
    "    # indented comment\n    pass",
    "x = [i for i in range(10) if i % 2 == 0]",
    # --- code: C --------------------------------------------------------------------------
    "#include <stdio.h>\n\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * c; }",
    "struct node *next = ptr->next; /* linked list */",
    "#define MAX(a, b) ((a) > (b) ? (a) : (b))",
    "unsigned long long x = 0xDEADBEEFULL >> 3;",
    # --- code: JSON, YAML, SQL, HTML ------------------------------------------------------
    "{\"name\": \"Alice\", \"age\": 30, \"tags\": [\"a\", \"b\"], \"ok\": true, \"n\": null}",
    "{\n  \"key\": {\n    \"nested\": [1, 2, 3]\n  }\n}",
    "[]{}()<>",
    "key: value\nlist:\n  - one\n  - two\n",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "<div class=\"container\"><p>Hello &amp; welcome</p></div>",
    "<!DOCTYPE html>",
    # --- shell ---------------------------------------------------------------------------
    "ls -la | grep '\\.rs$' | wc -l",
    "cat /var/log/syslog | tail -n 100 > out.txt 2>&1",
    "find . -name '*.py' -exec rm {} \\;",
    "export PATH=\"$HOME/.cargo/bin:$PATH\" && cargo build --release",
    "echo $((1 + 2)) || true; sudo apt-get install -y build-essential",
    "#!/usr/bin/env bash\nset -euo pipefail\n",
    "curl -sSL https://example.com/install.sh | sh -s -- --yes",
    # --- digits and numbers ----------------------------------------------------------------
    "1",
    "12",
    "123",
    "1234",
    "12345",
    "1234567890",
    "12345678901234567890",
    "3.14159",
    "3.14159265358979323846",
    "-42",
    "+1.5e10",
    "1e-9",
    "6.022e23",
    "0.000001",
    "1,000,000",
    "1 000 000",
    "99.99%",
    "$1,234.56",
    "€5,00",
    "2024-01-15",
    "15/01/2024",
    "2024-01-15T13:45:30Z",
    "12:34:56",
    "+1 (555) 123-4567",
    "+33 6 12 34 56 78",
    "192.168.1.1",
    "255.255.255.0",
    "10.0.0.1:8080",
    "::1",
    "fe80::1ff:fe23:4567:890a",
    "0x1F 0b1010 0o777",
    "v1.2.3-beta.4",
    "42 apples and 7 oranges",
    "abc123def456",
    "1st 2nd 3rd 4th",
    "Ⅻ ½ ¾ ² ³ ①",
    "١٢٣ ४५६ ๗๘๙",  # Arabic-Indic, Devanagari and Thai digits
    # --- whitespace ---------------------------------------------------------------------
    "  ",
    "   ",
    "    ",
    "     ",
    "      ",
    "       ",
    "        ",
    "a  b",
    "a   b",
    "a    b",
    "a        b",
    "\t\t",
    "a\tb",
    "a\t\tb",
    "\n\n",
    "\n\n\n",
    "a\nb",
    "a\n\nb",
    "line one\nline two\nline three",
    "a\r\nb",
    "windows\r\nline\r\nendings\r\n",
    "\r",
    "trailing space ",
    "trailing spaces   ",
    " leading space",
    "   leading spaces",
    "  both  ",
    " \n ",
    " \t\n\r\n ",
    "word\n    indented",
    "end of text\n",
    "\n\nstart after newlines",
    "mixed \t tabs\t and  spaces",
    "\u000b\u000c",  # vertical tab, form feed
    # --- emoji ------------------------------------------------------------------------------
    "😀",
    "Hello 😀 world",
    "🚀🚀🚀",
    "👍",
    "👍🏽",
    "👋🏿👋🏻",
    "👨‍👩‍👧‍👦",
    "👩‍💻",
    "🏳️‍🌈",
    "🇫🇷🇩🇪🇺🇸",
    "❤️",
    "☕ and 🍕",
    "I ❤️ Rust 🦀!",
    "✅ done ❌ failed ⚠️ warning",
    # --- rare Unicode -----------------------------------------------------------------------
    "你好，世界！",
    "我爱自然语言处理。",
    "日本語のテキストです。",
    "カタカナ ひらがな 漢字",
    "안녕하세요",
    "مرحبا بالعالم",
    "السلام عليكم ورحمة الله",
    "שלום עולם",
    "नमस्ते दुनिया",
    "हिन्दी में लिखा गया वाक्य",
    "สวัสดีครับ",
    "Привет, мир!",
    "Съешь же ещё этих мягких французских булок.",
    "Γειά σου Κόσμε",
    "ἀρχὴ ἥμισυ παντός",
    "Բարեւ աշխարհ",
    "გამარჯობა",
    "e\u0301",  # e + combining acute
    "é",  # precomposed
    "a\u0300\u0301\u0302\u0303\u0304",  # stacked combining marks
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f",  # zalgo-ish
    "∀x ∈ ℝ, ∃y : x² + y² ≤ 1",
    "∑ ∏ ∫ ∂ ∇ √ ∞ ≠ ≈ ≡ ⊂ ⊃ ∪ ∩",
    "α β γ δ ε λ μ π σ ω",
    "𝔸𝔹ℂ 𝕩 𝒜",
    "→ ← ↑ ↓ ⇒ ⇔",
    "zero\u200bwidth\u200bspace",
    "non\u00a0breaking\u00a0space",
    "\ufeffBOM at start",
    "soft\u00adhyphen",
    "left\u200eto\u200fright marks",
    "word\u2060joiner",
    "\u3000ideographic space\u3000",
    "em\u2003space and thin\u2009space",
    "ﬁ ﬂ ligatures",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "\U0001f600\U0001f4a9\U0010fffd",
    "\ue000 private use",
    "©®™ § ¶ † ‡ • …",
    "«guillemets» „Anführungszeichen“ “curly” ‘single’",
    "— – - ‐ ‒",
    # --- punctuation runs ---------------------------------------------------------------
    "!!!",
    "???",
    "?!?!",
    "...",
    "......",
    "---",
    "========",
    "***bold***",
    "~~~",
    "####",
    "()()()",
    "!@#$%^&*()_+-=[]{}|;':\",./<>?`~",
    "Wait... what?!",
    "a,b,c;d:e",
    "\"quoted\" 'single' `back`",
    "\\\\server\\share\\path",
    "//////",
    "<<<>>>",
    "->=>::..",
    # --- URLs and e-mail ----------------------------------------------------------------
    "https://www.example.com/path/to/page?query=1&lang=en#section",
    "http://localhost:3000/api/v1/users/42",
    "ftp://files.example.org/pub/file.tar.gz",
    "www.rust-lang.org",
    "user.name+tag@example.co.uk",
    "mailto:someone@example.com",
    "file:///home/user/Documents/report.pdf",
    "C:\\Program Files\\App\\app.exe",
    # --- markdown -------------------------------------------------------------------------
    "# Heading 1\n## Heading 2\n### Heading 3",
    "**bold** and *italic* and `code`",
    "- item one\n- item two\n  - nested item",
    "1. first\n2. second\n3. third",
    "[link text](https://example.com) ![alt](img.png)",
    "```python\nprint('hi')\n```",
    "| col1 | col2 |\n|------|------|\n| a    | b    |",
    "> quoted text\n> more quote",
    "---\ntitle: Post\n---",
    # --- special tokens inside text -------------------------------------------------------
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "text before<|endoftext|>text after",
    "<|endoftext|><|endoftext|>",
    " <|im_end|> ",
    "<|im_start|><|im_end|>",
    "<|im_start",
    "<|im_end|",
    "<|unknown_token|>",
    "<|IM_START|>",
    "< |im_start| >",
    "<|im_start|>assistant\nSure! Here you go.<|im_end|>\n",
    "<repo_name>rempart<file_sep>src/main.rs\nfn main() {}",
    "<jupyter_code>print(1)<jupyter_output>1",
    "<issue_start>bug<issue_comment>fixed<issue_closed>",
    "<gh_stars>100",
    # --- repeated characters -----------------------------------------------------------
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "a" * 200,
    "ab" * 50,
    "x y " * 20,
    "0" * 64,
    "1" * 33,
    "!" * 40,
    "." * 100,
    " " * 40,
    "\n" * 12,
    "\t" * 9,
    "é" * 30,
    "😀" * 10,
    "中" * 25,
    "ha" * 30 + "!",
    "zzz...zzz...zzz",
    "Nooooooooooooooooooooooooooo!",
    # --- misc mixtures ------------------------------------------------------------------
    "The price is $19.99 (was $24.99) — save 20%!",
    "Email me at bob@example.com or call +44 20 7946 0958.",
    "Temperature: -3.5°C / 25.7°F",
    "H₂O and CO₂ are molecules; E=mc².",
    "A Rust 🦀 snippet: `let x = 5;` 👍",
    "Résumé, café, naïve, coöperate, Zoë",
    "tab\tseparated\tvalues\n1\t2\t3",
    "comma,separated,values\n\"quoted, field\",2,3",
    "key=value; other_key=\"value with spaces\"",
    "SHA-256: b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "UUID 123e4567-e89b-12d3-a456-426614174000",
    "base64: SGVsbG8sIFdvcmxkIQ==",
    "User: Hi!\nAssistant: Hello! How can I help you today?",
    "Q: What's 7 × 8?\nA: 56.",
    "I said \"no\", and she said 'yes'.",
    "end.",
    "END",
]


def dump(doc: dict) -> str:
    """JSON with one case per line (readable diffs); plain json.loads reads it back."""
    head = {k: v for k, v in doc.items() if k != "cases"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    lines.append('  "cases": [')
    rows = [
        "    " + json.dumps(c, ensure_ascii=False, separators=(", ", ": "))
        for c in doc["cases"]
    ]
    lines.append(",\n".join(rows))
    lines.append("  ]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == doc
    return text


def main() -> int:
    global MODEL, OUT
    pre = None
    if len(sys.argv) in (3, 4):
        MODEL, OUT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
        pre = sys.argv[3] if len(sys.argv) == 4 else None
    elif len(sys.argv) != 1:
        print("usage: gen-tokenizer-fixture.py [MODEL OUT [PRE]]", file=sys.stderr)
        return 2
    with open(MODEL, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if (len(sys.argv) == 1 and digest != MODEL_SHA256) or (pre and digest == MODEL_SHA256):
        print(f"model SHA-256 mismatch: {digest}", file=sys.stderr)
        return 1

    if len(set(CASES)) != len(CASES):
        seen = set()
        dups = [c for c in CASES if c in seen or seen.add(c)]
        print(f"duplicate cases: {dups!r}", file=sys.stderr)
        return 1

    llm = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)
    cases = []
    for text in CASES:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        cases.append({"text": text, "ids": [int(t) for t in ids]})

    doc = {"model_sha256": digest}
    if pre:
        # The test rebuilds the vocabulary from the default model with this pre-tokenizer.
        doc = {"model_sha256": MODEL_SHA256, "pre": pre}
    doc |= {
        "llama_cpp_python": llama_cpp.__version__,
        "add_bos": False,
        "parse_special": True,
        "cases": cases,
    }
    meta = llm.metadata
    doc["tokenizer"] = meta.get("tokenizer.ggml.model")
    doc["pre_in_file"] = meta.get("tokenizer.ggml.pre")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(dump(doc))
    print(f"wrote {len(cases)} cases to {os.path.relpath(OUT, ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
