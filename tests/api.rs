//! The operator's JSON API against a running server with str0m publishers and
//! viewers: live state, kicking a session, stopping a stream, access rules, and every
//! response checked against `src/api/openapi.json`.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;
use wishd::client::{
    HttpResponse, PublisherOptions, VideoCodec, ViewerOptions, WhepViewer, WhipPublisher,
    http_request,
};
use wishd::config::{Policy, Secret, StaticTokenConfig};
use wishd::core::MediaKind;

use common::{openapi, publish, view};

const ADMIN: &str = "admin-token-0123456789abcdef";

async fn get(url: &str, token: Option<&str>) -> HttpResponse {
    request("GET", url, token).await
}

async fn request(method: &str, url: &str, token: Option<&str>) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    http_request(method, url, &headers, Vec::new())
        .await
        .expect("HTTP answer")
}

/// Checks a response against the spec, then returns its JSON body (Null if none).
fn checked(spec: &Value, template: &str, method: &str, r: &HttpResponse) -> Value {
    openapi::check_response(spec, template, method, r)
        .unwrap_or_else(|e| panic!("{method} {template} -> {}: {e}\n{}", r.status, r.text()));
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn session_id(location: &str) -> String {
    location.rsplit('/').next().unwrap_or_default().to_owned()
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_shows_the_live_state_of_a_publish_with_three_viewers_as_the_openapi_file_says() {
    let server = common::start_with(|c| c.api.token = Some(Secret::new(ADMIN))).await;
    let base = server.base_url();
    let spec = openapi::spec();
    let publisher = publish(&base, "cam", PublisherOptions::default()).await;
    let mut viewers = Vec::new();
    for _ in 0..3 {
        viewers.push(view(&base, "cam").await);
    }
    for v in &viewers {
        v.wait_for(Duration::from_secs(10), |p| {
            p.iter().filter(|p| p.kind == MediaKind::Video).count() > 30
        })
        .await
        .expect("media reaches every viewer");
    }
    // Let a stats interval (1 s) pass so rates and RTCP figures exist.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // The list is public here (play is open): no token.
    let r = get(&format!("{base}/api/streams"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let list = checked(&spec, "/api/streams", "GET", &r);
    let streams = list["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{list}");
    let cam = &streams[0];
    assert_eq!(cam["name"], "cam");
    assert_eq!(cam["source"]["kind"], "whip");
    assert_eq!(cam["source"]["state"], "live");
    assert_eq!(
        cam["source"]["addr"],
        publisher.local_addr().to_string(),
        "the publisher's address"
    );
    assert_eq!(cam["viewers"], 3);
    assert!(cam["packets_in"].as_u64().unwrap() > 50, "{cam}");
    assert!(cam["bitrate_in"].as_u64().unwrap() > 0, "{cam}");
    assert!(cam["bitrate_out"].as_u64().unwrap() > 0, "{cam}");
    assert!(cam["uptime_secs"].as_f64().unwrap() > 1.0);
    let tracks = cam["tracks"].as_array().unwrap();
    let video = tracks.iter().find(|t| t["kind"] == "video").unwrap();
    let audio = tracks.iter().find(|t| t["kind"] == "audio").unwrap();
    assert_eq!(video["codec"], "H264");
    assert_eq!(video["clock_rate"], 90000);
    assert!(
        video["fmtp"]
            .as_str()
            .unwrap()
            .contains("packetization-mode=1")
    );
    // The size the publisher's SPS announces, parsed by the core.
    let first = wishd::client::media::video_frame(VideoCodec::H264, 0, true);
    let (w, h) = wishd::core::frame_size(wishd::core::CodecKind::H264, &first[0].payload)
        .expect("the test publisher's SPS has a size");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(w.into()), Some(h.into()))
    );
    assert_eq!(audio["codec"].as_str().unwrap().to_lowercase(), "opus");
    assert_eq!(audio["clock_rate"], 48000);
    assert!(audio["width"].is_null() && audio["height"].is_null());

    // One stream with its sessions: admin only.
    let url = format!("{base}/api/streams/cam");
    assert_eq!(get(&url, None).await.status, 401);
    let r = get(&url, Some("not-the-admin-token-at-all")).await;
    assert_eq!(r.status, 401);
    checked(&spec, "/api/streams/{name}", "GET", &r);
    let r = get(&url, Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let detail = checked(&spec, "/api/streams/{name}", "GET", &r);
    let sessions = detail["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 4, "{detail}");
    let p = &sessions[0];
    assert_eq!(p["kind"], "publisher");
    assert_eq!(p["id"], session_id(publisher.location()));
    assert_eq!(p["peer"], publisher.local_addr().to_string());
    assert_eq!(p["state"], "connected");
    assert!(p["packets_in"].as_u64().unwrap() > 50);
    assert!(p["bitrate_in"].as_u64().unwrap() > 0);
    for v in &viewers {
        let s = sessions
            .iter()
            .find(|s| s["id"] == session_id(v.location()))
            .unwrap_or_else(|| panic!("viewer {} missing in {detail}", v.location()));
        assert_eq!(s["kind"], "viewer");
        assert_eq!(s["state"], "connected");
        assert_eq!(s["peer"], v.local_addr().to_string());
        // The pair its media uses: its own host candidate from its offer.
        assert_eq!(s["path"]["protocol"], "udp", "{s}");
        assert_eq!(s["path"]["remote"], v.local_addr().to_string());
        assert_eq!(s["path"]["remote_type"], "host", "{s}");
        assert!(s["packets_out"].as_u64().unwrap() > 30);
        assert!(s["bytes_out"].as_u64().unwrap() > 0);
        assert_eq!(s["codecs"][0], "H264");
    }
    // RTCP figures: each viewer's receiver reports give RTT and loss within seconds.
    eventually("RTT and loss of every viewer", async || {
        let r = get(&url, Some(ADMIN)).await;
        let d = checked(&spec, "/api/streams/{name}", "GET", &r);
        let viewers: Vec<&Value> = d["sessions"]
            .as_array()?
            .iter()
            .filter(|s| s["kind"] == "viewer")
            .collect();
        viewers
            .iter()
            .all(|s| s["rtt_ms"].is_number() && s["loss"].is_number())
            .then_some(())
    })
    .await;
    let r = get(&format!("{base}/api/streams/nope"), Some(ADMIN)).await;
    assert_eq!(r.status, 404);
    checked(&spec, "/api/streams/{name}", "GET", &r);
    let r = get(&format!("{base}/api/openapi.json"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap(), spec);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicking_a_session_ends_it_and_the_viewer_sees_the_end() {
    let server = common::start_with(|c| c.api.token = Some(Secret::new(ADMIN))).await;
    let base = server.base_url();
    let spec = openapi::spec();
    let _publisher = publish(&base, "cam", PublisherOptions::default()).await;
    let kicked = view(&base, "cam").await;
    let stays = view(&base, "cam").await;
    let id = session_id(kicked.location());

    let url = format!("{base}/api/sessions/{id}");
    assert_eq!(request("DELETE", &url, None).await.status, 401);
    let r = request("DELETE", &url, Some(ADMIN)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    checked(&spec, "/api/sessions/{id}", "DELETE", &r);
    eventually("the kicked viewer to see the end", async || {
        kicked.close_reason()
    })
    .await;
    assert!(!kicked.is_connected());
    // The session is gone from the directory and the API; the other viewer stays.
    let r = request("DELETE", &url, Some(ADMIN)).await;
    assert_eq!(r.status, 404);
    checked(&spec, "/api/sessions/{id}", "DELETE", &r);
    let detail: Value = serde_json::from_slice(
        &get(&format!("{base}/api/streams/cam"), Some(ADMIN))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(detail["viewers"], 1, "{detail}");
    assert!(stays.is_connected());
    stays
        .wait_for(Duration::from_secs(5), |p| p.len() > 10)
        .await
        .unwrap();
    assert_eq!(
        server
            .counters()
            .session_metrics
            .ended_total(wishd::model::EndReason::Kicked),
        1
    );
    // A malformed id is simply unknown.
    let r = request("DELETE", &format!("{base}/api/sessions/xyz"), Some(ADMIN)).await;
    assert_eq!(r.status, 404);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_stream_ends_its_publisher_and_every_viewer() {
    let server = common::start_with(|c| c.api.token = Some(Secret::new(ADMIN))).await;
    let base = server.base_url();
    let spec = openapi::spec();
    let publisher = publish(&base, "cam", PublisherOptions::default()).await;
    let viewers = [view(&base, "cam").await, view(&base, "cam").await];
    let _other = publish(&base, "other", PublisherOptions::default()).await;

    let r = request("DELETE", &format!("{base}/api/streams/cam"), Some(ADMIN)).await;
    assert_eq!(r.status, 204, "{}", r.text());
    checked(&spec, "/api/streams/{name}", "DELETE", &r);
    for v in &viewers {
        eventually("each viewer to see the end", async || v.close_reason()).await;
    }
    eventually("the publisher to be closed", async || {
        (!publisher.is_connected()).then_some(())
    })
    .await;
    let list = get(&format!("{base}/api/streams"), None).await;
    let list = checked(&spec, "/api/streams", "GET", &list);
    let names: Vec<&str> = list["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["other"], "no grace period after a stop");
    // No source: a new viewer is told to come back later.
    let r = http_request(
        "POST",
        &format!("{base}/whep/cam"),
        &[("content-type", "application/sdp")],
        wishd::client::viewer_offer(&ViewerOptions::default())
            .unwrap()
            .into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 409);
    let r = request("DELETE", &format!("{base}/api/streams/cam"), Some(ADMIN)).await;
    assert_eq!(r.status, 404);
    let c = server.counters();
    assert_eq!(
        c.session_metrics
            .ended_total(wishd::model::EndReason::StreamStopped),
        3
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_are_404_without_an_admin_token() {
    let server = common::start().await;
    let base = server.base_url();
    let spec = openapi::spec();
    let _p = publish(&base, "cam", PublisherOptions::default()).await;
    for (method, path, template) in [
        ("GET", "/api/streams/cam", "/api/streams/{name}"),
        ("DELETE", "/api/streams/cam", "/api/streams/{name}"),
        (
            "DELETE",
            "/api/sessions/0123456789abcdef0123456789abcdef",
            "/api/sessions/{id}",
        ),
    ] {
        let r = request(method, &format!("{base}{path}"), Some(ADMIN)).await;
        assert_eq!(r.status, 404, "{method} {path}");
        checked(&spec, template, method, &r);
    }
    assert_eq!(get(&format!("{base}/api/whatever"), None).await.status, 404);
    // The list still follows the play policy (open here).
    let r = get(&format!("{base}/api/streams"), None).await;
    assert_eq!(r.status, 200);
    checked(&spec, "/api/streams", "GET", &r);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_list_needs_a_play_token_when_play_does_and_shows_what_it_may_play() {
    let play_a = "play-a-streams-token";
    let server = common::start_with(|c| {
        c.api.token = Some(Secret::new(ADMIN));
        c.auth.play = Policy::Token;
        c.auth.tokens.push(StaticTokenConfig {
            token: Some(Secret::new(play_a)),
            token_file: None,
            streams: vec!["a*".into()],
            actions: vec![wishd::model::Role::Viewer],
        });
    })
    .await;
    let base = server.base_url();
    let spec = openapi::spec();
    // Streams exist as soon as their WHIP POST is answered.
    let _a = WhipPublisher::connect(&format!("{base}/whip/alpha"), PublisherOptions::default())
        .await
        .unwrap();
    let _b = WhipPublisher::connect(&format!("{base}/whip/beta"), PublisherOptions::default())
        .await
        .unwrap();
    let url = format!("{base}/api/streams");
    let names = |v: &Value| -> Vec<String> {
        v["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = get(&url, None).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    checked(&spec, "/api/streams", "GET", &r);
    let r = get(&url, Some("wrong-token-value")).await;
    assert_eq!(r.status, 401);
    let r = get(&url, Some(play_a)).await;
    assert_eq!(r.status, 200);
    assert_eq!(names(&checked(&spec, "/api/streams", "GET", &r)), ["alpha"]);
    let r = get(&url, Some(ADMIN)).await;
    assert_eq!(
        names(&checked(&spec, "/api/streams", "GET", &r)),
        ["alpha", "beta"]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_answer_when_every_listener_is_up() {
    let server = common::start().await;
    let base = server.base_url();
    let spec = openapi::spec();
    let r = get(&format!("{base}/healthz"), None).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok\n"));
    checked(&spec, "/healthz", "GET", &r);
    let r = get(&format!("{base}/readyz"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    checked(&spec, "/readyz", "GET", &r);
    let r = request("POST", &format!("{base}/readyz"), None).await;
    assert_eq!(r.status, 405);
    // What shutdown does first: a load balancer sees 503 with the reason.
    server.ops().readiness.set_stopping();
    let r = get(&format!("{base}/readyz"), None).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("shutting down"), "{}", r.text());
    checked(&spec, "/readyz", "GET", &r);
    assert_eq!(get(&format!("{base}/healthz"), None).await.status, 200);
    server.shutdown().await;
}

#[test]
fn the_schema_validator_rejects_what_the_spec_forbids() {
    let spec = openapi::spec();
    let track = serde_json::json!({"$ref": "#/components/schemas/Track"});
    let good = serde_json::json!({"kind": "video", "codec": "VP8", "clock_rate": 90000,
        "channels": null, "fmtp": "", "width": 640, "height": 360});
    openapi::validate(&spec, &track, &good).unwrap();
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("fmtp");
    let mut extra = good.clone();
    extra["bogus"] = Value::Bool(true);
    let mut wrong_enum = good.clone();
    wrong_enum["kind"] = "data".into();
    let mut wrong_type = good.clone();
    wrong_type["clock_rate"] = "90000".into();
    let mut null_not_allowed = good.clone();
    null_not_allowed["codec"] = Value::Null;
    let mut negative = good.clone();
    negative["width"] = (-1).into();
    for bad in [
        missing,
        extra,
        wrong_enum,
        wrong_type,
        null_not_allowed,
        negative,
    ] {
        assert!(
            openapi::validate(&spec, &track, &bad).is_err(),
            "accepted {bad}"
        );
    }
    let session = serde_json::json!({"$ref": "#/components/schemas/Session"});
    let s = serde_json::json!({"id": "XYZ", "kind": "viewer", "peer": null, "codecs": [],
        "state": "connected", "bitrate_in": 0, "bitrate_out": 0, "bytes_in": 0, "bytes_out": 0,
        "packets_in": 0, "packets_out": 0, "rtt_ms": null, "loss": null, "nacks": 0,
        "uptime_secs": 1.5});
    assert!(
        openapi::validate(&spec, &session, &s).is_err(),
        "bad id pattern"
    );
    assert!(openapi::response_schema(&spec, "/api/streams", "GET", 418, None).is_err());
}

/// An RTP packet: version 2, payload type 96, the given sequence number.
fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtp_source_shows_its_sender_and_picture_size_and_stopping_it_ends_its_viewers() {
    // A free port for the camera's video.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = common::start_with(|c| {
        c.api.token = Some(Secret::new(ADMIN));
        c.rtp = vec![wishd::config::RtpEntry {
            stream: "cam".into(),
            video: Some(wishd::config::RtpMediumEntry {
                port,
                pt: 96,
                rtpmap: "H264/90000".into(),
                fmtp: "packetization-mode=1".into(),
            }),
            ..Default::default()
        }];
    })
    .await;
    let base = server.base_url();
    let spec = openapi::spec();
    let list = checked(
        &spec,
        "/api/streams",
        "GET",
        &get(&format!("{base}/api/streams"), None).await,
    );
    assert_eq!(list["streams"][0]["source"]["state"], "offline", "{list}");
    assert!(list["streams"][0]["source"]["addr"].is_null());

    // The SPS libx264 writes for 640x360, then an IDR start: a keyframe.
    const SPS: &[u8] = &[
        0x67, 0x42, 0xc0, 0x16, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x02, 0x0f, 0x16, 0x2e, 0x48,
    ];
    let camera = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for seq in 0..10u16 {
        let payload: &[u8] = if seq % 5 == 0 {
            SPS
        } else {
            &[0x65, 0x88, 0x84, 0x00]
        };
        camera
            .send_to(&rtp(seq, payload), ("127.0.0.1", port))
            .await
            .unwrap();
    }
    let cam = eventually("the RTP source to be live", async || {
        let l = checked(
            &spec,
            "/api/streams",
            "GET",
            &get(&format!("{base}/api/streams"), None).await,
        );
        let s = l["streams"][0].clone();
        (s["source"]["state"] == "live" && s["packets_in"] == 10).then_some(s)
    })
    .await;
    assert_eq!(cam["source"]["kind"], "rtp");
    assert_eq!(
        cam["source"]["addr"],
        camera.local_addr().unwrap().to_string()
    );
    assert_eq!(
        (
            cam["tracks"][0]["width"].as_u64(),
            cam["tracks"][0]["height"].as_u64()
        ),
        (Some(640), Some(360))
    );
    assert_eq!(cam["packets_lost"], 0);

    let viewer = WhepViewer::connect(
        &format!("{base}/whep/cam"),
        ViewerOptions {
            audio: false,
            ..ViewerOptions::default()
        },
    )
    .await
    .unwrap();
    viewer.wait_connected(common::CONNECT).await.unwrap();
    let r = request("DELETE", &format!("{base}/api/streams/cam"), Some(ADMIN)).await;
    assert_eq!(r.status, 204);
    eventually("the viewer to see the end", async || viewer.close_reason()).await;
    // The ingest is configuration: the stream stays, with its listener.
    let l = checked(
        &spec,
        "/api/streams",
        "GET",
        &get(&format!("{base}/api/streams"), None).await,
    );
    assert_eq!(l["streams"][0]["name"], "cam");
    assert_eq!(l["streams"][0]["viewers"], 0);
    server.shutdown().await;
}
