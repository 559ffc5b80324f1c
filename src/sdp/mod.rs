//! Inspecting SDP offers before str0m sees them, codec choice and codec matching.
//!
//! The HTTP edge hands every WHIP/WHEP offer to [`parse_offer`] first, then to
//! [`check_publish_offer`] (WHIP) or [`check_play_offer`] (WHEP). These never mutate the
//! body: str0m later parses the very same bytes. What this module adds is
//!
//! * precise errors: a body that is not SDP is [`SdpError::Malformed`] (HTTP 400), an
//!   offer wishd cannot serve is [`SdpError::Unsupported`] (HTTP 422) with one line
//!   naming what is missing;
//! * codec choice for publishers: exactly one codec per m-line ([`ChosenCodec`]), so the
//!   stream's codec is known before any media flows;
//! * codec matching for viewers: which of the viewer's payload types carries the stream's
//!   codec ([`PlayTrack`]), decided by str0m's own [`CodecConfig::match_params`] so the
//!   answer str0m writes agrees with the plan.
//!
//! Nothing here panics on any input.
//!
//! # What str0m's H.264 matching decides
//!
//! `CodecConfig::match_params` (str0m 0.25) treats two H.264 formats as compatible when
//! their `packetization-mode` is equal (absent means 0) and their *profiles* are equal as
//! classified by RFC 6184 table 5 from `profile-level-id` (absent means Baseline level
//! 3.1, like libwebrtc). So `42e01f` (Constrained Baseline) and `42001f` (Baseline) do
//! **not** match, nor do `42e01f` and `640c1f` (Constrained High); levels may differ
//! (a level difference only lowers the score). An unparsable `profile-level-id` matches
//! nothing, which is why [`check_publish_offer`] does not choose such an H.264 format.
//!
//! [`CodecConfig::match_params`]: str0m::format::CodecConfig::match_params

mod check;
pub(crate) mod frag;
pub(crate) mod h264;
pub mod memo;
pub(crate) mod msid;
pub(crate) mod parse;
pub(crate) mod simulcast;
pub(crate) mod template;
pub mod trim;

#[cfg(test)]
mod tests;

use str0m::format::{Codec, CodecSpec, FormatParams, PayloadParams};
use str0m::media::{Frequency, MediaKind, Pt};

use crate::model::CodecKind;

pub(crate) use check::{IdleLine, check_play_offer, check_publish_offer, idle_lines};
pub use parse::parse_offer;
pub use simulcast::decline_simulcast;
pub(crate) use simulcast::take_simulcast;

/// The lines of an SDP text, without their line ends.
pub fn sdp_lines(sdp: &str) -> Vec<&str> {
    sdp.lines().map(|l| l.trim_end_matches('\r')).collect()
}

/// The sections of `lines`: the session part, then each m-section from its `m=` line.
pub fn sections<'a>(lines: &'a [&'a str]) -> impl Iterator<Item = &'a [&'a str]> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= lines.len() {
            return None;
        }
        let end = lines[start + 1..]
            .iter()
            .position(|l| l.starts_with("m="))
            .map_or(lines.len(), |p| start + 1 + p);
        let section = &lines[start..end];
        start = end;
        Some(section)
    })
}

/// Appends `line` and CRLF to `out`, unless the line is empty.
pub fn push_line(out: &mut String, line: &str) {
    if !line.is_empty() {
        out.push_str(line);
        out.push_str("\r\n");
    }
}

/// Why an offer is refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SdpError {
    /// The body is not parsable SDP (HTTP 400).
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// Parsable, but wishd cannot serve it (HTTP 422); the string names what is missing, one line.
    #[error("{0}")]
    Unsupported(String),
}

impl SdpError {
    #[cfg(test)]
    /// True for [`SdpError::Malformed`] (answer 400), false for [`SdpError::Unsupported`] (422).
    pub(crate) fn is_malformed(&self) -> bool {
        matches!(self, SdpError::Malformed(_))
    }
}

