//! Configuration: embedded defaults, an optional TOML file, `WISHD_*` environment
//! variables and command-line flags, validated once at start.
//!
//! Precedence, lowest first: built-in defaults, the `--config` file, then each flag or its
//! `WISHD_*` environment variable (a flag given on the command line wins over the
//! variable). Nothing here is read again at run time.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::Role;

/// Errors while loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for wishd (unknown key, wrong type, ...).
    #[error("{}:{message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// `LINE:COLUMN: what (at `the line`)`, from the parser's span.
        message: String,
    },
    /// A value wishd cannot use, named by its key.
    #[error("{at}{key}: {message}")]
    Value {
        /// `FILE:LINE:COLUMN: ` when the key is in the config file, else
        /// `invalid configuration: `.
        at: String,
        /// The key, dotted, with indices for arrays of tables (`auth.tokens[0]`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Anything else wrong with the settings (a malformed flag).
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ConfigError {
    fn value(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Value {
            at: "invalid configuration: ".into(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// Points a [`ConfigError::Value`] at its key in the config file `path`, when
    /// the key is written there (a value from a flag or the defaults stays as is).
    pub fn locate(self, path: &Path) -> ConfigError {
        let ConfigError::Value { at, key, message } = self else {
            return self;
        };
        let at = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| {
                let offset = key_offset(&text, &key)?;
                let (line, col) = line_col(&text, offset);
                Some(format!("{}:{line}:{col}: ", path.display()))
            })
            .unwrap_or(at);
        ConfigError::Value { at, key, message }
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Where a dotted key (`limits.burst`, `auth.tokens[1].token`, `rtp[0]`) is written in
/// TOML text: the byte offset of the deepest part of it that is written there.
fn key_offset(text: &str, key: &str) -> Option<usize> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let parts: Vec<(&str, Option<usize>)> = key
        .split('.')
        .map(|p| match p.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse().ok()),
            None => (p, None),
        })
        .collect();
    find_key(doc.as_table(), &parts)
}

fn find_key(table: &dyn toml_edit::TableLike, parts: &[(&str, Option<usize>)]) -> Option<usize> {
    use toml_edit::Item;
    let ((name, index), rest) = parts.split_first()?;
    let (k, v) = table.get_key_value(name)?;
    let mut here = k.span().map(|r| r.start);
    let child: Option<&dyn toml_edit::TableLike> = match (index, v) {
        (Some(i), Item::ArrayOfTables(a)) => {
            let t = a.get(*i)?;
            here = t.span().map(|r| r.start).or(here);
            Some(t)
        }
        (Some(i), Item::Value(toml_edit::Value::Array(a))) => a
            .get(*i)
            .and_then(|v| v.as_inline_table())
            .map(|t| t as &dyn toml_edit::TableLike),
        (None, v) => v.as_table_like(),
        _ => None,
    };
    if rest.is_empty() {
        return here;
    }
    child.and_then(|c| find_key(c, rest)).or(here)
}

/// The whole configuration of a wishd server.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the plain-HTTP listener (WHIP, WHEP). Default `[::]:8080`: every
    /// address of both families (`0.0.0.0` alone where IPv6 is off).
    pub http: SocketAddr,
    /// Address of the first media worker's UDP socket. Worker *n* binds port + *n*.
    /// Port 0 lets the OS pick a free port for every worker. Default `[::]:8189`,
    /// dual-stack like `http`.
    pub udp: SocketAddr,
    /// Extra addresses advertised as ICE host candidates besides the bound ones
    /// (the 1:1 NAT public address of a cloud machine).
    pub public_ips: Vec<IpAddr>,
    /// Number of media workers; 0 means one per CPU core. Default 0.
    pub workers: usize,
    /// Server DTLS sessions kept made ahead of offers, so that a crowd's joins do
    /// not each make one on the request's thread; 0 makes none ahead. Default 64.
    pub prepared_dtls: usize,
    /// How long viewers stay connected after their publisher left, waiting for a
    /// publisher to come back to the stream. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub publisher_grace: Duration,
    /// Whether a WHIP publisher may take a stream from the one it has: `never` (a
    /// second publisher gets 409), `when-silent` (the default: when the current one
    /// has sent nothing for `source_silence`, as after a crash or a lost network) or
    /// `always` (the newest publisher wins). The new publisher's token must allow
    /// publishing the stream, as for any publisher.
    pub publisher_takeover: Takeover,
    /// A source that has sent nothing this long is silent: the API says so, viewers'
    /// keyframe requests wait for it (they are not answered with a stale picture from
    /// the keyframe cache), and with `publisher_takeover = "when-silent"` a new
    /// publisher may replace it. Default 1 s.
    #[serde(with = "humantime_serde")]
    pub source_silence: Duration,
    /// A session whose ICE agent has seen no consent (STUN) for this long is closed.
    /// Default 10 s.
    #[serde(with = "humantime_serde")]
    pub ice_timeout: Duration,
    /// A session that has not completed ICE and DTLS within this time is closed.
    /// Default 15 s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Minimum time between two keyframe requests (PLI) sent to one publisher;
    /// requests from viewers inside this window are coalesced. Default 500 ms.
    #[serde(with = "humantime_serde")]
    pub keyframe_request_interval: Duration,
    /// A source packet that waited longer than this between its arrival and a media
    /// worker's fan-out (a worker behind on its queue) is dropped for that worker's
    /// viewers and counted, instead of reaching them late. Default 200 ms.
    #[serde(with = "humantime_serde")]
    pub forward_max_delay: Duration,
    /// How long a media worker holds the packets it forwards before it writes them,
    /// so that each viewer's packets of that time leave as one GSO run instead of one
    /// system-call message each: less CPU per packet for up to this much more delay.
    /// A duration, or `"auto"`: none while the worker is idle, growing with its load
    /// to 20 ms. Default 0 (each source packet is written as soon as it arrives).
    pub forward_hold: ForwardHold,
    /// How forwarded RTP leaves for viewers. Only `direct` (wishd builds, protects
    /// and sends it, answers NACKs and writes the sender reports); the key is kept so
    /// that configs naming it still load.
    pub egress: Egress,
    /// Seconds a WHEP client is told to wait (`Retry-After`) when the stream has no
    /// source yet. Default 2.
    pub retry_after_secs: u32,
    /// RTP ingest entries (`[[rtp]]` tables), one per stream fed by a camera or encoder.
    pub rtp: Vec<RtpEntry>,
    /// RTSP cameras (`[[rtsp]]` tables), one per stream wishd pulls from a camera.
    pub rtsp: Vec<RtspEntry>,
    /// Streams wishd pulls from another WHEP server (`[[pull]]` tables).
    pub pull: Vec<PullEntry>,
    /// Streams wishd publishes to another WHIP server (`[[push]]` tables).
    pub push: Vec<PushEntry>,
    /// Recording rules (`[[record]]` tables): the first that names a stream records it.
    pub record: Vec<RecordEntry>,
    /// An RTP source that sent nothing this long is reported offline. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub rtp_timeout: Duration,
    /// Who may publish and play: policies, static tokens, JWT (the `[auth]` table).
    pub auth: AuthConfig,
    /// Origins allowed by CORS; `["*"]` (the default) allows every origin.
    pub cors_origins: Vec<String>,
    /// HTTPS listener (the `[https]` table); none by default.
    pub https: Option<HttpsConfig>,
    /// Serve plain HTTP on `http`. Default true; false serves HTTPS only (WHIP and
    /// WHEP require HTTPS, RFC 9725 §5) and needs `[https]`.
    pub plain_http: bool,
    /// Limits for an internet-facing endpoint (the `[limits]` table).
    pub limits: LimitsConfig,
    /// The URL clients reach this server at, e.g. `https://media.example.com` (behind a
    /// reverse proxy or TLS terminator). Session `Location`s start with it; without it
    /// they are built from the request's scheme and `Host`.
    pub public_url: Option<String>,
    /// STUN/TURN servers for clients (`[[ice_servers]]`), sent as `Link` headers.
    pub ice_servers: Vec<IceServerConfig>,
    /// Endpoints that send clients elsewhere with a 307 (`[[redirects]]`).
    pub redirects: Vec<RedirectConfig>,
    /// The operator's JSON API and `/metrics` access (the `[api]` table).
    pub api: ApiConfig,
    /// Log lines: `human` (the default) or `json` (one JSON object per line).
    pub log_format: LogFormat,
    /// Simulcast layers from publishers, and the layer each viewer gets (the
    /// `[simulcast]` table).
    pub simulcast: SimulcastConfig,
    /// ICE over TCP for clients without UDP (the `[ice_tcp]` table).
    pub ice_tcp: IceTcpConfig,
    /// Several nodes sharing a stream directory in Redis (the `[cluster]` table);
    /// none by default: the server runs alone.
    pub cluster: Option<ClusterConfig>,
}

/// Several wishd nodes behind one stream directory in Redis (or Valkey): a stream is
/// owned by the node its source came to, and a viewer on another node makes that
/// node relay the stream from the owner over WHEP.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The directory: `redis://host[:port][/db]` (`rediss://` for TLS).
    pub redis: String,
    /// Keys are prefixed `wishd:{name}:`, so that clusters may share a Redis.
    /// Default `main`.
    pub name: String,
    /// This node's id, unique in the cluster. Default the host name.
    pub node: String,
    /// This node's base URL as the other nodes reach it (`http://10.0.0.1:8080`):
    /// relays POST to `{url}/whep/{stream}`, and redirects send clients there.
    pub url: String,
    /// The bearer token nodes send each other for relays; each node accepts it for
    /// playing any stream. Required.
    pub token: Option<Secret>,
    /// A claim not refreshed this long expires (a node that died). Default 6 s;
    /// refreshed every third of it.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// A relay is left this long after its last viewer here went. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub relay_linger: Duration,
    /// `relay` (the default): a WHEP POST for a stream another node owns is
    /// answered here, from a relay of it. `redirect`: it is answered 307 to the
    /// owner.
    pub viewers: ClusterViewers,
}

