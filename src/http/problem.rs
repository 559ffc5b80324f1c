//! RFC 9457 problem details: the body of every 4xx and 5xx answer.
//!
//! wishd defines no problem types of its own, so `type` is always `about:blank`
//! and `title` is the status's reason phrase (RFC 9457 §4.2.1); `detail` carries the
//! one-line reason a person can act on ("offer has no a=group:BUNDLE; ...").

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;

/// The media type of problem details (RFC 9457 §3).
pub(crate) const PROBLEM_JSON: &str = "application/problem+json";

/// One problem details object.
#[derive(Debug, Serialize)]
pub(crate) struct Problem<'a> {
    /// The problem type: `about:blank` (the status says it all).
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    /// The status's reason phrase.
    pub(crate) title: &'static str,
    /// The HTTP status code, repeated for clients that lose it.
    pub(crate) status: u16,
    /// The one-line reason of this occurrence.
    pub(crate) detail: &'a str,
}

impl<'a> Problem<'a> {
    /// The problem of `status` with `detail`.
    pub(crate) fn new(status: StatusCode, detail: &'a str) -> Self {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
        }
    }
}

/// A response with status `status` and a problem details body. Line breaks in `detail`
/// become spaces so the reason stays one line.
pub(crate) fn response(status: StatusCode, detail: &str) -> Response<super::Body> {
    let detail = detail.replace(['\r', '\n'], " ");
    // Serializing a struct of strings and a number cannot fail; fall back to a fixed
    // body all the same rather than panic on the error path.
    let body = serde_json::to_vec(&Problem::new(status, &detail))
        .unwrap_or_else(|_| br#"{"type":"about:blank"}"#.to_vec());
    let mut r = Response::new(super::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn body_is_problem_json_with_escaped_one_line_detail() {
        let r = response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "video m-line 1 has no codec \"x\"\r\nsecond line",
        );
        assert_eq!(r.status(), 422);
        assert_eq!(r.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["title"], "Unprocessable Entity");
        assert_eq!(v["status"], 422);
        assert_eq!(
            v["detail"],
            "video m-line 1 has no codec \"x\"  second line"
        );
    }
}
