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

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use str0m::media::MediaKind;

use super::events::StreamEvents;
use crate::core::{KeyframeCache, LayerInfo, SourcePacket};
use crate::model::MAX_LAYERS;

const NO_WORKER: usize = usize::MAX;

/// Per-stream state read on the packet path without a lock.
#[derive(Debug)]
pub struct Stream {
    /// The stream's name.
    pub(crate) name: Arc<str>,
    viewer_workers: AtomicU64,
    source_worker: AtomicUsize,
    /// The keyframe cache of each simulcast layer of a source that cannot be asked
    /// for keyframes: every RTP source, and WHIP sources per
    /// [`crate::core::KeyframeSource`] (None otherwise).
    keyframe_cache: Mutex<[Option<KeyframeCache>; MAX_LAYERS]>,
    /// Packet, byte and loss counters and the picture size, for the API.
    pub(crate) stats: StreamStats,
    /// What its viewers' event streams are told.
    pub(crate) events: StreamEvents,
    /// A camera's stream: new viewers may join while the camera sends nothing.
    camera_waits: AtomicBool,
    /// Its recording, when a `[[record]]` rule names it.
    recorder: arc_swap::ArcSwapOption<super::RecorderTap>,
    /// Its source is connected to a server that can be asked for keyframes (a WHEP
    /// upstream): the workers ask through [`Stream::upstream_keyframe`].
    upstream_keyframes: AtomicBool,
    /// Wakes the task of a WHEP upstream to ask it for a keyframe.
    pub(crate) upstream_keyframe: tokio::sync::Notify,
    /// Where its source's packets are also handed, for a `[[push]]` of it.
    pusher: arc_swap::ArcSwapOption<PacketTap>,
}

/// A hand-off of a stream's source packets to something beside its viewers, called
/// on the media path: it must not block.
pub(crate) struct PacketTap(pub(crate) Box<TapFn>);

/// What a [`PacketTap`] calls with each source packet.
pub(crate) type TapFn = dyn Fn(&Arc<SourcePacket>) + Send + Sync;

impl std::fmt::Debug for PacketTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PacketTap")
    }
}

impl Stream {
    pub(super) fn new(name: Arc<str>) -> Stream {
        Stream {
            name,
            viewer_workers: AtomicU64::new(0),
            source_worker: AtomicUsize::new(NO_WORKER),
            keyframe_cache: Mutex::new(Default::default()),
            stats: StreamStats::default(),
            events: StreamEvents::default(),
            camera_waits: AtomicBool::new(false),
            recorder: arc_swap::ArcSwapOption::empty(),
            upstream_keyframes: AtomicBool::new(false),
            upstream_keyframe: tokio::sync::Notify::new(),
            pusher: arc_swap::ArcSwapOption::empty(),
        }
    }

    /// Starts (or, with `None`, ends) handing its source packets to a push.
    pub(crate) fn set_pusher(&self, tap: Option<Arc<PacketTap>>) {
        self.pusher.store(tap);
    }

    /// Whether its source can be asked for a keyframe over the network.
    pub(crate) fn has_upstream_keyframes(&self) -> bool {
        self.upstream_keyframes.load(Ordering::Relaxed)
    }

    /// See [`Stream::has_upstream_keyframes`].
    pub(crate) fn set_upstream_keyframes(&self, yes: bool) {
        self.upstream_keyframes.store(yes, Ordering::Relaxed);
    }

    /// Asks the source's upstream for a keyframe, when it has one that can be asked.
    pub(crate) fn ask_upstream_for_keyframe(&self) {
        if self.has_upstream_keyframes() {
            self.upstream_keyframe.notify_one();
        }
    }

    /// Where its recording stands, when it is recorded.
    pub(crate) fn recording(&self) -> Option<Arc<super::RecordingStatus>> {
        self.recorder.load().as_ref().map(|t| t.status.clone())
    }

    /// Starts (or, with `None`, ends) the stream's recording.
    pub(crate) fn set_recorder(&self, tap: Option<Arc<super::RecorderTap>>) {
        self.recorder.store(tap);
    }

    /// Whether a new viewer of this camera's stream may join while the camera sends
    /// nothing (and wait for it) rather than get 409: configured per camera
    /// (`wait_when_offline`), and true for an on-demand camera except while its last
    /// connection failed.
    pub(crate) fn camera_waits(&self) -> bool {
        self.camera_waits.load(Ordering::Relaxed)
    }

    /// See [`Stream::camera_waits`].
    pub(crate) fn set_camera_waits(&self, waits: bool) {
        self.camera_waits.store(waits, Ordering::Relaxed);
    }

