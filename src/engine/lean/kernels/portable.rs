//! The kernels in plain Rust, for any CPU and as the reference of the SIMD ones: the block
//! dot products of a `Q4_*` or `Q8_0` row, and the f32 and f16 dot products and `axpy` of
//! the attention.

use half::f16;
use half::slice::HalfFloatSliceExt;

use super::rows::Lens;
use crate::engine::lean::blocks::{BLOCK, Decoded, Kind, SUPER, decode_k, fifth_bits};
use crate::engine::lean::quant::Y;

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

/// [`dot_f32`] of `a` with `b` stored as bfloat16 (converted exactly, 32 at a time), over the
/// shorter length.
pub fn dot_bf16(a: &[f32], b: &[half::bf16]) -> f32 {
    let n = a.len().min(b.len());
    let mut acc = [0f32; 8];
    let mut buf = [0f32; 32];
    let mut tail = 0f32;
    for (ac, bc) in a[..n].chunks(32).zip(b[..n].chunks(32)) {
        let bf = buf.get_mut(..bc.len()).unwrap_or_default();
        bc.convert_to_f32_slice(bf);
        for (a8, b8) in ac.chunks_exact(8).zip(bf.chunks_exact(8)) {
            for ((s, x), y) in acc.iter_mut().zip(a8).zip(b8) {
                *s += x * y;
            }
        }
        tail += ac
            .chunks_exact(8)
            .remainder()
            .iter()
            .zip(bf.chunks_exact(8).remainder())
            .map(|(x, y)| x * y)
            .sum::<f32>();
    }
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

/// The `Q4_*` and `Q5_*` kernel in plain Rust.
pub(super) fn q4_portable<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    let mut out = [0f32; N];
    for (o, y) in out.iter_mut().zip(ys) {
        for (pair, q) in l.qs.chunks_exact(BLOCK).enumerate() {
            for half in 0..2 {
                let blk = 2 * pair + half;
                let yq = y.qs.get(blk * BLOCK..(blk + 1) * BLOCK).unwrap_or_default();
                let hb = l.h.map_or(0, |h| fifth_bits(h, blk));
                let isum: i32 = q
                    .iter()
                    .zip(yq)
                    .enumerate()
                    .map(|(j, (b, v))| {
                        let n = if half == 0 { b & 0x0F } else { b >> 4 };
                        let n = i32::from(n) | (((hb >> j) & 1) << 4) as i32;
                        n * i32::from(*v)
                    })
                    .sum();
                let dv = l.d.get(blk).map_or(0.0, |v| v.to_f32());
                let mv = match (l.m, l.h) {
                    (Some(m), _) => m.get(blk).map_or(0.0, |v| v.to_f32()),
                    (None, Some(_)) => -16.0 * dv,
                    (None, None) => -8.0 * dv,
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
pub(super) fn q8_portable<const N: usize>(l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
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

/// The K-quant kernel in plain Rust, with the activations' `Q8_K` form, as ggml computes it:
/// per super-block the integer sum of each 16 weights' products times its integer scale, and
/// of each 32 activations' sum times its integer minimum; then `d * kd` times the first less
/// `dmin * kd` times the second.
pub(super) fn k_portable<const N: usize>(kind: Kind, l: Lens<'_>, ys: &[Y<'_>; N]) -> [f32; N] {
    let mut out = [0f32; N];
    for (g, sb) in l.qs.chunks_exact(kind.block_bytes()).enumerate() {
        let k = decode_k(kind, sb);
        for (o, y) in out.iter_mut().zip(ys) {
            *o += k_super(&k, y, g);
        }
    }
    out
}

/// The product of decoded K-quant super-block `k` with super-block `g` of the activations'
/// `Q8_K` form `y`, as ggml computes it (see [`k_portable`]).
pub(super) fn k_super(k: &Decoded, y: &Y<'_>, g: usize) -> f32 {
    let subs = SUPER / BLOCK;
    let yq = y.kq.get(g * SUPER..(g + 1) * SUPER).unwrap_or_default();
    let ks = y.ks.get(g * subs..(g + 1) * subs).unwrap_or_default();
    let kd = y.kd.get(g).copied().unwrap_or(0.0);
    let ints: i32 =
        k.q.chunks_exact(16)
            .zip(yq.chunks_exact(16))
            .zip(k.sc)
            .map(|((q, yq), sc)| {
                sc * q
                    .iter()
                    .zip(yq)
                    .map(|(a, b)| i32::from(*a) * i32::from(*b))
                    .sum::<i32>()
            })
            .sum();
    let mins: i32 = k.m.iter().zip(ks).map(|(m, s)| m * s).sum();
    k.d * kd * ints as f32 - k.dmin * kd * mins as f32
}
