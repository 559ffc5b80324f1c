//! wishd-load: a load generator for any WHIP/WHEP server.
//!
//! | module | owns |
//! | --- | --- |
//! | [`payload`] | the synthetic media: H.264-like train, Opus-like audio, the marker |
//! | [`publisher`] | the WHIP publisher (one str0m peer) and its send-time table |
//! | [`swarm`] | the WHEP viewer swarm: many str0m peers over a few sockets |
//! | [`stats`] | loss/duplicate/reorder accounting, delay histograms, aggregation |
//! | [`run`] | one load run: publisher + N viewers for a while, a report |
//! | [`clock`], [`rtp`], [`signal`] | shared clock, RTP header peeking, WHIP/WHEP HTTP |

#![deny(unsafe_code)]

pub mod clock;
pub mod floor;
pub mod payload;
pub mod procfs;
pub mod publisher;
pub mod rtp;
pub mod run;
pub mod signal;
pub mod stats;
pub mod swarm;
