//! The JSON bodies of the API (described in `openapi.json`, which the tests check
//! every response against).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;

use crate::core::{MediaKind, best_first};
use crate::directory::{SourceView, StreamView};
use crate::http::AppState;
use crate::ingest::CameraFeed;
use crate::ingest::rtsp::RtspState;
use crate::media::SessionSnapshot;
use crate::model::{Role, SessionId};

/// `GET /api/streams`.
#[derive(Debug, Serialize)]
pub(crate) struct StreamList {
    /// The streams the caller may see, by name.
    pub(crate) streams: Vec<Stream>,
}

/// One stream.
#[derive(Debug, Serialize)]
pub(crate) struct Stream {
    /// Its name.
    pub(crate) name: String,
    /// Where its media comes from.
    pub(crate) source: Source,
    /// One track per media kind.
    pub(crate) tracks: Vec<Track>,
    /// The video's simulcast layers, best first (empty without simulcast).
    pub(crate) layers: Vec<Layer>,
    /// Viewer sessions (connecting or connected).
    pub(crate) viewers: usize,
    /// Source bits per second (RTP payload), over the last second or so.
    pub(crate) bitrate_in: u64,
    /// Bits per second to all viewers together (RTP payload).
    pub(crate) bitrate_out: u64,
    /// Source RTP packets taken in.
    pub(crate) packets_in: u64,
    /// Source RTP packets lost on the way in.
    pub(crate) packets_lost: u64,
    /// Source RTP payload bytes taken in.
    pub(crate) bytes_in: u64,
    /// RTP packets written to viewers, all together (live and from the keyframe cache).
    pub(crate) packets_out: u64,
    /// RTP payload bytes written to viewers, all together.
    pub(crate) bytes_out: u64,
    /// Seconds since the stream appeared.
    pub(crate) uptime_secs: f64,
    /// Its recording, when a `[[record]]` rule names it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) recording: Option<Recording>,
}

/// A stream's recording.
#[derive(Debug, Serialize)]
pub(crate) struct Recording {
    /// `waiting` (for a keyframe), `recording`, `failed` or `finished`.
    pub(crate) state: &'static str,
    /// The file being written (or last written).
    pub(crate) file: Option<String>,
    /// When that file's first picture was captured (RFC 3339, UTC, milliseconds).
    pub(crate) started: Option<String>,
    /// Files written so far.
    pub(crate) files: u64,
    /// Packets its queue refused.
    pub(crate) dropped: u64,
    /// Why it failed.
    pub(crate) error: Option<String>,
}

/// A stream's source.
#[derive(Debug, Serialize)]
pub(crate) struct Source {
    /// `whip` or `rtp`.
    pub(crate) kind: &'static str,
    /// The address media comes from, when known.
    pub(crate) addr: Option<String>,
    /// `live`, `silent` (sending nothing for `source_silence`: crashed, cut off or
    /// paused), `offline` (an RTP source sending nothing for `rtp_timeout`) or
    /// `waiting` (a WHIP publisher left; viewers wait for it during the grace period).
    pub(crate) state: &'static str,
    /// When a silent or offline source sent its last packet (RFC 3339, UTC).
    pub(crate) silent_since: Option<String>,
}

/// One track of a stream.
#[derive(Debug, Serialize)]
pub(crate) struct Track {
    /// `video` or `audio`.
    pub(crate) kind: &'static str,
    /// The codec as in `a=rtpmap`, e.g. `H264`, `opus`.
    pub(crate) codec: String,
    /// RTP clock rate.
    pub(crate) clock_rate: u32,
    /// Audio channels, when the rtpmap says.
    pub(crate) channels: Option<u8>,
    /// The `a=fmtp` parameters.
    pub(crate) fmtp: String,
    /// Picture width from the last keyframe (video, when the codec says).
    pub(crate) width: Option<u32>,
    /// Picture height from the last keyframe.
    pub(crate) height: Option<u32>,
}

