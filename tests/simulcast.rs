//! Simulcast (RFC 8853) through wishd with the project's own str0m peers: a publisher
//! sending three layers (q 320×180, h 640×360, f 1280×720, each its own SSRC and
//! rid, as browsers and OBS 32.1 send them), viewers that get the best layer, switch
//! at keyframes when their player asks (the WHEP layer extension), and the WHEP
//! server-sent events. Chromium over a narrowed link: tests/browser_simulcast.rs.

mod common;

use std::time::Duration;

use serde_json::Value;
use wishd::client::{
    EventMessage, EventStream, PublisherOptions, ReceivedPacket, SimulcastLayer, WhepViewer,
    WhipPublisher, http_request,
};
use wishd::core::{CodecKind, MediaKind, frame_size, is_keyframe_start};

const JSON: (&str, &str) = ("content-type", "application/json");
const ADMIN: &str = "admin-token-0123456789abcdef";
const ADMIN_AUTH: (&str, &str) = ("authorization", "Bearer admin-token-0123456789abcdef");

/// A server whose operator API answers (with the admin token).
async fn start_with_api(adjust: impl FnOnce(&mut wishd::config::Config)) -> wishd::server::Server {
    common::start_with(|c| {
        c.api.token = Some(wishd::config::Secret::new(ADMIN));
        adjust(c);
    })
    .await
}

fn simulcast() -> PublisherOptions {
    PublisherOptions {
        simulcast: Some(SimulcastLayer::three()),
        // Keyframes come when asked: a switch must not wait for a periodic one.
        keyframe_interval: Duration::from_secs(30),
        ..PublisherOptions::default()
    }
}

/// The picture width of the last keyframe in `pk` that says one.
fn last_width(pk: &[ReceivedPacket]) -> Option<u32> {
    pk.iter()
        .rev()
        .filter(|p| p.kind == MediaKind::Video)
        .find_map(|p| frame_size(CodecKind::H264, &p.payload))
        .map(|(w, _)| w)
}

async fn api(base: &str, path: &str) -> Value {
    let r = http_request("GET", &format!("{base}{path}"), &[ADMIN_AUTH], Vec::new())
        .await
        .expect("API");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("JSON")
}

async fn post_layer(viewer: &WhepViewer, body: &str) -> wishd::client::HttpResponse {
    http_request(
        "POST",
        &format!("{}/layer", viewer.location()),
        &[JSON],
        body.as_bytes().to_vec(),
    )
    .await
    .expect("layer POST")
}

