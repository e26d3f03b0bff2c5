// Whether a second thread reading ahead of a first one speeds it (issue 19's contention: a
// helper that warms the shared cache would not block a generation step as a worker inside a
// region does). The first thread sums a 96 MB buffer on 2 MiB pages 30 times; MODE `none`
// runs it alone, `pf` adds a thread prefetching (`_MM_HINT_T0`) and `load` one reading each
// line LEAD bytes (default 4 MiB) ahead of it. Prints the first thread's median and best
// GB/s. Standalone (no crate), not part of the build:
//
//     rustc --edition 2024 -O -C target-cpu=native build/read-ahead.rs -o /tmp/read-ahead
//     for m in none pf load; do /tmp/read-ahead $m; done; /tmp/read-ahead pf 262144
//
// 2026-12-06 (AMD EPYC VM, 2 cores): none 18.4-20.3 GB/s; pf 12.8-14.8 and load 12.9-15.0
// with LEAD from 256 KiB to 16 MiB. The helper slows the reader here.
use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

const LEN: usize = 96 << 20;

unsafe extern "C" {
    fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
    fn madvise(addr: *mut u8, len: usize, advice: i32) -> i32;
}

/// Bytes the reader has read (over all its passes), and the helper's stop.
static POS: AtomicUsize = AtomicUsize::new(0);
static STOP: AtomicBool = AtomicBool::new(false);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_else(|| "none".into());
    let lead: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4 << 20);
    // SAFETY: a fresh private anonymous mapping (PROT_READ|PROT_WRITE, MAP_PRIVATE|
    // MAP_ANONYMOUS), advised MADV_HUGEPAGE; checked against MAP_FAILED below.
    let p = unsafe { mmap(std::ptr::null_mut(), LEN, 3, 0x22, -1, 0) };
    assert!(p as isize != -1, "mmap failed");
    // SAFETY: p..p + LEN is the mapping above.
    unsafe { madvise(p, LEN, 14) };
    // SAFETY: the mapping is LEN bytes, zeroed, aligned to a page, never unmapped.
    let buf: &'static mut [u64] = unsafe { std::slice::from_raw_parts_mut(p.cast(), LEN / 8) };
    for (i, x) in buf.iter_mut().enumerate() {
        *x = i as u64;
    }
    let buf: &'static [u64] = buf;
    let helper = (mode != "none").then(|| {
        let prefetch = mode == "pf";
        std::thread::spawn(move || {
            // How far (in bytes read by the reader, over all passes) the helper has been.
            let mut mine = 0usize;
            let mut sink = 0u64;
            while !STOP.load(Relaxed) {
                let pos = POS.load(Relaxed);
                mine = mine.max(pos);
                if mine >= pos + lead {
                    std::hint::spin_loop();
                    continue;
                }
                let end = (mine + 65536).min(pos + lead);
                for o in (mine..end).step_by(64) {
                    let at = (o % LEN) / 8;
                    if prefetch {
                        // SAFETY: SSE is part of x86-64; a prefetch never faults.
                        unsafe { _mm_prefetch::<_MM_HINT_T0>(buf.as_ptr().add(at).cast()) };
                    } else {
                        // SAFETY: at < LEN / 8: within the shared, read-only buffer.
                        sink = sink.wrapping_add(unsafe { std::ptr::read_volatile(buf.as_ptr().add(at)) });
                    }
                }
                mine = end;
            }
            sink
        })
    });
    let mut rates = vec![];
    let mut total = 0usize;
    let mut s = 0u64;
    for _ in 0..30 {
        let t = Instant::now();
        for c in buf.chunks(8192) {
            let mut acc = [0u64; 4];
            for q in c.chunks_exact(4) {
                for (a, v) in acc.iter_mut().zip(q) {
                    *a = a.wrapping_add(*v);
                }
            }
            s = s.wrapping_add(acc[0] ^ acc[1] ^ acc[2] ^ acc[3]);
            total += 65536;
            POS.store(total, Relaxed);
        }
        rates.push(LEN as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    STOP.store(true, Relaxed);
    if let Some(h) = helper {
        let _ = h.join();
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{mode} lead {lead}: median {:.1} GB/s, best {:.1} (checksum bit {})",
        rates[15],
        rates[29],
        s & 1
    );
}
