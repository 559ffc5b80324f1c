//! Bearer-token authorization, sans-IO: parsing the `Authorization` header, static
//! tokens compared in constant time, JWTs with the algorithm pinned by the configured
//! key, glob matching of stream names and the scope check of an action on a stream.
//!
//! Nothing here touches the network or the clock of a request path except through
//! `jsonwebtoken`'s expiry check; key and token files are read by the caller (through
//! the `read` function given to [`Authenticator::new`]). Errors are the typed
//! [`AuthError`]; the HTTP edge maps them to statuses (RFC 6750 §3.1).
//!
//! Token values never appear in an error message or a `Debug` output.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, JwtConfig, Policy};
use crate::model::Role;

/// A refused authorization. The messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// No credentials where a token is required (401, no error code).
    #[error("a bearer token is required")]
    Missing,
    /// The `Authorization` header is not `Bearer <token68>` (400, `invalid_request`).
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
    /// The token is unknown, badly signed, expired or not yet valid (401,
    /// `invalid_token`).
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The token is valid but grants no right to this action on this stream (403,
    /// `insufficient_scope`).
    #[error("the token does not allow {action} on this stream")]
    InsufficientScope {
        /// What was asked.
        action: Role,
    },
}

impl AuthError {
    /// The RFC 6750 `error` code, if this error has one (a missing token has none).
    pub(crate) fn bearer_error(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => None,
            AuthError::Malformed(_) => Some("invalid_request"),
            AuthError::InvalidToken(_) => Some("invalid_token"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
        }
    }
}

/// Why the authorization settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A token or key file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which setting.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A setting is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// Parses an `Authorization` header value into its bearer token (RFC 6750 §2.1).
/// The scheme is case-insensitive; the token must be a `b64token` (token68).
pub(crate) fn parse_authorization(value: &[u8]) -> Result<&str, AuthError> {
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed("not ASCII"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::Malformed("expected \"Bearer <token>\""))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed("only the Bearer scheme is supported"));
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() {
        return Err(AuthError::Malformed("empty bearer token"));
    }
    let body = token.trim_end_matches('=');
    if body.is_empty()
        || !body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
    {
        return Err(AuthError::Malformed(
            "the bearer token has invalid characters",
        ));
    }
    Ok(token)
}

/// Glob match of a stream name: `*` is any run of characters (also empty), `?` is one
/// character; everything else matches itself.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    let p = pattern.as_bytes();
    let n = name.as_bytes();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// What a token allows: actions on streams matching any of its patterns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rights {
    /// Stream names or globs.
    pub(crate) streams: Vec<String>,
    /// Allowed actions.
    pub(crate) actions: Vec<Role>,
}

impl Rights {
    /// Whether `action` on `stream` is allowed.
    pub(crate) fn allows(&self, action: Role, stream: &str) -> bool {
        self.actions.contains(&action) && self.streams.iter().any(|p| glob_match(p, stream))
    }
}

/// How a session was authorized: kept with the session to check later requests on it
/// (DELETE now, PATCH later). Holds rights, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Grant {
    /// Created under an open policy: the session URL is the only capability.
    #[default]
    Open,
    /// Created with a token that had these rights.
    Token(Arc<Rights>),
}

/// A configured static token: the SHA-256 of its value and its rights.
struct StaticToken {
    digest: [u8; 32],
    rights: Arc<Rights>,
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

struct Jwt {
    key: DecodingKey,
    validation: Validation,
}

/// The token claims wishd reads. `exp` is required by the validation; `nbf` is
/// honoured when present.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct Claims {
    /// Expiry, seconds since the epoch.
    pub(crate) exp: u64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nbf: Option<u64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) iat: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) aud: Option<String>,
    /// The stream names or globs the token grants: one string or a list.
    #[serde(default)]
    pub(crate) streams: OneOrMany<String>,
    /// The actions the token grants: `publish`, `play`, or a list of them.
    #[serde(default)]
    pub(crate) actions: OneOrMany<Role>,
}

