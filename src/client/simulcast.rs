//! A publisher's simulcast layers (RFC 8853): the layers a caller asks for, the
//! checks they must pass before they go into an offer, and the sending state of
//! each encoding the answer leaves.
//!
//! The publisher's offer and run loop only take the encodings from here and write
//! frames on them, so the layer rules (RID spelling, picture sizes, what a declined
//! or partly accepted answer leaves) have one home.

use std::time::{Duration, Instant};

use str0m::Rtc;
use str0m::media::{Mid, Rid, Rids};

use super::ClientError;
use super::media::{CaptureClock, LayerShape, VIDEO_CLOCK_RATE};

/// One simulcast layer of a publisher: its RID and the picture and bit rate of its
/// synthetic stream. Keyframes announce the picture (H.264 SPS, VP8 key frame header)
/// and frames are sized so that the layer averages `bitrate_bps` of RTP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulcastLayer {
    /// The RID (`a=rid`, RTP stream id): 1 to 8 ASCII letters, digits or `_` (str0m
    /// keeps 8 bytes of a RID and turns any other character, also RFC 8851's `-`,
    /// into `_`).
    pub rid: String,
    /// Picture width, even, at most 16382.
    pub width: u16,
    /// Picture height, even, at most 16382.
    pub height: u16,
    /// Average RTP payload bit rate.
    pub bitrate_bps: u32,
}

impl SimulcastLayer {
    /// A layer `rid` of `width`×`height` at `bitrate_bps`.
    pub fn new(rid: impl Into<String>, width: u16, height: u16, bitrate_bps: u32) -> Self {
        SimulcastLayer {
            rid: rid.into(),
            width,
            height,
            bitrate_bps,
        }
    }

    /// The usual three layers, lowest first, named as Chromium's simulcast examples
    /// name them: "q" 320×180 at 200 kbit/s, "h" 640×360 at 800 kbit/s, "f" 1280×720
    /// at 2.5 Mbit/s.
    pub fn three() -> Vec<SimulcastLayer> {
        vec![
            SimulcastLayer::new("q", 320, 180, 200_000),
            SimulcastLayer::new("h", 640, 360, 800_000),
            SimulcastLayer::new("f", 1280, 720, 2_500_000),
        ]
    }
}

/// Largest picture side a layer may announce: the largest even one a VP8 key frame
/// header holds (14 bits).
const MAX_LAYER_SIDE: u16 = 16_382;

/// Checks the layers before they go into an offer: str0m cuts a RID to 8 bytes and
/// rewrites all but letters, digits and `_`, so another RID would reach the wire
/// changed; two layers with one RID could not be told apart; an odd size cannot be
/// cropped to in 4:2:0.
pub(super) fn check_layers(layers: &[SimulcastLayer]) -> Result<(), ClientError> {
    let bad = |why: String| Err(ClientError::Sdp(format!("simulcast: {why}")));
    if layers.is_empty() {
        return bad("no layers".into());
    }
    for (i, l) in layers.iter().enumerate() {
        let rid_ok = (1..=8).contains(&l.rid.len())
            && l.rid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !rid_ok {
            return bad(format!("rid {:?} is not 1 to 8 of [A-Za-z0-9_]", l.rid));
        }
        if layers[..i].iter().any(|o| o.rid == l.rid) {
            return bad(format!("rid {:?} twice", l.rid));
        }
        let side_ok = |v: u16| v > 0 && v <= MAX_LAYER_SIDE && v.is_multiple_of(2);
        if !side_ok(l.width) || !side_ok(l.height) {
            return bad(format!(
                "layer {:?}: {}x{} is not even and within {MAX_LAYER_SIDE}",
                l.rid, l.width, l.height
            ));
        }
        if l.bitrate_bps == 0 {
            return bad(format!("layer {:?}: zero bit rate", l.rid));
        }
    }
    Ok(())
}

