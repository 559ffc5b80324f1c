//! Entry points for the coverage-guided fuzz targets in `fuzz/` (cargo-fuzz builds with
//! `--cfg fuzzing`; other builds leave this module out). Each takes bytes the network
//! controls and runs them through the code that reads them; the only verdict is that
//! nothing panics, hangs or allocates without bound.

use std::time::{Duration, Instant};

use crate::core::{Bwe, BweConfig, CodecKind, frame_size, is_keyframe_start};
use crate::wire::{demux, h264, rtcp, rtp, stun, twcc};

/// A WHIP offer: parsed, then checked as a publisher's.
pub fn sdp_offer(data: &[u8]) {
    if let Ok(offer) = crate::sdp::parse_offer(data) {
        let _ = crate::sdp::check_publish_offer(&offer);
        let text = String::from_utf8_lossy(data);
        let _ = crate::sdp::take_simulcast(&text, &offer, true);
    }
}

/// A trickle ICE PATCH body.
pub fn sdp_fragment(data: &[u8]) {
    let _ = crate::sdp::frag::parse_fragment(data);
}

/// A decrypted compound RTCP packet from a viewer or a publisher, through every
/// reader the direct egress and the ingest use, transport-wide feedback into an
/// estimator that sent the packets it may name.
pub fn rtcp(data: &[u8]) {
    let _ = demux::is_rtcp(data);
    for _ in rtcp::packets(data) {}
    for _ in rtcp::nacks(data) {}
    for _ in rtcp::keyframe_requests(data) {}
    for _ in rtcp::report_blocks(data) {}
    for _ in rtcp::sender_reports(data) {}
    let t0 = Instant::now();
    let mut bwe = Bwe::new(
        BweConfig {
            initial_bps: 2_000_000,
            min_bps: 50_000,
            max_bps: 30_000_000,
        },
        t0,
    );
    for seq in 0..300u16 {
        bwe.on_sent(seq, 1200, t0 + Duration::from_millis(u64::from(seq)), false);
    }
    let mut packets = Vec::new();
    for body in twcc::feedback_bodies(data) {
        if let Some(fb) = twcc::parse_feedback(body, &mut packets) {
            bwe.on_feedback(&fb, &packets, t0 + Duration::from_millis(400));
        }
    }
    let _ = bwe.estimate();
}

/// A datagram on the media port before any session is known: STUN routing, the
/// reflected address of a Binding answer, the demultiplexer, an RTP header.
pub fn datagram(data: &[u8]) {
    let _ = stun::local_ufrag(data);
    let _ = stun::reflected_address(data, [7; 12]);
    let _ = demux::is_media_path(data);
    let _ = rtp::parse_rtp(data);
}

/// An RTP payload of each video codec: NAL units, keyframe detection, picture size.
pub fn payload(data: &[u8]) {
    for _ in h264::nal_units(data) {}
    for codec in [
        CodecKind::H264,
        CodecKind::Vp8,
        CodecKind::Vp9,
        CodecKind::Av1,
    ] {
        let _ = is_keyframe_start(codec, data);
        let _ = frame_size(codec, data);
    }
}

/// An `Authorization` header value.
pub fn authorization(data: &[u8]) {
    let _ = crate::auth::parse_authorization(data);
}
