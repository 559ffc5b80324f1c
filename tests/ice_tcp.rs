//! ICE over TCP (RFC 6544, passive on wishd's side): a client whose network lets no
//! UDP reach wishd connects over TCP to the media worker's port, and bad input over
//! TCP is refused without touching anyone else.
//!
//! Chromium runs in a network namespace of this test whose nftables rule drops every
//! UDP datagram to wishd (in another namespace, beside an ffmpeg RTP camera): its
//! selected candidate pair must be TCP, and the operator's API must say so.

mod clients;
mod common;

use std::time::Duration;

use clients::{Netns, Script, assert_ok, conformance};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ADMIN: &str = "ice-tcp-test-admin-token-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_without_udp_plays_over_ice_tcp() {
    clients::require_playwright();
    let wishd_ns = Netns::create("tcp-w");
    let viewer_ns = wishd_ns.linked("tcp-c", "10.79.0.1/24", "10.79.0.2/24");
    viewer_ns
        .drop_outgoing(&[&["ip", "daddr", "10.79.0.1", "meta", "l4proto", "udp"]])
        .await;

    let dir = std::env::temp_dir().join(format!("wishd-ice-tcp-{}", std::process::id()));
    let config = clients::wishd_config(
        &dir,
        "10.79.0.1:8080",
        "10.79.0.1:20000",
        ADMIN,
        Some(("127.0.0.1", 5004)),
        "",
    );
    let (_wishd, base) = wishd_ns.start_wishd_config(&config, "10.79.0.1:8080").await;
    let _camera = wishd_ns.start_camera(&dir, "127.0.0.1", 5004, 60);

    let plan = serde_json::json!({
        "out": clients::out_dir(),
        "scenarios": [{ "name": "ice-tcp", "kind": "watch", "base": base, "stream": "cam",
                        "audio": false, "expect_width": 640, "expect_height": 360,
                        "expect_path": "tcp" }],
    });
    let mut node = viewer_ns.command("node");
    node.args([&conformance("browser/pages.mjs"), &plan.to_string()]);
    let pages = Script::spawn("chromium (WHEP over ICE-TCP)", node);
    let api_path = wishd_ns
        .poll_json("http://10.79.0.1:8080/api/streams/cam", ADMIN, |d| {
            clients::session_path(d, "viewer", "protocol", "tcp").map(|(p, _)| p)
        })
        .await;
    let chromium = pages.finish(Duration::from_secs(60)).await;
    let r = &chromium["results"][0];
    assert!(
        r["ok"] == true,
        "chromium over ICE-TCP: failed at step \"{}\": {}",
        r["step"].as_str().unwrap_or("?"),
        r["error"].as_str().unwrap_or("?"),
    );
    let api_path = api_path.expect("the API shows the viewer's TCP path");
    println!(
        "chromium with no UDP to wishd: selected pair {}, first frame {} ms after its WHEP POST, \
         {} frames in 2 s; the API's path: {api_path}",
        r["figures"]["path"], r["figures"]["first_frame_ms"], r["figures"]["frames_in_2s"],
    );
    assert_eq!(api_path["local"], "10.79.0.1:20000");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A viewer over ICE-TCP that stops reading (Chromium frozen with SIGSTOP, as a
/// suspended laptop is: its kernel's receive window fills and stays closed) costs the
/// other viewer of the stream nothing: the server's forwarding latency in the stuck
/// window is what it was before, the other viewer keeps decoding, and the stuck
/// connection is dropped once `stall_timeout` passes without progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_tcp_viewer_is_dropped_and_delays_no_one_else() {
    clients::require_playwright();
    let wishd_ns = Netns::create("tcp-sw");
    let viewer_ns = wishd_ns.linked("tcp-sc", "10.79.1.1/24", "10.79.1.2/24");
    viewer_ns
        .drop_outgoing(&[&["ip", "daddr", "10.79.1.1", "meta", "l4proto", "udp"]])
        .await;
    // Small socket buffers on both ends, so a reader that stops closes the window
    // within a second of video rather than after megabytes of it.
    viewer_ns
        .sysctl("net.ipv4.tcp_rmem", "4096 8192 16384")
        .await;
    wishd_ns
        .sysctl("net.ipv4.tcp_wmem", "4096 8192 16384")
        .await;

    let dir = std::env::temp_dir().join(format!("wishd-ice-tcp-stuck-{}", std::process::id()));
    let config = clients::wishd_config(
        &dir,
        "10.79.1.1:8080",
        "0.0.0.0:20000",
        ADMIN,
        Some(("127.0.0.1", 5004)),
        "\n[ice_tcp]\nstall_timeout = \"2s\"\nqueue = 64\n",
    );
    let (_wishd, base) = wishd_ns.start_wishd_config(&config, "10.79.1.1:8080").await;
    let _camera = wishd_ns.start_camera(&dir, "127.0.0.1", 5004, 90);

    // The other viewer: aiortc over UDP, beside wishd.
    let mut view = wishd_ns.command("/usr/bin/python3");
    view.args([
        &conformance("aiortc/wish.py"),
        "view",
        &format!("{base}/whep/cam"),
        "24",
        "video",
    ]);
    let aiortc = Script::spawn("aiortc (WHEP over UDP)", view);

    let stop = dir.join("stop");
    let plan = serde_json::json!({
        "out": clients::out_dir(),
        "scenarios": [{ "name": "stuck", "kind": "timeline", "base": base, "stream": "cam",
                        "stop_file": stop, "max_seconds": 40 }],
    });
    let mut node = viewer_ns.command("node");
    node.args([&conformance("browser/pages.mjs"), &plan.to_string()]);
    let chromium = Script::spawn("chromium (WHEP over ICE-TCP, then frozen)", node);
    let tcp_viewer = wishd_ns
        .poll_json("http://10.79.1.1:8080/api/streams/cam", ADMIN, |d| {
            clients::session_path(d, "viewer", "protocol", "tcp")
        })
        .await;
    if tcp_viewer.is_none() {
        let out = chromium.finish(Duration::from_secs(5)).await;
        panic!("chromium does not play over ICE-TCP: {out}");
    }

    // Both viewers play: the window the stuck one is compared with.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m0 = wishd_ns.metrics(&base).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let m1 = wishd_ns.metrics(&base).await;
    let frozen = viewer_ns.signal("chrom", "STOP");
    assert!(frozen > 0, "no chromium process to freeze");
    let frozen_at = std::time::Instant::now();

    // The stuck connection is dropped after the stall bound.
    let stalled = "wishd_ice_tcp_connections_total{event=\"stalled\"}";
    let mut dropped_after = None;
    while frozen_at.elapsed() < Duration::from_secs(15) {
        if clients::counter(&wishd_ns.metrics(&base).await, stalled) >= 1 {
            dropped_after = Some(frozen_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dropped_after = dropped_after.expect("the stuck TCP viewer is dropped");
    let rest = Duration::from_secs(5).saturating_sub(frozen_at.elapsed());
    tokio::time::sleep(rest).await;
    let m2 = wishd_ns.metrics(&base).await;
    viewer_ns.signal("chrom", "CONT");
    std::fs::write(&stop, b"").expect("stop file");

    let name = "wishd_forward_latency_seconds";
    let (h0, h1, h2) = (
        clients::histogram(&m0, name),
        clients::histogram(&m1, name),
        clients::histogram(&m2, name),
    );
    let (p99_before, n_before) = clients::window_quantile(&h0, &h1, 0.99);
    let (p99_stuck, n_stuck) = clients::window_quantile(&h1, &h2, 0.99);
    let queue_full = clients::counter(
        &m2,
        "wishd_dropped_packets_total{reason=\"ice_tcp_queue_full\"}",
    );
    let aiortc = aiortc.finish(Duration::from_secs(40)).await;
    let _ = chromium.finish(Duration::from_secs(30)).await;
    println!(
        "stuck TCP viewer: dropped {} ms after it froze (stall_timeout 2 s), {queue_full} packets \
         dropped for it meanwhile; forwarding latency p99 ≤ {:.2} ms over {n_before} forwards \
         before, ≤ {:.2} ms over {n_stuck} while it was stuck; aiortc decoded {} video frames \
         in 24 s",
        dropped_after.as_millis(),
        p99_before * 1e3,
        p99_stuck * 1e3,
        aiortc["figures"]["video_frames"],
    );
    assert!(
        dropped_after <= Duration::from_secs(6),
        "dropped after {dropped_after:?}"
    );
    assert!(
        n_before > 100 && n_stuck > 100,
        "{n_before} / {n_stuck} forwards"
    );
    // The bucket bound of the p99 may move one step (250 µs buckets) with the
    // machine's noise; a worker waiting on the stuck socket would put it at
    // hundreds of milliseconds.
    assert!(
        p99_stuck <= (p99_before * 2.0).max(0.005),
        "p99 {p99_before} s before, {p99_stuck} s while stuck"
    );
    assert_ok(&aiortc);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads until the server closes the connection (or `limit` passes): whether it did.
async fn closed_by_server(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_over_tcp_closes_that_connection_alone() {
    let server = common::start_with(|c| {
        c.ice_tcp.idle_timeout = Duration::from_secs(2);
        c.ice_tcp.max_connections = 4;
    })
    .await;
    let base = server.base_url();
    let _p = common::publish(&base, "tcp-bad", Default::default()).await;
    let viewer = common::view(&base, "tcp-bad").await;
    let port = server.udp_addrs()[0].port();
    let at = ("127.0.0.1", port);

    // The answer offers the TCP port as a passive candidate below the UDP one.
    let answer = viewer.answer_sdp();
    let tcp = answer
        .lines()
        .find(|l| l.contains(" tcp ") && l.contains("tcptype passive"))
        .unwrap_or_else(|| panic!("no passive TCP candidate in\n{answer}"));
    let udp = answer
        .lines()
        .find(|l| l.starts_with("a=candidate") && l.contains(" udp "))
        .expect("a UDP candidate");
    let prio = |l: &str| {
        l.split_whitespace()
            .nth(3)
            .and_then(|p| p.parse::<u32>().ok())
    };
    assert!(prio(tcp) < prio(udp), "{tcp} / {udp}");

    // A frame longer than any WebRTC packet: closed at once.
    let mut huge = TcpStream::connect(at).await.expect("connect");
    huge.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
    assert!(closed_by_server(&mut huge, Duration::from_secs(3)).await);
    // A frame of garbage of a fitting size: nobody's packet, dropped, the connection
    // stays until it goes silent.
    let mut junk = TcpStream::connect(at).await.expect("connect");
    junk.write_all(&[0, 4, 9, 9, 9, 9]).await.unwrap();
    // Half a frame, then silence: closed after idle_timeout (2 s).
    let mut half = TcpStream::connect(at).await.expect("connect");
    half.write_all(&[0, 200, 1, 2, 3]).await.unwrap();
    assert!(closed_by_server(&mut half, Duration::from_secs(5)).await);
    assert!(closed_by_server(&mut junk, Duration::from_secs(5)).await);
    // More connections than allowed: the surplus is closed at accept.
    let mut many = Vec::new();
    for _ in 0..6 {
        many.push(TcpStream::connect(at).await.expect("connect"));
    }
    let mut refused = 0;
    for s in &mut many {
        if closed_by_server(s, Duration::from_millis(150)).await {
            refused += 1;
        }
    }
    let metrics_now =
        wishd::client::http_request("GET", &format!("{base}/metrics"), &[], Vec::new())
            .await
            .expect("metrics")
            .text();
    assert_eq!(
        refused,
        2,
        "4 connections allowed per worker: {:?}",
        metrics_now
            .lines()
            .filter(|l| l.starts_with("wishd_ice_tcp"))
            .collect::<Vec<_>>()
    );

    // The viewer never noticed.
    let before = viewer.received_count();
    viewer
        .wait_for(Duration::from_secs(5), |p| p.len() > before + 30)
        .await
        .expect("the UDP viewer still gets media");
    let metrics = wishd::client::http_request("GET", &format!("{base}/metrics"), &[], Vec::new())
        .await
        .expect("metrics")
        .text();
    for (event, least) in [
        ("bad_frame", 1),
        ("idle", 2),
        ("refused", 2),
        ("accepted", 7),
    ] {
        let line = format!("wishd_ice_tcp_connections_total{{event=\"{event}\"}} ");
        let n: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        assert!(n >= least, "{event}: {n} (at least {least})\n{metrics}");
    }
    drop(many);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_webrtcbin_publishes_over_ice_tcp() {
    clients::require(
        "/usr/bin/gst-launch-1.0",
        "apt-get install gstreamer1.0-tools",
    );
    let ns = Netns::create("tcp-gst");
    let dir = std::env::temp_dir().join(format!("wishd-ice-tcp-gst-{}", std::process::id()));
    let udp = format!("{}:20000", Netns::ICE_ADDR);
    let config = clients::wishd_config(&dir, "127.0.0.1:8080", &udp, ADMIN, None, "");
    let (_wishd, base) = ns.start_wishd_config(&config, "127.0.0.1:8080").await;
    // libnice's UDP never reaches wishd's media port; its TCP does.
    ns.drop_outgoing(&[&["udp", "dport", "20000"]]).await;

    let mut publish = ns.command("/usr/bin/python3");
    publish
        .args([
            &conformance("gstreamer/webrtcbin.py"),
            "publish",
            &format!("{base}/whip/gst"),
            "6",
        ])
        .env("GST_WHIP_ICE_TCP", "1");
    let mut gst = Script::spawn("gstreamer webrtcbin (WHIP over ICE-TCP)", publish);
    gst.wait_for("[gst-whip] publishing", Duration::from_secs(20))
        .await;
    let path = ns
        .poll_json("http://127.0.0.1:8080/api/streams/gst", ADMIN, |d| {
            clients::session_path(d, "publisher", "protocol", "tcp").filter(|(_, n)| *n > 100)
        })
        .await;
    let published = gst.finish(Duration::from_secs(30)).await;
    clients::assert_ok(&published);
    let (path, packets) = path.expect("the API shows the publisher's TCP path with media");
    println!(
        "gstreamer webrtcbin with no UDP to wishd: ICE+DTLS over TCP {} ms after the answer, \
         {packets} RTP packets in; the API's path: {path}",
        published["figures"]["connected_ms"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_port_held_by_another_program_costs_ice_tcp_not_the_start() {
    // Another program holds TCP on the port the media worker's UDP socket will use.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("a free TCP port");
    let port = held.local_addr().expect("addr").port();
    let server = common::start_with(|c| {
        c.udp = format!("127.0.0.1:{port}").parse().unwrap();
        c.workers = 1;
    })
    .await;
    let base = server.base_url();
    let _p = common::publish(&base, "held", Default::default()).await;
    let viewer = common::view(&base, "held").await;
    assert!(
        !viewer.answer_sdp().contains("tcptype passive"),
        "{}",
        viewer.answer_sdp()
    );
    viewer
        .wait_for(Duration::from_secs(5), |p| p.len() > 30)
        .await
        .expect("media over UDP as usual");
    server.shutdown().await;
    drop(held);
}
