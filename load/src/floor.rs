//! The physical floor of forwarding one packet to one viewer on this machine: one
//! SRTP protection of a realistic packet plus one UDP send on loopback, measured with
//! the same primitives a WebRTC server uses (aws-lc-rs, the kernel's UDP stack).
//!
//! SRTP transforms (RFC 3711, RFC 7714), over a 12-byte RTP header and a 1200-byte
//! payload copied into the output buffer first (a server copies too):
//! * `AEAD_AES_256_GCM` — what str0m 0.25 peers (wishd and this tool) negotiate:
//!   dimpl's DTLS server picks it first when the client offers it, and str0m offers
//!   all three profiles;
//! * `AEAD_AES_128_GCM` — what a browser that offers no AES-256 gets;
//! * `AES_CM_128_HMAC_SHA1_80` — the mandatory-to-implement profile.
//!
//! UDP sends: one `sendto` per packet; `sendmmsg` with 32 datagrams per call; and GSO
//! (one `sendmsg` carrying 16 segments, via quinn-udp) — GSO needs one destination per
//! batch, so a fan-out server can use it only per viewer, sendmmsg across viewers.
//! A thread drains the receiving socket so the sender measures delivery, not drops.
//! Times are the sending thread's CPU time (`/proc/thread-self/schedstat`), falling
//! back to wall time.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::hmac;
use serde::Serialize;

/// RTP payload bytes of the measured packet.
pub const PAYLOAD: usize = 1200;
const HEADER: usize = 12;

/// The floor's figures, nanoseconds per packet.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    /// SRTP AEAD_AES_256_GCM protect.
    pub srtp_aes256gcm_ns: f64,
    /// SRTP AEAD_AES_128_GCM protect.
    pub srtp_aes128gcm_ns: f64,
    /// SRTP AES_CM_128_HMAC_SHA1_80 protect.
    pub srtp_aes128cm_sha1_ns: f64,
    /// One `sendto` of one datagram on loopback.
    pub udp_send_ns: f64,
    /// Per datagram with `sendmmsg` (32 per call), if it worked.
    pub udp_sendmmsg_ns: Option<f64>,
    /// Per datagram with GSO (16 segments per call), if the kernel offers GSO.
    pub udp_gso_ns: Option<f64>,
    /// The profile the benchmark's sessions negotiate.
    pub negotiated: &'static str,
    /// Floor: SRTP (negotiated profile) + one `sendto`.
    pub floor_ns: f64,
    /// Floor with batched sends: SRTP + the cheaper of sendmmsg and GSO.
    pub floor_batched_ns: f64,
    /// Not part of the floor: what str0m's send path costs per packet without a
    /// socket (see [`crate::stack`]), to split wishd's CPU into kernel, cipher and
    /// stack. `None` if the in-memory pair did not connect.
    pub stack: Option<crate::stack::Stack>,
}

/// The sending thread's CPU time so far, ns (wall time where unavailable).
pub(crate) fn thread_cpu_ns(wall_start: Instant) -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| wall_start.elapsed().as_nanos() as u64)
}

/// Runs `f` in batches until `budget` has passed; returns ns per call of the work unit
/// (`f` returns how many units it did).
fn per_unit(budget: Duration, mut f: impl FnMut() -> usize) -> f64 {
    // Warm up.
    for _ in 0..64 {
        f();
    }
    let wall = Instant::now();
    let c0 = thread_cpu_ns(wall);
    let mut units = 0usize;
    while wall.elapsed() < budget {
        for _ in 0..256 {
            units += f();
        }
    }
    let c1 = thread_cpu_ns(wall);
    (c1.saturating_sub(c0)) as f64 / units.max(1) as f64
}

fn packet() -> (Vec<u8>, Vec<u8>) {
    let mut header = vec![0x80, 96, 0x12, 0x34, 0, 0, 0x10, 0, 0xde, 0xad, 0xbe, 0xef];
    header.truncate(HEADER);
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| i as u8).collect();
    (header, payload)
}

