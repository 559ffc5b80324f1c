//! Simulcast with real browsers: Chromium publishes three layers with
//! `sendEncodings` (rids q, h, f scaled down by 4, 2 and 1), one Chromium viewer
//! plays on the server's own network and another behind a link the test narrows
//! with `tc` and later opens again. The narrowed viewer must move to the low layer
//! within 5 s without a freeze longer than a second, and back to the top layer
//! within 15 s of the link opening; the other viewer stays on the top layer.
//!
//! Two network namespaces of the test's own: wishd, the publisher and the free viewer
//! in one, the narrowed viewer in the other, joined by a veth pair whose server end
//! gets a token-bucket filter. Both viewers sample getStats() every 100 ms
//! (`conformance/browser/simulcast.mjs`); the timelines are printed.

mod clients;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A camera file with detail in every frame: the fake camera's own picture is so
/// plain that the encoder's layers stay far under their targets, and far apart
/// layers are what the test needs. 2 s of 960×540 (Chromium loops it).
fn camera_file(dir: &Path) -> PathBuf {
    let file = dir.join("noise-540.y4m");
    let ok = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=960x540:rate=30,noise=alls=20:allf=t+u")
        .args(["-t", "2", "-pix_fmt", "yuv420p"])
        .arg(&file)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ffmpeg (apt-get install ffmpeg) wrote no camera file");
    file
}

