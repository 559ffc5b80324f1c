//! The throughput the viewer acknowledged: bytes reported received over the last
//! second of the receiver's arrival times. It is what the bottleneck actually
//! delivers, whatever was sent, so a cut of the delay-based estimate starts from it
//! and growth is capped by it. Buckets of a fixed window rather than a list of
//! packets, so it takes no memory per packet.

/// Arrivals are summed in buckets of this much receiver time ...
const ACKED_BUCKET_US: i64 = 50_000;
/// ... over this many buckets (1 s).
const ACKED_BUCKETS: usize = 20;
/// No throughput is given before the feedback spans this much.
const ACKED_MIN_SPAN_US: i64 = 200_000;
/// An arrival this far before the newest is a receiver clock jump: start over.
const ACKED_CLOCK_JUMP_US: i64 = 10_000_000;

/// Bytes acknowledged, in buckets of receiver time.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Acked {
    buckets: [u32; ACKED_BUCKETS],
    /// The newest bucket's index (arrival / bucket length).
    newest: Option<i64>,
    first_arrival: i64,
    last_arrival: i64,
}

impl Acked {
    pub(super) fn add(&mut self, arrival: i64, bytes: u64) {
        let k = arrival.div_euclid(ACKED_BUCKET_US);
        let window = ACKED_BUCKETS as i64;
        if let Some(n) = self.newest {
            if k > n {
                for j in n + 1..=k.min(n + window) {
                    self.buckets[bucket(j)] = 0;
                }
                self.newest = Some(k);
            } else if k <= n - window {
                if arrival >= self.last_arrival.saturating_sub(ACKED_CLOCK_JUMP_US) {
                    // Older than the window: it no longer counts.
                    return;
                }
                // The receiver's clock went back: start over.
                *self = Acked::default();
            }
        }
        if self.newest.is_none() {
            self.newest = Some(k);
            self.first_arrival = arrival;
            self.last_arrival = arrival;
        }
        let b = &mut self.buckets[bucket(k)];
        *b = b.saturating_add(u32::try_from(bytes).unwrap_or(u32::MAX));
        self.last_arrival = self.last_arrival.max(arrival);
        self.first_arrival = self.first_arrival.min(arrival);
    }

    /// Bits per second over the window, once it spans enough.
    pub(super) fn bps(&self) -> Option<f64> {
        let n = self.newest?;
        let start = (n - ACKED_BUCKETS as i64 + 1)
            .saturating_mul(ACKED_BUCKET_US)
            .max(self.first_arrival);
        let span = self.last_arrival.saturating_sub(start);
        if span < ACKED_MIN_SPAN_US {
            return None;
        }
        let bytes: u64 = self.buckets.iter().map(|&b| u64::from(b)).sum();
        Some(bytes as f64 * 8e6 / span as f64)
    }
}

fn bucket(k: i64) -> usize {
    k.rem_euclid(ACKED_BUCKETS as i64) as usize
}
