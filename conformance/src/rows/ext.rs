//! The WHEP extension rows (checklist §1c, EXT-01..EXT-16): server-sent events
//! (draft-ietf-wish-whep-02 §4.9.1) and layer selection (§4.9.2), found through the
//! `Link` headers of the 201 and used at the URLs they name. A server that links
//! neither gets "not applicable" rows, never failures: the extensions are optional.
//!
//! With `--publish-url` the runner republishes its source as three simulcast layers
//! (q 320×180, h 640×360, f 1280×720) for the `layers` event and the layer switch,
//! and stops and restarts it for the `active`/`inactive` rows. Every read of an event
//! stream is bounded to a few seconds.

use std::time::Duration;

use serde_json::Value;
use wishd::client::{
    HttpResponse, PublisherOptions, ReceivedPacket, SimulcastLayer, VideoCodec, WhepViewer,
    resolve_url,
};
use wishd::core::{CodecKind, MediaKind, frame_size};

use super::{Context, Session, m_sections, short};
use crate::{Level, Mode, Outcome, Report};
use wishd::client::{EventMessage as Message, EventStream as Stream};

const SSE_REL: &str = "urn:ietf:params:whep:ext:core:server-sent-events";
const LAYER_REL: &str = "urn:ietf:params:whep:ext:core:layer";
/// The event types the texts define (whep-02 §4.9.1.1–6).
const KNOWN_EVENTS: [&str; 6] = [
    "active",
    "inactive",
    "layers",
    "reconnect",
    "viewercount",
    "scte35",
];
/// Relation types of draft-murillo-whep-02 (March 2023), before `ext:core:*`.
const OLD_RELS: [&str; 3] = [
    "urn:ietf:params:whep:ext:sse",
    "urn:ietf:params:whep:ext:layer",
    "urn:ietf:params:whep:ext:server-sent-events",
];
const NOT_OFFERED: &str = "not applicable (extension not offered)";
const JSON: (&str, &str) = ("Content-Type", "application/json");
/// How long the runner waits for the answer to a GET on an event stream.
const OPEN: Duration = Duration::from_secs(5);

const REQ_01: &str =
    "SSE is announced in the 201: Link rel=…:core:server-sent-events, events ⊆ the defined types";
const REQ_02: &str = "POST of a JSON array of event types to the SSE URL: 201 + Location";
const REQ_03: &str = "an unsupported event type: 400, no stream created (events doc, proposed)";
const REQ_04: &str =
    "GET on the stream: 200 text/event-stream; each message one event: and one JSON data: line";
const REQ_05: &str = "a stream carries only the event types it asked for";
const REQ_06: &str = "DELETE on the stream URL: 2xx, then GET is 404";
const REQ_07: &str = "the session's end ends its event streams (GET then 404)";
const REQ_08: &str = "active ({}) is sent when the source goes live while a stream listens";
const REQ_09: &str = "inactive is never the first event when nothing was live at creation";
const REQ_10: &str =
    "layers: JSON keyed by m-line, each layer with rid/spatialLayerId/temporalLayerId";
const REQ_11: &str = "reconnect ({} or {\"url\"}) is sent when the server drains";
const REQ_12: &str = "viewercount {\"viewercount\": n} counts two viewers";
const REQ_13: &str = "scte35 data is a base64 splice_info_section";
const REQ_14: &str = "layer selection is announced by Link rel=…:core:layer, with SSE and `layers`";
const REQ_15: &str = "layer POST {mediaId, rid}: 200 and the received picture gets smaller";
const REQ_15_UNKNOWN: &str = "layer POST with an unknown rid: 4xx";
const REQ_15_AUTO: &str = "layer POST {mediaId} alone: 200 (back to automatic selection)";
const REQ_16: &str = "older extension URNs (…:ext:sse, …:ext:layer)";

/// The rows of this group, pushed into the report in id order at the end.
#[derive(Default)]
struct Rows {
    rows: Vec<(&'static str, Level, &'static str, Outcome, String)>,
    notes: Vec<String>,
}

impl Rows {
    fn push(
        &mut self,
        id: &'static str,
        level: Level,
        req: &'static str,
        outcome: Outcome,
        detail: impl Into<String>,
    ) {
        self.rows.push((id, level, req, outcome, detail.into()));
    }

    fn verdict(
        &mut self,
        id: &'static str,
        level: Level,
        req: &'static str,
        r: Result<String, String>,
    ) {
        match r {
            Ok(d) => self.push(id, level, req, Outcome::Pass, d),
            Err(d) => self.push(id, level, req, Outcome::Fail, d),
        }
    }

    fn skip(&mut self, id: &'static str, level: Level, req: &'static str, why: &str) {
        self.push(id, level, req, Outcome::Skip, why);
    }

    /// Skips every row that has not run yet.
    fn skip_rest(&mut self, why: &str) {
        for (id, level, req) in ALL {
            if !self.rows.iter().any(|r| r.0 == id && r.2 == req) {
                self.skip(id, level, req, why);
            }
        }
    }

    fn flush(mut self, report: &mut Report) {
        self.rows.sort_by_key(|r| r.0);
        for (id, level, req, outcome, detail) in self.rows {
            report.push(id, level, req, outcome, detail);
        }
        for n in self.notes {
            report.note(n);
        }
    }
}

