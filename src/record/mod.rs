//! Recording: a stream's packets, as its source sends them, written to standard files
//! without decoding.
//!
//! A `[[record]]` rule names streams (a name or a glob), a directory and a segment
//! length. When a matching stream gets its source, its packets are also offered to a
//! recorder through a bounded queue ([`RecorderTap`]): the media path never waits for
//! a disk, and what a full queue refuses is dropped and counted. The recorder runs on
//! its own thread (file I/O blocks), turns packets back into samples ([`depack`]) and
//! writes fragmented MP4 ([`fmp4`]): one file per segment, each starting at a
//! keyframe with its own initialisation, named by stream and UTC start time, and
//! playable up to its last fragment while it is written.
//!
//! Time: each track's samples are placed by their RTP timestamps, anchored on the
//! capture instant wishd derives from the source's RTCP sender reports (arrival for
//! a camera that sends none), so audio and video line up as the source captured them.
//! A source that comes back (a publisher reconnecting within its grace period) opens
//! a new file at its first keyframe; its outage is in neither file.

#[doc(hidden)]
pub mod bench;
pub(crate) mod depack;
pub(crate) mod fmp4;
mod g711;
pub(crate) mod webm;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use str0m::media::MediaKind;
use tracing::{info, warn};

use crate::config::RecordEntry;
use crate::core::SourcePacket;
use crate::directory::{NewStreamHook, RecorderTap, RecordingStatus, Stream};
use crate::model::CodecKind;
use depack::{Described, Frames, H264Frames, H265Frames, Payloads, Picture, Sample};
use fmp4::{AudioInit, FragmentSample, TrackRun, VideoInit};

/// One codec's pictures, put back together.
trait Depack: std::fmt::Debug + Send {
    fn packet(&mut self, seq: u64, ts: u32, marker: bool, payload: &[u8]) -> Option<Sample>;
    fn described(&self) -> Option<&Described>;
}

impl<P: Picture + Send> Depack for Frames<P> {
    fn packet(&mut self, seq: u64, ts: u32, marker: bool, payload: &[u8]) -> Option<Sample> {
        Frames::packet(self, seq, ts, marker, payload)
    }

    fn described(&self) -> Option<&Described> {
        Frames::described(self)
    }
}

/// The video's pictures, as its codec packs them.
#[derive(Debug)]
struct Pictures {
    codec: CodecKind,
    frames: Box<dyn Depack>,
}

impl Pictures {
    fn new(codec: CodecKind) -> Pictures {
        let frames: Box<dyn Depack> = match codec {
            CodecKind::H265 => Box::new(H265Frames::default()),
            CodecKind::Vp8 => Box::new(Frames::<Payloads<depack::Vp8>>::default()),
            CodecKind::Vp9 => Box::new(Frames::<Payloads<depack::Vp9>>::default()),
            CodecKind::Av1 => Box::new(Frames::<Payloads<depack::Av1>>::default()),
            _ => Box::new(H264Frames::default()),
        };
        Pictures { codec, frames }
    }

    /// The container its files are: WebM for VP8 (MP4 players do not take it), MP4
    /// for the rest.
    fn format(&self) -> Format {
        if self.codec == CodecKind::Vp8 {
            Format::WebM
        } else {
            Format::Mp4
        }
    }

    /// The sample entry what the pictures described so far makes, if it is all there.
    fn init(&self) -> Option<VideoInit> {
        let size = |s: Option<(u32, u32)>| {
            let (w, h) = s.unwrap_or((0, 0));
            (
                w.min(u32::from(u16::MAX)) as u16,
                h.min(u32::from(u16::MAX)) as u16,
            )
        };
        Some(match (self.codec, self.frames.described()?) {
            (CodecKind::H265, Described::ParameterSets([Some(vps), Some(sps), Some(pps)])) => {
                let (width, height) = size(crate::core::h265_sps_size(sps));
                VideoInit::H265 {
                    vps: vps.clone(),
                    sps: sps.clone(),
                    pps: pps.clone(),
                    width,
                    height,
                }
            }
            (CodecKind::H264, Described::ParameterSets([Some(sps), Some(pps), _])) => {
                let (width, height) = size(crate::core::frame_size(CodecKind::H264, sps));
                VideoInit::H264 {
                    sps: sps.clone(),
                    pps: pps.clone(),
                    width,
                    height,
                }
            }
            (_, Described::Vp8 { width, height }) => VideoInit::Vp8 {
                width: *width,
                height: *height,
            },
            (_, Described::Vp9(info)) => VideoInit::Vp9(info.clone()),
            (
                _,
                Described::Av1 {
                    sequence_header,
                    config,
                },
            ) => VideoInit::Av1 {
                sequence_header: sequence_header.clone(),
                config: config.clone(),
            },
            _ => return None,
        })
    }
}

/// A file's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Mp4,
    WebM,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Mp4 => "mp4",
            Format::WebM => "webm",
        }
    }
}

/// Packets a recorder may have waiting: about 10 s of a 2.5 Mbit/s stream.
const QUEUE: usize = 4096;

/// A fragment is written at each keyframe, and at least this often.
const FRAGMENT: Duration = Duration::from_secs(1);

/// Counters of every recording, for `/metrics`.
#[derive(Debug, Default)]
pub struct RecordCounters {
    /// Recordings running now.
    pub active: AtomicU64,
    /// Recordings that stopped because they could not write.
    pub failed: AtomicU64,
    /// Files opened.
    pub files: AtomicU64,
    /// Packets recorders' queues refused.
    pub dropped: Arc<AtomicU64>,
}

