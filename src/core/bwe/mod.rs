//! A send-side bandwidth estimate for one viewer, from its transport-wide congestion
//! control feedback: a compact take on Google Congestion Control
//! (draft-ietf-rmcat-gcc-02, with the refinements libwebrtc runs it with).
//!
//! wishd writes a viewer's RTP itself (the direct egress) and numbers every packet
//! with a transport-wide sequence number; the viewer reports when each one arrived
//! (`wire::twcc`). The egress tells the [`Bwe`] what it sent ([`Bwe::on_sent`]) and
//! what came back ([`Bwe::on_feedback`]), and picks the viewer's layer from
//! [`Bwe::estimate`], the lowest of two views of the path:
//!
//! * **Delay.** Packets sent within 5 ms of each other form a group (a frame's burst).
//!   When a group arrives further behind the one before than it was sent, a queue on
//!   the path is growing. The trendline (the slope of the smoothed accumulated delay
//!   over the last 20 groups), against a threshold that adapts to the path's own
//!   noise, says whether the path is overused, underused or neither ([`Usage`]). An
//!   AIMD rate control follows it: overuse cuts the estimate to 85 % of the
//!   throughput the viewer acknowledged, which is what the bottleneck delivers, and
//!   remembers it as the link's capacity; normal use grows the estimate, by 8 % a
//!   second while far from that capacity and by about a packet per round trip near
//!   it, but never past 1.5 times what was acknowledged (an estimate the sender does
//!   not use proves nothing); underuse holds it while the queue drains.
//! * **Loss.** More than 10 % of packets lost cuts the estimate by half the loss,
//!   less than 2 % lets it grow by 8 % a second, and in between it holds.
//!
//! A viewer that sends less than its link takes cannot find out how much more the
//! link takes by sending. Before moving a viewer up a layer, the caller starts a
//! **probe** ([`Bwe::start_probe`]): the estimator paces extra packets (padding or
//! resends, [`Bwe::poll_probe`]) for a tenth of a second so the total reaches the target,
//! and when their feedback shows they arrived about as fast as they were sent, the
//! estimate jumps to that rate ([`Bwe::probe_state`]).
//!
//! Sans-IO like the rest of the core: every call takes the time, and nothing
//! allocates after [`Bwe::new`] but a probe's state and a larger history. Memory is
//! 1 KiB inline and a ring of sent-packet records of 8 bytes on the heap: 1 KiB, growing to at most
//! 16 KiB only for a viewer whose feedback names packets the ring no longer holds.
//!
//! Each part of the estimator has its own file: `history` (the sent packets the
//! feedback is matched against), `delay` (groups, trendline and overuse detector),
//! `rate` (the AIMD rate control), `loss`, `acked` (the acknowledged throughput) and
//! `probe`. This file holds what the caller sees, and how one report moves them.

use std::time::{Duration, Instant};

mod acked;
mod delay;
mod history;
mod loss;
mod probe;
mod rate;
mod recent;

use acked::Acked;
use delay::{Groups, Trendline};
use history::{ACKED, HISTORY_MAX, History, IN_PROBE, LOST, extend_seq};
use loss::LossControl;
use probe::{
    PROBE_DURATION, PROBE_MAX_PACKETS, PROBE_MIN_PACKETS, PROBE_PACKET_BYTES, PROBE_USE, Probe,
};
use rate::RateControl;
use recent::Recent;

use crate::wire::twcc::{TwccFeedback, TwccPacket};

/// Growth per second of either estimate while it may grow: the delay-based one far
/// from the link's capacity, the loss-based one under light loss.
const MULTIPLICATIVE_GROWTH: f64 = 1.08;

/// Round trip assumed before [`Bwe::on_rtt`].
const DEFAULT_RTT: Duration = Duration::from_millis(100);
/// Round trips are taken within these bounds (a bogus report must not freeze the
/// estimate for minutes).
const RTT_MIN: Duration = Duration::from_millis(1);
const RTT_MAX: Duration = Duration::from_secs(5);

/// The receiver's reference time is a 24-bit counter of 64 ms.
const REFERENCE_PERIOD_US: i64 = (1 << 24) * 64_000;

