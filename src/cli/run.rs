//! `ask`, `tokenize` and `bench` (model): resolve an installed model, verify and unseal it into
//! the locked arena, build the engine from the arena, wipe the arena, then answer.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde_json::json;

use super::{Cli, berr, output};
use crate::bundle::{self, Envelope};
use crate::crypto::Secret;
use crate::engine::{self, Event, Forward, Loaded, Message, Request, SamplingParams};
use crate::error::Result;
use crate::keys::{PassphraseSource, TrustStore};
use crate::secure::{LockStatus, LockedBuf};
use crate::store;

/// How long each loading stage took, and what memory is locked.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct LoadReport {
    pub model: String,
    pub version: u64,
    pub marking: Option<String>,
    pub bundle: String,
    pub bytes: u64,
    pub read_verify_ms: f64,
    pub unwrap_decrypt_ms: f64,
    pub build_ms: f64,
    pub arena_locked: bool,
    pub weights_locked: bool,
}

/// Options shared by the commands that load a model.
pub(crate) struct ModelOpts<'a> {
    pub model: Option<&'a str>,
    pub passphrase: PassphraseSource,
    pub require_mlock: bool,
    pub device: super::DeviceArg,
    pub backend: engine::Backend,
}

/// A loading stage, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Signatures, trust and expiry.
    Verify,
    /// Unwrapping the file key and decrypting into the arena.
    Decrypt,
    /// Building the model from the arena.
    Build,
}

/// Receives (stage, fraction done in 0..=1) from any thread.
pub(crate) type Progress<'a> = &'a (dyn Fn(Stage, f64) + Sync);

/// Unseals the model into the arena and hands the arena to `build`, which keeps it or drops it
/// (a dropped arena is wiped).
/// `held` is an appliance key already unlocked (the terminal UI keeps one while unlocked);
/// without it the key file is read with `o.passphrase`.
fn with_arena<T>(
    cli: &Cli,
    o: &ModelOpts<'_>,
    held: Option<&crate::keys::ApplianceSecret>,
    progress: Progress<'_>,
    build: impl FnOnce(LockedBuf) -> Result<T>,
) -> Result<(T, LoadReport, Secret<32>)> {
    let t0 = Instant::now();
    progress(Stage::Verify, 0.0);
    let trust = TrustStore::load(&cli.trusted_dir())?;
    let inst = store::resolve(&cli.root.join("models"), &trust, o.model)?;
    let path = inst.path.as_path();
    let src = super::open_bundle(path)?;
    let v = Envelope::parse(&src)
        .and_then(|e| e.verify(&trust))
        .map_err(berr(path))?;
    if let Some(e) = v.manifest.expires.filter(|&e| e <= super::now()) {
        return Err(crate::Error::Expired {
            path: path.to_owned(),
            when: super::fmt_time(e),
        });
    }
    let idx = v
        .manifest
        .artifacts
        .iter()
        .position(|a| a.role == bundle::Role::Gguf)
        .ok_or_else(|| {
            crate::Error::Usage(format!("{}: bundle has no GGUF artifact", path.display()))
        })?;
    progress(Stage::Verify, 1.0);
    let loaded_key;
    let appliance = match held {
        Some(k) => k,
        None => {
            loaded_key = super::load_appliance(&cli.root, &o.passphrase)?;
            &loaded_key
        }
    };
    let audit_key = appliance.derive_key(crate::audit::AUDIT_KEY);
    // From here on the audit key is at hand: a failed load is recorded.
    let loaded = (|| -> Result<(T, LoadReport)> {
        let read_verify = t0.elapsed();
        let t1 = Instant::now();
        let len = usize::try_from(v.manifest.artifacts.get(idx).map_or(0, |a| a.pt_len))
            .map_err(|_| crate::Error::Usage("model too large for this machine".into()))?;
        let mut arena = LockedBuf::new(len, o.require_mlock)?;
        let done = std::sync::atomic::AtomicU64::new(0);
        let on_bytes = |n: u64| {
            let d = done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
            progress(Stage::Decrypt, d as f64 / len.max(1) as f64);
        };
        bundle::open_artifact_with_progress(&src, &v, idx, appliance, &mut arena, &on_bytes)
            .map_err(berr(path))?;
        let unwrap_decrypt = t1.elapsed();
        let arena_locked = matches!(arena.lock_status(), LockStatus::Locked);
        let t2 = Instant::now();
        progress(Stage::Build, 0.0);
        let built = build(arena)?;
        progress(Stage::Build, 1.0);
        let lock = crate::secure::mem::lock_current();
        let weights_locked = lock.is_ok();
        if let (true, Err(source)) = (o.require_mlock, lock) {
            return Err(crate::secure::Error::LockRequired {
                len,
                limit: crate::secure::mem::memlock_limit(),
                source,
            }
            .into());
        }
        let report = LoadReport {
            model: v.manifest.name.clone(),
            version: v.manifest.version,
            marking: v.manifest.marking.clone(),
            bundle: path.display().to_string(),
            bytes: len as u64,
            read_verify_ms: read_verify.as_secs_f64() * 1e3,
            unwrap_decrypt_ms: unwrap_decrypt.as_secs_f64() * 1e3,
            build_ms: t2.elapsed().as_secs_f64() * 1e3,
            arena_locked,
            weights_locked,
        };
        crate::audit::append(
            &cli.root.join("audit"),
            &audit_key,
            "model_load",
            json!({
                "model": report.model, "version": report.version, "bundle": report.bundle,
                "arena_locked": report.arena_locked, "weights_locked": report.weights_locked,
                "load_ms": (report.read_verify_ms + report.unwrap_decrypt_ms + report.build_ms) as u64,
            }),
        )?;
        Ok((built, report))
    })();
    let (built, report) = match loaded {
        Ok(x) => x,
        Err(e) => {
            // Best effort: the load error is what the operator must see.
            let _ = crate::audit::append(
                &cli.root.join("audit"),
                &audit_key,
                "load_failed",
                json!({"model": v.manifest.name, "version": v.manifest.version,
                       "class": e.class(), "reason": e.to_string()}),
            );
            return Err(e);
        }
    };
    Ok((built, report, audit_key))
}

