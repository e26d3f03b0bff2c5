//! The hot kernels of the lean forward pass: dot products of weight rows repacked at load
//! time ([`Packed`], see [`super::pack`]) with up to four tokens' activations quantised to
//! 8-bit blocks ([`Y`], see [`super::quant`]) at a time ([`Packed::matvec`]), and a generation
//! step's attention sums over the f16 KV cache ([`key_scores`], [`weighted_values`]). This
//! module chooses the code for a [`Level`]; the code itself is in `portable`, `avx2` and
//! `avx512` (and `stripes` for striped matrices, whose rows are interleaved eight at a time),
//! and `rows` holds what they share: the checked slices of a matrix's rows and the
//! row loop, which prefetches the rows ahead for the AVX-512 and portable kernels (not for
//! AVX2's, which it slowed: `rows::AVX2_PREFETCH_ROWS`; the stripes' kernels prefetch their
//! own bytes a short way ahead, which sped them: `stripes::x86::AHEAD`).
//!
//! Three instruction-set levels, chosen once at run time ([`Level::best`]): AVX-512 with VNNI
//! (one `vpdpbusd` per pair of blocks and token, the scales of 16 blocks converted at once),
//! AVX2 (`maddubs`/`madd` per block, the x86-64-v3 baseline), and a portable loop. Integer sums
//! are exact at every level, so the levels agree up to the order of the float additions
//! (tested).
//!
//! # Safety
//! The `unsafe` here is calls of `#[target_feature]` kernels, made only at a level
//! [`Level::best`] detected on this CPU, after the constructor `Rows::new` checked the lengths
//! the kernels read (see `avx2` and `avx512` for their loads).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;
mod rows;
mod stripes;
#[cfg(target_arch = "x86_64")]
mod tiles;

use std::ops::Range;

use half::f16;

pub use self::portable::{axpy_f16, dot_bf16, dot_f16, dot_f32};
use self::portable::{k_portable, q4_portable, q8_portable};
use self::rows::{Out, PREFETCH_ROWS, Rows, each_row};
use self::stripes::{Stripes, covering, stripe_portable};
use super::pack::STRIPE;
// The kernels' inputs, also reachable here (their paths before the modules were split).
pub use super::blocks::{BLOCK, Kind};
pub use super::level::Level;
pub use super::pack::Packed;
pub use super::quant::{Chunk, QAct, Y};

/// The fewest tokens a prompt's product unpacks its rows into tiles for: the unpacking of a
/// pair of blocks costs about what the tiles save on two or three tokens.
pub const TILE_MIN_TOKENS: usize = 8;

