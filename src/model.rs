//! The vocabulary every part of wishd shares, and nothing else: who a session is
//! ([`Role`]), its identity ([`SessionId`]), stream names, its lifecycle
//! ([`SessionState`]), why it ended ([`EndReason`]), and the codec families wishd
//! forwards ([`CodecKind`], the one map of codec names).
//!
//! A leaf: it imports nothing of the crate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use str0m::format::Codec;
use str0m::media::MediaKind;

/// Which side of a stream a session, a token's right or a request is on.
///
/// In configuration files and tokens it is written as the action: `"publish"` or
/// `"play"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Role {
    /// WHIP: the source of a stream.
    #[serde(rename = "publish")]
    Publisher,
    /// WHEP: a viewer of a stream.
    #[serde(rename = "play")]
    Viewer,
}

impl Role {
    /// Both roles, publisher first (the order of per-role counters).
    pub const ALL: [Role; 2] = [Role::Publisher, Role::Viewer];

    /// `"WHIP"` or `"WHEP"`, for messages.
    pub fn protocol(self) -> &'static str {
        match self {
            Role::Publisher => "WHIP",
            Role::Viewer => "WHEP",
        }
    }

    /// `"whip"` or `"whep"`, as in the URL.
    pub fn path_segment(self) -> &'static str {
        match self {
            Role::Publisher => "whip",
            Role::Viewer => "whep",
        }
    }

    /// `"publish"` or `"play"`: the right a token grants.
    pub fn action(self) -> &'static str {
        match self {
            Role::Publisher => "publish",
            Role::Viewer => "play",
        }
    }

    /// `"publisher"` or `"viewer"`, for logs and metric labels.
    pub fn noun(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Viewer => "viewer",
        }
    }

    /// 0 for the publisher, 1 for a viewer: the index of per-role counters.
    pub fn index(self) -> usize {
        match self {
            Role::Publisher => 0,
            Role::Viewer => 1,
        }
    }

    /// The role whose action is `s` (`publish` or `play`).
    pub fn from_action(s: &str) -> Option<Role> {
        match s {
            "publish" => Some(Role::Publisher),
            "play" => Some(Role::Viewer),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    /// The action: `publish` or `play`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.action())
    }
}

/// A session's identifier: 128 random bits, shown as 32 hex digits in the session URL.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u128);

impl SessionId {
    /// A new random, unguessable id.
    pub fn random() -> SessionId {
        SessionId(rand::random())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for SessionId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        u128::from_str_radix(s, 16).map(SessionId).map_err(|_| ())
    }
}

/// The most simulcast layers one video track takes (browsers and OBS send two or
/// three). A layer is named by its index in the publisher's offer, 0 without simulcast.
pub const MAX_LAYERS: usize = 4;

/// The header a wishd relaying a stream (a `[[pull]]`) puts on its WHEP POST: a
/// server that itself relays the stream asked for refuses such a request, so that a
/// stream crosses at most one relay and two servers never pull from each other.
pub const RELAY_HEADER: &str = "wishd-relay";

/// What a stream name may be, in words (for refusals).
pub const STREAM_NAME_RULE: &str = "stream names are 1 to 128 characters of A-Z a-z 0-9 - _ . ~";

/// Stream names: 1 to 128 characters of letters, digits, `-`, `_`, `.` and `~` (URL-safe
/// as they are, and token characters in SDP).
pub fn valid_stream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// The lifecycle state of a session, for the gauges and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Created, ICE/DTLS not done yet.
    Connecting = 0,
    /// ICE and DTLS are up.
    Connected = 1,
    /// ICE lost consent; closed after `ice_timeout` unless it comes back.
    Disconnected = 2,
}

impl SessionState {
    /// All states, in gauge order.
    pub const ALL: [SessionState; 3] = [
        SessionState::Connecting,
        SessionState::Connected,
        SessionState::Disconnected,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Connecting => "connecting",
            SessionState::Connected => "connected",
            SessionState::Disconnected => "disconnected",
        }
    }
}

