//! HTTPS: a rustls `ServerConfig` (aws-lc-rs provider, ALPN `h2` and `http/1.1`) whose
//! certificate can be swapped while connections and sessions go on (SIGHUP), and a
//! generator for a local development CA and server certificate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The PEM holds no certificate, or no usable key.
    #[error("{0}")]
    Invalid(String),
}

/// Builds a rustls certified key from PEM text (sans-IO): the certificate chain, leaf
/// first, and a PKCS#8, PKCS#1 or SEC1 private key.
pub(crate) fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Invalid("no certificate in the PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Invalid(format!("private key PEM: {e}")))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let ck = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| TlsError::Invalid(format!("certificate and key: {e}")))?;
    Ok(ck)
}

/// The certificate in use, swappable without locks on the handshake path.
pub(crate) struct CertResolver {
    current: ArcSwap<CertifiedKey>,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

impl CertResolver {
    /// Loads the certificate and key files.
    pub(crate) fn load(cert_path: &Path, key_path: &Path) -> Result<CertResolver, TlsError> {
        let ck = certified_key(&read(cert_path)?, &read(key_path)?)?;
        Ok(CertResolver {
            current: ArcSwap::from_pointee(ck),
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
        })
    }

    /// Reads the files again and swaps the certificate in for new handshakes. On error
    /// the old certificate stays in use.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let ck = certified_key(&read(&self.cert_path)?, &read(&self.key_path)?)?;
        self.current.store(Arc::new(ck));
        Ok(())
    }

    #[cfg(test)]
    /// The certificate chain in use (leaf first).
    pub(crate) fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.load().cert.clone()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A rustls server configuration with the aws-lc-rs provider (as str0m) and ALPN for
/// HTTP/2 and HTTP/1.1.
pub(crate) fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A development CA and a server certificate it signed, all PEM.
pub struct DevCerts {
    /// The CA certificate: what browsers, OBS or test clients are told to trust.
    pub(crate) ca_cert: String,
    /// The CA's private key (to sign more server certificates).
    pub(crate) ca_key: String,
    /// The server certificate chain: the leaf, then the CA.
    pub(crate) server_cert: String,
    /// The server's private key.
    pub(crate) server_key: String,
}

/// Makes a development CA and a server certificate for `hosts` (DNS names or IP
/// addresses), valid for about a year. ECDSA P-256 keys.
pub fn generate_dev_certs(hosts: &[String]) -> Result<DevCerts, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let bad = |e: rcgen::Error| TlsError::Invalid(format!("certificate generation: {e}"));
    if hosts.is_empty() {
        return Err(TlsError::Invalid("give at least one host name".into()));
    }
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "wishd development CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut ca);
    let ca_key = KeyPair::generate().map_err(bad)?;
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = CertifiedIssuer::self_signed(ca, ca_key).map_err(bad)?;

    let mut leaf = CertificateParams::new(hosts.to_vec()).map_err(bad)?;
    leaf.distinguished_name.push(DnType::CommonName, &hosts[0]);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut leaf);
    let leaf_key = KeyPair::generate().map_err(bad)?;
    let cert = leaf.signed_by(&leaf_key, &issuer).map_err(bad)?;
    Ok(DevCerts {
        ca_cert: issuer.pem(),
        ca_key: ca_key_pem,
        server_cert: format!("{}{}", cert.pem(), issuer.pem()),
        server_key: leaf_key.serialize_pem(),
    })
}

/// Validity: from January 1 of this year to January 1 two years on.
fn set_validity(params: &mut rcgen::CertificateParams) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let year = 1970 + (secs / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
}

/// Writes `ca.pem`, `ca.key`, `server.pem` and `server.key` into `dir`; the keys are
/// readable by the owner only.
pub fn write_dev_certs(dir: &Path, certs: &DevCerts) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text, private) in [
        ("ca.pem", &certs.ca_cert, false),
        ("ca.key", &certs.ca_key, true),
        ("server.pem", &certs.server_cert, false),
        ("server.key", &certs.server_key, true),
    ] {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(name);
        // Keys are created owner-only, so they are never readable by others.
        let mode = if private { 0o600 } else { 0o644 };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)?;
        f.write_all(text.as_bytes())?;
        if private {
            use std::os::unix::fs::PermissionsExt;
            // An older file keeps its mode on open: tighten it too.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certs_load_and_chain_to_the_ca() {
        let c = generate_dev_certs(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let ck = certified_key(c.server_cert.as_bytes(), c.server_key.as_bytes()).unwrap();
        assert_eq!(ck.cert.len(), 2, "leaf and CA");
        let ca = CertificateDer::from_pem_slice(c.ca_cert.as_bytes()).unwrap();
        assert_eq!(ck.cert[1], ca);
    }

    #[test]
    fn garbage_pem_is_an_error_not_a_panic() {
        assert!(certified_key(b"nope", b"nope").is_err());
        let c = generate_dev_certs(&["localhost".into()]).unwrap();
        // A key that does not belong to the certificate.
        assert!(certified_key(c.server_cert.as_bytes(), c.ca_key.as_bytes()).is_err());
    }

    #[test]
    fn the_server_config_offers_h2_and_http11() {
        let dir = std::env::temp_dir().join(format!("wishd-tls-unit-{}", std::process::id()));
        let c = generate_dev_certs(&["localhost".into()]).unwrap();
        write_dev_certs(&dir, &c).unwrap();
        let r =
            Arc::new(CertResolver::load(&dir.join("server.pem"), &dir.join("server.key")).unwrap());
        let before = r.chain();
        let c2 = generate_dev_certs(&["localhost".into()]).unwrap();
        write_dev_certs(&dir, &c2).unwrap();
        r.reload().unwrap();
        assert_ne!(before, r.chain(), "reload swapped the certificate");
        let cfg = server_config(r).unwrap();
        assert_eq!(
            cfg.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
