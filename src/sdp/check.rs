//! Checking offers against what wishd can serve: codec choice (WHIP) and matching (WHEP).

use str0m::format::{Codec, CodecConfig, PayloadParams};
use str0m::media::MediaKind;

use super::{ChosenCodec, Offer, OfferedCodec, OfferedMedia, PlayTrack, SdpError, kind_name};
use crate::model::Role;

/// What wishd accepts from publishers, for error messages.
const VIDEO_SUPPORTED: &str = "H264 packetization-mode=1, H265, VP8, VP9, AV1";
/// What wishd accepts from publishers, for error messages.
const AUDIO_SUPPORTED: &str = "opus, PCMU, PCMA";

/// An active audio/video m-line that passed the transport checks.
struct AvLine<'a> {
    index: usize,
    kind: MediaKind,
    mid: &'a str,
    media: &'a OfferedMedia,
}

/// Checks shared by WHIP and WHEP: ICE credentials, fingerprint, at least one audio/video
/// m-line, mids, rtcp-mux and one BUNDLE group covering every audio/video m-line.
///
/// Rejected m-lines (port 0, not bundle-only) and non audio/video m-lines are skipped.
fn check_transport(offer: &Offer) -> Result<Vec<AvLine<'_>>, SdpError> {
    if !offer.has_ice_credentials {
        return Err(SdpError::Malformed(
            "offer lacks a=ice-ufrag/a=ice-pwd".into(),
        ));
    }
    if !offer.has_fingerprint {
        return Err(SdpError::Malformed("offer lacks a=fingerprint".into()));
    }

    let av: Vec<(usize, MediaKind, &OfferedMedia)> = offer
        .media
        .iter()
        .enumerate()
        .filter(|(_, m)| m.is_active())
        .filter_map(|(i, m)| m.kind.map(|k| (i, k, m)))
        .collect();
    if av.is_empty() {
        let data = offer
            .media
            .iter()
            .any(|m| m.is_active() && m.media_type == "application");
        return Err(SdpError::Unsupported(if data {
            "offer has only a data channel, no audio or video".into()
        } else {
            "offer has no audio or video".into()
        }));
    }

    let mut lines = Vec::with_capacity(av.len());
    for (index, kind, media) in av {
        let Some(mid) = media.mid.as_deref() else {
            return Err(SdpError::Malformed(format!(
                "{} m-line {index} lacks a=mid",
                kind_name(kind)
            )));
        };
        lines.push(AvLine {
            index,
            kind,
            mid,
            media,
        });
    }

    for line in &lines {
        if !line.media.rtcp_mux {
            return Err(SdpError::Unsupported(format!(
                "{} m-line {} lacks a=rtcp-mux; wishd requires RTP/RTCP multiplexing",
                kind_name(line.kind),
                line.index
            )));
        }
    }

    if offer.bundle_mids.is_empty() {
        return Err(SdpError::Unsupported(
            "offer has no a=group:BUNDLE; wishd requires all media bundled on one transport".into(),
        ));
    }
    for line in &lines {
        if !offer.bundle_mids.iter().any(|m| m == line.mid) {
            return Err(SdpError::Unsupported(format!(
                "a=group:BUNDLE does not include {} m-line {} (mid {}); wishd requires all media bundled",
                kind_name(line.kind),
                line.index,
                line.mid
            )));
        }
    }
    Ok(lines)
}

/// The distinct descriptions of an m-line's media codecs, `"none"` if there are none.
fn offered_list(media: &OfferedMedia) -> String {
    let mut seen: Vec<String> = Vec::new();
    for c in media.codecs.iter().filter(|c| c.is_media()) {
        let d = c.describe();
        if !seen.contains(&d) {
            seen.push(d);
        }
    }
    if seen.is_empty() {
        "none".into()
    } else {
        seen.join(", ")
    }
}

