//! What a datagram on one UDP port is, from its first bytes: STUN, DTLS, RTP or RTCP
//! (RFC 7983 §7), and RTP from RTCP on a multiplexed port (RFC 5761 §4).

/// True when a datagram on an RTP port is RTCP: the second byte, read as marker and
/// payload type, falls in 192..=223, i.e. RTCP packet types 192 to 223 (RFC 5761 §4).
pub(crate) fn is_rtcp(data: &[u8]) -> bool {
    matches!(data.get(1), Some(192..=223)) && data.first().is_some_and(|b| b >> 6 == 2)
}

/// Whether a datagram is DTLS, RTP or RTCP rather than STUN (RFC 7983 §7): what a
/// peer sends only on its selected candidate pair.
pub(crate) fn is_media_path(datagram: &[u8]) -> bool {
    datagram
        .first()
        .is_some_and(|b| (20..=63).contains(b) || (128..=191).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_stun_dtls_rtp_and_rtcp_apart() {
        let stun = [0x00, 0x01, 0, 0];
        let dtls = [22, 0xfe, 0xfd];
        let rtp = [0x80, 96, 0, 1];
        let rtcp = [0x80, 200, 0, 6];
        assert!(!is_media_path(&stun) && is_media_path(&dtls));
        assert!(is_media_path(&rtp) && is_media_path(&rtcp));
        assert!(is_rtcp(&rtcp) && !is_rtcp(&rtp) && !is_rtcp(&dtls) && !is_rtcp(&[]));
    }
}