/// Every row of the group, for the skips.
const ALL: [(&str, Level, &str); 18] = [
    ("EXT-01", Level::Must, REQ_01),
    ("EXT-02", Level::Must, REQ_02),
    ("EXT-03", Level::Should, REQ_03),
    ("EXT-04", Level::Must, REQ_04),
    ("EXT-05", Level::Must, REQ_05),
    ("EXT-06", Level::Must, REQ_06),
    ("EXT-07", Level::Must, REQ_07),
    ("EXT-08", Level::Should, REQ_08),
    ("EXT-09", Level::Must, REQ_09),
    ("EXT-10", Level::Must, REQ_10),
    ("EXT-11", Level::Should, REQ_11),
    ("EXT-12", Level::May, REQ_12),
    ("EXT-13", Level::May, REQ_13),
    ("EXT-14", Level::Must, REQ_14),
    ("EXT-15", Level::Must, REQ_15),
    ("EXT-15", Level::Should, REQ_15_UNKNOWN),
    ("EXT-15", Level::Should, REQ_15_AUTO),
    (
        "EXT-16",
        Level::May,
        "older extension URNs (…:ext:sse, …:ext:layer)",
    ),
];

/// One link-value of a `Link` header (RFC 8288): the target as written and the
/// parameters (names lowercased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Link {
    target: String,
    params: Vec<(String, String)>,
}

impl Link {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_rel(&self, rel: &str) -> bool {
        self.param("rel").is_some_and(|v| {
            v.split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case(rel))
        })
    }

    /// The `events` attribute as a list, if there is one.
    fn events(&self) -> Option<Vec<String>> {
        self.param("events").map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }
}

/// `s` split at `sep` where it is neither inside a quoted string nor inside `<…>`.
fn split_outside(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            c if c == sep && !quoted && !angle => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Every link-value of the response's `Link` headers.
fn links(r: &HttpResponse) -> Vec<Link> {
    let mut out = Vec::new();
    for (_, v) in r.headers.iter().filter(|(k, _)| k == "link") {
        for part in split_outside(v, ',') {
            let Some((target, params)) = part
                .trim()
                .strip_prefix('<')
                .and_then(|p| p.split_once('>'))
            else {
                continue;
            };
            let params = split_outside(params, ';')
                .into_iter()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    let v = v.trim();
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .map_or_else(|| v.to_owned(), |v| v.replace("\\\"", "\""));
                    (k.trim().to_ascii_lowercase(), v)
                })
                .collect();
            out.push(Link {
                target: target.trim().to_owned(),
                params,
            });
        }
    }
    out
}

/// The index of the video m-line of `sdp`, as a `mediaId` names it.
fn video_media_id(sdp: &str) -> Option<String> {
    m_sections(sdp)
        .iter()
        .position(|m| m[0].starts_with("m=video"))
        .map(|i| i.to_string())
}

/// The names a `layers` object may key an m-line by: its index or its mid.
fn m_line_ids(sdp: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, m) in m_sections(sdp).iter().enumerate() {
        ids.push(i.to_string());
        if let Some(mid) = m.iter().find_map(|l| l.strip_prefix("a=mid:")) {
            ids.push(mid.to_owned());
        }
    }
    ids
}

/// The event types of the messages, in order.
fn kinds(messages: &[Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.event.clone().unwrap_or_else(|| "(none)".into()))
        .collect()
}

fn of_kind<'m>(messages: &'m [Message], kind: &str) -> impl Iterator<Item = &'m Message> {
    messages
        .iter()
        .filter(move |m| m.event.as_deref() == Some(kind))
}

fn is_empty_object(m: &Message) -> bool {
    m.data.len() == 1
        && serde_json::from_str::<Value>(&m.data[0])
            .is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
}

fn viewercount(m: &Message) -> Option<u64> {
    let data = m.data.first()?;
    serde_json::from_str::<Value>(data).ok()?["viewercount"].as_u64()
}

/// EXT-04's framing: every message has an `event:` and exactly one `data:` line,
/// which holds JSON (but for `scte35`, whose data is base64).
fn framing(messages: &[Message]) -> Result<(), String> {
    for m in messages {
        if m.event.is_none() {
            return Err(format!("a message without event: ({:?})", m.data));
        }
        if m.data.len() != 1 {
            return Err(format!(
                "event: {} with {} data: lines",
                m.event.as_deref().unwrap_or(""),
                m.data.len()
            ));
        }
        if m.event.as_deref() != Some("scte35")
            && serde_json::from_str::<Value>(&m.data[0]).is_err()
        {
            return Err(format!(
                "event: {} data is not JSON: {}",
                m.event.as_deref().unwrap_or(""),
                short(&m.data[0])
            ));
        }
    }
    Ok(())
}

/// EXT-10: a `layers` data object is keyed by m-lines of the session (`ids`) and holds
/// arrays of layer objects with at least one of rid, spatialLayerId, temporalLayerId
/// and numeric sizes and rates. Returns a summary and the layer count of the largest
/// list.
fn check_layers(data: &str, ids: &[String]) -> Result<(String, usize), String> {
    let v: Value =
        serde_json::from_str(data).map_err(|e| format!("not JSON ({e}): {}", short(data)))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("not an object: {}", short(data)))?;
    if obj.is_empty() {
        return Err("an empty object".into());
    }
    let mut summary = Vec::new();
    let mut most = 0;
    for (key, list) in obj {
        if !ids.contains(key) {
            return Err(format!("key {key:?} is no m-line of the session"));
        }
        let list = list
            .as_array()
            .ok_or_else(|| format!("{key:?} is not an array"))?;
        most = most.max(list.len());
        let mut layers = Vec::new();
        for l in list {
            let o = l
                .as_object()
                .ok_or_else(|| format!("a layer that is no object: {l}"))?;
            let rid = o.get("rid");
            if rid.is_some_and(|r| !r.is_string()) {
                return Err(format!("rid is not a string: {l}"));
            }
            let ids_present = rid.is_some()
                || o.contains_key("spatialLayerId")
                || o.contains_key("temporalLayerId");
            if !ids_present {
                return Err(format!(
                    "a layer without rid, spatialLayerId or temporalLayerId: {l}"
                ));
            }
            for f in [
                "spatialLayerId",
                "temporalLayerId",
                "bitrate",
                "targetBitrate",
                "width",
                "height",
            ] {
                if o.get(f).is_some_and(|x| !x.is_u64()) {
                    return Err(format!("{f} is not a non-negative integer: {l}"));
                }
            }
            let name = rid
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| o.get("spatialLayerId").map(|s| format!("S{s}")))
                .unwrap_or_else(|| "T".into());
            let size = match (o.get("width"), o.get("height")) {
                (Some(w), Some(h)) => format!(" {w}x{h}"),
                _ => String::new(),
            };
            let rate = o
                .get("bitrate")
                .and_then(Value::as_u64)
                .map_or(String::new(), |b| format!(" {} kbit/s", b / 1000));
            layers.push(format!("{name}{size}{rate}"));
        }
        summary.push(format!("\"{key}\": {}", layers.join(", ")));
    }
    Ok((summary.join("; "), most))
}

