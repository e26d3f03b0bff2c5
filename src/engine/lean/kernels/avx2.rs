//! The AVX2 kernels (x86-64-v3: AVX2, FMA and F16C): the block dot products of `Q4_*` and
//! `Q8_0` rows (`maddubs`/`madd` per block), and a generation step's attention sums over the
//! f16 cache. (The AVX2 activation quantisation is with the portable one, in `quant`.)
//!
//! # Safety
//! The `unsafe` here is unaligned loads (and stores) from slices whose lengths `Rows::new`
//! checked before any kernel runs (checked again next to the loads), or that the function
//! checks itself; the callers run these functions only where [`Level::best`] detected AVX2,
//! FMA and F16C.
//!
//! [`Level::best`]: crate::engine::lean::level::Level::best

#![allow(
    unsafe_code,
    reason = "SIMD kernels; each block says why it is in bounds and supported"
)]

use std::arch::x86_64::*;

use half::f16;

use super::rows::{AVX2_PREFETCH_ROWS, Lens, Out, Rows, each_row, fits_for, fits_k};
use crate::engine::lean::blocks::{BLOCK, Kind, SUPER, fifth_bits, k4_scales_mins};
use crate::engine::lean::quant::Y;

/// Every row of `rs`, AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_avx2<const N: usize>(kind: Kind, rs: Rows<'_>, ys: &[Y<'_>; N], out: Out<'_>) {
    // The kernels' loads rely on this (checked again here, next to them).
    if !fits_for(kind, rs.nb, ys) {
        out.out.fill(0.0);
        return;
    }
    match kind {
        Kind::Q8_0 => each_row(rs, out, AVX2_PREFETCH_ROWS, |l| q8_avx2(l, ys)),
        Kind::Q4K | Kind::Q5K => each_row(rs, out, AVX2_PREFETCH_ROWS, |l| {
            k45_avx2(kind == Kind::Q5K, l, ys)
        }),
        Kind::Q6K => each_row(rs, out, AVX2_PREFETCH_ROWS, |l| q6k_avx2(l, ys)),
        _ => each_row(rs, out, AVX2_PREFETCH_ROWS, |l| q4_avx2(l, ys)),
    }
}

/// `kernels::key_scores` in AVX2 (`q.len()` a multiple of 8; `out.len()` scores): per key, eight
/// lanes of products added chunk after chunk, then the lanes summed in order, as
/// `dot_f16` does, without a call and a conversion buffer per key. Eight keys at a time have
/// their eight vectors of lanes transposed, so that the in-order sums of the eight keys are
/// seven vector additions (summing each key's lanes one by one was most of a long prompt's
/// attention).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn key_scores(q: &[f32], keys: &[f16], scale: f32, out: &mut [f32]) {
    let hd = q.len();
    if !hd.is_multiple_of(8) || keys.len() < out.len() * hd {
        out.fill(0.0);
        return;
    }
    let eights = out.len() / 8;
    let sv = _mm256_set1_ps(scale);
    for e in 0..eights {
        let mut acc = [_mm256_setzero_ps(); 8];
        for c in (0..hd).step_by(8) {
            // SAFETY: c + 8 <= hd values of `q`.
            let qv = unsafe { _mm256_loadu_ps(q.as_ptr().add(c)) };
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: key 8e + j < out.len(), so (8e + j) * hd + c + 8 <= keys.len()
                // (checked above).
                let kv = unsafe {
                    _mm256_cvtph_ps(_mm_loadu_si128(
                        keys.as_ptr().add((8 * e + j) * hd + c).cast(),
                    ))
                };
                *a = _mm256_add_ps(*a, _mm256_mul_ps(qv, kv));
            }
        }
        // Lane j of t[i] is lane i of key j's sums: adding t[0], t[1], ... in order sums each
        // key's lanes in order.
        let t = transpose8(acc.map(|a| _mm256_castps_si256(a))).map(|v| _mm256_castsi256_ps(v));
        let mut sum = _mm256_add_ps(t[0], t[1]);
        for ti in &t[2..] {
            sum = _mm256_add_ps(sum, *ti);
        }
        // SAFETY: 8e + 8 <= out.len().
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * e), _mm256_mul_ps(sum, sv)) };
    }
    for (p, o) in out.iter_mut().enumerate().skip(8 * eights) {
        let mut acc = _mm256_setzero_ps();
        for c in (0..hd).step_by(8) {
            // SAFETY: `c + 8 <= hd` values of `q`, and `p * hd + c + 8 <= keys.len()`
            // (checked above for every `p < out.len()`).
            let (qv, kv) = unsafe {
                (
                    _mm256_loadu_ps(q.as_ptr().add(c)),
                    _mm256_cvtph_ps(_mm_loadu_si128(keys.as_ptr().add(p * hd + c).cast())),
                )
            };
            acc = _mm256_add_ps(acc, _mm256_mul_ps(qv, kv));
        }
        let mut lanes = [0f32; 8];
        // SAFETY: 8 values into the 8 of `lanes`.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        *o = lanes.iter().sum::<f32>() * scale;
    }
}

