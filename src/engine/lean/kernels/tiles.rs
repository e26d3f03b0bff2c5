//! A prompt's products with `Q4_*` and `Q5_*` matrices in tiles of eight rows, AVX2.
//!
//! The row kernels (`avx2::blocks_avx2`) sum each block's 32 products of one row and one
//! token in the lanes of a vector, so that every block costs a `madd`, a conversion and a
//! multiply-add per row and token beside its `maddubs`: a prompt's products were bound by
//! those. Here the lanes are eight rows instead: each task's rows are unpacked once, eight at
//! a time, into a [`Tile`] whose vector `k` of a block holds weights `4k..4k + 4` of each of
//! the eight rows; the four activations of a token that go with them are broadcast, one
//! `maddubs` multiplies them with all eight rows, and the eight groups of a block are added
//! as 16-bit integers (4-bit weights times 8-bit activations: at most 8 · 2 · 15 · 127 =
//! 30 480, within `i16`; 5-bit weights four groups at a time, 4 · 2 · 31 · 127 = 31 496)
//! before a single `madd`, conversion and multiply-add for the eight rows. The unpacking (a
//! nibble split and an 8 × 8 transposition of 32-bit lanes per pair of blocks) is paid once
//! per task and shared by all of the prompt's tokens.
//!
//! # Safety
//! The `unsafe` here is unaligned loads and stores within slices whose lengths the functions
//! check first (and say so next to each); they run only where `Level::best` detected AVX2,
//! FMA and F16C.

#![allow(
    unsafe_code,
    reason = "SIMD kernels; each block says why it is in bounds and supported"
)]

use std::arch::x86_64::*;

use super::avx2::{fifth_bytes, load256, transpose8};
use super::rows::{Lens, fits, fits_k};
use crate::engine::lean::blocks::{BLOCK, f16_at, fifth_bits, k4_scales_mins};
use crate::engine::lean::pack::{Q4K_BYTES, STRIPE_BLOCK_BYTES};
use crate::engine::lean::quant::Y;

/// Rows per tile: the lanes of a vector of f32.
pub(super) const TILE_ROWS: usize = 8;

/// Tokens multiplied at a time with a tile (each holds two vectors: its 16-bit sums and its
/// f32 results).
pub(super) const TILE_TOKENS: usize = 4;

/// Bytes of a tile's block: eight groups of four weights of eight rows.
const BLOCK_BYTES: usize = TILE_ROWS * BLOCK;

/// Eight rows unpacked for [`tile_dots`]: per block, eight vectors (group `k` holds weights
/// `4k..4k + 4` of row `i` at bytes `4i..4i + 4`, as unsigned integers), and the rows' scales
/// and offsets (`Q4_1`'s and `Q5_1`'s minimum, `Q4_0`'s -8 and `Q5_0`'s -16 times the
/// scale) as f32, `[block][row]`.
#[derive(Debug, Default)]
pub(super) struct Tile {
    nb: usize,
    /// 5-bit weights (`Q5_*`).
    five: bool,
    w: Vec<u8>,
    d: Vec<f32>,
    m: Vec<f32>,
}

