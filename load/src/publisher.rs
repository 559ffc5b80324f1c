//! The synthetic WHIP publisher: one str0m peer in RTP mode sending the
//! [`crate::payload`] train (H.264-like video, Opus-like audio) in real time.
//!
//! After each datagram leaves the socket its send time goes into the shared
//! [`SendTable`] under the packet's sequence number (read from the clear RTP header),
//! so viewers in the same process measure one-way delay without decrypting.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::clock::{self, SendTable};
use crate::payload::{self, VideoShape};
use crate::rtp::{Class, classify};
use crate::signal::{self, SetupError};

const PT_H264: u8 = 108;
const PT_H264_RTX: u8 = 109;

/// libwebrtc's pacing factor: video leaves at 2.5× the target bit rate.
pub const LIBWEBRTC_PACING: f64 = 2.5;

/// How the publisher behaves.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// The WHIP endpoint, e.g. `http://127.0.0.1:8080/whip/bench`.
    pub url: String,
    /// Bearer token.
    pub token: Option<String>,
    /// The video train.
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
}

impl PublisherConfig {
    /// 2.5 Mbit/s, 30 fps, keyframe every 2 s (6× a delta frame), 1200-byte packets,
    /// Opus at 50 packets/s of 80 bytes.
    pub fn standard(url: impl Into<String>) -> Self {
        PublisherConfig {
            url: url.into(),
            token: None,
            shape: VideoShape::for_bitrate(2_500_000, 30, 2.0, 6, 1200),
            audio_pps: 50,
            audio_size: 80,
            honor_keyframe_requests: false,
            pacing: Some(LIBWEBRTC_PACING),
        }
    }
}

/// Counters of a running publisher.
#[derive(Debug, Default)]
pub struct PublisherCounters {
    /// ICE+DTLS up.
    pub connected: AtomicBool,
    /// Finished (error or stop).
    pub closed: AtomicBool,
    /// Video packets sent.
    pub video_packets: AtomicU64,
    /// Audio packets sent.
    pub audio_packets: AtomicU64,
    /// Keyframes sent.
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
        let mut api = rtc.sdp_api();
        let audio_mid = (cfg.audio_pps > 0)
            .then(|| api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let video_mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
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
        let Some(video) = track(&rtc, video_mid, Codec::H264) else {
            let _ = signal::delete(&sig.location, cfg.token.as_deref()).await;
            return Err(SetupError::Sdp("the answer refused H.264 video".into()));
        };
        let audio = audio_mid.and_then(|m| track(&rtc, m, Codec::Opus));
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
            audio,
            video_seq: u64::from(rand::random::<u16>() & 0x3fff) + 1,
            audio_seq: u64::from(rand::random::<u16>() & 0x3fff) + 1,
            ts_base: rand::random(),
            frame: 0,
            audio_frame: 0,
            last_keyframe: None,
            keyframe_wanted: false,
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

struct Task {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    cfg: PublisherConfig,
    table: Arc<SendTable>,
    counters: Arc<PublisherCounters>,
    video: Track,
    audio: Option<Track>,
    /// Next extended sequence numbers.
    video_seq: u64,
    audio_seq: u64,
    ts_base: u32,
    frame: u64,
    audio_frame: u64,
    last_keyframe: Option<Instant>,
    keyframe_wanted: bool,
    next_timeout: Instant,
    /// Paced video packets waiting for their turn: (payload, timestamp, capture
    /// instant, marker).
    paced: VecDeque<(Vec<u8>, u32, Instant, bool)>,
    /// When the next paced packet may leave.
    next_paced: Instant,
}

impl Task {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        if let Err(e) = self.run_inner(&mut stop).await {
            tracing::warn!("publisher stopped: {e}");
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

    async fn send_video_frame(&mut self) -> Result<(), SetupError> {
        let now = Instant::now();
        let periodic = self
            .frame
            .is_multiple_of(u64::from(self.cfg.shape.gop_frames.max(1)));
        let requested = self.keyframe_wanted
            && self
                .last_keyframe
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        let keyframe = periodic || requested;
        if keyframe {
            self.keyframe_wanted = false;
            self.last_keyframe = Some(now);
            self.counters.keyframes.fetch_add(1, Ordering::Relaxed);
        }
        let step = 90_000 / self.cfg.shape.fps.max(1);
        let ts = self
            .ts_base
            .wrapping_add((self.frame as u32).wrapping_mul(step));
        self.frame += 1;
        let first_seq = self.video_seq + self.paced.len() as u64;
        let payloads = payload::video_frame(&self.cfg.shape, keyframe, first_seq, clock::now_ns());
        let n = payloads.len();
        for (i, p) in payloads.into_iter().enumerate() {
            self.paced.push_back((p, ts, now, i + 1 == n));
        }
        if self.cfg.pacing.is_none() {
            while let Some((p, ts, at, marker)) = self.paced.pop_front() {
                self.write_video(p, ts, at, marker).await?;
            }
        } else if self.next_paced < now {
            self.next_paced = now;
        }
        Ok(())
    }

    /// Sends the paced packets whose turn has come; each one moves the next turn on by
    /// its size at the pacing rate.
    async fn send_paced(&mut self) -> Result<(), SetupError> {
        let rate = self.cfg.pacing.unwrap_or(LIBWEBRTC_PACING).max(0.1)
            * self.cfg.shape.bitrate().max(1.0);
        let now = Instant::now();
        while self.next_paced <= now
            && let Some((p, ts, at, marker)) = self.paced.pop_front()
        {
            self.next_paced += pace_interval(p.len(), rate);
            self.write_video(p, ts, at, marker).await?;
        }
        Ok(())
    }

    async fn write_video(
        &mut self,
        p: Vec<u8>,
        ts: u32,
        at: Instant,
        marker: bool,
    ) -> Result<(), SetupError> {
        let t = self.video;
        let seq = self.video_seq;
        self.video_seq += 1;
        let w = RtpWrite::new(t.pt, seq.into(), ts, at, p)
            .marker(marker)
            .nackable(true);
        if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(t.mid, None) {
            self.video.ssrc = *tx.ssrc();
            tx.write_rtp(w);
        }
        self.drain().await?;
        self.counters.video_packets.fetch_add(1, Ordering::Relaxed);
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
                        if h.ssrc == self.video.ssrc {
                            self.table
                                .record(1, unwrap_seq(self.video_seq, h.seq), sent);
                        } else if let Some(a) = self.audio
                            && h.ssrc == a.ssrc
                        {
                            self.table
                                .record(0, unwrap_seq(self.audio_seq, h.seq), sent);
                        }
                    }
                }
                Output::Event(e) => match e {
                    Event::Connected => self.counters.connected.store(true, Ordering::Relaxed),
                    Event::KeyframeRequest(_) => {
                        self.counters
                            .keyframe_requests
                            .fetch_add(1, Ordering::Relaxed);
                        if self.cfg.honor_keyframe_requests {
                            self.keyframe_wanted = true;
                        }
                    }
                    Event::Closed => return Err(SetupError::Rtc("closed by the server".into())),
                    _ => {}
                },
            }
        }
    }
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
