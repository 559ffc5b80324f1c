//! HTTP-level rows: plain requests to the endpoint and to the session URLs it hands
//! out. Every session created here is deleted again, so a server that allows one
//! publisher per stream takes the next POST.

use super::{Context, Session, attr_values, m_sections, session_lines, short};
use crate::{Level, Mode, Outcome, Report};

const FRAG: (&str, &str) = ("Content-Type", "application/trickle-ice-sdpfrag");

/// Picks the WHIP or the WHEP id of a row.
fn id(mode: Mode, whip: &'static str, whep: &'static str) -> &'static str {
    match mode {
        Mode::Whip => whip,
        Mode::Whep => whep,
    }
}

fn outcome(ok: bool) -> Outcome {
    if ok { Outcome::Pass } else { Outcome::Fail }
}

fn is_4xx(status: u16) -> bool {
    (400..500).contains(&status)
}

/// A trickle fragment for `answer`'s first m-line: one usable host candidate, one
/// mDNS and one TCP candidate (to be dropped silently), end-of-candidates.
fn trickle_frag(answer: &str) -> String {
    let m = m_sections(answer);
    let m_line = m
        .first()
        .and_then(|s| s.first())
        .copied()
        .unwrap_or("m=audio 9 UDP/TLS/RTP/SAVPF 0");
    let mid = attr_values(answer, "mid").first().copied().unwrap_or("0");
    format!(
        "a=ice-options:trickle ice2\r\n{m_line}\r\na=mid:{mid}\r\n\
         a=candidate:1 1 udp 2122260223 127.0.0.1 61764 typ host\r\n\
         a=candidate:2 1 udp 2122260223 4f3c1a2b-1111-2222-3333-444455556666.local 61765 typ host\r\n\
         a=candidate:3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active\r\n\
         a=end-of-candidates\r\n"
    )
}

/// A restart fragment with fresh client credentials.
fn restart_frag(answer: &str) -> String {
    let m = m_sections(answer);
    let m_line = m
        .first()
        .and_then(|s| s.first())
        .copied()
        .unwrap_or("m=audio 9 UDP/TLS/RTP/SAVPF 0");
    let mid = attr_values(answer, "mid").first().copied().unwrap_or("0");
    let ufrag: String = format!("r{:08x}", rand::random::<u32>());
    let pwd: String = format!("{:032x}", rand::random::<u128>());
    format!(
        "a=ice-options:trickle ice2\r\n{m_line}\r\na=mid:{mid}\r\n\
         a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n\
         a=candidate:1 1 udp 2122260223 127.0.0.1 61766 typ host\r\na=end-of-candidates\r\n"
    )
}

/// Runs the HTTP rows.
pub async fn run(ctx: &mut Context<'_>, report: &mut Report) {
    let mode = ctx.opts.mode;
    let url = ctx.opts.url.clone();

    if let (Mode::Whep, Some(idle)) = (mode, &ctx.opts.idle_url) {
        let r = ctx
            .request(
                "POST",
                idle,
                &[("Content-Type", "application/sdp")],
                ctx.offer().as_bytes(),
            )
            .await;
        match r {
            Ok(r) => no_source_row(report, &r),
            Err(e) => report.push(
                "WHEP-11",
                Level::Must,
                NO_SOURCE,
                Outcome::Fail,
                e.to_string(),
            ),
        }
    }
    // A session to look at, deleted before the next one is made.
    let first = ctx.create().await;
    let s = match first {
        Ok(s) => s,
        Err(e)
            if mode == Mode::Whep && e.status() == Some(409) && ctx.opts.publish_url.is_none() =>
        {
            // No source, and none asked for: a conformant answer (WHEP-11), but nothing
            // to play, so the session rows cannot run.
            if let Some(r) = &e.response
                && ctx.opts.idle_url.is_none()
            {
                no_source_row(report, r);
            }
            report.push(
                "WHEP-04",
                Level::Must,
                "POST of an offer: 201, application/sdp answer, Location",
                Outcome::Skip,
                "the stream has no source: give --publish-url to publish one first",
            );
            ctx.no_source = true;
            endpoint_rows(ctx, report, None).await;
            return;
        }
        Err(e) if mode == Mode::Whep && e.status() == Some(406) => {
            if let Some(r) = &e.response {
                super::counter_offer::run(ctx, report, r).await;
            }
            report.push(
                "WHEP-04",
                Level::Must,
                "POST of an offer: 201, application/sdp answer, Location",
                Outcome::Skip,
                "the server counter-offers (406): the rows of a 201 do not apply",
            );
            endpoint_rows(ctx, report, None).await;
            return;
        }
        Err(e) => {
            report.push(
                id(mode, "WHIP-03", "WHEP-04"),
                Level::Must,
                "POST of an offer: 201, application/sdp answer, Location",
                Outcome::Fail,
                &e.reason,
            );
            endpoint_rows(ctx, report, None).await;
            return;
        }
    };
    created_rows(ctx, report, &s);
    endpoint_rows(ctx, report, Some(&s)).await;
    session_rows(ctx, report, &s).await;
    patch_rows(ctx, report, &s).await;

    // DELETE with a stray If-Match, then again.
    let r = ctx
        .request("DELETE", &s.url, &[("If-Match", "\"bogus\"")], b"")
        .await;
    let first_status = r.as_ref().map(|r| r.status).unwrap_or(0);
    report.push(
        id(mode, "WHIP-11", "WHEP-15"),
        Level::Must,
        "DELETE ignores If-Match (no ICE session match needed)",
        outcome((200..300).contains(&first_status)),
        format!("DELETE with If-Match: \"bogus\" → {first_status}"),
    );
    let again = ctx.request("DELETE", &s.url, &[], b"").await;
    let again = again.map(|r| r.status).unwrap_or(0);
    report.push(
        id(mode, "WHIP-10", "WHEP-13"),
        Level::Must,
        "DELETE ends the session: 200, then the URL is gone (404)",
        outcome(first_status == 200 && again == 404),
        format!("DELETE → {first_status}, DELETE again → {again}"),
    );
    let r = ctx
        .request(
            "PATCH",
            &s.url,
            &[FRAG, ("If-Match", "*")],
            b"a=end-of-candidates\r\n",
        )
        .await
        .map(|r| r.status)
        .unwrap_or(0);
    report.push(
        "EXT-H5",
        Level::Must,
        "PATCH on an ended session is 404",
        outcome(r == 404),
        format!("PATCH after DELETE → {r}"),
    );

    offer_rows(ctx, report).await;
    auth_rows(ctx, report, &url).await;
}

