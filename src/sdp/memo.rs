//! Inspections remembered by template: a viewer's offer that differs from an earlier
//! one only in what is each client's own ([`super::template`]) reads the same to
//! [`super::parse_offer`], so the verdict of the first is the verdict of the next.
//!
//! Viewers who join together run the same player, and parsing and summarising a
//! browser's offer is a large share of a WHEP POST's time on the HTTP threads
//! (`cargo bench --bench offer`). Nothing is checked less: an offer is
//! answered from memory only when the lines that make it differ from the template
//! pass the same checks the whole parse would give them
//! ([`super::template::split_checked`]); any other offer is parsed whole, which also
//! gives a malformed one the exact error the parse names.

use std::sync::Arc;

use super::parse::MAX_OFFER_BYTES;
use super::template::{ByTemplate, split_checked};
use super::{Offer, SdpError, decline_simulcast, parse_offer};

/// Verdicts on viewers' offers by template, shared by the HTTP threads.
#[derive(Debug, Default)]
pub struct Inspections {
    seen: ByTemplate<Offer>,
}

/// A viewer's offer as wishd's inspection read it.
#[derive(Debug)]
pub struct Inspected {
    /// What [`parse_offer`] says of the offer with its simulcast lines declined.
    pub offer: Arc<Offer>,
    /// The verdict was given to an earlier offer of the same template.
    pub remembered: bool,
}

impl Inspections {
    /// `parse_offer(decline_simulcast(offer))`, from memory when it can be.
    pub fn play_offer(&self, offer: &str) -> Result<Inspected, SdpError> {
        let (template, same) = if offer.len() <= MAX_OFFER_BYTES {
            let (template, _, same) = split_checked(offer);
            (template, same)
        } else {
            (String::new(), false)
        };
        if same && let Some(known) = self.seen.get(&template) {
            return Ok(Inspected {
                offer: known,
                remembered: true,
            });
        }
        let parsed = Arc::new(parse_offer(decline_simulcast(offer).as_bytes())?);
        if same {
            self.seen.keep(template, Arc::clone(&parsed));
        }
        Ok(Inspected {
            offer: parsed,
            remembered: false,
        })
    }

    #[cfg(test)]
    /// Verdicts kept now.
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }
}

/// Players' offers as they reach wishd, for the differential checks of the memory
/// against the whole parse (unit tests and the fuzz target `offer_memo`): Chrome's
/// WHEP player (audio and video, receive only), a video-only player with its own
/// session-level credentials, and a player that sends too (its SSRCs stay in the
/// template) and asks for simulcast (declined for viewers).
#[cfg(any(test, fuzzing))]
pub(crate) const PLAYERS: [&str; 3] = [
    "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 0 8\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=candidate:1467250027 1 udp 2122260223 192.168.1.20 58123 typ host generation 0\r\n\
a=ice-ufrag:Xq3v\r\n\
a=ice-pwd:h7Yc2dpz0ZkXb9Wq1LmN4aTr\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 45\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Xq3v\r\n\
a=ice-pwd:h7Yc2dpz0ZkXb9Wq1LmN4aTr\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack\r\n\
a=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:103 rtx/90000\r\n\
a=fmtp:103 apt=102\r\n\
a=rtpmap:45 AV1/90000\r\n\
a=rtcp-fb:45 nack\r\n",
    "v=0\r\n\
o=mozilla...THIS_IS_SDPARTA-99.0 3052157281446546785 0 IN IP4 0.0.0.0\r\n\
s=-\r\n\
t=0 0\r\n\
a=fingerprint:sha-256 1F:AE:4C:2B:90:31:8D:77:0E:55:A2:C9:3B:64:DE:F0:11:29:8A:7C:E2:5D:46:B3:90:0F:CA:71:38:EE:52:D4\r\n\
a=ice-ufrag:2b1c6c3e\r\n\
a=ice-pwd:4e6b0c1f9a3d5e7f8a9b0c1d2e3f4a5b\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic:WMS *\r\n\
m=video 50514 UDP/TLS/RTP/SAVPF 126 127 120\r\n\
c=IN IP4 192.168.1.21\r\n\
a=candidate:0 1 UDP 2122252543 192.168.1.21 50514 typ host\r\n\
a=candidate:1 1 UDP 1686052863 203.0.113.7 50514 typ srflx raddr 192.168.1.21 rport 50514\r\n\
a=end-of-candidates\r\n\
a=recvonly\r\n\
a=mid:0\r\n\
a=rtcp-mux\r\n\
a=setup:actpass\r\n\
a=rtpmap:126 H264/90000\r\n\
a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1\r\n\
a=rtcp-fb:126 nack\r\n\
a=rtcp-fb:126 nack pli\r\n\
a=rtpmap:127 rtx/90000\r\n\
a=fmtp:127 apt=126\r\n\
a=rtpmap:120 VP8/90000\r\n",
    "v=0\r\n\
o=- 77 1 IN IP4 10.0.0.5\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE a v\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:pl4y\r\n\
a=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-1 11:22:33:44:55:66:77:88:99:00:AA:BB:CC:DD:EE:FF:11:22:33:44\r\n\
a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\r\n\
a=setup:actpass\r\n\
a=mid:a\r\n\
a=sendrecv\r\n\
a=msid:player mic\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000\r\n\
a=ssrc:1111 cname:player\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 96\r\n\
c=IN IP4 0.0.0.0\r\n\
a=bundle-only\r\n\
a=mid:v\r\n\
a=sendrecv\r\n\
a=rtcp-mux\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n\
a=rid:h send\r\n\
a=rid:l send\r\n\
a=simulcast:send h;l\r\n\
a=ssrc:2222 cname:player\r\n",
];

