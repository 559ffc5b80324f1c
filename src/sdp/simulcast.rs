//! Simulcast offers (RFC 8853) are declined, not refused.
//!
//! wishd forwards one encoding per track; simulcast forwarding (layers per viewer) is
//! a later feature. RFC 8853 §5.3 lets an answerer that does not take simulcast leave
//! `a=simulcast` out of its answer; the offerer then sends a single encoding (browsers
//! send their first). So before str0m sees an offer, its `a=simulcast` and `a=rid`
//! lines and the RID header extensions are removed: str0m answers a plain single
//! stream and never expects layers. This keeps browsers that publish with simulcast
//! working (WHIP-48 in the checklist: "the simulcast lines dropped if declined").

use std::borrow::Cow;

/// RTP header extensions that only make sense with rids (RFC 8852).
const RID_EXTENSIONS: [&str; 2] = [
    "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
];

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

/// The offer without simulcast: `a=simulcast`, `a=rid` and the RID header extension
/// lines removed, everything else byte for byte. Offers without simulcast come back
/// borrowed.
pub(crate) fn decline_simulcast(sdp: &str) -> Cow<'_, str> {
    if !offers_simulcast(sdp) {
        return Cow::Borrowed(sdp);
    }
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if !is_simulcast_line(line) {
            out.push_str(line);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{PublisherOptions, publisher_offer};

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
