//! The keyframe cache of a source that cannot be asked for a keyframe (an RTP camera).
//!
//! It keeps every video packet from the last keyframe start on (the group of pictures
//! up to now), bounded in bytes. A new viewer is started from it: the keyframe first,
//! then the frames that depend on it, then live packets, with no gap in between, so the
//! viewer decodes at once instead of waiting up to a whole keyframe interval. When a
//! group grows over the bound the cache empties until the next keyframe (viewers then
//! wait for it, as they would without a cache).
//!
//! A group is only as good as it is recent: once the source has sent nothing for
//! [`KeyframeCache::stale_after`], the cache gives nothing (a viewer asking for a
//! keyframe during the silence would otherwise be shown the same old half second
//! again and again), and the first packet after the silence empties it until the next
//! keyframe, so no stale picture is mixed with new frames.
//!
//! H.264: SPS and PPS seen in the stream (single NAL units or inside STAP-A) or given
//! as `sprop-parameter-sets` are remembered; when a keyframe starts with an IDR without
//! an SPS in front, a STAP-A with the remembered SPS and PPS is put before it, numbered
//! one below the IDR's sequence number and with its timestamp.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::packet::SourcePacket;
use crate::model::CodecKind;
use crate::wire::h264::{NAL_PPS, NAL_SPS, NAL_STAP_A, nal_units};

/// The bound of a stream's keyframe cache: a group of pictures of a few seconds at
/// several Mbit/s; a bigger one empties the cache until the next keyframe.
pub(crate) const CACHE_BYTES: usize = 2 * 1024 * 1024;

/// Bounded cache of the last group of pictures of one video source.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyframeCache {
    codec: Option<CodecKind>,
    limit: usize,
    packets: Vec<Arc<SourcePacket>>,
    bytes: usize,
    sets: H264ParameterSets,
    /// Parameter-set packets put in front of IDRs so far.
    pub(crate) injected: u64,
    /// Groups dropped for being over the bound.
    pub(crate) overflows: u64,
    /// A silence of the source this long makes the group stale (None: never).
    stale_after: Option<Duration>,
}

impl KeyframeCache {
    /// A cache for a source of `codec`, holding at most `limit` payload bytes. A limit
    /// of 0 keeps nothing.
    pub(crate) fn new(codec: CodecKind, limit: usize) -> Self {
        Self {
            codec: Some(codec),
            limit,
            ..Self::default()
        }
    }

    /// The cache gives nothing once the source has been silent for `silence`, and
    /// starts over at the next keyframe after it (see the module doc).
    pub(crate) fn stale_after(mut self, silence: Duration) -> Self {
        self.stale_after = Some(silence);
        self
    }

    /// True when `pkt` (or the instant `at`) comes a stale silence after the group.
    fn is_stale_at(&self, at: Instant) -> bool {
        match (self.stale_after, self.packets.last()) {
            (Some(silence), Some(last)) => at.saturating_duration_since(last.arrival) >= silence,
            _ => false,
        }
    }

    /// Takes the H.264 parameter sets of an fmtp's `sprop-parameter-sets`.
    pub(crate) fn set_sprop(&mut self, fmtp: &str) {
        self.sets.set_sprop(fmtp);
    }

    #[cfg(test)]
    /// True when the cache holds a keyframe to start a viewer from.
    pub(crate) fn is_ready(&self) -> bool {
        !self.packets.is_empty()
    }

    /// The packets a new viewer starts with at `now` (shared, not copied): none once
    /// the group is stale.
    pub(crate) fn snapshot(&self, now: Instant) -> Vec<Arc<SourcePacket>> {
        if self.is_stale_at(now) {
            return Vec::new();
        }
        self.packets.clone()
    }

    /// Empties the cache until the next keyframe (the source went silent: a viewer
    /// joining now must not start from a stale picture). Parameter sets are kept.
    pub(crate) fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
    }

    /// Adds a video packet of the source (in arrival order).
    pub(crate) fn push(&mut self, pkt: &Arc<SourcePacket>) {
        let h264 = self.codec == Some(CodecKind::H264);
        let has_sps = h264 && self.sets.learn(&pkt.payload);
        if self.limit == 0 {
            return;
        }
        if self.is_stale_at(pkt.arrival) {
            self.clear();
        }
        let same_epoch = self.packets.first().is_none_or(|p| p.epoch == pkt.epoch);
        let continues_keyframe = self
            .packets
            .last()
            .is_some_and(|p| p.timestamp == pkt.timestamp && same_epoch);
        if pkt.keyframe_start && !continues_keyframe {
            self.clear();
            if h264
                && !has_sps
                && let Some(ps) = self.sets.packet_before(pkt)
            {
                self.injected += 1;
                self.bytes += ps.payload.len();
                self.packets.push(Arc::new(ps));
            }
        } else if self.packets.is_empty() || !same_epoch {
            self.clear();
            return;
        }
        self.bytes += pkt.payload.len();
        if self.bytes > self.limit {
            self.overflows += 1;
            self.clear();
            return;
        }
        self.packets.push(pkt.clone());
    }
}

