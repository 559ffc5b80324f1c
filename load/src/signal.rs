//! WHIP/WHEP signalling: POST an offer, get a 201 with the answer and `Location` (or,
//! from a WHEP server that counter-offers, a 406 with its own offer, answered by
//! PATCH); DELETE the session at the end. Only the standard endpoints, so any server
//! works.

use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::{Output, Rtc};
use wishd::client::{HttpResponse, http_request, resolve_url};

/// What went wrong while setting up a peer.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The server answered with another status than 201.
    #[error("status {status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The body, trimmed.
        body: String,
    },
    /// The answer could not be applied.
    #[error("SDP: {0}")]
    Sdp(String),
    /// str0m refused something.
    #[error("rtc: {0}")]
    Rtc(String),
    /// Local socket trouble.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// A 201 (or a WHEP counter-offer) and what came with it.
pub struct Signalled {
    /// The absolute session URL.
    pub location: String,
    /// The SDP answer, not yet applied; the server's offer when `counter_offer`.
    pub answer: String,
    /// The server refused the offer and sent its own (406 with `application/sdp`,
    /// draft-ietf-wish-whep §4.3.2): the client answers it with a PATCH.
    pub counter_offer: bool,
    /// The session's `ETag`, for `If-Match` on a PATCH.
    pub etag: Option<String>,
    /// POST sent → response read.
    pub post_time: Duration,
    /// When the POST was sent.
    pub sent_at: Instant,
}

/// POSTs `offer` to `url`: the HTTP exchange alone. The answer is applied apart
/// ([`apply_answer`]) so that a burst of POSTs in one runtime is not timed behind
/// each other's SDP work.
pub async fn post(offer: String, url: &str, token: Option<&str>) -> Result<Signalled, SetupError> {
    let start = Instant::now();
    let resp = request("POST", url, token, Some(offer)).await?;
    let post_time = start.elapsed();
    let counter_offer = resp.status == 406
        && resp
            .header("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/sdp"));
    if resp.status != 201 && !counter_offer {
        return Err(SetupError::Status {
            status: resp.status,
            body: resp.text().trim().chars().take(200).collect(),
        });
    }
    let location = resp
        .header("location")
        .map(|l| resolve_url(url, l))
        .ok_or_else(|| SetupError::Http(format!("{} without Location", resp.status)))?;
    Ok(Signalled {
        location,
        etag: resp.header("etag").map(str::to_owned),
        answer: resp.text(),
        counter_offer,
        post_time,
        sent_at: start,
    })
}

/// Applies a server's SDP answer to the peer that made the offer.
pub fn apply_answer(
    rtc: &mut Rtc,
    pending: SdpPendingOffer,
    answer: &str,
) -> Result<(), SetupError> {
    let answer = SdpAnswer::from_sdp_string(answer)
        .map_err(|e| SetupError::Sdp(format!("unparseable answer: {e}")))?;
    rtc.sdp_api()
        .accept_answer(pending, answer)
        .map_err(|e| SetupError::Sdp(format!("answer refused: {e}")))?;
    drain_offline(rtc)
}

/// POSTs `offer` to `url` and applies the answer to `rtc`. A session whose answer
/// is refused here is DELETEd, so that the server does not keep it until it times out.
pub async fn post_offer(
    rtc: &mut Rtc,
    pending: SdpPendingOffer,
    offer: String,
    url: &str,
    token: Option<&str>,
) -> Result<Signalled, SetupError> {
    let sig = post(offer, url, token).await?;
    if sig.counter_offer {
        let _ = delete(&sig.location, token).await;
        return Err(SetupError::Status {
            status: 406,
            body: "a counter-offer, which only WHEP has".into(),
        });
    }
    if let Err(e) = apply_answer(rtc, pending, &sig.answer) {
        let _ = delete(&sig.location, token).await;
        return Err(e);
    }
    Ok(sig)
}

/// Answers a WHEP counter-offer: PATCH of the session with the answer
/// (`application/sdp`); the server confirms with 204 (any 2xx is taken).
pub async fn patch_answer(
    location: &str,
    answer: String,
    token: Option<&str>,
) -> Result<(), SetupError> {
    let resp = request("PATCH", location, token, Some(answer)).await?;
    if !(200..300).contains(&resp.status) {
        return Err(SetupError::Status {
            status: resp.status,
            body: format!(
                "PATCH of the answer to a counter-offer: {}",
                resp.text().trim().chars().take(200).collect::<String>()
            ),
        });
    }
    Ok(())
}

/// PATCHes a session with an `application/trickle-ice-sdpfrag` body (trickle ICE,
/// RFC 9725 §4.3), `If-Match` its `etag` (or `*`); returns the status.
pub async fn patch_fragment(
    location: &str,
    etag: Option<&str>,
    fragment: &str,
    token: Option<&str>,
) -> Result<u16, SetupError> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("Content-Type", "application/trickle-ice-sdpfrag"),
        ("If-Match", etag.unwrap_or("*")),
    ];
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    http_request("PATCH", location, &headers, fragment.as_bytes().to_vec())
        .await
        .map(|r| r.status)
        .map_err(|e| SetupError::Http(e.to_string()))
}

/// DELETEs a session; returns the status.
pub async fn delete(location: &str, token: Option<&str>) -> Result<u16, SetupError> {
    Ok(request("DELETE", location, token, None).await?.status)
}

/// One request with the bearer `token`, and `sdp` as an `application/sdp` body.
async fn request(
    method: &str,
    url: &str,
    token: Option<&str>,
    sdp: Option<String>,
) -> Result<HttpResponse, SetupError> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if sdp.is_some() {
        headers.push(("Content-Type", "application/sdp"));
    }
    if let Some(a) = auth.as_deref() {
        headers.push(("Authorization", a));
    }
    let body = sdp.map(String::into_bytes).unwrap_or_default();
    http_request(method, url, &headers, body)
        .await
        .map_err(|e| SetupError::Http(e.to_string()))
}

/// Polls an `Rtc` that has no socket yet until it asks for a timeout.
pub fn drain_offline(rtc: &mut Rtc) -> Result<(), SetupError> {
    loop {
        match rtc
            .poll_output()
            .map_err(|e| SetupError::Rtc(e.to_string()))?
        {
            Output::Timeout(_) => return Ok(()),
            Output::Transmit(_) | Output::Event(_) => {}
        }
    }
}
