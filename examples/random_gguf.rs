//! Writes a GGUF of a real model's shape with pseudo-random weights, quantised by candle's own
//! quantisers: speed and memory do not depend on the values, so this stands in for models too
//! large to carry (the GPU machine takes 64 MiB per run). A development tool, not an appliance
//! command.
//!
//! `cargo run --release --example random_gguf -- SHAPE DTYPE OUT [SEED]`
//! - SHAPE: `tiny` (width 256, 2 blocks), `llama-1b` (Llama-3.2-1B's shape), `mistral-7b`,
//!   `qwen2-0.5b` (Qwen2.5-0.5B's), `qwen3-0.6b` (Qwen3-0.6B's), `phi3-mini` (Phi-3-mini's)
//! - DTYPE: `q4_k`, `q8_0`, `q4_0`, `q4_1`, `q6_k`, `f16`, `f32`

#![allow(clippy::print_stderr, reason = "a command-line tool reports on stderr")]

use anyhow::{Context, bail};
use candle_core::quantized::GgmlDType;
use rempart::engine::testing::{
    LLAMA_1B, MISTRAL_7B, PHI3_MINI, QWEN2_05B, QWEN3_06B, TINY, random_gguf,
};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [shape, dtype, out, rest @ ..] = args.as_slice() else {
        bail!(
            "usage: random_gguf SHAPE(tiny|llama-1b|mistral-7b|qwen2-0.5b|qwen3-0.6b|phi3-mini) DTYPE(q4_k|q8_0|q4_0|q4_1|q6_k|f16|f32) OUT [SEED]"
        );
    };
    let shape = match shape.as_str() {
        "tiny" => TINY,
        "llama-1b" => LLAMA_1B,
        "mistral-7b" => MISTRAL_7B,
        "qwen2-0.5b" => QWEN2_05B,
        "qwen3-0.6b" => QWEN3_06B,
        "phi3-mini" => PHI3_MINI,
        s => bail!("unknown shape {s}"),
    };
    let dtype = match dtype.as_str() {
        "q4_k" => GgmlDType::Q4K,
        "q6_k" => GgmlDType::Q6K,
        "q8_0" => GgmlDType::Q8_0,
        "q4_0" => GgmlDType::Q4_0,
        "q4_1" => GgmlDType::Q4_1,
        "f16" => GgmlDType::F16,
        "f32" => GgmlDType::F32,
        d => bail!("unknown dtype {d}"),
    };
    let seed = rest
        .first()
        .map(|s| s.parse())
        .transpose()
        .context("SEED")?
        .unwrap_or(1);
    let t = std::time::Instant::now();
    let bytes = random_gguf(&shape, dtype, seed);
    std::fs::write(out, &bytes).with_context(|| out.clone())?;
    eprintln!(
        "{out}: {} ({:?}), {} bytes in {:.1} s",
        shape.name,
        dtype,
        bytes.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
