//! The pieces of wishd's own egress path for forwarded RTP: the packet a viewer
//! gets, built and protected here instead of in str0m's per-viewer send path (see
//! BENCHMARKS.md). str0m keeps ICE and DTLS.
//!
//! So far, each proven against a str0m peer in the tests:
//! - the RTP header as a viewer's session negotiated it (payload type, its sequence
//!   and timestamp space, the SSRC str0m announced, the mid extension), and one
//!   protected datagram from it;
//! - the sender report the path owes for each SSRC it sends (RFC 3550 §6.4.1, with
//!   the SDES CNAME a compound packet carries);
//! - reading a viewer's RTCP: its NACKs (RFC 4585 §6.2.1), its keyframe requests
//!   (PLI, FIR) and the report blocks of its receiver reports, with the round trip
//!   they give.
//!
//! `media::direct` puts them together for one viewer session; the worker sends what
//! it returns.

use str0m::media::KeyframeRequestKind;

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

/// Seconds from 1900 (NTP's era) to 1970 (Unix's).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A wallclock time as a 64-bit NTP timestamp (RFC 3550 §4).
pub fn ntp_time(t: std::time::SystemTime) -> u64 {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// What one sender report states (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    /// When the report is sent, as an NTP timestamp ([`ntp_time`]).
    pub ntp: u64,
    /// The RTP timestamp that corresponds to `ntp` in the stream's clock.
    pub rtp_time: u32,
    pub packets: u32,
    pub octets: u32,
}

impl SenderReport {
    /// Appends the compound packet (SR without report blocks, then SDES with the
    /// CNAME) to `out`. A CNAME longer than 255 bytes is cut.
    pub fn write(&self, cname: &str, out: &mut Vec<u8>) {
        // SR: header, SSRC, NTP (8), RTP time, packets, octets: 7 words, length 6.
        out.extend_from_slice(&[0x80, 200, 0, 6]);
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.ntp.to_be_bytes());
        out.extend_from_slice(&self.rtp_time.to_be_bytes());
        out.extend_from_slice(&self.packets.to_be_bytes());
        out.extend_from_slice(&self.octets.to_be_bytes());
        // SDES, one chunk: SSRC, CNAME item, end of list, padded to a word.
        let cname = &cname.as_bytes()[..cname.len().min(255)];
        let chunk = 4 + 2 + cname.len() + 1;
        let words = chunk.div_ceil(4);
        out.extend_from_slice(&[0x81, 202]);
        out.extend_from_slice(&(words as u16).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.push(1);
        out.push(cname.len() as u8);
        out.extend_from_slice(cname);
        out.resize(start + words * 4, 0);
    }
}

/// The packets of a compound RTCP packet: (packet type, count or format, the bytes
/// after the 4-byte header). A length past the end ends the walk.
pub fn rtcp_packets(mut p: &[u8]) -> impl Iterator<Item = (u8, u8, &[u8])> {
    std::iter::from_fn(move || {
        if p.len() < 4 || p[0] >> 6 != 2 {
            return None;
        }
        let len = (usize::from(u16::from_be_bytes([p[2], p[3]])) + 1) * 4;
        if len > p.len() {
            return None;
        }
        let (one, rest) = p.split_at(len);
        p = rest;
        Some((one[1], one[0] & 0x1f, &one[4..]))
    })
}

/// The big-endian 32-bit word at `at` (the caller has checked the length).
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The (media SSRC, sequence number) pairs a viewer's generic NACKs ask for
/// (RFC 4585 §6.2.1: a packet ID and a bitmask of the 16 after it).
pub fn nacks(plain: &[u8]) -> impl Iterator<Item = (u32, u16)> + '_ {
    rtcp_packets(plain)
        .filter(|(pt, fmt, body)| *pt == 205 && *fmt == 1 && body.len() >= 8)
        .flat_map(|(_, _, body)| {
            let ssrc = be32(body, 4);
            body[8..].chunks_exact(4).flat_map(move |fci| {
                let pid = u16::from_be_bytes([fci[0], fci[1]]);
                let blp = u16::from_be_bytes([fci[2], fci[3]]);
                std::iter::once(pid)
                    .chain(
                        (0..16)
                            .filter(move |i| blp & (1 << i) != 0)
                            .map(move |i| pid.wrapping_add(i + 1)),
                    )
                    .map(move |seq| (ssrc, seq))
            })
        })
}

/// The media SSRCs a viewer asks a keyframe of, with how it asked: a Picture Loss
/// Indication names it in its header (RFC 4585 §6.3.1), a Full Intra Request in each
/// of its entries (RFC 5104 §4.3.1, where the header's media SSRC is 0).
pub fn keyframe_requests(plain: &[u8]) -> impl Iterator<Item = (u32, KeyframeRequestKind)> + '_ {
    rtcp_packets(plain)
        .filter(|(pt, fmt, body)| *pt == 206 && (*fmt == 1 || *fmt == 4) && body.len() >= 8)
        .flat_map(|(_, fmt, body)| {
            let pli = (fmt == 1).then(|| (be32(body, 4), KeyframeRequestKind::Pli));
            let firs = body[8..]
                .chunks_exact(8)
                .filter(move |_| fmt == 4)
                .map(move |fci| (be32(fci, 0), KeyframeRequestKind::Fir));
            pli.into_iter().chain(firs)
        })
}

/// One report block of a viewer's receiver (or sender) report (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    pub jitter: u32,
    /// The middle 32 bits of the NTP time of our last sender report (0: none yet).
    pub last_sr: u32,
    /// The delay since that report, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    /// The round trip this block measures, received at NTP time `now`
    /// (RFC 3550 §6.4.1, A = now, RTT = A - LSR - DLSR), if it refers to a report.
    pub fn round_trip(&self, now: u64) -> Option<std::time::Duration> {
        if self.last_sr == 0 {
            return None;
        }
        let a = (now >> 16) as u32;
        let rtt = a
            .wrapping_sub(self.last_sr)
            .wrapping_sub(self.delay_since_last_sr);
        // More than half the 32-bit range back is a clock jump, not a round trip.
        (rtt < 0x8000_0000)
            .then(|| std::time::Duration::from_nanos((u64::from(rtt) * 1_000_000_000) >> 16))
    }
}

/// The report blocks of every RR and SR in a compound RTCP packet.
pub fn report_blocks(plain: &[u8]) -> impl Iterator<Item = ReportBlock> + '_ {
    rtcp_packets(plain)
        .filter_map(|(pt, count, body)| {
            match pt {
                // RR: reporter SSRC, then the blocks; SR: 24 bytes of sender info first.
                201 => body.get(4..),
                200 => body.get(24..),
                _ => None,
            }
            .map(|blocks| (count, blocks))
        })
        .flat_map(|(count, blocks)| {
            blocks.chunks_exact(24).take(usize::from(count)).map(|b| {
                let word = |i: usize| be32(b, i);
                let lost = word(4) & 0x00ff_ffff;
                // 24-bit two's complement.
                let cumulative_lost = ((lost << 8) as i32) >> 8;
                ReportBlock {
                    ssrc: word(0),
                    fraction_lost: b[4],
                    cumulative_lost,
                    highest_seq: word(8),
                    jitter: word(12),
                    last_sr: word(16),
                    delay_since_last_sr: word(20),
                }
            })
        })
}

#[cfg(test)]
pub(crate) mod tests;
