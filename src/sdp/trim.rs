//! The offer as str0m gets it: only the codecs wishd chose.
//!
//! A browser offers a dozen video formats (VP8, VP9 profiles, several H.264 profiles,
//! AV1, each with its RTX, RED, FEC), str0m a few H.264 profiles and their RTX. By the
//! time str0m reads the offer, wishd has already inspected it ([`super::parse_offer`])
//! and chosen one codec (and its RTX) per m-line. str0m's SDP parser costs about
//! 80 µs per KB of offer on this machine class, more than building the `Rtc` and
//! answering; the lines of the codecs nobody will answer are most of an offer.
//!
//! [`keep_codecs`] drops them: in each m-section named in `keep`, the format list of
//! the `m=` line keeps only the kept payload types (in the offer's order), and the
//! `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines of the other payload types go. Every
//! other line is kept as it is. An answer to the trimmed offer is an answer to the
//! whole one (RFC 3264 §6: an answer names a subset of the offered formats). A section
//! not named in `keep`, or where nothing would be left, is passed through untouched.
//!
//! A section kept [`Keep::idle`] also says `a=inactive` in place of its direction, so
//! str0m answers it inactive: an m-line nothing will flow on stays in the BUNDLE group
//! instead of being rejected (see [`super::IdleLine`]).

use super::{push_line, sdp_lines, sections};

/// One m-section's kept payload types: its mid and the payload types to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep<'a> {
    /// The section's `a=mid`.
    pub(crate) mid: &'a str,
    /// The payload types to keep (a codec and its RTX).
    pub(crate) pts: Vec<u8>,
    /// The section is to be answered `a=inactive`.
    pub(crate) inactive: bool,
}

impl<'a> Keep<'a> {
    /// The section `mid` keeps one codec, `pt`, and its RTX if it has one.
    pub fn codec(mid: &'a str, pt: u8, rtx_pt: Option<u8>) -> Self {
        Keep {
            mid,
            pts: [Some(pt), rtx_pt].into_iter().flatten().collect(),
            inactive: false,
        }
    }

    /// The section `mid` keeps one codec, `pt`, and becomes `a=inactive`.
    pub(crate) fn idle(mid: &'a str, pt: u8) -> Self {
        Keep {
            mid,
            pts: vec![pt],
            inactive: true,
        }
    }
}

/// The media direction attributes (RFC 3264 §5.1).
const DIRECTIONS: [&str; 4] = ["a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"];

