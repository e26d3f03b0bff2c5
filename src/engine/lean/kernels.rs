//! The hot kernels of the lean forward pass: activations quantised once per matrix product to
//! [`Q8`] blocks, and block dot products of a weight row (candle's GGUF block layouts, read
//! from bytes) with them.
//!
//! Block layouts (little-endian, 32 weights per block):
//! - `Q4_0`, 18 bytes: `d: f16`, 16 bytes of nibbles; weight = d * (nibble - 8).
//! - `Q4_1`, 20 bytes: `d: f16`, `m: f16`, 16 bytes of nibbles; weight = d * nibble + m.
//! - `Q8_0`, 34 bytes: `d: f16`, 32 `i8`; weight = d * q.
//!
//! Nibble order (as ggml): byte j holds weight j in its low half and weight j + 16 in its high
//! half. With AVX2 (the x86-64-v3 build) the products use `maddubs`/`madd` on 32 weights at a
//! time; elsewhere a portable loop gives the same sums (integer arithmetic, so both paths agree
//! exactly up to the final float additions).
//!
//! # Safety
//! The only `unsafe` is unaligned 16/32-byte SIMD loads from slices whose length is checked
//! just before; the block count of every row is checked by the caller ([`super::QMat`]).

#![allow(
    unsafe_code,
    reason = "SIMD loads; each block says why it is in bounds"
)]

use half::f16;

/// Weights per block.
pub const BLOCK: usize = 32;

/// An activation block: `x ≈ d * qs`, `s = d * sum(qs)` (for the `Q4_0`/`Q4_1` offsets).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C)]
pub struct Q8 {
    /// Scale.
    pub d: f32,
    /// `d * sum(qs)`.
    pub s: f32,
    /// Quantised values in -127..=127.
    pub qs: [i8; BLOCK],
}

/// Weight block types the lean path reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plain little-endian f32 (tiny test models, norms).
    F32,
    /// ggml Q4_0.
    Q4_0,
    /// ggml Q4_1.
    Q4_1,
    /// ggml Q8_0.
    Q8_0,
}

impl Kind {
    /// Bytes per block of [`BLOCK`] weights (per weight for F32: 4 * 32).
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4 * BLOCK,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }
}

fn half_at(b: &[u8], at: usize) -> f32 {
    let lo = b.get(at).copied().unwrap_or(0);
    let hi = b.get(at + 1).copied().unwrap_or(0);
    f16::from_bits(u16::from_le_bytes([lo, hi])).to_f32()
}

/// Quantises `x` (a multiple of [`BLOCK`] long) into `out` (`x.len() / BLOCK` blocks).
pub fn quantize(x: &[f32], out: &mut [Q8]) {
    for (xs, q) in x.chunks_exact(BLOCK).zip(out.iter_mut()) {
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (v, o) in xs.iter().zip(q.qs.iter_mut()) {
            // |v * inv| <= 127 by construction (NaN becomes 0).
            let r = (v * inv).round() as i8;
            *o = r;
            sum += i32::from(r);
        }
        // Scales rounded to f16 as ggml's Q8_0/Q8_1 store them, so the products match
        // llama.cpp's bit for bit in the integer part and closely in the float part.
        q.d = f16::from_f32(d).to_f32();
        q.s = f16::from_f32(d * sum as f32).to_f32();
    }
}

/// Dequantises one row of `kind` blocks into `out`.
pub fn dequantize_row(kind: Kind, row: &[u8], out: &mut [f32]) {
    match kind {
        Kind::F32 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Kind::Q4_0 | Kind::Q4_1 => {
            let bb = kind.block_bytes();
            for (blk, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(BLOCK)) {
                let d = half_at(blk, 0);
                let (m, qs) = if kind == Kind::Q4_1 {
                    (half_at(blk, 2), blk.get(4..20).unwrap_or_default())
                } else {
                    (-8.0 * d, blk.get(2..18).unwrap_or_default())
                };
                let (lo, hi) = o.split_at_mut(BLOCK / 2);
                for ((q, l), h) in qs.iter().zip(lo.iter_mut()).zip(hi.iter_mut()) {
                    *l = d * f32::from(q & 0x0F) + m;
                    *h = d * f32::from(q >> 4) + m;
                }
            }
        }
        Kind::Q8_0 => {
            for (blk, o) in row.chunks_exact(34).zip(out.chunks_exact_mut(BLOCK)) {
                let d = half_at(blk, 0);
                for (q, v) in blk.get(2..34).unwrap_or_default().iter().zip(o.iter_mut()) {
                    *v = d * f32::from(*q as i8);
                }
            }
        }
    }
}

