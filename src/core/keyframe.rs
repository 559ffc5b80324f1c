//! Coalescing of keyframe requests (PLI) towards one source.
//!
//! Every viewer that joins, or loses too much, asks for a keyframe. Forwarding all
//! of those upstream would make the publisher's encoder emit keyframe after
//! keyframe (each one many times the size of a delta frame), so requests are rate
//! limited: the first goes out at once, later ones within `min_interval` are
//! folded into a single request sent when the interval ends, and that pending
//! request is dropped if a keyframe arrives in the meantime.

use std::time::{Duration, Instant};

/// Rate limiter that coalesces keyframe requests (PLI) towards one source.
///
/// Sans-IO: time is always passed in. The owner sends a request upstream whenever
/// [`request`](Self::request) or [`handle_timeout`](Self::handle_timeout) returns true,
/// and calls `handle_timeout` at [`poll_timeout`](Self::poll_timeout).
#[derive(Debug, Clone)]
pub(crate) struct KeyframeLimiter {
    min_interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
    sent: u64,
    coalesced: u64,
}

impl KeyframeLimiter {
    /// A limiter that sends at most one request per `min_interval`.
    pub(crate) fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            last_sent: None,
            pending: false,
            sent: 0,
            coalesced: 0,
        }
    }

    /// A viewer wants a keyframe. Returns true when a request must be sent upstream now.
    ///
    /// The first request is sent at once; requests within `min_interval` of the last
    /// one sent are coalesced into a single request sent when the interval ends (see
    /// [`poll_timeout`](Self::poll_timeout) / [`handle_timeout`](Self::handle_timeout)).
    pub(crate) fn request(&mut self, now: Instant) -> bool {
        if self.interval_over(now) {
            // Also covers a pending request whose timeout the owner has not
            // handled yet: this send satisfies it.
            self.pending = false;
            self.send(now);
            return true;
        }
        self.pending = true;
        self.coalesced += 1;
        false
    }

    /// A keyframe arrived from the source: a pending (coalesced) request is no longer needed.
    pub(crate) fn keyframe_received(&mut self, _now: Instant) {
        self.pending = false;
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if a request is pending.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        // A request only becomes pending after one was sent, so `last_sent` is set.
        self.last_sent
            .filter(|_| self.pending)
            .and_then(|last| last.checked_add(self.min_interval))
    }

    /// Returns true when the pending request must be sent now.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.pending && self.interval_over(now) {
            self.pending = false;
            self.send(now);
            return true;
        }
        false
    }

    #[cfg(test)]
    /// Requests sent upstream so far.
    pub(crate) fn sent_count(&self) -> u64 {
        self.sent
    }

    #[cfg(test)]
    /// Requests that were not sent at once but folded into a pending request
    /// (whether that one was later sent or cancelled by a keyframe).
    pub(crate) fn coalesced_count(&self) -> u64 {
        self.coalesced
    }

    fn interval_over(&self, now: Instant) -> bool {
        self.last_sent
            .is_none_or(|last| now.saturating_duration_since(last) >= self.min_interval)
    }

    fn send(&mut self, now: Instant) {
        self.last_sent = Some(now);
        self.sent += 1;
    }
}

/// A source's video silent this long, with packets lost meanwhile, has had an outage.
pub(crate) const OUTAGE: Duration = Duration::from_millis(500);

/// Notices a source's video coming back after an outage (its link down for a while):
/// at least [`OUTAGE`] without a packet, and a gap in its sequence numbers. What
/// follows refers to pictures its viewers never got, and they cannot decode again
/// until the next keyframe; left alone, the source sends one only when a viewer's
/// decoder gives up waiting (Chromium's after 3 s without a decodable frame) or at
/// its next scheduled keyframe. So it is asked at once. A pause without loss (a
/// static screen shared at a low frame rate) is not an outage.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResumeWatch {
    /// The arrival and sequence number of the newest packet so far.
    last: Option<(Instant, u64)>,
}

