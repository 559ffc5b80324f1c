//! DTLS for wishd's sessions: which engine, and a fast first handshake.
//!
//! The server's sessions use OpenSSL ([`ossl`]), which takes RSA as well as ECDSA peer
//! certificates; wishd's own str0m clients (load tool, conformance runner, tests) use
//! str0m's engine, dimpl ([`FastDtls`]). Both retransmit a lost flight after 50 ms, not
//! the 1 s (±25 %) of RFC 6347's conservative figure, which is what a publisher that
//! loses our first flight pays in full: FFmpeg's WHIP muxer opens its DTLS server only
//! after it has read the ICE answer, and the datagram that follows (our ClientHello,
//! sent as soon as ICE completes) is read by its ICE loop and never reaches its DTLS
//! stack. Measured with FFmpeg 9 on loopback: DTLS 0.76–1.25 s, all of it that one
//! wait.
//!
//! The timer doubles on each retry, and a lossy link still gets about 25 s before the
//! handshake gives up (a session's `connect_timeout` ends it sooner). Each flight
//! restarts at 50 ms. An extra copy of a flight on a slow link is harmless: DTLS drops
//! duplicates.

mod ossl;

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};

/// First DTLS flight retransmission timeout.
pub(crate) const FLIGHT_START_RTO: Duration = Duration::from_millis(50);
/// Retransmissions per flight (50 ms doubling nine times: about 25 s in all).
pub(crate) const FLIGHT_RETRIES: usize = 9;

/// The server's crypto provider: OpenSSL's DTLS ([`ServerDtls`]), the rest str0m's.
pub fn provider() -> CryptoProvider {
    let mut p = str0m::crypto::from_feature_flags();
    p.dtls_provider = &SERVER_DTLS;
    p
}

/// How the server's DTLS sessions of one certificate started (`/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SessionStarts {
    /// Sessions made ahead and ready now.
    pub(crate) ready_now: usize,
    /// Handshakes that started from a session made ahead.
    pub(crate) from_ready: u64,
    /// Handshakes that started on a session made on the request (none was ready,
    /// or the offer made us the DTLS client).
    pub(crate) made: u64,
}

pub(crate) use ossl::session_starts;

/// The server engine's library as the startup lines name it: OpenSSL's version, and
/// whether it is built in (the `vendored-openssl` feature) or the system's, which is
/// what an operator needs to know to follow OpenSSL's advisories.
pub(crate) fn engine_name() -> String {
    let whose = if cfg!(feature = "vendored-openssl") {
        "built in"
    } else {
        "the system's"
    };
    format!("{} ({whose})", openssl::version::version())
}

/// Keeps `spares` server DTLS sessions of `cert` made ahead of their offers, from now
/// on (see `ossl::Context`).
pub fn prepare_server_sessions(cert: &DtlsCert, spares: usize) -> Result<(), CryptoError> {
    ossl::set_spares(spares);
    ossl::prepare(cert)
}

/// The crypto provider of wishd's own str0m clients: dimpl with the short timer
/// ([`FastDtls`]).
pub fn client_provider() -> CryptoProvider {
    let mut p = str0m::crypto::from_feature_flags();
    p.dtls_provider = &FAST_DTLS;
    p
}

static SERVER_DTLS: ServerDtls = ServerDtls;
static FAST_DTLS: FastDtls = FastDtls;

/// The server's DTLS factory: one OpenSSL session per `Rtc` (see [`ossl`]).
#[derive(Debug)]
pub(crate) struct ServerDtls;

impl DtlsProvider for ServerDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        // ECDSA P-256, as every browser's: the smallest handshake, and what dimpl
        // peers can verify.
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        _now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        // OpenSSL 3.0 has no DTLS 1.3; str0m asks for 1.2 unless told otherwise.
        if !matches!(dtls_version, DtlsVersion::Dtls12 | DtlsVersion::Auto) {
            return Err(CryptoError::Other(format!(
                "DTLS version {dtls_version} is not supported by the server's engine"
            )));
        }
        let slot = NEXT_SLOT.with(|s| s.borrow_mut().take());
        Ok(Box::new(ossl::Engine::new(cert, mtu, slot)?))
    }
}

