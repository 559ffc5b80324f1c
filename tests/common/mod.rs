//! Shared harness for integration tests: a real wishd on 127.0.0.1 with port 0.
#![allow(dead_code)]

use std::time::Duration;

use wishd::client::{PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher};
use wishd::config::Config;
use wishd::server::Server;

/// Starts a server on loopback with free ports and two workers (so cross-worker
/// forwarding is exercised even on one-core machines).
pub async fn start() -> Server {
    start_with(|_| {}).await
}

/// Starts a server after letting the test adjust the config.
pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    wishd::client::install_crypto_provider();
    // The media tests publish without tokens, all from one address.
    let mut config = Config::loopback_open(2);
    adjust(&mut config);
    Server::start(config).await.expect("server starts")
}

pub const CONNECT: Duration = Duration::from_secs(10);

/// A str0m publisher on `base`/whip/`stream`, connected (ICE and DTLS up).
pub async fn publish(base: &str, stream: &str, opts: PublisherOptions) -> WhipPublisher {
    let p = WhipPublisher::connect(&format!("{base}/whip/{stream}"), opts)
        .await
        .expect("publish");
    p.wait_connected(CONNECT).await.expect("publisher connects");
    p
}

/// A str0m viewer of the WHEP endpoint `url`, connected (ICE and DTLS up).
pub async fn view_url(url: &str) -> WhepViewer {
    let v = WhepViewer::connect(url, ViewerOptions::default())
        .await
        .expect("WHEP POST");
    v.wait_connected(CONNECT).await.expect("viewer connects");
    v
}

/// A str0m viewer of `base`/whep/`stream`, connected.
pub async fn view(base: &str, stream: &str) -> WhepViewer {
    view_url(&format!("{base}/whep/{stream}")).await
}

/// The sequence numbers missing from `seqs` (any order, repeats allowed) between the
/// lowest and the highest less `spare`: the newest `spare` may still be on their way
/// (a resend, a late packet). No packets at all fails the test.
pub fn missing_seqs(seqs: &[u64], spare: u64) -> Vec<u64> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let (Some(&lo), Some(&hi)) = (sorted.first(), sorted.last()) else {
        panic!("no packets arrived at all");
    };
    (lo..hi.saturating_sub(spare))
        .filter(|s| sorted.binary_search(s).is_err())
        .collect()
}

/// The value of the unlabelled series `name` in the server's `/metrics`.
pub async fn metric(base: &str, name: &str) -> f64 {
    let text = wishd::client::http_request("GET", &format!("{base}/metrics"), &[], Vec::new())
        .await
        .expect("metrics")
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in /metrics"))
}

/// The `detail` of an RFC 9457 problem details body, after checking that the
/// response is `application/problem+json` with `type`, `title` and the status
/// repeated. Panics (failing the test) otherwise.
pub fn problem_detail(r: &wishd::client::HttpResponse) -> String {
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "status {} body {:?}",
        r.status,
        r.text()
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("problem body is not JSON ({e}): {:?}", r.text()));
    assert_eq!(v["status"], r.status, "{v}");
    assert!(v["type"].is_string() && v["title"].is_string(), "{v}");
    let detail = v["detail"].as_str().unwrap_or_default().to_owned();
    assert!(
        !detail.trim().is_empty(),
        "status {} without a reason",
        r.status
    );
    assert!(!detail.contains('\n'), "reason is not one line: {detail:?}");
    detail
}
pub mod openapi;

/// A WHEP POST of the default viewer's offer to `url`, answered.
pub async fn post_viewer_offer(url: &str) -> wishd::client::HttpResponse {
    let offer = wishd::client::viewer_offer(&ViewerOptions::default()).expect("an offer");
    wishd::client::http_request(
        "POST",
        url,
        &[("content-type", "application/sdp")],
        offer.into_bytes(),
    )
    .await
    .expect("an answer")
}

/// A viewer POST to an offline camera: 409 with Retry-After (the test server's 2 s),
/// a reason in the body.
pub async fn assert_offline_409(url: &str, when: &str) {
    let r = post_viewer_offer(url).await;
    assert_eq!(r.status, 409, "{when}: {}", r.text());
    assert_eq!(r.header("retry-after"), Some("2"), "{when}: Retry-After");
    assert!(!r.text().is_empty(), "{when}: a reason in the body");
}

/// Waits until `check` holds (at most `timeout`, looking every 20 ms); how long it took.
pub async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> Duration {
    let t0 = std::time::Instant::now();
    while !check().await {
        assert!(t0.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}
