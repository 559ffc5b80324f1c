//! Negative control: against a deliberately wrong WHIP server the rows fail. A tiny
//! hyper server answers like a careless implementation (wrong statuses, no ETag, no
//! Allow, echoing the offer as the answer, accepting anything), and the runner must
//! say so row by row and fail the run.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use wishd_conformance::{Mode, Options, Outcome, Report, run};

/// How the careless server answers a POST of an offer.
#[derive(Clone, Copy)]
enum Post {
    /// 201 with text/plain, a sequential Location, no ETag, the offer echoed back.
    Sloppy201,
    /// 200 with the echoed offer and no Location.
    Plain200,
}

async fn handle(req: Request<Incoming>, post: Post, n: Arc<AtomicU32>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let resp = Response::builder();
    let resp = match method.as_str() {
        "POST" => match post {
            Post::Sloppy201 => resp
                .status(201)
                .header("content-type", "text/plain")
                .header(
                    "location",
                    format!("/whip/x/{}", n.fetch_add(1, Ordering::Relaxed)),
                ),
            Post::Plain200 => resp.status(200).header("content-type", "application/sdp"),
        }
        .body(Full::new(body)),
        // PATCH and DELETE always "work"; GET and PUT are 405 without Allow.
        "PATCH" | "DELETE" => resp.status(200).body(Full::new(Bytes::new())),
        "OPTIONS" => resp.status(204).body(Full::new(Bytes::new())),
        _ => resp.status(405).body(Full::new(Bytes::new())),
    };
    resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn careless_server(post: Post) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let n = Arc::new(AtomicU32::new(1));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = n.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let n = n.clone();
                    async move { Ok::<_, Infallible>(handle(req, post, n).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    format!("http://{addr}/whip/x")
}

fn outcome(report: &Report, id: &str) -> Outcome {
    report
        .row(id)
        .unwrap_or_else(|| panic!("{id} did not run:\n{}", report.table()))
        .outcome
}

/// True when some row with this id failed (an id can head an HTTP and a media row).
fn failed(report: &Report, id: &str) -> bool {
    report
        .rows
        .iter()
        .any(|r| r.id == id && r.outcome == Outcome::Fail)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_careless_server_fails_the_rows_it_breaks() {
    let url = careless_server(Post::Sloppy201).await;
    let mut opts = Options::new(url, Mode::Whip);
    opts.timeout = std::time::Duration::from_secs(2);
    let report = run(&opts).await;
    println!(
        "\n== wishd-conformance against a careless server\n{}",
        report.table()
    );
    assert!(!report.passed(), "MUST rows failed, so the run fails");
    for id in [
        "WHIP-03", // 201 but text/plain
        "WHIP-07", // the echoed offer says sendonly, not recvonly
        "WHIP-26", // the echoed "answer" is the client's own offer: ICE cannot come up
        "WHIP-01", // GET is 405
        "WHIP-14", // no CORS
        "WHIP-15", // no Accept-Post
        "WHIP-05", // text/plain accepted
        "EXT-H1",  // 405 without Allow
        "WHIP-18", // PATCH of any type "works"
        "WHIP-22", // no 428/412
        "WHIP-10", // DELETE never 404s
        "WHIP-54", // sequential session ids
    ] {
        assert!(failed(&report, id), "{id}\n{}", report.table());
    }
    assert_eq!(
        outcome(&report, "WHIP-09"),
        Outcome::Skip,
        "no ETag: restart rows are not claimed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_200_instead_of_201_fails_session_creation() {
    let url = careless_server(Post::Plain200).await;
    let mut opts = Options::new(url, Mode::Whip);
    opts.media = false;
    let report = run(&opts).await;
    println!(
        "\n== wishd-conformance against a 200-instead-of-201 server\n{}",
        report.table()
    );
    assert!(!report.passed());
    let row = report.row("WHIP-03").unwrap();
    assert_eq!(row.outcome, Outcome::Fail);
    assert!(row.detail.contains("200"), "{}", row.detail);
}
