//! The synthetic WHIP publisher: one str0m peer in RTP mode sending the
//! [`crate::payload`] train (H.264-like video, Opus-like audio) in real time.
//!
//! After each datagram leaves the socket its send time goes into the shared
//! [`SendTable`] under the packet's sequence number (read from the clear RTP header),
//! so viewers in the same process measure one-way delay without decrypting.
//!
//! With simulcast ([`PublisherConfig::simulcast`]) the video m-line offers one RID per
//! layer (str0m writes `a=rid` and `a=simulcast:send`); each layer the answer takes is
//! its own SSRC, sequence numbers and RTP timestamp base, all layers sending the same
//! frames. A server that declines simulcast gets the top layer alone.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Rids, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::clock::{self, SendTable};
use crate::payload::{self, AUDIO, MAX_LAYERS, VIDEO, VideoShape};
use crate::rtp::{Class, classify};
use crate::signal::{self, SetupError};

const PT_H264: u8 = 108;
const PT_H264_RTX: u8 = 109;

/// libwebrtc's pacing factor: video leaves at 2.5× the target bit rate.
pub const LIBWEBRTC_PACING: f64 = 2.5;

/// A keyframe is this many times as big as a delta frame.
pub const KEYFRAME_RATIO: u32 = 6;

/// One simulcast layer of the publisher.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Layer {
    /// The RID.
    pub rid: String,
    /// Picture width its keyframes' SPS announces.
    pub width: u16,
    /// Picture height its keyframes' SPS announces.
    pub height: u16,
    /// Its video train.
    pub shape: VideoShape,
}

/// Three simulcast layers, lowest first, with the RIDs and pictures of
/// `wishd::client::SimulcastLayer::three()`. The top one is the single encoding's
/// train of `bitrate` (same fps, keyframe interval and packet size, so figures compare
/// with a run without simulcast); the others get the bit rates of that set scaled to
/// `bitrate` (800 and 200 kbit/s under 2.5 Mbit/s), their packets cut to their frames.
pub fn simulcast_layers(bitrate: u64, fps: u32, gop_secs: f64, packet_size: usize) -> Vec<Layer> {
    let three = wishd::client::SimulcastLayer::three();
    let top = three
        .iter()
        .map(|l| l.bitrate_bps)
        .max()
        .unwrap_or(1)
        .max(1);
    three
        .iter()
        .map(|l| {
            let shape = if l.bitrate_bps == top {
                VideoShape::for_bitrate(bitrate, fps, gop_secs, KEYFRAME_RATIO, packet_size)
            } else {
                let scaled = bitrate * u64::from(l.bitrate_bps) / u64::from(top);
                VideoShape::for_layer(scaled, fps, gop_secs, KEYFRAME_RATIO, packet_size)
            };
            Layer {
                rid: l.rid.clone(),
                width: l.width,
                height: l.height,
                shape,
            }
        })
        .collect()
}

/// How the publisher behaves.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// The WHIP endpoint, e.g. `http://127.0.0.1:8080/whip/bench`.
    pub url: String,
    /// Bearer token.
    pub token: Option<String>,
    /// The video train (without simulcast).
    pub shape: VideoShape,
    /// Audio packets per second (0: no audio).
    pub audio_pps: u32,
    /// Audio payload bytes.
    pub audio_size: usize,
    /// Send a keyframe when the server asks (PLI/FIR), at most once a second.
    pub honor_keyframe_requests: bool,
    /// Video pacing rate as a multiple of the video bit rate (libwebrtc's pacer sends
    /// at 2.5×, so a keyframe takes tens of milliseconds); `None` sends each frame's
    /// packets back to back, as FFmpeg's WHIP muxer does. Audio is never paced.
    pub pacing: Option<f64>,
    /// Send the video as these simulcast layers (at most [`MAX_LAYERS`], order of
    /// `a=simulcast:send`) instead of one encoding of `shape`; see
    /// [`simulcast_layers`].
    pub simulcast: Option<Vec<Layer>>,
}

impl PublisherConfig {
    /// 2.5 Mbit/s, 30 fps, keyframe every 2 s (6× a delta frame), 1200-byte packets,
    /// Opus at 50 packets/s of 80 bytes.
    pub fn standard(url: impl Into<String>) -> Self {
        PublisherConfig {
            url: url.into(),
            token: None,
            shape: VideoShape::for_bitrate(2_500_000, 30, 2.0, KEYFRAME_RATIO, 1200),
            audio_pps: 50,
            audio_size: 80,
            honor_keyframe_requests: false,
            pacing: Some(LIBWEBRTC_PACING),
            simulcast: None,
        }
    }