/// A claim that is either one value or a list of them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<T> {
    /// One value.
    One(T),
    /// A list.
    Many(Vec<T>),
}

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Decides who may do what. Built once at start from [`AuthConfig`].
pub(crate) struct Authenticator {
    publish: Policy,
    play: Policy,
    query_token: bool,
    statics: Vec<StaticToken>,
    jwt: Option<Jwt>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("publish", &self.publish)
            .field("play", &self.play)
            .field("query_token", &self.query_token)
            .field("static_tokens", &self.statics.len())
            .field("jwt", &self.jwt.is_some())
            .finish()
    }
}

/// Reads a file: [`std::fs::read`] in the server, anything in tests.
pub(crate) type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>;

fn read_text(
    read: ReadFile<'_>,
    what: &'static str,
    path: &Path,
) -> Result<String, AuthSetupError> {
    let bytes = read(path).map_err(|source| AuthSetupError::Read {
        what,
        path: path.display().to_string(),
        source,
    })?;
    String::from_utf8(bytes)
        .map(|s| s.trim().to_owned())
        .map_err(|_| AuthSetupError::Invalid(format!("{what} {} is not UTF-8", path.display())))
}

/// The signing or verifying key material of a JWT setting, with its pinned algorithm.
pub enum JwtKey {
    /// HS256 shared secret.
    Secret(Vec<u8>),
    /// A PEM public key (RS256, ES256, EdDSA).
    Public(Algorithm, Vec<u8>),
}

/// Loads the configured JWT key: a secret (inline or file) or a PEM public key.
pub fn load_jwt_key(jwt: &JwtConfig, read: ReadFile<'_>) -> Result<JwtKey, AuthSetupError> {
    let mut secret = jwt.secret.as_ref().map(|s| s.expose().as_bytes().to_vec());
    if let Some(path) = &jwt.secret_file {
        secret = Some(read_text(read, "JWT secret file", path)?.into_bytes());
    }
    match (secret, &jwt.public_key_file) {
        (Some(_), Some(_)) => Err(AuthSetupError::Invalid(
            "jwt: give either a secret or a public key, not both".into(),
        )),
        (Some(s), None) => {
            if s.len() < 16 {
                return Err(AuthSetupError::Invalid(
                    "jwt: the HS256 secret must be at least 16 bytes".into(),
                ));
            }
            Ok(JwtKey::Secret(s))
        }
        (None, Some(path)) => {
            let pem = read(path).map_err(|source| AuthSetupError::Read {
                what: "JWT public key",
                path: path.display().to_string(),
                source,
            })?;
            let alg = match jwt.algorithm.as_deref() {
                Some(a) => a.parse::<Algorithm>().map_err(|_| {
                    AuthSetupError::Invalid(format!("jwt: unknown algorithm {a:?}"))
                })?,
                None => detect_algorithm(&pem)?,
            };
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(AuthSetupError::Invalid(
                    "jwt: a public key cannot be used with an HMAC algorithm".into(),
                ));
            }
            decoding_key(alg, &pem)?;
            Ok(JwtKey::Public(alg, pem))
        }
        (None, None) => Err(AuthSetupError::Invalid(
            "jwt: set secret, secret_file or public_key_file".into(),
        )),
    }
}

fn detect_algorithm(pem: &[u8]) -> Result<Algorithm, AuthSetupError> {
    if DecodingKey::from_rsa_pem(pem).is_ok() {
        Ok(Algorithm::RS256)
    } else if DecodingKey::from_ec_pem(pem).is_ok() {
        Ok(Algorithm::ES256)
    } else if DecodingKey::from_ed_pem(pem).is_ok() {
        Ok(Algorithm::EdDSA)
    } else {
        Err(AuthSetupError::Invalid(
            "jwt: the public key is not an RSA, EC or Ed25519 PEM public key".into(),
        ))
    }
}

fn decoding_key(alg: Algorithm, pem: &[u8]) -> Result<DecodingKey, AuthSetupError> {
    let key = match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem),
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(pem),
        _ => {
            return Err(AuthSetupError::Invalid(
                "jwt: HMAC algorithms take a secret".into(),
            ));
        }
    };
    key.map_err(|e| {
        AuthSetupError::Invalid(format!("jwt: the public key does not fit {alg:?}: {e}"))
    })
}

