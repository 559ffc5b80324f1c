//! `wishd-load`: drive any WHIP/WHEP server with a synthetic publisher and a viewer
//! swarm, measure the physical floor, or step through a fan-out benchmark.

use std::time::Duration;

use clap::{Parser, Subcommand};
use wishd_load::bench::BenchConfig;
use wishd_load::payload::VideoShape;
use wishd_load::publisher::{KEYFRAME_RATIO, PublisherConfig, simulcast_layers};
use wishd_load::run::{RunConfig, print_report, run};
use wishd_load::swarm::SwarmConfig;

#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Options of the publisher and viewers.
#[derive(clap::Args, Clone)]
struct Peers {
    /// Server base URL; endpoints are BASE/whip/STREAM and BASE/whep/STREAM.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// Stream name.
    #[arg(long, default_value = "bench")]
    stream: String,
    /// Full WHIP URL (overrides --base/--stream for the publisher).
    #[arg(long)]
    whip: Option<String>,
    /// Full WHEP URL (overrides --base/--stream for the viewers).
    #[arg(long)]
    whep: Option<String>,
    /// Do not publish: another program does (ffmpeg, a camera, a browser). Viewers
    /// then account from sequence numbers and arrival times alone, and the delay is
    /// relative (see the report's note).
    #[arg(long)]
    no_publish: bool,
    /// The kinds of media each viewer's offer asks for, in this order: a server whose
    /// stream has video alone may answer only one m-line (Janus's streaming plugin).
    #[arg(long, value_delimiter = ',', default_value = "audio,video")]
    kinds: Vec<Kind>,
    /// Bearer token for both endpoints.
    #[arg(long, env = "WISHD_LOAD_TOKEN")]
    token: Option<String>,
    /// Video bit rate, bits/s.
    #[arg(long, default_value_t = 2_500_000)]
    bitrate: u64,
    /// Frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Seconds between keyframes.
    #[arg(long, default_value_t = 2.0)]
    gop: f64,
    /// RTP payload bytes per video packet.
    #[arg(long, default_value_t = 1200)]
    packet_size: usize,
    /// Answer PLI/FIR with a keyframe (at most once a second).
    #[arg(long)]
    honor_pli: bool,
    /// Publish simulcast (RFC 8853) as browsers do: three layers "q" 320x180, "h"
    /// 640x360 and "f" 1280x720, each its own SSRC. The top layer is the stream
    /// --bitrate/--fps/--gop/--packet-size describe; the others get 0.32x and 0.08x
    /// its bit rate (2.5 Mbit/s, 800 kbit/s, 200 kbit/s by default). A server that
    /// declines simulcast gets the top layer alone.
    #[arg(long)]
    simulcast: bool,
    /// Video pacing rate as a multiple of the video bit rate (2.5: libwebrtc's pacer,
    /// as browsers send); 0 sends each frame's packets back to back (FFmpeg's WHIP
    /// muxer).
    #[arg(long, default_value_t = wishd_load::publisher::LIBWEBRTC_PACING)]
    pacing: f64,
    /// Viewer sockets (one loop each).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Decrypt every packet instead of accounting by RTP header.
    #[arg(long)]
    full_decrypt: bool,
    /// Microseconds a viewer shard sleeps between socket reads (adds up to this much
    /// to measured delays; spares the server loopback wake-ups of this process).
    #[arg(long, default_value_t = 500)]
    poll_us: u64,
    /// Viewers send str0m's own offers (a random mid, msid and SSRCs per m-line)
    /// instead of offers written the way a browser's player writes them.
    #[arg(long)]
    str0m_offers: bool,
}

impl Peers {
    fn publisher(&self) -> Option<PublisherConfig> {
        if self.no_publish {
            return None;
        }
        let url = self
            .whip
            .clone()
            .unwrap_or_else(|| format!("{}/whip/{}", self.base, self.stream));
        let mut p = PublisherConfig::standard(url);
        p.token = self.token.clone();
        p.shape = VideoShape::for_bitrate(
            self.bitrate,
            self.fps,
            self.gop,
            KEYFRAME_RATIO,
            self.packet_size,
        );
        p.honor_keyframe_requests = self.honor_pli;
        p.pacing = (self.pacing > 0.0).then_some(self.pacing);
        p.simulcast = self
            .simulcast
            .then(|| simulcast_layers(self.bitrate, self.fps, self.gop, self.packet_size));
        Some(p)
    }

