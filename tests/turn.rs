//! A viewer whose network lets no UDP reach wishd plays through a TURN relay, with the
//! credentials wishd mints for coturn's `static-auth-secret` and hands out in its
//! `Link` headers (RFC 9725 §4.6).
//!
//! Three network namespaces of this test: wishd (10.80.0.1, with an ffmpeg RTP camera
//! beside it), coturn between the two links (10.80.0.2 towards wishd, 10.81.0.1
//! towards the viewer, forwarding), and headless Chromium (10.81.0.2), whose
//! nftables rules drop every UDP datagram to wishd and every TCP segment but HTTP's
//! (no ICE-TCP either). HTTP to wishd is routed through the middle namespace; media
//! can only go relayed. The embedded `<wishd-player>` and
//! the publish page ask the endpoint for its ICE servers (OPTIONS) before their
//! offers, so their relayed candidates are in them, and the candidate pairs ICE
//! selects must be `relay`: the player of the camera, and the publish page with the
//! watch page playing what it publishes.

mod clients;

use std::time::Duration;

use clients::{Netns, Script, conformance};

const SECRET: &str = "turn-test-secret-7f3a";
const ADMIN: &str = "turn-test-admin-token-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_without_udp_to_wishd_plays_through_coturn_with_the_linked_credentials() {
    clients::require_playwright();
    clients::require("/usr/bin/turnserver", "apt-get install coturn");

    let wishd_ns = Netns::create("turn-w");
    let relay_ns = wishd_ns.linked("turn-t", "10.80.0.1/24", "10.80.0.2/24");
    let viewer_ns = relay_ns.linked("turn-c", "10.81.0.1/24", "10.81.0.2/24");
    wishd_ns.ip(&["route", "add", "10.81.0.0/24", "via", "10.80.0.2"]);
    viewer_ns.ip(&["route", "add", "10.80.0.0/24", "via", "10.81.0.1"]);
    relay_ns
        .run("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"], "procps")
        .await;
    // Neither UDP nor ICE-TCP: only HTTP reaches wishd directly.
    viewer_ns
        .drop_outgoing(&[
            &["ip", "daddr", "10.80.0.1", "meta", "l4proto", "udp"],
            &["ip", "daddr", "10.80.0.1", "tcp", "dport", "!=", "8080"],
        ])
        .await;

    let dir = std::env::temp_dir().join(format!("wishd-turn-{}", std::process::id()));
    let turn_server = format!(
        "\n[[ice_servers]]\nurls = [\"turn:10.81.0.1:3478?transport=udp\"]\n\
         static_auth_secret = \"{SECRET}\"\n"
    );
    let config = clients::wishd_config(
        &dir,
        "10.80.0.1:8080",
        "10.80.0.1:20000",
        ADMIN,
        Some(("10.80.0.1", 5004)),
        &turn_server,
    );
    let (_wishd, base) = wishd_ns.start_wishd_config(&config, "10.80.0.1:8080").await;
    let _camera = wishd_ns.start_camera(&dir, "10.80.0.1", 5004, 60);

    let mut coturn = relay_ns.command("/usr/bin/turnserver");
    coturn.args([
        "-n",
        "--listening-ip=10.81.0.1",
        "--listening-port=3478",
        "--relay-ip=10.80.0.2",
        "--min-port=49160",
        "--max-port=49199",
        "--use-auth-secret",
        &format!("--static-auth-secret={SECRET}"),
        "--realm=wishd.test",
        "--allowed-peer-ip=10.80.0.1",
        "--no-tls",
        "--no-dtls",
        "--no-tcp-relay",
        "--no-cli",
        "--fingerprint",
        "--log-file=stdout",
        "--simple-log",
        &format!("--userdb={}", dir.join("turndb").display()),
    ]);
    let mut turn = Script::spawn("coturn", coturn);
    turn.wait_for("Total General servers", Duration::from_secs(10))
        .await;

    let plan = serde_json::json!({
        "out": clients::out_dir(),
        "secure_origins": [base],
        "scenarios": [
            { "name": "relayed", "kind": "watch", "base": base, "stream": "cam",
              "audio": false, "expect_width": 640, "expect_height": 360,
              "expect_path": "relay" },
            { "name": "relayed-publish", "kind": "publish-watch", "base": base,
              "stream": "web", "codec": "H264", "resolution": "640x360",
              "expect_path": "relay" },
        ],
    });
    let mut node = viewer_ns.command("node");
    node.args([&conformance("browser/pages.mjs"), &plan.to_string()]);
    let pages = Script::spawn("chromium (WHEP through TURN)", node);
    // While the player plays, the operator's API shows the pair its media uses.
    let api_path = wishd_ns
        .poll_json("http://10.80.0.1:8080/api/streams/cam", ADMIN, |d| {
            clients::session_path(d, "viewer", "remote_type", "relay").map(|(p, _)| p)
        })
        .await;
    let chromium = pages.finish(Duration::from_secs(60)).await;
    for r in chromium["results"].as_array().expect("results") {
        assert!(
            r["ok"] == true,
            "chromium through coturn, {}: failed at step \"{}\": {}\ncoturn:\n{}",
            r["name"],
            r["step"].as_str().unwrap_or("?"),
            r["error"].as_str().unwrap_or("?"),
            turn.output()
        );
    }
    let watch = &chromium["results"][0]["figures"];
    let publish = &chromium["results"][1]["figures"];
    println!(
        "chromium with no UDP to wishd, through coturn: the player of a camera decoded its \
         first frame {} ms after its WHEP POST ({} frames in 2 s); the publish page went live \
         and its watcher decoded {}x{} {} ms after its POST",
        watch["first_frame_ms"],
        watch["frames_in_2s"],
        publish["width"],
        publish["height"],
        publish["first_frame_ms"],
    );
    let api_path = api_path
        .unwrap_or_else(|| panic!("the API never showed a viewer of cam with a relay path"));
    println!("the API's path of the relayed viewer: {api_path}");
    assert_eq!(api_path["protocol"], "udp");
    assert!(
        api_path["remote"]
            .as_str()
            .is_some_and(|r| r.starts_with("10.80.0.2:")),
        "the relayed address is coturn's: {api_path}"
    );
    turn.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
