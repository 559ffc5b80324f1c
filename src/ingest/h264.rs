//! H.264 from cameras that send SPS and PPS only in the SDP's `sprop-parameter-sets`
//! or only before some IDRs: every IDR goes out with them in front.
//!
//! [`ParameterSetInjector`] sits between the sequence handling and the forwarding
//! core. When an IDR starts a picture that no SPS came with, it emits a STAP-A of the
//! known SPS and PPS just before it. To give that packet a sequence number of its own,
//! every later packet of the source is numbered one higher; packets that arrive late
//! from before the insertion (reordering) keep the lower numbering, so the source's
//! order is kept exactly. A viewer that starts live at such an IDR (it joined before
//! any keyframe was cached, or after a camera reboot) can decode it, as can one that
//! starts from the keyframe cache.
//!
//! Sans-IO and allocation-free per packet except the rare inserted one.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::core::{H264ParameterSets, SourcePacket};

/// Insertions further back than this many packets are taken to be behind every
/// packet still to come (the reorder window of [`super::source`]).
const WINDOW: u64 = 128;

/// Puts the known SPS/PPS in front of IDRs that come without them.
#[derive(Debug, Clone, Default)]
pub(crate) struct ParameterSetInjector {
    sets: H264ParameterSets,
    /// Timestamp (with epoch) of the last picture an SPS came with.
    sps_picture: Option<(u32, u32)>,
    epoch: u32,
    /// Insertions older than the window, in this epoch.
    base: u64,
    /// Source sequence numbers of the IDRs that got a packet in front, ascending.
    points: VecDeque<u64>,
    highest: u64,
    /// Parameter-set packets inserted so far.
    pub(crate) injected: u64,
}

impl ParameterSetInjector {
    /// An injector knowing the parameter sets of `fmtp`'s `sprop-parameter-sets`.
    pub(crate) fn new(fmtp: &str) -> Self {
        let mut sets = H264ParameterSets::default();
        sets.set_sprop(fmtp);
        ParameterSetInjector {
            sets,
            ..Self::default()
        }
    }

    /// Packets inserted at or before source sequence number `seq`.
    fn shift(&self, seq: u64) -> u64 {
        self.base + self.points.iter().take_while(|&&p| p <= seq).count() as u64
    }

