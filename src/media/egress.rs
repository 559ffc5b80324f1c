//! One protected datagram of wishd's own egress path: the RTP header a viewer's
//! session negotiated ([`OutHeader`]) and the shared payload, protected with the
//! session's SRTP keys. str0m keeps ICE and DTLS.
//!
//! The tests prove the path's byte formats (`crate::wire`) against a str0m player: the
//! header (payload type, sequence and timestamp space, the SSRC str0m announced, the mid
//! extension), the sender report with its SDES CNAME (RFC 3550 §6.4.1), and reading the
//! player's NACKs (RFC 4585 §6.2.1), keyframe requests (PLI, FIR) and report blocks with
//! the round trip they give. `media::direct` puts them together for one viewer
//! session.

use super::srtp::{Srtp, SrtpError};
use crate::wire::rtp::OutHeader;

/// Appends one protected RTP datagram (`header` and `payload`) to `out`; `scratch`
/// holds the plain header in between (kept by the caller so nothing is allocated per
/// packet).
pub fn protect(
    srtp: &mut Srtp,
    header: &OutHeader<'_>,
    payload: &[u8],
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), SrtpError> {
    scratch.clear();
    header.write(scratch);
    srtp.protect_rtp(scratch, payload, header.roc(), out)
}

#[cfg(test)]
pub(crate) mod tests;
