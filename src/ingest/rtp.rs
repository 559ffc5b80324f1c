//! RTP and RTCP header parsing on untrusted datagrams (str0m does not expose its
//! parser). Every function reads through `get`/slice patterns and never panics.

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpError {
    /// Shorter than its own header says (or than 12 bytes).
    Truncated,
    /// Not RTP version 2.
    BadVersion,
    /// Padding longer than the payload.
    BadPadding,
    /// No payload at all.
    Empty,
}

/// The fields of an RTP header wishd needs, and where the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (0..=127).
    pub pt: u8,
    /// 16-bit sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Payload start offset in the datagram.
    pub payload_start: usize,
    /// Payload end offset (padding excluded).
    pub payload_end: usize,
}

/// True when a datagram on an RTP port is RTCP (RFC 5761 §4: the second byte, read as
/// marker + payload type, falls in 192..=223, i.e. RTCP packet types 192 to 223).
pub fn is_rtcp(data: &[u8]) -> bool {
    matches!(data.get(1), Some(192..=223)) && data.first().is_some_and(|b| b >> 6 == 2)
}

/// Parses an RTP header (RFC 3550 §5.1): CSRCs, a header extension and padding are
/// skipped.
pub fn parse_rtp(data: &[u8]) -> Result<RtpHeader, RtpError> {
    let [b0, b1, s0, s1, t0, t1, t2, t3, c0, c1, c2, c3, ..] = *data else {
        return Err(RtpError::Truncated);
    };
    if b0 >> 6 != 2 {
        return Err(RtpError::BadVersion);
    }
    let csrc = usize::from(b0 & 0x0f);
    let mut start = 12 + 4 * csrc;
    if b0 & 0x10 != 0 {
        let ext = data.get(start + 2..start + 4).ok_or(RtpError::Truncated)?;
        let words = usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        start += 4 + 4 * words;
    }
    if start > data.len() {
        return Err(RtpError::Truncated);
    }
    let mut end = data.len();
    if b0 & 0x20 != 0 {
        let pad = usize::from(*data.last().ok_or(RtpError::Truncated)?);
        if pad == 0 || pad > end - start {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }
    if end == start {
        return Err(RtpError::Empty);
    }
    Ok(RtpHeader {
        marker: b1 & 0x80 != 0,
        pt: b1 & 0x7f,
        seq: u16::from_be_bytes([s0, s1]),
        timestamp: u32::from_be_bytes([t0, t1, t2, t3]),
        ssrc: u32::from_be_bytes([c0, c1, c2, c3]),
        payload_start: start,
        payload_end: end,
    })
}

/// The timing part of an RTCP sender report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// Sender SSRC.
    pub ssrc: u32,
    /// NTP timestamp (32.32 fixed point seconds since 1900).
    pub ntp: u64,
    /// The RTP timestamp matching `ntp`.
    pub rtp_timestamp: u32,
}

/// The sender reports in a (compound) RTCP datagram; anything malformed ends the walk.
pub fn sender_reports(mut data: &[u8]) -> Vec<SenderReport> {
    let mut out = Vec::new();
    while let [b0, pt, l0, l1, ..] = *data {
        if b0 >> 6 != 2 {
            break;
        }
        let len = 4 * (usize::from(u16::from_be_bytes([l0, l1])) + 1);
        let Some(packet) = data.get(..len) else {
            break;
        };
        if pt == 200
            && let Some(body) = packet.get(4..24)
        {
            let word =
                |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
            out.push(SenderReport {
                ssrc: word(0),
                ntp: (u64::from(word(4)) << 32) | u64::from(word(8)),
                rtp_timestamp: word(12),
            });
        }
        data = data.get(len..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
pub(crate) fn build_rtp(
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    marker: bool,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_plain_header() {
        let d = build_rtp(96, 513, 90_000, 0xdead_beef, true, &[0x65, 1, 2]);
        let h = parse_rtp(&d).unwrap();
        assert_eq!(
            (h.pt, h.seq, h.timestamp, h.ssrc, h.marker),
            (96, 513, 90_000, 0xdead_beef, true)
        );
        assert_eq!(&d[h.payload_start..h.payload_end], &[0x65, 1, 2]);
        assert!(!is_rtcp(&d));
    }

    #[test]
    fn skips_csrcs_extension_and_padding() {
        let mut d = build_rtp(111, 1, 2, 3, false, &[]);
        d[0] = 0x80 | 0x20 | 0x10 | 1; // padding, extension, one CSRC
        d.extend_from_slice(&[0, 0, 0, 9]); // CSRC
        d.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // one extension word
        d.extend_from_slice(&[7, 7, 0, 0, 3]); // payload 7 7, padding 3
        let h = parse_rtp(&d).unwrap();
        assert_eq!(&d[h.payload_start..h.payload_end], &[7, 7]);
    }

    #[test]
    fn garbage_never_panics_and_is_refused() {
        assert_eq!(parse_rtp(&[]), Err(RtpError::Truncated));
        assert_eq!(parse_rtp(&[0x80; 11]), Err(RtpError::Truncated));
        assert_eq!(parse_rtp(&[0x40; 20]), Err(RtpError::BadVersion));
        assert_eq!(
            parse_rtp(&build_rtp(96, 0, 0, 0, false, &[])),
            Err(RtpError::Empty)
        );
        let mut d = build_rtp(96, 0, 0, 0, false, &[1, 200]);
        d[0] |= 0x20;
        assert_eq!(parse_rtp(&d), Err(RtpError::BadPadding));
        let mut d = build_rtp(96, 0, 0, 0, false, &[1]);
        d[0] |= 0x0f;
        assert_eq!(parse_rtp(&d), Err(RtpError::Truncated));
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x91) as u8).collect();
            let _ = parse_rtp(&junk);
            let _ = sender_reports(&junk);
            let _ = is_rtcp(&junk);
        }
    }

    #[test]
    fn reads_sender_reports_from_a_compound_packet() {
        let mut d = vec![0x80, 200, 0, 6];
        d.extend_from_slice(&7u32.to_be_bytes());
        d.extend_from_slice(&0x0000_0001_8000_0000u64.to_be_bytes());
        d.extend_from_slice(&4_500u32.to_be_bytes());
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0, 7]); // SDES
        assert!(is_rtcp(&d));
        assert_eq!(
            sender_reports(&d),
            vec![SenderReport {
                ssrc: 7,
                ntp: 0x0000_0001_8000_0000,
                rtp_timestamp: 4_500
            }]
        );
        assert!(sender_reports(&d[..10]).is_empty());
    }
}
