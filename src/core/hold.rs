//! How long a media worker holds the forwards it is about to write (`forward_hold`).
//!
//! Held forwards leave as one GSO run per viewer instead of one kernel message per
//! packet: less CPU per forwarded packet, for up to the hold in delay. A fixed hold
//! pays that delay at every load. [`HoldControl::following_load`] pays it only when
//! the CPU is short: the worker reports the time it spends busy, and the hold grows
//! from nothing while the worker is busy less than [`LOAD_LOW`] of the time to the
//! maximum at [`LOAD_HIGH`].
//!
//! The load is the busy fraction of windows of [`WINDOW`], smoothed so that each
//! window weighs half (and idle windows that passed without a report count as idle).
//! The hold lowers the load it follows, so the two settle where they meet, not at
//! either end.
//!
//! Sans-IO like the rest of the core: time comes in as arguments.

use std::time::{Duration, Instant};

/// Below this busy fraction the hold is zero.
pub const LOAD_LOW: f64 = 0.3;
/// At and above this busy fraction the hold is at its maximum.
pub(crate) const LOAD_HIGH: f64 = 0.7;
/// The load is measured over windows this long.
pub(crate) const WINDOW: Duration = Duration::from_millis(250);
/// The maximum of `forward_hold = "auto"`.
pub(crate) const AUTO_MAX: Duration = Duration::from_millis(20);

/// A worker's hold, fixed or following its load.
#[derive(Debug, Clone)]
pub struct HoldControl {
    /// The hold (fixed), or the most it may grow to (following the load).
    max: Duration,
    follows_load: bool,
    window_start: Option<Instant>,
    busy: Duration,
    load: f64,
    hold: Duration,
}

impl HoldControl {
    /// Always `hold` (zero: forwards are written as soon as they are made).
    pub(crate) fn fixed(hold: Duration) -> HoldControl {
        HoldControl {
            max: hold,
            follows_load: false,
            window_start: None,
            busy: Duration::ZERO,
            load: 0.0,
            hold,
        }
    }

    /// Zero while the worker is idle enough, up to `max` when it is busy.
    pub(crate) fn following_load(max: Duration) -> HoldControl {
        HoldControl {
            follows_load: true,
            hold: Duration::ZERO,
            ..HoldControl::fixed(max)
        }
    }

    /// The hold now.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// The smoothed busy fraction, 0 to 1.
    pub(crate) fn load(&self) -> f64 {
        self.load
    }

    /// The worker was busy from `start` to `end` (handling datagrams, messages,
    /// timers, writing forwards).
    pub(crate) fn busy(&mut self, start: Instant, end: Instant) {
        self.busy += end.saturating_duration_since(start);
        let window_start = *self.window_start.get_or_insert(start);
        let elapsed = end.saturating_duration_since(window_start);
        if elapsed < WINDOW {
            return;
        }
        let fraction = (self.busy.as_secs_f64() / elapsed.as_secs_f64()).min(1.0);
        // Half weight per window that passed; a long idle gap forgets the old load.
        let windows = elapsed.as_secs_f64() / WINDOW.as_secs_f64();
        let keep = 0.5f64.powf(windows);
        self.load = keep * self.load + (1.0 - keep) * fraction;
        self.window_start = Some(end);
        self.busy = Duration::ZERO;
        if self.follows_load {
            let share = ((self.load - LOAD_LOW) / (LOAD_HIGH - LOAD_LOW)).clamp(0.0, 1.0);
            self.hold = self.max.mul_f64(share);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports `busy_share` of every millisecond for `ms` milliseconds from `t`.
    fn run(h: &mut HoldControl, t: &mut Instant, ms: u64, busy_share: f64) {
        for _ in 0..ms {
            let busy = Duration::from_millis(1).mul_f64(busy_share);
            h.busy(*t, *t + busy);
            *t += Duration::from_millis(1);
        }
    }

    #[test]
    fn a_fixed_hold_is_the_same_at_every_load() {
        let mut h = HoldControl::fixed(Duration::from_millis(5));
        let mut t = Instant::now();
        assert_eq!(h.hold(), Duration::from_millis(5));
        run(&mut h, &mut t, 2000, 0.95);
        assert_eq!(h.hold(), Duration::from_millis(5));
        assert!(h.load() > 0.9, "the load is still measured: {}", h.load());
        assert_eq!(HoldControl::fixed(Duration::ZERO).hold(), Duration::ZERO);
    }

    #[test]
    fn a_hold_following_the_load_is_zero_while_the_worker_is_mostly_idle() {
        let mut h = HoldControl::following_load(AUTO_MAX);
        let mut t = Instant::now();
        assert_eq!(h.hold(), Duration::ZERO, "nothing measured yet");
        run(&mut h, &mut t, 3000, 0.2);
        assert!((h.load() - 0.2).abs() < 0.02, "load {}", h.load());
        assert_eq!(h.hold(), Duration::ZERO);
    }

    #[test]
    fn a_hold_following_the_load_grows_with_it_to_the_maximum() {
        let mut h = HoldControl::following_load(AUTO_MAX);
        let mut t = Instant::now();
        run(&mut h, &mut t, 3000, 0.5);
        // Halfway from LOAD_LOW to LOAD_HIGH: about half the maximum.
        let half = h.hold().as_secs_f64() / AUTO_MAX.as_secs_f64();
        assert!((0.4..0.6).contains(&half), "{half} of the maximum");
        run(&mut h, &mut t, 3000, 0.9);
        assert_eq!(h.hold(), AUTO_MAX);
    }

    #[test]
    fn the_hold_drops_within_a_second_once_the_load_is_gone() {
        let mut h = HoldControl::following_load(AUTO_MAX);
        let mut t = Instant::now();
        run(&mut h, &mut t, 3000, 0.9);
        assert_eq!(h.hold(), AUTO_MAX);
        // Four windows at 5 % busy.
        run(&mut h, &mut t, 1000, 0.05);
        assert_eq!(h.hold(), Duration::ZERO, "load {}", h.load());
        // And after a long silence the first report starts from the idle gap.
        run(&mut h, &mut t, 3000, 0.9);
        t += Duration::from_secs(10);
        h.busy(t, t + Duration::from_micros(100));
        t += Duration::from_millis(300);
        h.busy(t, t + Duration::from_micros(100));
        assert_eq!(h.hold(), Duration::ZERO, "load {}", h.load());
    }
}
