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

use super::blocks::{BLOCK, SUPER};
use super::level::Level;

/// Activations of `tokens` rows of `cols` values, kept as f32 (for F32 weights) and quantised
/// to 8-bit blocks: per block `x ≈ d * q`, and `s = d * sum(q)` (for the `Q4_0`/`Q4_1`
/// offsets). Scales are rounded to f16 as ggml's `Q8_0`/`Q8_1` store them, so the products
/// match llama.cpp's bit for bit in the integers and closely in the floats.
///
/// Activations that a K-quant matrix multiplies ([`QAct::with_k_form`], and every [`QAct::new`]),
/// in rows whose width is a multiple of 256, are also quantised as ggml's `Q8_K`, the
/// activations llama.cpp multiplies K-quants with: per 256 values one f32 scale `kd` (the value of
/// largest magnitude becomes -127, rounded to nearest, ties to even), and the integers' sums
/// per 32 (`ks`, for the K-quants' minimums) and per 16 (`kh`, ggml's `bsums`, for the
/// striped `Q6_K` kernel's offset of 32). The K-quant kernels read that form, so their
/// integer sums are llama.cpp's too.
#[derive(Debug, Default)]
pub struct QAct {
    cols: usize,
    f: Vec<f32>,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
    kq: Vec<i8>,
    kd: Vec<f32>,
    ks: Vec<i32>,
    kh: Vec<i16>,
    /// Whether the `Q8_K` form is made (rows of 256s feeding a K-quant matrix).
    k_form: bool,
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
    kq: &'a mut [i8],
    kd: &'a mut [f32],
    ks: &'a mut [i32],
    kh: &'a mut [i16],
}

impl Chunk<'_> {
    /// Quantises the run's values, as [`QAct::quantize`] does.
    pub fn quantize(&mut self) {
        quantize_blocks(Level::best(), self.f, self.qs, self.d, self.s);
        quantize_k(self.f, self.kq, self.kd, (self.ks, self.kh));
    }
}

/// Quantises the whole super-blocks (256 values) of `f` as ggml's `Q8_K` (see [`QAct`]) into
/// `kq`, `kd` and the sums `ks` (per 32) and `kh` (per 16), as far as they reach.
fn quantize_k(f: &[f32], kq: &mut [i8], kd: &mut [f32], (ks, kh): (&mut [i32], &mut [i16])) {
    for ((((xs, q), d), s), h) in f
        .chunks_exact(SUPER)
        .zip(kq.chunks_exact_mut(SUPER))
        .zip(kd.iter_mut())
        .zip(ks.chunks_exact_mut(SUPER / BLOCK))
        .zip(kh.chunks_exact_mut(SUPER / 16))
    {
        *d = quantize_super(xs, q, s);
        for (sum, c) in h.iter_mut().zip(q.chunks_exact(16)) {
            // At most 16 * 128 in magnitude.
            *sum = c.iter().map(|v| i16::from(*v)).sum();
        }
    }
}

