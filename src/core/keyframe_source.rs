//! How a source's joining viewers get their first keyframe: by asking the source
//! (PLI/FIR), or from the keyframe cache when the source cannot be asked.
//!
//! A WHIP publisher that advertises no way to ask for a keyframe (FFmpeg's WHIP muxer
//! offers `a=rtcp-fb nack` only: no `nack pli`, no `ccm fir`) starts in
//! [`KeyframeMode::Cache`]. One that advertises PLI or FIR starts in
//! [`KeyframeMode::Request`], and is moved to the cache for good when it leaves a
//! request unanswered: no keyframe within [`ANSWER_WITHIN`] of the oldest request
//! still open (encoders that ignore PLI exist; their viewers would otherwise wait a
//! whole keyframe interval). A keyframe that arrives answers every request sent
//! before it, whatever made the source send it.
//!
//! Sans-IO: time is passed in. The owner calls [`KeyframeSource::handle_timeout`] at
//! [`KeyframeSource::poll_timeout`] (or on any tick after it) and installs the cache
//! when it returns true.

use std::time::{Duration, Instant};

/// How long a source may take to answer a keyframe request before its viewers are
/// started from the cache instead.
pub(crate) const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// Where a joining viewer's first keyframe comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyframeMode {
    /// Ask the source (PLI/FIR) when a viewer joins.
    Request,
    /// Start viewers from the cached last keyframe and what followed it.
    Cache,
}

/// Why a source uses the cache (for logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CacheReason {
    /// Its offer advertised neither PLI nor FIR.
    CannotBeAsked,
    /// It left a keyframe request unanswered for [`ANSWER_WITHIN`].
    IgnoredRequest,
}

/// The keyframe-start decision for one source.
#[derive(Debug, Clone)]
pub(crate) struct KeyframeSource {
    mode: KeyframeMode,
    reason: Option<CacheReason>,
    answer_within: Duration,
    oldest_open_request: Option<Instant>,
}

impl KeyframeSource {
    /// The decision for a source whose offer does (`can_be_asked`) or does not
    /// advertise a keyframe request (`rtcp-fb pli` or `ccm fir` on its video).
    pub(crate) fn from_offer(can_be_asked: bool) -> Self {
        Self::with_answer_time(can_be_asked, ANSWER_WITHIN)
    }

    /// Like [`from_offer`](Self::from_offer) with another answer time.
    pub(crate) fn with_answer_time(can_be_asked: bool, answer_within: Duration) -> Self {
        KeyframeSource {
            mode: if can_be_asked {
                KeyframeMode::Request
            } else {
                KeyframeMode::Cache
            },
            reason: (!can_be_asked).then_some(CacheReason::CannotBeAsked),
            answer_within,
            oldest_open_request: None,
        }
    }

    /// The current mode.
    pub(crate) fn mode(&self) -> KeyframeMode {
        self.mode
    }

    #[cfg(test)]
    /// Why the source uses the cache, if it does.
    pub(crate) fn cache_reason(&self) -> Option<CacheReason> {
        self.reason
    }

    /// A keyframe request (PLI/FIR) was sent to the source.
    pub(crate) fn request_sent(&mut self, now: Instant) {
        if self.mode == KeyframeMode::Request {
            self.oldest_open_request.get_or_insert(now);
        }
    }

    /// A keyframe arrived from the source: it answers every open request.
    pub(crate) fn keyframe_received(&mut self, _now: Instant) {
        self.oldest_open_request = None;
    }

    /// When [`handle_timeout`](Self::handle_timeout) must run next, if a request is open.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.oldest_open_request
            .and_then(|t| t.checked_add(self.answer_within))
    }

    /// Returns true when the source has just been moved to the cache (once).
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> bool {
        let Some(deadline) = self.poll_timeout() else {
            return false;
        };
        if now < deadline {
            return false;
        }
        self.oldest_open_request = None;
        self.mode = KeyframeMode::Cache;
        self.reason = Some(CacheReason::IgnoredRequest);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_source_that_cannot_be_asked_uses_the_cache_from_the_start() {
        let s = KeyframeSource::from_offer(false);
        assert_eq!(s.mode(), KeyframeMode::Cache);
        assert_eq!(s.cache_reason(), Some(CacheReason::CannotBeAsked));
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_source_that_advertises_pli_is_asked() {
        let s = KeyframeSource::from_offer(true);
        assert_eq!(s.mode(), KeyframeMode::Request);
        assert_eq!(s.cache_reason(), None);
    }

    #[test]
    fn an_answered_request_keeps_asking() {
        let t0 = Instant::now();
        let mut s = KeyframeSource::from_offer(true);
        s.request_sent(t0);
        assert_eq!(s.poll_timeout(), Some(t0 + ANSWER_WITHIN));
        s.keyframe_received(t0 + ms(120));
        assert_eq!(s.poll_timeout(), None);
        assert!(!s.handle_timeout(t0 + ms(5000)));
        assert_eq!(s.mode(), KeyframeMode::Request);
    }

    #[test]
    fn an_unanswered_request_moves_the_source_to_the_cache_once() {
        let t0 = Instant::now();
        let mut s = KeyframeSource::from_offer(true);
        s.request_sent(t0);
        assert!(!s.handle_timeout(t0 + ms(999)));
        assert!(s.handle_timeout(t0 + ANSWER_WITHIN));
        assert_eq!(s.mode(), KeyframeMode::Cache);
        assert_eq!(s.cache_reason(), Some(CacheReason::IgnoredRequest));
        // For good: later keyframes and requests change nothing, and it fires once.
        s.keyframe_received(t0 + ms(1500));
        s.request_sent(t0 + ms(1600));
        assert_eq!(s.poll_timeout(), None);
        assert!(!s.handle_timeout(t0 + ms(9000)));
        assert_eq!(s.mode(), KeyframeMode::Cache);
    }

    #[test]
    fn the_deadline_runs_from_the_oldest_open_request() {
        let t0 = Instant::now();
        let mut s = KeyframeSource::from_offer(true);
        s.request_sent(t0);
        s.request_sent(t0 + ms(600)); // a retry: does not push the deadline back
        assert_eq!(s.poll_timeout(), Some(t0 + ANSWER_WITHIN));
        assert!(s.handle_timeout(t0 + ms(1000)));
    }

    #[test]
    fn a_keyframe_before_a_request_does_not_answer_it() {
        let t0 = Instant::now();
        let mut s = KeyframeSource::from_offer(true);
        s.keyframe_received(t0);
        s.request_sent(t0 + ms(10));
        assert!(s.handle_timeout(t0 + ms(1010)));
    }

    #[test]
    fn a_slow_but_real_answer_within_the_time_counts() {
        let t0 = Instant::now();
        let mut s = KeyframeSource::with_answer_time(true, ms(300));
        s.request_sent(t0);
        s.keyframe_received(t0 + ms(299));
        assert!(!s.handle_timeout(t0 + ms(300)));
        s.request_sent(t0 + ms(400));
        assert!(s.handle_timeout(t0 + ms(700)));
    }

    #[test]
    fn a_clock_going_backwards_does_not_switch() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut s = KeyframeSource::from_offer(true);
        s.request_sent(t0);
        assert!(!s.handle_timeout(t0 - ms(5)));
        assert_eq!(s.mode(), KeyframeMode::Request);
    }
}
