//! HTTPS through rustls: a client that trusts the dev CA speaks HTTP/1.1 and HTTP/2
//! (chosen by ALPN), a WHIP publisher and a WHEP viewer signal over TLS, and a
//! certificate reload on SIGHUP swaps the certificate while the session keeps
//! receiving media.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use wishd::client::{PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher};
use wishd::config::{HttpsConfig, Policy, Secret, StaticTokenConfig};
use wishd::http::tls::{generate_dev_certs, write_dev_certs};
use wishd::model::Role;
use wishd::server::Server;

fn cert_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wishd-https-{}-{name}", std::process::id()));
    let certs = generate_dev_certs(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    write_dev_certs(&dir, &certs).unwrap();
    dir
}

fn connector(ca_dir: &Path, alpn: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_file(ca_dir.join("ca.pem")).unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn start_https(dir: &Path) -> Server {
    let https = HttpsConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    common::start_with(|c| c.https = Some(https)).await
}

/// One request over TLS with the given ALPN; returns the HTTP version and status.
async fn tls_request(
    server: &Server,
    ca_dir: &Path,
    alpn: &[u8],
    method: &str,
    path: &str,
) -> Result<(hyper::Version, u16), String> {
    let addr = server.https_addr().unwrap();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector(ca_dir, alpn)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let negotiated = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
    assert_eq!(negotiated.as_deref(), Some(alpn), "ALPN");
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("https://localhost:{}{path}", addr.port()))
        .header("origin", "https://player.example")
        .header("access-control-request-method", "POST")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = if alpn == b"h2" {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = req;
        req.headers_mut().insert(
            "host",
            format!("localhost:{}", addr.port()).parse().unwrap(),
        );
        send.send_request(req).await.map_err(|e| e.to_string())?
    };
    let version = resp.version();
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Ok((version, status))
}

/// A plain-TCP front on `listener` that opens a TLS connection to wishd for every
/// connection it accepts, so the HTTP-only test client signals over HTTPS end to end.
/// wishd sees TLS, so its `public_url` must name the front for `Location` to lead back.
async fn tls_front(listener: TcpListener, server: &Server, ca_dir: &Path) -> String {
    let local = listener.local_addr().unwrap();
    let target = server.https_addr().unwrap();
    let connector = connector(ca_dir, b"http/1.1");
    tokio::spawn(async move {
        while let Ok((mut plain, _)) = listener.accept().await {
            let connector = connector.clone();
            tokio::spawn(async move {
                let Ok(tcp) = TcpStream::connect(target).await else {
                    return;
                };
                let name = ServerName::try_from("localhost").unwrap();
                let Ok(mut tls) = connector.connect(name, tcp).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut plain, &mut tls).await;
            });
        }
    });
    format!("http://{local}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_speaks_http11_and_h2_by_alpn_next_to_plain_http() {
    let dir = cert_dir("alpn");
    let server = start_https(&dir).await;
    let (v, status) = tls_request(&server, &dir, b"h2", "OPTIONS", "/whip/s")
        .await
        .unwrap();
    assert_eq!((v, status), (hyper::Version::HTTP_2, 200));
    let (v, status) = tls_request(&server, &dir, b"http/1.1", "OPTIONS", "/whep/s")
        .await
        .unwrap();
    assert_eq!((v, status), (hyper::Version::HTTP_11, 200));
    // The plain listener is still there.
    let r = wishd::client::http_request(
        "OPTIONS",
        &format!("{}/whip/s", server.base_url()),
        &[],
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    // A client that does not trust the dev CA fails the handshake.
    let other = cert_dir("untrusted");
    assert!(
        tls_request(&server, &other, b"h2", "OPTIONS", "/whip/s")
            .await
            .is_err()
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_publish_and_whep_view_over_https() {
    let dir = cert_dir("media");
    let https = HttpsConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_url = format!("http://{}", listener.local_addr().unwrap());
    let server = common::start_with(|c| {
        c.https = Some(https);
        c.public_url = Some(front_url.clone());
        c.auth.publish = Policy::Token;
        c.auth.tokens.push(StaticTokenConfig {
            token: Some(Secret::new("https-stream-key")),
            token_file: None,
            streams: vec!["s".into()],
            actions: vec![Role::Publisher],
        });
    })
    .await;
    let front = tls_front(listener, &server, &dir).await;
    let refused =
        match WhipPublisher::connect(&format!("{front}/whip/s"), PublisherOptions::default()).await
        {
            Ok(_) => panic!("published over HTTPS without a token"),
            Err(e) => e,
        };
    assert!(refused.to_string().contains("401"), "{refused}");
    let publisher = WhipPublisher::connect(
        &format!("{front}/whip/s"),
        PublisherOptions {
            token: Some("https-stream-key".into()),
            ..PublisherOptions::default()
        },
    )
    .await
    .expect("publish over HTTPS");
    publisher.wait_connected(common::CONNECT).await.unwrap();
    let viewer = WhepViewer::connect(&format!("{front}/whep/s"), ViewerOptions::default())
        .await
        .expect("view over HTTPS");
    viewer.wait_connected(common::CONNECT).await.unwrap();
    viewer
        .wait_for(common::CONNECT, |p| p.len() >= 20)
        .await
        .expect("media flows");
    assert_eq!(viewer.delete().await.unwrap(), 200, "DELETE over HTTPS");
    assert_eq!(publisher.delete().await.unwrap(), 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_can_be_turned_off() {
    let dir = cert_dir("only");
    let https = HttpsConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    let server = common::start_with(|c| {
        c.https = Some(https);
        c.plain_http = false;
    })
    .await;
    assert!(
        server.base_url().starts_with("https://"),
        "{}",
        server.base_url()
    );
    assert_eq!(Some(server.http_addr()), server.https_addr());
    let (v, status) = tls_request(&server, &dir, b"h2", "OPTIONS", "/whip/s")
        .await
        .unwrap();
    assert_eq!((v, status), (hyper::Version::HTTP_2, 200));
    // The stats count one accept loop fewer: grace clock, HTTPS, SIGHUP, workers.
    let stats = server.stats().await;
    assert_eq!(stats.server_tasks, 3 + server.udp_addrs().len());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_str0m_peers_signal_over_https_and_location_says_https() {
    let dir = cert_dir("peers");
    let server = start_https(&dir).await;
    let ca = std::fs::read(dir.join("ca.pem")).unwrap();
    wishd::client::trust_ca_pem(&ca).unwrap();
    let base = format!("https://localhost:{}", server.https_addr().unwrap().port());
    let p = WhipPublisher::connect(&format!("{base}/whip/tls"), PublisherOptions::default())
        .await
        .expect("publish over HTTPS");
    assert!(
        p.location().starts_with(&format!("{base}/whip/tls/")),
        "Location names the HTTPS listener: {}",
        p.location()
    );
    let v = WhepViewer::connect(&format!("{base}/whep/tls"), ViewerOptions::default())
        .await
        .expect("play over HTTPS");
    v.wait_for(common::CONNECT, |pk| pk.len() >= 10)
        .await
        .expect("media flows");
    assert_eq!(v.delete().await.unwrap(), 200);
    assert_eq!(p.delete().await.unwrap(), 200);
    server.shutdown().await;
}
