//! The sans-IO forwarding core: what happens to a source's packets between the socket
//! they came in on and the sockets of the viewers.
//!
//! # Glossary
//!
//! * **Stream**: a named thing viewers watch; at most one source feeds it at a time
//!   (its lock-free shared state is `directory::Stream`).
//! * **Source**: what feeds a stream: a WHIP publisher or an RTP camera. Its packets go
//!   through the one source pipeline, [`Source`], into [`SourcePacket`]s. A source
//!   that replaces another starts a new **epoch**.
//! * **Viewer track**: one m-line of a viewer's session, with its own sequence-number
//!   and timestamp space ([`ViewerTrack`]).
//! * **Rewriter**: maps a source's numbering into a viewer track's, across epochs and
//!   replays (`rewriter`).
//! * **Fanout**: one worker's viewers of every stream, each track with its rewriter,
//!   turning a source packet into one [`Forward`] per viewer track ([`Fanout`]).
//! * **Pipe**: the hand-over of a source packet to another worker with viewers of its
//!   stream (one shared `Arc`, `media::send_to_viewer_workers`); between servers, a
//!   relay, later.
//! * **Keyframes**: asked of a source through its [`KeyframeLimiter`], or served from
//!   its [`KeyframeCache`] when it cannot be asked ([`KeyframeSource`] decides).
//!
//! # Contract
//!
//! The core does no I/O: no sockets, no async runtime, no locks, and it never reads
//! the clock. Every call that depends on time takes `now` (or uses the packet's
//! `arrival`), so it is tested with synthetic packets and a fake clock.
//!
//! Each media worker (one per CPU core) owns one [`Fanout`] and one
//! [`KeyframeLimiter`] per source it hosts, and drives them from its loop:
//!
//! 1. A source's RTP packet goes through [`Source::packet`] once: the payload type
//!    viewers know, `keyframe_start` ([`is_keyframe_start`]), the capture instant
//!    from the sender's reports, and the `epoch` its receiver numbered it in.
//! 2. [`Fanout::forward`] appends one [`Forward`] per interested viewer track into a
//!    caller-owned, reused `Vec`. Every forward shares the source's `Arc<[u8]>`
//!    payload: there is no per-viewer copy or allocation.
//! 3. The worker writes each forward on the viewer's send path, using the viewer's
//!    `Mid`, payload type, extended sequence number and timestamp as given.
//!
//! Bursts: the cached group of pictures a viewer starts from goes through a pacer
//! inside the [`Fanout`]; the worker writes what [`Fanout::poll_paced`] releases and
//! wakes up at [`Fanout::paced_timeout`].
//!
//! Keyframes: [`Fanout::add_viewer_with_prefix`] says when a new viewer needs one, and
//! [`Fanout::keyframes_wanted`] retries for viewers still waiting. Requests for one
//! source go through its [`KeyframeLimiter`], which sends the first at once and
//! coalesces bursts. A source that cannot be asked, or that leaves a request
//! unanswered, starts its viewers from a [`KeyframeCache`] instead; the
//! [`KeyframeSource`] decides which.
//!
//! # Rewriting rules, per viewer track
//!
//! * Audio is forwarded from the first packet; video from the first packet with
//!   `keyframe_start` (earlier ones are dropped and counted).
//! * The first forwarded packet gets the track's `first_seq` and `first_timestamp`;
//!   later packets keep their distance to it in sequence number and timestamp, so
//!   source gaps and reordering are preserved. Packets older than the first
//!   forwarded packet of their epoch are dropped. The outgoing extended sequence
//!   number starts below 2^16 (ROC 0) however far the source already is.
//! * A new epoch continues the viewer's numbering at the highest sequence number
//!   so far plus one, and its timestamp advances by the wall-clock time elapsed
//!   since the last packet (at least one tick); video waits for a keyframe again.
//!   Late packets of an older epoch are dropped.
//! * Payload types go through the track's map; unmapped ones are dropped.

mod bwe;
mod codec;
mod fanout;
mod frame_size;
pub mod hold;
mod keyframe;
mod keyframe_cache;
mod keyframe_source;
mod layers;
mod nack_history;
mod pacer;
mod packet;
mod rewriter;
mod sender_clock;
mod source;

pub use crate::model::CodecKind;
pub(crate) use bwe::{Bwe, BweConfig, ProbeState, Usage};
pub use codec::is_keyframe_start;
pub(crate) use fanout::{Fanout, FanoutStats};
pub use frame_size::frame_size;
pub(crate) use frame_size::h265_sps_size;
pub use hold::HoldControl;
pub(crate) use keyframe::{KeyframeLimiter, ResumeWatch};
pub(crate) use keyframe_cache::{CACHE_BYTES, H264ParameterSets, KeyframeCache};
pub(crate) use keyframe_source::{KeyframeMode, KeyframeSource};
pub(crate) use layers::{
    Bandwidth, Decision, LayerChooser, LayerInfo, LayerPolicy, ProbeOutcome, best_first,
    by_quality, start_layer,
};
pub(crate) use nack_history::{NACK_HISTORY_PACKETS, NackHistory};
pub(crate) use packet::{Forward, SourcePacket, ViewerId, ViewerTrack};
pub(crate) use sender_clock::SenderClock;
pub(crate) use source::{RtpIn, Source, SourceTrack};
pub use str0m::media::MediaKind;
