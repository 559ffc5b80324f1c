//! The WHEP viewer swarm: many str0m viewers in one process, a few UDP sockets, one
//! sans-IO loop per socket ("shard").
//!
//! Every viewer needs its own address, or the server could not tell them apart.
//! Viewers therefore share a shard's socket (bound to `0.0.0.0:port`) but each has its
//! own loopback IP (`127.2.x.y` and up: all of 127.0.0.0/8 is local on Linux): the
//! datagram's destination IP names the viewer, and replies leave from it.
//!
//! Cost: the tool must stay well under the server's CPU per viewer. Setup traffic
//! (STUN, DTLS), RTCP and the first media packets of each stream go through str0m,
//! which decrypts them; the payload marker tells the publisher's sequence number, so
//! the viewer learns how the server renumbered the stream. From then on RTP packets
//! are accounted from their clear header alone (SRTP encrypts only the payload): loss,
//! duplicates and reordering from the sequence number, one-way delay from the
//! publisher's [`SendTable`] of the same process. `full_decrypt` feeds every packet to
//! str0m instead and reads the send time from the payload (for a publisher in another
//! process, or a server that renumbers freely).
//!
//! With a foreign publisher (`foreign`: ffmpeg, a camera, a browser) there are no
//! markers: a packet's kind, codec and clock come from its payload type in the SDP the
//! server sent, loss, duplicates and reordering from the sequence numbers as before,
//! the join from the first packet that starts a keyframe, and the delay is relative
//! ([`RelativeDelay`]): there is no send time to subtract.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use str0m::change::{SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpPacket;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::sync::oneshot;

use crate::clock::{self, SendTable};
use crate::offer::{MidMap, PayloadInfo, browser_like, payload_map};
use crate::payload::{self, AUDIO, VIDEO};
use crate::rtp::{Class, classify};
use crate::signal::{self, SetupError, Signalled};
use crate::stats::{Histogram, RelativeDelay, TrackRx, ViewerReport};
use wishd::core::{CodecKind, is_keyframe_start};

/// How the swarm behaves.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// The WHEP endpoint, e.g. `http://127.0.0.1:8080/whep/bench`.
    pub url: String,
    /// Bearer token.
    pub token: Option<String>,
    /// Sockets (and loops) to spread the viewers over.
    pub shards: usize,
    /// Decrypt every packet instead of accounting by header.
    pub full_decrypt: bool,
    /// How long a shard sleeps between reads of its socket. Sleeping, instead of
    /// waiting for readiness, spares the server a wake-up of this process per send
    /// (on loopback the sender pays for the receiver's wake-up, which a server sending
    /// to remote viewers never does); it adds up to this much to the measured delay.
    pub poll: Duration,
    /// Send str0m's own offers (a random mid, msid and SSRCs per m-line) instead of
    /// browser-like ones ([`crate::offer`]).
    pub str0m_offers: bool,
    /// The kinds of media each offer asks for, in this order (a server whose stream
    /// has video alone may answer only one m-line, which no offerer accepts).
    pub kinds: Vec<MediaKind>,
    /// Another program publishes: account without payload markers (see above).
    pub foreign: bool,
}

impl SwarmConfig {
    /// Viewers of `url`: browser-like offers of audio and video, two shards, 500 µs
    /// polls, accounting by header, this tool's own publisher.
    pub fn new(url: impl Into<String>) -> SwarmConfig {
        SwarmConfig {
            url: url.into(),
            token: None,
            shards: 2,
            full_decrypt: false,
            poll: Duration::from_micros(500),
            str0m_offers: false,
            kinds: vec![MediaKind::Audio, MediaKind::Video],
            foreign: false,
        }
    }
}

/// The first viewer IP is `127.2.0.1`; viewer `n` is that plus `n`.
const FIRST_IP: u32 = u32::from_be_bytes([127, 2, 0, 0]);

