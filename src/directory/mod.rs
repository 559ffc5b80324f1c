//! The directory of streams and sessions, shared by the HTTP edge and the media workers.
//!
//! It answers "who is the source of stream X", "which worker holds session Y" and "which
//! workers have viewers of X". It holds a `std::sync::Mutex` only for short map
//! operations, never across an `.await`, and never on the per-packet path: the packet
//! path reads the atomics of [`Stream`] instead.
//!
//! Time is passed in (`now`), so the grace-period logic is tested without a clock.

mod events;
mod recording;
mod stream;

pub use events::EventKind;
pub(crate) use events::{Event, Listening, Subscriptions};
pub(crate) use recording::{NewStreamHook, RecorderTap, RecordingStatus};
pub(crate) use stream::{LAYER_RATE_WINDOW, PacketTap};
pub use stream::{Stream, StreamStats};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use str0m::media::MediaKind;

use crate::auth::Grant;
use crate::config::Takeover;
use crate::core::KeyframeCache;
use crate::model::{Role, SessionId};
use crate::sdp::ChosenCodec;

/// What the directory knows of one session.
#[derive(Debug, Clone)]
pub(crate) struct SessionInfo {
    /// Its id.
    pub(crate) id: SessionId,
    /// Publisher or viewer.
    pub(crate) kind: Role,
    /// The stream it publishes or watches.
    pub(crate) stream: Arc<str>,
    /// The media worker that owns its `Rtc`.
    pub(crate) worker: usize,
    /// The entity-tag of its current ICE session.
    pub(crate) etag: String,
    /// How it was authorized: the rights later requests on it are checked against.
    pub(crate) grant: Grant,
    /// A viewer's m-lines as the directory needs them (empty for a publisher).
    pub(crate) lines: ViewerLines,
}

/// What the directory keeps of a viewer's m-lines.
#[derive(Debug, Clone, Default)]
pub(crate) struct ViewerLines {
    /// The kinds of media it offered but the stream lacked when it joined (answered
    /// inactive): a source that brings one of them closes the viewer, so that its
    /// player joins again and gets it.
    pub(crate) idle_kinds: Vec<MediaKind>,
    /// Its video m-line: the index in its offer and the mid (the WHEP extensions'
    /// `mediaId` names it by either).
    pub(crate) video: Option<(usize, String)>,
}

/// Why the directory refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DirectoryError {
    /// The stream already has a live publisher.
    #[error("stream {0} already has a publisher")]
    SourceLive(String),
    /// The stream is fed by RTP ingest; WHIP cannot publish to it.
    #[error("stream {0} is fed by RTP ingest")]
    RtpSource(String),
    /// The stream has no live source to watch.
    #[error("stream {0} has no source yet")]
    NoSource(String),
    /// No such session.
    #[error("no such session")]
    UnknownSession,
}

#[derive(Debug)]
enum SourceState {
    Live(SessionId),
    /// A configured RTP ingest: live for the server's whole life.
    Rtp,
    Gone {
        deadline: Instant,
    },
}

#[derive(Debug)]
struct StreamEntry {
    shared: Arc<Stream>,
    source: SourceState,
    /// The current source's codecs, one per kind, numbered as in `known`.
    codecs: Vec<ChosenCodec>,
    /// Every codec the stream's viewers may have negotiated, one per kind: a source
    /// that lacks a kind leaves it here, so that one bringing it back with the same
    /// codec keeps its viewers and their payload type.
    known: Vec<ChosenCodec>,
    epoch: u32,
    viewers: usize,
}

impl StreamEntry {
    /// Whether the stream takes new viewers: a publisher's while it is connected, a
    /// camera's while it sends or when its viewers may wait for it.
    fn is_live(&self) -> bool {
        match self.source {
            SourceState::Live(_) => true,
            SourceState::Rtp => self.shared.events.live() || self.shared.camera_waits(),
            SourceState::Gone { .. } => false,
        }
    }
}

