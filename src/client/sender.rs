//! A WHIP publisher of packets it is given, not made: what a relay (`[[push]]`) sends
//! another server. It offers exactly the codecs of the stream it relays, one sendonly
//! m-line per kind, and writes each packet with the payload type the answer took.
//!
//! A relayed stream may change sources (a publisher back within its grace period, a
//! camera that rebooted), which number their packets afresh: the sender keeps one
//! sequence and one timeline per kind across them, so the receiving server sees one
//! source that paused.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use str0m::Event;
use str0m::format::{CodecConfig, PayloadParams};
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::rtp::RtpWrite;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::ClientError;
use super::peer::{self, Driver, PeerStatus};

/// One packet to send.
#[derive(Debug, Clone)]
pub(crate) struct SentPacket {
    pub(crate) kind: MediaKind,
    /// The source's sequence number (extended) and source epoch: a new epoch is a
    /// new source, whose numbering starts anywhere.
    pub(crate) seq: u64,
    pub(crate) epoch: u32,
    pub(crate) timestamp: u32,
    pub(crate) marker: bool,
    pub(crate) payload: Arc<[u8]>,
}

/// What the receiving server asks of the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SenderEvent {
    /// A keyframe (PLI or FIR).
    Keyframe,
}

/// A connected WHIP sender: its session URL, and the task that owns its peer.
pub(crate) struct WhipSender {
    location: String,
    token: Option<String>,
    status: watch::Receiver<PeerStatus>,
    task: JoinHandle<()>,
}

/// The send side of one kind, and where its numbering stands.
struct Track {
    kind: MediaKind,
    mid: Mid,
    pt: Pt,
    /// The last source epoch, and the offsets from its numbering to ours.
    epoch: Option<u32>,
    seq_offset: u64,
    ts_offset: u32,
    /// The last sequence number and timestamp written, ours.
    last: Option<(u64, u32)>,
}

impl Track {
    /// Our sequence number and timestamp for a source packet: continuing from the
    /// last one written when the source changed (one frame's time on).
    fn number(&mut self, p: &SentPacket) -> (u64, u32) {
        if self.epoch != Some(p.epoch) {
            self.epoch = Some(p.epoch);
            let step = if self.kind == MediaKind::Video {
                3000
            } else {
                960
            };
            let (seq, ts) = self
                .last
                .map_or((p.seq, p.timestamp), |(s, t)| (s + 1, t.wrapping_add(step)));
            self.seq_offset = seq.wrapping_sub(p.seq);
            self.ts_offset = ts.wrapping_sub(p.timestamp);
        }
        let out = (
            p.seq.wrapping_add(self.seq_offset),
            p.timestamp.wrapping_add(self.ts_offset),
        );
        self.last = Some(out);
        out
    }
}

impl WhipSender {
    /// POSTs a sendonly offer of `codecs` (one per kind, as the relayed stream has
    /// them) to `url` from `bind_ip`, and starts the task that sends what `packets`
    /// brings until it closes. The receiving server's requests come on the returned
    /// channel, which closes when the session ends.
    pub(crate) async fn connect(
        url: &str,
        token: Option<&str>,
        bind_ip: IpAddr,
        codecs: Vec<(MediaKind, PayloadParams)>,
        packets: mpsc::Receiver<SentPacket>,
    ) -> Result<(WhipSender, mpsc::Receiver<SenderEvent>), ClientError> {
        let socket = tokio::net::UdpSocket::bind(SocketAddr::new(bind_ip, 0)).await?;
        let local = socket.local_addr()?;
        super::install_crypto_provider();
        let kinds: Vec<MediaKind> = codecs.iter().map(|(k, _)| *k).collect();
        let mut cfg = str0m::RtcConfig::new().set_rtp_mode(true);
        *cfg.codec_config() =
            CodecConfig::new_from_payload_params(codecs.into_iter().map(|(_, p)| p).collect());
        peer::tune_ice(&mut cfg);
        let mut rtc = cfg.build(Instant::now());
        peer::add_host_candidate(&mut rtc, local)?;
        let mut api = rtc.sdp_api();
        let mids: Vec<(MediaKind, Mid)> = kinds
            .iter()
            .map(|k| (*k, api.add_media(*k, Direction::SendOnly, None, None, None)))
            .collect();
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| ClientError::Sdp("no offer made".into()))?;
        peer::drain_offline(&mut rtc)?;
        let sig =
            peer::exchange(&mut rtc, pending, offer.to_sdp_string(), url, token, false).await?;
        let tracks: Vec<Track> = mids
            .into_iter()
            .filter_map(|(kind, mid)| {
                let media = rtc.media(mid)?;
                if media.disabled() {
                    return None;
                }
                let pt = *media.remote_pts().first()?;
                Some(Track {
                    kind,
                    mid,
                    pt,
                    epoch: None,
                    seq_offset: 0,
                    ts_offset: 0,
                    last: None,
                })
            })
            .collect();
        if tracks.is_empty() {
            let _ = peer::delete_session(&sig.location, token).await;
            return Err(ClientError::Sdp(
                "the answer accepted none of the offered media".into(),
            ));
        }
        let (status_tx, status_rx) = watch::channel(PeerStatus::default());
        let mut driver = Driver::new(rtc, socket, status_tx)?;
        driver.remote_sdp = sig.answer_sdp.clone();
        let (events_tx, events_rx) = mpsc::channel(16);
        let task = SenderTask {
            driver,
            tracks,
            events: events_tx,
        };
        let task = tokio::spawn(task.run(packets));
        Ok((
            WhipSender {
                location: sig.location,
                token: token.map(str::to_owned),
                status: status_rx,
                task,
            },
            events_rx,
        ))
    }

    /// Whether ICE and DTLS are up.
    pub(crate) fn is_connected(&self) -> bool {
        let s = self.status.borrow();
        s.connected && !s.closed
    }

    /// Ends the session: the task stops and the session is DELETEd.
    pub(crate) async fn delete(self) {
        self.task.abort();
        let _ = peer::delete_session(&self.location, self.token.as_deref()).await;
    }
}