/// The SRTP keying material a DTLS handshake exported (RFC 5764 §4.2), for wishd's own
/// egress path (`media::srtp`).
#[derive(Clone)]
pub struct ExportedKeys {
    pub(crate) profile: dimpl::SrtpProfile,
    pub(crate) material: Vec<u8>,
    /// Whether we were the DTLS client: the client's key is the first half.
    pub(crate) dtls_client: bool,
}

impl std::fmt::Debug for ExportedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key bytes stay out of logs.
        write!(f, "ExportedKeys({:?})", self.profile)
    }
}

/// Where one session's DTLS engine leaves its exported keys. str0m builds the engine
/// inside `RtcConfig::build` and keeps the keys to itself; a slot handed in with
/// [`with_key_slot`] around that call gets a copy.
#[derive(Clone, Default, Debug)]
pub struct KeySlot(Arc<Mutex<Option<ExportedKeys>>>);

impl KeySlot {
    /// The exported keys, once the handshake has exported them.
    pub fn get(&self) -> Option<ExportedKeys> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, keys: ExportedKeys) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys);
    }
}

thread_local! {
    /// The slot the next DTLS engine built on this thread reports to.
    static NEXT_SLOT: RefCell<Option<KeySlot>> = const { RefCell::new(None) };
}

/// Runs `build` (which builds one `Rtc`) with `slot` as the place its DTLS engine
/// reports the exported SRTP keys to. Engines built outside such a call keep none.
pub fn with_key_slot<T>(slot: &KeySlot, build: impl FnOnce() -> T) -> T {
    /// Clears the thread's slot when `build` returns or panics (str0m's `build`
    /// panics on an unusable config), so no later engine reports to it.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            NEXT_SLOT.with(|s| s.borrow_mut().take());
        }
    }
    NEXT_SLOT.with(|s| *s.borrow_mut() = Some(slot.clone()));
    let _clear = Clear;
    build()
}

/// A DTLS factory: dimpl with the aws-lc-rs backend and short retransmission timers.
#[derive(Debug)]
pub(crate) struct FastDtls;

impl FastDtls {
    fn config(mtu: Option<usize>) -> Result<dimpl::Config, CryptoError> {
        // ICE has proved return routability before DTLS starts, so the server cookie
        // round trip is skipped (as str0m's own backend does).
        let mut b = dimpl::Config::builder()
            .use_server_cookie(false)
            .flight_start_rto(FLIGHT_START_RTO)
            .flight_retries(FLIGHT_RETRIES);
        if let Some(mtu) = mtu {
            b = b.mtu(mtu);
        }
        b.build()
            .map_err(|e| CryptoError::Other(format!("DTLS configuration: {e}")))
    }

    /// The configuration for `mtu`, built once per process. Building a dimpl
    /// `Config` validates the crypto provider (a key exchange round trip on every
    /// group, P-384 included): about 1.3 ms of CPU, which per session was most of
    /// what a WHEP/WHIP POST cost.
    fn shared_config(mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        static CONFIGS: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>> = Mutex::new(Vec::new());
        // A process meets one or two MTUs: nothing is ever evicted.
        cached(&CONFIGS, &mtu, usize::MAX, || {
            Ok(Arc::new(Self::config(mtu)?))
        })
    }
}

/// A small per-process cache of what is costly to build and the same for every
/// session with the same key (dimpl configurations by MTU, OpenSSL contexts by
/// certificate): looked up under the lock, built outside it (a racing builder's copy
/// is as good as ours), at most `keep` entries, the oldest out first.
pub(crate) fn cached<Q, K, V>(
    list: &Mutex<Vec<(K, V)>>,
    key: &Q,
    keep: usize,
    build: impl FnOnce() -> Result<V, CryptoError>,
) -> Result<V, CryptoError>
where
    Q: PartialEq + ToOwned<Owned = K> + ?Sized,
    K: std::borrow::Borrow<Q>,
    V: Clone,
{
    if let Some(v) = cached_only(list, key) {
        return Ok(v);
    }
    let built = build()?;
    let mut list = list.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(v) = find(&list, key) {
        return Ok(v);
    }
    if list.len() >= keep {
        list.remove(0);
    }
    list.push((key.to_owned(), built.clone()));
    Ok(built)
}

