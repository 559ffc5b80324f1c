//! `wishd check-network`: how the network outside sees each media port, against the
//! host candidates wishd would advertise. Behind a NAT that nobody told wishd about
//! (`public_ips`), clients get candidates they cannot reach and say nothing of why;
//! this asks a STUN server for each port's public mapping and says what to change.
//!
//! A command run by the operator, blocking and alone: it binds the media ports itself
//! (or, when a running wishd holds them, a free port on the same address, whose
//! address is still telling though its port may differ).

use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::pool::candidate_addrs;
use crate::config::Config;
use crate::wire::stun;

/// Binding requests per port (UDP may lose one), and how long to wait for all.
const TRIES: usize = 3;
const WAIT: Duration = Duration::from_secs(2);

/// What one media port looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortCheck {
    /// The media worker.
    pub worker: usize,
    /// The address asked from (the media port, or a stand-in on the same address).
    pub bound: SocketAddr,
    /// Whether `bound` is the media port itself.
    pub own_port: bool,
    /// What wishd would advertise for that port.
    pub advertised: Vec<SocketAddr>,
    /// What the STUN server saw; None when it did not answer.
    pub mapped: Option<SocketAddr>,
}

impl PortCheck {
    /// Whether clients outside can reach an advertised address: the mapped address is
    /// one (its IP, and its port when the media port itself was asked from).
    pub fn reachable(&self) -> bool {
        self.mapped.is_some_and(|m| {
            self.advertised
                .iter()
                .any(|a| a.ip() == m.ip() && (!self.own_port || a.port() == m.port()))
        })
    }

    /// One line for the operator.
    pub fn describe(&self) -> String {
        let shown: Vec<String> = self.advertised.iter().map(ToString::to_string).collect();
        let from = if self.own_port {
            format!("UDP {}", self.bound)
        } else {
            format!(
                "UDP {} (a stand-in: a running wishd holds the port)",
                self.bound
            )
        };
        match self.mapped {
            None => format!(
                "media worker {}: {from}: no answer from the STUN server in {} s",
                self.worker,
                WAIT.as_secs()
            ),
            Some(m) if self.reachable() => format!(
                "media worker {}: {from}: seen from outside as {m}, which is advertised: ok",
                self.worker
            ),
            Some(m) => format!(
                "media worker {}: {from}: seen from outside as {m}, which is not advertised ({}): \
                 clients behind other networks cannot reach it. Add --public-ip {} (public_ips){}",
                self.worker,
                shown.join(", "),
                m.ip(),
                if self.own_port && self.advertised.iter().any(|a| a.ip() == m.ip()) {
                    ", and forward the same port numbers"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The STUN server to ask: `stun` when given (host:port), else the first STUN or
/// TURN server of `[[ice_servers]]` (TURN servers answer Binding requests too).
pub fn stun_server(config: &Config, stun: Option<&str>) -> Result<SocketAddr, String> {
    let target = match stun {
        Some(s) => s.to_owned(),
        None => config
            .ice_servers
            .iter()
            .flat_map(|e| e.urls.iter())
            .find_map(|u| host_port(u))
            .ok_or("no STUN server: give --stun HOST:PORT or a stun: URL in [[ice_servers]]")?,
    };
    target
        .to_socket_addrs()
        .map_err(|e| format!("{target}: {e}"))?
        .find(|a| a.is_ipv4() == config.udp.is_ipv4() || config.udp.ip().is_unspecified())
        .ok_or_else(|| format!("{target}: no address of a family the media ports use"))
}

/// `host:port` of a `stun:`/`turn:` URL (default port 3478), over UDP only.
fn host_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once(':')?;
    if !matches!(scheme.to_ascii_lowercase().as_str(), "stun" | "turn") {
        return None;
    }
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    if query.contains("transport=tcp") {
        return None;
    }
    let has_port = hostport
        .rsplit_once(':')
        .is_some_and(|(h, p)| p.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')));
    Some(if has_port {
        hostport.to_owned()
    } else {
        format!("{hostport}:3478")
    })
}

/// Asks `server` how each media port of `config` is seen from outside.
pub fn check_network(config: &Config, server: SocketAddr) -> Vec<PortCheck> {
    let mut out = Vec::new();
    for worker in 0..config.worker_count() {
        let port = match config.udp.port() {
            0 => 0,
            p => p + worker as u16,
        };
        let wanted = SocketAddr::new(config.udp.ip(), port);
        let (socket, own_port) = match UdpSocket::bind(wanted) {
            Ok(s) => (s, port != 0),
            Err(_) => match UdpSocket::bind(SocketAddr::new(config.udp.ip(), 0)) {
                Ok(s) => (s, false),
                Err(_) => continue,
            },
        };
        let Ok(bound) = socket.local_addr() else {
            continue;
        };
        let advertised = candidate_addrs(
            SocketAddr::new(bound.ip(), if own_port { bound.port() } else { port }),
            &config.public_ips,
        );
        let mapped = ask(&socket, server);
        out.push(PortCheck {
            worker,
            bound,
            own_port,
            advertised,
            mapped: mapped.map(|m| SocketAddr::new(m.ip().to_canonical(), m.port())),
        });
    }
    out
}

/// Sends Binding requests from `socket` to `server` until one is answered (or
/// [`WAIT`] passes); the reflected address.
fn ask(socket: &UdpSocket, server: SocketAddr) -> Option<SocketAddr> {
    let txid: [u8; 12] = rand::random();
    let request = stun::binding_request(txid);
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    for attempt in 0..TRIES {
        let _ = socket.send_to(&request, server);
        let until = start + WAIT * (attempt as u32 + 1) / TRIES as u32;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match socket.recv_from(&mut buf) {
                Ok((n, from)) if from == server => {
                    if let Some(a) = stun::reflected_address(&buf[..n], txid) {
                        return Some(a);
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_and_turn_urls_give_their_udp_host_and_port() {
        assert_eq!(
            host_port("stun:stun.example.com").as_deref(),
            Some("stun.example.com:3478")
        );
        assert_eq!(
            host_port("turn:10.0.0.1:3479?transport=udp").as_deref(),
            Some("10.0.0.1:3479")
        );
        assert_eq!(
            host_port("stun:[2001:db8::1]:19302").as_deref(),
            Some("[2001:db8::1]:19302")
        );
        assert_eq!(host_port("turn:t.example.com?transport=tcp"), None);
        assert_eq!(host_port("turns:t.example.com:5349"), None);
    }

    #[test]
    fn a_mapping_is_reachable_when_advertised_and_says_what_to_add_when_not() {
        let c = |mapped: &str, own_port: bool| PortCheck {
            worker: 0,
            bound: "10.0.0.5:20000".parse().unwrap(),
            own_port,
            advertised: vec!["10.0.0.5:20000".parse().unwrap()],
            mapped: Some(mapped.parse().unwrap()),
        };
        assert!(c("10.0.0.5:20000", true).reachable());
        let nat = c("203.0.113.7:20000", true);
        assert!(!nat.reachable());
        assert!(
            nat.describe().contains("--public-ip 203.0.113.7"),
            "{}",
            nat.describe()
        );
        // A port-changing NAT is found only when the media port itself was asked from.
        assert!(!c("10.0.0.5:31000", true).reachable());
        assert!(c("10.0.0.5:31000", false).reachable());
    }
}
