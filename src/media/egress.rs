//! The pieces of wishd's own egress path for forwarded RTP: the packet a viewer
//! gets, built and protected here instead of in str0m's per-viewer send path (see
//! BENCHMARKS.md, "Next"). str0m keeps ICE, DTLS and the RTCP it reads.
//!
//! So far: the RTP header as a viewer's session negotiated it (payload type, its
//! sequence and timestamp space, the SSRC str0m announced, the mid extension), and
//! one protected datagram from it, proven against a str0m peer in the tests. The
//! worker does not use this path yet.

use super::srtp::{Srtp, SrtpError};

/// The one-byte header extension profile (RFC 8285 §4.2).
const ONE_BYTE_PROFILE: [u8; 2] = [0xbe, 0xde];

/// The fields of one outgoing RTP packet's header.
#[derive(Debug, Clone, Copy)]
pub struct Header<'a> {
    pub marker: bool,
    pub pt: u8,
    /// The extended sequence number in the viewer's space: its low 16 bits go on the
    /// wire, the rest is SRTP's rollover counter.
    pub seq: u64,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The negotiated mid extension id (1–14) and the mid, when the session has one.
    pub mid: Option<(u8, &'a str)>,
}

impl Header<'_> {
    /// Appends the header to `out` and returns its length. A mid that does not fit a
    /// one-byte extension element (1–16 bytes, id 1–14) is left out.
    pub fn write(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        let mid = self
            .mid
            .filter(|(id, m)| (1..=14).contains(id) && (1..=16).contains(&m.len()));
        let x = if mid.is_some() { 0x10 } else { 0 };
        out.push(0x80 | x);
        out.push(((self.marker as u8) << 7) | (self.pt & 0x7f));
        out.extend_from_slice(&(self.seq as u16).to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        if let Some((id, m)) = mid {
            let words = (1 + m.len()).div_ceil(4);
            out.extend_from_slice(&ONE_BYTE_PROFILE);
            out.extend_from_slice(&(words as u16).to_be_bytes());
            out.push((id << 4) | (m.len() as u8 - 1));
            out.extend_from_slice(m.as_bytes());
            out.resize(start + 16 + words * 4, 0);
        }
        out.len() - start
    }

    /// The SRTP rollover counter of this packet.
    pub fn roc(&self) -> u32 {
        (self.seq >> 16) as u32
    }
}

/// Appends one protected RTP datagram (`header` and `payload`) to `out`; `scratch`
/// holds the plain header in between (kept by the caller so nothing is allocated per
/// packet).
pub fn protect(
    srtp: &mut Srtp,
    header: &Header<'_>,
    payload: &[u8],
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), SrtpError> {
    scratch.clear();
    header.write(scratch);
    srtp.protect_rtp(scratch, payload, header.roc(), out)
}

#[cfg(test)]
mod tests;
