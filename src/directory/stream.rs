//! One stream's state shared by its source and by the workers with its viewers, read
//! and written on the packet path without the directory's lock.
//!
//! # The ordering rule
//!
//! A source hands each packet to the workers whose bit is set in the stream's viewer
//! mask. A worker whose first viewer of the stream joins sets its bit and then starts
//! the viewer from the keyframe cache. For every packet to reach a joining viewer one
//! way or the other (from the cache, live, or both; the fan-out drops the duplicate),
//! the source must put a packet in the cache *before* it reads the mask, and the worker
//! must set its bit *before* it reads the cache. [`Stream::publish`] and
//! [`Stream::join`] are the only ways to do either, and each takes its two steps in
//! that order.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use str0m::media::MediaKind;

use crate::core::{KeyframeCache, SourcePacket};

const NO_WORKER: usize = usize::MAX;

/// Per-stream state read on the packet path without a lock.
#[derive(Debug)]
pub struct Stream {
    /// The stream's name.
    pub(crate) name: Arc<str>,
    viewer_workers: AtomicU64,
    source_worker: AtomicUsize,
    /// The keyframe cache of a source that cannot be asked for keyframes: every RTP
    /// source, and WHIP sources per [`crate::core::KeyframeSource`] (None otherwise).
    keyframe_cache: Mutex<Option<KeyframeCache>>,
    /// Packet, byte and loss counters and the picture size, for the API.
    pub(crate) stats: StreamStats,
}

impl Stream {
    pub(super) fn new(name: Arc<str>) -> Stream {
        Stream {
            name,
            viewer_workers: AtomicU64::new(0),
            source_worker: AtomicUsize::new(NO_WORKER),
            keyframe_cache: Mutex::new(None),
            stats: StreamStats::default(),
        }
    }

    fn cache(&self) -> MutexGuard<'_, Option<KeyframeCache>> {
        self.keyframe_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The source's side of the ordering rule: counts the packet (and the picture size
    /// a keyframe announces), puts a video packet in the keyframe cache (when the
    /// stream has one), and only then returns the mask of the workers it must reach
    /// (bit *n*: worker *n* has viewers of the stream).
    pub(crate) fn publish(&self, pkt: &Arc<SourcePacket>) -> u64 {
        self.stats.source_packet(pkt);
        if pkt.keyframe_start {
            self.stats.keyframe(pkt.codec, &pkt.payload);
        }
        if pkt.kind == MediaKind::Video
            && let Some(c) = self.cache().as_mut()
        {
            c.push(pkt);
        }
        self.viewer_workers.load(Ordering::Acquire)
    }

    /// The viewer's side of the ordering rule: marks `worker` as having viewers of the
    /// stream, and only then returns the packets a new viewer starts from at `now`
    /// (empty when there is no cache, no keyframe yet, or the source has fallen silent).
    pub(crate) fn join(&self, worker: usize, now: Instant) -> Vec<Arc<SourcePacket>> {
        self.viewer_workers
            .fetch_or(1u64 << worker, Ordering::AcqRel);
        self.keyframe_group(now)
    }

    /// `worker` has no viewer of the stream left.
    pub(crate) fn leave(&self, worker: usize) {
        self.viewer_workers
            .fetch_and(!(1u64 << worker), Ordering::AcqRel);
    }

    /// The cached group of pictures at `now`, to answer a viewer's keyframe request
    /// (empty as for [`Stream::join`]).
    pub(crate) fn keyframe_group(&self, now: Instant) -> Vec<Arc<SourcePacket>> {
        self.cache()
            .as_ref()
            .map(|c| c.snapshot(now))
            .unwrap_or_default()
    }

    /// Gives the stream a keyframe cache (or takes it away): set by the worker of a
    /// WHIP source when the source starts or when it stops answering keyframe requests.
    pub(crate) fn set_keyframe_cache(&self, cache: Option<KeyframeCache>) {
        *self.cache() = cache;
    }

    /// Empties the keyframe cache until the source's next keyframe (a source that is
    /// offline has nothing a new viewer should start from).
    pub(crate) fn clear_keyframe_cache(&self) {
        if let Some(c) = self.cache().as_mut() {
            c.clear();
        }
    }

    /// The workers with viewers of the stream now (to close them when it ends).
    pub(crate) fn viewer_workers(&self) -> u64 {
        self.viewer_workers.load(Ordering::Acquire)
    }

