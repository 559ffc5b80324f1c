//! One viewer session's direct egress: the forwarded RTP it gets, built and protected
//! by wishd instead of str0m's per-viewer send path (BENCHMARKS.md, sixth and seventh
//! sessions). str0m keeps ICE and DTLS; once the session is connected its SRTCP is
//! read here only, and this keeps what a sender owes for each SSRC it sends:
//!
//! - the packets, protected with the session's DTLS-exported keys ([`super::srtp`]);
//! - a resend history of the video, answering the viewer's NACKs for as long as its
//!   [`NackHistory`] window says a resend still helps (the payloads are the `Arc`s
//!   every viewer of the stream shares; an entry costs 32 bytes, and the history is
//!   trimmed to its window every second, so a join burst or a stalled source does not
//!   keep memory);
//! - a sender report per SSRC once a second (RFC 3550 §6.4.1), which the viewer needs
//!   to line audio up with video and which its receiver reports answer;
//! - the round trip and loss those receiver reports give, and the keyframe requests
//!   (PLI, FIR) the viewer sends.
//!
//! Sans-IO: it takes forwards, the viewer's SRTCP and the time, and appends datagrams
//! to a buffer the worker sends; where to send them is the worker's (see its `path`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use str0m::Rtc;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::rtp::Extension;

use super::dtls::{self, ExportedKeys};
use super::egress;
use super::srtp::{self, Srtp, SrtpError};
use crate::core::{Bandwidth, Forward, NACK_HISTORY_PACKETS, NackHistory, ViewerTrack};
use crate::wire::ntp::ntp_time;
use crate::wire::rtcp::{self, SenderReport};
use crate::wire::rtp::OutHeader;
use estimate::Estimation;

/// How often each SSRC's sender report goes out (str0m's default for video; audio
/// gets the same, so a viewer can sync within a second of joining).
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How many times one packet is resent at most, however often it is NACKed.
const MAX_RESENDS: u8 = 2;

/// A viewer is given a keyframe for a gap at most this often while none has been
/// sent since the last one asked (its NACKs repeat until one comes).
const GAP_KEYFRAME_EVERY: Duration = Duration::from_secs(1);

/// Once a keyframe was sent after the last one asked, a new gap behind it may ask
/// again this soon: the keyframe's own frames or the ones after it were lost past
/// repair, and waiting the full second is a second of frozen picture.
const GAP_KEYFRAME_AGAIN: Duration = Duration::from_millis(200);

/// Why a session cannot use the direct path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirectError {
    #[error("DTLS exported no keys")]
    NoKeys,
    #[error("the m-line {0} has no send stream")]
    NoStream(Mid),
    #[error("no track on the m-line {0}")]
    NoTrack(Mid),
    #[error(transparent)]
    Srtp(#[from] SrtpError),
}

/// What one RTCP datagram from the viewer held.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct RtcpSummary {
    /// Packets the viewer NACKed.
    pub(crate) nacks: u64,
    /// Of those, packets resent (appended to the output).
    pub(crate) resent: u64,
    /// The round trip from a report block answering one of our sender reports.
    pub(crate) rtt: Option<Duration>,
    /// The loss fraction the viewer reports for the video (else the first track).
    pub(crate) loss: Option<f32>,
    /// A keyframe request for our video, the last one if several; or one made for
    /// the viewer when it NACKed a gap the history cannot fill (see `gap_keyframe`).
    pub(crate) keyframe: Option<KeyframeRequestKind>,
    /// The viewer NACKed a video packet sent since the last keyframe start that
    /// cannot be resent: the history no longer holds it (its link was down, or the
    /// resends came too late), or it was resent as often as it may be. The viewer's
    /// decoder cannot go past that packet until the next keyframe, and would only ask
    /// for one once its own NACKs give up (up to three seconds with Chromium), so one
    /// is asked for it now. Asks none: a packet from before the last keyframe start
    /// (the decoder starts over there), and a number never sent (the source's own
    /// loss, which its NACKs may yet repair).
    pub(crate) gap_keyframe: bool,
    /// The viewer's feedback just turned its path congested: its layer should be
    /// chosen again now rather than at the next round.
    pub(crate) became_congested: bool,
}

