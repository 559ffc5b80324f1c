//! RTP payloads back into the samples a file holds: an H.264 or H.265 access unit as
//! length-prefixed NAL units (what `avc1` and `hvc1` samples are), a VP8 or VP9 frame
//! as the codec wrote it, an AV1 temporal unit as OBUs with their sizes (what `av01`
//! samples are). Audio goes as it came.
//!
//! Loss is a gap, never a corrupt sample: a picture missing a packet is dropped, and
//! so is every picture after it until the next keyframe (they would refer to it).
//! Sans-IO and panic-free whatever the payloads.

use crate::wire::av1::{self, Av1Config};
use crate::wire::h264::{self, NAL_IDR, NAL_PPS, NAL_SPS, NAL_TYPE_MASK};
use crate::wire::h265::{self, H265_PPS, H265_SPS, H265_VPS, unit_type as h265_type};
use crate::wire::nal::Piece;
use crate::wire::vp8;
use crate::wire::vp9::{self, Vp9Info};

/// One sample for the file: its bytes, its RTP timestamp, and whether a decoder can
/// start from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) data: Vec<u8>,
    pub(crate) timestamp: u32,
    pub(crate) keyframe: bool,
}

/// How a codec packs NAL units into RTP payloads.
pub(crate) trait Packing {
    /// What `payload` holds.
    fn split(payload: &[u8]) -> Piece<'_>;
    /// Whether units of these types make a picture a decoder can start from.
    fn keyframe(unit: &[u8]) -> bool;
    /// Which parameter set a unit is (0, 1, 2 in the order the file wants them).
    fn parameter_set(unit: &[u8]) -> Option<usize>;
}

/// H.264 (RFC 6184): single NAL unit packets, STAP-A, FU-A. Parameter sets: SPS, PPS.
#[derive(Debug)]
pub(crate) struct H264;

impl Packing for H264 {
    fn split(payload: &[u8]) -> Piece<'_> {
        h264::split(payload)
    }

    fn keyframe(unit: &[u8]) -> bool {
        unit.first().map(|h| h & NAL_TYPE_MASK) == Some(NAL_IDR)
    }

    fn parameter_set(unit: &[u8]) -> Option<usize> {
        match unit.first().map(|h| h & NAL_TYPE_MASK) {
            Some(NAL_SPS) => Some(0),
            Some(NAL_PPS) => Some(1),
            _ => None,
        }
    }
}

/// H.265 (RFC 7798, without DONL): single NAL unit packets, aggregation packets,
/// fragmentation units. Parameter sets: VPS, SPS, PPS.
#[derive(Debug)]
pub(crate) struct H265;

impl Packing for H265 {
    fn split(payload: &[u8]) -> Piece<'_> {
        h265::split(payload)
    }

    fn keyframe(unit: &[u8]) -> bool {
        unit.first()
            .is_some_and(|h| (16..=21).contains(&h265_type(*h)))
    }

    fn parameter_set(unit: &[u8]) -> Option<usize> {
        match unit.first().map(|h| h265_type(*h)) {
            Some(H265_VPS) => Some(0),
            Some(H265_SPS) => Some(1),
            Some(H265_PPS) => Some(2),
            _ => None,
        }
    }
}

/// What a file's sample entry needs of a video codec, as its pictures tell it.
#[derive(Debug, Clone)]
pub(crate) enum Described {
    /// H.264's SPS and PPS, or H.265's VPS, SPS and PPS, in the order of
    /// [`Packing::parameter_set`].
    ParameterSets([Option<Vec<u8>>; 3]),
    /// A VP8 key frame's picture size.
    Vp8 { width: u16, height: u16 },
    /// A VP9 key frame's profile, depth, sampling and size.
    Vp9(Vp9Info),
    /// An AV1 sequence header (with its size field) and what it says.
    Av1 {
        sequence_header: Vec<u8>,
        config: Av1Config,
    },
}

