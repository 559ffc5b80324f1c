//! The fake ICE-lite str0m server of the end-to-end tests: `/whip/..` records what
//! a publisher sends (and asks for one keyframe, unless told to be quiet), `/whep/..`
//! sends synthetic H.264 to the viewer. A simulcast offer is answered as str0m
//! answers it (`a=simulcast:recv`), on `/whip/declined/..` declined as wishd declines
//! it, on `/whip/partial/..` with the first and last layer only.
//!
//! Kept apart from the tests so that they read as what a peer must do, and this as
//! the one server they all talk to.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::rtp::RtpWrite;
use str0m::{Event, RtcConfig};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

use crate::client::media::{self, PayloadMarker};
use crate::client::peer::{self, Driver, PeerStatus, Wake};
use crate::client::{VideoCodec, install_crypto_provider};

/// A video packet the fake WHIP server got.
pub(super) struct VideoIn {
    pub(super) ssrc: u32,
    /// The RID header extension of the packet.
    pub(super) rid_ext: Option<Rid>,
    /// The RID str0m bound the SSRC to.
    pub(super) bound: Option<Rid>,
    pub(super) seq: u16,
    pub(super) ts: u32,
    pub(super) at: Instant,
    pub(super) len: usize,
    pub(super) marker: Option<PayloadMarker>,
    /// Starts an IDR.
    pub(super) keyframe: bool,
    /// The payload, kept for the first packet of a keyframe (its SPS).
    pub(super) head: Option<Vec<u8>>,
}

#[derive(Default)]
pub(super) struct Seen {
    /// (kind, marker bit, payload marker) per packet the fake WHIP server got.
    pub(super) packets: Vec<(MediaKind, bool, Option<PayloadMarker>, bool)>,
    /// Every video packet the fake WHIP server got.
    pub(super) video: Vec<VideoIn>,
    /// Sender reports the fake WHIP server got for video: (rid, SSRC, RTP time).
    pub(super) video_sender_reports: Vec<(Option<Rid>, u32, u32)>,
    /// Ask for no keyframe unbidden (tests that ask per layer).
    pub(super) quiet: bool,
    /// Layers to send a PLI for, taken by the session's loop.
    pub(super) pli_for: Vec<Rid>,
    /// Keyframe requests the fake WHEP server got from the viewer.
    pub(super) keyframe_requests: usize,
    pub(super) deletes: usize,
    /// Run loops of the fake sessions; a DELETE aborts them all.
    sessions: Vec<tokio::task::JoinHandle<()>>,
}

