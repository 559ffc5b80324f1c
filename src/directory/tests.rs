use super::*;

fn reg() -> Directory {
    Directory::new(
        Duration::from_secs(30),
        Takeover::Never,
        Duration::from_secs(1),
    )
}

#[test]
fn second_publisher_on_a_live_stream_is_refused() {
    let r = reg();
    r.begin_publish("a", SessionId(1), 0, "e".into(), vec![], Grant::Open)
        .unwrap();
    assert_eq!(
        r.begin_publish("a", SessionId(2), 0, "e".into(), vec![], Grant::Open)
            .unwrap_err(),
        DirectoryError::SourceLive("a".into())
    );
}

fn join_cam(r: &Directory, id: u128) -> Result<Arc<Stream>, DirectoryError> {
    r.join_viewer(
        "cam",
        SessionId(id),
        0,
        "e".into(),
        Grant::Open,
        ViewerLines::default(),
    )
}

#[test]
fn a_camera_takes_viewers_while_it_sends_or_when_they_may_wait() {
    let r = reg();
    let shared = r
        .register_rtp_source("cam", vec![], KeyframeCache::default(), false)
        .unwrap();
    assert_eq!(
        join_cam(&r, 1).unwrap_err(),
        DirectoryError::NoSource("cam".into()),
        "a camera that sends nothing: 409"
    );
    assert!(r.live_codecs("cam").is_err());
    shared.events.set_live(true);
    join_cam(&r, 2).expect("a camera that sends takes viewers");
    shared.events.set_live(false);
    assert!(join_cam(&r, 3).is_err(), "offline again: 409");
    shared.set_camera_waits(true);
    join_cam(&r, 4).expect("viewers that may wait join an offline camera");
}

#[test]
fn rtp_streams_refuse_whip_and_take_viewers() {
    let r = reg();
    let shared = r
        .register_rtp_source("cam", vec![], KeyframeCache::default(), true)
        .unwrap();
    assert_eq!(
        r.begin_publish("cam", SessionId(1), 0, "e".into(), vec![], Grant::Open)
            .unwrap_err(),
        DirectoryError::RtpSource("cam".into())
    );
    let s = r
        .join_viewer(
            "cam",
            SessionId(2),
            0,
            "e".into(),
            Grant::Open,
            ViewerLines::default(),
        )
        .unwrap();
    assert!(Arc::ptr_eq(&s, &shared));
    assert_eq!(s.source_worker(), None);
    r.remove_session(SessionId(2), Instant::now());
    assert!(
        r.expire(Instant::now() + Duration::from_secs(3600))
            .is_empty()
    );
    assert!(s.keyframe_group(0, Instant::now()).is_empty());
}

#[test]
fn viewer_needs_a_live_source() {
    let r = reg();
    assert!(matches!(
        r.join_viewer(
            "a",
            SessionId(9),
            0,
            "e".into(),
            Grant::Open,
            ViewerLines::default()
        ),
        Err(DirectoryError::NoSource(_))
    ));
    r.begin_publish("a", SessionId(1), 1, "e".into(), vec![], Grant::Open)
        .unwrap();
    let shared = r
        .join_viewer(
            "a",
            SessionId(9),
            0,
            "e".into(),
            Grant::Open,
            ViewerLines::default(),
        )
        .unwrap();
    assert_eq!(shared.source_worker(), Some(1));
}

#[test]
fn publisher_returning_within_grace_gets_a_new_epoch_of_the_same_stream() {
    let r = reg();
    let t0 = Instant::now();
    let g1 = r
        .begin_publish("a", SessionId(1), 0, "e".into(), vec![], Grant::Open)
        .unwrap();
    r.join_viewer(
        "a",
        SessionId(9),
        0,
        "e".into(),
        Grant::Open,
        ViewerLines::default(),
    )
    .unwrap();
    r.remove_session(SessionId(1), t0);
    assert_eq!(g1.shared.source_worker(), None);
    assert!(r.expire(t0 + Duration::from_secs(29)).is_empty());
    let g2 = r
        .begin_publish("a", SessionId(2), 1, "e".into(), vec![], Grant::Open)
        .unwrap();
    assert!(Arc::ptr_eq(&g1.shared, &g2.shared));
    assert_eq!(g2.epoch, g1.epoch + 1);
    assert_eq!(g2.end_viewers_on, 0);
    assert!(r.expire(t0 + Duration::from_secs(31)).is_empty());
}

#[test]
fn stream_ends_after_the_grace_period_and_names_the_viewer_workers() {
    let r = reg();
    let t0 = Instant::now();
    let g = r
        .begin_publish("a", SessionId(1), 0, "e".into(), vec![], Grant::Open)
        .unwrap();
    g.shared.join(1, 0, Instant::now());
    r.remove_session(SessionId(1), t0);
    let ended = r.expire(t0 + Duration::from_secs(30));
    assert_eq!(ended, vec![(Arc::from("a"), 0b10)]);
    assert_eq!(r.counts().streams, 0);
}

