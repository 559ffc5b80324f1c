//! The synthetic payloads against their own decoder and against the keyframe and
//! picture-size detectors a server uses on them, and the capture clock.

use super::*;

#[test]
fn a_stalled_capture_keeps_rtp_time_on_the_wall_clock() {
    let t0 = std::time::Instant::now();
    let ms = std::time::Duration::from_millis;
    let mut audio = CaptureClock::new(AUDIO_CLOCK_RATE, u32::MAX - 1000);
    assert_eq!(audio.timestamp(t0), u32::MAX - 1000);
    assert_eq!(
        audio.timestamp(t0 + ms(20)),
        (u32::MAX - 1000).wrapping_add(960)
    );
    // The task stalled 130 ms: the next frame is stamped when it was captured,
    // not one step after the last one sent.
    assert_eq!(
        audio.timestamp(t0 + ms(160)),
        (u32::MAX - 1000).wrapping_add(8 * 960)
    );
    let mut video = CaptureClock::new(VIDEO_CLOCK_RATE, 0);
    let period = std::time::Duration::from_secs(1) / 30;
    for k in 0..1000u32 {
        assert_eq!(video.timestamp(t0 + period * k), k * 3000);
    }
}

#[test]
fn frames_captured_at_once_still_get_rising_timestamps() {
    let t0 = std::time::Instant::now();
    let mut video = CaptureClock::new(VIDEO_CLOCK_RATE, 7);
    assert_eq!(video.timestamp(t0), 7);
    assert_eq!(video.timestamp(t0), 8);
    // An instant before the first one (a tick's deadline after a forced frame).
    assert_eq!(video.timestamp(t0 - std::time::Duration::from_millis(5)), 9);
}

fn check_frame(codec: VideoCodec, frame: u64, keyframe: bool, expect_packets: usize) {
    let pkts = video_frame(codec, frame, keyframe);
    assert_eq!(pkts.len(), expect_packets, "{codec:?} key={keyframe}");
    for (i, p) in pkts.iter().enumerate() {
        let m = decode_marker(&p.payload).expect("marker");
        assert_eq!(m.kind, MediaKind::Video);
        assert_eq!(m.frame, frame);
        assert_eq!(m.index as usize, i);
        assert_eq!(m.count as usize, expect_packets);
        assert_eq!(p.marker, i + 1 == expect_packets);
        assert_eq!(m.is_last(), p.marker);
        assert!(p.payload.len() <= VIDEO_PACKET_SIZE + 8);
        assert!(p.payload.len() >= VIDEO_PACKET_SIZE - 8);
        assert!(check_filler(&p.payload), "filler of packet {i}");
    }
    let detected = pkts
        .iter()
        .filter(|p| is_keyframe_payload(codec, &p.payload))
        .count();
    assert_eq!(detected, usize::from(keyframe), "{codec:?} key={keyframe}");
}

#[test]
fn h264_frames() {
    check_frame(VideoCodec::H264, 0, true, 8);
    check_frame(VideoCodec::H264, 1, false, 2);
    check_frame(VideoCodec::H264, 300, true, 8);

    let key = video_frame(VideoCodec::H264, 7, true);
    // STAP-A with SPS and PPS first.
    assert_eq!(key[0].payload[0] & 0x1f, STAP_A);
    assert!(str0m::format::detect_h264_nalu(&key[0].payload, 7));
    assert!(str0m::format::detect_h264_nalu(&key[0].payload, 8));
    assert_eq!(&key[0].payload[3..7], &[0x67, 0x42, 0xe0, 0x1f]);
    // FU-A: S bit on the first fragment, E bit on the last.
    assert_eq!(key[1].payload[0] & 0x1f, FU_A);
    assert_eq!(key[1].payload[1], 0x80 | 5);
    assert_eq!(key[4].payload[1], 5);
    assert_eq!(key[7].payload[1], 0x40 | 5);

    let delta = video_frame(VideoCodec::H264, 8, false);
    assert_eq!(delta[0].payload[1], 0x80 | 1);
    assert_eq!(delta[1].payload[1], 0x40 | 1);

    let single = video_frame_with(VideoCodec::H264, 9, false, 1, 200);
    assert_eq!(single.len(), 1);
    assert_eq!(single[0].payload[0], NAL_NON_IDR);
    assert!(single[0].marker);
    assert_eq!(decode_marker(&single[0].payload).unwrap().frame, 9);
}

