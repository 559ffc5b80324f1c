//! One session as its worker holds it: its `Rtc`, its role's state, and the str0m
//! output that concerns other sessions, queued as [`Deferred`] effects. Adding,
//! patching (trickle ICE, ICE restart) and the single teardown path live here.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::{Candidate, CandidateKind, Event, IceConnectionState, Input, Output, Rtc};
use tracing::{Span, debug, info, info_span, warn};

use super::super::MediaCounters;
use super::super::direct::{self, DirectEgress, RtcpSummary};
use super::super::dtls::KeySlot;
use super::super::outbox::Outbox;
use super::super::tcp::TcpPeers;
use super::super::telemetry::{MediaPath, SessionTelemetry};
use super::super::udp::MediaSocket;
use super::keyframes::video_keyframe_cache;
use super::{Deferred, PatchError, PatchOutcome, Worker};
use crate::core::{
    KeyframeLimiter, KeyframeMode, KeyframeSource, LayerChooser, NackHistory, ResumeWatch, RtpIn,
    Source, SourceTrack, ViewerId, ViewerTrack,
};
use crate::directory::Stream;
use crate::model::{EndReason, Role, SessionId, SessionState};
use crate::sdp::frag::{IceFragment, first_ufrag, offer_with_credentials, restart_answer_fragment};
use crate::wire::demux;

/// A publisher track as the worker needs it.
#[derive(Debug, Clone)]
pub(crate) struct PublishedTrack {
    /// Its mid in the publisher's session.
    pub(crate) mid: Mid,
    /// The payload type the publisher uses.
    pub(crate) pt: u8,
    /// The track as the stream's viewers know it (kind, codec, their payload type).
    pub(crate) source: SourceTrack,
    /// How to ask this publisher for a keyframe, if it negotiated a way.
    pub(crate) keyframe_request: Option<KeyframeRequestKind>,
    /// The rids of its simulcast layers, by layer index (empty: one encoding).
    pub(crate) rids: Vec<Rid>,
}

impl PublishedTrack {
    /// The rid to address simulcast layer `layer` of this track by (None: the one
    /// encoding).
    pub(crate) fn rid(&self, layer: u8) -> Option<Rid> {
        self.rids.get(usize::from(layer)).copied()
    }
}

/// The keyframe state of one simulcast layer of a publisher (or of its one encoding).
pub(super) struct PublisherLayer {
    /// Rate-limits the keyframe requests sent to the layer.
    pub(super) limiter: KeyframeLimiter,
    /// Ask this layer for keyframes, or start viewers from its cache.
    pub(super) keyframes: KeyframeSource,
    /// Its video coming back after an outage.
    pub(super) resume: ResumeWatch,
}

/// What a new session is.
pub(crate) enum NewRole {
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
        /// Where its DTLS engine leaves the SRTP keys its egress protects with.
        keys: KeySlot,
    },
}

/// A negotiated session handed to a worker.
pub(crate) struct NewSession {
    /// Id.
    pub(crate) id: SessionId,
    /// The negotiated `Rtc`.
    pub(crate) rtc: Rtc,
    /// Our ICE ufrag, to route the first STUN request.
    pub(crate) ufrag: String,
    /// The client's offer, kept to renegotiate an ICE restart.
    pub(crate) offer: String,
    /// Its stream.
    pub(crate) shared: Arc<Stream>,
    /// Publisher or viewer.
    pub(crate) role: NewRole,
}

pub(super) enum RoleState {
    Publisher {
        epoch: u32,
        tracks: Vec<PublishedTrack>,
        /// The source pipeline (the publisher's wall clock from its sender reports).
        source: Source,
        /// Keyframe state per simulcast layer (one without simulcast).
        layers: Vec<PublisherLayer>,
        /// The simulcast layer of each SSRC seen (str0m binds an SSRC to its rid once;
        /// later packets may not carry the RID header extension).
        ssrc_layers: Vec<(u32, u8)>,
        /// When the layers' bit rates were last sampled.
        rates_sampled: Instant,
    },
    Viewer {
        tracks: Vec<ViewerTrack>,
        joined: bool,
        /// The video resend window, following the viewer's round-trip time.
        nack: NackHistory,
        /// Which simulcast layer its video gets.
        chooser: LayerChooser,
    },
}

