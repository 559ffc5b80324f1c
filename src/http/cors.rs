//! CORS (the Fetch standard) for the WHIP/WHEP resources, the API and the player, which
//! other sites load.

use hyper::header::{self, HeaderMap, HeaderValue};

/// CORS per the Fetch standard: an allowed `Origin` gets `Access-Control-Allow-Origin`
/// (`*`, or the origin itself with `Vary: Origin` when a list is configured); a
/// preflight also gets the methods and request headers WHIP/WHEP clients use.
pub(super) fn add_cors(
    h: &mut HeaderMap,
    origin: Option<&HeaderValue>,
    allowed: &[String],
    preflight: bool,
) {
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
