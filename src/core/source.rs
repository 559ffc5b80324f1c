//! The one pipeline a source's RTP goes through before the fan-out, for a WHIP
//! publisher (whose RTP str0m parsed and numbered) and an RTP camera (whose RTP the
//! ingest parsed and numbered) alike: the payload type the stream's viewers know the
//! codec by, keyframe detection, and the capture instant from the sender's RTCP
//! reports. What is left is the stream's ([`crate::directory::Stream::publish`]: loss
//! accounting, picture size, the keyframe cache, the viewer mask).
//!
//! Sans-IO: arrival instants come in with the packets.

use std::sync::Arc;
use std::time::Instant;

use str0m::media::MediaKind;

use super::SenderClock;
use super::codec::is_keyframe_start;
use super::packet::SourcePacket;
use crate::model::CodecKind;

/// One track of a source, as its packets are described to viewers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SourceTrack {
    /// Audio or video.
    pub(crate) kind: MediaKind,
    /// The codec family, for keyframes and picture sizes.
    pub(crate) codec: CodecKind,
    /// The payload type the stream's viewers know the codec by.
    pub(crate) pt: u8,
    /// The RTP clock rate.
    pub(crate) clock_rate: u32,
}

/// One RTP packet of a source, parsed and numbered by whoever received it.
#[derive(Debug, Clone)]
pub(crate) struct RtpIn {
    /// Its SSRC (sender reports are per SSRC).
    pub(crate) ssrc: u32,
    /// The extended sequence number in the source's numbering.
    pub(crate) seq: u64,
    /// The RTP timestamp.
    pub(crate) timestamp: u32,
    /// The marker bit.
    pub(crate) marker: bool,
    /// The source generation it belongs to.
    pub(crate) epoch: u32,
    /// Its simulcast layer (0 without simulcast).
    pub(crate) layer: u8,
    /// When it arrived.
    pub(crate) arrival: Instant,
    /// The payload.
    pub(crate) payload: Arc<[u8]>,
}

/// A source's pipeline state: its sender's wall clock.
#[derive(Debug, Clone, Default)]
pub(crate) struct Source {
    clock: SenderClock,
}

impl Source {
    /// A sender report: `ssrc`'s RTP time `rtp_time` was the sender's wall clock
    /// `sender_ns` (nanoseconds since the NTP epoch), received at `arrival`.
    pub(crate) fn sender_report(
        &mut self,
        ssrc: u32,
        sender_ns: i128,
        rtp_time: u32,
        arrival: Instant,
    ) {
        self.clock
            .on_sender_report(ssrc, sender_ns, rtp_time, arrival);
    }

    /// The packet as the fan-out takes it.
    pub(crate) fn packet(&mut self, track: &SourceTrack, rtp: RtpIn) -> SourcePacket {
        SourcePacket {
            kind: track.kind,
            codec: track.codec,
            pt: track.pt,
            seq: rtp.seq,
            timestamp: rtp.timestamp,
            marker: rtp.marker,
            keyframe_start: is_keyframe_start(track.codec, &rtp.payload),
            epoch: rtp.epoch,
            layer: rtp.layer,
            arrival: rtp.arrival,
            wallclock: self
                .clock
                .wallclock(rtp.ssrc, rtp.timestamp, track.clock_rate, rtp.arrival),
            payload: rtp.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::wire::ntp::ntp_to_nanos;

    const VIDEO: SourceTrack = SourceTrack {
        kind: MediaKind::Video,
        codec: CodecKind::H264,
        pt: 102,
        clock_rate: 90_000,
    };

    fn rtp(seq: u64, timestamp: u32, payload: &[u8], arrival: Instant) -> RtpIn {
        RtpIn {
            ssrc: 7,
            seq,
            timestamp,
            marker: false,
            epoch: 3,
            layer: 0,
            arrival,
            payload: Arc::from(payload),
        }
    }

    #[test]
    fn a_packet_gets_the_viewers_payload_type_its_epoch_and_its_keyframe_flag() {
        let mut s = Source::default();
        let t0 = Instant::now();
        let idr = s.packet(&VIDEO, rtp(10, 0, &[0x65, 0x88], t0));
        assert_eq!(
            (idr.pt, idr.seq, idr.epoch, idr.codec),
            (102, 10, 3, CodecKind::H264)
        );
        assert!(idr.keyframe_start);
        let p = s.packet(&VIDEO, rtp(11, 3000, &[0x41, 0x9a], t0));
        assert!(!p.keyframe_start);
        // Without a sender report a packet was captured when it arrived.
        assert_eq!(p.wallclock, t0);
    }

    #[test]
    fn a_sender_report_gives_packets_their_capture_instant() {
        let mut s = Source::default();
        let t0 = Instant::now() + Duration::from_secs(10);
        // The report says RTP time 90_000 is the sender's second 100.
        s.sender_report(7, ntp_to_nanos(100 << 32), 90_000, t0);
        // A packet stamped half a second later, arriving a second after the report:
        // captured half a second after the report's own instant.
        let p = s.packet(
            &VIDEO,
            rtp(1, 135_000, &[0x41], t0 + Duration::from_secs(1)),
        );
        let report_instant = s.packet(&VIDEO, rtp(2, 90_000, &[0x41], t0)).wallclock;
        assert_eq!(
            p.wallclock.duration_since(report_instant),
            Duration::from_millis(500)
        );
        assert!(p.wallclock <= t0 + Duration::from_secs(1));
    }
}
