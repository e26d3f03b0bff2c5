//! What the kernels of every level share: a quantised matrix's rows as slices whose lengths
//! were checked against the activations ([`Rows`], one row a [`Lens`]), where the results go
//! ([`Out`]), and the loop over the rows ([`each_row`]), which prefetches the rows ahead.
//!
//! # Safety
//! The one `unsafe` here is a cache prefetch hint; the lengths checked here are what the SIMD
//! kernels' loads rely on.

use std::ops::Range;

use half::f16;

use crate::engine::lean::blocks::{BLOCK, Kind};
use crate::engine::lean::pack::Packed;
use crate::engine::lean::quant::Y;

/// Rows ahead whose weights are prefetched: the weights stream from memory once per token,
/// and the hardware prefetcher alone left the kernels waiting on their loads (`perf
/// annotate`: most samples on the first use of each loaded block; with it, one-thread
/// generation went from about 69 to 80 tokens/s here).
const PREFETCH_ROWS: usize = 4;

/// Runs `kernel` on every row of `rs`, prefetching the rows ahead, into `out`. Inlined into
/// each level's caller, so that the kernel is compiled with that level's features.
#[inline(always)]
pub(super) fn each_row<const N: usize>(
    rs: Rows<'_>,
    mut out: Out<'_>,
    kernel: impl Fn(Lens<'_>) -> [f32; N],
) {
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
#[allow(unsafe_code, reason = "a prefetch hint, which never faults")]
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

/// Where `Packed::matvec` writes: row `i`'s `N` values at `out[i * stride + at..]`.
pub(super) struct Out<'a> {
    pub(super) out: &'a mut [f32],
    pub(super) stride: usize,
    pub(super) at: usize,
}

impl Out<'_> {
    #[inline]
    pub(super) fn put<const N: usize>(&mut self, i: usize, v: [f32; N]) {
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
pub(super) struct Rows<'a> {
    pub(super) rows: usize,
    pub(super) nb: usize,
    pub(super) per_block: usize,
    pub(super) d: &'a [f16],
    pub(super) m: Option<&'a [f16]>,
    pub(super) qs: &'a [u8],
}

impl<'a> Rows<'a> {
    pub(super) fn new<const N: usize>(
        p: &'a Packed,
        rows: Range<usize>,
        ys: &[Y<'_>; N],
    ) -> Option<Self> {
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
pub(super) fn fits<const N: usize>(nb: usize, ys: &[Y<'_>; N]) -> bool {
    ys.iter()
        .all(|y| y.qs.len() == nb * BLOCK && y.d.len() == nb && y.s.len() == nb)
}

/// One weight row's slices, from [`Rows::row`]: `nb` blocks (even), `d` and `m` with `nb`
/// scales, `qs` with `nb` blocks of bytes; the tokens' slices were checked by [`Rows::new`].
/// The SIMD kernels read only within these lengths.
#[derive(Clone, Copy)]
pub(super) struct Lens<'a> {
    pub(super) nb: usize,
    pub(super) d: &'a [f16],
    /// `Q4_1` minimums; `None` for `Q4_0` (minimum `-8 d`) and `Q8_0`.
    pub(super) m: Option<&'a [f16]>,
    pub(super) qs: &'a [u8],
}
