//! The hot kernels of the lean forward pass: weights repacked once at load time
//! ([`Packed`]), activations quantised once per matrix product to 8-bit blocks ([`QAct`]),
//! and block dot products of one weight row with up to four tokens at a time.
//!
//! GGUF block layouts read at load time (little-endian, 32 weights per block):
//! - `Q4_0`, 18 bytes: `d: f16`, 16 bytes of nibbles; weight = d * (nibble - 8).
//! - `Q4_1`, 20 bytes: `d: f16`, `m: f16`, 16 bytes of nibbles; weight = d * nibble + m.
//! - `Q8_0`, 34 bytes: `d: f16`, 32 `i8`; weight = d * q.
//!
//! In a GGUF block, byte j holds weight j in its low half and weight j + 16 in its high half.
//! [`Packed`] stores the same bits in a layout made for the kernels (no byte more): the scales
//! (and `Q4_1` minimums) of a matrix in their own `f16` arrays, so that 16 of them convert to
//! f32 in one instruction, and the nibbles of two consecutive blocks interleaved: byte j of a
//! pair holds weight j of the first block in its low half and weight j of the second in its
//! high half. One 32-byte load, a mask and a shift then give the 64 weights of the pair in
//! order, ready to multiply with the activations as they are stored.
//!
//! Three instruction-set levels, chosen once at run time ([`Level::best`]): AVX-512 with VNNI
//! (one `vpdpbusd` per pair of blocks and token, the scales of 16 blocks converted at once),
//! AVX2 (`maddubs`/`madd` per block, the x86-64-v3 baseline), and a portable loop. Integer sums
//! are exact at every level, so the levels agree up to the order of the float additions
//! (tested).
//!
//! # Safety
//! The `unsafe` here is SIMD: calls of `#[target_feature]` functions, made only at a level
//! [`Level::best`] detected on this CPU, unaligned (and masked) loads from slices whose lengths
//! the constructor `Rows::new` checks before any kernel runs, and cache prefetch hints.

#![allow(
    unsafe_code,
    reason = "SIMD kernels; each block says why it is in bounds and supported"
)]

use std::ops::Range;
use std::sync::{Arc, OnceLock};

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::pack::{Layout, Store, pack_in_place};

/// Weights per block.
pub const BLOCK: usize = 32;

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
    /// Bytes per block of [`BLOCK`] weights in a GGUF file (per 32 weights for F32: 128).
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4 * BLOCK,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q8_0 => 34,
        }
    }

    /// Weights a row must be a multiple of: quantised rows are processed in pairs of blocks.
    pub fn row_multiple(self) -> usize {
        match self {
            Self::F32 => BLOCK,
            _ => 2 * BLOCK,
        }
    }
}

/// Instruction-set level of the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Plain Rust, any CPU.
    Portable,
    /// AVX2, FMA and F16C (x86-64-v3).
    Avx2,
    /// AVX-512 F/BW/VL with VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later).
    Avx512,
}

impl Level {
    /// The best level this CPU runs, detected once.
    pub fn best() -> Self {
        static BEST: OnceLock<Level> = OnceLock::new();
        *BEST.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                let avx2 = has!("avx2") && has!("fma") && has!("f16c");
                if avx2
                    && has!("avx512f")
                    && has!("avx512bw")
                    && has!("avx512vl")
                    && has!("avx512vnni")
                {
                    return Level::Avx512;
                }
                if avx2 {
                    return Level::Avx2;
                }
            }
            Level::Portable
        })
    }

    /// The level's name, as `rempart bench` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    /// Every level this CPU runs, lowest first (tests and benchmarks compare them).
    pub fn available() -> Vec<Self> {
        [Self::Portable, Self::Avx2, Self::Avx512]
            .into_iter()
            .filter(|l| *l <= Self::best())
            .collect()
    }
}

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
                Ok(q) => unsafe { x86::quantize_block(xs, q) },
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
/// SIMD one (`x86::quantize_block`), which gives the same bytes.
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

/// A weight matrix repacked for the kernels (see the module documentation), in its
/// [`Store`] (the decrypted arena, shared by all the model's matrices).
#[derive(Debug)]
pub struct Packed {
    store: Arc<Store>,
    at: Layout,
}