/// Waits until the viewer's newest keyframe announces `width`.
async fn wait_width(viewer: &WhepViewer, width: u32, what: &str) {
    viewer
        .wait_for(Duration::from_secs(10), |pk| last_width(pk) == Some(width))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{what}: the viewer's newest keyframe is {:?} wide, not {width}",
                last_width(&viewer.received())
            )
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulcast_publisher_is_answered_per_rfc_8853_and_the_api_shows_its_layers() {
    let server = start_with_api(|_| {}).await;
    let base = server.base_url();
    let p = common::publish(&base, "sim", simulcast()).await;
    let answer = p.answer_sdp();
    assert!(answer.contains("a=simulcast:recv q;h;f"), "{answer}");
    for rid in ["q", "h", "f"] {
        assert!(answer.contains(&format!("a=rid:{rid} recv")), "{answer}");
    }
    // A viewer starts on the best layer.
    let v = common::view(&base, "sim").await;
    wait_width(&v, 1280, "a new viewer").await;
    // Every layer is measured: its picture size and bit rate, best first.
    let mut layers = Value::Null;
    for _ in 0..50 {
        layers = api(&base, "/api/streams/sim").await["layers"].clone();
        let measured = layers
            .as_array()
            .is_some_and(|l| l.len() == 3 && l.iter().all(|x| x["bitrate"].as_u64() > Some(0)));
        if measured {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let widths: Vec<u64> = layers
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(|l| l["width"].as_u64())
        .collect();
    assert_eq!(widths, [1280, 640, 320], "{layers}");
    let rates: Vec<u64> = layers
        .as_array()
        .expect("layers")
        .iter()
        .filter_map(|l| l["bitrate"].as_u64())
        .collect();
    println!("layers as the API shows them: {layers}");
    assert!(rates[0] > rates[1] && rates[1] > rates[2], "{rates:?}");
    let detail = api(&base, "/api/streams/sim").await;
    let viewer = detail["sessions"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["kind"] == "viewer"))
        .cloned()
        .expect("the viewer's session");
    assert_eq!(viewer["layer"], "f", "{viewer}");
    drop(v);
    drop(p);
    server.shutdown().await;
}

/// The picture sizes a viewer went through, and for each change whether it came at a
/// keyframe start with the sequence numbers continuous across it.
fn switches(pk: &[ReceivedPacket]) -> Vec<(u32, bool)> {
    let video: Vec<&ReceivedPacket> = pk.iter().filter(|p| p.kind == MediaKind::Video).collect();
    let mut out = Vec::new();
    let mut width = None;
    for (i, p) in video.iter().enumerate() {
        let Some((w, _)) = frame_size(CodecKind::H264, &p.payload) else {
            continue;
        };
        if width != Some(w) {
            let at_keyframe = is_keyframe_start(CodecKind::H264, &p.payload);
            let continuous = i == 0 || video[i - 1].seq + 1 == p.seq;
            out.push((w, at_keyframe && continuous));
            width = Some(w);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_chooses_a_layer_by_rid_and_every_switch_lands_on_a_keyframe() {
    let server = common::start().await;
    let base = server.base_url();
    let p = common::publish(&base, "pick", simulcast()).await;
    let v = common::view(&base, "pick").await;
    wait_width(&v, 1280, "a new viewer").await;

    for (rid, width) in [("q", 320), ("h", 640), ("q", 320)] {
        let r = post_layer(&v, &format!(r#"{{"mediaId":"1","rid":"{rid}"}}"#)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        wait_width(&v, width, &format!("rid {rid}")).await;
    }
    // Back to automatic: the best layer again (the path is loopback).
    let r = post_layer(&v, r#"{"mediaId":"1"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_width(&v, 1280, "automatic").await;
    // A cap keeps it under 400 pixels high.
    let r = post_layer(&v, r#"{"maxHeight":400}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_width(&v, 640, "maxHeight 400").await;

    let seen = switches(&v.received());
    println!("picture widths the viewer went through (width, at a keyframe): {seen:?}");
    let widths: Vec<u32> = seen.iter().map(|s| s.0).collect();
    assert_eq!(widths, [1280, 320, 640, 320, 1280, 640]);
    assert!(
        seen.iter().all(|s| s.1),
        "a switch not at a keyframe, or with a gap: {seen:?}"
    );
    // Audio is untouched: one continuous sequence.
    let audio: Vec<u64> = v
        .received()
        .iter()
        .filter(|p| p.kind == MediaKind::Audio)
        .map(|p| p.seq)
        .collect();
    assert!(common::missing_seqs(&audio, 5).is_empty(), "audio gaps");
    // Each switch asked that layer for a keyframe (the first start needed one too).
    let stats = p.stats();
    for rid in ["q", "h", "f"] {
        let l = stats.layer(rid).expect("layer");
        println!(
            "layer {rid}: {} keyframe requests, {} keyframes",
            l.keyframe_requests, l.keyframes_sent
        );
        assert!(l.keyframe_requests >= 1, "{rid}: {stats:?}");
    }
    let up = common::metric(&base, "wishd_layer_switches_total{direction=\"up\"}").await;
    let down = common::metric(&base, "wishd_layer_switches_total{direction=\"down\"}").await;
    assert!(up >= 2.0 && down >= 3.0, "up {up} down {down}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layer_requests_wishd_cannot_carry_out_get_a_4xx_problem() {
    let server = common::start().await;
    let base = server.base_url();
    let _p = common::publish(&base, "bad", simulcast()).await;
    let v = common::view(&base, "bad").await;
    for (body, status, says) in [
        (r#"{"mediaId":"1","rid":"zz"}"#, 400, "unknown rid \"zz\""),
        (
            r#"{"mediaId":"0","rid":"q"}"#,
            400,
            "not the session's video",
        ),
        (r#"{"mediaId":"1","spatialLayerId":1}"#, 400, "simulcast"),
        ("not json", 400, "JSON"),
    ] {
        let r = post_layer(&v, body).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        let detail = common::problem_detail(&r);
        assert!(detail.contains(says), "{body}: {detail}");
    }
    // A stream without simulcast has no rid to choose.
    let _plain = common::publish(&base, "plain", PublisherOptions::default()).await;
    let w = common::view(&base, "plain").await;
    let r = post_layer(&w, r#"{"mediaId":"1","rid":"q"}"#).await;
    assert_eq!(r.status, 400);
    assert!(common::problem_detail(&r).contains("no simulcast layers"));
    server.shutdown().await;
}

/// GET on an event stream's URL, as an `EventSource` sends it.
async fn open_events(url: &str) -> EventStream {
    EventStream::open(
        "GET",
        url,
        &[("accept", "text/event-stream")],
        Duration::from_secs(5),
    )
    .await
    .expect("event stream")
}

/// The `(event, data)` messages so far, each with exactly one data line.
fn pairs(stream: &EventStream) -> Vec<(String, String)> {
    stream
        .messages()
        .into_iter()
        .filter_map(|m| {
            assert_eq!(m.data.len(), 1, "one data line per event: {m:?}");
            Some((m.event?, m.data[0].clone()))
        })
        .collect()
}

/// Whether a message of `kind` whose data contains `data` has come.
fn has(messages: &[EventMessage], kind: &str, data: &str) -> bool {
    messages
        .iter()
        .any(|m| m.event.as_deref() == Some(kind) && m.data.iter().any(|d| d.contains(data)))
}

async fn create_events(viewer: &WhepViewer, body: &str) -> wishd::client::HttpResponse {
    http_request(
        "POST",
        &format!("{}/sse", viewer.location()),
        &[JSON],
        body.as_bytes().to_vec(),
    )
    .await
    .expect("SSE POST")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_deliver_only_the_requested_events_and_end_with_their_session() {
    let server = common::start().await;
    let base = server.base_url();
    let p = common::publish(&base, "ev", simulcast()).await;
    let v = common::view(&base, "ev").await;

    // The 201 links both extensions.
    let offer = wishd::client::viewer_offer(&Default::default()).expect("offer");
    let r = http_request(
        "POST",
        &format!("{base}/whep/ev"),
        &[("content-type", "application/sdp")],
        offer.into_bytes(),
    )
    .await
    .expect("WHEP POST");
    let links: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "link")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        links.iter().any(
            |l| l.contains("urn:ietf:params:whep:ext:core:server-sent-events")
                && l.contains("events=\"active,inactive,layers,reconnect,viewercount\"")
        ),
        "{links:?}"
    );
    assert!(
        links
            .iter()
            .any(|l| l.contains("urn:ietf:params:whep:ext:core:layer")),
        "{links:?}"
    );

    // An unknown event type creates nothing.
    let bad = create_events(&v, r#"["active","bogus"]"#).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.header("location").is_none());

    let only_count = create_events(&v, r#"["viewercount"]"#).await;
    assert_eq!(only_count.status, 201, "{}", only_count.text());
    let count_url = only_count.header("location").expect("Location").to_owned();
    let all = create_events(&v, r#"["active","inactive","layers","viewercount"]"#).await;
    let all_url = all.header("location").expect("Location").to_owned();
    let mut counts = open_events(&count_url).await;
    assert_eq!(counts.status, 200);
    assert_eq!(counts.header("content-type"), Some("text/event-stream"));
    let mut everything = open_events(&all_url).await;

    // Another viewer joins: the count says 3 (v, the linked POST's session, w).
    let _w = common::view(&base, "ev").await;
    counts
        .read_until(Duration::from_secs(5), |m| has(m, "viewercount", ":3}"))
        .await;
    everything
        .read_until(Duration::from_secs(5), |m| {
            has(m, "layers", "") && has(m, "viewercount", ":3}")
        })
        .await;
    let kinds: Vec<String> = pairs(&counts).into_iter().map(|e| e.0).collect();
    assert!(kinds.iter().all(|k| k == "viewercount"), "{kinds:?}");
    assert!(pairs(&counts).iter().any(|e| e.1 == r#"{"viewercount":3}"#));
    let events = pairs(&everything);
    println!("events of the full stream: {events:?}");
    assert_eq!(events[0].0, "active", "a live stream says so first");
    let layers = events
        .iter()
        .find(|e| e.0 == "layers")
        .map(|e| serde_json::from_str::<Value>(&e.1).expect("strict JSON"))
        .expect("a layers event");
    let rids: Vec<&str> = layers["1"]
        .as_array()
        .expect("keyed by the video m-line")
        .iter()
        .filter_map(|l| l["rid"].as_str())
        .collect();
    assert_eq!(rids.len(), 3, "{layers}");

    // The publisher leaves: inactive.
    p.delete().await.expect("DELETE");
    everything
        .read_until(Duration::from_secs(5), |m| has(m, "inactive", ""))
        .await;
    assert!(pairs(&everything).iter().any(|e| e.0 == "inactive"));

    // DELETE ends one stream (its GET ends, later ones are 404); the session's end
    // ends the others.
    let r = http_request("DELETE", &count_url, &[], Vec::new())
        .await
        .expect("DELETE");
    assert_eq!(r.status, 200);
    let r = http_request("GET", &count_url, &[], Vec::new())
        .await
        .expect("GET");
    assert_eq!(r.status, 404);
    v.delete().await.expect("DELETE session");
    let r = http_request("GET", &all_url, &[], Vec::new())
        .await
        .expect("GET");
    assert_eq!(r.status, 404);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_are_told_to_reconnect_when_the_server_shuts_down() {
    let server = common::start().await;
    let base = server.base_url();
    let _p = common::publish(&base, "bye", PublisherOptions::default()).await;
    let v = common::view(&base, "bye").await;
    let r = create_events(&v, r#"["reconnect"]"#).await;
    let url = r.header("location").expect("Location").to_owned();
    let mut sse = open_events(&url).await;
    assert_eq!(sse.status, 200);
    server.shutdown().await;
    sse.read_until(Duration::from_secs(5), |m| has(m, "reconnect", ""))
        .await;
    assert_eq!(
        pairs(&sse),
        [("reconnect".to_owned(), "{}".to_owned())],
        "{}",
        sse.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_simulcast_off_a_simulcast_publisher_sends_its_top_layer_alone() {
    let server = start_with_api(|c| c.simulcast.enabled = false).await;
    let base = server.base_url();
    let p = WhipPublisher::connect(&format!("{base}/whip/s"), simulcast())
        .await
        .expect("201");
    assert!(
        !p.answer_sdp().contains("a=simulcast"),
        "{}",
        p.answer_sdp()
    );
    p.wait_connected(common::CONNECT).await.expect("connected");
    let v = common::view(&base, "s").await;
    wait_width(&v, 1280, "the one encoding").await;
    assert!(p.stats().layers.is_empty());
    let layers = api(&base, "/api/streams/s").await["layers"].clone();
    assert_eq!(layers, Value::Array(vec![]));
    server.shutdown().await;
}
