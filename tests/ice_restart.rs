//! Media across an ICE restart (RFC 9725 §4.3.3): the str0m peers restart through
//! PATCH with `If-Match: *`, with the same socket and after moving to a new local
//! socket (a new address, as after a network change), and media keeps flowing both
//! ways: publisher → wishd → viewer.

mod common;

use std::time::Duration;

use str0m::media::MediaKind;
use wishd::client::media::decode_marker;
use wishd::client::{
    PublisherOptions, ReceivedPacket, ViewerOptions, WhepViewer, WhipPublisher, http_request,
};

/// The highest video frame number the viewer got so far.
fn last_video_frame(v: &WhepViewer) -> u64 {
    v.received()
        .iter()
        .filter(|p| p.kind == MediaKind::Video)
        .filter_map(|p| decode_marker(&p.payload).map(|m| m.frame))
        .max()
        .unwrap_or(0)
}

/// Waits until the viewer has video frames newer than `after` plus `more`, and audio
/// that arrived after `since` packets.
async fn media_continues(v: &WhepViewer, after: u64, more: u64) {
    let want = after + more;
    v.wait_for(Duration::from_secs(10), |pk: &[ReceivedPacket]| {
        pk.iter()
            .filter(|p| p.kind == MediaKind::Video)
            .filter_map(|p| decode_marker(&p.payload))
            .any(|m| m.frame >= want)
    })
    .await
    .unwrap_or_else(|e| panic!("no video frame {want} after the restart: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_across_ice_restarts_with_the_same_and_a_new_address() {
    let server = common::start().await;
    let base = server.base_url();
    let mut p = WhipPublisher::connect(&format!("{base}/whip/s"), PublisherOptions::default())
        .await
        .unwrap();
    p.wait_connected(common::CONNECT).await.unwrap();
    let mut v = WhepViewer::connect(&format!("{base}/whep/s"), ViewerOptions::default())
        .await
        .unwrap();
    v.wait_connected(common::CONNECT).await.unwrap();
    media_continues(&v, 0, 10).await;

    // 1. The publisher restarts ICE on its socket.
    let etag = p.etag().unwrap().to_owned();
    let r = p.ice_restart(false).await.expect("restart accepted");
    assert_eq!(r.status, 200);
    assert_ne!(
        p.etag().unwrap(),
        etag,
        "a new ETag for the new ICE session"
    );
    media_continues(&v, last_video_frame(&v), 15).await;

    // 2. The publisher moves to a new socket: its old address is gone for good.
    let old = p.local_addr();
    p.ice_restart(true).await.expect("restart to a new address");
    assert_ne!(p.local_addr(), old);
    media_continues(&v, last_video_frame(&v), 15).await;

    // 3. The viewer moves too, and still receives.
    let old = v.local_addr();
    v.ice_restart(true).await.expect("viewer restart");
    assert_ne!(v.local_addr(), old);
    let before = v.received_count();
    media_continues(&v, last_video_frame(&v), 15).await;
    assert!(v.received_count() > before);
    assert!(p.is_connected() && v.is_connected());

    // The old ETag is stale now; the session itself is the same one.
    let stale = http_request(
        "PATCH",
        p.location(),
        &[
            ("content-type", "application/trickle-ice-sdpfrag"),
            ("if-match", &etag),
        ],
        b"a=end-of-candidates\r\n".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(stale.status, 412);
    let c = server.directory().counts();
    assert_eq!((c.publishers, c.viewers), (1, 1));
    assert_eq!(v.delete().await.unwrap(), 200);
    assert_eq!(p.delete().await.unwrap(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_moved_many_times_keeps_flowing_and_its_old_address_is_free() {
    let server = common::start_with(|c| c.workers = 1).await;
    let base = server.base_url();
    let mut p = WhipPublisher::connect(&format!("{base}/whip/a"), PublisherOptions::default())
        .await
        .unwrap();
    p.wait_connected(common::CONNECT).await.unwrap();
    let v = WhepViewer::connect(&format!("{base}/whep/a"), ViewerOptions::default())
        .await
        .unwrap();
    media_continues(&v, 0, 5).await;
    let first = p.local_addr();
    // More moves than the server keeps addresses per session.
    for _ in 0..20 {
        p.ice_restart(true).await.expect("restart to a new address");
    }
    media_continues(&v, last_video_frame(&v), 15).await;

    // Another client now on the first publisher's old address gets its own session.
    let other = WhipPublisher::connect(
        &format!("{base}/whip/b"),
        PublisherOptions {
            bind_port: first.port(),
            ..PublisherOptions::default()
        },
    )
    .await
    .expect("the old port is free again");
    assert_eq!(other.local_addr(), first);
    other
        .wait_connected(common::CONNECT)
        .await
        .expect("a reused address reaches its own session");
    media_continues(&v, last_video_frame(&v), 10).await;
    server.shutdown().await;
}
