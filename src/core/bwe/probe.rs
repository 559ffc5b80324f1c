//! A probe cluster: extra packets paced over a tenth of a second so that, with the
//! media, the viewer gets a target rate; then what its feedback says, and the rate
//! it got through at if it arrived whole and about as fast as it was sent. A viewer
//! sent less than its link takes cannot show by its media how much more the link
//! takes; a short, bounded burst at the next layer's rate can, before the viewer
//! is moved there.

use std::time::{Duration, Instant};

/// How long a probe cluster goes out: long enough for its arrival rate to be
/// measured, short enough that a probe into a link that cannot take it adds only a
/// few kilobytes to the queue the viewer's media waits in.
pub(super) const PROBE_DURATION: Duration = Duration::from_millis(100);
/// Bytes of each probe packet (a full packet: fewer packets, the same rate).
pub(super) const PROBE_PACKET_BYTES: usize = 1200;
/// Fewest probe packets in a cluster, and fewest received for a result.
pub(super) const PROBE_MIN_PACKETS: u32 = 5;
/// Most probe packets in a cluster (19 Mbit/s on top of the media).
pub(super) const PROBE_MAX_PACKETS: u32 = 1000;
/// The part of the cluster that must arrive.
const PROBE_MIN_RECEIVED: f64 = 0.8;
/// The cluster must arrive at least this fast relative to how fast it was sent, or
/// the link could not take it.
const PROBE_MIN_RATIO: f64 = 0.9;
/// The estimate jumps to this share of the probed rate.
pub(super) const PROBE_USE: f64 = 0.95;
/// A probe packet the caller was given but did not report sent is given up after
/// this.
const PROBE_SEND_GRACE: Duration = Duration::from_millis(100);
/// A cluster whose feedback is incomplete this long after it went out is judged
/// on what arrived.
const PROBE_RESULT_TIMEOUT: Duration = Duration::from_secs(2);

/// What was sent of a probe cluster: from its first probe packet to its last, media
/// packets in between included.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct ClusterSent {
    packets: u32,
    bytes: u64,
    first_us: u64,
    last_us: u64,
    last_size: u64,
}

/// What the feedback says of a probe cluster's packets.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct ClusterReceived {
    received: u32,
    lost: u32,
    bytes: u64,
    /// The earliest arrival and the size of that packet, and the latest arrival.
    first: Option<(i64, u64)>,
    last_arrival: i64,
}

impl ClusterReceived {
    fn add(&mut self, arrival: Option<i64>, size: u64, was_lost: bool) {
        let Some(a) = arrival else {
            self.lost += 1;
            return;
        };
        if was_lost {
            self.lost = self.lost.saturating_sub(1);
        }
        self.received += 1;
        self.bytes += size;
        if self.first.is_none_or(|(f, _)| a < f) {
            self.first = Some((a, size));
        }
        self.last_arrival = if self.received == 1 {
            a
        } else {
            self.last_arrival.max(a)
        };
    }

    fn merge(&mut self, other: &ClusterReceived) {
        self.received += other.received;
        self.lost += other.lost;
        self.bytes += other.bytes;
        if let Some((a, size)) = other.first {
            if self.first.is_none_or(|(f, _)| a < f) {
                self.first = Some((a, size));
            }
            self.last_arrival = if self.received == other.received {
                other.last_arrival
            } else {
                self.last_arrival.max(other.last_arrival)
            };
        }
    }
}

/// A probe cluster: its pacing, then what is known of it.
///
/// The cluster is the sequence range from its first probe packet to its last, so
/// the media the caller sends meanwhile counts (the target is the total). Until the
/// last probe packet is sent, packets after the latest one are kept apart
/// (`pending_*`) and join when a later probe packet shows they are inside.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Probe {
    /// Probe packets still to hand out, and when the next is due.
    remaining: u32,
    next_at: Instant,
    interval: Duration,
    /// Probe packets planned, and reported sent.
    planned: u32,
    probes_sent: u32,
    last_poll: Option<Instant>,
    /// Set when the cluster is complete: now it waits for feedback.
    sent_at: Option<Instant>,
    first_ext: Option<u64>,
    last_probe_ext: u64,
    sent: ClusterSent,
    pending_sent: (u32, u64),
    received: ClusterReceived,
    pending_received: ClusterReceived,
    /// The detector said overuse while the probe ran.
    pub(super) overused: bool,
}

