//! The `wishd` binary: parse flags, set up logging, run the server until SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wishd::auth::{self, MintKey};
use wishd::config::{Config, HttpsConfig, JwtConfig, LogFormat, Policy, Secret, StaticTokenConfig};
use wishd::model::Role;
use wishd::server::{Server, prepare};

/// wishd: a WebRTC media server. Publishers push with WHIP, viewers pull with WHEP.
///
/// With no arguments it serves HTTP on [::]:8080 (IPv4 and IPv6) and WebRTC media on UDP 8189 and up
/// (one port per media worker, one worker per core). Every flag can also be set with
/// the environment variable named in brackets; a flag wins over its variable, and both
/// win over the --config file, which wins over the built-in defaults.
#[derive(Debug, Parser)]
#[command(name = "wishd", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file (every key: wishd.example.toml, docs/configuration.md).
    #[arg(long, env = "WISHD_CONFIG", value_name = "FILE", global = true)]
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
    /// When a new WHIP publisher may take a stream that has one.
    #[arg(
        long,
        env = "WISHD_PUBLISHER_TAKEOVER",
        value_name = "POLICY",
        value_enum
    )]
    publisher_takeover: Option<wishd::config::Takeover>,
    /// Feed stream STREAM from plain RTP described by an SDP file (as ffmpeg writes it
    /// with -sdp_file). Repeatable, one per stream; adds to the config file's [[rtp]].
    #[arg(long = "rtp", value_name = "STREAM=FILE.sdp")]
    rtp: Vec<String>,
    /// Development mode: publish and play need no token. Never on a public network.
    #[arg(long)]
    dev: bool,
    /// A static token that may publish every stream. Repeatable; the variable takes a
    /// comma-separated list.
    #[arg(
        long = "publish-token",
        env = "WISHD_PUBLISH_TOKEN",
        value_name = "TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    publish_token: Vec<String>,
    /// A static token that may play every stream; giving one makes play need a token.
    /// Repeatable.
    #[arg(
        long = "play-token",
        env = "WISHD_PLAY_TOKEN",
        value_name = "TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    play_token: Vec<String>,
    /// File holding the HS256 secret that JWTs are checked (and minted) with.
    #[arg(
        long,
        env = "WISHD_JWT_SECRET_FILE",
        value_name = "FILE",
        global = true
    )]
    jwt_secret_file: Option<PathBuf>,
    /// PEM public key (RSA, EC P-256, Ed25519) that JWTs are checked with.
    #[arg(long, env = "WISHD_JWT_PUBLIC_KEY", value_name = "FILE")]
    jwt_public_key: Option<PathBuf>,
    /// HTTPS listen address (needs --cert and --key).
    #[arg(long, env = "WISHD_HTTPS", value_name = "ADDR", requires_all = ["cert", "key"])]
    https: Option<SocketAddr>,
    /// PEM certificate chain for HTTPS (reloaded on SIGHUP).
    #[arg(long, env = "WISHD_CERT", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// PEM private key for HTTPS (reloaded on SIGHUP).
    #[arg(long, env = "WISHD_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Serve HTTPS only: no plain-HTTP listener (needs --https).
    #[arg(long)]
    no_http: bool,
    /// Admin token of the JSON API under /api/ (at least 16 characters). Without one
    /// the admin routes answer 404.
    #[arg(
        long = "api-token",
        env = "WISHD_API_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    api_token: Option<String>,
    /// Log line format: human (default) or json (one object per line, with the
    /// session's stream and id).
    #[arg(long, env = "WISHD_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint a JWT from the configured key and print it (for scripts and tests).
    ///
    /// With an HS256 secret (--jwt-secret-file or the config's [auth.jwt]) the token is
    /// signed with it; for RS256/ES256/EdDSA give the private key with --private-key.
    Token {
        /// Stream name or glob the token grants. Repeatable.
        #[arg(long, required = true, value_name = "NAME")]
        stream: Vec<String>,
        /// Action the token grants: publish or play. Repeatable; default both.
        #[arg(long, value_name = "ACTION", value_parser = parse_action)]
        action: Vec<Role>,
        /// How long the token is valid, e.g. "1h".
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        lifetime: Duration,
        /// PEM private key to sign with (instead of the HS256 secret).
        #[arg(long, value_name = "FILE")]
        private_key: Option<PathBuf>,
    },
    /// Validate a configuration file without starting.
    ///
    /// Parses it (unknown keys are errors), checks every value, and reads every file
    /// it names as start would: token, key, certificate, SDP and TURN secret files.
    /// Exit code 0: valid; 2: invalid or unreadable, with the reason (FILE:LINE:
    /// COLUMN: key: what) on stderr. Flags and WISHD_* variables are not applied.
    CheckConfig {
        /// The TOML file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Ask a STUN server how the network outside sees each media port.
    ///
    /// Binds each worker's UDP port as start would (with the same flags and file),
    /// sends a STUN Binding request to --stun (or the first stun: or turn: URL of
    /// [[ice_servers]]), and compares the address it reflects with the host
    /// candidates wishd would advertise. Exit code 0: every port is reachable at an
    /// advertised address; 1: some are not (the line says what to add); 2: no STUN
    /// server, or it did not answer.
    CheckNetwork {
        /// The STUN server, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        stun: Option<String>,
    },
    /// Generate a local development CA and a server certificate signed by it.
    ///
    /// Writes ca.pem, ca.key, server.pem (leaf + CA) and server.key into --out. Trust
    /// ca.pem in the browser or OS, then run with
    /// --https 0.0.0.0:8443 --cert DIR/server.pem --key DIR/server.key.
    Cert {
        /// DNS name or IP address the certificate is for. Repeatable.
        #[arg(long, default_values_t = ["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()])]
        host: Vec<String>,
        /// Directory to write the files into.
        #[arg(long, default_value = "certs", value_name = "DIR")]
        out: PathBuf,
    },
}

