//! What the WebRTC stack itself costs per forwarded packet, without a socket: two
//! str0m peers connected in memory, one configured as wishd configures a viewer's
//! session (RTP mode, ICE lite, the mid as the only header extension, a NACK history
//! of 200 ms with a 15 % resend cap, stats once a second), the other a receiving
//! player. Per packet the server side does what wishd's worker does: `write_rtp`,
//! `handle_input(Timeout)`, then `poll_output` until the next timeout; the player
//! takes the datagrams in memory and answers (RTCP, STUN).
//!
//! Figures: one session, one packet per call (a paced source, each packet handled
//! as it arrives) and eight per call (a delta frame sent back to back); [`MANY`]
//! sessions in turn, one packet each (a worker's working set); and the same with a
//! loopback `sendto` per datagram, which is what a str0m-based server spends per
//! packet before any code of its own. Time is simulated (the benchmark stream's 310
//! packets per second) so the timers fire at their real rates; the server side is
//! timed by the thread's CPU clock in blocks of rounds, the player's side is not.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use wishd::media::dtls::{KeySlot, with_key_slot};
use wishd::media::egress;
use wishd::media::srtp::{Srtp, contexts};
use wishd::wire::rtp::OutHeader;

use crate::floor::{PAYLOAD, thread_cpu_ns};

/// The stack's figures, nanoseconds per packet (server side only).
#[derive(Debug, Clone, Serialize)]
pub struct Stack {
    /// One packet per write/timeout/poll round.
    pub str0m_single_ns: f64,
    /// Eight packets per round (one delta frame at once).
    pub str0m_frame_ns: f64,
    /// One packet per round to each of [`MANY`] sessions in turn: the same work with
    /// a worker's working set (each session's state is cold again by its turn).
    pub str0m_many_single_ns: f64,
    /// The same with each datagram sent (`sendto` on loopback, to a drained socket):
    /// what a str0m-based server spends per packet before any code of its own.
    pub str0m_many_sendto_ns: f64,
    /// [`MANY`] sessions in turn, one packet each, built and protected by wishd's own
    /// egress path (`wishd::media::egress`) with the session's DTLS keys instead of
    /// str0m's send path; str0m runs only when its timer is due. The players decrypt
    /// every packet (checked).
    pub direct_many_single_ns: f64,
    /// The same with each datagram sent, like `str0m_many_sendto_ns`.
    pub direct_many_sendto_ns: f64,
}

/// The peers' addresses: labels only, nothing is sent to them.
const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);
const PLAYER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6000);
/// The benchmark stream's packet rate: simulated time between packets.
const PACKET_INTERVAL: Duration = Duration::from_micros(3226);

struct Pair {
    server: Rtc,
    player: Rtc,
    now: Instant,
    mid: Mid,
    pt: str0m::format::PayloadParams,
    /// Next sequence number (continuous over rounds: SRTP's rollover counter follows).
    seq: u64,
    out: Vec<str0m::net::Transmit>,
    /// When the server's timer is due next.
    next: Instant,
    /// The direct egress path's state for this session.
    direct: Direct,
    /// Media packets the player has decrypted.
    received: u64,
}

/// What wishd's own egress path keeps per session: the SRTP context and the header
/// fields the session negotiated, plus reused buffers.
struct Direct {
    srtp: Srtp,
    ssrc: u32,
    mid: String,
    scratch: Vec<u8>,
    datagram: Vec<u8>,
}

/// Hands a datagram from one peer to the other.
fn deliver(to: &mut Rtc, now: Instant, t: &str0m::net::Transmit) {
    if let Ok(r) = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents) {
        let _ = to.handle_input(Input::Receive(now, r));
    }
}

/// Drains `from` until its next timeout, delivering its datagrams to `to`. Returns the
/// timeout and how many media packets `from` received, or `None` if the peer failed.
fn drain(from: &mut Rtc, to: &mut Rtc, now: Instant) -> Option<(Instant, u64)> {
    let mut media = 0;
    loop {
        match from.poll_output().ok()? {
            Output::Transmit(t) => deliver(to, now, &t),
            Output::Event(Event::RtpPacket(_)) => media += 1,
            Output::Event(_) => {}
            Output::Timeout(t) => return Some((t, media)),
        }
    }
}

