//! The delay-based detector (draft-ietf-rmcat-gcc-02 §5.2–5.4, with libwebrtc's
//! trendline estimator): it cuts the received packets into groups, fits the trend
//! of the queueing delay between groups, and compares it with a threshold that
//! adapts to the path's own noise, to say whether a queue builds ([`Usage`]).
//! Delay shows a queue before a drop-tail buffer overflows and loses packets, so
//! this is what keeps a viewer's latency low.

use std::time::Instant;

use super::Usage;

// Grouping (§5.2).
/// Packets sent within this of a group's first packet belong to it: a frame's
/// packets leave together, and their spacing says nothing about the path.
const GROUP_SPAN_US: u64 = 5_000;
/// A packet arriving within this of the group's last one, and closer to it than
/// it was sent, joins the group too: a burst released at once by a link (Wi-Fi
/// aggregation, a queue after a stall) is one event, not a sudden speed-up.
const BURST_ARRIVAL_US: i64 = 5_000;
/// A burst is cut into groups after this much arrival time.
const MAX_BURST_US: i64 = 100_000;
/// A delay variation this large is a clock jump or a receiver restart, not a queue:
/// the detector starts over.
const ARRIVAL_JUMP_MS: f64 = 3_000.0;

// Trendline and overuse detector (§5.3–5.4, libwebrtc's trendline estimator).
/// Groups the trend is fitted over.
const TREND_WINDOW: usize = 20;
/// Groups needed before a trend is fitted. Fewer than the window, so that a sender
/// at 30 frames a second (30 groups) reacts within its first second; the
/// ramp-up of the gain below keeps those early trends from being taken too hard.
const TREND_MIN_POINTS: usize = 5;
/// Weight of the previous smoothed delay in each new one.
const SMOOTHING: f64 = 0.9;
/// The trend (ms of delay per ms) times this times the groups seen so far (at most
/// [`TREND_GAIN_GROUPS`]) is compared with the threshold in ms.
const TREND_GAIN: f64 = 4.0;
/// Groups after which the gain stops growing.
const TREND_GAIN_GROUPS: u32 = 60;
/// The threshold before it adapts.
const THRESHOLD_INITIAL_MS: f64 = 12.5;
/// How fast the threshold rises towards a larger trend (per ms): slowly, so a real
/// queue is still seen.
const THRESHOLD_K_UP: f64 = 0.0087;
/// How fast it falls towards a smaller one (per ms): faster, so a quiet path becomes
/// sensitive again.
const THRESHOLD_K_DOWN: f64 = 0.039;
/// Bounds of the threshold.
const THRESHOLD_MIN_MS: f64 = 6.0;
const THRESHOLD_MAX_MS: f64 = 600.0;
/// A trend this far past the threshold is a spike (a sudden capacity drop) the
/// threshold must not adapt to.
const THRESHOLD_MAX_JUMP_MS: f64 = 15.0;
/// Longest time between threshold updates taken into account.
const THRESHOLD_MAX_STEP_MS: f64 = 100.0;
/// How long the trend must stay over the threshold (in send time) to be overuse.
const OVERUSE_TIME_MS: f64 = 10.0;

/// Packets sent close together, as the detector sees them (µs; send times on our
/// clock, arrivals on the receiver's).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Group {
    first_send: u64,
    last_send: u64,
    first_arrival: i64,
    last_arrival: i64,
}

impl Group {
    fn new(send: u64, arrival: i64) -> Self {
        Group {
            first_send: send,
            last_send: send,
            first_arrival: arrival,
            last_arrival: arrival,
        }
    }

    /// Whether a packet sent and received then belongs to this group.
    fn takes(&self, send: u64, arrival: i64) -> bool {
        if send - self.first_send <= GROUP_SPAN_US {
            return true;
        }
        let arrival_delta = arrival.saturating_sub(self.last_arrival);
        let send_delta = send.saturating_sub(self.last_send) as i64;
        arrival_delta <= BURST_ARRIVAL_US
            && arrival_delta < send_delta
            && arrival.saturating_sub(self.first_arrival) < MAX_BURST_US
    }
}

/// Two consecutive complete groups.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct GroupPair {
    previous: Group,
    current: Group,
}

