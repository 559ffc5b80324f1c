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

use crate::auth::glob_match;
use crate::config::{RedirectConfig, RedirectKind};
use crate::model::Role;

/// The URL a POST to the `kind` endpoint of `stream` is redirected to, if a rule
/// matches (the first matching rule wins).
pub(crate) fn target(rules: &[RedirectConfig], kind: Role, stream: &str) -> Option<String> {
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
        RedirectConfig::new(stream, kind, to)
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
}
