//! ICE restart of a client peer over WHIP/WHEP PATCH (RFC 9725 §4.3.3).
//!
//! 1. [`prepare`] asks str0m for new local credentials (`SdpApi::ice_restart`) and,
//!    when the peer moves to a new local socket (a new address, as after a network
//!    change), binds it. It returns the `application/trickle-ice-sdpfrag` body: the
//!    first m-line and mid, the new ufrag/pwd and the candidates.
//! 2. The handle PATCHes it to the session with `If-Match: *` and gets a 200 with the
//!    server's new credentials and candidates, and a new ETag.
//! 3. [`apply`] turns that fragment into an SDP answer (the session's answer with the
//!    credentials and candidates replaced) for str0m's pending offer, then switches to
//!    the new socket if there is one. str0m then runs ICE again with the new
//!    credentials while DTLS and SRTP carry on.

use std::net::SocketAddr;

use str0m::Candidate;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::peer::Driver;
use super::{ClientError, HttpResponse, http_request_patient};
use crate::sdp::frag::parse_fragment;

/// One step of a restart, run by the peer's task (which owns the `Rtc` and socket).
pub(crate) enum RestartStep {
    /// New credentials (and socket); replies with the fragment to PATCH.
    Prepare {
        /// Move to a new local socket.
        new_socket: bool,
    },
    /// The server's 200 fragment; replies with the local address in use.
    Apply(String),
    /// The PATCH failed: forget the pending restart.
    Abandon,
}

impl RestartStep {
    /// Pairs the step with where its result goes.
    pub(crate) fn with_reply(
        self,
        reply: oneshot::Sender<Result<String, ClientError>>,
    ) -> RestartCommand {
        RestartCommand { step: self, reply }
    }
}

/// A [`RestartStep`] sent to a peer's task.
pub(crate) struct RestartCommand {
    step: RestartStep,
    reply: oneshot::Sender<Result<String, ClientError>>,
}

impl RestartCommand {
    /// Runs the step against the task's driver and pending restart; the caller drains.
    pub(crate) async fn run(self, driver: &mut Driver, pending: &mut Option<PendingRestart>) {
        let result = match self.step {
            RestartStep::Prepare { new_socket } => match prepare(driver, new_socket).await {
                Ok((frag, p)) => {
                    *pending = Some(p);
                    Ok(frag)
                }
                Err(e) => Err(e),
            },
            RestartStep::Apply(frag) => match pending.take() {
                Some(p) => apply(driver, p, &frag).map(|a| a.to_string()),
                None => Err(ClientError::Sdp("no ICE restart is pending".into())),
            },
            RestartStep::Abandon => {
                *pending = None;
                Ok(String::new())
            }
        };
        let _ = self.reply.send(result);
    }
}

/// A restart whose offer went out and whose answer has not come back.
pub(crate) struct PendingRestart {
    pending: SdpPendingOffer,
    next_socket: Option<(UdpSocket, SocketAddr)>,
}

/// Starts a restart: new credentials, maybe a new socket. Returns the fragment to PATCH.
pub(crate) async fn prepare(
    driver: &mut Driver,
    new_socket: bool,
) -> Result<(String, PendingRestart), ClientError> {
    let next_socket = if new_socket {
        let s = UdpSocket::bind(SocketAddr::new(driver.local.ip(), 0)).await?;
        let a = s.local_addr()?;
        Some((s, a))
    } else {
        None
    };
    let mut api = driver.rtc.sdp_api();
    let creds = api.ice_restart(next_socket.is_none());
    let (offer, pending) = api
        .apply()
        .ok_or_else(|| ClientError::Sdp("ICE restart made no offer".into()))?;
    let offer = offer.to_sdp_string();
    let m_line = offer
        .lines()
        .find(|l| l.starts_with("m="))
        .ok_or_else(|| ClientError::Sdp("offer without m-line".into()))?;
    let mid = offer
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .ok_or_else(|| ClientError::Sdp("offer without a=mid".into()))?;
    let mut frag = format!(
        "a=ice-options:trickle ice2\r\n{m_line}\r\na=mid:{mid}\r\n\
         a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
        creds.ufrag, creds.pass
    );
    match &next_socket {
        Some((_, addr)) => {
            let c = Candidate::host(*addr, "udp")
                .map_err(|e| ClientError::Rtc(format!("host candidate {addr}: {e}")))?;
            frag.push_str(&format!("a={}\r\n", c.to_sdp_string()));
        }
        None => {
            for c in offer.lines().filter(|l| l.starts_with("a=candidate:")) {
                frag.push_str(c);
                frag.push_str("\r\n");
            }
        }
    }
    frag.push_str("a=end-of-candidates\r\n");
    Ok((
        frag,
        PendingRestart {
            pending,
            next_socket,
        },
    ))
}