/// One simulcast layer of a stream's video.
#[derive(Debug, Serialize)]
pub(crate) struct Layer {
    /// Its RTP stream id.
    pub(crate) rid: String,
    /// Source bits per second (RTP payload), over the last half second.
    pub(crate) bitrate: u64,
    /// Picture size from its last keyframe.
    pub(crate) width: Option<u32>,
    /// Picture height from its last keyframe.
    pub(crate) height: Option<u32>,
    /// The source sends it (a sender may stop a layer, e.g. for lack of uplink).
    pub(crate) active: bool,
}

/// `GET /api/streams/{name}`: the stream and its sessions.
#[derive(Debug, Serialize)]
pub(crate) struct StreamDetail {
    /// The stream, as in the list.
    #[serde(flatten)]
    pub(crate) stream: Stream,
    /// Its publisher (WHIP) and viewers.
    pub(crate) sessions: Vec<Session>,
}

/// One session.
#[derive(Debug, Serialize)]
pub(crate) struct Session {
    /// The id (last segment of its WHIP/WHEP URL).
    pub(crate) id: String,
    /// `publisher` or `viewer`.
    pub(crate) kind: &'static str,
    /// The peer's address, once media arrived.
    pub(crate) peer: Option<String>,
    /// The codecs it sends or receives.
    pub(crate) codecs: Vec<String>,
    /// `connecting`, `connected` or `disconnected`.
    pub(crate) state: &'static str,
    /// UDP bits per second from the peer, over the last second or so.
    pub(crate) bitrate_in: u64,
    /// UDP bits per second to the peer.
    pub(crate) bitrate_out: u64,
    /// UDP bytes from the peer.
    pub(crate) bytes_in: u64,
    /// UDP bytes to the peer.
    pub(crate) bytes_out: u64,
    /// RTP packets received (publishers).
    pub(crate) packets_in: u64,
    /// RTP packets sent (viewers).
    pub(crate) packets_out: u64,
    /// Round-trip time in milliseconds from RTCP, when known.
    pub(crate) rtt_ms: Option<f64>,
    /// Fraction of packets lost (0..1), when known.
    pub(crate) loss: Option<f64>,
    /// NACKs from the viewer, or to the publisher.
    pub(crate) nacks: u64,
    /// The rid of the simulcast layer a viewer gets (null without simulcast).
    pub(crate) layer: Option<String>,
    /// Bits per second the viewer's path is estimated to carry (viewers of a
    /// simulcast stream whose player sends transport-wide feedback).
    pub(crate) bandwidth_estimate: Option<u64>,
    /// The candidate pair its media uses (null before media flowed).
    pub(crate) path: Option<Path>,
    /// Seconds since it was created.
    pub(crate) uptime_secs: f64,
}

/// The candidate pair a session's media uses.
#[derive(Debug, Serialize)]
pub(crate) struct Path {
    /// `udp` or `tcp`.
    pub(crate) protocol: &'static str,
    /// wishd's address of the pair.
    pub(crate) local: String,
    /// The peer's.
    pub(crate) remote: String,
    /// What the peer's candidate for that address is: `host`, `srflx`, `relay` or
    /// `prflx` (none of its candidates named it).
    pub(crate) remote_type: &'static str,
}

/// An instant of this process as a UTC wall-clock time, RFC 3339 with milliseconds.
fn wall_clock(at: Instant) -> String {
    let ago = Instant::now().saturating_duration_since(at);
    let when = std::time::SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(std::time::UNIX_EPOCH);
    humantime::format_rfc3339_millis(when).to_string()
}

fn round(v: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (v * m).round() / m
}

