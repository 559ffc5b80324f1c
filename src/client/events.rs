//! Reading a server-sent event stream (WHATWG HTML §9.2) as it arrives, as a WHEP
//! player reads the server-sent events extension: a GET whose body never ends, so
//! it cannot go through [`http_request`](super::http_request), which reads whole
//! bodies. Every wait is bounded.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::ClientError;
use super::http::{Connection, find_header, header_list, send};

/// One message of an event stream: its `event:` value and every `data:` line (the
/// WHEP extension wants exactly one, holding JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMessage {
    /// The `event:` field, if the message has one.
    pub event: Option<String>,
    /// The `data:` fields in order.
    pub data: Vec<String>,
}

/// The complete messages of a stream's text so far (a message ends at a blank line;
/// comment lines and messages without fields are left out).
pub fn parse_events(text: &str) -> Vec<EventMessage> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut blocks: Vec<&str> = text.split("\n\n").collect();
    // What follows the last blank line is not a whole message yet.
    blocks.pop();
    let mut out = Vec::new();
    for block in blocks {
        let mut m = EventMessage {
            event: None,
            data: Vec::new(),
        };
        for line in block
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with(':'))
        {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => m.event = Some(value.to_owned()),
                "data" => m.data.push(value.to_owned()),
                _ => {}
            }
        }
        if m.event.is_some() || !m.data.is_empty() {
            out.push(m);
        }
    }
    out
}

/// An answered request whose body is read as it arrives.
pub struct EventStream {
    /// The status.
    pub status: u16,
    /// Headers in arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    body: Incoming,
    raw: Vec<u8>,
    ended: bool,
    _conn: Connection,
}

impl EventStream {
    /// Sends `method` to `url` (`http://` or `https://`) and returns once the status
    /// and headers are in (within `limit`), leaving the body to be read.
    pub async fn open(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        limit: Duration,
    ) -> Result<EventStream, ClientError> {
        let (resp, conn) = tokio::time::timeout(limit, send(method, url, headers, Vec::new()))
            .await
            .map_err(|_| ClientError::Timeout("event stream response"))??;
        Ok(EventStream {
            status: resp.status().as_u16(),
            headers: header_list(&resp),
            body: resp.into_body(),
            raw: Vec::new(),
            ended: false,
            _conn: conn,
        })
    }

    /// The first header called `name`, if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body so far as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    /// The complete messages so far.
    pub fn messages(&self) -> Vec<EventMessage> {
        parse_events(&self.text())
    }

    /// Whether the server ended the body (or the connection).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Reads until `done` holds for the messages so far, the body ends, or `limit`
    /// passes; returns whether `done` held.
    pub async fn read_until(
        &mut self,
        limit: Duration,
        done: impl Fn(&[EventMessage]) -> bool,
    ) -> bool {
        let end = Instant::now() + limit;
        loop {
            if done(&self.messages()) {
                return true;
            }
            if self.ended {
                return false;
            }
            match tokio::time::timeout_at(end, self.body.frame()).await {
                Err(_) => return false,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        self.raw.extend_from_slice(&data);
                    }
                }
                Ok(Some(Err(_)) | None) => self.ended = true,
            }
        }
    }

    /// Reads for `limit` (or until the body ends); returns whether it ended.
    pub async fn read_for(&mut self, limit: Duration) -> bool {
        self.read_until(limit, |_| false).await;
        self.ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_end_at_blank_lines_and_comments_are_skipped() {
        let text = ": keep-alive\n\nevent: active\ndata: {}\n\r\nevent:viewercount\r\n\
                    data: {\"viewercount\":2}\r\n\r\nevent: layers\ndata: {\"1\":[]}\ndata: x\n\n\
                    event: partial\ndata: {}\n";
        let m = parse_events(text);
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0].event.as_deref(), Some("active"));
        assert_eq!(m[0].data, ["{}"]);
        assert_eq!(m[1].event.as_deref(), Some("viewercount"));
        assert_eq!(m[1].data, ["{\"viewercount\":2}"]);
        assert_eq!(m[2].data.len(), 2);
    }
}
