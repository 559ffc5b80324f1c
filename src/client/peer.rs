//! The parts shared by publisher and viewer: building the `Rtc`, the offer/answer
//! exchange over HTTP, and the run-loop driver that owns `Rtc` plus UDP socket.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::{ClientError, http_request_patient, resolve_url};

/// Connection state of a peer, published by its task.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerStatus {
    /// ICE and DTLS came up (`Event::Connected`) at least once.
    pub connected: bool,
    /// ICE currently reports `Disconnected`.
    pub ice_disconnected: bool,
    /// The peer is finished: closed by the remote, failed or stopped.
    pub closed: bool,
    /// Why the peer is closed, if it is.
    pub reason: Option<String>,
}

impl PeerStatus {
    pub fn is_up(&self) -> bool {
        self.connected && !self.ice_disconnected && !self.closed
    }
}

/// Waits until the status says connected (or closed) for at most `timeout`.
pub(crate) async fn wait_connected(
    status: &watch::Receiver<PeerStatus>,
    timeout: Duration,
) -> Result<(), ClientError> {
    let mut rx = status.clone();
    let res = tokio::time::timeout(timeout, rx.wait_for(|s| s.connected || s.closed)).await;
    match res {
        Err(_) => Err(ClientError::Timeout("ICE/DTLS connection")),
        Ok(Err(_)) => Err(ClientError::Closed("peer task ended".into())),
        Ok(Ok(s)) if s.closed && !s.connected => Err(ClientError::Closed(
            s.reason.clone().unwrap_or_else(|| "closed".into()),
        )),
        Ok(Ok(_)) => Ok(()),
    }
}

/// Max STUN retransmission timeout of the client peers (str0m default: 3 s).
pub(crate) const STUN_MAX_RTO: Duration = Duration::from_secs(1);
/// Max STUN retransmits of the client peers (str0m default: 9).
pub(crate) const STUN_MAX_RETRANSMITS: usize = 5;

/// Tightens ICE timing so that a server that silently dropped the session is seen
/// as `Disconnected` after about 4 s instead of about 21 s with str0m's defaults.
pub(crate) fn tune_ice(cfg: &mut RtcConfig) {
    cfg.set_max_stun_rto(STUN_MAX_RTO);
    cfg.set_max_stun_retransmits(STUN_MAX_RETRANSMITS);
}

/// Drains an `Rtc` that has no socket yet (before the answer is in). Transmits
/// cannot happen without remote candidates; events are dropped.
pub(crate) fn drain_offline(rtc: &mut Rtc) -> Result<(), ClientError> {
    loop {
        match rtc.poll_output()? {
            Output::Timeout(_) => return Ok(()),
            Output::Transmit(t) => {
                tracing::debug!("dropping early transmit to {}", t.destination);
            }
            Output::Event(e) => tracing::debug!("early event {e:?}"),
        }
    }
}

/// Adds `addr` as a UDP host candidate and drains.
pub(crate) fn add_host_candidate(rtc: &mut Rtc, addr: SocketAddr) -> Result<(), ClientError> {
    let c = Candidate::host(addr, "udp")
        .map_err(|e| ClientError::Rtc(format!("host candidate {addr}: {e}")))?;
    if rtc.add_local_candidate(c).is_none() {
        return Err(ClientError::Rtc(format!("candidate {addr} refused")));
    }
    drain_offline(rtc)
}

/// What the HTTP exchange gave us.
pub(crate) struct Signalled {
    pub location: String,
    pub etag: Option<String>,
    pub answer_sdp: String,
}

/// Redirects followed when POSTing an offer.
const MAX_REDIRECTS: usize = 5;

/// POSTs `offer_sdp` to `endpoint_url` (following 307/308), expects 201 with an SDP
/// answer, and applies the answer to `rtc`.
pub(crate) async fn exchange(
    rtc: &mut Rtc,
    pending: SdpPendingOffer,
    offer_sdp: String,
    endpoint_url: &str,
    token: Option<&str>,
    relay: bool,
) -> Result<Signalled, ClientError> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/sdp")];
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    if relay {
        headers.push((crate::model::RELAY_HEADER, "1"));
    }
    // Follow 307/308 (a balancer sending the offer elsewhere, RFC 9725 §4.5); the
    // session URL is resolved against the URL that answered 201.
    let mut url = endpoint_url.to_owned();
    let mut hops = 0;
    let resp = loop {
        let resp =
            http_request_patient("POST", &url, &headers, offer_sdp.clone().into_bytes()).await?;
        match (resp.status, resp.header("location")) {
            (307 | 308, Some(to)) if hops < MAX_REDIRECTS => {
                url = resolve_url(&url, to);
                hops += 1;
            }
            _ => break resp,
        }
    };
    let endpoint_url = url.as_str();
    if resp.status != 201 {
        return Err(ClientError::Status {
            status: resp.status,
            body: resp.text(),
        });
    }
    let location = resp
        .header("location")
        .map(|l| resolve_url(endpoint_url, l))
        .ok_or_else(|| ClientError::Http("201 without Location".into()))?;
    let etag = resp.header("etag").map(str::to_string);
    let answer_sdp = resp.text();
    let answer = SdpAnswer::from_sdp_string(&answer_sdp)
        .map_err(|e| ClientError::Sdp(format!("unparseable answer: {e}")))?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| ClientError::Sdp(format!("answer refused: {e}")))?;
    drain_offline(rtc)?;
    Ok(Signalled {
        location,
        etag,
        answer_sdp,
    })
}