/// What a publisher gets when its stream is granted.
#[derive(Debug, Clone)]
pub(crate) struct PublishGrant {
    /// The stream's lock-free state, kept by the publisher's session.
    pub(crate) shared: Arc<Stream>,
    /// The source generation: viewers see a new epoch as a source switch.
    pub(crate) epoch: u32,
    /// Workers whose viewers must be closed because the returning publisher's codecs
    /// differ from what they negotiated (bit mask, usually 0).
    pub(crate) end_viewers_on: u64,
    /// Viewers to close because the publisher brings a kind of media they offered but
    /// were answered inactive (see [`SessionInfo::idle_kinds`]): their players join
    /// again and get it. Empty when `end_viewers_on` closes them all anyway.
    pub(crate) rejoin: Vec<SessionInfo>,
    /// The publisher this one took the stream from (see [`Takeover`]): it must be
    /// closed. Its end starts no grace period: the stream is already this one's.
    pub(crate) replaced: Option<SessionInfo>,
    /// The stream's codecs as viewers know them. A publisher returning with the same
    /// codecs under other payload type numbers keeps the first numbering, so the
    /// publisher maps its own payload types onto these.
    pub(crate) canonical: Vec<ChosenCodec>,
}

/// Counts for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectoryCounts {
    /// Streams known (live or in their grace period).
    pub streams: usize,
    /// Publisher sessions.
    pub publishers: usize,
    /// Viewer sessions.
    pub viewers: usize,
}

#[derive(Debug, Default)]
struct Inner {
    streams: HashMap<Arc<str>, StreamEntry>,
    sessions: HashMap<SessionId, SessionInfo>,
    /// Sessions that ended lately, oldest first, for a DELETE that comes after the
    /// end (see [`Directory::ended_session`]).
    ended: std::collections::VecDeque<(Instant, SessionInfo)>,
}

/// How long an ended session's resource still answers DELETE with 200. Players that
/// close their peer connection before they DELETE (medooze's whip-whep client, and
/// any that `pc.close()` first) send the DELETE after the DTLS close_notify has
/// ended the session, typically within milliseconds.
pub(crate) const ENDED_KEPT: Duration = Duration::from_secs(10);

/// At most this many ended sessions are remembered (a mass departure keeps the
/// newest).
const ENDED_MAX: usize = 4096;

/// The directory. One per server, shared as `Arc<Directory>`.
#[derive(Debug)]
pub struct Directory {
    inner: Mutex<Inner>,
    /// Viewers' event streams, ended with their sessions.
    pub(crate) subscriptions: Subscriptions,
    grace: Duration,
    takeover: Takeover,
    silence: Duration,
    /// Told of each new stream (the recorder; none in unit tests).
    hook: std::sync::OnceLock<Arc<dyn NewStreamHook>>,
}

impl Directory {
    /// A directory whose streams wait `grace` for a publisher to come back, whose
    /// sources are silent after `silence` without a packet, and where a new publisher
    /// may replace a live one as `takeover` says.
    pub(crate) fn new(grace: Duration, takeover: Takeover, silence: Duration) -> Directory {
        Directory {
            inner: Mutex::new(Inner::default()),
            subscriptions: Subscriptions::default(),
            grace,
            takeover,
            silence,
            hook: std::sync::OnceLock::new(),
        }
    }

    /// `hook` is told of every stream created from now on.
    pub(crate) fn set_new_stream_hook(&self, hook: Arc<dyn NewStreamHook>) {
        let _ = self.hook.set(hook);
    }

    /// A new stream, whose source sends `codecs` (the hook is told).
    fn new_stream(&self, name: Arc<str>, codecs: &[ChosenCodec]) -> Arc<Stream> {
        let shared = Arc::new(Stream::new(name));
        if let Some(h) = self.hook.get() {
            h.new_stream(&shared, codecs);
        }
        shared
    }

