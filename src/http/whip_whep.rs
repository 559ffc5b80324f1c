//! The WHIP and WHEP resources (RFC 9725, draft-ietf-wish-whep): an endpoint per
//! stream, where a POST creates a session, and the session resource it names, where
//! PATCH does trickle ICE or an ICE restart and DELETE ends it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tracing::{debug, info};

use super::error::{ApiError, text};
use super::{AppState, Body, location, redirect};
use crate::auth::{self, AuthError};
use crate::directory::SessionInfo;
use crate::media::{Created, PatchOutcome};
use crate::model::{Role, SessionId};
use crate::sdp::SdpError;
use crate::sdp::frag::{MAX_FRAG, parse_fragment};

/// Methods of a WHIP/WHEP endpoint (the `Allow` of its 405 and OPTIONS).
const ENDPOINT_ALLOW: &str = "POST, OPTIONS, GET, HEAD";
/// Methods of a session resource.
const SESSION_ALLOW: &str = "PATCH, DELETE, OPTIONS, GET, HEAD";

/// Largest request body accepted (an SDP offer is a few KiB).
pub(crate) const MAX_BODY: usize = 64 * 1024;

/// The media type of PATCH bodies (RFC 8840).
pub(crate) const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

pub(super) fn check_stream(stream: &str) -> Result<(), ApiError> {
    if crate::model::valid_stream_name(stream) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(crate::model::STREAM_NAME_RULE.into()))
    }
}

/// The session a URL names: a valid stream name and a session id (an id that cannot
/// be one is a session that does not exist: 404).
pub(super) fn check_session(stream: &str, session: &str) -> Result<SessionId, ApiError> {
    check_stream(stream)?;
    session.parse().map_err(|_| ApiError::NotFound)
}

/// The bearer token of a request: from `Authorization`, else (when enabled) from a
/// `?token=` query parameter. A malformed or repeated header is an error.
pub(crate) fn request_token<'r>(
    state: &AppState,
    req: &'r Request<Incoming>,
) -> Result<Option<std::borrow::Cow<'r, str>>, ApiError> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    if let Some(v) = values.next() {
        if values.next().is_some() {
            return Err(AuthError::Malformed("more than one Authorization header").into());
        }
        return Ok(Some(auth::parse_authorization(v.as_bytes())?.into()));
    }
    if state.rules.load().auth.query_token()
        && let Some(q) = req.uri().query()
    {
        for pair in q.split('&') {
            if let Some(v) = pair.strip_prefix("token=") {
                let v = percent_decode(v).ok_or(AuthError::Malformed("bad token parameter"))?;
                return Ok(Some(v.into()));
            }
        }
    }
    Ok(None)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks a request on an existing session (DELETE, PATCH, GET) against the
/// rights the session was created with. Unknown sessions are 404 first.
pub(super) fn authorize_session(
    state: &AppState,
    req: &Request<Incoming>,
    id: SessionId,
    kind: Role,
    stream: &str,
) -> Result<(), ApiError> {
    let token = request_token(state, req)?;
    let info = state.media.session(id, kind, stream)?;
    state
        .rules
        .load()
        .auth
        .authorize_session(&info.grant, kind, stream, token.as_deref())?;
    Ok(())
}