/// The loopback address of viewer `id` (ids start at 1).
pub fn viewer_ip(id: u32) -> Ipv4Addr {
    Ipv4Addr::from(FIRST_IP + id)
}

fn viewer_id(ip: IpAddr) -> Option<u32> {
    match ip {
        IpAddr::V4(v4) => u32::from(v4).checked_sub(FIRST_IP),
        IpAddr::V6(_) => None,
    }
}

/// Counters shared by the shards.
#[derive(Debug, Default)]
pub struct SwarmCounters {
    /// Datagrams received.
    pub datagrams: AtomicU64,
    /// RTP packets accounted by header only.
    pub header_only: AtomicU64,
    /// Datagrams given to str0m.
    pub to_str0m: AtomicU64,
    /// Datagrams for no known viewer.
    pub unroutable: AtomicU64,
}

enum Cmd {
    Add(Box<NewViewer>),
    Failed(ViewerReport),
    Reports(oneshot::Sender<Vec<ViewerReport>>),
    Reset(oneshot::Sender<()>),
    /// Drop every viewer; reply with their session URLs.
    Clear(oneshot::Sender<Vec<String>>),
}

/// A viewer whose offer is built but not sent ([`Swarm::prepare`]).
pub struct Prepared {
    id: u32,
    rtc: Rtc,
    pending: str0m::change::SdpPendingOffer,
    offer: String,
    /// str0m's mids, where the offer sent is browser-like.
    mids: Option<MidMap>,
}

impl Prepared {
    /// The offer alone, for a POST whose session is not connected (the peer is
    /// dropped).
    pub fn into_offer(self) -> String {
        self.offer
    }
}

/// Where a new viewer's negotiation stands when it reaches its shard.
enum Negotiation {
    /// The server answered the viewer's offer: the shard applies `answer` to the
    /// offer still open.
    Answer {
        pending: SdpPendingOffer,
        answer: String,
        mids: Option<MidMap>,
    },
    /// The viewer answered the server's counter-offer: nothing is left to apply.
    Done,
}

struct NewViewer {
    id: u32,
    rtc: Rtc,
    negotiation: Negotiation,
    /// What each payload type the server sends carries.
    payloads: Vec<PayloadInfo>,
    location: String,
    post_sent: Instant,
    post_time: Duration,
}

struct ShardHandle {
    tx: std::sync::mpsc::Sender<Cmd>,
    port: u16,
}

/// A swarm of WHEP viewers.
pub struct Swarm {
    cfg: SwarmConfig,
    shards: Vec<ShardHandle>,
    next_id: AtomicU32,
    template: RtcConfig,
    counters: Arc<SwarmCounters>,
}

impl Swarm {
    /// The WHEP endpoint the viewers POST to.
    pub fn url(&self) -> &str {
        &self.cfg.url
    }

    /// Binds one socket per shard and starts their loops on the current runtime.
    pub fn new(cfg: SwarmConfig, table: Arc<SendTable>) -> std::io::Result<Swarm> {
        wishd::client::install_crypto_provider();
        let counters = Arc::new(SwarmCounters::default());
        let mut shards = Vec::new();
        let stride = cfg.shards.max(1) as u32;
        for n in 0..stride {
            let socket = ShardSocket::bind()?;
            let port = socket.port;
            let (tx, rx) = std::sync::mpsc::channel();
            let shard = Shard {
                socket,
                rx,
                viewers: Vec::new(),
                stride,
                timers: BTreeSet::new(),
                table: table.clone(),
                full_decrypt: cfg.full_decrypt,
                foreign: cfg.foreign,
                failed: Vec::new(),
                orphans: Vec::new(),
                counters: counters.clone(),
            };
            let poll = cfg.poll;
            std::thread::Builder::new()
                .name(format!("swarm-shard-{n}"))
                .spawn(move || shard.run(poll))?;
            shards.push(ShardHandle { tx, port });
        }
        let mut template = RtcConfig::new()
            .clear_codecs()
            .set_rtp_mode(true)
            .enable_opus(true, false)
            .enable_h264(true);
        template.set_max_stun_rto(Duration::from_secs(1));
        template.set_max_stun_retransmits(5);
        Ok(Swarm {
            cfg,
            shards,
            next_id: AtomicU32::new(1),
            template,
            counters,
        })
    }

