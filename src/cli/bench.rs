//! `bench --decrypt`: unseal throughput with 1 and 2 threads on a synthetic payload sealed with
//! throw-away in-memory keys, and optionally the full open of a real bundle.

use std::path::Path;
use std::time::Instant;

use serde_json::json;

use super::{Cli, berr, output};
use crate::bundle::{self, ArtifactInput, Envelope, RecipientSpec, Role, SealParams, SignerLookup};
use crate::crypto::sig::PublisherPublicKey;
use crate::error::Result;
use crate::keys::{ApplianceSecret, PassphraseSource, PublisherSecret, TrustStore};
use crate::secure::LockedBuf;

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
        .map_err(|e| crate::Error::Usage(format!("cannot start {threads} threads: {e}")))
}

pub(super) fn bench(
    cli: &Cli,
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
        let key = super::load_appliance(&cli.root, pass)?;
        let trust = TrustStore::load(&cli.trusted_dir())?;
        let mut ms = Vec::with_capacity(reps);
        let mut size = 0;
        for _ in 0..reps {
            let t = Instant::now();
            let src = super::open_bundle(path)?;
            let env = Envelope::parse(&src).map_err(berr(path))?;
            let v = env.verify(&trust).map_err(berr(path))?;
            let a = v
                .manifest
                .artifacts
                .first()
                .ok_or_else(|| crate::Error::Usage("bundle has no artifact".into()))?;
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