/// One codec as offered.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedCodec {
    /// The payload type (0..=127).
    pub pt: u8,
    /// The encoding name as in `a=rtpmap`, e.g. `"H264"` (or the static name for PT 0/8/9).
    pub name: String,
    /// The RTP clock rate from `a=rtpmap`.
    pub clock_rate: u32,
    /// The channel count from `a=rtpmap`, if given.
    pub channels: Option<u8>,
    /// The raw `a=fmtp` value, `""` if none.
    pub fmtp: String,
    /// The RTX payload type repairing this codec (`a=fmtp:X apt=pt` on an `rtx` rtpmap).
    pub rtx_pt: Option<u8>,
    /// `a=rtcp-fb:pt nack`.
    pub nack: bool,
    /// `a=rtcp-fb:pt nack pli`.
    pub pli: bool,
    /// `a=rtcp-fb:pt ccm fir`.
    pub fir: bool,
    /// `a=rtcp-fb:pt transport-cc`.
    pub transport_cc: bool,
}

/// Codecs wishd can forward, as str0m names them.
const SUPPORTED: [Codec; 8] = [
    Codec::H264,
    Codec::H265,
    Codec::Vp8,
    Codec::Vp9,
    Codec::Av1,
    Codec::Opus,
    Codec::PCMU,
    Codec::PCMA,
];

/// fmtp keys worth naming in [`OfferedCodec::describe`], per codec.
fn described_fmtp_keys(codec: Codec) -> &'static [&'static str] {
    match codec {
        Codec::H264 => &["profile-level-id", "packetization-mode"],
        Codec::H265 => &["profile-id", "tier-flag", "level-id"],
        Codec::Vp9 => &["profile-id"],
        Codec::Av1 => &["profile", "level-idx", "tier"],
        _ => &[],
    }
}

impl OfferedCodec {
    /// The same codec as `other` (name, clock rate, channels, fmtp); payload type
    /// numbers may differ.
    pub(crate) fn same_codec(&self, other: &OfferedCodec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.clock_rate == other.clock_rate
            && self.channels == other.channels
            && self.fmtp == other.fmtp
    }

    /// str0m's name for this codec (`Codec::Unknown` for names str0m does not know).
    pub fn codec(&self) -> Codec {
        Codec::from(self.name.as_str())
    }

    /// True for the codec families wishd forwards (H264, H265, VP8, VP9, AV1, Opus, PCMU,
    /// PCMA).
    /// Says nothing about the format parameters; see [`check_publish_offer`] for those.
    pub(crate) fn is_supported(&self) -> bool {
        SUPPORTED.contains(&self.codec())
    }

    /// True for payloads that carry media themselves; false for RTX, RED, ULPFEC,
    /// FlexFEC, telephone-event and comfort noise.
    pub(crate) fn is_media(&self) -> bool {
        let codec = self.codec();
        match codec {
            Codec::Tele | Codec::Rtx | Codec::Red | Codec::CN | Codec::Null => false,
            Codec::Unknown => {
                let name = self.name.to_ascii_lowercase();
                !(name == "ulpfec" || name == "flexfec-03" || name == "flexfec")
            }
            _ => true,
        }
    }