/// `kernels::weighted_values` in AVX2 (`o.len()` a multiple of 32): 32 outputs at a time held in
/// four registers across the positions (`o += w * v`, multiplied then added, in the
/// order of the positions, as `axpy_f16` does).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn weighted_values(w: &[f32], vals: &[f16], o: &mut [f32]) {
    let hd = o.len();
    if !hd.is_multiple_of(32) {
        return;
    }
    let n = w.len().min(vals.len() / hd);
    for c in (0..hd).step_by(32) {
        let mut acc = [_mm256_setzero_ps(); 4];
        for (p, wp) in w.iter().take(n).enumerate() {
            let wv = _mm256_set1_ps(*wp);
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: `p < n` so `p * hd + c + 8 * j + 8 <= n * hd <= vals.len()`.
                let v = unsafe {
                    _mm256_cvtph_ps(_mm_loadu_si128(
                        vals.as_ptr().add(p * hd + c + 8 * j).cast(),
                    ))
                };
                *a = _mm256_add_ps(*a, _mm256_mul_ps(wv, v));
            }
        }
        for (j, a) in acc.iter().enumerate() {
            // SAFETY: `c + 8 * j + 8 <= hd = o.len()`.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr().add(c + 8 * j), *a) };
        }
    }
}

/// The 8 × 8 transposition of 32-bit lanes: lane `k` of `a[i]` goes to lane `i` of `a[k]`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn transpose8(a: [__m256i; 8]) -> [__m256i; 8] {
    let lo32 = |x, y| _mm256_unpacklo_epi32(x, y);
    let hi32 = |x, y| _mm256_unpackhi_epi32(x, y);
    // t: pairs of rows, lanes [k, k] for k in (0, 1 | 4, 5) and (2, 3 | 6, 7).
    let t = [
        lo32(a[0], a[1]),
        hi32(a[0], a[1]),
        lo32(a[2], a[3]),
        hi32(a[2], a[3]),
        lo32(a[4], a[5]),
        hi32(a[4], a[5]),
        lo32(a[6], a[7]),
        hi32(a[6], a[7]),
    ];
    let lo64 = |x, y| _mm256_unpacklo_epi64(x, y);
    let hi64 = |x, y| _mm256_unpackhi_epi64(x, y);
    // u[j] (rows 0-3) and u[4 + j] (rows 4-7): lane k = j in the low half, 4 + j in the high.
    let u = [
        lo64(t[0], t[2]),
        hi64(t[0], t[2]),
        lo64(t[1], t[3]),
        hi64(t[1], t[3]),
        lo64(t[4], t[6]),
        hi64(t[4], t[6]),
        lo64(t[5], t[7]),
        hi64(t[5], t[7]),
    ];
    [
        _mm256_permute2x128_si256::<0x20>(u[0], u[4]),
        _mm256_permute2x128_si256::<0x20>(u[1], u[5]),
        _mm256_permute2x128_si256::<0x20>(u[2], u[6]),
        _mm256_permute2x128_si256::<0x20>(u[3], u[7]),
        _mm256_permute2x128_si256::<0x31>(u[0], u[4]),
        _mm256_permute2x128_si256::<0x31>(u[1], u[5]),
        _mm256_permute2x128_si256::<0x31>(u[2], u[6]),
        _mm256_permute2x128_si256::<0x31>(u[3], u[7]),
    ]
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Sum over a block of unsigned `x` times signed `y`, as 8 float lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn mul_sum_us8(x: __m256i, y: __m256i) -> __m256 {
    let p16 = _mm256_maddubs_epi16(x, y);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
}

