//! End-to-end media through a real wishd: str0m publishers and viewers on loopback.

mod common;

use std::time::Duration;

use wishd::client::media::decode_marker;
use wishd::client::{PublisherOptions, VideoCodec, ViewerOptions, WhepViewer, WhipPublisher};
use wishd::core::MediaKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_viewer_receives_h264_and_opus_from_a_publisher() {
    let server = common::start().await;
    let base = server.base_url();
    let publisher =
        WhipPublisher::connect(&format!("{base}/whip/cam"), PublisherOptions::default())
            .await
            .expect("publish");
    publisher
        .wait_connected(common::CONNECT)
        .await
        .expect("publisher connects");
    let viewer = WhepViewer::connect(&format!("{base}/whep/cam"), ViewerOptions::default())
        .await
        .expect("view");
    viewer
        .wait_connected(common::CONNECT)
        .await
        .expect("viewer connects");
    viewer
        .wait_for(Duration::from_secs(10), |p| {
            p.iter().filter(|p| p.kind == MediaKind::Video).count() > 50
                && p.iter().filter(|p| p.kind == MediaKind::Audio).count() > 20
        })
        .await
        .expect("media arrives");
    let got = viewer.received();
    let first_video = got.iter().find(|p| p.kind == MediaKind::Video).unwrap();
    assert!(decode_marker(&first_video.payload).is_some());
    let _ = VideoCodec::H264;
    server.shutdown().await;
}
