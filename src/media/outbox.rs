//! Batches a worker's outgoing datagrams: runs of equal-sized datagrams to one
//! destination become GSO messages (one message carrying several UDP segments,
//! `UDP_SEGMENT`), and the messages to many destinations leave in one `sendmmsg`.
//!
//! The kernel's cost of a UDP send on this class of machine is several times that of
//! the SRTP protection of the packet (see BENCHMARKS.md), and much of it is per
//! system call and per route lookup, not per byte. A fan-out worker that writes the
//! packets of one batch viewer by viewer (see `Worker::write_forwards`) produces runs
//! of equal-sized datagrams to one address (the packets of a video frame) that GSO
//! takes in one message, and one source packet for every viewer (a paced source) that
//! `sendmmsg` takes in one call.
//!
//! Rules of GSO: every segment has the segment size except the last, which may be
//! shorter; one destination and source address per message; at most
//! [`MediaSocket::max_segments`] segments and 64 KiB. A datagram that breaks a rule
//! starts a new message; [`MAX_MESSAGES`] messages make a full outbox, which is sent
//! before the next one starts. Datagrams to one destination leave in the order they
//! were pushed.

use std::net::{IpAddr, SocketAddr};

use super::udp::{MAX_MESSAGES, MediaSocket, Outgoing};

/// Bytes of UDP payload one GSO message may carry (IP datagram limit minus headers).
const MAX_BATCH_BYTES: usize = 65_000;

/// Datagrams waiting to be sent, as messages over one buffer.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    buf: Vec<u8>,
    messages: Vec<Outgoing>,
    /// The last message's last segment was shorter: nothing may join it.
    closed: bool,
    /// Datagrams handed to the kernel, and the system calls that took them, since
    /// the last [`Outbox::take_sent`].
    sent: SendCounts,
}

/// What an [`Outbox`] sent: datagrams over system calls is its batching factor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendCounts {
    /// Datagrams.
    pub(crate) datagrams: u64,
    /// System calls.
    pub(crate) calls: u64,
}

impl Outbox {
    /// An empty outbox.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Queues one datagram, sending what was pending first when the outbox is full.
    pub(crate) fn push(
        &mut self,
        socket: &MediaSocket,
        source: IpAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        let max_segments = socket.max_segments();
        let joins = !self.closed
            && self.messages.last().is_some_and(|m| {
                m.destination == destination
                    && m.source == source
                    && !contents.is_empty()
                    && contents.len() <= m.segment
                    && m.segments < max_segments
                    && m.len + contents.len() <= MAX_BATCH_BYTES
            });
        if let (true, Some(m)) = (joins, self.messages.last_mut()) {
            m.len += contents.len();
            m.segments += 1;
            self.closed = contents.len() < m.segment;
        } else {
            if self.messages.len() >= MAX_MESSAGES {
                self.flush(socket);
            }
            self.messages.push(Outgoing {
                source,
                destination,
                start: self.buf.len(),
                len: contents.len(),
                segment: contents.len(),
                segments: 1,
            });
            self.closed = contents.is_empty();
        }
        self.buf.extend_from_slice(contents);
    }

    /// Sends whatever is pending.
    pub(crate) fn flush(&mut self, socket: &MediaSocket) {
        if !self.messages.is_empty() {
            self.sent.calls += socket.send_many(&self.buf, &self.messages);
            self.sent.datagrams += self.len() as u64;
        }
        self.buf.clear();
        self.messages.clear();
        self.closed = false;
    }

    /// Datagrams pending.
    pub(crate) fn len(&self) -> usize {
        self.messages.iter().map(|m| m.segments).sum()
    }