/// Loads the installed model for inference.
pub(crate) fn load_model(cli: &Cli, o: &ModelOpts<'_>) -> Result<(Loaded, LoadReport, Secret<32>)> {
    load_model_with(cli, o, None, &|_, _| {})
}

/// [`load_model`] with an already unlocked appliance key and progress reports.
pub(crate) fn load_model_with(
    cli: &Cli,
    o: &ModelOpts<'_>,
    held: Option<&crate::keys::ApplianceSecret>,
    progress: Progress<'_>,
) -> Result<(Loaded, LoadReport, Secret<32>)> {
    let device = device(o.device)?;
    with_arena(cli, o, held, progress, |arena| {
        Ok(engine::load_arena(arena, &device, o.backend)?)
    })
}

/// The candle device for `--device`.
fn device(d: super::DeviceArg) -> Result<candle_core::Device> {
    match d {
        super::DeviceArg::Cpu => Ok(candle_core::Device::Cpu),
        #[cfg(feature = "cuda")]
        super::DeviceArg::Cuda => Ok(candle_core::Device::new_cuda(0).map_err(engine::Error::from)?),
        #[cfg(not(feature = "cuda"))]
        super::DeviceArg::Cuda => Err(crate::Error::Usage(
            "this build has no CUDA support (rebuild with --features cuda; unverified, see SECURITY.md)".into(),
        )),
    }
}

pub(crate) struct AskOpts<'a> {
    pub model: ModelOpts<'a>,
    pub system: Option<&'a str>,
    pub prompt: &'a str,
    pub max_tokens: usize,
    pub params: SamplingParams,
    pub json: bool,
}

fn read_prompt(arg: &str) -> Result<zeroize::Zeroizing<String>> {
    if arg != "-" {
        return Ok(zeroize::Zeroizing::new(arg.to_owned()));
    }
    let mut s = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut s)
        .map_err(|e| {
            crate::Error::Usage(format!(
                "prompt on stdin: {e} (expected UTF-8 text, at most 1 MiB)"
            ))
        })?;
    Ok(s)
}