/// True if str0m can compare this format with others: matching it against a copy that
/// differs only in an unscored fmtp parameter takes str0m's fuzzy path, which rejects
/// (for instance) an H.264 `profile-level-id` it cannot classify.
fn str0m_can_match(params: PayloadParams) -> bool {
    let mut spec = params.spec();
    spec.format.level_asymmetry_allowed =
        Some(!spec.format.level_asymmetry_allowed.unwrap_or(false));
    let probe = PayloadParams::new(params.pt(), None, spec);
    CodecConfig::new_from_payload_params(vec![params])
        .match_params(probe)
        .is_some()
}

/// True if wishd accepts this codec from a publisher on an m-line of `kind`.
fn publishable(codec: &OfferedCodec, kind: MediaKind) -> bool {
    let Some(params) = codec.payload_params() else {
        return false;
    };
    let c = codec.codec();
    if c.kind() != kind {
        return false;
    }
    match c {
        Codec::H264 => {
            codec.clock_rate == 90_000
                && params.spec().format.packetization_mode == Some(1)
                && str0m_can_match(params)
        }
        // H.265's profile, tier and level are matched against each viewer's as str0m
        // scores them; a format it cannot classify is refused here, as for H.264.
        Codec::H265 => codec.clock_rate == 90_000 && str0m_can_match(params),
        Codec::Vp8 | Codec::Vp9 | Codec::Av1 => codec.clock_rate == 90_000,
        Codec::Opus => codec.clock_rate == 48_000,
        Codec::PCMU | Codec::PCMA => codec.clock_rate == 8_000,
        _ => false,
    }
}

/// Checks a WHIP offer and chooses one codec per m-line that sends.
///
/// The choice is the first codec in the offer's preference order that wishd supports:
/// H264 with packetization-mode=1 (and a `profile-level-id` str0m can classify), H265
/// (with a profile, tier and level str0m can classify), VP8, VP9, AV1 for video (90 kHz); Opus (48 kHz), PCMU or PCMA (8 kHz) for audio. It keeps its RTX
/// PT and rtcp-fb flags.
///
/// Errors (Unsupported unless noted): no audio/video m-line ("offer has no audio or
/// video"); only a data channel; more than one sending audio or video m-line; no m-line
/// that sends ("WHIP offer must send media: m-line 0 is recvonly"); no supported codec on
/// a sending m-line (naming the codecs offered and the ones wishd supports);
/// no BUNDLE group covering all media m-lines; missing ice-ufrag/ice-pwd or fingerprint
/// -> Malformed; missing a=rtcp-mux -> Unsupported; a=mid missing -> Malformed.
///
/// A recvonly or inactive m-line beside one that sends carries nothing into the stream:
/// it is answered inactive ([`idle_lines`]), so a client that keeps an audio m-line
/// with its microphone off still publishes its video. Data-channel m-lines beside
/// audio/video are ignored (str0m will reject them in the answer; that is fine), as are
/// rejected m-lines (port 0 without `a=bundle-only`).
pub(crate) fn check_publish_offer(offer: &Offer) -> Result<Vec<ChosenCodec>, SdpError> {
    let lines = check_transport(offer)?;
    let protocol = Role::Publisher.protocol();

    for kind in [MediaKind::Audio, MediaKind::Video] {
        let idx: Vec<String> = lines
            .iter()
            .filter(|l| l.kind == kind && l.media.direction.sends())
            .map(|l| l.index.to_string())
            .collect();
        if idx.len() > 1 {
            return Err(SdpError::Unsupported(format!(
                "{protocol} offer has {} {} m-lines ({}); wishd takes at most one audio and one video per publisher",
                idx.len(),
                kind_name(kind),
                idx.join(", ")
            )));
        }
    }

    // An m-line that sends nothing is answered inactive (`idle_lines`); an offer where
    // no m-line sends cannot feed a stream.
    if let Some(quiet) = lines.iter().find(|l| !l.media.direction.sends())
        && lines.iter().all(|l| !l.media.direction.sends())
    {
        return Err(SdpError::Unsupported(format!(
            "{protocol} offer must send media: m-line {} is {}",
            quiet.index,
            quiet.media.direction.as_str()
        )));
    }

    let mut chosen = Vec::with_capacity(lines.len());
    for line in lines.iter().filter(|l| l.media.direction.sends()) {
        let Some(codec) = line.media.codecs.iter().find(|c| publishable(c, line.kind)) else {
            let supported = match line.kind {
                MediaKind::Audio => AUDIO_SUPPORTED,
                MediaKind::Video => VIDEO_SUPPORTED,
            };
            return Err(SdpError::Unsupported(format!(
                "{} m-line {} has no codec wishd supports (offered: {}; supported: {supported})",
                kind_name(line.kind),
                line.index,
                offered_list(line.media)
            )));
        };
        chosen.push(ChosenCodec {
            kind: line.kind,
            mid: line.mid.to_string(),
            codec: codec.clone(),
        });
    }
    Ok(chosen)
}

