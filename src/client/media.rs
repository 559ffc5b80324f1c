//! Recognisable synthetic media: RTP payload generators and a marker decoder.
//!
//! Every payload carries, after its codec header, the 4-byte [`MAGIC`] `b"WSHD"`,
//! then a `u8` kind (0 audio, 1 video), the frame number (`u64` big endian), the
//! packet index within the frame (`u16` BE) and the packet count of the frame
//! (`u16` BE). Filler bytes follow up to the target size; each filler byte is the
//! frame number truncated to `u8`, so [`check_filler`] can spot corruption.
//!
//! The codec headers are real enough for str0m's keyframe detectors and for an SFU
//! that looks at them (`detect_h264_keyframe`, `detect_vp8_keyframe`), but the
//! streams are not decodable video or audio.

use str0m::media::MediaKind;

use super::VideoCodec;

/// The magic that starts every marker.
pub const MAGIC: [u8; 4] = *b"WSHD";

/// Length of an encoded marker: magic, kind, frame, index, count.
pub const MARKER_LEN: usize = 4 + 1 + 8 + 2 + 2;

/// Target size of each full video packet payload, in bytes.
pub const VIDEO_PACKET_SIZE: usize = 1100;

/// Packets per video keyframe (H.264: one STAP-A with SPS/PPS plus seven FU-A).
pub const KEYFRAME_PACKETS: u16 = 8;

/// Packets per video delta frame.
pub const DELTA_PACKETS: u16 = 2;

/// Size of each Opus payload, in bytes.
pub const OPUS_PACKET_SIZE: usize = 80;

/// RTP clock rate of video.
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// RTP clock rate of Opus.
pub const AUDIO_CLOCK_RATE: u32 = 48_000;

/// The RTP clock of one synthetic capture device: a frame's timestamp follows from
/// the instant it was captured, so a stall of the sending task (frames dropped, as a
/// camera drops them) never shifts RTP time against the wall clock. Each sender report
/// then pairs the two the same way, for audio and video alike.
#[derive(Debug, Clone)]
pub struct CaptureClock {
    base: u32,
    rate: u32,
    /// The first frame's capture instant.
    first: Option<std::time::Instant>,
    /// Ticks of the last frame since the first (unwrapped).
    last: Option<u64>,
}

impl CaptureClock {
    /// A clock of `rate` Hz whose first frame gets the timestamp `base`.
    pub fn new(rate: u32, base: u32) -> Self {
        Self {
            base,
            rate,
            first: None,
            last: None,
        }
    }

    /// The RTP timestamp of a frame captured at `at`: the time since the first frame,
    /// rounded to the clock, and at least one tick after the previous frame.
    pub fn timestamp(&mut self, at: std::time::Instant) -> u32 {
        let first = *self.first.get_or_insert(at);
        let nanos = at.saturating_duration_since(first).as_nanos();
        let ticks = (nanos * u128::from(self.rate) + 500_000_000) / 1_000_000_000;
        let ticks = u64::try_from(ticks).unwrap_or(u64::MAX);
        let ticks = match self.last {
            Some(last) if ticks <= last => last + 1,
            _ => ticks,
        };
        self.last = Some(ticks);
        self.base.wrapping_add(ticks as u32)
    }
}

/// Scanning for the magic stops after this many bytes (the longest codec header
/// we produce is far shorter).
const SCAN_LIMIT: usize = 64;

/// The identity of one synthetic RTP payload, as decoded by [`decode_marker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadMarker {
    /// Audio or video.
    pub kind: MediaKind,
    /// Frame number, counted per kind from 0 by the publisher.
    pub frame: u64,
    /// Index of this packet within its frame.
    pub index: u16,
    /// Number of packets in the frame.
    pub count: u16,
}

impl PayloadMarker {
    /// True for the last packet of its frame (the one with the RTP marker bit).
    pub fn is_last(&self) -> bool {
        self.index + 1 == self.count
    }
}

/// One generated RTP payload and whether the RTP marker bit goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedPacket {
    /// The RTP payload (no RTP header).
    pub payload: Vec<u8>,
    /// The RTP marker bit: set on the last packet of a video frame (and on every
    /// Opus packet it stays clear).
    pub marker: bool,
}

