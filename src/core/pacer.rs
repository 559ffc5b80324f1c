//! Pacing of the video a viewer is sent all at once: the cached group of pictures a
//! late viewer starts from, or the one it is sent again after a keyframe request.
//!
//! Written in one go, a few hundred packets overflow the socket buffers between
//! wishd and the viewer (on loopback the viewer's receive buffer, on a real path a
//! router's queue) and the viewer loses a run of them. The [`Pacer`] holds such a
//! burst per viewer and releases it through a token bucket: `burst` bytes at once,
//! then `rate` bytes per second. Live packets of a viewer that is still being paced
//! queue behind the burst (so the viewer gets them in order); once its queue is empty
//! the viewer is unpaced and live packets go straight out again.
//!
//! A viewer's queue is released in quanta of at least `quantum` bytes (or all it
//! holds, when that is less): the bucket fills for about 10 ms and then a run of
//! packets leaves at once. The average rate is the same as one packet at a time, but
//! the worker writes the run as one GSO message (see `media::outbox`) and wakes up
//! an eighth as often, which is most of what a burst of joining viewers costs it.
//!
//! Sans-IO like the rest of the core: the caller passes `now`, asks
//! [`Pacer::poll_timeout`] when to come back, and writes what [`Pacer::poll`] releases.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::packet::{Forward, ViewerId};

/// Default release rate: 1 MB/s (8 Mbit/s, what nearly every viewer's link takes in
/// a burst). A keyframe of 100 KB (1080p) goes out in about 100 ms, a cached 3 s group
/// of a 1 Mbit/s camera (375 KB) in under 400 ms; live video is slower than this, so
/// the queue drains and the viewer is live soon after.
pub(crate) const DEFAULT_RATE: u64 = 1_000_000;
/// Default burst: bytes released at once before the rate applies (about 13 full packets).
pub(crate) const DEFAULT_BURST: u64 = 16 * 1024;
/// Default release quantum: eight full packets, 10 ms at the default rate.
pub(crate) const DEFAULT_QUANTUM: u64 = 10 * 1024;
/// Packets queued per viewer at most; past it the oldest are dropped (and counted).
/// The cached group is bounded far below this, and the queue drains faster than a
/// live stream fills it, so this only stops a viewer from growing without bound.
pub(crate) const MAX_QUEUE: usize = 8192;

#[derive(Debug)]
struct Queue {
    packets: VecDeque<Forward>,
    /// Payload bytes in `packets`.
    bytes: u64,
    /// Bytes that may go out now (token bucket).
    tokens: u64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

impl Queue {
    /// Tokens the queue needs before it releases anything: its first packet, and at
    /// least a quantum or all it holds; never more than the bucket.
    fn threshold(&self, burst: u64, quantum: u64) -> u64 {
        let cap = burst.max(1);
        let first = self.packets.front().map_or(0, |f| f.payload.len() as u64);
        first.max(quantum.min(self.bytes)).min(cap)
    }
}

/// Counters of a [`Pacer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PacerStats {
    /// Packets that went through a queue (released or still queued).
    pub(crate) queued: u64,
    /// Packets dropped because a viewer's queue was full.
    pub(crate) dropped: u64,
}

/// Per-viewer token-bucket queues for bursts of video.
#[derive(Debug)]
pub(crate) struct Pacer {
    rate: u64,
    burst: u64,
    quantum: u64,
    /// By viewer: a live packet of any viewer looks its queue up (a join burst can
    /// pace hundreds of viewers at once).
    queues: BTreeMap<ViewerId, Queue>,
    stats: PacerStats,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer::new(DEFAULT_RATE, DEFAULT_BURST).with_quantum(DEFAULT_QUANTUM)
    }
}

impl Pacer {
    /// A pacer releasing `burst` bytes at once and then `rate` bytes per second per
    /// viewer. A zero rate is taken as 1 byte per second.
    pub(crate) fn new(rate: u64, burst: u64) -> Self {
        Pacer {
            rate: rate.max(1),
            burst,
            quantum: 0,
            queues: BTreeMap::new(),
            stats: PacerStats::default(),
        }
    }