/// How one picture is put together from its packets' payloads.
pub(crate) trait Picture: Default + std::fmt::Debug {
    /// One packet's payload, in order. False when it cannot belong (the picture is
    /// then dropped).
    fn add(&mut self, payload: &[u8]) -> bool;
    /// A packet was lost: what is half-built goes.
    fn lost(&mut self);
    /// The picture's bytes as a file sample and whether it is a keyframe; `None`
    /// when its pieces do not make one (the picture is dropped). Leaves the
    /// picture empty for the next one.
    fn finish(&mut self) -> Option<(Vec<u8>, bool)>;
    /// Whether nothing has been added since the last [`Picture::finish`].
    fn is_empty(&self) -> bool;
    /// What the file's sample entry needs, once seen.
    fn described(&self) -> Option<&Described>;
}

/// A picture of NAL units (H.264, H.265), with the last of each parameter set seen.
#[derive(Debug)]
pub(crate) struct Nal<P> {
    units: Vec<Vec<u8>>,
    /// The unit a fragmentation unit is building.
    fragment: Option<Vec<u8>>,
    /// The parameter sets, in the order of [`Packing::parameter_set`].
    sets: Described,
    packing: std::marker::PhantomData<P>,
}

impl<P> Default for Nal<P> {
    fn default() -> Self {
        Nal {
            units: Vec::new(),
            fragment: None,
            sets: Described::ParameterSets(Default::default()),
            packing: std::marker::PhantomData,
        }
    }
}

impl<P: Packing + std::fmt::Debug> Picture for Nal<P> {
    fn add(&mut self, payload: &[u8]) -> bool {
        match P::split(payload) {
            Piece::Units(whole) => self.units.extend(whole.into_iter().map(<[u8]>::to_vec)),
            Piece::StartEnd(mut unit, data) => {
                unit.extend_from_slice(data);
                self.units.push(unit);
            }
            Piece::Start(mut unit, data) => {
                unit.extend_from_slice(data);
                self.fragment = Some(unit);
            }
            Piece::More(data, end) => match self.fragment.as_mut() {
                Some(unit) => {
                    unit.extend_from_slice(data);
                    if end && let Some(unit) = self.fragment.take() {
                        self.units.push(unit);
                    }
                }
                None => return false,
            },
            Piece::Broken => return false,
        }
        true
    }

    fn lost(&mut self) {
        self.fragment = None;
    }

    fn finish(&mut self) -> Option<(Vec<u8>, bool)> {
        let units = std::mem::take(&mut self.units);
        let unfinished = self.fragment.take().is_some();
        let keyframe = units.iter().any(|u| P::keyframe(u));
        if let Described::ParameterSets(sets) = &mut self.sets {
            for u in &units {
                if let Some(slot) = P::parameter_set(u).and_then(|i| sets.get_mut(i)) {
                    *slot = Some(u.clone());
                }
            }
        }
        if unfinished || units.is_empty() {
            return None;
        }
        let mut data = Vec::with_capacity(units.iter().map(|u| u.len() + 4).sum());
        for u in &units {
            data.extend_from_slice(&(u.len() as u32).to_be_bytes());
            data.extend_from_slice(u);
        }
        Some((data, keyframe))
    }

    fn is_empty(&self) -> bool {
        self.units.is_empty() && self.fragment.is_none()
    }

    fn described(&self) -> Option<&Described> {
        Some(&self.sets)
    }
}

/// A codec whose picture is made from all its payloads at once (VP8, VP9, AV1).
pub(crate) trait Whole {
    /// The sample, whether it is a keyframe, and what it describes, from one
    /// picture's payloads in order.
    fn assemble(payloads: &[&[u8]]) -> Option<(Vec<u8>, bool, Option<Described>)>;
}

/// VP8 (RFC 7741): the frame is the payloads after their descriptors.
#[derive(Debug)]
pub(crate) struct Vp8;

