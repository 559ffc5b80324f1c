//! The HTTP floor: what `n` requests sent at once take on this machine when the server
//! does nothing with them.
//!
//! A burst's POST→201 is bounded from below twice: by the server's CPU per POST (see
//! [`crate::bench::p99_bound_ms`]) and by what a new connection, one request and one
//! response cost the client, the kernel and any server on the same cores. The second
//! bound is measured here: a server in this process, on a runtime of its own with one
//! thread per core (as wishd's HTTP side), that reads each request's head and answers
//! `204` without parsing it, and the same client code the bench's bursts use. What it
//! measures is the connections, the kernel's TCP and the client on the same cores: a
//! real server's burst of the same size can hardly be faster here (wishd's own OPTIONS
//! comes out in the same range), so a burst target far below this figure is a target
//! for another machine.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// The only answer the empty server gives.
const RESPONSE: &[u8] = b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n";

/// The largest request head it reads.
const HEAD_MAX: usize = 8192;

/// A server that answers every request with `204` and nothing else; stops when
/// dropped.
pub struct EmptyServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmptyServer {
    /// Starts it on a loopback port, with `threads` runtime threads.
    pub fn start(threads: usize) -> std::io::Result<EmptyServer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("http-floor")
            .enable_all()
            .build()?;
        // wishd's own listener: the standard library's backlog of 128 would drop the
        // SYNs of a larger burst, and their clients would retry a second later.
        let listener = {
            let _runtime = runtime.enter();
            wishd::http::serve::bind_listener(SocketAddr::from(([127, 0, 0, 1], 0)))?
        };
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("http-floor".into())
            .spawn(move || {
                // The accept loop runs on the runtime's threads (as wishd's does), not
                // on this one, which only waits for the stop.
                runtime.block_on(async move {
                    let accepting = tokio::spawn(accept_loop(listener));
                    let _ = stopped.await;
                    accepting.abort();
                });
                runtime.shutdown_background();
            })?;
        Ok(EmptyServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for EmptyServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            // Out of file descriptors (a burst larger than `ulimit -n` allows): back
            // off instead of spinning; those clients' requests fail and are left out.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            let mut buf = [0u8; 2048];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < HEAD_MAX {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(RESPONSE).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// `n` OPTIONS requests sent at once to `url`, each on its own connection, as the
/// bench's bursts send them; the time each took, ms (failed ones left out).
pub async fn requests_at_once(url: &str, n: usize) -> Vec<f64> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move {
                let t = Instant::now();
                let r = wishd::client::http_request("OPTIONS", &url, &[], Vec::new()).await;
                r.ok().map(|_| t.elapsed().as_secs_f64() * 1e3)
            })
        })
        .collect();
    let mut ms = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Some(v)) = t.await {
            ms.push(v);
        }
    }
    ms
}

/// `n` requests at once to an [`EmptyServer`] with `threads` threads; the time each
/// took, ms. Empty when the server could not start.
pub async fn measure(n: usize, threads: usize) -> Vec<f64> {
    let Ok(server) = EmptyServer::start(threads) else {
        return Vec::new();
    };
    // One request first, so that neither side pays for its first connection in the
    // burst.
    let _ = requests_at_once(&server.url(), 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ms = requests_at_once(&server.url(), n).await;
    // Joining the server's thread blocks; let the runtime go on meanwhile.
    let _ = tokio::task::spawn_blocking(move || drop(server)).await;
    ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_request_of_a_burst_to_the_empty_server_is_answered() {
        let ms = measure(20, 2).await;
        assert_eq!(ms.len(), 20, "answered: {ms:?}");
        assert!(ms.iter().all(|&m| m > 0.0));
        let server = EmptyServer::start(1).expect("starts");
        let r = wishd::client::http_request("POST", &server.url(), &[], b"x".to_vec())
            .await
            .expect("an answer");
        assert_eq!(r.status, 204);
    }
}
