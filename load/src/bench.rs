//! The fan-out benchmark: one publisher, viewers stepped up (1, 10, 50, 100, 200, 400,
//! …) until loss passes a bound, the machine runs out or the time cap is reached; then
//! a burst of viewers joining at once. Every step records the server's CPU and
//! memory (from /proc), the viewers' loss and delay, POST→201 and join times, the
//! server's own forwarding latency (from `/metrics`, when exported) and this tool's
//! CPU, and relates the server's CPU per forwarded packet to the physical floor.
//!
//! Two floors are measured beside the server under the same load, because two of
//! the targets are latencies that the machine itself bounds: the hand-over floor
//! ([`crate::wake`]: a thread's wake-up after a channel send, which every forward from
//! one worker to another starts with) in every step, and, before the burst, a burst
//! of POSTs that are never connected, whose server CPU per POST bounds how soon the
//! last of them can be answered on this many cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::SendTable;
use crate::floor::{self, Floor};
use crate::http_floor;
use crate::metrics::{self, Buckets};
use crate::procfs;
use crate::publisher::{Layer, Publisher, PublisherConfig};
use crate::run::{ramp, wait_connected};
use crate::signal::{self, SetupError};
use crate::stats::{self, ViewerReport, fmt_opt, percentile};
use crate::swarm::{Swarm, SwarmConfig};
use crate::wake::WakeProbe;

/// One hand-over of the wake probe every this long (500 a second: a 10 s step
/// gives 5000 samples, and the probe costs the machine little).
pub const WAKE_INTERVAL: Duration = Duration::from_millis(2);

/// The histogram the server exports for its forwarding latency.
pub const FORWARD_HISTOGRAM: &str = "wishd_forward_latency_seconds";
/// The server's own POST→201 histogram (wishd's name).
pub const SETUP_HISTOGRAM: &str = "wishd_session_setup_seconds";
/// The server threads whose run-queue wait is reported (wishd's media workers; a
/// server without such threads is measured over all its threads).
pub const MEDIA_THREADS: &str = "wishd-media";
/// wishd's per-worker busy share (gauge).
pub const BUSY_GAUGE: &str = "wishd_worker_busy_ratio";
/// wishd's per-worker forward hold (gauge, seconds).
pub const HOLD_GAUGE: &str = "wishd_forward_hold_seconds";

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The publisher.
    pub publisher: PublisherConfig,
    /// The viewers.
    pub swarm: SwarmConfig,
    /// The server's pid (its CPU and memory are read from /proc).
    pub server_pid: u32,
    /// The server's `/metrics` URL, if any.
    pub metrics_url: Option<String>,
    /// Viewer counts to step through, ascending.
    pub steps: Vec<usize>,
    /// Measurement window per step.
    pub step_window: Duration,
    /// Wait after the ramp before measuring.
    pub settle: Duration,
    /// Viewers started per second while ramping.
    pub ramp_per_sec: f64,
    /// Stop after the first step whose loss passes this, percent.
    pub loss_stop_pct: f64,
    /// Stop starting steps after this much time.
    pub total_cap: Duration,
    /// Viewers of the burst (0: no burst).
    pub burst: usize,
    /// A captured offer (its name, its text) to POST as many times again after the
    /// POST-only burst, each a client of its own ([`crate::offer::another_client`]).
    pub post_offer: Option<(String, String)>,
    /// A captured WHIP offer (its name, its text) POSTed as many times after that,
    /// each a publisher of a stream of its own (the publisher's URL with `-burst-N`).
    pub whip_offer: Option<(String, String)>,
    /// Time per floor figure.
    pub floor_budget: Duration,
}

/// One step's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Viewers asked for.
    pub viewers: usize,
    /// Viewers connected in the window.
    pub connected: usize,
    /// Server CPU seconds per second.
    pub server_cpu: f64,
    /// Server RSS, MiB.
    pub server_rss_mib: f64,
    /// (RSS − RSS with the publisher alone) / viewers, KiB.
    pub rss_per_viewer_kib: Option<f64>,
    /// Packets forwarded per second, summed over viewers: the publisher's packets in
    /// the window × connected viewers × (1 − loss). Independent of how far behind the
    /// tool is in reading them.
    pub packets_per_s: f64,
    /// Packets the viewers read in the window, per second (can exceed the above when
    /// the tool works off a backlog).
    pub received_per_s: f64,
    /// Server CPU per forwarded packet per viewer, ns (all of the server's CPU).
    pub cpu_per_packet_ns: Option<f64>,
    /// `cpu_per_packet_ns` / floor (SRTP + one sendto).
    pub ratio_to_floor: Option<f64>,
    /// Loss, percent.
    pub loss_pct: f64,
    /// Worst viewer's loss, percent.
    pub worst_viewer_loss_pct: f64,
    /// Publisher → viewer delay, µs (both loopback hops and the tool included).
    pub delay_p50_us: Option<f64>,
    /// 99th percentile, µs.
    pub delay_p99_us: Option<f64>,
    /// The server's forwarding latency from `/metrics`, µs.
    pub server_forward_p50_us: Option<f64>,
    /// 99th percentile, µs.
    pub server_forward_p99_us: Option<f64>,
    /// POST→201 of the viewers that joined in this step, ms.
    pub post_p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub post_p99_ms: Option<f64>,
    /// POST→first keyframe packet of the viewers that joined in this step, ms.
    pub join_p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub join_p99_ms: Option<f64>,
    /// This tool's CPU seconds per second.
    pub tool_cpu: f64,
    /// Host-wide UDP receive-buffer drops in the window.
    pub udp_rcvbuf_drops: Option<u64>,
    /// The server's media threads' time waiting for a core (runnable, not running)
    /// per second of their time on one: how much scheduling stretched their work.
    pub media_wait_per_run: Option<f64>,
    /// The busiest media worker's busy share at the window's end (wishd's gauge).
    pub worker_busy: Option<f64>,
    /// The longest forward hold of a worker at the window's end, ms (wishd's gauge).
    pub hold_ms: Option<f64>,
    /// The hand-over floor in the window ([`crate::wake`]), µs.
    pub wake_p50_us: Option<f64>,
    /// 99th percentile, µs.
    pub wake_p99_us: Option<f64>,
    /// The share of all CPUs' time the hypervisor took in the window, percent: time
    /// in which a virtual CPU, and whatever thread was on it, stood still.
    pub steal_pct: Option<f64>,
}

