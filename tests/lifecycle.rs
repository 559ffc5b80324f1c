//! Sessions come and go without leaving anything behind, hostile input changes
//! nothing, and shutdown is prompt.

mod common;

use std::time::{Duration, Instant};

use wishd::client::{
    PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher, http_request, publisher_offer,
};
use wishd::core::MediaKind;
use wishd::server::ServerStats;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn settle(
    server: &wishd::server::Server,
    want: impl Fn(&ServerStats) -> bool,
) -> ServerStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = server.stats().await;
        if want(&s) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_create_delete_cycles_leave_no_session_task_or_socket() {
    let server = common::start().await;
    let base = server.base_url();
    let baseline = server.stats().await;
    let tasks_at_start = baseline.server_tasks;

    let publisher =
        WhipPublisher::connect(&format!("{base}/whip/cyc"), PublisherOptions::default())
            .await
            .unwrap();
    publisher.wait_connected(common::CONNECT).await.unwrap();
    // Warm up once so lazily created runtime resources are not counted as leaks.
    let v = WhepViewer::connect(&format!("{base}/whep/cyc"), ViewerOptions::default())
        .await
        .unwrap();
    assert_eq!(v.delete().await.unwrap(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fds_before = open_fds();

    for i in 0..200 {
        let v = WhepViewer::connect(&format!("{base}/whep/cyc"), ViewerOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cycle {i}: {e}"));
        if i % 20 == 0 {
            // Some cycles go all the way to media before the DELETE.
            v.wait_connected(common::CONNECT).await.unwrap();
            v.wait_for(Duration::from_secs(5), |p| {
                p.iter().any(|p| p.kind == MediaKind::Video)
            })
            .await
            .unwrap();
        }
        assert_eq!(v.delete().await.unwrap(), 200, "cycle {i}");
    }
    for i in 0..20 {
        // Publisher cycles on a second stream, with a viewer that never connects.
        let p = WhipPublisher::connect(&format!("{base}/whip/pub{i}"), PublisherOptions::default())
            .await
            .unwrap();
        assert_eq!(p.delete().await.unwrap(), 200);
    }
    assert_eq!(publisher.delete().await.unwrap(), 200);

    let s = settle(&server, |s| s.worker_sessions == 0 && s.worker_routes == 0).await;
    assert_eq!(s.worker_sessions, 0, "sessions left in workers: {s:?}");
    assert_eq!(s.worker_routes, 0, "routing entries left: {s:?}");
    assert_eq!(s.worker_timers, 0, "timers left: {s:?}");
    assert_eq!(s.worker_viewers, 0, "fan-out viewers left: {s:?}");
    assert_eq!(s.worker_publishers, 0, "publishers left: {s:?}");
    assert_eq!(s.directory.viewers, 0);
    assert_eq!(s.directory.publishers, 0);
    assert_eq!(s.server_tasks, tasks_at_start, "server tasks grew");
    let c = server.counters();
    let created = c
        .sessions_created
        .load(std::sync::atomic::Ordering::Relaxed);
    let closed = c.sessions_closed.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(created, closed);
    assert_eq!(created, 1 + 1 + 200 + 20);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds_after = open_fds();
    assert!(
        fds_after <= fds_before + 2,
        "file descriptors grew from {fds_before} to {fds_after}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_datagrams_on_the_media_port_do_not_disturb_sessions() {
    let server = common::start().await;
    let base = server.base_url();
    let _p = WhipPublisher::connect(&format!("{base}/whip/g"), PublisherOptions::default())
        .await
        .unwrap();
    let v = WhepViewer::connect(&format!("{base}/whep/g"), ViewerOptions::default())
        .await
        .unwrap();
    v.wait_connected(common::CONNECT).await.unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for n in 0..3000usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed as usize) % 1400;
        let mut d: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
        // Some look like STUN, RTP (0x80) or DTLS (22) to reach deeper parsers.
        match n % 4 {
            0 if len > 8 => {
                d[0] = 0;
                d[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            }
            1 if len > 1 => d[0] = 0x80,
            2 if len > 1 => d[0] = 22,
            _ => {}
        }
        for addr in server.udp_addrs() {
            let _ = sock.send_to(&d, addr).await;
        }
    }
    let before = v.received_count();
    v.wait_for(Duration::from_secs(5), |p| p.len() > before + 100)
        .await
        .expect("media keeps flowing");
    assert!(v.is_connected());
    let r = http_request(
        "POST",
        &format!("{base}/whip/other"),
        &[("content-type", "application/sdp")],
        publisher_offer(&PublisherOptions::default())
            .unwrap()
            .into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "server still creates sessions");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_sessions_and_returns_within_five_seconds() {
    let server = common::start().await;
    let base = server.base_url();
    let _p = WhipPublisher::connect(&format!("{base}/whip/s"), PublisherOptions::default())
        .await
        .unwrap();
    let v = WhepViewer::connect(&format!("{base}/whep/s"), ViewerOptions::default())
        .await
        .unwrap();
    v.wait_connected(common::CONNECT).await.unwrap();
    let counters = server.counters().clone();
    let t = Instant::now();
    server.shutdown().await;
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert_eq!(
        counters.sessions.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // The viewer learns the session is over (DTLS close_notify) instead of timing out.
    let deadline = Instant::now() + Duration::from_secs(3);
    while v.is_connected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!v.is_connected(), "viewer was not told the session ended");
    assert!(
        http_request("POST", &format!("{base}/whip/x"), &[], vec![])
            .await
            .is_err()
    );
}

/// medooze's whip-whep client, and every player that calls `pc.close()` before its
/// DELETE: the DTLS close_notify ends the session first, and the DELETE that follows
/// still gets 200 (not 404 and a "refused" log line for every normal departure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_that_closes_before_it_deletes_gets_200() {
    let server = common::start().await;
    let base = server.base_url();
    let _p = WhipPublisher::connect(&format!("{base}/whip/s"), PublisherOptions::default())
        .await
        .unwrap();
    let v = WhepViewer::connect(&format!("{base}/whep/s"), ViewerOptions::default())
        .await
        .unwrap();
    v.wait_connected(common::CONNECT).await.unwrap();
    let location = v.location().to_string();
    let status = v.close_then_delete().await.expect("DELETE answered");
    assert_eq!(status, 200, "DELETE after the peer closed");
    let stats = settle(&server, |s| s.directory.viewers == 0).await;
    assert_eq!(stats.directory.viewers, 0);
    // The close ended it, before the DELETE came.
    let ended = &server.counters().session_metrics;
    assert_eq!(ended.ended_total(wishd::model::EndReason::PeerClosed), 1);
    assert_eq!(ended.ended_total(wishd::model::EndReason::Delete), 0);
    // Deleted once, it is gone: a second DELETE is 404 (WHIP-10).
    let again = http_request("DELETE", &location, &[], vec![])
        .await
        .unwrap();
    assert_eq!(again.status, 404, "{}", again.text());
    // A session that never existed on that stream is still 404.
    let other = location.replace("/whep/s/", "/whep/t/");
    let r = http_request("DELETE", &other, &[], vec![]).await.unwrap();
    assert_eq!(r.status, 404, "{}", r.text());
    server.shutdown().await;
}
