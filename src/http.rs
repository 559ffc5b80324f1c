//! The HTTP edge: routing of the WHIP and WHEP resources, request checks, and the one
//! place where errors become status codes.
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | POST | `/whip/{stream}` | create a publisher session from an SDP offer → 201 |
//! | POST | `/whep/{stream}` | create a viewer session from an SDP offer → 201 |
//! | PATCH | the session URL | trickle ICE → 204, ICE restart → 200 (RFC 9725 §4.3) |
//! | DELETE | `/whip/{stream}/{session}`, `/whep/{stream}/{session}` | end the session → 200 |
//! | GET, HEAD | endpoint or session | empty 200 (RFC 9725 §4.1; WHEP discoverability: `Content-Type: application/sdp`) |
//! | OPTIONS | any of the above | CORS preflight / discovery → 200 with `Accept-Post` (endpoint) or `Accept-Patch` (session), `Allow`; ICE servers when authorised |
//! | GET, DELETE | `/api/…`, `/metrics`, `/healthz`, `/readyz` | answered by [`crate::api`] |
//!
//! Other methods get 405 with `Allow`. A POST whose stream matches a `[[redirects]]`
//! rule gets 307 ([`redirect`]). A 201 carries an absolute `Location` ([`location`])
//! and the ICE servers as `Link` headers ([`ice_servers`]). Below hyper, every
//! connection's bytes have deadlines ([`idle`]): the first within the header timeout,
//! then none silent past the idle timeout.
//!
//! Every error answer is an RFC 9457 `application/problem+json` body whose `detail` is
//! a one-line reason ([`problem`]), and is logged once.
//!
//! Before a handler runs: POST/PATCH/DELETE pass the per-address rate limit (429); a
//! POST is authorized by [`crate::auth`] for its action and stream (401/403/400 per
//! RFC 6750) and counted against the session cap (503); a request on a session goes
//! through `authorize_session` with the rights the session was created with. OPTIONS
//! never needs a token. The query string (which may carry `?token=`) is never logged.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tracing::{info, warn};

use crate::auth::{self, AuthError, Authenticator};
use crate::directory::DirectoryError;
use crate::media::{Created, Media, MediaError, PatchOutcome, new_etag};
use crate::model::{Role, SessionId};
use crate::ratelimit::RateLimiter;
use crate::sdp::SdpError;
use crate::sdp::frag::{MAX_FRAG, parse_fragment};

pub mod ice_servers;
pub mod idle;
pub mod location;
pub mod problem;
pub mod redirect;

use crate::config::RedirectConfig;
use ice_servers::IceServers;

/// Methods of a WHIP/WHEP endpoint (the `Allow` of its 405 and OPTIONS).
const ENDPOINT_ALLOW: &str = "POST, OPTIONS, GET, HEAD";
/// Methods of a session resource.
const SESSION_ALLOW: &str = "PATCH, DELETE, OPTIONS, GET, HEAD";

/// Largest request body accepted (an SDP offer is a few KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// The media type of PATCH bodies (RFC 8840).
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// The response body type.
pub type Body = Full<Bytes>;

/// What the handlers share.
pub struct AppState {
    /// Session setup and teardown.
    pub media: Arc<Media>,
    /// Seconds in `Retry-After` when a WHEP stream has no source.
    pub retry_after_secs: u32,
    /// Who may publish and play.
    pub auth: Authenticator,
    /// Origins allowed by CORS (`*` allows all).
    pub cors_origins: Vec<String>,
    /// Per-address limit on POST/PATCH/DELETE.
    pub limiter: RateLimiter,
    /// Cap on sessions (0: none).
    pub max_sessions: usize,
    /// STUN/TURN servers for clients (`Link: rel="ice-server"`).
    pub ice_servers: IceServers,
    /// 307 rules for session creation.
    pub redirects: Vec<RedirectConfig>,
    /// The configured base of absolute session URLs.
    pub public_url: Option<String>,
    /// The operator's API, metrics and readiness ([`crate::api`]).
    pub ops: Arc<crate::api::Ops>,
}

