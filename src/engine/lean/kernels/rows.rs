//! What the kernels of every level share: a quantised matrix's rows as slices whose lengths
//! were checked against the activations ([`Rows`], one row a [`Lens`]), where the results go
//! ([`Out`]), and the loop over the rows ([`each_row`]), which prefetches the rows ahead where
//! the level does.
//!
//! # Safety
//! The one `unsafe` here is a cache prefetch hint; the lengths checked here are what the SIMD
//! kernels' loads rely on.

use std::ops::Range;

use half::f16;

use crate::engine::lean::blocks::{BLOCK, Kind, SUPER};
use crate::engine::lean::pack::Packed;
use crate::engine::lean::quant::Y;

/// Rows ahead whose weights are prefetched by the AVX-512 and portable kernels: the weights
/// stream from memory once per token, and on the VMs those kernels were measured on the
/// hardware prefetcher alone left them waiting on their loads (`perf annotate`: most samples
/// on the first use of each loaded block; with it, one-thread generation went from about 69
/// to 80 tokens/s).
pub(super) const PREFETCH_ROWS: usize = 4;

/// Rows ahead prefetched by the AVX2 kernels: none. On the AVX2-only EPYC VM of 2026-12-06
/// the prefetches slowed generation (tokens/s per alternating round, 2 threads, tg64, the
/// prefetch four rows ahead against none): the 1B Q4_0 shape 25.5/22.4/22.3/21.1/25.4/25.4
/// against 26.3/27.3/24.3/29.4/29.8/29.3, the 1B Q4_K_M 22.7/22.0/24.1/21.7 against
/// 24.8/28.0/26.3/25.6, SmolLM2 Q4_1 127/123/119/117 against 163/141/131/165, the 7B
/// shape's tg32 3.7/3.8 against 4.5/4.7 (a `_MM_HINT_T0` prefetch instead of the
/// non-temporal one, or eight or sixteen rows ahead, was no better).
pub(super) const AVX2_PREFETCH_ROWS: usize = 0;