    /// Releases a viewer's packets only once `quantum` bytes (at most the burst) may
    /// go, or all it has queued: runs of packets instead of one at a time.
    pub(crate) fn with_quantum(mut self, quantum: u64) -> Self {
        self.quantum = quantum;
        self
    }

    /// True when `viewer` has packets waiting: its new packets must queue behind them.
    pub(crate) fn is_pacing(&self, viewer: ViewerId) -> bool {
        self.queues.contains_key(&viewer)
    }

    /// True when no viewer is being paced (the packet path's fast check).
    pub(crate) fn is_idle(&self) -> bool {
        self.queues.is_empty()
    }

    /// Queues `f` behind its viewer's earlier packets if that viewer is being paced;
    /// otherwise hands it back to be written at once.
    pub(crate) fn queue_if_pacing(&mut self, f: Forward) -> Option<Forward> {
        match self.queues.get_mut(&f.viewer) {
            Some(q) => {
                if q.packets.len() >= MAX_QUEUE
                    && let Some(old) = q.packets.pop_front()
                {
                    q.bytes -= old.payload.len() as u64;
                    self.stats.dropped += 1;
                }
                q.bytes += f.payload.len() as u64;
                q.packets.push_back(f);
                self.stats.queued += 1;
                None
            }
            None => Some(f),
        }
    }

    /// Queues a packet behind the viewer's earlier ones. A viewer that was not paced
    /// starts with a full bucket (`burst` bytes) at `now`.
    pub(crate) fn enqueue(&mut self, f: Forward, now: Instant) {
        if let Some(f) = self.queue_if_pacing(f) {
            self.queues.insert(
                f.viewer,
                Queue {
                    bytes: f.payload.len() as u64,
                    packets: VecDeque::from([f]),
                    tokens: self.burst,
                    updated: now,
                },
            );
            self.stats.queued += 1;
        }
    }

    /// Appends to `out` every packet whose turn has come by `now`, oldest first per
    /// viewer. Viewers whose queue ran empty are no longer paced.
    pub(crate) fn poll(&mut self, now: Instant, out: &mut Vec<Forward>) {
        let (rate, burst, quantum) = (self.rate, self.burst, self.quantum);
        for q in self.queues.values_mut() {
            let elapsed = now.saturating_duration_since(q.updated);
            let earned = u128::from(rate) * elapsed.as_nanos() / 1_000_000_000;
            // Advance `updated` only by the time the earned whole bytes stand for, so
            // frequent polls do not lose fractions.
            let used = Duration::from_nanos(
                u64::try_from(earned * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX),
            );
            q.updated += used;
            q.tokens = (q.tokens as u128 + earned).min(u128::from(burst.max(1))) as u64;
            if q.tokens >= burst {
                // A full bucket does not keep earning.
                q.updated = now;
            }
            if q.tokens < q.threshold(burst, quantum) {
                continue;
            }
            while let Some(f) = q.packets.front() {
                let size = f.payload.len() as u64;
                // A packet bigger than the whole bucket goes when the bucket is full.
                if q.tokens < size.min(burst.max(1)) {
                    break;
                }
                q.tokens = q.tokens.saturating_sub(size);
                q.bytes -= size;
                if let Some(f) = q.packets.pop_front() {
                    out.push(f);
                }
            }
        }
        self.queues.retain(|_, q| !q.packets.is_empty());
    }