/// A burst of POSTs whose sessions are deleted unconnected: what answering an offer
/// alone costs the server, and the latency that cost implies for a burst.
#[derive(Debug, Clone, Serialize)]
pub struct PostOnly {
    /// POSTs sent at once.
    pub posts: usize,
    /// POSTs answered with a 201.
    pub created: usize,
    /// POST→201, ms.
    pub post_p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub post_p99_ms: Option<f64>,
    /// The server's CPU from the first POST to the last 201, per 201, ms.
    pub server_cpu_ms_per_post: Option<f64>,
    /// Of that, wishd's media workers' (taking the session over).
    pub media_cpu_ms_per_post: Option<f64>,
    /// Of that, what wishd's threads that make DTLS sessions ahead of offers spent
    /// in the burst, refilling what it took; the rest is its HTTP threads'.
    pub preparing_cpu_ms_per_post: Option<f64>,
    /// The queueing bound on the p99: the ⌈0.99·n⌉-th answer cannot leave before that
    /// many POSTs' CPU has been spent on `cpus` cores, ms.
    pub p99_bound_ms: Option<f64>,
    /// The server CPU per POST at which a burst of this size could have a p99 of
    /// [`POST_TARGET`] on this many cores, µs.
    pub cpu_for_target_us: f64,
    /// Whose offers: the tool's viewers', or a captured file's name.
    pub offer: String,
    /// Of these offers, how many the server parsed and how many it answered from a
    /// template it had parsed before (wishd's `wishd_offer_templates_total`);
    /// `None` for a server without that counter.
    pub templates_parsed: Option<f64>,
    /// See `templates_parsed`.
    pub templates_copied: Option<f64>,
    /// Of these offers, how many wishd's inspection parsed whole and how many it
    /// gave an earlier offer's verdict (`wishd_offer_inspections_total`).
    pub inspections_parsed: Option<f64>,
    /// See `inspections_parsed`.
    pub inspections_remembered: Option<f64>,
    /// The same sessions each trickle one candidate at once (PATCH → 204).
    pub patch: Option<RequestBurst>,
    /// Then all of them are DELETEd at once.
    pub delete: Option<RequestBurst>,
}

/// One kind of request sent to every session of the POST-only burst at once.
#[derive(Debug, Clone, Serialize)]
pub struct RequestBurst {
    /// Requests sent.
    pub requests: usize,
    /// Answered with the status the spec names (204 for a trickle PATCH, 200 for a
    /// DELETE).
    pub ok: usize,
    /// Request → response, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// The server's CPU over the burst per request, ms (its threads' `schedstat`).
    pub server_cpu_ms_per_request: Option<f64>,
    /// Of that, wishd's media workers' (the rest is its HTTP threads').
    pub media_cpu_ms_per_request: Option<f64>,
    /// The queueing bound on the p99 that CPU implies on this machine's cores, ms.
    pub p99_bound_ms: Option<f64>,
}

/// Sends `requests` at once (each future resolves to its status), and measures what
/// the server's threads spent meanwhile.
async fn request_burst<F>(pid: u32, ok_status: u16, requests: Vec<F>) -> RequestBurst
where
    F: std::future::Future<Output = Option<u16>> + Send + 'static,
{
    let n = requests.len();
    let before = procfs::thread_cpu_ns(pid);
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|f| {
            tokio::spawn(async move {
                let t0 = std::time::Instant::now();
                let status = f.await;
                (status, t0.elapsed().as_secs_f64() * 1e3)
            })
        })
        .collect();
    let mut times = Vec::with_capacity(n);
    let mut ok = 0;
    for t in tasks {
        if let Ok((status, ms)) = t.await {
            ok += usize::from(status == Some(ok_status));
            times.push(ms);
        }
    }
    let after = procfs::thread_cpu_ns(pid);
    let cpu_ms = thread_ms_per(before, after, n);
    let media_ms = part_ms_per(before, after, n, |c| c.media);
    RequestBurst {
        requests: n,
        ok,
        p50_ms: percentile(&mut times, 0.5),
        p99_ms: percentile(&mut times, 0.99),
        server_cpu_ms_per_request: cpu_ms,
        media_cpu_ms_per_request: media_ms,
        p99_bound_ms: cpu_ms.map(|c| p99_bound_ms(n, c, cpus())),
    }
}

/// A trickle fragment for an offer: one host candidate for its first m-section.
fn trickle_fragment(offer: &str) -> String {
    let mid = offer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=mid:"))
        .unwrap_or("0");
    format!("a=mid:{mid}\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n")
}

/// wishd's count of offers parsed and answered from a known template.
const TEMPLATES_COUNTER: &str = "wishd_offer_templates_total";
/// wishd's count of viewers' offers inspected whole and given a remembered verdict.
const INSPECTIONS_COUNTER: &str = "wishd_offer_inspections_total";

/// wishd's offer counters so far, from the server's `/metrics`: templates (parsed,
/// copied), inspections (parsed, remembered).
#[derive(Clone, Copy, Default)]
struct OfferCounts {
    templates: (Option<f64>, Option<f64>),
    inspections: (Option<f64>, Option<f64>),
}

