//! Where the lean path's weights live, and their repacking in place.
//!
//! The decrypted arena is not copied: each weight matrix is rewritten, within its own bytes of
//! the arena, from GGUF block order into the kernels' layout (see [`super::kernels`]), which
//! takes exactly as many bytes. The model then keeps the arena, so the weights are held once,
//! in memory that is locked, excluded from core dumps and wiped when the model is dropped.
//! Only one matrix at a time is copied aside while it is rewritten (the largest, the token
//! embedding of SmolLM2-135M, is 17.7 MB), and that copy is wiped at once.

use std::ops::Range;

use half::f16;
use zeroize::Zeroizing;

use super::kernels::{BLOCK, Kind};
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
    /// `Q4_1` block minimums, `[row][block]` f16.
    pub m: Range<usize>,
    /// Pair-interleaved nibbles (`Q4_*`, 16 bytes per block) or `i8` (`Q8_0`, 32 per block).
    pub qs: Range<usize>,
    /// F32 weights.
    pub f: Range<usize>,
}

/// Repacks the `rows` x `cols` weights of `kind`, held in GGUF block order at `at` in
/// `bytes`, into the kernels' layout in the same bytes: the scales of every block first
/// (native-endian f16), then for `Q4_1` the minimums, then the quantised weights, with the
/// nibbles of each pair of blocks interleaved (byte j = weight j of the first block | weight
/// j of the second << 4); F32 weights become native-endian in place. Refuses shapes the
/// kernels cannot run and sizes or alignments that do not match, saying which.
pub fn pack_in_place(
    kind: Kind,
    rows: usize,
    cols: usize,
    bytes: &mut [u8],
    at: Range<usize>,
) -> Result<Layout, String> {
    if cols == 0 || !cols.is_multiple_of(kind.row_multiple()) {
        return Err(format!(
            "rows of {cols} weights (a multiple of {} is needed)",
            kind.row_multiple()
        ));
    }
    let nb = cols / BLOCK;
    let bb = kind.block_bytes();
    let n = rows
        .checked_mul(nb)
        .ok_or_else(|| format!("{rows} x {cols} weights is too many"))?;
    if n.checked_mul(bb) != Some(at.len()) {
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
        qs: s..s,
        f: s..s,
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
        Kind::Q4_0 | Kind::Q4_1 => {
            let src = Zeroizing::new(region.to_vec());
            let q4_1 = kind == Kind::Q4_1;
            let (ds, rest) = region.split_at_mut(2 * n);
            let (ms, qs) = rest.split_at_mut(if q4_1 { 2 * n } else { 0 });
            let q_at = if q4_1 { 4 } else { 2 };
            for (((pair, d), m), q) in src
                .chunks_exact(2 * bb)
                .zip(ds.chunks_exact_mut(4))
                .zip(
                    ms.chunks_exact_mut(4)
                        .map(Some)
                        .chain(std::iter::repeat_with(|| None)),
                )
                .zip(qs.chunks_exact_mut(2 * BLOCK / 2))
            {
                let (a, b) = pair.split_at(bb);
                d[..2].copy_from_slice(&half(a, 0));
                d[2..].copy_from_slice(&half(b, 0));
                if let Some(m) = m {
                    m[..2].copy_from_slice(&half(a, 2));
                    m[2..].copy_from_slice(&half(b, 2));
                }
                let (qa, qb) = (
                    a.get(q_at..).unwrap_or_default(),
                    b.get(q_at..).unwrap_or_default(),
                );
                for (j, o) in q.iter_mut().enumerate() {
                    *o = nibble(qa, j) | (nibble(qb, j) << 4);
                }
            }
            l.d = s..s + 2 * n;
            if q4_1 {
                l.m = s + 2 * n..s + 4 * n;
            }
            l.qs = l.m.end.max(l.d.end)..at.end;
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

/// The weight of index `j` (0..32) in a GGUF `Q4_*` block's 16 nibble bytes.
fn nibble(qs: &[u8], j: usize) -> u8 {
    let b = qs.get(j % 16).copied().unwrap_or(0);
    if j < 16 { b & 0x0F } else { b >> 4 }
}