/// The bounds and the start of one viewer's estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BweConfig {
    /// The estimate until feedback says otherwise.
    pub(crate) initial_bps: u64,
    /// The estimate never goes below this (the lowest layer worth sending).
    pub(crate) min_bps: u64,
    /// Nor above this (the sum of the highest layers: more is never needed).
    pub(crate) max_bps: u64,
}

/// What the delay detector makes of the latest groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    /// No queue is building or draining.
    Normal,
    /// A queue builds on the path: the viewer is sent more than its link takes.
    Overusing,
    /// A queue drains.
    Underusing,
}

/// Where the probe stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeState {
    /// No probe yet.
    Idle,
    /// A probe goes out or waits for its feedback.
    Running,
    /// The last probe arrived intact at `bps` (the lower of its send and receive
    /// rates, media included); the estimate is at least 95 % of that.
    Succeeded { bps: u64 },
    /// The last probe did not get through (too slow, too lossy, a queue grew, or
    /// no feedback): the link does not take the target, and the estimate is left.
    Failed,
}

/// One viewer's send-side bandwidth estimator. See the module documentation.
#[derive(Debug, Clone)]
#[cfg_attr(test, derive(PartialEq))]
pub(crate) struct Bwe {
    min_bps: f64,
    max_bps: f64,
    /// Time zero of the send times.
    base: Instant,
    /// Sent packets by extended sequence number.
    history: History,
    /// The highest extended sequence number sent.
    newest: Option<u64>,
    /// The latest send time (µs since `base`): the full value of the records' wrapping
    /// ones.
    last_send_us: u64,
    /// The last feedback's reference time and the offset that unwraps it.
    reference: Option<(i64, i64)>,
    rtt: Duration,
    groups: Groups,
    trend: Trendline,
    rate: RateControl,
    loss: LossControl,
    acked: Acked,
    recent: Recent,
    /// Boxed: it is there only while a probe runs.
    probe: Option<Box<Probe>>,
    /// The outcome of the last probe that ended.
    probe_result: ProbeState,
}

impl Bwe {
    /// An estimator starting at `config.initial_bps` (within the bounds), with `now`
    /// as time zero.
    pub(crate) fn new(config: BweConfig, now: Instant) -> Self {
        let min_bps = config.min_bps.max(1) as f64;
        let max_bps = (config.max_bps as f64).max(min_bps);
        let initial = (config.initial_bps as f64).clamp(min_bps, max_bps);
        Bwe {
            min_bps,
            max_bps,
            base: now,
            history: History::new(),
            newest: None,
            last_send_us: 0,
            reference: None,
            rtt: DEFAULT_RTT,
            groups: Groups::default(),
            trend: Trendline::new(),
            rate: RateControl::new(initial),
            loss: LossControl::new(initial),
            acked: Acked::default(),
            recent: Recent::default(),
            probe: None,
            probe_result: ProbeState::Idle,
        }
    }

    /// A packet stamped with transport-wide sequence number `seq` left at `at`,
    /// `bytes` long on the wire. `probe` when it was sent for the running probe (what
    /// [`poll_probe`](Self::poll_probe) asked for). Call it for every packet that
    /// carries the number, in the order they were numbered.
    pub(crate) fn on_sent(&mut self, seq: u16, bytes: usize, at: Instant, probe: bool) {
        let ext = match self.newest {
            None => (1 << 16) + u64::from(seq),
            Some(newest) => match extend_seq(newest, seq) {
                Some(ext) => ext,
                None => return,
            },
        };
        let newest = self.newest.map_or(ext, |n| n.max(ext));
        if newest - ext >= self.history.len() as u64 {
            return;
        }
        let us = self.micros(at);
        self.newest = Some(newest);
        self.last_send_us = self.last_send_us.max(us);
        let mut flags = 0;
        if self.probe.as_deref().is_some_and(Probe::is_sending) {
            flags |= IN_PROBE;
        }
        let size = u16::try_from(bytes).unwrap_or(u16::MAX);
        self.history.put(ext, us as u32, size, flags);
        if let Some(p) = &mut self.probe {
            p.on_sent(ext, us, u64::from(size), probe);
        }
        self.drive_probe(at);
    }

