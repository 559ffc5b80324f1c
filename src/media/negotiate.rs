//! Sessions from offers: a WHIP or WHEP offer is checked ([`crate::sdp`]), trimmed to
//! the codecs wishd will answer, given to a new str0m `Rtc` built from a template (the
//! DTLS certificate made once), and answered; the stream is granted in the directory
//! and the session handed to a worker. All of it runs on the HTTP task, so a worker's
//! loop never pays for a session's setup.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use str0m::config::DtlsCert;
use str0m::format::CodecConfig;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid, Rid};
use str0m::net::TcpType;
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{Candidate, Rtc, RtcConfig};

use super::worker;
use super::{Created, Media, MediaError, WorkerHandle, dtls};
use crate::auth::Grant;
use crate::core::{SourceTrack, ViewerTrack};
use crate::directory::ViewerLines;
use crate::model::{EndReason, SessionId};
use crate::sdp::{self, ChosenCodec, trim};

impl Media {
    /// Creates a publisher session for `stream` from a WHIP offer; `etag` names its
    /// first ICE session.
    pub(crate) async fn publish(
        &self,
        stream: &str,
        offer_sdp: &str,
        grant: Grant,
        etag: String,
    ) -> Result<Created, MediaError> {
        let offer = sdp::parse_offer(offer_sdp.as_bytes())?;
        let (offer_sdp, layers) = sdp::take_simulcast(offer_sdp, &offer, self.simulcast.enabled);
        let offer = match &offer_sdp {
            // Declined simulcast lines are gone: read the offer str0m will read.
            std::borrow::Cow::Owned(declined) => sdp::parse_offer(declined.as_bytes())?,
            std::borrow::Cow::Borrowed(_) => offer,
        };
        let offer_sdp = &*offer_sdp;
        let chosen = sdp::check_publish_offer(&offer)?;
        // A second publisher is refused before any work; the grant below decides again.
        self.directory.check_publish(stream, Instant::now())?;
        let worker = self.pick_worker();
        let id = SessionId::random();

        // str0m reads only the chosen codecs (see `sdp::trim`); an m-line that sends
        // nothing is answered inactive.
        let used: Vec<&str> = chosen.iter().map(|c| c.mid.as_str()).collect();
        let idle = sdp::idle_lines(&offer, &used);
        let keep: Vec<_> = chosen
            .iter()
            .map(|c| trim::Keep::codec(&c.mid, c.codec.pt, c.codec.rtx_pt))
            .chain(idle.iter().map(|l| trim::Keep::idle(&l.mid, l.codec.pt)))
            .collect();
        let offer_sdp = trim::keep_codecs(offer_sdp, &keep);
        let mut params: Vec<_> = chosen.iter().map(ChosenCodec::payload_params).collect();
        params.extend(idle.iter().map(sdp::IdleLine::payload_params));
        let (rtc, answer, ufrag) = self.negotiate(
            &self.template,
            worker,
            &offer_sdp,
            CodecConfig::new_from_payload_params(params),
            None,
        )?;
        // The stream is granted only to a session that is ready to run, so a publisher
        // that takes it over never leaves it without a source.
        let grant = self.directory.begin_publish(
            stream,
            id,
            worker.index,
            etag.clone(),
            chosen.clone(),
            grant,
        )?;
        let rids: &[String] = layers.as_ref().map_or(&[], |(_, rids)| rids.as_slice());
        grant.shared.stats.set_layers(rids);
        if let Some(old) = &grant.replaced {
            tracing::info!(stream, old = %old.id, new = %id, "a new publisher takes the stream over");
            // Its worker drops it before it could take the new one (same queue).
            let _ = self.end_session(old, EndReason::Replaced).await;
        }
        let tracks = chosen
            .iter()
            .map(|c| {
                let canonical = grant
                    .canonical
                    .iter()
                    .find(|g| g.kind == c.kind)
                    .map(|g| g.codec.pt)
                    .unwrap_or(c.codec.pt);
                worker::PublishedTrack {
                    mid: Mid::from(c.mid.as_str()),
                    pt: c.codec.pt,
                    source: SourceTrack {
                        kind: c.kind,
                        codec: c.family(),
                        pt: canonical,
                        clock_rate: c.codec.clock_rate,
                    },
                    keyframe_request: if c.codec.pli {
                        Some(KeyframeRequestKind::Pli)
                    } else if c.codec.fir {
                        Some(KeyframeRequestKind::Fir)
                    } else {
                        None
                    },
                    rids: match &layers {
                        Some((mid, rids)) if *mid == c.mid => {
                            rids.iter().map(|r| Rid::from(r.as_str())).collect()
                        }
                        _ => Vec::new(),
                    },
                }
            })
            .collect();
        if grant.end_viewers_on != 0 {
            self.broadcast_end(
                grant.shared.name.clone(),
                grant.end_viewers_on,
                EndReason::CodecChanged,
            );
        }
        for viewer in &grant.rejoin {
            self.close_soon(viewer, EndReason::TracksChanged);
        }
        let session = worker::NewSession {
            id,
            rtc,
            ufrag,
            offer: offer_sdp,
            shared: grant.shared,
            role: worker::NewRole::Publisher {
                epoch: grant.epoch,
                tracks,
            },
        };
        self.hand_over(worker, session, id).await?;
        Ok(Created {
            id,
            answer,
            worker: worker.index,
        })
    }

