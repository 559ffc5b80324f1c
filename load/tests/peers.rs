//! wishd-load against servers that are not wishd, each reproduced by the shape of its
//! answers (written from their documented behaviour): live777's WHIP and WHEP answers
//! (`a=setup:active`, ICE lite, every candidate again for component 2, a relative
//! `Location`, no `ETag`), a WHEP server that counter-offers (406 with its own offer,
//! answered by PATCH, as janus-whep-server does with Janus plugins that make the
//! offer), and a publisher that is not the tool (no payload markers).

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;

use wishd::client::{PublisherOptions, WhipPublisher, http_request};
use wishd_load::publisher::PublisherConfig;
use wishd_load::run::{RunConfig, RunReport, print_report, run};
use wishd_load::swarm::SwarmConfig;

type Reply = hyper::Response<Full<Bytes>>;

/// A request as the fakes see it.
struct Req {
    method: hyper::Method,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// Serves `handle` over HTTP/1.1 on loopback; returns the base URL.
async fn serve<F, Fut>(handle: F) -> String
where
    F: Fn(Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Reply> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            let svc = service_fn(move |req: hyper::Request<Incoming>| {
                let handle = handle.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes());
                    let req = Req {
                        method: parts.method,
                        path: parts.uri.path().to_owned(),
                        headers: parts
                            .headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect(),
                        body: String::from_utf8_lossy(&body.unwrap_or_default()).into_owned(),
                    };
                    Ok::<_, Infallible>(handle(req).await)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    base
}

fn reply(status: u16) -> hyper::http::response::Builder {
    hyper::Response::builder().status(status)
}

/// live777's answer from wishd's: every host candidate again for component 2 (its
/// WebRTC stack writes RTCP candidates even with rtcp-mux).
fn as_live777_answers(answer: &str) -> String {
    let mut out = String::new();
    for line in answer.lines() {
        out.push_str(line);
        out.push_str("\r\n");
        if let Some(rest) = line.strip_prefix("a=candidate:") {
            let mut f: Vec<&str> = rest.split(' ').collect();
            if f.len() > 3 && f[1] == "1" {
                let priority = f[3]
                    .parse::<u32>()
                    .unwrap_or(1)
                    .saturating_sub(1)
                    .to_string();
                f[1] = "2";
                f[3] = &priority;
                out.push_str(&format!("a=candidate:{}\r\n", f.join(" ")));
            }
        }
    }
    out
}

/// wishd behind a front that makes its exchanges look like live777's: the client's
/// `a=setup:actpass` reaches wishd as `passive`, so wishd answers `a=setup:active`
/// and is the DTLS client, as live777 is; the answer gets component-2 candidates,
/// a relative `Location` and no `ETag`. Returns the front's base URL and the answers
/// it sent.
async fn live777_front(wishd: String) -> (String, Arc<Mutex<Vec<String>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let answers = sent.clone();
    let base = serve(move |req: Req| {
        let (wishd, sent) = (wishd.clone(), sent.clone());
        async move {
            let url = format!("{wishd}{}", req.path);
            let headers: Vec<(&str, &str)> = req
                .headers
                .iter()
                .filter(|(k, _)| k == "authorization" || k == "content-type" || k == "if-match")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body = match req.method {
                hyper::Method::POST => req.body.replace("a=setup:actpass", "a=setup:passive"),
                _ => req.body,
            };
            let r = match http_request(req.method.as_str(), &url, &headers, body.into_bytes()).await
            {
                Ok(r) => r,
                Err(e) => {
                    return reply(502)
                        .body(Full::new(Bytes::from(e.to_string())))
                        .unwrap();
                }
            };
            if req.method != hyper::Method::POST || r.status != 201 {
                return reply(r.status)
                    .body(Full::new(Bytes::from(r.body)))
                    .unwrap();
            }
            let answer = as_live777_answers(&r.text());
            sent.lock().unwrap().push(answer.clone());
            let location = r.header("location").unwrap_or("");
            let relative = location.find("/whip/").or_else(|| location.find("/whep/"));
            reply(201)
                .header("Content-Type", "application/sdp")
                .header("Location", relative.map_or(location, |i| &location[i..]))
                .body(Full::new(Bytes::from(answer)))
                .unwrap()
        }
    })
    .await;
    (base, answers)
}

fn assert_everyone_got_the_stream(report: &RunReport, viewers: usize, min_packets: u64) {
    print_report(report);
    assert_eq!(report.viewers.len(), viewers);
    for v in &report.viewers {
        assert!(v.error.is_none(), "viewer {} failed: {:?}", v.id, v.error);
        assert!(v.connected && v.join_ms.is_some(), "viewer {}: {v:?}", v.id);
        assert!(
            v.received >= min_packets,
            "viewer {} got {} packets",
            v.id,
            v.received
        );
        assert!(v.delay_p50_us.is_some(), "viewer {} has no delay", v.id);
    }
    assert!(
        report.aggregate.loss_pct < 1.0,
        "loss {:.2} %",
        report.aggregate.loss_pct
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_and_viewers_connect_to_a_server_that_answers_as_live777_does() {
    let server = common::open_server().await;
    let (front, answers) = live777_front(format!("http://{}", server.http_addr())).await;
    let report = run(RunConfig {
        publisher: Some(PublisherConfig::standard(format!("{front}/whip/live"))),
        swarm: SwarmConfig::new(format!("{front}/whep/live")),
        viewers: 3,
        ramp_per_sec: 20.0,
        connect_timeout: Duration::from_secs(10),
        duration: Duration::from_secs(3),
        server_pid: None,
    })
    .await
    .expect("the run completes");
    assert_everyone_got_the_stream(&report, 3, 400);
    // The answers were live777's shape: the front was in the way of every session.
    let answers = answers.lock().unwrap().clone();
    assert_eq!(answers.len(), 4, "one publisher and three viewers");
    for a in answers.iter() {
        assert!(a.contains("a=setup:active\r\n"), "{a}");
        assert!(a.contains("a=ice-lite\r\n"), "{a}");
        assert!(
            a.lines()
                .any(|l| l.starts_with("a=candidate:") && l.split(' ').nth(1) == Some("2")),
            "{a}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_cannot_connect_says_why() {
    // An answer whose only candidate is a port nobody listens on.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let server = common::open_server().await;
    let wishd = format!("http://{}", server.http_addr());
    let front = serve(move |req: Req| {
        let wishd = wishd.clone();
        async move {
            let url = format!("{wishd}{}", req.path);
            let headers = [("content-type", "application/sdp")];
            let r = http_request(req.method.as_str(), &url, &headers, req.body.into_bytes())
                .await
                .unwrap();
            let answer: String = r
                .text()
                .lines()
                .map(|l| match l.strip_prefix("a=candidate:") {
                    Some(_) => format!("a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"),
                    None => l.to_owned(),
                })
                .map(|l| l + "\r\n")
                .collect();
            reply(r.status)
                .header("Location", r.header("location").unwrap_or(""))
                .body(Full::new(Bytes::from(answer)))
                .unwrap()
        }
    })
    .await;
    let started = Instant::now();
    let Err(e) = run(RunConfig {
        publisher: Some(PublisherConfig::standard(format!("{front}/whip/nowhere"))),
        swarm: SwarmConfig::new(format!("{front}/whep/nowhere")),
        viewers: 1,
        ramp_per_sec: 0.0,
        connect_timeout: Duration::from_secs(1),
        duration: Duration::from_secs(1),
        server_pid: None,
    })
    .await
    else {
        panic!("the run must fail");
    };
    let why = e.to_string();
    println!("{why} (after {:.1} s)", started.elapsed().as_secs_f64());
    assert!(why.contains("did not connect"), "{why}");
    assert!(why.contains("0 STUN and 0 DTLS datagrams"), "{why}");
    assert!(why.contains(&format!("127.0.0.1 {port} typ host")), "{why}");
    server.shutdown().await;
}

/// One session of the counter-offering fake: its peer, the offer it made, the mid
/// of its video.
struct Offered {
    rtc: Rtc,
    pending: SdpPendingOffer,
    mid: Mid,
    socket: UdpSocket,
}

/// A WHEP server that always counter-offers: the POST gets 406 with an offer of H.264
/// video (ICE lite, sendonly), a relative `Location`; the PATCH of the answer gets 204
/// and starts the media, 30 frames a second of one packet each, a keyframe every 30
/// frames. Returns the base URL and how many answers it took.
async fn counter_offering_server() -> (String, Arc<AtomicU32>) {
    let sessions: Arc<Mutex<Vec<Option<Offered>>>> = Arc::default();
    let answered = Arc::new(AtomicU32::new(0));
    let count = answered.clone();
    let base = serve(move |req: Req| {
        let (sessions, answered) = (sessions.clone(), answered.clone());
        async move {
            match req.method {
                hyper::Method::POST => {
                    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    let local = socket.local_addr().unwrap();
                    let mut rtc = RtcConfig::new()
                        .clear_codecs()
                        .set_rtp_mode(true)
                        .enable_h264(true)
                        .set_ice_lite(true)
                        .build(Instant::now());
                    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
                    let mut api = rtc.sdp_api();
                    let mid =
                        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
                    let (offer, pending) = api.apply().unwrap();
                    let mut s = sessions.lock().unwrap();
                    s.push(Some(Offered {
                        rtc,
                        pending,
                        mid,
                        socket,
                    }));
                    reply(406)
                        .header("Content-Type", "application/sdp")
                        .header("Location", format!("/whep/cam/session/{}", s.len() - 1))
                        .body(Full::new(Bytes::from(offer.to_sdp_string())))
                        .unwrap()
                }
                hyper::Method::PATCH => {
                    let sdp = req
                        .headers
                        .iter()
                        .any(|(k, v)| k == "content-type" && v.starts_with("application/sdp"));
                    let n: usize = req
                        .path
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .parse()
                        .unwrap_or(usize::MAX);
                    let taken = sessions.lock().unwrap().get_mut(n).and_then(Option::take);
                    let (Some(mut o), true) = (taken, sdp) else {
                        return reply(404).body(Full::new(Bytes::new())).unwrap();
                    };
                    let Ok(answer) = SdpAnswer::from_sdp_string(&req.body) else {
                        return reply(400).body(Full::new(Bytes::new())).unwrap();
                    };
                    if o.rtc.sdp_api().accept_answer(o.pending, answer).is_err() {
                        return reply(400).body(Full::new(Bytes::new())).unwrap();
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(send_video(o.rtc, o.mid, o.socket));
                    reply(204).body(Full::new(Bytes::new())).unwrap()
                }
                hyper::Method::DELETE => reply(200).body(Full::new(Bytes::new())).unwrap(),
                _ => reply(405).body(Full::new(Bytes::new())).unwrap(),
            }
        }
    })
    .await;
    (base, count)
}

/// Drives one fake session: ICE, DTLS, then H.264 packets once connected.
async fn send_video(mut rtc: Rtc, mid: Mid, socket: UdpSocket) {
    let local: SocketAddr = socket.local_addr().unwrap();
    let mut buf = vec![0u8; 2048];
    let mut frames = tokio::time::interval(Duration::from_millis(33));
    let (mut connected, mut frame, mut next) = (false, 0u32, Instant::now());
    let pt = {
        let media = rtc.media(mid).expect("the video m-line");
        let pts = media.remote_pts().to_vec();
        let cfg = rtc.codec_config();
        pts.into_iter()
            .find(|pt| {
                cfg.params()
                    .iter()
                    .any(|p| p.pt() == *pt && p.spec().codec == Codec::H264)
            })
            .expect("H.264 negotiated")
    };
    while rtc.is_alive() {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { return };
                if let Ok(recv) = Receive::new(Protocol::Udp, from, local, &buf[..n]) {
                    let _ = rtc.handle_input(Input::Receive(Instant::now(), recv));
                }
            }
            _ = frames.tick(), if connected => {
                // An IDR slice (NAL 5, first_mb_in_slice 0) every 30 frames, else a
                // non-IDR slice: what a keyframe detector looks at.
                let mut payload = vec![if frame % 30 == 0 { 0x65 } else { 0x41 }, 0x88];
                payload.resize(600, 0xab);
                let w = RtpWrite::new(pt, u64::from(frame + 1).into(), frame.wrapping_mul(3000), Instant::now(), payload)
                    .marker(true)
                    .nackable(true);
                if let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None) {
                    tx.write_rtp(w);
                }
                frame += 1;
            }
            _ = tokio::time::sleep_until(next.into()) => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
        loop {
            match rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    next = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(Event::Connected)) => connected = true,
                Ok(Output::Event(_)) => {}
                Err(_) => return,
            }
        }
    }
}

/// Three viewers offering `kinds`, for 2 s, of a stream another program publishes.
async fn three_viewers_of_a_foreign_publisher(url: &str, kinds: &[MediaKind]) -> RunReport {
    let mut swarm = SwarmConfig::new(url);
    swarm.foreign = true;
    swarm.kinds = kinds.to_vec();
    run(RunConfig {
        publisher: None,
        swarm,
        viewers: 3,
        ramp_per_sec: 20.0,
        connect_timeout: Duration::from_secs(10),
        duration: Duration::from_secs(2),
        server_pid: None,
    })
    .await
    .expect("the run completes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_follow_a_whep_counter_offer_and_count_a_foreign_stream() {
    let (base, answered) = counter_offering_server().await;
    let report =
        three_viewers_of_a_foreign_publisher(&format!("{base}/whep/cam"), &[MediaKind::Video])
            .await;
    assert_everyone_got_the_stream(&report, 3, 45);
    assert!(report.foreign_publisher);
    assert_eq!(
        answered.load(Ordering::Relaxed),
        3,
        "three answers by PATCH"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_account_a_publisher_that_is_not_the_tool_from_sequence_numbers() {
    let server = common::open_server().await;
    let base = format!("http://{}", server.http_addr());
    // wishd's own str0m publisher: real H.264 access units and Opus, no markers.
    let publisher =
        WhipPublisher::connect(&format!("{base}/whip/other"), PublisherOptions::default())
            .await
            .expect("publishes");
    publisher
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("the publisher connects");
    for kinds in [
        vec![MediaKind::Audio, MediaKind::Video],
        vec![MediaKind::Video],
    ] {
        let report =
            three_viewers_of_a_foreign_publisher(&format!("{base}/whep/other"), &kinds).await;
        assert_everyone_got_the_stream(&report, 3, 40);
        let p99 = report.aggregate.delay_p99_us.expect("a delay figure");
        assert!(
            p99 < 200_000.0,
            "relative delay p99 {p99} µs with {kinds:?}"
        );
    }
    let _ = publisher.delete().await;
    server.shutdown().await;
}
