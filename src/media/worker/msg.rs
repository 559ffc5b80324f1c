//! The worker's vocabulary: the commands it takes from HTTP handlers and other workers,
//! and the answers it gives.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::session::NewSession;
use crate::core::{LayerPolicy, SourcePacket};
use crate::directory::Stream;
use crate::media::telemetry::SessionSnapshot;
use crate::model::{EndReason, SessionId};
use crate::sdp::frag::IceFragment;

/// Commands to a worker.
pub(crate) enum WorkerMsg {
    /// Adopt a negotiated session.
    Add(Box<NewSession>),
    /// End a session (DELETE, API kick); replies whether it existed.
    Close {
        /// Which.
        id: SessionId,
        /// Why, for the summary line and metrics.
        reason: EndReason,
        /// Answer.
        reply: oneshot::Sender<bool>,
    },
    /// Trickle candidates or an ICE restart (HTTP PATCH).
    Patch {
        /// Which session.
        id: SessionId,
        /// The parsed fragment.
        frag: IceFragment,
        /// Answer.
        reply: oneshot::Sender<Result<PatchOutcome, PatchError>>,
    },
    /// A source packet from another worker's publisher.
    Packet {
        /// The stream.
        stream: Arc<Stream>,
        /// The packet, shared.
        pkt: Arc<SourcePacket>,
    },
    /// Block this worker's thread for a while, as an overloaded or descheduled
    /// worker is: for the tests of what a worker does when it falls behind
    /// ([`crate::server::Server::stall_media_worker`]).
    Stall(std::time::Duration),
    /// A viewer on another worker wants a keyframe from this worker's publisher.
    KeyframeRequest {
        /// Stream name.
        stream: Arc<str>,
        /// Of this simulcast layer (0 without simulcast).
        layer: u8,
    },
    /// The stream ended (grace period over, stopped): close its viewers here.
    EndStream {
        /// Stream name.
        stream: Arc<str>,
        /// Why.
        reason: EndReason,
    },
    /// Report the sessions (of one stream, or all).
    Sessions {
        /// Only this stream's, when given.
        stream: Option<Arc<str>>,
        /// Only publishers.
        publishers_only: bool,
        /// Answer.
        reply: oneshot::Sender<Vec<SessionSnapshot>>,
    },
    /// A viewer's layer choice (the WHEP layer extension).
    SetLayer {
        /// Which viewer.
        id: SessionId,
        /// What it asked for (a pinned layer by index, checked against the stream).
        policy: LayerPolicy,
        /// Answer: whether the viewer is here.
        reply: oneshot::Sender<bool>,
    },
    /// Report internal counts.
    Stats {
        /// Answer.
        reply: oneshot::Sender<WorkerStats>,
    },
    /// Close everything and stop.
    Shutdown {
        /// Answered when done.
        reply: oneshot::Sender<()>,
    },
}

/// What a PATCH did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PatchOutcome {
    /// Candidates were added (or dropped as unusable): 204.
    Trickled,
    /// ICE restarted: 200 with this fragment (the server's new credentials).
    Restarted {
        /// The `application/trickle-ice-sdpfrag` body.
        fragment: String,
    },
}

/// Why a PATCH failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PatchError {
    /// The session is gone.
    #[error("no such session")]
    UnknownSession,
    /// The restart could not be negotiated; the current ICE session stays.
    #[error("ICE restart failed: {0}")]
    RestartFailed(String),
}

/// A worker's internal counts, for leak checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Worker index.
    pub(crate) index: usize,
    /// Sessions owned.
    pub(crate) sessions: usize,
    /// Remote-address routing entries.
    pub(crate) routes: usize,
    /// ufrag routing entries.
    pub(crate) ufrags: usize,
    /// Pending session timers.
    pub(crate) timers: usize,
    /// Viewers in the fan-out.
    pub(crate) viewers: usize,
    /// Publishers hosted.
    pub(crate) publishers: usize,
}
