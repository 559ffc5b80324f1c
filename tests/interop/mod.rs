//! Helpers for the tests that drive third-party publishers (FFmpeg's WHIP muxer,
//! libdatachannel): finding the tools, guarding their processes, and reading what a
//! str0m WHEP viewer received.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wishd::client::{ClientError, ReceivedPacket, ViewerOptions, WhepViewer};
use wishd::core::MediaKind;

/// Kills the child (which the test started, by its handle) when dropped.
pub struct Tool(pub Child);

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Tool {
    /// Waits up to `timeout` for the process to exit; true if it did.
    pub async fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// The lines a child writes to one of its pipes, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    /// Starts a thread that reads `pipe` line by line until it closes.
    pub fn collect(pipe: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let out = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                out.0.lock().unwrap().push(line);
            }
        });
        lines
    }

    /// Everything so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits until a line satisfies `pred` and returns it.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.0.lock().unwrap().iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The FFmpeg 9 binary with the `whip` muxer that the PyPI package imageio-ffmpeg
/// ships (Debian's ffmpeg 5.1 has no WHIP muxer). CI installs it (.ci/run); on a dev
/// box the test fails with the install hint instead of passing silently.
pub fn ffmpeg_with_whip() -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
        ])
        .stderr(Stdio::null())
        .output();
    let path = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => String::new(),
    };
    assert!(
        !path.is_empty(),
        "FFmpeg with the WHIP muxer is missing. Install it with: python3 -m pip install imageio-ffmpeg"
    );
    let muxers = Command::new(&path)
        .args(["-hide_banner", "-muxers"])
        .output()
        .expect("run ffmpeg -muxers");
    assert!(
        String::from_utf8_lossy(&muxers.stdout).contains(" whip "),
        "{path} has no whip muxer"
    );
    path
}

