//! Picture size from a keyframe's first RTP payload, for the operator's API.
//!
//! The worker calls [`frame_size`] once per keyframe start (not per packet), so the
//! cost does not matter much; it still allocates nothing. Like every parser in the
//! core it reads untrusted bytes with bounds-checked access and never panics.
//!
//! * H.264: the SPS (RFC 6184 single NAL unit, inside a STAP-A, or the start of an
//!   FU-A) is parsed per ITU-T H.264 §7.3.2.1.1 up to the frame cropping fields.
//! * VP8: the key frame header after the payload descriptor (RFC 7741 §4.2, RFC 6386
//!   §9.1): start code `9d 01 2a`, then 14-bit width and height.
//! * Other codecs: not known (`None`).

use crate::model::CodecKind;
use crate::wire::h264::{NAL_SPS, nal_units};

/// Larger pictures than this are taken as a misparse.
const MAX_DIMENSION: u32 = 16_384;

/// Width and height of the picture a keyframe-start payload describes, when the
/// payload carries that information (an H.264 SPS or a VP8 key frame header).
pub fn frame_size(codec: CodecKind, payload: &[u8]) -> Option<(u32, u32)> {
    let size = match codec {
        CodecKind::H264 => h264_sps_in_payload(payload).and_then(h264_sps_size),
        CodecKind::Vp8 => vp8_size(payload),
        _ => None,
    }?;
    (size.0 > 0 && size.1 > 0 && size.0 <= MAX_DIMENSION && size.1 <= MAX_DIMENSION).then_some(size)
}

/// The SPS NAL unit (header byte included, possibly truncated) in an RTP payload. For
/// the start of an FU-A it begins at the FU header, which the SPS parser skips as it
/// skips a NAL header.
fn h264_sps_in_payload(payload: &[u8]) -> Option<&[u8]> {
    nal_units(payload)
        .find(|n| n.kind == NAL_SPS)
        .map(|n| n.bytes)
}

/// Reads bits of an RBSP, skipping emulation prevention bytes (`00 00 03`).
struct Bits<'a> {
    data: &'a [u8],
    byte: usize,
    bit: u8,
    zeros: u8,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits {
            data,
            byte: 0,
            bit: 0,
            zeros: 0,
        }
    }

    fn bit(&mut self) -> Option<u32> {
        if self.bit == 0 {
            // Entering a new byte: drop an emulation prevention byte.
            let b = *self.data.get(self.byte)?;
            if self.zeros >= 2 && b == 3 {
                self.byte += 1;
                self.zeros = 0;
            }
            let b = *self.data.get(self.byte)?;
            self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
        }
        let b = *self.data.get(self.byte)?;
        let v = (b >> (7 - self.bit)) & 1;
        self.bit += 1;
        if self.bit == 8 {
            self.bit = 0;
            self.byte += 1;
        }
        Some(u32::from(v))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    /// Unsigned Exp-Golomb.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// Signed Exp-Golomb (only skipped here).
    fn se(&mut self) -> Option<()> {
        self.ue().map(|_| ())
    }
}

fn skip_scaling_list(r: &mut Bits<'_>, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let code = r.ue()? as i64;
            // se(v) mapping: 1 → 1, 2 → -1, 3 → 2, ...
            let delta = if code % 2 == 1 {
                (code + 1) / 2
            } else {
                -(code / 2)
            };
            next = ((i64::from(last) + delta + 256).rem_euclid(256)) as i32;
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Width and height (after cropping) from an SPS NAL unit, header byte first.
fn h264_sps_size(nal: &[u8]) -> Option<(u32, u32)> {
    let mut r = Bits::new(nal.get(1..)?);
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()? == 1;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?;
            r.se()?;
            r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.bit()?);
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? == 1 {
        left = u64::from(r.ue()?);
        right = u64::from(r.ue()?);
        top = u64::from(r.ue()?);
        bottom = u64::from(r.ue()?);
    }
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_x, crop_y) = match chroma_array_type {
        0 => (1, 2 - frame_mbs_only),
        1 => (2, 2 * (2 - frame_mbs_only)),
        2 => (2, 2 - frame_mbs_only),
        _ => (1, 2 - frame_mbs_only),
    };
    let width = (width_mbs * 16).checked_sub(crop_x * (left + right))?;
    let height = ((2 - frame_mbs_only) * height_units * 16).checked_sub(crop_y * (top + bottom))?;
    Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
}

