//! Media workers: each owns one UDP socket and the str0m `Rtc`s of the sessions
//! assigned to it, demultiplexes datagrams to them, drives their timers and moves RTP
//! between publishers and viewers through the sans-IO [`crate::core`].
//!
//! [`Media`] is the face the HTTP edge talks to: it checks a stream's state in the
//! [`Directory`], builds and negotiates the `Rtc` for a new session (on the HTTP task,
//! so a worker's loop never pays for setup), then hands it to a worker.
//!
//! Sessions are spread over workers round robin; the viewers of one stream can sit on
//! every worker, and a source packet is handed (as one `Arc`) to each worker that has
//! viewers of its stream.

pub mod direct;
pub mod dtls;
pub mod egress;
pub mod outbox;
pub mod srtp;
mod telemetry;
pub mod udp;
mod worker;

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use str0m::config::DtlsCert;
use str0m::format::CodecConfig;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{Candidate, Rtc, RtcConfig};
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::Grant;
use crate::config::Config;
use crate::core::{CodecKind, SourcePacket, ViewerTrack};
use crate::directory::{Directory, DirectoryError, SessionInfo, Stream};
use crate::metrics::{MediaHistograms, SessionMetrics};
use crate::model::EndReason;
use crate::model::{Role, SessionId};
use crate::sdp::frag::IceFragment;
use crate::sdp::template::Templates;
use crate::sdp::{self, ChosenCodec, SdpError, trim};

pub use telemetry::SessionSnapshot;
pub use worker::{PatchError, PatchOutcome, WorkerMsg, WorkerStats};

/// Why a session could not be created or found.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The offer was refused by inspection (400 or 422).
    #[error(transparent)]
    Sdp(#[from] SdpError),
    /// The stream's state forbids it (409) or the session is unknown (404).
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// str0m could not negotiate the offer.
    #[error("cannot negotiate the offer: {0}")]
    Negotiation(String),
    /// An ICE restart could not be done; the session keeps its ICE session.
    #[error("{0}")]
    RestartFailed(String),
    /// The server is shutting down or a worker is gone.
    #[error("media worker unavailable")]
    Unavailable,
}

/// A session just created.
#[derive(Debug, Clone)]
pub struct Created {
    /// Its id (the last segment of its URL).
    pub id: SessionId,
    /// The SDP answer.
    pub answer: String,
    /// The entity-tag of its ICE session.
    pub etag: String,
}

