//! FFmpeg's WHIP muxer (FFmpeg 9, from the PyPI package imageio-ffmpeg) publishes to a
//! real wishd on 127.0.0.1 with the settings a user would type (`-f whip
//! -authorization TOKEN`), and str0m WHEP viewers receive it.
//!
//! What makes FFmpeg's offer different from a browser's (and what these tests prove
//! wishd takes): `a=setup:passive` on every m-line (wishd must be the DTLS client), no
//! ICE candidates at all (FFmpeg sends the checks to the answer's candidate), and
//! `a=rtcp-fb:106 nack` without `nack pli` or `ccm fir` (wishd cannot ask it for a
//! keyframe, so it keeps the last one for joining viewers).

mod common;
mod interop;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interop::{Lines, Tool};
use wishd::client::{VideoCodec, ViewerOptions, http_request, viewer_offer};
use wishd::config::{Config, Policy, Secret, StaticTokenConfig};
use wishd::core::MediaKind;
use wishd::model::Role;
use wishd::server::Server;

const TOKEN: &str = "ffmpeg-whip-key-7c1d2e";

fn with_publish_token(c: &mut Config) {
    c.auth.publish = Policy::Token;
    c.auth.tokens.push(StaticTokenConfig {
        token: Some(Secret::new(TOKEN)),
        token_file: None,
        streams: vec!["*".into()],
        actions: vec![Role::Publisher],
    });
}

/// Starts FFmpeg publishing a moving test pattern (H.264 baseline, 30 fps, a keyframe
/// every `gop` frames) and a 440 Hz tone (Opus) for `secs` seconds.
fn publish(server: &Server, stream: &str, secs: u32, gop: u32) -> (Tool, Lines) {
    publish_profile(server, stream, secs, gop, "baseline")
}

/// [`publish`] with another x264 profile (`baseline`, `main`, `high`).
fn publish_profile(
    server: &Server,
    stream: &str,
    secs: u32,
    gop: u32,
    profile: &str,
) -> (Tool, Lines) {
    let ffmpeg = interop::ffmpeg_with_whip();
    let t = secs.to_string();
    let g = gop.to_string();
    let url = format!("{}/whip/{stream}", server.base_url());
    // x264's ultrafast preset turns off what High needs (CABAC, 8x8 transform) and
    // then writes Constrained Baseline whatever the profile asked for.
    let preset = if profile == "baseline" {
        "ultrafast"
    } else {
        "veryfast"
    };
    #[rustfmt::skip]
    let args: Vec<&str> = vec![
        "-nostdin", "-nostats", "-loglevel", "verbose", "-re",
        "-t", &t, "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
        "-t", &t, "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-c:v", "libx264", "-profile:v", profile, "-preset", preset, "-tune", "zerolatency",
        "-g", &g, "-keyint_min", &g, "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p", "-b:v", "500k",
        "-c:a", "libopus", "-ar", "48000", "-ac", "2",
        "-f", "whip", "-authorization", TOKEN, &url,
    ];
    let mut child = Command::new(&ffmpeg)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg starts");
    let log = Lines::collect(child.stderr.take().expect("stderr piped"));
    (Tool(child), log)
}