fn kind_byte(kind: MediaKind) -> u8 {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

/// Appends an encoded marker to `out`.
pub fn encode_marker(out: &mut Vec<u8>, m: &PayloadMarker) {
    out.extend_from_slice(&MAGIC);
    out.push(kind_byte(m.kind));
    out.extend_from_slice(&m.frame.to_be_bytes());
    out.extend_from_slice(&m.index.to_be_bytes());
    out.extend_from_slice(&m.count.to_be_bytes());
}

/// Finds and decodes the marker of a synthetic payload.
///
/// The magic is searched in the first bytes of the payload (after whatever codec
/// header precedes it). Returns `None` for anything that does not hold a valid
/// marker; never panics.
pub fn decode_marker(payload: &[u8]) -> Option<PayloadMarker> {
    let scan_end = payload.len().min(SCAN_LIMIT + MAGIC.len());
    let head = &payload[..scan_end];
    let mut from = 0;
    while let Some(pos) = head
        .get(from..)?
        .windows(MAGIC.len())
        .position(|w| w == MAGIC)
    {
        let start = from + pos;
        if let Some(m) = parse_marker_at(payload, start) {
            return Some(m);
        }
        from = start + 1;
    }
    None
}

fn parse_marker_at(payload: &[u8], start: usize) -> Option<PayloadMarker> {
    let b = payload.get(start..start.checked_add(MARKER_LEN)?)?;
    let kind = match b[4] {
        0 => MediaKind::Audio,
        1 => MediaKind::Video,
        _ => return None,
    };
    let frame = u64::from_be_bytes(b[5..13].try_into().ok()?);
    let index = u16::from_be_bytes(b[13..15].try_into().ok()?);
    let count = u16::from_be_bytes(b[15..17].try_into().ok()?);
    if count == 0 || index >= count {
        return None;
    }
    Some(PayloadMarker {
        kind,
        frame,
        index,
        count,
    })
}

/// Checks that every byte after the marker is the filler of the marker's frame.
///
/// Returns `false` when the payload has no marker.
pub fn check_filler(payload: &[u8]) -> bool {
    let Some(m) = decode_marker(payload) else {
        return false;
    };
    // The marker was found, so this search succeeds at the same place.
    let Some(pos) = payload.windows(MAGIC.len()).position(|w| w == MAGIC) else {
        return false;
    };
    let fill = m.frame as u8;
    payload
        .get(pos + MARKER_LEN..)
        .is_some_and(|rest| rest.iter().all(|&b| b == fill))
}

/// Appends marker plus filler so that `out` reaches `target` bytes (at least the
/// whole marker is always written).
fn push_marker_and_fill(out: &mut Vec<u8>, m: &PayloadMarker, target: usize) {
    encode_marker(out, m);
    if out.len() < target {
        out.resize(target, m.frame as u8);
    }
}

/// Generates one video frame of `codec` as RTP payloads, with the default shape
/// ([`KEYFRAME_PACKETS`] or [`DELTA_PACKETS`] packets of about
/// [`VIDEO_PACKET_SIZE`] bytes).
pub fn video_frame(codec: VideoCodec, frame: u64, keyframe: bool) -> Vec<GeneratedPacket> {
    let packets = if keyframe {
        KEYFRAME_PACKETS
    } else {
        DELTA_PACKETS
    };
    video_frame_with(codec, frame, keyframe, packets, VIDEO_PACKET_SIZE)
}

/// Generates one video frame with a chosen packet count and packet size.
///
/// `packets` is clamped to at least 1 (at least 2 for an H.264 keyframe, whose
/// first packet is the SPS/PPS STAP-A). The RTP marker bit is set on the last packet.
pub fn video_frame_with(
    codec: VideoCodec,
    frame: u64,
    keyframe: bool,
    packets: u16,
    packet_size: usize,
) -> Vec<GeneratedPacket> {
    match codec {
        VideoCodec::H264 => h264_frame(frame, keyframe, packets, packet_size, SPS),
        VideoCodec::H265 => h265_frame(frame, keyframe, packets, packet_size),
        VideoCodec::Vp8 => vp8_frame(frame, keyframe, packets, packet_size, (640, 480)),
        VideoCodec::Vp9 => vp9_frame(frame, keyframe, packets, packet_size),
        VideoCodec::Av1 => av1_frame(frame, keyframe, packets, packet_size),
    }
}

/// Keyframes of a simulcast layer are this many times the size of its delta frames,
/// as the single encoding's keyframes ([`KEYFRAME_PACKETS`] to [`DELTA_PACKETS`]).
const LAYER_KEYFRAME_RATIO: u32 = KEYFRAME_PACKETS as u32 / DELTA_PACKETS as u32;

/// The smallest payload a layer packet is cut to: room for the longest codec header
/// (an H.264 STAP-A with SPS and PPS) plus the marker.
const MIN_LAYER_PACKET: usize = 96;

/// The synthetic stream of one simulcast layer: the picture its keyframes announce
/// and the packets of its frames, sized so that the layer averages its bit rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerShape {
    pub width: u16,
    pub height: u16,
    pub keyframe_packets: u16,
    pub keyframe_packet_size: usize,
    pub delta_packets: u16,
    pub delta_packet_size: usize,
}

