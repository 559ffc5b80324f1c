//! The media workers' UDP socket: tokio readiness plus `quinn-udp` for the system calls,
//! so each datagram comes with the local address it was sent to (needed when bound to
//! 0.0.0.0, for ICE) and replies leave from that same address.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams read per system call at most.
pub const BATCH: usize = 32;
/// Largest datagram we accept; anything longer is truncated by the kernel and dropped.
pub const MAX_DATAGRAM: usize = 2048;

/// A bound, non-blocking UDP socket.
#[derive(Debug)]
pub struct MediaSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
}

/// One received datagram's addresses.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Sender.
    pub source: SocketAddr,
    /// Our address it was sent to.
    pub destination: SocketAddr,
    /// Bytes in the buffer.
    pub len: usize,
}

impl MediaSocket {
    /// Binds `addr` (port 0 picks one).
    pub fn bind(addr: SocketAddr) -> io::Result<MediaSocket> {
        let domain = socket2::Domain::for_address(addr);
        let sock =
            socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        if addr.is_ipv6() {
            // Only IPv6 on an IPv6 socket: an IPv4 worker binds its own.
            sock.set_only_v6(true)?;
        }
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        let std_sock: std::net::UdpSocket = sock.into();
        let state = UdpSocketState::new((&std_sock).into())?;
        // Bigger kernel buffers absorb bursts (a keyframe is tens of packets).
        let _ = state.set_recv_buffer_size((&std_sock).into(), 4 << 20);
        let _ = state.set_send_buffer_size((&std_sock).into(), 4 << 20);
        let socket = UdpSocket::from_std(std_sock)?;
        let local = socket.local_addr()?;
        Ok(MediaSocket {
            socket,
            state,
            local,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits until a datagram can be read.
    pub async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads up to [`BATCH`] datagrams without waiting. `WouldBlock` when none is there.
    pub fn try_recv(
        &self,
        bufs: &mut [[u8; MAX_DATAGRAM]],
        out: &mut Vec<Received>,
    ) -> io::Result<()> {
        out.clear();
        let mut metas = [RecvMeta::default(); BATCH];
        let n = bufs.len().min(BATCH);
        let mut slices: Vec<IoSliceMut<'_>> = bufs[..n]
            .iter_mut()
            .map(|b| IoSliceMut::new(&mut b[..]))
            .collect();
        let count = self.socket.try_io(Interest::READABLE, || {
            self.state
                .recv((&self.socket).into(), &mut slices, &mut metas[..n])
        })?;
        for meta in &metas[..count] {
            // With GRO a meta may hold several datagrams of `stride` bytes; we do not
            // enable GRO, so one meta is one datagram.
            let destination = SocketAddr::new(
                meta.dst_ip.map(unmap).unwrap_or(self.local.ip()),
                self.local.port(),
            );
            out.push(Received {
                source: SocketAddr::new(unmap(meta.addr.ip()), meta.addr.port()),
                destination,
                len: meta.len.min(MAX_DATAGRAM),
            });
        }
        Ok(())
    }

    /// Sends one datagram from `source` (our address) to `destination`. Errors other
    /// than a full buffer are logged by quinn-udp and ignored, as UDP loss is normal.
    pub fn send(&self, source: IpAddr, destination: SocketAddr, contents: &[u8]) {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: None,
            src_ip: if source.is_unspecified() || source == self.local.ip() {
                None
            } else {
                Some(source)
            },
        };
        if let Err(e) = self.socket.try_io(Interest::WRITABLE, || {
            self.state.send((&self.socket).into(), &transmit)
        }) {
            tracing::trace!(%destination, "udp send dropped: {e}");
        }
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}
