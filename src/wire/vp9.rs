//! VP9 frames in RTP payloads (RFC 9628): [`frame`] turns one picture's payloads into
//! the bytes an MP4 sample holds, and reads from a key frame what the sample entry
//! (`vp09`, `vpcC`) says about the stream.

use super::bits::Bits;

/// One picture's VP9 data, as one MP4 sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Vp9Frame {
    /// The frame, or a superframe (VP9 bitstream Annex B) of the picture's layer
    /// frames when it has several spatial layers: a decoder takes either whole.
    pub(crate) data: Vec<u8>,
    /// The picture decodes without any earlier one: its first layer frame refers to
    /// no earlier picture and is a key frame.
    pub(crate) keyframe: bool,
    /// What a key frame's header says; None for other pictures, or when the header
    /// cannot be read that far.
    pub(crate) info: Option<Vp9Info>,
}

/// The stream's format as a key frame states it, in the terms of `vpcC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Vp9Info {
    /// 0–3.
    pub(crate) profile: u8,
    /// 8, 10 or 12.
    pub(crate) bit_depth: u8,
    /// As `vpcC` codes it: 0 = 4:2:0 sited vertically, 1 = 4:2:0 colocated with luma
    /// (what VP9 means by 4:2:0), 2 = 4:2:2, 3 = 4:4:4.
    pub(crate) chroma_subsampling: u8,
    /// Full-range samples (VP9's color_range), not studio swing.
    pub(crate) full_range: bool,
    /// The size the picture shows at: the top spatial layer's when the payload
    /// descriptor's scalability structure gives it, else the frame header's.
    pub(crate) width: u16,
    pub(crate) height: u16,
}

/// The VP9 color_space that means RGB, which only profiles 1 and 3 can carry.
const CS_RGB: u32 = 7;
/// A key frame's frame_sync_code.
const SYNC_CODE: u32 = 0x49_83_42;
/// At most this many layer frames fit one superframe index (3 bits of count).
const SUPERFRAME_MAX: usize = 8;

/// One picture's VP9 data from its RTP payloads: all the packets of one RTP
/// timestamp, in sequence order, none lost. None when the first payload starts no
/// layer frame, a descriptor cannot be read, a layer frame is empty or continues
/// from nothing, or the picture has more layer frames than a superframe can index.
/// Never panics.
pub(crate) fn frame(payloads: &[&[u8]]) -> Option<Vp9Frame> {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    let mut first_is_inter = true;
    let mut shown_size = None;
    let mut open = false;
    for payload in payloads {
        let d = descriptor(payload)?;
        if d.start {
            if frames.is_empty() {
                first_is_inter = d.inter;
            }
            frames.push(Vec::new());
        } else if !open {
            // Data after a layer frame's end, or before any start.
            return None;
        }
        frames.last_mut()?.extend_from_slice(d.data);
        open = !d.end;
        shown_size = d.shown_size.or(shown_size);
    }
    if frames.iter().any(Vec::is_empty) {
        return None;
    }
    let (key, mut info) = key_frame(frames.first()?);
    let keyframe = key && !first_is_inter;
    if !keyframe {
        info = None;
    }
    if let (Some(info), Some((width, height))) = (info.as_mut(), shown_size)
        && width > 0
        && height > 0
    {
        info.width = width;
        info.height = height;
    }
    let data = match frames.as_slice() {
        [_] => frames.pop()?,
        _ => superframe(&frames)?,
    };
    Some(Vp9Frame {
        data,
        keyframe,
        info,
    })
}

/// What a payload descriptor says that [`frame`] needs, and the data after it.
struct Descriptor<'a> {
    /// B: the payload starts a layer frame.
    start: bool,
    /// E: the payload ends a layer frame.
    end: bool,
    /// P: the layer frame refers to an earlier picture.
    inter: bool,
    /// The top spatial layer's size, when a scalability structure gives sizes.
    shown_size: Option<(u16, u16)>,
    data: &'a [u8],
}

