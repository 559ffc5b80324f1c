//! Sources wishd connects to, rather than waits for: an RTSP camera ([`super::rtsp`])
//! or another WHEP server ([`super::pull`]). What they share lives here: one tokio
//! task per source that connects, feeds each RTP packet to the same [`Feed`] an RTP
//! camera's datagrams take, and connects again after 1 s, doubling to 30 s while it
//! keeps failing; on demand, it connects only while the stream has viewers and
//! leaves `close_after` after the last one.
//!
//! The stream appears in the directory at the first connection (or the first probe
//! of an on-demand source, which learns the codecs) and stays while the source comes
//! and goes: a dropped connection, an error or `rtp_timeout` without media takes it
//! offline, and its viewers resume at the next keyframe of the next connection. A
//! source that can be asked for a keyframe (a WHEP server, not a camera) is asked
//! whenever a viewer of the stream needs one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Feed, IngestCounters, MediumSpec, Pipe, Wiring, chosen_codecs, keyframe_cache};
use crate::directory::Stream;
use crate::media::WorkerMsg;
use crate::model::EndReason;
use crate::wire::rtp::RtpHeader;

/// The first wait before connecting again; doubled after each failure up to
/// [`MAX_BACKOFF`], back to this once media flowed.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A source asked for a keyframe is not asked again sooner than this.
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(500);

/// One thing a connection delivers.
pub(crate) enum Item {
    /// An RTP packet of medium `medium` (an index into [`Connection::media`]), as
    /// bytes on the wire.
    RtpBytes { medium: usize, data: Vec<u8> },
    /// An RTP packet of medium `medium` that a stack parsed already.
    Rtp {
        medium: usize,
        header: RtpHeader,
        payload: Arc<[u8]>,
    },
    /// RTCP as bytes on the wire (sender reports tie the clocks).
    Rtcp(Vec<u8>),
    /// A sender report a stack read already: the SSRC it describes, the sender's
    /// wall clock (ns since the Unix epoch) and the RTP time of the same moment.
    SenderReport { ssrc: u32, ns: i128, rtp_time: u32 },
    /// Something else the source sent, with nothing for the stream in it.
    Other,
}

/// A source connected and playing.
pub(crate) struct Connection {
    /// The media it serves, in the order [`Item`]'s `medium` counts them.
    pub(crate) media: Vec<MediumSpec>,
    /// What it sends, until it ends: `Err` with why it failed.
    pub(crate) items: BoxStream<'static, Result<Item, String>>,
    /// Asks the source for a keyframe; `None` for a source that cannot be asked.
    pub(crate) keyframes: Option<Box<dyn FnMut() + Send>>,
}

/// How to reach one kind of source.
pub(crate) trait Upstream: Send + Sync + 'static {
    /// What it is, in log lines ("RTSP camera", "WHEP upstream").
    fn what(&self) -> &'static str;
    /// Its stream, URL, and when to connect.
    fn schedule(&self) -> &Schedule;
    /// How media comes, for the API (`tcp`, `udp`, `webrtc`).
    fn transport(&self) -> &'static str;
    /// The media it would serve, without playing: an on-demand source learns its
    /// codecs this way once, so that viewers can join before it is connected.
    fn probe(&mut self) -> impl Future<Output = Result<Vec<MediumSpec>, String>> + Send;
    /// Connects and plays.
    fn connect(&mut self) -> impl Future<Output = Result<Connection, String>> + Send;
    /// The first wait before connecting again after a failure, and the longest.
    fn backoff(&self) -> (Duration, Duration) {
        (FIRST_BACKOFF, MAX_BACKOFF)
    }
    /// Whether the source ends for good, its stream leaving the directory, once
    /// nobody has watched for `close_after` (or when it fails while nobody watches),
    /// instead of waiting for the next viewer: a cluster's relay, started by a
    /// viewer and found again in the directory by the next one.
    fn retires_when_unwatched(&self) -> bool {
        false
    }
}

/// When and how long a source is connected.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schedule {
    pub(crate) stream: String,
    /// Where it is, without credentials (it is logged).
    pub(crate) url: String,
    /// Connect only while the stream has viewers.
    pub(crate) on_demand: bool,
    /// An on-demand source is left this long after its last viewer went.
    pub(crate) close_after: Duration,
    /// New viewers may join while the source is offline (they wait).
    pub(crate) wait_when_offline: bool,
}

/// Where a source stands, for the API and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullState {
    /// Connecting (or waiting to connect again).
    Connecting,
    /// Playing: media flows.
    Live,
    /// On demand, and nobody watches: not connected (its codecs are known).
    Idle,
    /// The last attempt failed or the source went away; it is tried again.
    Offline {
        /// Why, in one line.
        error: String,
    },
}

