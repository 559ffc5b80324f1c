//! Keyframe detection on RTP payloads, per codec family ([`CodecKind`]).
//!
//! A viewer that joins a running stream can only start decoding video at a
//! keyframe, so the core must recognise the *first packet* of a keyframe access
//! unit in the raw RTP payload. Every parser here works on untrusted bytes from
//! the network: it only reads through `get`/slice patterns and never panics.

use crate::model::CodecKind;
use crate::wire::h264::{NAL_IDR, NAL_SPS, nal_units};

/// Detects whether an RTP payload starts a decodable keyframe, per codec.
///
/// * H.264: the packet carries an SPS (NAL 7) or the start of an IDR picture
///   (NAL 5 whose slice header has `first_mb_in_slice == 0`), as a single NAL unit,
///   inside a STAP-A, or as an FU-A start fragment (S=1).
/// * H.265: a VPS or SPS (NAL 32, 33), or the first slice segment of an IRAP picture
///   (NAL 16–21 with `first_slice_segment_in_pic_flag` set), as a single NAL unit,
///   inside an aggregation packet (48) or as a fragmentation unit's start (49, S=1)
///   (RFC 7798; no DONL fields, as without `sprop-max-don-diff`).
/// * VP8: str0m's [`detect_vp8_keyframe`](str0m::format::detect_vp8_keyframe)
///   (start of partition 0 of a key frame).
/// * VP9: str0m's [`detect_vp9_keyframe`](str0m::format::detect_vp9_keyframe) (P=0),
///   and additionally the beginning of a frame (B=1) of spatial layer 0 when the
///   layer index is present, so that forwarding starts at the first packet.
/// * AV1: str0m's [`detect_av1_keyframe`](str0m::format::detect_av1_keyframe)
///   (N=1, first packet of a coded video sequence).
/// * Audio and [`CodecKind::Other`]: always false.
///
/// Never panics, whatever the input.
pub fn is_keyframe_start(codec: CodecKind, payload: &[u8]) -> bool {
    match codec {
        CodecKind::H264 => h264_keyframe_start(payload),
        CodecKind::H265 => h265_keyframe_start(payload),
        CodecKind::Vp8 => str0m::format::detect_vp8_keyframe(payload),
        CodecKind::Vp9 => vp9_keyframe_start(payload),
        CodecKind::Av1 => str0m::format::detect_av1_keyframe(payload),
        CodecKind::Opus | CodecKind::Pcmu | CodecKind::Pcma | CodecKind::Other => false,
    }
}

/// An H.265 NAL unit type that starts a keyframe: VPS, SPS, or an IRAP slice segment
/// whose `first_slice_segment_in_pic_flag` (the first bit after the two-byte NAL
/// header, `rest[0]`) is set. A missing byte is taken as a start, as for H.264.
fn h265_unit_starts_keyframe(nal_type: u8, rest: &[u8]) -> bool {
    match nal_type {
        32 | 33 => true,
        16..=21 => rest.first().is_none_or(|b| b & 0x80 != 0),
        _ => false,
    }
}

/// RFC 7798 payloads: a single NAL unit, an aggregation packet (type 48: 16-bit sizes,
/// each followed by a unit) or a fragmentation unit (type 49: a one-byte FU header,
/// S bit and the unit's type, then the unit's payload).
fn h265_keyframe_start(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let nal_type = (b0 >> 1) & 0x3f;
    match nal_type {
        48 => {
            let mut rest = payload.get(2..).unwrap_or(&[]);
            while let [hi, lo, tail @ ..] = rest {
                let size = usize::from(u16::from_be_bytes([*hi, *lo]));
                let Some(unit) = tail.get(..size) else {
                    return false;
                };
                if let Some(&u0) = unit.first()
                    && h265_unit_starts_keyframe((u0 >> 1) & 0x3f, unit.get(2..).unwrap_or(&[]))
                {
                    return true;
                }
                rest = &tail[size..];
            }
            false
        }
        49 => match payload.get(2) {
            Some(&fu) if fu & 0x80 != 0 => {
                h265_unit_starts_keyframe(fu & 0x3f, payload.get(3..).unwrap_or(&[]))
            }
            _ => false,
        },
        0..=47 => h265_unit_starts_keyframe(nal_type, payload.get(2..).unwrap_or(&[])),
        _ => false,
    }
}

/// A slice header starts with `first_mb_in_slice` as ue(v); the value 0 is coded as a
/// single `1` bit. A missing header byte (truncated packet) is accepted as a start,
/// since the NAL type alone already says IDR.
fn h264_slice_is_first(slice_header: &[u8]) -> bool {
    slice_header.first().is_none_or(|b| b & 0x80 != 0)
}

/// An SPS, or the first slice of an IDR picture, in any NAL unit of the payload (an
/// FU-A start's bytes begin at its FU header, so the slice header is one byte later,
/// as in a whole unit).
fn h264_keyframe_start(payload: &[u8]) -> bool {
    nal_units(payload).any(|nal| match nal.kind {
        NAL_SPS => true,
        NAL_IDR => h264_slice_is_first(nal.bytes.get(1..).unwrap_or_default()),
        _ => false,
    })
}

