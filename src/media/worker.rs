//! One media worker: a tokio task owning a UDP socket, the `Rtc`s of its sessions, a
//! [`Fanout`] for its viewers and the keyframe limiters of its publishers.
//!
//! The loop waits on three things: datagrams, commands (new sessions, closes, packets
//! and keyframe requests from other workers) and the earliest session timer. Every
//! mutation of an `Rtc` is followed by draining `poll_output` to a timeout (str0m's
//! run-loop rule), inside `catch_unwind`: a panic in one session drops that session.
//!
//! Effects that touch other sessions (a publisher's packet reaching viewers, a viewer's
//! keyframe request reaching its publisher) are queued while one `Rtc` is drained and
//! run afterwards, so no two `Rtc`s are borrowed at once.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, Span, debug, info, info_span, warn};

use super::direct::{self, DirectEgress, RtcpSummary};
use super::dtls::KeySlot;
use super::outbox::Outbox;
use super::telemetry::{SessionSnapshot, SessionTelemetry};
use super::udp::{MediaSocket, Received, RecvBuffers};
use super::{MediaCounters, WorkerConfig};
use crate::config::ForwardHold;
use crate::core::{
    CodecKind, Fanout, FanoutStats, Forward, HoldControl, KeyframeCache, KeyframeLimiter,
    KeyframeMode, KeyframeSource, NACK_HISTORY_PACKETS, NackHistory, SenderClock, SourcePacket,
    ViewerId, ViewerTrack, hold, is_keyframe_start,
};
use crate::directory::StreamStats;
use crate::directory::{Directory, Stream};
use crate::model::{EndReason, SessionState};
use crate::model::{Role, SessionId};
use crate::sdp::frag::{IceFragment, first_ufrag, offer_with_credentials, restart_answer_fragment};
use crate::wire::{demux, stun};

/// How often a worker checks connect/ICE timeouts and retries keyframe requests.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Remote addresses remembered per session for routing non-STUN datagrams.
const MAX_ADDRS: usize = 8;
/// A viewer still waiting for a keyframe asks again after this long.
const KEYFRAME_RETRY: Duration = Duration::from_secs(1);

/// Commands to a worker.
pub enum WorkerMsg {
    /// Adopt a negotiated session.
    Add(Box<NewSession>),
    /// End a session (DELETE, API kick); replies whether it existed.
    Close {
        /// Which.
        id: SessionId,
        /// Why, for the summary line and metrics.
        reason: EndReason,
        /// Answer.
        reply: oneshot::Sender<bool>,
    },
    /// Trickle candidates or an ICE restart (HTTP PATCH).
    Patch {
        /// Which session.
        id: SessionId,
        /// The parsed fragment.
        frag: IceFragment,
        /// Answer.
        reply: oneshot::Sender<Result<PatchOutcome, PatchError>>,
    },
    /// A source packet from another worker's publisher.
    Packet {
        /// The stream.
        stream: Arc<Stream>,
        /// The packet, shared.
        pkt: Arc<SourcePacket>,
    },
    /// A viewer on another worker wants a keyframe from this worker's publisher.
    KeyframeRequest {
        /// Stream name.
        stream: Arc<str>,
    },
    /// The stream ended (grace period over, stopped): close its viewers here.
    EndStream {
        /// Stream name.
        stream: Arc<str>,
        /// Why.
        reason: EndReason,
    },
    /// Report the sessions (of one stream, or all).
    Sessions {
        /// Only this stream's, when given.
        stream: Option<Arc<str>>,
        /// Only publishers.
        publishers_only: bool,
        /// Answer.
        reply: oneshot::Sender<Vec<SessionSnapshot>>,
    },
    /// Report internal counts.
    Stats {
        /// Answer.
        reply: oneshot::Sender<WorkerStats>,
    },
    /// Close everything and stop.
    Shutdown {
        /// Answered when done.
        reply: oneshot::Sender<()>,
    },
}

/// What a PATCH did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchOutcome {
    /// Candidates were added (or dropped as unusable): 204.
    Trickled,
    /// ICE restarted: 200 with this fragment (the server's new credentials).
    Restarted {
        /// The `application/trickle-ice-sdpfrag` body.
        fragment: String,
    },
}

/// Why a PATCH failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The session is gone.
    #[error("no such session")]
    UnknownSession,
    /// The restart could not be negotiated; the current ICE session stays.
    #[error("ICE restart failed: {0}")]
    RestartFailed(String),
}

/// A worker's internal counts, for leak checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Worker index.
    pub index: usize,
    /// Sessions owned.
    pub sessions: usize,
    /// Remote-address routing entries.
    pub routes: usize,
    /// ufrag routing entries.
    pub ufrags: usize,
    /// Pending session timers.
    pub timers: usize,
    /// Viewers in the fan-out.
    pub viewers: usize,
    /// Publishers hosted.
    pub publishers: usize,
}

/// A publisher track as the worker needs it.
#[derive(Debug, Clone)]
pub struct PublishedTrack {
    /// Audio or video.
    pub kind: MediaKind,
    /// Its mid in the publisher's session.
    pub mid: Mid,
    /// The payload type the publisher uses.
    pub pt: u8,
    /// The payload type the stream's viewers know this codec by.
    pub canonical_pt: u8,
    /// Codec family, for keyframe detection.
    pub codec: CodecKind,
    /// How to ask this publisher for a keyframe, if it negotiated a way.
    pub keyframe_request: Option<KeyframeRequestKind>,
}

/// What a new session is.
pub enum NewRole {
    /// The source of its stream.
    Publisher {
        /// Source generation.
        epoch: u32,
        /// Its tracks.
        tracks: Vec<PublishedTrack>,
    },
    /// A viewer.
    Viewer {
        /// Rewriting set-up per track.
        tracks: Vec<ViewerTrack>,
        /// Where its DTLS engine leaves the SRTP keys, for the direct egress path
        /// (None: str0m's send path).
        keys: Option<KeySlot>,
    },
}

/// A negotiated session handed to a worker.
pub struct NewSession {
    /// Id.
    pub id: SessionId,
    /// The negotiated `Rtc`.
    pub rtc: Rtc,
    /// Our ICE ufrag, to route the first STUN request.
    pub ufrag: String,
    /// The client's offer, kept to renegotiate an ICE restart.
    pub offer: String,
    /// Its stream.
    pub shared: Arc<Stream>,
    /// Publisher or viewer.
    pub role: NewRole,
}

