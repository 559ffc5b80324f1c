//! What recording costs, without a network: a synthetic H.264 + Opus stream of a given
//! bit rate goes through the recorder's writer into a file, as fast as it can, on
//! the calling thread (`benches/record.rs` prints the figures).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::media::MediaKind;

use super::Writer;
use crate::config::RecordEntry;
use crate::core::SourcePacket;
use crate::model::CodecKind;

/// What one run measured.
#[derive(Debug, Clone)]
pub struct RecordBench {
    /// Seconds of media written.
    pub media_secs: f64,
    /// Packets fed (video and audio).
    pub packets: u64,
    /// Time the writer took, on this thread.
    pub spent: Duration,
    /// Bytes it wrote.
    pub bytes_written: u64,
    /// The most sample bytes it held at once before writing them.
    pub peak_buffered: usize,
}

fn packet(
    kind: MediaKind,
    codec: CodecKind,
    seq: u64,
    ts: u32,
    marker: bool,
    at: Instant,
    payload: Vec<u8>,
) -> SourcePacket {
    SourcePacket {
        kind,
        codec,
        pt: if kind == MediaKind::Video { 96 } else { 111 },
        seq,
        timestamp: ts,
        marker,
        keyframe_start: false,
        epoch: 0,
        layer: 0,
        arrival: at,
        wallclock: at,
        payload: Arc::from(payload),
    }
}

/// Writes `media_secs` of a stream of `video_bitrate` bit/s (30 frames/s, a keyframe
/// every 2 s five times a delta's size, FU-A packets of 1200 bytes) and 64 kbit/s
/// Opus (20 ms packets) into files under `dir` with 60 s segments.
pub fn run(dir: &Path, media_secs: u32, video_bitrate: u64) -> RecordBench {
    let rule = RecordEntry {
        stream: "bench".into(),
        directory: dir.to_path_buf(),
        ..RecordEntry::default()
    };
    let tracks = super::Tracks {
        audio: Some((
            crate::model::CodecKind::Opus,
            super::fmp4::AudioInit::Opus { channels: 2 },
        )),
        video: true,
    };
    let mut w = Writer::new(dir.join("bench"), "bench".into(), rule, tracks);
    let sps = vec![
        0x67, 0x42, 0xc0, 0x1f, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04,
        0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20,
    ];
    let pps = vec![0x68, 0xce, 0x3c, 0x80];
    let start = Instant::now();
    let (mut vseq, mut aseq, mut packets) = (0u64, 0u64, 0u64);
    let delta = (video_bitrate / 8 / 34) as usize;
    let mut spent = Duration::ZERO;
    let mut peak = 0;
    let feed = |w: &mut Writer, p: SourcePacket, spent: &mut Duration| {
        let t = Instant::now();
        let _ = w.packet(&Arc::new(p));
        *spent += t.elapsed();
    };
    for frame in 0..(media_secs * 30) {
        let at = start + Duration::from_micros(u64::from(frame) * 33_333);
        let ts = frame.wrapping_mul(3000);
        let key = frame % 60 == 0;
        let size = if key { delta * 5 } else { delta };
        let mut nal = vec![if key { 0x65 } else { 0x41 }];
        nal.resize(size.max(2), 0x5a);
        if key {
            let mut stap = vec![0x78];
            for u in [&sps, &pps] {
                stap.extend_from_slice(&(u.len() as u16).to_be_bytes());
                stap.extend_from_slice(u);
            }
            feed(
                &mut w,
                packet(MediaKind::Video, CodecKind::H264, vseq, ts, false, at, stap),
                &mut spent,
            );
            vseq += 1;
            packets += 1;
        }
        let body = &nal[1..];
        let chunks: Vec<&[u8]> = body.chunks(1200).collect();
        for (i, c) in chunks.iter().enumerate() {
            let (first, last) = (i == 0, i + 1 == chunks.len());
            let mut p = vec![
                0x7c,
                (nal[0] & 0x1f) | if first { 0x80 } else { 0 } | if last { 0x40 } else { 0 },
            ];
            p.extend_from_slice(c);
            feed(
                &mut w,
                packet(MediaKind::Video, CodecKind::H264, vseq, ts, last, at, p),
                &mut spent,
            );
            vseq += 1;
            packets += 1;
        }
        // Audio: 20 ms packets up to this frame's time.
        while aseq * 20_000 < u64::from(frame) * 33_333 {
            let at = start + Duration::from_micros(aseq * 20_000);
            let p = packet(
                MediaKind::Audio,
                CodecKind::Opus,
                aseq,
                (aseq as u32).wrapping_mul(960),
                true,
                at,
                vec![0xfc; 160],
            );
            feed(&mut w, p, &mut spent);
            aseq += 1;
            packets += 1;
        }
        let held: usize = w
            .video
            .run
            .iter()
            .chain(&w.audio.run)
            .map(|s| s.data.len())
            .sum();
        peak = peak.max(held);
    }
    let t = Instant::now();
    let _ = w.finish();
    spent += t.elapsed();
    let bytes_written = std::fs::read_dir(dir.join("bench"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    RecordBench {
        media_secs: f64::from(media_secs),
        packets,
        spent,
        bytes_written,
        peak_buffered: peak,
    }
}
