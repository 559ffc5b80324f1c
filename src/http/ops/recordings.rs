//! The recording routes of the API (admin): start and stop recording a live stream,
//! list the recorded files, download one (with `Range`, as `<video>` asks) and
//! delete one. File I/O runs on tokio's blocking pool, never on a worker thread.

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde::Serialize;

use super::super::error::ApiError;
use super::super::{AppState, Body};
use super::{json_response, no_content};
use crate::record::{RecordedFile, RecordingError};

/// A response holds at most this much of a file; a player asks for the rest by
/// `Range` (a download without one gets the start and `206`).
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// `GET /api/recordings`.
#[derive(Debug, Serialize)]
struct FileList {
    recordings: Vec<FileEntry>,
}

/// One recorded file.
#[derive(Debug, Serialize)]
struct FileEntry {
    stream: String,
    file: String,
    bytes: u64,
    /// When its first picture was captured (RFC 3339, UTC, milliseconds), as its
    /// name says.
    started: Option<String>,
    /// When it was last written (RFC 3339, UTC).
    modified: String,
    /// Where to download it (and `DELETE` it).
    url: String,
}

fn entry(f: &RecordedFile) -> FileEntry {
    FileEntry {
        url: format!("/api/recordings/{}/{}", f.stream, f.name),
        stream: f.stream.clone(),
        file: f.name.clone(),
        bytes: f.bytes,
        started: f
            .started()
            .map(|t| humantime::format_rfc3339_millis(t).to_string()),
        modified: humantime::format_rfc3339_seconds(f.modified).to_string(),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::BadRequest(format!("file task failed: {e}")))?
}

/// `POST` (start) or `DELETE` (stop) `/api/streams/{name}/recording`.
pub(super) fn stream_recording(
    state: &AppState,
    method: &Method,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let recordings = &state.ops.recordings;
    let view = state
        .media
        .directory()
        .stream(name)
        .ok_or(ApiError::NotFound)?;
    match *method {
        Method::POST => {
            recordings.start(&view.shared, crate::record::Tracks::of(&view.codecs))?;
            let mut r = no_content();
            *r.status_mut() = StatusCode::ACCEPTED;
            Ok(r)
        }
        Method::DELETE => {
            recordings.stop(&view.shared)?;
            Ok(no_content())
        }
        _ => Err(ApiError::MethodNotAllowed("POST, DELETE")),
    }
}

/// `GET /api/recordings`.
pub(super) async fn list(state: &AppState, method: &Method) -> Result<Response<Body>, ApiError> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(ApiError::MethodNotAllowed("GET, HEAD"));
    }
    let recordings = state.ops.recordings.clone();
    let files = blocking(move || Ok(recordings.files())).await?;
    Ok(json_response(&FileList {
        recordings: files.iter().map(entry).collect(),
    }))
}

/// `GET`, `HEAD` or `DELETE /api/recordings/{stream}/{file}`.
pub(super) async fn file(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    stream: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let recordings = state.ops.recordings.clone();
    let (stream, name) = (stream.to_owned(), name.to_owned());
    match *method {
        Method::DELETE => {
            blocking(move || {
                let f = recordings.file(&stream, &name)?;
                std::fs::remove_file(&f.path).map_err(|_| RecordingError::NoSuchFile)?;
                tracing::info!(path = %f.path.display(), "recording deleted by the operator");
                Ok(())
            })
            .await?;
            Ok(no_content())
        }
        Method::GET | Method::HEAD => {
            let range = headers
                .get(header::RANGE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let head = *method == Method::HEAD;
            blocking(move || {
                let f = recordings.file(&stream, &name)?;
                read_range(&f, range.as_deref(), head)
            })
            .await
        }
        _ => Err(ApiError::MethodNotAllowed("GET, HEAD, DELETE")),
    }
}

/// The first and last byte a `Range: bytes=…` header asks of a file of `size` bytes
/// (one range; `None` for a header this does not read, which gets the whole file).
fn parse_range(value: &str, size: u64) -> Option<Result<(u64, u64), ApiError>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(first), Some(last)) if first <= last => (first, last.min(size.saturating_sub(1))),
        (Some(first), None) if b.is_empty() => (first, size.saturating_sub(1)),
        (None, Some(suffix)) if a.is_empty() && suffix > 0 => {
            (size.saturating_sub(suffix), size.saturating_sub(1))
        }
        _ => return None,
    };
    if range.0 >= size {
        return Some(Err(ApiError::RangeNotSatisfiable(size)));
    }
    Some(Ok(range))
}

fn read_range(
    f: &RecordedFile,
    range: Option<&str>,
    head: bool,
) -> Result<Response<Body>, ApiError> {
    let size = f.bytes;
    let asked = range.and_then(|r| parse_range(r, size)).transpose()?;
    let (first, mut last) = asked.unwrap_or((0, size.saturating_sub(1)));
    let partial = asked.is_some() || size > MAX_RESPONSE;
    last = last.min(first + MAX_RESPONSE - 1);
    let len = if size == 0 { 0 } else { last - first + 1 };
    let mut body = Vec::new();
    if !head && len > 0 {
        let mut file = std::fs::File::open(&f.path).map_err(|_| RecordingError::NoSuchFile)?;
        file.seek(SeekFrom::Start(first))
            .and_then(|_| file.take(len).read_to_end(&mut body))
            .map_err(|e| ApiError::BadRequest(format!("reading the recording: {e}")))?;
    }
    let mut r = Response::new(super::super::full(Bytes::from(body)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(f.content_type()),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if partial && len > 0 {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{size}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
        *r.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_rfc_9110_says_and_the_rest_gets_the_whole_file() {
        let ok = |v: &str| parse_range(v, 1000).map(|r| r.ok());
        assert_eq!(ok("bytes=0-99"), Some(Some((0, 99))));
        assert_eq!(ok("bytes=900-"), Some(Some((900, 999))));
        assert_eq!(ok("bytes=-100"), Some(Some((900, 999))));
        assert_eq!(ok("bytes=990-5000"), Some(Some((990, 999))));
        assert_eq!(ok("bytes=1000-"), Some(None), "past the end: 416");
        for whole in [
            "items=0-1",
            "bytes=5-1",
            "bytes=0-1,5-6",
            "bytes=x-",
            "bytes=-0",
        ] {
            assert_eq!(ok(whole), None, "{whole}");
        }
    }
}
