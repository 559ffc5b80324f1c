//! The offer as str0m parses it, split in two: a *template*, the part that every
//! client of one player sends alike, and the values that are each client's own.
//!
//! str0m's SDP parser is the largest cost of a POST (BENCHMARKS.md, eleventh
//! session: 31 % of the HTTP threads' time in a burst, 96–149 µs per trimmed offer).
//! Viewers that join together usually run the same player in the same browser, and
//! their offers differ only in
//!
//! - the ICE credentials (`a=ice-ufrag`, `a=ice-pwd`) and the DTLS fingerprint
//!   (`a=fingerprint`), which [`split`] replaces with fixed placeholders;
//! - the candidates (`a=candidate`), which it takes out;
//! - the origin line (`o=`, a random session id), the stream ids of
//!   `a=msid-semantic`, and the default candidate's address (the port of the `m=`
//!   line unless it is 0, `c=`, `a=rtcp`), which str0m does not use and which it
//!   writes as constants;
//! - the SSRCs of m-sections the client only receives on (`a=ssrc`, `a=ssrc-group`
//!   where the section is `recvonly` or `inactive`): str0m reads a remote SSRC only
//!   to expect media from it, and takes none on a section it only sends on.
//!
//! [`Templates`] parses each template once and hands out copies (a copy costs about
//! 6 µs against about 280 µs for the parse of a whole str0m offer here). The caller
//! puts the client's own values on the `Rtc` directly ([`OwnValues::apply_before`]
//! before `accept_offer`, [`OwnValues::apply_after`] after it), so every session takes
//! the same path whether its template was cached or not. What the `Rtc` ends up with
//! is what str0m would have taken from the whole offer: the same precedence for
//! credentials and fingerprint (session level, else the first m-section that has
//! them; among several fingerprints, SHA-256 first), and every candidate.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use str0m::change::SdpOffer;
use str0m::config::Fingerprint;
use str0m::{Candidate, IceCreds, Rtc};

use super::{SdpError, push_line, sdp_lines, sections};

/// ICE username fragment of every template.
const UFRAG: &str = "a=ice-ufrag:tmpl";
/// ICE password of every template (22 characters or more, as RFC 8839 asks).
const PWD: &str = "a=ice-pwd:templatetemplatetemplate";
/// DTLS fingerprint of every template.
const FINGERPRINT: &str = "a=fingerprint:sha-256 00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00";
/// Origin line of every template.
const ORIGIN: &str = "o=- 0 0 IN IP4 127.0.0.1";
/// Connection line of every template.
const CONNECTION: &str = "c=IN IP4 0.0.0.0";
/// RTCP address of every template.
const RTCP: &str = "a=rtcp:9 IN IP4 0.0.0.0";
/// Entries a [`ByTemplate`] keeps; past this, one is forgotten for each new one.
pub(crate) const CAPACITY: usize = 64;

/// What one client's offer has of its own, as str0m would have taken it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct OwnValues {
    /// ICE username fragment and password.
    pub(crate) ice: Option<(String, String)>,
    /// The DTLS fingerprint str0m would pick (`<hash> <hex>`).
    pub(crate) fingerprint: Option<String>,
    /// The values of the `a=candidate` lines (`candidate:...`).
    pub(crate) candidates: Vec<String>,
}

impl OwnValues {
    /// Before `accept_offer`: the fingerprint (str0m keeps a fingerprint that is
    /// already set, and takes the template's only when none is).
    pub(crate) fn apply_before(&self, rtc: &mut Rtc) {
        if let Some(f) = self
            .fingerprint
            .as_deref()
            .and_then(|f| f.parse::<Fingerprint>().ok())
        {
            rtc.direct_api().set_remote_fingerprint(f);
        }
    }

