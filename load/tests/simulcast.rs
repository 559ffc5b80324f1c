//! The publisher's simulcast, against a receiver that takes it: a str0m peer in the
//! test answers the offer as str0m answers simulcast (`a=simulcast:recv`), so every
//! layer arrives on its own SSRC, bound to its RID. (wishd declines simulcast for now;
//! smoke.rs covers the tool against it.)

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, RtcConfig};
use tokio::net::UdpSocket;

use wishd::core::{CodecKind, frame_size};
use wishd_load::clock::{self, SendTable};
use wishd_load::payload::{self, VIDEO};
use wishd_load::publisher::{Publisher, PublisherConfig, simulcast_layers};

/// What the receiver got on one video SSRC.
#[derive(Default, Debug)]
struct Got {
    /// The RID str0m bound the SSRC to.
    rid: Option<String>,
    payload_bytes: usize,
    /// Picture sizes the keyframes' SPS announce.
    pictures: Vec<(u32, u32)>,
    /// (layer, publisher's sequence number) of each marker.
    markers: Vec<(u8, u64)>,
    first: Option<Instant>,
}

type Received = Arc<Mutex<BTreeMap<u32, Got>>>;

/// A WHIP endpoint whose sessions are str0m peers that record the video they get.
async fn simulcast_receiver() -> (String, Received) {
    wishd::client::install_crypto_provider();
    let got: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            let svc = service_fn(move |req: hyper::Request<Incoming>| {
                let seen = seen.clone();
                async move {
                    let resp = hyper::Response::builder();
                    if req.method() != hyper::Method::POST {
                        return Ok::<_, Infallible>(
                            resp.status(200).body(Full::new(Bytes::new())).unwrap(),
                        );
                    }
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let offer = SdpOffer::from_sdp_string(&String::from_utf8_lossy(&body));
                    let answer = session(offer.unwrap(), seen).await;
                    Ok(resp
                        .status(201)
                        .header("Location", "/session/1")
                        .header("Content-Type", "application/sdp")
                        .body(Full::new(Bytes::from(answer)))
                        .unwrap())
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    (base, got)
}

/// Answers `offer` and runs the session in the background.
async fn session(offer: SdpOffer, got: Received) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let answer = rtc.sdp_api().accept_offer(offer).unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let next = loop {
                match rtc.poll_output().unwrap() {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) => {
                        let _ = socket.send_to(&t.contents, t.destination).await;
                    }
                    Output::Event(Event::RtpPacket(p)) if *p.header.payload_type != 111 => {
                        let rid = rtc
                            .direct_api()
                            .stream_rx(&p.header.ssrc)
                            .and_then(|rx| rx.rid())
                            .map(|r| r.to_string());
                        let mut got = got.lock().unwrap();
                        let g = got.entry(*p.header.ssrc).or_default();
                        g.rid = g.rid.take().or(rid);
                        g.first.get_or_insert(p.timestamp);
                        g.payload_bytes += p.payload.len();
                        g.pictures.extend(frame_size(CodecKind::H264, &p.payload));
                        if let Some(m) = payload::decode(&p.payload) {
                            g.markers.push((m.layer, m.seq));
                        }
                    }
                    Output::Event(_) => {}
                }
            };
            let wait = next.saturating_duration_since(Instant::now());
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    let Ok((n, src)) = r else { continue };
                    if let Ok(r) = Receive::new(Protocol::Udp, src, local, &buf[..n]) {
                        rtc.handle_input(Input::Receive(Instant::now(), r)).unwrap();
                    }
                }
                _ = tokio::time::sleep(wait) => {
                    rtc.handle_input(Input::Timeout(Instant::now())).unwrap();
                }
            }
        }
    });
    answer.to_sdp_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_layer_a_simulcast_answer_takes_arrives_on_its_own_ssrc() {
    let (base, got) = simulcast_receiver().await;
    let layers = simulcast_layers(2_500_000, 30, 2.0, 1200);
    let mut cfg = PublisherConfig::standard(format!("{base}/whip/sim"));
    cfg.simulcast = Some(layers.clone());
    let table = Arc::new(SendTable::default());
    let publisher = Publisher::start(cfg, table.clone()).await.unwrap();
    assert_eq!(publisher.layers_sent, ["q", "h", "f"]);
    assert!(publisher.wait_connected(Duration::from_secs(5)).await);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    // The guard goes before the publisher stops (an await).
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), 3, "{got:?}");
        let now = clock::now_ns();
        for (index, layer) in layers.iter().enumerate() {
            let g = got
                .values()
                .find(|g| g.rid.as_deref() == Some(layer.rid.as_str()))
                .unwrap_or_else(|| panic!("no SSRC bound to {}", layer.rid));
            let want = (u32::from(layer.width), u32::from(layer.height));
            assert_eq!(g.pictures.first(), Some(&want), "{}", layer.rid);
            // Every marker names the layer, and the publisher's table has the send time
            // of the layer's packets under the layer's own sequence numbers.
            assert!(g.markers.iter().all(|(l, _)| usize::from(*l) == index));
            let track = clock::track(VIDEO, index as u8);
            let timed = g
                .markers
                .iter()
                .filter(|(_, seq)| table.lookup(track, *seq, now).is_some())
                .count();
            assert_eq!(timed, g.markers.len(), "{}", layer.rid);
            let secs = g.first.map_or(1.0, |t| t.elapsed().as_secs_f64());
            let bps = g.payload_bytes as f64 * 8.0 / secs;
            let want_bps = layer.shape.bitrate();
            eprintln!(
                "layer {}: {:.0} kbit/s of payload, shape {:.0}",
                layer.rid,
                bps / 1e3,
                want_bps / 1e3
            );
            // Two keyframes fall in some 2.5 s: above the average, well within this.
            assert!(
                bps > 0.7 * want_bps && bps < 1.5 * want_bps,
                "{}: {bps:.0} bit/s, shape {want_bps:.0}",
                layer.rid
            );
        }
    }
    let c = publisher.counters();
    let all = c.video_packets.load(std::sync::atomic::Ordering::Relaxed);
    let top = c
        .top_layer_packets
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(top > 0 && top < all, "top {top} of {all}");
    publisher.stop().await;
}