/// The `T`s in `range` of `bytes` (empty if out of range or misaligned: packing checked both).
fn view<'a, T: bytemuck::Pod>(bytes: &'a [u8], range: &Range<usize>) -> &'a [T] {
    bytes
        .get(range.clone())
        .and_then(|b| bytemuck::try_cast_slice(b).ok())
        .unwrap_or_default()
}

impl Packed {
    /// The matrix packed at `at` in `store` (by [`pack_in_place`]).
    pub fn new(store: Arc<Store>, at: Layout) -> Self {
        Self { store, at }
    }

    /// Repacks `rows` x `cols` weights of `kind` from their GGUF bytes, in a store of their own.
    pub fn from_ggml(kind: Kind, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, String> {
        let mut store = Store::heap(bytes);
        let at = pack_in_place(kind, rows, cols, store.bytes_mut(), 0..bytes.len())?;
        Ok(Self::new(Arc::new(store), at))
    }

    /// The store this matrix lives in (shared by all the model's matrices).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Block scales, `[row][block]`.
    fn d(&self) -> &[f16] {
        view(self.store.bytes(), &self.at.d)
    }

    /// `Q4_1` block minimums, `[row][block]` (empty for other kinds).
    fn m(&self) -> &[f16] {
        view(self.store.bytes(), &self.at.m)
    }

    /// Quantised weights (see [`Layout::qs`]).
    fn qs(&self) -> &[u8] {
        view(self.store.bytes(), &self.at.qs)
    }

    /// F32 weights.
    fn f(&self) -> &[f32] {
        view(self.store.bytes(), &self.at.f)
    }

    /// Block type.
    pub fn kind(&self) -> Kind {
        self.at.kind
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.at.rows
    }

    /// Weights per row.
    pub fn cols(&self) -> usize {
        self.at.cols
    }

    /// Bytes held (the same as the GGUF's).
    pub fn bytes(&self) -> usize {
        let a = &self.at;
        a.d.len() + a.m.len() + a.qs.len() + a.f.len()
    }

    /// Row `r`'s f32 weights (empty for quantised kinds).
    fn f_row(&self, r: usize) -> &[f32] {
        let c = self.cols();
        self.f().get(r * c..(r + 1) * c).unwrap_or_default()
    }

    /// Row `r`'s scales, minimums (`Q4_1`) and quantised weights.
    fn q_row(&self, r: usize) -> (&[f16], &[f16], &[u8]) {
        let nb = self.cols() / BLOCK;
        let qb = match self.kind() {
            Kind::Q8_0 => BLOCK,
            _ => BLOCK / 2,
        };
        (
            self.d().get(r * nb..(r + 1) * nb).unwrap_or_default(),
            self.m().get(r * nb..(r + 1) * nb).unwrap_or_default(),
            self.qs()
                .get(r * nb * qb..(r + 1) * nb * qb)
                .unwrap_or_default(),
        )
    }

    /// Dequantises row `r` into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let (d, m, qs) = self.q_row(r);
        match self.kind() {
            Kind::F32 => {
                for (o, v) in out.iter_mut().zip(self.f_row(r)) {
                    *o = *v;
                }
            }
            Kind::Q4_0 | Kind::Q4_1 => {
                for (pair, (o, q)) in out
                    .chunks_exact_mut(2 * BLOCK)
                    .zip(qs.chunks_exact(BLOCK))
                    .enumerate()
                {
                    let (oa, ob) = o.split_at_mut(BLOCK);
                    for (half, os) in [(0, oa), (1, ob)] {
                        let blk = 2 * pair + half;
                        let dv = d.get(blk).map_or(0.0, |v| v.to_f32());
                        let mv = if self.kind() == Kind::Q4_1 {
                            m.get(blk).map_or(0.0, |v| v.to_f32())
                        } else {
                            -8.0 * dv
                        };
                        for (ov, b) in os.iter_mut().zip(q) {
                            let n = if half == 0 { b & 0x0F } else { b >> 4 };
                            *ov = dv * f32::from(n) + mv;
                        }
                    }
                }
            }
            Kind::Q8_0 => {
                for ((o, q), dv) in out
                    .chunks_exact_mut(BLOCK)
                    .zip(qs.chunks_exact(BLOCK))
                    .zip(d)
                {
                    let dv = dv.to_f32();
                    for (ov, b) in o.iter_mut().zip(q) {
                        *ov = dv * f32::from(*b as i8);
                    }
                }
            }
        }
    }

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
        if self.kind() == Kind::F32 {
            for (i, r) in rows.enumerate() {
                let f = self.f_row(r);
                let mut v = [0f32; N];
                for (o, y) in v.iter_mut().zip(ys) {
                    if y.f.len() == f.len() {
                        *o = dot_f32(f, y.f);
                    }
                }
                out.put(i, v);
            }
            return;
        }
        let Some(rs) = Rows::new(self, rows, ys) else {
            out.out.fill(0.0);
            return;
        };
        let q8 = self.kind() == Kind::Q8_0;
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `best()` detected AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C on this CPU;
            // `rs` checked the lengths the kernel reads.
            Level::Avx512 => unsafe { x86::rows_512(q8, rs, ys, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `best()` detected AVX2, FMA and F16C; lengths checked in `rs`.
            Level::Avx2 => unsafe { x86::rows_avx2(q8, rs, ys, out) },
            _ => each_row(rs, out, |l| {
                if q8 {
                    q8_portable(l, ys)
                } else {
                    q4_portable(l, ys)
                }
            }),
        }
    }