#[allow(
    unsafe_code,
    reason = "calls of SIMD kernels at a level detected on this CPU"
)]
impl Packed {
    /// Dot products of rows `rows` with `N` tokens' activations, at `level` (lowered to what
    /// the CPU runs): row `rows.start + i`, token `j` goes to `out[i * stride + at + j]`. A
    /// token whose activations do not have this matrix's width, rows past the end or an `out`
    /// too short leave zeros.
    pub fn matvec<const N: usize>(
        &self,
        level: Level,
        rows: Range<usize>,
        ys: &[Y<'_>; N],
        out: &mut [f32],
        (stride, at): (usize, usize),
    ) {
        let level = level.min(Level::best());
        let n = rows.len();
        let Some(out) = out.get_mut(..n.saturating_mul(stride)) else {
            return;
        };
        if at + N > stride || rows.end > self.rows() {
            out.fill(0.0);
            return;
        }
        let mut out = Out { out, stride, at };
        if self.kind().is_float() {
            let cols = self.cols();
            for (i, r) in rows.enumerate() {
                let mut v = [0f32; N];
                for (o, y) in v.iter_mut().zip(ys) {
                    if y.f.len() != cols {
                        continue;
                    }
                    *o = match self.kind() {
                        Kind::F16 => dot_f16(y.f, self.h16_row(r)),
                        Kind::BF16 => dot_bf16(y.f, self.b16_row(r)),
                        _ => dot_f32(self.f_row(r), y.f),
                    };
                }
                out.put(i, v);
            }
            return;
        }
        if self.striped() {
            match Stripes::new(self) {
                Some(st) => striped_matvec(level, st, rows, ys, &mut out),
                None => out.out.fill(0.0),
            }
            return;
        }
        let Some(rs) = Rows::new(self, rows, ys) else {
            out.out.fill(0.0);
            return;
        };
        let kind = self.kind();
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `best()` detected AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C on this CPU;
            // `rs` checked the lengths the kernel reads.
            Level::Avx512 => unsafe { avx512::rows_512(kind, rs, ys, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `best()` detected AVX2, FMA and F16C; lengths checked in `rs`.
            Level::Avx2 => unsafe { avx2::rows_avx2(kind, rs, ys, out) },
            _ => match kind {
                Kind::Q8_0 => each_row(rs, out, PREFETCH_ROWS, |l| q8_portable(l, ys)),
                k if k.is_k() => each_row(rs, out, PREFETCH_ROWS, |l| k_portable(k, l, ys)),
                _ => each_row(rs, out, PREFETCH_ROWS, |l| q4_portable(l, ys)),
            },
        }
    }

    /// A prompt's products of rows `rows` with every token of `x`, into `out` (`[row][token]`,
    /// rows from `rows.start`), in tiles of eight rows (see `tiles`): done, and `true`, for
    /// `Q4_*`, `Q5_*`, `Q4_K` and `Q5_K` matrices at the AVX2 and AVX-512 levels (the tiles
    /// are AVX2 code; striped `Q4_K` ones at the AVX2 level only), whole tiles of rows and at
    /// least [`TILE_MIN_TOKENS`] tokens; `false`, and `out` to be written by
    /// [`Self::matvec`], otherwise.
    ///
    /// On an AVX-512 VNNI machine (Sapphire Rapids, 2 threads, `rempart bench -t 2 -p 128
    /// -n 0`, three alternating runs) the tiles beat the AVX-512 row kernels' prompts:
    /// SmolLM2 Q4_K_M (mostly `Q5_0`) 481-487 → 637-650 tokens/s, the Qwen2.5-0.5B shape
    /// 185-191 → 233-258, Gemma 3 270M 553-601 → 701-710 (and one run at 505); striped
    /// `Q4_K` there is as fast in the stripes' kernel (Qwen3-0.6B shape 188-201 tokens/s in
    /// tiles, 203-210 in stripes).
    pub fn prompt_tiles(
        &self,
        level: Level,
        rows: Range<usize>,
        x: &QAct,
        out: &mut [f32],
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use self::tiles::{KTile, TILE_ROWS, TILE_TOKENS, Tile, k_tile_dots, tile_dots};
            let t = x.tokens();
            let y0 = [x.token(0)];
            let kind = self.kind();
            // Striped `Q4_*` matrices need no tiles: their own kernel is the tiles' (see
            // `stripes`), and faster than a tile's unpacking and transposition for prompts
            // too. Striped `Q4_K` ones are unpacked stripe by stripe (no transposition): the
            // tiles' sums of a prompt's tokens spend less per weight than the stripes' kernel,
            // which also unpacks the nibbles and adds the minimums per sub-block and token
            // (on the AVX2 machine; not on the AVX-512 one, see above).
            let level = level.min(Level::best());
            let striped_k = self.striped() && kind == Kind::Q4K && level == Level::Avx2;
            if level < Level::Avx2
                || (self.striped() && !striped_k)
                || (striped_k && !rows.start.is_multiple_of(TILE_ROWS))
                || !matches!(
                    kind,
                    Kind::Q4_0 | Kind::Q4_1 | Kind::Q5_0 | Kind::Q5_1 | Kind::Q4K | Kind::Q5K
                )
                || t < TILE_MIN_TOKENS
                || !rows.len().is_multiple_of(TILE_ROWS)
                || out.len() < rows.len() * t
            {
                return false;
            }
            let (rs, stripes) = if striped_k {
                (None, Stripes::new(self))
            } else {
                (Rows::new(self, rows.clone(), &y0), None)
            };
            if rs.is_none() && stripes.is_none() {
                return false;
            }
            let (mut tile, mut k_tile) = (Tile::default(), KTile::default());
            for r0 in (0..rows.len()).step_by(TILE_ROWS) {
                let lens: Vec<_> = rs
                    .iter()
                    .flat_map(|rs| (r0..r0 + TILE_ROWS).filter_map(|i| rs.row(i)))
                    .collect();
                let filled = if let Some(st) = &stripes {
                    match st.stripe((rows.start + r0) / TILE_ROWS) {
                        // SAFETY: as below.
                        Some(one) => unsafe { k_tile.fill_k4_stripe(one.qs, one.nb) },
                        None => false,
                    }
                } else if kind.is_k() {
                    // SAFETY: the level is AVX2 or AVX-512 (which `best()` grants only with
                    // AVX2), detected on this CPU by `best()` with FMA and F16C; `fill` and
                    // the kernels below check the lengths they read.
                    unsafe { k_tile.fill(kind == Kind::Q5K, &lens) }
                } else {
                    // SAFETY: as above.
                    unsafe { tile.fill(&lens) }
                };
                if !filled {
                    return false;
                }
                let mut put = |tok: usize, res: &[[f32; TILE_ROWS]]| {
                    for (j, vals) in res.iter().enumerate() {
                        for (i, v) in vals.iter().enumerate() {
                            if let Some(o) = out.get_mut((r0 + i) * t + tok + j) {
                                *o = *v;
                            }
                        }
                    }
                };
                let mut tok = 0;
                while tok < t {
                    if tok + TILE_TOKENS <= t {
                        let ys: [Y<'_>; TILE_TOKENS] = std::array::from_fn(|j| x.token(tok + j));
                        // SAFETY: as above.
                        put(tok, &unsafe {
                            if kind.is_k() {
                                k_tile_dots(&k_tile, &ys)
                            } else {
                                tile_dots(&tile, &ys)
                            }
                        });
                        tok += TILE_TOKENS;
                    } else {
                        let ys = [x.token(tok)];
                        // SAFETY: as above.
                        put(tok, &unsafe {
                            if kind.is_k() {
                                k_tile_dots(&k_tile, &ys)
                            } else {
                                tile_dots(&tile, &ys)
                            }
                        });
                        tok += 1;
                    }
                }
            }
            true
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (level, rows, x, out);
            false
        }
    }

    /// Dot products of row `r` with `N` tokens' activations (see [`Self::matvec`]).
    pub fn dots<const N: usize>(&self, level: Level, r: usize, ys: &[Y<'_>; N]) -> [f32; N] {
        let mut out = [0f32; N];
        self.matvec(level, r..r + 1, ys, &mut out, (N, 0));
        out
    }
}

/// [`Packed::matvec`] of a striped matrix at `level` (at most what the CPU runs): each
/// stripe holding rows of `rows` at once, the rows of `rows` written.
#[allow(
    unsafe_code,
    reason = "calls of SIMD kernels at a level detected on this CPU"
)]
fn striped_matvec<const N: usize>(
    level: Level,
    st: Stripes<'_>,
    rows: Range<usize>,
    ys: &[Y<'_>; N],
    out: &mut Out<'_>,
) {
    for s in covering(&rows) {
        let Some(one) = st.stripe(s) else {
            continue;
        };
        let res = match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: at either level `best()` detected AVX2, FMA and F16C (AVX-512 runs the
            // AVX2 kernel: the stripes' products need no wider vectors).
            Level::Avx512 | Level::Avx2 => unsafe { stripe_avx2_by_fours(one, ys) },
            _ => stripe_portable(one, ys),
        };
        for (i, r) in (s * STRIPE..(s + 1) * STRIPE).enumerate() {
            if rows.contains(&r) {
                out.put::<N>(r - rows.start, std::array::from_fn(|t| res[t][i]));
            }
        }
    }
}

/// `stripes::stripe_avx2` of any number of tokens: four at a time (their vectors fill the
/// registers), then one at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn stripe_avx2_by_fours<const N: usize>(one: Stripes<'_>, ys: &[Y<'_>; N]) -> [[f32; STRIPE]; N] {
    use self::stripes::stripe_avx2;
    if N <= 4 {
        return stripe_avx2(one, ys);
    }
    let mut res = [[0f32; STRIPE]; N];
    let mut t = 0;
    while t < N {
        if let Some(four) = ys
            .get(t..t + 4)
            .and_then(|f| <&[Y<'_>; 4]>::try_from(f).ok())
        {
            res[t..t + 4].copy_from_slice(&stripe_avx2(one, four));
            t += 4;
        } else {
            let [r] = stripe_avx2(one, &[ys[t]]);
            res[t] = r;
            t += 1;
        }
    }
    res
}

/// Attention scores of one query head: `out[p] = dot_f16(q, key p) * scale` for the first
/// `n` keys of `keys` (`[position][q.len()]`), bit for bit as [`dot_f16`] computes them, with
/// the code of `level` (lowered to what the CPU runs). Fewer keys than `n` give fewer scores.
#[allow(
    unsafe_code,
    reason = "calls of SIMD kernels at a level detected on this CPU"
)]
pub fn key_scores(level: Level, q: &[f32], keys: &[f16], n: usize, scale: f32, out: &mut Vec<f32>) {
    out.clear();
    let hd = q.len();
    if hd == 0 {
        return;
    }
    let n = n.min(keys.len() / hd);
    #[cfg(target_arch = "x86_64")]
    if level.min(Level::best()) >= Level::Avx2 && hd.is_multiple_of(8) {
        out.resize(n, 0.0);
        // SAFETY: `best()` detected AVX2 and F16C; the kernel checks its lengths itself.
        unsafe { avx2::key_scores(q, keys, scale, out) };
        return;
    }
    let _ = level;
    out.extend(keys.chunks_exact(hd).take(n).map(|k| dot_f16(q, k) * scale));
}

/// `o = sum over p of w[p] * value p` for the values `vals` (`[position][o.len()]`, f16), in
/// the order of the positions, bit for bit as [`axpy_f16`] from zeros, with the code of
/// `level`. Positions past the shorter of `w` and `vals` are left out.
#[allow(
    unsafe_code,
    reason = "calls of SIMD kernels at a level detected on this CPU"
)]
pub fn weighted_values(level: Level, w: &[f32], vals: &[f16], o: &mut [f32]) {
    o.fill(0.0);
    let hd = o.len();
    if hd == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if level.min(Level::best()) >= Level::Avx2 && hd.is_multiple_of(32) {
        // SAFETY: `best()` detected AVX2 and F16C; the kernel checks its lengths itself.
        unsafe { avx2::weighted_values(w, vals, o) };
        return;
    }
    let _ = level;
    for (wp, v) in w.iter().zip(vals.chunks_exact(hd)) {
        axpy_f16(o, *wp, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::lean::blocks::SUPER;
    use crate::engine::lean::pack::Layout;
    use crate::engine::lean::quant::tests::rand_f32;

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

    /// Every kind with candle's GGUF type for it.
    fn kinds() -> impl Iterator<Item = (candle_core::quantized::GgmlDType, Kind)> {
        Kind::ALL.into_iter().map(|k| (k.ggml(), k))
    }

    /// Repacked rows dequantise exactly to candle's weights, and every level's dot product
    /// (one token and eight at once) is within the 8-bit rounding of the activations of the
    /// exact product of those weights with x.
    #[test]
    fn packed_dots_match_candle_blocks_at_every_level() {
        use candle_core::Device;
        let mut seed = 7;
        // Six rows, and sixteen: two stripes where the kind is striped.
        for ((dtype, kind), rows) in kinds().flat_map(|k| [(k, 6), (k, 16)]) {
            // 18 blocks per row, as the default model's width 576: a 16-block chunk and a
            // pair; three super-blocks for the K-quants.
            let cols = if kind.is_k() { 768 } else { 576 };
            let q = candle_quantized(dtype, rows, cols, &mut seed);
            let bytes = q.data().unwrap().into_owned();
            let wd = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let p = Packed::from_ggml(kind, rows, cols, &bytes).unwrap();
            assert_eq!(p.bytes(), bytes.len(), "{kind:?}: repacking adds no bytes");
            assert_eq!(
                p.striped(),
                rows == 16
                    && matches!(
                        kind,
                        Kind::Q4_0 | Kind::Q4_1 | Kind::Q8_0 | Kind::Q4K | Kind::Q6K
                    ),
                "{kind:?} {rows} rows"
            );
            let x = QAct::new(rand_f32(8 * cols, &mut seed), cols);
            let ys: [Y<'_>; 8] = std::array::from_fn(|t| x.token(t));
            for (r, wr) in wd.iter().enumerate() {
                let mut deq = vec![0f32; cols];
                p.dequantize_row(r, &mut deq);
                assert_eq!(&deq, wr, "{kind:?} row {r} dequantised");
                let bounds: Vec<(f32, f32)> = ys
                    .iter()
                    .map(|y| {
                        let exact: f32 = wr.iter().zip(y.f).map(|(a, b)| a * b).sum();
                        // Each activation is off by at most half a step (plus the f16
                        // rounding of a Q8_0 scale): the K-quants read the Q8_K form.
                        let step = |i: usize| {
                            if kind.is_k() {
                                y.kd[i / SUPER].abs()
                            } else {
                                y.d[i / BLOCK]
                            }
                        };
                        let bound: f32 = wr
                            .iter()
                            .enumerate()
                            .map(|(i, a)| a.abs() * step(i) * 0.51)
                            .sum::<f32>()
                            + 1e-4;
                        (exact, bound)
                    })
                    .collect();
                for level in Level::available() {
                    // Eight tokens at once (a prompt's groups), then each alone.
                    let eight = p.dots(level, r, &ys);
                    for (t, ((exact, bound), got)) in bounds.iter().zip(eight).enumerate() {
                        assert!(
                            (got - exact).abs() <= *bound,
                            "{kind:?} {level:?} row {r} token {t}: {got} vs {exact} (bound {bound})"
                        );
                        let [one] = p.dots(level, r, &[ys[t]]);
                        assert!(
                            (one - got).abs() <= 1e-5 * (1.0 + got.abs()),
                            "{kind:?} {level:?}: one token {one} vs eight {got}"
                        );
                    }
                }
            }
        }
    }

    /// The SIMD levels give the portable kernel's sums (integer parts exact; floats added in
    /// another order).
    #[test]
    fn simd_and_portable_kernels_agree() {
        let mut seed = 5;
        let cols = 1536;
        let x = QAct::new(rand_f32(cols, &mut seed), cols);
        // Three rows, and a stripe of eight where the kind is striped.
        for ((dtype, kind), rows) in kinds().flat_map(|k| [(k, 3), (k, 8)]) {
            let bytes = candle_quantized(dtype, rows, cols, &mut seed)
                .data()
                .unwrap()
                .into_owned();
            let p = Packed::from_ggml(kind, rows, cols, &bytes).unwrap();
            for r in 0..rows {
                let [portable] = p.dots(Level::Portable, r, &[x.token(0)]);
                for level in Level::available() {
                    let [fast] = p.dots(level, r, &[x.token(0)]);
                    assert!(
                        (fast - portable).abs() <= 1e-4 * (1.0 + portable.abs()),
                        "{kind:?} {level:?}: {fast} vs {portable}"
                    );
                }
            }
        }
    }

    /// A prompt's products in tiles of eight rows give the row kernels' sums (the integer
    /// parts exact, the floats added in another order) for every token, remainders of the
    /// four-token groups included, at the AVX2 and AVX-512 levels (striped `Q4_K` at the
    /// AVX2 level only); other kinds, the portable level and short prompts are left to the
    /// row kernels.
    #[test]
    fn prompt_tiles_give_the_row_kernels_sums() {
        let mut seed = 11;
        let rows = 24;
        for (dtype, kind) in kinds() {
            let cols = if kind.is_k() { 768 } else { 576 };
            let bytes = candle_quantized(dtype, rows, cols, &mut seed)
                .data()
                .unwrap()
                .into_owned();
            // Unstriped, and striped where the kind is: striped `Q4_*` matrices are multiplied
            // by their own kernels (checked below), striped `Q4_K` ones in tiles too.
            let p = Packed::from_ggml_as(kind, rows, cols, &bytes, false).unwrap();
            let striped = Packed::from_ggml(kind, rows, cols, &bytes).unwrap();
            for t in [TILE_MIN_TOKENS - 1, TILE_MIN_TOKENS, 11] {
                let x = QAct::new(rand_f32(t * cols, &mut seed), cols);
                for level in Level::available() {
                    for m in [&p, &striped] {
                        let mut out = vec![f32::NAN; 16 * t];
                        let done = m.prompt_tiles(level, 8..24, &x, &mut out);
                        let tiled = level >= Level::Avx2
                            && matches!(
                                kind,
                                Kind::Q4_0
                                    | Kind::Q4_1
                                    | Kind::Q5_0
                                    | Kind::Q5_1
                                    | Kind::Q4K
                                    | Kind::Q5K
                            )
                            && (!m.striped() || (kind == Kind::Q4K && level == Level::Avx2))
                            && t >= TILE_MIN_TOKENS;
                        let what = if m.striped() { "striped" } else { "unstriped" };
                        assert_eq!(done, tiled, "{kind:?} {what} {level:?} {t} tokens");
                        if !done {
                            continue;
                        }
                        for (i, r) in (8..24).enumerate() {
                            for tok in 0..t {
                                let [want] = p.dots(level, r, &[x.token(tok)]);
                                let got = out[i * t + tok];
                                assert!(
                                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                    "{kind:?} {what} row {r} token {tok}: {got} vs {want}"
                                );
                            }
                        }
                    }
                    // A striped matrix's tiles start at a stripe.
                    if striped.striped() {
                        let mut out = vec![0.0; 8 * t];
                        assert!(!striped.prompt_tiles(level, 4..12, &x, &mut out));
                    }
                }
            }
        }
        // Rows that are not whole tiles are left to the row kernels.
        let cols = 576;
        let bytes = candle_quantized(Kind::Q4_0.ggml(), 12, cols, &mut seed)
            .data()
            .unwrap()
            .into_owned();
        let p = Packed::from_ggml(Kind::Q4_0, 12, cols, &bytes).unwrap();
        let x = QAct::new(rand_f32(8 * cols, &mut seed), cols);
        assert!(!p.prompt_tiles(Level::best(), 0..12, &x, &mut vec![0.0; 12 * 8]));
    }

    /// A striped matrix gives its unstriped layout's weights and products: the portable
    /// kernels' bit for bit (the same sums in the same order), the SIMD ones' within the
    /// order of the float additions; for row ranges that cut stripes, and one, four and eight
    /// tokens at once. Its rows are read as whole stripes only.
    #[test]
    fn striped_matrices_give_the_unstriped_products() {
        let mut seed = 13;
        let rows = 24;
        for kind in [Kind::Q4_0, Kind::Q4_1, Kind::Q8_0, Kind::Q4K, Kind::Q6K] {
            let cols = if kind.is_k() { 768 } else { 576 };
            let bytes = candle_quantized(kind.ggml(), rows, cols, &mut seed)
                .data()
                .unwrap()
                .into_owned();
            let flat = Packed::from_ggml_as(kind, rows, cols, &bytes, false).unwrap();
            let striped = Packed::from_ggml(kind, rows, cols, &bytes).unwrap();
            assert!(striped.striped() && !flat.striped());
            assert_ne!(
                striped.qs(),
                flat.qs(),
                "{kind:?}: the layouts differ (the bytes moved)"
            );
            let (mut a, mut b) = (vec![0f32; cols], vec![0f32; cols]);
            for r in 0..rows {
                flat.dequantize_row(r, &mut a);
                striped.dequantize_row(r, &mut b);
                assert_eq!(a, b, "{kind:?} row {r} dequantised");
            }
            let x = QAct::new(rand_f32(8 * cols, &mut seed), cols);
            let ys: [Y<'_>; 8] = std::array::from_fn(|t| x.token(t));
            for level in Level::available() {
                for range in [0..rows, 3..13, 16..24, 5..6] {
                    let n = range.len();
                    let mut want = vec![f32::NAN; n * 8];
                    flat.matvec(level, range.clone(), &ys, &mut want, (8, 0));
                    for (group, at) in [(8, 0), (4, 4), (1, 3)] {
                        let mut got = vec![f32::NAN; n * 8];
                        match group {
                            8 => striped.matvec(level, range.clone(), &ys, &mut got, (8, 0)),
                            4 => {
                                let four = [ys[4], ys[5], ys[6], ys[7]];
                                striped.matvec(level, range.clone(), &four, &mut got, (8, at));
                            }
                            _ => striped.matvec(level, range.clone(), &[ys[3]], &mut got, (8, at)),
                        }
                        for i in 0..n {
                            for tok in at..at + group {
                                let (w, g) = (want[i * 8 + tok], got[i * 8 + tok]);
                                let ok = if level == Level::Portable {
                                    w.to_bits() == g.to_bits()
                                } else {
                                    (g - w).abs() <= 1e-4 * (1.0 + w.abs())
                                };
                                assert!(
                                    ok,
                                    "{kind:?} {level:?} rows {range:?} row {i} token {tok} \
                                     ({group} at once): {g} vs {w}"
                                );
                            }
                        }
                    }
                }
            }
            // Parts of a fused matrix are whole stripes.
            let l = Layout {
                kind,
                rows,
                cols,
                d: 0..0,
                m: 0..0,
                h: 0..0,
                qs: 0..0,
                f: 0..0,
                striped: true,
            };
            assert!(l.row_range(8..24).is_some());
            assert!(l.row_range(4..24).is_none() && l.row_range(0..12).is_none());
        }
    }

    #[test]
    fn packing_refuses_bad_shapes_and_sizes() {
        // A quantised row must be whole pairs of blocks; the bytes must match the shape.
        assert!(Packed::from_ggml(Kind::Q4_1, 2, 32, &[0; 40]).is_err());
        assert!(Packed::from_ggml(Kind::Q4_1, 2, 64, &[0; 79]).is_err());
        assert!(Packed::from_ggml(Kind::Q8_0, usize::MAX, 64, &[0; 68]).is_err());
        assert!(Packed::from_ggml(Kind::F32, 1, 32, &[0; 128]).is_ok());
        // Activations of another width give 0, not a read past the end.
        let p = Packed::from_ggml(Kind::Q4_1, 1, 64, &[0x11; 40]).unwrap();
        let x = QAct::new(vec![1.0; 32], 32);
        assert_eq!(p.dots(Level::best(), 0, &[x.token(0)]), [0.0]);
        assert_eq!(p.dots(Level::best(), 5, &[x.token(0)]), [0.0]);
    }

    #[test]
    fn attention_kernels_give_the_portable_sums_bit_for_bit() {
        let mut seed = 5;
        for hd in [24usize, 64, 128] {
            let q = rand_f32(hd, &mut seed);
            let n = 37;
            let kv: Vec<f16> = rand_f32(n * hd, &mut seed)
                .iter()
                .map(|v| f16::from_f32(v * 4.0))
                .collect();
            let w = rand_f32(n, &mut seed);
            // The reference: one `dot_f16` / `axpy_f16` per position.
            let want_s: Vec<f32> = kv
                .chunks_exact(hd)
                .map(|k| dot_f16(&q, k) * 0.125)
                .collect();
            let mut want_o = vec![0f32; hd];
            for (wp, v) in w.iter().zip(kv.chunks_exact(hd)) {
                axpy_f16(&mut want_o, *wp, v);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            for level in Level::available() {
                let mut s = Vec::new();
                key_scores(level, &q, &kv, n, 0.125, &mut s);
                assert_eq!(bits(&s), bits(&want_s), "{level:?} hd {hd}: scores");
                let mut o = vec![1f32; hd];
                weighted_values(level, &w, &kv, &mut o);
                assert_eq!(bits(&o), bits(&want_o), "{level:?} hd {hd}: values");
                // Fewer keys than asked for: as many scores as keys; fewer weights: the
                // positions past them are left out.
                key_scores(level, &q, &kv[..5 * hd + 3], n, 0.125, &mut s);
                assert_eq!(
                    bits(&s),
                    bits(&want_s[..5]),
                    "{level:?} hd {hd}: short keys"
                );
                let mut o5 = vec![0f32; hd];
                weighted_values(level, &w[..5], &kv, &mut o5);
                let mut want5 = vec![0f32; hd];
                for (wp, v) in w[..5].iter().zip(kv.chunks_exact(hd)) {
                    axpy_f16(&mut want5, *wp, v);
                }
                assert_eq!(bits(&o5), bits(&want5), "{level:?} hd {hd}: five weights");
            }
        }
    }
}
