//! Receive accounting per viewer (loss, duplicates, reordering, delay) and the
//! aggregation of many viewers into one row.

use serde::Serialize;

use crate::rtp::SeqExtender;

/// A log-linear histogram of non-negative values (16 sub-buckets per power of two,
/// so about 6 % resolution); values are nanoseconds here.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u32]>,
    total: u64,
}

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
const LINEAR: u64 = 1 << (SUB_BITS + 1);
const BUCKETS: usize = LINEAR as usize + (64 - SUB_BITS as usize - 1) * SUB;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Histogram({} values)", self.total)
    }
}

fn bucket(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let m = (v >> (e - SUB_BITS)) as usize & (SUB - 1);
    LINEAR as usize + (e - SUB_BITS - 1) as usize * SUB + m
}

/// The smallest value of a bucket.
fn bucket_floor(b: usize) -> u64 {
    if b < LINEAR as usize {
        return b as u64;
    }
    let i = b - LINEAR as usize;
    let e = (i / SUB) as u32 + SUB_BITS + 1;
    let m = (i % SUB) as u64;
    (1u64 << e) | (m << (e - SUB_BITS))
}

impl Histogram {
    /// Adds one value.
    pub fn record(&mut self, v: u64) {
        let b = bucket(v);
        self.counts[b] = self.counts[b].saturating_add(1);
        self.total += 1;
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a = a.saturating_add(*b);
        }
        self.total += other.total;
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value below which a fraction `q` of the values lie (bucket midpoint), or
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let lo = bucket_floor(b);
                let hi = if b + 1 < BUCKETS {
                    bucket_floor(b + 1)
                } else {
                    lo
                };
                return Some(lo + (hi - lo) / 2);
            }
        }
        None
    }

    /// Forgets every value.
    pub fn clear(&mut self) {
        self.counts.fill(0);
        self.total = 0;
    }
}

/// Loss, duplicate and reordering accounting of one RTP stream (one SSRC) from its
/// sequence numbers, over a window that [`TrackRx::reset`] restarts.
#[derive(Debug, Clone, Default)]
pub struct TrackRx {
    ext: SeqExtender,
    first: Option<u64>,
    max: u64,
    /// Bit `i` of word `(s / 64) % WINDOW_WORDS`: sequence `s` arrived (recent ones).
    seen: [u64; WINDOW_WORDS],
    /// Packets that arrived (duplicates included).
    pub received: u64,
    /// Packets that arrived a second time.
    pub duplicated: u64,
    /// Packets that arrived after a higher sequence number.
    pub out_of_order: u64,
}

const WINDOW_WORDS: usize = 32; // 2048 sequence numbers

/// Delay without send times, for a publisher that is not this tool: each packet's
/// transit (its arrival minus its RTP timestamp, in nanoseconds) above the smallest
/// transit seen on its track. That is what the path and the server add beyond the
/// fastest packet, the publisher's own pacing within a frame included; a clock drift
/// between publisher and viewer adds about 1 ms per 10 s per 100 ppm.
#[derive(Debug, Default, Clone)]
pub struct RelativeDelay {
    last_ts: Option<u32>,
    /// The RTP timestamp, unwrapped, relative to the first packet's.
    ts: i64,
    min_transit: Option<i64>,
}

impl RelativeDelay {
    /// Accounts one packet; returns its delay above the fastest one, nanoseconds.
    pub fn on_packet(&mut self, rtp_ts: u32, arrival_ns: u64, clock: u32) -> u64 {
        // Differences as i32 unwrap the 32-bit clock and take reordering (a step back).
        if let Some(last) = self.last_ts {
            self.ts += i64::from(rtp_ts.wrapping_sub(last) as i32);
        }
        self.last_ts = Some(rtp_ts);
        let media_ns = (i128::from(self.ts) * 1_000_000_000 / i128::from(clock.max(1))) as i64;
        let transit = (arrival_ns as i64).wrapping_sub(media_ns);
        let min = self.min_transit.map_or(transit, |m| m.min(transit));
        self.min_transit = Some(min);
        transit.saturating_sub(min).max(0) as u64
    }
}

impl TrackRx {
    /// Accounts one packet; returns its extended sequence number.
    pub fn on_packet(&mut self, seq: u16) -> u64 {
        let ext = self.ext.extend(seq);
        self.received += 1;
        let Some(first) = self.first else {
            self.first = Some(ext);
            self.max = ext;
            self.mark(ext);
            return ext;
        };
        if ext > self.max {
            // Clear the bits of the sequence numbers skipped or recycled.
            let span = (ext - self.max).min((WINDOW_WORDS * 64) as u64);
            for s in (ext - span + 1)..=ext {
                let w = (s / 64) as usize % WINDOW_WORDS;
                self.seen[w] &= !(1u64 << (s % 64));
            }
            self.max = ext;
            self.mark(ext);
        } else if ext < first || self.max - ext >= (WINDOW_WORDS * 64) as u64 {
            // Older than the window: count as reordered, cannot tell duplicates.
            self.out_of_order += 1;
        } else if self.is_marked(ext) {
            self.duplicated += 1;
        } else {
            self.out_of_order += 1;
            self.mark(ext);
        }
        ext
    }