/// One super-block as ggml's `quantize_row_q8_K_ref`: the first value of largest magnitude
/// `max` sets the inverse scale `-127 / max`; each value times it, rounded to nearest with
/// ties to even, capped at 127; the scale is `1 / (-127 / max)`. Writes the sums of each 32
/// integers into `s`; returns the scale.
fn quantize_super(xs: &[f32], q: &mut [i8], s: &mut [i32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &x in xs {
        if x.abs() > amax {
            amax = x.abs();
            max = x;
        }
    }
    if amax == 0.0 {
        q.fill(0);
        s.fill(0);
        return 0.0;
    }
    let iscale = -127.0 / max;
    for (o, &x) in q.iter_mut().zip(xs) {
        // ggml's nearest_int: adding 1.5 * 2^23 rounds to an integer in the low mantissa bits
        // (ties to even); exact for |v| < 2^22, and |v| <= 127 here (NaN gives 0).
        let v = ((iscale * x + 12_582_912.0).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000;
        *o = v.clamp(-128, 127) as i8;
    }
    for (sum, c) in s.iter_mut().zip(q.chunks_exact(BLOCK)) {
        *sum = c.iter().map(|v| i32::from(*v)).sum();
    }
    1.0 / iscale
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
    /// `Q8_K` integers, `256 * supers` (empty when the width is not a multiple of 256).
    pub kq: &'a [i8],
    /// `Q8_K` scale per super-block.
    pub kd: &'a [f32],
    /// `Q8_K` integers' sum per 32.
    pub ks: &'a [i32],
    /// `Q8_K` integers' sum per 16 (ggml's `bsums`).
    pub kh: &'a [i16],
}

impl QAct {
    /// Quantises `f` (a whole number of rows of `cols`, a multiple of [`BLOCK`]), in every
    /// form (the `Q8_K` one too, where the width allows).
    pub fn new(f: Vec<f32>, cols: usize) -> Self {
        let mut a = Self {
            cols,
            f,
            k_form: true,
            ..Self::default()
        };
        a.quantize();
        a
    }

    /// Empty activations, to be written with [`Self::f_mut`] or [`Self::chunks_mut`], whose
    /// quantisation makes the `Q8_K` form too when `k_form` (for K-quant matrices; it costs
    /// a second pass over the values, so the forward pass asks for it only where a K-quant
    /// matrix reads the activations).
    pub fn with_k_form(k_form: bool) -> Self {
        Self {
            k_form,
            ..Self::default()
        }
    }

    /// The f32 values of `tokens` rows of `cols`, to be written and then quantised with
    /// [`Self::quantize`]. The buffers are kept from one use to the next: the decode loop
    /// allocates nothing.
    pub fn f_mut(&mut self, tokens: usize, cols: usize) -> &mut [f32] {
        self.cols = cols;
        self.f.resize(tokens * cols, 0.0);
        &mut self.f
    }

    /// Exchanges the f32 values' buffer with `v` (a product's output to be turned into
    /// these values in place, rather than copied into a buffer of their own).
    pub fn swap_f(&mut self, v: &mut Vec<f32>) {
        std::mem::swap(&mut self.f, v);
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
        quantize_k(
            &self.f,
            &mut self.kq,
            &mut self.kd,
            (&mut self.ks, &mut self.kh),
        );
    }

    /// Sizes the quantised values, scales and sums to the whole blocks of the f32 values (and
    /// the `Q8_K` form to its super-blocks, when the rows are made of them).
    fn fit_blocks(&mut self) {
        let n = self.f.len() / BLOCK;
        self.qs.resize(n * BLOCK, 0);
        self.d.resize(n, 0.0);
        self.s.resize(n, 0.0);
        let k = if self.has_k() { n } else { 0 };
        self.kq.resize(k * BLOCK, 0);
        self.kd.resize(k / (SUPER / BLOCK), 0.0);
        self.ks.resize(k, 0);
        self.kh.resize(2 * k, 0);
    }

    /// Whether the rows are also quantised as `Q8_K` (their width is a multiple of 256).
    fn has_k(&self) -> bool {
        self.k_form && self.cols > 0 && self.cols.is_multiple_of(SUPER)
    }

    /// The f32 values of `tokens` rows of `cols` (as [`Self::f_mut`]) in runs of `blocks`
    /// blocks, each to be written and then quantised on its own ([`Chunk::quantize`]), by
    /// as many threads as there are runs: the same bytes as [`Self::quantize`].
    pub fn chunks_mut(&mut self, tokens: usize, cols: usize, blocks: usize) -> Vec<Chunk<'_>> {
        self.f_mut(tokens, cols);
        self.fit_blocks();
        let subs = SUPER / BLOCK;
        // Runs of whole super-blocks when the `Q8_K` form is made.
        let blocks = if self.has_k() {
            blocks.max(1).next_multiple_of(subs)
        } else {
            blocks.max(1)
        };
        let run = blocks * BLOCK;
        // Empty when the `Q8_K` form is not made: every chunk then gets empty slices.
        let kparts = self
            .kq
            .chunks_mut(run)
            .map(Some)
            .chain(std::iter::repeat_with(|| None))
            .zip(
                self.kd
                    .chunks_mut(blocks / subs)
                    .map(Some)
                    .chain(std::iter::repeat_with(|| None)),
            )
            .zip(
                self.ks
                    .chunks_mut(blocks)
                    .map(Some)
                    .chain(std::iter::repeat_with(|| None)),
            )
            .zip(
                self.kh
                    .chunks_mut(2 * blocks)
                    .map(Some)
                    .chain(std::iter::repeat_with(|| None)),
            );
        self.f
            .chunks_mut(run)
            .zip(self.qs.chunks_mut(run))
            .zip(self.d.chunks_mut(blocks))
            .zip(self.s.chunks_mut(blocks))
            .zip(kparts)
            .enumerate()
            .map(|(i, ((((f, qs), d), s), (((kq, kd), ks), kh)))| Chunk {
                start: i * run,
                f,
                qs,
                d,
                s,
                kq: kq.unwrap_or_default(),
                kd: kd.unwrap_or_default(),
                ks: ks.unwrap_or_default(),
                kh: kh.unwrap_or_default(),
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
            kq: self
                .kq
                .get(t * self.cols..(t + 1) * self.cols)
                .unwrap_or_default(),
            kd: self
                .kd
                .get(t * self.cols / SUPER..(t + 1) * self.cols / SUPER)
                .unwrap_or_default(),
            ks: self.ks.get(t * nb..(t + 1) * nb).unwrap_or_default(),
            kh: self
                .kh
                .get(2 * t * nb..2 * (t + 1) * nb)
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

    /// The `Q8_K` form is ggml's `quantize_row_q8_K_ref`, written here again the plain way
    /// (its first value of largest magnitude becomes -127, ties to even), on random values,
    /// exact ties and a zero super-block; it is made for widths of 256s only, and chunks
    /// quantised apart make the same bytes.
    #[test]
    fn the_q8_k_form_is_ggml_s() {
        let mut seed = 17;
        let mut f = rand_f32(3 * SUPER, &mut seed);
        // Ties: a maximum of -127 makes the inverse scale 1, so k + 0.5 rounds to even.
        for (i, v) in f[SUPER..2 * SUPER].iter_mut().enumerate() {
            *v = (i % 64) as f32 - 32.5;
        }
        f[SUPER + 7] = -127.0;
        f.extend([0.0; SUPER]);
        let cols = 2 * SUPER;
        let x = QAct::new(f.clone(), cols);
        for t in 0..2 {
            let y = x.token(t);
            assert_eq!(
                (y.kq.len(), y.kd.len(), y.ks.len(), y.kh.len()),
                (cols, 2, 16, 32)
            );
            for (g, xs) in f[t * cols..(t + 1) * cols].chunks_exact(SUPER).enumerate() {
                let max = xs
                    .iter()
                    .fold(0f32, |m, v| if v.abs() > m.abs() { *v } else { m });
                let q = &y.kq[g * SUPER..(g + 1) * SUPER];
                if max == 0.0 {
                    assert!(q.iter().all(|v| *v == 0) && y.kd[g] == 0.0);
                    continue;
                }
                let iscale = -127.0 / max;
                let want: Vec<i8> = xs
                    .iter()
                    .map(|v| (iscale * v).round_ties_even().min(127.0) as i8)
                    .collect();
                assert_eq!(q, want.as_slice(), "token {t} super-block {g}");
                assert_eq!(y.kd[g].to_bits(), (1.0 / iscale).to_bits());
                for (s, c) in want.chunks_exact(BLOCK).enumerate() {
                    let sum: i32 = c.iter().map(|v| i32::from(*v)).sum();
                    assert_eq!(y.ks[g * 8 + s], sum);
                }
                for (s, c) in want.chunks_exact(16).enumerate() {
                    let sum: i32 = c.iter().map(|v| i32::from(*v)).sum();
                    assert_eq!(i32::from(y.kh[g * 16 + s]), sum);
                }
            }
        }
        // The tie super-block: -0.5 and 0.5 -> 0, -1.5 -> -2, 1.5 -> 2 (to even).
        let ties = &x.token(0).kq[SUPER..2 * SUPER];
        assert_eq!((ties[32], ties[33], ties[31], ties[34]), (0, 0, -2, 2));
        // Not a width of 256s, or not asked for: no Q8_K form.
        assert!(
            QAct::new(rand_f32(64, &mut seed), 64)
                .token(0)
                .kq
                .is_empty()
        );
        let mut off = QAct::with_k_form(false);
        off.f_mut(1, SUPER).copy_from_slice(&f[..SUPER]);
        off.quantize();
        assert!(off.token(0).kq.is_empty() && !off.token(0).qs.is_empty());
        // Chunks quantised apart: the same bytes.
        let mut c = QAct::with_k_form(true);
        for mut ch in c.chunks_mut(2, cols, 3) {
            let n = ch.f.len();
            ch.f.copy_from_slice(&f[ch.start..ch.start + n]);
            ch.quantize();
        }
        for t in 0..2 {
            let (a, b) = (c.token(t), x.token(t));
            assert_eq!((a.kq, a.ks, a.kh), (b.kq, b.ks, b.kh));
            assert_eq!(a.kd, b.kd);
        }
    }
}