    /// Whether a new publisher may take a stream whose live source is `shared`.
    fn may_take_over(&self, shared: &Stream, now: Instant) -> bool {
        match self.takeover {
            Takeover::Never => false,
            Takeover::Always => true,
            Takeover::WhenSilent => shared.stats.silent_since(now, self.silence).is_some(),
        }
    }

    /// A quick look before the work of a WHIP offer: the error `begin_publish` would
    /// give now, if any (it decides again, under the same lock as the grant).
    pub(crate) fn check_publish(&self, stream: &str, now: Instant) -> Result<(), DirectoryError> {
        let inner = self.lock();
        match inner.streams.get(stream) {
            Some(e) => self.refusal(e, stream, now),
            None => Ok(()),
        }
    }

    /// Why `entry` cannot take a new publisher now, if it cannot.
    fn refusal(
        &self,
        entry: &StreamEntry,
        stream: &str,
        now: Instant,
    ) -> Result<(), DirectoryError> {
        match entry.source {
            SourceState::Live(_) if !self.may_take_over(&entry.shared, now) => {
                Err(DirectoryError::SourceLive(stream.to_owned()))
            }
            SourceState::Rtp => Err(DirectoryError::RtpSource(stream.to_owned())),
            _ => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock would be a bug in a few lines of map code;
        // the maps stay consistent enough to keep serving, so take the data back.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `id` the source of `stream`. Fails when another publisher is live and may
    /// not be replaced ([`Takeover`]); one that may is named in
    /// [`PublishGrant::replaced`]. A publisher arriving during the grace period (or
    /// replacing a silent one) takes the stream over: its viewers stay and see a new
    /// epoch. It may bring fewer kinds of media than the
    /// last one (viewers keep the others, quiet) or more (viewers that offered the
    /// new kind are closed to join again, see [`PublishGrant::rejoin`]); a codec
    /// other than the one viewers negotiated for a kind closes every viewer.
    pub(crate) fn begin_publish(
        &self,
        stream: &str,
        id: SessionId,
        worker: usize,
        etag: String,
        codecs: Vec<ChosenCodec>,
        auth: Grant,
    ) -> Result<PublishGrant, DirectoryError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let name: Arc<str> = Arc::from(stream);
        let entry = inner
            .streams
            .entry(name.clone())
            .or_insert_with(|| StreamEntry {
                shared: self.new_stream(name.clone(), &codecs),
                source: SourceState::Gone {
                    deadline: Instant::now(),
                },
                codecs: Vec::new(),
                known: Vec::new(),
                epoch: 0,
                viewers: 0,
            });
        self.refusal(entry, stream, now)?;
        let replaced = match entry.source {
            SourceState::Live(old) => Some(old),
            _ => None,
        };
        let conflict = codecs.iter().any(|c| {
            entry
                .known
                .iter()
                .any(|k| k.kind == c.kind && !same_codec(k, c))
        });
        let mut end_viewers_on = 0;
        if entry.viewers == 0 || conflict {
            if entry.viewers > 0 {
                end_viewers_on = entry.shared.viewer_workers();
            }
            entry.known = codecs.clone();
        } else {
            // Keep the numbering the viewers were set up with; learn new kinds.
            for c in &codecs {
                if !entry.known.iter().any(|k| k.kind == c.kind) {
                    entry.known.push(c.clone());
                }
            }
        }
        entry.codecs = entry
            .known
            .iter()
            .filter(|k| codecs.iter().any(|c| c.kind == k.kind))
            .cloned()
            .collect();
        entry.source = SourceState::Live(id);
        entry.epoch = entry.epoch.wrapping_add(1);
        entry.shared.set_source_worker(Some(worker));
        entry.shared.stats.source_started(now);
        entry.shared.events.set_live(true);
        let grant_codecs = entry.codecs.clone();
        let mut grant = PublishGrant {
            shared: entry.shared.clone(),
            epoch: entry.epoch,
            end_viewers_on,
            rejoin: Vec::new(),
            replaced: replaced.and_then(|old| inner.sessions.get(&old).cloned()),
            canonical: grant_codecs,
        };
        if end_viewers_on == 0 {
            grant.rejoin = inner
                .sessions
                .values()
                .filter(|s| s.kind == Role::Viewer && *s.stream == *name)
                .filter(|s| {
                    s.lines
                        .idle_kinds
                        .iter()
                        .any(|k| grant.canonical.iter().any(|c| c.kind == *k))
                })
                .cloned()
                .collect();
        }
        inner.sessions.insert(
            id,
            SessionInfo {
                id,
                kind: Role::Publisher,
                stream: name,
                worker,
                etag,
                grant: auth,
                lines: ViewerLines::default(),
            },
        );
        Ok(grant)
    }

    /// Makes a camera (an RTP or RTSP ingest) the permanent source of `stream`, with a
    /// keyframe cache (filled by the ingest, read by workers when a viewer joins).
    /// New viewers join while the camera sends, or also while it does not when it
    /// `waits` (see [`Stream::set_camera_waits`]).
    pub(crate) fn register_rtp_source(
        &self,
        stream: &str,
        codecs: Vec<ChosenCodec>,
        cache: KeyframeCache,
        waits: bool,
    ) -> Result<Arc<Stream>, DirectoryError> {
        let mut inner = self.lock();
        let name: Arc<str> = Arc::from(stream);
        if inner.streams.contains_key(stream) {
            return Err(DirectoryError::SourceLive(stream.to_owned()));
        }
        let shared = self.new_stream(name.clone(), &codecs);
        shared.set_keyframe_cache(0, Some(cache));
        shared.set_camera_waits(waits);
        inner.streams.insert(
            name,
            StreamEntry {
                shared: shared.clone(),
                source: SourceState::Rtp,
                known: codecs.clone(),
                codecs,
                epoch: 0,
                viewers: 0,
            },
        );
        Ok(shared)
    }

    /// The codecs of the stream's live source, if it has one.
    pub(crate) fn live_codecs(&self, stream: &str) -> Result<Vec<ChosenCodec>, DirectoryError> {
        let inner = self.lock();
        match inner.streams.get(stream) {
            Some(e) if e.is_live() => Ok(e.codecs.clone()),
            _ => Err(DirectoryError::NoSource(stream.to_owned())),
        }
    }

    /// Adds a viewer of a stream that has a live source, with its m-lines (see
    /// [`ViewerLines`]).
    pub(crate) fn join_viewer(
        &self,
        stream: &str,
        id: SessionId,
        worker: usize,
        etag: String,
        auth: Grant,
        lines: ViewerLines,
    ) -> Result<Arc<Stream>, DirectoryError> {
        let mut inner = self.lock();
        let entry = match inner.streams.get_mut(stream) {
            Some(e) if e.is_live() => e,
            _ => return Err(DirectoryError::NoSource(stream.to_owned())),
        };
        entry.viewers += 1;
        entry.shared.events.set_viewers(entry.viewers);
        let shared = entry.shared.clone();
        inner.sessions.insert(
            id,
            SessionInfo {
                id,
                kind: Role::Viewer,
                stream: shared.name.clone(),
                worker,
                etag,
                grant: auth,
                lines,
            },
        );
        Ok(shared)
    }

    /// Forgets a session. For a live publisher this starts the stream's grace period.
    pub(crate) fn remove_session(&self, id: SessionId, now: Instant) -> Option<SessionInfo> {
        self.remove(id, now, false)
    }

    /// Forgets a session its peer closed (DTLS close_notify), remembering it for
    /// [`ENDED_KEPT`] so that the DELETE such a peer sends next still gets 200. A
    /// session ended any other way (a DELETE, a timeout, the server) is gone at once:
    /// a DELETE after it is 404, as WHIP-10 and WHIP-13 expect.
    pub(crate) fn remove_closed_session(&self, id: SessionId, now: Instant) -> Option<SessionInfo> {
        self.remove(id, now, true)
    }

    fn remove(&self, id: SessionId, now: Instant, remember: bool) -> Option<SessionInfo> {
        let mut inner = self.lock();
        let info = inner.sessions.remove(&id)?;
        while remember
            && (inner
                .ended
                .front()
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) > ENDED_KEPT)
                || inner.ended.len() >= ENDED_MAX)
        {
            inner.ended.pop_front();
        }
        if remember {
            inner.ended.push_back((now, info.clone()));
        }
        self.subscriptions.end_session(id);
        let grace = self.grace;
        if let Some(entry) = inner.streams.get_mut(&info.stream) {
            match info.kind {
                Role::Viewer => {
                    entry.viewers = entry.viewers.saturating_sub(1);
                    entry.shared.events.set_viewers(entry.viewers);
                }
                Role::Publisher => {
                    if matches!(entry.source, SourceState::Live(live) if live == id) {
                        entry.source = SourceState::Gone {
                            deadline: now + grace,
                        };
                        entry.shared.set_source_worker(None);
                        entry.shared.events.set_live(false);
                    }
                }
            }
        }
        Some(info)
    }

    /// Ends the streams whose grace period is over. Returns each ended stream with the
    /// mask of workers that still hold viewers of it (they must close them).
    pub(crate) fn expire(&self, now: Instant) -> Vec<(Arc<str>, u64)> {
        let mut inner = self.lock();
        let mut ended = Vec::new();
        inner.streams.retain(|name, e| match e.source {
            SourceState::Gone { deadline } if deadline <= now => {
                ended.push((name.clone(), e.shared.viewer_workers()));
                false
            }
            _ => true,
        });
        ended
    }

    /// What is known of a session.
    pub(crate) fn session(&self, id: SessionId) -> Option<SessionInfo> {
        self.lock().sessions.get(&id).cloned()
    }

    /// Forgets an ended session (its DELETE came): the URL is gone from now on.
    pub(crate) fn forget_ended(&self, id: SessionId) {
        self.lock().ended.retain(|(_, s)| s.id != id);
    }

    /// A session that ended less than [`ENDED_KEPT`] before `now`.
    pub(crate) fn ended_session(&self, id: SessionId, now: Instant) -> Option<SessionInfo> {
        self.lock()
            .ended
            .iter()
            .rev()
            .find(|(at, s)| s.id == id && now.saturating_duration_since(*at) <= ENDED_KEPT)
            .map(|(_, s)| s.clone())
    }

    /// Replaces a session's entity-tag (after an ICE restart).
    pub(crate) fn set_etag(&self, id: SessionId, etag: String) -> Result<(), DirectoryError> {
        let mut inner = self.lock();
        let s = inner
            .sessions
            .get_mut(&id)
            .ok_or(DirectoryError::UnknownSession)?;
        s.etag = etag;
        Ok(())
    }

    /// Tells every stream's viewers to connect again (the server is going away).
    pub(crate) fn reconnect_all(&self) {
        for e in self.lock().streams.values() {
            e.shared.events.reconnect();
        }
    }

    /// Counts of streams and sessions.
    pub fn counts(&self) -> DirectoryCounts {
        let inner = self.lock();
        let publishers = inner
            .sessions
            .values()
            .filter(|s| s.kind == Role::Publisher)
            .count();
        DirectoryCounts {
            streams: inner.streams.len(),
            publishers,
            viewers: inner.sessions.len() - publishers,
        }
    }
}

