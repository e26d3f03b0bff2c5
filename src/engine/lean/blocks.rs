//! The weight block types the lean path reads ([`Kind`]).
//!
//! GGUF block layouts read at load time (little-endian, 32 weights per block):
//! - `Q4_0`, 18 bytes: `d: f16`, 16 bytes of nibbles; weight = d * (nibble - 8).
//! - `Q4_1`, 20 bytes: `d: f16`, `m: f16`, 16 bytes of nibbles; weight = d * nibble + m.
//! - `Q5_0`, 22 bytes: `d: f16`, `qh: u32` (bit j: the fifth bit of weight j), 16 bytes of
//!   nibbles; weight = d * (q - 16).
//! - `Q5_1`, 24 bytes: `d: f16`, `m: f16`, `qh`, nibbles; weight = d * q + m.
//! - `Q8_0`, 34 bytes: `d: f16`, 32 `i8`; weight = d * q.
//!
//! In a GGUF block, byte j holds weight j in its low half and weight j + 16 in its high half.
//! The `pack` module rewrites these blocks into the kernels' layout at load time.
//!
//! The K-quants group 256 weights (a super-block) in eight sub-blocks of 32; the kernels read
//! them as the GGUF stores them, whose order is already the kernels' (no repacking):
//! - `Q4_K`, 144 bytes: `d: f16`, `dmin: f16`, 12 bytes of eight 6-bit scales and minimums,
//!   128 bytes of nibbles; sub-block `s` weight = d * scale_s * q - dmin * min_s. Byte l of
//!   the nibbles' 32-byte group g holds weight l of sub-block 2g (low) and of 2g + 1 (high).
//! - `Q5_K`, 176 bytes: as `Q4_K` with 32 bytes `qh` before the nibbles: bit 2g (2g + 1) of
//!   byte l is the fifth bit of weight l of sub-block 2g (2g + 1).
//! - `Q6_K`, 210 bytes: 128 bytes of low nibbles `ql`, 64 bytes of high pairs `qh`, sixteen
//!   `i8` scales (one per 16 weights), `d: f16`; weight = d * scale * (q - 32). In each half
//!   of 128 weights h, sub-block 4h + k takes its low nibble from `ql[64h + 32 (k % 2) + l]`
//!   (low half for k < 2, high half else) and its two high bits from bits 2k, 2k + 1 of
//!   `qh[32h + l]`.

use candle_core::quantized::GgmlDType;

/// Weights per block (a K-quant's sub-block), the activations' block.
pub const BLOCK: usize = 32;

/// Weights per K-quant super-block.
pub const SUPER: usize = 256;

/// Weight block types the lean path reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Plain little-endian f32 (tiny test models, norms).
    F32,
    /// Plain little-endian IEEE half precision.
    F16,
    /// Plain little-endian bfloat16.
    BF16,
    /// ggml Q4_0.
    Q4_0,
    /// ggml Q4_1.
    Q4_1,
    /// ggml Q5_0.
    Q5_0,
    /// ggml Q5_1.
    Q5_1,
    /// ggml Q8_0.
    Q8_0,
    /// ggml Q4_K.
    Q4K,
    /// ggml Q5_K.
    Q5K,
    /// ggml Q6_K.
    Q6K,
}

impl Kind {
    /// Every kind, F32 last.
    pub const ALL: [Kind; 11] = [
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q8_0,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
        Self::F16,
        Self::BF16,
        Self::F32,
    ];

    /// The kind of a GGUF tensor type, if the lean path reads it.
    pub fn from_ggml(t: GgmlDType) -> Option<Self> {
        Some(match t {
            GgmlDType::F32 => Self::F32,
            GgmlDType::F16 => Self::F16,
            GgmlDType::BF16 => Self::BF16,
            GgmlDType::Q4_0 => Self::Q4_0,
            GgmlDType::Q4_1 => Self::Q4_1,
            GgmlDType::Q5_0 => Self::Q5_0,
            GgmlDType::Q5_1 => Self::Q5_1,
            GgmlDType::Q8_0 => Self::Q8_0,
            GgmlDType::Q4K => Self::Q4K,
            GgmlDType::Q5K => Self::Q5K,
            GgmlDType::Q6K => Self::Q6K,
            _ => return None,
        })
    }

