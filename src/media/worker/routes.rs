//! Which session a datagram on the worker's socket belongs to, in pure code.
//!
//! A STUN request names our ICE ufrag in its USERNAME, so it belongs to that session
//! wherever it comes from: after an ICE restart or a network change a client checks
//! from a new address, and the address it left may come back as another client's.
//! Every other datagram (DTLS, SRTP, SRTCP) is routed by its source address, which a
//! session learns from the STUN requests that named it. Each session keeps its last
//! [`MAX_ADDRS`] addresses; an older one, and an address another session takes over,
//! route nowhere else afterwards, so nothing stale outlives an address change.

use std::collections::HashMap;
use std::net::SocketAddr;

/// Remote addresses remembered per session for routing non-STUN datagrams.
pub(crate) const MAX_ADDRS: usize = 8;

/// A session's key in its worker.
pub(crate) type Key = u64;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// A STUN request naming a session's ufrag: route it, and learn its address.
    ByUfrag(Key),
    /// Any other datagram from an address a session learned.
    ByAddress(Key),
    /// Nobody's.
    Unroutable,
}

/// The routing tables of one worker.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    by_ufrag: HashMap<String, Key>,
    by_addr: HashMap<SocketAddr, Key>,
    /// Each session's learned addresses, oldest first.
    addrs: HashMap<Key, Vec<SocketAddr>>,
}

impl Routes {
    /// Where a datagram from `source` goes; `stun_ufrag` is the local ufrag a STUN
    /// request names, if it is one.
    pub(crate) fn route(&self, source: SocketAddr, stun_ufrag: Option<&str>) -> Route {
        if let Some(&key) = stun_ufrag.and_then(|u| self.by_ufrag.get(u)) {
            return Route::ByUfrag(key);
        }
        match self.by_addr.get(&source) {
            Some(&key) => Route::ByAddress(key),
            None => Route::Unroutable,
        }
    }

    /// A new session, reachable by its local ufrag.
    pub(crate) fn add(&mut self, key: Key, ufrag: &str) {
        self.by_ufrag.insert(ufrag.to_owned(), key);
        self.addrs.entry(key).or_default();
    }

    /// An ICE restart gave the session a new local ufrag.
    pub(crate) fn rename(&mut self, key: Key, old_ufrag: &str, new_ufrag: &str) {
        if self.by_ufrag.get(old_ufrag) == Some(&key) {
            self.by_ufrag.remove(old_ufrag);
        }
        self.by_ufrag.insert(new_ufrag.to_owned(), key);
    }

    /// Routes `addr` to `key` from now on (see the module doc).
    pub(crate) fn learn(&mut self, key: Key, addr: SocketAddr) {
        if self.by_addr.get(&addr) == Some(&key) {
            return;
        }
        if let Some(prev) = self.by_addr.insert(addr, key)
            && let Some(other) = self.addrs.get_mut(&prev)
        {
            other.retain(|a| *a != addr);
        }
        let mine = self.addrs.entry(key).or_default();
        mine.retain(|a| *a != addr);
        if mine.len() >= MAX_ADDRS {
            let old = mine.remove(0);
            if self.by_addr.get(&old) == Some(&key) {
                self.by_addr.remove(&old);
            }
        }
        mine.push(addr);
    }

    /// Forgets a session: its ufrag and every address that still routes to it.
    pub(crate) fn remove(&mut self, key: Key, ufrag: &str) {
        if self.by_ufrag.get(ufrag) == Some(&key) {
            self.by_ufrag.remove(ufrag);
        }
        for a in self.addrs.remove(&key).unwrap_or_default() {
            if self.by_addr.get(&a) == Some(&key) {
                self.by_addr.remove(&a);
            }
        }
    }

    /// (address routes, ufrag routes), for leak checks.
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.by_addr.len(), self.by_ufrag.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn a_stun_request_routes_by_ufrag_and_then_its_address_routes_the_rest() {
        let mut r = Routes::default();
        r.add(1, "ufragA");
        assert_eq!(r.route(addr(5000), None), Route::Unroutable);
        assert_eq!(r.route(addr(5000), Some("ufragA")), Route::ByUfrag(1));
        r.learn(1, addr(5000));
        assert_eq!(r.route(addr(5000), None), Route::ByAddress(1));
        assert_eq!(r.route(addr(5000), Some("nobody")), Route::ByAddress(1));
    }

    #[test]
    fn an_ice_restart_routes_the_new_ufrag_from_a_new_address() {
        let mut r = Routes::default();
        r.add(1, "old");
        r.learn(1, addr(5000));
        r.rename(1, "old", "new");
        assert_eq!(r.route(addr(6000), Some("old")), Route::Unroutable);
        assert_eq!(r.route(addr(6000), Some("new")), Route::ByUfrag(1));
        r.learn(1, addr(6000));
        // Both addresses keep routing until the cap pushes the old one out.
        assert_eq!(r.route(addr(5000), None), Route::ByAddress(1));
        assert_eq!(r.route(addr(6000), None), Route::ByAddress(1));
    }

    #[test]
    fn a_new_session_taking_an_address_over_leaves_the_old_one_nothing_of_it() {
        let mut r = Routes::default();
        r.add(1, "a");
        r.add(2, "b");
        r.learn(1, addr(5000));
        r.learn(2, addr(5000));
        assert_eq!(r.route(addr(5000), None), Route::ByAddress(2));
        // Session 1 ending does not unroute the address session 2 now has.
        r.remove(1, "a");
        assert_eq!(r.route(addr(5000), None), Route::ByAddress(2));
        r.remove(2, "b");
        assert_eq!(r.route(addr(5000), None), Route::Unroutable);
        assert_eq!(r.len(), (0, 0));
    }

    #[test]
    fn the_oldest_address_is_evicted_at_the_cap() {
        let mut r = Routes::default();
        r.add(1, "a");
        for port in 0..MAX_ADDRS as u16 {
            r.learn(1, addr(5000 + port));
        }
        assert_eq!(r.len().0, MAX_ADDRS);
        // An address that already routes here changes nothing.
        r.learn(1, addr(5003));
        assert_eq!(r.len().0, MAX_ADDRS);
        r.learn(1, addr(7000));
        assert_eq!(r.len().0, MAX_ADDRS);
        assert_eq!(
            r.route(addr(5000), None),
            Route::Unroutable,
            "the oldest left"
        );
        assert_eq!(r.route(addr(5001), None), Route::ByAddress(1));
        assert_eq!(r.route(addr(7000), None), Route::ByAddress(1));
    }
}
