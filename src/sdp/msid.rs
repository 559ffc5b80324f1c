//! One media stream per viewer session.
//!
//! A player syncs audio with video only when both tracks belong to the same media
//! stream: libwebrtc puts the receivers of one `a=msid` stream id in one sync group
//! and lines their playout up by the sender reports; tracks of different streams
//! play as each arrives. A WHEP player's receive-only offer names no stream, and
//! str0m then answers each m-line with a random stream id of its own, so audio and
//! video would reach the player as two unsynchronised streams. [`one_stream`] gives
//! every track of the answer the same stream id: the stream's name, which is made of
//! token characters (`http::valid_stream_name`) and fits the 64 characters
//! RFC 8830 allows, or `wishd` when it is longer.

use super::{push_line, sdp_lines};

/// The answer with every `a=msid` (and `a=ssrc:N msid:`) naming the stream `name`,
/// and the session's `a=msid-semantic` listing only it. Track ids and every other
/// line stay as they are.
pub(crate) fn one_stream(answer: &str, name: &str) -> String {
    let id = if (1..=64).contains(&name.len()) {
        name
    } else {
        "wishd"
    };
    let mut out = String::with_capacity(answer.len());
    for line in sdp_lines(answer) {
        if line.starts_with("a=msid-semantic:") {
            push_line(&mut out, &format!("a=msid-semantic: WMS {id}"));
        } else if let Some(track) = line.strip_prefix("a=msid:").and_then(track_id) {
            push_line(&mut out, &format!("a=msid:{id} {track}"));
        } else if let Some((ssrc, track)) = ssrc_msid(line) {
            push_line(&mut out, &format!("a=ssrc:{ssrc} msid:{id} {track}"));
        } else {
            push_line(&mut out, line);
        }
    }
    out
}

/// The track id of an msid value (`<stream id> <track id>`).
fn track_id(value: &str) -> Option<&str> {
    value.split_once(' ').map(|(_, track)| track)
}

/// `a=ssrc:<ssrc> msid:<stream> <track>`: the SSRC and the track id.
fn ssrc_msid(line: &str) -> Option<(&str, &str)> {
    let (ssrc, attr) = line.strip_prefix("a=ssrc:")?.split_once(' ')?;
    Some((ssrc, track_id(attr.strip_prefix("msid:")?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\n\
a=group:BUNDLE 0 1\r\n\
a=msid-semantic: WMS AAA BBB\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=mid:0\r\n\
a=msid:AAA ta\r\n\
a=ssrc:11 cname:x\r\n\
a=ssrc:11 msid:AAA ta\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
a=mid:1\r\n\
a=msid:BBB tv\r\n\
a=ssrc:22 msid:BBB tv\r\n";

    #[test]
    fn audio_and_video_of_an_answer_become_one_stream() {
        let got = one_stream(ANSWER, "cam-1");
        assert_eq!(
            got,
            ANSWER
                .replace("WMS AAA BBB", "WMS cam-1")
                .replace("AAA", "cam-1")
                .replace("BBB", "cam-1")
        );
    }

    #[test]
    fn a_name_too_long_for_an_msid_gives_a_fixed_one() {
        let got = one_stream(ANSWER, &"n".repeat(65));
        assert!(got.contains("a=msid:wishd tv\r\n"), "{got}");
        assert!(got.contains("a=ssrc:11 msid:wishd ta\r\n"), "{got}");
    }
}