impl Tile {
    /// Unpacks eight `Q4_*` or `Q5_*` rows (`Q5_*` when they have fifth bits `h`, `Q4_1`
    /// and `Q5_1` when they have minimums `m`) of `nb` blocks each. `false` (and the tile
    /// left unusable) if the rows are not eight of the same kind and width.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) fn fill(&mut self, rows: &[Lens<'_>]) -> bool {
        let Some(first) = rows.first() else {
            return false;
        };
        let nb = first.nb;
        self.nb = 0;
        let five = first.h.is_some();
        let whole = |l: &Lens<'_>| {
            l.nb == nb
                && l.h.is_some() == five
                && l.h.is_none_or(|h| h.len() >= 4 * nb)
                && l.m.is_some() == first.m.is_some()
                && l.qs.len() >= nb * BLOCK / 2
                && l.d.len() >= nb
                && l.m.is_none_or(|m| m.len() >= nb)
        };
        if rows.len() != TILE_ROWS || !nb.is_multiple_of(2) || !rows.iter().all(whole) {
            return false;
        }
        self.w.resize(nb * BLOCK_BYTES, 0);
        self.d.resize(nb * TILE_ROWS, 0.0);
        self.m.resize(nb * TILE_ROWS, 0.0);
        let low = _mm256_set1_epi8(0x0F);
        for pair in 0..nb / 2 {
            let mut lo = [_mm256_setzero_si256(); TILE_ROWS];
            let mut hi = [_mm256_setzero_si256(); TILE_ROWS];
            for (i, l) in rows.iter().enumerate() {
                // SAFETY: qs holds 16 * nb bytes (checked above) and 32 * pair + 32 <= 16 * nb.
                let v = unsafe { load256(l.qs.as_ptr(), 32 * pair) };
                lo[i] = _mm256_and_si256(v, low);
                hi[i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                if let Some(h) = l.h {
                    lo[i] = _mm256_or_si256(lo[i], fifth_bytes(fifth_bits(h, 2 * pair)));
                    hi[i] = _mm256_or_si256(hi[i], fifth_bytes(fifth_bits(h, 2 * pair + 1)));
                }
            }
            for (blk, rows_k) in [(2 * pair, transpose8(lo)), (2 * pair + 1, transpose8(hi))] {
                for (k, v) in rows_k.iter().enumerate() {
                    let at = blk * BLOCK_BYTES + 32 * k;
                    // SAFETY: w holds nb * 256 bytes and at + 32 <= 256 * (blk + 1).
                    unsafe { _mm256_storeu_si256(self.w.as_mut_ptr().add(at).cast(), *v) };
                }
            }
        }
        for (i, l) in rows.iter().enumerate() {
            for b in 0..nb {
                let d = l.d[b].to_f32();
                self.d[b * TILE_ROWS + i] = d;
                let offset = if five { -16.0 } else { -8.0 };
                self.m[b * TILE_ROWS + i] = l.m.map_or(offset * d, |m| m[b].to_f32());
            }
        }
        self.nb = nb;
        self.five = five;
        true
    }
}

/// Adds to `wide` each token's products with block `blk` of a tile's weights `w` (its eight
/// groups of four weights of eight rows), per row (32-bit lane): the 16-bit sums of
/// `per_madd` groups at a time, multiplied by `mul` in a `madd` (ones, or the rows' integer
/// scales in both halves of their lanes). `qs`: each token's 8-bit activations, 32 a block.
/// Nothing is added if `w` or an activation slice does not hold the block.
#[inline]
#[target_feature(enable = "avx2")]
fn block_sums<const N: usize>(
    w: &[u8],
    blk: usize,
    qs: [&[i8]; N],
    (per_madd, mul): (usize, __m256i),
    wide: &mut [__m256i; N],
) {
    if w.len() < (blk + 1) * BLOCK_BYTES || qs.iter().any(|q| q.len() < (blk + 1) * BLOCK) {
        return;
    }
    let mut ints = [_mm256_setzero_si256(); N];
    for k in 0..BLOCK / 4 {
        // SAFETY: w holds (blk + 1) * 256 bytes (checked above).
        let wk = unsafe { load256(w.as_ptr(), blk * BLOCK_BYTES + 32 * k) };
        for t in 0..N {
            // Activations 4k..4k + 4 of the block, in every 32-bit lane (a broadcast load).
            // SAFETY: every token's qs holds (blk + 1) * 32 values (checked above).
            let y = unsafe {
                _mm256_set1_epi32(
                    qs[t]
                        .as_ptr()
                        .add(BLOCK * blk + 4 * k)
                        .cast::<i32>()
                        .read_unaligned(),
                )
            };
            ints[t] = _mm256_add_epi16(ints[t], _mm256_maddubs_epi16(wk, y));
        }
        if (k + 1) % per_madd == 0 {
            for t in 0..N {
                wide[t] = _mm256_add_epi32(wide[t], _mm256_madd_epi16(ints[t], mul));
                ints[t] = _mm256_setzero_si256();
            }
        }
    }
}

