//! Activation quantisation: the activations of a matrix product, kept in f32 and quantised
//! once per product to 8-bit blocks ([`QAct`]), also in runs of blocks shared among threads
//! ([`Chunk`]), and one token's view of them as the kernels read it ([`Y`]). The
//! quantisation of a block runs in AVX2 where the CPU has it, with the portable loop's bytes
//! (tested).
//!
//! # Safety
//! The `unsafe` here is the AVX2 quantisation: its call, made only when [`Level::best`]
//! detected AVX2 and FMA on this CPU, and its loads and store, within one block's fixed-size
//! arrays.

use half::f16;

use super::blocks::BLOCK;
use super::level::Level;

/// Activations of `tokens` rows of `cols` values, kept as f32 (for F32 weights) and quantised
/// to 8-bit blocks: per block `x ≈ d * q`, and `s = d * sum(q)` (for the `Q4_0`/`Q4_1`
/// offsets). Scales are rounded to f16 as ggml's `Q8_0`/`Q8_1` store them, so the products
/// match llama.cpp's bit for bit in the integers and closely in the floats.
#[derive(Debug, Default)]
pub struct QAct {
    cols: usize,
    f: Vec<f32>,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

/// A run of whole blocks of a [`QAct`]'s values (see [`QAct::chunks_mut`]).
#[derive(Debug)]
pub struct Chunk<'a> {
    /// Index of its first value in the activations.
    pub start: usize,
    /// The f32 values, to be written.
    pub f: &'a mut [f32],
    qs: &'a mut [i8],
    d: &'a mut [f32],
    s: &'a mut [f32],
}

impl Chunk<'_> {
    /// Quantises the run's values, as [`QAct::quantize`] does.
    pub fn quantize(&mut self) {
        quantize_blocks(Level::best(), self.f, self.qs, self.d, self.s);
    }
}

/// Quantises the whole blocks of `f` into `qs`, `d` and `s` (see [`QAct`]), with the code of
/// `level` (lowered to what the CPU runs); every level gives the same bytes.
#[allow(
    unsafe_code,
    reason = "the call of the AVX2 quantisation, at a level detected on this CPU"
)]
fn quantize_blocks(level: Level, f: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    let level = level.min(Level::best());
    for (((xs, q), d), s) in f
        .chunks_exact(BLOCK)
        .zip(qs.chunks_exact_mut(BLOCK))
        .zip(d.iter_mut())
        .zip(s.iter_mut())
    {
        let (scale, sum) = match (<&[f32; BLOCK]>::try_from(xs), level) {
            #[cfg(target_arch = "x86_64")]
            (Ok(xs), Level::Avx2 | Level::Avx512) => match <&mut [i8; BLOCK]>::try_from(q) {
                // SAFETY: `best()` detected AVX2 and FMA on this CPU.
                Ok(q) => unsafe { avx2::quantize_block(xs, q) },
                Err(_) => (0.0, 0),
            },
            _ => quantize_block(xs, q),
        };
        *d = f16::from_f32(scale).to_f32();
        *s = f16::from_f32(scale * sum as f32).to_f32();
    }
}

/// Quantises one block of 32 values to `q` (see [`QAct`]); returns its scale (before the
/// f16 rounding) and the sum of its integers. The portable code, and the reference of the
/// SIMD one (`avx2::quantize_block`), which gives the same bytes.
fn quantize_block(xs: &[f32], q: &mut [i8]) -> (f32, i32) {
    // Eight lanes, so that the compiler vectorises each step.
    let mut lanes = [0f32; 8];
    for c in xs.chunks_exact(8) {
        for (m, v) in lanes.iter_mut().zip(c) {
            *m = m.max(v.abs());
        }
    }
    let amax = lanes.iter().fold(0f32, |m, v| m.max(*v));
    let scale = amax / 127.0;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    // Rounded to nearest, ties away from zero (ties to even broke the greedy agreement with
    // llama.cpp on one reference prompt). |v * inv| <= 127 by construction; the clamp only
    // tells the compiler so (NaN becomes 0).
    let mut sum = 0;
    for (v, o) in xs.iter().zip(q.iter_mut()) {
        let r = (v * inv).round().clamp(-127.0, 127.0) as i32;
        *o = r as i8;
        sum += r;
    }
    (scale, sum)
}

