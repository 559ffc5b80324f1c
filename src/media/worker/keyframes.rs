//! Keyframes: a viewer's request answered from the keyframe cache (a source that
//! cannot be asked) or carried to the source's worker, and the requests sent to a
//! publisher, rate-limited by its [`KeyframeLimiter`](crate::core::KeyframeLimiter).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, MediaKind};
use tracing::debug;

use super::forward::StreamCount;
use super::session::{PublishedTrack, RoleState, Session};
use super::{KEYFRAME_RETRY, Worker};
use crate::core::{KeyframeCache, ViewerId};
use crate::directory::Stream;

/// The least time between two keyframe requests a worker makes for one stream
/// because it dropped stale video of it.
const STALE_KEYFRAME_INTERVAL: Duration = Duration::from_millis(250);

/// A keyframe cache for the video of a WHIP source (None without video), stale after
/// `silence`.
pub(super) fn video_keyframe_cache(
    tracks: &[PublishedTrack],
    silence: Duration,
) -> Option<KeyframeCache> {
    tracks
        .iter()
        .find(|t| t.source.kind == MediaKind::Video)
        .map(|t| KeyframeCache::new(t.source.codec, crate::core::CACHE_BYTES).stale_after(silence))
}

impl Worker {
    /// A viewer's keyframe request, when its stream keeps a keyframe cache (a camera,
    /// which cannot be asked): the viewer gets the cached group again, rate-limited.
    pub(super) fn viewer_keyframe(&mut self, key: u64, shared: &Stream, now: Instant) {
        let layer = self.fanout.layer_of(ViewerId(key)).map_or(0, |(l, _)| l);
        let group = shared.keyframe_group(layer, now);
        if group.is_empty() {
            return;
        }
        // Not `self.forwards`: that holds live forwards still to be written.
        let mut forwards = Vec::new();
        let r =
            self.fanout
                .resync_viewer(ViewerId(key), &group, now, KEYFRAME_RETRY, &mut forwards);
        if let Some(s) = self.sessions.get(&key) {
            s.span
                .in_scope(|| debug!(?r, "keyframe request answered from the cache"));
        }
        self.write_forwards(&mut forwards, StreamCount::Stream(&shared.stats));
    }

    /// After this worker dropped stale video of `stream`: a keyframe of `layer`, asked
    /// at most every [`STALE_KEYFRAME_INTERVAL`] per stream (a backlog drops hundreds
    /// of packets at once), through the source's own limiter.
    pub(super) fn ask_keyframe_after_drop(
        &mut self,
        stream: &Arc<Stream>,
        layer: u8,
        now: Instant,
    ) {
        let due = self
            .stale_asked
            .get(&stream.name)
            .is_none_or(|t| now.saturating_duration_since(*t) >= STALE_KEYFRAME_INTERVAL);
        if !due {
            return;
        }
        if self.stale_asked.len() >= 64 {
            self.stale_asked
                .retain(|_, t| now.saturating_duration_since(*t) < STALE_KEYFRAME_INTERVAL);
        }
        self.stale_asked.insert(stream.name.clone(), now);
        self.counters
            .keyframes_asked_after_drops
            .fetch_add(1, Ordering::Relaxed);
        self.deferred
            .push_back(super::Deferred::WantKeyframe(stream.clone(), layer));
    }

    /// Asks this worker's publisher of `stream` for a keyframe of simulcast layer
    /// `layer`, through that layer's limiter.
    pub(super) fn request_keyframe_local(&mut self, stream: &str, layer: u8, now: Instant) {
        let Some(&key) = self.publishers.get(stream) else {
            return;
        };
        let Some(Session {
            role: RoleState::Publisher { layers, tracks, .. },
            ..
        }) = self.sessions.get_mut(&key).map(Box::as_mut)
        else {
            return;
        };
        let Some(state) = layers.get_mut(usize::from(layer)) else {
            return;
        };
        if state.limiter.request(now) {
            let tracks = tracks.clone();
            self.send_keyframe_request(key, &tracks, layer, now);
        } else {
            self.counters
                .keyframe_requests_coalesced
                .fetch_add(1, Ordering::Relaxed);
            // Coalesced: make sure the session timer covers the limiter's deadline.
            self.drive(key, now, |_| Ok(()));
        }
    }

    /// Sends a keyframe request to simulcast layer `layer` of a publisher's video.
    pub(super) fn send_keyframe_request(
        &mut self,
        key: u64,
        tracks: &[PublishedTrack],
        layer: u8,
        now: Instant,
    ) {
        for t in tracks.iter().filter(|t| t.source.kind == MediaKind::Video) {
            let Some(kind) = t.keyframe_request else {
                continue;
            };
            if let Some(Session {
                role: RoleState::Publisher { layers, .. },
                ..
            }) = self.sessions.get_mut(&key).map(Box::as_mut)
                && let Some(state) = layers.get_mut(usize::from(layer))
            {
                state.keyframes.request_sent(now);
            }
            let (mid, rid) = (t.mid, t.rid(layer));
            self.counters
                .keyframe_requests_sent
                .fetch_add(1, Ordering::Relaxed);
            let by_kind = match kind {
                KeyframeRequestKind::Fir => &self.counters.fir_sent,
                _ => &self.counters.pli_sent,
            };
            by_kind.fetch_add(1, Ordering::Relaxed);
            self.drive(key, now, move |rtc| {
                if let Some(rx) = rtc.direct_api().stream_rx_by_mid(mid, rid) {
                    rx.request_keyframe(kind);
                }
                Ok(())
            });
        }
    }
}
