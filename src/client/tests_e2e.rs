//! End-to-end tests of the client peers against a fake ICE-lite str0m server that
//! lives in the test ([`fake_server`]).

mod fake_server;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use str0m::media::{MediaKind, Rid};

use super::media;
use super::*;
use fake_server::{Seen, VideoIn, start_fake};

#[tokio::test]
async fn publisher_reaches_fake_server() {
    let (base, seen) = start_fake().await;
    let url = format!("{base}/whip/cam1");
    let opts = PublisherOptions {
        token: Some("secret".into()),
        ..Default::default()
    };
    let publisher = WhipPublisher::connect(&url, opts).await.unwrap();
    assert_eq!(publisher.location(), format!("{url}/sess1"));
    assert_eq!(publisher.etag(), Some("\"v1\""));
    assert!(publisher.answer_sdp().contains("a=ice-lite"));
    publisher
        .wait_connected(Duration::from_secs(5))
        .await
        .unwrap();

    // Wait for the fake server's PLI to come back as a keyframe request.
    let deadline = Instant::now() + Duration::from_secs(5);
    while publisher.stats().keyframe_requests.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = publisher.stats();
    assert!(stats.connected);
    assert_eq!(stats.keyframe_requests.len(), 1, "{stats:?}");
    assert_eq!(
        stats.keyframes_sent, 2,
        "first frame plus the answer to the PLI"
    );
    assert!(stats.audio_packets_sent > 5, "{stats:?}");

    {
        let s = seen.lock().unwrap();
        let video: Vec<_> = s
            .packets
            .iter()
            .filter(|p| p.0 == MediaKind::Video)
            .collect();
        assert!(video.len() > 20, "{}", video.len());
        // Frames arrive whole and in order; the marker bit closes each frame.
        let mut expect_frame = 0;
        for (_, marker, m, _) in &video {
            let m = m.expect("video marker");
            assert_eq!(m.frame, expect_frame);
            assert_eq!(*marker, m.is_last());
            if m.is_last() {
                expect_frame += 1;
            }
        }
        assert_eq!(video.iter().filter(|p| p.3).count(), 2, "two IDRs seen");
        assert!(s.packets.iter().any(|p| p.0 == MediaKind::Audio
            && p.2.is_some_and(|m| m.kind == MediaKind::Audio)));
    }
    // Error statuses come back as values (the handle is Debug for unwrap_err).
    let err = WhipPublisher::connect(&format!("{base}/nope"), PublisherOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Status { status: 404, body } if body == "no such endpoint\n"),
        "{err}"
    );
    assert_eq!(publisher.delete().await.unwrap(), 200);
    assert_eq!(seen.lock().unwrap().deletes, 1);
}

#[tokio::test]
async fn viewer_receives_from_fake_server() {
    let (base, seen) = start_fake().await;
    let opts = ViewerOptions {
        video_codecs: vec![VideoCodec::H264],
        ..Default::default()
    };
    let viewer = WhepViewer::connect(&format!("{base}/whep/cam1"), opts)
        .await
        .unwrap();
    assert_eq!(viewer.video_codec(), Some(VideoCodec::H264));
    viewer.wait_connected(Duration::from_secs(5)).await.unwrap();
    assert!(viewer.is_connected());
    viewer
        .wait_for(Duration::from_secs(5), |p| p.len() >= 40)
        .await
        .unwrap();
    let got = viewer.received();
    let first = media::decode_marker(&got[0].payload).unwrap();
    assert_eq!((first.frame, first.index), (0, 0));
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
        assert_eq!(w[0].kind, MediaKind::Video);
        assert!(media::check_filler(&w[1].payload));
    }
    assert!(got[7].marker && !got[6].marker);
    assert!(got.iter().all(|p| p.at >= viewer.post_sent_at()));

    viewer.request_keyframe();
    let deadline = Instant::now() + Duration::from_secs(3);
    while seen.lock().unwrap().keyframe_requests == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.lock().unwrap().keyframe_requests, 1);

    // A short wait for a condition that never holds times out.
    assert!(matches!(
        viewer
            .wait_for(Duration::from_millis(50), |p| p.is_empty())
            .await,
        Err(ClientError::Timeout(_))
    ));
    assert!(format!("{viewer:?}").contains("WhepViewer"));
    let taken = viewer.take_received();
    assert!(taken.len() >= 40);
    assert!(viewer.received_count() < taken.len());
    viewer.abort();
    assert_eq!(seen.lock().unwrap().deletes, 0);
}