/// Why a session ended: the `reason` of the summary log line and of
/// `wishd_sessions_ended_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The client sent DELETE on its session URL.
    Delete,
    /// An operator ended it through `DELETE /api/sessions/{id}`.
    Kicked,
    /// An operator stopped its stream through `DELETE /api/streams/{name}`.
    StreamStopped,
    /// ICE consent was lost for longer than `ice_timeout`.
    IceTimeout,
    /// ICE/DTLS did not complete within `connect_timeout`.
    ConnectTimeout,
    /// The peer closed DTLS or the peer connection.
    PeerClosed,
    /// The peer connection failed (str0m reported an error).
    Failed,
    /// str0m panicked inside this session; only it was dropped.
    InternalError,
    /// The stream's publisher did not come back within `publisher_grace`.
    PublisherGone,
    /// A returning publisher brought other codecs than the viewers negotiated.
    CodecChanged,
    /// A returning publisher brought a kind of media the viewer offered but could not
    /// get before (answered inactive): closed so that its player joins again with it.
    TracksChanged,
    /// A new publisher took the stream over (`publisher_takeover`).
    Replaced,
    /// The server is shutting down.
    Shutdown,
    /// Another node of the cluster took the stream (its publisher came back there):
    /// viewers join again, and are relayed from that node.
    Moved,
}

impl EndReason {
    /// All reasons, in counter order.
    pub const ALL: [EndReason; 14] = [
        EndReason::Delete,
        EndReason::Kicked,
        EndReason::StreamStopped,
        EndReason::IceTimeout,
        EndReason::ConnectTimeout,
        EndReason::PeerClosed,
        EndReason::Failed,
        EndReason::InternalError,
        EndReason::PublisherGone,
        EndReason::CodecChanged,
        EndReason::TracksChanged,
        EndReason::Replaced,
        EndReason::Shutdown,
        EndReason::Moved,
    ];

    /// The stable code used in logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            EndReason::Delete => "delete",
            EndReason::Kicked => "kicked",
            EndReason::StreamStopped => "stream-stopped",
            EndReason::IceTimeout => "ice-timeout",
            EndReason::ConnectTimeout => "connect-timeout",
            EndReason::PeerClosed => "peer-closed",
            EndReason::Failed => "failed",
            EndReason::InternalError => "internal-error",
            EndReason::PublisherGone => "publisher-gone",
            EndReason::CodecChanged => "codec-changed",
            EndReason::TracksChanged => "tracks-changed",
            EndReason::Replaced => "replaced",
            EndReason::Shutdown => "shutdown",
            EndReason::Moved => "moved",
        }
    }

    /// Its position in [`EndReason::ALL`] (the index of per-reason counters).
    pub fn index(self) -> usize {
        EndReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

/// The codec family of a track, enough to detect keyframes in RTP payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecKind {
    /// H.264 / AVC (RFC 6184 packetization).
    H264,
    /// H.265 / HEVC (RFC 7798 packetization).
    H265,
    /// VP8 (RFC 7741 packetization).
    Vp8,
    /// VP9 (RFC 9628 packetization).
    Vp9,
    /// AV1 (AOM RTP specification).
    Av1,
    /// Opus audio.
    Opus,
    /// G.711 µ-law audio.
    Pcmu,
    /// G.711 A-law audio.
    Pcma,
    /// Anything else: forwarded as is, never treated as a keyframe.
    Other,
}

impl CodecKind {
    /// The media kind the codec family belongs to ([`CodecKind::Other`] counts as audio,
    /// since nothing in it can ever start a keyframe).
    pub fn media_kind(self) -> MediaKind {
        match self {
            CodecKind::H264
            | CodecKind::H265
            | CodecKind::Vp8
            | CodecKind::Vp9
            | CodecKind::Av1 => MediaKind::Video,
            CodecKind::Opus | CodecKind::Pcmu | CodecKind::Pcma | CodecKind::Other => {
                MediaKind::Audio
            }
        }
    }
}

impl CodecKind {
    /// The family of an `a=rtpmap` encoding name (case-insensitive).
    pub fn of_name(name: &str) -> CodecKind {
        Codec::from(name).into()
    }

    /// The canonical name: `"H264"`, `"H265"`, `"VP8"`, `"VP9"`, `"AV1"`, `"opus"`, `"PCMU"`,
    /// `"PCMA"`, or `None` for [`CodecKind::Other`].
    pub fn name(self) -> Option<&'static str> {
        match self {
            CodecKind::H264 => Some("H264"),
            CodecKind::H265 => Some("H265"),
            CodecKind::Vp8 => Some("VP8"),
            CodecKind::Vp9 => Some("VP9"),
            CodecKind::Av1 => Some("AV1"),
            CodecKind::Opus => Some("opus"),
            CodecKind::Pcmu => Some("PCMU"),
            CodecKind::Pcma => Some("PCMA"),
            CodecKind::Other => None,
        }
    }
}