/// One sent video packet, kept for resending. 32 bytes: the sequence number is its
/// low 32 bits (the history's newest keeps all 64) and the send time is in
/// milliseconds since the session's [`DirectEgress::epoch`].
struct Sent {
    seq: u32,
    timestamp: u32,
    at_ms: u32,
    pt: u8,
    marker: bool,
    resends: u8,
    payload: Arc<[u8]>,
}

/// The video sent within the resend window, oldest first.
#[derive(Default)]
struct History {
    sent: VecDeque<Sent>,
    /// The extended sequence number of the newest entry.
    newest: u64,
}

impl History {
    /// Drops what left the window (or past the count bound), then gives spare room
    /// back: a join burst or a keyframe can grow the queue far past what the window
    /// holds afterwards.
    fn trim(&mut self, now_ms: u32, window_ms: u32, shrink: bool) {
        while self.sent.len() >= NACK_HISTORY_PACKETS
            || self
                .sent
                .front()
                .is_some_and(|s| now_ms.wrapping_sub(s.at_ms) > window_ms)
        {
            self.sent.pop_front();
        }
        if shrink && self.sent.capacity() > 4 * self.sent.len().max(16) {
            self.sent.shrink_to(2 * self.sent.len());
        }
    }

    /// Keeps `sent` (numbered `seq`) in number order. A packet older than the newest
    /// is the source's repair of its own loss, forwarded late: it goes where its
    /// number puts it, so that lookups by distance from the newest stay right. A
    /// number already held is not kept twice.
    fn insert(&mut self, seq: u64, sent: Sent) {
        if self.sent.is_empty() || seq > self.newest {
            self.sent.push_back(sent);
            self.newest = seq;
            return;
        }
        let Ok(back) = u32::try_from(self.newest - seq) else {
            return;
        };
        let at = self.sent.partition_point(|s| self.behind(s) > back);
        if self.sent.get(at).is_none_or(|s| self.behind(s) != back) {
            self.sent.insert(at, sent);
        }
    }

    /// How many numbers an entry is behind the newest: entries keep 32 bits, and
    /// these distances fall from front to back, across a 32-bit wrap too.
    fn behind(&self, s: &Sent) -> u32 {
        (self.newest as u32).wrapping_sub(s.seq)
    }

    /// How many numbers a NACKed 16-bit one is behind the newest: the newest sent
    /// with those bits.
    fn nack_behind(&self, seq: u16) -> u32 {
        u32::from((self.newest as u16).wrapping_sub(seq))
    }

    /// Whether a NACKed 16-bit sequence number the history does not hold was sent and
    /// has left it (older than its oldest entry), as opposed to one never sent: a gap
    /// the source left (its loss, which its own NACKs may still fill) or a number the
    /// viewer made up. Returns the extended number of one that left.
    fn left(&self, seq: u16) -> Option<u64> {
        if self.newest == 0 && self.sent.is_empty() {
            return None;
        }
        let back = self.nack_behind(seq);
        let full = self.newest.checked_sub(u64::from(back))?;
        let older = self
            .sent
            .front()
            .is_none_or(|front| back > self.behind(front));
        older.then_some(full)
    }

    /// The entry for a NACKed 16-bit sequence number: the newest sent with those bits.
    fn find(&mut self, seq: u16) -> Option<(u64, &mut Sent)> {
        let back = self.nack_behind(seq);
        let i = self
            .sent
            .binary_search_by(|s| back.cmp(&self.behind(s)))
            .ok()?;
        let full = self.newest.checked_sub(u64::from(back))?;
        self.sent.get_mut(i).map(|s| (full, s))
    }
}

struct Track {
    mid: Mid,
    /// The negotiated id of the mid header extension.
    mid_ext: Option<u8>,
    ssrc: u32,
    /// The RTX stream (SSRC, and the RTX payload type of the track's payload type),
    /// when the viewer negotiated one: bandwidth probes go on it.
    rtx: Option<(u32, u8)>,
    clock_rate: u32,
    packets: u32,
    octets: u32,
    /// The RTP timestamp and capture instant of the last packet, for the reports.
    last: Option<(u32, Instant)>,
    /// Video only.
    history: Option<History>,
    /// The (viewer's) sequence number of the last keyframe start sent: on a congested
    /// path, what was lost before it is not worth resending (the decoder starts over
    /// there, and the resends would only lengthen the queue).
    keyframe_seq: u64,
}

