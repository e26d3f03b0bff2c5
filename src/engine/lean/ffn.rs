//! The feed-forward block of a layer ([`ffn`]): RMSNorm, the gate and up products in one
//! region, SiLU(gate) · up (GELU for Gemma) quantised in runs of blocks shared among the
//! threads, and the down product (RMS-normed for Gemma) added to the residual stream.

use super::layer::{Dims, Layer, rms_norm, rms_norm_in_place};
use super::quant::{Chunk, QAct};
use super::run::{Run, matmul};
use crate::engine::Error;

/// Blocks of 32 activations per task of the SiLU (about 1.5 µs each).
const SILU_BLOCKS: usize = 8;

/// GELU, tanh approximation (Gemma's): `0.5 x (1 + tanh(u))`, computed as
/// `x / (1 + exp(-2u))`, the same function (`tanh` from libm was a tenth of Gemma 3 270M's
/// prompt processing). ggml's CPU backend looks GELU up in a table by the input rounded to
/// f16; that table, tried here, took the real Gemma 3 270M off llama.cpp's greedy tokens
/// where f32 stays on them (tests/cli/reference.rs).
fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
    x / (1.0 + (-2.0 * u).exp())
}

/// SiLU, `x · sigmoid(x)`.
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
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
    // calling thread alone it was 5 % of a two-thread generation step.
    let (g, u) = (&*g, &*u);
    let act = if d.gelu { gelu } else { silu };
    let gated = |c: &mut Chunk<'_>| {
        let gs = g.get(c.start..).unwrap_or_default();
        let us = u.get(c.start..).unwrap_or_default();
        for ((h, gv), uv) in c.f.iter_mut().zip(gs).zip(us) {
            *h = act(*gv) * uv;
        }
        c.quantize();
    };
    let mut chunks = ha.chunks_mut(t, d.ffn, SILU_BLOCKS);
    run.each(&mut chunks, gated)?;
    drop(chunks);
    matmul(run, &mut [(&layer.down, &mut *down)], ha, rt)?;
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
    use super::gelu;

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
