//! Every check of a configuration, once: [`Config::validate`] says what is wrong
//! with one (naming the key), and [`Config::validated`] turns a good one into a
//! [`Valid<Config>`], which is what the server prepares and starts from. Files the
//! configuration names are read later, by the server's `prepare`, which start and
//! `check-config` share.

use std::net::IpAddr;
use std::ops::Deref;

use hyper::http::uri::Authority;

use super::*;

/// A value that passed its checks: only [`Config::validated`] makes one.
#[derive(Debug, Clone)]
pub struct Valid<T>(T);

impl<T> Deref for Valid<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Valid<T> {
    /// The checked value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Most DTLS sessions kept ready: each holds about 47 KiB of OpenSSL's buffers.
const MAX_PREPARED_DTLS: usize = 10_000;

impl Config {
    /// The configuration, checked ([`Config::validate`]).
    pub fn validated(self) -> Result<Valid<Config>, ConfigError> {
        self.validate()?;
        Ok(Valid(self))
    }

    /// Checks every value that would otherwise fail later, naming the first wrong key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers > MAX_WORKERS {
            return Err(ConfigError::value(
                "workers",
                format!("{} is more than the maximum of {MAX_WORKERS}", self.workers),
            ));
        }
        if self.prepared_dtls > MAX_PREPARED_DTLS {
            return Err(ConfigError::value(
                "prepared_dtls",
                format!(
                    "{} is more than the maximum of {MAX_PREPARED_DTLS}",
                    self.prepared_dtls
                ),
            ));
        }
        if self.udp.port() != 0 {
            let last = self.udp.port() as usize + self.worker_count() - 1;
            if last > u16::MAX as usize {
                return Err(ConfigError::value(
                    "udp",
                    format!(
                        "port {} + {} workers runs past port 65535",
                        self.udp.port(),
                        self.worker_count()
                    ),
                ));
            }
        }
        for ip in &self.public_ips {
            if ip.is_unspecified() || ip.is_multicast() {
                return Err(ConfigError::value(
                    "public_ips",
                    format!("{ip} cannot be advertised as an ICE candidate"),
                ));
            }
            // The media sockets must be able to send from that family: an IPv6
            // address needs `udp` on IPv6, an IPv4 one IPv4 or the dual-stack `[::]`.
            let reachable = match (ip, self.udp.ip()) {
                (IpAddr::V6(_), IpAddr::V6(_)) | (IpAddr::V4(_), IpAddr::V4(_)) => true,
                (IpAddr::V4(_), IpAddr::V6(bound)) => bound.is_unspecified(),
                (IpAddr::V6(_), IpAddr::V4(_)) => false,
            };
            if !reachable {
                return Err(ConfigError::value(
                    "public_ips",
                    format!(
                        "{ip} is not of a family the media sockets on {} can send from (use udp = \"[::]:PORT\" for both)",
                        self.udp.ip()
                    ),
                ));
            }
        }
        for (n, t) in self.auth.tokens.iter().enumerate() {
            if t.token.is_some() == t.token_file.is_some() {
                return Err(ConfigError::value(
                    format!("auth.tokens[{n}]"),
                    "give exactly one of token and token_file",
                ));
            }
        }
        if !self.plain_http && self.https.is_none() {
            return Err(ConfigError::value(
                "plain_http",
                "false needs an [https] listener",
            ));
        }
        if self.cors_origins.is_empty() {
            return Err(ConfigError::value(
                "cors_origins",
                "name at least one origin, or \"*\"",
            ));
        }
        if !self.limits.requests_per_second.is_finite() || self.limits.requests_per_second < 0.0 {
            return Err(ConfigError::value(
                "limits.requests_per_second",
                "must be 0 or more",
            ));
        }
        if self.keyframe_request_interval.is_zero() {
            return Err(ConfigError::value(
                "keyframe_request_interval",
                "must be more than 0",
            ));
        }
        let mut names = std::collections::HashSet::new();
        let sources = (self
            .rtp
            .iter()
            .enumerate()
            .map(|(i, e)| ("rtp", i, &e.stream)))
        .chain(
            self.rtsp
                .iter()
                .enumerate()
                .map(|(i, e)| ("rtsp", i, &e.stream)),
        )
        .chain(
            self.pull
                .iter()
                .enumerate()
                .map(|(i, e)| ("pull", i, &e.stream)),
        );
        for (table, i, stream) in sources {
            if !names.insert(stream.as_str()) {
                return Err(ConfigError::value(
                    format!("{table}[{i}].stream"),
                    format!("stream {stream:?} is configured twice"),
                ));
            }
        }
        for (i, e) in self.rtsp.iter().enumerate() {
            source_entry("rtsp", i, &e.stream, &e.url, &["rtsp"], RTSP_URL)?;
        }
        for (i, e) in self.pull.iter().enumerate() {
            source_entry("pull", i, &e.stream, &e.url, &["http", "https"], WHEP_URL)?;
        }
        let mut pushed = std::collections::HashSet::new();
        for (i, e) in self.push.iter().enumerate() {
            source_entry("push", i, &e.stream, &e.url, &["http", "https"], WHIP_URL)?;
            if !pushed.insert(e.stream.as_str()) {
                return Err(ConfigError::value(
                    format!("push[{i}].stream"),
                    format!("stream {:?} is pushed twice", e.stream),
                ));
            }
        }
        for (i, r) in self.record.iter().enumerate() {
            if r.stream.is_empty() {
                return Err(ConfigError::value(
                    format!("record[{i}].stream"),
                    "name the streams to record (a name or a glob such as \"*\")",
                ));
            }
            if r.directory.as_os_str().is_empty() {
                return Err(ConfigError::value(
                    format!("record[{i}].directory"),
                    "name the directory the files go to",
                ));
            }
            if r.segment < std::time::Duration::from_secs(1) {
                return Err(ConfigError::value(
                    format!("record[{i}].segment"),
                    "must be at least 1s",
                ));
            }
        }
        if self.api.token.is_some() && self.api.token_file.is_some() {
            return Err(ConfigError::value(
                "api.token_file",
                "give at most one of api.token and api.token_file",
            ));
        }
        if let Some(u) = &self.public_url {
            check_public_url(u).map_err(|m| ConfigError::value("public_url", m))?;
        }
        check_ice_servers(&self.ice_servers)
            .map_err(|(index, m)| ConfigError::value(format!("ice_servers[{index}]"), m))?;
        check_redirects(&self.redirects).map_err(|(key, m)| ConfigError::value(key, m))?;
        if self.api.metrics_token_required
            && self.api.token.is_none()
            && self.api.token_file.is_none()
        {
            return Err(ConfigError::value(
                "api.metrics_token_required",
                "true needs api.token or api.token_file",
            ));
        }
        if let Some(c) = &self.cluster {
            check_cluster(c)?;
        }
        if self.rtp_timeout.is_zero() {
            return Err(ConfigError::value("rtp_timeout", "must be more than 0"));
        }
        if self.source_silence.is_zero() {
            return Err(ConfigError::value("source_silence", "must be more than 0"));
        }
        if matches!(self.forward_hold, ForwardHold::Fixed(d) if d > MAX_FORWARD_HOLD) {
            return Err(ConfigError::value(
                "forward_hold",
                "must be at most 50ms (it adds that much delay to every packet)",
            ));
        }
        for (key, d) in [
            ("forward_max_delay", self.forward_max_delay),
            (
                "limits.header_read_timeout",
                self.limits.header_read_timeout,
            ),
            ("limits.idle_timeout", self.limits.idle_timeout),
            ("ice_tcp.idle_timeout", self.ice_tcp.idle_timeout),
            ("ice_tcp.stall_timeout", self.ice_tcp.stall_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::value(key, "must be more than 0"));
            }
        }
        for (key, n) in [
            ("ice_tcp.max_connections", self.ice_tcp.max_connections),
            ("ice_tcp.queue", self.ice_tcp.queue),
            (
                "limits.max_streams_per_connection",
                self.limits.max_streams_per_connection as usize,
            ),
        ] {
            if n == 0 {
                return Err(ConfigError::value(key, "must be more than 0"));
            }
        }
        Ok(())
    }
}