    /// Counters.
    pub fn counters(&self) -> &SwarmCounters {
        &self.counters
    }

    /// Sets up one viewer: builds its offer, POSTs it, hands the peer to its shard.
    /// Returns its id; a failure is recorded in its report.
    pub async fn add_viewer(&self) -> u32 {
        match self.prepare() {
            Ok(p) => self.post(p).await,
            Err((id, e)) => {
                self.fail(id, e);
                id
            }
        }
    }

    /// A viewer's peer with its one host candidate, no media yet.
    fn peer(&self, id: u32) -> Result<Rtc, SetupError> {
        let port = self.shards[id as usize % self.shards.len()].port;
        let local = SocketAddr::new(IpAddr::V4(viewer_ip(id)), port);
        let mut rtc = self.template.clone().build(Instant::now());
        let c = Candidate::host(local, "udp").map_err(|e| SetupError::Rtc(e.to_string()))?;
        if rtc.add_local_candidate(c).is_none() {
            return Err(SetupError::Rtc(format!("candidate {local} refused")));
        }
        Ok(rtc)
    }

    /// Builds a viewer's peer and offer without sending anything (a burst prepares
    /// every offer first, so the POSTs leave together, as from independent clients).
    pub fn prepare(&self) -> Result<Prepared, (u32, SetupError)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let build = || {
            if self.cfg.kinds.is_empty() {
                return Err(SetupError::Sdp("an offer needs a kind of media".into()));
            }
            let mut rtc = self.peer(id)?;
            let mut api = rtc.sdp_api();
            for &kind in &self.cfg.kinds {
                api.add_media(kind, Direction::RecvOnly, None, None, None);
            }
            let (offer, pending) = api
                .apply()
                .ok_or_else(|| SetupError::Sdp("no offer".into()))?;
            signal::drain_offline(&mut rtc)?;
            let offer = offer.to_sdp_string();
            let (offer, mids) = if self.cfg.str0m_offers {
                (offer, None)
            } else {
                let (offer, mids) = browser_like(&offer);
                (offer, Some(mids))
            };
            Ok(Prepared {
                id,
                rtc,
                pending,
                offer,
                mids,
            })
        };
        build().map_err(|e| (id, e))
    }

    /// POSTs a prepared offer and hands the peer to its shard; returns its id.
    pub async fn post(&self, p: Prepared) -> u32 {
        let Prepared {
            id,
            rtc,
            pending,
            offer,
            mids,
        } = p;
        let shard = &self.shards[id as usize % self.shards.len()];
        // HTTP only here: the answer is applied on the shard's thread, so that the
        // POSTs of a burst are not timed behind each other's SDP work.
        let token = self.cfg.token.as_deref();
        let sig = match signal::post(offer, &self.cfg.url, token).await {
            Ok(sig) => sig,
            Err(e) => {
                self.fail(id, e);
                return id;
            }
        };
        let payloads = payload_map(&sig.answer);
        let (rtc, negotiation) = if sig.counter_offer {
            match self.answer_counter_offer(id, &sig).await {
                Ok(rtc) => (rtc, Negotiation::Done),
                Err(e) => {
                    let _ = signal::delete(&sig.location, token).await;
                    self.fail(id, e);
                    return id;
                }
            }
        } else {
            let answer = sig.answer;
            (
                rtc,
                Negotiation::Answer {
                    pending,
                    answer,
                    mids,
                },
            )
        };
        let _ = shard.tx.send(Cmd::Add(Box::new(NewViewer {
            id,
            rtc,
            negotiation,
            payloads,
            location: sig.location,
            post_sent: sig.sent_at,
            post_time: sig.post_time,
        })));
        id
    }

    /// The WHEP counter-offer path: a new peer answers the server's offer (the
    /// viewer's own offer is dropped), and the answer goes back by PATCH.
    async fn answer_counter_offer(&self, id: u32, sig: &Signalled) -> Result<Rtc, SetupError> {
        let offer = SdpOffer::from_sdp_string(&sig.answer)
            .map_err(|e| SetupError::Sdp(format!("unparseable counter-offer: {e}")))?;
        let mut rtc = self.peer(id)?;
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SetupError::Sdp(format!("counter-offer refused: {e}")))?;
        signal::drain_offline(&mut rtc)?;
        signal::patch_answer(
            &sig.location,
            answer.to_sdp_string(),
            self.cfg.token.as_deref(),
        )
        .await?;
        Ok(rtc)
    }

    /// Records a viewer that could not be set up.
    pub fn fail(&self, id: u32, e: SetupError) {
        let shard = &self.shards[id as usize % self.shards.len()];
        let _ = shard.tx.send(Cmd::Failed(ViewerReport::failed(id, e)));
    }

    /// Every viewer's report (window figures since the last [`Swarm::reset_window`]).
    pub async fn reports(&self) -> Vec<ViewerReport> {
        let mut out = Vec::new();
        for s in &self.shards {
            let (tx, rx) = oneshot::channel();
            if s.tx.send(Cmd::Reports(tx)).is_ok()
                && let Ok(r) = rx.await
            {
                out.extend(r);
            }
        }
        out.sort_by_key(|r| r.id);
        out
    }

    /// Starts a new measurement window for every viewer.
    pub async fn reset_window(&self) {
        for s in &self.shards {
            let (tx, rx) = oneshot::channel();
            if s.tx.send(Cmd::Reset(tx)).is_ok() {
                let _ = rx.await;
            }
        }
    }

    /// Drops every viewer and DELETEs its session, and the sessions whose answer was
    /// refused (at most `parallel` at a time).
    pub async fn clear(&self, parallel: usize) {
        let mut locations = Vec::new();
        for s in &self.shards {
            let (tx, rx) = oneshot::channel();
            if s.tx.send(Cmd::Clear(tx)).is_ok()
                && let Ok(l) = rx.await
            {
                locations.extend(l);
            }
        }
        let token = self.cfg.token.clone();
        let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
        let mut joins = Vec::new();
        for loc in locations {
            let token = token.clone();
            let Ok(permit) = sem.clone().acquire_owned().await else {
                break;
            };
            joins.push(tokio::spawn(async move {
                let _ = signal::delete(&loc, token.as_deref()).await;
                drop(permit);
            }));
        }
        for j in joins {
            let _ = j.await;
        }
    }

    /// Stops the shards (without DELETE; call [`Swarm::clear`] first to be polite).
    /// Their threads end at their next poll.
    pub fn stop(self) {
        drop(self);
    }
}

