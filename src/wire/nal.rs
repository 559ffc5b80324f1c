//! What an RTP payload of a NAL-unit codec (H.264, H.265) holds for the access unit
//! it belongs to: whole units, or a fragment of one. Read by [`super::h264::split`]
//! and [`super::h265::split`].

/// What one RTP payload holds for the access unit being gathered.
pub(crate) enum Piece<'a> {
    /// Whole NAL units (a single unit, or an aggregation's), header included.
    Units(Vec<&'a [u8]>),
    /// The first fragment of a unit: its rebuilt header, then the data.
    Start(Vec<u8>, &'a [u8]),
    /// A later fragment; `end` for the last.
    More(&'a [u8], bool),
    /// The start fragment is also the end.
    StartEnd(Vec<u8>, &'a [u8]),
    /// Something that cannot be read: the access unit is lost.
    Broken,
}

/// Splits an aggregation packet's body (after its header) into its units: 16-bit
/// sizes each followed by a unit (RFC 6184 STAP-A, RFC 7798 AP).
pub(crate) fn aggregated(mut rest: &[u8]) -> Piece<'_> {
    let mut units = Vec::new();
    while let [hi, lo, tail @ ..] = rest {
        let size = usize::from(u16::from_be_bytes([*hi, *lo]));
        let Some(unit) = tail.get(..size) else {
            return Piece::Broken;
        };
        if !unit.is_empty() {
            units.push(unit);
        }
        rest = &tail[size..];
    }
    Piece::Units(units)
}