/// A refused request: a status plus a one-line reason.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No route.
    #[error("no such resource")]
    NotFound,
    /// Known route, wrong method.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// Body is not `application/sdp`.
    #[error("Content-Type must be application/sdp")]
    UnsupportedMediaType,
    /// PATCH body is not `application/trickle-ice-sdpfrag`.
    #[error("Content-Type must be application/trickle-ice-sdpfrag")]
    UnsupportedPatchType,
    /// PATCH without `If-Match`.
    #[error("If-Match is required: the session's ETag for trickle ICE, * for an ICE restart")]
    PreconditionRequired,
    /// PATCH whose `If-Match` names another ICE session.
    #[error("If-Match does not match the current ICE session")]
    PreconditionFailed,
    /// Body over [`MAX_BODY`].
    #[error("request body is larger than {MAX_BODY} bytes")]
    PayloadTooLarge,
    /// Anything else wrong with the request itself.
    #[error("{0}")]
    BadRequest(String),
    /// Session setup or teardown refused.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// Missing, malformed, invalid or insufficient credentials.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// This client address sent too many POST/PATCH/DELETE requests.
    #[error("too many requests; retry in {0} s")]
    TooManyRequests(u64),
    /// The session cap is reached.
    #[error("the server has as many sessions as it may hold")]
    TooManySessions,
    /// `/readyz`: a listener or worker is not running (the reason says which).
    #[error("not ready: {0}")]
    NotReady(String),
}

impl ApiError {
    /// The status code for this error: the single mapping of errors to HTTP.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType | ApiError::UnsupportedPatchType => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
            ApiError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Auth(e) => match e {
                AuthError::Missing | AuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
                AuthError::Malformed(_) => StatusCode::BAD_REQUEST,
                AuthError::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            },
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooManySessions | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Media(e) => match e {
                MediaError::Sdp(SdpError::Malformed(_)) => StatusCode::BAD_REQUEST,
                MediaError::Sdp(_) => StatusCode::UNPROCESSABLE_ENTITY,
                MediaError::Directory(DirectoryError::SourceLive(_)) => StatusCode::CONFLICT,
                MediaError::Directory(DirectoryError::RtpSource(_)) => StatusCode::CONFLICT,
                MediaError::Directory(DirectoryError::NoSource(_)) => StatusCode::CONFLICT,
                MediaError::Directory(DirectoryError::UnknownSession) => StatusCode::NOT_FOUND,
                MediaError::Negotiation(_) | MediaError::RestartFailed(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                MediaError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    fn into_response(self, state: &AppState) -> Response<Body> {
        let status = self.status();
        let mut resp = problem::response(status, &self.to_string());
        let h = resp.headers_mut();
        match &self {
            ApiError::MethodNotAllowed(allow) => {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::UnsupportedMediaType => {
                h.insert("accept-post", HeaderValue::from_static("application/sdp"));
            }
            ApiError::UnsupportedPatchType => {
                h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
            }
            ApiError::Media(MediaError::Directory(DirectoryError::NoSource(_))) => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(state.retry_after_secs),
                );
            }
            ApiError::Media(MediaError::Unavailable) | ApiError::TooManySessions => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(1u32));
            }
            ApiError::TooManyRequests(secs) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            ApiError::Auth(e) => {
                let challenge = match e.bearer_error() {
                    None => "Bearer realm=\"wishd\"".to_owned(),
                    Some(code) => format!("Bearer realm=\"wishd\", error=\"{code}\""),
                };
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            _ => {}
        }
        resp
    }
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The routes wishd knows.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Endpoint(Role, &'a str),
    Session(Role, &'a str, &'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let kind = match parts.next()? {
        "whip" => Role::Publisher,
        "whep" => Role::Viewer,
        _ => return None,
    };
    let stream = parts.next()?;
    match (parts.next(), parts.next()) {
        (None, _) | (Some(""), None) => Some(Route::Endpoint(kind, stream)),
        (Some(id), None) => Some(Route::Session(kind, stream, id)),
        _ => None,
    }
}

fn check_stream(stream: &str) -> Result<(), ApiError> {
    if crate::model::valid_stream_name(stream) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(crate::model::STREAM_NAME_RULE.into()))
    }
}

