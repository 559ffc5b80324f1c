//! Media-level rows with the str0m peers: ICE and DTLS come up, the server answers
//! consent checks and stops after DELETE, media flows, and keeps flowing across an
//! ICE restart and an address change.

use std::net::SocketAddr;
use std::time::Duration;

use str0m::media::MediaKind;
use wishd::client::media::decode_marker;
use wishd::client::{
    ClientError, HttpResponse, PublisherOptions, ReceivedPacket, WhepViewer, WhipPublisher,
};

use super::{Context, attr_values, m_sections};
use crate::{Level, Mode, Outcome, Report};

/// A peer of either kind, as far as these rows care.
enum Peer {
    Publisher(WhipPublisher),
    Viewer(WhepViewer),
}

impl Peer {
    fn offer(&self) -> &str {
        match self {
            Peer::Publisher(p) => p.offer_sdp(),
            Peer::Viewer(v) => v.offer_sdp(),
        }
    }
    fn answer(&self) -> &str {
        match self {
            Peer::Publisher(p) => p.answer_sdp(),
            Peer::Viewer(v) => v.answer_sdp(),
        }
    }
    async fn wait_connected(&self, t: Duration) -> Result<(), ClientError> {
        match self {
            Peer::Publisher(p) => p.wait_connected(t).await,
            Peer::Viewer(v) => v.wait_connected(t).await,
        }
    }
    async fn ice_restart(&mut self, new_socket: bool) -> Result<HttpResponse, ClientError> {
        match self {
            Peer::Publisher(p) => p.ice_restart(new_socket).await,
            Peer::Viewer(v) => v.ice_restart(new_socket).await,
        }
    }
    async fn delete(self) -> Result<u16, ClientError> {
        match self {
            Peer::Publisher(p) => p.delete().await,
            Peer::Viewer(v) => v.delete().await,
        }
    }
    fn viewer(&self) -> Option<&WhepViewer> {
        match self {
            Peer::Viewer(v) => Some(v),
            Peer::Publisher(_) => None,
        }
    }
}

fn id(mode: Mode, whip: &'static str, whep: &'static str) -> &'static str {
    match mode {
        Mode::Whip => whip,
        Mode::Whep => whep,
    }
}

async fn connect(ctx: &Context<'_>) -> Result<Peer, ClientError> {
    Ok(match ctx.opts.mode {
        Mode::Whip => {
            Peer::Publisher(WhipPublisher::connect(&ctx.opts.url, ctx.publisher_options()).await?)
        }
        Mode::Whep => Peer::Viewer(
            WhepViewer::connect(&ctx.opts.url, ctx.viewer_options(ctx.opts.token.clone())).await?,
        ),
    })
}

/// The server's first UDP candidate address and its ICE credentials, from an answer.
fn server_ice(answer: &str) -> Option<(SocketAddr, String, String)> {
    let addr = attr_values(answer, "candidate").into_iter().find_map(|c| {
        let f: Vec<&str> = c.split_whitespace().collect();
        (f.len() >= 6 && f[2].eq_ignore_ascii_case("udp"))
            .then(|| format!("{}:{}", f[4], f[5]))
            .and_then(|a| {
                a.parse::<SocketAddr>()
                    .ok()
                    .or_else(|| format!("[{}]:{}", f[4], f[5]).parse().ok())
            })
    })?;
    let ufrag = attr_values(answer, "ice-ufrag").first()?.to_string();
    let pwd = attr_values(answer, "ice-pwd").first()?.to_string();
    Some((addr, ufrag, pwd))
}

async fn answers_stun(peer: &Peer, wait: Duration) -> Result<bool, String> {
    let (addr, ufrag, pwd) =
        server_ice(peer.answer()).ok_or("no UDP candidate or credentials in the answer")?;
    let client = attr_values(peer.offer(), "ice-ufrag")
        .first()
        .map(|s| s.to_string())
        .ok_or("no ufrag in our offer")?;
    crate::stun::server_answers(addr, &ufrag, &client, &pwd, wait)
        .await
        .map_err(|e| e.to_string())
}

/// The newest video frame number in `pk`.
fn newest_frame(pk: &[ReceivedPacket]) -> u64 {
    pk.iter()
        .filter(|p| p.kind == MediaKind::Video)
        .filter_map(|p| decode_marker(&p.payload).map(|m| m.frame))
        .max()
        .unwrap_or(0)
}

/// Waits until `v` has a video frame at least `more` newer than what it had.
async fn media_continues(v: &WhepViewer, more: u64, t: Duration) -> Result<String, String> {
    let from = newest_frame(&v.received());
    v.wait_for(t, |pk| newest_frame(pk) >= from + more)
        .await
        .map(|_| {
            format!(
                "video frames went from {from} to {}",
                newest_frame(&v.received())
            )
        })
        .map_err(|e| format!("stuck at frame {from}: {e}"))
}

