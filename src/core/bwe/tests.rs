//! The estimator against hand-made feedback, and against a deterministic link
//! simulator: a virtual clock in 1 ms steps, a sender of 30 frames a second, a
//! bottleneck with a drop-tail queue (like `tc tbf latency 400ms`), propagation
//! delay, jitter and random loss from a seeded generator, and a receiver that sends
//! transport-wide feedback every 50 ms, written with `wire::twcc` and parsed back.
//! The figures each scenario measured are printed (`--nocapture`).
//!
//! Here are the simulator, the helpers for hand-made feedback, and the tests of
//! the whole estimator; a test of one part (delay, rate, loss, probe) sits in that
//! part's file and uses them from here.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::history::{HISTORY_MAX, HISTORY_MIN, Sent};
use crate::core::{Bwe, BweConfig, Usage};
use crate::wire::twcc::{
    TwccFeedback, TwccPacket, feedback_bodies, parse_feedback, write_feedback,
};

/// Microseconds in a millisecond and a second.
pub(super) const MS: u64 = 1_000;
pub(super) const SEC: u64 = 1_000_000;
pub(super) const KBPS: u64 = 1_000;
pub(super) const MBPS: u64 = 1_000_000;
/// 30 frames a second.
const FRAME_US: u64 = 33_333;
const FEEDBACK_INTERVAL_US: u64 = 50 * MS;
/// The first transport-wide sequence number: every run wraps past 65535 early.
const FIRST_SEQ: u16 = 65_000;

pub(super) fn config(initial_bps: u64) -> BweConfig {
    BweConfig {
        initial_bps,
        min_bps: 50 * KBPS,
        max_bps: 20 * MBPS,
    }
}

/// xorshift64*: a seeded generator, so every run is the same.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The path from wishd to the viewer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Link {
    pub(super) capacity_bps: u64,
    /// The bottleneck's queue, as the time it takes to drain when full.
    pub(super) buffer_us: u64,
    /// One-way propagation delay (feedback comes back as fast).
    pub(super) delay_us: u64,
    /// Each arrival moves by up to this either way (never before the previous one).
    pub(super) jitter_us: u64,
    /// Share of packets lost at random before the bottleneck.
    pub(super) loss: f64,
}

impl Link {
    pub(super) fn new(capacity_bps: u64) -> Self {
        Link {
            capacity_bps,
            buffer_us: 400 * MS,
            delay_us: 20 * MS,
            jitter_us: 0,
            loss: 0.0,
        }
    }
}

/// How fast the simulated sender sends its media.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rate {
    Fixed(u64),
    /// At the estimate, as the egress choosing layers would (without their steps).
    FollowEstimate,
}

/// After each feedback: when (µs), the estimate, what the detector said.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    at_us: u64,
    estimate: u64,
    pub(super) usage: Usage,
}

pub(super) struct Sim {
    t0: Instant,
    pub(super) now_us: u64,
    pub(super) bwe: Bwe,
    pub(super) link: Link,
    rng: Rng,
    rate: Rate,
    /// When the bottleneck will have sent all it holds.
    busy_until_us: u64,
    last_arrival_us: u64,
    next_seq: u16,
    next_frame_us: u64,
    /// Sent packets not reported yet, in order: (seq, arrival on our clock).
    unreported: VecDeque<(u16, Option<u64>)>,
    next_feedback_us: u64,
    feedback_count: u8,
    /// Feedback on its way back: (delivery time, packet).
    returning: VecDeque<(u64, Vec<u8>)>,
    next_rtt_us: u64,
    /// The receiver's clock less ours.
    receiver_offset_us: i64,
    parsed: Vec<TwccPacket>,
    pub(super) log: Vec<Entry>,
    /// Periodic probes: every this long, towards twice the estimate.
    pub(super) probe_every_us: Option<u64>,
    pub(super) next_probe_us: u64,
    pub(super) probes_started: u32,
}

impl Sim {
    pub(super) fn new(config: BweConfig, link: Link, rate: Rate) -> Self {
        let t0 = Instant::now();
        Sim {
            t0,
            now_us: 0,
            bwe: Bwe::new(config, t0),
            link,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            rate,
            busy_until_us: 0,
            last_arrival_us: 0,
            next_seq: FIRST_SEQ,
            next_frame_us: 0,
            unreported: VecDeque::new(),
            next_feedback_us: FEEDBACK_INTERVAL_US,
            feedback_count: 0,
            returning: VecDeque::new(),
            next_rtt_us: SEC,
            receiver_offset_us: 1_234_567_000,
            parsed: Vec::new(),
            log: Vec::new(),
            probe_every_us: None,
            next_probe_us: 0,
            probes_started: 0,
        }
    }

    fn at(&self, us: u64) -> Instant {
        self.t0 + Duration::from_micros(us)
    }