impl LayerShape {
    /// The shape that averages `bitrate_bps` of RTP payload at `fps` with a keyframe
    /// every `keyframe_interval`, in packets of at most [`VIDEO_PACKET_SIZE`] bytes.
    pub fn for_bitrate(
        width: u16,
        height: u16,
        bitrate_bps: u32,
        fps: u32,
        keyframe_interval: std::time::Duration,
    ) -> LayerShape {
        let fps = f64::from(fps.max(1));
        let gop_frames = (keyframe_interval.as_secs_f64() * fps).round().max(1.0);
        let gop_bytes = f64::from(bitrate_bps) / 8.0 * gop_frames / fps;
        let ratio = f64::from(LAYER_KEYFRAME_RATIO);
        let delta_bytes = gop_bytes / (gop_frames - 1.0 + ratio);
        let (delta_packets, delta_packet_size) = split(delta_bytes, 1);
        let (keyframe_packets, keyframe_packet_size) = split(delta_bytes * ratio, 2);
        LayerShape {
            width,
            height,
            keyframe_packets,
            keyframe_packet_size,
            delta_packets,
            delta_packet_size,
        }
    }
}

/// Packets (at least `min`) and their common size for a frame of `bytes`.
fn split(bytes: f64, min: u16) -> (u16, usize) {
    let per_packet = VIDEO_PACKET_SIZE as f64;
    let packets = (bytes / per_packet)
        .ceil()
        .clamp(f64::from(min), f64::from(u16::MAX));
    let size = (bytes / packets).round() as usize;
    (
        packets as u16,
        size.clamp(MIN_LAYER_PACKET, VIDEO_PACKET_SIZE),
    )
}

/// One frame of a simulcast layer: the packets of `shape`, and on a keyframe an H.264
/// SPS or VP8 key frame header that announces the layer's picture size (VP9 and AV1
/// frames carry none, as in [`video_frame_with`]).
pub(crate) fn layer_frame(
    codec: VideoCodec,
    shape: &LayerShape,
    frame: u64,
    keyframe: bool,
) -> Vec<GeneratedPacket> {
    let (packets, size) = if keyframe {
        (shape.keyframe_packets, shape.keyframe_packet_size)
    } else {
        (shape.delta_packets, shape.delta_packet_size)
    };
    let picture = (shape.width, shape.height);
    match codec {
        VideoCodec::H264 => {
            let sps = if keyframe {
                h264_sps(shape.width, shape.height)
            } else {
                Vec::new()
            };
            h264_frame(frame, keyframe, packets, size, &sps)
        }
        VideoCodec::H265 => h265_frame(frame, keyframe, packets, size),
        VideoCodec::Vp8 => vp8_frame(frame, keyframe, packets, size, picture),
        VideoCodec::Vp9 => vp9_frame(frame, keyframe, packets, size),
        VideoCodec::Av1 => av1_frame(frame, keyframe, packets, size),
    }
}

