//! The rewriter of one viewer track: the source's sequence numbers and timestamps
//! mapped into the viewer's own space, so the viewer sees one continuous stream
//! however the source is replaced.
//!
//! * the first forwarded packet gets the track's `first_seq` / `first_timestamp`, later
//!   ones keep their distance to it (`out = in + offset`), so gaps and reordering
//!   survive;
//! * video starts at a keyframe; audio starts at once;
//! * when the source is replaced (a new epoch) the numbering continues where it
//!   stopped, with the timestamp advanced by the wall-clock time in between;
//! * a video track follows one simulcast layer; moved to another (its target), it
//!   keeps forwarding the old one until the target's next keyframe, and continues its
//!   numbering there with the timestamp advanced by the capture time in between;
//! * a cached group of pictures replayed to a viewer that lost sync is numbered after
//!   what it already got.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::MediaKind;

use super::packet::{Forward, SourcePacket, ViewerId, ViewerTrack};

/// Where the viewer's numbering stands after the packets forwarded so far.
#[derive(Debug, Clone, Copy)]
pub(super) struct LastOut {
    /// Highest outgoing extended sequence number.
    seq: u64,
    /// Outgoing timestamp of the packet with the highest sequence number.
    timestamp: u32,
    /// Arrival of that packet.
    arrival: Instant,
    /// Capture instant of that packet (what the viewer's sender reports follow).
    wallclock: Instant,
}

/// The mapping of one source epoch onto the viewer's numbering.
#[derive(Debug, Clone, Copy)]
pub(super) struct EpochMapping {
    /// First source sequence number forwarded in this epoch; older ones are dropped.
    first_src_seq: u64,
    /// `out_seq = src_seq + seq_offset` (wrapping, so it can be "negative").
    seq_offset: u64,
    /// `out_ts = src_ts + ts_offset` (wrapping).
    ts_offset: u32,
}

/// A packet as the viewer gets it: (payload type, sequence number, timestamp).
pub(super) type Rewritten = (u8, u64, u32);

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drop {
    NoPt,
    WaitingKeyframe,
    TooOld,
    /// A packet of a simulcast layer the track does not follow (not a loss).
    OtherLayer,
}

/// Rewriting state of one viewer track.
#[derive(Debug, Clone)]
pub(super) struct TrackRewriter {
    pub(super) track: ViewerTrack,
    /// The source epoch the track follows (waiting in, or forwarding).
    pub(super) epoch: Option<u32>,
    /// Set once the first packet of `epoch` was forwarded.
    mapping: Option<EpochMapping>,
    /// Set once any packet was forwarded.
    pub(super) last: Option<LastOut>,
    /// The last packet of a prefix given to this track (epoch, layer, source seq):
    /// live packets up to it were already forwarded from the prefix and are dropped.
    pub(super) prefix_end: Option<(u32, u8, u64)>,
    /// The simulcast layer whose packets the track forwards (audio: always 0).
    pub(super) layer: u8,
    /// The layer it should forward: it moves there at that layer's next keyframe.
    pub(super) target: u8,
    /// The current layer is not forwarded until the switch (a viewer moved down
    /// because its path is congested: what it would get of the old layer only
    /// lengthens the queue the target's keyframe waits behind).
    paused: bool,
}

impl TrackRewriter {
    /// A track that starts on simulcast layer `layer` (0 without simulcast).
    pub(super) fn new(track: ViewerTrack, layer: u8) -> Self {
        let layer = if track.kind == MediaKind::Video {
            layer
        } else {
            0
        };
        Self {
            track,
            epoch: None,
            mapping: None,
            last: None,
            prefix_end: None,
            layer,
            target: layer,
            paused: false,
        }
    }

