//! RTP headers (RFC 3550 §5.1): parsing an untrusted one (str0m does not expose its
//! parser) and writing the one a viewer's forwarded packet gets.

/// Why a datagram is not a usable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RtpError {
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
pub(crate) struct RtpHeader {
    /// Marker bit.
    pub(crate) marker: bool,
    /// Payload type (0..=127).
    pub(crate) pt: u8,
    /// 16-bit sequence number.
    pub(crate) seq: u16,
    /// RTP timestamp.
    pub(crate) timestamp: u32,
    /// Synchronization source.
    pub(crate) ssrc: u32,
    /// Payload start offset in the datagram.
    pub(crate) payload_start: usize,
    /// Payload end offset (padding excluded).
    pub(crate) payload_end: usize,
}

/// Parses an RTP header (RFC 3550 §5.1): CSRCs, a header extension and padding are
/// skipped.
pub(crate) fn parse_rtp(data: &[u8]) -> Result<RtpHeader, RtpError> {
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

/// The one-byte header extension profile (RFC 8285 §4.2).
const ONE_BYTE_PROFILE: [u8; 2] = [0xbe, 0xde];

/// The fields of one outgoing RTP packet's header.
#[derive(Debug, Clone, Copy)]
pub struct OutHeader<'a> {
    pub marker: bool,
    pub pt: u8,
    /// The extended sequence number in the viewer's space: its low 16 bits go on the
    /// wire, the rest is SRTP's rollover counter.
    pub seq: u64,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The negotiated mid extension id (1–14) and the mid, when the session has one.
    pub mid: Option<(u8, &'a str)>,
    /// The negotiated transport-wide sequence number extension id (1–14) and the
    /// packet's number, when the viewer's bandwidth is estimated.
    pub transport_seq: Option<(u8, u16)>,
}

impl OutHeader<'_> {
    /// Appends the header to `out` and returns its length. An element that does not
    /// fit the one-byte extension form (RFC 8285 §4.2: id 1–14, 1–16 bytes) is left
    /// out.
    pub(crate) fn write(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        let mid = self
            .mid
            .filter(|(id, m)| (1..=14).contains(id) && (1..=16).contains(&m.len()));
        let seq = self.transport_seq.filter(|(id, _)| (1..=14).contains(id));
        let ext_len = mid.map_or(0, |(_, m)| 1 + m.len()) + seq.map_or(0, |_| 3);
        let x = if ext_len > 0 { 0x10 } else { 0 };
        out.push(0x80 | x);
        out.push(((self.marker as u8) << 7) | (self.pt & 0x7f));
        out.extend_from_slice(&(self.seq as u16).to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        if ext_len > 0 {
            let words = ext_len.div_ceil(4);
            out.extend_from_slice(&ONE_BYTE_PROFILE);
            out.extend_from_slice(&(words as u16).to_be_bytes());
            if let Some((id, m)) = mid {
                out.push((id << 4) | (m.len() as u8 - 1));
                out.extend_from_slice(m.as_bytes());
            }
            if let Some((id, n)) = seq {
                out.push((id << 4) | 1);
                out.extend_from_slice(&n.to_be_bytes());
            }
            out.resize(start + 16 + words * 4, 0);
        }
        out.len() - start
    }

    /// The SRTP rollover counter of this packet.
    pub(crate) fn roc(&self) -> u32 {
        (self.seq >> 16) as u32
    }
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
        assert!(!super::super::demux::is_rtcp(&d));
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
    fn the_transport_wide_number_goes_beside_the_mid_in_one_extension_block() {
        let h = OutHeader {
            marker: false,
            pt: 96,
            seq: 7,
            timestamp: 9,
            ssrc: 1,
            mid: Some((4, "1")),
            transport_seq: Some((3, 0x0102)),
        };
        let mut out = Vec::new();
        let len = h.write(&mut out);
        // 12 + 4 (profile, length 2 words) + [0x40 '1'] + [0x31 1 2] + 1 byte padding.
        assert_eq!(len, 24);
        assert_eq!(&out[12..16], &[0xbe, 0xde, 0, 2]);
        assert_eq!(&out[16..24], &[0x40, b'1', 0x31, 1, 2, 0, 0, 0]);
        let parsed = parse_rtp(&[&out[..], &[0x65]].concat()).unwrap();
        assert_eq!(parsed.payload_start, 24);
        let alone = OutHeader { mid: None, ..h };
        out.clear();
        assert_eq!(alone.write(&mut out), 20);
        assert_eq!(&out[12..20], &[0xbe, 0xde, 0, 1, 0x31, 1, 2, 0]);
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
        }
    }
}