impl Authenticator {
    /// Builds the authenticator, reading token and key files through `read`.
    pub(crate) fn new(
        config: &AuthConfig,
        read: ReadFile<'_>,
    ) -> Result<Authenticator, AuthSetupError> {
        let mut statics = Vec::new();
        for (n, t) in config.tokens.iter().enumerate() {
            let value = match (&t.token, &t.token_file) {
                (Some(v), None) => v.expose().trim().to_owned(),
                (None, Some(path)) => read_text(read, "token file", path)?,
                _ => {
                    return Err(AuthSetupError::Invalid(format!(
                        "tokens[{n}]: give exactly one of token and token_file"
                    )));
                }
            };
            if value.len() < 8 {
                return Err(AuthSetupError::Invalid(format!(
                    "tokens[{n}]: a token must be at least 8 characters"
                )));
            }
            if parse_authorization(format!("Bearer {value}").as_bytes()).is_err() {
                return Err(AuthSetupError::Invalid(format!(
                    "tokens[{n}]: a token may hold only A-Z a-z 0-9 - . _ ~ + / ="
                )));
            }
            statics.push(StaticToken {
                digest: sha256(value.as_bytes()),
                rights: Arc::new(Rights {
                    streams: t.streams.clone(),
                    actions: t.actions.clone(),
                }),
            });
        }
        let jwt = match &config.jwt {
            None => None,
            Some(j) => {
                let (alg, key) = match load_jwt_key(j, read)? {
                    JwtKey::Secret(s) => (Algorithm::HS256, DecodingKey::from_secret(&s)),
                    JwtKey::Public(alg, pem) => (alg, decoding_key(alg, &pem)?),
                };
                let mut validation = Validation::new(alg);
                // jsonwebtoken checks `iss` and `aud` only when a token carries them: a
                // configured issuer or audience must also be present.
                let mut required = vec!["exp"];
                if j.issuer.is_some() {
                    required.push("iss");
                }
                if j.audience.is_some() {
                    required.push("aud");
                }
                validation.set_required_spec_claims(&required);
                validation.validate_exp = true;
                validation.validate_nbf = true;
                validation.leeway = j.leeway.as_secs();
                validation.reject_tokens_expiring_in_less_than = 0;
                match &j.issuer {
                    Some(iss) => validation.set_issuer(&[iss]),
                    None => validation.iss = None,
                }
                match &j.audience {
                    Some(aud) => validation.set_audience(&[aud]),
                    None => validation.validate_aud = false,
                }
                Some(Jwt { key, validation })
            }
        };
        Ok(Authenticator {
            publish: config.publish,
            play: config.play,
            query_token: config.query_token,
            statics,
            jwt,
        })
    }

    /// The policy of an action.
    pub(crate) fn policy(&self, action: Role) -> Policy {
        match action {
            Role::Publisher => self.publish,
            Role::Viewer => self.play,
        }
    }

    /// Whether a `?token=` query parameter is accepted.
    pub(crate) fn query_token(&self) -> bool {
        self.query_token
    }

    /// Whether some static token or a JWT key can authorize `action`.
    pub(crate) fn has_credentials_for(&self, action: Role) -> bool {
        self.jwt.is_some()
            || self
                .statics
                .iter()
                .any(|s| s.rights.actions.contains(&action))
    }

