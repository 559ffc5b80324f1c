//! Three wishd nodes and a real redis-server, each test in a network namespace of its
//! own (the test's threads enter it, so every socket and child process is inside):
//! Redis listens on 127.0.0.10 for nodes B and C and on 127.0.0.20 for node A, so
//! that a rule can cut A alone off from it. The nodes are the wishd binary, so one
//! can be killed with SIGKILL; publishers and viewers are wishd's str0m clients,
//! whose packet logs (SSRC, sequence numbers) are what continuity is checked with.

mod clients;
mod common;
mod interop;

use common::until;

use std::collections::BTreeSet;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clients::{Netns, Script};
use serde_json::Value;
use wishd::client::{
    ClientError, PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher, http_request,
};
use wishd::core::MediaKind;

const ADMIN: &str = "cluster-test-admin";
const NODE_TOKEN: &str = "cluster-test-node-token";
/// Short leases, so that a dead node's claims expire in seconds.
const TTL: Duration = Duration::from_millis(1500);
const LINGER: Duration = Duration::from_secs(2);

/// Runs `body` with every thread of its runtime inside `ns` (children inherit it).
fn inside(ns_name: &str, body: impl Future<Output = ()> + Send + 'static) {
    let path = format!("/run/netns/{ns_name}");
    let worker = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("the namespace's file");
        // SAFETY: setns on this thread only, with a valid descriptor.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(body);
    });
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
}

/// A node: its process, its base URL.
struct Node {
    id: &'static str,
    base: String,
    process: Option<Script>,
}

/// Redis and three nodes `a`, `b`, `c` (HTTP on 127.0.0.11, .12, .13 port 8080).
struct Cluster {
    redis: Script,
    nodes: Vec<Node>,
    dir: PathBuf,
}

impl Cluster {
    /// The cluster; node c answers viewers of other nodes' streams with `c_viewers`
    /// (`relay` or `redirect`).
    async fn start(tag: &str) -> Cluster {
        Cluster::start_with(tag, "relay").await
    }