fn stream(state: &AppState, v: &StreamView, source_addr: Option<SocketAddr>) -> Stream {
    let stats = &v.shared.stats;
    let (bitrate_in, bitrate_out) = stats.bitrates(Instant::now());
    let live = if v.silent_since.is_some() {
        "silent"
    } else {
        "live"
    };
    let (kind, addr, source_state) = match v.source {
        SourceView::WhipLive(_) => ("whip", source_addr, live),
        SourceView::WhipWaiting => ("whip", None, "waiting"),
        SourceView::Rtp => {
            let (kind, counters) = match state.ops.cameras.get(&v.shared.name) {
                Some(CameraFeed::Rtp(r)) => ("rtp", Some(r.counters)),
                Some(CameraFeed::Rtsp(r)) => ("rtsp", Some(r.counters)),
                Some(CameraFeed::Pull(r)) => ("whep", Some(r.counters)),
                None => ("rtp", None),
            };
            let online = counters
                .as_ref()
                .is_some_and(|c| c.online.load(Ordering::Relaxed));
            let addr = counters.as_ref().and_then(|c| c.sender());
            (kind, addr, if online { live } else { "offline" })
        }
    };
    let silent_since = v
        .silent_since
        .filter(|_| source_state == "silent" || source_state == "offline")
        .map(wall_clock);
    let size = stats.size();
    let mut tracks: Vec<Track> = v
        .codecs
        .iter()
        .map(|c| {
            let video = c.kind == MediaKind::Video;
            Track {
                kind: if video { "video" } else { "audio" },
                codec: c.codec.name.clone(),
                clock_rate: c.codec.clock_rate,
                channels: c.codec.channels,
                fmtp: c.codec.fmtp.clone(),
                width: size.filter(|_| video).map(|s| s.0),
                height: size.filter(|_| video).map(|s| s.1),
            }
        })
        .collect();
    tracks.sort_by_key(|t| t.kind != "video");
    let layers = best_first(&stats.layers(Instant::now()))
        .into_iter()
        .filter_map(|l| {
            Some(Layer {
                rid: l.rid?.to_string(),
                bitrate: l.bitrate,
                width: l.size.map(|s| s.0),
                height: l.size.map(|s| s.1),
                active: l.active,
            })
        })
        .collect();
    let recording = v.shared.recording().map(|r| {
        let now = r.get();
        Recording {
            state: now.state,
            file: now.file.map(|f| f.display().to_string()),
            started: now
                .started
                .map(|t| humantime::format_rfc3339_millis(t).to_string()),
            files: now.files,
            dropped: r.dropped.load(Ordering::Relaxed),
            error: now.error,
        }
    });
    Stream {
        name: v.shared.name.to_string(),
        source: Source {
            kind,
            addr: addr.map(|a| a.to_string()),
            state: source_state,
            silent_since,
        },
        tracks,
        layers,
        viewers: v.viewers,
        bitrate_in,
        bitrate_out,
        packets_in: stats.packets_in.load(Ordering::Relaxed),
        packets_lost: stats.packets_lost.load(Ordering::Relaxed),
        bytes_in: stats.bytes_in.load(Ordering::Relaxed),
        packets_out: stats.packets_out.load(Ordering::Relaxed),
        bytes_out: stats.bytes_out.load(Ordering::Relaxed),
        uptime_secs: round(stats.created.elapsed().as_secs_f64(), 3),
        recording,
    }
}

/// The list, with each live WHIP publisher's address from its worker.
pub(crate) async fn stream_list(state: &AppState, views: Vec<StreamView>) -> StreamList {
    let publishers: HashMap<SessionId, Option<SocketAddr>> = if views
        .iter()
        .any(|v| matches!(v.source, SourceView::WhipLive(_)))
    {
        state
            .media
            .sessions(None, true)
            .await
            .into_iter()
            .map(|s| (s.id, s.peer))
            .collect()
    } else {
        HashMap::new()
    };
    let streams = views
        .iter()
        .map(|v| {
            let addr = match v.source {
                SourceView::WhipLive(id) => publishers.get(&id).copied().flatten(),
                _ => None,
            };
            stream(state, v, addr)
        })
        .collect();
    StreamList { streams }
}

/// One stream with its sessions.
pub(crate) async fn stream_detail(state: &AppState, view: StreamView) -> StreamDetail {
    let mut snaps = state.media.sessions(Some(&view.shared.name), false).await;
    // Publisher first, then viewers oldest first.
    snaps.sort_by(|a, b| {
        (a.kind == Role::Viewer, std::cmp::Reverse(a.age))
            .cmp(&(b.kind == Role::Viewer, std::cmp::Reverse(b.age)))
    });
    let publisher_addr = match view.source {
        SourceView::WhipLive(id) => snaps.iter().find(|s| s.id == id).and_then(|s| s.peer),
        _ => None,
    };
    let mut chosen: Vec<_> = view.codecs.iter().collect();
    chosen.sort_by_key(|c| c.kind != MediaKind::Video);
    let codecs: Vec<String> = chosen.iter().map(|c| c.codec.name.clone()).collect();
    let sessions = snaps.iter().map(|s| session(s, codecs.clone())).collect();
    StreamDetail {
        stream: stream(state, &view, publisher_addr),
        sessions,
    }
}

