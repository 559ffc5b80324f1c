//! The WHIP publisher peer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::change::SdpPendingOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast};
use str0m::rtp::RtpWrite;
use str0m::{Event, Rtc, RtcConfig};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::HttpResponse;
use super::media::{self, AUDIO_CLOCK_RATE, CaptureClock};
use super::peer::{self, Driver, PeerStatus, Wake};
use super::restart::{self, PendingRestart, RestartCommand};
use super::simulcast::{Encoding, LayerStats, SimulcastLayer, check_layers, encodings};
use super::{ClientError, VideoCodec, install_crypto_provider};

/// Payload types of the one H.264 format the publisher offers, so the answer is
/// unambiguous (VP8 uses str0m's default 96/97).
const PT_H264: u8 = 108;
const PT_H264_RTX: u8 = 109;

/// How a [`WhipPublisher`] behaves.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// The video codec to send, or `None` for an audio-only publisher.
    pub video: Option<VideoCodec>,
    /// Whether to send Opus audio.
    pub audio: bool,
    /// Bearer token for the `Authorization` header.
    pub token: Option<String>,
    /// Local address to bind the UDP socket to (port chosen by the OS).
    pub bind_ip: IpAddr,
    /// Local UDP port (0: the OS picks one).
    pub bind_port: u16,
    /// Video frames per second.
    pub fps: u32,
    /// Time between periodic keyframes.
    pub keyframe_interval: Duration,
    /// Send a keyframe right after a PLI/FIR arrives.
    pub answer_keyframe_requests: bool,
    /// Rewrites the offer before it is POSTed (conformance checks of how a server
    /// takes `a=setup:active`, simulcast, ...). The local `Rtc` keeps its own offer,
    /// so a rewrite must leave the session usable.
    pub offer_filter: Option<fn(&str) -> String>,
    /// Audio is stamped as captured this long before it is sent (an encoder whose
    /// audio leaves after the video of the same moment); the publisher's sender
    /// reports say so. Zero by default.
    pub audio_capture_lead: Duration,
    /// The `profile-level-id` the H.264 offer signals (the synthetic bitstream stays
    /// Constrained Baseline): `0x42e01f` by default, `0x42001e` to label it like
    /// FFmpeg's WHIP muxer.
    pub h264_profile_level_id: u32,
    /// Send the video as these simulcast layers (RFC 8853), in this order in
    /// `a=simulcast:send`; `None` (the default) sends one encoding. Each layer is its
    /// own SSRC with its own synthetic stream (see [`SimulcastLayer`]). If the answer
    /// accepts only some rids, only those are sent; if it declines simulcast, the layer
    /// with the highest bit rate is sent as the one encoding.
    pub simulcast: Option<Vec<SimulcastLayer>>,
}

impl Default for PublisherOptions {
    fn default() -> Self {
        PublisherOptions {
            video: Some(VideoCodec::H264),
            audio: true,
            token: None,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            bind_port: 0,
            fps: 30,
            keyframe_interval: Duration::from_secs(2),
            answer_keyframe_requests: true,
            offer_filter: None,
            audio_capture_lead: Duration::ZERO,
            h264_profile_level_id: 0x42e01f,
            simulcast: None,
        }
    }
}

/// A snapshot of what a publisher has done.
#[derive(Debug, Clone, Default)]
pub struct PublisherStats {
    /// ICE and DTLS are up and the peer is not closed.
    pub connected: bool,
    /// Video RTP packets handed to str0m (all layers).
    pub video_packets_sent: u64,
    /// Audio RTP packets handed to str0m.
    pub audio_packets_sent: u64,
    /// Video frames sent (with simulcast: pictures captured, each sent on every layer).
    pub video_frames_sent: u64,
    /// Keyframes sent (periodic, forced and on request), summed over layers.
    pub keyframes_sent: u64,
    /// When each PLI/FIR from the server arrived.
    pub keyframe_requests: Vec<Instant>,
    /// Frame number of the last video frame sent.
    pub last_video_frame: Option<u64>,
    /// Frame number of the last audio frame sent.
    pub last_audio_frame: Option<u64>,
    /// Payload type the video is sent with.
    pub video_pt: Option<u8>,
    /// Payload type the audio is sent with.
    pub audio_pt: Option<u8>,
    /// One entry per simulcast layer being sent, in the order of
    /// [`PublisherOptions::simulcast`]. Empty for a single encoding, also when the
    /// answer declined simulcast.
    pub layers: Vec<LayerStats>,
}

