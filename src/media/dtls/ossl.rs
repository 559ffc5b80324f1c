//! The server's DTLS engine: OpenSSL's DTLS 1.2, driven sans-IO through memory queues.
//!
//! str0m's own engine (dimpl) signs and verifies with ECDSA only. A peer whose DTLS
//! certificate is RSA (GStreamer's `webrtcbin` makes an RSA 2048 one unless given
//! another; so do older libwebrtc builds and many embedded stacks) cannot finish a
//! handshake with it in either role: as our client its `CertificateVerify` is RSA, as
//! our server its `ServerKeyExchange` is. OpenSSL takes both, and so does every
//! browser's DTLS stack; wishd's own str0m clients keep dimpl, so every test between
//! them also proves the two stacks interoperate.
//!
//! OpenSSL keeps its own retransmission clock. [`timer_us`] gives it the same short
//! first timer as [`super::FLIGHT_START_RTO`] (a publisher that drops our first flight,
//! as FFmpeg's WHIP muxer does, waits 50 ms rather than OpenSSL's 1 s), and
//! [`DtlsInstance::poll_output`] reports OpenSSL's deadline to str0m so that
//! `handle_timeout` runs when a flight is due.
//!
//! The three calls into OpenSSL that rust-openssl does not wrap (the timer callback and
//! the two DTLS timer controls) are this module's only unsafe code.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::ffi::{c_int, c_long, c_uint, c_void};
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use dimpl::{KeyingMaterial, SrtpProfile};
use openssl::error::ErrorStack;
use openssl::pkey::PKey;
use openssl::srtp::SrtpProfileId;
use openssl::ssl::{
    ErrorCode, ShutdownResult, Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions,
    SslSessionCacheMode, SslStream, SslVerifyMode, SslVersion,
};
use openssl::x509::X509;
use str0m::crypto::CryptoError;
use str0m::crypto::dtls::{DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, ProtocolVersion};

use super::{ExportedKeys, KeySlot, SessionStarts};

/// ECDHE with AEAD first, as browsers offer it; the RSA suites are what an RSA peer
/// needs when it is the DTLS server. Our own certificate is ECDSA, so as the server we
/// always pick an ECDSA suite.
const CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA";

/// The SRTP protection profiles, in the order dimpl prefers them (wishd's egress path,
/// `media::srtp`, implements all three).
const SRTP_PROFILES: &str = "SRTP_AEAD_AES_256_GCM:SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80";

/// RFC 5764 §4.2.
const EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// The MTU when str0m names none: str0m's own default datagram size.
const DEFAULT_MTU: usize = 1150;

/// Largest DTLS record a peer can send us in one datagram.
const MAX_RECORD: usize = 16_384 + 2_048;

/// `DTLS_CTRL_GET_TIMEOUT` and `DTLS_CTRL_HANDLE_TIMEOUT` (openssl/ssl.h): the
/// controls behind the `DTLSv1_get_timeout` and `DTLSv1_handle_timeout` macros, which
/// openssl-sys does not bind.
const DTLS_CTRL_GET_TIMEOUT: c_int = 73;
const DTLS_CTRL_HANDLE_TIMEOUT: c_int = 74;

/// Longest wait between two copies of a flight.
const MAX_RTO: Duration = Duration::from_secs(4);

unsafe extern "C" {
    // OpenSSL ≥ 1.1.1 (openssl/ssl.h); openssl-sys binds neither.
    fn SSL_CTX_set_cert_verify_callback(
        ctx: *mut openssl_sys::SSL_CTX,
        cb: Option<unsafe extern "C" fn(*mut openssl_sys::X509_STORE_CTX, *mut c_void) -> c_int>,
        arg: *mut c_void,
    );
    fn DTLS_set_timer_cb(
        s: *mut openssl_sys::SSL,
        cb: Option<unsafe extern "C" fn(*mut openssl_sys::SSL, c_uint) -> c_uint>,
    );
}

/// The whole-chain verification OpenSSL would run on the peer's certificate: none
/// (see `build_context`); the certificate is still read and handed to str0m.
unsafe extern "C" fn accept_any_chain(
    _store: *mut openssl_sys::X509_STORE_CTX,
    _arg: *mut c_void,
) -> c_int {
    1
}

/// OpenSSL's retransmission timer: [`super::FLIGHT_START_RTO`] for a new flight
/// (`previous` is 0), doubling on each retry up to [`MAX_RTO`]. OpenSSL itself gives a
/// handshake up to 12 copies of a flight; the session's `connect_timeout` ends it
/// sooner.
unsafe extern "C" fn timer_us(_ssl: *mut openssl_sys::SSL, previous: c_uint) -> c_uint {
    next_rto_us(previous)
}

