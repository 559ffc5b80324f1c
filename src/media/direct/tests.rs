use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};

use super::*;
use crate::core::{Forward, ViewerId, ViewerTrack};
use crate::media::egress::tests::{
    ask_keyframe, connected_pair, give_player, h264_pt, player_rtcp,
};

/// A viewer session on the direct path, connected in memory to a str0m player.
struct Viewer {
    direct: DirectEgress,
    player: Rtc,
    mid: Mid,
    pt: u8,
    now: Instant,
}

impl Viewer {
    fn new() -> Viewer {
        let (mut server, player, slot, mid, now) = connected_pair();
        let pt = h264_pt(&server);
        let track = ViewerTrack {
            kind: MediaKind::Video,
            mid,
            clock_rate: 90_000,
            pt_map: vec![(pt, pt)],
            first_seq: 0,
            first_timestamp: 0,
        };
        let direct = DirectEgress::new(&mut server, &slot.get().unwrap(), &[track], now).unwrap();
        Viewer {
            direct,
            player,
            mid,
            pt,
            now,
        }
    }

    fn forward(&self, seq: u64, keyframe: bool) -> Forward {
        Forward {
            viewer: ViewerId(1),
            mid: self.mid,
            pt: self.pt,
            seq,
            timestamp: (seq * 3000) as u32,
            marker: true,
            nackable: true,
            keyframe,
            wallclock: self.now,
            payload: Arc::from(vec![seq as u8; 800]),
        }
    }

    /// Sends `seq` through the direct path; delivers it to the player unless `lose`.
    fn send(&mut self, seq: u64, lose: bool) -> Vec<u64> {
        self.send_picture(seq, lose, false)
    }

    /// [`send`](Self::send) for a packet that starts a keyframe when `keyframe`.
    fn send_picture(&mut self, seq: u64, lose: bool, keyframe: bool) -> Vec<u64> {
        let mut out = Vec::new();
        self.direct
            .send(&self.forward(seq, keyframe), self.now, &mut out)
            .unwrap();
        if lose {
            return Vec::new();
        }
        self.give_player(out)
    }

    /// Hands the player one datagram; returns the sequence numbers it read.
    fn give_player(&mut self, datagram: Vec<u8>) -> Vec<u64> {
        give_player(&mut self.player, self.now, datagram)
            .into_iter()
            .map(|p| {
                assert_eq!(*p.payload, vec![*p.seq_no as u8; 800], "payload intact");
                *p.seq_no
            })
            .collect()
    }

    /// Runs the player's clock `ms` on; returns the RTCP it sent.
    fn player_rtcp(&mut self, ms: u64) -> Vec<Vec<u8>> {
        player_rtcp(&mut self.player, &mut self.now, ms)
    }

    /// The player's RTCP of the next 100 ms, fed to the direct path 250 ms later:
    /// past a 200 ms window for what was sent before it.
    fn answer_past_the_window(&mut self) -> (RtcpSummary, Vec<u64>) {
        let rtcp = self.player_rtcp(100);
        self.now += Duration::from_millis(250);
        self.answer(&rtcp)
    }

    /// Feeds the player's RTCP to the direct path; the resends go to the player.
    fn answer(&mut self, rtcp: &[Vec<u8>]) -> (RtcpSummary, Vec<u64>) {
        self.answer_to(rtcp, true)
    }

    /// [`answer`](Self::answer) with every resend lost on the way.
    fn answer_lost(&mut self, rtcp: &[Vec<u8>]) -> (RtcpSummary, Vec<u64>) {
        self.answer_to(rtcp, false)
    }

