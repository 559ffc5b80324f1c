//! The WHEP layer extension (draft-ietf-wish-whep §4.9.2): a viewer's 201 links
//! `…/layer`, where a POST of a JSON object chooses its video's simulcast layer:
//! `{"mediaId": "1", "rid": "q"}` pins one, `maxWidth`/`maxHeight` bound the automatic
//! choice, and `{"mediaId": "1"}` alone (or `{}`) goes back to automatic. wishd
//! forwards simulcast layers, so SVC's spatial and temporal layer ids are refused.

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use tracing::info;

use super::error::{ApiError, text};
use super::whip_whep::{authorize_session, check_session, options_response, read_body};
use super::{AppState, Body};
use crate::media::LayerChoice;
use crate::model::Role;

/// Methods of the layer URL.
const LAYER_ALLOW: &str = "POST, OPTIONS";

/// Longest request body (a handful of fields).
const MAX_REQUEST: usize = 4096;

/// The `Link` of a viewer's 201: where its layer is chosen.
pub(crate) fn link(session_url: &str) -> String {
    format!("<{session_url}/layer>; rel=\"urn:ietf:params:whep:ext:core:layer\"")
}

/// What a player may send (the draft's fields; others are ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayerRequest {
    media_id: Option<String>,
    rid: Option<String>,
    spatial_layer_id: Option<serde_json::Value>,
    temporal_layer_id: Option<serde_json::Value>,
    max_spatial_layer_id: Option<serde_json::Value>,
    max_temporal_layer_id: Option<serde_json::Value>,
    max_width: Option<u32>,
    max_height: Option<u32>,
}

/// The choice a request makes, for a viewer whose video is the m-line `video`
/// (index in its offer, mid): `mediaId` may name it by either.
fn read(body: &[u8], video: Option<&(usize, String)>) -> Result<LayerChoice, ApiError> {
    let req: LayerRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LayerRequest::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the body must be a JSON object: {e}")))?
    };
    if let Some(id) = &req.media_id {
        let named = video.is_some_and(|(index, mid)| *id == index.to_string() || id == mid);
        if !named {
            return Err(ApiError::BadRequest(format!(
                "mediaId {id:?} is not the session's video m-line{}",
                video.map_or(String::new(), |(i, _)| format!(" ({i})"))
            )));
        }
    }
    if req.spatial_layer_id.is_some()
        || req.temporal_layer_id.is_some()
        || req.max_spatial_layer_id.is_some()
        || req.max_temporal_layer_id.is_some()
    {
        return Err(ApiError::BadRequest(
            "wishd forwards simulcast layers: choose one by rid (spatial and temporal layer ids are not supported)".into(),
        ));
    }
    Ok(match (req.rid, req.max_width, req.max_height) {
        (Some(rid), _, _) => LayerChoice::Rid(rid),
        (None, None, None) => LayerChoice::Auto,
        (None, max_width, max_height) => LayerChoice::Cap {
            max_width,
            max_height,
        },
    })
}

/// A request on `/whep/{stream}/{session}/layer`.
pub(super) async fn layer(
    state: &AppState,
    req: Request<Incoming>,
    stream: &str,
    session: &str,
) -> Result<Response<Body>, ApiError> {
    let id = check_session(stream, session)?;
    match *req.method() {
        Method::POST => {
            authorize_session(state, &req, id, Role::Viewer, stream)?;
            let info = state.media.session(id, Role::Viewer, stream)?;
            let body = read_body(req, MAX_REQUEST).await?;
            let choice = read(&body, info.lines.video.as_ref())?;
            state.media.select_layer(&info, choice.clone()).await?;
            info!(stream, session = %id, ?choice, "layer chosen by the player");
            Ok(text(StatusCode::OK, "layer choice taken"))
        }
        Method::OPTIONS => Ok(options_response(LAYER_ALLOW)),
        _ => Err(ApiError::MethodNotAllowed(LAYER_ALLOW)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rid_pins_a_cap_bounds_and_the_media_id_alone_is_automatic() {
        let video = (1, "1".to_owned());
        let v = Some(&video);
        assert_eq!(
            read(br#"{"mediaId":"1","rid":"q"}"#, v).unwrap(),
            LayerChoice::Rid("q".into())
        );
        assert_eq!(read(br#"{"mediaId":"1"}"#, v).unwrap(), LayerChoice::Auto);
        assert_eq!(read(b"{}", v).unwrap(), LayerChoice::Auto);
        assert_eq!(read(b"", v).unwrap(), LayerChoice::Auto);
        assert_eq!(
            read(br#"{"maxHeight":360}"#, v).unwrap(),
            LayerChoice::Cap {
                max_width: None,
                max_height: Some(360)
            }
        );
    }

    #[test]
    fn another_media_id_svc_ids_and_bad_json_are_refused() {
        let video = (1, "v".to_owned());
        let v = Some(&video);
        assert_eq!(read(br#"{"mediaId":"v"}"#, v).unwrap(), LayerChoice::Auto);
        for bad in [
            &br#"{"mediaId":"0","rid":"q"}"#[..],
            br#"{"spatialLayerId":1}"#,
            br#"{"mediaId":"1","temporalLayerId":0}"#,
            b"[1]",
            b"{",
        ] {
            let e = read(bad, v).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e}");
        }
        assert!(read(br#"{"mediaId":"1"}"#, None).is_err(), "no video");
    }
}
