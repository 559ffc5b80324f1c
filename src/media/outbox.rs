//! Batches a worker's outgoing datagrams into GSO sends (one `sendmsg` carrying
//! several equal-sized UDP segments to one destination, `UDP_SEGMENT`).
//!
//! The kernel's cost of a UDP send on this class of machine is several times that of
//! the SRTP protection of the packet (see BENCHMARKS.md), and most of it is per
//! system call and per route lookup, not per byte. A fan-out worker that writes the
//! packets of one batch viewer by viewer (see `Worker::write_forwards`) produces runs
//! of equal-sized datagrams to one address — the packets of a video frame — that the
//! kernel can take in one call.
//!
//! Rules of GSO: every segment has the segment size except the last, which may be
//! shorter; one destination and source address per call; at most
//! [`MediaSocket::max_segments`] segments and 64 KiB. A datagram that breaks a rule
//! flushes the batch first. Without kernel support every datagram goes alone.

use std::net::{IpAddr, SocketAddr};

use super::udp::MediaSocket;

/// Bytes of UDP payload one GSO call may carry (IP datagram limit minus headers).
const MAX_BATCH_BYTES: usize = 65_000;

/// A pending run of datagrams to one destination.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    segment: usize,
    count: usize,
    destination: Option<SocketAddr>,
    source: Option<IpAddr>,
    /// The last segment was shorter than `segment`: nothing may follow it.
    closed: bool,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues one datagram, sending what was pending first when it cannot join it.
    pub fn push(
        &mut self,
        socket: &MediaSocket,
        source: IpAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) {
        let max_segments = socket.max_segments();
        if max_segments <= 1 || contents.is_empty() {
            socket.send(source, destination, contents);
            return;
        }
        let joins = self.count > 0
            && !self.closed
            && self.destination == Some(destination)
            && self.source == Some(source)
            && contents.len() <= self.segment
            && self.count < max_segments
            && self.buf.len() + contents.len() <= MAX_BATCH_BYTES;
        if !joins {
            self.flush(socket);
            self.segment = contents.len();
            self.destination = Some(destination);
            self.source = Some(source);
        }
        self.buf.extend_from_slice(contents);
        self.count += 1;
        if contents.len() < self.segment {
            self.closed = true;
        }
    }

    /// Sends whatever is pending.
    pub fn flush(&mut self, socket: &MediaSocket) {
        if let (true, Some(dst), Some(src)) = (self.count > 0, self.destination, self.source) {
            if self.count == 1 {
                socket.send(src, dst, &self.buf);
            } else {
                socket.send_segments(src, dst, &self.buf, self.segment);
            }
        }
        self.buf.clear();
        self.count = 0;
        self.closed = false;
        self.destination = None;
        self.source = None;
    }

    /// Datagrams pending.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Nothing pending.
    pub fn is_empty(&self) -> bool {
        self.count == 0
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
