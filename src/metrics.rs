//! Counters, gauges and histograms for operators, and their Prometheus text rendering.
//!
//! Everything here is lock-free: a counter is an `AtomicU64` bumped where the event
//! happens (relaxed ordering; readers want totals, not ordering), a histogram is a
//! fixed array of atomic buckets. Nothing allocates on the packet path. Per-viewer
//! per-packet counts are summed in the worker's own plain fields and flushed here on
//! its housekeeping tick (every 100 ms), so the hottest path does not touch a shared
//! cache line per viewer.
//!
//! [`Exposition`] writes the Prometheus text format (0.0.4); the `/metrics` page
//! itself is put together at the HTTP edge, which knows every part of the server.
//!
//! A leaf: it imports only the shared vocabulary ([`crate::model`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::model::{EndReason, Role, SessionState};

/// A histogram with fixed bucket bounds and atomic counts: `observe` is a search in a
/// short constant array and three relaxed atomic adds.
#[derive(Debug)]
pub(crate) struct Histogram {
    /// Upper bounds in integer units (nanoseconds, microseconds, parts per million).
    bounds: &'static [u64],
    /// Units per second (or per whole, for ratios), for rendering: dividing keeps
    /// bounds such as 1 µs exact in decimal (1000 / 1e9), which multiplying does not.
    per: f64,
    /// One count per bound, plus the overflow bucket (+Inf).
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    count: AtomicU64,
}

/// Latency bounds (forwarding, session setup), nanoseconds: 1 µs to 100 ms. The
/// 1-2.5-5 series, with steps of 50–250 µs from 100 µs to 2 ms and finer ones up to
/// 25 ms: a quantile is interpolated inside its bucket, and the delay targets sit
/// between 1 and 5 ms, where 1 → 2.5 ms alone would put a p99 anywhere in between.
pub(crate) const LATENCY_BOUNDS_NS: &[u64] = &[
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    150_000,
    200_000,
    250_000,
    300_000,
    400_000,
    500_000,
    600_000,
    700_000,
    800_000,
    900_000,
    1_000_000,
    1_250_000,
    1_500_000,
    1_750_000,
    2_000_000,
    2_500_000,
    3_000_000,
    4_000_000,
    5_000_000,
    7_500_000,
    10_000_000,
    15_000_000,
    20_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
];
/// Round-trip time bounds, microseconds: 1 ms to 5 s.
pub(crate) const RTT_BOUNDS_US: &[u64] = &[
    1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000,
];
/// Loss fraction bounds, parts per million: 0 to 100 %.
pub(crate) const LOSS_BOUNDS_PPM: &[u64] = &[
    0, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 1_000_000,
];

