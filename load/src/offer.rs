//! A viewer's offer as a browser's player writes it.
//!
//! str0m names each m-line with a random `a=mid` and gives even a receive-only
//! m-line an `a=msid` and SSRCs. A browser's WHEP player (`addTransceiver(kind,
//! {direction: "recvonly"})`) numbers its m-lines `0`, `1`, … and sends no stream
//! ids or SSRCs where it only receives. Servers that cache what repeats between the
//! offers of one player (wishd's `sdp::template`) see that only with browser-like
//! offers, so the swarm sends those unless told otherwise: [`browser_like`] rewrites
//! str0m's offer, and [`MidMap::answer_for_str0m`] puts str0m's own mids back into
//! the server's answer before the peer applies it.

use wishd::model::CodecKind;
use wishd::sdp::{push_line, sdp_lines, sections};

/// What one payload type of a session carries, read from the SDP that says what the
/// server sends: its answer, or its counter-offer. A viewer of a foreign publisher
/// (no payload markers) learns each packet's kind, codec and clock from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadInfo {
    /// The payload type.
    pub pt: u8,
    /// On a video m-line.
    pub video: bool,
    /// The codec (`Other` for RTX, RED, FEC and the like).
    pub codec: CodecKind,
    /// The RTP clock rate.
    pub clock: u32,
}

/// Every `a=rtpmap` of `sdp`, with the kind of its m-line. Never panics.
pub fn payload_map(sdp: &str) -> Vec<PayloadInfo> {
    let mut out = Vec::new();
    let mut video = false;
    for line in sdp_lines(sdp) {
        if let Some(m) = line.strip_prefix("m=") {
            video = m.starts_with("video");
            continue;
        }
        let Some((pt, encoding)) = line
            .strip_prefix("a=rtpmap:")
            .and_then(|r| r.split_once(' '))
        else {
            continue;
        };
        let Ok(pt) = pt.trim().parse::<u8>() else {
            continue;
        };
        let mut parts = encoding.trim().split('/');
        let codec = CodecKind::of_name(parts.next().unwrap_or(""));
        let clock = parts
            .next()
            .and_then(|c| c.parse().ok())
            .filter(|&c| c > 0)
            .unwrap_or(if video { 90_000 } else { 48_000 });
        out.push(PayloadInfo {
            pt,
            video,
            codec,
            clock,
        });
    }
    out
}

/// The m-lines' mids of the offer str0m made, in order: the wire mid of the n-th
/// m-line is `n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MidMap {
    str0m: Vec<String>,
}

impl MidMap {
    /// The server's answer to a [`browser_like`] offer, with str0m's mids again.
    pub fn answer_for_str0m(&self, answer: &str) -> String {
        let mut out = String::with_capacity(answer.len() + 16 * self.str0m.len());
        for line in sdp_lines(answer) {
            match rename_mids(line, |mid| self.to_str0m(mid).to_owned()) {
                Some(renamed) => push_line(&mut out, &renamed),
                None => push_line(&mut out, line),
            }
        }
        out
    }

    fn to_str0m<'a>(&'a self, wire: &'a str) -> &'a str {
        wire.parse::<usize>()
            .ok()
            .and_then(|n| self.str0m.get(n))
            .map_or(wire, String::as_str)
    }

    fn to_wire(&self, mid: &str) -> String {
        self.str0m
            .iter()
            .position(|m| m == mid)
            .map_or_else(|| mid.to_owned(), |n| n.to_string())
    }
}

/// A line that names mids (`a=mid:`, `a=group:BUNDLE`) with each one renamed;
/// `None` for any other line.
fn rename_mids(line: &str, rename: impl Fn(&str) -> String) -> Option<String> {
    if let Some(mid) = line.strip_prefix("a=mid:") {
        return Some(format!("a=mid:{}", rename(mid)));
    }
    let mids = line.strip_prefix("a=group:BUNDLE")?;
    let mut out = String::from("a=group:BUNDLE");
    for mid in mids.split_whitespace() {
        out.push(' ');
        out.push_str(&rename(mid));
    }
    Some(out)
}