#[test]
fn vp8_frames() {
    check_frame(VideoCodec::Vp8, 0, true, 8);
    check_frame(VideoCodec::Vp8, 1, false, 2);
    check_frame(VideoCodec::Vp8, 70_000, true, 8);

    let key = video_frame(VideoCodec::Vp8, 3, true);
    assert_eq!(key[0].payload[0] & 0x10, 0x10, "S bit on first packet");
    assert_eq!(key[1].payload[0] & 0x10, 0, "no S bit later");
    assert_eq!(&key[0].payload[7..10], &[0x9d, 0x01, 0x2a]);
    let delta = video_frame(VideoCodec::Vp8, 4, false);
    assert_eq!(delta[0].payload[4] & 1, 1, "P=1 on delta frames");
}

#[test]
fn vp9_and_av1_frames() {
    for codec in [VideoCodec::Vp9, VideoCodec::Av1] {
        check_frame(codec, 0, true, 8);
        check_frame(codec, 1, false, 2);
        check_frame(codec, 70_000, true, 8);
    }
    let key = video_frame(VideoCodec::Vp9, 3, true);
    assert_eq!(key[0].payload[0] & 0x4c, 0x08, "P=0, B on the first packet");
    assert_eq!(key[7].payload[0] & 0x0c, 0x04, "E on the last packet");
    assert_eq!(
        key[0].payload[3], 0x82,
        "uncompressed header of a key frame"
    );
    let delta = video_frame(VideoCodec::Av1, 4, false);
    assert_eq!(delta[0].payload[0] & 0x08, 0, "no N bit on a delta frame");
}

#[test]
fn a_layer_keyframe_announces_the_layer_picture_size() {
    use crate::core::{CodecKind, frame_size};
    let interval = std::time::Duration::from_secs(2);
    for (w, h) in [
        (320, 180),
        (640, 360),
        (1280, 720),
        (1920, 1080),
        (2, 2),
        (16_382, 16_380),
    ] {
        let shape = LayerShape::for_bitrate(w, h, 500_000, 30, interval);
        let key = layer_frame(VideoCodec::H264, &shape, 3, true);
        assert_eq!(key[0].payload[0] & 0x1f, STAP_A);
        assert_eq!(
            frame_size(CodecKind::H264, &key[0].payload),
            Some((u32::from(w), u32::from(h))),
            "H.264 {w}x{h}"
        );
        assert!(is_keyframe_payload(VideoCodec::H264, &key[1].payload));
        let vp8 = layer_frame(VideoCodec::Vp8, &shape, 3, true);
        assert_eq!(
            frame_size(CodecKind::Vp8, &vp8[0].payload),
            Some((u32::from(w), u32::from(h))),
            "VP8 {w}x{h}"
        );
        for codec in [VideoCodec::H264, VideoCodec::Vp8] {
            let delta = layer_frame(codec, &shape, 4, false);
            assert!(
                delta
                    .iter()
                    .all(|p| !is_keyframe_payload(codec, &p.payload))
            );
            assert!(delta.iter().all(|p| check_filler(&p.payload)));
        }
    }
}

#[test]
fn the_sps_writer_inserts_emulation_prevention_bytes() {
    // 16x16: the exp-Golomb fields of a 1x1 macroblock picture leave zero
    // bytes in a row; none of `00 00 0x` (x <= 3) may remain.
    for (w, h) in [(16, 16), (2, 2), (4096, 2160)] {
        let sps = h264_sps(w, h);
        assert!(
            sps.windows(3)
                .all(|b| !(b[0] == 0 && b[1] == 0 && b[2] <= 3) || b[2] == 3),
            "{w}x{h}: {sps:02x?}"
        );
    }
}