/// FFmpeg's own account of its setup: the `(init:..,offer:..,answer:..,udp:..,ice:..,
/// dtls:..,srtp:..)` part of its "Muxer state=10" line, as (step, milliseconds).
fn handshake_steps(line: &str) -> Vec<(String, f64)> {
    let Some(start) = line.rfind('(') else {
        return Vec::new();
    };
    line[start + 1..]
        .trim_end_matches(')')
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once(':')?;
            Some((k.trim().to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn step(steps: &[(String, f64)], name: &str) -> f64 {
    steps
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or(f64::NAN)
}

/// The SDP offer FFmpeg logged at verbose level ("Generated state=2, offer: v=0" and
/// the lines after it).
fn logged_offer(lines: &[String]) -> String {
    let Some(i) = lines.iter().position(|l| l.contains("offer: v=0")) else {
        return String::new();
    };
    let mut sdp = vec!["v=0".to_owned()];
    for l in &lines[i + 1..] {
        if l.is_empty() || l.starts_with('[') {
            break;
        }
        sdp.push(l.clone());
    }
    sdp.join("\n")
}

/// The `profile-level-id` of an offer's H.264.
fn offered_plid(offer: &str) -> String {
    offer
        .split("profile-level-id=")
        .nth(1)
        .and_then(|r| r.get(..6))
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| panic!("no profile-level-id in {offer}"))
}

async fn muxer_ready(log: &Lines) -> String {
    log.wait_for(Duration::from_secs(15), |l| {
        l.contains("Muxer state=10") || l.contains("Failed") || l.contains("Error")
    })
    .await
    .filter(|l| l.contains("Muxer state=10"))
    .unwrap_or_else(|| {
        panic!(
            "FFmpeg did not finish its WHIP setup:\n{}",
            log.snapshot().join("\n")
        )
    })
}

fn print_handshake(ready: &str) -> Vec<(String, f64)> {
    let steps = handshake_steps(ready);
    println!(
        "ffmpeg WHIP setup: answer {:.1} ms, ICE {:.1} ms, DTLS {:.1} ms, SRTP {:.1} ms; ICE+DTLS {:.1} ms (goal under 150 ms)",
        step(&steps, "answer"),
        step(&steps, "ice"),
        step(&steps, "dtls"),
        step(&steps, "srtp"),
        step(&steps, "ice") + step(&steps, "dtls"),
    );
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_whip_with_a_token_reaches_a_viewer_with_a_keyframe_first_and_opus() {
    let server = common::start_with(with_publish_token).await;
    let (mut ffmpeg, log) = publish(&server, "ff", 6, 30);
    let ready = muxer_ready(&log).await;
    let steps = print_handshake(&ready);
    assert!(
        step(&steps, "dtls").is_finite(),
        "no DTLS figure in {ready}"
    );

    // The offer has FFmpeg's quirks this test is about.
    let offer = logged_offer(&log.snapshot());
    assert!(offer.contains("a=setup:passive"), "{offer}");
    assert!(!offer.contains("a=candidate"), "{offer}");
    assert!(offer.contains(" nack"), "{offer}");
    assert!(
        !offer.contains("nack pli") && !offer.contains("ccm fir"),
        "{offer}"
    );

    let viewer = interop::view_when_live(
        &format!("{}/whep/ff", server.base_url()),
        ViewerOptions::default(),
        Duration::from_secs(5),
    )
    .await;
    interop::wait_for_video_and_audio(&viewer).await;
    // The publisher's H.264 profile (Baseline, at the level of its picture size)
    // passes through to the viewer's answer.
    let plid = offered_plid(&offer);
    assert!(plid.starts_with("4200"), "FFmpeg signals Baseline: {plid}");
    assert!(
        viewer
            .answer_sdp()
            .contains(&format!("profile-level-id={plid}")),
        "{}",
        viewer.answer_sdp()
    );
    let got = viewer.received();
    let video = interop::of_kind(&got, MediaKind::Video);
    interop::assert_starts_sps_pps_idr(&video, "ffmpeg viewer");
    assert!(interop::first_picture_is_whole(&video));
    let first = interop::first_picture_complete(&video).expect("a complete first picture");
    println!(
        "ffmpeg viewer: first keyframe complete {} ms after the WHEP POST",
        first.duration_since(viewer.post_sent_at()).as_millis()
    );
    let audio = interop::of_kind(&got, MediaKind::Audio);
    assert!(audio.iter().all(|p| !p.payload.is_empty()));
    // Opus at 48 kHz in 20 ms frames: consecutive packets 960 ticks apart.
    let steps: Vec<u32> = audio
        .windows(2)
        .filter(|w| w[1].seq == w[0].seq + 1)
        .map(|w| w[1].timestamp.wrapping_sub(w[0].timestamp))
        .collect();
    assert!(
        steps.iter().filter(|d| **d == 960).count() * 10 >= steps.len() * 9,
        "Opus timestamps step by 960: {:?}",
        &steps[..steps.len().min(20)]
    );

    // FFmpeg ends with a DELETE: the publisher is gone at once (not after the ICE
    // timeout). FFmpeg 9 logs "Failed to read response from DELETE" whatever the
    // server answers (its HTTP client reads the status line of a DELETE sent in write
    // mode as a chunk size); wishd has ended the session all the same.
    assert!(
        ffmpeg.wait_exit(Duration::from_secs(15)).await,
        "ffmpeg ends"
    );
    let gone = Instant::now() + Duration::from_secs(2);
    while server.directory().counts().publishers > 0 && Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        server.directory().counts().publishers,
        0,
        "the DELETE ended the publisher"
    );
    assert!(
        log.snapshot()
            .iter()
            .any(|l| l.contains("DELETE") || l.contains("Dispose")),
        "ffmpeg sent its DELETE"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_whip_without_the_token_is_refused_with_401() {
    let server = common::start_with(with_publish_token).await;
    let ffmpeg = interop::ffmpeg_with_whip();
    let url = format!("{}/whip/ff", server.base_url());
    #[rustfmt::skip]
    let out = Command::new(&ffmpeg)
        .args([
            "-nostdin", "-nostats", "-loglevel", "verbose",
            "-t", "1", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30",
            "-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
            "-bf", "0", "-pix_fmt", "yuv420p",
            "-f", "whip", "-authorization", "not-the-token", &url,
        ])
        .stdout(Stdio::null())
        .output()
        .expect("ffmpeg runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ffmpeg must fail:\n{log}");
    assert!(log.contains("401"), "ffmpeg reports the 401:\n{log}");
    assert_eq!(server.directory().counts().publishers, 0);
    server.shutdown().await;
}

/// FFmpeg cannot be asked for a keyframe, so wishd keeps its last one: a viewer that
/// joins 0.9 s into a 1 s keyframe interval starts from the cached keyframe (and the
/// frames after it) instead of waiting for the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_joining_late_in_ffmpegs_keyframe_interval_starts_from_the_cached_keyframe() {
    let server = common::start_with(with_publish_token).await;
    let (_ffmpeg, log) = publish(&server, "late", 10, 30);
    muxer_ready(&log).await;
    let url = format!("{}/whep/late", server.base_url());

    // A first viewer shows when the source's keyframes arrive.
    let first =
        interop::view_when_live(&url, ViewerOptions::default(), Duration::from_secs(5)).await;
    first
        .wait_for(Duration::from_secs(10), |p| {
            interop::keyframes(&interop::of_kind(p, MediaKind::Video)).len() >= 2
        })
        .await
        .expect("two keyframes reach the first viewer");
    // The join must land before the next keyframe reaches wishd (its setup takes tens
    // of milliseconds, more on a loaded machine): if it did not, the viewer rightly
    // starts from that newer keyframe and the mid-interval case was not exercised, so
    // the test joins again in a later interval. Without the cache no attempt succeeds.
    for attempt in 1..=3 {
        let seen = interop::keyframes(&interop::of_kind(&first.received(), MediaKind::Video));
        let (_, last_key) = seen[seen.len() - 1];
        tokio::time::sleep_until((last_key + Duration::from_millis(900)).into()).await;

        let late =
            interop::view_when_live(&url, ViewerOptions::default(), Duration::from_secs(5)).await;
        late.wait_for(Duration::from_secs(5), |p| {
            interop::keyframes(&interop::of_kind(p, MediaKind::Video)).len() >= 2
        })
        .await
        .expect("keyframes reach the late viewer");
        let video = interop::of_kind(&late.received(), MediaKind::Video);
        interop::assert_starts_sps_pps_idr(&video, "late viewer");
        assert!(interop::first_picture_is_whole(&video));
        let decodable = interop::first_picture_complete(&video).expect("a complete first picture");
        let startup = decodable.duration_since(late.post_sent_at());
        let joined = late.post_sent_at().duration_since(last_key);
        // From the cache: the first keyframe is the previous interval's (90,000 ticks
        // before the next one), and the next arrives live shortly after it.
        let keys = interop::keyframes(&video);
        let from_cache = keys[1].0.wrapping_sub(keys[0].0) == 90_000
            && keys[1].1.duration_since(keys[0].1) < Duration::from_millis(500);
        println!(
            "ffmpeg late viewer, attempt {attempt} (joined {} ms into a 1 s keyframe interval): first keyframe complete {} ms after the WHEP POST (goal under 150 ms), {}",
            joined.as_millis(),
            startup.as_millis(),
            if from_cache {
                "from the cache"
            } else {
                "from the next keyframe: joined too late"
            }
        );
        if from_cache {
            assert!(
                startup < Duration::from_millis(300),
                "first keyframe after {startup:?}"
            );
            server.shutdown().await;
            return;
        }
    }
    panic!("no late viewer started from the cached keyframe");
}

/// A user who picks x264's high profile: the stream is H.264 High, a viewer that takes
/// High gets it (the answer names the publisher's profile-level-id), and a viewer that
/// takes only Constrained Baseline is told exactly that in the 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpegs_high_profile_passes_through_and_a_baseline_only_viewer_is_told_why() {
    let server = common::start_with(with_publish_token).await;
    let (_ffmpeg, log) = publish_profile(&server, "high", 5, 30, "high");
    muxer_ready(&log).await;
    let plid = offered_plid(&logged_offer(&log.snapshot()));
    assert!(
        plid.starts_with("64"),
        "x264 high profile is 64xxxx: {plid}"
    );
    let url = format!("{}/whep/high", server.base_url());

    let viewer =
        interop::view_when_live(&url, ViewerOptions::default(), Duration::from_secs(5)).await;
    assert!(
        viewer
            .answer_sdp()
            .contains(&format!("profile-level-id={plid}")),
        "{}",
        viewer.answer_sdp()
    );
    viewer
        .wait_for(Duration::from_secs(5), |p| {
            p.iter().any(|p| p.kind == MediaKind::Video && p.marker)
        })
        .await
        .expect("High-profile video reaches the viewer");
    interop::assert_starts_sps_pps_idr(
        &interop::of_kind(&viewer.received(), MediaKind::Video),
        "high-profile viewer",
    );

    // A viewer whose every H.264 format is Constrained Baseline 3.1.
    let opts = ViewerOptions {
        video_codecs: vec![VideoCodec::H264],
        ..ViewerOptions::default()
    };
    let mut cb_only = viewer_offer(&opts).unwrap();
    for other in ["42001f", "4d001f", "64001f"] {
        cb_only = cb_only.replace(
            &format!("profile-level-id={other}"),
            "profile-level-id=42e01f",
        );
    }
    let r = http_request(
        "POST",
        &url,
        &[("content-type", "application/sdp")],
        cb_only.into_bytes(),
    )
    .await
    .expect("http");
    let body = r.text();
    println!("422 for a Constrained-Baseline-only viewer: {body}");
    assert_eq!(r.status, 422, "{body}");
    assert!(
        body.contains(&format!("stream is H.264 High ({plid})"))
            && body.contains("accepts only Constrained Baseline (42e01f)"),
        "{body}"
    );
    server.shutdown().await;
}

/// FFmpeg labels x264's baseline output Baseline (`4200xx`) though its SPS says
/// Constrained Baseline; a viewer that offers only Constrained Baseline (Firefox's
/// `42e01f`) plays it, answered with the profile it offered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpegs_baseline_plays_to_a_constrained_baseline_only_viewer() {
    let server = common::start_with(with_publish_token).await;
    let (_ffmpeg, log) = publish(&server, "cb", 5, 30);
    muxer_ready(&log).await;
    let plid = offered_plid(&logged_offer(&log.snapshot()));
    assert!(plid.starts_with("4200"), "FFmpeg signals Baseline: {plid}");

    let opts = ViewerOptions {
        video_codecs: vec![VideoCodec::H264],
        h264_profile_level_ids: vec![0x42e01f],
        ..ViewerOptions::default()
    };
    let url = format!("{}/whep/cb", server.base_url());
    let viewer = interop::view_when_live(&url, opts, Duration::from_secs(5)).await;
    let answer = viewer.answer_sdp();
    assert!(answer.contains("profile-level-id=42e01f"), "{answer}");
    assert!(!answer.contains(&plid), "{answer}");
    viewer
        .wait_for(Duration::from_secs(5), |p| {
            p.iter().any(|p| p.kind == MediaKind::Video && p.marker)
        })
        .await
        .expect("FFmpeg's video reaches the viewer");
    let video = interop::of_kind(&viewer.received(), MediaKind::Video);
    interop::assert_starts_sps_pps_idr(&video, "Constrained Baseline viewer");
    // The bitstream is what lets this through: x264's SPS sets constraint_set1.
    let sps_constraints = video.iter().find_map(|p| sps_constraint_flags(&p.payload));
    assert_eq!(
        sps_constraints.map(|c| c & 0x40 != 0),
        Some(true),
        "x264's baseline SPS sets constraint_set1 ({sps_constraints:?})"
    );
    server.shutdown().await;
}

/// The constraint_set byte of an SPS in a single-NAL or STAP-A payload.
fn sps_constraint_flags(payload: &[u8]) -> Option<u8> {
    match payload.first()? & 0x1f {
        7 => payload.get(2).copied(),
        24 => {
            let mut rest = payload.get(1..)?;
            while let [hi, lo, tail @ ..] = rest {
                let n = usize::from(u16::from_be_bytes([*hi, *lo]));
                let nal = tail.get(..n)?;
                if nal.first()? & 0x1f == 7 {
                    return nal.get(2).copied();
                }
                rest = tail.get(n..)?;
            }
            None
        }
        _ => None,
    }
}
