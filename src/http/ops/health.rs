//! Readiness: every listener and worker task the server started is still running,
//! and the server is not shutting down.
//!
//! The server registers each task (HTTP/HTTPS accept loops, media workers with their
//! UDP sockets, RTP ingest listeners) once it is bound and spawned; a task that has
//! ended, by a panic or otherwise, makes `/readyz` answer 503 naming it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::task::AbortHandle;

/// The parts `/readyz` checks.
#[derive(Debug, Default)]
pub struct Readiness {
    started: AtomicBool,
    stopping: AtomicBool,
    parts: Mutex<Vec<(String, AbortHandle)>>,
}

impl Readiness {
    /// Adds a running task that must stay up, named for the 503 reason.
    pub(crate) fn watch(&self, what: impl Into<String>, task: AbortHandle) {
        self.lock().push((what.into(), task));
    }

    /// Stops watching what `what` named (a camera the operator removed).
    pub(crate) fn unwatch(&self, what: &str) {
        self.lock().retain(|(name, _)| name != what);
    }

    /// Everything is bound and spawned.
    pub(crate) fn set_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// The server is shutting down: not ready any more.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, AbortHandle)>> {
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Ok` when ready, else a one-line reason.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        if !self.started.load(Ordering::Acquire) {
            return Err("starting".into());
        }
        let parts = self.lock();
        let down: Vec<&str> = parts
            .iter()
            .filter(|(_, t)| t.is_finished())
            .map(|(w, _)| w.as_str())
            .collect();
        if down.is_empty() {
            Ok(())
        } else {
            Err(format!("not running: {}", down.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_finished_task_or_shutdown_makes_it_not_ready() {
        let r = Readiness::default();
        assert_eq!(r.check(), Err("starting".into()));
        let worker = tokio::spawn(std::future::pending::<()>());
        let listener = tokio::spawn(std::future::pending::<()>());
        r.watch("media worker 0 (UDP 127.0.0.1:9)", worker.abort_handle());
        r.watch("HTTP listener", listener.abort_handle());
        r.set_started();
        assert_eq!(r.check(), Ok(()));
        worker.abort();
        let _ = worker.await;
        assert_eq!(
            r.check(),
            Err("not running: media worker 0 (UDP 127.0.0.1:9)".into())
        );
        r.set_stopping();
        assert_eq!(r.check(), Err("shutting down".into()));
        listener.abort();
    }
}
