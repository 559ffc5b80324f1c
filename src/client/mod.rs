//! WHIP publisher and WHEP viewer peers built on str0m.
//!
//! These peers are what wishd's integration tests, the conformance runner and the
//! load tool talk to the server with. Each peer is a full-ICE, controlling str0m
//! `Rtc` in RTP mode, owned by one background tokio task together with its UDP
//! socket. The handle types ([`WhipPublisher`], [`WhepViewer`]) only talk to that
//! task through channels and shared snapshots, so they are cheap to query from tests.
//!
//! Media is synthetic but recognisable: every RTP payload carries a marker (see
//! [`media`]) with the frame number and packet index, so a test can check that what
//! a viewer received is intact and in order.

#![warn(missing_docs)]

mod error;
mod events;
mod http;
pub mod media;
mod peer;
mod publisher;
mod restart;
pub(crate) mod sender;
mod simulcast;
mod viewer;

pub use error::ClientError;
pub use events::{EventMessage, EventStream, parse_events};
pub use http::{HttpResponse, http_request, http_request_patient, resolve_url, trust_ca_pem};
pub use peer::local_ip_toward;
pub use publisher::{PublisherOptions, PublisherStats, WhipPublisher, publisher_offer};
pub use simulcast::{LayerStats, SimulcastLayer};
pub use viewer::{
    Arrival, ReceivedPacket, ReceivedSenderReport, ViewerOptions, WhepViewer, viewer_offer,
};

use std::sync::Once;

/// Video codecs the client peers can send and offer to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 constrained baseline, packetization-mode 1.
    H264,
    /// H.265 Main profile (str0m's default format).
    H265,
    /// VP8.
    Vp8,
    /// VP9 (profile 0, non-flexible mode).
    Vp9,
    /// AV1.
    Av1,
}

/// Audio codecs a viewer can offer to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// Opus, 48 kHz stereo.
    Opus,
    /// G.711 mu-law (static payload type 0).
    Pcmu,
    /// G.711 A-law (static payload type 8).
    Pcma,
}

static CRYPTO: Once = Once::new();

/// Installs the crypto provider once per process (idempotent): str0m's aws-lc-rs
/// backend with wishd's DTLS factory (`media::dtls`), whose short first retransmission
/// and per-process DTLS configuration make a client peer as cheap and quick to
/// connect as the server's sessions.
///
/// The crate builds str0m without default features, so some code must install a
/// provider before the first `Rtc` is built. Both the server and the client peers
/// call this; extra calls are no-ops.
pub fn install_crypto_provider() {
    CRYPTO.call_once(|| {
        crate::media::dtls::client_provider().install_process_default();
    });
}

#[cfg(test)]
mod tests_e2e;
