//! RTP ingest: cameras, encoders, ffmpeg and GStreamer push plain RTP over UDP into a
//! named stream, like a Janus streaming mountpoint takes it.
//!
//! Each configured stream gets one tokio task ([`RtpIngest`]) owning its UDP sockets
//! (RTP per medium, RTCP on port + 1 when it can be bound, RTCP muxed always accepted).
//! The task is the stream's source in the [`Directory`] (a WHIP publisher gets 409) and
//! feeds the same cross-worker path a WHIP publisher uses: every packet goes as one
//! `Arc<SourcePacket>` to each worker with viewers of the stream. Video packets also go
//! into the stream's keyframe cache, from which a new viewer starts at once (a camera
//! cannot be asked for a keyframe). RTCP sender reports set each packet's capture
//! instant ([`SenderClock`]), which viewers' sender reports then carry (audio/video
//! sync).
//!
//! H.264 IDRs that come without SPS/PPS get them in front ([`h264`]).
//!
//! Parsing ([`rtp`]), sequence handling ([`source`]), SDP files ([`sdp_file`]) and the
//! parameter-set injector ([`h264`]) are sans-IO and unit-tested; nothing here panics
//! on network input.

pub(crate) mod h264;
pub(crate) mod numbering;
pub mod pull;
pub mod rtsp;
pub(crate) mod sdp_file;
pub mod upstream;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::media::MediaKind;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::{RtpEntry, RtpMediumEntry};
use crate::core::{
    CACHE_BYTES, CodecKind, KeyframeCache, RtpIn, Source, SourcePacket, SourceTrack,
};
use crate::directory::{Directory, DirectoryError, Stream};
use crate::media::{MediaCounters, WorkerMsg, send_to_viewer_workers};
use crate::sdp::{ChosenCodec, OfferedCodec};
use crate::wire::ntp::ntp_to_nanos;
use crate::wire::{demux, rtcp, rtp};
use numbering::{MediumState, Reject};

/// Largest datagram accepted; bigger ones are dropped as oversized (a viewer's packet
/// adds SRTP overhead to the payload and must still fit a 1500-byte path).
pub(crate) const MAX_DATAGRAM: usize = 1472;

/// One medium to listen for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MediumSpec {
    /// Audio or video.
    pub(crate) kind: MediaKind,
    /// UDP port of RTP.
    pub(crate) port: u16,
    /// Payload type, rtpmap and fmtp.
    pub(crate) codec: OfferedCodec,
}

/// A resolved RTP ingest entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RtpSourceSpec {
    /// Stream name.
    pub(crate) stream: String,
    /// Address to bind.
    pub(crate) bind: IpAddr,
    /// Multicast group to join.
    pub(crate) multicast_group: Option<Ipv4Addr>,
    /// Interface to join it on.
    pub(crate) multicast_interface: Option<Ipv4Addr>,
    /// Only this sender is accepted.
    pub(crate) allowed_sender: Option<IpAddr>,
    /// The media.
    pub(crate) media: Vec<MediumSpec>,
    /// Viewers may join while the camera sends nothing.
    pub(crate) wait_when_offline: bool,
}

/// The keyframe cache for a camera's video (a zero-sized one for audio only), stale
/// after `silence`.
pub(crate) fn keyframe_cache(media: &[MediumSpec], silence: Duration) -> KeyframeCache {
    match media.iter().find(|m| m.kind == MediaKind::Video) {
        Some(v) => {
            let mut c = KeyframeCache::new(CodecKind::of_name(&v.codec.name), CACHE_BYTES)
                .stale_after(silence);
            c.set_sprop(&v.codec.fmtp);
            c
        }
        None => KeyframeCache::default(),
    }
}

/// The codecs a camera's viewers must match, in the directory's form.
pub(crate) fn chosen_codecs(media: &[MediumSpec]) -> Vec<ChosenCodec> {
    media
        .iter()
        .enumerate()
        .map(|(i, m)| ChosenCodec {
            kind: m.kind,
            mid: i.to_string(),
            codec: m.codec.clone(),
        })
        .collect()
}

