//! H.265 NAL units in RTP payloads (RFC 7798, without DONL): the unit types the
//! recorder looks at, and [`split`].

use super::nal::Piece;

/// NAL unit types (ITU-T H.265 Table 7-1).
pub(crate) const H265_VPS: u8 = 32;
pub(crate) const H265_SPS: u8 = 33;
pub(crate) const H265_PPS: u8 = 34;
const H265_AP: u8 = 48;
const H265_FU: u8 = 49;

/// The type of the NAL unit whose first header byte is `header`.
pub(crate) fn unit_type(header: u8) -> u8 {
    (header >> 1) & 0x3f
}

/// What an H.265 RTP payload holds: single NAL unit packets, aggregation packets and
/// fragmentation units; anything else is broken. Never panics.
pub(crate) fn split(payload: &[u8]) -> Piece<'_> {
    let (h0, h1) = match payload {
        [h0, h1, ..] => (*h0, *h1),
        _ => return Piece::Broken,
    };
    match unit_type(h0) {
        0..=47 if payload.len() > 2 => Piece::Units(vec![payload]),
        H265_AP => super::nal::aggregated(&payload[2..]),
        H265_FU => match payload.get(2) {
            Some(&fu) if payload.len() > 3 => {
                let data = &payload[3..];
                let rebuilt = || vec![(h0 & 0x81) | ((fu & 0x3f) << 1), h1];
                match (fu & 0x80 != 0, fu & 0x40 != 0) {
                    (true, true) => Piece::StartEnd(rebuilt(), data),
                    (true, false) => Piece::Start(rebuilt(), data),
                    (false, end) => Piece::More(data, end),
                }
            }
            _ => Piece::Broken,
        },
        _ => Piece::Broken,
    }
}
