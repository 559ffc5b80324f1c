use super::*;
use crate::core::rewriter::duration_to_ticks;
use crate::model::CodecKind;
use str0m::media::Mid;

const VIDEO_PT: u8 = 96;
const AUDIO_PT: u8 = 111;
const STREAM: &str = "cam";

/// A fake clock: a fixed base plus milliseconds.
struct Clock(Instant);

impl Clock {
    fn new() -> Self {
        Self(Instant::now())
    }
    fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn video_track(first_seq: u16, first_timestamp: u32) -> ViewerTrack {
    ViewerTrack {
        kind: MediaKind::Video,
        mid: Mid::from("1"),
        clock_rate: 90_000,
        pt_map: vec![(VIDEO_PT, 102)],
        first_seq,
        first_timestamp,
    }
}

fn audio_track(first_seq: u16, first_timestamp: u32) -> ViewerTrack {
    ViewerTrack {
        kind: MediaKind::Audio,
        mid: Mid::from("0"),
        clock_rate: 48_000,
        pt_map: vec![(AUDIO_PT, 109)],
        first_seq,
        first_timestamp,
    }
}

fn video(seq: u64, timestamp: u32, keyframe_start: bool, arrival: Instant) -> SourcePacket {
    SourcePacket {
        kind: MediaKind::Video,
        codec: CodecKind::H264,
        pt: VIDEO_PT,
        seq,
        timestamp,
        marker: false,
        keyframe_start,
        epoch: 0,
        layer: 0,
        arrival,
        wallclock: arrival,
        payload: Arc::from(&[0x65u8, 0x88][..]),
    }
}

fn audio(seq: u64, timestamp: u32, arrival: Instant) -> SourcePacket {
    SourcePacket {
        kind: MediaKind::Audio,
        codec: CodecKind::Opus,
        pt: AUDIO_PT,
        seq,
        timestamp,
        marker: false,
        keyframe_start: false,
        epoch: 0,
        layer: 0,
        arrival,
        wallclock: arrival,
        payload: Arc::from(&[0xfcu8, 0xff][..]),
    }
}

fn with_epoch(mut pkt: SourcePacket, epoch: u32) -> SourcePacket {
    pkt.epoch = epoch;
    pkt
}

/// Forwards one packet and returns what came out.
fn fwd(fanout: &mut Fanout, stream: &str, pkt: &SourcePacket) -> Vec<Forward> {
    let mut out = Vec::new();
    fanout.forward(stream, pkt, &mut out);
    out
}

/// Forwards one packet to a single-viewer stream; returns (seq, timestamp) if forwarded.
fn one(fanout: &mut Fanout, pkt: &SourcePacket) -> Option<(u64, u32)> {
    let out = fwd(fanout, STREAM, pkt);
    assert!(out.len() <= 1);
    out.first().map(|f| (f.seq, f.timestamp))
}

#[test]
fn continuous_seq_from_first_seq_across_source_wraparound() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        STREAM,
        ViewerId(1),
        vec![video_track(1_000, 5)],
        0,
        clock.at(0),
    );
    for (i, seq) in (65_530u64..65_545).enumerate() {
        let i = i as u64;
        let pkt = video(seq, 3_000 * i as u32, i == 0, clock.at(i));
        assert_eq!(
            one(&mut fanout, &pkt),
            Some((1_000 + i, 5 + 3_000 * i as u32))
        );
    }
    assert_eq!(fanout.stats().forwarded, 15);
}

#[test]
fn late_joiner_past_65536_starts_with_roc_zero() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        STREAM,
        ViewerId(1),
        vec![video_track(20_000, 0)],
        0,
        clock.at(0),
    );
    let first = one(&mut fanout, &video(70_000, 1, true, clock.at(0)));
    assert_eq!(first, Some((20_000, 0)));
    assert_eq!(
        one(&mut fanout, &video(70_001, 1, false, clock.at(1))),
        Some((20_001, 0))
    );

    // Worst case the worker can pick: first_seq just below 2^15 and a source
    // billions of packets in. The outgoing ROC is still 0.
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        STREAM,
        ViewerId(2),
        vec![audio_track(32_767, 0)],
        0,
        clock.at(0),
    );
    let (seq, _) = one(&mut fanout, &audio(5_000_000_000, 0, clock.at(0))).unwrap();
    assert_eq!(seq, 32_767);
    assert!(seq < 65_536);
}

