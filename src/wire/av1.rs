//! AV1 in RTP payloads (AOMedia "RTP Payload Format For AV1" v1.0): [`temporal_unit`]
//! joins one temporal unit's OBUs across its packets into what an MP4 `av01` sample
//! holds, and [`sequence_config`] reads from a sequence header what the `av1C` box
//! repeats.

use super::bits::Bits;

/// One temporal unit's OBUs, as one MP4 sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Av1Unit {
    /// The OBUs in the low overhead bitstream format the AV1 ISOBMFF binding asks
    /// of a sample: each with its size field, and without temporal delimiters, tile
    /// lists or padding.
    pub(crate) data: Vec<u8>,
    /// The unit starts a coded video sequence: a sequence header, then a key frame.
    pub(crate) keyframe: bool,
    /// The unit's sequence header OBU, in the same form as in `data`.
    pub(crate) sequence_header: Option<Vec<u8>>,
}

/// What a sequence header says that `av1C` repeats, and the largest frame size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Av1Config {
    pub(crate) seq_profile: u8,
    /// Of operating point 0, the one a decoder picks unless told otherwise.
    pub(crate) seq_level_idx_0: u8,
    pub(crate) seq_tier_0: bool,
    pub(crate) high_bitdepth: bool,
    pub(crate) twelve_bit: bool,
    pub(crate) monochrome: bool,
    pub(crate) chroma_subsampling_x: bool,
    pub(crate) chroma_subsampling_y: bool,
    /// 0 unknown, 1 vertical, 2 colocated (AV1 spec 6.4.2).
    pub(crate) chroma_sample_position: u8,
    /// max_frame_width_minus_1 + 1 and max_frame_height_minus_1 + 1.
    pub(crate) width: u16,
    pub(crate) height: u16,
}

/// OBU types (AV1 spec 6.2.2).
const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_TEMPORAL_DELIMITER: u8 = 2;
const OBU_FRAME_HEADER: u8 = 3;
const OBU_FRAME: u8 = 6;
const OBU_TILE_LIST: u8 = 8;
const OBU_PADDING: u8 = 15;

/// OBU header bits.
const OBU_FORBIDDEN: u8 = 0x80;
const OBU_HAS_EXTENSION: u8 = 0x04;
const OBU_HAS_SIZE: u8 = 0x02;

/// Aggregation header bits.
const AGG_Z: u8 = 0x80;
const AGG_Y: u8 = 0x40;

/// One temporal unit from its RTP payloads: all the packets of one RTP timestamp, in
/// sequence order, none lost. None when the fragments do not join up (Z on the first
/// packet, Y on the last, a fragment that continues nothing or is not continued), an
/// element or OBU runs past its end, an OBU header has its forbidden bit set, or no
/// OBU is left to write. Never panics.
pub(crate) fn temporal_unit(payloads: &[&[u8]]) -> Option<Av1Unit> {
    let mut unit = Writer::default();
    let mut fragment: Option<Vec<u8>> = None;
    for payload in payloads {
        let (&aggregation, body) = payload.split_first()?;
        let continues = aggregation & AGG_Z != 0;
        let continued = aggregation & AGG_Y != 0;
        let elements = elements(body, (aggregation >> 4) & 0x03)?;
        let Some(last) = elements.len().checked_sub(1) else {
            if continues || continued || fragment.is_some() {
                return None;
            }
            continue;
        };
        for (i, element) in elements.into_iter().enumerate() {
            let obu = match (i == 0 && continues, fragment.take()) {
                (true, Some(mut start)) => {
                    start.extend_from_slice(element);
                    start
                }
                (false, None) => element.to_vec(),
                _ => return None,
            };
            if i == last && continued {
                fragment = Some(obu);
            } else {
                unit.obus(&obu)?;
            }
        }
    }
    if fragment.is_some() || unit.data.is_empty() {
        return None;
    }
    Some(Av1Unit {
        data: unit.data,
        keyframe: unit.sequence_header.is_some() && unit.first_frame_is_key == Some(true),
        sequence_header: unit.sequence_header,
    })
}

