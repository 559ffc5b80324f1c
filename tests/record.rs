//! Recording to fragmented MP4: a stream named by a `[[record]]` rule is written as it
//! plays, and what was written is read by ffprobe and decoded by ffmpeg without an
//! error, with the duration the stream had, a keyframe first, and audio and video
//! starting together.

mod clients;
mod common;
mod interop;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interop::Tool;
use wishd::config::{RecordEntry, RtpEntry, RtpMediumEntry};

fn camera_entry(stream: &str, vport: u16, aport: u16) -> RtpEntry {
    RtpEntry {
        stream: stream.into(),
        video: Some(RtpMediumEntry {
            port: vport,
            pt: 96,
            rtpmap: "H264/90000".into(),
            fmtp: "packetization-mode=1".into(),
        }),
        audio: Some(RtpMediumEntry {
            port: aport,
            pt: 111,
            rtpmap: "opus/48000/2".into(),
            fmtp: String::new(),
        }),
        ..RtpEntry::default()
    }
}

/// The files under `dir`, oldest name first.
fn recordings(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// ffprobe's JSON for `file`: its format and streams, and the first video frame's
/// key flag.
fn probe(file: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs (apt-get install ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe's JSON")
}

fn first_video_frame_is_key(file: &Path) -> bool {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
        ])
        .args(["-show_entries", "frame=key_frame", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&out.stdout).trim().starts_with('1')
}

/// `ffmpeg -v error -i FILE -f null -`: what it says (nothing when the file decodes).
fn decode_errors(file: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

fn seconds(v: &serde_json::Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtp_cameras_h264_and_opus_are_recorded_to_fmp4_that_ffmpeg_decodes() {
    let (vport, aport) = (clients::free_port_pair(), clients::free_port_pair());
    let dir = std::env::temp_dir().join(format!("wishd-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let server = common::start_with(|c| {
        c.rtp.push(camera_entry("cam", vport, aport));
        c.record.push(RecordEntry {
            stream: "c*".into(),
            directory: dir.clone(),
            ..RecordEntry::default()
        });
    })
    .await;
    // The README's camera: H.264 with a keyframe every 2 s, and Opus.
    let work = dir.join("camera");
    std::fs::create_dir_all(&work).expect("a work directory");
    let camera = Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/camera-ffmpeg.sh"),
    )
    .args(["127.0.0.1", &vport.to_string(), &aport.to_string(), "30"])
    .current_dir(&work)
    .stdout(Stdio::null())
    .spawn()
    .expect("ffmpeg camera starts (apt-get install ffmpeg)");
    let camera = Tool(camera);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(7)).await;
    drop(camera);
    let sent = t0.elapsed();
    server.shutdown().await;

    let files = recordings(&dir.join("cam"));
    assert_eq!(files.len(), 1, "one segment: {files:?}");
    let file = &files[0];
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    assert!(
        name.starts_with("cam_20") && name.ends_with("Z.mp4"),
        "{name}"
    );
    let p = probe(file);
    let streams = p["streams"].as_array().cloned().unwrap_or_default();
    let codec = |kind: &str| {
        streams
            .iter()
            .find(|s| s["codec_type"] == kind)
            .cloned()
            .unwrap_or_default()
    };
    let (video, audio) = (codec("video"), codec("audio"));
    assert_eq!(video["codec_name"], "h264", "{p}");
    assert_eq!(audio["codec_name"], "opus", "{p}");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(640), Some(360))
    );
    let duration = seconds(&p["format"]["duration"]);
    let (v_start, a_start) = (seconds(&video["start_time"]), seconds(&audio["start_time"]));
    let errors = decode_errors(file);
    println!(
        "recorded {name}: {duration:.2} s of H.264 640x360 and Opus for {:.2} s sent from a camera \
         whose first keyframe comes up to 2 s in; video starts at {v_start:.3} s, audio at \
         {a_start:.3} s; ffmpeg decodes it with {} errors",
        sent.as_secs_f64(),
        errors.lines().count()
    );
    assert!(
        first_video_frame_is_key(file),
        "the file starts at a keyframe"
    );
    assert!(errors.is_empty(), "ffmpeg -v error: {errors}");
    assert!(
        (v_start - a_start).abs() < 0.05,
        "audio and video start together"
    );
    // The camera's first keyframe comes within its 2 s GOP: the file holds from then on.
    let sent = sent.as_secs_f64();
    assert!(
        duration > sent - 2.5 && duration < sent + 0.5,
        "{duration:.2} s recorded of {sent:.2} s sent"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
