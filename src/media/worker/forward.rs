//! Forwarding: a source packet to this worker's viewers (through the [`Fanout`]) and
//! to the other workers with viewers of its stream, and the writes of a batch of
//! forwards, viewer by viewer, on the direct egress path.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::debug;

use super::session::guarded;
use super::{Deferred, Worker};
use crate::core::{Forward, SourcePacket};
use crate::directory::{Stream, StreamStats};

/// Which stream's `packets_out`/`bytes_out` a batch of forwards adds to.
#[derive(Clone, Copy)]
pub(super) enum StreamCount<'a> {
    /// Already counted when the forwards were made (`fan_out_local`).
    Counted,
    /// All of one stream.
    Stream(&'a StreamStats),
    /// Paced groups mix streams: each viewer's run counts for the stream it watches.
    PerViewer,
}

impl Worker {
    /// Writes the paced packets (cached groups going to viewers) whose turn has come.
    pub(super) fn release_paced(&mut self, now: Instant) {
        if self.fanout.paced_timeout().is_none_or(|t| t > now) {
            return;
        }
        // Not `self.forwards`: that holds live forwards still to be written.
        let mut forwards = Vec::new();
        self.fanout.poll_paced(now, &mut forwards);
        // Paced groups mix streams: each viewer's packets count for its own stream.
        self.write_forwards(&mut forwards, StreamCount::PerViewer);
    }

    /// Sends a source packet to every worker with viewers of its stream.
    pub(super) fn distribute(&mut self, shared: &Arc<Stream>, pkt: Arc<SourcePacket>) {
        let local = super::super::send_to_viewer_workers(
            &self.peers,
            shared,
            &pkt,
            &self.counters,
            Some(self.index),
        );
        if local {
            self.fan_out_local(shared, &pkt);
        }
    }

    /// Queues the forwards of one source packet; `run_deferred` writes them with the
    /// rest of the batch. The stream's counters are added here (the batch may mix
    /// streams), the forwarding latency once the batch is written.
    pub(super) fn fan_out_local(&mut self, shared: &Arc<Stream>, pkt: &SourcePacket) {
        if !self.held_keyframes.is_empty() {
            let key = (shared.name.clone(), pkt.layer);
            if self.held_keyframes.remove(&key) {
                self.deferred
                    .push_back(Deferred::WantKeyframe(shared.clone(), pkt.layer));
            }
        }
        let before = self.forwards.len();
        self.fanout.forward(&shared.name, pkt, &mut self.forwards);
        let n = (self.forwards.len() - before) as u64;
        if n > 0 {
            shared.stats.add_out(n, n * pkt.payload.len() as u64);
            self.pending_arrivals.push(pkt.arrival);
        }
    }

    /// Writes forwards viewer by viewer (each viewer's in source order), protected
    /// with that viewer's keys and queued in the [`Outbox`], so the datagrams of one
    /// viewer leave together as a GSO run and the runs of many viewers in one
    /// `sendmmsg`. Shared counters get one add per call, not one per viewer.
    pub(super) fn write_forwards(&mut self, forwards: &mut Vec<Forward>, count: StreamCount<'_>) {
        // Stable: a viewer's packets keep their order.
        forwards.sort_by_key(|f| f.viewer);
        let (mut packets, mut bytes) = (0u64, 0u64);
        let now = Instant::now();
        let mut rest = forwards.drain(..).peekable();
        while let Some(first) = rest.next() {
            let key = first.viewer.0;
            let run = std::iter::once(first)
                .chain(std::iter::from_fn(|| rest.next_if(|f| f.viewer.0 == key)));
            let Some(s) = self.sessions.get_mut(&key) else {
                run.for_each(drop);
                continue;
            };
            let (mut n, mut run_bytes) = (0u64, 0u64);
            let (socket, outbox, datagram) = (&self.socket, &mut self.outbox, &mut self.datagram);
            // After a panic the rest of this run is dropped with it; packets of this
            // viewer still in `rest` find no egress and are dropped below.
            guarded(key, s, &self.counters, &mut self.deferred, |s| {
                for f in run {
                    n += 1;
                    run_bytes += f.payload.len() as u64;
                    // A viewer between paths (an ICE restart) or without egress
                    // (closing) loses the packet; its NACK or keyframe request brings
                    // it back.
                    let (Some(d), Some((src, dst))) = (s.direct.as_deref_mut(), s.path) else {
                        continue;
                    };
                    match d.send(&f, now, datagram) {
                        Ok(()) => {
                            s.telemetry.bytes_out += datagram.len() as u64;
                            outbox.push(socket, src, dst, datagram);
                        }
                        Err(e) => s.span.in_scope(|| debug!("direct send refused: {e}")),
                    }
                }
            });
            packets += n;
            bytes += run_bytes;
            s.telemetry.packets_out += n;
            if let StreamCount::PerViewer = count {
                s.shared.stats.add_out(n, run_bytes);
            }
        }
        self.outbox.flush(&self.socket);
        if packets > 0 {
            let c = &self.counters;
            c.forwarded_packets.fetch_add(packets, Ordering::Relaxed);
            c.forwarded_bytes.fetch_add(bytes, Ordering::Relaxed);
            if let StreamCount::Stream(stats) = count {
                stats.add_out(packets, bytes);
            }
        }
    }

    /// Adds the fan-out's drop counts since the last flush to the shared counters.
    pub(super) fn flush_fanout_drops(&mut self) {
        let now = self.fanout.stats();
        let was = std::mem::replace(&mut self.fanout_flushed, now);
        let c = &self.counters;
        let add = |a: &std::sync::atomic::AtomicU64, n: u64, w: u64| {
            a.fetch_add(n.saturating_sub(w), Ordering::Relaxed);
        };
        add(
            &c.dropped_waiting_keyframe,
            now.dropped_waiting_keyframe,
            was.dropped_waiting_keyframe,
        );
        add(&c.dropped_no_pt, now.dropped_no_pt, was.dropped_no_pt);
        add(&c.dropped_too_old, now.dropped_too_old, was.dropped_too_old);
    }
}
