//! Configured redirects: a POST to an endpoint whose stream matches a rule is answered
//! `307 Temporary Redirect` with the rule's URL, so a client re-POSTs its offer there
//! (RFC 9725 §4.5, the WHEP draft §4.7; 301/302 are never used, as they let clients
//! turn the POST into a GET).
//!
//! Only session creation is redirected: the session URL the other server returns is
//! where PATCH and DELETE go, and clients need not follow redirects for those.
//! A redirect comes before authorization: the server that takes the session checks
//! the token, and this one may not know it (a balancer in front of nodes with their
//! own keys). The per-address rate limit still applies.

use serde::Deserialize;

use crate::auth::glob_match;
use crate::model::Role;

/// Which endpoints a rule applies to.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedirectKind {
    /// WHIP (publish) endpoints only.
    Whip,
    /// WHEP (play) endpoints only.
    Whep,
    /// Both.
    #[default]
    Both,
}

/// One `[[redirects]]` table.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Stream name or glob (`*`, `?`).
    pub stream: String,
    /// `whip`, `whep` or `both` (default).
    #[serde(default)]
    pub kind: RedirectKind,
    /// The absolute `http://` or `https://` URL to send the client to; `{stream}` is
    /// replaced by the stream name and `{kind}` by `whip` or `whep`.
    pub to: String,
}

/// Checks every rule (what `Config::validate` calls); an error names the key
/// (`redirects[0].to`) and what is wrong.
pub fn validate(rules: &[RedirectConfig]) -> Result<(), (String, String)> {
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

/// The URL a POST to the `kind` endpoint of `stream` is redirected to, if a rule
/// matches (the first matching rule wins).
pub fn target(rules: &[RedirectConfig], kind: Role, stream: &str) -> Option<String> {
    rules
        .iter()
        .find(|r| {
            let kind_ok = match r.kind {
                RedirectKind::Both => true,
                RedirectKind::Whip => kind == Role::Publisher,
                RedirectKind::Whep => kind == Role::Viewer,
            };
            kind_ok && glob_match(&r.stream, stream)
        })
        .map(|r| {
            r.to.replace("{stream}", stream)
                .replace("{kind}", kind.path_segment())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(stream: &str, kind: RedirectKind, to: &str) -> RedirectConfig {
        RedirectConfig {
            stream: stream.into(),
            kind,
            to: to.into(),
        }
    }

    #[test]
    fn first_matching_rule_of_the_right_kind_wins_and_names_the_stream() {
        let rules = [
            rule("cam-*", RedirectKind::Whep, "https://edge/whep/{stream}"),
            rule(
                "cam-*",
                RedirectKind::Both,
                "https://origin/{kind}/{stream}",
            ),
        ];
        assert_eq!(
            target(&rules, Role::Viewer, "cam-1").as_deref(),
            Some("https://edge/whep/cam-1")
        );
        assert_eq!(
            target(&rules, Role::Publisher, "cam-1").as_deref(),
            Some("https://origin/whip/cam-1")
        );
        assert_eq!(target(&rules, Role::Publisher, "studio"), None);
    }

    #[test]
    fn targets_must_be_absolute_http_urls() {
        for to in [
            "/whip/x",
            "ftp://h/x",
            "https://",
            "https:///x",
            "https://a b",
        ] {
            assert!(
                validate(&[rule("*", RedirectKind::Both, to)]).is_err(),
                "{to}"
            );
        }
        assert!(validate(&[rule("*", RedirectKind::Both, "http://h:1/whip/{stream}")]).is_ok());
    }
}