    fn swarm(&self) -> SwarmConfig {
        SwarmConfig {
            url: self
                .whep
                .clone()
                .unwrap_or_else(|| format!("{}/whep/{}", self.base, self.stream)),
            token: self.token.clone(),
            shards: self.shards,
            full_decrypt: self.full_decrypt,
            poll: Duration::from_micros(self.poll_us.clamp(20, 100_000)),
            str0m_offers: self.str0m_offers,
            kinds: self.kinds.iter().map(|k| k.media()).collect(),
            foreign: self.no_publish,
        }
    }
}

/// A kind of media on the command line.
#[derive(clap::ValueEnum, Clone, Copy)]
enum Kind {
    Audio,
    Video,
}

impl Kind {
    fn media(self) -> str0m::media::MediaKind {
        match self {
            Kind::Audio => str0m::media::MediaKind::Audio,
            Kind::Video => str0m::media::MediaKind::Video,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// The stepped fan-out benchmark against a server on this host.
    Bench {
        #[command(flatten)]
        peers: Peers,
        /// The server's pid (CPU and memory from /proc/PID).
        #[arg(long)]
        server_pid: u32,
        /// The server's Prometheus endpoint (default BASE/metrics; "none" to skip).
        #[arg(long)]
        metrics: Option<String>,
        /// Viewer counts, ascending.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "1,10,50,100,200,400,800,1200,1600,2400,3200"
        )]
        steps: Vec<usize>,
        /// Measurement window per step, seconds (at most 60).
        #[arg(long, default_value_t = 10.0)]
        step_secs: f64,
        /// Wait after each ramp before measuring, seconds.
        #[arg(long, default_value_t = 2.0)]
        settle_secs: f64,
        /// Viewers started per second while ramping.
        #[arg(long, default_value_t = 200.0)]
        ramp: f64,
        /// Stop after a step whose loss passes this, percent.
        #[arg(long, default_value_t = 0.5)]
        loss_stop: f64,
        /// Start no step after this many seconds (at most 3600).
        #[arg(long, default_value_t = 300)]
        max_secs: u64,
        /// Viewers joining at once at the end (0: none, at most 2000).
        #[arg(long, default_value_t = 200)]
        burst: usize,
        /// After the POST-only burst, the same number of POSTs of this offer (a
        /// browser's, captured), each client with its own ICE credentials,
        /// fingerprint, origin and candidate ports: what a crowd of that player costs
        /// the server's HTTP side, whose offers are larger than the tool's own.
        #[arg(long)]
        post_offer: Option<std::path::PathBuf>,
        /// Then as many POSTs of this WHIP offer (a browser's or an encoder's,
        /// captured) at once, each a publisher of a stream of its own (the WHIP URL
        /// with `-burst-N`) with its own values and SSRCs: the server's CPU per
        /// publisher's POST.
        #[arg(long)]
        whip_offer: Option<std::path::PathBuf>,
        /// Milliseconds per floor figure.
        #[arg(long, default_value_t = 500)]
        floor_ms: u64,
        /// Write the report as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// The physical floor: SRTP protect + UDP send per packet on this machine.
    Floor {
        /// Milliseconds per figure.
        #[arg(long, default_value_t = 500)]
        budget_ms: u64,
        /// Write the figures as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// The fan-out in steps against any server: a run of each viewer count in turn
    /// (publisher or not), one table row each with the server's CPU per delivered
    /// packet and memory per viewer. Stops at a step whose viewers fail.
    Steps {
        #[command(flatten)]
        peers: Peers,
        /// Viewer counts, in order.
        #[arg(long, value_delimiter = ',', default_value = "10,100,400")]
        steps: Vec<usize>,
        /// Measurement window per step, seconds (at most 600).
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Viewers started per second.
        #[arg(long, default_value_t = 100.0)]
        ramp: f64,
        /// The server's pid, for its CPU and memory.
        #[arg(long)]
        server_pid: Option<u32>,
        /// A name for the table (the server's).
        #[arg(long, default_value = "server")]
        name: String,
        /// Write the rows as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Publisher + N viewers for a while; prints a table and writes JSON.
    Run {
        #[command(flatten)]
        peers: Peers,
        /// Viewers.
        #[arg(long, short = 'n', default_value_t = 10)]
        viewers: usize,
        /// Viewers started per second (0: all at once).
        #[arg(long, default_value_t = 100.0)]
        ramp: f64,
        /// Measurement window, seconds (at most 600).
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// The server's pid, for its CPU and memory.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Write the report as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
}

fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wishd-load: cannot start a runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async move {
        match cli.cmd {
            Cmd::Bench {
                peers,
                server_pid,
                metrics,
                steps,
                step_secs,
                settle_secs,
                ramp,
                loss_stop,
                max_secs,
                burst,
                post_offer,
                whip_offer,
                floor_ms,
                json,
            } => {
                let (post_offer, whip_offer) = match (captured(post_offer), captured(whip_offer)) {
                    (Ok(post), Ok(whip)) => (post, whip),
                    (Err(e), _) | (_, Err(e)) => {
                        eprintln!("wishd-load: {e}");
                        return 2;
                    }
                };
                let Some(publisher) = peers.publisher() else {
                    eprintln!("wishd-load: bench needs its own publisher");
                    return 2;
                };
                let metrics_url = match metrics.as_deref() {
                    Some("none") => None,
                    Some(u) => Some(u.to_string()),
                    None => Some(format!("{}/metrics", peers.base)),
                };
                let mut steps = steps;
                steps.sort_unstable();
                let cfg = BenchConfig {
                    publisher,
                    swarm: peers.swarm(),
                    server_pid,
                    metrics_url,
                    steps,
                    step_window: Duration::from_secs_f64(step_secs.clamp(1.0, 60.0)),
                    settle: Duration::from_secs_f64(settle_secs.clamp(0.0, 30.0)),
                    ramp_per_sec: ramp.max(1.0),
                    loss_stop_pct: loss_stop,
                    total_cap: Duration::from_secs(max_secs.min(3600)),
                    burst: burst.min(2000),
                    post_offer,
                    whip_offer,
                    floor_budget: Duration::from_millis(floor_ms.clamp(10, 5000)),
                };
                match wishd_load::bench::bench(cfg, |m| eprintln!("bench: {m}")).await {
                    Ok(r) => {
                        wishd_load::bench::print(&r);
                        if let Some(path) = json {
                            write_json(&path, &r);
                        }
                        0
                    }
                    Err(e) => {
                        eprintln!("wishd-load: {e}");
                        1
                    }
                }
            }
            Cmd::Floor { budget_ms, json } => {
                let budget = Duration::from_millis(budget_ms.clamp(1, 10_000));
                match tokio::task::spawn_blocking(move || wishd_load::floor::measure(budget)).await
                {
                    Ok(Ok(f)) => {
                        wishd_load::floor::print(&f);
                        if let Some(path) = json {
                            write_json(&path, &f);
                        }
                        0
                    }
                    Ok(Err(e)) => {
                        eprintln!("wishd-load: floor: {e}");
                        1
                    }
                    Err(e) => {
                        eprintln!("wishd-load: floor: {e}");
                        1
                    }
                }
            }
            Cmd::Steps {
                peers,
                steps,
                duration,
                ramp,
                server_pid,
                name,
                json,
            } => {
                let cfg = RunConfig {
                    publisher: peers.publisher(),
                    swarm: peers.swarm(),
                    viewers: 0,
                    ramp_per_sec: ramp,
                    connect_timeout: Duration::from_secs(30),
                    duration: Duration::from_secs_f64(duration.clamp(0.1, 600.0)),
                    server_pid,
                };
                match wishd_load::run::steps(cfg, &steps).await {
                    Ok(rows) => {
                        wishd_load::run::print_steps(&name, &rows);
                        if let Some(path) = json {
                            write_json(&path, &rows);
                        }
                        0
                    }
                    Err(e) => {
                        eprintln!("wishd-load: {e}");
                        1
                    }
                }
            }
            Cmd::Run {
                peers,
                viewers,
                ramp,
                duration,
                server_pid,
                json,
            } => {
                let cfg = RunConfig {
                    publisher: peers.publisher(),
                    swarm: peers.swarm(),
                    viewers,
                    ramp_per_sec: ramp,
                    connect_timeout: Duration::from_secs(20),
                    duration: Duration::from_secs_f64(duration.clamp(0.1, 600.0)),
                    server_pid,
                };
                match run(cfg).await {
                    Ok(r) => {
                        print_report(&r);
                        if let Some(path) = json {
                            write_json(&path, &r);
                        }
                        0
                    }
                    Err(e) => {
                        eprintln!("wishd-load: {e}");
                        1
                    }
                }
            }
        }
    });
    std::process::exit(code);
}

/// A captured offer named by its path (the name, the text), when a path is given.
fn captured(path: Option<std::path::PathBuf>) -> Result<Option<(String, String)>, String> {
    path.map(|p| {
        std::fs::read_to_string(&p)
            .map(|text| (p.display().to_string(), text))
            .map_err(|e| format!("{}: {e}", p.display()))
    })
    .transpose()
}

fn write_json(path: &std::path::Path, value: &impl serde::Serialize) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_string_pretty(value) {
        Ok(s) => {
            if let Err(e) = std::fs::write(path, s) {
                eprintln!("wishd-load: cannot write {}: {e}", path.display());
            }
        }
        Err(e) => eprintln!("wishd-load: JSON: {e}"),
    }
}
