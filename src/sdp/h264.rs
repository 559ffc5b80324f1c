//! H.264 profiles by name, for telling a viewer why it cannot take a stream.
//!
//! `profile-level-id` (RFC 6184 §8.1) is three bytes in hex: `profile_idc`,
//! `profile-iop` (the constraint_set flags, cs0 in the top bit) and `level_idc`. Which
//! profile a pair of the first two means follows RFC 6184 table 5, plus Constrained
//! High (High with constraint_set4 and 5, as WebRTC stacks name `640c1f`). What
//! publishers send in practice: OBS (libdatachannel) `42e01f` Constrained Baseline,
//! FFmpeg's WHIP muxer `42001e` Baseline (its x264 output with the constraint flags
//! dropped), and `64001f`-like High when a user picks the high profile.

use super::OfferedCodec;

/// A parsed `profile-level-id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProfileLevelId {
    /// `profile_idc`.
    pub(crate) profile_idc: u8,
    /// `profile-iop`: constraint_set0..5 flags, cs0 in the top bit.
    pub(crate) iop: u8,
    /// `level_idc` (ten times the level, e.g. 31 for 3.1).
    pub(crate) level_idc: u8,
}

impl ProfileLevelId {
    /// Parses six hex digits; None for anything else.
    pub(crate) fn parse(s: &str) -> Option<ProfileLevelId> {
        let s = s.trim();
        if s.len() != 6 || !s.is_ascii() {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(s.get(i..i + 2)?, 16).ok();
        Some(ProfileLevelId {
            profile_idc: byte(0)?,
            iop: byte(2)?,
            level_idc: byte(4)?,
        })
    }

    /// The profile's name ("Constrained Baseline", "High", ...).
    pub(crate) fn profile_name(&self) -> String {
        let cs = |n: u8| self.iop & (0x80 >> n) != 0;
        let name = match self.profile_idc {
            0x42 if cs(1) => "Constrained Baseline",
            0x42 => "Baseline",
            0x4d if cs(0) => "Constrained Baseline",
            0x4d => "Main",
            0x58 if cs(0) && cs(1) => "Constrained Baseline",
            0x58 if cs(0) => "Baseline",
            0x58 => "Extended",
            0x64 if cs(4) && cs(5) => "Constrained High",
            0x64 if cs(4) => "Progressive High",
            0x64 => "High",
            0x6e if cs(3) => "High 10 Intra",
            0x6e => "High 10",
            0x7a => "High 4:2:2",
            0xf4 => "High 4:4:4 Predictive",
            0x2c => "CAVLC 4:4:4 Intra",
            other => return format!("profile_idc {other}"),
        };
        name.to_owned()
    }

    #[cfg(test)]
    /// The level as written in the standard ("3.1", "1b").
    pub(crate) fn level_name(&self) -> String {
        let baseline_family = matches!(self.profile_idc, 0x42 | 0x4d | 0x58);
        if self.level_idc == 11 && baseline_family && self.iop & 0x10 != 0 {
            return "1b".into();
        }
        format!("{}.{}", self.level_idc / 10, self.level_idc % 10)
    }
}

/// Baseline (`42001e`) or Constrained Baseline (`42e01f`), the two profiles
/// [`baseline_stand_in`] lets stand in for each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BaselineKind {
    Baseline,
    Constrained,
}

fn baseline_kind(codec: &OfferedCodec) -> Option<BaselineKind> {
    // Absent means Baseline level 3.1 (RFC 6184 §8.1), like str0m and libwebrtc read it.
    let p = match codec.fmtp_param("profile-level-id") {
        Some(v) => ProfileLevelId::parse(v)?,
        None => ProfileLevelId::parse("42001f")?,
    };
    match p.profile_name().as_str() {
        "Baseline" => Some(BaselineKind::Baseline),
        "Constrained Baseline" => Some(BaselineKind::Constrained),
        _ => None,
    }
}

