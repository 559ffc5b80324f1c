//! The WHEP viewer peer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::change::SdpPendingOffer;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::rtp::RtpPacket;
use str0m::{Event, Rtc, RtcConfig};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::HttpResponse;
use super::peer::{self, Driver, PeerStatus, Wake};
use super::restart::{self, PendingRestart, RestartCommand};
use super::{AudioCodec, ClientError, VideoCodec, install_crypto_provider};

/// How a [`WhepViewer`] behaves.
#[derive(Debug, Clone)]
pub struct ViewerOptions {
    /// Offer a recvonly audio m-line.
    pub audio: bool,
    /// Offer a recvonly video m-line.
    pub video: bool,
    /// Bearer token for the `Authorization` header.
    pub token: Option<String>,
    /// Local address to bind the UDP socket to (port chosen by the OS).
    pub bind_ip: IpAddr,
    /// The video codecs the viewer offers, in order of preference.
    pub video_codecs: Vec<VideoCodec>,
    /// Rewrites the offer before it is POSTed (conformance checks of how a server
    /// takes `a=setup:active`, simulcast, ...). The local `Rtc` keeps its own offer,
    /// so a rewrite must leave the session usable.
    pub offer_filter: Option<fn(&str) -> String>,
    /// The audio codecs the viewer offers, in order of preference.
    pub audio_codecs: Vec<AudioCodec>,
    /// When not empty, H.264 is offered only in these `profile-level-id`s (each in
    /// packetization-mode 1 with RTX, in this order, at most four), like Firefox's lone
    /// `0x42e01f`. Empty: str0m's usual set of profiles.
    pub h264_profile_level_ids: Vec<u32>,
    /// Loses every n-th RTP datagram that arrives (0: none) before the stack sees it,
    /// like a lossy link would: the stack NACKs the gap and the server may resend.
    pub lose_every: u32,
    /// Where packets and sender reports go as they arrive, instead of being kept for
    /// [`WhepViewer::received`] (a viewer that relays what it gets, for as long as it
    /// runs). What a full channel refuses is dropped; the channel closes when the
    /// viewer's task ends.
    pub sink: Option<mpsc::Sender<Arrival>>,
    /// The viewer relays what it gets to viewers of its own (a wishd `[[pull]]`): its
    /// POST carries [`crate::model::RELAY_HEADER`].
    pub relay: bool,
}

/// What a viewer with a [`ViewerOptions::sink`] hands on.
#[derive(Debug, Clone)]
pub enum Arrival {
    /// An RTP packet.
    Packet(ReceivedPacket),
    /// An RTCP sender report.
    SenderReport(ReceivedSenderReport),
}

impl Default for ViewerOptions {
    fn default() -> Self {
        ViewerOptions {
            audio: true,
            video: true,
            token: None,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            video_codecs: vec![VideoCodec::H264, VideoCodec::Vp8],
            offer_filter: None,
            audio_codecs: vec![AudioCodec::Opus],
            h264_profile_level_ids: Vec::new(),
            lose_every: 0,
            sink: None,
            relay: false,
        }
    }
}

/// What a viewer got: one entry per RTP packet, in arrival order.
#[derive(Debug, Clone)]
pub struct ReceivedPacket {
    /// Audio or video (from the m-line the SSRC belongs to, else from the PT).
    pub kind: MediaKind,
    /// RTP payload type.
    pub pt: u8,
    /// Extended sequence number, as str0m reports it.
    pub seq: u64,
    /// RTP timestamp.
    pub timestamp: u32,
    /// RTP marker bit.
    pub marker: bool,
    /// RTP SSRC.
    pub ssrc: u32,
    /// The RTP payload.
    pub payload: Arc<[u8]>,
    /// When the datagram arrived.
    pub at: Instant,
}