    /// Dot products of row `r` with `N` tokens' activations (see [`Self::matvec`]).
    pub fn dots<const N: usize>(&self, level: Level, r: usize, ys: &[Y<'_>; N]) -> [f32; N] {
        let mut out = [0f32; N];
        self.matvec(level, r..r + 1, ys, &mut out, (N, 0));
        out
    }
}

/// Rows ahead whose weights are prefetched: the weights stream from memory once per token,
/// and the hardware prefetcher alone left the kernels waiting on their loads (`perf
/// annotate`: most samples on the first use of each loaded block; with it, one-thread
/// generation went from about 69 to 80 tokens/s here).
const PREFETCH_ROWS: usize = 4;

/// Runs `kernel` on every row of `rs`, prefetching the rows ahead, into `out`. Inlined into
/// each level's caller, so that the kernel is compiled with that level's features.
#[inline(always)]
fn each_row<const N: usize>(rs: Rows<'_>, mut out: Out<'_>, kernel: impl Fn(Lens<'_>) -> [f32; N]) {
    for i in 0..rs.rows {
        #[cfg(target_arch = "x86_64")]
        if let Some(next) = rs.ahead(i + PREFETCH_ROWS) {
            prefetch(next);
        }
        if let Some(l) = rs.row(i) {
            out.put(i, kernel(l));
        }
    }
}

/// Asks for a row's weights and scales in the cache.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch(l: Lens<'_>) {
    use std::arch::x86_64::{_MM_HINT_NTA, _mm_prefetch};
    let scales = [
        l.d.as_ptr().cast::<u8>(),
        l.m.unwrap_or(l.d).as_ptr().cast(),
    ];
    for p in l.qs.chunks(64).map(<[u8]>::as_ptr).chain(scales) {
        // SAFETY: SSE is part of every x86-64 CPU; a prefetch is a hint that never faults
        // and changes no memory.
        unsafe { _mm_prefetch::<_MM_HINT_NTA>(p.cast()) };
    }
}

/// Where [`Packed::matvec`] writes: row `i`'s `N` values at `out[i * stride + at..]`.
struct Out<'a> {
    out: &'a mut [f32],
    stride: usize,
    at: usize,
}

impl Out<'_> {
    #[inline]
    fn put<const N: usize>(&mut self, i: usize, v: [f32; N]) {
        let from = i * self.stride + self.at;
        if let Some(o) = self.out.get_mut(from..from + N) {
            o.copy_from_slice(&v);
        }
    }
}

