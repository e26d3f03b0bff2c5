//! The feed-forward block of a layer ([`ffn`]): RMSNorm, the gate and up products in one
//! region, SiLU(gate) · up (GELU for Gemma) quantised in runs of blocks shared among the
//! threads, and the down product (RMS-normed for Gemma) added to the residual stream.

use super::layer::{Dims, Layer, rms_norm, rms_norm_in_place};
use super::quant::{Chunk, QAct};
use super::run::{Run, matmul};
use crate::engine::Error;

/// Blocks of 32 activations per task of the SiLU (about 1.5 µs each).
const SILU_BLOCKS: usize = 8;

/// `e^x` in f32 within two units in the last place (tested), without a branch or a call, so
/// that a loop of it is vectorised (libm's `expf`, called per value, was 4 % of a prompt):
/// `x = n ln 2 + r` with `|r| <= ln 2 / 2` (ln 2 in two parts, Cody and Waite), `e^r` by
/// Cephes' degree-6 polynomial, `2^n` put in the exponent bits, computed for `x` clamped to
/// `[-87, 88]`, where `2^n` is a normal number; 0 below it and infinity above, as `expf`
/// (so that SiLU and GELU of a large negative value are 0).
#[inline]
fn exp(x: f32) -> f32 {
    let v = exp_within(x.clamp(-87.0, 88.0));
    if x < -87.0 {
        0.0
    } else if x > 88.0 {
        f32::INFINITY
    } else {
        v
    }
}

/// `exp` for `x` within `[-87, 88]`.
#[inline]
fn exp_within(x: f32) -> f32 {
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = n.mul_add(-0.693_359_4, x);
    let r = n.mul_add(2.121_944_4e-4, r);
    let mut p = 1.987_569_1e-4_f32;
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        0.166_666_65,
        0.5,
    ] {
        p = p.mul_add(r, c);
    }
    let e = p.mul_add(r * r, r) + 1.0;
    // n is within [-126, 127]: the biased exponent n + 127 is within [1, 254].
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// GELU, tanh approximation (Gemma's): `0.5 x (1 + tanh(u))`, computed as
/// `x / (1 + exp(-2u))`, the same function (`tanh` from libm was a tenth of Gemma 3 270M's
/// prompt processing). ggml's CPU backend looks GELU up in a table by the input rounded to
/// f16; that table, tried here, took the real Gemma 3 270M off llama.cpp's greedy tokens
/// where f32 stays on them (tests/cli/reference.rs).
fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
    x / (1.0 + exp(-2.0 * u))
}

/// SiLU, `x · sigmoid(x)`.
#[inline]
fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `h = act(g) · u`, element by element: one loop per activation, so that it is inlined and
/// vectorised (a function chosen at run time was called per value).
fn gate(gelu_act: bool, g: &mut [f32], u: &[f32]) {
    let items = g.iter_mut().zip(u);
    if gelu_act {
        items.for_each(|(g, u)| *g = gelu(*g) * u);
    } else {
        items.for_each(|(g, u)| *g = silu(*g) * u);
    }
}

/// The feed-forward block of one layer: `x += down(act(gate(xn)) * up(xn))`, `xn` the
/// RMS-normed `x`, `act` SiLU or GELU; the down product normed first where the layer has a
/// norm after its feed-forward.
#[allow(
    clippy::too_many_arguments,
    reason = "the buffers of the caller, split"
)]
pub(super) fn ffn(
    run: Run<'_>,
    d: Dims,
    layer: &Layer,
    x: &mut [f32],
    xa: &mut QAct,
    ha: &mut QAct,
    (g, u, down): (&mut Vec<f32>, &mut Vec<f32>, &mut Vec<f32>),
    rt: &mut Vec<f32>,
) -> Result<(), Error> {
    let t = x.len() / d.dim;
    let xn = xa.f_mut(t, d.dim);
    for (xr, nr) in x.chunks_exact(d.dim).zip(xn.chunks_exact_mut(d.dim)) {
        rms_norm(xr, &layer.ffn_norm, d.eps, nr);
    }
    xa.quantize();
    matmul(
        run,
        &mut [(&layer.gate, &mut *g), (&layer.up, &mut *u)],
        xa,
        rt,
    )?;
    // SiLU(gate) · up, quantised run by run of blocks, shared among the threads: on the
    // calling thread alone it was 5 % of a two-thread generation step. Computed in the gate's
    // buffer, lent to `ha` until the down product is done: a buffer of their own was 4 MiB
    // more peak memory for the 1B shape's prompt batches.
    ha.swap_f(g);
    let u = &*u;
    let gated = |c: &mut Chunk<'_>| {
        gate(d.gelu, c.f, u.get(c.start..).unwrap_or_default());
        c.quantize();
    };
    let mut chunks = ha.chunks_mut(t, d.ffn, SILU_BLOCKS);
    let each = run.each(&mut chunks, gated);
    drop(chunks);
    let down_done = each.and_then(|()| matmul(run, &mut [(&layer.down, &mut *down)], ha, rt));
    ha.swap_f(g);
    down_done?;
    if !layer.post_ffn_norm.is_empty() {
        for r in down.chunks_exact_mut(d.dim) {
            rms_norm_in_place(r, &layer.post_ffn_norm, d.eps);
        }
    }
    for (xv, dv) in x.iter_mut().zip(down.iter()) {
        *xv += dv;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{exp, gelu, silu};

    /// The polynomial `exp` is libm's (f64) within two units in the last place over the
    /// range it is exact for, and saturates at its clamps.
    #[test]
    fn exp_is_within_two_ulp() {
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            let ulp = f64::from(f32::EPSILON) * want;
            assert!((got - want).abs() <= 2.0 * ulp, "exp({x}): {got} vs {want}");
        }
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(exp(1000.0), f32::INFINITY);
        assert_eq!(silu(-1e30), 0.0);
        assert_eq!(silu(1e30), 1e30);
    }

    /// The exp form is the tanh form within f32 rounding, and saturates without NaN.
    #[test]
    fn gelu_is_the_tanh_approximation() {
        for i in -3000..=3000 {
            let x = i as f32 * 0.01;
            let u = 0.797_884_6 * x * (1.0 + 0.044_715 * x * x);
            let want = 0.5 * x * (1.0 + u.tanh());
            let got = gelu(x);
            assert!(
                (got - want).abs() <= 1e-6 * x.abs().max(1.0),
                "gelu({x}): {got}, tanh form {want}"
            );
        }
        assert_eq!(gelu(-100.0), 0.0);
        assert_eq!(gelu(100.0), 100.0);
    }
}
