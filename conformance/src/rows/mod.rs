//! The rows, in three groups: [`http`] (plain requests, with [`counter_offer`] for a
//! WHEP server that counter-offers), [`media`] (str0m peers) and [`ext`] (the WHEP
//! extensions: server-sent events and layer selection).
//! [`Context`] holds what they share: the options, a source for WHEP, and helpers to
//! create and end sessions the standard way.

pub mod counter_offer;
pub mod ext;
pub mod http;
pub mod media;

use wishd::client::{
    ClientError, HttpResponse, PublisherOptions, ViewerOptions, WhipPublisher,
    http_request_patient, publisher_offer, resolve_url, viewer_offer,
};

use crate::{Mode, Options};

/// A session created by a plain POST.
pub struct Session {
    /// The absolute session URL.
    pub url: String,
    /// The raw `Location` value.
    pub location: String,
    /// `ETag` of the 201, if any.
    pub etag: Option<String>,
    /// The answer.
    pub answer: String,
    /// The whole 201.
    pub response: HttpResponse,
    /// The offer it answers.
    pub offer: String,
}

/// Why a POST made no session.
pub struct CreateError {
    /// One line for the report.
    pub reason: String,
    /// The answer, when there was one.
    pub response: Option<HttpResponse>,
}

impl CreateError {
    /// The status of the answer, if any.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref().map(|r| r.status)
    }
}

/// What the rows share.
pub struct Context<'a> {
    /// The options.
    pub opts: &'a Options,
    source: Option<WhipPublisher>,
    /// WHEP: the stream turned out to have no source (409), so no session can be made.
    pub no_source: bool,
}

impl<'a> Context<'a> {
    pub fn new(opts: &'a Options) -> Self {
        Context {
            opts,
            source: None,
            no_source: false,
        }
    }

    /// WHEP mode with `--publish-url`: publish first so the stream has a source.
    pub async fn start_source(&mut self) -> Result<(), ClientError> {
        self.start_source_with(PublisherOptions::default()).await
    }

    /// WHEP mode with `--publish-url`: publish with `opts` (and the publish token).
    pub async fn start_source_with(&mut self, opts: PublisherOptions) -> Result<(), ClientError> {
        let (Mode::Whep, Some(url)) = (self.opts.mode, &self.opts.publish_url) else {
            return Ok(());
        };
        let p = WhipPublisher::connect(
            url,
            PublisherOptions {
                token: self
                    .opts
                    .publish_token
                    .clone()
                    .or_else(|| self.opts.token.clone()),
                ..opts
            },
        )
        .await?;
        p.wait_connected(self.opts.timeout).await?;
        self.source = Some(p);
        Ok(())
    }

    /// The answer the server gave the runner's source, if one is publishing.
    pub fn source_answer(&self) -> Option<&str> {
        self.source.as_ref().map(|p| p.answer_sdp())
    }

    pub async fn stop_source(&mut self) {
        if let Some(p) = self.source.take() {
            let _ = p.delete().await;
        }
    }

    /// Options for a str0m publisher of the runner (WHIP mode).
    pub fn publisher_options(&self) -> PublisherOptions {
        PublisherOptions {
            token: self.opts.token.clone(),
            ..PublisherOptions::default()
        }
    }

    /// Options for a str0m viewer of the runner (WHEP mode, or WHIP `--play-url`).
    pub fn viewer_options(&self, token: Option<String>) -> ViewerOptions {
        ViewerOptions {
            token,
            ..ViewerOptions::default()
        }
    }

    /// A valid offer for the mode: one audio and one video m-line, BUNDLE, rtcp-mux,
    /// sendonly (WHIP) or recvonly (WHEP).
    pub fn offer(&self) -> String {
        let sdp = match self.opts.mode {
            Mode::Whip => publisher_offer(&PublisherOptions::default()),
            Mode::Whep => viewer_offer(&ViewerOptions::default()),
        };
        sdp.unwrap_or_default()
    }

    /// `Authorization` for the endpoint's token, if any.
    pub fn bearer(&self) -> Option<String> {
        self.opts.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// A request with the token added (unless `headers` already authorizes).
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<HttpResponse, ClientError> {
        let bearer = self.bearer();
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(b) = &bearer
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            all.push(("Authorization", b));
        }
        http_request_patient(method, url, &all, body.to_vec()).await
    }

    /// POSTs `offer` to the endpoint with the token.
    pub async fn post_offer(
        &self,
        offer: &str,
        extra: &[(&str, &str)],
    ) -> Result<HttpResponse, ClientError> {
        let mut headers = vec![("Content-Type", "application/sdp")];
        headers.extend_from_slice(extra);
        self.request("POST", &self.opts.url, &headers, offer.as_bytes())
            .await
    }

    /// Creates a session with a valid offer: Err with the reason unless 201 with a
    /// Location.
    pub async fn create(&self) -> Result<Session, CreateError> {
        self.create_with(&self.offer(), &[]).await
    }

    /// Creates a session with `offer`.
    pub async fn create_with(
        &self,
        offer: &str,
        extra: &[(&str, &str)],
    ) -> Result<Session, CreateError> {
        let r = self
            .post_offer(offer, extra)
            .await
            .map_err(|e| CreateError {
                reason: e.to_string(),
                response: None,
            })?;
        if r.status != 201 {
            return Err(CreateError {
                reason: format!("POST answered {}: {}", r.status, short(&r.text())),
                response: Some(r),
            });
        }
        let Some(location) = r.header("location").map(str::to_owned) else {
            return Err(CreateError {
                reason: "201 without Location".into(),
                response: Some(r),
            });
        };
        Ok(Session {
            url: resolve_url(&self.opts.url, &location),
            location,
            etag: r.header("etag").map(str::to_owned),
            answer: r.text(),
            response: r,
            offer: offer.to_owned(),
        })
    }

    /// DELETEs a session (best effort) and returns the status.
    pub async fn delete(&self, s: &Session) -> Option<u16> {
        self.request("DELETE", &s.url, &[], b"")
            .await
            .ok()
            .map(|r| r.status)
    }
}

/// The first 120 characters of a body, one line.
pub fn short(s: &str) -> String {
    let one: String = s.replace(['\r', '\n'], " ");
    one.chars().take(120).collect()
}

/// The values of one SDP attribute (`a=name:value`) in order.
pub fn attr_values<'s>(sdp: &'s str, name: &str) -> Vec<&'s str> {
    let prefix = format!("a={name}:");
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .collect()
}

/// The m-sections of an SDP: each as its lines, starting with the `m=` line.
pub fn m_sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = Vec::new();
    for l in sdp.lines().map(str::trim) {
        if l.starts_with("m=") {
            out.push(vec![l]);
        } else if let Some(last) = out.last_mut() {
            last.push(l);
        }
    }
    out
}

/// Lines of the session part (before the first m=).
pub fn session_lines(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("m="))
        .collect()
}
