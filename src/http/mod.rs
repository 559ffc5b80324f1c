//! The HTTP edge: every request wishd answers, from the accept loop to the status
//! line. Nothing below it knows HTTP.
//!
//! | method | path | does |
//! | --- | --- | --- |
//! | POST | `/whip/{stream}` | create a publisher session from an SDP offer → 201 |
//! | POST | `/whep/{stream}` | create a viewer session from an SDP offer → 201 |
//! | PATCH | the session URL | trickle ICE → 204, ICE restart → 200 (RFC 9725 §4.3) |
//! | DELETE | `/whip/{stream}/{session}`, `/whep/{stream}/{session}` | end the session → 200 |
//! | POST | `/whep/{stream}/{session}/sse` | open a server-sent event stream → 201 ([`events`]) |
//! | GET, DELETE | `/whep/{stream}/{session}/sse/{id}` | the event stream → 200 `text/event-stream`; end it |
//! | POST | `/whep/{stream}/{session}/layer` | choose the viewer's simulcast layer → 200 ([`layers`]) |
//! | GET, HEAD | endpoint or session | empty 200 (RFC 9725 §4.1; WHEP discoverability: `Content-Type: application/sdp`) |
//! | OPTIONS | any of the above | CORS preflight / discovery → 200 with `Accept-Post` (endpoint) or `Accept-Patch` (session), `Allow`; ICE servers when authorised |
//! | GET, DELETE | `/api/…`, `/metrics`, `/healthz`, `/readyz` | the operator's routes ([`ops`]) |
//! | GET, HEAD | `/`, `/publish.html`, `/watch.html`, `/player.js`, … | the web pages ([`web`]) |
//!
//! One module per concern: [`router`] parses a path once, [`error`] maps every error
//! to its status once, [`whip_whep`] answers the media resources, [`ops`] the
//! operator's, [`serve`] runs the listeners (TLS from [`tls`], byte deadlines from
//! [`idle`]), and [`cors`], [`ratelimit`], [`location`], [`ice_servers`],
//! [`redirect`] and [`problem`] each do what their name says.
//!
//! Other methods get 405 with `Allow`. A POST whose stream matches a `[[redirects]]`
//! rule gets 307. A 201 carries an absolute `Location` and the ICE servers as `Link`
//! headers. Every error answer is an RFC 9457 `application/problem+json` body whose
//! `detail` is a one-line reason, and is logged once.
//!
//! Before a handler runs: POST/PATCH/DELETE pass the per-address rate limit (429); a
//! POST is authorized by [`crate::auth`] for its action and stream (401/403/400 per
//! RFC 6750) and counted against the session cap (503); a request on a session is
//! checked against the rights the session was created with. OPTIONS never needs a
//! token. The query string (which may carry `?token=`) is never logged.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Request, Response};
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::config::RedirectConfig;
use crate::media::Media;

mod cors;
pub(crate) mod error;
mod events;
pub(crate) mod ice_servers;
pub(crate) mod idle;
mod layers;
pub(crate) mod location;
pub mod ops;
pub(crate) mod problem;
pub(crate) mod ratelimit;
pub(crate) mod redirect;
pub mod reload;
pub(crate) mod router;
pub mod serve;
pub mod tls;
pub(crate) mod web;
mod whip_whep;

pub(crate) use error::ApiError;
use ice_servers::IceServers;
use ratelimit::RateLimiter;
use router::Route;

/// The response body type: whole, or a stream of server-sent events.
pub(crate) type Body = Either<Full<Bytes>, events::EventBody>;

/// A whole response body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Left(Full::new(bytes.into()))
}

/// What the handlers share.
pub(crate) struct AppState {
    /// Session setup and teardown.
    pub(crate) media: Arc<Media>,
    /// This node's side of the cluster, when `[cluster]` is configured.
    pub(crate) cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Seconds in `Retry-After` when a WHEP stream has no source.
    pub(crate) retry_after_secs: u32,
    /// Tokens, JWT keys, ICE servers and redirects: replaced whole by a reload.
    pub(crate) rules: arc_swap::ArcSwap<Rules>,
    /// How the configuration is read again (SIGHUP, `POST /api/reload`).
    pub(crate) reloader: reload::Reloader,
    /// Origins allowed by CORS (`*` allows all).
    pub(crate) cors_origins: Vec<String>,
    /// Per-address limit on POST/PATCH/DELETE.
    pub(crate) limiter: RateLimiter,
    /// Cap on sessions (0: none).
    pub(crate) max_sessions: usize,
    /// POSTs past the cap check whose session is not made yet: counted against the
    /// cap, so that a flood of POSTs at once cannot pass it together.
    pub(crate) sessions_pending: std::sync::atomic::AtomicUsize,
    /// The configured base of absolute session URLs.
    pub(crate) public_url: Option<String>,
    /// The operator's API, metrics and readiness ([`ops`]).
    pub(crate) ops: Arc<ops::Ops>,
}

/// What a configuration reload may change while sessions go on: checked whole before
/// it replaces the rules in force, so a request sees the old rules or the new ones.
pub(crate) struct Rules {
    /// Who may publish and play.
    pub(crate) auth: Authenticator,
    /// STUN/TURN servers for clients (`Link: rel="ice-server"`).
    pub(crate) ice_servers: IceServers,
    /// 307 rules for session creation.
    pub(crate) redirects: Vec<RedirectConfig>,
}

/// Handles one request. Never fails: errors become responses here.
pub(crate) async fn handle(
    state: Arc<AppState>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    // The path only: a `?token=` query is never logged.
    let path = req.uri().path().to_owned();
    let route = Route::of(&path);
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
        Ok(()) => dispatch(&state, req, route).await,
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
    cors::add_cors(
        resp.headers_mut(),
        origin.as_ref(),
        &state.cors_origins,
        preflight,
    );
    state
        .ops
        .observe(route.metric(), resp.status(), auth_failure.as_ref());
    Ok(resp)
}

/// Hands a request to the module that answers its route.
async fn dispatch(
    state: &AppState,
    req: Request<Incoming>,
    route: Route<'_>,
) -> Result<Response<Body>, ApiError> {
    match route {
        Route::Endpoint(role, stream) => whip_whep::endpoint(state, req, role, stream).await,
        Route::Session(role, stream, id) => whip_whep::session(state, req, role, stream, id).await,
        Route::Events(stream, id) => events::events(state, req, stream, id).await,
        Route::EventStream(stream, id, sub) => {
            events::event_stream(state, req, stream, id, sub).await
        }
        Route::Layer(stream, id) => layers::layer(state, req, stream, id).await,
        Route::Page => match web::respond(req.method(), req.uri().path(), req.headers()) {
            Some(page) => page.map_err(ApiError::MethodNotAllowed),
            None => Err(ApiError::NotFound),
        },
        Route::NotFound => Err(ApiError::NotFound),
        _ => ops::answer(state, req, route).await,
    }
}