fn medium_from_entry(kind: MediaKind, e: &RtpMediumEntry) -> Result<MediumSpec, String> {
    let mut parts = e.rtpmap.split('/');
    let name = parts.next().unwrap_or_default().trim().to_owned();
    let clock_rate: u32 = parts
        .next()
        .and_then(|c| c.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "rtpmap {:?}: expected codec/clock rate[/channels]",
                e.rtpmap
            )
        })?;
    let channels = match parts.next() {
        Some(c) => Some(
            c.trim()
                .parse()
                .map_err(|_| format!("rtpmap {:?}: bad channel count", e.rtpmap))?,
        ),
        None => None,
    };
    if e.pt > 127 {
        return Err(format!("payload type {} is over 127", e.pt));
    }
    Ok(MediumSpec {
        kind,
        port: e.port,
        codec: OfferedCodec {
            pt: e.pt,
            name,
            clock_rate,
            channels,
            fmtp: e.fmtp.clone(),
            rtx_pt: None,
            nack: false,
            pli: false,
            fir: false,
            transport_cc: false,
        },
    })
}

/// Turns a configuration entry into what the listener needs (reads the SDP file).
pub(crate) fn resolve(entry: &RtpEntry) -> Result<RtpSourceSpec, String> {
    let err = |e: String| format!("rtp stream {:?}: {e}", entry.stream);
    if !crate::model::valid_stream_name(&entry.stream) {
        return Err(err("not a valid stream name".into()));
    }
    let mut media = Vec::new();
    let mut address = None;
    if let Some(path) = &entry.sdp {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let file =
            sdp_file::parse_sdp_file(&text).map_err(|e| err(format!("{}: {e}", path.display())))?;
        address = file.address;
        media = file.media;
    }
    for (kind, m) in [
        (MediaKind::Video, &entry.video),
        (MediaKind::Audio, &entry.audio),
    ] {
        if let Some(m) = m {
            media.retain(|x| x.kind != kind);
            media.push(medium_from_entry(kind, m).map_err(err)?);
        }
    }
    if media.is_empty() {
        return Err(err("give an sdp file or a video/audio table".into()));
    }
    for m in &media {
        if !m.codec.is_supported() || m.codec.codec().is_video() != (m.kind == MediaKind::Video) {
            return Err(err(format!(
                "codec {} is not supported for {:?} (H264, H265, VP8, VP9, AV1, opus, PCMU, PCMA)",
                m.codec.name, m.kind
            )));
        }
        if m.port == 0 {
            return Err(err("port 0".into()));
        }
    }
    if media.len() == 2 && media[0].port == media[1].port {
        return Err(err("audio and video need different ports".into()));
    }
    let sdp_group = match address {
        Some(IpAddr::V4(v4)) if v4.is_multicast() => Some(v4),
        _ => None,
    };
    let multicast_group = entry.multicast_group.or(sdp_group);
    let bind = entry
        .bind
        .unwrap_or_else(|| match (multicast_group, address) {
            (Some(g), _) => IpAddr::V4(g),
            (None, Some(a)) if !a.is_multicast() => a,
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        });
    Ok(RtpSourceSpec {
        stream: entry.stream.clone(),
        bind,
        multicast_group,
        multicast_interface: entry.multicast_interface,
        allowed_sender: entry.allowed_sender,
        media,
        wait_when_offline: entry.wait_when_offline,
    })
}

/// Counters of one RTP ingest, shared with tests and logs.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// RTP packets taken into the stream.
    pub packets: AtomicU64,
    /// Datagrams from a sender other than `allowed_sender`.
    pub dropped_sender: AtomicU64,
    /// Datagrams that are not valid RTP (truncated, wrong version, bad padding, empty).
    pub dropped_malformed: AtomicU64,
    /// Datagrams over [`MAX_DATAGRAM`].
    pub dropped_oversized: AtomicU64,
    /// Duplicates.
    pub dropped_duplicate: AtomicU64,
    /// Packets later than the reorder window.
    pub dropped_late: AtomicU64,
    /// Packets of a payload type not configured.
    pub dropped_unknown_pt: AtomicU64,
    /// SSRC changes (camera reboots).
    pub ssrc_changes: AtomicU64,
    /// RTCP sender reports received.
    pub sender_reports: AtomicU64,
    /// True while packets arrive; false after `rtp_timeout` of silence.
    pub online: AtomicBool,
    /// The address the last accepted packet came from (written only when it changes).
    pub last_sender: std::sync::Mutex<Option<SocketAddr>>,
}

