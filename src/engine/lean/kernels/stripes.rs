//! The kernels of striped matrices (`Q4_0`, `Q4_1`, `Q8_0`, `Q4_K` and `Q6_K` in stripes of
//! eight rows, see [`Layout::striped`]): the products of a stripe's eight rows with up to
//! four tokens' activations at once, as eight lanes of one vector per token.
//!
//! The row kernels (`avx2::blocks_avx2`) sum each block's 32 products of one row in the lanes
//! of a vector: every block then costs a `maddubs`, a `madd`, a conversion and a multiply-add
//! per row and token, and the `madd`s and `maddubs`es share the vector multiplier, which
//! bounded a generation step below the memory's speed. Here lane `i` is row `i` of the
//! stripe: a 32-byte load gives weights `8j..8j + 4` and `8j + 4..8j + 8` of the eight rows,
//! each multiplied by its four activations broadcast to every lane (one `maddubs` for eight
//! rows), the eight products of a block added as 16-bit integers (4-bit weights times 8-bit
//! activations: at most 8 · 2 · 15 · 128 = 30 720, within `i16`) before one `madd`,
//! conversion and multiply-add for the eight rows. This is what the prompt tiles (`tiles`) do
//! after unpacking a task's rows; striped at load, a generation step needs no unpacking.
//! `Q4_K` sub-blocks of 32 are multiplied as `Q4_0` blocks, then by the eight rows' integer
//! scales in the `madd`, added up as integers over the super-block (as ggml does per row).
//! `Q6_K` sub-blocks likewise, their six-bit integers rebuilt from the nibbles and the top
//! bits stored under them, ggml's offset of 32 from the activations' sums per 16; `Q8_0`
//! blocks with the weights' magnitudes and the activations given their signs, each
//! `maddubs` widened at once (two would not add within `i16`).
//!
//! # Safety
//! The `unsafe` here is unaligned loads within slices whose lengths [`Stripes::stripe`] and
//! the kernel check first (and say so next to each); the AVX2 kernel runs only where
//! `Level::best` detected AVX2, FMA and F16C.
//!
//! [`Layout::striped`]: crate::engine::lean::pack::Layout::striped

#![cfg_attr(
    target_arch = "x86_64",
    allow(
        unsafe_code,
        reason = "SIMD kernels; each block says why it is in bounds and supported"
    )
)]

use std::ops::Range;

use half::f16;

use super::portable::k_super;
use super::rows::{fits, fits_k};
use crate::engine::lean::blocks::{BLOCK, Kind, SUPER, decode_k};
use crate::engine::lean::pack::{
    Packed, Q4K_BYTES, Q6K_BYTES, STRIPE, STRIPE_BLOCK_BYTES, STRIPE_Q8_BYTES, stripe_nibble,
    stripe_q8_byte, unstripe_q4k_row, unstripe_q6k_row,
};
use crate::engine::lean::quant::Y;

/// Whole stripes of a striped matrix, with their lengths checked: all of the matrix's
/// ([`Stripes::new`]) or one ([`Stripes::stripe`]). `nb` blocks per row, and per stripe
/// `8 * nb` scales `d` (and `Q4_1` minimums `m`) and `128 * nb` bytes of weights; for `Q4_K`
/// and `Q6_K`, no `d` or `m` but `nb / 8` super-blocks of eight rows (144 or 210 bytes per
/// row, their scales inside).
#[derive(Clone, Copy)]
pub(super) struct Stripes<'a> {
    pub(super) kind: Kind,
    pub(super) nb: usize,
    pub(super) d: &'a [f16],
    pub(super) m: Option<&'a [f16]>,
    pub(super) qs: &'a [u8],
}

impl<'a> Stripes<'a> {
    /// The stripes of `p`, if it is a striped matrix whose parts have their lengths.
    pub(super) fn new(p: &'a Packed) -> Option<Self> {
        let nb = p.cols() / BLOCK;
        let blocks = p.rows().checked_mul(nb)?;
        let kind = p.kind();
        let kinds = matches!(
            kind,
            Kind::Q4_0 | Kind::Q4_1 | Kind::Q8_0 | Kind::Q4K | Kind::Q6K
        );
        if !p.striped() || !kinds || !p.rows().is_multiple_of(STRIPE) || nb == 0 {
            return None;
        }
        if kind.is_k() {
            if !p.cols().is_multiple_of(SUPER) {
                return None;
            }
            return Some(Self {
                kind,
                nb,
                d: &[],
                m: None,
                qs: p
                    .qs()
                    .get(..blocks / (SUPER / BLOCK) * kind.block_bytes())?,
            });
        }
        Some(Self {
            kind,
            nb,
            d: p.d().get(..blocks)?,
            m: if p.kind() == Kind::Q4_1 {
                Some(p.m().get(..blocks)?)
            } else {
                None
            },
            qs: p.qs().get(..blocks / STRIPE * block_bytes(kind))?,
        })
    }