/// 32 bytes at `p + at`.
///
/// # Safety
/// `at + 32 <= len` of the slice `p` points into.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn load256<T>(p: *const T, at: usize) -> __m256i {
    const { assert!(size_of::<T>() == 1) };
    // SAFETY: in bounds by the caller's contract; the load is unaligned.
    unsafe { _mm256_loadu_si256(p.add(at).cast()) }
}

/// The fifth bits of a `Q5_*` block as bytes: 0x10 for weight j where bit j of `h` is set.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn fifth_bytes(h: u32) -> __m256i {
    // Byte j takes the byte of `h` holding bit j, then keeps that bit alone: OR-ing every
    // other bit of the byte in, it is 0xFF exactly when the bit was set.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(h as i32),
        _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let others = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi8(-1));
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// `n` (at most 8) f32 from `v[c..]` as lanes, zero past `n` (a row's last chunk of blocks
/// has fewer than eight); all zero if `v` does not hold them.
#[inline]
#[target_feature(enable = "avx2")]
fn f32x8(v: &[f32], c: usize, n: usize) -> __m256 {
    if n > 8 || v.len() < c + n {
        return _mm256_setzero_ps();
    }
    let p = v[c..].as_ptr();
    if n == 8 {
        // SAFETY: v[c..c + 8] is in bounds (checked above).
        unsafe { _mm256_loadu_ps(p) }
    } else {
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        // SAFETY: the lanes below n are in bounds (checked above); masked-out lanes are
        // not read (a masked load does not fault on them).
        unsafe { _mm256_maskload_ps(p, mask) }
    }
}

/// `n` (even, at most 8) f16 scales from `v[c..]` as f32 lanes (one conversion for the
/// eight), zero past `n`; all zero if `v` does not hold them.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn f16x8(v: &[f16], c: usize, n: usize) -> __m256 {
    if n > 8 || !n.is_multiple_of(2) || v.len() < c + n {
        return _mm256_setzero_ps();
    }
    let p = v[c..].as_ptr();
    let h = if n == 8 {
        // SAFETY: v[c..c + 8] is in bounds (checked above): 16 bytes.
        unsafe { _mm_loadu_si128(p.cast()) }
    } else {
        // Pairs of f16 as 32-bit lanes (n is even).
        let mask = _mm_cmpgt_epi32(_mm_set1_epi32((n / 2) as i32), _mm_setr_epi32(0, 1, 2, 3));
        // SAFETY: the pairs below n / 2 are in bounds (checked above); masked-out lanes are
        // not read.
        unsafe { _mm_maskload_epi32(p.cast(), mask) }
    };
    _mm256_cvtph_ps(h)
}

/// Rows of 32-weight blocks, AVX2: per chunk of eight blocks, the weights' and each token's
/// activation scales multiplied in one vector (the f16 scales converted eight at once), and
/// the offsets (`Q4_1`, `Q5_1` minimums, or `Q4_0`'s -8 and `Q5_0`'s -16 times the scale)
/// times the activations' block sums in one more; per block, `maddubs`/`madd` of its 32
/// integers (`expand`: unsigned, and the signs the activations are to take, if any) with
/// each token's 32 activations, converted and scaled by its product. Scalar conversions and
/// products per block were most of a generation step's kernel time on a 1B model.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn blocks_avx2<const N: usize>(
    l: Lens<'_>,
    ys: &[Y<'_>; N],
    offset: Option<f32>,
    expand: impl Fn(usize) -> (__m256i, __m256i, Option<(__m256i, __m256i)>),
) -> [f32; N] {
    // Two accumulators per token for a few tokens (a generation step: the block pairs' sums
    // then do not wait on each other's additions), one for more, the offsets' products added
    // into it too: two per token and one more for the offsets held 24 vectors for eight
    // tokens, more than the 16 registers, and their spills to the stack were a fifth of a
    // prompt's kernel time. (`[1]` of a token stays zero when it has one.)
    let second = usize::from(N <= 4);
    let mut acc = [[_mm256_setzero_ps(); 2]; N];
    let mut c = 0;
    while c < l.nb {
        let n = (l.nb - c).min(8);
        let dw = f16x8(l.d, c, n);
        let mw = match (l.m, offset) {
            (Some(m), _) => Some(f16x8(m, c, n)),
            (None, Some(k)) => Some(_mm256_mul_ps(dw, _mm256_set1_ps(-k))),
            (None, None) => None,
        };
        // The products kept in memory: each block's is then one broadcast from memory (a
        // load, beside the two of the activations) instead of a lane permute (an ALU
        // operation beside the four of the block's product).
        let mut sc = [[0f32; 8]; N];
        for t in 0..N {
            // SAFETY: sc[t] is 8 f32, 32 bytes; the store is unaligned.
            unsafe {
                _mm256_storeu_ps(sc[t].as_mut_ptr(), _mm256_mul_ps(dw, f32x8(ys[t].d, c, n)))
            };
            if let Some(mw) = mw {
                acc[t][0] = _mm256_fmadd_ps(mw, f32x8(ys[t].s, c, n), acc[t][0]);
            }
        }
        // n is even: nb is (Lens), and so is every chunk's start.
        let mut p = 0;
        while p + 2 <= n {
            let blk = c + p;
            let (xa, xb, signs) = expand(blk);
            for t in 0..N {
                // SAFETY: every token's qs holds 32 * nb bytes (Lens) and blk + 2 <= nb.
                let (ya, yb) = unsafe {
                    (
                        load256(ys[t].qs.as_ptr(), blk * 32),
                        load256(ys[t].qs.as_ptr(), blk * 32 + 32),
                    )
                };
                let (ya, yb) = match signs {
                    Some((sa, sb)) => (_mm256_sign_epi8(ya, sa), _mm256_sign_epi8(yb, sb)),
                    None => (ya, yb),
                };
                let at = |i: usize| _mm256_set1_ps(sc[t].get(i).copied().unwrap_or(0.0));
                acc[t][0] = _mm256_fmadd_ps(at(p), mul_sum_us8(xa, ya), acc[t][0]);
                acc[t][second] = _mm256_fmadd_ps(at(p + 1), mul_sum_us8(xb, yb), acc[t][second]);
            }
            p += 2;
        }
        c += n;
    }
    finish(&acc.map(|[a, b]| _mm256_add_ps(a, b)))
}

