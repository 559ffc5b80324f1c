//! Runs third-party WebRTC clients for the integration tests: node scripts driving
//! headless Chromium, Python scripts driving aiortc and GStreamer's webrtcbin, and
//! the wishd binary itself inside a network namespace.
//!
//! Every client script prints progress on stderr and, as its last stdout line, one
//! JSON object naming the client, whether it passed, and the step it failed at. A
//! child is killed when its [`Script`] is dropped, and after a hard timeout.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// The repository root (where `conformance/` is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `conformance/` + `rel`, absolute.
pub fn conformance(rel: &str) -> String {
    root().join("conformance").join(rel).display().to_string()
}

/// Where clients write screenshots (git-ignored).
pub fn out_dir() -> PathBuf {
    root().join("conformance").join("out")
}

/// Fails with an install hint unless `path` exists.
pub fn require(path: &str, hint: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing. {hint} (.ci/run installs it)"
    );
}

/// Fails with the hint unless conformance/node_modules has playwright-core.
pub fn require_playwright() {
    require("/usr/bin/chromium", "apt-get install chromium");
    require(
        &conformance("node_modules/playwright-core/package.json"),
        "Run `npm ci` in conformance/.",
    );
}

/// A client process: its output is collected as it comes.
pub struct Script {
    client: String,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    started: Instant,
    /// `finish` has shown its output.
    reported: bool,
}

fn collect(stream: Option<impl AsyncRead + Unpin + Send + 'static>, into: Arc<Mutex<String>>) {
    let Some(stream) = stream else { return };
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut s = into.lock().unwrap_or_else(|e| e.into_inner());
            s.push_str(&line);
            s.push('\n');
        }
    });
}

impl Script {
    /// Starts `cmd` for `client` (a name used in every failure message).
    pub fn spawn(client: &str, mut cmd: Command) -> Script {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{client}: cannot start {cmd:?}: {e}"));
        let (stdout, stderr) = Default::default();
        collect(child.stdout.take(), Arc::clone(&stdout));
        collect(child.stderr.take(), Arc::clone(&stderr));
        Script {
            client: client.to_owned(),
            child,
            stdout,
            stderr,
            started: Instant::now(),
            reported: false,
        }
    }

    /// The process's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process has ended, with its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Everything the process wrote so far (stdout, then stderr).
    pub fn output(&self) -> String {
        let out = self
            .stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let err = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        format!("{out}{err}")
    }

    /// Waits until the output contains `needle`.
    pub async fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.output().contains(needle) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{}: exited ({status}) before printing {needle:?}:\n{}",
                    self.client,
                    tail(&self.output())
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {needle:?} after {timeout:?}:\n{}",
                self.client,
                tail(&self.output())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Asks the client to finish now (SIGTERM): the scripts then end their session
    /// with DELETE and print their result as usual.
    pub fn stop(&self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) with SIGTERM on the PID of a child this Script started
            // and has not reaped (`ip netns exec` execs, so it is the client itself).
            let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            assert_eq!(rc, 0, "{}: cannot signal PID {pid}", self.client);
        }
    }

    /// Waits for the process to end (killing it after `timeout`), echoes its stderr
    /// into the test's output, and returns the JSON object on its last stdout line.
    pub async fn finish(mut self, timeout: Duration) -> Value {
        let status = tokio::time::timeout(timeout, self.child.wait()).await;
        // Let the readers drain the pipes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.reported = true;
        eprintln!(
            "--- {} ({:.1} s) ---\n{}",
            self.client,
            self.started.elapsed().as_secs_f64(),
            tail(&stderr)
        );
        let status = match status {
            Ok(s) => s,
            Err(_) => {
                let _ = self.child.kill().await;
                panic!("{}: still running after {timeout:?}: killed", self.client);
            }
        };
        let stdout = self
            .stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let last = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'));
        let Some(last) = last else {
            panic!(
                "{}: exited ({status:?}) without a JSON result line; stdout:\n{}",
                self.client,
                tail(&stdout)
            );
        };
        let v: Value = serde_json::from_str(last)
            .unwrap_or_else(|e| panic!("{}: result line is not JSON ({e}): {last}", self.client));
        eprintln!("{}: {v}", self.client);
        v
    }
}

impl Drop for Script {
    /// A test failing while the process still runs shows what it wrote: a server's
    /// log is often the only account of why its clients failed.
    fn drop(&mut self) {
        if std::thread::panicking() && !self.reported {
            eprintln!(
                "--- {} (running when the test failed, {:.1} s) ---\n{}",
                self.client,
                self.started.elapsed().as_secs_f64(),
                tail(&self.output())
            );
        }
    }
}