/// Counters shared by all workers, read by tests and (later) by metrics.
#[derive(Debug, Default)]
pub struct MediaCounters {
    /// Sessions owned by workers right now.
    pub sessions: AtomicUsize,
    /// Sessions ever created.
    pub sessions_created: AtomicU64,
    /// Sessions ever closed.
    pub sessions_closed: AtomicU64,
    /// RTP packets received from sources.
    pub source_packets: AtomicU64,
    /// RTP packets written to viewers.
    pub forwarded_packets: AtomicU64,
    /// Datagrams that matched no session.
    pub unroutable_datagrams: AtomicU64,
    /// Packets dropped between workers because a worker's queue was full.
    pub cross_worker_drops: AtomicU64,
    /// Offers whose template str0m parsed (`sdp::template`).
    pub offer_templates_parsed: AtomicU64,
    /// Offers whose template was parsed before and copied.
    pub offer_templates_copied: AtomicU64,
    /// Source packets a worker dropped for waiting longer than `forward_max_delay`.
    pub stale_source_packets: AtomicU64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests_sent: AtomicU64,
    /// Sessions dropped because str0m panicked inside them.
    pub session_panics: AtomicU64,
    /// RTP payload bytes received from sources.
    pub source_bytes: AtomicU64,
    /// RTP payload bytes written to viewers.
    pub forwarded_bytes: AtomicU64,
    /// UDP bytes received from peers (flushed every 100 ms and at session end).
    pub udp_bytes_in: AtomicU64,
    /// UDP bytes sent to peers (flushed every 100 ms and at session end).
    pub udp_bytes_out: AtomicU64,
    /// UDP datagrams sent to peers (flushed every housekeeping tick).
    pub udp_datagrams_out: AtomicU64,
    /// System calls that sent them: datagrams per call is the send batching factor.
    pub udp_send_calls: AtomicU64,
    /// PLIs sent to publishers.
    pub pli_sent: AtomicU64,
    /// FIRs sent to publishers.
    pub fir_sent: AtomicU64,
    /// Keyframe wishes folded into a request already sent (rate limit).
    pub keyframe_requests_coalesced: AtomicU64,
    /// Viewers' keyframe requests held while their source is silent (neither a
    /// stale picture from the cache nor a request to a source that sends nothing).
    pub keyframe_requests_held: AtomicU64,
    /// PLI/FIR received from viewers.
    pub keyframe_requests_received: AtomicU64,
    /// Viewers started from a stream's keyframe cache (RTP ingest, or a WHIP source
    /// that cannot be asked for keyframes).
    pub keyframe_cache_starts: AtomicU64,
    /// NACKs received from viewers (answered from str0m's send buffer).
    pub nacks_received: AtomicU64,
    /// Packets resent to viewers on the direct egress path, answering their NACKs.
    pub packets_resent: AtomicU64,
    /// NACKs sent to publishers.
    pub nacks_sent: AtomicU64,
    /// Video packets not forwarded to a viewer still waiting for a keyframe.
    pub dropped_waiting_keyframe: AtomicU64,
    /// Packets not forwarded because the viewer has no mapping of their payload type.
    pub dropped_no_pt: AtomicU64,
    /// Packets not forwarded as older than the viewer's current position.
    pub dropped_too_old: AtomicU64,
    /// Sessions by kind and state, created, and ended by reason.
    pub session_metrics: SessionMetrics,
    /// Forwarding latency, RTT and loss distributions.
    pub histograms: MediaHistograms,
    /// Each worker's load and forward hold.
    pub workers: WorkerGauges,
}

/// Per-worker gauges, indexed by worker, written at each worker's housekeeping.
#[derive(Debug)]
pub struct WorkerGauges {
    /// Workers running (the entries below that are in use).
    pub count: AtomicUsize,
    /// Time busy out of time run, smoothed (see `core::hold`), parts per million.
    pub load_ppm: Box<[AtomicU64]>,
    /// The forward hold now, nanoseconds.
    pub hold_ns: Box<[AtomicU64]>,
}

impl Default for WorkerGauges {
    fn default() -> Self {
        let zeros = || {
            (0..crate::config::MAX_WORKERS)
                .map(|_| AtomicU64::new(0))
                .collect()
        };
        WorkerGauges {
            count: AtomicUsize::new(0),
            load_ppm: zeros(),
            hold_ns: zeros(),
        }
    }
}

/// Settings the workers need, taken from [`Config`].
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Close a session whose ICE has been disconnected this long.
    pub ice_timeout: Duration,
    /// Close a session not connected this long after creation.
    pub connect_timeout: Duration,
    /// Minimum time between keyframe requests to one publisher.
    pub keyframe_request_interval: Duration,
    /// Source packets from other workers older than this are dropped, not forwarded.
    pub forward_max_delay: Duration,
    /// How long forwards are held to leave as per-viewer GSO runs.
    pub forward_hold: crate::config::ForwardHold,
    /// A source that sent nothing this long is silent (see `Config::source_silence`).
    pub source_silence: Duration,
}

/// One worker as seen from outside.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    /// Its index (also its bit in the viewer masks).
    pub index: usize,
    /// Its command queue.
    pub tx: mpsc::Sender<WorkerMsg>,
    /// Its socket's bound address.
    pub bound: SocketAddr,
    /// The addresses put in answers as host candidates.
    pub candidates: Vec<SocketAddr>,
}

