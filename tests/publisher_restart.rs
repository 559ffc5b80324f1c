//! A publisher that crashes, or loses its network, and comes back: real publishers
//! (FFmpeg's WHIP muxer, the OBS-like libdatachannel one) are killed with SIGKILL or
//! cut off by a routing rule, a new one publishes the same stream seconds later, and
//! a Chromium viewer that stays connected throughout must decode at full rate again
//! within a second of the new publisher's first keyframe; while the stream is silent
//! its decoded-frame count must not grow (no replays of a stale picture).
//!
//! The test drives the publishers and notes when each event happened (Unix ms); the
//! viewer (`conformance/browser/pages.mjs`, scenario `timeline`) samples getStats()
//! every 100 ms until told to stop; the two are laid side by side afterwards and the
//! per-second frame counts are printed.

mod clients;
mod common;
mod interop;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use interop::{Lines, Tool};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// The timeline tests measure frame rates on two cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// FFmpeg's WHIP muxer publishing a 30 fps test pattern with a keyframe every second.
fn ffmpeg(url: &str, wrap: Option<&clients::Netns>) -> (Tool, Lines) {
    let exe = interop::ffmpeg_with_whip();
    #[rustfmt::skip]
    let args = [
        "-nostdin", "-nostats", "-loglevel", "info", "-re",
        "-t", "90", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
        "-t", "90", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
        "-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p", "-b:v", "400k",
        "-c:a", "libopus", "-ar", "48000", "-ac", "2",
        "-f", "whip", url,
    ];
    let mut cmd = match wrap {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &ns.name, &exe]);
            c
        }
        None => Command::new(&exe),
    };
    let mut child = cmd
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg starts");
    let log = Lines::collect(child.stderr.take().expect("stderr piped"));
    (Tool(child), log)
}

/// The OBS-like publisher (libdatachannel through node-datachannel).
fn obs_like(url: &str) -> (Tool, Lines) {
    let script = clients::root().join("conformance/obs/whip-publish.mjs");
    let mut child = Command::new("node")
        .arg(script)
        .args(["--url", url, "--seconds", "90", "--gop", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let out = Lines::collect(child.stdout.take().expect("stdout piped"));
    (Tool(child), out)
}

/// Where the test reads wishd's API: from here, or from inside a test namespace.
#[derive(Clone, Copy)]
enum Api<'a> {
    Local(&'a str),
    Netns(&'a clients::Netns, &'a str),
}

impl Api<'_> {
    async fn streams(self) -> Value {
        let body = match self {
            Api::Local(base) => {
                wishd::client::http_request("GET", &format!("{base}/api/streams"), &[], Vec::new())
                    .await
                    .expect("API answers")
                    .body
            }
            Api::Netns(ns, base) => {
                let fetch = "import sys, urllib.request; \
                             sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())";
                ns.command("python3")
                    .args(["-c", fetch, &format!("{base}/api/streams")])
                    .output()
                    .await
                    .expect("python3 in the namespace")
                    .stdout
            }
        };
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    }
}

/// What `/api/streams` says of a stream's source: (state, addr, packets in).
async fn source(api: Api<'_>, stream: &str) -> (String, String, u64) {
    let list = api.streams().await;
    let s = list["streams"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == stream))
        .cloned()
        .unwrap_or(Value::Null);
    (
        s["source"]["state"].as_str().unwrap_or("none").to_owned(),
        s["source"]["addr"].as_str().unwrap_or("").to_owned(),
        s["packets_in"].as_u64().unwrap_or(0),
    )
}

