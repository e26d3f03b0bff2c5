//! Unseal throughput (criterion): parallel C2SP chunk decryption of a 64 MiB artifact into a
//! locked arena, with 1 and 2 rayon threads. `rempart bench --decrypt` reports the same on a
//! 1 GiB payload, next to the opening time of a real bundle.
#![allow(missing_docs, clippy::unwrap_used, reason = "benchmark harness")]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rempart::bundle::{self, Envelope};
use rempart::cli::bench::{synthetic_bundle, synthetic_byte};
use rempart::secure::LockedBuf;

fn decrypt(c: &mut Criterion) {
    const LEN: usize = 64 << 20;
    let s = synthetic_bundle(LEN).unwrap();
    let v = Envelope::parse(&s.sealed)
        .unwrap()
        .verify(&s.trust)
        .unwrap();
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
                pool.install(|| {
                    bundle::open_artifact(&s.sealed, &v, 0, &s.appliance, &mut arena).unwrap()
                })
            });
        });
    }
    g.finish();
    assert!(
        arena
            .as_slice()
            .iter()
            .enumerate()
            .all(|(i, &b)| b == synthetic_byte(i))
    );
}

criterion_group!(benches, decrypt);
criterion_main!(benches);