/// Runs the media rows.
pub async fn run(ctx: &mut Context<'_>, report: &mut Report) {
    let mode = ctx.opts.mode;
    let t = ctx.opts.timeout;
    let connect_req = "ICE and DTLS come up from the answer's candidates alone";
    if ctx.no_source {
        report.push(
            "WHEP-16",
            Level::Must,
            connect_req,
            Outcome::Skip,
            "the stream has no source: give --publish-url",
        );
        return;
    }

    // Session A: consent, then revocation by DELETE.
    let a = match connect(ctx).await {
        Ok(a) => a,
        Err(e) => {
            report.push(
                id(mode, "WHIP-26", "WHEP-16"),
                Level::Must,
                connect_req,
                Outcome::Fail,
                e.to_string(),
            );
            return;
        }
    };
    let up = a.wait_connected(t).await;
    report.push(
        id(mode, "WHIP-26", "WHEP-16"),
        Level::Must,
        connect_req,
        if up.is_ok() {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        match &up {
            Ok(()) => "connected".to_owned(),
            Err(e) => e.to_string(),
        },
    );
    if up.is_err() {
        let _ = a.delete().await;
        return;
    }
    let consent = answers_stun(&a, Duration::from_secs(3)).await;
    report.push(
        id(mode, "WHIP-13", "WHEP-12"),
        Level::Must,
        "the server answers ICE consent checks (STUN) for a live session",
        if consent == Ok(true) {
            Outcome::Pass
        } else {
            Outcome::Fail
        },
        match &consent {
            Ok(true) => "Binding success".to_owned(),
            Ok(false) => "no Binding response in 3 s".to_owned(),
            Err(e) => e.clone(),
        },
    );
    let answer = a.answer().to_owned();
    let offer = a.offer().to_owned();
    let deleted = a.delete().await;
    let revoked = match server_ice(&answer) {
        Some((addr, ufrag, pwd)) => {
            let client = attr_values(&offer, "ice-ufrag")
                .first()
                .map(|s| s.to_string())
                .unwrap_or_default();
            crate::stun::server_answers(addr, &ufrag, &client, &pwd, Duration::from_secs(3))
                .await
                .map(|answered| !answered)
                .map_err(|e| e.to_string())
        }
        None => Err("no candidate in the answer".into()),
    };
    report.push(
        id(mode, "WHIP-12", "WHEP-13"),
        Level::Must,
        "after DELETE the server stops answering STUN (consent revoked)",
        if deleted.as_ref().is_ok_and(|s| *s == 200) && revoked == Ok(true) && consent == Ok(true) {
            Outcome::Pass
        } else if consent != Ok(true) {
            Outcome::Skip
        } else {
            Outcome::Fail
        },
        format!(
            "DELETE → {}; {}",
            deleted
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string()),
            match revoked {
                Ok(true) => "no STUN answer afterwards".to_owned(),
                Ok(false) => "the server still answers STUN".to_owned(),
                Err(e) => e,
            }
        ),
    );

    // Session B: media, restart, address change.
    let mut b = match connect(ctx).await {
        Ok(b) => b,
        Err(e) => {
            report.note(format!("second session failed: {e}"));
            return;
        }
    };
    let _ = b.wait_connected(t).await;
    let watcher = match (mode, &ctx.opts.play_url) {
        (Mode::Whip, Some(play)) => {
            let token = ctx
                .opts
                .play_token
                .clone()
                .or_else(|| ctx.opts.token.clone());
            match WhepViewer::connect(play, ctx.viewer_options(token)).await {
                Ok(v) => Some(v),
                Err(e) => {
                    report.note(format!("viewer at --play-url failed: {e}"));
                    None
                }
            }
        }
        _ => None,
    };
    let viewer = b.viewer().or(watcher.as_ref());
    let flow_req = "audio and video flow over the bundled transport";
    let flowing = match viewer {
        Some(v) => {
            let r = v
                .wait_for(t, |pk| {
                    pk.iter().any(|p| p.kind == MediaKind::Video)
                        && pk.iter().any(|p| p.kind == MediaKind::Audio)
                })
                .await;
            report.push(
                id(mode, "WHIP-25", "WHEP-16"),
                Level::Must,
                flow_req,
                if r.is_ok() {
                    Outcome::Pass
                } else {
                    Outcome::Fail
                },
                match r {
                    Ok(()) => format!("{} packets received", v.received_count()),
                    Err(e) => e.to_string(),
                },
            );
            true
        }
        None => {
            report.push(
                id(mode, "WHIP-25", "WHEP-16"),
                Level::Must,
                flow_req,
                Outcome::Skip,
                "WHIP media is seen by a viewer: give --play-url",
            );
            false
        }
    };
    for (row, new_socket, req) in [
        (
            id(mode, "WHIP-27", "WHEP-17"),
            false,
            "media keeps flowing across an ICE restart (PATCH, If-Match: *)",
        ),
        (
            id(mode, "WHIP-31", "WHEP-17"),
            true,
            "media keeps flowing after a restart from a new client address",
        ),
    ] {
        let r = b.ice_restart(new_socket).await;
        let viewer = b.viewer().or(watcher.as_ref());
        let (outcome, detail) = match (r, viewer) {
            (Err(ClientError::Status { status, .. }), _) if [405, 422, 501].contains(&status) => {
                (Outcome::Skip, format!("restart not supported ({status})"))
            }
            (Err(e), _) => (Outcome::Fail, e.to_string()),
            (Ok(_), Some(v)) if flowing => match media_continues(v, 10, t).await {
                Ok(d) => (Outcome::Pass, d),
                Err(d) => (Outcome::Fail, d),
            },
            (Ok(_), _) => match b.wait_connected(t).await {
                Ok(()) => (Outcome::Pass, "restart answered; media not observed".into()),
                Err(e) => (Outcome::Fail, e.to_string()),
            },
        };
        report.push(row, Level::Must, req, outcome, detail);
    }
    if let Some(w) = watcher {
        let _ = w.delete().await;
    }
    let _ = b.delete().await;
}

