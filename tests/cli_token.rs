//! `wishd token` mints a JWT that a server with the same secret accepts, for exactly
//! the stream and action asked for.

mod common;

use std::path::PathBuf;
use std::process::Command;

use wishd::client::{PublisherOptions, http_request, publisher_offer};
use wishd::config::{JwtConfig, Policy};

fn wishd_token(secret_file: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_wishd"))
        .arg("--jwt-secret-file")
        .arg(secret_file)
        .arg("token")
        .args(args)
        .output()
        .expect("runs wishd");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_are_accepted_for_their_stream_and_action_only() {
    let dir = std::env::temp_dir().join(format!("wishd-cli-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("jwt.secret");
    std::fs::write(&secret, "cli-test-secret-0123456789abcdef\n").unwrap();
    let publish = wishd_token(
        &secret,
        &[
            "--stream",
            "cam-*",
            "--action",
            "publish",
            "--lifetime",
            "5m",
        ],
    );
    let play = wishd_token(&secret, &["--stream", "cam-1", "--action", "play"]);
    assert_eq!(publish.split('.').count(), 3, "{publish}");

    let secret_path: PathBuf = secret.clone();
    let server = common::start_with(|c| {
        c.auth.publish = Policy::Token;
        c.auth.play = Policy::Token;
        c.auth.jwt = Some(JwtConfig::with_secret_file(secret_path));
    })
    .await;
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    let post = |path: String, token: String| {
        let offer = offer.clone();
        let base = server.base_url();
        async move {
            let auth = format!("Bearer {token}");
            http_request(
                "POST",
                &format!("{base}{path}"),
                &[
                    ("content-type", "application/sdp"),
                    ("authorization", &auth),
                ],
                offer.into_bytes(),
            )
            .await
            .unwrap()
            .status
        }
    };
    assert_eq!(post("/whip/cam-1".into(), play.clone()).await, 403);
    assert_eq!(post("/whip/other".into(), publish.clone()).await, 403);
    assert_eq!(post("/whip/cam-1".into(), publish).await, 201);
    server.shutdown().await;
}

#[test]
fn token_without_a_key_fails_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_wishd"))
        .args(["token", "--stream", "s"])
        .env_remove("WISHD_JWT_SECRET_FILE")
        .env_remove("WISHD_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no JWT key"));
}
