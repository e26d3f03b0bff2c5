//! `bench --decrypt`: unseal throughput with 1 and 2 threads on a synthetic payload sealed with
//! throw-away in-memory keys, and optionally the full open of a real bundle.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde_json::json;

use super::args::{DeviceArg, JsonArg, ModelArgs};
use super::{berr, output};
use crate::appliance::load::LoadOpts;
use crate::appliance::open_bundle;
use crate::appliance::{Loaded, Root};
use crate::audit::Source;
use crate::bundle::{self, ArtifactInput, Envelope, RecipientSpec, Role, SealParams, SignerLookup};
use crate::crypto::sig::PublisherPublicKey;
use crate::engine::{self, Forward};
use crate::error::Result;
use crate::keys::{ApplianceSecret, PassphraseSource, PublisherSecret};
use crate::secure::LockedBuf;
use crate::secure::sandbox::FsPolicy;

/// Which forward pass `bench` measures.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum BackendArg {
    /// The lean llama path where it applies, else candle-transformers.
    Auto,
    /// candle-transformers' model.
    Stock,
}

/// `bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which model, and the appliance key's passphrase.
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens to process.
    #[arg(short = 'p', default_value_t = 512)]
    pp: usize,
    /// Tokens to generate.
    #[arg(short = 'n', default_value_t = 128)]
    tg: usize,
    /// Context already held before each measurement, in tokens (llama-bench's `-d`): the
    /// prompt is processed, or the tokens generated, after this many (untimed).
    #[arg(short = 'd', long, default_value_t = 0)]
    depth: usize,
    /// Where inference runs.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceArg,
    /// Measure decryption throughput on a synthetic payload with 1 and 2 threads instead.
    #[arg(long)]
    decrypt: bool,
    /// Synthetic payload size in MiB (--decrypt).
    #[arg(long, default_value_t = 1024)]
    size_mib: usize,
    /// Repetitions.
    #[arg(short = 'r', long, default_value_t = 5)]
    repetitions: usize,
    /// Also time opening this sealed bundle with ROOT's appliance key (--decrypt).
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Worker threads for inference (default: one per CPU, or RAYON_NUM_THREADS).
    #[arg(short = 't', long)]
    threads: Option<usize>,
    /// Forward pass: `auto` (Rempart's lean llama path where it applies) or `stock`
    /// (candle-transformers' model), to compare them.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    #[command(flatten)]
    json: JsonArg,
}

impl BenchArgs {
    pub(super) fn policy(&self, root: &Root) -> FsPolicy {
        super::appliance_policy(root)
            .with_read(self.bundle.iter().cloned())
            .with_read(self.model.passphrase.files())
    }

    pub(super) fn run(&self, root: &Root) -> Result<()> {
        if self.decrypt {
            bench_decrypt(
                root,
                self.size_mib,
                self.repetitions,
                self.bundle.as_deref(),
                &self.model.passphrase.source(),
                self.json.json,
            )
        } else {
            bench_model(root, self)
        }
    }
}

/// A trust policy of exactly one publisher key (for synthetic bundles).
#[derive(Debug)]
pub struct OneSigner([u8; 8], PublisherPublicKey);

impl SignerLookup for OneSigner {
    fn trusted(&self, key_id: &[u8; 8]) -> Option<&PublisherPublicKey> {
        (key_id == &self.0).then_some(&self.1)
    }
    fn threshold(&self) -> usize {
        1
    }
}

/// A sealed synthetic payload with the throw-away keys that open it.
#[derive(Debug)]
pub struct Synthetic {
    /// The whole bundle.
    pub sealed: Vec<u8>,
    /// The appliance it is sealed for.
    pub appliance: ApplianceSecret,
    /// A trust policy holding its publisher.
    pub trust: OneSigner,
    /// The plaintext pattern's length.
    pub len: usize,
}

/// The byte at offset `i` of the synthetic payload.
pub fn synthetic_byte(i: usize) -> u8 {
    (i as u8).wrapping_mul(31) ^ (i >> 12) as u8
}

/// Seals `len` bytes of [`synthetic_byte`] for a fresh in-memory appliance key.
pub fn synthetic_bundle(len: usize) -> Result<Synthetic> {
    let internal = |e: crate::crypto::Error| crate::Error::from(crate::keys::Error::from(e));
    let appliance = ApplianceSecret::generate().map_err(internal)?;
    let publisher = PublisherSecret::generate().map_err(internal)?;
    let payload: Vec<u8> = (0..len).map(synthetic_byte).collect();
    let parts = bundle::seal(
        &SealParams {
            name: "bench".into(),
            version: 1,
            created: 1,
            expires: None,
            marking: None,
            architecture: None,
            quantization: None,
            targets: vec![],
            aibom: None,
        },
        &[ArtifactInput {
            role: Role::Gguf,
            plaintext: &payload,
        }],
        &[RecipientSpec::Kw {
            key_id: appliance.key_id(),
            kek: appliance.kek(),
        }],
        &[(publisher.key_id(), publisher.signing_key())],
        &|_| {},
    )
    .map_err(berr(Path::new("<synthetic>")))?;
    let trust = OneSigner(publisher.key_id(), publisher.signing_key().public());
    Ok(Synthetic {
        sealed: parts.concat(),
        appliance,
        trust,
        len,
    })
}

fn stats(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| crate::Error::Threads {
            threads,
            reason: e.to_string(),
        })
}