    /// After `accept_offer`: the ICE credentials (replacing the template's) and the
    /// candidates. A candidate str0m cannot read is skipped, as in a trickled one.
    pub(crate) fn apply_after(&self, rtc: &mut Rtc) {
        if let Some((ufrag, pass)) = &self.ice {
            rtc.direct_api().set_remote_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass: pass.clone(),
            });
        }
        for line in &self.candidates {
            if let Ok(c) = Candidate::from_sdp_string(line) {
                rtc.add_remote_candidate(c);
            }
        }
    }
}

/// What one section (the session part, or one m-section) holds of the client's own.
#[derive(Default)]
struct SectionValues<'a> {
    ufrag: Option<&'a str>,
    pwd: Option<&'a str>,
    /// The preferred fingerprint so far and its rank (lower is better).
    fingerprint: Option<(u8, &'a str)>,
}

/// RFC 8122 §5.1 as str0m ranks it: SHA-256, then SHA-1, then anything else.
fn hash_rank(fingerprint: &str) -> u8 {
    let hash = fingerprint.split(' ').next().unwrap_or("");
    if hash.eq_ignore_ascii_case("sha-256") {
        0
    } else if hash.eq_ignore_ascii_case("sha-1") {
        1
    } else {
        2
    }
}

/// `<hash> XX:XX:...`, as str0m's parser reads a fingerprint: a hash name, one
/// space, and bytes of exactly two hex digits separated by colons. str0m keeps any
/// other `a=fingerprint` line as an attribute it does not know.
fn well_formed(fingerprint: &str) -> bool {
    fingerprint.split_once(' ').is_some_and(|(hash, hex)| {
        !hash.is_empty()
            && hex
                .split(':')
                .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()))
    })
}

/// The template of `offer` (lines end in CRLF) and the client's own values.
pub(crate) fn split(offer: &str) -> (String, OwnValues) {
    let (template, own, _) = split_checked(offer);
    (template, own)
}

/// [`split`], and whether the lines it took the client's own values from read to
/// wishd's inspection as the template's placeholders do, so that every offer with
/// this template and such lines gets the same verdict ([`super::memo`]):
///
/// - each of those lines is one line to the inspection too: no `\r` inside it, no
///   space around it ([`super::parse::normalise`] would split or trim it);
/// - ICE credentials are not empty (an empty one counts as missing);
/// - an m-line's port is 0 exactly as written, or is not 0 (`00` and `0/2` are 0 to
///   the inspection, and not to the template);
/// - no SSRC line was taken out (its `msid:` may name the section's stream);
/// - the origin, connection and m-lines are valid to sdp-types, which reads the
///   template's placeholders in their place.
pub(crate) fn split_checked(offer: &str) -> (String, OwnValues, bool) {
    let lines = sdp_lines(offer);
    let mut template = String::with_capacity(offer.len());
    let mut own = OwnValues::default();
    let mut found: Vec<SectionValues<'_>> = Vec::new();
    let mut same = true;
    // The own lines sdp-types reads field by field, where they stand.
    let mut fields = String::from("v=0\r\n");
    for section in sections(&lines) {
        let is_media = section.first().is_some_and(|l| l.starts_with("m="));
        // str0m takes a remote SSRC only on a section where it receives.
        let only_receives = is_media
            && section
                .iter()
                .any(|l| *l == "a=recvonly" || *l == "a=inactive");
        let mut values = SectionValues::default();
        for line in section {
            let before = template.len();
            if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
                same &= !v.trim().is_empty();
                values.ufrag.get_or_insert(v.trim());
                push_line(&mut template, UFRAG);
            } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
                same &= !v.trim().is_empty();
                values.pwd.get_or_insert(v.trim());
                push_line(&mut template, PWD);
            } else if let Some(v) = line
                .strip_prefix("a=fingerprint:")
                .map(str::trim)
                .filter(|v| well_formed(v))
            {
                // One str0m cannot read is an unknown line to it, and stays as it is.
                let rank = hash_rank(v);
                if values.fingerprint.is_none_or(|(r, _)| rank < r) {
                    values.fingerprint = Some((rank, v));
                }
                push_line(&mut template, FINGERPRINT);
            } else if let Some(v) = line.strip_prefix("a=candidate:") {
                own.candidates.push(format!("candidate:{v}"));
                same &= plain(line);
                continue;
            } else if line.starts_with("a=msid-semantic:") && !is_media {
                push_line(&mut template, "a=msid-semantic: WMS");
            } else if only_receives
                && (line.starts_with("a=ssrc:") || line.starts_with("a=ssrc-group:"))
            {
                same = false;
                continue;
            } else if line.starts_with("o=") && !is_media {
                push_line(&mut template, ORIGIN);
                push_line(&mut fields, line);
            } else if line.starts_with("c=") {
                push_line(&mut template, CONNECTION);
                push_line(&mut fields, line);
            } else if line.starts_with("a=rtcp:") {
                push_line(&mut template, RTCP);
            } else if let Some(m) = line.strip_prefix("m=") {
                let written = m_line(m);
                same &= written.as_str() == *line || port_not_zero(m);
                push_line(&mut template, &written);
                push_line(&mut fields, line);
            } else if let Some(fixed) = super::parse::opus_channels_added(line) {
                push_line(&mut template, &fixed);
            } else {
                push_line(&mut template, line);
            }
            // A line the template wrote its own way.
            if template[before..].strip_suffix("\r\n") != Some(*line) {
                same &= plain(line);
            }
        }
        found.push(values);
    }
    same = same && sdp_types::Session::parse(fields.as_bytes()).is_ok();
    own.ice = found.iter().find_map(|s| match (s.ufrag, s.pwd) {
        (Some(u), Some(p)) => Some((u.to_owned(), p.to_owned())),
        _ => None,
    });
    own.fingerprint = found
        .iter()
        .find_map(|s| s.fingerprint.map(|(_, f)| f.to_owned()));
    (template, own, same)
}