/// An RTCP sender report the viewer got: the server's wall clock for the RTP clock of
/// one of its streams (what a player syncs audio and video with).
#[derive(Debug, Clone, Copy)]
pub struct ReceivedSenderReport {
    /// The stream it describes (from its m-line).
    pub kind: MediaKind,
    /// The SSRC of that stream.
    pub ssrc: u32,
    /// The sender's wall clock at the report.
    pub ntp_time: std::time::SystemTime,
    /// The RTP timestamp of the same moment.
    pub rtp_time: u32,
    /// When the report arrived.
    pub at: Instant,
}

impl ReceivedSenderReport {
    /// The sender's wall clock for RTP timestamp `rtp` of this stream (`clock_rate` Hz).
    pub fn wallclock_of(&self, rtp: u32, clock_rate: u32) -> std::time::SystemTime {
        let ticks = i64::from(rtp.wrapping_sub(self.rtp_time) as i32);
        let nanos = i128::from(ticks) * 1_000_000_000 / i128::from(clock_rate.max(1));
        let d = Duration::from_nanos(nanos.unsigned_abs() as u64);
        if nanos >= 0 {
            self.ntp_time + d
        } else {
            self.ntp_time - d
        }
    }
}

enum Command {
    RequestKeyframe,
    Restart(RestartCommand),
    /// Close the peer connection (DTLS close_notify), as `pc.close()` does.
    Close(tokio::sync::oneshot::Sender<()>),
}

/// A WHEP viewer: a background task owns the `Rtc` and socket and records every
/// RTP packet it receives.
///
/// Dropping the handle stops the task without a DELETE, like [`WhepViewer::abort`].
pub struct WhepViewer {
    offer_sdp: String,
    location: String,
    etag: Option<String>,
    answer_sdp: String,
    token: Option<String>,
    post_sent_at: Instant,
    received: Arc<Mutex<Vec<ReceivedPacket>>>,
    sender_reports: Arc<Mutex<Vec<ReceivedSenderReport>>>,
    /// Bumped after every received packet, for [`WhepViewer::wait_for`].
    arrivals: watch::Receiver<u64>,
    status: watch::Receiver<PeerStatus>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
    local_addr: SocketAddr,
    video_codec: Option<VideoCodec>,
}

/// A built offer and the `Rtc` it belongs to.
struct Offer {
    rtc: Rtc,
    sdp: String,
    pending: SdpPendingOffer,
    video_mid: Option<Mid>,
}

/// Payload types (and RTX) for [`ViewerOptions::h264_profile_level_ids`]: str0m's own
/// H.264 numbers, clear of its VP8, VP9 and AV1 ones.
const H264_PTS: [(u8, u8); 4] = [(108, 109), (127, 121), (123, 119), (114, 115)];

fn build_offer(opts: &ViewerOptions, local: SocketAddr) -> Result<Offer, ClientError> {
    let video = opts.video && !opts.video_codecs.is_empty();
    let audio = opts.audio && !opts.audio_codecs.is_empty();
    if !video && !audio {
        return Err(ClientError::Sdp(
            "viewer with neither audio nor video".into(),
        ));
    }
    install_crypto_provider();
    let mut cfg = RtcConfig::new().clear_codecs().set_rtp_mode(true);
    if audio {
        for c in &opts.audio_codecs {
            cfg = match c {
                AudioCodec::Opus => cfg.enable_opus(true, false),
                AudioCodec::Pcmu => cfg.enable_pcmu(true, false),
                AudioCodec::Pcma => cfg.enable_pcma(true, false),
            };
        }
    }
    if opts.h264_profile_level_ids.len() > H264_PTS.len() {
        return Err(ClientError::Sdp(format!(
            "at most {} H.264 profiles",
            H264_PTS.len()
        )));
    }
    if video {
        for c in &opts.video_codecs {
            cfg = match c {
                VideoCodec::H264 if !opts.h264_profile_level_ids.is_empty() => {
                    for (plid, (pt, rtx)) in opts.h264_profile_level_ids.iter().zip(H264_PTS) {
                        cfg.codec_config()
                            .add_h264(pt.into(), Some(rtx.into()), true, *plid);
                    }
                    cfg
                }
                VideoCodec::H264 => cfg.enable_h264(true),
                VideoCodec::H265 => cfg.enable_h265(true),
                VideoCodec::Vp8 => cfg.enable_vp8(true),
                VideoCodec::Vp9 => cfg.enable_vp9(true),
                VideoCodec::Av1 => cfg.enable_av1(true),
            };
        }
    }
    peer::tune_ice(&mut cfg);
    let mut rtc = cfg.build(Instant::now());
    peer::add_host_candidate(&mut rtc, local)?;
    let mut api = rtc.sdp_api();
    if audio {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    }
    let video_mid =
        video.then(|| api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None));
    let (offer, pending) = api
        .apply()
        .ok_or_else(|| ClientError::Sdp("no offer made".into()))?;
    peer::drain_offline(&mut rtc)?;
    Ok(Offer {
        rtc,
        sdp: offer.to_sdp_string(),
        pending,
        video_mid,
    })
}