/// Checks the `[cluster]` table: where Redis is, how other nodes reach this one, and
/// the token they send each other.
fn check_cluster(c: &super::ClusterConfig) -> Result<(), ConfigError> {
    if !(c.redis.starts_with("redis://") || c.redis.starts_with("rediss://")) {
        return Err(ConfigError::value(
            "cluster.redis",
            "must be redis://host[:port][/db] or rediss://…",
        ));
    }
    let url_ok = url::Url::parse(&c.url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if !url_ok {
        return Err(ConfigError::value(
            "cluster.url",
            "must be this node's base URL as other nodes reach it, http(s)://host[:port]",
        ));
    }
    let id_ok = |s: &str| {
        s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
    };
    if !id_ok(&c.node) || c.node.len() > 64 {
        return Err(ConfigError::value(
            "cluster.node",
            "letters, digits, '-', '_' and '.', at most 64 (empty: the host name)",
        ));
    }
    if c.name.is_empty() || !id_ok(&c.name) {
        return Err(ConfigError::value(
            "cluster.name",
            "letters, digits, '-', '_' and '.'",
        ));
    }
    let token_ok = c.token.as_ref().is_some_and(|t| {
        let t = t.expose();
        t.len() >= 16
            && t.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
            })
    });
    if !token_ok {
        return Err(ConfigError::value(
            "cluster.token",
            "the token nodes send each other for relays: at least 16 characters of \
             A-Z a-z 0-9 - . _ ~ + / =",
        ));
    }
    if c.lease_ttl < std::time::Duration::from_millis(300) {
        return Err(ConfigError::value(
            "cluster.lease_ttl",
            "must be at least 300ms",
        ));
    }
    Ok(())
}

