//! Fragmented MP4 (ISO/IEC 14496-12, the CMAF shape browsers and ffmpeg read): an
//! initialisation part (`ftyp`, `moov` with `mvex`) and then one `moof` + `mdat` per
//! fragment. A file cut off after any fragment still plays up to it.
//!
//! The boxes are mp4-atom's (a well-kept ISOBMFF encoder from the MoQ project): this
//! module only decides their contents. Video (H.264, H.265, VP9, AV1) is at 90 kHz;
//! audio is Opus (`Opus`/`dOps`, RFC 7845's mapping into ISOBMFF) at 48 kHz, or G.711
//! expanded to 16-bit linear PCM (`ipcm`, ISO/IEC 23003-5) at 8 kHz, since MP4 has no
//! G.711 entry and players take PCM.

use crate::wire::av1::Av1Config;
use crate::wire::vp9::Vp9Info;
use mp4_atom::{
    Audio, Av01, Av1c, Avc1, Avcc, Codec, Dinf, Dops, Dref, Encode, FourCC, Ftyp, Hdlr, Hvc1,
    HvcCArray, Hvcc, Ipcm, Mdat, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mvex, Mvhd, Opus, PcmC, Prft,
    ReferenceTime, Stbl, Stsd, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, Url, Visual,
    Vp08, Vp09, VpcC,
};

/// The video track's id and clock.
pub(crate) const VIDEO_TRACK: u32 = 1;
pub(crate) const VIDEO_TIMESCALE: u32 = 90_000;
/// The audio track's id and clock.
pub(crate) const AUDIO_TRACK: u32 = 2;
pub(crate) const AUDIO_TIMESCALE: u32 = 48_000;

/// What the video track's sample entry needs: the codec's parameter sets (NAL
/// units, header included) and the picture size.
#[derive(Debug, Clone)]
pub(crate) enum VideoInit {
    H264 {
        sps: Vec<u8>,
        pps: Vec<u8>,
        width: u16,
        height: u16,
    },
    H265 {
        vps: Vec<u8>,
        sps: Vec<u8>,
        pps: Vec<u8>,
        width: u16,
        height: u16,
    },
    /// VP8's size (VP8 goes to WebM; `vp08` is here for what reads the binding).
    Vp8 {
        width: u16,
        height: u16,
    },
    Vp9(Vp9Info),
    Av1 {
        sequence_header: Vec<u8>,
        config: Av1Config,
    },
}

impl VideoInit {
    fn size(&self) -> (u16, u16) {
        match self {
            VideoInit::H264 { width, height, .. }
            | VideoInit::H265 { width, height, .. }
            | VideoInit::Vp8 { width, height } => (*width, *height),
            VideoInit::Vp9(info) => (info.width, info.height),
            VideoInit::Av1 { config, .. } => (config.width, config.height),
        }
    }