/// Waits until a new source (another address than `old`) sends packets; returns the
/// Unix ms when its packets were first seen (its first keyframe: both publishers start
/// with one) and its address. Fails with the publisher's log if it never does.
async fn new_source_live(api: Api<'_>, stream: &str, old: &str, log: &Lines) -> (u64, String) {
    let (_, _, before) = source(api, stream).await;
    for _ in 0..400 {
        let (state, addr, packets) = source(api, stream).await;
        if state == "live" && addr != old && !addr.is_empty() && packets > before {
            return (unix_ms(), addr);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "the new publisher of {stream} never went live; it said:\n{}",
        log.snapshot().join("\n")
    );
}

/// The viewer's samples: (Unix ms, frames decoded, connection state).
fn samples(report: &Value) -> Vec<(u64, u64, String)> {
    let results = report["results"].as_array().cloned().unwrap_or_default();
    let r = results.first().cloned().unwrap_or(Value::Null);
    assert!(
        r["ok"] == Value::Bool(true),
        "chromium timeline: failed at step \"{}\": {}",
        r["step"].as_str().unwrap_or("?"),
        r["error"].as_str().unwrap_or("?")
    );
    r["figures"]["samples"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["t"].as_u64().unwrap_or(0),
                        s["frames"].as_u64().unwrap_or(0),
                        s["state"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Frames decoded by Unix ms `t` (the last sample at or before it).
fn frames_at(s: &[(u64, u64, String)], t: u64) -> u64 {
    s.iter().take_while(|x| x.0 <= t).last().map_or(0, |x| x.1)
}

/// The per-second timeline, with the events marked, as a printable table.
fn per_second(s: &[(u64, u64, String)], events: &[(u64, &str)]) -> String {
    let Some(start) = s.first().map(|x| x.0) else {
        return String::new();
    };
    let end = s.last().map_or(start, |x| x.0);
    let mut out = String::from("second  frames  events\n");
    let mut t = start;
    while t + 1000 <= end + 1 {
        let n = frames_at(s, t + 1000) - frames_at(s, t);
        let marks: Vec<&str> = events
            .iter()
            .filter(|(at, _)| *at >= t && *at < t + 1000)
            .map(|(_, what)| *what)
            .collect();
        out.push_str(&format!(
            "{:>6}  {n:>6}  {}\n",
            (t - start) / 1000,
            marks.join(", ")
        ));
        t += 1000;
    }
    out
}

/// The checks of one restart: by a second after the new source's first keyframe the
/// viewer decodes at 25 fps or more (frames in the second after that).
fn assert_recovers(s: &[(u64, u64, String)], live_at: u64, what: &str, table: &str) -> u64 {
    let fps = frames_at(s, live_at + 2000) - frames_at(s, live_at + 1000);
    assert!(
        fps >= 25,
        "{what}: {fps} frames in the second from 1 s after the new publisher's first \
         keyframe (want ≥ 25)\n{table}"
    );
    fps
}

/// Starts a Chromium viewer of `stream` sampling until `stop` exists.
fn timeline_viewer(
    base: &str,
    stream: &str,
    stop: &Path,
    wrap: Option<&clients::Netns>,
) -> clients::Script {
    let plan = json!({
        "out": clients::out_dir(),
        "scenarios": [{ "name": "timeline", "kind": "timeline", "base": base,
                        "stream": stream, "stop_file": stop, "max_seconds": 90,
                        "index": true }],
    });
    let args = ["conformance/browser/pages.mjs".to_owned(), plan.to_string()];
    let cmd = match wrap {
        Some(ns) => {
            let mut c = ns.command("node");
            c.args(&args);
            c
        }
        None => {
            let mut c = tokio::process::Command::new("node");
            c.args(&args).current_dir(clients::root());
            c
        }
    };
    clients::Script::spawn("chromium", cmd)
}

fn stop_file(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("wishd-restart-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

/// Waits for the first source of `stream` to be live and a Chromium viewer of it to
/// decode, then returns the viewer and the source's address.
async fn first_publisher_and_viewer(
    api: Api<'_>,
    stream: &str,
    log: &Lines,
    stop: &Path,
) -> (clients::Script, String) {
    let (_, addr) = new_source_live(api, stream, "", log).await;
    let mut viewer = match api {
        Api::Local(base) => timeline_viewer(base, stream, stop, None),
        Api::Netns(ns, base) => timeline_viewer(base, stream, stop, Some(ns)),
    };
    viewer
        .wait_for("timeline: first decoded frame", Duration::from_secs(30))
        .await;
    // Steady playback before anything happens.
    tokio::time::sleep(Duration::from_secs(2)).await;
    (viewer, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_killed_and_restarted_plays_on_in_the_same_chromium_session_without_replays() {
    clients::require_playwright();
    let _one = ONE_AT_A_TIME.lock().await;
    let server = common::start().await;
    let base = server.base_url();
    let url = format!("{base}/whip/restart");
    let stop = stop_file("ffmpeg");

    let (a, log_a) = ffmpeg(&url, None);
    let api = Api::Local(&base);
    let (viewer, addr_a) = first_publisher_and_viewer(api, "restart", &log_a, &stop).await;
    let mut events = Vec::new();

    // The publisher crashes; a new one publishes 2 s later. ICE consent would keep
    // the first one's claim for 10 s: the new POST must get 201 now.
    drop(a);
    events.push((unix_ms(), "SIGKILL ffmpeg 1"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    events.push((unix_ms(), "ffmpeg 2 starts"));
    let (b, log_b) = ffmpeg(&url, None);
    let (live_b, addr_b) = new_source_live(api, "restart", &addr_a, &log_b).await;
    events.push((live_b, "ffmpeg 2 first keyframe"));
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The second one crashes too, and the stream stays silent for 5 s.
    drop(b);
    let killed_b = unix_ms();
    events.push((killed_b, "SIGKILL ffmpeg 2"));
    tokio::time::sleep(Duration::from_millis(5500)).await;
    events.push((unix_ms(), "ffmpeg 3 starts"));
    let (c, log_c) = ffmpeg(&url, None);
    let (live_c, _) = new_source_live(api, "restart", &addr_b, &log_c).await;
    events.push((live_c, "ffmpeg 3 first keyframe"));
    tokio::time::sleep(Duration::from_secs(3)).await;

    std::fs::write(&stop, b"stop").expect("stop file");
    let report = viewer.finish(Duration::from_secs(30)).await;
    let _ = std::fs::remove_file(&stop);
    drop(c);
    let s = samples(&report);
    let table = per_second(&s, &events);
    println!("chromium framesDecoded per second, one WHEP session throughout:\n{table}");

    let after_first = s.iter().skip_while(|x| x.1 == 0);
    let states: Vec<&str> = after_first.map(|x| x.2.as_str()).collect();
    assert!(
        states.iter().all(|st| *st == "connected"),
        "the viewer's connection did not stay up: {:?}\n{table}",
        states
            .iter()
            .filter(|st| **st != "connected")
            .collect::<Vec<_>>()
    );
    let fps_b = assert_recovers(&s, live_b, "after the first restart", &table);
    let fps_c = assert_recovers(&s, live_c, "after the 5 s silence", &table);
    // Frames still in flight at the kill are decoded within a few hundred ms; after
    // that nothing may be decoded until the next publisher (no replays).
    let silent = frames_at(&s, killed_b + 5000) - frames_at(&s, killed_b + 500);
    assert_eq!(
        silent, 0,
        "frames decoded during the source's silence (replays)\n{table}"
    );
    println!(
        "ffmpeg restarts: {fps_b} fps and {fps_c} fps in the second from 1 s after each new \
         publisher's first keyframe; 0 frames from 0.5 to 5 s of silence"
    );
    // The index page said so meanwhile.
    let shown: Vec<&str> = report["results"][0]["figures"]["index_sources"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!("the index page's Source cell: {shown:?}");
    assert!(
        shown.iter().any(|t| t.starts_with("WHIP · silent since ")),
        "the index page never showed the silence: {shown:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_like_publisher_killed_and_restarted_plays_on_in_the_same_chromium_session() {
    clients::require_playwright();
    let _one = ONE_AT_A_TIME.lock().await;
    let server = common::start().await;
    let base = server.base_url();
    let url = format!("{base}/whip/obs-restart");
    let stop = stop_file("obs");

    let (a, log_a) = obs_like(&url);
    let api = Api::Local(&base);
    let (viewer, addr_a) = first_publisher_and_viewer(api, "obs-restart", &log_a, &stop).await;
    let mut events = Vec::new();
    drop(a);
    events.push((unix_ms(), "SIGKILL publisher 1"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    events.push((unix_ms(), "publisher 2 starts"));
    let (b, log_b) = obs_like(&url);
    let (live_b, _) = new_source_live(api, "obs-restart", &addr_a, &log_b).await;
    events.push((live_b, "publisher 2 first keyframe"));
    tokio::time::sleep(Duration::from_secs(3)).await;

    std::fs::write(&stop, b"stop").expect("stop file");
    let report = viewer.finish(Duration::from_secs(30)).await;
    let _ = std::fs::remove_file(&stop);
    drop(b);
    let s = samples(&report);
    let table = per_second(&s, &events);
    println!("chromium framesDecoded per second (OBS-like publisher restarted):\n{table}");
    let fps = assert_recovers(&s, live_b, "after the OBS-like restart", &table);
    println!("OBS-like restart: {fps} fps in the second from 1 s after its first keyframe");
    server.shutdown().await;
}

/// A laptop closed or moved to another network: the publisher's packets and wishd's
/// answers to it vanish (an nftables rule in the test's namespace drops its address
/// both ways, silently: neither side gets a send error), and a publisher from a new
/// address takes the stream over. When the old path comes back, the old publisher
/// cannot disturb the stream it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_cut_off_by_the_network_is_replaced_by_one_from_a_new_address() {
    clients::require_playwright();
    let _one = ONE_AT_A_TIME.lock().await;
    let ns = clients::Netns::create("cut");
    let (_wishd, base) = ns.start_wishd().await;
    let api = Api::Netns(&ns, &base);
    let url = format!("{base}/whip/cut");
    let stop = stop_file("cut");

    let (_a, log_a) = ffmpeg(&url, Some(&ns));
    let (viewer, addr_a) = first_publisher_and_viewer(api, "cut", &log_a, &stop).await;
    let port = addr_a.rsplit(':').next().unwrap_or_default().to_owned();
    let mut events = Vec::new();
    ns.nft(&["add", "table", "inet", "cut"]).await;
    ns.nft(&[
        "add",
        "chain",
        "inet",
        "cut",
        "input",
        "{ type filter hook input priority 0; }",
    ])
    .await;
    for dir in ["sport", "dport"] {
        ns.nft(&[
            "add", "rule", "inet", "cut", "input", "udp", dir, &port, "drop",
        ])
        .await;
    }
    events.push((unix_ms(), "publisher 1 cut off"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    events.push((unix_ms(), "publisher 2 starts"));
    let (_b, log_b) = ffmpeg(&url, Some(&ns));
    let (live_b, addr_b) = new_source_live(api, "cut", &addr_a, &log_b).await;
    events.push((live_b, "publisher 2 first keyframe"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    ns.nft(&["delete", "table", "inet", "cut"]).await;
    let healed = unix_ms();
    events.push((healed, "publisher 1's path back"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (state, addr, _) = source(api, "cut").await;

    std::fs::write(&stop, b"stop").expect("stop file");
    let report = viewer.finish(Duration::from_secs(30)).await;
    let _ = std::fs::remove_file(&stop);
    let s = samples(&report);
    let table = per_second(&s, &events);
    println!("chromium framesDecoded per second (publisher cut off, replaced):\n{table}");
    let fps = assert_recovers(&s, live_b, "after the publisher from a new address", &table);
    assert_eq!(
        (state.as_str(), addr.as_str()),
        ("live", addr_b.as_str()),
        "the stream's source after the old path came back"
    );
    let after = frames_at(&s, healed + 3000) - frames_at(&s, healed + 1000);
    assert!(
        after >= 50,
        "{after} frames in 2 s after the old publisher's path came back\n{table}"
    );
    println!(
        "cut-off publisher replaced from {addr_a} by {addr_b}: {fps} fps in the second from 1 s \
         after its first keyframe; {after} frames in 2 s once the old path was back"
    );
}
