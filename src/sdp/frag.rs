//! `application/trickle-ice-sdpfrag` bodies (RFC 8840) as WHIP/WHEP PATCH requests
//! carry them: ICE credentials, candidates and end-of-candidates, for trickle ICE and
//! for ICE restarts (RFC 9725 §4.3).

use super::SdpError;

/// The largest fragment accepted.
pub(crate) const MAX_FRAG: usize = 16 * 1024;

/// What a fragment says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IceFragment {
    /// `a=ice-ufrag`, at session or media level.
    pub(crate) ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub(crate) pwd: Option<String>,
    /// The values of `a=candidate:` lines (without the `a=` prefix), in order.
    pub(crate) candidates: Vec<String>,
    /// `a=end-of-candidates` was present.
    pub(crate) end_of_candidates: bool,
    /// The `a=mid` values of the m-sections.
    pub(crate) mids: Vec<String>,
}

impl IceFragment {
    /// True when the fragment carries credentials different from `current` (the
    /// client's ufrag we know): an ICE restart (RFC 9725 §4.3.3).
    pub(crate) fn is_restart(&self, current_remote_ufrag: &str) -> bool {
        matches!(&self.ufrag, Some(u) if u != current_remote_ufrag)
    }
}

/// Parses a fragment. Every non-empty line must be `<letter>=<value>`; anything else
/// is [`SdpError::Malformed`]. Candidate lines are kept as text: whether one is
/// usable is decided later, and unusable ones are dropped silently.
pub(crate) fn parse_fragment(body: &[u8]) -> Result<IceFragment, SdpError> {
    if body.len() > MAX_FRAG {
        return Err(SdpError::Malformed("the fragment is too large".into()));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| SdpError::Malformed("the fragment is not UTF-8".into()))?;
    let mut frag = IceFragment::default();
    let mut lines = 0;
    for raw in text.split(['\n', '\r']) {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        lines += 1;
        let bytes = line.as_bytes();
        if bytes.len() < 2 || !bytes[0].is_ascii_lowercase() || bytes[1] != b'=' {
            return Err(SdpError::Malformed(format!(
                "fragment line is not <type>=<value>: {}",
                truncate(line)
            )));
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let (name, value) = match attr.split_once(':') {
            Some((n, v)) => (n, v.trim()),
            None => (attr, ""),
        };
        match name {
            "ice-ufrag" if !value.is_empty() => frag.ufrag = Some(value.to_owned()),
            "ice-pwd" if !value.is_empty() => frag.pwd = Some(value.to_owned()),
            "candidate" if !value.is_empty() => frag.candidates.push(format!("candidate:{value}")),
            "end-of-candidates" => frag.end_of_candidates = true,
            "mid" if !value.is_empty() => frag.mids.push(value.to_owned()),
            _ => {}
        }
    }
    if lines == 0 {
        return Err(SdpError::Malformed("the fragment is empty".into()));
    }
    if frag.ufrag.is_some() != frag.pwd.is_some() {
        return Err(SdpError::Malformed(
            "the fragment has one of ice-ufrag and ice-pwd without the other".into(),
        ));
    }
    Ok(frag)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRICKLE: &str = "a=ice-options:trickle ice2\r\na=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:EsAw\r\n\
a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0\r\n\
a=candidate:2 1 udp 2122260223 abc.local 61765 typ host\r\na=end-of-candidates\r\n";

    #[test]
    fn trickle_fragment_yields_credentials_candidates_and_end() {
        let f = parse_fragment(TRICKLE.as_bytes()).unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.pwd.as_deref(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        assert_eq!(f.candidates.len(), 2);
        assert!(f.candidates[0].starts_with("candidate:1387637174 1 udp"));
        assert!(f.end_of_candidates);
        assert_eq!(f.mids, vec!["0"]);
        assert!(!f.is_restart("EsAw"));
        assert!(f.is_restart("old1"));
    }

    #[test]
    fn garbage_is_malformed_and_never_panics() {
        for body in ["zzz", "", "\r\n", "a", "=x", "A=b"] {
            assert!(
                parse_fragment(body.as_bytes()).is_err(),
                "{body:?} was accepted"
            );
        }
        for n in 0..TRICKLE.len() {
            let _ = parse_fragment(&TRICKLE.as_bytes()[..n]);
        }
        assert!(parse_fragment(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn ufrag_without_pwd_is_malformed() {
        assert!(parse_fragment(b"a=ice-ufrag:abcd\r\n").is_err());
    }

    #[test]
    fn lf_only_endings_are_accepted() {
        let f = parse_fragment(b"a=ice-ufrag:u1\na=ice-pwd:p1\na=end-of-candidates\n").unwrap();
        assert!(f.end_of_candidates && f.candidates.is_empty());
    }
}

/// Builds the body of a 200 answer to an ICE restart from str0m's new SDP answer:
/// the session's `ice-lite` and `ice-options` lines, then the first m-section's
/// line, mid, new credentials and candidates (RFC 9725 §4.3.3, RFC 8840 §4.4).
pub(crate) fn restart_answer_fragment(answer_sdp: &str) -> String {
    let mut session = Vec::new();
    let mut media = Vec::new();
    let mut in_first_media = false;
    let mut seen_media = false;
    for line in answer_sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            if seen_media {
                break;
            }
            seen_media = true;
            in_first_media = true;
            media.push(line.to_owned());
            continue;
        }
        let wanted_session = line == "a=ice-lite" || line.starts_with("a=ice-options:");
        let wanted_media = line.starts_with("a=mid:")
            || line.starts_with("a=ice-ufrag:")
            || line.starts_with("a=ice-pwd:")
            || line.starts_with("a=candidate:")
            || line == "a=end-of-candidates";
        if !in_first_media && wanted_session {
            session.push(line.to_owned());
        } else if !in_first_media
            && (line.starts_with("a=ice-ufrag:") || line.starts_with("a=ice-pwd:"))
        {
            // Session-level credentials belong with the media section in a fragment.
            media.push(line.to_owned());
        } else if in_first_media && (wanted_media || wanted_session) {
            if wanted_session {
                session.push(line.to_owned());
            } else {
                media.push(line.to_owned());
            }
        }
    }
    if !media.iter().any(|l| l == "a=end-of-candidates") {
        media.push("a=end-of-candidates".to_owned());
    }
    let mut out = String::new();
    for l in session.iter().chain(media.iter()) {
        out.push_str(l);
        out.push_str("\r\n");
    }
    out
}

/// Replaces every `a=ice-ufrag` / `a=ice-pwd` of an offer with new values, for
/// renegotiating a restart through str0m's offer/answer path.
pub(crate) fn offer_with_credentials(offer_sdp: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(offer_sdp.len());
    for line in offer_sdp.lines() {
        let t = line.trim_end();
        if t.starts_with("a=ice-ufrag:") {
            out.push_str("a=ice-ufrag:");
            out.push_str(ufrag);
        } else if t.starts_with("a=ice-pwd:") {
            out.push_str("a=ice-pwd:");
            out.push_str(pwd);
        } else if t.starts_with("a=candidate:") || t == "a=end-of-candidates" {
            // Old candidates are replaced by the fragment's (RFC 9725 §4.3.3).
            continue;
        } else {
            out.push_str(t);
        }
        out.push_str("\r\n");
    }
    out
}

/// The first `a=ice-ufrag` value of an SDP.
pub(crate) fn first_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::trim)
}

#[cfg(test)]
mod answer_tests {
    use super::*;

    #[test]
    fn restart_fragment_keeps_ice_lite_options_and_new_credentials() {
        let answer = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
a=ice-lite\r\na=ice-options:trickle\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
a=ice-ufrag:NEWU\r\na=ice-pwd:NEWPWD\r\na=candidate:1 1 udp 2130706175 127.0.0.1 5000 typ host\r\n\
a=end-of-candidates\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
a=ice-ufrag:NEWU\r\n";
        let f = restart_answer_fragment(answer);
        let parsed = parse_fragment(f.as_bytes()).unwrap();
        assert_eq!(parsed.ufrag.as_deref(), Some("NEWU"));
        assert_eq!(parsed.pwd.as_deref(), Some("NEWPWD"));
        assert_eq!(parsed.candidates.len(), 1);
        assert_eq!(parsed.mids, vec!["0"]);
        assert!(f.contains("a=ice-lite\r\n") && f.contains("a=ice-options:trickle\r\n"));
        assert!(!f.contains("rtpmap"));
    }

    #[test]
    fn offer_credentials_are_swapped_and_old_candidates_dropped() {
        let offer = "v=0\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\nm=audio 9 X 111\r\n\
a=candidate:1 1 udp 1 1.2.3.4 5 typ host\r\na=mid:0\r\n";
        let new = offer_with_credentials(offer, "nu", "np");
        assert!(new.contains("a=ice-ufrag:nu\r\n") && new.contains("a=ice-pwd:np\r\n"));
        assert!(!new.contains("old") && !new.contains("a=candidate"));
        assert_eq!(first_ufrag(&new), Some("nu"));
    }
}