pub(super) fn ask(cli: &Cli, o: &AskOpts<'_>) -> Result<()> {
    o.params
        .validate()
        .map_err(|e| crate::Error::Usage(e.to_string()))?;
    let prompt = read_prompt(o.prompt)?;
    if prompt.trim().is_empty() {
        return Err(crate::Error::Usage("the prompt is empty".into()));
    }
    let cancel = Arc::new(AtomicBool::new(false));
    // Ctrl-C stops generation cleanly; the answer so far is kept and the stop reason says so.
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&cancel));
    let (loaded, report, audit_key) = load_model(cli, &o.model)?;
    if !o.json && (!report.arena_locked || !report.weights_locked) {
        output::info(format!(
            "warning: the model's memory is NOT locked (RLIMIT_MEMLOCK {}): it could be swapped out; \
             see SECURITY.md (LimitMEMLOCK / CAP_IPC_LOCK) or use --require-mlock",
            crate::secure::mem::memlock_limit()
        ));
    }
    let eng = engine::Engine::start(loaded);
    let mut messages = Vec::new();
    if let Some(s) = o.system {
        messages.push(Message::new("system", s));
    }
    messages.push(Message::new("user", prompt.as_str()));
    let events = eng.submit(Request {
        messages,
        params: o.params.clone(),
        max_tokens: o.max_tokens,
        cancel,
    })?;
    let mut text = zeroize::Zeroizing::new(String::new());
    let mut stdout = std::io::stdout().lock();
    for ev in events {
        match ev {
            Event::Token(t) => {
                text.push_str(&t);
                if !o.json {
                    let _ = stdout.write_all(t.as_bytes());
                    let _ = stdout.flush();
                }
            }
            Event::Done { stop, stats } => {
                // Metadata only: the prompt and answer are recorded as SHA-384, never as text.
                crate::audit::append(
                    &cli.root.join("audit"),
                    &audit_key,
                    "query",
                    json!({
                        "model": report.model,
                        "version": report.version,
                        "tokens_prompt": stats.prompt_tokens,
                        "tokens_generated": stats.generated_tokens,
                        "ms": ((stats.prompt_seconds + stats.generation_seconds) * 1e3) as u64,
                        "stop_reason": stop,
                        "prompt_sha384": hex::encode(crate::crypto::hash::sha384(&[prompt.as_bytes()])),
                        "answer_sha384": hex::encode(crate::crypto::hash::sha384(&[text.as_bytes()])),
                    }),
                )?;
                if o.json {
                    drop(stdout);
                    output::json(&json!({
                        "model": report.model,
                        "version": report.version,
                        "marking": report.marking,
                        "text": text.as_str(),
                        "tokens_prompt": stats.prompt_tokens,
                        "tokens_generated": stats.generated_tokens,
                        "stop_reason": stop,
                        "seed": o.params.seed,
                        "timings": {
                            "read_verify_ms": report.read_verify_ms,
                            "unwrap_decrypt_ms": report.unwrap_decrypt_ms,
                            "build_ms": report.build_ms,
                            "prompt_ms": stats.prompt_seconds * 1e3,
                            "generation_ms": stats.generation_seconds * 1e3,
                            "prompt_tokens_per_s": stats.prompt_tps(),
                            "generation_tokens_per_s": stats.generation_tps(),
                        },
                        "memory": {"arena_locked": report.arena_locked, "weights_locked": report.weights_locked},
                    }));
                } else {
                    let _ = writeln!(stdout);
                    drop(stdout);
                    if stop == engine::StopReason::ContextFull {
                        output::info(format!(
                            "note: the conversation filled the model's context ({} tokens); the answer is cut there",
                            eng.info.context_length
                        ));
                    }
                    output::info(format!(
                        "[{} v{} | {} prompt + {} generated tokens | {:.1} tok/s | stop: {}]",
                        report.model,
                        report.version,
                        stats.prompt_tokens,
                        stats.generated_tokens,
                        stats.generation_tps(),
                        serde_json::to_value(stop)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    ));
                }
                return Ok(());
            }
            Event::Error(e) => {
                let e = crate::Error::from(e);
                let _ = crate::audit::append(
                    &cli.root.join("audit"),
                    &audit_key,
                    "query_failed",
                    json!({"model": report.model, "version": report.version,
                           "class": e.class(), "reason": e.to_string(),
                           "prompt_sha384": hex::encode(crate::crypto::hash::sha384(&[prompt.as_bytes()]))}),
                );
                return Err(e);
            }
        }
    }
    Err(engine::Error::Stopped.into())
}

pub(super) fn tokenize(cli: &Cli, o: &ModelOpts<'_>, text: &str, json_out: bool) -> Result<()> {
    let text = read_prompt(text)?;
    let ((tok, _), _, _) = with_arena(cli, o, None, &|_, _| {}, |arena| {
        Ok(engine::load_tokenizer(arena.as_slice())?)
    })?;
    let ids = tok.encode(&text)?;
    if json_out {
        let pieces: Vec<_> = ids
            .iter()
            .map(|&i| json!({"id": i, "piece": tok.piece(i)}))
            .collect();
        output::json(&json!({"count": ids.len(), "ids": ids, "tokens": pieces}));
    } else {
        for &i in &ids {
            output::line(format!("{i:>6}  {:?}", tok.piece(i)));
        }
        output::info(format!("{} tokens", ids.len()));
    }
    Ok(())
}