#[test]
fn outgoing_seq_crosses_65536_without_a_jump() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        STREAM,
        ViewerId(1),
        vec![audio_track(32_000, 0)],
        0,
        clock.at(0),
    );
    let mut prev = None;
    for seq in 10..(10 + 40_000u64) {
        let (out, _) = one(&mut fanout, &audio(seq, 0, clock.at(0))).unwrap();
        if let Some(p) = prev {
            assert_eq!(out, p + 1);
        }
        prev = Some(out);
    }
    assert_eq!(prev, Some(32_000 + 39_999));
}

#[test]
fn reordered_and_lost_packets_keep_their_gaps() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        STREAM,
        ViewerId(1),
        vec![video_track(500, 0)],
        0,
        clock.at(0),
    );
    let arrivals = [
        (100, true),
        (101, false),
        (103, false),
        (102, false),
        (106, false),
    ];
    let seqs: Vec<u64> = arrivals
        .iter()
        .map(|&(seq, kf)| one(&mut fanout, &video(seq, 0, kf, clock.at(0))).unwrap().0)
        .collect();
    assert_eq!(seqs, vec![500, 501, 503, 502, 506]);
}

#[test]
fn packet_older_than_first_forwarded_is_dropped_without_underflow() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(STREAM, ViewerId(1), vec![video_track(0, 0)], 0, clock.at(0));
    assert_eq!(
        one(&mut fanout, &video(500, 9_000, true, clock.at(0))),
        Some((0, 0))
    );
    // Reordered packet from before the keyframe: would map to -1.
    assert_eq!(
        one(&mut fanout, &video(499, 6_000, false, clock.at(1))),
        None
    );
    assert_eq!(fanout.stats().dropped_too_old, 1);
    assert_eq!(
        one(&mut fanout, &video(501, 9_000, false, clock.at(2))),
        Some((1, 0))
    );
}

#[test]
fn timestamps_map_first_packet_to_first_timestamp_across_wrap() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        STREAM,
        ViewerId(1),
        vec![audio_track(0, 1_000)],
        0,
        clock.at(0),
    );
    let base = u32::MAX - 959;
    assert_eq!(
        one(&mut fanout, &audio(1, base, clock.at(0))),
        Some((0, 1_000))
    );
    // Source timestamp wraps past 2^32: the distance is kept.
    let next = base.wrapping_add(960);
    assert_eq!(next, 0);
    assert_eq!(
        one(&mut fanout, &audio(2, next, clock.at(20))),
        Some((1, 1_960))
    );
    // Out-of-order older timestamp maps backwards, too.
    assert_eq!(
        one(&mut fanout, &audio(3, base.wrapping_sub(960), clock.at(40))),
        Some((2, 40))
    );
}

#[test]
fn pt_is_mapped_per_viewer_and_unmapped_pt_dropped() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    let mut other = video_track(0, 0);
    other.pt_map = vec![(97, 120), (VIDEO_PT, 98)];
    fanout.add_viewer(STREAM, ViewerId(1), vec![video_track(0, 0)], 0, clock.at(0));
    fanout.add_viewer(STREAM, ViewerId(2), vec![other], 0, clock.at(0));

    let out = fwd(&mut fanout, STREAM, &video(1, 0, true, clock.at(0)));
    let pts: Vec<(ViewerId, u8)> = out.iter().map(|f| (f.viewer, f.pt)).collect();
    assert_eq!(pts, vec![(ViewerId(1), 102), (ViewerId(2), 98)]);

    // PT 97 is only known to viewer 2.
    let mut rtx = video(2, 0, false, clock.at(1));
    rtx.pt = 97;
    let out = fwd(&mut fanout, STREAM, &rtx);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].viewer, out[0].pt), (ViewerId(2), 120));
    assert_eq!(fanout.stats().dropped_no_pt, 1);
}

#[test]
fn unmapped_keyframe_does_not_start_forwarding() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(STREAM, ViewerId(1), vec![video_track(0, 0)], 0, clock.at(0));
    let mut kf = video(1, 0, true, clock.at(0));
    kf.pt = 35;
    assert_eq!(one(&mut fanout, &kf), None);
    assert_eq!(one(&mut fanout, &video(2, 0, false, clock.at(0))), None);
    assert_eq!(fanout.stats().dropped_no_pt, 1);
    assert_eq!(fanout.stats().dropped_waiting_keyframe, 1);
}

