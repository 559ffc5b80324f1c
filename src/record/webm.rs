//! WebM (Matroska's web subset), for VP8, which MP4 players do not take: an EBML
//! header, a `Segment` of unknown size (so the file grows a cluster at a time and
//! plays up to its last one while written), `Info` with the wall-clock start in
//! `DateUTC`, `Tracks`, then one `Cluster` per fragment with its `SimpleBlock`s in
//! time order across tracks.
//!
//! The elements are webm-iterable's (the Matroska specification as typed tags, with a
//! reader the tests use to read the files back): this module only decides their
//! contents. Times are in milliseconds (the default `TimestampScale`).

use std::time::SystemTime;

use webm_iterable::WebmWriter;
use webm_iterable::errors::TagWriterError;
use webm_iterable::matroska_spec::{Master, MatroskaSpec as M};

use super::fmp4::{AUDIO_TRACK, TrackRun, VIDEO_TRACK};

/// Nanoseconds from the Unix epoch to Matroska's (2001-01-01T00:00:00Z).
const MATROSKA_EPOCH_NANOS: i64 = 978_307_200 * 1_000_000_000;

/// EBML's `Void` element, which readers skip.
const VOID: u64 = 0xEC;

/// `Info`'s `Duration` (0x4489), a float of 8 bytes: its header.
const DURATION_ELEMENT: [u8; 11] = [0x44, 0x89, 0x88, 0, 0, 0, 0, 0, 0, 0, 0];

/// The `Duration` element for `ms` milliseconds, to write over the room [`init`]
/// left: the same size as that `Void`, so nothing moves.
pub(crate) fn duration(ms: f64) -> [u8; 11] {
    let mut e = DURATION_ELEMENT;
    e[3..].copy_from_slice(&ms.to_be_bytes());
    e
}

/// The `OpusHead` of RFC 7845 (5.1) that WebM's Opus track carries: version 1, the
/// channels, no pre-skip, 48 kHz, no gain, mapping family 0.
fn opus_head(channels: u8) -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.extend_from_slice(&[1, channels]);
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes());
    h.push(0);
    h
}

/// The bytes of `tags` as children of a `Segment` of unknown size (the writer checks
/// that each tag is where the specification puts it), without the segment's own
/// header, which the file's start has.
fn segment_children(tags: &[M]) -> Result<Vec<u8>, TagWriterError> {
    let in_segment = || -> Result<_, TagWriterError> {
        let mut w = WebmWriter::new(Vec::new());
        w.write_advanced(
            &M::Segment(Master::Start),
            webm_iterable::WriteOptions::is_unknown_sized_element(),
        )?;
        Ok(w)
    };
    // The header alone, to cut it off: the writer holds it until it is flushed (and
    // ending a tag of unknown size writes nothing).
    let mut header = in_segment()?;
    header.flush()?;
    let header = header.get_ref().len();
    let mut w = in_segment()?;
    for t in tags {
        w.write(t)?;
    }
    w.flush()?;
    let mut out = std::mem::take(w.get_mut());
    out.drain(..header.min(out.len()));
    Ok(out)
}