impl PublisherStats {
    /// The figures of the layer with this RID, if it is being sent.
    pub fn layer(&self, rid: &str) -> Option<&LayerStats> {
        self.layers.iter().find(|l| l.rid == rid)
    }
}

enum Command {
    Keyframe,
    Restart(RestartCommand),
}

/// A WHIP publisher: a background task owns the `Rtc` and socket and sends
/// synthetic media (see [`super::media`]) once ICE and DTLS are up.
///
/// Dropping the handle stops the task without a DELETE, like [`WhipPublisher::abort`].
pub struct WhipPublisher {
    offer_sdp: String,
    location: String,
    etag: Option<String>,
    answer_sdp: String,
    token: Option<String>,
    stats: Arc<Mutex<PublisherStats>>,
    status: watch::Receiver<PeerStatus>,
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
    local_addr: SocketAddr,
}

/// Builds the publisher's `Rtc` (RTP mode, only the codecs it will send) with a
/// host candidate for `local`, and creates the offer.
fn build_offer(opts: &PublisherOptions, local: SocketAddr) -> Result<Offer, ClientError> {
    if opts.video.is_none() && !opts.audio {
        return Err(ClientError::Sdp(
            "publisher with neither audio nor video".into(),
        ));
    }
    if let Some(layers) = &opts.simulcast {
        check_layers(layers)?;
    }
    install_crypto_provider();
    let mut cfg = RtcConfig::new().clear_codecs().set_rtp_mode(true);
    if opts.audio {
        cfg = cfg.enable_opus(true, false);
    }
    match opts.video {
        Some(VideoCodec::H264) => {
            cfg.codec_config().add_h264(
                PT_H264.into(),
                Some(PT_H264_RTX.into()),
                true,
                opts.h264_profile_level_id,
            );
        }
        Some(VideoCodec::H265) => {
            cfg = cfg.enable_h265(true);
        }
        Some(VideoCodec::Vp8) => {
            cfg = cfg.enable_vp8(true);
        }
        Some(VideoCodec::Vp9) => {
            cfg = cfg.enable_vp9(true);
        }
        Some(VideoCodec::Av1) => {
            cfg = cfg.enable_av1(true);
        }
        None => {}
    }
    peer::tune_ice(&mut cfg);
    let mut rtc = cfg.build(Instant::now());
    peer::add_host_candidate(&mut rtc, local)?;
    let mut api = rtc.sdp_api();
    let audio_mid = opts
        .audio
        .then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
    // str0m writes `a=rid:<rid> send` per layer and `a=simulcast:send` in this order,
    // and after the answer has one send stream (SSRC, RTX SSRC) per layer.
    let simulcast = opts.simulcast.as_ref().map(|layers| {
        let mut s = Simulcast::new();
        for l in layers {
            s.add_send_layer(str0m::media::SimulcastLayer::new(&l.rid));
        }
        s
    });
    let video_mid = opts
        .video
        .map(|_| api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast));
    let (offer, pending) = api
        .apply()
        .ok_or_else(|| ClientError::Sdp("no offer made".into()))?;
    peer::drain_offline(&mut rtc)?;
    Ok(Offer {
        rtc,
        sdp: offer.to_sdp_string(),
        pending,
        audio_mid,
        video_mid,
    })
}

/// A built offer and the `Rtc` it belongs to.
struct Offer {
    rtc: Rtc,
    sdp: String,
    pending: SdpPendingOffer,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
}

/// The SDP offer a publisher with these options would send (host candidate on a
/// placeholder port of `opts.bind_ip`). For conformance tests that tamper with
/// offers; the offer is not usable for a real session.
pub fn publisher_offer(opts: &PublisherOptions) -> Result<String, ClientError> {
    Ok(build_offer(opts, SocketAddr::new(opts.bind_ip, 9))?.sdp)
}

/// The negotiated send side of one m-line.
#[derive(Clone, Copy)]
struct Track {
    mid: Mid,
    pt: Pt,
}