/// The products of the tile's eight rows with `N` tokens' activations: `[token][row]`. Zeros
/// if the tokens' activations do not have the tile's width.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn tile_dots<const N: usize>(tile: &Tile, ys: &[Y<'_>; N]) -> [[f32; TILE_ROWS]; N] {
    let mut res = [[0f32; TILE_ROWS]; N];
    let nb = tile.nb;
    if !fits(nb, ys)
        || tile.w.len() < nb * BLOCK_BYTES
        || tile.d.len() < nb * TILE_ROWS
        || tile.m.len() < nb * TILE_ROWS
    {
        return res;
    }
    let ones = _mm256_set1_epi16(1);
    // Groups of four weights added as 16-bit integers before a `madd` to 32 bits.
    let per_madd = if tile.five { 4 } else { 8 };
    let mut acc = [_mm256_setzero_ps(); N];
    let qs = ys.map(|y| y.qs);
    for b in 0..nb {
        let mut wide = [_mm256_setzero_si256(); N];
        block_sums(&tile.w, b, qs, (per_madd, ones), &mut wide);
        // SAFETY: d and m hold nb * 8 f32 (checked above); 8 * b + 8 <= that.
        let (dv, mv) = unsafe {
            (
                _mm256_loadu_ps(tile.d.as_ptr().add(TILE_ROWS * b)),
                _mm256_loadu_ps(tile.m.as_ptr().add(TILE_ROWS * b)),
            )
        };
        for t in 0..N {
            let sums = _mm256_cvtepi32_ps(wide[t]);
            let scale = _mm256_mul_ps(dv, _mm256_set1_ps(ys[t].d[b]));
            acc[t] = _mm256_fmadd_ps(scale, sums, acc[t]);
            acc[t] = _mm256_fmadd_ps(mv, _mm256_set1_ps(ys[t].s[b]), acc[t]);
        }
    }
    for t in 0..N {
        // SAFETY: res[t] holds 8 f32, 32 bytes; the store is unaligned.
        unsafe { _mm256_storeu_ps(res[t].as_mut_ptr(), acc[t]) };
    }
    res
}

/// Eight `Q4_K` or `Q5_K` rows unpacked for [`k_tile_dots`]: per sub-block of 32, the eight
/// groups of four weights of the eight rows as in [`Tile`]; each sub-block's integer scale
/// of each row in both 16-bit halves of the row's lane (`[sub-block][row]`); each pair of
/// sub-blocks' minimums of each row, one per 16-bit half (`[super-block][pair][row]`); and the
/// super-blocks' scales `d` and `dmin` of the rows, f32 (`[super-block][row]`).
#[derive(Debug, Default)]
pub(super) struct KTile {
    /// Sub-blocks of 32 per row.
    nb: usize,
    five: bool,
    w: Vec<u8>,
    sc: Vec<u32>,
    mins: Vec<u32>,
    d: Vec<f32>,
    dmin: Vec<f32>,
}

/// Sub-blocks of a super-block.
const SUBS: usize = 8;

impl KTile {
    /// Unpacks eight `Q4_K` rows, or `Q5_K` ones with `five`, of `nb` sub-blocks (whole
    /// super-blocks of 144 or 176 bytes). `false` (and the tile left unusable) if the rows
    /// are not eight of that width.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) fn fill(&mut self, five: bool, rows: &[Lens<'_>]) -> bool {
        let Some(first) = rows.first() else {
            return false;
        };
        let nb = first.nb;
        let supers = nb / SUBS;
        let (bb, q_at) = if five { (176, 48) } else { (144, 16) };
        self.nb = 0;
        if rows.len() != TILE_ROWS
            || !nb.is_multiple_of(SUBS)
            || !rows.iter().all(|l| l.nb == nb && l.qs.len() >= supers * bb)
        {
            return false;
        }
        self.size_for(nb);
        let low = _mm256_set1_epi8(0x0F);
        let one = _mm256_set1_epi8(1);
        for g in 0..supers {
            for (i, l) in rows.iter().enumerate() {
                let sb = &l.qs[g * bb..(g + 1) * bb];
                self.put_scales(g, i, (f16_at(sb, 0), f16_at(sb, 2)), k4_scales_mins(sb));
            }
            for j in 0..4 {
                let mut lo = [_mm256_setzero_si256(); TILE_ROWS];
                let mut hi = [_mm256_setzero_si256(); TILE_ROWS];
                for (i, l) in rows.iter().enumerate() {
                    let sb = &l.qs[g * bb..(g + 1) * bb];
                    // SAFETY: the super-block holds bb bytes, q_at + 32 * j + 32 <= bb.
                    let v = unsafe { load256(sb.as_ptr(), q_at + 32 * j) };
                    lo[i] = _mm256_and_si256(v, low);
                    hi[i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    if five {
                        // SAFETY: a Q5_K super-block's fifth bits are its bytes 16..48.
                        let qh = unsafe { load256(sb.as_ptr(), 16) };
                        let bit = |b: i32| {
                            let q = _mm256_srl_epi16(qh, _mm_cvtsi32_si128(b));
                            _mm256_slli_epi16(_mm256_and_si256(q, one), 4)
                        };
                        lo[i] = _mm256_or_si256(lo[i], bit(2 * j as i32));
                        hi[i] = _mm256_or_si256(hi[i], bit(2 * j as i32 + 1));
                    }
                }
                let subs = [
                    (g * SUBS + 2 * j, transpose8(lo)),
                    (g * SUBS + 2 * j + 1, transpose8(hi)),
                ];
                for (sub, rows_k) in subs {
                    for (k, v) in rows_k.iter().enumerate() {
                        let at = sub * BLOCK_BYTES + 32 * k;
                        // SAFETY: w holds nb * 256 bytes and at + 32 <= 256 * (sub + 1).
                        unsafe { _mm256_storeu_si256(self.w.as_mut_ptr().add(at).cast(), *v) };
                    }
                }
            }
        }
        self.nb = nb;
        self.five = five;
        true
    }
}

