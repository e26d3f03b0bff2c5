//! Unseal throughput (criterion): parallel C2SP chunk decryption of a 64 MiB artifact into a
//! locked arena, with 1 and 2 rayon threads. `rempart bench --decrypt` reports the same on a
//! 1 GiB payload, next to the opening time of a real bundle.
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark harness")]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rempart::bundle::{
    self, ArtifactInput, Envelope, RecipientSpec, Role, SealParams, SignerLookup,
};
use rempart::crypto::sig::PublisherPublicKey;
use rempart::keys::{ApplianceSecret, PublisherSecret};
use rempart::secure::LockedBuf;

struct One([u8; 8], PublisherPublicKey);
impl SignerLookup for One {
    fn trusted(&self, id: &[u8; 8]) -> Option<&PublisherPublicKey> {
        (id == &self.0).then_some(&self.1)
    }
    fn threshold(&self) -> usize {
        1
    }
}

fn decrypt(c: &mut Criterion) {
    const LEN: usize = 64 << 20;
    let app = ApplianceSecret::generate().unwrap();
    let publisher = PublisherSecret::generate().unwrap();
    let pt: Vec<u8> = (0..LEN).map(|i| (i as u8) ^ (i >> 9) as u8).collect();
    let sealed = bundle::seal(
        &SealParams {
            name: "bench".into(),
            version: 1,
            created: 1,
            expires: None,
            marking: None,
            targets: vec![],
        },
        &[ArtifactInput {
            role: Role::Gguf,
            plaintext: &pt,
        }],
        &[RecipientSpec::Kw {
            key_id: app.key_id(),
            kek: app.kek(),
        }],
        &[(publisher.key_id(), publisher.signing_key())],
        &|_| {},
    )
    .unwrap()
    .concat();
    let trust = One(publisher.key_id(), publisher.signing_key().public());
    let v = Envelope::parse(&sealed).unwrap().verify(&trust).unwrap();
    let mut arena = LockedBuf::new(LEN, false).unwrap();
    let mut g = c.benchmark_group("unseal_64MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(20);
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        g.bench_function(format!("{threads}_threads"), |b| {
            b.iter(|| {
                pool.install(|| bundle::open_artifact(&sealed, &v, 0, &app, &mut arena).unwrap())
            });
        });
    }
    g.finish();
    assert_eq!(arena.as_slice(), &pt[..]);
}

criterion_group!(benches, decrypt);
criterion_main!(benches);