/// The file's start: everything before its first cluster, and where in it the
/// duration goes ([`duration`]). `video` is the VP8 picture size, `opus` the Opus
/// track's channels, `started` the wall-clock instant of the file's time zero.
pub(crate) fn init(
    video: Option<(u16, u16)>,
    opus: Option<u8>,
    started: SystemTime,
) -> Result<(Vec<u8>, u64), TagWriterError> {
    let date = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(i64::MAX as u128) as i64 - MATROSKA_EPOCH_NANOS)
        .unwrap_or(0);
    let mut tracks = Vec::new();
    if let Some((width, height)) = video {
        tracks.push(M::TrackEntry(Master::Full(vec![
            M::TrackNumber(u64::from(VIDEO_TRACK)),
            M::TrackUID(u64::from(VIDEO_TRACK)),
            M::TrackType(1),
            M::FlagLacing(0),
            M::CodecID("V_VP8".into()),
            M::Video(Master::Full(vec![
                M::PixelWidth(u64::from(width)),
                M::PixelHeight(u64::from(height)),
            ])),
        ])));
    }
    if let Some(channels) = opus {
        tracks.push(M::TrackEntry(Master::Full(vec![
            M::TrackNumber(u64::from(AUDIO_TRACK)),
            M::TrackUID(u64::from(AUDIO_TRACK)),
            M::TrackType(2),
            M::FlagLacing(0),
            M::CodecID("A_OPUS".into()),
            M::CodecPrivate(opus_head(channels)),
            M::CodecDelay(0),
            // 80 ms, as the Matroska Opus mapping asks.
            M::SeekPreRoll(80_000_000),
            M::Audio(Master::Full(vec![
                M::SamplingFrequency(48_000.0),
                M::Channels(u64::from(channels)),
            ])),
        ])));
    }
    let mut w = WebmWriter::new(Vec::new());
    w.write(&M::Ebml(Master::Full(vec![
        M::EbmlVersion(1),
        M::EbmlReadVersion(1),
        M::EbmlMaxIdLength(4),
        M::EbmlMaxSizeLength(8),
        M::DocType("webm".into()),
        M::DocTypeVersion(4),
        M::DocTypeReadVersion(2),
    ])))?;
    w.write_advanced(
        &M::Segment(Master::Start),
        webm_iterable::WriteOptions::is_unknown_sized_element(),
    )?;
    w.write(&M::Info(Master::Start))?;
    for t in [
        M::TimestampScale(1_000_000),
        M::DateUTC(date),
        M::MuxingApp("wishd".into()),
        M::WritingApp(concat!("wishd ", env!("CARGO_PKG_VERSION")).into()),
    ] {
        w.write(&t)?;
    }
    // Room for the duration, known when the file is finished (`Void` until then).
    w.write_raw(VOID, &[0; DURATION_ELEMENT.len() - 2])?;
    w.write(&M::Info(Master::End))?;
    // (The segment is of unknown size: what is closed inside it is written out.)
    let duration_at = w.get_ref().len().saturating_sub(DURATION_ELEMENT.len());
    w.write(&M::Tracks(Master::Full(tracks)))?;
    w.flush()?;
    Ok((std::mem::take(w.get_mut()), duration_at as u64))
}

/// One block: its time (ms from the file's start), its track, whether a decoder can
/// start from it, its bytes.
type Block<'a> = (i64, u32, bool, &'a [u8]);

/// Clusters holding `runs` (each track's decode times counted in its `timescale`),
/// their blocks in time order. A cluster spans at most what a block's 16-bit
/// relative time reaches.
pub(crate) fn clusters(runs: &[(u32, &TrackRun)]) -> Result<Vec<u8>, TagWriterError> {
    let mut blocks: Vec<Block<'_>> = Vec::new();
    for (timescale, run) in runs {
        let scale = i64::from((*timescale).max(1));
        let mut at = run.decode_time.min(i64::MAX as u64) as i64;
        for s in &run.samples {
            blocks.push((at * 1000 / scale, run.track_id, s.keyframe, &s.data));
            at += i64::from(s.duration);
        }
    }
    // Stable: a track's own order stays when two blocks share a millisecond.
    blocks.sort_by_key(|b| b.0);
    let mut tags = Vec::new();
    let mut rest = &blocks[..];
    while let Some(&(start, ..)) = rest.first() {
        let n = rest
            .iter()
            .position(|b| b.0 - start > i64::from(i16::MAX))
            .unwrap_or(rest.len());
        let (now, later) = rest.split_at(n);
        let mut children = vec![M::Timestamp(start.max(0) as u64)];
        for &(ms, track, key, data) in now {
            let mut b = Vec::with_capacity(data.len() + 4);
            // Track number as a one-byte EBML integer (tracks are 1 and 2).
            b.push(0x80 | track as u8);
            b.extend_from_slice(&((ms - start) as i16).to_be_bytes());
            b.push(if key { 0x80 } else { 0 });
            b.extend_from_slice(data);
            children.push(M::SimpleBlock(b));
        }
        tags.push(M::Cluster(Master::Full(children)));
        rest = later;
    }
    segment_children(&tags)
}