pub(super) struct Session {
    pub(super) id: SessionId,
    pub(super) rtc: Rtc,
    pub(super) role: RoleState,
    pub(super) shared: Arc<Stream>,
    pub(super) ufrag: String,
    pub(super) offer: String,
    pub(super) remote_ufrag: String,
    pub(super) span: Span,
    pub(super) created: Instant,
    pub(super) connected: bool,
    pub(super) disconnected_since: Option<Instant>,
    pub(super) timer: Instant,
    pub(super) telemetry: SessionTelemetry,
    /// A viewer's egress: its keys until connected, then its state.
    pub(super) keys: Option<KeySlot>,
    pub(super) direct: Option<Box<DirectEgress>>,
    /// Our address and the peer's on the candidate pair in use: where the peer's
    /// latest DTLS or SRTP came from and str0m's latest went to (str0m does not
    /// expose its nominated pair).
    pub(super) path: Option<(IpAddr, SocketAddr)>,
    /// Candidates the peer trickled (PATCH), beside those of its offer: what they say
    /// of an address names the pair's remote type in the API. At most
    /// [`MAX_TRICKLED`], the first ones.
    pub(super) trickled: Vec<(SocketAddr, CandidateKind)>,
}

/// Trickled candidates remembered per session for the API (a browser gathers a few
/// per interface and TURN server).
const MAX_TRICKLED: usize = 32;

impl Session {
    /// The candidate pair in use, as the API shows it.
    pub(super) fn media_path(&self, port: u16, tcp: &TcpPeers) -> Option<MediaPath> {
        let (local_ip, remote) = self.path?;
        let offered = self
            .offer
            .lines()
            .filter_map(|l| l.trim_end().strip_prefix("a="))
            .filter(|l| l.starts_with("candidate:"))
            .filter_map(|l| Candidate::from_sdp_string(l).ok())
            .map(|c| (c.addr(), c.kind()));
        let kind = offered
            .chain(self.trickled.iter().copied())
            .find(|(addr, _)| *addr == remote)
            .map(|(_, kind)| kind);
        Some(MediaPath {
            protocol: if tcp.contains(remote) { "tcp" } else { "udp" },
            local: SocketAddr::new(local_ip, port),
            remote,
            remote_type: match kind {
                Some(CandidateKind::Host) => "host",
                Some(CandidateKind::ServerReflexive) => "srflx",
                Some(CandidateKind::Relayed) => "relay",
                Some(CandidateKind::PeerReflexive) | None => "prflx",
            },
        })
    }
}