/// Cuts the received packets, in sending order, into groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Groups {
    current: Option<Group>,
    previous: Option<Group>,
}

impl Groups {
    /// Adds a received packet; returns the last two groups when it completed one.
    pub(super) fn add(&mut self, send: u64, arrival: i64) -> Option<GroupPair> {
        let Some(g) = &mut self.current else {
            self.current = Some(Group::new(send, arrival));
            return None;
        };
        if send < g.first_send {
            // Sent before the group began, reported after it: too late to place.
            return None;
        }
        if g.takes(send, arrival) {
            g.last_send = g.last_send.max(send);
            g.last_arrival = g.last_arrival.max(arrival);
            return None;
        }
        let done = *g;
        *g = Group::new(send, arrival);
        let previous = self.previous.replace(done)?;
        Some(GroupPair {
            previous,
            current: done,
        })
    }
}

/// The trendline filter and the overuse detector.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Trendline {
    /// The sum of all delay variations (ms): the queueing delay, up to a constant.
    accumulated_ms: f64,
    smoothed_ms: f64,
    /// (arrival ms since `origin_us`, smoothed delay ms) of the last groups, a ring.
    points: [(f64, f64); TREND_WINDOW],
    len: usize,
    next: usize,
    origin_us: Option<i64>,
    /// Delay variations seen, up to [`TREND_GAIN_GROUPS`].
    groups_seen: u32,
    threshold_ms: f64,
    threshold_updated: Option<Instant>,
    prev_trend: f64,
    /// Send time spent over the threshold, and how many groups, in this episode.
    overuse_ms: f64,
    overuse_groups: u32,
    pub(super) usage: Usage,
}

impl Trendline {
    pub(super) fn new() -> Self {
        Trendline {
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            points: [(0.0, 0.0); TREND_WINDOW],
            len: 0,
            next: 0,
            origin_us: None,
            groups_seen: 0,
            threshold_ms: THRESHOLD_INITIAL_MS,
            threshold_updated: None,
            prev_trend: 0.0,
            overuse_ms: 0.0,
            overuse_groups: 0,
            usage: Usage::Normal,
        }
    }

    /// Takes the delay variation between two groups.
    pub(super) fn on_groups(&mut self, g: &GroupPair, now: Instant) {
        let send_delta_ms = g.current.last_send.saturating_sub(g.previous.last_send) as f64 / 1e3;
        let arrival_delta_us = g
            .current
            .last_arrival
            .saturating_sub(g.previous.last_arrival);
        if arrival_delta_us < 0 {
            // Groups that arrived out of order say nothing about a queue.
            return;
        }
        let delta_ms = arrival_delta_us as f64 / 1e3 - send_delta_ms;
        if delta_ms.abs() > ARRIVAL_JUMP_MS {
            *self = Trendline {
                threshold_ms: self.threshold_ms,
                ..Trendline::new()
            };
            return;
        }
        self.groups_seen = (self.groups_seen + 1).min(TREND_GAIN_GROUPS);
        self.accumulated_ms += delta_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        let origin = *self.origin_us.get_or_insert(g.current.last_arrival);
        let x = g.current.last_arrival.saturating_sub(origin) as f64 / 1e3;
        self.points[self.next] = (x, self.smoothed_ms);
        self.next = (self.next + 1) % TREND_WINDOW;
        self.len = (self.len + 1).min(TREND_WINDOW);
        if self.len < TREND_MIN_POINTS {
            return;
        }
        let trend = self.slope().unwrap_or(self.prev_trend);
        self.detect(trend, send_delta_ms, now);
    }

