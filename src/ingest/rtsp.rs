//! RTSP cameras: wishd pulls a stream from `rtsp://[user:password@]host/path`, as the
//! Janus streaming plugin, MediaMTX and OvenMediaEngine do, since most IP cameras and
//! NVRs push nothing and serve RTSP.
//!
//! One tokio task per `[[rtsp]]` entry runs the RTSP client (retina: DESCRIBE, SETUP,
//! PLAY, Basic or Digest credentials, keep-alives; RTP interleaved on the connection
//! or over UDP) and feeds each RTP packet to the same [`Feed`] an RTP camera's
//! datagrams take. The camera's SDP decides the codecs: the first H.264 or H.265 video
//! and the first Opus, PCMU or PCMA audio are served; other media (MJPEG, AAC, a
//! second video) are left out with one log line naming them. The stream appears in the
//! directory at the first PLAY (WHEP before that: 409 with `Retry-After`, as for any
//! stream without a source) and stays while the camera comes and goes: a dropped
//! connection, an error or `rtp_timeout` without media takes it offline, and the task
//! connects again after 1 s, doubling to 30 s while it keeps failing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use retina::client::{
    Credentials, Described, PacketItem, PlayOptions, Session, SessionOptions, SetupOptions,
    TcpTransportOptions, Transport, UdpTransportOptions,
};
use sdp_types::Session as Sdp;
use str0m::media::MediaKind;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{Feed, IngestCounters, MediumSpec, Pipe, Wiring, chosen_codecs, keyframe_cache};
use crate::config::{RtspEntry, RtspTransport};
use crate::directory::Stream;
use crate::sdp::parse::{codecs_of, normalise};

/// The first wait before connecting again; doubled after each failure up to
/// [`MAX_BACKOFF`], back to this once media flowed.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a camera whose SDP has nothing wishd serves is offline.
const NOTHING_SERVED: &str =
    "the camera offers no medium wishd serves (H.264, H.265, Opus, PCMU, PCMA)";

/// A resolved `[[rtsp]]` entry.
#[derive(Clone, PartialEq)]
pub(crate) struct RtspSpec {
    pub(crate) stream: String,
    /// The URL without credentials (it is logged).
    pub(crate) url: url::Url,
    creds: Option<Credentials>,
    transport: RtspTransport,
    on_demand: bool,
    close_after: Duration,
    wait_when_offline: bool,
}

impl std::fmt::Debug for RtspSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspSpec")
            .field("stream", &self.stream)
            .field("url", &self.url.as_str())
            .field("credentials", &self.creds.as_ref().map(|_| "…"))
            .field("transport", &self.transport)
            .field("on_demand", &self.on_demand)
            .finish()
    }
}

