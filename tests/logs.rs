//! `wishd --log-format json`: every line is one JSON object, and each session ends
//! with one summary line saying how long it lasted, what it moved and why it ended.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use wishd::client::{PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher};

/// The child process, killed if the test fails before it ends it.
struct Wishd {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<Value>,
}

impl Drop for Wishd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Wishd {
    fn start(args: &[&str]) -> Wishd {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wishd"))
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("WISHD_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("wishd starts");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Wishd {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `f`; every line must be a JSON object.
    fn wait(&mut self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| f(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(v.is_object(), "{line}");
                self.seen.push(v.clone());
                if f(&v) {
                    return v;
                }
            }
        }
        panic!("no line with {what}; got {:#?}", self.seen);
    }
}

fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_end_every_session_with_one_summary_line() {
    wishd::client::install_crypto_provider();
    let mut wishd = Wishd::start(&[
        "--dev",
        "--http",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--log-format",
        "json",
    ]);
    let banner = wishd.wait("the banner", |v| message(v).contains("HTTP on http://"));
    let addr = message(&banner)
        .split("HTTP on http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("address in the banner")
        .to_owned();
    let base = format!("http://{addr}");

    let publisher =
        WhipPublisher::connect(&format!("{base}/whip/cam"), PublisherOptions::default())
            .await
            .unwrap();
    publisher
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    let viewer = WhepViewer::connect(&format!("{base}/whep/cam"), ViewerOptions::default())
        .await
        .unwrap();
    viewer
        .wait_for(Duration::from_secs(10), |p| p.len() > 50)
        .await
        .unwrap();
    let viewer_id = viewer.location().rsplit('/').next().unwrap().to_owned();
    assert_eq!(viewer.delete().await.unwrap(), 200);

    let summary = wishd.wait("the viewer's summary", |v| {
        message(v) == "session ended" && v["fields"]["session"] == viewer_id.as_str()
    });
    println!("viewer summary line: {summary}");
    let f = &summary["fields"];
    assert_eq!(f["stream"], "cam");
    assert_eq!(f["kind"], "viewer");
    assert_eq!(f["reason"], "delete");
    assert!(f["duration_s"].as_str().unwrap().parse::<f64>().unwrap() > 0.0);
    assert!(f["packets_out"].as_u64().unwrap() > 50, "{summary}");
    assert!(f["bytes_out"].as_u64().unwrap() > 0);
    assert!(f["bytes_in"].as_u64().unwrap() > 0);
    assert!(f.get("loss").is_some() || f.get("nacks").is_some());
    // The session span travels with the line too.
    assert_eq!(summary["span"]["stream"], "cam");
    assert_eq!(
        wishd
            .seen
            .iter()
            .filter(
                |v| message(v) == "session ended" && v["fields"]["session"] == viewer_id.as_str()
            )
            .count(),
        1,
        "exactly one summary line per session"
    );

    // SIGTERM: the publisher ends for "shutdown", with what it sent in.
    let pid = i32::try_from(wishd.child.id()).unwrap();
    // SAFETY: kill(2) on the pid of a child this test started and still owns.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let publisher_summary = wishd.wait("the publisher's summary", |v| {
        message(v) == "session ended" && v["fields"]["kind"] == "publisher"
    });
    assert_eq!(publisher_summary["fields"]["reason"], "shutdown");
    assert!(publisher_summary["fields"]["packets_in"].as_u64().unwrap() > 50);
    drop(publisher);
}
