//! Byte formats, and nothing with state: RTP and RTCP packets, STUN's USERNAME, the
//! first-byte demultiplexing of one UDP port, H.264 and H.265 NAL units and VP8, VP9
//! and AV1 frames in RTP payloads, NTP times.
//!
//! Everything here reads untrusted bytes from the network through `get` and slice
//! patterns and never panics; it allocates only where it builds a packet. A leaf: it
//! imports nothing of the crate.

pub(crate) mod av1;
pub(crate) mod bits;
pub(crate) mod demux;
pub mod h264;
pub(crate) mod h265;
pub(crate) mod nal;
pub(crate) mod ntp;
pub(crate) mod rtcp;
pub mod rtp;
pub(crate) mod stun;
pub(crate) mod twcc;
pub(crate) mod vp8;
pub(crate) mod vp9;
