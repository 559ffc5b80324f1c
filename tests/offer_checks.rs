//! How wishd takes the offers the WHIP/WHEP texts single out (checklist WHIP-34…38,
//! WHIP-48): DTLS role offers (`a=setup:active` from some clients, `a=setup:passive`
//! from ffmpeg's WHIP muxer), simulcast when the operator turned it off (declined,
//! answered as one stream; taken, see tests/simulcast.rs), and the refusals without
//! partial answers (two tracks of a kind, no BUNDLE, no rtcp-mux).

mod common;

use wishd::client::{
    PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher, http_request, publisher_offer,
};

const SDP: (&str, &str) = ("content-type", "application/sdp");

fn setup_active(offer: &str) -> String {
    offer.replace("a=setup:actpass", "a=setup:active")
}

fn setup_passive(offer: &str) -> String {
    offer.replace("a=setup:actpass", "a=setup:passive")
}

/// Asks for three simulcast layers on the video m-line, as Chrome does.
fn with_simulcast(offer: &str) -> String {
    let video = offer.find("m=video").unwrap_or(offer.len());
    let (head, tail) = offer.split_at(video);
    let tail = tail.replacen(
        "a=sendonly\r\n",
        "a=sendonly\r\na=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
         a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n",
        1,
    );
    format!("{head}{tail}")
}

/// Publishes with `filter` applied to the offer, checks the answer's lines, then that
/// media reaches a viewer.
async fn publish_and_watch(filter: fn(&str) -> String, answer_has: &str, answer_lacks: &str) {
    publish_and_watch_on(common::start().await, filter, answer_has, answer_lacks).await;
}

async fn publish_and_watch_on(
    server: wishd::server::Server,
    filter: fn(&str) -> String,
    answer_has: &str,
    answer_lacks: &str,
) {
    let base = server.base_url();
    let p = WhipPublisher::connect(
        &format!("{base}/whip/s"),
        PublisherOptions {
            offer_filter: Some(filter),
            ..PublisherOptions::default()
        },
    )
    .await
    .expect("201");
    assert!(p.answer_sdp().contains(answer_has), "{}", p.answer_sdp());
    assert!(!p.answer_sdp().contains(answer_lacks), "{}", p.answer_sdp());
    p.wait_connected(common::CONNECT).await.expect("ICE + DTLS");
    let v = WhepViewer::connect(&format!("{base}/whep/s"), ViewerOptions::default())
        .await
        .unwrap();
    v.wait_for(common::CONNECT, |pk| {
        pk.iter().any(|x| x.kind == str0m::media::MediaKind::Video)
            && pk.iter().any(|x| x.kind == str0m::media::MediaKind::Audio)
    })
    .await
    .expect("audio and video reach the viewer");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_active_offer_gets_a_passive_answer_and_media_flows() {
    publish_and_watch(setup_active, "a=setup:passive", "a=setup:active").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_passive_offer_gets_an_active_answer_and_media_flows() {
    publish_and_watch(setup_passive, "a=setup:active", "a=setup:passive").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_offer_is_answered_as_one_stream_when_simulcast_is_off_and_media_flows() {
    let server = common::start_with(|c| c.simulcast.enabled = false).await;
    publish_and_watch_on(server, with_simulcast, "m=video", "a=simulcast").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_wishd_cannot_take_whole_are_refused_not_answered_in_part() {
    let server = common::start().await;
    let url = format!("{}/whip/s", server.base_url());
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    // A copy of the video m-line under a mid of its own, bundled too (str0m's mids
    // are random, so the video's is read from the offer).
    let video_at = offer.find("m=video").unwrap();
    let video_mid = offer[video_at..]
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .unwrap()
        .trim()
        .to_owned();
    let second_video =
        offer[video_at..].replace(&format!("a=mid:{video_mid}\r\n"), "a=mid:second\r\n");
    let two_videos: String = format!("{offer}{second_video}")
        .lines()
        .map(|l| match l.starts_with("a=group:BUNDLE") {
            true => format!("{l} second\r\n"),
            false => format!("{l}\r\n"),
        })
        .collect();
    let no_bundle: String = offer
        .lines()
        .filter(|l| !l.starts_with("a=group:BUNDLE"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    let no_mux: String = offer
        .lines()
        .filter(|l| !l.starts_with("a=rtcp-mux"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    for (name, body, why) in [
        ("two video m-lines", two_videos, "video m-lines"),
        ("no BUNDLE", no_bundle, "BUNDLE"),
        ("no rtcp-mux", no_mux, "rtcp-mux"),
    ] {
        let body_copy = body.clone();
        let r = http_request("POST", &url, &[SDP], body.into_bytes())
            .await
            .unwrap();
        assert!(r.status == 422 || r.status == 400, "{name}: {}", r.status);
        assert!(
            common::problem_detail(&r).contains(why),
            "{name}: {}\n{body_copy}",
            common::problem_detail(&r)
        );
    }
    assert_eq!(server.directory().counts().publishers, 0);
    server.shutdown().await;
}