/// One line to [`super::parse::normalise`] as it stands: nothing it would split or trim.
fn plain(line: &str) -> bool {
    !line.contains('\r') && line.trim() == line
}

/// The port of an m-line's `rest` (after `m=`) is a number other than 0.
fn port_not_zero(rest: &str) -> bool {
    rest.split(' ')
        .nth(1)
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse::<u16>().ok())
        .is_some_and(|p| p != 0)
}

/// An m-line with the port 9 unless it is 0 (a rejected m-section, which str0m
/// tells by its port; any other port is the client's default candidate).
fn m_line(rest: &str) -> String {
    match rest.split_once(' ') {
        Some((media, after)) => match after.split_once(' ') {
            Some((port, tail)) if port != "0" => format!("m={media} 9 {tail}"),
            _ => format!("m={rest}"),
        },
        None => format!("m={rest}"),
    }
}

/// Values kept by template, shared by the HTTP threads: at most [`CAPACITY`], one
/// forgotten for each new one past that.
#[derive(Debug)]
pub(crate) struct ByTemplate<V> {
    kept: Mutex<HashMap<String, Arc<V>>>,
}

impl<V> Default for ByTemplate<V> {
    fn default() -> Self {
        ByTemplate {
            kept: Mutex::default(),
        }
    }
}

impl<V> ByTemplate<V> {
    /// The value kept for `template`, if any.
    pub(crate) fn get(&self, template: &str) -> Option<Arc<V>> {
        self.lock().get(template).cloned()
    }

    /// Keeps `value` for `template`, forgetting another one when full.
    pub(crate) fn keep(&self, template: String, value: Arc<V>) {
        let mut map = self.lock();
        if map.len() >= CAPACITY
            && let Some(old) = map.keys().next().cloned()
        {
            map.remove(&old);
        }
        map.insert(template, value);
    }

