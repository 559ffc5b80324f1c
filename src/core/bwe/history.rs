//! The sent packets a feedback report is matched against: a fixed ring of 8-byte
//! records, indexed by the extended transport-wide sequence number, and the
//! unwrapping of the 16-bit numbers a report names into extended ones. A fixed ring
//! rather than a map, so that nothing allocates per packet and a packet too old
//! for it is simply no longer known.

/// Sent packets remembered for their feedback. Feedback comes a round trip plus a
/// feedback interval (50–100 ms) after the send, and a congested path adds its queue:
/// 1024 packets of 1200 bytes are about 1 s at 10 Mbit/s and 4 s at 2.5 Mbit/s.
pub(super) const HISTORY: usize = 1024;

/// One sent packet: when (µs since [`Bwe`](super::Bwe)'s base, wrapping, which is
/// fine while records are less than 71 minutes apart), how big, and [`Sent::tag`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sent {
    pub(super) send_us: u32,
    pub(super) size: u16,
    /// The flags below, and the packet's extended sequence number divided by
    /// [`HISTORY`] (its low 12 bits) to tell it from the packet 1024 before or after
    /// in the same slot.
    pub(super) tag: u16,
}

/// The record holds a packet.
pub(super) const VALID: u16 = 1 << 15;
/// Reported received: later reports of it are duplicates.
pub(super) const ACKED: u16 = 1 << 14;
/// Reported lost (it may still arrive late).
pub(super) const LOST: u16 = 1 << 13;
/// Sent while a probe went out: its loss is the probe's doing, not the media's.
pub(super) const IN_PROBE: u16 = 1 << 12;
/// The bits of the tag that tell which packet the slot holds.
pub(super) const ROUND_MASK: u16 = 0x0fff;

/// The tag bits of an extended sequence number.
pub(super) fn round(ext: u64) -> u16 {
    (ext / HISTORY as u64) as u16 & ROUND_MASK
}

/// Extends `seq` to the extended sequence number nearest to `near`.
pub(super) fn extend_seq(near: u64, seq: u16) -> Option<u64> {
    let diff = i64::from(seq.wrapping_sub(near as u16) as i16);
    near.checked_add_signed(diff)
}

/// The history slot of an extended sequence number.
pub(super) fn slot(ext: u64) -> usize {
    (ext % HISTORY as u64) as usize
}
