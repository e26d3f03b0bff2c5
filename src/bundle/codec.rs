//! The one choke point for hostile bytes: a bounded cursor with typed, non-allocating errors,
//! and the canonical TLV walker shared by the manifest and the artifact header.
#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use super::Error;

/// A cursor over untrusted bytes. Every read is bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Takes `n` bytes, or fails naming `what`.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(Error::Truncated(what))?;
        self.buf = tail;
        Ok(head)
    }

    /// Takes exactly `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let s = self.take(N, what)?;
        s.try_into().map_err(|_| Error::Truncated(what))
    }

    /// A big-endian u8.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }
    /// A big-endian u16.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    /// A big-endian u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    /// A big-endian u64.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, Error> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// The remaining bytes.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Whether all bytes were consumed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fails with [`Error::TrailingData`] unless all bytes were consumed.
    pub fn finish(&self, what: &'static str) -> Result<(), Error> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingData(what))
        }
    }
}

/// Iterates over `(tag u16, len u32, value)` records, enforcing canonical order: tags never
/// decrease, and a tag repeats only if `repeatable(tag)`.
pub struct Tlv<'a> {
    r: Reader<'a>,
    last: Option<u16>,
    what: &'static str,
    max_value: u32,
}

impl<'a> Tlv<'a> {
    /// Walks `buf`; every value must be at most `max_value` bytes.
    pub fn new(buf: &'a [u8], what: &'static str, max_value: u32) -> Self {
        Self {
            r: Reader::new(buf),
            last: None,
            what,
            max_value,
        }
    }

    /// The next record, or `None` at the end. `repeatable` says which tags may repeat.
    pub fn next_record(
        &mut self,
        repeatable: impl Fn(u16) -> bool,
    ) -> Result<Option<(u16, &'a [u8])>, Error> {
        if self.r.is_empty() {
            return Ok(None);
        }
        let tag = self.r.u16(self.what)?;
        let len = self.r.u32(self.what)?;
        if len > self.max_value {
            return Err(Error::TooLong {
                what: self.what,
                len: u64::from(len),
                max: u64::from(self.max_value),
            });
        }
        if let Some(last) = self.last
            && (tag < last || (tag == last && !repeatable(tag)))
        {
            return Err(Error::NonCanonical(self.what));
        }
        self.last = Some(tag);
        let value = self.r.take(
            usize::try_from(len).map_err(|_| Error::Truncated(self.what))?,
            self.what,
        )?;
        Ok(Some((tag, value)))
    }
}

/// Appends a TLV record.
pub fn put_tlv(out: &mut Vec<u8>, tag: u16, value: &[u8]) {
    out.extend_from_slice(&tag.to_be_bytes());
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// Parses a big-endian u64 value of exactly 8 bytes.
pub fn be_u64(v: &[u8], what: &'static str) -> Result<u64, Error> {
    let a: [u8; 8] = v.try_into().map_err(|_| Error::InvalidValue(what))?;
    Ok(u64::from_be_bytes(a))
}

/// Parses a big-endian u16 value of exactly 2 bytes.
pub fn be_u16(v: &[u8], what: &'static str) -> Result<u16, Error> {
    let a: [u8; 2] = v.try_into().map_err(|_| Error::InvalidValue(what))?;
    Ok(u16::from_be_bytes(a))
}

/// Sets `slot` once; a second value for the same field is non-canonical.
pub fn set_once<T>(slot: &mut Option<T>, v: T, what: &'static str) -> Result<(), Error> {
    if slot.is_some() {
        return Err(Error::NonCanonical(what));
    }
    *slot = Some(v);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert_eq!(r.u16("b"), Err(Error::Truncated("b")));
        assert_eq!(r.u8("c").unwrap(), 3);
        r.finish("end").unwrap();
    }

    #[test]
    fn tlv_rejects_disorder_duplicates_and_oversize() {
        let mut b = Vec::new();
        put_tlv(&mut b, 2, b"x");
        put_tlv(&mut b, 1, b"y");
        let mut t = Tlv::new(&b, "t", 10);
        assert!(t.next_record(|_| false).unwrap().is_some());
        assert_eq!(t.next_record(|_| false), Err(Error::NonCanonical("t")));

        let mut b = Vec::new();
        put_tlv(&mut b, 3, b"x");
        put_tlv(&mut b, 3, b"y");
        let mut t = Tlv::new(&b, "t", 10);
        t.next_record(|_| false).unwrap();
        assert_eq!(t.next_record(|_| false), Err(Error::NonCanonical("t")));
        let mut t = Tlv::new(&b, "t", 10);
        t.next_record(|tag| tag == 3).unwrap();
        assert!(t.next_record(|tag| tag == 3).unwrap().is_some());

        let mut b = Vec::new();
        put_tlv(&mut b, 1, &[0; 11]);
        assert!(matches!(
            Tlv::new(&b, "t", 10).next_record(|_| false),
            Err(Error::TooLong { .. })
        ));
    }
}