/// A running source wishd connects to: its counters, its state and how often it
/// reconnected.
#[derive(Debug, Clone)]
pub struct PulledSource {
    /// Stream name.
    pub stream: Arc<str>,
    /// Packet counters (as an RTP camera's).
    pub counters: Arc<IngestCounters>,
    status: Arc<Status>,
    url: Arc<str>,
    transport: &'static str,
}

#[derive(Debug)]
struct Status {
    state: std::sync::Mutex<PullState>,
    /// Connections that ended (after media flowed) or failed, each followed by a new
    /// attempt.
    reconnects: AtomicU64,
    /// The operator asks for a new connection now.
    restart: tokio::sync::Notify,
}

impl PulledSource {
    /// Where the source stands now.
    pub fn state(&self) -> PullState {
        self.status
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many times the source connected again after losing or missing it.
    pub fn reconnects(&self) -> u64 {
        self.status.reconnects.load(Ordering::Relaxed)
    }

    /// Ends the connection (or the wait before the next one) and connects again at
    /// once.
    pub fn restart(&self) {
        self.status.restart.notify_one();
    }

    /// The source's URL, without credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How media comes: `tcp` or `udp` for RTSP, `webrtc` for WHEP.
    pub fn transport(&self) -> &'static str {
        self.transport
    }

    fn set_state(&self, state: PullState) {
        *self.status.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

/// Starts the source's task.
pub(crate) fn start<U: Upstream>(
    upstream: U,
    wiring: Wiring,
    stop: watch::Receiver<bool>,
) -> (PulledSource, tokio::task::JoinHandle<()>) {
    let schedule = upstream.schedule().clone();
    let transport = upstream.transport();
    let handle = PulledSource {
        stream: Arc::from(schedule.stream.as_str()),
        counters: Arc::new(IngestCounters::default()),
        status: Arc::new(Status {
            state: std::sync::Mutex::new(PullState::Connecting),
            reconnects: AtomicU64::new(0),
            restart: tokio::sync::Notify::new(),
        }),
        url: Arc::from(schedule.url.as_str()),
        transport,
    };
    let task = Puller {
        upstream,
        schedule,
        wiring,
        handle: handle.clone(),
        stream: None,
        pipes: Vec::new(),
        feed: None,
    };
    (handle, tokio::spawn(task.run(stop)))
}

struct Puller<U> {
    upstream: U,
    schedule: Schedule,
    wiring: Wiring,
    handle: PulledSource,
    /// The stream, once the first connection (or probe) put it in the directory.
    stream: Option<Arc<Stream>>,
    /// One pipeline per kind of media, kept across connections: a source that comes
    /// back (a new SSRC, numbering from anywhere) starts a new epoch in it, so its
    /// viewers' numbering runs on and they resume at its next keyframe.
    pipes: Vec<Pipe>,
    /// The feed, kept across connections as the pipelines are.
    feed: Option<Feed>,
}

/// The pipeline medium `m` of a connection goes to.
fn pipe_of<'a>(route: &[Option<usize>], pipes: &'a mut [Pipe], m: usize) -> Option<&'a mut Pipe> {
    route
        .get(m)
        .copied()
        .flatten()
        .and_then(|k| pipes.get_mut(k))
}

/// How one connection ended.
enum Ended {
    /// The server is shutting down.
    Stopped,
    /// The operator asked for a new connection (`POST /api/sources/{stream}/restart`).
    Restart,
    /// On demand: nobody watched for `close_after`.
    Idle,
    /// The source is gone or failed; `played` when media had flowed.
    Lost { error: String, played: bool },
}

