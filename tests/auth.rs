//! Bearer-token authorization against a running server: every RFC 6750 branch,
//! static tokens, JWTs (HS256 and ES256), globs, query tokens, session checks on
//! DELETE, CORS preflight without a token, rate limit and session cap.

mod common;

use std::path::PathBuf;

use wishd::auth::{MintKey, mint, now_secs};
use wishd::client::{
    HttpResponse, PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher, http_request,
    publisher_offer,
};
use wishd::config::{Config, JwtConfig, Policy, Secret, StaticTokenConfig};
use wishd::model::Role;
use wishd::server::Server;

const SECRET: &str = "test-secret-0123456789abcdef-0123";
const SDP: (&str, &str) = ("content-type", "application/sdp");

fn jwt(streams: &[&str], actions: &[Role], nbf: u64, life: u64) -> String {
    mint(
        &MintKey::Secret(SECRET.as_bytes().to_vec()),
        streams.iter().map(|s| s.to_string()).collect(),
        actions.to_vec(),
        nbf,
        life,
        None,
        None,
    )
    .unwrap()
}

fn secured(c: &mut Config) {
    c.auth.publish = Policy::Token;
    c.auth.play = Policy::Token;
    c.auth.jwt = Some(JwtConfig {
        secret: Some(Secret::new(SECRET)),
        secret_file: None,
        ..JwtConfig::with_secret_file(PathBuf::new())
    });
    c.auth.tokens.push(StaticTokenConfig {
        token: Some(Secret::new("obs-key-for-studio")),
        token_file: None,
        streams: vec!["studio".into()],
        actions: vec![Role::Publisher],
    });
}

async fn start_secured() -> Server {
    common::start_with(secured).await
}

async fn post_with(url: &str, auth: Option<&str>) -> HttpResponse {
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    let bearer = auth.map(|t| format!("Bearer {t}"));
    let mut headers = vec![SDP];
    if let Some(b) = &bearer {
        headers.push(("authorization", b.as_str()));
    }
    http_request("POST", url, &headers, offer.into_bytes())
        .await
        .expect("http")
}

