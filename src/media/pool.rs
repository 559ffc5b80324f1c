//! The worker pool: one thread and one UDP socket per worker, sessions spread over
//! them round robin, and the one cross-worker send ([`send_to_viewer_workers`]) by
//! which a source's packet reaches every worker with viewers of its stream, as one
//! shared `Arc`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use str0m::RtcConfig;
use tokio::sync::{mpsc, oneshot, watch};

use super::tcp::{self, TcpLimits};
use super::worker::{self, PatchError, PatchOutcome, WorkerMsg, WorkerStats};
use super::{
    LayerChoice, MediaCounters, MediaError, SessionSnapshot, WorkerConfig, negotiate, udp,
};
use crate::config::Config;
use crate::core::{LayerPolicy, SourcePacket};
use crate::directory::{Directory, DirectoryError, SessionInfo, Stream};
use crate::model::{EndReason, Role, SessionId};
use crate::sdp::frag::IceFragment;
use crate::sdp::template::Templates;

/// One worker as seen from outside.
#[derive(Debug, Clone)]
pub(crate) struct WorkerHandle {
    /// Its index (also its bit in the viewer masks).
    pub(crate) index: usize,
    /// Its command queue.
    pub(crate) tx: mpsc::Sender<WorkerMsg>,
    /// Its socket's bound address.
    pub(crate) bound: SocketAddr,
    /// The addresses put in answers as host candidates.
    pub(crate) candidates: Vec<SocketAddr>,
    /// The TCP port put in answers as passive TCP candidates on the same addresses
    /// (ICE-TCP), when on.
    pub(crate) tcp_port: Option<u16>,
}

/// The media side of the server: workers plus session setup.
pub(crate) struct Media {
    pub(super) workers: Vec<WorkerHandle>,
    pub(super) directory: Arc<Directory>,
    pub(super) counters: Arc<MediaCounters>,
    pub(super) template: RtcConfig,
    /// The template for viewers: `template` with the mid header extension only.
    pub(super) viewer_template: RtcConfig,
    /// Offers as str0m reads them, parsed once per template (`sdp::template`).
    pub(super) offer_templates: Templates,
    /// Viewers' offers as wishd's inspection read them, once per template (`sdp::memo`).
    pub(super) offer_inspections: crate::sdp::memo::Inspections,
    /// Whether publishers' simulcast layers are taken.
    pub(super) simulcast: crate::config::SimulcastConfig,
    pub(super) next_worker: AtomicUsize,
    /// Dropped with `Media`: the worker threads see it and stop (a server dropped
    /// without `shutdown`, as tests do, must not leave its threads behind).
    pub(super) _alive: watch::Sender<()>,
}

/// Capacity of a worker's command queue (commands and cross-worker packets). Packets
/// are also bounded by age: a worker drops those older than `forward_max_delay`.
const QUEUE: usize = 8192;