/// The recording rules and the recordings they started.
#[derive(Debug, Default)]
pub(crate) struct Recordings {
    rules: Vec<RecordEntry>,
    running: Mutex<Vec<Running>>,
    /// What every recording counts, for `/metrics`.
    pub(crate) counters: Arc<RecordCounters>,
}

#[derive(Debug)]
struct Running {
    stream: Weak<Stream>,
    thread: std::thread::JoinHandle<()>,
}

impl Recordings {
    pub(crate) fn new(rules: Vec<RecordEntry>) -> Recordings {
        Recordings {
            rules,
            running: Mutex::default(),
            counters: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl NewStreamHook for Recordings {
    fn new_stream(&self, stream: &Arc<Stream>, codecs: &[crate::sdp::ChosenCodec]) {
        self.attach(stream, Tracks::of(codecs));
    }
}

/// What a stream's source sends that a file can hold.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tracks {
    /// The audio codec (Opus, PCMU or PCMA) and its sample entry.
    pub(crate) audio: Option<(CodecKind, AudioInit)>,
    /// Video of a codec files take (H.264, H.265, VP8, VP9, AV1).
    pub(crate) video: bool,
}

impl Tracks {
    pub(crate) fn of(codecs: &[crate::sdp::ChosenCodec]) -> Tracks {
        let kind = |c: &crate::sdp::ChosenCodec| CodecKind::of_name(&c.codec.name);
        let audio = codecs
            .iter()
            .filter(|c| c.kind == MediaKind::Audio)
            .find_map(|c| match kind(c) {
                // WebRTC's Opus is always described with two channels (RFC 7587).
                CodecKind::Opus => Some((CodecKind::Opus, AudioInit::Opus { channels: 2 })),
                k @ (CodecKind::Pcmu | CodecKind::Pcma) => Some((
                    k,
                    AudioInit::Pcm {
                        rate: c.codec.clock_rate,
                    },
                )),
                _ => None,
            });
        Tracks {
            audio,
            video: codecs.iter().any(|c| {
                c.kind == MediaKind::Video
                    && matches!(
                        kind(c),
                        CodecKind::H264
                            | CodecKind::H265
                            | CodecKind::Vp8
                            | CodecKind::Vp9
                            | CodecKind::Av1
                    )
            }),
        }
    }
}

impl Recordings {
    /// The rule that names `stream`, if any: the first.
    fn rule_for(&self, stream: &str) -> Option<&RecordEntry> {
        self.rules
            .iter()
            .find(|r| crate::auth::glob_match(&r.stream, stream))
    }

    /// A stream got its source: it is recorded when a rule names it and records
    /// always.
    pub(crate) fn attach(&self, stream: &Arc<Stream>, tracks: Tracks) {
        if let Some(rule) = self.rule_for(&stream.name).filter(|r| r.always) {
            self.spawn(stream, rule.clone(), tracks);
        }
    }

    /// Starts recording `stream` now (`POST /api/streams/{name}/recording`).
    pub(crate) fn start(&self, stream: &Arc<Stream>, tracks: Tracks) -> Result<(), RecordingError> {
        let rule = self
            .rule_for(&stream.name)
            .ok_or_else(|| RecordingError::NoRule(stream.name.to_string()))?;
        if stream
            .recording()
            .is_some_and(|r| matches!(r.get().state, "waiting" | "recording"))
        {
            return Err(RecordingError::AlreadyRecording(stream.name.to_string()));
        }
        self.spawn(stream, rule.clone(), tracks);
        Ok(())
    }

    /// Stops recording `stream` (`DELETE /api/streams/{name}/recording`): the recorder
    /// writes what it has and closes its file.
    pub(crate) fn stop(&self, stream: &Stream) -> Result<(), RecordingError> {
        if stream.recording().is_none() {
            return Err(RecordingError::NotRecording(stream.name.to_string()));
        }
        stream.set_recorder(None);
        info!(stream = %stream.name, "recording stopped by the operator");
        Ok(())
    }

    /// Every recorded file under the rules' directories, oldest first by name within
    /// each stream. Blocking (it reads directories).
    pub(crate) fn files(&self) -> Vec<RecordedFile> {
        let mut dirs: Vec<&Path> = self.rules.iter().map(|r| r.directory.as_path()).collect();
        dirs.sort();
        dirs.dedup();
        let mut out = Vec::new();
        for dir in dirs {
            let Ok(streams) = std::fs::read_dir(dir) else {
                continue;
            };
            for s in streams.flatten() {
                let name = s.file_name().to_string_lossy().into_owned();
                if !crate::model::valid_stream_name(&name) || self.rule_for(&name).is_none() {
                    continue;
                }
                out.extend(files_in(&s.path(), &name));
            }
        }
        out.sort_by(|a, b| (&a.stream, &a.name).cmp(&(&b.stream, &b.name)));
        out
    }

    /// One recorded file, by stream and file name. Blocking.
    pub(crate) fn file(&self, stream: &str, name: &str) -> Result<RecordedFile, RecordingError> {
        if !crate::model::valid_stream_name(stream) || !valid_file_name(name) {
            return Err(RecordingError::NoSuchFile);
        }
        let rule = self.rule_for(stream).ok_or(RecordingError::NoSuchFile)?;
        let path = rule.directory.join(stream).join(name);
        let meta = std::fs::metadata(&path).map_err(|_| RecordingError::NoSuchFile)?;
        Ok(RecordedFile::new(stream, name.to_owned(), path, &meta))
    }

    fn spawn(&self, stream: &Arc<Stream>, rule: RecordEntry, tracks: Tracks) {
        let (tx, rx) = sync_channel(QUEUE);
        let dir = rule.directory.join(&*stream.name);
        let name = stream.name.to_string();
        let status = Arc::new(RecordingStatus::default());
        status.update(|s| s.state = "waiting");
        let counters = self.counters.clone();
        let (st, co) = (status.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name(format!("record {name}"))
            .spawn(move || {
                co.active.fetch_add(1, Ordering::Relaxed);
                record(rx, &dir, &name, rule, tracks, &st, &co);
                co.active.fetch_sub(1, Ordering::Relaxed);
            });
        match thread {
            Ok(thread) => {
                stream.set_recorder(Some(Arc::new(RecorderTap::new(
                    tx,
                    status,
                    counters.dropped.clone(),
                ))));
                let mut running = self.lock();
                running.retain(|r| !r.thread.is_finished());
                running.push(Running {
                    stream: Arc::downgrade(stream),
                    thread,
                });
            }
            Err(e) => warn!(stream = %stream.name, "recording not started: {e}"),
        }
    }

    /// Ends every recording (shutdown): each writes what it has and closes its file.
    pub(crate) fn stop_all(&self) -> Vec<std::thread::JoinHandle<()>> {
        self.lock()
            .drain(..)
            .map(|r| {
                if let Some(s) = r.stream.upgrade() {
                    s.set_recorder(None);
                }
                r.thread
            })
            .collect()
    }
}

/// Why a recording request of the API cannot be done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordingError {
    #[error("no [[record]] rule names stream {0}")]
    NoRule(String),
    #[error("stream {0} is being recorded already")]
    AlreadyRecording(String),
    #[error("stream {0} is not being recorded")]
    NotRecording(String),
    #[error("no such recording")]
    NoSuchFile,
}

/// A recorded file, as the API lists it.
#[derive(Debug, Clone)]
pub(crate) struct RecordedFile {
    pub(crate) stream: String,
    pub(crate) name: String,
    pub(crate) bytes: u64,
    pub(crate) modified: SystemTime,
    pub(crate) path: PathBuf,
}

impl RecordedFile {
    /// What its bytes are, for `Content-Type`.
    pub(crate) fn content_type(&self) -> &'static str {
        if self.name.ends_with(".webm") {
            "video/webm"
        } else {
            "video/mp4"
        }
    }

    /// When its first picture was captured, as its name (`STREAM_` then RFC 3339
    /// with `-` for `:`, then the extension) says.
    pub(crate) fn started(&self) -> Option<SystemTime> {
        let (_, stamp) = self.name.rsplit_once('_')?;
        let (stamp, _) = stamp.rsplit_once('.')?;
        // YYYY-MM-DDTHH-MM-SS.mmmZ: the two dashes of the time were colons.
        let mut t = stamp.as_bytes().to_vec();
        for i in [13, 16] {
            if let Some(c) = t.get_mut(i)
                && *c == b'-'
            {
                *c = b':';
            }
        }
        humantime::parse_rfc3339(std::str::from_utf8(&t).ok()?).ok()
    }

    fn new(stream: &str, name: String, path: PathBuf, meta: &std::fs::Metadata) -> Self {
        RecordedFile {
            stream: stream.to_owned(),
            name,
            bytes: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            path,
        }
    }
}

/// A file name wishd writes: `STREAM_TIME.mp4` or `.webm`, nothing that could leave
/// its folder.
fn valid_file_name(name: &str) -> bool {
    (name.ends_with(".mp4") || name.ends_with(".webm"))
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        && !name.starts_with('.')
}

/// The recordings in one stream's folder.
fn files_in(dir: &Path, stream: &str) -> Vec<RecordedFile> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e.metadata().ok()?;
            (valid_file_name(&name) && meta.is_file())
                .then(|| RecordedFile::new(stream, name, e.path(), &meta))
        })
        .collect()
}