    #[cfg(test)]
    /// Nothing pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// What was sent since the last call.
    pub(crate) fn take_sent(&mut self) -> SendCounts {
        std::mem::take(&mut self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn recv_all(sock: &std::net::UdpSocket) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    fn recv_n(sock: &std::net::UdpSocket, n: usize) -> Vec<Vec<u8>> {
        let mut buf = [0u8; 2048];
        (0..n)
            .map_while(|_| sock.recv(&mut buf).ok().map(|len| buf[..len].to_vec()))
            .collect()
    }

    #[tokio::test]
    async fn batches_runs_and_delivers_every_datagram_in_order() {
        let socket = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
        }
        // Let the reactor see the new socket writable (sends are `try_io`).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let src = socket.local_addr().ip();
        let mut out = Outbox::new();
        let dgram = |tag: u8, len: usize| {
            let mut d = vec![tag; len];
            d[0] = tag;
            d
        };
        // Three equal, one shorter (closes the run), one more to the same address.
        for (tag, len) in [(1u8, 1000usize), (2, 1000), (3, 1000), (4, 300), (5, 1000)] {
            out.push(&socket, src, a.local_addr().unwrap(), &dgram(tag, len));
        }
        // A longer one cannot join a run of shorter segments.
        out.push(&socket, src, a.local_addr().unwrap(), &dgram(6, 1100));
        out.push(&socket, src, b.local_addr().unwrap(), &dgram(7, 1100));
        out.flush(&socket);
        assert!(out.is_empty());
        let got_a = recv_all(&a);
        let tags: Vec<(u8, usize)> = got_a.iter().map(|d| (d[0], d.len())).collect();
        assert_eq!(
            tags,
            vec![
                (1, 1000),
                (2, 1000),
                (3, 1000),
                (4, 300),
                (5, 1000),
                (6, 1100)
            ]
        );
        let got_b = recv_all(&b);
        assert_eq!(got_b.len(), 1);
        assert_eq!((got_b[0][0], got_b[0].len()), (7, 1100));
    }

    /// More viewers than one `sendmmsg` carries, each getting a run of a frame (GSO)
    /// and a short audio packet: every datagram arrives, in order per viewer.
    #[tokio::test]
    async fn many_destinations_leave_in_batches_and_each_gets_its_datagrams_in_order() {
        let socket = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let viewers: Vec<std::net::UdpSocket> = (0..MAX_MESSAGES + 8)
            .map(|_| {
                let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                s
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let src = socket.local_addr().ip();
        let mut out = Outbox::new();
        for (v, rx) in viewers.iter().enumerate() {
            for (tag, len) in [(1u8, 1200usize), (2, 1200), (3, 900), (4, 80)] {
                let mut d = vec![tag; len];
                d[1] = v as u8;
                out.push(&socket, src, rx.local_addr().unwrap(), &d);
            }
        }
        // Full outboxes were sent on the way; the rest goes now.
        assert!(out.len() < viewers.len() * 4);
        out.flush(&socket);
        // Two messages per viewer (a GSO run closed by the shorter 900, then the 80),
        // MAX_MESSAGES of them per system call.
        let messages = viewers.len() * 2;
        assert_eq!(
            out.take_sent(),
            SendCounts {
                datagrams: (viewers.len() * 4) as u64,
                calls: messages.div_ceil(MAX_MESSAGES) as u64,
            }
        );
        for (v, rx) in viewers.iter().enumerate() {
            let got: Vec<(u8, u8, usize)> = recv_n(rx, 4)
                .iter()
                .map(|d| (d[0], d[1], d.len()))
                .collect();
            let v = v as u8;
            assert_eq!(
                got,
                vec![(1, v, 1200), (2, v, 1200), (3, v, 900), (4, v, 80)],
                "viewer {v}"
            );
        }
    }

    /// A worker bound to every address answers from the address the peer wrote to.
    #[tokio::test]
    async fn a_named_source_address_is_the_one_the_peer_sees() {
        for (any, local) in [("0.0.0.0:0", "127.0.0.1"), ("[::]:0", "::1")] {
            let Ok(socket) = MediaSocket::bind(any.parse().unwrap()) else {
                continue; // no IPv6 here
            };
            let rx = std::net::UdpSocket::bind((local, 0)).unwrap();
            rx.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let source: IpAddr = local.parse().unwrap();
            let mut out = Outbox::new();
            // Two destinations, so the batch goes through `sendmmsg`.
            let other = std::net::UdpSocket::bind((local, 0)).unwrap();
            out.push(&socket, source, rx.local_addr().unwrap(), &[7u8; 100]);
            out.push(&socket, source, rx.local_addr().unwrap(), &[8u8; 100]);
            out.push(&socket, source, other.local_addr().unwrap(), &[9u8; 10]);
            out.flush(&socket);
            let mut buf = [0u8; 2048];
            for tag in [7u8, 8] {
                let (n, from) = rx.recv_from(&mut buf).unwrap();
                assert_eq!((buf[0], n), (tag, 100));
                assert_eq!(from.ip(), source);
                assert_eq!(from.port(), socket.local_addr().port());
            }
        }
    }

    #[tokio::test]
    async fn a_gro_receiver_gets_every_segment_whole() {
        let tx = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let rx = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut out = Outbox::new();
        for (tag, len) in [(1u8, 1200usize), (2, 1200), (3, 1200), (4, 500)] {
            let mut d = vec![tag; len];
            d[0] = tag;
            out.push(&tx, tx.local_addr().ip(), rx.local_addr(), &d);
        }
        out.flush(&tx);
        let mut bufs = super::super::udp::RecvBuffers::new();
        let mut got = Vec::new();
        for _ in 0..50 {
            if tokio::time::timeout(Duration::from_millis(100), rx.readable())
                .await
                .is_err()
            {
                continue;
            }
            if rx.try_recv(&mut bufs).is_ok() {
                got.extend(bufs.datagrams().map(|(r, d)| (d[0], d.len(), r.len)));
            }
            if got.len() >= 4 {
                break;
            }
        }
        assert_eq!(
            got,
            vec![
                (1, 1200, 1200),
                (2, 1200, 1200),
                (3, 1200, 1200),
                (4, 500, 500)
            ]
        );
    }
}
