//! Wiring: binds the HTTP listener and the media workers, runs the grace-period clock,
//! and shuts everything down in order.
//!
//! Tests and the binary use the same entry point: [`Server::start`] with a [`Config`]
//! (tests bind `127.0.0.1:0`), then [`Server::shutdown`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::auth::{AuthSetupError, Authenticator};
use crate::config::{Config, ConfigError, Policy, StaticTokenConfig, Valid};
use crate::directory::{Directory, DirectoryCounts};
use crate::http::ice_servers::IceServers;
use crate::http::ops::{Ops, OpsSettings, OpsSetupError};
use crate::http::ratelimit::RateLimiter;
use crate::http::reload::{ConfigSource, Reloader};
use crate::http::serve::{accept_loop, bind_listener, reload_on_sighup};
use crate::http::tls::{self, CertResolver, TlsError};
use crate::http::{AppState, Rules};
use crate::ingest::rtsp::RtspIngest;
use crate::ingest::{self, RtpIngest};
use crate::media::{Media, MediaCounters};
use crate::model::{EndReason, Role};

/// How long shutdown waits for HTTP connections and workers before giving up.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(4);
/// How often stream grace periods are checked.
const GRACE_TICK: Duration = Duration::from_millis(100);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An RTP ingest entry is unusable (unreadable SDP file, bad codec, ...).
    #[error("{0}")]
    Rtp(String),
    /// Tokens or keys cannot be used.
    #[error("authorization settings: {0}")]
    Auth(#[from] AuthSetupError),
    /// The HTTPS certificate or key cannot be used.
    #[error("HTTPS: {0}")]
    Tls(#[from] TlsError),
    /// The `[api]` settings cannot be used.
    #[error(transparent)]
    Ops(#[from] OpsSetupError),
    /// A socket could not be bound.
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running server.
pub struct Server {
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    media: Arc<Media>,
    directory: Arc<Directory>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    /// The cameras configured at start (the API may add and remove others).
    rtp: Vec<RtpIngest>,
    rtsp: Vec<RtspIngest>,
    cameras: Arc<ingest::Cameras>,
    /// The recordings `[[record]]` rules started.
    recordings: Arc<crate::record::Recordings>,
    generated_token: Option<String>,
    play_credentials: bool,
    ops: Arc<Ops>,
}

/// Everything a leak check needs, summed over the workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Directory counts.
    pub directory: DirectoryCounts,
    /// Sessions owned by workers.
    pub worker_sessions: usize,
    /// Routing entries left in workers.
    pub worker_routes: usize,
    /// Timers left in workers.
    pub worker_timers: usize,
    /// Viewers in fan-outs.
    pub worker_viewers: usize,
    /// Publishers hosted by workers.
    pub worker_publishers: usize,
    /// Live tokio tasks of the server (HTTP accept loop and grace clock and workers).
    pub server_tasks: usize,
}

/// A configuration with every file it names read and every part built that can be
/// built before a socket is bound: what `check-config` stops at and [`Server::run`]
/// starts from. Both go through [`prepare`], so a file start would fail on fails
/// `check-config` too.
pub struct Prepared {
    config: Valid<Config>,
    auth: Authenticator,
    generated_token: Option<String>,
    ops: OpsSettings,
    cameras: Vec<ingest::CameraSpec>,
    /// How the configuration is read again (SIGHUP, `POST /api/reload`).
    config_source: Option<ConfigSource>,
    https: Option<(Arc<CertResolver>, TlsAcceptor)>,
    ice_servers: IceServers,
}

/// Reads and checks everything a valid configuration names: token and key files, the
/// `[api]` token, RTP ingest entries (their SDP files), the HTTPS certificate and key,
/// and TURN secret files. When publishing needs a token and none is configured, one
/// is made for this run (secure by default).
pub fn prepare(config: Valid<Config>) -> Result<Prepared, StartError> {
    let read = |p: &std::path::Path| std::fs::read(p);
    let mut auth = Authenticator::new(&config.auth, &read)?;
    let mut generated_token = None;
    let mut config = config;
    if auth.policy(Role::Publisher) == Policy::Token && !auth.has_credentials_for(Role::Publisher) {
        let token = crate::auth::random_token();
        let mut c = config.into_inner();
        c.auth.tokens.push(StaticTokenConfig::every_stream(
            token.clone(),
            Role::Publisher,
        ));
        config = c.validated()?;
        auth = Authenticator::new(&config.auth, &read)?;
        generated_token = Some(token);
    }
    let ops = OpsSettings::read(&config.api, &read)?;
    let cameras = ingest::configured_cameras(&config, &read).map_err(StartError::Rtp)?;
    let https = match &config.https {
        Some(h) => {
            let resolver = Arc::new(CertResolver::load(&h.cert, &h.key)?);
            let acceptor = TlsAcceptor::from(tls::server_config(resolver.clone())?);
            Some((resolver, acceptor))
        }
        None => None,
    };
    let ice_servers = IceServers::new(&config.ice_servers, &read)
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    Ok(Prepared {
        config,
        auth,
        generated_token,
        ops,
        cameras,
        config_source: None,
        https,
        ice_servers,
    })
}

impl Prepared {
    /// Reloads read the configuration from `source` (what gave this one: the command
    /// line's flags and variables over the file).
    pub fn reload_from(mut self, source: ConfigSource) -> Prepared {
        self.config_source = Some(source);
        self
    }
}

impl Server {
    /// Validates and prepares `config`, then binds everything and starts serving on
    /// the current tokio runtime (what tests call).
    pub async fn start(config: Config) -> Result<Server, StartError> {
        Self::run(prepare(config.validated()?)?).await
    }

    /// Binds everything a prepared configuration describes and starts serving on the
    /// current tokio runtime.
    pub async fn run(prepared: Prepared) -> Result<Server, StartError> {
        let Prepared {
            config,
            auth,
            generated_token,
            ops: ops_settings,
            cameras: camera_specs,
            config_source,
            https: tls_parts,
            ice_servers,
        } = prepared;
        let directory = Arc::new(Directory::new(
            config.publisher_grace,
            config.publisher_takeover,
            config.source_silence,
        ));

        let (media, workers) =
            Media::start(&config, directory.clone()).map_err(|source| StartError::Bind {
                what: "UDP",
                addr: config.udp,
                source,
            })?;
        let media = Arc::new(media);
        // Before any stream exists: cameras start below, sessions once HTTP serves.
        let recordings = Arc::new(crate::record::Recordings::new(config.record.clone()));
        directory.set_new_stream_hook(recordings.clone());
        let mut plain = None;
        if config.plain_http {
            let listener = bind_listener(config.http).map_err(|source| StartError::Bind {
                what: "HTTP",
                addr: config.http,
                source,
            })?;
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                what: "HTTP",
                addr: config.http,
                source,
            })?;
            plain = Some((listener, addr));
        }
        let mut https = None;
        if let (Some(h), Some((resolver, acceptor))) = (&config.https, tls_parts) {
            let l = bind_listener(h.addr).map_err(|source| StartError::Bind {
                what: "HTTPS",
                addr: h.addr,
                source,
            })?;
            let addr = l.local_addr().map_err(|source| StartError::Bind {
                what: "HTTPS",
                addr: h.addr,
                source,
            })?;
            https = Some((l, addr, acceptor, resolver));
        }
        let (stop, stop_rx) = watch::channel(false);
        let wiring = ingest::Wiring {
            directory: directory.clone(),
            peers: media.workers().iter().map(|w| w.tx.clone()).collect(),
            media_counters: media.counters().clone(),
            timeout: config.rtp_timeout,
            silence: config.source_silence,
        };
        let cluster = match &config.cluster {
            Some(c) => Some(
                crate::cluster::Cluster::new(c, media.clone(), wiring.clone())
                    .map_err(|e| StartError::Config(ConfigError::Invalid(e)))?,
            ),
            None => None,
        };
        let cameras = Arc::new(ingest::Cameras::default());
        let mut rtp = Vec::new();
        let mut rtsp = Vec::new();
        for spec in camera_specs {
            match spec {
                ingest::CameraSpec::Rtp(spec) => {
                    let started = cameras.start_rtp(spec, &wiring, true);
                    rtp.push(started.map_err(|e| match e {
                        ingest::CameraError::Bind { addr, source } => StartError::Bind {
                            what: "RTP ingest",
                            addr,
                            source,
                        },
                        other => StartError::Rtp(other.to_string()),
                    })?);
                }
                ingest::CameraSpec::Rtsp(spec) => {
                    rtsp.push(cameras.start_rtsp(spec, &wiring, true))
                }
                ingest::CameraSpec::Pull(spec) => {
                    cameras.start_pull(spec, &wiring, true);
                }
            }
        }
        let ops = Arc::new(Ops::new(
            ops_settings,
            cameras.clone(),
            wiring,
            recordings.clone(),
        ));
        let play_credentials = auth.has_credentials_for(Role::Viewer);
        let state = Arc::new(AppState {
            media: media.clone(),
            cluster: cluster.clone(),
            retry_after_secs: config.retry_after_secs,
            rules: arc_swap::ArcSwap::from_pointee(Rules {
                auth,
                ice_servers,
                redirects: config.redirects.clone(),
            }),
            reloader: Reloader {
                source: config_source,
                generated_token: generated_token.clone(),
                tls: https.as_ref().map(|(_, _, _, resolver)| resolver.clone()),
            },
            cors_origins: config.cors_origins.clone(),
            limiter: RateLimiter::new(config.limits.requests_per_second, config.limits.burst),
            max_sessions: config.limits.max_sessions,
            sessions_pending: Default::default(),
            public_url: config.public_url.clone(),
            ops: ops.clone(),
        });
        let push_wiring = crate::push::PushWiring {
            directory: directory.clone(),
            peers: media.workers().iter().map(|w| w.tx.clone()).collect(),
        };
        let pushes: Vec<JoinHandle<()>> = config
            .push
            .iter()
            .map(|e| crate::push::start(e.clone(), push_wiring.clone(), stop_rx.clone()))
            .collect();
        let mut tasks = vec![tokio::spawn(grace_clock(
            directory.clone(),
            media.clone(),
            stop_rx,
        ))];
        tasks.extend(pushes);
        if let Some(c) = cluster {
            tasks.push(tokio::spawn(c.run(stop.subscribe())));
        }
        let http_addr = match plain {
            Some((listener, addr)) => {
                tasks.push(tokio::spawn(accept_loop(
                    listener,
                    state.clone(),
                    config.limits.clone(),
                    None,
                    stop.subscribe(),
                )));
                if let Some(t) = tasks.last() {
                    ops.readiness
                        .watch(format!("HTTP listener {addr}"), t.abort_handle());
                }
                Some(addr)
            }
            None => None,
        };
        let https_addr = match https {
            Some((l, addr, acceptor, _)) => {
                tasks.push(tokio::spawn(accept_loop(
                    l,
                    state.clone(),
                    config.limits.clone(),
                    Some(acceptor),
                    stop.subscribe(),
                )));
                if let Some(t) = tasks.last() {
                    ops.readiness
                        .watch(format!("HTTPS listener {addr}"), t.abort_handle());
                }
                Some(addr)
            }
            None => None,
        };
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::hangup()) {
                Ok(hup) => tasks.push(tokio::spawn(reload_on_sighup(
                    state.clone(),
                    hup,
                    stop.subscribe(),
                ))),
                Err(e) => warn!("cannot listen for SIGHUP, reloads only by the API: {e}"),
            }
        }
        for (w, t) in media.workers().iter().zip(&workers) {
            let what = format!("media worker {} (UDP {})", w.index, w.bound);
            ops.readiness.watch(what, t.abort_handle());
        }
        for (r, t) in &rtp {
            ops.readiness.watch(r.readiness_name(), t.clone());
        }
        let rtp = rtp.into_iter().map(|(r, _)| r).collect();
        ops.readiness.set_started();
        let server = Server {
            http_addr,
            https_addr,
            media,
            directory,
            stop,
            tasks,
            workers,
            rtp,
            rtsp,
            cameras,
            recordings,
            generated_token,
            play_credentials,
            ops,
        };
        server.log_banner(&config);
        Ok(server)
    }

    fn log_banner(&self, config: &Config) {
        let mut lines = vec!["wishd listening:".to_owned()];
        if let Some(a) = self.http_addr {
            lines.push(format!("  HTTP on http://{a}"));
        }
        if let Some(a) = self.https_addr {
            lines.push(format!(
                "  HTTPS on https://{a} (HTTP/1.1 and HTTP/2; SIGHUP reloads the certificate)"
            ));
        }
        let scheme = if self.http_addr.is_some() {
            "http"
        } else {
            "https"
        };
        let main = self.http_addr();
        let host = if main.ip().is_unspecified() {
            format!("<host>:{}", main.port())
        } else {
            main.to_string()
        };
        lines.push(format!(
            "  WHIP publish:  POST {scheme}://{host}/whip/<stream>"
        ));
        lines.push(format!(
            "  WHEP playback: POST {scheme}://{host}/whep/<stream>"
        ));
        for w in self.media.workers() {
            let c: Vec<String> = w.candidates.iter().map(|a| a.to_string()).collect();
            lines.push(format!(
                "  media worker {}: UDP {} advertising {}",
                w.index,
                w.bound,
                c.join(", ")
            ));
        }
        lines.push(format!(
            "  publisher grace period {:?}, keyframe request interval {:?}",
            config.publisher_grace, config.keyframe_request_interval
        ));
        lines.push(format!("  DTLS: {}", crate::media::dtls::engine_name()));
        info!("\n{}", lines.join("\n"));
        if let Some(token) = &self.generated_token {
            let server_url = match self.https_addr {
                Some(a) => format!("https://<host>:{}/whip/<stream>", a.port()),
                None => format!("http://{host}/whip/<stream>"),
            };
            // The one place a token is logged: the operator needs it to publish.
            info!(
                "\nno publish token or JWT key is configured, so this one was generated for this run:\n  \
                 OBS → Settings → Stream → Service: WHIP\n  \
                 Server:            {server_url}\n  \
                 Bearer Token:      {token}\n\
                 Set your own with --publish-token or the [auth] config table."
            );
        }
        if config.auth.play == Policy::Token && !self.play_credentials {
            warn!("play needs a token but no play token or JWT key is configured: nobody can play");
        }
        if config.auth.publish == Policy::Open {
            warn!("publishing is OPEN: anyone who reaches this server can publish any stream");
        }
    }

    /// The RTP ingests started with the server (bound ports and counters).
    pub fn rtp_ingests(&self) -> &[RtpIngest] {
        &self.rtp
    }

    /// The RTSP sources started with the server (state, reconnects and counters);
    /// `/api/sources` also lists those the API or a reload started since.
    pub fn rtsp_ingests(&self) -> &[RtspIngest] {
        &self.rtsp
    }

    /// The publish token generated at start because none was configured.
    pub fn generated_token(&self) -> Option<&str> {
        self.generated_token.as_deref()
    }

    /// The bound HTTPS address, when HTTPS is configured.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// The bound plain-HTTP address; the HTTPS one when plain HTTP is off.
    pub fn http_addr(&self) -> SocketAddr {
        match (self.http_addr, self.https_addr) {
            (Some(a), _) | (None, Some(a)) => a,
            // start() refuses a configuration with neither listener.
            (None, None) => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    /// `http://ADDR` of the HTTP listener (loopback when bound to 0.0.0.0), or
    /// `https://ADDR` when plain HTTP is off.
    pub fn base_url(&self) -> String {
        let mut a = self.http_addr();
        if a.ip().is_unspecified() {
            a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let scheme = if self.http_addr.is_some() {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{a}")
    }

    /// The workers' bound UDP addresses.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.media.workers().iter().map(|w| w.bound).collect()
    }

    /// Shared media counters.
    pub fn counters(&self) -> &Arc<MediaCounters> {
        self.media.counters()
    }

    /// The operator's state: HTTP counters, readiness.
    pub fn ops(&self) -> &Arc<Ops> {
        &self.ops
    }

    /// The stream and session directory.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Blocks media worker `index` for `d`, as a worker starved of CPU is: a test
    /// hook for what a worker does when it falls behind (its queue ages, and it must
    /// drop what is stale rather than send it late). Not for production use.
    #[doc(hidden)]
    pub async fn stall_media_worker(&self, index: usize, d: Duration) {
        self.media.stall(index, d).await;
    }

    /// Counts of everything that must go back to zero when no session is left.
    pub async fn stats(&self) -> ServerStats {
        let mut s = ServerStats {
            directory: self.directory.counts(),
            ..ServerStats::default()
        };
        for w in self.media.worker_stats().await {
            s.worker_sessions += w.sessions;
            s.worker_routes += w.routes;
            s.worker_timers += w.timers;
            s.worker_viewers += w.viewers;
            s.worker_publishers += w.publishers;
        }
        s.server_tasks = self
            .tasks
            .iter()
            .chain(self.workers.iter())
            .filter(|t| !t.is_finished())
            .count();
        s
    }

    /// Stops accepting, closes every session, and returns within about 5 s.
    pub async fn shutdown(self) {
        info!("shutting down");
        self.ops.readiness.set_stopping();
        // Viewers with an event stream hear it before their sessions end.
        self.media.directory().reconnect_all();
        let _ = self.stop.send(true);
        let media = self.media.clone();
        let cameras = self.cameras.stop_all();
        let recordings = self.recordings.stop_all();
        let work = async move {
            media.shutdown().await;
            for t in cameras.into_iter().chain(self.tasks).chain(self.workers) {
                let _ = t.await;
            }
            // Each recorder writes what it has and closes its file.
            let _ = tokio::task::spawn_blocking(move || {
                for r in recordings {
                    let _ = r.join();
                }
            })
            .await;
        };
        if tokio::time::timeout(SHUTDOWN_DEADLINE, work).await.is_err() {
            warn!("shutdown deadline passed; exiting anyway");
        }
    }
}

async fn grace_clock(
    directory: Arc<Directory>,
    media: Arc<Media>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(GRACE_TICK);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {
                for (stream, mask) in directory.expire(Instant::now()) {
                    info!(%stream, "grace period over: stream ended");
                    media.broadcast_end(stream, mask, EndReason::PublisherGone);
                }
            }
        }
    }
}
