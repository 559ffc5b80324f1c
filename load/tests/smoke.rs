//! The load tool cannot rot: an in-process wishd, the synthetic publisher and five
//! viewers for five seconds through the library API, and the benchmark itself in
//! miniature. Generous bounds only: this proves the tool works end to end, not how
//! fast anything is.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use wishd_load::bench::{BenchConfig, bench};
use wishd_load::publisher::PublisherConfig;
use wishd_load::run::{RunConfig, print_report, run};
use wishd_load::swarm::SwarmConfig;

fn swarm(url: String) -> SwarmConfig {
    SwarmConfig::new(url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_viewers_join_and_receive_the_stream_with_little_loss() {
    let server = common::open_server().await;
    let base = format!("http://{}", server.http_addr());

    let report = run(RunConfig {
        publisher: Some(PublisherConfig::standard(format!("{base}/whip/smoke"))),
        swarm: swarm(format!("{base}/whep/smoke")),
        viewers: 5,
        ramp_per_sec: 20.0,
        connect_timeout: Duration::from_secs(10),
        duration: Duration::from_secs(5),
        server_pid: Some(std::process::id()),
    })
    .await
    .expect("run completes");
    print_report(&report);

    let a = &report.aggregate;
    assert_eq!(a.viewers, 5);
    for v in &report.viewers {
        assert!(v.error.is_none(), "viewer {} failed: {:?}", v.id, v.error);
        assert!(v.connected, "viewer {} not connected", v.id);
        assert!(v.join_ms.is_some(), "viewer {} never saw a keyframe", v.id);
        // 5 s of ~310 packets/s; at least half must be there.
        assert!(
            v.received > 700,
            "viewer {} got {} packets",
            v.id,
            v.received
        );
        assert!(
            v.delay_p50_us.is_some(),
            "viewer {} has no delay figure",
            v.id
        );
    }
    assert!(a.loss_pct < 5.0, "loss {:.2} %", a.loss_pct);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulcast_publisher_sends_every_layer_and_viewers_get_the_top_one() {
    use wishd_load::clock::SendTable;
    use wishd_load::publisher::{Publisher, simulcast_layers};
    let server = common::open_server().await;
    let base = format!("http://{}", server.http_addr());
    let mut cfg = PublisherConfig::standard(format!("{base}/whip/sim"));
    cfg.simulcast = Some(simulcast_layers(2_500_000, 30, 2.0, 1200));

    // wishd takes the three layers.
    let table = Arc::new(SendTable::default());
    let publisher = Publisher::start(cfg.clone(), table)
        .await
        .expect("publisher");
    assert_eq!(
        publisher.layers_sent.len(),
        3,
        "{:?}",
        publisher.layers_sent
    );
    assert!(publisher.wait_connected(Duration::from_secs(10)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = publisher.counters();
    let video = c.video_packets.load(Ordering::Relaxed);
    let top = c.top_layer_packets.load(Ordering::Relaxed);
    assert!(top > 50, "{top} top-layer packets");
    assert!(
        video > top,
        "{video} video packets in all, {top} of the top layer"
    );
    publisher.stop().await;

    // Viewers start on the top layer (loopback carries it) and time it through the
    // send table's track of that layer.
    let report = run(RunConfig {
        publisher: Some(cfg),
        swarm: swarm(format!("{base}/whep/sim")),
        viewers: 3,
        ramp_per_sec: 20.0,
        connect_timeout: Duration::from_secs(10),
        duration: Duration::from_secs(3),
        server_pid: None,
    })
    .await
    .expect("run completes");
    for v in &report.viewers {
        assert!(v.connected && v.join_ms.is_some(), "viewer {}: {v:?}", v.id);
        assert!(v.received > 400, "viewer {} got {}", v.id, v.received);
        assert!(v.delay_p50_us.is_some(), "viewer {} has no delay", v.id);
    }
    assert!(report.aggregate.loss_pct < 5.0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_bench_reports_steps_the_hand_over_floor_and_both_bursts() {
    let server = common::open_server().await;
    let base = format!("http://{}", server.http_addr());
    let report = bench(
        BenchConfig {
            publisher: PublisherConfig::standard(format!("{base}/whip/bench")),
            swarm: swarm(format!("{base}/whep/bench")),
            server_pid: std::process::id(),
            metrics_url: Some(format!("{base}/metrics")),
            steps: vec![1, 3],
            step_window: Duration::from_secs(2),
            settle: Duration::from_millis(500),
            ramp_per_sec: 50.0,
            loss_stop_pct: 50.0,
            total_cap: Duration::from_secs(60),
            burst: 5,
            post_offer: Some(("Chromium's".into(), captured("whep_chromium.sdp"))),
            whip_offer: Some(("Chromium's WHIP".into(), captured("whip_chromium.sdp"))),
            floor_budget: Duration::from_millis(20),
        },
        |m| eprintln!("bench: {m}"),
    )
    .await
    .expect("bench completes");
    wishd_load::bench::print(&report);

    assert_eq!(report.steps.len(), 2, "stopped: {}", report.stopped);
    for s in &report.steps {
        assert_eq!(s.connected, s.viewers, "step {}", s.viewers);
        // 2 s of hand-overs every 2 ms: a p50 and a p99 in every step.
        assert!(s.wake_p50_us.is_some() && s.wake_p99_us >= s.wake_p50_us);
        // /proc/stat of a Linux host: the steal share is a share.
        assert!(s.steal_pct.is_some_and(|p| (0.0..=100.0).contains(&p)));
        // wishd's worker gauges: busy a little, and no hold by default.
        assert!(s.worker_busy.is_some_and(|b| (0.0..=1.0).contains(&b)));
        assert_eq!(s.hold_ms, Some(0.0));
    }
    assert!(report.idle_wake_p50_us.is_some());
    let burst = report.burst.expect("a burst");
    assert_eq!(burst.connected, 5, "first error: {:?}", burst.first_error);
    // The HTTP floor beside it: five requests at once to a server that does nothing.
    assert!(burst.empty_p99_ms.is_some() && burst.empty_p99_ms >= burst.empty_p50_ms);
    let posts = burst.post_only.expect("the POST-only burst");
    assert_eq!((posts.posts, posts.created), (5, 5));
    assert!(posts.post_p99_ms.is_some());
    // The bound follows from the CPU it measured; the figure for 5 ms is the target
    // spread over this machine's cores for the 5th of 5 answers (≤ 5 ms).
    let (cpu, bound) = (
        posts.server_cpu_ms_per_post.expect("server CPU read"),
        posts.p99_bound_ms.expect("a bound"),
    );
    assert!(
        bound >= cpu,
        "bound {bound} ms below one POST's CPU {cpu} ms"
    );
    assert!(posts.cpu_for_target_us > 0.0 && posts.cpu_for_target_us <= 5000.0);
    // Split by thread: wishd's media workers take the sessions over, its HTTP threads
    // do the rest; an OPTIONS on a new connection is the request floor beside it.
    assert!(
        posts
            .media_cpu_ms_per_post
            .is_some_and(|m| m > 0.0 && m < cpu),
        "media workers' part of {cpu} ms: {:?}",
        posts.media_cpu_ms_per_post
    );
    assert!(burst.options_server_cpu_ms.is_some_and(|o| o > 0.0));
    // Each session then trickles a candidate (204) and is deleted (200), at once, and
    // what that cost the server is read from its threads' clocks.
    for (what, r) in [("PATCH", &posts.patch), ("DELETE", &posts.delete)] {
        let r = r.as_ref().expect(what);
        assert_eq!((r.requests, r.ok), (5, 5), "{what}: {r:?}");
        assert!(
            r.server_cpu_ms_per_request.is_some_and(|c| c > 0.0),
            "{what}: {r:?}"
        );
    }
    // The viewers' offers are written as a browser's player writes them, so they
    // differ only in their own values, and wishd parsed their template before (the
    // steps' viewers): every POST of the burst is answered from it.
    assert_eq!(
        (posts.templates_parsed, posts.templates_copied),
        (Some(0.0), Some(5.0))
    );
    assert_eq!(
        (posts.inspections_parsed, posts.inspections_remembered),
        (Some(0.0), Some(5.0))
    );
    // Then five clients of a captured Chromium player at once: wishd's inspection
    // reads the first whole on each of the runtime's two threads, at most, and gives
    // the others that verdict.
    let chromium = burst.post_captured.expect("the captured offer's burst");
    assert_eq!((chromium.posts, chromium.created), (5, 5));
    let (whole, remembered) = (
        chromium.inspections_parsed.expect("counted"),
        chromium.inspections_remembered.expect("counted"),
    );
    assert!(
        whole + remembered == 5.0 && (1.0..=2.0).contains(&whole),
        "{whole} read whole, {remembered} remembered"
    );
    // And five publishers of a captured Chromium WHIP offer, a stream each, whose
    // SSRCs differ: wishd answers each, and they are deleted.
    let whip = burst.whip_captured.expect("the WHIP burst");
    assert_eq!((whip.posts, whip.created), (5, 5));
    assert!(whip.server_cpu_ms_per_post.is_some_and(|c| c > 0.0));
    let delete = whip.delete.expect("the WHIP sessions deleted");
    assert_eq!((delete.requests, delete.ok), (5, 5));
    server.shutdown().await;
}

/// A captured offer of the fuzz seeds (`fuzz/seeds/sdp_offer/`).
fn captured(name: &str) -> String {
    let path = format!(
        "{}/../fuzz/seeds/sdp_offer/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A server that answers every POST with a 201, a `Location` and an answer no peer
/// can apply, and records the paths it is asked to DELETE.
async fn refusing_server() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let deleted = Arc::new(Mutex::new(Vec::new()));
    let seen = deleted.clone();
    let posts = Arc::new(AtomicU32::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, posts) = (seen.clone(), posts.clone());
            let svc = service_fn(move |req: hyper::Request<Incoming>| {
                let (seen, posts) = (seen.clone(), posts.clone());
                async move {
                    let resp = hyper::Response::builder();
                    let resp = match *req.method() {
                        hyper::Method::POST => {
                            let next = posts.fetch_add(1, Ordering::Relaxed) + 1;
                            resp.status(201)
                                .header("Location", format!("/session/{next}"))
                                .header("Content-Type", "application/sdp")
                                .body(Full::new(Bytes::from("v=0\r\nthis is no answer\r\n")))
                        }
                        hyper::Method::DELETE => {
                            seen.lock().unwrap().push(req.uri().path().to_string());
                            resp.status(200).body(Full::new(Bytes::new()))
                        }
                        _ => resp.status(405).body(Full::new(Bytes::new())),
                    };
                    Ok::<_, Infallible>(resp.unwrap())
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    (base, deleted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_answer_the_tool_refuses_is_deleted() {
    use wishd_load::clock::SendTable;
    use wishd_load::publisher::Publisher;
    use wishd_load::swarm::Swarm;
    let (base, deleted) = refusing_server().await;
    let table = Arc::new(SendTable::default());

    // The publisher refuses the answer at once and DELETEs what it was given.
    let publisher = Publisher::start(
        PublisherConfig::standard(format!("{base}/whip/x")),
        table.clone(),
    )
    .await;
    assert!(
        publisher.is_err(),
        "an unusable answer must fail the publisher"
    );
    assert_eq!(*deleted.lock().unwrap(), vec!["/session/1".to_string()]);

    // A viewer's answer is refused on its shard; clearing the swarm DELETEs it too.
    let swarm = Swarm::new(swarm(format!("{base}/whep/x")), table).unwrap();
    let id = swarm.add_viewer().await;
    let mut failed = false;
    for _ in 0..100 {
        let reports = swarm.reports().await;
        if reports.iter().any(|r| r.id == id && r.error.is_some()) {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failed, "the viewer's report must carry the refusal");
    swarm.clear(4).await;
    assert_eq!(
        *deleted.lock().unwrap(),
        vec!["/session/1".to_string(), "/session/2".to_string()]
    );
    swarm.stop();
}