impl Pair {
    /// Negotiates and connects the pair (ICE, DTLS, SRTP) in simulated time.
    fn connect() -> Option<Pair> {
        wishd::client::install_crypto_provider();
        let start = Instant::now();
        let mut exts = ExtensionMap::empty();
        exts.set(4, Extension::RtpMid);
        let slot = KeySlot::default();
        let mut server = with_key_slot(&slot, || {
            RtcConfig::new()
                .clear_codecs()
                .enable_h264(true)
                .enable_opus(true, false)
                .set_rtp_mode(true)
                .set_ice_lite(true)
                .set_stats_interval(Some(Duration::from_secs(1)))
                .set_extension_map(exts)
                .build(start)
        });
        let mut player = RtcConfig::new()
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
            .set_rtp_mode(true)
            .build(start);
        server.add_local_candidate(Candidate::host(SERVER, "udp").ok()?);
        player.add_local_candidate(Candidate::host(PLAYER, "udp").ok()?);

        let mut api = player.sdp_api();
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply()?;
        let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).ok()?;
        let answer = server.sdp_api().accept_offer(offer).ok()?;
        player.sdp_api().accept_answer(pending, answer).ok()?;

        let mut now = start;
        let mut connected = false;
        for _ in 0..2000 {
            let (ts, _) = drain(&mut server, &mut player, now)?;
            let (tp, _) = drain(&mut player, &mut server, now)?;
            connected = connected || server.is_connected() && player.is_connected();
            if connected && server.direct_api().stream_tx_by_mid(mid, None).is_some() {
                break;
            }
            now = ts.min(tp).max(now + Duration::from_millis(1));
            server.handle_input(Input::Timeout(now)).ok()?;
            player.handle_input(Input::Timeout(now)).ok()?;
        }
        if !connected {
            return None;
        }
        let pt = *server
            .codec_config()
            .iter()
            .find(|p| p.spec().codec == Codec::H264)?;
        let mut api = server.direct_api();
        let tx = api.stream_tx_by_mid(mid, None)?;
        tx.set_rtx_cache(2048, Duration::from_millis(200), Some(0.15));
        let ssrc = *tx.ssrc();
        let provider = str0m::crypto::CryptoProvider::get_default()?;
        let (srtp, _) = contexts(provider, &slot.get()?).ok()?;
        let direct = Direct {
            srtp,
            ssrc,
            mid: mid.to_string(),
            scratch: Vec::with_capacity(64),
            datagram: Vec::with_capacity(1500),
        };
        Some(Pair {
            server,
            player,
            now,
            mid,
            pt,
            seq: 1,
            out: Vec::new(),
            next: now,
            direct,
            received: 0,
        })
    }

    /// The direct path's `per_call` packets: header, SRTP, and the send when
    /// `socket` is given; the datagrams are kept for the player like str0m's.
    #[inline(never)] // keeps the server's and the player's side apart in a profile
    fn send_direct(
        &mut self,
        per_call: usize,
        payload: &Arc<[u8]>,
        socket: Option<&(UdpSocket, SocketAddr)>,
    ) -> Option<(bool, Instant)> {
        let pt = *self.pt.pt();
        let d = &mut self.direct;
        for i in 0..per_call {
            let header = OutHeader {
                marker: i + 1 == per_call,
                pt,
                seq: self.seq,
                timestamp: (self.seq * 375) as u32,
                ssrc: d.ssrc,
                mid: Some((4, &d.mid)),
                transport_seq: None,
            };
            d.datagram.clear();
            egress::protect(
                &mut d.srtp,
                &header,
                payload,
                &mut d.scratch,
                &mut d.datagram,
            )
            .ok()?;
            if let Some((socket, to)) = socket {
                let _ = socket.send_to(&d.datagram, to);
            }
            self.out.push(str0m::net::Transmit {
                proto: Protocol::Udp,
                source: SERVER,
                destination: PLAYER,
                contents: d.datagram.clone().into(),
            });
            self.seq += 1;
        }
        Some((true, self.next))
    }

    /// The server's write/timeout/poll of `per_call` packets at `now` (sending the
    /// datagrams to `socket` when given). Returns whether every packet left as a
    /// datagram and when the server's timer is due next.
    #[inline(never)] // keeps the server's and the player's side apart in a profile
    fn send(
        &mut self,
        per_call: usize,
        now: Instant,
        payload: &Arc<[u8]>,
        socket: Option<&(UdpSocket, SocketAddr)>,
    ) -> Option<(bool, Instant)> {
        let pt = self.pt.pt();
        let mut api = self.server.direct_api();
        let tx = api.stream_tx_by_mid(self.mid, None)?;
        for i in 0..per_call {
            tx.write_rtp(
                RtpWrite::new(
                    pt,
                    self.seq.into(),
                    (self.seq * 375) as u32,
                    now,
                    payload.clone(),
                )
                .marker(i + 1 == per_call)
                .nackable(true),
            );
            self.seq += 1;
        }
        let (sent, next) = self.release(now, socket)?;
        Some((sent >= per_call, next))
    }

    /// The server's timeout input at `now`, then its output up to the next timeout:
    /// datagrams kept for the player (and sent to `socket` when given). Returns how
    /// many datagrams and when the next timeout is due.
    fn release(
        &mut self,
        now: Instant,
        socket: Option<&(UdpSocket, SocketAddr)>,
    ) -> Option<(usize, Instant)> {
        self.server.handle_input(Input::Timeout(now)).ok()?;
        let mut sent = 0;
        loop {
            match self.server.poll_output().ok()? {
                Output::Transmit(t) => {
                    sent += 1;
                    if let Some((socket, to)) = socket {
                        let _ = socket.send_to(&t.contents, to);
                    }
                    self.out.push(t)
                }
                Output::Event(_) => {}
                Output::Timeout(next) => {
                    self.next = next;
                    return Some((sent, next));
                }
            }
        }
    }

    /// The player takes the datagrams and answers (RTCP, STUN); its timer runs.
    #[inline(never)] // keeps the server's and the player's side apart in a profile
    fn play(&mut self, now: Instant) -> Option<()> {
        // One datagram per input, drained before the next (str0m's run-loop rule:
        // an undrained input's events are lost).
        for t in std::mem::take(&mut self.out) {
            deliver(&mut self.player, now, &t);
            let (_, media) = drain(&mut self.player, &mut self.server, now)?;
            self.received += media;
        }
        self.player.handle_input(Input::Timeout(now)).ok()?;
        let (_, media) = drain(&mut self.player, &mut self.server, now)?;
        self.received += media;
        Some(())
    }

    /// The server's own timer (reports, ICE, stats), as wishd runs it when due; its
    /// datagrams wait for the player like the media.
    #[inline(never)] // keeps the server's and the player's side apart in a profile
    fn tick(&mut self, now: Instant) -> Option<()> {
        self.release(now, None)?;
        self.server.is_connected().then_some(())
    }
}