enum RoleState {
    Publisher {
        epoch: u32,
        tracks: Vec<PublishedTrack>,
        limiter: KeyframeLimiter,
        /// The publisher's wall clock from its sender reports (audio/video sync).
        clock: SenderClock,
        /// Ask this source for keyframes, or start viewers from the cache.
        keyframes: KeyframeSource,
    },
    Viewer {
        tracks: Vec<ViewerTrack>,
        joined: bool,
        /// The video resend window, following the viewer's round-trip time.
        nack: NackHistory,
    },
}

struct Session {
    id: SessionId,
    rtc: Rtc,
    role: RoleState,
    shared: Arc<Stream>,
    ufrag: String,
    offer: String,
    remote_ufrag: String,
    span: Span,
    created: Instant,
    connected: bool,
    disconnected_since: Option<Instant>,
    timer: Instant,
    addrs: Vec<SocketAddr>,
    telemetry: SessionTelemetry,
    /// Viewers on the direct egress path: its keys until connected, then its state.
    keys: Option<KeySlot>,
    direct: Option<Box<DirectEgress>>,
    /// Our address and the peer's on the candidate pair in use: where the peer's
    /// latest DTLS or SRTP came from and str0m's latest went to (str0m does not
    /// expose its nominated pair).
    path: Option<(IpAddr, SocketAddr)>,
}

/// Which stream's `packets_out`/`bytes_out` a batch of forwards adds to.
#[derive(Clone, Copy)]
enum StreamCount<'a> {
    /// Already counted when the forwards were made (`fan_out_local`).
    Counted,
    /// All of one stream.
    Stream(&'a StreamStats),
    /// Paced groups mix streams: each viewer's run counts for the stream it watches.
    PerViewer,
}

/// Effects on other sessions, queued while one `Rtc` is drained.
enum Deferred {
    Source(Arc<Stream>, Arc<SourcePacket>),
    WantKeyframe(Arc<Stream>),
    /// A viewer (by key) asked for a keyframe.
    ViewerKeyframe(u64, Arc<Stream>),
    Connected(u64),
    Close(u64, EndReason),
}

/// What a worker shares with the rest of the server.
#[derive(Clone)]
pub(super) struct WorkerLinks {
    /// Every worker's command queue, by index.
    pub peers: Arc<[mpsc::Sender<WorkerMsg>]>,
    pub directory: Arc<Directory>,
    pub counters: Arc<MediaCounters>,
    pub cfg: WorkerConfig,
    /// Closed when `Media` is dropped.
    pub alive: watch::Receiver<()>,
}

pub(super) struct Worker {
    index: usize,
    socket: MediaSocket,
    rx: mpsc::Receiver<WorkerMsg>,
    peers: Arc<[mpsc::Sender<WorkerMsg>]>,
    directory: Arc<Directory>,
    counters: Arc<MediaCounters>,
    cfg: WorkerConfig,
    /// Boxed: a session is about 11 KiB inline, so the map's spare slots and its
    /// rehash copies would otherwise cost that much per empty or moved slot.
    sessions: HashMap<u64, Box<Session>>,
    next_key: u64,
    by_id: HashMap<SessionId, u64>,
    by_addr: HashMap<SocketAddr, u64>,
    by_ufrag: HashMap<String, u64>,
    publishers: HashMap<Arc<str>, u64>,
    timers: BTreeSet<(Instant, u64)>,
    fanout: Fanout,
    deferred: VecDeque<Deferred>,
    /// Forwards of the source packets handled since the last write (see `run_deferred`).
    forwards: Vec<Forward>,
    /// Arrival of each source packet in `forwards`, for the forwarding latency.
    pending_arrivals: Vec<Instant>,
    /// When the forwards now held began to wait (`forward_hold`).
    held_since: Option<Instant>,
    /// How long they wait: fixed, or following this worker's load.
    hold: HoldControl,
    /// Datagrams waiting to leave as GSO runs in one `sendmmsg`.
    outbox: Outbox,
    /// Transmits collect in `outbox` until `write_forwards` or `handle_timers`
    /// flushes it (or it fills up).
    batching: bool,
    /// Fan-out drop counts already added to the shared counters.
    fanout_flushed: FanoutStats,
    /// One protected datagram of the direct egress path at a time.
    datagram: Vec<u8>,
    /// Streams where a viewer asked for a keyframe while the source was silent: the
    /// source is asked when its next packet arrives here.
    held_keyframes: HashSet<Arc<str>>,
    /// Closed when `Media` is dropped: the worker stops.
    alive: watch::Receiver<()>,
}

impl Worker {
    pub(super) fn new(
        index: usize,
        socket: MediaSocket,
        rx: mpsc::Receiver<WorkerMsg>,
        links: WorkerLinks,
    ) -> Worker {
        let WorkerLinks {
            peers,
            directory,
            counters,
            cfg,
            alive,
        } = links;
        let hold = match cfg.forward_hold {
            ForwardHold::Fixed(d) => HoldControl::fixed(d),
            ForwardHold::Auto => HoldControl::following_load(hold::AUTO_MAX),
        };
        Worker {
            index,
            socket,
            rx,
            peers,
            directory,
            counters,
            cfg,
            sessions: HashMap::new(),
            next_key: 1,
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            publishers: HashMap::new(),
            timers: BTreeSet::new(),
            fanout: Fanout::new(),
            deferred: VecDeque::new(),
            forwards: Vec::new(),
            pending_arrivals: Vec::new(),
            held_since: None,
            hold,
            outbox: Outbox::new(),
            batching: false,
            fanout_flushed: FanoutStats::default(),
            datagram: Vec::with_capacity(1500),
            held_keyframes: HashSet::new(),
            alive,
        }
    }

    /// The worker loop, inside its `worker` span. The span is attached to the future
    /// (not entered across an await), so it never leaks into other tasks' log lines.
    pub(super) async fn run(self) {
        let span = info_span!("worker", index = self.index);
        self.run_loop().instrument(span).await
    }