    /// Moves a video track to simulcast layer `layer`. Returns true when the track
    /// now waits for a keyframe of that layer; it keeps forwarding its current one
    /// until then, unless `pause` says to stop it at once.
    pub(super) fn set_target(&mut self, layer: u8, pause: bool) -> bool {
        if !self.is_video() {
            return false;
        }
        self.target = layer;
        self.paused = pause && layer != self.layer;
        if self.mapping.is_none() {
            // Nothing forwarded in this epoch yet: wait for the new layer directly.
            self.layer = layer;
        }
        self.layer != self.target || self.mapping.is_none()
    }

    /// The track waits for a keyframe of its target layer: to start, or to switch.
    pub(super) fn wants_keyframe(&self) -> bool {
        self.is_video() && (self.mapping.is_none() || self.layer != self.target)
    }

    pub(super) fn is_video(&self) -> bool {
        self.track.kind == MediaKind::Video
    }

    /// A video track that has not started forwarding its current epoch.
    pub(super) fn waits_for_keyframe(&self) -> bool {
        self.is_video() && self.mapping.is_none()
    }

    pub(super) fn map_pt(&self, pt: u8) -> Option<u8> {
        self.track
            .pt_map
            .iter()
            .find_map(|&(src, dst)| (src == pt).then_some(dst))
    }