/// The offer without the codecs that `keep` leaves out; lines end in CRLF.
pub fn keep_codecs(offer: &str, keep: &[Keep<'_>]) -> String {
    let mut out = String::with_capacity(offer.len());
    let lines = sdp_lines(offer);
    for section in sections(&lines) {
        let kept = section
            .iter()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .and_then(|mid| keep.iter().find(|k| k.mid == mid.trim()));
        match (section.first(), kept) {
            (Some(m), Some(k)) if m.starts_with("m=") => match trim_m_line(m, &k.pts) {
                Some(m) => {
                    push_line(&mut out, &m);
                    for l in &section[1..] {
                        let direction = DIRECTIONS.contains(l);
                        if format_line_pt(l).is_none_or(|pt| k.pts.contains(&pt))
                            && !(k.inactive && direction)
                        {
                            push_line(&mut out, l);
                        }
                    }
                    if k.inactive {
                        push_line(&mut out, "a=inactive");
                    }
                }
                None => section.iter().for_each(|l| push_line(&mut out, l)),
            },
            _ => section.iter().for_each(|l| push_line(&mut out, l)),
        }
    }
    out
}

/// `m=<media> <port> <proto> <fmt> ...` with only the formats in `pts`; None when
/// none of them is listed or the line is not an m-line wishd can read.
fn trim_m_line(line: &str, pts: &[u8]) -> Option<String> {
    let mut parts = line.split_ascii_whitespace();
    let (media, port, proto) = (parts.next()?, parts.next()?, parts.next()?);
    let fmts: Vec<&str> = parts
        .filter(|f| f.parse::<u8>().is_ok_and(|pt| pts.contains(&pt)))
        .collect();
    if fmts.is_empty() {
        return None;
    }
    Some(format!("{media} {port} {proto} {}", fmts.join(" ")))
}

/// The payload type an `a=rtpmap`, `a=fmtp` or `a=rtcp-fb` line is about (None for
/// any other line, and for `a=rtcp-fb:*`, which is about every format).
fn format_line_pt(line: &str) -> Option<u8> {
    let rest = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
        .iter()
        .find_map(|p| line.strip_prefix(p))?;
    let pt = rest.split(|c: char| c.is_ascii_whitespace()).next()?;
    pt.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1 2\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 0\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:0\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:0 PCMU/8000\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\n\
c=IN IP4 0.0.0.0\r\n\
a=mid:1\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=rtcp-fb:* nack\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:103 rtx/90000\r\n\
a=fmtp:103 apt=102\r\n\
a=ssrc-group:FID 1 2\r\n\
a=ssrc:1 cname:x\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
a=mid:2\r\n\
a=sctp-port:5000\r\n";

    #[test]
    fn only_the_chosen_codec_and_its_rtx_reach_str0m_and_every_other_line_stays() {
        let keep = [
            Keep::codec("0", 111, None),
            Keep::codec("1", 102, Some(103)),
        ];
        let trimmed = keep_codecs(OFFER, &keep);
        // The offer with two m-lines shortened and the other codecs' lines gone.
        let gone = [
            "a=rtpmap:63 red/48000/2",
            "a=fmtp:63 111/111",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:96 VP8/90000",
            "a=rtcp-fb:96 nack pli",
            "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96",
        ];
        let expected: String = OFFER
            .replace("SAVPF 111 63 0\r\n", "SAVPF 111\r\n")
            .replace("SAVPF 96 97 102 103\r\n", "SAVPF 102 103\r\n")
            .split_inclusive("\r\n")
            .filter(|l| !gone.contains(&l.trim_end()))
            .collect();
        assert_eq!(expected.lines().count(), OFFER.lines().count() - gone.len());
        assert_eq!(trimmed, expected);
    }

    #[test]
    fn a_section_not_named_or_left_empty_passes_through_untouched() {
        // mid 1 names a PT the offer does not list: nothing would be left.
        let keep = [Keep::codec("1", 45, None)];
        assert_eq!(keep_codecs(OFFER, &keep), OFFER);
        assert_eq!(keep_codecs(OFFER, &[]), OFFER);
    }

    #[test]
    fn bare_newlines_and_a_missing_last_newline_are_read_too() {
        let offer = OFFER.replace("\r\n", "\n");
        let offer = offer.trim_end();
        let keep = [Keep::codec("0", 0, None)];
        let trimmed = keep_codecs(offer, &keep);
        assert!(
            trimmed.contains(
                "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
                 a=rtpmap:0 PCMU/8000\r\nm=video"
            ),
            "{trimmed}"
        );
        assert!(trimmed.ends_with("a=sctp-port:5000\r\n"));
    }

    #[test]
    fn an_idle_section_keeps_one_codec_and_says_inactive_instead_of_its_direction() {
        let offer = OFFER.replace("a=mid:0\r\n", "a=mid:0\r\na=recvonly\r\n");
        let trimmed = keep_codecs(&offer, &[Keep::idle("0", 111)]);
        let audio: Vec<&str> = trimmed
            .split("m=video")
            .next()
            .unwrap()
            .lines()
            .skip_while(|l| !l.starts_with("m=audio"))
            .collect();
        assert_eq!(audio[0], "m=audio 9 UDP/TLS/RTP/SAVPF 111");
        assert!(!audio.contains(&"a=recvonly"), "{trimmed}");
        assert_eq!(audio.last(), Some(&"a=inactive"), "{trimmed}");
        // The other sections are untouched.
        assert!(trimmed.ends_with(&OFFER[OFFER.find("m=video").unwrap()..]));
    }
}