/// Dot product of a weight row with the activations: `xq` for quantised kinds, `xf` for F32.
/// `row` holds exactly `xq.len()` blocks (checked by the caller).
#[inline]
pub fn dot(kind: Kind, row: &[u8], xq: &[Q8], xf: &[f32]) -> f32 {
    match kind {
        Kind::F32 => row
            .chunks_exact(4)
            .zip(xf)
            .map(|(b, x)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * x)
            .sum(),
        Kind::Q4_0 | Kind::Q4_1 => {
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            ))]
            // SAFETY: this build targets AVX2 and FMA (x86-64-v3, checked by the cfg above at
            // compile time); the kernel's only memory accesses are its checked slice loads.
            return unsafe { simd::dot_q4(kind, row, xq) };
            #[cfg(not(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            )))]
            dot_q4(kind, row, xq)
        }
        Kind::Q8_0 => {
            #[cfg(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            ))]
            // SAFETY: as above.
            return unsafe { simd::dot_q8_0(row, xq) };
            #[cfg(not(all(
                target_arch = "x86_64",
                target_feature = "avx2",
                target_feature = "fma"
            )))]
            dot_q8_0(row, xq)
        }
    }
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma"
))]
mod simd {
    use std::arch::x86_64::*;

    use super::{Kind, Q8, half_at};

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

    /// The 32 nibbles of 16 bytes as unsigned bytes, in weight order.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn nibbles(q: &[u8; 16]) -> __m256i {
        // SAFETY: `q` is exactly 16 readable bytes; the load is unaligned.
        let v = unsafe { _mm_loadu_si128(q.as_ptr().cast()) };
        let m = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(v, m);
        let hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
        _mm256_set_m128i(hi, lo)
    }

    /// 32 bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load32<T>(q: &[T; 32]) -> __m256i {
        const { assert!(size_of::<T>() == 1) };
        // SAFETY: `q` is exactly 32 readable one-byte elements; the load is unaligned.
        unsafe { _mm256_loadu_si256(q.as_ptr().cast()) }
    }

    /// Sum over the block of unsigned `x` times signed `y`, as 8 float lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn mul_sum_us8(x: __m256i, y: __m256i) -> __m256 {
        let p16 = _mm256_maddubs_epi16(x, y);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }

    /// [`super::dot`] for Q4_0 and Q4_1 rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_q4(kind: Kind, row: &[u8], xq: &[Q8]) -> f32 {
        let bb = kind.block_bytes();
        let q_at = if kind == Kind::Q4_1 { 4 } else { 2 };
        let mut acc = _mm256_setzero_ps();
        let mut offs = 0f32;
        for (blk, y) in row.chunks_exact(bb).zip(xq) {
            let d = half_at(blk, 0);
            let Some(qs) = blk
                .get(q_at..q_at + 16)
                .and_then(|s| <&[u8; 16]>::try_from(s).ok())
            else {
                continue;
            };
            let p = mul_sum_us8(nibbles(qs), load32(&y.qs));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), p, acc);
            offs += if kind == Kind::Q4_1 {
                half_at(blk, 2) * y.s
            } else {
                -8.0 * d * y.s
            };
        }
        hsum(acc) + offs
    }

    /// [`super::dot`] for Q8_0 rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn dot_q8_0(row: &[u8], xq: &[Q8]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (blk, y) in row.chunks_exact(34).zip(xq) {
            let d = half_at(blk, 0);
            let Some(qs) = blk.get(2..34).and_then(|s| <&[u8; 32]>::try_from(s).ok()) else {
                continue;
            };
            let x = load32(qs);
            // maddubs wants an unsigned left operand: |x|, and y carrying x's sign.
            let ax = _mm256_sign_epi8(x, x);
            let sy = _mm256_sign_epi8(load32(&y.qs), x);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * y.d), mul_sum_us8(ax, sy), acc);
        }
        hsum(acc)
    }
}

#[cfg(any(
    test,
    not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))
))]
fn dot_q4(kind: Kind, row: &[u8], xq: &[Q8]) -> f32 {
    let bb = kind.block_bytes();
    let q_at = if kind == Kind::Q4_1 { 4 } else { 2 };
    let mut sum = 0f32;
    for (blk, y) in row.chunks_exact(bb).zip(xq) {
        let d = half_at(blk, 0);
        let qs = blk.get(q_at..q_at + 16).unwrap_or_default();
        let (lo, hi) = y.qs.split_at(BLOCK / 2);
        let isum: i32 = qs
            .iter()
            .zip(lo.iter().zip(hi))
            .map(|(q, (l, h))| {
                i32::from(q & 0x0F) * i32::from(*l) + i32::from(q >> 4) * i32::from(*h)
            })
            .sum();
        let m = if kind == Kind::Q4_1 {
            half_at(blk, 2)
        } else {
            -8.0 * d
        };
        sum += d * y.d * isum as f32 + m * y.s;
    }
    sum
}

