//! The types that cross the core boundary: source packets in, forwards out.

use std::sync::Arc;
use std::time::Instant;

use str0m::media::{MediaKind, Mid};

use crate::model::CodecKind;

/// Identifies a viewer session inside one worker (the worker maps it to its Rtc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViewerId(pub u64);

/// One RTP packet of a source, parsed once and shared (behind `Arc`) by every viewer.
#[derive(Debug, Clone)]
pub struct SourcePacket {
    /// Audio or video; selects the viewer track the packet goes to.
    pub kind: MediaKind,
    /// The codec family (keyframes, picture sizes).
    pub codec: CodecKind,
    /// Payload type as the source numbers it.
    pub pt: u8,
    /// Extended sequence number in the source's numbering.
    pub seq: u64,
    /// RTP timestamp as the source sent it.
    pub timestamp: u32,
    /// RTP marker bit (end of frame for video).
    pub marker: bool,
    /// This packet starts a keyframe access unit (see [`is_keyframe_start`](super::is_keyframe_start)).
    pub keyframe_start: bool,
    /// Changes when the source is replaced (publisher reconnect, SSRC change).
    ///
    /// Epochs are compared with serial-number arithmetic (RFC 1982 style), so a
    /// source increments it and may wrap around.
    pub epoch: u32,
    /// When the packet arrived from the network.
    pub arrival: Instant,
    /// When the packet's media was captured, on this server's clock, as far as the
    /// source's RTCP sender reports tell (its arrival when they do not). Viewers'
    /// packets are written to str0m with it, so the sender reports wishd sends them
    /// carry the source's audio/video relationship. Never later than `arrival`.
    pub wallclock: Instant,
    /// The RTP payload, shared by every viewer without copying.
    pub payload: Arc<[u8]>,
}

/// What one viewer track needs for rewriting.
#[derive(Debug, Clone)]
pub struct ViewerTrack {
    /// Audio or video; source packets of this kind go to this track.
    pub kind: MediaKind,
    /// The viewer's m-line the packets are written to.
    pub mid: Mid,
    /// RTP clock rate of the track, used to advance timestamps across source changes.
    pub clock_rate: u32,
    /// Source PT -> viewer PT (the viewer's answer may number the same codec differently).
    pub pt_map: Vec<(u8, u8)>,
    /// First outgoing sequence number (the worker picks it at random below 2^15, so ROC starts at 0).
    pub first_seq: u16,
    /// First outgoing RTP timestamp (random).
    pub first_timestamp: u32,
}

/// One packet to write to one viewer (the worker calls str0m's `StreamTx::write_rtp` with it).
#[derive(Debug, Clone)]
pub struct Forward {
    /// The viewer to write to.
    pub viewer: ViewerId,
    /// The viewer's m-line.
    pub mid: Mid,
    /// Payload type in the viewer's numbering.
    pub pt: u8,
    /// Extended outgoing sequence number, continuous per viewer track.
    pub seq: u64,
    /// Outgoing RTP timestamp.
    pub timestamp: u32,
    /// RTP marker bit, as the source set it.
    pub marker: bool,
    /// True for video (the viewer may NACK it and str0m keeps it for resending).
    pub nackable: bool,
    /// The source packet's [`wallclock`](SourcePacket::wallclock) (capture instant).
    pub wallclock: Instant,
    /// The source payload, shared.
    pub payload: Arc<[u8]>,
}
