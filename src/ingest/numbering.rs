//! How the packets of one RTP camera medium are numbered: sequence extension,
//! duplicate and late packet filtering, SSRC changes (a camera reboot) and numbering
//! restarts as new epochs. Sans-IO; the rest of a packet's way is the one source
//! pipeline's ([`crate::core::Source`]).
//!
//! Extended sequence numbers start at 2^16 + the first sequence number, so the core
//! may number a synthetic packet just before the first one without going below zero.

use crate::wire::rtp::RtpHeader;

/// Packets this far or further behind the highest sequence number are too late (the
/// reorder window, about a second of 1 Mbit/s video).
const WINDOW: u64 = 128;
/// After this many too-late packets in a row the sender is taken to have restarted
/// its numbering (same SSRC, new sequence) and a new epoch begins.
const RESYNC_AFTER: u32 = 16;

/// Why a packet is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Same sequence number seen recently.
    Duplicate,
    /// Older than the reorder window.
    TooLate,
    /// A payload type this medium was not configured with.
    UnknownPt,
}

/// One configured medium of an RTP source.
#[derive(Debug, Clone)]
pub(crate) struct MediumState {
    pt: u8,
    ssrc: Option<u32>,
    epoch: u32,
    /// Highest extended sequence number so far.
    highest: u64,
    /// Bit *i* set: `highest - i` was received.
    seen: u128,
    late_in_a_row: u32,
    /// SSRC changes seen.
    pub(crate) ssrc_changes: u64,
}

impl MediumState {
    /// A medium carrying payload type `pt`.
    pub(crate) fn new(pt: u8) -> Self {
        Self {
            pt,
            ssrc: None,
            epoch: 0,
            highest: 0,
            seen: 0,
            late_in_a_row: 0,
            ssrc_changes: 0,
        }
    }

    /// The same codec under another payload type number (a source that came back
    /// with another answer): its packets are taken from now on.
    pub(crate) fn set_pt(&mut self, pt: u8) {
        self.pt = pt;
    }

    fn restart(&mut self, seq: u16) {
        self.highest = (1 << 16) + u64::from(seq);
        self.seen = 1;
        self.late_in_a_row = 0;
    }

    /// Extends `seq`, or says why the packet must be dropped.
    fn extend(&mut self, seq: u16) -> Result<u64, Reject> {
        let last16 = (self.highest & 0xffff) as u16;
        let delta = i64::from(seq.wrapping_sub(last16) as i16);
        let ext = self.highest as i64 + delta;
        if delta > 0 {
            let shift = delta as u64;
            self.seen = if shift >= 128 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = ext as u64;
            self.late_in_a_row = 0;
            return Ok(self.highest);
        }
        let back = (-delta) as u64;
        if back >= WINDOW || ext < 0 {
            self.late_in_a_row += 1;
            return Err(Reject::TooLate);
        }
        let ext = ext as u64;
        let bit = 1u128 << back;
        if self.seen & bit != 0 {
            return Err(Reject::Duplicate);
        }
        self.seen |= bit;
        self.late_in_a_row = 0;
        Ok(ext)
    }

    /// Numbers one parsed RTP packet: its extended sequence number and epoch, or why
    /// it must be dropped.
    pub(crate) fn accept(&mut self, h: &RtpHeader) -> Result<(u64, u32), Reject> {
        if h.pt != self.pt {
            return Err(Reject::UnknownPt);
        }
        let seq = match self.ssrc {
            Some(ssrc) if ssrc == h.ssrc => match self.extend(h.seq) {
                Err(Reject::TooLate) if self.late_in_a_row >= RESYNC_AFTER => {
                    self.epoch = self.epoch.wrapping_add(1);
                    self.restart(h.seq);
                    self.highest
                }
                r => r?,
            },
            previous => {
                if previous.is_some() {
                    self.ssrc_changes += 1;
                    self.epoch = self.epoch.wrapping_add(1);
                }
                self.ssrc = Some(h.ssrc);
                self.restart(h.seq);
                self.highest
            }
        };
        Ok((seq, self.epoch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(seq: u16, ssrc: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            pt: 96,
            seq,
            timestamp: u32::from(seq) * 3000,
            ssrc,
            payload_start: 12,
            payload_end: 13,
        }
    }

    fn run(m: &mut MediumState, seq: u16, ssrc: u32) -> Result<(u64, u32), Reject> {
        m.accept(&hdr(seq, ssrc))
    }

    #[test]
    fn extends_across_wraparound_and_keeps_reordering() {
        let mut m = MediumState::new(96);
        let base = 1 << 16;
        assert_eq!(run(&mut m, 65_534, 1), Ok((base + 65_534, 0)));
        assert_eq!(run(&mut m, 0, 1), Ok((base + 65_536, 0)));
        assert_eq!(run(&mut m, 65_535, 1), Ok((base + 65_535, 0)));
        assert_eq!(run(&mut m, 1, 1), Ok((base + 65_537, 0)));
    }

    #[test]
    fn duplicates_and_late_packets_are_rejected() {
        let mut m = MediumState::new(96);
        for s in 100..400u16 {
            run(&mut m, s, 1).unwrap();
        }
        assert_eq!(run(&mut m, 399, 1), Err(Reject::Duplicate));
        assert_eq!(run(&mut m, 350, 1), Err(Reject::Duplicate));
        assert_eq!(run(&mut m, 200, 1), Err(Reject::TooLate));
        assert_eq!(
            run(&mut m, 10_000u16.wrapping_neg(), 1),
            Err(Reject::TooLate)
        );
        let mut p = hdr(400, 1);
        p.pt = 97;
        assert_eq!(m.accept(&p).map(|(seq, _)| seq), Err(Reject::UnknownPt));
    }

    #[test]
    fn a_late_packet_that_was_lost_fills_its_gap() {
        let mut m = MediumState::new(96);
        run(&mut m, 10, 1).unwrap();
        run(&mut m, 12, 1).unwrap();
        assert_eq!(run(&mut m, 11, 1), Ok(((1 << 16) + 11, 0)));
    }

    #[test]
    fn ssrc_change_starts_a_new_epoch() {
        let mut m = MediumState::new(96);
        run(&mut m, 5_000, 1).unwrap();
        assert_eq!(run(&mut m, 7, 2), Ok(((1 << 16) + 7, 1)));
        assert_eq!(m.ssrc_changes, 1);
        assert_eq!(run(&mut m, 8, 2), Ok(((1 << 16) + 8, 1)));
    }

    #[test]
    fn numbering_restart_with_the_same_ssrc_resyncs_after_a_few_packets() {
        let mut m = MediumState::new(96);
        run(&mut m, 30_000, 1).unwrap();
        let mut last = Err(Reject::TooLate);
        for s in 0..RESYNC_AFTER as u16 {
            last = run(&mut m, 20_000 + s, 1);
        }
        assert_eq!(last.map(|x| x.1), Ok(1));
        assert_eq!(
            run(&mut m, 20_000 + RESYNC_AFTER as u16, 1).map(|x| x.1),
            Ok(1)
        );
    }
}
