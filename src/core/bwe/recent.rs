//! What the last quarter second of feedback says: the share of packets lost, and the
//! rate the path delivered them at. The delay detector needs a few hundred
//! milliseconds of trend, and the loss-based estimate half a second of packets, before
//! they move; a link that suddenly carries a third of what it is sent overflows its
//! queue within a feedback interval, and these figures show it at once, so a viewer
//! can be moved down before its picture stalls for long.

use std::time::{Duration, Instant};

/// The window the figures are taken over.
const RECENT_WINDOW: Duration = Duration::from_millis(250);
/// Fewest packets for a loss share or a rate.
const RECENT_MIN_PACKETS: u32 = 10;
/// Shortest span of arrivals for a rate.
const RECENT_MIN_SPAN_US: i64 = 50_000;

/// One window's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    lost: u32,
    received: u32,
    bytes: u64,
    first_arrival: Option<i64>,
    last_arrival: i64,
}

impl Counts {
    fn loss(&self) -> Option<f64> {
        let total = self.lost + self.received;
        (total >= RECENT_MIN_PACKETS).then(|| f64::from(self.lost) / f64::from(total))
    }

    fn delivered_bps(&self) -> Option<f64> {
        let span = self.last_arrival - self.first_arrival?;
        (self.received >= RECENT_MIN_PACKETS && span >= RECENT_MIN_SPAN_US)
            .then(|| self.bytes as f64 * 8e6 / span as f64)
    }
}

/// The last complete window and the one filling, and the packets' transit times.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Recent {
    filling: Counts,
    done: Option<Counts>,
    started: Option<Instant>,
    /// The shortest transit (arrival on the receiver's clock less the send time on
    /// ours) seen, and the newest: their difference is the queue.
    fastest: Option<i64>,
    newest: i64,
}

impl Recent {
    /// Starts a new window when the current one is old enough (call once per
    /// feedback, before its packets).
    pub(super) fn roll(&mut self, now: Instant) {
        let start = *self.started.get_or_insert(now);
        if now.saturating_duration_since(start) >= RECENT_WINDOW {
            self.done = Some(std::mem::take(&mut self.filling));
            self.started = Some(now);
        }
    }

    pub(super) fn lost(&mut self) {
        self.filling.lost += 1;
    }

    pub(super) fn received(&mut self, arrival: i64, bytes: u64) {
        let c = &mut self.filling;
        c.received += 1;
        c.bytes += bytes;
        c.first_arrival = Some(c.first_arrival.map_or(arrival, |f| f.min(arrival)));
        c.last_arrival = c.last_arrival.max(arrival);
    }

    /// A received packet's transit time, in µs of two clocks' difference.
    pub(super) fn transit(&mut self, us: i64) {
        self.fastest = Some(self.fastest.map_or(us, |f| f.min(us)));
        self.newest = us;
    }

    /// The queue the newest packet waited in: how much longer than the fastest it
    /// took.
    pub(super) fn queue_delay(&self) -> Duration {
        let us = self.fastest.map_or(0, |f| self.newest.saturating_sub(f));
        Duration::from_micros(u64::try_from(us).unwrap_or(0))
    }

    /// The share of packets lost in the newest window with enough of them.
    pub(super) fn loss(&self) -> Option<f64> {
        self.filling
            .loss()
            .or_else(|| self.done.and_then(|d| d.loss()))
    }

    /// The rate the path delivered at in the newest window with enough arrivals.
    pub(super) fn delivered_bps(&self) -> Option<f64> {
        self.filling
            .delivered_bps()
            .or_else(|| self.done.and_then(|d| d.delivered_bps()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sudden_overflow_shows_within_one_window() {
        let t0 = Instant::now();
        let mut r = Recent::default();
        r.roll(t0);
        // 30 packets of 1200 bytes arrive over 100 ms, 30 more are lost.
        for i in 0..30 {
            r.received(i * 3_333, 1200);
            r.lost();
        }
        assert_eq!(r.loss(), Some(0.5));
        let bps = r.delivered_bps().expect("a rate");
        assert!((2_800_000.0..3_000_000.0).contains(&bps), "{bps}");
        // A new window with too few packets still reads the last one.
        r.roll(t0 + RECENT_WINDOW);
        r.received(200_000, 1200);
        assert_eq!(r.loss(), Some(0.5));
        assert!(Recent::default().loss().is_none());
    }

    #[test]
    fn the_queue_is_the_transit_beyond_the_fastest() {
        let mut r = Recent::default();
        assert_eq!(r.queue_delay(), Duration::ZERO);
        for us in [50_000, 20_000, 21_000, 320_000] {
            r.transit(us);
        }
        assert_eq!(r.queue_delay(), Duration::from_millis(300));
    }
}
