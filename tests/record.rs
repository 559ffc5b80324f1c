//! Recording to fragmented MP4: a stream named by a `[[record]]` rule is written as it
//! plays, and what was written is read by ffprobe and decoded by ffmpeg without an
//! error, with the duration the stream had, a keyframe first, and audio and video
//! starting together.

mod clients;
mod common;
mod interop;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interop::Tool;
use wishd::config::{RecordEntry, RtpEntry, RtpMediumEntry};

/// The README's camera (`scripts/camera-ffmpeg.sh`): H.264 640x360 at 1 Mbit/s with a
/// keyframe every 2 s, and Opus, to `vport` and `aport` for `secs`; its SDP file goes
/// into `dir/camera`.
fn readme_camera(dir: &Path, vport: u16, aport: u16, secs: u32) -> Tool {
    let work = dir.join("camera");
    std::fs::create_dir_all(&work).expect("a work directory");
    let child = Command::new(clients::root().join("scripts/camera-ffmpeg.sh"))
        .args(["127.0.0.1", &vport.to_string(), &aport.to_string()])
        .arg(secs.to_string())
        .current_dir(&work)
        .stdout(Stdio::null())
        .spawn()
        .expect("ffmpeg camera starts (apt-get install ffmpeg)");
    Tool(child)
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wishd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A server with the admin API, the README's camera as stream "cam" (on ports it
/// returns) and `rule` recording into `rule.directory`.
async fn camera_server(rule: RecordEntry) -> (wishd::server::Server, u16, u16) {
    let (vport, aport) = (clients::free_port_pair(), clients::free_port_pair());
    let server = common::start_with(|c| {
        c.api.token = Some(wishd::config::Secret::new(ADMIN));
        c.rtp.push(clients::h264_opus_camera("cam", vport, aport));
        c.record.push(rule);
    })
    .await;
    (server, vport, aport)
}

/// The files under `dir`, oldest name first.
fn recordings(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// ffprobe's JSON for `file`: its format and streams, and the first video frame's
/// key flag.
fn probe(file: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe's JSON")
}

fn first_video_frame_is_key(file: &Path) -> bool {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
        ])
        .args(["-show_entries", "frame=key_frame", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout).trim().starts_with('1')
}

/// `ffmpeg -v error -i FILE -fps_mode vfr -f null -`: what it says (nothing when the
/// file decodes). Frames keep their own times (`vfr`): ffmpeg 5.1 otherwise puts a
/// variable-rate source's frames on a fixed grid and complains at its own muxer
/// when two land in one slot, which says nothing of the file.
fn decode_errors(file: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-fps_mode", "vfr", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// The wall-clock time from when `file` began (its name: `STREAM_` then RFC 3339 with
/// `-` for `:`) to `end`, in seconds.
fn wall_seconds(file: &Path, end: std::time::SystemTime) -> f64 {
    let name = file
        .file_stem()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stamp = name.rsplit_once('_').map(|(_, s)| s).unwrap_or_default();
    let mut t = stamp.as_bytes().to_vec();
    for i in [13, 16] {
        if let Some(c) = t.get_mut(i) {
            *c = b':';
        }
    }
    let began = humantime::parse_rfc3339(std::str::from_utf8(&t).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    end.duration_since(began)
        .map_or(f64::NAN, |d| d.as_secs_f64())
}

fn seconds(v: &serde_json::Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtp_cameras_h264_and_opus_are_recorded_to_fmp4_that_ffmpeg_decodes() {
    let dir = scratch("record");
    let (server, vport, aport) = camera_server(RecordEntry {
        stream: "c*".into(),
        directory: dir.clone(),
        ..RecordEntry::default()
    })
    .await;
    let camera = readme_camera(&dir, vport, aport, 30);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    drop(camera);
    let (sent, ended) = (t0.elapsed(), std::time::SystemTime::now());
    server.shutdown().await;

    let files = recordings(&dir.join("cam"));
    assert_eq!(files.len(), 1, "one segment: {files:?}");
    let file = &files[0];
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(
        name.starts_with("cam_20") && name.ends_with("Z.mp4"),
        "{name}"
    );
    let p = probe(file);
    let streams = p["streams"].as_array().cloned().unwrap_or_default();
    let codec = |kind: &str| {
        streams
            .iter()
            .find(|s| s["codec_type"] == kind)
            .cloned()
            .unwrap_or_default()
    };
    let (video, audio) = (codec("video"), codec("audio"));
    assert_eq!(video["codec_name"], "h264", "{p}");
    assert_eq!(audio["codec_name"], "opus", "{p}");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(640), Some(360))
    );
    let duration = seconds(&p["format"]["duration"]);
    let (v_start, a_start) = (seconds(&video["start_time"]), seconds(&audio["start_time"]));
    let errors = decode_errors(file);
    println!(
        "recorded {name}: {duration:.2} s of H.264 640x360 and Opus for {:.2} s sent from a camera \
         whose first keyframe comes up to 2 s in; video starts at {v_start:.3} s, audio at \
         {a_start:.3} s; ffmpeg decodes it with {} errors",
        sent.as_secs_f64(),
        errors.lines().count()
    );
    assert!(
        first_video_frame_is_key(file),
        "the file starts at a keyframe"
    );
    assert!(errors.is_empty(), "ffmpeg -v error: {errors}");
    assert!(
        (v_start - a_start).abs() < 0.05,
        "audio and video start together"
    );
    // The file holds from the camera's first keyframe (within its 2 s GOP), when its
    // name says it began, to the camera's end.
    let wall = wall_seconds(file, ended);
    println!("{duration:.2} s recorded of {wall:.2} s on the wall clock since the file began");
    assert!(
        (duration - wall).abs() < 0.5,
        "{duration:.2} s recorded, {wall:.2} s on the wall clock"
    );
    assert!(duration > sent.as_secs_f64() - 2.5);
    let _ = std::fs::remove_dir_all(&dir);
}

/// FFmpeg's WHIP muxer publishing H.264 (a keyframe every second) and Opus to `url`.
fn ffmpeg_whip(url: &str) -> Tool {
    #[rustfmt::skip]
    let args = [
        "-nostdin", "-nostats", "-loglevel", "error", "-re",
        "-t", "60", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
        "-t", "60", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p", "-b:v", "400k",
        "-c:a", "libopus", "-ar", "48000", "-ac", "2",
        "-f", "whip", url,
    ];
    let child = Command::new(interop::ffmpeg_with_whip())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("FFmpeg 9 starts");
    Tool(child)
}

/// The decode times of `file`'s packets of `stream` ("v:0" or "a:0"), in order.
fn packet_times(file: &Path, stream: &str) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream])
        .args(["-show_entries", "packet=dts_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// The stream's `recording` object from `GET /api/streams/{name}`.
async fn recording_state(server: &wishd::server::Server, stream: &str) -> serde_json::Value {
    let r = wishd::client::http_request(
        "GET",
        &format!("{}/api/streams/{stream}", server.base_url()),
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        Vec::new(),
    )
    .await
    .expect("GET /api/streams/{name}");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    v["recording"].clone()
}

const ADMIN: &str = "record-test-admin-token-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_reconnects_during_a_recording_leaves_files_that_decode_in_order() {
    let dir = scratch("record-again");
    let server = common::start_with(|c| {
        c.api.token = Some(wishd::config::Secret::new(ADMIN));
        c.publisher_grace = Duration::from_secs(10);
        c.record.push(RecordEntry {
            stream: "show".into(),
            directory: dir.clone(),
            ..RecordEntry::default()
        });
    })
    .await;
    let url = format!("{}/whip/show", server.base_url());
    let first = ffmpeg_whip(&url);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = recording_state(&server, "show").await;
    assert_eq!(during["state"], "recording", "{during}");
    // The publisher crashes and comes back within its grace period.
    drop(first);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = ffmpeg_whip(&url);
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(again);
    let after = recording_state(&server, "show").await;
    server.shutdown().await;

    let files = recordings(&dir.join("show"));
    assert_eq!(
        files.len(),
        2,
        "the new source opened a second file: {files:?}"
    );
    let mut durations = Vec::new();
    for file in &files {
        let errors = decode_errors(file);
        assert!(errors.is_empty(), "{}: {errors}", file.display());
        assert!(
            first_video_frame_is_key(file),
            "{} starts at a keyframe",
            file.display()
        );
        for kind in ["v:0", "a:0"] {
            let t = packet_times(file, kind);
            assert!(
                t.len() > 10,
                "{}: {} {kind} packets",
                file.display(),
                t.len()
            );
            assert!(
                t.windows(2).all(|w| w[1] > w[0]),
                "{}: {kind} decode times go forward",
                file.display()
            );
        }
        let p = probe(file);
        let starts: Vec<f64> = p["streams"]
            .as_array()
            .map(|a| a.iter().map(|s| seconds(&s["start_time"])).collect())
            .unwrap_or_default();
        assert!(
            starts.len() == 2 && (starts[0] - starts[1]).abs() < 0.05,
            "{}: audio and video start together: {starts:?}",
            file.display()
        );
        durations.push(seconds(&p["format"]["duration"]));
    }
    let total: f64 = durations.iter().sum();
    println!(
        "publisher back after 1 s: {} files of {durations:.2?} s, {total:.2} s in all from two \
         4 s runs of ffmpeg -re (which sends its first 0.5 s at once), each decoding without \
         error with its times going forward; the API said {during} then {after}",
        files.len()
    );
    // The outage (1 s) is in neither file: the old source's last picture lasts one
    // frame, not until the new source.
    assert!(
        durations.iter().all(|d| *d < 4.0 + 0.5 + 0.3),
        "{durations:?}"
    );
    assert_eq!(after["files"], 2, "{after}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_that_cannot_write_stops_and_says_why_while_its_viewer_loses_nothing() {
    let dir = scratch("record-fail");
    let (server, vport, aport) = camera_server(RecordEntry {
        stream: "cam".into(),
        directory: dir.clone(),
        // A new file at every keyframe (every 2 s).
        segment: Duration::from_secs(1),
        ..RecordEntry::default()
    })
    .await;
    let _camera = readme_camera(&dir, vport, aport, 30);
    let viewer = interop::view_when_live(
        &format!("{}/whep/cam", server.base_url()),
        wishd::client::ViewerOptions::default(),
        Duration::from_secs(5),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(recording_state(&server, "cam").await["state"], "recording");
    // The stream's folder becomes a file: the next segment cannot be opened.
    std::fs::remove_dir_all(dir.join("cam")).expect("remove the folder");
    std::fs::write(dir.join("cam"), b"not a directory").expect("a file in its place");
    let t0 = Instant::now();
    let Failure {
        failed,
        video,
        gaps,
        plays_on,
    } = failure(&server, &viewer, Duration::from_secs(5)).await;
    let metrics = wishd::client::http_request(
        "GET",
        &format!("{}/metrics", server.base_url()),
        &[],
        Vec::new(),
    )
    .await
    .expect("/metrics")
    .text();
    let failures = metrics
        .lines()
        .find(|l| l.starts_with("wishd_recording_events_total{event=\"failed\"}"))
        .unwrap_or_default()
        .to_owned();
    println!(
        "recording stopped {} ms after its folder went: {failed}; {failures}; the viewer got {} \
         video packets with {gaps} gaps",
        t0.elapsed().as_millis(),
        video.len()
    );
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    assert!(failures.ends_with(" 1"), "{failures}");
    assert!(plays_on, "the viewer plays on");
    assert_eq!(gaps, 0, "the viewer lost nothing");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A recording that failed, and what a viewer of its stream got meanwhile.
struct Failure {
    /// The stream's `recording` object once its state is `failed`.
    failed: serde_json::Value,
    /// The viewer's video packets until 2 s after.
    video: Vec<wishd::client::ReceivedPacket>,
    /// Breaks in their sequence numbers.
    gaps: usize,
    /// More than 60 packets came in those 2 s.
    plays_on: bool,
}

/// Waits (at most `timeout`) for the recording of stream "cam" to fail, then watches
/// `viewer` for 2 s more.
async fn failure(
    server: &wishd::server::Server,
    viewer: &wishd::client::WhepViewer,
    timeout: Duration,
) -> Failure {
    let t0 = Instant::now();
    let failed = loop {
        let r = recording_state(server, "cam").await;
        if r["state"] == "failed" {
            break r;
        }
        assert!(t0.elapsed() < timeout, "still {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let before = viewer.received_count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let video = interop::of_kind(&viewer.received(), wishd::core::MediaKind::Video);
    let gaps = video
        .windows(2)
        .filter(|w| w[1].seq != w[0].seq + 1)
        .count();
    Failure {
        failed,
        video,
        gaps,
        plays_on: viewer.received_count() > before + 60,
    }
}

/// An admin request to the server's API.
async fn admin(
    server: &wishd::server::Server,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> wishd::client::HttpResponse {
    let auth = format!("Bearer {ADMIN}");
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    wishd::client::http_request(
        method,
        &format!("{}{path}", server.base_url()),
        &headers,
        Vec::new(),
    )
    .await
    .expect("API request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_starts_and_stops_a_recording_lists_serves_and_deletes_files_and_retention_keeps_the_newest()
 {
    clients::require_playwright();
    let dir = scratch("record-api");
    // A 1 Mbit/s camera with a keyframe every 2 s: a file of about 250 kB per
    // keyframe; at most 600 kB kept.
    let (server, vport, aport) = camera_server(RecordEntry {
        stream: "cam".into(),
        directory: dir.clone(),
        segment: Duration::from_secs(1),
        always: false,
        max_bytes: Some(600_000),
        ..RecordEntry::default()
    })
    .await;
    let _camera = readme_camera(&dir, vport, aport, 60);
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Not recorded until asked.
    assert_eq!(
        recording_state(&server, "cam").await,
        serde_json::Value::Null
    );
    let list = |r: wishd::client::HttpResponse| -> Vec<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        v["recordings"].as_array().cloned().unwrap_or_default()
    };
    assert!(list(admin(&server, "GET", "/api/recordings", &[]).await).is_empty());
    assert_eq!(
        admin(&server, "POST", "/api/streams/cam/recording", &[])
            .await
            .status,
        202
    );
    assert_eq!(
        admin(&server, "POST", "/api/streams/cam/recording", &[])
            .await
            .status,
        409
    );
    assert_eq!(
        admin(&server, "POST", "/api/streams/none/recording", &[])
            .await
            .status,
        404
    );
    tokio::time::sleep(Duration::from_secs(9)).await;
    let files = list(admin(&server, "GET", "/api/recordings", &[]).await);
    let state = recording_state(&server, "cam").await;
    assert_eq!(
        admin(&server, "DELETE", "/api/streams/cam/recording", &[])
            .await
            .status,
        204
    );
    assert_eq!(
        admin(&server, "DELETE", "/api/streams/cam/recording", &[])
            .await
            .status,
        409
    );
    let opened = state["files"].as_u64().unwrap_or(0);
    let kept: u64 = files.iter().filter_map(|f| f["bytes"].as_u64()).sum();
    println!(
        "API recording for 9 s: {opened} files opened, {} kept ({kept} bytes; max_bytes 600000 \
         and the file being written): {:?}",
        files.len(),
        files.iter().map(|f| &f["bytes"]).collect::<Vec<_>>()
    );
    assert!(opened >= 4, "{state}");
    assert!(
        files.len() < opened as usize,
        "retention deleted the oldest"
    );
    // Each file's start is its own field: the time its name carries, and for the
    // file being written the one the stream's recording gives.
    for f in &files {
        let started = f["started"].as_str().unwrap_or_default();
        assert_eq!(
            f["file"].as_str().map(|n| n.replace(':', "-")),
            Some(format!("cam_{}.mp4", started.replace(':', "-"))),
            "{f}"
        );
    }
    assert!(
        files.iter().any(|f| f["started"] == state["started"]
            && state["file"]
                .as_str()
                .is_some_and(|p| p.ends_with(f["file"].as_str().unwrap_or("-")))),
        "{state}"
    );
    let oldest = files.first().cloned().unwrap_or_default();
    let url = oldest["url"].as_str().unwrap_or_default().to_owned();
    let size = oldest["bytes"].as_u64().unwrap_or(0);

    // Downloads: a range, then the whole file, which ffmpeg decodes.
    let part = admin(&server, "GET", &url, &[("Range", "bytes=0-99")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 0-99/{size}").as_str())
    );
    assert_eq!((part.body.len(), &part.body[4..8]), (100, &b"ftyp"[..]));
    let past = admin(
        &server,
        "GET",
        &url,
        &[("Range", &format!("bytes={size}-"))],
    )
    .await;
    assert_eq!(past.status, 416);
    let whole = admin(&server, "GET", &url, &[]).await;
    assert_eq!((whole.status, whole.body.len() as u64), (200, size));
    let copy = dir.join("downloaded.mp4");
    std::fs::write(&copy, &whole.body).expect("write the download");
    assert_eq!(decode_errors(&copy), "", "the download decodes");
    for bad in [
        "/api/recordings/cam/..%2F..%2Fetc%2Fpasswd",
        "/api/recordings/cam/x.mp4",
    ] {
        assert_eq!(admin(&server, "GET", bad, &[]).await.status, 404, "{bad}");
    }

    // Chromium plays it from the download URL.
    let figures = clients::chromium_scenario(
        "chromium (a recording)",
        serde_json::json!({ "name": "recording", "kind": "play-recording",
                            "base": server.base_url(), "url": url, "token": ADMIN }),
        Duration::from_secs(60),
    )
    .await;
    println!("Chromium played {url}: {figures}");
    assert_eq!(figures["width"], 640);

    assert_eq!(admin(&server, "DELETE", &url, &[]).await.status, 204);
    assert_eq!(admin(&server, "GET", &url, &[]).await.status, 404);
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Chromium's publish page (fake camera and microphone, `codec` at 640x360) publishes
/// stream "web" for about 6 s to a server recording every stream, while a bare peer
/// connection of the same browser watches. The one file it leaves (of extension
/// `ext`) is read by ffprobe and decoded by ffmpeg: it holds `codec_name` video and
/// Opus audio, starts at a keyframe, and its audio starts with its video; and
/// Chromium plays it in a `<video>` from its download URL.
async fn chromium_publishing_is_recorded(codec: &str, ext: &str, codec_name: &str) {
    clients::require_playwright();
    let dir = scratch(&format!("record-web-{ext}-{codec}"));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let server = common::start_with(|c| {
        c.record.push(RecordEntry {
            stream: "*".into(),
            directory: dir.clone(),
            ..RecordEntry::default()
        });
    })
    .await;
    let stop = dir.join("stop");
    let plan = serde_json::json!({
        "out": clients::out_dir(),
        "scenarios": [{ "name": format!("recorded {codec}"), "kind": "timeline",
                        "base": server.base_url(), "stream": "web", "publish": true,
                        "codec": codec, "stop_file": stop, "max_seconds": 40 }],
    });
    let mut node = tokio::process::Command::new("node");
    node.current_dir(clients::root())
        .args(["conformance/browser/pages.mjs", &plan.to_string()]);
    let chromium = clients::Script::spawn("chromium (publishing, recorded)", node);
    let t0 = Instant::now();
    while files_with(&dir.join("web"), ext).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(30), "no recording began");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(9)).await;
    std::fs::write(&stop, b"").expect("stop file");
    // The publisher stops within the script's next look at the stop file (100 ms).
    let ended = std::time::SystemTime::now();
    let report = chromium.finish(Duration::from_secs(30)).await;
    server.shutdown().await;
    assert!(report["results"][0]["ok"] == true, "chromium: {report}");

    let files = files_with(&dir.join("web"), ext);
    assert_eq!(files.len(), 1, "{files:?}");
    let p = probe(&files[0]);
    let streams = p["streams"].as_array().cloned().unwrap_or_default();
    let find = |kind: &str| {
        streams
            .iter()
            .find(|s| s["codec_type"] == kind)
            .cloned()
            .unwrap_or_default()
    };
    let (video, audio) = (find("video"), find("audio"));
    let duration = seconds(&p["format"]["duration"]);
    let (v_start, a_start) = (seconds(&video["start_time"]), seconds(&audio["start_time"]));
    let errors = decode_errors(&files[0]);
    println!(
        "Chromium's {codec} {}x{} and Opus recorded to {}: {duration:.2} s, video from \
         {v_start:.3} s, audio from {a_start:.3} s, {} decode errors",
        video["width"],
        video["height"],
        p["format"]["format_name"],
        errors.lines().count()
    );
    assert_eq!(
        (video["codec_name"].as_str(), audio["codec_name"].as_str()),
        (Some(codec_name), Some("opus"))
    );
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert!(errors.is_empty(), "ffmpeg -v error: {errors}");
    assert!(first_video_frame_is_key(&files[0]));
    assert!(
        (v_start - a_start).abs() < 0.05,
        "audio and video start together"
    );
    // The file holds from its first picture, when its name says it began, until the
    // publisher stopped (just after the stop file).
    let wall = wall_seconds(&files[0], ended);
    println!("{duration:.2} s recorded of {wall:.2} s on the wall clock since the file began");
    assert!(
        (duration - wall).abs() < 0.5,
        "{duration:.2} s recorded, {wall:.2} s on the wall clock"
    );

    // A server over the same folder serves the file, and Chromium plays it.
    let server = common::start_with(|c| {
        c.api.token = Some(wishd::config::Secret::new(ADMIN));
        c.record.push(RecordEntry {
            stream: "*".into(),
            directory: dir.clone(),
            ..RecordEntry::default()
        });
    })
    .await;
    let name = files[0]
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let url = format!("/api/recordings/web/{}", name.unwrap_or_default());
    let played = clients::chromium_scenario(
        "chromium (a recording)",
        serde_json::json!({ "name": format!("play {ext}"), "kind": "play-recording",
                            "base": server.base_url(), "url": url, "token": ADMIN }),
        Duration::from_secs(60),
    )
    .await;
    println!("Chromium played the {codec} recording: {played}");
    assert_eq!(played["width"], 640, "{played}");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishing_h264_and_opus_is_recorded_to_a_file_that_decodes_and_plays() {
    chromium_publishing_is_recorded("H264", "mp4", "h264").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishing_vp8_and_opus_is_recorded_to_webm_that_decodes_and_plays() {
    chromium_publishing_is_recorded("VP8", "webm", "vp8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishing_vp9_and_opus_is_recorded_to_vp09_that_decodes_and_plays() {
    chromium_publishing_is_recorded("VP9", "mp4", "vp9").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishing_av1_and_opus_is_recorded_to_av01_that_decodes_and_plays() {
    chromium_publishing_is_recorded("AV1", "mp4", "av1").await;
}

/// The files of extension `ext` in `dir`.
fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    recordings(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect()
}

/// The `.mp4` files in `dir`.
fn recording_files(dir: &Path) -> Vec<PathBuf> {
    files_with(dir, "mp4")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_camera_is_recorded_to_hvc1_that_ffmpeg_decodes() {
    let port = clients::free_port_pair();
    let dir = scratch("record-hevc");
    let server = common::start_with(|c| {
        c.rtp.push(RtpEntry {
            stream: "hevc".into(),
            video: Some(RtpMediumEntry {
                port,
                pt: 96,
                rtpmap: "H265/90000".into(),
                fmtp: String::new(),
            }),
            ..RtpEntry::default()
        });
        c.record.push(RecordEntry {
            stream: "hevc".into(),
            directory: dir.clone(),
            ..RecordEntry::default()
        });
    })
    .await;
    let camera = interop::h265_camera(port, None);
    tokio::time::sleep(Duration::from_secs(5)).await;
    drop(camera);
    server.shutdown().await;
    let files = recording_files(&dir.join("hevc"));
    assert_eq!(files.len(), 1, "{files:?}");
    let p = probe(&files[0]);
    let video = p["streams"][0].clone();
    let errors = decode_errors(&files[0]);
    let duration = seconds(&p["format"]["duration"]);
    println!(
        "H.265 camera recorded: {} {}x{} ({}), {duration:.2} s, {} decode errors",
        video["codec_name"],
        video["width"],
        video["height"],
        video["codec_tag_string"],
        errors.lines().count()
    );
    assert_eq!(video["codec_name"], "hevc");
    assert_eq!(
        p["streams"].as_array().map(Vec::len),
        Some(1),
        "no audio track for a camera without audio"
    );
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(320), Some(180))
    );
    assert!(errors.is_empty(), "ffmpeg -v error: {errors}");
    assert!(first_video_frame_is_key(&files[0]));
    assert!(duration > 3.0, "{duration:.2} s");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A camera of 320x180 H.264 (a keyframe every second) and G.711 (`pcm_mulaw` or
/// `pcm_alaw`, static payload type 0 or 8) to `vport` and `aport` for `secs`.
fn g711_camera(vport: u16, aport: u16, codec: &str, secs: u32) -> Tool {
    let pt = if codec == "pcm_mulaw" { "0" } else { "8" };
    let secs = secs.to_string();
    let child = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "warning", "-re"])
        .args([
            "-t",
            &secs,
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25",
        ])
        .args([
            "-t",
            &secs,
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=8000",
        ])
        .args([
            "-map",
            "0:v",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
        ])
        .args(["zerolatency", "-g", "25", "-bf", "0", "-pix_fmt", "yuv420p"])
        .args(["-payload_type", "96", "-f", "rtp"])
        .arg(format!("rtp://127.0.0.1:{vport}?pkt_size=1200"))
        .args(["-map", "1:a", "-c:a", codec, "-ar", "8000", "-ac", "1"])
        .args(["-payload_type", pt, "-f", "rtp"])
        .arg(format!("rtp://127.0.0.1:{aport}?pkt_size=1200"))
        .stdout(Stdio::null())
        .spawn()
        .expect("ffmpeg camera starts (apt-get install ffmpeg)");
    Tool(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cameras_with_g711_audio_are_recorded_with_it_as_linear_pcm_in_sync() {
    let dir = scratch("record-g711");
    let ports: Vec<(u16, u16)> = (0..2)
        .map(|_| (clients::free_port_pair(), clients::free_port_pair()))
        .collect();
    let server = common::start_with(|c| {
        for ((vport, aport), (stream, rtpmap, pt)) in ports
            .iter()
            .zip([("mu", "PCMU/8000", 0), ("a", "PCMA/8000", 8)])
        {
            let mut cam = clients::h264_opus_camera(stream, *vport, *aport);
            if let Some(audio) = cam.audio.as_mut() {
                audio.pt = pt;
                audio.rtpmap = rtpmap.into();
            }
            c.rtp.push(cam);
        }
        c.record.push(RecordEntry {
            stream: "*".into(),
            directory: dir.clone(),
            ..RecordEntry::default()
        });
    })
    .await;
    let cameras = [
        g711_camera(ports[0].0, ports[0].1, "pcm_mulaw", 5),
        g711_camera(ports[1].0, ports[1].1, "pcm_alaw", 5),
    ];
    tokio::time::sleep(Duration::from_secs(7)).await;
    drop(cameras);
    server.shutdown().await;
    for stream in ["mu", "a"] {
        let files = recording_files(&dir.join(stream));
        assert_eq!(files.len(), 1, "{stream}: {files:?}");
        let p = probe(&files[0]);
        let streams = p["streams"].as_array().cloned().unwrap_or_default();
        let audio = streams
            .iter()
            .find(|s| s["codec_type"] == "audio")
            .cloned()
            .unwrap_or_default();
        let video = streams
            .iter()
            .find(|s| s["codec_type"] == "video")
            .cloned()
            .unwrap_or_default();
        let (v_start, a_start) = (seconds(&video["start_time"]), seconds(&audio["start_time"]));
        let (v_len, a_len) = (seconds(&video["duration"]), seconds(&audio["duration"]));
        let errors = decode_errors(&files[0]);
        println!(
            "camera {stream}: {} at {} Hz ({}), {a_len:.2} s from {a_start:.3} s; video \
             {v_len:.2} s from {v_start:.3} s; {} decode errors",
            audio["codec_name"],
            audio["sample_rate"],
            audio["codec_tag_string"],
            errors.lines().count()
        );
        assert_eq!(audio["codec_name"], "pcm_s16le", "{stream}");
        assert_eq!(audio["sample_rate"], "8000", "{stream}");
        assert!(errors.is_empty(), "{stream}: ffmpeg -v error: {errors}");
        assert!(
            (v_start - a_start).abs() < 0.05,
            "{stream}: audio and video start together"
        );
        assert!(
            (v_len - a_len).abs() < 0.3,
            "{stream}: audio lasts as long as video"
        );
        assert!(v_len > 3.5, "{stream}: {v_len:.2} s");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Mounts a tmpfs of `size` at `dir` (root only, as the namespace tests); unmounts
/// when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("a mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -t tmpfs (the tests run as root)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_whose_disk_fills_stops_and_says_why_while_its_viewer_loses_nothing() {
    let dir = scratch("record-full");
    let disk = Tmpfs::mount(&dir, "400k");
    let (server, vport, aport) = camera_server(RecordEntry {
        stream: "cam".into(),
        directory: dir.clone(),
        ..RecordEntry::default()
    })
    .await;
    // 1 Mbit/s fills 400 kB in about 3 s.
    let _camera = readme_camera(&std::env::temp_dir(), vport, aport, 30);
    let viewer = interop::view_when_live(
        &format!("{}/whep/cam", server.base_url()),
        wishd::client::ViewerOptions::default(),
        Duration::from_secs(5),
    )
    .await;
    let t0 = Instant::now();
    let Failure {
        failed,
        video,
        gaps,
        plays_on,
    } = failure(&server, &viewer, Duration::from_secs(15)).await;
    let files = recording_files(&dir.join("cam"));
    println!(
        "disk full after {} ms: {failed}; the viewer got {} video packets with {gaps} gaps; \
         the file ({} bytes) decodes with {} errors",
        t0.elapsed().as_millis(),
        video.len(),
        files
            .first()
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len()),
        files
            .first()
            .map_or(0, |f| decode_errors(f).lines().count())
    );
    assert!(
        failed["error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left")),
        "{failed}"
    );
    assert!(plays_on, "the viewer plays on");
    assert_eq!(gaps, 0, "the viewer lost nothing");
    assert_eq!(
        recording_state(&server, "cam").await["dropped"],
        0,
        "a stopped recording counts no refused packets"
    );
    server.shutdown().await;
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_only_camera_is_recorded_to_an_opus_file() {
    let dir = scratch("record-audio");
    let aport = clients::free_port_pair();
    let server = common::start_with(|c| {
        let mut cam = clients::h264_opus_camera("radio", 0, aport);
        cam.video = None;
        c.rtp.push(cam);
        c.record.push(RecordEntry {
            stream: "radio".into(),
            directory: dir.clone(),
            ..RecordEntry::default()
        });
    })
    .await;
    let work = dir.join("camera");
    std::fs::create_dir_all(&work).expect("a work directory");
    let camera = Tool(
        Command::new(clients::root().join("scripts/camera-ffmpeg.sh"))
            .args(["127.0.0.1", "none", &aport.to_string(), "4"])
            .current_dir(&work)
            .stdout(Stdio::null())
            .spawn()
            .expect("ffmpeg camera starts (apt-get install ffmpeg)"),
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    drop(camera);
    server.shutdown().await;
    let files = recording_files(&dir.join("radio"));
    assert_eq!(files.len(), 1, "{files:?}");
    let p = probe(&files[0]);
    let duration = seconds(&p["format"]["duration"]);
    let errors = decode_errors(&files[0]);
    println!(
        "audio-only camera recorded: {} stream(s), {} audio, {duration:.2} s, {} decode errors",
        p["streams"].as_array().map_or(0, Vec::len),
        p["streams"][0]["codec_name"],
        errors.lines().count()
    );
    assert_eq!(p["streams"].as_array().map(Vec::len), Some(1));
    assert_eq!(p["streams"][0]["codec_name"], "opus");
    assert!(errors.is_empty(), "ffmpeg -v error: {errors}");
    assert!(duration > 3.5, "{duration:.2} s");
    let _ = std::fs::remove_dir_all(&dir);
}