impl KTile {
    /// Row `i`'s scales of super-block `g`: `d` and `dmin` (`dd`), and its sub-blocks' scales
    /// and minimums as `k4_scales_mins` gives them (a byte each).
    fn put_scales(&mut self, g: usize, i: usize, dd: (f32, f32), (scales, mins): (u64, u64)) {
        let at = g * TILE_ROWS + i;
        (self.d[at], self.dmin[at]) = dd;
        let (s, m) = (scales.to_le_bytes(), mins.to_le_bytes());
        for (j, sj) in s.iter().enumerate() {
            self.sc[(g * SUBS + j) * TILE_ROWS + i] = u32::from(*sj) * 0x1_0001;
        }
        for p in 0..4 {
            self.mins[(g * 4 + p) * TILE_ROWS + i] =
                u32::from(m[2 * p]) | (u32::from(m[2 * p + 1]) << 16);
        }
    }

    /// Sizes the buffers for rows of `nb` sub-blocks.
    fn size_for(&mut self, nb: usize) {
        let supers = nb / SUBS;
        self.w.resize(nb * BLOCK_BYTES, 0);
        self.sc.resize(nb * TILE_ROWS, 0);
        self.mins.resize(supers * 4 * TILE_ROWS, 0);
        self.d.resize(supers * TILE_ROWS, 0.0);
        self.dmin.resize(supers * TILE_ROWS, 0.0);
    }

    /// Unpacks a striped `Q4_K` matrix's stripe `st` (its eight rows' super-blocks, see
    /// `pack::stripe_q4k_row`) of `nb` sub-blocks per row: the weights need no
    /// transposition, only their nibbles split. `false` (and the tile left unusable) if `st`
    /// is not whole super-blocks of that width.
    #[target_feature(enable = "avx2,f16c")]
    pub(super) fn fill_k4_stripe(&mut self, st: &[u8], nb: usize) -> bool {
        let supers = nb / SUBS;
        let per = TILE_ROWS * Q4K_BYTES;
        self.nb = 0;
        if !nb.is_multiple_of(SUBS) || st.len() < supers * per {
            return false;
        }
        self.size_for(nb);
        let low = _mm256_set1_epi8(0x0F);
        for g in 0..supers {
            let sts = &st[g * per..(g + 1) * per];
            for i in 0..TILE_ROWS {
                // Row i's 12 scale bytes (its three words), where `k4_scales_mins` reads them.
                let mut sb = [0u8; 16];
                for w in 0..3 {
                    let from = 32 * (w + 1) + 4 * i;
                    sb[4 + 4 * w..8 + 4 * w].copy_from_slice(&sts[from..from + 4]);
                }
                let dd = (f16_at(sts, 2 * i), f16_at(sts, 16 + 2 * i));
                self.put_scales(g, i, dd, k4_scales_mins(&sb));
            }
            for sub in 0..SUBS {
                for j in 0..4 {
                    // SAFETY: sts holds 1152 bytes; 128 + 128 * sub + 32 * j + 32 <= that.
                    let v =
                        unsafe { load256(sts.as_ptr(), 128 + STRIPE_BLOCK_BYTES * sub + 32 * j) };
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    let at = (g * SUBS + sub) * BLOCK_BYTES + 64 * j;
                    // SAFETY: w holds nb * 256 bytes and at + 64 <= 256 * (g * 8 + sub + 1).
                    unsafe {
                        _mm256_storeu_si256(self.w.as_mut_ptr().add(at).cast(), lo);
                        _mm256_storeu_si256(self.w.as_mut_ptr().add(at + 32).cast(), hi);
                    }
                }
            }
        }
        self.nb = nb;
        self.five = false;
        true
    }
}