fn parse_action(s: &str) -> Result<Role, String> {
    match s {
        "publish" => Ok(Role::Publisher),
        "play" => Ok(Role::Viewer),
        _ => Err(format!("{s:?} is not publish or play")),
    }
}

impl Cli {
    fn into_config(self) -> Result<Config, wishd::config::ConfigError> {
        let file = self.config.clone();
        let c = self.apply()?;
        c.validate().map_err(|e| match &file {
            // The same error from the file alone: the value is the file's, so it is
            // reported at its line and column there.
            Some(path)
                if Config::from_file(path).is_ok_and(|f| {
                    f.validate()
                        .is_err_and(|fe| fe.to_string() == e.to_string())
                }) =>
            {
                e.locate(path)
            }
            _ => e,
        })?;
        Ok(c)
    }

    /// The file over the defaults, then each flag (or its WISHD_* variable) over the
    /// file: flags > WISHD_* environment > file > embedded defaults.
    fn apply(self) -> Result<Config, wishd::config::ConfigError> {
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
        if let Some(v) = self.publisher_takeover {
            c.publisher_takeover = v;
        }
        for flag in &self.rtp {
            let entry = wishd::config::RtpEntry::from_flag(flag)
                .map_err(wishd::config::ConfigError::Invalid)?;
            c.rtp.push(entry);
        }
        for t in self.publish_token {
            c.auth
                .tokens
                .push(StaticTokenConfig::every_stream(t, Role::Publisher));
        }
        if !self.play_token.is_empty() {
            c.auth.play = Policy::Token;
        }
        for t in self.play_token {
            c.auth
                .tokens
                .push(StaticTokenConfig::every_stream(t, Role::Viewer));
        }
        if let Some(path) = self.jwt_secret_file {
            c.auth.jwt = Some(JwtConfig::with_secret_file(path));
        }
        if let Some(path) = self.jwt_public_key {
            let mut j = JwtConfig::with_secret_file(PathBuf::new());
            j.secret_file = None;
            j.public_key_file = Some(path);
            if let Some(old) = &c.auth.jwt {
                j.issuer = old.issuer.clone();
                j.audience = old.audience.clone();
                j.leeway = old.leeway;
            }
            c.auth.jwt = Some(j);
        }
        if let (Some(addr), Some(cert), Some(key)) = (self.https, self.cert, self.key) {
            c.https = Some(HttpsConfig { addr, cert, key });
        }
        if self.no_http {
            c.plain_http = false;
        }
        if let Some(f) = self.log_format {
            c.log_format = f;
        }
        if let Some(t) = self.api_token {
            c.api.token = Some(Secret::new(t));
            c.api.token_file = None;
        }
        if self.dev {
            c.open_everything();
        }
        Ok(c)
    }
}