/// The picture width of the newest video keyframe in `pk` that says one.
fn last_width(pk: &[ReceivedPacket], codec: CodecKind) -> Option<u32> {
    pk.iter()
        .rev()
        .filter(|p| p.kind == MediaKind::Video)
        .find_map(|p| frame_size(codec, &p.payload))
        .map(|(w, _)| w)
}

fn codec_kind(c: Option<VideoCodec>) -> CodecKind {
    match c {
        Some(VideoCodec::H264) => CodecKind::H264,
        Some(VideoCodec::H265) => CodecKind::H265,
        Some(VideoCodec::Vp8) => CodecKind::Vp8,
        Some(VideoCodec::Vp9) => CodecKind::Vp9,
        Some(VideoCodec::Av1) => CodecKind::Av1,
        None => CodecKind::Other,
    }
}

/// The runner's simulcast source: the usual three layers, lowest first.
fn simulcast_source() -> PublisherOptions {
    PublisherOptions {
        simulcast: Some(SimulcastLayer::three()),
        ..PublisherOptions::default()
    }
}

/// What the runner knows of the stream's layers.
#[derive(Default)]
struct Layers {
    /// The runner publishes simulcast and the server's answer accepted it.
    ours: bool,
    /// Why there is no simulcast source, if there is none.
    why_not: Option<String>,
    /// The lowest layer's rid, from what the runner publishes or a `layers` event.
    lowest: Option<String>,
}

/// The lowest layer (by width, then bit rate) with a rid, in a `layers` data object.
fn lowest_rid(data: &str) -> Option<String> {
    let v: Value = serde_json::from_str(data).ok()?;
    v.as_object()?
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|l| {
            let rid = l["rid"].as_str()?;
            let key = (
                l["width"].as_u64().unwrap_or(u64::MAX),
                l["bitrate"].as_u64().unwrap_or(u64::MAX),
            );
            Some((key, rid.to_owned()))
        })
        .min()
        .map(|(_, rid)| rid)
}

/// With `--publish-url`: the source becomes the three simulcast layers.
async fn publish_simulcast(ctx: &mut Context<'_>, rows: &mut Rows) -> Layers {
    if ctx.opts.publish_url.is_none() {
        return Layers {
            why_not: Some("the runner publishes no source: give --publish-url".into()),
            ..Layers::default()
        };
    }
    ctx.stop_source().await;
    match ctx.start_source_with(simulcast_source()).await {
        Ok(()) => {
            let accepted = ctx
                .source_answer()
                .is_some_and(|a| a.lines().any(|l| l.starts_with("a=simulcast:")));
            Layers {
                ours: accepted,
                why_not: (!accepted).then(|| "the server declined the source's simulcast".into()),
                lowest: accepted.then(|| "q".into()),
            }
        }
        Err(e) => {
            rows.notes
                .push(format!("simulcast publisher at --publish-url failed: {e}"));
            if let Err(e) = ctx.start_source().await {
                rows.notes
                    .push(format!("republishing at --publish-url failed: {e}"));
            }
            Layers {
                why_not: Some(format!("the simulcast publisher failed: {e}")),
                ..Layers::default()
            }
        }
    }
}

/// Runs the extension rows (WHEP mode only).
pub async fn run(ctx: &mut Context<'_>, report: &mut Report) {
    if ctx.opts.mode != Mode::Whep {
        return;
    }
    let mut rows = Rows::default();
    if ctx.no_source {
        rows.skip_rest("the stream has no source: give --publish-url");
    } else {
        let mut layers = publish_simulcast(ctx, &mut rows).await;
        with_source(ctx, &mut rows, &mut layers).await;
        if ctx.opts.publish_url.is_some() {
            ctx.stop_source().await;
            if let Err(e) = ctx.start_source().await {
                rows.notes
                    .push(format!("republishing at --publish-url failed: {e}"));
            }
        }
    }
    rows.flush(report);
}