    /// Stripe `s`, `None` past the last.
    pub(super) fn stripe(&self, s: usize) -> Option<Self> {
        if self.kind.is_k() {
            let per = self.nb / (SUPER / BLOCK) * STRIPE * self.kind.block_bytes();
            return Some(Self {
                kind: self.kind,
                nb: self.nb,
                d: &[],
                m: None,
                qs: self.qs.get(s * per..(s + 1) * per)?,
            });
        }
        let per = STRIPE * self.nb;
        let scales = s * per..(s + 1) * per;
        Some(Self {
            kind: self.kind,
            nb: self.nb,
            d: self.d.get(scales.clone())?,
            m: match self.m {
                Some(m) => Some(m.get(scales)?),
                None => None,
            },
            qs: self.qs.get(
                s * self.nb * block_bytes(self.kind)..(s + 1) * self.nb * block_bytes(self.kind),
            )?,
        })
    }
}

/// Bytes of a stripe's block of a striped `Q4_0`, `Q4_1` or `Q8_0` matrix.
fn block_bytes(kind: Kind) -> usize {
    if kind == Kind::Q8_0 {
        STRIPE_Q8_BYTES
    } else {
        STRIPE_BLOCK_BYTES
    }
}

/// The stripes holding rows `rows` (the first and last may hold rows outside it).
pub(super) fn covering(rows: &Range<usize>) -> Range<usize> {
    rows.start / STRIPE..rows.end.div_ceil(STRIPE)
}

/// A stripe's products with `N` tokens' activations, `[token][row of the stripe]`, in plain
/// Rust: per block and row, the integer sum of the 32 products, then its scale's product and
/// the offset's (`Q4_1`'s minimum, or `Q4_0`'s -8 times the scale) times the activations'
/// sum, as the row kernel `q4_portable` computes them. Zeros if the tokens' activations do
/// not have the stripe's width.
pub(super) fn stripe_portable<const N: usize>(
    st: Stripes<'_>,
    ys: &[Y<'_>; N],
) -> [[f32; STRIPE]; N] {
    let mut out = [[0f32; STRIPE]; N];
    if st.kind.is_k() {
        return k_stripe_portable(st, ys);
    }
    if !fits(st.nb, ys) {
        return out;
    }
    if st.kind == Kind::Q8_0 {
        return q8_stripe_portable(st, ys);
    }
    for (o, y) in out.iter_mut().zip(ys) {
        for (b, q) in st
            .qs
            .chunks_exact(STRIPE_BLOCK_BYTES)
            .enumerate()
            .take(st.nb)
        {
            let yq = y.qs.get(b * BLOCK..(b + 1) * BLOCK).unwrap_or_default();
            let (yd, ysum) = (
                y.d.get(b).copied().unwrap_or(0.0),
                y.s.get(b).copied().unwrap_or(0.0),
            );
            for (i, ov) in o.iter_mut().enumerate() {
                let isum: i32 = yq
                    .iter()
                    .enumerate()
                    .map(|(k, v)| {
                        let (byte, shift) = stripe_nibble(i, k);
                        let n = (q.get(byte).copied().unwrap_or(0) >> shift) & 0x0F;
                        i32::from(n) * i32::from(*v)
                    })
                    .sum();
                let at = b * STRIPE + i;
                let dv = st.d.get(at).map_or(0.0, |v| v.to_f32());
                let mv =
                    st.m.map_or(-8.0 * dv, |m| m.get(at).map_or(0.0, |v| v.to_f32()));
                *ov += dv * yd * isum as f32 + mv * ysum;
            }
        }
    }
    out
}

/// A `Q8_0` stripe's products in plain Rust, as the row kernel `q8_portable` computes them
/// (the same sums in the same order). Zeros if the tokens' activations do not have the
/// stripe's width.
fn q8_stripe_portable<const N: usize>(st: Stripes<'_>, ys: &[Y<'_>; N]) -> [[f32; STRIPE]; N] {
    let mut out = [[0f32; STRIPE]; N];
    if !fits(st.nb, ys) {
        return out;
    }
    for (o, y) in out.iter_mut().zip(ys) {
        for (b, (q, yq)) in st
            .qs
            .chunks_exact(STRIPE_Q8_BYTES)
            .zip(y.qs.chunks_exact(BLOCK))
            .enumerate()
            .take(st.nb)
        {
            let yd = y.d.get(b).copied().unwrap_or(0.0);
            for (i, ov) in o.iter_mut().enumerate() {
                let isum: i32 = yq
                    .iter()
                    .enumerate()
                    .map(|(k, v)| {
                        let w = q.get(stripe_q8_byte(i, k)).map_or(0, |w| *w as i8);
                        i32::from(w) * i32::from(*v)
                    })
                    .sum();
                let dv = st.d.get(b * STRIPE + i).map_or(0.0, |v| v.to_f32());
                *ov += dv * yd * isum as f32;
            }
        }
    }
    out
}

