//! Per-worker fan-out of source packets to viewers: the viewers of each stream on
//! this worker, each with a [`TrackRewriter`] per track (see [`super::rewriter`])
//! that puts the source's packets into the viewer's own numbering, and a pacer for
//! the bursts a viewer gets from the keyframe cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::MediaKind;

use super::pacer::Pacer;
use super::packet::{Forward, SourcePacket, ViewerId, ViewerTrack};
use super::rewriter::{Drop, TrackRewriter, epoch_is_older, make_forward};
use crate::model::MAX_LAYERS;

/// Counters of a [`Fanout`], since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FanoutStats {
    /// Packets handed to viewers (one per viewer track).
    pub(crate) forwarded: u64,
    /// Packets dropped because the viewer track has no mapping for their payload type.
    pub(crate) dropped_no_pt: u64,
    /// Video packets dropped because the viewer track waits for a keyframe.
    pub(crate) dropped_waiting_keyframe: u64,
    /// Packets dropped as too old: older than the first forwarded packet of their
    /// epoch, or from an epoch older than the one the viewer already follows.
    pub(crate) dropped_too_old: u64,
}

impl FanoutStats {
    fn count(&mut self, drop: Drop) {
        match drop {
            Drop::NoPt => self.dropped_no_pt += 1,
            Drop::WaitingKeyframe => self.dropped_waiting_keyframe += 1,
            Drop::TooOld => self.dropped_too_old += 1,
            Drop::OtherLayer => {}
        }
    }
}

/// What [`Fanout::resync_viewer`] did with a viewer's keyframe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resync {
    /// The cached group goes to the viewer again (this many packets, paced).
    Replayed(usize),
    /// Too soon after the last one, or one is still going out: nothing sent.
    RateLimited,
    /// Nothing to send: unknown viewer, no track of the group's kind, no keyframe
    /// in the group, or a group of an older source than the viewer follows.
    Nothing,
}

/// One viewer: its tracks.
#[derive(Debug, Clone)]
struct Viewer {
    id: ViewerId,
    tracks: Vec<TrackRewriter>,
    /// When the viewer was last sent the cached group again (its keyframe request).
    last_resync: Option<Instant>,
}

impl Viewer {
    fn waits_for_keyframe(&self) -> bool {
        self.tracks.iter().any(TrackRewriter::waits_for_keyframe)
    }

    fn video(&mut self) -> Option<&mut TrackRewriter> {
        self.tracks.iter_mut().find(|t| t.is_video())
    }
}

/// The viewers of one stream on this worker.
#[derive(Debug, Default)]
struct StreamViewers {
    viewers: Vec<Viewer>,
    /// When a keyframe of each simulcast layer was last asked for on behalf of these
    /// viewers.
    keyframe_asked: [Option<Instant>; MAX_LAYERS],
}

/// Per-worker fan-out: viewers grouped by stream name, with per-viewer rewriting state.
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    streams: HashMap<String, StreamViewers>,
    /// Viewer -> stream it watches.
    index: HashMap<ViewerId, String>,
    stats: FanoutStats,
    /// Bursts sent to one viewer (a cached group of pictures) go out paced.
    pacer: Pacer,
}

impl Fanout {
    /// An empty fan-out.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a viewer of `stream` whose video starts on simulcast layer `layer` (0
    /// without simulcast). Returns true when the viewer has a video track (so the
    /// caller must ask the source for a keyframe of that layer).
    ///
    /// The caller is expected to ask right away, so `now` counts as the time a
    /// keyframe was last asked for this stream (see [`keyframes_wanted`](Self::keyframes_wanted)).
    /// A viewer id that is already known is replaced (and may move to another stream).
    pub(crate) fn add_viewer(
        &mut self,
        stream: &str,
        viewer: ViewerId,
        tracks: Vec<ViewerTrack>,
        layer: u8,
        now: Instant,
    ) -> bool {
        self.remove_viewer(viewer);
        let has_video = tracks.iter().any(|t| t.kind == MediaKind::Video);
        let entry = self.streams.entry(stream.to_owned()).or_default();
        entry.viewers.push(Viewer {
            id: viewer,
            tracks: tracks
                .into_iter()
                .map(|t| TrackRewriter::new(t, layer))
                .collect(),
            last_resync: None,
        });
        if has_video && let Some(asked) = entry.keyframe_asked.get_mut(usize::from(layer)) {
            *asked = Some(now);
        }
        self.index.insert(viewer, stream.to_owned());
        has_video
    }