/// Reads a payload descriptor (RFC 9628 §4.2), flexible or not: the picture ID, the
/// layer indices, the reference differences and the scalability structure.
fn descriptor(payload: &[u8]) -> Option<Descriptor<'_>> {
    let (&flags, mut rest) = payload.split_first()?;
    let flag = |mask: u8| flags & mask != 0;
    let (picture_id, inter, layers, flexible) = (flag(0x80), flag(0x40), flag(0x20), flag(0x10));
    let (start, end, structure) = (flag(0x08), flag(0x04), flag(0x02));
    if picture_id {
        let (&id, tail) = rest.split_first()?;
        // M: a 15-bit picture ID takes a second byte.
        rest = if id & 0x80 != 0 { tail.get(1..)? } else { tail };
    }
    if layers {
        // TID/U/SID/D, and TL0PICIDX outside flexible mode.
        rest = rest.get(if flexible { 1 } else { 2 }..)?;
    }
    if flexible && inter {
        // Up to three P_DIFFs, each with N set when another follows.
        let mut diffs = 0;
        loop {
            let (&diff, tail) = rest.split_first()?;
            rest = tail;
            diffs += 1;
            if diff & 1 == 0 {
                break;
            }
            if diffs == 3 {
                return None;
            }
        }
    }
    let mut shown_size = None;
    if structure {
        let (&ss, tail) = rest.split_first()?;
        rest = tail;
        let spatial_layers = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            let (sizes, tail) = rest.split_at_checked(spatial_layers * 4)?;
            rest = tail;
            if let [.., w0, w1, h0, h1] = sizes {
                shown_size = Some((
                    u16::from_be_bytes([*w0, *w1]),
                    u16::from_be_bytes([*h0, *h1]),
                ));
            }
        }
        if ss & 0x08 != 0 {
            let (&groups, tail) = rest.split_first()?;
            rest = tail;
            for _ in 0..groups {
                // T/U/R: R references, a P_DIFF byte each.
                let (&group, tail) = rest.split_first()?;
                rest = tail.get(usize::from((group >> 2) & 0x03)..)?;
            }
        }
    }
    Some(Descriptor {
        start,
        end,
        inter,
        shown_size,
        data: rest,
    })
}

/// The layer frames as one superframe: their bytes, then an index of their sizes
/// with a marker byte at both ends (VP9 bitstream Annex B). A layer frame that is
/// already a superframe gives its frames to the index, since superframes do not nest.
fn superframe(frames: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for frame in frames {
        match superframe_parts(frame) {
            Some(inner) => parts.extend(inner.into_iter().filter(|p| !p.is_empty())),
            None => parts.push(frame),
        }
    }
    if !(2..=SUPERFRAME_MAX).contains(&parts.len()) {
        return None;
    }
    let largest = parts.iter().map(|p| p.len()).max()?;
    let size_bytes: u8 = match largest {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xff_ffff => 3,
        _ if u32::try_from(largest).is_ok() => 4,
        _ => return None,
    };
    let marker = 0xc0 | ((size_bytes - 1) << 3) | u8::try_from(parts.len() - 1).ok()?;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(total + 2 + parts.len() * usize::from(size_bytes));
    for part in &parts {
        out.extend_from_slice(part);
    }
    out.push(marker);
    for part in &parts {
        let size = u32::try_from(part.len()).ok()?.to_le_bytes();
        out.extend_from_slice(size.get(..usize::from(size_bytes))?);
    }
    out.push(marker);
    Some(out)
}

