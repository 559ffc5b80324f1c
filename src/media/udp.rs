//! The media workers' UDP socket: tokio readiness plus `quinn-udp` for the system calls,
//! so each datagram comes with the local address it was sent to (needed when bound to
//! 0.0.0.0, for ICE) and replies leave from that same address.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::tcp::TcpPeers;

/// Datagrams read per system call at most.
pub(crate) const BATCH: usize = 32;
/// Largest datagram we accept; anything longer is cut to this length (and then fails
/// to parse or authenticate).
pub(crate) const MAX_DATAGRAM: usize = 2048;

/// Bytes of one receive buffer: room for a GRO batch (at most 64 segments, 64 KiB).
pub(crate) const RECV_BUFFER: usize = 65_536;

/// Messages one [`MediaSocket::send_many`] system call carries at most.
pub(crate) const MAX_MESSAGES: usize = 32;

/// One message of a [`MediaSocket::send_many`]: `len` bytes at `start` of the shared
/// buffer, sent from `source` to `destination` as datagrams of `segment` bytes (the
/// last may be shorter) when `segments` is more than one (GSO), else as one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outgoing {
    /// Our address to send from.
    pub(crate) source: IpAddr,
    /// The peer.
    pub(crate) destination: SocketAddr,
    /// Offset in the buffer.
    pub(crate) start: usize,
    /// Bytes, all segments together.
    pub(crate) len: usize,
    /// Bytes per segment.
    pub(crate) segment: usize,
    /// Datagrams in the message.
    pub(crate) segments: usize,
}

/// Receive buffers for [`MediaSocket::try_recv`] and the datagrams last read into them.
pub(crate) struct RecvBuffers {
    bufs: Vec<Box<[u8]>>,
    /// (addresses and length, buffer index, offset in the buffer)
    received: Vec<(Received, usize, usize)>,
}

impl Default for RecvBuffers {
    fn default() -> Self {
        RecvBuffers {
            bufs: (0..BATCH)
                .map(|_| vec![0u8; RECV_BUFFER].into_boxed_slice())
                .collect(),
            received: Vec::with_capacity(BATCH),
        }
    }
}

impl RecvBuffers {
    /// [`BATCH`] buffers of [`RECV_BUFFER`] bytes.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The datagrams of the last read, in arrival order.
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (Received, &[u8])> {
        self.received
            .iter()
            .map(|&(r, b, off)| (r, &self.bufs[b][off..off + r.len]))
    }
}

/// A bound, non-blocking UDP socket.
#[derive(Debug)]
pub(crate) struct MediaSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    /// The worker's ICE-TCP peers: a datagram to one of them leaves on its TCP
    /// connection instead (see `tcp`).
    pub(crate) tcp: TcpPeers,
}

/// One received datagram's addresses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    /// Sender.
    pub(crate) source: SocketAddr,
    /// Our address it was sent to.
    pub(crate) destination: SocketAddr,
    /// Bytes in the buffer.
    pub(crate) len: usize,
    /// It came on an ICE-TCP connection (a frame), not as a UDP datagram.
    pub(crate) tcp: bool,
}

/// A bound UDP socket not yet registered with a tokio runtime: a media worker binds
/// in `Media::start` (so a bind error is the caller's) and registers the socket on its
/// own thread's runtime.
#[derive(Debug)]
pub(crate) struct BoundSocket {
    socket: std::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
}

impl BoundSocket {
    /// Binds `addr` (port 0 picks one); `[::]` where IPv6 is off binds `0.0.0.0`.
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<BoundSocket> {
        let (socket, ipv4_only) = crate::model::bind_every_family(addr, Self::bind_exactly)?;
        if ipv4_only {
            tracing::warn!(%addr, "IPv6 is not available: media on IPv4 alone ({})", socket.local);
        }
        Ok(socket)
    }