    fn mark(&mut self, s: u64) {
        self.seen[(s / 64) as usize % WINDOW_WORDS] |= 1u64 << (s % 64);
    }

    fn is_marked(&self, s: u64) -> bool {
        self.seen[(s / 64) as usize % WINDOW_WORDS] & (1u64 << (s % 64)) != 0
    }

    /// Packets expected from the first to the highest sequence number of the window.
    pub fn expected(&self) -> u64 {
        self.first.map_or(0, |f| self.max - f + 1)
    }

    /// Expected packets that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected()
            .saturating_sub(self.received - self.duplicated)
    }

    /// Starts a new window at the next packet (the sequence extension is kept).
    pub fn reset(&mut self) {
        self.first = None;
        self.seen = [0; WINDOW_WORDS];
        self.received = 0;
        self.duplicated = 0;
        self.out_of_order = 0;
    }
}

/// What one viewer measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ViewerReport {
    /// Viewer number.
    pub id: u32,
    /// POST sent → 201 received, ms (None when the POST failed).
    pub post_ms: Option<f64>,
    /// POST sent → ICE+DTLS connected, ms.
    pub connect_ms: Option<f64>,
    /// POST sent → first video packet that starts a keyframe, ms.
    pub join_ms: Option<f64>,
    /// Connected now.
    pub connected: bool,
    /// Packets received in the window (all tracks).
    pub received: u64,
    /// Packets lost in the window.
    pub lost: u64,
    /// Duplicates in the window.
    pub duplicated: u64,
    /// Out-of-order arrivals in the window.
    pub out_of_order: u64,
    /// One-way delay publisher → viewer, median, µs.
    pub delay_p50_us: Option<f64>,
    /// One-way delay, 99th percentile, µs.
    pub delay_p99_us: Option<f64>,
    /// Why the viewer failed, if it did.
    pub error: Option<String>,
    /// The viewer's delay values (for aggregation; not serialized).
    #[serde(skip)]
    pub delay: Option<Histogram>,
}

impl ViewerReport {
    /// A viewer that could not be set up, and why.
    pub fn failed(id: u32, why: impl std::fmt::Display) -> ViewerReport {
        ViewerReport {
            id,
            error: Some(why.to_string()),
            ..Default::default()
        }
    }
}

/// Many viewers summed up.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Aggregate {
    /// Viewers asked for.
    pub viewers: usize,
    /// Viewers connected at the end.
    pub connected: usize,
    /// Viewers that saw a keyframe.
    pub joined: usize,
    /// Packets received.
    pub received: u64,
    /// Packets lost.
    pub lost: u64,
    /// Duplicates.
    pub duplicated: u64,
    /// Out of order.
    pub out_of_order: u64,
    /// lost / (received - duplicated + lost), percent.
    pub loss_pct: f64,
    /// Delay over all packets of all viewers, µs.
    pub delay_p50_us: Option<f64>,
    /// Delay 99th percentile, µs.
    pub delay_p99_us: Option<f64>,
    /// POST→201 over viewers, ms.
    pub post_p50_ms: Option<f64>,
    /// POST→201 99th percentile, ms.
    pub post_p99_ms: Option<f64>,
    /// POST→connected, ms.
    pub connect_p50_ms: Option<f64>,
    /// POST→connected 99th percentile, ms.
    pub connect_p99_ms: Option<f64>,
    /// POST→first keyframe packet, ms.
    pub join_p50_ms: Option<f64>,
    /// POST→first keyframe packet, 99th percentile, ms.
    pub join_p99_ms: Option<f64>,
    /// Worst viewer's loss, percent.
    pub worst_viewer_loss_pct: f64,
}

/// The `q` quantile of some values (nearest rank); `None` when empty.
pub fn percentile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}

fn loss_pct(received: u64, duplicated: u64, lost: u64) -> f64 {
    let expected = received.saturating_sub(duplicated) + lost;
    if expected == 0 {
        0.0
    } else {
        100.0 * lost as f64 / expected as f64
    }
}

