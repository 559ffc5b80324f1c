//! The operator's side of the HTTP listener: the JSON API under `/api/`, Prometheus
//! text at `/metrics`, and the `/healthz` and `/readyz` probes.
//!
//! | method | path | access | result |
//! | --- | --- | --- | --- |
//! | GET | `/api/streams` | who may play (see below) | the streams, as JSON |
//! | GET | `/api/streams/{name}` | admin | one stream with its sessions |
//! | DELETE | `/api/streams/{name}` | admin | stop it: source and viewers end → 204 |
//! | DELETE | `/api/sessions/{id}` | admin | kick one session → 204 |
//! | GET | `/api/openapi.json` | anyone | the OpenAPI 3.1 description of the above |
//! | GET | `/metrics` | anyone, or admin with `metrics_token_required` | Prometheus text |
//! | GET | `/healthz` | anyone | 200 `ok` while the process serves HTTP |
//! | GET | `/readyz` | anyone | 200 when every listener is up, else 503 and why |
//!
//! The stream list follows the WHEP policy: with `auth.play = "open"` anyone may read
//! it; otherwise it needs a token, and shows the streams that token may play (the
//! admin token shows all). Every other `/api/` route needs the admin token
//! (`[api] token`), and answers 404 when none is configured, so the API is off by
//! default. Errors go through [`super::error::ApiError`], the single error mapping.
//!
//! Handlers only read lock-free counters, take the directory's short lock, and ask
//! each worker once for its sessions: nothing here slows the media path.

mod health;
mod json;
mod metrics_page;
mod recordings;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use subtle::ConstantTimeEq;

pub use health::Readiness;

use super::error::ApiError;
use super::router::Route;
use super::whip_whep::request_token;
use super::{AppState, Body};
use crate::auth::AuthError;
use crate::config::{ApiConfig, Policy};
use crate::directory::DirectoryError;
use crate::ingest::{CameraFeed, CameraSpec, Cameras, Wiring};
use crate::media::MediaError;
use crate::metrics::{AuthFailure, HttpMetrics, HttpRoute};
use crate::model::EndReason;
use crate::model::Role;
use crate::model::SessionId;

/// The OpenAPI 3.1 description of the JSON API, served at `/api/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Why the operator settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OpsSetupError {
    /// The admin token file could not be read.
    #[error("cannot read api.token_file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The admin token is unusable.
    #[error("api: {0}")]
    Invalid(String),
}

/// The `[api]` settings with the admin token read and checked (what start and
/// `check-config` both need before anything runs).
#[derive(Clone)]
pub(crate) struct OpsSettings {
    admin: Option<[u8; 32]>,
    metrics_token_required: bool,
}

impl OpsSettings {
    /// Reads the admin token (from the table or its file, through `read`) and checks it.
    pub(crate) fn read(
        config: &ApiConfig,
        read: &dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
    ) -> Result<OpsSettings, OpsSetupError> {
        let token = match (&config.token, &config.token_file) {
            (Some(t), _) => Some(t.expose().trim().to_owned()),
            (None, Some(path)) => {
                let bytes = read(path).map_err(|source| OpsSetupError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| OpsSetupError::Invalid("the token file is not UTF-8".into()))?;
                Some(text.trim().to_owned())
            }
            (None, None) => None,
        };
        if let Some(t) = &token
            && (t.len() < 16
                || crate::auth::parse_authorization(format!("Bearer {t}").as_bytes()).is_err())
        {
            return Err(OpsSetupError::Invalid(
                "the admin token must be at least 16 characters of A-Z a-z 0-9 - . _ ~ + / ="
                    .into(),
            ));
        }
        Ok(OpsSettings {
            admin: token.map(|t| sha256(t.as_bytes())),
            metrics_token_required: config.metrics_token_required,
        })
    }
}