    async fn run_loop(mut self) {
        let mut bufs = RecvBuffers::new();
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let far = Duration::from_secs(3600);
        loop {
            let next = self
                .timers
                .first()
                .map(|(t, _)| *t)
                .unwrap_or_else(|| Instant::now() + far);
            // Paced bursts to viewers (a cached group of pictures) wake the loop too,
            // and so does the end of a forward hold.
            let next = self.fanout.paced_timeout().map_or(next, |p| p.min(next));
            let next = self
                .held_since
                .map_or(next, |h| (h + self.hold.hold()).min(next));
            // From each wake-up to the next wait: the load the hold follows.
            let woke: Instant;
            tokio::select! {
                biased;
                msg = self.rx.recv() => {
                    woke = Instant::now();
                    let Some(msg) = msg else { break };
                    // Take what else is queued (up to 64 more) without going back to
                    // the scheduler.
                    let mut next = Some(msg);
                    let mut handled = 0;
                    while let Some(msg) = next.take() {
                        if let Some(reply) = self.handle_msg(msg) {
                            self.close_all(EndReason::Shutdown);
                            let _ = reply.send(());
                            return;
                        }
                        handled += 1;
                        if handled <= 64 {
                            next = self.rx.try_recv().ok();
                        }
                    }
                    // Source packets from other workers were fanned out as a batch.
                    self.release_paced(Instant::now());
                    self.run_deferred(Instant::now());
                    // `biased` serves commands first; a worker that receives a steady
                    // stream of other workers' packets would then never read its socket
                    // or run its timers, and its viewers' ICE would time out. So read
                    // what is waiting and run due timers after every batch.
                    if self.socket.try_recv(&mut bufs).is_ok() {
                        let now = Instant::now();
                        for (r, data) in bufs.datagrams() {
                            self.handle_datagram(now, r, data);
                        }
                        self.run_deferred(now);
                    }
                    if self.timers.first().is_some_and(|(t, _)| *t <= Instant::now()) {
                        self.handle_timers(Instant::now());
                    }
                }
                r = self.socket.readable() => {
                    woke = Instant::now();
                    if r.is_err() { continue; }
                    loop {
                        match self.socket.try_recv(&mut bufs) {
                            Ok(()) => {
                                let now = Instant::now();
                                for (r, data) in bufs.datagrams() {
                                    self.handle_datagram(now, r, data);
                                }
                                self.run_deferred(now);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => { debug!("udp recv error: {e}"); break; }
                        }
                    }
                }
                _ = tokio::time::sleep_until(next.into()) => {
                    woke = Instant::now();
                    // Ends in `run_deferred`, which writes held forwards once due.
                    self.handle_timers(Instant::now());
                }
                _ = housekeeping.tick() => {
                    woke = Instant::now();
                    if self.alive.has_changed().is_err() {
                        // `Media` is gone (dropped without a shutdown).
                        self.close_all(EndReason::Shutdown);
                        return;
                    }
                    self.housekeeping(Instant::now());
                }
            }
            self.hold.busy(woke, Instant::now());
        }
    }

    /// Returns the shutdown reply when the worker must stop.
    fn handle_msg(&mut self, msg: WorkerMsg) -> Option<oneshot::Sender<()>> {
        let now = Instant::now();
        match msg {
            WorkerMsg::Add(s) => self.add_session(*s, now),
            WorkerMsg::Close { id, reason, reply } => {
                let existed = match self.by_id.get(&id) {
                    Some(&key) => {
                        self.close_session(key, reason, now);
                        true
                    }
                    None => false,
                };
                let _ = reply.send(existed);
            }
            WorkerMsg::Patch { id, frag, reply } => {
                let result = match self.by_id.get(&id) {
                    Some(&key) => self.patch(key, frag, now),
                    None => Err(PatchError::UnknownSession),
                };
                let _ = reply.send(result);
            }
            WorkerMsg::Packet { stream, pkt } => {
                // A worker behind on its queue drops what waited too long rather than
                // making every viewer ever later (the queue holds seconds of media).
                if now.saturating_duration_since(pkt.arrival) > self.cfg.forward_max_delay {
                    self.counters
                        .stale_source_packets
                        .fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                // Written with the rest of the batch by the run loop's `run_deferred`.
                self.fan_out_local(&stream, &pkt);
                return None;
            }
            WorkerMsg::Sessions {
                stream,
                publishers_only,
                reply,
            } => {
                let list = self
                    .sessions
                    .values_mut()
                    .filter(|s| stream.as_ref().is_none_or(|n| *n == s.shared.name))
                    .filter(|s| !publishers_only || matches!(s.role, RoleState::Publisher { .. }))
                    .map(|s| {
                        s.telemetry
                            .snapshot(s.id, s.shared.name.clone(), s.created, now)
                    })
                    .collect();
                let _ = reply.send(list);
            }
            WorkerMsg::KeyframeRequest { stream } => self.request_keyframe_local(&stream, now),
            WorkerMsg::EndStream { stream, reason } => {
                let keys: Vec<u64> = self
                    .sessions
                    .iter()
                    .filter(|(_, s)| {
                        matches!(s.role, RoleState::Viewer { .. }) && s.shared.name == stream
                    })
                    .map(|(k, _)| *k)
                    .collect();
                for key in keys {
                    self.close_session(key, reason, now);
                }
            }
            WorkerMsg::Stats { reply } => {
                let _ = reply.send(WorkerStats {
                    index: self.index,
                    sessions: self.sessions.len(),
                    routes: self.by_addr.len(),
                    ufrags: self.by_ufrag.len(),
                    timers: self.timers.len(),
                    viewers: self.fanout.len(),
                    publishers: self.publishers.len(),
                });
            }
            WorkerMsg::Shutdown { reply } => return Some(reply),
        }
        // A busy queue must not hold back paced bursts (the timer branch may wait).
        self.release_paced(now);
        self.run_deferred(now);
        None
    }

    fn add_session(&mut self, mut new: NewSession, now: Instant) {
        if let NewRole::Viewer { tracks, keys: None } = &new.role {
            // str0m's default resend history (3 s, 2000 packets) costs a few hundred
            // KiB per viewer; see `NackHistory`. The direct path keeps its own.
            set_nack_history(&mut new.rtc, tracks, NackHistory::default().window());
        }
        let key = self.next_key;
        self.next_key += 1;
        let session_kind = match new.role {
            NewRole::Publisher { .. } => Role::Publisher,
            NewRole::Viewer { .. } => Role::Viewer,
        };
        let kind = session_kind.noun();
        let span = info_span!("session", id = %new.id, stream = %new.shared.name, kind);
        let mut keys = None;
        let role = match new.role {
            NewRole::Publisher { epoch, tracks } => {
                self.publishers.insert(new.shared.name.clone(), key);
                let can_be_asked = tracks
                    .iter()
                    .any(|t| t.kind == MediaKind::Video && t.keyframe_request.is_some());
                let keyframes = KeyframeSource::from_offer(can_be_asked);
                let cache = match keyframes.mode() {
                    KeyframeMode::Cache => video_keyframe_cache(&tracks, self.cfg.source_silence),
                    KeyframeMode::Request => None,
                };
                if cache.is_some() {
                    span.in_scope(|| {
                        info!("no PLI/FIR offered: viewers start from the keyframe cache")
                    });
                }
                new.shared.set_keyframe_cache(cache);
                RoleState::Publisher {
                    epoch,
                    tracks,
                    limiter: KeyframeLimiter::new(self.cfg.keyframe_request_interval),
                    clock: SenderClock::default(),
                    keyframes,
                }
            }
            NewRole::Viewer { tracks, keys: k } => {
                keys = k;
                RoleState::Viewer {
                    tracks,
                    joined: false,
                    nack: NackHistory::default(),
                }
            }
        };
        span.in_scope(|| info!("session created on worker {}", self.index));
        self.by_id.insert(new.id, key);
        self.by_ufrag.insert(new.ufrag.clone(), key);
        self.sessions.insert(
            key,
            Box::new(Session {
                id: new.id,
                rtc: new.rtc,
                role,
                shared: new.shared,
                ufrag: new.ufrag,
                remote_ufrag: first_ufrag(&new.offer).unwrap_or_default().to_owned(),
                offer: new.offer,
                span,
                created: now,
                connected: false,
                disconnected_since: None,
                timer: now,
                addrs: Vec::new(),
                telemetry: SessionTelemetry::new(session_kind, self.counters.clone(), now),
                keys,
                direct: None,
                path: None,
            }),
        );
        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
        self.counters
            .sessions_created
            .fetch_add(1, Ordering::Relaxed);
        self.timers.insert((now, key));
        self.drive(key, now, |rtc| {
            rtc.handle_input(Input::Timeout(now)).map(|_| ())
        });
    }

    /// Trickle ICE or an ICE restart on one session (RFC 9725 §4.3).
    fn patch(
        &mut self,
        key: u64,
        frag: IceFragment,
        now: Instant,
    ) -> Result<PatchOutcome, PatchError> {
        let Some(s) = self.sessions.get_mut(&key) else {
            return Err(PatchError::UnknownSession);
        };
        let restart = frag.is_restart(&s.remote_ufrag);
        let mut outcome = PatchOutcome::Trickled;
        if restart {
            let (Some(ufrag), Some(pwd)) = (frag.ufrag.clone(), frag.pwd.clone()) else {
                return Err(PatchError::RestartFailed("no credentials".into()));
            };
            let new_offer = offer_with_credentials(&s.offer, &ufrag, &pwd);
            let offer = SdpOffer::from_sdp_string(&new_offer)
                .map_err(|e| PatchError::RestartFailed(e.to_string()))?;
            let rtc = &mut s.rtc;
            let answer = std::panic::catch_unwind(AssertUnwindSafe(|| {
                rtc.sdp_api().accept_offer(offer).map(|a| a.to_sdp_string())
            }))
            .map_err(|_| PatchError::RestartFailed("internal error".into()))?
            .map_err(|e| PatchError::RestartFailed(e.to_string()))?;
            let local = s.rtc.direct_api().local_ice_credentials().ufrag;
            self.by_ufrag.remove(&s.ufrag);
            self.by_ufrag.insert(local.clone(), key);
            s.ufrag = local;
            s.remote_ufrag = ufrag;
            s.offer = new_offer;
            s.span.in_scope(|| info!("ICE restarted"));
            outcome = PatchOutcome::Restarted {
                fragment: restart_answer_fragment(&answer),
            };
        }
        for line in frag.candidates {
            // Unusable candidates (mDNS names, TCP, unknown types) are dropped silently.
            let Ok(c) = Candidate::from_sdp_string(&line) else {
                continue;
            };
            self.drive(key, now, move |rtc| {
                rtc.add_remote_candidate(c);
                Ok(())
            });
        }
        self.drive(key, now, |rtc| {
            rtc.handle_input(Input::Timeout(now)).map(|_| ())
        });
        self.run_deferred(now);
        Ok(outcome)
    }

    fn handle_datagram(&mut self, now: Instant, r: Received, data: &[u8]) {
        // A STUN request naming one of our ufrags belongs to that session wherever it
        // comes from: after an ICE restart a client may use a new address, and its
        // old one may come back as another client's.
        let by_ufrag = stun::local_ufrag(data).and_then(|u| self.by_ufrag.get(u).copied());
        let key = by_ufrag.or_else(|| self.by_addr.get(&r.source).copied());
        let Some(key) = key else {
            self.counters
                .unroutable_datagrams
                .fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Ok(recv) = Receive::new(Protocol::Udp, r.source, r.destination, data) else {
            return;
        };
        if let Some(s) = self.sessions.get_mut(&key) {
            s.telemetry.bytes_in += data.len() as u64;
            s.telemetry.peer = Some(r.source);
            if demux::is_media_path(data) {
                s.path = Some((r.destination.ip(), r.source));
            }
            // A connected viewer's SRTCP is read by the direct path only: str0m would
            // decrypt and parse it a second time for nothing it still needs.
            if s.direct.is_some() && demux::is_rtcp(data) {
                if direct_rtcp(s, data, now, &self.socket, &mut self.outbox, &self.counters) {
                    viewer_asked_keyframe(key, s, &mut self.deferred);
                }
                if !self.batching {
                    self.outbox.flush(&self.socket);
                }
                return;
            }
        }
        if by_ufrag.is_some() {
            self.learn_address(key, r.source);
        }
        self.drive(key, now, move |rtc| {
            rtc.handle_input(Input::Receive(now, recv)).map(|_| ())
        });
    }

    /// Routes `addr` to session `key` from now on. Each session keeps its last
    /// [`MAX_ADDRS`] addresses; older ones and addresses another session had are
    /// unlearned, so nothing stale outlives an address change.
    fn learn_address(&mut self, key: u64, addr: SocketAddr) {
        if self.by_addr.get(&addr) == Some(&key) {
            return;
        }
        if let Some(prev) = self.by_addr.insert(addr, key)
            && let Some(other) = self.sessions.get_mut(&prev)
        {
            other.addrs.retain(|a| *a != addr);
        }
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        s.addrs.retain(|a| *a != addr);
        if s.addrs.len() >= MAX_ADDRS {
            let old = s.addrs.remove(0);
            if self.by_addr.get(&old) == Some(&key) {
                self.by_addr.remove(&old);
            }
        }
        s.addrs.push(addr);
    }

    /// Writes the paced packets (cached groups going to viewers) whose turn has come.
    fn release_paced(&mut self, now: Instant) {
        if self.fanout.paced_timeout().is_none_or(|t| t > now) {
            return;
        }
        // Not `self.forwards`: that holds live forwards still to be written.
        let mut forwards = Vec::new();
        self.fanout.poll_paced(now, &mut forwards);
        // Paced groups mix streams: each viewer's packets count for its own stream.
        self.write_forwards(&mut forwards, StreamCount::PerViewer);
    }

    fn handle_timers(&mut self, now: Instant) {
        self.release_paced(now);
        // The due sessions' datagrams (RTCP reports, STUN checks) leave together.
        self.batching = true;
        while let Some(&(t, key)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, key));
            if let Some(Session {
                role:
                    RoleState::Publisher {
                        limiter, tracks, ..
                    },
                ..
            }) = self.sessions.get_mut(&key).map(Box::as_mut)
                && limiter.handle_timeout(now)
            {
                let tracks = tracks.clone();
                self.send_keyframe_request(key, &tracks, now);
            }
            if let Some(s) = self.sessions.get_mut(&key)
                && let Some(d) = s.direct.as_deref_mut()
                && d.poll_timeout() <= now
            {
                let mut bytes = 0;
                d.handle_timeout(
                    now,
                    on_path(s.path, &self.socket, &mut self.outbox, &mut bytes),
                );
                s.telemetry.bytes_out += bytes;
            }
            self.drive(key, now, |rtc| {
                rtc.handle_input(Input::Timeout(now)).map(|_| ())
            });
        }
        self.batching = false;
        self.outbox.flush(&self.socket);
        self.run_deferred(now);
    }

    fn housekeeping(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (key, s) in &self.sessions {
            if !s.rtc.is_alive() {
                expired.push((*key, EndReason::PeerClosed));
            } else if !s.connected && now.duration_since(s.created) > self.cfg.connect_timeout {
                expired.push((*key, EndReason::ConnectTimeout));
            } else if let Some(since) = s.disconnected_since
                && now.duration_since(since) > self.cfg.ice_timeout
            {
                expired.push((*key, EndReason::IceTimeout));
            }
        }
        for s in self.sessions.values_mut() {
            s.telemetry.flush();
        }
        self.flush_fanout_drops();
        let sent = self.outbox.take_sent();
        let c = &self.counters;
        c.udp_datagrams_out
            .fetch_add(sent.datagrams, Ordering::Relaxed);
        c.udp_send_calls.fetch_add(sent.calls, Ordering::Relaxed);
        let w = &c.workers;
        if let (Some(load), Some(hold)) = (w.load_ppm.get(self.index), w.hold_ns.get(self.index)) {
            load.store((self.hold.load() * 1e6) as u64, Ordering::Relaxed);
            let ns = u64::try_from(self.hold.hold().as_nanos()).unwrap_or(u64::MAX);
            hold.store(ns, Ordering::Relaxed);
        }
        for (key, reason) in expired {
            self.close_session(key, reason, now);
        }
        for s in self.sessions.values_mut() {
            if let RoleState::Publisher {
                keyframes, tracks, ..
            } = &mut s.role
                && keyframes.handle_timeout(now)
            {
                s.span.in_scope(|| {
                    info!("keyframe request unanswered: viewers start from the keyframe cache")
                });
                s.shared
                    .set_keyframe_cache(video_keyframe_cache(tracks, self.cfg.source_silence));
            }
        }
        for stream in self.fanout.keyframes_wanted(now, KEYFRAME_RETRY) {
            if let Some(shared) = self.find_stream(&stream) {
                self.deferred.push_back(Deferred::WantKeyframe(shared));
            }
        }
        self.run_deferred(now);
    }

    fn find_stream(&self, name: &str) -> Option<Arc<Stream>> {
        self.sessions
            .values()
            .find(|s| &*s.shared.name == name)
            .map(|s| s.shared.clone())
    }

    /// Applies one mutation to a session's `Rtc` and drains its output, catching panics.
    fn drive<F>(&mut self, key: u64, now: Instant, mutate: F)
    where
        F: FnOnce(&mut Rtc) -> Result<(), str0m::RtcError>,
    {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        let socket = &self.socket;
        let deferred = &mut self.deferred;
        let outbox = &mut self.outbox;
        // Entering the session span costs a subscriber registry lookup per packet and viewer; only
        // debug logging (str0m's included) needs it.
        let span = (tracing::level_filters::LevelFilter::current()
            >= tracing::level_filters::LevelFilter::DEBUG)
            .then(|| s.span.clone());
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let _e = span.as_ref().map(Span::enter);
            if let Err(e) = mutate(&mut s.rtc) {
                debug!("rtc input refused: {e}");
            }
            drain(key, s, socket, outbox, deferred, now)
        }));
        if !self.batching {
            self.outbox.flush(&self.socket);
        }
        let next = match outcome {
            Ok(Ok(next)) => next,
            Ok(Err(e)) => {
                s.span.in_scope(|| debug!("rtc error: {e}"));
                self.deferred
                    .push_back(Deferred::Close(key, EndReason::Failed));
                return;
            }
            Err(_) => {
                self.counters.session_panics.fetch_add(1, Ordering::Relaxed);
                s.span
                    .in_scope(|| warn!("str0m panicked; dropping this session only"));
                self.deferred
                    .push_back(Deferred::Close(key, EndReason::InternalError));
                return;
            }
        };
        let mut next = next;
        if let RoleState::Publisher { limiter, .. } = &s.role
            && let Some(t) = limiter.poll_timeout()
        {
            next = next.min(t);
        }
        if let Some(d) = &s.direct {
            next = next.min(d.poll_timeout().max(now));
        }
        if next != s.timer {
            self.timers.remove(&(s.timer, key));
            s.timer = next;
            self.timers.insert((next, key));
        }
    }

    fn run_deferred(&mut self, now: Instant) {
        loop {
            self.run_deferred_once(now);
            if self.forwards.is_empty() {
                return;
            }
            // With a hold, forwards wait for it to end (the loop's timer comes back),
            // and each viewer's packets of that time leave as one GSO run.
            let hold = self.hold.hold();
            if !hold.is_zero() {
                let since = *self.held_since.get_or_insert(now);
                if Instant::now() < since + hold {
                    return;
                }
            }
            self.held_since = None;
            // Writing may queue more deferred effects (a viewer's events).
            let mut forwards = std::mem::take(&mut self.forwards);
            self.write_forwards(&mut forwards, StreamCount::Counted);
            self.forwards = forwards;
            // Arrival at the worker to the hand-over for this worker's last viewer.
            for arrival in self.pending_arrivals.drain(..) {
                self.counters
                    .histograms
                    .forward_latency
                    .observe_duration(arrival.elapsed());
            }
        }
    }

    fn run_deferred_once(&mut self, now: Instant) {
        while let Some(d) = self.deferred.pop_front() {
            match d {
                Deferred::Source(shared, pkt) => self.distribute(&shared, pkt),
                Deferred::WantKeyframe(shared) => match shared.source_worker() {
                    Some(w) if w == self.index => self.request_keyframe_local(&shared.name, now),
                    Some(w) => {
                        if let Some(tx) = self.peers.get(w) {
                            let _ = tx.try_send(WorkerMsg::KeyframeRequest {
                                stream: shared.name.clone(),
                            });
                        }
                    }
                    None => {}
                },
                Deferred::ViewerKeyframe(key, shared) => {
                    if shared
                        .stats
                        .silent_since(now, self.cfg.source_silence)
                        .is_some()
                    {
                        // The viewer keeps its last picture: no stale one from the
                        // cache, no request to a source that sends nothing. The
                        // source is asked when it sends again; a new source starts
                        // the viewer at its first keyframe anyway.
                        self.counters
                            .keyframe_requests_held
                            .fetch_add(1, Ordering::Relaxed);
                        self.held_keyframes.insert(shared.name.clone());
                        continue;
                    }
                    self.viewer_keyframe(key, &shared, now);
                    if shared.source_worker().is_some() {
                        self.deferred.push_back(Deferred::WantKeyframe(shared));
                    }
                }
                Deferred::Connected(key) => self.on_connected(key, now),
                Deferred::Close(key, reason) => self.close_session(key, reason, now),
            }
        }
    }

    fn on_connected(&mut self, key: u64, now: Instant) {
        let Some(s) = self.sessions.get_mut(&key) else {
            return;
        };
        s.connected = true;
        s.disconnected_since = None;
        s.telemetry.set_state(SessionState::Connected);
        let elapsed = now.duration_since(s.created);
        s.span
            .in_scope(|| info!(setup_ms = elapsed.as_millis() as u64, "connected"));
        start_direct(s, now);
        if let RoleState::Viewer { tracks, joined, .. } = &mut s.role {
            if *joined {
                return;
            }
            *joined = true;
            let shared = s.shared.clone();
            let tracks = tracks.clone();
            // Every source packet reaches this viewer from the cache, live, or both
            // (the ordering rule of `Stream`).
            let prefix = shared.join(self.index, now);
            // Not `self.forwards`: that holds live forwards still to be written.
            let mut forwards = Vec::new();
            let wants_keyframe = self.fanout.add_viewer_with_prefix(
                &shared.name,
                ViewerId(key),
                tracks,
                &prefix,
                now,
                &mut forwards,
            );
            if !forwards.is_empty() {
                self.counters
                    .keyframe_cache_starts
                    .fetch_add(1, Ordering::Relaxed);
                debug!(
                    packets = forwards.len(),
                    "viewer starts from the keyframe cache"
                );
            }
            self.write_forwards(&mut forwards, StreamCount::Stream(&shared.stats));
            if wants_keyframe {
                self.deferred.push_back(Deferred::WantKeyframe(shared));
            }
        }
    }

    /// A viewer's keyframe request, when its stream keeps a keyframe cache (a camera,
    /// which cannot be asked): the viewer gets the cached group again, rate-limited.
    fn viewer_keyframe(&mut self, key: u64, shared: &Stream, now: Instant) {
        let group = shared.keyframe_group(now);
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

    /// Sends a source packet to every worker with viewers of its stream.
    fn distribute(&mut self, shared: &Arc<Stream>, pkt: Arc<SourcePacket>) {
        let local = super::send_to_viewer_workers(
            &self.peers,
            shared,
            &pkt,
            &self.counters,
            Some(self.index),
        );
        if local {
            self.fan_out_local(shared, &pkt);
        }
    }

    /// Queues the forwards of one source packet; `run_deferred` writes them with the
    /// rest of the batch. The stream's counters are added here (the batch may mix
    /// streams), the forwarding latency once the batch is written.
    fn fan_out_local(&mut self, shared: &Arc<Stream>, pkt: &SourcePacket) {
        if !self.held_keyframes.is_empty() && self.held_keyframes.remove(&shared.name) {
            self.deferred
                .push_back(Deferred::WantKeyframe(shared.clone()));
        }
        let before = self.forwards.len();
        self.fanout.forward(&shared.name, pkt, &mut self.forwards);
        let n = (self.forwards.len() - before) as u64;
        if n > 0 {
            shared.stats.add_out(n, n * pkt.payload.len() as u64);
            self.pending_arrivals.push(pkt.arrival);
        }
    }

    /// Writes forwards viewer by viewer (each viewer's in source order): one `drive`
    /// per viewer writes all its packets of the batch and hands str0m the time at once
    /// (str0m releases written packets only on a timeout input), so the datagrams of
    /// one viewer leave together as a GSO run, and the runs of many viewers in one
    /// `sendmmsg` (see [`Outbox`]), without a trip through
    /// the timer set per packet. Shared counters get one add per call, not one per
    /// viewer.
    fn write_forwards(&mut self, forwards: &mut Vec<Forward>, count: StreamCount<'_>) {
        // Stable: a viewer's packets keep their order.
        forwards.sort_by_key(|f| f.viewer);
        self.batching = true;
        let (mut packets, mut bytes) = (0u64, 0u64);
        let now = Instant::now();
        let mut rest = forwards.drain(..).peekable();
        let mut run = Vec::new();
        while let Some(first) = rest.next() {
            let key = first.viewer.0;
            run.push(first);
            while let Some(f) = rest.next_if(|f| f.viewer.0 == key) {
                run.push(f);
            }
            let run_bytes = run.iter().map(|f| f.payload.len() as u64).sum::<u64>();
            packets += run.len() as u64;
            bytes += run_bytes;
            if let Some(s) = self.sessions.get_mut(&key) {
                s.telemetry.packets_out += run.len() as u64;
                if let StreamCount::PerViewer = count {
                    s.shared.stats.add_out(run.len() as u64, run_bytes);
                }
                // The direct path: protected here, batched in the outbox, no `Rtc`.
                if let (Some(d), Some((src, dst))) = (s.direct.as_deref_mut(), s.path) {
                    for f in run.drain(..) {
                        match d.send(&f, now, &mut self.datagram) {
                            Ok(()) => {
                                s.telemetry.bytes_out += self.datagram.len() as u64;
                                self.outbox.push(&self.socket, src, dst, &self.datagram);
                            }
                            Err(e) => s.span.in_scope(|| debug!("direct send refused: {e}")),
                        }
                    }
                    continue;
                }
            }
            let run = &mut run;
            self.drive(key, now, move |rtc| {
                let mut api = rtc.direct_api();
                for f in run.drain(..) {
                    if let Some(tx) = api.stream_tx_by_mid(f.mid, None) {
                        tx.write_rtp(
                            RtpWrite::new(
                                Pt::from(f.pt),
                                f.seq.into(),
                                f.timestamp,
                                f.wallclock,
                                f.payload,
                            )
                            .marker(f.marker)
                            .nackable(f.nackable),
                        );
                    }
                }
                rtc.handle_input(Input::Timeout(now))
            });
        }
        drop(rest);
        self.batching = false;
        self.outbox.flush(&self.socket);
        if packets > 0 {
            let c = &self.counters;
            c.forwarded_packets.fetch_add(packets, Ordering::Relaxed);
            c.forwarded_bytes.fetch_add(bytes, Ordering::Relaxed);
            if let StreamCount::Stream(stats) = count {
                stats.add_out(packets, bytes);
            }
        }
    }

    /// Adds the fan-out's drop counts since the last flush to the shared counters.
    fn flush_fanout_drops(&mut self) {
        let now = self.fanout.stats();
        let was = std::mem::replace(&mut self.fanout_flushed, now);
        let c = &self.counters;
        let add = |a: &std::sync::atomic::AtomicU64, n: u64, w: u64| {
            a.fetch_add(n.saturating_sub(w), Ordering::Relaxed);
        };
        add(
            &c.dropped_waiting_keyframe,
            now.dropped_waiting_keyframe,
            was.dropped_waiting_keyframe,
        );
        add(&c.dropped_no_pt, now.dropped_no_pt, was.dropped_no_pt);
        add(&c.dropped_too_old, now.dropped_too_old, was.dropped_too_old);
    }

    fn request_keyframe_local(&mut self, stream: &str, now: Instant) {
        let Some(&key) = self.publishers.get(stream) else {
            return;
        };
        let Some(Session {
            role: RoleState::Publisher {
                limiter, tracks, ..
            },
            ..
        }) = self.sessions.get_mut(&key).map(Box::as_mut)
        else {
            return;
        };
        if limiter.request(now) {
            let tracks = tracks.clone();
            self.send_keyframe_request(key, &tracks, now);
        } else {
            self.counters
                .keyframe_requests_coalesced
                .fetch_add(1, Ordering::Relaxed);
            // Coalesced: make sure the session timer covers the limiter's deadline.
            self.drive(key, now, |_| Ok(()));
        }
    }

    fn send_keyframe_request(&mut self, key: u64, tracks: &[PublishedTrack], now: Instant) {
        for t in tracks.iter().filter(|t| t.kind == MediaKind::Video) {
            let Some(kind) = t.keyframe_request else {
                continue;
            };
            if let Some(Session {
                role: RoleState::Publisher { keyframes, .. },
                ..
            }) = self.sessions.get_mut(&key).map(Box::as_mut)
            {
                keyframes.request_sent(now);
            }
            let mid = t.mid;
            self.counters
                .keyframe_requests_sent
                .fetch_add(1, Ordering::Relaxed);
            let by_kind = match kind {
                KeyframeRequestKind::Fir => &self.counters.fir_sent,
                _ => &self.counters.pli_sent,
            };
            by_kind.fetch_add(1, Ordering::Relaxed);
            self.drive(key, now, move |rtc| {
                if let Some(rx) = rtc.direct_api().stream_rx_by_mid(mid, None) {
                    rx.request_keyframe(kind);
                }
                Ok(())
            });
        }
    }

    /// The single teardown path: DELETE, kick, stop, timeouts, peer close, errors,
    /// grace expiry and shutdown all end a session here.
    fn close_session(&mut self, key: u64, reason: EndReason, now: Instant) {
        let Some(mut s) = self.sessions.remove(&key) else {
            return;
        };
        self.timers.remove(&(s.timer, key));
        self.by_id.remove(&s.id);
        self.by_ufrag.remove(&s.ufrag);
        for a in &s.addrs {
            if self.by_addr.get(a) == Some(&key) {
                self.by_addr.remove(a);
            }
        }
        // Tell the peer (DTLS close_notify, RTCP BYE) when we can; a panicking or dead
        // Rtc is just dropped. Datagrams still batched in the outbox (this peer's among
        // them) leave first, so the goodbye is the last thing the peer gets.
        self.outbox.flush(&self.socket);
        let socket = &self.socket;
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if s.rtc.is_alive() && s.rtc.close().is_ok() {
                for _ in 0..32 {
                    match s.rtc.poll_output() {
                        Ok(Output::Transmit(t)) => {
                            socket.send(t.source.ip(), t.destination, &t.contents)
                        }
                        Ok(Output::Event(_)) => {}
                        _ => break,
                    }
                }
            }
        }));
        match &s.role {
            RoleState::Publisher { .. } => {
                if self.publishers.get(&s.shared.name) == Some(&key) {
                    self.publishers.remove(&s.shared.name);
                }
            }
            RoleState::Viewer { .. } => {
                if self.fanout.remove_viewer(ViewerId(key)).is_some()
                    && self.fanout.viewer_count(&s.shared.name) == 0
                {
                    s.shared.leave(self.index);
                }
            }
        }
        self.directory.remove_session(s.id, now);
        self.counters.sessions.fetch_sub(1, Ordering::Relaxed);
        self.counters
            .sessions_closed
            .fetch_add(1, Ordering::Relaxed);
        let duration = now.saturating_duration_since(s.created);
        let span = s.span.clone();
        span.in_scope(|| s.telemetry.end(s.id, &s.shared.name, reason, duration));
    }

    fn close_all(&mut self, reason: EndReason) {
        let now = Instant::now();
        let keys: Vec<u64> = self.sessions.keys().copied().collect();
        for key in keys {
            self.close_session(key, reason, now);
        }
    }
}