/// A packet's OBU elements: each after its LEB128 length, except that when W (the
/// count) is not 0 the W-th has no length and runs to the end. None when W is not
/// the count there is; empty elements are left out.
fn elements(mut body: &[u8], count: u8) -> Option<Vec<&[u8]>> {
    let count = usize::from(count);
    let mut elements = Vec::new();
    let mut n = 0;
    while !body.is_empty() {
        n += 1;
        let element = if n == count {
            std::mem::take(&mut body)
        } else {
            let (len, tail) = leb128(body)?;
            let (element, tail) = tail.split_at_checked(len)?;
            body = tail;
            element
        };
        if !element.is_empty() {
            elements.push(element);
        }
    }
    (count == 0 || n == count).then_some(elements)
}

/// The temporal unit as it is written.
#[derive(Default)]
struct Writer {
    data: Vec<u8>,
    sequence_header: Option<Vec<u8>>,
    /// Whether the first frame or frame header OBU is a key frame's, once seen.
    first_frame_is_key: Option<bool>,
}

impl Writer {
    /// Writes the OBUs of one element: one without a size field, or any number with
    /// (a sender may keep the field, though the payload format advises against it).
    fn obus(&mut self, mut bytes: &[u8]) -> Option<()> {
        while let Some((&header, tail)) = bytes.split_first() {
            if header & OBU_FORBIDDEN != 0 {
                return None;
            }
            let (extension, tail) = match header & OBU_HAS_EXTENSION {
                0 => (None, tail),
                _ => tail.split_first().map(|(e, t)| (Some(*e), t))?,
            };
            let payload;
            (payload, bytes) = match header & OBU_HAS_SIZE {
                0 => (tail, &[][..]),
                _ => {
                    let (len, tail) = leb128(tail)?;
                    tail.split_at_checked(len)?
                }
            };
            let kind = obu_type(header);
            if matches!(kind, OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING) {
                continue;
            }
            let start = self.data.len();
            self.data.push(header | OBU_HAS_SIZE);
            self.data.extend(extension);
            put_leb128(&mut self.data, payload.len());
            self.data.extend_from_slice(payload);
            match kind {
                OBU_SEQUENCE_HEADER => {
                    self.sequence_header = Some(self.data.get(start..)?.to_vec())
                }
                OBU_FRAME | OBU_FRAME_HEADER if self.first_frame_is_key.is_none() => {
                    let reduced = self
                        .sequence_header
                        .as_deref()
                        .is_some_and(reduced_still_picture);
                    self.first_frame_is_key = Some(reduced || is_key_frame(payload));
                }
                _ => {}
            }
        }
        Some(())
    }
}

/// The type of the OBU whose first header byte is `header`.
fn obu_type(header: u8) -> u8 {
    (header >> 3) & 0x0f
}

/// Whether a sequence header OBU (in [`Writer`]'s form) has
/// reduced_still_picture_header set: its frame headers then hold only key frames.
fn reduced_still_picture(obu: &[u8]) -> bool {
    obu_payload(obu)
        .and_then(|p| p.first())
        .is_some_and(|b| b & 0x08 != 0)
}

/// Whether a frame header (uncompressed_header, AV1 spec 5.9.2, without reduced
/// still pictures) is a key frame's: show_existing_frame 0, frame_type KEY_FRAME.
fn is_key_frame(frame_header: &[u8]) -> bool {
    frame_header.first().is_some_and(|b| b & 0xe0 == 0)
}

/// The payload of one OBU, with or without its size field; None when the header
/// or size is cut short.
fn obu_payload(obu: &[u8]) -> Option<&[u8]> {
    let (&header, tail) = obu.split_first()?;
    let tail = match header & OBU_HAS_EXTENSION {
        0 => tail,
        _ => tail.get(1..)?,
    };
    match header & OBU_HAS_SIZE {
        0 => Some(tail),
        _ => {
            let (len, tail) = leb128(tail)?;
            tail.get(..len)
        }
    }
}

/// An unsigned LEB128 number (AV1 spec 4.10.5: at most 8 bytes) and what follows it.
fn leb128(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(8) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((usize::try_from(value).ok()?, bytes.get(i + 1..)?));
        }
    }
    None
}