/// What the operator routes share: the admin token, HTTP counters, the RTP ingests and
/// the readiness of every listener.
pub struct Ops {
    /// SHA-256 of the admin token; `None` turns the admin API off.
    admin: Option<[u8; 32]>,
    metrics_token_required: bool,
    /// HTTP request and authentication counters.
    pub http: HttpMetrics,
    /// The cameras, as started and as this API adds and removes them.
    pub(crate) cameras: Arc<Cameras>,
    /// What a camera added by the API is wired to.
    wiring: Wiring,
    /// Listener and worker liveness, for `/readyz`.
    pub readiness: Readiness,
    /// The recordings (`[[record]]`, and those the API starts).
    pub(crate) recordings: Arc<crate::record::Recordings>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("admin_api", &self.admin.is_some())
            .field("metrics_token_required", &self.metrics_token_required)
            .finish_non_exhaustive()
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Ops {
    /// The operator routes from their settings (read by `OpsSettings::read`) and the
    /// running camera sources.
    pub(crate) fn new(
        settings: OpsSettings,
        cameras: Arc<Cameras>,
        wiring: Wiring,
        recordings: Arc<crate::record::Recordings>,
    ) -> Ops {
        Ops {
            recordings,
            admin: settings.admin,
            metrics_token_required: settings.metrics_token_required,
            http: HttpMetrics::default(),
            cameras,
            wiring,
            readiness: Readiness::default(),
        }
    }

    fn is_admin(&self, token: Option<&str>) -> bool {
        match (&self.admin, token) {
            (Some(digest), Some(t)) => bool::from(digest.ct_eq(&sha256(t.as_bytes()))),
            _ => false,
        }
    }

    /// The admin check: 404 when the admin API is off, 401 without the admin token.
    fn require_admin(&self, token: Option<&str>) -> Result<(), ApiError> {
        if self.admin.is_none() {
            return Err(ApiError::NotFound);
        }
        match token {
            None => Err(AuthError::Missing.into()),
            Some(_) if self.is_admin(token) => Ok(()),
            Some(_) => Err(AuthError::InvalidToken("not the admin token".into()).into()),
        }
    }

    /// Counts one answered request (and its refused credential, if that was why).
    pub(crate) fn observe(&self, route: HttpRoute, status: StatusCode, auth: Option<&AuthError>) {
        self.http.request(route, status.as_u16());
        if let Some(e) = auth {
            self.http.auth_failure(match e {
                AuthError::Missing => AuthFailure::Missing,
                AuthError::Malformed(_) => AuthFailure::Malformed,
                AuthError::InvalidToken(_) => AuthFailure::InvalidToken,
                AuthError::InsufficientScope { .. } => AuthFailure::InsufficientScope,
            });
        }
    }
}

fn read_only(method: &Method) -> Result<(), ApiError> {
    if matches!(*method, Method::GET | Method::HEAD) {
        Ok(())
    } else {
        Err(ApiError::MethodNotAllowed("GET, HEAD"))
    }
}

/// Answers an operator route (`/api/…`, `/metrics`, `/healthz`, `/readyz`); any other
/// route is not this module's and gets 404.
pub(super) async fn answer(
    state: &AppState,
    req: Request<Incoming>,
    route: Route<'_>,
) -> Result<Response<Body>, ApiError> {
    let ops = &state.ops;
    let method = &req.method().clone();
    let token = || request_token(state, &req);
    match route {
        Route::Healthz => {
            read_only(method)?;
            Ok(plain(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ok\n".into(),
            ))
        }
        Route::Readyz => {
            read_only(method)?;
            ops.readiness.check().map_err(ApiError::NotReady)?;
            Ok(plain(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                "ready\n".into(),
            ))
        }
        Route::Metrics => {
            read_only(method)?;
            if ops.metrics_token_required {
                ops.require_admin(token()?.as_deref())?;
            }
            let text = metrics_page::render(
                state.media.counters(),
                state.media.dtls_starts(),
                &ops.recordings.counters,
                &state.media.directory().streams(),
                &ops.cameras.rtp(),
                &ops.http,
                state.cluster.as_deref(),
            );
            Ok(plain(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                text,
            ))
        }
        Route::Cluster => {
            ops.require_admin(token()?.as_deref())?;
            read_only(method)?;
            let cluster = state.cluster.as_ref().ok_or(ApiError::NotFound)?;
            Ok(json_response(&cluster.status().await))
        }
        Route::OpenApi => {
            read_only(method)?;
            Ok(plain(StatusCode::OK, "application/json", OPENAPI.into()))
        }
        Route::Streams => {
            read_only(method)?;
            let token = token()?;
            let visible = visible_streams(state, token.as_deref())?;
            let list = json::stream_list(state, visible).await;
            Ok(json_response(&list))
        }
        Route::Stream(name) => {
            ops.require_admin(token()?.as_deref())?;
            let view = state
                .media
                .directory()
                .stream(name)
                .ok_or(ApiError::NotFound)?;
            match *method {
                Method::GET | Method::HEAD => {
                    let detail = json::stream_detail(state, view).await;
                    Ok(json_response(&detail))
                }
                Method::DELETE => {
                    stop_stream(state, name).await?;
                    Ok(no_content())
                }
                _ => Err(ApiError::MethodNotAllowed("GET, HEAD, DELETE")),
            }
        }
        Route::ApiSession(id) => {
            ops.require_admin(token()?.as_deref())?;
            if *method != Method::DELETE {
                return Err(ApiError::MethodNotAllowed("DELETE"));
            }
            let id: SessionId = id.parse().map_err(|_| ApiError::NotFound)?;
            let info = state
                .media
                .directory()
                .session(id)
                .ok_or(MediaError::Directory(DirectoryError::UnknownSession))?;
            state.media.end_session(&info, EndReason::Kicked).await?;
            tracing::info!(stream = %info.stream, session = %id, "session kicked by the operator");
            Ok(no_content())
        }
        Route::Sources => {
            ops.require_admin(token()?.as_deref())?;
            match *method {
                Method::GET | Method::HEAD => {
                    Ok(json_response(&json::source_list(&ops.cameras.feeds())))
                }
                Method::POST => {
                    let body = super::whip_whep::read_body(req, super::whip_whep::MAX_BODY).await?;
                    let feed = add_camera(state, &body)?;
                    let mut r = json_response(&json::source_entry(&feed));
                    *r.status_mut() = StatusCode::CREATED;
                    Ok(r)
                }
                _ => Err(ApiError::MethodNotAllowed("GET, HEAD, POST")),
            }
        }
        Route::Source(name) => {
            ops.require_admin(token()?.as_deref())?;
            match *method {
                Method::GET | Method::HEAD => {
                    let feed = ops.cameras.get(name).ok_or(ApiError::NotFound)?;
                    Ok(json_response(&json::source_entry(&feed)))
                }
                Method::DELETE => {
                    remove_camera(state, name).await?;
                    Ok(no_content())
                }
                _ => Err(ApiError::MethodNotAllowed("GET, HEAD, DELETE")),
            }
        }
        Route::StreamRecording(name) => {
            ops.require_admin(token()?.as_deref())?;
            recordings::stream_recording(state, method, name)
        }
        Route::Recordings => {
            ops.require_admin(token()?.as_deref())?;
            recordings::list(state, method).await
        }
        Route::RecordingFile(stream, file) => {
            ops.require_admin(token()?.as_deref())?;
            recordings::file(state, method, req.headers(), stream, file).await
        }
        Route::Reload => {
            ops.require_admin(token()?.as_deref())?;
            if *method != Method::POST {
                return Err(ApiError::MethodNotAllowed("POST"));
            }
            match state.reloader.reload(state).await {
                Ok(what) => {
                    tracing::info!("configuration {what} (by the operator)");
                    Ok(json_response(&serde_json::json!({ "result": what })))
                }
                Err(e) => {
                    tracing::warn!("configuration not reloaded, keeping the old one: {e}");
                    Err(ApiError::BadRequest(format!(
                        "not reloaded, the old configuration stays: {e}"
                    )))
                }
            }
        }
        Route::SourceRestart(name) => {
            ops.require_admin(token()?.as_deref())?;
            if *method != Method::POST {
                return Err(ApiError::MethodNotAllowed("POST"));
            }
            match ops.cameras.get(name) {
                Some(CameraFeed::Rtsp(r) | CameraFeed::Pull(r)) => {
                    r.restart();
                    tracing::info!(stream = name, "source restarted by the operator");
                    Ok(no_content())
                }
                Some(CameraFeed::Rtp(_)) => Err(ApiError::BadRequest(format!(
                    "{name} is an RTP camera: it pushes to wishd, there is no connection to restart"
                ))),
                None => Err(ApiError::NotFound),
            }
        }
        Route::OtherApi => {
            ops.require_admin(token()?.as_deref())?;
            Err(ApiError::NotFound)
        }
        _ => Err(ApiError::NotFound),
    }
}

/// Which streams a caller of `GET /api/streams` may see: all with open play or the
/// admin token, else those a valid play token grants.
fn visible_streams(
    state: &AppState,
    token: Option<&str>,
) -> Result<Vec<crate::directory::StreamView>, ApiError> {
    let all = state.media.directory().streams();
    let rules = state.rules.load();
    if state.ops.is_admin(token) || rules.auth.policy(Role::Viewer) == Policy::Open {
        return Ok(all);
    }
    let token = token.ok_or(AuthError::Missing)?;
    let rights = rules.auth.validate(token)?;
    if !rights.actions.contains(&Role::Viewer) {
        return Err(AuthError::InsufficientScope {
            action: Role::Viewer,
        }
        .into());
    }
    Ok(all
        .into_iter()
        .filter(|v| rights.allows(Role::Viewer, &v.shared.name))
        .collect())
}

/// A source as `POST /api/sources` takes it: one `[[rtp]]`, `[[rtsp]]` or `[[pull]]`
/// table, as JSON.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum NewCamera {
    Rtp(crate::config::RtpEntry),
    Rtsp(crate::config::RtspEntry),
    Pull(crate::config::PullEntry),
}