#[test]
fn a_layer_averages_its_bit_rate_over_a_keyframe_interval() {
    let interval = std::time::Duration::from_secs(2);
    for (bps, fps) in [(200_000, 30), (800_000, 30), (2_500_000, 30), (300_000, 15)] {
        let shape = LayerShape::for_bitrate(640, 360, bps, fps, interval);
        let frames = 2 * fps as u64;
        let bytes: usize = (0..frames)
            .flat_map(|f| layer_frame(VideoCodec::H264, &shape, f, f == 0))
            .map(|p| p.payload.len())
            .sum();
        let measured = bytes as f64 * 8.0 / 2.0;
        let err = (measured - f64::from(bps)).abs() / f64::from(bps);
        assert!(err < 0.05, "{bps} bit/s at {fps} fps: {measured:.0}");
        assert!(shape.keyframe_packet_size <= VIDEO_PACKET_SIZE);
        assert!(shape.delta_packet_size <= VIDEO_PACKET_SIZE);
    }
}

#[test]
fn opus_packets() {
    let p = opus_packet(42);
    assert_eq!(p.len(), OPUS_PACKET_SIZE);
    let m = decode_marker(&p).unwrap();
    assert_eq!(
        m,
        PayloadMarker {
            kind: MediaKind::Audio,
            frame: 42,
            index: 0,
            count: 1
        }
    );
    assert!(check_filler(&p));
}

#[test]
fn marker_round_trip() {
    for (kind, frame, index, count) in [
        (MediaKind::Audio, 0, 0, 1),
        (MediaKind::Video, u64::MAX, 65_534, 65_535),
        (MediaKind::Video, 123_456_789, 3, 8),
    ] {
        let m = PayloadMarker {
            kind,
            frame,
            index,
            count,
        };
        let mut buf = vec![0xaa, 0xbb, 0xcc];
        encode_marker(&mut buf, &m);
        assert_eq!(decode_marker(&buf), Some(m));
    }
}

#[test]
fn corrupted_filler_detected() {
    let mut p = video_frame(VideoCodec::Vp8, 5, false).remove(0).payload;
    assert!(check_filler(&p));
    let last = p.len() - 1;
    p[last] ^= 0xff;
    assert!(!check_filler(&p));
    assert!(decode_marker(&p).is_some());
}

#[test]
fn garbage_never_panics() {
    assert_eq!(decode_marker(&[]), None);
    assert!(!check_filler(&[]));
    // Truncated markers at every length.
    let full = opus_packet(9);
    for n in 0..full.len() {
        let d = decode_marker(&full[..n]);
        if n < 1 + MARKER_LEN {
            assert_eq!(d, None, "len {n}");
        } else {
            assert!(d.is_some());
        }
    }
    // Magic followed by invalid fields, and a valid one later.
    let mut bad = b"WSHD\x07".to_vec();
    bad.extend_from_slice(&[0; 12]);
    assert_eq!(decode_marker(&bad), None);
    let mut bad_index = b"WSHD\x01".to_vec();
    bad_index.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 0, 5, 0, 5]);
    assert_eq!(decode_marker(&bad_index), None);
    bad.extend_from_slice(&full[1..]);
    assert_eq!(decode_marker(&bad).map(|m| m.frame), Some(9));
    // Pseudo-random garbage, including magic-rich data.
    let mut x: u32 = 0x1234_5678;
    for len in 0..600 {
        let mut buf = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf.push(if x.is_multiple_of(7) {
                b"WSHD"[(x % 4) as usize]
            } else {
                x as u8
            });
        }
        let _ = decode_marker(&buf);
        let _ = check_filler(&buf);
        let _ = is_keyframe_payload(VideoCodec::H264, &buf);
        let _ = is_keyframe_payload(VideoCodec::Vp8, &buf);
    }
}
