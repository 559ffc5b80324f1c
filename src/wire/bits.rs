//! Reading a bitstream's header fields most significant bit first, as VP9's
//! uncompressed header and AV1's OBU headers are written. Never reads past the end.

/// A reader over `data`, at bit `at`.
pub(crate) struct Bits<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Bits<'a> {
    /// A reader at the first bit of `data`.
    pub(crate) fn new(data: &'a [u8]) -> Bits<'a> {
        Bits { data, at: 0 }
    }

    /// The next `n` (at most 32) bits, or None past the end.
    pub(crate) fn read(&mut self, n: u32) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..n {
            let byte = self.data.get(self.at / 8)?;
            let bit = (byte >> (7 - self.at % 8)) & 1;
            value = (value << 1) | u32::from(bit);
            self.at += 1;
        }
        Some(value)
    }

    /// The next bit, as a flag.
    pub(crate) fn flag(&mut self) -> Option<bool> {
        Some(self.read(1)? == 1)
    }
}

/// Writes bits most significant first, for tests that build headers.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct BitWriter {
    pub(crate) bytes: Vec<u8>,
    bits: usize,
}

#[cfg(test)]
impl BitWriter {
    /// Appends the low `n` bits of `value`.
    pub(crate) fn put(&mut self, n: u32, value: u32) -> &mut Self {
        for i in (0..n).rev() {
            if self.bits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if (value >> i) & 1 == 1
                && let Some(last) = self.bytes.last_mut()
            {
                *last |= 0x80 >> (self.bits % 8);
            }
            self.bits += 1;
        }
        self
    }

    /// AV1's trailing_bits(): a one, then zeros to the byte's end; the bytes.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        self.put(1, 1);
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_come_most_significant_first_and_stop_at_the_end() {
        let mut b = Bits::new(&[0b1010_0000, 0xff]);
        assert_eq!(b.read(3), Some(0b101));
        assert_eq!(b.flag(), Some(false));
        assert_eq!(b.read(12), Some(0x0ff));
        assert_eq!(b.read(1), None);
        let mut w = BitWriter::default();
        w.put(3, 0b101).put(13, 0x00ff);
        assert_eq!(w.bytes, [0b1010_0000, 0xff]);
    }
}