/// Where a viewer of a stream owned by another node is served.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterViewers {
    /// Here, from a relay.
    #[default]
    Relay,
    /// At the owner: 307.
    Redirect,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: String::new(),
            name: "main".into(),
            node: String::new(),
            url: String::new(),
            token: None,
            lease_ttl: Duration::from_secs(6),
            relay_linger: Duration::from_secs(10),
            viewers: ClusterViewers::Relay,
        }
    }
}

/// ICE over TCP, passive (RFC 6544): every media worker also listens on TCP on its
/// UDP port number and offers that as a candidate below its UDP ones.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IceTcpConfig {
    /// Listen and offer TCP candidates. Default true.
    pub enabled: bool,
    /// Connections per media worker; more are closed at once. Default 1024.
    pub max_connections: usize,
    /// A connection silent this long (or holding a partial frame) is closed. Default
    /// 30 s: ICE consent checks come every few seconds.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A connection whose peer takes nothing this long is closed. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// Packets waiting to be written per connection; more are dropped (counted).
    /// Default 512 (about a second of a 4 Mbit/s stream).
    pub queue: usize,
}

impl Default for IceTcpConfig {
    fn default() -> Self {
        IceTcpConfig {
            enabled: true,
            max_connections: 1024,
            idle_timeout: Duration::from_secs(30),
            stall_timeout: Duration::from_secs(5),
            queue: 512,
        }
    }
}