/// The SDP offer a viewer with these options would send (host candidate on a
/// placeholder port of `opts.bind_ip`). For conformance tests that tamper with
/// offers; the offer is not usable for a real session.
pub fn viewer_offer(opts: &ViewerOptions) -> Result<String, ClientError> {
    Ok(build_offer(opts, SocketAddr::new(opts.bind_ip, 9))?.sdp)
}

/// The video codec of the first PT the answer accepted on `mid`.
fn negotiated_video(rtc: &Rtc, mid: Mid) -> Option<VideoCodec> {
    let media = rtc.media(mid)?;
    let pt = *media.remote_pts().first()?;
    let p = rtc.codec_config().params().iter().find(|p| p.pt() == pt)?;
    match p.spec().codec {
        Codec::H264 => Some(VideoCodec::H264),
        Codec::H265 => Some(VideoCodec::H265),
        Codec::Vp8 => Some(VideoCodec::Vp8),
        Codec::Vp9 => Some(VideoCodec::Vp9),
        Codec::Av1 => Some(VideoCodec::Av1),
        _ => None,
    }
}

impl WhepViewer {
    /// POSTs a recvonly offer to `endpoint_url` (e.g. `http://127.0.0.1:8080/whep/cam1`),
    /// applies the answer and starts the receive task. Returns once the 201 is in,
    /// without waiting for ICE.
    pub async fn connect(endpoint_url: &str, opts: ViewerOptions) -> Result<Self, ClientError> {
        let socket = tokio::net::UdpSocket::bind(SocketAddr::new(opts.bind_ip, 0)).await?;
        let local_addr = socket.local_addr()?;
        let Offer {
            mut rtc,
            sdp,
            pending,
            video_mid,
        } = build_offer(&opts, local_addr)?;
        let post_sent_at = Instant::now();
        let sdp = match opts.offer_filter {
            Some(filter) => filter(&sdp),
            None => sdp,
        };
        let offer_sdp = sdp.clone();
        let sig = peer::exchange(
            &mut rtc,
            pending,
            sdp,
            endpoint_url,
            opts.token.as_deref(),
            opts.relay,
        )
        .await?;
        let video_codec = video_mid.and_then(|mid| negotiated_video(&rtc, mid));

        let received = Arc::new(Mutex::new(Vec::new()));
        let sender_reports = Arc::new(Mutex::new(Vec::new()));
        let (arrivals_tx, arrivals_rx) = watch::channel(0u64);
        let (status_tx, status_rx) = watch::channel(PeerStatus::default());
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let mut driver = Driver::new(rtc, socket, status_tx)?;
        driver.remote_sdp = sig.answer_sdp.clone();
        let task = ViewerTask {
            driver,
            video_mid,
            received: received.clone(),
            sender_reports: sender_reports.clone(),
            arrivals: arrivals_tx,
            restart: None,
            lose_every: opts.lose_every,
            rtp_seen: 0,
            sink: opts.sink,
        };
        let task = tokio::spawn(task.run(cmd_rx));
        Ok(WhepViewer {
            offer_sdp,
            location: sig.location,
            etag: sig.etag,
            answer_sdp: sig.answer_sdp,
            token: opts.token,
            post_sent_at,
            received,
            sender_reports,
            arrivals: arrivals_rx,
            status: status_rx,
            commands: cmd_tx,
            task,
            local_addr,
            video_codec,
        })
    }