/// One token's activations, as the kernels read them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Y<'a> {
    /// Quantised values, `32 * blocks`.
    pub qs: &'a [i8],
    /// Block scales.
    pub d: &'a [f32],
    /// `d * sum(q)` per block.
    pub s: &'a [f32],
    /// The values in f32.
    pub f: &'a [f32],
}

impl QAct {
    /// Quantises `f` (a whole number of rows of `cols`, a multiple of [`BLOCK`]).
    pub fn new(f: Vec<f32>, cols: usize) -> Self {
        let mut a = Self {
            cols,
            f,
            ..Self::default()
        };
        a.quantize();
        a
    }

    /// The f32 values of `tokens` rows of `cols`, to be written and then quantised with
    /// [`Self::quantize`]. The buffers are kept from one use to the next: the decode loop
    /// allocates nothing.
    pub fn f_mut(&mut self, tokens: usize, cols: usize) -> &mut [f32] {
        self.cols = cols;
        self.f.resize(tokens * cols, 0.0);
        &mut self.f
    }

    /// Quantises the f32 values (see the type's documentation).
    pub fn quantize(&mut self) {
        self.quantize_at(Level::best());
    }

    /// [`Self::quantize`] with the code of `level` (lowered to what the CPU runs); every
    /// level gives the same bytes.
    fn quantize_at(&mut self, level: Level) {
        self.fit_blocks();
        quantize_blocks(level, &self.f, &mut self.qs, &mut self.d, &mut self.s);
    }

    /// Sizes the quantised values, scales and sums to the whole blocks of the f32 values.
    fn fit_blocks(&mut self) {
        let n = self.f.len() / BLOCK;
        self.qs.resize(n * BLOCK, 0);
        self.d.resize(n, 0.0);
        self.s.resize(n, 0.0);
    }