impl RtpIngest {
    /// Its name in `/readyz`.
    pub(crate) fn readiness_name(&self) -> String {
        format!("RTP ingest {} ({:?})", self.stream, self.bound)
    }
}

impl IngestCounters {
    /// The address RTP last came from.
    pub(crate) fn sender(&self) -> Option<SocketAddr> {
        *self.last_sender.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running RTP ingest: its counters and bound addresses.
#[derive(Debug, Clone)]
pub struct RtpIngest {
    /// Stream name.
    pub stream: Arc<str>,
    /// Counters.
    pub counters: Arc<IngestCounters>,
    /// Bound RTP addresses, per medium.
    pub bound: Vec<(MediaKind, SocketAddr)>,
}

fn bind_udp(addr: SocketAddr, spec: &RtpSourceSpec) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if spec.multicast_group.is_some() {
        socket.set_reuse_address(true)?;
    }
    let _ = socket.set_recv_buffer_size(4 * 1024 * 1024);
    socket.bind(&addr.into())?;
    if let Some(group) = spec.multicast_group {
        socket.join_multicast_v4(
            &group,
            &spec.multicast_interface.unwrap_or(Ipv4Addr::UNSPECIFIED),
        )?;
    }
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

/// One medium's receive pipeline, whatever carries its packets (UDP sockets here, an
/// RTSP connection in [`rtsp`]): numbering, the track its viewers know, and H.264
/// parameter sets.
pub(crate) struct Pipe {
    spec: MediumSpec,
    /// The medium as its stream's viewers know it.
    track: SourceTrack,
    state: MediumState,
    /// H.264 video: SPS/PPS in front of IDRs that come without them.
    h264: Option<h264::ParameterSetInjector>,
}

impl Pipe {
    /// Takes the medium's packets under `pt` from now on (same codec).
    pub(crate) fn accept_pt(&mut self, pt: u8) {
        self.spec.codec.pt = pt;
        self.state.set_pt(pt);
    }

    pub(crate) fn new(spec: &MediumSpec) -> Pipe {
        let codec = CodecKind::of_name(&spec.codec.name);
        Pipe {
            h264: (spec.kind == MediaKind::Video && codec == CodecKind::H264)
                .then(|| h264::ParameterSetInjector::new(&spec.codec.fmtp)),
            track: SourceTrack {
                kind: spec.kind,
                codec,
                pt: spec.codec.pt,
                clock_rate: spec.codec.clock_rate,
            },
            state: MediumState::new(spec.codec.pt),
            spec: spec.clone(),
        }
    }
}

struct Medium {
    pipe: Pipe,
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
}

/// Binds the sockets of one entry and starts its task.
pub(crate) fn start(
    spec: RtpSourceSpec,
    shared: Arc<Stream>,
    peers: Vec<mpsc::Sender<WorkerMsg>>,
    media_counters: Arc<MediaCounters>,
    timeout: Duration,
    stop: watch::Receiver<bool>,
) -> std::io::Result<(RtpIngest, tokio::task::JoinHandle<()>)> {
    let mut media = Vec::new();
    let mut bound = Vec::new();
    for m in &spec.media {
        let rtp = bind_udp(SocketAddr::new(spec.bind, m.port), &spec)?;
        let rtcp = match m.port.checked_add(1) {
            Some(p) => match bind_udp(SocketAddr::new(spec.bind, p), &spec) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!(stream = %spec.stream, "RTCP port {p} not bound ({e}); RTCP only muxed");
                    None
                }
            },
            None => None,
        };
        bound.push((m.kind, rtp.local_addr()?));
        media.push(Medium {
            pipe: Pipe::new(m),
            rtp,
            rtcp,
        });
    }
    let counters = Arc::new(IngestCounters::default());
    let ingest = RtpIngest {
        stream: shared.name.clone(),
        counters: counters.clone(),
        bound,
    };
    info!(stream = %spec.stream, "RTP ingest listening on {:?}", ingest.bound);
    let task = Task {
        allowed_sender: spec.allowed_sender,
        feed: Feed::new(shared, peers, media_counters, counters),
        timeout,
    };
    let join = tokio::spawn(task.run(media, stop));
    Ok((ingest, join))
}