    /// Rewrites one packet into (pt, seq, timestamp), or says why it is dropped.
    pub(super) fn rewrite(&mut self, pkt: &SourcePacket) -> Result<(u8, u64, u32), Drop> {
        if pkt.layer != self.target && (pkt.layer != self.layer || self.paused) {
            return Err(Drop::OtherLayer);
        }
        let pt = self.map_pt(pkt.pt).ok_or(Drop::NoPt)?;
        if self.prefix_end.is_some_and(|(epoch, layer, seq)| {
            epoch == pkt.epoch && layer == pkt.layer && pkt.seq <= seq
        }) {
            return Err(Drop::TooOld);
        }

        let mut switching = false;
        match self.epoch {
            Some(current) if current == pkt.epoch => {
                if pkt.layer != self.layer {
                    // The target layer, while the old one still flows: switch at
                    // its keyframe, so the decoder never gets a picture it cannot
                    // decode.
                    if !pkt.keyframe_start {
                        return Err(Drop::OtherLayer);
                    }
                    self.layer = pkt.layer;
                    self.mapping = None;
                    self.paused = false;
                    switching = true;
                }
            }
            Some(current) if epoch_is_older(pkt.epoch, current) => return Err(Drop::TooOld),
            _ => {
                // First packet ever, or the source was replaced: start over, on the
                // target layer.
                if pkt.layer != self.target {
                    return Err(Drop::OtherLayer);
                }
                self.epoch = Some(pkt.epoch);
                self.layer = pkt.layer;
                self.mapping = None;
                self.paused = false;
            }
        }

        let mapping = match self.mapping {
            Some(mapping) => mapping,
            None => {
                if self.is_video() && !pkt.keyframe_start {
                    return Err(Drop::WaitingKeyframe);
                }
                let mapping = self.start_epoch(pkt, switching);
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
                wallclock: pkt.wallclock,
            });
        }
        Ok((pt, seq, timestamp))
    }

    /// Maps `group` (a cached group of pictures of one epoch, keyframe first, in
    /// arrival order) after everything this track has forwarded, for a viewer that
    /// lost sync: sequence numbers continue at the highest so far plus one, and each
    /// frame of the group gets a timestamp one tick after the previous one (the
    /// frames are old: the decoder needs them as references, the player may drop
    /// them), so timestamps never go backwards. Live packets after the group continue
    /// from its last frame. Returns (index in `group`, rewritten) per packet to send.
    ///
    /// The replayed packets' timestamps sit just after what the viewer had, so they
    /// are written with the wallclock of the viewer's last packet (returned), not their
    /// own capture instants: the viewer's sender reports stay as they were.
    pub(super) fn replay(
        &mut self,
        group: &[Arc<SourcePacket>],
    ) -> (Vec<(usize, Rewritten)>, Option<Instant>) {
        let before = self.last.map(|l| l.wallclock);
        let Some(first) = group.first() else {
            return (Vec::new(), before);
        };
        let of_group = |p: &SourcePacket| {
            p.epoch == first.epoch && p.layer == first.layer && p.seq >= first.seq
        };
        // Frame timestamps of the group, in the source's order.
        let mut frames: Vec<u32> = group
            .iter()
            .filter(|p| of_group(p))
            .map(|p| p.timestamp.wrapping_sub(first.timestamp))
            .collect();
        frames.sort_unstable();
        frames.dedup();
        let (base_seq, base_ts) = match self.last {
            None => (u64::from(self.track.first_seq), self.track.first_timestamp),
            Some(last) => (last.seq.saturating_add(1), last.timestamp.wrapping_add(1)),
        };
        let mut out = Vec::with_capacity(group.len());
        let mut highest: Option<(u64, u32, &SourcePacket)> = None;
        for (i, pkt) in group.iter().enumerate() {
            if !of_group(pkt) {
                continue;
            }
            let Some(pt) = self.map_pt(pkt.pt) else {
                continue;
            };
            let rank = frames
                .binary_search(&pkt.timestamp.wrapping_sub(first.timestamp))
                .unwrap_or(0);
            let ts = base_ts.wrapping_add(rank as u32);
            let seq = base_seq + (pkt.seq - first.seq);
            out.push((i, (pt, seq, ts)));
            if highest.is_none_or(|(s, ..)| seq > s) {
                highest = Some((seq, ts, pkt));
            }
        }
        if let Some((seq, ts, last)) = highest {
            self.epoch = Some(first.epoch);
            self.layer = first.layer;
            self.mapping = Some(EpochMapping {
                first_src_seq: first.seq,
                seq_offset: base_seq.wrapping_sub(first.seq),
                ts_offset: ts.wrapping_sub(last.timestamp),
            });
            self.last = Some(LastOut {
                seq,
                timestamp: ts,
                arrival: last.arrival,
                wallclock: last.wallclock,
            });
            self.prefix_end = Some((first.epoch, first.layer, last.seq));
        }
        (out, before)
    }

    /// Maps `pkt`, the first packet forwarded in its epoch (or on its layer, when
    /// `switching` layers), onto the viewer's numbering.
    fn start_epoch(&self, pkt: &SourcePacket, switching: bool) -> EpochMapping {
        let (out_seq, out_ts) = match self.last {
            None => (u64::from(self.track.first_seq), self.track.first_timestamp),
            Some(last) => {
                // Layers of one source share its capture clock, so the timestamp
                // advances by the capture time between the two pictures; across
                // sources only the arrivals compare.
                let elapsed = if switching {
                    pkt.wallclock.saturating_duration_since(last.wallclock)
                } else {
                    pkt.arrival.saturating_duration_since(last.arrival)
                };
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
pub(super) fn epoch_is_older(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < (1 << 31)
}

/// A wall-clock duration in RTP ticks of `clock_rate`, modulo 2^32 (RTP timestamps wrap).
pub(super) fn duration_to_ticks(elapsed: Duration, clock_rate: u32) -> u32 {
    let ticks = elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    // Truncation is the intended modulo 2^32.
    (ticks & u128::from(u32::MAX)) as u32
}

/// A rewritten packet as the worker writes it to the viewer.
pub(super) fn make_forward(
    viewer: ViewerId,
    track: &TrackRewriter,
    pkt: &SourcePacket,
    (pt, seq, timestamp): (u8, u64, u32),
) -> Forward {
    Forward {
        viewer,
        mid: track.track.mid,
        pt,
        seq,
        timestamp,
        marker: pkt.marker,
        nackable: pkt.kind == MediaKind::Video,
        keyframe: pkt.keyframe_start,
        wallclock: pkt.wallclock,
        payload: pkt.payload.clone(),
    }
}
