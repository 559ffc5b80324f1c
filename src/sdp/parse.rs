//! Turning an offer body into an [`Offer`] summary.

use sdp_types::{Attribute, Media, Session};
use str0m::media::MediaKind;

use super::{Direction, Offer, OfferedCodec, OfferedMedia, SdpError};

/// Offers larger than this are refused as malformed; real offers are a few KiB.
pub(crate) const MAX_OFFER_BYTES: usize = 256 * 1024;

/// Parses an offer (sdp-types), never panics. Malformed -> [`SdpError::Malformed`].
///
/// The body is normalised on a copy before parsing, so that offers str0m accepts are not
/// refused here: a leading UTF-8 BOM is dropped, lines may end in `\r\n`, `\n` or `\r`,
/// whitespace around each line is trimmed (sdp-types rejects `v=0 ` and whitespace-only
/// lines) and blank lines are skipped. `s=`, `o=` and `t=` may be missing.
pub fn parse_offer(body: &[u8]) -> Result<Offer, SdpError> {
    if body.len() > MAX_OFFER_BYTES {
        return Err(SdpError::Malformed(format!(
            "offer is {} bytes, more than the {MAX_OFFER_BYTES} allowed",
            body.len()
        )));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| SdpError::Malformed(format!("offer is not UTF-8: {e}")))?;
    let normalised = normalise(text)?;
    if normalised.is_empty() {
        return Err(SdpError::Malformed("offer is empty".into()));
    }
    let session =
        Session::parse(normalised.as_bytes()).map_err(|e| SdpError::Malformed(e.to_string()))?;
    Ok(summarise(&session))
}