#[cfg(any(
    test,
    not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma"
    ))
))]
fn dot_q8_0(row: &[u8], xq: &[Q8]) -> f32 {
    let mut sum = 0f32;
    for (blk, y) in row.chunks_exact(34).zip(xq) {
        let d = half_at(blk, 0);
        let isum: i32 = blk
            .get(2..34)
            .unwrap_or_default()
            .iter()
            .zip(y.qs)
            .map(|(q, v)| i32::from(*q as i8) * i32::from(v))
            .sum();
        sum += d * y.d * isum as f32;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_f32(n: usize, seed: &mut u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// A random `rows` x `cols` matrix quantised by candle.
    fn candle_quantized(
        dtype: candle_core::quantized::GgmlDType,
        rows: usize,
        cols: usize,
        seed: &mut u64,
    ) -> candle_core::quantized::QTensor {
        let w = rand_f32(rows * cols, seed);
        let t = candle_core::Tensor::from_vec(w, (rows, cols), &candle_core::Device::Cpu).unwrap();
        candle_core::quantized::QTensor::quantize(&t, dtype).unwrap()
    }

    /// candle's quantiser and reference (scalar) dot give the weights' bytes and a reference.
    fn check(dtype: candle_core::quantized::GgmlDType, kind: Kind) {
        use candle_core::Device;
        let mut seed = 7;
        let (rows, cols) = (8, 256);
        let q = candle_quantized(dtype, rows, cols, &mut seed);
        let x = rand_f32(cols, &mut seed);
        let bytes = q.data().unwrap().into_owned();
        let wd = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let mut xq = vec![Q8::default(); cols / BLOCK];
        quantize(&x, &mut xq);
        let row_bytes = cols / BLOCK * kind.block_bytes();
        for (r, wr) in wd.iter().enumerate() {
            let row = &bytes[r * row_bytes..(r + 1) * row_bytes];
            // Dequantisation is exact against candle's.
            let mut deq = vec![0f32; cols];
            dequantize_row(kind, row, &mut deq);
            assert_eq!(&deq, wr, "row {r} dequantised");
            // The quantised dot is within the Q8 rounding of the exact dot of the dequantised
            // weights with x (each activation is off by at most d/2).
            let exact: f32 = wr.iter().zip(&x).map(|(a, b)| a * b).sum();
            let bound: f32 = wr
                .iter()
                .zip(xq.iter().flat_map(|b| std::iter::repeat_n(b.d, BLOCK)))
                .map(|(a, d)| a.abs() * d / 2.0)
                .sum::<f32>()
                + 1e-4;
            let got = dot(kind, row, &xq, &x);
            assert!(
                (got - exact).abs() <= bound,
                "{kind:?} row {r}: {got} vs {exact} (bound {bound})"
            );
            if kind == Kind::F32 {
                assert!((got - exact).abs() <= 1e-4, "F32 row {r}: {got} vs {exact}");
            }
        }
    }

    #[test]
    fn q4_0_q4_1_and_q8_0_dots_match_candle_blocks() {
        use candle_core::quantized::GgmlDType;
        check(GgmlDType::Q4_0, Kind::Q4_0);
        check(GgmlDType::Q4_1, Kind::Q4_1);
        check(GgmlDType::Q8_0, Kind::Q8_0);
        check(GgmlDType::F32, Kind::F32);
    }

    #[test]
    fn simd_and_portable_kernels_agree() {
        use candle_core::quantized::GgmlDType;
        let mut seed = 5;
        let x = rand_f32(512, &mut seed);
        let mut xq = vec![Q8::default(); 16];
        quantize(&x, &mut xq);
        for (dtype, kind) in [
            (GgmlDType::Q4_0, Kind::Q4_0),
            (GgmlDType::Q4_1, Kind::Q4_1),
            (GgmlDType::Q8_0, Kind::Q8_0),
        ] {
            let row = candle_quantized(dtype, 1, 512, &mut seed)
                .data()
                .unwrap()
                .into_owned();
            let fast = dot(kind, &row, &xq, &x);
            let portable = if kind == Kind::Q8_0 {
                dot_q8_0(&row, &xq)
            } else {
                dot_q4(kind, &row, &xq)
            };
            assert!(
                (fast - portable).abs() <= 1e-4 * (1.0 + portable.abs()),
                "{kind:?}: {fast} vs {portable}"
            );
        }
    }

    #[test]
    fn quantize_round_trips_within_half_a_step() {
        let mut seed = 3;
        let x = rand_f32(96, &mut seed);
        let mut q = vec![Q8::default(); 3];
        quantize(&x, &mut q);
        for (b, xs) in q.iter().zip(x.chunks_exact(BLOCK)) {
            let sum: i32 = b.qs.iter().map(|v| i32::from(*v)).sum();
            // f16 scales: within f16 rounding (2^-11 relative).
            assert!((b.s - b.d * sum as f32).abs() <= 1e-3 * (b.d * sum as f32).abs() + 1e-6);
            for (v, qv) in xs.iter().zip(b.qs) {
                assert!((v - b.d * f32::from(qv)).abs() <= b.d / 2.0 + b.d * 127.0 / 2048.0);
            }
        }
        // All zeros: scale 0, no NaN.
        let mut z = [Q8::default()];
        quantize(&[0.0; 32], &mut z);
        assert_eq!((z[0].d, z[0].s), (0.0, 0.0));
    }
}
