//! H.264 NAL units in RTP payloads (RFC 6184): a single NAL unit packet, the units of
//! a STAP-A, or the start of an FU-A. One iterator, [`nal_units`], serves keyframe
//! detection, picture sizes and parameter-set learning; [`split`] serves the recorder.

use super::nal::Piece;

/// NAL unit type of an IDR slice.
pub(crate) const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub(crate) const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub(crate) const NAL_PPS: u8 = 8;
/// Single-time aggregation packet (RFC 6184 §5.7.1).
pub(crate) const NAL_STAP_A: u8 = 24;
/// Fragmentation unit A (RFC 6184 §5.8).
pub(crate) const NAL_FU_A: u8 = 28;
/// Mask of the NAL unit type in a NAL header byte.
pub(crate) const NAL_TYPE_MASK: u8 = 0x1f;

/// One NAL unit (or the start of one) found in an RTP payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nal<'a> {
    /// Its type (1–23).
    pub kind: u8,
    /// Its bytes from its header byte on. For an FU-A start fragment, from the FU
    /// header on, whose low five bits are the unit's type (the rest of the unit is in
    /// later packets); for a STAP-A cut short, what there is.
    pub bytes: &'a [u8],
    /// False for an FU-A start fragment and for a unit cut short.
    pub whole: bool,
}

/// The NAL units an RTP payload carries, in order. Middle and end fragments of an
/// FU-A, and packet types wishd does not read (STAP-B, MTAP, FU-B), give none. Never
/// panics, whatever the input.
pub fn nal_units(payload: &[u8]) -> impl Iterator<Item = Nal<'_>> {
    let header = payload.first().copied().unwrap_or(0);
    let kind = header & NAL_TYPE_MASK;
    let mut single = None;
    let mut stap: &[u8] = &[];
    match kind {
        1..=23 => {
            single = Some(Nal {
                kind,
                bytes: payload,
                whole: true,
            })
        }
        NAL_STAP_A => stap = payload.get(1..).unwrap_or_default(),
        NAL_FU_A => {
            single = payload
                .get(1)
                .filter(|fu| *fu & 0x80 != 0 && (1..=23).contains(&(*fu & NAL_TYPE_MASK)))
                .map(|fu| Nal {
                    kind: fu & NAL_TYPE_MASK,
                    bytes: payload.get(1..).unwrap_or_default(),
                    whole: false,
                })
        }
        _ => {}
    }
    let aggregated = std::iter::from_fn(move || {
        let [hi, lo, tail @ ..] = stap else {
            return None;
        };
        let size = usize::from(u16::from_be_bytes([*hi, *lo]));
        let (bytes, whole) = match tail.get(..size) {
            Some(nal) => (nal, true),
            None => (tail, false),
        };
        stap = if whole { &tail[size..] } else { &[] };
        let kind = bytes.first()? & NAL_TYPE_MASK;
        Some(Nal { kind, bytes, whole })
    });
    single.into_iter().chain(aggregated)
}

/// What an H.264 RTP payload holds (RFC 6184): single NAL unit packets, STAP-A and
/// FU-A; other packet types give nothing. Never panics.
pub(crate) fn split(payload: &[u8]) -> Piece<'_> {
    let header = payload.first().copied().unwrap_or(0);
    match header & NAL_TYPE_MASK {
        1..=23 => Piece::Units(vec![payload]),
        NAL_STAP_A => super::nal::aggregated(payload.get(1..).unwrap_or_default()),
        NAL_FU_A => match payload.get(1) {
            Some(&fu) if payload.len() > 2 => {
                let data = &payload[2..];
                let rebuilt = || vec![(header & 0xe0) | (fu & NAL_TYPE_MASK)];
                match (fu & 0x80 != 0, fu & 0x40 != 0) {
                    (true, true) => Piece::StartEnd(rebuilt(), data),
                    (true, false) => Piece::Start(rebuilt(), data),
                    (false, end) => Piece::More(data, end),
                }
            }
            _ => Piece::Broken,
        },
        _ => Piece::Units(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(payload: &[u8]) -> Vec<(u8, bool)> {
        nal_units(payload).map(|n| (n.kind, n.whole)).collect()
    }

    #[test]
    fn single_units_aggregates_and_fragment_starts() {
        assert_eq!(kinds(&[0x65, 0x88]), vec![(NAL_IDR, true)]);
        let stap = [0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce];
        assert_eq!(kinds(&stap), vec![(NAL_SPS, true), (NAL_PPS, true)]);
        let units: Vec<_> = nal_units(&stap).collect();
        assert_eq!(units[1].bytes, &[0x68, 0xce]);
        // FU-A: only the start fragment (S=1) names a unit.
        assert_eq!(kinds(&[0x7c, 0x85, 0x88]), vec![(NAL_IDR, false)]);
        assert!(kinds(&[0x7c, 0x05, 0x88]).is_empty());
        assert!(kinds(&[0x7c, 0x45, 0x88]).is_empty());
    }

    #[test]
    fn a_stap_a_cut_short_gives_what_there_is_and_garbage_never_panics() {
        assert_eq!(kinds(&[0x78, 0, 9, 0x67, 0x42]), vec![(NAL_SPS, false)]);
        assert!(kinds(&[]).is_empty());
        assert!(kinds(&[0x78, 0]).is_empty());
        assert!(kinds(&[0x78, 0, 0, 0, 0]).is_empty());
        for len in 0..48 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 53 + 0x77) as u8).collect();
            let _ = nal_units(&junk).count();
        }
    }
}
