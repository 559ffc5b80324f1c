//! RTSP cameras, pulled: GStreamer's RTSP server (`conformance/rtsp/camera.py`) plays
//! the camera, with H.264 and Opus (or AAC, which wishd leaves out), open or behind
//! Digest credentials; wishd connects to it at start over TCP (interleaved) or UDP,
//! serves its viewers SPS, PPS and an IDR first, and connects again by itself when the
//! camera restarts, the same viewer session carrying on.

mod clients;
mod common;
mod interop;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::openapi;
use interop::{Lines, Tool};
use wishd::client::{ViewerOptions, WhepViewer};
use wishd::config::{Config, RtpEntry, RtpMediumEntry, RtspEntry, RtspTransport, Secret};
use wishd::core::MediaKind;
use wishd::ingest::rtsp::{RtspIngest, RtspState};
use wishd::server::Server;

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

/// Starts the RTSP camera on `port` with `args`; returns once it serves.
async fn camera(port: u16, args: &[&str]) -> Tool {
    camera_reporting(port, args).await.0
}

/// [`camera`], with what it prints: its sessions as they change.
async fn camera_reporting(port: u16, args: &[&str]) -> (Tool, Lines) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/rtsp/camera.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .args(["--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)");
    let out = Lines::collect(child.stdout.take().expect("stdout piped"));
    let ready = out
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("\"ready\"") || l.contains("\"error\"")
        })
        .await;
    assert!(
        ready.as_deref().is_some_and(|l| l.contains("ready")),
        "the RTSP camera did not start: {:?} (apt-get install gir1.2-gst-rtsp-server-1.0)",
        out.snapshot()
    );
    (Tool(child), out)
}

/// The camera's RTSP sessions (SETUP to TEARDOWN or disconnection) after each change
/// it reported, oldest first.
fn rtsp_sessions(out: &Lines) -> Vec<u64> {
    out.snapshot()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "sessions")
        .filter_map(|v| v["sessions"].as_u64())
        .collect()
}

