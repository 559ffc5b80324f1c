//! The hand-over floor: how long a thread that waits on a channel takes to run again
//! after another thread sends to it, measured on this machine under the load of the
//! moment.
//!
//! A media server that spreads one stream's viewers over its workers hands each
//! source packet from the worker that read it to the others, so every forward to
//! their viewers starts with one such wake-up. The probe does the same hand-over as
//! wishd's workers (a tokio `mpsc` into a current-thread runtime with its I/O driver,
//! which sleeps in `epoll_wait`), once per interval, and records send → receive. Run
//! during a step, its percentiles are the part of the server's forwarding latency
//! that no server code can remove on this machine: the kernel's (and, in a virtual
//! machine, the hypervisor's) time to give the woken thread a core.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::stats::Histogram;

/// A running probe: one sending thread, one receiving thread.
pub struct WakeProbe {
    stop: Arc<AtomicBool>,
    hist: Arc<Mutex<Histogram>>,
    threads: Vec<JoinHandle<()>>,
}

impl WakeProbe {
    /// Starts the probe; one hand-over every `interval`.
    pub fn start(interval: Duration) -> std::io::Result<WakeProbe> {
        let stop = Arc::new(AtomicBool::new(false));
        let hist = Arc::new(Mutex::new(Histogram::default()));
        let (tx, mut rx) = mpsc::channel::<Instant>(64);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let record = hist.clone();
        let receiver = std::thread::Builder::new()
            .name("wake-probe-rx".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(sent) = rx.recv().await {
                        let ns = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                        record
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .record(ns);
                    }
                });
            })?;
        let halt = stop.clone();
        let sender = std::thread::Builder::new()
            .name("wake-probe-tx".into())
            .spawn(move || {
                while !halt.load(Ordering::Relaxed) {
                    std::thread::sleep(interval);
                    // A full channel means the receiver is starved; skip, do not block.
                    let _ = tx.try_send(Instant::now());
                }
                // Dropping `tx` ends the receiver's loop.
            })?;
        Ok(WakeProbe {
            stop,
            hist,
            threads: vec![sender, receiver],
        })
    }

    /// The hand-overs recorded since the last call (nanoseconds); starts a new window.
    pub fn take(&self) -> Histogram {
        let mut h = self.hist.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut *h)
    }

    /// Stops both threads and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_records_one_hand_over_per_interval_and_starts_a_new_window_on_take() {
        let probe = WakeProbe::start(Duration::from_millis(2)).expect("probe threads");
        std::thread::sleep(Duration::from_millis(300));
        let first = probe.take();
        // About 150 intervals of 2 ms (sleeps overshoot, so fewer), each recorded once.
        assert!(
            (40..=150).contains(&first.count()),
            "{} hand-overs in 300 ms",
            first.count()
        );
        let p50 = first.quantile(0.5).expect("values");
        // A hand-over is at least a send and a receive, and under 300 ms.
        assert!((100..300_000_000).contains(&p50), "p50 {p50} ns");
        let second = probe.take();
        assert!(
            second.count() < 10,
            "the window restarted: {}",
            second.count()
        );
        probe.stop();
    }
}