impl Probe {
    pub(super) fn new(packets: u32, interval: Duration, now: Instant) -> Self {
        Probe {
            remaining: packets,
            next_at: now,
            interval,
            planned: packets,
            probes_sent: 0,
            last_poll: None,
            sent_at: None,
            first_ext: None,
            last_probe_ext: 0,
            sent: ClusterSent::default(),
            pending_sent: (0, 0),
            received: ClusterReceived::default(),
            pending_received: ClusterReceived::default(),
            overused: false,
        }
    }

    pub(super) fn is_sending(&self) -> bool {
        self.sent_at.is_none()
    }

    pub(super) fn poll(&mut self, now: Instant) -> Option<usize> {
        if !self.is_sending() || self.remaining == 0 || now < self.next_at {
            return None;
        }
        self.remaining -= 1;
        self.last_poll = Some(now);
        self.next_at += self.interval;
        if self.next_at < now {
            // The caller came late by more than an interval: send one now and the
            // next an interval later; a catch-up burst would measure the burst.
            self.next_at = now + self.interval;
        }
        Some(PROBE_PACKET_BYTES)
    }

    pub(super) fn timeout(&self) -> Instant {
        match (self.sent_at, self.last_poll) {
            (Some(at), _) => at + PROBE_RESULT_TIMEOUT,
            (None, Some(last)) if self.remaining == 0 => last + PROBE_SEND_GRACE,
            _ => self.next_at,
        }
    }

    pub(super) fn on_sent(&mut self, ext: u64, us: u64, size: u64, probe: bool) {
        if !self.is_sending() {
            return;
        }
        if probe {
            if self.first_ext.is_none() {
                self.first_ext = Some(ext);
                self.sent.first_us = us;
            }
            let (packets, bytes) = std::mem::take(&mut self.pending_sent);
            self.sent.packets += packets + 1;
            self.sent.bytes += bytes + size;
            self.sent.last_us = us;
            self.sent.last_size = size;
            let pending = std::mem::take(&mut self.pending_received);
            self.received.merge(&pending);
            self.last_probe_ext = ext;
            self.probes_sent += 1;
        } else if self.first_ext.is_some() {
            self.pending_sent.0 += 1;
            self.pending_sent.1 += size;
        }
    }

    pub(super) fn on_reported(
        &mut self,
        ext: u64,
        arrival: Option<i64>,
        size: u64,
        was_lost: bool,
    ) {
        let Some(first) = self.first_ext else { return };
        if ext < first {
            return;
        }
        if ext <= self.last_probe_ext {
            self.received.add(arrival, size, was_lost);
        } else if self.is_sending() {
            self.pending_received.add(arrival, size, was_lost);
        }
    }