/// What [`cached`] holds for `key`, if it holds anything; never builds.
pub(crate) fn cached_only<Q, K, V>(list: &Mutex<Vec<(K, V)>>, key: &Q) -> Option<V>
where
    Q: PartialEq + ?Sized,
    K: std::borrow::Borrow<Q>,
    V: Clone,
{
    find(&list.lock().unwrap_or_else(|e| e.into_inner()), key)
}

fn find<Q, K, V>(list: &[(K, V)], key: &Q) -> Option<V>
where
    Q: PartialEq + ?Sized,
    K: std::borrow::Borrow<Q>,
    V: Clone,
{
    list.iter()
        .find(|(k, _)| k.borrow() == key)
        .map(|(_, v)| v.clone())
}

impl DtlsProvider for FastDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = Self::shared_config(mtu)?;
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => {
                return Err(CryptoError::Other(format!(
                    "DTLS version {other} is not supported"
                )));
            }
        };
        let slot = NEXT_SLOT.with(|s| s.borrow_mut().take());
        Ok(Box::new(Engine(dtls, slot)))
    }
}

/// One DTLS session: a thin pass-through to dimpl that copies the exported SRTP keys
/// to its [`KeySlot`], if it has one.
struct Engine(dimpl::Dtls, Option<KeySlot>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

impl DtlsInstance for Engine {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        let out = self.0.poll_output(buf);
        if let (DtlsOutput::KeyingMaterial(km, profile), Some(slot)) = (&out, &self.1) {
            slot.set(ExportedKeys {
                profile: *profile,
                material: km.to_vec(),
                dtls_client: self.0.is_active(),
            });
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_carries_the_short_timer() {
        let c = FastDtls::config(Some(1150)).unwrap();
        assert_eq!(c.flight_start_rto(), FLIGHT_START_RTO);
        assert_eq!(c.flight_retries(), FLIGHT_RETRIES);
        assert_eq!(c.mtu(), 1150);
    }

    #[test]
    fn sessions_share_one_config_per_mtu() {
        let a = FastDtls::shared_config(Some(1150)).unwrap();
        let b = FastDtls::shared_config(Some(1150)).unwrap();
        let c = FastDtls::shared_config(None).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.flight_start_rto(), FLIGHT_START_RTO);
    }

    #[test]
    fn a_panicking_build_leaves_no_slot_for_the_next_engine() {
        let slot = KeySlot::default();
        let r = std::panic::catch_unwind(|| with_key_slot(&slot, || panic!("bad config")));
        assert!(r.is_err());
        assert!(NEXT_SLOT.with(|s| s.borrow().is_none()));
        with_key_slot(&slot, || ());
        assert!(NEXT_SLOT.with(|s| s.borrow().is_none()));
    }

    #[test]
    fn a_client_retransmits_its_first_flight_after_about_50_ms() {
        let cert = FAST_DTLS.generate_certificate().expect("certificate");
        let t0 = Instant::now();
        let mut client = FAST_DTLS
            .new_dtls(&cert, t0, DtlsVersion::Dtls12, None)
            .unwrap();
        client.set_active(true);
        client.handle_timeout(t0).unwrap();
        let mut buf = vec![0u8; 2048];
        let mut first = Vec::new();
        let next = loop {
            match client.poll_output(&mut buf) {
                DtlsOutput::Packet(p) => first.push(p.to_vec()),
                DtlsOutput::Timeout(t) => break t,
                _ => {}
            }
        };
        assert!(!first.is_empty(), "the ClientHello goes out at once");
        let wait = next.duration_since(t0);
        assert!(
            wait >= Duration::from_millis(37) && wait <= Duration::from_millis(63),
            "first retransmission after {wait:?}"
        );
    }
}