fn next_rto_us(previous: c_uint) -> c_uint {
    let max = MAX_RTO.as_micros() as c_uint;
    if previous == 0 {
        super::FLIGHT_START_RTO.as_micros() as c_uint
    } else {
        previous.saturating_mul(2).min(max)
    }
}

/// Contexts kept: a server has one certificate (two across a restart of its
/// template); tests and tools that make a certificate per session reuse none, and
/// must not grow the list.
const CONTEXTS_KEPT: usize = 4;

static CONTEXTS: Mutex<Vec<(Vec<u8>, Arc<Context>)>> = Mutex::new(Vec::new());

/// Spare sessions each context keeps ready ([`set_spares`]).
static SPARES_WANTED: AtomicUsize = AtomicUsize::new(0);

/// How long a refiller waits for a session to be taken before it looks whether its
/// context is still kept.
const REFILL_IDLE_CHECK: Duration = Duration::from_secs(1);

/// Keeps `n` server DTLS sessions of each certificate made ahead of their offers
/// (0: none; each session makes its own, on the request's thread).
pub(crate) fn set_spares(n: usize) {
    SPARES_WANTED.store(n, Ordering::Relaxed);
}

/// Builds `cert`'s context now, and so starts making its spare sessions, rather
/// than at the first offer.
pub(crate) fn prepare(cert: &DtlsCert) -> Result<(), CryptoError> {
    context_for(cert).map(drop)
}

/// One OpenSSL context per DTLS certificate, so a session costs at most an
/// `SSL_new`, not a context build and a key parse; with the sessions made ahead for it.
///
/// A joining crowd's POSTs would otherwise each pay for an `SSL_new` and for the
/// first, empty step of the server handshake (OpenSSL allocates and clears its
/// handshake buffers there): 33 µs, about a sixth of what str0m costs a POST
/// (`cargo bench --bench dtls_handshake`). Neither depends on the offer, so a thread
/// of the lowest priority makes them ahead ([`refill`]), and an offer takes one
/// ready. WebRTC clients offer `actpass`, which str0m answers `passive`: a spare is a
/// session already waiting as the DTLS server. An offer that makes us the client
/// gets a new one ([`Engine::set_active`]).
struct Context {
    ssl: SslContext,
    spares: Mutex<Spares>,
    /// Signalled when a spare is taken.
    taken: Condvar,
    /// Sessions whose handshake started from a spare.
    started_ready: AtomicU64,
    /// Sessions whose handshake started on a session made on the request.
    started_made: AtomicU64,
}

/// The ready sessions, all made for one MTU (the last one asked for).
struct Spares {
    mtu: usize,
    ready: Vec<SslStream<Wire>>,
}

impl Context {
    /// A ready server session for `mtu`, if one is spare.
    fn take(&self, mtu: usize) -> Option<SslStream<Wire>> {
        let mut spares = self.spares.lock().unwrap_or_else(|e| e.into_inner());
        if spares.mtu != mtu {
            // Made for another MTU: the refiller makes new ones for this one.
            spares.mtu = mtu;
            spares.ready.clear();
        }
        let taken = spares.ready.pop();
        drop(spares);
        self.taken.notify_one();
        taken
    }
}

/// How `cert`'s server sessions started so far, and how many are ready now; `None`
/// before its context is built.
pub(crate) fn session_starts(cert: &DtlsCert) -> Option<SessionStarts> {
    let context = super::cached_only(&CONTEXTS, &cert.certificate[..])?;
    let ready_now = context
        .spares
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .ready
        .len();
    Some(SessionStarts {
        ready_now,
        from_ready: context.started_ready.load(Ordering::Relaxed),
        made: context.started_made.load(Ordering::Relaxed),
    })
}

fn context_for(cert: &DtlsCert) -> Result<Arc<Context>, CryptoError> {
    super::cached(&CONTEXTS, &cert.certificate[..], CONTEXTS_KEPT, || {
        let ssl =
            build_context(cert).map_err(|e| CryptoError::Other(format!("DTLS context: {e}")))?;
        let context = Arc::new(Context {
            ssl,
            spares: Mutex::new(Spares {
                mtu: DEFAULT_MTU,
                ready: Vec::new(),
            }),
            taken: Condvar::new(),
            started_ready: AtomicU64::new(0),
            started_made: AtomicU64::new(0),
        });
        if SPARES_WANTED.load(Ordering::Relaxed) > 0 {
            let weak = Arc::downgrade(&context);
            // Without the thread, every session is made on its request's thread.
            let _ = std::thread::Builder::new()
                .name("wishd-dtls-prep".into())
                .spawn(move || refill(weak));
        }
        Ok(context)
    })
}