/// H.264 NAL header bytes: F=0, NRI, type.
const NAL_SPS: u8 = 0x67;
const NAL_PPS: u8 = 0x68;
const NAL_SEI: u8 = 0x06;
const NAL_IDR: u8 = 0x65;
const NAL_NON_IDR: u8 = 0x41;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// A plausible constrained-baseline (profile 0x42, constraints 0xe0, level 3.1) SPS.
const SPS: &[u8] = &[
    NAL_SPS, 0x42, 0xe0, 0x1f, 0x8d, 0x68, 0x05, 0x00, 0x5b, 0xa1, 0x00, 0x00, 0x03, 0x00, 0x01,
    0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
];
/// A plausible PPS.
const PPS: &[u8] = &[NAL_PPS, 0xce, 0x3c, 0x80];

/// Writes the bits of an RBSP, most significant first.
struct BitWriter {
    bytes: Vec<u8>,
    /// Bits used of the last byte (0: a new byte starts with the next bit).
    used: u8,
}

impl BitWriter {
    fn bits(&mut self, value: u32, n: u32) {
        for i in (0..n).rev() {
            if self.used == 0 {
                self.bytes.push(0);
            }
            let bit = ((value >> i) & 1) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= bit << (7 - self.used);
            }
            self.used = (self.used + 1) % 8;
        }
    }

    /// Unsigned Exp-Golomb.
    fn ue(&mut self, value: u32) {
        let v = u64::from(value) + 1;
        let len = 64 - v.leading_zeros();
        self.bits(0, len - 1);
        for i in (0..len).rev() {
            self.bits(((v >> i) & 1) as u32, 1);
        }
    }

    /// Stop bit and alignment, then emulation prevention (`00 00 0x` with x <= 3
    /// gets a `03` before the `0x`), as a NAL unit's payload needs.
    fn finish(mut self) -> Vec<u8> {
        self.bits(1, 1);
        let mut out = Vec::with_capacity(self.bytes.len() + 2);
        let mut zeros = 0;
        for b in self.bytes {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        out
    }
}

/// A Constrained Baseline SPS (profile 0x42, constraints 0xe0, level 3.1, like [`SPS`])
/// for a `width`×`height` picture: whole macroblocks, cropped to the size (4:2:0
/// crops in steps of two, so an odd size is rounded up to even). A server reads a
/// layer's picture size from here (ITU-T H.264 §7.3.2.1.1).
pub fn h264_sps(width: u16, height: u16) -> Vec<u8> {
    let w = u32::from(width.max(2)).next_multiple_of(2);
    let h = u32::from(height.max(2)).next_multiple_of(2);
    let (mbs_w, mbs_h) = (w.div_ceil(16), h.div_ceil(16));
    let mut r = BitWriter {
        bytes: vec![0x42, 0xe0, 0x1f],
        used: 0,
    };
    r.ue(0); // seq_parameter_set_id
    r.ue(0); // log2_max_frame_num_minus4
    r.ue(2); // pic_order_cnt_type: no fields follow
    r.ue(1); // max_num_ref_frames
    r.bits(0, 1); // gaps_in_frame_num_value_allowed_flag
    r.ue(mbs_w - 1);
    r.ue(mbs_h - 1);
    r.bits(1, 1); // frame_mbs_only_flag
    r.bits(1, 1); // direct_8x8_inference_flag
    let (crop_right, crop_bottom) = ((mbs_w * 16 - w) / 2, (mbs_h * 16 - h) / 2);
    let cropped = crop_right > 0 || crop_bottom > 0;
    r.bits(u32::from(cropped), 1);
    if cropped {
        r.ue(0);
        r.ue(crop_right);
        r.ue(0);
        r.ue(crop_bottom);
    }
    r.bits(0, 1); // vui_parameters_present_flag
    let mut sps = vec![NAL_SPS];
    sps.extend(r.finish());
    sps
}

