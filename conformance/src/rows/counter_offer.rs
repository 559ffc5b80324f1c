//! WHEP's counter-offer path (draft-ietf-wish-whep §4.3.2): a server that does not
//! take the player's offer answers 406 with an offer of its own and a `Location`; the
//! player answers it with a PATCH of `application/sdp` to that `Location`. These rows
//! run where a server takes that path; a server that answers with 201 never does.

use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::{Candidate, RtcConfig};
use wishd::client::{HttpResponse, resolve_url};

use super::{Context, m_sections, short};
use crate::report::Report;
use crate::{Level, Outcome};

fn outcome(ok: bool) -> Outcome {
    if ok { Outcome::Pass } else { Outcome::Fail }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`: RFC 9110 §5.6.7's IMF-fixdate, by its shape.
fn is_imf_fixdate(s: &str) -> bool {
    let b = s.as_bytes();
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() == 29
        && days.contains(&&s[0..3])
        && &s[3..5] == ", "
        && digits(5..7)
        && b[7] == b' '
        && months.contains(&&s[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && &s[25..] == " GMT"
}

/// The `valid-until` parameter of a `Content-Type`, unquoted.
fn valid_until(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("valid-until")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// What a player makes of a counter-offer: its answer, or why it has none.
fn answer_to(offer: &str) -> Result<String, String> {
    let offer = SdpOffer::from_sdp_string(offer).map_err(|e| format!("unparseable: {e}"))?;
    let mut rtc = RtcConfig::new().build(Instant::now());
    let local = "127.0.0.1:9".parse().map_err(|_| "address".to_owned())?;
    let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
    rtc.add_local_candidate(candidate);
    let answer = rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| format!("refused: {e}"))?;
    Ok(answer.to_sdp_string())
}

/// PATCHes `body` as `application/sdp` to `url`; the status, or 0 when no answer came.
async fn patch_sdp(ctx: &Context<'_>, url: &str, body: &str) -> u16 {
    ctx.request(
        "PATCH",
        url,
        &[("Content-Type", "application/sdp")],
        body.as_bytes(),
    )
    .await
    .map_or(0, |r| r.status)
}

/// The rows of a 406 to the runner's offer (`first`).
pub async fn run(ctx: &Context<'_>, report: &mut Report, first: &HttpResponse) {
    report.push(
        "WHEP-03",
        Level::Must,
        "the player's offer is accepted (201) or counter-offered (406)",
        Outcome::Pass,
        "406: the server counter-offers",
    );
    let ctype = first.header("content-type").unwrap_or("");
    let sdp_type = ctype
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"));
    let offer = first.text();
    let sections = m_sections(&offer);
    let location = first.header("location").map(str::to_owned);
    report.push(
        "WHEP-06",
        Level::Must,
        "a counter-offer is 406 with application/sdp, the server's offer and a Location",
        outcome(sdp_type && offer.starts_with("v=0") && !sections.is_empty() && location.is_some()),
        format!(
            "Content-Type {ctype}, {} m-line(s), Location {}",
            sections.len(),
            location.as_deref().unwrap_or("none")
        ),
    );
    let dirs: Vec<&str> = sections
        .iter()
        .map(|m| {
            m.iter()
                .find_map(|l| {
                    ["sendrecv", "sendonly", "recvonly", "inactive"]
                        .into_iter()
                        .find(|d| l.strip_prefix("a=") == Some(*d))
                })
                .unwrap_or("sendrecv")
        })
        .collect();
    report.push(
        "WHEP-07",
        Level::Must,
        "counter-offer m-sections are sendonly (or sendrecv), never recvonly or inactive",
        outcome(!dirs.is_empty() && dirs.iter().all(|d| *d == "sendonly" || *d == "sendrecv")),
        format!("{dirs:?}"),
    );
    match valid_until(ctype) {
        Some(date) => report.push(
            "WHEP-08",
            Level::Must,
            "valid-until, when given, is an HTTP-date (IMF-fixdate)",
            outcome(is_imf_fixdate(date)),
            format!("valid-until {date}"),
        ),
        None => report.push(
            "WHEP-08",
            Level::May,
            "valid-until, when given, is an HTTP-date (IMF-fixdate)",
            Outcome::Skip,
            "no valid-until: the offer is valid for 30 s",
        ),
    }
    let Some(location) = location else {
        report.push(
            "WHEP-09",
            Level::Must,
            "the player's answer by PATCH (application/sdp) gets 204",
            Outcome::Fail,
            "no Location to PATCH",
        );
        return;
    };
    let url = resolve_url(&ctx.opts.url, &location);
    match answer_to(&offer) {
        Ok(answer) => {
            let status = patch_sdp(ctx, &url, &answer).await;
            report.push(
                "WHEP-09",
                Level::Must,
                "the player's answer by PATCH (application/sdp) gets 204",
                outcome(status == 204),
                format!("PATCH {location}: {status}"),
            );
        }
        Err(e) => report.push(
            "WHEP-09",
            Level::Must,
            "the player's answer by PATCH (application/sdp) gets 204",
            Outcome::Skip,
            format!(
                "the runner cannot answer the counter-offer ({e}): {}",
                short(&offer)
            ),
        ),
    }
    let _ = ctx.request("DELETE", &url, &[], b"").await;

    // A second counter-offer, answered with garbage.
    let again = ctx.post_offer(&ctx.offer(), &[]).await;
    let (detail, status) = match again {
        Ok(r) if r.status == 406 => match r.header("location") {
            Some(l) => {
                let url = resolve_url(&ctx.opts.url, l);
                let status = patch_sdp(ctx, &url, "v=0\r\nthis is no answer\r\n").await;
                let _ = ctx.request("DELETE", &url, &[], b"").await;
                (format!("PATCH of garbage: {status}"), Some(status))
            }
            None => ("the second 406 has no Location".to_owned(), None),
        },
        Ok(r) => (format!("the second POST got {}", r.status), None),
        Err(e) => (e.to_string(), None),
    };
    report.push(
        "WHEP-09",
        Level::Must,
        "a malformed answer to a counter-offer is refused with a 4xx",
        match status {
            Some(s) => outcome((400..500).contains(&s)),
            None => Outcome::Skip,
        },
        detail,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_until_is_read_and_checked_as_an_imf_fixdate() {
        let t = "application/sdp; valid-until=\"Wed, 09 Oct 2024 10:00:00 GMT\"";
        assert_eq!(valid_until(t), Some("Wed, 09 Oct 2024 10:00:00 GMT"));
        assert!(is_imf_fixdate("Wed, 09 Oct 2024 10:00:00 GMT"));
        assert!(!is_imf_fixdate("Wednesday, 09-Oct-24 10:00:00 GMT"));
        assert!(!is_imf_fixdate("2024-10-09T10:00:00Z"));
        assert!(!is_imf_fixdate("Wed, 09 Oct 2024 10:00:00 UTC"));
        assert_eq!(valid_until("application/sdp"), None);
    }
}