/// Server rounds per timed block: the CPU clock is read per block, and a read costs
/// a few microseconds, so a block holds enough rounds to make that a rounding error.
const ROUNDS_PER_BLOCK: usize = 64;

/// ns per packet per session of the servers' work, `per_call` packets a round to
/// every session in turn (as a worker forwards one source packet to all its viewers),
/// until `budget` of server CPU has passed. Blocks of rounds (sends and due timers)
/// are timed by the thread's CPU clock; between blocks the players take what they
/// were sent and answer, untimed (the server's handling of their few RTCP and STUN
/// answers is not counted).
fn per_packet(
    pairs: &mut [Pair],
    per_call: usize,
    budget: Duration,
    send: Option<&(UdpSocket, SocketAddr)>,
    path: Path,
) -> Option<f64> {
    let payload: Arc<[u8]> = (0..PAYLOAD).map(|i| i as u8).collect::<Vec<_>>().into();
    let mut now = pairs.iter().map(|p| p.now).max()?;
    let rounds = ROUNDS_PER_BLOCK.div_ceil(pairs.len());
    let wall = Instant::now();
    let (mut spent, mut packets) = (0u64, 0u64);
    while spent < budget.as_nanos() as u64 {
        let c0 = thread_cpu_ns(wall);
        for _ in 0..rounds {
            now += PACKET_INTERVAL * per_call as u32;
            for p in pairs.iter_mut() {
                p.now = now;
                let (all_sent, next) = match path {
                    Path::Str0m => p.send(per_call, now, &payload, send)?,
                    Path::Direct => p.send_direct(per_call, &payload, send)?,
                };
                if !all_sent {
                    return None;
                }
                if next <= now {
                    p.tick(now)?;
                }
            }
            packets += (per_call * pairs.len()) as u64;
        }
        spent += thread_cpu_ns(wall).saturating_sub(c0);
        for p in pairs.iter_mut() {
            p.play(now)?;
        }
    }
    Some(spent as f64 / packets.max(1) as f64)
}

