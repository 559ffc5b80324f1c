use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{Extension, ExtensionMap, RtpPacket};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::*;
use crate::media::dtls::{self, KeySlot};
use crate::media::srtp::contexts;
use crate::wire::demux::is_rtcp;
use crate::wire::ntp::ntp_time;
use crate::wire::rtcp::{
    ReportBlock, SenderReport, keyframe_requests, nacks, packets, report_blocks,
};
use crate::wire::rtp::OutHeader;

pub(crate) const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);
pub(crate) const PLAYER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6000);
pub(crate) const MID_EXT: u8 = 4;

pub(crate) fn deliver(to: &mut Rtc, now: Instant, t: &Transmit) {
    let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents).unwrap();
    if let Err(e) = to.handle_input(Input::Receive(now, r)) {
        panic!("delivering {} bytes: {e}", t.contents.len());
    }
}

/// Drains `rtc` to its next timeout: its datagrams and its events.
pub(crate) fn drain(rtc: &mut Rtc) -> (Vec<Transmit>, Vec<Event>, Instant) {
    let (mut out, mut events) = (Vec::new(), Vec::new());
    loop {
        match rtc.poll_output().unwrap() {
            Output::Transmit(t) => out.push(t),
            Output::Event(e) => events.push(e),
            Output::Timeout(t) => return (out, events, t),
        }
    }
}

/// A server configured as wishd's viewer sessions are (RTP mode, ICE lite, the mid as
/// the only extension), connected in memory to a str0m player; the server's DTLS
/// engine reports to the returned slot.
pub(crate) fn connected_pair() -> (Rtc, Rtc, KeySlot, Mid, Instant) {
    let start = Instant::now();
    let mut exts = ExtensionMap::empty();
    exts.set(MID_EXT, Extension::RtpMid);
    let slot = KeySlot::default();
    let mut server = dtls::with_key_slot(&slot, || {
        RtcConfig::new()
            .set_crypto_provider(Arc::new(dtls::provider()))
            .clear_codecs()
            .enable_h264(true)
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .set_extension_map(exts)
            .build(start)
    });
    let mut player = RtcConfig::new()
        .set_crypto_provider(Arc::new(dtls::provider()))
        .clear_codecs()
        .enable_h264(true)
        .set_rtp_mode(true)
        .build(start);
    server.add_local_candidate(Candidate::host(SERVER, "udp").unwrap());
    player.add_local_candidate(Candidate::host(PLAYER, "udp").unwrap());
    let mut api = player.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();
    let answer = server.sdp_api().accept_offer(offer).unwrap();
    player.sdp_api().accept_answer(pending, answer).unwrap();
    let mut now = start;
    for _ in 0..2000 {
        let (out, _, ts) = drain(&mut server);
        out.iter().for_each(|t| deliver(&mut player, now, t));
        let (out, _, tp) = drain(&mut player);
        out.iter().for_each(|t| deliver(&mut server, now, t));
        if server.is_connected() && player.is_connected() && slot.get().is_some() {
            return (server, player, slot, mid, now);
        }
        now = ts.min(tp).max(now + Duration::from_millis(1));
        server.handle_input(Input::Timeout(now)).unwrap();
        player.handle_input(Input::Timeout(now)).unwrap();
    }
    panic!("the pair did not connect");
}

/// The payload type the server's H.264 has.
pub(crate) fn h264_pt(server: &Rtc) -> u8 {
    *server
        .codec_config()
        .iter()
        .find(|p| p.spec().codec == Codec::H264)
        .unwrap()
        .pt()
}

