//! The synthetic media: an H.264-like packet train and Opus-sized audio packets, each
//! payload carrying a marker with the publisher's sequence number and send time.
//!
//! Marker layout (after the codec header; found by scanning the first 64 bytes):
//! `b"WLD1"`, kind (`u8`, 0 audio / 1 video), flags (`u8`, bit 0: first packet of a
//! keyframe, bits 1-2: the simulcast layer, 0 without simulcast), extended RTP
//! sequence number (`u64` BE, the layer's own), send time (`u64` BE, ns since the Unix
//! epoch, see [`crate::clock`]). Filler bytes follow up to the packet size.
//!
//! The H.264 headers are real enough for keyframe detection in any SFU: a keyframe
//! starts with a STAP-A holding SPS, PPS and the first IDR slice (`first_mb_in_slice
//! = 0`, carrying the marker), then FU-A fragments of a second IDR slice; delta
//! frames are FU-A fragments of a non-IDR slice. Nothing here decodes as video.

/// Marker magic.
pub const MAGIC: [u8; 4] = *b"WLD1";
/// Marker length in bytes.
pub const MARKER_LEN: usize = 4 + 1 + 1 + 8 + 8;
const SCAN: usize = 64;

const NAL_SPS: u8 = 0x67;
const NAL_PPS: u8 = 0x68;
const NAL_IDR: u8 = 0x65;
const NAL_NON_IDR: u8 = 0x41;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;
/// First byte of a slice header: `first_mb_in_slice` = 0 (ue(v) "1"), then slice type.
const SLICE_HEADER: u8 = 0x88;
/// `first_mb_in_slice` = 1 (ue(v) "010").
const SLICE_HEADER_NOT_FIRST: u8 = 0x48;

const SPS: &[u8] = &[
    NAL_SPS, 0x42, 0xe0, 0x1f, 0x8d, 0x68, 0x05, 0x00, 0x5b, 0xa1, 0x00, 0x00, 0x03, 0x00, 0x01,
    0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
];
const PPS: &[u8] = &[NAL_PPS, 0xce, 0x3c, 0x80];

/// Kind byte of audio.
pub const AUDIO: u8 = 0;
/// Kind byte of video.
pub const VIDEO: u8 = 1;

/// Simulcast layers a marker can name (two flag bits; OBS sends up to four).
pub const MAX_LAYERS: u8 = 4;

/// What a marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// [`AUDIO`] or [`VIDEO`].
    pub kind: u8,
    /// First packet of a keyframe.
    pub keyframe: bool,
    /// The simulcast layer (index in the publisher's layers; 0 without simulcast).
    pub layer: u8,
    /// The publisher's extended RTP sequence number (of the layer).
    pub seq: u64,
    /// When the publisher made the packet (ns, [`crate::clock`] scale).
    pub sent_ns: u64,
}

fn push_marker(out: &mut Vec<u8>, m: &Marker, size: usize) {
    out.extend_from_slice(&MAGIC);
    out.push(m.kind);
    out.push(u8::from(m.keyframe) | (m.layer % MAX_LAYERS) << 1);
    out.extend_from_slice(&m.seq.to_be_bytes());
    out.extend_from_slice(&m.sent_ns.to_be_bytes());
    if out.len() < size {
        out.resize(size, (m.seq & 0xff) as u8);
    }
}

/// Finds the marker in a payload; `None` when there is none. Never panics.
pub fn decode(payload: &[u8]) -> Option<Marker> {
    let head = payload.get(..payload.len().min(SCAN + MAGIC.len()))?;
    let pos = head.windows(4).position(|w| w == MAGIC)?;
    let b = payload.get(pos..pos + MARKER_LEN)?;
    let kind = b[4];
    if kind > VIDEO {
        return None;
    }
    Some(Marker {
        kind,
        keyframe: b[5] & 1 != 0,
        layer: (b[5] >> 1) % MAX_LAYERS,
        seq: u64::from_be_bytes(b[6..14].try_into().ok()?),
        sent_ns: u64::from_be_bytes(b[14..22].try_into().ok()?),
    })
}

/// The shape of the video packet train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VideoShape {
    /// RTP payload bytes per packet.
    pub packet_size: usize,
    /// Packets of a delta frame.
    pub delta_packets: u32,
    /// Packets of a keyframe (the STAP-A with SPS/PPS included).
    pub keyframe_packets: u32,
    /// Frames per second.
    pub fps: u32,
    /// Frames from one keyframe to the next.
    pub gop_frames: u32,
}

