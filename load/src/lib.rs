//! wishd-load: a load generator for any WHIP/WHEP server.
//!
//! | module | owns |
//! | --- | --- |
//! | [`payload`] | the synthetic media: H.264-like train, Opus-like audio, the marker |
//! | [`publisher`] | the WHIP publisher (one str0m peer) and its send-time table |
//! | [`swarm`] | the WHEP viewer swarm: many str0m peers over a few sockets |
//! | [`offer`] | a viewer's offer as a browser's player writes it (fixed mids, no receive-only msid) |
//! | [`stats`] | loss/duplicate/reorder accounting, delay histograms, aggregation |
//! | [`run`] | one load run: publisher + N viewers for a while, a report |
//! | [`bench`] | the stepped fan-out benchmark, its table and JSON |
//! | [`floor`] | the physical floor: SRTP protect + UDP send per packet |
//! | [`http_floor`] | the HTTP floor: a burst of requests to a server that does nothing |
//! | [`stack`] | str0m's own send path per packet, two peers in memory (beside the floor) |
//! | [`metrics`], [`procfs`] | the server's `/metrics` histogram, CPU and memory from /proc |
//! | [`wake`] | the hand-over floor: a thread's wake-up after a channel send, under load |
//! | [`clock`], [`rtp`], [`signal`] | shared clock, RTP header peeking, WHIP/WHEP HTTP |

#![deny(unsafe_code)]

pub mod bench;
pub mod clock;
pub mod floor;
pub mod http_floor;
pub mod metrics;
pub mod offer;
pub mod payload;
pub mod procfs;
pub mod publisher;
pub mod rtp;
pub mod run;
pub mod signal;
pub mod stack;
pub mod stats;
pub mod swarm;
pub mod wake;