/// A request on the endpoint of `stream` (`kind` says WHIP or WHEP).
pub(super) async fn endpoint(
    state: &AppState,
    req: Request<Incoming>,
    kind: Role,
    stream: &str,
) -> Result<Response<Body>, ApiError> {
    check_stream(stream)?;
    match *req.method() {
        Method::POST => {
            let started = Instant::now();
            let rules = state.rules.load_full();
            if let Some(to) = redirect::target(&rules.redirects, kind, stream) {
                info!(stream, kind = kind.path_segment(), to, "redirected");
                return Ok(redirect_response(&to));
            }
            let base = location::base(&req, state.public_url.as_deref());
            let cluster = state.cluster.as_ref();
            let grant = {
                let token = request_token(state, &req)?;
                // Another node of the cluster relaying a stream may play any.
                if kind == Role::Viewer
                    && cluster.is_some_and(|c| c.is_node_token(token.as_deref()))
                {
                    crate::auth::Grant::Open
                } else {
                    rules.auth.authorize(kind, stream, token.as_deref())?
                }
            };
            if kind == Role::Viewer
                && req.headers().contains_key(crate::model::RELAY_HEADER)
                && (matches!(
                    state.ops.cameras.get(stream),
                    Some(crate::ingest::CameraFeed::Pull(_))
                ) || cluster.is_some_and(|c| c.relays_here(stream)))
            {
                return Err(ApiError::RelayLoop(stream.to_owned()));
            }
            let _pending = SessionSlot::take(state)?;
            let offer = read_sdp(req).await?;
            // The cluster is asked once the request is known to be well formed.
            if let Some(c) = cluster {
                match kind {
                    Role::Publisher => c.claim(stream).await?,
                    Role::Viewer => {
                        if let Some(to) = c.serve_viewer(stream).await {
                            info!(stream, to, "sent to the node that owns the stream");
                            return Ok(redirect_response(&to));
                        }
                    }
                }
            }
            let etag = new_etag();
            let created = match kind {
                Role::Publisher => {
                    match state
                        .media
                        .publish(stream, &offer, grant, etag.clone())
                        .await
                    {
                        Ok(c) => c,
                        Err(e) => {
                            if let Some(c) = cluster {
                                c.publish_failed(stream).await;
                            }
                            return Err(e.into());
                        }
                    }
                }
                Role::Viewer => {
                    state
                        .media
                        .play(stream, &offer, grant, etag.clone())
                        .await?
                }
            };
            state
                .media
                .counters()
                .histograms
                .session_setup
                .observe_duration(started.elapsed());
            info!(stream, session = %created.id, kind = kind.path_segment(), worker = created.worker, "session created");
            let mut r = created_response(&base, kind, stream, created, &etag);
            add_ice_servers(state, r.headers_mut());
            Ok(r)
        }
        Method::OPTIONS => {
            let mut r = options_response(ENDPOINT_ALLOW);
            r.headers_mut()
                .insert("accept-post", HeaderValue::from_static("application/sdp"));
            // ICE servers (TURN credentials) only for a client that may use the
            // endpoint, and never on a CORS preflight (RFC 9725 §4.6).
            let preflight = req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
            if !preflight
                && let Ok(token) = request_token(state, &req)
                && state
                    .rules
                    .load()
                    .auth
                    .authorize(kind, stream, token.as_deref())
                    .is_ok()
            {
                add_ice_servers(state, r.headers_mut());
            }
            Ok(r)
        }
        Method::GET | Method::HEAD => Ok(discovery_response()),
        _ => Err(ApiError::MethodNotAllowed(ENDPOINT_ALLOW)),
    }
}

/// A request on the session `id` of `stream`.
pub(super) async fn session(
    state: &AppState,
    req: Request<Incoming>,
    kind: Role,
    stream: &str,
    id: &str,
) -> Result<Response<Body>, ApiError> {
    let id = check_session(stream, id)?;
    match *req.method() {
        Method::DELETE => {
            if let Some(ended) = state.media.ended_session(id, kind, stream) {
                return delete_ended(state, &req, &ended, stream);
            }
            authorize_session(state, &req, id, kind, stream)?;
            match state.media.close(id, kind, stream).await {
                Ok(()) => {
                    info!(stream, session = %id, "session deleted");
                    Ok(text(StatusCode::OK, "session ended"))
                }
                // It ended on its own between the check and the close.
                Err(e) => match state.media.ended_session(id, kind, stream) {
                    Some(ended) => delete_ended(state, &req, &ended, stream),
                    None => Err(e.into()),
                },
            }
        }
        Method::PATCH => {
            authorize_session(state, &req, id, kind, stream)?;
            patch(state, req, kind, stream, id).await
        }
        Method::GET | Method::HEAD => {
            authorize_session(state, &req, id, kind, stream)?;
            Ok(empty(StatusCode::OK))
        }
        Method::OPTIONS => {
            let mut r = options_response(SESSION_ALLOW);
            r.headers_mut()
                .insert("accept-patch", HeaderValue::from_static(SDPFRAG));
            Ok(r)
        }
        _ => Err(ApiError::MethodNotAllowed(SESSION_ALLOW)),
    }
}

/// A POST's place under `limits.max_sessions` from the cap check until its session
/// exists (then the directory counts it) or the POST fails.
struct SessionSlot<'a>(&'a AtomicUsize);