/// An H.264 frame; a keyframe starts with `sps` and [`PPS`] in a STAP-A.
fn h264_frame(
    frame: u64,
    keyframe: bool,
    packets: u16,
    size: usize,
    sps: &[u8],
) -> Vec<GeneratedPacket> {
    let mut out = Vec::new();
    if keyframe {
        let count = packets.max(2);
        // Packet 0: STAP-A with SPS, PPS and an SEI NAL that carries the marker.
        let mut p = vec![0x60 | STAP_A];
        for nal in [sps, PPS] {
            p.extend_from_slice(&(nal.len() as u16).to_be_bytes());
            p.extend_from_slice(nal);
        }
        let mut sei = vec![NAL_SEI];
        let m = PayloadMarker {
            kind: MediaKind::Video,
            frame,
            index: 0,
            count,
        };
        let sei_target = size.saturating_sub(p.len() + 2);
        push_marker_and_fill(&mut sei, &m, sei_target);
        p.extend_from_slice(&(sei.len() as u16).to_be_bytes());
        p.extend_from_slice(&sei);
        out.push(p);
        fu_a(&mut out, NAL_IDR, frame, 1, count, size);
    } else {
        let count = packets.max(1);
        if count == 1 {
            let mut p = vec![NAL_NON_IDR];
            let m = PayloadMarker {
                kind: MediaKind::Video,
                frame,
                index: 0,
                count,
            };
            push_marker_and_fill(&mut p, &m, size);
            out.push(p);
        } else {
            fu_a(&mut out, NAL_NON_IDR, frame, 0, count, size);
        }
    }
    with_marker_bit(out)
}

/// Appends FU-A fragments of one NAL (header `nal`) for packet indices `first..count`.
fn fu_a(out: &mut Vec<Vec<u8>>, nal: u8, frame: u64, first: u16, count: u16, size: usize) {
    let indicator = (nal & 0xe0) | FU_A;
    let nal_type = nal & 0x1f;
    for index in first..count {
        let mut fu_header = nal_type;
        if index == first {
            fu_header |= 0x80;
        }
        if index + 1 == count {
            fu_header |= 0x40;
        }
        let mut p = vec![indicator, fu_header];
        let m = PayloadMarker {
            kind: MediaKind::Video,
            frame,
            index,
            count,
        };
        push_marker_and_fill(&mut p, &m, size);
        out.push(p);
    }
}

/// A VP8 frame; a keyframe's header announces `picture` (width, height).
fn vp8_frame(
    frame: u64,
    keyframe: bool,
    packets: u16,
    size: usize,
    picture: (u16, u16),
) -> Vec<GeneratedPacket> {
    let picture_id = (frame & 0x7fff) as u16;
    frame_packets(frame, packets, size, |index, _| {
        let first = index == 0;
        // Payload descriptor (RFC 7741): X=1, S on the first packet, PID=0,
        // then I=1 and a 15-bit picture id.
        let mut p = vec![
            0x80 | if first { 0x10 } else { 0 },
            0x80,
            0x80 | (picture_id >> 8) as u8,
            picture_id as u8,
        ];
        if first {
            // Payload header: 3-byte frame tag. Bit 0 P (0 = keyframe), bits 1-3
            // version 0, bit 4 show_frame, bits 5-23 first partition size.
            let part_size: u32 = 100;
            let tag = (part_size << 5) | 0x10 | u32::from(!keyframe);
            p.extend_from_slice(&tag.to_le_bytes()[..3]);
            if keyframe {
                p.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                // 14-bit sizes, no scaling.
                p.extend_from_slice(&(picture.0 & 0x3fff).to_le_bytes());
                p.extend_from_slice(&(picture.1 & 0x3fff).to_le_bytes());
            }
        }
        p
    })
}

fn vp9_frame(frame: u64, keyframe: bool, packets: u16, size: usize) -> Vec<GeneratedPacket> {
    let picture_id = (frame & 0x7fff) as u16;
    frame_packets(frame, packets, size, |index, count| {
        // Payload descriptor (RFC 9628), non-flexible mode: I=1, P on inter frames,
        // B on the first packet, E on the last, then a 15-bit picture id.
        let mut b0 = 0x80;
        if !keyframe {
            b0 |= 0x40;
        }
        if index == 0 {
            b0 |= 0x08;
        }
        if index + 1 == count {
            b0 |= 0x04;
        }
        let mut p = vec![b0, 0x80 | (picture_id >> 8) as u8, picture_id as u8];
        if index == 0 {
            // Uncompressed header: frame marker 0b10, profile 0, show_existing_frame
            // 0, frame_type (0 = key), show_frame 1.
            p.push(if keyframe { 0x82 } else { 0x86 });
        }
        p
    })
}