    fn answer_to(&mut self, rtcp: &[Vec<u8>], deliver: bool) -> (RtcpSummary, Vec<u64>) {
        let mut total = RtcpSummary::default();
        let mut resent = Vec::new();
        for d in rtcp {
            let mut emitted = Vec::new();
            let s = self
                .direct
                .on_rtcp(d, self.now, |r| emitted.push(r.to_vec()));
            total.nacks += s.nacks;
            total.resent += s.resent;
            total.rtt = s.rtt.or(total.rtt);
            total.loss = s.loss.or(total.loss);
            total.keyframe = s.keyframe.or(total.keyframe);
            total.gap_keyframe |= s.gap_keyframe;
            for r in emitted.into_iter().filter(|_| deliver) {
                resent.extend(self.give_player(r));
            }
        }
        (total, resent)
    }
}

/// A viewer whose link was down for 30 packets (110..140 of 100..160), and its NACKs
/// for them, which come past a 200 ms window.
fn after_an_outage() -> (Viewer, Vec<Vec<u8>>) {
    let mut v = Viewer::new();
    v.direct.set_window(Duration::from_millis(200));
    for seq in 100..160 {
        v.send(seq, (110..140).contains(&seq));
    }
    let rtcp = v.player_rtcp(100);
    v.now += Duration::from_millis(250);
    (v, rtcp)
}

/// Neither the viewer asked for a keyframe nor was one asked for it.
fn asks_none(summary: &RtcpSummary) -> bool {
    !summary.gap_keyframe && summary.keyframe.is_none()
}

#[test]
fn a_str0m_player_reads_direct_packets_on_the_negotiated_ssrc_and_mid() {
    let mut v = Viewer::new();
    let got: Vec<u64> = (65_530..65_540).flat_map(|s| v.send(s, false)).collect();
    assert_eq!(
        got,
        (65_530..65_540).collect::<Vec<_>>(),
        "across the rollover"
    );
    assert!(v.direct.ssrc(v.mid).is_some());
}

#[test]
fn a_nacked_packet_is_resent_from_the_history_and_the_player_fills_its_gap() {
    let mut v = Viewer::new();
    for seq in 100..130 {
        v.send(seq, seq == 117);
        v.now += Duration::from_millis(5);
    }
    let rtcp = v.player_rtcp(100);
    let (summary, resent) = v.answer(&rtcp);
    assert!(summary.nacks >= 1, "{summary:?}");
    assert_eq!(summary.resent, 1, "{summary:?}");
    assert_eq!(resent, vec![117], "the player read the resent packet");
    assert!(v.direct.history_len() >= 29);
}

#[test]
fn a_nack_that_comes_after_the_window_is_not_answered() {
    let mut v = Viewer::new();
    v.direct.set_window(Duration::from_millis(200));
    for seq in 100..130 {
        v.send(seq, seq == 117);
    }
    let (summary, resent) = v.answer_past_the_window();
    assert!(summary.nacks >= 1, "{summary:?}");
    assert_eq!((summary.resent, resent.len()), (0, 0), "{summary:?}");
}

#[test]
fn a_gap_the_history_cannot_fill_gets_the_viewer_a_keyframe_once_a_second() {
    let (mut v, rtcp) = after_an_outage();
    let (summary, _) = v.answer(&rtcp);
    assert!(summary.nacks >= 30, "{summary:?}");
    assert!(summary.gap_keyframe, "{summary:?}");
    assert_eq!(summary.keyframe, Some(KeyframeRequestKind::Pli));
    // Its NACKs repeat: no second keyframe within the second.
    let (again, _) = v.answer(&rtcp);
    assert!(asks_none(&again), "{again:?}");
    v.now += Duration::from_millis(1000);
    let (later, _) = v.answer(&rtcp);
    assert!(later.gap_keyframe, "{later:?}");
}

#[test]
fn random_loss_the_history_repairs_asks_no_keyframe() {
    let mut v = Viewer::new();
    for seq in 100..130 {
        v.send(seq, seq == 107 || seq == 117);
        v.now += Duration::from_millis(5);
    }
    let rtcp = v.player_rtcp(100);
    let (summary, resent) = v.answer(&rtcp);
    assert!(
        resent.contains(&117),
        "the history repaired it: {summary:?}"
    );
    assert!(asks_none(&summary), "{summary:?}");
}