/// WHEP with `--publish-url`: a stream with video alone, played by an offer of audio
/// and video as every browser player makes it. The audio m-line must stay in the
/// BUNDLE group, answered `a=inactive`: browsers tag their first m-line and refuse an
/// answer that rejects a bundled m-line with port 0 (RFC 8843 §7.3.3), so a server
/// that rejects it cannot serve a camera without a microphone to any browser. The
/// runner republishes its usual source afterwards.
pub async fn missing_kind(ctx: &mut Context<'_>, report: &mut Report) {
    const REQ: &str =
        "an offered kind the stream lacks stays bundled, answered inactive (never port 0)";
    if ctx.opts.mode != Mode::Whep || ctx.opts.publish_url.is_none() {
        return;
    }
    ctx.stop_source().await;
    let video_alone = PublisherOptions {
        audio: false,
        ..PublisherOptions::default()
    };
    if let Err(e) = ctx.start_source_with(video_alone).await {
        report.push(
            "WHEP-20",
            Level::Should,
            REQ,
            Outcome::Skip,
            format!("could not publish video alone: {e}"),
        );
        let _ = ctx.start_source().await;
        return;
    }
    let (outcome, detail) = match ctx.create().await {
        Ok(s) => {
            let verdict = bundled_inactive_audio(&s.answer);
            ctx.delete(&s).await;
            match verdict {
                Ok(d) => (Outcome::Pass, d),
                Err(d) => (Outcome::Fail, d),
            }
        }
        Err(e) => (Outcome::Fail, e.reason),
    };
    report.push("WHEP-20", Level::Should, REQ, outcome, detail);
    ctx.stop_source().await;
    if let Err(e) = ctx.start_source().await {
        report.note(format!("republishing at --publish-url failed: {e}"));
    }
}

/// The answer to an audio+video offer for a video-only stream: Ok with a summary when
/// the audio m-line is inactive with a port, the video one sends, and the BUNDLE group
/// lists both; Err saying what is wrong.
fn bundled_inactive_audio(answer: &str) -> Result<String, String> {
    let mut seen = Vec::new();
    let mut mids = Vec::new();
    for m in m_sections(answer) {
        let mut words = m[0].trim_start_matches("m=").split(' ');
        let media = words.next().unwrap_or("?");
        let port = words.next().unwrap_or("?");
        let dir = ["sendonly", "sendrecv", "recvonly", "inactive"]
            .into_iter()
            .find(|d| m.iter().any(|l| l.strip_prefix("a=") == Some(*d)))
            .unwrap_or("sendrecv");
        if let Some(mid) = m.iter().find_map(|l| l.strip_prefix("a=mid:")) {
            mids.push(mid.to_owned());
        }
        seen.push(format!("{media} port {port} {dir}"));
    }
    let bundle: Vec<&str> = attr_values(answer, "group")
        .into_iter()
        .find_map(|g| g.strip_prefix("BUNDLE "))
        .map(|g| g.split_ascii_whitespace().collect())
        .unwrap_or_default();
    let summary = format!("{}; BUNDLE {}", seen.join(", "), bundle.join(" "));
    let audio_ok = seen
        .iter()
        .any(|s| s.starts_with("audio ") && !s.contains(" port 0 ") && s.ends_with(" inactive"));
    let video_ok = seen
        .iter()
        .any(|s| s.starts_with("video ") && (s.ends_with(" sendonly") || s.ends_with(" sendrecv")));
    let bundled = mids.len() == 2 && mids.iter().all(|m| bundle.contains(&m.as_str()));
    if audio_ok && video_ok && bundled {
        Ok(summary)
    } else {
        Err(summary)
    }
}
