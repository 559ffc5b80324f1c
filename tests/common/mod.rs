//! Shared harness for integration tests: a real wishd on 127.0.0.1 with port 0.
#![allow(dead_code)]

use std::time::Duration;

use wishd::config::Config;
use wishd::server::Server;

/// Starts a server on loopback with free ports and two workers (so cross-worker
/// forwarding is exercised even on one-core machines).
pub async fn start() -> Server {
    start_with(|_| {}).await
}

/// Starts a server after letting the test adjust the config.
pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Server {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    wishd::client::install_crypto_provider();
    let mut config = Config {
        http: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        ..Config::default()
    };
    // The media tests publish without tokens: open both actions explicitly, and lift
    // the per-address rate limit that loopback tests would trip.
    config.open_everything();
    config.limits.requests_per_second = 0.0;
    adjust(&mut config);
    Server::start(config).await.expect("server starts")
}

pub const CONNECT: Duration = Duration::from_secs(10);
pub mod openapi;