    /// Ends the sending once every probe packet went out, or the last one handed
    /// out was not reported sent in time.
    pub(super) fn end_sending_if_done(&mut self, now: Instant) {
        if !self.is_sending() || self.remaining > 0 {
            return;
        }
        let given_up = self
            .last_poll
            .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_SEND_GRACE);
        if self.probes_sent >= self.planned || given_up {
            self.sent_at = Some(now);
            self.pending_sent = (0, 0);
            self.pending_received = ClusterReceived::default();
        }
    }

    /// None while the result is not in; Some(Some(bps)) when the cluster got
    /// through at `bps`, Some(None) when it did not.
    pub(super) fn outcome(&self, now: Instant) -> Option<Option<f64>> {
        let sent_at = self.sent_at?;
        let reported = self.received.received + self.received.lost;
        let complete = reported >= self.sent.packets;
        if !complete && now.saturating_duration_since(sent_at) < PROBE_RESULT_TIMEOUT {
            return None;
        }
        Some(self.rate())
    }

    /// The probed rate: the lower of the send and receive rates, if the cluster
    /// arrived (mostly) whole, about as fast as it was sent, without overuse.
    fn rate(&self) -> Option<f64> {
        let (sent, recv) = (&self.sent, &self.received);
        if self.overused
            || recv.received < PROBE_MIN_PACKETS
            || f64::from(recv.received) < PROBE_MIN_RECEIVED * f64::from(sent.packets)
        {
            return None;
        }
        // Each rate leaves out the packet at one end: n packets span n-1 gaps.
        let send_span = sent.last_us.checked_sub(sent.first_us).filter(|&s| s > 0)?;
        let send_bps = sent.bytes.saturating_sub(sent.last_size) as f64 * 8e6 / send_span as f64;
        let (first_arrival, first_size) = recv.first?;
        let recv_span = recv.last_arrival.saturating_sub(first_arrival);
        if recv_span <= 0 {
            return None;
        }
        let recv_bps = recv.bytes.saturating_sub(first_size) as f64 * 8e6 / recv_span as f64;
        (recv_bps >= PROBE_MIN_RATIO * send_bps).then(|| send_bps.min(recv_bps))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::PROBE_PACKET_BYTES;
    use crate::core::bwe::tests::{KBPS, Link, MBPS, Rate, SEC, Sim, config, kbps, secs};
    use crate::core::{Bwe, ProbeState};

    #[test]
    fn a_probe_raises_the_estimate_on_a_link_that_takes_it() {
        let mut sim = Sim::new(
            config(300 * KBPS),
            Link::new(5 * MBPS),
            Rate::Fixed(200 * KBPS),
        );
        sim.run_for(5 * SEC);
        let before = sim.bwe.estimate();
        let now = sim.now();
        assert!(sim.bwe.start_probe(2 * MBPS, 200 * KBPS, now));
        assert_eq!(sim.bwe.probe_state(), ProbeState::Running);
        let took = sim
            .run_until(2 * SEC, |s| s.bwe.estimate() >= 1_700 * KBPS)
            .expect("the estimate reaches 1.7 Mbit/s");
        let state = sim.bwe.probe_state();
        eprintln!(
            "probe to 2M from 200k on 5M: estimate {}k -> {}k after {:.2} s, {state:?}",
            kbps(before),
            kbps(sim.bwe.estimate()),
            secs(took)
        );
        let ProbeState::Succeeded { bps } = state else {
            panic!("{state:?}");
        };
        assert!((1_800 * KBPS..=2_200 * KBPS).contains(&bps), "{bps}");
        // The media alone does not pull the estimate back down.
        sim.run_for(5 * SEC);
        assert!(sim.bwe.estimate() >= 1_700 * KBPS, "{}", sim.bwe.estimate());
    }

    #[test]
    fn a_probe_into_a_narrow_link_fails_and_leaves_the_estimate_under_it() {
        let mut sim = Sim::new(
            config(300 * KBPS),
            Link::new(600 * KBPS),
            Rate::Fixed(200 * KBPS),
        );
        sim.run_for(5 * SEC);
        let before = sim.bwe.estimate();
        let now = sim.now();
        let start = sim.now_us;
        assert!(sim.bwe.start_probe(2 * MBPS, 200 * KBPS, now));
        let took = sim
            .run_until(5 * SEC, |s| s.bwe.probe_state() != ProbeState::Running)
            .expect("the probe ends");
        sim.run_for(5 * SEC);
        let (lo, hi) = sim.range_since(start);
        eprintln!(
            "probe to 2M from 200k on 600k: {:?} after {:.2} s; estimate {}k before, {}k..{}k after",
            sim.bwe.probe_state(),
            secs(took),
            kbps(before),
            kbps(lo),
            kbps(hi)
        );
        assert_eq!(sim.bwe.probe_state(), ProbeState::Failed);
        assert!(hi <= 700 * KBPS, "{hi}");
    }

    #[test]
    fn periodic_probes_find_restored_capacity_within_15_s() {
        let mut sim = Sim::new(
            config(2_500 * KBPS),
            Link::new(600 * KBPS),
            Rate::FollowEstimate,
        );
        sim.probe_every_us = Some(3 * SEC);
        sim.next_probe_us = 3 * SEC;
        sim.run_for(20 * SEC);
        let congested = sim.bwe.estimate();
        let (lo, hi) = sim.range_since(2 * SEC);
        sim.link.capacity_bps = 10 * MBPS;
        let probes = sim.probes_started;
        let took = sim
            .run_until(15 * SEC, |s| s.bwe.estimate() > 2 * MBPS)
            .expect("the estimate climbs past 2 Mbit/s");
        eprintln!(
            "600k -> 10M with a probe every 3 s: {}k..{}k while congested ({probes} probes), {}k at the change; over 2M after {:.2} s ({} probes)",
            kbps(lo),
            kbps(hi),
            kbps(congested),
            secs(took),
            sim.probes_started - probes
        );
        assert!(took <= 15 * SEC);
    }

    #[test]
    fn probe_packets_are_paced_over_a_tenth_of_a_second() {
        let t0 = Instant::now();
        let mut bwe = Bwe::new(config(300 * KBPS), t0);
        assert!(
            !bwe.start_probe(200 * KBPS, 200 * KBPS, t0),
            "nothing to add"
        );
        assert_eq!(bwe.probe_state(), ProbeState::Idle);
        assert!(bwe.start_probe(2 * MBPS, 200 * KBPS, t0));
        assert!(!bwe.start_probe(3 * MBPS, 200 * KBPS, t0), "one at a time");
        // 1.8 Mbit/s for 0.1 s in packets of 1200 bytes: 19, 5.3 ms apart.
        let mut sent = Vec::new();
        let mut seq = 0u16;
        for ms in 0..700u64 {
            let now = t0 + Duration::from_millis(ms);
            while let Some(bytes) = bwe.poll_probe(now) {
                assert_eq!(bytes, PROBE_PACKET_BYTES);
                bwe.on_sent(seq, bytes, now, true);
                seq += 1;
                sent.push(ms);
            }
            if let Some(t) = bwe.probe_timeout() {
                assert!(t > now, "the timeout is in the future after a poll");
            }
        }
        assert_eq!(sent.len(), 19);
        let span = sent[sent.len() - 1] - sent[0];
        assert!((90..=100).contains(&span), "{span} ms");
        assert!(
            sent.windows(2).all(|w| (5..=6).contains(&(w[1] - w[0]))),
            "{sent:?}"
        );
        // No feedback: the probe fails once its wait is over.
        assert_eq!(bwe.probe_state(), ProbeState::Running);
        let wait = bwe.probe_timeout().expect("waiting for feedback");
        assert_eq!(bwe.poll_probe(wait), None);
        assert_eq!(bwe.probe_state(), ProbeState::Failed);
        assert_eq!(bwe.estimate(), 300 * KBPS);
        assert!(
            bwe.start_probe(2 * MBPS, 200 * KBPS, wait),
            "a new probe may start"
        );
    }

    #[test]
    fn a_caller_late_for_probe_packets_gets_no_burst() {
        let t0 = Instant::now();
        let mut bwe = Bwe::new(config(300 * KBPS), t0);
        assert!(bwe.start_probe(2 * MBPS, 200 * KBPS, t0));
        assert!(bwe.poll_probe(t0).is_some());
        // 50 ms late: one packet, the next an interval later.
        let late = t0 + Duration::from_millis(50);
        assert!(bwe.poll_probe(late).is_some());
        assert_eq!(bwe.poll_probe(late), None);
        let next = bwe.probe_timeout().unwrap();
        assert!(next > late && next <= late + Duration::from_millis(6));
    }
}
