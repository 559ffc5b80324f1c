//! One clock for every timestamp the tool takes: nanoseconds since the Unix epoch,
//! read from the monotonic clock after one anchoring read of the wall clock.
//!
//! Publisher and viewers of one process share the anchor, so one-way delays are
//! differences of the same monotonic clock. A publisher in another process on the
//! same host embeds the same kind of value in its payloads, off by the difference of
//! the two anchors (well under a microsecond on an undisturbed host).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::payload::{AUDIO, MAX_LAYERS};

struct Anchor {
    instant: Instant,
    unix_ns: u64,
}

static ANCHOR: OnceLock<Anchor> = OnceLock::new();

fn anchor() -> &'static Anchor {
    ANCHOR.get_or_init(|| Anchor {
        instant: Instant::now(),
        unix_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    })
}

/// Nanoseconds since the Unix epoch, from the monotonic clock.
pub fn now_ns() -> u64 {
    at_ns(Instant::now())
}

/// The same scale for an `Instant` taken earlier (e.g. a socket receive time).
pub fn at_ns(t: Instant) -> u64 {
    let a = anchor();
    match t.checked_duration_since(a.instant) {
        Some(d) => a.unix_ns + d.as_nanos() as u64,
        None => a.unix_ns - a.instant.duration_since(t).as_nanos() as u64,
    }
}

/// Send times of the publisher's packets by track and sequence number, shared with
/// the viewers of the same process so they need not decrypt a payload to know when it
/// left (SRTP leaves the RTP header in clear, the payload not).
///
/// A track is one sequence number space: audio, or the video of one simulcast layer
/// (see [`track`]). One slot per 16-bit sequence number and track; a slot holds the
/// upper 16 bits of the extended sequence number beside a 48-bit send time, so a
/// stale slot (65 536 packets old, minutes at 300 packets/s) is recognised and ignored.
pub struct SendTable {
    slots: [Box<[AtomicU64]>; TRACKS],
}

/// Tracks of a [`SendTable`]: audio, then one per simulcast layer a marker can name.
pub const TRACKS: usize = 1 + MAX_LAYERS as usize;

/// The [`SendTable`] track of a packet of `kind` ([`AUDIO`] or [`VIDEO`]) on simulcast
/// layer `layer` (0 without simulcast): 0 for audio, 1 for video without simulcast.
pub fn track(kind: u8, layer: u8) -> usize {
    if kind == AUDIO {
        0
    } else {
        1 + usize::from(layer % MAX_LAYERS)
    }
}

const SLOTS: usize = 1 << 16;
const NS_BITS: u32 = 48;
const NS_MASK: u64 = (1 << NS_BITS) - 1;

impl Default for SendTable {
    fn default() -> Self {
        let mk = || (0..SLOTS).map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        SendTable {
            slots: std::array::from_fn(|_| mk()),
        }
    }
}

impl SendTable {
    /// Records that packet `seq` (extended) of `track` (see [`track`]) left at `ns`.
    pub fn record(&self, track: usize, seq: u64, ns: u64) {
        let v = ((seq >> 16) & 0xffff) << NS_BITS | (ns & NS_MASK);
        self.slots[track % TRACKS][(seq & 0xffff) as usize].store(v, Ordering::Relaxed);
    }

    /// The send time of packet `seq` of `track`, if it is still in the table. `near`
    /// is any current time on the same scale (it restores the bits above 48).
    pub fn lookup(&self, track: usize, seq: u64, near: u64) -> Option<u64> {
        let v = self.slots[track % TRACKS][(seq & 0xffff) as usize].load(Ordering::Relaxed);
        if v == 0 || v >> NS_BITS != (seq >> 16) & 0xffff {
            return None;
        }
        let low = v & NS_MASK;
        let mut ns = (near & !NS_MASK) | low;
        if ns > near + (NS_MASK >> 1) {
            ns = ns.wrapping_sub(NS_MASK + 1);
        }
        Some(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_table_round_trips_and_rejects_stale_slots() {
        let t = SendTable::default();
        let now = now_ns();
        t.record(1, 70_000, now - 5_000);
        assert_eq!(t.lookup(1, 70_000, now), Some(now - 5_000));
        assert_eq!(t.lookup(0, 70_000, now), None, "other kind");
        // Same slot, other rollover: stale.
        assert_eq!(t.lookup(1, 70_000 + 65_536, now), None);
        t.record(0, 3, now);
        assert_eq!(t.lookup(0, 3, now + 1_000), Some(now));
    }

    #[test]
    fn simulcast_layers_keep_their_own_sequence_numbers() {
        use crate::payload::VIDEO;
        assert_eq!((track(AUDIO, 0), track(VIDEO, 0)), (0, 1));
        let t = SendTable::default();
        let now = now_ns();
        for layer in 0..MAX_LAYERS {
            t.record(track(VIDEO, layer), 500, now - u64::from(layer));
        }
        for layer in 0..MAX_LAYERS {
            let sent = t.lookup(track(VIDEO, layer), 500, now);
            assert_eq!(sent, Some(now - u64::from(layer)));
        }
        assert_eq!(t.lookup(track(AUDIO, 0), 500, now), None);
    }

    #[test]
    fn clock_is_monotonic_and_near_wall_time() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(wall.abs_diff(b) < 1_000_000_000);
    }
}
