//! Several wishd nodes, one stream directory in Redis (the `[cluster]` table).
//!
//! A stream is owned by the node its source came to: a WHIP publisher's node
//! claims the name before it answers (a second publisher of the name on any node
//! gets `409`), a camera's node claims it at the next turn of the lease clock. The
//! claim is a lease refreshed every third of `lease_ttl`, with an epoch, so that a
//! dead node's claims expire and, after a partition, the node whose refresh finds a
//! newer claim gives its stream up. A viewer on a node without the stream makes
//! that node relay it from the owner over WHEP ([`relay`]), once for however many
//! viewers it has; or, with `viewers = "redirect"`, is sent to the owner with `307`.
//!
//! Media never waits for Redis: a directory that does not answer leaves every
//! running session as it is, refuses new publishers with `503`, and is written
//! again by the lease clock once it answers.

pub(crate) mod lease;
mod relay;
pub(crate) mod store;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{ClusterConfig, ClusterViewers};
use crate::directory::SourceView;
use crate::ingest::Wiring;
use crate::ingest::upstream::{self, PullState, PulledSource, Schedule};
use crate::media::Media;
use crate::metrics::Exposition;
use crate::model::EndReason;
use lease::{Leases, Step};
pub use store::{ClaimRecord, NodeRecord};
use store::{Claimed, Refreshed, Store, Unreachable};

/// A viewer's POST waits at most this long for a new relay's first answer.
const RELAY_WAIT: Duration = Duration::from_secs(5);

/// Why the cluster refused a request.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ClusterError {
    /// Another node's source feeds the stream.
    #[error("stream {stream} is published on node {node}")]
    Owned {
        stream: String,
        node: String,
        /// Seconds until that node's claim runs out unless refreshed.
        retry_after: u64,
    },
    /// The directory does not answer: a publisher cannot be told apart from one
    /// on another node.
    #[error("{0}; new publishers wait until it answers")]
    Unavailable(#[from] Unreachable),
}

impl ClusterError {
    /// What `Retry-After` says.
    pub(crate) fn retry_after(&self) -> u64 {
        match self {
            ClusterError::Owned { retry_after, .. } => *retry_after,
            ClusterError::Unavailable(_) => 1,
        }
    }
}

/// What a relay and the cluster share.
pub(crate) struct Shared {
    store: Store,
    node: String,
    url: String,
    token: String,
    ttl: Duration,
}

struct RelayEntry {
    handle: PulledSource,
    from: Arc<Mutex<Option<String>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Counters operators need.
#[derive(Debug, Default)]
struct Counters {
    claims_won: AtomicU64,
    claims_refused: AtomicU64,
    leases_lost: AtomicU64,
    directory_errors: AtomicU64,
    relays_started: AtomicU64,
}

/// This node's side of the cluster.
pub struct Cluster {
    shared: Arc<Shared>,
    linger: Duration,
    viewers: ClusterViewers,
    leases: Mutex<Leases>,
    relays: Mutex<HashMap<String, RelayEntry>>,
    /// Cameras here whose stream name another node owns (said once each).
    unclaimed: Mutex<std::collections::HashSet<String>>,
    media: Arc<Media>,
    wiring: Wiring,
    counters: Counters,
    /// Whether the last call to the directory was answered.
    reachable: AtomicBool,
}

/// This node's id when the configuration names none: the host name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "wishd".into())
}

impl Cluster {
    /// This node's side of the cluster `config` describes; nothing is connected yet.
    pub(crate) fn new(
        config: &ClusterConfig,
        media: Arc<Media>,
        wiring: Wiring,
    ) -> Result<Arc<Cluster>, String> {
        let deadline =
            (config.lease_ttl / 3).clamp(Duration::from_millis(100), Duration::from_secs(2));
        let node = if config.node.is_empty() {
            host_name()
        } else {
            config.node.clone()
        };
        Ok(Arc::new(Cluster {
            shared: Arc::new(Shared {
                store: Store::new(&config.redis, &config.name, deadline)?,
                node,
                url: config.url.trim_end_matches('/').to_owned(),
                token: config
                    .token
                    .as_ref()
                    .map(|t| t.expose().to_owned())
                    .unwrap_or_default(),
                ttl: config.lease_ttl,
            }),
            linger: config.relay_linger,
            viewers: config.viewers,
            leases: Mutex::new(Leases::default()),
            relays: Mutex::new(HashMap::new()),
            unclaimed: Mutex::new(Default::default()),
            media,
            wiring,
            counters: Counters::default(),
            reachable: AtomicBool::new(true),
        }))
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unclaimed(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.unclaimed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn relays(&self) -> std::sync::MutexGuard<'_, HashMap<String, RelayEntry>> {
        self.relays.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes whether the directory answered, logging the change once.
    fn answered<T>(&self, r: Result<T, Unreachable>) -> Result<T, Unreachable> {
        match &r {
            Ok(_) => {
                if !self.reachable.swap(true, Ordering::Relaxed) {
                    info!(node = %self.shared.node, "the cluster directory answers again");
                }
            }
            Err(e) => {
                self.counters
                    .directory_errors
                    .fetch_add(1, Ordering::Relaxed);
                if self.reachable.swap(false, Ordering::Relaxed) {
                    warn!(
                        node = %self.shared.node,
                        "{e}; running streams go on, new publishers get 503 until it answers"
                    );
                }
            }
        }
        r
    }

    /// Whether `token` is the cluster's: another node relaying a stream (it may play
    /// any stream).
    pub(crate) fn is_node_token(&self, token: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(self.shared.token.as_bytes())))
    }