/// Finds the PT of `codec` the answer accepted for `mid`, if the m-line survived.
fn negotiated(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Track> {
    let media = rtc.media(mid)?;
    if media.disabled() {
        return None;
    }
    let cfg = rtc.codec_config();
    let pt = media.remote_pts().iter().copied().find(|pt| {
        cfg.params()
            .iter()
            .any(|p| p.pt() == *pt && p.spec().codec == codec)
    })?;
    Some(Track { mid, pt })
}

impl WhipPublisher {
    /// POSTs the offer to `endpoint_url` (e.g. `http://127.0.0.1:8080/whip/cam1`),
    /// applies the answer and starts the media task. Returns once the 201 is in,
    /// without waiting for ICE; see [`WhipPublisher::wait_connected`].
    pub async fn connect(endpoint_url: &str, opts: PublisherOptions) -> Result<Self, ClientError> {
        let socket =
            tokio::net::UdpSocket::bind(SocketAddr::new(opts.bind_ip, opts.bind_port)).await?;
        let local_addr = socket.local_addr()?;
        let Offer {
            mut rtc,
            sdp,
            pending,
            audio_mid,
            video_mid,
        } = build_offer(&opts, local_addr)?;
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
            false,
        )
        .await?;

        let audio = audio_mid.and_then(|mid| negotiated(&rtc, mid, Codec::Opus));
        let video = opts.video.zip(video_mid).and_then(|(c, mid)| {
            let codec = match c {
                VideoCodec::H264 => Codec::H264,
                VideoCodec::H265 => Codec::H265,
                VideoCodec::Vp8 => Codec::Vp8,
                VideoCodec::Vp9 => Codec::Vp9,
                VideoCodec::Av1 => Codec::Av1,
            };
            negotiated(&rtc, mid, codec).map(|t| (c, t))
        });
        if audio.is_none() && video.is_none() {
            // Best effort: tell the server we are gone.
            let _ = peer::delete_session(&sig.location, opts.token.as_deref()).await;
            return Err(ClientError::Sdp(
                "answer accepted none of the offered media".into(),
            ));
        }

        let (encodings, layers) = match video {
            Some((_, track)) => encodings(
                &mut rtc,
                track.mid,
                opts.simulcast.as_deref(),
                opts.fps,
                opts.keyframe_interval,
            ),
            None => (Vec::new(), Vec::new()),
        };
        let stats = Arc::new(Mutex::new(PublisherStats {
            video_pt: video.map(|(_, t)| *t.pt),
            audio_pt: audio.map(|t| *t.pt),
            layers,
            ..Default::default()
        }));
        let (status_tx, status_rx) = watch::channel(PeerStatus::default());
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let mut driver = Driver::new(rtc, socket, status_tx)?;
        driver.remote_sdp = sig.answer_sdp.clone();
        let task = PublisherTask {
            driver,
            opts: opts.clone(),
            audio,
            video,
            stats: stats.clone(),
            encodings,
            audio_seq: rand::random_range(0..30_000),
            audio_clock: CaptureClock::new(AUDIO_CLOCK_RATE, rand::random()),
            video_frame: 0,
            audio_frame: 0,
            restart: None,
        };
        let task = tokio::spawn(task.run(cmd_rx));
        Ok(WhipPublisher {
            offer_sdp,
            location: sig.location,
            etag: sig.etag,
            answer_sdp: sig.answer_sdp,
            token: opts.token,
            stats,
            status: status_rx,
            commands: cmd_tx,
            task,
            local_addr,
        })
    }

    /// The absolute URL of the WHIP session (the resolved `Location`).
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

    /// The local UDP address of the peer.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits until ICE and DTLS are up.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), ClientError> {
        peer::wait_connected(&self.status, timeout).await
    }

    /// ICE+DTLS are up and the peer is neither closed nor ICE-disconnected.
    pub fn is_connected(&self) -> bool {
        self.status.borrow().is_up() && !self.task.is_finished()
    }

    /// A snapshot of the publisher's counters.
    pub fn stats(&self) -> PublisherStats {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
        s.connected = self.is_connected();
        s
    }

    /// Forces a keyframe now (sent as soon as the peer is connected).
    pub fn send_keyframe(&self) {
        let _ = self.commands.send(Command::Keyframe);
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

    /// Stops sending and drops the peer WITHOUT a DELETE (simulates a crash or
    /// network loss).
    pub fn abort(self) {
        drop(self);
    }
}