    /// The train of the top layer (of `shape` without simulcast): what one viewer gets
    /// when the server forwards the best layer.
    pub fn top_shape(&self) -> VideoShape {
        self.simulcast
            .iter()
            .flatten()
            .map(|l| l.shape)
            .max_by(|a, b| a.bitrate().total_cmp(&b.bitrate()))
            .unwrap_or(self.shape)
    }
}

/// Counters of a running publisher.
#[derive(Debug, Default)]
pub struct PublisherCounters {
    /// ICE+DTLS up.
    pub connected: AtomicBool,
    /// The last ICE connection state str0m reported.
    pub ice_state: std::sync::Mutex<Option<IceConnectionState>>,
    /// STUN datagrams from the server.
    pub stun_in: AtomicU64,
    /// DTLS datagrams from the server.
    pub dtls_in: AtomicU64,
    /// Why the peer stopped, when it did by itself.
    pub stopped: std::sync::Mutex<Option<String>>,
    /// Finished (error or stop).
    pub closed: AtomicBool,
    /// Video packets sent (every layer).
    pub video_packets: AtomicU64,
    /// Video packets of the top layer (all video without simulcast): one viewer's
    /// share when the server forwards the best layer.
    pub top_layer_packets: AtomicU64,
    /// Audio packets sent.
    pub audio_packets: AtomicU64,
    /// Keyframes sent (summed over layers).
    pub keyframes: AtomicU64,
    /// PLI/FIR received.
    pub keyframe_requests: AtomicU64,
}

/// A running publisher.
pub struct Publisher {
    location: String,
    token: Option<String>,
    counters: Arc<PublisherCounters>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// POST → 201.
    pub post_time: Duration,
    /// The RIDs of the simulcast layers being sent: empty for one encoding, also when
    /// the server declined simulcast.
    pub layers_sent: Vec<String>,
    /// What the server's answer says about connecting (for [`Publisher::why_not_connected`]).
    answer_summary: String,
}