/// ns per AEAD-GCM SRTP protect with a `key_len`-byte key.
pub fn srtp_gcm(key_len: usize, budget: Duration) -> f64 {
    let alg = if key_len == 32 {
        &AES_256_GCM
    } else {
        &AES_128_GCM
    };
    let key = vec![7u8; key_len];
    let Ok(unbound) = UnboundKey::new(alg, &key) else {
        return f64::NAN;
    };
    let key = LessSafeKey::new(unbound);
    let salt = [3u8; 12];
    let (header, payload) = packet();
    let mut out = vec![0u8; HEADER + PAYLOAD + 16];
    let mut seq: u64 = 0;
    per_unit(budget, || {
        seq += 1;
        // RFC 7714 §8.1: IV = (0^16 || SSRC || ROC || SEQ) XOR salt.
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&header[8..12]);
        iv[6..12].copy_from_slice(&seq.to_be_bytes()[2..8]);
        for (a, b) in iv.iter_mut().zip(salt) {
            *a ^= b;
        }
        out[..HEADER].copy_from_slice(&header);
        out[HEADER..HEADER + PAYLOAD].copy_from_slice(&payload);
        let (head, rest) = out.split_at_mut(HEADER);
        let (body, tag_out) = rest.split_at_mut(PAYLOAD);
        if let Ok(tag) = key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(&head[..]),
            body,
        ) {
            tag_out.copy_from_slice(tag.as_ref());
        }
        std::hint::black_box(&out);
        1
    })
}

/// ns per AES_CM_128_HMAC_SHA1_80 SRTP protect.
pub fn srtp_cm_sha1(budget: Duration) -> f64 {
    let Ok(k) = UnboundCipherKey::new(&AES_128, &[9u8; 16]) else {
        return f64::NAN;
    };
    let Ok(cipher) = EncryptingKey::ctr(k) else {
        return f64::NAN;
    };
    let mac_key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &[5u8; 20]);
    let (header, payload) = packet();
    let mut out = vec![0u8; HEADER + PAYLOAD + 10];
    let mut seq: u64 = 0;
    per_unit(budget, || {
        seq += 1;
        // RFC 3711 §4.1.1: IV = (salt * 2^16) XOR (SSRC * 2^64) XOR (index * 2^16).
        let mut iv = [0u8; 16];
        iv[4..8].copy_from_slice(&header[8..12]);
        iv[8..14].copy_from_slice(&seq.to_be_bytes()[2..8]);
        out[..HEADER].copy_from_slice(&header);
        out[HEADER..HEADER + PAYLOAD].copy_from_slice(&payload);
        let _ = cipher.less_safe_encrypt(
            &mut out[HEADER..HEADER + PAYLOAD],
            EncryptionContext::Iv128(iv.into()),
        );
        let mut ctx = hmac::Context::with_key(&mac_key);
        ctx.update(&out[..HEADER + PAYLOAD]);
        ctx.update(&((seq >> 16) as u32).to_be_bytes());
        let tag = ctx.sign();
        out[HEADER + PAYLOAD..].copy_from_slice(&tag.as_ref()[..10]);
        std::hint::black_box(&out);
        1
    })
}

/// A loopback receiver drained by a thread until dropped.
pub(crate) struct Sink {
    pub(crate) addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sink {
    pub(crate) fn new() -> std::io::Result<Sink> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let s2 = socket2::SockRef::from(&sock);
        let _ = s2.set_recv_buffer_size(4 << 20);
        let addr = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                let _ = sock.recv(&mut buf);
            }
        });
        Ok(Sink {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const DATAGRAM: usize = HEADER + PAYLOAD + 16;

/// ns per `sendto` of one SRTP-sized datagram on loopback.
pub fn udp_send(budget: Duration) -> std::io::Result<f64> {
    let sink = Sink::new()?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let buf = vec![0x80u8; DATAGRAM];
    Ok(per_unit(budget, || {
        let _ = sock.send_to(&buf, sink.addr);
        1
    }))
}

/// ns per datagram with GSO (16 segments per call), `None` without GSO.
pub fn udp_gso(budget: Duration) -> std::io::Result<Option<f64>> {
    let sink = Sink::new()?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    let state = quinn_udp::UdpSocketState::new((&sock).into())?;
    let segments = state.max_gso_segments().min(16);
    if segments < 2 {
        return Ok(None);
    }
    let buf = vec![0x80u8; DATAGRAM * segments];
    Ok(Some(per_unit(budget, || {
        let t = quinn_udp::Transmit {
            destination: sink.addr,
            ecn: None,
            contents: &buf,
            segment_size: Some(DATAGRAM),
            src_ip: None,
        };
        let _ = state.send((&sock).into(), &t);
        segments
    })))
}

/// ns per datagram with `sendmmsg` (32 per call).
#[allow(unsafe_code)]
pub fn udp_sendmmsg(budget: Duration) -> std::io::Result<Option<f64>> {
    use std::os::fd::AsRawFd;
    const N: usize = 32;
    let sink = Sink::new()?;
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    // The sink's address was bound to 127.0.0.1, so it is IPv4.
    let SocketAddr::V4(dst) = sink.addr else {
        return Ok(None);
    };
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: dst.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*dst.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut bufs = vec![[0x80u8; DATAGRAM]; N];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr().cast(),
            iov_len: DATAGRAM,
        })
        .collect();
    // SAFETY: mmsghdr is a plain C struct for which all-zero bytes are a valid value.
    let mut msgs: Vec<libc::mmsghdr> = (0..N).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_name = (&sa as *const libc::sockaddr_in).cast_mut().cast();
        m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    let fd = sock.as_raw_fd();
    let mut failed = false;
    let ns = per_unit(budget, || {
        // SAFETY: `msgs` holds N initialised headers whose name and iovec pointers point
        // into `sa`, `iovs` and `bufs`, all alive and unmoved for this whole function.
        let sent = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), N as libc::c_uint, 0) };
        if sent <= 0 {
            failed = true;
            return 1;
        }
        sent as usize
    });
    Ok((!failed).then_some(ns))
}