/// Keeps `context`'s spare sessions at [`SPARES_WANTED`], one at a time, on CPU time
/// nothing else wants (`SCHED_IDLE`): a crowd's POSTs are never slowed by it, and when
/// they outrun it they make their own. Ends soon after the context is dropped.
fn refill(context: Weak<Context>) {
    idle_priority();
    let mut warned = false;
    loop {
        let Some(context) = context.upgrade() else {
            return;
        };
        let want = SPARES_WANTED.load(Ordering::Relaxed);
        let mtu = {
            let spares = context.spares.lock().unwrap_or_else(|e| e.into_inner());
            if spares.ready.len() >= want {
                let _ = context
                    .taken
                    .wait_timeout(spares, REFILL_IDLE_CHECK)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            spares.mtu
        };
        match server_session(&context.ssl, mtu) {
            Ok(s) => {
                let mut spares = context.spares.lock().unwrap_or_else(|e| e.into_inner());
                if spares.mtu == mtu && spares.ready.len() < want {
                    spares.ready.push(s);
                }
            }
            Err(e) => {
                // Once: every offer then makes its own session, as without spares.
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!("could not prepare a DTLS session: {e}");
                }
                std::thread::sleep(REFILL_IDLE_CHECK);
            }
        }
    }
}

/// Puts the calling thread on Linux's `SCHED_IDLE` policy: it runs only when no other
/// thread wants the CPU.
fn idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: 0 is the calling thread; `param` is a valid, initialised struct.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r != 0 {
        tracing::debug!("SCHED_IDLE refused: {}", io::Error::last_os_error());
    }
}

/// A new DTLS session of `ctx` with OpenSSL's settings for `mtu`.
fn new_session(ctx: &SslContext, mtu: usize) -> Result<SslStream<Wire>, ErrorStack> {
    let mut ssl = Ssl::new(ctx)?;
    // Without a BIO that can be asked, OpenSSL needs an MTU to fragment to.
    ssl.set_mtu(mtu as u32)?;
    // SAFETY: `ssl` is a live SSL object; the callback is a plain function that
    // touches no state.
    unsafe { DTLS_set_timer_cb(foreign_types::ForeignType::as_ptr(&ssl), Some(timer_us)) };
    SslStream::new(ssl, Wire::default())
}

/// A new session already waiting for a ClientHello, as [`Engine::set_active`] leaves
/// a passive one.
fn server_session(ctx: &SslContext, mtu: usize) -> Result<SslStream<Wire>, String> {
    let mut s = new_session(ctx, mtu).map_err(|e| e.to_string())?;
    match s.accept() {
        Err(e) if would_block(&e) => Ok(s),
        Err(e) => Err(e.to_string()),
        Ok(()) => Err("a handshake finished with no peer".into()),
    }
}

fn session_error(e: ErrorStack) -> CryptoError {
    CryptoError::Other(format!("DTLS session: {e}"))
}

fn build_context(cert: &DtlsCert) -> Result<SslContext, ErrorStack> {
    let mut b = SslContextBuilder::new(SslMethod::dtls())?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))?;
    b.set_cipher_list(CIPHERS)?;
    b.set_groups_list("X25519:P-256:P-384")?;
    b.set_tlsext_use_srtp(SRTP_PROFILES)?;
    // The peer's certificate is self-signed; str0m checks it against the SDP
    // fingerprint (the `PeerCert` output), which is the only trust WebRTC has. So
    // OpenSSL's chain verification, which could only fail, is not run at all.
    b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    // SAFETY: a live SSL_CTX; the callback is a plain function that touches nothing.
    unsafe {
        SSL_CTX_set_cert_verify_callback(b.as_ptr(), Some(accept_any_chain), std::ptr::null_mut())
    };
    b.set_certificate(X509::from_der(&cert.certificate)?.as_ref())?;
    b.set_private_key(PKey::private_key_from_der(&cert.private_key)?.as_ref())?;
    b.check_private_key()?;
    // The MTU is str0m's, set per session; no renegotiation, no session tickets (a
    // WebRTC DTLS session is never resumed).
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    b.set_options(
        SslOptions::NO_QUERY_MTU
            | SslOptions::NO_RENEGOTIATION
            | SslOptions::NO_TICKET
            | SslOptions::SINGLE_ECDH_USE,
    );
    // Once the handshake is done a session's records are a rare alert: its record
    // buffers are given back while it idles, which is for as long as the viewer
    // watches (8 KiB less per finished session on OpenSSL 3.6; 3.0 frees its DTLS
    // buffers anyway; BENCHMARKS.md).
    b.set_mode(SslMode::RELEASE_BUFFERS);
    Ok(b.build())
}

/// Datagrams between OpenSSL and str0m: one `read` is one received datagram, one
/// `write` one datagram to send (OpenSSL writes each DTLS packet in one call when the
/// MTU is set).
#[derive(Default)]
struct Wire {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
}

