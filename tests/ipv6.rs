//! IPv6: a server on an IPv6 address alone carries media to str0m peers over IPv6,
//! and a dual-stack server (`[::]` for HTTP and media) serves IPv4 and IPv6 peers
//! side by side, each with host candidates of both families. Chromium over IPv6 alone
//! is in tests/ipv6_browser.rs.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use wishd::client::{PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher};

const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ADMIN: &str = "dual-stack-admin-token-0123";

/// `http://[::1]:PORT` for a server whose HTTP listener has `port`.
fn v6_base(port: u16) -> String {
    format!("http://{}", SocketAddr::new(V6, port))
}

/// The addresses of the answer's UDP host candidates.
fn candidate_ips(answer: &str) -> Vec<IpAddr> {
    answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .filter(|c| c.split_whitespace().nth(2) == Some("udp"))
        .filter_map(|c| c.split_whitespace().nth(4)?.parse().ok())
        .collect()
}

async fn publish_from(base: &str, stream: &str, ip: IpAddr) -> WhipPublisher {
    let opts = PublisherOptions {
        bind_ip: ip,
        ..PublisherOptions::default()
    };
    common::publish(base, stream, opts).await
}

async fn view_from(base: &str, stream: &str, ip: IpAddr) -> WhepViewer {
    let opts = ViewerOptions {
        bind_ip: ip,
        ..ViewerOptions::default()
    };
    let v = WhepViewer::connect(&format!("{base}/whep/{stream}"), opts)
        .await
        .expect("WHEP POST");
    v.wait_connected(common::CONNECT)
        .await
        .expect("viewer connects");
    v
}

async fn gets_media(v: &WhepViewer, what: &str) -> usize {
    v.wait_for(Duration::from_secs(10), |p| p.len() >= 50)
        .await
        .unwrap_or_else(|e| panic!("{what}: no media: {e}"));
    v.received_count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_ipv6_alone_carries_media_over_ipv6() {
    let server = common::start_with(|c| {
        c.http = "[::1]:0".parse().unwrap();
        c.udp = "[::1]:0".parse().unwrap();
    })
    .await;
    let base = v6_base(server.http_addr().port());
    let p = publish_from(&base, "six", V6).await;
    assert_eq!(candidate_ips(p.answer_sdp()), [V6], "{}", p.answer_sdp());
    let v = view_from(&base, "six", V6).await;
    assert_eq!(candidate_ips(v.answer_sdp()), [V6]);
    let n = gets_media(&v, "IPv6 viewer").await;
    println!("IPv6 alone: the viewer on ::1 got {n} packets");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dual_stack_server_serves_ipv4_and_ipv6_peers_side_by_side() {
    let server = common::start_with(|c| {
        c.http = "[::]:0".parse().unwrap();
        c.udp = "[::]:0".parse().unwrap();
        c.api.token = Some(wishd::config::Secret::new(ADMIN));
    })
    .await;
    let port = server.http_addr().port();
    let v4_base = format!("http://127.0.0.1:{port}");
    let v6_base = v6_base(port);

    // An IPv4 publisher, one viewer of each family.
    let p = publish_from(&v4_base, "both", V4).await;
    let offered = candidate_ips(p.answer_sdp());
    assert!(
        offered.contains(&V4) && offered.contains(&V6),
        "host candidates of both families: {offered:?}"
    );
    let four = view_from(&v4_base, "both", V4).await;
    let six = view_from(&v6_base, "both", V6).await;
    let n4 = gets_media(&four, "IPv4 viewer").await;
    let n6 = gets_media(&six, "IPv6 viewer").await;

    // The server sees each client as the address it is (no IPv4-mapped IPv6).
    let api: serde_json::Value = serde_json::from_slice(
        &wishd::client::http_request(
            "GET",
            &format!("{v4_base}/api/streams/both"),
            &[("authorization", &format!("Bearer {ADMIN}"))],
            Vec::new(),
        )
        .await
        .expect("API")
        .body,
    )
    .unwrap_or_default();
    let peers: Vec<String> = api["sessions"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| x["peer"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    println!("dual stack: IPv4 viewer {n4} packets, IPv6 viewer {n6}; peers {peers:?}");
    assert!(
        peers.iter().any(|p| p.starts_with("127.0.0.1:")),
        "{peers:?}"
    );
    assert!(peers.iter().any(|p| p.starts_with("[::1]:")), "{peers:?}");
    assert!(
        !peers.iter().any(|p| p.contains("::ffff:")),
        "mapped addresses: {peers:?}"
    );
    server.shutdown().await;
}