    fn bind_exactly(addr: SocketAddr) -> io::Result<BoundSocket> {
        let domain = socket2::Domain::for_address(addr);
        let sock =
            socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        if addr.is_ipv6() {
            // `[::]` is both families (IPv4 peers arrive as mapped addresses, which
            // the receive path unmaps, and Linux sends to an IPv4 address from an IPv6
            // socket); a specific IPv6 address is IPv6 alone.
            sock.set_only_v6(!addr.ip().is_unspecified())?;
        }
        sock.set_nonblocking(true)?;
        sock.bind(&addr.into())?;
        let socket: std::net::UdpSocket = sock.into();
        let state = UdpSocketState::new((&socket).into())?;
        // Bigger kernel buffers absorb bursts (a keyframe is tens of packets).
        let _ = state.set_recv_buffer_size((&socket).into(), 4 << 20);
        let _ = state.set_send_buffer_size((&socket).into(), 4 << 20);
        let local = socket.local_addr()?;
        Ok(BoundSocket {
            socket,
            state,
            local,
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Registers the socket with the current tokio runtime.
    pub(crate) fn register(self) -> io::Result<MediaSocket> {
        Ok(MediaSocket {
            socket: UdpSocket::from_std(self.socket)?,
            state: self.state,
            local: self.local,
            tcp: TcpPeers::default(),
        })
    }
}

impl MediaSocket {
    /// Binds `addr` (port 0 picks one) on the current tokio runtime.
    #[cfg(test)]
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<MediaSocket> {
        BoundSocket::bind(addr)?.register()
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits until a datagram can be read.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        self.socket.readable().await
    }

    /// Reads up to [`BATCH`] system-level datagrams without waiting into `bufs`,
    /// replacing what it held. `WouldBlock` when none is there.
    ///
    /// quinn-udp turns UDP GRO on, so the kernel may hand over several datagrams of
    /// one flow in one buffer (a burst from a publisher, or a peer's GSO send): they
    /// are split again by the reported segment size, so every datagram comes out whole.
    pub(crate) fn try_recv(&self, bufs: &mut RecvBuffers) -> io::Result<()> {
        bufs.received.clear();
        let mut metas = [RecvMeta::default(); BATCH];
        let n = bufs.bufs.len().min(BATCH);
        let mut slices: Vec<IoSliceMut<'_>> = bufs.bufs[..n]
            .iter_mut()
            .map(|b| IoSliceMut::new(&mut b[..]))
            .collect();
        let count = self.socket.try_io(Interest::READABLE, || {
            self.state
                .recv((&self.socket).into(), &mut slices, &mut metas[..n])
        })?;
        for (buf, meta) in metas[..count].iter().enumerate() {
            let destination = SocketAddr::new(
                meta.dst_ip
                    .map(|ip| ip.to_canonical())
                    .unwrap_or(self.local.ip()),
                self.local.port(),
            );
            let source = SocketAddr::new(meta.addr.ip().to_canonical(), meta.addr.port());
            let len = meta.len.min(RECV_BUFFER);
            let stride = if meta.stride == 0 { len } else { meta.stride };
            let mut offset = 0;
            while offset < len {
                let seg = stride.min(len - offset);
                bufs.received.push((
                    Received {
                        source,
                        destination,
                        len: seg.min(MAX_DATAGRAM),
                        tcp: false,
                    },
                    buf,
                    offset,
                ));
                offset += seg;
            }
        }
        Ok(())
    }

    /// Sends one datagram from `source` (our address) to `destination`. Errors other
    /// than a full buffer are logged by quinn-udp and ignored, as UDP loss is normal.
    pub(crate) fn send(&self, source: IpAddr, destination: SocketAddr, contents: &[u8]) {
        if !self.tcp.send(destination, contents) {
            self.send_transmit(source, destination, contents, None);
        }
    }

    /// How many datagrams one GSO message of [`MediaSocket::send_many`] may carry
    /// (1: no GSO).
    pub(crate) fn max_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Sends every message of `messages` (each `len` bytes at `start` in `buf`) with
    /// as few system calls as it can: `sendmmsg` carries up to [`MAX_MESSAGES`] of
    /// them, to different viewers, in one call on Linux, each message still a GSO run
    /// of one viewer's datagrams. A message the batch call refuses goes alone, the
    /// portable way (which also learns when the kernel lacks GSO). When the send
    /// buffer is full, the rest is dropped, as UDP loss. Returns the system calls made.
    pub(crate) fn send_many(&self, buf: &[u8], messages: &[Outgoing]) -> u64 {
        if self.tcp.len() > 0 && messages.iter().any(|m| self.tcp.contains(m.destination)) {
            // Messages to ICE-TCP peers leave as frames on their connections, a
            // datagram each; the rest as usual.
            let mut udp = Vec::with_capacity(messages.len());
            for m in messages {
                if self.tcp.contains(m.destination) {
                    let run = &buf[m.start..m.start + m.len];
                    for datagram in run.chunks(m.segment.max(1)) {
                        self.tcp.send(m.destination, datagram);
                    }
                } else {
                    udp.push(*m);
                }
            }
            return self.send_udp(buf, &udp);
        }
        self.send_udp(buf, messages)
    }

    fn send_udp(&self, buf: &[u8], messages: &[Outgoing]) -> u64 {
        let mut rest = messages;
        let mut calls = 0;
        while let Some(first) = rest.first() {
            calls += 1;
            #[cfg(target_os = "linux")]
            if rest.len() > 1 {
                match self.try_sendmmsg(buf, rest) {
                    Ok(n) if n > 0 => {
                        rest = &rest[n..];
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tracing::trace!(messages = rest.len(), "udp send dropped: {e}");
                        return calls;
                    }
                    // The first message failed: it goes alone below.
                    _ => {}
                }
            }
            let contents = &buf[first.start..first.start + first.len];
            let segment = (first.segments > 1).then_some(first.segment);
            self.send_transmit(first.source, first.destination, contents, segment);
            rest = &rest[1..];
        }
        calls
    }

    /// One `sendmmsg` of the first [`MAX_MESSAGES`] of `messages`: how many the
    /// kernel took.
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn try_sendmmsg(&self, buf: &[u8], messages: &[Outgoing]) -> io::Result<usize> {
        use std::mem::{size_of_val, zeroed};
        use std::os::fd::AsRawFd;
        let n = messages.len().min(MAX_MESSAGES);
        // SAFETY: these are plain C structs for which all-zero bytes are valid values.
        let mut names: [libc::sockaddr_storage; MAX_MESSAGES] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; MAX_MESSAGES] = unsafe { zeroed() };
        let mut headers: [libc::mmsghdr; MAX_MESSAGES] = unsafe { zeroed() };
        // Room for UDP_SEGMENT and an IPv6 source address, aligned for `cmsghdr`.
        let mut controls = [[0u64; 12]; MAX_MESSAGES];
        for (i, m) in messages[..n].iter().enumerate() {
            let name = socket2::SockAddr::from(m.destination);
            let bytes = &buf[m.start..m.start + m.len];
            // SAFETY: `name` holds `name.len()` valid bytes of a socket address, and
            // `sockaddr_storage` is large enough for any.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    name.as_ptr().cast::<u8>(),
                    (&mut names[i] as *mut libc::sockaddr_storage).cast::<u8>(),
                    name.len() as usize,
                );
            }
            iovs[i] = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            let h = &mut headers[i].msg_hdr;
            h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = name.len();
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = controls[i].as_mut_ptr().cast();
            h.msg_controllen = size_of_val(&controls[i]);
            let mut used = 0usize;
            // SAFETY: the control buffer is aligned and large enough for both
            // messages (`put_cmsg` is only handed a header CMSG_FIRSTHDR/NXTHDR
            // found within msg_controllen).
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                if m.segments > 1 && !c.is_null() {
                    used += put_cmsg(c, libc::SOL_UDP, libc::UDP_SEGMENT, m.segment as u16);
                    c = libc::CMSG_NXTHDR(h, c);
                }
                match self.explicit_source(m.source) {
                    Some(IpAddr::V4(ip)) if !c.is_null() => {
                        let info = libc::in_pktinfo {
                            ipi_ifindex: 0,
                            ipi_spec_dst: libc::in_addr {
                                s_addr: u32::from_ne_bytes(ip.octets()),
                            },
                            ipi_addr: libc::in_addr { s_addr: 0 },
                        };
                        used += put_cmsg(c, libc::IPPROTO_IP, libc::IP_PKTINFO, info);
                    }
                    Some(IpAddr::V6(ip)) if !c.is_null() => {
                        let info = libc::in6_pktinfo {
                            ipi6_addr: libc::in6_addr {
                                s6_addr: ip.octets(),
                            },
                            ipi6_ifindex: 0,
                        };
                        used += put_cmsg(c, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info);
                    }
                    _ => {}
                }
            }
            h.msg_controllen = used as _;
            if used == 0 {
                h.msg_control = std::ptr::null_mut();
            }
        }
        let fd = self.socket.as_raw_fd();
        self.socket.try_io(Interest::WRITABLE, || {
            // SAFETY: `headers[..n]` point into `names`, `iovs`, `controls` and `buf`,
            // which all outlive the call.
            let sent = unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), n as libc::c_uint, 0) };
            if sent < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(sent as usize)
            }
        })
    }

    /// The source address a datagram must name: none when the socket's own address
    /// (or any) will do.
    fn explicit_source(&self, source: IpAddr) -> Option<IpAddr> {
        (!source.is_unspecified() && source != self.local.ip()).then_some(source)
    }

    fn send_transmit(
        &self,
        source: IpAddr,
        destination: SocketAddr,
        contents: &[u8],
        segment_size: Option<usize>,
    ) {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size,
            src_ip: self.explicit_source(source),
        };
        if let Err(e) = self.socket.try_io(Interest::WRITABLE, || {
            self.state.send((&self.socket).into(), &transmit)
        }) {
            tracing::trace!(%destination, "udp send dropped: {e}");
        }
    }
}

/// Writes one control message (`level`, `kind`, `value`) at `c`; returns the control
/// buffer space it took.
///
/// # Safety
/// `c` points to a `cmsghdr` inside a control buffer with room for the header and
/// `value` (as CMSG_FIRSTHDR/CMSG_NXTHDR hand out).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
unsafe fn put_cmsg<T>(
    c: *mut libc::cmsghdr,
    level: libc::c_int,
    kind: libc::c_int,
    value: T,
) -> usize {
    let len = std::mem::size_of::<T>() as u32;
    // SAFETY: the caller guarantees the header and its data fit at `c`.
    unsafe {
        (*c).cmsg_level = level;
        (*c).cmsg_type = kind;
        (*c).cmsg_len = libc::CMSG_LEN(len) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<T>(), value);
        libc::CMSG_SPACE(len) as usize
    }
}