#[test]
fn video_waits_for_keyframe_audio_does_not() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    let tracks = vec![audio_track(10, 0), video_track(20, 0)];
    assert!(fanout.add_viewer(STREAM, ViewerId(1), tracks, 0, clock.at(0)));

    assert_eq!(one(&mut fanout, &video(1, 0, false, clock.at(0))), None);
    assert_eq!(one(&mut fanout, &video(2, 0, false, clock.at(0))), None);
    assert_eq!(fanout.stats().dropped_waiting_keyframe, 2);
    assert_eq!(one(&mut fanout, &audio(7, 0, clock.at(0))), Some((10, 0)));

    // The keyframe starts the video numbering at first_seq.
    assert_eq!(
        one(&mut fanout, &video(3, 0, true, clock.at(1))),
        Some((20, 0))
    );
    // From then on every packet of the epoch goes through, keyframe or not.
    assert_eq!(
        one(&mut fanout, &video(4, 0, false, clock.at(1))),
        Some((21, 0))
    );
    assert_eq!(
        one(&mut fanout, &video(5, 0, true, clock.at(1))),
        Some((22, 0))
    );
    assert_eq!(fanout.stats().dropped_waiting_keyframe, 2);
}

#[test]
fn epoch_change_keeps_seq_and_timestamp_continuous_and_rewaits_for_keyframe() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        STREAM,
        ViewerId(1),
        vec![video_track(100, 50_000)],
        0,
        clock.at(0),
    );
    // Epoch 0: three frames, 33 ms apart.
    for i in 0..6u64 {
        let frame = (i / 2) as u32;
        let pkt = video(
            4_000 + i,
            7_000 + frame * 2_970,
            i == 0,
            clock.at(frame as u64 * 33),
        );
        let got = one(&mut fanout, &pkt).unwrap();
        assert_eq!(got, (100 + i, 50_000 + frame * 2_970));
    }
    let (last_seq, last_ts) = (105, 50_000 + 2 * 2_970);

    // The publisher reconnects 100 ms later with a fresh numbering.
    let t = 66 + 100;
    let delta = with_epoch(video(9, 123, false, clock.at(t)), 1);
    assert_eq!(one(&mut fanout, &delta), None);
    assert_eq!(fanout.stats().dropped_waiting_keyframe, 1);
    let waiting = fanout.keyframes_wanted(clock.at(t + 1_000), Duration::from_millis(500));
    assert_eq!(waiting, vec![(STREAM.to_owned(), 0)]);

    let kf = with_epoch(video(10, 900, true, clock.at(t + 10)), 1);
    // 110 ms at 90 kHz after the last packet of epoch 0 (arrival 66 ms).
    let expected_ts = last_ts + 110 * 90;
    assert_eq!(one(&mut fanout, &kf), Some((last_seq + 1, expected_ts)));
    let next = with_epoch(video(11, 900 + 3_000, false, clock.at(t + 43)), 1);
    assert_eq!(
        one(&mut fanout, &next),
        Some((last_seq + 2, expected_ts + 3_000))
    );
}

#[test]
fn epoch_change_for_audio_continues_at_once() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(STREAM, ViewerId(1), vec![audio_track(7, 0)], 0, clock.at(0));
    assert_eq!(
        one(&mut fanout, &audio(60_000, 480_000, clock.at(0))),
        Some((7, 0))
    );
    assert_eq!(
        one(&mut fanout, &audio(60_001, 480_960, clock.at(20))),
        Some((8, 960))
    );
    let p = with_epoch(audio(3, 77, clock.at(520)), 1);
    // 500 ms at 48 kHz.
    assert_eq!(one(&mut fanout, &p), Some((9, 960 + 24_000)));
}

#[test]
fn epoch_change_with_no_elapsed_time_still_advances_timestamp() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        STREAM,
        ViewerId(1),
        vec![audio_track(0, u32::MAX)],
        0,
        clock.at(0),
    );
    assert_eq!(
        one(&mut fanout, &audio(1, 5, clock.at(10))),
        Some((0, u32::MAX))
    );
    // Same arrival, and even an arrival before the last one: +1 tick.
    let p = with_epoch(audio(1, 5, clock.at(10)), 1);
    assert_eq!(one(&mut fanout, &p), Some((1, 0)));
    let p = with_epoch(audio(1, 5, clock.at(5)), 2);
    assert_eq!(one(&mut fanout, &p), Some((2, 1)));
}

#[test]
fn epoch_change_continues_after_highest_seq_not_last_arrived() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(STREAM, ViewerId(1), vec![audio_track(0, 0)], 0, clock.at(0));
    one(&mut fanout, &audio(10, 0, clock.at(0)));
    one(&mut fanout, &audio(12, 1_920, clock.at(40)));
    // Late reordered packet: does not move the continuation point.
    assert_eq!(
        one(&mut fanout, &audio(11, 960, clock.at(45))),
        Some((1, 960))
    );
    let p = with_epoch(audio(500, 0, clock.at(60)), 1);
    // Highest out seq was 2 (ts 1_920 at 40 ms); 20 ms later at 48 kHz.
    assert_eq!(one(&mut fanout, &p), Some((3, 1_920 + 960)));
}

