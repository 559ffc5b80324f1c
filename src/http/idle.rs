//! Deadlines on an HTTP connection's bytes, below hyper and TLS.
//!
//! hyper bounds an HTTP/1 request's headers (`header_read_timeout`, which also closes
//! an idle keep-alive connection), but nothing bounds a client that connects and
//! never sends a byte (hyper-util waits for the bytes that tell HTTP/1 from HTTP/2
//! without a timer) or an HTTP/2 connection that sends its preface and then stays
//! silent. Each holds a task and a file descriptor for as long as it likes, so a few
//! thousand of them starve everyone else. [`Deadlines`] wraps the TCP stream: the
//! first byte must come within `first_byte`, and after that a connection with no byte
//! in either direction for `idle` is closed (reads fail with `TimedOut`).
//!
//! An HTTP/2 client can also send its preface and then drip a request's header block
//! (a HEADERS frame without END_HEADERS, then tiny CONTINUATION frames) slowly enough
//! to stay under the idle time: hyper has no header timeout for HTTP/2. With
//! [`Deadlines::first_request_within`], a connection whose first request has not
//! reached the server `within` after the connection's first byte is closed too, for
//! HTTP/1 and HTTP/2 alike.
//!
//! The timer is reset lazily: traffic only moves a deadline `Instant` later; the
//! `Sleep` is re-armed when it fires early, so a busy connection costs no timer
//! operations per read.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A stream whose reads fail once its deadline passes without traffic.
pub(crate) struct Deadlines<S> {
    inner: S,
    idle: Duration,
    /// When the connection times out unless bytes move before.
    deadline: Instant,
    sleep: Pin<Box<Sleep>>,
    request: Option<FirstRequest>,
}

/// The deadline of a connection's first request.
struct FirstRequest {
    /// Set by the service when a request reaches it.
    seen: Arc<AtomicBool>,
    within: Duration,
    /// `within` after the first byte; unset before it.
    by: Option<Instant>,
}

impl<S> Deadlines<S> {
    /// Wraps a freshly accepted stream.
    pub(crate) fn new(inner: S, first_byte: Duration, idle: Duration) -> Deadlines<S> {
        let deadline = Instant::now() + first_byte;
        Deadlines {
            inner,
            idle,
            deadline,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            request: None,
        }
    }

    /// Also closes the connection when no request has reached the service (`seen`
    /// still false) `within` after the connection's first byte.
    pub(crate) fn first_request_within(mut self, seen: Arc<AtomicBool>, within: Duration) -> Self {
        self.request = Some(FirstRequest {
            seen,
            within,
            by: None,
        });
        self
    }

    /// The idle deadline, or the first request's when that is sooner and still open.
    fn effective(&self) -> Instant {
        match &self.request {
            Some(FirstRequest {
                seen, by: Some(by), ..
            }) if !seen.load(Ordering::Relaxed) => self.deadline.min(*by),
            _ => self.deadline,
        }
    }

    fn touched(&mut self) {
        let now = Instant::now();
        self.deadline = now + self.idle;
        if let Some(r) = &mut self.request
            && r.by.is_none()
        {
            r.by = Some(now + r.within);
        }
        // Later deadlines wait for the timer to fire (see `expired`); an earlier one
        // (the idle time shorter than the first byte's) must re-arm it now.
        let effective = self.effective();
        if effective < self.sleep.deadline() {
            self.sleep.as_mut().reset(effective);
        }
    }

    /// Whether the deadline has passed; re-arms the timer when it fired early.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.sleep.as_mut().poll(cx).is_pending() {
                return false;
            }
            let effective = self.effective();
            if Instant::now() >= effective {
                return true;
            }
            self.sleep.as_mut().reset(effective);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlines<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.touched();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.expired(cx) {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no bytes from the client in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlines<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touched();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touched();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_after_the_first_byte_deadline() {
        let (a, _b) = tokio::io::duplex(64);
        let mut s = Deadlines::new(a, 100 * MS, 1000 * MS);
        let start = Instant::now();
        let mut buf = [0u8; 8];
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), 100 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_time_shorter_than_the_first_byte_deadline_applies_after_traffic() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = Deadlines::new(a, 10_000 * MS, 200 * MS);
        let start = Instant::now();
        let mut buf = [0u8; 8];
        b.write_all(b"x").await.unwrap();
        assert_eq!(s.read(&mut buf).await.unwrap(), 1);
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), 200 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_request_that_never_completes_ends_the_connection_despite_traffic() {
        let (a, mut b) = tokio::io::duplex(64);
        let seen = Arc::new(AtomicBool::new(false));
        let mut s = Deadlines::new(a, 1000 * MS, 300 * MS).first_request_within(seen, 500 * MS);
        let start = Instant::now();
        let mut buf = [0u8; 8];
        // A byte every 100 ms keeps the idle deadline away; the request never comes.
        let drip = tokio::spawn(async move {
            for _ in 0..20 {
                if b.write_all(b"x").await.is_err() {
                    return;
                }
                tokio::time::sleep(100 * MS).await;
            }
        });
        let e = loop {
            match s.read(&mut buf).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(start.elapsed(), 500 * MS, "the first byte came at once");
        drip.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn once_a_request_came_only_the_idle_time_counts() {
        let (a, mut b) = tokio::io::duplex(64);
        let seen = Arc::new(AtomicBool::new(false));
        let mut s =
            Deadlines::new(a, 1000 * MS, 300 * MS).first_request_within(seen.clone(), 500 * MS);
        let start = Instant::now();
        let mut buf = [0u8; 8];
        b.write_all(b"GET").await.unwrap();
        assert_eq!(s.read(&mut buf).await.unwrap(), 3);
        seen.store(true, Ordering::Relaxed);
        tokio::time::sleep(250 * MS).await;
        b.write_all(b"more").await.unwrap();
        assert_eq!(s.read(&mut buf).await.unwrap(), 4);
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            start.elapsed(),
            550 * MS,
            "idle after the last byte, no request deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_moves_the_deadline_to_idle_after_the_last_byte() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = Deadlines::new(a, 100 * MS, 300 * MS);
        let start = Instant::now();
        let mut buf = [0u8; 8];
        // Bytes at 50 ms, then the server writes at 250 ms: the deadline follows.
        tokio::time::sleep(50 * MS).await;
        b.write_all(b"hi").await.unwrap();
        assert_eq!(s.read(&mut buf).await.unwrap(), 2);
        tokio::time::sleep(200 * MS).await;
        s.write_all(b"ok").await.unwrap();
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            start.elapsed(),
            550 * MS,
            "idle counted from the last write"
        );
    }
}
