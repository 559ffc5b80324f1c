//! Chromium plays over IPv6 alone: wishd listens dual-stack (`[::]` for HTTP and
//! media) in one network namespace of this test, beside an ffmpeg RTP camera;
//! headless Chromium runs in another whose only address is IPv6 (fd00:78::2, no IPv4
//! on its link). The embedded player loads over IPv6, and the candidate pair ICE
//! selects must end at wishd's IPv6 address.

mod clients;

use std::time::Duration;

use clients::{Netns, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_with_only_ipv6_plays_from_a_dual_stack_wishd() {
    clients::require_playwright();
    let wishd_ns = Netns::create("six-w");
    let viewer_ns = wishd_ns.linked("six-c", "10.78.0.1/24", "10.78.0.2/24");
    // The viewer's side keeps IPv6 alone.
    viewer_ns.ip(&["addr", "flush", "dev", "vr"]);
    wishd_ns.ip(&["addr", "add", "fd00:78::1/64", "dev", "vl", "nodad"]);
    viewer_ns.ip(&["addr", "add", "fd00:78::2/64", "dev", "vr", "nodad"]);

    let dir = std::env::temp_dir().join(format!("wishd-ipv6-{}", std::process::id()));
    let config = clients::wishd_config(
        &dir,
        "[::]:8080",
        "[::]:20000",
        "ipv6-test-admin-token-0123",
        Some(("127.0.0.1", 5004)),
        "",
    );
    let (_wishd, _) = wishd_ns.start_wishd_config(&config, "[::]:8080").await;
    let base = "http://[fd00:78::1]:8080";
    let _camera = wishd_ns.start_camera(&dir, "127.0.0.1", 5004, 60);

    let plan = serde_json::json!({
        "out": clients::out_dir(),
        "scenarios": [{ "name": "ipv6", "kind": "watch", "base": base, "stream": "cam",
                        "audio": false, "expect_width": 640, "expect_height": 360,
                        "expect_remote": "fd00:78::1" }],
    });
    let mut node = viewer_ns.command("node");
    node.args([&conformance("browser/pages.mjs"), &plan.to_string()]);
    let chromium = clients::run("chromium (WHEP over IPv6)", node, Duration::from_secs(60)).await;
    let r = &chromium["results"][0];
    assert!(
        r["ok"] == true,
        "chromium over IPv6: failed at step \"{}\": {}",
        r["step"].as_str().unwrap_or("?"),
        r["error"].as_str().unwrap_or("?"),
    );
    println!(
        "chromium with IPv6 alone: media from {} ({}), first frame {} ms after its WHEP POST",
        r["figures"]["remote"], r["figures"]["path"], r["figures"]["first_frame_ms"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