/// Deletes the oldest files of `rule` (every stream folder it names) older than its
/// `max_age`, then while they add up to more than its `max_bytes`; never `keep` (the
/// file being written). What it deleted.
pub(crate) fn enforce_retention(rule: &RecordEntry, keep: &Path, now: SystemTime) -> Vec<PathBuf> {
    if rule.max_age.is_none() && rule.max_bytes.is_none() {
        return Vec::new();
    }
    let mut files: Vec<RecordedFile> = std::fs::read_dir(&rule.directory)
        .map(|d| {
            d.flatten()
                .filter_map(|s| {
                    let name = s.file_name().to_string_lossy().into_owned();
                    crate::auth::glob_match(&rule.stream, &name).then(|| files_in(&s.path(), &name))
                })
                .flatten()
                .collect()
        })
        .unwrap_or_default();
    // Oldest first: by the start time each name carries.
    files.sort_by(|a, b| a.name.rsplit('_').next().cmp(&b.name.rsplit('_').next()));
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut deleted = Vec::new();
    for f in files {
        if f.path == keep {
            continue;
        }
        let too_old = rule
            .max_age
            .is_some_and(|age| now.duration_since(f.modified).is_ok_and(|d| d > age));
        let too_big = rule.max_bytes.is_some_and(|max| total > max);
        if !(too_old || too_big) {
            continue;
        }
        match std::fs::remove_file(&f.path) {
            Ok(()) => {
                total = total.saturating_sub(f.bytes);
                info!(path = %f.path.display(), "recording deleted (retention)");
                deleted.push(f.path);
            }
            Err(e) => warn!(path = %f.path.display(), "recording not deleted (retention): {e}"),
        }
    }
    deleted
}

