//! Where the lean path's weights live ([`Store`]), their repacking in place
//! ([`pack_in_place`]), and a repacked matrix ([`Packed`]): where its parts are ([`Layout`])
//! and its rows in f32 ([`Packed::dequantize_row`]).
//!
//! The decrypted arena is not copied: each weight matrix is rewritten, within its own bytes of
//! the arena, from GGUF block order (see [`super::blocks`]) into the kernels' layout, which
//! takes exactly as many bytes. The model then keeps the arena, so the weights are held once,
//! in memory that is locked, excluded from core dumps and wiped when the model is dropped.
//! Only one matrix at a time is copied aside while it is rewritten (the largest, the token
//! embedding of SmolLM2-135M, is 17.7 MB), and that copy is wiped at once.
//!
//! The kernels' layout stores the same bits (no byte more): the scales (and `Q4_1` minimums)
//! of a matrix in their own `f16` arrays, so that 16 of them convert to f32 in one
//! instruction, and the nibbles of two consecutive blocks interleaved: byte j of a pair holds
//! weight j of the first block in its low half and weight j of the second in its high half.
//! One 32-byte load, a mask and a shift then give the 64 weights of the pair in order, ready
//! to multiply with the activations as they are stored.
//!
//! `Q4_0`, `Q4_1`, `Q8_0`, `Q4_K` and `Q6_K` matrices whose rows are whole stripes of eight
//! ([`STRIPE`]) are striped instead ([`Layout::striped`], [`stripe_nibble`]): each block's
//! scales, minimums and nibbles (`Q6_K`: and top bits, [`stripe_q6_high`]) of eight rows side
//! by side, so that one vector's lanes are eight rows (the kernels of `kernels::stripes`).
//! Their kernel computes a generation step's products with fewer operations per weight than
//! the row kernels (`cargo bench --bench lean_kernels -- 1024x2048_Avx2`: one token, Q4_0
//! 92 → 46 µs, Q4_K 81 → 62 µs).
use std::ops::Range;
use std::sync::Arc;

use half::f16;
use zeroize::Zeroizing;

use super::blocks::{BLOCK, Kind, SUPER, decode_k, fifth_bits};
use crate::secure::LockedBuf;

/// The bytes the packed weights live in.
pub enum Store {
    /// The decrypted arena, whose matrices were repacked in place.
    Arena(LockedBuf),
    /// A heap buffer (tests, benchmarks and callers that hold plain bytes), 8-byte aligned.
    Heap {
        /// The bytes, in words for their alignment.
        words: Vec<u64>,
        /// Bytes used.
        len: usize,
    },
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Self::Arena(_) => "arena",
            Self::Heap { .. } => "heap",
        };
        write!(f, "Store({what}, {} bytes)", self.bytes().len())
    }
}

impl Store {
    /// A heap copy of `bytes`.
    pub fn heap(bytes: &[u8]) -> Self {
        let mut s = Self::Heap {
            words: vec![0; bytes.len().div_ceil(8)],
            len: bytes.len(),
        };
        s.bytes_mut().copy_from_slice(bytes);
        s
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Arena(a) => a.as_slice(),
            Self::Heap { words, len } => bytemuck::cast_slice::<u64, u8>(words)
                .get(..*len)
                .unwrap_or_default(),
        }
    }

    /// The bytes, mutably.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Self::Arena(a) => a.as_mut_slice(),
            Self::Heap { words, len } => bytemuck::cast_slice_mut::<u64, u8>(words)
                .get_mut(..*len)
                .unwrap_or_default(),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // The arena wipes itself when dropped; a heap copy is wiped here, whatever the
        // allocator.
        if let Self::Heap { words, .. } = self {
            zeroize::Zeroize::zeroize(words.as_mut_slice());
        }
    }
}

/// Where a repacked matrix's parts are in its [`Store`] (byte ranges; unused parts empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Block type.
    pub kind: Kind,
    /// Number of rows.
    pub rows: usize,
    /// Weights per row.
    pub cols: usize,
    /// Block scales, `[row][block]` f16.
    pub d: Range<usize>,
    /// `Q4_1`, `Q5_1` block minimums, `[row][block]` f16.
    pub m: Range<usize>,
    /// `Q5_*` fifth bits, `[row][block]` little-endian `u32` (bit j for weight j).
    pub h: Range<usize>,
    /// Pair-interleaved nibbles (`Q4_*`, `Q5_*`: 16 bytes per block), `i8` (`Q8_0`, 32 per
    /// block), or the GGUF's super-blocks as they are (K-quants).
    pub qs: Range<usize>,
    /// F32 weights.
    pub f: Range<usize>,
    /// The rows in stripes of [`STRIPE`] (`Q4_0`, `Q4_1`, `Q8_0`, `Q4_K`, `Q6_K`; see
    /// [`stripe_nibble`]): for `Q4_*` and `Q8_0`, `d` and `m` are then `[stripe][block][row
    /// of the stripe]`, and `qs` holds [`STRIPE_BLOCK_BYTES`] per stripe and block
    /// ([`STRIPE_Q8_BYTES`] for `Q8_0`, [`stripe_q8_byte`]); for `Q4_K` and
    /// `Q6_K`, `qs` holds each stripe's super-blocks, eight rows' worth each (see
    /// `stripe_q4k_row`, `stripe_q6k_row`).
    pub striped: bool,
}