    fn cache(&self) -> MutexGuard<'_, [Option<KeyframeCache>; MAX_LAYERS]> {
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
        if let Some(tap) = self.recorder.load().as_deref() {
            tap.offer(pkt);
        }
        if let Some(tap) = self.pusher.load().as_deref() {
            (tap.0)(pkt);
        }
        if pkt.keyframe_start {
            self.stats.keyframe(pkt.layer, pkt.codec, &pkt.payload);
        }
        if pkt.kind == MediaKind::Video
            && let Some(Some(c)) = self.cache().get_mut(usize::from(pkt.layer))
        {
            c.push(pkt);
        }
        self.viewer_workers.load(Ordering::Acquire)
    }

    /// The viewer's side of the ordering rule: marks `worker` as having viewers of the
    /// stream, and only then returns the packets a new viewer of simulcast layer
    /// `layer` starts from at `now` (empty when there is no cache, no keyframe yet,
    /// or the source has fallen silent).
    pub(crate) fn join(&self, worker: usize, layer: u8, now: Instant) -> Vec<Arc<SourcePacket>> {
        self.viewer_workers
            .fetch_or(1u64 << worker, Ordering::AcqRel);
        self.keyframe_group(layer, now)
    }

    /// `worker` has no viewer of the stream left.
    pub(crate) fn leave(&self, worker: usize) {
        self.viewer_workers
            .fetch_and(!(1u64 << worker), Ordering::AcqRel);
    }

    /// The cached group of pictures of simulcast layer `layer` at `now`, to answer a
    /// viewer's keyframe request (empty as for [`Stream::join`]).
    pub(crate) fn keyframe_group(&self, layer: u8, now: Instant) -> Vec<Arc<SourcePacket>> {
        self.cache()
            .get(usize::from(layer))
            .and_then(Option::as_ref)
            .map(|c| c.snapshot(now))
            .unwrap_or_default()
    }

    /// Gives layer `layer` a keyframe cache (or takes it away): set by the worker of a
    /// WHIP source when the source starts or when the layer stops answering keyframe
    /// requests, and by RTP ingest (layer 0).
    pub(crate) fn set_keyframe_cache(&self, layer: u8, cache: Option<KeyframeCache>) {
        if let Some(c) = self.cache().get_mut(usize::from(layer)) {
            *c = cache;
        }
    }

    /// Takes every layer's keyframe cache away (a new source decides again).
    pub(crate) fn drop_keyframe_caches(&self) {
        *self.cache() = Default::default();
    }

    /// Empties the keyframe caches until the source's next keyframe (a source that is
    /// offline has nothing a new viewer should start from).
    pub(crate) fn clear_keyframe_cache(&self) {
        for c in self.cache().iter_mut().flatten() {
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
    /// (RFC 3550 §6.4.1 cumulative loss, per track, layer and source epoch, never
    /// negative).
    pub(crate) packets_lost: AtomicU64,
    /// Highest extended sequence number + 1 per numbering (audio, then each video
    /// layer); 0 = none yet.
    highest: [AtomicU64; 1 + MAX_LAYERS],
    epoch: [AtomicU32; 1 + MAX_LAYERS],
    /// The video's simulcast layers (one without simulcast), by layer index.
    layers: [LayerStats; MAX_LAYERS],
    /// The rids of the source's simulcast layers, by layer index (empty: one
    /// encoding).
    rids: Mutex<Arc<[Arc<str>]>>,
    /// When the source last sent a packet (or began), as nanoseconds after `created`.
    last_in: AtomicU64,
    rate: Mutex<RateSample>,
}

/// One simulcast layer's figures (or the one encoding's), written by the source.
#[derive(Debug, Default)]
struct LayerStats {
    bytes_in: AtomicU64,
    /// Picture width from the last keyframe that said (0: unknown).
    width: AtomicU32,
    /// Picture height from the last keyframe that said (0: unknown).
    height: AtomicU32,
    /// When the layer last sent a packet, as nanoseconds after `created` (0: never).
    last_in: AtomicU64,
    /// Bits per second over the last [`LAYER_RATE_WINDOW`], set by the source's worker.
    bitrate: AtomicU64,
    /// `bytes_in` when `bitrate` was last set.
    sampled_bytes: AtomicU64,
}

/// How long a layer's bit rate is averaged over: long enough to hold a keyframe
/// interval's burst loosely, short enough that a layer the sender stopped is seen
/// within a second or two.
pub(crate) const LAYER_RATE_WINDOW: Duration = Duration::from_millis(500);

/// A simulcast layer that sent nothing this long counts as inactive (the sender
/// stopped it, e.g. for lack of its own uplink).
const LAYER_IDLE: Duration = Duration::from_millis(1500);

impl LayerStats {
    fn size(&self) -> Option<(u32, u32)> {
        let (w, h) = (
            self.width.load(Ordering::Relaxed),
            self.height.load(Ordering::Relaxed),
        );
        (w > 0 && h > 0).then_some((w, h))
    }
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
            layers: Default::default(),
            rids: Mutex::new(Arc::from(Vec::new())),
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
        self.last_in.fetch_max(self.nanos(at), Ordering::Relaxed);
    }

    fn nanos(&self, at: Instant) -> u64 {
        let ns = at.saturating_duration_since(self.created).as_nanos();
        u64::try_from(ns).unwrap_or(u64::MAX)
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
        let k = match pkt.kind {
            MediaKind::Video => 1 + usize::from(pkt.layer),
            MediaKind::Audio => 0,
        };
        if let Some(l) = pkt
            .kind
            .is_video()
            .then(|| self.layers.get(usize::from(pkt.layer)))
            .flatten()
        {
            l.bytes_in
                .fetch_add(pkt.payload.len() as u64, Ordering::Relaxed);
            l.last_in
                .fetch_max(self.nanos(pkt.arrival), Ordering::Relaxed);
        }
        let (Some(highest_k), Some(epoch_k)) = (self.highest.get(k), self.epoch.get(k)) else {
            return;
        };
        let next = pkt.seq.wrapping_add(1);
        let highest = highest_k.load(Ordering::Relaxed);
        if highest == 0 || epoch_k.load(Ordering::Relaxed) != pkt.epoch {
            // A new numbering: the first packet of a source or of a new epoch.
            epoch_k.store(pkt.epoch, Ordering::Relaxed);
            highest_k.store(next, Ordering::Relaxed);
        } else if next > highest {
            let gap = next - highest - 1;
            if gap > 0 && gap < 1 << 15 {
                self.packets_lost.fetch_add(gap, Ordering::Relaxed);
            }
            highest_k.store(next, Ordering::Relaxed);
        } else {
            // Late: it fills a gap counted before (or is a duplicate, which the
            // sources drop before this point).
            let _ = self
                .packets_lost
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    /// Takes the picture size a keyframe of simulcast layer `layer` announces, if
    /// it does.
    pub(crate) fn keyframe(&self, layer: u8, codec: crate::core::CodecKind, payload: &[u8]) {
        if let (Some((w, h)), Some(l)) = (
            crate::core::frame_size(codec, payload),
            self.layers.get(usize::from(layer)),
        ) {
            l.width.store(w, Ordering::Relaxed);
            l.height.store(h, Ordering::Relaxed);
        }
    }

    /// Width and height of the largest picture a keyframe said (of any layer).
    pub(crate) fn size(&self) -> Option<(u32, u32)> {
        self.layers
            .iter()
            .filter_map(LayerStats::size)
            .max_by_key(|(w, h)| u64::from(*w) * u64::from(*h))
    }

    /// A new source's simulcast layers, by their rids in the offer's order (empty:
    /// one encoding); the figures of the last source's layers are forgotten.
    pub(crate) fn set_layers(&self, rids: &[String]) {
        let rids: Vec<Arc<str>> = rids.iter().map(|r| Arc::from(r.as_str())).collect();
        *self.rids.lock().unwrap_or_else(|e| e.into_inner()) = Arc::from(rids);
        for l in &self.layers {
            l.width.store(0, Ordering::Relaxed);
            l.height.store(0, Ordering::Relaxed);
            l.bitrate.store(0, Ordering::Relaxed);
            l.last_in.store(0, Ordering::Relaxed);
        }
    }

    /// The number of simulcast layers (1 without simulcast).
    pub(crate) fn layer_count(&self) -> usize {
        self.rids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
            .max(1)
    }

    /// The source's simulcast rids, by layer index (empty without simulcast).
    pub(crate) fn rids(&self) -> Vec<String> {
        let rids = self.rids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        rids.iter().map(|r| r.to_string()).collect()
    }

    /// The layer index of simulcast rid `rid`.
    pub(crate) fn rid_index(&self, rid: &str) -> Option<u8> {
        let rids = self.rids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        rids.iter().position(|r| &**r == rid).map(|i| i as u8)
    }

    /// Recomputes each layer's bit rate from the bytes since the last call, `elapsed`
    /// ago (the source's worker calls it every [`LAYER_RATE_WINDOW`]).
    pub(crate) fn sample_layer_rates(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        for l in &self.layers {
            let bytes = l.bytes_in.load(Ordering::Relaxed);
            let before = l.sampled_bytes.swap(bytes, Ordering::Relaxed);
            let rate = (bytes.saturating_sub(before) as f64 * 8.0 / secs) as u64;
            l.bitrate.store(rate, Ordering::Relaxed);
        }
    }

    /// The video's layers at `now`, by index: one without simulcast.
    pub(crate) fn layers(&self, now: Instant) -> Vec<LayerInfo> {
        let rids = self.rids.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let now_ns = self.nanos(now);
        let idle = u64::try_from(LAYER_IDLE.as_nanos()).unwrap_or(u64::MAX);
        (0..rids.len().max(1))
            .filter_map(|i| {
                let l = self.layers.get(i)?;
                let last = l.last_in.load(Ordering::Relaxed);
                Some(LayerInfo {
                    index: i as u8,
                    rid: rids.get(i).cloned(),
                    bitrate: l.bitrate.load(Ordering::Relaxed),
                    size: l.size(),
                    active: last > 0 && now_ns.saturating_sub(last) < idle,
                })
            })
            .collect()
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
            layer: 0,
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