    pub(super) fn now(&self) -> Instant {
        self.at(self.now_us)
    }

    /// Runs the world for `us` more microseconds, in steps of 1 ms.
    pub(super) fn run_for(&mut self, us: u64) {
        let end = self.now_us + us;
        while self.now_us < end {
            self.step();
        }
    }

    /// Runs until `done` holds after a step, for at most `us`; returns how long it took.
    pub(super) fn run_until(&mut self, us: u64, mut done: impl FnMut(&Sim) -> bool) -> Option<u64> {
        let start = self.now_us;
        while self.now_us < start + us {
            self.step();
            if done(self) {
                return Some(self.now_us - start);
            }
        }
        None
    }

    fn step(&mut self) {
        self.now_us += MS;
        let now = self.now();
        while let Some((t, _)) = self.returning.front()
            && *t <= self.now_us
        {
            let Some((_, bytes)) = self.returning.pop_front() else {
                break;
            };
            for body in feedback_bodies(&bytes) {
                if let Some(fb) = parse_feedback(body, &mut self.parsed) {
                    self.bwe.on_feedback(&fb, &self.parsed, now);
                }
            }
            self.log.push(Entry {
                at_us: self.now_us,
                estimate: self.bwe.estimate(),
                usage: self.bwe.usage(),
            });
        }
        if let Some(every) = self.probe_every_us
            && self.now_us >= self.next_probe_us
        {
            self.next_probe_us = self.now_us + every;
            let send = self.send_rate();
            if self.bwe.start_probe(2 * self.bwe.estimate(), send, now) {
                self.probes_started += 1;
            }
        }
        while self.next_frame_us <= self.now_us {
            self.send_frame();
            self.next_frame_us += FRAME_US;
        }
        while let Some(bytes) = self.bwe.poll_probe(now) {
            self.send(bytes, true);
        }
        if self.now_us >= self.next_feedback_us {
            self.send_feedback();
            self.next_feedback_us += FEEDBACK_INTERVAL_US;
        }
        if self.now_us >= self.next_rtt_us {
            let queue = self.busy_until_us.saturating_sub(self.now_us);
            self.bwe
                .on_rtt(Duration::from_micros(2 * self.link.delay_us + queue));
            self.next_rtt_us += SEC;
        }
    }

    fn send_rate(&self) -> u64 {
        match self.rate {
            Rate::Fixed(bps) => bps,
            Rate::FollowEstimate => self.bwe.estimate(),
        }
    }

    /// One frame at the send rate, in packets of at most 1200 bytes, all at once.
    fn send_frame(&mut self) {
        let bytes = (self.send_rate() * FRAME_US / 8 / SEC) as usize;
        let packets = bytes.div_ceil(1200).max(1);
        for _ in 0..packets {
            self.send((bytes / packets).max(100), false);
        }
    }

    fn send(&mut self, bytes: usize, probe: bool) {
        let seq = self.next_seq;
        self.next_seq = seq.wrapping_add(1);
        let now = self.now();
        self.bwe.on_sent(seq, bytes, now, probe);
        let arrival = self.transmit(bytes);
        self.unreported.push_back((seq, arrival));
    }

    /// When a packet sent now arrives, if it does.
    fn transmit(&mut self, bytes: usize) -> Option<u64> {
        if self.link.loss > 0.0 && self.rng.unit() < self.link.loss {
            return None;
        }
        let start = self.busy_until_us.max(self.now_us);
        let serialize = (bytes as u64 * 8 * SEC).div_ceil(self.link.capacity_bps);
        if start - self.now_us + serialize > self.link.buffer_us {
            return None;
        }
        self.busy_until_us = start + serialize;
        let j = self.link.jitter_us as f64;
        let jitter = (self.rng.unit() * 2.0 * j - j) as i64;
        let arrival = ((self.busy_until_us + self.link.delay_us) as i64 + jitter) as u64;
        let arrival = arrival.max(self.last_arrival_us);
        self.last_arrival_us = arrival;
        Some(arrival)
    }

    /// The receiver reports every packet up to the newest that has arrived.
    fn send_feedback(&mut self) {
        let now = self.now_us;
        let Some(last) = self
            .unreported
            .iter()
            .rposition(|&(_, a)| a.is_some_and(|a| a <= now))
        else {
            return;
        };
        let base = self.unreported[0].0;
        let offset = self.receiver_offset_us;
        let arrivals: Vec<Option<i64>> = self
            .unreported
            .drain(..=last)
            .map(|(_, a)| a.map(|a| a as i64 + offset))
            .collect();
        let mut bytes = Vec::new();
        write_feedback(1, 2, base, self.feedback_count, &arrivals, &mut bytes)
            .expect("the simulator's feedback fits the format");
        self.feedback_count = self.feedback_count.wrapping_add(1);
        self.returning.push_back((now + self.link.delay_us, bytes));
    }