/// Polls one `Rtc` until it asks for a timeout, sending its datagrams and queueing the
/// events that concern other sessions. Returns the next timeout.
fn drain(
    key: u64,
    s: &mut Session,
    socket: &MediaSocket,
    outbox: &mut Outbox,
    deferred: &mut VecDeque<Deferred>,
    now: Instant,
) -> Result<Instant, str0m::RtcError> {
    loop {
        match s.rtc.poll_output()? {
            Output::Timeout(t) => return Ok(t.max(now)),
            Output::Transmit(t) => {
                s.telemetry.bytes_out += t.contents.len() as u64;
                if demux::is_media_path(&t.contents) {
                    s.path = Some((t.source.ip(), t.destination));
                }
                outbox.push(socket, t.source.ip(), t.destination, &t.contents)
            }
            Output::Event(e) => handle_event(key, s, e, deferred, now),
        }
    }
}

fn handle_event(
    key: u64,
    s: &mut Session,
    event: Event,
    deferred: &mut VecDeque<Deferred>,
    now: Instant,
) {
    match event {
        Event::Connected => deferred.push_back(Deferred::Connected(key)),
        Event::IceConnectionStateChange(state) => {
            debug!(?state, "ice state");
            match state {
                IceConnectionState::Disconnected => {
                    s.disconnected_since.get_or_insert(now);
                    s.telemetry.set_state(SessionState::Disconnected);
                }
                IceConnectionState::Connected | IceConnectionState::Completed => {
                    s.disconnected_since = None;
                    if s.connected {
                        s.telemetry.set_state(SessionState::Connected);
                    }
                }
                _ => {}
            }
        }
        Event::RtpPacket(p) => {
            let RoleState::Publisher {
                epoch,
                tracks,
                limiter,
                clock,
                keyframes,
            } = &mut s.role
            else {
                return;
            };
            let pt = *p.header.payload_type;
            let Some(track) = tracks.iter().find(|t| t.pt == pt) else {
                return;
            };
            let keyframe_start = is_keyframe_start(track.codec, &p.payload);
            if keyframe_start {
                limiter.keyframe_received(now);
                keyframes.keyframe_received(now);
                s.shared.stats.keyframe(track.codec, &p.payload);
            }
            s.telemetry.packets_in += 1;
            let pkt = Arc::new(SourcePacket {
                kind: track.kind,
                pt: track.canonical_pt,
                seq: *p.seq_no,
                timestamp: p.header.timestamp,
                marker: p.header.marker,
                keyframe_start,
                epoch: *epoch,
                arrival: p.timestamp,
                wallclock: clock.wallclock(
                    *p.header.ssrc,
                    p.header.timestamp,
                    p.time.denom(),
                    p.timestamp,
                ),
                payload: p.payload,
            });
            deferred.push_back(Deferred::Source(s.shared.clone(), pkt));
        }
        Event::SenderFeedback(f) => {
            if let RoleState::Publisher { clock, .. } = &mut s.role {
                let info = f.sender_info;
                let ns = info
                    .ntp_time
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i128);
                clock.on_sender_report(*info.ssrc, ns, info.rtp_time.numer() as u32, f.received_at);
            }
        }
        Event::KeyframeRequest(_) => {
            if matches!(s.role, RoleState::Viewer { .. }) {
                viewer_asked_keyframe(key, s, deferred);
            }
        }
        Event::Closed => deferred.push_back(Deferred::Close(key, EndReason::PeerClosed)),
        // A viewer on the direct path has its figures from `direct_rtcp`: str0m sends
        // nothing there, so its egress figures would be empty or double counted.
        Event::PeerStats(_) | Event::MediaEgressStats(_) if s.direct.is_some() => {}
        e @ (Event::PeerStats(_) | Event::MediaEgressStats(_) | Event::MediaIngressStats(_)) => {
            if let (Event::MediaEgressStats(stats), RoleState::Viewer { tracks, nack, .. }) =
                (&e, &mut s.role)
                && let Some(rtt) = stats.rtt
                && let Some(window) = nack.on_rtt(rtt)
            {
                set_nack_history(&mut s.rtc, tracks, window);
                debug!(
                    rtt_ms = rtt.as_millis() as u64,
                    window_ms = window.as_millis() as u64,
                    "NACK history resized"
                );
            }
            s.telemetry.on_event(&e)
        }
        _ => {}
    }
}