impl io::Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(d) = self.incoming.pop_front() else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        // A datagram longer than OpenSSL's buffer is cut, as a socket would.
        let n = d.len().min(buf.len());
        buf[..n].copy_from_slice(&d[..n]);
        Ok(n)
    }
}

impl io::Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the engine has for str0m besides datagrams, in the order str0m takes it: the
/// peer's certificate (checked against the fingerprint) before the keys and the
/// `Connected` event.
enum Event {
    PeerCert(Vec<u8>),
    Keys(Vec<u8>, SrtpProfile),
    Connected,
    Data(Vec<u8>),
    CloseNotify,
}

/// Where the engine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before str0m has said which role we play.
    Idle,
    Handshaking,
    Open,
    /// A `close_notify` went out or came in.
    Closed,
    /// The handshake failed; every call returns an error.
    Failed,
}

pub(super) struct Engine {
    stream: SslStream<Wire>,
    /// `stream` is a spare: already the DTLS server, waiting for a ClientHello.
    waiting: bool,
    /// Where a new session comes from when a spare cannot serve.
    context: Arc<Context>,
    mtu: usize,
    active: bool,
    phase: Phase,
    events: VecDeque<Event>,
    slot: Option<KeySlot>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenSSL DTLS ({:?})", self.phase)
    }
}

impl Engine {
    pub(super) fn new(
        cert: &DtlsCert,
        mtu: Option<usize>,
        slot: Option<KeySlot>,
    ) -> Result<Self, CryptoError> {
        let context = context_for(cert)?;
        let mtu = mtu.unwrap_or(DEFAULT_MTU);
        let (stream, waiting) = match context.take(mtu) {
            Some(s) => (s, true),
            None => (
                new_session(&context.ssl, mtu).map_err(session_error)?,
                false,
            ),
        };
        Ok(Self {
            stream,
            waiting,
            context,
            mtu,
            active: false,
            phase: Phase::Idle,
            events: VecDeque::new(),
            slot,
        })
    }

    fn ssl_ptr(&self) -> *mut openssl_sys::SSL {
        use foreign_types::ForeignTypeRef;
        self.stream.ssl().as_ptr()
    }

    /// Moves the handshake on, then reads whatever application data arrived.
    fn drive(&mut self) -> Result<(), DtlsImplError> {
        if self.phase == Phase::Handshaking {
            let step = if self.active {
                self.stream.connect()
            } else {
                self.stream.accept()
            };
            match step {
                Ok(()) => self.opened()?,
                Err(e) if would_block(&e) => return Ok(()),
                Err(e) => return Err(self.fail("handshake", &e)),
            }
        }
        if self.phase != Phase::Open {
            return Ok(());
        }
        let mut buf = vec![0u8; MAX_RECORD];
        loop {
            match self.stream.ssl_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.events.push_back(Event::Data(buf[..n].to_vec())),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    // The peer's close_notify: answer it (RFC 5246 §7.2.1) and tell str0m.
                    let _ = self.stream.shutdown();
                    self.phase = Phase::Closed;
                    self.events.push_back(Event::CloseNotify);
                    break;
                }
                Err(e) if would_block(&e) => break,
                // A record that fails to decrypt is dropped by OpenSSL itself; what
                // reaches here ends the association.
                Err(e) => return Err(self.fail("read", &e)),
            }
        }
        Ok(())
    }

    /// The handshake finished: hand str0m the peer's certificate, the SRTP keys, and
    /// the news.
    fn opened(&mut self) -> Result<(), DtlsImplError> {
        let ssl = self.stream.ssl();
        let peer = ssl.peer_certificate().and_then(|c| c.to_der().ok());
        let profile = ssl.selected_srtp_profile().and_then(|p| profile_of(p.id()));
        let (Some(peer), Some(profile)) = (peer, profile) else {
            tracing::info!("DTLS: the peer sent no certificate or agreed no SRTP profile");
            self.phase = Phase::Failed;
            return Err(DtlsImplError::CertificateError(
                dimpl::CertificateError::NoClientCertificateReceived,
            ));
        };
        let mut material = vec![0u8; profile.keying_material_len()];
        if let Err(e) = ssl.export_keying_material(&mut material, EXPORTER_LABEL, None) {
            tracing::info!("DTLS: exporting the SRTP keys failed: {e}");
            self.phase = Phase::Failed;
            return Err(DtlsImplError::InvalidState(
                dimpl::InvalidStateError::ExporterMasterSecretNotDerived,
            ));
        }
        if let Some(slot) = &self.slot {
            slot.set(ExportedKeys {
                profile,
                material: material.clone(),
                dtls_client: self.active,
            });
        }
        self.phase = Phase::Open;
        self.events.push_back(Event::PeerCert(peer));
        self.events.push_back(Event::Keys(material, profile));
        self.events.push_back(Event::Connected);
        Ok(())
    }

    fn fail(&mut self, what: &str, e: &openssl::ssl::Error) -> DtlsImplError {
        // One line per failed association, at the level of a refused request: the
        // reason names what OpenSSL disliked (a certificate, a cipher, a bad record).
        let reason = e
            .ssl_error()
            .map(|s| s.to_string())
            .unwrap_or_else(|| format!("{:?}", e.code()));
        tracing::info!("DTLS {what} failed: {reason}");
        self.phase = Phase::Failed;
        DtlsImplError::CryptoError(dimpl::CryptoError::OperationFailed(
            dimpl::CryptoOperation::Decrypt,
        ))
    }

    /// When OpenSSL wants `DTLSv1_handle_timeout` called, if it has a flight out.
    fn deadline(&self) -> Option<Instant> {
        if self.phase != Phase::Handshaking {
            return None;
        }
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        // SAFETY: a live SSL object and a timeval for OpenSSL to fill.
        let running = unsafe {
            openssl_sys::SSL_ctrl(
                self.ssl_ptr(),
                DTLS_CTRL_GET_TIMEOUT,
                0,
                (&mut tv as *mut libc::timeval).cast::<c_void>(),
            )
        };
        (running > 0).then(|| {
            Instant::now()
                + Duration::from_secs(tv.tv_sec.max(0) as u64)
                + Duration::from_micros(tv.tv_usec.max(0) as u64)
        })
    }
}