/// H.265 (RFC 7798): a frame as fragmentation units (type 49) of one slice segment, an
/// IDR_W_RADL (19) on a keyframe, else a TRAIL_R (1); a one-packet frame as the unit
/// itself. The slice data starts with `first_slice_segment_in_pic_flag` set. No
/// parameter sets: nothing decodes this stream, and wishd needs none to find its
/// keyframes.
fn h265_frame(frame: u64, keyframe: bool, packets: u16, size: usize) -> Vec<GeneratedPacket> {
    let nal_type: u8 = if keyframe { 19 } else { 1 };
    frame_packets(frame, packets, size, |index, count| {
        if count == 1 {
            return vec![nal_type << 1, 0x01, 0x80];
        }
        let mut fu_header = nal_type;
        if index == 0 {
            fu_header |= 0x80;
        }
        if index + 1 == count {
            fu_header |= 0x40;
        }
        let mut p = vec![49 << 1, 0x01, fu_header];
        if index == 0 {
            p.push(0x80);
        }
        p
    })
}

fn av1_frame(frame: u64, keyframe: bool, packets: u16, size: usize) -> Vec<GeneratedPacket> {
    frame_packets(frame, packets, size, |index, count| {
        // Aggregation header (AV1 RTP spec 4.4): Z continues an OBU from the last
        // packet, Y continues into the next, W=1 (one OBU element, no length
        // field), N on the first packet of a coded video sequence (keyframe).
        let mut h = 0x10;
        if index > 0 {
            h |= 0x80;
        }
        if index + 1 < count {
            h |= 0x40;
        }
        if keyframe && index == 0 {
            h |= 0x08;
        }
        let mut p = vec![h];
        if index == 0 {
            // OBU header: type OBU_FRAME (6), no extension, no size field.
            p.push(6 << 3);
        }
        p
    })
}

/// One video frame as `packets` (at least one) payloads of `size` bytes: the codec's
/// header for packet `(index, count)`, then the marker and filler; RTP marker on the
/// last.
fn frame_packets(
    frame: u64,
    packets: u16,
    size: usize,
    header: impl Fn(u16, u16) -> Vec<u8>,
) -> Vec<GeneratedPacket> {
    let count = packets.max(1);
    let out = (0..count)
        .map(|index| {
            let mut p = header(index, count);
            let m = PayloadMarker {
                kind: MediaKind::Video,
                frame,
                index,
                count,
            };
            push_marker_and_fill(&mut p, &m, size);
            p
        })
        .collect();
    with_marker_bit(out)
}

fn with_marker_bit(payloads: Vec<Vec<u8>>) -> Vec<GeneratedPacket> {
    let n = payloads.len();
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| GeneratedPacket {
            payload,
            marker: i + 1 == n,
        })
        .collect()
}

/// Generates one 20 ms Opus payload (TOC byte, then the marker and filler,
/// [`OPUS_PACKET_SIZE`] bytes in all).
pub fn opus_packet(frame: u64) -> Vec<u8> {
    // TOC: config 15 (hybrid fullband, 20 ms), mono, one frame (code 0).
    let mut p = vec![15 << 3];
    let m = PayloadMarker {
        kind: MediaKind::Audio,
        frame,
        index: 0,
        count: 1,
    };
    push_marker_and_fill(&mut p, &m, OPUS_PACKET_SIZE);
    p
}

/// Whether str0m's keyframe detector for `codec` flags this payload.
///
/// For H.264 only the packet starting the IDR NAL (the first FU-A) is flagged; for
/// VP8 only the first packet of a keyframe.
pub fn is_keyframe_payload(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::H264 => str0m::format::detect_h264_keyframe(payload),
        VideoCodec::Vp8 => str0m::format::detect_vp8_keyframe(payload),
        VideoCodec::H265 => crate::core::is_keyframe_start(crate::core::CodecKind::H265, payload),
        VideoCodec::Vp9 => crate::core::is_keyframe_start(crate::core::CodecKind::Vp9, payload),
        VideoCodec::Av1 => str0m::format::detect_av1_keyframe(payload),
    }
}

#[cfg(test)]
mod tests;
