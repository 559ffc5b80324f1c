//! `wishd-conformance`: runs the WHIP/WHEP checklist against any server and prints a
//! table (or JSON). Exits 1 when a MUST row fails, 2 on bad arguments.

use std::time::Duration;

use clap::{Parser, ValueEnum};
use wishd_conformance::{Mode, Options, run};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Whip,
    Whep,
}

/// Black-box WHIP (RFC 9725) / WHEP conformance runner.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// The endpoint URL, e.g. http://127.0.0.1:8080/whip/test
    #[arg(long)]
    url: String,
    /// Which protocol the endpoint speaks.
    #[arg(long, value_enum)]
    mode: ModeArg,
    /// Bearer token for the endpoint (token rows are skipped without it).
    #[arg(long)]
    token: Option<String>,
    /// WHEP: a WHIP endpoint of the same stream; the runner publishes there first.
    #[arg(long)]
    publish_url: Option<String>,
    /// Token for --publish-url (default: --token).
    #[arg(long)]
    publish_token: Option<String>,
    /// WHEP: an endpoint of a stream nobody publishes (checks 409 + Retry-After).
    #[arg(long)]
    idle_url: Option<String>,
    /// WHIP: a WHEP endpoint of the same stream, to see the published media arrive.
    #[arg(long)]
    play_url: Option<String>,
    /// Token for --play-url (default: --token).
    #[arg(long)]
    play_token: Option<String>,
    /// Skip the media rows (ICE, DTLS, RTP, restart, consent).
    #[arg(long)]
    no_media: bool,
    /// Seconds to wait for ICE/DTLS and for media.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Print JSON instead of the table.
    #[arg(long)]
    json: bool,
    /// A PEM file of CA certificates to trust for https:// besides the system's.
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Some(path) = &cli.ca {
        let trusted = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| wishd::client::trust_ca_pem(&pem).map_err(|e| e.to_string()));
        if let Err(e) = trusted {
            eprintln!("--ca {}: {e}", path.display());
            std::process::exit(2);
        }
    }
    let mode = match cli.mode {
        ModeArg::Whip => Mode::Whip,
        ModeArg::Whep => Mode::Whep,
    };
    let mut opts = Options::new(cli.url, mode);
    opts.token = cli.token;
    opts.publish_url = cli.publish_url;
    opts.publish_token = cli.publish_token;
    opts.idle_url = cli.idle_url;
    opts.play_url = cli.play_url;
    opts.play_token = cli.play_token;
    opts.media = !cli.no_media;
    opts.timeout = Duration::from_secs(cli.timeout.max(1));
    let report = run(&opts).await;
    if cli.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.table());
    }
    std::process::exit(if report.passed() { 0 } else { 1 });
}