/// Polls one `Rtc` until it asks for a timeout, sending its datagrams and queueing the
/// events that concern other sessions. Returns the next timeout.
pub(super) fn drain(
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

pub(super) fn handle_event(
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
                source,
                layers,
                ssrc_layers,
                ..
            } = &mut s.role
            else {
                return;
            };
            let pt = *p.header.payload_type;
            let Some(track) = tracks.iter().find(|t| t.pt == pt) else {
                return;
            };
            let ssrc = *p.header.ssrc;
            let layer = if track.rids.is_empty() {
                0
            } else if let Some(&(_, l)) = ssrc_layers.iter().find(|(x, _)| *x == ssrc) {
                l
            } else {
                let rid = p.header.ext_vals.rid.or_else(|| {
                    s.rtc
                        .direct_api()
                        .stream_rx(&p.header.ssrc)
                        .and_then(|rx| rx.rid())
                });
                let Some(l) = rid.and_then(|r| track.rids.iter().position(|x| *x == r)) else {
                    // A layer str0m cannot name yet: nothing to forward it as.
                    return;
                };
                debug!(ssrc, layer = l, "simulcast layer bound to its SSRC");
                ssrc_layers.push((ssrc, l as u8));
                l as u8
            };
            let Some(state) = layers.get_mut(usize::from(layer)) else {
                return;
            };
            s.telemetry.packets_in += 1;
            let pkt = source.packet(
                &track.source,
                RtpIn {
                    ssrc: *p.header.ssrc,
                    seq: *p.seq_no,
                    timestamp: p.header.timestamp,
                    marker: p.header.marker,
                    epoch: *epoch,
                    layer,
                    arrival: p.timestamp,
                    payload: p.payload,
                },
            );
            if pkt.keyframe_start {
                state.limiter.keyframe_received(now);
                state.keyframes.keyframe_received(now);
            }
            let outage = pkt.kind == MediaKind::Video
                && state
                    .resume
                    .packet(pkt.seq, pkt.arrival, pkt.keyframe_start);
            deferred.push_back(Deferred::Source(s.shared.clone(), Arc::new(pkt)));
            if outage {
                debug!(layer, "video back after an outage: asking for a keyframe");
                s.telemetry
                    .counters
                    .keyframes_asked_after_outage
                    .fetch_add(1, Ordering::Relaxed);
                deferred.push_back(Deferred::WantKeyframe(s.shared.clone(), layer));
            }
        }
        Event::SenderFeedback(f) => {
            if let RoleState::Publisher { source, .. } = &mut s.role {
                let info = f.sender_info;
                // Since the Unix epoch, while cameras' reports count from NTP's: one
                // source's reports all count from the same one, which is what matters.
                let ns = info
                    .ntp_time
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as i128);
                source.sender_report(*info.ssrc, ns, info.rtp_time.numer() as u32, f.received_at);
            }
        }
        Event::KeyframeRequest(_) => {
            if matches!(s.role, RoleState::Viewer { .. }) {
                viewer_asked_keyframe(key, s, deferred);
            }
        }
        Event::Closed => deferred.push_back(Deferred::Close(key, EndReason::PeerClosed)),
        // A viewer's figures come from `direct_rtcp`: str0m sends nothing for it,
        // so its egress figures would be empty.
        Event::PeerStats(_) | Event::MediaEgressStats(_)
            if matches!(s.role, RoleState::Viewer { .. }) => {}
        e @ (Event::PeerStats(_) | Event::MediaEgressStats(_) | Event::MediaIngressStats(_)) => {
            s.telemetry.on_event(&e)
        }
        _ => {}
    }
}

/// Starts a connected viewer's egress once its DTLS has exported the keys. A viewer
/// whose keys or send streams are missing cannot be sent to: it is closed.
pub(super) fn start_direct(
    key: u64,
    s: &mut Session,
    now: Instant,
    deferred: &mut VecDeque<Deferred>,
) {
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
            s.span.in_scope(|| warn!("no egress for this viewer: {e}"));
            deferred.push_back(Deferred::Close(key, EndReason::Failed));
        }
    }
}

/// A viewer asked for a keyframe (str0m read it, or the direct path): counted, and
/// its stream's source is asked once the deferred effects run.
pub(super) fn viewer_asked_keyframe(key: u64, s: &Session, deferred: &mut VecDeque<Deferred>) {
    s.telemetry
        .counters
        .keyframe_requests_received
        .fetch_add(1, Ordering::Relaxed);
    deferred.push_back(Deferred::ViewerKeyframe(key, s.shared.clone()));
}

/// A viewer's SRTCP on the direct path (str0m does not see it): NACKed packets still
/// in the window are resent on the session's path, and its reports give the RTT
/// (which sizes the window) and loss. Returns what it held (a keyframe request, a
/// path that just turned congested).
pub(super) fn direct_rtcp(
    s: &mut Session,
    data: &[u8],
    now: Instant,
    socket: &MediaSocket,
    outbox: &mut Outbox,
    counters: &MediaCounters,
) -> RtcpSummary {
    let Some(d) = s.direct.as_deref_mut() else {
        return RtcpSummary::default();
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
    summary
}

/// Runs `f`, wishd's own work on one session beside str0m (a viewer's direct
/// egress: its SRTCP, its timers, the packets forwarded to it). A panic there ends
/// that session alone, as one inside str0m does (`Worker::drive`): its egress is
/// dropped at once, so nothing more is sent with it, the session is closed, and the
/// worker goes on with every other one. `None` says it panicked.
pub(super) fn guarded<T>(
    key: u64,
    s: &mut Session,
    counters: &MediaCounters,
    deferred: &mut VecDeque<Deferred>,
    f: impl FnOnce(&mut Session) -> T,
) -> Option<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| f(s))) {
        Ok(v) => Some(v),
        Err(_) => {
            s.direct = None;
            counters.session_panics.fetch_add(1, Ordering::Relaxed);
            s.span
                .in_scope(|| warn!("the direct path panicked; dropping this session only"));
            deferred.push_back(Deferred::Close(key, EndReason::InternalError));
            None
        }
    }
}

