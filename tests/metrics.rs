//! `/metrics` across a scripted publish, view, delete and stop: the counters move by
//! the expected amounts, the forwarding latency histogram fills, and the page is valid
//! Prometheus text.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use wishd::client::{PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher, http_request};
use wishd::config::Secret;
use wishd::core::MediaKind;

const ADMIN: &str = "admin-token-0123456789abcdef";

/// One scrape: `name{labels}` → value, after checking the text format line by line.
#[derive(Debug)]
struct Scrape(HashMap<String, f64>);

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        *self
            .0
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from /metrics"))
    }
}

fn parse(text: &str) -> Scrape {
    let mut values = HashMap::new();
    let mut typed = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap().to_owned();
            let kind = it.next().unwrap();
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad type line {line}"
            );
            assert!(typed.insert(name, kind).is_none(), "TYPE twice: {line}");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("sample line");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name = key.split('{').next().unwrap();
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .filter(|f| typed.get(*f) == Some(&"histogram"))
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample before its TYPE: {line}");
        assert!(
            name.starts_with("wishd_")
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "bad name {name}"
        );
        assert!(
            values.insert(key.to_owned(), v).is_none(),
            "duplicate {key}"
        );
    }
    Scrape(values)
}

async fn scrape(base: &str, token: Option<&str>) -> Scrape {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let r = http_request("GET", &format!("{base}/metrics"), &headers, Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    parse(&r.text())
}

/// Quantile estimate from cumulative buckets (upper bound of the bucket it falls in).
fn quantile(s: &Scrape, name: &str, q: f64) -> f64 {
    let mut buckets: Vec<(f64, f64)> =
        s.0.iter()
            .filter_map(|(k, v)| {
                let le = k
                    .strip_prefix(&format!("{name}_bucket{{le=\""))?
                    .strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, *v))
            })
            .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    for w in buckets.windows(2) {
        assert!(w[0].1 <= w[1].1, "{name} buckets are not cumulative");
    }
    buckets
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map(|b| b.0)
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_the_expected_amounts_across_publish_view_delete_and_stop() {
    let server = common::start_with(|c| c.api.token = Some(Secret::new(ADMIN))).await;
    let base = server.base_url();
    let before = scrape(&base, None).await;
    for k in ["publisher", "viewer"] {
        assert_eq!(
            before.get(&format!("wishd_sessions_created_total{{kind=\"{k}\"}}")),
            0.0
        );
    }
    assert_eq!(before.get("wishd_forward_latency_seconds_count"), 0.0);
    assert_eq!(before.get("wishd_session_setup_seconds_count"), 0.0);
    // DTLS sessions are made ahead on idle CPU time from the start (`prepared_dtls`).
    let ready = |s: &Scrape| s.get("wishd_dtls_ready");
    let t0 = std::time::Instant::now();
    while ready(&scrape(&base, None).await) < 1.0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "no DTLS session made ahead"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let publisher =
        WhipPublisher::connect(&format!("{base}/whip/cam"), PublisherOptions::default())
            .await
            .unwrap();
    publisher.wait_connected(common::CONNECT).await.unwrap();
    let mut viewers = Vec::new();
    for _ in 0..3 {
        let v = WhepViewer::connect(&format!("{base}/whep/cam"), ViewerOptions::default())
            .await
            .unwrap();
        v.wait_connected(common::CONNECT).await.unwrap();
        viewers.push(v);
    }
    for v in &viewers {
        v.wait_for(Duration::from_secs(10), |p| {
            p.iter().filter(|p| p.kind == MediaKind::Video).count() > 60
        })
        .await
        .unwrap();
    }
    // Worker-local figures are flushed every 100 ms.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let live = scrape(&base, None).await;
    let created =
        |s: &Scrape, k: &str| s.get(&format!("wishd_sessions_created_total{{kind=\"{k}\"}}"));
    assert_eq!(
        created(&live, "publisher") + created(&live, "viewer"),
        4.0,
        "sessions created +4"
    );
    assert_eq!(created(&live, "viewer"), 3.0);
    // Every handshake started, the publisher's first from a session made ahead.
    let dtls =
        |s: &Scrape, how: &str| s.get(&format!("wishd_dtls_sessions_total{{how=\"{how}\"}}"));
    assert!(
        dtls(&live, "ready") >= 1.0,
        "a handshake took a ready session"
    );
    assert_eq!(dtls(&live, "ready") + dtls(&live, "made"), 4.0);
    assert_eq!(
        live.get("wishd_sessions{kind=\"viewer\",state=\"connected\"}"),
        3.0
    );
    assert_eq!(
        live.get("wishd_sessions{kind=\"publisher\",state=\"connected\"}"),
        1.0
    );
    assert_eq!(
        live.get("wishd_streams{source=\"whip\",state=\"live\"}"),
        1.0
    );
    let received: usize = viewers.iter().map(|v| v.received_count()).sum();
    let out = live.get("wishd_rtp_packets_out_total");
    assert!(
        out > 0.0 && out >= received as f64 * 0.9,
        "forwarded {out}, received {received}"
    );
    assert!(live.get("wishd_rtp_packets_in_total") > 0.0);
    assert!(live.get("wishd_rtp_bytes_out_total") > live.get("wishd_rtp_bytes_in_total"));
    assert!(live.get("wishd_udp_bytes_out_total") > 0.0);
    assert!(live.get("wishd_udp_bytes_in_total") > 0.0);
    // Three viewers of one stream: a frame's packets go out as GSO runs and one
    // packet's copies to the viewers of a worker as one sendmmsg.
    let (datagrams, calls) = (
        live.get("wishd_udp_datagrams_out_total"),
        live.get("wishd_udp_send_calls_total"),
    );
    assert!(
        calls > 0.0 && calls < datagrams,
        "{datagrams} datagrams in {calls} send calls"
    );
    let latency_count = live.get("wishd_forward_latency_seconds_count");
    assert!(
        latency_count > 0.0,
        "the forwarding latency histogram fills"
    );
    assert_eq!(
        live.get("wishd_forward_latency_seconds_bucket{le=\"+Inf\"}"),
        latency_count
    );
    assert!(live.get("wishd_keyframe_requests_total{type=\"pli_sent\"}") >= 1.0);
    assert_eq!(
        live.get("wishd_http_requests_total{route=\"whip\",status=\"201\"}"),
        1.0
    );
    assert_eq!(
        live.get("wishd_http_requests_total{route=\"whep\",status=\"201\"}"),
        3.0
    );
    assert_eq!(
        live.get("wishd_session_setup_seconds_count"),
        4.0,
        "one setup time per POST answered 201 (1 publisher, 3 viewers)"
    );
    let setup_p99 = quantile(&live, "wishd_session_setup_seconds", 0.99);
    println!(
        "session setup (debug build): p99 <= {:.1} ms",
        setup_p99 * 1e3
    );
    let p50 = quantile(&live, "wishd_forward_latency_seconds", 0.5);
    let p99 = quantile(&live, "wishd_forward_latency_seconds", 0.99);
    println!(
        "forwarding latency (debug build, loopback, 3 viewers on 2 workers): {latency_count} packets, p50 <= {:.0} us, p99 <= {:.0} us",
        p50 * 1e6,
        p99 * 1e6
    );
    assert!(p99 < 0.1, "p99 forwarding latency under 100 ms");
    assert_eq!(
        live.get("wishd_dropped_packets_total{reason=\"worker_queue_stale\"}"),
        0.0,
        "nothing waits past forward_max_delay in normal operation"
    );

    // Refused credentials are counted by reason.
    let api = format!("{base}/api/streams/cam");
    http_request("GET", &api, &[], Vec::new()).await.unwrap();
    http_request(
        "GET",
        &api,
        &[("authorization", "Bearer wrong-token-value")],
        Vec::new(),
    )
    .await
    .unwrap();

    // One viewer leaves with DELETE, then the operator stops the stream.
    let v = viewers.pop().unwrap();
    assert_eq!(v.delete().await.unwrap(), 200);
    let r = http_request(
        "DELETE",
        &api,
        &[("authorization", &format!("Bearer {ADMIN}"))],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 204);
    for v in &viewers {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while v.close_reason().is_none() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = scrape(&base, None).await;
    let ended = |r: &str| after.get(&format!("wishd_sessions_ended_total{{reason=\"{r}\"}}"));
    assert_eq!(ended("delete"), 1.0);
    assert_eq!(ended("stream-stopped"), 3.0, "publisher and two viewers");
    for k in ["publisher", "viewer"] {
        for st in ["connecting", "connected", "disconnected"] {
            assert_eq!(
                after.get(&format!("wishd_sessions{{kind=\"{k}\",state=\"{st}\"}}")),
                0.0,
                "{k} {st} back to zero"
            );
        }
    }
    assert_eq!(
        after.get("wishd_streams{source=\"whip\",state=\"live\"}"),
        0.0
    );
    assert_eq!(
        after.get("wishd_auth_failures_total{reason=\"missing\"}"),
        1.0
    );
    assert_eq!(
        after.get("wishd_auth_failures_total{reason=\"invalid_token\"}"),
        1.0
    );
    assert_eq!(
        after.get("wishd_http_requests_total{route=\"api\",status=\"401\"}"),
        2.0
    );
    assert_eq!(
        after.get("wishd_http_requests_total{route=\"api\",status=\"204\"}"),
        1.0
    );
    assert_eq!(
        after.get("wishd_http_requests_total{route=\"whep_session\",status=\"200\"}"),
        1.0
    );
    assert!(after.get("wishd_http_requests_total{route=\"metrics\",status=\"200\"}") >= 2.0);
    server.shutdown().await;
}

/// A worker that is behind drops source packets that waited past `forward_max_delay`
/// instead of forwarding them late. A limit of 1 µs makes every packet that crosses
/// to the other worker stale: the viewers there get no live video (at most the
/// cached start of the group), the publisher's worker's viewers get all of it, and
/// the drops are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_that_waited_past_forward_max_delay_are_dropped_and_counted() {
    let server = common::start_with(|c| c.forward_max_delay = Duration::from_micros(1)).await;
    let base = server.base_url();
    let _publisher = common::publish(&base, "late", PublisherOptions::default()).await;
    // Sessions go to the workers round robin: four viewers sit on both.
    let mut viewers = Vec::new();
    for _ in 0..4 {
        viewers.push(common::view(&base, "late").await);
    }
    let video = |v: &WhepViewer| {
        v.received()
            .iter()
            .filter(|p| p.kind == MediaKind::Video)
            .count()
    };
    let start: Vec<usize> = viewers.iter().map(video).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gained: Vec<usize> = viewers
        .iter()
        .zip(&start)
        .map(|(v, s)| video(v) - s)
        .collect();
    let live = scrape(&base, None).await;
    let stale = live.get("wishd_dropped_packets_total{reason=\"worker_queue_stale\"}");
    println!("live video packets per viewer over 2 s: {gained:?}; stale drops {stale}");
    assert!(stale > 0.0, "stale drops are counted");
    let most = *gained.iter().max().unwrap();
    assert!(
        most > 30,
        "viewers on the publisher's worker get live video"
    );
    assert!(
        gained.contains(&0),
        "viewers on the other worker get no late video: {gained:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_require_the_admin_token() {
    let server = common::start_with(|c| {
        c.api.token = Some(Secret::new(ADMIN));
        c.api.metrics_token_required = true;
    })
    .await;
    let base = server.base_url();
    let r = http_request("GET", &format!("{base}/metrics"), &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let s = scrape(&base, Some(ADMIN)).await;
    assert_eq!(s.get("wishd_auth_failures_total{reason=\"missing\"}"), 1.0);
    server.shutdown().await;
}