/// Checks an entry and reads its credentials file; the URL's own credentials move out
/// of it, so that the URL can be logged.
pub(crate) fn resolve(
    entry: &RtspEntry,
    read: &dyn Fn(&std::path::Path) -> std::io::Result<Vec<u8>>,
) -> Result<RtspSpec, String> {
    let err = |e: String| format!("rtsp stream {:?}: {e}", entry.stream);
    let mut url = url::Url::parse(&entry.url).map_err(|e| err(format!("url: {e}")))?;
    if url.scheme() != "rtsp" || url.host().is_none() {
        return Err(err(
            "url must be rtsp://[user:password@]host[:port]/path".into()
        ));
    }
    if !crate::model::valid_stream_name(&entry.stream) {
        return Err(err(crate::model::STREAM_NAME_RULE.into()));
    }
    let mut creds = (!url.username().is_empty()).then(|| Credentials {
        username: percent_decode(url.username()),
        password: percent_decode(url.password().unwrap_or("")),
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if let Some(path) = &entry.credentials_file {
        let bytes = read(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
        let text = String::from_utf8_lossy(&bytes);
        let (user, password) = text
            .trim_end_matches(['\r', '\n'])
            .split_once(':')
            .ok_or_else(|| err(format!("{}: expected user:password", path.display())))?;
        creds = Some(Credentials {
            username: user.to_owned(),
            password: password.to_owned(),
        });
    }
    Ok(RtspSpec {
        stream: entry.stream.clone(),
        url,
        creds,
        transport: entry.transport,
        on_demand: entry.on_demand,
        close_after: entry.close_after,
        wait_when_offline: entry.wait_when_offline,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = || std::str::from_utf8(b.get(i + 1..i + 3)?).ok();
        match (b[i], hex().and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a camera's SDP offers, per m-line index (retina's stream index): the media
/// wishd serves and, in words, what it leaves out.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct CameraMedia {
    pub(crate) served: Vec<(usize, MediumSpec)>,
    pub(crate) left_out: Vec<String>,
}

/// Reads a camera's SDP (from its DESCRIBE). Never panics.
pub(crate) fn camera_media(sdp: &[u8]) -> Result<CameraMedia, String> {
    let text = String::from_utf8_lossy(sdp);
    let normalised = normalise(&text).map_err(|e| e.to_string())?;
    let session = Sdp::parse(normalised.as_bytes()).map_err(|e| format!("SDP: {e}"))?;
    let mut out = CameraMedia::default();
    for (i, m) in session.medias.iter().enumerate() {
        let kind = match m.media.as_str() {
            "audio" => MediaKind::Audio,
            "video" => MediaKind::Video,
            other => {
                out.left_out.push(format!("m={other}"));
                continue;
            }
        };
        let codec = codecs_of(m).into_iter().find(|c| c.is_media());
        let Some(codec) = codec else {
            let pt = m.fmt.split_whitespace().next().unwrap_or("?");
            out.left_out
                .push(format!("{} payload type {pt} (no rtpmap)", m.media));
            continue;
        };
        let taken = out.served.iter().any(|(_, s)| s.kind == kind);
        let servable =
            codec.is_supported() && codec.codec().is_video() == (kind == MediaKind::Video);
        if taken || !servable {
            out.left_out.push(format!(
                "{} {}/{}{}",
                m.media,
                codec.name,
                codec.clock_rate,
                if taken { " (one per kind)" } else { "" }
            ));
            continue;
        }
        out.served.push((
            i,
            MediumSpec {
                kind,
                port: 0,
                codec,
            },
        ));
    }
    Ok(out)
}

/// Where an RTSP source stands, for the API and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtspState {
    /// Connecting (or waiting to connect again).
    Connecting,
    /// Playing: media flows.
    Live,
    /// On demand, and nobody watches: not connected (the camera's codecs are known).
    Idle,
    /// The last attempt failed or the camera went away; it is tried again.
    Offline {
        /// Why, in one line.
        error: String,
    },
}

/// A running RTSP source: its counters, its state and how often it reconnected.
#[derive(Debug, Clone)]
pub struct RtspIngest {
    /// Stream name.
    pub stream: Arc<str>,
    /// Packet counters (as an RTP camera's).
    pub counters: Arc<IngestCounters>,
    status: Arc<Status>,
    url: Arc<str>,
    transport: &'static str,
}

#[derive(Debug)]
struct Status {
    state: std::sync::Mutex<RtspState>,
    /// Connections that ended (after PLAY) or failed, each followed by a new attempt.
    reconnects: AtomicU64,
    /// The operator asks for a new connection now.
    restart: tokio::sync::Notify,
}

impl RtspIngest {
    /// Where the source stands now.
    pub fn state(&self) -> RtspState {
        self.status
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many times the source connected again after losing or missing the camera.
    pub fn reconnects(&self) -> u64 {
        self.status.reconnects.load(Ordering::Relaxed)
    }

    /// Ends the camera's connection (or the wait before the next one) and connects
    /// again at once.
    pub fn restart(&self) {
        self.status.restart.notify_one();
    }

    /// The camera's URL, without credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `tcp` or `udp`.
    pub fn transport(&self) -> &'static str {
        self.transport
    }
}

/// Starts the source's task.
pub(crate) fn start(
    spec: RtspSpec,
    wiring: Wiring,
    stop: watch::Receiver<bool>,
) -> (RtspIngest, tokio::task::JoinHandle<()>) {
    let ingest = RtspIngest {
        stream: Arc::from(spec.stream.as_str()),
        counters: Arc::new(IngestCounters::default()),
        status: Arc::new(Status {
            state: std::sync::Mutex::new(RtspState::Connecting),
            reconnects: AtomicU64::new(0),
            restart: tokio::sync::Notify::new(),
        }),
        url: Arc::from(spec.url.as_str()),
        transport: match spec.transport {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        },
    };
    let task = Source {
        spec,
        wiring,
        ingest: ingest.clone(),
        stream: None,
        pipes: Vec::new(),
        feed: None,
    };
    (ingest, tokio::spawn(task.run(stop)))
}

struct Source {
    spec: RtspSpec,
    wiring: Wiring,
    ingest: RtspIngest,
    /// The stream, once the camera's first PLAY put it in the directory.
    stream: Option<Arc<Stream>>,
    /// One pipeline per kind of media, kept across connections: a camera that comes
    /// back (a new SSRC, numbering from anywhere) starts a new epoch in it, so its
    /// viewers' numbering runs on and they resume at its next keyframe.
    pipes: Vec<Pipe>,
    /// The feed, kept across connections as the pipelines are.
    feed: Option<Feed>,
}

/// How one connection ended.
enum Ended {
    /// The server is shutting down.
    Stopped,
    /// The operator asked for a new connection (`POST /api/sources/{stream}/restart`).
    Restart,
    /// On demand: nobody watched for `close_after`.
    Idle,
    /// The camera is gone or failed; `played` when media had flowed.
    Lost { error: String, played: bool },
}

impl RtspIngest {
    fn set_state(&self, state: RtspState) {
        *self.status.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

impl Source {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut backoff = FIRST_BACKOFF;
        let status = self.ingest.status.clone();
        loop {
            if self.spec.on_demand {
                if self.stream.is_none() {
                    // Learn the camera's codecs once, so that viewers can join before
                    // it is connected.
                    self.ingest.set_state(RtspState::Connecting);
                    let probed = tokio::select! {
                        _ = stop.changed() => return,
                        r = self.probe() => r,
                    };
                    if let Err(error) = probed {
                        if !self.back_off(error, &mut backoff, &mut stop).await {
                            return;
                        }
                        continue;
                    }
                }
                self.ingest.set_state(RtspState::Idle);
                self.offline_viewers(false);
                let Some(stream) = self.stream.clone() else {
                    continue;
                };
                while stream.events.viewers() == 0 {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = status.restart.notified() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            }
            self.ingest.set_state(RtspState::Connecting);
            let ended = tokio::select! {
                _ = stop.changed() => Ended::Stopped,
                _ = status.restart.notified() => Ended::Restart,
                e = self.connection() => e,
            };
            let (error, played) = match ended {
                Ended::Stopped => return,
                Ended::Idle => {
                    info!(
                        stream = %self.spec.stream,
                        "RTSP camera (on demand): no viewers for {:?}, disconnected", self.spec.close_after
                    );
                    backoff = FIRST_BACKOFF;
                    continue;
                }
                Ended::Restart => {
                    // The connection was cut short: its feed is still live.
                    if let Some(feed) = self.feed.as_mut() {
                        feed.go_offline();
                    }
                    info!(stream = %self.spec.stream, "RTSP camera: restarted by the operator");
                    self.ingest
                        .status
                        .reconnects
                        .fetch_add(1, Ordering::Relaxed);
                    backoff = FIRST_BACKOFF;
                    continue;
                }
                Ended::Lost { error, played } => (error, played),
            };
            if played {
                backoff = FIRST_BACKOFF;
            }
            if !self.back_off(error, &mut backoff, &mut stop).await {
                return;
            }
        }
    }

    /// Whether new viewers may join while the camera sends nothing: when configured
    /// so, and for an on-demand camera unless its last connection `failed` (its
    /// viewers are what connects it).
    fn takes_viewers_offline(&self, failed: bool) -> bool {
        self.spec.wait_when_offline || (self.spec.on_demand && !failed)
    }

    /// Tells the directory whether new viewers may join while the camera is offline.
    fn offline_viewers(&self, failed: bool) {
        if let Some(s) = &self.stream {
            s.set_camera_waits(self.takes_viewers_offline(failed));
        }
    }

    /// After a connection failed or was lost: says why (one log line), counts it, and
    /// waits `backoff` (or until a restart), doubling it for the next time. False when
    /// the server stops meanwhile.
    async fn back_off(
        &self,
        error: String,
        backoff: &mut Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        warn!(
            stream = %self.spec.stream, url = %self.spec.url,
            "RTSP camera: {error}; connecting again in {backoff:?}"
        );
        self.ingest.set_state(RtspState::Offline { error });
        self.offline_viewers(true);
        self.ingest
            .status
            .reconnects
            .fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = stop.changed() => return false,
            _ = self.ingest.status.restart.notified() => {}
            _ = tokio::time::sleep(*backoff) => {}
        }
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
        true
    }

    /// DESCRIBE alone, to learn the camera's codecs and put its stream in the directory
    /// (an on-demand camera before its first viewer).
    async fn probe(&mut self) -> Result<(), String> {
        let (_, media) = self.describe().await?;
        if media.served.is_empty() {
            return Err(NOTHING_SERVED.into());
        }
        self.stream_for(&media)
            .map(|_| ())
            .ok_or_else(|| "the stream name is taken by another source".into())
    }

    /// DESCRIBE: the session, and what of the camera's media wishd serves.
    async fn describe(&self) -> Result<(Session<Described>, CameraMedia), String> {
        let options = SessionOptions::default()
            .creds(self.spec.creds.clone())
            .user_agent(format!("wishd/{}", env!("CARGO_PKG_VERSION")));
        let session = Session::describe(self.spec.url.clone(), options)
            .await
            .map_err(|e| format!("DESCRIBE: {e}"))?;
        let media = camera_media(session.sdp()).map_err(|e| format!("the camera's SDP: {e}"))?;
        Ok((session, media))
    }

    /// One connection: DESCRIBE, SETUP of each served medium, PLAY, then packets until
    /// it ends.
    async fn connection(&mut self) -> Ended {
        let lost = |e: String| Ended::Lost {
            error: e,
            played: false,
        };
        let (mut session, media) = match self.describe().await {
            Ok(d) => d,
            Err(e) => return lost(e),
        };
        if !media.left_out.is_empty() {
            warn!(
                stream = %self.spec.stream,
                "RTSP camera: left out (not served): {}", media.left_out.join(", ")
            );
        }
        if media.served.is_empty() {
            return lost(NOTHING_SERVED.into());
        }
        let transport = match self.spec.transport {
            RtspTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            RtspTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
        };
        let count = session.streams().len();
        for (i, _) in &media.served {
            if *i >= count {
                return lost(format!("the camera's SDP has no stream {i}"));
            }
            let setup = SetupOptions::default().transport(transport.clone());
            if let Err(e) = session.setup(*i, setup).await {
                return lost(format!("SETUP of stream {i}: {e}"));
            }
        }
        let playing = match session.play(PlayOptions::default()).await {
            Ok(p) => p,
            Err(e) => return lost(format!("PLAY: {e}")),
        };
        let Some(stream) = self.stream_for(&media) else {
            return lost("the stream name is taken by another source".into());
        };
        info!(
            stream = %self.spec.stream, url = %self.spec.url,
            "RTSP camera playing: {}",
            media.served.iter().map(|(_, m)| format!("{:?} {}", m.kind, m.codec.name)).collect::<Vec<_>>().join(", ")
        );
        // The pipeline of each served stream index, by kind.
        for (_, m) in &media.served {
            if !self.pipes.iter().any(|p| p.spec.kind == m.kind) {
                self.pipes.push(Pipe::new(m));
            }
        }
        let route: Vec<(usize, usize)> = media
            .served
            .iter()
            .filter_map(|(i, m)| Some((*i, self.pipes.iter().position(|p| p.spec.kind == m.kind)?)))
            .collect();
        let feed = self.feed.get_or_insert_with(|| {
            Feed::new(
                stream,
                self.wiring.peers.clone(),
                self.wiring.media_counters.clone(),
                self.ingest.counters.clone(),
            )
        });
        let mut playing = Box::pin(playing);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let started = Instant::now();
        let mut played = false;
        let mut unwatched_since: Option<Instant> = None;
        let error = loop {
            tokio::select! {
                item = playing.next() => match item {
                    Some(Ok(PacketItem::Rtp(p))) => {
                        let now = Instant::now();
                        let pipe = route
                            .iter()
                            .find(|(i, _)| *i == p.stream_id())
                            .and_then(|(_, k)| self.pipes.get_mut(*k));
                        if let Some(pipe) = pipe {
                            feed.rtp(pipe, p.raw(), None, now);
                            if !played {
                                played = true;
                                self.ingest.set_state(RtspState::Live);
                            }
                        }
                    }
                    Some(Ok(PacketItem::Rtcp(c))) => feed.rtcp(c.raw(), Instant::now()),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break e.to_string(),
                    None => break "the camera ended the session".to_owned(),
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    let silent = match feed.last_packet {
                        Some(t) => now.saturating_duration_since(t) >= self.wiring.timeout,
                        None => now.saturating_duration_since(started) >= self.wiring.timeout,
                    };
                    if silent {
                        break format!("no media for {:?}", self.wiring.timeout);
                    }
                    if self.spec.on_demand {
                        let watched = feed.shared.events.viewers() > 0;
                        let since = *unwatched_since.get_or_insert(now);
                        if watched {
                            unwatched_since = None;
                        } else if now.saturating_duration_since(since) >= self.spec.close_after {
                            feed.go_offline();
                            return Ended::Idle;
                        }
                    }
                }
            }
        };
        feed.go_offline();
        Ended::Lost { error, played }
    }

    /// The stream in the directory: put there at the first PLAY with the camera's
    /// codecs, the same one after that.
    fn stream_for(&mut self, media: &CameraMedia) -> Option<Arc<Stream>> {
        if let Some(s) = &self.stream {
            return Some(s.clone());
        }
        let served: Vec<MediumSpec> = media.served.iter().map(|(_, m)| m.clone()).collect();
        let shared = self
            .wiring
            .directory
            .register_rtp_source(
                &self.spec.stream,
                chosen_codecs(&served),
                keyframe_cache(&served, self.wiring.silence),
                self.takes_viewers_offline(false),
            )
            .ok()?;
        self.stream = Some(shared.clone());
        Some(shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url_for_the_client_and_a_file_wins() {
        let entry = RtspEntry {
            stream: "door".into(),
            url: "rtsp://admin:p%40ss@192.0.2.20:554/stream1".into(),
            credentials_file: None,
            transport: RtspTransport::Tcp,
            ..RtspEntry::default()
        };
        let none = |_: &std::path::Path| Err(std::io::Error::other("no file"));
        let s = resolve(&entry, &none).unwrap();
        assert_eq!(s.url.as_str(), "rtsp://192.0.2.20:554/stream1");
        let c = s.creds.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss")
        );
        assert!(!format!("{:?}", resolve(&entry, &none).unwrap()).contains("p@ss"));

        let file = RtspEntry {
            credentials_file: Some("creds".into()),
            ..entry
        };
        let read = |_: &std::path::Path| Ok(b"viewer:s3cret:x\n".to_vec());
        let c = resolve(&file, &read).unwrap().creds.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("viewer", "s3cret:x")
        );
        let bad = |_: &std::path::Path| Ok(b"no colon".to_vec());
        assert!(resolve(&file, &bad).unwrap_err().contains("user:password"));
    }

    #[test]
    fn a_cameras_sdp_serves_h264_or_h265_and_opus_or_g711_and_names_the_rest() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.20\r\ns=cam\r\nt=0 0\r\n\
                   m=video 0 RTP/AVP 26\r\na=control:track0\r\n\
                   m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
                   a=fmtp:96 packetization-mode=1;profile-level-id=4d401f\r\na=control:track1\r\n\
                   m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/16000/1\r\na=control:track2\r\n\
                   m=audio 0 RTP/AVP 0\r\na=control:track3\r\n\
                   m=application 0 RTP/AVP 107\r\na=rtpmap:107 vnd.onvif.metadata/90000\r\n";
        let m = camera_media(sdp.as_bytes()).unwrap();
        let served: Vec<(usize, MediaKind, &str)> = m
            .served
            .iter()
            .map(|(i, s)| (*i, s.kind, s.codec.name.as_str()))
            .collect();
        assert_eq!(
            served,
            [(1, MediaKind::Video, "H264"), (3, MediaKind::Audio, "PCMU")]
        );
        assert_eq!(
            m.served[0].1.codec.fmtp,
            "packetization-mode=1;profile-level-id=4d401f"
        );
        let left = m.left_out.join(", ");
        assert!(left.contains("video payload type 26"), "{left}");
        assert!(left.contains("MPEG4-GENERIC"), "{left}");
        assert!(left.contains("m=application"), "{left}");
        for junk in [&b""[..], b"v=0\r\nm=", b"\xff\xfe garbage"] {
            let _ = camera_media(junk);
        }
    }
}