impl Whole for Vp8 {
    fn assemble(payloads: &[&[u8]]) -> Option<(Vec<u8>, bool, Option<Described>)> {
        let mut data = Vec::with_capacity(payloads.iter().map(|p| p.len()).sum());
        for (i, p) in payloads.iter().enumerate() {
            let piece = vp8::piece(p)?;
            if (i == 0) != piece.frame_start {
                return None;
            }
            data.extend_from_slice(piece.data);
        }
        let keyframe = vp8::is_key_frame(&data);
        let size =
            vp8::key_frame_size(&data).map(|(width, height)| Described::Vp8 { width, height });
        (!data.is_empty()).then_some((data, keyframe, size))
    }
}

/// VP9 (RFC 9628): the layer frames, as one superframe when there are several.
#[derive(Debug)]
pub(crate) struct Vp9;

impl Whole for Vp9 {
    fn assemble(payloads: &[&[u8]]) -> Option<(Vec<u8>, bool, Option<Described>)> {
        let f = vp9::frame(payloads)?;
        Some((f.data, f.keyframe, f.info.map(Described::Vp9)))
    }
}

/// AV1 (the AOM RTP format): the temporal unit's OBUs, each with its size.
#[derive(Debug)]
pub(crate) struct Av1;

impl Whole for Av1 {
    fn assemble(payloads: &[&[u8]]) -> Option<(Vec<u8>, bool, Option<Described>)> {
        let u = av1::temporal_unit(payloads)?;
        let described = u.sequence_header.and_then(|sequence_header| {
            let config = av1::sequence_config(&sequence_header)?;
            Some(Described::Av1 {
                sequence_header,
                config,
            })
        });
        Some((u.data, u.keyframe, described))
    }
}

/// A picture of a [`Whole`] codec: its payloads until the last, then the codec's
/// assembly.
#[derive(Debug)]
pub(crate) struct Payloads<C> {
    payloads: Vec<Vec<u8>>,
    described: Option<Described>,
    codec: std::marker::PhantomData<C>,
}

impl<C> Default for Payloads<C> {
    fn default() -> Self {
        Payloads {
            payloads: Vec::new(),
            described: None,
            codec: std::marker::PhantomData,
        }
    }
}

impl<C: Whole + std::fmt::Debug> Picture for Payloads<C> {
    fn add(&mut self, payload: &[u8]) -> bool {
        self.payloads.push(payload.to_vec());
        true
    }

    fn lost(&mut self) {}

    fn finish(&mut self) -> Option<(Vec<u8>, bool)> {
        let payloads = std::mem::take(&mut self.payloads);
        let parts: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let (data, keyframe, described) = C::assemble(&parts)?;
        if described.is_some() {
            self.described = described;
        }
        Some((data, keyframe))
    }

    fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }

    fn described(&self) -> Option<&Described> {
        self.described.as_ref()
    }
}

/// Reassembles one codec's pictures from its RTP packets: a picture ends at its
/// marker or when the next one's timestamp begins, and one that lost a packet is
/// dropped together with every picture after it until a keyframe.
#[derive(Debug, Default)]
pub(crate) struct Frames<P> {
    /// The timestamp of the picture being gathered.
    current: Option<u32>,
    picture: P,
    /// A packet of the current picture was lost, or did not fit: it is dropped.
    broken: bool,
    /// A picture was lost since the last keyframe: what follows cannot be decoded.
    need_keyframe: bool,
    last_seq: Option<u64>,
}

/// H.264 pictures; parameter sets SPS, PPS.
pub(crate) type H264Frames = Frames<Nal<H264>>;
/// H.265 pictures; parameter sets VPS, SPS, PPS.
pub(crate) type H265Frames = Frames<Nal<H265>>;

