use super::*;

/// Turns a fixture written with `\n` into the `\r\n` SDP browsers send.
fn crlf(sdp: &str) -> String {
    sdp.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect()
}

fn offer(sdp: &str) -> Offer {
    parse_offer(crlf(sdp).as_bytes()).expect("fixture parses")
}

fn unsupported(r: Result<impl std::fmt::Debug, SdpError>) -> String {
    match r {
        Err(SdpError::Unsupported(m)) => m,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

fn malformed(r: Result<impl std::fmt::Debug, SdpError>) -> String {
    match r {
        Err(SdpError::Malformed(m)) => m,
        other => panic!("expected Malformed, got {other:?}"),
    }
}

/// Chrome-style WHIP offer: sendonly audio + video, many video codecs.
const CHROME_WHIP: &str = "
v=0
o=- 4215775240449105457 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS cam
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Xk3e
a=ice-pwd:0Vd8ZyHn6Gx4a3YqX7w2bB1c
a=ice-options:trickle
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=sendonly
a=msid:cam mic-track
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:1001 cname:abc
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103 104 105 106 107 45 46
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:Xk3e
a=ice-pwd:0Vd8ZyHn6Gx4a3YqX7w2bB1c
a=ice-options:trickle
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC
a=setup:actpass
a=mid:1
a=sendonly
a=msid:cam cam-track
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 goog-remb
a=rtcp-fb:96 transport-cc
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 VP9/90000
a=rtcp-fb:98 transport-cc
a=rtcp-fb:98 nack
a=rtcp-fb:98 nack pli
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:102 H264/90000
a=rtcp-fb:102 transport-cc
a=rtcp-fb:102 ccm fir
a=rtcp-fb:102 nack
a=rtcp-fb:102 nack pli
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f
a=rtpmap:103 rtx/90000
a=fmtp:103 apt=102
a=rtpmap:104 H264/90000
a=rtcp-fb:104 nack
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f
a=rtpmap:105 rtx/90000
a=fmtp:105 apt=104
a=rtpmap:106 H264/90000
a=rtcp-fb:106 transport-cc
a=rtcp-fb:106 nack
a=rtcp-fb:106 nack pli
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:107 rtx/90000
a=fmtp:107 apt=106
a=rtpmap:45 AV1/90000
a=fmtp:45 level-idx=5;profile=0;tier=0
a=rtpmap:46 rtx/90000
a=fmtp:46 apt=45
a=ssrc-group:FID 2001 2002
a=ssrc:2001 cname:abc
a=ssrc:2002 cname:abc
";

/// Chrome's video fmt line, for tests that reorder the preference.
const CHROME_VIDEO_FMT: &str =
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 102 103 104 105 106 107 45 46";

/// ffmpeg WHIP muxer style offer: Opus 111, H.264 106 + RTX 105, setup passive, nack only.
const FFMPEG_WHIP: &str = "
v=0
o=FFmpeg 4489045141692799359 2 IN IP4 127.0.0.1
s=FFmpegPublishSession
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111
c=IN IP4 0.0.0.0
a=ice-ufrag:a1b2c3d4
a=ice-pwd:0123456789abcdef0123456789abcdef
a=fingerprint:sha-256 1F:2E:3D:4C:5B:6A:79:88:97:A6:B5:C4:D3:E2:F1:00:1F:2E:3D:4C:5B:6A:79:88:97:A6:B5:C4:D3:E2:F1:00
a=setup:passive
a=mid:0
a=sendonly
a=msid:FFmpeg audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=ssrc:11111111 cname:FFmpeg
a=ssrc:11111111 msid:FFmpeg audio
m=video 9 UDP/TLS/RTP/SAVPF 106 105
c=IN IP4 0.0.0.0
a=ice-ufrag:a1b2c3d4
a=ice-pwd:0123456789abcdef0123456789abcdef
a=fingerprint:sha-256 1F:2E:3D:4C:5B:6A:79:88:97:A6:B5:C4:D3:E2:F1:00:1F:2E:3D:4C:5B:6A:79:88:97:A6:B5:C4:D3:E2:F1:00
a=setup:passive
a=mid:1
a=sendonly
a=msid:FFmpeg video
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:106 H264/90000
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001e
a=rtpmap:105 rtx/90000
a=fmtp:105 apt=106
a=rtcp-fb:106 nack
a=ssrc-group:FID 22222222 33333333
a=ssrc:22222222 cname:FFmpeg
a=ssrc:22222222 msid:FFmpeg video
a=ssrc:33333333 cname:FFmpeg
a=ssrc:33333333 msid:FFmpeg video
";

/// A browser WHEP offer: recvonly audio + video, its own payload type numbering.
const BROWSER_WHEP: &str = "
v=0
o=- 8837591732648721022 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE a v
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 111 0
c=IN IP4 0.0.0.0
a=ice-ufrag:vw01
a=ice-pwd:q9r8s7t6u5v4w3x2y1z0a9b8
a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99
a=setup:actpass
a=mid:a
a=recvonly
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:0 PCMU/8000
m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 108 109 127 125 45 46
c=IN IP4 0.0.0.0
a=ice-ufrag:vw01
a=ice-pwd:q9r8s7t6u5v4w3x2y1z0a9b8
a=fingerprint:sha-256 AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99
a=setup:actpass
a=mid:v
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=rtpmap:98 VP9/90000
a=fmtp:98 profile-id=0
a=rtpmap:99 rtx/90000
a=fmtp:99 apt=98
a=rtpmap:108 H264/90000
a=rtcp-fb:108 nack
a=rtcp-fb:108 nack pli
a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f
a=rtpmap:109 rtx/90000
a=fmtp:109 apt=108
a=rtpmap:127 H264/90000
a=fmtp:127 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f
a=rtpmap:125 rtx/90000
a=fmtp:125 apt=127
a=rtpmap:45 AV1/90000
a=rtpmap:46 rtx/90000
a=fmtp:46 apt=45
";

/// Session part shared by hand-made small offers.
const SESSION: &str = "
v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
a=ice-ufrag:u1u1
a=ice-pwd:p1p1p1p1p1p1p1p1p1p1p1p1
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF
";

/// A sendonly video m-line with the given mid and codec lines.
fn video(mid: &str, fmt: &str, lines: &str) -> String {
    format!(
        "m=video 9 UDP/TLS/RTP/SAVPF {fmt}\nc=IN IP4 0.0.0.0\na=mid:{mid}\na=sendonly\na=rtcp-mux\n{lines}\n"
    )
}

const VP8: &str = "a=rtpmap:96 VP8/90000";

/// A stream as chosen from a publisher offer.
fn stream_of(sdp: &str) -> Vec<ChosenCodec> {
    check_publish_offer(&offer(sdp)).expect("publisher offer accepted")
}

/// A stream whose video is H264 42e01f on PT 102 (with RTX 103) and audio opus 111.
fn h264_stream() -> Vec<ChosenCodec> {
    let sdp = CHROME_WHIP
        .replace(CHROME_VIDEO_FMT, "m=video 9 UDP/TLS/RTP/SAVPF 102 103")
        .replace(
            "packetization-mode=1;profile-level-id=42001f",
            "packetization-mode=1;profile-level-id=42e01f",
        );
    stream_of(&sdp)
}

#[test]
fn publish_chrome_offer_chooses_first_supported_codec_in_preference_order() {
    let o = offer(CHROME_WHIP);
    assert_eq!(o.bundle_mids, ["0", "1"]);
    assert!(o.has_ice_credentials && o.has_fingerprint);
    assert_eq!(o.media[1].setup.as_deref(), Some("actpass"));
    assert_eq!(o.media[1].msid_stream.as_deref(), Some("cam"));
    assert_eq!(o.media[1].direction, Direction::SendOnly);

    let chosen = check_publish_offer(&o).unwrap();
    assert_eq!(chosen.len(), 2);
    let audio = &chosen[0];
    assert_eq!((audio.kind, audio.mid.as_str()), (MediaKind::Audio, "0"));
    assert_eq!(audio.codec.pt, 111);
    assert_eq!(audio.codec_kind_name(), "opus");
    assert!(audio.codec.transport_cc && !audio.codec.nack);

    let video = &chosen[1];
    assert_eq!((video.kind, video.mid.as_str()), (MediaKind::Video, "1"));
    assert_eq!(video.codec_kind_name(), "VP8");
    assert_eq!((video.codec.pt, video.codec.rtx_pt), (96, Some(97)));
    assert!(video.codec.nack && video.codec.pli && video.codec.fir && video.codec.transport_cc);
    let p = video.payload_params();
    assert_eq!(*p.pt(), 96);
    assert_eq!(p.resend().map(|r| *r), Some(97));
    assert!(p.fb_nack() && p.fb_pli() && p.fb_fir() && p.fb_transport_cc() && !p.fb_remb());
}

#[test]
fn publish_follows_offer_order_to_vp9_and_av1() {
    let vp9 = CHROME_WHIP.replace(CHROME_VIDEO_FMT, "m=video 9 UDP/TLS/RTP/SAVPF 98 99 96 97");
    let chosen = stream_of(&vp9);
    assert_eq!(
        (chosen[1].codec_kind_name(), chosen[1].codec.rtx_pt),
        ("VP9", Some(99))
    );

    let av1 = CHROME_WHIP.replace(CHROME_VIDEO_FMT, "m=video 9 UDP/TLS/RTP/SAVPF 45 46 96 97");
    let chosen = stream_of(&av1);
    assert_eq!(
        (chosen[1].codec_kind_name(), chosen[1].codec.rtx_pt),
        ("AV1", Some(46))
    );
}

#[test]
fn publish_skips_h264_packetization_mode_0() {
    let sdp = CHROME_WHIP.replace(
        CHROME_VIDEO_FMT,
        "m=video 9 UDP/TLS/RTP/SAVPF 104 105 102 103 96 97",
    );
    let video = &stream_of(&sdp)[1];
    assert_eq!(video.codec_kind_name(), "H264");
    assert_eq!((video.codec.pt, video.codec.rtx_pt), (102, Some(103)));
    assert_eq!(
        video.codec.describe(),
        "H264 profile-level-id=42001f packetization-mode=1"
    );
}

#[test]
fn publish_ffmpeg_offer_folds_rtx_and_keeps_nack_only() {
    let o = offer(FFMPEG_WHIP);
    assert_eq!(o.media[1].setup.as_deref(), Some("passive"));
    // rtx is folded into the codec it repairs, not listed.
    assert_eq!(o.media[1].codecs.len(), 1);

    let chosen = check_publish_offer(&o).unwrap();
    assert_eq!(chosen[0].codec.describe(), "opus/48000/2");
    let video = &chosen[1];
    assert_eq!((video.codec.pt, video.codec.rtx_pt), (106, Some(105)));
    assert!(video.codec.nack);
    assert!(!video.codec.pli && !video.codec.fir && !video.codec.transport_cc);
    let p = video.payload_params();
    assert_eq!(p.resend().map(|r| *r), Some(105));
    assert_eq!(p.spec().format.profile_level_id, Some(0x42001e));
    assert_eq!(p.spec().format.packetization_mode, Some(1));
    assert!(p.fb_nack() && !p.fb_pli());
}

#[test]
fn parse_rejects_garbage_as_malformed() {
    let cases: [&[u8]; 10] = [
        // sdp-types would panic on these (see `normalise`).
        b"v=0\r\njunk\r\na=x\r\n",
        b"v=0\r\nm=audio 9 RTP/AVP 0\r\nbad line\r\na=rtcp-mux\r\n",
        b"",
        b"   \r\n\r\n",
        b"hello world",
        b"v=1\r\n",
        b"<html><body>nope</body></html>",
        b"v=0\r\nm=video notaport RTP/AVP 96\r\n",
        b"v=0\r\no=- x notanumber IN IP4 1.2.3.4\r\n",
        b"v=0\r\n\xff\xfe=\x00\r\n",
    ];
    let err = parse_offer(b"v=0\r\n\r\nbad line\r\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed SDP: line 3 is not <type>=<value>: \"bad line\""
    );
    for body in cases {
        let err = parse_offer(body).expect_err("garbage must not parse");
        assert!(err.is_malformed(), "{body:?} gave {err:?}");
        assert!(err.to_string().starts_with("malformed SDP: "));
    }
}

#[test]
fn parse_accepts_lf_line_endings_and_stray_whitespace() {
    let lf = CHROME_WHIP.trim_start();
    assert!(!lf.contains('\r'));
    let chosen = check_publish_offer(&parse_offer(lf.as_bytes()).unwrap()).unwrap();
    assert_eq!(chosen.len(), 2);

    // Trailing spaces, a blank line, a BOM and a missing s= line are all tolerated.
    let sloppy = format!(
        "\u{feff}{}",
        crlf(FFMPEG_WHIP)
            .replace("v=0\r\n", "v=0 \r\n\r\n  \r\n")
            .replace("s=FFmpegPublishSession\r\n", "")
            .replace("a=rtcp-mux\r\n", "a=rtcp-mux  \t\r\n")
    );
    let chosen = check_publish_offer(&parse_offer(sloppy.as_bytes()).unwrap()).unwrap();
    assert_eq!(chosen[1].codec.pt, 106);
}

#[test]
fn publish_rejects_offer_without_media() {
    let o = offer(&format!("{SESSION}a=group:BUNDLE\n"));
    assert_eq!(
        unsupported(check_publish_offer(&o)),
        "offer has no audio or video"
    );
}

#[test]
fn publish_rejects_data_channel_only_offer() {
    let sdp = format!(
        "{SESSION}a=group:BUNDLE 0\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\nc=IN IP4 0.0.0.0\na=mid:0\na=sctp-port:5000\n"
    );
    let msg = unsupported(check_publish_offer(&offer(&sdp)));
    assert_eq!(msg, "offer has only a data channel, no audio or video");
}

#[test]
fn publish_ignores_data_channel_beside_media() {
    let sdp = format!(
        "{SESSION}a=group:BUNDLE 0 1\n{}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\na=mid:1\na=sctp-port:5000\n",
        video("0", "96", VP8)
    );
    let o = offer(&sdp);
    assert_eq!(o.media[1].kind, None);
    let chosen = check_publish_offer(&o).unwrap();
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].codec_kind_name(), "VP8");
}