    /// The value of one fmtp parameter (key matched case-insensitively), trimmed.
    pub(crate) fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp.split(';').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
        })
    }

    /// str0m view of this codec (None for codecs str0m does not know / wishd does not support,
    /// and for rtx/red/ulpfec/telephone-event). Carries `resend` = [`OfferedCodec::rtx_pt`]
    /// and the offered rtcp-fb flags (REMB always off: wishd uses transport-cc).
    pub(crate) fn payload_params(&self) -> Option<PayloadParams> {
        if !self.is_supported() || self.pt > 127 || self.rtx_pt.is_some_and(|p| p > 127) {
            return None;
        }
        Frequency::new(self.clock_rate)?;
        Some(self.build_params())
    }

    /// Builds str0m params without checking support; a zero clock rate becomes 90 kHz.
    fn build_params(&self) -> PayloadParams {
        let spec = CodecSpec {
            codec: self.codec(),
            clock_rate: Frequency::new(self.clock_rate).unwrap_or(Frequency::NINETY_KHZ),
            channels: self.channels,
            format: FormatParams::parse_line(&self.fmtp),
        };
        let mut params = PayloadParams::new(Pt::from(self.pt), self.rtx_pt.map(Pt::from), spec);
        params.set_fb_nack(self.nack);
        params.set_fb_pli(self.pli);
        params.set_fb_fir(self.fir);
        params.set_fb_transport_cc(self.transport_cc);
        params.set_fb_remb(false);
        params
    }

    /// Human description for error messages: `"H264 profile-level-id=42e01f
    /// packetization-mode=1"`, `"VP8"`, `"opus/48000/2"`.
    ///
    /// Video codecs are named with the format parameters that decide compatibility (as
    /// offered; absent ones are left out), audio codecs as `name/clock[/channels]`.
    pub(crate) fn describe(&self) -> String {
        let codec = self.codec();
        let is_audio = codec.is_audio()
            || (!codec.is_video() && (self.channels.is_some() || self.clock_rate != 90_000));
        if is_audio {
            return match self.channels {
                Some(ch) => format!("{}/{}/{}", self.name, self.clock_rate, ch),
                None => format!("{}/{}", self.name, self.clock_rate),
            };
        }
        let mut out = self.name.clone();
        for key in described_fmtp_keys(codec) {
            if let Some(v) = self.fmtp_param(key) {
                out.push(' ');
                out.push_str(key);
                out.push('=');
                out.push_str(v);
            }
        }
        out
    }
}

/// Media direction of an m-line (media-level attribute, else session-level, else sendrecv).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendrecv` (also the default).
    SendRecv,
    /// `a=sendonly`: the offerer sends.
    SendOnly,
    /// `a=recvonly`: the offerer receives.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The SDP attribute name, e.g. `"recvonly"`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// True if the offerer sends media on this m-line.
    pub(crate) fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// True if the offerer receives media on this m-line.
    pub(crate) fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// One m-line of the offer.
#[derive(Debug, Clone)]
pub struct OfferedMedia {
    /// Audio or video; None for application (data channel) and any other media type.
    pub kind: Option<MediaKind>,
    /// `a=mid`.
    pub mid: Option<String>,
    /// Effective direction.
    pub direction: Direction,
    /// Media codecs in the offer's preference order, RTX folded into `rtx_pt`.
    /// RED, ULPFEC and telephone-event stay listed (they are not [`OfferedCodec::is_media`]).
    pub codecs: Vec<OfferedCodec>,
    /// The m-line's port is 0 (rejected, unless `bundle_only`).
    pub port_zero: bool,
    /// `a=rid` ids, in order.
    pub rids: Vec<String>,
    /// The value of `a=simulcast`, if any (e.g. `send q;h;f`).
    pub simulcast: Option<String>,
    /// The m-line (or the session) maps the RID header extension, which tells a
    /// simulcast layer's packets apart before their SSRC is known.
    pub rid_extension: bool,
    /// `a=setup` (media-level, else session-level).
    pub setup: Option<String>,
    /// The stream id of `a=msid` (or of an `a=ssrc:N msid:` line).
    pub msid_stream: Option<String>,
    /// `a=rtcp-mux` present.
    pub rtcp_mux: bool,
    /// `a=bundle-only` present (port 0 then still means an active m-line).
    pub bundle_only: bool,
    /// The media name from the m-line, e.g. `"video"`, `"application"`.
    pub media_type: String,
}

impl OfferedMedia {
    /// False for an m-line with port 0 that is not `a=bundle-only` (a rejected m-line).
    pub(crate) fn is_active(&self) -> bool {
        !self.port_zero || self.bundle_only
    }
}

