//! RTCP (RFC 3550 §6, RFC 4585, RFC 5104): one walker over a compound packet, and
//! what wishd reads and writes of it: sender reports, report blocks, generic NACKs,
//! and keyframe requests (PLI, FIR).

use str0m::media::KeyframeRequestKind;

/// What one sender report states (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SenderReport {
    pub(crate) ssrc: u32,
    /// When the report is sent, as an NTP timestamp ([`super::ntp::ntp_time`]).
    pub(crate) ntp: u64,
    /// The RTP timestamp that corresponds to `ntp` in the stream's clock.
    pub(crate) rtp_time: u32,
    pub(crate) packets: u32,
    pub(crate) octets: u32,
}

impl SenderReport {
    /// Appends the compound packet (SR without report blocks, then SDES with the
    /// CNAME) to `out`. A CNAME longer than 255 bytes is cut.
    pub(crate) fn write(&self, cname: &str, out: &mut Vec<u8>) {
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
pub(crate) fn packets(mut p: &[u8]) -> impl Iterator<Item = (u8, u8, &[u8])> {
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
pub(crate) fn nacks(plain: &[u8]) -> impl Iterator<Item = (u32, u16)> + '_ {
    packets(plain)
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
pub(crate) fn keyframe_requests(
    plain: &[u8],
) -> impl Iterator<Item = (u32, KeyframeRequestKind)> + '_ {
    packets(plain)
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
pub(crate) struct ReportBlock {
    pub(crate) ssrc: u32,
    pub(crate) fraction_lost: u8,
    pub(crate) cumulative_lost: i32,
    pub(crate) highest_seq: u32,
    pub(crate) jitter: u32,
    /// The middle 32 bits of the NTP time of our last sender report (0: none yet).
    pub(crate) last_sr: u32,
    /// The delay since that report, in 1/65536 s.
    pub(crate) delay_since_last_sr: u32,
}

impl ReportBlock {
    /// The round trip this block measures, received at NTP time `now`
    /// (RFC 3550 §6.4.1, A = now, RTT = A - LSR - DLSR), if it refers to a report.
    pub(crate) fn round_trip(&self, now: u64) -> Option<std::time::Duration> {
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
pub(crate) fn report_blocks(plain: &[u8]) -> impl Iterator<Item = ReportBlock> + '_ {
    packets(plain)
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

/// The sender reports in a (compound) RTCP packet, without their report blocks; a
/// malformed packet ends the walk.
pub(crate) fn sender_reports(data: &[u8]) -> impl Iterator<Item = SenderReport> + '_ {
    packets(data)
        .filter(|(pt, _, _)| *pt == 200)
        .filter_map(|(_, _, body)| {
            let b = body.get(..24)?;
            Some(SenderReport {
                ssrc: be32(b, 0),
                ntp: (u64::from(be32(b, 4)) << 32) | u64::from(be32(b, 8)),
                rtp_time: be32(b, 12),
                packets: be32(b, 16),
                octets: be32(b, 20),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_sender_report_reads_back_from_its_compound_packet() {
        let sr = SenderReport {
            ssrc: 7,
            ntp: 0x0000_0001_8000_0000,
            rtp_time: 4_500,
            packets: 19,
            octets: 19_000,
        };
        let mut d = Vec::new();
        sr.write("cname", &mut d);
        assert!(super::super::demux::is_rtcp(&d));
        assert_eq!(sender_reports(&d).collect::<Vec<_>>(), vec![sr]);
        assert_eq!(sender_reports(&d[..10]).count(), 0);
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x91) as u8).collect();
            let _ = sender_reports(&junk).count();
            let _ = report_blocks(&junk).count();
            let _ = nacks(&junk).count();
            let _ = keyframe_requests(&junk).count();
        }
    }
}