async fn offer_counts(metrics_url: Option<&str>) -> OfferCounts {
    let Some(text) = metrics_url.map(metrics::scrape_text) else {
        return OfferCounts::default();
    };
    let Some(text) = text.await else {
        return OfferCounts::default();
    };
    let how = |counter, h| metrics::parse_counter_with(&text, counter, "how", h);
    OfferCounts {
        templates: (
            how(TEMPLATES_COUNTER, "parsed"),
            how(TEMPLATES_COUNTER, "copied"),
        ),
        inspections: (
            how(INSPECTIONS_COUNTER, "parsed"),
            how(INSPECTIONS_COUNTER, "remembered"),
        ),
    }
}

/// The POST→201 p99 the issue asks for under a burst.
pub const POST_TARGET: Duration = Duration::from_millis(5);

/// The burst's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    /// Viewers started at once.
    pub viewers: usize,
    /// Viewers connected (ICE+DTLS) and joined.
    pub connected: usize,
    /// First POST → last viewer connected, s.
    pub seconds: f64,
    /// connected / seconds.
    pub sessions_per_s: f64,
    /// POST→201, ms.
    pub post_p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub post_p99_ms: Option<f64>,
    /// The HTTP floor: the same number of OPTIONS requests on the WHEP endpoint at
    /// once, each on a new connection (TCP and HTTP without a session), p50 ms.
    pub options_p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub options_p99_ms: Option<f64>,
    /// The server's CPU per OPTIONS of that burst, ms: what a request costs it with
    /// no work of its own (a connection, HTTP, routing).
    pub options_server_cpu_ms: Option<f64>,
    /// The same number of requests at once to a server in the tool that answers
    /// `204` and does nothing else ([`crate::http_floor`]): what the connections and
    /// the client cost a burst on this machine, whatever the server, p50 ms.
    pub empty_p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub empty_p99_ms: Option<f64>,
    /// POST handling inside the server (its own histogram, bucket upper bounds), ms.
    pub server_post_p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub server_post_p99_ms: Option<f64>,
    /// POST→connected, ms.
    pub connect_p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub connect_p99_ms: Option<f64>,
    /// The server's CPU from the first POST until [`BURST_TAIL`] after every viewer
    /// settled, per viewer connected, ms: what a joining viewer costs it (HTTP, SDP,
    /// ICE, DTLS, the cached group of pictures it starts with, and the live stream
    /// to every viewer in that time).
    pub server_cpu_ms_per_session: Option<f64>,
    /// The same for this tool.
    pub tool_cpu_ms_per_session: Option<f64>,
    /// The same number of POSTs, never connected, just before.
    pub post_only: Option<PostOnly>,
    /// Then as many POSTs of a captured offer (`--post-offer`), never connected.
    pub post_captured: Option<PostOnly>,
    /// Then as many publishers' POSTs of a captured WHIP offer (`--whip-offer`), each
    /// to a stream of its own, never connected.
    pub whip_captured: Option<PostOnly>,
    /// Viewers that failed and the first reason.
    pub failed: usize,
    /// The first failure reason, if any.
    pub first_error: Option<String>,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// CPUs of the machine.
    pub cpus: usize,
    /// The floor.
    pub floor: Floor,
    /// The stream: video bits/s and packets/s, audio packets/s.
    pub video_bitrate: f64,
    /// Video pacing as a multiple of the bit rate (None: frames sent back to back).
    pub pacing: Option<f64>,
    /// Video packets per second.
    pub video_pps: f64,
    /// Audio packets per second.
    pub audio_pps: u32,
    /// Server CPU s/s and RSS with the publisher alone.
    pub idle_server_cpu: f64,
    /// RSS with the publisher alone, MiB.
    pub idle_server_rss_mib: f64,
    /// The hand-over floor with the publisher alone ([`crate::wake`]), µs.
    pub idle_wake_p50_us: Option<f64>,
    /// 99th percentile, µs.
    pub idle_wake_p99_us: Option<f64>,
    /// The hypervisor's steal with the publisher alone, percent of all CPUs' time.
    pub idle_steal_pct: Option<f64>,
    /// The steps run.
    pub steps: Vec<Step>,
    /// Why stepping stopped.
    pub stopped: String,
    /// The burst.
    pub burst: Option<Burst>,
    /// Whether the server exported the forwarding histogram.
    pub server_histogram: bool,
    /// The simulcast layers the publisher offered (`None`: one encoding). The stream
    /// figures above and the steps count the top layer: one viewer's share.
    pub simulcast: Option<Vec<Layer>>,
    /// The RIDs of the layers the server took (empty: it declined simulcast and gets
    /// the top layer alone, or none was offered).
    pub layers_sent: Vec<String>,
}

struct Snap {
    at: Instant,
    server: Option<procfs::Usage>,
    tool: Option<procfs::Usage>,
    drops: Option<u64>,
    hist: Option<Buckets>,
    busy: Option<f64>,
    hold_s: Option<f64>,
    sched: Option<procfs::Sched>,
    host: Option<procfs::HostCpu>,
}

async fn snap(cfg: &BenchConfig) -> Snap {
    let text = match cfg.metrics_url.as_deref() {
        Some(url) => metrics::scrape_text(url).await,
        None => None,
    };
    let text = text.as_deref().unwrap_or_default();
    Snap {
        at: Instant::now(),
        server: procfs::usage(Some(cfg.server_pid)),
        tool: procfs::usage(None),
        drops: procfs::udp_rcvbuf_errors(),
        hist: metrics::parse_histogram(text, FORWARD_HISTOGRAM),
        busy: metrics::parse_gauge_max(text, BUSY_GAUGE),
        hold_s: metrics::parse_gauge_max(text, HOLD_GAUGE),
        sched: procfs::sched(cfg.server_pid, MEDIA_THREADS),
        host: procfs::host_cpu(),
    }
}

/// The hypervisor's steal between two snapshots, percent.
fn steal(a: &Snap, b: &Snap) -> Option<f64> {
    a.host.zip(b.host).and_then(|(x, y)| x.steal_pct(&y))
}

