//! DTLS handshakes per second, server side: the server's engine (OpenSSL) against
//! str0m's own (dimpl), each answering wishd's str0m client (dimpl), in memory on one
//! thread. Prints the server's time per handshake for each and their ratio.
//!
//!     cargo bench --bench dtls_handshake [-- HANDSHAKES]

use std::time::{Duration, Instant};

use str0m::crypto::dtls::{DtlsCert, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion};
use wishd::media::dtls;

/// One handshake: the time spent inside the server's calls. The server keeps one
/// certificate, as wishd does; each client brings its own.
fn handshake(server: &dyn DtlsProvider, sc: &DtlsCert, client: &dyn DtlsProvider) -> Duration {
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
            return spent;
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
}