impl<'a> SessionSlot<'a> {
    fn take(state: &'a AppState) -> Result<Option<SessionSlot<'a>>, ApiError> {
        if state.max_sessions == 0 {
            return Ok(None);
        }
        let pending = &state.sessions_pending;
        let ahead = pending.fetch_add(1, Ordering::AcqRel);
        let slot = SessionSlot(pending);
        if state.media.session_count() + ahead >= state.max_sessions {
            return Err(ApiError::TooManySessions);
        }
        Ok(Some(slot))
    }
}

impl Drop for SessionSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// DELETE on a session that has already ended (its peer closed first, or it timed
/// out): 200 for the client that owned it, as if it had ended now.
fn delete_ended(
    state: &AppState,
    req: &Request<Incoming>,
    ended: &SessionInfo,
    stream: &str,
) -> Result<Response<Body>, ApiError> {
    let token = request_token(state, req)?;
    state.rules.load().auth.authorize_session(
        &ended.grant,
        ended.kind,
        stream,
        token.as_deref(),
    )?;
    state.media.forget_ended(ended.id);
    debug!(stream, session = %ended.id, "DELETE of a session that had already ended");
    Ok(text(StatusCode::OK, "session had already ended"))
}

/// PATCH on a session: trickle ICE (204) or an ICE restart (200 with the server's
/// new credentials and a new ETag), per RFC 9725 §4.3.
async fn patch(
    state: &AppState,
    req: Request<Incoming>,
    kind: Role,
    stream: &str,
    id: SessionId,
) -> Result<Response<Body>, ApiError> {
    let info = state.media.session(id, kind, stream)?;
    if !has_content_type(req.headers(), SDPFRAG) {
        return Err(ApiError::UnsupportedPatchType);
    }
    let if_match = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or(ApiError::PreconditionRequired)?;
    let matches = if_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == info.etag);
    if !matches {
        return Err(ApiError::PreconditionFailed);
    }
    let body = read_body(req, MAX_FRAG).await?;
    let frag = parse_fragment(&body)?;
    match state.media.patch(id, info.worker, frag).await? {
        PatchOutcome::Trickled => {
            let mut r = Response::new(super::full(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
        PatchOutcome::Restarted { fragment } => {
            let etag = new_etag();
            state.media.directory().set_etag(id, etag.clone())?;
            info!(stream, session = %id, "ICE restart");
            let mut r = Response::new(super::full(Bytes::from(fragment)));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDPFRAG));
            if let Ok(v) = HeaderValue::from_str(&etag) {
                h.insert(header::ETAG, v);
            }
            Ok(r)
        }
    }
}

async fn read_sdp(req: Request<Incoming>) -> Result<String, ApiError> {
    if !is_sdp(req.headers()) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = read_body(req, MAX_BODY).await?;
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::Media(SdpError::Malformed("the offer is not UTF-8".into()).into()))
}

/// Reads a whole body of at most `limit` bytes (413 beyond).
pub(super) async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limit as u64
    {
        return Err(ApiError::PayloadTooLarge);
    }
    let body = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("could not read the request body".into())
            }
        })?
        .to_bytes();
    Ok(body)
}

fn is_sdp(headers: &HeaderMap) -> bool {
    has_content_type(headers, "application/sdp")
}

/// The request's media type (parameters ignored) is `want`.
fn has_content_type(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(want)
        })
        .unwrap_or(false)
}

fn created_response(
    base: &str,
    kind: Role,
    stream: &str,
    created: Created,
    etag: &str,
) -> Response<Body> {
    let mut r = Response::new(super::full(Bytes::from(created.answer)));
    *r.status_mut() = StatusCode::CREATED;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    let location = format!("{base}/{}/{}/{}", kind.path_segment(), stream, created.id);
    if kind == Role::Viewer {
        // The WHEP extensions: event streams, and the layer choice.
        for link in [
            super::events::link(&location),
            super::layers::link(&location),
        ] {
            if let Ok(v) = HeaderValue::from_str(&link) {
                h.append(header::LINK, v);
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    r
}

/// An empty answer with `Content-Length: 0` (GET, HEAD, OPTIONS).
fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(super::full(Bytes::new()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// OPTIONS: 200 (RFC 9725 §4.2 names "200 OK") with the resource's methods.
pub(super) fn options_response(allow: &'static str) -> Response<Body> {
    let mut r = empty(StatusCode::OK);
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// GET and HEAD on an endpoint: an empty 200 that says what the endpoint takes
/// (RFC 9725 §4.1; WHEP discoverability, editor's copy §4.2).
fn discovery_response() -> Response<Body> {
    let mut r = empty(StatusCode::OK);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    r
}

/// 307 to a configured URL: the client re-POSTs its offer there.
fn redirect_response(to: &str) -> Response<Body> {
    let mut r = empty(StatusCode::TEMPORARY_REDIRECT);
    // Checked at start to be printable ASCII; stream names are URL-safe.
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn add_ice_servers(state: &AppState, h: &mut HeaderMap) {
    let rules = state.rules.load();
    if rules.ice_servers.is_empty() {
        return;
    }
    for link in rules.ice_servers.links(auth::now_secs()) {
        h.append(header::LINK, link);
    }
}

/// A strong entity-tag for a new ICE session (RFC 9725 §4.3.1: it changes with every
/// ICE restart, and PATCH names it in `If-Match`).
pub(super) fn new_etag() -> String {
    format!("\"{:016x}\"", rand::random::<u64>())
}