/// Which send path a measurement drives.
#[derive(Clone, Copy)]
enum Path {
    /// `write_rtp`, timeout, poll: str0m's send path, as wishd's worker uses it.
    Str0m,
    /// wishd's own egress path (`wishd::media::egress`).
    Direct,
}

/// Sessions a worker holds at 100 viewers on two workers: the many-session figure.
pub const MANY: usize = 50;

/// Measures both paces with one session, and one packet at a time with [`MANY`]
/// sessions, without and with the sends; `budget` of server time each. `None` if an
/// in-memory pair did not connect.
pub fn measure(budget: Duration) -> Option<Stack> {
    let mut one = vec![Pair::connect()?];
    // Warm up (the first writes set up the stream's state and history).
    use Path::{Direct, Str0m};
    per_packet(&mut one, 1, budget / 10, None, Str0m)?;
    let single = per_packet(&mut one, 1, budget, None, Str0m)?;
    let frame = per_packet(&mut one, 8, budget, None, Str0m)?;
    let connect_many = || {
        (0..MANY)
            .map(|_| Pair::connect())
            .collect::<Option<Vec<_>>>()
    };
    let mut many = connect_many()?;
    per_packet(&mut many, 1, budget / 10, None, Str0m)?;
    let many_single = per_packet(&mut many, 1, budget, None, Str0m)?;
    let sink = crate::floor::Sink::new().ok()?;
    let socket = (UdpSocket::bind("127.0.0.1:0").ok()?, sink.addr);
    let many_sendto = per_packet(&mut many, 1, budget, Some(&socket), Str0m)?;
    // Fresh sessions: a stream's sequence and SRTP state belong to one path.
    drop(many);
    let mut direct = connect_many()?;
    per_packet(&mut direct, 1, budget / 10, None, Direct)?;
    let direct_single = per_packet(&mut direct, 1, budget, None, Direct)?;
    let direct_sendto = per_packet(&mut direct, 1, budget, Some(&socket), Direct)?;
    // The direct path is only a figure if the players read every packet of it.
    if direct.iter().any(|p| p.received != p.seq - 1) {
        return None;
    }
    Some(Stack {
        str0m_single_ns: single,
        str0m_frame_ns: frame,
        str0m_many_single_ns: many_single,
        str0m_many_sendto_ns: many_sendto,
        direct_many_single_ns: direct_single,
        direct_many_sendto_ns: direct_sendto,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_memory_pair_connects_and_the_send_path_costs_something() {
        let s = measure(Duration::from_millis(30)).expect("the pair connects");
        assert!(s.str0m_single_ns.is_finite() && s.str0m_single_ns > 0.0);
        assert!(s.str0m_frame_ns.is_finite() && s.str0m_frame_ns > 0.0);
        assert!(s.str0m_many_single_ns.is_finite() && s.str0m_many_single_ns > 0.0);
        assert!(s.str0m_many_sendto_ns.is_finite() && s.str0m_many_sendto_ns > 0.0);
        assert!(s.direct_many_single_ns.is_finite() && s.direct_many_single_ns > 0.0);
        assert!(s.direct_many_sendto_ns.is_finite() && s.direct_many_sendto_ns > 0.0);
    }
}