/// The recorder thread: packets in until the stream lets go of its tap. A write that
/// fails stops the recording (one log line, the state, a counter); the stream's
/// viewers never notice.
fn record(
    rx: Receiver<Arc<SourcePacket>>,
    dir: &Path,
    stream: &str,
    rule: RecordEntry,
    tracks: Tracks,
    status: &RecordingStatus,
    counters: &RecordCounters,
) {
    let mut w = Writer::new(dir.to_path_buf(), stream.to_owned(), rule, tracks);
    let failed = |e: RecordError| {
        warn!(stream, dir = %dir.display(), "recording stopped: {e}");
        counters.failed.fetch_add(1, Ordering::Relaxed);
        status.update(|s| {
            s.state = "failed";
            s.error = Some(e.to_string());
        });
    };
    while let Ok(pkt) = rx.recv() {
        let before = w.files;
        if let Err(e) = w.packet(&pkt) {
            failed(e);
            return;
        }
        if w.files != before {
            counters.files.fetch_add(1, Ordering::Relaxed);
            let (file, started) = w.file.as_ref().map(|f| (f.path.clone(), f.wall)).unzip();
            status.update(|s| {
                s.state = "recording";
                s.file = file;
                s.started = started;
                s.files = w.files;
            });
        }
    }
    match w.finish() {
        Ok(()) => status.update(|s| s.state = "finished"),
        Err(e) => failed(e),
    }
}