/// Where a stream's media comes from, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceView {
    /// A live WHIP publisher.
    WhipLive(SessionId),
    /// The WHIP publisher left; viewers wait until the grace period ends.
    WhipWaiting,
    /// A configured RTP ingest.
    Rtp,
}

/// One stream as the directory knows it.
#[derive(Debug, Clone)]
pub struct StreamView {
    /// Its lock-free state (counters, picture size).
    pub shared: Arc<Stream>,
    /// Its source.
    pub source: SourceView,
    /// Its codecs, one per kind.
    pub codecs: Vec<ChosenCodec>,
    /// Viewer sessions.
    pub viewers: usize,
    /// When its live source fell silent, if it has sent nothing for the directory's
    /// silence (None while it sends, and for a stream waiting for its publisher).
    pub silent_since: Option<Instant>,
}

/// What [`Directory::stop_stream`] leaves to be done by the workers.
#[derive(Debug, Clone)]
pub(crate) struct StoppedStream {
    /// The live publisher to end, if any.
    pub(crate) publisher: Option<SessionInfo>,
}

impl Directory {
    fn view(&self, e: &StreamEntry, now: Instant) -> StreamView {
        StreamView {
            silent_since: e
                .is_live()
                .then(|| e.shared.stats.silent_since(now, self.silence))
                .flatten(),
            shared: e.shared.clone(),
            source: match e.source {
                SourceState::Live(id) => SourceView::WhipLive(id),
                SourceState::Gone { .. } => SourceView::WhipWaiting,
                SourceState::Rtp => SourceView::Rtp,
            },
            codecs: e.codecs.clone(),
            viewers: e.viewers,
        }
    }