/// Rows per stripe of a striped matrix ([`Layout::striped`]): the lanes of a vector of f32,
/// so that a generation step's kernel sums eight rows' products in one vector (one `madd`,
/// conversion and multiply-add per block for the eight rows, instead of per row).
pub const STRIPE: usize = 8;

/// Bytes of a stripe's block: 32 nibbles of each of its rows.
pub const STRIPE_BLOCK_BYTES: usize = STRIPE * BLOCK / 2;

/// Bytes of a striped `Q8_0` matrix's block of eight rows: 32 weights of each.
pub const STRIPE_Q8_BYTES: usize = STRIPE * BLOCK;

/// Where weight `k` (0..32) of row `i` (0..[`STRIPE`]) of a striped `Q8_0` block is in its
/// [`STRIPE_Q8_BYTES`]: each 32 bytes `j` hold weights `4j..4j + 4` of row `i` in bytes
/// `4i..4i + 4`, so that one 32-byte load gives a vector whose 32-bit lane `i` holds four
/// consecutive weights of row `i`.
pub fn stripe_q8_byte(i: usize, k: usize) -> usize {
    32 * (k / 4) + 4 * i + k % 4
}

/// Where weight `k` (0..32) of row `i` (0..[`STRIPE`]) of a block is in the stripe's
/// [`STRIPE_BLOCK_BYTES`]: the byte, and the shift of its nibble (0 or 4). Each 32 bytes `j`
/// hold weights `8j..8j + 4` of row `i` in the low nibbles of bytes `4i..4i + 4` and weights
/// `8j + 4..8j + 8` in the high ones: one 32-byte load, a mask and a shift give two vectors
/// whose 32-bit lane `i` holds four consecutive weights of row `i`, to be multiplied with the
/// same four activations broadcast to every lane.
pub fn stripe_nibble(i: usize, k: usize) -> (usize, u32) {
    let (j, w) = (k / 8, k % 8);
    (32 * j + 4 * i + w % 4, if w < 4 { 0 } else { 4 })
}

impl Layout {
    /// Rows `rows` of this matrix, as a matrix of their own in the same bytes (the parts of
    /// a row are contiguous in each part: a fused matrix, as Phi 3's query-key-value one,
    /// is read as its parts). `None` if the range is empty, past the last row, or (striped)
    /// not whole stripes.
    pub fn row_range(&self, rows: Range<usize>) -> Option<Self> {
        if rows.start >= rows.end
            || rows.end > self.rows
            || (self.striped
                && !(rows.start.is_multiple_of(STRIPE) && rows.end.is_multiple_of(STRIPE)))
        {
            return None;
        }
        let part = |p: &Range<usize>| {
            let per = p.len() / self.rows;
            p.start + rows.start * per..p.start + rows.end * per
        };
        Some(Self {
            kind: self.kind,
            rows: rows.len(),
            cols: self.cols,
            d: part(&self.d),
            m: part(&self.m),
            h: part(&self.h),
            qs: part(&self.qs),
            f: part(&self.f),
            striped: self.striped,
        })
    }
}