/// `Q4_*` and `Q5_*` rows, AVX2 (see [`blocks_avx2`]): the nibbles of a pair of blocks from
/// one load, the fifth bits OR-ed in as 0x10 bytes.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q4_avx2<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    let low = _mm256_set1_epi8(0x0F);
    let nibbles = |blk: usize| {
        // SAFETY: qs holds 16 * nb bytes (Lens) and blk + 2 <= nb: 32 bytes from 16 * blk.
        let v = unsafe { load256(l.qs.as_ptr(), blk * 16) };
        (
            _mm256_and_si256(v, low),
            _mm256_and_si256(_mm256_srli_epi16(v, 4), low),
        )
    };
    match l.h {
        // Two loops, so that the `Q4_*` one has no fifth bits to test per pair.
        None => blocks_avx2(l, ys, Some(8.0), |blk| {
            let (xa, xb) = nibbles(blk);
            (xa, xb, None)
        }),
        Some(h) => blocks_avx2(l, ys, Some(16.0), |blk| {
            let (xa, xb) = nibbles(blk);
            (
                _mm256_or_si256(xa, fifth_bytes(fifth_bits(h, blk))),
                _mm256_or_si256(xb, fifth_bytes(fifth_bits(h, blk + 1))),
                None,
            )
        }),
    }
}

/// Each token's sum of the lanes of its accumulator.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn finish<const N: usize>(acc: &[__m256; N]) -> [f32; N] {
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = hsum(acc[t]);
    }
    out
}

/// The integer sums of a 32-weight sub-block's products times their scales, 8 lanes:
/// unsigned `x` below 64 (so each pair of products is under 2^13 in magnitude), signed `y`,
/// and the scale of each pair of products in `scales` (16-bit lanes).
#[inline]
#[target_feature(enable = "avx2")]
fn scaled_sums(x: __m256i, y: __m256i, scales: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), scales)
}