/// The H.264 sequence and picture parameter sets of a source, learned from its
/// stream (single NAL units or inside STAP-A) and from `sprop-parameter-sets`, and
/// put as one STAP-A in front of an IDR that lacks them.
#[derive(Debug, Clone, Default)]
pub(crate) struct H264ParameterSets {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

impl H264ParameterSets {
    /// Takes the parameter sets of an fmtp's `sprop-parameter-sets`.
    pub(crate) fn set_sprop(&mut self, fmtp: &str) {
        let Some(value) = fmtp.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("sprop-parameter-sets")
                .then(|| v.trim())
        }) else {
            return;
        };
        for nal in value.split(',').filter_map(base64_decode) {
            self.learn_nal(&nal);
        }
    }

    /// True once both an SPS and a PPS are known.
    pub(crate) fn is_known(&self) -> bool {
        self.sps.is_some() && self.pps.is_some()
    }

    fn learn_nal(&mut self, nal: &[u8]) {
        match nal.first().map(|b| b & 0x1f) {
            Some(NAL_SPS) => self.sps = Some(nal.to_vec()),
            Some(NAL_PPS) => self.pps = Some(nal.to_vec()),
            _ => {}
        }
    }

    /// Remembers the parameter sets in an H.264 RTP payload; returns true if it
    /// carries an SPS.
    pub(crate) fn learn(&mut self, payload: &[u8]) -> bool {
        let mut has_sps = false;
        for nal in nal_units(payload).filter(|n| n.whole) {
            has_sps |= nal.kind == NAL_SPS;
            self.learn_nal(nal.bytes);
        }
        has_sps
    }

    /// A STAP-A packet with the SPS and PPS, to go just before `idr`: numbered one
    /// below it, with its timestamp and times. None until both are known.
    pub(crate) fn packet_before(&self, idr: &SourcePacket) -> Option<SourcePacket> {
        let (sps, pps) = (self.sps.as_ref()?, self.pps.as_ref()?);
        let mut p = Vec::with_capacity(sps.len() + pps.len() + 5);
        // STAP-A header: F=0, NRI of the SPS, type 24.
        p.push((sps.first().copied().unwrap_or(0x67) & 0x60) | NAL_STAP_A);
        for nal in [sps, pps] {
            p.extend_from_slice(&u16::try_from(nal.len()).ok()?.to_be_bytes());
            p.extend_from_slice(nal);
        }
        Some(SourcePacket {
            seq: idr.seq.checked_sub(1)?,
            marker: false,
            keyframe_start: true,
            payload: Arc::from(p),
            ..idr.clone()
        })
    }
}