/// What woke the task.
enum Wake {
    Packet(Option<SentPacket>),
    Datagram(usize, SocketAddr),
    Timeout,
}

struct SenderTask {
    driver: Driver,
    tracks: Vec<Track>,
    events: mpsc::Sender<SenderEvent>,
}

impl SenderTask {
    async fn run(mut self, mut packets: mpsc::Receiver<SentPacket>) {
        if let Err(e) = self.run_inner(&mut packets).await {
            tracing::debug!("sender task ended: {e}");
            self.driver.close(&e.to_string());
        }
    }

    async fn run_inner(
        &mut self,
        packets: &mut mpsc::Receiver<SentPacket>,
    ) -> Result<(), ClientError> {
        self.driver.handle_timeout()?;
        loop {
            for e in self.driver.drain().await? {
                if let Event::KeyframeRequest(_) = e {
                    let _ = self.events.try_send(SenderEvent::Keyframe);
                }
            }
            if !self.driver.rtc.is_alive() {
                self.driver.close("rtc no longer alive");
                return Ok(());
            }
            let d = &mut self.driver;
            let wake = tokio::select! {
                biased;
                p = packets.recv() => Wake::Packet(p),
                r = d.socket.recv_from(&mut d.buf) => match r {
                    Ok((n, src)) => Wake::Datagram(n, src),
                    Err(e) => {
                        tracing::debug!("recv: {e}");
                        Wake::Timeout
                    }
                },
                _ = tokio::time::sleep_until(d.next_timeout.into()) => Wake::Timeout,
            };
            match wake {
                Wake::Packet(Some(p)) => self.write(&p),
                // The relay let go: the session ends.
                Wake::Packet(None) => return Ok(()),
                Wake::Datagram(n, src) => self.driver.handle_wake_input(n, src)?,
                Wake::Timeout => self.driver.handle_timeout()?,
            }
        }
    }

    fn write(&mut self, p: &SentPacket) {
        let Some(track) = self.tracks.iter_mut().find(|t| t.kind == p.kind) else {
            return;
        };
        let (seq, ts) = track.number(p);
        let w = RtpWrite::new(track.pt, seq.into(), ts, Instant::now(), p.payload.to_vec())
            .marker(p.marker)
            .nackable(true);
        let (mid, rtc) = (track.mid, &mut self.driver.rtc);
        if let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None) {
            tx.write_rtp(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u64, epoch: u32, timestamp: u32) -> SentPacket {
        SentPacket {
            kind: MediaKind::Video,
            seq,
            epoch,
            timestamp,
            marker: true,
            payload: Arc::from(&[1u8][..]),
        }
    }

    #[test]
    fn a_new_source_continues_the_numbering_and_the_timeline_one_frame_on() {
        let mut t = Track {
            kind: MediaKind::Video,
            mid: Mid::from("0"),
            pt: Pt::from(96),
            epoch: None,
            seq_offset: 0,
            ts_offset: 0,
            last: None,
        };
        assert_eq!(t.number(&packet(100, 0, 9000)), (100, 9000));
        assert_eq!(t.number(&packet(101, 0, 12000)), (101, 12000));
        // A new source numbering from 7 and timing from 555.
        assert_eq!(t.number(&packet(7, 1, 555)), (102, 15000));
        assert_eq!(t.number(&packet(8, 1, 3555)), (103, 18000));
    }
}