impl<P: Picture> Frames<P> {
    /// One RTP packet (its extended sequence number, timestamp, marker and payload);
    /// the picture it completes, if any.
    pub(crate) fn packet(
        &mut self,
        seq: u64,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Option<Sample> {
        let lost = self.last_seq.is_some_and(|last| seq != last + 1);
        if self.last_seq.is_some_and(|last| seq <= last) {
            return None;
        }
        self.last_seq = Some(seq);
        let mut done = None;
        if self.current.is_some_and(|ts| ts != timestamp) {
            // A new picture began without the last one's marker: close it.
            done = self.finish();
        }
        if lost {
            self.broken = true;
            self.picture.lost();
        }
        self.current.get_or_insert(timestamp);
        if !self.picture.add(payload) {
            self.broken = true;
        }
        if marker {
            let last = self.finish();
            return done.or(last);
        }
        done
    }

    /// What the file's sample entry needs, once seen.
    pub(crate) fn described(&self) -> Option<&Described> {
        self.picture.described()
    }

    /// Closes the picture being gathered; the sample, unless it or a picture it
    /// depends on was lost.
    fn finish(&mut self) -> Option<Sample> {
        let timestamp = self.current.take()?;
        let empty = self.picture.is_empty();
        let made = self.picture.finish();
        let broken = std::mem::take(&mut self.broken) || (made.is_none() && !empty);
        if broken {
            self.need_keyframe = true;
            return None;
        }
        let (data, keyframe) = made?;
        if self.need_keyframe && !keyframe {
            return None;
        }
        self.need_keyframe = false;
        Some(Sample {
            data,
            timestamp,
            keyframe,
        })
    }
}

#[cfg(test)]
fn sets<P: Picture>(f: &Frames<P>) -> [Option<Vec<u8>>; 3] {
    match f.described() {
        Some(Described::ParameterSets(s)) => s.clone(),
        _ => Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f, 0x8c, 0x68];
    const PPS: &[u8] = &[0x68, 0xce, 0x3c, 0x80];

    fn stap(units: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x78];
        for u in units {
            p.extend_from_slice(&(u.len() as u16).to_be_bytes());
            p.extend_from_slice(u);
        }
        p
    }

    fn fu(kind: u8, start: bool, end: bool, data: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x7c,
            kind | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 },
        ];
        p.extend_from_slice(data);
        p
    }

    #[test]
    fn an_idr_in_fragments_after_parameter_sets_becomes_one_keyframe_sample() {
        let mut f = H264Frames::default();
        assert_eq!(f.packet(1, 3000, false, &stap(&[SPS, PPS])), None);
        assert_eq!(f.packet(2, 3000, false, &fu(5, true, false, &[1, 2])), None);
        let s = f
            .packet(3, 3000, true, &fu(5, false, true, &[3]))
            .expect("a sample");
        assert!(s.keyframe);
        let mut want = Vec::new();
        for u in [SPS, PPS, &[0x65, 1, 2, 3][..]] {
            want.extend_from_slice(&(u.len() as u32).to_be_bytes());
            want.extend_from_slice(u);
        }
        assert_eq!(s.data, want);
        assert_eq!(sets(&f)[..2], [Some(SPS.to_vec()), Some(PPS.to_vec())]);
        // A delta picture in one packet.
        let d = f.packet(4, 6000, true, &[0x41, 9]).expect("a delta sample");
        assert!(!d.keyframe);
        assert_eq!(d.timestamp, 6000);
    }

    #[test]
    fn a_lost_packet_drops_its_picture_and_the_rest_until_a_keyframe() {
        let mut f = H264Frames::default();
        assert!(f.packet(1, 0, true, &[0x65, 1]).is_some());
        assert_eq!(f.packet(2, 3000, false, &fu(1, true, false, &[1])), None);
        // Packet 3 lost: the picture at 3000 is broken.
        assert_eq!(f.packet(4, 3000, true, &fu(1, false, true, &[2])), None);
        assert_eq!(
            f.packet(5, 6000, true, &[0x41, 1]),
            None,
            "refers to the lost one"
        );
        let k = f
            .packet(6, 9000, true, &[0x65, 2])
            .expect("the next keyframe");
        assert!(k.keyframe);
        assert!(f.packet(7, 12000, true, &[0x41, 3]).is_some());
    }

    #[test]
    fn garbage_gives_no_sample_and_no_panic() {
        let mut f = H264Frames::default();
        for (i, p) in [
            &[][..],
            &[0x7c],
            &[0x78, 0, 9, 1],
            &[0x7c, 0x45],
            &[0x1c, 0xff],
        ]
        .iter()
        .enumerate()
        {
            let _ = f.packet(i as u64, 0, true, p);
        }
    }
}

