// Memory read bandwidth of this machine, on 4 KiB or 2 MiB pages, split across THREADS
// threads: the ceiling of generation speed, and of its 1 -> 2 thread scaling. Prints the
// median and best of 30 passes. Standalone (no crate), not part of the build:
//
//     rustc --edition 2024 -O -C target-cpu=native build/stream-bandwidth.rs -o /tmp/stream-bandwidth
//     for t in 1 2; do for p in small huge; do /tmp/stream-bandwidth $t $p; done; done
//
// Each buffer is MB megabytes (the fourth argument), by default STREAM's rule: at least four
// times the last-level cache (read from /sys), and at least 96 MB (the default model's
// weights). Buffers that fit in the cache measure the cache, not the memory: the 2-core
// Sapphire Rapids-class VM of 2026-12 reports a 480 MiB L3, so that 96 MB buffers were read
// partly from it.
//
// Session 8 (AMD EPYC VM, 2 cores; 96 MB buffers and the old read loop, which prefetched
// 256 bytes ahead with _MM_HINT_NTA): 16-17 / 24-25 GB/s on 1 / 2 threads with small pages,
// 20-21 / 28-31 GB/s with huge pages.
//
// With a third argument `triad` (`read`, or nothing, for the read), STREAM's triad instead
// (a[i] = b[i] + 3 c[i] over three arrays of f64, 24 bytes counted per element as STREAM
// counts them: two read, one written, the write's read for ownership not counted), the
// figure issue 19 names:
//
//     /tmp/stream-bandwidth 2 huge triad
use std::arch::x86_64::{_MM_HINT_T0, _MM_HINT_T1, _mm_prefetch};
use std::time::Instant;

/// The least buffer size, in MB.
const MIN_MB: usize = 96;

/// STREAM's rule: four times the last-level cache's size (the largest `cache/index*/size` of
/// CPU 0 in sysfs), at least [`MIN_MB`].
fn default_mb() -> usize {
    let llc_kib = (0..8)
        .filter_map(|i| {
            std::fs::read_to_string(format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size"))
                .ok()
        })
        .filter_map(|s| {
            s.trim()
                .strip_suffix('K')
                .and_then(|k| k.parse::<usize>().ok())
        })
        .max()
        .unwrap_or(0);
    (4 * llc_kib).div_ceil(1024).max(MIN_MB)
}

unsafe extern "C" {
    fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
    fn madvise(addr: *mut u8, len: usize, advice: i32) -> i32;
}

/// An `mb` MB anonymous mapping filled with ones, advised MADV_HUGEPAGE first if `huge`.
fn buffer(mb: usize, huge: bool) -> &'static mut [u64] {
    let len = mb << 20;
    // SAFETY: a fresh private anonymous mapping (PROT_READ|PROT_WRITE, MAP_PRIVATE|
    // MAP_ANONYMOUS), checked, then written in full before it is read; never unmapped.
    unsafe {
        let p = mmap(std::ptr::null_mut(), len, 3, 0x22, -1, 0);
        assert!(p as isize != -1, "mmap failed");
        if huge {
            assert_eq!(madvise(p, len, 14), 0, "MADV_HUGEPAGE refused");
        }
        std::ptr::write_bytes(p, 1, len);
        std::slice::from_raw_parts_mut(p.cast::<u64>(), len / 8)
    }
}

/// Reads one word in each 64-byte line (the whole line comes in), prefetching ahead as the
/// engine's stripe kernels do (2048 bytes ahead into L1, 6144 into L2).
fn read(b: &[u64]) -> u64 {
    let mut acc = 0u64;
    for (i, line) in b.chunks_exact(8).enumerate() {
        let p = b.as_ptr().wrapping_add(i * 8);
        // SAFETY: a prefetch is a hint that never faults.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(256).cast());
            _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(768).cast());
        }
        acc = acc.wrapping_add(line[0] ^ line[7]);
    }
    acc
}

/// STREAM's triad over `threads` shares of three buffers: GB/s as STREAM counts them.
fn triad(threads: usize, a: &mut [u64], b: &[u64], c: &[u64]) -> f64 {
    let chunk = a.len().div_ceil(threads);
    let t = Instant::now();
    std::thread::scope(|s| {
        for ((a, b), c) in a
            .chunks_mut(chunk)
            .zip(b.chunks(chunk))
            .zip(c.chunks(chunk))
        {
            s.spawn(move || {
                for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                    let (b, c) = (f64::from_bits(*b), f64::from_bits(*c));
                    *a = (b + 3.0 * c).to_bits();
                }
            });
        }
    });
    std::hint::black_box(&a);
    3.0 * (a.len() * 8) as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let huge = args.next().as_deref() == Some("huge");
    let is_triad = args.next().as_deref() == Some("triad");
    let mb = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(default_mb);
    let mut rates: Vec<f64> = if is_triad {
        let (a, b, c) = (buffer(mb, huge), buffer(mb, huge), buffer(mb, huge));
        (0..30).map(|_| triad(threads, a, b, c)).collect()
    } else {
        let b: &[u64] = buffer(mb, huge);
        let chunk = b.len().div_ceil(threads);
        (0..30)
            .map(|_| {
                let t = Instant::now();
                std::thread::scope(|s| {
                    for c in b.chunks(chunk) {
                        s.spawn(move || std::hint::black_box(read(c)));
                    }
                });
                (mb << 20) as f64 / t.elapsed().as_secs_f64() / 1e9
            })
            .collect()
    };
    rates.sort_by(f64::total_cmp);
    let pages = if huge { "2 MiB" } else { "4 KiB" };
    let what = if is_triad { ", triad" } else { "" };
    println!(
        "{threads} thread(s), {pages} pages{what}, {mb} MB: median {:.1} GB/s, best {:.1}",
        rates[rates.len() / 2],
        rates[rates.len() - 1]
    );
}
