//! Network faults on one viewer's link, in network namespaces of this test: 5 % loss,
//! 2 % reordering, 1 % duplication and 30 ms ± 10 ms of jitter on what wishd sends to
//! a Chromium viewer, then a 3 s blackout of that link. This machine's kernel has no
//! `sch_netem`, so a router namespace between them runs netem's treatment in user
//! space (tests/clients/impair.py on a TUN device); wishd and Chromium are the real
//! programs on real sockets.
//!
//! What must hold:
//! - the lossy viewer's NACKs recover what the link lost: what is still missing after
//!   recovery stays under 0.5 % of its video packets;
//! - after the blackout it decodes again within a second of the link coming back;
//! - the other viewer of the stream (aiortc, beside wishd, on a clean path) decodes
//!   every frame the camera sends, and the server's forwarding latency is what it was
//!   before the faults;
//! - nothing is left behind: once both leave, the server has no session.

mod clients;

use std::time::{Duration, Instant};

use clients::{ImpairedPath, Netns, Script, Toward, assert_ok, conformance};
use serde_json::Value;

/// One scenario at a time: each runs Chromium, a user-space netem and wishd, and its
/// figures are timings that two of them on two cores would distort.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const ADMIN: &str = "faults-test-admin-token-0001";

/// A sample of the Chromium viewer's timeline (pages.mjs `timeline`).
struct Sample {
    t: u64,
    state: String,
    frames: u64,
    packets: i64,
    lost: i64,
    nacks: u64,
}

fn samples(result: &Value) -> Vec<Sample> {
    result["figures"]["samples"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| Sample {
                    t: s["t"].as_u64().unwrap_or(0),
                    state: s["state"].as_str().unwrap_or("").to_string(),
                    frames: s["frames"].as_u64().unwrap_or(0),
                    packets: s["packets"].as_i64().unwrap_or(0),
                    lost: s["lost"].as_i64().unwrap_or(0),
                    nacks: s["nacks"].as_u64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `wishd_keyframe_requests_total` of `kind` in a `/metrics` page (0 if absent).
fn keyframes_of(metrics: &str, kind: &str) -> u64 {
    let label = format!("wishd_keyframe_requests_total{{type=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&label))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The last sample at or before `t` (unix ms).
fn at(samples: &[Sample], t: u64) -> &Sample {
    samples
        .iter()
        .rev()
        .find(|s| s.t <= t)
        .unwrap_or(&samples[0])
}

/// The lossy profile every case uses: 5 % loss, 2 % reordering, 1 % duplicates,
/// 30 ms ± 10 ms.
fn lossy_profile() -> Value {
    serde_json::json!({
        "loss": 5, "reorder": 2, "duplicate": 1, "delay_ms": 30, "jitter_ms": 10
    })
}

/// What the viewer's video did between two instants (unix ms).
struct Window<'a> {
    from: &'a Sample,
    to: &'a Sample,
    /// Video packets received.
    received: i64,
    /// Packets still missing at the end (duplicates can make Chromium's count dip
    /// below zero; not less than 0).
    lost: i64,
}

impl Window<'_> {
    /// `lost` as a percentage of the packets the window should have had.
    fn loss_pct(&self) -> f64 {
        100.0 * self.lost as f64 / (self.received + self.lost).max(1) as f64
    }

    fn secs(&self) -> f64 {
        (self.to.t - self.from.t) as f64 / 1000.0
    }

    fn fps(&self) -> f64 {
        (self.to.frames - self.from.frames) as f64 / self.secs()
    }

    /// The sample states from its start on.
    fn states_after<'s>(&self, s: &'s [Sample]) -> Vec<&'s str> {
        s.iter()
            .filter(|x| x.t >= self.from.t)
            .map(|x| x.state.as_str())
            .collect()
    }
}

fn window(s: &[Sample], from: u64, to: u64) -> Window<'_> {
    let (a, b) = (at(s, from), at(s, to));
    Window {
        from: a,
        to: b,
        received: b.packets - a.packets,
        lost: (b.lost - a.lost).max(0),
    }
}

