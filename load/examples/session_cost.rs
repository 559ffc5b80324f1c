//! What one WHEP session costs a str0m server before any media flows: CPU to build
//! the `Rtc` and answer a viewer's offer (the part of POST→201 that is not HTTP), and
//! the memory of the negotiated `Rtc`. Both sides are built the way wishd and the
//! swarm build them (RTP mode, ICE-lite server with one shared DTLS certificate).
//!
//! `cargo run --release -p wishd-load --example session_cost [-- N]` (N ≤ 5000).

use std::time::Instant;

use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, RtcConfig};

fn rss() -> u64 {
    wishd_load::procfs::usage(None).map_or(0, |u| u.rss)
}

fn main() {
    wishd::client::install_crypto_provider();
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000)
        .clamp(1, 5000);
    let viewer = RtcConfig::new()
        .clear_codecs()
        .set_rtp_mode(true)
        .enable_opus(true, false)
        .enable_h264(true);
    let mut offers = Vec::with_capacity(n);
    for i in 0..n {
        let mut rtc = viewer.clone().build(Instant::now());
        let addr = format!("127.3.{}.{}:9", i / 250, 1 + i % 250);
        if let Ok(c) = Candidate::host(addr.parse().expect("address"), "udp") {
            rtc.add_local_candidate(c);
        }
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        if let Some((offer, _)) = api.apply() {
            offers.push(offer);
        }
    }
    // wishd's provider: dimpl with one configuration shared by every session.
    let provider = wishd::media::dtls::provider();
    let Some(cert) = provider.dtls_provider.generate_certificate() else {
        eprintln!("no DTLS certificate");
        return;
    };
    let server = RtcConfig::new()
        .set_crypto_provider(std::sync::Arc::new(provider))
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .set_dtls_cert(cert);
    let count = offers.len();
    // What a POST does with the offer text before str0m builds anything: wishd's own
    // inspection (sdp-types) and str0m's parse of the same text.
    let texts: Vec<String> = offers.iter().map(|o| o.to_sdp_string()).collect();
    let t = Instant::now();
    let ours = texts
        .iter()
        .filter(|o| wishd::sdp::parse_offer(o.as_bytes()).is_ok())
        .count();
    let ours_us = t.elapsed().as_secs_f64() * 1e6 / count.max(1) as f64;
    let t = Instant::now();
    let theirs = texts
        .iter()
        .filter(|o| str0m::change::SdpOffer::from_sdp_string(o).is_ok())
        .count();
    let str0m_us = t.elapsed().as_secs_f64() * 1e6 / count.max(1) as f64;
    let bytes = texts.iter().map(String::len).sum::<usize>() / count.max(1);
    println!(
        "offer text ({bytes} bytes): wishd's inspection {ours_us:.0} µs ({ours} ok), str0m's parse {str0m_us:.0} µs ({theirs} ok)"
    );
    // What str0m reads since wishd keeps only the chosen codecs (`sdp::trim`): the
    // first codec of each m-line and its RTX.
    let trimmed: Vec<String> = texts
        .iter()
        .filter_map(|text| {
            let offer = wishd::sdp::parse_offer(text.as_bytes()).ok()?;
            let keep: Vec<_> = offer
                .media
                .iter()
                .filter_map(|m| {
                    let c = m.codecs.first()?;
                    Some(wishd::sdp::trim::Keep::codec(
                        m.mid.as_deref()?,
                        c.pt,
                        c.rtx_pt,
                    ))
                })
                .collect();
            Some(wishd::sdp::trim::keep_codecs(text, &keep))
        })
        .collect();
    let t = Instant::now();
    let ok = trimmed
        .iter()
        .filter(|o| str0m::change::SdpOffer::from_sdp_string(o).is_ok())
        .count();
    let trimmed_us = t.elapsed().as_secs_f64() * 1e6 / trimmed.len().max(1) as f64;
    let trimmed_bytes = trimmed.iter().map(String::len).sum::<usize>() / trimmed.len().max(1);
    println!(
        "trimmed to one codec per m-line ({trimmed_bytes} bytes): str0m's parse {trimmed_us:.0} µs ({ok} ok)"
    );
    let rss0 = rss();
    let t0 = Instant::now();
    let mut rtcs = Vec::with_capacity(count);
    for offer in offers {
        let mut rtc = server.clone().build(Instant::now());
        if let Ok(c) = Candidate::host("127.0.0.1:5000".parse().expect("address"), "udp") {
            rtc.add_local_candidate(c);
        }
        if rtc.sdp_api().accept_offer(offer).is_ok() {
            rtcs.push(rtc);
        }
    }
    let per_session = t0.elapsed().as_secs_f64() * 1e6 / count.max(1) as f64;
    let kib = rss().saturating_sub(rss0) as f64 / 1024.0 / rtcs.len().max(1) as f64;
    println!(
        "{} sessions: build + accept_offer {per_session:.0} µs each, {kib:.1} KiB each before media",
        rtcs.len()
    );
}
