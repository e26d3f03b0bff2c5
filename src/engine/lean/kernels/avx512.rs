//! The AVX-512 kernels (F/BW/VL with VNNI): the block dot products of `Q4_*` and `Q8_0` rows,
//! one `vpdpbusd` per pair of blocks and token, the scales of 16 blocks converted at once.
//!
//! # Safety
//! The `unsafe` here is unaligned and masked loads from slices whose lengths `Rows::new`
//! checked before any kernel runs (checked again next to the loads); the callers run these
//! functions only where [`Level::best`] detected AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C.
//!
//! [`Level::best`]: crate::engine::lean::level::Level::best

#![allow(
    unsafe_code,
    reason = "SIMD kernels; each block says why it is in bounds and supported"
)]

use std::arch::x86_64::*;

use half::f16;

use super::avx2::load256;
use super::rows::{Lens, Out, Rows, each_row, fits};
use crate::engine::lean::quant::Y;

/// Every row of `rs`, AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) fn rows_512<const N: usize>(q8: bool, rs: Rows<'_>, ys: &[Y<'_>; N], out: Out<'_>) {
    // The kernels' loads rely on this (checked again here, next to them).
    if !fits(rs.nb, ys) {
        out.out.fill(0.0);
        return;
    }
    each_row(rs, out, |l| if q8 { q8_512(l, ys) } else { q4_512(l, ys) });
}

/// The scales of up to 16 blocks from `c`, as f32 lanes (zero past `n`).
///
/// # Safety
/// `c + n <= len` of the slice `p` points into, `n <= 16`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn scales16(p: *const f16, c: usize, mask: __mmask16) -> __m512 {
    // SAFETY: masked lanes are not read; the unmasked ones are in bounds by the contract.
    _mm512_cvtph_ps(unsafe { _mm256_maskz_loadu_epi16(mask, p.add(c).cast()) })
}

/// Up to 16 f32 from `c` (zero past `n`).
///
/// # Safety
/// As [`scales16`].
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn f32x16(p: *const f32, c: usize, mask: __mmask16) -> __m512 {
    // SAFETY: masked lanes are not read; the unmasked ones are in bounds by the contract.
    unsafe { _mm512_maskz_loadu_ps(mask, p.add(c)) }
}

/// 64 bytes at `p + at`.
///
/// # Safety
/// `at + 64 <= len` of the slice `p` points into.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load512<T>(p: *const T, at: usize) -> __m512i {
    const { assert!(size_of::<T>() == 1) };
    // SAFETY: in bounds by the caller's contract; the load is unaligned.
    unsafe { _mm512_loadu_si512(p.add(at).cast()) }
}

/// The 16 lanes of a pair's products (8 per block) times their blocks' scales, taken from
/// `sc` (scales of a 16-block chunk) at the pair's position `p` (even) in the chunk.
#[inline]
#[target_feature(enable = "avx512f")]
fn pair_scales(sc: __m512, p: usize) -> __m512 {
    let idx = _mm512_add_epi32(
        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
        _mm512_set1_epi32(p as i32),
    );
    _mm512_permutexvar_ps(idx, sc)
}

/// `Q4_*` or `Q8_0` rows, AVX-512 VNNI: per chunk of 16 blocks, the weight and activation
/// scales multiplied in one vector; per pair of blocks, one `vpdpbusd` per token of the
/// 64 unsigned weights `x` (from `expand`) with the 64 signed activations (`sign_y`
/// gives the activations' signs the kernel needs), converted and scaled.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn blocks_512<const N: usize>(
    l: Lens<'_>,
    ys: &[Y<'_>; N],
    offsets: bool,
    expand: impl Fn(usize) -> (__m512i, __mmask64),
) -> ([__m512; N], [__m512; N]) {
    let (mut acc0, mut acc1) = ([_mm512_setzero_ps(); N], [_mm512_setzero_ps(); N]);
    let mut macc = [_mm512_setzero_ps(); N];
    let mut c = 0;
    while c < l.nb {
        let n = (l.nb - c).min(16);
        let mask = ((1u32 << n) - 1) as __mmask16;
        // SAFETY: c + n <= nb, and d (and m) hold nb scales; every y.d, y.s nb (Lens).
        let dw = unsafe { scales16(l.d.as_ptr(), c, mask) };
        let mut sc = [_mm512_setzero_ps(); N];
        for t in 0..N {
            let y = ys[t];
            // SAFETY: as above.
            let (yd, ysum) =
                unsafe { (f32x16(y.d.as_ptr(), c, mask), f32x16(y.s.as_ptr(), c, mask)) };
            sc[t] = _mm512_mul_ps(dw, yd);
            if !offsets {
                continue;
            }
            let mw = match l.m {
                // SAFETY: as above.
                Some(m) => unsafe { scales16(m.as_ptr(), c, mask) },
                None => _mm512_mul_ps(dw, _mm512_set1_ps(-8.0)),
            };
            macc[t] = _mm512_fmadd_ps(mw, ysum, macc[t]);
        }
        // One pair of blocks into `acc` (two accumulators alternate, so that consecutive
        // pairs do not wait on each other's additions).
        let pair = |p: usize, acc: &mut [__m512; N]| {
            let blk = c + p;
            let (x, neg) = expand(blk);
            for t in 0..N {
                // SAFETY: every token's qs holds 32 * nb bytes and blk + 2 <= nb.
                let mut yv = unsafe { load512(ys[t].qs.as_ptr(), blk * 32) };
                yv = _mm512_mask_sub_epi8(yv, neg, _mm512_setzero_si512(), yv);
                let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), x, yv);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), pair_scales(sc[t], p), acc[t]);
            }
        };
        let mut p = 0;
        while p + 4 <= n {
            pair(p, &mut acc0);
            pair(p + 2, &mut acc1);
            p += 4;
        }
        if p < n {
            pair(p, &mut acc0);
        }
        c += n;
    }
    let mut sums = [_mm512_setzero_ps(); N];
    for t in 0..N {
        sums[t] = _mm512_add_ps(acc0[t], acc1[t]);
    }
    (sums, macc)
}

/// `Q4_*` rows, AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn q4_512<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    let low = _mm256_set1_epi8(0x0F);
    let qs = l.qs;
    let (sums, macc) = blocks_512(l, ys, true, |blk| {
        // SAFETY: qs holds 16 * nb bytes (Lens), blk + 2 <= nb: 32 bytes from 16 * blk.
        let v = unsafe { load256(qs.as_ptr(), blk * 16) };
        let lo = _mm256_and_si256(v, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        (_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), 0)
    });
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = _mm512_reduce_add_ps(sums[t]) + _mm512_reduce_add_ps(macc[t]);
    }
    out
}

/// `Q8_0` rows, AVX-512 VNNI: `vpdpbusd` multiplies unsigned by signed bytes, so the
/// weights go in as |x| and the activations take the weights' signs.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn q8_512<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    let qs = l.qs;
    let (sums, _) = blocks_512(l, ys, false, |blk| {
        // SAFETY: qs holds 32 * nb bytes (Lens), blk + 2 <= nb: 64 bytes from 32 * blk.
        let x = unsafe { load512(qs.as_ptr(), blk * 32) };
        (_mm512_abs_epi8(x), _mm512_movepi8_mask(x))
    });
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = _mm512_reduce_add_ps(sums[t]);
    }
    out
}