fn bench_decrypt(
    root: &Root,
    size_mib: usize,
    reps: usize,
    real: Option<&Path>,
    pass: &PassphraseSource,
    json_out: bool,
) -> Result<()> {
    let reps = reps.max(1);
    let len = size_mib
        .checked_mul(1 << 20)
        .ok_or_else(|| crate::Error::Usage("--size-mib too large".into()))?;
    output::info(format!("sealing a {size_mib} MiB synthetic payload..."));
    let Synthetic {
        sealed,
        appliance,
        trust,
        ..
    } = synthetic_bundle(len)?;
    let here = Path::new("<synthetic>");
    let mut rows = Vec::new();
    let mut locked = String::new();
    for threads in [1usize, 2] {
        let p = pool(threads)?;
        let mut gbs = Vec::with_capacity(reps);
        for _ in 0..reps {
            let r: Result<f64> = p.install(|| {
                let env = Envelope::parse(&sealed).map_err(berr(here))?;
                let v = env.verify(&trust).map_err(berr(here))?;
                let mut arena = LockedBuf::new(len, false)?;
                let t = Instant::now();
                bundle::open_artifact(&sealed, &v, 0, &appliance, &mut arena)
                    .map_err(berr(here))?;
                let secs = t.elapsed().as_secs_f64();
                locked = format!("{:?}", arena.lock_status());
                Ok(len as f64 / secs / 1e9)
            });
            gbs.push(r?);
        }
        let (mean, sd) = stats(&gbs);
        output::info(format!(
            "decrypt {size_mib} MiB, {threads} thread(s): {mean:.2} ± {sd:.2} GB/s over {reps} runs"
        ));
        rows.push(
            json!({"threads": threads, "gb_per_s_mean": mean, "gb_per_s_stddev": sd, "runs": gbs}),
        );
    }
    let mut real_json = serde_json::Value::Null;
    if let Some(path) = real {
        let key = root.unlock(pass)?;
        let trust = root.trust()?;
        let mut ms = Vec::with_capacity(reps);
        let mut size = 0;
        for _ in 0..reps {
            let t = Instant::now();
            let src = open_bundle(path)?;
            let env = Envelope::parse(&src).map_err(berr(path))?;
            let v = env.verify(&trust).map_err(berr(path))?;
            let a = v
                .manifest
                .artifacts
                .first()
                .ok_or_else(|| crate::Error::NoModelArtifact {
                    path: path.to_owned(),
                })?;
            size = a.pt_len;
            let mut arena = LockedBuf::new(usize::try_from(a.pt_len).unwrap_or(usize::MAX), false)?;
            bundle::open_artifact(&src, &v, 0, &key, &mut arena).map_err(berr(path))?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (mean, sd) = stats(&ms);
        output::info(format!(
            "open {} ({size} bytes: parse, signatures, unwrap, commitment, decrypt into locked arena): {mean:.1} ± {sd:.1} ms over {reps} runs",
            path.display()
        ));
        real_json = json!({"file": path.display().to_string(), "bytes": size, "ms_mean": mean, "ms_stddev": sd, "runs_ms": ms});
    }
    output::info(format!("arena: {locked}"));
    if json_out {
        output::json(
            &json!({"decrypt": rows, "payload_mib": size_mib, "open_bundle": real_json, "arena": locked}),
        );
    }
    Ok(())
}

fn bench_model(root: &Root, b: &BenchArgs) -> Result<()> {
    match b.threads {
        Some(n) => pool(n.max(1))?.install(|| bench_model_in_pool(root, b)),
        None => bench_model_in_pool(root, b),
    }
}

fn bench_model_in_pool(root: &Root, b: &BenchArgs) -> Result<()> {
    let (pp, tg, reps, json_out) = (b.pp, b.tg, b.repetitions, b.json.json);
    let depth = b.depth;
    let o = LoadOpts {
        require_mlock: false,
        device: b.device.into(),
        backend: match b.backend {
            BackendArg::Auto => engine::Backend::Auto,
            BackendArg::Stock => engine::Backend::Stock,
        },
        source: Source::Bench,
    };
    let Loaded {
        built: mut loaded,
        report,
        ..
    } = super::ask::load(root, &b.model, &o)?;
    let reps = reps.max(1);
    let ctx = loaded.model.context_len();
    if depth + pp + 1 >= ctx || depth + tg + 2 >= ctx {
        return Err(crate::Error::Usage(format!(
            "-d plus -p or -n must be below the context size {ctx}"
        )));
    }
    // Prompt tokens: a deterministic spread over the vocabulary, as llama-bench uses random ids.
    let vocab = loaded.tok.vocab_size().max(2) as u32;
    let spread = |n: usize, salt: u32| -> Vec<u32> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(7919).wrapping_add(salt) % (vocab - 1)) + 1)
            .collect()
    };
    let prompt = spread(pp, 0);
    // The context held before each measurement (`-d`), untimed.
    let held = spread(depth.max(1), 104_729);
    let mut pp_tps = Vec::new();
    let mut tg_tps = Vec::new();
    for _ in 0..reps {
        if pp > 0 {
            if depth > 0 {
                loaded.model.forward(&held, 0)?;
            }
            let t = Instant::now();
            loaded.model.forward(&prompt, depth)?;
            pp_tps.push(pp as f64 / t.elapsed().as_secs_f64());
        }
        if tg > 0 {
            let start = held.len();
            let mut logits = loaded.model.forward(&held, 0)?;
            let t = Instant::now();
            for pos in start..start + tg {
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
            "threads": threads, "repetitions": reps, "depth": depth,
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
        let at = if depth > 0 {
            format!(" @ d{depth}")
        } else {
            String::new()
        };
        if pp > 0 {
            output::line(format!(
                "pp{pp:<9} {ppm:8.1} ± {pps:.1} tokens/s ({threads} threads, {reps} runs{at})"
            ));
        }
        if tg > 0 {
            output::line(format!(
                "tg{tg:<9} {tgm:8.1} ± {tgs:.1} tokens/s ({threads} threads, {reps} runs{at})"
            ));
        }
    }
    Ok(())
}
