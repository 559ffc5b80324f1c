//! Transport-wide congestion control (draft-holmer-rmcat-transport-wide-cc-extensions-01):
//! the header extension that numbers every packet sent to a viewer across all its
//! streams (§2, written by `OutHeader`), and the RTCP feedback in which the viewer says when each of them
//! arrived (§3.1). The send-side bandwidth estimate (`core::Bwe`) is built on it.
//!
//! A feedback packet (RTPFB, PT 205, FMT 15) holds, after the sender and media SSRCs:
//! the base sequence number, the packet status count, a reference time (signed 24
//! bits, in 64 ms), a feedback packet count, then packet chunks giving one status
//! symbol per packet, then one receive delta (in 250 µs) per received packet: one
//! unsigned byte for a "small" delta, two signed bytes for a "large or negative" one.
//! Chunks are either a run of one symbol (up to 8191 packets) or a vector of 14
//! one-bit or 7 two-bit symbols.

use super::rtcp;

/// RTCP packet type of transport-layer feedback (RFC 4585 §6.1).
const RTPFB: u8 = 205;
/// Feedback message type of transport-wide congestion control feedback.
const FMT_TWCC: u8 = 15;
/// The unit of the reference time: 64 ms.
const REFERENCE_UNIT_US: i64 = 64_000;
/// The unit of a receive delta: 250 µs.
const DELTA_UNIT_US: i64 = 250;
/// Packets one feedback may report. A run-length chunk of "not received" costs two
/// bytes for 8191 packets, so without a bound a 20-byte packet could make the
/// parser push tens of thousands of results; 8192 is seconds of a viewer's packets,
/// far more than one feedback interval holds, and the estimator remembers fewer.
pub(crate) const MAX_PACKETS: u16 = 8192;

/// The fixed fields of one feedback packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TwccFeedback {
    /// Who sent the feedback (the viewer's RTCP SSRC).
    pub(crate) sender_ssrc: u32,
    /// The media SSRC field; transport-wide feedback is about every stream, so
    /// senders put one of theirs or 0 here and it means nothing.
    pub(crate) media_ssrc: u32,
    /// The transport-wide sequence number of the first packet reported.
    pub(crate) base_seq: u16,
    /// How many packets are reported, from `base_seq` on.
    pub(crate) status_count: u16,
    /// The reference time on the receiver's clock, in µs (a multiple of 64 ms). It is
    /// a 24-bit counter that wraps about every 12 days; the estimator unwraps it.
    pub(crate) reference_us: i64,
    /// The feedback's own sequence number (wraps at 256): lost or reordered feedback
    /// shows as a gap.
    pub(crate) feedback_count: u8,
}

/// What one feedback says about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TwccPacket {
    /// The packet's transport-wide sequence number.
    pub(crate) seq: u16,
    /// When it arrived, in µs on the receiver's clock (the feedback's reference time
    /// plus the deltas so far); None when it is reported not received.
    pub(crate) arrival_us: Option<i64>,
}

/// The bodies (after the 4-byte RTCP header) of the transport-wide feedback packets in
/// a compound RTCP packet, for [`parse_feedback`].
pub(crate) fn feedback_bodies(plain: &[u8]) -> impl Iterator<Item = &[u8]> {
    rtcp::packets(plain)
        .filter(|(pt, fmt, _)| *pt == RTPFB && *fmt == FMT_TWCC)
        .map(|(_, _, body)| body)
}

/// Parses one feedback body: its fixed fields, and into `out` (cleared first) one
/// [`TwccPacket`] per reported packet, in sequence order from `base_seq` (wrapping
/// past 65535). None, with `out` empty, for a body that is truncated, reports no
/// packet or more than [`MAX_PACKETS`], or uses the reserved status symbol. Bytes
/// after the last delta (padding) are ignored.
pub(crate) fn parse_feedback(body: &[u8], out: &mut Vec<TwccPacket>) -> Option<TwccFeedback> {
    out.clear();
    let parsed = parse_into(body, out);
    if parsed.is_none() {
        out.clear();
    }
    parsed
}

