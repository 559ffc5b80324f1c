//! The load tool cannot rot: an in-process wishd, the synthetic publisher and five
//! viewers for five seconds through the library API. Generous bounds only: this
//! proves the tool works end to end, not how fast anything is.

use std::time::Duration;

use wishd::config::Config;
use wishd::server::Server;
use wishd_load::publisher::PublisherConfig;
use wishd_load::run::{RunConfig, print_report, run};
use wishd_load::swarm::SwarmConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_viewers_join_and_receive_the_stream_with_little_loss() {
    wishd::client::install_crypto_provider();
    let mut config = Config {
        http: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        ..Config::default()
    };
    config.open_everything();
    config.limits.requests_per_second = 0.0;
    let server = Server::start(config).await.expect("server starts");
    let base = format!("http://{}", server.http_addr());

    let report = run(RunConfig {
        publisher: Some(PublisherConfig::standard(format!("{base}/whip/smoke"))),
        swarm: SwarmConfig {
            url: format!("{base}/whep/smoke"),
            token: None,
            shards: 2,
            full_decrypt: false,
            poll: Duration::from_micros(500),
        },
        viewers: 5,
        ramp_per_sec: 20.0,
        connect_timeout: Duration::from_secs(10),
        duration: Duration::from_secs(5),
        server_pid: Some(std::process::id()),
    })
    .await
    .expect("run completes");
    print_report(&report);

    let a = &report.aggregate;
    assert_eq!(a.viewers, 5);
    for v in &report.viewers {
        assert!(v.error.is_none(), "viewer {} failed: {:?}", v.id, v.error);
        assert!(v.connected, "viewer {} not connected", v.id);
        assert!(v.join_ms.is_some(), "viewer {} never saw a keyframe", v.id);
        // 5 s of ~310 packets/s; at least half must be there.
        assert!(
            v.received > 700,
            "viewer {} got {} packets",
            v.id,
            v.received
        );
        assert!(
            v.delay_p50_us.is_some(),
            "viewer {} has no delay figure",
            v.id
        );
    }
    assert!(a.loss_pct < 5.0, "loss {:.2} %", a.loss_pct);
    server.shutdown().await;
}