/// CPU milliseconds spent between readings `a` and `b`, per one of `n` things done
/// in between (`None` without both readings or when nothing was done).
/// The threads' CPU between two `schedstat` readings (ns), per one of `n`, ms.
fn thread_ms_per(
    before: Option<procfs::ThreadCpu>,
    after: Option<procfs::ThreadCpu>,
    n: usize,
) -> Option<f64> {
    ms_per(before, after, n, |c| c.all)
}

/// The part of [`thread_ms_per`] of the server threads `which` picks (wishd's media
/// workers, or its threads that make DTLS sessions ahead); `None` for a server
/// without such threads.
fn part_ms_per(
    before: Option<procfs::ThreadCpu>,
    after: Option<procfs::ThreadCpu>,
    n: usize,
    which: fn(&procfs::ThreadCpu) -> u64,
) -> Option<f64> {
    ms_per(before, after, n, which).filter(|_| after.is_some_and(|c| which(&c) > 0))
}

/// `which` part of two `schedstat` readings' difference (ns), per one of `n`, ms.
fn ms_per(
    before: Option<procfs::ThreadCpu>,
    after: Option<procfs::ThreadCpu>,
    n: usize,
    which: fn(&procfs::ThreadCpu) -> u64,
) -> Option<f64> {
    before
        .zip(after)
        .filter(|_| n > 0)
        .map(|(a, b)| which(&b).saturating_sub(which(&a)) as f64 / 1e6 / n as f64)
}

