//! One load run: a publisher, N viewers ramping in, a measurement window, a report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::clock::SendTable;
use crate::procfs;
use crate::publisher::{Publisher, PublisherConfig};
use crate::signal::SetupError;
use crate::stats::{self, Aggregate, ViewerReport};
use crate::swarm::{Swarm, SwarmConfig};

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The publisher, or `None` when something else publishes the stream.
    pub publisher: Option<PublisherConfig>,
    /// The viewers.
    pub swarm: SwarmConfig,
    /// How many viewers.
    pub viewers: usize,
    /// Viewers started per second (0: all at once).
    pub ramp_per_sec: f64,
    /// How long to wait for every viewer to connect.
    pub connect_timeout: Duration,
    /// The measurement window after the ramp.
    pub duration: Duration,
    /// The server's pid, for its CPU and memory (same host only).
    pub server_pid: Option<u32>,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Viewers summed up.
    pub aggregate: Aggregate,
    /// Every viewer.
    pub viewers: Vec<ViewerReport>,
    /// Measurement window, seconds.
    pub window_s: f64,
    /// Publisher POST→201, ms.
    pub publisher_post_ms: Option<f64>,
    /// Packets the publisher sent in the window (video, audio).
    pub publisher_packets: (u64, u64),
    /// This tool's CPU seconds per second in the window.
    pub tool_cpu: f64,
    /// The server's CPU seconds per second in the window (with `server_pid`).
    pub server_cpu: Option<f64>,
    /// The server's RSS at the end, bytes.
    pub server_rss: Option<u64>,
    /// Host-wide UDP receive-buffer drops during the window.
    pub udp_rcvbuf_errors: Option<u64>,
    /// Another program published: no payload markers, so the delay is relative and
    /// the publisher's own figures are unknown.
    pub foreign_publisher: bool,
}

/// Starts `n` viewers at `rate` per second (0: at once); returns when every POST is done.
pub async fn ramp(swarm: &Arc<Swarm>, n: usize, rate: f64) {
    let mut joins = Vec::with_capacity(n);
    if rate <= 0.0 {
        // A burst: every offer first, then every POST at once.
        let prepared: Vec<_> = (0..n).map(|_| swarm.prepare()).collect();
        for p in prepared {
            let s = swarm.clone();
            joins.push(tokio::spawn(async move {
                match p {
                    Ok(p) => s.post(p).await,
                    Err((id, e)) => {
                        s.fail(id, e);
                        id
                    }
                }
            }));
        }
    }
    let start = Instant::now();
    for i in 0..if rate > 0.0 { n } else { 0 } {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let s = swarm.clone();
        joins.push(tokio::spawn(async move { s.add_viewer().await }));
    }
    for j in joins {
        let _ = j.await;
    }
}