    /// The absolute URL of the WHEP session (the resolved `Location`).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The `ETag` of the session, if the server sent one.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// The SDP offer as POSTed (after any `offer_filter`).
    pub fn offer_sdp(&self) -> &str {
        &self.offer_sdp
    }

    /// The SDP answer from the server.
    pub fn answer_sdp(&self) -> &str {
        &self.answer_sdp
    }

    /// When the POST was sent, for join-time figures.
    pub fn post_sent_at(&self) -> Instant {
        self.post_sent_at
    }

    /// The local UDP address of the peer.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The video codec the server's answer chose, if video was negotiated.
    pub fn video_codec(&self) -> Option<VideoCodec> {
        self.video_codec
    }

    /// Waits until ICE and DTLS are up.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        peer::wait_connected(&self.status, timeout).await
    }

    /// ICE+DTLS are up and the peer is neither closed by the server nor
    /// ICE-disconnected.
    pub fn is_connected(&self) -> bool {
        self.status.borrow().is_up() && !self.task.is_finished()
    }

    /// Why the peer closed, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.status.borrow().reason.clone()
    }

    /// A snapshot of everything received so far.
    pub fn received(&self) -> Vec<ReceivedPacket> {
        self.lock().clone()
    }

    /// Takes everything received so far, leaving the list empty (for long runs that
    /// must not keep every packet). Later [`WhepViewer::wait_for`] calls only see
    /// packets that arrive afterwards.
    pub fn take_received(&self) -> Vec<ReceivedPacket> {
        std::mem::take(&mut *self.lock())
    }

    /// The RTCP sender reports received so far, oldest first.
    pub fn sender_reports(&self) -> Vec<ReceivedSenderReport> {
        self.sender_reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Number of packets received so far (cheaper than [`WhepViewer::received`]).
    pub fn received_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ReceivedPacket>> {
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `cond` holds for the packets received so far. `cond` runs on
    /// every arrival, under the lock of the packet list, so keep it quick.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        cond: impl Fn(&[ReceivedPacket]) -> bool,
    ) -> Result<(), ClientError> {
        let mut arrivals = self.arrivals.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            arrivals.borrow_and_update();
            if cond(&self.lock()) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, arrivals.changed()).await {
                Err(_) => return Err(ClientError::Timeout("viewer condition")),
                Ok(Err(_)) => {
                    // The task ended: one last look, then report why.
                    if cond(&self.lock()) {
                        return Ok(());
                    }
                    return Err(ClientError::Closed(
                        self.close_reason()
                            .unwrap_or_else(|| "peer task ended".into()),
                    ));
                }
                Ok(Ok(())) => {}
            }
        }
    }

    /// Sends a PLI for the video m-line (no-op without video or before media flows).
    pub fn request_keyframe(&self) {
        let _ = self.commands.send(Command::RequestKeyframe);
    }

    /// Restarts ICE through a PATCH with `If-Match: *` (RFC 9725 §4.3.3): new local
    /// credentials, and with `new_socket` a new local UDP socket (a new address, as
    /// after a network change). On a 200 the server's credentials are applied and
    /// the new ETag kept; the PATCH response is returned for inspection.
    pub async fn ice_restart(&mut self, new_socket: bool) -> Result<HttpResponse, ClientError> {
        let commands = &self.commands;
        restart::restart_session(
            |c| commands.send(Command::Restart(c)).is_ok(),
            &self.location,
            self.token.as_deref(),
            new_socket,
            &mut self.local_addr,
            &mut self.etag,
        )
        .await
    }

    /// Sends DELETE for the session, then stops the task. Returns the DELETE status.
    pub async fn delete(self) -> Result<u16, ClientError> {
        let status = peer::delete_session(&self.location, self.token.as_deref()).await;
        drop(self);
        status
    }

    /// Closes the peer connection first (str0m sends the DTLS close_notify, which
    /// ends the session on the server), then sends DELETE, as players that call
    /// `pc.close()` before their DELETE do. Returns the DELETE status.
    pub async fn close_then_delete(self) -> Result<u16, ClientError> {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self.commands.send(Command::Close(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), closed).await;
        }
        self.delete().await
    }

    /// Stops and drops the peer WITHOUT a DELETE (simulates a crash or network loss).
    pub fn abort(self) {
        drop(self);
    }
}

