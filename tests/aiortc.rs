//! aiortc (Python WebRTC; Debian's python3-aiortc, driven by conformance/aiortc/wish.py)
//! as an independent WHIP publisher and WHEP viewer of the wishd binary: one aiortc
//! publishes VP8 and Opus, another decodes it.
//!
//! aioice never gathers on the loopback interface, so both run with wishd in a network
//! namespace of this test, on a veth carrying 127.0.0.2 (see tests/clients).

mod clients;

use std::time::Duration;

use clients::{Netns, Script, assert_ok, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publishes_vp8_over_whip_and_another_aiortc_decodes_it_over_whep() {
    let ns = Netns::create("aiortc");
    let (_wishd, base) = ns.start_wishd().await;

    let mut publish = ns.command("/usr/bin/python3");
    publish.args([
        &conformance("aiortc/wish.py"),
        "publish",
        &format!("{base}/whip/py"),
        "30",
        "VP8",
    ]);
    let mut publisher = Script::spawn("aiortc (WHIP)", publish);
    publisher
        .wait_for("publish: connected", Duration::from_secs(20))
        .await;

    let mut view = ns.command("/usr/bin/python3");
    view.args([
        &conformance("aiortc/wish.py"),
        "view",
        &format!("{base}/whep/py"),
        "3",
    ]);
    let viewer = clients::run("aiortc (WHEP)", view, Duration::from_secs(40)).await;
    assert_ok(&viewer);
    let f = &viewer["figures"];
    assert_eq!(f["codec"], "VP8", "aiortc viewer: codec");
    assert_eq!(
        f["sizes"],
        serde_json::json!(["640x360"]),
        "aiortc viewer: frame size"
    );

    publisher.stop();
    let published = publisher.finish(Duration::from_secs(30)).await;
    assert_ok(&published);
    println!(
        "aiortc {} → wishd → aiortc: {} video frames and {} audio frames in 3 s, first frame {} ms after the WHEP POST",
        viewer["version"].as_str().unwrap_or("?"),
        f["video_frames"],
        f["audio_frames"],
        f["first_frame_ms"]
    );
}