    #[cfg(test)]
    /// Values kept now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<V>>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Parsed templates, shared by the HTTP threads.
#[derive(Debug, Default)]
pub(crate) struct Templates {
    parsed: ByTemplate<SdpOffer>,
}

/// One client's offer as str0m gets it.
#[derive(Debug)]
pub(crate) struct TemplateOffer {
    /// The template, parsed.
    pub(crate) offer: SdpOffer,
    /// The client's own values, for the `Rtc`.
    pub(crate) own: OwnValues,
    /// The template was parsed before, and this is a copy.
    pub(crate) copied: bool,
}

impl Templates {
    /// The offer for str0m (the template of `offer`, parsed or copied) and the
    /// client's own values to put on the `Rtc` around `accept_offer`.
    pub(crate) fn offer(&self, offer: &str) -> Result<TemplateOffer, SdpError> {
        let (template, own) = split(offer);
        if let Some(parsed) = self.parsed.get(&template) {
            return Ok(TemplateOffer {
                offer: SdpOffer::from(parsed.deref().deref().clone()),
                own,
                copied: true,
            });
        }
        let parsed =
            SdpOffer::from_sdp_string(&template).map_err(|e| SdpError::Malformed(e.to_string()))?;
        let copy = SdpOffer::from(parsed.deref().clone());
        self.parsed.keep(template, Arc::new(copy));
        Ok(TemplateOffer {
            offer: parsed,
            own,
            copied: false,
        })
    }

