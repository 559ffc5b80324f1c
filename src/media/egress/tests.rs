use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::*;
use crate::media::dtls::{self, KeySlot};
use crate::media::srtp::{Profile, split_export};

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);
const PLAYER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6000);
const MID_EXT: u8 = 4;

fn deliver(to: &mut Rtc, now: Instant, t: &Transmit) {
    let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents).unwrap();
    to.handle_input(Input::Receive(now, r)).unwrap();
}

/// Drains `rtc` to its next timeout: its datagrams and its events.
fn drain(rtc: &mut Rtc) -> (Vec<Transmit>, Vec<Event>, Instant) {
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
fn connected_pair() -> (Rtc, Rtc, KeySlot, Mid, Instant) {
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

#[test]
fn a_str0m_player_reads_what_the_direct_path_protects_across_a_rollover() {
    let (mut server, mut player, slot, mid, now) = connected_pair();
    let keys = slot.get().unwrap();
    let profile = Profile::from_dtls(keys.profile).unwrap();
    let (local, remote) = split_export(profile, &keys.material, keys.dtls_client).unwrap();
    let provider = dtls::provider();
    let mut tx = Srtp::new(&provider, &local, true).unwrap();
    let mut rx = Srtp::new(&provider, &remote, false).unwrap();
    let ssrc = *server
        .direct_api()
        .stream_tx_by_mid(mid, None)
        .unwrap()
        .ssrc();
    let pt = *server
        .codec_config()
        .iter()
        .find(|p| p.spec().codec == Codec::H264)
        .unwrap()
        .pt();
    let mid_str = mid.to_string();

    // Twelve packets from 65 530 on: the last six carry rollover counter 1.
    let (mut scratch, mut got) = (Vec::new(), Vec::new());
    for seq in 65_530u64..65_542 {
        let header = Header {
            marker: seq % 3 == 0,
            pt,
            seq,
            timestamp: (seq * 3000) as u32,
            ssrc,
            mid: Some((MID_EXT, &mid_str)),
        };
        let payload = vec![seq as u8; 1000];
        let mut datagram = Vec::new();
        protect(&mut tx, &header, &payload, &mut scratch, &mut datagram).unwrap();
        let t = Transmit {
            proto: Protocol::Udp,
            source: SERVER,
            destination: PLAYER,
            contents: datagram.into(),
        };
        deliver(&mut player, now, &t);
        let (_, events, _) = drain(&mut player);
        for e in events {
            if let Event::RtpPacket(p) = e {
                got.push((*p.seq_no, p.header.marker, p.payload.to_vec()));
            }
        }
    }
    let want: Vec<_> = (65_530u64..65_542)
        .map(|s| (s, s % 3 == 0, vec![s as u8; 1000]))
        .collect();
    assert_eq!(
        got, want,
        "every packet decrypted, in order, past the rollover"
    );

    // And back: the player's keyframe request reads with the remote key.
    player
        .direct_api()
        .stream_rx_by_mid(mid, None)
        .expect("the player took the SSRC")
        .request_keyframe(KeyframeRequestKind::Pli);
    // str0m sends its feedback on its next timeout.
    let mut out = Vec::new();
    for ms in 1..=100 {
        let t = now + Duration::from_millis(ms);
        player.handle_input(Input::Timeout(t)).unwrap();
        out.extend(drain(&mut player).0);
    }
    let mut read = 0;
    let pli = out.iter().filter(|t| is_rtcp(&t.contents)).any(|t| {
        let (plain, _) = rx.unprotect_rtcp(&t.contents).unwrap();
        read += 1;
        compound(&plain)
            .any(|(pt, fmt, body)| pt == 206 && fmt == 1 && body[4..8] == ssrc.to_be_bytes())
    });
    assert!(
        pli,
        "the PLI for our SSRC was read ({read} RTCP packets read)"
    );
}

fn is_rtcp(d: &[u8]) -> bool {
    d.len() >= 8 && (128..192).contains(&d[0]) && (192..224).contains(&d[1])
}

/// (packet type, count/format, body after the 4-byte header) of each packet of a
/// compound RTCP packet.
fn compound(mut p: &[u8]) -> impl Iterator<Item = (u8, u8, &[u8])> {
    std::iter::from_fn(move || {
        if p.len() < 4 {
            return None;
        }
        let len = (u16::from_be_bytes([p[2], p[3]]) as usize + 1) * 4;
        let (one, rest) = p.split_at(len.min(p.len()));
        p = rest;
        Some((one[1], one[0] & 0x1f, &one[4..]))
    })
}

#[test]
fn the_header_carries_the_mid_in_a_one_byte_extension() {
    let mut out = Vec::new();
    let h = Header {
        marker: true,
        pt: 102,
        seq: 0x1_0002,
        timestamp: 0x0102_0304,
        ssrc: 0xaabb_ccdd,
        mid: Some((4, "1")),
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
    let without = Header { mid: None, ..h };
    assert_eq!(without.write(&mut plain), 12);
    assert_eq!(plain[0], 0x80);
}