    /// Every stream, sorted by name.
    pub(crate) fn streams(&self) -> Vec<StreamView> {
        let now = Instant::now();
        let inner = self.lock();
        let mut out: Vec<StreamView> = inner.streams.values().map(|e| self.view(e, now)).collect();
        out.sort_by(|a, b| a.shared.name.cmp(&b.shared.name));
        out
    }

    /// One stream.
    pub fn stream(&self, name: &str) -> Option<StreamView> {
        let now = Instant::now();
        self.lock().streams.get(name).map(|e| self.view(e, now))
    }

    /// Stops a stream now (operator's API): a WHIP stream is forgotten at once, with
    /// no grace period; a configured RTP ingest stays (its listener is configuration)
    /// but loses its viewers. The caller ends the returned publisher and viewers.
    /// Removes a camera's stream (its source is gone for good): its viewers are ended
    /// by the caller. False when `name` is not a camera's stream.
    pub(crate) fn remove_camera(&self, name: &str) -> bool {
        let mut inner = self.lock();
        match inner.streams.get(name) {
            Some(e) if matches!(e.source, SourceState::Rtp) => {
                e.shared.events.set_live(false);
                inner.streams.remove(name);
                true
            }
            _ => false,
        }
    }

    /// Removes a camera's stream if it has no viewers (a relay nobody watches any
    /// more): true when it is gone (or was never there).
    pub(crate) fn retire_unwatched(&self, name: &str) -> bool {
        let mut inner = self.lock();
        match inner.streams.get(name) {
            Some(e) if matches!(e.source, SourceState::Rtp) && e.viewers == 0 => {
                e.shared.events.set_live(false);
                inner.streams.remove(name);
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    pub(crate) fn stop_stream(&self, name: &str) -> Option<StoppedStream> {
        let mut inner = self.lock();
        let entry = inner.streams.get(name)?;
        let publisher = match entry.source {
            SourceState::Live(id) => inner.sessions.get(&id).cloned(),
            _ => None,
        };
        entry.shared.events.set_live(false);
        if !matches!(entry.source, SourceState::Rtp) {
            inner.streams.remove(name);
        }
        Some(StoppedStream { publisher })
    }
}

/// The same kind and codec; payload type numbers may differ.
fn same_codec(a: &ChosenCodec, b: &ChosenCodec) -> bool {
    a.kind == b.kind && a.codec.same_codec(&b.codec)
}

#[cfg(test)]
mod tests;
