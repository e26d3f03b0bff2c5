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

use super::rows::{Lens, Out, Rows, each_row, fits};
use crate::engine::lean::quant::Y;

/// Every row of `rs`, AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn rows_avx2<const N: usize>(q8: bool, rs: Rows<'_>, ys: &[Y<'_>; N], out: Out<'_>) {
    // The kernels' loads rely on this (checked again here, next to them).
    if !fits(rs.nb, ys) {
        out.out.fill(0.0);
        return;
    }
    each_row(
        rs,
        out,
        |l| if q8 { q8_avx2(l, ys) } else { q4_avx2(l, ys) },
    );
}

/// `kernels::key_scores` in AVX2 (`q.len()` a multiple of 8; `out.len()` scores): per key, eight
/// lanes of products added chunk after chunk, then the lanes summed in order, as
/// `dot_f16` does, without a call and a conversion buffer per key.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn key_scores(q: &[f32], keys: &[f16], scale: f32, out: &mut [f32]) {
    let hd = q.len();
    if !hd.is_multiple_of(8) || keys.len() < out.len() * hd {
        out.fill(0.0);
        return;
    }
    for (p, o) in out.iter_mut().enumerate() {
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

/// `Q4_*` rows, AVX2: per block, `maddubs` of the 32 nibbles with the 32 activations.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q4_avx2<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [[_mm256_setzero_ps(); 2]; N];
    let mut offs = [0f32; N];
    let mut blk = 0;
    while blk + 2 <= l.nb {
        // SAFETY: qs holds 16 * nb bytes (Lens) and blk + 2 <= nb: 32 bytes from 16 * blk.
        let v = unsafe { load256(l.qs.as_ptr(), blk * 16) };
        let xa = _mm256_and_si256(v, low);
        let xb = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        let (da, db) = (
            l.d.get(blk).map_or(0.0, |v| v.to_f32()),
            l.d.get(blk + 1).map_or(0.0, |v| v.to_f32()),
        );
        let (ma, mb) = match l.m {
            Some(m) => (
                m.get(blk).map_or(0.0, |v| v.to_f32()),
                m.get(blk + 1).map_or(0.0, |v| v.to_f32()),
            ),
            None => (-8.0 * da, -8.0 * db),
        };
        for t in 0..N {
            let y = ys[t];
            // SAFETY: every token's qs holds 32 * nb bytes (Lens): 64 bytes from 32 * blk.
            let (ya, yb) = unsafe {
                (
                    load256(y.qs.as_ptr(), blk * 32),
                    load256(y.qs.as_ptr(), blk * 32 + 32),
                )
            };
            let (yda, ydb) = (
                y.d.get(blk).copied().unwrap_or(0.0),
                y.d.get(blk + 1).copied().unwrap_or(0.0),
            );
            let (ysa, ysb) = (
                y.s.get(blk).copied().unwrap_or(0.0),
                y.s.get(blk + 1).copied().unwrap_or(0.0),
            );
            acc[t][0] = _mm256_fmadd_ps(_mm256_set1_ps(da * yda), mul_sum_us8(xa, ya), acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(_mm256_set1_ps(db * ydb), mul_sum_us8(xb, yb), acc[t][1]);
            offs[t] += ma * ysa + mb * ysb;
        }
        blk += 2;
    }
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = hsum(_mm256_add_ps(acc[t][0], acc[t][1])) + offs[t];
    }
    out
}

/// `Q8_0` rows, AVX2.
#[target_feature(enable = "avx2,fma,f16c")]
#[inline]
fn q8_avx2<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    let (mut acc0, mut acc1) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
    let block = |blk: usize, acc: &mut [__m256; N]| {
        // SAFETY: qs holds 32 * nb bytes (Lens) and blk < nb.
        let x = unsafe { load256(l.qs.as_ptr(), blk * 32) };
        // maddubs wants an unsigned left operand: |x|, and y carrying x's sign.
        let ax = _mm256_sign_epi8(x, x);
        let dx = l.d.get(blk).map_or(0.0, |v| v.to_f32());
        for t in 0..N {
            let y = ys[t];
            // SAFETY: every token's qs holds 32 * nb bytes (Lens).
            let yv = unsafe { load256(y.qs.as_ptr(), blk * 32) };
            let sy = _mm256_sign_epi8(yv, x);
            let sc = _mm256_set1_ps(dx * y.d.get(blk).copied().unwrap_or(0.0));
            acc[t] = _mm256_fmadd_ps(sc, mul_sum_us8(ax, sy), acc[t]);
        }
    };
    // nb is even (Lens): two blocks per step, into alternating accumulators.
    let mut blk = 0;
    while blk + 2 <= l.nb {
        block(blk, &mut acc0);
        block(blk + 1, &mut acc1);
        blk += 2;
    }
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = hsum(_mm256_add_ps(acc0[t], acc1[t]));
    }
    out
}
