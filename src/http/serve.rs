//! The listeners: a TCP accept loop per HTTP or HTTPS address serving HTTP/1.1 and
//! HTTP/2 through [`super::handle`], and the certificate reload on SIGHUP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::AppState;
use crate::config::LimitsConfig;

/// Connections the kernel queues for `accept` (the kernel caps it at
/// `net.core.somaxconn`). The standard library's 128 overflows when a few hundred
/// viewers press play together: the extra SYNs are dropped and their clients retry
/// after the TCP retransmission timeout, a full second later.
const LISTEN_BACKLOG: i32 = 4096;

/// A TCP listener on `addr` with address reuse and [`LISTEN_BACKLOG`].
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let (listener, ipv4_only) = crate::model::bind_every_family(addr, bind_exactly)?;
    if ipv4_only {
        warn!(%addr, "IPv6 is not available: HTTP on IPv4 alone");
    }
    Ok(listener)
}

fn bind_exactly(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As the standard library's `bind`: address reuse on. `[::]` takes both
    // families whatever the system's default; a specific IPv6 address IPv6 alone.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(!addr.ip().is_unspecified())?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// Serves `listener` until `stop` changes: each connection gets byte deadlines,
/// an optional TLS handshake, and HTTP/1.1 or HTTP/2 through [`super::handle`].
pub(crate) async fn accept_loop(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: LimitsConfig,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let header_timeout = limits.header_read_timeout;
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection);
    let per_address = PerAddress::default();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // An IPv4 client of a dual-stack listener as the IPv4 address it is
                // (rate limits, logs).
                let ip = peer.ip().to_canonical();
                let Some(slot) = per_address.open(ip, limits.max_connections_per_address) else {
                    state.ops.http.connections_refused.fetch_add(1, Ordering::Relaxed);
                    debug!(%peer, "connection refused: its address has {} open", limits.max_connections_per_address);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                // The first byte within the header timeout, the first request within
                // that again, then never silent past the idle timeout (hyper has no
                // timer for the first or an HTTP/2 request's headers; see
                // `super::idle`).
                let seen = Arc::new(AtomicBool::new(false));
                let stream = super::idle::Deadlines::new(stream, header_timeout, limits.idle_timeout)
                    .first_request_within(seen.clone(), header_timeout);
                let state = state.clone();
                let https = tls.is_some();
                let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    seen.store(true, Ordering::Relaxed);
                    if https {
                        req.extensions_mut().insert(super::location::Https);
                    }
                    super::handle(state.clone(), ip, req)
                });
                let builder = builder.clone();
                let watcher = graceful.watcher();
                match tls.clone() {
                    None => {
                        tokio::spawn(async move {
                            let _slot = slot;
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                            if let Err(e) = watcher.watch(conn).await {
                                debug!(%peer, "http connection ended: {e}");
                            }
                        });
                    }
                    Some(acceptor) => {
                        tokio::spawn(async move {
                            let _slot = slot;
                            // The handshake gets the same deadline as a request's headers.
                            let tls = match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    debug!(%peer, "TLS handshake failed: {e}");
                                    return;
                                }
                                Err(_) => {
                                    debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
                            if let Err(e) = watcher.watch(conn).await {
                                debug!(%peer, "https connection ended: {e}");
                            }
                        });
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}

/// Open connections per client address, for `limits.max_connections_per_address`.
#[derive(Clone, Default)]
struct PerAddress(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One open connection of an address; the count goes down when it is dropped.
struct Slot {
    map: PerAddress,
    ip: IpAddr,
}

impl PerAddress {
    /// A slot for a new connection from `ip`, or none when it has `max` open (0: no
    /// cap).
    fn open(&self, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            map: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.map.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Reloads the configuration on SIGHUP ([`super::reload`]); sessions and connections
/// are untouched. The handler is installed before `Server::start` returns, so a
/// SIGHUP sent right after start is not lost (nor does it end the process).
pub(crate) async fn reload_on_sighup(
    state: Arc<AppState>,
    mut hup: tokio::signal::unix::Signal,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            got = hup.recv() => {
                if got.is_none() {
                    break;
                }
                state.reloader.on_sighup(&state).await;
            }
        }
    }
}
