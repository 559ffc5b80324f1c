//! ICE over TCP, passive (RFC 6544): each media worker also listens on TCP, on the
//! port number of its UDP socket, for clients whose network lets no UDP through. A
//! connection carries what the UDP socket carries (STUN, DTLS, SRTP, SRTCP), each
//! packet framed by a two-byte length (RFC 4571).
//!
//! The worker stays a single loop over one kind of input: each connection gets a
//! reader task that turns frames into [`TcpEvent`]s on the worker's queue, and a
//! writer task that drains a bounded queue of frames. The worker's send path hands a
//! datagram for a TCP peer to that queue ([`TcpPeers::send`]) and never waits: a
//! viewer whose connection does not take what it is sent (a closed receive window)
//! loses packets, counted, and is dropped after [`TcpLimits::stall`], while the
//! worker and every other viewer go on.
//!
//! Bounds: connections per worker, a frame's size ([`MAX_FRAME`]), the time a
//! connection may stay silent (or hold a partial frame), and the frames waiting to be
//! written per connection.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::udp::MAX_DATAGRAM;

/// The largest frame taken: what a UDP datagram may be. STUN, DTLS and SRTP packets
/// of WebRTC peers stay under 1500 bytes; a longer one is not a WebRTC peer's.
pub(crate) const MAX_FRAME: usize = MAX_DATAGRAM;

/// Bytes one write of a connection's writer gathers at most.
const WRITE_BATCH: usize = 64 * 1024;

/// Frames from all connections waiting for the worker.
const EVENT_QUEUE: usize = 1024;

/// How a worker bounds its TCP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpLimits {
    /// Connections open at once; more are closed at accept.
    pub(crate) max_connections: usize,
    /// A connection silent this long (or holding a partial frame this long) is closed.
    pub(crate) idle: Duration,
    /// A connection whose peer takes nothing for this long is closed.
    pub(crate) stall: Duration,
    /// Frames waiting to be written per connection; more are dropped.
    pub(crate) queue: usize,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpClose {
    /// The peer closed it or it failed.
    Peer,
    /// Nothing (or a partial frame only) for [`TcpLimits::idle`].
    Idle,
    /// A frame of this many bytes: empty or over [`MAX_FRAME`].
    BadFrame(usize),
    /// The peer took nothing for [`TcpLimits::stall`].
    Stalled,
}

/// ICE-TCP counts for the metrics: connections by what became of them, and packets
/// dropped for full connection queues.
#[derive(Debug, Default)]
pub struct IceTcpCounters {
    /// Connections taken.
    pub accepted: AtomicU64,
    /// Connections closed at accept, for [`TcpLimits::max_connections`].
    pub refused: AtomicU64,
    /// Closed by the peer (or failed).
    pub closed: AtomicU64,
    /// Closed for silence or a partial frame.
    pub idle: AtomicU64,
    /// Closed for a frame no WebRTC peer sends.
    pub bad_frame: AtomicU64,
    /// Closed because the peer took nothing.
    pub stalled: AtomicU64,
    /// Packets dropped for a full connection queue.
    pub queue_full: AtomicU64,
}