/// Runs `kernel` on every row of `rs`, prefetching the weights of the row `ahead` rows on
/// (none when it is 0), into `out`. Inlined into each level's caller, so that the kernel is
/// compiled with that level's features.
#[inline(always)]
pub(super) fn each_row<const N: usize>(
    rs: Rows<'_>,
    mut out: Out<'_>,
    ahead: usize,
    kernel: impl Fn(Lens<'_>) -> [f32; N],
) {
    for i in 0..rs.rows {
        #[cfg(target_arch = "x86_64")]
        if ahead > 0
            && let Some(next) = rs.ahead(i + ahead)
        {
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
    // The scales' lines, where the kind has them (an empty slice's pointer is no address to
    // prefetch: a prefetch of an unmapped page can cost a page walk).
    let scales = [
        (!l.d.is_empty()).then(|| l.d.as_ptr().cast::<u8>()),
        l.m.map(|m| m.as_ptr().cast()),
        l.h.map(<[u8]>::as_ptr),
    ];
    for p in
        l.qs.chunks(64)
            .map(<[u8]>::as_ptr)
            .chain(scales.into_iter().flatten())
    {
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
/// activations: `nb` blocks of 32 per row (an even number), `d` and (`Q4_1`, `Q5_1`) `m`
/// with `nb` scales per row, (`Q5_*`) `h` with `4 * nb` bytes per row, `qs` with `row_qs`
/// bytes per row ([`Packed::qs_row_bytes`]: whole super-blocks for the K-quants), and every
/// token's `qs` (`32 * nb`), `d` and `s` (`nb`). The slices also hold up to
/// [`PREFETCH_ROWS`] rows past the range, when the matrix has them, to be prefetched (a
/// task's first rows then come in while the rows before them, the previous task's, are
/// computed).
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    pub(super) rows: usize,
    pub(super) nb: usize,
    row_qs: usize,
    pub(super) d: &'a [f16],
    pub(super) m: Option<&'a [f16]>,
    pub(super) h: Option<&'a [u8]>,
    pub(super) qs: &'a [u8],
}

impl<'a> Rows<'a> {
    pub(super) fn new<const N: usize>(
        p: &'a Packed,
        rows: Range<usize>,
        ys: &[Y<'_>; N],
    ) -> Option<Self> {
        let kind = p.kind();
        let nb = p.cols() / BLOCK;
        let row_qs = p.qs_row_bytes();
        let span = rows.start..(rows.end + PREFETCH_ROWS).min(p.rows()).max(rows.end);
        let scales = span.start * nb..span.end * nb;
        if kind.is_float()
            || p.striped()
            || !nb.is_multiple_of(2)
            || !p.cols().is_multiple_of(kind.row_multiple())
            || !fits_for(kind, nb, ys)
        {
            return None;
        }
        Some(Self {
            rows: rows.len(),
            nb,
            row_qs,
            d: if kind.is_k() {
                &[]
            } else {
                p.d().get(scales.clone())?
            },
            m: if matches!(kind, Kind::Q4_1 | Kind::Q5_1) {
                Some(p.m().get(scales.clone())?)
            } else {
                None
            },
            h: if matches!(kind, Kind::Q5_0 | Kind::Q5_1) {
                Some(p.h().get(scales.start * 4..scales.end * 4)?)
            } else {
                None
            },
            qs: p.qs().get(span.start * row_qs..span.end * row_qs)?,
        })
    }

    /// Row `i` of the range, with the same guarantees for one row.
    #[inline]
    pub(super) fn row(&self, i: usize) -> Option<Lens<'a>> {
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
            d: if self.d.is_empty() {
                self.d
            } else {
                self.d.get(i * nb..(i + 1) * nb)?
            },
            m: match self.m {
                Some(m) => Some(m.get(i * nb..(i + 1) * nb)?),
                None => None,
            },
            h: match self.h {
                Some(h) => Some(h.get(i * nb * 4..(i + 1) * nb * 4)?),
                None => None,
            },
            qs: self.qs.get(i * self.row_qs..(i + 1) * self.row_qs)?,
        })
    }
}

/// Whether every token's activations have `nb` blocks (what the kernels read of them).
pub(super) fn fits<const N: usize>(nb: usize, ys: &[Y<'_>; N]) -> bool {
    ys.iter()
        .all(|y| y.qs.len() == nb * BLOCK && y.d.len() == nb && y.s.len() == nb)
}

/// Whether every token's activations have what the kernels of `kind` read of them: the
/// `Q8_K` form for the K-quants ([`fits_k`]), the 8-bit blocks else ([`fits`]).
pub(super) fn fits_for<const N: usize>(kind: Kind, nb: usize, ys: &[Y<'_>; N]) -> bool {
    if kind.is_k() {
        fits_k(nb, ys)
    } else {
        fits(nb, ys)
    }
}

/// Whether every token's activations have the `Q8_K` form of `nb` blocks (what the K-quant
/// kernels read of them).
pub(super) fn fits_k<const N: usize>(nb: usize, ys: &[Y<'_>; N]) -> bool {
    nb.is_multiple_of(SUPER / BLOCK)
        && ys.iter().all(|y| {
            y.kq.len() == nb * BLOCK
                && y.kd.len() == nb / (SUPER / BLOCK)
                && y.ks.len() == nb
                && y.kh.len() == 2 * nb
        })
}

/// One weight row's slices, from [`Rows::row`]: `nb` blocks (even), `d` and `m` with `nb`
/// scales (`d` empty for the K-quants), `h` with `4 * nb` bytes, `qs` with the row's bytes
/// (`16 * nb` for `Q4_*` and `Q5_*`, `32 * nb` for `Q8_0`, `nb / 8` super-blocks for the
/// K-quants); the tokens' slices were checked by [`Rows::new`]. The SIMD kernels read only
/// within these lengths.
#[derive(Clone, Copy)]
pub(super) struct Lens<'a> {
    pub(super) nb: usize,
    pub(super) d: &'a [f16],
    /// `Q4_1`, `Q5_1` minimums; `None` for the other kinds.
    pub(super) m: Option<&'a [f16]>,
    /// `Q5_*` fifth bits; `None` for the other kinds.
    pub(super) h: Option<&'a [u8]>,
    pub(super) qs: &'a [u8],
}