    /// The rights of a presented token, or why it is not valid.
    pub(crate) fn validate(&self, token: &str) -> Result<Arc<Rights>, AuthError> {
        let digest = sha256(token.as_bytes());
        let mut found: Option<&Arc<Rights>> = None;
        for s in &self.statics {
            // Every configured token is compared, without an early exit.
            if bool::from(s.digest.ct_eq(&digest)) {
                found = Some(&s.rights);
            }
        }
        if let Some(r) = found {
            return Ok(r.clone());
        }
        let Some(jwt) = &self.jwt else {
            return Err(AuthError::InvalidToken("unknown token".into()));
        };
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(AuthError::InvalidToken("unknown token".into()));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &jwt.key, &jwt.validation)
            .map_err(|e| AuthError::InvalidToken(jwt_reason(&e)))?;
        let claims = data.claims;
        Ok(Arc::new(Rights {
            streams: claims.streams.into_vec(),
            actions: claims.actions.into_vec(),
        }))
    }

    /// Authorizes a new session: `action` on `stream` with an optional bearer token.
    pub(crate) fn authorize(
        &self,
        action: Role,
        stream: &str,
        token: Option<&str>,
    ) -> Result<Grant, AuthError> {
        if self.policy(action) == Policy::Open {
            return Ok(Grant::Open);
        }
        let token = token.ok_or(AuthError::Missing)?;
        let rights = self.validate(token)?;
        if rights.allows(action, stream) {
            Ok(Grant::Token(rights))
        } else {
            Err(AuthError::InsufficientScope { action })
        }
    }

    /// Authorizes a request on an existing session (DELETE, later PATCH): the session's
    /// own grant decides. A session created with a token needs a token that has the
    /// right to the same action on the same stream; another stream's token is refused.
    pub(crate) fn authorize_session(
        &self,
        grant: &Grant,
        action: Role,
        stream: &str,
        token: Option<&str>,
    ) -> Result<(), AuthError> {
        match grant {
            Grant::Open => Ok(()),
            Grant::Token(_) => {
                let token = token.ok_or(AuthError::Missing)?;
                let rights = self.validate(token)?;
                if rights.allows(action, stream) {
                    Ok(())
                } else {
                    Err(AuthError::InsufficientScope { action })
                }
            }
        }
    }
}

fn jwt_reason(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidAlgorithm => {
            "the token's algorithm does not fit the configured key".into()
        }
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the {c} claim is missing"),
        _ => "the token cannot be decoded".into(),
    }
}

/// Mints a JWT for `streams` and `actions`, valid `lifetime_secs` from `now`.
/// HS256 with a secret, or the algorithm of a PEM private key (RS256, ES256, EdDSA).
pub fn mint(
    key: &MintKey,
    streams: Vec<String>,
    actions: Vec<Role>,
    now: u64,
    lifetime_secs: u64,
    issuer: Option<String>,
    audience: Option<String>,
) -> Result<String, AuthSetupError> {
    let claims = Claims {
        exp: now.saturating_add(lifetime_secs),
        nbf: Some(now),
        iat: Some(now),
        iss: issuer,
        aud: audience,
        streams: OneOrMany::Many(streams),
        actions: OneOrMany::Many(actions),
    };
    let (alg, enc) = match key {
        MintKey::Secret(s) => (Algorithm::HS256, EncodingKey::from_secret(s)),
        MintKey::Private(alg, pem) => {
            let k = match alg {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
                Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
                Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
                _ => {
                    return Err(AuthSetupError::Invalid(format!("cannot mint with {alg:?}")));
                }
            };
            (
                *alg,
                k.map_err(|e| AuthSetupError::Invalid(format!("private key: {e}")))?,
            )
        }
    };
    jsonwebtoken::encode(&Header::new(alg), &claims, &enc)
        .map_err(|e| AuthSetupError::Invalid(format!("cannot sign: {e}")))
}

/// A key that can sign tokens.
pub enum MintKey {
    /// HS256 shared secret.
    Secret(Vec<u8>),
    /// A PEM private key and its algorithm.
    Private(Algorithm, Vec<u8>),
}

impl MintKey {
    /// A PEM private key, its algorithm found from the key.
    pub fn from_private_pem(pem: Vec<u8>) -> Result<MintKey, AuthSetupError> {
        let alg = if EncodingKey::from_rsa_pem(&pem).is_ok() {
            Algorithm::RS256
        } else if EncodingKey::from_ec_pem(&pem).is_ok() {
            Algorithm::ES256
        } else if EncodingKey::from_ed_pem(&pem).is_ok() {
            Algorithm::EdDSA
        } else {
            return Err(AuthSetupError::Invalid(
                "the private key is not an RSA, EC or Ed25519 PEM key".into(),
            ));
        };
        Ok(MintKey::Private(alg, pem))
    }
}

/// A random token of 32 URL-safe characters (about 190 bits).
pub(crate) fn random_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..32)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
