//! What the load tool's tests share: a wishd to run against.

use wishd::config::Config;
use wishd::server::Server;

/// An open wishd on loopback with two media workers and no request rate limit.
pub async fn open_server() -> Server {
    wishd::client::install_crypto_provider();
    let mut config = Config {
        http: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        ..Config::default()
    };
    config.open_everything();
    config.limits.requests_per_second = 0.0;
    Server::start(config).await.expect("server starts")
}