struct TrackState {
    ssrc: u32,
    kind: u8,
    /// The publisher's simulcast layer the server forwards on this SSRC (from the
    /// marker; its sequence numbers are the layer's own).
    layer: u8,
    rx: TrackRx,
    /// viewer extended seq − publisher seq (wrapping).
    offset: Option<u64>,
    /// Account by header from now on.
    fast: bool,
    /// A foreign publisher's track: its RTP clock and the relative delay.
    foreign: Option<(u32, RelativeDelay)>,
}

struct Viewer {
    id: u32,
    rtc: Rtc,
    location: String,
    post_sent: Instant,
    post_sent_ns: u64,
    post_time: Duration,
    connected_at: Option<Instant>,
    join_at: Option<Instant>,
    up: bool,
    error: Option<String>,
    tracks: Vec<TrackState>,
    delay: Histogram,
    timer: Instant,
    /// Set for a foreign publisher: what each payload type carries.
    foreign: Option<Vec<PayloadInfo>>,
}

impl Viewer {
    fn report(&self) -> ViewerReport {
        let ms =
            |t: Option<Instant>| t.map(|t| t.duration_since(self.post_sent).as_secs_f64() * 1e3);
        let mut r = ViewerReport {
            id: self.id,
            post_ms: Some(self.post_time.as_secs_f64() * 1e3),
            connect_ms: ms(self.connected_at),
            join_ms: ms(self.join_at),
            connected: self.up,
            delay_p50_us: self.delay.quantile(0.5).map(|v| v as f64 / 1e3),
            delay_p99_us: self.delay.quantile(0.99).map(|v| v as f64 / 1e3),
            error: self.error.clone(),
            delay: Some(self.delay.clone()),
            ..Default::default()
        };
        for t in &self.tracks {
            r.received += t.rx.received;
            r.lost += t.rx.lost();
            r.duplicated += t.rx.duplicated;
            r.out_of_order += t.rx.out_of_order;
        }
        r
    }

