//! Simulcast offers (RFC 8853): what wishd takes, and what it declines.
//!
//! A publisher's video m-line may send two to four encodings of the same picture
//! (layers, told apart by their RTP stream ids, RFC 8852). wishd takes them, so each
//! viewer can get the one its link carries: str0m answers the layers it was offered
//! (`a=rid:… recv`, `a=simulcast:recv …`, RFC 8853 §5.3.2). Everything else that asks
//! for simulcast is declined instead of refused: RFC 8853 §5.3 lets an answerer leave
//! `a=simulcast` out, and the offerer then sends a single encoding (browsers send their
//! first). Declining means removing the m-line's `a=simulcast` and `a=rid` lines and the
//! RID header extensions before str0m sees the offer, so str0m answers a plain single
//! stream and never expects layers (WHIP-48: "the simulcast lines dropped if
//! declined"). Declined are: audio, a viewer's (receive) simulcast, alternatives
//! (`a,b`), fewer than two or more than [`MAX_LAYERS`] layers, rids without an
//! `a=rid` line or that str0m would rewrite, an m-line without the RID header
//! extension, and every offer when the operator turned simulcast off.

use std::borrow::Cow;

use str0m::media::MediaKind;

use super::{Offer, OfferedMedia};

/// RTP header extensions that only make sense with rids (RFC 8852).
pub(crate) const RID_EXTENSIONS: [&str; 2] = [
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
];

use crate::model::MAX_LAYERS;

fn is_simulcast_line(line: &str) -> bool {
    let l = line.trim();
    l.starts_with("a=simulcast:")
        || l.starts_with("a=rid:")
        || (l.starts_with("a=extmap:") && RID_EXTENSIONS.iter().any(|u| l.contains(u)))
}

/// True when the offer asks for simulcast.
pub(crate) fn offers_simulcast(sdp: &str) -> bool {
    sdp.lines().any(|l| l.trim().starts_with("a=simulcast:"))
}

/// The rids an `a=simulcast` value sends, in its order, with the paused marker (`~`)
/// dropped; None when it sends nothing or offers alternatives for one layer.
fn send_rids(value: &str) -> Option<Vec<String>> {
    let mut words = value.split_ascii_whitespace();
    while let Some(direction) = words.next() {
        let list = words.next()?;
        if direction != "send" {
            continue;
        }
        let mut rids = Vec::new();
        for layer in list.split(';') {
            if layer.contains(',') {
                return None;
            }
            let rid = layer.trim_start_matches('~');
            if rid.is_empty() || rids.iter().any(|r| r == rid) {
                return None;
            }
            rids.push(rid.to_string());
        }
        return Some(rids);
    }
    None
}

/// A rid str0m answers as it was offered: it rewrites other characters than letters,
/// digits and `_` and keeps only 8 bytes (str0m 0.25), and an answer naming a rid
/// the offer did not would be refused by the offerer.
fn str0m_keeps(rid: &str) -> bool {
    (1..=8).contains(&rid.len()) && rid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The layers of a publisher's m-line that wishd takes, lowest index first as the
/// offer lists them (not by quality: that is measured, see `directory`).
fn accepted_layers(m: &OfferedMedia) -> Option<Vec<String>> {
    if m.kind != Some(MediaKind::Video) || !m.direction.sends() || !m.rid_extension {
        return None;
    }
    let rids = send_rids(m.simulcast.as_deref()?)?;
    let declared = rids.iter().all(|r| m.rids.contains(r) && str0m_keeps(r));
    ((2..=MAX_LAYERS).contains(&rids.len()) && declared).then_some(rids)
}

/// What a publisher's offer keeps of simulcast: the offer as str0m should read it
/// (declined m-lines without their simulcast lines; borrowed when nothing changed),
/// and the layers of the m-line that keeps simulcast, as (mid, rids). `allow` false
/// declines every m-line.
pub(crate) fn take_simulcast<'a>(
    sdp: &'a str,
    offer: &Offer,
    allow: bool,
) -> (Cow<'a, str>, Option<(String, Vec<String>)>) {
    let mut taken = None;
    let mut decline = Vec::with_capacity(offer.media.len());
    for m in &offer.media {
        let layers = allow.then(|| accepted_layers(m)).flatten();
        let keep = match (layers, m.mid.as_ref()) {
            (Some(rids), Some(mid)) if taken.is_none() => {
                taken = Some((mid.clone(), rids));
                true
            }
            _ => false,
        };
        decline.push(m.simulcast.is_some() && !keep);
    }
    if !decline.contains(&true) {
        return (Cow::Borrowed(sdp), taken);
    }
    (Cow::Owned(strip(sdp, &decline)), taken)
}

