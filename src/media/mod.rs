//! Media workers: each owns one UDP socket and the str0m `Rtc`s of the sessions
//! assigned to it, demultiplexes datagrams to them, drives their timers and moves RTP
//! between publishers and viewers through the sans-IO [`crate::core`].
//!
//! [`Media`] is the face the HTTP edge talks to: `negotiate` builds and answers the
//! `Rtc` of a new session from its offer (on the HTTP task, so a worker's loop never
//! pays for setup), `pool` runs the workers and hands each session to one, round
//! robin. The viewers of one stream can sit on every worker, and a source packet is
//! handed (as one `Arc`) to each worker that has viewers of its stream. A worker
//! (`worker`) runs the sessions; `direct`, `egress`, `srtp` and `dtls` are the
//! viewers' own send path, `udp` and `outbox` the socket and its batched sends, and
//! `telemetry` a session's figures. Nothing here knows HTTP.

pub(crate) mod direct;
pub mod dtls;
pub mod egress;
mod negotiate;
pub mod netcheck;
pub(crate) mod outbox;
mod pool;
pub mod srtp;
pub(crate) mod tcp;
mod telemetry;
pub(crate) mod udp;
mod worker;

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use crate::directory::DirectoryError;
use crate::metrics::{MediaHistograms, SessionMetrics};
use crate::model::SessionId;
use crate::sdp::SdpError;

pub(crate) use pool::send_to_viewer_workers;
pub(crate) use pool::{Media, WorkerHandle};
pub(crate) use telemetry::SessionSnapshot;
pub use worker::WorkerStats;
pub(crate) use worker::{PatchOutcome, WorkerMsg};

/// Why a session could not be created or found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MediaError {
    /// The offer was refused by inspection (400 or 422).
    #[error(transparent)]
    Sdp(#[from] SdpError),
    /// The stream's state forbids it (409) or the session is unknown (404).
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// str0m could not negotiate the offer.
    #[error("cannot negotiate the offer: {0}")]
    Negotiation(String),
    /// An ICE restart could not be done; the session keeps its ICE session.
    #[error("{0}")]
    RestartFailed(String),
    /// A layer choice that cannot be made (an unknown rid, a layer kind wishd does
    /// not forward).
    #[error("{0}")]
    Layer(String),
    /// The server is shutting down or a worker is gone.
    #[error("media worker unavailable")]
    Unavailable,
}

/// A viewer's layer choice, as the WHEP layer extension asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LayerChoice {
    /// Chosen from the viewer's bandwidth estimate.
    Auto,
    /// Chosen, among the layers no larger than this.
    Cap {
        max_width: Option<u32>,
        max_height: Option<u32>,
    },
    /// This simulcast layer, always.
    Rid(String),
}

/// A session just created.
#[derive(Debug, Clone)]
pub(crate) struct Created {
    /// Its id (the last segment of its URL).
    pub(crate) id: SessionId,
    /// The SDP answer.
    pub(crate) answer: String,
    /// The media worker that runs it.
    pub(crate) worker: usize,
}