#[test]
fn stale_epoch_packet_dropped() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(STREAM, ViewerId(1), vec![audio_track(0, 0)], 0, clock.at(0));
    assert!(one(&mut fanout, &with_epoch(audio(1, 0, clock.at(0)), 4)).is_some());
    assert!(one(&mut fanout, &with_epoch(audio(1, 0, clock.at(1)), 5)).is_some());
    assert_eq!(
        one(&mut fanout, &with_epoch(audio(2, 0, clock.at(2)), 4)),
        None
    );
    assert_eq!(fanout.stats().dropped_too_old, 1);
    // The new epoch is unaffected.
    assert_eq!(
        one(&mut fanout, &with_epoch(audio(2, 0, clock.at(3)), 5)).map(|x| x.0),
        Some(2)
    );
}

#[test]
fn epoch_wraparound_counts_as_newer() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(STREAM, ViewerId(1), vec![audio_track(0, 0)], 0, clock.at(0));
    assert!(one(&mut fanout, &with_epoch(audio(1, 0, clock.at(0)), u32::MAX)).is_some());
    assert!(one(&mut fanout, &with_epoch(audio(1, 0, clock.at(1)), 0)).is_some());
    assert_eq!(
        one(&mut fanout, &with_epoch(audio(2, 0, clock.at(2)), u32::MAX)),
        None
    );
}

#[test]
fn two_streams_isolated() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer("a", ViewerId(1), vec![audio_track(100, 0)], 0, clock.at(0));
    fanout.add_viewer("b", ViewerId(2), vec![audio_track(200, 0)], 0, clock.at(0));

    let out = fwd(&mut fanout, "a", &audio(1, 0, clock.at(0)));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].viewer, out[0].seq), (ViewerId(1), 100));
    let out = fwd(&mut fanout, "b", &with_epoch(audio(9, 0, clock.at(0)), 3));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].viewer, out[0].seq), (ViewerId(2), 200));
    // Stream b's epoch does not touch stream a's viewer.
    let out = fwd(&mut fanout, "a", &audio(2, 0, clock.at(1)));
    assert_eq!((out[0].viewer, out[0].seq), (ViewerId(1), 101));
    assert!(fwd(&mut fanout, "c", &audio(1, 0, clock.at(1))).is_empty());
    assert_eq!(fanout.viewer_count("a"), 1);
    assert_eq!(fanout.viewers_of("b"), vec![ViewerId(2)]);
}

#[test]
fn remove_viewer_stops_forwarding() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(STREAM, ViewerId(1), vec![audio_track(0, 0)], 0, clock.at(0));
    fanout.add_viewer(STREAM, ViewerId(2), vec![audio_track(0, 0)], 0, clock.at(0));
    assert_eq!(fanout.len(), 2);
    assert_eq!(fwd(&mut fanout, STREAM, &audio(1, 0, clock.at(0))).len(), 2);

    assert_eq!(fanout.remove_viewer(ViewerId(1)), Some(STREAM.to_owned()));
    assert_eq!(fanout.remove_viewer(ViewerId(1)), None);
    let out = fwd(&mut fanout, STREAM, &audio(2, 0, clock.at(1)));
    assert_eq!(
        out.iter().map(|f| f.viewer).collect::<Vec<_>>(),
        vec![ViewerId(2)]
    );
    assert_eq!(fanout.viewer_count(STREAM), 1);

    assert_eq!(fanout.remove_viewer(ViewerId(2)), Some(STREAM.to_owned()));
    assert!(fwd(&mut fanout, STREAM, &audio(3, 0, clock.at(2))).is_empty());
    assert!(fanout.is_empty());
    assert_eq!(fanout.viewer_count(STREAM), 0);
    assert!(fanout.viewers_of(STREAM).is_empty());
}

#[test]
fn re_adding_a_viewer_id_replaces_it() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer("a", ViewerId(1), vec![audio_track(0, 0)], 0, clock.at(0));
    fanout.add_viewer("b", ViewerId(1), vec![audio_track(0, 0)], 0, clock.at(0));
    assert_eq!(fanout.len(), 1);
    assert_eq!(fanout.viewer_count("a"), 0);
    assert_eq!(fanout.viewer_count("b"), 1);
}