/// The viewer's H.264 format that may carry a Baseline stream although str0m's exact
/// profile match refused it: the first one of `offered` (the viewer's preference order)
/// in the stream's packetization mode whose profile is the *other* of Baseline and
/// Constrained Baseline.
///
/// * Stream Constrained Baseline, viewer Baseline: always safe, Constrained Baseline
///   is the subset of Baseline every Baseline decoder takes.
/// * Stream Baseline, viewer Constrained Baseline: FFmpeg's WHIP muxer labels x264's
///   output `42001e`, yet x264's baseline bitstream is Constrained Baseline (its SPS sets
///   constraint_set1), and Firefox offers only `42e01f`. A genuine Baseline stream
///   (FMO, ASO or redundant slices) is rare in WebRTC; no browser encoder makes one.
///
/// Levels are not compared (a decoder takes higher levels in practice; str0m does not
/// compare them either). The viewer is answered with its own format, so the answer
/// carries a `profile-level-id` it offered.
pub(crate) fn baseline_stand_in<'a>(
    stream: &OfferedCodec,
    offered: &'a [OfferedCodec],
) -> Option<&'a OfferedCodec> {
    if !stream.name.eq_ignore_ascii_case("h264") {
        return None;
    }
    let want = match baseline_kind(stream)? {
        BaselineKind::Baseline => BaselineKind::Constrained,
        BaselineKind::Constrained => BaselineKind::Baseline,
    };
    let mode = packetization_mode(stream);
    offered.iter().find(|c| {
        c.name.eq_ignore_ascii_case("h264")
            && c.clock_rate == stream.clock_rate
            && packetization_mode(c) == mode
            && baseline_kind(c) == Some(want)
            && c.payload_params().is_some()
    })
}

/// A profile as named in messages: "High (640c1f)", as offered.
fn named(codec: &OfferedCodec) -> String {
    match codec.fmtp_param("profile-level-id") {
        Some(v) => match ProfileLevelId::parse(v) {
            Some(p) => format!("{} ({})", p.profile_name(), v.to_ascii_lowercase()),
            None => format!("an unknown profile ({v})"),
        },
        None => "H.264 without a profile-level-id".into(),
    }
}