/// Handles one request. Never fails: errors become responses here.
pub async fn handle(
    state: Arc<AppState>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    // The path only: a `?token=` query is never logged.
    let path = req.uri().path().to_owned();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let preflight = method == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let limited = if matches!(method, Method::POST | Method::PATCH | Method::DELETE) {
        state.limiter.check(peer, Instant::now())
    } else {
        Ok(())
    };
    let result = match limited {
        Ok(()) => dispatch(&state, req).await,
        Err(wait) => Err(ApiError::TooManyRequests(
            wait.as_secs_f64().ceil().max(1.0) as u64,
        )),
    };
    let mut auth_failure = None;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if let ApiError::Auth(a) = &e {
                auth_failure = Some(a.clone());
            }
            let status = e.status();
            if status.is_server_error() {
                warn!(%method, %path, status = status.as_u16(), "{e}");
            } else {
                info!(%method, %path, status = status.as_u16(), "refused: {e}");
            }
            e.into_response(&state)
        }
    };
    add_cors(
        resp.headers_mut(),
        origin.as_ref(),
        &state.cors_origins,
        preflight,
    );
    state
        .ops
        .observe(&path, resp.status(), auth_failure.as_ref());
    Ok(resp)
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
    if state.auth.query_token()
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
fn authorize_session(
    state: &AppState,
    req: &Request<Incoming>,
    id: SessionId,
    kind: Role,
    stream: &str,
) -> Result<(), ApiError> {
    let token = request_token(state, req)?;
    let info = state.media.session(id, kind, stream)?;
    state
        .auth
        .authorize_session(&info.grant, kind, stream, token.as_deref())?;
    Ok(())
}

