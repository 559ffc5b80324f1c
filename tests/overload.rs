//! Overload costs old packets, never seconds of delay. A media worker slowed on purpose
//! (its thread blocked for 3 s through the server's test hook, as a worker starved of
//! CPU is; SCHED_IDLE under load was tried and still gave the worker enough time to
//! keep up now and then) falls behind on the queue its viewers' packets wait in. Once it runs
//! again it drops what waited longer than `forward_max_delay` (counted) instead of
//! sending it late, asks the publisher for a keyframe at once, and its viewer gets
//! fresh video again: the delay it sees stays bounded by `forward_max_delay`, not by
//! the length of the stall.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wishd::core::MediaKind;

/// How late each video packet arrived against the RTP clock (90 kHz): its arrival
/// minus the arrival the first packet's clock predicts. Only the spread matters.
fn lateness(packets: &[(Instant, u32)], t0: Instant, ts0: u32) -> Vec<(Instant, f64)> {
    packets
        .iter()
        .map(|&(at, ts)| {
            let media = f64::from(ts.wrapping_sub(ts0)) / 90_000.0;
            (at, at.duration_since(t0).as_secs_f64() - media)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_worker_drops_what_is_stale_asks_for_a_keyframe_and_stays_current() {
    let server = common::start_with(|c| {
        c.workers = 2;
        c.forward_max_delay = Duration::from_millis(200);
    })
    .await;
    let base = server.base_url();
    // Workers are taken in turn: the publisher on worker 0, this viewer on worker 1,
    // so its packets cross the queue between them.
    // A publisher that answers keyframe requests, with its own keyframes 10 s apart:
    // a keyframe soon after the stall is one wishd asked for.
    let _p = common::publish(
        &base,
        "s",
        wishd::client::PublisherOptions {
            answer_keyframe_requests: true,
            keyframe_interval: Duration::from_secs(10),
            ..Default::default()
        },
    )
    .await;
    let viewer = common::view(&base, "s").await;
    viewer
        .wait_for(Duration::from_secs(5), |p| p.len() > 60)
        .await
        .expect("the viewer plays");
    let counters = server.counters().clone();
    let stale_before = counters.stale_source_packets.load(Ordering::Relaxed);

    // Worker 1 blocked for 3 s, as a worker starved of CPU is, while the publisher on
    // worker 0 goes on sending.
    let stalled_at = Instant::now();
    server.stall_media_worker(1, Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let resumed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let got = viewer.received();
    let video: Vec<(Instant, u32, bool, u64)> = got
        .iter()
        .filter(|p| p.kind == MediaKind::Video)
        .map(|p| {
            let key = wishd::core::is_keyframe_start(wishd::core::CodecKind::H264, &p.payload);
            (p.at, p.timestamp, key, p.seq)
        })
        .collect();
    let before: Vec<(Instant, u32)> = video
        .iter()
        .filter(|v| v.0 < stalled_at)
        .map(|v| (v.0, v.1))
        .collect();
    let (t0, ts0) = before[0];
    let base_late = lateness(&before, t0, ts0)
        .iter()
        .map(|l| l.1)
        .fold(f64::INFINITY, f64::min);
    // After the worker runs again: what it sent, and how late against the clock.
    let after: Vec<(Instant, u32)> = video
        .iter()
        .filter(|v| v.0 > resumed_at)
        .map(|v| (v.0, v.1))
        .collect();
    let worst_after = lateness(&after, t0, ts0)
        .iter()
        .map(|l| l.1 - base_late)
        .fold(0.0, f64::max);
    // Decodable again: the first keyframe after the last packet the viewer missed.
    let last_gap = video
        .windows(2)
        .rposition(|w| w[1].3 > w[0].3 + 1)
        .map_or(0, |i| i + 1);
    let keyframe_after = video[last_gap..]
        .iter()
        .find(|v| v.2)
        .map(|v| v.0.saturating_duration_since(resumed_at));
    let stale = counters.stale_source_packets.load(Ordering::Relaxed) - stale_before;
    let asked = counters.keyframes_asked_after_drops.load(Ordering::Relaxed);
    println!(
        "worker 1 blocked for 3 s: {stale} stale packets dropped, {asked} keyframe requests for \
         them; the viewer's first keyframe {} ms after the worker ran again, its video then at \
         most {:.0} ms later than before the stall (forward_max_delay 200 ms)",
        keyframe_after.map_or("never".into(), |d| d.as_millis().to_string()),
        worst_after * 1e3,
    );
    assert!(
        stale > 0,
        "the worker fell behind and dropped what waited too long"
    );
    assert!(asked > 0, "and asked for a keyframe");
    let keyframe_after = keyframe_after.expect("a keyframe after the stall");
    assert!(
        keyframe_after < Duration::from_secs(1),
        "keyframe {keyframe_after:?} after"
    );
    assert!(
        after.len() > 50,
        "{} video packets after the stall",
        after.len()
    );
    // Bounded by the age limit (plus the machine's scheduling), not by the 3 s stall:
    // without the limit the backlog would reach the viewer up to 3 s late.
    assert!(
        worst_after < 0.4,
        "video {worst_after:.3} s late after the stall"
    );
    server.shutdown().await;
}