/// str0m's `offer` rewritten as a browser writes it: mids `0`, `1`, … (in the
/// BUNDLE group too), and no `a=msid`, `a=ssrc` or `a=ssrc-group` on receive-only
/// m-lines, and no stream ids after `a=msid-semantic`. Everything else is str0m's.
pub fn browser_like(offer: &str) -> (String, MidMap) {
    let lines = sdp_lines(offer);
    let map = MidMap {
        str0m: lines
            .iter()
            .filter_map(|l| l.strip_prefix("a=mid:"))
            .map(str::to_owned)
            .collect(),
    };
    let mut out = String::with_capacity(offer.len());
    for section in sections(&lines) {
        let receive_only =
            section.first().is_some_and(|l| l.starts_with("m=")) && section.contains(&"a=recvonly");
        for line in section {
            let own_stream = line.starts_with("a=msid:")
                || line.starts_with("a=ssrc:")
                || line.starts_with("a=ssrc-group:");
            if receive_only && own_stream {
                continue;
            }
            if let Some(renamed) = rename_mids(line, |mid| map.to_wire(mid)) {
                push_line(&mut out, &renamed);
            } else if line.starts_with("a=msid-semantic:") {
                push_line(&mut out, "a=msid-semantic: WMS");
            } else {
                push_line(&mut out, line);
            }
        }
    }
    (out, map)
}