/// Width and height from the first packet of a VP8 key frame.
/// Width and height (after the conformance window) from an H.265 SPS NAL unit, its
/// two header bytes first (ITU-T H.265 §7.3.2.2).
pub(crate) fn h265_sps_size(nal: &[u8]) -> Option<(u32, u32)> {
    let mut r = Bits::new(nal.get(2..)?);
    r.bits(4)?; // sps_video_parameter_set_id
    let sub_layers = r.bits(3)? as usize; // sps_max_sub_layers_minus1
    r.bit()?; // sps_temporal_id_nesting_flag
    // profile_tier_level: the general profile (88 bits) and level (8).
    r.bits(32)?;
    r.bits(32)?;
    r.bits(24)?;
    let mut present = [(false, false); 8];
    for p in present.iter_mut().take(sub_layers) {
        *p = (r.bit()? == 1, r.bit()? == 1);
    }
    if sub_layers > 0 {
        r.bits(2 * (8 - sub_layers as u32))?;
    }
    for (profile, level) in present.iter().take(sub_layers) {
        if *profile {
            r.bits(32)?;
            r.bits(32)?;
            r.bits(24)?;
        }
        if *level {
            r.bits(8)?;
        }
    }
    r.ue()?; // sps_seq_parameter_set_id
    let chroma = r.ue()?;
    if chroma == 3 {
        r.bit()?; // separate_colour_plane_flag
    }
    let (mut width, mut height) = (r.ue()?, r.ue()?);
    if r.bit()? == 1 {
        let (left, right, top, bottom) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
        let sub_w = if chroma == 1 || chroma == 2 { 2 } else { 1 };
        let sub_h = if chroma == 1 { 2 } else { 1 };
        width = width.checked_sub(sub_w * (left.checked_add(right)?))?;
        height = height.checked_sub(sub_h * (top.checked_add(bottom)?))?;
    }
    Some((width, height))
}

fn vp8_size(payload: &[u8]) -> Option<(u32, u32)> {
    let b0 = *payload.first()?;
    let start_of_partition = b0 & 0x10 != 0;
    let partition_id = b0 & 0x07;
    if !start_of_partition || partition_id != 0 {
        return None;
    }
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            // Picture id: 7 or 15 bits.
            i += if payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    let h = payload.get(i..i + 10)?;
    if h[0] & 0x01 != 0 || h[3..6] != [0x9d, 0x01, 0x2a] {
        return None; // inter frame, or no start code
    }
    let width = u32::from(u16::from_le_bytes([h[6], h[7]]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([h[8], h[9]]) & 0x3fff);
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPS that libx264 (Debian's ffmpeg) writes for 640x360, constrained baseline:
    /// 23 macroblock rows (368 lines) cropped by 8.
    const SPS_640X360: &[u8] = &[
        0x67, 0x42, 0xc0, 0x16, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x02, 0x0f, 0x16, 0x2e, 0x48,
    ];
    /// libx264, 1920x1080, high profile (chroma format and scaling fields present).
    const SPS_1080P_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0x08, 0x3c, 0x60, 0xc6, 0x58,
    ];
    /// libx264, 320x240, high profile.
    const SPS_320X240_HIGH: &[u8] = &[
        0x67, 0x64, 0x00, 0x0c, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x00, 0x20, 0xf1, 0x42, 0x99, 0x60,
    ];

    #[test]
    fn h264_sps_gives_cropped_size() {
        assert_eq!(frame_size(CodecKind::H264, SPS_640X360), Some((640, 360)));
        assert_eq!(
            frame_size(CodecKind::H264, SPS_1080P_HIGH),
            Some((1920, 1080))
        );
        assert_eq!(
            frame_size(CodecKind::H264, SPS_320X240_HIGH),
            Some((320, 240))
        );
    }

    #[test]
    fn h264_sps_inside_stap_a_is_found() {
        let mut stap = vec![0x78, 0x00, 0x04, 0x09, 0xf0, 0x00, 0x00];
        stap.extend_from_slice(&(SPS_640X360.len() as u16).to_be_bytes());
        stap.extend_from_slice(SPS_640X360);
        stap.extend_from_slice(&[0x00, 0x03, 0x68, 0xce, 0x3c]);
        assert_eq!(frame_size(CodecKind::H264, &stap), Some((640, 360)));
    }

    #[test]
    fn h264_idr_without_sps_has_no_size() {
        assert_eq!(frame_size(CodecKind::H264, &[0x65, 0x88, 0x84]), None);
        assert_eq!(frame_size(CodecKind::H264, &[0x7c, 0x85, 0x88]), None);
    }

    #[test]
    fn vp8_key_frame_header_gives_size() {
        // X=1, S=1; I=1 with a 15-bit picture id; frame tag (key frame), start code.
        let p = [
            0x90, 0x80, 0x80, 0x01, 0x50, 0x0c, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01,
        ];
        assert_eq!(frame_size(CodecKind::Vp8, &p), Some((640, 360)));
        // Same header with P=1 (inter frame): nothing.
        let mut inter = p;
        inter[4] |= 1;
        assert_eq!(frame_size(CodecKind::Vp8, &inter), None);
    }

    #[test]
    fn truncated_or_garbage_input_never_panics() {
        for len in 0..SPS_1080P_HIGH.len() {
            let _ = frame_size(CodecKind::H264, &SPS_1080P_HIGH[..len]);
        }
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let _ = frame_size(CodecKind::H264, &[0x67, a, b, 0, 0, 3, 0xff]);
                let _ = frame_size(CodecKind::Vp8, &[0x90, a, b, 0, 0x9d, 1, 0x2a]);
            }
        }
        let zeros = [0u8; 64];
        let mut sps = vec![0x67, 0x64];
        sps.extend_from_slice(&zeros);
        assert_eq!(frame_size(CodecKind::H264, &sps), None);
    }
}