/// Simulcast: layers taken from WHIP publishers and chosen per viewer.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulcastConfig {
    /// Take the two to four layers a WHIP publisher offers (RFC 8853). Default true;
    /// false declines simulcast, and publishers then send one encoding.
    pub enabled: bool,
}

impl Default for SimulcastConfig {
    fn default() -> Self {
        SimulcastConfig { enabled: true }
    }
}

/// Default lifetime of minted TURN credentials.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

/// One `[[ice_servers]]` table.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServerConfig {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URIs (RFC 7064, RFC 7065), one Link each.
    pub urls: Vec<String>,
    /// TURN long-term username; with a `static_auth_secret`, the `<user>` part of the
    /// minted username (default `wishd`).
    #[serde(default)]
    pub username: Option<String>,
    /// TURN long-term password.
    #[serde(default)]
    pub credential: Option<Secret>,
    /// Secret shared with the TURN server (coturn `static-auth-secret`).
    #[serde(default)]
    pub static_auth_secret: Option<Secret>,
    /// A file holding that secret (trailing whitespace ignored).
    #[serde(default)]
    pub static_auth_secret_file: Option<PathBuf>,
    /// Lifetime of minted credentials. Default 24 h.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
}

#[cfg(test)]
impl IceServerConfig {
    /// An entry with these URLs and nothing else set.
    pub(crate) fn with_urls(urls: &[&str]) -> Self {
        Self {
            urls: urls.iter().map(|u| u.to_string()).collect(),
            username: None,
            credential: None,
            static_auth_secret: None,
            static_auth_secret_file: None,
            ttl: DEFAULT_TTL,
        }
    }
}

