//! What a worker knows about each of its sessions for operators: state, peer address,
//! byte and packet counts, RTT and loss from str0m's stats events, and the summary
//! line logged when the session ends.
//!
//! A worker owns these values outright (no atomics): they change on its own loop and
//! leave it only as [`SessionSnapshot`]s answering a query, or as flushed totals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::Event;
use str0m::media::Mid;
use tracing::info;

use super::MediaCounters;
use crate::model::{EndReason, SessionState};
use crate::model::{Role, SessionId};

/// One session as the API shows it.
#[derive(Debug, Clone)]
pub(crate) struct SessionSnapshot {
    /// Its id.
    pub(crate) id: SessionId,
    /// Publisher or viewer.
    pub(crate) kind: Role,
    /// The address its media last came from.
    pub(crate) peer: Option<SocketAddr>,
    /// Connecting, connected or disconnected.
    pub(crate) state: SessionState,
    /// Time since it was created.
    pub(crate) age: Duration,
    /// UDP bytes received from the peer.
    pub(crate) bytes_in: u64,
    /// UDP bytes sent to the peer.
    pub(crate) bytes_out: u64,
    /// RTP packets received (publishers).
    pub(crate) packets_in: u64,
    /// RTP packets written (viewers).
    pub(crate) packets_out: u64,
    /// Bits per second received, over the last second or so.
    pub(crate) bitrate_in: u64,
    /// Bits per second sent, over the last second or so.
    pub(crate) bitrate_out: u64,
    /// Round-trip time from RTCP, when known.
    pub(crate) rtt: Option<Duration>,
    /// Fraction of packets lost (viewers: as the viewer reports; publishers: as
    /// received here), when known.
    pub(crate) loss: Option<f32>,
    /// NACKs received from the peer (viewers) or sent to it (publishers).
    pub(crate) nacks: u64,
    /// The rid of the simulcast layer a viewer gets.
    pub(crate) layer: Option<String>,
    /// What a viewer's path is estimated to carry, in bits per second.
    pub(crate) bandwidth_estimate: Option<u64>,
    /// The candidate pair its media uses, once media flowed.
    pub(crate) path: Option<MediaPath>,
}

/// The candidate pair a session's media uses, as the server sees it: our address,
/// the peer's, and what the peer's candidate for that address said it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaPath {
    /// `udp`, or `tcp` (ICE-TCP).
    pub(crate) protocol: &'static str,
    /// Our address.
    pub(crate) local: SocketAddr,
    /// The peer's.
    pub(crate) remote: SocketAddr,
    /// The peer's candidate type for `remote`: `host`, `srflx`, `relay` (through a
    /// TURN server), or `prflx` when no candidate it gave names that address.
    pub(crate) remote_type: &'static str,
}

/// Per-session telemetry, owned by the worker's `Session`.
pub(super) struct SessionTelemetry {
    pub(super) counters: Arc<MediaCounters>,
    kind: Role,
    state: SessionState,
    pub(super) peer: Option<SocketAddr>,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) packets_in: u64,
    pub(super) packets_out: u64,
    rtt: Option<Duration>,
    loss: Option<f32>,
    nacks: u64,
    /// Cumulative NACK counts per m-line as str0m last reported them.
    nack_marks: Vec<(Mid, u64)>,
    /// The m-line whose receiver reports give a viewer's RTT and loss histograms
    /// (one sample a second per session, not one per m-line).
    report_mid: Option<Mid>,
    /// When a direct-path receiver report last went into the histograms.
    sampled_at: Option<Instant>,
    rate_at: Instant,
    rate_bytes: (u64, u64),
    rates: (u64, u64),
    flushed: (u64, u64),
}

impl SessionTelemetry {
    pub(super) fn new(kind: Role, counters: Arc<MediaCounters>, now: Instant) -> Self {
        counters.session_metrics.created(kind);
        SessionTelemetry {
            counters,
            kind,
            state: SessionState::Connecting,
            peer: None,
            bytes_in: 0,
            bytes_out: 0,
            packets_in: 0,
            packets_out: 0,
            rtt: None,
            loss: None,
            nacks: 0,
            nack_marks: Vec::new(),
            report_mid: None,
            sampled_at: None,
            rate_at: now,
            rate_bytes: (0, 0),
            rates: (0, 0),
            flushed: (0, 0),
        }
    }

    fn viewer(&self) -> bool {
        self.kind == Role::Viewer
    }

    /// Adds the wire bytes since the last flush to the shared counters.
    pub(super) fn flush(&mut self) {
        let c = &self.counters;
        c.udp_bytes_in
            .fetch_add(self.bytes_in - self.flushed.0, Ordering::Relaxed);
        c.udp_bytes_out
            .fetch_add(self.bytes_out - self.flushed.1, Ordering::Relaxed);
        self.flushed = (self.bytes_in, self.bytes_out);
    }

    /// Moves the session to `state` (gauges follow).
    pub(super) fn set_state(&mut self, state: SessionState) {
        self.counters
            .session_metrics
            .moved(self.kind, self.state, state);
        self.state = state;
    }

    /// Keeps the latest loss fraction; `sample` also adds it to the histogram.
    fn record_loss(&mut self, l: f32, sample: bool) {
        self.loss = Some(l);
        if sample {
            self.counters
                .histograms
                .loss
                .observe_units((f64::from(l.clamp(0.0, 1.0)) * 1e6) as u64);
        }
    }