fn mint_token(
    config: &Config,
    streams: Vec<String>,
    mut actions: Vec<Role>,
    lifetime: Duration,
    private_key: Option<PathBuf>,
) -> Result<String, String> {
    if actions.is_empty() {
        actions = vec![Role::Publisher, Role::Viewer];
    }
    let jwt = config.auth.jwt.as_ref();
    let key = match private_key {
        Some(path) => {
            let pem =
                std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            MintKey::from_private_pem(pem).map_err(|e| e.to_string())?
        }
        None => {
            let jwt = jwt.ok_or(
                "no JWT key: give --jwt-secret-file, [auth.jwt] in --config, or --private-key",
            )?;
            let read = |p: &std::path::Path| std::fs::read(p);
            match auth::load_jwt_key(jwt, &read).map_err(|e| e.to_string())? {
                auth::JwtKey::Secret(s) => MintKey::Secret(s),
                auth::JwtKey::Public(..) => {
                    return Err(
                        "the configured key is a public key: sign with --private-key FILE".into(),
                    );
                }
            }
        }
    };
    auth::mint(
        &key,
        streams,
        actions,
        auth::now_secs(),
        lifetime.as_secs(),
        jwt.and_then(|j| j.issuer.clone()),
        jwt.and_then(|j| j.audience.clone()),
    )
    .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::Cert { host, out }) = &cli.command {
        let written = wishd::http::tls::generate_dev_certs(host)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                wishd::http::tls::write_dev_certs(out, &c)
                    .map_err(|e| format!("cannot write into {}: {e}", out.display()))
            });
        return match written {
            Ok(()) => {
                println!(
                    "wrote {dir}/ca.pem, ca.key, server.pem, server.key for {hosts}\n\
                     trust {dir}/ca.pem, then: wishd --https 0.0.0.0:8443 --cert {dir}/server.pem --key {dir}/server.key",
                    dir = out.display(),
                    hosts = host.join(", ")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wishd cert: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return check_config(file);
    }
    if let Some(Command::CheckNetwork { stun }) = &cli.command {
        let stun = stun.clone();
        let config = match cli.into_config() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("wishd: {e}");
                return ExitCode::from(2);
            }
        };
        return check_network(&config, stun.as_deref());
    }
    if let Some(Command::Token {
        stream,
        action,
        lifetime,
        private_key,
    }) = cli.command.take()
    {
        let config = match cli.into_config() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("wishd: {e}");
                return ExitCode::from(2);
            }
        };
        return match mint_token(&config, stream, action, lifetime, private_key) {
            Ok(t) => {
                println!("{t}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("wishd token: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let dev = cli.dev;
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wishd: {e}");
            return ExitCode::from(2);
        }
    };
    // Held until `main` returns: dropping it gives the log thread about a second to
    // write out the lines still queued.
    let _log = init_logging(config.log_format);
    if dev {
        tracing::warn!(
            "\n!!! --dev: publishing and playing need NO token. Anyone who can reach this \
             server can publish and watch any stream. Never use --dev on a public network. !!!"
        );
    }
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
    let prepared = match config.validated().map_err(Into::into).and_then(prepare) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wishd: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A reload reads the configuration as this start did: the same flags and
    // variables over the file as it is then.
    let source: wishd::http::reload::ConfigSource = std::sync::Arc::new(|| {
        Cli::try_parse()
            .map_err(|e| e.to_string())?
            .into_config()
            .map_err(|e| e.to_string())
    });
    let prepared = prepared.reload_from(source);
    runtime.block_on(async move {
        let server = match Server::run(prepared).await {
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

/// `wishd check-config FILE`: 0 when the file is usable, 2 with the reason otherwise.
fn check_network(config: &Config, stun: Option<&str>) -> ExitCode {
    use wishd::media::netcheck;
    let server = match netcheck::stun_server(config, stun) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wishd check-network: {e}");
            return ExitCode::from(2);
        }
    };
    println!("asking {server} how each media port is seen from outside");
    let checks = netcheck::check_network(config, server);
    for c in &checks {
        println!("{}", c.describe());
    }
    if checks.is_empty() || checks.iter().any(|c| c.mapped.is_none()) {
        ExitCode::from(2)
    } else if checks.iter().all(netcheck::PortCheck::reachable) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let checked = Config::from_file(file)
        .and_then(|c| c.validated().map_err(|e| e.locate(file)))
        .map_err(|e| e.to_string())
        .and_then(|c| {
            prepare(c)
                .map(drop)
                .map_err(|e| format!("{}: {e}", file.display()))
        });
    match checked {
        Ok(()) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wishd check-config: {e}");
            ExitCode::from(2)
        }
    }
}

/// Human lines by default; with `json`, one object per line carrying the current
/// span's fields (a session's stream and id) and the event's fields.
///
/// Human lines are coloured only on a terminal (and not with `NO_COLOR` set): a file,
/// a pipe or journald would otherwise keep the escape codes around every field.
///
/// Lines are written by a thread of their own (`wishd-log`), so a slow reader of
/// standard output (a full pipe, a stalled journald) does not stop the HTTP threads
/// or a media worker in the middle of their work. None is dropped while wishd runs:
/// past 128,000 lines waiting, the thread that logs waits too.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("wishd-log")
        .finish(std::io::stdout());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    match format {
        LogFormat::Human => tracing_subscriber::fmt()
            .with_ansi(colour)
            .with_env_filter(filter)
            .with_writer(writer)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(writer)
            .init(),
    }
    guard
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["wishd"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().into_config().unwrap()
    }

    #[test]
    fn token_flags_add_static_tokens_for_every_stream() {
        let c = config(&[
            "--publish-token",
            "pub-token-1",
            "--publish-token",
            "pub-token-2",
            "--play-token",
            "play-token-1",
        ]);
        assert_eq!(c.auth.tokens.len(), 3);
        assert_eq!(c.auth.tokens[0].actions, vec![Role::Publisher]);
        assert_eq!(c.auth.tokens[2].actions, vec![Role::Viewer]);
        assert_eq!(c.auth.tokens[2].streams, vec!["*".to_string()]);
        assert_eq!(c.auth.publish, Policy::Token);
        assert_eq!(c.auth.play, Policy::Token, "a play token closes play");
    }

    #[test]
    fn defaults_are_publish_token_play_open_and_dev_opens_both() {
        let c = config(&[]);
        assert_eq!((c.auth.publish, c.auth.play), (Policy::Token, Policy::Open));
        let c = config(&["--dev"]);
        assert_eq!((c.auth.publish, c.auth.play), (Policy::Open, Policy::Open));
    }

    #[test]
    fn https_needs_cert_and_key() {
        let argv = ["wishd", "--https", "127.0.0.1:8443"];
        assert!(Cli::try_parse_from(argv).is_err());
        let c = config(&[
            "--https",
            "127.0.0.1:8443",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
        ]);
        assert_eq!(c.https.unwrap().cert, PathBuf::from("c.pem"));
        let argv = ["wishd", "--no-http"];
        assert!(
            Cli::try_parse_from(argv).unwrap().into_config().is_err(),
            "--no-http without --https leaves nothing to serve"
        );
    }

    #[test]
    fn jwt_flags_set_the_key() {
        let c = config(&["--jwt-public-key", "k.pem"]);
        let j = c.auth.jwt.unwrap();
        assert_eq!(j.public_key_file, Some(PathBuf::from("k.pem")));
        assert_eq!(j.secret_file, None);
    }
}