fn default_ttl() -> Duration {
    DEFAULT_TTL
}

/// Which endpoints a rule applies to.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedirectKind {
    /// WHIP (publish) endpoints only.
    Whip,
    /// WHEP (play) endpoints only.
    Whep,
    /// Both.
    #[default]
    Both,
}

/// One `[[redirects]]` table.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectConfig {
    /// Stream name or glob (`*`, `?`).
    pub stream: String,
    /// `whip`, `whep` or `both` (default).
    #[serde(default)]
    pub kind: RedirectKind,
    /// The absolute `http://` or `https://` URL to send the client to; `{stream}` is
    /// replaced by the stream name and `{kind}` by `whip` or `whep`.
    pub to: String,
}

#[cfg(test)]
impl RedirectConfig {
    pub(crate) fn new(stream: &str, kind: RedirectKind, to: &str) -> Self {
        Self {
            stream: stream.into(),
            kind,
            to: to.into(),
        }
    }
}

/// The operator's API.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The admin token for `/api/` (at least 16 characters). None (the default)
    /// turns the admin routes off: they answer 404.
    pub token: Option<Secret>,
    /// Or a file holding it.
    pub token_file: Option<PathBuf>,
    /// `/metrics` needs the admin token too. Default false: open on the HTTP
    /// listener, like the health probes.
    pub metrics_token_required: bool,
}

/// How log lines are written.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text for people (tracing's default format).
    #[default]
    Human,
    /// One JSON object per line, with the span fields (stream, session).
    Json,
}

/// `forward_hold`: a fixed time, or `"auto"` (see `core::hold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardHold {
    /// Always this long (zero: not held).
    Fixed(Duration),
    /// Following each worker's load, from none up to `core::hold::AUTO_MAX`.
    Auto,
}

impl Default for ForwardHold {
    fn default() -> Self {
        ForwardHold::Fixed(Duration::ZERO)
    }
}

impl std::str::FromStr for ForwardHold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(ForwardHold::Auto);
        }
        humantime::parse_duration(s)
            .map(ForwardHold::Fixed)
            .map_err(|e| format!("{e} (a duration such as \"5ms\", or \"auto\")"))
    }
}

impl std::fmt::Display for ForwardHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardHold::Fixed(d) => write!(f, "{}", humantime::format_duration(*d)),
            ForwardHold::Auto => f.write_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for ForwardHold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
impl serde::Serialize for ForwardHold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `publisher_takeover`: when a new WHIP publisher may replace the current one.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Takeover {
    /// Never: a stream with a publisher refuses others (409).
    Never,
    /// When the current publisher has sent nothing for `source_silence`.
    #[default]
    WhenSilent,
    /// Always: the newest publisher replaces the current one.
    Always,
}

/// Which send path forwarded RTP takes to viewers (see `media::direct`).
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    /// wishd's own: packets protected with the session's DTLS-exported keys and sent
    /// in batches, NACKs answered from a shared-payload history, sender reports.
    #[default]
    Direct,
}

/// One RTP ingest entry: a stream fed by plain RTP over UDP. Give either `sdp` (a file
/// as ffmpeg writes it with `-sdp_file`) or `video`/`audio` field by field; fields given
/// here win over the file.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpEntry {
    /// The stream name viewers ask for.
    pub stream: String,
    /// An SDP file describing the media (c=, m=, rtpmap, fmtp).
    pub sdp: Option<PathBuf>,
    /// Address to bind; default the SDP's unicast c= address, else 127.0.0.1.
    pub bind: Option<IpAddr>,
    /// Multicast group to join (default: the SDP's c= address when it is multicast).
    pub multicast_group: Option<std::net::Ipv4Addr>,
    /// Interface address to join the group on (default: any).
    pub multicast_interface: Option<std::net::Ipv4Addr>,
    /// Only packets from this address are taken; others are dropped and counted.
    pub allowed_sender: Option<IpAddr>,
    /// The video medium.
    pub video: Option<RtpMediumEntry>,
    /// The audio medium.
    pub audio: Option<RtpMediumEntry>,
    /// A WHEP POST while the camera sends nothing: `false` (the default) answers 409
    /// with Retry-After, as for any stream without a source; `true` answers 201 and
    /// the viewer waits for the camera (a Janus mountpoint).
    #[serde(default)]
    pub wait_when_offline: bool,
}