struct Task {
    allowed_sender: Option<IpAddr>,
    feed: Feed,
    timeout: Duration,
}

/// What a mountpoint's source does with what arrives, however it arrives: sender
/// reports set the capture clock, RTP packets are numbered, completed with parameter
/// sets and handed to every worker with viewers of the stream, and silence takes the
/// stream offline.
pub(crate) struct Feed {
    shared: Arc<Stream>,
    peers: Vec<mpsc::Sender<WorkerMsg>>,
    media_counters: Arc<MediaCounters>,
    counters: Arc<IngestCounters>,
    last_packet: Option<Instant>,
    last_sender: Option<SocketAddr>,
    /// The source pipeline (the sender's wall clock from its RTCP sender reports).
    source: Source,
    /// Reused: the packets one datagram turns into.
    batch: Vec<Arc<SourcePacket>>,
}

async fn recv_opt(s: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match s {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(mut self, mut media: Vec<Medium>, mut stop: watch::Receiver<bool>) {
        // One buffer per socket; bigger than MAX_DATAGRAM so oversized ones are seen.
        let mut bufs = vec![vec![0u8; 65_536]; 4];
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            let [b0, b1, b2, b3] = &mut bufs[..] else {
                return;
            };
            let (m0, m1) = match &media[..] {
                [a] => (a, None),
                [a, b, ..] => (a, Some(b)),
                [] => return,
            };
            let got = tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => { self.check_timeout(Instant::now()); continue; }
                r = m0.rtp.recv_from(b0) => r.map(|(n, a)| (0, false, n, a, &b0[..])),
                r = recv_opt(m0.rtcp.as_ref(), b1) => r.map(|(n, a)| (0, true, n, a, &b1[..])),
                r = recv_opt(m1.map(|m| &m.rtp), b2) => r.map(|(n, a)| (1, false, n, a, &b2[..])),
                r = recv_opt(m1.and_then(|m| m.rtcp.as_ref()), b3) => r.map(|(n, a)| (1, true, n, a, &b3[..])),
            };
            let Ok((index, rtcp_port, len, from, buf)) = got else {
                continue;
            };
            let data = buf.get(..len).unwrap_or_default();
            if let Some(m) = media.get_mut(index) {
                self.on_datagram(&mut m.pipe, rtcp_port, from, data, Instant::now());
            }
        }
    }

    fn check_timeout(&mut self, now: Instant) {
        self.feed.check_timeout(now, self.timeout);
    }

    fn on_datagram(
        &mut self,
        m: &mut Pipe,
        rtcp_port: bool,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
        let c = &self.feed.counters;
        if self.allowed_sender.is_some_and(|a| a != from.ip()) {
            c.dropped_sender.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if data.len() > MAX_DATAGRAM {
            c.dropped_oversized.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if rtcp_port || demux::is_rtcp(data) {
            self.feed.rtcp(data, now);
        } else {
            self.feed.rtp(m, data, Some(from), now);
        }
    }
}

impl Feed {
    pub(crate) fn new(
        shared: Arc<Stream>,
        peers: Vec<mpsc::Sender<WorkerMsg>>,
        media_counters: Arc<MediaCounters>,
        counters: Arc<IngestCounters>,
    ) -> Feed {
        Feed {
            shared,
            peers,
            media_counters,
            counters,
            last_packet: None,
            last_sender: None,
            source: Source::default(),
            batch: Vec::with_capacity(2),
        }
    }

    /// Takes the source offline after `timeout` without a packet.
    pub(crate) fn check_timeout(&mut self, now: Instant, timeout: Duration) {
        let online = self
            .last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < timeout);
        if self.counters.online.swap(online, Ordering::Relaxed) && !online {
            warn!(stream = %self.shared.name, "RTP source offline: nothing for {timeout:?}");
            self.go_offline();
        }
    }

    /// The source is gone (silent, or its connection ended): viewers stay (the
    /// mountpoint is configured) and resume at its next keyframe; a viewer joining
    /// meanwhile gets no stale picture (the cache goes stale by itself after
    /// `source_silence`, which may be longer).
    pub(crate) fn go_offline(&mut self) {
        self.counters.online.store(false, Ordering::Relaxed);
        self.last_packet = None;
        self.shared.events.set_live(false);
        self.shared.clear_keyframe_cache();
    }

    /// An RTCP packet: its sender reports tie the RTP clocks to the sender's.
    pub(crate) fn rtcp(&mut self, data: &[u8], now: Instant) {
        for sr in rtcp::sender_reports(data) {
            self.counters.sender_reports.fetch_add(1, Ordering::Relaxed);
            let ns = ntp_to_nanos(sr.ntp);
            self.source.sender_report(sr.ssrc, ns, sr.rtp_time, now);
        }
    }

    /// A sender report a stack read already (a WHEP upstream's, through str0m).
    pub(crate) fn sender_report(&mut self, ssrc: u32, ns: i128, rtp_time: u32, now: Instant) {
        self.counters.sender_reports.fetch_add(1, Ordering::Relaxed);
        self.source.sender_report(ssrc, ns, rtp_time, now);
    }

    /// An RTP packet of medium `m`, from `from` when that is known.
    pub(crate) fn rtp(
        &mut self,
        m: &mut Pipe,
        data: &[u8],
        from: Option<SocketAddr>,
        now: Instant,
    ) {
        let h = match rtp::parse_rtp(data) {
            Ok(h) => h,
            Err(_) => {
                self.counters
                    .dropped_malformed
                    .fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let payload: Arc<[u8]> =
            Arc::from(data.get(h.payload_start..h.payload_end).unwrap_or_default());
        self.rtp_parsed(m, &h, payload, from, now);
    }

    /// An RTP packet of medium `m` whose header was read already (`h`'s payload
    /// offsets are not used: `payload` is the payload).
    pub(crate) fn rtp_parsed(
        &mut self,
        m: &mut Pipe,
        h: &rtp::RtpHeader,
        payload: Arc<[u8]>,
        from: Option<SocketAddr>,
        now: Instant,
    ) {
        let c = &self.counters;
        let before = m.state.ssrc_changes;
        let (seq, epoch) = match m.state.accept(h) {
            Ok(numbered) => numbered,
            Err(r) => {
                let counter = match r {
                    Reject::Duplicate => &c.dropped_duplicate,
                    Reject::TooLate => &c.dropped_late,
                    Reject::UnknownPt => &c.dropped_unknown_pt,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if m.state.ssrc_changes != before {
            c.ssrc_changes.fetch_add(1, Ordering::Relaxed);
            info!(stream = %self.shared.name, kind = ?m.spec.kind, "SSRC changed (source restarted)");
        }
        c.packets.fetch_add(1, Ordering::Relaxed);
        self.last_packet = Some(now);
        if !c.online.swap(true, Ordering::Relaxed) {
            info!(stream = %self.shared.name, "RTP source online");
            self.shared.events.set_live(true);
        }
        if from.is_some() && self.last_sender != from {
            self.last_sender = from;
            *c.last_sender.lock().unwrap_or_else(|e| e.into_inner()) = from;
        }
        let rtp = RtpIn {
            ssrc: h.ssrc,
            seq,
            timestamp: h.timestamp,
            marker: h.marker,
            epoch,
            layer: 0,
            arrival: now,
            payload,
        };
        let pkt = self.source.packet(&m.track, rtp);
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        match m.h264.as_mut() {
            Some(injector) => injector.process(pkt, &mut batch),
            None => batch.push(Arc::new(pkt)),
        }
        for pkt in batch.drain(..) {
            self.distribute(pkt);
        }
        self.batch = batch;
    }

    fn distribute(&self, pkt: Arc<SourcePacket>) {
        send_to_viewer_workers(&self.peers, &self.shared, &pkt, &self.media_counters, None);
    }
}

/// What a camera source needs from the server.
#[derive(Clone)]
pub(crate) struct Wiring {
    pub(crate) directory: Arc<Directory>,
    pub(crate) peers: Vec<mpsc::Sender<WorkerMsg>>,
    pub(crate) media_counters: Arc<MediaCounters>,
    /// An RTP source silent this long is offline; an RTSP connection without media
    /// this long is ended (`rtp_timeout`).
    pub(crate) timeout: Duration,
    /// The keyframe cache goes stale after this (`source_silence`).
    pub(crate) silence: Duration,
}

/// What feeds a camera's stream.
#[derive(Debug, Clone)]
pub(crate) enum CameraFeed {
    /// The camera pushes RTP to wishd.
    Rtp(RtpIngest),
    /// wishd pulls from the camera's RTSP server.
    Rtsp(rtsp::RtspIngest),
    /// wishd plays the stream from another WHEP server.
    Pull(pull::PullIngest),
}

impl CameraFeed {
    fn stream(&self) -> &str {
        match self {
            CameraFeed::Rtp(r) => &r.stream,
            CameraFeed::Rtsp(r) | CameraFeed::Pull(r) => &r.stream,
        }
    }
}

/// Every camera `config` names (`[[rtp]]`, then `[[rtsp]]`), resolved: SDP and
/// credentials files read through `read`. The error names the camera.
pub(crate) fn configured_cameras(
    config: &crate::config::Config,
    read: &dyn Fn(&std::path::Path) -> std::io::Result<Vec<u8>>,
) -> Result<Vec<CameraSpec>, String> {
    let rtp = config.rtp.iter().map(|e| resolve(e).map(CameraSpec::Rtp));
    let rtsp = config
        .rtsp
        .iter()
        .map(|e| rtsp::resolve(e, read).map(CameraSpec::Rtsp));
    let pulls = config
        .pull
        .iter()
        .map(|e| pull::resolve(e).map(CameraSpec::Pull));
    rtp.chain(rtsp).chain(pulls).collect()
}

/// A camera as the configuration file describes it, resolved (an SDP file or a
/// credentials file read): what a reload compares to tell a changed camera from one
/// that stays.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CameraSpec {
    /// An `[[rtp]]` table.
    Rtp(RtpSourceSpec),
    /// An `[[rtsp]]` table.
    Rtsp(rtsp::RtspSpec),
    /// A `[[pull]]` table.
    Pull(pull::PullSpec),
}

impl CameraSpec {
    pub(crate) fn stream(&self) -> &str {
        match self {
            CameraSpec::Rtp(s) => &s.stream,
            CameraSpec::Rtsp(s) => &s.schedule.stream,
            CameraSpec::Pull(s) => &s.schedule.stream,
        }
    }
}

struct Camera {
    feed: CameraFeed,
    /// What the configuration file said, for a camera started from it; `None` for one
    /// the API added (a reload leaves those alone).
    configured: Option<CameraSpec>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// What a reload does to the cameras: those the file no longer names (or names
/// differently) stop, those it names anew (or differently) start.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct CameraChanges {
    /// The streams of the cameras to stop, their viewers ended.
    pub(crate) remove: Vec<String>,
    /// The cameras to start.
    pub(crate) add: Vec<CameraSpec>,
}

/// Why a camera could not be added.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CameraError {
    /// The stream has a source already (a camera, or a WHIP publisher).
    #[error(transparent)]
    Taken(#[from] DirectoryError),
    /// Its sockets could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The cameras of a server: configured at start, added and removed by the API. Each
/// has its own stop, so that one can go while the others play on.
#[derive(Default)]
pub(crate) struct Cameras {
    list: std::sync::Mutex<Vec<Camera>>,
}

impl Cameras {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Camera>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts an RTP camera's stream in the directory and starts listening for it;
    /// `configured` for a camera of the configuration file.
    pub(crate) fn start_rtp(
        &self,
        spec: RtpSourceSpec,
        wiring: &Wiring,
        configured: bool,
    ) -> Result<(RtpIngest, tokio::task::AbortHandle), CameraError> {
        let configured = configured.then(|| CameraSpec::Rtp(spec.clone()));
        let shared = wiring.directory.register_rtp_source(
            &spec.stream,
            chosen_codecs(&spec.media),
            keyframe_cache(&spec.media, wiring.silence),
            spec.wait_when_offline,
        )?;
        let addr = SocketAddr::new(spec.bind, spec.media.first().map_or(0, |m| m.port));
        let name = spec.stream.clone();
        let (stop, stop_rx) = watch::channel(false);
        let started = start(
            spec,
            shared,
            wiring.peers.clone(),
            wiring.media_counters.clone(),
            wiring.timeout,
            stop_rx,
        );
        let (ingest, task) = match started {
            Ok(s) => s,
            Err(source) => {
                wiring.directory.remove_camera(&name);
                return Err(CameraError::Bind { addr, source });
            }
        };
        let abort = task.abort_handle();
        self.lock().push(Camera {
            feed: CameraFeed::Rtp(ingest.clone()),
            configured,
            stop,
            task,
        });
        Ok((ingest, abort))
    }

    /// Starts pulling from an RTSP camera (its stream enters the directory at its
    /// first PLAY, or its first DESCRIBE on demand); `configured` for a camera of the
    /// configuration file.
    pub(crate) fn start_rtsp(
        &self,
        spec: rtsp::RtspSpec,
        wiring: &Wiring,
        configured: bool,
    ) -> rtsp::RtspIngest {
        let configured = configured.then(|| CameraSpec::Rtsp(spec.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let (ingest, task) = upstream::start(spec, wiring.clone(), stop_rx);
        self.lock().push(Camera {
            feed: CameraFeed::Rtsp(ingest.clone()),
            configured,
            stop,
            task,
        });
        ingest
    }

    /// Starts pulling a stream from another WHEP server (its stream enters the
    /// directory at the first answer); `configured` for one of the configuration file.
    pub(crate) fn start_pull(
        &self,
        spec: pull::PullSpec,
        wiring: &Wiring,
        configured: bool,
    ) -> pull::PullIngest {
        let configured = configured.then(|| CameraSpec::Pull(spec.clone()));
        let (stop, stop_rx) = watch::channel(false);
        let (ingest, task) = upstream::start(spec, wiring.clone(), stop_rx);
        self.lock().push(Camera {
            feed: CameraFeed::Pull(ingest.clone()),
            configured,
            stop,
            task,
        });
        ingest
    }

    /// What a reload to the configuration file's cameras `wanted` changes: a camera
    /// started from the file and no longer in it, or changed, stops (a changed one
    /// starts again as the file says); one new in the file starts; one it names as
    /// before goes on untouched. An error, and nothing to change, when the file names
    /// the stream of a camera the API added.
    pub(crate) fn changes(&self, wanted: &[CameraSpec]) -> Result<CameraChanges, String> {
        let list = self.lock();
        let mut changes = CameraChanges::default();
        for c in list.iter() {
            let Some(had) = &c.configured else { continue };
            if !wanted.iter().any(|w| w == had) {
                changes.remove.push(had.stream().to_owned());
            }
        }
        for w in wanted {
            match list.iter().find(|c| c.feed.stream() == w.stream()) {
                None => changes.add.push(w.clone()),
                Some(c) => match &c.configured {
                    None => {
                        return Err(format!(
                            "stream {:?} is fed by a camera added through the API; \
                             DELETE /api/sources/{} first",
                            w.stream(),
                            w.stream()
                        ));
                    }
                    Some(had) if had != w => changes.add.push(w.clone()),
                    Some(_) => {}
                },
            }
        }
        Ok(changes)
    }

    /// Every camera, in the order they were started.
    pub(crate) fn feeds(&self) -> Vec<CameraFeed> {
        self.lock().iter().map(|c| c.feed.clone()).collect()
    }

    /// The running RTP cameras.
    pub(crate) fn rtp(&self) -> Vec<RtpIngest> {
        self.feeds()
            .into_iter()
            .filter_map(|f| match f {
                CameraFeed::Rtp(r) => Some(r),
                CameraFeed::Rtsp(_) | CameraFeed::Pull(_) => None,
            })
            .collect()
    }

    /// The camera feeding `stream`, if one does.
    pub(crate) fn get(&self, stream: &str) -> Option<CameraFeed> {
        self.lock()
            .iter()
            .find(|c| c.feed.stream() == stream)
            .map(|c| c.feed.clone())
    }

    /// Stops the camera of `stream` and forgets it; its task, to await.
    pub(crate) fn remove(&self, stream: &str) -> Option<tokio::task::JoinHandle<()>> {
        let mut list = self.lock();
        let at = list.iter().position(|c| c.feed.stream() == stream)?;
        let camera = list.remove(at);
        let _ = camera.stop.send(true);
        Some(camera.task)
    }

    /// Stops every camera (shutdown); their tasks, to await.
    pub(crate) fn stop_all(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.lock()
            .drain(..)
            .map(|c| {
                let _ = c.stop.send(true);
                c.task
            })
            .collect()
    }
}