/// `base` with the lines that are each client's own rewritten from `data`: per such
/// line one byte says to keep it (5 in 8), replace its value, replace one of its
/// fields, or add to it; the new text comes from the next bytes, mostly digits and letters, at
/// times a space, a CR, a LF, a colon or a slash.
#[cfg(any(test, fuzzing))]
pub(crate) fn own_lines_rewritten(base: &str, data: &[u8]) -> String {
    const OWN: [&str; 10] = [
        "a=ice-ufrag:",
        "a=ice-pwd:",
        "a=fingerprint:",
        "a=candidate:",
        "a=msid-semantic:",
        "a=rtcp:",
        "a=ssrc:",
        "o=",
        "c=",
        "m=",
    ];
    const TEXT: &[u8] = b"0123456789abcfmoAF0000 \r\n:/.-=9";
    let mut data = data.iter().copied();
    let text = |data: &mut dyn Iterator<Item = u8>| -> String {
        let n = data.next().unwrap_or(0) % 12;
        (0..n)
            .map(|_| char::from(TEXT[usize::from(data.next().unwrap_or(0)) % TEXT.len()]))
            .collect()
    };
    let mut out = String::with_capacity(base.len() + 64);
    for line in base.split_inclusive("\r\n") {
        let body = line.trim_end_matches("\r\n");
        let Some(prefix) = OWN.iter().find(|p| body.starts_with(**p)) else {
            out.push_str(line);
            continue;
        };
        let value = &body[prefix.len()..];
        let rewritten = match data.next().unwrap_or(0) % 8 {
            4 => format!("{prefix}{}", text(&mut data)),
            5 => {
                let mut fields: Vec<String> = value.split(' ').map(str::to_owned).collect();
                let at = usize::from(data.next().unwrap_or(0)) % fields.len().max(1);
                if let Some(f) = fields.get_mut(at) {
                    *f = text(&mut data);
                }
                format!("{prefix}{}", fields.join(" "))
            }
            6 => format!("{body}{}", text(&mut data)),
            _ => body.to_owned(),
        };
        out.push_str(&rewritten);
        out.push_str("\r\n");
    }
    out
}

/// `variant` asked of an inspection that has seen `base`, against `variant` parsed
/// whole: what differs, if anything.
#[cfg(any(test, fuzzing))]
pub(crate) fn differs_from_parse(base: &str, variant: &str) -> Option<String> {
    let memo = Inspections::default();
    let _ = memo.play_offer(base);
    let got = memo.play_offer(variant).map(|i| format!("{:?}", i.offer));
    let want = parse_offer(decline_simulcast(variant).as_bytes()).map(|o| format!("{o:?}"));
    (got != want).then(|| format!("remembered: {got:?}\nparsed: {want:?}"))
}

#[cfg(test)]
mod tests {
    use super::super::template::CAPACITY;
    use super::*;

