//! A viewer's bandwidth estimate on the direct egress: every packet it is sent gets a
//! transport-wide sequence number, its transport-wide feedback (which str0m never
//! sees: the egress reads the viewer's SRTCP) feeds a [`Bwe`], and probes go out as
//! RTX copies of video it already got.
//!
//! Probes are RTX because a plain copy would be useless: the viewer's SRTP drops a
//! packet index it already took as a replay before its transport layer records the
//! arrival, so the copy would never be reported. On its RTX stream the copy has an
//! index of its own, arrives, is reported, and the player's jitter buffer drops it as
//! the duplicate it is.
//!
//! Only viewers of a stream with layers to choose are estimated: for the others the
//! numbering and the feedback would cost without deciding anything.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use crate::core::{Bandwidth, Bwe, BweConfig, ProbeOutcome, ProbeState, Usage};
use crate::wire::twcc::{self, TwccPacket};

/// The estimate a viewer starts from: above any layer, so a viewer starts on the best
/// one and the path's first feedback says within a few round trips if it cannot.
const INITIAL_BPS: u64 = 8_000_000;
/// Never below: the lowest layer (with audio) is sent whatever the estimate says.
const MIN_BPS: u64 = 50_000;
/// Never above: more than any simulcast ladder needs.
const MAX_BPS: u64 = 30_000_000;

/// A share of packets lost that says a queue on the path overflows (random loss on a
/// bad radio link is rarely this high).
const HEAVY_LOSS: f64 = 0.2;

/// UDP and IPv4 headers, which the link carries and the datagram length leaves out.
const UDP_IP: usize = 28;

/// The send rate is measured over windows this long.
const RATE_WINDOW: Duration = Duration::from_millis(500);

thread_local! {
    /// Feedback packets as parsed, one buffer per media thread rather than per viewer:
    /// a report is read and forgotten in one call.
    static PARSED: RefCell<Vec<TwccPacket>> = const { RefCell::new(Vec::new()) };
}

/// One viewer's estimation state.
pub(super) struct Estimation {
    /// The negotiated id of the transport-wide sequence number extension.
    pub(super) ext_id: u8,
    next_seq: u16,
    bwe: Bwe,
    /// The probe state `bandwidth` last reported, so each end is told once.
    told: ProbeState,
    window_start: Instant,
    window_bytes: u64,
    send_bps: u64,
    /// The RTX stream's next extended sequence number (its own space).
    pub(super) rtx_seq: u64,
    /// How far back in the video history the next probe copy is taken from.
    pub(super) probe_back: usize,
}

impl Estimation {
    pub(super) fn new(ext_id: u8, now: Instant) -> Self {
        Estimation {
            ext_id,
            next_seq: rand::random(),
            bwe: Bwe::new(
                BweConfig {
                    initial_bps: INITIAL_BPS,
                    min_bps: MIN_BPS,
                    max_bps: MAX_BPS,
                },
                now,
            ),
            told: ProbeState::Idle,
            window_start: now,
            window_bytes: 0,
            send_bps: 0,
            rtx_seq: u64::from(rand::random::<u16>() & 0x7fff),
            probe_back: 0,
        }
    }

    /// The number the next packet carries.
    pub(super) fn number(&mut self) -> u16 {
        let n = self.next_seq;
        self.next_seq = n.wrapping_add(1);
        n
    }

    /// Packet `seq` left at `now`, `len` bytes of SRTP.
    pub(super) fn sent(&mut self, seq: u16, len: usize, now: Instant, probe: bool) {
        let bytes = len + UDP_IP;
        self.bwe.on_sent(seq, bytes, now, probe);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= RATE_WINDOW {
            self.send_bps = (self.window_bytes as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            self.window_start = now;
            self.window_bytes = 0;
        }
        self.window_bytes += bytes as u64;
    }

    /// The transport-wide feedback in one decrypted compound RTCP packet.
    pub(super) fn feedback(&mut self, plain: &[u8], now: Instant) {
        PARSED.with_borrow_mut(|packets| {
            for body in twcc::feedback_bodies(plain) {
                if let Some(fb) = twcc::parse_feedback(body, packets) {
                    self.bwe.on_feedback(&fb, packets, now);
                }
            }
        });
    }

    /// A round trip measured from the viewer's receiver reports.
    pub(super) fn rtt(&mut self, rtt: Duration) {
        self.bwe.on_rtt(rtt);
    }

    /// What the chooser needs: the estimate, congestion, and how a probe ended (told
    /// once).
    pub(super) fn bandwidth(&mut self) -> Bandwidth {
        let state = self.bwe.probe_state();
        let probe = match (self.told, state) {
            (ProbeState::Running, ProbeState::Succeeded { .. }) => ProbeOutcome::Succeeded,
            (ProbeState::Running, ProbeState::Failed) => ProbeOutcome::Failed,
            _ => ProbeOutcome::None,
        };
        self.told = state;
        Bandwidth {
            estimate: self.bwe.estimate(),
            congested: self.congested(),
            delivered: self.bwe.delivered_bps(),
            queue: self.bwe.queue_delay(),
            probe,
        }
    }

    /// The path is congested now: a queue builds, or it overflows (heavy loss).
    pub(super) fn congested(&self) -> bool {
        self.bwe.usage() == Usage::Overusing
            || self.bwe.recent_loss().is_some_and(|l| l > HEAVY_LOSS)
    }

    /// The estimate alone (for the API: [`bandwidth`](Self::bandwidth) tells a probe's
    /// end once, to the chooser).
    pub(super) fn estimate_bps(&self) -> u64 {
        self.bwe.estimate()
    }

    /// Starts a probe toward `target_bps` in all; false when one runs already or the
    /// viewer is sent that much anyway.
    pub(super) fn start_probe(&mut self, target_bps: u64, now: Instant) -> bool {
        let started = self.bwe.start_probe(target_bps, self.send_bps, now);
        if started {
            self.told = ProbeState::Running;
            self.probe_back = 0;
        }
        started
    }

    /// The size of the probe packet due at `now`, if one is.
    pub(super) fn poll_probe(&mut self, now: Instant) -> Option<usize> {
        self.bwe.poll_probe(now)
    }

    /// When a probe has something to do next.
    pub(super) fn timeout(&self) -> Option<Instant> {
        self.bwe.probe_timeout()
    }
}