    /// The GGUF tensor type of this kind.
    pub fn ggml(self) -> GgmlDType {
        match self {
            Self::F32 => GgmlDType::F32,
            Self::F16 => GgmlDType::F16,
            Self::BF16 => GgmlDType::BF16,
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4_1 => GgmlDType::Q4_1,
            Self::Q5_0 => GgmlDType::Q5_0,
            Self::Q5_1 => GgmlDType::Q5_1,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4K => GgmlDType::Q4K,
            Self::Q5K => GgmlDType::Q5K,
            Self::Q6K => GgmlDType::Q6K,
        }
    }

    /// Weights per GGUF block: [`SUPER`] for the K-quants, [`BLOCK`] else.
    pub fn group(self) -> usize {
        if self.is_k() { SUPER } else { BLOCK }
    }

    /// Bytes per GGUF block of [`Self::group`] weights (per 32 weights for F32: 128).
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4 * BLOCK,
            Self::F16 | Self::BF16 => 2 * BLOCK,
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
        }
    }

    /// Whether the weights are plain floats (F32, F16, BF16), multiplied with the activations
    /// in f32 rather than quantised blocks.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::BF16)
    }

    /// Whether this is a K-quant (256-weight super-blocks, read as stored).
    pub fn is_k(self) -> bool {
        matches!(self, Self::Q4K | Self::Q5K | Self::Q6K)
    }

    /// Weights a row must be a multiple of: quantised rows are processed in pairs of blocks,
    /// K-quants in whole super-blocks.
    pub fn row_multiple(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => BLOCK,
            k if k.is_k() => SUPER,
            _ => 2 * BLOCK,
        }
    }
}

/// The fifth bits of `Q5_*` block `blk` in `h` (4 little-endian bytes per block; bit j for
/// weight j), 0 past the end.
#[inline]
pub fn fifth_bits(h: &[u8], blk: usize) -> u32 {
    h.get(4 * blk..4 * blk + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

/// The f16 stored little-endian at byte `at` of `b`, in f32 (0 past the end).
#[inline]
pub fn f16_at(b: &[u8], at: usize) -> f32 {
    match b.get(at..at + 2) {
        Some(&[lo, hi]) => half::f16::from_le_bytes([lo, hi]).to_f32(),
        _ => 0.0,
    }
}

/// Scale and minimum of sub-block `j` (0..8) in the 12 scale bytes of a `Q4_K` or `Q5_K`
/// super-block: 6 bits each, the first four whole in bytes 0..8, the last four split between
/// bytes 8..12 (low four bits) and the top two bits of bytes 0..8.
#[inline]
pub fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The eight scales and the eight minimums of a `Q4_K` or `Q5_K` super-block `sb`, one byte
/// each (sub-block j in byte j), as [`scale_min_k4`] reads them, in a few word operations.
#[inline]
pub fn k4_scales_mins(sb: &[u8]) -> (u64, u64) {
    let w = |i: usize| {
        sb.get(4 + 4 * i..8 + 4 * i)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes)
    };
    let (a, m, c) = (w(0), w(1), w(2));
    // Sub-blocks 0..4: the low six bits of bytes 0..4 (scales) and 4..8 (minimums); 4..8: the
    // nibbles of bytes 8..12, with the top two bits of bytes 0..8 above them.
    let s_lo = a & 0x3f3f_3f3f;
    let s_hi = (c & 0x0f0f_0f0f) | ((a >> 2) & 0x3030_3030);
    let m_lo = m & 0x3f3f_3f3f;
    let m_hi = ((c >> 4) & 0x0f0f_0f0f) | ((m >> 2) & 0x3030_3030);
    (
        u64::from(s_lo) | (u64::from(s_hi) << 32),
        u64::from(m_lo) | (u64::from(m_hi) << 32),
    )
}

/// The 12 scale bytes of a `Q4_K` or `Q5_K` super-block `sb`.
#[inline]
pub fn k4_scales(sb: &[u8]) -> [u8; 12] {
    sb.get(4..16)
        .and_then(|s| <[u8; 12]>::try_from(s).ok())
        .unwrap_or([0; 12])
}

/// One K-quant super-block decoded: weight i = `scale[i / 16] * q[i] - min[i / 32]`, with
/// the scales and minimums computed as ggml's (and candle's) dequantisation computes them.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The weights' integers (`Q4_K` 0..16, `Q5_K` 0..32, `Q6_K` -32..32).
    pub q: [i8; SUPER],
    /// Scale per 16 weights.
    pub scale: [f32; SUPER / 16],
    /// Minimum per 32 weights (0 for `Q6_K`).
    pub min: [f32; SUPER / BLOCK],
    /// The super-block's scale `d` and (`Q4_K`, `Q5_K`) minimum scale `dmin`.
    pub d: f32,
    /// See `d`.
    pub dmin: f32,
    /// The integer scale per 16 weights (scale = d * sc).
    pub sc: [i32; SUPER / 16],
    /// The integer minimum per 32 weights (min = dmin * m).
    pub m: [i32; SUPER / BLOCK],
}