    fn reset(&mut self) {
        for t in &mut self.tracks {
            t.rx.reset();
        }
        self.delay.clear();
    }

    fn record_delay(&mut self, sent_ns: u64, arrival_ns: u64) {
        // Packets older than the viewer came from a server-side cache: not live delay.
        if sent_ns >= self.post_sent_ns {
            self.delay.record(arrival_ns.saturating_sub(sent_ns));
        }
    }

    /// The index of the track of `ssrc`, made on its first packet.
    fn track(
        &mut self,
        ssrc: u32,
        kind: u8,
        layer: u8,
        foreign: Option<(u32, RelativeDelay)>,
    ) -> usize {
        if let Some(i) = self.tracks.iter().position(|t| t.ssrc == ssrc) {
            return i;
        }
        self.tracks.push(TrackState {
            ssrc,
            kind,
            layer,
            rx: TrackRx::default(),
            offset: None,
            fast: false,
            foreign,
        });
        self.tracks.len() - 1
    }

    /// Whether track `idx` is accounted from its clear header from now on: audio at
    /// once, video once the viewer has joined (unless every packet is decrypted).
    fn account_by_header(&mut self, idx: usize, full_decrypt: bool) -> bool {
        let joined = self.join_at.is_some();
        let Some(t) = self.tracks.get_mut(idx) else {
            return false;
        };
        let newly_fast = !full_decrypt && !t.fast && (t.kind == AUDIO || joined);
        if newly_fast {
            t.fast = true;
        }
        newly_fast
    }

    /// A packet str0m decrypted; true when its track is accounted by header from now on.
    fn on_decrypted(&mut self, p: &RtpPacket, full_decrypt: bool) -> bool {
        if self.foreign.is_some() {
            return self.on_foreign(p, full_decrypt);
        }
        let Some(m) = payload::decode(&p.payload) else {
            return false;
        };
        let idx = self.track(*p.header.ssrc, m.kind, m.layer, None);
        let ext = self.tracks[idx].rx.on_packet(p.header.sequence_number);
        self.tracks[idx].offset = Some(ext.wrapping_sub(m.seq));
        self.tracks[idx].layer = m.layer;
        let arrival = clock::at_ns(p.timestamp);
        self.record_delay(m.sent_ns, arrival);
        if m.kind == VIDEO && m.keyframe && self.join_at.is_none() {
            self.join_at = Some(p.timestamp);
        }
        self.account_by_header(idx, full_decrypt)
    }