    /// `PLAYERS[0]` as another client of the same player writes it.
    fn another_client(n: u32) -> String {
        PLAYERS[0]
            .replace("Xq3v", &format!("c{n:03}"))
            .replace("4611731400430051336", &format!("{}", 1000 + n))
            .replace("6B:8B", &format!("{:02X}:8B", n % 256))
            .replace(
                "192.168.1.20 58123",
                &format!("192.168.1.{} {}", n % 250, 50000 + n),
            )
    }

    /// `PLAYERS[0]` with the first `from` made `to`.
    fn chromium_with(from: &str, to: &str) -> String {
        let changed = PLAYERS[0].replacen(from, to, 1);
        assert_ne!(changed, PLAYERS[0], "no {from:?} in the offer");
        changed
    }

    #[test]
    fn the_clients_of_one_player_are_parsed_once_and_read_alike() {
        let memo = Inspections::default();
        for n in 0..5 {
            let offer = another_client(n);
            let got = memo.play_offer(&offer).expect("a player's offer");
            assert_eq!(got.remembered, n > 0, "offer {n}");
            let whole = parse_offer(offer.as_bytes()).expect("parses");
            assert_eq!(format!("{:?}", got.offer), format!("{whole:?}"));
        }
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn an_own_line_the_parse_refuses_gets_the_parse_s_own_error() {
        let memo = Inspections::default();
        memo.play_offer(PLAYERS[0]).expect("parses");
        for (from, to) in [
            (
                "o=- 4611731400430051336 2 IN",
                "o=- 4611731400430051336 two IN",
            ),
            ("o=- 4611731400430051336 2 IN IP4 127.0.0.1", "o=- 1 2"),
            (
                "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=candidate",
                "c=IN\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=candidate",
            ),
            ("m=video 9 UDP", "m=video 70000 UDP"),
            (
                "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 0 8",
                "m=audio 9/x UDP/TLS/RTP/SAVPF 111 63 0 8",
            ),
        ] {
            let bad = chromium_with(from, to);
            let want = parse_offer(bad.as_bytes()).expect_err(to);
            let got = memo.play_offer(&bad).expect_err(to);
            assert_eq!(got, want, "{to}");
        }
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn an_offer_whose_own_lines_would_read_otherwise_is_parsed_whole() {
        let memo = Inspections::default();
        memo.play_offer(PLAYERS[0]).expect("parses");
        for (from, to) in [
            // Port 0 rejects the m-line; the template writes 9 for any other port.
            ("m=video 9 UDP", "m=video 00 UDP"),
            // An empty password counts as none.
            ("a=ice-pwd:h7Yc2dpz0ZkXb9Wq1LmN4aTr", "a=ice-pwd: "),
            // A lone CR ends a line to the parse: here it starts another m-section.
            (
                "a=candidate:1467250027 1 udp",
                "a=candidate:1\rm=video 9 UDP/TLS/RTP/SAVPF 96\ra=candidate:1467250027 1 udp",
            ),
        ] {
            let other = chromium_with(from, to);
            let got = memo.play_offer(&other);
            let want = parse_offer(other.as_bytes());
            assert!(!got.as_ref().is_ok_and(|i| i.remembered), "{to}");
            assert_eq!(
                got.map(|i| format!("{:?}", i.offer)),
                want.map(|o| format!("{o:?}")),
                "{to}"
            );
        }
    }

    #[test]
    fn whatever_the_own_lines_say_a_remembered_verdict_is_the_whole_parse_s() {
        // A seeded run: 3 players × 3,000 rewrites of their own lines.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut remembered = 0;
        for base in PLAYERS {
            let memo = Inspections::default();
            memo.play_offer(base).expect("a player's offer");
            for _ in 0..3000 {
                let data: Vec<u8> = (0..96)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                let variant = own_lines_rewritten(base, &data);
                if let Some(diff) = differs_from_parse(base, &variant) {
                    panic!("{variant}\n{diff}");
                }
                remembered += usize::from(memo.play_offer(&variant).is_ok_and(|i| i.remembered));
            }
        }
        // Hundreds of rewrites keep the lines valid and alike: the memory answered them.
        assert!(remembered > 300, "only {remembered} remembered");
    }

    #[test]
    fn the_memory_keeps_at_most_its_capacity() {
        let memo = Inspections::default();
        for n in 0..CAPACITY + 10 {
            let offer = PLAYERS[1].replace("a=mid:0", &format!("a=mid:v{n}"));
            memo.play_offer(&offer).expect("parses");
        }
        assert_eq!(memo.len(), CAPACITY);
    }
}