fn would_block(e: &openssl::ssl::Error) -> bool {
    e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE
}

fn profile_of(id: SrtpProfileId) -> Option<SrtpProfile> {
    match id {
        SrtpProfileId::SRTP_AES128_CM_SHA1_80 => Some(SrtpProfile::AES128_CM_SHA1_80),
        SrtpProfileId::SRTP_AEAD_AES_128_GCM => Some(SrtpProfile::AEAD_AES_128_GCM),
        SrtpProfileId::SRTP_AEAD_AES_256_GCM => Some(SrtpProfile::AEAD_AES_256_GCM),
        _ => None,
    }
}

/// When nothing is due: str0m polls again after the next packet anyway.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

impl DtlsInstance for Engine {
    fn set_active(&mut self, active: bool) {
        if self.phase != Phase::Idle {
            return;
        }
        if active && self.waiting {
            // A spare waits as the server; the client role needs a session of its
            // own.
            match new_session(&self.context.ssl, self.mtu) {
                Ok(s) => {
                    self.stream = s;
                    self.waiting = false;
                }
                Err(e) => {
                    tracing::info!("DTLS session: {e}");
                    self.phase = Phase::Failed;
                    return;
                }
            }
        }
        let started = if self.waiting {
            &self.context.started_ready
        } else {
            &self.context.started_made
        };
        started.fetch_add(1, Ordering::Relaxed);
        self.active = active;
        self.phase = Phase::Handshaking;
        // The client's first flight goes out now; a server waits for it. An error
        // here is OpenSSL's, and the next call reports it.
        let _ = self.drive();
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        match self.phase {
            Phase::Failed => {
                return Err(DtlsImplError::CryptoError(
                    dimpl::CryptoError::OperationFailed(dimpl::CryptoOperation::Decrypt),
                ));
            }
            // After close_notify nothing more is read (a late retransmission is
            // not an error).
            Phase::Closed => return Ok(()),
            Phase::Idle | Phase::Handshaking | Phase::Open => {}
        }
        // str0m hands an empty packet to a new client to make it send its
        // ClientHello: not a datagram, only a nudge. The queue stays bounded: `drive`
        // reads every queued datagram and the rest is cleared.
        if !packet.is_empty() {
            self.stream.get_mut().incoming.push_back(packet.to_vec());
        }
        let r = self.drive();
        self.stream.get_mut().incoming.clear();
        r
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        if let Some(d) = self.stream.get_mut().outgoing.pop_front() {
            if d.len() > buf.len() {
                let needed = d.len();
                self.stream.get_mut().outgoing.push_front(d);
                return DtlsOutput::BufferTooSmall { needed };
            }
            buf[..d.len()].copy_from_slice(&d);
            return DtlsOutput::Packet(&buf[..d.len()]);
        }
        if let Some(event) = self.events.pop_front() {
            match event {
                Event::PeerCert(ref b) | Event::Data(ref b) if b.len() > buf.len() => {
                    // Kept for a larger buffer (str0m's is larger than any record).
                    let needed = b.len();
                    self.events.push_front(event);
                    return DtlsOutput::BufferTooSmall { needed };
                }
                Event::PeerCert(der) => {
                    buf[..der.len()].copy_from_slice(&der);
                    return DtlsOutput::PeerCert(&buf[..der.len()]);
                }
                Event::Keys(m, p) => return DtlsOutput::KeyingMaterial(KeyingMaterial::new(&m), p),
                Event::Connected => return DtlsOutput::Connected,
                Event::Data(d) => {
                    buf[..d.len()].copy_from_slice(&d);
                    return DtlsOutput::ApplicationData(&buf[..d.len()]);
                }
                Event::CloseNotify => return DtlsOutput::CloseNotify,
            }
        }
        DtlsOutput::Timeout(self.deadline().unwrap_or_else(far_future))
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), DtlsImplError> {
        if self.phase != Phase::Handshaking {
            return Ok(());
        }
        // SAFETY: a live SSL object; the control takes no argument.
        let r = unsafe {
            openssl_sys::SSL_ctrl(
                self.ssl_ptr(),
                DTLS_CTRL_HANDLE_TIMEOUT,
                0 as c_long,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            tracing::info!("DTLS handshake gave up: no answer to 12 copies of a flight");
            self.phase = Phase::Failed;
            return Err(DtlsImplError::Timeout(dimpl::TimeoutError::Handshake));
        }
        Ok(())
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        match self.phase {
            Phase::Open => {}
            Phase::Idle | Phase::Handshaking => return Ok(0),
            Phase::Closed => return Err(DtlsImplError::ConnectionClosed),
            Phase::Failed => {
                return Err(DtlsImplError::CryptoError(
                    dimpl::CryptoError::OperationFailed(dimpl::CryptoOperation::Encrypt),
                ));
            }
        }
        if data.is_empty() {
            return Ok(0);
        }
        match self.stream.ssl_write(data) {
            Ok(n) => Ok(n),
            Err(e) if would_block(&e) => Ok(0),
            Err(e) => Err(self.fail("write", &e)),
        }
    }

    fn is_active(&self) -> bool {
        self.active
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        matches!(self.phase, Phase::Open | Phase::Closed).then_some(ProtocolVersion::DTLS1_2)
    }

    fn is_closing(&self) -> bool {
        self.phase == Phase::Closed && !self.stream.get_ref().outgoing.is_empty()
    }

    fn is_closed(&self) -> bool {
        self.phase == Phase::Closed && self.stream.get_ref().outgoing.is_empty()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        if self.phase == Phase::Open {
            match self.stream.shutdown() {
                Ok(ShutdownResult::Sent | ShutdownResult::Received) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => tracing::debug!("DTLS close_notify: {e}"),
            }
        }
        if self.phase != Phase::Failed {
            self.phase = Phase::Closed;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FAST_DTLS, SERVER_DTLS};
    use super::*;
    use str0m::crypto::dtls::{DtlsProvider, DtlsVersion};

    /// An RSA 2048 self-signed certificate, as GStreamer's webrtcbin makes by default.
    fn rsa_cert() -> DtlsCert {
        let rsa = openssl::rsa::Rsa::generate(2048).unwrap();
        let key = PKey::from_rsa(rsa).unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "webrtcbin").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        DtlsCert {
            certificate: b.build().to_der().unwrap(),
            private_key: key.private_key_to_der().unwrap(),
        }
    }

    fn ecdsa_cert() -> DtlsCert {
        SERVER_DTLS.generate_certificate().unwrap()
    }

    #[derive(Default)]
    struct Seen {
        peer: Option<Vec<u8>>,
        keys: Option<(Vec<u8>, SrtpProfile)>,
        connected: bool,
        data: Vec<Vec<u8>>,
        close_notify: bool,
    }

    /// Moves one side's output to the other until both are quiet; returns what each
    /// reported.
    fn pump(
        a: &mut dyn DtlsInstance,
        b: &mut dyn DtlsInstance,
        seen: &mut [Seen; 2],
    ) -> Result<(), DtlsImplError> {
        let mut buf = vec![0u8; 4096];
        for _ in 0..50 {
            let mut moved = false;
            for (from, to, s) in [(0usize, 1usize, 0usize), (1, 0, 1)] {
                let (src, dst): (&mut dyn DtlsInstance, &mut dyn DtlsInstance) = if from == 0 {
                    (&mut *a, &mut *b)
                } else {
                    (&mut *b, &mut *a)
                };
                let _ = to;
                let mut packets = Vec::new();
                loop {
                    match src.poll_output(&mut buf) {
                        DtlsOutput::Packet(p) => packets.push(p.to_vec()),
                        DtlsOutput::PeerCert(c) => seen[s].peer = Some(c.to_vec()),
                        DtlsOutput::KeyingMaterial(k, p) => seen[s].keys = Some((k.to_vec(), p)),
                        DtlsOutput::Connected => seen[s].connected = true,
                        DtlsOutput::ApplicationData(d) => seen[s].data.push(d.to_vec()),
                        DtlsOutput::CloseNotify => seen[s].close_notify = true,
                        DtlsOutput::Timeout(_) => break,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                for p in packets {
                    moved = true;
                    dst.handle_packet(&p)?;
                }
            }
            if !moved {
                return Ok(());
            }
        }
        Ok(())
    }

    fn handshake(
        client: &dyn DtlsProvider,
        client_cert: &DtlsCert,
        server: &dyn DtlsProvider,
        server_cert: &DtlsCert,
    ) -> [Seen; 2] {
        let now = Instant::now();
        let mut c = client
            .new_dtls(client_cert, now, DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        let mut s = server
            .new_dtls(server_cert, now, DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        s.set_active(false);
        c.set_active(true);
        // dimpl makes its randoms on its first timeout, as str0m gives it.
        s.handle_timeout(now).unwrap();
        c.handle_timeout(now).unwrap();
        let mut seen = [Seen::default(), Seen::default()];
        pump(c.as_mut(), s.as_mut(), &mut seen).unwrap();
        assert!(seen[0].connected && seen[1].connected, "both ends connect");
        assert_eq!(seen[0].peer.as_deref(), Some(&server_cert.certificate[..]));
        assert_eq!(seen[1].peer.as_deref(), Some(&client_cert.certificate[..]));
        assert_eq!(seen[0].keys, seen[1].keys, "both ends export the same keys");
        // Application data (SCTP, for data channels) both ways.
        assert_eq!(c.send_application_data(b"ping").unwrap(), 4);
        assert_eq!(s.send_application_data(b"pong").unwrap(), 4);
        pump(c.as_mut(), s.as_mut(), &mut seen).unwrap();
        assert_eq!(seen[1].data, vec![b"ping".to_vec()]);
        assert_eq!(seen[0].data, vec![b"pong".to_vec()]);
        seen
    }

    #[test]
    fn a_close_reaches_the_peer_as_close_notify() {
        let now = Instant::now();
        let (cert_c, cert_s) = (ecdsa_cert(), ecdsa_cert());
        let mut c = FAST_DTLS
            .new_dtls(&cert_c, now, DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        let mut s = SERVER_DTLS
            .new_dtls(&cert_s, now, DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        s.set_active(false);
        c.set_active(true);
        c.handle_timeout(now).unwrap();
        let mut seen = [Seen::default(), Seen::default()];
        pump(c.as_mut(), s.as_mut(), &mut seen).unwrap();
        assert!(seen[1].connected);
        s.close().unwrap();
        pump(c.as_mut(), s.as_mut(), &mut seen).unwrap();
        assert!(
            seen[0].close_notify,
            "the client heard the server's close_notify"
        );
        assert!(s.is_closed());
        assert!(s.send_application_data(b"late").is_err());
    }

    #[test]
    fn a_dimpl_client_connects_to_the_server_engine() {
        handshake(&FAST_DTLS, &ecdsa_cert(), &SERVER_DTLS, &ecdsa_cert());
    }

    #[test]
    fn the_server_engine_as_client_connects_to_a_dimpl_server() {
        handshake(&SERVER_DTLS, &ecdsa_cert(), &FAST_DTLS, &ecdsa_cert());
    }

    #[test]
    fn two_server_engines_connect() {
        handshake(&SERVER_DTLS, &ecdsa_cert(), &SERVER_DTLS, &ecdsa_cert());
    }

    #[test]
    fn an_rsa_client_certificate_is_accepted() {
        // webrtcbin offering actpass: wishd answers passive and is the DTLS server.
        let seen = handshake(&SERVER_DTLS, &rsa_cert(), &SERVER_DTLS, &ecdsa_cert());
        assert!(seen[1].keys.is_some());
    }

    #[test]
    fn an_rsa_server_certificate_is_accepted() {
        // A peer that insists on being the DTLS server (setup:passive) with RSA.
        handshake(&SERVER_DTLS, &ecdsa_cert(), &SERVER_DTLS, &rsa_cert());
    }

    #[test]
    fn a_client_retransmits_its_first_flight_after_about_50_ms() {
        let now = Instant::now();
        let mut c = SERVER_DTLS
            .new_dtls(&ecdsa_cert(), now, DtlsVersion::Dtls12, None)
            .unwrap();
        let now = Instant::now();
        c.set_active(true);
        let mut buf = vec![0u8; 4096];
        let mut first = 0;
        let next = loop {
            match c.poll_output(&mut buf) {
                DtlsOutput::Packet(_) => first += 1,
                DtlsOutput::Timeout(t) => break t,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(first, 1, "the ClientHello goes out at once");
        let wait = next.saturating_duration_since(now);
        assert!(
            wait <= Duration::from_millis(60),
            "first retransmission after {wait:?}"
        );
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        c.handle_timeout(Instant::now()).unwrap();
        assert!(
            matches!(c.poll_output(&mut buf), DtlsOutput::Packet(_)),
            "a second copy"
        );
        assert_eq!(next_rto_us(50_000), 100_000);
        assert_eq!(next_rto_us(3_000_000), MAX_RTO.as_micros() as c_uint);
    }

    #[test]
    fn noise_before_the_client_hello_is_dropped_and_the_handshake_still_completes() {
        let now = Instant::now();
        let mut s = SERVER_DTLS
            .new_dtls(&ecdsa_cert(), now, DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        s.set_active(false);
        // Not DTLS at all; a record header whose length runs past its datagram; an
        // empty datagram (str0m's nudge).
        let noise: [&[u8]; 3] = [
            &[0xff; 40],
            &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1],
            &[],
        ];
        for n in noise {
            s.handle_packet(n)
                .expect("noise is dropped (RFC 6347 §4.1.2.7)");
        }
        let mut buf = vec![0u8; 4096];
        assert!(
            matches!(s.poll_output(&mut buf), DtlsOutput::Timeout(_)),
            "nothing is answered to noise"
        );
        let mut c = FAST_DTLS
            .new_dtls(&ecdsa_cert(), now, DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        c.set_active(true);
        c.handle_timeout(now).unwrap();
        let mut seen = [Seen::default(), Seen::default()];
        pump(c.as_mut(), s.as_mut(), &mut seen).unwrap();
        assert!(seen[0].connected && seen[1].connected);
    }

    #[test]
    fn a_malformed_client_hello_ends_that_handshake_with_an_error() {
        let mut s = SERVER_DTLS
            .new_dtls(
                &ecdsa_cert(),
                Instant::now(),
                DtlsVersion::Dtls12,
                Some(1150),
            )
            .unwrap();
        s.set_active(false);
        // A ClientHello whose handshake header claims 16 bytes and carries 8.
        let mut cut = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20];
        cut.extend_from_slice(&[1, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        cut.extend_from_slice(&[0xee; 8]);
        assert!(s.handle_packet(&cut).is_err());
        // The engine stays failed: str0m ends this session, no other.
        assert!(s.handle_packet(&cut).is_err());
        assert!(s.send_application_data(b"x").is_err());
    }

    /// Waits (up to 5 s) until `cert`'s context has `n` spares ready.
    fn spares_ready(cert: &DtlsCert, n: usize) -> Arc<Context> {
        let context = context_for(cert).unwrap();
        let t0 = Instant::now();
        while context.spares.lock().unwrap().ready.len() < n {
            assert!(t0.elapsed() < Duration::from_secs(5), "no spares made");
            std::thread::sleep(Duration::from_millis(5));
        }
        context
    }

    #[test]
    fn a_joining_session_takes_a_spare_made_ahead_and_both_roles_still_connect() {
        set_spares(3);
        let cert = ecdsa_cert();
        prepare(&cert).unwrap();
        let context = spares_ready(&cert, 3);
        let engine = Engine::new(&cert, Some(1150), None).unwrap();
        assert!(
            engine.waiting,
            "the session was made ahead, already the server"
        );
        drop(engine);
        // The refiller tops the spares up again.
        spares_ready(&cert, 3);
        // As the server (an actpass offer) and as the client (a passive one), a
        // session that starts from a spare finishes its handshake.
        let (s_cert, c_cert) = (cert.clone(), ecdsa_cert());
        handshake(&FAST_DTLS, &c_cert, &SERVER_DTLS, &s_cert);
        spares_ready(&cert, 3);
        handshake(&SERVER_DTLS, &s_cert, &FAST_DTLS, &c_cert);
        // Another MTU: the spares of the old one are not used.
        let other = Engine::new(&cert, Some(1000), None).unwrap();
        assert!(!other.waiting);
        assert_eq!(
            context.spares.lock().unwrap().mtu,
            1000,
            "the next are for it"
        );
        spares_ready(&cert, 3);
        assert!(Engine::new(&cert, Some(1000), None).unwrap().waiting);
    }

    #[test]
    fn sessions_share_a_context_per_certificate_and_few_are_kept() {
        let cert = ecdsa_cert();
        let a = context_for(&cert).unwrap();
        let b = context_for(&cert).unwrap();
        assert_eq!(
            foreign_types::ForeignType::as_ptr(&a.ssl),
            foreign_types::ForeignType::as_ptr(&b.ssl)
        );
        for _ in 0..10 {
            context_for(&ecdsa_cert()).unwrap();
        }
        assert!(CONTEXTS.lock().unwrap().len() <= CONTEXTS_KEPT);
    }

    #[test]
    fn dtls_1_3_is_refused_at_build() {
        let r = SERVER_DTLS.new_dtls(&ecdsa_cert(), Instant::now(), DtlsVersion::Dtls13, None);
        assert!(r.is_err());
    }
}