/// A `Q4_K` or `Q6_K` stripe's products in plain Rust: each row's super-blocks rebuilt in
/// GGUF form and computed as the row kernel `k_portable` computes them (the same sums in the
/// same order). Zeros if the tokens' activations do not have the stripe's width.
fn k_stripe_portable<const N: usize>(st: Stripes<'_>, ys: &[Y<'_>; N]) -> [[f32; STRIPE]; N] {
    let mut out = [[0f32; STRIPE]; N];
    if !fits_k(st.nb, ys) {
        return out;
    }
    for (g, sts) in st
        .qs
        .chunks_exact(STRIPE * st.kind.block_bytes())
        .enumerate()
    {
        for i in 0..STRIPE {
            let k = if st.kind == Kind::Q6K {
                decode_k(Kind::Q6K, &unstripe_q6k_row(sts, i))
            } else {
                decode_k(Kind::Q4K, &unstripe_q4k_row(sts, i))
            };
            for (o, y) in out.iter_mut().zip(ys) {
                o[i] += k_super(&k, y, g);
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
pub(super) use self::x86::stripe_avx2;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{
        Q4K_BYTES, Q6K_BYTES, STRIPE, STRIPE_BLOCK_BYTES, STRIPE_Q8_BYTES, Stripes, fits, fits_k,
    };
    use crate::engine::lean::blocks::{BLOCK, Kind, SUPER};
    use crate::engine::lean::kernels::avx2::load256;
    use crate::engine::lean::pack::Q6K_SUB_BYTES;

    /// How far ahead of the kernels' loads the stripe's bytes are prefetched (`_MM_HINT_T0`,
    /// once per 64 bytes read). A stripe is one contiguous run of bytes, read once per
    /// token; the hardware prefetcher alone left the kernels waiting on it. Generation,
    /// tokens/s per alternating run (`rempart bench -t 2 -p 0 -n 32 -r 2`, 2026-12-06, the
    /// AVX2-only EPYC VM), without the prefetch against 1024 bytes ahead: the 1B Q4_K_M
    /// shape 30.2/28.2/30.3/27.9/28.7/29.3 against 32.8/32.9/31.8/34.3/33.7/32.4, the 1B
    /// Q4_0 31.4/34.6/32.0/30.5/30.0/30.9 against 39.7/38.0/34.1/36.0/35.4/35.4; 2048
    /// bytes against 1024 about the same (Q4_K_M 32.0-34.4 against 30.1-32.7, Q4_0
    /// 32.1-40.3 against 32.1-36.8); without against 2048: SmolLM2 Q4_1 192-237 against
    /// 200-255 (`-n 64`), Gemma 3 270M 78-92 against 86-94, the 7B shape 5.1/5.2 against
    /// 7.1/5.9 (`-n 16`). (The row kernels' prefetch of whole rows ahead, `_MM_HINT_NTA`,
    /// slowed them: `rows::AVX2_PREFETCH_ROWS`.) 4096 bytes against 2048 (1B Q4_K_M, five
    /// alternating rounds): 35.1-37.8 against 35.7-42.0, kept at 2048.
    ///
    /// One token's products only (`N == 1`): a prompt's groups of tokens go over a task's
    /// stripes again and again from the cache, and the prefetches slowed them (SmolLM2 Q8_0
    /// pp128, alternating: 376-414 tokens/s with them, 540-561 without; 1024x2048, four
    /// tokens, one thread: Q8_0 204.5 -> 172.4 us, Q4_0 140.3 -> 123.3).
    const AHEAD: usize = 2048;
    use crate::engine::lean::quant::Y;

    /// A stripe's products with `N` (at most 4) tokens' activations, AVX2 (see the module
    /// documentation): `[token][row of the stripe]`. Zeros if the tokens' activations do not
    /// have the stripe's width or `N` is over 4 (their vectors would not stay in registers).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(in crate::engine::lean::kernels) fn stripe_avx2<const N: usize>(
        st: Stripes<'_>,
        ys: &[Y<'_>; N],
    ) -> [[f32; STRIPE]; N] {
        match st.kind {
            Kind::Q4K => return k4_stripe_avx2(st, ys),
            Kind::Q6K => return k6_stripe_avx2(st, ys),
            Kind::Q8_0 => return q8_stripe_avx2(st, ys),
            _ => {}
        }
        let res = [[0f32; STRIPE]; N];
        let nb = st.nb;
        if N > 4
            || !fits(nb, ys)
            || st.d.len() < nb * STRIPE
            || st.m.is_some_and(|m| m.len() < nb * STRIPE)
            || st.qs.len() < nb * STRIPE_BLOCK_BYTES
        {
            return res;
        }
        let low = _mm256_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        // Per token, the scaled sums and the offsets' products in two accumulators, so that
        // each block's two multiply-adds do not wait on each other.
        let mut acc = [_mm256_setzero_ps(); N];
        let mut off = [_mm256_setzero_ps(); N];
        for b in 0..nb {
            // SAFETY: d (and m) hold 8 * nb f16 (checked above): 16 bytes from 8b.
            let dv = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(st.d.as_ptr().add(8 * b).cast()) });
            // `Q4_1`'s minimums times the activations' sums; `Q4_0`'s offset, -8 times the
            // scale, as the scale times -8 times the sums (-8 is a power of two: the same
            // product).
            let (mv, k) = match st.m {
                // SAFETY: as above.
                Some(m) => (
                    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(m.as_ptr().add(8 * b).cast()) }),
                    1.0,
                ),
                None => (dv, -8.0),
            };
            let mut ints = [_mm256_setzero_si256(); N];
            for j in 0..BLOCK / 8 {
                if j % 2 == 0 {
                    ahead::<N>(st.qs.as_ptr(), STRIPE_BLOCK_BYTES * b + 32 * j);
                }
                // SAFETY: qs holds 128 * nb bytes (checked above); 128b + 32j + 32 <= that.
                let v = unsafe { load256(st.qs.as_ptr(), STRIPE_BLOCK_BYTES * b + 32 * j) };
                let lo = _mm256_and_si256(v, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                for t in 0..N {
                    // SAFETY: every token's qs holds 32 * nb values (`fits`), and
                    // 32b + 8j + 8 <= 32 * nb.
                    let pair =
                        unsafe { eight_sums(lo, hi, ys[t].qs.as_ptr().add(BLOCK * b + 8 * j)) };
                    ints[t] = _mm256_add_epi16(ints[t], pair);
                }
            }
            for t in 0..N {
                let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(ints[t], ones));
                // `fits`: d and s hold nb values.
                let (yd, ysum) = (ys[t].d[b], ys[t].s[b]);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dv, _mm256_set1_ps(yd)), sums, acc[t]);
                off[t] = _mm256_fmadd_ps(mv, _mm256_set1_ps(k * ysum), off[t]);
            }
        }
        rows_of(std::array::from_fn(|t| _mm256_add_ps(acc[t], off[t])))
    }

    /// A `Q8_0` stripe's products with `N` (at most 4) tokens' activations, AVX2: a 32-byte
    /// load gives weights `4j..4j + 4` of the eight rows (lane `i`, row `i`), their
    /// magnitudes (`maddubs` wants an unsigned left operand) multiplied by four activations
    /// broadcast to every lane and given the weights' signs; each `maddubs` (two products of
    /// at most 127 · 127) widened by a `madd`, as two would not add within `i16`; then per
    /// block one conversion and multiply-add for the eight rows. Zeros if the tokens'
    /// activations do not have the stripe's width or `N` is over 4.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn q8_stripe_avx2<const N: usize>(st: Stripes<'_>, ys: &[Y<'_>; N]) -> [[f32; STRIPE]; N] {
        let res = [[0f32; STRIPE]; N];
        let nb = st.nb;
        if N > 4 || !fits(nb, ys) || st.d.len() < nb * STRIPE || st.qs.len() < nb * STRIPE_Q8_BYTES
        {
            return res;
        }
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); N];
        for b in 0..nb {
            // SAFETY: d holds 8 * nb f16 (checked above): 16 bytes from 8b.
            let dv = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(st.d.as_ptr().add(8 * b).cast()) });
            let mut ints = [_mm256_setzero_si256(); N];
            for j in 0..BLOCK / 4 {
                if j % 2 == 0 {
                    ahead::<N>(st.qs.as_ptr(), STRIPE_Q8_BYTES * b + 32 * j);
                }
                // SAFETY: qs holds 256 * nb bytes (checked above); 256b + 32j + 32 <= that.
                let v = unsafe { load256(st.qs.as_ptr(), STRIPE_Q8_BYTES * b + 32 * j) };
                let mag = _mm256_sign_epi8(v, v);
                for t in 0..N {
                    // SAFETY: every token's qs holds 32 * nb values (`fits`), and
                    // 32b + 4j + 4 <= 32 * nb.
                    let y = _mm256_set1_epi32(unsafe {
                        ys[t]
                            .qs
                            .as_ptr()
                            .add(BLOCK * b + 4 * j)
                            .cast::<i32>()
                            .read_unaligned()
                    });
                    let p = _mm256_maddubs_epi16(mag, _mm256_sign_epi8(y, v));
                    ints[t] = _mm256_add_epi32(ints[t], _mm256_madd_epi16(p, ones));
                }
            }
            for t in 0..N {
                // `fits`: d holds nb values.
                let yd = _mm256_set1_ps(ys[t].d[b]);
                acc[t] =
                    _mm256_fmadd_ps(_mm256_mul_ps(dv, yd), _mm256_cvtepi32_ps(ints[t]), acc[t]);
            }
        }
        rows_of(acc)
    }

    /// Each token's eight rows' results, from its vector.
    #[inline]
    #[target_feature(enable = "avx")]
    fn rows_of<const N: usize>(v: [__m256; N]) -> [[f32; STRIPE]; N] {
        let mut res = [[0f32; STRIPE]; N];
        for (r, v) in res.iter_mut().zip(v) {
            // SAFETY: r holds 8 f32, 32 bytes; the store is unaligned.
            unsafe { _mm256_storeu_ps(r.as_mut_ptr(), v) };
        }
        res
    }

    /// How far ahead the stripe's bytes are also asked for in the second-level cache
    /// (`_MM_HINT_T1`, besides [`AHEAD`]'s first-level prefetch). On the Sapphire Rapids VM
    /// (2026-12-06, sixth session; one core's bandwidth there is bounded by its misses in
    /// flight) this second prefetch sped generation, alternating runs (`rempart bench -t 2
    /// -p 0 -n 32 -r 1`, tokens/s, without against with): the 1B Q4_0 shape
    /// 29.1/29.8/28.4/28.5 against 32.5/31.3/30.4/30.9, the 1B Q4_K_M shape
    /// 26.5/26.5/27.8/27.1 against 28.7/28.2/29.2/28.9, SmolLM2 Q4_1 (`-n 64`)
    /// 271.9/265.5/254.4 against 318.6/333.1/318.4, Gemma 3 270M 72.7/64.2/71.8 against
    /// 79.2/81.6/77.1. There, the first-level prefetch alone 4096 bytes ahead was slower
    /// than 2048 (1B Q4_0 28.2-29.2 against 29.8-30.6), and 1024 no faster.
    const AHEAD_L2: usize = 3 * AHEAD;

    /// Bytes of a striped `Q4_K` super-block's header (the eight rows' `d`, `dmin` and scale
    /// words), before its sub-blocks. The K-quant kernels ask for the lines past their
    /// headers too (before 2026-12-07 they asked only past the sub-blocks' lines, so two or
    /// three lines of each super-block came in on demand): on the Sapphire Rapids VM,
    /// alternating runs (`rempart bench -t 2 -p 0 -n 64 -r 1`, tokens/s, before against
    /// after) the 1B Q4_K_M shape 33.5-34.2 against 34.7-35.2, Gemma 3 270M 85.3-86.8 against
    /// 86.1-89.5, SmolLM2 Q6_K 210.7-224.4 against 219.0-226.8; the 1B Q4_0 (its Q6_K output)
    /// unchanged. (Asking for the `Q4_0` scales' own stream too made no difference; one ask
    /// per `Q6_K` line instead of one per 48 bytes was slower: 1B Q4_0 35.5-36.1 against
    /// 36.7-36.8.)
    const Q4K_HEADER: usize = 128;

    /// Bytes of a striped `Q6_K` super-block's header (the eight rows' `d` and scales).
    const Q6K_HEADER: usize = 144;

    /// Asks for the line `AHEAD` bytes past `at` in the stripe at `p` in the first-level
    /// cache and the line `AHEAD_L2` past it in the second-level one, when the kernel runs
    /// one token (`N == 1`, see [`AHEAD`]); nothing for a prompt's groups.
    #[inline(always)]
    fn ahead<const N: usize>(p: *const u8, at: usize) {
        if N != 1 {
            return;
        }
        // SAFETY: SSE is part of every x86-64 CPU; a prefetch is a hint that never faults
        // (the addresses may be past the stripe: `wrapping_add` makes no claim on them).
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(at + AHEAD).cast());
            _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(at + AHEAD_L2).cast());
        }
    }

    /// [`ahead`] for each line of the `len`-byte header of the super-block at `base`: the
    /// K-quant kernels' loops over sub-blocks start after it, so without this the lines
    /// `AHEAD` (and `AHEAD_L2`) past each header were never asked for.
    #[inline(always)]
    fn ahead_header<const N: usize>(p: *const u8, base: usize, len: usize) {
        for at in (0..len).step_by(64) {
            ahead::<N>(p, base + at);
        }
    }

    /// The products of eight weights of each row, `lo` (weights `4k..4k + 4` of row `i` in
    /// lane `i`) and `hi` (the next four), with the eight activations at `y` (four broadcast
    /// to every lane for each), as 16-bit sums per row.
    ///
    /// # Safety
    /// `y` points to 8 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn eight_sums(lo: __m256i, hi: __m256i, y: *const i8) -> __m256i {
        // SAFETY: 8 bytes at y by the caller's contract; the reads are unaligned.
        let (ya, yb) = unsafe {
            let q = y.cast::<i32>();
            (
                _mm256_set1_epi32(q.read_unaligned()),
                _mm256_set1_epi32(q.add(1).read_unaligned()),
            )
        };
        _mm256_add_epi16(_mm256_maddubs_epi16(lo, ya), _mm256_maddubs_epi16(hi, yb))
    }

    /// The `shuffle_epi8` control that puts byte `b` (below 4) of each 32-bit lane in both of
    /// its 16-bit halves (their high bytes zero).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lane_byte(b: usize) -> __m256i {
        let ctl = |lane: usize| {
            let at = (4 * lane + b) as u8;
            i32::from_le_bytes([at, 0x80, at, 0x80])
        };
        _mm256_setr_epi32(
            ctl(0),
            ctl(1),
            ctl(2),
            ctl(3),
            ctl(0),
            ctl(1),
            ctl(2),
            ctl(3),
        )
    }

    /// A `Q4_K` stripe's products with `N` (at most 4) tokens' activations in their `Q8_K`
    /// form, AVX2 (see `pack::stripe_q4k_row` for the layout): per super-block, the eight
    /// rows' sub-block scales and minimums decoded at once from their scale words (as
    /// `blocks::k4_scales_mins` decodes one row's); per sub-block, its products added as
    /// 16-bit integers (as `Q4_0`'s blocks), then multiplied by the eight rows' scales in one
    /// `madd` and added up as 32-bit integers over the super-block; the minimums times the
    /// activations' sums per 32 in one `madd` per two sub-blocks (the minimums as 16-bit
    /// pairs; one per sub-block before 2026-12-06); one float product of each per
    /// super-block and token. Zeros if the tokens' activations do not have the stripe's
    /// width or `N` is over 4.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn k4_stripe_avx2<const N: usize>(st: Stripes<'_>, ys: &[Y<'_>; N]) -> [[f32; STRIPE]; N] {
        const SUBS: usize = SUPER / BLOCK;
        let res = [[0f32; STRIPE]; N];
        let supers = st.nb / SUBS;
        let per = STRIPE * Q4K_BYTES;
        if N > 4 || !fits_k(st.nb, ys) || st.qs.len() < supers * per {
            return res;
        }
        let low = _mm256_set1_epi8(0x0F);
        let (m6, m4, m2) = (
            _mm256_set1_epi32(0x3f3f_3f3f),
            _mm256_set1_epi32(0x0f0f_0f0f),
            _mm256_set1_epi32(0x3030_3030),
        );
        let mut acc = [_mm256_setzero_ps(); N];
        let mut off = [_mm256_setzero_ps(); N];
        let p = st.qs.as_ptr();
        for g in 0..supers {
            let base = g * per;
            ahead_header::<N>(p, base, Q4K_HEADER);
            // SAFETY: qs holds supers * 1152 bytes (checked above) and base + 128 <= that.
            let (dv, dm, a, m, c) = unsafe {
                (
                    _mm256_cvtph_ps(_mm_loadu_si128(p.add(base).cast())),
                    _mm256_cvtph_ps(_mm_loadu_si128(p.add(base + 16).cast())),
                    load256(p, base + 32),
                    load256(p, base + 64),
                    load256(p, base + 96),
                )
            };
            // Per row (32-bit lane), the scales and minimums of sub-blocks 0..4 and 4..8 as
            // bytes: the low six bits of words a (scales) and m (minimums) for 0..4; for
            // 4..8, the nibbles of word c with the top two bits of a's or m's bytes above.
            let s_lo = _mm256_and_si256(a, m6);
            let s_hi = _mm256_or_si256(
                _mm256_and_si256(c, m4),
                _mm256_and_si256(_mm256_srli_epi32(a, 2), m2),
            );
            let m_lo = _mm256_and_si256(m, m6);
            let m_hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi32(c, 4), m4),
                _mm256_and_si256(_mm256_srli_epi32(m, 2), m2),
            );
            // The minimums of sub-blocks (0, 2), (1, 3), (4, 6) and (5, 7) as 16-bit pairs per
            // row, for one `madd` per pair of sub-blocks with the activations' sums.
            let even = _mm256_set1_epi32(0x00ff_00ff);
            let m_pairs = [
                _mm256_and_si256(m_lo, even),
                _mm256_srli_epi16(m_lo, 8),
                _mm256_and_si256(m_hi, even),
                _mm256_srli_epi16(m_hi, 8),
            ];
            let mut ints = [_mm256_setzero_si256(); N];
            let mut mins = [_mm256_setzero_si256(); N];
            for t in 0..N {
                // The activations' sums of the super-block's sub-blocks (each |sum| <= 32 *
                // 128, an i16; `fits_k`: ks holds 8 per super-block), paired as the minimums.
                let k = &ys[t].ks[SUBS * g..SUBS * (g + 1)];
                let pair = |a: usize, b: usize| _mm256_set1_epi32((k[a] & 0xffff) | (k[b] << 16));
                let ks = [pair(0, 2), pair(1, 3), pair(4, 6), pair(5, 7)];
                for (m, k) in m_pairs.iter().zip(ks) {
                    mins[t] = _mm256_add_epi32(mins[t], _mm256_madd_epi16(*m, k));
                }
            }
            for sub in 0..SUBS {
                let sv = if sub < 4 { s_lo } else { s_hi };
                let sc = _mm256_shuffle_epi8(sv, lane_byte(sub % 4));
                let mut sums = [_mm256_setzero_si256(); N];
                for j in 0..BLOCK / 8 {
                    let at = base + 128 + STRIPE_BLOCK_BYTES * sub + 32 * j;
                    if j % 2 == 0 {
                        ahead::<N>(p, at);
                    }
                    // SAFETY: at + 32 <= base + 1152 <= qs.len() (checked above).
                    let v = unsafe { load256(p, at) };
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    for t in 0..N {
                        // SAFETY: every token's kq holds 256 * supers values (`fits_k`), and
                        // 256g + 32 sub + 8j + 8 <= 256 (g + 1).
                        let pair = unsafe {
                            eight_sums(
                                lo,
                                hi,
                                ys[t].kq.as_ptr().add(SUPER * g + BLOCK * sub + 8 * j),
                            )
                        };
                        sums[t] = _mm256_add_epi16(sums[t], pair);
                    }
                }
                for t in 0..N {
                    ints[t] = _mm256_add_epi32(ints[t], _mm256_madd_epi16(sums[t], sc));
                }
            }
            for t in 0..N {
                let kd = _mm256_set1_ps(ys[t].kd[g]);
                acc[t] =
                    _mm256_fmadd_ps(_mm256_mul_ps(dv, kd), _mm256_cvtepi32_ps(ints[t]), acc[t]);
                off[t] =
                    _mm256_fmadd_ps(_mm256_mul_ps(dm, kd), _mm256_cvtepi32_ps(mins[t]), off[t]);
            }
        }
        rows_of(std::array::from_fn(|t| _mm256_sub_ps(acc[t], off[t])))
    }
    /// A `Q6_K` stripe's products with `N` (at most 4) tokens' activations in their `Q8_K`
    /// form, AVX2 (see `pack::stripe_q6k_row` for the layout): per 32 bytes of nibbles, the
    /// eight rows' six-bit integers (0..64) rebuilt from them and their top bits (one load of
    /// top bits serves two of nibbles), multiplied as `Q4_0`'s eight weights per row (four
    /// products of at most 63 · 128 in each 16-bit half: within `i16`), then by the rows'
    /// integer scale of those sixteen weights in a `madd`, added up as 32-bit integers over
    /// the super-block; ggml's offset of 32 as 32 times the scales times the activations'
    /// sums per 16 (`kh`), one `madd` per sub-block and token, added up over the
    /// super-block before one shift by 5. The integers are ggml's (the offsets' total is at
    /// most 8 · 2 · 128 · 2048 · 32 < 2^31); one float product per super-block and token.
    /// Zeros if the tokens' activations do not have the stripe's width or `N` is over 4.
    #[target_feature(enable = "avx2,fma,f16c")]
    fn k6_stripe_avx2<const N: usize>(st: Stripes<'_>, ys: &[Y<'_>; N]) -> [[f32; STRIPE]; N] {
        const SUBS: usize = SUPER / BLOCK;
        let res = [[0f32; STRIPE]; N];
        let supers = st.nb / SUBS;
        let per = STRIPE * Q6K_BYTES;
        if N > 4 || !fits_k(st.nb, ys) || st.qs.len() < supers * per {
            return res;
        }
        let (low, top) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(0x30));
        // Per 32-bit lane (a row), its 16-bit scale of the first or second half of the
        // sub-block in both halves of the lane.
        let (first, second) = (lane_pair(0), lane_pair(1));
        let mut acc = [_mm256_setzero_ps(); N];
        let p = st.qs.as_ptr();
        for g in 0..supers {
            let base = g * per;
            ahead_header::<N>(p, base, Q6K_HEADER);
            // SAFETY: qs holds supers * 1680 bytes (checked above) and base + 16 <= that.
            let dv = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.add(base).cast()) });
            let mut ints = [_mm256_setzero_si256(); N];
            // Per token, the activations' sums of each sub-block's two halves as one 32-bit
            // pair for the `madd` with the scales (`fits_k`: kh holds 32 per super-block),
            // and the offsets' integers over the super-block (times 32 at its end).
            let kh: [[i32; SUBS]; N] = std::array::from_fn(|t| {
                let k = &ys[t].kh[2 * SUBS * g..2 * SUBS * (g + 1)];
                std::array::from_fn(|sub| {
                    i32::from(k[2 * sub].cast_unsigned()) | (i32::from(k[2 * sub + 1]) << 16)
                })
            });
            let mut offs = [_mm256_setzero_si256(); N];
            #[expect(
                clippy::needless_range_loop,
                reason = "sub also places the sub-block's bytes and activations"
            )]
            for sub in 0..SUBS {
                // SAFETY: base + 16 + 16 sub + 16 <= base + 144 <= qs.len().
                let pairs = _mm256_cvtepi8_epi16(unsafe {
                    _mm_loadu_si128(p.add(base + 16 + 16 * sub).cast())
                });
                let scales = [
                    _mm256_shuffle_epi8(pairs, first),
                    _mm256_shuffle_epi8(pairs, second),
                ];
                let from = base + 144 + Q6K_SUB_BYTES * sub;
                for (h, scale) in scales.into_iter().enumerate() {
                    // SAFETY: from + 192 <= base + 1680 <= qs.len() (checked above).
                    let hv = unsafe { load256(p, from + STRIPE_BLOCK_BYTES + 32 * h) };
                    // The top bits of groups 2h (bits 0..4 of each byte) and 2h + 1 (4..8),
                    // each pair moved to bits 4..6 under the low and high nibbles.
                    let tops = [
                        (_mm256_slli_epi16(hv, 4), _mm256_slli_epi16(hv, 2)),
                        (hv, _mm256_srli_epi16(hv, 2)),
                    ];
                    for (jj, (tl, th)) in tops.into_iter().enumerate() {
                        let j = 2 * h + jj;
                        ahead::<N>(p, from + 48 * j);
                        // SAFETY: as above, from + 32j + 32 <= from + 128.
                        let v = unsafe { load256(p, from + 32 * j) };
                        let lo =
                            _mm256_or_si256(_mm256_and_si256(v, low), _mm256_and_si256(tl, top));
                        let hi = _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16(v, 4), low),
                            _mm256_and_si256(th, top),
                        );
                        for t in 0..N {
                            // SAFETY: every token's kq holds 256 * supers values (`fits_k`),
                            // and 256g + 32 sub + 8j + 8 <= 256 (g + 1).
                            let e = unsafe {
                                eight_sums(
                                    lo,
                                    hi,
                                    ys[t].kq.as_ptr().add(SUPER * g + BLOCK * sub + 8 * j),
                                )
                            };
                            ints[t] = _mm256_add_epi32(ints[t], _mm256_madd_epi16(e, scale));
                        }
                    }
                }
                for t in 0..N {
                    let off = _mm256_madd_epi16(pairs, _mm256_set1_epi32(kh[t][sub]));
                    offs[t] = _mm256_add_epi32(offs[t], off);
                }
            }
            for t in 0..N {
                ints[t] = _mm256_sub_epi32(ints[t], _mm256_slli_epi32(offs[t], 5));
                let kd = _mm256_set1_ps(ys[t].kd[g]);
                acc[t] =
                    _mm256_fmadd_ps(_mm256_mul_ps(dv, kd), _mm256_cvtepi32_ps(ints[t]), acc[t]);
            }
        }
        rows_of(acc)
    }

    /// The `shuffle_epi8` control that puts 16-bit half `h` (0 or 1) of each 32-bit lane in
    /// both its halves.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lane_pair(h: usize) -> __m256i {
        let ctl = |lane: usize| {
            let at = (4 * lane + 2 * h) as u8;
            i32::from_le_bytes([at, at + 1, at, at + 1])
        };
        _mm256_setr_epi32(
            ctl(0),
            ctl(1),
            ctl(2),
            ctl(3),
            ctl(0),
            ctl(1),
            ctl(2),
            ctl(3),
        )
    }
}
