//! The HTTP edge under abuse: an HTTP/2 client that drips a request's headers, more
//! connections from one address than allowed, the HTTP/2 stream cap a client is
//! told, and a POST flood from one address (429) and from many (the session cap,
//! 503) while a viewer that was already watching loses nothing.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use wishd::client::{PublisherOptions, publisher_offer};
use wishd::core::MediaKind;

/// Reads until the server closes the connection; how long that took, or `None` if it
/// was still open after `within`.
async fn closed_after(tcp: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(within, tcp.read_to_end(&mut buf))
        .await
        .ok()
        .map(|_| start.elapsed())
}

/// An HTTP/2 frame: length, type, flags, stream id, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_drips_its_headers_is_cut_off() {
    let server = common::start_with(|c| {
        c.limits.header_read_timeout = Duration::from_millis(500);
        c.limits.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let mut tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    tcp.write_all(PREFACE).await.unwrap();
    tcp.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    // HEADERS without END_HEADERS (:method GET, indexed), then a CONTINUATION of one
    // byte every 150 ms: never silent for the idle time, never a whole request.
    tcp.write_all(&frame(1, 0, 1, &[0x82])).await.unwrap();
    let (mut read, mut write) = tcp.into_split();
    let drip = tokio::spawn(async move {
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            if write.write_all(&frame(9, 0, 1, &[0x86])).await.is_err() {
                return;
            }
        }
    });
    let start = Instant::now();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(6), read.read_to_end(&mut buf))
        .await
        .is_ok();
    drip.abort();
    assert!(
        closed,
        "a dripped HTTP/2 header block kept the connection for 6 s"
    );
    println!(
        "an HTTP/2 header block dripped a byte every 150 ms: closed {} ms in (header_read_timeout 500 ms)",
        start.elapsed().as_millis()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_are_told_the_stream_cap() {
    let server = common::start_with(|c| c.limits.max_streams_per_connection = 7).await;
    let mut tcp = TcpStream::connect(server.http_addr()).await.unwrap();
    tcp.write_all(PREFACE).await.unwrap();
    tcp.write_all(&frame(4, 0, 0, &[])).await.unwrap();
    // The server's first frame is its SETTINGS: 6-byte entries of id and value.
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.unwrap();
    assert_eq!(head[3], 4, "a SETTINGS frame first");
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).await.unwrap();
    let max_streams = body.chunks(6).find_map(|e| {
        (u16::from_be_bytes([e[0], e[1]]) == 3)
            .then(|| u32::from_be_bytes([e[2], e[3], e[4], e[5]]))
    });
    assert_eq!(max_streams, Some(7), "SETTINGS_MAX_CONCURRENT_STREAMS");
    server.shutdown().await;
}