    async fn start_with(tag: &str, c_viewers: &str) -> Cluster {
        let dir = std::env::temp_dir().join(format!("wishd-cluster-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut cmd = tokio::process::Command::new("redis-server");
        cmd.args([
            "--bind",
            "127.0.0.10 127.0.0.20",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ])
        .current_dir(&dir);
        let mut redis = Script::spawn("redis-server (apt-get install redis-server)", cmd);
        redis
            .wait_for("Ready to accept connections", Duration::from_secs(10))
            .await;
        let mut nodes = Vec::new();
        for (id, last, redis_ip) in [("a", 11, 20), ("b", 12, 10), ("c", 13, 10)] {
            let http = format!("127.0.0.{last}:8080");
            let mode = if id == "c" { c_viewers } else { "relay" };
            let config = format!(
                r#"
http = "{http}"
udp = "127.0.0.{last}:0"
workers = 1
publisher_grace = "3s"
ice_tcp = {{ enabled = false }}
[auth]
publish = "open"
play = "open"
[api]
token = "{ADMIN}"
[cluster]
redis = "redis://127.0.0.{redis_ip}:6379"
node = "{id}"
url = "http://{http}"
token = "{NODE_TOKEN}"
lease_ttl = "{ttl}ms"
relay_linger = "{linger}ms"
viewers = "{mode}"
"#,
                ttl = TTL.as_millis(),
                linger = LINGER.as_millis(),
            );
            let path = dir.join(format!("{id}.toml"));
            std::fs::write(&path, config).expect("config file");
            let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_wishd"));
            c.arg("--config")
                .arg(&path)
                .env("RUST_LOG", "wishd=info")
                .env("NO_COLOR", "1");
            let mut p = Script::spawn(&format!("wishd node {id}"), c);
            p.wait_for("wishd listening", Duration::from_secs(10)).await;
            nodes.push(Node {
                id,
                base: format!("http://{http}"),
                process: Some(p),
            });
        }
        let cluster = Cluster { redis, nodes, dir };
        // Every node has written its record.
        until(
            "three nodes in the directory",
            Duration::from_secs(5),
            || async { cluster.nodes_seen_by(1).await.len() == 3 },
        )
        .await;
        cluster
    }

    fn base(&self, i: usize) -> &str {
        &self.nodes[i].base
    }

    /// `GET path` of node `i`'s API as JSON (null when it fails).
    async fn api(&self, i: usize, path: &str) -> Value {
        api(&self.nodes[i].base, path).await
    }

    /// The node ids node `i`'s `/api/cluster` lists.
    async fn nodes_seen_by(&self, i: usize) -> Vec<String> {
        self.api(i, "/api/cluster").await["nodes"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|n| n["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The claim of `stream` as node `i` sees it: (owner, epoch).
    async fn claim(&self, i: usize, stream: &str) -> Option<(String, u64)> {
        let v = self.api(i, "/api/cluster").await;
        v["streams"].as_array()?.iter().find_map(|s| {
            (s["stream"] == stream).then(|| {
                (
                    s["node"].as_str().unwrap_or_default().to_owned(),
                    s["epoch"]
                        .as_str()
                        .and_then(|e| e.parse().ok())
                        .unwrap_or(0),
                )
            })
        })
    }

    /// Viewer sessions node `i` counts for `stream`.
    async fn viewers(&self, i: usize, stream: &str) -> u64 {
        self.api(i, &format!("/api/streams/{stream}")).await["viewers"]
            .as_u64()
            .unwrap_or(0)
    }

    /// The streams node `i` relays now.
    async fn relays(&self, i: usize) -> Vec<Value> {
        self.api(i, "/api/cluster").await["relays"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn signal(&self, pid: Option<u32>, signal: i32) {
        let pid = pid.expect("the process runs") as i32;
        // SAFETY: a signal to a child this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Node `i`'s log so far.
    fn log(&self, i: usize) -> String {
        self.nodes[i]
            .process
            .as_ref()
            .map(|p| p.output())
            .unwrap_or_default()
    }
}

impl Drop for Cluster {
    // A failing test's node logs are shown by each node's `Script` as it is dropped.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn api(base: &str, path: &str) -> Value {
    let url = format!("{base}{path}");
    let auth = format!("Bearer {ADMIN}");
    match http_request("GET", &url, &[("Authorization", &auth)], Vec::new()).await {
        Ok(r) if r.status == 200 => serde_json::from_slice(&r.body).unwrap_or_default(),
        _ => Value::Null,
    }
}

fn video(v: &WhepViewer) -> Vec<wishd::client::ReceivedPacket> {
    interop::of_kind(&v.received(), MediaKind::Video)
}

/// What a viewer's video says of its continuity: (SSRCs, missing sequence numbers).
fn continuity(v: &WhepViewer) -> (BTreeSet<u32>, Vec<u64>) {
    let got = video(v);
    let seqs: Vec<u64> = got.iter().map(|p| p.seq).collect();
    (
        got.iter().map(|p| p.ssrc).collect(),
        common::missing_seqs(&seqs, 0),
    )
}

/// A publisher of `stream` on `base`.
async fn publish(base: &str, stream: &str) -> WhipPublisher {
    common::publish(base, stream, PublisherOptions::default()).await
}

/// `n` viewers of `stream` on `base`, each with video flowing.
async fn viewers(base: &str, stream: &str, n: usize) -> Vec<WhepViewer> {
    let url = format!("{base}/whep/{stream}");
    let joins = (0..n).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            interop::view_when_live(&url, ViewerOptions::default(), Duration::from_secs(10)).await
        })
    });
    let mut out = Vec::new();
    for j in joins {
        out.push(j.await.expect("viewer task"));
    }
    for v in &out {
        v.wait_for(Duration::from_secs(10), |p| {
            p.iter().filter(|p| p.kind == MediaKind::Video).count() >= 30
        })
        .await
        .expect("video through the relay");
    }
    out
}

#[test]
fn twenty_viewers_on_another_node_share_one_relay_that_closes_after_the_last_leaves() {
    let ns = Netns::create("cl-relay");
    inside(&ns.name.clone(), async move {
        let cl = Cluster::start("relay").await;
        let _publisher = publish(cl.base(0), "live").await;
        let t0 = Instant::now();
        let watching = viewers(cl.base(2), "live", 20).await;
        println!(
            "20 viewers on node c had video {} ms after their first POST",
            t0.elapsed().as_millis()
        );
        for (i, v) in watching.iter().enumerate() {
            interop::assert_starts_sps_pps_idr(&video(v), &format!("viewer {i} on c"));
        }
        assert_eq!(cl.viewers(0, "live").await, 1, "node a serves one relay");
        let relays = cl.relays(2).await;
        assert_eq!(relays.len(), 1, "{relays:?}");
        assert_eq!(relays[0]["from"], "a");
        assert_eq!(relays[0]["viewers"], 20);
        assert_eq!(cl.claim(2, "live").await.map(|c| c.0), Some("a".into()));
        // /api/cluster is what the OpenAPI file says.
        let r = http_request(
            "GET",
            &format!("{}/api/cluster", cl.base(2)),
            &[("Authorization", &format!("Bearer {ADMIN}"))],
            Vec::new(),
        )
        .await
        .expect("GET /api/cluster");
        common::openapi::check_response(&common::openapi::spec(), "/api/cluster", "GET", &r)
            .unwrap_or_else(|e| panic!("/api/cluster: {e}\n{}", r.text()));
        let metrics = http_request("GET", &format!("{}/metrics", cl.base(2)), &[], Vec::new())
            .await
            .expect("GET /metrics")
            .text();
        for line in ["wishd_cluster_relays 1", "wishd_cluster_directory_up 1"] {
            assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
        }

        // A relay of a relay is refused: node b asked for c's relayed stream.
        let r = http_request(
            "POST",
            &format!("{}/whep/live", cl.base(2)),
            &[
                ("Content-Type", "application/sdp"),
                ("wishd-relay", "1"),
                ("Authorization", &format!("Bearer {NODE_TOKEN}")),
            ],
            wishd::client::viewer_offer(&ViewerOptions::default())
                .expect("offer")
                .into_bytes(),
        )
        .await
        .expect("POST");
        assert_eq!(r.status, 508, "{}", String::from_utf8_lossy(&r.body));

        let left = Instant::now();
        for v in watching {
            v.delete().await.expect("DELETE");
        }
        let closed = until(
            "the relay closes after the linger",
            LINGER + Duration::from_secs(3),
            || async { cl.viewers(0, "live").await == 0 },
        )
        .await;
        println!(
            "the last viewer left; node a's relay session ended {} ms later (linger {} ms)",
            closed.as_millis(),
            LINGER.as_millis()
        );
        assert!(left.elapsed() >= LINGER, "the relay lingered");
        until(
            "node c forgets the relay",
            Duration::from_secs(2),
            || async { cl.relays(2).await.is_empty() },
        )
        .await;
        // The stream is still served there, from a new relay.
        let again = viewers(cl.base(2), "live", 1).await;
        assert_eq!(cl.viewers(0, "live").await, 1);
        drop(again);
    });
}

#[test]
fn sixteen_publishers_of_one_name_across_three_nodes_get_exactly_one_201() {
    let ns = Netns::create("cl-race");
    inside(&ns.name.clone(), async move {
        let cl = Cluster::start("race").await;
        let posts = (0..16).map(|i| {
            let url = format!("{}/whip/race", cl.base(i % 3));
            tokio::spawn(async move {
                match WhipPublisher::connect(&url, PublisherOptions::default()).await {
                    Ok(p) => Ok((i % 3, p)),
                    Err(ClientError::Status { status, body }) => Err((status, body)),
                    Err(e) => Err((0, e.to_string())),
                }
            })
        });
        let mut won = Vec::new();
        let mut refused = Vec::new();
        for p in posts {
            match p.await.expect("task") {
                Ok(w) => won.push(w),
                Err(r) => refused.push(r),
            }
        }
        println!(
            "16 POSTs: {} answered 201, refusals {:?}",
            won.len(),
            refused.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        assert_eq!(won.len(), 1, "exactly one publisher wins");
        assert!(refused.iter().all(|r| r.0 == 409), "{refused:?}");
        let at = won[0].0;
        let winner = cl.nodes[at].id;
        let other = (at + 1) % 3;
        assert_eq!(
            cl.claim(other, "race").await.map(|c| c.0),
            Some(winner.into())
        );

        // A node that stops (SIGTERM) gives its claims back at once, not a lease later.
        let pid = cl.nodes[at].process.as_ref().and_then(|p| p.pid());
        cl.signal(pid, libc::SIGTERM);
        let freed = until("the stopped node's claim is released", TTL, || async {
            cl.claim(other, "race").await.is_none()
        })
        .await;
        println!(
            "node {winner} stopped; its claim was released {} ms after SIGTERM (lease {} ms)",
            freed.as_millis(),
            TTL.as_millis()
        );
        drop(won);
    });
}

#[test]
fn a_killed_owner_s_stream_moves_with_its_publisher_and_edge_viewers_play_on_unbroken() {
    let ns = Netns::create("cl-kill");
    inside(&ns.name.clone(), async move {
        let mut cl = Cluster::start("kill").await;
        let first = publish(cl.base(0), "live").await;
        let watching = viewers(cl.base(2), "live", 3).await;
        let (_, epoch_a) = cl.claim(1, "live").await.expect("a's claim");

        let pid = cl.nodes[0].process.as_ref().and_then(|p| p.pid());
        cl.signal(pid, libc::SIGKILL);
        let killed = Instant::now();
        let gone = until(
            "node a's claims and record expire",
            TTL + Duration::from_secs(1),
            || async {
                cl.claim(1, "live").await.is_none()
                    && !cl.nodes_seen_by(1).await.contains(&"a".to_owned())
            },
        )
        .await;
        println!(
            "node a killed; its claim and record were gone {} ms later (lease {} ms)",
            gone.as_millis(),
            TTL.as_millis()
        );
        drop(first);
        cl.nodes[0].process = None;

        // The publisher comes back on node b.
        let before: Vec<usize> = watching.iter().map(|v| video(v).len()).collect();
        let posted = Instant::now();
        let _second = publish(cl.base(1), "live").await;
        for (v, n) in watching.iter().zip(&before) {
            let n = *n;
            until(
                "c's viewers play again",
                Duration::from_secs(2),
                || async move { video(v).len() > n + 5 },
            )
            .await;
        }
        let resumed = posted.elapsed();
        println!(
            "the publisher came back on node b {} ms after the kill; c's viewers played again {} ms after its POST",
            (posted - killed).as_millis(),
            resumed.as_millis()
        );
        let (node, epoch_b) = cl.claim(2, "live").await.expect("b's claim");
        assert_eq!(node, "b");
        assert!(epoch_b > epoch_a, "a newer epoch: {epoch_b} > {epoch_a}");
        // Some more media, then the packet logs.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (i, v) in watching.iter().enumerate() {
            let (ssrcs, missing) = continuity(v);
            println!(
                "viewer {i} on c: {} video packets, SSRCs {ssrcs:?}, {} missing",
                video(v).len(),
                missing.len()
            );
            assert!(v.is_connected(), "viewer {i} kept its session");
            assert_eq!(ssrcs.len(), 1, "viewer {i} keeps its SSRC");
            assert!(missing.is_empty(), "viewer {i} lost {missing:?}");
        }
        assert_eq!(cl.relays(2).await[0]["from"], "b");
    });
}

#[test]
fn redis_stopped_for_ten_seconds_leaves_media_alone_and_refuses_new_publishers_with_503() {
    let ns = Netns::create("cl-stop");
    inside(&ns.name.clone(), async move {
        let cl = Cluster::start("stop").await;
        let publisher = publish(cl.base(0), "live").await;
        let watching = viewers(cl.base(2), "live", 1).await;
        let (_, epoch) = cl.claim(1, "live").await.expect("a's claim");
        let v = &watching[0];

        cl.signal(cl.redis.pid(), libc::SIGSTOP);
        let stopped_at = video(v).len();
        let t0 = Instant::now();
        // A new publisher cannot be told apart from one on another node.
        let r = WhipPublisher::connect(
            &format!("{}/whip/other", cl.base(1)),
            PublisherOptions::default(),
        )
        .await;
        match r {
            Err(ClientError::Status { status: 503, body }) => {
                println!(
                    "a new publisher while Redis is stopped: 503 ({})",
                    body.trim()
                )
            }
            Err(e) => panic!("a new publisher got {e}"),
            Ok(_) => panic!("a new publisher was taken while Redis is stopped"),
        }
        // The publisher a has leaves and comes back: a holds the claim, so it is taken.
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed())).await;
        let restart_at = video(v).len();
        let left = Instant::now();
        publisher.delete().await.expect("DELETE");
        let _back = publish(cl.base(0), "live").await;
        println!(
            "the publisher came back to node a {} ms into the stop, connected {} ms after it left",
            t0.elapsed().as_millis(),
            left.elapsed().as_millis()
        );
        tokio::time::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed())).await;
        cl.signal(cl.redis.pid(), libc::SIGCONT);
        let got = video(v);
        let longest = |from: usize, to: usize| {
            got[from..to]
                .windows(2)
                .map(|w| w[1].at.saturating_duration_since(w[0].at))
                .max()
                .unwrap_or_default()
        };
        let (before, all) = (
            longest(stopped_at, restart_at),
            longest(stopped_at, got.len()),
        );
        println!(
            "Redis stopped 10 s: the viewer on c got {} video packets meanwhile; longest pause {} ms before the publisher's restart, {} ms with it",
            got.len() - stopped_at,
            before.as_millis(),
            all.as_millis()
        );
        assert!(
            got.len() - stopped_at > 200,
            "media flowed while Redis was stopped"
        );
        // 30 frames a second: a pause of a second would be Redis's doing, before the
        // restart; with it, the publisher's own reconnection adds its part.
        assert!(before < Duration::from_secs(1), "no gap: {before:?}");
        assert!(all < Duration::from_millis(1500), "no gap: {all:?}");
        let (ssrcs, missing) = continuity(v);
        assert_eq!(ssrcs.len(), 1);
        assert!(missing.is_empty(), "lost {missing:?}");

        // The directory comes back with one owner: a, under its epoch or under the
        // one of its own claim that timed out during the stop and that Redis ran
        // when it resumed (commands wait in the socket).
        let back = until(
            "the claim is written again",
            Duration::from_secs(3),
            || async {
                cl.claim(1, "live")
                    .await
                    .is_some_and(|(node, e)| node == "a" && e >= epoch)
            },
        )
        .await;
        println!(
            "Redis continued; a's claim was back {} ms later",
            back.as_millis()
        );
        // a keeps its stream, and c's viewer plays on.
        let n = video(v).len();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !cl.api(0, "/api/streams/live").await.is_null(),
            "a keeps the stream"
        );
        assert!(
            !cl.log(0).contains("it ends here"),
            "a did not give the stream up"
        );
        assert!(video(v).len() > n + 20, "c's viewer plays on");
        let (ssrcs, missing) = continuity(v);
        assert_eq!(ssrcs.len(), 1);
        assert!(missing.is_empty(), "lost {missing:?}");
        let other = publish(cl.base(1), "other").await;
        assert_eq!(cl.claim(0, "other").await.map(|c| c.0), Some("b".into()));
        drop(other);
    });
}

