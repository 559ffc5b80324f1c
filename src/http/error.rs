//! The one place where an error becomes an HTTP status: [`ApiError`] and its
//! [`ApiError::status`]. Every error answer is an RFC 9457 problem with a one-line
//! reason ([`super::problem`]).

use crate::record::RecordingError;
use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use super::whip_whep::{MAX_BODY, SDPFRAG};
use super::{AppState, Body, problem};
use crate::auth::AuthError;
use crate::cluster::ClusterError;
use crate::directory::DirectoryError;
use crate::media::MediaError;
use crate::sdp::SdpError;

/// A refused request: a status plus a one-line reason.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
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
    /// A recording request that cannot be done.
    #[error(transparent)]
    Recording(#[from] crate::record::RecordingError),
    /// A `Range` outside a file of this many bytes.
    #[error("the range is outside the file ({0} bytes)")]
    RangeNotSatisfiable(u64),
    /// A relaying server asked for a stream this server relays itself.
    #[error("stream {0} is relayed here from another server; a relay of a relay is refused")]
    RelayLoop(String),
    /// The cluster's directory refused or could not be asked.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

impl ApiError {
    /// The status code for this error: the single mapping of errors to HTTP.
    pub(crate) fn status(&self) -> StatusCode {
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
            ApiError::Recording(e) => match e {
                RecordingError::NoSuchFile => StatusCode::NOT_FOUND,
                RecordingError::NoRule(_)
                | RecordingError::AlreadyRecording(_)
                | RecordingError::NotRecording(_) => StatusCode::CONFLICT,
            },
            ApiError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::RelayLoop(_) => StatusCode::LOOP_DETECTED,
            ApiError::Cluster(e) => match e {
                ClusterError::Owned { .. } => StatusCode::CONFLICT,
                ClusterError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
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
                MediaError::Layer(_) => StatusCode::BAD_REQUEST,
                MediaError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    pub(super) fn into_response(self, state: &AppState) -> Response<Body> {
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
            ApiError::Cluster(e) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(e.retry_after()));
            }
            ApiError::TooManyRequests(secs) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*secs));
            }
            ApiError::RangeNotSatisfiable(size) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
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

pub(super) fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(super::full(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
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
    use crate::model::Role;

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
