//! H.265 passes through (RFC 7798 payloads): from an RTP camera (Debian's ffmpeg with
//! libx265) and from a WHIP publisher to WHEP viewers that offer H.265, starting at a
//! keyframe (a VPS, SPS or the first slice of an IRAP picture), while a viewer that
//! cannot take H.265 gets a 422 naming it.

mod common;
mod interop;

use std::time::Duration;

use wishd::client::{
    ClientError, PublisherOptions, ReceivedPacket, VideoCodec, ViewerOptions, WhepViewer,
    WhipPublisher,
};
use wishd::config::{RtpEntry, RtpMediumEntry};
use wishd::core::{CodecKind, is_keyframe_start};

fn viewer(codecs: &[VideoCodec], audio: bool) -> ViewerOptions {
    ViewerOptions {
        audio,
        video_codecs: codecs.to_vec(),
        ..ViewerOptions::default()
    }
}

/// A viewer whose offer cannot take H.265 gets 422, and the reason names it.
async fn assert_refused_naming_h265(url: &str, opts: ViewerOptions) {
    match WhepViewer::connect(url, opts).await {
        Err(ClientError::Status { status: 422, body }) => {
            assert!(body.contains("H265"), "422 without naming H265: {body}")
        }
        Err(e) => panic!("expected 422 naming H265, got {e}"),
        Ok(_) => panic!("expected 422 naming H265, got a session"),
    }
}

/// Connects an H.265 viewer of `url` and returns its first `n` video packets.
async fn first_h265_packets(url: &str, audio: bool, n: usize) -> Vec<ReceivedPacket> {
    let v = WhepViewer::connect(url, viewer(&[VideoCodec::H265], audio))
        .await
        .expect("WHEP POST");
    v.wait_connected(common::CONNECT)
        .await
        .expect("viewer connects");
    assert_eq!(v.video_codec(), Some(VideoCodec::H265));
    v.wait_for(Duration::from_secs(15), |p| {
        p.iter()
            .filter(|p| p.kind == wishd::core::MediaKind::Video)
            .count()
            >= n
    })
    .await
    .expect("H.265 reaches the viewer");
    v.received()
        .into_iter()
        .filter(|p| p.kind == wishd::core::MediaKind::Video)
        .collect()
}

/// The NAL unit type of an H.265 payload (the fragment's own type for an FU).
fn unit_type(payload: &[u8]) -> u8 {
    let t = payload.first().map_or(0, |b| (b >> 1) & 0x3f);
    match (t, payload.get(2)) {
        (49, Some(fu)) => fu & 0x3f,
        _ => t,
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An H.265 viewer of `url`: its first packet starts a keyframe.
async fn assert_h265_starts_at_a_keyframe(url: &str, what: &str) {
    let video = first_h265_packets(url, false, 30).await;
    assert!(
        is_keyframe_start(CodecKind::H265, &video[0].payload),
        "the first packet starts a keyframe: unit type {}",
        unit_type(&video[0].payload)
    );
    interop::assert_starts_vps_sps_pps_irap(&video, what);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_camera_reaches_an_h265_viewer_starting_at_a_keyframe() {
    let port = free_udp_port();
    let server = common::start_with(|c| {
        c.rtp.push(RtpEntry {
            stream: "hevc".into(),
            video: Some(RtpMediumEntry {
                port,
                pt: 96,
                rtpmap: "H265/90000".into(),
                fmtp: String::new(),
            }),
            // The 422 comes before the camera sends.
            wait_when_offline: true,
            ..RtpEntry::default()
        })
    })
    .await;
    let url = format!("{}/whep/hevc", server.base_url());
    assert_refused_naming_h265(&url, viewer(&[VideoCodec::H264, VideoCodec::Vp8], false)).await;
    let _ffmpeg = interop::h265_camera(port, None);
    assert_h265_starts_at_a_keyframe(&url, "H.265 camera").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_camera_described_by_ffmpegs_sdp_file_reaches_an_h265_viewer() {
    let port = free_udp_port();
    let sdp = std::env::temp_dir().join(format!("wishd-hevc-{}.sdp", std::process::id()));
    let _ = std::fs::remove_file(&sdp);
    // ffmpeg writes the file once its output is open; the ingest binds after it, as
    // an operator starts wishd on the file a running encoder wrote.
    let _ffmpeg = interop::h265_camera(port, Some(&sdp));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&sdp).is_ok_and(|s| s.contains("H265/90000")) {
        assert!(
            std::time::Instant::now() < deadline,
            "ffmpeg wrote no SDP file"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "ffmpeg's SDP file:\n{}",
        std::fs::read_to_string(&sdp).unwrap_or_default()
    );
    let server = common::start_with(|c| {
        c.rtp.push(RtpEntry {
            stream: "hevc".into(),
            sdp: Some(sdp.clone()),
            // The 422 comes before the camera sends.
            wait_when_offline: true,
            ..RtpEntry::default()
        })
    })
    .await;
    let url = format!("{}/whep/hevc", server.base_url());
    assert_refused_naming_h265(&url, viewer(&[VideoCodec::H264, VideoCodec::Vp8], false)).await;
    assert_h265_starts_at_a_keyframe(&url, "H.265 camera (SDP file)").await;
    server.shutdown().await;
    let _ = std::fs::remove_file(&sdp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h265_whip_publisher_reaches_h265_viewers_and_others_get_422() {
    let server = common::start().await;
    let base = server.base_url();
    let publisher = WhipPublisher::connect(
        &format!("{base}/whip/hevc"),
        PublisherOptions {
            video: Some(VideoCodec::H265),
            keyframe_interval: Duration::from_millis(500),
            ..PublisherOptions::default()
        },
    )
    .await
    .expect("an H.265 offer is accepted");
    publisher
        .wait_connected(common::CONNECT)
        .await
        .expect("the publisher connects");
    let url = format!("{base}/whep/hevc");
    assert_refused_naming_h265(&url, viewer(&[VideoCodec::Vp8, VideoCodec::H264], true)).await;
    let video = first_h265_packets(&url, true, 20).await;
    assert!(
        is_keyframe_start(CodecKind::H265, &video[0].payload),
        "the first packet starts a keyframe: unit type {}",
        unit_type(&video[0].payload)
    );
    let _ = publisher.delete().await;
    server.shutdown().await;
}
