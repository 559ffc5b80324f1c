//! Entry points for the coverage-guided fuzz targets in `fuzz/` (cargo-fuzz builds with
//! `--cfg fuzzing`; other builds leave this module out). Each takes bytes the network
//! controls and runs them through the code that reads them; the only verdict is that
//! nothing panics, hangs or allocates without bound.

use std::time::{Duration, Instant};

use crate::core::{Bwe, BweConfig, CodecKind, frame_size, is_keyframe_start};
use crate::wire::{demux, h264, rtcp, rtp, stun, twcc};

/// A WHIP offer: parsed, then checked as a publisher's.
pub fn sdp_offer(data: &[u8]) {
    if let Ok(offer) = crate::sdp::parse_offer(data) {
        let _ = crate::sdp::check_publish_offer(&offer);
        let text = String::from_utf8_lossy(data);
        let _ = crate::sdp::take_simulcast(&text, &offer, true);
    }
}

/// A WHEP player's offer with the lines that are each client's own rewritten from
/// the input (`sdp::memo::own_lines_rewritten`): the inspection remembered from the
/// player's first offer must say what the whole parse of this one says, error or
/// summary, to the letter.
pub fn offer_memo(data: &[u8]) {
    use crate::sdp::memo::{PLAYERS, differs_from_parse, own_lines_rewritten};
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let base = PLAYERS[usize::from(which) % PLAYERS.len()];
    let variant = own_lines_rewritten(base, rest);
    if let Some(diff) = differs_from_parse(base, &variant) {
        panic!("the remembered inspection differs from the parse of\n{variant}\n{diff}");
    }
}

/// A trickle ICE PATCH body.
pub fn sdp_fragment(data: &[u8]) {
    let _ = crate::sdp::frag::parse_fragment(data);
}

/// A decrypted compound RTCP packet from a viewer or a publisher, through every
/// reader the direct egress and the ingest use, transport-wide feedback into an
/// estimator that sent the packets it may name.
pub fn rtcp(data: &[u8]) {
    let _ = demux::is_rtcp(data);
    for _ in rtcp::packets(data) {}
    for _ in rtcp::nacks(data) {}
    for _ in rtcp::keyframe_requests(data) {}
    for _ in rtcp::report_blocks(data) {}
    for _ in rtcp::sender_reports(data) {}
    let t0 = Instant::now();
    let mut bwe = Bwe::new(
        BweConfig {
            initial_bps: 2_000_000,
            min_bps: 50_000,
            max_bps: 30_000_000,
        },
        t0,
    );
    for seq in 0..300u16 {
        bwe.on_sent(seq, 1200, t0 + Duration::from_millis(u64::from(seq)), false);
    }
    let mut packets = Vec::new();
    for body in twcc::feedback_bodies(data) {
        if let Some(fb) = twcc::parse_feedback(body, &mut packets) {
            bwe.on_feedback(&fb, &packets, t0 + Duration::from_millis(400));
        }
    }
    let _ = bwe.estimate();
}

/// A datagram on the media port before any session is known: STUN routing, the
/// reflected address of a Binding answer, the demultiplexer, an RTP header.
pub fn datagram(data: &[u8]) {
    let _ = stun::local_ufrag(data);
    let _ = stun::reflected_address(data, [7; 12]);
    let _ = demux::is_media_path(data);
    let _ = rtp::parse_rtp(data);
}

/// An RTP payload of each video codec: NAL units, keyframe detection, picture size.
pub fn payload(data: &[u8]) {
    for _ in h264::nal_units(data) {}
    for codec in [
        CodecKind::H264,
        CodecKind::H265,
        CodecKind::Vp8,
        CodecKind::Vp9,
        CodecKind::Av1,
    ] {
        let _ = is_keyframe_start(codec, data);
        let _ = frame_size(codec, data);
    }
}

/// An `Authorization` header value.
pub fn authorization(data: &[u8]) {
    let _ = crate::auth::parse_authorization(data);
}