    /// The `stsd` entry: `avc1` with `avcC`, or `hvc1` with `hvcC` (parameter sets
    /// in the entry; the samples may repeat them, as cameras do); `vp08` or `vp09`
    /// with `vpcC` (the VP codec ISO-BMFF binding); `av01` with `av1C` holding the
    /// sequence header (the AV1 ISO-BMFF binding).
    fn codec(&self) -> Codec {
        let (width, height) = self.size();
        let visual = Visual {
            width,
            height,
            ..Default::default()
        };
        match self {
            VideoInit::H264 { sps, pps, .. } => {
                let (profile, compat, level) = match sps.get(1..4) {
                    Some(&[p, c, l]) => (p, c, l),
                    _ => (66, 0, 31),
                };
                Avc1 {
                    visual,
                    avcc: Avcc {
                        configuration_version: 1,
                        avc_profile_indication: profile,
                        profile_compatibility: compat,
                        avc_level_indication: level,
                        length_size: 4,
                        sequence_parameter_sets: vec![sps.clone()],
                        picture_parameter_sets: vec![pps.clone()],
                        ext: None,
                    },
                    ..Default::default()
                }
                .into()
            }
            VideoInit::H265 { vps, sps, pps, .. } => {
                let ptl = h265_profile_tier_level(sps);
                let array = |nal_unit_type: u8, nal: &Vec<u8>| HvcCArray {
                    completeness: true,
                    nal_unit_type,
                    nalus: vec![nal.clone()],
                };
                Hvc1 {
                    visual,
                    hvcc: Hvcc {
                        configuration_version: 1,
                        general_profile_space: ptl.profile_space,
                        general_tier_flag: ptl.tier,
                        general_profile_idc: ptl.profile_idc,
                        general_profile_compatibility_flags: ptl.compatibility,
                        general_constraint_indicator_flags: ptl.constraints,
                        general_level_idc: ptl.level,
                        min_spatial_segmentation_idc: 0,
                        parallelism_type: 0,
                        chroma_format_idc: 1,
                        bit_depth_luma_minus8: 0,
                        bit_depth_chroma_minus8: 0,
                        avg_frame_rate: 0,
                        constant_frame_rate: 0,
                        num_temporal_layers: ptl.sub_layers + 1,
                        temporal_id_nested: ptl.nested,
                        length_size_minus_one: 3,
                        arrays: vec![array(32, vps), array(33, sps), array(34, pps)],
                    },
                    ..Default::default()
                }
                .into()
            }
            VideoInit::Vp8 { .. } => Vp08 {
                visual,
                vpcc: vpcc(0, 8, 1, false),
                ..Default::default()
            }
            .into(),
            VideoInit::Vp9(info) => Vp09 {
                visual,
                vpcc: vpcc(
                    info.profile,
                    info.bit_depth,
                    info.chroma_subsampling,
                    info.full_range,
                ),
                ..Default::default()
            }
            .into(),
            VideoInit::Av1 {
                sequence_header,
                config: c,
            } => Av01 {
                visual,
                av1c: Av1c {
                    seq_profile: c.seq_profile,
                    seq_level_idx_0: c.seq_level_idx_0,
                    seq_tier_0: c.seq_tier_0,
                    high_bitdepth: c.high_bitdepth,
                    twelve_bit: c.twelve_bit,
                    monochrome: c.monochrome,
                    chroma_subsampling_x: c.chroma_subsampling_x,
                    chroma_subsampling_y: c.chroma_subsampling_y,
                    chroma_sample_position: c.chroma_sample_position,
                    initial_presentation_delay: None,
                    config_obus: sequence_header.clone(),
                },
                ..Default::default()
            }
            .into(),
        }
    }
}

/// A `vpcC` for what a VP8 or VP9 stream says of itself; the level is left
/// undefined (0) and the colour as unspecified (2), which players take as BT.709.
fn vpcc(profile: u8, bit_depth: u8, chroma_subsampling: u8, full_range: bool) -> VpcC {
    VpcC {
        profile,
        level: 0,
        bit_depth,
        chroma_subsampling,
        video_full_range_flag: full_range,
        color_primaries: 2,
        transfer_characteristics: 2,
        matrix_coefficients: 2,
        codec_initialization_data: Vec::new(),
    }
}

/// The general profile, tier and level of an H.265 SPS (its first 13 bytes after
/// the NAL header, emulation prevention removed), as `hvcC` repeats them.
#[derive(Debug, Default, PartialEq, Eq)]
struct ProfileTierLevel {
    sub_layers: u8,
    nested: bool,
    profile_space: u8,
    tier: bool,
    profile_idc: u8,
    compatibility: [u8; 4],
    constraints: [u8; 6],
    level: u8,
}

