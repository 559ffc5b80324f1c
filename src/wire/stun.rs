//! Just enough STUN to route a binding request to its session before any address is
//! known: the local ICE ufrag is the part of USERNAME before the colon (RFC 8445 §7.2.2);
//! and to ask a STUN server how the network outside sees one of our sockets (a plain
//! Binding request and the address its success response reflects, RFC 8489).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;

/// A Binding request without attributes, with transaction id `txid`.
pub fn binding_request(txid: [u8; 12]) -> [u8; 20] {
    let mut m = [0u8; 20];
    m[0..2].copy_from_slice(&BINDING_REQUEST.to_be_bytes());
    m[4..8].copy_from_slice(&MAGIC_COOKIE);
    m[8..20].copy_from_slice(&txid);
    m
}

/// The address a Binding success response to `txid` reflects: XOR-MAPPED-ADDRESS, or
/// MAPPED-ADDRESS from an old server. None for anything else.
pub fn reflected_address(buf: &[u8], txid: [u8; 12]) -> Option<SocketAddr> {
    if !is_stun(buf)
        || u16::from_be_bytes([buf[0], buf[1]]) != BINDING_SUCCESS
        || buf[8..20] != txid
    {
        return None;
    }
    let body_len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let end = (20 + body_len).min(buf.len());
    let mut at = 20;
    let mut plain = None;
    while at + 4 <= end {
        let typ = u16::from_be_bytes([buf[at], buf[at + 1]]);
        let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
        let value = buf.get(at + 4..at + 4 + len)?;
        match typ {
            ATTR_XOR_MAPPED_ADDRESS => return address(value, Some(&buf[4..20])),
            ATTR_MAPPED_ADDRESS => plain = address(value, None),
            _ => {}
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    plain
}

/// An address attribute's value; `xor` is the cookie and transaction id it is XORed
/// with (XOR-MAPPED-ADDRESS), none for MAPPED-ADDRESS.
fn address(v: &[u8], xor: Option<&[u8]>) -> Option<SocketAddr> {
    let mask = |i: usize| xor.map_or(0, |x| x[i]);
    let port = u16::from_be_bytes([v.get(2)? ^ mask(0), v.get(3)? ^ mask(1)]);
    let ip = match v.get(1)? {
        0x01 => {
            let b: [u8; 4] = std::array::from_fn(|i| v.get(4 + i).map_or(0, |o| o ^ mask(i)));
            (v.len() >= 8).then_some(IpAddr::V4(Ipv4Addr::from(b)))?
        }
        0x02 => {
            let b: [u8; 16] = std::array::from_fn(|i| v.get(4 + i).map_or(0, |o| o ^ mask(i)));
            (v.len() >= 20).then_some(IpAddr::V6(Ipv6Addr::from(b)))?
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// True when the datagram looks like STUN (RFC 7983 demultiplexing plus the cookie).
pub(crate) fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= 20 && buf[0] < 2 && buf[4..8] == MAGIC_COOKIE
}

/// The local ufrag named by a STUN message's USERNAME attribute, if any.
pub(crate) fn local_ufrag(buf: &[u8]) -> Option<&str> {
    if !is_stun(buf) {
        return None;
    }
    let body_len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let end = (20 + body_len).min(buf.len());
    let mut at = 20;
    while at + 4 <= end {
        let typ = u16::from_be_bytes([buf[at], buf[at + 1]]);
        let len = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize;
        let value = buf.get(at + 4..at + 4 + len)?;
        if typ == ATTR_USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            return name.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attr = vec![0x00, 0x06];
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn finds_the_local_ufrag_of_a_binding_request() {
        assert_eq!(local_ufrag(&binding_request("srv1:cli2")), Some("srv1"));
    }

    /// A success response to `txid` reflecting `addr` (XOR-MAPPED-ADDRESS).
    fn success(txid: [u8; 12], addr: SocketAddr) -> Vec<u8> {
        let mut key = MAGIC_COOKIE.to_vec();
        key.extend_from_slice(&txid);
        let (family, ip): (u8, Vec<u8>) = match addr.ip() {
            IpAddr::V4(v4) => (1, v4.octets().to_vec()),
            IpAddr::V6(v6) => (2, v6.octets().to_vec()),
        };
        let mut value = vec![0, family];
        value.extend(
            addr.port()
                .to_be_bytes()
                .iter()
                .zip(&key)
                .map(|(a, k)| a ^ k),
        );
        value.extend(ip.iter().zip(&key).map(|(a, k)| a ^ k));
        let mut m = BINDING_SUCCESS.to_be_bytes().to_vec();
        m.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
        m.extend_from_slice(&key);
        m.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
        m.extend_from_slice(&(value.len() as u16).to_be_bytes());
        m.extend_from_slice(&value);
        m
    }

    #[test]
    fn a_binding_success_reflects_the_address_of_both_families() {
        let txid = [3; 12];
        let request = super::binding_request(txid);
        assert!(is_stun(&request));
        for addr in ["203.0.113.9:40000", "[2001:db8::9]:40001"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let m = success(txid, addr);
            assert_eq!(reflected_address(&m, txid), Some(addr));
            // Another transaction's answer, or a cut one, reflects nothing.
            assert_eq!(reflected_address(&m, [4; 12]), None);
            for n in 0..m.len() {
                let _ = reflected_address(&m[..n], txid);
            }
        }
        assert_eq!(reflected_address(&request, txid), None);
    }

    #[test]
    fn truncated_or_foreign_datagrams_give_nothing() {
        let m = binding_request("abc:def");
        for n in 0..m.len() {
            let _ = local_ufrag(&m[..n]);
        }
        assert_eq!(local_ufrag(&[0x80; 40]), None);
        assert_eq!(local_ufrag(&[]), None);
    }
}
