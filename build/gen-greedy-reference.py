#!/usr/bin/env python3
"""Generate tests/fixtures/greedy-smollm2.json: greedy-decoding reference from llama.cpp.

Reference engine: llama.cpp through llama-cpp-python (pinned 0.3.36), CPU only, on the
pinned model build/cache/SmolLM2-135M-Instruct.Q4_1.gguf.

For each prompt:
  1. the chat is rendered with the GGUF's own `tokenizer.chat_template` (jinja2, with
     `messages`, `add_generation_prompt=True`, `bos_token`, `eos_token`);
  2. the rendered text is tokenized with add_bos=False, special=True (special-token text
     such as "<|im_start|>" becomes the special id);
  3. the prompt is evaluated in one batch, then up to MAX_NEW tokens are decoded greedily:
     at each step the logits of the last position are taken, the argmax (first index on
     ties) is the next token, and it is fed back with eval([tok]). Decoding stops after
     an end-of-generation token (llama.cpp's EOG set, which contains EOS = <|im_end|>),
     which is recorded as the last id.

Per step the top-1 and top-2 token ids and logits are recorded, and `first_near_tie`
is the first step whose top1 - top2 logit gap is below NEAR_TIE: from that step on a
different (but correct) implementation may legitimately diverge, because a quantized
matmul computed in another order moves logits by a few hundredths.

Usage (from the repository root, after build/fetch-model):
    /work/venv-lcp/bin/python build/gen-greedy-reference.py [MODEL OUT]
With MODEL and OUT, the reference of another GGUF (issue 19: the default model requantised by
build/make-test-models), with that file's SHA-256 recorded for the test to check. llama-cpp-python
may also run on the llama.cpp libraries build/bench-vs-llamacpp built, from its sdist's source:
    LLAMA_CPP_LIB_PATH=/tmp/rempart-llamacpp/llama-build/bin \
    PYTHONPATH=/tmp/rempart-llamacpp/llama_cpp_python-0.3.36:<numpy, jinja2> python3 ...
"""

import hashlib
import json
import os
import sys

import jinja2
import llama_cpp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "build", "cache", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "fixtures", "greedy-smollm2.json")
MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

MAX_NEW = 64
N_CTX = 2048
N_THREADS = 2
NEAR_TIE = 0.1

PROMPTS = [
    {
        "name": "capital_question",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    },
    {
        "name": "explain_photosynthesis",
        "messages": [
            {"role": "user", "content": "Explain photosynthesis in simple terms."}
        ],
    },
    {
        "name": "french_question",
        "messages": [
            {
                "role": "user",
                "content": "Quelle est la plus haute montagne de France ?",
            }
        ],
    },
    {
        "name": "german_question",
        "messages": [
            {"role": "user", "content": "Wie viele Tage hat eine Woche?"}
        ],
    },
    {
        "name": "code_request",
        "messages": [
            {
                "role": "user",
                "content": "Write a Python function that returns the factorial of n.",
            }
        ],
    },
    {
        "name": "arithmetic",
        "messages": [{"role": "user", "content": "What is 12 + 7?"}],
    },
    {
        "name": "list_request",
        "messages": [
            {"role": "user", "content": "List three fruits that are red."}
        ],
    },
    {
        "name": "one_word",
        "messages": [{"role": "user", "content": "Hello"}],
    },
    {
        "name": "long_multi_sentence",
        "messages": [
            {
                "role": "user",
                "content": (
                    "I am planning a trip to the mountains next weekend. "
                    "The weather forecast says it might rain on Saturday, but Sunday "
                    "should be sunny. I will be hiking with two friends who are not "
                    "very experienced. We want a trail that takes about four hours. "
                    "What should we pack, and what safety advice would you give us?"
                ),
            }
        ],
    },
    {
        "name": "two_turn",
        "messages": [
            {"role": "user", "content": "What is the largest planet in our solar system?"},
            {
                "role": "assistant",
                "content": "The largest planet in our solar system is Jupiter.",
            },
            {"role": "user", "content": "How many moons does it have?"},
        ],
    },
    {
        "name": "custom_system",
        "system": "You are a pirate. Always answer like a pirate would.",
        "messages": [{"role": "user", "content": "How is the weather today?"}],
    },
    {
        "name": "custom_system_terse",
        "system": "You answer with a single word.",
        "messages": [{"role": "user", "content": "What color is the sky on a clear day?"}],
    },
    {
        "name": "story_request",
        "messages": [
            {"role": "user", "content": "Tell me a short story about a cat and a robot."}
        ],
    },
    {
        "name": "boiling_point",
        "messages": [
            {"role": "user", "content": "At what temperature does water boil at sea level?"}
        ],
    },
    {
        "name": "days_of_week",
        "messages": [{"role": "user", "content": "Name the days of the week in order."}],
    },
    {
        "name": "definition",
        "messages": [{"role": "user", "content": "What does the word 'ephemeral' mean?"}],
    },
]


def token_text(llm: llama_cpp.Llama, tok: int) -> str:
    return llm.detokenize([tok], special=True).decode("utf-8", errors="replace")


def render(template: str, messages: list, bos: str, eos: str) -> str:
    env = jinja2.Environment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals["raise_exception"] = lambda msg: (_ for _ in ()).throw(
        jinja2.TemplateError(msg)
    )
    return env.from_string(template).render(
        messages=messages,
        add_generation_prompt=True,
        bos_token=bos,
        eos_token=eos,
    )


