//! `wishd check-network` behind a NAT: the media host (10.85.0.1) reaches the STUN
//! server (coturn, 10.86.0.2) through a router namespace that masquerades it as
//! 10.86.0.1. The check must see that mapping, say it is not advertised and exit 1;
//! with `--public-ip 10.86.0.1` it must say ok and exit 0; with no STUN server to ask,
//! exit 2.

mod clients;

use std::time::Duration;

use clients::{Netns, Script};

async fn check(ns: &Netns, extra: &[&str]) -> (i32, String) {
    let mut c = ns.command(env!("CARGO_BIN_EXE_wishd"));
    // The server's flags, then the subcommand and its own.
    c.args(["--udp", "10.85.0.1:20000", "--workers", "2"])
        .args(extra)
        .args(["check-network", "--stun", "10.86.0.2:3478"]);
    let out = tokio::time::timeout(Duration::from_secs(20), c.output())
        .await
        .expect("check-network ends")
        .expect("wishd runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_network_finds_an_unadvertised_nat_mapping_and_names_the_fix() {
    clients::require("/usr/bin/turnserver", "apt-get install coturn");
    let host = Netns::create("nc-h");
    let router = host.linked("nc-r", "10.85.0.1/24", "10.85.0.2/24");
    let stun_ns = router.linked("nc-s", "10.86.0.1/24", "10.86.0.2/24");
    host.ip(&["route", "add", "default", "via", "10.85.0.2"]);
    router
        .run("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"], "procps")
        .await;
    router.nft(&["add", "table", "ip", "nat"]).await;
    router
        .nft(&[
            "add",
            "chain",
            "ip",
            "nat",
            "post",
            "{ type nat hook postrouting priority 100; }",
        ])
        .await;
    router
        .nft(&[
            "add",
            "rule",
            "ip",
            "nat",
            "post",
            "oifname",
            "vl",
            "masquerade",
        ])
        .await;

    let dir = std::env::temp_dir().join(format!("wishd-netcheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut coturn = stun_ns.command("/usr/bin/turnserver");
    coturn.args([
        "-n",
        "--listening-ip=10.86.0.2",
        "--listening-port=3478",
        "--stun-only",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--log-file=stdout",
        "--simple-log",
        &format!("--userdb={}", dir.join("turndb").display()),
    ]);
    let mut stun = Script::spawn("coturn (STUN)", coturn);
    stun.wait_for("Total General servers", Duration::from_secs(10))
        .await;

    let (code, text) = check(&host, &[]).await;
    println!("behind the NAT, nothing configured (exit {code}):\n{text}");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("seen from outside as 10.86.0.1:"), "{text}");
    assert!(text.contains("--public-ip 10.86.0.1"), "{text}");

    let (code, text) = check(&host, &["--public-ip", "10.86.0.1"]).await;
    println!("with --public-ip 10.86.0.1 (exit {code}):\n{text}");
    assert_eq!(code, 0, "{text}");
    assert_eq!(text.matches(": ok").count(), 2, "both workers: {text}");

    // No STUN server at all: exit 2 with the reason.
    let mut c = host.command(env!("CARGO_BIN_EXE_wishd"));
    c.args(["--udp", "10.85.0.1:20000", "check-network"]);
    let out = c.output().await.expect("wishd runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no STUN server"));
    stun.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