/// Streams to record: every one whose name matches `stream` (a name, or a glob with
/// `*` and `?`) is written to `directory/{stream}/` from the moment it has a source.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordEntry {
    /// The streams recorded: a name or a glob.
    pub stream: String,
    /// Where the files go (one folder per stream inside it).
    pub directory: PathBuf,
    /// A new file starts at the first keyframe after this long. Default 60 s.
    #[serde(with = "humantime_serde")]
    pub segment: Duration,
    /// `true` (the default): a stream is recorded as soon as it has a source; `false`:
    /// only once `POST /api/streams/{name}/recording` asks.
    pub always: bool,
    /// Files of this rule older than this are deleted (none by default).
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// The oldest files of this rule are deleted while all of them together are
    /// larger than this many bytes (no limit by default).
    pub max_bytes: Option<u64>,
}

impl Default for RecordEntry {
    fn default() -> Self {
        RecordEntry {
            stream: String::new(),
            directory: PathBuf::new(),
            segment: Duration::from_secs(60),
            always: true,
            max_age: None,
            max_bytes: None,
        }
    }
}

/// An RTSP camera wishd pulls a stream from: it connects at start and stays
/// connected, reconnecting with backoff when the camera drops or reboots.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtspEntry {
    /// The stream name viewers ask for.
    pub stream: String,
    /// `rtsp://[user:password@]host[:port]/path`.
    pub url: String,
    /// A file holding `user:password`, instead of credentials in the URL.
    pub credentials_file: Option<PathBuf>,
    /// How RTP comes: interleaved on the RTSP connection (`tcp`, the default: through
    /// any NAT or firewall that lets RTSP through) or `udp`.
    pub transport: RtspTransport,
    /// Connect only while the stream has viewers (after one DESCRIBE at start that
    /// learns the camera's codecs), instead of always.
    pub on_demand: bool,
    /// An on-demand camera is left this long after its last viewer went. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub close_after: Duration,
    /// A WHEP POST while the camera is offline (its last connection failed): `false`
    /// (the default) answers 409 with Retry-After; `true` answers 201 and the viewer
    /// waits for the camera. An on-demand camera that is idle always takes viewers:
    /// they are what connects it.
    pub wait_when_offline: bool,
}

impl Default for RtspEntry {
    fn default() -> Self {
        RtspEntry {
            stream: String::new(),
            url: String::new(),
            credentials_file: None,
            transport: RtspTransport::Tcp,
            on_demand: false,
            close_after: Duration::from_secs(10),
            wait_when_offline: false,
        }
    }
}

/// A stream wishd plays from another WHEP server (another wishd, MediaMTX, live777,
/// Janus…) and serves as its own, as an RTSP camera's.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PullEntry {
    /// The stream name viewers ask for here.
    pub stream: String,
    /// The WHEP endpoint: `http(s)://host[:port]/path`.
    pub url: String,
    /// The bearer token the WHEP server wants, if any.
    pub token: Option<Secret>,
    /// Connect only while the stream has viewers here, instead of always.
    pub on_demand: bool,
    /// An on-demand pull is left this long after its last viewer went. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub close_after: Duration,
    /// A WHEP POST while the upstream is unreachable: `false` (the default) answers
    /// 409 with Retry-After; `true` answers 201 and the viewer waits.
    pub wait_when_offline: bool,
}

impl Default for PullEntry {
    fn default() -> Self {
        PullEntry {
            stream: String::new(),
            url: String::new(),
            token: None,
            on_demand: false,
            close_after: Duration::from_secs(10),
            wait_when_offline: false,
        }
    }
}