impl std::fmt::Debug for WhipPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhipPublisher")
            .field("location", &self.location)
            .field("local_addr", &self.local_addr)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Drop for WhipPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Writes one packet to the send stream of `mid` (and of the simulcast layer `rid`);
/// false if there is none. The caller must drain the `Rtc` afterwards.
fn write_rtp(rtc: &mut Rtc, mid: Mid, rid: Option<Rid>, w: RtpWrite) -> bool {
    let mut api = rtc.direct_api();
    match api.stream_tx_by_mid(mid, rid) {
        Some(tx) => {
            tx.write_rtp(w);
            true
        }
        None => false,
    }
}

struct PublisherTask {
    driver: Driver,
    opts: PublisherOptions,
    audio: Option<Track>,
    video: Option<(VideoCodec, Track)>,
    stats: Arc<Mutex<PublisherStats>>,
    /// The video's encodings (none without video).
    encodings: Vec<Encoding>,
    audio_seq: u64,
    audio_clock: CaptureClock,
    video_frame: u64,
    audio_frame: u64,
    /// An ICE restart waiting for the server's answer.
    restart: Option<PendingRestart>,
}

impl PublisherTask {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        match self.run_inner(&mut commands).await {
            Ok(()) => self.driver.close("stopped"),
            Err(e) => {
                tracing::debug!("publisher task ended: {e}");
                self.driver.close(&e.to_string());
            }
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, PublisherStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run_inner(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), ClientError> {
        let fps = self.opts.fps.max(1);
        let mut video_iv = tokio::time::interval(Duration::from_secs(1) / fps);
        video_iv.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut audio_iv = tokio::time::interval(Duration::from_millis(20));
        audio_iv.set_missed_tick_behavior(MissedTickBehavior::Skip);

        // str0m starts its ICE agent on the first timeout input; without it a peer
        // whose DTLS role is passive (no DTLS timer) would never poll again.
        self.driver.handle_timeout()?;
        let mut ticking = false;
        loop {
            self.drain().await?;
            if !self.driver.rtc.is_alive() {
                self.driver.close("rtc no longer alive");
                return Ok(());
            }
            let connected = self.driver.rtc.is_connected();
            if connected && !ticking {
                // Capture starts now, not at the deadline the timers were made with.
                ticking = true;
                video_iv.reset_immediately();
                audio_iv.reset_immediately();
            }
            let keyframe_wanted = self.encodings.iter().any(|e| e.keyframe_wanted);
            if keyframe_wanted && connected && self.video.is_some() {
                self.send_video_frame(Instant::now()).await?;
            }

            let d = &mut self.driver;
            let wake = peer::next_wake(
                &d.socket,
                &mut d.buf,
                d.next_timeout,
                commands,
                (connected && self.video.is_some()).then_some(&mut video_iv),
                (connected && self.audio.is_some()).then_some(&mut audio_iv),
            )
            .await;
            match wake {
                Wake::Datagram(n, src) => self.driver.handle_wake_input(n, src)?,
                Wake::Timeout => self.driver.handle_timeout()?,
                Wake::Command(None) => return Ok(()),
                Wake::Command(Some(Command::Keyframe)) => {
                    for e in &mut self.encodings {
                        e.keyframe_wanted = true;
                    }
                }
                Wake::Command(Some(Command::Restart(step))) => {
                    step.run(&mut self.driver, &mut self.restart).await
                }
                Wake::VideoTick(at) => self.send_video_frame(at).await?,
                Wake::AudioTick(at) => self.send_audio_frame(at).await?,
            }
        }
    }

    /// Writes one video frame captured at `now` on every encoding, draining after
    /// every packet. An encoding's frame is a keyframe when one is wanted there (a
    /// request or command), on its first frame, and after the keyframe interval.
    async fn send_video_frame(&mut self, now: Instant) -> Result<(), ClientError> {
        let Some((codec, track)) = self.video else {
            return Ok(());
        };
        let frame = self.video_frame;
        self.video_frame += 1;
        for i in 0..self.encodings.len() {
            self.send_encoding_frame(i, codec, track, frame, now)
                .await?;
        }
        let mut s = self.stats();
        s.video_frames_sent += 1;
        s.last_video_frame = Some(frame);
        Ok(())
    }