impl IceTcpCounters {
    /// Counts a connection that ended for `why`.
    pub(crate) fn ended(&self, why: TcpClose) {
        let c = match why {
            TcpClose::Peer => &self.closed,
            TcpClose::Idle => &self.idle,
            TcpClose::BadFrame(_) => &self.bad_frame,
            TcpClose::Stalled => &self.stalled,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What connection tasks tell the worker.
#[derive(Debug)]
pub(crate) enum TcpEvent {
    /// One frame's packet.
    Frame {
        /// The peer.
        remote: SocketAddr,
        /// Our end of the connection.
        local: SocketAddr,
        /// The packet.
        data: Vec<u8>,
    },
    /// The connection `id` with `remote` ended.
    Closed {
        remote: SocketAddr,
        id: u64,
        why: TcpClose,
    },
}

/// A bound listener, not yet registered with a runtime (see `udp::BoundSocket`).
#[derive(Debug)]
pub(crate) struct BoundListener {
    listener: std::net::TcpListener,
}

impl BoundListener {
    /// Listens on `addr` (`[::]` where IPv6 is off listens on `0.0.0.0`).
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<BoundListener> {
        let (listener, _) = crate::model::bind_every_family(addr, |a| {
            let domain = socket2::Domain::for_address(a);
            let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            s.set_reuse_address(true)?;
            if a.is_ipv6() {
                s.set_only_v6(!a.ip().is_unspecified())?;
            }
            s.set_nonblocking(true)?;
            s.bind(&a.into())?;
            s.listen(1024)?;
            Ok(std::net::TcpListener::from(s))
        })?;
        Ok(BoundListener { listener })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Registers the listener with the current runtime.
    pub(crate) fn register(self, limits: TcpLimits) -> io::Result<IceTcp> {
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        Ok(IceTcp {
            listener: TcpListener::from_std(self.listener)?,
            events,
            events_tx,
            limits,
            next_id: 1,
        })
    }
}

/// What woke the worker on the TCP side.
pub(crate) enum TcpWake {
    Accepted(io::Result<(TcpStream, SocketAddr)>),
    Event(TcpEvent),
}

/// A worker's TCP side: its listener and the events of its connections.
pub(crate) struct IceTcp {
    listener: TcpListener,
    events: mpsc::Receiver<TcpEvent>,
    events_tx: mpsc::Sender<TcpEvent>,
    limits: TcpLimits,
    next_id: u64,
}

impl IceTcp {
    /// Waits for a new connection or a connection's event.
    pub(crate) async fn wait(&mut self) -> TcpWake {
        tokio::select! {
            ev = self.events.recv() => match ev {
                Some(ev) => TcpWake::Event(ev),
                // Never: this side holds a sender.
                None => std::future::pending().await,
            },
            a = self.listener.accept() => TcpWake::Accepted(a),
        }
    }

    /// Takes an accepted connection: its reader and writer tasks start on this
    /// runtime and `peers` routes sends to it. False when the connection was closed
    /// at once, for lack of room.
    pub(crate) fn adopt(
        &mut self,
        stream: TcpStream,
        remote: SocketAddr,
        peers: &TcpPeers,
    ) -> bool {
        if peers.len() >= self.limits.max_connections {
            return false;
        }
        let remote = canonical(remote);
        let local = match stream.local_addr() {
            Ok(a) => canonical(a),
            Err(_) => return false,
        };
        let _ = stream.set_nodelay(true);
        let id = self.next_id;
        self.next_id += 1;
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel(self.limits.queue);
        let reader = tokio::spawn(read_frames(
            read,
            remote,
            local,
            id,
            self.events_tx.clone(),
            self.limits.idle,
        ));
        let writer = tokio::spawn(write_frames(
            write,
            rx,
            remote,
            id,
            self.events_tx.clone(),
            self.limits.stall,
        ));
        peers.insert(
            remote,
            Peer {
                id,
                tx,
                tasks: [reader.abort_handle(), writer.abort_handle()],
            },
        );
        true
    }
}

/// An IPv4 peer of a dual-stack listener as the IPv4 address it is.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

struct Peer {
    id: u64,
    tx: mpsc::Sender<Bytes>,
    tasks: [AbortHandle; 2],
}

/// The connections a worker sends to, by peer address: the send path looks a
/// destination up here first. Single-threaded (the worker's), hence the cells.
#[derive(Default)]
pub(crate) struct TcpPeers {
    peers: RefCell<HashMap<SocketAddr, Peer>>,
    /// Frames dropped because a connection's queue was full, not yet counted.
    dropped: Cell<u64>,
}

impl std::fmt::Debug for TcpPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpPeers")
            .field("connections", &self.len())
            .finish()
    }
}

impl TcpPeers {
    fn insert(&self, remote: SocketAddr, peer: Peer) {
        if let Some(old) = self.peers.borrow_mut().insert(remote, peer) {
            old.tasks.iter().for_each(AbortHandle::abort);
        }
    }

    /// Connections open.
    pub(crate) fn len(&self) -> usize {
        self.peers.borrow().len()
    }

    /// Whether `destination` is a TCP peer.
    pub(crate) fn contains(&self, destination: SocketAddr) -> bool {
        !self.peers.borrow().is_empty() && self.peers.borrow().contains_key(&destination)
    }

    /// Frames `datagram` to `destination` if it is a TCP peer, without waiting (a
    /// full queue drops it, counted). False when `destination` is no TCP peer.
    pub(crate) fn send(&self, destination: SocketAddr, datagram: &[u8]) -> bool {
        let peers = self.peers.borrow();
        let Some(peer) = peers.get(&destination) else {
            return false;
        };
        let Ok(len) = u16::try_from(datagram.len()) else {
            return true;
        };
        let mut frame = BytesMut::with_capacity(2 + datagram.len());
        frame.put_u16(len);
        frame.put_slice(datagram);
        if peer.tx.try_send(frame.freeze()).is_err() {
            self.dropped.set(self.dropped.get() + 1);
        }
        true
    }

    /// Forgets the connection `id` with `remote` and stops its tasks. False when
    /// another connection holds that address now (or none).
    pub(crate) fn remove(&self, remote: SocketAddr, id: u64) -> bool {
        let mut peers = self.peers.borrow_mut();
        if peers.get(&remote).is_some_and(|p| p.id == id) {
            if let Some(p) = peers.remove(&remote) {
                p.tasks.iter().for_each(AbortHandle::abort);
            }
            true
        } else {
            false
        }
    }

    /// Closes every connection.
    pub(crate) fn clear(&self) {
        for (_, p) in self.peers.borrow_mut().drain() {
            p.tasks.iter().for_each(AbortHandle::abort);
        }
    }

    /// Frames dropped for full queues since the last call.
    pub(crate) fn take_dropped(&self) -> u64 {
        self.dropped.replace(0)
    }
}

/// Reads frames until the peer closes, goes silent for `idle`, or sends a frame that
/// no WebRTC peer sends.
pub(crate) async fn read_frames<R: AsyncRead + Unpin>(
    mut read: R,
    remote: SocketAddr,
    local: SocketAddr,
    id: u64,
    events: mpsc::Sender<TcpEvent>,
    idle: Duration,
) {
    let why = loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, read.read_exact(&mut len)).await {
            Err(_) => break TcpClose::Idle,
            Ok(Err(_)) => break TcpClose::Peer,
            Ok(Ok(_)) => {}
        }
        let n = usize::from(u16::from_be_bytes(len));
        if n == 0 || n > MAX_FRAME {
            break TcpClose::BadFrame(n);
        }
        let mut data = vec![0u8; n];
        match tokio::time::timeout(idle, read.read_exact(&mut data)).await {
            Err(_) => break TcpClose::Idle,
            Ok(Err(_)) => break TcpClose::Peer,
            Ok(Ok(_)) => {}
        }
        let frame = TcpEvent::Frame {
            remote,
            local,
            data,
        };
        if events.send(frame).await.is_err() {
            return;
        }
    };
    let _ = events.send(TcpEvent::Closed { remote, id, why }).await;
}

