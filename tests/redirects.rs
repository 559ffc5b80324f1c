//! `[[redirects]]`: a POST to a matching endpoint is answered 307 with the configured
//! URL, before any token check, and a client that follows it gets its session on the
//! other server (RFC 9725 §4.5).

mod common;

use wishd::client::{
    PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher, http_request, publisher_offer,
};
use wishd::config::{Policy, RedirectConfig, RedirectKind, Secret, StaticTokenConfig};
use wishd::model::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matching_posts_are_307_to_the_rule_target_and_clients_land_there() {
    let other = common::start().await;
    let target = other.base_url();
    let front = common::start_with(|c| {
        c.auth.publish = Policy::Token;
        c.auth.tokens.push(StaticTokenConfig {
            token: Some(Secret::new("front-key")),
            token_file: None,
            streams: vec!["*".into()],
            actions: vec![Role::Publisher],
        });
        c.redirects = vec![
            RedirectConfig {
                stream: "moved-*".into(),
                kind: RedirectKind::Both,
                to: format!("{target}/whip/{{stream}}"),
            },
            RedirectConfig {
                stream: "edge-*".into(),
                kind: RedirectKind::Whep,
                to: format!("{target}/whep/{{stream}}"),
            },
        ];
    })
    .await;
    let base = front.base_url();
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();

    // 307 before authorization: no token, still redirected; nothing created here.
    let r = http_request(
        "POST",
        &format!("{base}/whip/moved-1"),
        &[("content-type", "application/sdp")],
        offer.clone().into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 307);
    assert_eq!(
        r.header("location"),
        Some(format!("{target}/whip/moved-1").as_str())
    );
    assert!(r.body.is_empty());
    assert_eq!(front.directory().counts().publishers, 0);

    // A WHIP-kind request does not match a WHEP-only rule: it meets this server's auth.
    let r = http_request(
        "POST",
        &format!("{base}/whip/edge-1"),
        &[("content-type", "application/sdp")],
        offer.into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);

    // The str0m peers follow the 307 and end up with sessions on the other server.
    let p = WhipPublisher::connect(&format!("{base}/whip/moved-1"), PublisherOptions::default())
        .await
        .unwrap();
    assert!(
        p.location().starts_with(&format!("{target}/whip/moved-1/")),
        "{}",
        p.location()
    );
    p.wait_connected(common::CONNECT).await.unwrap();
    let v = WhepViewer::connect(&format!("{base}/whep/edge-x"), ViewerOptions::default()).await;
    // edge-x is redirected to the other server's WHEP endpoint, where nobody publishes.
    assert!(v.unwrap_err().to_string().contains("409"));
    let v = WhepViewer::connect(&format!("{target}/whep/moved-1"), ViewerOptions::default())
        .await
        .unwrap();
    v.wait_for(common::CONNECT, |pk| pk.len() >= 10)
        .await
        .expect("media through the redirected publisher");
    assert_eq!(other.directory().counts().publishers, 1);
    assert_eq!(front.directory().counts().publishers, 0);
    assert_eq!(p.delete().await.unwrap(), 200);
    front.shutdown().await;
    other.shutdown().await;
}
