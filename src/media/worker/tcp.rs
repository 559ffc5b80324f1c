//! The worker's ICE-TCP side: connections accepted or refused, their frames handed to
//! the datagram path, their ends (see `media::tcp` for the connections themselves).

use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::{debug, info};

use super::super::tcp::{IceTcp, MAX_FRAME, TcpClose, TcpEvent, TcpWake};
use super::super::udp::Received;
use super::Worker;

impl Worker {
    /// A new ICE-TCP connection, a frame from one (handled as a datagram), or the
    /// end of one.
    pub(super) fn handle_tcp(&mut self, wake: TcpWake, now: Instant) {
        let Some(tcp) = self.tcp.as_mut() else { return };
        match wake {
            TcpWake::Accepted(Ok((stream, remote))) => {
                let counters = &self.counters.ice_tcp;
                let count = if tcp.adopt(stream, remote, &self.socket.tcp) {
                    &counters.accepted
                } else {
                    &counters.refused
                };
                count.fetch_add(1, Ordering::Relaxed);
            }
            TcpWake::Accepted(Err(e)) => debug!("tcp accept failed: {e}"),
            TcpWake::Event(TcpEvent::Frame {
                remote,
                local,
                data,
            }) => {
                let r = Received {
                    source: remote,
                    destination: local,
                    len: data.len(),
                    tcp: true,
                };
                self.handle_datagram(now, r, &data);
                self.run_deferred(now);
            }
            TcpWake::Event(TcpEvent::Closed { remote, id, why }) => {
                if self.socket.tcp.remove(remote, id) {
                    self.counters.ice_tcp.ended(why);
                    if let TcpClose::BadFrame(n) = why {
                        info!(%remote, "ICE-TCP connection closed: a frame of {n} bytes (at most {MAX_FRAME})");
                    } else {
                        debug!(%remote, ?why, "ICE-TCP connection closed");
                    }
                }
            }
        }
    }
}

/// The next TCP wake-up of a worker with ICE-TCP on; never without.
pub(super) async fn tcp_wait(tcp: &mut Option<IceTcp>) -> TcpWake {
    match tcp {
        Some(t) => t.wait().await,
        None => std::future::pending().await,
    }
}