/// `Q4_K` and (`five`) `Q5_K` rows, AVX2, against the activations' `Q8_K` form: per
/// super-block, each sub-block's integer sums times its integer scale, added up as integers
/// (as ggml does), then one float product per super-block and token; the minimums times the
/// activations' sums per 32, likewise.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn k45_avx2<const N: usize>(five: bool, l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    const SUBS: usize = SUPER / BLOCK;
    let bb = if five { 176 } else { 144 };
    let q_at = if five { 48 } else { 16 };
    let low = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    // One accumulator per token, the minimums' products too (as in `blocks_avx2`).
    let mut acc = [_mm256_setzero_ps(); N];
    let supers = l.nb / SUBS;
    if l.qs.len() < supers * bb || !fits_k(l.nb, ys) {
        return [0.0; N];
    }
    for g in 0..supers {
        let sb = &l.qs[g * bb..(g + 1) * bb];
        // `d` and `dmin` as lanes 0 and 1, by one F16C conversion: the `half` crate's, called
        // twice per super-block, was a call and a run-time feature test each, and a third of
        // the kernel's time (`lean_kernels`, 1024 x 2048, one token: Q4_K 131 -> 80 µs,
        // Q5_K 144 -> 103 µs).
        let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([
            sb[0], sb[1], sb[2], sb[3],
        ])));
        let (scales, mins) = k4_scales_mins(sb);
        // The eight scales as 16-bit lanes, in both halves; `shuffle_epi8` then spreads one
        // of them per sub-block (two byte shuffles per pair of sub-blocks, instead of
        // extracting and broadcasting each from a scalar).
        let scales =
            _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(scales as i64)));
        let mins = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mins as i64));
        let mut qh = if five {
            // SAFETY: a Q5_K super-block holds 176 bytes, its `qh` at 16..48.
            unsafe { load256(sb.as_ptr(), 16) }
        } else {
            _mm256_setzero_si256()
        };
        let mut ints = [_mm256_setzero_si256(); N];
        for j in 0..4 {
            // SAFETY: q_at + 32 * j + 32 <= bb = sb.len().
            let v = unsafe { load256(sb.as_ptr(), q_at + 32 * j) };
            let mut xa = _mm256_and_si256(v, low);
            let mut xb = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
            if five {
                let ha = _mm256_and_si256(qh, one);
                let hb = _mm256_and_si256(_mm256_srli_epi16(qh, 1), one);
                xa = _mm256_or_si256(xa, _mm256_slli_epi16(ha, 4));
                xb = _mm256_or_si256(xb, _mm256_slli_epi16(hb, 4));
                qh = _mm256_srli_epi16(qh, 2);
            }
            let (sa, sbb) = (
                _mm256_shuffle_epi8(scales, spread16(2 * j)),
                _mm256_shuffle_epi8(scales, spread16(2 * j + 1)),
            );
            let at = g * SUPER + 64 * j;
            for t in 0..N {
                // SAFETY: every token's kq holds 32 * nb = 256 * supers bytes (fits_k), and
                // at + 64 <= 256 * (g + 1).
                let (ya, yb) = unsafe {
                    (
                        load256(ys[t].kq.as_ptr(), at),
                        load256(ys[t].kq.as_ptr(), at + 32),
                    )
                };
                let s = _mm256_add_epi32(scaled_sums(xa, ya, sa), scaled_sums(xb, yb, sbb));
                ints[t] = _mm256_add_epi32(ints[t], s);
            }
        }
        for t in 0..N {
            let y = ys[t];
            let kd = y.kd.get(g).copied().unwrap_or(0.0);
            // [d * kd, dmin * kd] in lanes 0 and 1, each then broadcast.
            let ddk = _mm256_castps128_ps256(_mm_mul_ps(dd, _mm_set1_ps(kd)));
            let (dk, dmink) = (
                _mm256_permutevar8x32_ps(ddk, _mm256_setzero_si256()),
                _mm256_permutevar8x32_ps(ddk, _mm256_set1_epi32(1)),
            );
            acc[t] = _mm256_fmadd_ps(dk, _mm256_cvtepi32_ps(ints[t]), acc[t]);
            // Less the minimums times the activations' sums per 32, eight lanes.
            let ks = match y.ks.get(g * SUBS..(g + 1) * SUBS) {
                // SAFETY: the slice holds SUBS = 8 i32 (32 bytes).
                Some(k) => unsafe { _mm256_loadu_si256(k.as_ptr().cast()) },
                None => _mm256_setzero_si256(),
            };
            acc[t] = _mm256_fnmadd_ps(
                _mm256_cvtepi32_ps(_mm256_mullo_epi32(mins, ks)),
                dmink,
                acc[t],
            );
        }
    }
    finish(&acc)
}

/// The `shuffle_epi8` control that puts 16-bit lane `i` (below 8) of each 128-bit half in
/// every 16-bit lane of that half.
#[inline]
#[target_feature(enable = "avx2")]
fn spread16(i: usize) -> __m256i {
    let lo = (2 * i) as i8;
    _mm256_set1_epi16(i16::from_le_bytes([lo as u8, (lo + 1) as u8]))
}