    /// When [`poll`](Self::poll) will next release something, if anything is queued.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.queues
            .values()
            .filter_map(|q| {
                q.packets.front()?;
                let need = q
                    .threshold(self.burst, self.quantum)
                    .saturating_sub(q.tokens);
                let nanos = u128::from(need) * 1_000_000_000 / u128::from(self.rate);
                // One nanosecond more so the earned bytes, rounded down, are enough.
                let wait = Duration::from_nanos(u64::try_from(nanos + 1).unwrap_or(u64::MAX));
                Some(q.updated + wait)
            })
            .min()
    }

    /// Forgets a viewer's queue (the viewer left).
    pub(crate) fn remove_viewer(&mut self, viewer: ViewerId) {
        self.queues.remove(&viewer);
    }

    #[cfg(test)]
    /// Packets waiting, over all viewers.
    pub(crate) fn queued_len(&self) -> usize {
        self.queues.values().map(|q| q.packets.len()).sum()
    }

    #[cfg(test)]
    /// Counters since creation.
    pub(crate) fn stats(&self) -> PacerStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use str0m::media::Mid;

    use super::*;

    fn fwd(viewer: u64, seq: u64, size: usize, at: Instant) -> Forward {
        Forward {
            viewer: ViewerId(viewer),
            mid: Mid::from("1"),
            pt: 96,
            seq,
            timestamp: 0,
            marker: false,
            nackable: true,
            keyframe: false,
            wallclock: at,
            payload: Arc::from(vec![0u8; size]),
        }
    }

    fn seqs(out: &[Forward]) -> Vec<u64> {
        out.iter().map(|f| f.seq).collect()
    }

    /// Polls `p` at `t0`, then by its own timeouts until it is idle (at most 1000
    /// polls): the releases, each with the time it happened; the first may be empty.
    fn drain(p: &mut Pacer, t0: Instant) -> Vec<(Instant, Vec<u64>)> {
        let mut releases = Vec::new();
        let mut out = Vec::new();
        p.poll(t0, &mut out);
        releases.push((t0, seqs(&out)));
        let mut now = t0;
        let mut polls = 0;
        while let Some(t) = p.poll_timeout() {
            now = now.max(t);
            out.clear();
            p.poll(now, &mut out);
            if !out.is_empty() {
                releases.push((now, seqs(&out)));
            }
            polls += 1;
            assert!(polls < 1_000);
        }
        releases
    }

    #[test]
    fn releases_the_burst_at_once_then_at_the_rate() {
        let t0 = Instant::now();
        // 1000 bytes/ms, burst 3000 bytes, packets of 1000 bytes.
        let mut p = Pacer::new(1_000_000, 3_000);
        for seq in 0..10 {
            p.enqueue(fwd(1, seq, 1_000, t0), t0);
        }
        let mut out = Vec::new();
        p.poll(t0, &mut out);
        assert_eq!(seqs(&out), vec![0, 1, 2]);
        let next = p.poll_timeout().unwrap();
        assert!(
            next > t0 && next <= t0 + Duration::from_micros(1_001),
            "{next:?}"
        );
        out.clear();
        p.poll(t0 + Duration::from_micros(500), &mut out);
        assert!(
            out.is_empty(),
            "half a packet's worth of time releases nothing"
        );
        p.poll(t0 + Duration::from_millis(1), &mut out);
        assert_eq!(seqs(&out), vec![3]);
        out.clear();
        p.poll(t0 + Duration::from_millis(4), &mut out);
        assert_eq!(seqs(&out), vec![4, 5, 6]);
        out.clear();
        // A long pause does not earn more than the burst.
        p.poll(t0 + Duration::from_secs(10), &mut out);
        assert_eq!(seqs(&out), vec![7, 8, 9]);
        assert!(p.is_idle());
        assert_eq!(p.poll_timeout(), None);
        assert_eq!(p.stats().queued, 10);
    }

    #[test]
    fn total_time_follows_the_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_200_000, 1_200);
        for seq in 0..100 {
            p.enqueue(fwd(7, seq, 1_200, t0), t0);
        }
        let releases = drain(&mut p, t0);
        let all: Vec<u64> = releases.iter().flat_map(|(_, s)| s.clone()).collect();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // 100 packets of 1200 bytes at 1.2 MB/s: the first at once, then 1 ms each.
        let (end, _) = releases[releases.len() - 1];
        let took = end.duration_since(t0);
        assert!(
            took >= Duration::from_micros(98_900) && took <= Duration::from_micros(99_100),
            "{took:?}"
        );
    }

    #[test]
    fn a_paced_viewer_gets_runs_of_a_quantum_at_the_same_average_rate() {
        let t0 = Instant::now();
        // 1000 bytes/ms, a 16 KB burst, 10 KB quanta, 100 packets of 1200 bytes.
        let mut p = Pacer::new(1_000_000, 16 * 1024).with_quantum(10 * 1024);
        for seq in 0..100 {
            p.enqueue(fwd(1, seq, 1_200, t0), t0);
        }
        let releases = drain(&mut p, t0);
        let all: Vec<u64> = releases.iter().flat_map(|(_, s)| s.clone()).collect();
        assert_eq!(all, (0..100).collect::<Vec<_>>(), "every packet, in order");
        assert_eq!(releases[0].1.len(), 13, "the burst: 16 KB at once");
        // After the burst, runs of 8 or 9 packets every 10 ms or so; the last run is
        // whatever remained.
        let middle = &releases[1..releases.len() - 1];
        assert!(!middle.is_empty());
        for (_, run) in middle {
            assert!((8..=9).contains(&run.len()), "{releases:?}");
        }
        // 120 KB at 1 MB/s after a 16 KB burst: 104 ms, the same as one at a time.
        let (end, _) = releases[releases.len() - 1];
        let took = end.duration_since(t0);
        assert!(
            took >= Duration::from_millis(100) && took <= Duration::from_millis(106),
            "{took:?}"
        );
    }

    #[test]
    fn a_queue_shorter_than_a_quantum_goes_once_its_bytes_are_earned() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000_000, 16 * 1024).with_quantum(10 * 1024);
        // Empties the bucket: 13 packets go at once, one waits.
        for seq in 0..14 {
            p.enqueue(fwd(1, seq, 1_200, t0), t0);
        }
        let mut out = Vec::new();
        p.poll(t0, &mut out);
        assert_eq!(out.len(), 13);
        // 1200 bytes minus the 784 left over: 416 µs, not the 10 ms of a quantum.
        let next = p.poll_timeout().expect("one packet waits");
        assert!(
            next.duration_since(t0) <= Duration::from_micros(420),
            "{:?}",
            next.duration_since(t0)
        );
        out.clear();
        p.poll(next, &mut out);
        assert_eq!(seqs(&out), vec![13]);
        assert!(p.is_idle());
    }

    #[test]
    fn viewers_are_paced_independently_and_can_be_removed() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000_000, 1_000);
        for seq in 0..3 {
            p.enqueue(fwd(1, seq, 1_000, t0), t0);
            p.enqueue(fwd(2, 100 + seq, 1_000, t0), t0);
        }
        assert!(p.is_pacing(ViewerId(1)) && p.is_pacing(ViewerId(2)));
        let mut out = Vec::new();
        p.poll(t0, &mut out);
        assert_eq!(seqs(&out), vec![0, 100]);
        p.remove_viewer(ViewerId(2));
        assert!(!p.is_pacing(ViewerId(2)));
        assert_eq!(p.queued_len(), 2);
        assert!(p.queue_if_pacing(fwd(1, 3, 1_000, t0)).is_none());
        assert_eq!(
            p.queue_if_pacing(fwd(2, 103, 1_000, t0)).map(|f| f.seq),
            Some(103)
        );
        out.clear();
        p.poll(t0 + Duration::from_millis(2), &mut out);
        assert_eq!(seqs(&out), vec![1]);
    }

    #[test]
    fn an_oversized_packet_waits_for_a_full_bucket_not_forever() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1_000_000, 500);
        p.enqueue(fwd(1, 0, 1_400, t0), t0);
        let mut out = Vec::new();
        p.poll(t0, &mut out);
        assert_eq!(seqs(&out), vec![0]);
    }

    #[test]
    fn a_full_queue_drops_its_oldest_packet() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1, 0);
        for seq in 0..(MAX_QUEUE as u64 + 2) {
            p.enqueue(fwd(1, seq, 10, t0), t0);
        }
        assert_eq!(p.queued_len(), MAX_QUEUE);
        assert_eq!(p.stats().dropped, 2);
    }
}