#[test]
fn late_viewer_gets_its_own_numbering() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        STREAM,
        ViewerId(1),
        vec![audio_track(10, 0)],
        0,
        clock.at(0),
    );
    fwd(&mut fanout, STREAM, &audio(1, 0, clock.at(0)));
    fwd(&mut fanout, STREAM, &audio(2, 960, clock.at(20)));
    fanout.add_viewer(
        STREAM,
        ViewerId(2),
        vec![audio_track(3_000, 77)],
        0,
        clock.at(30),
    );
    let out = fwd(&mut fanout, STREAM, &audio(3, 1_920, clock.at(40)));
    let got: Vec<(ViewerId, u64, u32)> =
        out.iter().map(|f| (f.viewer, f.seq, f.timestamp)).collect();
    assert_eq!(
        got,
        vec![(ViewerId(1), 12, 1_920), (ViewerId(2), 3_000, 77)]
    );
}

#[test]
fn forward_shares_payload_and_appends_to_out() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    for id in 0..5 {
        fanout.add_viewer(
            STREAM,
            ViewerId(id),
            vec![video_track(0, 0)],
            0,
            clock.at(0),
        );
    }
    let mut kf = video(1, 0, true, clock.at(3));
    kf.marker = true;
    let mut out = Vec::with_capacity(16);
    fanout.forward(STREAM, &kf, &mut out);
    fanout.forward(STREAM, &video(2, 0, false, clock.at(4)), &mut out);
    assert_eq!(out.len(), 10);
    for f in &out[..5] {
        assert!(Arc::ptr_eq(&f.payload, &kf.payload));
        assert!(f.nackable);
        assert!(f.marker);
        assert_eq!(f.wallclock, clock.at(3));
        assert_eq!(f.mid, Mid::from("1"));
    }
    assert_eq!(Arc::strong_count(&kf.payload), 6);

    let mut fanout = Fanout::new();
    fanout.add_viewer(STREAM, ViewerId(9), vec![audio_track(0, 0)], 0, clock.at(0));
    let out = fwd(&mut fanout, STREAM, &audio(1, 0, clock.at(0)));
    assert!(!out[0].nackable);
    assert_eq!(out[0].mid, Mid::from("0"));
}

#[test]
fn viewer_without_a_track_of_that_kind_is_skipped() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    assert!(!fanout.add_viewer(STREAM, ViewerId(1), vec![audio_track(0, 0)], 0, clock.at(0)));
    assert!(fwd(&mut fanout, STREAM, &video(1, 0, true, clock.at(0))).is_empty());
    assert_eq!(fanout.stats(), FanoutStats::default());
    assert_eq!(
        fanout.viewer_mids(ViewerId(1)),
        vec![(MediaKind::Audio, Mid::from("0"))]
    );
}

#[test]
fn keyframes_wanted_retries_until_keyframe_arrives() {
    let clock = Clock::new();
    let retry = Duration::from_millis(500);
    let mut fanout = Fanout::new();
    // add_viewer counts as asking: the caller sends the first PLI itself.
    assert!(fanout.add_viewer(STREAM, ViewerId(1), vec![video_track(0, 0)], 0, clock.at(0)));
    assert!(fanout.keyframes_wanted(clock.at(10), retry).is_empty());
    assert!(fanout.keyframes_wanted(clock.at(499), retry).is_empty());
    // The PLI was lost: ask again once per retry interval.
    assert_eq!(
        fanout.keyframes_wanted(clock.at(500), retry),
        vec![(STREAM.to_owned(), 0)]
    );
    assert!(fanout.keyframes_wanted(clock.at(600), retry).is_empty());
    assert_eq!(
        fanout.keyframes_wanted(clock.at(1_000), retry),
        vec![(STREAM.to_owned(), 0)]
    );

    one(&mut fanout, &video(1, 0, true, clock.at(1_100)));
    assert!(fanout.keyframes_wanted(clock.at(5_000), retry).is_empty());
}

#[test]
fn keyframes_wanted_ignores_audio_only_and_satisfied_streams() {
    let clock = Clock::new();
    let retry = Duration::from_millis(500);
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        "audio",
        ViewerId(1),
        vec![audio_track(0, 0)],
        0,
        clock.at(0),
    );
    fanout.add_viewer("v1", ViewerId(2), vec![video_track(0, 0)], 0, clock.at(0));
    fanout.add_viewer("v2", ViewerId(3), vec![video_track(0, 0)], 0, clock.at(0));
    fwd(&mut fanout, "v1", &video(1, 0, true, clock.at(100)));
    assert_eq!(
        fanout.keyframes_wanted(clock.at(600), retry),
        vec![("v2".to_owned(), 0)]
    );

    // A new video viewer on a flowing stream waits again, but was just asked for.
    fanout.add_viewer("v1", ViewerId(4), vec![video_track(0, 0)], 0, clock.at(700));
    assert!(fanout.keyframes_wanted(clock.at(800), retry).is_empty());
    assert_eq!(
        fanout.keyframes_wanted(clock.at(1_200), retry),
        vec![("v1".to_owned(), 0), ("v2".to_owned(), 0)]
    );
    // Removing the waiting viewer of v2 stops the retries there.
    fanout.remove_viewer(ViewerId(3));
    assert_eq!(
        fanout.keyframes_wanted(clock.at(2_000), retry),
        vec![("v1".to_owned(), 0)]
    );
}

