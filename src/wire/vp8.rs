//! VP8 in RTP (RFC 7741): the payload descriptor in front of each packet's piece of a
//! frame, and the little a file needs from the frame itself (key frame or not, and a
//! key frame's picture size).

/// One packet's part of a VP8 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Vp8Piece<'a> {
    /// The packet begins a frame (S set, partition 0).
    pub(crate) frame_start: bool,
    /// The frame bytes after the descriptor.
    pub(crate) data: &'a [u8],
}

/// Splits a payload into its descriptor and frame bytes; `None` when the descriptor
/// runs past the end.
pub(crate) fn piece(payload: &[u8]) -> Option<Vp8Piece<'_>> {
    let (&first, mut rest) = payload.split_first()?;
    if first & 0x80 != 0 {
        let (&ext, after) = rest.split_first()?;
        rest = after;
        if ext & 0x80 != 0 {
            // Picture ID: 7 bits, or 15 when its M bit is set.
            let (&pid, after) = rest.split_first()?;
            rest = after;
            if pid & 0x80 != 0 {
                rest = rest.get(1..)?;
            }
        }
        if ext & 0x40 != 0 {
            rest = rest.get(1..)?; // TL0PICIDX
        }
        if ext & 0x30 != 0 {
            rest = rest.get(1..)?; // TID, Y, KEYIDX
        }
    }
    Some(Vp8Piece {
        frame_start: first & 0x10 != 0 && first & 0x07 == 0,
        data: rest,
    })
}

/// Whether a whole frame (its first bytes) is a key frame: the frame tag's P bit
/// clear (RFC 6386, 9.1).
pub(crate) fn is_key_frame(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// A key frame's picture size, from the header after its start code.
pub(crate) fn key_frame_size(frame: &[u8]) -> Option<(u16, u16)> {
    if !is_key_frame(frame) || frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([*frame.get(6)?, *frame.get(7)?]) & 0x3fff;
    let h = u16::from_le_bytes([*frame.get(8)?, *frame.get(9)?]) & 0x3fff;
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key frame's first ten bytes for 640×360.
    const KEY: [u8; 10] = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];

    #[test]
    fn a_descriptor_with_every_extension_is_skipped_to_the_frame() {
        // X, S; I with a 15-bit picture id, L, T.
        let mut p = vec![0x90, 0xe0, 0x81, 0x23, 0x07, 0x40];
        p.extend_from_slice(&KEY);
        let piece = piece(&p).expect("a piece");
        assert!(piece.frame_start);
        assert_eq!(piece.data, KEY);
        assert!(is_key_frame(piece.data));
        assert_eq!(key_frame_size(piece.data), Some((640, 360)));
    }

    #[test]
    fn a_later_partition_or_a_continuation_does_not_start_a_frame() {
        assert!(!piece(&[0x11, 1]).expect("piece").frame_start);
        assert!(!piece(&[0x00, 1]).expect("piece").frame_start);
        assert!(piece(&[0x10, 1]).expect("piece").frame_start);
        assert!(!is_key_frame(&[0x31, 0, 0]));
        assert_eq!(
            key_frame_size(&[0x31, 0, 0, 0x9d, 1, 0x2a, 1, 1, 1, 1]),
            None
        );
    }

    #[test]
    fn truncated_descriptors_give_nothing_and_never_panic() {
        for p in [
            &[][..],
            &[0x80],
            &[0x90, 0x80],
            &[0x90, 0x80, 0x80],
            &[0x90, 0x40],
        ] {
            assert_eq!(piece(p), None, "{p:?}");
        }
        for n in 0..KEY.len() {
            let _ = key_frame_size(&KEY[..n]);
        }
    }
}
