//! wishd: a standards-based WebRTC media server.
//!
//! Publishers push media with WHIP (RFC 9725), viewers pull it with WHEP, and every
//! source of a named stream reaches every viewer of it without transcoding.
//!
//! The crate is laid out one concern per module:
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | the configuration tree: embedded defaults, TOML file, flags, `WISHD_*` |
//! | [`http`] | HTTP routing, status mapping, the WHIP/WHEP resources |
//! | [`sdp`] | inspecting offers before str0m sees them, codec choice and matching |
//! | [`ingest`] | RTP ingest from cameras and encoders: UDP listeners, RTP/RTCP parsing |
//! | [`media`] | media workers: UDP sockets, str0m `Rtc`s, timers |
//! | [`core`] | the sans-IO forwarding core: per-viewer rewriting, keyframe requests |
//! | [`directory`] | the directory of streams and sessions shared by HTTP and workers |
//! | [`server`] | wiring it all together: `Server::start` and graceful shutdown |
//! | [`auth`] | bearer tokens: header parsing, static tokens, JWT, stream globs, scopes |
//! | [`ratelimit`] | per-address token buckets for POST/PATCH/DELETE |
//! | [`tls`] | HTTPS: rustls config with ALPN, certificate reload, dev certificates |
//! | [`metrics`] | lock-free counters and histograms, Prometheus text at `/metrics` |
//! | [`api`] | the operator's JSON API under `/api/`, `/metrics`, `/healthz`, `/readyz` |
//! | [`client`] | WHIP/WHEP client peers built on str0m, for tests and tools |
//! | [`web`] | the embedded web pages: index, publish, watch, `<wishd-player>` |
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
pub mod config;
pub mod core;
pub mod directory;
pub mod http;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod model;

pub mod sdp;
pub mod server;
pub mod wire;