impl Publisher {
    /// POSTs the offer, applies the answer and starts sending once connected.
    pub async fn start(
        cfg: PublisherConfig,
        table: Arc<SendTable>,
    ) -> Result<Publisher, SetupError> {
        wishd::client::install_crypto_provider();
        let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)).await?;
        let local = socket.local_addr()?;
        let mut rcfg = RtcConfig::new().clear_codecs().set_rtp_mode(true);
        if cfg.audio_pps > 0 {
            rcfg = rcfg.enable_opus(true, false);
        }
        rcfg.codec_config()
            .add_h264(PT_H264.into(), Some(PT_H264_RTX.into()), true, 0x42e01f);
        let mut rtc = rcfg.build(Instant::now());
        let c = Candidate::host(local, "udp").map_err(|e| SetupError::Rtc(e.to_string()))?;
        rtc.add_local_candidate(c);
        let simulcast = match cfg.simulcast.as_deref() {
            Some([]) => return Err(SetupError::Sdp("simulcast without layers".into())),
            Some(layers) if layers.len() > usize::from(MAX_LAYERS) => {
                return Err(SetupError::Sdp(format!(
                    "{} simulcast layers, at most {MAX_LAYERS}",
                    layers.len()
                )));
            }
            Some(layers) => {
                let mut s = Simulcast::new();
                for l in layers {
                    s.add_send_layer(SimulcastLayer::new(&l.rid));
                }
                Some(s)
            }
            None => None,
        };
        let mut api = rtc.sdp_api();
        let audio_mid = (cfg.audio_pps > 0)
            .then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let video_mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| SetupError::Sdp("no offer".into()))?;
        signal::drain_offline(&mut rtc)?;
        let sig = signal::post_offer(
            &mut rtc,
            pending,
            offer.to_sdp_string(),
            &cfg.url,
            cfg.token.as_deref(),
        )
        .await?;
        let answer_summary = connect_summary(&sig.answer);
        let Some(video) = track(&rtc, video_mid, Codec::H264) else {
            let _ = signal::delete(&sig.location, cfg.token.as_deref()).await;
            return Err(SetupError::Sdp("the answer refused H.264 video".into()));
        };
        let audio = audio_mid.and_then(|m| track(&rtc, m, Codec::Opus));
        let ts_base = rand::random();
        let (layers, simulcast_taken) = layers_to_send(&rtc, &cfg, video_mid, ts_base);
        let layers_sent = match simulcast_taken {
            true => layers.iter().map(|l| l.name.clone()).collect(),
            false => Vec::new(),
        };
        let counters = Arc::new(PublisherCounters::default());
        let (stop, stop_rx) = watch::channel(false);
        let task = Task {
            rtc,
            socket,
            local,
            cfg: cfg.clone(),
            table,
            counters: counters.clone(),
            video,
            layers,
            audio,
            audio_seq: u64::from(rand::random::<u16>() & 0x3fff) + 1,
            ts_base,
            frame: 0,
            audio_frame: 0,
            next_timeout: Instant::now(),
            paced: VecDeque::new(),
            next_paced: Instant::now(),
        };
        let task = tokio::spawn(task.run(stop_rx));
        Ok(Publisher {
            location: sig.location,
            token: cfg.token,
            counters,
            stop,
            task,
            post_time: sig.post_time,
            layers_sent,
            answer_summary,
        })
    }

    /// Counters.
    pub fn counters(&self) -> &PublisherCounters {
        &self.counters
    }

    /// The WHIP session URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Waits until ICE and DTLS are up (false on timeout or close).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.counters.connected.load(Ordering::Relaxed) {
                return true;
            }
            if self.counters.closed.load(Ordering::Relaxed) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Why the peer is not connected, in words: the ICE state, what came back from
    /// the server, what its answer offered to connect to, and the error that stopped
    /// the peer, if one did.
    pub fn why_not_connected(&self) -> String {
        let c = &self.counters;
        let ice = c
            .ice_state
            .lock()
            .map(|s| s.map_or_else(|| "not started".to_owned(), |s| format!("{s:?}")))
            .unwrap_or_default();
        let mut why = format!(
            "ICE {ice}; from the server {} STUN and {} DTLS datagrams; the answer: {}",
            c.stun_in.load(Ordering::Relaxed),
            c.dtls_in.load(Ordering::Relaxed),
            self.answer_summary
        );
        if let Ok(s) = c.stopped.lock()
            && let Some(e) = s.as_deref()
        {
            why.push_str("; stopped: ");
            why.push_str(e);
        }
        why
    }

    /// Stops sending and DELETEs the session.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = signal::delete(&self.location, self.token.as_deref()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
    }
}

#[derive(Clone, Copy)]
struct Track {
    mid: Mid,
    pt: Pt,
    ssrc: u32,
}

fn track(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Track> {
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
    Some(Track { mid, pt, ssrc: 0 })
}

/// One encoding of the video: the single one, or a simulcast layer.
struct LayerTx {
    /// The RID (`None`: one encoding without simulcast).
    rid: Option<Rid>,
    /// The RID as configured (empty without simulcast).
    name: String,
    /// The layer's index in [`PublisherConfig::simulcast`] (0 without simulcast): in
    /// the marker and the [`SendTable`] track.
    index: u8,
    shape: VideoShape,
    /// The SPS of the layer's keyframes (`None`: the single encoding's).
    sps: Option<Vec<u8>>,
    /// The extended sequence number of the next packet made (paced packets get theirs
    /// when queued, so this runs ahead of the wire by the queue).
    seq: u64,
    /// The layer's own RTP timestamp base, as libwebrtc's layers have.
    ts_base: u32,
    /// Learnt from str0m at the first write.
    ssrc: u32,
    /// The layer whose packets one viewer gets when the server forwards the best.
    top: bool,
    last_keyframe: Option<Instant>,
    keyframe_wanted: bool,
}

impl LayerTx {
    fn new(rid: Option<Rid>, index: u8, shape: VideoShape, ts_base: u32) -> Self {
        LayerTx {
            rid,
            name: String::new(),
            index,
            shape,
            sps: None,
            seq: u64::from(rand::random::<u16>() & 0x3fff) + 1,
            ts_base,
            ssrc: 0,
            top: true,
            last_keyframe: None,
            keyframe_wanted: false,
        }
    }
}

/// The encodings to send after the answer, and whether they are simulcast layers the
/// answer took: one of `cfg.shape` without simulcast; the layers whose RIDs the
/// answer took; the top layer alone if it declined simulcast (str0m made a send
/// stream per offered RID and none without, so that one is the top layer's).
fn layers_to_send(
    rtc: &Rtc,
    cfg: &PublisherConfig,
    mid: Mid,
    ts_base: u32,
) -> (Vec<LayerTx>, bool) {
    let Some(layers) = cfg.simulcast.as_deref() else {
        return (vec![LayerTx::new(None, 0, cfg.shape, ts_base)], false);
    };
    let accepted: Vec<Rid> = match rtc.media(mid).map(|m| m.rids_tx()) {
        Some(Rids::Specific(rids)) => rids.clone(),
        _ => Vec::new(),
    };
    let declined = accepted.is_empty();
    let mut sent: Vec<LayerTx> = layers
        .iter()
        .enumerate()
        .filter(|(_, l)| declined || accepted.contains(&Rid::from(l.rid.as_str())))
        .map(|(i, l)| {
            let rid = Some(Rid::from(l.rid.as_str()));
            let mut tx = LayerTx::new(rid, i as u8, l.shape, rand::random());
            tx.name = l.rid.clone();
            tx.sps = Some(wishd::client::media::h264_sps(l.width, l.height));
            tx
        })
        .collect();
    // The top layer of those sent: the only one sent when simulcast was declined.
    let top = sent
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.shape.bitrate().total_cmp(&b.1.shape.bitrate()))
        .map_or(0, |(i, _)| i);
    if declined {
        sent = sent.into_iter().skip(top).take(1).collect();
    }
    for (i, tx) in sent.iter_mut().enumerate() {
        tx.top = declined || i == top;
    }
    (sent, !declined)
}