/// The last 200 lines of `s`.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(200)..].join("\n")
}

/// Runs a client to its end and returns its JSON result.
pub async fn run(client: &str, cmd: Command, timeout: Duration) -> Value {
    Script::spawn(client, cmd).finish(timeout).await
}

/// Runs Chromium through `conformance/browser/pages.mjs` on a plan of one scenario
/// (`scenario` without "out", which is added) and returns that scenario's figures;
/// fails with the step and the error when it did not pass.
pub async fn chromium_scenario(client: &str, scenario: Value, timeout: Duration) -> Value {
    let plan = serde_json::json!({ "out": out_dir(), "scenarios": [scenario] });
    let report = run(
        client,
        node(&["conformance/browser/pages.mjs", &plan.to_string()]),
        timeout,
    )
    .await;
    let r = &report["results"][0];
    assert!(
        r["ok"] == true,
        "{client}: failed at \"{}\": {}",
        r["step"].as_str().unwrap_or("?"),
        r["error"].as_str().unwrap_or("?")
    );
    r["figures"].clone()
}

/// Fails, naming the client and the step, unless a one-role result says `ok`.
pub fn assert_ok(v: &Value) {
    assert!(
        v["ok"] == Value::Bool(true),
        "{} {}: failed at step \"{}\": {}",
        v["client"].as_str().unwrap_or("?"),
        v["role"].as_str().unwrap_or(""),
        v["step"].as_str().unwrap_or("?"),
        v["error"].as_str().unwrap_or("?")
    );
}

/// `node` + `args`, from the repository root.
pub fn node(args: &[&str]) -> Command {
    let mut c = Command::new("node");
    c.args(args).current_dir(root());
    c
}