#[cfg(test)]
mod tests {
    use super::super::fmp4::FragmentSample;
    use super::*;
    use webm_iterable::WebmIterator;

    fn read(bytes: &[u8]) -> Vec<M> {
        WebmIterator::new(bytes, &[])
            .collect::<Result<Vec<_>, _>>()
            .expect("the file reads back")
    }

    #[test]
    fn a_file_reads_back_with_its_tracks_start_time_and_blocks_in_time_order() {
        let started = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let (mut file, duration_at) = init(Some((640, 360)), Some(2), started).expect("init");
        assert!(
            read(&file).iter().all(|t| !matches!(t, M::Duration(_))),
            "no duration while the file is written"
        );
        let sample = |d: u32, key: bool, b: u8| FragmentSample {
            duration: d,
            keyframe: key,
            data: vec![b; 3],
        };
        let video = TrackRun {
            track_id: VIDEO_TRACK,
            decode_time: 9000, // 100 ms at 90 kHz
            samples: vec![sample(3000, true, 1), sample(3000, false, 2)],
        };
        let audio = TrackRun {
            track_id: AUDIO_TRACK,
            decode_time: 5760, // 120 ms at 48 kHz
            samples: vec![sample(960, true, 9)],
        };
        file.extend(clusters(&[(90_000, &video), (48_000, &audio)]).expect("cluster"));
        // Finished: the duration goes where the room was.
        let at = duration_at as usize;
        file[at..at + 11].copy_from_slice(&duration(133.5));
        let tags = read(&file);
        assert!(tags.contains(&M::Duration(133.5)));
        assert!(tags.contains(&M::DocType("webm".into())));
        assert!(tags.contains(&M::CodecID("V_VP8".into())));
        assert!(tags.contains(&M::CodecID("A_OPUS".into())));
        assert!(tags.contains(&M::PixelWidth(640)));
        assert!(tags.contains(&M::DateUTC((1_800_000_000 - 978_307_200) * 1_000_000_000)));
        assert!(tags.contains(&M::Timestamp(100)));
        let blocks: Vec<(u8, i16, u8, u8)> = tags
            .iter()
            .filter_map(|t| match t {
                M::SimpleBlock(b) => Some((b[0], i16::from_be_bytes([b[1], b[2]]), b[3], b[4])),
                _ => None,
            })
            .collect();
        // Video at 100 ms (key), audio at 120 ms, video at 133 ms.
        assert_eq!(
            blocks,
            vec![(0x81, 0, 0x80, 1), (0x82, 20, 0x80, 9), (0x81, 33, 0, 2)]
        );
    }

    #[test]
    fn a_run_longer_than_a_block_can_reach_is_cut_into_clusters() {
        let run = TrackRun {
            track_id: VIDEO_TRACK,
            decode_time: 0,
            samples: (0..3)
                .map(|i| FragmentSample {
                    duration: 90_000 * 20,
                    keyframe: i == 0,
                    data: vec![i],
                })
                .collect(),
        };
        let bytes = clusters(&[(90_000, &run)]).expect("clusters");
        assert_eq!(
            bytes[..4],
            [0x1f, 0x43, 0xb6, 0x75],
            "a Cluster first, no Segment"
        );
        let tags = read(&bytes);
        let stamps: Vec<u64> = tags
            .iter()
            .filter_map(|t| match t {
                M::Timestamp(t) => Some(*t),
                _ => None,
            })
            .collect();
        assert_eq!(stamps, vec![0, 40_000]);
    }
}