/// The viewer's PT (and its RTX PT) that str0m's matching pairs with `source`, if any.
///
/// `CodecConfig::match_params` keeps the *last* of equally scored candidates, so the
/// viewer's codecs are handed over in reverse to prefer the viewer's earlier choices.
fn match_viewer(media: &OfferedMedia, source: &ChosenCodec) -> Option<(u8, Option<u8>)> {
    let viewer: Vec<PayloadParams> = media
        .codecs
        .iter()
        .rev()
        .filter_map(OfferedCodec::payload_params)
        .collect();
    let config = CodecConfig::new_from_payload_params(viewer);
    let matched = config.match_params(source.payload_params())?;
    Some((*matched.pt(), matched.resend().map(|p| *p)))
}

/// Checks a WHEP offer against the stream's codecs (one [`ChosenCodec`] per kind; later
/// duplicates of a kind are ignored). Viewer m-lines must be recvonly or sendrecv
/// (sendonly/inactive -> Unsupported).
///
/// For each kind of the stream, the first viewer m-line of that kind with a codec that
/// str0m's `CodecConfig::match_params` pairs with the stream's codec is planned (tracks
/// come back in m-line order). A kind the stream does not have is left out (answered
/// inactive, see [`idle_lines`]; not an error) — but if NO m-line of the offer can carry any
/// track of the stream -> Unsupported naming the missing codec(s), e.g. "viewer offer has
/// no codec for the stream's video: H264 profile-level-id=42e01f packetization-mode=1".
///
/// H.264 Baseline and Constrained Baseline stand in for each other when the viewer has
/// no format str0m matches exactly (see [`super::h264::baseline_stand_in`]); the track
/// then carries the viewer's own fmtp ([`PlayTrack::viewer_fmtp`]) for the answer.
///
/// If the viewer offers H.264 but not in the stream's profile or packetization mode ->
/// Unsupported saying both, e.g. "viewer offer cannot receive the stream's video: stream
/// is H.264 Constrained High (640c1f); the offer accepts only Constrained Baseline
/// (42e01f)" (see [`super::h264`]).
///
/// If the viewer offers a kind the stream has but none of the viewer's codecs matches ->
/// Unsupported naming the codec, e.g. "viewer offer cannot receive the stream's video
/// codec H264 profile-level-id=42e01f packetization-mode=1 (offered: VP8, VP9)".
///
/// Same BUNDLE / rtcp-mux / ice / fingerprint checks as publish.
pub(crate) fn check_play_offer(
    offer: &Offer,
    stream: &[ChosenCodec],
) -> Result<Vec<PlayTrack>, SdpError> {
    let lines = check_transport(offer)?;
    let protocol = Role::Viewer.protocol();

    for line in &lines {
        if !line.media.direction.receives() {
            return Err(SdpError::Unsupported(format!(
                "{protocol} offer must receive media: m-line {} is {}",
                line.index,
                line.media.direction.as_str()
            )));
        }
    }

    if stream.is_empty() {
        return Err(SdpError::Unsupported(
            "the stream has no audio or video to play".into(),
        ));
    }

    let mut planned: Vec<(usize, PlayTrack)> = Vec::new();
    let mut missing: Vec<&ChosenCodec> = Vec::new();
    for kind in [MediaKind::Audio, MediaKind::Video] {
        let Some(source) = stream.iter().find(|c| c.kind == kind) else {
            continue;
        };
        let candidates: Vec<&AvLine> = lines.iter().filter(|l| l.kind == kind).collect();
        if candidates.is_empty() {
            missing.push(source);
            continue;
        }
        let found = candidates
            .iter()
            .find_map(|l| match_viewer(l.media, source).map(|(pt, rtx)| (l, pt, rtx, None)))
            .or_else(|| {
                candidates.iter().find_map(|l| {
                    let c = super::h264::baseline_stand_in(&source.codec, &l.media.codecs)?;
                    Some((l, c.pt, c.rtx_pt, Some(c.fmtp.clone())))
                })
            });
        let Some((line, viewer_pt, viewer_rtx_pt, viewer_fmtp)) = found else {
            if source.codec.codec() == Codec::H264 {
                let viewer: Vec<&OfferedCodec> =
                    candidates.iter().flat_map(|l| &l.media.codecs).collect();
                if let Some(why) = super::h264::mismatch_reason(&source.codec, &viewer) {
                    return Err(SdpError::Unsupported(format!(
                        "viewer offer cannot receive the stream's video: {why}"
                    )));
                }
            }
            let offered: Vec<String> = candidates.iter().map(|l| offered_list(l.media)).collect();
            return Err(SdpError::Unsupported(format!(
                "viewer offer cannot receive the stream's {} codec {} (offered: {})",
                kind_name(kind),
                source.codec.describe(),
                offered.join("; ")
            )));
        };
        let transport_cc = line
            .media
            .codecs
            .iter()
            .any(|c| c.pt == viewer_pt && c.transport_cc);
        planned.push((
            line.index,
            PlayTrack {
                kind,
                mid: line.mid.to_string(),
                viewer_pt,
                viewer_rtx_pt,
                viewer_fmtp,
                transport_cc,
                source_pt: source.codec.pt,
                clock_rate: source.codec.clock_rate,
            },
        ));
    }

    if planned.is_empty() {
        let names: Vec<String> = missing
            .iter()
            .map(|c| format!("{}: {}", kind_name(c.kind), c.codec.describe()))
            .collect();
        return Err(SdpError::Unsupported(format!(
            "viewer offer has no codec for the stream's {}",
            names.join("; ")
        )));
    }
    planned.sort_by_key(|(i, _)| *i);
    Ok(planned.into_iter().map(|(_, t)| t).collect())
}