    /// A packet of a foreign publisher, known by its payload type alone.
    fn on_foreign(&mut self, p: &RtpPacket, full_decrypt: bool) -> bool {
        let pt = *p.header.payload_type;
        let Some(info) = self
            .foreign
            .as_ref()
            .and_then(|m| m.iter().find(|i| i.pt == pt).copied())
        else {
            return false;
        };
        if info.codec == CodecKind::Other {
            // RTX, RED, FEC: not the stream's own packets.
            return false;
        }
        let kind = if info.video { VIDEO } else { AUDIO };
        let foreign = Some((info.clock, RelativeDelay::default()));
        let idx = self.track(*p.header.ssrc, kind, 0, foreign);
        let arrival = clock::at_ns(p.timestamp);
        let t = &mut self.tracks[idx];
        t.rx.on_packet(p.header.sequence_number);
        if let Some((clock, rel)) = &mut t.foreign {
            let d = rel.on_packet(p.header.timestamp, arrival, *clock);
            self.delay.record(d);
        }
        if info.video && self.join_at.is_none() && is_keyframe_start(info.codec, &p.payload) {
            self.join_at = Some(p.timestamp);
        }
        self.account_by_header(idx, full_decrypt)
    }
}

struct Shard {
    socket: ShardSocket,
    rx: std::sync::mpsc::Receiver<Cmd>,
    /// Indexed by `id / shards`.
    viewers: Vec<Option<Box<Viewer>>>,
    /// Number of shards: viewer `id` lives in shard `id % stride`, slot `id / stride`.
    stride: u32,
    timers: BTreeSet<(Instant, u32)>,
    table: Arc<SendTable>,
    full_decrypt: bool,
    /// Viewers of a foreign publisher ([`SwarmConfig::foreign`]).
    foreign: bool,
    failed: Vec<ViewerReport>,
    /// Sessions the server created whose answer this side refused: DELETEd by
    /// [`Swarm::clear`] with the rest.
    orphans: Vec<String>,
    counters: Arc<SwarmCounters>,
}

impl Shard {
    /// The loop: commands, every datagram waiting, due timers, then sleep `poll` (or
    /// until the next timer). Sleeping instead of waiting on the socket means the
    /// server's sends find nobody to wake (see [`SwarmConfig::poll`]).
    fn run(mut self, poll: Duration) {
        let mut bufs: Vec<Box<[u8]>> = (0..quinn_udp::BATCH_SIZE)
            .map(|_| vec![0u8; 65_536].into_boxed_slice())
            .collect();
        let mut metas = vec![quinn_udp::RecvMeta::default(); quinn_udp::BATCH_SIZE];
        loop {
            loop {
                match self.rx.try_recv() {
                    Ok(c) => self.command(c),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                }
            }
            while let Ok(count) = self.socket.recv(&mut bufs, &mut metas) {
                let now = Instant::now();
                let now_ns = clock::at_ns(now);
                for (meta, buf) in metas[..count].iter().zip(&bufs) {
                    let len = meta.len.min(buf.len());
                    let stride = if meta.stride == 0 { len } else { meta.stride };
                    let source = meta.addr;
                    let Some(dst_ip) = meta.dst_ip else {
                        continue;
                    };
                    let destination = SocketAddr::new(dst_ip, self.socket.port);
                    for d in buf[..len].chunks(stride.max(1)) {
                        self.counters.datagrams.fetch_add(1, Ordering::Relaxed);
                        self.datagram(now, now_ns, source, destination, d);
                    }
                }
            }
            let now = Instant::now();
            self.timeouts(now);
            let wait = self
                .timers
                .first()
                .map_or(poll, |t| t.0.saturating_duration_since(now).min(poll));
            std::thread::sleep(wait.max(Duration::from_micros(20)));
        }
    }

