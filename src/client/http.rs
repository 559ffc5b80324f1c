//! Minimal HTTP/1.1 client: one request per connection, whole body in and out, over
//! TCP or TLS (rustls with the system's CA bundle plus any CA added with
//! [`trust_ca_pem`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ClientError;

/// A whole HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// All headers in arrival order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body decoded as UTF-8, lossily.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// CA bundles tried for `https://`, first found wins (Debian/Ubuntu, Fedora/RHEL,
/// openSUSE, Alpine).
const SYSTEM_CA_FILES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

static EXTRA_CAS: std::sync::Mutex<Vec<rustls::pki_types::CertificateDer<'static>>> =
    std::sync::Mutex::new(Vec::new());

/// Trusts the certificates of a PEM file (a private or development CA) for
/// `https://` requests from now on, in this process.
pub fn trust_ca_pem(pem: &[u8]) -> Result<usize, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ClientError::Http(format!("CA file: {e}")))?;
    if certs.is_empty() {
        return Err(ClientError::Http("CA file holds no certificate".into()));
    }
    let n = certs.len();
    EXTRA_CAS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(certs);
    Ok(n)
}

fn tls_connector() -> Result<tokio_rustls::TlsConnector, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(bundle) = SYSTEM_CA_FILES.iter().find_map(|p| std::fs::read(p).ok()) {
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&bundle).flatten() {
            let _ = roots.add(cert);
        }
    }
    for cert in EXTRA_CAS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = roots.add(cert.clone());
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Http(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// Sends one HTTP/1.1 request to an `http://` or `https://` URL and reads the whole
/// response.
///
/// `headers` are added as given; `Host` is set from the URL. A `Content-Length`
/// is always sent (0 for an empty body). There is no redirect following or
/// connection reuse: this is a test tool. Gives up after 10 seconds.
pub async fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<HttpResponse, ClientError> {
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        request_inner(method, url, headers, body),
    )
    .await
    .map_err(|_| ClientError::Timeout("HTTP response"))?
}

/// Like [`http_request`], but a `429 Too Many Requests` with a `Retry-After` of at
/// most 5 seconds is waited out and the request sent again (up to 5 times): servers
/// rate-limit POST/PATCH/DELETE (RFC 9725 §5), and a test client should pace itself.
pub async fn http_request_patient(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<HttpResponse, ClientError> {
    let mut tries = 0;
    loop {
        let r = http_request(method, url, headers, body.clone()).await?;
        let wait = r
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s <= 5);
        match (r.status, wait) {
            (429, Some(secs)) if tries < 5 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_secs(secs.max(1))).await;
            }
            _ => return Ok(r),
        }
    }
}

async fn request_inner(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<HttpResponse, ClientError> {
    let (resp, _conn) = send(method, url, headers, body).await?;
    let status = resp.status().as_u16();
    let headers = header_list(&resp);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(format!("body: {e}")))?
        .to_bytes()
        .to_vec();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// The first of `headers` called `name` (case-insensitive), if any.
pub(super) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A response's headers in arrival order, names lowercased.
pub(super) fn header_list<B>(resp: &hyper::Response<B>) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The task that drives one request's connection; dropping it closes the connection.
pub(super) struct Connection(tokio::task::JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends one request and returns the response with its body still to be read, and
/// the connection it comes on.
pub(super) async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(hyper::Response<hyper::body::Incoming>, Connection), ClientError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| ClientError::Http(format!("bad URL {url:?}: {e}")))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(ClientError::Http(format!(
                "only http:// and https:// URLs: {url:?}"
            )));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| ClientError::Http(format!("no host in {url:?}")))?
        .clone();
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let host = authority.host().trim_matches(['[', ']']).to_owned();
    let stream = TcpStream::connect((host.as_str(), port)).await?;
    let (mut sender, conn) = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| ClientError::Http(format!("bad TLS name {host:?}: {e}")))?;
        let stream = tls_connector()?
            .connect(name, stream)
            .await
            .map_err(|e| ClientError::Http(format!("TLS: {e}")))?;
        handshake(stream).await?
    } else {
        handshake(stream).await?
    };

    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let method = hyper::Method::from_bytes(method.as_bytes())
        .map_err(|e| ClientError::Http(format!("bad method {method:?}: {e}")))?;
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::CONTENT_LENGTH, body.len());
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ClientError::Http(format!("request: {e}")))?;

    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(format!("send: {e}")))?;
    Ok((resp, conn))
}