fn h265_profile_tier_level(sps: &[u8]) -> ProfileTierLevel {
    let mut rbsp = Vec::with_capacity(13);
    let mut zeros = 0;
    for &b in sps.iter().skip(2) {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
        if rbsp.len() == 13 {
            break;
        }
    }
    if rbsp.len() < 13 {
        return ProfileTierLevel {
            profile_idc: 1,
            compatibility: [0x60, 0, 0, 0],
            level: 93,
            ..Default::default()
        };
    }
    let mut compatibility = [0; 4];
    compatibility.copy_from_slice(&rbsp[2..6]);
    let mut constraints = [0; 6];
    constraints.copy_from_slice(&rbsp[6..12]);
    ProfileTierLevel {
        sub_layers: (rbsp[0] >> 1) & 0x07,
        nested: rbsp[0] & 1 == 1,
        profile_space: rbsp[1] >> 6,
        tier: rbsp[1] & 0x20 != 0,
        profile_idc: rbsp[1] & 0x1f,
        compatibility,
        constraints,
        level: rbsp[12],
    }
}

/// What the audio track's sample entry needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AudioInit {
    /// Opus, with its channels (WebRTC's are always described as two, RFC 7587).
    Opus { channels: u8 },
    /// Mono 16-bit little-endian PCM at `rate` Hz (G.711, expanded).
    Pcm { rate: u32 },
}

impl AudioInit {
    /// The track's clock: Opus counts at 48 kHz whatever it carries, PCM at its rate.
    pub(crate) fn timescale(self) -> u32 {
        match self {
            AudioInit::Opus { .. } => AUDIO_TIMESCALE,
            AudioInit::Pcm { rate } => rate,
        }
    }

    fn codec(self) -> Codec {
        match self {
            AudioInit::Opus { channels } => Opus {
                audio: Audio {
                    data_reference_index: 1,
                    channel_count: u16::from(channels),
                    sample_size: 16,
                    sample_rate: 48_000u16.into(),
                },
                dops: Dops {
                    output_channel_count: channels,
                    pre_skip: 0,
                    input_sample_rate: 48_000,
                    output_gain: 0,
                },
                btrt: None,
            }
            .into(),
            AudioInit::Pcm { rate } => Ipcm {
                audio: Audio {
                    data_reference_index: 1,
                    channel_count: 1,
                    sample_size: 16,
                    sample_rate: (rate.min(u32::from(u16::MAX)) as u16).into(),
                },
                pcmc: PcmC {
                    big_endian: false,
                    sample_size: 16,
                },
                chnl: None,
                btrt: None,
            }
            .into(),
        }
    }
}

/// One sample of a fragment: its duration (in its track's clock), whether it is a
/// sync sample, and its bytes.
#[derive(Debug, Clone)]
pub(crate) struct FragmentSample {
    pub(crate) duration: u32,
    pub(crate) keyframe: bool,
    pub(crate) data: Vec<u8>,
}

/// One track's run in a fragment: where it starts on the track's timeline and its
/// samples.
#[derive(Debug, Clone)]
pub(crate) struct TrackRun {
    pub(crate) track_id: u32,
    pub(crate) decode_time: u64,
    pub(crate) samples: Vec<FragmentSample>,
}

/// Sample flags (ISO/IEC 14496-12 §8.8.3.1): a sync sample depends on no other; any
/// other sample depends on others and is not a sync sample.
const SYNC: u32 = 0x0200_0000;
const NOT_SYNC: u32 = 0x0101_0000;

fn trak(track_id: u32, timescale: u32, handler: &[u8; 4], minf: Minf, size: (u16, u16)) -> Trak {
    Trak {
        tkhd: Tkhd {
            track_id,
            enabled: true,
            volume: if handler == b"soun" {
                1.into()
            } else {
                0.into()
            },
            width: size.0.into(),
            height: size.1.into(),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                creation_time: 0,
                modification_time: 0,
                timescale,
                duration: 0,
                language: "und".into(),
            },
            hdlr: Hdlr {
                handler: FourCC::new(handler),
                name: "wishd".into(),
            },
            minf,
        },
        ..Default::default()
    }
}

