//! One media worker: a tokio task owning a UDP socket, the `Rtc`s of its sessions, a
//! [`Fanout`] for its viewers and the keyframe limiters of its publishers.
//!
//! # The loop's contract
//!
//! 1. **What wakes it**: a command on its queue ([`WorkerMsg`]: a new session, a close,
//!    a PATCH, a source packet or keyframe request from another worker, an API
//!    question), datagrams on its socket, the earliest session timer (a paced burst
//!    and the end of a forward hold count as timers), and a housekeeping tick every
//!    100 ms (timeouts, keyframe retries, counters).
//! 2. **One mutation at a time**: [`Worker::drive`] is the only way an `Rtc` is
//!    changed. It applies one input and then drains `poll_output` to the next timeout
//!    (str0m's run-loop rule), inside `catch_unwind`: a panic in one session drops
//!    that session only. wishd's own work on a viewer beside str0m (the direct
//!    egress) is guarded the same way ([`session::guarded`]).
//! 3. **Effects on other sessions are values**: while one `Rtc` is drained, what it
//!    means for other sessions (a publisher's packet for viewers, a viewer's keyframe
//!    request for its publisher, a connect, a close) is queued as a [`Deferred`] and
//!    run after the drain ([`Worker::run_deferred`]), so no two `Rtc`s are borrowed at
//!    once.
//! 4. **Order of work after a wake**: handle the batch (up to 65 commands, or every
//!    datagram waiting), run the deferred effects, write the forwards they made as
//!    one batch per viewer (unless a forward hold keeps them a little longer), then
//!    flush the outbox. A worker busy with other workers' packets still reads its
//!    socket and runs due timers after each batch, so its own sessions never starve.
//!
//! Its commands and answers are in [`msg`]; datagram routing is pure ([`routes`]);
//! sessions, forwarding, keyframes, layer choice and ICE-TCP have a
//! file each ([`session`], [`forward`], [`keyframes`], [`layers`], [`tcp`]).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::net::{Protocol, Receive};
use str0m::{Input, Rtc};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument, Span, debug, info, info_span, warn};

mod forward;
mod keyframes;
mod layers;
mod msg;
mod routes;
mod session;
mod tcp;

use forward::StreamCount;
use keyframes::video_keyframe_cache;
pub use msg::WorkerStats;
pub(crate) use msg::{PatchError, PatchOutcome, WorkerMsg};
use routes::{Route, Routes};
use session::{
    RoleState, Session, direct_rtcp, drain, guarded, on_path, start_direct, viewer_asked_keyframe,
};

pub(crate) use session::{NewRole, NewSession, PublishedTrack};

use super::outbox::Outbox;
use super::tcp::IceTcp;
use super::udp::{MediaSocket, Received, RecvBuffers};
use super::{MediaCounters, WorkerConfig};
use crate::config::ForwardHold;
use crate::core::{
    Fanout, FanoutStats, Forward, HoldControl, SourcePacket, ViewerId, best_first, hold,
    start_layer,
};
use crate::directory::{Directory, LAYER_RATE_WINDOW, Stream};
use crate::model::SessionId;
use crate::model::{EndReason, SessionState};
use crate::wire::{demux, stun};
use tcp::tcp_wait;

/// How often a worker checks connect/ICE timeouts and retries keyframe requests.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// A viewer still waiting for a keyframe (to start, or to switch layers) asks again
/// after this long: the source's limiter sends at most one request per
/// `keyframe_request_interval` anyway, and a sender may have answered a request of
/// another layer with that layer's keyframe only.
const KEYFRAME_RETRY: Duration = Duration::from_millis(500);

/// Effects on other sessions, queued while one `Rtc` is drained.
enum Deferred {
    Source(Arc<Stream>, Arc<SourcePacket>),
    /// A keyframe of this simulcast layer of the stream's source is wanted.
    WantKeyframe(Arc<Stream>, u8),
    /// A viewer (by key) asked for a keyframe.
    ViewerKeyframe(u64, Arc<Stream>),
    Connected(u64),
    Close(u64, EndReason),
}