#[test]
fn removing_sessions_leaves_nothing_behind() {
    let r = reg();
    let t0 = Instant::now();
    r.begin_publish("a", SessionId(1), 0, "e".into(), vec![], Grant::Open)
        .unwrap();
    r.join_viewer(
        "a",
        SessionId(2),
        0,
        "e".into(),
        Grant::Open,
        ViewerLines::default(),
    )
    .unwrap();
    r.remove_session(SessionId(2), t0);
    r.remove_session(SessionId(1), t0);
    r.expire(t0 + Duration::from_secs(31));
    assert_eq!(r.counts(), DirectoryCounts::default());
}

fn codec(kind: MediaKind, name: &str, pt: u8) -> ChosenCodec {
    let (clock_rate, channels) = match kind {
        MediaKind::Audio => (48_000, Some(2)),
        MediaKind::Video => (90_000, None),
    };
    ChosenCodec {
        kind,
        mid: "0".into(),
        codec: crate::sdp::OfferedCodec {
            pt,
            name: name.into(),
            clock_rate,
            channels,
            fmtp: String::new(),
            rtx_pt: None,
            nack: false,
            pli: false,
            fir: false,
            transport_cc: false,
        },
    }
}

fn kinds(codecs: &[ChosenCodec]) -> Vec<(MediaKind, u8)> {
    codecs.iter().map(|c| (c.kind, c.codec.pt)).collect()
}

#[test]
fn a_returning_source_with_fewer_kinds_keeps_the_viewers() {
    let r = reg();
    let t0 = Instant::now();
    let av = vec![
        codec(MediaKind::Audio, "opus", 111),
        codec(MediaKind::Video, "VP8", 96),
    ];
    r.begin_publish("a", SessionId(1), 0, "e".into(), av, Grant::Open)
        .unwrap();
    r.join_viewer(
        "a",
        SessionId(9),
        0,
        "e".into(),
        Grant::Open,
        ViewerLines::default(),
    )
    .unwrap();
    r.remove_session(SessionId(1), t0);
    let video_only = vec![codec(MediaKind::Video, "VP8", 100)];
    let g = r
        .begin_publish("a", SessionId(2), 0, "e".into(), video_only, Grant::Open)
        .unwrap();
    assert_eq!(g.end_viewers_on, 0);
    assert!(g.rejoin.is_empty());
    // The viewers' numbering stays; new viewers are offered video alone.
    assert_eq!(kinds(&g.canonical), vec![(MediaKind::Video, 96)]);
    assert_eq!(
        kinds(&r.live_codecs("a").unwrap()),
        vec![(MediaKind::Video, 96)]
    );
}

#[test]
fn a_returning_source_that_brings_a_kind_back_closes_only_the_viewers_that_lacked_it() {
    let r = reg();
    let t0 = Instant::now();
    let audio = codec(MediaKind::Audio, "opus", 111);
    let video = codec(MediaKind::Video, "VP8", 96);
    r.begin_publish(
        "a",
        SessionId(1),
        0,
        "e".into(),
        vec![audio.clone(), video.clone()],
        Grant::Open,
    )
    .unwrap();
    // Viewer 9 joined with both kinds.
    r.join_viewer(
        "a",
        SessionId(9),
        0,
        "e".into(),
        Grant::Open,
        ViewerLines::default(),
    )
    .unwrap();
    r.remove_session(SessionId(1), t0);
    r.begin_publish(
        "a",
        SessionId(2),
        0,
        "e".into(),
        vec![video.clone()],
        Grant::Open,
    )
    .unwrap();
    // Viewer 10 joined the video-only stream, its audio answered inactive.
    r.join_viewer(
        "a",
        SessionId(10),
        1,
        "e".into(),
        Grant::Open,
        ViewerLines {
            idle_kinds: vec![MediaKind::Audio],
            video: None,
        },
    )
    .unwrap();
    r.remove_session(SessionId(2), t0);
    let mut audio_again = audio.clone();
    audio_again.codec.pt = 109;
    let g = r
        .begin_publish(
            "a",
            SessionId(3),
            0,
            "e".into(),
            vec![audio_again, video],
            Grant::Open,
        )
        .unwrap();
    assert_eq!(g.end_viewers_on, 0);
    let rejoin: Vec<(SessionId, usize)> = g.rejoin.iter().map(|s| (s.id, s.worker)).collect();
    assert_eq!(rejoin, vec![(SessionId(10), 1)]);
    // Audio is numbered as viewer 9 negotiated it.
    assert_eq!(
        kinds(&g.canonical),
        vec![(MediaKind::Audio, 111), (MediaKind::Video, 96)]
    );
}