/// Waits until the camera reports `n` RTSP sessions.
async fn wait_sessions(out: &Lines, n: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while rtsp_sessions(out).last().copied().unwrap_or(0) != n {
        assert!(
            Instant::now() < deadline,
            "{what}: the camera reports sessions {:?}, not {n}",
            rtsp_sessions(out)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn entry(stream: &str, url: &str, transport: RtspTransport) -> RtspEntry {
    RtspEntry {
        stream: stream.into(),
        url: url.into(),
        credentials_file: None,
        transport,
        ..RtspEntry::default()
    }
}

async fn server_with(entries: Vec<RtspEntry>) -> Server {
    common::start_with(|c: &mut Config| c.rtsp = entries).await
}

/// Waits until `source` is in `want` (by its discriminant), or fails with its state.
async fn wait_state(source: &RtspIngest, want: fn(&RtspState) -> bool, what: &str) -> Duration {
    let t0 = Instant::now();
    while !want(&source.state()) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{}: not {what} after 20 s: {:?} ({} reconnects)",
            source.stream,
            source.state(),
            source.reconnects()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    t0.elapsed()
}

fn live(s: &RtspState) -> bool {
    *s == RtspState::Live
}

fn offline(s: &RtspState) -> bool {
    matches!(s, RtspState::Offline { .. })
}

/// Why an offline source is offline.
fn offline_reason(source: &RtspIngest) -> String {
    match source.state() {
        RtspState::Offline { error } => error,
        other => panic!("{} is {other:?}, not offline", source.stream),
    }
}

/// A viewer of audio and video; returns it once it has video and audio.
async fn viewer(url: &str) -> WhepViewer {
    let v = WhepViewer::connect(url, ViewerOptions::default())
        .await
        .expect("WHEP POST");
    v.wait_connected(common::CONNECT)
        .await
        .expect("viewer connects");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_camera_reaches_viewers_with_sps_pps_idr_first_then_opus_over_tcp_and_udp() {
    // A camera server per transport: GStreamer's shared media pauses its clients
    // while another one joins.
    let (port, udp_port) = (free_tcp_port(), free_tcp_port());
    let _camera = camera(port, &["--video", "h264", "--audio", "opus"]).await;
    let _udp_camera = camera(udp_port, &["--video", "h264", "--audio", "opus"]).await;
    let server = server_with(vec![
        entry(
            "door",
            &format!("rtsp://127.0.0.1:{port}/cam"),
            RtspTransport::Tcp,
        ),
        entry(
            "door-udp",
            &format!("rtsp://127.0.0.1:{udp_port}/cam"),
            RtspTransport::Udp,
        ),
    ])
    .await;
    for (source, transport) in server.rtsp_ingests().iter().zip(["tcp", "udp"]) {
        let took = wait_state(source, live, "live").await;
        let v = viewer(&format!("{}/whep/{}", server.base_url(), source.stream)).await;
        interop::wait_for_video_and_audio(&v).await;
        let got = v.received();
        let video = interop::of_kind(&got, MediaKind::Video);
        interop::assert_starts_sps_pps_idr(&video, &format!("RTSP over {transport}"));
        println!(
            "RTSP camera over {transport}: live {} ms after start; the viewer got {} video and {} audio packets, SPS/PPS/IDR first",
            took.as_millis(),
            video.len(),
            got.len() - video.len()
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_that_restarts_is_connected_again_and_the_same_viewer_plays_on() {
    let port = free_tcp_port();
    let mut cam = camera(port, &[]).await;
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let server = server_with(vec![entry("gate", &url, RtspTransport::Tcp)]).await;
    let source = &server.rtsp_ingests()[0];
    wait_state(source, live, "live").await;
    let v = viewer(&format!("{}/whep/gate", server.base_url())).await;
    interop::wait_for_video_and_audio(&v).await;

    // The camera reboots: the connection ends, wishd says why and tries again.
    drop(cam);
    let lost_after = wait_state(source, offline, "offline").await;
    common::assert_offline_409(&format!("{}/whep/gate", server.base_url()), "camera away").await;
    let before = v.received().len();
    // The camera stays away 5 s (wishd tries again at 1, 2 and 4 s meanwhile).
    tokio::time::sleep(Duration::from_secs(5)).await;
    cam = camera(port, &[]).await;
    let back_after = wait_state(source, live, "live again").await;
    assert!(
        source.reconnects() >= 1,
        "{} reconnects",
        source.reconnects()
    );
    v.wait_for(Duration::from_secs(10), |p| {
        p.iter()
            .skip(before)
            .filter(|p| p.kind == MediaKind::Video)
            .count()
            > 30
    })
    .await
    .expect("the same viewer session gets video again");
    let after: Vec<_> = v.received().into_iter().skip(before).collect();
    let video = interop::of_kind(&after, MediaKind::Video);
    assert!(
        interop::is_h264_keyframe_start(&video[0].payload),
        "after the camera's return the viewer starts at a keyframe"
    );
    println!(
        "camera restart: offline {} ms after it went, live again {} ms after it came back, {} reconnects",
        lost_after.as_millis(),
        back_after.as_millis(),
        source.reconnects()
    );
    drop(cam);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_credentials_connect_and_wrong_ones_keep_the_camera_offline_saying_why() {
    let port = free_tcp_port();
    let _camera = camera(
        port,
        &["--user", "admin", "--password", "s3cret", "--digest"],
    )
    .await;
    let dir = std::env::temp_dir().join(format!("wishd-rtsp-creds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let creds = dir.join("door.credentials");
    std::fs::write(&creds, "admin:s3cret\n").unwrap();
    let file_entry = RtspEntry {
        credentials_file: Some(creds),
        ..entry(
            "by-file",
            &format!("rtsp://127.0.0.1:{port}/cam"),
            RtspTransport::Tcp,
        )
    };
    let server = server_with(vec![
        entry(
            "in-url",
            &format!("rtsp://admin:s3cret@127.0.0.1:{port}/cam"),
            RtspTransport::Tcp,
        ),
        file_entry,
        entry(
            "wrong",
            &format!("rtsp://admin:guess@127.0.0.1:{port}/cam"),
            RtspTransport::Tcp,
        ),
    ])
    .await;
    let sources = server.rtsp_ingests();
    wait_state(&sources[0], live, "live").await;
    wait_state(&sources[1], live, "live").await;
    wait_state(&sources[2], offline, "offline").await;
    let error = offline_reason(&sources[2]);
    println!("wrong credentials: {error}");
    assert!(
        error.contains("401"),
        "the reason names the refusal: {error}"
    );
    // A stream whose camera never played has no source: 409 with Retry-After.
    let r = wishd::client::http_request(
        "POST",
        &format!("{}/whep/wrong", server.base_url()),
        &[("Content-Type", "application/sdp")],
        wishd::client::viewer_offer(&ViewerOptions::default())
            .unwrap()
            .into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cameras_aac_is_left_out_and_its_video_served() {
    let port = free_tcp_port();
    let _camera = camera(port, &["--video", "h264", "--audio", "aac"]).await;
    let server = server_with(vec![entry(
        "aac",
        &format!("rtsp://127.0.0.1:{port}/cam"),
        RtspTransport::Tcp,
    )])
    .await;
    wait_state(&server.rtsp_ingests()[0], live, "live").await;
    // A player offering audio and video gets the video; the audio m-line is idle.
    let v = viewer(&format!("{}/whep/aac", server.base_url())).await;
    v.wait_for(Duration::from_secs(10), |p| {
        p.iter().filter(|p| p.kind == MediaKind::Video).count() > 30
    })
    .await
    .expect("video reaches the viewer");
    let got = v.received();
    assert!(
        got.iter().all(|p| p.kind == MediaKind::Video),
        "no audio from an AAC camera"
    );
    let list = wishd::client::http_request(
        "GET",
        &format!("{}/api/streams", server.base_url()),
        &[],
        Vec::new(),
    )
    .await
    .unwrap()
    .text();
    assert!(
        list.contains("H264") && !list.to_lowercase().contains("mpeg4"),
        "{list}"
    );
    server.shutdown().await;
}

const ADMIN: &str = "rtsp-test-admin-token-0123";

async fn api(server: &Server, method: &str, path: &str) -> wishd::client::HttpResponse {
    let r = wishd::client::http_request(
        method,
        &format!("{}{path}", server.base_url()),
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        Vec::new(),
    )
    .await
    .expect("API request");
    let template = if path.ends_with("/restart") {
        "/api/sources/{stream}/restart"
    } else {
        path
    };
    openapi::check_response(&openapi::spec(), template, method, &r)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_each_camera_with_its_state_and_restarts_an_rtsp_one() {
    let port = free_tcp_port();
    let _camera = camera(port, &["--audio", "none"]).await;
    let dead = free_tcp_port();
    let pushed_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port");
    let server = common::start_with(|c: &mut Config| {
        c.api.token = Some(Secret::new(ADMIN));
        c.rtsp = vec![
            entry(
                "porch",
                &format!("rtsp://127.0.0.1:{port}/cam"),
                RtspTransport::Tcp,
            ),
            entry(
                "attic",
                &format!("rtsp://127.0.0.1:{dead}/cam"),
                RtspTransport::Udp,
            ),
        ];
        c.rtp = vec![RtpEntry {
            stream: "pushed".into(),
            video: Some(RtpMediumEntry {
                port: pushed_port,
                pt: 96,
                rtpmap: "H264/90000".into(),
                fmtp: String::new(),
            }),
            ..RtpEntry::default()
        }];
    })
    .await;
    let porch = &server.rtsp_ingests()[0];
    wait_state(porch, live, "live").await;
    wait_state(&server.rtsp_ingests()[1], offline, "offline").await;
    let list: serde_json::Value =
        serde_json::from_slice(&api(&server, "GET", "/api/sources").await.body).unwrap();
    println!("{list}");
    let by_name = |n: &str| {
        list["sources"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["stream"] == n).cloned())
            .unwrap_or_else(|| panic!("no source {n}: {list}"))
    };
    let (p, a, r) = (by_name("porch"), by_name("attic"), by_name("pushed"));
    assert_eq!(
        (p["kind"].as_str(), p["state"].as_str()),
        (Some("rtsp"), Some("live"))
    );
    assert!(p["packets"].as_u64().unwrap_or(0) > 0, "{p}");
    assert_eq!(
        (
            a["kind"].as_str(),
            a["state"].as_str(),
            a["transport"].as_str()
        ),
        (Some("rtsp"), Some("offline"), Some("udp"))
    );
    assert!(
        a["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{a}"
    );
    assert!(a["reconnects"].as_u64().unwrap_or(0) >= 1, "{a}");
    assert_eq!(
        (r["kind"].as_str(), r["state"].as_str()),
        (Some("rtp"), Some("offline"))
    );

    // A restart ends the live connection and makes a new one.
    let before = porch.reconnects();
    assert_eq!(
        api(&server, "POST", "/api/sources/porch/restart")
            .await
            .status,
        204
    );
    let t0 = Instant::now();
    while porch.reconnects() == before {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no reconnect after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let back = wait_state(porch, live, "live after the restart").await;
    println!(
        "restarted by the API: live again after {} ms",
        back.as_millis()
    );
    assert_eq!(
        api(&server, "POST", "/api/sources/pushed/restart")
            .await
            .status,
        400
    );
    assert_eq!(
        api(&server, "POST", "/api/sources/nobody/restart")
            .await
            .status,
        404
    );
    server.shutdown().await;
}

fn idle(s: &RtspState) -> bool {
    *s == RtspState::Idle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_demand_camera_is_connected_for_its_viewers_only() {
    let port = free_tcp_port();
    let (_camera, out) = camera_reporting(port, &["--audio", "none"]).await;
    let server = server_with(vec![RtspEntry {
        on_demand: true,
        close_after: Duration::from_secs(1),
        ..entry(
            "lobby",
            &format!("rtsp://127.0.0.1:{port}/cam"),
            RtspTransport::Tcp,
        )
    }])
    .await;
    let source = &server.rtsp_ingests()[0];
    // At start: one DESCRIBE for the codecs, then idle; no media flows and the camera
    // has no RTSP session.
    wait_state(source, idle, "idle").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(source.state(), RtspState::Idle);
    assert_eq!(
        source
            .counters
            .packets
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        rtsp_sessions(&out).iter().max().copied().unwrap_or(0),
        0,
        "no RTSP session before the first viewer"
    );

    // A viewer: the camera is connected, and the viewer starts at its first keyframe.
    let url = format!("{}/whep/lobby", server.base_url());
    let video_only = ViewerOptions {
        audio: false,
        ..ViewerOptions::default()
    };
    let t0 = Instant::now();
    let v = WhepViewer::connect(&url, video_only.clone())
        .await
        .expect("a viewer joins an idle on-demand camera");
    v.wait_connected(common::CONNECT)
        .await
        .expect("viewer connects");
    v.wait_for(Duration::from_secs(10), |p| !p.is_empty())
        .await
        .expect("the camera's media reaches the viewer");
    let first = t0.elapsed();
    let got = v.received();
    assert!(
        interop::is_h264_keyframe_start(&got[0].payload),
        "the viewer starts at the camera's first keyframe"
    );
    assert_eq!(source.state(), RtspState::Live);

    // Two more viewers: still one RTSP session at the camera.
    let mut others = Vec::new();
    for _ in 0..2 {
        let o = WhepViewer::connect(&url, video_only.clone())
            .await
            .expect("another viewer joins the live camera");
        o.wait_for(Duration::from_secs(10), |p| !p.is_empty())
            .await
            .expect("the camera's media reaches every viewer");
        others.push(o);
    }
    assert_eq!(
        rtsp_sessions(&out).iter().max().copied(),
        Some(1),
        "one RTSP session for three viewers"
    );

    // The viewers leave: after close_after the camera is left and its session ends.
    for o in others {
        let _ = o.delete().await;
    }
    let _ = v.delete().await;
    let left = wait_state(source, idle, "idle again").await;
    wait_sessions(&out, 0, "after the last viewer and close_after").await;
    println!(
        "on demand: the viewer's first packet (a keyframe) {} ms after its POST; 1 RTSP session for 3 viewers; the camera left {} ms after the viewers, its sessions {:?}",
        first.as_millis(),
        left.as_millis(),
        rtsp_sessions(&out)
    );
    assert!(
        left >= Duration::from_millis(900),
        "left after {left:?}, before close_after"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h265_and_pcma_cameras_reach_viewers_starting_at_a_keyframe() {
    let (h265_port, pcma_port) = (free_tcp_port(), free_tcp_port());
    let _h265 = camera(h265_port, &["--video", "h265", "--audio", "none"]).await;
    let _pcma = camera(pcma_port, &["--video", "h264", "--audio", "pcma"]).await;
    let server = server_with(vec![
        entry(
            "hevc",
            &format!("rtsp://127.0.0.1:{h265_port}/cam"),
            RtspTransport::Udp,
        ),
        entry(
            "alaw",
            &format!("rtsp://127.0.0.1:{pcma_port}/cam"),
            RtspTransport::Tcp,
        ),
    ])
    .await;
    for s in server.rtsp_ingests() {
        wait_state(s, live, "live").await;
    }
    // H.265: the str0m viewer's first packet is a VPS, SPS or IRAP start.
    let v = WhepViewer::connect(
        &format!("{}/whep/hevc", server.base_url()),
        ViewerOptions {
            audio: false,
            video_codecs: vec![wishd::client::VideoCodec::H265],
            ..ViewerOptions::default()
        },
    )
    .await
    .expect("an H.265 viewer joins");
    v.wait_for(Duration::from_secs(10), |p| p.len() > 10)
        .await
        .expect("H.265 reaches the viewer");
    let first = v.received()[0].payload.clone();
    assert!(
        wishd::core::is_keyframe_start(wishd::core::CodecKind::H265, &first),
        "the H.265 viewer starts at a keyframe"
    );
    interop::assert_starts_vps_sps_pps_irap(&v.received(), "RTSP H.265 camera over UDP");
    // H.264 + PCMA: a viewer offering PCMA gets both.
    let v = WhepViewer::connect(
        &format!("{}/whep/alaw", server.base_url()),
        ViewerOptions {
            audio_codecs: vec![wishd::client::AudioCodec::Pcma],
            ..ViewerOptions::default()
        },
    )
    .await
    .expect("a PCMA viewer joins");
    v.wait_for(Duration::from_secs(10), |p| {
        p.iter().any(|p| p.kind == MediaKind::Audio)
            && p.iter().filter(|p| p.kind == MediaKind::Video).count() > 10
    })
    .await
    .expect("H.264 and PCMA reach the viewer");
    server.shutdown().await;
}

async fn api_with_body(
    server: &Server,
    method: &str,
    path: &str,
    body: &str,
) -> wishd::client::HttpResponse {
    let r = wishd::client::http_request(
        method,
        &format!("{}{path}", server.base_url()),
        &[
            ("Authorization", &format!("Bearer {ADMIN}")),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes().to_vec(),
    )
    .await
    .expect("API request");
    let template = if path == "/api/sources" {
        path
    } else {
        "/api/sources/{stream}"
    };
    openapi::check_response(&openapi::spec(), template, method, &r)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_adds_a_camera_a_viewer_watches_it_and_removing_it_ends_the_viewer() {
    let (kept_port, added_port) = (free_tcp_port(), free_tcp_port());
    let _kept = camera(kept_port, &["--audio", "none"]).await;
    let _added = camera(added_port, &["--audio", "none"]).await;
    let server = common::start_with(|c: &mut Config| {
        c.api.token = Some(Secret::new(ADMIN));
        c.rtsp = vec![entry(
            "kept",
            &format!("rtsp://127.0.0.1:{kept_port}/cam"),
            RtspTransport::Tcp,
        )];
    })
    .await;
    wait_state(&server.rtsp_ingests()[0], live, "live").await;
    let bystander = viewer(&format!("{}/whep/kept", server.base_url())).await;

    // Added by the API.
    let body =
        format!(r#"{{"rtsp": {{"stream": "added", "url": "rtsp://127.0.0.1:{added_port}/cam"}}}}"#);
    let r = api_with_body(&server, "POST", "/api/sources", &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        api_with_body(&server, "POST", "/api/sources", &body)
            .await
            .status,
        409
    );
    let bad = r#"{"rtsp": {"stream": "x", "url": "http://nowhere"}}"#;
    assert_eq!(
        api_with_body(&server, "POST", "/api/sources", bad)
            .await
            .status,
        400
    );
    let t0 = Instant::now();
    let v = loop {
        match WhepViewer::connect(
            &format!("{}/whep/added", server.base_url()),
            ViewerOptions::default(),
        )
        .await
        {
            Ok(v) => break v,
            Err(e) if t0.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the added camera's stream does not play: {e}"),
        }
    };
    v.wait_connected(common::CONNECT)
        .await
        .expect("viewer connects");
    v.wait_for(Duration::from_secs(10), |p| p.len() > 20)
        .await
        .expect("the added camera reaches its viewer");
    let detail: serde_json::Value = serde_json::from_slice(
        &api_with_body(&server, "GET", "/api/sources/added", "")
            .await
            .body,
    )
    .unwrap();
    assert_eq!(detail["state"], "live", "{detail}");

    // Removed by the API: its viewer's session ends, the other stream plays on.
    let before = bystander.received().len();
    assert_eq!(
        api_with_body(&server, "DELETE", "/api/sources/added", "")
            .await
            .status,
        204
    );
    let t0 = Instant::now();
    while v.is_connected() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the removed camera's viewer is still connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        api_with_body(&server, "GET", "/api/sources/added", "")
            .await
            .status,
        404
    );
    bystander
        .wait_for(Duration::from_secs(5), |p| p.len() > before + 30)
        .await
        .expect("the other camera's viewer plays on");
    println!(
        "camera added, watched and removed; its viewer ended in {} ms",
        t0.elapsed().as_millis()
    );
    server.shutdown().await;
}

/// A TCP server that answers every connection with `reply` and closes it.
async fn garbage_server(reply: &'static [u8]) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(reply).await;
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_cameras_say_why_and_leave_the_other_streams_alone() {
    let good = free_tcp_port();
    let _good = camera(good, &["--audio", "none"]).await;
    let aac = free_tcp_port();
    let _aac = camera(aac, &["--video", "none", "--audio", "aac"]).await;
    let garbage =
        garbage_server(b"RTSP/1.0 200 OK\r\nCSeq: banana\r\n\r\n\x00\xff\xfe not rtsp").await;
    let silent = garbage_server(b"").await;
    let server = server_with(vec![
        entry(
            "good",
            &format!("rtsp://127.0.0.1:{good}/cam"),
            RtspTransport::Tcp,
        ),
        entry(
            "aac-only",
            &format!("rtsp://127.0.0.1:{aac}/cam"),
            RtspTransport::Tcp,
        ),
        entry(
            "garbage",
            &format!("rtsp://127.0.0.1:{garbage}/cam"),
            RtspTransport::Tcp,
        ),
        entry(
            "silent",
            &format!("rtsp://127.0.0.1:{silent}/cam"),
            RtspTransport::Tcp,
        ),
    ])
    .await;
    let sources = server.rtsp_ingests();
    wait_state(&sources[0], live, "live").await;
    let v = viewer(&format!("{}/whep/good", server.base_url())).await;
    for s in &sources[1..] {
        wait_state(s, offline, "offline").await;
        println!("{}: {}", s.stream, offline_reason(s));
    }
    let error = offline_reason(&sources[1]);
    assert!(error.contains("no medium"), "AAC alone: {error}");
    let before = v.received().len();
    v.wait_for(Duration::from_secs(5), |p| p.len() > before + 30)
        .await
        .expect("the good camera's viewer plays on");
    assert!(sources[0].state() == RtspState::Live);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_an_rtsp_camera_within_a_second_of_its_post() {
    clients::require_playwright();
    // A keyframe every 2 s: a viewer joining between two starts from wishd's cache.
    let port = free_tcp_port();
    let _camera = camera(port, &["--keyint", "60"]).await;
    let server = server_with(vec![entry(
        "porch",
        &format!("rtsp://127.0.0.1:{port}/cam"),
        RtspTransport::Tcp,
    )])
    .await;
    wait_state(&server.rtsp_ingests()[0], live, "live").await;
    // Half a GOP in, so that the last keyframe is a second old.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let figures = clients::chromium_scenario(
        "chromium (an RTSP camera)",
        serde_json::json!({ "name": "rtsp", "kind": "watch-page", "base": server.base_url(),
                            "stream": "porch" }),
        Duration::from_secs(60),
    )
    .await;
    let first = figures["first_media_ms"].as_f64().unwrap_or(f64::MAX);
    println!(
        "Chromium plays the RTSP camera (H.264 + Opus, 2 s GOP): first frame {first} ms after its POST, {} frames in 2 s",
        figures["frames_in_2s"]
    );
    assert!(first < 1000.0, "first frame {first} ms after the POST");
    server.shutdown().await;
}

/// A configuration file for [`a_reload_changes_tokens_and_cameras_while_another_camera_plays_on`]:
/// a publish token each of `tokens`, and an RTSP camera for each of `cameras` (stream,
/// URL).
fn reload_file(tokens: &[&str], cameras: &[(&str, &str)]) -> String {
    let mut s = format!(
        "http = \"127.0.0.1:0\"\nudp = \"127.0.0.1:0\"\nworkers = 1\n\n\
         [auth]\npublish = \"token\"\n\n[api]\ntoken = \"{ADMIN}\"\n"
    );
    for t in tokens {
        s += &format!("\n[[auth.tokens]]\ntoken = \"{t}\"\nactions = [\"publish\"]\n");
    }
    for (stream, url) in cameras {
        s += &format!("\n[[rtsp]]\nstream = \"{stream}\"\nurl = \"{url}\"\n");
    }
    s
}

/// The streams `/api/sources` lists.
async fn source_streams(server: &Server) -> Vec<String> {
    let r = api_with_body(server, "GET", "/api/sources", "").await;
    let list: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON");
    let mut names: Vec<String> = list["sources"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["stream"].as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_tokens_and_cameras_while_another_camera_plays_on() {
    // The untouched camera has a server of its own: GStreamer's shared media pauses
    // its other clients for a moment when one joins.
    let (port, kept_port) = (free_tcp_port(), free_tcp_port());
    let _camera = camera(port, &["--audio", "none"]).await;
    let _kept_camera = camera(kept_port, &["--audio", "none"]).await;
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let kept = format!("rtsp://127.0.0.1:{kept_port}/cam");
    let dir = std::env::temp_dir().join(format!("wishd-rtsp-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("wishd.toml");
    std::fs::write(
        &path,
        reload_file(&["token-one-0001"], &[("front", &kept), ("side", &url)]),
    )
    .expect("write the configuration");
    let file = path.clone();
    let source: wishd::http::reload::ConfigSource = std::sync::Arc::new(move || {
        let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        Config::from_toml(&text)
    });
    let first = source()
        .expect("the first configuration")
        .validated()
        .expect("valid");
    let prepared = wishd::server::prepare(first)
        .expect("prepared")
        .reload_from(source);
    let server = Server::run(prepared).await.expect("wishd starts");
    let base = server.base_url();
    let video_only = ViewerOptions {
        audio: false,
        ..ViewerOptions::default()
    };
    let front = interop::view_when_live(
        &format!("{base}/whep/front"),
        video_only.clone(),
        Duration::from_secs(10),
    )
    .await;
    let side = interop::view_when_live(
        &format!("{base}/whep/side"),
        video_only.clone(),
        Duration::from_secs(10),
    )
    .await;
    for v in [&front, &side] {
        v.wait_for(Duration::from_secs(10), |p| p.len() > 20)
            .await
            .expect("the configured cameras play");
    }
    // A camera the API added is the API's: a file naming its stream is refused whole.
    let body = format!(r#"{{"rtsp": {{"stream": "by-api", "url": "{url}"}}}}"#);
    assert_eq!(
        api_with_body(&server, "POST", "/api/sources", &body)
            .await
            .status,
        201
    );
    std::fs::write(
        &path,
        reload_file(&["token-two-0002"], &[("front", &kept), ("by-api", &url)]),
    )
    .expect("write");
    let refused = api(&server, "POST", "/api/reload").await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("by-api"),
        "the reason names the stream: {}",
        refused.text()
    );
    assert_eq!(source_streams(&server).await, ["by-api", "front", "side"]);
    let offer = wishd::client::publisher_offer(&wishd::client::PublisherOptions::default())
        .expect("an offer");
    let publish = |token: &'static str| {
        let offer = offer.clone();
        let url = format!("{base}/whip/published");
        async move {
            let auth = format!("Bearer {token}");
            wishd::client::http_request(
                "POST",
                &url,
                &[
                    ("Content-Type", "application/sdp"),
                    ("Authorization", &auth),
                ],
                offer.into_bytes(),
            )
            .await
            .expect("POST")
            .status
        }
    };
    assert_eq!(
        publish("token-two-0002").await,
        401,
        "the refused file's token is not in force"
    );

    // The file adds a token, drops "side" and adds "yard": "front" plays on untouched.
    std::fs::write(
        &path,
        reload_file(
            &["token-one-0001", "token-two-0002"],
            &[("front", &kept), ("yard", &url)],
        ),
    )
    .expect("write");
    let at_reload = interop::of_kind(&front.received(), MediaKind::Video).len();
    let t0 = Instant::now();
    let r = api(&server, "POST", "/api/reload").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("1 stopped, 1 started"), "{}", r.text());
    while side.is_connected() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the dropped camera's viewer is still connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let side_ended = t0.elapsed();
    assert_eq!(source_streams(&server).await, ["by-api", "front", "yard"]);
    assert_eq!(
        publish("token-two-0002").await,
        201,
        "the new token publishes"
    );
    let yard = interop::view_when_live(
        &format!("{base}/whep/yard"),
        video_only,
        Duration::from_secs(10),
    )
    .await;
    yard.wait_for(Duration::from_secs(10), |p| p.len() > 20)
        .await
        .expect("the camera the reload added plays");
    let before = front.received().len();
    front
        .wait_for(Duration::from_secs(10), |p| p.len() > before + 60)
        .await
        .expect("the untouched camera's viewer plays on");
    let video = interop::of_kind(&front.received(), MediaKind::Video);
    let gaps = video
        .windows(2)
        .filter(|w| w[1].seq != w[0].seq + 1)
        .count();
    let longest = video
        .windows(2)
        .map(|w| w[1].at.saturating_duration_since(w[0].at))
        .max()
        .unwrap_or_default();
    println!(
        "reload: {}; the dropped camera's viewer ended {} ms after it; the other viewer got {} video packets ({at_reload} before the reload), {gaps} sequence gaps, longest pause {} ms",
        r.text().trim(),
        side_ended.as_millis(),
        video.len(),
        longest.as_millis()
    );
    assert_eq!(
        gaps, 0,
        "the untouched camera's viewer lost nothing across the reloads"
    );
    assert!(
        longest < Duration::from_millis(500),
        "the untouched camera paused {longest:?}"
    );
    assert!(front.is_connected());
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