/// The rows, with the stream live.
async fn with_source(ctx: &mut Context<'_>, rows: &mut Rows, layers: &mut Layers) {
    rows.skip(
        "EXT-11",
        Level::Should,
        REQ_11,
        "not applicable: needs the server to drain (shut down or move viewers), \
         which a black-box runner cannot trigger",
    );
    let s1 = match ctx.create().await {
        Ok(s) => s,
        Err(e) => {
            rows.skip_rest(&format!("no session: {}", e.reason));
            return;
        }
    };
    let all = links(&s1.response);
    let old: Vec<&str> = all
        .iter()
        .flat_map(|l| OLD_RELS.iter().copied().filter(|r| l.has_rel(r)))
        .collect();
    rows.skip(
        "EXT-16",
        Level::May,
        REQ_16,
        &format!(
            "not applicable: a compatibility note; the 201 links {}",
            if old.is_empty() {
                "no older URN".to_owned()
            } else {
                format!("the older {}", old.join(", "))
            }
        ),
    );
    let sse_link = all.iter().find(|l| l.has_rel(SSE_REL)).cloned();
    let layer_link = all.iter().find(|l| l.has_rel(LAYER_REL)).cloned();
    let base = ctx.opts.url.clone();
    let advertised = sse_link.as_ref().and_then(Link::events);
    let offers = |kind: &str| {
        advertised
            .as_ref()
            .is_none_or(|e| e.iter().any(|x| x == kind))
    };

    // EXT-01, EXT-13, EXT-14: what the 201 says.
    match &sse_link {
        None => rows.skip("EXT-01", Level::Must, REQ_01, NOT_OFFERED),
        Some(l) => {
            let unknown: Vec<&String> = advertised
                .iter()
                .flatten()
                .filter(|e| !KNOWN_EVENTS.contains(&e.as_str()))
                .collect();
            let detail = format!(
                "<{}>; events {}",
                l.target,
                l.param("events")
                    .map_or("absent".to_owned(), |e| format!("\"{e}\""))
            );
            rows.verdict(
                "EXT-01",
                Level::Must,
                REQ_01,
                if l.target.is_empty() {
                    Err(format!("empty target: {detail}"))
                } else if !unknown.is_empty() {
                    Err(format!("undefined event types {unknown:?}: {detail}"))
                } else {
                    Ok(detail)
                },
            );
        }
    }
    rows.skip(
        "EXT-13",
        Level::May,
        REQ_13,
        if sse_link.is_none() {
            NOT_OFFERED
        } else if advertised
            .as_ref()
            .is_some_and(|e| e.iter().any(|x| x == "scte35"))
        {
            "not applicable: the runner's source carries no SCTE-35 markers to relay"
        } else {
            "not applicable: scte35 is not advertised (and the runner's source carries no SCTE-35)"
        },
    );
    match &layer_link {
        None => rows.skip("EXT-14", Level::Must, REQ_14, NOT_OFFERED),
        Some(l) => {
            let detail = format!(
                "<{}>; SSE Link {}; events {}",
                l.target,
                if sse_link.is_some() {
                    "present"
                } else {
                    "missing"
                },
                advertised
                    .as_ref()
                    .map_or("attribute absent".to_owned(), |e| e.join(","))
            );
            rows.verdict(
                "EXT-14",
                Level::Must,
                REQ_14,
                if sse_link.is_some() && offers("layers") {
                    Ok(detail)
                } else {
                    Err(detail)
                },
            );
        }
    }
    let sse_url = sse_link.as_ref().map(|l| resolve_url(&base, &l.target));
    let layer_url = layer_link.as_ref().map(|l| resolve_url(&base, &l.target));

    // EXT-02, 03, 04, 06, 10: a stream of active and layers.
    match &sse_url {
        Some(url) => {
            let mut want: Vec<&str> = ["active", "layers"]
                .into_iter()
                .filter(|k| offers(k))
                .collect();
            if want.is_empty() {
                want = advertised
                    .iter()
                    .flatten()
                    .take(1)
                    .map(String::as_str)
                    .collect();
            }
            first_stream(ctx, rows, url, &want, &s1, layers).await;
        }
        None => {
            for (id, level, req) in [
                ("EXT-02", Level::Must, REQ_02),
                ("EXT-03", Level::Should, REQ_03),
                ("EXT-04", Level::Must, REQ_04),
                ("EXT-06", Level::Must, REQ_06),
                ("EXT-10", Level::Must, REQ_10),
            ] {
                rows.skip(id, level, req, NOT_OFFERED);
            }
        }
    }

    // EXT-05, 12: a stream of viewercount alone while a second viewer joins.
    let one_kind = if offers("viewercount") {
        Some("viewercount".to_owned())
    } else {
        advertised
            .iter()
            .flatten()
            .find(|k| !["active", "layers"].contains(&k.as_str()))
            .cloned()
    };
    let mut counting = match (&sse_url, &one_kind) {
        (Some(url), Some(kind)) => match subscribe(ctx, url, &[kind.as_str()]).await {
            Ok((stream_url, stream)) => Some((stream_url, stream)),
            Err(e) => {
                rows.push("EXT-05", Level::Must, REQ_05, Outcome::Fail, &e);
                None
            }
        },
        (Some(_), None) => {
            rows.skip(
                "EXT-05",
                Level::Must,
                REQ_05,
                "no event type besides active/layers is advertised to filter on",
            );
            None
        }
        (None, _) => {
            rows.skip("EXT-05", Level::Must, REQ_05, NOT_OFFERED);
            None
        }
    };
    let second = Second::join(ctx).await;
    if let Err(e) = &second {
        rows.notes.push(format!("second viewer: {e}"));
    }
    match &mut counting {
        Some((_, stream)) => {
            let kind = one_kind.clone().unwrap_or_default();
            let counted = stream
                .read_until(Duration::from_secs(3), |m| {
                    of_kind(m, "viewercount").any(|e| viewercount(e).is_some_and(|n| n >= 2))
                })
                .await;
            let messages = stream.messages();
            let seen = kinds(&messages);
            let stray: Vec<&String> = seen.iter().filter(|k| **k != kind).collect();
            rows.verdict(
                "EXT-05",
                Level::Must,
                REQ_05,
                if stray.is_empty() {
                    Ok(format!(
                        "asked for [\"{kind}\"]: {} messages, all {kind}",
                        seen.len()
                    ))
                } else {
                    Err(format!("asked for [\"{kind}\"], got {seen:?}"))
                },
            );
            if kind == "viewercount" {
                let counts: Vec<String> = of_kind(&messages, "viewercount")
                    .map(|m| m.data.join("|"))
                    .collect();
                rows.verdict(
                    "EXT-12",
                    Level::May,
                    REQ_12,
                    if counted {
                        Ok(format!("two viewers: {}", counts.join(" ")))
                    } else {
                        Err(format!("two viewers, in 3 s: {counts:?}"))
                    },
                );
            } else {
                rows.skip(
                    "EXT-12",
                    Level::May,
                    REQ_12,
                    "viewercount is not advertised",
                );
            }
        }
        None => rows.skip(
            "EXT-12",
            Level::May,
            REQ_12,
            if sse_url.is_none() {
                NOT_OFFERED
            } else {
                "no viewercount stream"
            },
        ),
    }

    // EXT-15: the layer switch.
    match &layer_url {
        Some(url) => layer_rows(ctx, rows, &s1, url, second.as_ref().ok(), layers).await,
        None => {
            rows.skip("EXT-15", Level::Must, REQ_15, NOT_OFFERED);
            rows.skip("EXT-15", Level::Should, REQ_15_UNKNOWN, NOT_OFFERED);
            rows.skip("EXT-15", Level::Should, REQ_15_AUTO, NOT_OFFERED);
        }
    }

    // EXT-07: the session's end ends its streams.
    let deleted = ctx.delete(&s1).await;
    match counting {
        Some((stream_url, mut stream)) => {
            let ended = stream.read_for(Duration::from_secs(2)).await;
            let again = get_status(ctx, &stream_url).await;
            rows.verdict(
                "EXT-07",
                Level::Must,
                REQ_07,
                match again {
                    Ok(s) if (s == 404 || s == 410) && deleted.is_some_and(|d| d < 300) => {
                        Ok(format!(
                            "DELETE S → {}; the open GET {}; GET → {s}",
                            deleted.unwrap_or(0),
                            if ended { "ended" } else { "stayed open 2 s" }
                        ))
                    }
                    Ok(s) => Err(format!(
                        "DELETE S → {}; GET of the stream → {s}",
                        deleted.map_or("no answer".to_owned(), |d| d.to_string())
                    )),
                    Err(e) => Err(e),
                },
            );
        }
        None => rows.skip(
            "EXT-07",
            Level::Must,
            REQ_07,
            if sse_url.is_none() {
                NOT_OFFERED
            } else {
                "no event stream to watch"
            },
        ),
    }
    if let Ok(s) = second {
        s.leave(ctx).await;
    }

    // EXT-08, 09: the source leaves, comes back and leaves again.
    match &sse_url {
        Some(_) => source_cycle(ctx, rows, &advertised).await,
        None => {
            rows.skip("EXT-08", Level::Should, REQ_08, NOT_OFFERED);
            rows.skip("EXT-09", Level::Must, REQ_09, NOT_OFFERED);
        }
    }
}

