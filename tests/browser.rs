//! wishd's own web pages in headless Chromium (Debian's, driven by playwright-core):
//! the publish page publishes the fake camera and microphone over WHIP with H.264,
//! VP8, VP9 and AV1, the watch page plays it over WHEP, and the embeddable player on a page
//! of another origin plays an ffmpeg RTP camera from wishd's cached keyframe. The
//! player's refusals (401, 403, 409) are shown in words, and it comes back by itself
//! after the publisher leaves and returns. A simulcast stream gets the player's
//! quality menu, viewer count and waiting state from the WHEP extensions.
//!
//! One browser runs every scenario (conformance/browser/pages.mjs); its getStats()
//! readings come back as JSON and are checked here. Screenshots of the pages land in
//! conformance/out/ (git-ignored).

mod clients;
mod common;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use wishd::config::{Policy, Secret, StaticTokenConfig};
use wishd::model::Role;

const PUBLISH_TOKEN: &str = "web-test-publish-token";
const PLAY_TOKEN: &str = "web-test-play-token";

fn token(value: &str, streams: &[&str], actions: &[Role]) -> StaticTokenConfig {
    StaticTokenConfig {
        token: Some(Secret::new(value)),
        token_file: None,
        streams: streams.iter().map(|s| s.to_string()).collect(),
        actions: actions.to_vec(),
    }
}