/// Decodes K-quant super-block `sb` ([`Kind::block_bytes`] bytes) of `kind`; any other kind,
/// or too few bytes, decodes as zeros.
pub fn decode_k(kind: Kind, sb: &[u8]) -> Decoded {
    let mut o = Decoded {
        q: [0; SUPER],
        scale: [0.0; SUPER / 16],
        min: [0.0; SUPER / BLOCK],
        d: 0.0,
        dmin: 0.0,
        sc: [0; SUPER / 16],
        m: [0; SUPER / BLOCK],
    };
    if sb.len() < kind.block_bytes() {
        return o;
    }
    let byte = |i: usize| sb.get(i).copied().unwrap_or(0);
    match kind {
        Kind::Q4K | Kind::Q5K => {
            let (d, dmin, sc) = (f16_at(sb, 0), f16_at(sb, 2), k4_scales(sb));
            (o.d, o.dmin) = (d, dmin);
            let (qh, qs) = if kind == Kind::Q5K {
                (16, 48)
            } else {
                (16, 16)
            };
            for g in 0..4 {
                for (s, shift) in [(2 * g, 0), (2 * g + 1, 4)] {
                    let (scale, min) = scale_min_k4(s, &sc);
                    o.scale[2 * s] = d * f32::from(scale);
                    o.scale[2 * s + 1] = d * f32::from(scale);
                    o.min[s] = dmin * f32::from(min);
                    (o.sc[2 * s], o.sc[2 * s + 1]) = (i32::from(scale), i32::from(scale));
                    o.m[s] = i32::from(min);
                    for l in 0..BLOCK {
                        let mut v = (byte(qs + 32 * g + l) >> shift) & 0xF;
                        if kind == Kind::Q5K {
                            v |= ((byte(qh + l) >> s) & 1) << 4;
                        }
                        o.q[BLOCK * s + l] = v as i8;
                    }
                }
            }
        }
        Kind::Q6K => {
            let d = f16_at(sb, 208);
            o.d = d;
            for (i, s) in o.scale.iter_mut().enumerate() {
                *s = d * f32::from(byte(192 + i) as i8);
                o.sc[i] = i32::from(byte(192 + i) as i8);
            }
            for h in 0..2 {
                for k in 0..4 {
                    for l in 0..BLOCK {
                        let lo = byte(64 * h + 32 * (k % 2) + l) >> (4 * (k / 2)) & 0xF;
                        let hi = (byte(128 + 32 * h + l) >> (2 * k)) & 3;
                        o.q[128 * h + 32 * k + l] = (lo | hi << 4) as i8 - 32;
                    }
                }
            }
        }
        _ => {}
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The word-wise decoding of the K-quant scales gives ggml's, byte by byte, for every
    /// value of each scale byte's bits.
    #[test]
    fn k4_scales_and_minimums_decode_as_ggml_s() {
        let mut seed = 1u64;
        for _ in 0..2000 {
            let mut sb = [0u8; 16];
            for b in &mut sb {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                *b = (seed >> 56) as u8;
            }
            let (s, m) = k4_scales_mins(&sb);
            let sc = k4_scales(&sb);
            for j in 0..8 {
                let (a, b) = scale_min_k4(j, &sc);
                assert_eq!(
                    ((s >> (8 * j)) as u8, (m >> (8 * j)) as u8),
                    (a, b),
                    "{sb:?} {j}"
                );
            }
        }
    }
}