#[test]
fn a_node_cut_off_from_redis_gives_its_stream_up_to_the_newer_claim_after_healing() {
    let ns = Netns::create("cl-part");
    let ns_name = ns.name.clone();
    inside(&ns_name, async move {
        let cl = Cluster::start("part").await;
        let on_a = publish(cl.base(0), "live").await;
        let (_, epoch_a) = cl.claim(1, "live").await.expect("a's claim");

        // Node a alone loses Redis (it reaches it on 127.0.0.20).
        ns.drop_outgoing(&[&["ip", "daddr", "127.0.0.20"]]).await;
        until(
            "a's claim expires",
            TTL + Duration::from_secs(2),
            || async { cl.claim(1, "live").await.is_none() },
        )
        .await;
        let on_b = publish(cl.base(1), "live").await;
        let (node, epoch_b) = cl.claim(2, "live").await.expect("b's claim");
        assert_eq!(node, "b");
        assert!(epoch_b > epoch_a, "{epoch_b} > {epoch_a}");
        // Cut off, a keeps its publisher: media never waits for Redis.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            on_a.is_connected(),
            "a's publisher plays on while a is cut off"
        );
        assert!(!cl.api(0, "/api/streams/live").await.is_null());

        ns.nft(&["delete", "table", "inet", "blocked"]).await;
        let healed = Instant::now();
        let gave_up = until(
            "a gives the stream up",
            TTL + Duration::from_secs(2),
            || async { cl.api(0, "/api/streams/live").await.is_null() },
        )
        .await;
        println!(
            "healed: node a ended its stream {} ms later (lease {} ms); b holds epoch {epoch_b} over a's {epoch_a}",
            gave_up.as_millis(),
            TTL.as_millis()
        );
        assert!(
            cl.log(0).contains("it ends here"),
            "a says why it ended the stream"
        );
        assert_eq!(cl.claim(0, "live").await, Some(("b".into(), epoch_b)));
        let _ = healed;
        drop(on_b);
    });
}