/// A report interval that never comes round (ten years): str0m's sender reports off.
const NO_REPORTS: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl Media {
    /// Binds one UDP socket per worker and starts each worker on a thread of its own
    /// (a single-threaded tokio runtime). Returns handles that finish when the workers
    /// have stopped, so shutdown can wait for them.
    ///
    /// Own threads, not tasks on the server's runtime: a worker fanning a keyframe out
    /// to hundreds of viewers runs for milliseconds without yielding, and on the shared
    /// runtime the HTTP requests (a burst of viewers joining) queued behind it. As
    /// threads, the kernel shares the cores between them, and a request that wakes up
    /// runs at once.
    pub(crate) fn start(
        config: &Config,
        directory: Arc<Directory>,
    ) -> std::io::Result<(Media, Vec<tokio::task::JoinHandle<()>>)> {
        let count = config.worker_count();
        let mut sockets = Vec::with_capacity(count);
        for n in 0..count {
            let port = if config.udp.port() == 0 {
                0
            } else {
                config.udp.port() + n as u16
            };
            sockets.push(udp::BoundSocket::bind(SocketAddr::new(
                config.udp.ip(),
                port,
            ))?);
        }
        let mut txs = Vec::with_capacity(count);
        let mut rxs = Vec::with_capacity(count);
        for _ in 0..count {
            let (tx, rx) = mpsc::channel(QUEUE);
            txs.push(tx);
            rxs.push(rx);
        }
        let peers: Arc<[mpsc::Sender<WorkerMsg>]> = txs.clone().into();
        let counters = Arc::new(MediaCounters::default());
        counters.workers.count.store(count, Ordering::Relaxed);
        let wcfg = WorkerConfig {
            ice_timeout: config.ice_timeout,
            connect_timeout: config.connect_timeout,
            keyframe_request_interval: config.keyframe_request_interval,
            forward_max_delay: config.forward_max_delay,
            forward_hold: config.forward_hold,
            source_silence: config.source_silence,
        };
        let (alive, alive_rx) = watch::channel(());
        let mut workers = Vec::with_capacity(count);
        let mut joins = Vec::with_capacity(count);
        let tcp_limits = TcpLimits {
            max_connections: config.ice_tcp.max_connections,
            idle: config.ice_tcp.idle_timeout,
            stall: config.ice_tcp.stall_timeout,
            queue: config.ice_tcp.queue,
        };
        for (index, (socket, rx)) in sockets.into_iter().zip(rxs).enumerate() {
            let bound = socket.local_addr();
            let candidates = candidate_addrs(bound, &config.public_ips);
            // ICE-TCP on the UDP socket's port number (the port a firewall rule names
            // once for both); when the media ports are the system's choice and that
            // number is taken on TCP, another free one.
            // A TCP port another program holds costs that worker its ICE-TCP, not the
            // server its start: UDP is what nearly every client uses.
            let listener = if config.ice_tcp.enabled {
                let same = SocketAddr::new(config.udp.ip(), bound.port());
                let l = match tcp::BoundListener::bind(same) {
                    Err(_) if config.udp.port() == 0 => {
                        tcp::BoundListener::bind(SocketAddr::new(config.udp.ip(), 0))
                    }
                    other => other,
                };
                l.map_err(|e| {
                    tracing::warn!(index, %same, "media worker without ICE-TCP: cannot listen on TCP: {e}")
                })
                .ok()
            } else {
                None
            };
            let tcp_port = match &listener {
                Some(l) => Some(l.local_addr()?.port()),
                None => None,
            };
            workers.push(WorkerHandle {
                index,
                tx: txs[index].clone(),
                bound,
                candidates,
                tcp_port,
            });
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let links = worker::WorkerLinks {
                peers: peers.clone(),
                directory: directory.clone(),
                counters: counters.clone(),
                cfg: wcfg.clone(),
                alive: alive_rx.clone(),
            };
            let (done, finished) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("wishd-media-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let tcp = listener.map(|l| l.register(tcp_limits)).transpose();
                        match (socket.register(), tcp) {
                            (Ok(socket), Ok(tcp)) => {
                                worker::Worker::new(index, socket, tcp, rx, links)
                                    .run()
                                    .await
                            }
                            (Err(e), _) | (_, Err(e)) => {
                                tracing::error!(index, "media worker cannot start: {e}")
                            }
                        }
                    });
                    let _ = done.send(());
                })?;
            joins.push(tokio::spawn(async move {
                let _ = finished.await;
            }));
        }
        let template = negotiate::rtc_template(config.prepared_dtls)?;
        // The egress writes each SSRC's sender reports; str0m would otherwise send
        // its own (with zero counts) for the same SSRCs. Its receiver reports are
        // unaffected: a viewer session receives no media.
        let viewer_template = template
            .clone()
            .set_extension_map(negotiate::viewer_extensions())
            .set_rtcp_report_interval_audio(NO_REPORTS)
            .set_rtcp_report_interval_video(NO_REPORTS);
        Ok((
            Media {
                workers,
                directory,
                counters,
                template,
                viewer_template,
                offer_templates: Templates::default(),
                offer_inspections: Default::default(),
                simulcast: config.simulcast.clone(),
                next_worker: AtomicUsize::new(0),
                _alive: alive,
            },
            joins,
        ))
    }

    /// The workers (addresses for logs and tests).
    pub(crate) fn workers(&self) -> &[WorkerHandle] {
        &self.workers
    }

    /// Shared counters.
    pub(crate) fn counters(&self) -> &Arc<MediaCounters> {
        &self.counters
    }

    /// How this server's DTLS sessions started, and how many are made ahead now.
    pub(crate) fn dtls_starts(&self) -> super::dtls::SessionStarts {
        self.template
            .dtls_cert()
            .and_then(super::dtls::session_starts)
            .unwrap_or_default()
    }

    pub(super) fn pick_worker(&self) -> &WorkerHandle {
        let n = self.next_worker.fetch_add(1, Ordering::Relaxed);
        &self.workers[n % self.workers.len()]
    }

    /// The session at a URL: `kind` and `stream` must match it, else it is unknown.
    pub(crate) fn session(
        &self,
        id: SessionId,
        kind: Role,
        stream: &str,
    ) -> Result<SessionInfo, MediaError> {
        self.directory
            .session(id)
            .filter(|s| s.kind == kind && &*s.stream == stream)
            .ok_or(MediaError::Directory(DirectoryError::UnknownSession))
    }

    /// A session of `kind` on `stream` that ended lately (its resource still takes a
    /// DELETE).
    pub(crate) fn ended_session(
        &self,
        id: SessionId,
        kind: Role,
        stream: &str,
    ) -> Option<SessionInfo> {
        self.directory
            .ended_session(id, Instant::now())
            .filter(|s| s.kind == kind && &*s.stream == stream)
    }

    /// Forgets an ended session once its DELETE has been answered.
    pub(crate) fn forget_ended(&self, id: SessionId) {
        self.directory.forget_ended(id);
    }

    /// Number of sessions in the directory (publishers and viewers).
    pub(crate) fn session_count(&self) -> usize {
        let c = self.directory.counts();
        c.publishers + c.viewers
    }

    /// Ends a session (DELETE). `kind` and `stream` must match its URL.
    pub(crate) async fn close(
        &self,
        id: SessionId,
        kind: Role,
        stream: &str,
    ) -> Result<(), MediaError> {
        let info = self
            .directory
            .session(id)
            .filter(|s| s.kind == kind && &*s.stream == stream)
            .ok_or(DirectoryError::UnknownSession)?;
        self.end_session(&info, EndReason::Delete).await
    }

    /// Ends a session through the worker's single teardown path, for `reason`.
    pub(crate) async fn end_session(
        &self,
        info: &SessionInfo,
        reason: EndReason,
    ) -> Result<(), MediaError> {
        let id = info.id;
        let found = self
            .ask(info.worker, |reply| WorkerMsg::Close { id, reason, reply })
            .await?;
        found
            .then_some(())
            .ok_or(DirectoryError::UnknownSession.into())
    }

    /// Sends the worker a command made around `reply` and waits for its answer.
    async fn ask<T>(
        &self,
        worker: usize,
        msg: impl FnOnce(oneshot::Sender<T>) -> WorkerMsg,
    ) -> Result<T, MediaError> {
        let worker = self.workers.get(worker).ok_or(MediaError::Unavailable)?;
        let (reply, done) = oneshot::channel();
        worker
            .tx
            .send(msg(reply))
            .await
            .map_err(|_| MediaError::Unavailable)?;
        done.await.map_err(|_| MediaError::Unavailable)
    }

    /// Asks the session's worker to end it for `reason`, without waiting for it.
    pub(super) fn close_soon(&self, info: &SessionInfo, reason: EndReason) {
        if let Some(worker) = self.workers.get(info.worker) {
            let (reply, _) = oneshot::channel();
            let _ = worker.tx.try_send(WorkerMsg::Close {
                id: info.id,
                reason,
                reply,
            });
        }
    }

    /// Applies a PATCH (trickle ICE or ICE restart) to a session whose URL matched.
    pub(crate) async fn patch(
        &self,
        id: SessionId,
        worker: usize,
        frag: IceFragment,
    ) -> Result<PatchOutcome, MediaError> {
        let done = self
            .ask(worker, |reply| WorkerMsg::Patch { id, frag, reply })
            .await?;
        done.map_err(|e| match e {
            PatchError::UnknownSession => DirectoryError::UnknownSession.into(),
            PatchError::RestartFailed(why) => MediaError::RestartFailed(why),
        })
    }

    /// A viewer's layer choice (the WHEP layer extension): automatic, capped or one
    /// layer by rid. Answers when the viewer's worker has taken it.
    pub(crate) async fn select_layer(
        &self,
        info: &SessionInfo,
        choice: LayerChoice,
    ) -> Result<(), MediaError> {
        let shared = self
            .directory
            .stream(&info.stream)
            .ok_or(DirectoryError::UnknownSession)?
            .shared;
        let policy = match choice {
            LayerChoice::Auto => LayerPolicy::Auto,
            LayerChoice::Cap {
                max_width,
                max_height,
            } => LayerPolicy::Cap {
                max_width,
                max_height,
            },
            LayerChoice::Rid(rid) => {
                let index = shared.stats.rid_index(&rid).ok_or_else(|| {
                    let known = shared.stats.rids();
                    MediaError::Layer(if known.is_empty() {
                        format!("unknown rid {rid:?}: the stream has no simulcast layers")
                    } else {
                        format!("unknown rid {rid:?} (the stream has {})", known.join(", "))
                    })
                })?;
                LayerPolicy::Pin(index)
            }
        };
        let id = info.id;
        let found = self
            .ask(info.worker, |reply| WorkerMsg::SetLayer {
                id,
                policy,
                reply,
            })
            .await?;
        found
            .then_some(())
            .ok_or(DirectoryError::UnknownSession.into())
    }

    /// The directory.
    pub(crate) fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Stops a stream: its publisher and every viewer end now (`reason`), through
    /// each worker's single teardown path. False when there is no such stream.
    pub(crate) async fn stop_stream(
        &self,
        name: &str,
        reason: EndReason,
    ) -> Result<bool, MediaError> {
        let Some(stopped) = self.directory.stop_stream(name) else {
            return Ok(false);
        };
        if let Some(p) = &stopped.publisher {
            match self.end_session(p, reason).await {
                Ok(()) | Err(MediaError::Directory(DirectoryError::UnknownSession)) => {}
                Err(e) => return Err(e),
            }
        }
        // Every worker: viewers still connecting are not in the stream's viewer mask yet.
        self.broadcast_end(Arc::from(name), u64::MAX, reason);
        Ok(true)
    }

    /// Takes a camera's stream (an RTP or RTSP camera, a pull, a relay) out of the
    /// directory and ends its viewers (`reason`) on every worker. False when the
    /// directory had no such camera stream.
    pub(crate) fn remove_camera(&self, name: &str, reason: EndReason) -> bool {
        let removed = self.directory.remove_camera(name);
        self.broadcast_end(Arc::from(name), u64::MAX, reason);
        removed
    }

    /// Tells the workers in `mask` to close their viewers of `stream`.
    pub(crate) fn broadcast_end(&self, stream: Arc<str>, mask: u64, reason: EndReason) {
        for w in &self.workers {
            if mask & (1 << w.index) != 0 {
                let _ = w.tx.try_send(WorkerMsg::EndStream {
                    stream: stream.clone(),
                    reason,
                });
            }
        }
    }

    /// The sessions the workers hold (of `stream`, or all; only publishers when
    /// `publishers_only`), as the API shows them.
    pub(crate) async fn sessions(
        &self,
        stream: Option<&str>,
        publishers_only: bool,
    ) -> Vec<SessionSnapshot> {
        let stream: Option<Arc<str>> = stream.map(Arc::from);
        let mut out = Vec::new();
        for w in &self.workers {
            let (reply, rx) = oneshot::channel();
            let msg = WorkerMsg::Sessions {
                stream: stream.clone(),
                publishers_only,
                reply,
            };
            if w.tx.send(msg).await.is_ok()
                && let Ok(list) = rx.await
            {
                out.extend(list);
            }
        }
        out
    }

    /// Blocks worker `index`'s thread for `d` (see `WorkerMsg::Stall`).
    pub(crate) async fn stall(&self, index: usize, d: Duration) {
        if let Some(w) = self.workers.get(index) {
            let _ = w.tx.send(WorkerMsg::Stall(d)).await;
        }
    }

    /// Per-worker internal counts (sessions, routing entries), for leak checks.
    pub(crate) async fn worker_stats(&self) -> Vec<WorkerStats> {
        let mut out = Vec::new();
        for w in &self.workers {
            let (reply, rx) = oneshot::channel();
            if w.tx.send(WorkerMsg::Stats { reply }).await.is_ok()
                && let Ok(s) = rx.await
            {
                out.push(s);
            }
        }
        out
    }

    /// Closes every session and stops the workers.
    pub(crate) async fn shutdown(&self) {
        for w in &self.workers {
            let (reply, rx) = oneshot::channel();
            if w.tx.send(WorkerMsg::Shutdown { reply }).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    pub(super) async fn hand_over(
        &self,
        worker: &WorkerHandle,
        session: worker::NewSession,
        id: SessionId,
    ) -> Result<(), MediaError> {
        if worker
            .tx
            .send(WorkerMsg::Add(Box::new(session)))
            .await
            .is_err()
        {
            self.directory.remove_session(id, Instant::now());
            return Err(MediaError::Unavailable);
        }
        Ok(())
    }
}

/// Hands a source packet to every worker with viewers of its stream, except `local`
/// (the caller's own worker, which fans out itself). Counts the packet once as a
/// source packet and each full worker queue as a drop. Used by WHIP publishers and
/// RTP ingests alike. Returns whether `local` has viewers of the stream.
pub(crate) fn send_to_viewer_workers(
    peers: &[mpsc::Sender<WorkerMsg>],
    shared: &Arc<Stream>,
    pkt: &Arc<SourcePacket>,
    counters: &MediaCounters,
    local: Option<usize>,
) -> bool {
    counters.source_packets.fetch_add(1, Ordering::Relaxed);
    counters
        .source_bytes
        .fetch_add(pkt.payload.len() as u64, Ordering::Relaxed);
    let mask = shared.publish(pkt);
    for (w, tx) in peers.iter().enumerate() {
        if mask & (1 << w) == 0 || Some(w) == local {
            continue;
        }
        let msg = WorkerMsg::Packet {
            stream: shared.clone(),
            pkt: pkt.clone(),
        };
        if tx.try_send(msg).is_err() {
            counters.cross_worker_drops.fetch_add(1, Ordering::Relaxed);
        }
    }
    local.is_some_and(|w| mask & (1 << w) != 0)
}

/// Host candidates for a socket bound to `bound`: the address itself, or every usable
/// interface address when bound to the unspecified address (IPv4 ones for `0.0.0.0`,
/// both families for the dual-stack `[::]`); plus the configured public addresses on
/// the same port.
pub(crate) fn candidate_addrs(bound: SocketAddr, public_ips: &[IpAddr]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    if bound.ip().is_unspecified() {
        if let Ok(ifaces) = if_addrs::get_if_addrs() {
            for iface in ifaces {
                let ip = iface.ip();
                let usable = match ip {
                    IpAddr::V4(v4) => !v4.is_link_local(),
                    IpAddr::V6(v6) => bound.is_ipv6() && !v6.is_unicast_link_local(),
                };
                if usable {
                    out.push(SocketAddr::new(ip, bound.port()));
                }
            }
        }
    } else {
        out.push(bound);
    }
    for ip in public_ips {
        let a = SocketAddr::new(*ip, bound.port());
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}