#[test]
fn publish_rejects_two_video_m_lines() {
    let sdp = format!(
        "{SESSION}a=group:BUNDLE 0 1\n{}{}",
        video("0", "96", VP8),
        video("1", "96", VP8)
    );
    let msg = unsupported(check_publish_offer(&offer(&sdp)));
    assert!(msg.contains("2 video m-lines (0, 1)"), "{msg}");
}

#[test]
fn publish_rejects_an_offer_where_no_m_line_sends() {
    let sdp = CHROME_WHIP.replace("a=sendonly", "a=recvonly");
    let msg = unsupported(check_publish_offer(&offer(&sdp)));
    assert_eq!(msg, "WHIP offer must send media: m-line 0 is recvonly");

    let sdp = CHROME_WHIP.replace("a=sendonly", "a=inactive");
    let msg = unsupported(check_publish_offer(&offer(&sdp)));
    assert_eq!(msg, "WHIP offer must send media: m-line 0 is inactive");
}

#[test]
fn publish_takes_the_sending_m_line_and_leaves_a_quiet_one_idle() {
    for quiet in ["a=recvonly", "a=inactive"] {
        let sdp = CHROME_WHIP.replacen("a=sendonly", quiet, 1);
        let parsed = offer(&sdp);
        let chosen = check_publish_offer(&parsed).unwrap();
        assert_eq!(chosen.len(), 1, "{quiet}");
        assert_eq!(
            (chosen[0].kind, chosen[0].mid.as_str()),
            (MediaKind::Video, "1")
        );
        let idle = idle_lines(&parsed, &["1"]);
        assert_eq!(idle.len(), 1, "{quiet}");
        assert_eq!(
            (idle[0].kind, idle[0].mid.as_str()),
            (MediaKind::Audio, "0")
        );
        assert_eq!(idle[0].codec.name, "opus");
    }
}