    /// The log from `from_us` on.
    fn since(&self, from_us: u64) -> impl Iterator<Item = &Entry> {
        self.log.iter().filter(move |e| e.at_us >= from_us)
    }

    /// The lowest and highest estimate from `from_us` on.
    pub(super) fn range_since(&self, from_us: u64) -> (u64, u64) {
        self.since(from_us).fold((u64::MAX, 0), |(lo, hi), e| {
            (lo.min(e.estimate), hi.max(e.estimate))
        })
    }
}

pub(super) fn secs(us: u64) -> f64 {
    us as f64 / SEC as f64
}

pub(super) fn kbps(bps: u64) -> u64 {
    bps / KBPS
}

#[test]
fn estimate_falls_under_the_link_rate_within_a_second_of_congestion() {
    // 2.5 Mbit/s into 600 kbit/s with 400 ms of queue.
    let mut sim = Sim::new(
        config(2_500 * KBPS),
        Link::new(600 * KBPS),
        Rate::FollowEstimate,
    );
    let fell = sim
        .run_until(5 * SEC, |s| s.bwe.estimate() < 600 * KBPS)
        .expect("the estimate falls under the link rate");
    sim.run_for(30 * SEC);
    let (lo, hi) = sim.range_since(fell);
    let overuses = sim
        .log
        .windows(2)
        .filter(|w| w[1].usage == Usage::Overusing && w[0].usage != Usage::Overusing)
        .count();
    eprintln!(
        "2.5M into 600k: under 600k after {:.2} s; then {}k..{}k for 30 s, {} overuse episodes, acked {:?}",
        secs(fell),
        kbps(lo),
        kbps(hi),
        overuses,
        sim.bwe.acked_bps()
    );
    assert!(fell <= SEC, "fell after {fell} µs");
    assert!(lo >= 300 * KBPS && hi <= 700 * KBPS, "{lo}..{hi}");
}

#[test]
fn malformed_feedback_changes_nothing_and_never_panics() {
    let mut sim = Sim::new(config(MBPS), Link::new(5 * MBPS), Rate::Fixed(800 * KBPS));
    sim.run_for(3 * SEC);
    let now = sim.now();
    let before = sim.bwe.clone();
    let mut out = Vec::new();
    // A real feedback, truncated at every length: refused by the parser.
    let mut bytes = Vec::new();
    let arrivals: Vec<Option<i64>> = (0..30)
        .map(|i| (i % 4 != 0).then_some(5_000_000 + i * 700))
        .collect();
    write_feedback(
        1,
        2,
        sim.next_seq.wrapping_sub(30),
        0,
        &arrivals,
        &mut bytes,
    )
    .unwrap();
    let body = feedback_bodies(&bytes).next().unwrap().to_vec();
    for cut in 0..body.len() - 4 {
        if let Some(fb) = parse_feedback(&body[..cut], &mut out) {
            panic!("a cut at {cut} parsed: {fb:?}");
        }
        sim.bwe.on_feedback(&fb_header(0, 0), &out, now);
    }
    // Bad counts: none, and more than the chunks hold.
    for count in [0u16, 9_000, u16::MAX] {
        let mut bad = body.clone();
        bad[10..12].copy_from_slice(&count.to_be_bytes());
        assert!(parse_feedback(&bad, &mut out).is_none());
    }
    // Sequence numbers never sent: ahead of the newest, and long forgotten.
    let next = sim.next_seq;
    for base in [
        next,
        next.wrapping_add(1000),
        next.wrapping_sub(HISTORY_MAX as u16 + 50),
        next.wrapping_add(32_768),
    ] {
        let packets: Vec<TwccPacket> = (0..40u16)
            .map(|i| TwccPacket {
                seq: base.wrapping_add(i),
                arrival_us: match i % 3 {
                    0 => None,
                    1 => Some(i64::MAX),
                    _ => Some(i64::MIN),
                },
            })
            .collect();
        sim.bwe
            .on_feedback(&fb_header(base, i64::MIN), &packets, now);
    }
    sim.bwe.on_feedback(&fb_header(0, 0), &[], now);
    assert!(sim.bwe == before, "nothing changed");
    // Garbage through the parser, and whatever parses into the estimator.
    let mut rng = Rng(7);
    for len in 0..400 {
        let junk: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if let Some(fb) = parse_feedback(&junk, &mut out) {
            sim.bwe.on_feedback(&fb, &out, now);
        }
    }
    // Known packets with absurd arrival times: no panic, and the estimate stays in
    // its bounds.
    let recent = sim.next_seq.wrapping_sub(20);
    for arrival in [i64::MAX, i64::MIN, 0, i64::MAX / 2] {
        let packets: Vec<TwccPacket> = (0..20u16)
            .map(|i| TwccPacket {
                seq: recent.wrapping_add(i),
                arrival_us: Some(arrival.wrapping_add(i64::from(i) * 1_000)),
            })
            .collect();
        sim.bwe
            .on_feedback(&fb_header(recent, arrival), &packets, now);
    }
    assert!((50 * KBPS..=20 * MBPS).contains(&sim.bwe.estimate()));
    sim.run_for(2 * SEC);
}

