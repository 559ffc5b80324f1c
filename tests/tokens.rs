//! JWTs of every algorithm wishd verifies (HS256, RS256, ES256, EdDSA), end to end:
//! a good token publishes, and each forgery a token-checking server meets is refused
//! the same way for every algorithm (401 `invalid_token`, or 403 for a stream the
//! token does not name).

mod common;

use std::path::PathBuf;

use wishd::auth::{MintKey, mint, now_secs};
use wishd::client::{HttpResponse, PublisherOptions, http_request, publisher_offer};
use wishd::config::{JwtConfig, Policy, Secret};
use wishd::model::Role;

const ISSUER: &str = "https://auth.example";
const AUDIENCE: &str = "wishd-studio";
const SECRET: &str = "tokens-test-secret-0123456789abcdef";

/// A signing key and what the server is given to check it.
struct Alg {
    name: &'static str,
    key: MintKey,
    /// Another key of the same algorithm (a forger's).
    stranger: MintKey,
    /// The public key PEM (none for HS256).
    public: Option<String>,
}

fn rsa_pair() -> (Vec<u8>, String) {
    let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
    let key = openssl::pkey::PKey::from_rsa(rsa).unwrap();
    (
        key.private_key_to_pem_pkcs8().unwrap(),
        String::from_utf8(key.public_key_to_pem().unwrap()).unwrap(),
    )
}

fn rcgen_pair(alg: &'static rcgen::SignatureAlgorithm) -> (Vec<u8>, String) {
    let kp = rcgen::KeyPair::generate_for(alg).unwrap();
    (kp.serialize_pem().into_bytes(), kp.public_key_pem())
}

fn algorithms() -> Vec<Alg> {
    let asymmetric = |name, make: &dyn Fn() -> (Vec<u8>, String)| {
        let (private, public) = make();
        let (other, _) = make();
        Alg {
            name,
            key: MintKey::from_private_pem(private).unwrap(),
            stranger: MintKey::from_private_pem(other).unwrap(),
            public: Some(public),
        }
    };
    vec![
        Alg {
            name: "HS256",
            key: MintKey::Secret(SECRET.as_bytes().to_vec()),
            stranger: MintKey::Secret(b"a-forgers-secret-of-the-same-length!".to_vec()),
            public: None,
        },
        asymmetric("RS256", &rsa_pair),
        asymmetric("ES256", &|| rcgen_pair(&rcgen::PKCS_ECDSA_P256_SHA256)),
        asymmetric("EdDSA", &|| rcgen_pair(&rcgen::PKCS_ED25519)),
    ]
}

fn token(key: &MintKey, streams: &[&str], nbf: u64, life: u64, iss: &str, aud: &str) -> String {
    mint(
        key,
        streams.iter().map(|s| s.to_string()).collect(),
        vec![Role::Publisher],
        nbf,
        life,
        Some(iss.to_string()),
        Some(aud.to_string()),
    )
    .unwrap()
}