/// `Q6_K` rows, AVX2, against the activations' `Q8_K` form: the 6-bit integers rebuilt from
/// their low nibbles and high pairs, less 32, multiplied as `Q8_0`'s (`maddubs` of their
/// magnitudes with the activations carrying their signs); the eight lanes of a sub-block's
/// sums are its two halves, each times its own integer scale, added up as integers per
/// super-block, then one float product per super-block and token.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q6k_avx2<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    let low = _mm256_set1_epi8(0x0F);
    let three = _mm256_set1_epi8(3);
    let m32 = _mm256_set1_epi8(32);
    let mut acc = [_mm256_setzero_ps(); N];
    let supers = l.nb / (SUPER / BLOCK);
    if l.qs.len() < supers * 210 || !fits_k(l.nb, ys) {
        return [0.0; N];
    }
    for g in 0..supers {
        let sb = &l.qs[g * 210..(g + 1) * 210];
        let d = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
            u16::from_le_bytes([sb[208], sb[209]]),
        ))));
        // The sixteen scales as 16-bit lanes; sub-block s's two (2s, 2s + 1) are 32-bit lane
        // s, put in every lane, then spread as [2s in the low half, 2s + 1 in the high].
        // SAFETY: a Q6_K super-block holds 210 bytes, its scales at 192..208.
        let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(sb.as_ptr().add(192).cast()) });
        let halves_of = _mm256_setr_epi8(
            0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2,
            3, 2, 3,
        );
        let mut ints = [_mm256_setzero_si256(); N];
        for h in 0..2 {
            // SAFETY: 64 * h + 64 <= 128 and 128 + 32 * h + 32 <= 192 <= 210 = sb.len().
            let (qla, qlb, qh) = unsafe {
                (
                    load256(sb.as_ptr(), 64 * h),
                    load256(sb.as_ptr(), 64 * h + 32),
                    load256(sb.as_ptr(), 128 + 32 * h),
                )
            };
            let lows = [
                _mm256_and_si256(qla, low),
                _mm256_and_si256(qlb, low),
                _mm256_and_si256(_mm256_srli_epi16(qla, 4), low),
                _mm256_and_si256(_mm256_srli_epi16(qlb, 4), low),
            ];
            let highs = [
                _mm256_and_si256(qh, three),
                _mm256_and_si256(_mm256_srli_epi16(qh, 2), three),
                _mm256_and_si256(_mm256_srli_epi16(qh, 4), three),
                _mm256_and_si256(_mm256_srli_epi16(qh, 6), three),
            ];
            for k in 0..4 {
                let q = _mm256_sub_epi8(
                    _mm256_or_si256(lows[k], _mm256_slli_epi16(highs[k], 4)),
                    m32,
                );
                let aq = _mm256_sign_epi8(q, q);
                let s = 4 * h + k;
                let pair = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(s as i32));
                let halves = _mm256_shuffle_epi8(pair, halves_of);
                let at = g * SUPER + 32 * s;
                for t in 0..N {
                    // SAFETY: every token's kq holds 256 * supers bytes (fits_k), and
                    // at + 32 <= 256 * (g + 1).
                    let yv = unsafe { load256(ys[t].kq.as_ptr(), at) };
                    let sums = scaled_sums(aq, _mm256_sign_epi8(yv, q), halves);
                    ints[t] = _mm256_add_epi32(ints[t], sums);
                }
            }
        }
        for t in 0..N {
            let kd = ys[t].kd.get(g).copied().unwrap_or(0.0);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * kd), _mm256_cvtepi32_ps(ints[t]), acc[t]);
        }
    }
    finish(&acc)
}

/// `Q8_0` rows, AVX2 (see [`blocks_avx2`]): `maddubs` wants an unsigned left operand, so
/// the weights go in as |x| and the activations take their signs.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q8_avx2<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    blocks_avx2(l, ys, None, |blk| {
        // SAFETY: qs holds 32 * nb bytes (Lens) and blk + 2 <= nb: 64 bytes from 32 * blk.
        let (xa, xb) = unsafe {
            (
                load256(l.qs.as_ptr(), blk * 32),
                load256(l.qs.as_ptr(), blk * 32 + 32),
            )
        };
        (
            _mm256_sign_epi8(xa, xa),
            _mm256_sign_epi8(xb, xb),
            Some((xa, xb)),
        )
    })
}