/// Why a recording stopped.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("MP4: {0}")]
    Mp4(#[from] mp4_atom::Error),
    #[error("WebM: {0}")]
    WebM(#[from] webm_iterable::errors::TagWriterError),
}

/// One track's timeline: RTP timestamps, unwrapped, anchored on a capture instant.
#[derive(Debug, Default)]
struct Timeline {
    /// (capture instant, extended timestamp) of the anchor packet, its epoch, and
    /// whether its instant came from the source's sender reports.
    anchor: Option<(Instant, i64, u32, bool)>,
    /// The last timestamp seen, unwrapped.
    last: Option<i64>,
    /// The last decode time given, to keep the timeline from going back.
    last_dts: Option<i64>,
}

impl Timeline {
    /// The decode time of a packet (timestamp `ts`, capture instant `at`, source
    /// epoch `epoch`) on the recording's clock in units of `rate` Hz, counted from
    /// `origin`. `synced`: `at` comes from the source's sender reports (until the
    /// first report, a packet's instant is its arrival); the timeline is anchored
    /// again once, when the reports begin, so that it lines up with the other track's.
    fn dts(
        &mut self,
        ts: u32,
        at: Instant,
        epoch: u32,
        origin: Instant,
        rate: u32,
        synced: bool,
    ) -> i64 {
        let ext = match self.last {
            Some(last) => last + i64::from(ts.wrapping_sub(last as u32) as i32),
            None => i64::from(ts),
        };
        self.last = Some(ext);
        if self
            .anchor
            .is_none_or(|(_, _, e, was_synced)| e != epoch || (synced && !was_synced))
        {
            self.anchor = Some((at, ext, epoch, synced));
        }
        let Some((anchor_at, anchor_ts, _, _)) = self.anchor else {
            return 0;
        };
        let since = signed_nanos(origin, anchor_at);
        let mut dts = since * i64::from(rate) / 1_000_000_000 + (ext - anchor_ts);
        if let Some(prev) = self.last_dts
            && dts < prev
        {
            // A new source's first packets can land before the old one's last: go on.
            dts = prev;
        }
        self.last_dts = Some(dts);
        dts
    }
}

/// A completed sample waiting for the next one (which gives its duration).
#[derive(Debug)]
struct Pending {
    dts: i64,
    sample: Sample,
}

#[derive(Debug, Default)]
struct Track {
    timeline: Timeline,
    pending: Option<Pending>,
    /// Samples of the fragment being gathered.
    run: Vec<FragmentSample>,
    /// The decode time of the run's first sample, on the file's clock.
    run_start: Option<i64>,
    /// The last duration written (for the last sample of a file).
    last_duration: u32,
}

/// The file being written.
#[derive(Debug)]
struct Segment {
    file: std::fs::File,
    path: PathBuf,
    /// The recording clock's time (video units) where this file's timeline starts.
    base_video: i64,
    started: Instant,
    /// `started` on the wall clock.
    wall: SystemTime,
    sequence: u32,
    format: Format,
    /// Whether the file has an audio track (WebM takes no G.711).
    with_audio: bool,
    /// Where the file's duration is written when it is finished (WebM, whose
    /// readers find it nowhere else).
    duration_at: Option<u64>,
    /// The end of its last video sample, in video units from its start.
    end: i64,
}

impl Segment {
    /// The file is complete: its duration goes where its header left room.
    fn close(self, stream: &str) -> Result<(), RecordError> {
        if let Some(at) = self.duration_at {
            let ms = self.end as f64 * 1000.0 / f64::from(fmp4::VIDEO_TIMESCALE);
            std::os::unix::fs::FileExt::write_all_at(&self.file, &webm::duration(ms), at)?;
        }
        info!(stream, path = %self.path.display(), "recording segment closed");
        Ok(())
    }
}

struct Writer {
    /// What the stream sends (its files have an audio track only with audio).
    tracks: Tracks,
    dir: PathBuf,
    stream: String,
    rule: RecordEntry,
    /// The recording's time zero: the capture instant of its first keyframe.
    origin: Option<Instant>,
    pictures: Pictures,
    video: Track,
    audio: Track,
    file: Option<Segment>,
    /// Files opened so far.
    files: u64,
    last_flush: Option<Instant>,
    /// The source epoch of the last video: a new source starts a new file.
    video_epoch: Option<u32>,
    audio_epoch: Option<u32>,
    /// A new source has not had its file yet: its pictures wait for its first
    /// keyframe whose parameter sets are known.
    new_source: bool,
    /// The timestamp of the picture being received and its first packet's time.
    picture_at: Option<(u32, Instant)>,
    /// The last complete picture's capture instant and decode time.
    latest_picture: Option<(Instant, i64)>,
    /// Audio that came before the first keyframe was complete: some of it was
    /// captured with that keyframe (whose packets take a while to arrive).
    early_audio: std::collections::VecDeque<Arc<SourcePacket>>,
    /// The latest picture's instant came from the source's sender reports.
    video_synced: bool,
    /// Since when audio without its sender reports waits for them.
    unsynced_audio_since: Option<Instant>,
}

impl Writer {
    /// The audio codec the files take.
    fn audio_codec(&self) -> Option<CodecKind> {
        self.tracks.audio.map(|(c, _)| c)
    }

    /// The audio track's clock rate.
    fn audio_rate(&self) -> u32 {
        self.tracks
            .audio
            .map_or(fmp4::AUDIO_TIMESCALE, |(_, a)| a.timescale())
    }

    fn new(dir: PathBuf, stream: String, rule: RecordEntry, tracks: Tracks) -> Writer {
        Writer {
            tracks,
            early_audio: std::collections::VecDeque::new(),
            video_synced: false,
            unsynced_audio_since: None,
            dir,
            stream,
            rule,
            origin: None,
            pictures: Pictures::new(CodecKind::H264),
            video: Track::default(),
            audio: Track::default(),
            file: None,
            files: 0,
            last_flush: None,
            video_epoch: None,
            audio_epoch: None,
            new_source: false,
            picture_at: None,
            latest_picture: None,
        }
    }

    fn packet(&mut self, pkt: &Arc<SourcePacket>) -> Result<(), RecordError> {
        match (pkt.kind, pkt.codec) {
            (
                MediaKind::Video,
                CodecKind::H264
                | CodecKind::H265
                | CodecKind::Vp8
                | CodecKind::Vp9
                | CodecKind::Av1,
            ) if pkt.layer == 0 => {
                // (The first packet of a codec other than H.264 comes here as a codec
                // change too.)
                if self
                    .video_epoch
                    .replace(pkt.epoch)
                    .is_some_and(|e| e != pkt.epoch)
                    || self.pictures.codec != pkt.codec
                {
                    // A new source (a publisher back within its grace period, a
                    // camera rebooted): its numbering starts afresh, and its
                    // parameter sets may differ, so its first keyframe opens a file.
                    self.pictures = Pictures::new(pkt.codec);
                    self.new_source = true;
                    // The new source's audio is placed against its own pictures.
                    self.latest_picture = None;
                    self.unsynced_audio_since = None;
                    // The old source's last picture lasts as long as the one before
                    // it, not across the outage.
                    close_pending(&mut self.video);
                    self.write_fragment()?;
                }
                // A picture's time is that of its first packet: a keyframe's last
                // packet leaves the encoder's pacer well after it was captured.
                if self.picture_at.is_none_or(|(ts, _)| ts != pkt.timestamp) {
                    self.picture_at = Some((pkt.timestamp, pkt.wallclock));
                    // Mapped from sender reports (earlier than its arrival), or not.
                    self.video_synced = pkt.wallclock < pkt.arrival;
                }
                let Some(sample) =
                    self.pictures
                        .frames
                        .packet(pkt.seq, pkt.timestamp, pkt.marker, &pkt.payload)
                else {
                    return Ok(());
                };
                let at = match self.picture_at {
                    Some((ts, at)) if ts == sample.timestamp => at,
                    _ => pkt.wallclock,
                };
                if self.origin.is_none() {
                    if !sample.keyframe {
                        return Ok(());
                    }
                    self.origin = Some(at);
                }
                let origin = self.origin.unwrap_or(at);
                let first = self.latest_picture.is_none();
                // The video is the reference: its timeline is anchored once per
                // source, on its first keyframe.
                let dts = self.video.timeline.dts(
                    sample.timestamp,
                    at,
                    pkt.epoch,
                    origin,
                    fmp4::VIDEO_TIMESCALE,
                    false,
                );
                self.latest_picture = Some((at, dts));
                self.video_sample(dts, sample, at)?;
                if first {
                    for early in std::mem::take(&mut self.early_audio) {
                        self.packet(&early)?;
                    }
                }
                Ok(())
            }
            (MediaKind::Audio, codec) if self.audio_codec() != Some(codec) => Ok(()),
            (MediaKind::Audio, _)
                if self.tracks.video
                    && (self.latest_picture.is_none() || self.video_epoch != Some(pkt.epoch)) =>
            {
                // Held until the source's first keyframe is complete (2 s of it at
                // most): it is placed against that picture.
                if self.early_audio.len() >= 100 {
                    self.early_audio.pop_front();
                }
                self.early_audio.push_back(pkt.clone());
                Ok(())
            }
            (MediaKind::Audio, codec) => {
                if self
                    .audio_epoch
                    .replace(pkt.epoch)
                    .is_some_and(|e| e != pkt.epoch)
                {
                    close_pending(&mut self.audio);
                }
                if self.origin.is_none() && !self.tracks.video {
                    self.origin = Some(pkt.wallclock);
                }
                let Some(origin) = self.origin else {
                    return Ok(());
                };
                // Audio is placed against the latest picture, both mapped onto this
                // server's clock as they are now: the mapping may have moved since
                // the origin was taken (a report that came late moves it for every
                // track at once), which keeps tracks in step only with each other.
                let at = match self.latest_picture {
                    Some((picture_at, picture_dts)) => {
                        let nanos = picture_dts * 1_000_000_000 / i64::from(fmp4::VIDEO_TIMESCALE)
                            + signed_nanos(picture_at, pkt.wallclock);
                        shift(origin, nanos)
                    }
                    None => pkt.wallclock,
                };
                // A mapped instant is earlier than the arrival; an unmapped one is
                // the arrival itself.
                let synced = pkt.wallclock < pkt.arrival;
                if !synced && self.video_synced && self.audio.timeline.anchor.is_none() {
                    // The video's sender reports came and the audio's not yet: placed
                    // by its arrival, the audio would be off by the mapping's margin.
                    // Its report comes a moment later; unless it never does.
                    let since = *self.unsynced_audio_since.get_or_insert(pkt.arrival);
                    if pkt.arrival.saturating_duration_since(since) < Duration::from_secs(1) {
                        return Ok(());
                    }
                }
                let rate = self.audio_rate();
                let dts =
                    self.audio
                        .timeline
                        .dts(pkt.timestamp, at, pkt.epoch, origin, rate, synced);
                // A G.711 byte is a sample: a packet that began before the file's
                // first picture keeps its samples from that picture on (cameras send
                // up to 128 ms a packet). An Opus packet cannot be cut: it is left out.
                let before = usize::try_from(-dts).unwrap_or(0);
                let pcm = match codec {
                    CodecKind::Pcmu => Some(g711::mu_law_to_pcm as fn(&[u8]) -> Vec<u8>),
                    CodecKind::Pcma => Some(g711::a_law_to_pcm as fn(&[u8]) -> Vec<u8>),
                    _ => None,
                };
                let (data, duration, dts) = match pcm {
                    Some(expand) if before < pkt.payload.len() => {
                        let kept = pkt.payload.get(before..).unwrap_or_default();
                        (expand(kept), kept.len(), dts.max(0))
                    }
                    // Opus's 20 ms, the packet time WebRTC uses.
                    None if dts >= 0 => (pkt.payload.to_vec(), 960, dts),
                    _ => return Ok(()),
                };
                let sample = Sample {
                    data,
                    timestamp: pkt.timestamp,
                    keyframe: true,
                };
                push(&mut self.audio, dts, sample, duration.max(1) as u32);
                if !self.tracks.video {
                    // Audio alone: any packet may begin a file.
                    let due = self.file.as_ref().is_none_or(|f| {
                        pkt.wallclock.saturating_duration_since(f.started) >= self.rule.segment
                    });
                    if due {
                        let at_video = dts * i64::from(fmp4::VIDEO_TIMESCALE) / i64::from(rate);
                        self.open_segment(at_video, pkt.wallclock, None)?;
                    }
                    self.maybe_flush(pkt.wallclock)?;
                }
                Ok(())
            }
            // Other codecs are not recorded yet; simulcast records its first layer.
            _ => Ok(()),
        }
    }

    fn video_sample(&mut self, dts: i64, sample: Sample, at: Instant) -> Result<(), RecordError> {
        let keyframe = sample.keyframe;
        if keyframe {
            // Everything before this keyframe goes out, then perhaps a new file.
            self.flush_pending_before(dts)?;
            let rotate = self.new_source
                || self
                    .file
                    .as_ref()
                    .is_none_or(|f| at.saturating_duration_since(f.started) >= self.rule.segment);
            if rotate {
                match self.pictures.init() {
                    Some(video) => {
                        self.new_source = false;
                        self.open_segment(dts, at, Some(video))?;
                    }
                    // Not described yet (a keyframe without its parameter sets): a
                    // file begins at one that is; the same source goes on in its own.
                    None if self.new_source || self.file.is_none() => return Ok(()),
                    None => {}
                }
            }
        } else if self.new_source {
            // A new source's pictures begin at its first file, never in the old one.
            return Ok(());
        }
        push(&mut self.video, dts, sample, 3000);
        if !keyframe {
            self.maybe_flush(at)?;
        }
        Ok(())
    }

    /// Writes a fragment of everything complete before `dts` (the next keyframe's).
    fn flush_pending_before(&mut self, dts: i64) -> Result<(), RecordError> {
        if let Some(p) = self.video.pending.take() {
            let duration = (dts - p.dts).clamp(1, i64::from(u32::MAX)) as u32;
            complete(&mut self.video, p, duration);
        }
        self.write_fragment()
    }

    /// Writes a fragment when the last is [`FRAGMENT`] old.
    fn maybe_flush(&mut self, at: Instant) -> Result<(), RecordError> {
        let due = self
            .last_flush
            .is_none_or(|t| at.saturating_duration_since(t) >= FRAGMENT);
        if due {
            self.last_flush = Some(at);
            self.write_fragment()?;
        }
        Ok(())
    }

    /// Opens the next file, its timeline starting at video time `dts`.
    fn open_segment(
        &mut self,
        dts: i64,
        at: Instant,
        video: Option<VideoInit>,
    ) -> Result<(), RecordError> {
        self.write_fragment_until(Some(dts))?;
        if let Some(old) = self.file.take() {
            old.close(&self.stream)?;
        }
        let named = |path: &Path| {
            let path = path.display().to_string();
            move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{path}: {e}"))
        };
        std::fs::create_dir_all(&self.dir).map_err(named(&self.dir))?;
        let wall = SystemTime::now()
            .checked_sub(Instant::now().saturating_duration_since(at))
            .unwrap_or_else(SystemTime::now);
        let stamp = humantime::format_rfc3339_millis(wall)
            .to_string()
            .replace(':', "-");
        let format = self.pictures.format();
        let path = self
            .dir
            .join(format!("{}_{stamp}.{}", self.stream, format.extension()));
        let audio = self.tracks.audio.map(|(_, init)| init);
        let (init, with_audio, duration_at) = match (format, audio) {
            (Format::Mp4, _) => (fmp4::init(video.as_ref(), audio)?, audio.is_some(), None),
            (Format::WebM, a) => {
                let opus = match a {
                    Some(AudioInit::Opus { channels }) => Some(channels),
                    Some(AudioInit::Pcm { .. }) => {
                        warn!(stream = %self.stream, "G.711 audio is not recorded in WebM");
                        None
                    }
                    None => None,
                };
                let size = match video {
                    Some(VideoInit::Vp8 { width, height }) => (width, height),
                    _ => (0, 0),
                };
                let (init, at) = webm::init(Some(size), opus, wall)?;
                (init, opus.is_some(), Some(at))
            }
        };
        let mut file = std::fs::File::create(&path).map_err(named(&path))?;
        std::io::Write::write_all(&mut file, &init).map_err(named(&path))?;
        info!(stream = %self.stream, path = %path.display(), "recording segment opened");
        enforce_retention(&self.rule, &path, SystemTime::now());
        self.files += 1;
        self.file = Some(Segment {
            file,
            path,
            base_video: dts,
            started: at,
            wall,
            sequence: 0,
            format,
            with_audio,
            duration_at,
            end: 0,
        });
        Ok(())
    }

    /// Writes the gathered runs as one fragment of the current file.
    fn write_fragment(&mut self) -> Result<(), RecordError> {
        self.write_fragment_until(None)
    }

    /// Writes the gathered samples that start before video time `until` (all without
    /// it) as one fragment of the current file; the later ones wait for the next
    /// file, whose first picture is at `until`.
    fn write_fragment_until(&mut self, until: Option<i64>) -> Result<(), RecordError> {
        let rate = self.audio_rate();
        let Some(seg) = self.file.as_mut() else {
            return Ok(());
        };
        let to_audio = |v: i64| v * i64::from(rate) / i64::from(fmp4::VIDEO_TIMESCALE);
        let mut runs = Vec::new();
        for (track, id, base, limit) in [
            (&mut self.video, fmp4::VIDEO_TRACK, seg.base_video, until),
            (
                &mut self.audio,
                fmp4::AUDIO_TRACK,
                to_audio(seg.base_video),
                until.map(to_audio),
            ),
        ] {
            let Some(start) = track.run_start.take() else {
                continue;
            };
            let mut at = start;
            let (mut first, mut samples) = (None, Vec::new());
            let mut later = Vec::new();
            for s in std::mem::take(&mut track.run) {
                let d = i64::from(s.duration);
                if limit.is_some_and(|l| at >= l) {
                    track.run_start.get_or_insert(at);
                    later.push(s);
                } else if at >= base {
                    // (Samples from before the file's first picture belong to no file.)
                    first.get_or_insert(at);
                    samples.push(s);
                }
                at += d;
            }
            track.run = later;
            let Some(first) = first else {
                continue;
            };
            if id == fmp4::AUDIO_TRACK && !seg.with_audio {
                continue;
            }
            if id == fmp4::VIDEO_TRACK {
                seg.end = seg.end.max(at - base);
            }
            runs.push(TrackRun {
                track_id: id,
                decode_time: (first - base) as u64,
                samples,
            });
        }
        if runs.is_empty() {
            return Ok(());
        }
        seg.sequence += 1;
        let bytes = match seg.format {
            Format::Mp4 => {
                let ntp = crate::wire::ntp::ntp_time(SystemTime::now());
                fmp4::fragment(seg.sequence, &runs, ntp)?
            }
            Format::WebM => {
                let timed: Vec<(u32, &TrackRun)> = runs
                    .iter()
                    .map(|r| {
                        let scale = if r.track_id == fmp4::VIDEO_TRACK {
                            fmp4::VIDEO_TIMESCALE
                        } else {
                            rate
                        };
                        (scale, r)
                    })
                    .collect();
                webm::clusters(&timed)?
            }
        };
        std::io::Write::write_all(&mut seg.file, &bytes)?;
        Ok(())
    }

    /// The stream ended: the last samples get the duration of the ones before them.
    fn finish(&mut self) -> Result<(), RecordError> {
        close_pending(&mut self.video);
        close_pending(&mut self.audio);
        self.write_fragment()?;
        if let Some(f) = self.file.take() {
            f.file.sync_all()?;
            f.close(&self.stream)?;
            info!(stream = %self.stream, "recording finished");
        }
        Ok(())
    }
}

/// `to - from` in nanoseconds, negative when `to` is earlier.
fn signed_nanos(from: Instant, to: Instant) -> i64 {
    match to.checked_duration_since(from) {
        Some(d) => d.as_nanos().min(i64::MAX as u128) as i64,
        None => -(from.duration_since(to).as_nanos().min(i64::MAX as u128) as i64),
    }
}

/// `at` moved by `nanos` (either way), saturating.
fn shift(at: Instant, nanos: i64) -> Instant {
    let d = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        at.checked_add(d).unwrap_or(at)
    } else {
        at.checked_sub(d).unwrap_or(at)
    }
}

