//! A black-box WHIP (RFC 9725) / WHEP conformance runner.
//!
//! Point it at an endpoint URL and it runs every row of the project's checklist
//! (`shared/spec/whip-whep-checklist.md`) that can be checked from outside against a
//! server of that kind: HTTP rows with plain requests (statuses, headers, ETag and
//! If-Match, PATCH, DELETE, OPTIONS, CORS), and media rows with the str0m peers of
//! `wishd::client` (ICE and DTLS come up, media flows, media after an ICE restart and
//! after an address change, the server stops answering STUN after DELETE), and in
//! WHEP mode the extension rows (server-sent events and layer selection, at the URLs
//! the 201 links). It uses only the standard resources (the endpoint and the URLs the
//! server hands out), so it works against any server.
//!
//! Each row has the checklist's id, the requirement, its level and an outcome:
//! pass, fail or skip (with the reason, e.g. "needs --token"). Only failing MUST rows
//! make [`Report::passed`] false.

#![forbid(unsafe_code)]

mod report;
mod rows;
pub mod stun;

use std::time::Duration;

use serde::Serialize;

pub use report::Report;

/// Which protocol the endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// WHIP: the runner publishes.
    Whip,
    /// WHEP: the runner plays.
    Whep,
}

/// How binding a requirement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    /// MUST / SHALL (also the HTTP rules the texts rely on): a failure fails the run.
    #[serde(rename = "MUST")]
    Must,
    /// SHOULD / RECOMMENDED.
    #[serde(rename = "SHOULD")]
    Should,
    /// MAY: reported, never a failure.
    #[serde(rename = "MAY")]
    May,
}

impl Level {
    /// `MUST`, `SHOULD` or `MAY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        }
    }
}

/// What a row found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The server does what the row asks.
    Pass,
    /// It does not.
    Fail,
    /// Not checked (not applicable, or a precondition is missing; the detail says).
    Skip,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    /// The checklist id, e.g. `WHIP-23`.
    pub id: String,
    /// The requirement in short.
    pub requirement: String,
    /// Its level.
    pub level: Level,
    /// Pass, fail or skip.
    pub outcome: Outcome,
    /// What was seen.
    pub detail: String,
}

/// What to test and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// The WHIP or WHEP endpoint URL (`http://` or `https://`... see the README).
    pub url: String,
    /// WHIP or WHEP.
    pub mode: Mode,
    /// Bearer token for the endpoint; token rows are skipped without one.
    pub token: Option<String>,
    /// WHEP: a WHIP endpoint of the same stream where the runner publishes first.
    pub publish_url: Option<String>,
    /// Token for `publish_url` (default: `token`).
    pub publish_token: Option<String>,
    /// WHEP: an endpoint of a stream nobody publishes, for WHEP-11 (409 + Retry-After).
    pub idle_url: Option<String>,
    /// WHIP: a WHEP endpoint of the same stream, to see that published media arrives.
    pub play_url: Option<String>,
    /// Token for `play_url` (default: `token`).
    pub play_token: Option<String>,
    /// Run the media rows (ICE, DTLS, RTP, restart, consent).
    pub media: bool,
    /// How long to wait for ICE+DTLS and for media.
    pub timeout: Duration,
}

impl Options {
    /// Options for `url` in `mode` with defaults: no token, media rows on, 10 s.
    pub fn new(url: impl Into<String>, mode: Mode) -> Options {
        Options {
            url: url.into(),
            mode,
            token: None,
            publish_url: None,
            publish_token: None,
            idle_url: None,
            play_url: None,
            play_token: None,
            media: true,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Runs every applicable row against the server and returns the report.
pub async fn run(opts: &Options) -> Report {
    wishd::client::install_crypto_provider();
    let mut report = Report::default();
    let mut ctx = rows::Context::new(opts);
    if let Err(e) = ctx.start_source().await {
        report.note(format!("publisher at --publish-url failed: {e}"));
    }
    rows::http::run(&mut ctx, &mut report).await;
    if opts.media {
        rows::media::run(&mut ctx, &mut report).await;
        rows::media::missing_kind(&mut ctx, &mut report).await;
    }
    rows::ext::run(&mut ctx, &mut report).await;
    ctx.stop_source().await;
    report
}