/// Consecutive rows of a quantised matrix whose lengths were checked against the
/// activations: `nb` blocks per row (an even number), `d` and (for `Q4_1`) `m` with
/// `nb` scales per row, `qs` with `nb * per_block` bytes per row, and every token's `qs`
/// (`32 * nb`), `d` and `s` (`nb`). The slices also hold up to [`PREFETCH_ROWS`] rows past
/// the range, when the matrix has them, to be prefetched (a task's first rows then come in
/// while the rows before them, the previous task's, are computed).
#[derive(Clone, Copy)]
struct Rows<'a> {
    rows: usize,
    nb: usize,
    per_block: usize,
    d: &'a [f16],
    m: Option<&'a [f16]>,
    qs: &'a [u8],
}

impl<'a> Rows<'a> {
    fn new<const N: usize>(p: &'a Packed, rows: Range<usize>, ys: &[Y<'_>; N]) -> Option<Self> {
        let nb = p.cols() / BLOCK;
        let per_block = if p.kind() == Kind::Q8_0 {
            BLOCK
        } else {
            BLOCK / 2
        };
        let span = rows.start..(rows.end + PREFETCH_ROWS).min(p.rows()).max(rows.end);
        let scales = span.start * nb..span.end * nb;
        if !nb.is_multiple_of(2) || !fits(nb, ys) {
            return None;
        }
        Some(Self {
            rows: rows.len(),
            nb,
            per_block,
            d: p.d().get(scales.clone())?,
            m: if p.kind() == Kind::Q4_1 {
                Some(p.m().get(scales)?)
            } else {
                None
            },
            qs: p
                .qs()
                .get(span.start * nb * per_block..span.end * nb * per_block)?,
        })
    }

    /// Row `i` of the range, with the same guarantees for one row.
    #[inline]
    fn row(&self, i: usize) -> Option<Lens<'a>> {
        if i >= self.rows {
            return None;
        }
        self.ahead(i)
    }

    /// Row `i`, which may be one of the rows past the range (to prefetch).
    #[inline]
    fn ahead(&self, i: usize) -> Option<Lens<'a>> {
        let nb = self.nb;
        Some(Lens {
            nb,
            d: self.d.get(i * nb..(i + 1) * nb)?,
            m: match self.m {
                Some(m) => Some(m.get(i * nb..(i + 1) * nb)?),
                None => None,
            },
            qs: self
                .qs
                .get(i * nb * self.per_block..(i + 1) * nb * self.per_block)?,
        })
    }
}

/// Whether every token's activations have `nb` blocks (what the kernels read of them).
fn fits<const N: usize>(nb: usize, ys: &[Y<'_>; N]) -> bool {
    ys.iter()
        .all(|y| y.qs.len() == nb * BLOCK && y.d.len() == nb && y.s.len() == nb)
}

/// One weight row's slices, from [`Rows::row`]: `nb` blocks (even), `d` and `m` with `nb`
/// scales, `qs` with `nb` blocks of bytes; the tokens' slices were checked by [`Rows::new`].
/// The SIMD kernels read only within these lengths.
#[derive(Clone, Copy)]
struct Lens<'a> {
    nb: usize,
    d: &'a [f16],
    /// `Q4_1` minimums; `None` for `Q4_0` (minimum `-8 d`) and `Q8_0`.
    m: Option<&'a [f16]>,
    qs: &'a [u8],
}

