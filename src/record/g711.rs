//! G.711 (ITU-T G.711) to 16-bit linear PCM, little-endian: MP4 has no sample entry
//! for µ-law or A-law, and every player takes PCM. Each byte is one sample, and the
//! expansion is exact.

/// One µ-law byte as a linear sample.
fn mu_law(byte: u8) -> i16 {
    let u = !byte;
    let magnitude = ((i16::from(u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
    if u & 0x80 != 0 {
        0x84 - magnitude
    } else {
        magnitude - 0x84
    }
}

/// One A-law byte as a linear sample.
fn a_law(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = i16::from(a & 0x0f) << 4;
    match (a & 0x70) >> 4 {
        0 => t += 8,
        1 => t += 0x108,
        segment => t = (t + 0x108) << (segment - 1),
    }
    if a & 0x80 != 0 { t } else { -t }
}

fn expand(payload: &[u8], f: fn(u8) -> i16) -> Vec<u8> {
    payload.iter().flat_map(|&b| f(b).to_le_bytes()).collect()
}

/// A PCMU payload as 16-bit little-endian PCM.
pub(crate) fn mu_law_to_pcm(payload: &[u8]) -> Vec<u8> {
    expand(payload, mu_law)
}

/// A PCMA payload as 16-bit little-endian PCM.
pub(crate) fn a_law_to_pcm(payload: &[u8]) -> Vec<u8> {
    expand(payload, a_law)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_the_extremes_expand_to_the_values_the_standard_gives() {
        // µ-law: 0xff and 0x7f are the two zeros, 0x00 and 0x80 the extremes.
        assert_eq!([mu_law(0xff), mu_law(0x7f)], [0, 0]);
        assert_eq!([mu_law(0x00), mu_law(0x80)], [-32124, 32124]);
        // A-law: 0xd5 and 0x55 are the smallest steps, 0xaa and 0x2a the extremes.
        assert_eq!([a_law(0xd5), a_law(0x55)], [8, -8]);
        assert_eq!([a_law(0xaa), a_law(0x2a)], [32256, -32256]);
        assert_eq!(mu_law_to_pcm(&[0x00, 0xff]), vec![0x84, 0x82, 0, 0]);
    }

    #[test]
    fn every_byte_expands_without_overflow_and_keeps_its_sign_symmetry() {
        for b in 0..=255u8 {
            assert_eq!(mu_law(b), -mu_law(b ^ 0x80), "µ-law {b:#x}");
            assert_eq!(a_law(b), -a_law(b ^ 0x80), "A-law {b:#x}");
        }
    }
}
