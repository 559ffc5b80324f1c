//! What the swarm needs of a datagram without decrypting it: its class (STUN, DTLS,
//! RTP, RTCP, RFC 7983 demultiplexing) and the clear RTP header fields.

/// The class of a datagram on a WebRTC 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// STUN (first byte 0..=3).
    Stun,
    /// DTLS (first byte 20..=63).
    Dtls,
    /// RTP, with its clear header fields.
    Rtp(RtpHead),
    /// RTCP (payload type 192..=223 per RFC 5761).
    Rtcp,
    /// Anything else.
    Other,
}

/// The clear part of an (S)RTP header that loss accounting needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHead {
    /// Payload type.
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// 16-bit sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
}

/// Classifies a datagram. Never panics.
pub fn classify(d: &[u8]) -> Class {
    let Some(&b0) = d.first() else {
        return Class::Other;
    };
    match b0 {
        0..=3 => Class::Stun,
        20..=63 => Class::Dtls,
        128..=191 => {
            if d.len() < 12 {
                return Class::Other;
            }
            let b1 = d[1];
            if (192..=223).contains(&b1) {
                return Class::Rtcp;
            }
            Class::Rtp(RtpHead {
                pt: b1 & 0x7f,
                marker: b1 & 0x80 != 0,
                seq: u16::from_be_bytes([d[2], d[3]]),
                timestamp: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
                ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
            })
        }
        _ => Class::Other,
    }
}

/// Extends 16-bit sequence numbers to 64 bits, choosing the value closest to the
/// highest seen so far (RFC 3550 appendix A.1 style).
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqExtender {
    max: Option<u64>,
}

impl SeqExtender {
    /// The extended value of `seq`; moves the maximum forward when it is newer.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(max) = self.max else {
            // Start at one rollover so that reordered packets before the first one
            // still extend to a value above zero.
            let ext = (1u64 << 16) | u64::from(seq);
            self.max = Some(ext);
            return ext;
        };
        let base = max & !0xffff;
        let mut ext = base | u64::from(seq);
        if ext + 0x8000 < max {
            ext += 1 << 16;
        } else if ext > max + 0x8000 && ext >= 1 << 16 {
            ext -= 1 << 16;
        }
        if ext > max {
            self.max = Some(ext);
        }
        ext
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_first_byte_and_rtcp_types() {
        assert_eq!(classify(&[0, 1, 0, 0]), Class::Stun);
        assert_eq!(classify(&[22, 254, 253]), Class::Dtls);
        let mut rtp = [0u8; 20];
        rtp[0] = 0x80;
        rtp[1] = 0x80 | 96;
        rtp[2..4].copy_from_slice(&513u16.to_be_bytes());
        rtp[4..8].copy_from_slice(&7u32.to_be_bytes());
        rtp[8..12].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        assert_eq!(
            classify(&rtp),
            Class::Rtp(RtpHead {
                pt: 96,
                marker: true,
                seq: 513,
                timestamp: 7,
                ssrc: 0xdead_beef
            })
        );
        rtp[1] = 200; // SR
        assert_eq!(classify(&rtp), Class::Rtcp);
        assert_eq!(classify(&rtp[..5]), Class::Other);
        assert_eq!(classify(&[]), Class::Other);
    }

    #[test]
    fn extends_across_wrap_and_reordering() {
        let mut e = SeqExtender::default();
        let a = e.extend(65_534);
        assert_eq!(e.extend(65_535), a + 1);
        assert_eq!(e.extend(0), a + 2);
        assert_eq!(e.extend(65_535), a + 1, "late packet before the wrap");
        assert_eq!(e.extend(1), a + 3);
        let mut e = SeqExtender::default();
        let b = e.extend(3);
        assert_eq!(
            e.extend(65_530),
            b - 9,
            "reordered across the wrap, backwards"
        );
    }
}
