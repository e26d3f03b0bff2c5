//! The weight block types the lean path reads ([`Kind`]), [`BLOCK`] weights each.
//!
//! GGUF block layouts read at load time (little-endian, 32 weights per block):
//! - `Q4_0`, 18 bytes: `d: f16`, 16 bytes of nibbles; weight = d * (nibble - 8).
//! - `Q4_1`, 20 bytes: `d: f16`, `m: f16`, 16 bytes of nibbles; weight = d * nibble + m.
//! - `Q8_0`, 34 bytes: `d: f16`, 32 `i8`; weight = d * q.
//!
//! In a GGUF block, byte j holds weight j in its low half and weight j + 16 in its high half.
//! The `pack` module rewrites the blocks into the kernels' layout at load time.

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