struct Task {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    cfg: PublisherConfig,
    table: Arc<SendTable>,
    counters: Arc<PublisherCounters>,
    video: Track,
    /// The video's encodings.
    layers: Vec<LayerTx>,
    audio: Option<Track>,
    /// Next extended sequence number of audio.
    audio_seq: u64,
    /// RTP timestamp base of audio (and of video without simulcast).
    ts_base: u32,
    frame: u64,
    audio_frame: u64,
    next_timeout: Instant,
    /// Paced video packets waiting for their turn.
    paced: VecDeque<Paced>,
    /// When the next paced packet may leave.
    next_paced: Instant,
}

/// A video packet waiting for its turn.
struct Paced {
    /// Index into `Task::layers`.
    layer: usize,
    seq: u64,
    payload: Vec<u8>,
    ts: u32,
    /// Capture instant.
    at: Instant,
    marker: bool,
}

impl Task {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        if let Err(e) = self.run_inner(&mut stop).await {
            tracing::warn!("publisher stopped: {e}");
            if let Ok(mut s) = self.counters.stopped.lock() {
                *s = Some(e.to_string());
            }
        }
        self.counters.closed.store(true, Ordering::Relaxed);
    }

    async fn run_inner(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), SetupError> {
        let fps = self.cfg.shape.fps.max(1);
        let mut video_iv = tokio::time::interval(Duration::from_secs(1) / fps);
        video_iv.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let audio_period = Duration::from_secs(1) / self.cfg.audio_pps.max(1);
        let mut audio_iv = tokio::time::interval(audio_period);
        audio_iv.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut buf = vec![0u8; 2048];
        // Time must reach the peer once before it asks for any: a DTLS server (an
        // answer with `a=setup:active`, as live777 sends) has nothing to send and no
        // timer of its own, and ICE starts its checks only on a timeout.
        self.rtc
            .handle_input(Input::Timeout(Instant::now()))
            .map_err(|e| SetupError::Rtc(e.to_string()))?;
        self.drain().await?;
        loop {
            if !self.rtc.is_alive() {
                return Err(SetupError::Rtc("peer connection closed".into()));
            }
            let connected = self.counters.connected.load(Ordering::Relaxed);
            let audio_on = connected && self.audio.is_some();
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, _)) = r {
                        match classify(&buf[..n]) {
                            Class::Stun => self.counters.stun_in.fetch_add(1, Ordering::Relaxed),
                            Class::Dtls => self.counters.dtls_in.fetch_add(1, Ordering::Relaxed),
                            _ => 0,
                        };
                    }
                    if let Ok((n, src)) = r
                        && let Ok(recv) = Receive::new(Protocol::Udp, src, self.local, &buf[..n]) {
                        self.rtc
                            .handle_input(Input::Receive(Instant::now(), recv))
                            .map_err(|e| SetupError::Rtc(e.to_string()))?;
                    }
                }
                _ = video_iv.tick(), if connected => self.send_video_frame().await?,
                _ = tokio::time::sleep_until(self.next_paced.into()), if !self.paced.is_empty() => {
                    self.send_paced().await?
                }
                _ = audio_iv.tick(), if audio_on => self.send_audio().await?,
                _ = tokio::time::sleep_until(self.next_timeout.into()) => {
                    self.rtc
                        .handle_input(Input::Timeout(Instant::now()))
                        .map_err(|e| SetupError::Rtc(e.to_string()))?;
                }
            }
            self.drain().await?;
        }
    }

    /// Makes one frame on every layer; a layer's frame is a keyframe at the keyframe
    /// interval (all layers at once) or on a request for it (at most once a second).
    async fn send_video_frame(&mut self) -> Result<(), SetupError> {
        let now = Instant::now();
        let now_ns = clock::now_ns();
        let frame = self.frame;
        self.frame += 1;
        for (i, l) in self.layers.iter_mut().enumerate() {
            let periodic = frame.is_multiple_of(u64::from(l.shape.gop_frames.max(1)));
            let requested = l.keyframe_wanted
                && l.last_keyframe
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
            let keyframe = periodic || requested;
            if keyframe {
                l.keyframe_wanted = false;
                l.last_keyframe = Some(now);
                self.counters.keyframes.fetch_add(1, Ordering::Relaxed);
            }
            let step = 90_000 / l.shape.fps.max(1);
            let ts = l.ts_base.wrapping_add((frame as u32).wrapping_mul(step));
            let payloads = match &l.sps {
                Some(sps) => payload::layer_frame(&l.shape, keyframe, l.seq, now_ns, l.index, sps),
                None => payload::video_frame(&l.shape, keyframe, l.seq, now_ns),
            };
            let n = payloads.len();
            for (k, p) in payloads.into_iter().enumerate() {
                self.paced.push_back(Paced {
                    layer: i,
                    seq: l.seq,
                    payload: p,
                    ts,
                    at: now,
                    marker: k + 1 == n,
                });
                l.seq += 1;
            }
        }
        if self.cfg.pacing.is_none() {
            while let Some(p) = self.paced.pop_front() {
                self.write_video(p).await?;
            }
        } else if self.next_paced < now {
            self.next_paced = now;
        }
        Ok(())
    }

    /// Sends the paced packets whose turn has come; each one moves the next turn on by
    /// its size at the pacing rate (of all layers together, as libwebrtc's one pacer).
    async fn send_paced(&mut self) -> Result<(), SetupError> {
        let bitrate: f64 = self.layers.iter().map(|l| l.shape.bitrate()).sum();
        let rate = self.cfg.pacing.unwrap_or(LIBWEBRTC_PACING).max(0.1) * bitrate.max(1.0);
        let now = Instant::now();
        while self.next_paced <= now
            && let Some(p) = self.paced.pop_front()
        {
            self.next_paced += pace_interval(p.payload.len(), rate);
            self.write_video(p).await?;
        }
        Ok(())
    }

    async fn write_video(&mut self, p: Paced) -> Result<(), SetupError> {
        let t = self.video;
        let Some(l) = self.layers.get_mut(p.layer) else {
            return Ok(());
        };
        let w = RtpWrite::new(t.pt, p.seq.into(), p.ts, p.at, p.payload)
            .marker(p.marker)
            .nackable(true);
        if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(t.mid, l.rid) {
            l.ssrc = *tx.ssrc();
            tx.write_rtp(w);
        }
        let top = l.top;
        self.drain().await?;
        self.counters.video_packets.fetch_add(1, Ordering::Relaxed);
        if top {
            self.counters
                .top_layer_packets
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn send_audio(&mut self) -> Result<(), SetupError> {
        let Some(t) = self.audio else {
            return Ok(());
        };
        let now = Instant::now();
        let seq = self.audio_seq;
        self.audio_seq += 1;
        let step = 48_000 / self.cfg.audio_pps.max(1);
        let ts = self
            .ts_base
            .wrapping_add((self.audio_frame as u32).wrapping_mul(step));
        self.audio_frame += 1;
        let p = payload::audio_packet(seq, clock::now_ns(), self.cfg.audio_size);
        if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(t.mid, None) {
            if let Some(a) = self.audio.as_mut() {
                a.ssrc = *tx.ssrc();
            }
            tx.write_rtp(RtpWrite::new(t.pt, seq.into(), ts, now, p));
        }
        self.drain().await?;
        self.counters.audio_packets.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Polls to a timeout, sending datagrams and recording the send time of each
    /// media packet by the sequence number in its clear header.
    async fn drain(&mut self) -> Result<(), SetupError> {
        loop {
            match self
                .rtc
                .poll_output()
                .map_err(|e| SetupError::Rtc(e.to_string()))?
            {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return Ok(());
                }
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                    let sent = clock::now_ns();
                    if let Class::Rtp(h) = classify(&t.contents) {
                        if let Some(l) = self.layers.iter().find(|l| l.ssrc == h.ssrc) {
                            let track = clock::track(VIDEO, l.index);
                            self.table.record(track, unwrap_seq(l.seq, h.seq), sent);
                        } else if let Some(a) = self.audio
                            && h.ssrc == a.ssrc
                        {
                            let track = clock::track(AUDIO, 0);
                            self.table
                                .record(track, unwrap_seq(self.audio_seq, h.seq), sent);
                        }
                    }
                }
                Output::Event(e) => match e {
                    Event::Connected => self.counters.connected.store(true, Ordering::Relaxed),
                    Event::IceConnectionStateChange(state) => {
                        if let Ok(mut s) = self.counters.ice_state.lock() {
                            *s = Some(state);
                        }
                    }
                    Event::KeyframeRequest(req) => {
                        self.counters
                            .keyframe_requests
                            .fetch_add(1, Ordering::Relaxed);
                        // str0m names the layer of the SSRC asked; one that names
                        // none (or another) asks every layer.
                        let named = self.layers.iter().any(|l| l.rid == req.rid);
                        for l in &mut self.layers {
                            if !named || l.rid == req.rid {
                                l.keyframe_wanted |= self.cfg.honor_keyframe_requests;
                            }
                        }
                    }
                    Event::Closed => return Err(SetupError::Rtc("closed by the server".into())),
                    _ => {}
                },
            }
        }
    }
}