    /// Whether this node relays `stream` from another node.
    pub(crate) fn relays_here(&self, stream: &str) -> bool {
        self.relays()
            .get(stream)
            .is_some_and(|r| !r.task.is_finished())
    }

    /// A WHIP publisher asks for `stream`: claims it for this node, or says which
    /// node has it. A relay of it here stops (its source came here). While Redis
    /// does not answer, only a stream this node holds the claim of takes a publisher
    /// (its own, coming back).
    pub(crate) async fn claim(&self, stream: &str) -> Result<(), ClusterError> {
        let s = &self.shared;
        // Known unreachable: its own publisher is not kept waiting for the deadline.
        if !self.reachable.load(Ordering::Relaxed) && self.leases().get(stream).is_some() {
            return Ok(());
        }
        let answer = match self.answered(s.store.claim(stream, &s.node, &s.url, s.ttl).await) {
            Ok(a) => a,
            Err(_) if self.leases().get(stream).is_some() => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match answer {
            Claimed::Won { epoch } | Claimed::Own { epoch } => {
                self.counters.claims_won.fetch_add(1, Ordering::Relaxed);
                self.leases().won(stream, &epoch, Instant::now());
                self.stop_relay(stream).await;
                Ok(())
            }
            Claimed::Held { node, ttl_left } => {
                self.counters.claims_refused.fetch_add(1, Ordering::Relaxed);
                Err(ClusterError::Owned {
                    stream: stream.to_owned(),
                    node,
                    retry_after: ttl_left.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
        }
    }

    /// A WHIP POST whose claim was made failed before its stream existed here (a bad
    /// offer): the claim is given back now rather than a lease later, so that the
    /// name is not held by a publisher that never was.
    pub(crate) async fn publish_failed(&self, stream: &str) {
        if self.media.directory().stream(stream).is_some() {
            return;
        }
        let Some(epoch) = self.leases().get(stream).map(|h| h.epoch.clone()) else {
            return;
        };
        let s = &self.shared;
        if self
            .answered(s.store.release(stream, &s.node, &epoch).await)
            .is_ok()
        {
            self.leases().released(stream);
        }
    }

    /// Stops the relay of `stream` and ends its viewers here, if there is one.
    async fn stop_relay(&self, stream: &str) {
        let Some(entry) = self.relays().remove(stream) else {
            return;
        };
        let _ = entry.stop.send(true);
        let _ = entry.task.await;
        if self.media.remove_camera(stream, EndReason::Moved) {
            info!(
                stream,
                "the stream's source came to this node: its relay stopped"
            );
        }
    }

    /// A WHEP viewer asks for `stream`, which this node may not have: the owner's
    /// URL when it should go there (`viewers = "redirect"`); otherwise `None`, once
    /// a relay of it here has answered (or failed to). A stream live nowhere, or a
    /// directory that does not answer, leaves the request to the usual `409`.
    pub(crate) async fn serve_viewer(self: &Arc<Self>, stream: &str) -> Option<String> {
        let directory = self.media.directory();
        if directory.stream(stream).is_some() {
            return None;
        }
        let owner = self
            .answered(self.shared.store.lookup(stream).await)
            .ok()??;
        if owner.node == self.shared.node {
            return None;
        }
        if self.viewers == ClusterViewers::Redirect {
            return Some(owner.whep_url(stream));
        }
        let handle = self.relay(stream);
        let until = Instant::now() + RELAY_WAIT;
        while Instant::now() < until {
            if directory.stream(stream).is_some()
                || matches!(handle.state(), PullState::Offline { .. })
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }

    /// The relay of `stream`, started if there is none.
    fn relay(self: &Arc<Self>, stream: &str) -> PulledSource {
        let mut relays = self.relays();
        if let Some(r) = relays.get(stream)
            && !r.task.is_finished()
        {
            return r.handle.clone();
        }
        let from = Arc::new(Mutex::new(None));
        let relay = relay::Relay {
            schedule: Schedule {
                stream: stream.to_owned(),
                url: format!("cluster:{stream}"),
                on_demand: false,
                close_after: self.linger,
                wait_when_offline: true,
            },
            shared: self.shared.clone(),
            from: from.clone(),
        };
        let (stop, stop_rx) = watch::channel(false);
        let (handle, task) = upstream::start(relay, self.wiring.clone(), stop_rx);
        self.counters.relays_started.fetch_add(1, Ordering::Relaxed);
        info!(stream, "relaying the stream from its owner");
        relays.insert(
            stream.to_owned(),
            RelayEntry {
                handle: handle.clone(),
                from,
                stop,
                task,
            },
        );
        handle
    }

    /// The streams this node owns, with whether each is live now: those with a
    /// WHIP publisher (live while it sends) or a camera, not those it relays.
    fn owned(&self) -> Vec<(String, bool)> {
        let relays = self.relays();
        self.media
            .directory()
            .streams()
            .into_iter()
            .filter(|s| !relays.contains_key(&*s.shared.name))
            .map(|s| {
                let live = matches!(s.source, SourceView::WhipLive(_) | SourceView::Rtp)
                    && s.silent_since.is_none();
                (s.shared.name.to_string(), live)
            })
            .collect()
    }

    /// One turn of the lease clock: claims, refreshes and releases, then this
    /// node's own record.
    async fn turn(&self) {
        let owned = self.owned();
        let steps = self.leases().plan(&owned, Instant::now());
        let s = &self.shared;
        for step in steps {
            match step {
                Step::Claim(stream) => {
                    match self.answered(s.store.claim(&stream, &s.node, &s.url, s.ttl).await) {
                        Ok(Claimed::Won { epoch } | Claimed::Own { epoch }) => {
                            self.leases().won(&stream, &epoch, Instant::now());
                            self.unclaimed().remove(&stream);
                        }
                        Ok(Claimed::Held { node, .. }) => self.lost(&stream, &node).await,
                        Err(_) => return,
                    }
                }
                Step::Refresh {
                    stream,
                    epoch,
                    live,
                } => {
                    let answer = s
                        .store
                        .refresh(&stream, &s.node, &s.url, &epoch, live, s.ttl);
                    let Ok(answer) = self.answered(answer.await) else {
                        return;
                    };
                    match &answer {
                        Refreshed::Recreated => info!(
                            stream,
                            epoch, "claim written again (the directory had lost it)"
                        ),
                        Refreshed::Adopted { epoch: newer } => info!(
                            stream,
                            epoch = %newer,
                            "this node's own later claim found in the directory: kept"
                        ),
                        Refreshed::Kept | Refreshed::Lost { .. } => {}
                    }
                    let lost = self.leases().refreshed(&stream, &answer, Instant::now());
                    if let Some(node) = lost {
                        self.lost(&stream, &node).await;
                    }
                }
                Step::Release { stream, epoch } => {
                    if self
                        .answered(s.store.release(&stream, &s.node, &epoch).await)
                        .is_err()
                    {
                        return;
                    }
                    self.leases().released(&stream);
                }
            }
        }
        let record = self.record(&owned);
        let _ = self.answered(s.store.heartbeat(&record, s.ttl).await);
    }

    /// Another node holds the claim of a stream whose source is here: a WHIP stream
    /// ends here (its viewers join again and are relayed from there); a camera
    /// stays and is claimed again when that node lets the name go.
    async fn lost(&self, stream: &str, node: &str) {
        let camera = matches!(
            self.media.directory().stream(stream).map(|s| s.source),
            Some(SourceView::Rtp)
        );
        if camera {
            // Said once, not at every turn while that node keeps the name.
            if self.unclaimed().insert(stream.to_owned()) {
                self.counters.leases_lost.fetch_add(1, Ordering::Relaxed);
                warn!(
                    stream,
                    owner = node,
                    "node {node} owns the stream's name; the camera here goes on unclaimed"
                );
            }
            return;
        }
        self.counters.leases_lost.fetch_add(1, Ordering::Relaxed);
        warn!(
            stream,
            owner = node,
            "node {node} took the stream (a newer claim): it ends here"
        );
        if let Err(e) = self.media.stop_stream(stream, EndReason::Moved).await {
            warn!(stream, "ending the stream: {e}");
        }
    }

    fn record(&self, owned: &[(String, bool)]) -> NodeRecord {
        let mut relays: Vec<String> = self
            .relays()
            .iter()
            .filter(|(_, r)| !r.task.is_finished())
            .map(|(s, _)| s.clone())
            .collect();
        relays.sort();
        NodeRecord {
            id: self.shared.node.clone(),
            url: self.shared.url.clone(),
            state: "serving".into(),
            streams: owned.iter().map(|(s, _)| s.clone()).collect(),
            relays,
            viewers: self.media.directory().counts().viewers as u64,
        }
    }

    /// The lease clock, until `stop`; then this node's claims and record go.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.shared.ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {
                    self.turn().await;
                    self.relays().retain(|_, r| !r.task.is_finished());
                }
            }
        }
        let held: Vec<(String, String)> = self
            .leases()
            .iter()
            .map(|(s, h)| (s.clone(), h.epoch.clone()))
            .collect();
        let s = &self.shared;
        for (stream, epoch) in held {
            let _ = s.store.release(&stream, &s.node, &epoch).await;
        }
        let _ = s.store.leave(&s.node).await;
        for (_, r) in self.relays().drain() {
            let _ = r.stop.send(true);
        }
    }

    /// What `/api/cluster` shows.
    pub(crate) async fn status(&self) -> ClusterStatus {
        let s = &self.shared;
        let nodes = s.store.nodes().await;
        let claims = s.store.claims().await;
        let error = match (&nodes, &claims) {
            (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
            _ => None,
        };
        let mut relays: Vec<RelayStatus> = self
            .relays()
            .iter()
            .filter(|(_, r)| !r.task.is_finished())
            .map(|(stream, r)| RelayStatus {
                stream: stream.clone(),
                from: r.from.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                state: match r.handle.state() {
                    PullState::Connecting => "connecting",
                    PullState::Live => "live",
                    PullState::Idle => "idle",
                    PullState::Offline { .. } => "offline",
                }
                .into(),
                viewers: self
                    .media
                    .directory()
                    .stream(stream)
                    .map_or(0, |v| v.viewers),
            })
            .collect();
        relays.sort_by(|a, b| a.stream.cmp(&b.stream));
        let mut nodes = nodes.unwrap_or_default();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        ClusterStatus {
            node: s.node.clone(),
            url: s.url.clone(),
            directory: if error.is_none() { "ok" } else { "unreachable" }.into(),
            error,
            nodes,
            streams: claims
                .unwrap_or_default()
                .into_iter()
                .map(|(stream, c)| StreamClaim { stream, claim: c })
                .collect(),
            relays,
        }
    }

    /// The cluster's families of `/metrics`.
    pub(crate) fn render_metrics(&self, e: &mut Exposition) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let c = &self.counters;
        let relays = self
            .relays()
            .values()
            .filter(|r| !r.task.is_finished())
            .count();
        e.single(
            "wishd_cluster_relays",
            "gauge",
            "Streams this node relays from other nodes now.",
            relays,
        );
        e.single(
            "wishd_cluster_relays_started_total",
            "counter",
            "Relays started by a viewer of a stream another node owns.",
            load(&c.relays_started),
        );
        e.single(
            "wishd_cluster_streams_owned",
            "gauge",
            "Streams whose claim this node holds.",
            self.leases().iter().count(),
        );
        e.family(
            "wishd_cluster_claims_total",
            "counter",
            "WHIP publishers' claims: won (or already this node's) and refused (another \
             node owns the stream).",
        );
        e.sample(
            "wishd_cluster_claims_total",
            "result=\"won\"",
            load(&c.claims_won),
        );
        e.sample(
            "wishd_cluster_claims_total",
            "result=\"refused\"",
            load(&c.claims_refused),
        );
        e.single(
            "wishd_cluster_leases_lost_total",
            "counter",
            "Claims another node took while this node's source was still here.",
            load(&c.leases_lost),
        );
        e.single(
            "wishd_cluster_directory_errors_total",
            "counter",
            "Calls to the directory (Redis) that failed or got no answer in time.",
            load(&c.directory_errors),
        );
        e.single(
            "wishd_cluster_directory_up",
            "gauge",
            "1 when the last call to the directory was answered.",
            u8::from(self.reachable.load(Ordering::Relaxed)),
        );
    }
}

/// `/api/cluster`.
#[derive(Debug, Serialize)]
pub(crate) struct ClusterStatus {
    /// This node's id.
    node: String,
    /// This node's URL.
    url: String,
    /// `ok`, or `unreachable` (then `error` says why).
    directory: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The live nodes' records.
    nodes: Vec<NodeRecord>,
    /// Every claim.
    streams: Vec<StreamClaim>,
    /// The streams this node relays.
    relays: Vec<RelayStatus>,
}

#[derive(Debug, Serialize)]
struct StreamClaim {
    stream: String,
    #[serde(flatten)]
    claim: ClaimRecord,
}

#[derive(Debug, Serialize)]
struct RelayStatus {
    stream: String,
    /// The node it plays from now.
    from: Option<String>,
    /// `connecting`, `live`, `idle` or `offline`.
    state: String,
    viewers: usize,
}