/// Connects a WHEP viewer as soon as the stream has a source (409 before that).
pub async fn view_when_live(url: &str, opts: ViewerOptions, timeout: Duration) -> WhepViewer {
    let deadline = Instant::now() + timeout;
    loop {
        match WhepViewer::connect(url, opts.clone()).await {
            Ok(v) => {
                v.wait_connected(Duration::from_secs(10))
                    .await
                    .expect("viewer connects");
                return v;
            }
            Err(ClientError::Status { status: 409, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("WHEP POST to {url}: {e}"),
        }
    }
}

/// Waits until a viewer has two seconds of a publisher's media: more than 60 video
/// and 50 audio packets (H.264 and Opus from the interop publishers).
pub async fn wait_for_video_and_audio(viewer: &WhepViewer) {
    viewer
        .wait_for(Duration::from_secs(10), |p| {
            p.iter().filter(|p| p.kind == MediaKind::Video).count() > 60
                && p.iter().filter(|p| p.kind == MediaKind::Audio).count() > 50
        })
        .await
        .expect("H.264 and Opus reach the viewer");
}

/// The H.264 NAL unit types in a viewer's video payloads, in order (STAP-A opened,
/// FU-A counted once at its start fragment).
pub fn nal_types(video: &[ReceivedPacket]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in video {
        payload_nal_types(&p.payload, &mut out);
    }
    out
}

fn payload_nal_types(pl: &[u8], out: &mut Vec<u8>) {
    out.extend(wishd::wire::h264::nal_units(pl).map(|n| n.kind));
}

/// True if the payload starts an H.264 IDR picture or carries an SPS (a keyframe's
/// first packet as the publishers here send it).
pub fn is_h264_keyframe_start(payload: &[u8]) -> bool {
    let mut types = Vec::new();
    payload_nal_types(payload, &mut types);
    types.iter().any(|t| *t == 5 || *t == 7)
}

/// The H.265 NAL unit types in a viewer's video payloads, in order (RFC 7798:
/// aggregation packets opened, fragmentation units counted once at their start; no
/// DONL, as none of the senders here negotiates it).
pub fn h265_unit_types(video: &[ReceivedPacket]) -> Vec<u8> {
    let unit_type = |b: u8| (b >> 1) & 0x3f;
    let mut out = Vec::new();
    for p in video {
        let pl = &p.payload;
        let Some(&first) = pl.first() else { continue };
        match unit_type(first) {
            48 => {
                let mut i = 2;
                while let (Some(&hi), Some(&lo)) = (pl.get(i), pl.get(i + 1)) {
                    if let Some(&h) = pl.get(i + 2) {
                        out.push(unit_type(h));
                    }
                    i += 2 + usize::from(u16::from_be_bytes([hi, lo]));
                }
            }
            49 => {
                if let Some(&fu) = pl.get(2).filter(|fu| *fu & 0x80 != 0) {
                    out.push(fu & 0x3f);
                }
            }
            t => out.push(t),
        }
    }
    out
}

/// The viewer's H.265 starts decodable: VPS, SPS and PPS before the first picture
/// slice, which belongs to an IRAP picture (types 16–21: BLA, IDR, CRA).
pub fn assert_starts_vps_sps_pps_irap(video: &[ReceivedPacket], who: &str) {
    let types = h265_unit_types(video);
    let shown = &types[..types.len().min(10)];
    let first_slice = types.iter().position(|t| *t < 32);
    let ok = first_slice.is_some_and(|i| {
        (16..=21).contains(&types[i]) && [32, 33, 34].iter().all(|ps| types[..i].contains(ps))
    });
    assert!(
        ok,
        "{who}: H.265 units start with {shown:?}, not VPS (32), SPS (33), PPS (34), IRAP (16-21)"
    );
    println!("{who}: H.265 units start {shown:?}");
}

pub fn of_kind(got: &[ReceivedPacket], kind: MediaKind) -> Vec<ReceivedPacket> {
    got.iter().filter(|p| p.kind == kind).cloned().collect()
}

/// The viewer's H.264 starts decodable: SPS first, then PPS, then the first picture
/// slice is an IDR (access unit delimiters and SEI may sit in between).
pub fn assert_starts_sps_pps_idr(video: &[ReceivedPacket], who: &str) {
    let types = nal_types(video);
    let shown = &types[..types.len().min(10)];
    let first_vcl = types.iter().position(|t| (1..=5).contains(t));
    let ok = types.iter().find(|t| !matches!(t, 6 | 9)) == Some(&7)
        && first_vcl.is_some_and(|i| types[i] == 5 && types[..i].contains(&8));
    assert!(
        ok,
        "{who}: NAL sequence starts with {shown:?}, not SPS, PPS, IDR"
    );
}

/// Arrival of the packet that completes the first picture (marker bit on the first
/// timestamp), i.e. when the viewer can decode its first frame.
pub fn first_picture_complete(video: &[ReceivedPacket]) -> Option<Instant> {
    let first = video.first()?;
    video
        .iter()
        .find(|p| p.timestamp == first.timestamp && p.marker)
        .map(|p| p.at)
}

/// The RTP timestamps (in arrival order, deduplicated) of the keyframes a viewer got,
/// with the arrival of each one's first packet.
pub fn keyframes(video: &[ReceivedPacket]) -> Vec<(u32, Instant)> {
    let mut out: Vec<(u32, Instant)> = Vec::new();
    for p in video {
        if is_h264_keyframe_start(&p.payload) && !out.iter().any(|(ts, _)| *ts == p.timestamp) {
            out.push((p.timestamp, p.at));
        }
    }
    out
}

/// The sequence numbers of the first picture are gapless (no hole to conceal).
pub fn first_picture_is_whole(video: &[ReceivedPacket]) -> bool {
    let Some(first) = video.first() else {
        return false;
    };
    let mut seqs: Vec<u64> = video
        .iter()
        .filter(|p| p.timestamp == first.timestamp)
        .map(|p| p.seq)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs.len() as u64 == seqs[seqs.len() - 1] - seqs[0] + 1
}

/// ffmpeg with libx265 sending H.265 over RTP to `port`, a keyframe every 30 frames
/// (1 s), for 8 s, as a camera sends it; with `sdp_file`, ffmpeg writes its session
/// description there.
pub fn h265_camera(port: u16, sdp_file: Option<&std::path::Path>) -> Tool {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-loglevel", "error", "-re", "-f", "lavfi"])
        .args(["-i", "testsrc2=size=320x180:rate=30", "-t", "8"])
        .args([
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-x265-params",
            "keyint=30:min-keyint=30:bframes=0:log-level=error",
        ])
        .args(["-payload_type", "96"]);
    if let Some(path) = sdp_file {
        cmd.arg("-sdp_file").arg(path);
    }
    cmd.args(["-f", "rtp"])
        .arg(format!("rtp://127.0.0.1:{port}?pkt_size=1200"))
        .stdout(Stdio::null());
    Tool(cmd.spawn().expect("ffmpeg starts (apt-get install ffmpeg)"))
}
