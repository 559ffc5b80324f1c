//! The delay-based estimate: an AIMD rate control (draft-ietf-rmcat-gcc-02 §5.5)
//! driven by what the delay detector says, and the link capacity it remembers
//! (libwebrtc's link capacity estimator). A cut follows the throughput the viewer
//! acknowledged, not the estimate, because that is what the bottleneck delivers;
//! growth slows near the capacity seen at past overuses, so the estimate does not
//! overshoot into the same queue again.

use std::time::{Duration, Instant};

use super::{MULTIPLICATIVE_GROWTH, Usage};

/// Overuse sets the estimate to this share of the acknowledged throughput: just
/// under what the bottleneck delivers, so its queue drains.
const BETA: f64 = 0.85;
/// Near the link's capacity, the estimate grows by this many bits per response time
/// (one full packet).
const ADDITIVE_BITS: f64 = 1200.0 * 8.0;
/// The response time is the round trip plus this: how long a change takes to show.
const RESPONSE_MARGIN: Duration = Duration::from_millis(100);
/// The estimate grows to at most this times the acknowledged throughput ...
const ACKED_HEADROOM: f64 = 1.5;
/// ... plus this (so a nearly idle viewer can still grow).
const ACKED_HEADROOM_BPS: f64 = 10_000.0;
/// Overuse cuts at most once per round trip (within these bounds): the feedback of
/// one round trip shows the same queue.
const DECREASE_INTERVAL_MIN: Duration = Duration::from_millis(10);
const DECREASE_INTERVAL_MAX: Duration = Duration::from_millis(200);

// Link capacity (libwebrtc's link capacity estimator): the throughput at past
// overuses, in kbit/s, with a deviation normalized by it.
/// Weight of a new sample.
const CAPACITY_ALPHA: f64 = 0.05;
/// Bounds (and start) of the normalized variance: 0.4 at 1 Mbit/s is a deviation of
/// 20 kbit/s.
const CAPACITY_VAR_MIN: f64 = 0.4;
const CAPACITY_VAR_MAX: f64 = 2.5;
/// "Near" the capacity is within this many deviations; a throughput above that
/// means the link got better and the capacity is forgotten.
const CAPACITY_DEVIATIONS: f64 = 3.0;

/// The throughput at past overuses, in kbit/s, and its normalized variance.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Capacity {
    mean_kbps: f64,
    var: f64,
}

impl Capacity {
    fn deviation_bps(&self) -> f64 {
        (self.var * self.mean_kbps).sqrt() * 1e3
    }

    fn upper_bps(&self) -> f64 {
        self.mean_kbps * 1e3 + CAPACITY_DEVIATIONS * self.deviation_bps()
    }

    fn lower_bps(&self) -> f64 {
        self.mean_kbps * 1e3 - CAPACITY_DEVIATIONS * self.deviation_bps()
    }
}

/// The delay-based AIMD rate control.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RateControl {
    pub(super) bps: f64,
    /// Growing (after normal use); otherwise holding (after overuse or underuse).
    increasing: bool,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    capacity: Option<Capacity>,
}

impl RateControl {
    pub(super) fn new(bps: f64) -> Self {
        RateControl {
            bps,
            increasing: true,
            last_update: None,
            last_decrease: None,
            capacity: None,
        }
    }

    pub(super) fn update(
        &mut self,
        usage: Usage,
        acked: Option<f64>,
        rtt: Duration,
        now: Instant,
        bounds: (f64, f64),
    ) {
        let elapsed = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(Duration::from_secs(1));
        self.last_update = Some(now);
        match usage {
            Usage::Overusing => {
                self.increasing = false;
                let interval = rtt.clamp(DECREASE_INTERVAL_MIN, DECREASE_INTERVAL_MAX);
                let due = self
                    .last_decrease
                    .is_none_or(|t| now.saturating_duration_since(t) >= interval)
                    // A throughput under half the estimate is a collapse: no waiting.
                    || acked.is_some_and(|a| a < 0.5 * self.bps);
                if due {
                    self.decrease(acked, now, bounds);
                }
            }
            Usage::Underusing => self.increasing = false,
            Usage::Normal if !self.increasing => self.increasing = true,
            Usage::Normal => self.increase(acked, elapsed, rtt, bounds),
        }
    }

    fn decrease(&mut self, acked: Option<f64>, now: Instant, bounds: (f64, f64)) {
        let measured = acked.unwrap_or(self.bps);
        if self.capacity.is_some_and(|c| measured < c.lower_bps()) {
            // The link got worse than it was: start its capacity over.
            self.capacity = None;
        }
        let x = measured / 1e3;
        self.capacity = Some(match self.capacity {
            None => Capacity {
                mean_kbps: x,
                var: CAPACITY_VAR_MIN,
            },
            Some(c) => {
                let mean_kbps = (1.0 - CAPACITY_ALPHA) * c.mean_kbps + CAPACITY_ALPHA * x;
                let err = mean_kbps - x;
                let var = (1.0 - CAPACITY_ALPHA) * c.var
                    + CAPACITY_ALPHA * err * err / mean_kbps.max(1.0);
                Capacity {
                    mean_kbps,
                    var: var.clamp(CAPACITY_VAR_MIN, CAPACITY_VAR_MAX),
                }
            }
        });
        self.bps = self.bps.min(BETA * measured).clamp(bounds.0, bounds.1);
        self.last_decrease = Some(now);
    }

    fn increase(
        &mut self,
        acked: Option<f64>,
        elapsed: Duration,
        rtt: Duration,
        bounds: (f64, f64),
    ) {
        // Growth is only earned by what was delivered.
        let Some(acked) = acked else { return };
        if self.capacity.is_some_and(|c| acked > c.upper_bps()) {
            // More got through than ever at an overuse: the link got better.
            self.capacity = None;
        }
        let dt = elapsed.as_secs_f64();
        let grown = if self.capacity.is_some() {
            self.bps + ADDITIVE_BITS * dt / (rtt + RESPONSE_MARGIN).as_secs_f64()
        } else {
            self.bps * MULTIPLICATIVE_GROWTH.powf(dt)
        };
        let limit = (ACKED_HEADROOM * acked + ACKED_HEADROOM_BPS).max(self.bps);
        self.bps = grown.min(limit).clamp(bounds.0, bounds.1);
    }

    /// A probe got `bps` through: the estimate is at least that, and a capacity
    /// below it is history.
    pub(super) fn on_probe(&mut self, bps: f64) {
        if self.capacity.is_some_and(|c| bps > c.upper_bps()) {
            self.capacity = None;
        }
        self.bps = self.bps.max(bps);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::core::Bwe;
    use crate::core::bwe::tests::{KBPS, MBPS, config, feed_groups};

    #[test]
    fn a_cut_follows_the_acknowledged_throughput_not_the_estimate() {
        let t0 = Instant::now();
        let mut bwe = Bwe::new(config(5 * MBPS), t0);
        // 1000-byte packets sent every 20 ms (400 kbit/s), each 4 ms later than the last.
        feed_groups(&mut bwe, t0, 100, 60, 20_000, |i| i64::from(i) * 4_000);
        // They arrive 24 ms apart: 333 kbit/s is what the path delivers.
        let acked = bwe.acked_bps().expect("a second of feedback");
        let estimate = bwe.estimate();
        eprintln!("queue growing from 5M: acked {acked} bit/s, estimate {estimate}");
        assert!((320 * KBPS..=350 * KBPS).contains(&acked), "{acked}");
        assert!(
            estimate >= acked * 80 / 100 && estimate <= acked * 90 / 100,
            "{estimate}"
        );
    }
}
