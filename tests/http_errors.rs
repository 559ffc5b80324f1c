//! Every refusal the foundation names: the status, a one-line reason in an RFC 9457
//! problem details body, and no side effect on other sessions.

mod common;

use wishd::client::{
    PublisherOptions, ViewerOptions, WhipPublisher, http_request, publisher_offer, viewer_offer,
};

const SDP: (&str, &str) = ("content-type", "application/sdp");

async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> wishd::client::HttpResponse {
    http_request("POST", url, headers, body.as_bytes().to_vec())
        .await
        .expect("http")
}

fn one_line_reason(r: &wishd::client::HttpResponse) -> String {
    common::problem_detail(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type_is_415_with_accept_post() {
    let server = common::start().await;
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    let r = post(
        &format!("{}/whip/s", server.base_url()),
        &[("content-type", "text/plain")],
        &offer,
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(r.header("accept-post"), Some("application/sdp"));
    one_line_reason(&r);
    assert_eq!(
        server.directory().counts().publishers,
        0,
        "a session was created"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_sdp_is_400() {
    let server = common::start().await;
    for body in ["garbage", "", "v=0\r\nm=video\r\n", "\u{0}\u{1}\u{2}"] {
        let r = post(&format!("{}/whip/s", server.base_url()), &[SDP], body).await;
        assert_eq!(r.status, 400, "body {body:?}: {}", r.text());
        one_line_reason(&r);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_wishd_cannot_serve_are_422_naming_what_is_missing() {
    let server = common::start().await;
    let base = server.base_url();
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();

    // No common codec: the video m-line offers only a codec wishd does not forward.
    let no_codec = offer
        .replace("H264/90000", "H266/90000")
        .replace("opus/48000/2", "speex/16000");
    let r = post(&format!("{base}/whip/s"), &[SDP], &no_codec).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let reason = one_line_reason(&r).to_lowercase();
    assert!(reason.contains("codec"), "{reason}");

    // A WHIP offer that only receives.
    let recvonly = offer.replace("a=sendonly", "a=recvonly");
    let r = post(&format!("{base}/whip/s"), &[SDP], &recvonly).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(one_line_reason(&r).contains("recvonly"));

    // Data channel only.
    let dc = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sctp-port:5000\r\n";
    let r = post(&format!("{base}/whip/s"), &[SDP], dc).await;
    assert_eq!(r.status, 422, "{}", r.text());
    one_line_reason(&r);
    assert_eq!(server.directory().counts().publishers, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publisher_on_a_live_stream_is_409_and_the_first_keeps_going() {
    let server = common::start().await;
    let base = server.base_url();
    let first = WhipPublisher::connect(&format!("{base}/whip/live"), PublisherOptions::default())
        .await
        .unwrap();
    first.wait_connected(common::CONNECT).await.unwrap();
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    let r = post(&format!("{base}/whip/live"), &[SDP], &offer).await;
    assert_eq!(r.status, 409);
    one_line_reason(&r);
    assert!(first.is_connected());
    assert_eq!(server.directory().counts().publishers, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_for_a_stream_without_source_is_409_with_retry_after() {
    let server = common::start().await;
    let offer = viewer_offer(&ViewerOptions::default()).unwrap();
    let r = post(
        &format!("{}/whep/nobody", server.base_url()),
        &[SDP],
        &offer,
    )
    .await;
    assert_eq!(r.status, 409);
    assert!(
        r.header("retry-after")
            .is_some_and(|v| v.parse::<u32>().is_ok())
    );
    one_line_reason(&r);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_session_is_404() {
    let server = common::start().await;
    let base = server.base_url();
    for path in [
        "/whip/s/00000000000000000000000000000001",
        "/whep/s/not-an-id",
        "/nothing/here",
    ] {
        let r = http_request("DELETE", &format!("{base}{path}"), &[], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 404, "{path}");
        one_line_reason(&r);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_with_another_streams_url_is_404_and_keeps_the_session() {
    let server = common::start().await;
    let base = server.base_url();
    let p = WhipPublisher::connect(&format!("{base}/whip/mine"), PublisherOptions::default())
        .await
        .unwrap();
    let id = p.location().rsplit('/').next().unwrap().to_owned();
    let r = http_request("DELETE", &format!("{base}/whip/other/{id}"), &[], vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(server.directory().counts().publishers, 1);
    assert_eq!(p.delete().await.unwrap(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_64_kib_is_413() {
    let server = common::start().await;
    let big = "a".repeat(64 * 1024 + 1);
    let r = post(&format!("{}/whip/s", server.base_url()), &[SDP], &big).await;
    assert_eq!(r.status, 413);
    one_line_reason(&r);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_are_405_with_allow() {
    let server = common::start().await;
    let r = http_request("PUT", &format!("{}/whip/s", server.base_url()), &[], vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    assert!(r.header("allow").unwrap().contains("POST"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_session_has_sdp_answer_location_and_strong_etag() {
    let server = common::start().await;
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    let r = post(&format!("{}/whip/s", server.base_url()), &[SDP], &offer).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let loc = r.header("location").unwrap();
    let prefix = format!("{}/whip/s/", server.base_url());
    assert!(
        loc.starts_with(&prefix) && loc.len() == prefix.len() + 32,
        "{loc}"
    );
    let etag = r.header("etag").unwrap();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "{etag}");
    let answer = r.text();
    assert!(answer.starts_with("v=0"));
    assert!(answer.contains("a=ice-lite"));
    assert!(
        answer.contains("a=candidate:"),
        "answer must carry all candidates"
    );
    assert!(answer.contains("a=group:BUNDLE"));
    assert!(answer.contains("a=rtcp-mux"));
    assert!(answer.contains("a=recvonly"));
    server.shutdown().await;
}