/// Appends `value` as LEB128, in as few bytes as it takes.
fn put_leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// What a sequence header OBU says (AV1 spec 5.5), with or without its size field.
/// None when it is not a sequence header, is cut short, or states a frame size
/// wider or taller than 65535. Never panics.
pub(crate) fn sequence_config(sequence_header_obu: &[u8]) -> Option<Av1Config> {
    if obu_type(*sequence_header_obu.first()?) != OBU_SEQUENCE_HEADER {
        return None;
    }
    let mut bits = Bits::new(obu_payload(sequence_header_obu)?);
    let seq_profile = u8::try_from(bits.read(3)?).ok()?;
    bits.flag()?; // still_picture
    let reduced_still_picture_header = bits.flag()?;
    let (seq_level_idx_0, seq_tier_0);
    if reduced_still_picture_header {
        seq_level_idx_0 = bits.read(5)?;
        seq_tier_0 = false;
    } else {
        let mut buffer_delay_bits = None;
        if bits.flag()? {
            // timing_info
            bits.read(32)?; // num_units_in_display_tick
            bits.read(32)?; // time_scale
            if bits.flag()? {
                skip_uvlc(&mut bits)?; // num_ticks_per_picture_minus_1
            }
            if bits.flag()? {
                // decoder_model_info
                buffer_delay_bits = Some(bits.read(5)? + 1);
                bits.read(32)?; // num_units_in_decoding_tick
                bits.read(10)?; // buffer_removal_time_length_minus_1, frame_presentation_…
            }
        }
        let initial_display_delay_present = bits.flag()?;
        let mut first = None;
        for _ in 0..=bits.read(5)? {
            bits.read(12)?; // operating_point_idc
            let level = bits.read(5)?;
            let tier = level > 7 && bits.flag()?;
            first.get_or_insert((level, tier));
            if let Some(n) = buffer_delay_bits
                && bits.flag()?
            {
                // operating_parameters_info: decoder and encoder buffer delays, low delay
                bits.read(n)?;
                bits.read(n)?;
                bits.flag()?;
            }
            if initial_display_delay_present && bits.flag()? {
                bits.read(4)?;
            }
        }
        (seq_level_idx_0, seq_tier_0) = first?;
    }
    let width_bits = bits.read(4)? + 1;
    let height_bits = bits.read(4)? + 1;
    let width = u16::try_from(bits.read(width_bits)? + 1).ok()?;
    let height = u16::try_from(bits.read(height_bits)? + 1).ok()?;
    if !reduced_still_picture_header && bits.flag()? {
        // frame_id_numbers_present: delta_frame_id_length_minus_2, additional_…
        bits.read(7)?;
    }
    bits.read(3)?; // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
    if !reduced_still_picture_header {
        // enable_interintra_compound, enable_masked_compound, enable_warped_motion,
        // enable_dual_filter
        bits.read(4)?;
        let order_hint = bits.flag()?;
        if order_hint {
            bits.read(2)?; // enable_jnt_comp, enable_ref_frame_mvs
        }
        // seq_choose_screen_content_tools, else seq_force_screen_content_tools; when
        // either is set, seq_choose_integer_mv, and unless it is set,
        // seq_force_integer_mv.
        let screen_content_tools = bits.flag()? || bits.flag()?;
        if screen_content_tools && !bits.flag()? {
            bits.flag()?;
        }
        if order_hint {
            bits.read(3)?; // order_hint_bits_minus_1
        }
    }
    bits.read(3)?; // enable_superres, enable_cdef, enable_restoration

    // color_config (AV1 spec 5.5.2)
    let high_bitdepth = bits.flag()?;
    let twelve_bit = seq_profile == 2 && high_bitdepth && bits.flag()?;
    let monochrome = seq_profile != 1 && bits.flag()?;
    let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
    if bits.flag()? {
        primaries = bits.read(8)?;
        transfer = bits.read(8)?;
        matrix = bits.read(8)?;
    }
    let (subsampling_x, subsampling_y, chroma_sample_position);
    if monochrome {
        bits.flag()?; // color_range
        (subsampling_x, subsampling_y, chroma_sample_position) = (true, true, 0);
    } else if (primaries, transfer, matrix) == (1, 13, 0) {
        // sRGB: full range, 4:4:4, nothing more written
        (subsampling_x, subsampling_y, chroma_sample_position) = (false, false, 0);
    } else {
        bits.flag()?; // color_range
        (subsampling_x, subsampling_y) = match seq_profile {
            0 => (true, true),
            1 => (false, false),
            _ if twelve_bit => {
                let x = bits.flag()?;
                (x, x && bits.flag()?)
            }
            _ => (true, false),
        };
        chroma_sample_position = match subsampling_x && subsampling_y {
            true => u8::try_from(bits.read(2)?).ok()?,
            false => 0,
        };
    }
    Some(Av1Config {
        seq_profile,
        seq_level_idx_0: u8::try_from(seq_level_idx_0).ok()?,
        seq_tier_0,
        high_bitdepth,
        twelve_bit,
        monochrome,
        chroma_subsampling_x: subsampling_x,
        chroma_subsampling_y: subsampling_y,
        chroma_sample_position,
        width,
        height,
    })
}

