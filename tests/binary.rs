//! The `wishd` binary as an operator runs it: flags, environment variables, the start
//! banner, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wishd::client::{PublisherOptions, ViewerOptions, WhepViewer, WhipPublisher};

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// A test that fails before ending the server does not leave it running.
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wishd"));
        cmd.args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("wishd starts");
        let (tx, lines) = mpsc::channel();
        for out in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle` and returns it.
    fn wait_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        while Instant::now() < deadline {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(l.clone());
                if l.contains(needle) {
                    return l;
                }
            }
        }
        panic!(
            "no log line with {needle:?}; got:\n{}",
            self.seen.join("\n")
        );
    }

    fn http_addr(&mut self) -> String {
        let l = self.wait_line("HTTP on http://");
        l.rsplit("http://").next().unwrap().trim().to_owned()
    }

    fn terminate(mut self) -> (std::process::ExitStatus, Duration) {
        let pid = self.child.id().to_string();
        let t = Instant::now();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, t.elapsed());
            }
            if t.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                panic!("wishd did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_wishd"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--http",
        "--udp",
        "--public-ip",
        "--workers",
        "--config",
        "--publisher-grace",
        "WISHD_HTTP",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

/// Each subcommand's help says what that subcommand does: the list in `wishd help`
/// names each with its own first line, and `wishd help NAME` shows its text and its
/// options (the check-config line once showed the cert text, and cert none).
#[test]
fn help_of_every_subcommand_describes_that_subcommand() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wishd"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "wishd {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let list = help(&["help"]);
    let cases = [
        (
            "token",
            "Mint a JWT",
            &["--stream", "--action", "--lifetime", "--private-key"][..],
        ),
        (
            "check-config",
            "Validate a configuration file",
            &["FILE", "TURN secret"][..],
        ),
        (
            "cert",
            "development CA and a server certificate",
            &["--host", "--out"][..],
        ),
    ];
    for (name, first, details) in cases {
        let line = list
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("`wishd help` lists no {name}:\n{list}"));
        assert!(line.contains(first), "`wishd help` says for {name}: {line}");
        let own = help(&["help", name]);
        assert!(own.contains(first), "`wishd help {name}`:\n{own}");
        for d in details {
            assert!(own.contains(d), "`wishd help {name}` lacks {d}:\n{own}");
        }
        for (other, other_first, _) in cases {
            if other != name {
                assert!(
                    !own.contains(other_first),
                    "`wishd help {name}` shows {other}'s text:\n{own}"
                );
            }
        }
    }
}

#[test]
fn bad_config_file_is_refused_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("wishd-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "http = \"127.0.0.1:0\"\nudpp = \"x\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wishd"))
        .args(["--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("udpp"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_and_environment_configure_the_server_which_exits_cleanly_on_sigterm() {
    // The public IP comes from the environment, the rest from flags and a file.
    let dir = std::env::temp_dir().join(format!("wishd-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wishd.toml");
    std::fs::write(&path, "workers = 2\npublisher_grace = \"3s\"\n").unwrap();
    let mut server = Running::start(
        &[
            "--config",
            path.to_str().unwrap(),
            "--http",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
        ],
        &[
            ("WISHD_PUBLIC_IP", "192.0.2.10"),
            ("WISHD_PUBLISH_TOKEN", "bin-stream-key"),
        ],
    );
    let addr = server.http_addr();
    server.wait_line("WHIP publish:  POST http://127.0.0.1:");
    server.wait_line("WHEP playback: POST http://127.0.0.1:");
    let w0 = server.wait_line("media worker 0: UDP 127.0.0.1:");
    assert!(w0.contains("192.0.2.10:"), "public IP not advertised: {w0}");
    // Its output is a pipe, not a terminal: plain text, no colour codes.
    let coloured: Vec<&String> = server.seen.iter().filter(|l| l.contains('\x1b')).collect();
    assert!(
        coloured.is_empty(),
        "escape codes in a piped log: {coloured:?}"
    );
    server.wait_line("media worker 1: UDP 127.0.0.1:");
    server.wait_line("grace period 3s");
    // Which OpenSSL the DTLS runs on, for an operator following its advisories.
    let dtls = server.wait_line("  DTLS: OpenSSL 3.");
    let whose = if cfg!(feature = "vendored-openssl") {
        "(built in)"
    } else {
        "(the system's)"
    };
    assert!(dtls.contains(whose), "{dtls}");

    let base = format!("http://{addr}");
    let no_token = WhipPublisher::connect(&format!("{base}/whip/bin"), PublisherOptions::default())
        .await
        .expect_err("publishing needs the token");
    assert!(no_token.to_string().contains("401"), "{no_token}");
    let p = WhipPublisher::connect(
        &format!("{base}/whip/bin"),
        PublisherOptions {
            token: Some("bin-stream-key".into()),
            ..PublisherOptions::default()
        },
    )
    .await
    .expect("publish to the binary");
    assert!(
        p.answer_sdp().contains("192.0.2.10"),
        "answer lacks the public IP candidate"
    );
    p.wait_connected(Duration::from_secs(10)).await.unwrap();
    let v = WhepViewer::connect(&format!("{base}/whep/bin"), ViewerOptions::default())
        .await
        .unwrap();
    v.wait_for(Duration::from_secs(10), |p| p.len() > 20)
        .await
        .expect("media through the binary");

    let (status, took) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
}

/// A POST of an offer to `url` with the bearer `token`: the status.
async fn post_status(url: &str, token: &str) -> u16 {
    let offer = wishd::client::publisher_offer(&PublisherOptions::default()).expect("an offer");
    let auth = format!("Bearer {token}");
    wishd::client::http_request(
        "POST",
        url,
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &auth),
        ],
        offer.into_bytes(),
    )
    .await
    .expect("POST")
    .status
}

/// `POST /api/reload` with the admin token of [`reload_config`].
async fn reload_by_api(base: &str) -> wishd::client::HttpResponse {
    wishd::client::http_request(
        "POST",
        &format!("{base}/api/reload"),
        &[("Authorization", "Bearer reload-admin-token-0123")],
        Vec::new(),
    )
    .await
    .expect("POST /api/reload")
}

fn reload_config(publish_token: &str, stun: &str) -> String {
    format!(
        "http = \"127.0.0.1:0\"\nudp = \"127.0.0.1:0\"\nworkers = 1\n\n[auth]\npublish = \"token\"\n\n\
         [[auth.tokens]]\ntoken = \"{publish_token}\"\nactions = [\"publish\"]\n\n\
         [api]\ntoken = \"reload-admin-token-0123\"\n\n[[ice_servers]]\nurls = [\"{stun}\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_the_api_read_the_configuration_again_and_sessions_go_on() {
    let dir = std::env::temp_dir().join(format!("wishd-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wishd.toml");
    std::fs::write(
        &path,
        reload_config("publish-token-one-01", "stun:one.example.net:3478"),
    )
    .unwrap();
    let mut wishd = Running::start(&["--config", path.to_str().unwrap()], &[]);
    let base = format!("http://{}", wishd.http_addr());

    // A publisher with the first token, live before the reload.
    let publisher = WhipPublisher::connect(
        &format!("{base}/whip/kept"),
        PublisherOptions {
            token: Some("publish-token-one-01".into()),
            ..PublisherOptions::default()
        },
    )
    .await
    .expect("the first token publishes");
    publisher
        .wait_connected(Duration::from_secs(10))
        .await
        .expect("the publisher connects");

    // The file changes, then SIGHUP.
    std::fs::write(
        &path,
        reload_config("publish-token-two-02", "stun:two.example.net:3478"),
    )
    .unwrap();
    let pid = wishd.child.id().to_string();
    Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    wishd.wait_line("SIGHUP: reloaded");
    assert_eq!(
        post_status(&format!("{base}/whip/new"), "publish-token-one-01").await,
        401
    );
    assert_eq!(
        post_status(&format!("{base}/whip/new"), "publish-token-two-02").await,
        201
    );
    let links = wishd::client::http_request(
        "OPTIONS",
        &format!("{base}/whip/new"),
        &[("Authorization", "Bearer publish-token-two-02")],
        Vec::new(),
    )
    .await
    .unwrap();
    let link = links.header("link").unwrap_or("").to_owned();
    assert!(
        link.contains("two.example.net"),
        "Link after the reload: {link}"
    );

    // The session made before the reload goes on: its viewer still gets its media.
    let viewer = WhepViewer::connect(&format!("{base}/whep/kept"), ViewerOptions::default())
        .await
        .expect("a viewer of the stream published before the reload");
    viewer
        .wait_for(Duration::from_secs(10), |p| p.len() > 20)
        .await
        .expect("the publisher from before the reload still sends");

    // A file that does not validate changes nothing, and says why.
    std::fs::write(&path, "http = \"127.0.0.1:0\"\nworker = 2\n").unwrap();
    let r = reload_by_api(&base).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("worker"),
        "the reason names the key: {}",
        r.text()
    );
    assert_eq!(
        post_status(&format!("{base}/whip/again"), "publish-token-two-02").await,
        201
    );
    // And a valid one by the API.
    std::fs::write(
        &path,
        reload_config("publish-token-three-3", "stun:three.example.net:3478"),
    )
    .unwrap();
    let r = reload_by_api(&base).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        post_status(&format!("{base}/whip/three"), "publish-token-three-3").await,
        201
    );
    println!("reload: {}", r.text());
    let _ = publisher.delete().await;
    let (status, _) = wishd.terminate();
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reader of wishd's standard output that falls behind (a full pipe, a stalled
/// journald) delays the log lines, not the requests that write them.
#[test]
fn a_log_reader_that_stops_reading_does_not_stop_the_server() {
    use std::io::{Read, Write};
    let dir = std::env::temp_dir().join(format!("wishd-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wishd.toml");
    std::fs::write(
        &path,
        "http = \"127.0.0.1:0\"\nudp = \"127.0.0.1:0\"\n\
         [auth]\npublish = \"open\"\nplay = \"open\"\n\
         [limits]\nrequests_per_second = 0.0\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wishd"))
        .args(["--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("wishd starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while addr.is_none() && out.read_line(&mut line).is_ok_and(|n| n > 0) {
        addr = line
            .rsplit_once("HTTP on http://")
            .map(|(_, a)| a.trim().to_owned());
        line.clear();
    }
    let addr = addr.expect("the banner names the HTTP address");
    // From here nobody reads: the pipe's 64 KiB fill after a few hundred lines, and
    // each refused offer below writes one.
    let mut answered = 0;
    for i in 0..2000 {
        let mut s = std::net::TcpStream::connect(&addr).expect("connects");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "POST /whip/log-{i} HTTP/1.1\r\nHost: wishd\r\nContent-Type: application/sdp\r\n\
             Content-Length: 1\r\nConnection: close\r\n\r\nx"
        )
        .unwrap();
        let mut response = String::new();
        let _ = s.read_to_string(&mut response);
        if !response.starts_with("HTTP/1.1 400") {
            break;
        }
        answered += 1;
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(out);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(answered, 2000, "requests stopped being answered");
}