/// Summary of an offer.
#[derive(Debug, Clone)]
pub struct Offer {
    /// The m-lines, in order.
    pub media: Vec<OfferedMedia>,
    /// The mids of the first `a=group:BUNDLE` (empty if none).
    pub bundle_mids: Vec<String>,
    /// Every active m-line has ice-ufrag and ice-pwd (media- or session-level).
    pub has_ice_credentials: bool,
    /// Every active m-line has a fingerprint (media- or session-level).
    pub has_fingerprint: bool,
}

/// The codec a publisher chose for one kind: what the worker configures on the
/// publisher's Rtc, and what viewers must match.
#[derive(Debug, Clone, PartialEq)]
pub struct ChosenCodec {
    /// Audio or video.
    pub(crate) kind: MediaKind,
    /// The publisher's mid for this m-line.
    pub(crate) mid: String,
    /// The chosen codec, with its RTX PT and feedback flags.
    pub(crate) codec: OfferedCodec,
}

impl ChosenCodec {
    /// str0m params for the publisher's Rtc: PT, resend = RTX PT, offered rtcp-fb flags.
    pub(crate) fn payload_params(&self) -> PayloadParams {
        self.codec.build_params()
    }

    #[cfg(test)]
    /// The canonical codec name: `"H264"`, `"VP8"`, `"VP9"`, `"AV1"`, `"opus"`, `"PCMU"`,
    /// `"PCMA"` (the offered name for anything else).
    pub(crate) fn codec_kind_name(&self) -> &str {
        self.family().name().unwrap_or(&self.codec.name)
    }

    /// The codec family.
    pub(crate) fn family(&self) -> CodecKind {
        self.codec.codec().into()
    }
}

/// A WHEP viewer track plan: for each viewer m-line carrying a kind the stream has,
/// the viewer's PT (and RTX PT) for the stream's codec.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlayTrack {
    /// Audio or video.
    pub(crate) kind: MediaKind,
    /// The viewer's mid for this m-line.
    pub(crate) mid: String,
    /// The viewer's payload type for the stream's codec.
    pub(crate) viewer_pt: u8,
    /// The viewer's RTX payload type for that codec, if it offered one.
    pub(crate) viewer_rtx_pt: Option<u8>,
    /// The viewer's own fmtp to answer with, when it differs from the stream's: an
    /// H.264 Baseline stream to a Constrained Baseline viewer or the other way round
    /// ([`h264::baseline_stand_in`]). None: the stream's format.
    pub(crate) viewer_fmtp: Option<String>,
    /// The viewer offered transport-wide feedback for that codec (its bandwidth can
    /// be estimated).
    pub(crate) transport_cc: bool,
    /// The publisher's payload type of the stream's codec.
    pub(crate) source_pt: u8,
    /// The codec's RTP clock rate.
    pub(crate) clock_rate: u32,
}

impl PlayTrack {
    /// str0m params for the viewer's Rtc: the viewer's PT and RTX PT, the stream's codec
    /// in the viewer's own format when [`PlayTrack::viewer_fmtp`] says so (so the answer
    /// names a profile the viewer offered), NACK and PLI for video.
    pub(crate) fn viewer_params(&self, source: &ChosenCodec) -> PayloadParams {
        let mut spec = source.payload_params().spec();
        if let Some(fmtp) = &self.viewer_fmtp {
            spec.format = FormatParams::parse_line(fmtp);
        }
        let mut p = PayloadParams::new(
            self.viewer_pt.into(),
            self.viewer_rtx_pt.map(Into::into),
            spec,
        );
        p.set_fb_nack(self.kind == MediaKind::Video);
        p.set_fb_pli(self.kind == MediaKind::Video);
        p.set_fb_transport_cc(self.transport_cc);
        p
    }
}

/// `"audio"` / `"video"` for messages.
pub(crate) fn kind_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}
