//! The sent packets a feedback report is matched against: a ring of 8-byte records,
//! indexed by the extended transport-wide sequence number, and the unwrapping of the
//! 16-bit numbers a report names into extended ones. A ring rather than a map, so
//! that nothing allocates per packet and a packet too old for it is simply no longer
//! known.
//!
//! The ring starts small and doubles each time a report names a packet it no longer
//! holds (up to [`HISTORY_MAX`] back): the feedback lags behind it. What it
//! must hold is the packets sent in a round trip, a feedback interval and the path's
//! queue, which is a few dozen on a good path and can be a thousand at 10 Mbit/s
//! behind a deep queue. Most viewers never need more than the first size.

/// Records at first: 1 KiB, about 0.4 s of a 2.5 Mbit/s layer with its audio, which
/// holds a round trip of 300 ms and a feedback interval.
pub(super) const HISTORY_MIN: usize = 128;
/// Records at most: 16 KiB, about 1.6 s at 10 Mbit/s.
pub(super) const HISTORY_MAX: usize = 2048;

/// One sent packet: when (µs since [`Bwe`](super::Bwe)'s base, wrapping, which is
/// fine while records are less than 71 minutes apart), how big, and [`Sent::tag`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Sent {
    pub(super) send_us: u32,
    pub(super) size: u16,
    /// The flags below, and the packet's extended sequence number divided by the
    /// ring's length (its low 12 bits) to tell it from the packet a ring before or
    /// after in the same slot.
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
const ROUND_MASK: u16 = 0x0fff;

impl Sent {
    /// Reported, received or lost.
    pub(super) fn reported(&self) -> bool {
        self.tag & (ACKED | LOST) != 0
    }
}

/// The ring of sent packets.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct History {
    ring: Box<[Sent]>,
}

impl History {
    pub(super) fn new() -> Self {
        History {
            ring: vec![Sent::default(); HISTORY_MIN].into_boxed_slice(),
        }
    }

    /// How many packets it holds.
    pub(super) fn len(&self) -> usize {
        self.ring.len()
    }

    fn slot(&self, ext: u64) -> usize {
        (ext % self.ring.len() as u64) as usize
    }

    fn round(&self, ext: u64) -> u16 {
        (ext / self.ring.len() as u64) as u16 & ROUND_MASK
    }

    /// The record of `ext`, if the ring still holds it.
    pub(super) fn get(&self, ext: u64) -> Option<Sent> {
        let rec = self.ring[self.slot(ext)];
        (rec.tag & VALID != 0 && rec.tag & ROUND_MASK == self.round(ext)).then_some(rec)
    }

    /// Records `ext`; `flags` are the tag's flag bits.
    pub(super) fn put(&mut self, ext: u64, send_us: u32, size: u16, flags: u16) {
        let slot = self.slot(ext);
        self.ring[slot] = Sent {
            send_us,
            size,
            tag: VALID | flags | self.round(ext),
        };
    }

    /// Sets `flags` of `ext`'s record and clears `clear`.
    pub(super) fn mark(&mut self, ext: u64, flags: u16, clear: u16) {
        let slot = self.slot(ext);
        self.ring[slot].tag = (self.ring[slot].tag | flags) & !clear;
    }

    /// Doubles the ring (up to [`HISTORY_MAX`]), keeping the records of the packets
    /// up to `newest` it holds. False when it is as long as it may be.
    pub(super) fn grow(&mut self, newest: u64) -> bool {
        let old = self.ring.len();
        if old >= HISTORY_MAX {
            return false;
        }
        let mut grown = History {
            ring: vec![Sent::default(); old * 2].into_boxed_slice(),
        };
        for ext in newest.saturating_sub(old as u64 - 1)..=newest {
            if let Some(rec) = self.get(ext) {
                grown.put(ext, rec.send_us, rec.size, rec.tag & !ROUND_MASK & !VALID);
            }
        }
        *self = grown;
        true
    }
}

/// Extends `seq` to the extended sequence number nearest to `near`.
pub(super) fn extend_seq(near: u64, seq: u16) -> Option<u64> {
    let diff = i64::from(seq.wrapping_sub(near as u16) as i16);
    near.checked_add_signed(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grown_ring_keeps_every_record_it_held_and_their_flags() {
        let mut h = History::new();
        let first = 70_000u64;
        let newest = first + HISTORY_MIN as u64 + 99;
        for ext in first..=newest {
            h.put(ext, ext as u32, 1200, if ext % 7 == 0 { ACKED } else { 0 });
        }
        // The oldest 100 were overwritten by the newest.
        assert_eq!(h.get(first), None);
        assert!(h.grow(newest));
        assert_eq!(h.len(), 2 * HISTORY_MIN);
        for ext in first..=newest {
            let kept = newest - ext < HISTORY_MIN as u64;
            let rec = h.get(ext);
            assert_eq!(rec.is_some(), kept, "{ext}");
            if let Some(rec) = rec {
                assert_eq!(rec.send_us, ext as u32);
                assert_eq!(rec.reported(), ext % 7 == 0, "{ext}");
            }
        }
        // Room now for the next ring's worth without losing the held ones.
        for ext in newest + 1..newest + HISTORY_MIN as u64 {
            h.put(ext, ext as u32, 1200, 0);
        }
        assert!(h.get(newest - HISTORY_MIN as u64 + 1).is_some());
    }

    #[test]
    fn the_ring_stops_growing_at_its_maximum() {
        let mut h = History::new();
        let mut grew = 0;
        while h.grow(10_000) {
            grew += 1;
        }
        assert_eq!(h.len(), HISTORY_MAX);
        assert_eq!(1 << grew, HISTORY_MAX / HISTORY_MIN);
    }
}