    /// Adds a viewer like [`add_viewer`](Self::add_viewer) and forwards `prefix` (the
    /// cached keyframe and what followed it, oldest first) to it alone: the prefix is
    /// paced (see [`poll_paced`](Self::poll_paced)), its first burst is appended to
    /// `out` at once, and the viewer's live video queues behind the rest. Live packets the prefix already covered (same epoch, sequence number up
    /// to its last) are then dropped for this viewer, so its numbering stays continuous
    /// from the cached keyframe into the live stream.
    ///
    /// Returns true when the viewer still waits for a video keyframe (no usable prefix).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add_viewer_with_prefix(
        &mut self,
        stream: &str,
        viewer: ViewerId,
        tracks: Vec<ViewerTrack>,
        layer: u8,
        prefix: &[Arc<SourcePacket>],
        now: Instant,
        out: &mut Vec<Forward>,
    ) -> bool {
        let has_video = self.add_viewer(stream, viewer, tracks, layer, now);
        let Some(v) = self
            .streams
            .get_mut(stream)
            .and_then(|e| e.viewers.iter_mut().find(|v| v.id == viewer))
        else {
            return has_video;
        };
        for pkt in prefix {
            let Some(track) = v.tracks.iter_mut().find(|t| t.track.kind == pkt.kind) else {
                continue;
            };
            match track.rewrite(pkt) {
                Ok(rewritten) => {
                    self.stats.forwarded += 1;
                    self.pacer
                        .enqueue(make_forward(viewer, track, pkt, rewritten), now);
                }
                Err(e) => self.stats.count(e),
            }
            let end = (pkt.epoch, pkt.layer, pkt.seq);
            track.prefix_end = match track.prefix_end {
                Some(old) if old.0 == end.0 && old.1 == end.1 && old.2 > end.2 => Some(old),
                _ => Some(end),
            };
        }
        let waits = has_video && v.waits_for_keyframe();
        self.pacer.poll(now, out);
        waits
    }

    /// Answers a viewer's keyframe request from `group`, the cached group of pictures
    /// of its stream's source (a camera cannot be asked): the group is sent to this
    /// viewer again, paced like a start prefix, numbered after what it already got
    /// (see `TrackRewriter::replay`), and its live video continues from there. At most
    /// once per `min_interval` per viewer, and not while an earlier burst is still
    /// going out.
    pub(crate) fn resync_viewer(
        &mut self,
        viewer: ViewerId,
        group: &[Arc<SourcePacket>],
        now: Instant,
        min_interval: Duration,
        out: &mut Vec<Forward>,
    ) -> Resync {
        let Some(first) = group.first().filter(|p| p.keyframe_start) else {
            return Resync::Nothing;
        };
        let Some(v) = self.index.get(&viewer).and_then(|stream| {
            self.streams
                .get_mut(stream)
                .and_then(|e| e.viewers.iter_mut().find(|v| v.id == viewer))
        }) else {
            return Resync::Nothing;
        };
        let recent = v
            .last_resync
            .is_some_and(|t| now.saturating_duration_since(t) < min_interval);
        if recent || self.pacer.is_pacing(viewer) {
            return Resync::RateLimited;
        }
        let Some(track) = v.tracks.iter_mut().find(|t| t.track.kind == first.kind) else {
            return Resync::Nothing;
        };
        if track
            .epoch
            .is_some_and(|current| epoch_is_older(first.epoch, current))
            || first.layer != track.layer
        {
            return Resync::Nothing;
        }
        let (rewritten, wallclock) = track.replay(group);
        if rewritten.is_empty() {
            return Resync::Nothing;
        }
        v.last_resync = Some(now);
        let n = rewritten.len();
        for (i, rw) in rewritten {
            self.stats.forwarded += 1;
            let mut f = make_forward(viewer, track, &group[i], rw);
            if let Some(w) = wallclock {
                f.wallclock = w;
            }
            self.pacer.enqueue(f, now);
        }
        self.pacer.poll(now, out);
        Resync::Replayed(n)
    }

    /// Removes a viewer; returns the stream it watched if it was known.
    pub(crate) fn remove_viewer(&mut self, viewer: ViewerId) -> Option<String> {
        self.pacer.remove_viewer(viewer);
        let stream = self.index.remove(&viewer)?;
        if let Some(entry) = self.streams.get_mut(&stream) {
            entry.viewers.retain(|v| v.id != viewer);
            if entry.viewers.is_empty() {
                self.streams.remove(&stream);
            }
        }
        Some(stream)
    }

    /// Number of viewers of a stream on this worker.
    pub(crate) fn viewer_count(&self, stream: &str) -> usize {
        self.streams.get(stream).map_or(0, |s| s.viewers.len())
    }

    /// Total viewers.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    #[cfg(test)]
    /// True when there is no viewer at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    #[cfg(test)]
    /// Viewers of a stream (for closing them when the stream ends).
    pub(crate) fn viewers_of(&self, stream: &str) -> Vec<ViewerId> {
        self.streams
            .get(stream)
            .map(|s| s.viewers.iter().map(|v| v.id).collect())
            .unwrap_or_default()
    }

    #[cfg(test)]
    /// The outgoing m-lines of a viewer, with their kinds.
    pub(crate) fn viewer_mids(&self, viewer: ViewerId) -> Vec<(MediaKind, str0m::media::Mid)> {
        self.index
            .get(&viewer)
            .and_then(|stream| self.streams.get(stream))
            .and_then(|s| s.viewers.iter().find(|v| v.id == viewer))
            .map(|v| {
                v.tracks
                    .iter()
                    .map(|t| (t.track.kind, t.track.mid))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fans one source packet out to every viewer of `stream`, appending to `out`
    /// (which the caller clears and reuses).
    ///
    /// A packet goes to the first track of each viewer whose kind matches; viewers
    /// without such a track are skipped (not counted as a drop). No allocation
    /// happens here besides the growth of `out`.
    pub(crate) fn forward(&mut self, stream: &str, pkt: &SourcePacket, out: &mut Vec<Forward>) {
        let Some(entry) = self.streams.get_mut(stream) else {
            return;
        };
        for viewer in &mut entry.viewers {
            let Some(track) = viewer.tracks.iter_mut().find(|t| t.track.kind == pkt.kind) else {
                continue;
            };
            match track.rewrite(pkt) {
                Ok(rewritten) => {
                    self.stats.forwarded += 1;
                    let f = make_forward(viewer.id, track, pkt, rewritten);
                    // Only video is paced (audio is never part of a burst).
                    if self.pacer.is_idle() || pkt.kind != MediaKind::Video {
                        out.push(f);
                    } else if let Some(f) = self.pacer.queue_if_pacing(f) {
                        out.push(f);
                    }
                }
                Err(e) => self.stats.count(e),
            }
        }
    }

    /// Appends to `out` the paced packets whose turn has come by `now`.
    pub(crate) fn poll_paced(&mut self, now: Instant, out: &mut Vec<Forward>) {
        if !self.pacer.is_idle() {
            self.pacer.poll(now, out);
        }
    }

    /// When [`poll_paced`](Self::poll_paced) has something to release next.
    pub(crate) fn paced_timeout(&self) -> Option<Instant> {
        self.pacer.poll_timeout()
    }

    #[cfg(test)]
    /// Packets waiting in the pacer, over all viewers.
    pub(crate) fn paced_len(&self) -> usize {
        self.pacer.queued_len()
    }

    /// (stream, layer) pairs where at least one video viewer still waits for a
    /// keyframe of that layer (to start, or to switch to it) and this Fanout has not
    /// asked for one in the last `retry` (so a lost PLI is retried). Marks them as
    /// asked at `now`.
    pub(crate) fn keyframes_wanted(&mut self, now: Instant, retry: Duration) -> Vec<(String, u8)> {
        let mut wanted = Vec::new();
        for (name, entry) in &mut self.streams {
            let mut layers = [false; MAX_LAYERS];
            for v in &entry.viewers {
                for t in v.tracks.iter().filter(|t| t.wants_keyframe()) {
                    if let Some(l) = layers.get_mut(usize::from(t.target)) {
                        *l = true;
                    }
                }
            }
            for (layer, asked) in entry.keyframe_asked.iter_mut().enumerate() {
                let due = asked.is_none_or(|at| now.saturating_duration_since(at) >= retry);
                if layers[layer] && due {
                    *asked = Some(now);
                    wanted.push((name.clone(), layer as u8));
                }
            }
        }
        wanted.sort();
        wanted
    }

    /// Moves a viewer's video to simulcast layer `layer`. Returns true when it waits
    /// for a keyframe of that layer (the caller asks the source for one; the viewer
    /// keeps its current layer until it comes, unless `pause` stops it now), false
    /// when it is already there or has no video. `now` counts as the time that
    /// keyframe was asked for.
    pub(crate) fn set_layer(
        &mut self,
        viewer: ViewerId,
        layer: u8,
        pause: bool,
        now: Instant,
    ) -> bool {
        let Some(entry) = self
            .index
            .get(&viewer)
            .and_then(|stream| self.streams.get_mut(stream))
        else {
            return false;
        };
        let Some(track) = entry
            .viewers
            .iter_mut()
            .find(|v| v.id == viewer)
            .and_then(Viewer::video)
        else {
            return false;
        };
        if track.target == layer && !track.wants_keyframe() {
            return false;
        }
        let wants = track.set_target(layer, pause);
        if wants && let Some(asked) = entry.keyframe_asked.get_mut(usize::from(layer)) {
            *asked = Some(now);
        }
        wants
    }

    /// The simulcast layer a viewer's video forwards now and the one it is moving to.
    pub(crate) fn layer_of(&self, viewer: ViewerId) -> Option<(u8, u8)> {
        let stream = self.index.get(&viewer)?;
        let v = self
            .streams
            .get(stream)?
            .viewers
            .iter()
            .find(|v| v.id == viewer)?;
        let t = v.tracks.iter().find(|t| t.is_video())?;
        Some((t.layer, t.target))
    }

    /// Counters: packets forwarded, dropped because no PT mapping, dropped while
    /// waiting for a keyframe, dropped as too old.
    pub(crate) fn stats(&self) -> FanoutStats {
        self.stats
    }
}

#[cfg(test)]
mod tests;