/// What a worker shares with the rest of the server.
#[derive(Clone)]
pub(super) struct WorkerLinks {
    /// Every worker's command queue, by index.
    pub(crate) peers: Arc<[mpsc::Sender<WorkerMsg>]>,
    pub(crate) directory: Arc<Directory>,
    pub(crate) counters: Arc<MediaCounters>,
    pub(crate) cfg: WorkerConfig,
    /// Closed when `Media` is dropped.
    pub(crate) alive: watch::Receiver<()>,
}

pub(super) struct Worker {
    index: usize,
    socket: MediaSocket,
    /// Its ICE-TCP listener and connections' events (`[ice_tcp]`), when on.
    tcp: Option<IceTcp>,
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
    routes: Routes,
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
    /// When the viewers' layers were last chosen.
    layers_chosen: Instant,
    /// Keyframe requests for layer switches that wait for a queue to drain: when,
    /// of which stream, which layer.
    delayed_keyframes: Vec<(Instant, Arc<Stream>, u8)>,
    /// One protected datagram of the direct egress path at a time.
    datagram: Vec<u8>,
    /// (Stream, layer) pairs where a viewer asked for a keyframe while the source was
    /// silent: the source is asked when that layer's next packet arrives here.
    held_keyframes: HashSet<(Arc<str>, u8)>,
    /// When this worker last asked for a keyframe of a stream because it dropped stale
    /// video of it (see `WorkerMsg::Packet`).
    stale_asked: HashMap<Arc<str>, Instant>,
    /// Closed when `Media` is dropped: the worker stops.
    alive: watch::Receiver<()>,
}