#[test]
fn in_redirect_mode_a_viewer_is_sent_to_the_owner_with_an_absolute_location() {
    let ns = Netns::create("cl-307");
    inside(&ns.name.clone(), async move {
        let cl = Cluster::start_with("redirect", "redirect").await;
        let _publisher = publish(cl.base(0), "live").await;
        let offer = wishd::client::viewer_offer(&ViewerOptions::default()).expect("offer");
        let r = http_request(
            "POST",
            &format!("{}/whep/live", cl.base(2)),
            &[("Content-Type", "application/sdp")],
            offer.into_bytes(),
        )
        .await
        .expect("POST");
        assert_eq!(r.status, 307);
        let to = r.header("location").unwrap_or_default().to_owned();
        assert_eq!(to, format!("{}/whep/live", cl.base(0)));
        // A client that follows it plays from node a; node c relays nothing.
        let v = viewers(cl.base(2), "live", 1).await;
        assert!(
            v[0].location().starts_with(cl.base(0)),
            "the session is on node a: {}",
            v[0].location()
        );
        assert!(cl.relays(2).await.is_empty());
        assert_eq!(cl.viewers(0, "live").await, 1);
        // A stream live nowhere is not redirected: 409 as on a single server.
        common::assert_offline_409(&format!("{}/whep/nowhere", cl.base(2)), "live nowhere").await;
    });
}

