//! The one parse of a request path: which resource it names, and the label its
//! requests are counted under in `wishd_http_requests_total`.

use super::web;
use crate::metrics::HttpRoute;
use crate::model::Role;

/// Every resource wishd serves over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `/whip/{stream}` or `/whep/{stream}` (a trailing slash allowed).
    Endpoint(Role, &'a str),
    /// `/whip/{stream}/{session}` or `/whep/{stream}/{session}`.
    Session(Role, &'a str, &'a str),
    /// `/whep/{stream}/{session}/sse`: where a viewer opens event streams.
    Events(&'a str, &'a str),
    /// `/whep/{stream}/{session}/sse/{id}`: one event stream.
    EventStream(&'a str, &'a str, &'a str),
    /// `/whep/{stream}/{session}/layer`: the viewer's layer choice.
    Layer(&'a str, &'a str),
    /// `/healthz`
    Healthz,
    /// `/readyz`
    Readyz,
    /// `/metrics`
    Metrics,
    /// `/api/openapi.json`
    OpenApi,
    /// `/api/streams`
    Streams,
    /// `/api/streams/{name}`
    Stream(&'a str),
    /// `/api/sessions/{id}`
    ApiSession(&'a str),
    /// `/api/sources`: the configured cameras (RTP and RTSP) and where each stands.
    Sources,
    /// `/api/reload`: read the configuration again.
    Reload,
    /// `/api/sources/{stream}`: one camera.
    Source(&'a str),
    /// `/api/sources/{stream}/restart`
    SourceRestart(&'a str),
    /// `/api/streams/{name}/recording`: start or stop recording it.
    StreamRecording(&'a str),
    /// `/api/recordings`: every recorded file.
    Recordings,
    /// `/api/recordings/{stream}/{file}`: one recorded file.
    RecordingFile(&'a str, &'a str),
    /// `/api/cluster`: the nodes, their streams, this node's relays.
    Cluster,
    /// Any other path under `/api`.
    OtherApi,
    /// A page or script of the web UI ([`web`]).
    Page,
    /// Nothing is served here.
    NotFound,
}

impl<'a> Route<'a> {
    /// The resource `path` names.
    pub(crate) fn of(path: &'a str) -> Route<'a> {
        match path {
            "/healthz" => return Route::Healthz,
            "/readyz" => return Route::Readyz,
            "/metrics" => return Route::Metrics,
            "/api/openapi.json" => return Route::OpenApi,
            "/api/streams" | "/api/streams/" => return Route::Streams,
            "/api/sources" | "/api/sources/" => return Route::Sources,
            "/api/reload" => return Route::Reload,
            "/api/cluster" | "/api/cluster/" => return Route::Cluster,
            "/api/recordings" | "/api/recordings/" => return Route::Recordings,
            _ => {}
        }
        if let Some(rest) = path.strip_prefix("/api")
            && (rest.is_empty() || rest.starts_with('/'))
        {
            if let Some(name) = rest.strip_prefix("/streams/")
                && !name.contains('/')
            {
                return Route::Stream(name);
            }
            if let Some(name) = rest
                .strip_prefix("/streams/")
                .and_then(|r| r.strip_suffix("/recording"))
                && !name.is_empty()
                && !name.contains('/')
            {
                return Route::StreamRecording(name);
            }
            if let Some((stream, file)) = rest
                .strip_prefix("/recordings/")
                .and_then(|r| r.split_once('/'))
                && !stream.is_empty()
                && !file.is_empty()
                && !file.contains('/')
            {
                return Route::RecordingFile(stream, file);
            }
            if let Some(id) = rest.strip_prefix("/sessions/")
                && !id.contains('/')
            {
                return Route::ApiSession(id);
            }
            if let Some(name) = rest
                .strip_prefix("/sources/")
                .and_then(|r| r.strip_suffix("/restart"))
                && !name.is_empty()
                && !name.contains('/')
            {
                return Route::SourceRestart(name);
            }
            if let Some(name) = rest.strip_prefix("/sources/")
                && !name.is_empty()
                && !name.contains('/')
            {
                return Route::Source(name);
            }
            return Route::OtherApi;
        }
        if web::serves(path) {
            return Route::Page;
        }
        Self::whip_whep(path).unwrap_or(Route::NotFound)
    }

    fn whip_whep(path: &'a str) -> Option<Route<'a>> {
        let mut parts = path.strip_prefix('/')?.split('/');
        let role = match parts.next()? {
            "whip" => Role::Publisher,
            "whep" => Role::Viewer,
            _ => return None,
        };
        let stream = parts.next()?;
        let rest: Vec<&str> = parts.take(4).collect();
        match (role, rest.as_slice()) {
            (_, []) | (_, [""]) => Some(Route::Endpoint(role, stream)),
            (_, [id]) => Some(Route::Session(role, stream, id)),
            (Role::Viewer, [id, "sse"]) => Some(Route::Events(stream, id)),
            (Role::Viewer, [id, "sse", sub]) => Some(Route::EventStream(stream, id, sub)),
            (Role::Viewer, [id, "layer"]) => Some(Route::Layer(stream, id)),
            _ => None,
        }
    }

    /// The label of the route in the HTTP metrics (by shape, never by stream name).
    pub(crate) fn metric(&self) -> HttpRoute {
        match self {
            Route::Endpoint(Role::Publisher, _) => HttpRoute::Whip,
            Route::Session(Role::Publisher, _, _) => HttpRoute::WhipSession,
            Route::Endpoint(Role::Viewer, _) => HttpRoute::Whep,
            Route::Session(Role::Viewer, _, _)
            | Route::Events(..)
            | Route::EventStream(..)
            | Route::Layer(..) => HttpRoute::WhepSession,
            Route::Healthz | Route::Readyz => HttpRoute::Health,
            Route::Metrics => HttpRoute::Metrics,
            Route::OpenApi
            | Route::Streams
            | Route::Stream(_)
            | Route::ApiSession(_)
            | Route::Sources
            | Route::Reload
            | Route::Cluster
            | Route::Source(_)
            | Route::SourceRestart(_)
            | Route::StreamRecording(_)
            | Route::Recordings
            | Route::RecordingFile(..)
            | Route::OtherApi => HttpRoute::Api,
            Route::Page | Route::NotFound => HttpRoute::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_split_endpoint_and_session() {
        assert_eq!(
            Route::of("/whip/cam1"),
            Route::Endpoint(Role::Publisher, "cam1")
        );
        assert_eq!(
            Route::of("/whep/cam1/"),
            Route::Endpoint(Role::Viewer, "cam1")
        );
        assert_eq!(
            Route::of("/whep/cam1/abc"),
            Route::Session(Role::Viewer, "cam1", "abc")
        );
        assert_eq!(Route::of("/whip/a/b/c"), Route::NotFound);
        assert_eq!(
            Route::of("/whep/cam1/abc/sse"),
            Route::Events("cam1", "abc")
        );
        assert_eq!(
            Route::of("/whep/cam1/abc/sse/9f"),
            Route::EventStream("cam1", "abc", "9f")
        );
        assert_eq!(
            Route::of("/whep/cam1/abc/layer"),
            Route::Layer("cam1", "abc")
        );
        assert_eq!(Route::of("/whip/cam1/abc/layer"), Route::NotFound);
        assert_eq!(Route::of("/whep/cam1/abc/sse/9f/x"), Route::NotFound);
        assert_eq!(Route::of("/other/a"), Route::NotFound);
        assert_eq!(Route::of(""), Route::NotFound);
    }

    #[test]
    fn operator_routes_are_split_from_media_routes() {
        assert_eq!(
            Route::of("/whip/cam"),
            Route::Endpoint(Role::Publisher, "cam")
        );
        assert_eq!(Route::of("/apix"), Route::NotFound);
        assert_eq!(Route::of("/api"), Route::OtherApi);
        assert_eq!(Route::of("/api/streams"), Route::Streams);
        assert_eq!(Route::of("/api/streams/cam"), Route::Stream("cam"));
        assert_eq!(Route::of("/api/streams/cam/x"), Route::OtherApi);
        assert_eq!(Route::of("/api/sessions/00ff"), Route::ApiSession("00ff"));
        assert_eq!(
            Route::of("/api/streams/cam/recording"),
            Route::StreamRecording("cam")
        );
        assert_eq!(Route::of("/api/recordings"), Route::Recordings);
        assert_eq!(
            Route::of("/api/recordings/cam/cam_1.mp4"),
            Route::RecordingFile("cam", "cam_1.mp4")
        );
        assert_eq!(Route::of("/api/recordings/cam/a/b.mp4"), Route::OtherApi);
        assert_eq!(Route::of("/api/nothing"), Route::OtherApi);
        assert_eq!(Route::of("/api/openapi.json"), Route::OpenApi);
        assert_eq!(Route::of("/metrics"), Route::Metrics);
        assert_eq!(Route::of("/readyz"), Route::Readyz);
        assert_eq!(Route::of("/"), Route::Page);
        assert_eq!(Route::of("/player.js"), Route::Page);
    }

    #[test]
    fn routes_are_labelled_by_shape_not_by_name() {
        let label = |p| Route::of(p).metric();
        assert_eq!(label("/whip/cam"), HttpRoute::Whip);
        assert_eq!(label("/whip/cam/"), HttpRoute::Whip);
        assert_eq!(label("/whep/cam/abc"), HttpRoute::WhepSession);
        assert_eq!(label("/api/streams"), HttpRoute::Api);
        assert_eq!(label("/readyz"), HttpRoute::Health);
        assert_eq!(label("/favicon.ico"), HttpRoute::Other);
    }
}
