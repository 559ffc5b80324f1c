//! Just enough STUN (RFC 8489) for ICE connectivity checks from outside a peer: a
//! Binding request with USERNAME, PRIORITY, ICE-CONTROLLING, MESSAGE-INTEGRITY and
//! FINGERPRINT, and recognising its success response. The runner uses it to ask a
//! server "do you still answer for this ICE session?" (consent, RFC 7675), before and
//! after a DELETE.

use std::net::SocketAddr;
use std::time::Duration;

use aws_lc_rs::hmac;
use tokio::net::UdpSocket;

const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const USERNAME: u16 = 0x0006;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const FINGERPRINT: u16 = 0x8028;
const PRIORITY: u16 = 0x0024;
const ICE_CONTROLLING: u16 = 0x802a;

fn attr(out: &mut Vec<u8>, typ: u16, value: &[u8]) {
    out.extend_from_slice(&typ.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn set_length(msg: &mut [u8], len: usize) {
    msg[2..4].copy_from_slice(&(len as u16).to_be_bytes());
}

/// CRC-32 (IEEE 802.3), as FINGERPRINT needs it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A Binding request to a server whose ICE credentials are `server_ufrag` /
/// `server_pwd`, from a client known as `client_ufrag`.
pub fn binding_request(
    transaction: [u8; 12],
    server_ufrag: &str,
    client_ufrag: &str,
    server_pwd: &str,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&transaction);
    attr(
        &mut m,
        USERNAME,
        format!("{server_ufrag}:{client_ufrag}").as_bytes(),
    );
    attr(&mut m, PRIORITY, &0x6e00_01ffu32.to_be_bytes());
    attr(
        &mut m,
        ICE_CONTROLLING,
        &rand::random::<u64>().to_be_bytes(),
    );
    // MESSAGE-INTEGRITY covers the header with a length that includes itself.
    let len = m.len() - 20 + 24;
    set_length(&mut m, len);
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, server_pwd.as_bytes());
    let tag = hmac::sign(&key, &m);
    attr(&mut m, MESSAGE_INTEGRITY, tag.as_ref());
    let len = m.len() - 20 + 8;
    set_length(&mut m, len);
    let fp = crc32(&m) ^ 0x5354_554e;
    attr(&mut m, FINGERPRINT, &fp.to_be_bytes());
    m
}

/// True when `buf` is a Binding success response to `transaction`.
pub fn is_success_for(buf: &[u8], transaction: &[u8; 12]) -> bool {
    buf.len() >= 20
        && buf[0..2] == BINDING_SUCCESS.to_be_bytes()
        && buf[4..8] == MAGIC
        && &buf[8..20] == transaction
}

/// Sends a Binding request from a fresh socket to `server` up to three times and
/// says whether a success response came back within `wait` in all.
pub async fn server_answers(
    server: SocketAddr,
    server_ufrag: &str,
    client_ufrag: &str,
    server_pwd: &str,
    wait: Duration,
) -> std::io::Result<bool> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind).await?;
    let transaction: [u8; 12] = rand::random();
    let req = binding_request(transaction, server_ufrag, client_ufrag, server_pwd);
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        socket.send_to(&req, server).await?;
        let deadline = tokio::time::Instant::now() + wait / 3;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
                Err(_) => break,
                Ok(Err(_)) => break,
                Ok(Ok((n, _))) if is_success_for(&buf[..n], &transaction) => return Ok(true),
                Ok(Ok(_)) => {}
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn request_is_well_formed_and_verifies_with_str0m() {
        let t = [7u8; 12];
        let m = binding_request(t, "srv", "cli", "secretpassword");
        assert_eq!(u16::from_be_bytes([m[2], m[3]]) as usize, m.len() - 20);
        let parsed = str0m::ice::StunMessage::parse(&m).expect("str0m parses it");
        assert!(parsed.is_binding_request());
        assert_eq!(parsed.split_username(), Some(("srv", "cli")));
        let ok = parsed.verify(b"secretpassword", |key, parts| {
            let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
            let mut ctx = hmac::Context::with_key(&k);
            for p in parts {
                ctx.update(p);
            }
            let mut out = [0u8; 20];
            out.copy_from_slice(ctx.sign().as_ref());
            out
        });
        assert!(ok, "MESSAGE-INTEGRITY verifies");
        assert!(!is_success_for(&m, &t));
    }
}
