//! Audio/video sync from RTCP sender reports: each report ties one SSRC's RTP clock
//! to the sender's wall clock (NTP), so the RTP timestamp of any packet can be turned
//! into the instant it was captured. Audio and video of one camera share that wall
//! clock, and so their relationship is known however late each packet arrives.
//!
//! [`SenderClock`] maps the sender's wall clock onto this server's `Instant`s with
//! one anchor per source (the first report: its NTP time is taken to be its arrival
//! less [`ANCHOR_MARGIN`]), so every SSRC of the source is mapped with the same offset and the audio/video
//! relationship survives. The result is what str0m is given as the `wallclock` of a
//! viewer's packet, from which it builds the viewer's own sender reports.
//!
//! Used by RTP ingest (reports parsed from the camera's RTCP) and by WHIP publishers
//! (reports str0m parsed). Sans-IO: the caller passes arrival instants. Until an SSRC has a report its
//! packets map to their arrival (what a source without RTCP gets). A mapped instant
//! is never later than the packet's arrival (str0m ignores a wallclock in the
//! future): a packet that would map later than its arrival shows that the anchor was
//! set late (its report waited in a queue), and the anchor moves earlier by that much
//! (and the margin), for every SSRC at once, so the audio/video relationship holds. A sender clock that
//! jumps by more than [`REANCHOR_AFTER`] against ours is anchored again.

use std::time::{Duration, Instant};

/// Sender and server clocks that disagree by more than this (a jump of the camera's
/// NTP clock, or drift over hours) are anchored again at the next report.
pub(crate) const REANCHOR_AFTER: Duration = Duration::from_secs(1);
/// A report's NTP time is mapped this far before its arrival: a packet usually
/// leaves the sender after the moment its timestamp stands for, but a report delayed
/// on its way more than the packets would map them into the future (clamped to their
/// arrival, which loses their relationship). Only the absolute capture instants move.
pub(crate) const ANCHOR_MARGIN: Duration = Duration::from_millis(50);
/// Reports remembered (one per SSRC; a source has one per medium).
const MAX_SSRCS: usize = 8;

/// The latest sender report of one SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Report {
    ssrc: u32,
    /// Sender wall clock of the report, in nanoseconds since the NTP epoch.
    sender_ns: i128,
    /// The RTP timestamp the report pairs with it.
    rtp: u32,
}

/// Maps RTP timestamps of one source's SSRCs to instants on this server's clock.
#[derive(Debug, Clone, Default)]
pub(crate) struct SenderClock {
    /// (our instant, sender ns) taken to be the same moment.
    anchor: Option<(Instant, i128)>,
    reports: Vec<Report>,
    /// Times the anchor was set.
    pub(crate) anchors: u64,
}

impl SenderClock {
    /// Takes a sender report: `ssrc`'s RTP timestamp `rtp` was the sender's wall
    /// clock `sender_ns` (nanoseconds, any fixed epoch), received at `arrival`.
    pub(crate) fn on_sender_report(
        &mut self,
        ssrc: u32,
        sender_ns: i128,
        rtp: u32,
        arrival: Instant,
    ) {
        let reanchor = match self.anchor {
            None => true,
            Some((at, ns)) => {
                let sender = sender_ns - ns;
                let ours = signed_nanos(arrival.checked_sub(ANCHOR_MARGIN).unwrap_or(arrival), at);
                (sender - ours).unsigned_abs() > REANCHOR_AFTER.as_nanos()
            }
        };
        if reanchor {
            let at = arrival.checked_sub(ANCHOR_MARGIN).unwrap_or(arrival);
            self.anchor = Some((at, sender_ns));
            self.anchors += 1;
        }
        let report = Report {
            ssrc,
            sender_ns,
            rtp,
        };
        match self.reports.iter_mut().find(|r| r.ssrc == ssrc) {
            Some(r) => *r = report,
            None => {
                if self.reports.len() >= MAX_SSRCS {
                    self.reports.remove(0);
                }
                self.reports.push(report);
            }
        }
    }

    #[cfg(test)]
    /// Forgets an SSRC's report (the SSRC is gone: the camera restarted).
    pub(crate) fn forget(&mut self, ssrc: u32) {
        self.reports.retain(|r| r.ssrc != ssrc);
    }

    #[cfg(test)]
    /// True when `ssrc` has a report.
    pub(crate) fn knows(&self, ssrc: u32) -> bool {
        self.reports.iter().any(|r| r.ssrc == ssrc)
    }

    /// The instant on this server's clock at which `ssrc`'s packet with RTP timestamp
    /// `rtp` (of a `clock_rate` Hz clock) was captured, never later than `arrival`;
    /// `arrival` itself when the SSRC has no report yet. A packet that would map
    /// later than its arrival moves the anchor earlier (see the module doc).
    pub(crate) fn wallclock(
        &mut self,
        ssrc: u32,
        rtp: u32,
        clock_rate: u32,
        arrival: Instant,
    ) -> Instant {
        let (Some((at, anchor_ns)), Some(r)) =
            (self.anchor, self.reports.iter().find(|r| r.ssrc == ssrc))
        else {
            return arrival;
        };
        if clock_rate == 0 {
            return arrival;
        }
        // RTP timestamps wrap: the packet is within 2^31 ticks of the report.
        let ticks = i128::from(rtp.wrapping_sub(r.rtp) as i32);
        let captured_ns = r.sender_ns + ticks * 1_000_000_000 / i128::from(clock_rate);
        let since_anchor = captured_ns - anchor_ns;
        let mapped = add_signed_nanos(at, since_anchor).unwrap_or(arrival);
        if mapped > arrival {
            let late = mapped.duration_since(arrival);
            // Earlier by the excess and the margin again, so packets as fast as
            // this one map a margin before their arrival.
            if late <= REANCHOR_AFTER
                && let Some(earlier) = at.checked_sub(late + ANCHOR_MARGIN)
            {
                self.anchor = Some((earlier, anchor_ns));
                // This packet too, so it agrees with the ones after it.
                return arrival.checked_sub(ANCHOR_MARGIN).unwrap_or(arrival);
            }
            return arrival;
        }
        mapped
    }
}

