//! End-to-end media through a real wishd: str0m publishers and viewers on loopback.
//! Each test names the behaviour it proves.

mod common;
mod interop;

use std::time::{Duration, Instant};

use wishd::client::media::{check_filler, decode_marker};
use wishd::client::{PublisherOptions, ReceivedPacket, VideoCodec, ViewerOptions, WhepViewer};
use wishd::config::ForwardHold;
use wishd::core::{MediaKind, hold};

use common::{publish, view};

fn of(kind: MediaKind, got: &[ReceivedPacket]) -> Vec<ReceivedPacket> {
    got.iter().filter(|p| p.kind == kind).cloned().collect()
}

fn count(kind: MediaKind, got: &[ReceivedPacket]) -> usize {
    got.iter().filter(|p| p.kind == kind).count()
}

/// Every packet is intact (marker and filler), sequence numbers have no gap and
/// the publisher's packets come in the order it sent them.
fn assert_intact_and_in_order(packets: &[ReceivedPacket], what: &str) {
    assert!(!packets.is_empty(), "{what}: no packets");
    let mut last: Option<(u64, u16)> = None;
    for (i, p) in packets.iter().enumerate() {
        let m =
            decode_marker(&p.payload).unwrap_or_else(|| panic!("{what}: packet {i} has no marker"));
        assert!(
            check_filler(&p.payload),
            "{what}: packet {i} payload corrupted"
        );
        if i > 0 {
            assert_eq!(
                p.seq,
                packets[i - 1].seq + 1,
                "{what}: sequence gap or reorder at packet {i}"
            );
        }
        if let Some(prev) = last {
            assert!(
                (m.frame, m.index) > prev,
                "{what}: out of order at packet {i}"
            );
        }
        last = Some((m.frame, m.index));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_viewers_receive_the_publishers_h264_and_opus_intact_and_in_order() {
    let server = common::start().await;
    let base = server.base_url();
    let publisher = publish(&base, "cam", PublisherOptions::default()).await;
    let mut viewers = Vec::new();
    for _ in 0..5 {
        viewers.push(view(&base, "cam").await);
    }
    for v in &viewers {
        v.wait_for(Duration::from_secs(10), |p| {
            count(MediaKind::Video, p) > 120 && count(MediaKind::Audio, p) > 60
        })
        .await
        .expect("media reaches every viewer");
    }
    for (n, v) in viewers.iter().enumerate() {
        let got = v.received();
        let video = of(MediaKind::Video, &got);
        let audio = of(MediaKind::Audio, &got);
        assert_intact_and_in_order(&video, &format!("viewer {n} video"));
        assert_intact_and_in_order(&audio, &format!("viewer {n} audio"));
        // A viewer starts on a keyframe: the first video packet is the STAP-A with SPS.
        assert!(
            wishd::core::is_keyframe_start(wishd::core::CodecKind::H264, &video[0].payload),
            "viewer {n} did not start on a keyframe"
        );
    }
    let stats = publisher.stats();
    assert!(stats.video_packets_sent > 0 && stats.audio_packets_sent > 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streams_stay_isolated() {
    let server = common::start().await;
    let base = server.base_url();
    let _a = publish(
        &base,
        "a",
        PublisherOptions {
            video: Some(VideoCodec::H264),
            ..PublisherOptions::default()
        },
    )
    .await;
    let _b = publish(
        &base,
        "b",
        PublisherOptions {
            video: Some(VideoCodec::Vp8),
            audio: false,
            ..PublisherOptions::default()
        },
    )
    .await;
    let va = view(&base, "a").await;
    let vb = view(&base, "b").await;
    for v in [&va, &vb] {
        v.wait_for(Duration::from_secs(10), |p| count(MediaKind::Video, p) > 60)
            .await
            .expect("video arrives");
    }
    // Stream b has no audio: its viewer must never get any, and its video is VP8.
    let gb = vb.received();
    assert_eq!(
        count(MediaKind::Audio, &gb),
        0,
        "audio leaked into stream b"
    );
    assert!(vb.answer_sdp().contains("VP8") && !vb.answer_sdp().contains("H264"));
    assert!(va.answer_sdp().contains("H264") && !va.answer_sdp().contains("VP8"));
    let ga = va.received();
    assert!(count(MediaKind::Audio, &ga) > 0);
    assert_intact_and_in_order(&of(MediaKind::Video, &ga), "stream a video");
    assert_intact_and_in_order(&of(MediaKind::Video, &gb), "stream b video");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_publisher_reaches_viewers_starting_on_a_keyframe() {
    let server = common::start().await;
    let base = server.base_url();
    let _p = publish(
        &base,
        "vp8",
        PublisherOptions {
            video: Some(VideoCodec::Vp8),
            ..PublisherOptions::default()
        },
    )
    .await;
    let v = view(&base, "vp8").await;
    v.wait_for(Duration::from_secs(10), |p| count(MediaKind::Video, p) > 60)
        .await
        .expect("vp8 arrives");
    let video = of(MediaKind::Video, &v.received());
    assert!(wishd::core::is_keyframe_start(
        wishd::core::CodecKind::Vp8,
        &video[0].payload
    ));
    assert_intact_and_in_order(&video, "vp8 video");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_viewer_causes_a_keyframe_request_and_starts_long_before_the_next_keyframe() {
    let server = common::start().await;
    let base = server.base_url();
    // Keyframes every 60 s: only a PLI can give a late viewer a picture quickly.
    let publisher = publish(
        &base,
        "late",
        PublisherOptions {
            keyframe_interval: Duration::from_secs(60),
            ..PublisherOptions::default()
        },
    )
    .await;
    let early = view(&base, "late").await;
    early
        .wait_for(Duration::from_secs(10), |p| count(MediaKind::Video, p) > 30)
        .await
        .expect("early viewer gets video");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let requests_before = publisher.stats().keyframe_requests.len();
    let late = view(&base, "late").await;
    let joined = Instant::now();
    late.wait_for(Duration::from_secs(5), |p| count(MediaKind::Video, p) > 0)
        .await
        .expect("late viewer gets video within seconds, not at the next 60 s keyframe");
    let requests = publisher.stats().keyframe_requests;
    assert!(
        requests.len() > requests_before,
        "no keyframe request reached the publisher"
    );
    let pli_at = requests[requests_before];
    let first = of(MediaKind::Video, &late.received())[0].clone();
    assert!(wishd::core::is_keyframe_start(
        wishd::core::CodecKind::H264,
        &first.payload
    ));
    println!(
        "late join: PLI reached publisher {:?} after the viewer connected; first keyframe packet {:?} after",
        pli_at.saturating_duration_since(joined),
        first.at.saturating_duration_since(joined)
    );
    // The early viewer was not disturbed: its stream stayed gap-free.
    assert_intact_and_in_order(
        &of(MediaKind::Video, &early.received()),
        "early viewer video",
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_of_viewers_joining_together_are_coalesced() {
    let server = common::start().await;
    let base = server.base_url();
    let publisher = publish(
        &base,
        "burst",
        PublisherOptions {
            keyframe_interval: Duration::from_secs(60),
            // Not answering PLIs keeps the viewers waiting, so every one of them asks.
            answer_keyframe_requests: false,
            ..PublisherOptions::default()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = publisher.stats().keyframe_requests.len();
    let mut viewers = Vec::new();
    for _ in 0..6 {
        viewers.push(
            WhepViewer::connect(&format!("{base}/whep/burst"), ViewerOptions::default())
                .await
                .unwrap(),
        );
    }
    for v in &viewers {
        v.wait_connected(common::CONNECT).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = publisher.stats().keyframe_requests.len();
    // Six joins within a few hundred ms: at most two requests (one at once, one at the
    // end of the 500 ms window), not six.
    assert!(after > before, "no keyframe request at all");
    assert!(
        after - before <= 2,
        "{} requests for 6 joins",
        after - before
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_returning_within_grace_resumes_media_to_the_same_viewers_seamlessly() {
    let server = common::start().await;
    let base = server.base_url();
    let first = publish(&base, "re", PublisherOptions::default()).await;
    let viewer = view(&base, "re").await;
    viewer
        .wait_for(Duration::from_secs(10), |p| count(MediaKind::Video, p) > 60)
        .await
        .unwrap();
    assert_eq!(first.delete().await.unwrap(), 200);
    let before = viewer.received_count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _second = publish(&base, "re", PublisherOptions::default()).await;
    viewer
        .wait_for(Duration::from_secs(10), |p| p.len() > before + 200)
        .await
        .expect("media resumes to the same viewer connection");
    assert!(viewer.is_connected());
    let got = viewer.received();
    for kind in [MediaKind::Video, MediaKind::Audio] {
        let pk = of(kind, &got);
        for w in pk.windows(2) {
            assert_eq!(
                w[1].seq,
                w[0].seq + 1,
                "{kind:?} sequence not continuous across the switch"
            );
        }
        // The second publisher's frame numbers start again from 0: its media arrived.
        let frames: Vec<u64> = pk
            .iter()
            .filter_map(|p| decode_marker(&p.payload))
            .map(|m| m.frame)
            .collect();
        assert!(
            frames.windows(2).any(|w| w[1] < w[0]),
            "{kind:?}: second publisher's media never arrived"
        );
    }
    let video = of(MediaKind::Video, &got);
    let switch = video
        .windows(2)
        .position(|w| {
            decode_marker(&w[1].payload).map(|m| m.frame)
                < decode_marker(&w[0].payload).map(|m| m.frame)
        })
        .unwrap();
    assert!(
        wishd::core::is_keyframe_start(wishd::core::CodecKind::H264, &video[switch + 1].payload),
        "after the switch the viewer must restart on a keyframe"
    );
    let dt = video[switch + 1]
        .timestamp
        .wrapping_sub(video[switch].timestamp);
    assert!(
        dt > 0 && dt < 90_000 * 5,
        "timestamp jump across the switch: {dt}"
    );
    server.shutdown().await;
}

/// A publisher that returns within the grace period with another set of tracks: its
/// viewers keep what it still sends; a viewer that offered audio to the video-only
/// stream (answered inactive) is closed when audio comes back, so its player joins
/// again and gets it; a viewer that had audio all along keeps its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_returning_with_other_tracks_keeps_its_viewers_or_lets_them_rejoin() {
    let server = common::start().await;
    let base = server.base_url();
    let video_only = || PublisherOptions {
        audio: false,
        ..PublisherOptions::default()
    };
    let first = publish(&base, "tracks", PublisherOptions::default()).await;
    let had_audio = view(&base, "tracks").await;
    had_audio
        .wait_for(Duration::from_secs(10), |p| count(MediaKind::Audio, p) > 20)
        .await
        .expect("audio arrives");
    first.delete().await.unwrap();

    // Back without audio: the viewer stays and its video resumes.
    let second = publish(&base, "tracks", video_only()).await;
    let before = count(MediaKind::Video, &had_audio.received());
    had_audio
        .wait_for(Duration::from_secs(10), |p| {
            count(MediaKind::Video, p) > before + 60
        })
        .await
        .expect("video resumes to the viewer that had audio");
    let lacked_audio = view(&base, "tracks").await;
    assert_eq!(
        answer_directions(lacked_audio.answer_sdp())[0],
        ("audio".to_owned(), "inactive")
    );
    lacked_audio
        .wait_for(Duration::from_secs(10), |p| count(MediaKind::Video, p) > 30)
        .await
        .expect("video reaches the viewer that joined the video-only stream");
    second.delete().await.unwrap();

    // Back with audio: the viewer that lacked it is closed to join again.
    let _third = publish(&base, "tracks", PublisherOptions::default()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while lacked_audio.is_connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !lacked_audio.is_connected(),
        "the viewer without audio was not closed"
    );
    let audio_before = count(MediaKind::Audio, &had_audio.received());
    had_audio
        .wait_for(Duration::from_secs(10), |p| {
            count(MediaKind::Audio, p) > audio_before + 20
        })
        .await
        .expect("audio resumes to the viewer that had it");
    assert!(had_audio.is_connected());
    let again = view(&base, "tracks").await;
    again
        .wait_for(Duration::from_secs(10), |p| count(MediaKind::Audio, p) > 20)
        .await
        .expect("a viewer joining again gets audio");
    assert_eq!(
        common::metric(
            &base,
            "wishd_sessions_ended_total{reason=\"tracks-changed\"}"
        )
        .await,
        1.0
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_are_closed_when_the_grace_period_ends_without_a_publisher() {
    let server = common::start_with(|c| c.publisher_grace = Duration::from_millis(800)).await;
    let base = server.base_url();
    let p = publish(&base, "gone", PublisherOptions::default()).await;
    let v = view(&base, "gone").await;
    v.wait_for(Duration::from_secs(10), |p| !p.is_empty())
        .await
        .unwrap();
    p.delete().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.directory().counts().viewers > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        server.directory().counts().viewers,
        0,
        "viewer outlived the grace period"
    );
    assert_eq!(server.directory().counts().streams, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_that_vanishes_without_delete_is_dropped_after_the_ice_timeout() {
    let server = common::start_with(|c| c.ice_timeout = Duration::from_secs(2)).await;
    let base = server.base_url();
    let p = publish(&base, "crash", PublisherOptions::default()).await;
    assert_eq!(server.directory().counts().publishers, 1);
    p.abort();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.directory().counts().publishers > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        server.directory().counts().publishers,
        0,
        "dead publisher kept"
    );
    // The stream is free again for a new publisher.
    let _again = publish(&base, "crash", PublisherOptions::default()).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_own_keyframe_request_goes_upstream() {
    let server = common::start().await;
    let base = server.base_url();
    let publisher = publish(
        &base,
        "pli",
        PublisherOptions {
            keyframe_interval: Duration::from_secs(60),
            ..PublisherOptions::default()
        },
    )
    .await;
    let v = view(&base, "pli").await;
    v.wait_for(Duration::from_secs(10), |p| count(MediaKind::Video, p) > 10)
        .await
        .unwrap();
    // Past the coalescing window of the join request.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = publisher.stats().keyframe_requests.len();
    let keyframes_before = publisher.stats().keyframes_sent;
    v.request_keyframe();
    let deadline = Instant::now() + Duration::from_secs(3);
    while publisher.stats().keyframe_requests.len() == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        publisher.stats().keyframe_requests.len() > before,
        "the viewer's PLI did not reach the publisher"
    );
    // The publisher's answering keyframe reaches the viewer.
    v.wait_for(Duration::from_secs(3), |p| {
        p.iter()
            .filter(|p| p.kind == MediaKind::Video)
            .filter(|p| wishd::core::is_keyframe_start(wishd::core::CodecKind::H264, &p.payload))
            .count()
            >= 2
    })
    .await
    .expect("second keyframe arrives");
    assert!(publisher.stats().keyframes_sent > keyframes_before);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_stream_serves_a_viewer_that_offers_audio_and_video() {
    let server = common::start().await;
    let base = server.base_url();
    let _p = publish(
        &base,
        "radio",
        PublisherOptions {
            video: None,
            ..PublisherOptions::default()
        },
    )
    .await;
    let v = view(&base, "radio").await;
    v.wait_for(Duration::from_secs(10), |p| count(MediaKind::Audio, p) > 50)
        .await
        .expect("audio arrives");
    assert_eq!(count(MediaKind::Video, &v.received()), 0);
    assert!(v.answer_sdp().contains("opus"));
    // The video m-line stays bundled, inactive: browsers refuse an answer that
    // rejects a bundled m-line with port 0.
    assert_eq!(
        answer_directions(v.answer_sdp()),
        [("audio", "sendonly"), ("video", "inactive")].map(|(m, d)| (m.to_owned(), d))
    );
    assert_intact_and_in_order(&of(MediaKind::Audio, &v.received()), "audio-only stream");
    server.shutdown().await;
}

/// Each m-section of an answer as (media, direction), after checking that none is
/// rejected (port 0) and that the BUNDLE group lists every mid.
fn answer_directions(answer: &str) -> Vec<(String, &'static str)> {
    let lines = wishd::sdp::sdp_lines(answer);
    let mut mids = Vec::new();
    let mut out = Vec::new();
    for section in wishd::sdp::sections(&lines).skip(1) {
        let mut m = section[0].split(' ');
        let media = m.next().unwrap_or("").trim_start_matches("m=");
        assert_ne!(m.next(), Some("0"), "a rejected m-line:\n{answer}");
        let find = |p: &str| section.iter().find_map(|l| l.strip_prefix(p));
        mids.push(find("a=mid:").unwrap_or("?"));
        let dir = ["sendonly", "recvonly", "sendrecv", "inactive"]
            .into_iter()
            .find(|d| section.iter().any(|l| l.strip_prefix("a=") == Some(*d)))
            .unwrap_or("sendrecv");
        out.push((media.to_owned(), dir));
    }
    let bundle = format!("a=group:BUNDLE {}", mids.join(" "));
    assert!(
        lines.contains(&bundle.as_str()),
        "expected {bundle}:\n{answer}"
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_only_stream_answers_a_viewers_audio_inactive_and_bundled() {
    let server = common::start().await;
    let base = server.base_url();
    let publisher = publish(
        &base,
        "silent-cam",
        PublisherOptions {
            audio: false,
            ..PublisherOptions::default()
        },
    )
    .await;
    // The publisher's own answer: one video m-line, received.
    assert_eq!(
        answer_directions(publisher.answer_sdp()),
        [("video".to_owned(), "recvonly")]
    );
    let v = view(&base, "silent-cam").await;
    assert_eq!(
        answer_directions(v.answer_sdp()),
        [("audio", "inactive"), ("video", "sendonly")].map(|(m, d)| (m.to_owned(), d))
    );
    v.wait_for(Duration::from_secs(10), |p| count(MediaKind::Video, p) > 50)
        .await
        .expect("video arrives");
    assert_eq!(count(MediaKind::Audio, &v.received()), 0);
    server.shutdown().await;
}

/// FFmpeg's WHIP muxer labels x264's Constrained Baseline output Baseline (`42001e`);
/// Firefox offers only Constrained Baseline (`42e01f`). A viewer like that plays such a
/// stream: its answer names the profile and payload type it offered, and its video
/// starts SPS, PPS, IDR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constrained_baseline_only_viewer_plays_a_stream_labelled_baseline() {
    let server = common::start().await;
    let base = server.base_url();
    let publisher = publish(
        &base,
        "ffmpeg-like",
        PublisherOptions {
            h264_profile_level_id: 0x42001e,
            ..PublisherOptions::default()
        },
    )
    .await;
    assert!(
        publisher.answer_sdp().contains("profile-level-id=42001e"),
        "{}",
        publisher.answer_sdp()
    );
    let opts = ViewerOptions {
        video_codecs: vec![VideoCodec::H264],
        h264_profile_level_ids: vec![0x42e01f],
        ..ViewerOptions::default()
    };
    let viewer = WhepViewer::connect(&format!("{base}/whep/ffmpeg-like"), opts)
        .await
        .expect("a Constrained Baseline viewer is answered (not 422)");
    let offer = viewer.offer_sdp().to_owned();
    assert!(
        offer.contains("profile-level-id=42e01f") && !offer.contains("42001"),
        "the viewer offers only Constrained Baseline: {offer}"
    );
    let answer = viewer.answer_sdp().to_owned();
    assert!(answer.contains("a=rtpmap:108 H264/90000"), "{answer}");
    assert!(answer.contains("profile-level-id=42e01f"), "{answer}");
    assert!(!answer.contains("42001e"), "{answer}");
    assert_eq!(viewer.video_codec(), Some(VideoCodec::H264));
    viewer
        .wait_connected(common::CONNECT)
        .await
        .expect("viewer connects");
    viewer
        .wait_for(Duration::from_secs(10), |p| {
            p.iter()
                .filter(|p| p.kind == MediaKind::Video && p.marker)
                .count()
                >= 5
        })
        .await
        .expect("video reaches the viewer");
    let video = of(MediaKind::Video, &viewer.received());
    assert!(video.iter().all(|p| p.pt == 108), "the viewer's own PT");
    interop::assert_starts_sps_pps_idr(&video, "Constrained Baseline viewer");
    assert_intact_and_in_order(&video, "Constrained Baseline viewer");
    server.shutdown().await;
}

/// A viewer losing every 20th RTP datagram on arrival: its stack NACKs each video gap
/// and the server resends the packet, so the video it ends up with has no hole (audio
/// is not resent: a late audio packet is useless to a player).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_egress_resends_every_video_packet_a_lossy_viewer_nacks() {
    let server = common::start().await;
    let base = server.base_url();
    let _publisher = publish(&base, "lossy", PublisherOptions::default()).await;
    let opts = ViewerOptions {
        lose_every: 20,
        ..ViewerOptions::default()
    };
    let viewer = WhepViewer::connect(&format!("{base}/whep/lossy"), opts)
        .await
        .expect("viewer connects");
    viewer
        .wait_for(Duration::from_secs(20), |p| {
            count(MediaKind::Video, p) > 400
        })
        .await
        .expect("video arrives");
    // Resends of the last losses may still be on their way: leave the newest out.
    let video = of(MediaKind::Video, &viewer.received());
    let late = video.windows(2).filter(|w| w[1].seq < w[0].seq).count();
    let seqs: Vec<u64> = video.iter().map(|p| p.seq).collect();
    let missing = common::missing_seqs(&seqs, 50);
    assert!(
        missing.is_empty(),
        "video packets never resent: {missing:?}"
    );
    assert!(
        late >= 5,
        "only {late} packets came back late: was anything lost?"
    );
    for p in &video {
        assert!(check_filler(&p.payload), "a resent payload is corrupted");
    }
    let resent = common::metric(&base, "wishd_packets_resent_total").await;
    assert!(resent >= late as f64, "{resent} < {late}");
    server.shutdown().await;
}

/// Publishes Opus alone as `stream` and plays it; returns both peers and the UDP
/// datagrams the server sent and the send calls that carried them while 100 audio
/// packets reached the viewer (counted after the connection's own STUN and DTLS,
/// which go one by one).
async fn audio_sends_per_call(
    base: &str,
    stream: &str,
) -> (wishd::client::WhipPublisher, WhepViewer, f64, f64) {
    let opts = PublisherOptions {
        video: None,
        ..PublisherOptions::default()
    };
    let publisher = publish(base, stream, opts).await;
    let viewer = view(base, stream).await;
    let (datagrams0, calls0) = (
        common::metric(base, "wishd_udp_datagrams_out_total").await,
        common::metric(base, "wishd_udp_send_calls_total").await,
    );
    let start = count(MediaKind::Audio, &viewer.received());
    viewer
        .wait_for(Duration::from_secs(10), |p| {
            count(MediaKind::Audio, p) >= start + 100
        })
        .await
        .expect("audio reaches the viewer");
    // The counters are flushed every 100 ms.
    tokio::time::sleep(Duration::from_millis(250)).await;
    let datagrams = common::metric(base, "wishd_udp_datagrams_out_total").await - datagrams0;
    let calls = common::metric(base, "wishd_udp_send_calls_total").await - calls0;
    (publisher, viewer, datagrams, calls)
}

/// With `forward_hold = "auto"`, a worker that is mostly idle holds nothing: each
/// packet leaves when it arrives. The workers export their load and hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_automatic_hold_holds_nothing_while_the_workers_are_idle() {
    let server = common::start_with(|c| c.forward_hold = ForwardHold::Auto).await;
    let base = server.base_url();
    let (_publisher, viewer, datagrams, calls) = audio_sends_per_call(&base, "auto").await;
    assert!(
        datagrams < 1.2 * calls,
        "{datagrams} datagrams in {calls} send calls: packets were held"
    );
    let text = wishd::client::http_request("GET", &format!("{base}/metrics"), &[], Vec::new())
        .await
        .expect("metrics")
        .text();
    let gauges = |name: &str| -> Vec<f64> {
        text.lines()
            .filter(|l| l.starts_with(&format!("{name}{{worker=")))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    };
    let (busy, holds) = (
        gauges("wishd_worker_busy_ratio"),
        gauges("wishd_forward_hold_seconds"),
    );
    assert!(!busy.is_empty() && busy.len() == holds.len(), "{text}");
    assert!(holds.iter().all(|&h| h == 0.0), "holds {holds:?}");
    // Forwarding one Opus stream keeps a worker busy a little, far from the hold's
    // threshold.
    assert!(
        busy.iter().any(|&b| b > 0.0) && busy.iter().all(|&b| b < hold::LOAD_LOW),
        "busy {busy:?}"
    );
    assert_intact_and_in_order(&of(MediaKind::Audio, &viewer.received()), "audio");
    server.shutdown().await;
}

/// With `forward_hold`, a worker writes what arrived during the hold together: a
/// paced source's packets (here Opus, one every 20 ms) leave several per system
/// call, each a little later, and all of them arrive intact and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_hold_sends_a_paced_sources_packets_together_and_loses_none() {
    let hold = Duration::from_millis(40);
    let server = common::start_with(|c| c.forward_hold = ForwardHold::Fixed(hold)).await;
    let base = server.base_url();
    let (_publisher, viewer, datagrams, calls) = audio_sends_per_call(&base, "held").await;
    // 50 packets a second held 40 ms: about two per call, sender reports and STUN
    // answers alone. Without the hold every packet is a call of its own.
    assert!(
        datagrams >= 1.5 * calls,
        "{datagrams} datagrams in {calls} send calls"
    );
    // The hold shows in the forwarding latency: every packet waits part of it.
    let (sum, n) = (
        common::metric(&base, "wishd_forward_latency_seconds_sum").await,
        common::metric(&base, "wishd_forward_latency_seconds_count").await,
    );
    assert!(
        n > 0.0 && sum / n >= hold.as_secs_f64() / 4.0,
        "mean forwarding latency {} ms",
        1000.0 * sum / n.max(1.0)
    );
    assert_intact_and_in_order(&of(MediaKind::Audio, &viewer.received()), "held audio");
    server.shutdown().await;
}
