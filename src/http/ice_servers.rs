//! STUN and TURN servers for clients, sent as `Link: <uri>; rel="ice-server"` headers
//! (RFC 9725 §4.6) on the 201 of a new session and on an authorised, non-preflight
//! OPTIONS of an endpoint.
//!
//! A TURN entry carries either fixed long-term credentials (`username`, `credential`)
//! or a `static_auth_secret` shared with the TURN server, from which short-lived
//! credentials are minted per answer in the convention of coturn's REST API
//! (`use-auth-secret` / `static-auth-secret`): the username is
//! `<expiry unix time>:<user>` and the password is
//! `base64(HMAC-SHA1(secret, username))`. The TURN server checks the HMAC and the
//! expiry, so nothing is shared at run time but the secret.
//!
//! Link parameters follow RFC 9725 (`username`, `credential`); `credential-type =
//! "password"` is added for clients written against the drafts, which required it.

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine;
use hyper::header::HeaderValue;

use crate::config::IceServerConfig;

/// Why `[[ice_servers]]` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum IceServerError {
    /// A configuration mistake; the text names the entry.
    #[error("ice_servers[{index}]: {reason}")]
    Invalid {
        /// Which entry.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// How one entry authenticates.
#[derive(Clone)]
enum Credentials {
    None,
    LongTerm {
        username: String,
        password: String,
    },
    Rest {
        user: String,
        key: Box<hmac::Key>,
        ttl: Duration,
    },
}

#[derive(Clone)]
struct Entry {
    urls: Vec<String>,
    credentials: Credentials,
}

/// The configured ICE servers, ready to be written as `Link` headers.
#[derive(Clone, Default)]
pub(crate) struct IceServers {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for IceServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self
            .entries
            .iter()
            .flat_map(|e| e.urls.iter().map(String::as_str))
            .collect();
        f.debug_struct("IceServers").field("urls", &urls).finish()
    }
}

fn invalid(index: usize, reason: impl Into<String>) -> IceServerError {
    IceServerError::Invalid {
        index,
        reason: reason.into(),
    }
}

impl IceServers {
    /// Builds the entries, reading secret files through `read`.
    pub(crate) fn new(
        entries: &[IceServerConfig],
        read: &dyn Fn(&std::path::Path) -> std::io::Result<Vec<u8>>,
    ) -> Result<IceServers, IceServerError> {
        let mut out = Vec::with_capacity(entries.len());
        for (index, e) in entries.iter().enumerate() {
            let secret = match (&e.static_auth_secret, &e.static_auth_secret_file) {
                (Some(s), _) => Some(s.expose().as_bytes().to_vec()),
                (None, Some(path)) => {
                    let mut bytes = read(path).map_err(|err| {
                        invalid(index, format!("cannot read {}: {err}", path.display()))
                    })?;
                    while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                        bytes.pop();
                    }
                    Some(bytes)
                }
                (None, None) => None,
            };
            let credentials = match (secret, &e.username, &e.credential) {
                (Some(secret), user, _) => {
                    if secret.is_empty() {
                        return Err(invalid(index, "the static auth secret is empty"));
                    }
                    Credentials::Rest {
                        user: user.clone().unwrap_or_else(|| "wishd".into()),
                        key: Box::new(hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &secret)),
                        ttl: e.ttl,
                    }
                }
                (None, Some(u), Some(c)) => Credentials::LongTerm {
                    username: u.clone(),
                    password: c.expose().to_owned(),
                },
                _ => Credentials::None,
            };
            out.push(Entry {
                urls: e.urls.clone(),
                credentials,
            });
        }
        Ok(IceServers { entries: out })
    }

    /// True when no server is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// One `Link` value per URI, with credentials minted for `now_unix` (seconds).
    pub(crate) fn links(&self, now_unix: u64) -> Vec<HeaderValue> {
        let mut out = Vec::new();
        for e in &self.entries {
            let creds = match &e.credentials {
                Credentials::None => None,
                Credentials::LongTerm { username, password } => {
                    Some((username.clone(), password.clone()))
                }
                Credentials::Rest { user, key, ttl } => {
                    Some(rest_credentials(key, user, now_unix + ttl.as_secs()))
                }
            };
            for url in &e.urls {
                let turn = url.to_ascii_lowercase().starts_with("turn");
                let mut v = format!("<{url}>; rel=\"ice-server\"");
                if let (true, Some((u, p))) = (turn, &creds) {
                    v.push_str(&format!(
                        "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                        quote(u),
                        quote(p)
                    ));
                }
                // Every part was checked to be printable ASCII.
                if let Ok(h) = HeaderValue::from_str(&v) {
                    out.push(h);
                }
            }
        }
        out
    }
}