/// Node `pid`'s CPU time so far (every thread's, from schedstat), ns.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Node `pid`'s CPU over `secs` seconds, in ms per second.
async fn cpu_ms_per_s(pid: u32, secs: u64) -> f64 {
    let before = cpu_ns(pid);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (cpu_ns(pid) - before) as f64 / 1e6 / secs as f64
}

/// The sessions of `stream` on node `base`: (peer address, packets out, bytes out).
async fn sessions_out(base: &str, stream: &str) -> Vec<(String, u64, u64)> {
    api(base, &format!("/api/streams/{stream}")).await["sessions"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|s| s["kind"] == "viewer")
                .map(|s| {
                    (
                        s["peer"].as_str().unwrap_or_default().to_owned(),
                        s["packets_out"].as_u64().unwrap_or(0),
                        s["bytes_out"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The relay's figures (BENCHMARKS.md; `scripts/bench-cluster.sh` runs it on a release
/// build): what a relay costs its origin against one direct viewer (CPU with each
/// alone, and what the origin sends each while both run), and the delay a relay adds,
/// from the arrival of the same packets at a viewer of the origin and at a viewer of
/// the edge, both in this process.
#[test]
#[ignore = "a benchmark: scripts/bench-cluster.sh"]
fn relay_costs_the_origin_one_viewer_and_adds_little_delay() {
    let ns = Netns::create("cl-bench");
    inside(&ns.name.clone(), async move {
        let cl = Cluster::start("bench").await;
        let pid = cl.nodes[0]
            .process
            .as_ref()
            .and_then(|p| p.pid())
            .expect("node a runs");
        let _publisher = publish(cl.base(0), "bench").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let secs = 10;
        let alone_before = cpu_ms_per_s(pid, secs).await;
        let mut direct = viewers(cl.base(0), "bench", 1).await;
        let with_viewer = cpu_ms_per_s(pid, secs).await;
        let edge = viewers(cl.base(2), "bench", 20).await;
        // Both sessions at the origin over the same seconds.
        let t0 = sessions_out(cl.base(0), "bench").await;
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let t1 = sessions_out(cl.base(0), "bench").await;
        let mine = direct[0].local_addr().to_string();
        let sent = |relay: bool| {
            let pick = |l: &[(String, u64, u64)]| {
                l.iter()
                    .find(|s| (s.0 != mine) == relay)
                    .map_or((0, 0), |s| (s.1, s.2))
            };
            let (p0, b0) = pick(&t0);
            let (p1, b1) = pick(&t1);
            (p1.saturating_sub(p0), b1.saturating_sub(b0))
        };
        let (relay_packets, relay_bytes) = sent(true);
        let (viewer_packets, viewer_bytes) = sent(false);
        // The same packets at a viewer of the origin and at one behind the relay.
        let at_origin: std::collections::HashMap<Vec<u8>, Instant> = video(&direct[0])
            .into_iter()
            .map(|p| (p.payload.to_vec(), p.at))
            .collect();
        let mut added: Vec<f64> = video(&edge[0])
            .iter()
            .filter_map(|p| {
                let t = at_origin.get(&p.payload[..])?;
                Some(p.at.saturating_duration_since(*t).as_secs_f64() * 1e3)
            })
            .collect();
        added.sort_by(f64::total_cmp);
        assert!(added.len() > 100, "packets matched through the relay");
        let pct = |q: f64| added[((added.len() - 1) as f64 * q) as usize];
        if let Some(v) = direct.pop() {
            v.delete().await.expect("DELETE");
        }
        let with_relay = cpu_ms_per_s(pid, secs).await;
        for v in edge {
            v.delete().await.expect("DELETE");
        }
        until(
            "the relay closes",
            LINGER + Duration::from_secs(5),
            || async { cl.viewers(0, "bench").await == 0 },
        )
        .await;
        let alone_after = cpu_ms_per_s(pid, secs).await;
        let alone = (alone_before + alone_after) / 2.0;
        let viewer = with_viewer - alone;
        let relay = with_relay - alone;
        println!(
            "origin CPU, {secs} s each: publisher alone {alone_before:.2} then {alone_after:.2} ms/s, \
             with one direct viewer {with_viewer:.2}, with one relay (20 viewers on the edge) {with_relay:.2}"
        );
        println!(
            "origin CPU of one relay against one viewer: {relay:.2} / {viewer:.2} ms/s = {:.2}",
            relay / viewer
        );
        println!(
            "sent by the origin in {secs} s: to the relay {relay_packets} packets, {relay_bytes} bytes; \
             to the direct viewer {viewer_packets} packets, {viewer_bytes} bytes"
        );
        println!(
            "delay the relay adds ({} packets matched): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            added.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
    });
}

#[test]
fn the_example_script_runs_a_cluster_that_relays_between_its_nodes() {
    let ns = Netns::create("cl-example");
    inside(&ns.name.clone(), async move {
        let script = clients::root().join("scripts/cluster-example.sh");
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(script)
            .env("WISHD", env!("CARGO_BIN_EXE_wishd"))
            .env("EXAMPLE_SECS", "60");
        let mut example = Script::spawn("scripts/cluster-example.sh", cmd);
        example
            .wait_for("cluster up", Duration::from_secs(20))
            .await;
        let _publisher = publish("http://127.0.0.1:8081", "live").await;
        let v = viewers("http://127.0.0.1:8083", "live", 1).await;
        let r = http_request(
            "GET",
            "http://127.0.0.1:8083/api/cluster",
            &[("Authorization", "Bearer example-admin-token")],
            Vec::new(),
        )
        .await
        .expect("GET /api/cluster");
        let status: Value = serde_json::from_slice(&r.body).unwrap_or_default();
        println!("the example's node c: {status}");
        assert_eq!(status["relays"][0]["from"], "a", "{status}");
        drop(v);
        // SIGTERM: the script stops Redis and the nodes it started.
        example.stop();
        let gone = until("the example stops", Duration::from_secs(10), || {
            let ended = example.exited().is_some();
            async move { ended }
        })
        .await;
        println!("the example stopped {} ms after SIGTERM", gone.as_millis());
        let r = http_request("GET", "http://127.0.0.1:8081/healthz", &[], Vec::new()).await;
        assert!(r.is_err(), "node a stopped with the script");
    });
}

#[test]
fn chromium_on_one_node_plays_what_ffmpeg_publishes_on_another() {
    clients::require_playwright();
    let ns = Netns::create("cl-chromium");
    inside(&ns.name.clone(), async move {
        let cl = Cluster::start("chromium").await;
        // FFmpeg 9's WHIP muxer on node a: H.264 with a keyframe every second, Opus.
        let mut cmd = tokio::process::Command::new(interop::ffmpeg_with_whip());
        #[rustfmt::skip]
        cmd.args([
            "-nostdin", "-nostats", "-loglevel", "warning", "-re",
            "-t", "40", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
            "-t", "40", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-c:v", "libx264", "-profile:v", "baseline", "-preset", "ultrafast", "-tune", "zerolatency",
            "-g", "30", "-bf", "0", "-pix_fmt", "yuv420p", "-b:v", "800k",
            "-c:a", "libopus", "-ar", "48000", "-ac", "2",
            "-f", "whip", &format!("{}/whip/ffmpeg", cl.base(0)),
        ]);
        let _ffmpeg = Script::spawn("ffmpeg (WHIP muxer)", cmd);
        until(
            "ffmpeg's stream is live on node a",
            Duration::from_secs(15),
            || async {
                cl.claim(2, "ffmpeg").await.is_some_and(|c| c.1 > 0)
                    && cl.api(0, "/api/streams/ffmpeg").await["packets_in"].as_u64() > Some(100)
            },
        )
        .await;
        let figures = clients::chromium_scenario(
            "chromium on node c",
            serde_json::json!({ "name": "cluster", "kind": "watch-page", "base": cl.base(2),
                                "stream": "ffmpeg" }),
            Duration::from_secs(60),
        )
        .await;
        let first = figures["first_media_ms"].as_f64().unwrap_or(f64::MAX);
        let frames = figures["frames_in_2s"].as_u64().unwrap_or(0);
        println!(
            "Chromium on node c plays FFmpeg's WHIP stream on node a: first frame {first} ms after its POST, {frames} frames in 2 s"
        );
        assert!(
            frames >= 40,
            "Chromium decodes the relayed stream: {figures}"
        );
        assert!(first < 2000.0, "first frame {first} ms after the POST");
    });
}

#[test]
fn a_publisher_back_on_another_node_with_another_codec_makes_edge_viewers_join_again() {
    let ns = Netns::create("cl-codec");
    inside(&ns.name.clone(), async move {
        let cl = Cluster::start("codec").await;
        let h264 = publish(cl.base(0), "live").await;
        let watching = viewers(cl.base(2), "live", 1).await;
        let old = &watching[0];
        assert_eq!(old.video_codec(), Some(wishd::client::VideoCodec::H264));

        // The publisher leaves node a (its stream waits there, no longer live) and comes
        // back on node b with VP8, as a browser would after OBS: b may claim it now.
        h264.delete().await.expect("DELETE");
        let vp8_opts = || PublisherOptions {
            video: Some(wishd::client::VideoCodec::Vp8),
            ..PublisherOptions::default()
        };
        let url_b = format!("{}/whip/live", cl.base(1));
        let t0 = Instant::now();
        let vp8 = loop {
            match WhipPublisher::connect(&url_b, vp8_opts()).await {
                Ok(p) => break p,
                Err(ClientError::Status { status: 409, .. }) if t0.elapsed() < TTL * 3 => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("VP8 publisher on b: {e}"),
            }
        };
        vp8.wait_connected(common::CONNECT)
            .await
            .expect("VP8 publisher connects");
        println!(
            "the VP8 publisher was taken on node b {} ms after leaving a",
            t0.elapsed().as_millis()
        );
        assert_eq!(cl.claim(2, "live").await.map(|c| c.0), Some("b".into()));

        // c's viewer negotiated H.264: it is ended, and joins again to VP8.
        let ended = until(
            "c's H.264 viewer is ended",
            Duration::from_secs(5),
            || async { !old.is_connected() },
        )
        .await;
        println!(
            "c's H.264 viewer ended {} ms after the VP8 publisher connected ({:?})",
            ended.as_millis(),
            old.close_reason()
        );
        let again = viewers(cl.base(2), "live", 1).await;
        assert_eq!(again[0].video_codec(), Some(wishd::client::VideoCodec::Vp8));
        // Node a gave the stream up: its claim is b's.
        until("node a ends its waiting stream", TTL * 2, || async {
            cl.api(0, "/api/streams/live").await.is_null()
        })
        .await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_a_cluster_answers_api_cluster_with_404() {
    let server =
        common::start_with(|c| c.api.token = Some(wishd::config::Secret::new(ADMIN))).await;
    let r = http_request(
        "GET",
        &format!("{}/api/cluster", server.base_url()),
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        Vec::new(),
    )
    .await
    .expect("GET /api/cluster");
    assert_eq!(r.status, 404, "{}", r.text());
    let metrics = http_request(
        "GET",
        &format!("{}/metrics", server.base_url()),
        &[],
        Vec::new(),
    )
    .await
    .expect("GET /metrics")
    .text();
    assert!(
        !metrics.contains("wishd_cluster_"),
        "no cluster metrics alone"
    );
    server.shutdown().await;
}

/// Writes a claim of node a for `stream` under `epoch` straight into Redis (a minute's
/// lease), as no node would: what a write lost half-way, or run late, leaves.
async fn redis_set_claim(stream: &str, epoch: &str) {
    let claim =
        format!(r#"{{"node":"a","url":"http://127.0.0.11:8080","epoch":"{epoch}","live":true}}"#);
    let key = format!("wishd:main:stream:{stream}");
    let out = tokio::process::Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.10",
            "-p",
            "6379",
            "SET",
            &key,
            &claim,
            "PX",
            "60000",
        ])
        .output()
        .await
        .expect("redis-cli runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_stale_claim_costs_a_viewer_one_quick_409_and_a_failed_publish_holds_no_claim() {
    let ns = Netns::create("cl-stale");
    inside(&ns.name.clone(), async move {
        let cl = Cluster::start("stale").await;
        // A claim of node a for a stream a does not have, as a write lost half-way
        // could leave it: a is alive, so the claim is followed.
        redis_set_claim("ghost", "1").await;
        for attempt in 0..2 {
            let t0 = Instant::now();
            common::assert_offline_409(&format!("{}/whep/ghost", cl.base(2)), "a stale claim")
                .await;
            let took = t0.elapsed();
            println!(
                "a viewer of a stream only a stale claim names: 409 in {} ms",
                took.as_millis()
            );
            assert!(took < Duration::from_secs(2), "attempt {attempt}: {took:?}");
        }
        until("no relay is left", Duration::from_secs(2), || async {
            cl.relays(2).await.is_empty()
        })
        .await;

        // A claim of a's own under another epoch (one whose answer timed out while
        // Redis was stopped, run by Redis when it resumed) is adopted, not lost.
        let _mine = publish(cl.base(0), "mine").await;
        redis_set_claim("mine", "99").await;
        tokio::time::sleep(TTL).await;
        assert_eq!(cl.claim(1, "mine").await, Some(("a".into(), 99)));
        assert!(
            !cl.api(0, "/api/streams/mine").await.is_null(),
            "a keeps its stream"
        );
        assert!(!cl.log(0).contains("it ends here"), "a did not give it up");

        // A WHIP POST whose offer is refused gives its claim back at once.
        let r = http_request(
            "POST",
            &format!("{}/whip/bad", cl.base(1)),
            &[("Content-Type", "application/sdp")],
            b"v=0\r\nthis is no offer\r\n".to_vec(),
        )
        .await
        .expect("POST");
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(cl.claim(0, "bad").await, None, "no claim is left for it");
    });
}
