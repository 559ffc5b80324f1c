//! End-to-end tests of the client peers against a fake ICE-lite str0m server that
//! lives in the test: `/whip/..` records what a publisher sends (and asks for one
//! keyframe), `/whep/..` sends synthetic H.264 to the viewer.

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
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::rtp::RtpWrite;
use str0m::{Event, RtcConfig};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

use super::media::{self, PayloadMarker};
use super::peer::{self, Driver, PeerStatus, Wake};
use super::*;

#[derive(Default)]
struct Seen {
    /// (kind, marker bit, payload marker) per packet the fake WHIP server got.
    packets: Vec<(MediaKind, bool, Option<PayloadMarker>, bool)>,
    /// Keyframe requests the fake WHEP server got from the viewer.
    keyframe_requests: usize,
    deletes: usize,
    /// Run loops of the fake sessions; a DELETE aborts them all.
    sessions: Vec<tokio::task::JoinHandle<()>>,
}

async fn start_fake() -> (String, Arc<Mutex<Seen>>) {
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
    let offer = SdpOffer::from_sdp_string(&String::from_utf8_lossy(&body)).unwrap();
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

/// The fake server's per-session run loop.
async fn serve_peer(mut d: Driver, whep: bool, seen: Arc<Mutex<Seen>>) {
    let (_keep, mut commands) = mpsc::unbounded_channel::<()>();
    let mut tick = tokio::time::interval(Duration::from_millis(33));
    let mut video_mid: Option<Mid> = None;
    let mut asked = false;
    let mut frame = 0u64;
    let mut seq = 1000u64;
    loop {
        for e in d.drain().await.unwrap() {
            match e {
                Event::MediaAdded(m) if m.kind == MediaKind::Video => video_mid = Some(m.mid),
                Event::KeyframeRequest(_) => seen.lock().unwrap().keyframe_requests += 1,
                Event::RtpPacket(p) => {
                    let kind = if *p.header.payload_type == 111 {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    let kf = media::is_keyframe_payload(VideoCodec::H264, &p.payload);
                    let mut s = seen.lock().unwrap();
                    s.packets
                        .push((kind, p.header.marker, media::decode_marker(&p.payload), kf));
                    if s.packets.len() > 60 && !asked && kind == MediaKind::Video {
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

#[tokio::test]
async fn publisher_reaches_fake_server() {
    let (base, seen) = start_fake().await;
    let url = format!("{base}/whip/cam1");
    let opts = PublisherOptions {
        token: Some("secret".into()),
        ..Default::default()
    };
    let publisher = WhipPublisher::connect(&url, opts).await.unwrap();
    assert_eq!(publisher.location(), format!("{url}/sess1"));
    assert_eq!(publisher.etag(), Some("\"v1\""));
    assert!(publisher.answer_sdp().contains("a=ice-lite"));
    publisher
        .wait_connected(Duration::from_secs(5))
        .await
        .unwrap();

    // Wait for the fake server's PLI to come back as a keyframe request.
    let deadline = Instant::now() + Duration::from_secs(5);
    while publisher.stats().keyframe_requests.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = publisher.stats();
    assert!(stats.connected);
    assert_eq!(stats.keyframe_requests.len(), 1, "{stats:?}");
    assert_eq!(
        stats.keyframes_sent, 2,
        "first frame plus the answer to the PLI"
    );
    assert!(stats.audio_packets_sent > 5, "{stats:?}");

    {
        let s = seen.lock().unwrap();
        let video: Vec<_> = s
            .packets
            .iter()
            .filter(|p| p.0 == MediaKind::Video)
            .collect();
        assert!(video.len() > 20, "{}", video.len());
        // Frames arrive whole and in order; the marker bit closes each frame.
        let mut expect_frame = 0;
        for (_, marker, m, _) in &video {
            let m = m.expect("video marker");
            assert_eq!(m.frame, expect_frame);
            assert_eq!(*marker, m.is_last());
            if m.is_last() {
                expect_frame += 1;
            }
        }
        assert_eq!(video.iter().filter(|p| p.3).count(), 2, "two IDRs seen");
        assert!(s.packets.iter().any(|p| p.0 == MediaKind::Audio
            && p.2.is_some_and(|m| m.kind == MediaKind::Audio)));
    }
    // Error statuses come back as values (the handle is Debug for unwrap_err).
    let err = WhipPublisher::connect(&format!("{base}/nope"), PublisherOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Status { status: 404, body } if body == "no such endpoint\n"),
        "{err}"
    );
    assert_eq!(publisher.delete().await.unwrap(), 200);
    assert_eq!(seen.lock().unwrap().deletes, 1);
}

#[tokio::test]
async fn viewer_receives_from_fake_server() {
    let (base, seen) = start_fake().await;
    let opts = ViewerOptions {
        video_codecs: vec![VideoCodec::H264],
        ..Default::default()
    };
    let viewer = WhepViewer::connect(&format!("{base}/whep/cam1"), opts)
        .await
        .unwrap();
    assert_eq!(viewer.video_codec(), Some(VideoCodec::H264));
    viewer.wait_connected(Duration::from_secs(5)).await.unwrap();
    assert!(viewer.is_connected());
    viewer
        .wait_for(Duration::from_secs(5), |p| p.len() >= 40)
        .await
        .unwrap();
    let got = viewer.received();
    let first = media::decode_marker(&got[0].payload).unwrap();
    assert_eq!((first.frame, first.index), (0, 0));
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
        assert_eq!(w[0].kind, MediaKind::Video);
        assert!(media::check_filler(&w[1].payload));
    }
    assert!(got[7].marker && !got[6].marker);
    assert!(got.iter().all(|p| p.at >= viewer.post_sent_at()));

    viewer.request_keyframe();
    let deadline = Instant::now() + Duration::from_secs(3);
    while seen.lock().unwrap().keyframe_requests == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.lock().unwrap().keyframe_requests, 1);

    // A short wait for a condition that never holds times out.
    assert!(matches!(
        viewer
            .wait_for(Duration::from_millis(50), |p| p.is_empty())
            .await,
        Err(ClientError::Timeout(_))
    ));
    assert!(format!("{viewer:?}").contains("WhepViewer"));
    let taken = viewer.take_received();
    assert!(taken.len() >= 40);
    assert!(viewer.received_count() < taken.len());
    viewer.abort();
    assert_eq!(seen.lock().unwrap().deletes, 0);
}

#[tokio::test]
async fn viewer_notices_vanished_server() {
    let (base, _seen) = start_fake().await;
    let viewer = WhepViewer::connect(&format!("{base}/whep/cam1"), ViewerOptions::default())
        .await
        .unwrap();
    viewer.wait_connected(Duration::from_secs(5)).await.unwrap();
    // The server drops the session without a word (no DTLS close).
    let r = http_request("DELETE", viewer.location(), &[], vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let t0 = Instant::now();
    while viewer.is_connected() && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("viewer noticed after {:?}", t0.elapsed());
    assert!(!viewer.is_connected());
}