#[test]
fn prefix_starts_a_late_viewer_at_the_cached_keyframe_then_continues_live() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(STREAM, ViewerId(1), vec![video_track(0, 0)], 0, clock.at(0));
    let gop: Vec<Arc<SourcePacket>> = (0..4u64)
        .map(|i| Arc::new(video(100 + i, (i as u32) * 3000, i == 0, clock.at(i * 33))))
        .collect();
    for p in &gop {
        fwd(&mut fanout, STREAM, p);
    }
    // Viewer 2 joins with the cached group; packet 103 is also still queued live.
    let mut out = Vec::new();
    let waits = fanout.add_viewer_with_prefix(
        STREAM,
        ViewerId(2),
        vec![video_track(500, 7)],
        0,
        &gop,
        clock.at(140),
        &mut out,
    );
    assert!(!waits);
    let got: Vec<(u64, u32)> = out.iter().map(|f| (f.seq, f.timestamp)).collect();
    assert_eq!(got, vec![(500, 7), (501, 3007), (502, 6007), (503, 9007)]);
    assert!(out.iter().all(|f| f.viewer == ViewerId(2)));
    let out = fwd(&mut fanout, STREAM, &gop[3]);
    assert_eq!(out.len(), 1, "the duplicate reaches only viewer 1");
    let out = fwd(
        &mut fanout,
        STREAM,
        &video(104, 12_000, false, clock.at(150)),
    );
    let got: Vec<(ViewerId, u64)> = out.iter().map(|f| (f.viewer, f.seq)).collect();
    assert_eq!(got, vec![(ViewerId(1), 4), (ViewerId(2), 504)]);
    // Without a keyframe in the prefix the viewer waits as usual.
    let mut out = Vec::new();
    assert!(fanout.add_viewer_with_prefix(
        STREAM,
        ViewerId(3),
        vec![video_track(0, 0)],
        0,
        &gop[1..],
        clock.at(160),
        &mut out
    ));
    assert!(out.is_empty());
}

#[test]
fn duration_to_ticks_is_exact_for_common_rates() {
    assert_eq!(duration_to_ticks(Duration::from_millis(20), 48_000), 960);
    assert_eq!(duration_to_ticks(Duration::from_secs(1), 90_000), 90_000);
    assert_eq!(duration_to_ticks(Duration::ZERO, 90_000), 0);
    assert_eq!(duration_to_ticks(Duration::from_secs(1), 0), 0);
    // Wraps like an RTP timestamp instead of overflowing.
    let long = Duration::from_secs(u64::from(u32::MAX) / 90_000 + 1);
    let _ = duration_to_ticks(long, 90_000);
    let _ = duration_to_ticks(Duration::MAX, u32::MAX);
}