    /// Creates a viewer session of `stream` from a WHEP offer; `etag` names its first
    /// ICE session.
    pub(crate) async fn play(
        &self,
        stream: &str,
        offer_sdp: &str,
        grant: Grant,
        etag: String,
    ) -> Result<Created, MediaError> {
        let inspected = self.offer_inspections.play_offer(offer_sdp)?;
        let how = if inspected.remembered {
            &self.counters.offer_inspections_remembered
        } else {
            &self.counters.offer_inspections_parsed
        };
        how.fetch_add(1, Ordering::Relaxed);
        let offer = &*inspected.offer;
        let offer_sdp = &*sdp::decline_simulcast(offer_sdp);
        let codecs = self.directory.live_codecs(stream)?;
        let plan = sdp::check_play_offer(offer, &codecs)?;
        let worker = self.pick_worker();
        let id = SessionId::random();

        let mut params = Vec::new();
        let mut tracks = Vec::new();
        for t in &plan {
            let Some(source) = codecs.iter().find(|c| c.kind == t.kind) else {
                continue;
            };
            params.push(t.viewer_params(source));
            tracks.push(ViewerTrack {
                kind: t.kind,
                mid: Mid::from(t.mid.as_str()),
                clock_rate: t.clock_rate,
                pt_map: vec![(t.source_pt, t.viewer_pt)],
                first_seq: rand::random::<u16>() & 0x7fff,
                first_timestamp: rand::random(),
            });
        }
        // str0m reads only the codecs the viewer gets (see `sdp::trim`); an m-line of
        // a kind the stream lacks is answered inactive.
        let used: Vec<&str> = plan.iter().map(|t| t.mid.as_str()).collect();
        let idle = sdp::idle_lines(offer, &used);
        params.extend(idle.iter().map(sdp::IdleLine::payload_params));
        let keep: Vec<_> = plan
            .iter()
            .map(|t| trim::Keep::codec(&t.mid, t.viewer_pt, t.viewer_rtx_pt))
            .chain(idle.iter().map(|l| trim::Keep::idle(&l.mid, l.codec.pt)))
            .collect();
        let offer_sdp = trim::keep_codecs(offer_sdp, &keep);
        // The viewer's egress protects with the keys its DTLS exports.
        let keys = dtls::KeySlot::default();
        let (rtc, answer, ufrag) = self.negotiate(
            &self.viewer_template,
            worker,
            &offer_sdp,
            CodecConfig::new_from_payload_params(params),
            Some(&keys),
        )?;
        // Audio and video in one media stream, so the player syncs them.
        let answer = sdp::msid::one_stream(&answer, stream);
        let waiting: Vec<MediaKind> = idle
            .iter()
            .map(|l| l.kind)
            .filter(|k| !codecs.iter().any(|c| c.kind == *k))
            .collect();
        let video = plan
            .iter()
            .find(|t| t.kind == MediaKind::Video)
            .and_then(|t| {
                let index = offer
                    .media
                    .iter()
                    .position(|m| m.mid.as_deref() == Some(t.mid.as_str()))?;
                Some((index, t.mid.clone()))
            });
        let lines = ViewerLines {
            idle_kinds: waiting,
            video,
        };
        let shared =
            self.directory
                .join_viewer(stream, id, worker.index, etag.clone(), grant, lines)?;
        let session = worker::NewSession {
            id,
            rtc,
            ufrag,
            offer: offer_sdp,
            shared,
            role: worker::NewRole::Viewer { tracks, keys },
        };
        self.hand_over(worker, session, id).await?;
        Ok(Created {
            id,
            answer,
            worker: worker.index,
        })
    }