impl<U: Upstream> Puller<U> {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let (first_backoff, _) = self.upstream.backoff();
        let retires = self.upstream.retires_when_unwatched();
        let mut backoff = first_backoff;
        let status = self.handle.status.clone();
        let what = self.upstream.what();
        loop {
            if self.schedule.on_demand {
                if self.stream.is_none() {
                    self.handle.set_state(PullState::Connecting);
                    let probed = tokio::select! {
                        _ = stop.changed() => return,
                        r = self.probe() => r,
                    };
                    if let Err(error) = probed {
                        if !self.back_off(error, &mut backoff, &mut stop).await {
                            return;
                        }
                        continue;
                    }
                }
                self.handle.set_state(PullState::Idle);
                self.offline_viewers(false);
                let Some(stream) = self.stream.clone() else {
                    continue;
                };
                while stream.events.viewers() == 0 {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = status.restart.notified() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
            self.handle.set_state(PullState::Connecting);
            let ended = tokio::select! {
                _ = stop.changed() => Ended::Stopped,
                _ = status.restart.notified() => Ended::Restart,
                e = self.connection() => e,
            };
            if let Some(s) = &self.stream {
                s.set_upstream_keyframes(false);
            }
            let (error, played) = match ended {
                Ended::Stopped => return,
                Ended::Idle => {
                    info!(
                        stream = %self.schedule.stream,
                        "{what}: no viewers for {:?}, disconnected", self.schedule.close_after
                    );
                    if retires && self.retire() {
                        return;
                    }
                    backoff = first_backoff;
                    continue;
                }
                Ended::Restart => {
                    // The connection was cut short: its feed is still live.
                    if let Some(feed) = self.feed.as_mut() {
                        feed.go_offline();
                    }
                    info!(stream = %self.schedule.stream, "{what}: restarted by the operator");
                    status.reconnects.fetch_add(1, Ordering::Relaxed);
                    backoff = first_backoff;
                    continue;
                }
                Ended::Lost { error, played } => (error, played),
            };
            if played {
                backoff = first_backoff;
            }
            let watched = self.stream.as_ref().is_some_and(|s| s.events.viewers() > 0);
            if retires && !watched && self.retire() {
                warn!(stream = %self.schedule.stream, "{what}: {error}; nobody watches, given up");
                self.handle.set_state(PullState::Offline { error });
                return;
            }
            if !self.back_off(error, &mut backoff, &mut stop).await {
                return;
            }
        }
    }

    /// Whether new viewers may join while the source sends nothing: when configured
    /// so, and for an on-demand source unless its last connection `failed` (its
    /// viewers are what connects it).
    fn takes_viewers_offline(&self, failed: bool) -> bool {
        self.schedule.wait_when_offline || (self.schedule.on_demand && !failed)
    }

    /// Tells the directory whether new viewers may join while the source is offline.
    fn offline_viewers(&self, failed: bool) {
        if let Some(s) = &self.stream {
            s.set_camera_waits(self.takes_viewers_offline(failed));
        }
    }

    /// After a connection failed or was lost: says why (one log line), counts it, and
    /// waits `backoff` (or until a restart), doubling it for the next time. False when
    /// the server stops meanwhile.
    async fn back_off(
        &self,
        error: String,
        backoff: &mut Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        warn!(
            stream = %self.schedule.stream, url = %self.schedule.url,
            "{}: {error}; connecting again in {backoff:?}", self.upstream.what()
        );
        self.handle.set_state(PullState::Offline { error });
        self.offline_viewers(true);
        self.handle
            .status
            .reconnects
            .fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = stop.changed() => return false,
            _ = self.handle.status.restart.notified() => {}
            _ = tokio::time::sleep(*backoff) => {}
        }
        *backoff = (*backoff * 2).min(self.upstream.backoff().1);
        true
    }

    /// Takes the stream out of the directory if nobody watches it (a viewer may have
    /// joined since the last look): true when the source may end.
    fn retire(&self) -> bool {
        match &self.stream {
            Some(s) => self.wiring.directory.retire_unwatched(&s.name),
            None => true,
        }
    }

    /// Learns the source's codecs and puts its stream in the directory (an on-demand
    /// source before its first viewer).
    async fn probe(&mut self) -> Result<(), String> {
        let media = self.upstream.probe().await?;
        self.stream_for(&media)
            .map(|_| ())
            .ok_or_else(|| "the stream name is taken by another source".into())
    }