    /// A feedback report from the viewer, parsed by `wire::twcc::parse_feedback`:
    /// updates the delay-based and loss-based estimates and the probe. Packets this
    /// estimator did not send, or no longer remembers, are ignored; a report that
    /// names none of its packets changes nothing.
    pub(crate) fn on_feedback(&mut self, fb: &TwccFeedback, packets: &[TwccPacket], now: Instant) {
        let offset = self.reference_offset(fb.reference_us);
        self.recent.roll(now);
        let mut known = false;
        for p in packets {
            let Some((ext, rec)) = self.lookup(p.seq) else {
                continue;
            };
            known = true;
            let send_us = self.full_send_us(rec.send_us);
            let size = u64::from(rec.size);
            let counts_for_loss = rec.tag & IN_PROBE == 0 && send_us >= self.loss.epoch_send_us;
            match p.arrival_us {
                None => {
                    if rec.reported() {
                        continue;
                    }
                    self.history.mark(ext, LOST, 0);
                    if counts_for_loss {
                        self.loss.lost += 1;
                        self.recent.lost();
                    }
                    if let Some(probe) = &mut self.probe {
                        probe.on_reported(ext, None, size, false);
                    }
                }
                Some(arrival) => {
                    if rec.tag & ACKED != 0 {
                        continue;
                    }
                    let was_lost = rec.tag & LOST != 0;
                    self.history.mark(ext, ACKED, LOST);
                    let arrival = arrival.saturating_add(offset);
                    if counts_for_loss {
                        self.loss.received += 1;
                        if was_lost {
                            self.loss.lost = self.loss.lost.saturating_sub(1);
                        }
                    }
                    self.acked.add(arrival, size);
                    self.recent.received(arrival, size);
                    self.recent.transit(
                        arrival.saturating_sub(i64::try_from(send_us).unwrap_or(i64::MAX)),
                    );
                    if let Some(g) = self.groups.add(send_us, arrival) {
                        self.trend.on_groups(&g, now);
                    }
                    if let Some(probe) = &mut self.probe {
                        probe.on_reported(ext, Some(arrival), size, was_lost);
                    }
                }
            }
        }
        if !known {
            return;
        }
        self.reference = Some((fb.reference_us, offset));
        let usage = self.trend.usage;
        if usage == Usage::Overusing
            && let Some(p) = &mut self.probe
        {
            p.overused = true;
        }
        let before = self.estimate();
        let bounds = (self.min_bps, self.max_bps);
        self.rate
            .update(usage, self.acked.bps(), self.rtt, now, bounds);
        let combined = self.rate.bps.min(self.loss.bps);
        self.loss.update(now, self.rtt, combined, bounds);
        self.drive_probe(now);
        if self.estimate() < before {
            // Loss of packets sent before this cut says nothing about the new rate.
            self.loss.backoff(self.last_send_us);
        }
    }

    /// The share of packets lost over the last quarter second of feedback (see
    /// `recent`), once enough were reported.
    pub(crate) fn recent_loss(&self) -> Option<f64> {
        self.recent.loss()
    }

    /// The rate the path delivered at over the last quarter second of feedback: what
    /// a link that just narrowed carries, before the estimate has caught up.
    pub(crate) fn delivered_bps(&self) -> Option<u64> {
        self.recent.delivered_bps().map(|b| b as u64)
    }

    /// How much longer than its fastest the newest reported packet took on the way:
    /// the queue on the path now (sender and receiver clocks are compared by their
    /// difference only, which their drift moves by microseconds a minute).
    pub(crate) fn queue_delay(&self) -> Duration {
        self.recent.queue_delay()
    }