    /// Builds an `Rtc` for one offer on `worker`: candidates first, then the answer.
    /// str0m is guarded against panics: a malformed offer must not take the server down.
    fn negotiate(
        &self,
        template: &RtcConfig,
        worker: &WorkerHandle,
        offer_sdp: &str,
        codecs: CodecConfig,
        keys: Option<&dtls::KeySlot>,
    ) -> Result<(Rtc, String, String), MediaError> {
        let sdp::template::TemplateOffer { offer, own, copied } =
            self.offer_templates.offer(offer_sdp)?;
        let how = if copied {
            &self.counters.offer_templates_copied
        } else {
            &self.counters.offer_templates_parsed
        };
        how.fetch_add(1, Ordering::Relaxed);
        let mut cfg = template.clone();
        *cfg.codec_config() = codecs;
        let candidates = worker.candidates.clone();
        let tcp_port = worker.tcp_port;
        let result = std::panic::catch_unwind(AssertUnwindSafe(move || {
            let mut rtc = match keys {
                Some(slot) => dtls::with_key_slot(slot, || cfg.build(Instant::now())),
                None => cfg.build(Instant::now()),
            };
            for addr in &candidates {
                if let Ok(c) = Candidate::host(*addr, "udp") {
                    rtc.add_local_candidate(c);
                }
            }
            // ICE-TCP (RFC 6544): passive host candidates on the same addresses, below
            // every UDP one in priority (TCP's type preference is lower).
            if let Some(port) = tcp_port {
                for addr in &candidates {
                    let at = SocketAddr::new(addr.ip(), port);
                    if let Ok(c) = Candidate::builder()
                        .tcp()
                        .host(at)
                        .tcptype(TcpType::Passive)
                        .build()
                    {
                        rtc.add_local_candidate(c);
                    }
                }
            }
            own.apply_before(&mut rtc);
            let answer = rtc
                .sdp_api()
                .accept_offer(offer)
                .map_err(|e| MediaError::Negotiation(e.to_string()))?;
            own.apply_after(&mut rtc);
            let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
            Ok((rtc, answer.to_sdp_string(), ufrag))
        }));
        match result {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("str0m panicked while negotiating an offer; refused");
                Err(MediaError::Negotiation(
                    "the offer could not be negotiated".into(),
                ))
            }
        }
    }
}

/// The RTP header extensions a viewer's answer accepts: the mid (BUNDLE
/// demultiplexing before the SSRCs are known) and transport-wide sequence numbers,
/// which the direct egress writes, and whose feedback it reads, only for viewers of a
/// stream with simulcast layers to choose from (see `media::direct::estimate`).
///
/// Forwarded packets carry no audio level or orientation values (the source's header
/// extensions are not copied), so those are not offered, nor abs-send-time (the
/// estimate is send-side). Publishers keep str0m's full set: their transport-cc
/// feedback drives the sender's bandwidth estimate.
pub(super) fn viewer_extensions() -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    exts.set(3, Extension::TransportSequenceNumber);
    exts.set(4, Extension::RtpMid);
    exts
}

/// The configuration every server session starts from, with a new DTLS certificate
/// and `prepared_dtls` DTLS sessions of it made ahead.
pub(super) fn rtc_template(prepared_dtls: usize) -> std::io::Result<RtcConfig> {
    let provider = dtls::provider();
    let cert: DtlsCert = provider
        .dtls_provider
        .generate_certificate()
        .ok_or_else(|| {
            std::io::Error::other("the crypto provider could not make a DTLS certificate")
        })?;
    dtls::prepare_server_sessions(&cert, prepared_dtls)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(RtcConfig::new()
        .set_crypto_provider(Arc::new(provider))
        // Once a second: RTT, loss and NACK counts for the API and /metrics.
        .set_stats_interval(Some(Duration::from_secs(1)))
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .set_dtls_cert(cert))
}
