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
use super::rows::{Lens, Out, PREFETCH_ROWS, Rows, each_row, fits_for, fits_k};
use crate::engine::lean::blocks::{BLOCK, Kind, SUPER, f16_at, k4_scales_mins};
use crate::engine::lean::quant::Y;

/// Every row of `rs`, AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) fn rows_512<const N: usize>(kind: Kind, rs: Rows<'_>, ys: &[Y<'_>; N], out: Out<'_>) {
    // The kernels' loads rely on this (checked again here, next to them).
    if !fits_for(kind, rs.nb, ys) {
        out.out.fill(0.0);
        return;
    }
    match kind {
        Kind::Q8_0 => each_row(rs, out, PREFETCH_ROWS, |l| q8_512(l, ys)),
        k if k.is_k() => each_row(rs, out, PREFETCH_ROWS, |l| k_512(k, l, ys)),
        _ => each_row(rs, out, PREFETCH_ROWS, |l| q4_512(l, ys)),
    }
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
    offsets: Option<f32>,
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
            let Some(zero) = offsets else {
                continue;
            };
            let mw = match l.m {
                // SAFETY: as above.
                Some(m) => unsafe { scales16(m.as_ptr(), c, mask) },
                None => _mm512_mul_ps(dw, _mm512_set1_ps(-zero)),
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

/// `Q4_*` and `Q5_*` rows, AVX-512 VNNI (the fifth bits of a pair of `Q5_*` blocks are one
/// 64-bit mask, OR-ed in as 0x10 bytes).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn q4_512<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    let low = _mm256_set1_epi8(0x0F);
    let qs = l.qs;
    let nibbles = |blk: usize| {
        // SAFETY: qs holds 16 * nb bytes (Lens), blk + 2 <= nb: 32 bytes from 16 * blk.
        let v = unsafe { load256(qs.as_ptr(), blk * 16) };
        let lo = _mm256_and_si256(v, low);
        let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
        _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
    };
    // Two loops, so that the `Q4_*` one has no test of fifth bits per pair.
    let (sums, macc) = match l.h {
        None => blocks_512(l, ys, Some(8.0), |blk| (nibbles(blk), 0)),
        Some(h) => blocks_512(l, ys, Some(16.0), |blk| {
            let bits = h
                .get(4 * blk..4 * blk + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_le_bytes);
            let fifth = _mm512_maskz_mov_epi8(bits, _mm512_set1_epi8(0x10));
            (_mm512_or_si512(nibbles(blk), fifth), 0)
        }),
    };
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
    let (sums, _) = blocks_512(l, ys, None, |blk| {
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

/// K-quant rows, AVX-512 VNNI, against the activations' `Q8_K` form: per pair of
/// sub-blocks, one `vpdpbusd` per token whose 16 lanes are the pair's four halves (16 weights,
/// four lanes each), times their integer scales (`Q6_K`'s own per 16; `Q4_K` and `Q5_K` give
/// both halves of a sub-block its scale), added up as integers per super-block (as ggml
/// does); then one float product per super-block and token. `Q6_K`'s integers are signed:
/// they go in as magnitudes, and the activations take their signs. The `Q4_K` and `Q5_K`
/// minimums times the activations' sums per 32 are one integer product of eight lanes per
/// super-block and token.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[inline]
fn k_512<const N: usize>(kind: Kind, l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    const SUBS: usize = SUPER / BLOCK;
    let bb = kind.block_bytes();
    let supers = l.nb / SUBS;
    if l.qs.len() < supers * bb || !fits_k(l.nb, ys) {
        return [0.0; N];
    }
    let low = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let three = _mm256_set1_epi8(3);
    // The 16-bit lanes of a pair's `maddubs` (pairs of products) belong to its four halves,
    // eight each: this picks their scales.
    let eighths = _mm512_set_epi16(
        3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
        0, 0,
    );
    let mut acc = [_mm512_setzero_ps(); N];
    let mut macc = [_mm256_setzero_ps(); N];
    for g in 0..supers {
        let sb = &l.qs[g * bb..(g + 1) * bb];
        // The sixteen halves' integer scales as 16-bit lanes, the eight minimums as 32-bit.
        let (halves, mins, d, dmin) = if kind == Kind::Q6K {
            // SAFETY: a Q6_K super-block holds 210 bytes, its scales at 192..208.
            let sc = unsafe { _mm_loadu_si128(sb.as_ptr().add(192).cast()) };
            (
                _mm256_cvtepi8_epi16(sc),
                _mm256_setzero_si256(),
                f16_at(sb, 208),
                0.0,
            )
        } else {
            let (s, m) = k4_scales_mins(sb);
            let s = _mm_cvtsi64_si128(s as i64);
            (
                _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(s, s)),
                _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(m as i64)),
                f16_at(sb, 0),
                f16_at(sb, 2),
            )
        };
        let halves = _mm512_castsi256_si512(halves);
        let qh5 = if kind == Kind::Q5K {
            // SAFETY: a Q5_K super-block holds 176 bytes, its `qh` at 16..48.
            unsafe { load256(sb.as_ptr(), 16) }
        } else {
            _mm256_setzero_si256()
        };
        let mut ints = [_mm512_setzero_si512(); N];
        for p in 0..4 {
            let (x, neg) = match kind {
                Kind::Q6K => {
                    let h = p / 2;
                    let shift = _mm_cvtsi32_si128(4 * (p % 2) as i32);
                    // SAFETY: 64 * h + 64 <= 128 and 128 + 32 * h + 32 <= 192 <= 210.
                    let (qla, qlb, qh) = unsafe {
                        (
                            load256(sb.as_ptr(), 64 * h),
                            load256(sb.as_ptr(), 64 * h + 32),
                            load256(sb.as_ptr(), 128 + 32 * h),
                        )
                    };
                    // Sub-blocks 4h + 2(p % 2) and the next: the low or high nibbles of
                    // `qla` and `qlb`, and the pairs 2(p % 2) and 2(p % 2) + 1 of `qh`.
                    let qh = _mm256_srl_epi16(qh, shift);
                    let xa = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srl_epi16(qla, shift), low),
                        _mm256_slli_epi16(_mm256_and_si256(qh, three), 4),
                    );
                    let xb = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srl_epi16(qlb, shift), low),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), three), 4),
                    );
                    let x = _mm512_sub_epi8(
                        _mm512_inserti64x4(_mm512_castsi256_si512(xa), xb, 1),
                        _mm512_set1_epi8(32),
                    );
                    (_mm512_abs_epi8(x), _mm512_movepi8_mask(x))
                }
                _ => {
                    let q_at = if kind == Kind::Q5K { 48 } else { 16 };
                    // SAFETY: q_at + 32 * p + 32 <= bb (p < 4).
                    let v = unsafe { load256(sb.as_ptr(), q_at + 32 * p) };
                    let mut xa = _mm256_and_si256(v, low);
                    let mut xb = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    if kind == Kind::Q5K {
                        let qh = _mm256_srl_epi16(qh5, _mm_cvtsi32_si128(2 * p as i32));
                        xa = _mm256_or_si256(xa, _mm256_slli_epi16(_mm256_and_si256(qh, one), 4));
                        let qb = _mm256_and_si256(_mm256_srli_epi16(qh, 1), one);
                        xb = _mm256_or_si256(xb, _mm256_slli_epi16(qb, 4));
                    }
                    (_mm512_inserti64x4(_mm512_castsi256_si512(xa), xb, 1), 0)
                }
            };
            let scales = _mm512_permutexvar_epi16(
                _mm512_add_epi16(eighths, _mm512_set1_epi16(4 * p as i16)),
                halves,
            );
            let at = g * SUPER + 64 * p;
            for t in 0..N {
                // SAFETY: every token's kq holds 256 * supers bytes (fits_k), and
                // at + 64 <= 256 * (g + 1).
                let mut yv = unsafe { load512(ys[t].kq.as_ptr(), at) };
                yv = _mm512_mask_sub_epi8(yv, neg, _mm512_setzero_si512(), yv);
                // Pairs of products (each under 2^13 in magnitude: x < 64, |y| <= 127), then
                // pairs of those times their half's scale, into the 32-bit sums.
                let pairs = _mm512_maddubs_epi16(x, yv);
                ints[t] = _mm512_dpwssd_epi32(ints[t], pairs, scales);
            }
        }
        for t in 0..N {
            let y = ys[t];
            let kd = y.kd.get(g).copied().unwrap_or(0.0);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ints[t]), _mm512_set1_ps(d * kd), acc[t]);
            if kind != Kind::Q6K {
                // SAFETY: every token's ks holds nb = 8 * supers sums (fits_k).
                let ks = unsafe { _mm256_loadu_si256(y.ks.as_ptr().add(g * SUBS).cast()) };
                let m = _mm256_cvtepi32_ps(_mm256_mullo_epi32(mins, ks));
                macc[t] = _mm256_fmadd_ps(m, _mm256_set1_ps(dmin * kd), macc[t]);
            }
        }
    }
    let mut out = [0f32; N];
    for t in 0..N {
        out[t] = _mm512_reduce_add_ps(acc[t]) - hsum8(macc[t]);
    }
    out
}

/// Sum of 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum8(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}