/// Checks a configured `public_url`: `http://` or `https://`, a host, an optional
/// path prefix, no query or fragment.
pub fn check_public_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let authority = rest.map(|r| r.split('/').next().unwrap_or(""));
    let ok = authority.is_some_and(|a| !a.is_empty() && a.parse::<Authority>().is_ok())
        && !url.contains(['?', '#'])
        && url.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{url:?} must be an http:// or https:// URL without query"
        ))
    }
}

/// True for a value that can sit in a quoted-string without breaking the header.
fn printable(s: &str) -> bool {
    s.chars().all(|c| (' '..='~').contains(&c))
}

/// Checks the shape of every `[[ice_servers]]` entry (no files read); an error is the
/// entry's index and what is wrong.
fn check_ice_servers(entries: &[IceServerConfig]) -> Result<(), (usize, String)> {
    for (index, e) in entries.iter().enumerate() {
        if e.urls.is_empty() {
            return Err(invalid(index, "urls is empty"));
        }
        let mut turn = false;
        for url in &e.urls {
            let scheme = url.split(':').next().unwrap_or("").to_ascii_lowercase();
            match scheme.as_str() {
                "stun" | "stuns" => {}
                "turn" | "turns" => turn = true,
                _ => {
                    return Err((
                        index,
                        format!("{url:?} is not a stun:, stuns:, turn: or turns: URI"),
                    ));
                }
            }
            let ok = url.len() > scheme.len() + 1
                && url
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '\\'));
            if !ok {
                return Err(invalid(index, format!("{url:?} is not a valid URI")));
            }
        }
        let secret = e.static_auth_secret.is_some() || e.static_auth_secret_file.is_some();
        if e.static_auth_secret.is_some() && e.static_auth_secret_file.is_some() {
            return Err(invalid(
                index,
                "give at most one of static_auth_secret and static_auth_secret_file",
            ));
        }
        if secret && e.credential.is_some() {
            return Err(invalid(
                index,
                "give either credential or a static auth secret, not both",
            ));
        }
        if turn && !secret && (e.username.is_none() || e.credential.is_none()) {
            return Err(invalid(
                index,
                "turn: URIs need username and credential, or a static_auth_secret",
            ));
        }
        if !turn && (secret || e.credential.is_some()) {
            return Err(invalid(index, "credentials are for turn: URIs only"));
        }
        if secret && e.ttl.is_zero() {
            return Err(invalid(index, "ttl must be more than 0"));
        }
        let texts = [
            e.username.as_deref(),
            e.credential.as_ref().map(Secret::expose),
        ];
        if texts.into_iter().flatten().any(|t| !printable(t)) {
            return Err(invalid(
                index,
                "username and credential must be printable ASCII",
            ));
        }
    }
    Ok(())
}