#[cfg(test)]
mod h265_tests {
    use super::*;

    #[test]
    fn an_h265_irap_in_fragments_after_parameter_sets_in_an_aggregation_becomes_a_keyframe() {
        let (vps, sps, pps) = (&[0x40, 1, 7][..], &[0x42, 1, 8][..], &[0x44, 1, 9][..]);
        let mut ap = vec![0x60, 1];
        for u in [vps, sps, pps] {
            ap.extend_from_slice(&(u.len() as u16).to_be_bytes());
            ap.extend_from_slice(u);
        }
        let mut f = H265Frames::default();
        assert_eq!(f.packet(1, 0, false, &ap), None);
        // An IDR_W_RADL (19) in two fragments.
        assert_eq!(f.packet(2, 0, false, &[0x62, 1, 0x80 | 19, 0xaa]), None);
        let s = f
            .packet(3, 0, true, &[0x62, 1, 0x40 | 19, 0xbb])
            .expect("a sample");
        assert!(s.keyframe);
        assert_eq!(sets(&f)[0].as_deref(), Some(vps));
        assert!(
            s.data.ends_with(&[0, 0, 0, 4, 19 << 1, 1, 0xaa, 0xbb]),
            "{:?}",
            s.data
        );
        let d = f
            .packet(4, 3000, true, &[0x02, 1, 5])
            .expect("a trailing picture");
        assert!(!d.keyframe);
        // A lost packet: nothing until the next IRAP.
        assert_eq!(f.packet(6, 6000, true, &[0x02, 1, 6]), None);
        assert!(
            f.packet(7, 9000, true, &[0x26, 1, 7])
                .is_some_and(|s| s.keyframe)
        );
    }
}

#[cfg(test)]
mod whole_tests {
    use super::*;

    /// A VP8 key frame's first ten bytes (640×360), then its data.
    const KEY: [u8; 12] = [
        0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01, 7, 8,
    ];

    #[test]
    fn a_vp8_key_frame_in_two_packets_becomes_one_sample_that_describes_its_size() {
        let mut f = Frames::<Payloads<Vp8>>::default();
        let mut first = vec![0x10];
        first.extend_from_slice(&KEY[..6]);
        let mut second = vec![0x00];
        second.extend_from_slice(&KEY[6..]);
        assert_eq!(f.packet(1, 0, false, &first), None);
        let s = f.packet(2, 0, true, &second).expect("a sample");
        assert!(s.keyframe);
        assert_eq!(s.data, KEY);
        assert!(matches!(
            f.described(),
            Some(Described::Vp8 {
                width: 640,
                height: 360
            })
        ));
        // An inter frame, then one missing its first packet: dropped, and so is
        // the next inter frame, until a key frame.
        assert!(
            f.packet(3, 3000, true, &[0x10, 0x31, 0, 0])
                .is_some_and(|s| !s.keyframe)
        );
        assert_eq!(f.packet(5, 6000, true, &[0x00, 1, 2]), None);
        assert_eq!(f.packet(6, 9000, true, &[0x10, 0x31, 0, 0]), None);
        assert!(f.packet(7, 12000, false, &first).is_none());
        assert!(
            f.packet(8, 12000, true, &second)
                .is_some_and(|s| s.keyframe)
        );
    }

    #[test]
    fn a_vp8_picture_that_does_not_begin_with_a_frame_start_is_dropped() {
        let mut f = Frames::<Payloads<Vp8>>::default();
        assert_eq!(f.packet(1, 0, true, &[0x00, 0x50, 0x42]), None);
        assert_eq!(f.packet(2, 3000, true, &[]), None);
    }
}