/// The frames of a superframe, by its index; None when `data` does not end in an
/// index whose sizes add up to the bytes before it.
fn superframe_parts(data: &[u8]) -> Option<Vec<&[u8]>> {
    let (&marker, _) = data.split_last()?;
    if marker & 0xe0 != 0xc0 {
        return None;
    }
    let count = usize::from(marker & 0x07) + 1;
    let size_bytes = usize::from((marker >> 3) & 0x03) + 1;
    let index_len = 2 + size_bytes * count;
    let (mut body, index) = data.split_at_checked(data.len().checked_sub(index_len)?)?;
    let [first, sizes @ .., _] = index else {
        return None;
    };
    if *first != marker {
        return None;
    }
    let mut parts = Vec::with_capacity(count);
    for size in sizes.chunks_exact(size_bytes) {
        let size = size
            .iter()
            .rev()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let (part, tail) = body.split_at_checked(size)?;
        parts.push(part);
        body = tail;
    }
    body.is_empty().then_some(parts)
}

/// Whether `frame` starts with a key frame's uncompressed header (VP9 bitstream
/// §6.2: frame type, then the sync code), and what its color config and frame size
/// say, when they can be read and `vpcC` can state them.
fn key_frame(frame: &[u8]) -> (bool, Option<Vp9Info>) {
    let mut bits = Bits::new(frame);
    match key_frame_profile(&mut bits) {
        Some(profile) => (true, color_and_size(&mut bits, profile)),
        None => (false, None),
    }
}

/// The profile, when the header is a key frame's, read up to its sync code.
fn key_frame_profile(bits: &mut Bits<'_>) -> Option<u8> {
    if bits.read(2)? != 2 {
        return None; // frame_marker
    }
    let low = bits.read(1)?;
    let high = bits.read(1)?;
    let profile = u8::try_from((high << 1) | low).ok()?;
    if profile == 3 {
        bits.read(1)?; // reserved_zero
    }
    if bits.read(1)? != 0 {
        return None; // show_existing_frame: a frame shown again, no frame of its own
    }
    if bits.read(1)? != 0 {
        return None; // frame_type: NON_KEY_FRAME
    }
    bits.read(2)?; // show_frame, error_resilient_mode
    (bits.read(24)? == SYNC_CODE).then_some(profile)
}