impl std::fmt::Debug for WhepViewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhepViewer")
            .field("location", &self.location)
            .field("local_addr", &self.local_addr)
            .field("connected", &self.is_connected())
            .field("received", &self.received_count())
            .finish_non_exhaustive()
    }
}

impl Drop for WhepViewer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct ViewerTask {
    driver: Driver,
    video_mid: Option<Mid>,
    received: Arc<Mutex<Vec<ReceivedPacket>>>,
    sender_reports: Arc<Mutex<Vec<ReceivedSenderReport>>>,
    arrivals: watch::Sender<u64>,
    /// An ICE restart waiting for the server's answer.
    restart: Option<PendingRestart>,
    /// See [`ViewerOptions::lose_every`].
    lose_every: u32,
    rtp_seen: u64,
    /// See [`ViewerOptions::sink`].
    sink: Option<mpsc::Sender<Arrival>>,
}

impl ViewerTask {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        match self.run_inner(&mut commands).await {
            Ok(()) => self.driver.close("stopped"),
            Err(e) => {
                tracing::debug!("viewer task ended: {e}");
                self.driver.close(&e.to_string());
            }
        }
    }

    async fn run_inner(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), ClientError> {
        // str0m starts its ICE agent on the first timeout input; without it a peer
        // whose DTLS role is passive (no DTLS timer) would never poll again.
        self.driver.handle_timeout()?;
        loop {
            self.drain().await?;
            if !self.driver.rtc.is_alive() {
                self.driver.close("rtc no longer alive");
                return Ok(());
            }
            let d = &mut self.driver;
            let wake =
                peer::next_wake(&d.socket, &mut d.buf, d.next_timeout, commands, None, None).await;
            match wake {
                Wake::Datagram(n, src) => {
                    if !self.loses(n) {
                        self.driver.handle_wake_input(n, src)?
                    }
                }
                Wake::Timeout | Wake::VideoTick(_) | Wake::AudioTick(_) => {
                    self.driver.handle_timeout()?
                }
                Wake::Command(None) => return Ok(()),
                Wake::Command(Some(Command::RequestKeyframe)) => self.request_keyframe(),
                Wake::Command(Some(Command::Restart(step))) => {
                    step.run(&mut self.driver, &mut self.restart).await
                }
                Wake::Command(Some(Command::Close(done))) => {
                    self.driver.rtc.close()?;
                    self.driver.drain().await?;
                    // The close_notify is on the wire; give the server a moment to
                    // read it before the caller's DELETE.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let _ = done.send(());
                }
            }
        }
    }

    /// Whether the datagram of `n` bytes just read is one [`ViewerOptions::lose_every`]
    /// loses: RTP (RFC 7983: first byte 128–191, and not RTCP's types 192–223).
    fn loses(&mut self, n: usize) -> bool {
        let d = &self.driver.buf[..n];
        let rtp = n >= 12 && d[0] >> 6 == 2 && !crate::wire::demux::is_rtcp(d);
        if self.lose_every == 0 || !rtp {
            return false;
        }
        self.rtp_seen += 1;
        self.rtp_seen.is_multiple_of(u64::from(self.lose_every))
    }

    fn request_keyframe(&mut self) {
        let Some(mid) = self.video_mid else {
            return;
        };
        match self.driver.rtc.direct_api().stream_rx_by_mid(mid, None) {
            Some(rx) => rx.request_keyframe(KeyframeRequestKind::Pli),
            None => tracing::debug!("no video receive stream yet, PLI not sent"),
        }
    }

    async fn drain(&mut self) -> Result<(), ClientError> {
        let events = self.driver.drain().await?;
        let mut got = Vec::new();
        for e in events {
            match e {
                Event::RtpPacket(p) => got.push(self.make_received(p)),
                Event::SenderFeedback(f) => {
                    let Some(kind) = self.driver.rtc.media(f.mid).map(|m| m.kind()) else {
                        continue;
                    };
                    let report = ReceivedSenderReport {
                        kind,
                        ssrc: *f.sender_info.ssrc,
                        ntp_time: f.sender_info.ntp_time,
                        rtp_time: f.sender_info.rtp_time.numer() as u32,
                        at: f.received_at,
                    };
                    match &self.sink {
                        Some(sink) => {
                            let _ = sink.try_send(Arrival::SenderReport(report));
                        }
                        None => self
                            .sender_reports
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(report),
                    }
                }
                _ => {}
            }
        }
        if got.is_empty() {
            return Ok(());
        }
        let n = got.len() as u64;
        match &self.sink {
            Some(sink) => {
                for p in got {
                    let _ = sink.try_send(Arrival::Packet(p));
                }
            }
            None => self
                .received
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(got),
        }
        self.arrivals.send_modify(|c| *c += n);
        Ok(())
    }

    fn make_received(&mut self, p: RtpPacket) -> ReceivedPacket {
        let ssrc = p.header.ssrc;
        let pt = p.header.payload_type;
        let by_mid = self
            .driver
            .rtc
            .direct_api()
            .stream_rx(&ssrc)
            .map(|s| s.mid())
            .and_then(|mid| self.driver.rtc.media(mid).map(|m| m.kind()));
        let kind = by_mid.unwrap_or_else(|| {
            let audio = self
                .driver
                .rtc
                .codec_config()
                .params()
                .iter()
                .any(|c| c.pt() == pt && c.spec().codec.is_audio());
            if audio {
                MediaKind::Audio
            } else {
                MediaKind::Video
            }
        });
        ReceivedPacket {
            kind,
            pt: *pt,
            seq: *p.seq_no,
            timestamp: p.header.timestamp,
            marker: p.header.marker,
            ssrc: *ssrc,
            payload: p.payload,
            at: p.timestamp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_recvonly_both_codecs() {
        let sdp = viewer_offer(&ViewerOptions::default()).unwrap();
        let m: Vec<_> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m.len(), 2, "{sdp}");
        assert!(m[0].starts_with("m=audio "), "{sdp}");
        assert!(m[1].starts_with("m=video "), "{sdp}");
        assert_eq!(sdp.matches("a=recvonly").count(), 2, "{sdp}");
        assert!(!sdp.contains("a=sendonly"), "{sdp}");
        assert!(sdp.contains("opus/48000"), "{sdp}");
        assert!(sdp.contains("H264/90000"), "{sdp}");
        assert!(sdp.contains("VP8/90000"), "{sdp}");
        assert!(sdp.contains("typ host"), "{sdp}");
    }

    #[test]
    fn offer_video_only_vp8() {
        let opts = ViewerOptions {
            audio: false,
            video_codecs: vec![VideoCodec::Vp8],
            ..Default::default()
        };
        let sdp = viewer_offer(&opts).unwrap();
        let m: Vec<_> = sdp.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m.len(), 1, "{sdp}");
        assert!(m[0].starts_with("m=video "), "{sdp}");
        assert!(sdp.contains("VP8/90000"), "{sdp}");
        assert!(!sdp.contains("H264"), "{sdp}");
        assert!(sdp.contains("a=recvonly"), "{sdp}");
    }

    #[test]
    fn nothing_to_receive_is_an_error() {
        let opts = ViewerOptions {
            audio: false,
            video: false,
            ..Default::default()
        };
        assert!(matches!(viewer_offer(&opts), Err(ClientError::Sdp(_))));
    }
}