/// The products of the K-quant tile's eight rows with `N` tokens' activations in their
/// `Q8_K` form: `[token][row]`. Per sub-block, the 16-bit sums of its groups (four at a
/// time for 5-bit weights) times the rows' integer scales by `madd`, added as 32-bit
/// integers over the super-block, then one float multiply-add per super-block; the minimums
/// times the activations' sums per 32 likewise, two sub-blocks per `madd`. Zeros if the
/// tokens' activations do not have the tile's width.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn k_tile_dots<const N: usize>(tile: &KTile, ys: &[Y<'_>; N]) -> [[f32; TILE_ROWS]; N] {
    let mut res = [[0f32; TILE_ROWS]; N];
    let nb = tile.nb;
    let supers = nb / SUBS;
    if !fits_k(nb, ys)
        || tile.w.len() < nb * BLOCK_BYTES
        || tile.sc.len() < nb * TILE_ROWS
        || tile.mins.len() < supers * 4 * TILE_ROWS
        || tile.d.len() < supers * TILE_ROWS
        || tile.dmin.len() < supers * TILE_ROWS
    {
        return res;
    }
    let per_madd = if tile.five { 4 } else { 8 };
    let kq = ys.map(|y| y.kq);
    let mut acc = [_mm256_setzero_ps(); N];
    for g in 0..supers {
        let mut wide = [_mm256_setzero_si256(); N];
        for sub in g * SUBS..(g + 1) * SUBS {
            // SAFETY: sc holds nb * 8 u32 (checked above); 8 * sub + 8 <= that.
            let sc = unsafe { _mm256_loadu_si256(tile.sc.as_ptr().add(TILE_ROWS * sub).cast()) };
            block_sums(&tile.w, sub, kq, (per_madd, sc), &mut wide);
        }
        // SAFETY: d and dmin hold supers * 8 f32, mins supers * 32 u32 (checked above).
        let (dv, mv) = unsafe {
            (
                _mm256_loadu_ps(tile.d.as_ptr().add(TILE_ROWS * g)),
                _mm256_loadu_ps(tile.dmin.as_ptr().add(TILE_ROWS * g)),
            )
        };
        for t in 0..N {
            let kd = _mm256_set1_ps(ys[t].kd[g]);
            let mut msum = _mm256_setzero_si256();
            for p in 0..4 {
                // The activations' sums of sub-blocks 2p and 2p + 1 (each at most
                // 32 * 128 in magnitude) as the two 16-bit halves of every lane.
                let (a, b) = (ys[t].ks[g * SUBS + 2 * p], ys[t].ks[g * SUBS + 2 * p + 1]);
                let pair = (a as u16 as u32 | ((b as u16 as u32) << 16)) as i32;
                // SAFETY: mins holds supers * 32 u32 (checked above); (4g + p) * 8 + 8 <= that.
                let m = unsafe {
                    _mm256_loadu_si256(tile.mins.as_ptr().add((g * 4 + p) * TILE_ROWS).cast())
                };
                msum = _mm256_add_epi32(msum, _mm256_madd_epi16(m, _mm256_set1_epi32(pair)));
            }
            acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(dv, kd), _mm256_cvtepi32_ps(wide[t]), acc[t]);
            acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(mv, kd), _mm256_cvtepi32_ps(msum), acc[t]);
        }
    }
    for t in 0..N {
        // SAFETY: res[t] holds 8 f32, 32 bytes; the store is unaligned.
        unsafe { _mm256_storeu_ps(res[t].as_mut_ptr(), acc[t]) };
    }
    res
}