fn parse_into(body: &[u8], out: &mut Vec<TwccPacket>) -> Option<TwccFeedback> {
    let [
        s0,
        s1,
        s2,
        s3,
        m0,
        m1,
        m2,
        m3,
        b0,
        b1,
        c0,
        c1,
        r0,
        r1,
        r2,
        feedback_count,
        ref rest @ ..,
    ] = *body
    else {
        return None;
    };
    let status_count = u16::from_be_bytes([c0, c1]);
    if status_count == 0 || status_count > MAX_PACKETS {
        return None;
    }
    // 24-bit two's complement.
    let reference = i32::from_be_bytes([r0, r1, r2, 0]) >> 8;
    let fb = TwccFeedback {
        sender_ssrc: u32::from_be_bytes([s0, s1, s2, s3]),
        media_ssrc: u32::from_be_bytes([m0, m1, m2, m3]),
        base_seq: u16::from_be_bytes([b0, b1]),
        status_count,
        reference_us: i64::from(reference) * REFERENCE_UNIT_US,
        feedback_count,
    };
    // The deltas start after the last chunk, so the chunks are walked twice: once
    // to find where they end, once to pair each symbol with its delta.
    let chunk_bytes = walk_chunks(rest, status_count, |_| Some(()))?;
    let mut deltas = rest.get(chunk_bytes..)?;
    let mut at = fb.reference_us;
    let mut seq = fb.base_seq;
    out.reserve(usize::from(status_count));
    walk_chunks(rest, status_count, |symbol| {
        let arrival_us = match symbol {
            SYMBOL_NOT_RECEIVED => None,
            SYMBOL_SMALL_DELTA => {
                let (&d, tail) = deltas.split_first()?;
                deltas = tail;
                at += i64::from(d) * DELTA_UNIT_US;
                Some(at)
            }
            SYMBOL_LARGE_DELTA => {
                let [d0, d1, ref tail @ ..] = *deltas else {
                    return None;
                };
                deltas = tail;
                at += i64::from(i16::from_be_bytes([d0, d1])) * DELTA_UNIT_US;
                Some(at)
            }
            _ => return None,
        };
        out.push(TwccPacket { seq, arrival_us });
        seq = seq.wrapping_add(1);
        Some(())
    })?;
    Some(fb)
}

/// Status symbol: the packet did not arrive (yet).
const SYMBOL_NOT_RECEIVED: u8 = 0;
/// Status symbol: arrived, its delta is one unsigned byte.
const SYMBOL_SMALL_DELTA: u8 = 1;
/// Status symbol: arrived, its delta is two signed bytes.
const SYMBOL_LARGE_DELTA: u8 = 2;
/// Longest run one run-length chunk holds (13 bits).
#[cfg(test)]
const MAX_RUN: usize = 0x1fff;

/// Calls `f` with each of the first `count` status symbols of the packet chunks that
/// `chunks` starts with, and returns how many bytes those chunks take. Symbols of the
/// last chunk past `count` are padding and skipped. None when the chunks run out
/// first or `f` refuses a symbol.
fn walk_chunks(chunks: &[u8], count: u16, mut f: impl FnMut(u8) -> Option<()>) -> Option<usize> {
    let mut left = usize::from(count);
    let mut used = 0;
    while left > 0 {
        let &[a, b] = chunks.get(used..used + 2)? else {
            return None;
        };
        used += 2;
        let chunk = u16::from_be_bytes([a, b]);
        if chunk & 0x8000 == 0 {
            // Run length: T=0, a 2-bit symbol, a 13-bit run.
            let symbol = ((chunk >> 13) & 0b11) as u8;
            let run = usize::from(chunk & 0x1fff).min(left);
            for _ in 0..run {
                f(symbol)?;
            }
            left -= run;
        } else if chunk & 0x4000 == 0 {
            // Status vector, S=0: 14 one-bit symbols (0: not received, 1: small delta).
            let n = left.min(14);
            for i in 0..n {
                f(((chunk >> (13 - i)) & 1) as u8)?;
            }
            left -= n;
        } else {
            // Status vector, S=1: 7 two-bit symbols.
            let n = left.min(7);
            for i in 0..n {
                f(((chunk >> (12 - 2 * i)) & 0b11) as u8)?;
            }
            left -= n;
        }
    }
    Some(used)
}