/// A key frame's color_config and frame_size (VP9 bitstream §6.2.2, §6.2.3).
fn color_and_size(bits: &mut Bits<'_>, profile: u8) -> Option<Vp9Info> {
    let bit_depth = match profile {
        0 | 1 => 8,
        _ if bits.read(1)? == 1 => 12,
        _ => 10,
    };
    let has_chroma_bits = profile == 1 || profile == 3;
    let (full_range, subsampling) = if bits.read(3)? != CS_RGB {
        let full_range = bits.read(1)? == 1;
        let subsampling = if has_chroma_bits {
            let xy = (bits.read(1)?, bits.read(1)?);
            bits.read(1)?; // reserved_zero
            xy
        } else {
            (1, 1)
        };
        (full_range, subsampling)
    } else if has_chroma_bits {
        bits.read(1)?; // reserved_zero
        (true, (0, 0))
    } else {
        return None; // RGB in a profile without 4:4:4
    };
    let chroma_subsampling = match subsampling {
        (1, 1) => 1,
        (1, 0) => 2,
        (0, 0) => 3,
        _ => return None, // 4:4:0, which vpcC cannot state
    };
    let width = u16::try_from(bits.read(16)? + 1).ok()?;
    let height = u16::try_from(bits.read(16)? + 1).ok()?;
    Some(Vp9Info {
        profile,
        bit_depth,
        chroma_subsampling,
        full_range,
        width,
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::bits::BitWriter as Writer;

    /// A profile 0 key frame's uncompressed header as far as its size, then bytes
    /// standing for the rest of the frame.
    fn key_frame_bytes(width: u32, height: u32) -> Vec<u8> {
        let mut w = Writer::default();
        w.put(2, 2).put(1, 0).put(1, 0); // frame_marker, profile 0
        w.put(1, 0).put(1, 0).put(1, 1).put(1, 0); // not existing, KEY_FRAME, shown
        w.put(24, SYNC_CODE);
        w.put(3, 1).put(1, 0); // BT.601, studio range
        w.put(16, width - 1).put(16, height - 1);
        w.bytes.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
        w.bytes
    }

    fn inter_frame_bytes() -> Vec<u8> {
        let mut w = Writer::default();
        w.put(2, 2)
            .put(2, 0)
            .put(1, 0)
            .put(1, 1)
            .put(1, 1)
            .put(1, 0);
        w.bytes.extend_from_slice(&[0x55, 0x66, 0x77]);
        w.bytes
    }

    /// I, 15-bit picture ID 0x1234, B, E, V with one spatial layer's size.
    fn key_descriptor(width: u16, height: u16) -> Vec<u8> {
        let mut d = vec![0x80 | 0x08 | 0x04 | 0x02, 0x80 | 0x12, 0x34, 0x10];
        d.extend_from_slice(&width.to_be_bytes());
        d.extend_from_slice(&height.to_be_bytes());
        d
    }

    fn join(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn a_key_frame_in_one_packet_gives_its_bytes_and_what_its_header_says() {
        let data = key_frame_bytes(640, 360);
        let payload = join(&[&key_descriptor(640, 360), &data]);
        let frame = frame(&[&payload]).unwrap();
        assert_eq!(frame.data, data);
        assert!(frame.keyframe);
        assert_eq!(
            frame.info,
            Some(Vp9Info {
                profile: 0,
                bit_depth: 8,
                chroma_subsampling: 1,
                full_range: false,
                width: 640,
                height: 360,
            })
        );
    }

    #[test]
    fn libvpx_key_frame_headers_read_as_ffmpeg_wrote_them() {
        // The first bytes of `ffmpeg -f lavfi -i testsrc=size=320x180 -c:v libvpx-vp9`,
        // with -pix_fmt yuv420p, yuv420p10le and (testsrc's own RGB) gbrp.
        let cases: [(&[u8], u8, u8, u8); 3] = [
            (
                &[0x82, 0x49, 0x83, 0x42, 0x00, 0x13, 0xf0, 0x0b, 0x36],
                0,
                8,
                1,
            ),
            (
                &[0x92, 0x49, 0x83, 0x42, 0x00, 0x09, 0xf8, 0x05, 0x9b, 0x09],
                2,
                10,
                1,
            ),
            (
                &[0xa2, 0x49, 0x83, 0x42, 0xe0, 0x13, 0xf0, 0x0b, 0x36],
                1,
                8,
                3,
            ),
        ];
        for (header, profile, bit_depth, chroma) in cases {
            let (key, info) = key_frame(header);
            assert!(key);
            let info = info.unwrap();
            assert_eq!(
                (info.profile, info.bit_depth, info.chroma_subsampling),
                (profile, bit_depth, chroma)
            );
            assert_eq!((info.width, info.height), (320, 180));
        }
    }

    #[test]
    fn a_frame_split_over_three_packets_joins() {
        let data = key_frame_bytes(320, 180);
        let (a, rest) = data.split_at(5);
        let (b, c) = rest.split_at(4);
        // Non-flexible mode, 7-bit picture ID, layer indices with TL0PICIDX.
        let first = join(&[&[0x80 | 0x20 | 0x08, 0x05, 0x00, 0x07], a]);
        let middle = join(&[&[0x80 | 0x20, 0x05, 0x00, 0x07], b]);
        let last = join(&[&[0x80 | 0x20 | 0x04, 0x05, 0x00, 0x07], c]);
        let frame = frame(&[&first, &middle, &last]).unwrap();
        assert_eq!(frame.data, data);
        assert!(frame.keyframe);
        assert_eq!(frame.info.map(|i| (i.width, i.height)), Some((320, 180)));
    }

    #[test]
    fn two_spatial_layers_become_a_superframe_whose_index_gives_their_sizes() {
        let base = key_frame_bytes(320, 180);
        let top: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        // Flexible mode: I, L (no TL0PICIDX), B, E; V on the first with two sizes.
        let mut first = vec![0x80 | 0x20 | 0x10 | 0x08 | 0x04 | 0x02, 0x09, 0x00];
        first.extend_from_slice(&[0x30, 0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68]);
        first.extend_from_slice(&base);
        let second = join(&[&[0x80 | 0x20 | 0x10 | 0x08 | 0x04, 0x09, 0x03], &top]);
        let frame = frame(&[&first, &second]).unwrap();
        let parts = superframe_parts(&frame.data).unwrap();
        assert_eq!(parts, vec![&base[..], &top[..]]);
        // 0b110, two bytes per size, two frames.
        assert_eq!(frame.data.last(), Some(&0b1100_1001));
        assert!(frame.keyframe);
        // The size the picture shows at is the top layer's.
        assert_eq!(frame.info.map(|i| (i.width, i.height)), Some((640, 360)));
    }

    #[test]
    fn more_layer_frames_than_a_superframe_indexes_give_none() {
        let layer = join(&[&[0x08 | 0x04], &inter_frame_bytes()]);
        let nine = vec![&layer[..]; 9];
        assert!(frame(&nine).is_none());
        assert!(frame(&nine[..8]).is_some());
    }

    #[test]
    fn an_inter_frame_is_not_a_keyframe() {
        // P with flexible mode and two P_DIFFs.
        let inter = join(&[
            &[0x40 | 0x10 | 0x08 | 0x04, 0x03, 0x04],
            &inter_frame_bytes(),
        ]);
        let frame = frame(&[&inter]).unwrap();
        assert_eq!(frame.data, inter_frame_bytes());
        assert!(!frame.keyframe);
        assert_eq!(frame.info, None);
        // A key frame header behind P=1 (an upper layer's) is not a keyframe either.
        let predicted = join(&[&[0x40 | 0x08 | 0x04], &key_frame_bytes(64, 64)]);
        let frame = super::frame(&[&predicted]).unwrap();
        assert!(!frame.keyframe);
        assert_eq!(frame.info, None);
    }

    #[test]
    fn a_picture_that_does_not_start_or_join_up_gives_none() {
        let data = inter_frame_bytes();
        let start = join(&[&[0x08], &data]);
        let middle = join(&[&[0x00], &data]);
        let whole = join(&[&[0x0c], &data]);
        assert!(frame(&[]).is_none());
        assert!(frame(&[&middle]).is_none(), "first payload without B");
        assert!(frame(&[&whole, &middle]).is_none(), "data after E");
        assert!(frame(&[&[0x0c]]).is_none(), "an empty layer frame");
        assert!(frame(&[&start, &middle]).is_some());
        // Four P_DIFFs, each saying another follows.
        assert!(frame(&[&[0x5c, 0x03, 0x03, 0x03, 0x02, 0xaa]]).is_none());
        // A scalability structure promising more sizes than there are bytes.
        assert!(frame(&[&[0x0e, 0xf0, 0x01, 0x40]]).is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let data = key_frame_bytes(640, 360);
        let mut payload = key_descriptor(640, 360);
        payload.extend_from_slice(&data);
        // Flexible, P_DIFFs, and a structure with picture groups.
        let flexible = [
            0xfe, 0x81, 0x02, 0x11, 0x03, 0x02, 0x38, 0x00, 0x10, 0x00, 0x09, 0x02, 0x04, 0x01,
            0x08, 0x09,
        ];
        for whole in [&payload[..], &flexible[..]] {
            for len in 0..=whole.len() {
                let prefix = &whole[..len];
                let _ = frame(&[prefix]);
                let _ = frame(&[prefix, prefix]);
                let _ = key_frame(prefix);
                let _ = superframe_parts(prefix);
            }
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut junk = Vec::new();
            for _ in 0..(seed % 40) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                junk.push(seed as u8);
            }
            let _ = frame(&[&junk]);
            let _ = frame(&[&[0x08], &junk]);
            let _ = superframe_parts(&junk);
        }
    }
}