    /// The viewer's round-trip time (from RTCP receiver reports): how fast the rate
    /// control may grow near the capacity, and how often it cuts.
    pub(crate) fn on_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt.clamp(RTT_MIN, RTT_MAX);
    }

    /// The estimate in bits per second: the lower of the delay-based and loss-based
    /// ones, within the configured bounds.
    pub(crate) fn estimate(&self) -> u64 {
        self.rate
            .bps
            .min(self.loss.bps)
            .clamp(self.min_bps, self.max_bps) as u64
    }

    /// What the delay detector says now (for tests, logs and the layer choice: a
    /// viewer is not moved up while a queue builds).
    pub(crate) fn usage(&self) -> Usage {
        self.trend.usage
    }

    /// The throughput the viewer acknowledged over the last second of arrivals, in
    /// bits per second; None before the feedback spans 200 ms.
    #[cfg(test)]
    pub(crate) fn acked_bps(&self) -> Option<u64> {
        self.acked.bps().map(|b| b as u64)
    }

    /// Starts a probe: for a tenth of a second, extra packets paced so that, with what the
    /// caller sends anyway (`current_send_bps`), the viewer gets `target_bps`. Returns
    /// false, and starts nothing, while another probe runs or when the target is not
    /// above the current rate.
    pub(crate) fn start_probe(
        &mut self,
        target_bps: u64,
        current_send_bps: u64,
        now: Instant,
    ) -> bool {
        if self.probe.is_some() {
            return false;
        }
        let target = target_bps.min(self.max_bps as u64);
        let extra = target.saturating_sub(current_send_bps);
        if extra == 0 {
            return false;
        }
        let bits = extra as f64 * PROBE_DURATION.as_secs_f64();
        let packets = (bits / (PROBE_PACKET_BYTES * 8) as f64).ceil();
        let packets = (packets as u32).clamp(PROBE_MIN_PACKETS, PROBE_MAX_PACKETS);
        self.probe = Some(Box::new(Probe::new(packets, PROBE_DURATION / packets, now)));
        true
    }

    /// The size of the probe packet due now, if one is: the caller sends padding (or
    /// a resend) of about that size and reports it through
    /// [`on_sent`](Self::on_sent) with `probe`. Call it until it returns None. Also
    /// ends a probe whose feedback is overdue.
    pub(crate) fn poll_probe(&mut self, now: Instant) -> Option<usize> {
        self.drive_probe(now);
        self.probe.as_mut()?.poll(now)
    }

    /// When [`poll_probe`](Self::poll_probe) has something to do next: the next probe
    /// packet, or the end of a probe's wait.
    pub(crate) fn probe_timeout(&self) -> Option<Instant> {
        self.probe.as_deref().map(Probe::timeout)
    }

    /// Whether a probe runs, and how the last one ended.
    pub(crate) fn probe_state(&self) -> ProbeState {
        if self.probe.is_some() {
            ProbeState::Running
        } else {
            self.probe_result
        }
    }

    /// Moves the probe on: ends its sending, judges it, applies a success.
    fn drive_probe(&mut self, now: Instant) {
        let Some(p) = &mut self.probe else { return };
        p.end_sending_if_done(now);
        let Some(outcome) = p.outcome(now) else {
            return;
        };
        self.probe = None;
        self.probe_result = match outcome {
            Some(bps) => {
                let jump = (bps * PROBE_USE).min(self.max_bps);
                self.rate.on_probe(jump);
                self.loss.bps = self.loss.bps.max(jump);
                ProbeState::Succeeded { bps: bps as u64 }
            }
            None => ProbeState::Failed,
        };
    }

    /// µs from `base` to `at` (0 before it).
    fn micros(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_micros() as u64
    }

    /// The full send time of a record's wrapping one: the latest send time less how
    /// far before it the record is.
    fn full_send_us(&self, send_us: u32) -> u64 {
        let back = (self.last_send_us as u32).wrapping_sub(send_us);
        self.last_send_us.saturating_sub(u64::from(back))
    }

    /// The extended sequence number of a reported packet still in the history.
    /// A packet sent so long ago that the ring no longer holds it, but not longer than
    /// the largest ring would, says the feedback lags behind the ring: it grows, so
    /// the next packets are still known when their reports come.
    fn lookup(&mut self, seq: u16) -> Option<(u64, history::Sent)> {
        let newest = self.newest?;
        let ext = extend_seq(newest, seq)?;
        if ext > newest {
            return None;
        }
        let back = newest - ext;
        if back >= self.history.len() as u64 {
            if back < HISTORY_MAX as u64 {
                self.history.grow(newest);
            }
            return None;
        }
        Some((ext, self.history.get(ext)?))
    }

    /// What to add to a feedback's arrival times so they continue the previous
    /// feedback's across the wrap of the 24-bit reference time.
    fn reference_offset(&self, reference_us: i64) -> i64 {
        let Some((last, offset)) = self.reference else {
            return 0;
        };
        let step = reference_us.saturating_sub(last);
        if step > REFERENCE_PERIOD_US / 2 {
            offset.saturating_sub(REFERENCE_PERIOD_US)
        } else if step < -REFERENCE_PERIOD_US / 2 {
            offset.saturating_add(REFERENCE_PERIOD_US)
        } else {
            offset
        }
    }
}

#[cfg(test)]
mod tests;
