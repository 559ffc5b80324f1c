//! Pulling a stream from another WHEP server: wishd plays it there as a viewer (its
//! own WHEP client, on str0m) and serves it here as its own, as it does an RTSP
//! camera's. One upstream session feeds however many viewers the stream has here;
//! on demand, it exists only while they do.
//!
//! Unlike a camera, the upstream can be asked for a keyframe: a viewer here that
//! needs one makes the pull send a PLI upstream (at most one every 500 ms), besides
//! being served the last keyframe wishd has. The WHEP server's answer decides the
//! codecs: its first codec of each m-line that wishd forwards. Connecting again,
//! backing off, on demand and offline are [`super::upstream`]'s.

use std::sync::Arc;

use futures_util::StreamExt;
use str0m::media::MediaKind;
use tokio::sync::mpsc;

use super::MediumSpec;
use super::rtsp::camera_media;
use super::upstream::{Connection, Item, PulledSource, Schedule, Upstream};
use crate::client::{Arrival, AudioCodec, VideoCodec, ViewerOptions, WhepViewer};
use crate::config::PullEntry;
use crate::wire::ntp::{ntp_time, ntp_to_nanos};
use crate::wire::rtp::RtpHeader;

/// Packets a pull may have waiting between its viewer's task and the stream.
pub(crate) const QUEUE: usize = 1024;

/// A resolved `[[pull]]` entry.
#[derive(Clone, PartialEq)]
pub(crate) struct PullSpec {
    /// The stream, the WHEP URL, and when to connect.
    pub(crate) schedule: Schedule,
    url: url::Url,
    token: Option<String>,
}

impl std::fmt::Debug for PullSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullSpec")
            .field("schedule", &self.schedule)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Checks an entry.
pub(crate) fn resolve(entry: &PullEntry) -> Result<PullSpec, String> {
    let err = |e: &str| format!("pull stream {:?}: {e}", entry.stream);
    let url = url::Url::parse(&entry.url).map_err(|e| err(&format!("url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(err(
            "url must be the WHEP endpoint, http(s)://host[:port]/path",
        ));
    }
    if !crate::model::valid_stream_name(&entry.stream) {
        return Err(err(crate::model::STREAM_NAME_RULE));
    }
    Ok(PullSpec {
        schedule: Schedule {
            stream: entry.stream.clone(),
            url: url.to_string(),
            on_demand: entry.on_demand,
            close_after: entry.close_after,
            wait_when_offline: entry.wait_when_offline,
        },
        url,
        token: entry.token.as_ref().map(|t| t.expose().to_owned()),
    })
}

/// A running pull: the same handle as an RTSP camera's.
pub type PullIngest = PulledSource;

/// The upstream session: DELETEd when the connection ends, as a player leaving would.
struct Session(Option<WhepViewer>);

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(viewer) = self.0.take() {
            tokio::spawn(async move {
                let _ = viewer.delete().await;
            });
        }
    }
}

/// POSTs an offer for every codec wishd forwards to the WHEP endpoint `url`; the
/// viewer, what its answer serves, and the packets as they come (to `sink`).
pub(crate) async fn play(
    url: &url::Url,
    token: Option<String>,
    sink: Option<mpsc::Sender<Arrival>>,
) -> Result<(WhepViewer, Vec<MediumSpec>), String> {
    let opts = ViewerOptions {
        token,
        bind_ip: crate::client::local_ip_toward(url).await?,
        video_codecs: vec![
            VideoCodec::H264,
            VideoCodec::Vp8,
            VideoCodec::Vp9,
            VideoCodec::Av1,
            VideoCodec::H265,
        ],
        audio_codecs: vec![AudioCodec::Opus, AudioCodec::Pcmu, AudioCodec::Pcma],
        sink,
        relay: true,
        ..ViewerOptions::default()
    };
    let viewer = WhepViewer::connect(url.as_str(), opts)
        .await
        .map_err(|e| format!("WHEP POST: {e}"))?;
    let media =
        camera_media(viewer.answer_sdp().as_bytes()).map_err(|e| format!("the answer: {e}"))?;
    if media.served.is_empty() {
        return Err("the answer has no medium wishd forwards".into());
    }
    Ok((viewer, media.served.into_iter().map(|(_, m)| m).collect()))
}