/// Counters shared by all workers, read by tests and (later) by metrics.
#[derive(Debug, Default)]
pub struct MediaCounters {
    /// Sessions owned by workers right now.
    pub sessions: AtomicUsize,
    /// Sessions ever created.
    pub sessions_created: AtomicU64,
    /// Sessions ever closed.
    pub sessions_closed: AtomicU64,
    /// RTP packets received from sources.
    pub source_packets: AtomicU64,
    /// RTP packets written to viewers.
    pub forwarded_packets: AtomicU64,
    /// Datagrams that matched no session.
    pub unroutable_datagrams: AtomicU64,
    /// ICE-TCP connections and their drops.
    pub ice_tcp: tcp::IceTcpCounters,
    /// Packets dropped between workers because a worker's queue was full.
    pub cross_worker_drops: AtomicU64,
    /// Offers whose template str0m parsed (`sdp::template`).
    pub offer_templates_parsed: AtomicU64,
    /// Offers whose template was parsed before and copied.
    pub offer_templates_copied: AtomicU64,
    /// Viewers' offers wishd's inspection parsed (`sdp::memo`).
    pub offer_inspections_parsed: AtomicU64,
    /// Viewers' offers given the inspection of an earlier one of the same template.
    pub offer_inspections_remembered: AtomicU64,
    /// Source packets a worker dropped for waiting longer than `forward_max_delay`.
    pub stale_source_packets: AtomicU64,
    /// Keyframe requests a worker made because it dropped stale video.
    pub keyframes_asked_after_drops: AtomicU64,
    /// Keyframe requests made because a publisher's video came back after an outage.
    pub keyframes_asked_after_outage: AtomicU64,
    /// Keyframes asked for viewers that NACKed a gap the history could not fill.
    pub keyframes_for_viewer_gaps: AtomicU64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests_sent: AtomicU64,
    /// Sessions dropped because str0m panicked inside them.
    pub session_panics: AtomicU64,
    /// RTP payload bytes received from sources.
    pub source_bytes: AtomicU64,
    /// RTP payload bytes written to viewers.
    pub forwarded_bytes: AtomicU64,
    /// UDP bytes received from peers (flushed every 100 ms and at session end).
    pub udp_bytes_in: AtomicU64,
    /// UDP bytes sent to peers (flushed every 100 ms and at session end).
    pub udp_bytes_out: AtomicU64,
    /// UDP datagrams sent to peers (flushed every housekeeping tick).
    pub udp_datagrams_out: AtomicU64,
    /// System calls that sent them: datagrams per call is the send batching factor.
    pub udp_send_calls: AtomicU64,
    /// PLIs sent to publishers.
    pub pli_sent: AtomicU64,
    /// FIRs sent to publishers.
    pub fir_sent: AtomicU64,
    /// Keyframe wishes folded into a request already sent (rate limit).
    pub keyframe_requests_coalesced: AtomicU64,
    /// Viewers' keyframe requests held while their source is silent (neither a
    /// stale picture from the cache nor a request to a source that sends nothing).
    pub keyframe_requests_held: AtomicU64,
    /// PLI/FIR received from viewers.
    pub keyframe_requests_received: AtomicU64,
    /// Viewers started from a stream's keyframe cache (RTP ingest, or a WHIP source
    /// that cannot be asked for keyframes).
    pub keyframe_cache_starts: AtomicU64,
    /// Viewers moved to a better simulcast layer.
    pub layer_switches_up: AtomicU64,
    /// Viewers moved to a lesser simulcast layer.
    pub layer_switches_down: AtomicU64,
    /// Bandwidth probes sent toward a better layer.
    pub bandwidth_probes: AtomicU64,
    /// NACKs received from viewers (answered from str0m's send buffer).
    pub nacks_received: AtomicU64,
    /// Packets resent to viewers on the direct egress path, answering their NACKs.
    pub packets_resent: AtomicU64,
    /// NACKs sent to publishers.
    pub nacks_sent: AtomicU64,
    /// Video packets not forwarded to a viewer still waiting for a keyframe.
    pub dropped_waiting_keyframe: AtomicU64,
    /// Packets not forwarded because the viewer has no mapping of their payload type.
    pub dropped_no_pt: AtomicU64,
    /// Packets not forwarded as older than the viewer's current position.
    pub dropped_too_old: AtomicU64,
    /// Sessions by kind and state, created, and ended by reason.
    pub session_metrics: SessionMetrics,
    /// Forwarding latency, RTT and loss distributions.
    pub histograms: MediaHistograms,
    /// Each worker's load and forward hold.
    pub workers: WorkerGauges,
}

/// Per-worker gauges, indexed by worker, written at each worker's housekeeping.
#[derive(Debug)]
pub struct WorkerGauges {
    /// Workers running (the entries below that are in use).
    pub(crate) count: AtomicUsize,
    /// Time busy out of time run, smoothed (see `core::hold`), parts per million.
    pub(crate) load_ppm: Box<[AtomicU64]>,
    /// The forward hold now, nanoseconds.
    pub(crate) hold_ns: Box<[AtomicU64]>,
}

impl Default for WorkerGauges {
    fn default() -> Self {
        let zeros = || {
            (0..crate::config::MAX_WORKERS)
                .map(|_| AtomicU64::new(0))
                .collect()
        };
        WorkerGauges {
            count: AtomicUsize::new(0),
            load_ppm: zeros(),
            hold_ns: zeros(),
        }
    }
}

/// Settings the workers need, taken from [`Config`].
#[derive(Debug, Clone)]
pub(crate) struct WorkerConfig {
    /// Close a session whose ICE has been disconnected this long.
    pub(crate) ice_timeout: Duration,
    /// Close a session not connected this long after creation.
    pub(crate) connect_timeout: Duration,
    /// Minimum time between keyframe requests to one publisher.
    pub(crate) keyframe_request_interval: Duration,
    /// Source packets from other workers older than this are dropped, not forwarded.
    pub(crate) forward_max_delay: Duration,
    /// How long forwards are held to leave as per-viewer GSO runs.
    pub(crate) forward_hold: crate::config::ForwardHold,
    /// A source that sent nothing this long is silent (see `Config::source_silence`).
    pub(crate) source_silence: Duration,
}