    fn slot(&self, id: u32) -> usize {
        (id / self.stride) as usize
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Add(v) => self.add(*v),
            Cmd::Failed(r) => self.failed.push(r),
            Cmd::Reports(reply) => {
                let mut out = self.failed.clone();
                out.extend(self.viewers.iter().flatten().map(|v| v.report()));
                let _ = reply.send(out);
            }
            Cmd::Reset(reply) => {
                for v in self.viewers.iter_mut().flatten() {
                    v.reset();
                }
                let _ = reply.send(());
            }
            Cmd::Clear(reply) => {
                let mut locations: Vec<String> = self
                    .viewers
                    .iter_mut()
                    .filter_map(Option::take)
                    .map(|v| v.location)
                    .collect();
                locations.append(&mut self.orphans);
                self.viewers.clear();
                self.timers.clear();
                self.failed.clear();
                let _ = reply.send(locations);
            }
        }
    }

    fn add(&mut self, n: NewViewer) {
        let NewViewer {
            id,
            mut rtc,
            negotiation,
            payloads,
            location,
            post_sent,
            post_time,
        } = n;
        if let Negotiation::Answer {
            pending,
            answer,
            mids,
        } = negotiation
        {
            let answer = match &mids {
                Some(m) => m.answer_for_str0m(&answer),
                None => answer,
            };
            if let Err(e) = signal::apply_answer(&mut rtc, pending, &answer) {
                self.failed.push(ViewerReport::failed(id, e));
                self.orphans.push(location);
                return;
            }
        }
        let slot = self.slot(id);
        if self.viewers.len() <= slot {
            self.viewers.resize_with(slot + 1, || None);
        }
        let now = Instant::now();
        self.viewers[slot] = Some(Box::new(Viewer {
            id,
            rtc,
            location,
            post_sent,
            post_sent_ns: clock::at_ns(post_sent),
            post_time,
            connected_at: None,
            join_at: None,
            up: false,
            error: None,
            tracks: Vec::with_capacity(2),
            delay: Histogram::default(),
            timer: now,
            foreign: self.foreign.then_some(payloads),
        }));
        self.timers.insert((now, id));
        self.drive(id, now, |rtc| rtc.handle_input(Input::Timeout(now)));
    }

    fn datagram(
        &mut self,
        now: Instant,
        now_ns: u64,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Some(id) = viewer_id(destination.ip()) else {
            self.counters.unroutable.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let slot = self.slot(id);
        let Some(Some(v)) = self.viewers.get_mut(slot) else {
            self.counters.unroutable.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Class::Rtp(h) = classify(data)
            && let Some(t) = v.tracks.iter_mut().find(|t| t.ssrc == h.ssrc && t.fast)
        {
            self.counters.header_only.fetch_add(1, Ordering::Relaxed);
            let ext = t.rx.on_packet(h.seq);
            if let Some((clock, rel)) = &mut t.foreign {
                let d = rel.on_packet(h.timestamp, now_ns, *clock);
                v.delay.record(d);
                return;
            }
            let track = clock::track(t.kind, t.layer);
            if let Some(offset) = t.offset
                && let Some(sent) = self.table.lookup(track, ext.wrapping_sub(offset), now_ns)
            {
                v.record_delay(sent, now_ns);
            }
            return;
        }
        self.counters.to_str0m.fetch_add(1, Ordering::Relaxed);
        let Ok(recv) = Receive::new(Protocol::Udp, source, destination, data) else {
            return;
        };
        self.drive(id, now, move |rtc| {
            rtc.handle_input(Input::Receive(now, recv))
        });
    }

    fn timeouts(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, id));
            self.drive(id, now, |rtc| rtc.handle_input(Input::Timeout(now)));
        }
    }

    /// One mutation of a viewer's `Rtc`, then poll to a timeout (str0m's rule).
    fn drive<F>(&mut self, id: u32, now: Instant, mutate: F)
    where
        F: FnOnce(&mut Rtc) -> Result<(), str0m::RtcError>,
    {
        let slot = self.slot(id);
        let Some(Some(v)) = self.viewers.get_mut(slot) else {
            return;
        };
        if v.error.is_some() {
            return;
        }
        let mut next = None;
        let result = mutate(&mut v.rtc).and_then(|()| {
            loop {
                match v.rtc.poll_output()? {
                    Output::Timeout(t) => {
                        next = Some(t.max(now));
                        break Ok(());
                    }
                    Output::Transmit(t) => {
                        self.socket.send(t.source.ip(), t.destination, &t.contents)
                    }
                    Output::Event(e) => match e {
                        Event::Connected => {
                            v.up = true;
                            v.connected_at.get_or_insert(now);
                        }
                        Event::IceConnectionStateChange(s) => {
                            v.up =
                                v.connected_at.is_some() && s != IceConnectionState::Disconnected;
                        }
                        // From now on the header is enough: stop str0m from NACKing
                        // packets it will never see.
                        Event::RtpPacket(p) if v.on_decrypted(&p, self.full_decrypt) => {
                            if let Some(rx) = v.rtc.direct_api().stream_rx(&p.header.ssrc) {
                                rx.suppress_nack(true);
                            }
                        }
                        Event::Closed => {
                            v.up = false;
                            v.error = Some("closed by the server".into());
                        }
                        _ => {}
                    },
                }
            }
        });
        if let Err(e) = result {
            v.up = false;
            v.error = Some(format!("rtc: {e}"));
        }
        self.timers.remove(&(v.timer, id));
        if let Some(t) = next
            && v.error.is_none()
        {
            v.timer = t;
            self.timers.insert((t, id));
        }
    }
}

