//! The sans-IO forwarding core: per-viewer rewriting and keyframe requests.
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
//! 1. A source RTP packet is parsed once into a [`SourcePacket`]; the worker sets
//!    `keyframe_start` with [`is_keyframe_start`] and bumps `epoch` whenever the
//!    source is replaced (publisher reconnect, SSRC change).
//! 2. [`Fanout::forward`] appends one [`Forward`] per interested viewer track into a
//!    caller-owned, reused `Vec`. Every forward shares the source's `Arc<[u8]>`
//!    payload: there is no per-viewer copy or allocation.
//! 3. The worker writes each forward with str0m's `StreamTx::write_rtp`, using the
//!    viewer's `Mid`, payload type, extended sequence number and timestamp as given.
//!
//! Bursts: the cached group of pictures a viewer starts from goes through a [`Pacer`]
//! inside the [`Fanout`]; the worker writes what [`Fanout::poll_paced`] releases and
//! wakes up at [`Fanout::paced_timeout`].
//!
//! Keyframes: [`Fanout::add_viewer`] says when a new viewer needs one, and
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

mod codec;
mod fanout;
mod frame_size;
pub mod hold;
mod keyframe;
mod keyframe_cache;
mod keyframe_source;
mod nack_history;
mod pacer;
mod packet;
mod rewriter;
mod sender_clock;
mod source;

pub use crate::model::CodecKind;
pub use codec::is_keyframe_start;
pub use fanout::{Fanout, FanoutStats, Resync};
pub use frame_size::frame_size;
pub use hold::HoldControl;
pub use keyframe::KeyframeLimiter;
pub use keyframe_cache::{CACHE_BYTES, H264ParameterSets, KeyframeCache};
pub use keyframe_source::{ANSWER_WITHIN, CacheReason, KeyframeMode, KeyframeSource};
pub use nack_history::{
    NACK_HISTORY_INITIAL, NACK_HISTORY_MAX, NACK_HISTORY_MIN, NACK_HISTORY_PACKETS, NackHistory,
};
pub use pacer::{Pacer, PacerStats};
pub use packet::{Forward, SourcePacket, ViewerId, ViewerTrack};
pub use sender_clock::{ANCHOR_MARGIN, REANCHOR_AFTER, SenderClock};
pub use source::{RtpIn, Source, SourceTrack};
pub use str0m::media::MediaKind;
