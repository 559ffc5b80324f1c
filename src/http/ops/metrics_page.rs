//! The `/metrics` page: every counter, gauge and histogram of the server in the
//! Prometheus text format (0.0.4), written with [`crate::metrics::Exposition`].

use std::sync::atomic::{AtomicU64, Ordering};

use crate::directory::{SourceView, StreamView};
use crate::ingest::{IngestCounters, RtpIngest};
use crate::media::dtls::SessionStarts;
use crate::media::{MediaCounters, WorkerGauges};
use crate::metrics::{Exposition, HttpMetrics, render_http, render_sessions};

/// Renders each media worker's load and forward hold.
fn render_workers(e: &mut Exposition, w: &WorkerGauges) {
    let n = w.count.load(Ordering::Relaxed);
    let gauges: [(&str, &str, &[AtomicU64], f64); 2] = [
        (
            "wishd_worker_busy_ratio",
            "Share of the time a media worker was busy (not waiting for work), smoothed over about a second.",
            &w.load_ppm,
            1e6,
        ),
        (
            "wishd_forward_hold_seconds",
            "How long a media worker holds forwards to send each viewer's as one run (forward_hold; with \"auto\" it follows the worker's load).",
            &w.hold_ns,
            1e9,
        ),
    ];
    for (name, help, values, per) in gauges {
        e.family(name, "gauge", help);
        for (i, v) in values.iter().take(n).enumerate() {
            let value = v.load(Ordering::Relaxed) as f64 / per;
            e.sample(name, &format!("worker=\"{i}\""), value);
        }
    }
}