/// The offer without simulcast anywhere (a viewer's offer: wishd sends one encoding).
pub fn decline_simulcast(sdp: &str) -> Cow<'_, str> {
    if !offers_simulcast(sdp) {
        return Cow::Borrowed(sdp);
    }
    Cow::Owned(strip(sdp, &[]))
}

/// `sdp` without the simulcast lines of the m-sections marked in `decline` (by index;
/// sections past its end are declined too), everything else byte for byte.
fn strip(sdp: &str, decline: &[bool]) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut section: Option<usize> = None;
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") {
            section = Some(section.map_or(0, |s| s + 1));
        }
        let declined = section.is_some_and(|s| decline.get(s).copied().unwrap_or(true));
        if !(declined && is_simulcast_line(line)) {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{PublisherOptions, publisher_offer};
    use str0m::media::MediaKind;

    /// A publisher offer whose video m-line asks for three simulcast layers, as Chrome
    /// writes it.
    fn simulcast_offer() -> String {
        let offer = publisher_offer(&PublisherOptions::default()).unwrap();
        let video = offer.find("m=video").unwrap();
        let (head, tail) = offer.split_at(video);
        let tail = tail.replacen(
            "a=sendonly\r\n",
            "a=sendonly\r\n\
             a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n\
             a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id\r\n\
             a=rid:q send\r\na=rid:h send\r\na=rid:f send\r\na=simulcast:send q;h;f\r\n",
            1,
        );
        format!("{head}{tail}")
    }

    #[test]
    fn plain_offers_pass_through_untouched() {
        let offer = publisher_offer(&PublisherOptions::default()).unwrap();
        assert!(matches!(decline_simulcast(&offer), Cow::Borrowed(_)));
    }

    #[test]
    fn simulcast_lines_are_dropped_and_the_rest_kept() {
        let offer = simulcast_offer();
        assert!(offers_simulcast(&offer));
        let declined = decline_simulcast(&offer);
        for gone in ["a=rid:", "a=simulcast", "rtp-stream-id"] {
            assert!(!declined.contains(gone), "{gone} left in\n{declined}");
        }
        let kept = offer.lines().filter(|l| !is_simulcast_line(l)).count();
        assert_eq!(declined.lines().count(), kept);
        assert!(declined.ends_with("\r\n"));
    }

    fn str0m_answer(offer: &str) -> String {
        crate::client::install_crypto_provider();
        let parsed = crate::sdp::parse_offer(offer.as_bytes()).unwrap();
        let chosen = crate::sdp::check_publish_offer(&parsed).unwrap();
        let mut cfg = str0m::Rtc::builder();
        *cfg.codec_config() = str0m::format::CodecConfig::new_from_payload_params(
            chosen.iter().map(|c| c.payload_params()).collect(),
        );
        let mut rtc = cfg.build(std::time::Instant::now());
        rtc.sdp_api()
            .accept_offer(str0m::change::SdpOffer::from_sdp_string(offer).unwrap())
            .unwrap()
            .to_sdp_string()
    }

    fn take(offer: &str, allow: bool) -> (String, Option<(String, Vec<String>)>) {
        let parsed = crate::sdp::parse_offer(offer.as_bytes()).unwrap();
        let (sdp, taken) = take_simulcast(offer, &parsed, allow);
        (sdp.into_owned(), taken)
    }

    #[test]
    fn three_video_layers_are_taken_in_the_offers_order() {
        let offer = simulcast_offer();
        let (sdp, taken) = take(&offer, true);
        let (mid, rids) = taken.expect("layers taken");
        assert_eq!(rids, ["q", "h", "f"]);
        let parsed = crate::sdp::parse_offer(offer.as_bytes()).unwrap();
        let video = parsed
            .media
            .iter()
            .find(|m| m.kind == Some(MediaKind::Video));
        assert_eq!(video.and_then(|m| m.mid.clone()), Some(mid));
        assert_eq!(sdp, offer, "a taken offer goes to str0m unchanged");
        let answer = str0m_answer(&sdp);
        assert!(answer.contains("a=simulcast:recv q;h;f"), "{answer}");
        for rid in ["q", "h", "f"] {
            assert!(answer.contains(&format!("a=rid:{rid} recv")), "{answer}");
        }
    }

    #[test]
    fn simulcast_the_server_cannot_take_is_declined_not_refused() {
        let offer = simulcast_offer();
        let cases = [
            ("turned off", offer.clone(), false),
            (
                "alternatives",
                offer.replace("send q;h;f", "send q,h;f"),
                true,
            ),
            ("one layer", offer.replace("send q;h;f", "send q"), true),
            (
                "five layers",
                offer
                    .replace(
                        "a=rid:q send\r\n",
                        "a=rid:q send\r\na=rid:a send\r\na=rid:b send\r\n",
                    )
                    .replace("send q;h;f", "send q;a;b;h;f"),
                true,
            ),
            (
                "a rid str0m would rewrite",
                offer
                    .replace("a=rid:h send", "a=rid:hi-1 send")
                    .replace("send q;h;f", "send q;hi-1;f"),
                true,
            ),
            (
                "an undeclared rid",
                offer.replace("send q;h;f", "send q;h;x"),
                true,
            ),
            (
                "no RID header extension",
                offer
                    .lines()
                    .filter(|l| !l.contains(RID_EXTENSIONS[0]))
                    .map(|l| format!("{l}\r\n"))
                    .collect(),
                true,
            ),
        ];
        for (why, offer, allow) in cases {
            let (sdp, taken) = take(&offer, allow);
            assert!(taken.is_none(), "{why}: taken");
            assert!(
                !sdp.contains("a=simulcast") && !sdp.contains("a=rid:"),
                "{why}: {sdp}"
            );
            let answer = str0m_answer(&sdp);
            assert!(!answer.contains("a=simulcast"), "{why}: {answer}");
        }
    }

    #[test]
    fn paused_layers_are_taken_without_their_marker() {
        assert_eq!(
            send_rids("send q;~h;f"),
            Some(vec!["q".into(), "h".into(), "f".into()])
        );
        assert_eq!(send_rids("recv q;h"), None);
        assert_eq!(
            send_rids("recv a send b;c"),
            Some(vec!["b".into(), "c".into()])
        );
        assert_eq!(send_rids("send q;q"), None);
        assert_eq!(send_rids("send"), None);
    }

    #[test]
    fn str0m_answers_a_declined_offer_without_simulcast() {
        // Left alone, str0m would accept the layers, which wishd cannot forward.
        let raw = str0m_answer(&simulcast_offer());
        assert!(raw.contains("a=simulcast:recv"), "{raw}");
        let answer = str0m_answer(&decline_simulcast(&simulcast_offer()));
        assert!(!answer.contains("a=simulcast"), "{answer}");
        assert!(!answer.contains("a=rid"), "{answer}");
        assert!(answer.contains("m=video"), "{answer}");
    }
}