impl VideoShape {
    /// A train of `bitrate` bits/s at `fps` with a keyframe every `gop_secs` that is
    /// `keyframe_ratio` times as big as a delta frame, in packets of `packet_size`.
    pub fn for_bitrate(
        bitrate: u64,
        fps: u32,
        gop_secs: f64,
        keyframe_ratio: u32,
        packet_size: usize,
    ) -> VideoShape {
        let fps = fps.max(1);
        let gop_frames = ((gop_secs * f64::from(fps)).round() as u32).max(1);
        let packets_per_gop = bitrate as f64 * gop_secs / 8.0 / packet_size.max(64) as f64;
        let units = f64::from(gop_frames - 1 + keyframe_ratio.max(1));
        let delta = ((packets_per_gop / units).round() as u32).max(1);
        VideoShape {
            packet_size: packet_size.max(64),
            delta_packets: delta,
            keyframe_packets: (delta * keyframe_ratio.max(1)).max(2),
            fps,
            gop_frames,
        }
    }

    /// Average bits per second of the train (RTP payloads only).
    pub fn bitrate(&self) -> f64 {
        let packets = f64::from(self.keyframe_packets + (self.gop_frames - 1) * self.delta_packets);
        packets * self.packet_size as f64 * 8.0 * f64::from(self.fps) / f64::from(self.gop_frames)
    }

    /// A train of `bitrate` bits/s like [`VideoShape::for_bitrate`]'s, but with packets
    /// of at most `max_packet_size` bytes cut to the frame, so a low bit rate is met
    /// too (a 200 kbit/s delta frame is one packet of some 760 bytes, not a whole
    /// 1200-byte one): for the lower simulcast layers.
    pub fn for_layer(
        bitrate: u64,
        fps: u32,
        gop_secs: f64,
        keyframe_ratio: u32,
        max_packet_size: usize,
    ) -> VideoShape {
        let fps = fps.max(1);
        let gop_frames = ((gop_secs * f64::from(fps)).round() as u32).max(1);
        let ratio = keyframe_ratio.max(1);
        let gop_bytes = bitrate as f64 * f64::from(gop_frames) / f64::from(fps) / 8.0;
        let delta_bytes = gop_bytes / f64::from(gop_frames - 1 + ratio);
        let max = max_packet_size.max(64) as f64;
        let delta = (delta_bytes / max).ceil().max(1.0);
        VideoShape {
            packet_size: ((delta_bytes / delta).round() as usize).clamp(64, max as usize),
            delta_packets: delta as u32,
            keyframe_packets: (delta as u32 * ratio).max(2),
            fps,
            gop_frames,
        }
    }

    /// Average packets per second.
    pub fn packets_per_second(&self) -> f64 {
        let packets = f64::from(self.keyframe_packets + (self.gop_frames - 1) * self.delta_packets);
        packets * f64::from(self.fps) / f64::from(self.gop_frames)
    }
}

/// The payloads of one video frame. `first_seq` is the extended sequence number the
/// first packet will be sent with; packet `i` gets `first_seq + i` in its marker.
pub fn video_frame(
    shape: &VideoShape,
    keyframe: bool,
    first_seq: u64,
    now_ns: u64,
) -> Vec<Vec<u8>> {
    layer_frame(shape, keyframe, first_seq, now_ns, 0, SPS)
}

/// The payloads of one video frame of simulcast layer `layer`, whose keyframes start
/// with `sps` (see `wishd::client::media::h264_sps`: each layer announces its own
/// picture size).
pub fn layer_frame(
    shape: &VideoShape,
    keyframe: bool,
    first_seq: u64,
    now_ns: u64,
    layer: u8,
    sps: &[u8],
) -> Vec<Vec<u8>> {
    let size = shape.packet_size;
    let count = if keyframe {
        shape.keyframe_packets.max(2)
    } else {
        shape.delta_packets.max(1)
    };
    let mut out = Vec::with_capacity(count as usize);
    let marker = |i: u32| Marker {
        kind: VIDEO,
        keyframe: keyframe && i == 0,
        layer,
        seq: first_seq + u64::from(i),
        sent_ns: now_ns,
    };
    let mut first_fu = 0;
    if keyframe {
        let mut p = Vec::with_capacity(size);
        p.push(0x60 | STAP_A);
        for nal in [sps, PPS] {
            p.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            p.extend_from_slice(nal);
        }
        // The first IDR slice (first_mb_in_slice = 0) carries the marker.
        let mut idr = vec![NAL_IDR, SLICE_HEADER];
        push_marker(&mut idr, &marker(0), size.saturating_sub(p.len() + 2));
        p.extend_from_slice(&(idr.len() as u16).to_be_bytes());
        p.extend_from_slice(&idr);
        out.push(p);
        first_fu = 1;
    }
    let nal = if keyframe { NAL_IDR } else { NAL_NON_IDR };
    for i in first_fu..count {
        let mut fu_header = nal & 0x1f;
        if i == first_fu {
            fu_header |= 0x80;
        }
        if i + 1 == count {
            fu_header |= 0x40;
        }
        // A keyframe's FU-A carries its second slice (first_mb_in_slice = 1): only
        // the STAP-A starts the picture.
        let slice = if keyframe {
            SLICE_HEADER_NOT_FIRST
        } else {
            SLICE_HEADER
        };
        let mut p = Vec::with_capacity(size);
        p.extend_from_slice(&[(nal & 0xe0) | FU_A, fu_header, slice]);
        push_marker(&mut p, &marker(i), size);
        out.push(p);
    }
    out
}