const NO_SOURCE: &str = "no source yet: 409 Conflict with Retry-After (seconds)";

/// WHEP-11 from the answer to a POST for a stream without a source.
fn no_source_row(report: &mut Report, r: &wishd::client::HttpResponse) {
    let retry = r.header("retry-after").unwrap_or("").to_owned();
    let ok = r.status == 409 && retry.trim().parse::<u32>().is_ok();
    report.push(
        "WHEP-11",
        Level::Must,
        NO_SOURCE,
        outcome(ok),
        format!("{} Retry-After {retry:?}", r.status),
    );
}

/// Rows about the 201 itself.
fn created_rows(ctx: &Context<'_>, report: &mut Report, s: &Session) {
    let mode = ctx.opts.mode;
    let r = &s.response;
    let ctype = r.header("content-type").unwrap_or("");
    let ok = ctype
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        && !s.location.is_empty()
        && s.answer.starts_with("v=0");
    report.push(
        id(mode, "WHIP-03", "WHEP-04"),
        Level::Must,
        "POST of an offer: 201, application/sdp answer, Location",
        outcome(ok),
        format!("201, Content-Type {ctype}, Location {}", s.location),
    );
    if mode == Mode::Whep {
        report.push(
            "WHEP-03",
            Level::Must,
            "the player's offer is accepted (201) or counter-offered (406)",
            Outcome::Pass,
            "201",
        );
    }
    // JSEP answer: same m-lines in the same order, mids matching.
    let offer = &s.offer;
    let om: Vec<&str> = attr_values(offer, "mid");
    let am: Vec<&str> = attr_values(&s.answer, "mid");
    let (on, an) = (m_sections(offer).len(), m_sections(&s.answer).len());
    report.push(
        id(mode, "WHIP-04", "WHEP-04"),
        Level::Must,
        "answer has the offer's m-lines in order with matching mids",
        outcome(on == an && om == am),
        format!("offer {on} m-lines {om:?}, answer {an} m-lines {am:?}"),
    );
    let want = match mode {
        Mode::Whip => "recvonly",
        Mode::Whep => "sendonly",
    };
    let dirs: Vec<String> = m_sections(&s.answer)
        .iter()
        .map(|m| {
            m.iter()
                .find_map(|l| {
                    ["sendrecv", "sendonly", "recvonly", "inactive"]
                        .into_iter()
                        .find(|d| l.strip_prefix("a=") == Some(*d))
                })
                .unwrap_or("sendrecv")
                .to_owned()
        })
        .collect();
    report.push(
        id(mode, "WHIP-07", "WHEP-05"),
        Level::Must,
        &format!("every answer m-section is {want}"),
        outcome(!dirs.is_empty() && dirs.iter().all(|d| d == want)),
        format!("{dirs:?}"),
    );
    match &s.etag {
        Some(e) => report.push(
            id(mode, "WHIP-09", "WHEP-15"),
            Level::Must,
            "strong entity-tag for the ICE session in the 201",
            outcome(!e.starts_with("W/") && e.starts_with('"') && e.ends_with('"') && e.len() > 2),
            format!("ETag {e}"),
        ),
        None => report.push(
            id(mode, "WHIP-09", "WHEP-15"),
            Level::Must,
            "strong entity-tag for the ICE session in the 201",
            Outcome::Skip,
            "no ETag: the server does not claim ICE restarts",
        ),
    }
    // All candidates in the answer (no server trickle).
    let first = m_sections(&s.answer);
    let cands = first
        .first()
        .map(|m| m.iter().filter(|l| l.starts_with("a=candidate:")).count())
        .unwrap_or(0);
    report.push(
        id(mode, "WHIP-26", "WHEP-16"),
        Level::Must,
        "the answer carries the server's candidates",
        outcome(cands > 0),
        format!("{cands} a=candidate in the first m-section"),
    );
    // BUNDLE of every accepted mid, rtcp-mux everywhere.
    let groups = attr_values(&s.answer, "group");
    let bundle: Vec<&str> = groups
        .iter()
        .find_map(|g| g.strip_prefix("BUNDLE"))
        .map(|g| g.split_whitespace().collect())
        .unwrap_or_default();
    let accepted: Vec<&str> = m_sections(&s.answer)
        .iter()
        .filter(|m| m[0].split_whitespace().nth(1).is_none_or(|p| p != "0"))
        .filter_map(|m| m.iter().find_map(|l| l.strip_prefix("a=mid:")))
        .collect();
    report.push(
        id(mode, "WHIP-34", "WHEP-20"),
        Level::Must,
        "BUNDLE: one group with every accepted mid",
        outcome(!accepted.is_empty() && accepted.iter().all(|m| bundle.contains(m))),
        format!("BUNDLE {bundle:?}, accepted mids {accepted:?}"),
    );
    let secs = m_sections(&s.answer);
    let mux = secs.iter().all(|m| m.contains(&"a=rtcp-mux"));
    let mux_only = secs
        .iter()
        .filter(|m| m.contains(&"a=rtcp-mux-only"))
        .count();
    report.push(
        id(mode, "WHIP-35", "WHEP-20"),
        Level::Must,
        "RTP/RTCP multiplexing on every bundled m-section",
        outcome(mux),
        format!(
            "a=rtcp-mux in {} of {} m-sections; a=rtcp-mux-only in {mux_only} \
             (RFC 8858 §4.2 keeps rtcp-mux-only out of answers, so it is not required)",
            secs.iter().filter(|m| m.contains(&"a=rtcp-mux")).count(),
            secs.len()
        ),
    );
    // Link ice-server headers, if any, parse.
    let links: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "link")
        .flat_map(|(_, v)| v.split(','))
        .filter(|l| l.contains("ice-server"))
        .collect();
    if links.is_empty() {
        report.push(
            id(mode, "WHIP-42", "WHEP-24"),
            Level::May,
            "ICE servers as Link rel=ice-server in the 201",
            Outcome::Skip,
            "none sent",
        );
    } else {
        let bad: Vec<&str> = links.iter().copied().filter(|l| !link_ok(l)).collect();
        report.push(
            id(mode, "WHIP-42", "WHEP-24"),
            Level::May,
            "ICE servers as Link rel=ice-server in the 201",
            outcome(bad.is_empty()),
            if bad.is_empty() {
                format!("{} well-formed ice-server Links", links.len())
            } else {
                format!("malformed: {}", bad.join(" | "))
            },
        );
    }
}

