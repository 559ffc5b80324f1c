//! A publisher that crashes or loses its network sends nothing and says nothing. A
//! new publisher of the same stream takes it over at once (`publisher_takeover`,
//! default `when-silent`), its viewers carry on through the usual source switch, and
//! while the source is silent they keep their last picture: their keyframe requests
//! are held, not answered with a stale one from the keyframe cache.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;
use wishd::client::media::decode_marker;
use wishd::client::{
    HttpResponse, PublisherOptions, ReceivedPacket, WhipPublisher, http_request, publisher_offer,
};
use wishd::config::{Policy, Secret, StaticTokenConfig, Takeover};
use wishd::core::MediaKind;
use wishd::model::EndReason;

use common::{publish, view};

fn video(got: &[ReceivedPacket]) -> Vec<&ReceivedPacket> {
    got.iter().filter(|p| p.kind == MediaKind::Video).collect()
}

async fn post_offer(url: &str, token: Option<&str>) -> HttpResponse {
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/sdp")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    http_request("POST", url, &headers, offer.into_bytes())
        .await
        .expect("HTTP answer")
}

async fn stream_json(base: &str, name: &str) -> Value {
    let r = http_request("GET", &format!("{base}/api/streams"), &[], Vec::new())
        .await
        .unwrap();
    let list: Value = serde_json::from_slice(&r.body).unwrap();
    list["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_publisher_takes_the_stream_of_one_that_crashed_and_viewers_carry_on() {
    let server = common::start().await;
    let base = server.base_url();
    let first = publish(&base, "crash", PublisherOptions::default()).await;
    let viewer = view(&base, "crash").await;
    viewer
        .wait_for(Duration::from_secs(10), |p| video(p).len() > 60)
        .await
        .expect("media flows");
    // The publisher dies: no DELETE, no more packets, no ICE consent (ice_timeout is
    // 10 s, so without a takeover the stream would be refused that long).
    first.abort();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let silent = stream_json(&base, "crash").await;
    assert_eq!(silent["source"]["state"], "silent", "{silent}");
    assert!(silent["source"]["silent_since"].is_string(), "{silent}");

    let t0 = Instant::now();
    let second = publish(&base, "crash", PublisherOptions::default()).await;
    let before = viewer.received_count();
    viewer
        .wait_for(Duration::from_secs(5), |p| p.len() > before + 100)
        .await
        .expect("the second publisher's media reaches the same viewer");
    println!(
        "takeover: POST → connected → 100 packets at the viewer in {} ms",
        t0.elapsed().as_millis()
    );
    assert!(viewer.is_connected());
    // Continuous numbering across the switch, the new source's frames (numbered from
    // 0 again) after it, starting at a keyframe.
    let got = viewer.received();
    let v = video(&got);
    for w in v.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "video sequence broken at the switch"
        );
    }
    let switch = v
        .windows(2)
        .position(|w| {
            decode_marker(&w[1].payload).map(|m| m.frame)
                < decode_marker(&w[0].payload).map(|m| m.frame)
        })
        .expect("the second publisher's frames arrive");
    assert!(wishd::core::is_keyframe_start(
        wishd::core::CodecKind::H264,
        &v[switch + 1].payload
    ));
    assert_eq!(server.directory().counts().publishers, 1);
    let live = stream_json(&base, "crash").await;
    assert_eq!(live["source"]["state"], "live", "{live}");
    assert_eq!(live["source"]["silent_since"], Value::Null);
    assert_eq!(
        server
            .counters()
            .session_metrics
            .ended_total(EndReason::Replaced),
        1
    );
    assert!(second.is_connected());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sending_publisher_keeps_its_stream_unless_takeover_is_always() {
    for (takeover, status) in [(Takeover::WhenSilent, 409), (Takeover::Always, 201)] {
        let server = common::start_with(|c| c.publisher_takeover = takeover).await;
        let base = server.base_url();
        let first = publish(&base, "busy", PublisherOptions::default()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = post_offer(&format!("{base}/whip/busy"), None).await;
        assert_eq!(r.status, status, "{takeover:?}: {}", r.text());
        if status == 201 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while first.is_connected() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                !first.is_connected(),
                "the replaced publisher was not closed"
            );
        } else {
            assert!(first.is_connected());
        }
        assert_eq!(server.directory().counts().publishers, 1);
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_takeover_never_a_crashed_publisher_still_blocks_its_stream() {
    let server = common::start_with(|c| c.publisher_takeover = Takeover::Never).await;
    let base = server.base_url();
    let first = publish(&base, "kept", PublisherOptions::default()).await;
    first.abort();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = post_offer(&format!("{base}/whip/kept"), None).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("already has a publisher"), "{}", r.text());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_publish_rights_for_the_stream_cannot_take_it_over() {
    let token = |value: &str, streams: &[&str]| StaticTokenConfig {
        token: Some(Secret::new(value)),
        token_file: None,
        streams: streams.iter().map(|s| s.to_string()).collect(),
        actions: vec![wishd::model::Role::Publisher],
    };
    let server = common::start_with(|c| {
        c.auth.publish = Policy::Token;
        c.auth.tokens.push(token("studio-token-0001", &["studio"]));
        c.auth.tokens.push(token("guest-token-00001", &["guest-*"]));
    })
    .await;
    let base = server.base_url();
    let url = format!("{base}/whip/studio");
    let first = WhipPublisher::connect(
        &url,
        PublisherOptions {
            token: Some("studio-token-0001".into()),
            ..PublisherOptions::default()
        },
    )
    .await
    .unwrap();
    first.wait_connected(common::CONNECT).await.unwrap();
    let id = first.location().rsplit('/').next().unwrap().to_owned();
    first.abort();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = post_offer(&url, Some("guest-token-00001")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    // The silent publisher keeps the stream.
    let stream = server.directory().stream("studio").unwrap();
    assert!(
        matches!(stream.source, wishd::directory::SourceView::WhipLive(s) if s.to_string() == id)
    );
    let r = post_offer(&url, Some("studio-token-0001")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    server.shutdown().await;
}

/// A source that cannot be asked for keyframes (no PLI/FIR in its offer, as FFmpeg's
/// WHIP muxer) starts viewers from the keyframe cache. During its silence, a viewer's
/// keyframe requests must not replay the cached group: before, each one showed the
/// same old half second again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_during_a_silence_replay_nothing_and_wait_for_the_source() {
    fn no_keyframe_requests(offer: &str) -> String {
        offer
            .lines()
            .filter(|l| !(l.starts_with("a=rtcp-fb:") && (l.contains("pli") || l.contains("fir"))))
            .map(|l| format!("{l}\r\n"))
            .collect()
    }
    let server = common::start().await;
    let base = server.base_url();
    let cache_source = || PublisherOptions {
        offer_filter: Some(no_keyframe_requests),
        keyframe_interval: Duration::from_secs(1),
        ..PublisherOptions::default()
    };
    let first = publish(&base, "still", cache_source()).await;
    let viewer = view(&base, "still").await;
    viewer
        .wait_for(Duration::from_secs(10), |p| video(p).len() > 60)
        .await
        .expect("media flows");
    // A keyframe request while the source sends is answered from the cache.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = viewer.received_count();
    viewer.request_keyframe();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let live_growth = viewer.received_count() - before;

    first.abort();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let held_before = held(&base).await;
    let silent_from = viewer.received_count();
    for _ in 0..4 {
        viewer.request_keyframe();
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let during = viewer.received_count() - silent_from;
    println!(
        "{live_growth} packets in 300 ms after a keyframe request while live; \
         {during} in 4.4 s of silence with 4 requests"
    );
    assert_eq!(
        during, 0,
        "packets reached the viewer while its source was silent"
    );
    assert!(viewer.is_connected());
    assert!(held(&base).await >= held_before + 4.0);

    // A new source takes over: the viewer starts again at its first keyframe.
    let _second = publish(&base, "still", cache_source()).await;
    let from = viewer.received_count();
    viewer
        .wait_for(Duration::from_secs(5), |p| video(&p[from..]).len() > 30)
        .await
        .expect("the new source reaches the viewer");
    let got = viewer.received();
    let first_new = video(&got[from..])[0];
    assert!(wishd::core::is_keyframe_start(
        wishd::core::CodecKind::H264,
        &first_new.payload
    ));
    server.shutdown().await;
}

async fn held(base: &str) -> f64 {
    common::metric(
        base,
        "wishd_keyframe_requests_total{type=\"held_while_silent\"}",
    )
    .await
}