/// Starts the camera a `POST /api/sources` body describes.
fn add_camera(state: &AppState, body: &[u8]) -> Result<CameraFeed, ApiError> {
    let new: NewCamera = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "expected {{\"rtp\": {{…}}}}, {{\"rtsp\": {{…}}}} or {{\"pull\": {{…}}}} with the keys of [[rtp]], [[rtsp]] or [[pull]]: {e}"
        ))
    })?;
    let ops = &state.ops;
    let stream = match &new {
        NewCamera::Rtp(e) => e.stream.clone(),
        NewCamera::Rtsp(e) => e.stream.clone(),
        NewCamera::Pull(e) => e.stream.clone(),
    };
    if !crate::model::valid_stream_name(&stream) {
        return Err(ApiError::BadRequest(crate::model::STREAM_NAME_RULE.into()));
    }
    if ops.cameras.get(&stream).is_some() || state.media.directory().stream(&stream).is_some() {
        return Err(MediaError::Directory(DirectoryError::SourceLive(stream)).into());
    }
    let spec = match new {
        NewCamera::Rtp(entry) => {
            CameraSpec::Rtp(crate::ingest::resolve(&entry).map_err(ApiError::BadRequest)?)
        }
        NewCamera::Rtsp(entry) => {
            if entry.credentials_file.is_some() {
                return Err(ApiError::BadRequest(
                    "credentials_file is for the configuration file; give credentials in the url"
                        .into(),
                ));
            }
            let no_files = |_: &Path| Err(std::io::Error::other("no files"));
            let spec =
                crate::ingest::rtsp::resolve(&entry, &no_files).map_err(ApiError::BadRequest)?;
            CameraSpec::Rtsp(spec)
        }
        NewCamera::Pull(entry) => {
            CameraSpec::Pull(crate::ingest::pull::resolve(&entry).map_err(ApiError::BadRequest)?)
        }
    };
    let feed = start_camera(state, spec, false)?;
    tracing::info!(stream = %stream, "camera added by the operator");
    Ok(feed)
}