#[test]
fn one_packet_is_resent_at_most_twice() {
    let mut v = Viewer::new();
    for seq in 100..130 {
        v.send(seq, seq == 117);
    }
    let rtcp = v.player_rtcp(100);
    let (mut nacks, mut resent) = (0, 0);
    for _ in 0..4 {
        for d in &rtcp {
            let s = v.direct.on_rtcp(d, v.now, |_| {});
            (nacks, resent) = (nacks + s.nacks, resent + s.resent);
        }
    }
    assert!(nacks >= 4, "{nacks}");
    assert_eq!(resent, 2);
}

#[test]
fn a_packet_nacked_again_after_its_last_resend_gets_the_viewer_a_keyframe() {
    let mut v = Viewer::new();
    for seq in 100..130 {
        v.send(seq, seq == 117);
    }
    let rtcp = v.player_rtcp(100);
    for _ in 0..2 {
        let (s, _) = v.answer_lost(&rtcp);
        assert!(s.resent >= 1 && !s.gap_keyframe, "{s:?}");
    }
    let (third, _) = v.answer_lost(&rtcp);
    assert_eq!(third.resent, 0, "{third:?}");
    assert!(third.gap_keyframe, "its resends are spent: {third:?}");
}

#[test]
fn one_packet_lost_past_repair_after_the_last_keyframe_gets_the_viewer_a_keyframe() {
    let mut v = Viewer::new();
    v.direct.set_window(Duration::from_millis(200));
    for seq in 100..130 {
        v.send_picture(seq, seq == 117, seq == 100);
    }
    let (summary, resent) = v.answer_past_the_window();
    assert!(resent.is_empty(), "{summary:?}");
    assert!(
        summary.gap_keyframe,
        "one packet stops the decoder: {summary:?}"
    );
    assert_eq!(summary.keyframe, Some(KeyframeRequestKind::Pli));
}

#[test]
fn a_packet_the_source_repaired_late_is_held_in_number_order_and_resent() {
    let mut v = Viewer::new();
    v.direct.set_window(Duration::from_millis(200));
    // 103 and 105 are the source's losses: the viewer's numbers have gaps there, and
    // its NACKs for them find nothing yet.
    for seq in (100..120).filter(|s| *s != 103 && *s != 105) {
        v.send(seq, false);
    }
    let rtcp = v.player_rtcp(150);
    let (early, resent) = v.answer(&rtcp);
    assert!(early.nacks >= 2 && resent.is_empty(), "{early:?}");
    assert!(!early.gap_keyframe, "{early:?}");
    // The source's repair of 105 comes after newer packets, and is lost on the way.
    for seq in 120..130 {
        v.send(seq, false);
    }
    v.send(105, true);
    for seq in 130..140 {
        v.send(seq, false);
    }
    let rtcp = v.player_rtcp(100);
    let (late, resent) = v.answer(&rtcp);
    assert_eq!(resent, vec![105], "{late:?}");
    // 103's comes once the window has moved past everything sent before it.
    let rtcp = v.player_rtcp(100);
    v.send(140, false);
    v.send(103, true);
    let (later, resent) = v.answer(&rtcp);
    assert_eq!(resent, vec![103], "{later:?}");
}

#[test]
fn a_number_the_source_never_gave_asks_no_keyframe() {
    let mut v = Viewer::new();
    v.direct.set_window(Duration::from_millis(200));
    // 115 never came from the source: the viewer's numbers have a gap there, which
    // the source's own repair may still fill.
    for seq in (100..130).filter(|s| *s != 115) {
        v.send_picture(seq, false, seq == 100);
    }
    let (summary, _) = v.answer_past_the_window();
    assert!(summary.nacks >= 1, "the player NACKed the gap: {summary:?}");
    assert!(asks_none(&summary), "{summary:?}");
}