    /// The worker holding the live source, if any.
    pub(crate) fn source_worker(&self) -> Option<usize> {
        match self.source_worker.load(Ordering::Acquire) {
            NO_WORKER => None,
            w => Some(w),
        }
    }

    /// Records where the live source runs (None: it left).
    pub(super) fn set_source_worker(&self, worker: Option<usize>) {
        self.source_worker
            .store(worker.unwrap_or(NO_WORKER), Ordering::Release);
    }
}

/// Per-stream counters, kept in the stream's lock-free shared state: updated by its
/// source (one writer) and by the workers forwarding it, read by the API.
#[derive(Debug)]
pub struct StreamStats {
    /// When the stream appeared.
    pub(crate) created: Instant,
    /// Source RTP packets taken in.
    pub(crate) packets_in: AtomicU64,
    /// Source RTP payload bytes taken in.
    pub(crate) bytes_in: AtomicU64,
    /// RTP packets written to viewers.
    pub(crate) packets_out: AtomicU64,
    /// RTP payload bytes written to viewers (live and from the keyframe cache).
    pub(crate) bytes_out: AtomicU64,
    /// Source packets lost: gaps in sequence numbers, less those filled late
    /// (RFC 3550 §6.4.1 cumulative loss, per track and source epoch, never negative).
    pub(crate) packets_lost: AtomicU64,
    /// Highest extended sequence number + 1 per track (audio, video); 0 = none yet.
    highest: [AtomicU64; 2],
    epoch: [AtomicU32; 2],
    /// Picture width from the last keyframe that said (0: unknown).
    pub(crate) width: AtomicU32,
    /// Picture height from the last keyframe that said (0: unknown).
    pub(crate) height: AtomicU32,
    /// When the source last sent a packet (or began), as nanoseconds after `created`.
    last_in: AtomicU64,
    rate: Mutex<RateSample>,
}

#[derive(Debug, Clone, Copy)]
struct RateSample {
    at: Instant,
    bytes_in: u64,
    bytes_out: u64,
    rate_in: u64,
    rate_out: u64,
    fresh: bool,
}

impl Default for StreamStats {
    fn default() -> Self {
        let now = Instant::now();
        StreamStats {
            created: now,
            packets_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            packets_lost: AtomicU64::new(0),
            highest: Default::default(),
            epoch: Default::default(),
            width: AtomicU32::new(0),
            height: AtomicU32::new(0),
            last_in: AtomicU64::new(0),
            rate: Mutex::new(RateSample {
                at: now,
                bytes_in: 0,
                bytes_out: 0,
                rate_in: 0,
                rate_out: 0,
                fresh: true,
            }),
        }
    }
}