    /// The f32 values of `tokens` rows of `cols` (as [`Self::f_mut`]) in runs of `blocks`
    /// blocks, each to be written and then quantised on its own ([`Chunk::quantize`]), by
    /// as many threads as there are runs: the same bytes as [`Self::quantize`].
    pub fn chunks_mut(&mut self, tokens: usize, cols: usize, blocks: usize) -> Vec<Chunk<'_>> {
        self.f_mut(tokens, cols);
        self.fit_blocks();
        let blocks = blocks.max(1);
        let run = blocks * BLOCK;
        self.f
            .chunks_mut(run)
            .zip(self.qs.chunks_mut(run))
            .zip(self.d.chunks_mut(blocks))
            .zip(self.s.chunks_mut(blocks))
            .enumerate()
            .map(|(i, (((f, qs), d), s))| Chunk {
                start: i * run,
                f,
                qs,
                d,
                s,
            })
            .collect()
    }

    /// Number of token rows.
    pub fn tokens(&self) -> usize {
        self.f.len() / self.cols.max(1)
    }

    /// Token `t`'s activations (empty slices past the end).
    pub fn token(&self, t: usize) -> Y<'_> {
        let nb = self.cols / BLOCK;
        Y {
            qs: self
                .qs
                .get(t * self.cols..(t + 1) * self.cols)
                .unwrap_or_default(),
            d: self.d.get(t * nb..(t + 1) * nb).unwrap_or_default(),
            s: self.s.get(t * nb..(t + 1) * nb).unwrap_or_default(),
            f: self
                .f
                .get(t * self.cols..(t + 1) * self.cols)
                .unwrap_or_default(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(
    unsafe_code,
    reason = "AVX2 loads and a store within one block's fixed-size arrays"
)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::BLOCK;

    /// [`super::quantize_block`] in AVX2, the same bytes: the portable loop rounded and
    /// converted each value alone (Rust's saturating float-to-integer casts are not
    /// vectorised), 2.8 times slower.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn quantize_block(xs: &[f32; BLOCK], q: &mut [i8; BLOCK]) -> (f32, i32) {
        let p = xs.as_ptr();
        // SAFETY: four loads of 8 at 0, 8, 16 and 24: inside the 32 values of `xs`.
        let v = unsafe { [0, 8, 16, 24].map(|at| _mm256_loadu_ps(p.add(at))) };
        // max(|x|, m) keeps m when |x| is NaN, as f32::max does.
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let m = v.iter().fold(_mm256_setzero_ps(), |m, x| {
            _mm256_max_ps(_mm256_and_ps(*x, abs), m)
        });
        let m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m2, _mm_movehdup_ps(m2)));
        let scale = amax / 127.0;
        let inv = _mm256_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
        // f32::round (ties away from zero) is trunc(y + copysign(0.49999997, y)), as LLVM
        // lowers it; NaN becomes 0 first, then the clamp and an exact conversion.
        let below_half = _mm256_set1_ps(0.499_999_97);
        let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
        let (lo, hi) = (_mm256_set1_ps(-127.0), _mm256_set1_ps(127.0));
        let ints = v.map(|x| {
            let y = _mm256_mul_ps(x, inv);
            let y = _mm256_and_ps(y, _mm256_cmp_ps::<_CMP_ORD_Q>(y, y));
            let half = _mm256_or_ps(below_half, _mm256_and_ps(y, sign));
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(_mm256_add_ps(
                y, half,
            ));
            _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi))
        });
        let [a, b, c, d] = ints;
        let s = _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<1>(s)));
        // Packing works within 128-bit lanes: the permutation puts the bytes back in order.
        let bytes = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        // SAFETY: one 32-byte store into the 32 bytes of `q`.
        unsafe { _mm256_storeu_si256(q.as_mut_ptr().cast(), bytes) };
        (scale, sum)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Pseudo-random values in [-1, 1) from `seed` (also the kernels' tests' inputs).
    pub(in crate::engine::lean) fn rand_f32(n: usize, seed: &mut u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn quantize_round_trips_within_half_a_step() {
        let mut seed = 3;
        let x = QAct::new(rand_f32(96, &mut seed), 96);
        let y = x.token(0);
        for (b, xs) in x.f.chunks_exact(BLOCK).enumerate() {
            let (d, q) = (y.d[b], &y.qs[b * BLOCK..(b + 1) * BLOCK]);
            let sum: i32 = q.iter().map(|v| i32::from(*v)).sum();
            // f16 scales: within f16 rounding (2^-11 relative).
            assert!((y.s[b] - d * sum as f32).abs() <= 1e-3 * (d * sum as f32).abs() + 1e-6);
            for (v, qv) in xs.iter().zip(q) {
                assert!((v - d * f32::from(*qv)).abs() <= d / 2.0 + d * 127.0 / 2048.0);
            }
        }
        // All zeros: scale 0, no NaN.
        let z = QAct::new(vec![0.0; 32], 32);
        assert_eq!((z.d[0], z.s[0]), (0.0, 0.0));
    }

    #[test]
    fn quantize_gives_the_same_bytes_at_every_level() {
        let mut seed = 11;
        // Random values at many scales, exact ties (k + 0.5 after scaling: block maxima of
        // 127 make the scale 1), zeros, NaN and infinities.
        let mut f = Vec::new();
        for k in 0..200 {
            let m = 10f32.powi(k % 9 - 4);
            f.extend(rand_f32(64, &mut seed).iter().map(|v| v * m));
            let mut tie: Vec<f32> = (0..32).map(|i| (i as f32 - 16.0) + 0.5).collect();
            tie[0] = 127.0;
            f.extend(tie);
        }
        f.extend([0.0; 32]);
        f[96 + 5] = f32::NAN;
        f[96 + 40] = f32::INFINITY;
        f[192 + 3] = f32::NEG_INFINITY;
        let cols = f.len();
        let mut want = QAct::new(Vec::new(), cols);
        want.f_mut(1, cols).copy_from_slice(&f);
        want.quantize_at(Level::Portable);
        for level in Level::available() {
            let mut got = QAct::new(Vec::new(), cols);
            got.f_mut(1, cols).copy_from_slice(&f);
            got.quantize_at(level);
            let first = got.qs.iter().zip(&want.qs).position(|(a, b)| a != b);
            assert_eq!(first, None, "{level:?}: first differing quantised value");
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got.d), bits(&want.d), "{level:?}: scales");
            assert_eq!(bits(&got.s), bits(&want.s), "{level:?}: sums");
        }
        // The ties rounded away from zero: 0.5 -> 1, -0.5 -> -1, 1.5 -> 2.
        let tie = &want.qs[64..96];
        assert_eq!((tie[16], tie[15], tie[17]), (1, -1, 2));
    }
}