/// Milliseconds from `back_at` (unix ms) until the viewer had decoded three more
/// frames than it had then: decoding again.
fn decoding_again(s: &[Sample], back_at: u64) -> Option<u64> {
    let before = at(s, back_at).frames;
    s.iter()
        .filter(|x| x.t > back_at)
        .find(|x| x.frames > before + 3)
        .map(|x| x.t.saturating_sub(back_at))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_viewer_recovers_by_nack_and_after_a_blackout_and_costs_the_others_nothing() {
    let _alone = ONE_AT_A_TIME.lock().await;
    clients::require_playwright();
    let wishd_ns = Netns::create("flt-w");
    let mut path = ImpairedPath::new(&wishd_ns, "flt", "10.81.0", "10.82.0", Toward::Far).await;
    let dir = std::env::temp_dir().join(format!("wishd-faults-{}", std::process::id()));
    let config = clients::wishd_config(
        &dir,
        "10.81.0.1:8080",
        "0.0.0.0:20000",
        ADMIN,
        Some(("127.0.0.1", 5004)),
        "",
    );
    let (_wishd, base) = wishd_ns.start_wishd_config(&config, "10.81.0.1:8080").await;
    let _camera = wishd_ns.start_camera(&dir, "127.0.0.1", 5004, 90);

    // The clean viewer, for 26 s.
    let mut view = wishd_ns.command("/usr/bin/python3");
    view.args([
        &conformance("aiortc/wish.py"),
        "view",
        &format!("{base}/whep/cam"),
        "26",
        "video",
    ]);
    let aiortc = Script::spawn("aiortc (WHEP, clean path)", view);

    // The lossy viewer.
    let stop = dir.join("stop");
    let plan = serde_json::json!({
        "out": clients::out_dir(),
        "scenarios": [{ "name": "lossy", "kind": "timeline", "base": base, "stream": "cam",
                        "stop_file": stop, "max_seconds": 40 }],
    });
    let mut node = path.far.command("node");
    node.args([&conformance("browser/pages.mjs"), &plan.to_string()]);
    let chromium = Script::spawn("chromium (WHEP, lossy link)", node);
    let joined = wishd_ns
        .poll_json("http://10.81.0.1:8080/api/streams/cam", ADMIN, |d| {
            (d["sessions"].as_array()?.len() >= 2).then_some(())
        })
        .await;
    assert!(joined.is_some(), "both viewers join");

    // Both play on clean links: the server's latency before the faults.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m0 = wishd_ns.metrics(&base).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let m1 = wishd_ns.metrics(&base).await;

    // What wishd sends the lossy viewer: loss, reordering, duplicates and jitter.
    let lossy = lossy_profile();
    path.set(&lossy);
    let lossy_from = unix_ms() + 2000;
    tokio::time::sleep(Duration::from_secs(10)).await;
    // A clean second: the resends still on their way when the loss stops arrive, and
    // nothing new is lost, so what Chromium counts missing at its end is what NACK
    // recovery left missing (a count taken while the link still drops holds the
    // repairs in flight: 0–10 packets of about 1,100).
    path.set(&serde_json::json!({}));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lossy_to = unix_ms();
    let m2 = wishd_ns.metrics(&base).await;

    // A 3 s blackout, then the lossy link again.
    path.set(&serde_json::json!({ "blackout": true }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    path.set(&lossy);
    let back_at = unix_ms();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let gap_keyframes = keyframes_of(&wishd_ns.metrics(&base).await, "for_viewer_gap");
    std::fs::write(&stop, b"").expect("stop file");

    let chromium = chromium.finish(Duration::from_secs(30)).await;
    let link = path.stop().await;
    let r = &chromium["results"][0];
    assert!(r["ok"] == true, "chromium: {chromium}");
    let s = samples(r);
    assert!(s.len() > 50, "{} samples", s.len());

    // NACK recovery under 5 % loss.
    let w = window(&s, lossy_from, lossy_to);
    let (received, lost, residual) = (w.received, w.lost, w.loss_pct());
    let nacks = w.to.nacks - w.from.nacks;
    let fps = w.fps();
    let recovered = decoding_again(&s, back_at);

    let aiortc = aiortc.finish(Duration::from_secs(40)).await;
    let name = "wishd_forward_latency_seconds";
    let (p99_clean, n_clean) = clients::window_quantile(
        &clients::histogram(&m0, name),
        &clients::histogram(&m1, name),
        0.99,
    );
    let (p99_lossy, n_lossy) = clients::window_quantile(
        &clients::histogram(&m1, name),
        &clients::histogram(&m2, name),
        0.99,
    );
    println!("the impaired link's counts: {link}");
    println!(
        "lossy viewer (5 % loss, 2 % reordering, 1 % duplicates, 30 ± 10 ms): {received} video \
         packets in {:.1} s, {} still missing after recovery ({residual:.2} %), {nacks} NACKs \
         sent, {fps:.1} frames/s decoded; after a 3 s blackout decoding again {} ms after the \
         link came back ({gap_keyframes} keyframes given for gaps the history could not \
         fill); the clean viewer (aiortc) decoded {} frames in 26 s; forwarding \
         latency p99 ≤ {:.2} ms over {n_clean} forwards before the faults, ≤ {:.2} ms over \
         {n_lossy} during",
        w.secs(),
        lost,
        recovered.map_or("never".into(), |ms| ms.to_string()),
        aiortc["figures"]["video_frames"],
        p99_clean * 1e3,
        p99_lossy * 1e3,
    );
    assert!(received > 500, "{received} packets in the lossy window");
    assert!(nacks > 0, "the viewer asked for what it lost");
    assert!(residual < 0.5, "{residual:.2} % lost after recovery");
    let recovered = recovered.expect("the viewer decodes again after the blackout");
    // The viewer NACKs what the blackout took, which wishd no longer holds: wishd
    // gives it a keyframe at once instead of waiting for Chromium to give up on
    // those packets and ask (which took up to 1.7 s).
    assert!(recovered <= 1000, "decoding again {recovered} ms after");
    assert_ok(&aiortc);
    // 30 frames/s for 26 s less its first second of setup: the clean viewer lost none
    // to the other's faults.
    let frames = aiortc["figures"]["video_frames"].as_u64().unwrap_or(0);
    assert!(
        frames >= 25 * 30 * 95 / 100,
        "aiortc decoded {frames} frames"
    );
    assert!(
        p99_lossy <= (p99_clean * 2.0).max(0.005),
        "p99 {p99_clean} s before, {p99_lossy} s during"
    );

    // Nothing left behind once both have gone.
    let started = Instant::now();
    let empty = wishd_ns
        .poll_json("http://10.81.0.1:8080/api/streams/cam", ADMIN, |d| {
            d["sessions"]
                .as_array()
                .is_some_and(|a| a.is_empty())
                .then_some(())
        })
        .await;
    assert!(
        empty.is_some(),
        "sessions left {:?} after both left",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same faults on an RTP camera's link to wishd (plain RTP: nothing can be
/// resent, and a camera cannot be asked for a keyframe). At 5 % loss most of a
/// 1 Mbit/s camera's frames lose a packet, keyframes nearly always, so a viewer's
/// picture freezes whatever the server does: that is the camera's link, and what RTSP
/// over TCP is for. What must hold: wishd drops the duplicates itself and adds no loss
/// of its own (the viewer loses under twice what the link drops), the API says the
/// source went silent during a 3 s blackout and is live again after it, and a Chromium
/// viewer keeps its session throughout and, once the camera's link is clean again,
/// decodes from the camera's next keyframe (its GOP is 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_camera_link_costs_its_viewers_only_what_was_lost() {
    let _alone = ONE_AT_A_TIME.lock().await;
    clients::require_playwright();
    let wishd_ns = Netns::create("fcam-w");
    let mut path = ImpairedPath::new(&wishd_ns, "fcam", "10.83.0", "10.84.0", Toward::Near).await;
    let dir = std::env::temp_dir().join(format!("wishd-faults-cam-{}", std::process::id()));
    let config = clients::wishd_config(
        &dir,
        "10.83.0.1:8080",
        "0.0.0.0:20000",
        ADMIN,
        Some(("0.0.0.0", 5004)),
        "",
    );
    let (_wishd, base) = wishd_ns.start_wishd_config(&config, "10.83.0.1:8080").await;
    let _camera = path.far.start_camera(&dir, "10.83.0.1", 5004, 90);

    let stop = dir.join("stop");
    let plan = serde_json::json!({
        "out": clients::out_dir(),
        "scenarios": [{ "name": "camera-faults", "kind": "timeline", "base": base,
                        "stream": "cam", "stop_file": stop, "max_seconds": 40 }],
    });
    let mut node = wishd_ns.command("node");
    node.args([&conformance("browser/pages.mjs"), &plan.to_string()]);
    let chromium = Script::spawn("chromium (WHEP, camera behind a lossy link)", node);
    let api = "http://10.83.0.1:8080/api/streams/cam";
    let joined = wishd_ns
        .poll_json(api, ADMIN, |d| {
            (!d["sessions"].as_array()?.is_empty()).then_some(())
        })
        .await;
    assert!(joined.is_some(), "the viewer joins");
    tokio::time::sleep(Duration::from_secs(3)).await;

    let lossy = lossy_profile();
    path.set(&lossy);
    let lossy_from = unix_ms() + 1000;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let lossy_to = unix_ms();
    let m_lossy = wishd_ns.metrics(&base).await;

    path.set(&serde_json::json!({ "blackout": true }));
    let blackout = Instant::now();
    // The source goes silent (source_silence, 1 s) while nothing arrives.
    let silent = wishd_ns
        .poll_json(api, ADMIN, |d| {
            (d["source"]["state"] == "silent").then(|| d["source"]["silent_since"].clone())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(blackout.elapsed())).await;
    path.set(&serde_json::json!({}));
    let back_at = unix_ms();
    let live_again = wishd_ns
        .poll_json(api, ADMIN, |d| {
            (d["source"]["state"] == "live").then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    std::fs::write(&stop, b"").expect("stop file");
    let chromium = chromium.finish(Duration::from_secs(30)).await;
    let link = path.stop().await;
    let r = &chromium["results"][0];
    assert!(r["ok"] == true, "chromium: {chromium}");
    let s = samples(r);

    let w = window(&s, lossy_from, lossy_to);
    let (received, seen_loss) = (w.received, w.loss_pct());
    let recovered = decoding_again(&s, back_at);
    let duplicates = clients::counter(
        &m_lossy,
        "wishd_dropped_packets_total{reason=\"rtp_duplicate\"}",
    );
    let late = clients::counter(&m_lossy, "wishd_dropped_packets_total{reason=\"rtp_late\"}");
    let states = w.states_after(&s);
    println!("the impaired link's counts: {link}");
    println!(
        "camera behind 5 % loss, 2 % reordering, 1 % duplicates, 30 ± 10 ms: the viewer got \
         {received} video packets in {:.1} s and lost {seen_loss:.2} % (nothing can be resent \
         from a camera); wishd dropped {duplicates} duplicates and {late} packets too late to \
         reorder; source silent during the 3 s blackout (since {}), live again, the viewer \
         decoding {} ms after the link came back clean (the camera's GOP is 2 s)",
        w.secs(),
        silent.clone().unwrap_or_default(),
        recovered.map_or("never".into(), |ms| ms.to_string()),
    );
    assert!(received > 500, "{received} packets in the lossy window");
    assert!(
        seen_loss < 10.0,
        "the viewer lost {seen_loss:.2} % at 5 % link loss"
    );
    assert!(
        silent.is_some(),
        "the API says the source is silent in the blackout"
    );
    assert!(live_again.is_some(), "and live again after it");
    assert!(duplicates > 0, "the camera's duplicates stop at wishd");
    assert!(
        states.iter().all(|st| *st == "connected"),
        "the viewer kept its session: {states:?}"
    );
    let recovered = recovered.expect("the viewer decodes again after the blackout");
    // By the next keyframe (2 s), with a second to spare for a loaded machine.
    assert!(recovered <= 3000, "decoding again {recovered} ms after");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same faults on a WHIP publisher's link: Chromium's publish page in a namespace
/// whose media to wishd crosses the lossy path, and a Chromium viewer beside it whose
/// own path is clean. What must hold: wishd asks the publisher again for what its link
/// lost (NACKs, which Chromium answers with retransmissions) so that the viewer misses
/// under 0.5 % of the video (or a single packet), and after a 3 s blackout of the publisher's link the viewer
/// decodes again within 2.5 s, in the same session: wishd asks the publisher for a
/// keyframe as soon as its video is back, and the keyframe crosses the lossy link at
/// the rate the publisher's estimate fell to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_publisher_link_is_repaired_by_nack_before_the_viewers_see_it() {
    let _alone = ONE_AT_A_TIME.lock().await;
    clients::require_playwright();
    let wishd_ns = Netns::create("fpub-w");
    let mut path = ImpairedPath::new(&wishd_ns, "fpub", "10.85.0", "10.86.0", Toward::Near).await;
    let dir = std::env::temp_dir().join(format!("wishd-faults-pub-{}", std::process::id()));
    let config = clients::wishd_config(&dir, "10.85.0.1:8080", "0.0.0.0:20000", ADMIN, None, "");
    let (_wishd, base) = wishd_ns.start_wishd_config(&config, "10.85.0.1:8080").await;

    let stop = dir.join("stop");
    let plan = serde_json::json!({
        "out": clients::out_dir(),
        "secure_origins": [base],
        "scenarios": [{ "name": "publisher-faults", "kind": "timeline", "base": base,
                        "stream": "live", "publish": true, "stop_file": stop,
                        "max_seconds": 40 }],
    });
    let mut node = path.far.command("node");
    node.args([&conformance("browser/pages.mjs"), &plan.to_string()]);
    let chromium = Script::spawn("chromium (WHIP over a lossy link, and a viewer)", node);
    let api = "http://10.85.0.1:8080/api/streams/live";
    let joined = wishd_ns
        .poll_json(api, ADMIN, |d| {
            (d["sessions"].as_array()?.len() >= 2).then_some(())
        })
        .await;
    if joined.is_none() {
        let out = chromium.finish(Duration::from_secs(5)).await;
        panic!("publisher and viewer do not join: {out}");
    }
    tokio::time::sleep(Duration::from_secs(4)).await;

    let lossy = lossy_profile();
    path.set(&lossy);
    let lossy_from = unix_ms() + 2000;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let lossy_to = unix_ms();

    path.set(&serde_json::json!({ "blackout": true }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    path.set(&lossy);
    let back_at = unix_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let outage_keyframes = keyframes_of(&wishd_ns.metrics(&base).await, "after_outage");
    std::fs::write(&stop, b"").expect("stop file");
    let chromium = chromium.finish(Duration::from_secs(30)).await;
    let link = path.stop().await;
    let r = &chromium["results"][0];
    assert!(r["ok"] == true, "chromium: {chromium}");
    let s = samples(r);

    let w = window(&s, lossy_from, lossy_to);
    let (received, lost, residual, fps) = (w.received, w.lost, w.loss_pct(), w.fps());
    let recovered = decoding_again(&s, back_at);
    let publisher = &r["figures"]["publisher"];
    let states = w.states_after(&s);
    println!("the impaired link's counts: {link}");
    println!(
        "publisher behind 5 % loss, 2 % reordering, 1 % duplicates, 30 ± 10 ms: it answered \
         {} NACKs with {} retransmissions ({} PLIs); the viewer on a clean path got {received} \
         video packets in {:.1} s, {lost} missing after recovery ({residual:.2} %), {fps:.1} \
         frames/s; after a 3 s blackout of the publisher's link the viewer decoded again {} ms \
         after it came back ({outage_keyframes} keyframes asked as the publisher's video \
         came back)",
        publisher["nacks"],
        publisher["retransmitted"],
        publisher["plis"],
        w.secs(),
        recovered.map_or("never".into(), |ms| ms.to_string()),
    );
    assert!(received > 100, "{received} packets in the lossy window");
    assert!(
        publisher["retransmitted"].as_u64().unwrap_or(0) > 0,
        "wishd asked the publisher again: {publisher}"
    );
    // Chromium sends this link's video at 60–90 kbit/s after the losses, about 170
    // packets in the window: one packet whose retransmission was lost too is 0.6 %.
    assert!(
        residual < 0.5 || lost <= 1,
        "{residual:.2} % ({lost} packets) lost after recovery"
    );
    assert!(
        states.iter().all(|st| *st == "connected"),
        "the viewer kept its session: {states:?}"
    );
    let recovered = recovered.expect("the viewer decodes again after the blackout");
    // wishd asks for a keyframe as soon as the publisher's video is back; the
    // keyframe then crosses the lossy link at the rate Chromium's estimate fell to
    // in the blackout (0.9–1.2 s). Without the request it came when the viewer's
    // decoder gave up waiting, 3.3 s after, in about half the runs.
    assert!(recovered <= 2500, "decoding again {recovered} ms after");
    let _ = std::fs::remove_dir_all(&dir);
}
