//! What the load tool's tests share: a wishd to run against.

use wishd::config::Config;
use wishd::server::Server;

/// An open wishd on loopback with two media workers and no request rate limit.
pub async fn open_server() -> Server {
    wishd::client::install_crypto_provider();
    Server::start(Config::loopback_open(2))
        .await
        .expect("server starts")
}
