//! Per-worker fan-out of source packets to viewers, with per-viewer rewriting.
//!
//! Each viewer track has its own outgoing sequence number space and RTP timestamp
//! base, chosen by the worker. A [`TrackRewriter`] maps the source's numbering into
//! the viewer's:
//!
//! * the first forwarded packet gets `first_seq` / `first_timestamp`, later ones keep
//!   their distance to it (`out = in + offset`), so gaps and reordering survive;
//! * video starts at a keyframe; audio starts at once;
//! * when the source is replaced (new epoch) the viewer's numbering continues where
//!   it stopped, with the timestamp advanced by the wall-clock time in between.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::media::{MediaKind, Mid};

use super::packet::{Forward, SourcePacket, ViewerId, ViewerTrack};

/// Counters of a [`Fanout`], since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanoutStats {
    /// Packets handed to viewers (one per viewer track).
    pub forwarded: u64,
    /// Packets dropped because the viewer track has no mapping for their payload type.
    pub dropped_no_pt: u64,
    /// Video packets dropped because the viewer track waits for a keyframe.
    pub dropped_waiting_keyframe: u64,
    /// Packets dropped as too old: older than the first forwarded packet of their
    /// epoch, or from an epoch older than the one the viewer already follows.
    pub dropped_too_old: u64,
}

/// Where the viewer's numbering stands after the packets forwarded so far.
#[derive(Debug, Clone, Copy)]
struct LastOut {
    /// Highest outgoing extended sequence number.
    seq: u64,
    /// Outgoing timestamp of the packet with the highest sequence number.
    timestamp: u32,
    /// Arrival of that packet.
    arrival: Instant,
}

/// The mapping of one source epoch onto the viewer's numbering.
#[derive(Debug, Clone, Copy)]
struct EpochMapping {
    /// First source sequence number forwarded in this epoch; older ones are dropped.
    first_src_seq: u64,
    /// `out_seq = src_seq + seq_offset` (wrapping, so it can be "negative").
    seq_offset: u64,
    /// `out_ts = src_ts + ts_offset` (wrapping).
    ts_offset: u32,
}

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drop {
    NoPt,
    WaitingKeyframe,
    TooOld,
}

/// Rewriting state of one viewer track.
#[derive(Debug, Clone)]
struct TrackRewriter {
    track: ViewerTrack,
    /// The source epoch the track follows (waiting in, or forwarding).
    epoch: Option<u32>,
    /// Set once the first packet of `epoch` was forwarded.
    mapping: Option<EpochMapping>,
    /// Set once any packet was forwarded.
    last: Option<LastOut>,
}

impl TrackRewriter {
    fn new(track: ViewerTrack) -> Self {
        Self {
            track,
            epoch: None,
            mapping: None,
            last: None,
        }
    }

    fn is_video(&self) -> bool {
        self.track.kind == MediaKind::Video
    }

    /// A video track that has not started forwarding its current epoch.
    fn waits_for_keyframe(&self) -> bool {
        self.is_video() && self.mapping.is_none()
    }

    fn map_pt(&self, pt: u8) -> Option<u8> {
        self.track
            .pt_map
            .iter()
            .find_map(|&(src, dst)| (src == pt).then_some(dst))
    }

    /// Rewrites one packet into (pt, seq, timestamp), or says why it is dropped.
    fn rewrite(&mut self, pkt: &SourcePacket) -> Result<(u8, u64, u32), Drop> {
        let pt = self.map_pt(pkt.pt).ok_or(Drop::NoPt)?;

        match self.epoch {
            Some(current) if current == pkt.epoch => {}
            Some(current) if epoch_is_older(pkt.epoch, current) => return Err(Drop::TooOld),
            _ => {
                // First packet ever, or the source was replaced: start over.
                self.epoch = Some(pkt.epoch);
                self.mapping = None;
            }
        }

        let mapping = match self.mapping {
            Some(mapping) => mapping,
            None => {
                if self.is_video() && !pkt.keyframe_start {
                    return Err(Drop::WaitingKeyframe);
                }
                let mapping = self.start_epoch(pkt);
                self.mapping = Some(mapping);
                mapping
            }
        };

        if pkt.seq < mapping.first_src_seq {
            return Err(Drop::TooOld);
        }
        let seq = pkt.seq.wrapping_add(mapping.seq_offset);
        let timestamp = pkt.timestamp.wrapping_add(mapping.ts_offset);
        if self.last.is_none_or(|last| seq > last.seq) {
            self.last = Some(LastOut {
                seq,
                timestamp,
                arrival: pkt.arrival,
            });
        }
        Ok((pt, seq, timestamp))
    }

    /// Maps `pkt`, the first packet forwarded in its epoch, onto the viewer's numbering.
    fn start_epoch(&self, pkt: &SourcePacket) -> EpochMapping {
        let (out_seq, out_ts) = match self.last {
            None => (u64::from(self.track.first_seq), self.track.first_timestamp),
            Some(last) => {
                let elapsed = pkt.arrival.saturating_duration_since(last.arrival);
                let ticks = duration_to_ticks(elapsed, self.track.clock_rate).max(1);
                (
                    last.seq.saturating_add(1),
                    last.timestamp.wrapping_add(ticks),
                )
            }
        };
        EpochMapping {
            first_src_seq: pkt.seq,
            seq_offset: out_seq.wrapping_sub(pkt.seq),
            ts_offset: out_ts.wrapping_sub(pkt.timestamp),
        }
    }
}

