//! A check of the GGUF header before candle parses it: candle-core 0.11.1 divides by the
//! declared `general.alignment`, so a file declaring 0 would abort the process (release
//! builds abort on panic). This walks the metadata entries, without copying them, to find
//! that key. A malformed header is left to candle, whose parser reports it as an error.

use super::Error;

/// Bytes of a GGUF file's header, read front to back.
struct Reader<'a> {
    bytes: &'a [u8],
    /// Version 1 files use 32-bit lengths and counts, later ones 64-bit.
    v1: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.bytes.split_at_checked(n)?;
        self.bytes = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    /// A length or a count.
    fn len(&mut self) -> Option<usize> {
        let n = if self.v1 {
            u64::from(self.u32()?)
        } else {
            self.u64()?
        };
        usize::try_from(n).ok()
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }

    /// Skips a value of type `t`; for an integer, returns it (`i128` holds every width).
    fn value(&mut self, t: u32, depth: u32) -> Option<Option<i128>> {
        let fixed = |n: usize, r: &mut Self| r.take(n).map(|_| None);
        match t {
            0 => Some(Some(i128::from(*self.take(1)?.first()?))),
            1 => Some(Some(i128::from(*self.take(1)?.first()? as i8))),
            2 => Some(Some(i128::from(u16::from_le_bytes(
                self.take(2)?.try_into().ok()?,
            )))),
            3 => Some(Some(i128::from(i16::from_le_bytes(
                self.take(2)?.try_into().ok()?,
            )))),
            4 => Some(Some(i128::from(self.u32()?))),
            5 => Some(Some(i128::from(self.u32()? as i32))),
            6 => fixed(4, self),
            7 => fixed(1, self),
            8 => self.string().map(|_| None),
            9 if depth < 4 => {
                let et = self.u32()?;
                let count = self.len()?;
                let size = match et {
                    0 | 1 | 7 => Some(1),
                    2 | 3 => Some(2),
                    4..=6 => Some(4),
                    10..=12 => Some(8),
                    _ => None,
                };
                match size {
                    Some(s) => fixed(count.checked_mul(s)?, self),
                    None => {
                        for _ in 0..count {
                            self.value(et, depth + 1)?;
                        }
                        Some(None)
                    }
                }
            }
            10..=12 => fixed(8, self),
            _ => None,
        }
    }
}

/// Refuses a GGUF file that declares `general.alignment` 0.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), Error> {
    let mut r = Reader { bytes, v1: false };
    let mut walk = || -> Option<bool> {
        if r.take(4)? != b"GGUF" {
            return None;
        }
        r.v1 = r.u32()? == 1;
        let _tensors = r.len()?;
        let kvs = r.len()?;
        for _ in 0..kvs {
            let key = r.string()?;
            let t = r.u32()?;
            let v = r.value(t, 0)?;
            if key == b"general.alignment" && v == Some(0) {
                return Some(true);
            }
        }
        Some(false)
    };
    if walk() == Some(true) {
        return Err(Error::Gguf(
            "general.alignment is 0 (it must be a positive number of bytes)".into(),
        ));
    }
    Ok(())
}