impl From<Codec> for CodecKind {
    fn from(codec: Codec) -> Self {
        match codec {
            Codec::H264 => CodecKind::H264,
            Codec::H265 => CodecKind::H265,
            Codec::Vp8 => CodecKind::Vp8,
            Codec::Vp9 => CodecKind::Vp9,
            Codec::Av1 => CodecKind::Av1,
            Codec::Opus => CodecKind::Opus,
            Codec::PCMU => CodecKind::Pcmu,
            Codec::PCMA => CodecKind::Pcma,
            _ => CodecKind::Other,
        }
    }
}

/// Binds `addr` with `bind`. `[::]` (the default listeners) means every address of
/// both families; on a machine without IPv6, where it cannot be bound, the IPv4
/// `0.0.0.0` on the same port stands in for it, and the second value says so (the
/// caller logs it). Any other address binds as it is.
pub fn bind_every_family<T>(
    addr: std::net::SocketAddr,
    bind: impl Fn(std::net::SocketAddr) -> std::io::Result<T>,
) -> std::io::Result<(T, bool)> {
    use std::io::ErrorKind;
    match bind(addr) {
        Ok(t) => Ok((t, false)),
        Err(e)
            if addr.ip() == std::net::Ipv6Addr::UNSPECIFIED
                && (e.kind() == ErrorKind::AddrNotAvailable
                    || e.kind() == ErrorKind::Unsupported
                    || e.raw_os_error() == Some(97)) =>
        {
            // 97: EAFNOSUPPORT (IPv6 disabled in the kernel).
            let v4 = std::net::SocketAddr::from(([0, 0, 0, 0], addr.port()));
            bind(v4).map(|t| (t, true))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_round_trips_through_its_text_form() {
        let id = SessionId::random();
        assert_eq!(id.to_string().parse::<SessionId>(), Ok(id));
        assert!("xyz".parse::<SessionId>().is_err());
        assert!("0".repeat(33).parse::<SessionId>().is_err());
    }

    #[test]
    fn stream_names_are_restricted_to_url_safe_characters() {
        assert!(valid_stream_name("cam-1_a.b~c"));
        assert!(!valid_stream_name(""));
        assert!(!valid_stream_name(".."));
        assert!(!valid_stream_name("a%20b"));
        assert!(!valid_stream_name(&"a".repeat(129)));
    }

    #[test]
    fn a_role_reads_and_prints_as_its_action() {
        for role in Role::ALL {
            assert_eq!(Role::from_action(&role.to_string()), Some(role));
            let json = format!("\"{}\"", role.action());
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
        assert_eq!(Role::from_action("admin"), None);
        assert_eq!(
            (Role::Publisher.protocol(), Role::Viewer.path_segment()),
            ("WHIP", "whep")
        );
    }

    #[test]
    fn every_family_falls_back_to_ipv4_only_where_ipv6_cannot_bind() {
        use std::io::{Error, ErrorKind};
        use std::net::SocketAddr;
        let any6: SocketAddr = "[::]:8189".parse().unwrap();
        let no_ipv6 = |a: SocketAddr| {
            if a.is_ipv6() {
                Err(Error::from_raw_os_error(97))
            } else {
                Ok(a)
            }
        };
        let (bound, fell_back) = bind_every_family(any6, no_ipv6).unwrap();
        assert_eq!((bound, fell_back), ("0.0.0.0:8189".parse().unwrap(), true));
        let (bound, fell_back) = bind_every_family(any6, Ok).unwrap();
        assert_eq!((bound, fell_back), (any6, false));
        // A port in use, or a specific address, is the caller's error as it is.
        let in_use = |_| Err::<SocketAddr, _>(Error::from(ErrorKind::AddrInUse));
        assert!(bind_every_family(any6, in_use).is_err());
        let one: SocketAddr = "[2001:db8::1]:8189".parse().unwrap();
        assert!(bind_every_family(one, no_ipv6).is_err());
    }

    #[test]
    fn codec_kind_maps_str0m_codecs() {
        assert_eq!(CodecKind::from(Codec::H264), CodecKind::H264);
        assert_eq!(CodecKind::from(Codec::Opus), CodecKind::Opus);
        assert_eq!(CodecKind::from(Codec::G722), CodecKind::Other);
        assert_eq!(CodecKind::H264.media_kind(), MediaKind::Video);
        assert_eq!(CodecKind::Pcma.media_kind(), MediaKind::Audio);
        assert_eq!(CodecKind::of_name("h264"), CodecKind::H264);
        assert_eq!(CodecKind::of_name("OPUS").name(), Some("opus"));
        assert_eq!(CodecKind::of_name("H265").name(), Some("H265"));
        assert_eq!(CodecKind::H265.media_kind(), MediaKind::Video);
        assert_eq!(CodecKind::of_name("H266").name(), None);
    }
}