/// Serial-number comparison of epochs: `a` is older than `b`.
fn epoch_is_older(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < (1 << 31)
}

/// A wall-clock duration in RTP ticks of `clock_rate`, modulo 2^32 (RTP timestamps wrap).
fn duration_to_ticks(elapsed: Duration, clock_rate: u32) -> u32 {
    let ticks = elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    // Truncation is the intended modulo 2^32.
    (ticks & u128::from(u32::MAX)) as u32
}

/// One viewer: its tracks.
#[derive(Debug, Clone)]
struct Viewer {
    id: ViewerId,
    tracks: Vec<TrackRewriter>,
}

impl Viewer {
    fn waits_for_keyframe(&self) -> bool {
        self.tracks.iter().any(TrackRewriter::waits_for_keyframe)
    }
}

/// The viewers of one stream on this worker.
#[derive(Debug, Default)]
struct StreamViewers {
    viewers: Vec<Viewer>,
    /// When a keyframe was last asked for on behalf of these viewers.
    keyframe_asked: Option<Instant>,
}

/// Per-worker fan-out: viewers grouped by stream name, with per-viewer rewriting state.
#[derive(Debug, Default)]
pub struct Fanout {
    streams: HashMap<String, StreamViewers>,
    /// Viewer -> stream it watches.
    index: HashMap<ViewerId, String>,
    stats: FanoutStats,
}

impl Fanout {
    /// An empty fan-out.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a viewer of `stream`. Returns true when the viewer has a video track (so
    /// the caller must ask the source for a keyframe).
    ///
    /// The caller is expected to ask right away, so `now` counts as the time a
    /// keyframe was last asked for this stream (see [`keyframes_wanted`](Self::keyframes_wanted)).
    /// A viewer id that is already known is replaced (and may move to another stream).
    pub fn add_viewer(
        &mut self,
        stream: &str,
        viewer: ViewerId,
        tracks: Vec<ViewerTrack>,
        now: Instant,
    ) -> bool {
        self.remove_viewer(viewer);
        let has_video = tracks.iter().any(|t| t.kind == MediaKind::Video);
        let entry = self.streams.entry(stream.to_owned()).or_default();
        entry.viewers.push(Viewer {
            id: viewer,
            tracks: tracks.into_iter().map(TrackRewriter::new).collect(),
        });
        if has_video {
            entry.keyframe_asked = Some(now);
        }
        self.index.insert(viewer, stream.to_owned());
        has_video
    }

    /// Removes a viewer; returns the stream it watched if it was known.
    pub fn remove_viewer(&mut self, viewer: ViewerId) -> Option<String> {
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
    pub fn viewer_count(&self, stream: &str) -> usize {
        self.streams.get(stream).map_or(0, |s| s.viewers.len())
    }

    /// Total viewers.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when there is no viewer at all.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Viewers of a stream (for closing them when the stream ends).
    pub fn viewers_of(&self, stream: &str) -> Vec<ViewerId> {
        self.streams
            .get(stream)
            .map(|s| s.viewers.iter().map(|v| v.id).collect())
            .unwrap_or_default()
    }

    /// The outgoing m-lines of a viewer, with their kinds.
    pub fn viewer_mids(&self, viewer: ViewerId) -> Vec<(MediaKind, Mid)> {
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
    pub fn forward(&mut self, stream: &str, pkt: &SourcePacket, out: &mut Vec<Forward>) {
        let Some(entry) = self.streams.get_mut(stream) else {
            return;
        };
        let nackable = pkt.kind == MediaKind::Video;
        for viewer in &mut entry.viewers {
            let Some(track) = viewer.tracks.iter_mut().find(|t| t.track.kind == pkt.kind) else {
                continue;
            };
            match track.rewrite(pkt) {
                Ok((pt, seq, timestamp)) => {
                    self.stats.forwarded += 1;
                    out.push(Forward {
                        viewer: viewer.id,
                        mid: track.track.mid,
                        pt,
                        seq,
                        timestamp,
                        marker: pkt.marker,
                        nackable,
                        wallclock: pkt.arrival,
                        payload: pkt.payload.clone(),
                    });
                }
                Err(Drop::NoPt) => self.stats.dropped_no_pt += 1,
                Err(Drop::WaitingKeyframe) => self.stats.dropped_waiting_keyframe += 1,
                Err(Drop::TooOld) => self.stats.dropped_too_old += 1,
            }
        }
    }

    /// Streams where at least one video viewer still waits for a keyframe and this
    /// Fanout has not asked for one in the last `retry` (so a lost PLI is retried).
    /// Marks them as asked at `now`.
    pub fn keyframes_wanted(&mut self, now: Instant, retry: Duration) -> Vec<String> {
        let mut wanted = Vec::new();
        for (name, entry) in &mut self.streams {
            if !entry.viewers.iter().any(Viewer::waits_for_keyframe) {
                continue;
            }
            let due = entry
                .keyframe_asked
                .is_none_or(|asked| now.saturating_duration_since(asked) >= retry);
            if due {
                entry.keyframe_asked = Some(now);
                wanted.push(name.clone());
            }
        }
        wanted.sort();
        wanted
    }

    /// Counters: packets forwarded, dropped because no PT mapping, dropped while
    /// waiting for a keyframe, dropped as too old.
    pub fn stats(&self) -> FanoutStats {
        self.stats
    }
}
