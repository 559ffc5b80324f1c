//! `[[pull]]`: a stream played from another WHEP server and served here as its own;
//! `[[push]]`: a stream of this server published to another WHIP server.
//! The origin is another wishd with a str0m publisher; the edge pulls with wishd's own
//! WHEP client, and its viewers are str0m viewers.

mod common;
mod interop;

use common::until;

use std::time::{Duration, Instant};

use wishd::client::{PublisherOptions, ViewerOptions, WhepViewer, http_request};
use wishd::config::PullEntry;
use wishd::core::MediaKind;

const ADMIN: &str = "pull-test-admin-token";

/// A server whose API answers the test (admin token [`ADMIN`]).
async fn server(adjust: impl FnOnce(&mut wishd::config::Config)) -> wishd::server::Server {
    common::start_with(|c| {
        c.api.token = Some(wishd::config::Secret::new(ADMIN));
        adjust(c);
    })
    .await
}

/// `GET path` of the server's API, as JSON (null when it fails).
async fn api(server: &wishd::server::Server, path: &str) -> serde_json::Value {
    let url = format!("{}{path}", server.base_url());
    let auth = format!("Bearer {ADMIN}");
    match http_request("GET", &url, &[("Authorization", &auth)], Vec::new()).await {
        Ok(r) if r.status == 200 => serde_json::from_slice(&r.body).unwrap_or_default(),
        _ => serde_json::Value::Null,
    }
}

/// The viewers the origin counts for `stream` (`GET /api/streams/{stream}`).
async fn viewers_at(server: &wishd::server::Server, stream: &str) -> u64 {
    api(server, &format!("/api/streams/{stream}")).await["viewers"]
        .as_u64()
        .unwrap_or(0)
}

/// The kind and state of the server's first source (`GET /api/sources`).
async fn first_source(server: &wishd::server::Server) -> (String, String) {
    let v = api(server, "/api/sources").await;
    let s = &v["sources"][0];
    (
        s["kind"].as_str().unwrap_or_default().to_owned(),
        s["state"].as_str().unwrap_or_default().to_owned(),
    )
}

/// An edge server pulling `stream` from `origin`.
async fn edge(
    origin: &wishd::server::Server,
    stream: &str,
    adjust: impl FnOnce(&mut PullEntry),
) -> wishd::server::Server {
    let mut entry = PullEntry {
        stream: stream.into(),
        url: format!("{}/whep/{stream}", origin.base_url()),
        ..PullEntry::default()
    };
    adjust(&mut entry);
    server(|c| c.pull.push(entry)).await
}

/// How long a PLI `viewer` sends takes to reach `publisher` (at most 3 s).
async fn pli_reaches(viewer: &WhepViewer, publisher: &wishd::client::WhipPublisher) -> Duration {
    let asked = publisher.stats().keyframe_requests.len();
    viewer.request_keyframe();
    until(
        "the PLI reaches the publisher",
        Duration::from_secs(3),
        || {
            let n = publisher.stats().keyframe_requests.len();
            async move { n > asked }
        },
    )
    .await
}

fn video_count(got: &[wishd::client::ReceivedPacket]) -> usize {
    got.iter().filter(|p| p.kind == MediaKind::Video).count()
}