/// TURN REST credentials (coturn `static-auth-secret`): username `<expiry>:<user>`,
/// password base64(HMAC-SHA1(secret, username)).
fn rest_credentials(key: &hmac::Key, user: &str, expiry: u64) -> (String, String) {
    let username = if user.is_empty() {
        expiry.to_string()
    } else {
        format!("{expiry}:{user}")
    };
    let tag = hmac::sign(key, username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
    (username, password)
}

/// Escapes `"` and `\` for a quoted-string (RFC 9110 §5.6.4).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn entry(urls: &[&str]) -> IceServerConfig {
        IceServerConfig::with_urls(urls)
    }

    fn no_files(_: &std::path::Path) -> std::io::Result<Vec<u8>> {
        Err(std::io::ErrorKind::NotFound.into())
    }

    #[test]
    fn hmac_sha1_matches_the_rfc_2202_vector() {
        // RFC 2202 test case 2: key "Jefe".
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    #[test]
    fn rest_credentials_follow_the_coturn_convention() {
        // Computed independently: base64(HMAC-SHA1("north", "1700000000:wishd")).
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"north");
        let (u, p) = rest_credentials(&key, "wishd", 1_700_000_000);
        assert_eq!(u, "1700000000:wishd");
        assert_eq!(p, "d4vBq7L9HgpsnwVl5I0Kz/Ao1Pc=");
        assert_eq!(rest_credentials(&key, "", 5).0, "5");
    }

    #[test]
    fn links_carry_stun_plain_and_turn_with_minted_credentials() {
        let mut turn = entry(&["turn:turn.example.net:3478?transport=udp"]);
        turn.static_auth_secret = Some(Secret::new("north"));
        turn.ttl = Duration::from_secs(100);
        let mut fixed = entry(&["turns:t2.example.net"]);
        fixed.username = Some("al\"ice".into());
        fixed.credential = Some(Secret::new("pw"));
        let servers =
            IceServers::new(&[entry(&["stun:stun.example.net"]), turn, fixed], &no_files).unwrap();
        let links: Vec<String> = servers
            .links(1_699_999_900)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            links,
            [
                "<stun:stun.example.net>; rel=\"ice-server\"",
                "<turn:turn.example.net:3478?transport=udp>; rel=\"ice-server\"; \
                 username=\"1700000000:wishd\"; credential=\"d4vBq7L9HgpsnwVl5I0Kz/Ao1Pc=\"; \
                 credential-type=\"password\"",
                "<turns:t2.example.net>; rel=\"ice-server\"; username=\"al\\\"ice\"; \
                 credential=\"pw\"; credential-type=\"password\"",
            ]
        );
    }

    #[test]
    fn secret_file_is_read_and_trimmed() {
        let mut e = entry(&["turn:t.example"]);
        e.static_auth_secret_file = Some("/s".into());
        let read = |_: &std::path::Path| Ok(b"north\n".to_vec());
        let links = IceServers::new(&[e], &read).unwrap().links(1_699_913_600);
        assert!(
            links[0]
                .to_str()
                .unwrap()
                .contains("credential=\"d4vBq7L9HgpsnwVl5I0Kz/Ao1Pc=\"")
        );
    }

    #[test]
    fn an_unreadable_secret_file_is_refused() {
        let mut e = entry(&["turn:t.example"]);
        e.static_auth_secret_file = Some("/missing".into());
        assert!(IceServers::new(&[e], &no_files).is_err());
    }
}