/// Sends DELETE to a session URL and returns the status.
pub(crate) async fn delete_session(
    location: &str,
    token: Option<&str>,
) -> Result<u16, ClientError> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    Ok(
        http_request_patient("DELETE", location, &headers, Vec::new())
            .await?
            .status,
    )
}

/// What woke the run loop.
pub(crate) enum Wake<C> {
    /// A datagram of this length from this source is in the buffer.
    Datagram(usize, SocketAddr),
    /// The `Rtc` timeout passed.
    Timeout,
    /// An application command (or `None` when all handles are gone).
    Command(Option<C>),
    /// The video timer ticked; the instant it was due (a frame's capture time).
    VideoTick(Instant),
    /// The audio timer ticked; the instant it was due.
    AudioTick(Instant),
}

/// Owns the `Rtc` and socket of one peer and follows str0m's run-loop rule: after
/// every mutation, poll until `Output::Timeout`.
pub(crate) struct Driver {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub buf: Vec<u8>,
    pub next_timeout: Instant,
    pub status: watch::Sender<PeerStatus>,
    /// The remote's current SDP answer (an ICE restart rewrites its credentials).
    pub remote_sdp: String,
}

impl Driver {
    pub fn new(
        rtc: Rtc,
        socket: UdpSocket,
        status: watch::Sender<PeerStatus>,
    ) -> Result<Self, ClientError> {
        let local = socket.local_addr()?;
        Ok(Driver {
            rtc,
            socket,
            local,
            buf: vec![0; 2048],
            next_timeout: Instant::now(),
            status,
            remote_sdp: String::new(),
        })
    }

    /// Polls until `Output::Timeout`, sending transmits. Lifecycle events update the
    /// status; all events are returned for the caller to handle.
    pub async fn drain(&mut self) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return Ok(events);
                }
                Output::Transmit(t) => {
                    if let Err(e) = self.socket.send_to(&t.contents, t.destination).await {
                        tracing::debug!("send to {} failed: {e}", t.destination);
                    }
                }
                Output::Event(e) => {
                    match &e {
                        Event::Connected => self.status.send_modify(|s| s.connected = true),
                        Event::IceConnectionStateChange(st) => {
                            let down = *st == IceConnectionState::Disconnected;
                            self.status.send_modify(|s| s.ice_disconnected = down);
                        }
                        Event::Closed => self.close("closed by remote"),
                        _ => {}
                    }
                    events.push(e);
                }
            }
        }
    }

    /// Marks the peer closed with a reason (keeps the first reason).
    pub fn close(&self, reason: &str) {
        self.status.send_modify(|s| {
            if !s.closed {
                s.closed = true;
                s.reason = Some(reason.to_string());
            }
        });
    }

    /// Feeds a wake-up that concerns the `Rtc` itself (datagram or timeout).
    pub fn handle_wake_input(&mut self, n: usize, source: SocketAddr) -> Result<(), ClientError> {
        let now = Instant::now();
        match Receive::new(Protocol::Udp, source, self.local, &self.buf[..n]) {
            Ok(r) => self.rtc.handle_input(Input::Receive(now, r))?,
            Err(e) => tracing::debug!("unparseable datagram from {source}: {e:?}"),
        }
        Ok(())
    }

    /// Feeds `Input::Timeout(now)`.
    pub fn handle_timeout(&mut self) -> Result<(), ClientError> {
        self.rtc.handle_input(Input::Timeout(Instant::now()))?;
        Ok(())
    }
}

/// Waits for the next wake-up of a peer. Timers are optional (viewers have none).
pub(crate) async fn next_wake<C>(
    socket: &UdpSocket,
    buf: &mut [u8],
    deadline: Instant,
    commands: &mut tokio::sync::mpsc::UnboundedReceiver<C>,
    video: Option<&mut tokio::time::Interval>,
    audio: Option<&mut tokio::time::Interval>,
) -> Wake<C> {
    let video_on = video.is_some();
    let audio_on = audio.is_some();
    let video_tick = async {
        match video {
            Some(i) => i.tick().await,
            None => std::future::pending().await,
        }
    };
    let audio_tick = async {
        match audio {
            Some(i) => i.tick().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        c = commands.recv() => Wake::Command(c),
        r = socket.recv_from(buf) => match r {
            Ok((n, src)) => Wake::Datagram(n, src),
            Err(e) => {
                // E.g. ICMP errors surfacing on the socket: not fatal for UDP.
                tracing::debug!("recv: {e}");
                Wake::Timeout
            }
        },
        _ = tokio::time::sleep_until(deadline.into()) => Wake::Timeout,
        t = video_tick, if video_on => Wake::VideoTick(t.into_std()),
        t = audio_tick, if audio_on => Wake::AudioTick(t.into_std()),
    }
}

/// The address of this machine a server at `url` is reached from: the host candidate
/// a peer toward it offers (a UDP socket "connected" to the server's address sends
/// nothing, but takes the route's source address).
pub async fn local_ip_toward(url: &url::Url) -> Result<std::net::IpAddr, String> {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(443);
    let server = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    let any: SocketAddr = if server.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let probe = UdpSocket::bind(any)
        .await
        .map_err(|e| format!("a local socket: {e}"))?;
    probe
        .connect(server)
        .await
        .map_err(|e| format!("no route to {server}: {e}"))?;
    probe
        .local_addr()
        .map(|a| a.ip())
        .map_err(|e| format!("a local socket: {e}"))
}