impl Track {
    /// The header of one of this track's packets.
    fn header(&self, marker: bool, pt: u8, seq: u64, timestamp: u32) -> OutHeader<'_> {
        OutHeader {
            marker,
            pt,
            seq,
            timestamp,
            ssrc: self.ssrc,
            mid: self.mid_ext.map(|id| (id, &*self.mid)),
            transport_seq: None,
        }
    }
}

/// The direct egress state of one viewer session.
pub(crate) struct DirectEgress {
    /// Ours, protecting what we send.
    tx: Srtp,
    /// The viewer's, reading its SRTCP.
    rx: Srtp,
    cname: String,
    tracks: Vec<Track>,
    window: Duration,
    next_report: Instant,
    /// What the history's send times count from.
    epoch: Instant,
    scratch: Vec<u8>,
    /// The negotiated id of the transport-wide sequence number extension.
    transport_ext: Option<u8>,
    /// The bandwidth estimate, once the viewer's layer is to be chosen.
    estimation: Option<Box<Estimation>>,
    /// When a keyframe was last asked for this viewer because of an unrepairable gap,
    /// and the newest keyframe start sent by then (see [`GAP_KEYFRAME_AGAIN`]).
    gap_keyframe_at: Option<(Instant, u64)>,
    /// A probe packet's payload (the RTX header's original sequence number, then the
    /// original payload), reused.
    probe_payload: Vec<u8>,
}

impl std::fmt::Debug for DirectEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DirectEgress({} tracks)", self.tracks.len())
    }
}

impl DirectEgress {
    /// The state for a connected viewer session: SSRCs, mid extension and CNAME as
    /// `rtc` negotiated them, contexts from its DTLS export.
    pub(crate) fn new(
        rtc: &mut Rtc,
        keys: &ExportedKeys,
        tracks: &[ViewerTrack],
        now: Instant,
    ) -> Result<Self, DirectError> {
        let (tx, rx) = srtp::contexts(&dtls::provider(), keys)?;
        let mut out = Vec::with_capacity(tracks.len());
        let mut cname = String::new();
        let mut transport_ext = None;
        for t in tracks {
            let (mid_ext, media_cname) = match rtc.media(t.mid) {
                Some(m) => {
                    let exts = m.remote_extmap();
                    transport_ext =
                        transport_ext.or(exts.id_of(Extension::TransportSequenceNumber));
                    (exts.id_of(Extension::RtpMid), m.cname().to_owned())
                }
                None => (None, String::new()),
            };
            if cname.is_empty() {
                cname = media_cname;
            }
            let (ssrc, rtx_ssrc) = rtc
                .direct_api()
                .stream_tx_by_mid(t.mid, None)
                .map(|s| (*s.ssrc(), s.rtx().map(|r| *r)))
                .ok_or(DirectError::NoStream(t.mid))?;
            let rtx_pt = t.pt_map.first().and_then(|&(_, pt)| {
                rtc.codec_config()
                    .params()
                    .iter()
                    .find(|p| *p.pt() == pt)
                    .and_then(|p| p.resend())
                    .map(|r| *r)
            });
            out.push(Track {
                mid: t.mid,
                mid_ext,
                ssrc,
                rtx: rtx_ssrc.zip(rtx_pt),
                clock_rate: t.clock_rate.max(1),
                packets: 0,
                octets: 0,
                last: None,
                history: (t.kind == MediaKind::Video).then(History::default),
                keyframe_seq: 0,
            });
        }
        Ok(DirectEgress {
            tx,
            rx,
            cname,
            tracks: out,
            window: NackHistory::default().window(),
            next_report: now + REPORT_INTERVAL,
            epoch: now,
            scratch: Vec::with_capacity(64),
            transport_ext,
            estimation: None,
            gap_keyframe_at: None,
            probe_payload: Vec::new(),
        })
    }

    #[cfg(test)]
    /// The SSRC the session sends on `mid`, if it has that track.
    pub(crate) fn ssrc(&self, mid: Mid) -> Option<u32> {
        self.tracks.iter().find(|t| t.mid == mid).map(|t| t.ssrc)
    }