/// What an answer says about connecting: its DTLS role, ICE lite or full, and its
/// candidates (those of components other than 1 are ignored by str0m, which muxes
/// RTCP).
fn connect_summary(answer: &str) -> String {
    let lines = wishd::sdp::sdp_lines(answer);
    let setup = lines
        .iter()
        .find_map(|l| l.strip_prefix("a=setup:"))
        .unwrap_or("(none)");
    let lite = lines.contains(&"a=ice-lite");
    let candidates: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .collect();
    format!(
        "a=setup:{setup}, {}, {} candidate(s) [{}]",
        if lite { "ICE lite" } else { "full ICE" },
        candidates.len(),
        candidates.join("; ")
    )
}

/// The time a packet with `payload` bytes occupies at `rate` bits/s (RTP, UDP and IP
/// headers included).
fn pace_interval(payload: usize, rate: f64) -> Duration {
    Duration::from_secs_f64((payload + 40) as f64 * 8.0 / rate.max(1.0))
}

/// The extended sequence number (at most `next - 1`) whose low 16 bits are `seq16`.
fn unwrap_seq(next: u64, seq16: u16) -> u64 {
    let last = next.saturating_sub(1);
    last - u64::from((last as u16).wrapping_sub(seq16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_keyframe_takes_tens_of_milliseconds_like_libwebrtcs() {
        let shape = VideoShape::for_bitrate(2_500_000, 30, 2.0, 6, 1200);
        let rate = LIBWEBRTC_PACING * shape.bitrate();
        let keyframe: Duration = (0..shape.keyframe_packets)
            .map(|_| pace_interval(shape.packet_size, rate))
            .sum();
        let delta: Duration = (0..shape.delta_packets)
            .map(|_| pace_interval(shape.packet_size, rate))
            .sum();
        assert!(
            keyframe > Duration::from_millis(60) && keyframe < Duration::from_millis(90),
            "{keyframe:?}"
        );
        // A delta frame leaves well within its 33 ms frame interval.
        assert!(delta < Duration::from_millis(20), "{delta:?}");
    }

    #[test]
    fn unwraps_recent_sequence_numbers() {
        assert_eq!(unwrap_seq(70_001, 70_000u64 as u16), 70_000);
        assert_eq!(unwrap_seq(70_001, 69_990u64 as u16), 69_990);
        assert_eq!(unwrap_seq(65_538, 65_535), 65_535);
    }
}