    /// Takes one video packet of the source (in arrival order) and appends what to
    /// forward to `out`: the packet renumbered, with a parameter-set packet in front
    /// when it starts an IDR picture that no SPS came with.
    pub(crate) fn process(&mut self, mut pkt: SourcePacket, out: &mut Vec<Arc<SourcePacket>>) {
        if pkt.epoch != self.epoch {
            // A new source numbering: start over (parameter sets stay known).
            self.epoch = pkt.epoch;
            self.base = 0;
            self.points.clear();
            self.highest = 0;
            self.sps_picture = None;
        }
        if self.sets.learn(&pkt.payload) {
            self.sps_picture = Some((pkt.epoch, pkt.timestamp));
        }
        let src = pkt.seq;
        let lacks_sps = self.sps_picture != Some((pkt.epoch, pkt.timestamp));
        let after_last_point = self.points.back().is_none_or(|&p| src > p);
        let mut inserted = None;
        if pkt.keyframe_start && lacks_sps && after_last_point && self.sets.is_known() {
            let before = self.shift(src);
            let mut at = pkt.clone();
            at.seq = src + before + 1;
            if let Some(mut ps) = self.sets.packet_before(&at) {
                ps.wallclock = pkt.wallclock;
                self.points.push_back(src);
                self.sps_picture = Some((pkt.epoch, pkt.timestamp));
                self.injected += 1;
                inserted = Some(Arc::new(ps));
            }
        }
        pkt.seq = src + self.shift(src);
        self.highest = self.highest.max(src);
        while self
            .points
            .front()
            .is_some_and(|&p| p + WINDOW < self.highest)
        {
            self.points.pop_front();
            self.base += 1;
        }
        out.extend(inserted);
        out.push(Arc::new(pkt));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use str0m::media::MediaKind;

    use super::*;
    use crate::core::{CodecKind, is_keyframe_start};

    const SPROP: &str = "packetization-mode=1;sprop-parameter-sets=Z0LAHtkA,aMuDyyA=";

    fn pkt(seq: u64, ts: u32, payload: &[u8]) -> SourcePacket {
        let now = Instant::now();
        SourcePacket {
            kind: MediaKind::Video,
            codec: CodecKind::H264,
            pt: 96,
            seq,
            timestamp: ts,
            marker: false,
            keyframe_start: is_keyframe_start(CodecKind::H264, payload),
            epoch: 0,
            layer: 0,
            arrival: now,
            wallclock: now,
            payload: Arc::from(payload),
        }
    }

    fn run(inj: &mut ParameterSetInjector, p: SourcePacket) -> Vec<(u64, u8)> {
        let mut out = Vec::new();
        inj.process(p, &mut out);
        out.iter().map(|p| (p.seq, p.payload[0] & 0x1f)).collect()
    }

    #[test]
    fn sprop_sets_go_in_front_of_every_bare_idr_and_numbering_shifts() {
        let mut inj = ParameterSetInjector::new(SPROP);
        assert_eq!(
            run(&mut inj, pkt(10, 0, &[0x65, 0x88])),
            vec![(10, 24), (11, 5)]
        );
        assert_eq!(
            run(&mut inj, pkt(11, 0, &[0x65, 0x08])),
            vec![(12, 5)],
            "same picture"
        );
        assert_eq!(run(&mut inj, pkt(12, 3000, &[0x41, 0x9a])), vec![(13, 1)]);
        assert_eq!(
            run(&mut inj, pkt(14, 6000, &[0x65, 0x88])),
            vec![(15, 24), (16, 5)]
        );
        // Packet 13 arrives late: it keeps its place between 12 and the second IDR.
        assert_eq!(run(&mut inj, pkt(13, 3000, &[0x41, 0x9a])), vec![(14, 1)]);
        assert_eq!(run(&mut inj, pkt(15, 9000, &[0x41, 0x9a])), vec![(17, 1)]);
        assert_eq!(inj.injected, 2);
    }

    #[test]
    fn an_idr_that_brings_its_own_sets_is_left_alone_and_teaches_them() {
        let mut inj = ParameterSetInjector::new("packetization-mode=1");
        // No sets known yet: nothing can be inserted.
        assert_eq!(run(&mut inj, pkt(1, 0, &[0x65, 0x88])), vec![(1, 5)]);
        // STAP-A with SPS and PPS, then the IDR of the same picture.
        let stap = [0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce];
        assert_eq!(run(&mut inj, pkt(2, 3000, &stap)), vec![(2, 24)]);
        assert_eq!(run(&mut inj, pkt(3, 3000, &[0x65, 0x88])), vec![(3, 5)]);
        // A later IDR alone gets the learned sets.
        let mut out = Vec::new();
        inj.process(pkt(4, 6000, &[0x65, 0x88]), &mut out);
        assert_eq!(&out[0].payload[..], &stap[..]);
        assert_eq!((out[0].seq, out[0].timestamp, out[1].seq), (4, 6000, 5));
    }

    #[test]
    fn a_new_epoch_starts_its_numbering_over() {
        let mut inj = ParameterSetInjector::new(SPROP);
        run(&mut inj, pkt(100, 0, &[0x65, 0x88]));
        let mut p = pkt(7, 50, &[0x41, 0x9a]);
        p.epoch = 1;
        assert_eq!(run(&mut inj, p), vec![(7, 1)]);
    }

    #[test]
    fn old_insertions_fold_into_the_base() {
        let mut inj = ParameterSetInjector::new(SPROP);
        run(&mut inj, pkt(1, 0, &[0x65, 0x88]));
        for s in 2..400u64 {
            run(&mut inj, pkt(s, 3000 * s as u32, &[0x41, 0x9a]));
        }
        assert!(inj.points.is_empty());
        assert_eq!(run(&mut inj, pkt(400, 1, &[0x41, 0x9a])), vec![(401, 1)]);
    }
}