/// Dot product with eight partial sums (vectorised by the compiler).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (ac, bc) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for ((s, x), y) in acc.iter_mut().zip(ac).zip(bc) {
            *s += x * y;
        }
    }
    let tail: f32 = a
        .chunks_exact(8)
        .remainder()
        .iter()
        .zip(b.chunks_exact(8).remainder())
        .map(|(x, y)| x * y)
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// [`dot_f32`] of `a` with `b` stored as f16 (converted exactly, 32 at a time): the same
/// products, summed in the same order, so the same result as `dot_f32` on `b` in f32. Over
/// the shorter length.
pub fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    let n = a.len().min(b.len());
    let whole = n / 8 * 8;
    let (a, a_tail) = a.split_at(whole);
    let (b, b_tail) = b.split_at(whole);
    let mut acc = [0f32; 8];
    let mut buf = [0f32; 32];
    for (ac, bc) in a.chunks(32).zip(b.chunks(32)) {
        let bf = buf.get_mut(..bc.len()).unwrap_or_default();
        bc.convert_to_f32_slice(bf);
        for (a8, b8) in ac.chunks_exact(8).zip(bf.chunks_exact(8)) {
            for ((s, x), y) in acc.iter_mut().zip(a8).zip(b8) {
                *s += x * y;
            }
        }
    }
    let tail: f32 = a_tail
        .iter()
        .take(n - whole)
        .zip(b_tail)
        .map(|(x, y)| x * y.to_f32())
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// `o += w * b` for `b` stored as f16 (converted exactly), over the shorter length.
pub fn axpy_f16(o: &mut [f32], w: f32, b: &[f16]) {
    let mut buf = [0f32; 32];
    for (oc, bc) in o.chunks_mut(32).zip(b.chunks(32)) {
        let bf = buf.get_mut(..bc.len()).unwrap_or_default();
        bc.convert_to_f32_slice(bf);
        for (ov, v) in oc.iter_mut().zip(bf.iter()) {
            *ov += w * v;
        }
    }
}

/// Attention scores of one query head: `out[p] = dot_f16(q, key p) * scale` for the first
/// `n` keys of `keys` (`[position][q.len()]`), bit for bit as [`dot_f16`] computes them, with
/// the code of `level` (lowered to what the CPU runs). Fewer keys than `n` give fewer scores.
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
        unsafe { x86::key_scores(q, keys, scale, out) };
        return;
    }
    let _ = level;
    out.extend(keys.chunks_exact(hd).take(n).map(|k| dot_f16(q, k) * scale));
}

/// `o = sum over p of w[p] * value p` for the values `vals` (`[position][o.len()]`, f16), in
/// the order of the positions, bit for bit as [`axpy_f16`] from zeros, with the code of
/// `level`. Positions past the shorter of `w` and `vals` are left out.
pub fn weighted_values(level: Level, w: &[f32], vals: &[f16], o: &mut [f32]) {
    o.fill(0.0);
    let hd = o.len();
    if hd == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if level.min(Level::best()) >= Level::Avx2 && hd.is_multiple_of(32) {
        // SAFETY: `best()` detected AVX2 and F16C; the kernel checks its lengths itself.
        unsafe { x86::weighted_values(w, vals, o) };
        return;
    }
    let _ = level;
    for (wp, v) in w.iter().zip(vals.chunks_exact(hd)) {
        axpy_f16(o, *wp, v);
    }
}

/// The `Q4_*` kernel in plain Rust.
fn q4_portable<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    let mut out = [0f32; N];
    for (o, y) in out.iter_mut().zip(ys) {
        for (pair, q) in l.qs.chunks_exact(BLOCK).enumerate() {
            for half in 0..2 {
                let blk = 2 * pair + half;
                let yq = y.qs.get(blk * BLOCK..(blk + 1) * BLOCK).unwrap_or_default();
                let isum: i32 = q
                    .iter()
                    .zip(yq)
                    .map(|(b, v)| {
                        let n = if half == 0 { b & 0x0F } else { b >> 4 };
                        i32::from(n) * i32::from(*v)
                    })
                    .sum();
                let dv = l.d.get(blk).map_or(0.0, |v| v.to_f32());
                let mv = match l.m {
                    Some(m) => m.get(blk).map_or(0.0, |v| v.to_f32()),
                    None => -8.0 * dv,
                };
                let (yd, ysum) = (
                    y.d.get(blk).copied().unwrap_or(0.0),
                    y.s.get(blk).copied().unwrap_or(0.0),
                );
                *o += dv * yd * isum as f32 + mv * ysum;
            }
        }
    }
    out
}

