//! NTP timestamps (RFC 5905 §6), as RTCP sender reports carry them: 32.32 fixed point
//! seconds since 1900.

/// Seconds from 1900 (NTP's era) to 1970 (Unix's).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A wallclock time as a 64-bit NTP timestamp (RFC 3550 §4).
pub(crate) fn ntp_time(t: std::time::SystemTime) -> u64 {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// A 64-bit NTP timestamp in nanoseconds since the NTP epoch.
pub(crate) fn ntp_to_nanos(ntp: u64) -> i128 {
    let secs = i128::from(ntp >> 32);
    let frac = i128::from(ntp & 0xffff_ffff);
    secs * 1_000_000_000 + ((frac * 1_000_000_000) >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_fixed_point_to_nanoseconds() {
        assert_eq!(ntp_to_nanos(0x0000_0001_8000_0000), 1_500_000_000);
        assert_eq!(ntp_to_nanos(3 << 32), 3_000_000_000);
    }

    #[test]
    fn the_unix_epoch_is_70_years_into_ntps() {
        assert_eq!(ntp_time(std::time::UNIX_EPOCH), NTP_UNIX_OFFSET << 32);
    }
}
