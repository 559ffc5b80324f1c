//! The WHEP server-sent events extension (draft-ietf-wish-whep §4.9.1): a viewer's
//! 201 links `…/sse`; a POST there (optionally a JSON array of event types) creates an
//! event stream and answers 201 with its URL; a GET on that URL is the stream
//! (`text/event-stream`, one `event:` and one `data:` line per event), a DELETE ends
//! it, and every stream of a session ends with the session.
//!
//! The stream's URL carries a random 128-bit id and is given only to a client that
//! was allowed to create it, so a GET needs no token: `EventSource` cannot send one.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Either;
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::{broadcast, mpsc};
use tracing::info;

use super::error::{ApiError, text};
use super::whip_whep::{authorize_session, check_session, options_response, read_body};
use super::{AppState, Body, location};
use crate::directory::{Event, EventKind, Listening, SessionInfo};
use crate::model::Role;

/// Methods of the URL that creates event streams.
const EVENTS_ALLOW: &str = "POST, OPTIONS";
/// Methods of one event stream.
const STREAM_ALLOW: &str = "GET, DELETE, OPTIONS";

/// A comment line this often keeps an idle stream open through proxies and the
/// server's own idle timeout, and finds a client that went away.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Longest list of event types accepted.
const MAX_LIST: usize = 4096;

/// The `Link` of a viewer's 201: where its event streams are created, and the types.
pub(crate) fn link(session_url: &str) -> String {
    let events: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
    format!(
        "<{session_url}/sse>; rel=\"urn:ietf:params:whep:ext:core:server-sent-events\"; events=\"{}\"",
        events.join(",")
    )
}

/// The body of an event stream: what its task writes, as it comes.
pub(crate) struct EventBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// A request on `/whep/{stream}/{session}/sse`.
pub(super) async fn events(
    state: &AppState,
    req: Request<Incoming>,
    stream: &str,
    session: &str,
) -> Result<Response<Body>, ApiError> {
    let id = check_session(stream, session)?;
    match *req.method() {
        Method::POST => {
            authorize_session(state, &req, id, Role::Viewer, stream)?;
            let base = location::base(&req, state.public_url.as_deref());
            let body = read_body(req, MAX_LIST).await?;
            let kinds = requested(&body)?;
            let sub = state.media.directory().subscriptions.add(id, kinds);
            let url = format!("{base}/whep/{stream}/{session}/sse/{sub:032x}");
            info!(stream, session = %id, "event stream created");
            let mut r = text(StatusCode::CREATED, "event stream created");
            if let Ok(v) = HeaderValue::from_str(&url) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Ok(r)
        }
        Method::OPTIONS => Ok(options_response(EVENTS_ALLOW)),
        _ => Err(ApiError::MethodNotAllowed(EVENTS_ALLOW)),
    }
}

/// The event types a POST asks for: a JSON array of names (all of them for an empty
/// body). A type wishd does not send is refused, so no stream is created (the
/// events draft §4).
fn requested(body: &[u8]) -> Result<Vec<EventKind>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(EventKind::ALL.to_vec());
    }
    let names: Vec<String> = serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!("the body must be a JSON array of event types: {e}"))
    })?;
    let mut kinds = Vec::with_capacity(names.len());
    for name in &names {
        let kind = EventKind::parse(name).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unsupported event type {name:?} (wishd sends {})",
                EventKind::ALL.map(EventKind::name).join(", ")
            ))
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    Ok(kinds)
}

/// A request on one event stream, `/whep/{stream}/{session}/sse/{id}`.
pub(super) async fn event_stream(
    state: &AppState,
    req: Request<Incoming>,
    stream: &str,
    session: &str,
    sub: &str,
) -> Result<Response<Body>, ApiError> {
    let id = check_session(stream, session)?;
    let sub = u128::from_str_radix(sub, 16).map_err(|_| ApiError::NotFound)?;
    let subscriptions = &state.media.directory().subscriptions;
    match *req.method() {
        Method::GET => {
            let info = state.media.session(id, Role::Viewer, stream)?;
            let listening = subscriptions.listen(id, sub).ok_or(ApiError::NotFound)?;
            let shared = state
                .media
                .directory()
                .stream(stream)
                .ok_or(ApiError::NotFound)?
                .shared;
            let (rx, now) = shared.events.subscribe();
            Ok(open(&info, listening, rx, now))
        }
        Method::DELETE => {
            authorize_session(state, &req, id, Role::Viewer, stream)?;
            if subscriptions.remove(id, sub) {
                info!(stream, session = %id, "event stream deleted");
                Ok(text(StatusCode::OK, "event stream ended"))
            } else {
                Err(ApiError::NotFound)
            }
        }
        Method::OPTIONS => Ok(options_response(STREAM_ALLOW)),
        _ => Err(ApiError::MethodNotAllowed(STREAM_ALLOW)),
    }
}

/// The 200 of an event stream, fed by a task until the stream or its session ends or
/// the client goes away.
fn open(
    info: &SessionInfo,
    listening: Listening,
    mut events: broadcast::Receiver<Event>,
    now: Vec<Event>,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let media_id = info
        .lines
        .video
        .as_ref()
        .map_or_else(|| "0".to_owned(), |(index, _)| index.to_string());
    let Listening { kinds, mut closed } = listening;
    tokio::spawn(async move {
        let wanted = |e: &Event| kinds.contains(&e.kind);
        for e in now.iter().filter(|e| wanted(e)) {
            if tx.send(Bytes::from(e.to_sse(&media_id))).await.is_err() {
                return;
            }
        }
        let mut keepalive = tokio::time::interval(KEEPALIVE);
        keepalive.tick().await;
        loop {
            // Events first: a `reconnect` sent as the session ends still goes out.
            let next = tokio::select! {
                biased;
                e = events.recv() => match e {
                    Ok(e) if wanted(&e) => Bytes::from(e.to_sse(&media_id)),
                    Ok(_) => continue,
                    // Fell behind: the next events tell the state again.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = closed.changed() => break,
                _ = keepalive.tick() => Bytes::from_static(b": keep-alive\n\n"),
                _ = tx.closed() => break,
            };
            if tx.send(next).await.is_err() {
                break;
            }
        }
    });
    let mut r = Response::new(Either::Right(EventBody { rx }));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_known_types_is_taken_and_an_unknown_one_refused() {
        assert_eq!(
            requested(br#"["viewercount","active","active"]"#).unwrap(),
            [EventKind::Viewercount, EventKind::Active]
        );
        assert_eq!(requested(b"").unwrap(), EventKind::ALL);
        let e = requested(br#"["active","bogus"]"#).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        assert!(requested(b"{\"a\":1}").is_err());
        assert!(requested(b"[1]").is_err());
    }

    #[test]
    fn the_link_names_the_extension_and_every_event_type() {
        assert_eq!(
            link("http://h/whep/s/1"),
            "<http://h/whep/s/1/sse>; rel=\"urn:ietf:params:whep:ext:core:server-sent-events\"; \
             events=\"active,inactive,layers,reconnect,viewercount\""
        );
    }
}
