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
        CodecKind::Vp8 => str0m::format::detect_vp8_keyframe(payload),
        CodecKind::Vp9 => vp9_keyframe_start(payload),
        CodecKind::Av1 => str0m::format::detect_av1_keyframe(payload),
        CodecKind::Opus | CodecKind::Pcmu | CodecKind::Pcma | CodecKind::Other => false,
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