#[test]
fn idle_lines_are_the_unused_active_av_m_lines_with_a_codec_str0m_answers() {
    let parsed = offer(BROWSER_WHEP);
    assert!(idle_lines(&parsed, &["a", "v"]).is_empty());
    let idle = idle_lines(&parsed, &["a"]);
    assert_eq!(idle.len(), 1);
    assert_eq!(
        (idle[0].kind, idle[0].mid.as_str()),
        (MediaKind::Video, "v")
    );
    assert!(idle[0].codec.payload_params().is_some());
    // A video m-line offering only H.266 has nothing str0m answers for wishd: left out.
    let h266 = video("v", "100", "a=rtpmap:100 H266/90000\n");
    let only_h266 = format!("{SESSION}{h266}");
    assert!(idle_lines(&offer(&only_h266), &[]).is_empty());
}

#[test]
fn publish_names_codecs_when_none_is_supported() {
    let lines = "a=rtpmap:100 H266/90000\n\
                 a=rtpmap:101 rtx/90000\na=fmtp:101 apt=100\n\
                 a=rtpmap:102 H264/90000\na=fmtp:102 profile-level-id=42e01f;packetization-mode=0\n\
                 a=rtpmap:103 ulpfec/90000";
    let sdp = format!(
        "{SESSION}a=group:BUNDLE 0\n{}",
        video("0", "100 101 102 103", lines)
    );
    let msg = unsupported(check_publish_offer(&offer(&sdp)));
    assert_eq!(
        msg,
        "video m-line 0 has no codec wishd supports (offered: H266, \
         H264 profile-level-id=42e01f packetization-mode=0; supported: H264 packetization-mode=1, H265, VP8, VP9, AV1)"
    );
}

#[test]
fn publish_skips_h264_profile_str0m_cannot_classify() {
    // profile_idc 0xff is no H.264 profile: str0m would match it with nothing.
    let lines = "a=rtpmap:103 H264/90000\na=fmtp:103 profile-level-id=ff001f;packetization-mode=1\n\
                 a=rtpmap:102 H264/90000\na=fmtp:102 profile-level-id=zzzzzz;packetization-mode=1\n\
                 a=rtpmap:96 VP8/90000";
    let sdp = format!("{SESSION}a=group:BUNDLE 0\n{}", video("0", "103 96", lines));
    assert_eq!(stream_of(&sdp)[0].codec_kind_name(), "VP8");

    // A value str0m cannot even parse is dropped by str0m's fmtp parser, i.e. treated as
    // absent (Baseline level 3.1), so it stays usable.
    let sdp = format!("{SESSION}a=group:BUNDLE 0\n{}", video("0", "102 96", lines));
    assert_eq!(stream_of(&sdp)[0].codec.pt, 102);
}