/// Standard base64 (padding optional); None on any bad character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim().bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use str0m::media::MediaKind;

    use super::*;

    fn pkt(seq: u64, ts: u32, payload: &[u8], keyframe_start: bool) -> Arc<SourcePacket> {
        Arc::new(SourcePacket {
            kind: MediaKind::Video,
            codec: CodecKind::H264,
            pt: 96,
            seq,
            timestamp: ts,
            marker: false,
            keyframe_start,
            epoch: 0,
            layer: 0,
            arrival: Instant::now(),
            wallclock: Instant::now(),
            payload: Arc::from(payload),
        })
    }

    fn now() -> Instant {
        Instant::now()
    }

    fn at(mut p: SourcePacket, t: Instant) -> Arc<SourcePacket> {
        p.arrival = t;
        Arc::new(p)
    }

    #[test]
    fn a_silent_source_leaves_nothing_to_replay_and_starts_over_at_its_next_keyframe() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut c = KeyframeCache::new(CodecKind::Vp8, 1 << 20).stale_after(Duration::from_secs(1));
        c.push(&at((*pkt(1, 0, &[1], true)).clone(), ms(0)));
        c.push(&at((*pkt(2, 3000, &[1], false)).clone(), ms(33)));
        assert_eq!(c.snapshot(ms(999)).len(), 2, "fresh until the silence");
        assert!(
            c.snapshot(ms(1033)).is_empty(),
            "stale after 1 s of silence"
        );
        // The source comes back with a frame that depends on the stale group: nothing
        // to start from until its next keyframe.
        c.push(&at((*pkt(3, 6000, &[1], false)).clone(), ms(3000)));
        assert!(!c.is_ready());
        c.push(&at((*pkt(4, 9000, &[1], true)).clone(), ms(3033)));
        assert_eq!(
            c.snapshot(ms(3040))
                .iter()
                .map(|p| p.seq)
                .collect::<Vec<_>>(),
            vec![4]
        );
        // Without a bound, a group never goes stale.
        let mut forever = KeyframeCache::new(CodecKind::Vp8, 1 << 20);
        forever.push(&at((*pkt(1, 0, &[1], true)).clone(), ms(0)));
        assert_eq!(forever.snapshot(ms(60_000)).len(), 1);
    }

    #[test]
    fn keeps_the_group_from_the_last_keyframe() {
        let mut c = KeyframeCache::new(CodecKind::Vp8, 1 << 20);
        c.push(&pkt(1, 0, &[1], false));
        assert!(!c.is_ready());
        c.push(&pkt(2, 0, &[1], true));
        c.push(&pkt(3, 0, &[1], false));
        c.push(&pkt(4, 3000, &[1], false));
        assert_eq!(
            c.snapshot(now()).iter().map(|p| p.seq).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
        c.push(&pkt(5, 6000, &[1], true));
        assert_eq!(
            c.snapshot(now()).iter().map(|p| p.seq).collect::<Vec<_>>(),
            vec![5]
        );
    }

    #[test]
    fn a_second_keyframe_start_packet_of_the_same_frame_does_not_restart() {
        let mut c = KeyframeCache::new(CodecKind::H264, 1 << 20);
        c.push(&pkt(10, 0, &[0x78, 0, 2, 0x67, 1, 0, 1, 0x68], true)); // STAP-A SPS+PPS
        c.push(&pkt(11, 0, &[0x65, 0x88], true)); // IDR, same frame
        assert_eq!(c.snapshot(now()).len(), 2);
        assert_eq!(c.injected, 0);
    }

    #[test]
    fn overflow_empties_until_the_next_keyframe() {
        let mut c = KeyframeCache::new(CodecKind::Vp8, 10);
        c.push(&pkt(1, 0, &[0; 6], true));
        c.push(&pkt(2, 1, &[0; 6], false));
        assert!(!c.is_ready());
        c.push(&pkt(3, 2, &[0; 1], false));
        assert!(!c.is_ready());
        assert_eq!(c.overflows, 1);
        c.push(&pkt(4, 3, &[0; 6], true));
        assert!(c.is_ready());
    }

    #[test]
    fn epoch_change_without_keyframe_empties() {
        let mut c = KeyframeCache::new(CodecKind::Vp8, 1 << 20);
        c.push(&pkt(1, 0, &[0], true));
        let mut p = (*pkt(2, 1, &[0], false)).clone();
        p.epoch = 1;
        c.push(&Arc::new(p));
        assert!(!c.is_ready());
    }

    #[test]
    fn sprop_parameter_sets_go_before_an_idr_that_lacks_them() {
        let mut c = KeyframeCache::new(CodecKind::H264, 1 << 20);
        c.set_sprop("packetization-mode=1; sprop-parameter-sets=Z0LAHtkA,aMuDyyA=");
        c.push(&pkt(100, 9000, &[0x65, 0x88, 1], true));
        let s = c.snapshot(now());
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].seq, s[0].timestamp, s[0].keyframe_start),
            (99, 9000, true)
        );
        let p = &s[0].payload;
        assert_eq!(p[0] & 0x1f, 24);
        assert_eq!(&p[1..3], &[0, 6]);
        assert_eq!(p[3], 0x67);
        assert!(crate::core::is_keyframe_start(CodecKind::H264, p));
        assert_eq!(c.injected, 1);
    }

    #[test]
    fn parameter_sets_learned_from_the_stream_are_reused() {
        let mut c = KeyframeCache::new(CodecKind::H264, 1 << 20);
        c.push(&pkt(1, 0, &[0x67, 0x42], true));
        c.push(&pkt(2, 0, &[0x68, 0xce], false));
        c.push(&pkt(3, 0, &[0x65, 0x88], true));
        assert_eq!(c.injected, 0);
        c.push(&pkt(50, 90_000, &[0x65, 0x88], true));
        assert_eq!(c.injected, 1);
        assert_eq!(
            &c.snapshot(now())[0].payload[..],
            &[0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce]
        );
    }

    #[test]
    fn base64_round_trip_and_garbage() {
        assert_eq!(
            base64_decode("aMuDyyA="),
            Some(vec![0x68, 0xcb, 0x83, 0xcb, 0x20])
        );
        assert_eq!(base64_decode("!!"), None);
        assert_eq!(base64_decode(""), None);
    }
}
