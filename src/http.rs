//! The HTTP edge: routing of the WHIP and WHEP resources, request checks, and the one
//! place where errors become status codes.
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | POST | `/whip/{stream}` | create a publisher session from an SDP offer → 201 |
//! | POST | `/whep/{stream}` | create a viewer session from an SDP offer → 201 |
//! | PATCH | the session URL | trickle ICE → 204, ICE restart → 200 (RFC 9725 §4.3) |
//! | DELETE | `/whip/{stream}/{session}`, `/whep/{stream}/{session}` | end the session → 200 |
//! | OPTIONS | any of the above | CORS preflight / discovery → 204 |
//!
//! Every error answer has a one-line `text/plain` reason in its body and is logged once.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tracing::{info, warn};

use crate::media::{Created, Media, MediaError, PatchOutcome, new_etag};
use crate::registry::{RegistryError, SessionId, SessionKind};
use crate::sdp::SdpError;
use crate::sdp::frag::{MAX_FRAG, parse_fragment};

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
            ApiError::Media(e) => match e {
                MediaError::Sdp(SdpError::Malformed(_)) => StatusCode::BAD_REQUEST,
                MediaError::Sdp(_) => StatusCode::UNPROCESSABLE_ENTITY,
                MediaError::Registry(RegistryError::SourceLive(_)) => StatusCode::CONFLICT,
                MediaError::Registry(RegistryError::RtpSource(_)) => StatusCode::CONFLICT,
                MediaError::Registry(RegistryError::NoSource(_)) => StatusCode::CONFLICT,
                MediaError::Registry(RegistryError::UnknownSession) => StatusCode::NOT_FOUND,
                MediaError::Negotiation(_) | MediaError::RestartFailed(_) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                MediaError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    fn into_response(self, state: &AppState) -> Response<Body> {
        let status = self.status();
        let reason = self.to_string().replace(['\r', '\n'], " ");
        let mut resp = text(status, &reason);
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
            ApiError::Media(MediaError::Registry(RegistryError::NoSource(_))) => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(state.retry_after_secs),
                );
            }
            ApiError::Media(MediaError::Unavailable) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(1u32));
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
    Endpoint(SessionKind, &'a str),
    Session(SessionKind, &'a str, &'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix('/')?;
    let mut parts = rest.split('/');
    let kind = match parts.next()? {
        "whip" => SessionKind::Publisher,
        "whep" => SessionKind::Viewer,
        _ => return None,
    };
    let stream = parts.next()?;
    match (parts.next(), parts.next()) {
        (None, _) | (Some(""), None) => Some(Route::Endpoint(kind, stream)),
        (Some(id), None) => Some(Route::Session(kind, stream, id)),
        _ => None,
    }
}

/// Stream names: 1 to 128 characters of letters, digits, `-`, `_`, `.` and `~`.
pub fn valid_stream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

fn check_stream(stream: &str) -> Result<(), ApiError> {
    if valid_stream_name(stream) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "stream names are 1 to 128 characters of A-Z a-z 0-9 - _ . ~".into(),
        ))
    }
}

/// Handles one request. Never fails: errors become responses here.
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = match dispatch(&state, req).await {
        Ok(r) => r,
        Err(e) => {
            let status = e.status();
            if status.is_server_error() {
                warn!(%method, %path, status = status.as_u16(), "{e}");
            } else {
                info!(%method, %path, status = status.as_u16(), "refused: {e}");
            }
            e.into_response(&state)
        }
    };
    add_cors(resp.headers_mut(), origin.as_ref());
    Ok(resp)
}

async fn dispatch(state: &AppState, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_owned();
    let route = route(&path).ok_or(ApiError::NotFound)?;
    match route {
        Route::Endpoint(kind, stream) => {
            check_stream(stream)?;
            match *req.method() {
                Method::POST => {
                    let offer = read_sdp(req).await?;
                    let created = match kind {
                        SessionKind::Publisher => state.media.publish(stream, &offer).await?,
                        SessionKind::Viewer => state.media.play(stream, &offer).await?,
                    };
                    info!(stream, session = %created.id, kind = kind.path_segment(), "session created");
                    Ok(created_response(kind, stream, created))
                }
                Method::OPTIONS => Ok(options_response()),
                _ => Err(ApiError::MethodNotAllowed("POST, OPTIONS")),
            }
        }
        Route::Session(kind, stream, id) => {
            check_stream(stream)?;
            let id: SessionId = id.parse().map_err(|_| ApiError::NotFound)?;
            match *req.method() {
                Method::DELETE => {
                    state.media.close(id, kind, stream).await?;
                    info!(stream, session = %id, "session deleted");
                    Ok(text(StatusCode::OK, "session ended"))
                }
                Method::PATCH => patch(state, req, kind, stream, id).await,
                Method::OPTIONS => Ok(options_response()),
                _ => Err(ApiError::MethodNotAllowed("PATCH, DELETE, OPTIONS")),
            }
        }
    }
}

/// PATCH on a session: trickle ICE (204) or an ICE restart (200 with the server's
/// new credentials and a new ETag), per RFC 9725 §4.3.
async fn patch(
    state: &AppState,
    req: Request<Incoming>,
    kind: SessionKind,
    stream: &str,
    id: SessionId,
) -> Result<Response<Body>, ApiError> {
    let info = state
        .media
        .registry()
        .session(id)
        .filter(|s| s.kind == kind && &*s.stream == stream)
        .ok_or(ApiError::NotFound)?;
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
            state.media.registry().set_etag(id, etag.clone())?;
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

fn created_response(kind: SessionKind, stream: &str, created: Created) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(created.answer)));
    *r.status_mut() = StatusCode::CREATED;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    let location = format!("/{}/{}/{}", kind.path_segment(), stream, created.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&created.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    r
}

fn options_response() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r.headers_mut()
        .insert("accept-post", HeaderValue::from_static("application/sdp"));
    r
}

fn add_cors(h: &mut HeaderMap, origin: Option<&HeaderValue>) {
    if origin.is_none() {
        return;
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, DELETE, PATCH, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, if-match"),
    );
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

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
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
            Some(Route::Endpoint(SessionKind::Publisher, "cam1"))
        );
        assert_eq!(
            route("/whep/cam1/"),
            Some(Route::Endpoint(SessionKind::Viewer, "cam1"))
        );
        assert_eq!(
            route("/whep/cam1/abc"),
            Some(Route::Session(SessionKind::Viewer, "cam1", "abc"))
        );
        assert_eq!(route("/whip/a/b/c"), None);
        assert_eq!(route("/other/a"), None);
        assert_eq!(route(""), None);
    }

    #[test]
    fn stream_names_are_restricted_to_url_safe_characters() {
        assert!(valid_stream_name("cam-1_a.b~c"));
        assert!(!valid_stream_name(""));
        assert!(!valid_stream_name(".."));
        assert!(!valid_stream_name("a%20b"));
        assert!(!valid_stream_name(&"a".repeat(129)));
    }

    #[test]
    fn every_media_error_maps_to_the_status_the_spec_names() {
        let cases: Vec<(ApiError, u16)> = vec![
            (SdpError::Malformed("x".into()).into(), 400),
            (SdpError::Unsupported("x".into()).into(), 422),
            (RegistryError::SourceLive("a".into()).into(), 409),
            (RegistryError::NoSource("a".into()).into(), 409),
            (RegistryError::UnknownSession.into(), 404),
            (ApiError::UnsupportedMediaType, 415),
            (ApiError::PayloadTooLarge, 413),
        ];
        for (e, code) in cases {
            assert_eq!(e.status().as_u16(), code, "{e}");
        }
    }
}