def main() -> int:
    global MODEL, OUT
    if len(sys.argv) == 3:
        MODEL, OUT = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    elif len(sys.argv) != 1:
        print("usage: gen-greedy-reference.py [MODEL OUT]", file=sys.stderr)
        return 2
    with open(MODEL, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if len(sys.argv) == 1 and digest != MODEL_SHA256:
        print(f"model SHA-256 mismatch: {digest}", file=sys.stderr)
        return 1

    llm = llama_cpp.Llama(
        model_path=MODEL,
        n_ctx=N_CTX,
        n_threads=N_THREADS,
        n_threads_batch=N_THREADS,
        logits_all=True,
        seed=0,
        verbose=False,
    )
    # A GGUF without a template gets its family's, as Rempart does (src/engine/chat.rs):
    # Gemma's turn format for gemma*, else ChatML.
    template = llm.metadata.get("tokenizer.chat_template")
    if template is None:
        arch = llm.metadata.get("general.architecture", "")
        assert arch.startswith("gemma"), f"{arch}: no chat template"
        with open(os.path.join(ROOT, "src", "engine", "templates", "gemma.jinja")) as f:
            template = f.read()
    bos_id = llm.token_bos()
    eos_id = llm.token_eos()
    bos = token_text(llm, bos_id)
    eos = token_text(llm, eos_id)
    im_end = llm.tokenize(b"<|im_end|>", add_bos=False, special=True)
    im_end = im_end if len(im_end) == 1 else []
    # llama.cpp's own end-of-generation set (for this vocab: <|endoftext|>, <|im_end|>
    # and <reponame>), plus EOS and <|im_end|> to be explicit.
    vocab = llm._model.vocab
    eog = [i for i in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    stop_ids = sorted(set(eog) | {eos_id} | set(im_end))

    results = []
    for p in PROMPTS:
        messages = list(p["messages"])
        if "system" in p:
            messages = [{"role": "system", "content": p["system"]}] + messages
        rendered = render(template, messages, bos, eos)
        prompt_ids = llm.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)

        llm.reset()
        llm.eval(prompt_ids)
        steps = []
        continuation = []
        stop_token = None
        for _ in range(MAX_NEW):
            logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            order = np.argsort(-logits, kind="stable")
            t1, t2 = int(order[0]), int(order[1])
            assert t1 == int(np.argmax(logits))
            l1, l2 = float(logits[t1]), float(logits[t2])
            steps.append(
                {
                    "token": t1,
                    "logit": round(l1, 5),
                    "second": t2,
                    "second_logit": round(l2, 5),
                    "gap": round(l1 - l2, 5),
                }
            )
            continuation.append(t1)
            if t1 in stop_ids:
                stop_token = t1
                break
            llm.eval([t1])

        gaps = [s["gap"] for s in steps]
        near = [i for i, s in enumerate(steps) if s["gap"] < NEAR_TIE]
        entry = {"name": p["name"]}
        if "system" in p:
            entry["system"] = p["system"]
        entry.update(
            {
                "messages": p["messages"],
                "rendered": rendered,
                "prompt_ids": [int(t) for t in prompt_ids],
                "continuation_ids": continuation,
                "stop_token": stop_token,
                "continuation_text": llm.detokenize(continuation, special=True).decode(
                    "utf-8", errors="replace"
                ),
                "min_gap": round(min(gaps), 5),
                "first_near_tie": near[0] if near else None,
                "steps": steps,
            }
        )
        results.append(entry)
        print(
            f"{p['name']}: prompt {len(prompt_ids)} tok, continuation {len(continuation)} tok, "
            f"stop={stop_token}, first_near_tie={entry['first_near_tie']}, "
            f"min_gap={entry['min_gap']:.4f}",
            file=sys.stderr,
        )

    doc = {
        "model_sha256": digest,
        "llama_cpp_python": llama_cpp.__version__,
        "n_threads": N_THREADS,
        "n_ctx": N_CTX,
        "max_new_tokens": MAX_NEW,
        "near_tie_threshold": NEAR_TIE,
        "bos_token": {"id": bos_id, "text": bos},
        "eos_token": {"id": eos_id, "text": eos},
        "stop_ids": stop_ids,
        "stop_tokens": {str(i): token_text(llm, i) for i in stop_ids},
        "chat_template": template,
        "method": (
            "llama.cpp (llama-cpp-python) on CPU. Chat rendered with the GGUF's "
            "tokenizer.chat_template via jinja2 (trim_blocks, lstrip_blocks, "
            "add_generation_prompt=True, bos_token/eos_token from the vocab); rendered "
            "text tokenized with add_bos=False, special=True. Prompt evaluated in one "
            "batch, then greedy decoding: argmax (lowest id on ties) of the last "
            "position's logits, fed back one token at a time, for at most "
            "max_new_tokens tokens; stops after a token in stop_ids, which is included "
            "as the last continuation id. Per step: top-1 token and logit, top-2 token "
            "and logit, and their gap. first_near_tie is the first step whose gap is "
            "below near_tie_threshold (null if none): a correct implementation with "
            "different float summation order may diverge from that step on, so exact "
            "comparison is meaningful only for the steps before it."
        ),
        "prompts": results,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(results)} prompts to {os.path.relpath(OUT, ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
