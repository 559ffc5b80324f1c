//! Tokens never reach the logs: every log line of a run with rejected and accepted
//! tokens (header and query) is captured at TRACE level and searched for them.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use wishd::auth::{MintKey, mint, now_secs};
use wishd::client::{PublisherOptions, WhipPublisher, http_request, publisher_offer};
use wishd::config::{Config, JwtConfig, Policy, Secret, StaticTokenConfig};
use wishd::model::Role;
use wishd::server::Server;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const SECRET: &str = "log-test-secret-0123456789abcdef";
const STATIC: &str = "static-token-that-must-not-be-logged";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_appear_in_the_logs() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();
    wishd::client::install_crypto_provider();
    let mut config = Config {
        http: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        workers: 1,
        ..Config::default()
    };
    config.auth.publish = Policy::Token;
    config.auth.play = Policy::Token;
    config.auth.query_token = true;
    config.auth.jwt = Some(JwtConfig {
        secret: Some(Secret::new(SECRET)),
        secret_file: None,
        ..JwtConfig::with_secret_file(PathBuf::new())
    });
    config.auth.tokens.push(StaticTokenConfig {
        token: Some(Secret::new(STATIC)),
        token_file: None,
        streams: vec!["*".into()],
        actions: vec![Role::Publisher],
    });
    tracing::info!(?config, "starting with");
    let server = Server::start(config).await.unwrap();
    let base = server.base_url();
    let now = now_secs();
    let key = MintKey::Secret(SECRET.as_bytes().to_vec());
    let good = mint(
        &key,
        vec!["s".into()],
        vec![Role::Publisher],
        now,
        60,
        None,
        None,
    )
    .unwrap();
    let expired = mint(
        &key,
        vec!["s".into()],
        vec![Role::Publisher],
        now - 9000,
        60,
        None,
        None,
    )
    .unwrap();
    let wrong_stream = mint(
        &key,
        vec!["x".into()],
        vec![Role::Publisher],
        now,
        60,
        None,
        None,
    )
    .unwrap();
    let unknown = "unknown-token-value-42";
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    for t in [&expired, &wrong_stream, &unknown.to_string()] {
        let auth = format!("Bearer {t}");
        let _ = http_request(
            "POST",
            &format!("{base}/whip/s"),
            &[
                ("content-type", "application/sdp"),
                ("authorization", &auth),
            ],
            offer.clone().into_bytes(),
        )
        .await
        .unwrap();
        let _ = http_request(
            "POST",
            &format!("{base}/whip/s?token={t}"),
            &[("content-type", "application/sdp")],
            offer.clone().into_bytes(),
        )
        .await
        .unwrap();
    }
    let p = WhipPublisher::connect(
        &format!("{base}/whip/s"),
        PublisherOptions {
            token: Some(good.clone()),
            ..PublisherOptions::default()
        },
    )
    .await
    .unwrap();
    p.delete().await.unwrap();
    let p = WhipPublisher::connect(
        &format!("{base}/whip/s"),
        PublisherOptions {
            token: Some(STATIC.into()),
            ..PublisherOptions::default()
        },
    )
    .await
    .unwrap();
    p.delete().await.unwrap();
    server.shutdown().await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.contains("refused"), "the refusals were logged: {text}");
    for secret in [
        SECRET,
        STATIC,
        good.as_str(),
        expired.as_str(),
        wrong_stream.as_str(),
        unknown,
    ] {
        assert!(!text.contains(secret), "a token is in the logs");
    }
    // No part of a JWT (its signature) either.
    for t in [&good, &expired, &wrong_stream] {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!text.contains(sig), "a JWT signature is in the logs");
    }
}
