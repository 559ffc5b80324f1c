//! Audio/video sync through wishd for a WHIP publisher: the publisher's RTCP sender
//! reports (which str0m parses on the publisher's session) decide the wallclock of
//! each packet written to viewers, so the viewers' sender reports carry the
//! publisher's audio/video relationship instead of arrival times.

mod common;

use std::time::{Duration, Instant, SystemTime};

use wishd::client::{
    PublisherOptions, ReceivedSenderReport, ViewerOptions, WhepViewer, WhipPublisher,
};
use wishd::core::MediaKind;

/// The publisher stamps its audio as captured this long before it sends it: by
/// arrival, audio and video are simultaneous; by its sender reports, audio is
/// 200 ms ahead of the video that arrives with it.
const LEAD: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publishers_audio_video_offset_reaches_viewers_through_sender_reports() {
    let skew = viewer_skew("lipsync", false).await;
    assert_publishers_offset(skew, "the viewer");
}

/// A publisher whose process stalls now and then (a busy machine) drops the frames
/// it could not capture, as a camera does; the frames after a stall keep their RTP
/// time on its wall clock, so the offset its reports give does not drift by the
/// stalls. On one runtime thread, a task that blocks it stalls the publisher (and
/// the viewer); wishd's media workers run on their own threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_stalling_publisher_keeps_its_audio_video_offset() {
    let skew = viewer_skew("stalls", true).await;
    assert_publishers_offset(skew, "after ten 39 ms stalls the viewer");
}

/// The viewer's audio is [`LEAD`] ahead of its video, within 40 ms.
fn assert_publishers_offset(skew: f64, who: &str) {
    assert!(
        (skew + LEAD.as_millis() as f64).abs() < 40.0,
        "{who} sees audio {skew:+.1} ms off video; the publisher says -200 ms"
    );
}

/// Publishes audio captured [`LEAD`] before video to `stream`, watches it, and
/// returns how far the viewer's sender reports put the audio from the video that
/// arrives with it, in ms. With `stall`, the runtime thread blocks for 39 ms every
/// 300 ms, ten times, from 3 s on.
async fn viewer_skew(stream: &str, stall: bool) -> f64 {
    let server = common::start().await;
    let base = server.base_url();
    let (_publisher, viewer) = publish_and_watch(&base, stream, LEAD).await;
    if stall {
        tokio::spawn(async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            for _ in 0..10 {
                // Blocking on purpose: the runtime's one thread stops.
                std::thread::sleep(Duration::from_millis(39));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
    }
    // Audio sender reports go every 5 s each way (publisher to wishd, wishd to the
    // viewer): wait for a viewer audio report that follows the publisher's.
    let deadline = Instant::now() + Duration::from_secs(20);
    let started = Instant::now();
    loop {
        let late_audio = viewer
            .sender_reports()
            .iter()
            .any(|r| r.kind == MediaKind::Audio && r.at > started + Duration::from_secs(6));
        if late_audio || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reports = viewer.sender_reports();
    let last = |kind| -> ReceivedSenderReport {
        reports
            .iter()
            .rev()
            .find(|r| r.kind == kind)
            .copied()
            .unwrap_or_else(|| panic!("no {kind:?} sender report reached the viewer"))
    };
    let (v, a) = (last(MediaKind::Video), last(MediaKind::Audio));
    // Per packet: its wallclock by the viewer's reports minus its arrival (both on
    // the system clock). A delayed packet (the machine is busy) only makes this
    // smaller, so the largest value per kind is that kind's true offset; the
    // difference between audio and video is what a player would shift audio by.
    let (sys, inst) = (SystemTime::now(), Instant::now());
    let offsets = |kind, sr: ReceivedSenderReport, rate| -> f64 {
        let xs: Vec<f64> = viewer
            .received()
            .iter()
            .filter(|p| p.kind == kind && p.at > started + Duration::from_secs(2))
            .map(|p| {
                let w = sr.wallclock_of(p.timestamp, rate);
                let at = sys - inst.duration_since(p.at);
                match w.duration_since(at) {
                    Ok(d) => d.as_secs_f64() * 1e3,
                    Err(e) => -e.duration().as_secs_f64() * 1e3,
                }
            })
            .collect();
        assert!(xs.len() > 50, "{kind:?}: {} packets", xs.len());
        xs.iter().copied().fold(f64::MIN, f64::max)
    };
    let skew = offsets(MediaKind::Audio, a, 48_000) - offsets(MediaKind::Video, v, 90_000);
    println!(
        "WHIP A/V sync at the viewer: audio captured {skew:+.1} ms relative to video arriving with it (publisher says {} ms)",
        -(LEAD.as_millis() as i64)
    );
    server.shutdown().await;
    skew
}

/// A player syncs audio with video only within one media stream (libwebrtc's sync
/// group is the `a=msid` stream id). A receive-only offer names none, so wishd's
/// answer gives both of the viewer's tracks the stream's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_audio_and_video_are_one_media_stream() {
    let server = common::start().await;
    let base = server.base_url();
    let lead = PublisherOptions::default().audio_capture_lead;
    let (_publisher, viewer) = publish_and_watch(&base, "lips", lead).await;
    let answer = viewer.answer_sdp();
    let streams: Vec<&str> = answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=msid:"))
        .filter_map(|v| v.split(' ').next())
        .collect();
    assert_eq!(streams, ["lips", "lips"], "{answer}");
    assert!(answer.contains("a=msid-semantic: WMS lips\r\n"), "{answer}");
    server.shutdown().await;
}

/// A publisher of `stream` whose audio is captured `lead` before it is sent, and a
/// viewer of it, both connected (the viewer with wishd's answer as it is).
async fn publish_and_watch(
    base: &str,
    stream: &str,
    lead: Duration,
) -> (WhipPublisher, WhepViewer) {
    let publisher = WhipPublisher::connect(
        &format!("{base}/whip/{stream}"),
        PublisherOptions {
            audio_capture_lead: lead,
            ..PublisherOptions::default()
        },
    )
    .await
    .expect("WHIP POST");
    publisher
        .wait_connected(common::CONNECT)
        .await
        .expect("publisher connects");
    let viewer = WhepViewer::connect(&format!("{base}/whep/{stream}"), ViewerOptions::default())
        .await
        .expect("WHEP POST");
    viewer
        .wait_connected(common::CONNECT)
        .await
        .expect("viewer connects");
    (publisher, viewer)
}
