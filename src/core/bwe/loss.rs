//! The loss-based estimate: the share of packets the viewer reports lost, over
//! windows long enough not to be noise. Delay sees a queue first; this sees what
//! delay cannot, a lossy link (Wi-Fi, a policer) or a buffer too short to build a
//! queue. Probe packets and packets sent before the last cut do not count: their
//! loss says nothing about the media at the current rate.

use std::time::{Duration, Instant};

use super::MULTIPLICATIVE_GROWTH;

/// Loss above this cuts the estimate by half the loss.
const LOSS_HIGH: f64 = 0.10;
/// Loss below this lets it grow.
const LOSS_LOW: f64 = 0.02;
/// A loss fraction is taken over at least this many packets (fewer are noise) ...
const LOSS_MIN_PACKETS: u32 = 20;
/// ... and this much time: with 20 packets, a random loss of 5 % shows as over
/// 10 % one window in four; half a second of a 1 Mbit/s viewer is 50 packets.
const LOSS_MIN_WINDOW: Duration = Duration::from_millis(500);
/// Cuts for loss are at least this plus a round trip apart: the losses of the
/// next round trip were already on their way.
const LOSS_DECREASE_INTERVAL: Duration = Duration::from_millis(300);

/// The loss-based estimate.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LossControl {
    pub(super) bps: f64,
    /// Packets reported lost and received in the current window.
    pub(super) lost: u32,
    pub(super) received: u32,
    window_start: Option<Instant>,
    last_update: Option<Instant>,
    last_decrease: Option<Instant>,
    /// Only packets sent from this time on (µs since the base) count: those sent
    /// before the last cut of the estimate were sent at a rate no longer used.
    pub(super) epoch_send_us: u64,
}

impl LossControl {
    pub(super) fn new(bps: f64) -> Self {
        LossControl {
            bps,
            lost: 0,
            received: 0,
            window_start: None,
            last_update: None,
            last_decrease: None,
            epoch_send_us: 0,
        }
    }

    /// Judges the window once it is long enough; `combined` is the estimate a cut
    /// starts from.
    pub(super) fn update(
        &mut self,
        now: Instant,
        rtt: Duration,
        combined: f64,
        bounds: (f64, f64),
    ) {
        let start = *self.window_start.get_or_insert(now);
        let total = self.lost + self.received;
        if total < LOSS_MIN_PACKETS || now.saturating_duration_since(start) < LOSS_MIN_WINDOW {
            return;
        }
        let loss = f64::from(self.lost) / f64::from(total);
        let elapsed = self
            .last_update
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
            .min(Duration::from_secs(1));
        self.last_update = Some(now);
        if loss > LOSS_HIGH {
            let due = self
                .last_decrease
                .is_none_or(|t| now.saturating_duration_since(t) >= LOSS_DECREASE_INTERVAL + rtt);
            if due {
                self.bps = self.bps.min(combined) * (1.0 - 0.5 * loss);
                self.last_decrease = Some(now);
            }
        } else if loss < LOSS_LOW {
            self.bps *= MULTIPLICATIVE_GROWTH.powf(elapsed.as_secs_f64());
        }
        self.bps = self.bps.clamp(bounds.0, bounds.1);
        self.lost = 0;
        self.received = 0;
        self.window_start = Some(now);
    }

    /// The estimate was cut: count only packets sent from `send_us` on.
    pub(super) fn backoff(&mut self, send_us: u64) {
        self.epoch_send_us = send_us;
        self.lost = 0;
        self.received = 0;
        self.window_start = None;
    }
}

#[cfg(test)]
mod tests {
    use crate::core::Usage;
    use crate::core::bwe::tests::{KBPS, Link, MBPS, Rate, SEC, Sim, config, kbps, secs};

    #[test]
    fn random_loss_backs_the_loss_based_estimate_off() {
        let link = Link {
            loss: 0.2,
            ..Link::new(10 * MBPS)
        };
        let mut sim = Sim::new(config(MBPS), link, Rate::FollowEstimate);
        let halved = sim
            .run_until(10 * SEC, |s| s.bwe.estimate() <= 500 * KBPS)
            .expect("the estimate backs off");
        let overused = sim
            .log
            .iter()
            .filter(|e| e.usage == Usage::Overusing)
            .count();
        eprintln!(
            "20% random loss, no queue: 1M -> {}k after {:.2} s, {overused} overusing",
            kbps(sim.bwe.estimate()),
            secs(halved)
        );
        assert_eq!(overused, 0, "loss is not a queue");
    }

    #[test]
    fn light_random_loss_does_not_back_off() {
        let link = Link {
            loss: 0.01,
            ..Link::new(10 * MBPS)
        };
        let mut sim = Sim::new(config(MBPS), link, Rate::FollowEstimate);
        sim.run_for(10 * SEC);
        let (lo, hi) = sim.range_since(0);
        eprintln!(
            "1% random loss: estimate {}k..{}k over 10 s",
            kbps(lo),
            kbps(hi)
        );
        assert!(lo >= MBPS, "{lo}");
    }
}
