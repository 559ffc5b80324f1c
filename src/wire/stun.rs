//! Just enough STUN to route a binding request to its session before any address is
//! known: the local ICE ufrag is the part of USERNAME before the colon (RFC 8445 §7.2.2).

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

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