/// Starts a camera: one the API adds, or (`configured`) one of the configuration
/// file at a reload.
pub(crate) fn start_camera(
    state: &AppState,
    spec: CameraSpec,
    configured: bool,
) -> Result<CameraFeed, ApiError> {
    let ops = &state.ops;
    Ok(match spec {
        CameraSpec::Rtp(spec) => {
            let (ingest, task) = ops
                .cameras
                .start_rtp(spec, &ops.wiring, configured)
                .map_err(|e| match e {
                    crate::ingest::CameraError::Taken(d) => {
                        ApiError::Media(MediaError::Directory(d))
                    }
                    other => ApiError::BadRequest(other.to_string()),
                })?;
            ops.readiness.watch(ingest.readiness_name(), task);
            CameraFeed::Rtp(ingest)
        }
        CameraSpec::Rtsp(spec) => {
            CameraFeed::Rtsp(ops.cameras.start_rtsp(spec, &ops.wiring, configured))
        }
        CameraSpec::Pull(spec) => {
            CameraFeed::Pull(ops.cameras.start_pull(spec, &ops.wiring, configured))
        }
    })
}

/// Stops a camera and removes its stream: its viewers end now.
pub(crate) async fn remove_camera(state: &AppState, name: &str) -> Result<(), ApiError> {
    let ops = &state.ops;
    let feed = ops.cameras.get(name).ok_or(ApiError::NotFound)?;
    if let Some(task) = ops.cameras.remove(name) {
        let _ = task.await;
    }
    if let CameraFeed::Rtp(r) = &feed {
        ops.readiness.unwatch(&r.readiness_name());
    }
    state.media.remove_camera(name, EndReason::StreamStopped);
    tracing::info!(stream = name, "camera removed by the operator");
    Ok(())
}