#[test]
fn a_returning_source_with_another_codec_for_a_kind_closes_every_viewer() {
    let r = reg();
    let t0 = Instant::now();
    let g1 = r
        .begin_publish(
            "a",
            SessionId(1),
            0,
            "e".into(),
            vec![codec(MediaKind::Video, "VP8", 96)],
            Grant::Open,
        )
        .unwrap();
    r.join_viewer(
        "a",
        SessionId(9),
        0,
        "e".into(),
        Grant::Open,
        ViewerLines {
            idle_kinds: vec![MediaKind::Audio],
            video: None,
        },
    )
    .unwrap();
    g1.shared.join(0, 0, Instant::now());
    r.remove_session(SessionId(1), t0);
    let g = r
        .begin_publish(
            "a",
            SessionId(2),
            0,
            "e".into(),
            vec![
                codec(MediaKind::Audio, "opus", 111),
                codec(MediaKind::Video, "H264", 102),
            ],
            Grant::Open,
        )
        .unwrap();
    assert_eq!(g.end_viewers_on, 0b1);
    assert!(g.rejoin.is_empty(), "every viewer is closed anyway");
    assert_eq!(
        kinds(&g.canonical),
        vec![(MediaKind::Audio, 111), (MediaKind::Video, 102)]
    );
}

fn with_takeover(takeover: Takeover, silence: Duration) -> Directory {
    Directory::new(Duration::from_secs(30), takeover, silence)
}

#[test]
fn a_new_publisher_replaces_one_that_fell_silent_when_the_policy_allows() {
    // A silence of zero: the first publisher is silent at once.
    for (takeover, silence, replaces) in [
        (Takeover::WhenSilent, Duration::ZERO, true),
        (Takeover::WhenSilent, Duration::from_secs(3600), false),
        (Takeover::Always, Duration::from_secs(3600), true),
        (Takeover::Never, Duration::ZERO, false),
    ] {
        let r = with_takeover(takeover, silence);
        let g1 = r
            .begin_publish("a", SessionId(1), 0, "e".into(), vec![], Grant::Open)
            .unwrap();
        r.join_viewer(
            "a",
            SessionId(9),
            1,
            "e".into(),
            Grant::Open,
            ViewerLines::default(),
        )
        .unwrap();
        assert_eq!(r.check_publish("a", Instant::now()).is_ok(), replaces);
        let second = r.begin_publish("a", SessionId(2), 1, "e".into(), vec![], Grant::Open);
        if !replaces {
            assert_eq!(
                second.unwrap_err(),
                DirectoryError::SourceLive("a".into()),
                "{takeover:?}"
            );
            continue;
        }
        let g2 = second.unwrap();
        assert_eq!(
            g2.replaced.map(|s| (s.id, s.worker)),
            Some((SessionId(1), 0))
        );
        assert!(Arc::ptr_eq(&g1.shared, &g2.shared));
        assert_eq!(g2.epoch, g1.epoch + 1);
        assert_eq!(g2.shared.source_worker(), Some(1));
        // The replaced session's end starts no grace period: the stream is the new
        // publisher's.
        r.remove_session(SessionId(1), Instant::now());
        assert!(matches!(
            r.stream("a").unwrap().source,
            SourceView::WhipLive(SessionId(2))
        ));
        assert_eq!(r.counts().publishers, 1);
        assert_eq!(r.counts().viewers, 1);
    }
}

#[test]
fn a_silent_source_shows_since_when_it_fell_silent() {
    let r = with_takeover(Takeover::Never, Duration::from_millis(50));
    let g = r
        .begin_publish("a", SessionId(1), 0, "e".into(), vec![], Grant::Open)
        .unwrap();
    assert_eq!(r.stream("a").unwrap().silent_since, None);
    let started = g.shared.stats.last_in();
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(r.stream("a").unwrap().silent_since, Some(started));
}

#[test]
fn an_ended_session_is_remembered_for_a_while_then_forgotten() {
    let r = reg();
    let t0 = Instant::now();
    r.begin_publish("s", SessionId(1), 0, "e".into(), vec![], Grant::Open)
        .unwrap();
    assert!(r.ended_session(SessionId(1), t0).is_none(), "still live");
    r.remove_closed_session(SessionId(1), t0);
    let ended = r
        .ended_session(SessionId(1), t0 + ENDED_KEPT)
        .expect("remembered");
    assert_eq!((ended.kind, &*ended.stream), (Role::Publisher, "s"));
    assert!(
        r.ended_session(SessionId(1), t0 + ENDED_KEPT + Duration::from_millis(1))
            .is_none()
    );
    // A crowd leaving keeps the newest ENDED_MAX.
    r.begin_publish("s", SessionId(2), 0, "e".into(), vec![], Grant::Open)
        .unwrap();
    for i in 0..(ENDED_MAX as u128 + 10) {
        let id = SessionId(100 + i);
        r.join_viewer("s", id, 0, "e".into(), Grant::Open, ViewerLines::default())
            .unwrap();
        r.remove_closed_session(id, t0);
    }
    // Ended any other way (DELETE, a timeout): not kept.
    r.join_viewer(
        "s",
        SessionId(7),
        0,
        "e".into(),
        Grant::Open,
        ViewerLines::default(),
    )
    .unwrap();
    r.remove_session(SessionId(7), t0);
    assert!(r.ended_session(SessionId(7), t0).is_none());
    assert!(r.lock().ended.len() <= ENDED_MAX);
    assert!(r.ended_session(SessionId(100), t0).is_none());
    assert!(
        r.ended_session(SessionId(100 + ENDED_MAX as u128 + 9), t0)
            .is_some()
    );
}