async fn handshake<S>(
    stream: S,
) -> Result<
    (
        hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        Connection,
    ),
    ClientError,
>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ClientError::Http(format!("handshake: {e}")))?;
    let conn = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("http client connection: {e}");
        }
    });
    Ok((sender, Connection(conn)))
}

/// Resolves a (possibly relative) `Location` against the URL of the request.
///
/// Handles absolute URLs, scheme-relative (`//host/..`), absolute-path (`/..`) and
/// path-relative references; query and fragment of the base are dropped. Dot
/// segments are not normalised.
pub fn resolve_url(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("http", base));
    if let Some(stripped) = location.strip_prefix("//") {
        return format!("{scheme}://{stripped}");
    }
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    format!("{scheme}://{authority}{dir}{location}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use std::convert::Infallible;
    use tokio::net::TcpListener;

    /// Serves a few canned answers on 127.0.0.1:0; echoes method, path and body.
    async fn start_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let svc = service_fn(|req: hyper::Request<Incoming>| async move {
                        let method = req.method().to_string();
                        let path = req.uri().path().to_string();
                        let auth = req
                            .headers()
                            .get("authorization")
                            .map(|v| v.to_str().unwrap_or("").to_string())
                            .unwrap_or_default();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let resp = match path.as_str() {
                            "/whip/cam1" => hyper::Response::builder()
                                .status(201)
                                .header("Content-Type", "application/sdp")
                                .header("Location", "/whip/cam1/abc")
                                .header("ETag", "\"e1\"")
                                .body(Full::new(Bytes::from(format!(
                                    "{method} {auth} {}",
                                    String::from_utf8_lossy(&body)
                                )))),
                            "/whep/none" => hyper::Response::builder()
                                .status(409)
                                .header("Retry-After", "1")
                                .body(Full::new(Bytes::from("no source\n"))),
                            _ => hyper::Response::builder()
                                .status(404)
                                .body(Full::new(Bytes::from(format!("{method} {path}")))),
                        };
                        Ok::<_, Infallible>(resp.unwrap())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn requests_and_statuses() {
        let base = start_server().await;
        let url = format!("{base}/whip/cam1");
        let r = http_request(
            "POST",
            &url,
            &[
                ("Content-Type", "application/sdp"),
                ("Authorization", "Bearer t0k"),
            ],
            b"v=0".to_vec(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.header("content-type"), Some("application/sdp"));
        assert_eq!(r.header("ETAG"), Some("\"e1\""));
        assert_eq!(r.text(), "POST Bearer t0k v=0");
        let loc = resolve_url(&url, r.header("location").unwrap());
        assert_eq!(loc, format!("{base}/whip/cam1/abc"));

        let r = http_request("DELETE", &loc, &[], Vec::new()).await.unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.text(), "DELETE /whip/cam1/abc");

        let r = http_request("POST", &format!("{base}/whep/none"), &[], b"x".to_vec())
            .await
            .unwrap();
        assert_eq!(r.status, 409);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.text(), "no source\n");
    }

    #[tokio::test]
    async fn bad_urls_and_refused_connections() {
        assert!(matches!(
            http_request("GET", "not a url", &[], vec![]).await,
            Err(ClientError::Http(_))
        ));
        assert!(matches!(
            http_request("GET", "ftp://127.0.0.1:1/", &[], vec![]).await,
            Err(ClientError::Http(_))
        ));
        // Bind then drop to find a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert!(matches!(
            http_request("GET", &format!("http://127.0.0.1:{port}/"), &[], vec![]).await,
            Err(ClientError::Io(_))
        ));
    }

    #[test]
    fn resolves_locations() {
        let base = "http://127.0.0.1:8080/whip/cam1?x=1";
        assert_eq!(
            resolve_url(base, "/whip/cam1/3f2a"),
            "http://127.0.0.1:8080/whip/cam1/3f2a"
        );
        assert_eq!(
            resolve_url(base, "cam1/3f2a"),
            "http://127.0.0.1:8080/whip/cam1/3f2a"
        );
        assert_eq!(
            resolve_url(base, "http://other:1/s/1"),
            "http://other:1/s/1"
        );
        assert_eq!(resolve_url(base, "//h:2/s"), "http://h:2/s");
        assert_eq!(resolve_url("http://h:3", "s/1"), "http://h:3/s/1");
    }
}