fn packetization_mode(codec: &OfferedCodec) -> u8 {
    codec
        .fmtp_param("packetization-mode")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Why a viewer whose H.264 formats (`offered`, the viewer's video codecs) all failed
/// to match the stream's H.264 cannot take it, in one line: e.g. "stream is H.264
/// High (640c1f); the offer accepts only Constrained Baseline (42e01f)". None when the
/// viewer offered no H.264 at all (the general message then names the codec).
pub(crate) fn mismatch_reason(stream: &OfferedCodec, offered: &[&OfferedCodec]) -> Option<String> {
    let h264: Vec<&&OfferedCodec> = offered
        .iter()
        .filter(|c| c.name.eq_ignore_ascii_case("h264"))
        .collect();
    if h264.is_empty() {
        return None;
    }
    let mode = packetization_mode(stream);
    let stream_is = format!("stream is H.264 {}", named(stream));
    let same_mode: Vec<&&&OfferedCodec> = h264
        .iter()
        .filter(|c| packetization_mode(c) == mode)
        .collect();
    if same_mode.is_empty() {
        return Some(format!(
            "{stream_is} in packetization-mode {mode}; the offer accepts H.264 only in packetization-mode {}",
            packetization_mode(h264[0])
        ));
    }
    let mut profiles: Vec<String> = Vec::new();
    for c in same_mode {
        let n = named(c);
        if !profiles.contains(&n) {
            profiles.push(n);
        }
    }
    Some(format!(
        "{stream_is}; the offer accepts only {}",
        profiles.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h264(fmtp: &str) -> OfferedCodec {
        OfferedCodec {
            pt: 96,
            name: "H264".into(),
            clock_rate: 90_000,
            channels: None,
            fmtp: fmtp.into(),
            rtx_pt: None,
            nack: true,
            pli: true,
            fir: false,
            transport_cc: false,
        }
    }

    fn name(plid: &str) -> String {
        ProfileLevelId::parse(plid).unwrap().profile_name()
    }

    #[test]
    fn the_profiles_publishers_send_have_their_names() {
        assert_eq!(name("42e01f"), "Constrained Baseline"); // OBS
        assert_eq!(name("42001e"), "Baseline"); // FFmpeg's WHIP muxer
        assert_eq!(name("4d001f"), "Main");
        assert_eq!(name("4d801f"), "Constrained Baseline");
        assert_eq!(name("64001f"), "High");
        assert_eq!(name("640c1f"), "Constrained High");
        assert_eq!(name("640832"), "Progressive High");
        assert_eq!(name("58c01e"), "Constrained Baseline");
        assert_eq!(name("58801e"), "Baseline");
        assert_eq!(name("58001e"), "Extended");
        assert_eq!(name("6e001f"), "High 10");
        assert_eq!(name("f4001f"), "High 4:4:4 Predictive");
        assert_eq!(name("ff001f"), "profile_idc 255");
    }

    #[test]
    fn levels_read_as_the_standard_writes_them() {
        let l = |s: &str| ProfileLevelId::parse(s).unwrap().level_name();
        assert_eq!(l("42e01f"), "3.1");
        assert_eq!(l("42001e"), "3.0");
        assert_eq!(l("640c34"), "5.2");
        assert_eq!(l("42f00b"), "1b");
        assert_eq!(l("64100b"), "1.1");
    }

    #[test]
    fn garbage_does_not_parse() {
        for s in ["", "42e01", "42e01f0", "zze01f", "42é01f", "4 e01f"] {
            assert_eq!(ProfileLevelId::parse(s), None, "{s:?}");
        }
        assert_eq!(
            ProfileLevelId::parse(" 42E01F "),
            Some(ProfileLevelId {
                profile_idc: 0x42,
                iop: 0xe0,
                level_idc: 0x1f
            })
        );
    }

    #[test]
    fn a_high_stream_to_a_constrained_baseline_viewer_says_so() {
        let stream = h264("packetization-mode=1;profile-level-id=640c1f");
        let viewer = [
            h264("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
            h264("level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f"),
        ];
        let offered: Vec<&OfferedCodec> = viewer.iter().collect();
        assert_eq!(
            mismatch_reason(&stream, &offered).unwrap(),
            "stream is H.264 Constrained High (640c1f); the offer accepts only Constrained Baseline (42e01f)"
        );
    }

    #[test]
    fn ffmpegs_baseline_to_a_viewer_of_other_profiles_lists_them_once() {
        let stream = h264("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001e");
        let viewer = [
            h264("packetization-mode=1;profile-level-id=42e01f"),
            h264("packetization-mode=1;profile-level-id=4d001f"),
            h264("packetization-mode=1;profile-level-id=42E01F"),
        ];
        let offered: Vec<&OfferedCodec> = viewer.iter().collect();
        assert_eq!(
            mismatch_reason(&stream, &offered).unwrap(),
            "stream is H.264 Baseline (42001e); the offer accepts only Constrained Baseline (42e01f), Main (4d001f)"
        );
    }

    #[test]
    fn packetization_mode_mismatch_is_named() {
        let stream = h264("packetization-mode=1;profile-level-id=42e01f");
        let viewer = [h264("profile-level-id=42e01f")];
        let offered: Vec<&OfferedCodec> = viewer.iter().collect();
        assert_eq!(
            mismatch_reason(&stream, &offered).unwrap(),
            "stream is H.264 Constrained Baseline (42e01f) in packetization-mode 1; the offer accepts H.264 only in packetization-mode 0"
        );
    }

    #[test]
    fn a_viewer_without_h264_gets_no_h264_reason() {
        let stream = h264("packetization-mode=1;profile-level-id=42e01f");
        let mut vp8 = h264("");
        vp8.name = "VP8".into();
        assert_eq!(mismatch_reason(&stream, &[&vp8]), None);
    }
}