/// A network namespace of this test: `lo` up, and a veth pair whose end `v0` has
/// 127.0.0.2/32. libnice and aioice gather candidates on every interface except
/// loopback, so inside the namespace they find exactly 127.0.0.2, and their
/// traffic (UPnP discovery included) cannot leave it. Deleted on drop.
pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// The namespace's address that peers inside it use for ICE.
    pub const ICE_ADDR: &str = "127.0.0.2";

    /// Creates the namespace (needs root, as CI runs).
    pub fn create(tag: &str) -> Netns {
        let name = format!("wishd-{tag}-{}", std::process::id());
        let _ = ip(&["netns", "del", &name]);
        if let Err(e) = ip(&["netns", "add", &name]) {
            panic!("cannot create network namespace {name} (the test needs root): {e}");
        }
        let ns = Netns { name };
        for args in [
            &["link", "set", "lo", "up"][..],
            &["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            &["addr", "add", "127.0.0.2/32", "dev", "v0"],
            &["link", "set", "v0", "up"],
            &["link", "set", "v1", "up"],
            // The local table one step later, so a test can cut a path with a
            // rule before it (`ip rule add pref 5 to ADDR blackhole`).
            &["rule", "add", "pref", "10", "lookup", "local"],
            &["rule", "del", "pref", "0"],
        ] {
            let mut full = vec!["netns", "exec", &ns.name, "ip"];
            full.extend_from_slice(args);
            if let Err(e) = ip(&full) {
                panic!("setting up network namespace {}: {e}", ns.name);
            }
        }
        ns
    }

    /// `program` to be run inside the namespace (`ip netns exec` execs it, so the
    /// child's PID is the program's own).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program])
            .current_dir(root());
        c
    }

    /// Starts the wishd binary inside the namespace, open for publish and play, HTTP
    /// on 127.0.0.1:8080 and media on 127.0.0.2 (the address the clients use).
    /// Returns it once it listens, and its base URL.
    pub async fn start_wishd(&self) -> (Script, String) {
        self.start_wishd_on("127.0.0.1:8080", "127.0.0.2:20000")
            .await
    }

    /// Like [`start_wishd`](Self::start_wishd), with HTTP on `http` and media on
    /// `udp` (an unspecified address offers every interface of the namespace).
    pub async fn start_wishd_on(&self, http: &str, udp: &str) -> (Script, String) {
        let args = ["--dev", "--http", http, "--udp", udp, "--workers", "2"];
        let wishd = self.spawn_wishd(args.iter().map(|a| a.as_ref())).await;
        let port = http.rsplit(':').next().unwrap_or("8080");
        (wishd, format!("http://127.0.0.1:{port}"))
    }

    /// Starts the wishd binary inside the namespace with the configuration file
    /// `config`, whose HTTP listener is `http` (an address of the namespace). Returns
    /// it once it listens, and its base URL.
    pub async fn start_wishd_config(
        &self,
        config: &std::path::Path,
        http: &str,
    ) -> (Script, String) {
        let args = [std::ffi::OsStr::new("--config"), config.as_os_str()];
        (self.spawn_wishd(args).await, format!("http://{http}"))
    }

    /// The wishd binary inside the namespace with `args`, once it listens.
    async fn spawn_wishd<'a>(&self, args: impl IntoIterator<Item = &'a std::ffi::OsStr>) -> Script {
        let mut c = self.command(env!("CARGO_BIN_EXE_wishd"));
        c.args(args)
            .env("RUST_LOG", "wishd=info")
            .env("NO_COLOR", "1");
        let mut wishd = Script::spawn("wishd (in netns)", c);
        wishd
            .wait_for("wishd listening", Duration::from_secs(10))
            .await;
        wishd
    }

    /// Runs `ip` with `args` inside the namespace (routes, addresses).
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        if let Err(e) = ip(&full) {
            panic!("in network namespace {}: {e}", self.name);
        }
    }

    /// A second namespace, with `lo` up and nothing else, joined to this one by a veth
    /// pair: `here` (CIDR) on this side, `there` on the new one. What one side sends
    /// the other can be shaped with `tc` on this side's end (see [`Netns::tc`]).
    pub fn linked(&self, tag: &str, here: &str, there: &str) -> Netns {
        let name = format!("wishd-{tag}-{}", std::process::id());
        let _ = ip(&["netns", "del", &name]);
        if let Err(e) = ip(&["netns", "add", &name]) {
            panic!("cannot create network namespace {name}: {e}");
        }
        let other = Netns { name };
        let steps: [&[&str]; 6] = [
            &["-n", &other.name, "link", "set", "lo", "up"],
            &[
                "-n",
                &self.name,
                "link",
                "add",
                "vl",
                "type",
                "veth",
                "peer",
                "name",
                "vr",
                "netns",
                &other.name,
            ],
            &["-n", &self.name, "addr", "add", here, "dev", "vl"],
            &["-n", &self.name, "link", "set", "vl", "up"],
            &["-n", &other.name, "addr", "add", there, "dev", "vr"],
            &["-n", &other.name, "link", "set", "vr", "up"],
        ];
        for args in steps {
            if let Err(e) = ip(args) {
                panic!(
                    "linking network namespaces {} and {}: {e}",
                    self.name, other.name
                );
            }
        }
        other
    }

    /// Runs `tc` with `args` inside the namespace (on the end `vl` of [`linked`]).
    pub async fn tc(&self, args: &[&str]) {
        self.run("tc", args, "iproute2").await
    }

    /// Runs `nft` with `args` inside the namespace.
    pub async fn nft(&self, args: &[&str]) {
        self.run("nft", args, "apt-get install nftables").await
    }

    /// Runs `program` inside the namespace and asserts that it succeeded.
    pub async fn run(&self, program: &str, args: &[&str], hint: &str) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .await
            .unwrap_or_else(|e| panic!("{program} runs ({hint}): {e}"));
        assert!(
            out.status.success(),
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Netns {
    /// Drops what this namespace sends that matches each of `matches` (nftables
    /// expressions, e.g. `["ip", "daddr", "10.0.0.1", "meta", "l4proto", "udp"]`): a
    /// network that blocks some traffic, silently.
    pub async fn drop_outgoing(&self, matches: &[&[&str]]) {
        self.nft(&["add", "table", "inet", "blocked"]).await;
        self.nft(&[
            "add",
            "chain",
            "inet",
            "blocked",
            "output",
            "{ type filter hook output priority 0; }",
        ])
        .await;
        for m in matches {
            let mut rule = vec!["add", "rule", "inet", "blocked", "output"];
            rule.extend_from_slice(m);
            rule.push("drop");
            self.nft(&rule).await;
        }
    }

    /// An ffmpeg RTP camera (scripts/camera-ffmpeg.sh) inside the namespace: H.264
    /// video alone to `host`:`port`, for `secs`, writing its SDP into `dir`. Killed
    /// when dropped.
    pub fn start_camera(
        &self,
        dir: &std::path::Path,
        host: &str,
        port: u16,
        secs: u32,
    ) -> tokio::process::Child {
        let script = root().join("scripts/camera-ffmpeg.sh");
        let mut camera = self.command(script.to_str().expect("path"));
        camera
            .args([host, &port.to_string(), "none", &secs.to_string()])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        camera
            .spawn()
            .expect("ffmpeg camera starts (apt-get install ffmpeg)")
    }

    /// GETs `url` with the admin `token` from inside the namespace (curl) every 200 ms
    /// for up to 30 s, until `found` picks something out of the JSON.
    pub async fn poll_json<T>(
        &self,
        url: &str,
        token: &str,
        found: impl Fn(&Value) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let out = self
                .command("curl")
                .args([
                    "-s",
                    "-m",
                    "2",
                    "-H",
                    &format!("Authorization: Bearer {token}"),
                    url,
                ])
                .output()
                .await
                .expect("curl runs");
            let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if let Some(t) = found(&json) {
                return Some(t);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }
}

impl Netns {
    /// Sends `signal` (e.g. "STOP", "CONT") to every process inside the namespace
    /// whose command name starts with `comm`: processes this test started there.
    /// Returns how many were signalled.
    pub fn signal(&self, comm: &str, signal: &str) -> usize {
        let out = std::process::Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .expect("ip netns pids");
        let mut n = 0;
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if name.starts_with(comm)
                && std::process::Command::new("kill")
                    .args([&format!("-{signal}"), pid])
                    .status()
                    .is_ok_and(|s| s.success())
            {
                n += 1;
            }
        }
        n
    }

    /// Sets a kernel parameter for this namespace alone (`sysctl -w key=value`).
    pub async fn sysctl(&self, key: &str, value: &str) {
        self.run("sysctl", &["-q", "-w", &format!("{key}={value}")], "procps")
            .await
    }

    /// wishd's `/metrics` page at `base`, fetched from inside the namespace.
    pub async fn metrics(&self, base: &str) -> String {
        let out = self
            .command("curl")
            .args(["-s", "-m", "3", &format!("{base}/metrics")])
            .output()
            .await
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Which way an [`ImpairedPath`] impairs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Toward {
    /// What the near namespace sends the far one (wishd's media to a viewer).
    Far,
    /// What the far namespace sends the near one (a camera's or publisher's media).
    Near,
}

/// A path from `near` to a new namespace through a router namespace whose forwarding
/// in one direction runs through [`impair.py`](impair.py) (netem in user space: this
/// machine's kernel has no `sch_netem`); the other direction is forwarded untouched.
/// `near_net` and `far_net` are two /24 prefixes such as "10.81.0" and "10.82.0":
/// `near` gets `near_net.1`, the far namespace `far_net.2`.
pub struct ImpairedPath {
    pub router: Netns,
    pub far: Netns,
    impair: Option<Script>,
    /// The JSON profile impair.py follows; [`ImpairedPath::set`] rewrites it.
    pub profile: std::path::PathBuf,
}

impl ImpairedPath {
    pub async fn new(
        near: &Netns,
        tag: &str,
        near_net: &str,
        far_net: &str,
        toward: Toward,
    ) -> ImpairedPath {
        let router = near.linked(
            &format!("{tag}-r"),
            &format!("{near_net}.1/24"),
            &format!("{near_net}.2/24"),
        );
        let far = router.linked(
            &format!("{tag}-f"),
            &format!("{far_net}.1/24"),
            &format!("{far_net}.2/24"),
        );
        near.ip(&[
            "route",
            "add",
            &format!("{far_net}.0/24"),
            "via",
            &format!("{near_net}.2"),
        ]);
        far.ip(&[
            "route",
            "add",
            &format!("{near_net}.0/24"),
            "via",
            &format!("{far_net}.1"),
        ]);
        for (k, v) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ] {
            router.sysctl(k, v).await;
        }
        router.ip(&["tuntap", "add", "dev", "imp", "mode", "tun"]);
        let profile = std::env::temp_dir().join(format!("{}-impair.json", router.name));
        std::fs::write(&profile, "{}").expect("profile");
        let mut c = router.command("/usr/bin/python3");
        c.arg(root().join("tests/clients/impair.py"))
            .args(["imp", profile.to_str().expect("path")]);
        let mut impair = Script::spawn("impair.py", c);
        impair
            .wait_for("[impair] ready", Duration::from_secs(5))
            .await;
        router.ip(&["link", "set", "imp", "up"]);
        // Packets arriving from one side are routed into the TUN device; impair.py
        // writes them back, and they leave by the main table.
        let (to, from) = match toward {
            Toward::Far => (far_net, "vr"),
            Toward::Near => (near_net, "vl"),
        };
        let to = format!("{to}.0/24");
        router.ip(&["route", "add", &to, "dev", "imp", "table", "100"]);
        router.ip(&["rule", "add", "iif", from, "lookup", "100", "pref", "5"]);
        ImpairedPath {
            router,
            far,
            impair: Some(impair),
            profile,
        }
    }

    /// Switches the path to `profile` (impair.py's keys: loss, duplicate, reorder in
    /// percent, delay_ms, jitter_ms, blackout).
    pub fn set(&self, profile: &Value) {
        let tmp = self.profile.with_extension("tmp");
        std::fs::write(&tmp, profile.to_string()).expect("profile");
        std::fs::rename(&tmp, &self.profile).expect("profile");
    }

    /// Stops impair.py (the namespaces stay, without a path between them); its counts
    /// (in, dropped, duplicated, reordered, out).
    pub async fn stop(&mut self) -> Value {
        let Some(impair) = self.impair.take() else {
            return Value::Null;
        };
        impair.stop();
        let counts = impair.finish(Duration::from_secs(5)).await;
        let _ = std::fs::remove_file(&self.profile);
        counts
    }
}

/// A Prometheus histogram's cumulative buckets on a `/metrics` page: (le, count).
pub fn histogram(page: &str, name: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    page.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The bucket bound under which `q` of the observations made between two scrapes
/// fell, and how many there were.
pub fn window_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> (f64, u64) {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
            (le, n.saturating_sub(was))
        })
        .collect();
    let total = delta.last().map_or(0, |d| d.1);
    let bound = delta
        .iter()
        .find(|d| d.1 as f64 >= q * total as f64)
        .map_or(f64::INFINITY, |d| d.0);
    (bound, total)
}

/// A counter's value on a `/metrics` page (`series` with its labels), 0 if absent.
pub fn counter(page: &str, series: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The first session of `kind` in a `/api/streams/{name}` answer whose `path` has
/// `field` = `value`; its `path` and `packets_in`.
pub fn session_path(detail: &Value, kind: &str, field: &str, value: &str) -> Option<(Value, u64)> {
    detail["sessions"]
        .as_array()?
        .iter()
        .find(|s| s["kind"] == kind && s["path"][field] == value)
        .map(|s| (s["path"].clone(), s["packets_in"].as_u64().unwrap_or(0)))
}

/// A wishd configuration for a test namespace: HTTP and media on `http` and `udp`,
/// one worker, publish and play open, the admin API on `admin_token`, and with
/// `camera` an RTP stream "cam" (H.264 on `camera`'s address and port), plus `extra`
/// TOML. Written to `dir/wishd.toml`, whose path it returns.
pub fn wishd_config(
    dir: &std::path::Path,
    http: &str,
    udp: &str,
    admin_token: &str,
    camera: Option<(&str, u16)>,
    extra: &str,
) -> std::path::PathBuf {
    let mut toml = format!(
        "http = \"{http}\"\nudp = \"{udp}\"\nworkers = 1\n\n\
         [auth]\npublish = \"open\"\nplay = \"open\"\n\n[api]\ntoken = \"{admin_token}\"\n"
    );
    if let Some((bind, port)) = camera {
        toml.push_str(&format!(
            "\n[[rtp]]\nstream = \"cam\"\nbind = \"{bind}\"\n[rtp.video]\nport = {port}\n\
             pt = 96\nrtpmap = \"H264/90000\"\nfmtp = \"packetization-mode=1\"\n"
        ));
    }
    toml.push_str(extra);
    std::fs::create_dir_all(dir).expect("temp dir");
    let path = dir.join("wishd.toml");
    std::fs::write(&path, toml).expect("config");
    path
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Two consecutive free UDP ports on loopback (RTP and RTCP), the first even.
pub fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = s.local_addr() else { continue };
        let p = addr.port() & !1;
        drop(s);
        if p > 1024
            && UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
    panic!("no free UDP port pair on 127.0.0.1");
}
pub mod janus;

/// An `[[rtp]]` camera of H.264 (payload type 96) on `vport` and Opus (111) on
/// `aport`, as the README's camera script sends them.
pub fn h264_opus_camera(stream: &str, vport: u16, aport: u16) -> wishd::config::RtpEntry {
    use wishd::config::{RtpEntry, RtpMediumEntry};
    RtpEntry {
        stream: stream.into(),
        video: Some(RtpMediumEntry {
            port: vport,
            pt: 96,
            rtpmap: "H264/90000".into(),
            fmtp: "packetization-mode=1".into(),
        }),
        audio: Some(RtpMediumEntry {
            port: aport,
            pt: 111,
            rtpmap: "opus/48000/2".into(),
            fmtp: String::new(),
        }),
        ..RtpEntry::default()
    }
}