/// The media side of the server: workers plus session setup.
pub struct Media {
    workers: Vec<WorkerHandle>,
    directory: Arc<Directory>,
    counters: Arc<MediaCounters>,
    template: RtcConfig,
    /// The template for viewers: `template` with the mid header extension only.
    viewer_template: RtcConfig,
    /// Viewers take the direct egress path (their DTLS keys are kept for it).
    direct_egress: bool,
    /// Offers as str0m reads them, parsed once per template (`sdp::template`).
    offer_templates: Templates,
    next_worker: AtomicUsize,
    /// Dropped with `Media`: the worker threads see it and stop (a server dropped
    /// without `shutdown`, as tests do, must not leave its threads behind).
    _alive: watch::Sender<()>,
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
    pub fn start(
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
        for (index, (socket, rx)) in sockets.into_iter().zip(rxs).enumerate() {
            let bound = socket.local_addr();
            let candidates = candidate_addrs(bound, &config.public_ips);
            workers.push(WorkerHandle {
                index,
                tx: txs[index].clone(),
                bound,
                candidates,
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
                        match socket.register() {
                            Ok(socket) => worker::Worker::new(index, socket, rx, links).run().await,
                            Err(e) => tracing::error!(index, "media worker cannot start: {e}"),
                        }
                    });
                    let _ = done.send(());
                })?;
            joins.push(tokio::spawn(async move {
                let _ = finished.await;
            }));
        }
        let template = rtc_template()?;
        let mut viewer_template = template.clone().set_extension_map(viewer_extensions());
        let direct_egress = config.egress == crate::config::Egress::Direct;
        if direct_egress {
            // The direct path writes each SSRC's sender reports; str0m would otherwise
            // send its own (with zero counts) for the same SSRCs. Its receiver reports
            // are unaffected: a viewer session receives no media.
            viewer_template = viewer_template
                .set_rtcp_report_interval_audio(NO_REPORTS)
                .set_rtcp_report_interval_video(NO_REPORTS);
        }
        Ok((
            Media {
                workers,
                directory,
                counters,
                template,
                viewer_template,
                direct_egress,
                offer_templates: Templates::default(),
                next_worker: AtomicUsize::new(0),
                _alive: alive,
            },
            joins,
        ))
    }

    /// The workers (addresses for logs and tests).
    pub fn workers(&self) -> &[WorkerHandle] {
        &self.workers
    }

    /// Shared counters.
    pub fn counters(&self) -> &Arc<MediaCounters> {
        &self.counters
    }

    fn pick_worker(&self) -> &WorkerHandle {
        let n = self.next_worker.fetch_add(1, Ordering::Relaxed);
        &self.workers[n % self.workers.len()]
    }

    /// Creates a publisher session for `stream` from a WHIP offer.
    pub async fn publish(
        &self,
        stream: &str,
        offer_sdp: &str,
        grant: Grant,
    ) -> Result<Created, MediaError> {
        let offer_sdp = &*sdp::decline_simulcast(offer_sdp);
        let offer = sdp::parse_offer(offer_sdp.as_bytes())?;
        let chosen = sdp::check_publish_offer(&offer)?;
        // A second publisher is refused before any work; the grant below decides again.
        self.directory.check_publish(stream, Instant::now())?;
        let worker = self.pick_worker();
        let id = SessionId::random();
        let etag = new_etag();

        // str0m reads only the chosen codecs (see `sdp::trim`); an m-line that sends
        // nothing is answered inactive.
        let used: Vec<&str> = chosen.iter().map(|c| c.mid.as_str()).collect();
        let idle = sdp::idle_lines(&offer, &used);
        let keep: Vec<_> = chosen
            .iter()
            .map(|c| trim::Keep::codec(&c.mid, c.codec.pt, c.codec.rtx_pt))
            .chain(idle.iter().map(|l| trim::Keep::idle(&l.mid, l.codec.pt)))
            .collect();
        let offer_sdp = trim::keep_codecs(offer_sdp, &keep);
        let mut params: Vec<_> = chosen.iter().map(ChosenCodec::payload_params).collect();
        params.extend(idle.iter().map(sdp::IdleLine::payload_params));
        let (rtc, answer, ufrag) = self.negotiate(
            &self.template,
            worker,
            &offer_sdp,
            CodecConfig::new_from_payload_params(params),
            None,
        )?;
        // The stream is granted only to a session that is ready to run, so a publisher
        // that takes it over never leaves it without a source.
        let grant = self.directory.begin_publish(
            stream,
            id,
            worker.index,
            etag.clone(),
            chosen.clone(),
            grant,
        )?;
        if let Some(old) = &grant.replaced {
            tracing::info!(stream, old = %old.id, new = %id, "a new publisher takes the stream over");
            // Its worker drops it before it could take the new one (same queue).
            let _ = self.end_session(old, EndReason::Replaced).await;
        }
        let tracks = chosen
            .iter()
            .map(|c| {
                let canonical = grant
                    .canonical
                    .iter()
                    .find(|g| g.kind == c.kind)
                    .map(|g| g.codec.pt)
                    .unwrap_or(c.codec.pt);
                worker::PublishedTrack {
                    kind: c.kind,
                    mid: Mid::from(c.mid.as_str()),
                    pt: c.codec.pt,
                    canonical_pt: canonical,
                    codec: codec_kind(&c.codec.name),
                    keyframe_request: if c.codec.pli {
                        Some(KeyframeRequestKind::Pli)
                    } else if c.codec.fir {
                        Some(KeyframeRequestKind::Fir)
                    } else {
                        None
                    },
                }
            })
            .collect();
        if grant.end_viewers_on != 0 {
            self.broadcast_end(
                grant.shared.name.clone(),
                grant.end_viewers_on,
                EndReason::CodecChanged,
            );
        }
        for viewer in &grant.rejoin {
            self.close_soon(viewer, EndReason::TracksChanged);
        }
        let session = worker::NewSession {
            id,
            rtc,
            ufrag,
            offer: offer_sdp,
            shared: grant.shared,
            role: worker::NewRole::Publisher {
                epoch: grant.epoch,
                tracks,
            },
        };
        self.hand_over(worker, session, id).await?;
        Ok(Created { id, answer, etag })
    }

    /// Creates a viewer session of `stream` from a WHEP offer.
    pub async fn play(
        &self,
        stream: &str,
        offer_sdp: &str,
        grant: Grant,
    ) -> Result<Created, MediaError> {
        let offer_sdp = &*sdp::decline_simulcast(offer_sdp);
        let offer = sdp::parse_offer(offer_sdp.as_bytes())?;
        let codecs = self.directory.live_codecs(stream)?;
        let plan = sdp::check_play_offer(&offer, &codecs)?;
        let worker = self.pick_worker();
        let id = SessionId::random();
        let etag = new_etag();

        let mut params = Vec::new();
        let mut tracks = Vec::new();
        for t in &plan {
            let Some(source) = codecs.iter().find(|c| c.kind == t.kind) else {
                continue;
            };
            params.push(t.viewer_params(source));
            tracks.push(ViewerTrack {
                kind: t.kind,
                mid: Mid::from(t.mid.as_str()),
                clock_rate: t.clock_rate,
                pt_map: vec![(t.source_pt, t.viewer_pt)],
                first_seq: rand::random::<u16>() & 0x7fff,
                first_timestamp: rand::random(),
            });
        }
        // str0m reads only the codecs the viewer gets (see `sdp::trim`); an m-line of
        // a kind the stream lacks is answered inactive.
        let used: Vec<&str> = plan.iter().map(|t| t.mid.as_str()).collect();
        let idle = sdp::idle_lines(&offer, &used);
        params.extend(idle.iter().map(sdp::IdleLine::payload_params));
        let keep: Vec<_> = plan
            .iter()
            .map(|t| trim::Keep::codec(&t.mid, t.viewer_pt, t.viewer_rtx_pt))
            .chain(idle.iter().map(|l| trim::Keep::idle(&l.mid, l.codec.pt)))
            .collect();
        let offer_sdp = trim::keep_codecs(offer_sdp, &keep);
        // The direct egress path needs the keys the session's DTLS exports.
        let keys = self.direct_egress.then(dtls::KeySlot::default);
        let (rtc, answer, ufrag) = self.negotiate(
            &self.viewer_template,
            worker,
            &offer_sdp,
            CodecConfig::new_from_payload_params(params),
            keys.as_ref(),
        )?;
        // Audio and video in one media stream, so the player syncs them.
        let answer = sdp::msid::one_stream(&answer, stream);
        let waiting: Vec<MediaKind> = idle
            .iter()
            .map(|l| l.kind)
            .filter(|k| !codecs.iter().any(|c| c.kind == *k))
            .collect();
        let shared =
            self.directory
                .join_viewer(stream, id, worker.index, etag.clone(), grant, waiting)?;
        let session = worker::NewSession {
            id,
            rtc,
            ufrag,
            offer: offer_sdp,
            shared,
            role: worker::NewRole::Viewer { tracks, keys },
        };
        self.hand_over(worker, session, id).await?;
        Ok(Created { id, answer, etag })
    }

    /// The session at a URL: `kind` and `stream` must match it, else it is unknown.
    pub fn session(
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

    /// Number of sessions in the directory (publishers and viewers).
    pub fn session_count(&self) -> usize {
        let c = self.directory.counts();
        c.publishers + c.viewers
    }

    /// Ends a session (DELETE). `kind` and `stream` must match its URL.
    pub async fn close(&self, id: SessionId, kind: Role, stream: &str) -> Result<(), MediaError> {
        let info = self
            .directory
            .session(id)
            .filter(|s| s.kind == kind && &*s.stream == stream)
            .ok_or(DirectoryError::UnknownSession)?;
        self.end_session(&info, EndReason::Delete).await
    }

    /// Ends a session through the worker's single teardown path, for `reason`.
    pub async fn end_session(
        &self,
        info: &SessionInfo,
        reason: EndReason,
    ) -> Result<(), MediaError> {
        let id = info.id;
        let worker = self
            .workers
            .get(info.worker)
            .ok_or(MediaError::Unavailable)?;
        let (reply, done) = oneshot::channel();
        worker
            .tx
            .send(WorkerMsg::Close { id, reason, reply })
            .await
            .map_err(|_| MediaError::Unavailable)?;
        match done.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(DirectoryError::UnknownSession.into()),
            Err(_) => Err(MediaError::Unavailable),
        }
    }

    /// Asks the session's worker to end it for `reason`, without waiting for it.
    fn close_soon(&self, info: &SessionInfo, reason: EndReason) {
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
    pub async fn patch(
        &self,
        id: SessionId,
        worker: usize,
        frag: IceFragment,
    ) -> Result<PatchOutcome, MediaError> {
        let worker = self.workers.get(worker).ok_or(MediaError::Unavailable)?;
        let (reply, done) = oneshot::channel();
        worker
            .tx
            .send(WorkerMsg::Patch { id, frag, reply })
            .await
            .map_err(|_| MediaError::Unavailable)?;
        match done.await {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(PatchError::UnknownSession)) => Err(DirectoryError::UnknownSession.into()),
            Ok(Err(PatchError::RestartFailed(why))) => Err(MediaError::RestartFailed(why)),
            Err(_) => Err(MediaError::Unavailable),
        }
    }

    /// The directory.
    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Tells the workers in `mask` to close their viewers of `stream`.
    pub fn broadcast_end(&self, stream: Arc<str>, mask: u64, reason: EndReason) {
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
    pub async fn sessions(
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

    /// Per-worker internal counts (sessions, routing entries), for leak checks.
    pub async fn worker_stats(&self) -> Vec<WorkerStats> {
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
    pub async fn shutdown(&self) {
        for w in &self.workers {
            let (reply, rx) = oneshot::channel();
            if w.tx.send(WorkerMsg::Shutdown { reply }).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Builds an `Rtc` for one offer on `worker`: candidates first, then the answer.
    /// str0m is guarded against panics: a malformed offer must not take the server down.
    fn negotiate(
        &self,
        template: &RtcConfig,
        worker: &WorkerHandle,
        offer_sdp: &str,
        codecs: CodecConfig,
        keys: Option<&dtls::KeySlot>,
    ) -> Result<(Rtc, String, String), MediaError> {
        let sdp::template::TemplateOffer { offer, own, copied } =
            self.offer_templates.offer(offer_sdp)?;
        let how = if copied {
            &self.counters.offer_templates_copied
        } else {
            &self.counters.offer_templates_parsed
        };
        how.fetch_add(1, Ordering::Relaxed);
        let mut cfg = template.clone();
        *cfg.codec_config() = codecs;
        let candidates = worker.candidates.clone();
        let result = std::panic::catch_unwind(AssertUnwindSafe(move || {
            let mut rtc = match keys {
                Some(slot) => dtls::with_key_slot(slot, || cfg.build(Instant::now())),
                None => cfg.build(Instant::now()),
            };
            for addr in candidates {
                if let Ok(c) = Candidate::host(addr, "udp") {
                    rtc.add_local_candidate(c);
                }
            }
            own.apply_before(&mut rtc);
            let answer = rtc
                .sdp_api()
                .accept_offer(offer)
                .map_err(|e| MediaError::Negotiation(e.to_string()))?;
            own.apply_after(&mut rtc);
            let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
            Ok((rtc, answer.to_sdp_string(), ufrag))
        }));
        match result {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("str0m panicked while negotiating an offer; refused");
                Err(MediaError::Negotiation(
                    "the offer could not be negotiated".into(),
                ))
            }
        }
    }

    async fn hand_over(
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

/// The codec family of an rtpmap name.
pub fn codec_kind(name: &str) -> CodecKind {
    match name.to_ascii_lowercase().as_str() {
        "h264" => CodecKind::H264,
        "vp8" => CodecKind::Vp8,
        "vp9" => CodecKind::Vp9,
        "av1" => CodecKind::Av1,
        "opus" => CodecKind::Opus,
        "pcmu" => CodecKind::Pcmu,
        "pcma" => CodecKind::Pcma,
        _ => CodecKind::Other,
    }
}

/// A strong entity-tag for a new ICE session.
pub fn new_etag() -> String {
    format!("\"{:016x}\"", rand::random::<u64>())
}

/// The RTP header extensions a viewer's answer accepts: the mid only (BUNDLE
/// demultiplexing before the SSRCs are known).
///
/// wishd does not estimate a viewer's bandwidth (it forwards one encoding, with no
/// layers to switch), so transport-wide sequence numbers and abs-send-time would only
/// cost: str0m writes both into every packet and keeps a register of the last 1000
/// sends per viewer for feedback no one reads, and the viewer sends that feedback.
/// Forwarded packets carry no audio level or orientation values (the source's header
/// extensions are not copied), so those are not offered either. Publishers keep the
/// full set: their transport-cc feedback drives the sender's bandwidth estimate.
fn viewer_extensions() -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    exts.set(4, Extension::RtpMid);
    exts
}

fn rtc_template() -> std::io::Result<RtcConfig> {
    let provider = dtls::provider();
    let cert: DtlsCert = provider
        .dtls_provider
        .generate_certificate()
        .ok_or_else(|| {
            std::io::Error::other("the crypto provider could not make a DTLS certificate")
        })?;
    Ok(RtcConfig::new()
        .set_crypto_provider(Arc::new(provider))
        // Once a second: RTT, loss and NACK counts for the API and /metrics.
        .set_stats_interval(Some(Duration::from_secs(1)))
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .set_dtls_cert(cert))
}

/// Host candidates for a socket bound to `bound`: the address itself, or every usable
/// interface address of its family when bound to the unspecified address; plus the
/// configured public addresses on the same port.
pub fn candidate_addrs(bound: SocketAddr, public_ips: &[IpAddr]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    if bound.ip().is_unspecified() {
        if let Ok(ifaces) = if_addrs::get_if_addrs() {
            for iface in ifaces {
                let ip = iface.ip();
                let usable = match ip {
                    IpAddr::V4(v4) => bound.is_ipv4() && !v4.is_link_local(),
                    IpAddr::V6(v6) => {
                        bound.is_ipv6() && !v6.is_unicast_link_local() && !v6.is_loopback()
                    }
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
