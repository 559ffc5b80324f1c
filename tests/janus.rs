//! Janus as a peer WHEP server, as a classic Janus camera set-up has it: Debian 12's
//! Janus (1.1.2) with its streaming plugin serving a video-only RTP mountpoint (H.264
//! from an ffmpeg camera), fronted by Meetecho's janus-whep-server (npm, 1.1.0), all in
//! a network namespace of this test (tests/clients/janus.rs).
//!
//! What headless Chromium finds there:
//! - janus-whep-server as shipped passes a viewer's offer to Janus (it does so for any
//!   Janus 1.x), but Janus's streaming plugin answers viewers' offers only from 1.1.4
//!   on. Janus 1.1.2 ignores the offer and makes its own, which comes back as the 201's
//!   body: one sendonly H.264 m-line with `a=setup:actpass`, whatever was offered, so
//!   an audio+video offer gets a one-m-line "answer" too. Chromium refuses both
//!   (an answerer's setup must be active or passive; the m-lines must match).
//! - With the library's other mode (Janus offers, 406, the viewer PATCHes its answer:
//!   what it does for Janus 0.x, the pre-standard WHEP flow), Chromium plays.

mod clients;

use std::time::Duration;

use clients::janus::{Janus, JanusOptions, Offers};
use clients::{Netns, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_streaming_mountpoint_behind_janus_whep_server_plays_in_chromium_when_janus_offers() {
    clients::require_playwright();
    let ns = Netns::create("janus");
    let dir = std::env::temp_dir().join(format!("wishd-janus-{}", std::process::id()));
    let mut janus = Janus::start(&ns, &dir, JanusOptions::default()).await;
    let offering = janus
        .add_front(&ns, 7091, "cam", None, Offers::Server)
        .await;
    let _camera = ns.start_camera(&dir, Janus::RTP_HOST, janus.rtp_port(), 60);
    let shipped = janus.whep_url().to_owned();

    let plan = serde_json::json!({ "probe": [shipped, offering], "play": offering });
    let mut node = ns.command("node");
    node.args([&conformance("janus/whep-view.mjs"), &plan.to_string()]);
    let chromium = clients::run("chromium (WHEP ← Janus)", node, Duration::from_secs(40)).await;
    let context = || {
        format!(
            "\n--- janus-whep-server ---\n{}\n--- Janus's log (tail) ---\n{}",
            janus.fronts_tail(15),
            janus.log_tail(40)
        )
    };
    assert!(
        chromium["ok"] == true,
        "chromium ← janus-whep-server: failed at step \"{}\": {}{}",
        chromium["step"].as_str().unwrap_or("?"),
        chromium["error"].as_str().unwrap_or("?"),
        context()
    );
    let f = &chromium["figures"];

    // As shipped: 201 with Janus's own offer, whatever the viewer offered.
    for (kind, offered, refusal) in [
        ("video", 1, "setup attribute"),
        ("audio_video", 2, "order of m-lines"),
    ] {
        let p = &f["probes"][&shipped][kind];
        let sdp = &p["sdp"];
        let media: Vec<String> = sdp["media"]
            .as_array()
            .map(|m| {
                m.iter()
                    .map(|m| {
                        format!(
                            "{} {} mid {} {}",
                            m["kind"].as_str().unwrap_or("?"),
                            m["direction"].as_str().unwrap_or("?"),
                            m["mid"].as_str().unwrap_or("?"),
                            m["codecs"]
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "janus-whep-server as shipped, {offered}-m-line offer: {} with {} m-line(s) [{}], \
             a=setup {}, ice-lite {}, candidates {} (end-of-candidates {}), Location {}, \
             ETag {}; Chromium applying it as the answer: {}",
            p["status"],
            sdp["m_lines"],
            media.join("; "),
            sdp["setup"],
            sdp["ice_lite"],
            sdp["candidates"],
            sdp["end_of_candidates"],
            p["location"].as_str().unwrap_or("none"),
            p["etag"].as_str().unwrap_or("none"),
            p["apply_error"].as_str().unwrap_or("accepted"),
        );
        assert_eq!(p["offer_m_lines"], offered, "{kind}: {p}");
        assert_eq!(p["status"], 201, "{kind}: {p}{}", context());
        assert_eq!(sdp["m_lines"], 1, "{kind}: one m-line back: {p}");
        assert_eq!(sdp["media"][0]["kind"], "video", "{kind}: {p}");
        assert_eq!(sdp["media"][0]["direction"], "sendonly", "{kind}: {p}");
        assert_eq!(
            sdp["setup"],
            serde_json::json!(["actpass"]),
            "{kind}: an offer's setup, not an answer's: {p}"
        );
        assert_eq!(sdp["ice_lite"], false, "{kind}: Janus runs full ICE: {p}");
        assert!(
            sdp["candidates"].as_array().is_some_and(|c| !c.is_empty()
                && c.iter()
                    .all(|c| c.as_str().is_some_and(|c| c.starts_with(Netns::ICE_ADDR)))),
            "{kind}: host candidates on {} alone: {p}",
            Netns::ICE_ADDR
        );
        assert!(
            p["location"]
                .as_str()
                .is_some_and(|l| l.starts_with("/whep/resource/")),
            "{kind}: relative Location: {p}"
        );
        assert!(
            p["etag"].as_str().is_some_and(|e| e.starts_with('"')),
            "{kind}: ETag: {p}"
        );
        assert!(
            p["apply_error"]
                .as_str()
                .is_some_and(|e| e.contains(refusal)),
            "{kind}: Chromium refuses it ({refusal}): {p}"
        );
        assert_eq!(p["delete_status"], 200, "{kind}: DELETE: {p}");
    }

    // Janus offering (406), whatever was offered.
    for kind in ["video", "audio_video"] {
        let p = &f["probes"][&offering][kind];
        assert_eq!(p["status"], 406, "{kind}: {p}");
        assert_eq!(p["sdp"]["m_lines"], 1, "{kind}: {p}");
        assert_eq!(
            p["sdp"]["setup"],
            serde_json::json!(["actpass"]),
            "{kind}: {p}"
        );
    }
    let play = &f["play"];
    assert_eq!(play["patch_status"], 204, "{play}");
    assert_eq!(play["codec"], "video/H264", "{play}");
    assert_eq!(play["size"], "640x360", "{play}");
    assert_eq!(play["delete_status"], 200, "{play}");
    let (rss_kb, cpu_ms) = janus.janus_usage();
    println!(
        "chromium {} ← Janus 1.1.2 streaming mountpoint via janus-whep-server (Janus offers, \
         406 + PATCH {}): first frame {} ms after the POST, {} frames decoded in 2 s ({} {}); \
         Janus then at {} MB resident, {} ms of CPU",
        chromium["version"].as_str().unwrap_or("?"),
        play["patch_status"],
        play["first_frame_ms"],
        play["frames_in_2s"],
        play["codec"].as_str().unwrap_or("?"),
        play["size"].as_str().unwrap_or("?"),
        rss_kb / 1024,
        cpu_ms,
    );
    let frames = play["frames_in_2s"].as_u64().unwrap_or(0);
    assert!(frames > 10, "frames decoded in 2 s: {play}");
    assert!(
        play["first_frame_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{play}"
    );
    drop(janus);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The wishd-load binary, built beside wishd by the workspace's test build.
fn wishd_load() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_wishd")).with_file_name("wishd-load");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p wishd-load` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// wishd-load measures a peer server it did not publish into: five viewers of the
/// Janus mountpoint follow janus-whep-server's counter-offer (406, answer by PATCH)
/// and account the camera's stream from sequence numbers and arrival times alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wishd_load_viewers_follow_janus_counter_offers_and_count_its_camera() {
    let ns = Netns::create("janus-load");
    let dir = std::env::temp_dir().join(format!("wishd-janus-load-{}", std::process::id()));
    let mut janus = Janus::start(&ns, &dir, JanusOptions::default()).await;
    let offering = janus
        .add_front(&ns, 7091, "cam", None, Offers::Server)
        .await;
    let _camera = ns.start_camera(&dir, Janus::RTP_HOST, janus.rtp_port(), 60);
    // The swarm's viewers send from 127.2.0.1 and up. Janus (libnice, limited to v0 by
    // `ice_enforce_list`) connects to them only when those addresses are on v0 too:
    // with them on `lo` (where all of 127.0.0.0/8 is local) no check of either side
    // was ever answered.
    for n in 1..=5 {
        ns.ip(&["addr", "add", &format!("127.2.0.{n}/32"), "dev", "v0"]);
    }
    let json = dir.join("janus-load.json");
    let mut load = ns.command(wishd_load().to_str().expect("a UTF-8 path"));
    load.args([
        "run",
        "--whep",
        &offering,
        "--no-publish",
        "--kinds",
        "video",
    ])
    .args(["-n", "5", "--ramp", "20", "--duration", "3"])
    .args(["--server-pid", &janus.janus_pid().to_string()])
    .arg("--json")
    .arg(&json);
    let out = load.output().await.expect("wishd-load runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "wishd-load failed: {stdout}{}\n--- janus-whep-server ---\n{}\n--- Janus ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        janus.fronts_tail(15),
        janus.log_tail(40)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    let a = &report["aggregate"];
    assert_eq!(a["connected"], 5, "{a}");
    assert_eq!(a["joined"], 5, "every viewer saw a keyframe: {a}");
    // 3 s of a 30 fps camera at 1 Mbit/s: a few hundred packets per viewer.
    assert!(a["received"].as_u64().unwrap_or(0) > 5 * 200, "{a}");
    assert!(a["loss_pct"].as_f64().unwrap_or(100.0) < 1.0, "{a}");
    assert_eq!(report["foreign_publisher"], true);
    println!(
        "wishd-load ← Janus 1.1.2 (counter-offers): 5 viewers, {} packets, loss {} %, \
         relative delay p50 {} µs p99 {} µs, Janus {} CPU s/s",
        a["received"], a["loss_pct"], a["delay_p50_us"], a["delay_p99_us"], report["server_cpu"]
    );
    drop(janus);
    let _ = std::fs::remove_dir_all(&dir);
}