async fn publish(base: &str, stream: &str, token: &str) -> HttpResponse {
    let offer = publisher_offer(&PublisherOptions::default()).unwrap();
    let bearer = format!("Bearer {token}");
    http_request(
        "POST",
        &format!("{base}/whip/{stream}"),
        &[
            ("content-type", "application/sdp"),
            ("authorization", &bearer),
        ],
        offer.into_bytes(),
    )
    .await
    .expect("http")
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The token with its header replaced (the signature kept): `alg: none` and friends.
fn with_header(token: &str, header: &str, signature: &str) -> String {
    let claims = token.split('.').nth(1).unwrap();
    format!("{}.{claims}.{signature}", b64(header.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_publishes_with_its_token_and_refuses_each_forgery() {
    let dir = std::env::temp_dir().join(format!("wishd-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for alg in algorithms() {
        let public_file = alg.public.as_ref().map(|pem| {
            let p = dir.join(format!("{}.pub.pem", alg.name));
            std::fs::write(&p, pem).unwrap();
            p
        });
        let server = common::start_with(|c| {
            c.auth.publish = Policy::Token;
            c.auth.jwt = Some(JwtConfig {
                secret: public_file.is_none().then(|| Secret::new(SECRET)),
                secret_file: None,
                public_key_file: public_file.clone(),
                issuer: Some(ISSUER.into()),
                audience: Some(AUDIENCE.into()),
                ..JwtConfig::with_secret_file(PathBuf::new())
            });
        })
        .await;
        let base = server.base_url();
        let now = now_secs();
        let good = token(&alg.key, &["team-*"], now, 600, ISSUER, AUDIENCE);
        let r = publish(&base, "team-1", &good).await;
        assert_eq!(r.status, 201, "{}: a good token: {}", alg.name, r.text());

        let mut forgeries: Vec<(&str, String)> = vec![
            (
                "signed by another key",
                token(&alg.stranger, &["team-*"], now, 600, ISSUER, AUDIENCE),
            ),
            (
                "expired an hour ago",
                token(&alg.key, &["team-*"], now - 7200, 3600, ISSUER, AUDIENCE),
            ),
            (
                "not valid for an hour",
                token(&alg.key, &["team-*"], now + 3600, 600, ISSUER, AUDIENCE),
            ),
            (
                "another issuer",
                token(
                    &alg.key,
                    &["team-*"],
                    now,
                    600,
                    "https://evil.example",
                    AUDIENCE,
                ),
            ),
            (
                "another audience",
                token(&alg.key, &["team-*"], now, 600, ISSUER, "someone-else"),
            ),
            (
                "no issuer at all",
                mint(
                    &alg.key,
                    vec!["team-*".into()],
                    vec![Role::Publisher],
                    now,
                    600,
                    None,
                    Some(AUDIENCE.into()),
                )
                .unwrap(),
            ),
            (
                "no audience at all",
                mint(
                    &alg.key,
                    vec!["team-*".into()],
                    vec![Role::Publisher],
                    now,
                    600,
                    Some(ISSUER.into()),
                    None,
                )
                .unwrap(),
            ),
            (
                "alg none",
                with_header(&good, r#"{"alg":"none","typ":"JWT"}"#, ""),
            ),
            (
                "alg none, the signature kept",
                with_header(
                    &good,
                    r#"{"alg":"none","typ":"JWT"}"#,
                    good.rsplit('.').next().unwrap(),
                ),
            ),
            ("a bit flipped in the signature", {
                let mut t = good.clone().into_bytes();
                let i = t.len() - 5;
                t[i] = if t[i] == b'A' { b'B' } else { b'A' };
                String::from_utf8(t).unwrap()
            }),
        ];
        if let Some(public) = &alg.public {
            // The classic confusion: HS256 with the server's public key as the secret.
            forgeries.push((
                "HS256 signed with the public key",
                token(
                    &MintKey::Secret(public.clone().into_bytes()),
                    &["team-*"],
                    now,
                    600,
                    ISSUER,
                    AUDIENCE,
                ),
            ));
        }
        for (i, (what, forged)) in forgeries.iter().enumerate() {
            let r = publish(&base, &format!("team-f{i}"), forged).await;
            assert_eq!(r.status, 401, "{} {what}: {}", alg.name, r.text());
            assert!(
                r.header("www-authenticate")
                    .unwrap_or("")
                    .contains("invalid_token"),
                "{} {what}",
                alg.name
            );
        }
        // The glob grants what it says and nothing beside it.
        for outside in ["teamx", "xteam-1", "team", "other"] {
            let r = publish(&base, outside, &good).await;
            assert_eq!(r.status, 403, "{} token for team-* on {outside}", alg.name);
        }
        println!(
            "{}: a good token publishes; {} forgeries refused with 401, 4 streams outside the glob with 403",
            alg.name,
            forgeries.len()
        );
        server.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
