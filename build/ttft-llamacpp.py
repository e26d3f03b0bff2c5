#!/usr/bin/env python3
"""llama.cpp's side of issue 19's time-to-first-token comparison: load a plaintext GGUF and
process a 50-token prompt, through the llama-cpp-python binding on the libllama that
build/bench-vs-llamacpp builds (the package from the 0.3.36 sdist, its shared libraries in
WORK/llama-build/bin). Prints the medians of REPS runs of each part.

Usage: LLAMA_CPP_LIB_PATH=/tmp/rempart-llamacpp/llama-build/bin \\
       PYTHONPATH=/tmp/rempart-llamacpp/llama_cpp_python-0.3.36:NUMPY_ETC \\
       python3 build/ttft-llamacpp.py GGUF [THREADS] [REPS]
(the binding imports numpy, jinja2, diskcache and typing_extensions: pip install --target).
Rempart's side: `rempart bench -t THREADS -p 50 -n 1 -r 1` on the sealed model, whose `load`
line gives read+verify, unwrap+decrypt and build, and `pp50` the prompt.
"""
import statistics
import sys
import time

import llama_cpp

path = sys.argv[1]
threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
loads, prompts = [], []
for _ in range(reps):
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    t1 = time.perf_counter()
    llm.eval([1000 + (i * 37) % 20000 for i in range(50)])
    t2 = time.perf_counter()
    loads.append((t1 - t0) * 1e3)
    prompts.append((t2 - t1) * 1e3)
    del llm
total = statistics.median(a + b for a, b in zip(loads, prompts))
print(f"llama.cpp load {statistics.median(loads):.0f} ms, prompt50 "
      f"{statistics.median(prompts):.0f} ms, total {total:.0f} ms (medians of {reps}; loads "
      f"{[round(x) for x in loads]}, prompts {[round(x) for x in prompts]})")