fn vp9_keyframe_start(payload: &[u8]) -> bool {
    if !str0m::format::detect_vp9_keyframe(payload) {
        return false;
    }
    // Descriptor byte 0: I|P|L|F|B|E|V|Z.
    let Some(&b0) = payload.first() else {
        return false;
    };
    let begins_frame = b0 & 0x08 != 0;
    if !begins_frame {
        return false;
    }
    let has_picture_id = b0 & 0x80 != 0;
    let has_layer = b0 & 0x20 != 0;
    if !has_layer {
        return true;
    }
    let mut idx = 1;
    if has_picture_id {
        // M bit selects a 15-bit picture id.
        match payload.get(idx) {
            Some(b) if b & 0x80 != 0 => idx += 2,
            Some(_) => idx += 1,
            None => return false,
        }
    }
    // Layer indices: TID(3)|U|SID(3)|D.
    match payload.get(idx) {
        Some(layer) => (layer >> 1) & 0x07 == 0,
        None => false,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn h265_keyframes_start_at_a_parameter_set_or_an_irap_first_slice_however_packetized() {
        let h = |t: u8| [t << 1, 0x01];
        // Single units: VPS, SPS, an IDR_W_RADL first slice; a later IDR slice, PPS,
        // a trailing picture are not starts.
        assert!(is_keyframe_start(CodecKind::H265, &[h(32)[0], 1, 0x0c]));
        assert!(is_keyframe_start(CodecKind::H265, &[h(33)[0], 1, 0x01]));
        assert!(is_keyframe_start(
            CodecKind::H265,
            &[h(19)[0], 1, 0xaf, 0x00]
        ));
        assert!(!is_keyframe_start(
            CodecKind::H265,
            &[h(19)[0], 1, 0x2f, 0x00]
        ));
        assert!(!is_keyframe_start(CodecKind::H265, &[h(34)[0], 1, 0xc1]));
        assert!(!is_keyframe_start(CodecKind::H265, &[h(1)[0], 1, 0xd0]));
        // An aggregation packet carrying VPS, SPS, PPS; one carrying only PPS + SEI.
        let ap = [
            h(48)[0],
            1,
            0,
            3,
            h(32)[0],
            1,
            0x0c,
            0,
            3,
            h(33)[0],
            1,
            0x01,
            0,
            2,
            h(34)[0],
            1,
        ];
        assert!(is_keyframe_start(CodecKind::H265, &ap));
        let ap = [h(48)[0], 1, 0, 2, h(34)[0], 1, 0, 2, h(39)[0], 1];
        assert!(!is_keyframe_start(CodecKind::H265, &ap));
        // A size running past the packet is no start, and never a panic.
        assert!(!is_keyframe_start(
            CodecKind::H265,
            &[h(48)[0], 1, 0xff, 0xff, 0x40]
        ));
        // Fragmentation units: the start of a CRA slice; its middle; a non-IRAP start.
        assert!(is_keyframe_start(
            CodecKind::H265,
            &[h(49)[0], 1, 0x80 | 21, 0x80]
        ));
        assert!(!is_keyframe_start(
            CodecKind::H265,
            &[h(49)[0], 1, 21, 0x80]
        ));
        assert!(!is_keyframe_start(
            CodecKind::H265,
            &[h(49)[0], 1, 0x80 | 1, 0x80]
        ));
        for bad in [&[][..], &[0x60], &[h(49)[0]], &[h(48)[0], 1, 0]] {
            assert!(!is_keyframe_start(CodecKind::H265, bad));
        }
    }

    use super::*;

    #[test]
    fn h264_single_nal_idr_and_sps_start_keyframe() {
        assert!(is_keyframe_start(CodecKind::H264, &[0x65, 0x88, 0x84]));
        assert!(is_keyframe_start(
            CodecKind::H264,
            &[0x67, 0x42, 0xc0, 0x1f]
        ));
    }

    #[test]
    fn h264_second_idr_slice_is_not_a_start() {
        // first_mb_in_slice != 0: the leading bit of the slice header is 0.
        assert!(!is_keyframe_start(CodecKind::H264, &[0x65, 0x40, 0x00]));
    }

    #[test]
    fn h264_p_slice_is_not_keyframe() {
        assert!(!is_keyframe_start(CodecKind::H264, &[0x41, 0x9a, 0x02]));
        assert!(!is_keyframe_start(CodecKind::H264, &[0x68, 0xce, 0x3c])); // PPS alone
    }

    #[test]
    fn h264_stap_a_with_sps_is_keyframe() {
        let stap = [
            0x78, // STAP-A
            0x00, 0x04, 0x67, 0x42, 0xc0, 0x1f, // SPS
            0x00, 0x03, 0x68, 0xce, 0x3c, // PPS
        ];
        assert!(is_keyframe_start(CodecKind::H264, &stap));
    }

    #[test]
    fn h264_stap_a_without_sps_or_idr_is_not_keyframe() {
        let stap = [0x78, 0x00, 0x03, 0x68, 0xce, 0x3c, 0x00, 0x02, 0x06, 0x05];
        assert!(!is_keyframe_start(CodecKind::H264, &stap));
    }

    #[test]
    fn h264_truncated_stap_a_never_panics() {
        for len in 0..8 {
            let stap = [0x78, 0x00, 0x20, 0x67, 0x42, 0x00, 0x10, 0x65];
            let _ = is_keyframe_start(CodecKind::H264, &stap[..len]);
        }
        // Claims 32 bytes but carries a truncated SPS: still recognised.
        assert!(is_keyframe_start(
            CodecKind::H264,
            &[0x78, 0x00, 0x20, 0x67]
        ));
    }

    #[test]
    fn h264_fu_a_start_of_idr_is_keyframe() {
        // FU indicator (NRI=3, type 28), FU header S=1 type 5, slice header.
        assert!(is_keyframe_start(
            CodecKind::H264,
            &[0x7c, 0x85, 0x88, 0x84]
        ));
    }

    #[test]
    fn h264_fu_a_middle_fragment_is_not_keyframe() {
        assert!(!is_keyframe_start(
            CodecKind::H264,
            &[0x7c, 0x05, 0x88, 0x84]
        ));
        // End fragment.
        assert!(!is_keyframe_start(
            CodecKind::H264,
            &[0x7c, 0x45, 0x12, 0x34]
        ));
    }

    #[test]
    fn h264_fu_a_start_of_p_slice_is_not_keyframe() {
        assert!(!is_keyframe_start(
            CodecKind::H264,
            &[0x5c, 0x81, 0x9a, 0x02]
        ));
    }

    #[test]
    fn vp8_keyframe_vs_interframe() {
        // S=1, PID=0, no extension; VP8 payload header P bit 0 = key frame.
        assert!(is_keyframe_start(CodecKind::Vp8, &[0x10, 0x10, 0x02, 0x00]));
        // P bit 1 = interframe.
        assert!(!is_keyframe_start(
            CodecKind::Vp8,
            &[0x10, 0x11, 0x02, 0x00]
        ));
        // Extended descriptor with a 15-bit picture id, keyframe.
        assert!(is_keyframe_start(
            CodecKind::Vp8,
            &[0x90, 0x80, 0x81, 0x23, 0x50, 0x00]
        ));
        // Continuation packet of a keyframe (S=0) does not start it.
        assert!(!is_keyframe_start(CodecKind::Vp8, &[0x00, 0x10, 0x02]));
    }

    #[test]
    fn vp9_keyframe_start_requires_begin_of_frame_and_base_layer() {
        // P=0, B=1, no optional fields.
        assert!(is_keyframe_start(CodecKind::Vp9, &[0x08, 0x00]));
        // P=1: inter frame.
        assert!(!is_keyframe_start(CodecKind::Vp9, &[0x48, 0x00]));
        // P=0 but not the beginning of the frame.
        assert!(!is_keyframe_start(CodecKind::Vp9, &[0x04, 0x00]));
        // I=1 (15-bit picture id), L=1, B=1, layer byte SID=0.
        assert!(is_keyframe_start(
            CodecKind::Vp9,
            &[0xa8, 0x81, 0x02, 0x00, 0x00]
        ));
        // Same but SID=1: an upper spatial layer does not start the keyframe.
        assert!(!is_keyframe_start(
            CodecKind::Vp9,
            &[0xa8, 0x81, 0x02, 0x02, 0x00]
        ));
        // Truncated before the layer byte.
        assert!(!is_keyframe_start(CodecKind::Vp9, &[0xa8, 0x81]));
    }

    #[test]
    fn av1_new_coded_video_sequence_is_keyframe() {
        assert!(is_keyframe_start(CodecKind::Av1, &[0x18, 0x0a]));
        assert!(!is_keyframe_start(CodecKind::Av1, &[0x10, 0x32]));
    }

    #[test]
    fn audio_is_never_keyframe() {
        for codec in [
            CodecKind::Opus,
            CodecKind::Pcmu,
            CodecKind::Pcma,
            CodecKind::Other,
        ] {
            assert!(!is_keyframe_start(codec, &[0x65, 0x88, 0x84]));
            assert!(!is_keyframe_start(codec, &[0x10, 0x10, 0x02]));
        }
    }

    #[test]
    fn garbage_payloads_never_panic() {
        use rand::{Rng, SeedableRng};
        let codecs = [
            CodecKind::H264,
            CodecKind::Vp8,
            CodecKind::Vp9,
            CodecKind::Av1,
            CodecKind::Opus,
            CodecKind::Other,
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut buf = [0u8; 64];
        for _ in 0..20_000 {
            let len = rng.random_range(0..buf.len());
            rng.fill(&mut buf[..len]);
            for codec in codecs {
                let _ = is_keyframe_start(codec, &buf[..len]);
            }
        }
        // Every 1- and 2-byte payload, the most likely to trip index arithmetic.
        for a in 0..=255u8 {
            for codec in codecs {
                let _ = is_keyframe_start(codec, &[]);
                let _ = is_keyframe_start(codec, &[a]);
                for b in 0..=255u8 {
                    let _ = is_keyframe_start(codec, &[a, b]);
                }
            }
        }
    }
}