fn session(s: &SessionSnapshot, codecs: Vec<String>) -> Session {
    Session {
        id: s.id.to_string(),
        kind: s.kind.noun(),
        peer: s.peer.map(|a| a.to_string()),
        codecs,
        state: s.state.as_str(),
        bitrate_in: s.bitrate_in,
        bitrate_out: s.bitrate_out,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        packets_in: s.packets_in,
        packets_out: s.packets_out,
        rtt_ms: s.rtt.map(|r| round(r.as_secs_f64() * 1000.0, 3)),
        loss: s.loss.map(|l| round(f64::from(l), 4)),
        nacks: s.nacks,
        layer: s.layer.clone(),
        bandwidth_estimate: s.bandwidth_estimate,
        path: s.path.as_ref().map(|p| Path {
            protocol: p.protocol,
            local: p.local.to_string(),
            remote: p.remote.to_string(),
            remote_type: p.remote_type,
        }),
        uptime_secs: round(s.age.as_secs_f64(), 3),
    }
}

/// `GET /api/sources`: every configured camera and where it stands.
#[derive(Debug, Serialize)]
pub(crate) struct SourceList {
    sources: Vec<SourceEntry>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SourceEntry {
    stream: String,
    /// `rtp` (the camera pushes) or `rtsp` (wishd pulls).
    kind: &'static str,
    /// `live`, `offline`, or for RTSP also `connecting`.
    state: &'static str,
    /// RTSP: why the last connection failed or ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    /// RTSP: connections made again after one was lost or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    reconnects: Option<u64>,
    /// RTSP: the camera's URL (without credentials); RTP: the bound addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transport: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bound: Vec<String>,
    /// RTP packets taken into the stream.
    packets: u64,
    /// Where RTP last came from (RTP cameras).
    #[serde(skip_serializing_if = "Option::is_none")]
    sender: Option<String>,
}

/// One camera as `GET /api/sources` lists it.
pub(crate) fn source_entry(feed: &CameraFeed) -> SourceEntry {
    match feed {
        CameraFeed::Rtp(r) => SourceEntry {
            stream: r.stream.to_string(),
            kind: "rtp",
            state: if r.counters.online.load(Ordering::Relaxed) {
                "live"
            } else {
                "offline"
            },
            last_error: None,
            reconnects: None,
            url: None,
            transport: None,
            bound: r.bound.iter().map(|(_, a)| a.to_string()).collect(),
            packets: r.counters.packets.load(Ordering::Relaxed),
            sender: r.counters.sender().map(|a| a.to_string()),
        },
        CameraFeed::Rtsp(r) | CameraFeed::Pull(r) => {
            let (state, last_error) = match r.state() {
                RtspState::Connecting => ("connecting", None),
                RtspState::Live => ("live", None),
                RtspState::Idle => ("idle", None),
                RtspState::Offline { error } => ("offline", Some(error)),
            };
            SourceEntry {
                stream: r.stream.to_string(),
                kind: if matches!(feed, CameraFeed::Pull(_)) {
                    "whep"
                } else {
                    "rtsp"
                },
                state,
                last_error,
                reconnects: Some(r.reconnects()),
                url: Some(r.url().to_owned()),
                transport: Some(r.transport()),
                bound: Vec::new(),
                packets: r.counters.packets.load(Ordering::Relaxed),
                sender: None,
            }
        }
    }
}

/// `GET /api/sources`.
pub(crate) fn source_list(feeds: &[CameraFeed]) -> SourceList {
    SourceList {
        sources: feeds.iter().map(source_entry).collect(),
    }
}