/// Repacks the `rows` x `cols` weights of `kind`, held in GGUF block order at `at` in
/// `bytes`, into the kernels' layout in the same bytes: the scales of every block first
/// (native-endian f16), then for `Q4_1` the minimums, then the quantised weights, with the
/// nibbles of each pair of blocks interleaved (byte j = weight j of the first block | weight
/// j of the second << 4); F32 weights become native-endian in place. With `stripes`, `Q4_0`,
/// `Q4_1`, `Q8_0`, `Q4_K` and `Q6_K` matrices of whole stripes of rows are striped instead
/// ([`Layout::striped`]).
/// Refuses shapes the kernels cannot run and sizes or alignments that do not match, saying
/// which.
pub fn pack_in_place(
    kind: Kind,
    rows: usize,
    cols: usize,
    bytes: &mut [u8],
    (at, stripes): (Range<usize>, bool),
) -> Result<Layout, String> {
    if cols == 0 || !cols.is_multiple_of(kind.row_multiple()) {
        return Err(format!(
            "rows of {cols} weights (a multiple of {} is needed)",
            kind.row_multiple()
        ));
    }
    let bb = kind.block_bytes();
    let n = rows
        .checked_mul(cols / BLOCK)
        .ok_or_else(|| format!("{rows} x {cols} weights is too many"))?;
    let groups = n / (kind.group() / BLOCK);
    if groups.checked_mul(bb) != Some(at.len()) {
        return Err(format!(
            "{} bytes for {rows} x {cols} {kind:?} weights",
            at.len()
        ));
    }
    let region = bytes
        .get_mut(at.clone())
        .ok_or_else(|| "data past the end of the file".to_owned())?;
    let align = if kind == Kind::F32 { 4 } else { 2 };
    if !(region.as_ptr() as usize).is_multiple_of(align) {
        return Err(format!("data not aligned to {align} bytes"));
    }
    let s = at.start;
    let mut l = Layout {
        kind,
        rows,
        cols,
        d: s..s,
        m: s..s,
        h: s..s,
        qs: s..s,
        f: s..s,
        striped: false,
    };
    let half = |b: &[u8], i: usize| {
        let v = b.get(i..i + 2).unwrap_or(&[0, 0]);
        f16::from_le_bytes([v[0], v[1]]).to_ne_bytes()
    };
    match kind {
        Kind::F32 => {
            for c in region.chunks_exact_mut(4) {
                let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                c.copy_from_slice(&v.to_ne_bytes());
            }
            l.f = at;
        }
        Kind::Q4_0 | Kind::Q4_1 | Kind::Q8_0 if stripes && rows.is_multiple_of(STRIPE) => {
            let src = Zeroizing::new(region.to_vec());
            let has_m = kind == Kind::Q4_1;
            let (ds, rest) = region.split_at_mut(2 * n);
            let (ms, qs) = rest.split_at_mut(if has_m { 2 * n } else { 0 });
            let nb = cols / BLOCK;
            let q_at = if has_m { 4 } else { 2 };
            let per = if kind == Kind::Q8_0 {
                STRIPE_Q8_BYTES
            } else {
                STRIPE_BLOCK_BYTES
            };
            for (b, blk) in src.chunks_exact(bb).enumerate() {
                // Block `b` of the GGUF is block `c` of row `r`: row `i` of stripe `r / 8`.
                let (r, c) = (b / nb, b % nb);
                let (i, sb) = (r % STRIPE, r / STRIPE * nb + c);
                let di = 2 * (sb * STRIPE + i);
                ds[di..di + 2].copy_from_slice(&half(blk, 0));
                if has_m {
                    ms[di..di + 2].copy_from_slice(&half(blk, 2));
                }
                let dst = &mut qs[sb * per..(sb + 1) * per];
                if kind == Kind::Q8_0 {
                    // Bytes `4i..4i + 4` of each 32 (`stripe_q8_byte`): weights `4j..4j + 4`.
                    for (j, four) in blk.get(2..).unwrap_or_default().chunks_exact(4).enumerate() {
                        dst[32 * j + 4 * i..32 * j + 4 * i + 4].copy_from_slice(four);
                    }
                    continue;
                }
                let q = nibble_bytes(blk, q_at);
                // Bytes `4i..4i + 4` of each 32 (`stripe_nibble`), each written once: weights
                // 8j + w (w < 4) and 8j + 4 + w, in a GGUF block the low nibbles of bytes
                // 0..16 for weights 0..16 and the high ones for 16..32.
                for j in 0..4 {
                    for w in 0..4 {
                        let (a, b) = (8 * j + w, 8 * j + 4 + w);
                        dst[32 * j + 4 * i + w] = nibble(&q, a) | (nibble(&q, b) << 4);
                    }
                }
            }
            l.d = s..s + 2 * n;
            l.m = if has_m {
                l.d.end..l.d.end + 2 * n
            } else {
                l.d.end..l.d.end
            };
            l.qs = l.m.end..at.end;
            l.striped = true;
        }
        Kind::Q4_0 | Kind::Q4_1 | Kind::Q5_0 | Kind::Q5_1 => {
            let src = Zeroizing::new(region.to_vec());
            let has_m = matches!(kind, Kind::Q4_1 | Kind::Q5_1);
            let five = matches!(kind, Kind::Q5_0 | Kind::Q5_1);
            let (ds, rest) = region.split_at_mut(2 * n);
            let (ms, rest) = rest.split_at_mut(if has_m { 2 * n } else { 0 });
            let (hs, qs) = rest.split_at_mut(if five { 4 * n } else { 0 });
            let h_at = if has_m { 4 } else { 2 };
            let q_at = h_at + if five { 4 } else { 0 };
            let mut ms = ms.chunks_exact_mut(4);
            let mut hs = hs.chunks_exact_mut(8);
            for ((pair, d), q) in src
                .chunks_exact(2 * bb)
                .zip(ds.chunks_exact_mut(4))
                .zip(qs.chunks_exact_mut(2 * BLOCK / 2))
            {
                let (a, b) = pair.split_at(bb);
                d[..2].copy_from_slice(&half(a, 0));
                d[2..].copy_from_slice(&half(b, 0));
                if let Some(m) = ms.next() {
                    m[..2].copy_from_slice(&half(a, 2));
                    m[2..].copy_from_slice(&half(b, 2));
                }
                if let Some(h) = hs.next() {
                    h[..4].copy_from_slice(a.get(h_at..h_at + 4).unwrap_or(&[0; 4]));
                    h[4..].copy_from_slice(b.get(h_at..h_at + 4).unwrap_or(&[0; 4]));
                }
                let (qa, qb) = (nibble_bytes(a, q_at), nibble_bytes(b, q_at));
                for (j, o) in q.iter_mut().enumerate() {
                    *o = nibble(&qa, j) | (nibble(&qb, j) << 4);
                }
            }
            l.d = s..s + 2 * n;
            let mut end = l.d.end;
            if has_m {
                l.m = end..end + 2 * n;
                end = l.m.end;
            }
            if five {
                l.h = end..end + 4 * n;
                end = l.h.end;
            }
            l.qs = end..at.end;
        }
        Kind::Q4K | Kind::Q6K if stripes && rows.is_multiple_of(STRIPE) => {
            // A stripe's eight rows take the same bytes in both layouts: each is copied
            // aside (kilobytes, not the matrix) and rewritten in place.
            let supers = cols / SUPER;
            let mut rows8 = Zeroizing::new(vec![0u8; STRIPE * supers * bb]);
            for stripe in region.chunks_exact_mut(STRIPE * supers * bb) {
                rows8.copy_from_slice(stripe);
                for (b, sb) in rows8.chunks_exact(bb).enumerate() {
                    // Super-block `b` of the eight rows is super-block `c` of row `i`.
                    let (i, c) = (b / supers, b % supers);
                    let to = c * STRIPE * bb;
                    let dst = &mut stripe[to..to + STRIPE * bb];
                    if let Ok(gguf) = <&[u8; Q4K_BYTES]>::try_from(sb) {
                        stripe_q4k_row(gguf, i, dst);
                    } else if let Ok(gguf) = <&[u8; Q6K_BYTES]>::try_from(sb) {
                        stripe_q6k_row(gguf, i, dst);
                    }
                }
            }
            l.qs = at;
            l.striped = true;
        }
        Kind::Q4K | Kind::Q5K | Kind::Q6K => l.qs = at,
        Kind::F16 | Kind::BF16 => {
            for c in region.chunks_exact_mut(2) {
                let v = u16::from_le_bytes([c[0], c[1]]);
                c.copy_from_slice(&v.to_ne_bytes());
            }
            l.qs = at;
        }
        Kind::Q8_0 => {
            let src = Zeroizing::new(region.to_vec());
            let (ds, qs) = region.split_at_mut(2 * n);
            for ((blk, d), q) in src
                .chunks_exact(bb)
                .zip(ds.chunks_exact_mut(2))
                .zip(qs.chunks_exact_mut(BLOCK))
            {
                d.copy_from_slice(&half(blk, 0));
                q.copy_from_slice(blk.get(2..).unwrap_or(&[0; BLOCK]));
            }
            l.d = s..s + 2 * n;
            l.qs = s + 2 * n..at.end;
        }
    }
    Ok(l)
}