impl Histogram {
    /// A histogram over `bounds` (ascending, in units; `per` units make one second,
    /// or one whole).
    pub(crate) fn new(bounds: &'static [u64], per: f64) -> Histogram {
        Histogram {
            bounds,
            per,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Forwarding latency in seconds, observed as nanoseconds.
    pub(crate) fn latency() -> Histogram {
        Histogram::new(LATENCY_BOUNDS_NS, 1e9)
    }

    /// Records one value in units.
    pub(crate) fn observe_units(&self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a duration in the histogram's unit.
    pub(crate) fn observe_duration(&self, d: Duration) {
        let units = d.as_secs_f64() * self.per;
        self.observe_units(units.min(u64::MAX as f64) as u64);
    }

    /// Number of observations.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of observations, in the rendered unit (seconds or ratio).
    pub(crate) fn sum(&self) -> f64 {
        self.sum.load(Ordering::Relaxed) as f64 / self.per
    }

    /// Cumulative counts per upper bound (rendered unit), ending with +Inf.
    pub(crate) fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut acc = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            acc += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or(f64::INFINITY, |&b| b as f64 / self.per);
            out.push((le, acc));
        }
        out
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let sep = if labels.is_empty() { "" } else { "," };
        for (le, n) in self.cumulative() {
            let le = if le.is_infinite() {
                "+Inf".to_owned()
            } else {
                format!("{le}")
            };
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum());
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

/// The media workers' distributions.
#[derive(Debug)]
pub struct MediaHistograms {
    /// Source packet arrival to the hand-over to the socket for the last viewer of it
    /// on a worker, in seconds.
    pub(crate) forward_latency: Histogram,
    /// Round-trip times reported by str0m per session, once a second, in seconds.
    pub(crate) rtt: Histogram,
    /// Loss fractions reported by str0m per session, once a second.
    pub(crate) loss: Histogram,
    /// WHIP/WHEP POST: request handed to the handler to the 201 ready, in seconds.
    pub(crate) session_setup: Histogram,
}

impl Default for MediaHistograms {
    fn default() -> Self {
        MediaHistograms {
            forward_latency: Histogram::latency(),
            rtt: Histogram::new(RTT_BOUNDS_US, 1e6),
            loss: Histogram::new(LOSS_BOUNDS_PPM, 1e6),
            session_setup: Histogram::latency(),
        }
    }
}

/// Session counts by role and state, and ends by reason.
#[derive(Debug, Default)]
pub struct SessionMetrics {
    created: [AtomicU64; 2],
    states: [[AtomicI64; 3]; 2],
    ended: [AtomicU64; EndReason::ALL.len()],
}

impl SessionMetrics {
    /// A session of `role` was created, connecting.
    pub(crate) fn created(&self, role: Role) {
        let k = role.index();
        self.created[k].fetch_add(1, Ordering::Relaxed);
        self.states[k][SessionState::Connecting as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A session moved from one state to another.
    pub(crate) fn moved(&self, role: Role, from: SessionState, to: SessionState) {
        if from != to {
            let k = role.index();
            self.states[k][from as usize].fetch_sub(1, Ordering::Relaxed);
            self.states[k][to as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A session in `state` ended for `reason`.
    pub(crate) fn ended(&self, role: Role, state: SessionState, reason: EndReason) {
        self.states[role.index()][state as usize].fetch_sub(1, Ordering::Relaxed);
        self.ended[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Sessions ever created of a role.
    pub(crate) fn created_total(&self, role: Role) -> u64 {
        self.created[role.index()].load(Ordering::Relaxed)
    }

    /// Sessions ended for a reason.
    pub fn ended_total(&self, reason: EndReason) -> u64 {
        self.ended[reason.index()].load(Ordering::Relaxed)
    }

    /// Sessions of a role now in a state.
    pub(crate) fn in_state(&self, role: Role, state: SessionState) -> i64 {
        self.states[role.index()][state as usize].load(Ordering::Relaxed)
    }
}

/// The route label of an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HttpRoute {
    /// `/whip/{stream}`
    Whip,
    /// `/whip/{stream}/{session}`
    WhipSession,
    /// `/whep/{stream}`
    Whep,
    /// `/whep/{stream}/{session}`
    WhepSession,
    /// `/api/...`
    Api,
    /// `/metrics`
    Metrics,
    /// `/healthz`, `/readyz`
    Health,
    /// Anything else.
    Other,
}

impl HttpRoute {
    const ALL: [HttpRoute; 8] = [
        HttpRoute::Whip,
        HttpRoute::WhipSession,
        HttpRoute::Whep,
        HttpRoute::WhepSession,
        HttpRoute::Api,
        HttpRoute::Metrics,
        HttpRoute::Health,
        HttpRoute::Other,
    ];

    fn as_str(self) -> &'static str {
        match self {
            HttpRoute::Whip => "whip",
            HttpRoute::WhipSession => "whip_session",
            HttpRoute::Whep => "whep",
            HttpRoute::WhepSession => "whep_session",
            HttpRoute::Api => "api",
            HttpRoute::Metrics => "metrics",
            HttpRoute::Health => "health",
            HttpRoute::Other => "other",
        }
    }
}

/// Status codes counted one by one; others fall into `other`.
const STATUSES: [u16; 21] = [
    200, 201, 204, 301, 302, 304, 307, 400, 401, 403, 404, 405, 409, 412, 413, 415, 422, 428, 429,
    500, 503,
];

/// Reasons of authentication failures.
const AUTH_REASONS: [&str; 4] = [
    "missing",
    "malformed",
    "invalid_token",
    "insufficient_scope",
];

/// HTTP request and authentication counters.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    requests: [[AtomicU64; STATUSES.len() + 1]; HttpRoute::ALL.len()],
    auth_failures: [AtomicU64; AUTH_REASONS.len()],
    /// Connections closed at accept: their address had `max_connections_per_address`.
    pub(crate) connections_refused: AtomicU64,
}

/// Why a bearer token was refused, for `wishd_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    /// No token where one is needed.
    Missing,
    /// A malformed `Authorization` header.
    Malformed,
    /// An unknown, badly signed or expired token.
    InvalidToken,
    /// A valid token without the right.
    InsufficientScope,
}

impl HttpMetrics {
    /// Counts one answered request.
    pub(crate) fn request(&self, route: HttpRoute, status: u16) {
        let r = HttpRoute::ALL
            .iter()
            .position(|x| *x == route)
            .unwrap_or(HttpRoute::ALL.len() - 1);
        let s = STATUSES
            .iter()
            .position(|x| *x == status)
            .unwrap_or(STATUSES.len());
        self.requests[r][s].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one refused credential.
    pub(crate) fn auth_failure(&self, why: AuthFailure) {
        self.auth_failures[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes Prometheus exposition text: a small builder that emits `# HELP`/`# TYPE`
/// once per metric family.
pub(crate) struct Exposition {
    out: String,
}

impl Default for Exposition {
    fn default() -> Self {
        Self::new()
    }
}

impl Exposition {
    /// An empty page.
    pub(crate) fn new() -> Exposition {
        Exposition {
            out: String::with_capacity(16 * 1024),
        }
    }

    /// Starts a family.
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample; `labels` is `key="value",...` or empty.
    pub(crate) fn sample(
        &mut self,
        name: &str,
        labels: &str,
        value: impl std::fmt::Display,
    ) -> &mut Self {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
        self
    }

    /// A family with one unlabelled sample.
    pub(crate) fn single(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        value: impl std::fmt::Display,
    ) -> &mut Self {
        self.family(name, kind, help).sample(name, "", value)
    }

    /// A histogram family.
    pub(crate) fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Self {
        h.render(&mut self.out, name, help, "");
        self
    }

    /// The page.
    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// Renders the HTTP counters.
pub(crate) fn render_http(e: &mut Exposition, http: &HttpMetrics) {
    e.family(
        "wishd_http_requests_total",
        "counter",
        "HTTP requests answered, by route and status code.",
    );
    for (r, route) in HttpRoute::ALL.iter().enumerate() {
        for s in 0..=STATUSES.len() {
            let n = http.requests[r][s].load(Ordering::Relaxed);
            if n == 0 {
                continue;
            }
            let status = STATUSES
                .get(s)
                .map_or("other".to_owned(), |c| c.to_string());
            e.sample(
                "wishd_http_requests_total",
                &format!("route=\"{}\",status=\"{status}\"", route.as_str()),
                n,
            );
        }
    }
    e.single(
        "wishd_http_connections_refused_total",
        "counter",
        "HTTP connections closed at accept: their client address already had \
         limits.max_connections_per_address open.",
        http.connections_refused.load(Ordering::Relaxed),
    );
    e.family(
        "wishd_auth_failures_total",
        "counter",
        "Refused credentials, by reason.",
    );
    for (i, reason) in AUTH_REASONS.iter().enumerate() {
        e.sample(
            "wishd_auth_failures_total",
            &format!("reason=\"{reason}\""),
            http.auth_failures[i].load(Ordering::Relaxed),
        );
    }
}

/// Renders the session gauges and counters.
pub(crate) fn render_sessions(e: &mut Exposition, s: &SessionMetrics) {
    e.family(
        "wishd_sessions",
        "gauge",
        "Sessions now, by kind (publisher, viewer) and state.",
    );
    for role in Role::ALL {
        for st in SessionState::ALL {
            e.sample(
                "wishd_sessions",
                &format!("kind=\"{}\",state=\"{}\"", role.noun(), st.as_str()),
                s.in_state(role, st).max(0),
            );
        }
    }
    e.family(
        "wishd_sessions_created_total",
        "counter",
        "Sessions created, by kind.",
    );
    for role in Role::ALL {
        e.sample(
            "wishd_sessions_created_total",
            &format!("kind=\"{}\"", role.noun()),
            s.created_total(role),
        );
    }
    e.family(
        "wishd_sessions_ended_total",
        "counter",
        "Sessions ended, by reason.",
    );
    for r in EndReason::ALL {
        e.sample(
            "wishd_sessions_ended_total",
            &format!("reason=\"{}\"", r.code()),
            s.ended_total(r),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
        let h = Histogram::latency();
        h.observe_duration(Duration::from_nanos(500)); // ≤ 1 µs
        h.observe_duration(Duration::from_micros(1)); // = 1 µs bound
        h.observe_duration(Duration::from_micros(30)); // ≤ 50 µs
        h.observe_duration(Duration::from_secs(1)); // +Inf
        let c = h.cumulative();
        assert_eq!(c[0], (1e-6, 2));
        let le50 = c
            .iter()
            .find(|(le, _)| (*le - 50e-6).abs() < 1e-12)
            .unwrap();
        assert_eq!(le50.1, 3);
        assert_eq!(c.last().unwrap().1, 4);
        assert!(c.last().unwrap().0.is_infinite());
        assert_eq!(h.count(), 4);
        assert!((h.sum() - 1.0000315).abs() < 1e-9, "{}", h.sum());
    }

    #[test]
    fn histogram_is_safe_to_observe_from_many_threads() {
        let h = Arc::new(Histogram::latency());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        h.observe_units(i * (t + 1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(h.count(), 40_000);
        assert_eq!(h.cumulative().last().unwrap().1, 40_000);
    }

    #[test]
    fn latency_buckets_resolve_the_range_of_the_delay_targets_in_steps_of_250_us() {
        assert!(
            LATENCY_BOUNDS_NS.windows(2).all(|w| w[0] < w[1]),
            "ascending"
        );
        for w in LATENCY_BOUNDS_NS.windows(2) {
            if (100_000..2_000_000).contains(&w[0]) {
                assert!(w[1] - w[0] <= 250_000, "{} → {} ns", w[0], w[1]);
            }
        }
        // A 1.2 ms forward lands in (1, 1.25] ms, not anywhere in (1, 2.5] ms.
        let h = Histogram::latency();
        h.observe_duration(Duration::from_micros(1200));
        let c = h.cumulative();
        let first = c.iter().find(|(_, n)| *n == 1).expect("observed");
        assert!((first.0 - 0.00125).abs() < 1e-12, "bucket le={}", first.0);
    }

    #[test]
    fn histogram_renders_prometheus_buckets() {
        let h = Histogram::latency();
        h.observe_duration(Duration::from_micros(3));
        let mut e = Exposition::new();
        e.histogram("x_seconds", "help", &h);
        let text = e.finish();
        assert!(text.contains("# TYPE x_seconds histogram"));
        assert!(
            text.contains("x_seconds_bucket{le=\"0.0000025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("x_seconds_bucket{le=\"0.000005\"} 1"),
            "{text}"
        );
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 1"));
        assert!(text.contains("x_seconds_count 1"));
    }
}