/// A stream of this server that wishd publishes to another WHIP server whenever it
/// has a source here.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushEntry {
    /// The stream here.
    pub stream: String,
    /// The WHIP endpoint: `http(s)://host[:port]/path`.
    pub url: String,
    /// The bearer token the WHIP server wants, if any.
    pub token: Option<Secret>,
}

/// How an RTSP camera's RTP reaches wishd.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RtspTransport {
    /// Interleaved on the RTSP TCP connection.
    #[default]
    Tcp,
    /// RTP and RTCP over UDP.
    Udp,
}

/// One medium of an [`RtpEntry`], field by field.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpMediumEntry {
    /// UDP port of RTP (RTCP on port + 1, or muxed).
    pub port: u16,
    /// Payload type.
    pub pt: u8,
    /// `codec/clock rate[/channels]`, e.g. `H264/90000` or `opus/48000/2`.
    pub rtpmap: String,
    /// The fmtp parameters, e.g. `packetization-mode=1;profile-level-id=42e01f`.
    #[serde(default)]
    pub fmtp: String,
}

impl RtpEntry {
    /// The `--rtp STREAM=FILE.sdp` flag form.
    pub fn from_flag(flag: &str) -> Result<RtpEntry, String> {
        let (stream, file) = flag
            .split_once('=')
            .filter(|(s, f)| !s.is_empty() && !f.is_empty())
            .ok_or_else(|| format!("--rtp {flag:?}: expected STREAM=FILE.sdp"))?;
        Ok(RtpEntry {
            stream: stream.to_owned(),
            sdp: Some(PathBuf::from(file)),
            ..RtpEntry::default()
        })
    }
}

/// Whether an action needs a token.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Anyone may.
    Open,
    /// A bearer token with the right to the action on the stream is required.
    Token,
}

/// A secret string (a token or an HMAC key): its `Debug` never shows the value.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Authorization settings.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Policy for WHIP (publish). Default `token`.
    #[serde(default = "policy_token")]
    pub publish: Policy,
    /// Policy for WHEP (play). Default `open`.
    #[serde(default = "policy_open")]
    pub play: Policy,
    /// Accept a `?token=` query parameter (for players that cannot set headers).
    /// Default false.
    #[serde(default)]
    pub query_token: bool,
    /// Static tokens.
    #[serde(default)]
    pub tokens: Vec<StaticTokenConfig>,
    /// JWT verification key and checks.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
}

fn policy_token() -> Policy {
    Config::default().auth.publish
}
fn policy_open() -> Policy {
    Config::default().auth.play
}
fn all_streams() -> Vec<String> {
    vec!["*".into()]
}
fn all_actions() -> Vec<Role> {
    vec![Role::Publisher, Role::Viewer]
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

/// One static token, e.g. an OBS stream key.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticTokenConfig {
    /// The token value.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Or a file holding it (surrounding whitespace is ignored).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Stream names or globs (`*`, `?`) it is valid for. Default every stream.
    #[serde(default = "all_streams")]
    pub streams: Vec<String>,
    /// Actions it allows. Default both.
    #[serde(default = "all_actions")]
    pub actions: Vec<Role>,
}

impl StaticTokenConfig {
    /// `token`, valid for `action` on every stream (the `--publish-token` and
    /// `--play-token` flags, the publish token made at start when none is configured).
    pub fn every_stream(token: impl Into<String>, action: Role) -> StaticTokenConfig {
        StaticTokenConfig {
            token: Some(Secret::new(token)),
            token_file: None,
            streams: vec!["*".into()],
            actions: vec![action],
        }
    }
}

/// JWT verification: one key, which pins the algorithm.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// HS256 secret.
    #[serde(default)]
    pub secret: Option<Secret>,
    /// File holding the HS256 secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// PEM public key (RSA, EC P-256 or Ed25519).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Algorithm of the public key when it is not RS256, ES256 or EdDSA (e.g. ES384).
    #[serde(default)]
    pub algorithm: Option<String>,
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud`.
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`. Default 30 s.
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
}

impl JwtConfig {
    /// A JWT setting with only a secret file.
    pub fn with_secret_file(path: PathBuf) -> JwtConfig {
        JwtConfig {
            secret: None,
            secret_file: Some(path),
            public_key_file: None,
            algorithm: None,
            issuer: None,
            audience: None,
            leeway: default_leeway(),
        }
    }
}