/// Waits until `n` viewers are connected or failed, or `timeout`; returns the reports.
pub async fn wait_connected(swarm: &Swarm, n: usize, timeout: Duration) -> Vec<ViewerReport> {
    let end = Instant::now() + timeout;
    loop {
        let r = swarm.reports().await;
        let settled = r
            .iter()
            .filter(|v| v.error.is_some() || (v.connected && v.join_ms.is_some()))
            .count();
        if settled >= n || Instant::now() >= end {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the whole thing.
pub async fn run(cfg: RunConfig) -> Result<RunReport, SetupError> {
    let table = Arc::new(SendTable::default());
    let publisher = match &cfg.publisher {
        Some(p) => {
            let p = Publisher::start(p.clone(), table.clone()).await?;
            if !p.wait_connected(Duration::from_secs(10)).await {
                return Err(SetupError::Rtc(format!(
                    "the publisher did not connect in 10 s: {}",
                    p.why_not_connected()
                )));
            }
            // Let the first keyframe reach the server before viewers ask for it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            Some(p)
        }
        None => None,
    };
    let swarm = Arc::new(Swarm::new(cfg.swarm.clone(), table)?);
    ramp(&swarm, cfg.viewers, cfg.ramp_per_sec).await;
    wait_connected(&swarm, cfg.viewers, cfg.connect_timeout).await;

    swarm.reset_window().await;
    let pub_before = publisher.as_ref().map(|p| {
        let c = p.counters();
        (
            c.video_packets.load(std::sync::atomic::Ordering::Relaxed),
            c.audio_packets.load(std::sync::atomic::Ordering::Relaxed),
        )
    });
    let t0 = Instant::now();
    let tool0 = procfs::usage(None);
    let srv0 = cfg.server_pid.and_then(|p| procfs::usage(Some(p)));
    let drops0 = procfs::udp_rcvbuf_errors();
    tokio::time::sleep(cfg.duration).await;
    let window = t0.elapsed().as_secs_f64();
    let tool1 = procfs::usage(None);
    let srv1 = cfg.server_pid.and_then(|p| procfs::usage(Some(p)));
    let drops1 = procfs::udp_rcvbuf_errors();
    let viewers = swarm.reports().await;
    let publisher_packets = match (&publisher, pub_before) {
        (Some(p), Some((v0, a0))) => {
            let c = p.counters();
            (
                c.video_packets.load(std::sync::atomic::Ordering::Relaxed) - v0,
                c.audio_packets.load(std::sync::atomic::Ordering::Relaxed) - a0,
            )
        }
        _ => (0, 0),
    };
    let report = RunReport {
        aggregate: stats::aggregate(&viewers),
        viewers,
        window_s: window,
        publisher_post_ms: publisher.as_ref().map(|p| p.post_time.as_secs_f64() * 1e3),
        publisher_packets,
        tool_cpu: match (tool0, tool1) {
            (Some(a), Some(b)) => (b.cpu_s - a.cpu_s) / window,
            _ => 0.0,
        },
        server_cpu: match (srv0, srv1) {
            (Some(a), Some(b)) => Some((b.cpu_s - a.cpu_s) / window),
            _ => None,
        },
        server_rss: srv1.map(|u| u.rss),
        udp_rcvbuf_errors: drops0.zip(drops1).map(|(a, b)| b.saturating_sub(a)),
        foreign_publisher: cfg.swarm.foreign,
    };
    swarm.clear(32).await;
    if let Some(p) = publisher {
        p.stop().await;
    }
    if let Ok(s) = Arc::try_unwrap(swarm) {
        s.stop();
    }
    Ok(report)
}

/// A human-readable summary of a run.
pub fn print_report(r: &RunReport) {
    let a = &r.aggregate;
    let f = stats::fmt_opt;
    println!(
        "viewers {}/{} connected, {} joined | window {:.1} s",
        a.connected, a.viewers, a.joined, r.window_s
    );
    println!(
        "packets received {} lost {} ({:.3} %) duplicated {} out-of-order {} | worst viewer {:.3} %",
        a.received, a.lost, a.loss_pct, a.duplicated, a.out_of_order, a.worst_viewer_loss_pct
    );
    println!(
        "delay p50 {} µs p99 {} µs | POST→201 p50 {} ms p99 {} ms | join p50 {} ms p99 {} ms",
        f(a.delay_p50_us, 0),
        f(a.delay_p99_us, 0),
        f(a.post_p50_ms, 2),
        f(a.post_p99_ms, 2),
        f(a.join_p50_ms, 1),
        f(a.join_p99_ms, 1)
    );
    println!(
        "CPU s/s: server {} tool {:.3} | server RSS {} MiB | UDP rcvbuf drops {}",
        f(r.server_cpu, 3),
        r.tool_cpu,
        r.server_rss
            .map_or_else(|| "n/a".into(), |b| format!("{:.1}", b as f64 / 1048576.0)),
        r.udp_rcvbuf_errors
            .map_or_else(|| "n/a".into(), |d| d.to_string())
    );
    if r.foreign_publisher {
        println!(
            "foreign publisher: loss, duplicates and reordering from sequence numbers; \
             delay is each packet's transit above the fastest of its track (relative: no \
             send times, the publisher's pacing included); one-way delay and the \
             publisher's packet counts are unavailable"
        );
    }
    for v in r.viewers.iter().filter(|v| v.error.is_some()).take(5) {
        println!(
            "viewer {} failed: {}",
            v.id,
            v.error.as_deref().unwrap_or("")
        );
    }
}

/// One step of [`steps`]: a run of `viewers` and what the server spent on it.
#[derive(Debug, Clone, Serialize)]
pub struct StepRow {
    /// Viewers asked for.
    pub viewers: usize,
    /// The run's report.
    pub report: RunReport,
    /// Media packets delivered per second, all viewers together.
    pub packets_per_s: f64,
    /// The server's CPU per delivered packet, µs (with its pid).
    pub cpu_us_per_packet: Option<f64>,
    /// The server's RSS above its level before the first step, per viewer, KiB.
    pub kib_per_viewer: Option<f64>,
}

/// The fan-out in steps: a run of each viewer count in turn (the viewers of one step
/// leave before the next), for any server and any publisher. A step whose viewers do
/// not all connect, or lose more than 5 %, ends the series: the server has failed.
pub async fn steps(cfg: RunConfig, counts: &[usize]) -> Result<Vec<StepRow>, SetupError> {
    let baseline = cfg.server_pid.and_then(|p| procfs::usage(Some(p)));
    let mut rows = Vec::new();
    for &n in counts {
        let report = run(RunConfig {
            viewers: n,
            ..cfg.clone()
        })
        .await?;
        let a = &report.aggregate;
        let packets_per_s = a.received as f64 / report.window_s.max(1e-9);
        let cpu_us_per_packet = report
            .server_cpu
            .filter(|_| a.received > 0)
            .map(|cpu| cpu * report.window_s / a.received as f64 * 1e6);
        let kib_per_viewer = match (baseline, report.server_rss) {
            (Some(b), Some(rss)) if n > 0 => {
                Some(rss.saturating_sub(b.rss) as f64 / 1024.0 / n as f64)
            }
            _ => None,
        };
        let failed = a.connected < n || a.loss_pct > 5.0;
        rows.push(StepRow {
            viewers: n,
            report,
            packets_per_s,
            cpu_us_per_packet,
            kib_per_viewer,
        });
        if failed {
            break;
        }
    }
    Ok(rows)
}

/// The table of a series of [`steps`].
pub fn print_steps(name: &str, rows: &[StepRow]) {
    let f = stats::fmt_opt;
    println!("{name}");
    println!(
        "{:>8} {:>10} {:>8} {:>10} {:>8} {:>12} {:>10} {:>10} {:>12}",
        "viewers",
        "connected",
        "joined",
        "pkts/s",
        "loss %",
        "CPU µs/pkt",
        "CPU s/s",
        "RSS MiB",
        "KiB/viewer"
    );
    for r in rows {
        let a = &r.report.aggregate;
        println!(
            "{:>8} {:>10} {:>8} {:>10.0} {:>8.3} {:>12} {:>10} {:>10} {:>12}",
            r.viewers,
            a.connected,
            a.joined,
            r.packets_per_s,
            a.loss_pct,
            f(r.cpu_us_per_packet, 2),
            f(r.report.server_cpu, 3),
            f(r.report.server_rss.map(|b| b as f64 / 1048576.0), 1),
            f(r.kib_per_viewer, 1),
        );
    }
    if rows.first().is_some_and(|r| r.report.foreign_publisher) {
        println!("(another program publishes: delays are relative, see `wishd-load run`)");
    }
}