    /// One connection: connect, then packets until it ends.
    async fn connection(&mut self) -> Ended {
        let what = self.upstream.what();
        let Connection {
            media,
            mut items,
            mut keyframes,
        } = match self.upstream.connect().await {
            Ok(c) => c,
            Err(error) => {
                return Ended::Lost {
                    error,
                    played: false,
                };
            }
        };
        self.follow_codecs(&media);
        let Some(stream) = self.stream_for(&media) else {
            return Ended::Lost {
                error: "the stream name is taken by another source".into(),
                played: false,
            };
        };
        info!(
            stream = %self.schedule.stream, url = %self.schedule.url,
            "{what} playing: {}",
            media.iter().map(|m| format!("{:?} {}", m.kind, m.codec.name)).collect::<Vec<_>>().join(", ")
        );
        // The pipeline of each medium, by kind.
        for m in &media {
            if !self.pipes.iter().any(|p| p.spec.kind == m.kind) {
                self.pipes.push(Pipe::new(m));
            }
        }
        let route: Vec<Option<usize>> = media
            .iter()
            .map(|m| self.pipes.iter().position(|p| p.spec.kind == m.kind))
            .collect();
        let feed = self.feed.get_or_insert_with(|| {
            Feed::new(
                stream.clone(),
                self.wiring.peers.clone(),
                self.wiring.media_counters.clone(),
                self.handle.counters.clone(),
            )
        });
        stream.set_upstream_keyframes(keyframes.is_some());
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let started = Instant::now();
        let mut played = false;
        let mut unwatched_since: Option<Instant> = None;
        let mut last_keyframe_request: Option<Instant> = None;
        let error = loop {
            tokio::select! {
                item = items.next() => {
                    let now = Instant::now();
                    let fed = match item {
                        Some(Ok(Item::RtpBytes { medium, data })) => match pipe_of(&route, &mut self.pipes, medium) {
                            Some(p) => { feed.rtp(p, &data, None, now); true }
                            None => false,
                        },
                        Some(Ok(Item::Rtp { medium, header, payload })) => match pipe_of(&route, &mut self.pipes, medium) {
                            Some(p) => { feed.rtp_parsed(p, &header, payload, None, now); true }
                            None => false,
                        },
                        Some(Ok(Item::Rtcp(data))) => { feed.rtcp(&data, now); false }
                        Some(Ok(Item::SenderReport { ssrc, ns, rtp_time })) => {
                            feed.sender_report(ssrc, ns, rtp_time, now);
                            false
                        }
                        Some(Ok(Item::Other)) => false,
                        Some(Err(e)) => break e,
                        None => break format!("the {what} ended the session"),
                    };
                    if fed && !played {
                        played = true;
                        self.handle.set_state(PullState::Live);
                    }
                }
                _ = stream.upstream_keyframe.notified(), if keyframes.is_some() => {
                    let now = Instant::now();
                    let due = last_keyframe_request
                        .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_INTERVAL);
                    if due && let Some(ask) = keyframes.as_mut() {
                        last_keyframe_request = Some(now);
                        ask();
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let silent = match feed.last_packet {
                        Some(t) => now.saturating_duration_since(t) >= self.wiring.timeout,
                        None => now.saturating_duration_since(started) >= self.wiring.timeout,
                    };
                    if silent {
                        break format!("no media for {:?}", self.wiring.timeout);
                    }
                    if self.schedule.on_demand || self.upstream.retires_when_unwatched() {
                        let watched = feed.shared.events.viewers() > 0;
                        let since = *unwatched_since.get_or_insert(now);
                        if watched {
                            unwatched_since = None;
                        } else if now.saturating_duration_since(since) >= self.schedule.close_after {
                            feed.go_offline();
                            return Ended::Idle;
                        }
                    }
                }
            }
        };
        feed.go_offline();
        Ended::Lost { error, played }
    }

    /// A source back with other codecs than its stream's viewers negotiated (a cluster
    /// stream whose publisher came back on another node with another encoder): those
    /// cannot be spliced into their sessions, so they end (`codec-changed`, their
    /// players join again) and the stream starts anew. The same codec under another
    /// payload type number is only renumbered.
    fn follow_codecs(&mut self, media: &[MediumSpec]) {
        let changed = media.iter().any(|m| {
            self.pipes
                .iter()
                .any(|p| p.spec.kind == m.kind && !p.spec.codec.same_codec(&m.codec))
        });
        if changed {
            if let Some(s) = self.stream.take() {
                warn!(stream = %s.name, "{}: the source's codecs changed; its viewers join again", self.upstream.what());
                self.wiring.directory.remove_camera(&s.name);
                for w in &self.wiring.peers {
                    let _ = w.try_send(WorkerMsg::EndStream {
                        stream: s.name.clone(),
                        reason: EndReason::CodecChanged,
                    });
                }
            }
            self.pipes.clear();
            self.feed = None;
            return;
        }
        for m in media {
            if let Some(p) = self.pipes.iter_mut().find(|p| p.spec.kind == m.kind)
                && p.spec.codec.pt != m.codec.pt
            {
                p.accept_pt(m.codec.pt);
            }
        }
    }

    /// The stream in the directory: put there at the first connection with the
    /// source's codecs, the same one after that.
    fn stream_for(&mut self, media: &[MediumSpec]) -> Option<Arc<Stream>> {
        if let Some(s) = &self.stream {
            return Some(s.clone());
        }
        let shared = self
            .wiring
            .directory
            .register_rtp_source(
                &self.schedule.stream,
                chosen_codecs(media),
                keyframe_cache(media, self.wiring.silence),
                self.takes_viewers_offline(false),
            )
            .ok()?;
        self.stream = Some(shared.clone());
        Some(shared)
    }
}