/// " (media workers X ms; made ahead Z ms; an OPTIONS Y ms)" for a request's CPU,
/// when known.
fn split(media_ms: Option<f64>, preparing_ms: Option<f64>, options_ms: Option<f64>) -> String {
    let mut parts = Vec::new();
    if let Some(m) = media_ms {
        parts.push(format!("media workers {m:.3} ms"));
    }
    if let Some(p) = preparing_ms {
        parts.push(format!("DTLS sessions made ahead {p:.3} ms"));
    }
    if let Some(o) = options_ms {
        parts.push(format!("an OPTIONS {o:.3} ms"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

fn cpu_ms_per(a: Option<procfs::Usage>, b: Option<procfs::Usage>, n: usize) -> Option<f64> {
    a.zip(b)
        .filter(|_| n > 0)
        .map(|(a, b)| (b.cpu_s - a.cpu_s) * 1e3 / n as f64)
}

fn cpu(a: &Snap, b: &Snap, who: fn(&Snap) -> Option<procfs::Usage>) -> f64 {
    let dt = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
    match (who(a), who(b)) {
        (Some(x), Some(y)) => (y.cpu_s - x.cpu_s) / dt,
        _ => 0.0,
    }
}

/// Runs the benchmark; `progress` gets a line per phase.
pub async fn bench(cfg: BenchConfig, progress: impl Fn(&str)) -> Result<BenchReport, SetupError> {
    progress("measuring the floor");
    let budget = cfg.floor_budget;
    let floor = tokio::task::spawn_blocking(move || floor::measure(budget))
        .await
        .map_err(|e| SetupError::Rtc(e.to_string()))??;
    let started = Instant::now();
    let table = Arc::new(SendTable::default());
    let publisher = Publisher::start(cfg.publisher.clone(), table.clone()).await?;
    if !publisher.wait_connected(Duration::from_secs(10)).await {
        return Err(SetupError::Rtc(format!(
            "the publisher did not connect in 10 s: {}",
            publisher.why_not_connected()
        )));
    }
    progress("publisher connected; measuring the server with the publisher alone");
    let probe = WakeProbe::start(WAKE_INTERVAL)?;
    let a = snap(&cfg).await;
    probe.take();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = snap(&cfg).await;
    let idle_wake = probe.take();
    let idle_cpu = cpu(&a, &b, |s| s.server);
    let idle_rss = b.server.map_or(0, |u| u.rss);
    let server_histogram = b.hist.is_some();

    let swarm = Arc::new(Swarm::new(cfg.swarm.clone(), table)?);
    let mut steps = Vec::new();
    let mut current = 0usize;
    let mut stopped = "all steps done".to_string();
    for &n in &cfg.steps {
        if started.elapsed() > cfg.total_cap {
            stopped = format!("time cap of {} s reached", cfg.total_cap.as_secs());
            break;
        }
        if n <= current {
            continue;
        }
        progress(&format!("step {n}: ramping {} viewers in", n - current));
        let first_new = swarm_next_id(&swarm).await;
        ramp(&swarm, n - current, cfg.ramp_per_sec).await;
        current = n;
        let wait = Duration::from_secs(10) + Duration::from_secs_f64(n as f64 / 100.0);
        wait_connected(&swarm, n, wait).await;
        tokio::time::sleep(cfg.settle).await;
        swarm.reset_window().await;
        let sent0 = sent(&publisher);
        let s0 = snap(&cfg).await;
        probe.take();
        tokio::time::sleep(cfg.step_window).await;
        let s1 = snap(&cfg).await;
        let wake = probe.take();
        let source_packets = sent(&publisher) - sent0;
        let reports = swarm.reports().await;
        let mut step = make_step(
            n,
            &reports,
            first_new,
            (&s0, &s1),
            source_packets,
            idle_rss,
            &floor,
        );
        step.wake_p50_us = wake_us(&wake, 0.5);
        step.wake_p99_us = wake_us(&wake, 0.99);
        progress(&format!(
            "step {n}: {} connected, server CPU {:.3} s/s, loss {:.3} %",
            step.connected, step.server_cpu, step.loss_pct
        ));
        let loss = step.loss_pct;
        let connected = step.connected;
        steps.push(step);
        if loss > cfg.loss_stop_pct {
            stopped = format!(
                "loss {loss:.2} % passed {} % at {n} viewers",
                cfg.loss_stop_pct
            );
            break;
        }
        if (connected as f64) < n as f64 * 0.9 {
            stopped = format!("only {connected} of {n} viewers connected");
            break;
        }
    }
    progress("removing the viewers");
    swarm.clear(16).await;

    let burst = if cfg.burst > 0 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        progress(&format!("burst: {} viewers at once", cfg.burst));
        Some(run_burst(&swarm, cfg.burst, &cfg).await)
    } else {
        None
    };
    swarm.clear(16).await;
    probe.stop();
    let layers_sent = publisher.layers_sent.clone();
    publisher.stop().await;
    if let Ok(s) = Arc::try_unwrap(swarm) {
        s.stop();
    }
    let top = cfg.publisher.top_shape();
    Ok(BenchReport {
        cpus: cpus(),
        floor,
        video_bitrate: top.bitrate(),
        pacing: cfg.publisher.pacing,
        video_pps: top.packets_per_second(),
        audio_pps: cfg.publisher.audio_pps,
        idle_server_cpu: idle_cpu,
        idle_server_rss_mib: idle_rss as f64 / 1048576.0,
        idle_wake_p50_us: wake_us(&idle_wake, 0.5),
        idle_wake_p99_us: wake_us(&idle_wake, 0.99),
        idle_steal_pct: steal(&a, &b),
        steps,
        stopped,
        burst,
        server_histogram,
        simulcast: cfg.publisher.simulcast.clone(),
        layers_sent,
    })
}

/// A quantile of the wake probe's nanoseconds, in µs.
fn wake_us(h: &crate::stats::Histogram, q: f64) -> Option<f64> {
    h.quantile(q).map(|ns| ns as f64 / 1e3)
}

async fn swarm_next_id(swarm: &Swarm) -> u32 {
    swarm
        .reports()
        .await
        .iter()
        .map(|r| r.id + 1)
        .max()
        .unwrap_or(0)
}

/// Media packets the publisher has sent so far of what one viewer gets: audio and the
/// top layer's video (all video without simulcast).
fn sent(p: &Publisher) -> u64 {
    let c = p.counters();
    c.top_layer_packets
        .load(std::sync::atomic::Ordering::Relaxed)
        + c.audio_packets.load(std::sync::atomic::Ordering::Relaxed)
}

fn make_step(
    n: usize,
    reports: &[ViewerReport],
    first_new: u32,
    (s0, s1): (&Snap, &Snap),
    source_packets: u64,
    idle_rss: u64,
    floor: &Floor,
) -> Step {
    let window = s1.at.duration_since(s0.at).as_secs_f64().max(1e-3);
    let agg = stats::aggregate(reports);
    let fresh: Vec<ViewerReport> = reports
        .iter()
        .filter(|r| r.id >= first_new)
        .cloned()
        .collect();
    let fresh = stats::aggregate(&fresh);
    let server_cpu = cpu(s0, s1, |s| s.server);
    let packets_per_s =
        source_packets as f64 * agg.connected as f64 * (1.0 - agg.loss_pct / 100.0) / window;
    let received_per_s = agg.received as f64 / window;
    let cpu_per_packet_ns = (packets_per_s > 0.0).then(|| server_cpu / packets_per_s * 1e9);
    let rss = s1.server.map_or(0, |u| u.rss);
    let hist = match (&s0.hist, &s1.hist) {
        (Some(a), Some(b)) => Some(b.since(a)),
        _ => None,
    };
    Step {
        viewers: n,
        connected: agg.connected,
        server_cpu,
        server_rss_mib: rss as f64 / 1048576.0,
        rss_per_viewer_kib: (n > 0 && idle_rss > 0)
            .then(|| rss.saturating_sub(idle_rss) as f64 / 1024.0 / n as f64),
        packets_per_s,
        received_per_s,
        cpu_per_packet_ns,
        ratio_to_floor: cpu_per_packet_ns.map(|c| c / floor.floor_ns),
        loss_pct: agg.loss_pct,
        worst_viewer_loss_pct: agg.worst_viewer_loss_pct,
        delay_p50_us: agg.delay_p50_us,
        delay_p99_us: agg.delay_p99_us,
        server_forward_p50_us: hist.as_ref().and_then(|h| h.quantile(0.5)).map(|s| s * 1e6),
        server_forward_p99_us: hist
            .as_ref()
            .and_then(|h| h.quantile(0.99))
            .map(|s| s * 1e6),
        post_p50_ms: fresh.post_p50_ms,
        post_p99_ms: fresh.post_p99_ms,
        join_p50_ms: fresh.join_p50_ms,
        join_p99_ms: fresh.join_p99_ms,
        tool_cpu: cpu(s0, s1, |s| s.tool),
        udp_rcvbuf_drops: s0.drops.zip(s1.drops).map(|(a, b)| b.saturating_sub(a)),
        media_wait_per_run: s0.sched.zip(s1.sched).and_then(|(a, b)| {
            let run = b.run_s - a.run_s;
            (run > 0.0).then(|| (b.wait_s - a.wait_s).max(0.0) / run)
        }),
        worker_busy: s1.busy,
        hold_ms: s1.hold_s.map(|s| s * 1e3),
        wake_p50_us: None,
        wake_p99_us: None,
        steal_pct: steal(s0, s1),
    }
}

/// How long the burst's CPU figures run on after the last viewer connected.
pub const BURST_TAIL: Duration = Duration::from_secs(1);

/// The rank of the p99 among `n` answers: ⌈0.99·`n`⌉, at least 1.
fn p99_rank(n: usize) -> f64 {
    (0.99 * n as f64).ceil().max(1.0)
}

/// The ⌈0.99·`n`⌉-th of `n` answers needs that many POSTs' CPU (`cpu_ms` each) spent
/// on `cpus` cores before it can leave, and at least its own on one core: a lower
/// bound on the p99, ms.
pub fn p99_bound_ms(n: usize, cpu_ms: f64, cpus: usize) -> f64 {
    (p99_rank(n) * cpu_ms / cpus.max(1) as f64).max(cpu_ms)
}

/// The inverse of [`p99_bound_ms`]: the most CPU per POST with which `n` POSTs at
/// once could have a p99 of `target` on `cpus` cores (same unit as `target`).
pub fn cpu_for_p99(n: usize, target: f64, cpus: usize) -> f64 {
    (target * cpus.max(1) as f64 / p99_rank(n)).min(target)
}

/// CPUs of this machine.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `offers` POSTed at once (named `name`), whose sessions are deleted without
/// connecting.
async fn post_only_burst(
    name: &str,
    posts: Vec<(String, String)>,
    token: Option<String>,
    cfg: &BenchConfig,
) -> PostOnly {
    let n = posts.len();
    let cpus = cpus();
    let fragment = posts
        .first()
        .map(|(_, o)| trickle_fragment(o))
        .unwrap_or_default();
    let counts0 = offer_counts(cfg.metrics_url.as_deref()).await;
    let server0 = procfs::usage(Some(cfg.server_pid));
    let threads0 = procfs::thread_cpu_ns(cfg.server_pid);
    let tasks: Vec<_> = posts
        .into_iter()
        .map(|(url, offer)| {
            let token = token.clone();
            tokio::spawn(async move { signal::post(offer, &url, token.as_deref()).await })
        })
        .collect();
    let mut answered = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Ok(sig)) = t.await {
            answered.push(sig);
        }
    }
    let threads1 = procfs::thread_cpu_ns(cfg.server_pid);
    let server1 = procfs::usage(Some(cfg.server_pid));
    let counts1 = offer_counts(cfg.metrics_url.as_deref()).await;
    let since = |a: Option<f64>, b: Option<f64>| Some(b? - a.unwrap_or(0.0));
    let created = answered.len();
    let mut post: Vec<f64> = answered
        .iter()
        .map(|s| s.post_time.as_secs_f64() * 1e3)
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let patch = request_burst(
        cfg.server_pid,
        204,
        answered
            .iter()
            .map(|s| {
                let (location, etag) = (s.location.clone(), s.etag.clone());
                let (fragment, token) = (fragment.clone(), token.clone());
                async move {
                    signal::patch_fragment(&location, etag.as_deref(), &fragment, token.as_deref())
                        .await
                        .ok()
                }
            })
            .collect(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delete = request_burst(
        cfg.server_pid,
        200,
        answered
            .iter()
            .map(|s| {
                let (location, token) = (s.location.clone(), token.clone());
                async move { signal::delete(&location, token.as_deref()).await.ok() }
            })
            .collect(),
    )
    .await;
    // The threads' own clock where it can be read (finer than /proc's 10 ms ticks).
    let cpu_ms = thread_ms_per(threads0, threads1, created)
        .or_else(|| cpu_ms_per(server0, server1, created));
    let media_ms = part_ms_per(threads0, threads1, created, |c| c.media);
    PostOnly {
        posts: n,
        created,
        post_p50_ms: percentile(&mut post, 0.5),
        post_p99_ms: percentile(&mut post, 0.99),
        server_cpu_ms_per_post: cpu_ms,
        media_cpu_ms_per_post: media_ms,
        preparing_cpu_ms_per_post: part_ms_per(threads0, threads1, created, |c| c.preparing),
        p99_bound_ms: cpu_ms.map(|c| p99_bound_ms(n, c, cpus)),
        cpu_for_target_us: cpu_for_p99(n, POST_TARGET.as_secs_f64() * 1e6, cpus),
        offer: name.to_owned(),
        templates_parsed: since(counts0.templates.0, counts1.templates.0),
        templates_copied: since(counts0.templates.1, counts1.templates.1),
        inspections_parsed: since(counts0.inspections.0, counts1.inspections.0),
        inspections_remembered: since(counts0.inspections.1, counts1.inspections.1),
        patch: Some(patch),
        delete: Some(delete),
    }
}

async fn run_burst(swarm: &Arc<Swarm>, n: usize, cfg: &BenchConfig) -> Burst {
    let metrics_url = cfg.metrics_url.as_deref();
    let mut empty = http_floor::measure(n, cpus()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let options_before = procfs::thread_cpu_ns(cfg.server_pid);
    let mut options = http_floor::requests_at_once(swarm.url(), n).await;
    let options_cpu = thread_ms_per(options_before, procfs::thread_cpu_ns(cfg.server_pid), n);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let offers: Vec<String> = (0..n)
        .filter_map(|_| swarm.prepare().ok().map(|p| p.into_offer()))
        .collect();
    let whep = |offer| (swarm.url().to_owned(), offer);
    let viewers = cfg.swarm.token.clone();
    let post_only = post_only_burst(
        "the tool's viewers",
        offers.into_iter().map(whep).collect(),
        viewers.clone(),
        cfg,
    )
    .await;
    let post_captured = match &cfg.post_offer {
        Some((name, text)) => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let posts = (0..n)
                .map(|i| whep(crate::offer::another_client(text, i)))
                .collect();
            Some(post_only_burst(name, posts, viewers, cfg).await)
        }
        None => None,
    };
    // Publishers, each of a stream of its own beside the bench's.
    let whip_captured = match &cfg.whip_offer {
        Some((name, text)) => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let posts = (0..n)
                .map(|i| {
                    let url = format!("{}-burst-{i}", cfg.publisher.url);
                    (url, crate::offer::another_client(text, i))
                })
                .collect();
            let name = format!("WHIP, {name}");
            Some(post_only_burst(&name, posts, cfg.publisher.token.clone(), cfg).await)
        }
        None => None,
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let setup_before = metrics::scrape_from(metrics_url, SETUP_HISTOGRAM).await;
    // Offers first (clients build them on their own machines), then every POST at once.
    let prepared: Vec<_> = (0..n).map(|_| swarm.prepare()).collect();
    let (server0, tool0) = (procfs::usage(Some(cfg.server_pid)), procfs::usage(None));
    let t0 = Instant::now();
    for p in prepared {
        let s = swarm.clone();
        tokio::spawn(async move {
            match p {
                Ok(p) => s.post(p).await,
                Err((id, e)) => {
                    s.fail(id, e);
                    id
                }
            }
        });
    }
    let end = t0 + Duration::from_secs(30);
    let mut reports;
    loop {
        reports = swarm.reports().await;
        let settled = reports
            .iter()
            .filter(|r| r.error.is_some() || r.connected)
            .count();
        if settled >= n || Instant::now() >= end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let connected = reports.iter().filter(|r| r.connected).count();
    // The cached group of pictures each viewer starts with is paced out over a few
    // hundred milliseconds after it connects: part of what the burst costs.
    tokio::time::sleep(BURST_TAIL).await;
    let (server1, tool1) = (procfs::usage(Some(cfg.server_pid)), procfs::usage(None));
    let mut post: Vec<f64> = reports.iter().filter_map(|r| r.post_ms).collect();
    let mut conn: Vec<f64> = reports.iter().filter_map(|r| r.connect_ms).collect();
    let failed: Vec<&ViewerReport> = reports.iter().filter(|r| r.error.is_some()).collect();
    let setup = match setup_before {
        Some(before) => metrics::scrape_from(metrics_url, SETUP_HISTOGRAM)
            .await
            .map(|after| after.since(&before)),
        None => None,
    };
    let server_q = |q: f64| setup.as_ref().and_then(|b| b.quantile(q)).map(|s| s * 1e3);
    Burst {
        options_p50_ms: percentile(&mut options, 0.5),
        options_p99_ms: percentile(&mut options, 0.99),
        options_server_cpu_ms: options_cpu,
        empty_p50_ms: percentile(&mut empty, 0.5),
        empty_p99_ms: percentile(&mut empty, 0.99),
        server_post_p50_ms: server_q(0.5),
        server_post_p99_ms: server_q(0.99),
        viewers: n,
        connected,
        seconds,
        sessions_per_s: connected as f64 / seconds.max(1e-3),
        post_p50_ms: percentile(&mut post, 0.5),
        post_p99_ms: percentile(&mut post, 0.99),
        connect_p50_ms: percentile(&mut conn, 0.5),
        connect_p99_ms: percentile(&mut conn, 0.99),
        server_cpu_ms_per_session: cpu_ms_per(server0, server1, connected),
        tool_cpu_ms_per_session: cpu_ms_per(tool0, tool1, connected),
        post_only: Some(post_only),
        post_captured,
        whip_captured,
        failed: failed.len(),
        first_error: failed.first().and_then(|r| r.error.clone()),
    }
}

/// Prints the report as one table plus the floor and burst lines.
pub fn print(r: &BenchReport) {
    floor::print(&r.floor);
    println!(
        "stream: {:.2} Mbit/s video at {:.0} packets/s ({}) + {} audio packets/s; server with the publisher alone: {:.3} CPU s/s, {:.1} MiB",
        r.video_bitrate / 1e6,
        r.video_pps,
        r.pacing.map_or_else(
            || "frames sent back to back".to_owned(),
            |f| format!("paced at {f}× the bit rate")
        ),
        r.audio_pps,
        r.idle_server_cpu,
        r.idle_server_rss_mib
    );
    if let Some(layers) = &r.simulcast {
        let offered: Vec<String> = layers
            .iter()
            .map(|l| format!("{} {:.2}", l.rid, l.shape.bitrate() / 1e6))
            .collect();
        let taken = if r.layers_sent.is_empty() {
            "the server declined it and gets the top layer alone".to_owned()
        } else {
            format!(
                "the server took {} (the stream above and the steps count the top layer)",
                r.layers_sent.join(", ")
            )
        };
        println!("simulcast: {} Mbit/s offered; {taken}", offered.join(" + "));
    }
    println!(
        "hand-over floor (a thread's wake-up after a channel send, every {} ms; column \"wake\" per step): p50 {} µs, p99 {} µs with the publisher alone; the hypervisor's steal (column \"steal\"): {} % of the CPUs' time",
        WAKE_INTERVAL.as_millis(),
        fmt_opt(r.idle_wake_p50_us, 0),
        fmt_opt(r.idle_wake_p99_us, 0),
        fmt_opt(r.idle_steal_pct, 1)
    );
    println!();
    println!(
        "{:>6} {:>6} {:>8} {:>7} {:>8} {:>9} {:>7} {:>6} {:>7} {:>15} {:>15} {:>11} {:>5} {:>5} {:>9} {:>13} {:>9} {:>8} {:>6}",
        "viewers",
        "conn",
        "srv CPU",
        "RSS MiB",
        "KiB/view",
        "pkts/s",
        "ns/pkt",
        "×floor",
        "loss %",
        "e2e p50/p99 µs",
        "srv fwd p50/p99",
        "wake p50/p99",
        "wait",
        "steal",
        "busy/hold",
        "POST p50/p99",
        "join p50",
        "tool CPU",
        "drops"
    );
    for s in &r.steps {
        println!(
            "{:>7} {:>6} {:>8.3} {:>7.1} {:>8} {:>9.0} {:>7} {:>6} {:>7.3} {:>15} {:>15} {:>11} {:>5} {:>5} {:>9} {:>13} {:>9} {:>8.3} {:>6}",
            s.viewers,
            s.connected,
            s.server_cpu,
            s.server_rss_mib,
            fmt_opt(s.rss_per_viewer_kib, 0),
            s.packets_per_s,
            fmt_opt(s.cpu_per_packet_ns, 0),
            fmt_opt(s.ratio_to_floor, 2),
            s.loss_pct,
            format!(
                "{}/{}",
                fmt_opt(s.delay_p50_us, 0),
                fmt_opt(s.delay_p99_us, 0)
            ),
            format!(
                "{}/{}",
                fmt_opt(s.server_forward_p50_us, 0),
                fmt_opt(s.server_forward_p99_us, 0)
            ),
            format!(
                "{}/{}",
                fmt_opt(s.wake_p50_us, 0),
                fmt_opt(s.wake_p99_us, 0)
            ),
            fmt_opt(s.media_wait_per_run, 2),
            fmt_opt(s.steal_pct, 1),
            format!("{}/{}", fmt_opt(s.worker_busy, 2), fmt_opt(s.hold_ms, 1)),
            format!(
                "{}/{}",
                fmt_opt(s.post_p50_ms, 1),
                fmt_opt(s.post_p99_ms, 1)
            ),
            fmt_opt(s.join_p50_ms, 0),
            s.tool_cpu,
            s.udp_rcvbuf_drops
                .map_or_else(|| "n/a".into(), |d| d.to_string()),
        );
    }
    println!("stepping stopped: {}", r.stopped);
    if let Some(b) = &r.burst {
        println!(
            "burst of {}: {} connected in {:.2} s = {:.0} sessions/s; POST→201 p50 {} ms p99 {} ms (inside the server: p50 ≤ {} ms, p99 ≤ {} ms; {} OPTIONS at once: p50 {} ms p99 {} ms; to an empty server: p50 {} ms p99 {} ms); POST→connected p50 {} ms p99 {} ms; CPU per session: server {} ms, tool {} ms; {} failed{}",
            b.viewers,
            b.connected,
            b.seconds,
            b.sessions_per_s,
            fmt_opt(b.post_p50_ms, 1),
            fmt_opt(b.post_p99_ms, 1),
            fmt_opt(b.server_post_p50_ms, 2),
            fmt_opt(b.server_post_p99_ms, 2),
            b.viewers,
            fmt_opt(b.options_p50_ms, 1),
            fmt_opt(b.options_p99_ms, 1),
            fmt_opt(b.empty_p50_ms, 1),
            fmt_opt(b.empty_p99_ms, 1),
            fmt_opt(b.connect_p50_ms, 0),
            fmt_opt(b.connect_p99_ms, 0),
            fmt_opt(b.server_cpu_ms_per_session, 2),
            fmt_opt(b.tool_cpu_ms_per_session, 2),
            b.failed,
            b.first_error
                .as_deref()
                .map_or_else(String::new, |e| format!(" (first: {e})"))
        );
    }
    if let Some(b) = &r.burst {
        for p in b
            .post_only
            .iter()
            .chain(&b.post_captured)
            .chain(&b.whip_captured)
        {
            print_post_only(r, b, p);
        }
    }
    if !r.server_histogram {
        println!("server forwarding latency: n/a (no {FORWARD_HISTOGRAM} at /metrics)");
    }
}

/// One POST-only burst's lines.
fn print_post_only(r: &BenchReport, b: &Burst, p: &PostOnly) {
    println!(
        "{} POSTs at once ({}), never connected: {} created; POST→201 p50 {} ms p99 {} ms; server CPU {} ms per POST{}, so the p99 cannot be under {} ms on {} cores (a {} ms p99 needs ≤ {:.0} µs per POST, and a server that does nothing answers {} at once with p99 {} ms here)",
        p.posts,
        p.offer,
        p.created,
        fmt_opt(p.post_p50_ms, 1),
        fmt_opt(p.post_p99_ms, 1),
        fmt_opt(p.server_cpu_ms_per_post, 2),
        split(
            p.media_cpu_ms_per_post,
            p.preparing_cpu_ms_per_post,
            b.options_server_cpu_ms
        ),
        fmt_opt(p.p99_bound_ms, 1),
        r.cpus,
        POST_TARGET.as_millis(),
        p.cpu_for_target_us,
        p.posts,
        fmt_opt(b.empty_p99_ms, 1),
    );
    if let (Some(parsed), Some(copied)) = (p.templates_parsed, p.templates_copied) {
        println!(
            "  of these offers the server parsed {parsed:.0} and answered {copied:.0} from a template parsed before"
        );
    }
    if let (Some(parsed), Some(remembered)) = (p.inspections_parsed, p.inspections_remembered) {
        println!(
            "  and its inspection read {parsed:.0} whole and gave {remembered:.0} the verdict of an earlier offer of the same player"
        );
    }
    for (what, r) in [
        ("PATCH (one trickled candidate)", &p.patch),
        ("DELETE", &p.delete),
    ] {
        if let Some(r) = r {
            println!(
                "  then a {what} of each at once: {}/{} answered as the spec says; p50 {} ms p99 {} ms; server CPU {} ms per request{}, so the p99 cannot be under {} ms",
                r.ok,
                r.requests,
                fmt_opt(r.p50_ms, 1),
                fmt_opt(r.p99_ms, 1),
                fmt_opt(r.server_cpu_ms_per_request, 3),
                split(r.media_cpu_ms_per_request, None, None),
                fmt_opt(r.p99_bound_ms, 1),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p99_of_a_burst_waits_for_the_cpu_of_the_answers_before_it() {
        // 200 POSTs of 1 ms on 2 cores: the 198th answer needs 198 ms of CPU, 99 ms.
        assert!((p99_bound_ms(200, 1.0, 2) - 99.0).abs() < 1e-9);
        // One POST: its own CPU, however many cores (one request runs on one).
        assert!((p99_bound_ms(1, 0.3, 4) - 0.3).abs() < 1e-9);
        assert!(
            (p99_bound_ms(10, 0.5, 0) - 5.0).abs() < 1e-9,
            "zero cores counts as one"
        );
        // The inverse: 5 ms for 200 on 2 cores needs 10 ms / 198 of CPU per POST, and
        // that CPU gives back the 5 ms.
        let cpu = cpu_for_p99(200, 5.0, 2);
        assert!((cpu - 10.0 / 198.0).abs() < 1e-12, "{cpu}");
        assert!((p99_bound_ms(200, cpu, 2) - 5.0).abs() < 1e-9);
        assert!(
            (cpu_for_p99(1, 5.0, 4) - 5.0).abs() < 1e-12,
            "one POST: its own time"
        );
    }
}