#[tokio::test]
async fn viewer_notices_vanished_server() {
    let (base, _seen) = start_fake().await;
    let viewer = WhepViewer::connect(&format!("{base}/whep/cam1"), ViewerOptions::default())
        .await
        .unwrap();
    viewer.wait_connected(Duration::from_secs(5)).await.unwrap();
    // The server drops the session without a word (no DTLS close).
    let r = http_request("DELETE", viewer.location(), &[], vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let t0 = Instant::now();
    while viewer.is_connected() && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("viewer noticed after {:?}", t0.elapsed());
    assert!(!viewer.is_connected());
}

/// Waits up to `timeout` for `done` to hold of what the fake server saw.
async fn wait_seen(seen: &Mutex<Seen>, timeout: Duration, done: impl Fn(&Seen) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done(&seen.lock().unwrap()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done(&seen.lock().unwrap())
}

/// The video packets per SSRC, in the order the SSRCs first arrived.
fn by_ssrc(video: &[VideoIn]) -> Vec<(u32, Vec<&VideoIn>)> {
    let mut out: Vec<(u32, Vec<&VideoIn>)> = Vec::new();
    for v in video {
        match out.iter_mut().find(|(s, _)| *s == v.ssrc) {
            Some((_, p)) => p.push(v),
            None => out.push((v.ssrc, vec![v])),
        }
    }
    out
}

/// The packets of the SSRC str0m bound to `rid`.
fn layer<'a>(streams: &'a [(u32, Vec<&'a VideoIn>)], rid: &str) -> (u32, &'a [&'a VideoIn]) {
    let rid = Rid::from(rid);
    streams
        .iter()
        .find(|(_, p)| p.iter().any(|v| v.bound == Some(rid)))
        .map(|(s, p)| (*s, p.as_slice()))
        .unwrap_or_else(|| panic!("no SSRC bound to {rid}"))
}

/// Picture size in the SPS of each keyframe of a stream.
fn keyframe_sizes(packets: &[&VideoIn]) -> Vec<Option<(u32, u32)>> {
    use crate::core::{CodecKind, frame_size};
    packets
        .iter()
        .filter_map(|v| v.head.as_deref())
        .map(|head| frame_size(CodecKind::H264, head))
        .collect()
}

fn simulcast(layers: Vec<SimulcastLayer>) -> PublisherOptions {
    PublisherOptions {
        simulcast: Some(layers),
        ..Default::default()
    }
}

/// Checks what the fake server got of `layers` in the `window` from `first` on: one
/// SSRC bound per layer, each starting with a keyframe of the layer's picture, at the
/// layer's bit rate, with sender reports on its own clock, and all carrying the same
/// pictures at the same instants on their own timestamp bases.
fn assert_layers(
    s: &Seen,
    stats: &PublisherStats,
    layers: &[SimulcastLayer],
    first: Instant,
    window: Duration,
) {
    let streams = by_ssrc(&s.video);
    assert_eq!(streams.len(), 3, "one SSRC per layer");
    let mut frame_ts = Vec::new();
    for l in layers {
        let (ssrc, packets) = layer(&streams, &l.rid);
        let rid = Rid::from(l.rid.as_str());
        assert!(packets.iter().all(|v| v.bound == Some(rid)), "{rid}");
        assert_eq!(
            packets[0].rid_ext,
            Some(rid),
            "the first packet names its layer"
        );
        let with_rid = packets.iter().filter(|v| v.rid_ext == Some(rid)).count();
        let st = stats.layer(&l.rid).expect("layer stats");
        assert_eq!(st.ssrc, Some(ssrc));
        assert!(st.packets_sent >= packets.len() as u64);

        // The layer starts with a keyframe whose SPS announces the layer's picture.
        assert!(packets[0].head.is_some(), "{rid} starts with a keyframe");
        let want = (u32::from(l.width), u32::from(l.height));
        assert_eq!(keyframe_sizes(packets)[0], Some(want), "{rid}");
        for w in packets.windows(2) {
            assert_eq!(
                w[1].seq,
                w[0].seq.wrapping_add(1),
                "{rid}: no gap, no reorder"
            );
        }

        let bytes: usize = packets
            .iter()
            .filter(|v| v.at < first + window)
            .map(|v| v.len)
            .sum();
        let bps = bytes as f64 * 8.0 / window.as_secs_f64();
        let want_bps = f64::from(l.bitrate_bps);
        eprintln!(
            "layer {rid}: SSRC {ssrc}, {:.0} kbit/s of payload (configured {:.0}), \
             RID extension on {with_rid} of {} packets",
            bps / 1e3,
            want_bps / 1e3,
            packets.len()
        );
        assert!(
            (bps - want_bps).abs() <= 0.2 * want_bps,
            "{rid}: {bps:.0} bit/s, configured {want_bps}"
        );

        // Sender reports for the layer's SSRC, on the layer's own RTP clock.
        let last_ts = packets[packets.len() - 1].ts;
        let srs: Vec<_> = s
            .video_sender_reports
            .iter()
            .filter(|(r, sr_ssrc, _)| *r == Some(rid) && *sr_ssrc == ssrc)
            .collect();
        assert!(!srs.is_empty(), "{rid}: no sender report");
        for (_, _, rtp) in srs {
            let off = rtp.wrapping_sub(last_ts) as i32;
            assert!(
                off.abs() < 4 * 90_000,
                "{rid}: SR at {rtp}, packets at {last_ts}"
            );
        }

        let ts: std::collections::HashMap<u64, u32> = packets
            .iter()
            .filter_map(|v| v.marker.map(|m| (m.frame, v.ts)))
            .collect();
        frame_ts.push(ts);
    }
    // The layers carry the same pictures, captured at the same instants, each on its
    // own timestamp base.
    let bases: Vec<u32> = frame_ts.iter().map(|t| t[&0]).collect();
    assert!(bases[0] != bases[1] && bases[1] != bases[2] && bases[0] != bases[2]);
    let mut common = 0;
    for (frame, ts) in &frame_ts[0] {
        let rel = ts.wrapping_sub(bases[0]);
        if frame_ts[1..].iter().all(|t| t.contains_key(frame)) {
            common += 1;
            for (t, base) in frame_ts[1..].iter().zip(&bases[1..]) {
                assert_eq!(t[frame].wrapping_sub(*base), rel, "frame {frame}");
            }
        }
    }
    assert!(common >= 85, "{common} frames on every layer");
}

#[tokio::test]
async fn simulcast_layers_arrive_on_their_own_ssrcs_with_their_sizes_and_bit_rates() {
    let (base, seen) = start_fake().await;
    seen.lock().unwrap().quiet = true;
    let layers = SimulcastLayer::three();
    let publisher = WhipPublisher::connect(&format!("{base}/whip/cam1"), simulcast(layers.clone()))
        .await
        .unwrap();
    assert!(
        publisher.answer_sdp().contains("a=simulcast:recv q;h;f"),
        "{}",
        publisher.answer_sdp()
    );
    publisher
        .wait_connected(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(wait_seen(&seen, Duration::from_secs(5), |s| !s.video.is_empty()).await);
    // Three seconds of media from the first packet on, and time for the last to land.
    let window = Duration::from_secs(3);
    let first = seen.lock().unwrap().video[0].at;
    tokio::time::sleep_until((first + window + Duration::from_millis(300)).into()).await;
    let stats = publisher.stats();

    assert_layers(&seen.lock().unwrap(), &stats, &layers, first, window);
    assert_eq!(stats.keyframe_requests.len(), 0);
    assert_eq!(publisher.delete().await.unwrap(), 200);
}

#[tokio::test]
async fn a_pli_on_one_layer_brings_a_keyframe_on_that_layer_only() {
    let (base, seen) = start_fake().await;
    seen.lock().unwrap().quiet = true;
    let opts = PublisherOptions {
        audio: false,
        // No periodic keyframe during the test.
        keyframe_interval: Duration::from_secs(60),
        ..simulcast(SimulcastLayer::three())
    };
    let publisher = WhipPublisher::connect(&format!("{base}/whip/cam1"), opts)
        .await
        .unwrap();
    publisher
        .wait_connected(Duration::from_secs(5))
        .await
        .unwrap();
    let all_bound = |s: &Seen| {
        ["q", "h", "f"]
            .iter()
            .all(|r| s.video.iter().any(|v| v.bound == Some(Rid::from(*r))))
    };
    assert!(wait_seen(&seen, Duration::from_secs(5), all_bound).await);
    tokio::time::sleep(Duration::from_millis(300)).await;

    seen.lock().unwrap().pli_for.push(Rid::from("h"));
    let h = Rid::from("h");
    let second_h_keyframe = |s: &Seen| {
        s.video
            .iter()
            .filter(|v| v.bound == Some(h) && v.head.is_some())
            .count()
            >= 2
    };
    assert!(wait_seen(&seen, Duration::from_secs(3), second_h_keyframe).await);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stats = publisher.stats();
    let s = seen.lock().unwrap();
    let streams = by_ssrc(&s.video);
    for (rid, keyframes, requests) in [("q", 1, 0), ("h", 2, 1), ("f", 1, 0)] {
        let (_, packets) = layer(&streams, rid);
        let sizes = keyframe_sizes(packets);
        assert_eq!(sizes.len(), keyframes, "{rid}: keyframes seen");
        let idrs = packets.iter().filter(|v| v.keyframe).count();
        assert_eq!(idrs, keyframes, "{rid}: IDRs seen");
        let st = stats.layer(rid).unwrap();
        assert_eq!(st.keyframes_sent, keyframes as u64, "{rid}: {st:?}");
        assert_eq!(st.keyframe_requests, requests, "{rid}: {st:?}");
    }
    let (_, h_packets) = layer(&streams, "h");
    assert_eq!(keyframe_sizes(h_packets)[1], Some((640, 360)));
    assert_eq!(stats.keyframe_requests.len(), 1);
    assert_eq!(stats.keyframes_sent, 4);
}

#[tokio::test]
async fn a_declined_simulcast_offer_sends_the_top_layer_as_one_encoding() {
    let (base, seen) = start_fake().await;
    seen.lock().unwrap().quiet = true;
    let url = format!("{base}/whip/declined/cam1");
    let publisher = WhipPublisher::connect(&url, simulcast(SimulcastLayer::three()))
        .await
        .unwrap();
    assert!(publisher.offer_sdp().contains("a=simulcast:send q;h;f"));
    assert!(!publisher.answer_sdp().contains("a=simulcast"));
    publisher
        .wait_connected(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(wait_seen(&seen, Duration::from_secs(5), |s| s.video.len() > 100).await);

    let stats = publisher.stats();
    assert!(stats.layers.is_empty(), "{stats:?}");
    let s = seen.lock().unwrap();
    let streams = by_ssrc(&s.video);
    assert_eq!(streams.len(), 1, "one encoding");
    let packets = &streams[0].1;
    assert!(
        packets
            .iter()
            .all(|v| v.rid_ext.is_none() && v.bound.is_none())
    );
    assert_eq!(keyframe_sizes(packets)[0], Some((1280, 720)));
}

#[tokio::test]
async fn only_the_layers_the_answer_accepts_are_sent() {
    let (base, seen) = start_fake().await;
    seen.lock().unwrap().quiet = true;
    let url = format!("{base}/whip/partial/cam1");
    let publisher = WhipPublisher::connect(&url, simulcast(SimulcastLayer::three()))
        .await
        .unwrap();
    assert!(
        publisher.answer_sdp().contains("a=simulcast:recv q;f"),
        "{}",
        publisher.answer_sdp()
    );
    publisher
        .wait_connected(Duration::from_secs(5))
        .await
        .unwrap();
    assert!(wait_seen(&seen, Duration::from_secs(5), |s| s.video.len() > 100).await);

    let stats = publisher.stats();
    let rids: Vec<&str> = stats.layers.iter().map(|l| l.rid.as_str()).collect();
    assert_eq!(rids, ["q", "f"]);
    let s = seen.lock().unwrap();
    let streams = by_ssrc(&s.video);
    assert_eq!(streams.len(), 2);
    assert_eq!(keyframe_sizes(layer(&streams, "q").1)[0], Some((320, 180)));
    assert_eq!(keyframe_sizes(layer(&streams, "f").1)[0], Some((1280, 720)));
}
