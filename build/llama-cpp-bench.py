#!/usr/bin/env python3
"""Reference speed of llama.cpp (via llama-cpp-python) on the pinned model, llama-bench style.

The llama-cpp-python package ships no llama-bench binary, so this measures the same three
figures through the Python binding:
  * pp128, pp512: prompt processing, the whole prompt in one llm.eval() call
    (n_batch = n_ubatch = 512), from an empty KV cache, logits for the last position only;
  * tg128: generation, 128 tokens fed one at a time with llm.eval([tok]) from an empty
    KV cache (no sampling, as llama-bench).
Each figure is measured with n_threads = 1 and 2 (n_threads_batch the same), after one
untimed warm-up run, over REPS timed repetitions with llm.reset() between them, and
reported as mean +/- sample stddev of tokens/s. Token ids are a fixed deterministic
sequence of ordinary (non-special) ids. Python overhead per llm.eval call is included
(small next to a decode step, but it makes tg a slight underestimate of llama-bench).

Usage: /work/venv-lcp/bin/python build/llama-cpp-bench.py [--json OUT] [--threads 1 2]
Run it on an otherwise idle machine: this build uses OpenMP, whose worker threads spin at
barriers, so with n_threads equal to the core count any other busy process makes the
figures collapse (and their stddev explode).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import llama_cpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "build", "cache", "SmolLM2-135M-Instruct.Q4_1.gguf")
REPS = 5
THREADS = (1, 2)
TESTS = (("pp", 128), ("pp", 512), ("tg", 128))


def tokens(n: int, n_vocab: int) -> list:
    # Deterministic spread over the vocabulary, skipping the 17 special ids at the start.
    return [17 + (i * 7919) % (n_vocab - 17) for i in range(n)]


def run_once(llm: llama_cpp.Llama, kind: str, n: int) -> float:
    toks = tokens(n, llm.n_vocab())
    llm.reset()
    if kind == "pp":
        t0 = time.perf_counter()
        llm.eval(toks)
        return time.perf_counter() - t0
    t0 = time.perf_counter()
    for t in toks:
        llm.eval([t])
    return time.perf_counter() - t0


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=list(THREADS),
        help="thread counts to measure (default: 1 2)",
    )
    args = ap.parse_args()

    load = os.getloadavg()
    results = []
    for nt in args.threads:
        llm = llama_cpp.Llama(
            model_path=MODEL,
            n_ctx=1024,
            n_batch=512,
            n_ubatch=512,
            n_threads=nt,
            n_threads_batch=nt,
            logits_all=False,
            verbose=False,
        )
        for kind, n in TESTS:
            run_once(llm, kind, n)  # warm-up
            rates = []
            for _ in range(REPS):
                dt = run_once(llm, kind, n)
                rates.append(n / dt)
            mean = statistics.mean(rates)
            sd = statistics.stdev(rates) if len(rates) > 1 else 0.0
            row = {
                "test": f"{kind}{n}",
                "n_threads": nt,
                "reps": REPS,
                "tokens_per_s_mean": round(mean, 2),
                "tokens_per_s_stddev": round(sd, 2),
                "runs": [round(r, 2) for r in rates],
                "loadavg_1min_after": round(os.getloadavg()[0], 2),
            }
            results.append(row)
            print(f"{row['test']:>6}  threads={nt}  {mean:9.2f} ± {sd:6.2f} tok/s", flush=True)
        llm.close()

    doc = {
        "llama_cpp_python": llama_cpp.__version__,
        "model": os.path.basename(MODEL),
        "cpu": cpu_name(),
        "nproc": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace"),
        "results": results,
    }
    print(f"cpu: {doc['cpu']}  load before {doc['loadavg_before']} after {doc['loadavg_after']}")
    print(f"system_info: {doc['system_info']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