#[test]
fn a_keyframe_request_replays_the_cached_group_after_what_the_viewer_has() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        STREAM,
        ViewerId(1),
        vec![video_track(1_000, 5)],
        0,
        clock.at(0),
    );
    let group: Vec<Arc<SourcePacket>> = [
        (10, 0, true),
        (11, 0, false),
        (12, 3_000, false),
        (13, 6_000, false),
        (14, 9_000, false),
    ]
    .into_iter()
    .map(|(seq, ts, key)| Arc::new(video(seq, ts, key, clock.at(seq))))
    .collect();
    for p in &group {
        one(&mut fanout, p).unwrap();
    }
    let mut out = Vec::new();
    let r = fanout.resync_viewer(
        ViewerId(1),
        &group,
        clock.at(20),
        Duration::from_secs(1),
        &mut out,
    );
    assert_eq!(r, Resync::Replayed(5));
    let got: Vec<(u64, u32)> = out.iter().map(|f| (f.seq, f.timestamp)).collect();
    // Numbered after seq 1004 / timestamp 9005, one tick per frame.
    assert_eq!(
        got,
        vec![
            (1_005, 9_006),
            (1_006, 9_006),
            (1_007, 9_007),
            (1_008, 9_008),
            (1_009, 9_009)
        ]
    );
    // Written with the wallclock of the viewer's last packet, so its sender
    // reports do not jump back to the group's capture instants.
    assert!(out.iter().all(|f| f.wallclock == clock.at(14)));
    // Live continues from the group's last frame; packets it covered are dropped.
    assert_eq!(
        one(&mut fanout, &video(14, 9_000, false, clock.at(21))),
        None
    );
    assert_eq!(
        one(&mut fanout, &video(15, 12_000, false, clock.at(22))),
        Some((1_010, 12_009))
    );
    // Rate-limited per viewer.
    out.clear();
    let again = fanout.resync_viewer(
        ViewerId(1),
        &group,
        clock.at(500),
        Duration::from_secs(1),
        &mut out,
    );
    assert_eq!(again, Resync::RateLimited);
    assert!(out.is_empty());
    let later = fanout.resync_viewer(
        ViewerId(1),
        &group,
        clock.at(1_100),
        Duration::from_secs(1),
        &mut out,
    );
    assert_eq!(later, Resync::Replayed(5));
    assert_eq!(out[0].seq, 1_011);
    // A group without a keyframe start, or of an older source, is not sent.
    let old: Vec<Arc<SourcePacket>> = vec![Arc::new(with_epoch(video(1, 0, true, clock.at(0)), 0))];
    fanout.forward(
        STREAM,
        &with_epoch(video(500, 90_000, true, clock.at(3_000)), 1),
        &mut Vec::new(),
    );
    assert_eq!(
        fanout.resync_viewer(
            ViewerId(1),
            &old,
            clock.at(5_000),
            Duration::from_secs(1),
            &mut out
        ),
        Resync::Nothing
    );
    assert_eq!(
        fanout.resync_viewer(
            ViewerId(1),
            &group[1..],
            clock.at(5_000),
            Duration::from_secs(1),
            &mut out
        ),
        Resync::Nothing
    );
    assert_eq!(
        fanout.resync_viewer(
            ViewerId(9),
            &group,
            clock.at(5_000),
            Duration::from_secs(1),
            &mut out
        ),
        Resync::Nothing
    );
}

#[test]
fn a_big_prefix_is_paced_and_live_video_queues_behind_it() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    let big = |seq: u64, key: bool| {
        let mut p = video(seq, 0, key, clock.at(0));
        p.payload = Arc::from(vec![0x41u8; 1_000]);
        Arc::new(p)
    };
    let prefix: Vec<Arc<SourcePacket>> = (0..100).map(|s| big(s, s == 0)).collect();
    let mut out = Vec::new();
    fanout.add_viewer_with_prefix(
        STREAM,
        ViewerId(1),
        vec![video_track(0, 0), audio_track(0, 0)],
        0,
        &prefix,
        clock.at(0),
        &mut out,
    );
    // The first burst at once (16 KiB), the rest later.
    assert_eq!(out.len(), 16);
    assert_eq!(fanout.paced_len(), 84);
    // Live video queues behind the prefix, audio does not.
    let live = fwd(&mut fanout, STREAM, &big(100, false));
    assert!(live.is_empty());
    assert_eq!(fwd(&mut fanout, STREAM, &audio(7, 0, clock.at(1))).len(), 1);
    let mut seqs: Vec<u64> = out.iter().map(|f| f.seq).collect();
    while let Some(t) = fanout.paced_timeout() {
        let mut more = Vec::new();
        fanout.poll_paced(t, &mut more);
        seqs.extend(more.iter().map(|f| f.seq));
    }
    assert_eq!(seqs, (0..=100).collect::<Vec<u64>>());
    // Done pacing: live video goes straight out again.
    assert_eq!(fwd(&mut fanout, STREAM, &big(101, false)).len(), 1);
}

/// A packet of simulcast layer `layer`, captured at `wallclock_ms` (layers of one
/// source share the capture clock but not their sequence numbers or timestamps).
fn layer_pkt(layer: u8, seq: u64, ts: u32, key: bool, clock: &Clock, ms: u64) -> SourcePacket {
    SourcePacket {
        layer,
        ..video(seq, ts, key, clock.at(ms))
    }
}

#[test]
fn a_viewer_gets_only_the_layer_it_follows() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    fanout.add_viewer(
        STREAM,
        ViewerId(1),
        vec![video_track(100, 0)],
        2,
        clock.at(0),
    );
    assert_eq!(fanout.layer_of(ViewerId(1)), Some((2, 2)));
    assert_eq!(
        one(&mut fanout, &layer_pkt(0, 10, 0, true, &clock, 0)),
        None
    );
    assert_eq!(
        one(&mut fanout, &layer_pkt(2, 500, 7, true, &clock, 0)),
        Some((100, 0))
    );
    assert_eq!(
        one(&mut fanout, &layer_pkt(1, 60, 0, true, &clock, 0)),
        None
    );
    assert_eq!(
        one(&mut fanout, &layer_pkt(2, 501, 7, false, &clock, 0)),
        Some((101, 0))
    );
    // The other layers' packets are not losses.
    assert_eq!(fanout.stats().dropped_waiting_keyframe, 0);
    assert_eq!(fanout.stats().dropped_too_old, 0);
}