/// A shard's socket: non-blocking, bound to `0.0.0.0:port`, read and written through
/// quinn-udp (recvmmsg with each datagram's destination address, GRO; sendmsg from a
/// chosen source address).
struct ShardSocket {
    socket: std::net::UdpSocket,
    state: quinn_udp::UdpSocketState,
    port: u16,
}

impl ShardSocket {
    fn bind() -> std::io::Result<ShardSocket> {
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        sock.set_nonblocking(true)?;
        sock.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).into())?;
        let socket: std::net::UdpSocket = sock.into();
        let state = quinn_udp::UdpSocketState::new((&socket).into())?;
        // Capped by net.core.rmem_max (scripts/bench.sh raises it).
        let _ = state.set_recv_buffer_size((&socket).into(), 32 << 20);
        let _ = state.set_send_buffer_size((&socket).into(), 1 << 20);
        let port = socket.local_addr()?.port();
        Ok(ShardSocket {
            socket,
            state,
            port,
        })
    }

    /// Reads what is waiting (`Err(WouldBlock)` when nothing is).
    fn recv(
        &self,
        bufs: &mut [Box<[u8]>],
        metas: &mut [quinn_udp::RecvMeta],
    ) -> std::io::Result<usize> {
        let mut slices: Vec<std::io::IoSliceMut<'_>> = bufs
            .iter_mut()
            .map(|b| std::io::IoSliceMut::new(&mut b[..]))
            .collect();
        let n = slices.len().min(metas.len());
        self.state
            .recv((&self.socket).into(), &mut slices[..n], &mut metas[..n])
    }

    fn send(&self, source: IpAddr, destination: SocketAddr, contents: &[u8]) {
        let t = quinn_udp::Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: None,
            src_ip: Some(source),
        };
        let _ = self.state.send((&self.socket).into(), &t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_addresses_are_distinct_loopback_addresses() {
        assert_eq!(viewer_ip(1), Ipv4Addr::new(127, 2, 0, 1));
        assert_eq!(viewer_ip(300), Ipv4Addr::new(127, 2, 1, 44));
        for id in [1u32, 255, 256, 70_000] {
            assert!(viewer_ip(id).is_loopback());
            assert_eq!(viewer_id(IpAddr::V4(viewer_ip(id))), Some(id));
        }
        assert_eq!(viewer_id(IpAddr::V4(Ipv4Addr::LOCALHOST)), None);
    }
}