/// Applies the server's answer fragment; switches sockets if the restart moved.
/// Returns the local address in use afterwards.
pub(crate) fn apply(
    driver: &mut Driver,
    restart: PendingRestart,
    answer_frag: &str,
) -> Result<SocketAddr, ClientError> {
    let frag = parse_fragment(answer_frag.as_bytes())
        .map_err(|e| ClientError::Sdp(format!("restart answer: {e}")))?;
    let (Some(ufrag), Some(pwd)) = (&frag.ufrag, &frag.pwd) else {
        return Err(ClientError::Sdp(
            "restart answer lacks ice-ufrag/ice-pwd".into(),
        ));
    };
    let sdp = answer_with(&driver.remote_sdp, ufrag, pwd, &frag.candidates);
    let answer = SdpAnswer::from_sdp_string(&sdp)
        .map_err(|e| ClientError::Sdp(format!("restart answer: {e}")))?;
    driver
        .rtc
        .sdp_api()
        .accept_answer(restart.pending, answer)
        .map_err(|e| ClientError::Sdp(format!("restart answer refused: {e}")))?;
    if let Some((socket, addr)) = restart.next_socket {
        driver.socket = socket;
        driver.local = addr;
        let c = Candidate::host(addr, "udp")
            .map_err(|e| ClientError::Rtc(format!("host candidate {addr}: {e}")))?;
        if driver.rtc.add_local_candidate(c).is_none() {
            return Err(ClientError::Rtc(format!("candidate {addr} refused")));
        }
    }
    driver.remote_sdp = sdp;
    Ok(driver.local)
}

/// The session's answer with new ICE credentials and the given candidates (in the
/// first m-section, after its `a=mid`), old candidates dropped.
fn answer_with(answer: &str, ufrag: &str, pwd: &str, candidates: &[String]) -> String {
    let mut out = String::with_capacity(answer.len());
    let mut placed = false;
    for line in answer.lines().map(str::trim_end) {
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        if line.starts_with("a=ice-ufrag:") {
            out.push_str(&format!("a=ice-ufrag:{ufrag}\r\n"));
            continue;
        }
        if line.starts_with("a=ice-pwd:") {
            out.push_str(&format!("a=ice-pwd:{pwd}\r\n"));
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
        if !placed && line.starts_with("a=mid:") {
            placed = true;
            for c in candidates {
                out.push_str(&format!("a={c}\r\n"));
            }
            out.push_str("a=end-of-candidates\r\n");
        }
    }
    out
}

/// The handle side of a restart, shared by the publisher and the viewer: asks the
/// peer's task for a fragment, PATCHes it, applies the 200 and keeps the new local
/// address and ETag. `send` hands a step to the task (`Command::Restart`).
pub(crate) async fn restart_session(
    send: impl Fn(RestartCommand) -> bool,
    location: &str,
    token: Option<&str>,
    new_socket: bool,
    local_addr: &mut SocketAddr,
    etag: &mut Option<String>,
) -> Result<HttpResponse, ClientError> {
    let step = |step: RestartStep| {
        let (reply, rx) = oneshot::channel();
        let sent = send(step.with_reply(reply));
        async move {
            if !sent {
                return Err(ClientError::Closed("peer task ended".into()));
            }
            rx.await
                .map_err(|_| ClientError::Closed("peer task ended".into()))?
        }
    };
    let frag = step(RestartStep::Prepare { new_socket }).await?;
    let resp = match patch(location, token, frag).await {
        Ok(r) => r,
        Err(e) => {
            let _ = step(RestartStep::Abandon).await;
            return Err(e);
        }
    };
    let local = step(RestartStep::Apply(resp.text())).await?;
    if let Ok(addr) = local.parse() {
        *local_addr = addr;
    }
    if let Some(tag) = resp.header("etag") {
        *etag = Some(tag.to_owned());
    }
    Ok(resp)
}

/// PATCHes a restart fragment with `If-Match: *`; a 200 is returned, anything else
/// is [`ClientError::Status`].
pub(crate) async fn patch(
    location: &str,
    token: Option<&str>,
    frag: String,
) -> Result<HttpResponse, ClientError> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("Content-Type", "application/trickle-ice-sdpfrag"),
        ("If-Match", "*"),
    ];
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    let resp = http_request_patient("PATCH", location, &headers, frag.into_bytes()).await?;
    if resp.status != 200 {
        return Err(ClientError::Status {
            status: resp.status,
            body: resp.text(),
        });
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_gets_new_credentials_and_only_the_new_candidates() {
        let answer = "v=0\r\na=ice-lite\r\nm=audio 9 X 111\r\na=mid:0\r\na=ice-ufrag:old\r\n\
a=ice-pwd:oldpwd\r\na=candidate:1 1 udp 1 10.0.0.1 5 typ host\r\na=end-of-candidates\r\n\
m=video 9 X 96\r\na=mid:1\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\n";
        let new = answer_with(
            answer,
            "nu",
            "np",
            &["candidate:2 1 udp 1 10.0.0.2 6 typ host".into()],
        );
        assert!(!new.contains("old"), "{new}");
        assert_eq!(new.matches("a=ice-ufrag:nu\r\n").count(), 2);
        assert_eq!(new.matches("a=candidate:").count(), 1);
        assert!(new.contains("a=mid:0\r\na=candidate:2 1 udp 1 10.0.0.2 6 typ host\r\n"));
        assert_eq!(new.matches("a=end-of-candidates").count(), 1);
    }
}
