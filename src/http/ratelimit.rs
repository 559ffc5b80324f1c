//! Per-client-address token buckets for POST/PATCH/DELETE, sans-IO: the caller passes
//! the time in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When the map grows past this many addresses, full buckets are dropped.
const PRUNE_AT: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per client address: `rate` requests per second, `burst` at once.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// A limiter; a `rate` of 0 lets everything through.
    pub(crate) fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `addr`'s bucket. `Err` holds how long to wait.
    pub(crate) fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PRUNE_AT {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let b = map.entry(bucket_key(addr)).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.rate))
        }
    }
}

/// The bucket of an address: IPv4 per address; IPv6 per /64, the smallest block a
/// site is usually given, so one client cannot rotate through its own addresses.
fn bucket_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_steady_rate_refills() {
        let l = RateLimiter::new(2.0, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check(a, t).is_ok());
        }
        let wait = l.check(a, t).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500));
        assert!(l.check(b, t).is_ok(), "another address has its own bucket");
        assert!(l.check(a, t + Duration::from_millis(500)).is_ok());
        assert!(l.check(a, t + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn ipv6_addresses_of_one_slash_64_share_a_bucket() {
        let l = RateLimiter::new(1.0, 1);
        let t = Instant::now();
        assert!(l.check("2001:db8:1:2::1".parse().unwrap(), t).is_ok());
        assert!(l.check("2001:db8:1:2::ffff".parse().unwrap(), t).is_err());
        assert!(l.check("2001:db8:1:3::1".parse().unwrap(), t).is_ok());
    }

    #[test]
    fn rate_zero_is_off() {
        let l = RateLimiter::new(0.0, 1);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            assert!(l.check(a, Instant::now()).is_ok());
        }
    }
}