fn challenge(r: &HttpResponse) -> &str {
    r.header("www-authenticate").unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_401_with_a_bare_bearer_challenge() {
    let server = start_secured().await;
    let r = post_with(&format!("{}/whip/s", server.base_url()), None).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(challenge(&r), "Bearer realm=\"wishd\"");
    assert!(common::problem_detail(&r).contains("token"));
    assert_eq!(server.directory().counts().publishers, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_authorization_is_400_invalid_request() {
    let server = start_secured().await;
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    for bad in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "Bearer a,b"] {
        let r = http_request(
            "POST",
            &format!("{}/whip/s", server.base_url()),
            &[SDP, ("authorization", bad)],
            offer.clone().into_bytes(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(challenge(&r).contains("error=\"invalid_request\""));
        assert!(common::problem_detail(&r).contains("Authorization"));
    }
    server.shutdown().await;
}

async fn expect_invalid_token(server: &Server, token: &str) {
    let r = post_with(&format!("{}/whip/s", server.base_url()), Some(token)).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        challenge(&r).contains("error=\"invalid_token\""),
        "{}",
        challenge(&r)
    );
    assert!(!r.text().contains(token));
    assert!(common::problem_detail(&r).starts_with("invalid token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_signature_expired_and_not_yet_valid_are_401_invalid_token() {
    let server = start_secured().await;
    let now = now_secs();
    let wrong_sig = mint(
        &MintKey::Secret(b"not-the-configured-secret-at-all".to_vec()),
        vec!["s".into()],
        vec![Role::Publisher],
        now,
        60,
        None,
        None,
    )
    .unwrap();
    expect_invalid_token(&server, &wrong_sig).await;
    expect_invalid_token(&server, &jwt(&["s"], &[Role::Publisher], now - 7200, 60)).await;
    expect_invalid_token(&server, &jwt(&["s"], &[Role::Publisher], now + 7200, 60)).await;
    expect_invalid_token(&server, "unknown-static-token").await;
    server.shutdown().await;
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alg_none_is_401() {
    let server = start_secured().await;
    let claims = format!(
        r#"{{"exp":{},"streams":"*","actions":["publish","play"]}}"#,
        now_secs() + 600
    );
    let token = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.as_bytes())
    );
    expect_invalid_token(&server, &token).await;
    server.shutdown().await;
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wishd-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_key_accepts_its_tokens_and_refuses_hs256_signed_with_the_public_key() {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let public = kp.public_key_pem();
    let path = temp_file("es256.pub.pem", public.as_bytes());
    let server = common::start_with(|c| {
        c.auth.publish = Policy::Token;
        c.auth.jwt = Some(JwtConfig {
            secret_file: None,
            public_key_file: Some(path.clone()),
            ..JwtConfig::with_secret_file(PathBuf::new())
        });
    })
    .await;
    let now = now_secs();
    let key = MintKey::from_private_pem(kp.serialize_pem().into_bytes()).unwrap();
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
    let r = post_with(&format!("{}/whip/s", server.base_url()), Some(&good)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let confused = mint(
        &MintKey::Secret(public.into_bytes()),
        vec!["s2".into()],
        vec![Role::Publisher],
        now,
        60,
        None,
        None,
    )
    .unwrap();
    let r = post_with(&format!("{}/whip/s2", server.base_url()), Some(&confused)).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(challenge(&r).contains("invalid_token"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_stream_and_wrong_action_are_403_insufficient_scope() {
    let server = start_secured().await;
    let base = server.base_url();
    let now = now_secs();
    let other_stream = jwt(&["other"], &[Role::Publisher], now, 60);
    let r = post_with(&format!("{base}/whip/s"), Some(&other_stream)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(challenge(&r).contains("error=\"insufficient_scope\""));
    assert!(common::problem_detail(&r).contains("does not allow publish"));
    let play_only = jwt(&["s"], &[Role::Viewer], now, 60);
    let r = post_with(&format!("{base}/whip/s"), Some(&play_only)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    // The static token is for "studio" and publish only.
    let r = post_with(&format!("{base}/whip/s"), Some("obs-key-for-studio")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_jwt_and_static_token_publish_and_a_play_token_views() {
    let server = start_secured().await;
    let base = server.base_url();
    let now = now_secs();
    let glob = jwt(&["cam-*"], &[Role::Publisher], now, 600);
    let publisher = WhipPublisher::connect(
        &format!("{base}/whip/cam-7"),
        PublisherOptions {
            token: Some(glob.clone()),
            ..PublisherOptions::default()
        },
    )
    .await
    .expect("glob token publishes");
    let studio = WhipPublisher::connect(
        &format!("{base}/whip/studio"),
        PublisherOptions {
            token: Some("obs-key-for-studio".into()),
            ..PublisherOptions::default()
        },
    )
    .await
    .expect("static token publishes");
    let viewer = WhepViewer::connect(
        &format!("{base}/whep/cam-7"),
        ViewerOptions {
            token: Some(jwt(&["cam-7"], &[Role::Viewer], now, 600)),
            ..ViewerOptions::default()
        },
    )
    .await
    .expect("play token views");
    assert_eq!(viewer.delete().await.unwrap(), 200);
    assert_eq!(studio.delete().await.unwrap(), 200);
    assert_eq!(publisher.delete().await.unwrap(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_token_is_accepted_only_when_enabled() {
    let now = now_secs();
    let token = jwt(&["s"], &[Role::Publisher], now, 600);
    for enabled in [false, true] {
        let server = common::start_with(|c| {
            secured(c);
            c.auth.query_token = enabled;
        })
        .await;
        let r = post_with(&format!("{}/whip/s?token={token}", server.base_url()), None).await;
        let want = if enabled { 201 } else { 401 };
        assert_eq!(r.status, want, "query_token = {enabled}: {}", r.text());
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_needs_the_creating_rights_not_another_streams_token() {
    let server = start_secured().await;
    let base = server.base_url();
    let now = now_secs();
    let mine = jwt(&["a"], &[Role::Publisher], now, 600);
    let theirs = jwt(&["b"], &[Role::Publisher], now, 600);
    let r = post_with(&format!("{base}/whip/a"), Some(&mine)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let url = r.header("location").unwrap().to_owned();
    assert!(url.starts_with(&format!("{base}/whip/a/")), "{url}");
    let del = |auth: Option<String>| {
        let url = url.clone();
        async move {
            let h = auth.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> =
                h.iter().map(|v| ("authorization", v.as_str())).collect();
            http_request("DELETE", &url, &headers, Vec::new())
                .await
                .unwrap()
        }
    };
    let r = del(None).await;
    assert_eq!(r.status, 401, "{}", r.text());
    // PATCH is held to the same rule as DELETE.
    for (auth, want) in [(None, 401), (Some(&theirs), 403)] {
        let h = auth.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> =
            h.iter().map(|v| ("authorization", v.as_str())).collect();
        headers.push(("content-type", "application/trickle-ice-sdpfrag"));
        headers.push(("if-match", "*"));
        let r = http_request("PATCH", &url, &headers, b"a=end-of-candidates\r\n".to_vec())
            .await
            .unwrap();
        assert_eq!(r.status, want, "PATCH: {}", r.text());
    }
    let r = del(Some(theirs)).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = del(Some("garbage-token".into())).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(server.directory().counts().publishers, 1, "still there");
    // A different token with the same rights may end it.
    let same_rights = jwt(&["a"], &[Role::Publisher], now, 300);
    let r = del(Some(same_rights)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_needs_no_token_and_allows_what_whip_clients_send() {
    let server = start_secured().await;
    let base = server.base_url();
    for (url, method) in [
        (format!("{base}/whip/s"), "POST"),
        (format!("{base}/whip/s/{:032x}", 1), "PATCH"),
        (format!("{base}/whep/s/{:032x}", 1), "DELETE"),
    ] {
        let r = http_request(
            "OPTIONS",
            &url,
            &[
                ("origin", "https://player.example"),
                ("access-control-request-method", method),
                (
                    "access-control-request-headers",
                    "authorization, content-type, if-match",
                ),
            ],
            Vec::new(),
        )
        .await
        .unwrap();
        assert!(r.status == 204 || r.status == 200, "{method}: {}", r.status);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        let methods = r.header("access-control-allow-methods").unwrap_or("");
        assert!(methods.contains(method), "{methods}");
        let headers = r.header("access-control-allow-headers").unwrap_or("");
        for h in ["authorization", "content-type", "if-match"] {
            assert!(headers.contains(h), "{headers}");
        }
    }
    // A refused POST still exposes its headers to the page.
    let r = http_request(
        "POST",
        &format!("{base}/whip/s"),
        &[SDP, ("origin", "https://player.example")],
        b"v=0".to_vec(),
    )
    .await
    .unwrap();
    let exposed = r.header("access-control-expose-headers").unwrap_or("");
    for h in ["location", "etag", "link"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origin_list_echoes_allowed_origins_only() {
    let server = common::start_with(|c| {
        c.cors_origins = vec!["https://ok.example".into()];
    })
    .await;
    let url = format!("{}/whip/s", server.base_url());
    let ask = |origin: &'static str| {
        let url = url.clone();
        async move {
            http_request(
                "OPTIONS",
                &url,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                ],
                Vec::new(),
            )
            .await
            .unwrap()
        }
    };
    let r = ask("https://ok.example").await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://ok.example")
    );
    assert!(r.header("vary").unwrap_or("").contains("origin"));
    let r = ask("https://evil.example").await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_generates_a_publish_token_and_leaves_play_open() {
    let server = common::start_with(|c| {
        *c = Config {
            http: c.http,
            udp: c.udp,
            workers: c.workers,
            ..Config::default()
        }
    })
    .await;
    let token = server
        .generated_token()
        .expect("a token was generated")
        .to_owned();
    let base = server.base_url();
    let r = post_with(&format!("{base}/whip/s"), None).await;
    assert_eq!(r.status, 401);
    let p = WhipPublisher::connect(
        &format!("{base}/whip/s"),
        PublisherOptions {
            token: Some(token),
            ..PublisherOptions::default()
        },
    )
    .await
    .expect("the generated token publishes");
    let v = WhepViewer::connect(&format!("{base}/whep/s"), ViewerOptions::default())
        .await
        .expect("play is open");
    assert_eq!(v.delete().await.unwrap(), 200);
    assert_eq!(p.delete().await.unwrap(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_posts_from_one_address_gets_429_with_retry_after() {
    let server = common::start_with(|c| {
        c.limits.requests_per_second = 1.0;
        c.limits.burst = 3;
    })
    .await;
    let url = format!("{}/whip/s", server.base_url());
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = http_request("POST", &url, &[("content-type", "text/plain")], Vec::new())
            .await
            .unwrap();
        if r.status == 429 {
            let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!(secs >= 1);
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, vec![415, 415, 415, 429, 429]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cap_is_503_with_retry_after() {
    let server = common::start_with(|c| c.limits.max_sessions = 1).await;
    let base = server.base_url();
    let p = WhipPublisher::connect(&format!("{base}/whip/a"), PublisherOptions::default())
        .await
        .unwrap();
    let r = post_with(&format!("{base}/whip/b"), None).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_eq!(p.delete().await.unwrap(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::AsyncWriteExt;
    let server = common::start_with(|c| {
        c.limits.header_read_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .unwrap();
    tcp.write_all(b"POST /whip/s HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let took = closed_after(&mut tcp, std::time::Duration::from_secs(5)).await;
    assert!(
        took.is_some(),
        "the connection was still open after 5 s of half-sent headers"
    );
    server.shutdown().await;
}

/// Reads until the server closes the connection; how long that took, or `None` if it
/// was still open after `within`.
async fn closed_after(
    tcp: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> Option<std::time::Duration> {
    use tokio::io::AsyncReadExt;
    let start = std::time::Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(within, tcp.read_to_end(&mut buf))
        .await
        .ok()
        .map(|_| start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_connects_and_sends_nothing_is_cut_off() {
    let server = common::start_with(|c| {
        c.limits.header_read_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .unwrap();
    let took = closed_after(&mut tcp, std::time::Duration::from_secs(5)).await;
    assert!(
        took.is_some(),
        "a silent connection was still open after 5 s"
    );
    // The server itself is fine.
    let r = wishd::client::http_request(
        "GET",
        &format!("{}/healthz", server.base_url()),
        &[],
        Vec::new(),
    )
    .await
    .expect("HTTP answer");
    assert_eq!(r.status, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_http2_connection_is_closed_after_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let server = common::start_with(|c| {
        c.limits.idle_timeout = std::time::Duration::from_millis(600);
    })
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame, then nothing.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let took = closed_after(&mut tcp, std::time::Duration::from_secs(5))
        .await
        .expect("a silent HTTP/2 connection was still open after 5 s");
    assert!(
        took >= std::time::Duration::from_millis(500),
        "closed after {took:?}, before the idle timeout"
    );
    server.shutdown().await;
}