async fn dispatch(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if let Some(answer) = crate::api::dispatch(state, &req).await {
        return answer;
    }
    let path = req.uri().path().to_owned();
    if let Some(page) = crate::web::respond(req.method(), &path, req.headers()) {
        return page.map_err(ApiError::MethodNotAllowed);
    }
    let route = route(&path).ok_or(ApiError::NotFound)?;
    match route {
        Route::Endpoint(kind, stream) => {
            check_stream(stream)?;
            match *req.method() {
                Method::POST => {
                    let started = std::time::Instant::now();
                    if let Some(to) = redirect::target(&state.redirects, kind, stream) {
                        info!(stream, kind = kind.path_segment(), to, "redirected");
                        return Ok(redirect_response(&to));
                    }
                    let base = location::base(&req, state.public_url.as_deref());
                    let grant = {
                        let token = request_token(state, &req)?;
                        state.auth.authorize(kind, stream, token.as_deref())?
                    };
                    if state.max_sessions != 0 && state.media.session_count() >= state.max_sessions
                    {
                        return Err(ApiError::TooManySessions);
                    }
                    let offer = read_sdp(req).await?;
                    let created = match kind {
                        Role::Publisher => state.media.publish(stream, &offer, grant).await?,
                        Role::Viewer => state.media.play(stream, &offer, grant).await?,
                    };
                    state
                        .media
                        .counters()
                        .histograms
                        .session_setup
                        .observe_duration(started.elapsed());
                    info!(stream, session = %created.id, kind = kind.path_segment(), "session created");
                    let mut r = created_response(&base, kind, stream, created);
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
                        && state.auth.authorize(kind, stream, token.as_deref()).is_ok()
                    {
                        add_ice_servers(state, r.headers_mut());
                    }
                    Ok(r)
                }
                Method::GET | Method::HEAD => Ok(discovery_response()),
                _ => Err(ApiError::MethodNotAllowed(ENDPOINT_ALLOW)),
            }
        }
        Route::Session(kind, stream, id) => {
            check_stream(stream)?;
            let id: SessionId = id.parse().map_err(|_| ApiError::NotFound)?;
            match *req.method() {
                Method::DELETE => {
                    authorize_session(state, &req, id, kind, stream)?;
                    state.media.close(id, kind, stream).await?;
                    info!(stream, session = %id, "session deleted");
                    Ok(text(StatusCode::OK, "session ended"))
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
    }
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
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            Ok(r)
        }
        PatchOutcome::Restarted { fragment } => {
            let etag = new_etag();
            state.media.directory().set_etag(id, etag.clone())?;
            info!(stream, session = %id, "ICE restart");
            let mut r = Response::new(Full::new(Bytes::from(fragment)));
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
async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
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

fn created_response(base: &str, kind: Role, stream: &str, created: Created) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(created.answer)));
    *r.status_mut() = StatusCode::CREATED;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    let location = format!("{base}/{}/{}/{}", kind.path_segment(), stream, created.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&created.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    r
}

/// An empty answer with `Content-Length: 0` (GET, HEAD, OPTIONS).
fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// OPTIONS: 200 (RFC 9725 §4.2 names "200 OK") with the resource's methods.
fn options_response(allow: &'static str) -> Response<Body> {
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
    if state.ice_servers.is_empty() {
        return;
    }
    for link in state.ice_servers.links(auth::now_secs()) {
        h.append(header::LINK, link);
    }
}

/// CORS per the Fetch standard: an allowed `Origin` gets `Access-Control-Allow-Origin`
/// (`*`, or the origin itself with `Vary: Origin` when a list is configured); a
/// preflight also gets the methods and request headers WHIP/WHEP clients use.
fn add_cors(h: &mut HeaderMap, origin: Option<&HeaderValue>, allowed: &[String], preflight: bool) {
    let Some(origin) = origin else {
        return;
    };
    if allowed.iter().any(|o| o == "*") {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else {
        h.append(header::VARY, HeaderValue::from_static("origin"));
        let ok = origin
            .to_str()
            .map(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)))
            .unwrap_or(false);
        if !ok {
            return;
        }
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    }
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS, GET, HEAD"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, if-match"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("location, etag, link"),
    );
}

impl From<SdpError> for ApiError {
    fn from(e: SdpError) -> Self {
        ApiError::Media(e.into())
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        ApiError::Media(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_endpoint_and_session() {
        assert_eq!(
            route("/whip/cam1"),
            Some(Route::Endpoint(Role::Publisher, "cam1"))
        );
        assert_eq!(
            route("/whep/cam1/"),
            Some(Route::Endpoint(Role::Viewer, "cam1"))
        );
        assert_eq!(
            route("/whep/cam1/abc"),
            Some(Route::Session(Role::Viewer, "cam1", "abc"))
        );
        assert_eq!(route("/whip/a/b/c"), None);
        assert_eq!(route("/other/a"), None);
        assert_eq!(route(""), None);
    }

    #[test]
    fn every_media_error_maps_to_the_status_the_spec_names() {
        let cases: Vec<(ApiError, u16)> = vec![
            (SdpError::Malformed("x".into()).into(), 400),
            (SdpError::Unsupported("x".into()).into(), 422),
            (DirectoryError::SourceLive("a".into()).into(), 409),
            (DirectoryError::NoSource("a".into()).into(), 409),
            (DirectoryError::UnknownSession.into(), 404),
            (ApiError::UnsupportedMediaType, 415),
            (ApiError::PayloadTooLarge, 413),
            (AuthError::Missing.into(), 401),
            (AuthError::InvalidToken("x".into()).into(), 401),
            (AuthError::Malformed("x").into(), 400),
            (
                AuthError::InsufficientScope {
                    action: Role::Viewer,
                }
                .into(),
                403,
            ),
            (ApiError::TooManyRequests(1), 429),
            (ApiError::TooManySessions, 503),
        ];
        for (e, code) in cases {
            assert_eq!(e.status().as_u16(), code, "{e}");
        }
    }
}