/// The first `N` bytes of `dst` as an array (`None` if it is shorter).
fn fixed_mut<const N: usize>(dst: &mut [u8]) -> Option<&mut [u8; N]> {
    dst.get_mut(..N)?.try_into().ok()
}

/// Bytes of a GGUF `Q4_K` super-block.
pub const Q4K_BYTES: usize = 144;

/// Writes a GGUF `Q4_K` super-block `sb` as row `i` of its stripe's super-block `dst`
/// ([`STRIPE`] times [`Q4K_BYTES`]): the eight rows' `d` (f16, bytes 0..16), `dmin` (16..32),
/// their 12 scale bytes as three 32-bit words each, the first words of the eight rows
/// (32..64), then the second (64..96) and third (96..128), so that one load gives a word of
/// all eight rows and the scales decode eight rows at a time; then each sub-block of 32
/// weights as a `Q4_0` stripe's block (128 bytes, [`stripe_nibble`]).
fn stripe_q4k_row(sb: &[u8; Q4K_BYTES], i: usize, dst: &mut [u8]) {
    // A fixed size and row, so that the indices below need no checks.
    let Some(dst) = fixed_mut::<{ STRIPE * Q4K_BYTES }>(dst) else {
        return;
    };
    let i = i % STRIPE;
    dst[2 * i..2 * i + 2].copy_from_slice(&sb[0..2]);
    dst[16 + 2 * i..18 + 2 * i].copy_from_slice(&sb[2..4]);
    for w in 0..3 {
        let at = 32 * (w + 1) + 4 * i;
        dst[at..at + 4].copy_from_slice(&sb[4 + 4 * w..8 + 4 * w]);
    }
    // Sub-block `sub`'s weights are the low nibbles (even `sub`) or the high ones (odd) of
    // the 32 bytes of group `sub / 2`.
    // Eight bytes at a time: the nibbles of bytes 0..4 of a word, and those of bytes 4..8
    // above them.
    for sub in 0..SUPER / BLOCK {
        let (from, shift) = (16 + 32 * (sub / 2), 4 * (sub % 2));
        let to = 128 + STRIPE_BLOCK_BYTES * sub + 4 * i;
        for j in 0..4 {
            let mut word = [0u8; 8];
            word.copy_from_slice(&sb[from + 8 * j..from + 8 * j + 8]);
            let v = u64::from_le_bytes(word) >> shift;
            let (lo, hi) = (v & 0x0F0F_0F0F, (v >> 32) & 0x0F0F_0F0F);
            dst[to + 32 * j..to + 32 * j + 4]
                .copy_from_slice(&((lo | (hi << 4)) as u32).to_le_bytes());
        }
    }
}