fn invalid(index: usize, reason: impl Into<String>) -> (usize, String) {
    (index, reason.into())
}

/// Checks every `[[redirects]]` rule; an error names the key (`redirects[0].to`) and
/// what is wrong.
fn check_redirects(rules: &[RedirectConfig]) -> Result<(), (String, String)> {
    for (n, r) in rules.iter().enumerate() {
        if r.stream.is_empty() {
            return Err((format!("redirects[{n}].stream"), "is empty".into()));
        }
        let rest =
            r.to.strip_prefix("https://")
                .or_else(|| r.to.strip_prefix("http://"));
        let ok = rest.is_some_and(|h| !h.is_empty() && !h.starts_with('/'))
            && r.to.chars().all(|c| c.is_ascii_graphic());
        if !ok {
            return Err((
                format!("redirects[{n}].to"),
                format!("{:?} must be an absolute http:// or https:// URL", r.to),
            ));
        }
    }
    Ok(())
}

const RTSP_URL: &str = "must be rtsp://[user:password@]host[:port]/path";
const WHEP_URL: &str = "must be the WHEP endpoint, http(s)://host[:port]/path";
const WHIP_URL: &str = "must be the WHIP endpoint, http(s)://host[:port]/path";

/// Entry `i` of table `table` names a valid stream and a URL of one of `schemes`
/// with a host (`rule` says what it must be).
fn source_entry(
    table: &str,
    i: usize,
    stream: &str,
    url: &str,
    schemes: &[&str],
    rule: &str,
) -> Result<(), ConfigError> {
    if !crate::model::valid_stream_name(stream) {
        return Err(ConfigError::value(
            format!("{table}[{i}].stream"),
            crate::model::STREAM_NAME_RULE,
        ));
    }
    match url::Url::parse(url) {
        Ok(u) if schemes.contains(&u.scheme()) && u.host().is_some() => Ok(()),
        _ => Err(ConfigError::value(format!("{table}[{i}].url"), rule)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(urls: &[&str]) -> IceServerConfig {
        IceServerConfig::with_urls(urls)
    }

    #[test]
    fn bad_ice_servers_are_refused_naming_the_entry() {
        let bad = [
            entry(&[]),
            entry(&["http://x"]),
            entry(&["stun:a b"]),
            entry(&["stun:"]),
            entry(&["turn:t.example"]),
            {
                let mut e = entry(&["stun:s.example"]);
                e.credential = Some(Secret::new("x"));
                e
            },
            {
                let mut e = entry(&["turn:t.example"]);
                e.username = Some("u\n".into());
                e.credential = Some(Secret::new("p"));
                e
            },
        ];
        for e in bad {
            let c = Config {
                ice_servers: vec![e],
                ..Config::default()
            };
            let err = c.validate().unwrap_err();
            assert!(err.to_string().contains("ice_servers[0]"), "{err}");
        }
    }

    fn rule(stream: &str, kind: RedirectKind, to: &str) -> RedirectConfig {
        RedirectConfig::new(stream, kind, to)
    }

    #[test]
    fn redirect_targets_must_be_absolute_http_urls() {
        for to in [
            "/whip/x",
            "ftp://h/x",
            "https://",
            "https:///x",
            "https://a b",
        ] {
            assert!(
                check_redirects(&[rule("*", RedirectKind::Both, to)]).is_err(),
                "{to}"
            );
        }
        let ok = rule("*", RedirectKind::Both, "http://h:1/whip/{stream}");
        assert!(check_redirects(&[ok]).is_ok());
    }

    #[test]
    fn public_url_must_be_an_http_url() {
        assert!(check_public_url("https://media.example").is_ok());
        assert!(check_public_url("http://10.0.0.1:8080/wishd").is_ok());
        for bad in [
            "media.example",
            "https://",
            "https://a b",
            "https://h/?x=1",
            "ftp://h",
        ] {
            assert!(check_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_a_configuration_that_passes_every_check_becomes_valid() {
        assert!(Config::default().validated().is_ok());
        let bad = Config {
            source_silence: Duration::ZERO,
            ..Config::default()
        };
        assert!(bad.validated().is_err());
    }
}