#[test]
fn a_packet_lost_before_the_last_keyframe_start_asks_no_keyframe() {
    let mut v = Viewer::new();
    v.direct.set_window(Duration::from_millis(200));
    for seq in 100..130 {
        v.send_picture(seq, seq == 107, seq == 115);
    }
    let (summary, _) = v.answer_past_the_window();
    assert!(summary.nacks >= 1, "{summary:?}");
    assert!(
        asks_none(&summary),
        "the decoder starts over at 115: {summary:?}"
    );
}

#[test]
fn a_new_gap_behind_the_keyframe_given_asks_again_within_the_second() {
    let (mut v, rtcp) = after_an_outage();
    let first_ask = v.now;
    assert!(v.answer(&rtcp).0.gap_keyframe);
    // The keyframe comes (160), and a packet behind it is lost past repair.
    for seq in 160..190 {
        v.send_picture(seq, seq == 170, seq == 160);
    }
    let (again, _) = v.answer_past_the_window();
    assert!(v.now - first_ask < Duration::from_secs(1));
    assert!(again.gap_keyframe, "{again:?}");
}

#[test]
fn the_players_keyframe_requests_are_read_from_its_srtcp() {
    let mut v = Viewer::new();
    for seq in 1..10 {
        v.send(seq, false);
    }
    let rtcp = v.player_rtcp(100);
    let (quiet, _) = v.answer(&rtcp);
    assert_eq!(quiet.keyframe, None, "no request yet");
    for kind in [KeyframeRequestKind::Pli, KeyframeRequestKind::Fir] {
        ask_keyframe(&mut v.player, v.mid, kind);
        let rtcp = v.player_rtcp(100);
        let (summary, _) = v.answer(&rtcp);
        assert_eq!(summary.keyframe, Some(kind), "{summary:?}");
    }
}

#[test]
fn the_history_keeps_its_window_only_and_gives_back_a_bursts_room() {
    let mut v = Viewer::new();
    v.direct.set_window(Duration::from_millis(200));
    // A join burst: 600 packets at once (a cached group of pictures).
    for seq in 0..600 {
        v.send(seq, true);
    }
    assert_eq!(v.direct.history_len(), 600);
    let burst_room = v.direct.history_capacity();
    // Then a paced source: 10 packets 20 ms apart, and the second's report tick.
    for seq in 600..610 {
        v.now += Duration::from_millis(20);
        v.send(seq, true);
    }
    v.now += Duration::from_secs(1);
    v.direct.handle_timeout(v.now, |_| {});
    assert_eq!(v.direct.history_len(), 0, "all of it left the window");
    assert!(
        v.direct.history_capacity() * 8 <= burst_room,
        "{} of {burst_room} kept",
        v.direct.history_capacity()
    );
    assert_eq!(std::mem::size_of::<Sent>(), 32);
}

#[test]
fn a_nack_finds_its_packet_across_the_32_bit_wrap_of_the_stored_numbers() {
    let mut h = History::default();
    let first = (1u64 << 32) - 3;
    for full in first..first + 6 {
        h.sent.push_back(Sent {
            seq: full as u32,
            timestamp: 0,
            at_ms: 0,
            pt: 96,
            marker: false,
            resends: 0,
            payload: Arc::from(vec![full as u8]),
        });
        h.newest = full;
    }
    for full in first..first + 6 {
        let (found, s) = h.find(full as u16).expect("in the history");
        assert_eq!((found, &*s.payload), (full, &[full as u8][..]));
    }
    assert!(
        h.find((first - 1) as u16).is_none(),
        "older than the history"
    );
}