/// A uvlc() number (AV1 spec 4.10.3), read past and not kept.
fn skip_uvlc(bits: &mut Bits<'_>) -> Option<()> {
    let mut leading_zeros = 0;
    while !bits.flag()? {
        leading_zeros += 1;
    }
    if leading_zeros < 32 {
        bits.read(leading_zeros)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::super::bits::BitWriter;
    use super::*;

    /// A sequence header's payload: profile 0, level 8 (4.0), main tier, 8-bit
    /// 4:2:0, 640x360, no timing info.
    fn sequence_header_payload() -> Vec<u8> {
        let mut w = BitWriter::default();
        w.put(3, 0).put(1, 0).put(1, 0); // seq_profile, still_picture, reduced
        w.put(1, 0).put(1, 0); // timing_info_present, initial_display_delay_present
        w.put(5, 0).put(12, 0).put(5, 8).put(1, 0); // one point: idc, level 8, tier
        w.put(4, 9).put(4, 8).put(10, 639).put(9, 359); // size bits and max size
        w.put(1, 0); // frame_id_numbers_present_flag
        w.put(3, 0b011).put(4, 0); // superblock, intra tools; compound tools
        w.put(1, 1).put(2, 0b11); // enable_order_hint, jnt_comp, ref_frame_mvs
        w.put(1, 1).put(1, 1); // choose screen content tools, choose integer mv
        w.put(3, 6).put(3, 0b011); // order_hint_bits_minus_1; superres, cdef, restoration
        w.put(1, 0).put(1, 0).put(1, 0); // high_bitdepth, mono_chrome, no color description
        w.put(1, 0).put(2, 1).put(1, 0); // color_range, chroma_sample_position, separate_uv_delta_q
        w.put(1, 0); // film_grain_params_present
        w.finish()
    }

    fn obu(kind: u8, with_size: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![kind << 3 | if with_size { OBU_HAS_SIZE } else { 0 }];
        if with_size {
            put_leb128(&mut out, payload.len());
        }
        out.extend_from_slice(payload);
        out
    }

    /// An aggregation header, then each element after its length except, when `w`
    /// is not 0, the last.
    fn packet(aggregation: u8, w: u8, elements: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![aggregation | w << 4];
        for (i, element) in elements.iter().enumerate() {
            if w == 0 || i + 1 < elements.len() {
                put_leb128(&mut out, element.len());
            }
            out.extend_from_slice(element);
        }
        out
    }

    /// A key frame's frame OBU payload: show_existing_frame 0, KEY_FRAME, …
    const KEY_FRAME: [u8; 4] = [0x10, 0xaa, 0xbb, 0xcc];
    /// An inter frame's: show_existing_frame 0, INTER_FRAME, …
    const INTER_FRAME: [u8; 3] = [0x30, 0xdd, 0xee];

    #[test]
    fn a_unit_in_one_packet_loses_its_temporal_delimiter_and_gains_size_fields() {
        let header = sequence_header_payload();
        let td = obu(OBU_TEMPORAL_DELIMITER, false, &[]);
        let seq = obu(OBU_SEQUENCE_HEADER, false, &header);
        let frame = obu(OBU_FRAME, false, &KEY_FRAME);
        let payload = packet(0x08, 0, &[&td, &seq, &frame]); // N: a new sequence
        let unit = temporal_unit(&[&payload]).unwrap();
        let seq_sized = obu(OBU_SEQUENCE_HEADER, true, &header);
        let frame_sized = obu(OBU_FRAME, true, &KEY_FRAME);
        assert_eq!(unit.data, [seq_sized.clone(), frame_sized].concat());
        assert_eq!(unit.data.first(), Some(&0x0a));
        assert_eq!(unit.sequence_header, Some(seq_sized));
        assert!(unit.keyframe);
    }

    #[test]
    fn an_obu_fragmented_over_three_packets_joins_with_a_two_byte_size() {
        let big: Vec<u8> = [0x30]
            .into_iter()
            .chain((0..299).map(|i| i as u8))
            .collect();
        let frame = obu(OBU_FRAME, false, &big);
        let (a, rest) = frame.split_at(100);
        let (b, c) = rest.split_at(100);
        let first = packet(AGG_Y, 1, &[a]);
        let middle = packet(AGG_Z | AGG_Y, 1, &[b]);
        let last = packet(AGG_Z, 1, &[c]);
        let unit = temporal_unit(&[&first, &middle, &last]).unwrap();
        assert_eq!(unit.data[..3], [0x32, 0xac, 0x02]); // 300 in LEB128
        assert_eq!(unit.data[3..], big);
        assert!(!unit.keyframe);
        assert_eq!(unit.sequence_header, None);
    }

    #[test]
    fn w_2_leaves_the_last_element_without_a_length_and_it_may_start_a_fragment() {
        let header = sequence_header_payload();
        let seq = obu(OBU_SEQUENCE_HEADER, false, &header);
        let frame = obu(OBU_FRAME, false, &KEY_FRAME);
        let whole = packet(0, 2, &[&seq, &frame]);
        let unit = temporal_unit(&[&whole]).unwrap();
        let expected = [
            obu(OBU_SEQUENCE_HEADER, true, &header),
            obu(OBU_FRAME, true, &KEY_FRAME),
        ]
        .concat();
        assert_eq!(unit.data, expected);
        assert!(unit.keyframe);
        // The frame's end in a second packet, W=1.
        let (start, end) = frame.split_at(2);
        let first = packet(AGG_Y, 2, &[&seq, start]);
        let second = packet(AGG_Z, 1, &[end]);
        assert_eq!(temporal_unit(&[&first, &second]).unwrap().data, expected);
    }

    #[test]
    fn obus_that_keep_their_size_field_are_written_once_with_it() {
        let td = obu(OBU_TEMPORAL_DELIMITER, true, &[]);
        let frame = obu(OBU_FRAME, true, &INTER_FRAME);
        let padding = obu(OBU_PADDING, true, &[0, 0, 0]);
        // Two OBUs with size fields in one element, and one in another.
        let payload = packet(0, 2, &[&[td, frame.clone()].concat(), &padding]);
        let unit = temporal_unit(&[&payload]).unwrap();
        assert_eq!(unit.data, frame);
        assert!(!unit.keyframe);
    }

    #[test]
    fn an_extension_byte_is_kept() {
        let mut frame = vec![OBU_FRAME << 3 | OBU_HAS_EXTENSION, 0x28];
        frame.extend_from_slice(&INTER_FRAME);
        let unit = temporal_unit(&[&packet(0, 1, &[&frame])]).unwrap();
        assert_eq!(unit.data, [&[0x36, 0x28, 3][..], &INTER_FRAME].concat());
    }

    #[test]
    fn a_key_frame_without_a_sequence_header_is_not_a_keyframe() {
        let frame = obu(OBU_FRAME, false, &KEY_FRAME);
        let unit = temporal_unit(&[&packet(0, 1, &[&frame])]).unwrap();
        assert!(!unit.keyframe);
        let seq = obu(OBU_SEQUENCE_HEADER, false, &sequence_header_payload());
        let inter = obu(OBU_FRAME, false, &INTER_FRAME);
        let unit = temporal_unit(&[&packet(0, 2, &[&seq, &inter])]).unwrap();
        assert!(!unit.keyframe);
    }

    #[test]
    fn fragments_that_do_not_join_up_give_none() {
        let frame = obu(OBU_FRAME, false, &INTER_FRAME);
        let (a, b) = frame.split_at(2);
        let start = packet(AGG_Y, 1, &[a]);
        let end = packet(AGG_Z, 1, &[b]);
        let whole = packet(0, 1, &[&frame]);
        assert!(temporal_unit(&[&start, &end]).is_some());
        assert!(temporal_unit(&[&end]).is_none(), "Z on the first packet");
        assert!(temporal_unit(&[&start]).is_none(), "Y on the last packet");
        assert!(
            temporal_unit(&[&start, &whole]).is_none(),
            "a fragment not continued"
        );
        assert!(
            temporal_unit(&[&whole, &end]).is_none(),
            "Z after a whole OBU"
        );
        assert!(
            temporal_unit(&[&[0x00, 0x05, 0x30, 0x01]]).is_none(),
            "length past the end"
        );
        assert!(
            temporal_unit(&[&[0x10, 0xb0, 0x01]]).is_none(),
            "forbidden bit"
        );
        assert!(
            temporal_unit(&[&[0x10, 0x32, 0x05, 0x01]]).is_none(),
            "size past the end"
        );
        assert!(
            temporal_unit(&[&[0x20, 0x01, 0x30]]).is_none(),
            "W=2 with one element"
        );
        assert!(temporal_unit(&[]).is_none());
        assert!(temporal_unit(&[&obu(OBU_TEMPORAL_DELIMITER, false, &[])]).is_none());
    }

    #[test]
    fn sequence_config_reads_a_hand_built_header() {
        let config = Av1Config {
            seq_profile: 0,
            seq_level_idx_0: 8,
            seq_tier_0: false,
            high_bitdepth: false,
            twelve_bit: false,
            monochrome: false,
            chroma_subsampling_x: true,
            chroma_subsampling_y: true,
            chroma_sample_position: 1,
            width: 640,
            height: 360,
        };
        let header = sequence_header_payload();
        assert_eq!(
            sequence_config(&obu(1, false, &header)),
            Some(config.clone())
        );
        assert_eq!(
            sequence_config(&obu(1, true, &header)),
            Some(config.clone())
        );
        let unit = temporal_unit(&[&packet(0, 1, &[&obu(1, false, &header)])]).unwrap();
        assert_eq!(
            sequence_config(&unit.sequence_header.unwrap()),
            Some(config)
        );
        assert_eq!(sequence_config(&obu(OBU_FRAME, false, &header)), None);
    }

    #[test]
    fn sequence_config_reads_timing_decoder_models_and_12_bit_4_2_2() {
        let mut w = BitWriter::default();
        w.put(3, 2).put(1, 0).put(1, 0); // profile 2
        w.put(1, 1)
            .put(32, 1001)
            .put(32, 60000)
            .put(1, 1)
            .put(5, 0b00110); // timing, uvlc 5
        w.put(1, 1).put(5, 9).put(32, 1001).put(5, 4).put(5, 4); // decoder model, 10-bit delays
        w.put(1, 1).put(5, 1); // initial_display_delay_present, two operating points
        w.put(12, 0x103)
            .put(5, 12)
            .put(1, 1)
            .put(1, 1)
            .put(10, 5)
            .put(10, 6)
            .put(1, 0);
        w.put(1, 1).put(4, 3); // level 12 high tier, decoder model, display delay
        w.put(12, 0x101).put(5, 4).put(1, 0).put(1, 0); // level 4, no model or delay
        w.put(4, 11).put(4, 10).put(12, 1919).put(11, 1079);
        w.put(1, 1).put(4, 5).put(3, 2); // frame ids
        w.put(3, 0).put(4, 0).put(1, 0); // no order hint
        w.put(1, 0).put(1, 1).put(1, 0).put(1, 1); // force screen content, force integer mv
        w.put(3, 0);
        w.put(1, 1).put(1, 1).put(1, 0); // high_bitdepth, twelve_bit, mono_chrome
        w.put(1, 1).put(8, 9).put(8, 16).put(8, 9); // BT.2020 PQ
        w.put(1, 0).put(1, 1).put(1, 0); // color_range, subsampling_x, subsampling_y
        w.put(1, 0).put(1, 0);
        let config = sequence_config(&obu(1, true, &w.finish())).unwrap();
        assert_eq!(
            (
                config.seq_profile,
                config.seq_level_idx_0,
                config.seq_tier_0
            ),
            (2, 12, true)
        );
        assert!(config.high_bitdepth && config.twelve_bit && !config.monochrome);
        assert!(config.chroma_subsampling_x && !config.chroma_subsampling_y);
        assert_eq!(
            (config.chroma_sample_position, config.width, config.height),
            (0, 1920, 1080)
        );
    }

    #[test]
    fn sequence_config_reads_libaom_headers_as_ffmpeg_wrote_them() {
        // `ffmpeg -f lavfi -i testsrc=size=320x180 -c:v libaom-av1 -f obu`, with
        // -pix_fmt yuv420p and BT.709 full range, and with yuv444p10le.
        let yuv420 = [
            0x0a, 0x0e, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xcc, 0xda, 0xf9, 0x10, 0x10, 0x10,
            0x18, 0x40,
        ];
        let yuv444_10 = [
            0x0a, 0x0a, 0x20, 0x00, 0x00, 0x04, 0x3c, 0xfe, 0xcc, 0xda, 0xf9, 0x42,
        ];
        let a = sequence_config(&yuv420).unwrap();
        assert_eq!(
            (a.seq_profile, a.high_bitdepth, a.monochrome),
            (0, false, false)
        );
        assert!(a.chroma_subsampling_x && a.chroma_subsampling_y);
        assert_eq!((a.width, a.height), (320, 180));
        let b = sequence_config(&yuv444_10).unwrap();
        assert_eq!(
            (b.seq_profile, b.high_bitdepth, b.twelve_bit),
            (1, true, false)
        );
        assert!(!b.chroma_subsampling_x && !b.chroma_subsampling_y);
        assert_eq!((b.width, b.height), (320, 180));
        assert_eq!(a.seq_level_idx_0, b.seq_level_idx_0);
    }

    #[test]
    fn leb128_round_trips_and_stops_at_eight_bytes() {
        for value in [0usize, 1, 127, 128, 300, 16_383, 16_384, 0xffff_ffff] {
            let mut out = Vec::new();
            put_leb128(&mut out, value);
            out.push(0x99);
            assert_eq!(leb128(&out), Some((value, &[0x99][..])));
        }
        assert_eq!(leb128(&[0x80; 9]), None);
        assert_eq!(leb128(&[0x80, 0x80]), None);
    }

    #[test]
    fn garbage_never_panics() {
        let header = sequence_header_payload();
        let seq = obu(OBU_SEQUENCE_HEADER, false, &header);
        let frame = obu(OBU_FRAME, true, &KEY_FRAME);
        let real = [
            packet(0x08, 0, &[&obu(2, false, &[]), &seq, &frame]),
            packet(AGG_Y, 2, &[&seq, &frame]),
            obu(OBU_SEQUENCE_HEADER, true, &header),
        ];
        for whole in &real {
            for len in 0..=whole.len() {
                let prefix = &whole[..len];
                let _ = temporal_unit(&[prefix]);
                let _ = temporal_unit(&[prefix, prefix]);
                let _ = sequence_config(prefix);
            }
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5000 {
            let mut junk = Vec::new();
            for _ in 0..(seed % 48) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                junk.push(seed as u8);
            }
            let _ = temporal_unit(&[&junk]);
            let _ = temporal_unit(&[&[AGG_Y, 0x30], &junk]);
            let _ = sequence_config(&junk);
            let _ = sequence_config(&[&[0x0a][..], &junk].concat());
        }
    }
}