/// Why [`write_feedback`] could not encode the arrivals it was given.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TwccWriteError {
    /// No packet, or more than [`MAX_PACKETS`].
    BadCount,
    /// Two consecutive arrivals further apart than a signed 16-bit delta of 250 µs
    /// reaches (about ±8 s).
    DeltaTooLarge,
}

/// Appends a feedback packet (RTCP header included) reporting `arrivals[i]` for
/// sequence number `base_seq + i`: what a viewer's receiver sends. The reference time
/// is the first arrival rounded down to 64 ms (wrapped to 24 bits, as a receiver's
/// counter wraps); arrivals are rounded to 250 µs, each relative to the rounded one
/// before it, so rounding never accumulates. Chunks are chosen greedily: a run-length
/// chunk for a run of 14 or more equal symbols, else a one-bit vector when the next
/// 14 symbols allow it, else a two-bit vector.
#[cfg(test)]
pub(crate) fn write_feedback(
    sender_ssrc: u32,
    media_ssrc: u32,
    base_seq: u16,
    feedback_count: u8,
    arrivals: &[Option<i64>],
    out: &mut Vec<u8>,
) -> Result<(), TwccWriteError> {
    let count = u16::try_from(arrivals.len())
        .ok()
        .filter(|&c| c > 0 && c <= MAX_PACKETS)
        .ok_or(TwccWriteError::BadCount)?;
    let reference = arrivals
        .iter()
        .flatten()
        .next()
        .map_or(0, |&a| a.div_euclid(REFERENCE_UNIT_US));
    // Symbols and deltas, in 250 µs ticks relative to the previous arrival.
    let mut symbols = Vec::with_capacity(arrivals.len());
    let mut deltas = Vec::new();
    let mut prev = reference * (REFERENCE_UNIT_US / DELTA_UNIT_US);
    for a in arrivals {
        let Some(a) = a else {
            symbols.push(SYMBOL_NOT_RECEIVED);
            continue;
        };
        let ticks = (a + DELTA_UNIT_US / 2).div_euclid(DELTA_UNIT_US);
        let delta = ticks - prev;
        prev = ticks;
        if let Ok(small) = u8::try_from(delta) {
            symbols.push(SYMBOL_SMALL_DELTA);
            deltas.push(small);
        } else {
            let large = i16::try_from(delta).map_err(|_| TwccWriteError::DeltaTooLarge)?;
            symbols.push(SYMBOL_LARGE_DELTA);
            deltas.extend_from_slice(&large.to_be_bytes());
        }
    }
    let start = out.len();
    out.extend_from_slice(&[0x80 | FMT_TWCC, RTPFB, 0, 0]);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    out.extend_from_slice(&base_seq.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&(reference as u32 & 0x00ff_ffff).to_be_bytes()[1..]);
    out.push(feedback_count);
    let mut i = 0;
    while i < symbols.len() {
        let rest = &symbols[i..];
        let run = rest
            .iter()
            .take(MAX_RUN)
            .take_while(|&&s| s == rest[0])
            .count();
        let chunk = if run >= 14 {
            i += run;
            (u16::from(rest[0]) << 13) | run as u16
        } else if rest.iter().take(14).all(|&s| s <= SYMBOL_SMALL_DELTA) {
            i += 14;
            rest.iter()
                .take(14)
                .enumerate()
                .fold(0x8000, |c, (k, &s)| c | (u16::from(s) << (13 - k)))
        } else {
            i += 7;
            rest.iter()
                .take(7)
                .enumerate()
                .fold(0xc000, |c, (k, &s)| c | (u16::from(s) << (12 - 2 * k)))
        };
        out.extend_from_slice(&chunk.to_be_bytes());
    }
    out.extend_from_slice(&deltas);
    let words = (out.len() - start).div_ceil(4);
    out.resize(start + words * 4, 0);
    let length = (words - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `arrivals` from `base` and parses the result back.
    fn round_trip(base: u16, arrivals: &[Option<i64>]) -> (TwccFeedback, Vec<TwccPacket>, Vec<u8>) {
        let mut bytes = Vec::new();
        write_feedback(0x1111, 0x2222, base, 9, arrivals, &mut bytes).unwrap();
        let bodies: Vec<&[u8]> = feedback_bodies(&bytes).collect();
        assert_eq!(bodies.len(), 1, "one feedback packet in {bytes:02x?}");
        let mut out = Vec::new();
        let fb = parse_feedback(bodies[0], &mut out).expect("parses");
        (fb, out, bytes)
    }

    /// Asserts that the packets read back are `arrivals` from `base`, exactly.
    fn assert_same(base: u16, arrivals: &[Option<i64>]) -> Vec<u8> {
        let (fb, out, bytes) = round_trip(base, arrivals);
        assert_eq!(fb.base_seq, base);
        assert_eq!(usize::from(fb.status_count), arrivals.len());
        assert_eq!(
            (fb.sender_ssrc, fb.media_ssrc, fb.feedback_count),
            (0x1111, 0x2222, 9)
        );
        let want: Vec<TwccPacket> = arrivals
            .iter()
            .enumerate()
            .map(|(i, &arrival_us)| TwccPacket {
                seq: base.wrapping_add(i as u16),
                arrival_us,
            })
            .collect();
        assert_eq!(out, want);
        assert_eq!(bytes.len() % 4, 0, "padded to a word");
        bytes
    }

    /// The chunks of a written packet, as 16-bit words.
    fn chunks(bytes: &[u8], n: usize) -> Vec<u16> {
        bytes[20..20 + 2 * n]
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn a_hand_built_packet_reads_as_the_draft_describes() {
        // Base 65534, 4 packets, reference 1 (64 ms), feedback count 7; one two-bit
        // vector: small, not received, large, small; deltas 4 (1 ms), -8 (-2 ms), 8.
        let bytes = [
            0x8f,
            205,
            0,
            6, // header, 7 words
            0,
            0,
            0,
            1, // sender SSRC
            0,
            0,
            0,
            2, // media SSRC
            0xff,
            0xfe,
            0,
            4, // base, count
            0,
            0,
            1,
            7, // reference, feedback count
            0b1101_0010,
            0b0100_0000, // 11 | 01 00 10 01 00 00 00
            4,
            0xff,
            0xf8,
            8,
            0,
            0, // deltas, padding
        ];
        let bodies: Vec<&[u8]> = feedback_bodies(&bytes).collect();
        let mut out = Vec::new();
        let fb = parse_feedback(bodies[0], &mut out).unwrap();
        assert_eq!(
            fb,
            TwccFeedback {
                sender_ssrc: 1,
                media_ssrc: 2,
                base_seq: 65534,
                status_count: 4,
                reference_us: 64_000,
                feedback_count: 7,
            }
        );
        let got: Vec<(u16, Option<i64>)> = out.iter().map(|p| (p.seq, p.arrival_us)).collect();
        assert_eq!(
            got,
            vec![
                (65534, Some(65_000)),
                (65535, None),
                (0, Some(63_000)),
                (1, Some(65_000))
            ]
        );
    }

    #[test]
    fn the_reference_time_is_signed_24_bits_of_64_ms() {
        let mut bytes = [
            0x8f, 205, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2, 0, 10, 0, 1, 0xff, 0xff, 0xff, 0, 0x20, 1, 0,
            0,
        ];
        let mut out = Vec::new();
        let body = feedback_bodies(&bytes).next().unwrap();
        let fb = parse_feedback(body, &mut out).unwrap();
        // A run of one small delta of 0.
        assert_eq!(fb.reference_us, -64_000);
        assert_eq!(
            out,
            vec![TwccPacket {
                seq: 10,
                arrival_us: Some(-64_000)
            }]
        );
        bytes[16..19].copy_from_slice(&[0x7f, 0xff, 0xff]);
        let body = feedback_bodies(&bytes).next().unwrap();
        let fb = parse_feedback(body, &mut out).unwrap();
        assert_eq!(fb.reference_us, 0x7f_ffff * 64_000);
    }

    #[test]
    fn all_received_round_trips_as_one_run_length_chunk() {
        let arrivals: Vec<Option<i64>> = (0..100).map(|i| Some(10_000_000 + i * 1_000)).collect();
        let bytes = assert_same(1000, &arrivals);
        // T=0, symbol 01, run 100.
        assert_eq!(chunks(&bytes, 1), vec![0x2000 | 100]);
    }

    #[test]
    fn a_run_longer_than_8191_takes_a_second_chunk() {
        let arrivals: Vec<Option<i64>> = (0..8192).map(|i| Some(i * 250)).collect();
        let bytes = assert_same(0, &arrivals);
        // The last packet goes in a one-bit vector.
        assert_eq!(chunks(&bytes, 2), vec![0x2000 | 8191, 0x8000 | (1 << 13)]);
    }

    #[test]
    fn alternating_loss_round_trips_as_one_bit_vectors() {
        let arrivals: Vec<Option<i64>> = (0..30)
            .map(|i| (i % 2 == 0).then_some(5_000_000 + i * 2_500))
            .collect();
        let bytes = assert_same(42, &arrivals);
        let c = chunks(&bytes, 3);
        assert!(c.iter().all(|w| w & 0xc000 == 0x8000), "{c:04x?}");
        assert_eq!(c[0], 0b1010_1010_1010_1010);
    }

    #[test]
    fn large_and_negative_deltas_round_trip_as_two_bit_vectors() {
        // 1 ms, then 300 ms later (> 63.75 ms: large), then 5 ms earlier (negative),
        // a loss, then 2 s later.
        let arrivals = [
            Some(1_000_000),
            Some(1_001_000),
            Some(1_301_000),
            Some(1_296_000),
            None,
            Some(3_296_000),
            Some(3_296_250),
        ];
        let bytes = assert_same(7, &arrivals);
        let c = chunks(&bytes, 1);
        assert_eq!(c[0] & 0xc000, 0xc000, "{c:04x?}");
        // Symbols: 01 01 10 10 00 10 01.
        assert_eq!(c[0] & 0x3fff, 0b01_01_10_10_00_10_01);
    }

    #[test]
    fn lost_packets_round_trip_in_runs_and_vectors() {
        let mut arrivals: Vec<Option<i64>> = vec![Some(640_000)];
        arrivals.extend(std::iter::repeat_n(None, 40));
        arrivals.extend((0..20).map(|i| (i % 3 != 0).then_some(700_000 + i * 750)));
        arrivals.push(Some(900_000));
        let bytes = assert_same(500, &arrivals);
        let c = chunks(&bytes, 2);
        // The first packet sits in a one-bit vector with 13 of the 41 losses that
        // follow; the 28 others are a run of "not received".
        assert_eq!(c[0], 0x8000 | (1 << 13));
        assert_eq!(c[1], 28);
    }

    #[test]
    fn sequence_numbers_wrap_past_65535() {
        let arrivals: Vec<Option<i64>> = (0..20)
            .map(|i| (i != 9).then_some(2_000_000 + i * 500))
            .collect();
        let (_, out, _) = round_trip(65530, &arrivals);
        let seqs: Vec<u16> = out.iter().map(|p| p.seq).collect();
        assert_eq!(seqs[..7], [65530, 65531, 65532, 65533, 65534, 65535, 0]);
        assert_eq!(seqs[19], 13);
        assert_same(65530, &arrivals);
    }

    #[test]
    fn negative_arrival_times_and_a_packet_of_losses_round_trip() {
        assert_same(3, &[Some(-1_000_000), Some(-999_750), None]);
        let (fb, out, _) = round_trip(3, &[None, None]);
        assert_eq!(fb.reference_us, 0);
        assert!(out.iter().all(|p| p.arrival_us.is_none()));
    }

    #[test]
    fn arrivals_off_the_250_us_grid_are_rounded_without_drift() {
        let arrivals: Vec<Option<i64>> = (0..200).map(|i| Some(64_000 + i * 1_100)).collect();
        let (_, out, _) = round_trip(0, &arrivals);
        for (p, a) in out.iter().zip(&arrivals) {
            let (got, want) = (p.arrival_us.unwrap(), a.unwrap());
            assert!((got - want).abs() <= 125, "{got} vs {want}");
        }
    }

    #[test]
    fn the_writer_refuses_what_the_format_cannot_hold() {
        let mut out = Vec::new();
        assert_eq!(
            write_feedback(1, 2, 0, 0, &[], &mut out),
            Err(TwccWriteError::BadCount)
        );
        assert_eq!(
            write_feedback(1, 2, 0, 0, &[Some(0), Some(9_000_000)], &mut out),
            Err(TwccWriteError::DeltaTooLarge)
        );
        let too_many = vec![None; usize::from(MAX_PACKETS) + 1];
        assert_eq!(
            write_feedback(1, 2, 0, 0, &too_many, &mut out),
            Err(TwccWriteError::BadCount)
        );
    }

    #[test]
    fn every_feedback_of_a_compound_packet_is_found_and_others_are_skipped() {
        let mut bytes = Vec::new();
        // A receiver report with no blocks, then two feedbacks.
        bytes.extend_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 9]);
        write_feedback(1, 2, 100, 0, &[Some(64_000)], &mut bytes).unwrap();
        write_feedback(1, 2, 101, 1, &[None, Some(128_000)], &mut bytes).unwrap();
        // A generic NACK (RTPFB FMT 1) is not transport-wide feedback.
        bytes.extend_from_slice(&[0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 5, 0, 0]);
        let mut out = Vec::new();
        let counts: Vec<u8> = feedback_bodies(&bytes)
            .filter_map(|b| parse_feedback(b, &mut out))
            .map(|fb| fb.feedback_count)
            .collect();
        assert_eq!(counts, vec![0, 1]);
    }

    #[test]
    fn truncated_and_inconsistent_feedback_is_refused_and_never_panics() {
        let arrivals: Vec<Option<i64>> = (0..40)
            .map(|i| (i % 5 != 0).then_some(1_000_000 + i * if i % 7 == 0 { 90_000 } else { 800 }))
            .collect();
        let mut bytes = Vec::new();
        write_feedback(1, 2, 65500, 3, &arrivals, &mut bytes).unwrap();
        let body = &bytes[4..];
        let mut out = vec![TwccPacket {
            seq: 1,
            arrival_us: None,
        }];
        assert!(parse_feedback(body, &mut out).is_some());
        // Every cut before the end of the deltas is refused, and leaves `out` empty.
        let deltas_end = {
            let mut n = body.len();
            while body[n - 1] == 0 {
                n -= 1;
            }
            n
        };
        for cut in 0..deltas_end {
            out.push(TwccPacket {
                seq: 1,
                arrival_us: None,
            });
            assert_eq!(parse_feedback(&body[..cut], &mut out), None, "cut at {cut}");
            assert!(out.is_empty());
        }
        // A count beyond what the chunks hold: the deltas are then read as chunks,
        // which may happen to parse, but only ever as that many packets.
        for count in [41u16, 100, 500, MAX_PACKETS] {
            let mut more = body.to_vec();
            more[10..12].copy_from_slice(&count.to_be_bytes());
            if parse_feedback(&more, &mut out).is_some() {
                assert_eq!(out.len(), usize::from(count));
            }
        }
        // No packet, or more than MAX_PACKETS.
        let mut zero = body.to_vec();
        zero[10..12].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(parse_feedback(&zero, &mut out), None);
        let mut huge = body.to_vec();
        huge[10..12].copy_from_slice(&u16::MAX.to_be_bytes());
        huge[16..18].copy_from_slice(&0x1fffu16.to_be_bytes());
        assert_eq!(parse_feedback(&huge, &mut out), None);
        // The reserved symbol 11.
        let mut reserved = vec![0; 16];
        reserved[11] = 1;
        reserved.extend_from_slice(&[0x60, 0x01, 0, 0]);
        assert_eq!(parse_feedback(&reserved, &mut out), None);
        // Garbage.
        for len in 0..96 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 61 + 0x8f) as u8).collect();
            let _ = parse_feedback(&junk, &mut out);
            let _ = feedback_bodies(&junk).count();
        }
    }
}