#[test]
fn publish_rejects_offer_without_bundle() {
    let sdp = CHROME_WHIP.replace("a=group:BUNDLE 0 1\n", "");
    let msg = unsupported(check_publish_offer(&offer(&sdp)));
    assert!(msg.contains("no a=group:BUNDLE"), "{msg}");

    let sdp = CHROME_WHIP.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0");
    let msg = unsupported(check_publish_offer(&offer(&sdp)));
    assert!(
        msg.contains("does not include video m-line 1 (mid 1)"),
        "{msg}"
    );
}

#[test]
fn publish_rejects_offer_without_rtcp_mux() {
    let sdp = FFMPEG_WHIP.replace("a=rtcp-mux\n", "");
    let msg = unsupported(check_publish_offer(&offer(&sdp)));
    assert!(msg.starts_with("audio m-line 0 lacks a=rtcp-mux"), "{msg}");
}

#[test]
fn publish_missing_ice_fingerprint_or_mid_is_malformed() {
    let no_pwd: String = FFMPEG_WHIP
        .lines()
        .filter(|l| !l.starts_with("a=ice-pwd"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(malformed(check_publish_offer(&offer(&no_pwd))).contains("ice-pwd"));

    // One m-line without a fingerprint is enough to refuse.
    let one_fp = FFMPEG_WHIP.replacen("a=fingerprint:", "a=x-fingerprint:", 1);
    assert!(malformed(check_publish_offer(&offer(&one_fp))).contains("fingerprint"));

    let no_mid = FFMPEG_WHIP.replace("a=mid:1\n", "");
    assert_eq!(
        malformed(check_publish_offer(&offer(&no_mid))),
        "video m-line 1 lacks a=mid"
    );
}

#[test]
fn session_level_transport_attributes_count_for_every_m_line() {
    let sdp = format!("{SESSION}a=group:BUNDLE v\n{}", video("v", "96", VP8));
    let o = offer(&sdp);
    assert!(o.has_ice_credentials && o.has_fingerprint);
    assert_eq!(check_publish_offer(&o).unwrap()[0].mid, "v");
}

#[test]
fn play_remaps_payload_types() {
    let stream = h264_stream();
    assert_eq!(
        (stream[1].codec.pt, stream[1].codec.rtx_pt),
        (102, Some(103))
    );

    let tracks = check_play_offer(&offer(BROWSER_WHEP), &stream).unwrap();
    assert_eq!(
        tracks,
        [
            PlayTrack {
                kind: MediaKind::Audio,
                mid: "a".into(),
                viewer_pt: 111,
                viewer_rtx_pt: None,
                viewer_fmtp: None,
                transport_cc: true,
                source_pt: 111,
                clock_rate: 48_000,
            },
            PlayTrack {
                kind: MediaKind::Video,
                mid: "v".into(),
                viewer_pt: 108,
                viewer_rtx_pt: Some(109),
                viewer_fmtp: None,
                transport_cc: false,
                source_pt: 102,
                clock_rate: 90_000,
            },
        ]
    );
}

#[test]
fn an_opus_rtpmap_without_channels_is_played_as_the_two_rfc_7587_names() {
    // GStreamer's webrtcbin writes `OPUS/48000` when its caps give no channel count.
    let sdp = BROWSER_WHEP.replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 OPUS/48000");
    assert_ne!(sdp, BROWSER_WHEP);
    let tracks = check_play_offer(&offer(&sdp), &h264_stream()).unwrap();
    assert_eq!(
        (tracks[0].kind, tracks[0].viewer_pt),
        (MediaKind::Audio, 111)
    );
    // And str0m, which reads the template, sees the two channels too.
    let (template, _) = template::split(&crlf(&sdp));
    assert!(
        template.contains("a=rtpmap:111 OPUS/48000/2\r\n"),
        "{template}"
    );
    assert_eq!(
        parse::opus_channels_added("a=rtpmap:111 opus/48000/2"),
        None
    );
    assert_eq!(parse::opus_channels_added("a=rtpmap:0 PCMU/8000"), None);
}

#[test]
fn play_prefers_viewers_earlier_codec_when_str0m_scores_a_tie() {
    let stream = stream_of(CHROME_WHIP); // VP8 96
    let lines = "a=rtpmap:120 VP8/90000\na=rtpmap:121 rtx/90000\na=fmtp:121 apt=120\na=rtpmap:122 VP8/90000";
    let sdp = format!(
        "{SESSION}a=group:BUNDLE 0\n{}",
        video("0", "120 121 122", lines).replace("a=sendonly", "a=recvonly")
    );
    let tracks = check_play_offer(&offer(&sdp), &stream).unwrap();
    assert_eq!(
        (tracks[0].viewer_pt, tracks[0].viewer_rtx_pt),
        (120, Some(121))
    );
}

#[test]
fn play_names_the_codec_a_viewer_cannot_receive() {
    let stream = h264_stream();
    let sdp = BROWSER_WHEP.replace(
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 108 109 127 125 45 46",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99",
    );
    let msg = unsupported(check_play_offer(&offer(&sdp), &stream));
    assert_eq!(
        msg,
        "viewer offer cannot receive the stream's video codec H264 \
         profile-level-id=42e01f packetization-mode=1 (offered: VP8, VP9 profile-id=0)"
    );
}

#[test]
fn play_audio_only_stream_plans_only_audio() {
    let audio_only: Vec<ChosenCodec> = stream_of(FFMPEG_WHIP)
        .into_iter()
        .filter(|c| c.kind == MediaKind::Audio)
        .collect();
    let tracks = check_play_offer(&offer(BROWSER_WHEP), &audio_only).unwrap();
    assert_eq!(tracks.len(), 1);
    assert_eq!(
        (tracks[0].kind, tracks[0].mid.as_str()),
        (MediaKind::Audio, "a")
    );
    assert_eq!((tracks[0].viewer_pt, tracks[0].source_pt), (111, 111));
}

#[test]
fn play_without_m_line_for_any_stream_kind_names_the_missing_codec() {
    let video_only: Vec<ChosenCodec> = h264_stream()
        .into_iter()
        .filter(|c| c.kind == MediaKind::Video)
        .collect();
    let audio_viewer: String = {
        let end = BROWSER_WHEP.find("m=video").unwrap();
        BROWSER_WHEP[..end].replace("a=group:BUNDLE a v", "a=group:BUNDLE a")
    };
    let msg = unsupported(check_play_offer(&offer(&audio_viewer), &video_only));
    assert_eq!(
        msg,
        "viewer offer has no codec for the stream's video: H264 profile-level-id=42e01f packetization-mode=1"
    );
}

/// str0m's `match_params` compares H.264 *profiles* (RFC 6184 table 5) and packetization
/// mode, not levels: ffmpeg's Baseline 42001e matches a viewer's Baseline 42001f (level
/// 3.0 vs 3.1), but not Main 4d001f (Constrained Baseline 42e01f is let in by wishd's
/// own rule, [`super::h264::baseline_stand_in`]).
#[test]
fn play_h264_profile_mismatch_follows_str0m_match_params() {
    let stream = stream_of(FFMPEG_WHIP); // H264 42001e on 106
    let viewer = |plid: &str, pm: &str| {
        let lines = format!(
            "a=rtpmap:108 H264/90000\na=fmtp:108 profile-level-id={plid};packetization-mode={pm}\n\
             a=rtpmap:109 rtx/90000\na=fmtp:109 apt=108"
        );
        let sdp = format!(
            "{SESSION}a=group:BUNDLE 0\n{}",
            video("0", "108 109", &lines).replace("a=sendonly", "a=recvonly")
        );
        check_play_offer(&offer(&sdp), &stream)
    };

    let same_profile_other_level = viewer("42001f", "1").unwrap();
    assert_eq!(same_profile_other_level[0].viewer_pt, 108);
    assert_eq!(same_profile_other_level[0].viewer_rtx_pt, Some(109));
    assert_eq!(same_profile_other_level[0].source_pt, 106);

    // Constrained Baseline stands in for Baseline (see the baseline tests below).
    assert_eq!(viewer("42e01f", "1").unwrap()[0].viewer_pt, 108);
    assert_eq!(
        unsupported(viewer("4d001f", "1")),
        "viewer offer cannot receive the stream's video: stream is H.264 Baseline (42001e); \
         the offer accepts only Main (4d001f)"
    );
    assert_eq!(
        unsupported(viewer("42001f", "0")),
        "viewer offer cannot receive the stream's video: stream is H.264 Baseline (42001e) \
         in packetization-mode 1; the offer accepts H.264 only in packetization-mode 0"
    );
}

#[test]
fn play_rejects_sendonly_viewer_m_line() {
    let sdp = BROWSER_WHEP.replacen("a=recvonly", "a=sendonly", 1);
    let msg = unsupported(check_play_offer(&offer(&sdp), &h264_stream()));
    assert_eq!(msg, "WHEP offer must receive media: m-line 0 is sendonly");
}

#[test]
fn play_runs_the_same_transport_checks() {
    let stream = h264_stream();
    let no_bundle = BROWSER_WHEP.replace("a=group:BUNDLE a v\n", "");
    unsupported(check_play_offer(&offer(&no_bundle), &stream));
    let no_mux = BROWSER_WHEP.replace("a=rtcp-mux\n", "");
    unsupported(check_play_offer(&offer(&no_mux), &stream));
    let no_fp: String = BROWSER_WHEP
        .lines()
        .filter(|l| !l.starts_with("a=fingerprint"))
        .collect::<Vec<_>>()
        .join("\n");
    malformed(check_play_offer(&offer(&no_fp), &stream));
    unsupported(check_play_offer(&offer(BROWSER_WHEP), &[]));
}

#[test]
fn payload_params_only_for_supported_media_codecs() {
    let o = offer(CHROME_WHIP);
    let names: Vec<(&str, bool)> = o.media[0]
        .codecs
        .iter()
        .map(|c| (c.name.as_str(), c.payload_params().is_some()))
        .collect();
    assert_eq!(
        names,
        [
            ("opus", true),
            ("red", false),
            ("G722", false),
            ("PCMU", true),
            ("PCMA", true),
            ("CN", false),
            ("telephone-event", false),
            ("telephone-event", false),
        ]
    );
    // Static payload types need no rtpmap.
    let sdp = format!(
        "{SESSION}a=group:BUNDLE 0\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8\na=mid:0\na=rtcp-mux\n"
    );
    let chosen = stream_of(&sdp);
    assert_eq!(
        (
            chosen[0].codec_kind_name(),
            chosen[0].codec.describe().as_str()
        ),
        ("PCMU", "PCMU/8000")
    );
}

#[test]
fn parse_reads_simulcast_rids_and_wildcard_feedback() {
    let lines = "a=rtpmap:96 VP8/90000\na=rtcp-fb:* nack\na=rtcp-fb:* nack pli\n\
                 a=rid:h send\na=rid:l send\na=simulcast:send h;l";
    let sdp = format!("{SESSION}a=group:BUNDLE 0\n{}", video("0", "96", lines));
    let m = &offer(&sdp).media[0];
    assert_eq!(m.rids, ["h", "l"]);
    assert_eq!(m.simulcast.as_deref(), Some("send h;l"));
    assert!(!m.rid_extension);
    assert!(m.codecs[0].nack && m.codecs[0].pli && !m.codecs[0].fir);
}

/// Tiny deterministic generator for the garbage tests.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn exercise(body: &[u8], stream: &[ChosenCodec]) {
    if let Ok(o) = parse_offer(body) {
        if let Ok(chosen) = check_publish_offer(&o) {
            for c in &chosen {
                let _ = (c.payload_params(), c.codec_kind_name(), c.codec.describe());
            }
        }
        let _ = check_play_offer(&o, stream);
        for m in &o.media {
            for c in &m.codecs {
                let _ = (c.payload_params(), c.describe());
            }
        }
    }
}

#[test]
fn garbage_and_mangled_offers_never_panic() {
    let stream = h264_stream();
    let bases: Vec<Vec<u8>> = [CHROME_WHIP, FFMPEG_WHIP, BROWSER_WHEP]
        .iter()
        .map(|f| crlf(f).into_bytes())
        .collect();
    let mut rng = Lcg(0x5eed);

    // Every truncation of a real offer.
    for base in &bases {
        for end in (0..base.len()).step_by(7) {
            exercise(&base[..end], &stream);
        }
    }
    // Random byte flips and insertions of SDP-ish tokens.
    let tokens: [&[u8]; 12] = [
        b"\r\n",
        b"=",
        b":",
        b" ",
        b"/",
        b";",
        b"m=",
        b"a=rtpmap:",
        b"a=fmtp:",
        b"999",
        b"\xff",
        b"apt=",
    ];
    for _ in 0..400 {
        let mut body = bases[(rng.next() as usize) % bases.len()].clone();
        for _ in 0..(rng.next() % 8 + 1) {
            let at = (rng.next() as usize) % body.len().max(1);
            if rng.next().is_multiple_of(2) {
                body[at] = rng.next() as u8;
            } else {
                let t = tokens[(rng.next() as usize) % tokens.len()];
                body.splice(at..at, t.iter().copied());
            }
        }
        exercise(&body, &stream);
    }
    // Pure noise.
    for _ in 0..200 {
        let len = (rng.next() % 300) as usize;
        let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise(&body, &stream);
    }
    // Hand-written nasty values.
    let nasty = [
        "a=rtpmap:96 VP8/0",
        "a=rtpmap:96 VP8/99999999999",
        "a=rtpmap:96 /90000",
        "a=rtpmap:96 VP8/90000/999",
        "a=fmtp:96 apt=96",
        "a=fmtp:96 ;;;==;profile-level-id=;packetization-mode=999",
        "a=rtcp-fb:",
        "a=rtpmap:",
        "a=fmtp:",
    ];
    for n in nasty {
        let sdp = format!(
            "{SESSION}a=group:BUNDLE 0\n{}",
            video("0", "96 200 x -1", n)
        );
        exercise(crlf(&sdp).as_bytes(), &stream);
    }
    // Chosen codecs built by hand with nonsense still answer.
    let odd = ChosenCodec {
        kind: MediaKind::Video,
        mid: String::new(),
        codec: OfferedCodec {
            pt: 255,
            name: String::new(),
            clock_rate: 0,
            channels: Some(0),
            fmtp: "=;=".into(),
            rtx_pt: Some(200),
            nack: false,
            pli: false,
            fir: false,
            transport_cc: false,
        },
    };
    let _ = (
        odd.payload_params(),
        odd.codec_kind_name(),
        odd.codec.describe(),
    );
    let _ = check_play_offer(&offer(BROWSER_WHEP), std::slice::from_ref(&odd));
}

/// The premise of [`check_publish_offer`]: a publisher Rtc configured with exactly the
/// chosen codecs answers with one codec (plus its RTX) per m-line, and str0m accepts the
/// same offers this module accepts.
#[test]
fn str0m_answers_the_chosen_codecs_only() {
    use str0m::change::SdpOffer;
    use str0m::format::CodecConfig;

    for fixture in [CHROME_WHIP, FFMPEG_WHIP] {
        let chosen = stream_of(fixture);
        let mut cfg = str0m::Rtc::builder();
        *cfg.codec_config() = CodecConfig::new_from_payload_params(
            chosen.iter().map(|c| c.payload_params()).collect(),
        );
        let mut rtc = cfg.build(std::time::Instant::now());
        let sdp_offer = SdpOffer::from_sdp_string(&crlf(fixture)).expect("str0m parses fixture");
        let answer = rtc
            .sdp_api()
            .accept_offer(sdp_offer)
            .expect("str0m accepts");
        let answer = answer.to_sdp_string();
        let m_lines: Vec<&str> = answer.lines().filter(|l| l.starts_with("m=")).collect();
        let expect: Vec<String> = chosen
            .iter()
            .map(|c| match c.codec.rtx_pt {
                Some(rtx) => format!(" {} {rtx}", c.codec.pt),
                None => format!(" {}", c.codec.pt),
            })
            .collect();
        assert_eq!(m_lines.len(), expect.len(), "{answer}");
        for (line, fmt) in m_lines.iter().zip(&expect) {
            assert!(line.ends_with(fmt.as_str()), "{line} vs {fmt}\n{answer}");
        }
    }
}

/// A viewer Rtc configured with the stream's codecs (publisher PTs) answers a WHEP offer
/// with the viewer's PTs that [`check_play_offer`] planned.
#[test]
fn str0m_answers_viewer_with_planned_payload_types() {
    use str0m::change::SdpOffer;
    use str0m::format::CodecConfig;

    let stream = h264_stream();
    let plan = check_play_offer(&offer(BROWSER_WHEP), &stream).unwrap();
    let mut cfg = str0m::Rtc::builder();
    *cfg.codec_config() =
        CodecConfig::new_from_payload_params(stream.iter().map(|c| c.payload_params()).collect());
    let mut rtc = cfg.build(std::time::Instant::now());
    let sdp_offer = SdpOffer::from_sdp_string(&crlf(BROWSER_WHEP)).expect("str0m parses");
    let answer = rtc
        .sdp_api()
        .accept_offer(sdp_offer)
        .expect("str0m accepts");
    let answer = answer.to_sdp_string();
    let m_lines: Vec<&str> = answer.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(m_lines.len(), plan.len(), "{answer}");
    for (line, track) in m_lines.iter().zip(&plan) {
        let fmt: Vec<&str> = line.split(' ').skip(3).collect();
        assert_eq!(
            fmt.first(),
            Some(&track.viewer_pt.to_string().as_str()),
            "{answer}"
        );
        if let Some(rtx) = track.viewer_rtx_pt {
            assert!(fmt.contains(&rtx.to_string().as_str()), "{answer}");
        }
    }
}

/// The answer str0m writes for `offer` when `plan` feeds some m-lines and the rest are
/// idle, the way the media server builds it: trimmed offer, viewer params and idle params.
fn answer_with_idle_lines(offer_sdp: &str, stream: &[ChosenCodec]) -> String {
    use str0m::change::SdpOffer;
    use str0m::format::CodecConfig;

    let parsed = offer(offer_sdp);
    let plan = check_play_offer(&parsed, stream).unwrap();
    let used: Vec<&str> = plan.iter().map(|t| t.mid.as_str()).collect();
    let idle = idle_lines(&parsed, &used);
    let mut params: Vec<_> = plan
        .iter()
        .map(|t| t.viewer_params(stream.iter().find(|c| c.kind == t.kind).unwrap()))
        .collect();
    params.extend(idle.iter().map(IdleLine::payload_params));
    let mut keep: Vec<_> = plan
        .iter()
        .map(|t| trim::Keep::codec(&t.mid, t.viewer_pt, t.viewer_rtx_pt))
        .collect();
    keep.extend(idle.iter().map(|l| trim::Keep::idle(&l.mid, l.codec.pt)));
    let trimmed = trim::keep_codecs(&crlf(offer_sdp), &keep);
    let mut cfg = str0m::Rtc::builder();
    *cfg.codec_config() = CodecConfig::new_from_payload_params(params);
    let mut rtc = cfg.build(std::time::Instant::now());
    let sdp_offer = SdpOffer::from_sdp_string(&trimmed).expect("str0m parses");
    rtc.sdp_api()
        .accept_offer(sdp_offer)
        .expect("str0m accepts")
        .to_sdp_string()
}

/// Each m-section of `answer`: (its m= line, its mid, its direction).
fn answered_sections(answer: &str) -> Vec<(String, String, String)> {
    let lines = sdp_lines(answer);
    sections(&lines)
        .skip(1)
        .map(|s| {
            let attr = |names: &[&str]| {
                s.iter()
                    .find_map(|l| {
                        names
                            .iter()
                            .find(|n| l.starts_with(*n))
                            .map(|_| l.to_string())
                    })
                    .unwrap_or_default()
            };
            (
                s[0].to_string(),
                attr(&["a=mid:"]).trim_start_matches("a=mid:").to_string(),
                attr(&["a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive"]),
            )
        })
        .collect()
}

/// A browser player offers audio and video (in either order); a stream that has only
/// one of them answers the other inactive, inside the BUNDLE group, never with port 0.
#[test]
fn a_kind_the_stream_lacks_is_answered_inactive_and_stays_bundled() {
    let video_first = {
        let a = BROWSER_WHEP.find("m=audio").unwrap();
        let v = BROWSER_WHEP.find("m=video").unwrap();
        format!(
            "{}{}{}",
            &BROWSER_WHEP[..a],
            &BROWSER_WHEP[v..],
            &BROWSER_WHEP[a..v]
        )
        .replace("a=group:BUNDLE a v", "a=group:BUNDLE v a")
    };
    let video_only: Vec<ChosenCodec> = h264_stream()
        .into_iter()
        .filter(|c| c.kind == MediaKind::Video)
        .collect();
    let audio_only: Vec<ChosenCodec> = h264_stream()
        .into_iter()
        .filter(|c| c.kind == MediaKind::Audio)
        .collect();
    for (viewer, order) in [(BROWSER_WHEP.to_string(), "a v"), (video_first, "v a")] {
        for (stream, fed) in [(&video_only, "v"), (&audio_only, "a")] {
            let answer = answer_with_idle_lines(&viewer, stream);
            assert!(
                answer.contains(&format!("a=group:BUNDLE {order}\r\n")),
                "{answer}"
            );
            let sections = answered_sections(&answer);
            assert_eq!(sections.len(), 2, "{answer}");
            for (m, mid, dir) in sections {
                assert!(
                    m.split(' ').nth(1) != Some("0"),
                    "rejected m-line: {m}\n{answer}"
                );
                let want = if mid == fed {
                    "a=sendonly"
                } else {
                    "a=inactive"
                };
                assert_eq!(dir, want, "mid {mid} of a stream feeding {fed}\n{answer}");
            }
        }
    }
}

/// A Firefox-like WHEP offer: video only, H.264 in `plid` twice (packetization-mode 0
/// first on 97, then mode 1 on 126 with RTX 127), then VP8.
fn firefox_like_viewer(plid: &str) -> String {
    let lines = format!(
        "a=rtpmap:97 H264/90000\na=fmtp:97 profile-level-id={plid};level-asymmetry-allowed=1\n\
         a=rtcp-fb:97 nack\na=rtcp-fb:97 nack pli\n\
         a=rtpmap:126 H264/90000\n\
         a=fmtp:126 profile-level-id={plid};level-asymmetry-allowed=1;packetization-mode=1\n\
         a=rtcp-fb:126 nack\na=rtcp-fb:126 nack pli\n\
         a=rtpmap:127 rtx/90000\na=fmtp:127 apt=126\n\
         a=rtpmap:120 VP8/90000"
    );
    format!(
        "{SESSION}a=group:BUNDLE 0\n{}",
        video("0", "97 126 127 120", &lines).replace("a=sendonly", "a=recvonly\na=setup:actpass")
    )
}

#[test]
fn play_lets_ffmpegs_baseline_stream_reach_a_constrained_baseline_only_viewer() {
    let stream = stream_of(FFMPEG_WHIP); // H264 42001e on 106, RTX 105
    let plan = check_play_offer(&offer(&firefox_like_viewer("42e01f")), &stream).unwrap();
    let video = plan.iter().find(|t| t.kind == MediaKind::Video).unwrap();
    assert_eq!((video.viewer_pt, video.viewer_rtx_pt), (126, Some(127)));
    assert_eq!(video.source_pt, 106);
    let fmtp = video.viewer_fmtp.as_deref().unwrap();
    assert!(fmtp.contains("profile-level-id=42e01f"), "{fmtp}");
    assert!(fmtp.contains("packetization-mode=1"), "{fmtp}");

    // Constrained Baseline written with constraint_set0 and 1 (4240xx is cs1 alone).
    let plan = check_play_offer(&offer(&firefox_like_viewer("42401f")), &stream).unwrap();
    assert_eq!(plan[0].viewer_pt, 126);
}

#[test]
fn play_lets_a_constrained_baseline_stream_reach_a_baseline_only_viewer() {
    let stream = h264_stream(); // 42e01f on 102
    let sdp = firefox_like_viewer("42001f");
    let plan = check_play_offer(&offer(&sdp), &stream).unwrap();
    assert_eq!(
        (plan[0].viewer_pt, plan[0].viewer_rtx_pt, plan[0].source_pt),
        (126, Some(127), 102)
    );
    assert!(plan[0].viewer_fmtp.as_deref().unwrap().contains("42001f"));
}

#[test]
fn an_exact_profile_match_is_preferred_over_a_baseline_stand_in() {
    let stream = stream_of(FFMPEG_WHIP); // 42001e
    // Constrained Baseline first in the viewer's preference, Baseline later.
    let lines = "a=rtpmap:100 H264/90000\na=fmtp:100 profile-level-id=42e01f;packetization-mode=1\n\
                 a=rtpmap:102 H264/90000\na=fmtp:102 profile-level-id=42001f;packetization-mode=1";
    let sdp = format!(
        "{SESSION}a=group:BUNDLE 0\n{}",
        video("0", "100 102", lines).replace("a=sendonly", "a=recvonly")
    );
    let plan = check_play_offer(&offer(&sdp), &stream).unwrap();
    assert_eq!(
        (plan[0].viewer_pt, plan[0].viewer_fmtp.as_deref()),
        (102, None)
    );
}

#[test]
fn baseline_stand_in_does_not_bridge_other_profiles_or_modes() {
    let viewer = |plid: &str, pm: &str| {
        let lines = format!(
            "a=rtpmap:108 H264/90000\na=fmtp:108 profile-level-id={plid};packetization-mode={pm}"
        );
        let sdp = format!(
            "{SESSION}a=group:BUNDLE 0\n{}",
            video("0", "108", &lines).replace("a=sendonly", "a=recvonly")
        );
        offer(&sdp)
    };
    let ffmpeg = stream_of(FFMPEG_WHIP); // Baseline 42001e
    assert_eq!(
        unsupported(check_play_offer(&viewer("42e01f", "0"), &ffmpeg)),
        "viewer offer cannot receive the stream's video: stream is H.264 Baseline (42001e) \
         in packetization-mode 1; the offer accepts H.264 only in packetization-mode 0"
    );
    assert_eq!(
        unsupported(check_play_offer(&viewer("640c1f", "1"), &ffmpeg)),
        "viewer offer cannot receive the stream's video: stream is H.264 Baseline (42001e); \
         the offer accepts only Constrained High (640c1f)"
    );
    // A Main or High stream is not let in by a Baseline-family viewer.
    let main = stream_of(&FFMPEG_WHIP.replace("42001e", "4d001f"));
    assert!(unsupported(check_play_offer(&viewer("42e01f", "1"), &main)).contains("Main (4d001f)"));
    assert!(unsupported(check_play_offer(&viewer("42001f", "1"), &main)).contains("Main (4d001f)"));
}

/// What the viewer Rtc answers when Constrained Baseline stands in for Baseline: the
/// profile the viewer offered (not the stream's 42001e) on the PT the viewer chose.
#[test]
fn str0m_answers_a_stand_in_viewer_with_its_own_profile_and_payload_type() {
    use str0m::change::SdpOffer;
    use str0m::format::CodecConfig;

    let stream = stream_of(FFMPEG_WHIP);
    let sdp = firefox_like_viewer("42e01f");
    let plan = check_play_offer(&offer(&sdp), &stream).unwrap();
    let params = plan
        .iter()
        .map(|t| t.viewer_params(stream.iter().find(|c| c.kind == t.kind).unwrap()))
        .collect();
    let mut cfg = str0m::Rtc::builder();
    *cfg.codec_config() = CodecConfig::new_from_payload_params(params);
    let mut rtc = cfg.build(std::time::Instant::now());
    let sdp_offer = SdpOffer::from_sdp_string(&crlf(&sdp)).expect("str0m parses");
    let answer = rtc
        .sdp_api()
        .accept_offer(sdp_offer)
        .expect("str0m accepts")
        .to_sdp_string();
    let m_line = answer.lines().find(|l| l.starts_with("m=video")).unwrap();
    assert!(m_line.ends_with(" 126 127"), "{answer}");
    assert!(answer.contains("a=rtpmap:126 H264/90000"), "{answer}");
    let fmtp = answer
        .lines()
        .find(|l| l.starts_with("a=fmtp:126 "))
        .unwrap_or_else(|| panic!("no fmtp for 126:\n{answer}"));
    assert!(fmtp.contains("profile-level-id=42e01f"), "{answer}");
    assert!(!answer.contains("42001e"), "{answer}");
}

/// The premise of `sdp::template`: str0m answers a template, with the client's own
/// values put on the `Rtc` around `accept_offer`, as it answers the whole offer.
/// Lines that differ between any two answers (local credentials, SSRCs, ids) aside.
#[test]
fn str0m_answers_a_template_as_it_answers_the_whole_offer() {
    use str0m::change::SdpOffer;

    fn negotiated(answer: &str) -> Vec<&str> {
        let own = [
            "o=",
            "a=ice-ufrag",
            "a=ice-pwd",
            "a=fingerprint",
            "a=ssrc",
            "a=msid",
            "a=candidate",
        ];
        answer
            .lines()
            .filter(|l| !own.iter().any(|p| l.starts_with(p)))
            .collect()
    }
    let templates = template::Templates::default();
    for fixture in [CHROME_WHIP, FFMPEG_WHIP, BROWSER_WHEP] {
        let text = crlf(fixture);
        let mut whole = str0m::Rtc::builder().build(std::time::Instant::now());
        let expect = whole
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&text).expect("str0m parses"))
            .expect("str0m accepts")
            .to_sdp_string();
        // Twice: parsed, then copied from the cache.
        for copied in [false, true] {
            let template::TemplateOffer {
                offer,
                own,
                copied: was,
            } = templates.offer(&text).expect("template parses");
            assert_eq!(was, copied);
            let mut rtc = str0m::Rtc::builder().build(std::time::Instant::now());
            own.apply_before(&mut rtc);
            let got = rtc
                .sdp_api()
                .accept_offer(offer)
                .expect("str0m accepts")
                .to_sdp_string();
            own.apply_after(&mut rtc);
            assert_eq!(negotiated(&got), negotiated(&expect), "{fixture}");
            assert!(own.ice.is_some() && own.fingerprint.is_some(), "{fixture}");
        }
    }
}
