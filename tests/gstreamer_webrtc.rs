//! GStreamer's own WebRTC stack as a WHIP publisher: webrtcbin with libnice (Debian's
//! GStreamer 1.22, driven by conformance/gstreamer/webrtcbin.py) sends x264 H.264
//! and Opus to the wishd binary, and three independent viewers decode it: headless
//! Chromium through the embeddable player, aiortc, and webrtcbin itself over WHEP. While Chromium plays, the media
//! path is cut for 8 s (packets to wishd's media address are blackholed): the player
//! must play again by itself once it is back.
//!
//! libnice gathers candidates on every interface and sends UPnP discovery, so the
//! publisher, wishd and both viewers run in a network namespace of this test (see
//! tests/clients). webrtcbin keeps the DTLS certificate it makes itself, RSA 2048,
//! which wishd's DTLS engine (OpenSSL, src/media/dtls/ossl.rs) takes as it takes the
//! browsers' ECDSA ones.

mod clients;

use std::time::Duration;

use clients::{Netns, Script, assert_ok, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_webrtcbin_with_its_rsa_certificate_publishes_and_plays() {
    clients::require_playwright();
    let ns = Netns::create("gst");
    let (_wishd, base) = ns.start_wishd().await;

    let mut publish = ns.command("/usr/bin/python3");
    publish.args([
        &conformance("gstreamer/webrtcbin.py"),
        "publish",
        &format!("{base}/whip/gst"),
        "30",
    ]);
    let mut gst = Script::spawn("gstreamer webrtcbin (WHIP)", publish);
    gst.wait_for("[gst-whip] publishing", Duration::from_secs(15))
        .await;

    let plan = serde_json::json!({
        "out": clients::out_dir(),
        "scenarios": [{ "name": "gstreamer", "kind": "watch", "base": base, "stream": "gst",
                        "expect_width": 640, "expect_height": 360, "drop_network_ms": 8000 }],
    });
    let mut node = ns.command("node");
    node.args([&conformance("browser/pages.mjs"), &plan.to_string()]);
    let chromium = clients::run("chromium (WHEP)", node, Duration::from_secs(60)).await;
    let r = &chromium["results"][0];
    assert!(
        r["ok"] == true,
        "chromium ← gstreamer: failed at step \"{}\": {}",
        r["step"].as_str().unwrap_or("?"),
        r["error"].as_str().unwrap_or("?")
    );
    assert_eq!(r["figures"]["codec"], "H264", "chromium ← gstreamer: codec");
    println!(
        "chromium player after its media path was cut for 8 s: playing again {} ms after the network came back ({}), saying {} meanwhile",
        r["figures"]["recovered_ms"],
        if r["figures"]["reconnected"] == true {
            "in a new session"
        } else {
            "in the same session"
        },
        r["figures"]["drop_messages"]
    );

    // aiortc and webrtcbin view side by side.
    let mut view = ns.command("/usr/bin/python3");
    view.args([
        &conformance("gstreamer/webrtcbin.py"),
        "view",
        &format!("{base}/whep/gst"),
        "3",
    ]);
    let gst_view = Script::spawn("gstreamer webrtcbin (WHEP)", view);
    let mut view = ns.command("/usr/bin/python3");
    view.args([
        &conformance("aiortc/wish.py"),
        "view",
        &format!("{base}/whep/gst"),
        "3",
    ]);
    let aiortc = clients::run("aiortc (WHEP)", view, Duration::from_secs(40)).await;
    assert_ok(&aiortc);
    assert_eq!(aiortc["figures"]["sizes"], serde_json::json!(["640x360"]));
    let gst_view = gst_view.finish(Duration::from_secs(40)).await;
    assert_ok(&gst_view);
    assert_eq!(gst_view["figures"]["size"], "640x360");
    assert_eq!(
        gst_view["figures"]["certificate"], "RSA 2048",
        "the viewer's webrtcbin kept its own certificate too"
    );

    gst.stop();
    let published = gst.finish(Duration::from_secs(40)).await;
    assert_ok(&published);
    assert_eq!(
        published["figures"]["certificate"], "RSA 2048",
        "webrtcbin's own certificate, as users run it"
    );
    println!(
        "gstreamer webrtcbin {} → wishd: ICE+DTLS connected {} ms after the answer; \
         chromium first frame {} ms after its WHEP POST, aiortc {} ms, webrtcbin {} ms \
         ({} video and {} audio frames in 3 s)",
        published["version"].as_str().unwrap_or("?"),
        published["figures"]["connected_ms"],
        r["figures"]["first_frame_ms"],
        aiortc["figures"]["first_frame_ms"],
        gst_view["figures"]["first_frame_ms"],
        gst_view["figures"]["video_frames"],
        gst_view["figures"]["audio_frames"],
    );
}