/// A configuration file: parsed on top of the defaults, then every value checked
/// (files it names are not read).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(c) = crate::config::Config::from_toml(text)
    {
        let _ = c.validate();
    }
}

/// A bearer token presented to a server with a static token and an HS256 key: the
/// static comparison, then the JWT decoding and claim checks.
pub fn token(data: &[u8]) {
    use std::sync::OnceLock;
    static AUTH: OnceLock<Option<crate::auth::Authenticator>> = OnceLock::new();
    let auth = AUTH.get_or_init(|| {
        let mut c = crate::config::Config::default().auth;
        c.tokens.push(crate::config::StaticTokenConfig {
            token: Some(crate::config::Secret::new("a-static-token-for-the-fuzzer")),
            token_file: None,
            streams: vec!["cam-*".into()],
            actions: vec![crate::model::Role::Publisher],
        });
        c.jwt = Some(crate::config::JwtConfig {
            secret: Some(crate::config::Secret::new(
                "fuzz-secret-0123456789abcdef-0123",
            )),
            secret_file: None,
            issuer: Some("wishd".into()),
            ..crate::config::JwtConfig::with_secret_file(std::path::PathBuf::new())
        });
        let auth =
            crate::auth::Authenticator::new(&c, &|_| Err(std::io::ErrorKind::NotFound.into()));
        // A target that tests nothing must not pass for one that does.
        assert!(auth.is_ok(), "the fuzzer's authenticator: {:?}", auth.err());
        auth.ok()
    });
    if let (Some(auth), Ok(token)) = (auth, std::str::from_utf8(data))
        && let Ok(rights) = auth.validate(token)
    {
        let _ = rights.allows(crate::model::Role::Viewer, "cam-1");
    }
}

/// RTP packets of a video source through the keyframe cache of each codec: the bytes
/// are cut into packets (a header byte of flags and a length each), pushed in order,
/// and the cache's snapshot taken along the way.
pub fn keyframe_cache(data: &[u8]) {
    use std::sync::Arc;

    use crate::core::{KeyframeCache, SourcePacket};
    let t0 = Instant::now();
    for codec in [
        CodecKind::H264,
        CodecKind::H265,
        CodecKind::Vp8,
        CodecKind::Vp9,
        CodecKind::Av1,
    ] {
        let mut cache = KeyframeCache::new(codec, 64).stale_after(Duration::from_secs(1));
        let mut rest = data;
        let mut seq = 0u64;
        while let [flags, len, tail @ ..] = rest {
            let n = usize::from(*len).min(tail.len());
            let (payload, next) = tail.split_at(n);
            rest = next;
            // Bits of `flags`: sequence jumps, timestamp steps, marker, epoch change.
            seq = seq.wrapping_add(1 + u64::from(flags & 0x03) * 7);
            let pkt = Arc::new(SourcePacket {
                kind: crate::core::MediaKind::Video,
                codec,
                pt: 96,
                seq,
                timestamp: u32::from(flags >> 4) * 3000,
                marker: flags & 0x04 != 0,
                keyframe_start: is_keyframe_start(codec, payload),
                epoch: u32::from(flags & 0x08 != 0),
                layer: 0,
                arrival: t0 + Duration::from_millis(seq),
                wallclock: t0,
                payload: Arc::from(payload),
            });
            cache.push(&pkt);
            if flags & 0x80 != 0 {
                let _ = cache.snapshot(t0 + Duration::from_millis(seq));
            }
        }
        let _ = cache.snapshot(t0 + Duration::from_secs(5));
    }
}