/// The GGUF `Q4_K` super-block of row `i` of a stripe's super-block `st` (the inverse of
/// `stripe_q4k_row`); zeros if `st` is short.
pub fn unstripe_q4k_row(st: &[u8], i: usize) -> [u8; Q4K_BYTES] {
    let mut sb = [0u8; Q4K_BYTES];
    if st.len() < STRIPE * Q4K_BYTES || i >= STRIPE {
        return sb;
    }
    sb[0..2].copy_from_slice(&st[2 * i..2 * i + 2]);
    sb[2..4].copy_from_slice(&st[16 + 2 * i..18 + 2 * i]);
    for w in 0..3 {
        let at = 32 * (w + 1) + 4 * i;
        sb[4 + 4 * w..8 + 4 * w].copy_from_slice(&st[at..at + 4]);
    }
    for k in 0..SUPER {
        let (sub, r) = (k / BLOCK, k % BLOCK);
        let (byte, shift) = stripe_nibble(i, r);
        let n = (st[128 + STRIPE_BLOCK_BYTES * sub + byte] >> shift) & 0x0F;
        let (g, r64) = (k / 64, k % 64);
        sb[16 + 32 * g + r64 % 32] |= if r64 < 32 { n } else { n << 4 };
    }
    sb
}

/// Bytes of a GGUF `Q6_K` super-block.
pub const Q6K_BYTES: usize = 210;

/// Bytes of a sub-block of 32 weights of a `Q6_K` stripe's eight rows: their low nibbles as
/// a `Q4_0` stripe's block ([`stripe_nibble`]), then their top two bits ([`stripe_q6_high`]).
pub const Q6K_SUB_BYTES: usize = STRIPE_BLOCK_BYTES + STRIPE * BLOCK / 4;

/// Where the top two bits of weight `k` (0..32) of row `i` of a `Q6_K` stripe's sub-block
/// are, from the start of the sub-block: the byte and the shift. The weights whose nibbles
/// are in 32-byte group `j` of the sub-block (`8j..8j + 8` of each row, [`stripe_nibble`])
/// have theirs in bytes `4i..4i + 4` of 32-byte group `j / 2` after the nibbles, at bits
/// `4 (j % 2)` (weights `8j..8j + 4`) and `4 (j % 2) + 2` (the next four): one 32-byte load
/// holds the top bits of two groups of nibbles, and a shift and a mask put each group's
/// under its nibbles.
pub fn stripe_q6_high(i: usize, k: usize) -> (usize, u32) {
    let (j, w) = (k / 8, k % 8);
    (
        STRIPE_BLOCK_BYTES + 32 * (j / 2) + 4 * i + w % 4,
        (4 * (j % 2) + 2 * (w / 4)) as u32,
    )
}