fn stats(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// `bench` (model) options.
pub(super) struct BenchOpts {
    pub pp: usize,
    pub tg: usize,
    pub reps: usize,
    pub threads: Option<usize>,
    pub json: bool,
}

pub(super) fn bench_model(cli: &Cli, o: &ModelOpts<'_>, b: &BenchOpts) -> Result<()> {
    match b.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| crate::Error::Usage(format!("cannot start {n} threads: {e}")))?
            .install(|| bench_model_in_pool(cli, o, b)),
        None => bench_model_in_pool(cli, o, b),
    }
}

fn bench_model_in_pool(cli: &Cli, o: &ModelOpts<'_>, b: &BenchOpts) -> Result<()> {
    let (pp, tg, reps, json_out) = (b.pp, b.tg, b.reps, b.json);
    let (mut loaded, report, _) = load_model(cli, o)?;
    let reps = reps.max(1);
    let ctx = loaded.model.context_len();
    if pp + 1 >= ctx || tg + 2 >= ctx {
        return Err(crate::Error::Usage(format!(
            "-p/-n must be below the context size {ctx}"
        )));
    }
    // Prompt tokens: a deterministic spread over the vocabulary, as llama-bench uses random ids.
    let vocab = loaded.tok.vocab_size().max(2) as u32;
    let prompt: Vec<u32> = (0..pp as u32)
        .map(|i| (i.wrapping_mul(7919) % (vocab - 1)) + 1)
        .collect();
    let mut pp_tps = Vec::new();
    let mut tg_tps = Vec::new();
    for _ in 0..reps {
        if pp > 0 {
            let t = Instant::now();
            loaded.model.forward(&prompt, 0)?;
            pp_tps.push(pp as f64 / t.elapsed().as_secs_f64());
        }
        if tg > 0 {
            let mut logits = loaded.model.forward(&[1], 0)?;
            let t = Instant::now();
            for pos in 1..=tg {
                let next = engine::argmax(&logits);
                logits = loaded.model.forward(&[next], pos)?;
            }
            tg_tps.push(tg as f64 / t.elapsed().as_secs_f64());
        }
    }
    let threads = rayon::current_num_threads();
    // Resident memory now, after generation (the arena is gone; the weights, the KV cache and
    // the process remain), and the peak over the whole run (the load included).
    #[allow(
        clippy::disallowed_methods,
        reason = "/proc/self/status is the kernel's, not untrusted input"
    )]
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss = crate::secure::sandbox::status_field(&status, "VmRSS");
    let peak = crate::secure::sandbox::status_field(&status, "VmHWM");
    let (ppm, pps) = stats(&pp_tps);
    let (tgm, tgs) = stats(&tg_tps);
    let info = &loaded.info;
    if json_out {
        output::json(&json!({
            "model": report.model, "architecture": info.architecture, "quantization": info.quantization,
            "backend": loaded.model.backend(), "kernels": loaded.model.kernels(),
            "threads": threads, "repetitions": reps,
            "rss_after_generation": rss, "rss_peak": peak,
            "pp": {"tokens": pp, "tokens_per_s_mean": ppm, "tokens_per_s_stddev": pps, "runs": pp_tps},
            "tg": {"tokens": tg, "tokens_per_s_mean": tgm, "tokens_per_s_stddev": tgs, "runs": tg_tps},
            "load": report,
        }));
    } else {
        let kernels = loaded
            .model
            .kernels()
            .map(|k| format!(", {k} kernels"))
            .unwrap_or_default();
        output::line(format!(
            "model        {} ({} {}, {} weight bytes, {} forward pass{kernels})",
            report.model,
            info.architecture,
            info.quantization,
            info.weight_bytes,
            loaded.model.backend()
        ));
        output::line(format!(
            "load         read+verify {:.1} ms, unwrap+decrypt {:.1} ms, build {:.1} ms",
            report.read_verify_ms, report.unwrap_decrypt_ms, report.build_ms
        ));
        output::line(format!(
            "memory       arena locked: {}, weights locked: {}; resident after the runs {rss}, peak {peak} (load included)",
            report.arena_locked, report.weights_locked
        ));
        if pp > 0 {
            output::line(format!(
                "pp{pp:<9} {ppm:8.1} ± {pps:.1} tokens/s ({threads} threads, {reps} runs)"
            ));
        }
        if tg > 0 {
            output::line(format!(
                "tg{tg:<9} {tgm:8.1} ± {tgs:.1} tokens/s ({threads} threads, {reps} runs)"
            ));
        }
    }
    Ok(())
}