/// A feedback header for hand-made packet lists.
fn fb_header(base_seq: u16, reference_us: i64) -> TwccFeedback {
    TwccFeedback {
        sender_ssrc: 1,
        media_ssrc: 2,
        base_seq,
        status_count: 0,
        reference_us,
        feedback_count: 0,
    }
}

#[test]
fn the_receivers_reference_time_wrapping_is_seamless() {
    let link = Link {
        jitter_us: MS,
        ..Link::new(5 * MBPS)
    };
    let run = |offset_us: i64| {
        let mut sim = Sim::new(config(300 * KBPS), link, Rate::Fixed(800 * KBPS));
        sim.receiver_offset_us = offset_us;
        sim.run_for(10 * SEC);
        sim.log
            .iter()
            .map(|e| (e.estimate, e.usage))
            .collect::<Vec<_>>()
    };
    // 3 s before the signed 24-bit reference time of 64 ms turns over, on a 50 ms
    // boundary so the throughput buckets line up with the other run's.
    let half_period_us: i64 = (1 << 23) * 64_000;
    let near_wrap = (half_period_us / 50_000 - 60) * 50_000;
    let wrapped = run(near_wrap);
    assert_eq!(wrapped, run(0));
    assert!(wrapped.iter().all(|(_, u)| *u != Usage::Overusing));
}

/// Feeds `bwe` one packet per group: sent every `gap_us`, arriving with a queueing
/// delay of `delay_us(i)`; feedback every 5 packets. Returns the usages seen.
pub(super) fn feed_groups(
    bwe: &mut Bwe,
    t0: Instant,
    first: u16,
    n: u16,
    gap_us: u64,
    delay_us: impl Fn(u16) -> i64,
) -> Vec<Usage> {
    let mut usages = Vec::new();
    let mut packets = Vec::new();
    for i in 0..n {
        let seq = first.wrapping_add(i);
        let send = u64::from(i) * gap_us;
        bwe.on_sent(seq, 1000, t0 + Duration::from_micros(send), false);
        packets.push(TwccPacket {
            seq,
            arrival_us: Some(send as i64 + 30_000 + delay_us(i)),
        });
        if packets.len() == 5 {
            let at = t0 + Duration::from_micros(send + 60_000);
            bwe.on_feedback(&fb_header(packets[0].seq, 0), &packets, at);
            packets.clear();
            usages.push(bwe.usage());
        }
    }
    usages
}

#[test]
fn the_estimator_takes_about_2_kib_until_its_feedback_lags() {
    let inline = std::mem::size_of::<Bwe>();
    assert_eq!(std::mem::size_of::<Sent>(), 8);
    let (least, most) = (HISTORY_MIN * 8, HISTORY_MAX * 8);
    eprintln!("Bwe: {inline} bytes inline + {least} to {most} bytes of history");
    // The per-viewer budget is 100 KiB in all; most viewers never grow the history.
    assert!(inline + least <= 2 * 1024 + 256);
    assert!(inline + most <= 18 * 1024);
}

#[test]
fn the_history_grows_to_hold_a_long_round_trip_and_only_then() {
    // 8 Mbit/s over a path with a 1.2 s round trip: about a thousand packets are in
    // flight or waiting for their report at any time.
    let mut link = Link::new(20 * MBPS);
    link.delay_us = 600 * MS;
    let mut sim = Sim::new(config(8 * MBPS), link, Rate::Fixed(8 * MBPS));
    sim.run_for(10 * SEC);
    let held = sim.bwe.history.len();
    let acked = sim.bwe.acked_bps().unwrap_or(0);
    eprintln!("1.2 s round trip at 8M: history {held} packets, acked {acked} bit/s");
    assert!((1024..=HISTORY_MAX).contains(&held), "{held}");
    assert!(acked > 7 * MBPS, "the reports were matched: {acked}");
    assert!(sim.bwe.estimate() > 7 * MBPS, "{}", sim.bwe.estimate());

    // A viewer whose player sends no feedback keeps the smallest ring.
    let t0 = Instant::now();
    let mut quiet = Bwe::new(config(8 * MBPS), t0);
    for i in 0..5_000u32 {
        let at = t0 + Duration::from_micros(u64::from(i) * 1_000);
        quiet.on_sent(i as u16, 1200, at, false);
    }
    assert_eq!(quiet.history.len(), HISTORY_MIN);
}
