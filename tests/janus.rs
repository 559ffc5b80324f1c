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

/// Janus in a namespace of this test (`tag`), its mountpoint's first front as shipped
/// and a second one that counter-offers (port 7091); returns the namespace, the
/// temporary directory, Janus and the counter-offering endpoint's URL.
async fn janus_offering(tag: &str) -> (Netns, std::path::PathBuf, Janus, String) {
    let ns = Netns::create(tag);
    let dir = std::env::temp_dir().join(format!("wishd-{tag}-{}", std::process::id()));
    let mut janus = Janus::start(&ns, &dir, JanusOptions::default()).await;
    let offering = janus
        .add_front(&ns, 7091, "cam", None, Offers::Server)
        .await;
    (ns, dir, janus, offering)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_streaming_mountpoint_behind_janus_whep_server_plays_in_chromium_when_janus_offers() {
    clients::require_playwright();
    let (ns, dir, janus, offering) = janus_offering("janus").await;
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

/// A binary of the workspace (`wishd-load`, `wishd-conformance`), built beside wishd by
/// the workspace's test build.
fn workspace_bin(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_wishd")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --workspace` (scripts/test.sh does)",
        path.display()
    );
    path
}

fn wishd_load() -> std::path::PathBuf {
    workspace_bin("wishd-load")
}

/// The conformance runner finds janus-whep-server's counter-offer path and checks it:
/// 406 with Janus's offer and a Location, sendonly, the runner's answer by PATCH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_runner_checks_the_counter_offer_path_of_janus_whep_server() {
    let (ns, dir, janus, offering) = janus_offering("janus-conf").await;
    let _camera = ns.start_camera(&dir, Janus::RTP_HOST, janus.rtp_port(), 60);
    let runner = workspace_bin("wishd-conformance");
    let mut c = ns.command(runner.to_str().expect("a UTF-8 path"));
    c.args(["--mode", "whep", "--url", &offering, "--no-media", "--json"]);
    let out = c.output().await.expect("the runner runs");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    let row = |id: &str, requirement: &str| {
        rows.iter()
            .find(|r| {
                r["id"] == id
                    && r["requirement"]
                        .as_str()
                        .is_some_and(|q| q.contains(requirement))
            })
            .cloned()
            .unwrap_or_else(|| panic!("no row {id} ({requirement}): {report}"))
    };
    for r in rows.iter().filter(|r| {
        r["id"]
            .as_str()
            .is_some_and(|id| ["WHEP-03", "WHEP-06", "WHEP-07", "WHEP-08", "WHEP-09"].contains(&id))
    }) {
        println!(
            "{} {} {}: {}",
            r["id"], r["outcome"], r["requirement"], r["detail"]
        );
    }
    for (id, requirement) in [
        ("WHEP-03", "counter-offered"),
        ("WHEP-06", "406"),
        ("WHEP-07", "sendonly"),
        ("WHEP-09", "gets 204"),
    ] {
        let r = row(id, requirement);
        assert_eq!(r["outcome"], "pass", "{r}\n{}", janus.fronts_tail(20));
    }
    drop(janus);
    let _ = std::fs::remove_dir_all(&dir);
}

/// wishd-load measures a peer server it did not publish into: five viewers of the
/// Janus mountpoint follow janus-whep-server's counter-offer (406, answer by PATCH)
/// and account the camera's stream from sequence numbers and arrival times alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wishd_load_viewers_follow_janus_counter_offers_and_count_its_camera() {
    let (ns, dir, janus, offering) = janus_offering("janus-load").await;
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

