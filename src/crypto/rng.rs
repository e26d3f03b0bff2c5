//! The OS random generator (getrandom), the only source of keys, salts and seeds.

use super::Error;

/// Fills `buf` from the operating system's CSPRNG.
pub fn fill(buf: &mut [u8]) -> Result<(), Error> {
    getrandom::fill(buf).map_err(|_| Error::Rng)
}

/// Returns `N` random bytes (for public values such as salts and ids).
pub fn array<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}
