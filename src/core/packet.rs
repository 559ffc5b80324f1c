//! The types that cross the core boundary: source packets in, forwards out.

use std::sync::Arc;
use std::time::Instant;

use str0m::media::{MediaKind, Mid};

use crate::model::CodecKind;

/// Identifies a viewer session inside one worker (the worker maps it to its Rtc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ViewerId(pub u64);

/// One RTP packet of a source, parsed once and shared (behind `Arc`) by every viewer.
#[derive(Debug, Clone)]
pub(crate) struct SourcePacket {
    /// Audio or video; selects the viewer track the packet goes to.
    pub(crate) kind: MediaKind,
    /// The codec family (keyframes, picture sizes).
    pub(crate) codec: CodecKind,
    /// Payload type as the source numbers it.
    pub(crate) pt: u8,
    /// Extended sequence number in the source's numbering.
    pub(crate) seq: u64,
    /// RTP timestamp as the source sent it.
    pub(crate) timestamp: u32,
    /// RTP marker bit (end of frame for video).
    pub(crate) marker: bool,
    /// This packet starts a keyframe access unit (see [`is_keyframe_start`](super::is_keyframe_start)).
    pub(crate) keyframe_start: bool,
    /// Changes when the source is replaced (publisher reconnect, SSRC change).
    ///
    /// Epochs are compared with serial-number arithmetic (RFC 1982 style), so a
    /// source increments it and may wrap around.
    pub(crate) epoch: u32,
    /// The simulcast layer it belongs to: its index in the publisher's offer (0 for a
    /// source that sends one encoding). Each layer has its own sequence numbers,
    /// timestamps and keyframes.
    pub(crate) layer: u8,
    /// When the packet arrived from the network.
    pub(crate) arrival: Instant,
    /// When the packet's media was captured, on this server's clock, as far as the
    /// source's RTCP sender reports tell (its arrival when they do not). Viewers'
    /// packets are written to str0m with it, so the sender reports wishd sends them
    /// carry the source's audio/video relationship. Never later than `arrival`.
    pub(crate) wallclock: Instant,
    /// The RTP payload, shared by every viewer without copying.
    pub(crate) payload: Arc<[u8]>,
}

/// What one viewer track needs for rewriting.
#[derive(Debug, Clone)]
pub(crate) struct ViewerTrack {
    /// Audio or video; source packets of this kind go to this track.
    pub(crate) kind: MediaKind,
    /// The viewer's m-line the packets are written to.
    pub(crate) mid: Mid,
    /// RTP clock rate of the track, used to advance timestamps across source changes.
    pub(crate) clock_rate: u32,
    /// Source PT -> viewer PT (the viewer's answer may number the same codec differently).
    pub(crate) pt_map: Vec<(u8, u8)>,
    /// First outgoing sequence number (the worker picks it at random below 2^15, so ROC starts at 0).
    pub(crate) first_seq: u16,
    /// First outgoing RTP timestamp (random).
    pub(crate) first_timestamp: u32,
}

/// One packet to write to one viewer (the worker calls str0m's `StreamTx::write_rtp` with it).
#[derive(Debug, Clone)]
pub(crate) struct Forward {
    /// The viewer to write to.
    pub(crate) viewer: ViewerId,
    /// The viewer's m-line.
    pub(crate) mid: Mid,
    /// Payload type in the viewer's numbering.
    pub(crate) pt: u8,
    /// Extended outgoing sequence number, continuous per viewer track.
    pub(crate) seq: u64,
    /// Outgoing RTP timestamp.
    pub(crate) timestamp: u32,
    /// RTP marker bit, as the source set it.
    pub(crate) marker: bool,
    /// True for video (the viewer may NACK it and str0m keeps it for resending).
    pub(crate) nackable: bool,
    /// It starts a keyframe: resending what the viewer lost before it is useless.
    pub(crate) keyframe: bool,
    /// The source packet's [`wallclock`](SourcePacket::wallclock) (capture instant).
    pub(crate) wallclock: Instant,
    /// The source payload, shared.
    pub(crate) payload: Arc<[u8]>,
}
