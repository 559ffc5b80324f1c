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
pub(crate) mod sdp_file;

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
use crate::directory::Stream;
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
}

impl RtpSourceSpec {
    /// The keyframe cache for this source's video (a zero-sized one for audio only),
    /// stale after `silence`.
    pub(crate) fn keyframe_cache(&self, silence: Duration) -> KeyframeCache {
        match self.media.iter().find(|m| m.kind == MediaKind::Video) {
            Some(v) => {
                let mut c = KeyframeCache::new(CodecKind::of_name(&v.codec.name), CACHE_BYTES)
                    .stale_after(silence);
                c.set_sprop(&v.codec.fmtp);
                c
            }
            None => KeyframeCache::default(),
        }
    }

    /// The codecs viewers must match, in the directory's form.
    pub(crate) fn chosen_codecs(&self) -> Vec<ChosenCodec> {
        self.media
            .iter()
            .enumerate()
            .map(|(i, m)| ChosenCodec {
                kind: m.kind,
                mid: i.to_string(),
                codec: m.codec.clone(),
            })
            .collect()
    }
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

struct Medium {
    spec: MediumSpec,
    /// The medium as its stream's viewers know it.
    track: SourceTrack,
    state: MediumState,
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
    /// H.264 video: SPS/PPS in front of IDRs that come without them.
    h264: Option<h264::ParameterSetInjector>,
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
        let codec = CodecKind::of_name(&m.codec.name);
        media.push(Medium {
            h264: (m.kind == MediaKind::Video && codec == CodecKind::H264)
                .then(|| h264::ParameterSetInjector::new(&m.codec.fmtp)),
            track: SourceTrack {
                kind: m.kind,
                codec,
                pt: m.codec.pt,
                clock_rate: m.codec.clock_rate,
            },
            state: MediumState::new(m.codec.pt),
            spec: m.clone(),
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
        spec,
        shared,
        peers,
        media_counters,
        counters,
        timeout,
        last_packet: None,
        last_sender: None,
        source: Source::default(),
        batch: Vec::with_capacity(2),
    };
    let join = tokio::spawn(task.run(media, stop));
    Ok((ingest, join))
}

struct Task {
    spec: RtpSourceSpec,
    shared: Arc<Stream>,
    peers: Vec<mpsc::Sender<WorkerMsg>>,
    media_counters: Arc<MediaCounters>,
    counters: Arc<IngestCounters>,
    timeout: Duration,
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
                self.on_datagram(m, rtcp_port, from, data, Instant::now());
            }
        }
    }

    fn check_timeout(&mut self, now: Instant) {
        let online = self
            .last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < self.timeout);
        if self.counters.online.swap(online, Ordering::Relaxed) && !online {
            warn!(stream = %self.spec.stream, "RTP source offline: nothing for {:?}", self.timeout);
            self.shared.events.set_live(false);
            // Viewers stay (the mountpoint is configured) and resume at the camera's
            // next keyframe; a viewer joining meanwhile gets no stale picture (the
            // cache goes stale by itself after `source_silence`, which may be longer).
            self.shared.clear_keyframe_cache();
        }
    }

    fn on_datagram(
        &mut self,
        m: &mut Medium,
        rtcp_port: bool,
        from: SocketAddr,
        data: &[u8],
        now: Instant,
    ) {
        let c = &self.counters;
        if self.spec.allowed_sender.is_some_and(|a| a != from.ip()) {
            c.dropped_sender.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if data.len() > MAX_DATAGRAM {
            c.dropped_oversized.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if rtcp_port || demux::is_rtcp(data) {
            for sr in rtcp::sender_reports(data) {
                c.sender_reports.fetch_add(1, Ordering::Relaxed);
                let ns = ntp_to_nanos(sr.ntp);
                self.source.sender_report(sr.ssrc, ns, sr.rtp_time, now);
            }
            return;
        }
        let h = match rtp::parse_rtp(data) {
            Ok(h) => h,
            Err(_) => {
                c.dropped_malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let payload: Arc<[u8]> =
            Arc::from(data.get(h.payload_start..h.payload_end).unwrap_or_default());
        let before = m.state.ssrc_changes;
        let (seq, epoch) = match m.state.accept(&h) {
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
            info!(stream = %self.spec.stream, kind = ?m.spec.kind, "SSRC changed (source restarted)");
        }
        c.packets.fetch_add(1, Ordering::Relaxed);
        self.last_packet = Some(now);
        if !c.online.swap(true, Ordering::Relaxed) {
            info!(stream = %self.spec.stream, "RTP source online");
            self.shared.events.set_live(true);
        }
        if self.last_sender != Some(from) {
            self.last_sender = Some(from);
            *c.last_sender.lock().unwrap_or_else(|e| e.into_inner()) = Some(from);
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