pub(super) async fn start_fake() -> (String, Arc<Mutex<Seen>>) {
    install_crypto_provider();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = seen2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<Incoming>| {
                    let seen = seen.clone();
                    async move { Ok::<_, Infallible>(handle(req, seen).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (base, seen)
}

async fn handle(
    req: hyper::Request<Incoming>,
    seen: Arc<Mutex<Seen>>,
) -> hyper::Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if req.method() == hyper::Method::DELETE {
        let mut s = seen.lock().unwrap();
        s.deletes += 1;
        for t in s.sessions.drain(..) {
            t.abort();
        }
        return hyper::Response::new(Full::new(Bytes::new()));
    }
    let whep = path.starts_with("/whep/");
    if !whep && !path.starts_with("/whip/") {
        return hyper::Response::builder()
            .status(404)
            .body(Full::new(Bytes::from("no such endpoint\n")))
            .unwrap();
    }
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let offer = String::from_utf8_lossy(&body).into_owned();
    let offer = if path.starts_with("/whip/declined/") {
        crate::sdp::decline_simulcast(&offer).into_owned()
    } else if path.starts_with("/whip/partial/") {
        first_and_last_layer(&offer)
    } else {
        offer
    };
    let offer = SdpOffer::from_sdp_string(&offer).unwrap();
    let mut rtc = RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .build(Instant::now());
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    peer::add_host_candidate(&mut rtc, socket.local_addr().unwrap()).unwrap();
    let answer = rtc.sdp_api().accept_offer(offer).unwrap();
    let (status, _) = watch::channel(PeerStatus::default());
    let driver = Driver::new(rtc, socket, status).unwrap();
    let task = tokio::spawn(serve_peer(driver, whep, seen.clone()));
    seen.lock().unwrap().sessions.push(task);
    hyper::Response::builder()
        .status(201)
        .header("Content-Type", "application/sdp")
        .header("Location", format!("{path}/sess1"))
        .header("ETag", "\"v1\"")
        .body(Full::new(Bytes::from(answer.to_sdp_string())))
        .unwrap()
}

/// The offer with only the first and last of its simulcast layers, so that the
/// answer accepts those two.
fn first_and_last_layer(sdp: &str) -> String {
    let Some(line) = sdp.lines().find(|l| l.starts_with("a=simulcast:send ")) else {
        return sdp.to_string();
    };
    let rids: Vec<&str> = line["a=simulcast:send ".len()..].split(';').collect();
    let keep = [rids[0], rids[rids.len() - 1]];
    let mut out = String::new();
    for l in sdp.split_inclusive("\r\n") {
        let rid = l.strip_prefix("a=rid:").and_then(|r| r.split(' ').next());
        if rid.is_some_and(|r| !keep.contains(&r)) {
            continue;
        }
        if l.starts_with("a=simulcast:send ") {
            out.push_str(&format!("a=simulcast:send {}\r\n", keep.join(";")));
        } else {
            out.push_str(l);
        }
    }
    out
}

/// The fake server's per-session run loop.
async fn serve_peer(mut d: Driver, whep: bool, seen: Arc<Mutex<Seen>>) {
    let (_keep, mut commands) = mpsc::unbounded_channel::<()>();
    let mut tick = tokio::time::interval(Duration::from_millis(33));
    let mut video_mid: Option<Mid> = None;
    let mut asked = false;
    let mut frame = 0u64;
    let mut seq = 1000u64;
    loop {
        let asks = std::mem::take(&mut seen.lock().unwrap().pli_for);
        for rid in asks {
            let mid = video_mid.expect("a video m-line before a PLI");
            let mut api = d.rtc.direct_api();
            let rx = api.stream_rx_by_mid(mid, Some(rid));
            rx.expect("a receive stream for the layer")
                .request_keyframe(KeyframeRequestKind::Pli);
        }
        for e in d.drain().await.unwrap() {
            match e {
                Event::MediaAdded(m) if m.kind == MediaKind::Video => video_mid = Some(m.mid),
                Event::KeyframeRequest(_) => seen.lock().unwrap().keyframe_requests += 1,
                Event::SenderFeedback(f) if Some(f.mid) == video_mid => {
                    let rtp_time = f.sender_info.rtp_time.numer() as u32;
                    let sr = (f.rid, *f.sender_info.ssrc, rtp_time);
                    seen.lock().unwrap().video_sender_reports.push(sr);
                }
                Event::RtpPacket(p) => {
                    let kind = if *p.header.payload_type == 111 {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    let kf = media::is_keyframe_payload(VideoCodec::H264, &p.payload);
                    let marker = media::decode_marker(&p.payload);
                    if kind == MediaKind::Video {
                        let ssrc = p.header.ssrc;
                        let bound = d.rtc.direct_api().stream_rx(&ssrc).and_then(|rx| rx.rid());
                        // A STAP-A starts an H.264 keyframe (SPS, PPS, ...).
                        let stap_a = p.payload.first().is_some_and(|b| b & 0x1f == 24);
                        seen.lock().unwrap().video.push(VideoIn {
                            ssrc: *ssrc,
                            rid_ext: p.header.ext_vals.rid,
                            bound,
                            seq: p.header.sequence_number,
                            ts: p.header.timestamp,
                            at: p.timestamp,
                            len: p.payload.len(),
                            marker,
                            keyframe: kf,
                            head: stap_a.then(|| p.payload.to_vec()),
                        });
                    }
                    let mut s = seen.lock().unwrap();
                    s.packets.push((kind, p.header.marker, marker, kf));
                    if s.packets.len() > 60 && !asked && !s.quiet && kind == MediaKind::Video {
                        asked = true;
                        drop(s);
                        if let Some(rx) = d.rtc.direct_api().stream_rx(&p.header.ssrc) {
                            rx.request_keyframe(KeyframeRequestKind::Pli);
                        }
                    }
                }
                _ => {}
            }
        }
        let sending = whep && d.rtc.is_connected() && video_mid.is_some();
        let w = peer::next_wake(
            &d.socket,
            &mut d.buf,
            d.next_timeout,
            &mut commands,
            sending.then_some(&mut tick),
            None,
        )
        .await;
        match w {
            Wake::Datagram(n, src) => d.handle_wake_input(n, src).unwrap(),
            Wake::VideoTick(_) => {
                let mid = video_mid.unwrap();
                let rtc = &mut d.rtc;
                let pt = rtc
                    .media(mid)
                    .unwrap()
                    .remote_pts()
                    .iter()
                    .copied()
                    .find(|pt| {
                        rtc.codec_config()
                            .params()
                            .iter()
                            .any(|p| p.pt() == *pt && p.spec().codec == Codec::H264)
                    })
                    .unwrap();
                for p in media::video_frame(VideoCodec::H264, frame, frame.is_multiple_of(30)) {
                    let w = RtpWrite::new(
                        pt,
                        seq.into(),
                        frame as u32 * 3000,
                        Instant::now(),
                        p.payload,
                    )
                    .marker(p.marker);
                    seq += 1;
                    d.rtc
                        .direct_api()
                        .stream_tx_by_mid(mid, None)
                        .unwrap()
                        .write_rtp(w);
                    d.drain().await.unwrap();
                }
                frame += 1;
            }
            _ => d.handle_timeout().unwrap(),
        }
    }
}
