//! SIGHUP reloads the HTTPS certificate without touching sessions: after the reload
//! only clients that trust the new CA connect, and a viewer keeps receiving media
//! throughout. In its own test binary because it signals its own process.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use wishd::client::{PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher};
use wishd::config::HttpsConfig;
use wishd::http::tls::{generate_dev_certs, write_dev_certs};

fn fresh_certs(dir: &Path) {
    let certs = generate_dev_certs(&["localhost".into()]).unwrap();
    write_dev_certs(dir, &certs).unwrap();
}

async fn handshake(addr: std::net::SocketAddr, ca: &CertificateDer<'static>) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_swaps_the_certificate_while_media_keeps_flowing() {
    let dir: PathBuf = std::env::temp_dir().join(format!("wishd-reload-{}", std::process::id()));
    fresh_certs(&dir);
    let old_ca = CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap();
    let https = HttpsConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    let server = common::start_with(|c| c.https = Some(https)).await;
    let addr = server.https_addr().unwrap();
    assert!(handshake(addr, &old_ca).await);

    let base = server.base_url();
    let publisher = WhipPublisher::connect(&format!("{base}/whip/s"), PublisherOptions::default())
        .await
        .unwrap();
    publisher.wait_connected(common::CONNECT).await.unwrap();
    let viewer = WhepViewer::connect(&format!("{base}/whep/s"), ViewerOptions::default())
        .await
        .unwrap();
    viewer.wait_connected(common::CONNECT).await.unwrap();
    viewer
        .wait_for(common::CONNECT, |p| p.len() >= 10)
        .await
        .unwrap();

    fresh_certs(&dir);
    let new_ca = CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap();
    // SAFETY: kill(2) on our own pid with SIGHUP, whose handler the server installed.
    let rc = unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
    assert_eq!(rc, 0);
    let mut swapped = false;
    for _ in 0..50 {
        if handshake(addr, &new_ca).await {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swapped, "the new certificate is served after SIGHUP");
    assert!(!handshake(addr, &old_ca).await, "the old one is gone");

    let before = viewer.received_count();
    viewer
        .wait_for(common::CONNECT, |p| p.len() >= before + 20)
        .await
        .expect("the session kept receiving media across the reload");
    assert!(viewer.is_connected());
    assert_eq!(viewer.delete().await.unwrap(), 200);
    assert_eq!(publisher.delete().await.unwrap(), 200);
    server.shutdown().await;
}