    /// Keeps the latest round-trip time; `sample` also adds it to the histogram.
    fn record_rtt(&mut self, rtt: Duration, sample: bool) {
        self.rtt = Some(rtt);
        if sample {
            self.counters.histograms.rtt.observe_duration(rtt);
        }
    }

    /// Takes in str0m's periodic statistics events; other events are ignored.
    pub(super) fn on_event(&mut self, event: &Event) {
        let c = self.counters.clone();
        match event {
            Event::PeerStats(p) => {
                let loss = if self.viewer() {
                    p.egress_loss_fraction
                } else {
                    p.ingress_loss_fraction
                };
                if let Some(l) = loss {
                    self.record_loss(l, true);
                }
                if let Some(rtt) = p.rtt {
                    self.record_rtt(rtt, true);
                }
            }
            Event::MediaEgressStats(s) => {
                // A viewer's transport figures come from its receiver reports (wishd
                // does not negotiate transport-cc with viewers, see `media`).
                let sampled = *self.report_mid.get_or_insert(s.mid) == s.mid && self.viewer();
                if let Some(rtt) = s.rtt {
                    self.record_rtt(rtt, sampled);
                }
                if let (Some(l), true) = (s.loss, self.viewer()) {
                    self.record_loss(l, sampled);
                }
                let d = self.nack_delta(s.mid, s.nacks);
                c.nacks_received.fetch_add(d, Ordering::Relaxed);
            }
            Event::MediaIngressStats(s) => {
                let d = self.nack_delta(s.mid, s.nacks);
                c.nacks_sent.fetch_add(d, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// What a viewer's RTCP said on the direct egress path (`media::direct`): its
    /// round trip and loss (into the histograms at most once a second, as str0m's
    /// stats are) and the NACKs it sent.
    pub(super) fn on_receiver_report(
        &mut self,
        rtt: Option<Duration>,
        loss: Option<f32>,
        nacks: u64,
        now: Instant,
    ) {
        let sample = (rtt.is_some() || loss.is_some())
            && self
                .sampled_at
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if sample {
            self.sampled_at = Some(now);
        }
        if let Some(rtt) = rtt {
            self.record_rtt(rtt, sample);
        }
        if let Some(l) = loss {
            self.record_loss(l, sample);
        }
        self.nacks += nacks;
        self.counters
            .nacks_received
            .fetch_add(nacks, Ordering::Relaxed);
    }

    fn nack_delta(&mut self, mid: Mid, total: u64) -> u64 {
        let i = match self.nack_marks.iter().position(|(m, _)| *m == mid) {
            Some(i) => i,
            None => {
                if self.nack_marks.len() >= 8 {
                    return 0;
                }
                self.nack_marks.push((mid, 0));
                self.nack_marks.len() - 1
            }
        };
        let Some((_, mark)) = self.nack_marks.get_mut(i) else {
            return 0;
        };
        let d = total.saturating_sub(*mark);
        *mark = (*mark).max(total);
        self.nacks += d;
        d
    }

    /// The session as the API shows it. Rates are over the time since the previous
    /// snapshot when that is at least a second, else the figures of that snapshot.
    pub(super) fn snapshot(
        &mut self,
        id: SessionId,
        created: Instant,
        now: Instant,
    ) -> SessionSnapshot {
        let dt = now.saturating_duration_since(self.rate_at).as_secs_f64();
        if dt >= 1.0 || (self.rates == (0, 0) && dt > 0.0) {
            self.rates = (
                ((self.bytes_in - self.rate_bytes.0.min(self.bytes_in)) as f64 * 8.0 / dt) as u64,
                ((self.bytes_out - self.rate_bytes.1.min(self.bytes_out)) as f64 * 8.0 / dt) as u64,
            );
            if dt >= 1.0 {
                self.rate_at = now;
                self.rate_bytes = (self.bytes_in, self.bytes_out);
            }
        }
        SessionSnapshot {
            id,
            kind: self.kind,
            peer: self.peer,
            state: self.state,
            age: now.saturating_duration_since(created),
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            packets_in: self.packets_in,
            packets_out: self.packets_out,
            bitrate_in: self.rates.0,
            bitrate_out: self.rates.1,
            rtt: self.rtt,
            loss: self.loss,
            layer: None,
            bandwidth_estimate: None,
            path: None,
            nacks: self.nacks,
        }
    }

    /// Counts the end and logs the one summary line of the session (inside its span,
    /// which carries the stream and session id; they are repeated as fields so a JSON
    /// log line stands alone).
    pub(super) fn end(
        &mut self,
        id: SessionId,
        stream: &str,
        reason: EndReason,
        duration: Duration,
    ) {
        self.flush();
        self.counters
            .session_metrics
            .ended(self.kind, self.state, reason);
        let kind = self.kind.noun();
        info!(
            stream,
            session = %id,
            kind,
            reason = reason.code(),
            duration_s = format!("{:.1}", duration.as_secs_f64()),
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            packets_in = self.packets_in,
            packets_out = self.packets_out,
            loss = self.loss.map(|l| format!("{l:.3}")),
            rtt_ms = self.rtt.map(|r| r.as_millis() as u64),
            nacks = self.nacks,
            "session ended"
        );
    }
}