/// Hands `player` one datagram from the server; returns the RTP packets it read.
pub(crate) fn give_player(player: &mut Rtc, now: Instant, datagram: Vec<u8>) -> Vec<RtpPacket> {
    let t = Transmit {
        proto: Protocol::Udp,
        source: SERVER,
        destination: PLAYER,
        contents: datagram.into(),
    };
    deliver(player, now, &t);
    drain(player)
        .1
        .into_iter()
        .filter_map(|e| match e {
            Event::RtpPacket(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Runs the player's clock `ms` on from `now`; returns the (protected) RTCP it sent.
pub(crate) fn player_rtcp(player: &mut Rtc, now: &mut Instant, ms: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for _ in 0..ms {
        *now += Duration::from_millis(1);
        player.handle_input(Input::Timeout(*now)).unwrap();
        out.extend(
            drain(player)
                .0
                .into_iter()
                .map(|t| t.contents.to_vec())
                .filter(|d| is_rtcp(d)),
        );
    }
    out
}

/// The player asks the server for a keyframe of the stream it receives on `mid`.
pub(crate) fn ask_keyframe(player: &mut Rtc, mid: Mid, kind: KeyframeRequestKind) {
    player
        .direct_api()
        .stream_rx_by_mid(mid, None)
        .expect("the player took the SSRC")
        .request_keyframe(kind);
}

/// A connected pair with the server's side of the direct path set up from its DTLS
/// keys: what a viewer's session on the direct path holds.
struct Fixture {
    player: Rtc,
    tx: Srtp,
    rx: Srtp,
    ssrc: u32,
    pt: u8,
    mid: Mid,
    now: Instant,
}

impl Fixture {
    fn new() -> Fixture {
        let (mut server, player, slot, mid, now) = connected_pair();
        let (tx, rx) = contexts(&dtls::provider(), &slot.get().unwrap()).unwrap();
        let ssrc = *server
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .unwrap()
            .ssrc();
        let pt = h264_pt(&server);
        Fixture {
            player,
            tx,
            rx,
            ssrc,
            pt,
            mid,
            now,
        }
    }

    /// Hands the player one datagram and returns the media packets it read:
    /// (extended sequence number, marker, payload).
    fn deliver_to_player(&mut self, datagram: Vec<u8>) -> Vec<(u64, bool, Vec<u8>)> {
        give_player(&mut self.player, self.now, datagram)
            .into_iter()
            .map(|p| (*p.seq_no, p.header.marker, p.payload.to_vec()))
            .collect()
    }

    /// Sends packet `seq` (1000 bytes of its low byte) through the direct path.
    fn send(&mut self, seq: u64) -> Vec<(u64, bool, Vec<u8>)> {
        let mid = self.mid.to_string();
        let header = OutHeader {
            marker: seq.is_multiple_of(3),
            pt: self.pt,
            seq,
            timestamp: (seq * 3000) as u32,
            ssrc: self.ssrc,
            mid: Some((MID_EXT, &mid)),
            transport_seq: None,
        };
        let (mut scratch, mut datagram) = (Vec::new(), Vec::new());
        protect(
            &mut self.tx,
            &header,
            &[seq as u8; 1000],
            &mut scratch,
            &mut datagram,
        )
        .unwrap();
        self.deliver_to_player(datagram)
    }

    /// Runs the player's clock `ms` on and returns the plain RTCP it sent.
    fn player_rtcp(&mut self, ms: u64) -> Vec<Vec<u8>> {
        player_rtcp(&mut self.player, &mut self.now, ms)
            .iter()
            .map(|d| self.rx.unprotect_rtcp(d).unwrap().0)
            .collect()
    }
}

#[test]
fn a_str0m_player_reads_what_the_direct_path_protects_across_a_rollover() {
    let mut f = Fixture::new();
    // Twelve packets from 65 530 on: the last six carry rollover counter 1.
    let got: Vec<_> = (65_530u64..65_542).flat_map(|seq| f.send(seq)).collect();
    let want: Vec<_> = (65_530u64..65_542)
        .map(|s| (s, s.is_multiple_of(3), vec![s as u8; 1000]))
        .collect();
    assert_eq!(
        got, want,
        "every packet decrypted, in order, past the rollover"
    );

    // And back: the player's keyframe requests read with the remote key, PLI and FIR.
    for kind in [KeyframeRequestKind::Pli, KeyframeRequestKind::Fir] {
        ask_keyframe(&mut f.player, f.mid, kind);
        let asked: Vec<_> = f
            .player_rtcp(100)
            .iter()
            .flat_map(|plain| keyframe_requests(plain).collect::<Vec<_>>())
            .collect();
        assert_eq!(
            asked,
            [(f.ssrc, kind)],
            "the player's {kind:?} for our SSRC"
        );
    }
}

#[test]
fn a_fir_asks_for_each_ssrc_it_lists_and_a_pli_for_the_one_in_its_header() {
    #[rustfmt::skip]
    let compound = [
        // FIR from 1, header media SSRC 0, entries for 0xaa and 0xbb.
        0x84, 206, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0,
        0, 0, 0, 0xaa, 5, 0, 0, 0,
        0, 0, 0, 0xbb, 6, 0, 0, 0,
        // PLI from 1 for 0xcc.
        0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0xcc,
        // A NACK (205) and a truncated PLI are no keyframe requests.
        0x81, 205, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0xdd, 0, 1, 0, 0,
        0x81, 206, 0, 1, 0, 0, 0, 1,
    ];
    let asked: Vec<_> = keyframe_requests(&compound).collect();
    assert_eq!(
        asked,
        [
            (0xaa, KeyframeRequestKind::Fir),
            (0xbb, KeyframeRequestKind::Fir),
            (0xcc, KeyframeRequestKind::Pli),
        ]
    );
}

#[test]
fn a_lost_packet_comes_back_as_a_nack_for_its_sequence_number() {
    let mut f = Fixture::new();
    for seq in (100u64..130).filter(|s| *s != 117) {
        f.send(seq);
    }
    let asked: Vec<(u32, u16)> = f
        .player_rtcp(300)
        .iter()
        .flat_map(|p| nacks(p).collect::<Vec<_>>())
        .collect();
    assert!(!asked.is_empty(), "the player sent a NACK");
    assert!(asked.iter().all(|&a| a == (f.ssrc, 117)), "{asked:?}");
}

#[test]
fn our_sender_report_reaches_the_player_and_its_report_gives_the_round_trip() {
    let mut f = Fixture::new();
    for seq in 1u64..20 {
        f.send(seq);
    }
    let ntp = ntp_time(std::time::SystemTime::now());
    let sr = SenderReport {
        ssrc: f.ssrc,
        ntp,
        rtp_time: 57_000,
        packets: 19,
        octets: 19_000,
    };
    let (mut plain, mut datagram) = (Vec::new(), Vec::new());
    sr.write("wishd", &mut plain);
    f.tx.protect_rtcp(&plain, &mut datagram).unwrap();
    assert!(f.deliver_to_player(datagram).is_empty());
    // The player's next receiver report refers to ours (str0m reports video each second).
    let blocks: Vec<ReportBlock> = f
        .player_rtcp(1500)
        .iter()
        .flat_map(|p| report_blocks(p).collect::<Vec<_>>())
        .filter(|b| b.ssrc == f.ssrc)
        .collect();
    let last = blocks.last().expect("a report block about our SSRC");
    // str0m keeps the report's NTP time as a wall-clock time and converts it back for
    // LSR, which may round the last 1/65536 s either way.
    let lsr = (ntp >> 16) as u32;
    assert!(
        last.last_sr.abs_diff(lsr) <= 1,
        "it names our report: LSR {} for ours {lsr}",
        last.last_sr
    );
    assert_eq!(last.highest_seq, 19);
    assert_eq!(last.cumulative_lost, 0);
    // Read "now" as the report's own reference plus its stated delay plus 20 ms.
    let delay = u64::from(last.delay_since_last_sr) << 16;
    let now = ntp + delay + (20u64 << 32) / 1000;
    let rtt = last.round_trip(now).unwrap();
    assert!(
        rtt.as_micros().abs_diff(20_000) < 100,
        "round trip {rtt:?} from the block"
    );
}

#[test]
fn the_header_carries_the_mid_in_a_one_byte_extension() {
    let mut out = Vec::new();
    let h = OutHeader {
        marker: true,
        pt: 102,
        seq: 0x1_0002,
        timestamp: 0x0102_0304,
        ssrc: 0xaabb_ccdd,
        mid: Some((4, "1")),
        transport_seq: None,
    };
    assert_eq!(h.write(&mut out), 20);
    assert_eq!(
        out,
        [
            0x90,
            0x80 | 102,
            0x00,
            0x02,
            1,
            2,
            3,
            4,
            0xaa,
            0xbb,
            0xcc,
            0xdd,
            0xbe,
            0xde,
            0,
            1,
            0x40,
            b'1',
            0,
            0
        ]
    );
    assert_eq!(h.roc(), 1);
    let mut plain = Vec::new();
    let without = OutHeader { mid: None, ..h };
    assert_eq!(without.write(&mut plain), 12);
    assert_eq!(plain[0], 0x80);
}

#[test]
fn a_nack_bitmask_names_the_packets_after_its_id_and_wraps() {
    // One generic NACK: sender 1, media 0xabcd, PID 65534 with bits 0 and 2 set.
    let nack = [
        0x81,
        205,
        0,
        3,
        0,
        0,
        0,
        1,
        0,
        0,
        0xab,
        0xcd,
        0xff,
        0xfe,
        0b0000_0000,
        0b0000_0101,
    ];
    let asked: Vec<_> = nacks(&nack).collect();
    assert_eq!(asked, [(0xabcd, 65534), (0xabcd, 65535), (0xabcd, 1)]);
}

#[test]
fn malformed_rtcp_yields_nothing_and_does_not_panic() {
    let sr = {
        let mut out = Vec::new();
        SenderReport {
            ssrc: 7,
            ntp: 1 << 32,
            rtp_time: 0,
            packets: 0,
            octets: 0,
        }
        .write("x", &mut out);
        out
    };
    for n in 0..sr.len() {
        let _ = packets(&sr[..n]).count();
        assert_eq!(nacks(&sr[..n]).count(), 0);
        assert_eq!(report_blocks(&sr[..n]).count(), 0);
        assert_eq!(keyframe_requests(&sr[..n]).count(), 0);
    }
    // Every cut of a FIR with two entries reads whole entries only.
    #[rustfmt::skip]
    let fir = [
        0x84, 206, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0,
        0, 0, 0, 0xaa, 5, 0, 0, 0, 0, 0, 0, 0xbb, 6, 0, 0, 0,
    ];
    for n in 0..fir.len() {
        let mut cut = fir[..n].to_vec();
        if n >= 4 {
            // Its length field says what is there, so the walk reaches it.
            cut[3] = (n / 4).saturating_sub(1) as u8;
        }
        assert!(keyframe_requests(&cut).count() <= 2);
    }
    // A length field past the end, and a count with no blocks behind it.
    assert_eq!(packets(&[0x80, 201, 0xff, 0xff, 0, 0, 0, 1]).count(), 0);
    assert_eq!(report_blocks(&[0x9f, 201, 0, 1, 0, 0, 0, 1]).count(), 0);
    // A negative cumulative loss (duplicates) reads as negative.
    let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 1];
    rr.extend_from_slice(&[0, 0, 0, 9, 0, 0xff, 0xff, 0xfe]);
    rr.extend_from_slice(&[0; 16]);
    let b: Vec<_> = report_blocks(&rr).collect();
    assert_eq!((b[0].ssrc, b[0].cumulative_lost), (9, -2));
    assert_eq!(b[0].round_trip(1 << 40), None, "no report referred to");
}