/// Moves a connected viewer onto the direct egress path, once its DTLS has exported
/// the keys; without them (or with an m-line str0m has no stream for) it stays on
/// str0m's send path.
fn start_direct(s: &mut Session, now: Instant) {
    let RoleState::Viewer { tracks, nack, .. } = &s.role else {
        return;
    };
    let Some(slot) = s.keys.take() else {
        return;
    };
    let started = match slot.get() {
        Some(keys) => DirectEgress::new(&mut s.rtc, &keys, tracks, now),
        None => Err(direct::DirectError::NoKeys),
    };
    match started {
        Ok(mut d) => {
            d.set_window(nack.window());
            s.direct = Some(Box::new(d));
        }
        Err(e) => {
            s.span
                .in_scope(|| warn!("direct egress unavailable, str0m sends instead: {e}"));
            let (tracks, window) = (tracks.clone(), nack.window());
            set_nack_history(&mut s.rtc, &tracks, window);
        }
    }
}

/// A viewer asked for a keyframe (str0m read it, or the direct path): counted, and
/// its stream's source is asked once the deferred effects run.
fn viewer_asked_keyframe(key: u64, s: &Session, deferred: &mut VecDeque<Deferred>) {
    s.telemetry
        .counters
        .keyframe_requests_received
        .fetch_add(1, Ordering::Relaxed);
    deferred.push_back(Deferred::ViewerKeyframe(key, s.shared.clone()));
}

