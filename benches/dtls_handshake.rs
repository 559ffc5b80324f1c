//! DTLS handshakes per second, server side: the server's engine (OpenSSL) against
//! str0m's own (dimpl), each answering wishd's str0m client (dimpl), in memory on one
//! thread. Prints the server's time per handshake for each and their ratio.
//!
//! Then what a joining session's DTLS costs the request's thread before any peer
//! datagram (the engine made and waiting as the server, as for an `actpass` offer):
//! made on the request, and taken from the sessions `prepared_dtls` makes ahead.
//! Then the memory a finished server session keeps for as long as its viewer stays.
//!
//!     cargo bench --bench dtls_handshake [-- HANDSHAKES]

use std::time::{Duration, Instant};

use str0m::crypto::dtls::{DtlsCert, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion};
use wishd::media::dtls;

/// One handshake: the time spent inside the server's calls. The server keeps one
/// certificate, as wishd does; each client brings its own.
fn handshake(server: &dyn DtlsProvider, sc: &DtlsCert, client: &dyn DtlsProvider) -> Duration {
    finished(server, sc, client).0
}

/// [`handshake`], and the server's session once finished.
fn finished(
    server: &dyn DtlsProvider,
    sc: &DtlsCert,
    client: &dyn DtlsProvider,
) -> (Duration, Box<dyn DtlsInstance>) {
    let cc = client.generate_certificate().expect("certificate");
    let now = Instant::now();
    let mut c = client
        .new_dtls(&cc, now, DtlsVersion::Dtls12, Some(1150))
        .expect("client");
    let mut spent = Duration::ZERO;
    let t = Instant::now();
    let mut s = server
        .new_dtls(sc, now, DtlsVersion::Dtls12, Some(1150))
        .expect("server");
    s.set_active(false);
    s.handle_timeout(now).expect("server timeout");
    spent += t.elapsed();
    c.set_active(true);
    c.handle_timeout(now).expect("client timeout");
    let mut buf = vec![0u8; 4096];
    let (mut c_done, mut s_done) = (false, false);
    for _ in 0..20 {
        let out = drain(c.as_mut(), &mut buf, &mut c_done);
        let t = Instant::now();
        for p in &out {
            s.handle_packet(p).expect("server reads");
        }
        let back = drain(s.as_mut(), &mut buf, &mut s_done);
        spent += t.elapsed();
        for p in &back {
            c.handle_packet(p).expect("client reads");
        }
        if c_done && s_done {
            return (spent, s);
        }
    }
    panic!("no handshake");
}

fn drain(d: &mut dyn DtlsInstance, buf: &mut [u8], connected: &mut bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match d.poll_output(buf) {
            DtlsOutput::Packet(p) => out.push(p.to_vec()),
            DtlsOutput::Connected => *connected = true,
            DtlsOutput::Timeout(_) => return out,
            _ => {}
        }
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(500);
    let openssl = dtls::provider();
    let dimpl = dtls::client_provider();
    let mut per = Vec::new();
    for (name, server) in [("OpenSSL (server)", &openssl), ("dimpl", &dimpl)] {
        let cert = server
            .dtls_provider
            .generate_certificate()
            .expect("certificate");
        // Warm up: contexts, configurations, page faults.
        for _ in 0..20 {
            handshake(server.dtls_provider, &cert, dimpl.dtls_provider);
        }
        let mut times: Vec<Duration> = (0..n)
            .map(|_| handshake(server.dtls_provider, &cert, dimpl.dtls_provider))
            .collect();
        times.sort();
        let mean = times.iter().sum::<Duration>() / n as u32;
        println!(
            "{name:>16}: {n} handshakes, server side mean {:.0} µs, p50 {:.0} µs, p99 {:.0} µs",
            mean.as_secs_f64() * 1e6,
            times[n / 2].as_secs_f64() * 1e6,
            times[n * 99 / 100].as_secs_f64() * 1e6,
        );
        per.push(mean.as_secs_f64());
    }
    println!(
        "OpenSSL / dimpl: {:.2}× the server's time per handshake",
        per[0] / per[1]
    );
    join_start(&openssl, n);
    kept_memory(&openssl, n);
}

/// Resident memory per finished server session kept, as a viewer's is.
fn kept_memory(server: &str0m::crypto::CryptoProvider, n: usize) {
    let client = dtls::client_provider();
    let cert = server
        .dtls_provider
        .generate_certificate()
        .expect("certificate");
    // Warm up, so the allocator's arenas and OpenSSL's tables are in the baseline.
    drop(
        (0..20)
            .map(|_| finished(server.dtls_provider, &cert, client.dtls_provider).1)
            .collect::<Vec<_>>(),
    );
    let before = rss_kib();
    let kept: Vec<_> = (0..n)
        .map(|_| finished(server.dtls_provider, &cert, client.dtls_provider).1)
        .collect();
    let after = rss_kib();
    println!(
        "finished sessions kept: {:.1} KiB resident each ({n} kept)",
        after.saturating_sub(before) as f64 / n as f64
    );
    drop(kept);
}

/// This process's resident memory (/proc/self/statm), KiB.
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4
}

/// The server engine's start for `n` joining sessions, made on the request and
/// then taken ready.
fn join_start(server: &str0m::crypto::CryptoProvider, n: usize) {
    let mut per = Vec::new();
    for spares in [0, n] {
        let cert = server
            .dtls_provider
            .generate_certificate()
            .expect("certificate");
        dtls::prepare_server_sessions(&cert, spares).expect("context");
        // The spares are made on idle CPU time: this thread sleeping is that.
        std::thread::sleep(Duration::from_millis(500 + n as u64));
        let now = Instant::now();
        let mut kept = Vec::with_capacity(n);
        let t = Instant::now();
        for _ in 0..n {
            let mut s = server
                .dtls_provider
                .new_dtls(&cert, now, DtlsVersion::Dtls12, Some(1150))
                .expect("server");
            s.set_active(false);
            kept.push(s);
        }
        let each = t.elapsed() / n as u32;
        drop(kept);
        let how = if spares == 0 {
            "made on the request"
        } else {
            "taken ready"
        };
        println!(
            "{how:>19}: a joining session's DTLS start, {:.1} µs on the request's thread",
            each.as_secs_f64() * 1e6
        );
        per.push(each.as_secs_f64());
    }
    println!(
        "made ahead / made on the request: {:.2}× of that time",
        per[1] / per[0]
    );
}
