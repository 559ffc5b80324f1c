//! How long a viewer's sent video stays available for retransmission (NACK).
//!
//! A resend helps only while the viewer's jitter buffer still waits for the packet:
//! about one round trip after the loss plus the buffer's own slack. Like Janus, the
//! history follows the viewer's round-trip time: RTT + 100 ms, at least 200 ms and at
//! most 1 s; before the first RTT report it assumes a 200 ms RTT (300 ms). Each
//! remembered packet costs a viewer about 300 bytes of str0m's send state (the payload
//! itself is shared), and str0m's history grows to twice what the window holds, so
//! 1 s of a 2.5 Mbit/s stream (512 slots) was about 150 KiB per viewer and 200–300 ms
//! is 40–50 KiB.
//!
//! str0m drops the history when it is resized, so a new window is only taken when it
//! differs from the current one by more than a quarter.

use std::time::Duration;

/// Shortest history kept.
pub(crate) const NACK_HISTORY_MIN: Duration = Duration::from_millis(200);
/// Longest history kept.
pub(crate) const NACK_HISTORY_MAX: Duration = Duration::from_secs(1);
/// History before the viewer's first round-trip time report.
pub(crate) const NACK_HISTORY_INITIAL: Duration = Duration::from_millis(300);
/// Slack added to the round-trip time.
const MARGIN: Duration = Duration::from_millis(100);
/// Upper bound on remembered packets whatever the window (about 1 s at 16 Mbit/s);
/// str0m only grows its buffer to what the window needs.
pub(crate) const NACK_HISTORY_PACKETS: usize = 2048;

/// The resend window of one viewer, following its round-trip time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NackHistory {
    window: Duration,
}

impl Default for NackHistory {
    fn default() -> Self {
        NackHistory {
            window: NACK_HISTORY_INITIAL,
        }
    }
}

impl NackHistory {
    /// The window in use.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// The window for a round-trip time: RTT + 100 ms within [200 ms, 1 s].
    pub(crate) fn window_for(rtt: Duration) -> Duration {
        (rtt + MARGIN).clamp(NACK_HISTORY_MIN, NACK_HISTORY_MAX)
    }

    /// A round-trip time report. Returns the new window when it should be applied
    /// (more than a quarter away from the current one).
    pub(crate) fn on_rtt(&mut self, rtt: Duration) -> Option<Duration> {
        let want = Self::window_for(rtt);
        let (a, b) = (want.as_micros(), self.window.as_micros());
        if a.abs_diff(b) * 4 <= b {
            return None;
        }
        self.window = want;
        Some(want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_window_is_rtt_plus_100_ms_between_200_ms_and_1_s() {
        assert_eq!(NackHistory::window_for(MS), 200 * MS);
        assert_eq!(NackHistory::window_for(150 * MS), 250 * MS);
        assert_eq!(NackHistory::window_for(600 * MS), 700 * MS);
        assert_eq!(NackHistory::window_for(3000 * MS), 1000 * MS);
    }

    #[test]
    fn a_viewer_starts_at_300_ms_and_follows_its_rtt_in_big_steps_only() {
        let mut h = NackHistory::default();
        assert_eq!(h.window(), 300 * MS);
        // Loopback: 1 ms RTT → the 200 ms floor (a third less: applied).
        assert_eq!(h.on_rtt(MS), Some(200 * MS));
        // Jitter around it changes nothing (and so never drops str0m's history).
        assert_eq!(h.on_rtt(20 * MS), None);
        assert_eq!(h.on_rtt(140 * MS), None);
        // A long path: 400 ms RTT → 500 ms.
        assert_eq!(h.on_rtt(400 * MS), Some(500 * MS));
        assert_eq!(h.window(), 500 * MS);
        assert_eq!(h.on_rtt(420 * MS), None);
    }
}