/// The whole `/metrics` page.
pub(crate) fn render(
    c: &MediaCounters,
    dtls: SessionStarts,
    r: &crate::record::RecordCounters,
    streams: &[StreamView],
    ingests: &[RtpIngest],
    http: &HttpMetrics,
    cluster: Option<&crate::cluster::Cluster>,
) -> String {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut e = Exposition::new();
    render_sessions(&mut e, &c.session_metrics);
    render_workers(&mut e, &c.workers);
    e.family(
        "wishd_streams",
        "gauge",
        "Streams known, by source kind and state.",
    );
    let mut by = [0u64; 4];
    for s in streams {
        let i = match s.source {
            SourceView::WhipLive(_) => 0,
            SourceView::WhipWaiting => 1,
            SourceView::Rtp => {
                let online = ingests
                    .iter()
                    .find(|i| i.stream == s.shared.name)
                    .is_some_and(|i| i.counters.online.load(Ordering::Relaxed));
                if online { 2 } else { 3 }
            }
        };
        by[i] += 1;
    }
    for (i, (kind, state)) in [
        ("whip", "live"),
        ("whip", "waiting"),
        ("rtp", "live"),
        ("rtp", "offline"),
    ]
    .iter()
    .enumerate()
    {
        e.sample(
            "wishd_streams",
            &format!("source=\"{kind}\",state=\"{state}\""),
            by[i],
        );
    }
    e.single(
        "wishd_rtp_packets_in_total",
        "counter",
        "RTP packets taken in from sources (WHIP publishers and RTP ingests).",
        load(&c.source_packets),
    );
    e.single(
        "wishd_rtp_bytes_in_total",
        "counter",
        "RTP payload bytes taken in from sources.",
        load(&c.source_bytes),
    );
    e.single(
        "wishd_rtp_packets_out_total",
        "counter",
        "RTP packets written to viewers (one per viewer).",
        load(&c.forwarded_packets),
    );
    e.single(
        "wishd_rtp_bytes_out_total",
        "counter",
        "RTP payload bytes written to viewers.",
        load(&c.forwarded_bytes),
    );
    e.single(
        "wishd_udp_bytes_in_total",
        "counter",
        "UDP bytes received from WebRTC peers (SRTP, RTCP, STUN, DTLS).",
        load(&c.udp_bytes_in),
    );
    e.single(
        "wishd_udp_bytes_out_total",
        "counter",
        "UDP bytes sent to WebRTC peers.",
        load(&c.udp_bytes_out),
    );
    e.single(
        "wishd_udp_datagrams_out_total",
        "counter",
        "UDP datagrams sent to WebRTC peers.",
        load(&c.udp_datagrams_out),
    );
    e.single(
        "wishd_udp_send_calls_total",
        "counter",
        "System calls that sent them (sendmmsg and GSO batch datagrams: datagrams per call is the batching factor).",
        load(&c.udp_send_calls),
    );
    e.family(
        "wishd_dtls_sessions_total",
        "counter",
        "DTLS handshakes started, by where their session came from: ready (made ahead, \
         prepared_dtls) or made (on the request: none was ready, or the offer made wishd \
         the DTLS client).",
    );
    for (how, n) in [("ready", dtls.from_ready), ("made", dtls.made)] {
        e.sample("wishd_dtls_sessions_total", &format!("how=\"{how}\""), n);
    }
    e.single(
        "wishd_dtls_ready",
        "gauge",
        "DTLS sessions made ahead and ready for the next offers (prepared_dtls).",
        dtls.ready_now as u64,
    );
    e.family(
        "wishd_offer_templates_total",
        "counter",
        "Offers by how str0m got them: parsed, or copied from a template parsed for an \
         earlier offer that differed only in credentials, fingerprint and candidates.",
    );
    for (how, n) in [
        ("parsed", load(&c.offer_templates_parsed)),
        ("copied", load(&c.offer_templates_copied)),
    ] {
        e.sample("wishd_offer_templates_total", &format!("how=\"{how}\""), n);
    }
    e.family(
        "wishd_offer_inspections_total",
        "counter",
        "Viewers' offers by how wishd's inspection read them: parsed, or remembered from \
         an earlier offer of the same template whose differing lines read alike.",
    );
    for (how, n) in [
        ("parsed", load(&c.offer_inspections_parsed)),
        ("remembered", load(&c.offer_inspections_remembered)),
    ] {
        e.sample(
            "wishd_offer_inspections_total",
            &format!("how=\"{how}\""),
            n,
        );
    }
    e.family(
        "wishd_dropped_packets_total",
        "counter",
        "Packets dropped, by reason.",
    );
    let sum = |f: fn(&IngestCounters) -> &AtomicU64| -> u64 {
        ingests.iter().map(|i| load(f(&i.counters))).sum()
    };
    let drops: [(&str, u64); 14] = [
        ("worker_queue_full", load(&c.cross_worker_drops)),
        ("worker_queue_stale", load(&c.stale_source_packets)),
        ("unroutable_datagram", load(&c.unroutable_datagrams)),
        ("waiting_for_keyframe", load(&c.dropped_waiting_keyframe)),
        ("unmapped_payload_type", load(&c.dropped_no_pt)),
        ("too_old", load(&c.dropped_too_old)),
        ("rtp_other_sender", sum(|i| &i.dropped_sender)),
        ("rtp_malformed", sum(|i| &i.dropped_malformed)),
        ("rtp_oversized", sum(|i| &i.dropped_oversized)),
        ("rtp_duplicate", sum(|i| &i.dropped_duplicate)),
        ("rtp_late", sum(|i| &i.dropped_late)),
        ("rtp_unknown_payload_type", sum(|i| &i.dropped_unknown_pt)),
        ("session_panic", load(&c.session_panics)),
        ("ice_tcp_queue_full", load(&c.ice_tcp.queue_full)),
    ];
    for (reason, n) in drops {
        e.sample(
            "wishd_dropped_packets_total",
            &format!("reason=\"{reason}\""),
            n,
        );
    }
    e.family(
        "wishd_ice_tcp_connections_total",
        "counter",
        "ICE-TCP connections: accepted, refused (over ice_tcp.max_connections), and \
         closed by the peer, for silence or a partial frame (idle), for a frame no WebRTC \
         peer sends (bad_frame) or because the peer took nothing (stalled).",
    );
    let t = &c.ice_tcp;
    for (event, n) in [
        ("accepted", load(&t.accepted)),
        ("refused", load(&t.refused)),
        ("closed", load(&t.closed)),
        ("idle", load(&t.idle)),
        ("bad_frame", load(&t.bad_frame)),
        ("stalled", load(&t.stalled)),
    ] {
        e.sample(
            "wishd_ice_tcp_connections_total",
            &format!("event=\"{event}\""),
            n,
        );
    }
    e.family(
        "wishd_recordings",
        "gauge",
        "Recordings running now ([[record]]).",
    );
    e.sample("wishd_recordings", "", load(&r.active));
    e.family(
        "wishd_recording_events_total",
        "counter",
        "Recording files opened, recordings stopped because they could not write, and \
         packets their queues refused.",
    );
    for (event, n) in [
        ("file_opened", load(&r.files)),
        ("failed", load(&r.failed)),
        ("packet_dropped", load(&r.dropped)),
    ] {
        e.sample(
            "wishd_recording_events_total",
            &format!("event=\"{event}\""),
            n,
        );
    }
    e.family(
        "wishd_keyframe_requests_total",
        "counter",
        "Keyframe requests: sent to publishers (pli, fir), received from viewers, \
         coalesced into one already sent, held while the source is silent, viewers \
         started from the keyframe cache, asked by a worker that dropped stale video, and \
         asked of a publisher whose video came back after an outage, and asked for a \
         viewer that NACKed a gap nothing could fill.",
    );
    for (what, n) in [
        ("pli_sent", load(&c.pli_sent)),
        ("fir_sent", load(&c.fir_sent)),
        ("received", load(&c.keyframe_requests_received)),
        ("coalesced", load(&c.keyframe_requests_coalesced)),
        ("held_while_silent", load(&c.keyframe_requests_held)),
        ("served_from_cache", load(&c.keyframe_cache_starts)),
        ("after_stale_drops", load(&c.keyframes_asked_after_drops)),
        ("after_outage", load(&c.keyframes_asked_after_outage)),
        ("for_viewer_gap", load(&c.keyframes_for_viewer_gaps)),
    ] {
        e.sample(
            "wishd_keyframe_requests_total",
            &format!("type=\"{what}\""),
            n,
        );
    }
    e.family(
        "wishd_layer_switches_total",
        "counter",
        "Viewers moved to a better (up) or lesser (down) simulcast layer, by their \
         bandwidth estimate or their player's choice.",
    );
    for (direction, n) in [
        ("up", load(&c.layer_switches_up)),
        ("down", load(&c.layer_switches_down)),
    ] {
        e.sample(
            "wishd_layer_switches_total",
            &format!("direction=\"{direction}\""),
            n,
        );
    }
    e.family(
        "wishd_bandwidth_probes_total",
        "counter",
        "Probes of a viewer's path toward the next simulcast layer.",
    );
    e.sample(
        "wishd_bandwidth_probes_total",
        "",
        load(&c.bandwidth_probes),
    );
    e.family(
        "wishd_nacks_total",
        "counter",
        "NACKs received from viewers (answered from the send buffer) and sent to publishers.",
    );
    e.sample(
        "wishd_nacks_total",
        "direction=\"received\"",
        load(&c.nacks_received),
    );
    e.sample(
        "wishd_nacks_total",
        "direction=\"sent\"",
        load(&c.nacks_sent),
    );
    e.single(
        "wishd_packets_resent_total",
        "counter",
        "Packets resent to viewers answering their NACKs (direct egress path).",
        load(&c.packets_resent),
    );
    e.single(
        "wishd_rtp_ssrc_changes_total",
        "counter",
        "SSRC changes of RTP ingest sources (camera restarts).",
        sum(|i| &i.ssrc_changes),
    );
    e.histogram(
        "wishd_forward_latency_seconds",
        "Source packet arrival at the worker to the hand-over to the socket for the \
         worker's last viewer of it.",
        &c.histograms.forward_latency,
    );
    e.histogram(
        "wishd_session_setup_seconds",
        "WHIP and WHEP POSTs answered 201: request read to answer ready (token check, \
         offer checks, the session's negotiation and its hand-over to a worker).",
        &c.histograms.session_setup,
    );
    e.histogram(
        "wishd_rtt_seconds",
        "Round-trip times of sessions, sampled once a second per session.",
        &c.histograms.rtt,
    );
    e.histogram(
        "wishd_loss_ratio",
        "Packet loss fractions of sessions, sampled once a second per session.",
        &c.histograms.loss,
    );
    render_http(&mut e, http);
    if let Some(cluster) = cluster {
        cluster.render_metrics(&mut e);
    }
    e.finish()
}
