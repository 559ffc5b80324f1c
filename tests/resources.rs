//! The WHIP/WHEP resources beyond POST/PATCH/DELETE: GET and HEAD (RFC 9725 §4.1,
//! WHEP discoverability), OPTIONS with `Accept-Post`/`Accept-Patch` and `Allow`, 405
//! with `Allow` for every other method, and an absolute `Location`.

mod common;

use wishd::client::{PublisherOptions, WhipPublisher, http_request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_head_on_endpoints_are_empty_200_with_application_sdp() {
    let server = common::start().await;
    for kind in ["whip", "whep"] {
        let url = format!("{}/{kind}/s", server.base_url());
        for method in ["GET", "HEAD"] {
            let r = http_request(method, &url, &[], vec![]).await.unwrap();
            assert_eq!(r.status, 200, "{method} {url}");
            assert!(r.body.is_empty(), "{method} {url}: {:?}", r.text());
            assert_eq!(
                r.header("content-type"),
                Some("application/sdp"),
                "{method} {url}"
            );
            assert_eq!(r.header("accept-post"), Some("application/sdp"));
        }
    }
    assert_eq!(server.directory().counts().publishers, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_head_on_a_session_are_empty_200_and_404_once_it_is_gone() {
    let server = common::start().await;
    let p = WhipPublisher::connect(
        &format!("{}/whip/s", server.base_url()),
        PublisherOptions::default(),
    )
    .await
    .unwrap();
    let loc = p.location().to_owned();
    for method in ["GET", "HEAD"] {
        let r = http_request(method, &loc, &[], vec![]).await.unwrap();
        assert_eq!(r.status, 200, "{method}");
        assert!(r.body.is_empty());
    }
    assert_eq!(p.delete().await.unwrap(), 200);
    let r = http_request("GET", &loc, &[], vec![]).await.unwrap();
    assert_eq!(r.status, 404);
    common::problem_detail(&r);
    // HEAD carries no body, not even the problem details.
    let r = http_request("HEAD", &loc, &[], vec![]).await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_names_accept_post_on_endpoints_accept_patch_on_sessions_and_allow() {
    let server = common::start().await;
    let r = http_request(
        "OPTIONS",
        &format!("{}/whep/s", server.base_url()),
        &[],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("accept-post"), Some("application/sdp"));
    assert_eq!(r.header("allow"), Some("POST, OPTIONS, GET, HEAD"));
    let p = WhipPublisher::connect(
        &format!("{}/whip/s", server.base_url()),
        PublisherOptions::default(),
    )
    .await
    .unwrap();
    let r = http_request("OPTIONS", p.location(), &[], vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("accept-patch"),
        Some("application/trickle-ice-sdpfrag")
    );
    assert_eq!(r.header("allow"), Some("PATCH, DELETE, OPTIONS, GET, HEAD"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_are_405_with_allow_on_every_route() {
    let server = common::start().await;
    let base = server.base_url();
    let p = WhipPublisher::connect(&format!("{base}/whip/s"), PublisherOptions::default())
        .await
        .unwrap();
    let session = p.location().to_owned();
    let viewer_session = format!("{base}/whep/s/{:032x}", 7);
    for (url, wrong, allow) in [
        (format!("{base}/whip/s"), "PUT", "POST, OPTIONS, GET, HEAD"),
        (
            format!("{base}/whep/s"),
            "DELETE",
            "POST, OPTIONS, GET, HEAD",
        ),
        (
            format!("{base}/whip/s"),
            "PATCH",
            "POST, OPTIONS, GET, HEAD",
        ),
        (session.clone(), "POST", "PATCH, DELETE, OPTIONS, GET, HEAD"),
        (session.clone(), "PUT", "PATCH, DELETE, OPTIONS, GET, HEAD"),
        (viewer_session, "POST", "PATCH, DELETE, OPTIONS, GET, HEAD"),
    ] {
        let r = http_request(wrong, &url, &[], vec![]).await.unwrap();
        assert_eq!(r.status, 405, "{wrong} {url}");
        assert_eq!(r.header("allow"), Some(allow), "{wrong} {url}");
        assert!(common::problem_detail(&r).contains("method"));
    }
    // The refused requests left the session alone.
    p.wait_connected(common::CONNECT).await.unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_is_absolute_from_host_or_from_public_url() {
    let server = common::start().await;
    let base = server.base_url();
    let p = WhipPublisher::connect(&format!("{base}/whip/s"), PublisherOptions::default())
        .await
        .unwrap();
    let etag = p.etag().unwrap().to_owned();
    assert!(
        p.location().starts_with(&format!("{base}/whip/s/")),
        "{}",
        p.location()
    );
    // The session URL works as given, and the ETag is the one of the 201.
    let r = http_request("GET", p.location(), &[], vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    server.shutdown().await;

    let server = common::start_with(|c| {
        c.public_url = Some("https://media.example/wishd/".into());
    })
    .await;
    let offer = wishd::client::publisher_offer(&PublisherOptions::default()).unwrap();
    let r = http_request(
        "POST",
        &format!("{}/whip/s", server.base_url()),
        &[("content-type", "application/sdp")],
        offer.into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let loc = r.header("location").unwrap();
    assert!(
        loc.starts_with("https://media.example/wishd/whip/s/"),
        "{loc}"
    );
    server.shutdown().await;
}