/// The figures of a passed scenario, or why it failed: the client, the scenario and
/// the step.
fn scenario<'a>(report: &'a Value, name: &str) -> Result<&'a Value, String> {
    let results = report["results"]
        .as_array()
        .ok_or_else(|| format!("chromium: no results: {report}"))?;
    let r = results
        .iter()
        .find(|r| r["name"] == name)
        .ok_or_else(|| format!("chromium {name}: the scenario did not run"))?;
    if r["ok"] == Value::Bool(true) {
        Ok(&r["figures"])
    } else {
        Err(format!(
            "chromium {name}: failed at step \"{}\": {}",
            r["step"].as_str().unwrap_or("?"),
            r["error"].as_str().unwrap_or("?")
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_from_the_publish_page_and_plays_on_the_watch_page_and_embedded_player()
{
    clients::require_playwright();
    let (vport, aport) = (clients::free_port_pair(), clients::free_port_pair());
    // Publishing needs a token (typed into the publish page); playing is open. A short
    // grace period and Retry-After let the reconnect scenario finish quickly.
    let open = common::start_with(|c| {
        c.auth.publish = Policy::Token;
        c.auth
            .tokens
            .push(token(PUBLISH_TOKEN, &["*"], &[Role::Publisher]));
        c.publisher_grace = Duration::from_millis(1500);
        c.retry_after_secs = 1;
        c.rtp.push(clients::h264_opus_camera("cam", vport, aport));
    })
    .await;
    // Playing needs a token that is valid for streams "open-*" only.
    let locked = common::start_with(|c| {
        c.auth.play = Policy::Token;
        c.auth
            .tokens
            .push(token(PLAY_TOKEN, &["open-*"], &[Role::Viewer]));
    })
    .await;

    // An ffmpeg camera (the README's script) with a keyframe every 2 s; the player
    // joins between keyframes, so it starts from the one wishd cached. It plays for at
    // most 4 minutes (killed with the test): its scenario comes after the four
    // publish-watch ones, which took up to a minute on a busy machine, and a 60 s
    // camera once stopped just as the player was checked.
    let camera_dir = std::env::temp_dir().join(format!("wishd-browser-{}", std::process::id()));
    std::fs::create_dir_all(&camera_dir).expect("temp dir");
    let mut ffmpeg = tokio::process::Command::new(clients::root().join("scripts/camera-ffmpeg.sh"));
    ffmpeg
        .args(["127.0.0.1", &vport.to_string(), &aport.to_string(), "240"])
        .current_dir(&camera_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let camera = ffmpeg
        .spawn()
        .expect("ffmpeg camera starts (apt-get install ffmpeg)");

    let base = open.base_url();
    let locked_base = locked.base_url();
    let plan = json!({
        "out": clients::out_dir(),
        "scenarios": [
            { "name": "h264", "kind": "publish-watch", "base": base, "stream": "web-h264",
              "codec": "H264", "resolution": "640x360", "token": PUBLISH_TOKEN,
              "watch_first": true, "reconnect": true, "screenshots": true, "index": true },
            { "name": "vp8", "kind": "publish-watch", "base": base, "stream": "web-vp8",
              "codec": "VP8", "resolution": "640x360", "token": PUBLISH_TOKEN,
              "screenshots": true },
            { "name": "vp9", "kind": "publish-watch", "base": base, "stream": "web-vp9",
              "codec": "VP9", "resolution": "640x360", "token": PUBLISH_TOKEN },
            { "name": "av1", "kind": "publish-watch", "base": base, "stream": "web-av1",
              "codec": "AV1", "resolution": "640x360", "token": PUBLISH_TOKEN },
            { "name": "ffmpeg-camera", "kind": "watch", "base": base, "stream": "cam",
              "expect_width": 640, "expect_height": 360, "screenshot": "embed-camera",
              "watch_screenshot": "watch-camera" },
            { "name": "401", "kind": "refused", "base": locked_base, "stream": "open-1",
              "expect_state": "error", "expect_text": "needs a play token",
              "then_token": PLAY_TOKEN },
            { "name": "403", "kind": "refused", "base": locked_base, "stream": "closed-1",
              "token": PLAY_TOKEN, "expect_state": "error", "expect_text": "may not play" },
            { "name": "index-token", "kind": "index-token", "base": locked_base, "token": PLAY_TOKEN },
            { "name": "reasons", "kind": "reasons", "base": locked_base },
            { "name": "publish-401", "kind": "publish-refused", "base": base, "stream": "web-x",
              "token": "not-a-token", "expect_text": "does not accept this token" },
            { "name": "publish-409", "kind": "publish-refused", "base": base, "stream": "cam",
              "token": PUBLISH_TOKEN, "expect_text": "already has a source" },
        ],
    });
    let report = clients::run(
        "chromium",
        clients::node(&["conformance/browser/pages.mjs", &plan.to_string()]),
        Duration::from_secs(150),
    )
    .await;
    drop(camera);
    let _ = std::fs::remove_dir_all(&camera_dir);

    let names = [
        "h264",
        "vp8",
        "vp9",
        "av1",
        "ffmpeg-camera",
        "401",
        "403",
        "index-token",
        "reasons",
        "publish-401",
        "publish-409",
    ];
    let failures: Vec<String> = names
        .iter()
        .filter_map(|n| scenario(&report, n).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let passed = |name| scenario(&report, name).expect("checked above");

    for (name, codec) in [
        ("h264", "H264"),
        ("vp8", "VP8"),
        ("vp9", "VP9"),
        ("av1", "AV1"),
    ] {
        let f = passed(name);
        assert_eq!(f["codec"], codec, "chromium {name}: decoded codec");
        assert_eq!(
            (f["width"].as_u64(), f["height"].as_u64()),
            (Some(640), Some(360)),
            "chromium {name}: decoded resolution"
        );
        println!(
            "chromium {} {codec}: WHEP POST → first decoded frame {} ms; {} frames and {} audio packets in 2 s; encoder {}",
            report["version"].as_str().unwrap_or("?"),
            f["first_frame_ms"],
            f["frames_in_2s"],
            f["audio_packets_in_2s"],
            f["encoder"]
        );
    }
    let h264 = passed("h264");
    println!(
        "chromium H264: player back {} ms after the publisher restarted (first frame {} ms after its new POST)",
        h264["reconnect_ms"], h264["reconnect_first_frame_ms"]
    );
    println!("chromium index row: {}", h264["index_row"]);
    let cam = passed("ffmpeg-camera");
    println!(
        "chromium ← ffmpeg RTP camera (cached keyframe): WHEP POST → first decoded frame {} ms",
        cam["first_frame_ms"]
    );
    for name in ["401", "403", "publish-401", "publish-409"] {
        println!(
            "chromium {name}: \"{}\"",
            passed(name)["message"].as_str().unwrap_or("")
        );
    }
    let copied = common::metric(&base, "wishd_offer_templates_total{how=\"copied\"}").await;
    let parsed = common::metric(&base, "wishd_offer_templates_total{how=\"parsed\"}").await;
    println!("chromium offers: {parsed} templates parsed, {copied} copied");
    // The H.264 scenario plays one stream several times from the same page: str0m
    // parses the player's offer once and copies it after (`sdp::template`).
    assert!(
        copied >= 1.0,
        "no chromium offer reused a parsed template ({parsed} parsed)"
    );
    // And wishd's inspection reads the player's offer once (`sdp::memo`).
    let remembered =
        common::metric(&base, "wishd_offer_inspections_total{how=\"remembered\"}").await;
    let inspected = common::metric(&base, "wishd_offer_inspections_total{how=\"parsed\"}").await;
    println!("chromium offers: {inspected} inspected whole, {remembered} remembered");
    assert!(
        remembered >= 1.0,
        "no chromium offer was given a remembered inspection ({inspected} parsed)"
    );
    locked.shutdown().await;
    open.shutdown().await;
}

/// A simulcast stream on `<wishd-player>`, with the WHEP extensions wishd links in its
/// answer: Chromium publishes its fake camera as three H.264 layers (q 320×180, h
/// 640×360, f 1280×720); the watch page's player shows a quality menu from the
/// `layers` event (Auto and the three sizes), and choosing 320×180 and then Auto
/// changes the picture it decodes; its viewer count follows a second player embedded
/// on another origin; it waits when the publisher leaves (`inactive`) and plays on
/// in the same session when it returns (`active`); it is told to reconnect when the
/// server shuts down (`reconnect`); and without
/// the Link headers it plays as before, with neither menu nor count. The index page
/// lists the layers.
///
/// The publisher is Chromium rather than the project's str0m client: the str0m
/// client's synthetic H.264 carries a real SPS (so wishd knows each layer's size) but
/// no decodable slices, and Chromium decodes none of its frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_player_offers_simulcast_layers_and_follows_the_server_sent_events() {
    clients::require_playwright();
    let server = common::start().await;
    let base = server.base_url();
    let plan = json!({
        "out": clients::out_dir(),
        "scenarios": [
            { "name": "simulcast-player", "kind": "simulcast-player", "base": base,
              "stream": "web-simulcast", "index": true, "shutdown": true,
              "screenshot": "watch-simulcast" },
        ],
    });
    let mut chromium = clients::Script::spawn(
        "chromium",
        clients::node(&["conformance/browser/pages.mjs", &plan.to_string()]),
    );
    // The last step waits for the server to go away: its viewers get `reconnect`.
    // A failure before it ends the script, which wait_for reports with its output.
    chromium
        .wait_for(
            "simulcast-player: server: shuts down now",
            Duration::from_secs(120),
        )
        .await;
    server.shutdown().await;
    let report = chromium.finish(Duration::from_secs(30)).await;
    let f = scenario(&report, "simulcast-player").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        f["menu"],
        json!(["Auto", "1280×720", "640×360", "320×180"]),
        "the quality menu"
    );
    assert_eq!(
        f["index_layers"]["text"], "1280×720 · 640×360 · 320×180",
        "the index page's layers"
    );
    assert!(
        f["refusal"]
            .as_str()
            .is_some_and(|r| r.contains("unknown rid")),
        "{}",
        f["refusal"]
    );
    println!(
        "chromium {} simulcast player: menu {} ({} ms after the first frame), tooltips {}",
        report["version"].as_str().unwrap_or("?"),
        f["menu"],
        f["menu_after_ms"],
        f["menu_titles"]
    );
    println!(
        "chromium simulcast player: 320×180 decoded {} ms after choosing it, 1280×720 {} ms after choosing Auto",
        f["switch_to_320_ms"], f["switch_to_auto_ms"]
    );
    println!(
        "chromium simulcast player: count 2 {} ms after the second player's page opened, 1 again {} ms after it stopped; waiting {} ms after the publisher's DELETE (\"{}\")",
        f["count_2_after_ms"],
        f["count_1_after_ms"],
        f["waiting_after_ms"],
        f["waiting_message"].as_str().unwrap_or("")
    );
    println!(
        "chromium simulcast player: playing again {} ms after the publisher came back, in the same session",
        f["playing_again_after_ms"]
    );
    println!(
        "chromium simulcast player: refusal \"{}\"; index layers {}",
        f["refusal"].as_str().unwrap_or(""),
        f["index_layers"]
    );
    println!(
        "chromium simulcast player: told to reconnect {} ms after the shutdown began; it said {}",
        f["reconnect_after_ms"], f["reconnect_messages"]
    );
}

/// Streams that lack a kind, as cameras without a microphone, radio feeds and a
/// browser publishing its camera alone make them, play in Chromium: a bare
/// `RTCPeerConnection` offering audio then video (as every browser player does) and
/// one offering video then audio accept wishd's answer and decode what exists, and so
/// do wishd's watch page and embedded player.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_streams_that_have_only_video_or_only_audio() {
    clients::require_playwright();
    let (vport, aport) = (clients::free_port_pair(), clients::free_port_pair());
    let server = common::start_with(|c| {
        let mut video_only = clients::h264_opus_camera("cam-video", vport, 0);
        video_only.audio = None;
        let mut audio_only = clients::h264_opus_camera("cam-audio", 0, aport);
        audio_only.video = None;
        c.rtp.extend([video_only, audio_only]);
    })
    .await;
    let base = server.base_url();

    // One ffmpeg camera without a microphone, one audio source without a picture.
    let dir = std::env::temp_dir().join(format!("wishd-partial-{}", std::process::id()));
    let sources: Vec<_> = [
        (vport.to_string(), "none".to_string(), "video"),
        ("none".to_string(), aport.to_string(), "audio"),
    ]
    .into_iter()
    .map(|(v, a, name)| {
        let cwd = dir.join(name);
        std::fs::create_dir_all(&cwd).expect("temp dir");
        tokio::process::Command::new(clients::root().join("scripts/camera-ffmpeg.sh"))
            .args(["127.0.0.1", &v, &a, "120"])
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("ffmpeg starts (apt-get install ffmpeg)")
    })
    .collect();

    let plain = |name: &str, stream: &str, order: [&str; 2], video: bool, audio: bool| {
        json!({ "name": name, "kind": "plain-view", "base": base, "stream": stream,
                "order": order, "video": video, "audio": audio })
    };
    let av = ["audio", "video"];
    let va = ["video", "audio"];
    let plan = json!({
        "out": clients::out_dir(),
        "scenarios": [
            plain("rtp-video a+v", "cam-video", av, true, false),
            plain("rtp-video v+a", "cam-video", va, true, false),
            plain("rtp-audio a+v", "cam-audio", av, false, true),
            plain("rtp-audio v+a", "cam-audio", va, false, true),
            { "name": "watch rtp-video", "kind": "watch-page", "base": base, "stream": "cam-video",
              "video": true, "audio": false },
            { "name": "watch rtp-audio", "kind": "watch-page", "base": base, "stream": "cam-audio",
              "video": false, "audio": true },
            { "name": "embed rtp-audio", "kind": "watch", "base": base, "stream": "cam-audio",
              "video": false, "audio": true, "screenshot": "embed-audio-only" },
            // The publish page with "No microphone", watched on the watch page; then
            // bare players of the same stream.
            { "name": "whip-camera-only", "kind": "publish-watch", "base": base,
              "stream": "web-camera-only", "codec": "H264", "resolution": "640x360",
              "microphone": "none", "keep_publishing": true },
            plain("whip-video a+v", "web-camera-only", av, true, false),
            plain("whip-video v+a", "web-camera-only", va, true, false),
        ],
    });
    let report = clients::run(
        "chromium",
        clients::node(&["conformance/browser/pages.mjs", &plan.to_string()]),
        Duration::from_secs(150),
    )
    .await;
    drop(sources);
    let _ = std::fs::remove_dir_all(&dir);

    let names = [
        "rtp-video a+v",
        "rtp-video v+a",
        "rtp-audio a+v",
        "rtp-audio v+a",
        "watch rtp-video",
        "watch rtp-audio",
        "embed rtp-audio",
        "whip-camera-only",
        "whip-video a+v",
        "whip-video v+a",
    ];
    let failures: Vec<String> = names
        .iter()
        .filter_map(|n| scenario(&report, n).err())
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for name in names {
        let f = scenario(&report, name).expect("checked above");
        println!(
            "chromium {name}: WHEP POST → first {} {} ms; {} frames and {} audio packets in 2 s",
            if name.contains("audio") {
                "audio packet"
            } else {
                "decoded frame"
            },
            f.get("first_media_ms")
                .or(f.get("first_frame_ms"))
                .unwrap_or(&Value::Null),
            f["frames_in_2s"],
            f["audio_packets_in_2s"],
        );
    }
    server.shutdown().await;
}