    /// Writes picture `frame` on encoding `i`.
    async fn send_encoding_frame(
        &mut self,
        i: usize,
        codec: VideoCodec,
        track: Track,
        frame: u64,
        now: Instant,
    ) -> Result<(), ClientError> {
        let interval = self.opts.keyframe_interval;
        let e = &mut self.encodings[i];
        let wanted = std::mem::take(&mut e.keyframe_wanted);
        let keyframe = wanted
            || e.last_keyframe
                .is_none_or(|t| now.duration_since(t) >= interval);
        let ts = e.clock.timestamp(now);
        let packets = match &e.shape {
            Some(shape) => media::layer_frame(codec, shape, frame, keyframe),
            None => media::video_frame(codec, frame, keyframe),
        };
        let (rid, layer) = (e.rid, e.stats);
        let n = packets.len() as u64;
        let mut bytes = 0;
        for p in packets {
            let e = &mut self.encodings[i];
            let seq = e.seq;
            e.seq += 1;
            bytes += p.payload.len() as u64;
            let w = RtpWrite::new(track.pt, seq.into(), ts, now, p.payload)
                .marker(p.marker)
                .nackable(true);
            if !write_rtp(&mut self.driver.rtc, track.mid, rid, w) {
                return Err(ClientError::Rtc("no video send stream".into()));
            }
            self.drain().await?;
        }
        if keyframe {
            self.encodings[i].last_keyframe = Some(now);
        }
        let mut s = self.stats();
        s.video_packets_sent += n;
        if keyframe {
            s.keyframes_sent += 1;
        }
        if let Some(l) = layer.and_then(|l| s.layers.get_mut(l)) {
            l.packets_sent += n;
            l.payload_bytes_sent += bytes;
            l.frames_sent += 1;
            if keyframe {
                l.keyframes_sent += 1;
            }
        }
        Ok(())
    }

    /// Writes one 20 ms Opus frame due at `due` (captured `audio_capture_lead` before).
    async fn send_audio_frame(&mut self, due: Instant) -> Result<(), ClientError> {
        let Some(track) = self.audio else {
            return Ok(());
        };
        let frame = self.audio_frame;
        self.audio_frame += 1;
        let ts = self.audio_clock.timestamp(due);
        let seq = self.audio_seq;
        self.audio_seq += 1;
        let captured = due.checked_sub(self.opts.audio_capture_lead).unwrap_or(due);
        let w = RtpWrite::new(
            track.pt,
            seq.into(),
            ts,
            captured,
            media::opus_packet(frame),
        );
        if !write_rtp(&mut self.driver.rtc, track.mid, None, w) {
            return Err(ClientError::Rtc("no audio send stream".into()));
        }
        self.drain().await?;
        let mut s = self.stats();
        s.audio_packets_sent += 1;
        s.last_audio_frame = Some(frame);
        Ok(())
    }

    /// Drains the `Rtc` and handles its events: keyframe requests are recorded
    /// and, if configured, make the next video frame a keyframe on the encoding they
    /// name.
    async fn drain(&mut self) -> Result<(), ClientError> {
        for e in self.driver.drain().await? {
            if let Event::KeyframeRequest(req) = e {
                tracing::debug!(
                    "keyframe request {:?} for {} rid {:?}",
                    req.kind,
                    req.mid,
                    req.rid
                );
                // str0m names the layer of the SSRC the PLI/FIR was for; a request
                // that names none (or an unknown one) goes to every encoding.
                let named = self.encodings.iter().any(|e| e.rid == req.rid);
                let answer = self.opts.answer_keyframe_requests;
                let mut layers = Vec::new();
                for e in &mut self.encodings {
                    if named && e.rid != req.rid {
                        continue;
                    }
                    e.keyframe_wanted |= answer;
                    layers.extend(e.stats);
                }
                let mut s = self.stats();
                s.keyframe_requests.push(Instant::now());
                for l in layers {
                    if let Some(l) = s.layers.get_mut(l) {
                        l.keyframe_requests += 1;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