/// The `Q8_0` kernel in plain Rust.
fn q8_portable<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    let mut out = [0f32; N];
    for (o, y) in out.iter_mut().zip(ys) {
        for (((q, yq), dv), yd) in
            l.qs.chunks_exact(BLOCK)
                .zip(y.qs.chunks_exact(BLOCK))
                .zip(l.d)
                .zip(y.d)
        {
            let isum: i32 = q
                .iter()
                .zip(yq)
                .map(|(a, b)| i32::from(*a as i8) * i32::from(*b))
                .sum();
            *o += dv.to_f32() * yd * isum as f32;
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::{BLOCK, Lens, Out, Rows, Y, each_row, fits};

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

    /// [`super::key_scores`] (`q.len()` a multiple of 8; `out.len()` scores): per key, eight
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

    /// [`super::weighted_values`] (`o.len()` a multiple of 32): 32 outputs at a time held in
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
    unsafe fn load256<T>(p: *const T, at: usize) -> __m256i {
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
                acc[t][0] =
                    _mm256_fmadd_ps(_mm256_set1_ps(da * yda), mul_sum_us8(xa, ya), acc[t][0]);
                acc[t][1] =
                    _mm256_fmadd_ps(_mm256_set1_ps(db * ydb), mul_sum_us8(xb, yb), acc[t][1]);
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
                    acc[t] =
                        _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), pair_scales(sc[t], p), acc[t]);
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

    const KINDS: [(candle_core::quantized::GgmlDType, Kind); 4] = {
        use candle_core::quantized::GgmlDType;
        [
            (GgmlDType::Q4_0, Kind::Q4_0),
            (GgmlDType::Q4_1, Kind::Q4_1),
            (GgmlDType::Q8_0, Kind::Q8_0),
            (GgmlDType::F32, Kind::F32),
        ]
    };

    /// Repacked rows dequantise exactly to candle's weights, and every level's dot product
    /// (one token and four at once) is within the 8-bit rounding of the activations of the
    /// exact product of those weights with x.
    #[test]
    fn packed_dots_match_candle_blocks_at_every_level() {
        use candle_core::Device;
        let mut seed = 7;
        // 18 blocks per row, as the default model's width 576: a 16-block chunk and a pair.
        let (rows, cols) = (6, 576);
        for (dtype, kind) in KINDS {
            let q = candle_quantized(dtype, rows, cols, &mut seed);
            let bytes = q.data().unwrap().into_owned();
            let wd = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let p = Packed::from_ggml(kind, rows, cols, &bytes).unwrap();
            assert_eq!(p.bytes(), bytes.len(), "{kind:?}: repacking adds no bytes");
            let x = QAct::new(rand_f32(4 * cols, &mut seed), cols);
            let ys = [x.token(0), x.token(1), x.token(2), x.token(3)];
            for (r, wr) in wd.iter().enumerate() {
                let mut deq = vec![0f32; cols];
                p.dequantize_row(r, &mut deq);
                assert_eq!(&deq, wr, "{kind:?} row {r} dequantised");
                let bounds: Vec<(f32, f32)> = ys
                    .iter()
                    .map(|y| {
                        let exact: f32 = wr.iter().zip(y.f).map(|(a, b)| a * b).sum();
                        // Each activation is off by at most d/2 (plus the f16 rounding of d).
                        let bound: f32 = wr
                            .iter()
                            .enumerate()
                            .map(|(i, a)| a.abs() * y.d[i / BLOCK] * 0.51)
                            .sum::<f32>()
                            + 1e-4;
                        (exact, bound)
                    })
                    .collect();
                for level in Level::available() {
                    let four = p.dots(level, r, &ys);
                    for (t, ((exact, bound), got)) in bounds.iter().zip(four).enumerate() {
                        assert!(
                            (got - exact).abs() <= *bound,
                            "{kind:?} {level:?} row {r} token {t}: {got} vs {exact} (bound {bound})"
                        );
                        let [one] = p.dots(level, r, &[ys[t]]);
                        assert!(
                            (one - got).abs() <= 1e-5 * (1.0 + got.abs()),
                            "{kind:?} {level:?}: one token {one} vs four {got}"
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
        for (dtype, kind) in KINDS {
            let bytes = candle_quantized(dtype, 3, cols, &mut seed)
                .data()
                .unwrap()
                .into_owned();
            let p = Packed::from_ggml(kind, 3, cols, &bytes).unwrap();
            for r in 0..3 {
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