/// `offer` (a captured one) as the `n`-th client of the same player writes it: its
/// own ICE credentials, DTLS fingerprint, origin session id and candidate ports, and
/// where it sends, its own SSRCs and stream ids (`a=ssrc`, `a=ssrc-group`,
/// `a=msid`); everything else as captured, lines ending in CRLF.
pub fn another_client(offer: &str, n: usize) -> String {
    // A different value per client from `n` alone, so runs compare.
    let byte = |i: usize| ((n.wrapping_mul(2_654_435_761) >> (i % 24)) as u8) ^ (i as u8);
    let mut out = String::with_capacity(offer.len() + 64);
    for line in sdp_lines(offer) {
        let own = if line.starts_with("a=ice-ufrag:") {
            Some(format!("a=ice-ufrag:c{n:07}"))
        } else if line.starts_with("a=ice-pwd:") {
            Some(format!("a=ice-pwd:client{n:018}"))
        } else if let Some(rest) = line.strip_prefix("a=fingerprint:") {
            let hash = rest.split(' ').next().unwrap_or("sha-256");
            let count = rest.split(':').count().max(20);
            let hex: Vec<String> = (0..count).map(|i| format!("{:02X}", byte(i))).collect();
            Some(format!("a=fingerprint:{hash} {}", hex.join(":")))
        } else if let Some(rest) = line.strip_prefix("o=") {
            let mut fields: Vec<String> = rest.split(' ').map(str::to_owned).collect();
            if let Some(id) = fields.get_mut(1) {
                *id = (1_000_000 + n).to_string();
            }
            Some(format!("o={}", fields.join(" ")))
        } else if let Some(rest) = line.strip_prefix("a=ssrc:") {
            let (ssrc, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            Some(format!("a=ssrc:{} {tail}", own_ssrc(ssrc, n)))
        } else if let Some(rest) = line.strip_prefix("a=ssrc-group:") {
            let mut fields = rest.split(' ');
            let semantics = fields.next().unwrap_or("");
            let ssrcs: Vec<String> = fields.map(|s| own_ssrc(s, n)).collect();
            Some(format!("a=ssrc-group:{semantics} {}", ssrcs.join(" ")))
        } else if let Some(rest) = line.strip_prefix("a=msid:") {
            let ids: Vec<String> = rest.split(' ').map(|id| format!("{id}-{n}")).collect();
            Some(format!("a=msid:{}", ids.join(" ")))
        } else if let Some(rest) = line.strip_prefix("a=candidate:") {
            let mut fields: Vec<String> = rest.split(' ').map(str::to_owned).collect();
            if let Some(port) = fields.get_mut(5) {
                *port = (20_000 + (n * 7) % 40_000).to_string();
            }
            Some(format!("a=candidate:{}", fields.join(" ")))
        } else {
            None
        };
        push_line(&mut out, own.as_deref().unwrap_or(line));
    }
    out
}

/// An SSRC of the `n`-th client: the captured one changed by `n`, never 0; any text
/// that is not a number is left as it is.
fn own_ssrc(ssrc: &str, n: usize) -> String {
    ssrc.parse::<u32>().map_or_else(
        |_| ssrc.to_owned(),
        |s| {
            (s ^ (n as u32).wrapping_mul(0x9e37_79b9))
                .max(1)
                .to_string()
        },
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use str0m::change::{SdpAnswer, SdpOffer};
    use str0m::media::{Direction, MediaKind};
    use str0m::{Candidate, Rtc, RtcConfig};

    use super::*;

    fn str0m_viewer() -> (Rtc, str0m::change::SdpPendingOffer, String) {
        wishd::client::install_crypto_provider();
        let mut rtc = RtcConfig::new()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_h264(true)
            .build(Instant::now());
        let addr = "127.0.0.2:5000".parse().expect("address");
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().expect("an offer");
        (rtc, pending, offer.to_sdp_string())
    }

    #[test]
    fn the_payload_map_names_each_payload_types_kind_codec_and_clock() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 H264/90000\r\n\
                   a=rtpmap:97 rtx/90000\r\na=rtpmap:x broken\r\na=rtpmap:98\r\n";
        let map = payload_map(sdp);
        assert_eq!(map.len(), 3, "{map:?}");
        assert_eq!(
            (map[0].pt, map[0].video, map[0].codec, map[0].clock),
            (111, false, CodecKind::Opus, 48_000)
        );
        assert_eq!(
            (map[1].pt, map[1].video, map[1].codec, map[1].clock),
            (96, true, CodecKind::H264, 90_000)
        );
        assert_eq!((map[2].pt, map[2].codec), (97, CodecKind::Other));
    }

    #[test]
    fn two_viewers_send_the_same_offer_but_for_their_own_values() {
        let own = |l: &&str| {
            ["o=", "a=ice-", "a=fingerprint:", "a=candidate:"]
                .iter()
                .any(|p| l.starts_with(p))
        };
        let (_, _, a) = str0m_viewer();
        let (_, _, b) = str0m_viewer();
        let (a, b) = (browser_like(&a).0, browser_like(&b).0);
        let a: Vec<_> = sdp_lines(&a).into_iter().filter(|l| !own(l)).collect();
        let b: Vec<_> = sdp_lines(&b).into_iter().filter(|l| !own(l)).collect();
        assert_eq!(a, b);
        assert!(a.contains(&"a=group:BUNDLE 0 1"), "{a:?}");
        assert!(a.contains(&"a=mid:0") && a.contains(&"a=mid:1"));
        assert!(!a.iter().any(|l| l.starts_with("a=msid:")));
        assert!(!a.iter().any(|l| l.starts_with("a=ssrc")));
    }

    #[test]
    fn the_answer_to_a_browser_like_offer_connects_the_str0m_peer() {
        let (mut viewer, pending, offer) = str0m_viewer();
        let (wire, map) = browser_like(&offer);
        let mut server = RtcConfig::new()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_h264(true)
            .build(Instant::now());
        let offer = SdpOffer::from_sdp_string(&wire).expect("the rewritten offer parses");
        let answer = server.sdp_api().accept_offer(offer).expect("accepted");
        let answer = answer.to_sdp_string();
        assert!(answer.contains("a=mid:0"), "{answer}");
        let back = map.answer_for_str0m(&answer);
        assert!(!back.contains("a=mid:0\r\n"));
        let back = SdpAnswer::from_sdp_string(&back).expect("the mapped answer parses");
        viewer
            .sdp_api()
            .accept_answer(pending, back)
            .expect("str0m takes the answer with its own mids");
    }

    /// A captured offer of the fuzz seeds (`fuzz/seeds/sdp_offer/`).
    fn captured(name: &str) -> String {
        let path = format!(
            "{}/../fuzz/seeds/sdp_offer/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn another_client_of_a_captured_player_differs_only_in_its_own_values() {
        let chromium = captured("whep_chromium.sdp");
        let (a, b) = (another_client(&chromium, 1), another_client(&chromium, 2));
        assert_ne!(a, b);
        let differ: Vec<(&str, &str)> = sdp_lines(&a)
            .into_iter()
            .zip(sdp_lines(&b))
            .filter(|(x, y)| x != y)
            .collect();
        for (x, _) in &differ {
            assert!(
                [
                    "a=ice-ufrag:",
                    "a=ice-pwd:",
                    "a=fingerprint:",
                    "o=",
                    "a=candidate:"
                ]
                .iter()
                .any(|p| x.starts_with(p)),
                "{x}"
            );
        }
        assert!(differ.len() >= 5, "{differ:?}");
        // To wishd they are clients of one player: the second gets the first's verdict.
        let memo = wishd::sdp::memo::Inspections::default();
        assert!(!memo.play_offer(&a).expect("parses").remembered);
        assert!(memo.play_offer(&b).expect("parses").remembered);
        // A publisher's: its SSRCs and stream ids are its own too, consistently.
        let whip = captured("whip_chromium.sdp");
        let (a, b) = (another_client(&whip, 1), another_client(&whip, 2));
        let ssrcs = |o: &str| -> Vec<String> {
            sdp_lines(o)
                .into_iter()
                .filter(|l| l.starts_with("a=ssrc") || l.starts_with("a=msid:"))
                .map(str::to_owned)
                .collect()
        };
        let (sa, sb) = (ssrcs(&a), ssrcs(&b));
        assert_eq!(sa.len(), ssrcs(&whip).len());
        assert!(sa.iter().zip(&sb).all(|(x, y)| x != y), "{sa:?}\n{sb:?}");
        assert!(wishd::sdp::parse_offer(a.as_bytes()).is_ok());
    }
}
