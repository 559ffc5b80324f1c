//! The publisher's offers (codecs, directions, simulcast lines), the layers it
//! refuses before offering, and a refused connection; sessions against a server are
//! in `tests_e2e`.

use super::*;

fn m_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().filter(|l| l.starts_with("m=")).collect()
}

#[test]
fn offer_h264_audio_video() {
    let sdp = publisher_offer(&PublisherOptions::default()).unwrap();
    let m = m_lines(&sdp);
    assert_eq!(m.len(), 2, "{sdp}");
    assert!(m[0].starts_with("m=audio "), "{sdp}");
    assert!(m[1].starts_with("m=video "), "{sdp}");
    assert_eq!(sdp.matches("a=sendonly").count(), 2, "{sdp}");
    assert!(sdp.contains("a=rtpmap:111 opus/48000/2"), "{sdp}");
    assert!(sdp.contains("a=rtpmap:108 H264/90000"), "{sdp}");
    assert!(sdp.contains("packetization-mode=1"), "{sdp}");
    assert!(sdp.contains("profile-level-id=42e01f"), "{sdp}");
    assert!(!sdp.contains("VP8"), "{sdp}");
    assert!(sdp.contains("typ host"), "{sdp}");
    assert!(sdp.contains("a=fingerprint:"), "{sdp}");
    assert!(sdp.contains("a=setup:actpass"), "{sdp}");
    assert!(!sdp.contains("ice-lite"), "{sdp}");
}

#[test]
fn offer_vp8_video_only() {
    let opts = PublisherOptions {
        video: Some(VideoCodec::Vp8),
        audio: false,
        ..Default::default()
    };
    let sdp = publisher_offer(&opts).unwrap();
    let m = m_lines(&sdp);
    assert_eq!(m.len(), 1, "{sdp}");
    assert!(m[0].starts_with("m=video "), "{sdp}");
    assert!(sdp.contains("a=rtpmap:96 VP8/90000"), "{sdp}");
    assert!(!sdp.contains("H264"), "{sdp}");
    assert!(!sdp.contains("opus"), "{sdp}");
    assert!(sdp.contains("a=sendonly"), "{sdp}");
}

#[test]
fn nothing_to_send_is_an_error() {
    let opts = PublisherOptions {
        video: None,
        audio: false,
        ..Default::default()
    };
    assert!(matches!(publisher_offer(&opts), Err(ClientError::Sdp(_))));
}

/// The lines of the m-section that starts with `m=<kind>`.
fn section<'a>(sdp: &'a str, kind: &str) -> Vec<&'a str> {
    sdp.split("m=")
        .find(|s| s.starts_with(kind))
        .map(|s| s.lines().collect())
        .unwrap_or_default()
}

fn simulcast_lines<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("a=rid:") || l.starts_with("a=simulcast:"))
        .collect()
}

#[test]
fn a_simulcast_offer_declares_the_layers_in_the_given_order() {
    let opts = PublisherOptions {
        simulcast: Some(SimulcastLayer::three()),
        ..Default::default()
    };
    let sdp = publisher_offer(&opts).unwrap();
    let video = section(&sdp, "video");
    assert_eq!(
        simulcast_lines(&video),
        [
            "a=rid:q send",
            "a=rid:h send",
            "a=rid:f send",
            "a=simulcast:send q;h;f"
        ],
        "{sdp}"
    );
    for uri in [
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    ] {
        assert!(
            video
                .iter()
                .any(|l| l.starts_with("a=extmap:") && l.ends_with(&format!(" {uri}"))),
            "{uri} missing in {sdp}"
        );
    }
    assert!(simulcast_lines(&section(&sdp, "audio")).is_empty(), "{sdp}");

    // Names and order are the caller's (OBS names its layers otherwise).
    let opts = PublisherOptions {
        simulcast: Some(vec![
            SimulcastLayer::new("hi_1", 1280, 720, 2_000_000),
            SimulcastLayer::new("lo_0", 640, 360, 500_000),
        ]),
        ..Default::default()
    };
    let sdp = publisher_offer(&opts).unwrap();
    assert_eq!(
        simulcast_lines(&section(&sdp, "video")),
        [
            "a=rid:hi_1 send",
            "a=rid:lo_0 send",
            "a=simulcast:send hi_1;lo_0"
        ],
        "{sdp}"
    );
}

#[test]
fn an_offer_without_simulcast_has_no_rid_lines() {
    let sdp = publisher_offer(&PublisherOptions::default()).unwrap();
    assert!(simulcast_lines(&sdp.lines().collect::<Vec<_>>()).is_empty());
}

#[test]
fn layers_a_session_cannot_carry_are_refused() {
    let layer = |rid: &str, w, h, bps| SimulcastLayer::new(rid, w, h, bps);
    let bad = [
        vec![],
        vec![layer("", 320, 180, 1)],
        vec![layer("ninechars", 320, 180, 1)],
        vec![layer("a b", 320, 180, 1)],
        // RFC 8851 allows it, str0m would send "hi_1".
        vec![layer("hi-1", 320, 180, 1)],
        vec![layer("a", 320, 180, 1), layer("a", 640, 360, 1)],
        vec![layer("a", 321, 180, 1)],
        vec![layer("a", 320, 0, 1)],
        vec![layer("a", 16_384, 180, 1)],
        vec![layer("a", 320, 180, 0)],
    ];
    for layers in bad {
        let opts = PublisherOptions {
            simulcast: Some(layers.clone()),
            ..Default::default()
        };
        assert!(
            matches!(publisher_offer(&opts), Err(ClientError::Sdp(_))),
            "{layers:?}"
        );
    }
    assert!(check_layers(&[layer("eightchr", 16_382, 2, 1)]).is_ok());
}

#[tokio::test]
async fn connect_reports_http_status() {
    // Nothing listens: connection refused surfaces as Io.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = WhipPublisher::connect(
        &format!("http://127.0.0.1:{port}/whip/x"),
        PublisherOptions::default(),
    )
    .await;
    assert!(matches!(r, Err(ClientError::Io(_))));
}