/// `a - b` in nanoseconds, negative when `a` is earlier.
fn signed_nanos(a: Instant, b: Instant) -> i128 {
    if a >= b {
        a.duration_since(b).as_nanos() as i128
    } else {
        -(b.duration_since(a).as_nanos() as i128)
    }
}

fn add_signed_nanos(at: Instant, nanos: i128) -> Option<Instant> {
    let d = Duration::from_nanos(u64::try_from(nanos.unsigned_abs()).ok()?);
    if nanos >= 0 {
        at.checked_add(d)
    } else {
        at.checked_sub(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i128 = 1_000_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_report_means_arrival() {
        let t0 = Instant::now();
        let mut c = SenderClock::default();
        assert_eq!(c.wallclock(1, 1234, 90_000, t0), t0);
    }

    #[test]
    fn audio_and_video_keep_the_senders_offset_whatever_their_arrival() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut c = SenderClock::default();
        // The camera's wall clock is 1_000 s; video RTP 90_000 and audio RTP 48_000
        // stand for that same moment. The reports arrive 30 ms apart.
        let base = 1_000_000 * MS;
        c.on_sender_report(0x71d, base, 90_000, t0);
        c.on_sender_report(0xa0d, base + 30 * MS, 48_000 + 1_440, t0 + ms(30));
        // A video frame captured 200 ms after the report, arriving 260 ms after it.
        let v = c.wallclock(0x71d, 90_000 + 18_000, 90_000, t0 + ms(260));
        // The audio frame of the same moment, arriving much later (420 ms).
        let a = c.wallclock(0xa0d, 48_000 + 9_600, 48_000, t0 + ms(420));
        assert_eq!(v, t0 + ms(200) - ANCHOR_MARGIN);
        assert_eq!(a, v, "same capture instant, whatever the arrival");
        // 40 ms of audio later.
        let a2 = c.wallclock(0xa0d, 48_000 + 9_600 + 1_920, 48_000, t0 + ms(460));
        assert_eq!(a2.duration_since(v), ms(40));
    }

    #[test]
    fn timestamps_before_the_report_and_across_the_wrap() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut c = SenderClock::default();
        c.on_sender_report(7, 5_000 * MS, u32::MAX - 899, t0);
        // 900 ticks after: past the wrap, 10 ms later.
        let report = t0 - ANCHOR_MARGIN;
        assert_eq!(c.wallclock(7, 0, 90_000, t0 + ms(50)), report + ms(10));
        // 9000 ticks before the report: 100 ms earlier.
        assert_eq!(
            c.wallclock(7, u32::MAX - 9_899, 90_000, t0 + ms(50)),
            report - ms(100)
        );
    }

    #[test]
    fn never_later_than_the_arrival_and_a_late_anchor_moves_earlier() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut c = SenderClock::default();
        c.on_sender_report(1, 0, 0, t0);
        c.on_sender_report(2, 0, 0, t0);
        // Stamped 500 ms after the report but here 100 ms after it: the report
        // waited 400 ms longer than this packet (plus the margin); the anchor moves.
        assert_eq!(
            c.wallclock(1, 45_000, 90_000, t0 + ms(100)),
            t0 + ms(100) - ANCHOR_MARGIN
        );
        // Every SSRC follows the moved anchor, so the relationship holds: the
        // report's moment now maps 400 ms and a margin before its arrival.
        let report = t0 - ms(400) - ANCHOR_MARGIN;
        assert_eq!(
            c.wallclock(2, 4_800, 48_000, t0 + ms(200)),
            report + ms(100)
        );
        assert_eq!(
            c.wallclock(1, 9_000, 90_000, t0 + ms(200)),
            report + ms(100)
        );
        let mut c = SenderClock::default();
        c.on_sender_report(1, 0, 0, t0);
        // Stamped 30 ms after the report, here 10 ms after it: within the margin.
        assert_eq!(
            c.wallclock(1, 2_700, 90_000, t0 + ms(10)),
            t0 + ms(30) - ANCHOR_MARGIN
        );
    }

    #[test]
    fn a_jump_of_the_senders_clock_reanchors() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut c = SenderClock::default();
        c.on_sender_report(1, 0, 0, t0);
        c.on_sender_report(1, 1_000 * MS, 90_000, t0 + ms(1_000));
        assert_eq!(c.anchors, 1, "in step: same anchor");
        // The camera's clock jumps an hour ahead.
        c.on_sender_report(1, 3_602_000 * MS, 180_000, t0 + ms(2_000));
        assert_eq!(c.anchors, 2);
        assert_eq!(
            c.wallclock(1, 180_000 + 900, 90_000, t0 + ms(2_050)),
            t0 + ms(2_010) - ANCHOR_MARGIN
        );
    }

    #[test]
    fn a_forgotten_ssrc_maps_to_arrival_again() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut c = SenderClock::default();
        c.on_sender_report(1, 0, 0, t0);
        assert!(c.knows(1));
        c.forget(1);
        assert!(!c.knows(1));
        // (a mapped instant would be t0 - margin + 10 ms)
        assert_eq!(c.wallclock(1, 900, 90_000, t0 + ms(50)), t0 + ms(50));
    }
}