fn video_seqs(v: &WhepViewer) -> Vec<u64> {
    interop::of_kind(&v.received(), MediaKind::Video)
        .iter()
        .map(|p| p.seq)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_stream_plays_at_the_edge_from_one_upstream_session_that_survives_a_publisher_restart()
 {
    let origin = server(|c| c.publisher_grace = Duration::from_secs(5)).await;
    let publisher = common::publish(&origin.base_url(), "live", PublisherOptions::default()).await;
    let edge = edge(&origin, "live", |_| {}).await;
    let url = format!("{}/whep/live", edge.base_url());
    let t0 = Instant::now();
    let mut viewers = Vec::new();
    for _ in 0..3 {
        viewers.push(
            interop::view_when_live(&url, ViewerOptions::default(), Duration::from_secs(10)).await,
        );
    }
    let joined = t0.elapsed();
    for v in &viewers {
        v.wait_for(Duration::from_secs(5), |p| video_count(p) >= 30)
            .await
            .expect("video at the edge");
    }
    for (i, v) in viewers.iter().enumerate() {
        let video = interop::of_kind(&v.received(), MediaKind::Video);
        interop::assert_starts_sps_pps_idr(&video, &format!("edge viewer {i}"));
        assert!(
            !interop::of_kind(&v.received(), MediaKind::Audio).is_empty(),
            "edge viewer {i} gets audio"
        );
    }
    let upstream = viewers_at(&origin, "live").await;
    println!(
        "3 edge viewers live {} ms after the first POST; the origin counts {upstream} viewer(s)",
        joined.as_millis()
    );
    assert_eq!(upstream, 1, "one upstream session for every edge viewer");

    // A keyframe an edge viewer asks for reaches the publisher at the origin.
    let reached = pli_reaches(&viewers[0], &publisher).await;
    println!(
        "an edge viewer's PLI reached the origin's publisher in {} ms",
        reached.as_millis()
    );

    // The publisher goes and another comes back within the origin's grace period:
    // the edge's viewers play on, numbered without a break, from a keyframe.
    let before: Vec<usize> = viewers.iter().map(|v| v.received_count()).collect();
    publisher.delete().await.expect("DELETE");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = common::publish(&origin.base_url(), "live", PublisherOptions::default()).await;
    for (v, n) in viewers.iter().zip(&before) {
        let want = n + 60;
        until(
            "media again after the restart",
            Duration::from_secs(5),
            || {
                let got = v.received_count();
                async move { got > want }
            },
        )
        .await;
    }
    for (i, v) in viewers.iter().enumerate() {
        let seqs = video_seqs(v);
        let missing = common::missing_seqs(&seqs, 0);
        let ssrcs: std::collections::BTreeSet<u32> =
            interop::of_kind(&v.received(), MediaKind::Video)
                .iter()
                .map(|p| p.ssrc)
                .collect();
        println!(
            "edge viewer {i}: {} video packets, {} missing, SSRCs {ssrcs:?}",
            seqs.len(),
            missing.len()
        );
        assert_eq!(ssrcs.len(), 1, "edge viewer {i} keeps its SSRC");
        assert!(missing.is_empty(), "edge viewer {i} lost {missing:?}");
    }
    assert_eq!(viewers_at(&origin, "live").await, 1);

    // The publisher goes for good: the edge's stream goes offline, and a new viewer
    // there is told to come back later.
    again.delete().await.expect("DELETE");
    let off = until(
        "the edge's stream goes offline",
        Duration::from_secs(15),
        || {
            let e = &edge;
            async move { first_source(e).await.1 == "offline" }
        },
    )
    .await;
    common::assert_offline_409(&url, "after the origin's stream ended").await;
    println!(
        "the origin's stream ended; the edge refused new viewers {} ms later",
        off.as_millis()
    );
    edge.shutdown().await;
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_demand_pull_holds_an_upstream_session_only_while_the_edge_has_viewers() {
    let origin = server(|_| {}).await;
    let _publisher = common::publish(&origin.base_url(), "show", PublisherOptions::default()).await;
    let edge = edge(&origin, "show", |e| {
        e.on_demand = true;
        e.close_after = Duration::from_secs(1);
    })
    .await;
    until("the pull is idle", Duration::from_secs(10), || {
        let e = &edge;
        async move { first_source(e).await == ("whep".into(), "idle".into()) }
    })
    .await;
    until(
        "no upstream session while idle",
        Duration::from_secs(5),
        || {
            let o = &origin;
            async move { viewers_at(o, "show").await == 0 }
        },
    )
    .await;

    let url = format!("{}/whep/show", edge.base_url());
    let t0 = Instant::now();
    let viewer =
        interop::view_when_live(&url, ViewerOptions::default(), Duration::from_secs(10)).await;
    viewer
        .wait_for(Duration::from_secs(10), |p| video_count(p) >= 10)
        .await
        .expect("video once the pull connected");
    let first_video = t0.elapsed();
    interop::assert_starts_sps_pps_idr(
        &interop::of_kind(&viewer.received(), MediaKind::Video),
        "on-demand edge viewer",
    );
    assert_eq!(viewers_at(&origin, "show").await, 1);
    viewer.delete().await.expect("DELETE");
    let left = until(
        "the upstream session goes after close_after",
        Duration::from_secs(6),
        || {
            let o = &origin;
            async move { viewers_at(o, "show").await == 0 }
        },
    )
    .await;
    println!(
        "on demand: first video at the edge {} ms after its viewer's POST; the upstream \
         session went {} ms after the viewer left (close_after 1 s)",
        first_video.as_millis(),
        left.as_millis()
    );
    assert!(left >= Duration::from_millis(900), "not before close_after");
    edge.shutdown().await;
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_of_a_relayed_stream_is_refused_with_508_loop_detected() {
    // B relays "loop" from A; A2 relays it from B. B refuses A2's relay request, so a
    // stream crosses one relay at most, and two servers pulling from each other (B
    // and A2, were A2 at A's address) could not feed each other.
    let a = server(|_| {}).await;
    let b = server(|c| {
        c.pull.push(PullEntry {
            stream: "loop".into(),
            url: format!("{}/whep/loop", a.base_url()),
            ..PullEntry::default()
        })
    })
    .await;
    let a2 = server(|c| {
        c.pull.push(PullEntry {
            stream: "loop".into(),
            url: format!("{}/whep/loop", b.base_url()),
            ..PullEntry::default()
        })
    })
    .await;
    // B pulls from A, which has no such stream (409: B stays offline); A2 pulls
    // from B, which relays "loop" itself: 508.
    let t0 = Instant::now();
    let refused = loop {
        let v = api(&a2, "/api/sources").await;
        let e = v["sources"][0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !e.is_empty() {
            break e;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no error yet: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("a relay of a relay: {refused}");
    assert!(refused.contains("508"), "{refused}");
    assert!(refused.contains("relay"), "{refused}");
    assert_eq!(
        viewers_at(&b, "loop").await,
        0,
        "no session of the refused relay"
    );
    for s in [a2, b, a] {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_adds_a_pull_a_viewer_watches_it_and_removing_it_ends_the_viewer() {
    let origin = server(|_| {}).await;
    let _publisher = common::publish(&origin.base_url(), "api", PublisherOptions::default()).await;
    let edge = server(|_| {}).await;
    let auth = format!("Bearer {ADMIN}");
    let body = serde_json::json!({ "pull": {
        "stream": "api", "url": format!("{}/whep/api", origin.base_url()) } });
    let added = http_request(
        "POST",
        &format!("{}/api/sources", edge.base_url()),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().into_bytes(),
    )
    .await
    .expect("POST /api/sources");
    let listed: serde_json::Value = serde_json::from_slice(&added.body).unwrap_or_default();
    println!("POST /api/sources: {} {listed}", added.status);
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(listed["kind"], "whep");
    let url = format!("{}/whep/api", edge.base_url());
    let viewer =
        interop::view_when_live(&url, ViewerOptions::default(), Duration::from_secs(10)).await;
    viewer
        .wait_for(Duration::from_secs(5), |p| video_count(p) >= 10)
        .await
        .expect("video from the added pull");
    assert_eq!(viewers_at(&origin, "api").await, 1);
    let removed = http_request(
        "DELETE",
        &format!("{}/api/sources/api", edge.base_url()),
        &[("Authorization", &auth)],
        Vec::new(),
    )
    .await
    .expect("DELETE /api/sources/api");
    assert_eq!(removed.status, 204, "{}", removed.text());
    until("the viewer's session ends", Duration::from_secs(5), || {
        let connected = viewer.is_connected();
        async move { !connected }
    })
    .await;
    until("the upstream session goes", Duration::from_secs(5), || {
        let o = &origin;
        async move { viewers_at(o, "api").await == 0 }
    })
    .await;
    edge.shutdown().await;
    origin.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_stream_plays_at_the_receiving_server_through_a_publisher_restart() {
    // Each server waits 3 s for a publisher that left before ending its stream.
    let receiver = server(|c| c.publisher_grace = Duration::from_secs(3)).await;
    let sender = server(|c| {
        c.publisher_grace = Duration::from_secs(3);
        c.push.push(wishd::config::PushEntry {
            stream: "up".into(),
            url: format!("{}/whip/up", receiver.base_url()),
            token: None,
        });
    })
    .await;
    let t0 = Instant::now();
    let publisher = common::publish(&sender.base_url(), "up", PublisherOptions::default()).await;
    let url = format!("{}/whep/up", receiver.base_url());
    let viewer =
        interop::view_when_live(&url, ViewerOptions::default(), Duration::from_secs(10)).await;
    viewer
        .wait_for(Duration::from_secs(5), |p| video_count(p) >= 30)
        .await
        .expect("video at the receiving server");
    println!(
        "pushed: the receiving server's viewer had 30 video packets {} ms after the publisher's POST",
        t0.elapsed().as_millis()
    );
    interop::assert_starts_sps_pps_idr(
        &interop::of_kind(&viewer.received(), MediaKind::Video),
        "viewer of the pushed stream",
    );
    assert!(!interop::of_kind(&viewer.received(), MediaKind::Audio).is_empty());

    // The receiving server's keyframe request reaches the publisher.
    let reached = pli_reaches(&viewer, &publisher).await;
    println!(
        "a PLI at the receiving server reached the publisher in {} ms",
        reached.as_millis()
    );

    // The publisher comes back within its grace period: the push goes on, numbered on.
    let before = viewer.received_count();
    publisher.delete().await.expect("DELETE");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = common::publish(&sender.base_url(), "up", PublisherOptions::default()).await;
    until(
        "media again after the restart",
        Duration::from_secs(5),
        || {
            let n = viewer.received_count();
            async move { n > before + 60 }
        },
    )
    .await;
    let missing = common::missing_seqs(&video_seqs(&viewer), 0);
    println!(
        "after the publisher's restart: {} video sequence numbers missing",
        missing.len()
    );
    assert!(missing.is_empty(), "lost {missing:?}");

    // The stream ends here: its push ends, and so does the stream there.
    again.delete().await.expect("DELETE");
    let ended = until(
        "the receiving server's viewer ends",
        Duration::from_secs(15),
        || {
            let c = viewer.is_connected();
            async move { !c }
        },
    )
    .await;
    println!(
        "the stream ended; the receiving server's viewer ended {} ms later",
        ended.as_millis()
    );
    sender.shutdown().await;
    receiver.shutdown().await;
}