    /// The resend window: how long sent video stays available (see [`NackHistory`]).
    pub(crate) fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// Appends the protected datagram of `f` to `out` (cleared first) and keeps video
    /// for resending. A forward for an m-line the session lacks is refused.
    pub(crate) fn send(
        &mut self,
        f: &Forward,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<(), DirectError> {
        out.clear();
        let (now_ms, window_ms) = (self.ms(now), self.window.as_millis() as u32);
        let Some(track) = self.tracks.iter_mut().find(|t| t.mid == f.mid) else {
            return Err(DirectError::NoTrack(f.mid));
        };
        let mut header = track.header(f.marker, f.pt, f.seq, f.timestamp);
        let number = self.estimation.as_deref_mut().map(|e| {
            let n = e.number();
            header.transport_seq = Some((e.ext_id, n));
            n
        });
        egress::protect(&mut self.tx, &header, &f.payload, &mut self.scratch, out)?;
        if let (Some(e), Some(n)) = (self.estimation.as_deref_mut(), number) {
            e.sent(n, out.len(), now, false);
        }
        track.packets = track.packets.wrapping_add(1);
        track.octets = track.octets.wrapping_add(f.payload.len() as u32);
        if f.keyframe {
            track.keyframe_seq = track.keyframe_seq.max(f.seq);
        }
        track.last = Some((f.timestamp, f.wallclock));
        if let (Some(h), true) = (&mut track.history, f.nackable) {
            h.trim(now_ms, window_ms, false);
            h.insert(
                f.seq,
                Sent {
                    seq: f.seq as u32,
                    timestamp: f.timestamp,
                    at_ms: now_ms,
                    pt: f.pt,
                    marker: f.marker,
                    resends: 0,
                    payload: f.payload.clone(),
                },
            );
        }
        Ok(())
    }

    /// Reads one SRTCP datagram from the viewer: resends what it NACKed that is still
    /// in the window (each resend is handed to `emit`) and returns the round trip and
    /// loss its reports give. What does not authenticate yields nothing.
    pub(crate) fn on_rtcp(
        &mut self,
        datagram: &[u8],
        now: Instant,
        mut emit: impl FnMut(&[u8]),
    ) -> RtcpSummary {
        let mut summary = RtcpSummary::default();
        let Ok((plain, _)) = self.rx.unprotect_rtcp(datagram) else {
            return summary;
        };
        if let Some(e) = self.estimation.as_deref_mut() {
            let was = e.congested();
            e.feedback(&plain, now);
            summary.became_congested = !was && e.congested();
        }
        let now_ntp = ntp_time(wall_time(now));
        // Loss is the video's when there is video (what a NACK-less audio gap hides).
        let loss_ssrc = self
            .tracks
            .iter()
            .find(|t| t.history.is_some())
            .or(self.tracks.first())
            .map(|t| t.ssrc);
        for block in rtcp::report_blocks(&plain) {
            if !self.tracks.iter().any(|t| t.ssrc == block.ssrc) {
                continue;
            }
            if let Some(rtt) = block.round_trip(now_ntp) {
                summary.rtt = Some(summary.rtt.map_or(rtt, |r: Duration| r.min(rtt)));
            }
            if Some(block.ssrc) == loss_ssrc {
                summary.loss = Some(f32::from(block.fraction_lost) / 256.0);
            }
        }
        if let (Some(e), Some(rtt)) = (self.estimation.as_deref_mut(), summary.rtt) {
            e.rtt(rtt);
        }
        for (ssrc, kind) in rtcp::keyframe_requests(&plain) {
            if self
                .tracks
                .iter()
                .any(|t| t.ssrc == ssrc && t.history.is_some())
            {
                summary.keyframe = Some(kind);
            }
        }
        let (now_ms, window_ms) = (self.ms(now), self.window.as_millis() as u32);
        let congested = self
            .estimation
            .as_deref()
            .is_some_and(Estimation::congested);
        let mut out = Vec::new();
        let mut stuck = false;
        for (ssrc, seq) in rtcp::nacks(&plain) {
            summary.nacks += 1;
            let Some(track) = self.tracks.iter_mut().find(|t| t.ssrc == ssrc) else {
                continue;
            };
            let before = track.keyframe_seq;
            let Some(history) = track.history.as_mut() else {
                continue;
            };
            let Some((seq, s)) = history.find(seq) else {
                stuck |= history.left(seq).is_some_and(|full| full >= before);
                continue;
            };
            if seq < before && congested {
                continue;
            }
            if now_ms.wrapping_sub(s.at_ms) > window_ms || s.resends >= MAX_RESENDS {
                stuck |= seq >= before;
                continue;
            }
            s.resends += 1;
            let (marker, pt, timestamp) = (s.marker, s.pt, s.timestamp);
            let payload = s.payload.clone();
            let mut header = track.header(marker, pt, seq, timestamp);
            let number = self.estimation.as_deref_mut().map(|e| {
                let n = e.number();
                header.transport_seq = Some((e.ext_id, n));
                n
            });
            out.clear();
            if egress::protect(&mut self.tx, &header, &payload, &mut self.scratch, &mut out).is_ok()
            {
                if let (Some(e), Some(n)) = (self.estimation.as_deref_mut(), number) {
                    e.sent(n, out.len(), now, false);
                }
                summary.resent += 1;
                emit(&out);
            }
        }
        let newest_keyframe = self
            .tracks
            .iter()
            .map(|t| t.keyframe_seq)
            .max()
            .unwrap_or(0);
        if stuck
            && summary.keyframe.is_none()
            && self.gap_keyframe_at.is_none_or(|(t, k)| {
                let since = now.saturating_duration_since(t);
                since >= GAP_KEYFRAME_EVERY || (newest_keyframe > k && since >= GAP_KEYFRAME_AGAIN)
            })
        {
            self.gap_keyframe_at = Some((now, newest_keyframe));
            summary.keyframe = Some(KeyframeRequestKind::Pli);
            summary.gap_keyframe = true;
        }
        summary
    }

    /// Starts estimating the viewer's bandwidth (its layer is to be chosen); nothing
    /// when it negotiated no transport-wide sequence numbers, or already does.
    pub(crate) fn estimate(&mut self, now: Instant) {
        if self.estimation.is_none()
            && let Some(id) = self.transport_ext
        {
            self.estimation = Some(Box::new(Estimation::new(id, now)));
        }
    }

    /// What the viewer's path is estimated to carry (None: not estimated, as for a
    /// player that negotiated no transport-wide feedback).
    pub(crate) fn bandwidth(&mut self) -> Option<Bandwidth> {
        self.estimation.as_deref_mut().map(Estimation::bandwidth)
    }

    /// The estimate in bits per second, if the viewer is estimated.
    pub(crate) fn estimate_bps(&self) -> Option<u64> {
        self.estimation.as_deref().map(Estimation::estimate_bps)
    }

    /// Probes the path up to `target_bps` in all, with RTX copies of the video it
    /// got; false when it cannot (no estimate, no RTX, a probe running).
    pub(crate) fn start_probe(&mut self, target_bps: u64, now: Instant) -> bool {
        let has_rtx = self
            .tracks
            .iter()
            .any(|t| t.rtx.is_some() && t.history.is_some());
        match self.estimation.as_deref_mut() {
            Some(e) if has_rtx => e.start_probe(target_bps, now),
            _ => false,
        }
    }

    /// When the next sender reports or probe packets are due.
    pub(crate) fn poll_timeout(&self) -> Instant {
        let probe = self.estimation.as_deref().and_then(Estimation::timeout);
        probe.map_or(self.next_report, |p| p.min(self.next_report))
    }

    /// Hands `emit` the probe packets and the sender reports due at `now` (one SRTCP
    /// datagram per SSRC that has sent anything).
    pub(crate) fn handle_timeout(&mut self, now: Instant, mut emit: impl FnMut(&[u8])) {
        self.send_probes(now, &mut emit);
        if now < self.next_report {
            return;
        }
        self.next_report = now + REPORT_INTERVAL;
        let (now_ms, window_ms) = (self.ms(now), self.window.as_millis() as u32);
        for h in self.tracks.iter_mut().filter_map(|t| t.history.as_mut()) {
            h.trim(now_ms, window_ms, true);
        }
        let wall = wall_time(now);
        let ntp = ntp_time(wall);
        let mut plain = Vec::with_capacity(64);
        let mut out = Vec::with_capacity(96);
        for t in &self.tracks {
            let Some((ts, at)) = t.last else { continue };
            // The RTP time of `now` on the track's clock, from its last packet.
            let ticks = if now >= at {
                (now.duration_since(at).as_secs_f64() * f64::from(t.clock_rate)) as i64
            } else {
                -((at.duration_since(now).as_secs_f64() * f64::from(t.clock_rate)) as i64)
            };
            let sr = SenderReport {
                ssrc: t.ssrc,
                ntp,
                rtp_time: ts.wrapping_add(ticks as u32),
                packets: t.packets,
                octets: t.octets,
            };
            plain.clear();
            sr.write(&self.cname, &mut plain);
            out.clear();
            if self.tx.protect_rtcp(&plain, &mut out).is_ok() {
                emit(&out);
            }
        }
    }

    /// The probe packets due at `now`: RTX copies of the newest video, going further
    /// back with each (see [`estimate`](self::estimate) for why RTX).
    fn send_probes(&mut self, now: Instant, emit: &mut impl FnMut(&[u8])) {
        let Some(e) = self.estimation.as_deref_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(size) = e.poll_probe(now) {
            let Some(track) = self.tracks.iter().find(|t| {
                t.rtx.is_some() && t.history.as_ref().is_some_and(|h| !h.sent.is_empty())
            }) else {
                continue;
            };
            let (Some((rtx_ssrc, rtx_pt)), Some(h)) = (track.rtx, track.history.as_ref()) else {
                continue;
            };
            // Copies of small packets (a low layer's) are sent until the probe's size is
            // covered, so the probe reaches the rate it was planned for.
            let mut left = size;
            let mut copies = 0;
            while left > 0 && copies < h.sent.len() {
                let back = e.probe_back % h.sent.len();
                e.probe_back += 1;
                copies += 1;
                let Some(s) = h.sent.get(h.sent.len() - 1 - back) else {
                    break;
                };
                self.probe_payload.clear();
                self.probe_payload
                    .extend_from_slice(&(s.seq as u16).to_be_bytes());
                self.probe_payload.extend_from_slice(&s.payload);
                let n = e.number();
                let header = OutHeader {
                    marker: s.marker,
                    pt: rtx_pt,
                    seq: e.rtx_seq,
                    timestamp: s.timestamp,
                    ssrc: rtx_ssrc,
                    mid: track.mid_ext.map(|id| (id, &*track.mid)),
                    transport_seq: Some((e.ext_id, n)),
                };
                e.rtx_seq += 1;
                out.clear();
                if egress::protect(
                    &mut self.tx,
                    &header,
                    &self.probe_payload,
                    &mut self.scratch,
                    &mut out,
                )
                .is_ok()
                {
                    e.sent(n, out.len(), now, true);
                    emit(&out);
                    left = left.saturating_sub(out.len());
                }
            }
        }
    }

    #[cfg(test)]
    /// Packets kept for resending (for tests and memory figures).
    pub(crate) fn history_len(&self) -> usize {
        self.histories().map(VecDeque::len).sum()
    }

    #[cfg(test)]
    /// Room the history holds (for tests and memory figures).
    pub(crate) fn history_capacity(&self) -> usize {
        self.histories().map(VecDeque::capacity).sum()
    }

    #[cfg(test)]
    fn histories(&self) -> impl Iterator<Item = &VecDeque<Sent>> {
        self.tracks
            .iter()
            .filter_map(|t| t.history.as_ref().map(|h| &h.sent))
    }

    /// Milliseconds since [`epoch`](Self::epoch), wrapping after 49 days: entries are
    /// compared by differences, and none lives longer than a second.
    fn ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_millis() as u32
    }
}

/// The wallclock time of `at`, from the current offset between the two clocks.
fn wall_time(at: Instant) -> SystemTime {
    let (now, wall) = (Instant::now(), SystemTime::now());
    if at <= now {
        wall - now.duration_since(at)
    } else {
        wall + at.duration_since(now)
    }
}

mod estimate;
#[cfg(test)]
mod tests;