/// `<stun:...>`, `rel="ice-server"`, TURN with quoted username and credential.
fn link_ok(link: &str) -> bool {
    let l = link.trim();
    let Some(end) = l.find('>') else { return false };
    let Some(uri) = l.strip_prefix('<').map(|u| &u[..end - 1]) else {
        return false;
    };
    let scheme = uri.split(':').next().unwrap_or("").to_ascii_lowercase();
    let params = &l[end + 1..];
    let rel = params.contains("rel=\"ice-server\"") || params.contains("rel=ice-server");
    let turn_creds = params.contains("username=\"") && params.contains("credential=\"");
    match scheme.as_str() {
        "stun" | "stuns" => rel,
        "turn" | "turns" => rel && turn_creds,
        _ => false,
    }
}

/// Rows on the endpoint URL itself.
async fn endpoint_rows(ctx: &Context<'_>, report: &mut Report, s: Option<&Session>) {
    let mode = ctx.opts.mode;
    let url = &ctx.opts.url;
    // GET → empty 2xx.
    let get = ctx.request("GET", url, &[], b"").await;
    let (gs, gbody, gtype) = match &get {
        Ok(r) => (
            r.status,
            r.body.len(),
            r.header("content-type").unwrap_or("").to_owned(),
        ),
        Err(e) => (0, 0, e.to_string()),
    };
    let session_get = match s {
        Some(s) => ctx
            .request("GET", &s.url, &[], b"")
            .await
            .ok()
            .map(|r| (r.status, r.body.len())),
        None => None,
    };
    let sess_ok = session_get.is_none_or(|(st, len)| (200..300).contains(&st) && len == 0);
    report.push(
        id(mode, "WHIP-01", "WHEP-01"),
        Level::Must,
        "GET on endpoint and session: 2xx, empty body",
        outcome((200..300).contains(&gs) && gbody == 0 && sess_ok),
        format!("GET endpoint → {gs} ({gbody} bytes); GET session → {session_get:?}"),
    );
    if mode == Mode::Whep {
        let head = ctx.request("HEAD", url, &[], b"").await;
        let (hs, htype, hlen) = match &head {
            Ok(r) => (
                r.status,
                r.header("content-type").unwrap_or("").to_owned(),
                r.body.len(),
            ),
            Err(e) => (0, e.to_string(), 0),
        };
        let sdp = |t: &str| t.to_ascii_lowercase().starts_with("application/sdp");
        report.push(
            "WHEP-02",
            Level::Should,
            "HEAD on the endpoint: 200, Content-Type application/sdp, no body (GET alike)",
            outcome(hs == 200 && sdp(&htype) && hlen == 0 && sdp(&gtype)),
            format!("HEAD → {hs} {htype:?}; GET type {gtype:?}"),
        );
    }
    // OPTIONS: Accept-Post.
    let opt = ctx.request("OPTIONS", url, &[], b"").await;
    let (os, accept_post) = match &opt {
        Ok(r) => (r.status, r.header("accept-post").unwrap_or("").to_owned()),
        Err(e) => (0, e.to_string()),
    };
    report.push(
        id(mode, "WHIP-15", "WHEP-14"),
        Level::Should,
        "OPTIONS answer carries Accept-Post: application/sdp",
        outcome(
            (200..300).contains(&os)
                && accept_post.to_ascii_lowercase().contains("application/sdp"),
        ),
        format!("OPTIONS → {os}, Accept-Post {accept_post:?}"),
    );
    // CORS preflight without a token.
    let pre = wishd::client::http_request_patient(
        "OPTIONS",
        url,
        &[
            ("Origin", "https://conformance.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        Vec::new(),
    )
    .await;
    match pre {
        Ok(r) => {
            let acao = r.header("access-control-allow-origin").unwrap_or("");
            let acam = r
                .header("access-control-allow-methods")
                .unwrap_or("")
                .to_ascii_uppercase();
            let acah = r
                .header("access-control-allow-headers")
                .unwrap_or("")
                .to_ascii_lowercase();
            let ok = (200..300).contains(&r.status)
                && !acao.is_empty()
                && acam.contains("POST")
                && (acah.contains('*')
                    || (acah.contains("authorization") && acah.contains("content-type")));
            report.push(
                id(mode, "WHIP-14", "WHEP-14"),
                Level::Must,
                "CORS preflight (no token): 2xx allowing POST, authorization, content-type",
                outcome(ok),
                format!("{} ACAO {acao:?} ACAM {acam:?} ACAH {acah:?}", r.status),
            );
            let ice = r
                .headers
                .iter()
                .any(|(k, v)| k == "link" && v.contains("ice-server"));
            report.push(
                id(mode, "WHIP-44", "WHEP-24"),
                Level::Should,
                "no ICE servers (TURN credentials) on a CORS preflight",
                outcome(!ice),
                if ice {
                    "preflight got ice-server Links"
                } else {
                    "none"
                },
            );
        }
        Err(e) => report.push(
            id(mode, "WHIP-14", "WHEP-14"),
            Level::Must,
            "CORS preflight (no token): 2xx allowing POST, authorization, content-type",
            Outcome::Fail,
            e.to_string(),
        ),
    }
    // Wrong media type, malformed SDP, media type parameters.
    let offer = ctx.offer();
    let r = ctx
        .request(
            "POST",
            url,
            &[("Content-Type", "text/plain")],
            offer.as_bytes(),
        )
        .await
        .map(|r| r.status)
        .unwrap_or(0);
    report.push(
        id(mode, "WHIP-05", "WHEP-10"),
        Level::Must,
        "POST that is not application/sdp is refused with a 4xx (415 expected)",
        outcome(is_4xx(r)),
        format!("text/plain → {r}"),
    );
    let r = ctx
        .request(
            "POST",
            url,
            &[("Content-Type", "application/sdp")],
            b"garbage",
        )
        .await;
    let (st, problem) = match &r {
        Ok(r) => (r.status, r.header("content-type").unwrap_or("").to_owned()),
        Err(e) => (0, e.to_string()),
    };
    report.push(
        id(mode, "WHIP-06", "WHEP-10"),
        Level::Must,
        "POST of malformed SDP is refused with a 4xx (400 expected)",
        outcome(is_4xx(st)),
        format!("garbage → {st}"),
    );
    report.push(
        "WHIP-02",
        Level::May,
        "error bodies are RFC 9457 problem details",
        if problem.starts_with("application/problem+json") {
            Outcome::Pass
        } else {
            Outcome::Skip
        },
        format!("{st} Content-Type {problem:?}"),
    );
    let r = ctx
        .request(
            "PUT",
            url,
            &[("Content-Type", "application/sdp")],
            offer.as_bytes(),
        )
        .await;
    match r {
        Ok(r) if r.status == 405 => {
            let allow = r.header("allow").unwrap_or("").to_owned();
            report.push(
                "EXT-H1",
                Level::Must,
                "a 405 lists the allowed methods in Allow",
                outcome(allow.to_ascii_uppercase().contains("POST")),
                format!("PUT → 405, Allow {allow:?}"),
            );
        }
        Ok(r) => report.push(
            "EXT-H1",
            Level::Must,
            "a 405 lists the allowed methods in Allow",
            if is_4xx(r.status) {
                Outcome::Skip
            } else {
                Outcome::Fail
            },
            format!("PUT → {} (no 405 to check)", r.status),
        ),
        Err(e) => report.push(
            "EXT-H1",
            Level::Must,
            "a 405 lists the allowed methods in Allow",
            Outcome::Fail,
            e.to_string(),
        ),
    }
}

/// Rows on the session URL: CORS exposure, OPTIONS, unguessable URLs.
async fn session_rows(ctx: &Context<'_>, report: &mut Report, s: &Session) {
    let mode = ctx.opts.mode;
    let pre = wishd::client::http_request_patient(
        "OPTIONS",
        &s.url,
        &[
            ("Origin", "https://conformance.example"),
            ("Access-Control-Request-Method", "PATCH"),
            (
                "Access-Control-Request-Headers",
                "if-match, content-type, authorization",
            ),
        ],
        Vec::new(),
    )
    .await;
    let (ok_pre, d_pre) = match &pre {
        Ok(r) => {
            let acam = r
                .header("access-control-allow-methods")
                .unwrap_or("")
                .to_ascii_uppercase();
            let acah = r
                .header("access-control-allow-headers")
                .unwrap_or("")
                .to_ascii_lowercase();
            (
                (200..300).contains(&r.status)
                    && acam.contains("PATCH")
                    && acam.contains("DELETE")
                    && (acah.contains('*') || acah.contains("if-match")),
                format!("session preflight {} ACAM {acam:?} ACAH {acah:?}", r.status),
            )
        }
        Err(e) => (false, e.to_string()),
    };
    // A POST with Origin exposes Location, ETag, Link (checked on an error answer:
    // CORS headers do not depend on the status).
    let r = ctx
        .request(
            "POST",
            &ctx.opts.url,
            &[
                ("Content-Type", "application/sdp"),
                ("Origin", "https://conformance.example"),
            ],
            b"garbage",
        )
        .await;
    let exposed = r
        .as_ref()
        .ok()
        .and_then(|r| r.header("access-control-expose-headers"))
        .unwrap_or("")
        .to_ascii_lowercase();
    let ok_exp = exposed.contains('*')
        || ["location", "etag", "link"]
            .iter()
            .all(|h| exposed.contains(h));
    report.push(
        id(mode, "WHIP-16", "WHEP-14"),
        Level::Should,
        "browsers can read Location/ETag/Link and PATCH/DELETE with If-Match",
        outcome(ok_pre && ok_exp),
        format!("Expose-Headers {exposed:?}; {d_pre}"),
    );
    let r = ctx.request("OPTIONS", &s.url, &[], b"").await;
    let ap = r
        .as_ref()
        .ok()
        .and_then(|r| r.header("accept-patch"))
        .unwrap_or("")
        .to_owned();
    report.push(
        "EXT-H2",
        Level::Should,
        "OPTIONS on a session names Accept-Patch: application/trickle-ice-sdpfrag",
        outcome(ap.contains("application/trickle-ice-sdpfrag")),
        format!("Accept-Patch {ap:?}"),
    );
    // Unguessable session URLs: the last path segment, against a second session.
    let seg = |u: &str| {
        u.trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let a = seg(&s.url);
    let bits = |x: &str| {
        let alnum = x.chars().filter(|c| c.is_ascii_alphanumeric()).count();
        if x.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            alnum * 4
        } else {
            alnum * 5
        }
    };
    report.push(
        id(mode, "WHIP-54", "WHEP-27"),
        Level::Should,
        "session URLs are hard to guess (≥ 122 random bits)",
        outcome(bits(&a) >= 122),
        format!("last segment {a:?}: about {} bits if random", bits(&a)),
    );
}

/// PATCH rows: media type, malformed, preconditions, trickle, restart.
async fn patch_rows(ctx: &Context<'_>, report: &mut Report, s: &Session) {
    let mode = ctx.opts.mode;
    let etag = s.etag.clone().unwrap_or_else(|| "\"none\"".into());
    let r = ctx
        .request(
            "PATCH",
            &s.url,
            &[("Content-Type", "application/sdp"), ("If-Match", &etag)],
            b"a=end-of-candidates\r\n",
        )
        .await;
    let (st, ap) = match &r {
        Ok(r) => (r.status, r.header("accept-patch").unwrap_or("").to_owned()),
        Err(e) => (0, e.to_string()),
    };
    report.push(
        id(mode, "WHIP-18", "WHEP-15"),
        Level::Must,
        "PATCH that is not trickle-ice-sdpfrag is refused with a 4xx (415)",
        outcome(is_4xx(st)),
        format!("application/sdp → {st}, Accept-Patch {ap:?}"),
    );
    let r = ctx
        .request("PATCH", &s.url, &[FRAG, ("If-Match", &etag)], b"zzz")
        .await
        .map(|r| r.status)
        .unwrap_or(0);
    report.push(
        id(mode, "WHIP-19", "WHEP-15"),
        Level::Must,
        "malformed SDP fragment is refused with a 4xx (400)",
        outcome(is_4xx(r)),
        format!("zzz → {r}"),
    );
    let trickle = trickle_frag(&s.answer);
    let none = ctx
        .request("PATCH", &s.url, &[FRAG], trickle.as_bytes())
        .await
        .map(|r| r.status)
        .unwrap_or(0);
    let stale = ctx
        .request(
            "PATCH",
            &s.url,
            &[FRAG, ("If-Match", "\"nope\"")],
            trickle.as_bytes(),
        )
        .await
        .map(|r| r.status)
        .unwrap_or(0);
    let trickle_supported = ![405, 501, 422].contains(&none);
    report.push(
        id(mode, "WHIP-22", "WHEP-15"),
        Level::Must,
        "trickle PATCH: no If-Match → 428, stale If-Match → 412",
        if trickle_supported {
            outcome(none == 428 && stale == 412)
        } else {
            Outcome::Skip
        },
        format!("no If-Match → {none}, If-Match \"nope\" → {stale}"),
    );
    let r = ctx
        .request(
            "PATCH",
            &s.url,
            &[FRAG, ("If-Match", &etag)],
            trickle.as_bytes(),
        )
        .await;
    let (st, has_etag, body) = match &r {
        Ok(r) => (r.status, r.header("etag").is_some(), r.body.len()),
        Err(_) => (0, false, 0),
    };
    report.push(
        id(mode, "WHIP-23", "WHEP-16"),
        Level::Must,
        "trickle PATCH with the ETag: 204, no body, no ETag",
        if trickle_supported {
            outcome(st == 204 && !has_etag && body == 0)
        } else {
            Outcome::Skip
        },
        format!("{st}, ETag {has_etag}, {body} bytes"),
    );
    report.push(
        id(mode, "WHIP-24", "WHEP-16"),
        Level::Must,
        "unusable candidates (mDNS, TCP) are dropped silently, the rest applied",
        if trickle_supported {
            outcome(st == 204)
        } else {
            Outcome::Skip
        },
        format!("fragment with a host, an mDNS and a TCP candidate → {st}"),
    );
    let r = ctx
        .request(
            "PATCH",
            &s.url,
            &[FRAG, ("If-Match", &format!("\"x\", {etag}"))],
            trickle.as_bytes(),
        )
        .await
        .map(|r| r.status)
        .unwrap_or(0);
    report.push(
        "EXT-H8",
        Level::Must,
        "If-Match is a list: one matching tag is a match",
        if trickle_supported {
            outcome(r == 204)
        } else {
            Outcome::Skip
        },
        format!("If-Match: \"x\", <etag> → {r}"),
    );

    // ICE restart.
    let frag = restart_frag(&s.answer);
    let r = ctx
        .request("PATCH", &s.url, &[FRAG, ("If-Match", "*")], frag.as_bytes())
        .await;
    let Ok(r) = r else {
        report.push(
            id(mode, "WHIP-28", "WHEP-17"),
            Level::Must,
            "ICE restart: 200 sdpfrag, new credentials, new ETag",
            Outcome::Fail,
            "no response",
        );
        return;
    };
    if [405, 501, 422].contains(&r.status) {
        report.push(
            id(mode, "WHIP-28", "WHEP-17"),
            Level::Must,
            "ICE restart: 200 sdpfrag, new credentials, new ETag",
            Outcome::Skip,
            format!("restart not supported ({})", r.status),
        );
        return;
    }
    let body = r.text();
    let new_etag = r.header("etag").unwrap_or("").to_owned();
    let new_ufrag = attr_values(&body, "ice-ufrag")
        .first()
        .map(|s| s.to_string());
    let old_ufrag = attr_values(&s.answer, "ice-ufrag")
        .first()
        .map(|s| s.to_string());
    let ok = r.status == 200
        && r.header("content-type")
            .is_some_and(|t| t.starts_with("application/trickle-ice-sdpfrag"))
        && !new_etag.is_empty()
        && new_etag != etag
        && new_ufrag.is_some()
        && new_ufrag != old_ufrag
        && !attr_values(&body, "ice-pwd").is_empty();
    report.push(
        id(mode, "WHIP-28", "WHEP-17"),
        Level::Must,
        "ICE restart: 200 sdpfrag, new credentials, new ETag",
        outcome(ok),
        format!(
            "{} {:?}, ETag {etag} → {new_etag}, ufrag {old_ufrag:?} → {new_ufrag:?}",
            r.status,
            r.header("content-type").unwrap_or("")
        ),
    );
    // Same ice-lite / ice-options lines.
    let want: Vec<&str> = session_lines(&s.answer)
        .into_iter()
        .chain(m_sections(&s.answer).first().cloned().unwrap_or_default())
        .filter(|l| {
            *l == "a=ice-lite" || l.starts_with("a=ice-options:") || l.starts_with("a=ice-pacing:")
        })
        .collect();
    let missing: Vec<&&str> = want
        .iter()
        .filter(|w| !body.lines().any(|b| b.trim() == **w))
        .collect();
    report.push(
        id(mode, "WHIP-30", "WHEP-17"),
        Level::Must,
        "the restart answer repeats ice-lite / ice-options / ice-pacing",
        outcome(missing.is_empty()),
        if missing.is_empty() {
            format!("{want:?}")
        } else {
            format!("missing {missing:?}")
        },
    );
    let old = ctx
        .request(
            "PATCH",
            &s.url,
            &[FRAG, ("If-Match", &etag)],
            b"a=end-of-candidates\r\n",
        )
        .await
        .map(|r| r.status)
        .unwrap_or(0);
    let new = ctx
        .request(
            "PATCH",
            &s.url,
            &[FRAG, ("If-Match", &new_etag)],
            b"a=end-of-candidates\r\n",
        )
        .await
        .map(|r| r.status)
        .unwrap_or(0);
    report.push(
        id(mode, "WHIP-29", "WHEP-17"),
        Level::Must,
        "after a restart the old ETag is stale (412), the new one matches",
        if trickle_supported {
            outcome(old == 412 && (200..300).contains(&new))
        } else {
            Outcome::Skip
        },
        format!("old ETag → {old}, new ETag → {new}"),
    );
}

/// Rows about offers a server must refuse whole or handle.
async fn offer_rows(ctx: &Context<'_>, report: &mut Report) {
    let mode = ctx.opts.mode;
    let offer = ctx.offer();
    // Media type with case and parameters.
    match ctx
        .request(
            "POST",
            &ctx.opts.url,
            &[("Content-Type", "Application/SDP; charset=utf-8")],
            offer.as_bytes(),
        )
        .await
    {
        Ok(r) => {
            let st = r.status;
            if st == 201
                && let Some(l) = r.header("location")
            {
                let url = wishd::client::resolve_url(&ctx.opts.url, l);
                let _ = ctx.request("DELETE", &url, &[], b"").await;
            }
            report.push(
                "EXT-H6",
                Level::Must,
                "media types compare case-insensitively, parameters allowed",
                outcome(st == 201),
                format!("Application/SDP; charset=utf-8 → {st}"),
            );
        }
        Err(e) => report.push(
            "EXT-H6",
            Level::Must,
            "media types compare case-insensitively, parameters allowed",
            Outcome::Fail,
            e.to_string(),
        ),
    }
    // Two video m-lines.
    if let Some(video_at) = offer.find("m=video") {
        let mids = attr_values(&offer, "mid");
        let new_mid = "9";
        let second = offer[video_at..].replacen(
            &format!("a=mid:{}", mids.last().copied().unwrap_or("1")),
            &format!("a=mid:{new_mid}"),
            1,
        );
        let mut doubled = format!("{offer}{second}");
        if let Some(g) = attr_values(&offer, "group").first() {
            doubled = doubled.replacen(
                &format!("a=group:{g}"),
                &format!("a=group:{g} {new_mid}"),
                1,
            );
        }
        let r = ctx.post_offer(&doubled, &[]).await;
        let st = r.as_ref().map(|r| r.status).unwrap_or(0);
        if st == 201
            && let Ok(r) = &r
            && let Some(l) = r.header("location")
        {
            let _ = ctx
                .request(
                    "DELETE",
                    &wishd::client::resolve_url(&ctx.opts.url, l),
                    &[],
                    b"",
                )
                .await;
        }
        let (row, level) = match mode {
            Mode::Whip => ("WHIP-36", Level::Must),
            Mode::Whep => ("WHEP-21", Level::Should),
        };
        report.push(
            row,
            level,
            "more tracks of a kind than supported: 422 or 400, no partial session",
            outcome(st == 422 || st == 400 || (mode == Mode::Whep && st == 201)),
            format!("offer with two video m-lines → {st}"),
        );
    }
    if mode == Mode::Whip {
        // Only an unsupported video codec: refuse whole, no m=video 0.
        let bogus = offer
            .replace("H264/90000", "X-BOGUS/90000")
            .replace("VP8/90000", "X-BOGUS/90000");
        let r = ctx.post_offer(&bogus, &[]).await;
        let st = r.as_ref().map(|r| r.status).unwrap_or(0);
        let partial = r
            .as_ref()
            .is_ok_and(|r| r.status == 201 && r.text().contains("m=video 0 "));
        if st == 201
            && let Ok(r) = &r
            && let Some(l) = r.header("location")
        {
            let _ = ctx
                .request(
                    "DELETE",
                    &wishd::client::resolve_url(&ctx.opts.url, l),
                    &[],
                    b"",
                )
                .await;
        }
        report.push(
            "WHIP-37",
            Level::Should,
            "an m-line the server cannot take refuses the offer (422/400), no partial answer",
            outcome((st == 422 || st == 400) && !partial),
            format!("video with an unknown codec only → {st}"),
        );
        // recvonly WHIP offer.
        let r = ctx
            .post_offer(&offer.replace("a=sendonly", "a=recvonly"), &[])
            .await;
        let st = r.as_ref().map(|r| r.status).unwrap_or(0);
        report.push(
            "WHIP-08",
            Level::Should,
            "a recvonly WHIP offer is refused (422 or 400)",
            outcome(st == 422 || st == 400),
            format!("recvonly → {st}"),
        );
    }
    // DTLS role offers.
    let active = offer.replace("a=setup:actpass", "a=setup:active");
    let r = ctx.post_offer(&active, &[]).await;
    match r {
        Ok(r) => {
            let st = r.status;
            let ans = r.text();
            if st == 201
                && let Some(l) = r.header("location")
            {
                let _ = ctx
                    .request(
                        "DELETE",
                        &wishd::client::resolve_url(&ctx.opts.url, l),
                        &[],
                        b"",
                    )
                    .await;
            }
            let ok =
                (st == 201 && ans.contains("a=setup:passive") && !ans.contains("a=setup:active"))
                    || st == 422
                    || st == 400;
            report.push(
                id(mode, "WHIP-38", "WHEP-04"),
                Level::Should,
                "a=setup:active offer: 201 with a=setup:passive, or 422/400",
                outcome(ok),
                format!(
                    "{st}{}",
                    if st == 201 {
                        if ans.contains("a=setup:passive") {
                            ", answer passive"
                        } else {
                            ", answer not passive"
                        }
                    } else {
                        ""
                    }
                ),
            );
        }
        Err(e) => report.push(
            id(mode, "WHIP-38", "WHEP-04"),
            Level::Should,
            "a=setup:active offer: 201 with a=setup:passive, or 422/400",
            Outcome::Fail,
            e.to_string(),
        ),
    }
    // Simulcast (WHIP).
    if mode == Mode::Whip
        && let Some(video_at) = offer.find("m=video")
    {
        let (head, tail) = offer.split_at(video_at);
        let tail = tail.replacen(
            "a=sendonly\r\n",
            "a=sendonly\r\na=rid:h send\r\na=rid:l send\r\na=simulcast:send h;l\r\n",
            1,
        );
        let r = ctx.post_offer(&format!("{head}{tail}"), &[]).await;
        match r {
            Ok(r) => {
                let ans = r.text();
                let st = r.status;
                if st == 201
                    && let Some(l) = r.header("location")
                {
                    let _ = ctx
                        .request(
                            "DELETE",
                            &wishd::client::resolve_url(&ctx.opts.url, l),
                            &[],
                            b"",
                        )
                        .await;
                }
                let declined = !ans.contains("a=simulcast");
                let accepted = ans.contains("a=simulcast:recv") && ans.contains("recv");
                let ok = (st == 201 && (declined || accepted)) || st == 422 || st == 400;
                report.push(
                    "WHIP-48",
                    Level::Must,
                    "a simulcast offer is answered per RFC 8853 (accepted or declined) or refused",
                    outcome(ok),
                    format!(
                        "{st}{}",
                        match (st, declined) {
                            (201, true) => ", simulcast declined (single stream)",
                            (201, false) if accepted => ", simulcast accepted",
                            (201, false) => ", the answer keeps a=simulcast without recv",
                            _ => "",
                        }
                    ),
                );
            }
            Err(e) => report.push(
                "WHIP-48",
                Level::Must,
                "a simulcast offer is answered per RFC 8853 (accepted or declined) or refused",
                Outcome::Fail,
                e.to_string(),
            ),
        }
    }
}

/// Bearer-token rows; skipped without `--token` or when the endpoint is open.
async fn auth_rows(ctx: &Context<'_>, report: &mut Report, url: &str) {
    let mode = ctx.opts.mode;
    let req = "bearer tokens: none → 401 + WWW-Authenticate Bearer, invalid → 401";
    if ctx.opts.token.is_none() {
        report.push(
            id(mode, "WHIP-45", "WHEP-25"),
            Level::Must,
            req,
            Outcome::Skip,
            "needs --token",
        );
        return;
    }
    let offer = ctx.offer();
    let none = wishd::client::http_request_patient(
        "POST",
        url,
        &[("Content-Type", "application/sdp")],
        offer.clone().into_bytes(),
    )
    .await;
    let Ok(none) = none else {
        report.push(
            id(mode, "WHIP-45", "WHEP-25"),
            Level::Must,
            req,
            Outcome::Fail,
            "no response",
        );
        return;
    };
    if none.status == 201 {
        if let Some(l) = none.header("location") {
            let _ = ctx
                .request("DELETE", &wishd::client::resolve_url(url, l), &[], b"")
                .await;
        }
        report.push(
            id(mode, "WHIP-45", "WHEP-25"),
            Level::Must,
            req,
            Outcome::Skip,
            "the endpoint needs no token",
        );
        return;
    }
    let challenge = none.header("www-authenticate").unwrap_or("").to_owned();
    let bad = wishd::client::http_request_patient(
        "POST",
        url,
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", "Bearer conformance-invalid-token"),
        ],
        offer.into_bytes(),
    )
    .await
    .map(|r| {
        (
            r.status,
            r.header("www-authenticate").unwrap_or("").to_owned(),
        )
    })
    .unwrap_or((0, String::new()));
    let ok =
        none.status == 401 && challenge.to_ascii_lowercase().starts_with("bearer") && bad.0 == 401;
    report.push(
        id(mode, "WHIP-45", "WHEP-25"),
        Level::Must,
        req,
        outcome(ok),
        format!(
            "none → {} {challenge:?}; invalid → {} {:?}",
            none.status, bad.0, bad.1
        ),
    );
    // PATCH/DELETE on a session without the token.
    match ctx.create().await {
        Ok(s) => {
            let del = wishd::client::http_request_patient("DELETE", &s.url, &[], Vec::new())
                .await
                .map(|r| r.status)
                .unwrap_or(0);
            report.push(
                id(mode, "WHIP-46", "WHEP-25"),
                Level::May,
                "a session of a token-protected endpoint needs the token for DELETE",
                outcome(del == 401 || del == 403 || del == 404),
                format!("DELETE without token → {del}"),
            );
            let _ = ctx.delete(&s).await;
        }
        Err(e) => report.push(
            id(mode, "WHIP-46", "WHEP-25"),
            Level::May,
            "a session of a token-protected endpoint needs the token for DELETE",
            Outcome::Skip,
            short(&e.reason),
        ),
    }
}