#[test]
fn switching_waits_for_the_target_layers_keyframe_and_numbering_stays_continuous() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    let viewer = ViewerId(1);
    fanout.add_viewer(
        STREAM,
        viewer,
        vec![audio_track(7, 0), video_track(100, 1_000)],
        2,
        clock.at(0),
    );
    // Frames every 33 ms on both layers; layer 2's timestamps start at 90 000,
    // layer 0's at 5 000 000 (each layer has its own base).
    let frame = |layer: u8, n: u64, key: bool| {
        let (seq0, ts0) = if layer == 2 {
            (1_000, 90_000)
        } else {
            (40_000, 5_000_000)
        };
        layer_pkt(layer, seq0 + n, ts0 + 3_000 * n as u32, key, &clock, 33 * n)
    };
    assert_eq!(one(&mut fanout, &frame(2, 0, true)), Some((100, 1_000)));
    assert_eq!(one(&mut fanout, &frame(2, 1, false)), Some((101, 4_000)));

    // Down to layer 0: a keyframe of layer 0 is wanted, layer 2 still flows meanwhile.
    assert!(fanout.set_layer(viewer, 0, false, clock.at(70)));
    assert_eq!(fanout.layer_of(viewer), Some((2, 0)));
    assert_eq!(
        fanout.keyframes_wanted(clock.at(2_000), Duration::from_secs(1)),
        vec![(STREAM.to_owned(), 0)]
    );
    assert_eq!(
        one(&mut fanout, &frame(0, 2, false)),
        None,
        "not at a keyframe"
    );
    assert_eq!(one(&mut fanout, &frame(2, 2, false)), Some((102, 7_000)));
    // Audio is untouched by the switch.
    assert!(one(&mut fanout, &audio(3, 960, clock.at(70))).is_some());

    // Layer 0's keyframe of frame 3: the next sequence number, the timestamp one
    // frame (33 ms of capture time) after the last.
    let (seq, ts) = one(&mut fanout, &frame(0, 3, true)).expect("switched at the keyframe");
    assert_eq!(seq, 103);
    assert_eq!(
        ts,
        7_000 + duration_to_ticks(Duration::from_millis(33), 90_000)
    );
    assert_eq!(fanout.layer_of(viewer), Some((0, 0)));
    // The old layer is cut off; the new one continues from its keyframe.
    assert_eq!(one(&mut fanout, &frame(2, 3, false)), None);
    assert_eq!(
        one(&mut fanout, &frame(0, 4, false)),
        Some((104, ts + 3_000))
    );
    assert!(
        fanout
            .keyframes_wanted(clock.at(4_000), Duration::from_secs(1))
            .is_empty()
    );
}

#[test]
fn a_viewer_still_waiting_to_start_moves_to_the_new_layer_at_once() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    let viewer = ViewerId(1);
    fanout.add_viewer(STREAM, viewer, vec![video_track(100, 0)], 2, clock.at(0));
    assert!(fanout.set_layer(viewer, 1, false, clock.at(10)));
    assert_eq!(fanout.layer_of(viewer), Some((1, 1)));
    assert_eq!(
        one(&mut fanout, &layer_pkt(2, 500, 7, true, &clock, 20)),
        None
    );
    assert_eq!(
        one(&mut fanout, &layer_pkt(1, 60, 9, true, &clock, 20)),
        Some((100, 0))
    );
    // Asking for the layer it already follows wants nothing.
    assert!(!fanout.set_layer(viewer, 1, false, clock.at(30)));
}

#[test]
fn a_viewer_moved_down_for_congestion_gets_nothing_until_the_new_keyframe() {
    let clock = Clock::new();
    let mut fanout = Fanout::new();
    let viewer = ViewerId(1);
    fanout.add_viewer(STREAM, viewer, vec![video_track(100, 0)], 2, clock.at(0));
    assert!(one(&mut fanout, &layer_pkt(2, 10, 0, true, &clock, 0)).is_some());
    assert!(fanout.set_layer(viewer, 0, true, clock.at(10)));
    assert_eq!(
        one(&mut fanout, &layer_pkt(2, 11, 3_000, false, &clock, 33)),
        None
    );
    let (seq, _) = one(&mut fanout, &layer_pkt(0, 70, 9, true, &clock, 66)).expect("keyframe");
    assert_eq!(seq, 101, "numbering goes on after the last packet it got");
    assert_eq!(fanout.layer_of(viewer), Some((0, 0)));
}