/// Stops a stream: its publisher and every viewer end now, through each worker's
/// single teardown path.
async fn stop_stream(state: &AppState, name: &str) -> Result<(), ApiError> {
    if !state
        .media
        .stop_stream(name, EndReason::StreamStopped)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    tracing::info!(stream = name, "stream stopped by the operator");
    Ok(())
}

fn plain(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(super::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json_response(value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    plain(StatusCode::OK, "application/json", body)
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(super::full(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_wiring() -> Wiring {
        let c = crate::config::Config::default();
        Wiring {
            directory: Arc::new(crate::directory::Directory::new(
                c.publisher_grace,
                c.publisher_takeover,
                c.source_silence,
            )),
            peers: Vec::new(),
            media_counters: Default::default(),
            timeout: c.rtp_timeout,
            silence: c.source_silence,
        }
    }

    #[test]
    fn admin_token_is_checked_and_off_without_one() {
        let read = |_: &Path| Ok(b"  file-token-0123456789\n".to_vec());
        let off = Ops::new(
            OpsSettings::read(&ApiConfig::default(), &read).unwrap(),
            Default::default(),
            test_wiring(),
            Default::default(),
        );
        assert!(matches!(
            off.require_admin(Some("x")),
            Err(ApiError::NotFound)
        ));
        let cfg = ApiConfig {
            token_file: Some("/etc/wishd/admin.token".into()),
            ..ApiConfig::default()
        };
        let on = Ops::new(
            OpsSettings::read(&cfg, &read).unwrap(),
            Default::default(),
            test_wiring(),
            Default::default(),
        );
        assert!(on.require_admin(Some("file-token-0123456789")).is_ok());
        assert!(matches!(
            on.require_admin(None),
            Err(ApiError::Auth(AuthError::Missing))
        ));
        assert!(matches!(
            on.require_admin(Some("file-token-012345678")),
            Err(ApiError::Auth(AuthError::InvalidToken(_)))
        ));
        let short = ApiConfig {
            token: Some(crate::config::Secret::new("short")),
            ..ApiConfig::default()
        };
        assert!(OpsSettings::read(&short, &read).is_err());
    }

    #[test]
    fn the_openapi_file_is_valid_json_naming_every_route() {
        let v: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3.1"));
        for p in [
            "/api/streams",
            "/api/streams/{name}",
            "/api/sessions/{id}",
            "/api/sources",
            "/api/sources/{stream}/restart",
            "/api/reload",
            "/metrics",
            "/healthz",
            "/readyz",
        ] {
            assert!(v["paths"][p].is_object(), "{p} missing");
        }
    }
}