/// What a publisher has done on one simulcast layer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// The layer's RID.
    pub rid: String,
    /// The SSRC str0m sends the layer with.
    pub ssrc: Option<u32>,
    /// RTP packets handed to str0m.
    pub packets_sent: u64,
    /// RTP payload bytes handed to str0m.
    pub payload_bytes_sent: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// Keyframes sent (periodic, forced and on request).
    pub keyframes_sent: u64,
    /// PLI/FIR received for this layer's SSRC.
    pub keyframe_requests: u64,
}

/// The encodings of the video track `mid` the answer lets the publisher send, and the
/// stats entries of its simulcast `layers` (none for a single encoding). Each layer's
/// frames are sized for `fps` with a keyframe every `keyframe_interval`.
pub(super) fn encodings(
    rtc: &mut Rtc,
    mid: Mid,
    layers: Option<&[SimulcastLayer]>,
    fps: u32,
    keyframe_interval: Duration,
) -> (Vec<Encoding>, Vec<LayerStats>) {
    let Some(layers) = layers else {
        return (vec![Encoding::new(None, None)], Vec::new());
    };
    // The answer's `a=rid:<rid> recv` lines, as str0m applied them.
    let accepted: Vec<Rid> = match rtc.media(mid).map(|m| m.rids_tx()) {
        Some(Rids::Specific(rids)) => rids.clone(),
        _ => Vec::new(),
    };
    let shape = |l: &SimulcastLayer| {
        LayerShape::for_bitrate(l.width, l.height, l.bitrate_bps, fps, keyframe_interval)
    };
    if accepted.is_empty() {
        // Declined: one encoding, on the stream str0m made for the top layer (it made
        // none without a rid). Its packets carry that RID only if the answer kept the
        // RID header extension (wishd's drops it with the simulcast lines).
        let top = layers.iter().max_by_key(|l| l.bitrate_bps);
        let encodings = top
            .map(|l| Encoding::new(Some(Rid::from(l.rid.as_str())), Some(shape(l))))
            .into_iter()
            .collect();
        tracing::debug!("the answer declined simulcast; sending one encoding");
        return (encodings, Vec::new());
    }
    let mut encodings = Vec::new();
    let mut stats = Vec::new();
    for l in layers {
        let rid = Rid::from(l.rid.as_str());
        if !accepted.contains(&rid) {
            continue;
        }
        let ssrc = rtc
            .direct_api()
            .stream_tx_by_mid(mid, Some(rid))
            .map(|tx| *tx.ssrc());
        let mut e = Encoding::new(Some(rid), Some(shape(l)));
        e.stats = Some(stats.len());
        encodings.push(e);
        stats.push(LayerStats {
            rid: l.rid.clone(),
            ssrc,
            ..Default::default()
        });
    }
    tracing::debug!("sending {} simulcast layers", encodings.len());
    (encodings, stats)
}

/// One encoding of the video track: the only one, or one simulcast layer with its
/// own sequence numbers and its own random RTP timestamp base (as libwebrtc's layers
/// have: they share capture instants, not a timestamp base).
pub(super) struct Encoding {
    /// The layer's RID (`None`: the single encoding).
    pub(super) rid: Option<Rid>,
    /// Index into [`PublisherStats::layers`](super::PublisherStats::layers), for an
    /// accepted simulcast layer.
    pub(super) stats: Option<usize>,
    /// The layer's stream; `None`: the default shape of
    /// [`media::video_frame`](super::media::video_frame).
    pub(super) shape: Option<LayerShape>,
    pub(super) seq: u64,
    pub(super) clock: CaptureClock,
    pub(super) last_keyframe: Option<Instant>,
    /// A keyframe should go out as soon as possible (request or command).
    pub(super) keyframe_wanted: bool,
}

impl Encoding {
    fn new(rid: Option<Rid>, shape: Option<LayerShape>) -> Self {
        Encoding {
            rid,
            stats: None,
            shape,
            seq: rand::random_range(0..30_000),
            clock: CaptureClock::new(VIDEO_CLOCK_RATE, rand::random()),
            last_keyframe: None,
            keyframe_wanted: false,
        }
    }
}