/// Sums viewer reports.
pub fn aggregate(reports: &[ViewerReport]) -> Aggregate {
    let mut a = Aggregate {
        viewers: reports.len(),
        ..Default::default()
    };
    let mut delay = Histogram::default();
    let (mut post, mut connect, mut join) = (Vec::new(), Vec::new(), Vec::new());
    for r in reports {
        a.connected += usize::from(r.connected);
        a.joined += usize::from(r.join_ms.is_some());
        a.received += r.received;
        a.lost += r.lost;
        a.duplicated += r.duplicated;
        a.out_of_order += r.out_of_order;
        a.worst_viewer_loss_pct =
            a.worst_viewer_loss_pct
                .max(loss_pct(r.received, r.duplicated, r.lost));
        if let Some(h) = &r.delay {
            delay.merge(h);
        }
        post.extend(r.post_ms);
        connect.extend(r.connect_ms);
        join.extend(r.join_ms);
    }
    a.loss_pct = loss_pct(a.received, a.duplicated, a.lost);
    a.delay_p50_us = delay.quantile(0.5).map(|v| v as f64 / 1e3);
    a.delay_p99_us = delay.quantile(0.99).map(|v| v as f64 / 1e3);
    a.post_p50_ms = percentile(&mut post, 0.5);
    a.post_p99_ms = percentile(&mut post, 0.99);
    a.connect_p50_ms = percentile(&mut connect, 0.5);
    a.connect_p99_ms = percentile(&mut connect, 0.99);
    a.join_p50_ms = percentile(&mut join, 0.5);
    a.join_p99_ms = percentile(&mut join, 0.99);
    a
}

/// Formats an optional figure with `prec` decimals, or `n/a`.
pub fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.prec$}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn relative_delay_is_the_transit_above_the_fastest_packet_across_a_clock_wrap() {
        let mut d = RelativeDelay::default();
        let ms = 1_000_000u64;
        // 90 kHz video, a frame every 3000 ticks (33.3 ms), starting near the wrap.
        let mut ts = u32::MAX - 4000;
        let mut at = 1_000 * ms;
        assert_eq!(d.on_packet(ts, at, 90_000), 0);
        for _ in 0..5 {
            ts = ts.wrapping_add(3000);
            at += 33_333_333;
            assert!(d.on_packet(ts, at, 90_000) < 10_000, "on time");
        }
        // The next frame 7 ms late, then one on time again.
        ts = ts.wrapping_add(3000);
        at += 33_333_333 + 7 * ms;
        let late = d.on_packet(ts, at, 90_000);
        assert!((6_990_000..7_010_000).contains(&late), "{late}");
        // A reordered packet of an earlier frame, arriving now: late by a frame.
        let older = d.on_packet(ts.wrapping_sub(3000), at, 90_000);
        assert!((40 * ms..41 * ms).contains(&older), "{older}");
        ts = ts.wrapping_add(3000);
        at += 33_333_333 - 7 * ms;
        assert!(d.on_packet(ts, at, 90_000) < 10_000);
    }

    use super::*;

    #[test]
    fn histogram_quantiles_within_resolution() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5).unwrap() as f64;
        let p99 = h.quantile(0.99).unwrap() as f64;
        assert!((p50 / 5_000_000.0 - 1.0).abs() < 0.07, "{p50}");
        assert!((p99 / 9_900_000.0 - 1.0).abs() < 0.07, "{p99}");
        assert_eq!(Histogram::default().quantile(0.5), None);
        let mut small = Histogram::default();
        small.record(3);
        assert_eq!(small.quantile(1.0), Some(3));
        for b in 0..BUCKETS - 1 {
            assert!(bucket_floor(b) < bucket_floor(b + 1));
            assert_eq!(bucket(bucket_floor(b)), b);
        }
        small.record(u64::MAX);
        assert_eq!(small.count(), 2);
    }

    #[test]
    fn loss_duplicates_and_reordering() {
        let mut t = TrackRx::default();
        for s in [10u16, 11, 13, 12, 12, 16, 17] {
            t.on_packet(s);
        }
        assert_eq!(t.expected(), 8);
        assert_eq!(t.received, 7);
        assert_eq!(t.duplicated, 1);
        assert_eq!(t.out_of_order, 1);
        assert_eq!(t.lost(), 2, "14 and 15");
        t.reset();
        for s in [18u16, 19, 20] {
            t.on_packet(s);
        }
        assert_eq!((t.expected(), t.lost()), (3, 0));
    }

    #[test]
    fn loss_across_sequence_wrap() {
        let mut t = TrackRx::default();
        for s in (65_500u32..65_536 + 100).filter(|s| s % 10 != 0) {
            t.on_packet(s as u16);
        }
        // 65 501 ..= 65 635 (65 500 is filtered out), 13 multiples of ten missing.
        assert_eq!(t.expected(), 135);
        assert_eq!(t.lost(), 13);
        assert_eq!((t.duplicated, t.out_of_order), (0, 0));
    }

    #[test]
    fn aggregate_sums_and_percentiles() {
        let mut h = Histogram::default();
        h.record(100_000);
        let r = ViewerReport {
            id: 1,
            post_ms: Some(2.0),
            join_ms: Some(30.0),
            connected: true,
            received: 99,
            lost: 1,
            delay: Some(h),
            ..Default::default()
        };
        let a = aggregate(&[r.clone(), ViewerReport { id: 2, ..r }]);
        assert_eq!((a.viewers, a.connected, a.joined), (2, 2, 2));
        assert!((a.loss_pct - 1.0).abs() < 1e-9);
        assert!((a.delay_p50_us.unwrap() / 100.0 - 1.0).abs() < 0.07);
        assert_eq!(a.post_p99_ms, Some(2.0));
    }
}