/// One 20 ms Opus-like payload of `size` bytes.
pub fn audio_packet(seq: u64, now_ns: u64, size: usize) -> Vec<u8> {
    // TOC: config 15 (hybrid fullband 20 ms), mono, one frame.
    let mut p = Vec::with_capacity(size);
    p.push(15 << 3);
    push_marker(
        &mut p,
        &Marker {
            kind: AUDIO,
            keyframe: false,
            layer: 0,
            seq,
            sent_ns: now_ns,
        },
        size,
    );
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use wishd::core::{CodecKind, is_keyframe_start};

    #[test]
    fn default_shape_is_two_and_a_half_megabits() {
        let s = VideoShape::for_bitrate(2_500_000, 30, 2.0, 6, 1200);
        assert_eq!(
            (s.delta_packets, s.keyframe_packets, s.gop_frames),
            (8, 48, 60)
        );
        assert!(
            (s.bitrate() - 2_500_000.0).abs() < 25_000.0,
            "{}",
            s.bitrate()
        );
        assert!((s.packets_per_second() - 260.0).abs() < 1.0);
    }

    #[test]
    fn keyframes_start_with_sps_pps_and_are_detected() {
        let s = VideoShape::for_bitrate(2_500_000, 30, 2.0, 6, 1200);
        let kf = video_frame(&s, true, 100, 5);
        assert_eq!(kf.len(), 48);
        assert_eq!(kf[0][0] & 0x1f, STAP_A);
        assert_eq!(&kf[0][3..4], &[NAL_SPS]);
        assert!(is_keyframe_start(CodecKind::H264, &kf[0]));
        assert!(str0m::format::detect_h264_keyframe(&kf[0]));
        assert!(kf.iter().all(|p| p.len() == 1200));
        for (i, p) in kf.iter().enumerate() {
            let m = decode(p).expect("marker");
            assert_eq!(m.seq, 100 + i as u64);
            assert_eq!(m.keyframe, i == 0);
            assert_eq!((m.kind, m.sent_ns), (VIDEO, 5));
        }
        let delta = video_frame(&s, false, 148, 6);
        assert_eq!(delta.len(), 8);
        assert!(delta.iter().all(|p| !is_keyframe_start(CodecKind::H264, p)));
        assert!(
            kf[1..]
                .iter()
                .all(|p| !is_keyframe_start(CodecKind::H264, p))
        );
        assert_eq!(delta[0][1] & 0x80, 0x80, "FU-A start bit");
        assert_eq!(delta[7][1] & 0x40, 0x40, "FU-A end bit");
    }

    #[test]
    fn a_layer_frame_names_its_layer_and_announces_its_picture() {
        use wishd::core::frame_size;
        let s = VideoShape::for_layer(200_000, 30, 2.0, 6, 1200);
        let sps = wishd::client::media::h264_sps(320, 180);
        let kf = layer_frame(&s, true, 7, 5, 2, &sps);
        assert_eq!(frame_size(CodecKind::H264, &kf[0]), Some((320, 180)));
        assert!(is_keyframe_start(CodecKind::H264, &kf[0]));
        for (i, p) in kf.iter().enumerate() {
            let m = decode(p).expect("marker");
            assert_eq!((m.layer, m.seq, m.keyframe), (2, 7 + i as u64, i == 0));
        }
        // Without simulcast the flags byte is what it always was.
        let plain = video_frame(
            &VideoShape::for_bitrate(2_500_000, 30, 2.0, 6, 1200),
            true,
            1,
            2,
        );
        let pos = plain[0].windows(4).position(|w| w == MAGIC).unwrap();
        assert_eq!(plain[0][pos + 5], 1, "flags: the keyframe bit alone");
        let m = decode(&plain[0]).unwrap();
        assert_eq!((m.layer, m.keyframe), (0, true));
    }

    #[test]
    fn a_low_layer_meets_its_bit_rate() {
        for bitrate in [200_000, 800_000] {
            let s = VideoShape::for_layer(bitrate, 30, 2.0, 6, 1200);
            let err = (s.bitrate() - bitrate as f64).abs() / bitrate as f64;
            assert!(err < 0.02, "{bitrate}: {s:?} makes {}", s.bitrate());
            assert!(s.packet_size <= 1200);
        }
        // The coarse shape of the top layer would overshoot 200 kbit/s by half.
        let coarse = VideoShape::for_bitrate(200_000, 30, 2.0, 6, 1200);
        assert!(coarse.bitrate() > 300_000.0);
    }

    #[test]
    fn audio_markers_and_garbage() {
        let a = audio_packet(7, 9, 80);
        assert_eq!(a.len(), 80);
        assert_eq!(
            decode(&a),
            Some(Marker {
                kind: AUDIO,
                keyframe: false,
                layer: 0,
                seq: 7,
                sent_ns: 9
            })
        );
        assert_eq!(decode(b"WLD1"), None);
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[0u8; 200]), None);
    }
}
