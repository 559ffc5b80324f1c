//! The `wishd` binary: parse flags, set up logging, run the server until SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use wishd::config::Config;
use wishd::server::Server;

/// wishd: a WebRTC media server. Publishers push with WHIP, viewers pull with WHEP.
///
/// With no arguments it serves HTTP on 0.0.0.0:8080 and WebRTC media on UDP 8189 and up
/// (one port per media worker, one worker per core). Every flag can also be set with
/// the environment variable named in brackets; a flag wins over its variable, and both
/// win over the --config file, which wins over the built-in defaults.
#[derive(Debug, Parser)]
#[command(name = "wishd", version)]
struct Cli {
    /// TOML configuration file (keys as in the README).
    #[arg(long, env = "WISHD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// HTTP listen address for WHIP and WHEP.
    #[arg(long, env = "WISHD_HTTP", value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// UDP address of the first media worker; worker n uses port + n. Port 0 picks free ports.
    #[arg(long, env = "WISHD_UDP", value_name = "ADDR")]
    udp: Option<SocketAddr>,
    /// Address to advertise as an ICE host candidate besides the bound ones (e.g. the
    /// public IP of a 1:1 NAT). Repeatable; the variable takes a comma-separated list.
    #[arg(
        long = "public-ip",
        env = "WISHD_PUBLIC_IP",
        value_name = "IP",
        value_delimiter = ','
    )]
    public_ip: Vec<IpAddr>,
    /// Number of media workers (0: one per core).
    #[arg(long, env = "WISHD_WORKERS", value_name = "N")]
    workers: Option<usize>,
    /// How long viewers wait for a publisher to come back, e.g. "30s".
    #[arg(long, env = "WISHD_PUBLISHER_GRACE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    publisher_grace: Option<Duration>,
    /// Feed stream STREAM from plain RTP described by an SDP file (as ffmpeg writes it
    /// with -sdp_file). Repeatable, one per stream; adds to the config file's [[rtp]].
    #[arg(long = "rtp", value_name = "STREAM=FILE.sdp")]
    rtp: Vec<String>,
}

impl Cli {
    fn into_config(self) -> Result<Config, wishd::config::ConfigError> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.http {
            c.http = v;
        }
        if let Some(v) = self.udp {
            c.udp = v;
        }
        if !self.public_ip.is_empty() {
            c.public_ips = self.public_ip;
        }
        if let Some(v) = self.workers {
            c.workers = v;
        }
        if let Some(v) = self.publisher_grace {
            c.publisher_grace = v;
        }
        for flag in &self.rtp {
            let entry = wishd::config::RtpEntry::from_flag(flag)
                .map_err(wishd::config::ConfigError::Invalid)?;
            c.rtp.push(entry);
        }
        c.validate()?;
        Ok(c)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wishd: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("wishd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let server = match Server::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("wishd: {e}");
                return ExitCode::FAILURE;
            }
        };
        wait_for_signal().await;
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