/// A new sample of `track` at `dts`: the one before it is complete now.
fn push(track: &mut Track, dts: i64, sample: Sample, default_duration: u32) {
    if let Some(p) = track.pending.take() {
        let duration = match dts - p.dts {
            d if d > 0 => d.min(i64::from(u32::MAX)) as u32,
            _ => default_duration,
        };
        complete(track, p, duration);
    }
    track.pending = Some(Pending { dts, sample });
}

/// The track's last sample, with no next one to end it: it lasts as long as the one
/// before it (a source's end or outage is in no sample).
fn close_pending(track: &mut Track) {
    if let Some(p) = track.pending.take() {
        let d = track.last_duration.max(1);
        complete(track, p, d);
    }
}

fn complete(track: &mut Track, p: Pending, duration: u32) {
    track.last_duration = duration;
    track.run_start.get_or_insert(p.dts);
    track.run.push(FragmentSample {
        duration,
        keyframe: p.sample.keyframe,
        data: p.sample.data,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::SourcePacket;

    const SPS: [u8; 24] = [
        0x67, 0x42, 0xc0, 0x1f, 0xda, 0x02, 0x80, 0xbf, 0xe5, 0x84, 0x00, 0x00, 0x03, 0x00, 0x04,
        0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc9, 0x20,
    ];
    const PPS: [u8; 4] = [0x68, 0xce, 0x3c, 0x80];

    fn video(seq: u64, epoch: u32, ts: u32, at: Instant, payload: Vec<u8>) -> Arc<SourcePacket> {
        Arc::new(SourcePacket {
            kind: MediaKind::Video,
            codec: CodecKind::H264,
            pt: 96,
            seq,
            timestamp: ts,
            marker: true,
            keyframe_start: false,
            epoch,
            layer: 0,
            arrival: at,
            wallclock: at,
            payload: Arc::from(payload),
        })
    }

    /// An IDR in one STAP-A with its parameter sets (`described`) or alone.
    fn keyframe(described: bool) -> Vec<u8> {
        if !described {
            return vec![0x65, 1, 2, 3];
        }
        let mut p = vec![0x78];
        for u in [&SPS[..], &PPS[..], &[0x65, 1, 2, 3]] {
            p.extend_from_slice(&(u.len() as u16).to_be_bytes());
            p.extend_from_slice(u);
        }
        p
    }

    /// The boxes of `data`: (type, body).
    fn boxes(mut data: &[u8]) -> Vec<([u8; 4], &[u8])> {
        let mut out = Vec::new();
        while data.len() >= 8 {
            let size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
            if size < 8 || size > data.len() {
                break;
            }
            out.push(([data[4], data[5], data[6], data[7]], &data[8..size]));
            data = &data[size..];
        }
        out
    }

    /// The video samples (track 1) the fragments of `file` hold.
    fn video_samples(file: &Path) -> u32 {
        let bytes = std::fs::read(file).expect("the file");
        let mut n = 0;
        for (kind, moof) in boxes(&bytes) {
            if &kind != b"moof" {
                continue;
            }
            for (kind, traf) in boxes(moof) {
                if &kind != b"traf" {
                    continue;
                }
                let children = boxes(traf);
                let track = children
                    .iter()
                    .find(|(k, _)| k == b"tfhd")
                    .map(|(_, b)| u32::from_be_bytes([b[4], b[5], b[6], b[7]]));
                if track != Some(fmp4::VIDEO_TRACK) {
                    continue;
                }
                for (kind, trun) in children {
                    if &kind == b"trun" {
                        n += u32::from_be_bytes([trun[4], trun[5], trun[6], trun[7]]);
                    }
                }
            }
        }
        n
    }

    #[test]
    fn a_new_sources_pictures_wait_for_its_first_described_keyframe_and_begin_a_file() {
        let dir = std::env::temp_dir().join(format!("wishd-record-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rule = RecordEntry {
            stream: "u".into(),
            directory: dir.clone(),
            ..RecordEntry::default()
        };
        let tracks = Tracks {
            audio: None,
            video: true,
        };
        let mut w = Writer::new(dir.join("u"), "u".into(), rule, tracks);
        // Capture instants in the past, so that each file is named by its own.
        let t0 = Instant::now()
            .checked_sub(Duration::from_secs(10))
            .expect("a monotonic clock 10 s old");
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let feed = [
            // The first source: a keyframe and a picture after it.
            video(1, 0, 0, at(0), keyframe(true)),
            video(2, 0, 3000, at(33), vec![0x41, 9]),
            // A new source: a picture before any keyframe, a keyframe whose parameter
            // sets it never sent, then a described one and a picture after it.
            video(50, 1, 90_000, at(1000), vec![0x41, 9]),
            video(51, 1, 93_000, at(1033), keyframe(false)),
            video(52, 1, 96_000, at(1066), keyframe(true)),
            video(53, 1, 99_000, at(1100), vec![0x41, 9]),
        ];
        for p in &feed {
            w.packet(p).expect("written");
        }
        w.finish().expect("finished");
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("u"))
            .expect("the folder")
            .map(|e| e.expect("an entry").path())
            .collect();
        files.sort();
        let counts: Vec<u32> = files.iter().map(|f| video_samples(f)).collect();
        let _ = std::fs::remove_dir_all(&dir);
        // The old file keeps the old source's two pictures only; the new source's file
        // begins at its described keyframe.
        assert_eq!(counts, [2, 2], "{files:?}");
    }
}