/// A viewer's SRTCP on the direct path (str0m does not see it): NACKed packets still
/// in the window are resent on the session's path, and its reports give the RTT
/// (which sizes the window) and loss. Returns true when it asked for a keyframe.
fn direct_rtcp(
    s: &mut Session,
    data: &[u8],
    now: Instant,
    socket: &MediaSocket,
    outbox: &mut Outbox,
    counters: &MediaCounters,
) -> bool {
    let Some(d) = s.direct.as_deref_mut() else {
        return false;
    };
    let mut bytes = 0;
    let summary: RtcpSummary = d.on_rtcp(data, now, on_path(s.path, socket, outbox, &mut bytes));
    s.telemetry.bytes_out += bytes;
    counters
        .packets_resent
        .fetch_add(summary.resent, Ordering::Relaxed);
    s.telemetry
        .on_receiver_report(summary.rtt, summary.loss, summary.nacks, now);
    if let (Some(rtt), RoleState::Viewer { nack, .. }) = (summary.rtt, &mut s.role)
        && let Some(window) = nack.on_rtt(rtt)
    {
        d.set_window(window);
    }
    summary.keyframe.is_some()
}

/// Where the direct path's resends and reports go: queued on the session's current
/// path (dropped while it has none), their bytes added to `bytes`.
fn on_path<'a>(
    path: Option<(IpAddr, SocketAddr)>,
    socket: &'a MediaSocket,
    outbox: &'a mut Outbox,
    bytes: &'a mut u64,
) -> impl FnMut(&[u8]) + 'a {
    move |dg| {
        if let Some((src, dst)) = path {
            *bytes += dg.len() as u64;
            outbox.push(socket, src, dst, dg);
        }
    }
}

/// Keeps `window` of a viewer's sent video for resending (see [`NackHistory`]).
fn set_nack_history(rtc: &mut Rtc, tracks: &[ViewerTrack], window: Duration) {
    for t in tracks.iter().filter(|t| t.kind == MediaKind::Video) {
        if let Some(tx) = rtc.direct_api().stream_tx_by_mid(t.mid, None) {
            tx.set_rtx_cache(NACK_HISTORY_PACKETS, window, Some(0.15));
        }
    }
}

/// A keyframe cache for the video of a WHIP source (None without video), stale after
/// `silence`.
fn video_keyframe_cache(tracks: &[PublishedTrack], silence: Duration) -> Option<KeyframeCache> {
    tracks
        .iter()
        .find(|t| t.kind == MediaKind::Video)
        .map(|t| KeyframeCache::new(t.codec, crate::core::CACHE_BYTES).stale_after(silence))
}