impl Worker {
    pub(super) fn new(
        index: usize,
        socket: MediaSocket,
        tcp: Option<IceTcp>,
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
            tcp,
            rx,
            peers,
            directory,
            counters,
            cfg,
            sessions: HashMap::new(),
            next_key: 1,
            by_id: HashMap::new(),
            routes: Routes::default(),
            publishers: HashMap::new(),
            timers: BTreeSet::new(),
            fanout: Fanout::new(),
            deferred: VecDeque::new(),
            forwards: Vec::new(),
            pending_arrivals: Vec::new(),
            stale_asked: HashMap::new(),
            held_since: None,
            hold,
            outbox: Outbox::new(),
            batching: false,
            fanout_flushed: FanoutStats::default(),
            layers_chosen: Instant::now(),
            delayed_keyframes: Vec::new(),
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
                wake = tcp_wait(&mut self.tcp) => {
                    woke = Instant::now();
                    self.handle_tcp(wake, woke);
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
            WorkerMsg::Stall(d) => std::thread::sleep(d),
            WorkerMsg::Packet { stream, pkt } => {
                // A worker behind on its queue drops what waited too long rather than
                // making every viewer ever later (the queue holds seconds of media).
                if now.saturating_duration_since(pkt.arrival) > self.cfg.forward_max_delay {
                    self.counters
                        .stale_source_packets
                        .fetch_add(1, Ordering::Relaxed);
                    // This worker's viewers now miss video they cannot get back (it
                    // never reached their send history): ask for a keyframe at once
                    // rather than waiting for each of them to notice and ask.
                    if pkt.kind == str0m::media::MediaKind::Video {
                        self.ask_keyframe_after_drop(&stream, pkt.layer, now);
                    }
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
                let fanout = &self.fanout;
                let port = self.socket.local_addr().port();
                let list = self
                    .sessions
                    .iter_mut()
                    .filter(|(_, s)| stream.as_ref().is_none_or(|n| *n == s.shared.name))
                    .filter(|(_, s)| {
                        !publishers_only || matches!(s.role, RoleState::Publisher { .. })
                    })
                    .map(|(key, s)| {
                        let mut snap = s.telemetry.snapshot(s.id, s.created, now);
                        if let Some((layer, _)) = fanout.layer_of(ViewerId(*key)) {
                            snap.layer = s.shared.stats.rids().get(usize::from(layer)).cloned();
                        }
                        snap.bandwidth_estimate = s
                            .direct
                            .as_deref()
                            .and_then(super::direct::DirectEgress::estimate_bps);
                        snap.path = s.media_path(port, &self.socket.tcp);
                        snap
                    })
                    .collect();
                let _ = reply.send(list);
            }
            WorkerMsg::KeyframeRequest { stream, layer } => {
                self.request_keyframe_local(&stream, layer, now)
            }
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
            WorkerMsg::SetLayer { id, policy, reply } => {
                let _ = reply.send(self.set_layer_policy(id, policy, now));
            }
            WorkerMsg::Stats { reply } => {
                let _ = reply.send(WorkerStats {
                    index: self.index,
                    sessions: self.sessions.len(),
                    routes: self.routes.len().0,
                    ufrags: self.routes.len().1,
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

    fn handle_datagram(&mut self, now: Instant, r: Received, data: &[u8]) {
        let (key, by_ufrag) = match self.routes.route(r.source, stun::local_ufrag(data)) {
            Route::ByUfrag(key) => (key, true),
            Route::ByAddress(key) => (key, false),
            Route::Unroutable => {
                self.counters
                    .unroutable_datagrams
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let proto = if r.tcp { Protocol::Tcp } else { Protocol::Udp };
        let Ok(recv) = Receive::new(proto, r.source, r.destination, data) else {
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
                let (socket, outbox, counters) = (&self.socket, &mut self.outbox, &self.counters);
                let Some(summary) = guarded(key, s, counters, &mut self.deferred, |s| {
                    direct_rtcp(s, data, now, socket, outbox, counters)
                }) else {
                    return;
                };
                if summary.gap_keyframe {
                    self.counters
                        .keyframes_for_viewer_gaps
                        .fetch_add(1, Ordering::Relaxed);
                }
                if summary.keyframe.is_some() {
                    viewer_asked_keyframe(key, s, &mut self.deferred);
                }
                if !self.batching {
                    self.outbox.flush(&self.socket);
                }
                if summary.became_congested {
                    // A link that narrowed stalls the picture until the switch: now,
                    // not at the next round.
                    self.choose_layer_now(key, now);
                }
                return;
            }
        }
        if by_ufrag {
            self.routes.learn(key, r.source);
        }
        self.drive(key, now, move |rtc| {
            rtc.handle_input(Input::Receive(now, recv)).map(|_| ())
        });
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
                role: RoleState::Publisher { layers, tracks, .. },
                ..
            }) = self.sessions.get_mut(&key).map(Box::as_mut)
            {
                let due: Vec<u8> = (0..layers.len() as u8)
                    .filter(|&l| layers[usize::from(l)].limiter.handle_timeout(now))
                    .collect();
                if !due.is_empty() {
                    let tracks = tracks.clone();
                    for layer in due {
                        self.send_keyframe_request(key, &tracks, layer, now);
                    }
                }
            }
            if let Some(s) = self.sessions.get_mut(&key)
                && s.direct.as_deref().is_some_and(|d| d.poll_timeout() <= now)
            {
                let (socket, outbox) = (&self.socket, &mut self.outbox);
                guarded(key, s, &self.counters, &mut self.deferred, |s| {
                    let mut bytes = 0;
                    if let Some(d) = s.direct.as_deref_mut() {
                        d.handle_timeout(now, on_path(s.path, socket, outbox, &mut bytes));
                    }
                    s.telemetry.bytes_out += bytes;
                });
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
        self.counters
            .ice_tcp
            .queue_full
            .fetch_add(self.socket.tcp.take_dropped(), Ordering::Relaxed);
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
            let RoleState::Publisher {
                layers,
                tracks,
                rates_sampled,
                ..
            } = &mut s.role
            else {
                continue;
            };
            for (layer, state) in layers.iter_mut().enumerate() {
                if state.keyframes.handle_timeout(now) {
                    s.span.in_scope(|| {
                        info!(
                            layer,
                            "keyframe request unanswered: viewers start from the keyframe cache"
                        )
                    });
                    s.shared.set_keyframe_cache(
                        layer as u8,
                        video_keyframe_cache(tracks, self.cfg.source_silence),
                    );
                }
            }
            let elapsed = now.saturating_duration_since(*rates_sampled);
            if elapsed >= LAYER_RATE_WINDOW {
                s.shared.stats.sample_layer_rates(elapsed);
                *rates_sampled = now;
                if tracks
                    .iter()
                    .any(|t| t.source.kind == str0m::media::MediaKind::Video)
                {
                    let layers = best_first(&s.shared.stats.layers(now));
                    s.shared.events.set_layers(layers, now);
                }
            }
        }
        self.release_delayed_keyframes(now);
        if now.saturating_duration_since(self.layers_chosen) >= layers::LAYER_TICK {
            self.layers_chosen = now;
            self.choose_layers(now);
        }
        for (stream, layer) in self.fanout.keyframes_wanted(now, KEYFRAME_RETRY) {
            if let Some(shared) = self.find_stream(&stream) {
                self.deferred
                    .push_back(Deferred::WantKeyframe(shared, layer));
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
        if let RoleState::Publisher { layers, .. } = &s.role {
            for t in layers.iter().filter_map(|l| l.limiter.poll_timeout()) {
                next = next.min(t);
            }
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
                Deferred::WantKeyframe(shared, layer) => match shared.source_worker() {
                    Some(w) if w == self.index => {
                        self.request_keyframe_local(&shared.name, layer, now)
                    }
                    Some(w) => {
                        if let Some(tx) = self.peers.get(w) {
                            let _ = tx.try_send(WorkerMsg::KeyframeRequest {
                                stream: shared.name.clone(),
                                layer,
                            });
                        }
                    }
                    None => shared.ask_upstream_for_keyframe(),
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
                        let layer = self.fanout.layer_of(ViewerId(key)).map_or(0, |(l, _)| l);
                        self.held_keyframes.insert((shared.name.clone(), layer));
                        continue;
                    }
                    self.viewer_keyframe(key, &shared, now);
                    if shared.source_worker().is_some() || shared.has_upstream_keyframes() {
                        let layer = self.fanout.layer_of(ViewerId(key)).map_or(0, |(l, _)| l);
                        self.deferred
                            .push_back(Deferred::WantKeyframe(shared, layer));
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
        start_direct(key, s, now, &mut self.deferred);
        if matches!(s.role, RoleState::Viewer { .. }) && s.direct.is_none() {
            return; // closing: it has nothing to be sent with
        }
        if let RoleState::Viewer { tracks, joined, .. } = &mut s.role {
            if *joined {
                return;
            }
            *joined = true;
            let shared = s.shared.clone();
            let tracks = tracks.clone();
            // Every source packet reaches this viewer from the cache, live, or both
            // (the ordering rule of `Stream`).
            let layer = start_layer(&shared.stats.layers(now));
            let prefix = shared.join(self.index, layer, now);
            // Not `self.forwards`: that holds live forwards still to be written.
            let mut forwards = Vec::new();
            let wants_keyframe = self.fanout.add_viewer_with_prefix(
                &shared.name,
                ViewerId(key),
                tracks,
                layer,
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
                self.deferred
                    .push_back(Deferred::WantKeyframe(shared, layer));
            }
        }
    }

    fn close_all(&mut self, reason: EndReason) {
        let now = Instant::now();
        let keys: Vec<u64> = self.sessions.keys().copied().collect();
        for key in keys {
            self.close_session(key, reason, now);
        }
        // After the sessions' last words (a DTLS close) were queued to them.
        self.socket.tcp.clear();
    }
}