/// Measures everything, `budget` per figure.
pub fn measure(budget: Duration) -> std::io::Result<Floor> {
    let srtp256 = srtp_gcm(32, budget);
    let srtp128 = srtp_gcm(16, budget);
    let cm = srtp_cm_sha1(budget);
    let send = udp_send(budget)?;
    let mmsg = udp_sendmmsg(budget)?;
    let gso = udp_gso(budget)?;
    let best_batch = [mmsg, gso].into_iter().flatten().fold(send, f64::min);
    let stack = crate::stack::measure(budget);
    Ok(Floor {
        srtp_aes256gcm_ns: srtp256,
        srtp_aes128gcm_ns: srtp128,
        srtp_aes128cm_sha1_ns: cm,
        udp_send_ns: send,
        udp_sendmmsg_ns: mmsg,
        udp_gso_ns: gso,
        negotiated: "AEAD_AES_256_GCM",
        floor_ns: srtp256 + send,
        floor_batched_ns: srtp256 + best_batch,
        stack,
    })
}

/// Prints the floor.
pub fn print(f: &Floor) {
    let o = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{v:.0}"));
    println!(
        "floor per packet (1200-byte payload): SRTP AES-256-GCM {:.0} ns, AES-128-GCM {:.0} ns, \
         AES-CM-128+HMAC-SHA1-80 {:.0} ns; UDP sendto {:.0} ns, sendmmsg {} ns, GSO {} ns",
        f.srtp_aes256gcm_ns,
        f.srtp_aes128gcm_ns,
        f.srtp_aes128cm_sha1_ns,
        f.udp_send_ns,
        o(f.udp_sendmmsg_ns),
        o(f.udp_gso_ns)
    );
    println!(
        "floor = SRTP ({}) + one send: {:.0} ns; with batched sends: {:.0} ns",
        f.negotiated, f.floor_ns, f.floor_batched_ns
    );
    if let Some(st) = &f.stack {
        println!(
            "str0m's send path without a socket (write, timeout, poll; SRTP included): one session \
             {:.0} ns per packet one at a time, {:.0} ns eight at a time; {} sessions in turn {:.0} ns, \
             {:.0} ns with a sendto per datagram",
            st.str0m_single_ns,
            st.str0m_frame_ns,
            crate::stack::MANY,
            st.str0m_many_single_ns,
            st.str0m_many_sendto_ns,
        );
        println!(
            "wishd's own egress path (header + SRTP with the DTLS keys; str0m only when its timer \
             is due): {} sessions in turn {:.0} ns per packet ({:.2}x str0m's), {:.0} ns with a \
             sendto per datagram ({:.2}x)",
            crate::stack::MANY,
            st.direct_many_single_ns,
            st.direct_many_single_ns / st.str0m_many_single_ns,
            st.direct_many_sendto_ns,
            st.direct_many_sendto_ns / st.str0m_many_sendto_ns,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_figures_are_positive_and_finite() {
        let f = measure(Duration::from_millis(20)).expect("loopback sockets");
        for v in [
            f.srtp_aes256gcm_ns,
            f.srtp_aes128gcm_ns,
            f.srtp_aes128cm_sha1_ns,
            f.udp_send_ns,
            f.floor_ns,
        ] {
            assert!(v.is_finite() && v > 0.0, "{f:?}");
        }
        assert!(f.floor_batched_ns <= f.floor_ns);
    }
}