/// Writes queued frames, a batch per write, until the worker lets go of the queue or
/// the peer takes nothing for `stall`.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut write: W,
    mut frames: mpsc::Receiver<Bytes>,
    remote: SocketAddr,
    id: u64,
    events: mpsc::Sender<TcpEvent>,
    stall: Duration,
) {
    let mut batch = Vec::with_capacity(4096);
    let why = loop {
        let Some(first) = frames.recv().await else {
            // The worker forgot this connection.
            let _ = write.shutdown().await;
            return;
        };
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            match frames.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        match tokio::time::timeout(stall, write.write_all(&batch)).await {
            Err(_) => break TcpClose::Stalled,
            Ok(Err(_)) => break TcpClose::Peer,
            Ok(Ok(())) => {}
        }
    };
    let _ = events.send(TcpEvent::Closed { remote, id, why }).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[tokio::test]
    async fn frames_are_read_until_one_no_webrtc_peer_sends() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (tx, mut rx) = mpsc::channel(8);
        let reader = tokio::spawn(read_frames(
            server,
            addr(1),
            addr(2),
            7,
            tx,
            Duration::from_secs(5),
        ));
        client.write_all(&[0, 3, b'a', b'b', b'c']).await.unwrap();
        client.write_all(&[0, 1]).await.unwrap();
        client.write_all(b"d").await.unwrap();
        // A length no WebRTC packet has.
        client.write_all(&[0xff, 0xff]).await.unwrap();
        let mut got = Vec::new();
        while let Some(ev) = rx.recv().await {
            match ev {
                TcpEvent::Frame { data, .. } => got.push(data),
                TcpEvent::Closed { id, why, .. } => {
                    assert_eq!((id, why), (7, TcpClose::BadFrame(65_535)));
                    break;
                }
            }
        }
        assert_eq!(got, [b"abc".to_vec(), b"d".to_vec()]);
        reader.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_frame_or_silence_closes_the_connection_after_idle() {
        let (mut client, server) = tokio::io::duplex(1024);
        let (tx, mut rx) = mpsc::channel(8);
        tokio::spawn(read_frames(
            server,
            addr(1),
            addr(2),
            1,
            tx,
            Duration::from_secs(30),
        ));
        // Half a frame, then nothing.
        client.write_all(&[0, 100, 1, 2, 3]).await.unwrap();
        match rx.recv().await {
            Some(TcpEvent::Closed { why, .. }) => assert_eq!(why, TcpClose::Idle),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_takes_nothing_loses_frames_and_is_closed_after_the_stall() {
        // The peer's side never reads: after the pipe's 1 KiB, writes block.
        let (_peer, server) = tokio::io::duplex(1024);
        let (events_tx, mut events) = mpsc::channel(8);
        let (tx, rx) = mpsc::channel(4);
        let peers = TcpPeers::default();
        let writer = tokio::spawn(write_frames(
            server,
            rx,
            addr(9),
            3,
            events_tx,
            Duration::from_secs(2),
        ));
        peers.insert(
            addr(9),
            Peer {
                id: 3,
                tx,
                tasks: [writer.abort_handle(), writer.abort_handle()],
            },
        );
        // The worker's sends never wait: what does not fit is dropped and counted.
        for _ in 0..100 {
            assert!(peers.send(addr(9), &[0u8; 1000]));
        }
        assert!(!peers.send(addr(10), &[0u8; 10]), "not a TCP peer");
        let dropped = peers.take_dropped();
        assert!(dropped >= 90, "{dropped} dropped");
        match events.recv().await {
            Some(TcpEvent::Closed { id, why, .. }) => assert_eq!((id, why), (3, TcpClose::Stalled)),
            other => panic!("{other:?}"),
        }
        assert!(peers.remove(addr(9), 3));
        assert!(!peers.remove(addr(9), 3));
    }
}