    /// The least-squares slope of the smoothed delay over arrival time.
    fn slope(&self) -> Option<f64> {
        let points = &self.points[..self.len];
        let n = points.len() as f64;
        let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
        let (num, den) = points.iter().fold((0.0, 0.0), |(num, den), &(x, y)| {
            (
                num + (x - mean_x) * (y - mean_y),
                den + (x - mean_x).powi(2),
            )
        });
        (den > 0.0).then(|| num / den)
    }

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now: Instant) {
        let modified = f64::from(self.groups_seen) * trend * TREND_GAIN;
        if modified > self.threshold_ms {
            if self.overuse_groups == 0 {
                // Assume it has been over for half the time since the last group.
                self.overuse_ms = send_delta_ms / 2.0;
            } else {
                self.overuse_ms += send_delta_ms;
            }
            self.overuse_groups += 1;
            if self.overuse_ms > OVERUSE_TIME_MS
                && self.overuse_groups > 1
                && trend > self.prev_trend
            {
                self.overuse_ms = 0.0;
                self.overuse_groups = 0;
                self.usage = Usage::Overusing;
            }
        } else {
            self.overuse_ms = 0.0;
            self.overuse_groups = 0;
            self.usage = if modified < -self.threshold_ms {
                Usage::Underusing
            } else {
                Usage::Normal
            };
        }
        self.prev_trend = trend;
        self.adapt_threshold(modified, now);
    }

    /// Moves the threshold towards the size of the trend, so that it sits above the
    /// path's own noise but below a real queue.
    fn adapt_threshold(&mut self, modified: f64, now: Instant) {
        let last = *self.threshold_updated.get_or_insert(now);
        self.threshold_updated = Some(now);
        let size = modified.abs();
        if size > self.threshold_ms + THRESHOLD_MAX_JUMP_MS {
            return;
        }
        let k = if size < self.threshold_ms {
            THRESHOLD_K_DOWN
        } else {
            THRESHOLD_K_UP
        };
        let step_ms =
            (now.saturating_duration_since(last).as_secs_f64() * 1e3).min(THRESHOLD_MAX_STEP_MS);
        self.threshold_ms = (self.threshold_ms + k * (size - self.threshold_ms) * step_ms)
            .clamp(THRESHOLD_MIN_MS, THRESHOLD_MAX_MS);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::core::bwe::tests::{
        KBPS, Link, MBPS, MS, Rate, SEC, Sim, config, feed_groups, kbps,
    };
    use crate::core::{Bwe, Usage};

    #[test]
    fn an_uncongested_link_with_jitter_never_looks_overused() {
        let link = Link {
            jitter_us: 2 * MS,
            ..Link::new(10 * MBPS)
        };
        let mut sim = Sim::new(config(500 * KBPS), link, Rate::Fixed(500 * KBPS));
        sim.run_for(30 * SEC);
        let overused = sim
            .log
            .iter()
            .filter(|e| e.usage == Usage::Overusing)
            .count();
        let underused = sim
            .log
            .iter()
            .filter(|e| e.usage == Usage::Underusing)
            .count();
        let (lo, hi) = sim.range_since(0);
        eprintln!(
            "500k on 10M, ±2 ms jitter, 30 s: {} feedbacks, {overused} overusing, {underused} underusing, estimate {}k..{}k, final {}k, acked {:?}",
            sim.log.len(),
            kbps(lo),
            kbps(hi),
            kbps(sim.bwe.estimate()),
            sim.bwe.acked_bps()
        );
        assert_eq!(overused, 0);
        assert!(lo >= 500 * KBPS, "{lo}");
    }

    #[test]
    fn a_growing_queue_is_overuse_and_a_draining_one_underuse() {
        let t0 = Instant::now();
        let mut bwe = Bwe::new(config(MBPS), t0);
        // 20 ms apart, each 4 ms later than the one before: a queue growing by 20 %.
        let growing = feed_groups(&mut bwe, t0, 100, 60, 20_000, |i| i64::from(i) * 4_000);
        assert!(growing.contains(&Usage::Overusing), "{growing:?}");
        let first = growing.iter().position(|u| *u == Usage::Overusing).unwrap();
        eprintln!(
            "queue growing 4 ms per 20 ms group: overuse after {} groups",
            5 * (first + 1)
        );
        let mut bwe = Bwe::new(config(MBPS), t0);
        // Then draining from 240 ms by 4 ms a group.
        let draining = feed_groups(&mut bwe, t0, 100, 60, 20_000, |i| {
            240_000 - i64::from(i) * 4_000
        });
        assert!(draining.contains(&Usage::Underusing), "{draining:?}");
        assert!(!draining.contains(&Usage::Overusing), "{draining:?}");
        let mut bwe = Bwe::new(config(MBPS), t0);
        let steady = feed_groups(&mut bwe, t0, 100, 60, 20_000, |i| i64::from(i % 3) * 1_000);
        assert!(steady.iter().all(|u| *u == Usage::Normal), "{steady:?}");
    }
}