/// Runs `wishd-load steps` inside `ns` against a WHEP endpoint some camera feeds;
/// returns the rows it wrote.
async fn fan_out_steps(
    ns: &Netns,
    name: &str,
    whep: &str,
    pid: u32,
    steps: &str,
    secs: &str,
    json: &std::path::Path,
) -> Vec<serde_json::Value> {
    let mut load = ns.command(wishd_load().to_str().expect("a UTF-8 path"));
    load.args(["steps", "--whep", whep, "--no-publish", "--kinds", "video"])
        .args(["--steps", steps, "--duration", secs, "--name", name])
        .args(["--server-pid", &pid.to_string()])
        .arg("--json")
        .arg(json);
    let out = load.output().await.expect("wishd-load runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "wishd-load against {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&std::fs::read(json).expect("rows"))
        .expect("JSON rows")
}

/// The side-by-side benchmark (scripts/bench-janus.sh runs it, in release): one
/// camera (ffmpeg, H.264 1280x720 at 30 fps and 2.5 Mbit/s, a keyframe every 2 s)
/// feeds a Janus streaming mountpoint and a wishd RTP stream at once; the same swarm
/// of wishd-load viewers (counter-offers for Janus, plain offers for wishd) then
/// watches each for BENCH_STEPS viewers (default 10,100,400), BENCH_SECS seconds a
/// step. Prints both tables and the ratios. Not a test: `--ignored` runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-janus.sh"]
async fn bench_janus_and_wishd_fan_out_one_camera_side_by_side() {
    let steps = std::env::var("BENCH_STEPS").unwrap_or_else(|_| "10,100,400".into());
    let secs = std::env::var("BENCH_SECS").unwrap_or_else(|_| "10".into());
    let most: u32 = steps
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .max()
        .unwrap_or(0);
    let (ns, dir, janus, offering) = janus_offering("bench-peer").await;
    // wishd as it runs by default (a media worker per core), the camera on an RTP
    // stream, no request rate limit or session cap for the swarm.
    let wishd_rtp_port = 5014;
    let config = dir.join("wishd.toml");
    std::fs::write(
        &config,
        format!(
            "http = \"127.0.0.1:8080\"\nudp = \"[::]:0\"\n\n[auth]\npublish = \"open\"\n\
             play = \"open\"\n\n[limits]\nrequests_per_second = 0.0\nmax_sessions = 0\n\n\
             [[rtp]]\nstream = \"cam\"\n[rtp.video]\nport = {wishd_rtp_port}\npt = 96\n\
             rtpmap = \"H264/90000\"\nfmtp = \"packetization-mode=1\"\n"
        ),
    )
    .expect("wishd config");
    let (wishd, base) = ns.start_wishd_config(&config, "127.0.0.1:8080").await;
    let wishd_pid = wishd.pid().expect("wishd runs");
    // One encoder, two copies of every packet: the servers get the same stream.
    let tee = format!(
        "[f=rtp:payload_type=96]rtp://127.0.0.1:{}?pkt_size=1200|\
         [f=rtp:payload_type=96]rtp://127.0.0.1:{wishd_rtp_port}?pkt_size=1200",
        janus.rtp_port()
    );
    let mut camera = ns.command("ffmpeg");
    camera
        .args(["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=1280x720:rate=30", "-map", "0:v"])
        .args([
            "-c:v",
            "libx264",
            "-profile:v",
            "baseline",
            "-preset",
            "ultrafast",
        ])
        .args(["-tune", "zerolatency", "-g", "60", "-keyint_min", "60"])
        .args(["-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p"])
        .args(["-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "1250k"])
        .args(["-f", "tee", &tee])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let _camera = camera.spawn().expect("ffmpeg starts");
    // The viewers' addresses where Janus answers them (see the test above).
    for n in 1..=most {
        ns.ip(&[
            "addr",
            "add",
            &format!(
                "{}/32",
                std::net::Ipv4Addr::from(u32::from_be_bytes([127, 2, 0, 0]) + n)
            ),
            "dev",
            "v0",
        ]);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let janus_rows = fan_out_steps(
        &ns,
        "Janus 1.1.2 + janus-whep-server 1.1.0",
        &offering,
        janus.janus_pid(),
        &steps,
        &secs,
        &dir.join("janus.json"),
    )
    .await;
    let wishd_rows = fan_out_steps(
        &ns,
        "wishd",
        &format!("{base}/whep/cam"),
        wishd_pid,
        &steps,
        &secs,
        &dir.join("wishd.json"),
    )
    .await;
    println!("Janus ÷ wishd, same camera, same swarm:");
    for (j, w) in janus_rows.iter().zip(&wishd_rows) {
        let ratio = |k: &str| match (j[k].as_f64(), w[k].as_f64()) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "n/a".into(),
        };
        println!(
            "{:>5} viewers: CPU per delivered packet {}, memory per viewer {}",
            j["viewers"],
            ratio("cpu_us_per_packet"),
            ratio("kib_per_viewer")
        );
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-out");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(
        out.join("bench-janus.json"),
        serde_json::json!({ "janus": janus_rows, "wishd": wishd_rows }).to_string(),
    );
    drop(wishd);
    drop(janus);
    let _ = std::fs::remove_dir_all(&dir);
}