    #[cfg(test)]
    /// Templates kept now.
    pub(crate) fn len(&self) -> usize {
        self.parsed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A player's offer: what changes from one client to the next is a parameter.
    fn player_offer(ufrag: &str, fp_byte: &str, session: &str, ssrc: u32, host: &str) -> String {
        let fp = [fp_byte; 32].join(":");
        format!(
            "v=0\r\n\
o=- {session} 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=msid-semantic: WMS {session}\r\n\
m=audio 5000{ssrc} UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 {host}\r\n\
a=rtcp:9 IN IP4 {host}\r\n\
a=candidate:1 1 udp 2122260223 {host} 50000 typ host\r\n\
a=end-of-candidates\r\n\
a=ice-ufrag:{ufrag}\r\n\
a=ice-pwd:{ufrag}{ufrag}{ufrag}{ufrag}{ufrag}{ufrag}\r\n\
a=fingerprint:sha-1 {sha1}\r\n\
a=fingerprint:sha-256 {fp}\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=ssrc:{ssrc} cname:c{ssrc}\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:{ufrag}\r\n\
a=ice-pwd:{ufrag}{ufrag}{ufrag}{ufrag}{ufrag}{ufrag}\r\n\
a=fingerprint:sha-256 {fp}\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n\
a=ssrc-group:FID {ssrc} 7\r\n\
a=ssrc:{ssrc} cname:c{ssrc}\r\n",
            sha1 = ["11"; 20].join(":"),
        )
    }

    #[test]
    fn clients_of_one_player_share_a_template_and_keep_their_own_values() {
        let (a, own_a) = split(&player_offer("aaaa", "AA", "9001", 5, "10.0.0.1"));
        let (b, own_b) = split(&player_offer("bbbb", "BB", "9002", 6, "10.0.0.2"));
        assert_eq!(a, b);
        for gone in [
            "aaaa",
            "AA:AA",
            "9001",
            "a=candidate",
            "a=ssrc",
            "10.0.0",
            "50005",
        ] {
            assert!(!a.contains(gone), "{gone} in\n{a}");
        }
        assert!(a.contains("a=end-of-candidates\r\n"), "{a}");
        assert_eq!(
            own_a,
            OwnValues {
                ice: Some(("aaaa".into(), "aaaa".repeat(6))),
                // str0m prefers SHA-256 to the SHA-1 listed before it.
                fingerprint: Some(format!("sha-256 {}", ["AA"; 32].join(":"))),
                candidates: vec!["candidate:1 1 udp 2122260223 10.0.0.1 50000 typ host".into()],
            }
        );
        assert_eq!(own_b.ice, Some(("bbbb".into(), "bbbb".repeat(6))));
    }

    #[test]
    fn session_level_values_come_before_the_m_sections() {
        let offer = player_offer("mmmm", "CC", "1", 5, "10.0.0.1").replacen(
            "t=0 0\r\n",
            "t=0 0\r\na=ice-ufrag:ssss\r\na=ice-pwd:ssssssssssssssssssssssss\r\na=fingerprint:sha-256 DD:DD\r\n",
            1,
        );
        let (_, own) = split(&offer);
        assert_eq!(own.ice, Some(("ssss".into(), "s".repeat(24))));
        assert_eq!(own.fingerprint.as_deref(), Some("sha-256 DD:DD"));
        // A session part with a ufrag but no password does not count (str0m wants both).
        let offer = player_offer("mmmm", "CC", "1", 5, "10.0.0.1").replacen(
            "t=0 0\r\n",
            "t=0 0\r\na=ice-ufrag:ssss\r\n",
            1,
        );
        assert_eq!(split(&offer).1.ice, Some(("mmmm".into(), "mmmm".repeat(6))));
    }

    #[test]
    fn a_rejected_m_line_keeps_its_port_0() {
        assert_eq!(
            m_line("video 0 UDP/TLS/RTP/SAVPF 96"),
            "m=video 0 UDP/TLS/RTP/SAVPF 96"
        );
        assert_eq!(
            m_line("video 61234 UDP/TLS/RTP/SAVPF 96"),
            "m=video 9 UDP/TLS/RTP/SAVPF 96"
        );
        assert_eq!(m_line("video"), "m=video");
    }

    #[test]
    fn a_publishers_ssrcs_stay_in_its_template() {
        let offer =
            player_offer("aaaa", "AA", "1", 5, "10.0.0.1").replace("a=recvonly", "a=sendonly");
        let (template, _) = split(&offer);
        assert!(template.contains("a=ssrc:5 cname:c5\r\n"), "{template}");
        assert!(template.contains("a=ssrc-group:FID 5 7\r\n"), "{template}");
    }

    #[test]
    fn a_template_is_parsed_once_and_copied_after() {
        let templates = Templates::default();
        for (n, ufrag) in ["aaaa", "bbbb", "cccc"].iter().enumerate() {
            let offer = player_offer(ufrag, "AB", &n.to_string(), n as u32, "10.0.0.1");
            let t = templates.offer(&offer).expect("str0m parses the template");
            assert_eq!(t.offer.to_sdp_string().matches("m=").count(), 2);
            assert_eq!(t.own.ice.map(|(u, _)| u).as_deref(), Some(*ufrag));
            assert_eq!(t.copied, n > 0);
        }
        assert_eq!(templates.len(), 1);
        assert!(templates.offer("v=0\r\nnot sdp\r\n").is_err());
    }

    #[test]
    fn a_fingerprint_str0m_cannot_read_is_passed_over_as_str0m_passes_it_over() {
        let offer = player_offer("aaaa", "AB", "1", 1, "10.0.0.1");
        let bad = offer.replacen("a=fingerprint:sha-256 AB:", "a=fingerprint:sha-256 XYZ:", 1);
        // str0m reads the offer and takes the audio section's SHA-1 fingerprint.
        assert!(str0m::change::SdpOffer::from_sdp_string(&bad).is_ok());
        let (template, own) = split(&bad);
        assert_eq!(
            own.fingerprint,
            Some(format!("sha-1 {}", ["11"; 20].join(":")))
        );
        assert!(
            template.contains("a=fingerprint:sha-256 XYZ:"),
            "{template}"
        );
        assert!(well_formed("sha-256 0A:FF"));
        assert!(!well_formed("sha-256"));
        assert!(!well_formed("sha-256 A:FF"));
    }

    #[test]
    fn the_cache_keeps_at_most_its_capacity() {
        let templates = Templates::default();
        for n in 0..CAPACITY + 10 {
            let offer = player_offer("aaaa", "AB", "1", 1, "10.0.0.1")
                .replace("a=mid:1", &format!("a=mid:v{n}"))
                .replace("BUNDLE 0 1", &format!("BUNDLE 0 v{n}"));
            templates.offer(&offer).expect("parses");
        }
        assert_eq!(templates.len(), CAPACITY);
    }
}