/// Bytes sent as an HTTP request to a running wishd (on loopback, started once per
/// fuzzing process): hyper's parser, the router, authorization and every handler the
/// path reaches, as a client would drive them. The admin API is on (with a token
/// the seeds carry) so its routes are reached too.
pub fn http_request(data: &[u8]) {
    use std::sync::OnceLock;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Running {
        rt: tokio::runtime::Runtime,
        addr: std::net::SocketAddr,
        _server: crate::server::Server,
    }
    static SERVER: OnceLock<Running> = OnceLock::new();
    let running = SERVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let server = rt.block_on(async {
            let mut c = crate::config::Config {
                http: "127.0.0.1:0".parse().expect("address"),
                udp: "127.0.0.1:0".parse().expect("address"),
                workers: 1,
                connect_timeout: Duration::from_secs(1),
                ..crate::config::Config::default()
            };
            c.open_everything();
            c.limits.requests_per_second = 0.0;
            c.limits.max_sessions = 64;
            c.limits.header_read_timeout = Duration::from_millis(50);
            c.limits.idle_timeout = Duration::from_millis(50);
            c.api.token = Some(crate::config::Secret::new("fuzz-admin-token-0123456789"));
            crate::server::Server::start(c).await.expect("wishd starts")
        });
        let addr = server.http_addr();
        Running {
            rt,
            addr,
            _server: server,
        }
    });
    running.rt.block_on(async {
        let Ok(mut tcp) = tokio::net::TcpStream::connect(running.addr).await else {
            return;
        };
        let _ = tcp.write_all(data).await;
        let _ = tcp.shutdown().await;
        let mut answer = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_millis(500), tcp.read_to_end(&mut answer)).await;
    });
}

/// A byte stream on an ICE-TCP connection (RFC 4571 framing): the reader that cuts it
/// into frames for the worker, with the limits it enforces.
pub fn ice_tcp_stream(data: &[u8]) {
    use std::sync::OnceLock;
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    });
    let remote = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 8189));
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let reader =
            crate::media::tcp::read_frames(data, remote, local, 1, tx, Duration::from_secs(30));
        let drain = async {
            let mut frames = 0usize;
            while let Some(e) = rx.recv().await {
                if let crate::media::tcp::TcpEvent::Frame { data, .. } = e {
                    assert!(!data.is_empty() && data.len() <= crate::media::tcp::MAX_FRAME);
                    frames += 1;
                }
            }
            frames
        };
        let ((), _) = tokio::join!(reader, drain);
    });
}

/// Packets of one video stream as the recorder puts its pictures back together, for
/// every codec a file takes: each payload is a length byte and that many bytes, and
/// the byte after it carries the marker (low bit) and whether a packet was lost
/// before it (next bit). The whole input is also read as a sequence header.
pub fn recorded_pictures(data: &[u8]) {
    use crate::record::depack::{self, Frames, H264Frames, H265Frames, Payloads};
    let mut packets = Vec::new();
    let mut rest = data;
    while let Some((&len, after)) = rest.split_first() {
        let len = usize::from(len).min(after.len());
        let (payload, after) = after.split_at(len);
        let (flags, after) = after.split_first().map_or((0, after), |(f, a)| (*f, a));
        packets.push((payload, flags));
        rest = after;
    }
    let payloads: Vec<&[u8]> = packets.iter().map(|p| p.0).collect();
    let _ = crate::wire::vp9::frame(&payloads);
    let _ = crate::wire::av1::temporal_unit(&payloads);
    let _ = crate::wire::av1::sequence_config(data);
    fn run<P: depack::Picture>(mut f: Frames<P>, packets: &[(&[u8], u8)]) {
        let mut seq = 0;
        for (i, (payload, flags)) in packets.iter().enumerate() {
            seq += 1 + u64::from(flags >> 1 & 1);
            let _ = f.packet(seq, (i / 3) as u32, flags & 1 == 1, payload);
        }
        let _ = f.described();
    }
    run(H264Frames::default(), &packets);
    run(H265Frames::default(), &packets);
    run(Frames::<Payloads<depack::Vp8>>::default(), &packets);
    run(Frames::<Payloads<depack::Vp9>>::default(), &packets);
    run(Frames::<Payloads<depack::Av1>>::default(), &packets);
}