/// The 256 six-bit integers (0..64, before ggml's offset of 32) of a GGUF `Q6_K`
/// super-block, eight at a time in order (word `w` holds weights `8w..8w + 8`): weight
/// `128h + 32k + l` has the nibble `k / 2` of byte `64h + 32 (k % 2) + l` and the bits
/// `2k..2k + 2` of byte `128 + 32h + l` above it. Words rather than bytes: packing a model
/// reads every weight (the 1B shape's tied output alone is 262 million).
fn q6_integers(sb: &[u8; Q6K_BYTES]) -> [u64; SUPER / 8] {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&sb[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let mut q = [0u64; SUPER / 8];
    for h in 0..2 {
        for k in 0..4 {
            for l in 0..BLOCK / 8 {
                let lo =
                    (word(64 * h + 32 * (k % 2) + 8 * l) >> (4 * (k / 2))) & 0x0F0F_0F0F_0F0F_0F0F;
                let hi = (word(128 + 32 * h + 8 * l) >> (2 * k)) & 0x0303_0303_0303_0303;
                q[16 * h + 4 * k + l] = lo | (hi << 4);
            }
        }
    }
    q
}

/// Writes a GGUF `Q6_K` super-block `sb` as row `i` of its stripe's super-block `dst`
/// ([`STRIPE`] times [`Q6K_BYTES`]): the eight rows' `d` (f16, bytes 0..16); their sixteen
/// scales (i8) by sub-block of 32 weights, `16 * sub + 2i` and `+ 1` from byte 16 the two of
/// sub-block `sub` of row `i`, so that one load gives a sub-block's scales of all eight rows
/// as 16-bit pairs; then from byte 144 each sub-block's weights in [`Q6K_SUB_BYTES`] (see
/// [`stripe_q6_high`]). Row `i` owns bytes `4i..4i + 4` of every 32 there, each written once.
fn stripe_q6k_row(sb: &[u8; Q6K_BYTES], i: usize, dst: &mut [u8]) {
    let Some(dst) = fixed_mut::<{ STRIPE * Q6K_BYTES }>(dst) else {
        return;
    };
    let i = i % STRIPE;
    dst[2 * i..2 * i + 2].copy_from_slice(&sb[208..210]);
    for sub in 0..SUPER / BLOCK {
        let at = 16 + 16 * sub + 2 * i;
        dst[at..at + 2].copy_from_slice(&sb[192 + 2 * sub..194 + 2 * sub]);
    }
    // Per word of eight weights, the first four's and the last four's bytes.
    let halves = |w: u64| (w & 0xFFFF_FFFF, w >> 32);
    let (nib, top) = (0x0F0F_0F0F, 0x0303_0303);
    for (sub, q) in q6_integers(sb).chunks_exact(BLOCK / 8).enumerate() {
        let to = 144 + Q6K_SUB_BYTES * sub + 4 * i;
        let mut put = |at: usize, v: u64| {
            dst[to + at..to + at + 4].copy_from_slice(&(v as u32).to_le_bytes());
        };
        for (j, w) in q.iter().enumerate() {
            let (a, b) = halves(*w);
            put(32 * j, (a & nib) | ((b & nib) << 4));
        }
        for j in 0..2 {
            let ((ea, eb), (oa, ob)) = (halves(q[2 * j]), halves(q[2 * j + 1]));
            let bits = |v: u64, at: u32| ((v >> 4) & top) << at;
            put(
                STRIPE_BLOCK_BYTES + 32 * j,
                bits(ea, 0) | bits(eb, 2) | bits(oa, 4) | bits(ob, 6),
            );
        }
    }
}

/// The GGUF `Q6_K` super-block of row `i` of a stripe's super-block `st` (the inverse of
/// `stripe_q6k_row`); zeros if `st` is short.
pub fn unstripe_q6k_row(st: &[u8], i: usize) -> [u8; Q6K_BYTES] {
    let mut sb = [0u8; Q6K_BYTES];
    if st.len() < STRIPE * Q6K_BYTES || i >= STRIPE {
        return sb;
    }
    sb[208..210].copy_from_slice(&st[2 * i..2 * i + 2]);
    for sub in 0..SUPER / BLOCK {
        let at = 16 + 16 * sub + 2 * i;
        sb[192 + 2 * sub..194 + 2 * sub].copy_from_slice(&st[at..at + 2]);
    }
    for v in 0..SUPER {
        let (sub, k) = (v / BLOCK, v % BLOCK);
        let from = 144 + Q6K_SUB_BYTES * sub;
        let (byte, shift) = stripe_nibble(i, k);
        let lo = (st[from + byte] >> shift) & 0x0F;
        let (byte, shift) = stripe_q6_high(i, k);
        let hi = (st[from + byte] >> shift) & 3;
        let (h, l) = (v / 128, v % 128);
        let (k, l) = (l / 32, l % 32);
        sb[64 * h + 32 * (k % 2) + l] |= lo << (4 * (k / 2));
        sb[128 + 32 * h + l] |= hi << (2 * k);
    }
    sb
}

/// A 32-weight block's weight of integer `n`, scale `d` and (`Q4_1`, `Q5_1`) minimum `m`, as
/// ggml dequantises it.
fn small_weight(kind: Kind, n: u8, d: f32, m: f32) -> f32 {
    match kind {
        Kind::Q4_0 => (i32::from(n) - 8) as f32 * d,
        Kind::Q5_0 => (i32::from(n) - 16) as f32 * d,
        _ => f32::from(n) * d + m,
    }
}

/// K-quant super-block `sb` of `kind` dequantised into `o` (`SUPER` weights), as ggml does.
fn dequantize_super(kind: Kind, sb: &[u8], o: &mut [f32]) {
    let k = decode_k(kind, sb);
    for (i, ov) in o.iter_mut().enumerate().take(SUPER) {
        let w = k.scale[i / 16] * f32::from(k.q[i]);
        *ov = if kind == Kind::Q6K {
            w
        } else {
            w - k.min[i / BLOCK]
        };
    }
}

/// The 16 nibble bytes of a GGUF `Q4_*` block `blk`, at `at` (zeros past its end): a fixed
/// size, so that [`nibble`]'s reads need no checks (packing a model reads every one).
fn nibble_bytes(blk: &[u8], at: usize) -> [u8; BLOCK / 2] {
    let mut q = [0u8; BLOCK / 2];
    if let Some(b) = blk.get(at..at + BLOCK / 2) {
        q.copy_from_slice(b);
    }
    q
}

/// The weight of index `j` (0..32) in a GGUF `Q4_*` block's 16 nibble bytes.
#[inline]
fn nibble(q: &[u8; BLOCK / 2], j: usize) -> u8 {
    let b = q[j % 16];
    if j < 16 { b & 0x0F } else { b >> 4 }
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

    /// Repacks `rows` x `cols` weights of `kind` from their GGUF bytes, in a store of their
    /// own, striped where the kind and shape allow (as a model's matrices are).
    pub fn from_ggml(kind: Kind, rows: usize, cols: usize, bytes: &[u8]) -> Result<Self, String> {
        Self::from_ggml_as(kind, rows, cols, bytes, true)
    }

    /// [`Self::from_ggml`], striped only with `stripes` (tests and benchmarks compare both
    /// layouts).
    pub fn from_ggml_as(
        kind: Kind,
        rows: usize,
        cols: usize,
        bytes: &[u8],
        stripes: bool,
    ) -> Result<Self, String> {
        let mut store = Store::heap(bytes);
        let at = pack_in_place(
            kind,
            rows,
            cols,
            store.bytes_mut(),
            (0..bytes.len(), stripes),
        )?;
        Ok(Self::new(Arc::new(store), at))
    }

    /// The store this matrix lives in (shared by all the model's matrices).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Block scales, `[row][block]`.
    pub(super) fn d(&self) -> &[f16] {
        view(self.store.bytes(), &self.at.d)
    }

    /// `Q4_1`, `Q5_1` block minimums, `[row][block]` (empty for other kinds).
    pub(super) fn m(&self) -> &[f16] {
        view(self.store.bytes(), &self.at.m)
    }

    /// `Q5_*` fifth bits, 4 bytes per block, `[row][block]` (empty for other kinds).
    pub(super) fn h(&self) -> &[u8] {
        view(self.store.bytes(), &self.at.h)
    }

    /// Quantised weights (see [`Layout::qs`]).
    pub(super) fn qs(&self) -> &[u8] {
        view(self.store.bytes(), &self.at.qs)
    }

    /// F32 weights.
    pub(super) fn f(&self) -> &[f32] {
        view(self.store.bytes(), &self.at.f)
    }

    /// Block type.
    pub fn kind(&self) -> Kind {
        self.at.kind
    }

    /// Whether the rows are in stripes ([`Layout::striped`]).
    pub fn striped(&self) -> bool {
        self.at.striped
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
        a.d.len() + a.m.len() + a.h.len() + a.qs.len() + a.f.len()
    }

    /// Row `r`'s F16 weights (empty for other kinds).
    pub(super) fn h16_row(&self, r: usize) -> &[f16] {
        if self.kind() != Kind::F16 {
            return &[];
        }
        let c = self.cols();
        view::<f16>(self.store.bytes(), &self.at.qs)
            .get(r * c..(r + 1) * c)
            .unwrap_or_default()
    }

    /// Row `r`'s BF16 weights (empty for other kinds).
    pub(super) fn b16_row(&self, r: usize) -> &[half::bf16] {
        if self.kind() != Kind::BF16 {
            return &[];
        }
        let c = self.cols();
        view::<half::bf16>(self.store.bytes(), &self.at.qs)
            .get(r * c..(r + 1) * c)
            .unwrap_or_default()
    }

    /// Row `r`'s f32 weights (empty for quantised kinds).
    pub(super) fn f_row(&self, r: usize) -> &[f32] {
        let c = self.cols();
        self.f().get(r * c..(r + 1) * c).unwrap_or_default()
    }

    /// Bytes of quantised weights per row (see [`Layout::qs`]).
    pub(super) fn qs_row_bytes(&self) -> usize {
        let k = self.kind();
        match k {
            Kind::F32 => 0,
            Kind::F16 | Kind::BF16 => 2 * self.cols(),
            Kind::Q8_0 => self.cols(),
            k if k.is_k() => self.cols() / k.group() * k.block_bytes(),
            _ => self.cols() / 2,
        }
    }

    /// Dequantises row `r` into `out` (`cols` long), computing each weight as candle's (and
    /// ggml's) dequantisation does, so that the two agree bit for bit (tested).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let nb = self.cols() / BLOCK;
        if self.striped() {
            return self.dequantize_striped_row(r, out);
        }
        let rb = self.qs_row_bytes();
        let at = |v: &[f16], i: usize| v.get(r * nb + i).map_or(0.0, |x| x.to_f32());
        let qs = self.qs().get(r * rb..(r + 1) * rb).unwrap_or_default();
        let h = self.h();
        let kind = self.kind();
        match kind {
            Kind::F32 => {
                for (o, v) in out.iter_mut().zip(self.f_row(r)) {
                    *o = *v;
                }
            }
            Kind::F16 => {
                for (o, v) in out.iter_mut().zip(self.h16_row(r)) {
                    *o = v.to_f32();
                }
            }
            Kind::BF16 => {
                for (o, v) in out.iter_mut().zip(self.b16_row(r)) {
                    *o = v.to_f32();
                }
            }
            Kind::Q4_0 | Kind::Q4_1 | Kind::Q5_0 | Kind::Q5_1 => {
                for (blk, o) in out.chunks_exact_mut(BLOCK).enumerate().take(nb) {
                    let pair = qs.get(blk / 2 * BLOCK..(blk / 2 + 1) * BLOCK);
                    let hb = fifth_bits(h, r * nb + blk);
                    let (d, m) = (at(self.d(), blk), at(self.m(), blk));
                    for (j, ov) in o.iter_mut().enumerate() {
                        let b = pair.and_then(|p| p.get(j)).copied().unwrap_or(0);
                        let n = if blk % 2 == 0 { b & 0x0F } else { b >> 4 };
                        let n = n | (((hb >> j) & 1) << 4) as u8;
                        *ov = small_weight(kind, n, d, m);
                    }
                }
            }
            Kind::Q8_0 => {
                for (blk, (o, q)) in out
                    .chunks_exact_mut(BLOCK)
                    .zip(qs.chunks_exact(BLOCK))
                    .enumerate()
                {
                    let d = at(self.d(), blk);
                    for (ov, b) in o.iter_mut().zip(q) {
                        *ov = d * f32::from(*b as i8);
                    }
                }
            }
            Kind::Q4K | Kind::Q5K | Kind::Q6K => {
                for (o, sb) in out
                    .chunks_exact_mut(SUPER)
                    .zip(qs.chunks_exact(kind.block_bytes()))
                {
                    dequantize_super(kind, sb, o);
                }
            }
        }
    }

    /// [`Self::dequantize_row`] of a striped matrix.
    fn dequantize_striped_row(&self, r: usize, out: &mut [f32]) {
        let nb = self.cols() / BLOCK;
        let kind = self.kind();
        if kind.is_k() {
            let supers = self.cols() / SUPER;
            let per = STRIPE * kind.block_bytes();
            for (c, o) in out.chunks_exact_mut(SUPER).enumerate().take(supers) {
                let at = (r / STRIPE * supers + c) * per;
                let st = self.qs().get(at..at + per).unwrap_or_default();
                if kind == Kind::Q6K {
                    dequantize_super(kind, &unstripe_q6k_row(st, r % STRIPE), o);
                } else {
                    dequantize_super(kind, &unstripe_q4k_row(st, r % STRIPE), o);
                }
            }
            return;
        }
        let (i, stripe) = (r % STRIPE, r / STRIPE);
        let (d, m, qs) = (self.d(), self.m(), self.qs());
        for (c, o) in out.chunks_exact_mut(BLOCK).enumerate().take(nb) {
            let sb = stripe * nb + c;
            let scale = |v: &[f16]| v.get(sb * STRIPE + i).map_or(0.0, |x| x.to_f32());
            let (dv, mv) = (scale(d), scale(m));
            if kind == Kind::Q8_0 {
                for (k, ov) in o.iter_mut().enumerate() {
                    let at = sb * STRIPE_Q8_BYTES + stripe_q8_byte(i, k);
                    *ov = dv * f32::from(qs.get(at).map_or(0, |b| *b as i8));
                }
                continue;
            }
            let q = qs
                .get(sb * STRIPE_BLOCK_BYTES..(sb + 1) * STRIPE_BLOCK_BYTES)
                .unwrap_or_default();
            for (k, ov) in o.iter_mut().enumerate() {
                let (byte, shift) = stripe_nibble(i, k);
                let n = (q.get(byte).copied().unwrap_or(0) >> shift) & 0x0F;
                *ov = small_weight(kind, n, dv, mv);
            }
        }
    }
}