/// Where the direct path's resends and reports go: queued on the session's current
/// path (dropped while it has none), their bytes added to `bytes`.
pub(super) fn on_path<'a>(
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

impl Worker {
    pub(super) fn add_session(&mut self, new: NewSession, now: Instant) {
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
                    .any(|t| t.source.kind == MediaKind::Video && t.keyframe_request.is_some());
                let count = tracks
                    .iter()
                    .map(|t| t.rids.len())
                    .max()
                    .unwrap_or(0)
                    .max(1);
                new.shared.drop_keyframe_caches();
                let layers: Vec<PublisherLayer> = (0..count)
                    .map(|layer| {
                        let keyframes = KeyframeSource::from_offer(can_be_asked);
                        if keyframes.mode() == KeyframeMode::Cache {
                            new.shared.set_keyframe_cache(
                                layer as u8,
                                video_keyframe_cache(&tracks, self.cfg.source_silence),
                            );
                        }
                        PublisherLayer {
                            limiter: KeyframeLimiter::new(self.cfg.keyframe_request_interval),
                            keyframes,
                            resume: ResumeWatch::default(),
                        }
                    })
                    .collect();
                if !can_be_asked {
                    span.in_scope(|| {
                        info!("no PLI/FIR offered: viewers start from the keyframe cache")
                    });
                }
                if count > 1 {
                    span.in_scope(|| info!(layers = count, "simulcast"));
                }
                RoleState::Publisher {
                    epoch,
                    tracks,
                    source: Source::default(),
                    layers,
                    ssrc_layers: Vec::new(),
                    rates_sampled: now,
                }
            }
            NewRole::Viewer { tracks, keys: k } => {
                keys = Some(k);
                RoleState::Viewer {
                    tracks,
                    joined: false,
                    nack: NackHistory::default(),
                    chooser: LayerChooser::new(now),
                }
            }
        };
        // The request's own line (`session created`, with the worker) is the one
        // operators read: one write to the log per join, not two.
        span.in_scope(|| debug!("session taken over by worker {}", self.index));
        self.by_id.insert(new.id, key);
        self.routes.add(key, &new.ufrag);
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
                telemetry: SessionTelemetry::new(session_kind, self.counters.clone(), now),
                keys,
                direct: None,
                path: None,
                trickled: Vec::new(),
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
    pub(super) fn patch(
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
            self.routes.rename(key, &s.ufrag, &local);
            s.ufrag = local;
            s.remote_ufrag = ufrag;
            s.offer = new_offer;
            s.span.in_scope(|| info!("ICE restarted"));
            outcome = PatchOutcome::Restarted {
                fragment: restart_answer_fragment(&answer),
            };
        }
        for line in frag.candidates {
            // Unusable candidates (mDNS names, unknown types) are dropped silently; a
            // TCP one is kept (an active client of ICE-TCP connects to us).
            let Ok(c) = Candidate::from_sdp_string(&line) else {
                continue;
            };
            if let Some(s) = self.sessions.get_mut(&key)
                && s.trickled.len() < MAX_TRICKLED
            {
                s.trickled.push((c.addr(), c.kind()));
            }
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

    /// The single teardown path: DELETE, kick, stop, timeouts, peer close, errors,
    /// grace expiry and shutdown all end a session here.
    pub(super) fn close_session(&mut self, key: u64, reason: EndReason, now: Instant) {
        let Some(mut s) = self.sessions.remove(&key) else {
            return;
        };
        self.timers.remove(&(s.timer, key));
        self.by_id.remove(&s.id);
        self.routes.remove(key, &s.ufrag);
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
        if reason == EndReason::PeerClosed {
            self.directory.remove_closed_session(s.id, now);
        } else {
            self.directory.remove_session(s.id, now);
        }
        self.counters.sessions.fetch_sub(1, Ordering::Relaxed);
        self.counters
            .sessions_closed
            .fetch_add(1, Ordering::Relaxed);
        let duration = now.saturating_duration_since(s.created);
        let span = s.span.clone();
        span.in_scope(|| s.telemetry.end(s.id, &s.shared.name, reason, duration));
    }
}
