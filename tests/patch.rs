//! PATCH on a session (RFC 9725 §4.3): trickle ICE, ICE restart, and their
//! preconditions.

mod common;

use wishd::client::{PublisherOptions, WhipPublisher, http_request};

const FRAG: (&str, &str) = ("content-type", "application/trickle-ice-sdpfrag");

fn ufrag_of(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .trim()
        .to_owned()
}

fn trickle_frag(ufrag: &str) -> String {
    format!(
        "a=ice-options:trickle ice2\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
a=ice-ufrag:{ufrag}\r\na=ice-pwd:unchangedunchangedunch\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 61764 typ host\r\n\
a=candidate:2 1 udp 2122260223 4f3c1a2b-1111-2222-3333-444455556666.local 61765 typ host\r\n\
a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active\r\n\
a=end-of-candidates\r\n"
    )
}

async fn patch(url: &str, headers: &[(&str, &str)], body: &str) -> wishd::client::HttpResponse {
    http_request("PATCH", url, headers, body.as_bytes().to_vec())
        .await
        .unwrap()
}

/// A server with one publisher session; returns the session URL too.
async fn session() -> (wishd::server::Server, WhipPublisher, String) {
    let server = common::start().await;
    let p = WhipPublisher::connect(
        &format!("{}/whip/p", server.base_url()),
        PublisherOptions::default(),
    )
    .await
    .unwrap();
    let loc = p.location().to_owned();
    (server, p, loc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickle_with_the_current_etag_is_204_without_etag_and_drops_unusable_candidates() {
    let (server, p, loc) = session().await;
    let etag = p.etag().unwrap().to_owned();
    p.wait_connected(common::CONNECT).await.unwrap();
    // A fragment without credentials is always a trickle (new credentials would
    // be an ICE restart).
    let frag = trickle_frag("x")
        .lines()
        .filter(|l| !l.starts_with("a=ice-ufrag") && !l.starts_with("a=ice-pwd"))
        .map(|l| format!("{l}\r\n"))
        .collect::<String>();
    let r = patch(&loc, &[FRAG, ("if-match", &etag)], &frag).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.header("etag").is_none());
    assert!(r.body.is_empty());
    assert!(p.is_connected(), "trickle disturbed the session");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_without_if_match_is_428_and_with_a_stale_one_412() {
    let (server, _p, loc) = session().await;
    let frag = "a=end-of-candidates\r\n";
    let r = patch(&loc, &[FRAG], frag).await;
    assert_eq!(r.status, 428);
    assert!(common::problem_detail(&r).contains("If-Match is required"));
    let r = patch(&loc, &[FRAG, ("if-match", "\"nope\"")], frag).await;
    assert_eq!(r.status, 412);
    assert!(common::problem_detail(&r).contains("does not match"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_with_another_media_type_is_415_with_accept_patch() {
    let (server, p, loc) = session().await;
    let r = patch(
        &loc,
        &[
            ("content-type", "application/sdp"),
            ("if-match", p.etag().unwrap()),
        ],
        "a=end-of-candidates\r\n",
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(
        r.header("accept-patch"),
        Some("application/trickle-ice-sdpfrag")
    );
    assert!(common::problem_detail(&r).contains("trickle-ice-sdpfrag"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_fragment_is_400() {
    let (server, p, loc) = session().await;
    let r = patch(&loc, &[FRAG, ("if-match", p.etag().unwrap())], "zzz").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(common::problem_detail(&r).contains("malformed"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_on_an_unknown_session_is_404() {
    let server = common::start().await;
    let r = patch(
        &format!(
            "{}/whip/p/00000000000000000000000000000009",
            server.base_url()
        ),
        &[FRAG, ("if-match", "*")],
        "a=end-of-candidates\r\n",
    )
    .await;
    assert_eq!(r.status, 404);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_returns_new_credentials_and_a_new_etag_that_replaces_the_old() {
    let (server, p, loc) = session().await;
    let old_etag = p.etag().unwrap().to_owned();
    let answer = p.answer_sdp().to_owned();
    let r = patch(
        &loc,
        &[FRAG, ("if-match", "*")],
        &trickle_frag("newclientufrag"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/trickle-ice-sdpfrag")
    );
    let new_etag = r.header("etag").expect("new ETag").to_owned();
    assert_ne!(new_etag, old_etag);
    assert!(!new_etag.starts_with("W/"));
    let body = r.text();
    assert_ne!(ufrag_of(&body), ufrag_of(&answer), "server ufrag unchanged");
    assert!(body.contains("a=ice-pwd:"));
    assert!(body.contains("a=candidate:"), "{body}");
    // The same ice-lite / ice-options lines as the answer (RFC 9725 §4.3.3).
    for line in answer
        .lines()
        .filter(|l| *l == "a=ice-lite" || l.starts_with("a=ice-options"))
    {
        assert!(
            body.lines().any(|b| b == line),
            "restart answer lacks {line}"
        );
    }
    // The old ETag no longer matches; the new one does.
    let r = patch(
        &loc,
        &[FRAG, ("if-match", &old_etag)],
        "a=end-of-candidates\r\n",
    )
    .await;
    assert_eq!(r.status, 412);
    let r = patch(
        &loc,
        &[FRAG, ("if-match", &new_etag)],
        "a=end-of-candidates\r\n",
    )
    .await;
    assert_eq!(r.status, 204);
    server.shutdown().await;
}
