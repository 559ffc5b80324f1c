//! Counters, gauges and histograms for operators, and their Prometheus text rendering.
//!
//! Everything here is lock-free: a counter is an `AtomicU64` bumped where the event
//! happens (relaxed ordering; readers want totals, not ordering), a histogram is a
//! fixed array of atomic buckets. Nothing allocates on the packet path. Per-viewer
//! per-packet counts are summed in the worker's own plain fields and flushed here on
//! its housekeeping tick (every 100 ms), so the hottest path does not touch a shared
//! cache line per viewer.
//!
//! [`render`] writes the exposition text (format 0.0.4) served at `/metrics`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::core::{MediaKind, SourcePacket};
use crate::ingest::{IngestCounters, RtpIngest};
use crate::media::MediaCounters;
use crate::model::{EndReason, Role, SessionState};
use crate::registry::{SourceView, StreamView};

/// A histogram with fixed bucket bounds and atomic counts: `observe` is a search in a
/// short constant array and three relaxed atomic adds.
#[derive(Debug)]
pub struct Histogram {
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
pub const LATENCY_BOUNDS_NS: &[u64] = &[
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
pub const RTT_BOUNDS_US: &[u64] = &[
    1_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000,
];
/// Loss fraction bounds, parts per million: 0 to 100 %.
pub const LOSS_BOUNDS_PPM: &[u64] = &[
    0, 1_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 1_000_000,
];

impl Histogram {
    /// A histogram over `bounds` (ascending, in units; `per` units make one second,
    /// or one whole).
    pub fn new(bounds: &'static [u64], per: f64) -> Histogram {
        Histogram {
            bounds,
            per,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Forwarding latency in seconds, observed as nanoseconds.
    pub fn latency() -> Histogram {
        Histogram::new(LATENCY_BOUNDS_NS, 1e9)
    }

    /// Records one value in units.
    pub fn observe_units(&self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a duration in the histogram's unit.
    pub fn observe_duration(&self, d: Duration) {
        let units = d.as_secs_f64() * self.per;
        self.observe_units(units.min(u64::MAX as f64) as u64);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of observations, in the rendered unit (seconds or ratio).
    pub fn sum(&self) -> f64 {
        self.sum.load(Ordering::Relaxed) as f64 / self.per
    }

    /// Cumulative counts per upper bound (rendered unit), ending with +Inf.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
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
    pub forward_latency: Histogram,
    /// Round-trip times reported by str0m per session, once a second, in seconds.
    pub rtt: Histogram,
    /// Loss fractions reported by str0m per session, once a second.
    pub loss: Histogram,
    /// WHIP/WHEP POST: request handed to the handler to the 201 ready, in seconds.
    pub session_setup: Histogram,
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
    pub fn created(&self, role: Role) {
        let k = role.index();
        self.created[k].fetch_add(1, Ordering::Relaxed);
        self.states[k][SessionState::Connecting as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A session moved from one state to another.
    pub fn moved(&self, role: Role, from: SessionState, to: SessionState) {
        if from != to {
            let k = role.index();
            self.states[k][from as usize].fetch_sub(1, Ordering::Relaxed);
            self.states[k][to as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A session in `state` ended for `reason`.
    pub fn ended(&self, role: Role, state: SessionState, reason: EndReason) {
        self.states[role.index()][state as usize].fetch_sub(1, Ordering::Relaxed);
        self.ended[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Sessions ever created of a role.
    pub fn created_total(&self, role: Role) -> u64 {
        self.created[role.index()].load(Ordering::Relaxed)
    }

    /// Sessions ended for a reason.
    pub fn ended_total(&self, reason: EndReason) -> u64 {
        self.ended[reason.index()].load(Ordering::Relaxed)
    }

    /// Sessions of a role now in a state.
    pub fn in_state(&self, role: Role, state: SessionState) -> i64 {
        self.states[role.index()][state as usize].load(Ordering::Relaxed)
    }
}

/// Per-stream counters, kept in the stream's lock-free shared state: updated by its
/// source (one writer) and by the workers forwarding it, read by the API.
#[derive(Debug)]
pub struct StreamStats {
    /// When the stream appeared.
    pub created: Instant,
    /// Source RTP packets taken in.
    pub packets_in: AtomicU64,
    /// Source RTP payload bytes taken in.
    pub bytes_in: AtomicU64,
    /// RTP packets written to viewers.
    pub packets_out: AtomicU64,
    /// RTP payload bytes written to viewers (live and from the keyframe cache).
    pub bytes_out: AtomicU64,
    /// Source packets lost: gaps in sequence numbers, less those filled late
    /// (RFC 3550 §6.4.1 cumulative loss, per track and source epoch, never negative).
    pub packets_lost: AtomicU64,
    /// Highest extended sequence number + 1 per track (audio, video); 0 = none yet.
    highest: [AtomicU64; 2],
    epoch: [AtomicU32; 2],
    /// Picture width from the last keyframe that said (0: unknown).
    pub width: AtomicU32,
    /// Picture height from the last keyframe that said (0: unknown).
    pub height: AtomicU32,
    /// When the source last sent a packet (or began), as nanoseconds after `created`.
    last_in: AtomicU64,
    rate: Mutex<RateSample>,
}

#[derive(Debug, Clone, Copy)]
struct RateSample {
    at: Instant,
    bytes_in: u64,
    bytes_out: u64,
    rate_in: u64,
    rate_out: u64,
    fresh: bool,
}

impl Default for StreamStats {
    fn default() -> Self {
        let now = Instant::now();
        StreamStats {
            created: now,
            packets_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            packets_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            packets_lost: AtomicU64::new(0),
            highest: Default::default(),
            epoch: Default::default(),
            width: AtomicU32::new(0),
            height: AtomicU32::new(0),
            last_in: AtomicU64::new(0),
            rate: Mutex::new(RateSample {
                at: now,
                bytes_in: 0,
                bytes_out: 0,
                rate_in: 0,
                rate_out: 0,
                fresh: true,
            }),
        }
    }
}

impl StreamStats {
    /// RTP packets and payload bytes written to viewers.
    pub fn add_out(&self, packets: u64, bytes: u64) {
        self.packets_out.fetch_add(packets, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A source begins (a publisher was granted the stream): its silence counts from
    /// `now` until its first packet.
    pub fn source_started(&self, now: Instant) {
        self.mark_in(now);
    }

    fn mark_in(&self, at: Instant) {
        let ns = at.saturating_duration_since(self.created).as_nanos();
        self.last_in
            .fetch_max(u64::try_from(ns).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// When the source last sent a packet (or began, if it has sent none since).
    pub fn last_in(&self) -> Instant {
        self.created + Duration::from_nanos(self.last_in.load(Ordering::Relaxed))
    }

    /// The instant the source fell silent, when it has sent nothing for `silence`.
    pub fn silent_since(&self, now: Instant, silence: Duration) -> Option<Instant> {
        let last = self.last_in();
        (now.saturating_duration_since(last) >= silence).then_some(last)
    }

    /// Counts one source packet (called by the stream's single source).
    pub fn source_packet(&self, pkt: &SourcePacket) {
        self.mark_in(pkt.arrival);
        self.packets_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in
            .fetch_add(pkt.payload.len() as u64, Ordering::Relaxed);
        let k = usize::from(pkt.kind == MediaKind::Video);
        let next = pkt.seq.wrapping_add(1);
        let highest = self.highest[k].load(Ordering::Relaxed);
        if highest == 0 || self.epoch[k].load(Ordering::Relaxed) != pkt.epoch {
            // A new numbering: the first packet of a source or of a new epoch.
            self.epoch[k].store(pkt.epoch, Ordering::Relaxed);
            self.highest[k].store(next, Ordering::Relaxed);
        } else if next > highest {
            let gap = next - highest - 1;
            if gap > 0 && gap < 1 << 15 {
                self.packets_lost.fetch_add(gap, Ordering::Relaxed);
            }
            self.highest[k].store(next, Ordering::Relaxed);
        } else {
            // Late: it fills a gap counted before (or is a duplicate, which the
            // sources drop before this point).
            let _ = self
                .packets_lost
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }

    /// Takes the picture size a keyframe announces, if it does.
    pub fn keyframe(&self, codec: crate::core::CodecKind, payload: &[u8]) {
        if let Some((w, h)) = crate::core::frame_size(codec, payload) {
            self.width.store(w, Ordering::Relaxed);
            self.height.store(h, Ordering::Relaxed);
        }
    }

    /// Width and height, when a keyframe said.
    pub fn size(&self) -> Option<(u32, u32)> {
        let (w, h) = (
            self.width.load(Ordering::Relaxed),
            self.height.load(Ordering::Relaxed),
        );
        (w > 0 && h > 0).then_some((w, h))
    }

    /// Bits per second in and out: over the time since the previous sample when it is
    /// at least a second old (then a new sample is taken), else the last figures (the
    /// average since the stream started, for the first second).
    pub fn bitrates(&self, now: Instant) -> (u64, u64) {
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        let bytes_out = self.bytes_out.load(Ordering::Relaxed);
        let mut s = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        let dt = now.saturating_duration_since(s.at).as_secs_f64();
        if dt >= 1.0 || s.fresh {
            if dt > 0.0 {
                s.rate_in = ((bytes_in - s.bytes_in.min(bytes_in)) as f64 * 8.0 / dt) as u64;
                s.rate_out = ((bytes_out - s.bytes_out.min(bytes_out)) as f64 * 8.0 / dt) as u64;
            }
            s.fresh = false;
            if dt >= 1.0 {
                s.at = now;
                s.bytes_in = bytes_in;
                s.bytes_out = bytes_out;
            }
        }
        (s.rate_in, s.rate_out)
    }
}

/// The route label of an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRoute {
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

    /// The route of a request path.
    pub fn of(path: &str) -> HttpRoute {
        let mut parts = path.trim_start_matches('/').split('/');
        let first = parts.next().unwrap_or_default();
        let session = parts.nth(1).is_some_and(|s| !s.is_empty());
        match first {
            "whip" if session => HttpRoute::WhipSession,
            "whip" => HttpRoute::Whip,
            "whep" if session => HttpRoute::WhepSession,
            "whep" => HttpRoute::Whep,
            "api" => HttpRoute::Api,
            "metrics" => HttpRoute::Metrics,
            "healthz" | "readyz" => HttpRoute::Health,
            _ => HttpRoute::Other,
        }
    }

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
}

/// Why a bearer token was refused, for `wishd_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
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
    pub fn request(&self, route: HttpRoute, status: u16) {
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
    pub fn auth_failure(&self, why: AuthFailure) {
        self.auth_failures[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered on a route with a status so far.
    pub fn requests(&self, route: HttpRoute, status: u16) -> u64 {
        let r = HttpRoute::ALL
            .iter()
            .position(|x| *x == route)
            .unwrap_or_default();
        let s = STATUSES
            .iter()
            .position(|x| *x == status)
            .unwrap_or(STATUSES.len());
        self.requests[r][s].load(Ordering::Relaxed)
    }
}

/// Writes Prometheus exposition text: a small builder that emits `# HELP`/`# TYPE`
/// once per metric family.
pub struct Exposition {
    out: String,
}

impl Default for Exposition {
    fn default() -> Self {
        Self::new()
    }
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Exposition {
        Exposition {
            out: String::with_capacity(16 * 1024),
        }
    }

    /// Starts a family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample; `labels` is `key="value",...` or empty.
    pub fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) -> &mut Self {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        value: impl std::fmt::Display,
    ) -> &mut Self {
        self.family(name, kind, help).sample(name, "", value)
    }

    /// A histogram family.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Self {
        h.render(&mut self.out, name, help, "");
        self
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Renders the HTTP counters.
pub fn render_http(e: &mut Exposition, http: &HttpMetrics) {
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
pub fn render_sessions(e: &mut Exposition, s: &SessionMetrics) {
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

/// Renders each media worker's load and forward hold.
pub fn render_workers(e: &mut Exposition, w: &crate::media::WorkerGauges) {
    let n = w.count.load(Ordering::Relaxed);
    let gauges: [(&str, &str, &[AtomicU64], f64); 2] = [
        (
            "wishd_worker_busy_ratio",
            "Share of the time a media worker was busy (not waiting for work), smoothed over about a second.",
            &w.load_ppm,
            1e6,
        ),
        (
            "wishd_forward_hold_seconds",
            "How long a media worker holds forwards to send each viewer's as one run (forward_hold; with \"auto\" it follows the worker's load).",
            &w.hold_ns,
            1e9,
        ),
    ];
    for (name, help, values, per) in gauges {
        e.family(name, "gauge", help);
        for (i, v) in values.iter().take(n).enumerate() {
            let value = v.load(Ordering::Relaxed) as f64 / per;
            e.sample(name, &format!("worker=\"{i}\""), value);
        }
    }
}

/// The whole `/metrics` page.
pub fn render(
    c: &MediaCounters,
    streams: &[StreamView],
    ingests: &[RtpIngest],
    http: &HttpMetrics,
) -> String {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut e = Exposition::new();
    render_sessions(&mut e, &c.session_metrics);
    render_workers(&mut e, &c.workers);
    e.family(
        "wishd_streams",
        "gauge",
        "Streams known, by source kind and state.",
    );
    let mut by = [0u64; 4];
    for s in streams {
        let i = match s.source {
            SourceView::WhipLive(_) => 0,
            SourceView::WhipWaiting => 1,
            SourceView::Rtp => {
                let online = ingests
                    .iter()
                    .find(|i| i.stream == s.shared.name)
                    .is_some_and(|i| i.counters.online.load(Ordering::Relaxed));
                if online { 2 } else { 3 }
            }
        };
        by[i] += 1;
    }
    for (i, (kind, state)) in [
        ("whip", "live"),
        ("whip", "waiting"),
        ("rtp", "live"),
        ("rtp", "offline"),
    ]
    .iter()
    .enumerate()
    {
        e.sample(
            "wishd_streams",
            &format!("source=\"{kind}\",state=\"{state}\""),
            by[i],
        );
    }
    e.single(
        "wishd_rtp_packets_in_total",
        "counter",
        "RTP packets taken in from sources (WHIP publishers and RTP ingests).",
        load(&c.source_packets),
    );
    e.single(
        "wishd_rtp_bytes_in_total",
        "counter",
        "RTP payload bytes taken in from sources.",
        load(&c.source_bytes),
    );
    e.single(
        "wishd_rtp_packets_out_total",
        "counter",
        "RTP packets written to viewers (one per viewer).",
        load(&c.forwarded_packets),
    );
    e.single(
        "wishd_rtp_bytes_out_total",
        "counter",
        "RTP payload bytes written to viewers.",
        load(&c.forwarded_bytes),
    );
    e.single(
        "wishd_udp_bytes_in_total",
        "counter",
        "UDP bytes received from WebRTC peers (SRTP, RTCP, STUN, DTLS).",
        load(&c.udp_bytes_in),
    );
    e.single(
        "wishd_udp_bytes_out_total",
        "counter",
        "UDP bytes sent to WebRTC peers.",
        load(&c.udp_bytes_out),
    );
    e.single(
        "wishd_udp_datagrams_out_total",
        "counter",
        "UDP datagrams sent to WebRTC peers.",
        load(&c.udp_datagrams_out),
    );
    e.single(
        "wishd_udp_send_calls_total",
        "counter",
        "System calls that sent them (sendmmsg and GSO batch datagrams: datagrams per call is the batching factor).",
        load(&c.udp_send_calls),
    );
    e.family(
        "wishd_offer_templates_total",
        "counter",
        "Offers by how str0m got them: parsed, or copied from a template parsed for an \
         earlier offer that differed only in credentials, fingerprint and candidates.",
    );
    for (how, n) in [
        ("parsed", load(&c.offer_templates_parsed)),
        ("copied", load(&c.offer_templates_copied)),
    ] {
        e.sample("wishd_offer_templates_total", &format!("how=\"{how}\""), n);
    }
    e.family(
        "wishd_dropped_packets_total",
        "counter",
        "Packets dropped, by reason.",
    );
    let sum = |f: fn(&IngestCounters) -> &AtomicU64| -> u64 {
        ingests.iter().map(|i| load(f(&i.counters))).sum()
    };
    let drops: [(&str, u64); 13] = [
        ("worker_queue_full", load(&c.cross_worker_drops)),
        ("worker_queue_stale", load(&c.stale_source_packets)),
        ("unroutable_datagram", load(&c.unroutable_datagrams)),
        ("waiting_for_keyframe", load(&c.dropped_waiting_keyframe)),
        ("unmapped_payload_type", load(&c.dropped_no_pt)),
        ("too_old", load(&c.dropped_too_old)),
        ("rtp_other_sender", sum(|i| &i.dropped_sender)),
        ("rtp_malformed", sum(|i| &i.dropped_malformed)),
        ("rtp_oversized", sum(|i| &i.dropped_oversized)),
        ("rtp_duplicate", sum(|i| &i.dropped_duplicate)),
        ("rtp_late", sum(|i| &i.dropped_late)),
        ("rtp_unknown_payload_type", sum(|i| &i.dropped_unknown_pt)),
        ("session_panic", load(&c.session_panics)),
    ];
    for (reason, n) in drops {
        e.sample(
            "wishd_dropped_packets_total",
            &format!("reason=\"{reason}\""),
            n,
        );
    }
    e.family(
        "wishd_keyframe_requests_total",
        "counter",
        "Keyframe requests: sent to publishers (pli, fir), received from viewers, \
         coalesced into one already sent, held while the source is silent, and viewers \
         started from the keyframe cache.",
    );
    for (what, n) in [
        ("pli_sent", load(&c.pli_sent)),
        ("fir_sent", load(&c.fir_sent)),
        ("received", load(&c.keyframe_requests_received)),
        ("coalesced", load(&c.keyframe_requests_coalesced)),
        ("held_while_silent", load(&c.keyframe_requests_held)),
        ("served_from_cache", load(&c.keyframe_cache_starts)),
    ] {
        e.sample(
            "wishd_keyframe_requests_total",
            &format!("type=\"{what}\""),
            n,
        );
    }
    e.family(
        "wishd_nacks_total",
        "counter",
        "NACKs received from viewers (answered from the send buffer) and sent to publishers.",
    );
    e.sample(
        "wishd_nacks_total",
        "direction=\"received\"",
        load(&c.nacks_received),
    );
    e.sample(
        "wishd_nacks_total",
        "direction=\"sent\"",
        load(&c.nacks_sent),
    );
    e.single(
        "wishd_packets_resent_total",
        "counter",
        "Packets resent to viewers answering their NACKs (direct egress path).",
        load(&c.packets_resent),
    );
    e.single(
        "wishd_rtp_ssrc_changes_total",
        "counter",
        "SSRC changes of RTP ingest sources (camera restarts).",
        sum(|i| &i.ssrc_changes),
    );
    e.histogram(
        "wishd_forward_latency_seconds",
        "Source packet arrival at the worker to the hand-over to the socket for the \
         worker's last viewer of it.",
        &c.histograms.forward_latency,
    );
    e.histogram(
        "wishd_session_setup_seconds",
        "WHIP and WHEP POSTs answered 201: request read to answer ready (token check, \
         offer checks, the session's negotiation and its hand-over to a worker).",
        &c.histograms.session_setup,
    );
    e.histogram(
        "wishd_rtt_seconds",
        "Round-trip times of sessions, sampled once a second per session.",
        &c.histograms.rtt,
    );
    e.histogram(
        "wishd_loss_ratio",
        "Packet loss fractions of sessions, sampled once a second per session.",
        &c.histograms.loss,
    );
    render_http(&mut e, http);
    e.finish()
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

    fn pkt(kind: MediaKind, seq: u64, epoch: u32) -> SourcePacket {
        SourcePacket {
            kind,
            pt: 96,
            seq,
            timestamp: 0,
            marker: false,
            keyframe_start: false,
            epoch,
            arrival: Instant::now(),
            wallclock: Instant::now(),
            payload: Arc::from(&[0u8; 10][..]),
        }
    }

    #[test]
    fn stream_loss_counts_gaps_less_late_arrivals_per_track_and_epoch() {
        let s = StreamStats::default();
        for seq in [100, 101, 104, 105] {
            s.source_packet(&pkt(MediaKind::Video, seq, 1));
        }
        assert_eq!(s.packets_lost.load(Ordering::Relaxed), 2);
        s.source_packet(&pkt(MediaKind::Video, 102, 1));
        assert_eq!(
            s.packets_lost.load(Ordering::Relaxed),
            1,
            "late fills a gap"
        );
        // Audio has its own numbering; a new epoch restarts it without a "gap".
        s.source_packet(&pkt(MediaKind::Audio, 7, 1));
        s.source_packet(&pkt(MediaKind::Video, 5, 2));
        s.source_packet(&pkt(MediaKind::Video, 6, 2));
        assert_eq!(s.packets_lost.load(Ordering::Relaxed), 1);
        assert_eq!(s.packets_in.load(Ordering::Relaxed), 8);
        assert_eq!(s.bytes_in.load(Ordering::Relaxed), 80);
    }

    #[test]
    fn bitrates_average_over_at_least_a_second() {
        let s = StreamStats::default();
        let t0 = s.created;
        s.bytes_in.store(1000, Ordering::Relaxed);
        assert_eq!(s.bitrates(t0 + Duration::from_millis(500)).0, 16_000);
        s.bytes_in.store(2000, Ordering::Relaxed);
        // Still within the first second: the figure is not recomputed.
        assert_eq!(s.bitrates(t0 + Duration::from_millis(700)).0, 16_000);
        assert_eq!(s.bitrates(t0 + Duration::from_secs(2)).0, 8_000);
        s.bytes_in.store(4000, Ordering::Relaxed);
        assert_eq!(s.bitrates(t0 + Duration::from_secs(3)).0, 16_000);
    }

    #[test]
    fn routes_are_labelled_by_shape_not_by_name() {
        assert_eq!(HttpRoute::of("/whip/cam"), HttpRoute::Whip);
        assert_eq!(HttpRoute::of("/whip/cam/"), HttpRoute::Whip);
        assert_eq!(HttpRoute::of("/whep/cam/abc"), HttpRoute::WhepSession);
        assert_eq!(HttpRoute::of("/api/streams"), HttpRoute::Api);
        assert_eq!(HttpRoute::of("/readyz"), HttpRoute::Health);
        assert_eq!(HttpRoute::of("/favicon.ico"), HttpRoute::Other);
    }
}