impl ResumeWatch {
    /// A video packet of the source (its extended sequence number, its arrival, and
    /// whether it starts a keyframe). True when a keyframe should be asked for now.
    pub(crate) fn packet(&mut self, seq: u64, arrival: Instant, keyframe_start: bool) -> bool {
        let resumed = match self.last {
            // Late or repeated: not news about the link.
            Some((_, newest)) if seq <= newest => return false,
            Some((t, newest)) => arrival.saturating_duration_since(t) >= OUTAGE && seq > newest + 1,
            None => false,
        };
        self.last = Some((arrival, seq));
        resumed && !keyframe_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(500);

    #[test]
    fn video_back_after_an_outage_with_loss_asks_for_a_keyframe_once() {
        let t0 = Instant::now();
        let mut w = ResumeWatch::default();
        assert!(!w.packet(10, t0, true));
        assert!(!w.packet(11, t0 + ms(33), false));
        // 3 s of nothing, 90 packets lost: ask.
        assert!(w.packet(102, t0 + ms(3033), false));
        // What follows is no outage.
        assert!(!w.packet(103, t0 + ms(3040), false));
        // A late packet from before is not news.
        assert!(!w.packet(50, t0 + ms(3050), false));
    }

    #[test]
    fn a_pause_without_loss_a_short_gap_or_a_keyframe_asks_nothing() {
        let t0 = Instant::now();
        let mut w = ResumeWatch::default();
        assert!(!w.packet(1, t0, false));
        // A static screen: 2 s between frames, no packet lost.
        assert!(!w.packet(2, t0 + ms(2000), false));
        // Loss within a normal frame interval: NACK's business.
        assert!(!w.packet(5, t0 + ms(2100), false));
        // Back after an outage with a keyframe already: nothing to ask.
        assert!(!w.packet(40, t0 + ms(4000), true));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_request_is_sent_immediately() {
        let t0 = Instant::now();
        let mut limiter = KeyframeLimiter::new(INTERVAL);
        assert_eq!(limiter.poll_timeout(), None);
        assert!(limiter.request(t0));
        assert_eq!(limiter.sent_count(), 1);
        assert_eq!(limiter.coalesced_count(), 0);
        assert_eq!(limiter.poll_timeout(), None);
    }

    #[test]
    fn burst_within_interval_sends_exactly_one_more_at_interval_end() {
        let t0 = Instant::now();
        let mut limiter = KeyframeLimiter::new(INTERVAL);
        assert!(limiter.request(t0));
        for i in 1..=10 {
            assert!(!limiter.request(t0 + ms(i * 10)));
        }
        assert_eq!(limiter.sent_count(), 1);
        assert_eq!(limiter.coalesced_count(), 10);
        assert_eq!(limiter.poll_timeout(), Some(t0 + INTERVAL));

        // Too early: nothing.
        assert!(!limiter.handle_timeout(t0 + ms(499)));
        assert!(limiter.handle_timeout(t0 + INTERVAL));
        assert_eq!(limiter.sent_count(), 2);
        assert_eq!(limiter.poll_timeout(), None);
        // Nothing left to send.
        assert!(!limiter.handle_timeout(t0 + INTERVAL * 3));
        assert_eq!(limiter.sent_count(), 2);
    }

    #[test]
    fn coalesced_request_restarts_the_interval() {
        let t0 = Instant::now();
        let mut limiter = KeyframeLimiter::new(INTERVAL);
        assert!(limiter.request(t0));
        assert!(!limiter.request(t0 + ms(100)));
        assert!(limiter.handle_timeout(t0 + ms(600)));
        // The deferred send counts as the last one.
        assert!(!limiter.request(t0 + ms(700)));
        assert_eq!(limiter.poll_timeout(), Some(t0 + ms(1100)));
    }

    #[test]
    fn keyframe_received_cancels_pending_request() {
        let t0 = Instant::now();
        let mut limiter = KeyframeLimiter::new(INTERVAL);
        assert!(limiter.request(t0));
        assert!(!limiter.request(t0 + ms(50)));
        assert!(!limiter.request(t0 + ms(60)));
        limiter.keyframe_received(t0 + ms(100));
        assert_eq!(limiter.poll_timeout(), None);
        assert!(!limiter.handle_timeout(t0 + INTERVAL));
        assert_eq!(limiter.sent_count(), 1);
        assert_eq!(limiter.coalesced_count(), 2);
    }

    #[test]
    fn request_after_interval_is_sent_immediately() {
        let t0 = Instant::now();
        let mut limiter = KeyframeLimiter::new(INTERVAL);
        assert!(limiter.request(t0));
        assert!(limiter.request(t0 + INTERVAL));
        assert!(limiter.request(t0 + INTERVAL * 2 + ms(1)));
        assert_eq!(limiter.sent_count(), 3);
        assert_eq!(limiter.coalesced_count(), 0);
    }

    #[test]
    fn overdue_pending_request_is_sent_by_the_next_request() {
        let t0 = Instant::now();
        let mut limiter = KeyframeLimiter::new(INTERVAL);
        assert!(limiter.request(t0));
        assert!(!limiter.request(t0 + ms(10)));
        // The owner never called handle_timeout; a later request goes out at once
        // and satisfies the pending one.
        assert!(limiter.request(t0 + ms(800)));
        assert_eq!(limiter.poll_timeout(), None);
        assert_eq!(limiter.sent_count(), 2);
    }

    #[test]
    fn clock_going_backwards_does_not_panic_or_send() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut limiter = KeyframeLimiter::new(INTERVAL);
        assert!(limiter.request(t0));
        assert!(!limiter.request(t0 - ms(5)));
        assert!(!limiter.handle_timeout(t0 - ms(5)));
    }

    #[test]
    fn zero_interval_never_coalesces() {
        let t0 = Instant::now();
        let mut limiter = KeyframeLimiter::new(Duration::ZERO);
        assert!(limiter.request(t0));
        assert!(limiter.request(t0));
        assert_eq!(limiter.sent_count(), 2);
    }
}
