//! STUN/TURN servers for clients (RFC 9725 §4.6): `Link: <uri>; rel="ice-server"` on
//! the 201 and on an authorised non-preflight OPTIONS, TURN credentials fixed or
//! minted from a shared secret the way coturn's REST API expects them.

mod common;

use aws_lc_rs::hmac;
use base64::Engine;
use wishd::auth::now_secs;
use wishd::client::{HttpResponse, PublisherOptions, http_request, publisher_offer};
use wishd::config::{Config, Policy, Secret, StaticTokenConfig};
use wishd::model::Role;
use wishd::server::Server;

const TOML: &str = r#"
public_url = "https://media.example"

[[ice_servers]]
urls = ["stun:stun.example.net:3478"]

[[ice_servers]]
urls = ["turn:turn.example.net:3478?transport=udp", "turns:turn.example.net:5349"]
static_auth_secret = "coturn-shared-secret"
username = "viewer"
ttl = "1h"

[[ice_servers]]
urls = ["turn:fixed.example.net"]
username = "alice"
credential = "wonderland"

[[redirects]]
stream = "edge-*"
kind = "whep"
to = "https://edge.example/whep/{stream}"
"#;

async fn start() -> Server {
    common::start_with(|c| {
        let file = Config::from_toml(TOML).expect("example config parses");
        c.ice_servers = file.ice_servers;
        c.auth.publish = Policy::Token;
        c.auth.tokens.push(StaticTokenConfig {
            token: Some(Secret::new("pub-key-0001")),
            token_file: None,
            streams: vec!["*".into()],
            actions: vec![Role::Publisher],
        });
    })
    .await
}

fn links(r: &HttpResponse) -> Vec<String> {
    r.headers
        .iter()
        .filter(|(k, _)| k == "link")
        .map(|(_, v)| v.clone())
        .collect()
}

/// The value of `name="..."` in a Link.
fn param(link: &str, name: &str) -> Option<String> {
    let start = link.find(&format!("; {name}=\""))? + name.len() + 4;
    let end = start + link[start..].find('"')?;
    Some(link[start..end].to_owned())
}

fn check_links(links: &[String]) {
    assert_eq!(links.len(), 4, "{links:#?}");
    assert_eq!(links[0], "<stun:stun.example.net:3478>; rel=\"ice-server\"");
    for l in &links[1..3] {
        let username = param(l, "username").expect("username");
        let credential = param(l, "credential").expect("credential");
        let (expiry, user) = username.split_once(':').unwrap();
        assert_eq!(user, "viewer");
        let expiry: u64 = expiry.parse().unwrap();
        let now = now_secs();
        assert!(
            expiry >= now + 3590 && expiry <= now + 3610,
            "expiry {expiry} not now + 1 h"
        );
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"coturn-shared-secret");
        let want = base64::engine::general_purpose::STANDARD
            .encode(hmac::sign(&key, username.as_bytes()).as_ref());
        assert_eq!(credential, want);
        assert_eq!(param(l, "credential-type").as_deref(), Some("password"));
    }
    assert!(links[1].starts_with("<turn:turn.example.net:3478?transport=udp>; rel=\"ice-server\""));
    assert!(links[2].starts_with("<turns:turn.example.net:5349>"));
    assert_eq!(
        links[3],
        "<turn:fixed.example.net>; rel=\"ice-server\"; username=\"alice\"; \
         credential=\"wonderland\"; credential-type=\"password\""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_session_lists_stun_and_turn_servers_with_credentials() {
    let server = start().await;
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    let r = http_request(
        "POST",
        &format!("{}/whip/s", server.base_url()),
        &[
            ("content-type", "application/sdp"),
            ("authorization", "Bearer pub-key-0001"),
        ],
        offer.into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    check_links(&links(&r));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_lists_ice_servers_only_to_authorised_clients_and_never_on_preflight() {
    let server = start().await;
    let whip = format!("{}/whip/s", server.base_url());
    // Publishing needs a token: none, or a wrong one, gets no TURN credentials.
    for auth in [None, Some("Bearer wrong")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let r = http_request("OPTIONS", &whip, &headers, vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "OPTIONS never needs a token");
        assert!(links(&r).is_empty(), "{auth:?}: {:?}", links(&r));
    }
    let r = http_request(
        "OPTIONS",
        &whip,
        &[("authorization", "Bearer pub-key-0001")],
        vec![],
    )
    .await
    .unwrap();
    check_links(&links(&r));
    // Playing is open: a plain OPTIONS is authorised.
    let whep = format!("{}/whep/s", server.base_url());
    let r = http_request("OPTIONS", &whep, &[], vec![]).await.unwrap();
    check_links(&links(&r));
    // A CORS preflight gets no ICE servers, even where it would be authorised.
    let r = http_request(
        "OPTIONS",
        &whep,
        &[
            ("origin", "https://player.example"),
            ("access-control-request-method", "POST"),
        ],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(links(&r).is_empty(), "{:?}", links(&r));
    server.shutdown().await;
}

#[test]
fn the_example_tables_parse_and_bad_ones_name_the_entry() {
    let c = Config::from_toml(TOML).unwrap();
    c.validate().unwrap();
    assert_eq!(c.ice_servers.len(), 3);
    assert_eq!(c.redirects.len(), 1);
    assert_eq!(c.public_url.as_deref(), Some("https://media.example"));
    assert!(!format!("{c:?}").contains("coturn-shared-secret"));
    assert!(!format!("{c:?}").contains("wonderland"));
    for (bad, names) in [
        (
            "[[ice_servers]]\nurls = [\"turn:t.example\"]\n",
            "ice_servers[0]",
        ),
        (
            "[[ice_servers]]\nurls = [\"https://x\"]\n",
            "ice_servers[0]",
        ),
        (
            "[[redirects]]\nstream = \"*\"\nto = \"/relative\"\n",
            "redirects[0]",
        ),
        ("public_url = \"media.example\"\n", "public_url"),
    ] {
        let err = Config::from_toml(bad).unwrap().validate().unwrap_err();
        assert!(err.to_string().contains(names), "{err}");
    }
    assert!(Config::from_toml("[[ice_servers]]\nurl = [\"stun:x\"]\n").is_err());
}