#[test]
fn sender_reports_are_answered_with_the_round_trip() {
    let mut v = Viewer::new();
    for seq in 1..20 {
        v.send(seq, false);
    }
    let mut reports = Vec::new();
    let due = v.direct.poll_timeout();
    assert!(due > v.now, "no report before the interval");
    v.now = due;
    v.direct.handle_timeout(v.now, |d| reports.push(d.to_vec()));
    assert_eq!(reports.len(), 1, "one report for the one SSRC that sent");
    // 10 ms to the player, its next receiver report, 10 ms back.
    v.now += Duration::from_millis(10);
    for r in reports {
        v.give_player(r);
    }
    let mut rtt = None;
    for _ in 0..30 {
        let rtcp = v.player_rtcp(100);
        if !rtcp.is_empty() {
            v.now += Duration::from_millis(10);
            rtt = v.answer(&rtcp).0.rtt.or(rtt);
            if rtt.is_some() {
                break;
            }
        }
    }
    let rtt = rtt.expect("a receiver report with our LSR");
    let ms = rtt.as_secs_f64() * 1000.0;
    assert!((19.5..20.5).contains(&ms), "rtt {ms} ms");
}

#[test]
fn rtcp_that_does_not_authenticate_yields_nothing() {
    let mut v = Viewer::new();
    v.send(1, false);
    let mut garbage = vec![0x81, 201, 0, 7];
    garbage.extend_from_slice(&[0x55; 40]);
    let s = v
        .direct
        .on_rtcp(&garbage, v.now, |_| panic!("nothing to resend"));
    assert_eq!(s, RtcpSummary::default());
    for n in 0..8 {
        let s = v
            .direct
            .on_rtcp(&garbage[..n], v.now, |_| panic!("nothing"));
        assert_eq!(s, RtcpSummary::default());
    }
}

#[test]
fn a_forward_for_an_m_line_the_session_lacks_is_refused() {
    let mut v = Viewer::new();
    let mut f = v.forward(1, false);
    f.mid = Mid::from("zz");
    let mut out = Vec::new();
    assert!(matches!(
        v.direct.send(&f, v.now, &mut out),
        Err(DirectError::NoTrack(_))
    ));
}

/// A sent packet numbered `seq` (low 32 bits), for the history alone.
fn sent(seq: u64, at_ms: u32) -> Sent {
    Sent {
        seq: seq as u32,
        timestamp: 0,
        at_ms,
        pt: 96,
        marker: false,
        resends: 0,
        payload: Arc::from(vec![0u8; 4]),
    }
}

#[test]
fn the_history_finds_every_number_it_holds_whatever_order_they_come_in() {
    // xorshift64: the same orders on every run.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200 {
        let mut h = History::default();
        // Start anywhere, across the 16- and 32-bit wraps too.
        let mut top = match next() % 3 {
            0 => 100,
            1 => 65_500,
            _ => u64::from(u32::MAX) - 100,
        };
        for ms in 0..400u32 {
            let r = next();
            let seq = match r % 10 {
                // Mostly in order, with the source's gaps.
                0..=6 => {
                    top += 1 + (r >> 8) % 3;
                    top
                }
                // A late repair, a duplicate, or one older than everything held.
                7 | 8 => top.saturating_sub((r >> 8) % 300),
                _ => top.saturating_sub(5_000),
            };
            h.insert(seq, sent(seq, ms));
            h.trim(ms, 150, ms % 50 == 0);
            // Whatever the viewer NACKs, nothing panics.
            let nack = (r >> 20) as u16;
            let _ = h.find(nack);
            let _ = h.left(nack);
        }
        // Held in number order, each number once, and each found by its NACK.
        let newest = h.newest;
        let backs: Vec<u32> = h
            .sent
            .iter()
            .map(|s| (newest as u32).wrapping_sub(s.seq))
            .collect();
        assert!(backs.windows(2).all(|w| w[0] > w[1]), "{backs:?}");
        assert_eq!(backs.last(), Some(&0), "the newest is the last");
        for back in backs {
            let full = newest - u64::from(back);
            if back < 32_768 {
                let (found, s) = h.find(full as u16).expect("held");
                assert_eq!((found, s.seq), (full, full as u32));
            }
        }
    }
}
