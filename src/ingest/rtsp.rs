//! RTSP cameras: wishd pulls a stream from `rtsp://[user:password@]host/path`, as the
//! Janus streaming plugin, MediaMTX and OvenMediaEngine do, since most IP cameras and
//! NVRs push nothing and serve RTSP.
//!
//! One tokio task per `[[rtsp]]` entry runs the RTSP client (retina: DESCRIBE, SETUP,
//! PLAY, Basic or Digest credentials, keep-alives; RTP interleaved on the connection
//! or over UDP); connecting again, on demand and offline are [`super::upstream`]'s,
//! as for a WHEP pull. The camera's SDP decides the codecs: the first video and the
//! first audio of a codec wishd forwards are served; other media (MJPEG, AAC, a
//! second video) are left out with one log line naming them. The stream appears in
//! the directory at the first PLAY (WHEP before that: 409 with `Retry-After`, as for
//! any stream without a source).

use std::sync::Arc;

use futures_util::StreamExt;
use retina::client::{
    Credentials, Described, PacketItem, PlayOptions, Session, SessionOptions, SetupOptions,
    TcpTransportOptions, Transport, UdpTransportOptions,
};
use sdp_types::Session as Sdp;
use str0m::media::MediaKind;
use tracing::warn;

use super::MediumSpec;
use super::upstream::{Connection, Item, PullState, PulledSource, Schedule, Upstream};
use crate::config::{RtspEntry, RtspTransport};
use crate::sdp::parse::{codecs_of, normalise};
use crate::wire::rtp;

/// Why a camera whose SDP has nothing wishd serves is offline.
const NOTHING_SERVED: &str =
    "the camera offers no medium wishd serves (H.264, H.265, Opus, PCMU, PCMA)";

/// A resolved `[[rtsp]]` entry.
#[derive(Clone, PartialEq)]
pub(crate) struct RtspSpec {
    /// The stream, the URL without credentials (it is logged), and when to connect.
    pub(crate) schedule: Schedule,
    url: url::Url,
    creds: Option<Credentials>,
    transport: RtspTransport,
}

impl std::fmt::Debug for RtspSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspSpec")
            .field("schedule", &self.schedule)
            .field("credentials", &self.creds.as_ref().map(|_| "…"))
            .field("transport", &self.transport)
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
        schedule: Schedule {
            stream: entry.stream.clone(),
            url: url.to_string(),
            on_demand: entry.on_demand,
            close_after: entry.close_after,
            wait_when_offline: entry.wait_when_offline,
        },
        url,
        creds,
        transport: entry.transport,
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
pub type RtspState = PullState;

/// A running RTSP source: its counters, its state and how often it reconnected.
pub type RtspIngest = PulledSource;

impl RtspSpec {
    /// DESCRIBE: the session, and what of the camera's media wishd serves.
    async fn describe(&self) -> Result<(Session<Described>, CameraMedia), String> {
        let options = SessionOptions::default()
            .creds(self.creds.clone())
            .user_agent(format!("wishd/{}", env!("CARGO_PKG_VERSION")));
        let session = Session::describe(self.url.clone(), options)
            .await
            .map_err(|e| format!("DESCRIBE: {e}"))?;
        let media = camera_media(session.sdp()).map_err(|e| format!("the camera's SDP: {e}"))?;
        if media.served.is_empty() {
            return Err(NOTHING_SERVED.into());
        }
        Ok((session, media))
    }
}

impl Upstream for RtspSpec {
    fn what(&self) -> &'static str {
        "RTSP camera"
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn transport(&self) -> &'static str {
        match self.transport {
            RtspTransport::Tcp => "tcp",
            RtspTransport::Udp => "udp",
        }
    }

    /// DESCRIBE alone.
    async fn probe(&mut self) -> Result<Vec<MediumSpec>, String> {
        let (_, media) = self.describe().await?;
        Ok(media.served.into_iter().map(|(_, m)| m).collect())
    }

    /// DESCRIBE, SETUP of each served medium, PLAY.
    async fn connect(&mut self) -> Result<Connection, String> {
        let (mut session, media) = self.describe().await?;
        if !media.left_out.is_empty() {
            warn!(
                stream = %self.schedule.stream,
                "RTSP camera: left out (not served): {}", media.left_out.join(", ")
            );
        }
        let transport = match self.transport {
            RtspTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            RtspTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
        };
        let count = session.streams().len();
        for (i, _) in &media.served {
            if *i >= count {
                return Err(format!("the camera's SDP has no stream {i}"));
            }
            let setup = SetupOptions::default().transport(transport.clone());
            session
                .setup(*i, setup)
                .await
                .map_err(|e| format!("SETUP of stream {i}: {e}"))?;
        }
        let playing = session
            .play(PlayOptions::default())
            .await
            .map_err(|e| format!("PLAY: {e}"))?;
        // retina's stream index → the medium's place among those served.
        let indices: Vec<usize> = media.served.iter().map(|(i, _)| *i).collect();
        let items = playing
            .map(move |item| match item {
                Ok(PacketItem::Rtp(p)) => {
                    let Some(medium) = indices.iter().position(|i| *i == p.stream_id()) else {
                        return Ok(Item::Other);
                    };
                    let raw = p.raw();
                    Ok(match rtp::parse_rtp(raw) {
                        Ok(header) => Item::Rtp {
                            medium,
                            payload: Arc::from(
                                raw.get(header.payload_start..header.payload_end)
                                    .unwrap_or_default(),
                            ),
                            header,
                        },
                        // (The feed counts it as malformed.)
                        Err(_) => Item::RtpBytes {
                            medium,
                            data: raw.to_vec(),
                        },
                    })
                }
                Ok(PacketItem::Rtcp(c)) => Ok(Item::Rtcp(c.raw().to_vec())),
                Ok(_) => Ok(Item::Other),
                Err(e) => Err(e.to_string()),
            })
            .boxed();
        Ok(Connection {
            media: media.served.into_iter().map(|(_, m)| m).collect(),
            items,
            // A camera cannot be asked for a keyframe.
            keyframes: None,
        })
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