/// The HTTPS listener.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsConfig {
    /// Listen address.
    pub addr: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Limits for an internet-facing endpoint.
#[cfg_attr(test, derive(serde::Serialize))]
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// POST/PATCH/DELETE requests allowed per client address per second (steady rate).
    /// 0 turns the limit off.
    pub requests_per_second: f64,
    /// Burst of requests allowed above the steady rate.
    pub burst: u32,
    /// Maximum number of sessions; further POSTs get 503. 0 means no cap.
    pub max_sessions: usize,
    /// A request's headers must arrive within this time; so must a new connection's
    /// first byte.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// An HTTP connection (HTTP/1 or HTTP/2, plain or TLS) with no byte in either
    /// direction for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Open HTTP connections allowed from one client address; more are closed at
    /// accept. 0 means no cap. Generous by default: a whole office behind one NAT
    /// may watch at once, each player holding an event stream.
    pub max_connections_per_address: usize,
    /// Requests an HTTP/2 connection may have open at once (its
    /// SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_streams_per_connection: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Config::default().limits
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 8080)),
            udp: SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 8189)),
            public_ips: Vec::new(),
            workers: 0,
            prepared_dtls: 64,
            publisher_grace: Duration::from_secs(30),
            publisher_takeover: Takeover::WhenSilent,
            source_silence: Duration::from_secs(1),
            ice_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(15),
            keyframe_request_interval: Duration::from_millis(500),
            forward_max_delay: Duration::from_millis(200),
            forward_hold: ForwardHold::Fixed(Duration::ZERO),
            egress: Egress::Direct,
            retry_after_secs: 2,
            rtp: Vec::new(),
            rtsp: Vec::new(),
            pull: Vec::new(),
            push: Vec::new(),
            cluster: None,
            record: Vec::new(),
            rtp_timeout: Duration::from_secs(5),
            auth: AuthConfig {
                publish: Policy::Token,
                play: Policy::Open,
                query_token: false,
                tokens: Vec::new(),
                jwt: None,
            },
            cors_origins: vec!["*".into()],
            https: None,
            plain_http: true,
            limits: LimitsConfig {
                requests_per_second: 5.0,
                burst: 20,
                max_sessions: 10_000,
                header_read_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                max_connections_per_address: 256,
                max_streams_per_connection: 100,
            },
            public_url: None,
            ice_servers: Vec::new(),
            redirects: Vec::new(),
            api: ApiConfig::default(),
            log_format: LogFormat::Human,
            simulcast: SimulcastConfig::default(),
            ice_tcp: IceTcpConfig::default(),
        }
    }
}

impl Config {
    /// Opens every action to everyone (`--dev`): no tokens at all.
    pub fn open_everything(&mut self) {
        self.auth.publish = Policy::Open;
        self.auth.play = Policy::Open;
    }

    /// What tests and tools on one host run: HTTP and media on 127.0.0.1 with ports
    /// the kernel picks, `workers` media workers, every action open, and no per-address
    /// request limit (every client of such a run shares one address).
    pub fn loopback_open(workers: usize) -> Config {
        let loopback = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
        let mut config = Config {
            http: loopback,
            udp: loopback,
            workers,
            ..Config::default()
        };
        config.open_everything();
        config.limits.requests_per_second = 0.0;
        config
    }
}

/// Maximum number of media workers (the cross-worker subscription mask is 64 bits).
pub const MAX_WORKERS: usize = 64;

/// The longest `forward_hold`: past this the delay it adds is felt in a call.
pub const MAX_FORWARD_HOLD: Duration = Duration::from_millis(50);

impl Config {
    /// Reads a TOML file on top of the defaults. Unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text on top of the defaults. The error is
    /// `LINE:COLUMN: message (at `the line`)`, from the parser's span, so it names the
    /// key (unknown keys are errors in every table).
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            let message = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    let source = text.lines().nth(line - 1).unwrap_or_default().trim();
                    format!("{line}:{col}: {message} (at `{source}`)")
                }
                None => message,
            }
        })
    }

    /// The number of workers to start: `workers`, or one per core when 0.
    pub fn worker_count(&self) -> usize {
        if self.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(MAX_WORKERS)
        } else {
            self.workers
        }
    }
}

mod validate;

pub use validate::{Valid, check_public_url};

#[cfg(test)]
mod tests;
