//! The error type of the client peers.

/// Everything that can go wrong in a client peer or its HTTP exchange.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The HTTP exchange failed below the status level (bad URL, connection, protocol).
    #[error("http: {0}")]
    Http(String),
    /// The server answered with an unexpected status; `body` is its (text) body.
    #[error("unexpected HTTP status {status}: {body}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The response body, lossily decoded as UTF-8.
        body: String,
    },
    /// An SDP offer or answer could not be made, parsed or applied.
    #[error("sdp: {0}")]
    Sdp(String),
    /// A socket operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// str0m reported an error.
    #[error("rtc: {0}")]
    Rtc(String),
    /// Waiting for something took longer than allowed; the text says what.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The peer's background task has ended (closed, failed or aborted).
    #[error("peer closed: {0}")]
    Closed(String),
}

impl From<str0m::RtcError> for ClientError {
    fn from(e: str0m::RtcError) -> Self {
        ClientError::Rtc(e.to_string())
    }
}
