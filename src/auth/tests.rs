use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::config::{Config, JwtConfig, Secret, StaticTokenConfig};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn no_files(_: &Path) -> std::io::Result<Vec<u8>> {
    Err(std::io::Error::from(std::io::ErrorKind::NotFound))
}

fn jwt_secret() -> JwtConfig {
    JwtConfig {
        secret: Some(Secret::new(SECRET)),
        ..JwtConfig::with_secret_file(PathBuf::new())
    }
}

fn with_jwt(jwt: JwtConfig) -> Authenticator {
    let mut c = Config::default().auth;
    c.jwt = Some(JwtConfig {
        secret_file: None,
        ..jwt
    });
    Authenticator::new(&c, &no_files).unwrap()
}

fn hs(streams: &[&str], actions: &[Role], now: u64, life: u64) -> String {
    mint(
        &MintKey::Secret(SECRET.as_bytes().to_vec()),
        streams.iter().map(|s| s.to_string()).collect(),
        actions.to_vec(),
        now,
        life,
        None,
        None,
    )
    .unwrap()
}

#[test]
fn authorization_header_parsing() {
    assert_eq!(
        parse_authorization(b"Bearer abc.def-_~+/=="),
        Ok("abc.def-_~+/==")
    );
    assert_eq!(parse_authorization(b"bearer abc"), Ok("abc"));
    for bad in [
        &b"Basic dXNlcjpwYXNz"[..],
        b"Bearer",
        b"Bearer ",
        b"Bearerabc",
        b"Bearer a b",
        b"Bearer a,b",
        b"Bearer \xff",
    ] {
        assert!(
            matches!(parse_authorization(bad), Err(AuthError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn globs_match_star_and_question_mark() {
    assert!(glob_match("*", "anything"));
    assert!(glob_match("cam-*", "cam-1"));
    assert!(glob_match("cam-*", "cam-"));
    assert!(!glob_match("cam-*", "cam"));
    assert!(glob_match("cam-?", "cam-7"));
    assert!(!glob_match("cam-?", "cam-17"));
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("a*b*c", "axxbyy"));
    assert!(glob_match("exact", "exact"));
    assert!(!glob_match("exact", "exact2"));
    assert!(glob_match("**", ""));
}

#[test]
fn static_tokens_grant_their_streams_and_actions_only() {
    let mut c = Config::default().auth;
    c.tokens.push(StaticTokenConfig {
        token: Some(Secret::new("obs-stream-key-1")),
        token_file: None,
        streams: vec!["studio-*".into()],
        actions: vec![Role::Publisher],
    });
    c.tokens.push(StaticTokenConfig {
        token: None,
        token_file: Some(PathBuf::from("/key")),
        streams: vec!["*".into()],
        actions: vec![Role::Viewer],
    });
    let read = |p: &Path| {
        if p == Path::new("/key") {
            Ok(b"file-token-xyz\n".to_vec())
        } else {
            no_files(p)
        }
    };
    let a = Authenticator::new(&c, &read).unwrap();
    assert!(
        a.authorize(Role::Publisher, "studio-a", Some("obs-stream-key-1"))
            .is_ok()
    );
    assert_eq!(
        a.authorize(Role::Publisher, "other", Some("obs-stream-key-1")),
        Err(AuthError::InsufficientScope {
            action: Role::Publisher
        })
    );
    assert!(matches!(
        a.authorize(Role::Publisher, "studio-a", Some("obs-stream-key-2")),
        Err(AuthError::InvalidToken(_))
    ));
    assert_eq!(
        a.authorize(Role::Publisher, "studio-a", None),
        Err(AuthError::Missing)
    );
    // Play is open by default, so no token is needed; the file token has play rights.
    assert_eq!(a.authorize(Role::Viewer, "x", None), Ok(Grant::Open));
    assert!(
        a.validate("file-token-xyz")
            .unwrap()
            .allows(Role::Viewer, "x")
    );
}

#[test]
fn errors_never_contain_the_token() {
    let a = with_jwt(jwt_secret());
    let token = hs(&["s"], &[Role::Publisher], now_secs() - 1000, 10);
    for t in [token.as_str(), "secret-value-123", "a.b.c"] {
        let e = a.authorize(Role::Publisher, "s", Some(t)).unwrap_err();
        assert!(!e.to_string().contains(t), "{e}");
        assert!(!format!("{e:?}").contains(t), "{e:?}");
    }
    let c = Config::default().auth;
    let dbg = format!(
        "{:?}",
        StaticTokenConfig {
            token: Some(Secret::new("hidden-token")),
            token_file: None,
            streams: vec![],
            actions: vec![],
        }
    );
    assert!(!dbg.contains("hidden-token"), "{dbg}");
    let _ = c;
}

#[test]
fn hs256_jwt_checks_exp_nbf_scope() {
    let a = with_jwt(jwt_secret());
    let now = now_secs();
    let ok = hs(&["cam-*"], &[Role::Publisher, Role::Viewer], now, 60);
    assert!(a.authorize(Role::Publisher, "cam-1", Some(&ok)).is_ok());
    assert!(matches!(
        a.authorize(Role::Publisher, "other", Some(&ok)),
        Err(AuthError::InsufficientScope { .. })
    ));
    let play_only = hs(&["cam-1"], &[Role::Viewer], now, 60);
    assert!(matches!(
        a.authorize(Role::Publisher, "cam-1", Some(&play_only)),
        Err(AuthError::InsufficientScope { .. })
    ));
    let expired = hs(&["cam-1"], &[Role::Publisher], now - 3600, 60);
    assert_eq!(
        a.authorize(Role::Publisher, "cam-1", Some(&expired)),
        Err(AuthError::InvalidToken("the token has expired".into()))
    );
    let future = mint(
        &MintKey::Secret(SECRET.as_bytes().to_vec()),
        vec!["cam-1".into()],
        vec![Role::Publisher],
        now + 3600,
        60,
        None,
        None,
    )
    .unwrap();
    assert_eq!(
        a.authorize(Role::Publisher, "cam-1", Some(&future)),
        Err(AuthError::InvalidToken("the token is not valid yet".into()))
    );
    // Inside the leeway: an exp 10 s ago is still accepted.
    let just = hs(&["cam-1"], &[Role::Publisher], now - 70, 60);
    assert!(a.authorize(Role::Publisher, "cam-1", Some(&just)).is_ok());
    // Wrong secret.
    let other = mint(
        &MintKey::Secret(b"another-secret-of-32-bytes-long!".to_vec()),
        vec!["cam-1".into()],
        vec![Role::Publisher],
        now,
        60,
        None,
        None,
    )
    .unwrap();
    assert_eq!(
        a.authorize(Role::Publisher, "cam-1", Some(&other)),
        Err(AuthError::InvalidToken("bad signature".into()))
    );
}

#[test]
fn a_jwt_without_exp_is_refused() {
    let a = with_jwt(jwt_secret());
    let header = Header::new(Algorithm::HS256);
    let claims = serde_json::json!({"streams": "s", "actions": ["publish"]});
    let t = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        a.authorize(Role::Publisher, "s", Some(&t)),
        Err(AuthError::InvalidToken(_))
    ));
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

#[test]
fn alg_none_is_refused() {
    let a = with_jwt(jwt_secret());
    let claims = format!(
        r#"{{"exp":{},"streams":"s","actions":"publish"}}"#,
        now_secs() + 60
    );
    for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#] {
        let t = format!("{}.{}.", b64(header.as_bytes()), b64(claims.as_bytes()));
        assert!(matches!(
            a.authorize(Role::Publisher, "s", Some(&t)),
            Err(AuthError::InvalidToken(_))
        ));
    }
}

fn es256_pair() -> (String, String) {
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    (kp.serialize_pem(), kp.public_key_pem())
}

#[test]
fn public_key_jwt_pins_the_algorithm_against_hs256_confusion() {
    let (private, public) = es256_pair();
    let mut c = Config::default().auth;
    c.jwt = Some(JwtConfig {
        secret_file: None,
        public_key_file: Some(PathBuf::from("/pub.pem")),
        issuer: Some("https://example.test".into()),
        audience: Some("wishd".into()),
        ..JwtConfig::with_secret_file(PathBuf::new())
    });
    let pubkey = public.clone();
    let read = move |_: &Path| Ok(pubkey.clone().into_bytes());
    let a = Authenticator::new(&c, &read).unwrap();
    let key = MintKey::from_private_pem(private.into_bytes()).unwrap();
    assert!(matches!(key, MintKey::Private(Algorithm::ES256, _)));
    let now = now_secs();
    let good = mint(
        &key,
        vec!["s".into()],
        vec![Role::Publisher],
        now,
        60,
        Some("https://example.test".into()),
        Some("wishd".into()),
    )
    .unwrap();
    assert!(a.authorize(Role::Publisher, "s", Some(&good)).is_ok());
    let wrong_aud = mint(
        &key,
        vec!["s".into()],
        vec![Role::Publisher],
        now,
        60,
        Some("https://example.test".into()),
        Some("other".into()),
    )
    .unwrap();
    assert!(matches!(
        a.authorize(Role::Publisher, "s", Some(&wrong_aud)),
        Err(AuthError::InvalidToken(_))
    ));
    // HS256 signed with the public key's PEM text as the HMAC secret.
    let confused = mint(
        &MintKey::Secret(public.into_bytes()),
        vec!["s".into()],
        vec![Role::Publisher],
        now,
        60,
        Some("https://example.test".into()),
        Some("wishd".into()),
    )
    .unwrap();
    assert!(matches!(
        a.authorize(Role::Publisher, "s", Some(&confused)),
        Err(AuthError::InvalidToken(_))
    ));
}

/// RS256 and EdDSA work end to end like ES256 above: the configured public key picks
/// the algorithm, tokens minted with its private key pass, tokens of another key of
/// the same kind do not.
#[test]
fn rs256_and_eddsa_public_keys_verify_their_own_tokens_only() {
    for (alg, want) in [
        (&rcgen::PKCS_RSA_SHA256, Algorithm::RS256),
        (&rcgen::PKCS_ED25519, Algorithm::EdDSA),
    ] {
        let kp = rcgen::KeyPair::generate_for(alg).unwrap();
        let other = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut c = Config::default().auth;
        c.jwt = Some(JwtConfig {
            secret_file: None,
            public_key_file: Some(PathBuf::from("/pub.pem")),
            ..JwtConfig::with_secret_file(PathBuf::new())
        });
        let public = kp.public_key_pem();
        let read = move |_: &Path| Ok(public.clone().into_bytes());
        let a = Authenticator::new(&c, &read).unwrap();
        let now = now_secs();
        let token = |pem: String| {
            let key = MintKey::from_private_pem(pem.into_bytes()).unwrap();
            assert!(
                matches!(&key, MintKey::Private(a, _) if *a == want),
                "{want:?} key recognised"
            );
            mint(
                &key,
                vec!["s".into()],
                vec![Role::Publisher],
                now,
                60,
                None,
                None,
            )
            .unwrap()
        };
        let good = token(kp.serialize_pem());
        assert!(
            a.authorize(Role::Publisher, "s", Some(&good)).is_ok(),
            "{want:?}"
        );
        let forged = token(other.serialize_pem());
        assert!(
            matches!(
                a.authorize(Role::Publisher, "s", Some(&forged)),
                Err(AuthError::InvalidToken(_))
            ),
            "{want:?} token of another key: {:?}",
            a.authorize(Role::Publisher, "s", Some(&forged))
        );
    }
}

#[test]
fn session_checks_need_the_same_rights() {
    let a = with_jwt(jwt_secret());
    let now = now_secs();
    let mine = hs(&["a"], &[Role::Publisher], now, 60);
    let theirs = hs(&["b"], &[Role::Publisher], now, 60);
    let grant = a.authorize(Role::Publisher, "a", Some(&mine)).unwrap();
    assert!(
        a.authorize_session(&grant, Role::Publisher, "a", Some(&mine))
            .is_ok()
    );
    assert!(matches!(
        a.authorize_session(&grant, Role::Publisher, "a", Some(&theirs)),
        Err(AuthError::InsufficientScope { .. })
    ));
    assert_eq!(
        a.authorize_session(&grant, Role::Publisher, "a", None),
        Err(AuthError::Missing)
    );
    assert!(
        a.authorize_session(&Grant::Open, Role::Publisher, "a", None)
            .is_ok()
    );
}

#[test]
fn setup_errors_are_reported() {
    let mut c = Config::default().auth;
    c.jwt = Some(JwtConfig {
        secret: Some(Secret::new("short")),
        secret_file: None,
        ..JwtConfig::with_secret_file(PathBuf::new())
    });
    assert!(Authenticator::new(&c, &no_files).is_err());
    c.jwt = Some(JwtConfig::with_secret_file(PathBuf::from("/missing")));
    assert!(matches!(
        Authenticator::new(&c, &no_files),
        Err(AuthSetupError::Read { .. })
    ));
    let _ = Duration::ZERO;
}