/// A WHEP session playing as a connection: `viewer`'s packets (from the `rx` end of
/// its sink) as items, and PLIs upstream as keyframe requests.
pub(crate) fn connection(
    viewer: WhepViewer,
    media: Vec<MediumSpec>,
    rx: mpsc::Receiver<Arrival>,
) -> Connection {
    let kinds: Vec<MediaKind> = media.iter().map(|m| m.kind).collect();
    let pts: Vec<u8> = media.iter().map(|m| m.codec.pt).collect();
    // The session lives as long as the connection's items and keyframe requests:
    // it is DELETEd when both are gone. The items end when the viewer's task
    // does (ICE failed, the server ended the session).
    let session = Arc::new(Session(Some(viewer)));
    let keep = session.clone();
    let items =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|a| (a, rx)) })
            .map(move |arrival| {
                let _ = &keep;
                Ok(match arrival {
                    Arrival::Packet(p) => match kinds.iter().position(|k| *k == p.kind) {
                        // Only the PT the answer chose: RTX and the like are the stack's.
                        Some(medium) if pts.get(medium) == Some(&p.pt) => Item::Rtp {
                            medium,
                            header: RtpHeader {
                                marker: p.marker,
                                pt: p.pt,
                                seq: p.seq as u16,
                                timestamp: p.timestamp,
                                ssrc: p.ssrc,
                                payload_start: 0,
                                payload_end: p.payload.len(),
                            },
                            payload: p.payload,
                        },
                        _ => Item::Other,
                    },
                    Arrival::SenderReport(sr) => Item::SenderReport {
                        ssrc: sr.ssrc,
                        ns: ntp_to_nanos(ntp_time(sr.ntp_time)),
                        rtp_time: sr.rtp_time,
                    },
                })
            });
    let items = items.boxed();
    let keyframes = move || {
        if let Some(v) = &session.0 {
            v.request_keyframe();
        }
    };
    Connection {
        media,
        items,
        keyframes: Some(Box::new(keyframes)),
    }
}

impl Upstream for PullSpec {
    fn what(&self) -> &'static str {
        "WHEP upstream"
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn transport(&self) -> &'static str {
        "webrtc"
    }

    /// One session, POSTed and DELETEd, for its answer's codecs.
    async fn probe(&mut self) -> Result<Vec<MediumSpec>, String> {
        let (viewer, media) = play(&self.url, self.token.clone(), None).await?;
        let _ = viewer.delete().await;
        Ok(media)
    }

    async fn connect(&mut self) -> Result<Connection, String> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (viewer, media) = play(&self.url, self.token.clone(), Some(tx)).await?;
        Ok(connection(viewer, media, rx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_needs_an_http_url_and_a_stream_name_and_hides_its_token() {
        let entry = PullEntry {
            stream: "cam".into(),
            url: "https://origin.example/whep/cam".into(),
            token: Some(crate::config::Secret::new("s3cret")),
            ..PullEntry::default()
        };
        let spec = resolve(&entry).expect("a valid entry");
        assert_eq!(spec.url.as_str(), "https://origin.example/whep/cam");
        assert!(!format!("{spec:?}").contains("s3cret"));
        for (url, stream) in [
            ("rtsp://origin.example/cam", "cam"),
            ("not a url", "cam"),
            ("https://origin.example/whep/cam", "bad name!"),
        ] {
            let bad = PullEntry {
                stream: stream.into(),
                url: url.into(),
                ..PullEntry::default()
            };
            assert!(resolve(&bad).is_err(), "{url} {stream}");
        }
    }
}
