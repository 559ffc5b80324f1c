//! wishd: a standards-based WebRTC media server.
//!
//! Publishers push media with WHIP (RFC 9725), viewers pull it with WHEP, and every
//! source of a named stream reaches every viewer of it without transcoding.
//!
//! The crate is laid out one concern per module, leaves first: each module imports only
//! modules above it in this table (`scripts/check-arrows.sh` checks it).
//!
//! | module | owns |
//! | --- | --- |
//! | [`model`] | the shared vocabulary: `Role`, `SessionId`, stream names, `EndReason`, codec families |
//! | [`wire`] | byte formats: RTP, RTCP, STUN, the one-port demux, H.264 and H.265 NAL units, NTP |
//! | [`config`] | the configuration tree (file, flags, `WISHD_*`), validated once into `Valid<Config>` |
//! | [`metrics`] | lock-free counters and histograms, and the Prometheus text format |
//! | [`sdp`] | inspecting offers before str0m sees them, codec choice and matching |
//! | [`auth`] | bearer tokens: header parsing, static tokens, JWT, stream globs, scopes |
//! | [`core`] | the sans-IO forwarding core: the source pipeline, fan-out, rewriting, keyframes |
//! | [`directory`] | streams and sessions shared by HTTP and workers, and each stream's lock-free state |
//! | [`media`] | negotiation, the worker pool, the worker loops, the viewers' send path |
//! | [`ingest`] | RTP cameras and encoders (UDP listeners) and RTSP cameras, feeding the source pipeline |
//! | [`record`] | streams written to fragmented MP4 files, off the media path |
//! | [`http`] | the HTTP edge: router, status map, WHIP/WHEP, the operator's routes, pages, TLS |
//! | [`server`] | wiring: `prepare` (every file read once), `Server::run`, shutdown |
//! | [`client`] | WHIP/WHEP client peers built on str0m, for tests and tools |
//!
//! Items are `pub(crate)` unless the binary, the load tool, the conformance runner or
//! the tests use them, so the compiler points at dead code.
//!
//! Panic policy: input from the network never panics the server. Errors are values;
//! a panic inside one session's str0m call is caught and drops that session only.
//!
//! Unsafe code: none, except the one `sendmmsg` call in `media::udp`
//! (`MediaSocket::try_sendmmsg` and its `put_cmsg`), which no safe crate offers with
//! a control message per datagram; it is allowed there alone.
#![deny(unsafe_code)]

pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod core;
pub mod directory;
#[cfg(fuzzing)]
pub mod fuzz;
pub mod http;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod model;
pub(crate) mod push;
pub mod record;
pub mod sdp;
pub mod server;
pub mod wire;
