//! Absolute session URLs for `Location`.
//!
//! RFC 9110 allows a relative `Location`, but the WHIP and WHEP examples use absolute
//! URLs and some clients take the header as the URL to PATCH and DELETE as it is
//! (checklist EXT-H7). wishd writes `<base>/whip/<stream>/<session>`, where `<base>` is
//! the configured `public_url` (for a server behind a reverse proxy or TLS
//! terminator) or else the scheme of the listener the request came in on and the
//! authority the client addressed (`Host`, or HTTP/2 `:authority`). A request
//! without a usable authority gets a relative `Location`.

use hyper::Request;
use hyper::http::uri::Authority;

/// Marks a request that arrived over TLS (set by the HTTPS accept loop).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Https;

/// The part of a session URL before `/whip/...`: `public_url` without its trailing
/// slash, else `scheme://authority` of the request, else `""` (relative).
pub(crate) fn base<B>(req: &Request<B>, public_url: Option<&str>) -> String {
    if let Some(u) = public_url {
        return u.trim_end_matches('/').to_owned();
    }
    let scheme =
        if req.extensions().get::<Https>().is_some() || req.uri().scheme_str() == Some("https") {
            "https"
        } else {
            "http"
        };
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| h.parse::<Authority>().is_ok() && !h.contains('@'))
                .map(str::to_owned)
        });
    match authority {
        Some(a) if !a.is_empty() && !a.contains('@') => format!("{scheme}://{a}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/whip/s");
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn base_comes_from_public_url_then_host_then_nothing() {
        assert_eq!(
            base(&req(Some("a:1")), Some("https://media.example/x/")),
            "https://media.example/x"
        );
        assert_eq!(
            base(&req(Some("127.0.0.1:8080")), None),
            "http://127.0.0.1:8080"
        );
        assert_eq!(base(&req(Some("[::1]:80")), None), "http://[::1]:80");
        let mut tls = req(Some("h.example"));
        tls.extensions_mut().insert(Https);
        assert_eq!(base(&tls, None), "https://h.example");
        let h2 = Request::builder()
            .uri("https://h2.example:8443/whip/s")
            .body(())
            .unwrap();
        assert_eq!(base(&h2, None), "https://h2.example:8443");
        for bad in [None, Some(""), Some("a b"), Some("u@evil"), Some("h/x")] {
            assert_eq!(base(&req(bad), None), "", "{bad:?}");
        }
    }
}
