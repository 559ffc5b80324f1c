//! The web pages wishd serves itself: an index of live streams, a publish page, a
//! watch page and an embeddable player (`player.js`, the `<wishd-player>` element).
//!
//! The files under `web/` are compiled into the binary, so a running wishd needs no
//! web server and no build step. Only GET and HEAD are served. Every answer carries
//! a strong `ETag` (a hash of the file computed at compile time) and
//! `Cache-Control: no-cache`, so browsers revalidate and get `304 Not Modified` until
//! the binary changes. Scripts are plain ES modules; the player is fetched in CORS
//! mode by other sites, which the HTTP edge's CORS headers allow.

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};

/// One embedded file.
struct Asset {
    /// The URL path it is served at.
    path: &'static str,
    /// Its media type.
    content_type: &'static str,
    /// Its bytes.
    body: &'static [u8],
    /// `"` + 16 hex digits of its FNV-1a hash + `"`.
    etag: &'static str,
}

/// FNV-1a, 64 bits: enough to tell two versions of a file apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// The quoted hex form of [`fnv1a`], as an ETag, built at compile time.
const fn etag_of(bytes: &[u8]) -> [u8; 18] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let h = fnv1a(bytes);
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = HEX[((h >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {{
        const BODY: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file));
        const TAG: [u8; 18] = etag_of(BODY);
        Asset {
            path: $path,
            content_type: $type,
            body: BODY,
            // Hex digits and quotes only: always valid UTF-8.
            etag: match std::str::from_utf8(&TAG) {
                Ok(s) => s,
                Err(_) => "\"0\"",
            },
        }
    }};
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every file served, by path.
static ASSETS: &[Asset] = &[
    asset!("/", "index.html", HTML),
    asset!("/index.html", "index.html", HTML),
    asset!("/publish.html", "publish.html", HTML),
    asset!("/watch.html", "watch.html", HTML),
    asset!("/player.js", "player.js", JS),
    asset!("/publish.js", "publish.js", JS),
    asset!("/index.js", "index.js", JS),
    asset!("/wish.js", "wish.js", JS),
    asset!("/style.css", "style.css", CSS),
];

/// The pages' answer for `path`, or `None` when `path` is not a page (the caller
/// routes it elsewhere). `Err` carries the methods allowed on a page path.
/// Whether `path` is one of the pages or files served here.
pub(crate) fn serves(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

/// The answer for `path`: None when it is not served here, the `Allow` value for a
/// method other than GET and HEAD.
pub(crate) fn respond(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Result<Response<super::Body>, &'static str>> {
    let asset = ASSETS.iter().find(|a| a.path == path)?;
    if method != Method::GET && method != Method::HEAD {
        return Some(Err("GET, HEAD"));
    }
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == asset.etag || t == "*");
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else if method == Method::HEAD {
        (StatusCode::OK, Bytes::new())
    } else {
        (StatusCode::OK, Bytes::from_static(asset.body))
    };
    let mut r = Response::new(super::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if status == StatusCode::OK {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
    }
    Some(Ok(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn get(method: Method, path: &str, inm: Option<&str>) -> Response<super::super::Body> {
        let mut h = HeaderMap::new();
        if let Some(v) = inm {
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        }
        respond(&method, path, &h).unwrap().unwrap()
    }

    async fn body(r: Response<super::super::Body>) -> Bytes {
        r.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn pages_are_served_with_their_media_type_and_a_validator() {
        for (path, ty) in [
            ("/", HTML),
            ("/publish.html", HTML),
            ("/watch.html", HTML),
            ("/player.js", JS),
            ("/style.css", CSS),
        ] {
            let r = get(Method::GET, path, None);
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], ty, "{path}");
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache", "{path}");
            let etag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
            assert!(etag.len() == 18 && etag.starts_with('"'), "{path}: {etag}");
            assert!(!body(r).await.is_empty(), "{path}");
        }
    }

    #[tokio::test]
    async fn head_has_the_headers_of_get_and_no_body() {
        let r = get(Method::HEAD, "/watch.html", None);
        assert_eq!(r.status(), StatusCode::OK);
        let len: usize = r.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(len > 100);
        assert!(body(r).await.is_empty());
    }

    #[tokio::test]
    async fn a_matching_if_none_match_gets_304_and_a_stale_one_the_file() {
        let etag = get(Method::GET, "/player.js", None).headers()[header::ETAG]
            .to_str()
            .unwrap()
            .to_owned();
        let r = get(Method::GET, "/player.js", Some(&format!("\"x\", {etag}")));
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(body(r).await.is_empty());
        let r = get(Method::GET, "/player.js", Some("\"0000000000000000\""));
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[test]
    fn other_methods_are_refused_and_other_paths_left_alone() {
        let h = HeaderMap::new();
        assert_eq!(
            respond(&Method::POST, "/publish.html", &h).unwrap().err(),
            Some("GET, HEAD")
        );
        assert!(respond(&Method::GET, "/whep/cam", &h).is_none());
        assert!(respond(&Method::GET, "/nope.html", &h).is_none());
    }

    #[test]
    fn different_files_have_different_etags() {
        let tags: std::collections::HashSet<_> = ASSETS
            .iter()
            .filter(|a| a.path != "/")
            .map(|a| a.etag)
            .collect();
        assert_eq!(tags.len(), ASSETS.len() - 1);
    }
}