/// Trims every line, drops blank lines and ends each line with `\r\n`.
///
/// Also refuses lines that are not `<one character>=<value>`. sdp-types reports those as
/// errors too, but its peekable line iterator does not keep the error: the parser then
/// reads on past the bad line and can hit an `assert_eq!` (a panic) on the next one, e.g.
/// `v=0`, `junk`, `a=x`. Checking here first means sdp-types never sees such a line.
pub(crate) fn normalise(text: &str) -> Result<String, SdpError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = String::with_capacity(text.len() + 64);
    // Numbered by `\n` lines, as the sender wrote them; a lone `\r` also ends a line.
    for (n, raw) in text.split('\n').enumerate() {
        for line in raw.split('\r').map(str::trim).filter(|l| !l.is_empty()) {
            if line.as_bytes().iter().position(|b| *b == b'=') != Some(1) {
                let shown: String = line.chars().take(40).collect();
                return Err(SdpError::Malformed(format!(
                    "line {} is not <type>=<value>: {shown:?}",
                    n + 1
                )));
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    Ok(out)
}

/// Values of all attributes called `name`, in order (value-less ones as `""`).
fn values<'a>(attrs: &'a [Attribute], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    attrs
        .iter()
        .filter(move |a| a.attribute == name)
        .map(|a| a.value.as_deref().unwrap_or("").trim())
}

/// The first non-empty value of attribute `name`.
fn first_value<'a>(attrs: &'a [Attribute], name: &'a str) -> Option<&'a str> {
    values(attrs, name).find(|v| !v.is_empty())
}

fn has(attrs: &[Attribute], name: &str) -> bool {
    attrs.iter().any(|a| a.attribute == name)
}

/// A payload type number as RTP allows it (0..=127).
fn parse_pt(s: &str) -> Option<u8> {
    s.trim().parse::<u8>().ok().filter(|pt| *pt <= 127)
}

/// Splits `"96 rest of value"` into the PT (or `None` for `*`) and the rest.
fn split_pt(value: &str) -> Option<(PtRef, &str)> {
    let value = value.trim();
    let (pt, rest) = match value.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((pt, rest)) => (pt, rest.trim()),
        None => (value, ""),
    };
    if pt == "*" {
        return Some((PtRef::All, rest));
    }
    parse_pt(pt).map(|pt| (PtRef::One(pt), rest))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PtRef {
    All,
    One(u8),
}

impl PtRef {
    fn covers(self, pt: u8) -> bool {
        match self {
            PtRef::All => true,
            PtRef::One(p) => p == pt,
        }
    }
}

/// An rtpmap encoding: name, clock rate and channels, e.g. `opus/48000/2`.
#[derive(Clone)]
struct Encoding {
    name: String,
    clock_rate: u32,
    channels: Option<u8>,
}

/// Parses an rtpmap encoding such as `opus/48000/2`.
fn parse_encoding(enc: &str) -> Option<Encoding> {
    let mut parts = enc.split('/');
    let name = parts.next()?.trim();
    if name.is_empty() {
        return None;
    }
    let clock = parts.next()?.trim().parse::<u32>().ok()?;
    let channels = match parts.next() {
        Some(ch) => Some(ch.trim().parse::<u8>().ok()?),
        // See [`opus_channels_added`].
        None if name.eq_ignore_ascii_case("opus") => Some(2),
        None => None,
    };
    Some(Encoding {
        name: name.to_string(),
        clock_rate: clock,
        channels,
    })
}

/// `a=rtpmap:111 OPUS/48000` as `a=rtpmap:111 OPUS/48000/2`; any other line: `None`.
///
/// RFC 7587 §7 has Opus's rtpmap always say two channels (whatever is sent), and str0m
/// matches Opus only so. GStreamer's `webrtcbin` writes what its caps say, and caps
/// without `encoding-params` (as most pipelines write them) give no channel count: a
/// viewer like that would otherwise be refused for a codec it can play.
pub(crate) fn opus_channels_added(line: &str) -> Option<String> {
    let value = line.strip_prefix("a=rtpmap:")?;
    let (pt, enc) = value.trim().split_once(char::is_whitespace)?;
    let (name, clock) = enc.trim().split_once('/')?;
    (name.eq_ignore_ascii_case("opus") && !clock.contains('/'))
        .then(|| format!("a=rtpmap:{pt} {name}/{}/2", clock.trim()))
}

/// Encodings of the static payload types wishd might meet without an rtpmap.
fn static_encoding(pt: u8) -> Option<Encoding> {
    let name = match pt {
        0 => "PCMU",
        8 => "PCMA",
        9 => "G722",
        _ => return None,
    };
    Some(Encoding {
        name: name.to_string(),
        clock_rate: 8000,
        channels: None,
    })
}

fn summarise(session: &Session) -> Offer {
    let sattrs = &session.attributes;
    let media: Vec<OfferedMedia> = session
        .medias
        .iter()
        .map(|m| summarise_media(m, sattrs))
        .collect();

    let bundle_mids = values(sattrs, "group")
        .find_map(|v| {
            let mut tokens = v.split_ascii_whitespace();
            (tokens.next() == Some("BUNDLE")).then(|| tokens.map(str::to_string).collect())
        })
        .unwrap_or_default();

    let session_ufrag = first_value(sattrs, "ice-ufrag").is_some();
    let session_pwd = first_value(sattrs, "ice-pwd").is_some();
    let session_fp = first_value(sattrs, "fingerprint").is_some();

    let (has_ice_credentials, has_fingerprint) = if session.medias.is_empty() {
        (session_ufrag && session_pwd, session_fp)
    } else {
        let mut any_ice = session_ufrag && session_pwd;
        let mut all_ice = true;
        let mut any_fp = session_fp;
        let mut all_fp = true;
        for (m, summary) in session.medias.iter().zip(&media) {
            let ice = (session_ufrag || first_value(&m.attributes, "ice-ufrag").is_some())
                && (session_pwd || first_value(&m.attributes, "ice-pwd").is_some());
            let fp = session_fp || first_value(&m.attributes, "fingerprint").is_some();
            any_ice |= ice;
            any_fp |= fp;
            // Port-0 m-lines are rejected or bundle-only; the latter may leave transport
            // attributes to the bundle tag.
            if !summary.port_zero {
                all_ice &= ice;
                all_fp &= fp;
            }
        }
        (any_ice && all_ice, any_fp && all_fp)
    };

    Offer {
        media,
        bundle_mids,
        has_ice_credentials,
        has_fingerprint,
    }
}

fn direction_of(attrs: &[Attribute]) -> Option<Direction> {
    attrs.iter().rev().find_map(|a| match a.attribute.as_str() {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    })
}

fn summarise_media(m: &Media, sattrs: &[Attribute]) -> OfferedMedia {
    let attrs = &m.attributes;
    let kind = match m.media.as_str() {
        "audio" => Some(MediaKind::Audio),
        "video" => Some(MediaKind::Video),
        _ => None,
    };
    let direction = direction_of(attrs)
        .or_else(|| direction_of(sattrs))
        .unwrap_or(Direction::SendRecv);

    let msid_stream = first_value(attrs, "msid")
        .and_then(|v| v.split_ascii_whitespace().next())
        .or_else(|| {
            values(attrs, "ssrc").find_map(|v| {
                let mut tokens = v.split_ascii_whitespace();
                let _ssrc = tokens.next()?;
                let stream = tokens.next()?.strip_prefix("msid:")?;
                (!stream.is_empty()).then_some(stream)
            })
        })
        .map(str::to_string);

    OfferedMedia {
        kind,
        mid: first_value(attrs, "mid").map(str::to_string),
        direction,
        codecs: if kind.is_some() {
            codecs_of(m)
        } else {
            Vec::new()
        },
        port_zero: m.port == 0,
        rids: values(attrs, "rid")
            .filter_map(|v| v.split_ascii_whitespace().next())
            .map(str::to_string)
            .collect(),
        simulcast: first_value(attrs, "simulcast").map(str::to_string),
        rid_extension: values(attrs, "extmap")
            .chain(values(sattrs, "extmap"))
            .any(|v| v.contains(super::simulcast::RID_EXTENSIONS[0])),
        setup: first_value(attrs, "setup")
            .or_else(|| first_value(sattrs, "setup"))
            .map(str::to_string),
        msid_stream,
        rtcp_mux: has(attrs, "rtcp-mux"),
        bundle_only: has(attrs, "bundle-only"),
        media_type: m.media.clone(),
    }
}

/// The codecs of one m-line in `fmt` order, RTX folded into the codec it repairs.
pub(crate) fn codecs_of(m: &Media) -> Vec<OfferedCodec> {
    let attrs = &m.attributes;

    let mut pts: Vec<u8> = Vec::new();
    for pt in m.fmt.split_ascii_whitespace().filter_map(parse_pt) {
        if !pts.contains(&pt) {
            pts.push(pt);
        }
    }

    // First rtpmap / fmtp per PT wins.
    let mut rtpmaps: Vec<(u8, Encoding)> = Vec::new();
    for v in values(attrs, "rtpmap") {
        if let Some((PtRef::One(pt), enc)) = split_pt(v)
            && let Some(enc) = parse_encoding(enc)
            && !rtpmaps.iter().any(|(p, _)| *p == pt)
        {
            rtpmaps.push((pt, enc));
        }
    }
    let mut fmtps: Vec<(u8, &str)> = Vec::new();
    for v in values(attrs, "fmtp") {
        if let Some((PtRef::One(pt), rest)) = split_pt(v)
            && !fmtps.iter().any(|(p, _)| *p == pt)
        {
            fmtps.push((pt, rest));
        }
    }
    let feedback: Vec<(PtRef, &str)> = values(attrs, "rtcp-fb").filter_map(split_pt).collect();

    let mut codecs: Vec<OfferedCodec> = Vec::new();
    let mut rtx: Vec<(u8, u8)> = Vec::new(); // (rtx pt, apt)
    for pt in pts {
        let encoding = rtpmaps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, e)| e.clone())
            .or_else(|| static_encoding(pt));
        let Some(Encoding {
            name,
            clock_rate,
            channels,
        }) = encoding
        else {
            continue;
        };
        let fmtp = fmtps
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, f)| f.to_string())
            .unwrap_or_default();
        if name.eq_ignore_ascii_case("rtx") {
            let apt = fmtp.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("apt").then(|| parse_pt(v))?
            });
            if let Some(apt) = apt {
                rtx.push((pt, apt));
            }
            continue;
        }
        let fb = |want: &[&str]| {
            feedback.iter().any(|(r, rest)| {
                r.covers(pt) && rest.split_ascii_whitespace().eq(want.iter().copied())
            })
        };
        codecs.push(OfferedCodec {
            pt,
            clock_rate,
            channels,
            rtx_pt: None,
            nack: fb(&["nack"]),
            pli: fb(&["nack", "pli"]),
            fir: fb(&["ccm", "fir"]),
            transport_cc: fb(&["transport-cc"]),
            fmtp,
            name,
        });
    }
    for (rtx_pt, apt) in rtx {
        if let Some(c) = codecs
            .iter_mut()
            .find(|c| c.pt == apt && c.rtx_pt.is_none())
        {
            c.rtx_pt = Some(rtx_pt);
        }
    }
    codecs
}