/// A TCP connection to `server` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    s.connect(server).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_address_cap_are_closed_at_accept() {
    let server = common::start_with(|c| c.limits.max_connections_per_address = 4).await;
    let addr = server.http_addr();
    let from = Ipv4Addr::new(127, 0, 0, 21);
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(connect_from(from, addr).await);
    }
    let mut closed = 0;
    for c in &mut held {
        if closed_after(c, Duration::from_millis(200)).await.is_some() {
            closed += 1;
        }
    }
    assert_eq!(closed, 2, "4 connections allowed from one address");
    // Another address is not affected, and a freed slot is free again.
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 22), addr).await;
    assert!(
        closed_after(&mut other, Duration::from_millis(200))
            .await
            .is_none()
    );
    held.truncate(1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = connect_from(from, addr).await;
    assert!(
        closed_after(&mut again, Duration::from_millis(200))
            .await
            .is_none()
    );
    let metrics = wishd::client::http_request(
        "GET",
        &format!("{}/metrics", server.base_url()),
        &[],
        Vec::new(),
    )
    .await
    .unwrap()
    .text();
    assert!(
        metrics.contains("wishd_http_connections_refused_total 2"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("refused"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    server.shutdown().await;
}

/// One WHIP POST from `from`; its status and Retry-After.
async fn post_from(from: Ipv4Addr, server: SocketAddr, stream: &str) -> (u16, Option<String>) {
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    let mut tcp = connect_from(from, server).await;
    let req = format!(
        "POST /whip/{stream} HTTP/1.1\r\nHost: wishd\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{offer}",
        offer.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let retry = text.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after:")
            .map(|v| v.trim().to_string())
    });
    (status, retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_flood_meets_429_and_the_session_cap_while_a_viewer_loses_nothing() {
    let server = common::start_with(|c| {
        c.limits.requests_per_second = 1.0;
        c.limits.burst = 2;
        c.limits.max_sessions = 8;
    })
    .await;
    let base = server.base_url();
    let addr = server.http_addr();
    let _p = common::publish(&base, "s", Default::default()).await;
    let viewer = common::view(&base, "s").await;
    viewer
        .wait_for(Duration::from_secs(5), |p| p.len() > 30)
        .await
        .expect("the viewer plays before the flood");
    let before = viewer.received_count();

    // From one address: its burst, then 429.
    let one = Ipv4Addr::new(127, 0, 0, 31);
    let mut from_one = Vec::new();
    for i in 0..8 {
        from_one.push(post_from(one, addr, &format!("one{i}")).await);
    }
    // From 60 addresses at once: the session cap (8, two of them the viewer's stream).
    let flood: Vec<_> = (0..60u8)
        .map(|i| {
            tokio::spawn(post_from(
                Ipv4Addr::new(127, 0, 1, 10 + i),
                addr,
                Box::leak(format!("many{i}").into_boxed_str()),
            ))
        })
        .collect();
    let mut from_many = Vec::new();
    for f in flood {
        from_many.push(f.await.unwrap());
    }
    // And for two seconds after it.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let count = |list: &[(u16, Option<String>)], s: u16| list.iter().filter(|r| r.0 == s).count();
    println!(
        "8 POSTs from one address: {} × 201, {} × 503, {} × 429; 60 from 60 addresses: \
         {} × 201, {} × 503 (session cap 8)",
        count(&from_one, 201),
        count(&from_one, 503),
        count(&from_one, 429),
        count(&from_many, 201),
        count(&from_many, 503),
    );
    assert_eq!(
        count(&from_one, 429),
        6,
        "one address: its burst of 2, then 429: {from_one:?}"
    );
    assert!(
        from_one
            .iter()
            .filter(|r| r.0 == 429)
            .all(|r| r.1.is_some())
    );
    assert_eq!(
        count(&from_one, 201) + count(&from_many, 201),
        6,
        "sessions up to the cap of 8 (the publisher and viewer hold 2)"
    );
    assert_eq!(count(&from_many, 201) + count(&from_many, 503), 60);
    assert!(
        from_many
            .iter()
            .filter(|r| r.0 == 503)
            .all(|r| r.1.is_some())
    );

    // The viewer that was watching lost nothing meanwhile.
    let got = viewer.received();
    let video: Vec<u64> = got[before..]
        .iter()
        .filter(|p| p.kind == MediaKind::Video)
        .map(|p| p.seq)
        .collect();
    let (first, last) = (
        video.first().copied().unwrap_or(0),
        video.last().copied().unwrap_or(0),
    );
    let mut seen: Vec<u64> = video.clone();
    seen.sort_unstable();
    seen.dedup();
    let expected = last.saturating_sub(first) + 1;
    let lost = expected.saturating_sub(seen.len() as u64);
    println!(
        "the viewer meanwhile: {} video packets, {lost} lost",
        seen.len()
    );
    assert!(
        seen.len() > 50,
        "{} video packets during the flood",
        seen.len()
    );
    assert_eq!(lost, 0, "the viewer lost packets during the flood");
    server.shutdown().await;
}