impl StreamStats {
    /// RTP packets and payload bytes written to viewers.
    pub(crate) fn add_out(&self, packets: u64, bytes: u64) {
        self.packets_out.fetch_add(packets, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A source begins (a publisher was granted the stream): its silence counts from
    /// `now` until its first packet.
    pub(crate) fn source_started(&self, now: Instant) {
        self.mark_in(now);
    }

    fn mark_in(&self, at: Instant) {
        let ns = at.saturating_duration_since(self.created).as_nanos();
        self.last_in
            .fetch_max(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// When the source last sent a packet (or began, if it has sent none since).
    pub(crate) fn last_in(&self) -> Instant {
        self.created + Duration::from_nanos(self.last_in.load(Ordering::Relaxed))
    }

    /// The instant the source fell silent, when it has sent nothing for `silence`.
    pub(crate) fn silent_since(&self, now: Instant, silence: Duration) -> Option<Instant> {
        let last = self.last_in();
        (now.saturating_duration_since(last) >= silence).then_some(last)
    }

    /// Counts one source packet (called by the stream's single source).
    pub(crate) fn source_packet(&self, pkt: &SourcePacket) {
        self.mark_in(pkt.arrival);
        self.packets_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in
            .fetch_add(pkt.payload.len() as u64, Ordering::Relaxed);
        let k = usize::from(pkt.kind == MediaKind::Video);
        let next = pkt.seq.wrapping_add(1);
        let highest = self.highest[k].load(Ordering::Relaxed);
        if highest == 0 || self.epoch[k].load(Ordering::Relaxed) != pkt.epoch {
            // A new numbering: the first packet of a source or of a new epoch.
            self.epoch[k].store(pkt.epoch, Ordering::Relaxed);
            self.highest[k].store(next, Ordering::Relaxed);
        } else if next > highest {
            let gap = next - highest - 1;
            if gap > 0 && gap < 1 << 15 {
                self.packets_lost.fetch_add(gap, Ordering::Relaxed);
            }
            self.highest[k].store(next, Ordering::Relaxed);
        } else {
            // Late: it fills a gap counted before (or is a duplicate, which the
            // sources drop before this point).
            let _ = self
                .packets_lost
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    /// Takes the picture size a keyframe announces, if it does.
    pub(crate) fn keyframe(&self, codec: crate::core::CodecKind, payload: &[u8]) {
        if let Some((w, h)) = crate::core::frame_size(codec, payload) {
            self.width.store(w, Ordering::Relaxed);
            self.height.store(h, Ordering::Relaxed);
        }
    }

    /// Width and height, when a keyframe said.
    pub(crate) fn size(&self) -> Option<(u32, u32)> {
        let (w, h) = (
            self.width.load(Ordering::Relaxed),
            self.height.load(Ordering::Relaxed),
        );
        (w > 0 && h > 0).then_some((w, h))
    }

    /// Bits per second in and out: over the time since the previous sample when it is
    /// at least a second old (then a new sample is taken), else the last figures (the
    /// average since the stream started, for the first second).
    pub(crate) fn bitrates(&self, now: Instant) -> (u64, u64) {
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let bytes_out = self.bytes_out.load(Ordering::Relaxed);
        let mut s = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        let dt = now.saturating_duration_since(s.at).as_secs_f64();
        if dt >= 1.0 || s.fresh {
            if dt > 0.0 {
                s.rate_in = ((bytes_in - s.bytes_in.min(bytes_in)) as f64 * 8.0 / dt) as u64;
                s.rate_out = ((bytes_out - s.bytes_out.min(bytes_out)) as f64 * 8.0 / dt) as u64;
            }
            s.fresh = false;
            if dt >= 1.0 {
                s.at = now;
                s.bytes_in = bytes_in;
                s.bytes_out = bytes_out;
            }
        }
        (s.rate_in, s.rate_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CodecKind;

    fn pkt(kind: MediaKind, seq: u64, epoch: u32) -> SourcePacket {
        SourcePacket {
            kind,
            codec: CodecKind::Other,
            pt: 96,
            seq,
            timestamp: 0,
            marker: false,
            keyframe_start: false,
            epoch,
            arrival: Instant::now(),
            wallclock: Instant::now(),
            payload: Arc::from(&[0u8; 10][..]),
        }
    }

    #[test]
    fn stream_loss_counts_gaps_less_late_arrivals_per_track_and_epoch() {
        let s = StreamStats::default();
        for seq in [100, 101, 104, 105] {
            s.source_packet(&pkt(MediaKind::Video, seq, 1));
        }
        assert_eq!(s.packets_lost.load(Ordering::Relaxed), 2);
        s.source_packet(&pkt(MediaKind::Video, 102, 1));
        assert_eq!(
            s.packets_lost.load(Ordering::Relaxed),
            1,
            "late fills a gap"
        );
        // Audio has its own numbering; a new epoch restarts it without a "gap".
        s.source_packet(&pkt(MediaKind::Audio, 7, 1));
        s.source_packet(&pkt(MediaKind::Video, 5, 2));
        s.source_packet(&pkt(MediaKind::Video, 6, 2));
        assert_eq!(s.packets_lost.load(Ordering::Relaxed), 1);
        assert_eq!(s.packets_in.load(Ordering::Relaxed), 8);
        assert_eq!(s.bytes_in.load(Ordering::Relaxed), 80);
    }

    #[test]
    fn bitrates_average_over_at_least_a_second() {
        let s = StreamStats::default();
        let t0 = s.created;
        s.bytes_in.store(1000, Ordering::Relaxed);
        assert_eq!(s.bitrates(t0 + Duration::from_millis(500)).0, 16_000);
        s.bytes_in.store(2000, Ordering::Relaxed);
        // Still within the first second: the figure is not recomputed.
        assert_eq!(s.bitrates(t0 + Duration::from_millis(700)).0, 16_000);
        assert_eq!(s.bitrates(t0 + Duration::from_secs(2)).0, 8_000);
        s.bytes_in.store(4000, Ordering::Relaxed);
        assert_eq!(s.bitrates(t0 + Duration::from_secs(3)).0, 16_000);
    }
}