fn minf(stsd: Stsd, video: bool) -> Minf {
    Minf {
        vmhd: video.then(Default::default),
        smhd: (!video).then(Default::default),
        // One data reference: the media is in this file.
        dinf: Dinf {
            dref: Dref {
                urls: vec![Url::default()],
            },
        },
        stbl: Stbl {
            stsd,
            stco: Some(Default::default()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The initialisation part: `ftyp` and a `moov` describing the tracks present.
pub(crate) fn init(
    video: Option<&VideoInit>,
    audio: Option<AudioInit>,
) -> Result<Vec<u8>, mp4_atom::Error> {
    let mut out = Vec::new();
    Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: vec![
            FourCC::new(b"iso6"),
            FourCC::new(b"cmfc"),
            FourCC::new(b"mp41"),
            FourCC::new(b"avc1"),
            FourCC::new(b"hvc1"),
            FourCC::new(b"av01"),
            FourCC::new(b"Opus"),
        ],
    }
    .encode(&mut out)?;
    let mut trak_list = Vec::new();
    let mut trex = Vec::new();
    if let Some(v) = video {
        let stsd = Stsd {
            codecs: vec![v.codec()],
        };
        trak_list.push(trak(
            VIDEO_TRACK,
            VIDEO_TIMESCALE,
            b"vide",
            minf(stsd, true),
            v.size(),
        ));
        trex.push(trex_of(VIDEO_TRACK));
    }
    if let Some(a) = audio {
        let stsd = Stsd {
            codecs: vec![a.codec()],
        };
        trak_list.push(trak(
            AUDIO_TRACK,
            a.timescale(),
            b"soun",
            minf(stsd, false),
            (0, 0),
        ));
        trex.push(trex_of(AUDIO_TRACK));
    }
    Moov {
        mvhd: Mvhd {
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: AUDIO_TRACK + 1,
            ..Default::default()
        },
        mvex: Some(Mvex { mehd: None, trex }),
        trak: trak_list,
        ..Default::default()
    }
    .encode(&mut out)?;
    Ok(out)
}

fn trex_of(track_id: u32) -> Trex {
    Trex {
        track_id,
        default_sample_description_index: 1,
        ..Default::default()
    }
}

/// One fragment: a `prft` tying the first run's start to the wall clock (`ntp`, an
/// NTP timestamp), then `moof` (one `traf` per run) and the `mdat` holding the
/// samples in the same order.
pub(crate) fn fragment(
    sequence: u32,
    runs: &[TrackRun],
    ntp: u64,
) -> Result<Vec<u8>, mp4_atom::Error> {
    let mut out = Vec::new();
    if let Some(first) = runs.first() {
        Prft {
            reference_track_id: first.track_id,
            ntp_timestamp: ntp,
            media_time: first.decode_time,
            utc_time_semantics: ReferenceTime::Input,
        }
        .encode(&mut out)?;
    }
    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: runs
            .iter()
            .map(|r| Traf {
                tfhd: Tfhd {
                    track_id: r.track_id,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: r.decode_time,
                }),
                trun: vec![Trun {
                    data_offset: Some(0),
                    entries: r
                        .samples
                        .iter()
                        .map(|s| TrunEntry {
                            duration: Some(s.duration),
                            size: Some(s.data.len() as u32),
                            flags: Some(if s.keyframe { SYNC } else { NOT_SYNC }),
                            cts: None,
                        })
                        .collect(),
                }],
                ..Default::default()
            })
            .collect(),
    };
    // The data offsets count from the moof's first byte; its size does not depend on
    // their values, so it is measured once with zeros.
    let mut sized = Vec::new();
    moof.encode(&mut sized)?;
    let mut offset = sized.len() + 8;
    for (traf, run) in moof.traf.iter_mut().zip(runs) {
        if let Some(trun) = traf.trun.first_mut() {
            trun.data_offset = Some(offset as i32);
        }
        offset += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    moof.encode(&mut out)?;
    let mut data = Vec::with_capacity(offset);
    for s in runs.iter().flat_map(|r| &r.samples) {
        data.extend_from_slice(&s.data);
    }
    Mdat { data }.encode(&mut out)?;
    Ok(out)
}