/// An offered audio/video m-line that no media will flow on: a viewer's m-line of a
/// kind the stream lacks, or a publisher's m-line that does not send. wishd answers it
/// `a=inactive` with one of the offer's own codecs and keeps it in the BUNDLE group.
///
/// Rejecting it with port 0 would take it out of the group. RFC 8843 §7.3.3 limits what
/// an answerer may reject of a BUNDLE group, and browsers, which tag their first m-line
/// (audio, for every browser player), refuse an answer that rejects it ("Failed to
/// setup RTCP mux" in Chromium): no browser could play a video-only stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IdleLine {
    /// Audio or video.
    pub(crate) kind: MediaKind,
    /// The offer's mid for this m-line.
    pub(crate) mid: String,
    /// The codec the answer names (the first of the m-line's codecs str0m can answer).
    pub(crate) codec: OfferedCodec,
}

impl IdleLine {
    /// str0m params for the answer: the offer's own payload type and format.
    pub(crate) fn payload_params(&self) -> PayloadParams {
        self.codec.build_params()
    }
}

/// The offer's active audio/video m-lines whose mid is not in `used`, each with a codec
/// to answer it inactive with (see [`IdleLine`]). An m-line without any codec str0m can
/// answer is left out; str0m then rejects it with port 0, the only answer left.
pub(crate) fn idle_lines(offer: &Offer, used: &[&str]) -> Vec<IdleLine> {
    offer
        .media
        .iter()
        .filter(|m| m.is_active())
        .filter_map(|m| {
            let kind = m.kind?;
            let mid = m.mid.as_deref()?;
            if used.contains(&mid) {
                return None;
            }
            let codec = m.codecs.iter().find(|c| {
                c.codec().kind() == kind && c.payload_params().is_some_and(str0m_can_match)
            })?;
            Some(IdleLine {
                kind,
                mid: mid.to_owned(),
                codec: codec.clone(),
            })
        })
        .collect()
}
