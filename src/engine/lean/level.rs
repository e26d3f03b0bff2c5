//! The instruction-set level of the lean path's SIMD code ([`Level`]), detected once at run
//! time ([`Level::best`]): AVX-512 with VNNI, AVX2 (the x86-64-v3 baseline), or portable Rust.
//! The kernels and the activation quantisation take a level and lower it to what the CPU runs.

use std::sync::OnceLock;

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