/// POSTs `kinds` to the SSE URL `url` and opens the stream: its absolute URL and the
/// open GET, or why not.
async fn subscribe(
    ctx: &Context<'_>,
    url: &str,
    kinds: &[&str],
) -> Result<(String, Stream), String> {
    let body = serde_json::to_string(kinds).unwrap_or_default();
    let r = ctx
        .request("POST", url, &[JSON], body.as_bytes())
        .await
        .map_err(|e| format!("POST {body}: {e}"))?;
    let location = match (r.status, r.header("location")) {
        (201, Some(l)) => resolve_url(url, l),
        (s, l) => {
            return Err(format!(
                "POST {body} → {s}, Location {l:?}: {}",
                short(&r.text())
            ));
        }
    };
    let stream = get(ctx, &location).await?;
    if stream.status != 200 {
        return Err(format!(
            "GET of the stream → {} {}",
            stream.status,
            short(&stream.text())
        ));
    }
    Ok((location, stream))
}

/// GET on an event stream, as an `EventSource` sends it (plus the token, if any).
async fn get(ctx: &Context<'_>, url: &str) -> Result<Stream, String> {
    let bearer = ctx.bearer();
    let mut headers = vec![("Accept", "text/event-stream")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    Stream::open("GET", url, &headers, OPEN)
        .await
        .map_err(|e| e.to_string())
}

async fn get_status(ctx: &Context<'_>, url: &str) -> Result<u16, String> {
    get(ctx, url).await.map(|s| s.status)
}

/// EXT-02, 03, 04, 06, 10 on the first session's SSE URL.
async fn first_stream(
    ctx: &Context<'_>,
    rows: &mut Rows,
    url: &str,
    want: &[&str],
    s1: &Session,
    layers: &mut Layers,
) {
    // EXT-03 first: a refused POST must leave nothing behind.
    let bogus = ctx.request("POST", url, &[JSON], br#"["bogus"]"#).await;
    rows.verdict(
        "EXT-03",
        Level::Should,
        REQ_03,
        match bogus {
            Ok(r) => {
                let loc = r.header("location").map(str::to_owned);
                if let Some(l) = &loc {
                    let _ = ctx.request("DELETE", &resolve_url(url, l), &[], b"").await;
                }
                if r.status == 400 && loc.is_none() {
                    Ok(format!("[\"bogus\"] → 400 {}", short(&r.text())))
                } else {
                    Err(format!("[\"bogus\"] → {}, Location {loc:?}", r.status))
                }
            }
            Err(e) => Err(e.to_string()),
        },
    );
    let body = serde_json::to_string(want).unwrap_or_default();
    let r = ctx.request("POST", url, &[JSON], body.as_bytes()).await;
    let stream_url = match r {
        Ok(r) if r.status == 201 && r.header("location").is_some() => {
            let l = r.header("location").unwrap_or_default();
            rows.push(
                "EXT-02",
                Level::Must,
                REQ_02,
                Outcome::Pass,
                format!("{body} → 201, Location {l}"),
            );
            resolve_url(url, l)
        }
        other => {
            let d = match other {
                Ok(r) => format!(
                    "{body} → {}, Location {:?}: {}",
                    r.status,
                    r.header("location"),
                    short(&r.text())
                ),
                Err(e) => e.to_string(),
            };
            rows.push("EXT-02", Level::Must, REQ_02, Outcome::Fail, d);
            for (id, level, req) in [
                ("EXT-04", Level::Must, REQ_04),
                ("EXT-06", Level::Must, REQ_06),
                ("EXT-10", Level::Must, REQ_10),
            ] {
                rows.skip(id, level, req, "no event stream (EXT-02 failed)");
            }
            return;
        }
    };

    // EXT-04 and EXT-10: read until a layers event (or a first message).
    let mut stream = match get(ctx, &stream_url).await {
        Ok(s) => s,
        Err(e) => {
            rows.push("EXT-04", Level::Must, REQ_04, Outcome::Fail, &e);
            rows.skip("EXT-10", Level::Must, REQ_10, "no event stream");
            rows.skip("EXT-06", Level::Must, REQ_06, "no event stream");
            return;
        }
    };
    let ctype = stream.header("content-type").unwrap_or("").to_owned();
    let is_sse = ctype
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"));
    let wants_layers = want.contains(&"layers");
    let limit = Duration::from_secs(if wants_layers { 5 } else { 3 });
    if stream.status == 200 {
        stream
            .read_until(limit, |m| {
                if wants_layers {
                    of_kind(m, "layers").next().is_some()
                } else {
                    !m.is_empty()
                }
            })
            .await;
    }
    let messages = stream.messages();
    let seen = kinds(&messages);
    let framed = framing(&messages);
    rows.verdict(
        "EXT-04",
        Level::Must,
        REQ_04,
        if stream.status != 200 || !is_sse {
            Err(format!(
                "GET → {}, Content-Type {ctype:?} {}",
                stream.status,
                short(&stream.text())
            ))
        } else if let Err(e) = framed {
            Err(e)
        } else if messages.is_empty() {
            Ok(format!(
                "200 {ctype}; no message in {} s to check the framing of",
                limit.as_secs()
            ))
        } else {
            Ok(format!(
                "200 {ctype}; messages {seen:?}, one JSON data line each"
            ))
        },
    );
    let ids = m_line_ids(&s1.answer);
    let layer_events: Vec<&Message> = of_kind(&messages, "layers").collect();
    if !wants_layers {
        rows.skip(
            "EXT-10",
            Level::Must,
            REQ_10,
            "the layers event is not advertised",
        );
    } else if layer_events.is_empty() {
        rows.skip(
            "EXT-10",
            Level::Must,
            REQ_10,
            &format!(
                "no layers event in {} s (when it is sent is up to the server){}",
                limit.as_secs(),
                layers
                    .why_not
                    .as_ref()
                    .map_or(String::new(), |w| format!("; {w}"))
            ),
        );
    } else {
        let mut verdict = Ok((String::new(), 0));
        for e in &layer_events {
            verdict = match e.data.as_slice() {
                [d] => check_layers(d, &ids),
                _ => Err(format!("{} data lines", e.data.len())),
            };
            if verdict.is_err() {
                break;
            }
        }
        let last = layer_events.last().and_then(|e| e.data.first());
        if layers.lowest.is_none() {
            layers.lowest = last.and_then(|d| lowest_rid(d));
        }
        rows.verdict(
            "EXT-10",
            Level::Must,
            REQ_10,
            match verdict {
                Ok((summary, n)) if layers.ours && n < 2 => Err(format!(
                    "the source sends three simulcast layers, the event lists {n}: {summary}"
                )),
                Ok((summary, _)) => Ok(format!(
                    "{} layers events; {summary}{}",
                    layer_events.len(),
                    if layers.ours {
                        " (source: simulcast q, h, f)"
                    } else {
                        ""
                    }
                )),
                Err(e) => Err(e),
            },
        );
    }

    // EXT-06: DELETE the stream.
    let del = ctx.request("DELETE", &stream_url, &[], b"").await;
    let del = del.map(|r| r.status).unwrap_or(0);
    let ended = stream.read_for(Duration::from_secs(2)).await;
    drop(stream);
    let again = get_status(ctx, &stream_url).await;
    rows.verdict(
        "EXT-06",
        Level::Must,
        REQ_06,
        match again {
            Ok(404) if (200..300).contains(&del) => Ok(format!(
                "DELETE → {del}; the open GET {}; GET → 404",
                if ended { "ended" } else { "stayed open 2 s" }
            )),
            Ok(s) => Err(format!("DELETE → {del}; GET → {s}")),
            Err(e) => Err(format!("DELETE → {del}; GET: {e}")),
        },
    );
}

/// A second viewer of the stream: a str0m peer when media rows run (it also shows
/// the layer switch), else a plain session.
enum Second {
    Peer(WhepViewer),
    Plain(Session),
}

impl Second {
    async fn join(ctx: &Context<'_>) -> Result<Second, String> {
        if ctx.opts.media {
            WhepViewer::connect(&ctx.opts.url, ctx.viewer_options(ctx.opts.token.clone()))
                .await
                .map(Second::Peer)
                .map_err(|e| e.to_string())
        } else {
            ctx.create().await.map(Second::Plain).map_err(|e| e.reason)
        }
    }

    async fn leave(self, ctx: &Context<'_>) {
        match self {
            Second::Peer(v) => {
                let _ = v.delete().await;
            }
            Second::Plain(s) => {
                ctx.delete(&s).await;
            }
        }
    }
}

async fn post_layer(ctx: &Context<'_>, url: &str, body: &str) -> Result<HttpResponse, String> {
    ctx.request("POST", url, &[JSON], body.as_bytes())
        .await
        .map_err(|e| format!("POST {body}: {e}"))
}

/// EXT-15 on the first session's layer URL, and on the second viewer's when it is a
/// peer whose layer URL follows from its session URL as the first one's does (its own
/// 201 is not at hand): the switch first, so `Report::row("EXT-15")` is that row.
async fn layer_rows(
    ctx: &Context<'_>,
    rows: &mut Rows,
    s1: &Session,
    url: &str,
    second: Option<&Second>,
    layers: &Layers,
) {
    let s1_media = video_media_id(&s1.offer).unwrap_or_else(|| "0".into());

    // The switch: on the peer (the picture is seen), else on the first session.
    let peer = match second {
        Some(Second::Peer(v)) => url
            .strip_prefix(s1.url.as_str())
            .map(|suffix| (v, format!("{}{suffix}", v.location()))),
        _ => None,
    };
    let (switch_url, media_id) = match &peer {
        Some((v, u)) => (
            u.clone(),
            video_media_id(v.offer_sdp()).unwrap_or_else(|| "0".into()),
        ),
        None => (url.to_owned(), s1_media.clone()),
    };
    match &layers.lowest {
        None => rows.skip(
            "EXT-15",
            Level::Must,
            REQ_15,
            layers
                .why_not
                .as_deref()
                .unwrap_or("no simulcast layer with a rid to choose"),
        ),
        Some(rid) => {
            let verdict =
                switch(ctx, &switch_url, &media_id, rid, peer.as_ref().map(|p| p.0)).await;
            let verdict = verdict.map(|d| match (&peer, second) {
                (Some(_), _) => d,
                (None, Some(Second::Plain(_))) => {
                    format!("{d} (picture not checked: --no-media)")
                }
                (None, Some(Second::Peer(_))) => format!(
                    "{d} (picture not checked: the layer URL does not extend the session URL)"
                ),
                (None, None) => format!("{d} (picture not checked: no second viewer)"),
            });
            rows.verdict("EXT-15", Level::Must, REQ_15, verdict);
        }
    }

    // An unknown rid.
    let body = format!(r#"{{"mediaId":"{s1_media}","rid":"nosuch"}}"#);
    rows.verdict(
        "EXT-15",
        Level::Should,
        REQ_15_UNKNOWN,
        match post_layer(ctx, url, &body).await {
            Ok(r) if (400..500).contains(&r.status) => {
                Ok(format!("{body} → {} {}", r.status, short(&r.text())))
            }
            Ok(r) => Err(format!("{body} → {} {}", r.status, short(&r.text()))),
            Err(e) => Err(e),
        },
    );

    // Back to automatic.
    let body = format!(r#"{{"mediaId":"{media_id}"}}"#);
    rows.verdict(
        "EXT-15",
        Level::Should,
        REQ_15_AUTO,
        match post_layer(ctx, &switch_url, &body).await {
            Ok(r) if r.status == 200 => Ok(format!("{body} → 200")),
            Ok(r) => Err(format!("{body} → {} {}", r.status, short(&r.text()))),
            Err(e) => Err(e),
        },
    );
}

/// POSTs the choice of `rid` and, with a peer, waits for its keyframes to get
/// narrower.
async fn switch(
    ctx: &Context<'_>,
    url: &str,
    media_id: &str,
    rid: &str,
    peer: Option<&WhepViewer>,
) -> Result<String, String> {
    let t = ctx.opts.timeout;
    let before = match peer {
        Some(v) => {
            let codec = codec_kind(v.video_codec());
            v.wait_connected(t)
                .await
                .map_err(|e| format!("the viewer did not connect: {e}"))?;
            v.wait_for(t, |pk| last_width(pk, codec).is_some())
                .await
                .map_err(|e| format!("no keyframe with a picture size before the switch: {e}"))?;
            last_width(&v.received(), codec)
        }
        None => None,
    };
    let body = format!(r#"{{"mediaId":"{media_id}","rid":"{rid}"}}"#);
    let r = post_layer(ctx, url, &body).await?;
    if r.status != 200 {
        return Err(format!("{body} → {} {}", r.status, short(&r.text())));
    }
    let (Some(v), Some(before)) = (peer, before) else {
        return Ok(format!("{body} → 200"));
    };
    let codec = codec_kind(v.video_codec());
    match v
        .wait_for(t, |pk| last_width(pk, codec).is_some_and(|w| w < before))
        .await
    {
        Ok(()) => Ok(format!(
            "{body} → 200; keyframe width {before} → {}",
            last_width(&v.received(), codec).unwrap_or(0)
        )),
        Err(_) => Err(format!(
            "{body} → 200, but the keyframes stayed {before} wide for {} s",
            t.as_secs()
        )),
    }
}

/// EXT-08 and EXT-09: a session made while the source is live; the source leaves; a
/// stream of active and inactive is opened (nothing is live: no inactive may come
/// first); the source comes back (active) and leaves again (inactive).
async fn source_cycle(ctx: &mut Context<'_>, rows: &mut Rows, advertised: &Option<Vec<String>>) {
    let offers = |kind: &str| {
        advertised
            .as_ref()
            .is_none_or(|e| e.iter().any(|x| x == kind))
    };
    if ctx.opts.publish_url.is_none() {
        let why = "needs --publish-url: the runner stops and starts the source";
        rows.skip("EXT-08", Level::Should, REQ_08, why);
        rows.skip("EXT-09", Level::Must, REQ_09, why);
        return;
    }
    if !offers("active") || !offers("inactive") {
        let why = "active and inactive are not both advertised";
        rows.skip("EXT-08", Level::Should, REQ_08, why);
        rows.skip("EXT-09", Level::Must, REQ_09, why);
        return;
    }
    let s = match ctx.create().await {
        Ok(s) => s,
        Err(e) => {
            let why = format!("no session: {}", e.reason);
            rows.skip("EXT-08", Level::Should, REQ_08, &why);
            rows.skip("EXT-09", Level::Must, REQ_09, &why);
            return;
        }
    };
    ctx.stop_source().await;
    let url = links(&s.response)
        .into_iter()
        .find(|l| l.has_rel(SSE_REL))
        .map(|l| resolve_url(&ctx.opts.url, &l.target));
    let opened = match &url {
        Some(u) => subscribe(ctx, u, &["active", "inactive"]).await,
        None => Err("this session's 201 has no SSE Link".into()),
    };
    let mut stream = match opened {
        Ok((_, stream)) => stream,
        Err(e) => {
            let why = format!("with the source gone: {e} (the server may end viewers with it)");
            rows.skip("EXT-08", Level::Should, REQ_08, &why);
            rows.skip("EXT-09", Level::Must, REQ_09, &why);
            ctx.delete(&s).await;
            return;
        }
    };
    let ended = stream.read_for(Duration::from_millis(1500)).await;
    let idle = kinds(&stream.messages());
    if ended {
        let why = format!("the stream ended with the source gone (events {idle:?})");
        rows.skip("EXT-08", Level::Should, REQ_08, &why);
        rows.skip("EXT-09", Level::Must, REQ_09, &why);
        ctx.delete(&s).await;
        return;
    }
    let republished = ctx.start_source().await;
    let actives = |m: &[Message]| of_kind(m, "active").count();
    let before = actives(&stream.messages());
    let live = match &republished {
        Ok(()) => {
            stream
                .read_until(Duration::from_secs(5), |m| actives(m) > before)
                .await
        }
        Err(_) => false,
    };
    let messages = stream.messages();
    rows.verdict(
        "EXT-08",
        Level::Should,
        REQ_08,
        match (&republished, live) {
            (Err(e), _) => Err(format!("republishing failed: {e}")),
            (Ok(()), false) => Err(format!(
                "no active within 5 s of the source going live (events {:?})",
                kinds(&messages)
            )),
            (Ok(()), true) => {
                let last = of_kind(&messages, "active").last();
                if last.is_some_and(is_empty_object) {
                    Ok("the source came back: event: active, data: {}".into())
                } else {
                    Err(format!(
                        "active with data {:?}",
                        last.map(|m| m.data.clone()).unwrap_or_default()
                    ))
                }
            }
        },
    );
    ctx.stop_source().await;
    let left = stream
        .read_until(Duration::from_secs(3), |m| {
            let k = kinds(m);
            let first_active = k.iter().position(|x| x == "active");
            first_active.is_some_and(|i| k[i..].iter().any(|x| x == "inactive"))
        })
        .await;
    let seen: Vec<String> = kinds(&stream.messages())
        .into_iter()
        .filter(|k| k == "active" || k == "inactive")
        .collect();
    rows.verdict(
        "EXT-09",
        Level::Must,
        REQ_09,
        if seen.first().is_some_and(|k| k == "inactive") {
            Err(format!(
                "inactive came first on a stream opened with nothing live: {seen:?}"
            ))
        } else {
            Ok(format!(
                "opened with nothing live, source up, source down: {seen:?}{}",
                if left {
                    ""
                } else {
                    " (no inactive within 3 s of the source leaving)"
                }
            ))
        },
    );
    drop(stream);
    ctx.delete(&s).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use wishd::client::parse_events;

    fn response(links: &[&str]) -> HttpResponse {
        HttpResponse {
            status: 201,
            headers: links
                .iter()
                .map(|l| ("link".to_owned(), (*l).to_owned()))
                .collect(),
            body: Vec::new(),
        }
    }

    #[test]
    fn links_split_outside_quotes_and_brackets() {
        let r = response(&[
            "<stun:stun.example.net>; rel=\"ice-server\", <http://h/s/1/sse>; \
             rel=\"urn:ietf:params:whep:ext:core:server-sent-events\"; events=\"active,layers\"",
            "<http://h/s/1/layer?a=1,2>; REL=urn:ietf:params:whep:ext:core:layer",
        ]);
        let l = links(&r);
        assert_eq!(l.len(), 3, "{l:?}");
        assert!(l[1].has_rel(SSE_REL));
        assert_eq!(
            l[1].events(),
            Some(vec!["active".to_owned(), "layers".to_owned()])
        );
        assert_eq!(l[2].target, "http://h/s/1/layer?a=1,2");
        assert!(l[2].has_rel(LAYER_REL));
        assert!(!l[0].has_rel(SSE_REL));
    }

    #[test]
    fn layers_need_an_id_field_and_an_m_line_key() {
        let ids = vec!["0".to_owned(), "1".to_owned()];
        let good = r#"{"1":[{"rid":"f","bitrate":2500000,"width":1280,"height":720},{"rid":"q","bitrate":0}]}"#;
        let (summary, n) = check_layers(good, &ids).unwrap();
        assert_eq!(n, 2);
        assert!(summary.contains("f 1280x720 2500 kbit/s"), "{summary}");
        assert_eq!(lowest_rid(good).as_deref(), Some("f"));
        assert_eq!(
            lowest_rid(r#"{"1":[{"rid":"f","width":1280},{"rid":"q","width":320}]}"#).as_deref(),
            Some("q")
        );
        assert!(check_layers(r#"{"1":[{"bitrate":1}]}"#, &ids).is_err());
        assert!(check_layers(r#"{"7":[{"rid":"q"}]}"#, &ids).is_err());
        assert!(check_layers(r#"{"1":[{"rid":"q","width":"320"}]}"#, &ids).is_err());
        assert!(check_layers("{1:[]}", &ids).is_err());
        assert!(check_layers(r#"{"0":[{"spatialLayerId":0}]}"#, &ids).is_ok());
    }

    #[test]
    fn framing_wants_one_json_data_line() {
        let ok = parse_events("event: active\ndata: {}\n\n");
        assert!(framing(&ok).is_ok());
        let two = parse_events("event: layers\ndata: {\ndata: }\n\n");
        assert!(framing(&two).is_err());
        let text = parse_events("event: viewercount\ndata: three\n\n");
        assert!(framing(&text).is_err());
        let scte35 = parse_events("event: scte35\ndata: /DA0AAAA\n\n");
        assert!(framing(&scte35).is_ok());
    }
}
