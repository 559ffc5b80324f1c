//! libdatachannel, the WebRTC stack inside OBS Studio's WHIP output, publishes to a
//! real wishd on 127.0.0.1 through `conformance/obs/whip-publish.mjs` (node-datachannel),
//! which behaves as OBS does: the offer is POSTed after ICE gathering (no trickle), one
//! Opus and one H.264 track (real x264 output, packetized by libdatachannel), a Bearer
//! stream key, DELETE on stop. str0m WHEP viewers receive it.

mod common;
mod interop;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use interop::{Lines, Tool};
use serde_json::Value;
use wishd::client::ViewerOptions;
use wishd::config::{Config, Policy, Secret, StaticTokenConfig};
use wishd::core::MediaKind;
use wishd::model::Role;
use wishd::server::Server;

const KEY: &str = "obs-stream-key-5b7f3a91";

fn with_stream_key(c: &mut Config) {
    c.auth.publish = Policy::Token;
    c.auth.tokens.push(StaticTokenConfig {
        token: Some(Secret::new(KEY)),
        token_file: None,
        streams: vec!["*".into()],
        actions: vec![Role::Publisher],
    });
}

/// Starts the OBS-like publisher for `secs` seconds with a keyframe every `gop` frames.
fn obs_publish(server: &Server, stream: &str, key: &str, secs: u32, gop: u32) -> (Tool, Lines) {
    let conformance = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("conformance");
    assert!(
        conformance.join("node_modules/node-datachannel").is_dir(),
        "node-datachannel is missing. Install it with: (cd conformance && npm ci)"
    );
    let ffmpeg_found = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ffmpeg_found,
        "ffmpeg is missing. Install it with: apt-get install -y ffmpeg"
    );
    let mut child = Command::new("node")
        .arg(conformance.join("obs/whip-publish.mjs"))
        .args(["--url", &format!("{}/whip/{stream}", server.base_url())])
        .args(["--token", key])
        .args(["--seconds", &secs.to_string(), "--gop", &gop.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts (install nodejs)");
    let out = Lines::collect(child.stdout.take().expect("stdout piped"));
    (Tool(child), out)
}

/// Waits for the script's `{"event": name}` line.
async fn event(out: &Lines, name: &str, timeout: Duration) -> Value {
    let tag = format!("\"event\":\"{name}\"");
    let line = out
        .wait_for(timeout, |l| l.contains(&tag) || l.contains("\"refused\""))
        .await
        .unwrap_or_else(|| {
            panic!(
                "no {name} event; publisher said:\n{}",
                out.snapshot().join("\n")
            )
        });
    serde_json::from_str(&line).expect("JSON event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libdatachannel_publishes_like_obs_and_a_viewer_gets_a_keyframe_first_and_opus() {
    let server = common::start_with(with_stream_key).await;
    let (mut node, out) = obs_publish(&server, "studio", KEY, 6, 30);

    let offer = event(&out, "offer", Duration::from_secs(10)).await;
    let sdp = offer["sdp"].as_str().unwrap_or_default();
    // Not trickled: the offer carries its candidates and says gathering is complete.
    assert!(sdp.contains("a=candidate:"), "{sdp}");
    assert!(sdp.contains("a=end-of-candidates"), "{sdp}");
    assert!(sdp.contains("profile-level-id=42e01f"), "{sdp}");

    let connected = event(&out, "connected", Duration::from_secs(10)).await;
    let f = |k: &str| connected[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "libdatachannel WHIP setup: POST to connected {:.1} ms (answer {:.1} ms, ICE {:.1} ms, DTLS {:.1} ms; ICE+DTLS {:.1} ms, goal under 150 ms)",
        f("handshake_ms"),
        f("answer_ms"),
        f("ice_ms"),
        f("dtls_ms"),
        f("ice_ms") + f("dtls_ms")
    );
    assert!(
        f("ice_ms") + f("dtls_ms") < 600.0,
        "ICE+DTLS {} ms",
        f("ice_ms") + f("dtls_ms")
    );

    let viewer = interop::view_when_live(
        &format!("{}/whep/studio", server.base_url()),
        ViewerOptions::default(),
        Duration::from_secs(5),
    )
    .await;
    interop::wait_for_video_and_audio(&viewer).await;
    assert!(
        viewer.answer_sdp().contains("profile-level-id=42e01f"),
        "OBS's profile passes through: {}",
        viewer.answer_sdp()
    );
    let got = viewer.received();
    let video = interop::of_kind(&got, MediaKind::Video);
    interop::assert_starts_sps_pps_idr(&video, "libdatachannel viewer");
    assert!(interop::first_picture_is_whole(&video));
    let first = interop::first_picture_complete(&video).expect("a complete first picture");
    println!(
        "libdatachannel viewer: first keyframe complete {} ms after the WHEP POST",
        first.duration_since(viewer.post_sent_at()).as_millis()
    );
    let audio = interop::of_kind(&got, MediaKind::Audio);
    assert!(audio.len() > 50 && audio.iter().all(|p| !p.payload.is_empty()));

    // The publisher stops with a DELETE, which ends its session at once.
    let stopped = event(&out, "stopped", Duration::from_secs(15)).await;
    println!("libdatachannel publisher: {stopped}");
    assert_eq!(stopped["delete_status"], 200, "{stopped}");
    assert!(node.wait_exit(Duration::from_secs(5)).await);
    assert_eq!(server.directory().counts().publishers, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libdatachannel_with_a_wrong_stream_key_is_refused_with_401() {
    let server = common::start_with(with_stream_key).await;
    let (mut node, out) = obs_publish(&server, "studio", "wrong-stream-key-000", 1, 30);
    let refused = event(&out, "refused", Duration::from_secs(10)).await;
    assert_eq!(refused["status"], 401, "{refused}");
    assert!(node.wait_exit(Duration::from_secs(5)).await);
    assert_eq!(server.directory().counts().publishers, 0);
    server.shutdown().await;
}

/// The test publisher, like some encoders, ignores PLIs although its offer advertises
/// them. After one request goes unanswered for a second, wishd starts later viewers
/// from the cached keyframe instead of leaving them to wait for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_ignores_pli_is_switched_to_the_keyframe_cache() {
    let server = common::start_with(with_stream_key).await;
    // A keyframe every 3 s.
    let (_node, out) = obs_publish(&server, "deaf", KEY, 9, 90);
    event(&out, "keyframe", Duration::from_secs(10)).await;
    let url = format!("{}/whep/deaf", server.base_url());

    // Joining right after a keyframe: wishd asks for another, which never comes.
    let first =
        interop::view_when_live(&url, ViewerOptions::default(), Duration::from_secs(5)).await;
    first
        .wait_for(Duration::from_secs(6), |p| {
            !interop::keyframes(&interop::of_kind(p, MediaKind::Video)).is_empty()
        })
        .await
        .expect("the first viewer gets the next natural keyframe");
    let (_, key_at) = interop::keyframes(&interop::of_kind(&first.received(), MediaKind::Video))[0];
    let waited = key_at.duration_since(first.post_sent_at());
    println!(
        "viewer of a PLI-ignoring publisher, before the switch: first keyframe {} ms after its POST",
        waited.as_millis()
    );

    // Halfway through the next interval, a new viewer starts from the cache.
    tokio::time::sleep_until((key_at + Duration::from_millis(1500)).into()).await;
    let late =
        interop::view_when_live(&url, ViewerOptions::default(), Duration::from_secs(5)).await;
    late.wait_for(Duration::from_secs(5), |p| {
        p.iter().any(|p| p.kind == MediaKind::Video && p.marker)
    })
    .await
    .expect("video reaches the late viewer");
    let video = interop::of_kind(&late.received(), MediaKind::Video);
    interop::assert_starts_sps_pps_idr(&video, "late viewer");
    let startup = interop::first_picture_complete(&video)
        .expect("a complete first picture")
        .duration_since(late.post_sent_at());
    println!(
        "viewer after the switch (joined 1.5 s into a 3 s interval): first keyframe complete {} ms after its POST",
        startup.as_millis()
    );
    assert!(
        startup < Duration::from_millis(500),
        "started after {startup:?}: not from the cache"
    );
    let plis = out
        .snapshot()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["plis"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(plis >= 1, "the publisher got wishd's PLI and ignored it");
    server.shutdown().await;
}