/// One viewer's samples: (Unix ms, decoded frames, frame width).
fn samples(report: &Value, name: &str) -> Vec<(u64, u64, u64)> {
    report["viewers"][name]["samples"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|s| {
            (
                s["t"].as_u64().unwrap_or(0),
                s["frames"].as_u64().unwrap_or(0),
                s["width"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The width changes of a timeline, in seconds from `t0`.
fn widths(s: &[(u64, u64, u64)], t0: u64) -> String {
    let mut out = Vec::new();
    let mut last = None;
    for &(t, _, w) in s {
        if last != Some(w) {
            out.push(format!("{:+.1} s: {w}", (t as f64 - t0 as f64) / 1000.0));
            last = Some(w);
        }
    }
    out.join(", ")
}

/// The longest time between two samples where the decoded frame count grew, from
/// `from` on (ms), and where it started.
fn longest_stall(s: &[(u64, u64, u64)], from: u64) -> (u64, u64) {
    let mut worst = (0, 0);
    let mut last: Option<(u64, u64)> = None;
    for &(t, frames, _) in s.iter().filter(|x| x.0 >= from) {
        match last {
            Some((at, f)) if frames > f => {
                if t - at > worst.0 {
                    worst = (t - at, at);
                }
                last = Some((t, frames));
            }
            None => last = Some((t, frames)),
            _ => {}
        }
    }
    worst
}

/// When the viewer first decoded a frame narrower than `width`, at or after `from`.
fn first_narrower(s: &[(u64, u64, u64)], from: u64, width: u64) -> Option<u64> {
    s.iter()
        .find(|x| x.0 >= from && x.2 > 0 && x.2 < width)
        .map(|x| x.0)
}

/// When the viewer was last seen narrower than `width` before it stayed at `width`
/// to the end: the time it came back.
fn back_at(s: &[(u64, u64, u64)], width: u64) -> Option<u64> {
    let last_other = s.iter().rposition(|x| x.2 != width)?;
    s.get(last_other + 1).map(|x| x.0)
}

/// What the API says of the stream's layers: (rid, bit rate, width), best first.
async fn layers(ns: &clients::Netns, base: &str) -> Vec<(String, u64, u64)> {
    let fetch = "import sys, urllib.request; \
                 sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())";
    let out = ns
        .command("python3")
        .args(["-c", fetch, &format!("{base}/api/streams")])
        .output()
        .await
        .expect("python3 in the namespace");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let stream = v["streams"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == "sim"))
        .cloned()
        .unwrap_or(Value::Null);
    stream["layers"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|x| {
                    (
                        x["rid"].as_str().unwrap_or("").to_owned(),
                        x["bitrate"].as_u64().unwrap_or(0),
                        x["width"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What a viewer needs to get a layer of `bitrate` (its headers and the audio), as
/// the server reckons it (`core::layers::need`).
fn need(bitrate: u64) -> u64 {
    bitrate * 108 / 100 + 64_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_viewer_behind_a_narrowed_link_moves_down_a_layer_and_back_up() {
    clients::require_playwright();
    let dir = std::env::temp_dir().join(format!("wishd-simulcast-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let camera = camera_file(&dir);
    let stop = dir.join("stop");

    let server_ns = clients::Netns::create("sim");
    let viewer_ns = server_ns.linked("simv", "10.77.0.1/24", "10.77.0.2/24");
    let (wishd, base) = server_ns
        .start_wishd_on("0.0.0.0:8080", "0.0.0.0:20000")
        .await;

    let publisher_plan = json!({
        "base": base, "stream": "sim", "stop_file": stop, "max_seconds": 120,
        "publish": { "width": 960, "height": 540, "video_file": camera,
                     "layers": [{ "rid": "q", "scale": 4 }, { "rid": "h", "scale": 2 },
                                { "rid": "f", "scale": 1 }] },
        "viewers": [{ "name": "free" }],
    });
    let mut c = server_ns.command("node");
    c.args([
        "conformance/browser/simulcast.mjs",
        &publisher_plan.to_string(),
    ]);
    let mut near = clients::Script::spawn("chromium (publisher, free viewer)", c);
    near.wait_for("viewer free: first frame", Duration::from_secs(60))
        .await;

    // The publisher's own estimate ramps its layers up over a few seconds.
    let mut ladder = Vec::new();
    for _ in 0..100 {
        ladder = layers(&server_ns, &base).await;
        if ladder.len() == 3 && ladder.iter().all(|l| l.1 > 0) && ladder[0].1 > 700_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("layers before the viewers' test: {ladder:?}");
    assert_eq!(ladder.len(), 3, "{ladder:?}");
    let (top_width, low) = (ladder[0].2, &ladder[2]);

    let viewer_plan = json!({
        "base": "http://10.77.0.1:8080", "stream": "sim", "stop_file": stop,
        "max_seconds": 120, "viewers": [{ "name": "narrowed" }],
    });
    let mut c = viewer_ns.command("node");
    c.args([
        "conformance/browser/simulcast.mjs",
        &viewer_plan.to_string(),
    ]);
    let mut far = clients::Script::spawn("chromium (narrowed viewer)", c);
    far.wait_for("viewer narrowed: first frame", Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // A link the low layer fits in with room to spare and the middle one does not.
    let ladder = layers(&server_ns, &base).await;
    let (low_need, mid_need) = (need(ladder[2].1), need(ladder[1].1));
    let rate = (low_need + mid_need) / 2;
    println!(
        "layers {ladder:?}: the low one needs {low_need} bit/s, the middle {mid_need}; \
         the link is narrowed to {rate} bit/s"
    );
    assert!(
        mid_need > low_need * 13 / 10,
        "the layers are too close to tell apart: {ladder:?}"
    );
    let limited = unix_ms();
    server_ns
        .tc(&[
            "qdisc",
            "add",
            "dev",
            "vl",
            "root",
            "tbf",
            "rate",
            &format!("{}kbit", rate / 1000),
            "burst",
            "32kbit",
            "latency",
            "400ms",
        ])
        .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let opened = unix_ms();
    server_ns.tc(&["qdisc", "del", "dev", "vl", "root"]).await;
    tokio::time::sleep(Duration::from_secs(18)).await;
    std::fs::write(&stop, b"stop").expect("stop file");
    let far = far.finish(Duration::from_secs(30)).await;
    let near = near.finish(Duration::from_secs(30)).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(far["error"].is_null(), "narrowed viewer: {}", far["error"]);
    assert!(near["error"].is_null(), "publisher page: {}", near["error"]);

    let switches: Vec<String> = wishd
        .output()
        .lines()
        .filter(|l| l.contains("layer switch") || l.contains("probing"))
        .map(str::to_owned)
        .collect();
    println!("the server's layer switches:\n{}", switches.join("\n"));
    let narrowed = samples(&far, "narrowed");
    let free = samples(&near, "free");
    println!(
        "narrowed viewer's frame width from the narrowing ({rate} bit/s) on: {}",
        widths(&narrowed, limited)
    );
    println!(
        "link opened at {:+.1} s",
        (opened - limited) as f64 / 1000.0
    );
    println!("free viewer's frame width: {}", widths(&free, limited));
    let down = first_narrower(&narrowed, limited, low.2 + 1)
        .expect("the narrowed viewer never got the low layer");
    let stall = longest_stall(&narrowed, limited);
    let back = back_at(&narrowed, top_width).filter(|t| *t > opened);
    println!(
        "narrowed viewer: low layer ({} wide) {:.1} s after the narrowing; longest \
         stall {} ms (at {:+.1} s); top layer again {:?} s after the link opened",
        low.2,
        (down - limited) as f64 / 1000.0,
        stall.0,
        (stall.1 as f64 - limited as f64) / 1000.0,
        back.map(|b| (b - opened) as f64 / 1000.0)
    );
    assert!(
        down - limited <= 5_000,
        "moved down only after {} ms",
        down - limited
    );
    assert!(stall.0 <= 1_000, "a freeze of {} ms", stall.0);
    let back = back.expect("the narrowed viewer did not get the top layer back");
    assert!(
        back - opened <= 15_000,
        "back up only after {} ms",
        back - opened
    );
    // The free viewer stays on the top layer, and plays on.
    let during: Vec<&(u64, u64, u64)> = free.iter().filter(|x| x.0 >= limited).collect();
    assert!(
        during.iter().all(|x| x.2 == top_width),
        "the free viewer left the top layer: {}",
        widths(&free, limited)
    );
    let free_stall = longest_stall(&free, limited);
    assert!(
        free_stall.0 <= 1_000,
        "free viewer froze {} ms",
        free_stall.0
    );
}
